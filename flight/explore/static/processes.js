// processes.js — the Processes screen: native and OTel processes seen in the range with their
// service, exe, computer, times and properties; filter by text or service.

import { h, fill, href, notice, timeCell, shortId, colorFor, registerColors } from "./dom.js";
import { makeSortable } from "./table.js";

export async function render(ctx) {
  ctx.title("Processes");
  const params = { q: ctx.params.get("q") || "", service: ctx.params.get("service") || "" };
  const form = h(
    "form.filter-bar",
    {
      "data-testid": "process-search",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        ctx.navigate(href("/processes", { q: String(data.get("q") || "").trim(), service: String(data.get("service") || "").trim() }));
      },
    },
    h("label", null, h("span", null, "Text"), h("input", { name: "q", type: "search", value: params.q, placeholder: "exe, computer, id…" })),
    h("label", null, h("span", null, "Service"), h("input", { name: "service", value: params.service, placeholder: "any" })),
    h("button.primary", { type: "submit" }, "Filter"),
  );
  const { data } = await ctx.load("processes", params);
  const processes = data.processes || [];
  registerColors(processes.map((p) => p.service));
  const head = h("div.screen-head", null, h("h1", null, "Processes"), h("span.muted", null, `${processes.length} seen`));
  if (!processes.length) {
    fill(ctx.body, head, form, notice("empty", "No process reported in this time range."));
    ctx.setState("empty");
    return;
  }
  const table = h(
    "table.grid",
    { "data-testid": "processes" },
    h("thead", null, h("tr", null, ["Process", "Service", "Kind", "Exe", "Computer", "User", "Started", "Last seen", "Properties"].map((t) => h("th", t === "Properties" ? { "data-nosort": "" } : null, t)))),
    h(
      "tbody",
      null,
      processes.map((p) =>
        h(
          "tr",
          { "data-process-id": p.process_id },
          h("td.mono", null, h("a", { href: href(`/process/${p.process_id}`), title: p.process_id, "data-testid": "process-link" }, shortId(p.process_id))),
          h("td.nowrap", null, h("i.swatch", { style: { background: colorFor(p.service) } }), h("a", { href: href(`/service/${encodeURIComponent(p.service)}`) }, p.service)),
          h("td", null, h(`span.tag.tag-${p.kind}`, null, p.kind)),
          h("td", null, p.exe),
          h("td", null, p.computer),
          h("td", null, p.username),
          h("td.nowrap", { "data-sort": p.start_time }, timeCell(p.start_time)),
          h("td.nowrap", { "data-sort": p.last_seen }, timeCell(p.last_seen)),
          h("td.props", null, propChips(p.properties)),
        ),
      ),
    ),
  );
  fill(ctx.body, head, form, h("div.table-wrap", null, makeSortable(table)));
  ctx.setState("ready");
}

export function propChips(props, max = 6) {
  const entries = Object.entries(props || {}).sort(([a], [b]) => a.localeCompare(b));
  return [
    entries.slice(0, max).map(([k, v]) => h("span.chip", { title: `${k}=${v}` }, h("span.muted", null, `${k}=`), typeof v === "object" ? JSON.stringify(v) : String(v))),
    entries.length > max ? h("span.muted", { title: entries.map(([k, v]) => `${k}=${v}`).join("\n") }, ` +${entries.length - max}`) : null,
  ];
}
