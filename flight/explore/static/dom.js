// dom.js — the small toolkit every screen shares: an element builder, readable number /
// duration / time formatting, the stable service colour palette and URL building that keeps the
// page's time range.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Build an element: h("a.cls", {href, dataset: {...}, onclick}, child, "text", [more]). */
export function h(tag, attrs, ...children) {
  return build(document.createElement.bind(document), tag, attrs, children);
}

/** Same as h() for SVG elements. */
export function s(tag, attrs, ...children) {
  return build((name) => document.createElementNS(SVG_NS, name), tag, attrs, children);
}

function build(create, spec, attrs, children) {
  const [name, ...classes] = spec.split(".");
  const el = create(name);
  if (classes.length) el.setAttribute("class", classes.join(" "));
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "dataset") for (const [k, v] of Object.entries(value)) { if (v !== undefined && v !== null) el.dataset[k] = v; }
      else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.setAttribute("class", [el.getAttribute("class"), value].filter(Boolean).join(" "));
      else if (key === "value" || key === "checked" || key === "selected") el[key] = value;
      else el.setAttribute(key, value === true ? "" : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- formatting -------------------------------------------------------------------------

/** 0.0123 → "12 µs", 12.3 → "12.3 ms", 4567 → "4.57 s", 190000 → "3m 10s". */
export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  const a = Math.abs(ms);
  if (a === 0) return "0 ms";
  if (a < 1) return `${trim(ms * 1000)} µs`;
  if (a < 1000) return `${trim(ms)} ms`;
  if (a < 60000) return `${trim(ms / 1000)} s`;
  const m = Math.floor(a / 60000);
  if (m < 60) return `${m}m ${Math.round((a % 60000) / 1000)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

function trim(v) {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** A count or value: 1234567 → "1.23 M". */
export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toPrecision(digits)} G`;
  if (a >= 1e6) return `${(v / 1e6).toPrecision(digits)} M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(digits)} k`;
  if (Number.isInteger(v)) return String(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2).replace(/\.?0+$/, "");
  if (a === 0) return "0";
  return String(Number(v.toPrecision(2)));
}

export function fmtPct(ratio) {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "–";
  if (ratio === 0) return "0 %";
  const p = ratio * 100;
  if (p === 100) return "100 %";
  return `${p < 10 ? p.toFixed(2) : p.toFixed(1)} %`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** Parse an RFC 3339 string (ns precision allowed) or a number of ns into ms since the epoch. */
export function toMs(t) {
  if (t === null || t === undefined) return NaN;
  if (typeof t === "number") return t / 1e6;
  if (typeof t === "bigint") return Number(t / 1000n) / 1000;
  const text = String(t);
  if (/^\d+$/.test(text)) return Number(text) / 1e6;
  // keep milliseconds: Date.parse does not take 9 fractional digits everywhere
  return Date.parse(text.replace(/(\.\d{3})\d+/, "$1"));
}

/** Exact ns since the epoch (decimal string) of an RFC 3339 time with up to 9 fractional digits. */
export function exactNs(rfc3339) {
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})$/.exec(String(rfc3339));
  if (!m) return null;
  const seconds = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(seconds)) return null;
  return (BigInt(seconds) * 1000000n + BigInt((m[2] || "").padEnd(9, "0"))).toString();
}

/** RFC 3339 (UTC, 9 fractional digits) of ns since the epoch given as a BigInt or integer. */
export function nsToRfc3339(ns) {
  const big = BigInt(ns);
  const ms = Number(big / 1000000n);
  const frac = (((big % 1000000000n) + 1000000000n) % 1000000000n).toString().padStart(9, "0");
  return `${new Date(ms).toISOString().slice(0, 19)}.${frac}Z`;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** Absolute local time: "2026-12-06 20:07:56.123". */
export function fmtTime(t, withMs = true) {
  const ms = toMs(t);
  if (Number.isNaN(ms)) return String(t ?? "–");
  const d = new Date(ms);
  const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
}

/** Relative time: "12s ago", "3m ago", "2h ago", "4d ago". */
export function fmtAgo(t) {
  const ms = toMs(t);
  if (Number.isNaN(ms)) return "";
  const d = (Date.now() - ms) / 1000;
  if (d < 0) return "in the future";
  if (d < 60) return `${Math.round(d)}s ago`;
  if (d < 3600) return `${Math.round(d / 60)}m ago`;
  if (d < 86400) return `${Math.round(d / 3600)}h ago`;
  return `${Math.round(d / 86400)}d ago`;
}

/** A <time> showing the relative time with the absolute one as a tooltip (or the reverse). */
export function timeCell(t, relative = true) {
  const abs = fmtTime(t);
  return h("time", { datetime: typeof t === "string" ? t : undefined, title: relative ? abs : fmtAgo(t) }, relative ? fmtAgo(t) : abs);
}

// ---- colours ----------------------------------------------------------------------------

// 18 colours told apart side by side (no pure red: red marks errors).
const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
  "#17becf", "#bcbd22", "#7f7f7f", "#3949ab", "#00897b", "#f9a825",
  "#c2185b", "#37474f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5",
];

const assigned = new Map(); // name → palette index, for this page session
const taken = new Set();

function hashOf(name) {
  let hash = 2166136261;
  for (const ch of String(name)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 16777619);
  }
  return hash >>> 0;
}

function assign(name) {
  let index = assigned.get(name);
  if (index !== undefined) return index;
  index = hashOf(name) % PALETTE.length;
  // linear probing to a colour no other name of this session has (while there are free ones)
  if (taken.size < PALETTE.length) while (taken.has(index)) index = (index + 1) % PALETTE.length;
  assigned.set(name, index);
  taken.add(index);
  return index;
}

/**
 * Give these names (services shown together) their colours now, in sorted order, so that two
 * of them never share one (up to 18) and the choice does not depend on the order of the rows.
 */
export function registerColors(names) {
  for (const name of [...new Set(names.filter((x) => x !== null && x !== undefined).map(String))].sort()) assign(name);
}

/** A service's colour: the same for the whole page session, distinct from the others seen (see registerColors). */
export function colorFor(name) {
  return PALETTE[assign(String(name))];
}

/** A colour by hash alone (many names, e.g. thread span targets: they must not use up the service colours). */
export function hashColor(name) {
  return PALETTE[hashOf(name) % PALETTE.length];
}

/** Colour for series i of a chart. */
export function seriesColor(i) {
  return PALETTE[i % PALETTE.length];
}

export const LEVELS = { 1: "FATAL", 2: "ERROR", 3: "WARN", 4: "INFO", 5: "DEBUG", 6: "TRACE" };

// ---- URLs -------------------------------------------------------------------------------

/** The current page's time range parameters (from/to) as an object. */
export function rangeParams() {
  const q = new URLSearchParams(location.search);
  const out = {};
  for (const key of ["from", "to"]) if (q.get(key)) out[key] = q.get(key);
  return out;
}

/** Build an in-app URL keeping the time range: href("/traces", {service: "x"}). */
export function href(path, params = {}, keepRange = true) {
  const q = new URLSearchParams();
  const merged = keepRange ? { ...rangeParams(), ...params } : params;
  for (const [k, v] of Object.entries(merged)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => x !== "" && q.append(k, x));
    else q.set(k, v);
  }
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}

/** A short id for display: first 8 characters. */
export function shortId(id) {
  return id ? String(id).slice(0, 8) : "–";
}

/** A visible "loading", "empty" or "error" message. */
export function notice(kind, text) {
  return h(`div.notice.notice-${kind}`, { role: kind === "error" ? "alert" : "status" }, text);
}
