// Sensors: each sensor's rates and drops by cause, read from its `/metrics` by the console
// (rates between the console's last two readings), its last flow in ClickHouse, and its flow
// rates over the range from the flows table. An unreachable sensor is shown in red, a silent
// one in orange, so an operator sees a sensor that loses packets or stopped sending.

import * as api from "../api";
import { errorBox, h, loading, replace } from "../dom";
import { si, utc, duration } from "../format";
import { Ctx } from "../page";
import { commonOr } from "../query";
import { update } from "../state";
import { picker } from "../timerange";

/** A sensor silent for longer than this is flagged. */
const STALE_SECONDS = 300;
/** How often the page reads the sensors again (rates need two readings). */
const REFRESH_SECONDS = 5;

const rate = (v: number | null | undefined) => (v === null || v === undefined ? "…" : si(v));

function dropsCell(m: api.SensorMetrics | null, drops: Record<string, number> | null): HTMLElement {
  if (!m) return h("td", { class: "drops" }, h("span", { class: "hint" }, "no metrics_url in the console config"));
  if (!drops) return h("td", { class: "drops" }, "–");
  const list = Object.entries(drops).filter(([, v]) => v > 0);
  const per = m.drops_per_sec ?? {};
  return h(
    "td",
    { class: list.length ? "drops bad" : "drops" },
    list.length === 0
      ? "none"
      : list.map(([k, v]) => h("div", { class: "drop", "data-cause": k }, `${k}: ${si(v)}`, per[k] !== undefined ? ` (${si(per[k])}/s)` : "")),
  );
}

function metricsCells(s: api.Sensor): HTMLElement[] {
  const m = s.metrics;
  if (!m) return [h("td", { class: "hint", colspan: 4 }, "not configured ([[sensors]] in the console config)")];
  if (!m.reachable) {
    const why = m.error ?? "no answer";
    return [h("td", { class: "unreachable", colspan: 4 }, why.startsWith("unreachable") ? why : "unreachable: " + why, m.scraped_at ? ` (last read ${utc(m.scraped_at * 1000)} UTC)` : "")];
  }
  return [
    h("td", { class: "reachable" }, "up", m.interval_secs ? "" : h("span", { class: "hint" }, " (rates after the next reading)")),
    h("td", { class: "num packets-rate" }, rate(m.packets_per_sec)),
    h("td", { class: "num bits-rate" }, rate(m.bits_per_sec)),
    h("td", { class: "num flows-rate" }, rate(m.flows_per_sec)),
  ];
}

function row(s: api.Sensor, now: number): HTMLElement {
  const last = s.last_flow ?? s.last_seen;
  const age = last ? now - last : Infinity;
  const unreachable = s.metrics !== null && !s.metrics.reachable;
  return h(
    "tr",
    { class: unreachable ? "unreachable" : age > STALE_SECONDS ? "stale" : "", "data-sensor": s.sensor_id },
    h("td", {}, s.sensor_id),
    ...metricsCells(s),
    dropsCell(s.metrics, s.drops),
    h("td", { class: "last-flow" }, last ? utc(last * 1000) : "none", last && age > STALE_SECONDS ? h("span", { class: "warn" }, ` silent for ${duration(age * 1000)}`) : ""),
    h("td", { class: "num" }, s.flows_per_sec !== undefined ? si(s.flows_per_sec) : "–"),
    h("td", { class: "num" }, s.bytes_per_sec !== undefined ? si(s.bytes_per_sec * 8) : "–"),
  );
}

export function sensors(root: HTMLElement, ctx: Ctx): () => void {
  const c = commonOr(root, ctx.params, "sensors", "now-1h");
  if (!c) return () => {};
  const body = h("div", {}, loading());
  const note = h("p", { class: "hint" }, `Metrics are read from each sensor every ${REFRESH_SECONDS} s while this page is open; flows from ClickHouse over the range.`);
  replace(root, h("h1", {}, "Sensors"), picker(c.startSpec, c.endSpec, (s, e) => update({ start: s, end: e })), note, body);
  let ctl = new AbortController();
  const load = () => {
    ctl.abort();
    ctl = new AbortController();
    api.sensors(c.start, c.end, ctl.signal).then(
      (r) => {
        if (r.sensors.length === 0) {
          replace(body, h("p", { class: "empty" }, "No sensor configured and none sent flows in this range."));
          return;
        }
        const now = Date.now() / 1000;
        const head = ["Sensor", "Metrics", "Packets/s", "bits/s", "Flows/s", "Drops by cause (total, rate)", "Last flow (UTC)", "Stored flows/s", "Stored bits/s"];
        replace(
          body,
          h(
            "table",
            { class: "data sensors-table" },
            h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))),
            h("tbody", {}, r.sensors.map((s) => row(s, now))),
          ),
        );
      },
      (e) => {
        if ((e as Error).name !== "AbortError") replace(body, errorBox("Could not load sensors", e));
      },
    );
  };
  load();
  const timer = window.setInterval(load, REFRESH_SECONDS * 1000);
  return () => {
    ctl.abort();
    window.clearInterval(timer);
  };
}
