// trace.js — the trace view: a virtualised waterfall (Gantt) of every span across services as a
// collapsible tree (fixed row height, only the visible window + overscan in the DOM, tree order and
// depth computed once), service colours, the critical path, a time axis zoomable by dragging,
// find-in-trace, the selected span's details (span-details.js) and the logs of the trace beside it.

import { h, fill, fmtMs, fmtNum, colorFor, registerColors, href, notice, fmtTime, shortId } from "./dom.js";
import { niceTicks } from "./chart.js";
import { spanDetails, logLine } from "./span-details.js";

const ROW = 24;
const OVERSCAN = 12;
const INDENT = 12;
const MAX_INDENT_DEPTH = 24;

export async function render(ctx) {
  const id = ctx.arg.toLowerCase();
  ctx.title(`Trace ${shortId(id)}`);
  const { data } = await ctx.load(`trace/${encodeURIComponent(id)}`);
  const spans = data.spans || [];
  registerColors(data.services || spans.map((sp) => sp.service));
  if (!spans.length) {
    fill(ctx.body, h("h1", null, "Trace"), notice("empty", `Trace ${id} has no span.`));
    ctx.setState("notfound");
    return;
  }
  const tree = buildTree(spans);
  const view = new Waterfall(data, tree, (index, reveal = false) => select(index, reveal));
  const details = h("div.span-details", { "data-testid": "span-details" }, h("p.muted", null, "Select a span to see its attributes, events and logs."));
  const logs = data.logs || [];
  const logList = h("div.trace-logs", { "data-testid": "trace-logs" });
  let selected = -1;

  const renderLogs = () => {
    fill(
      logList,
      h("div.panel-head", null, h("h2", null, `Logs of the trace (${logs.length})`), h("a", { href: href("/logs", { trace_id: id }) }, "open in Logs")),
      logs.length
        ? h(
            "div.log-lines",
            null,
            logs
              .slice()
              .sort((a, b) => a.time_ns - b.time_ns)
              .map((row) => logLine(row, data.start_ns, selected >= 0 && row.span_id === spans[selected].span_id, () => {
                const index = tree.indexById.get(row.span_id);
                if (index !== undefined) select(index, true);
              })),
          )
        : notice("empty", "No log record carries this trace id."),
    );
  };

  function select(index, reveal = false) {
    selected = index;
    view.select(index, reveal);
    fill(details, spanDetails(spans[index], data, logs));
    renderLogs();
    ctx.setParams({ span: spans[index].span_id });
  }

  const errorOrder = tree.order.filter((i) => spans[i].status === "ERROR");
  function nextError() {
    const after = errorOrder.find((i) => tree.position[i] > (selected >= 0 ? tree.position[selected] : -1));
    select(after ?? errorOrder[0], true);
  }

  const root = spans[tree.order[0]];
  const errors = spans.filter((sp) => sp.status === "ERROR").length;
  const head = h(
    "div.screen-head.trace-head",
    null,
    h("h1", null, h("i.swatch.big", { style: { background: colorFor(root.service) } }), h("span", null, h("span.muted", null, `${root.service}: `), root.name)),
    h(
      "div.trace-meta",
      null,
      h("span.mono", { title: "trace id" }, id),
      h("span", null, fmtTime(data.start_ns)),
      h("span", null, "duration ", h("b", null, fmtMs(data.duration_ms))),
      h("span", null, h("b", null, fmtNum(spans.length)), " spans"),
      errors ? h("button.errors-button", { type: "button", "data-testid": "next-error", title: "select the next failed span", onclick: nextError }, h("b", null, errors), errors === 1 ? " error ›" : " errors ›") : null,
      h("span.legend", null, (data.services || []).map((name) => h("span.legend-item", null, h("i.swatch", { style: { background: colorFor(name) } }), name))),
    ),
  );
  fill(ctx.body, head, h("div.trace-layout", null, view.element, h("aside.trace-side", null, details, logList)));
  view.mount();
  renderLogs();
  const wanted = ctx.params.get("span");
  const wantedIndex = wanted ? tree.indexById.get(wanted) : undefined;
  if (wantedIndex !== undefined) select(wantedIndex, true);
  else {
    // the root's details, so the panel is never empty (the errors button jumps to failures)
    selected = tree.order[0];
    view.select(selected, false);
    fill(details, spanDetails(spans[selected], data, logs));
    renderLogs();
  }
  ctx.setState("ready");
  ctx.signal.addEventListener("abort", () => view.destroy());
}

