// process.js — one process: its facts and properties, a Perfetto trace download, its streams,
// the thread timeline of a chosen thread (thread_spans), its metrics and its latest log rows.

import { h, fill, href, notice, fmtTime, fmtAgo, fmtNum, shortId, colorFor, LEVELS } from "./dom.js";
import { apiUrl, download, post, storedKey } from "./api.js";
import { threadTimeline } from "./timeline.js";
import { propChips } from "./processes.js";
import { makeSortable } from "./table.js";

export async function render(ctx) {
  const id = ctx.arg.toLowerCase();
  ctx.title(`Process ${shortId(id)}`);
  // its logs and metrics do not depend on the process row: asked at the same time
  const logsCall = ctx.load("logs", { process: id, limit: 50 });
  const metricsCall = metricsQuery(ctx, id);
  for (const call of [logsCall, metricsCall]) call.catch(() => {}); // awaited below, or moot after a 404
  const { data } = await ctx.load(`process/${encodeURIComponent(id)}`);
  const p = data.process;
  const streams = data.streams || [];
  const threads = data.threads || [];
  const perfettoUrl = apiUrl(`process/${id}/perfetto`);
  const perfetto = h(
    "a.button",
    {
      href: perfettoUrl,
      download: `${id}.perfetto`,
      "data-testid": "perfetto-download",
      onclick: (event) => {
        if (!storedKey()) return; // no key: the browser downloads the link itself
        event.preventDefault();
        download(perfettoUrl, `${id}.perfetto`).catch((err) => alert(`Perfetto download failed: ${err.message}`));
      },
    },
    "⬇ Perfetto trace",
  );
  const head = h(
    "div.screen-head",
    null,
    h("h1", null, h("i.swatch.big", { style: { background: colorFor(p.service) } }), p.exe || p.service, h("span.muted.mono.small", null, ` ${id}`)),
    h("span.head-links", null, h("a", { href: href(`/service/${encodeURIComponent(p.service)}`) }, `service ${p.service}`), h("a", { href: href("/logs", { process: id }) }, "all logs"), perfetto),
  );
  const facts = h(
    "dl.facts.wide",
    null,
    h("dt", null, "Kind"), h("dd", null, h(`span.tag.tag-${p.kind}`, null, p.kind)),
    h("dt", null, "Computer"), h("dd", null, p.computer || "–"),
    h("dt", null, "User"), h("dd", null, p.username || "–"),
    h("dt", null, "Started"), h("dd", null, fmtTime(p.start_time), h("span.muted", null, ` (${fmtAgo(p.start_time)})`)),
    h("dt", null, "Last seen"), h("dd", null, fmtTime(p.last_seen), h("span.muted", null, ` (${fmtAgo(p.last_seen)})`)),
    h("dt", null, "Properties"), h("dd", null, propChips(p.properties, 50)),
  );
  const streamTable = h(
    "div",
    { "data-testid": "streams", class: "table-wrap" },
    makeSortable(
      h(
        "table.grid.compact",
        null,
        h("thead", null, h("tr", null, ["Stream", "Kind", "Tags", "Blocks", "Events"].map((t, i) => h(i >= 3 ? "th.num" : "th", null, t)))),
        h(
          "tbody",
          null,
          streams.map((st) =>
            h(
              "tr",
              { "data-stream-id": st.stream_id, "data-kind": st.kind },
              h("td.mono", { title: st.stream_id }, shortId(st.stream_id)),
              h("td", null, st.kind),
              h("td", null, (st.tags || []).map((t) => h("span.chip", null, t))),
              h("td.num", { "data-sort": st.blocks }, fmtNum(st.blocks)),
              h("td.num", { "data-sort": st.events }, fmtNum(st.events)),
            ),
          ),
        ),
      ),
    ),
  );
  const timelineArea = h("div.timeline-area");
  const threadSelect = h(
    "select",
    { "data-testid": "thread-select", "aria-label": "thread" },
    threads.map((t) => h("option", { value: t.stream_id, selected: t.stream_id === ctx.params.get("thread") }, t.thread_name || shortId(t.stream_id))),
  );
  const logsArea = h("div", { "data-testid": "process-logs" }, h("div.loading", null, "Loading…"));
  const metricsArea = h("div", { "data-testid": "process-metrics" }, h("div.loading", null, "Loading…"));
  fill(
    ctx.body,
    head,
    facts,
    h("section", null, h("h2", null, `Streams (${streams.length})`), streamTable),
    h(
      "section",
      null,
      h("div.panel-head", null, h("h2", null, "Thread timeline"), threads.length ? h("label", null, "thread ", threadSelect) : null),
      threads.length ? timelineArea : notice("empty", "This process has no native thread (cpu) stream."),
    ),
    h("div.two-col", null, h("section", null, h("h2", null, "Latest log"), logsArea), h("section", null, h("h2", null, "Metrics"), metricsArea)),
  );

  const loadThread = async () => {
    fill(timelineArea, h("div.loading", null, "Loading thread spans…"));
    try {
      const { data: spansData } = await ctx.load(`process/${id}/thread_spans`, { stream_id: threadSelect.value });
      const spans = spansData.spans || [];
      fill(timelineArea, spans.length ? null : notice("empty", "No span of this thread in this time range."), threadTimeline(spans));
    } catch (err) {
      if (err.name !== "AbortError") fill(timelineArea, notice("error", err.message), threadTimeline([]));
    }
  };
  threadSelect.addEventListener("change", () => {
    ctx.setParams({ thread: threadSelect.value });
    loadThread();
  });
  const jobs = [loadLogs(ctx, id, logsArea, logsCall), loadMetrics(ctx, metricsArea, metricsCall)];
  if (threads.length) jobs.push(loadThread());
  await Promise.all(jobs);
  ctx.setState("ready");
}

