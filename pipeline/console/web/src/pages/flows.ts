// Flows: search with the filter language, sortable columns, paging; a flow's detail shows its
// TLS/QUIC/HTTP/DNS events and its alerts.

import * as api from "../api";
import { errorBox, h, loading, replace } from "../dom";
import { filterInput } from "../filter";
import { bytes, duration, si, utc } from "../format";
import { Ctx } from "../page";
import { commonOr } from "../query";
import { href, update } from "../state";
import { picker } from "../timerange";
import { blockButton } from "../block";

const PAGE_SIZES = [50, 100, 500];

interface Col {
  label: string;
  /** The API's sort key, when the column sorts. */
  sort?: string;
  cell: (r: api.Row) => Node | string;
  num?: boolean;
}

const str = (v: unknown) => (v === null || v === undefined ? "" : String(v));
const num = (v: unknown) => Number(v ?? 0) || 0;
const addr = (ip: unknown, port: unknown) => {
  const a = str(ip);
  return (a.includes(":") ? `[${a}]` : a) + (port !== undefined && port !== null && port !== "" ? ":" + str(port) : "");
};
/** The metadata that names a flow's service, whichever protocol gave it. */
const service = (r: api.Row) => str(r.tls_sni) || str(r.http_host) || str(r.dns_name) || str(r.quic_sni);

function columns(): Col[] {
  return [
    { label: "Start (UTC)", sort: "Start", cell: (r) => utc(num(r.start) * 1000) },
    { label: "Sensor", sort: "Sensor", cell: (r) => str(r.sensor_id) },
    { label: "Source", sort: "SrcAddr", cell: (r) => addr(r.src_ip, r.src_port) },
    { label: "Destination", sort: "DstAddr", cell: (r) => addr(r.dest_ip, r.dest_port) },
    { label: "Proto", sort: "Proto", cell: (r) => str(r.proto) },
    { label: "App", sort: "AppProto", cell: (r) => str(r.app_proto) },
    { label: "Server name / host", cell: service },
    { label: "Packets", sort: "Packets", num: true, cell: (r) => si(num(r.pkts_toserver) + num(r.pkts_toclient)) },
    { label: "Bytes", sort: "Bytes", num: true, cell: (r) => bytes(num(r.bytes_toserver) + num(r.bytes_toclient)) },
    { label: "Duration", sort: "Duration", num: true, cell: (r) => duration((num(r.end) - num(r.start)) * 1000) },
    { label: "State", cell: (r) => str(r.state) },
  ];
}

export function flows(root: HTMLElement, ctx: Ctx): () => void {
  if (ctx.rest[0]) return flowDetail(root, ctx.me, ctx.rest[0], ctx.params.get("sensor_id") ?? undefined);
  const c = commonOr(root, ctx.params, "flows", "now-1h");
  if (!c) return () => {};
  const p = ctx.params;
  const sort = p.get("sort") || "Start";
  const order = p.get("order") === "asc" ? "asc" : "desc";
  const size = PAGE_SIZES.includes(Number(p.get("size"))) ? Number(p.get("size")) : 100;
  const page = Math.max(0, Number(p.get("page")) || 0);
  const body = h("div", {}, loading("Searching"));
  replace(
    root,
    h("h1", {}, "Flows"),
    picker(c.startSpec, c.endSpec, (s, e) => update({ start: s, end: e, page: undefined })),
    filterInput(c.filter, (f) => update({ filter: f, page: undefined }), { start: c.start, end: c.end }).el,
    body,
  );
  const ctl = new AbortController();
  const fieldsP = api.fields().catch(() => [] as api.Field[]);
  (async () => {
    try {
      const known = new Set((await fieldsP).filter((f) => f.dimension).map((f) => f.name).concat(["Bytes", "Packets", "Start", "Duration"]));
      const r = await api.flows({ start: c.start, end: c.end, filter: c.filter, sort, order, offset: page * size, limit: size }, ctl.signal);
      const cols = columns();
      const header = cols.map((col) => {
        if (!col.sort || !known.has(col.sort)) return h("th", {}, col.label);
        const active = col.sort === sort;
        const next = active && order === "desc" ? "asc" : "desc";
        return h(
          "th",
          { class: "sortable" + (active ? " sorted" : "") },
          h("a", { href: "#", onclick: (e: Event) => (e.preventDefault(), update({ sort: col.sort, order: next, page: undefined })) }, col.label, active ? (order === "desc" ? " ▼" : " ▲") : ""),
        );
      });
      const pages = Math.max(1, Math.ceil(r.total / size));
      replace(
        body,
        h(
          "div",
          { class: "pager" },
          `${si(r.total)} flows · page ${page + 1} of ${pages} `,
          h("button", { disabled: page === 0, onclick: () => update({ page: page - 1 || undefined }) }, "← newer"),
          h("button", { disabled: page + 1 >= pages, onclick: () => update({ page: page + 1 }) }, "older →"),
          h(
            "select",
            { name: "size", "aria-label": "rows per page", onchange: (e: Event) => update({ size: (e.target as HTMLSelectElement).value, page: undefined }) },
            PAGE_SIZES.map((s) => h("option", { value: s, selected: s === size }, `${s} per page`)),
          ),
        ),
        r.rows.length === 0
          ? h("p", { class: "empty" }, "No flow matches in this range.")
          : h(
              "table",
              { class: "data flows-table" },
              h("thead", {}, h("tr", {}, header)),
              h(
                "tbody",
                {},
                r.rows.map((row) =>
                  h(
                    "tr",
                    { class: "flow-row" },
                    cols.map((col, i) => {
                      const content = col.cell(row);
                      return h(
                        "td",
                        { class: col.num ? "num" : "" },
                        i === 0 ? h("a", { class: "flow-link", href: href("flows/" + str(row.flow_id), { sensor_id: str(row.sensor_id) }) }, content) : content,
                      );
                    }),
                  ),
                ),
              ),
            ),
      );
    } catch (e) {
      if ((e as Error).name !== "AbortError") replace(body, errorBox("The flow search failed", e));
    }
  })();
  return () => ctl.abort();
}

