// The console's JSON API (pipeline/console/API.md), typed. Every call goes through `call`,
// which sends the CSRF token on every POST, turns any non-2xx answer into an `ApiError` with
// the server's message (never a silent failure), and sends the operator to the login form
// when the session is gone.

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public position?: number,
  ) {
    super(message);
  }
}

export interface Me {
  username: string;
  role: "admin" | "viewer";
  csrf_token: string;
}

let csrf = "";
let onUnauthorized: () => void = () => {};

/** What to do on a 401 (the app shows the login page). */
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

async function call<T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") {
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  let res: Response;
  try {
    res = await fetch("/api/v1/" + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, `the console server did not answer (${(e as Error).message})`);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON (a proxy's error page, say): reported below with the status.
  }
  if (!res.ok) {
    const d = data as { error?: string; position?: number } | undefined;
    const msg = d?.error ?? `HTTP ${res.status} ${res.statusText}${text ? ": " + text.slice(0, 200) : ""}`;
    if (res.status === 401 && path !== "login") onUnauthorized();
    throw new ApiError(res.status, msg, d?.position);
  }
  if (data === undefined) throw new ApiError(res.status, `the server's answer to ${path} is not JSON`);
  return data as T;
}

export async function login(username: string, password: string): Promise<Me> {
  const me = await call<Me>("POST", "login", { username, password });
  csrf = me.csrf_token;
  return me;
}

export async function me(): Promise<Me> {
  const m = await call<Me>("GET", "me");
  csrf = m.csrf_token;
  return m;
}

export async function logout(): Promise<void> {
  await call<void>("POST", "logout");
  csrf = "";
}

export interface Field {
  name: string;
  kind: "string" | "number" | "addr";
  dimension: boolean;
  filter: boolean;
  rollup: boolean;
  description: string;
}

let fieldsCache: Promise<Field[]> | null = null;

/** The fields (cached for the page's life: they follow the tables' columns). */
export function fields(): Promise<Field[]> {
  fieldsCache ??= call<{ fields: Field[] }>("GET", "fields").then((r) => r.fields);
  fieldsCache.catch(() => (fieldsCache = null));
  return fieldsCache;
}

export type Validation = { ok: true; sql: string } | { ok: false; error: string; position: number; end: number };

export function validateFilter(filter: string, signal?: AbortSignal): Promise<Validation> {
  return call("POST", "filter/validate", { filter }, signal);
}

export interface Completion {
  label: string;
  kind: "field" | "operator" | "value" | "keyword";
  detail?: string;
}

/** Values are offered from `range` (unix seconds) when given, else from the last 24 hours. */
export function completeFilter(
  filter: string,
  cursor: number,
  range?: { start: number; end: number },
  signal?: AbortSignal,
): Promise<{ from: number; to: number; completions: Completion[] }> {
  return call("POST", "filter/complete", { filter, cursor, ...(range ?? {}) }, signal);
}

export type Unit = "bytes" | "packets" | "flows";

/** Which directions a graph counts: both, or initiator -> responder, or back. */
export type Direction = "both" | "toserver" | "toclient";

export interface Stats {
  min: number;
  max: number;
  avg: number;
  p95: number;
  total: number;
}

export interface Series {
  name: string;
  values: (number | null)[];
  stats: Stats;
}

export interface Timeseries {
  table: string;
  step: number;
  unit: Unit;
  time: number[];
  series: Series[];
  previous: Series | null;
  rows_read: number;
  elapsed_ms: number;
}

export interface Query {
  start: number;
  end: number;
  filter: string;
}

export function timeseries(
  q: Query & { unit: Unit; dimension: string | null; limit: number; points: number; previous_period: boolean; direction: Direction },
  signal?: AbortSignal,
): Promise<Timeseries> {
  return call("POST", "graph/timeseries", q, signal);
}

export interface Sankey {
  table: string;
  nodes: { name: string; dimension: string }[];
  links: { source: number; target: number; value: number }[];
  rows_read: number;
  elapsed_ms: number;
}

export function sankey(q: Query & { unit: Unit; dimensions: string[]; limit: number }, signal?: AbortSignal): Promise<Sankey> {
  return call("POST", "graph/sankey", q, signal);
}

export type TopKind = "talkers" | "server_names" | "http_hosts" | "dns_names" | "ja4";

