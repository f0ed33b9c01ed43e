// Sensors: each sensor's rates over the range and its drops by cause, so an operator sees a
// sensor that loses packets or stopped sending.

import * as api from "../api";
import { errorBox, h, loading, replace } from "../dom";
import { si, utc, duration } from "../format";
import { Ctx } from "../page";
import { commonOr } from "../query";
import { update } from "../state";
import { picker } from "../timerange";

/** A sensor silent for longer than this is flagged. */
const STALE_SECONDS = 300;

export function sensors(root: HTMLElement, ctx: Ctx): () => void {
  const c = commonOr(root, ctx.params, "sensors", "now-1h");
  if (!c) return () => {};
  const body = h("div", {}, loading());
  replace(root, h("h1", {}, "Sensors"), picker(c.startSpec, c.endSpec, (s, e) => update({ start: s, end: e })), body);
  const ctl = new AbortController();
  api.sensors(c.start, c.end, ctl.signal).then(
    (r) => {
      if (r.sensors.length === 0) {
        replace(body, h("p", { class: "empty" }, "No sensor sent flows in this range."));
        return;
      }
      const now = Date.now() / 1000;
      replace(
        body,
        h(
          "table",
          { class: "data sensors-table" },
          h("thead", {}, h("tr", {}, ["Sensor", "Last seen (UTC)", "Flows/s", "bits/s", "Packets/s", "Drops by cause"].map((x) => h("th", {}, x)))),
          h(
            "tbody",
            {},
            r.sensors.map((s) => {
              const age = now - s.last_seen;
              const drops = s.drops ? Object.entries(s.drops) : null;
              const lost = drops ? drops.reduce((a, [, v]) => a + Number(v), 0) : 0;
              return h(
                "tr",
                { class: age > STALE_SECONDS ? "stale" : "" },
                h("td", {}, s.sensor_id),
                h("td", {}, utc(s.last_seen * 1000), age > STALE_SECONDS ? h("span", { class: "warn" }, ` silent for ${duration(age * 1000)}`) : ""),
                h("td", { class: "num" }, si(s.flows_per_sec)),
                h("td", { class: "num" }, si(s.bytes_per_sec * 8)),
                h("td", { class: "num" }, si(s.packets_per_sec)),
                h(
                  "td",
                  { class: lost > 0 ? "drops bad" : "drops" },
                  drops === null ? h("span", { class: "hint" }, "not published by this sensor") : drops.length === 0 ? "none" : drops.map(([k, v]) => h("div", {}, `${k}: ${si(Number(v))}`)),
                ),
              );
            }),
          ),
        ),
      );
    },
    (e) => {
      if ((e as Error).name !== "AbortError") replace(body, errorBox("Could not load sensors", e));
    },
  );
  return () => ctl.abort();
}
