// app.js — the shell of Explore: header (nav, global search, time range), the router over the
// history API (deep links, pushState for in-app links, popstate re-renders), and the life cycle
// of a screen: <main id="screen" data-screen data-state>, its SQL panel, its abort signal.

import { h, fill, href, notice } from "./dom.js";
import { get, ApiError } from "./api.js";
import { SqlPanel } from "./sql-panel.js";
import { timeRangePicker } from "./timerange.js";

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
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { controller };
  const { screen, arg } = route(location.pathname);
  picker.sync();
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
      const result = await get(path, params, { signal: controller.signal });
      if (seq === renderSeq) sql.add(result.queries);
      return result;
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
    notice("error", text),
    notFound ? h("p.muted", null, "It may lie outside the time range: widen it above, or ", h("a", { href: href("/traces") }, "search traces"), ".") : null,
  );
  if (!(err instanceof ApiError)) console.error(err);
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