export interface TopRow {
  value: string;
  flows: number;
  bytes: number;
  packets: number;
  clients: number;
}

export function top(q: Query & { kind: TopKind; limit: number }, signal?: AbortSignal): Promise<{ kind: TopKind; field: string; rows: TopRow[] }> {
  return call("POST", "top", q, signal);
}

export type Row = Record<string, unknown>;

export function flows(
  q: Query & { sort: string; order: "asc" | "desc"; offset: number; limit: number },
  signal?: AbortSignal,
): Promise<{ total: number; rows: Row[] }> {
  return call("POST", "flows", q, signal);
}

export interface FlowDetail {
  flow: Row;
  tls: Row | null;
  http: Row[];
  dns: Row[];
  alerts: Row[];
  [k: string]: unknown;
}

export function flow(flowId: string, sensorId?: string): Promise<FlowDetail> {
  const q = sensorId ? "?sensor_id=" + encodeURIComponent(sensorId) : "";
  return call("GET", "flows/" + encodeURIComponent(flowId) + q);
}

export interface AlertQuery {
  start: number;
  end: number;
  severity: number[];
  rule: string;
  addr: string;
  acked: boolean | null;
  /** One alert by id. */
  id?: string;
  offset: number;
  limit: number;
}

/** Whether the console reads JetStream `ALERTS` (live updates) and is connected to it. */
export interface LiveStatus {
  configured: boolean;
  connected: boolean;
}

export function alerts(q: AlertQuery, signal?: AbortSignal): Promise<{ available: boolean; total: number; rows: Row[]; live: LiveStatus }> {
  return call("POST", "alerts", q, signal);
}

/** The live alerts' event stream (server-sent events: `alert`, `status`, `lagged`). */
export function alertStream(): EventSource {
  return new EventSource("/api/v1/alerts/stream", { withCredentials: true });
}

export function ackAlert(id: string): Promise<void> {
  return call("POST", "alerts/" + encodeURIComponent(id) + "/ack", {});
}

/** An admin's block request; respond signs and sends it (the console holds no key). */
export interface BlockRequest {
  target: string;
  duration_secs: number;
  sensor: string;
  reason: string;
  alert_id: string;
}

export type BlockStatus = "pending" | "sent" | "applied" | "refused" | "dry_run";

export function block(req: BlockRequest): Promise<{ id: string; status: BlockStatus; target: string; duration_secs: number; sensor: string }> {
  return call("POST", "block", req);
}

export function blockOutcome(id: string): Promise<{ id: string; status: BlockStatus; records: Row[] }> {
  return call("GET", "block/" + encodeURIComponent(id));
}

/** The response's audit records about an alert (table `actions`). */
export function alertActions(id: string): Promise<{ available: boolean; rows: Row[] }> {
  return call("GET", "alerts/" + encodeURIComponent(id) + "/actions");
}

/** What the console read from a sensor's `/metrics` (rates need two readings). */
export interface SensorMetrics {
  reachable: boolean;
  error: string | null;
  scraped_at?: number;
  interval_secs?: number | null;
  packets_per_sec?: number | null;
  bits_per_sec?: number | null;
  flows_per_sec?: number | null;
  drops?: Record<string, number>;
  drops_per_sec?: Record<string, number> | null;
  malformed_lines?: number;
}

export interface Sensor {
  sensor_id: string;
  configured: boolean;
  metrics_url?: string;
  /** Latest flow bucket in the range (null: no flow in the range). */
  last_seen: number | null;
  /** Latest flow in the day before the range's end, from the raw table. */
  last_flow: number | null;
  flows_per_sec?: number;
  bytes_per_sec?: number;
  packets_per_sec?: number;
  drops: null | Record<string, number>;
  metrics: SensorMetrics | null;
}

export function sensors(start: number, end: number, signal?: AbortSignal): Promise<{ sensors: Sensor[] }> {
  return call("GET", `sensors?start=${Math.floor(start)}&end=${Math.floor(end)}`, undefined, signal);
}

export interface SavedView {
  name: string;
  url: string;
  saved: number;
}

export function views(): Promise<{ views: SavedView[] }> {
  return call("GET", "views");
}

export function saveView(name: string, url: string): Promise<{ name: string; url: string }> {
  return call("POST", "views", { name, url });
}

export function deleteView(name: string): Promise<void> {
  return call("DELETE", "views/" + encodeURIComponent(name));
}
