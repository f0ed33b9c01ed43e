// Time ranges: presets ("last 6 hours"), free ranges typed as `now-2h`, `now` or an absolute
// UTC time, and absolute ranges set by dragging on a chart. Relative ranges are kept as text in
// the URL so a bookmarked "last hour" stays the last hour.

import { h } from "./dom";
import { utc } from "./format";

export const PRESETS: [string, string][] = [
  ["now-15m", "15 min"],
  ["now-1h", "1 hour"],
  ["now-6h", "6 hours"],
  ["now-24h", "24 hours"],
  ["now-7d", "7 days"],
  ["now-30d", "30 days"],
];

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Resolves `now`, `now-6h`, `now-30m`, epoch seconds or a UTC date/time to epoch ms. */
export function resolve(spec: string, now = Date.now()): number {
  const s = spec.trim();
  const rel = /^now(?:\s*-\s*(\d+)\s*([smhdw]))?$/.exec(s);
  if (rel) return rel[1] ? now - Number(rel[1]) * UNITS[rel[2]] * 1000 : now;
  if (/^\d{9,11}$/.test(s)) return Number(s) * 1000;
  const iso = s.includes("T") ? s : s.replace(" ", "T");
  const full = /^\d{4}-\d\d-\d\d$/.test(iso) ? iso + "T00:00:00" : iso;
  const t = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(full) ? full : full + "Z");
  if (Number.isNaN(t)) throw new Error(`"${spec}" is not a time (try now-6h, now, or 2026-12-06 08:00)`);
  return t;
}

export interface Range {
  start: number;
  end: number;
}

/** Resolves a (start, end) pair and checks it. */
export function resolveRange(start: string, end: string): Range {
  const now = Date.now();
  const r = { start: resolve(start, now), end: resolve(end, now) };
  if (r.end <= r.start) throw new Error(`the range ends (${utc(r.end)}) before it starts (${utc(r.start)})`);
  return r;
}

/** An absolute time as the URL keeps it ("2026-12-06T08:00:00Z"). */
export function absolute(ms: number): string {
  return new Date(Math.round(ms / 1000) * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/**
 * The picker: preset buttons plus two free-text fields. `onChange` gets the new specs.
 */
export function picker(start: string, end: string, onChange: (start: string, end: string) => void): HTMLElement {
  const from = h("input", { class: "time", value: start, "aria-label": "from", name: "from", size: 20 });
  const to = h("input", { class: "time", value: end, "aria-label": "to", name: "to", size: 20 });
  const err = h("span", { class: "inline-error" });
  const apply = () => {
    try {
      resolveRange(from.value, to.value);
      err.textContent = "";
      onChange(from.value.trim(), to.value.trim());
    } catch (e) {
      err.textContent = (e as Error).message;
    }
  };
  const onKey = (e: Event) => {
    if ((e as KeyboardEvent).key === "Enter") apply();
  };
  from.addEventListener("keydown", onKey);
  to.addEventListener("keydown", onKey);
  return h(
    "div",
    { class: "timerange" },
    PRESETS.map(([spec, label]) =>
      h(
        "button",
        {
          class: "preset" + (start === spec && end === "now" ? " active" : ""),
          onclick: () => onChange(spec, "now"),
        },
        label,
      ),
    ),
    h("label", {}, "from ", from),
    h("label", {}, "to ", to),
    h("button", { onclick: apply }, "Apply"),
    err,
  );
}
