// span-details.js — the details of one span beside the waterfall (status, facts, attributes,
// events with exception stack traces, links, resource, its logs) and the log line used by the
// trace's log panels.

import { h, fmtMs, colorFor, href, fmtTime, shortId, LEVELS } from "./dom.js";

function kvTable(obj, testid) {
  const keys = Object.keys(obj || {}).sort();
  if (!keys.length) return h("p.muted", null, "none");
  return h(
    "table.kv",
    { "data-testid": testid },
    h("tbody", null, keys.map((k) => h("tr", null, h("th", null, k), h("td", null, typeof obj[k] === "object" ? JSON.stringify(obj[k]) : String(obj[k]))))),
  );
}

export function spanDetails(sp, trace, logs) {
  const offset = (sp.start_ns - trace.start_ns) / 1e6;
  const events = sp.events || [];
  const links = sp.links || [];
  const spanLogs = logs.filter((row) => row.span_id === sp.span_id);
  return [
    h(
      "div.panel-head",
      null,
      h("h2", null, h("i.swatch", { style: { background: colorFor(sp.service) } }), sp.name),
      h(`span.status.status-${(sp.status || "UNSET").toLowerCase()}`, { "data-testid": "span-status" }, sp.status || "UNSET"),
    ),
    sp.status_message ? h("p.status-message", null, sp.status_message) : null,
    h(
      "dl.facts",
      null,
      h("dt", null, "Service"), h("dd", null, h("a", { href: href(`/service/${encodeURIComponent(sp.service)}`) }, sp.service)),
      h("dt", null, "Kind"), h("dd", null, sp.kind || "–"),
      h("dt", null, "Duration"), h("dd", null, fmtMs(sp.duration_ms)),
      h("dt", null, "Start"), h("dd", null, `+${fmtMs(offset)}`, h("span.muted", null, ` (${fmtTime(sp.start_ns)})`)),
      h("dt", null, "Span id"), h("dd.mono", null, sp.span_id),
      h("dt", null, "Parent"), h("dd.mono", null, sp.parent_span_id || "– (root)"),
      h("dt", null, "Process"), h("dd.mono", null, sp.process_id ? h("a", { href: href(`/process/${sp.process_id}`) }, sp.process_id) : "–"),
      h("dt", null, "Critical"), h("dd", null, sp.critical ? "on the critical path" : "no"),
    ),
    h("h3", null, `Attributes (${Object.keys(sp.attributes || {}).length})`),
    kvTable(sp.attributes, "span-attributes"),
    h("h3", null, `Events (${events.length})`),
    events.length
      ? h(
          "ul.events",
          { "data-testid": "span-events" },
          events.map((ev) => {
            const attrs = ev.attributes || {};
            const isException = ev.name === "exception" || attrs["exception.type"] !== undefined;
            return h(
              "li",
              { class: isException ? "exception" : undefined },
              h("div", null, h("span.muted", null, `+${fmtMs((ev.time_ns - trace.start_ns) / 1e6)} `), h("b", null, ev.name)),
              isException ? h("div.exc", null, h("b", null, attrs["exception.type"] || "exception"), ": ", attrs["exception.message"] || "") : null,
              isException && attrs["exception.stacktrace"] ? h("pre.stack", { "data-testid": "stacktrace" }, attrs["exception.stacktrace"]) : null,
              kvTable(Object.fromEntries(Object.entries(attrs).filter(([k]) => !isException || !["exception.stacktrace", "exception.type", "exception.message"].includes(k))), "event-attributes"),
            );
          }),
        )
      : h("p.muted", null, "none"),
    h("h3", null, `Links (${links.length})`),
    links.length
      ? h("ul.links", null, links.map((l) => h("li", null, h("a.mono", { href: href(`/trace/${l.trace_id}`, { span: l.span_id }) }, `${shortId(l.trace_id)} / ${shortId(l.span_id)}`), " ", kvTable(l.attributes, "link-attributes"))))
      : h("p.muted", null, "none"),
    h("details.resource", null, h("summary", null, `Resource (${Object.keys(sp.resource || {}).length})`), kvTable(sp.resource, "span-resource")),
    h("h3", null, `Logs of this span (${spanLogs.length})`),
    spanLogs.length ? h("div.log-lines", { "data-testid": "span-logs" }, spanLogs.map((row) => logLine(row, trace.start_ns, false, null, "span-log-row"))) : h("p.muted", { "data-testid": "span-logs" }, "none"),
  ];
}

export function logLine(row, t0, highlight, onClick, testid = "log-row") {
  const level = row.level_name || LEVELS[row.level] || String(row.level);
  return h(
    "div.log-line",
    { "data-testid": testid, "data-span-id": row.span_id || "", class: [highlight ? "selected" : "", onClick && row.span_id ? "clickable" : ""].filter(Boolean).join(" ") || undefined, onclick: onClick || undefined, title: fmtTime(row.time_ns ?? row.time) },
    h("span.log-offset", null, `+${fmtMs((row.time_ns - t0) / 1e6)}`),
    h(`span.level.level-${row.level}`, null, level),
    h("span.log-svc", null, row.service),
    h("span.log-msg", null, row.msg),
  );
}
