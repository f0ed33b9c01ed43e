// Alerts: list with filters (severity, rule, address, acknowledged, time), detail with the
// evidence and the linked flows, acknowledgement for admins. New alerts appear without a
// reload: from the server's event stream (JetStream `ALERTS`) when the console has `[nats]`,
// the list re-read every LIVE_POLL_SECONDS besides (acknowledgements by others, alerts missed
// while disconnected); without it, the list is re-read every POLL_SECONDS and the page says so.

import * as api from "../api";
import { errorBox, h, loading, replace, toast } from "../dom";
import { utc } from "../format";
import { Ctx } from "../page";
import { resolveRange } from "../timerange";
import { href, update } from "../state";
import { picker } from "../timerange";
import { kv, records } from "./flows";
import { alertActions, blockButton } from "../block";

const POLL_SECONDS = 15;
const LIVE_POLL_SECONDS = 60;
const SEVERITY: Record<number, string> = { 1: "1 high", 2: "2 medium", 3: "3 low", 4: "4 info" };
const str = (v: unknown) => (v === null || v === undefined ? "" : String(v));
/** An alert's id: `alert_id` in table `alerts` (migration 0006), `id` in older tables. */
const idOf = (a: api.Row) => str(a.alert_id ?? a.id);

/** Rows seen by the list, so a detail opened from it shows at once. */
const seen = new Map<string, api.Row>();

export function alerts(root: HTMLElement, ctx: Ctx): () => void {
  if (ctx.rest[0]) return alertDetail(root, ctx.rest[0], ctx.me);
  const p = ctx.params;
  const startSpec = p.get("start") || "now-24h";
  const endSpec = p.get("end") || "now";
  const sev = (p.get("severity") || "").split(",").map(Number).filter((n) => n >= 1 && n <= 4);
  const acked = p.get("acked") === "yes" ? true : p.get("acked") === "no" ? false : null;
  const page = Math.max(0, Number(p.get("page")) || 0);
  const size = 100;
  const body = h("div", {}, loading());
  const status = h("div", { class: "live-status" });
  const text = (name: string, label: string) =>
    h("label", {}, label + " ", h("input", { name, value: p.get(name) ?? "", size: 18, onchange: (e: Event) => update({ [name]: (e.target as HTMLInputElement).value.trim(), page: undefined }) }));
  replace(
    root,
    h("h1", {}, "Alerts"),
    picker(startSpec, endSpec, (s, e) => update({ start: s, end: e, page: undefined })),
    h(
      "div",
      { class: "control-bar" },
      h("span", {}, "severity "),
      [1, 2, 3, 4].map((s) =>
        h(
          "label",
          { class: "sev sev" + s },
          h("input", {
            type: "checkbox",
            name: "sev" + s,
            checked: sev.includes(s),
            onchange: (e: Event) => {
              const next = (e.target as HTMLInputElement).checked ? [...sev, s] : sev.filter((x) => x !== s);
              update({ severity: next.sort().join(","), page: undefined });
            },
          }),
          " " + SEVERITY[s],
        ),
      ),
      text("rule", "rule"),
      text("addr", "address"),
      h(
        "label",
        {},
        "acknowledged ",
        h(
          "select",
          { name: "acked", onchange: (e: Event) => update({ acked: (e.target as HTMLSelectElement).value, page: undefined }) },
          [["", "any"], ["no", "not yet"], ["yes", "yes"]].map(([v, l]) => h("option", { value: v, selected: (p.get("acked") ?? "") === v }, l)),
        ),
      ),
    ),
    status,
    body,
  );
  const filters = { sev, rule: p.get("rule") ?? "", addr: p.get("addr") ?? "", acked, page, startSpec, endSpec };
  return liveList(body, status, filters, size);
}

interface Filters {
  sev: number[];
  rule: string;
  addr: string;
  acked: boolean | null;
  page: number;
  startSpec: string;
  endSpec: string;
}

/** Whether an alert from the event stream belongs in the list as filtered. */
function matches(a: api.Row, f: Filters): boolean {
  if (f.page !== 0 || f.acked === true) return false;
  if (f.sev.length && !f.sev.includes(Number(a.severity))) return false;
  if (f.rule && str(a.rule) !== f.rule) return false;
  if (f.addr && str(a.src_ip) !== f.addr && str(a.dest_ip) !== f.addr) return false;
  let r;
  try {
    r = resolveRange(f.startSpec, f.endSpec);
  } catch {
    return false;
  }
  const t = Number(a.ts) * 1000;
  // A relative end ("now") moves on: the alert is inside the range.
  return t >= r.start && (f.endSpec.startsWith("now") || t < r.end);
}