async function loadLogs(ctx, id, area, call) {
  try {
    const { data } = await call;
    const rows = data.rows || [];
    fill(
      area,
      rows.length
        ? h(
            "div.log-lines.wide",
            null,
            rows.map((row) =>
              h(
                "div.log-line",
                { "data-testid": "log-row" },
                h("span.log-offset", { title: fmtTime(row.time_ns) }, fmtTime(row.time_ns).slice(11)),
                h(`span.level.level-${row.level}`, null, row.level_name || LEVELS[row.level]),
                h("span.log-svc", null, row.target),
                h("span.log-msg", null, row.msg, row.trace_id ? [" ", h("a", { href: href(`/trace/${row.trace_id}`), "data-testid": "trace-link" }, "trace")] : null),
              ),
            ),
          )
        : notice("empty", "No log record in this time range."),
      rows.length ? h("p", null, h("a", { href: href("/logs", { process: id }) }, "all logs of this process →")) : null,
    );
  } catch (err) {
    if (err.name !== "AbortError") fill(area, notice("error", err.message));
  }
}

/** The process's measures (name, unit, samples, min/avg/max) through the SQL endpoint. */
function metricsQuery(ctx, id) {
  const sql = `SELECT name, unit, count(*) AS samples, min(value) AS min, avg(value) AS avg, max(value) AS max FROM measures WHERE process_id = '${id}' GROUP BY name, unit ORDER BY name`;
  const params = new URLSearchParams(location.search);
  return post("sql", { sql, from: params.get("from") || undefined, to: params.get("to") || undefined }, { signal: ctx.signal });
}

async function loadMetrics(ctx, area, call) {
  try {
    const result = await call;
    ctx.sql.add(result.queries);
    const rows = result.data.rows || [];
    fill(
      area,
      rows.length
        ? makeSortable(
            h(
              "table.grid.compact",
              null,
              h("thead", null, h("tr", null, ["Name", "Unit", "Samples", "Min", "Avg", "Max"].map((t, i) => h(i >= 2 ? "th.num" : "th", null, t)))),
              h(
                "tbody",
                null,
                rows.map(([name, unit, samples, min, avg, max]) =>
                  h(
                    "tr",
                    { "data-metric": name },
                    h("td", null, h("a", { href: href("/metrics", { name, kind: "measure" }) }, name)),
                    h("td", null, unit),
                    h("td.num", null, fmtNum(Number(samples))),
                    h("td.num", null, fmtNum(Number(min))),
                    h("td.num", null, fmtNum(Number(avg))),
                    h("td.num", null, fmtNum(Number(max))),
                  ),
                ),
              ),
            ),
          )
        : notice("empty", "No measure from this process in this time range."),
    );
  } catch (err) {
    if (err.name !== "AbortError") fill(area, notice("error", err.message));
  }
}