/** A key/value table of a record, with the empty values left out. */
export function kv(row: api.Row): HTMLElement {
  return h(
    "table",
    { class: "kv" },
    h(
      "tbody",
      {},
      Object.entries(row)
        .filter(([, v]) => v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && v.length === 0))
        .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v)))),
    ),
  );
}

/** A table of records with the given columns (first one linked when `link` is given). */
export function records(rows: api.Row[], cols: string[], link?: (r: api.Row) => string): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty" }, "none");
  return h(
    "table",
    { class: "data" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      rows.map((r) =>
        h(
          "tr",
          {},
          cols.map((c, i) => {
            let v = r[c];
            if (c === "ts" && v !== undefined) v = utc(num(v) * 1000);
            const text = typeof v === "object" && v !== null ? JSON.stringify(v) : str(v);
            return h("td", {}, i === 0 && link ? h("a", { href: link(r) }, text) : text);
          }),
        ),
      ),
    ),
  );
}

function flowDetail(root: HTMLElement, me: api.Me, flowId: string, sensorId?: string): () => void {
  replace(root, h("h1", {}, "Flow ", flowId), loading());
  let live = true;
  api.flow(flowId, sensorId).then(
    (d) => {
      if (!live) return;
      const f = d.flow;
      replace(
        root,
        h("p", {}, h("a", { href: "#", onclick: (e: Event) => (e.preventDefault(), history.back()) }, "← back")),
        h("h1", {}, "Flow ", flowId),
        h("p", { class: "flow-summary" }, `${str(f.proto)} ${addr(f.src_ip, f.src_port)} → ${addr(f.dest_ip, f.dest_port)} · ${str(f.app_proto) || "unknown app"} · ${utc(num(f.start) * 1000)} UTC · ${duration((num(f.end) - num(f.start)) * 1000)}`),
        h("div", { class: "blocks" }, [f.src_ip, f.dest_ip].map((ip) => blockButton(me, { address: str(ip), sensor: str(f.sensor_id) || (sensorId ?? "") }))),
        h("section", { class: "events" },
          h("h2", {}, "Alerts (", String(d.alerts.length), ")"),
          records(d.alerts, ["id", "ts", "severity", "rule", "signature"], (a) => href("alerts/" + str(a.id))),
          h("h2", {}, "TLS / QUIC"),
          d.tls ? kv(d.tls) : h("p", { class: "empty" }, "none"),
          h("h2", {}, "HTTP requests (", String(d.http.length), ")"),
          records(d.http, ["ts", "http_method", "hostname", "url", "status", "http_user_agent", "protocol"]),
          h("h2", {}, "DNS (", String(d.dns.length), ")"),
          records(d.dns, ["ts", "type", "rrname", "rrtype", "rcode"]),
        ),
        h("h2", {}, "Flow record"),
        kv(f),
      );
    },
    (e) => live && replace(root, h("h1", {}, "Flow ", flowId), errorBox("Could not load this flow", e)),
  );
  return () => {
    live = false;
  };
}