/** Tree order (DFS, children by start), depth, subtree end and child count per span, once. */
export function buildTree(spans) {
  const indexById = new Map();
  spans.forEach((sp, i) => indexById.set(sp.span_id, i));
  const children = spans.map(() => []);
  const roots = [];
  spans.forEach((sp, i) => {
    const parent = sp.parent_span_id ? indexById.get(sp.parent_span_id) : undefined;
    if (parent === undefined || parent === i) roots.push(i);
    else children[parent].push(i);
  });
  const byStart = (a, b) => spans[a].start_ns - spans[b].start_ns;
  roots.sort(byStart);
  for (const list of children) if (list.length > 1) list.sort(byStart);
  const order = [];
  const depth = new Int32Array(spans.length);
  const stack = [];
  for (let r = roots.length - 1; r >= 0; r -= 1) stack.push([roots[r], 0]);
  const seen = new Uint8Array(spans.length);
  while (stack.length) {
    const [i, d] = stack.pop();
    if (seen[i]) continue; // defensive: a cycle in bad data
    seen[i] = 1;
    order.push(i);
    depth[i] = d;
    const list = children[i];
    for (let c = list.length - 1; c >= 0; c -= 1) stack.push([list[c], d + 1]);
  }
  // spans left out by a cycle are shown as roots
  spans.forEach((_, i) => { if (!seen[i]) { order.push(i); depth[i] = 0; } });
  const position = new Int32Array(spans.length);
  order.forEach((i, pos) => { position[i] = pos; });
  // subtreeEnd[pos]: the order position just after the subtree starting at pos
  const subtreeEnd = new Int32Array(order.length);
  for (let pos = order.length - 1; pos >= 0; pos -= 1) {
    let end = pos + 1;
    while (end < order.length && depth[order[end]] > depth[order[pos]]) end = subtreeEnd[end];
    subtreeEnd[pos] = end;
  }
  return { order, depth, children, indexById, position, subtreeEnd };
}

