// app.js — the shell of Explore: header (nav, global search, time range), the router over the
// history API (deep links, pushState for in-app links, popstate re-renders), and the life cycle
// of a screen: <main id="screen" data-screen data-state>, its SQL panel, its abort signal.

import { h, fill, href, notice, fmtTime } from "./dom.js";
import { get, ApiError, dropFirst, accountElement } from "./api.js";
import { SqlPanel } from "./sql-panel.js";
import { timeRangePicker, DEFAULT_FROM } from "./timerange.js";

const SCREENS = {
  services: () => import("./services.js"),
  service: () => import("./service.js"),
  traces: () => import("./traces.js"),
  trace: () => import("./trace.js"),
  logs: () => import("./logs.js"),
  metrics: () => import("./metrics.js"),
  processes: () => import("./processes.js"),
  process: () => import("./process.js"),
  sql: () => import("./sql.js"),
};

const NAV = [
  ["services", "Services"],
  ["traces", "Traces"],
  ["logs", "Logs"],
  ["metrics", "Metrics"],
  ["processes", "Processes"],
  ["sql", "SQL"],
];

const HEX32 = /^[0-9a-f]{32}$/i;

/** The range a screen searches when the URL has none: a trace by id is looked up over 30 days (as its API). */
const TRACE_DEFAULT_FROM = "30d";
const defaultFrom = (screen) => (screen === "trace" ? TRACE_DEFAULT_FROM : DEFAULT_FROM);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Which screen a path shows, and its argument (service name, trace id, process id). */
export function route(pathname) {
  const parts = pathname.replace(/^\/+|\/+$/g, "").split("/");
  const head = parts[0] || "services";
  const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : null;
  if (["service", "trace", "process"].includes(head) && arg) return { screen: head, arg };
  if (["services", "traces", "logs", "metrics", "processes", "sql"].includes(head) && !arg) return { screen: head, arg: null };
  return { screen: null, arg: null };
}

const main = document.getElementById("screen");
let current = null; // {controller}
let renderSeq = 0;

/** Go to an in-app URL (pushState + render); replace=true to replace the history entry. */
export function navigate(url, replace = false) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
  window.scrollTo(0, 0);
}

/** Change query parameters of the current page without a new render (filters, live toggle). */
export function setParams(params, push = false) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(params)) {
    q.delete(k);
    if (Array.isArray(v)) v.filter((x) => x !== "").forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const qs = q.toString();
  const url = location.pathname + (qs ? `?${qs}` : "");
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

async function render() {
  const seq = ++renderSeq;
  if (seq > 1) dropFirst();
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { controller };
  const { screen, arg } = route(location.pathname);
  picker.sync(defaultFrom(screen));
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    const active = link.dataset.nav === screen || (screen === "service" && link.dataset.nav === "services") || (screen === "trace" && link.dataset.nav === "traces") || (screen === "process" && link.dataset.nav === "processes");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
    link.href = href(`/${link.dataset.nav}`, {});
  }
  const body = h("div.screen-body");
  const sql = new SqlPanel();
  main.dataset.screen = screen || "unknown";
  main.dataset.state = "loading";
  fill(main, body, sql.element);
  if (!screen) {
    main.dataset.state = "notfound";
    fill(body, h("h1", null, "Page not found"), notice("error", `Nothing lives at ${location.pathname}.`), h("p", null, h("a", { href: href("/services") }, "Go to services")));
    document.title = "Not found · Sirius Explore";
    return;
  }
  body.append(h("div.loading", null, "Loading…"));
  const ctx = {
    main,
    body,
    sql,
    arg,
    params: new URLSearchParams(location.search),
    signal: controller.signal,
    navigate,
    setParams,
    setState: (state) => {
      if (seq !== renderSeq) return;
      main.dataset.state = state;
      performance.mark(`explore:${screen}:${state}`); // for benchmarks: time to a ready screen
    },
    title: (text) => { document.title = `${text} · Sirius Explore`; },
    /** GET an endpoint with this screen's signal; its queries go to the SQL panel. */
    load: async (path, params = {}) => {
      try {
        const result = await get(path, params, { signal: controller.signal });
        if (seq === renderSeq) sql.add(result.queries);
        return result;
      } catch (err) {
        // a 404 or 400 lists the queries that ran (e.g. the lookup that found nothing)
        if (err instanceof ApiError && seq === renderSeq) sql.add(err.queries);
        throw err;
      }
    },
  };
  try {
    const module = await SCREENS[screen]();
    if (seq !== renderSeq) return;
    await module.render(ctx);
  } catch (err) {
    if (err.name === "AbortError" || seq !== renderSeq) return;
    showError(ctx, err);
  }
}

