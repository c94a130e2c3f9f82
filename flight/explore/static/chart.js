// chart.js — SVG charts: a time-series line chart (axes, time ticks, several series with a
// legend, a hover readout) and a sparkline for table cells. Null values break a line.

import { h, s, fill, fmtNum, seriesColor, toMs } from "./dom.js";

const MARGIN = { top: 10, right: 16, bottom: 26, left: 56 };
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
];

/**
 * A line chart. series: [{name, points: [[time, value|null], ...], color?, attrs?}].
 * options: {height, unit, format(v)}. Returns a wrapper element holding svg[data-testid=chart].
 * Each series is a path[data-testid=series] with data-points = its non-null points.
 */
export function lineChart(series, options = {}) {
  const height = options.height || 260;
  const format = options.format || ((v) => fmtNum(v) + (options.unit ? ` ${options.unit}` : ""));
  const prepared = series.map((one, i) => ({
    ...one,
    color: one.color || seriesColor(i),
    pts: one.points.map(([t, v]) => [toMs(t), v === null || v === undefined ? null : Number(v)]),
  }));
  const wrapper = h("div.chart");
  const tooltip = h("div.chart-tip", { hidden: true });
  const legend = h(
    "div.legend",
    null,
    prepared.map((one) => h("span.legend-item", null, h("i.swatch", { style: { background: one.color } }), one.name)),
  );
  let width = options.width || 900;
  const draw = () => {
    const svg = drawChart(prepared, width, height, format, tooltip);
    const old = wrapper.querySelector("svg");
    if (old) old.replaceWith(svg);
    else wrapper.prepend(svg);
  };
  wrapper.append(tooltip);
  if (prepared.length > 1 || options.legend) wrapper.append(legend);
  draw();
  const observer = new ResizeObserver(() => {
    const w = Math.floor(wrapper.clientWidth);
    if (w > 100 && Math.abs(w - width) > 2) {
      width = w;
      draw();
    }
  });
  observer.observe(wrapper);
  return wrapper;
}