class Waterfall {
  constructor(data, tree, onSelect) {
    this.data = data;
    this.spans = data.spans;
    this.tree = tree;
    this.onSelect = onSelect;
    this.collapsed = new Set(); // order positions
    this.selected = -1;
    this.t0 = data.start_ns;
    this.total = Math.max(1, data.end_ns - data.start_ns);
    this.range = [-1, -1];
    this.canvas = h("div.wf-canvas");
    this.rows = h("div.wf-rows");
    this.scroller = h("div.wf-scroll", null, this.canvas);
    this.count = h("span.muted");
    this.path = h("div.wf-path", { "data-testid": "waterfall-path", title: "ancestors of the first row shown" });
    this.pathTop = -1;
    this.v0 = 0; // the time window shown, in ns from the trace start (drag on the axis zooms)
    this.v1 = this.total;
    this.grid = h("div.wf-gridlines");
    this.axis = h("div.wf-axis", { title: "drag to zoom into a time window" });
    this.unzoom = h("button", { type: "button", hidden: true, "data-testid": "reset-zoom", onclick: () => this.zoom(0, this.total) }, "reset zoom");
    this.canvas.append(this.grid, this.rows);
    this.element = h(
      "div.waterfall",
      { "data-testid": "waterfall", "data-span-count": this.spans.length },
      h(
        "div.wf-toolbar",
        null,
        h("button", { type: "button", onclick: () => this.collapseAll(false), "data-testid": "expand-all" }, "expand all"),
        h("button", { type: "button", onclick: () => this.collapseAll(true), "data-testid": "collapse-all" }, "collapse all"),
        h("span.wf-key", null, h("i.crit-key"), "critical path"),
        this.unzoom,
        this.findBox(),
        this.count,
      ),
      (this.header = h(
        "div.wf-header",
        null,
        h("div.wf-name", null, "Service: operation"),
        this.axis,
      )),
      this.path,
      this.scroller,
    );
    this.onScroll = () => {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.paint();
      });
    };
    this.scroller.addEventListener("scroll", this.onScroll, { passive: true });
    this.rows.addEventListener("click", (event) => {
      const toggle = event.target.closest("button[data-testid=toggle]");
      const row = event.target.closest("[data-testid=span-row]");
      if (!row) return;
      const index = Number(row.dataset.index);
      if (toggle) this.toggle(this.tree.position[index]);
      else this.onSelect(index);
    });
    this.rows.addEventListener("dblclick", (event) => {
      const row = event.target.closest("[data-testid=span-row]");
      if (!row || event.target.closest("button")) return;
      const sp = this.spans[Number(row.dataset.index)];
      const pad = Math.max(1000, (sp.end_ns - sp.start_ns) * 0.05);
      this.zoom(sp.start_ns - this.t0 - pad, sp.end_ns - this.t0 + pad);
    });
    this.axisDrag();
    this.element.addEventListener("keydown", (event) => this.key(event));
    this.element.tabIndex = 0;
    this.renderAxis();
    this.computeVisible();
  }

  /** Axis ticks and grid lines for the current window. */
  renderAxis() {
    const lo = this.v0 / 1e6, hi = this.v1 / 1e6;
    const ticks = niceTicks(lo, hi, 6).filter((v) => v >= lo - 1e-9 && v <= hi * 1.0001);
    const pct = (v) => (100 * (v - lo)) / (hi - lo || 1e-9);
    this.axis.replaceChildren(...ticks.map((v) => h("span.tick", { style: { left: `${pct(v)}%` } }, fmtMs(v))));
    this.grid.replaceChildren(...ticks.map((v) => h("i", { style: { left: `${pct(v)}%` } })));
  }

  /** Show the window [a, b] (ns from the trace start). */
  zoom(a, b) {
    this.v0 = Math.max(0, Math.min(a, b));
    this.v1 = Math.min(this.total, Math.max(a, b));
    if (this.v1 - this.v0 < 100) this.v1 = Math.min(this.total, this.v0 + 100);
    const zoomed = this.v0 > 0 || this.v1 < this.total;
    this.unzoom.hidden = !zoomed;
    if (zoomed) this.element.dataset.zoom = `${this.v0}-${this.v1}`;
    else delete this.element.dataset.zoom;
    this.renderAxis();
    this.paint(true);
  }

  axisDrag() {
    let start = null;
    const band = h("div.wf-band", { hidden: true });
    this.axis.append(band);
    const frac = (event) => {
      const box = this.axis.getBoundingClientRect();
      return Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
    };
    const move = (event) => {
      const f = frac(event);
      band.hidden = false;
      band.style.left = `${Math.min(start, f) * 100}%`;
      band.style.width = `${Math.abs(f - start) * 100}%`;
    };
    const up = (event) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      band.hidden = true;
      const f = frac(event);
      if (Math.abs(f - start) * this.axis.clientWidth > 4) {
        const span = this.v1 - this.v0;
        this.zoom(this.v0 + Math.min(start, f) * span, this.v0 + Math.max(start, f) * span);
      }
      this.axis.append(band);
    };
    this.axis.addEventListener("mousedown", (event) => {
      event.preventDefault();
      start = frac(event);
      window.addEventListener("mousemove", move);
      window.addEventListener("mouseup", up);
    });
  }

  mount() {
    this.resize = new ResizeObserver(() => {
      // the header's axis lines up with the rows: leave room for the rows' scrollbar
      this.header.style.paddingRight = `${this.scroller.offsetWidth - this.scroller.clientWidth}px`;
      this.paint(true);
    });
    this.resize.observe(this.scroller);
    this.paint(true);
  }

  destroy() {
    if (this.resize) this.resize.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  /** Find in the trace: spans whose service, name or attribute values hold the text. */
  findBox() {
    const input = h("input.wf-find", { type: "search", placeholder: "find span…", "data-testid": "find-span", "aria-label": "find a span" });
    const info = h("span.muted.find-info");
    const step = (dir) => {
      if (!this.matchList || !this.matchList.length) return;
      const current = this.selected >= 0 ? this.tree.position[this.selected] : -1;
      const list = this.matchList;
      let next = dir > 0 ? list.find((i) => this.tree.position[i] > current) : [...list].reverse().find((i) => this.tree.position[i] < current);
      if (next === undefined) next = dir > 0 ? list[0] : list[list.length - 1];
      this.onSelect(next, true);
      info.textContent = `${list.indexOf(next) + 1} / ${list.length}`;
    };
    input.addEventListener("input", () => {
      const text = input.value.trim().toLowerCase();
      if (!text) {
        this.matches = null;
        this.matchList = null;
        info.textContent = "";
      } else {
        const hit = (sp) => `${sp.service} ${sp.name} ${sp.span_id} ${Object.values(sp.attributes || {}).join(" ")}`.toLowerCase().includes(text);
        this.matchList = this.tree.order.filter((i) => hit(this.spans[i]));
        this.matches = new Set(this.matchList);
        info.textContent = `${this.matchList.length} found`;
      }
      this.paint(true);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        step(event.shiftKey ? -1 : 1);
      }
    });
    return h("span.wf-findbox", null, input, h("button", { type: "button", title: "previous (Shift+Enter)", onclick: () => step(-1) }, "‹"), h("button", { type: "button", title: "next (Enter)", onclick: () => step(1) }, "›"), info);
  }

  /** The visible list: order positions, skipping the descendants of collapsed spans. */
  computeVisible() {
    const { order, subtreeEnd } = this.tree;
    const visible = [];
    for (let pos = 0; pos < order.length; ) {
      visible.push(pos);
      pos = this.collapsed.has(pos) ? subtreeEnd[pos] : pos + 1;
    }
    this.visible = visible;
    this.canvas.style.height = `${visible.length * ROW}px`;
    this.scroller.style.height = `min(${visible.length * ROW + 2}px, calc(100vh - 252px))`;
    const maxTop = Math.max(0, visible.length * ROW - (this.scroller.clientHeight || 0));
    if (this.scroller.scrollTop > maxTop) this.scroller.scrollTop = maxTop;
    this.count.textContent = `${fmtNum(visible.length)} of ${fmtNum(order.length)} rows shown`;
    this.range = [-1, -1];
  }

  toggle(pos) {
    if (this.collapsed.has(pos)) this.collapsed.delete(pos);
    else this.collapsed.add(pos);
    this.computeVisible();
    this.paint(true);
  }

  collapseAll(collapse) {
    this.collapsed.clear();
    if (collapse) {
      const { order, children, depth } = this.tree;
      order.forEach((i, pos) => { if (children[i].length && depth[i] >= 1) this.collapsed.add(pos); });
    }
    this.computeVisible();
    this.paint(true);
  }

  /** Select a span; reveal=true expands its ancestors and scrolls it into view. */
  select(index, reveal) {
    this.selected = index;
    if (reveal) {
      const { position, indexById } = this.tree;
      let changed = false;
      let parent = this.spans[index].parent_span_id ? indexById.get(this.spans[index].parent_span_id) : undefined;
      while (parent !== undefined) {
        if (this.collapsed.delete(position[parent])) changed = true;
        const next = this.spans[parent].parent_span_id;
        parent = next ? indexById.get(next) : undefined;
      }
      if (changed) this.computeVisible();
      const row = this.visible.indexOf(position[index]);
      const top = row * ROW;
      if (top < this.scroller.scrollTop || top > this.scroller.scrollTop + this.scroller.clientHeight - ROW) this.scroller.scrollTop = Math.max(0, top - this.scroller.clientHeight / 3);
    }
    this.paint(true);
  }

  key(event) {
    if (!["ArrowDown", "ArrowUp", "ArrowLeft", "ArrowRight"].includes(event.key) || this.selected < 0) return;
    event.preventDefault();
    const pos = this.tree.position[this.selected];
    const row = this.visible.indexOf(pos);
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      const isCollapsed = this.collapsed.has(pos);
      if (this.tree.children[this.selected].length && isCollapsed === (event.key === "ArrowRight")) this.toggle(pos);
      return;
    }
    const next = this.visible[row + (event.key === "ArrowDown" ? 1 : -1)];
    if (next !== undefined) this.onSelect(this.tree.order[next]);
  }

  /** Render the rows in the scroll window (+ overscan); force=true repaints the same window. */
  paint(force = false) {
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.visible.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    if (!force && first === this.range[0] && last === this.range[1]) return;
    this.range = [first, last];
    const fragment = document.createDocumentFragment();
    for (let r = first; r < last; r += 1) fragment.append(this.row(r));
    this.rows.replaceChildren(fragment);
    this.paintPath(Math.min(this.visible.length - 1, Math.floor(top / ROW)), force);
  }

  /** Above the rows: the ancestors of the first row shown (context while scrolling deep). */
  paintPath(topRow, force) {
    if (!force && topRow === this.pathTop) return;
    this.pathTop = topRow;
    const chain = [];
    const pos = this.visible[topRow];
    if (pos !== undefined) {
      const { indexById } = this.tree;
      let parentId = this.spans[this.tree.order[pos]].parent_span_id;
      while (parentId && chain.length < 64) {
        const parent = indexById.get(parentId);
        if (parent === undefined) break;
        chain.unshift(parent);
        parentId = this.spans[parent].parent_span_id;
      }
    }
    const shown = chain.length > 6 ? [...chain.slice(0, 2), null, ...chain.slice(-3)] : chain;
    this.path.replaceChildren(
      ...(chain.length ? [h("span.muted", null, "in ")] : []),
      ...shown.flatMap((i, k) => [
        k ? h("span.sep", null, " › ") : null,
        i === null
          ? h("span.muted", null, "…")
          : h("a.crumb", { href: "#", onclick: (event) => { event.preventDefault(); this.onSelect(i, true); } }, h("i.svc-bar", { style: { background: colorFor(this.spans[i].service) } }), `${this.spans[i].service}: ${this.spans[i].name}`),
      ]).filter(Boolean),
    );
    if (!chain.length) this.path.textContent = "top level";
    this.path.classList.toggle("empty", !chain.length);
  }

  row(r) {
    const pos = this.visible[r];
    const { order, depth, children } = this.tree;
    const i = order[pos];
    const sp = this.spans[i];
    const d = depth[i];
    const color = colorFor(sp.service);
    const span = this.v1 - this.v0;
    const rawLeft = (100 * (sp.start_ns - this.t0 - this.v0)) / span;
    const rawRight = (100 * (sp.end_ns - this.t0 - this.v0)) / span;
    const left = Math.max(-1, Math.min(101, rawLeft));
    const width = Math.max(0.1, Math.min(101, rawRight) - left);
    const hasChildren = children[i].length > 0;
    const collapsed = this.collapsed.has(pos);
    const place = left + width < 80 ? "right" : left > 14 ? "left" : "inside";
    const error = sp.status === "ERROR";
    return h(
      "div.span-row",
      {
        "data-testid": "span-row",
        "data-span-id": sp.span_id,
        "data-parent-span-id": sp.parent_span_id || "",
        "data-depth": d,
        "data-service": sp.service,
        "data-critical": sp.critical ? "true" : undefined,
        "data-index": i,
        "data-status": sp.status,
        class: [i === this.selected ? "selected" : "", sp.critical ? "critical" : "", error ? "error" : "", this.matches && this.matches.has(i) ? "match" : ""].filter(Boolean).join(" ") || undefined,
        style: { top: `${r * ROW}px` },
        title: `${sp.service}: ${sp.name} — ${fmtMs(sp.duration_ms)}`,
      },
      h(
        "div.wf-name",
        { style: { paddingLeft: `${4 + Math.min(d, MAX_INDENT_DEPTH) * INDENT}px` } },
        d > MAX_INDENT_DEPTH ? h("span.deep", null, `${d}›`) : null,
        hasChildren
          ? h("button.toggle", { type: "button", "data-testid": "toggle", "aria-expanded": collapsed ? "false" : "true", "aria-label": collapsed ? "expand" : "collapse" }, collapsed ? "▸" : "▾")
          : h("span.toggle-space"),
        h("i.svc-bar", { style: { background: color } }),
        h("span.svc", null, sp.service),
        h("span.op", null, sp.name),
        collapsed ? h("span.hidden-count", null, `+${this.tree.subtreeEnd[pos] - pos - 1}`) : null,
        error ? h("span.err-icon", { title: sp.status_message || "error" }, "!") : null,
      ),
      h(
        "div.wf-track",
        null,
        h("div.wf-bar", { style: { left: `${left}%`, width: `${width}%`, background: color } }),
        h(
          `span.wf-dur.${place}`,
          { style: place === "right" ? { left: `calc(${left + width}% + 4px)` } : place === "left" ? { right: `calc(${100 - left}% + 4px)` } : { right: `calc(${100 - left - width}% + 4px)` } },
          fmtMs(sp.duration_ms),
        ),
      ),
    );
  }
}