/** Loads the list, then keeps it current (event stream, or polling). */
function liveList(body: HTMLElement, status: HTMLElement, f: Filters, size: number): () => void {
  let ctl: AbortController | null = null;
  const known = new Set<string>();
  /** Alerts from the stream that the table did not have when last read. */
  const streamed = new Map<string, api.Row>();
  let rows: api.Row[] = [];
  let total = 0;
  let first = true;
  let source: EventSource | null = null;
  let timer: number | undefined;
  let liveNote = "";
  const show = (fresh: Set<string>) => {
    const extra = [...streamed.values()].filter((a) => !rows.some((r) => idOf(r) === idOf(a)));
    const all = [...extra, ...rows].sort((a, b) => Number(b.ts) - Number(a.ts)).slice(0, size);
    replace(status, `${total + extra.length} alerts · updated ${utc(Date.now())} UTC · ${liveNote}`);
    renderList(body, all, total + extra.length, f.page, size, fresh);
  };
  const load = async () => {
    ctl?.abort();
    ctl = new AbortController();
    try {
      const r = resolveRange(f.startSpec, f.endSpec);
      const q = { start: Math.floor(r.start / 1000), end: Math.ceil(r.end / 1000), severity: f.sev, rule: f.rule, addr: f.addr, acked: f.acked, offset: f.page * size, limit: size };
      const res = await api.alerts(q, ctl.signal);
      startUpdates(res.live);
      if (!res.available && streamed.size === 0) {
        replace(body, h("p", { class: "empty" }, "No alerts table in ClickHouse yet: the detection pipeline has not written any alert."));
        return;
      }
      const fresh = res.rows.filter((a) => !known.has(idOf(a)));
      res.rows.forEach((a) => {
        known.add(idOf(a));
        seen.set(idOf(a), a);
        streamed.delete(idOf(a));
      });
      rows = res.rows;
      total = res.total;
      show(first ? new Set() : new Set(fresh.map(idOf)));
      first = false;
    } catch (e) {
      if ((e as Error).name === "AbortError") return;
      replace(status, errorBox("Could not load alerts (retrying)", e));
      if (timer === undefined) timer = window.setInterval(load, POLL_SECONDS * 1000);
    }
  };
  let started = false;
  const startUpdates = (live: api.LiveStatus) => {
    if (started) return;
    started = true;
    window.clearInterval(timer);
    if (!live.configured) {
      liveNote = `live updates off (no [nats] in the console config): re-read every ${POLL_SECONDS} s`;
      timer = window.setInterval(load, POLL_SECONDS * 1000);
      return;
    }
    liveNote = "live (JetStream ALERTS): connecting";
    timer = window.setInterval(load, LIVE_POLL_SECONDS * 1000);
    source = api.alertStream();
    source.addEventListener("status", (e) => {
      const st = JSON.parse((e as MessageEvent).data) as api.LiveStatus;
      liveNote = st.connected ? "live: new alerts appear as they arrive" : "live: the console is not connected to NATS, retrying";
      status.dataset.live = st.connected ? "connected" : "waiting";
      show(new Set());
    });
    source.addEventListener("alert", (e) => {
      const a = JSON.parse((e as MessageEvent).data) as api.Row;
      seen.set(idOf(a), a);
      if (!matches(a, f) || known.has(idOf(a))) return;
      known.add(idOf(a));
      streamed.set(idOf(a), a);
      show(new Set([idOf(a)]));
    });
    source.addEventListener("lagged", () => load());
    source.onerror = () => {
      liveNote = "live stream interrupted, reconnecting";
      status.dataset.live = "lost";
    };
  };
  load();
  return () => {
    ctl?.abort();
    source?.close();
    window.clearInterval(timer);
  };
}

