// timerange.js — the time range picker: select[data-testid=range] with 15m … 7d and "custom"
// (two datetime inputs). The range lives in the page URL (from/to); changing it calls onChange.

import { h, fmtTime } from "./dom.js";

const PRESETS = ["15m", "1h", "6h", "24h", "7d"];
export const DEFAULT_FROM = "1h";

function toLocalInput(value) {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) return "";
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

/** Build the picker; onChange({from, to}) with to possibly "" (= now). */
export function timeRangePicker(onChange) {
  const select = h(
    "select",
    { "data-testid": "range", "aria-label": "time range" },
    PRESETS.map((p) => h("option", { value: p }, `last ${p}`)),
    h("option", { value: "custom" }, "custom…"),
  );
  const fromInput = h("input", { type: "datetime-local", step: 1, name: "range-from", "aria-label": "from" });
  const toInput = h("input", { type: "datetime-local", step: 1, name: "range-to", "aria-label": "to" });
  const apply = h("button", { type: "submit" }, "apply");
  const custom = h(
    "form.custom-range",
    {
      hidden: true,
      onsubmit: (event) => {
        event.preventDefault();
        if (!fromInput.value) return;
        const from = new Date(fromInput.value).toISOString();
        const to = toInput.value ? new Date(toInput.value).toISOString() : "";
        custom.hidden = true;
        onChange({ from, to });
      },
    },
    h("label", null, h("span", null, "from"), fromInput),
    h("label", null, h("span", null, "to (empty: now)"), toInput),
    h("div.actions", null, h("button", { type: "button", onclick: () => { custom.hidden = true; sync(); } }, "cancel"), apply),
  );
  const edit = h("button.edit-range", { type: "button", hidden: true, title: "edit the custom range", onclick: () => { custom.hidden = !custom.hidden; } }, "✎");
  select.addEventListener("change", () => {
    if (select.value === "custom") {
      custom.hidden = false;
      if (!fromInput.value) fromInput.value = toLocalInput(new Date(Date.now() - 3600000).toISOString());
      fromInput.focus();
      return;
    }
    custom.hidden = true;
    onChange({ from: select.value, to: "" });
  });
  const element = h("div.timerange", null, select, edit, custom);
  const customOption = select.querySelector("option[value=custom]");

  let lastDefault = DEFAULT_FROM;
  /** Reflect the URL's range; defaultFrom: the range the screen searches when the URL has none. */
  const sync = (defaultFrom = lastDefault) => {
    lastDefault = defaultFrom;
    const q = new URLSearchParams(location.search);
    const from = q.get("from") || defaultFrom;
    const to = q.get("to") || "";
    customOption.textContent = "custom…";
    edit.hidden = true;
    if (PRESETS.includes(from) && !to) {
      select.value = from;
      custom.hidden = true;
    } else {
      if (![...select.options].some((o) => o.value === from) && !Number.isNaN(Date.parse(from))) {
        select.value = "custom";
        fromInput.value = toLocalInput(from);
        toInput.value = to ? toLocalInput(to) : "";
        customOption.textContent = `${fmtTime(from, false)} → ${to ? fmtTime(to, false) : "now"}`;
        edit.hidden = false;
        custom.hidden = true;
      } else {
        // a relative range that is not a preset (e.g. 30m): show it as its own option
        let option = [...select.options].find((o) => o.value === from);
        if (!option) {
          option = h("option", { value: from }, `last ${from}`);
          select.insertBefore(option, select.lastChild);
        }
        select.value = from;
        custom.hidden = true;
      }
    }
  };
  sync();
  return { element, sync };
}
