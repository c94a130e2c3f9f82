// logs.js — the Logs screen: filters (text, level, service, target, process, trace id) in the
// URL, newest first, "older" paging by next_before_ns, and a live tail that polls after_ns every
// 1.5 s and prepends new rows without a reload. Trace ids link to the trace view.

import { h, fill, href, notice, fmtTime, fmtAgo, shortId, LEVELS, colorFor, registerColors, exactNs } from "./dom.js";

const FIELDS = ["q", "level", "service", "target", "process", "trace_id"];
const POLL_MS = 1500;
const MAX_ROWS = 5000;
const HIDDEN_PROPS = new Set(["otel.trace_id", "otel.span_id", "otel.severity_number", "otel.severity_text"]);

export async function render(ctx) {
  ctx.title("Logs");
  const params = {};
  for (const f of FIELDS) if (ctx.params.get(f)) params[f] = ctx.params.get(f);
  const live = h("input", { type: "checkbox", "data-testid": "live", checked: ctx.params.get("live") === "1" });
  const form = filterForm(ctx, params, live);
  const tbody = h("tbody");
  const table = h(
    "table.grid.logs",
    { "data-testid": "logs" },
    h("thead", null, h("tr", null, h("th", null, "Time"), h("th", null, "Level"), h("th", null, "Service"), h("th", null, "Target"), h("th", null, "Message"), h("th", null, "Trace"))),
    tbody,
  );
  const status = h("span.muted", { "data-testid": "log-status" });
  const older = h("button", { type: "button", "data-testid": "older" }, "Older rows");
  const footer = h("div.table-foot", null, older);
  const emptyNote = h("div");
  fill(ctx.body, h("div.screen-head", null, h("h1", null, "Logs"), status), form, emptyNote, h("div.table-wrap", null, table), footer);

  let newestNs = null;
  let nextBefore = null;
  let total = 0;
  const update = () => {
    status.textContent = `${total} rows${nextBefore ? "" : " (all in range)"}${live.checked ? " · live" : ""}`;
    older.hidden = !nextBefore;
    fill(emptyNote, total ? null : notice("empty", live.checked ? "No log record in this range yet; waiting for new ones…" : "No log record matches these filters in this time range."));
  };

  const first = await ctx.load("logs", params);
  append(tbody, first.data.rows || [], false);
  newestNs = first.data.rows && first.data.rows.length ? rowNs(first.data.rows[0]) : null;
  nextBefore = first.data.next_before_ns ?? null;
  total = (first.data.rows || []).length;
  update();
  ctx.setState(total ? "ready" : "empty");

  older.addEventListener("click", async () => {
    older.disabled = true;
    try {
      const page = await ctx.load("logs", { ...params, before_ns: nextBefore });
      append(tbody, page.data.rows || [], false);
      total += (page.data.rows || []).length;
      nextBefore = page.data.next_before_ns ?? null;
      update();
    } catch (err) {
      if (err.name !== "AbortError") fill(emptyNote, notice("error", err.message));
    } finally {
      older.disabled = false;
    }
  });

  // Infinite scroll: once the user scrolls down to the "older" button, it loads the next page.
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && window.scrollY > 0 && nextBefore && !older.disabled && !older.hidden) older.click();
  });
  observer.observe(older);
  ctx.signal.addEventListener("abort", () => observer.disconnect());

  // Live tail: poll rows strictly newer than the newest shown, prepend them.
  let timer = 0;
  const poll = async () => {
    timer = 0;
    if (!live.checked || ctx.signal.aborted) return;
    try {
      const tailParams = { ...params, to: "" };
      if (newestNs !== null) tailParams.after_ns = newestNs;
      const page = await ctx.load("logs", tailParams);
      const rows = page.data.rows || [];
      if (rows.length) {
        const newest = rowNs(rows[0]);
        if (newestNs === null || BigInt(newest) > BigInt(newestNs)) newestNs = newest;
        append(tbody, rows, true);
        total += rows.length;
        while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
        if (total) ctx.setState("ready");
      }
      update();
    } catch (err) {
      if (err.name === "AbortError") return;
      status.textContent = `live tail: ${err.message}`;
    }
    if (live.checked && !ctx.signal.aborted) timer = setTimeout(poll, POLL_MS);
  };
  live.addEventListener("change", () => {
    ctx.setParams({ live: live.checked ? "1" : "" });
    update();
    if (live.checked && !timer) timer = setTimeout(poll, 10);
  });
  ctx.signal.addEventListener("abort", () => clearTimeout(timer));
  if (live.checked) timer = setTimeout(poll, POLL_MS);
  // the SQL panel keeps only the latest few tail queries
  ctx.sql.maxQueries = 20;
}

