// services.js — the Services screen: every service seen in the range with its RED figures
// (rate, error rate, p50/p95/p99 of server/root spans) and sparklines of requests and errors.

import { h, fill, fmtMs, fmtNum, fmtPct, colorFor, registerColors, href, notice } from "./dom.js";
import { sparkline } from "./chart.js";
import { makeSortable } from "./table.js";

export async function render(ctx) {
  ctx.title("Services");
  const { data } = await ctx.load("services");
  const services = data.services || [];
  registerColors(services.map((x) => x.service));
  const heading = h("div.screen-head", null, h("h1", null, "Services"), h("span.muted", null, `${services.length} seen · rate, errors and latency of server and root spans · sparklines in buckets of ${data.bucket_seconds ?? "?"} s`));
  if (!services.length) {
    fill(ctx.body, heading, notice("empty", "No service reported in this time range. Widen the range, or send data (sirius demo)."));
    ctx.setState("empty");
    return;
  }
  const maxErr = Math.max(...services.map((x) => x.error_rate || 0));
  const table = h(
    "table.grid",
    { "data-testid": "services" },
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        h("th", null, "Service"),
        h("th", null, "Kind"),
        h("th.num", null, "Requests"),
        h("th.num", null, "Rate"),
        h("th.num", null, "Errors"),
        h("th.num", null, "Error rate"),
        h("th.num", null, "p50"),
        h("th.num", null, "p95"),
        h("th.num", null, "p99"),
        h("th.num", null, "Processes"),
        h("th", { "data-nosort": "" }, "Requests / errors over time"),
        h("th", { "data-nosort": "" }, ""),
      ),
    ),
    h("tbody", null, services.map((svc) => row(svc, maxErr))),
  );
  fill(ctx.body, heading, h("div.table-wrap", null, makeSortable(table)));
  ctx.setState("ready");
}

function row(svc, maxErr) {
  const spark = svc.spark || { requests: [], errors: [] };
  const errCls = svc.error_rate > 0.05 ? "bad" : svc.error_rate > 0 ? "warn" : undefined;
  return h(
    "tr",
    { "data-service": svc.service },
    h(
      "td.name",
      null,
      h("i.swatch", { style: { background: colorFor(svc.service) } }),
      h("a", { href: href(`/service/${encodeURIComponent(svc.service)}`), "data-testid": "service-link" }, svc.service),
    ),
    h("td", null, h(`span.tag.tag-${svc.kind}`, null, svc.kind)),
    h("td.num", { "data-sort": svc.requests }, fmtNum(svc.requests)),
    h("td.num", { "data-col": "rate", "data-sort": svc.rate_per_s }, `${fmtNum(svc.rate_per_s)}/s`),
    h("td.num", { "data-sort": svc.errors }, fmtNum(svc.errors)),
    h("td.num", { "data-col": "error_rate", "data-sort": svc.error_rate ?? -1, class: errCls }, fmtPct(svc.error_rate)),
    h("td.num", { "data-col": "p50", "data-sort": svc.p50_ms ?? -1 }, fmtMs(svc.p50_ms)),
    h("td.num", { "data-col": "p95", "data-sort": svc.p95_ms ?? -1 }, fmtMs(svc.p95_ms)),
    h("td.num", { "data-col": "p99", "data-sort": svc.p99_ms ?? -1 }, fmtMs(svc.p99_ms)),
    h("td.num", { "data-sort": svc.processes }, fmtNum(svc.processes)),
    h("td.spark", null, sparkline(spark.requests || [], { errors: spark.errors || [], title: `${svc.service}: requests (line) and errors (red) per bucket`, width: 140 })),
    h(
      "td.links",
      null,
      svc.kind === "otel" ? h("a", { href: href("/traces", { service: svc.service }) }, "traces") : null,
      " ",
      h("a", { href: href("/logs", { service: svc.service }) }, "logs"),
      maxErr && svc.errors ? [" ", h("a", { href: href("/traces", { service: svc.service, status: "error" }) }, "errors")] : null,
    ),
  );
}
