// Top pages in the ntopng manner: talkers, server names, HTTP hosts, DNS names, JA4. Every row
// links to Visualize (and Flows) filtered on that value.

import * as api from "../api";
import { errorBox, h, loading, replace } from "../dom";
import { filterInput } from "../filter";
import { bytes, si } from "../format";
import { Ctx } from "../page";
import { and, commonOr, term } from "../query";
import { href, update } from "../state";
import { picker } from "../timerange";

export const TOP_KINDS: [api.TopKind, string][] = [
  ["talkers", "Top talkers"],
  ["server_names", "Server names (TLS/QUIC)"],
  ["http_hosts", "HTTP hosts"],
  ["dns_names", "DNS names"],
  ["ja4", "JA4"],
];

export function top(root: HTMLElement, ctx: Ctx): () => void {
  const kind = (TOP_KINDS.find(([k]) => k === ctx.params.get("kind"))?.[0] ?? "talkers") as api.TopKind;
  const c = commonOr(root, ctx.params, "top");
  if (!c) return () => {};
  const limit = Math.min(1000, Math.max(1, Number(ctx.params.get("limit")) || 20));
  const body = h("div", {}, loading());
  const eventKinds = kind === "http_hosts" || kind === "dns_names";
  replace(
    root,
    h("h1", {}, "Top"),
    h(
      "nav",
      { class: "tabs" },
      TOP_KINDS.map(([k, label]) => h("a", { class: k === kind ? "active" : "", href: href("top", { ...Object.fromEntries(ctx.params), kind: k }) }, label)),
    ),
    picker(c.startSpec, c.endSpec, (s, e) => update({ start: s, end: e })),
    filterInput(c.filter, (f) => update({ filter: f }), { start: c.start, end: c.end }).el,
    eventKinds && h("p", { class: "hint" }, "HTTP hosts and DNS names count requests and queries; their filter takes SrcAddr, DstAddr, SrcPort, DstPort and Sensor only."),
    body,
  );
  const ctl = new AbortController();
  api.fields().catch(() => [] as api.Field[]).then(async (fields) => {
    try {
      const r = await api.top({ start: c.start, end: c.end, filter: c.filter, kind, limit }, ctl.signal);
      const fk = fields.find((f) => f.name === r.field)?.kind;
      if (r.rows.length === 0) {
        replace(body, h("p", { class: "empty" }, "Nothing in this range with this filter."));
        return;
      }
      const range = { start: c.startSpec, end: c.endSpec };
      replace(
        body,
        h(
          "table",
          { class: "data top-table" },
          h("thead", {}, h("tr", {}, [r.field, eventKinds ? "Records" : "Flows", "Bytes", "Packets", "Clients", ""].map((x) => h("th", {}, x)))),
          h(
            "tbody",
            {},
            r.rows.map((row) => {
              const f = and(c.filter, term(r.field, row.value, fk));
              return h(
                "tr",
                {},
                h("td", {}, h("a", { class: "top-link", href: href("visualize", { ...range, filter: f }), title: "Visualize this value" }, row.value || "(empty)")),
                h("td", { class: "num" }, si(row.flows)),
                h("td", { class: "num" }, eventKinds ? "–" : bytes(row.bytes)),
                h("td", { class: "num" }, eventKinds ? "–" : si(row.packets)),
                h("td", { class: "num" }, si(row.clients)),
                h("td", {}, h("a", { href: href("flows", { ...range, filter: f }) }, "flows")),
              );
            }),
          ),
        ),
      );
    } catch (e) {
      if ((e as Error).name !== "AbortError") replace(body, errorBox("The top query failed", e));
    }
  });
  return () => ctl.abort();
}
