// table.js — tables: click a header to sort (any table built by the screens, using each cell's
// data-sort value or its text), a result table for column/row data (SQL screen), and TSV / CSV
// export of such data.

import { h } from "./dom.js";

/** Make a <table> with <thead> sortable by clicking headers; cells may carry data-sort. */
export function makeSortable(table) {
  const headers = [...table.querySelectorAll("thead th")];
  headers.forEach((th, index) => {
    if (th.dataset.nosort !== undefined) return;
    th.classList.add("sortable");
    th.tabIndex = 0;
    const sort = () => {
      const asc = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach((other) => other.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = [...body.rows];
      const key = (row) => {
        const cell = row.cells[index];
        if (!cell) return "";
        const raw = cell.dataset.sort ?? cell.textContent.trim();
        const num = Number(raw);
        return raw !== "" && !Number.isNaN(num) ? num : raw.toLowerCase();
      };
      rows.sort((a, b) => compare(key(a), key(b)) * (asc ? 1 : -1));
      body.append(...rows);
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
  });
  return table;
}

function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "number") return -1;
  if (typeof b === "number") return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Text of one value for display and export. */
export function cellText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A result table: columns [{name, type}], rows [[...]] → table[data-testid=<testid>]. */
export function resultTable(columns, rows, testid = "result") {
  const numeric = columns.map((c) => /int|float|double|decimal|numeric/i.test(c.type || ""));
  const table = h(
    "table.grid.result",
    { "data-testid": testid },
    h("thead", null, h("tr", null, columns.map((c, i) => h("th", { title: c.type, class: numeric[i] ? "num" : undefined }, c.name)))),
    h(
      "tbody",
      null,
      rows.map((row) =>
        h(
          "tr",
          null,
          row.map((v, i) => {
            const text = cellText(v);
            // floats shown with 6 significant digits (the full value in the tooltip, copy and CSV)
            const shown = typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : text;
            const title = shown !== text || text.length > 80 ? text.slice(0, 2000) : undefined;
            return h("td", { class: numeric[i] ? "num" : v === null ? "null" : undefined, "data-sort": typeof v === "number" ? v : undefined, title }, v === null ? "null" : shown);
          }),
        ),
      ),
    ),
  );
  return makeSortable(table);
}

/** Tab-separated text (for the clipboard). */
export function toTSV(columns, rows) {
  const clean = (v) => cellText(v).replace(/[\t\n\r]/g, " ");
  return [columns.map((c) => c.name).join("\t"), ...rows.map((r) => r.map(clean).join("\t"))].join("\n");
}

/** RFC 4180 CSV. */
export function toCSV(columns, rows) {
  const quote = (v) => {
    const text = cellText(v);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [columns.map((c) => quote(c.name)).join(","), ...rows.map((r) => r.map(quote).join(","))].join("\r\n") + "\r\n";
}

/** Copy text to the clipboard (falls back to a hidden textarea where the API is refused). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h("textarea", { style: { position: "fixed", left: "-9999px" } });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
