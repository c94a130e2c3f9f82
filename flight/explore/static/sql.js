// sql.js — the SQL screen: an editor (Ctrl/Cmd+Enter runs) over the page's time range, the
// result as a sortable table with copy (TSV) and CSV download, a chart when the result has a
// time column and numeric columns, the query's time, rows and bytes, and the server's error.

import { h, fill, fmtBytes, fmtNum, notice, toMs, nsToRfc3339 } from "./dom.js";
import { post, ApiError } from "./api.js";
import { resultTable, toTSV, toCSV, copyText } from "./table.js";
import { lineChart } from "./chart.js";

const EXAMPLE = `SELECT service_name, name, count(*) AS spans, avg(duration) / 1e6 AS avg_ms
FROM otel_spans
GROUP BY service_name, name
ORDER BY spans DESC
LIMIT 50`;
const MAX_SERIES = 24;

export async function render(ctx) {
  ctx.title("SQL");
  const initial = ctx.params.get("q");
  const editor = h("textarea.sql-editor", { "data-testid": "sql-editor", spellcheck: "false", rows: 8, "aria-label": "SQL" });
  editor.value = initial || EXAMPLE;
  const fit = () => { editor.rows = Math.min(24, Math.max(4, editor.value.split("\n").length + 1)); };
  editor.addEventListener("input", fit);
  fit();
  const run = h("button.primary", { type: "button", "data-testid": "run", title: "Ctrl/Cmd+Enter" }, "Run ▶");
  const stats = h("span.query-stats", { "data-testid": "query-stats" });
  const output = h("div.sql-output");
  fill(
    ctx.body,
    h("div.screen-head", null, h("h1", null, "SQL"), h("span.muted", null, "DataFusion SQL over the lake · the time range above selects partitions and rows")),
    editor,
    h("div.sql-actions", null, run, h("span.muted.small", null, "Ctrl/Cmd+Enter to run"), stats),
    output,
  );

  let seq = 0;
  const execute = async () => {
    const sql = editor.value.trim();
    if (!sql) return;
    const mine = ++seq;
    ctx.setParams({ q: sql });
    ctx.setState("loading");
    run.disabled = true;
    stats.textContent = "running…";
    fill(output);
    const range = new URLSearchParams(location.search);
    try {
      const result = await post("sql", { sql, from: range.get("from") || undefined, to: range.get("to") || undefined }, { signal: ctx.signal, bigints: true });
      if (mine !== seq) return;
      readableTimes(result.data);
      ctx.sql.add(result.queries, true);
      show(result, output, stats);
      ctx.setState(result.data.rows && result.data.rows.length ? "ready" : "empty");
    } catch (err) {
      if (err.name === "AbortError" || mine !== seq) return;
      stats.textContent = "";
      fill(output, h("div.notice.notice-error", { "data-testid": "error", role: "alert" }, h("b", null, err instanceof ApiError ? `Error ${err.status || ""}` : "Error"), h("pre", null, err.message)));
      ctx.setState("error");
    } finally {
      if (mine === seq) run.disabled = false;
    }
  };
  run.addEventListener("click", execute);
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      execute();
    }
  });
  if (initial) await execute();
  else ctx.setState("ready");
}

function show(result, output, stats) {
  const columns = result.data.columns || [];
  const rows = result.data.rows || [];
  const q = (result.queries || [])[0] || {};
  stats.textContent = `${(q.elapsed_ms ?? 0).toFixed(1)} ms · ${fmtNum(q.rows ?? rows.length)} rows · ${fmtBytes(q.bytes ?? 0)}${result.data.truncated ? " · truncated to the first 10 000 rows" : ""}`;
  const csvUrl = URL.createObjectURL(new Blob([toCSV(columns, rows)], { type: "text/csv" }));
  const copy = h("button", { type: "button", "data-testid": "copy" }, "Copy (TSV)");
  copy.addEventListener("click", async () => {
    const ok = await copyText(toTSV(columns, rows));
    copy.textContent = ok ? "Copied ✓" : "Copy failed";
    setTimeout(() => { copy.textContent = "Copy (TSV)"; }, 1500);
  });
  const tools = h("div.result-tools", null, copy, h("a.button", { href: csvUrl, download: "result.csv", "data-testid": "csv" }, "Download CSV"));
  const chart = chartOf(columns, rows);
  fill(
    output,
    chart,
    tools,
    rows.length ? null : notice("empty", "The query returned no row."),
    h("div.table-wrap.result-wrap", null, resultTable(columns, rows, "result")),
  );
}

const UNIT_NS = { s: 1000000000n, ms: 1000000n, us: 1000n, ns: 1n };

/** Timestamp columns arrive as integers in their unit: show them as RFC 3339 (exact ns). */
function readableTimes(data) {
  (data.columns || []).forEach((column, i) => {
    const m = /^timestamp\[(s|ms|us|ns)/i.exec(column.type || "");
    if (!m) return;
    const factor = UNIT_NS[m[1].toLowerCase()];
    for (const row of data.rows || []) {
      const v = row[i];
      if (typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v))) row[i] = nsToRfc3339(BigInt(v) * factor);
    }
  });
}

const isNumericType = (t) => /^(u?int|float|double|decimal)/i.test(t || "") || /Int\d+|Float\d+|Decimal/.test(t || "");
const isTimeType = (t) => /timestamp|date/i.test(t || "");

/** A line chart when there is a time column and numeric columns (a string column groups). */
export function chartOf(columns, rows) {
  if (rows.length < 2) return null;
  const timeIndex = columns.findIndex((c, i) => isTimeType(c.type) && rows.some((r) => !Number.isNaN(toMs(r[i]))));
  if (timeIndex < 0) return null;
  const numeric = columns.map((c, i) => i).filter((i) => i !== timeIndex && isNumericType(columns[i].type));
  if (!numeric.length) return null;
  const groupIndex = columns.findIndex((c, i) => i !== timeIndex && !isNumericType(c.type) && rows.every((r) => typeof r[i] === "string" || r[i] === null));
  const series = new Map();
  for (const row of rows) {
    const t = row[timeIndex];
    const group = groupIndex >= 0 ? String(row[groupIndex]) : "";
    for (const i of numeric) {
      const key = group ? (numeric.length > 1 ? `${group} · ${columns[i].name}` : group) : columns[i].name;
      if (!series.has(key)) {
        if (series.size >= MAX_SERIES) continue;
        series.set(key, []);
      }
      series.get(key).push([t, row[i] === null ? null : Number(row[i])]);
    }
  }
  const lines = [...series.entries()].map(([name, points]) => ({ name, points: points.sort((a, b) => toMs(a[0]) - toMs(b[0])) }));
  return h("div.sql-chart", null, lineChart(lines, { legend: true, height: 240 }));
}
