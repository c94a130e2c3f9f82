// service.js — one service: its operations with RED figures, its recent errors (error logs and
// error spans, linking to their traces) and its processes.

import { h, fill, fmtMs, fmtNum, fmtPct, colorFor, href, notice, timeCell, shortId, LEVELS } from "./dom.js";
import { makeSortable } from "./table.js";

export async function render(ctx) {
  const name = ctx.arg;
  ctx.title(name);
  const { data } = await ctx.load("service", { name });
  const operations = data.operations || [];
  const errors = data.errors || [];
  const processes = data.processes || [];
  const head = h(
    "div.screen-head",
    null,
    h("h1", null, h("i.swatch.big", { style: { background: colorFor(name) } }), name),
    h(
      "span.head-links",
      null,
      h("a", { href: href("/traces", { service: name }) }, "Search traces"),
      h("a", { href: href("/traces", { service: name, status: "error" }) }, "Failed traces"),
      h("a", { href: href("/logs", { service: name }) }, "Logs"),
      h("a", { href: href("/metrics", { group_by: "service_name" }) }, "Metrics"),
    ),
  );
  const opsTable = h(
    "table.grid",
    { "data-testid": "operations" },
    h(
      "thead",
      null,
      h("tr", null, ["Operation", "Requests", "Rate", "Errors", "Error rate", "p50", "p95", "p99"].map((t, i) => h(i ? "th.num" : "th", null, t))),
    ),
    h(
      "tbody",
      null,
      operations.map((op) =>
        h(
          "tr",
          { "data-operation": op.operation },
          h("td.name", null, h("a", { href: href("/traces", { service: name, operation: op.operation }) }, op.operation)),
          h("td.num", { "data-sort": op.requests }, fmtNum(op.requests)),
          h("td.num", { "data-col": "rate", "data-sort": op.rate_per_s }, `${fmtNum(op.rate_per_s)}/s`),
          h("td.num", { "data-sort": op.errors }, fmtNum(op.errors)),
          h("td.num", { "data-col": "error_rate", "data-sort": op.error_rate ?? -1, class: op.error_rate > 0.05 ? "bad" : op.error_rate > 0 ? "warn" : undefined }, fmtPct(op.error_rate)),
          h("td.num", { "data-col": "p50", "data-sort": op.p50_ms ?? -1 }, fmtMs(op.p50_ms)),
          h("td.num", { "data-col": "p95", "data-sort": op.p95_ms ?? -1 }, fmtMs(op.p95_ms)),
          h("td.num", { "data-col": "p99", "data-sort": op.p99_ms ?? -1 }, fmtMs(op.p99_ms)),
        ),
      ),
    ),
  );
  const errorList = h(
    "div",
    { "data-testid": "recent-errors" },
    errors.length
      ? h(
          "div.table-wrap",
          null,
          h(
          "table.grid.compact",
          null,
          h("thead", null, h("tr", null, h("th", null, "Time"), h("th", null, "Where"), h("th", null, "Message"), h("th", null, "Trace"))),
          h(
            "tbody",
            null,
            errors.map((e) =>
              h(
                "tr",
                { "data-testid": "error-row" },
                h("td.nowrap", null, timeCell(e.time)),
                h("td", null, e.name || e.target || (e.level ? LEVELS[e.level] : "")),
                h("td.msg", null, e.message ?? e.msg ?? ""),
                h("td.mono", null, e.trace_id ? h("a", { href: href(`/trace/${e.trace_id}`, e.span_id ? { span: e.span_id } : {}), "data-testid": "trace-link" }, shortId(e.trace_id)) : "–"),
              ),
            ),
          ),
          ),
        )
      : notice("empty", "No error in this range."),
  );
  const procTable = h(
    "div",
    { "data-testid": "service-processes" },
    processes.length
      ? h("div.table-wrap", null, makeSortable(
          h(
            "table.grid.compact",
            null,
            h("thead", null, h("tr", null, ["Process", "Exe", "Computer", "Started", "Last seen"].map((t) => h("th", null, t)))),
            h(
              "tbody",
              null,
              processes.map((p) =>
                h(
                  "tr",
                  { "data-process-id": p.process_id },
                  h("td.mono", null, h("a", { href: href(`/process/${p.process_id}`) }, shortId(p.process_id))),
                  h("td", null, p.exe),
                  h("td", null, p.computer),
                  h("td.nowrap", { "data-sort": p.start_time }, timeCell(p.start_time)),
                  h("td.nowrap", { "data-sort": p.last_seen }, timeCell(p.last_seen)),
                ),
              ),
            ),
          ),
        ))
      : notice("empty", "No process in this range."),
  );
  fill(
    ctx.body,
    head,
    h("section", null, h("h2", null, `Operations (${operations.length})`), operations.length ? h("div.table-wrap", null, makeSortable(opsTable)) : [notice("empty", "No server or root span in this range."), (opsTable.hidden = true, opsTable)]),
    h("div.two-col", null, h("section", null, h("h2", null, `Recent errors (${errors.length})`), errorList), h("section", null, h("h2", null, `Processes (${processes.length})`), procTable)),
  );
  ctx.setState(operations.length || errors.length || processes.length ? "ready" : "empty");
}
