// sql-panel.js — the "SQL" section every screen shows: one <pre> per query the screen's API
// calls ran (the exact SQL), with its time, rows and bytes, and a link that opens it in the SQL
// screen with the same time range.

import { h, fill, fmtBytes, fmtNum, href } from "./dom.js";

/** A panel that collects the queries of every API call a screen makes. */
export class SqlPanel {
  constructor() {
    this.queries = [];
    this.maxQueries = 0; // 0: keep all; screens that poll set a cap
    this.list = h("div.sql-list");
    this.count = h("span.sql-count", null, "0 queries");
    this.element = h(
      "details.sql-panel",
      { "data-testid": "sql-panel" },
      h("summary", null, h("span", null, "SQL"), " ", this.count),
      this.list,
    );
  }

  /** Add the queries of one envelope (or replace all with replace=true). */
  add(queries, replace = false) {
    if (replace) this.queries = [];
    for (const q of queries || []) this.queries.push(q);
    if (this.maxQueries && this.queries.length > this.maxQueries) this.queries.splice(0, this.queries.length - this.maxQueries);
    this.render();
  }

  render() {
    const total = this.queries.reduce((sum, q) => sum + (q.elapsed_ms || 0), 0);
    this.count.textContent = `${this.queries.length} ${this.queries.length === 1 ? "query" : "queries"} · ${total.toFixed(1)} ms`;
    fill(
      this.list,
      this.queries.map((q) =>
        h(
          "div.sql-query",
          null,
          h(
            "div.sql-meta",
            { "data-testid": "sql-stats" },
            h("span", null, `${(q.elapsed_ms ?? 0).toFixed(1)} ms`),
            h("span", null, `${fmtNum(q.rows ?? 0)} rows`),
            h("span", null, fmtBytes(q.bytes ?? 0)),
            h("a", { href: href("/sql", { q: q.sql }), "data-testid": "open-in-sql" }, "open in SQL"),
          ),
          h("pre", { "data-testid": "sql" }, q.sql),
        ),
      ),
    );
  }
}