function drawChart(series, width, height, format, tooltip) {
  const innerW = Math.max(10, width - MARGIN.left - MARGIN.right);
  const innerH = height - MARGIN.top - MARGIN.bottom;
  let tMin = Infinity, tMax = -Infinity, vMin = 0, vMax = -Infinity;
  for (const one of series)
    for (const [t, v] of one.pts) {
      if (Number.isNaN(t)) continue;
      tMin = Math.min(tMin, t);
      tMax = Math.max(tMax, t);
      if (v !== null && Number.isFinite(v)) {
        vMin = Math.min(vMin, v);
        vMax = Math.max(vMax, v);
      }
    }
  if (!Number.isFinite(tMin)) { tMin = Date.now() - HOUR; tMax = Date.now(); }
  if (tMax === tMin) { tMin -= MINUTE; tMax += MINUTE; }
  if (!Number.isFinite(vMax) || vMax === vMin) vMax = vMin + 1;
  const yTicks = niceTicks(vMin, vMax, 5);
  vMax = Math.max(vMax, yTicks[yTicks.length - 1]);
  vMin = Math.min(vMin, yTicks[0]);
  const x = (t) => MARGIN.left + ((t - tMin) / (tMax - tMin)) * innerW;
  const y = (v) => MARGIN.top + innerH - ((v - vMin) / (vMax - vMin)) * innerH;

  const svg = s("svg", { "data-testid": "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const grid = s("g.grid");
  for (const v of yTicks) {
    grid.append(s("line", { x1: MARGIN.left, x2: MARGIN.left + innerW, y1: y(v), y2: y(v) }));
    grid.append(s("text.ytick", { x: MARGIN.left - 6, y: y(v) + 4, "text-anchor": "end" }, fmtNum(v)));
  }
  for (const { t, label } of timeTicks(tMin, tMax, Math.max(2, Math.floor(innerW / 110)))) {
    grid.append(s("line.xgrid", { x1: x(t), x2: x(t), y1: MARGIN.top, y2: MARGIN.top + innerH }));
    const anchor = x(t) > width - MARGIN.right - 24 ? "end" : x(t) < MARGIN.left + 24 ? "start" : "middle";
    grid.append(s("text.xtick", { x: x(t), y: height - 8, "text-anchor": anchor }, label));
  }
  grid.append(s("line.axis", { x1: MARGIN.left, x2: MARGIN.left + innerW, y1: MARGIN.top + innerH, y2: MARGIN.top + innerH }));
  svg.append(grid);

  for (const one of series) {
    let d = "";
    let pen = false;
    let count = 0;
    const dots = [];
    // sparse samples (no two in adjacent buckets) are joined across the empty buckets
    const valid = one.pts.map(([t, v]) => v !== null && Number.isFinite(v) && !Number.isNaN(t));
    const sparse = !valid.some((ok, i) => ok && valid[i + 1]);
    one.pts.forEach(([t, v], i) => {
      if (!valid[i]) { if (!sparse) pen = false; return; }
      if (sparse) dots.push([x(t), y(v)]);
      count += 1;
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      if (!sparse && !pen && !valid[i + 1]) dots.push([x(t), y(v)]);
      pen = true;
    });
    const attrs = { "data-testid": "series", "data-points": count, "data-series": one.name, d: d || "M0,0", stroke: one.color, fill: "none", "stroke-width": 1.6 };
    svg.append(s("path.line", { ...attrs, ...(one.attrs || {}) }));
    for (const [cx, cy] of dots) svg.append(s("circle", { cx, cy, r: 3, fill: one.color }));
  }

  const cursor = s("line.cursor", { y1: MARGIN.top, y2: MARGIN.top + innerH, visibility: "hidden" });
  const overlay = s("rect", { x: MARGIN.left, y: MARGIN.top, width: innerW, height: innerH, fill: "transparent" });
  svg.append(cursor, overlay);
  const times = [...new Set(series.flatMap((one) => one.pts.map(([t]) => t)))].filter((t) => !Number.isNaN(t)).sort((a, b) => a - b);
  overlay.addEventListener("mousemove", (event) => {
    if (!times.length) return;
    const box = svg.getBoundingClientRect();
    const t = tMin + ((event.clientX - box.left - MARGIN.left) / innerW) * (tMax - tMin);
    let best = times[0];
    for (const c of times) if (Math.abs(c - t) < Math.abs(best - t)) best = c;
    cursor.setAttribute("x1", x(best));
    cursor.setAttribute("x2", x(best));
    cursor.setAttribute("visibility", "visible");
    const rows = series.map((one) => {
      const hit = one.pts.find(([pt]) => pt === best);
      return h("div", null, h("i.swatch", { style: { background: one.color } }), `${one.name}: `, h("b", null, hit && hit[1] !== null ? format(hit[1]) : "–"));
    });
    fill(tooltip, h("div.tip-time", null, new Date(best).toLocaleString()), rows);
    tooltip.hidden = false;
    const left = x(best) + 12;
    tooltip.style.left = `${left + 220 > width ? x(best) - 232 : left}px`;
    tooltip.style.top = `${MARGIN.top}px`;
  });
  overlay.addEventListener("mouseleave", () => {
    cursor.setAttribute("visibility", "hidden");
    tooltip.hidden = true;
  });
  return svg;
}

/** Round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count) {
  const span = hi - lo;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => span / st <= count) || 10 * mag;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 0.5; v += step) out.push(Number(v.toPrecision(12)));
  if (out[out.length - 1] < hi) out.push(out[out.length - 1] + step);
  return out;
}

/** Time ticks aligned to round local times, about `count` of them. */
export function timeTicks(tMin, tMax, count) {
  const span = tMax - tMin;
  const step = TIME_STEPS.find((st) => span / st <= count) || 7 * DAY;
  const offset = new Date(tMin).getTimezoneOffset() * MINUTE;
  const first = Math.ceil((tMin - offset) / step) * step + offset;
  const ticks = [];
  const pad = (n) => String(n).padStart(2, "0");
  for (let t = first; t <= tMax; t += step) {
    const d = new Date(t);
    let label;
    if (step >= DAY) label = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    else if (step < MINUTE) label = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    else label = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (step < DAY && span > DAY && d.getHours() === 0 && d.getMinutes() === 0) label = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    ticks.push({ t, label });
  }
  return ticks;
}

/** A sparkline (svg[data-testid=sparkline]): values as a line, optional errors as red bars. */
export function sparkline(values, options = {}) {
  const width = options.width || 120;
  const height = options.height || 26;
  const errors = options.errors || [];
  const nums = values.map((v) => (v === null || v === undefined ? null : Number(v)));
  const max = Math.max(1e-9, ...nums.filter((v) => v !== null), ...errors.map(Number));
  const n = Math.max(1, nums.length - 1);
  const x = (i) => 1 + (i / n) * (width - 2);
  const y = (v) => height - 2 - (v / max) * (height - 4);
  const svg = s("svg.sparkline", { "data-testid": "sparkline", width, height, viewBox: `0 0 ${width} ${height}`, "data-points": nums.length });
  if (options.title) svg.append(s("title", null, options.title));
  const barW = Math.max(1, (width - 2) / Math.max(1, nums.length));
  errors.forEach((e, i) => {
    if (e > 0) svg.append(s("rect.spark-error", { x: x(i) - barW / 2, y: y(e), width: barW, height: height - 2 - y(e) }));
  });
  let d = "";
  let area = "";
  let pen = false;
  nums.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  if (nums.length && nums.every((v) => v !== null)) area = `${d}L${x(nums.length - 1).toFixed(1)},${height - 1}L${x(0).toFixed(1)},${height - 1}Z`;
  if (area) svg.append(s("path.spark-area", { d: area }));
  svg.append(s("path.spark-line", { d: d || `M0,${height - 2}L${width},${height - 2}` }));
  return svg;
}