function renderList(body: HTMLElement, rows: api.Row[], total: number, page: number, size: number, fresh: Set<string>): void {
  if (rows.length === 0) {
    replace(body, h("p", { class: "empty" }, "No alert matches in this range."));
    return;
  }
  const pages = Math.max(1, Math.ceil(total / size));
  replace(
    body,
    h(
      "div",
      { class: "pager" },
      `page ${page + 1} of ${pages} `,
      h("button", { disabled: page === 0, onclick: () => update({ page: page - 1 || undefined }) }, "← newer"),
      h("button", { disabled: page + 1 >= pages, onclick: () => update({ page: page + 1 }) }, "older →"),
    ),
    h(
      "table",
      { class: "data alerts-table" },
      h("thead", {}, h("tr", {}, ["Time (UTC)", "Severity", "Rule", "Signature", "Source", "Destination", "Sensor", "Acknowledged"].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        rows.map((a) =>
          h(
            "tr",
            { class: "alert-row" + (fresh.has(idOf(a)) ? " fresh" : ""), "data-id": idOf(a) },
            h("td", {}, h("a", { class: "alert-link", href: href("alerts/" + idOf(a)) }, utc(Number(a.ts) * 1000))),
            h("td", { class: "sev sev" + str(a.severity) }, SEVERITY[Number(a.severity)] ?? str(a.severity)),
            h("td", {}, str(a.rule)),
            h("td", {}, str(a.signature)),
            h("td", {}, str(a.src_ip)),
            h("td", {}, str(a.dest_ip)),
            h("td", {}, str(a.sensor_id)),
            h("td", {}, a.acked_by ? `${str(a.acked_by)}, ${utc(Number(a.acked_at) * 1000)}` : "no"),
          ),
        ),
      ),
    ),
  );
}

/** Finds an alert by id: from the list already seen, else asks the server for that id. */
async function findAlert(id: string): Promise<api.Row | undefined> {
  if (seen.has(id)) return seen.get(id);
  const end = Math.ceil(Date.now() / 1000) + 86400;
  const r = await api.alerts({ start: 1, end, severity: [], rule: "", addr: "", acked: null, id, offset: 0, limit: 1 });
  const hit = r.rows.find((a) => idOf(a) === id);
  if (hit) seen.set(id, hit);
  return hit;
}

/** Record refs of the evidence: `<sensor_id>:<flow_id>:<event_index|flow>`. */
function evidenceFlows(a: api.Row): { sensor: string; flow: string; what: string }[] {
  const ev = a.evidence as { refs?: unknown; records?: unknown } | string | undefined;
  let refs: unknown = undefined;
  if (typeof ev === "string") {
    try {
      const parsed = JSON.parse(ev);
      refs = parsed.refs ?? parsed.records;
    } catch {
      refs = undefined;
    }
  } else refs = ev?.refs ?? ev?.records ?? a.evidence_refs;
  const out = Array.isArray(refs)
    ? refs.map(String).map((r) => {
        const m = /^(.*):(\d+):([^:]+)$/.exec(r);
        return m ? { sensor: m[1], flow: m[2], what: m[3] } : null;
      })
    : [];
  const list = out.filter((x): x is { sensor: string; flow: string; what: string } => x !== null);
  if (a.flow_id && !list.some((x) => x.flow === str(a.flow_id))) list.unshift({ sensor: str(a.sensor_id), flow: str(a.flow_id), what: "trigger" });
  return list;
}

function alertDetail(root: HTMLElement, id: string, me: api.Me): () => void {
  replace(root, h("h1", {}, "Alert"), loading());
  let live = true;
  const render = (a: api.Row) => {
    const ackBox = h("div", { class: "ack" });
    if (a.acked_by) replace(ackBox, `Acknowledged by ${str(a.acked_by)} at ${utc(Number(a.acked_at) * 1000)} UTC`);
    else if (me.role === "admin") {
      const btn = h("button", { class: "primary ack-button" }, "Acknowledge");
      btn.addEventListener("click", async () => {
        btn.setAttribute("disabled", "");
        try {
          await api.ackAlert(id);
          toast("Alert acknowledged");
          seen.set(id, { ...a, acked_by: me.username, acked_at: Date.now() / 1000 });
          render(seen.get(id)!);
        } catch (e) {
          btn.removeAttribute("disabled");
          replace(ackBox, btn, errorBox("Acknowledge failed", e));
        }
      });
      replace(ackBox, btn);
    } else replace(ackBox, h("span", { class: "hint" }, "Not acknowledged. Acknowledging needs the admin role (you are a viewer)."));
    const linked = evidenceFlows(a);
    const actions = alertActions(id);
    const block = (address: unknown) =>
      blockButton(me, { address: str(address), sensor: str(a.sensor_id), alertId: id, onOutcome: actions.refresh });
    const blocks = [block(a.src_ip), block(a.dest_ip)].filter((b): b is HTMLElement => b !== null);
    replace(
      root,
      h("p", {}, h("a", { href: href("alerts") }, "← all alerts")),
      h("h1", {}, "Alert: ", str(a.signature) || str(a.rule)),
      h("p", { class: "sev sev" + str(a.severity) }, `severity ${SEVERITY[Number(a.severity)] ?? str(a.severity)} · rule ${str(a.rule)} · ${utc(Number(a.ts) * 1000)} UTC · sensor ${str(a.sensor_id)}`),
      ackBox,
      blocks.length ? h("div", { class: "blocks" }, blocks) : null,
      h("h2", {}, "Response actions"),
      actions.el,
      h("h2", {}, "Linked flows (", String(linked.length), ")"),
      records(
        linked.map((l) => ({ flow_id: l.flow, sensor_id: l.sensor, record: l.what })),
        ["flow_id", "sensor_id", "record"],
        (r) => href("flows/" + str(r.flow_id), { sensor_id: str(r.sensor_id) }),
      ),
      h("h2", {}, "Evidence and fields"),
      kv(a),
    );
  };
  findAlert(id).then(
    (a) => {
      if (!live) return;
      if (a) render(a);
      else replace(root, h("h1", {}, "Alert"), errorBox("Not found", `no alert with id ${id}`));
    },
    (e) => live && replace(root, h("h1", {}, "Alert"), errorBox("Could not load the alert", e)),
  );
  return () => {
    live = false;
  };
}
