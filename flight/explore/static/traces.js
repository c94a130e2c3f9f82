// traces.js — trace search: filters (service, operation, duration, status, attributes, text,
// sort, limit) kept in the URL, a scatter of the results over time, and a result table with a
// duration bar per trace.

import { h, s, fill, fmtMs, fmtNum, colorFor, registerColors, href, notice, timeCell, toMs, shortId } from "./dom.js";
import { niceTicks, timeTicks } from "./chart.js";
import { makeSortable } from "./table.js";

const FIELDS = ["service", "operation", "min_ms", "max_ms", "status", "q", "sort", "limit"];

export async function render(ctx) {
  ctx.title("Traces");
  const p = ctx.params;
  const params = {};
  for (const f of FIELDS) if (p.get(f)) params[f] = p.get(f);
  const attrs = p.getAll("attr").filter(Boolean);
  if (attrs.length) params.attr = attrs;
  const form = searchForm(ctx, params, attrs);
  const results = h("div.results");
  fill(ctx.body, h("div.screen-head", null, h("h1", null, "Traces")), h("div.search-layout", null, form, results));
  // service suggestions (the services query scans every span of the range): asked on first focus,
  // so they do not compete with the search itself
  form.elements.service.addEventListener("focus", () => fillServices(ctx, form), { once: true });
  const { data } = await ctx.load("traces", params);
  const traces = data.traces || [];
  registerColors(traces.flatMap((t) => [t.root_service, ...(t.services || [])]));
  if (!traces.length) {
    fill(results, notice("empty", "No trace matches these filters in this time range."));
    ctx.setState("empty");
    return;
  }
  const maxDur = Math.max(...traces.map((t) => t.duration_ms || 0), 1e-6);
  const table = h(
    "table.grid.traces",
    { "data-testid": "traces" },
    h("thead", null, h("tr", null, h("th", null, "Trace"), h("th", null, "Root"), h("th.num", null, "Spans"), h("th", { "data-nosort": "" }, "Services"), h("th.num", null, "Errors"), h("th", null, "Started"), h("th.dur", null, "Duration"))),
    h(
      "tbody",
      null,
      traces.map((t) => {
        const link = href(`/trace/${t.trace_id}`);
        return h(
          "tr.clickable",
          { "data-trace-id": t.trace_id, class: t.errors ? "has-error" : undefined, onclick: (e) => { if (!e.target.closest("a")) ctx.navigate(link); } },
          h("td.mono", null, h("a", { href: link, "data-testid": "trace-link" }, shortId(t.trace_id))),
          h("td.name", null, h("i.swatch", { style: { background: colorFor(t.root_service) } }), h("b", null, t.root_service), ": ", t.root_name),
          h("td.num", { "data-sort": t.spans }, fmtNum(t.spans)),
          h("td", null, (t.services || []).map((name) => h("span.chip", { style: { borderColor: colorFor(name) } }, name))),
          h("td.num", { class: t.errors ? "bad" : undefined, "data-sort": t.errors || 0 }, t.errors ? fmtNum(t.errors) : "–"),
          h("td.nowrap", { "data-sort": t.start_ns }, timeCell(t.start)),
          h(
            "td.dur",
            { "data-sort": t.duration_ms },
            h("div.bar-cell", null, h("div.dur-bar", { "data-testid": "duration-bar", style: { width: `${Math.max(0.5, (100 * t.duration_ms) / maxDur)}%` }, class: t.errors ? "error" : undefined }), h("span.dur-label", null, fmtMs(t.duration_ms))),
          ),
        );
      }),
    ),
  );
  fill(results, h("div.result-head", null, h("span", null, `${traces.length} traces`, traces.length >= Number(params.limit || 50) ? " (limit reached)" : "")), scatter(ctx, traces), h("div.table-wrap", null, makeSortable(table)));
  ctx.setState("ready");
}