/** Show an error on the screen: 404 → notfound, else error with the server's message. */
export function showError(ctx, err) {
  const notFound = err instanceof ApiError && err.status === 404;
  ctx.setState(notFound ? "notfound" : "error");
  const text = err instanceof ApiError ? err.message : `${err.name}: ${err.message}`;
  fill(
    ctx.body,
    h("h1", null, notFound ? "Not found" : "Something went wrong"),
    notice("error", notFound && err.range ? notFoundText(text, err.range) : text),
    notFound ? widerRange(err.range) : null,
  );
  if (!(err instanceof ApiError)) console.error(err);
}

const DAY_MS = 86400000;

/** "trace … not found in the last 30 days (from … to …)": the server's reason with the range in words. */
function notFoundText(text, range) {
  const what = text.replace(/ not found in .*$/, "");
  const span = Date.parse(range.to) - Date.parse(range.from);
  const q = new URLSearchParams(location.search);
  const words = q.get("to") || !Number.isFinite(span) ? "the selected range" : `the last ${durationWords(span)}`;
  return `${what} was not found in ${words} (${fmtTime(range.from, false)} → ${fmtTime(range.to, false)}).`;
}

function durationWords(ms) {
  const units = [[DAY_MS, "day"], [3600000, "hour"], [60000, "minute"]];
  for (const [size, unit] of units) {
    const n = Math.round(ms / size);
    if (n >= 1 && Math.abs(ms - n * size) < size / 100) return n === 1 ? unit : `${n} ${unit}s`;
  }
  return `${Math.round(ms / 1000)} seconds`;
}

/** An offer to search again over a wider range (30 days, then a year), or the trace search. */
function widerRange(range) {
  const span = range ? Date.parse(range.to) - Date.parse(range.from) : NaN;
  const wider = !Number.isFinite(span) || span < 29 * DAY_MS ? ["30d", "the last 30 days"] : span < 360 * DAY_MS ? ["365d", "the last year"] : null;
  const params = Object.fromEntries(new URLSearchParams(location.search));
  return h(
    "p.muted",
    null,
    wider ? [h("a", { href: href(location.pathname, { ...params, from: wider[0], to: "" }, false), "data-testid": "wider-range" }, `Search ${wider[1]}`), ", widen the range above, or "] : "Widen the range above, or ",
    h("a", { href: href("/traces") }, "search traces"),
    ".",
  );
}

// ---- header -----------------------------------------------------------------------------

function onRangeChange({ from, to }) {
  setParams({ from, to }, true);
  render();
}

const picker = timeRangePicker(onRangeChange);

function globalSearch(event) {
  event.preventDefault();
  const value = event.target.elements.q.value.trim();
  if (!value) return;
  const bare = value.replace(/-/g, "");
  if (HEX32.test(value)) navigate(href(`/trace/${value.toLowerCase()}`));
  else if (UUID.test(value)) navigate(href(`/process/${value.toLowerCase()}`));
  else if (HEX32.test(bare) && value.includes("-")) navigate(href(`/process/${value.toLowerCase()}`));
  else navigate(href("/traces", { q: value }));
  event.target.reset();
}

function buildHeader() {
  const header = document.getElementById("top");
  fill(
    header,
    h("a.brand", { href: "/services", "data-nav-home": "" }, h("span.logo", null, "✦"), " Sirius ", h("span.muted", null, "Explore")),
    h("nav", null, NAV.map(([key, label]) => h("a", { href: `/${key}`, "data-nav": key }, label))),
    h(
      "form.global-search",
      { role: "search", onsubmit: globalSearch },
      h("input", { type: "search", name: "q", "data-testid": "global-search", placeholder: "trace id, process id or span name…", "aria-label": "search", autocomplete: "off" }),
    ),
    picker.element,
    accountElement(),
  );
}

// In-app links: same-origin paths outside /explore/ go through the router.
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/explore/")) return;
  event.preventDefault();
  if (link.dataset.navHome !== undefined) return navigate(href("/services"));
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener("popstate", render);

// "/" focuses the global search (unless typing somewhere already)
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, textarea, select, [contenteditable]")) return;
  event.preventDefault();
  document.querySelector("[data-testid=global-search]").focus();
});

buildHeader();
render();
