// metrics.js — the Metrics screen: a searchable list of measures and histograms, and for the
// chosen one a line chart over time grouped by service or a property, p50/p95/p99 lines for
// histograms, counters as rates (the server decides; "agg" overrides).

import { h, fill, href, notice, fmtNum } from "./dom.js";
import { lineChart } from "./chart.js";

const QUANTILE_COLORS = { p50: "#2ca02c", p95: "#ff7f0e", p99: "#d62728" };

export async function render(ctx) {
  ctx.title("Metrics");
  const name = ctx.params.get("name") || "";
  const kind = ctx.params.get("kind") || "";
  const groupBy = ctx.params.get("group_by") || "";
  const agg = ctx.params.get("agg") || "";
  const search = h("input", { type: "search", "data-testid": "metric-search", placeholder: "search metrics…", value: ctx.params.get("mq") || "", "aria-label": "search metrics" });
  const list = h("div.metric-list", { role: "listbox" });
  const chartArea = h("div.metric-main");
  fill(ctx.body, h("div.screen-head", null, h("h1", null, "Metrics")), h("div.metrics-layout", null, h("aside.metric-side", null, search, list), chartArea));

  // with the kind in the URL (links carry it) the series is asked at the same time as the names
  const early = name && kind ? ctx.load("metrics/series", { name, kind, group_by: groupBy, agg }) : null;
  if (early) early.catch(() => {}); // awaited below, or moot
  const { data } = await ctx.load("metrics/names");
  const metrics = data.metrics || [];
  const paint = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = metrics.filter((m) => words.every((w) => `${m.name} ${(m.services || []).join(" ")} ${m.kind}`.toLowerCase().includes(w)));
    fill(
      list,
      shown.length ? null : notice("empty", metrics.length ? "No metric matches." : "No metric in this time range."),
      shown.map((m) =>
        h(
          "a.metric-option",
          {
            href: href("/metrics", { name: m.name, kind: m.kind, group_by: groupBy, agg: "" }),
            "data-testid": "metric-option",
            "data-name": m.name,
            "data-kind": m.kind,
            "aria-selected": m.name === name && (!kind || m.kind === kind) ? "true" : "false",
            role: "option",
          },
          h("span.metric-name", null, m.name),
          h("span.metric-meta", null, h(`span.tag.tag-${m.kind}`, null, m.kind), m.unit && m.unit !== "1" ? ` ${m.unit}` : "", (m.services || []).length ? ` · ${(m.services || []).slice(0, 3).join(", ")}${m.services.length > 3 ? "…" : ""}` : ""),
        ),
      ),
    );
  };
  search.addEventListener("input", () => {
    paint();
    ctx.setParams({ mq: search.value });
  });
  paint();

  if (!name) {
    fill(chartArea, notice("empty", metrics.length ? "Pick a metric on the left." : "No measure or histogram was reported in this time range."));
    ctx.setState(metrics.length ? "ready" : "empty");
    return;
  }
  const meta = metrics.find((m) => m.name === name && (!kind || m.kind === kind)) || { name, kind: kind || "measure", properties: [], services: [] };
  const groupSelect = h(
    "select",
    { name: "group_by", "data-testid": "group-by" },
    h("option", { value: "" }, "no grouping"),
    ["service_name", ...(meta.properties || []).filter((p) => p !== "service_name")].map((p) => h("option", { value: p, selected: p === groupBy }, p)),
  );
  const aggSelect = h(
    "select",
    { name: "agg", "data-testid": "agg" },
    [["", "auto"], ["avg", "avg"], ["sum", "sum"], ["max", "max"], ["rate", "rate /s"]].map(([v, t]) => h("option", { value: v, selected: v === agg }, t)),
  );
  const controls = h(
    "form.filter-bar",
    { onchange: () => ctx.navigate(href("/metrics", { name, kind: meta.kind, group_by: groupSelect.value, agg: aggSelect.value })), onsubmit: (e) => e.preventDefault() },
    h("label", null, h("span", null, "Group by"), groupSelect),
    meta.kind === "histogram" ? null : h("label", null, h("span", null, "Aggregate"), aggSelect),
  );
  const title = h("div.metric-title", null, h("h2", null, name), h(`span.tag.tag-${meta.kind}`, null, meta.kind), meta.unit && meta.unit !== "1" ? h("span.muted", null, meta.unit) : null);
  fill(chartArea, title, controls, h("div.loading", null, "Loading series…"));

  const series = await (early && meta.kind === kind ? early : ctx.load("metrics/series", { name, kind: meta.kind, group_by: groupBy, agg }));
  const d = series.data;
  const quantiles = d.quantiles || {};
  const histogram = d.kind === "histogram";
  // a histogram's series are its p95 per group: without grouping they repeat the p95 line
  const grouped = (d.series || []).filter((one) => !(histogram && !groupBy && !one.group && quantiles.p95));
  const lines = grouped.map((one) => ({ name: histogram ? `${one.group || name} p95` : one.group || name, points: one.points || [] }));
  for (const q of ["p50", "p95", "p99"]) {
    if (quantiles[q] && quantiles[q].length) lines.push({ name: q, points: quantiles[q], color: QUANTILE_COLORS[q], attrs: { "data-quantile": q } });
  }
  const rawUnit = d.unit || meta.unit || "";
  const unit = rawUnit === "1" ? "" : rawUnit; // OTel's dimensionless unit
  const points = lines.reduce((n, l) => n + l.points.filter((p) => p[1] !== null).length, 0);
  const subtitle = h(
    "p.muted",
    null,
    `${lines.length} series · ${fmtNum(points)} ${points === 1 ? "point" : "points"} · buckets of ${d.bucket_seconds ?? "?"} s`,
    d.kind === "histogram" ? " · quantiles merged from the histogram buckets" : "",
    d.rate || agg === "rate" ? " · shown as a rate per second" : "",
  );
  if (!points) {
    fill(chartArea, title, controls, subtitle, notice("empty", "No value in this time range."), lineChart(lines, { unit }));
    ctx.setState("empty");
    return;
  }
  fill(chartArea, title, controls, subtitle, lineChart(lines, { unit, legend: true, height: 320 }));
  ctx.setState("ready");
}
