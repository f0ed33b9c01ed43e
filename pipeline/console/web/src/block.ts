// The admin's block button (alert and flow details). A confirm dialog shows the address, the
// duration and the sensor; the request goes to the console, which passes it to `pipeline
// respond` (the console holds no signing key); respond's answer (sent, refused by a guard rail
// with the reason, dry run) is read back from the audit trail and shown where the button was.
// Viewers do not get the button.

import * as api from "./api";
import { errorBox, h, replace } from "./dom";
import { records } from "./pages/flows";

/** Durations an operator picks from: [seconds, label]. */
const DURATIONS: [number, string][] = [
  [300, "5 minutes"],
  [3600, "1 hour"],
  [86400, "24 hours"],
  [7 * 86400, "7 days"],
];
/** How long the page waits for respond's answer before leaving the request shown as pending. */
const WAIT_SECONDS = 30;

const str = (v: unknown) => (v === null || v === undefined ? "" : String(v));

export interface BlockTarget {
  /** The address to block. */
  address: string;
  /** The sensor that saw it ("" when unknown: then only "all sensors"). */
  sensor: string;
  alertId?: string;
  /** Called once respond has answered (e.g. to re-read the actions list). */
  onOutcome?: () => void;
}

/** What a request's status means to the operator. */
function describe(o: { status: api.BlockStatus; records: api.Row[] }): string {
  const refused = o.records.find((r) => r.outcome === "rejected");
  switch (o.status) {
    case "refused":
      return "refused: " + str(refused?.detail);
    case "dry_run":
      return "dry run: respond would block (nothing sent)";
    case "applied":
      return "sent and applied by the sensor";
    case "sent":
      return "sent: signed command published to " + o.records.filter((r) => r.outcome === "requested").map((r) => str(r.sensor_id)).join(", ");
    default:
      return "pending: waiting for pipeline respond";
  }
}

/** Polls the request's outcome into `status` until respond has answered or time runs out. */
async function follow(id: string, status: HTMLElement, done?: () => void): Promise<void> {
  for (let i = 0; i < WAIT_SECONDS; i++) {
    const o = await api.blockOutcome(id);
    status.dataset.status = o.status;
    replace(status, describe(o));
    if (o.status !== "pending") {
      done?.();
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  replace(status, "pending: respond has not answered yet; the alert's actions will show the outcome");
}

/** The confirm dialog; resolves with the request, or null when cancelled. */
function confirmDialog(t: BlockTarget): Promise<api.BlockRequest | null> {
  return new Promise((resolve) => {
    const duration = h("select", { name: "duration", class: "block-duration" }, DURATIONS.map(([s, l]) => h("option", { value: s, selected: s === 3600 }, l)));
    const sensor = h(
      "select",
      { name: "sensor", class: "block-sensor" },
      t.sensor ? h("option", { value: t.sensor, selected: true }, "sensor " + t.sensor) : null,
      h("option", { value: "" }, "all sensors"),
    );
    const reason = h("input", { name: "reason", class: "block-reason", maxlength: 200, placeholder: "reason (kept in the audit trail)" });
    const summary = h("p", { class: "block-summary" });
    const say = () => {
      const d = DURATIONS.find(([s]) => String(s) === duration.value)?.[1] ?? duration.value + " s";
      replace(summary, `Block ${t.address} for ${d} on ${sensor.value ? "sensor " + sensor.value : "all sensors"}?`);
    };
    duration.addEventListener("change", say);
    sensor.addEventListener("change", say);
    say();
    const dialog = h("dialog", { class: "block-dialog" });
    const close = (v: api.BlockRequest | null) => {
      dialog.close();
      dialog.remove();
      resolve(v);
    };
    replace(
      dialog,
      h("h2", {}, "Block an address"),
      summary,
      h("label", {}, "duration ", duration),
      h("label", {}, " on ", sensor),
      h("p", {}, reason),
      h("p", { class: "hint" }, "pipeline respond signs and sends the command; its guard rails (protected networks, rate limits, dry run) may refuse it."),
      h(
        "div",
        { class: "dialog-buttons" },
        h("button", { class: "block-cancel", onclick: () => close(null) }, "Cancel"),
        h("button", {
          class: "primary block-confirm",
          onclick: () => close({ target: t.address, duration_secs: Number(duration.value), sensor: sensor.value, reason: reason.value, alert_id: t.alertId ?? "" }),
        }, "Block"),
      ),
    );
    dialog.addEventListener("cancel", () => close(null));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A "Block <address>" button with its status line, or null for viewers. */
export function blockButton(me: api.Me, t: BlockTarget): HTMLElement | null {
  if (me.role !== "admin" || !t.address) return null;
  const status = h("span", { class: "block-status" });
  const btn = h("button", { class: "block-button", "data-address": t.address }, "Block ", t.address);
  btn.addEventListener("click", async () => {
    const req = await confirmDialog(t);
    if (!req) return;
    btn.setAttribute("disabled", "");
    replace(status, "sending…");
    try {
      const r = await api.block(req);
      status.dataset.id = r.id;
      await follow(r.id, status, t.onOutcome);
    } catch (e) {
      replace(status, errorBox("Block failed", e));
    } finally {
      btn.removeAttribute("disabled");
    }
  });
  return h("span", { class: "block" }, btn, " ", status);
}

/** The response's actions for an alert, re-read by `refresh`. */
export function alertActions(alertId: string): { el: HTMLElement; refresh: () => void } {
  const el = h("div", { class: "actions-list" });
  const refresh = () => {
    api.alertActions(alertId).then(
      (r) => {
        if (!r.available) replace(el, h("p", { class: "empty" }, "no actions table (pipeline respond has not run)"));
        else if (!r.rows.length) replace(el, h("p", { class: "empty" }, "none"));
        else {
          replace(el, records(r.rows, ["ts", "source", "kind", "target", "sensor_id", "outcome", "detail"]));
        }
      },
      (e) => replace(el, errorBox("Could not read the actions", e)),
    );
  };
  refresh();
  return { el, refresh };
}
