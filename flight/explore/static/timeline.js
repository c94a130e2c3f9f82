// timeline.js — a thread timeline / flame chart on a canvas: spans stacked by depth on a time
// axis; wheel zooms around the cursor, dragging pans, double-click resets, hovering shows the
// span. Wrapped in [data-testid=thread-timeline] with data-span-count.

import { h, fmtMs, hashColor } from "./dom.js";
import { niceTicks } from "./chart.js";

const ROW_H = 18;
const AXIS_H = 22;

/** spans: [{name, target, depth, begin_ns, end_ns, duration_ms}] → an element. */
export function threadTimeline(spans) {
  const canvas = h("canvas");
  const tip = h("div.chart-tip", { hidden: true });
  const hint = h("div.muted.small", null, "wheel: zoom · drag: pan · double-click: reset");
  const element = h("div.thread-timeline", { "data-testid": "thread-timeline", "data-span-count": spans.length }, h("div.timeline-scroll", null, canvas), tip, hint);
  if (!spans.length) return element;
  const t0 = Math.min(...spans.map((sp) => sp.begin_ns));
  const t1 = Math.max(...spans.map((sp) => sp.end_ns));
  const items = spans.map((sp) => ({ ...sp, b: sp.begin_ns - t0, e: sp.end_ns - t0 })).sort((a, b) => a.depth - b.depth || a.b - b.b);
  const maxDepth = Math.max(...items.map((sp) => sp.depth || 0));
  const full = Math.max(1, t1 - t0);
  let view = [0, full];
  let width = 900;
  const height = AXIS_H + (maxDepth + 1) * ROW_H + 4;

  const draw = () => {
    const ratio = window.devicePixelRatio || 1;
    width = Math.max(200, element.clientWidth || 900);
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const [v0, v1] = view;
    const scale = width / (v1 - v0);
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "middle";
    // axis: offsets from the first span, in ms
    const ticks = niceTicks(v0 / 1e6, v1 / 1e6, Math.max(2, Math.floor(width / 110)));
    g.fillStyle = "#f6f7f9";
    g.fillRect(0, 0, width, AXIS_H);
    for (const ms of ticks) {
      const x = (ms * 1e6 - v0) * scale;
      if (x < 0 || x > width) continue;
      g.fillStyle = "#e3e6ea";
      g.fillRect(Math.round(x), AXIS_H, 1, height - AXIS_H);
      g.fillStyle = "#555";
      g.fillText(fmtMs(ms), x + 3, AXIS_H / 2);
    }
    for (const sp of items) {
      if (sp.e < v0 || sp.b > v1) continue;
      const x = (sp.b - v0) * scale;
      const w = Math.max(0.5, (sp.e - sp.b) * scale);
      const y = AXIS_H + sp.depth * ROW_H;
      g.fillStyle = hashColor(sp.target || sp.name);
      g.globalAlpha = 0.85;
      g.fillRect(x, y + 1, w, ROW_H - 2);
      g.globalAlpha = 1;
      if (w > 28) {
        g.save();
        g.beginPath();
        g.rect(Math.max(0, x), y, Math.min(w, width), ROW_H);
        g.clip();
        g.fillStyle = "#fff";
        g.fillText(`${sp.name} ${fmtMs(sp.duration_ms)}`, Math.max(0, x) + 3, y + ROW_H / 2);
        g.restore();
      }
    }
  };

  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  };
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const { x } = at(event);
    const [v0, v1] = view;
    const center = v0 + (x / width) * (v1 - v0);
    const factor = event.deltaY > 0 ? 1.25 : 0.8;
    const span = Math.min(full, Math.max(1000, (v1 - v0) * factor));
    let n0 = center - (x / width) * span;
    n0 = Math.max(0, Math.min(full - span, n0));
    view = [n0, n0 + span];
    element.dataset.zoom = (full / span).toFixed(2);
    draw();
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("mousedown", (event) => { drag = { x: event.clientX, view: [...view] }; canvas.classList.add("dragging"); });
  window.addEventListener("mouseup", () => { drag = null; canvas.classList.remove("dragging"); });
  canvas.addEventListener("mousemove", (event) => {
    if (drag) {
      const span = drag.view[1] - drag.view[0];
      let n0 = drag.view[0] - ((event.clientX - drag.x) / width) * span;
      n0 = Math.max(0, Math.min(full - span, n0));
      view = [n0, n0 + span];
      draw();
      tip.hidden = true;
      return;
    }
    const { x, y } = at(event);
    const depth = Math.floor((y - AXIS_H) / ROW_H);
    const t = view[0] + (x / width) * (view[1] - view[0]);
    const hit = items.find((sp) => sp.depth === depth && sp.b <= t && sp.e >= t);
    if (!hit) { tip.hidden = true; return; }
    tip.replaceChildren(h("b", null, hit.name), h("div", null, hit.target || ""), h("div", null, `${fmtMs(hit.duration_ms)} at +${fmtMs(hit.b / 1e6)}`));
    tip.hidden = false;
    const box = element.getBoundingClientRect();
    tip.style.left = `${Math.max(0, Math.min(event.clientX - box.left + 12, box.width - 250))}px`;
    tip.style.top = `${event.clientY - box.top + 14}px`;
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("dblclick", () => { view = [0, full]; delete element.dataset.zoom; draw(); });
  new ResizeObserver(() => { if (Math.abs((element.clientWidth || 0) - width) > 2) draw(); }).observe(element);
  draw();
  return element;
}