function filterForm(ctx, params, live) {
  const input = (name, label, extra = {}) => h("label", null, h("span", null, label), h("input", { name, value: params[name] || "", ...extra }));
  const levels = [["", "any"], ...Object.entries(LEVELS).map(([n, name]) => [n, `≤ ${name.toLowerCase()}`])];
  const current = params.level ? String(params.level) : "";
  const form = h(
    "form.filter-bar",
    {
      "data-testid": "log-search",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const next = {};
        for (const f of FIELDS) if (data.get(f)) next[f] = String(data.get(f)).trim();
        if (live.checked) next.live = "1";
        ctx.navigate(href("/logs", next));
      },
    },
    input("q", "Text", { placeholder: "in message", type: "search" }),
    h(
      "label",
      null,
      h("span", null, "Level"),
      h("select", { name: "level" }, levels.map(([v, t]) => h("option", { value: v, selected: v === current || (current && LEVELS[v] && LEVELS[v].toLowerCase() === current.toLowerCase()) }, t))),
    ),
    input("service", "Service", { placeholder: "any" }),
    input("target", "Target", { placeholder: "any" }),
    input("process", "Process", { placeholder: "uuid", size: 14 }),
    input("trace_id", "Trace id", { placeholder: "hex", size: 14 }),
    h("button.primary", { type: "submit" }, "Search"),
    h("label.live", null, live, h("span", null, "Live tail")),
  );
  return form;
}

/** The exact ns of a row (from its RFC 3339 time; time_ns as a JS number loses digits). */
function rowNs(row) {
  return exactNs(row.time) ?? String(row.time_ns);
}

function append(tbody, rows, prepend) {
  const fragment = document.createDocumentFragment();
  registerColors(rows.map((row) => row.service));
  for (const row of rows) fragment.append(logRow(row, prepend));
  if (prepend) tbody.prepend(fragment);
  else tbody.append(fragment);
}

function logRow(row, isNew) {
  const level = row.level_name || LEVELS[row.level] || String(row.level);
  return h(
    "tr",
    { "data-testid": "log-row", "data-level": row.level, "data-time-ns": row.time_ns, class: isNew ? "new-row" : undefined },
    h("td.nowrap.mono", { title: fmtAgo(row.time_ns ?? row.time) }, fmtTime(row.time_ns ?? row.time)),
    h("td", null, h(`span.level.level-${row.level}`, null, level)),
    h("td.nowrap", null, h("i.swatch", { style: { background: colorFor(row.service) } }), h("a", { href: href("/logs", { service: row.service }) }, row.service)),
    h("td.target", null, row.target),
    h("td.msg", null, h("div", null, row.msg), propsText(row.properties)),
    h(
      "td.mono.nowrap",
      null,
      row.trace_id ? h("a", { href: href(`/trace/${row.trace_id}`, row.span_id ? { span: row.span_id } : {}), "data-testid": "trace-link" }, shortId(row.trace_id)) : null,
      row.process_id ? h("a.proc-link", { href: href(`/process/${row.process_id}`), title: `process ${row.process_id}` }, "proc") : null,
    ),
  );
}

function propsText(props) {
  // the trace/span ids and severity are columns already
  const entries = Object.entries(props || {}).filter(([k]) => !HIDDEN_PROPS.has(k));
  if (!entries.length) return null;
  const text = entries.map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  return h("div.props", { title: text.join("\n") }, text.map((x) => h("span.prop", null, x)));
}