function searchForm(ctx, params, attrs) {
  const input = (name, label, extra = {}) => h("label", null, h("span", null, label), h("input", { name, value: params[name] || "", ...extra }));
  const select = (name, label, options) =>
    h("label", null, h("span", null, label), h("select", { name }, options.map(([v, t]) => h("option", { value: v, selected: (params[name] || "") === v }, t))));
  const attrBox = h("div.attrs", null, [...attrs, ""].map((a) => h("input", { name: "attr", value: a, placeholder: "key=value" })));
  const form = h(
    "form.search-form",
    {
      "data-testid": "trace-search",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const next = {};
        for (const f of FIELDS) if (data.get(f)) next[f] = String(data.get(f)).trim();
        next.attr = data.getAll("attr").map((x) => String(x).trim()).filter(Boolean);
        ctx.navigate(href("/traces", next));
      },
    },
    input("service", "Service", { list: "service-names", placeholder: "any", autocomplete: "off" }),
    h("datalist", { id: "service-names" }),
    input("operation", "Operation", { placeholder: "any" }),
    h("div.pair", null, input("min_ms", "Min ms", { type: "number", min: 0, step: "any", placeholder: "0" }), input("max_ms", "Max ms", { type: "number", min: 0, step: "any", placeholder: "∞" })),
    select("status", "Status", [["", "any"], ["error", "error"], ["ok", "ok"]]),
    h("label", null, h("span", null, "Attributes"), attrBox),
    input("q", "Text in span names / trace id", { placeholder: "e.g. checkout" }),
    h("div.pair", null, select("sort", "Sort", [["", "newest"], ["start", "start"], ["duration", "longest"]]), input("limit", "Limit", { type: "number", min: 1, max: 500, placeholder: "50" })),
    h("div.actions", null, h("button.primary", { type: "submit" }, "Find traces"), h("a", { href: href("/traces") }, "clear")),
  );
  attrBox.addEventListener("input", () => {
    const boxes = attrBox.querySelectorAll("input");
    if (boxes[boxes.length - 1].value) attrBox.append(h("input", { name: "attr", placeholder: "key=value" }));
  });
  return form;
}

async function fillServices(ctx, form) {
  try {
    const { data } = await ctx.load("services");
    fill(form.querySelector("datalist"), (data.services || []).map((x) => h("option", { value: x.service })));
  } catch {
    /* suggestions only */
  }
}

/** Duration over start time, one dot per trace (red for errors); clicking opens the trace. */
function scatter(ctx, traces) {
  const height = 130, left = 56, right = 12, top = 8, bottom = 22;
  const ts = traces.map((t) => toMs(t.start));
  let tMin = Math.min(...ts), tMax = Math.max(...ts);
  if (tMax - tMin < 1000) { tMin -= 500; tMax += 500; }
  const dMax = Math.max(...traces.map((t) => t.duration_ms || 0), 1e-6);
  const yTicks = niceTicks(0, dMax, 3);
  const yMax = yTicks[yTicks.length - 1];
  const wrap = h("div.scatter-wrap");
  const draw = (width) => {
    const innerW = width - left - right, innerH = height - top - bottom;
    const x = (ms) => left + ((ms - tMin) / (tMax - tMin)) * innerW;
    const y = (d) => top + innerH - (d / yMax) * innerH;
    const svg = s("svg.scatter", { width, height, viewBox: `0 0 ${width} ${height}`, "data-testid": "trace-scatter" });
    for (const v of yTicks) {
      svg.append(s("line.grid", { x1: left, x2: width - right, y1: y(v), y2: y(v) }));
      svg.append(s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, fmtMs(v)));
    }
    for (const { t, label } of timeTicks(tMin, tMax, Math.max(2, Math.floor(innerW / 110)))) {
      svg.append(s("text", { x: x(t), y: height - 6, "text-anchor": "middle" }, label));
    }
    svg.append(s("line.axis", { x1: left, x2: width - right, y1: top + innerH, y2: top + innerH }));
    traces.forEach((t, i) => {
      const dot = s("circle", { cx: x(ts[i]), cy: y(t.duration_ms || 0), r: 4.5, class: t.errors ? "dot error" : "dot" }, s("title", null, `${t.root_service}: ${t.root_name} — ${fmtMs(t.duration_ms)}`));
      dot.addEventListener("click", () => ctx.navigate(href(`/trace/${t.trace_id}`)));
      svg.append(dot);
    });
    wrap.replaceChildren(svg);
  };
  let drawn = 0;
  new ResizeObserver(() => {
    const width = Math.floor(wrap.clientWidth - 8);
    if (width > 100 && Math.abs(width - drawn) > 2) { drawn = width; draw(width); }
  }).observe(wrap);
  draw(900);
  return wrap;
}
