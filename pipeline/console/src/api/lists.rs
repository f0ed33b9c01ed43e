//! Fields, filter validation and completion, top lists, flow search and detail, sensors.

use super::graphs::{range_table, TableChoice};
use super::{bad, body, env, fail, ApiResult, Authed, Base, S};
use crate::ch::{num, text};
use crate::filter::{self, quote, Expect};
use crate::query::{self, TopKind, EVENT_FIELDS};
use crate::schema::Kind;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub async fn fields(State(st): State<S>, _a: Authed) -> ApiResult {
    let cat = st.catalog();
    let list: Vec<Value> = cat
        .fields()
        .map(|f| {
            json!({
                "name": f.name, "kind": f.kind.label(), "dimension": true,
                "filter": f.kind != Kind::DimOnly, "rollup": cat.in_rollups(f),
                "description": f.description,
            })
        })
        .collect();
    Ok(Json(json!({ "fields": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateReq {
    filter: String,
}

pub async fn validate(State(st): State<S>, _a: Authed, b: Bytes) -> ApiResult {
    let req: ValidateReq = body(&b)?;
    let cat = st.catalog();
    Ok(Json(match filter::parse(&req.filter, &cat) {
        Ok(e) => json!({
            "ok": true,
            "sql": e.map_or(String::new(), |e| filter::to_sql(&e, st.dialect())),
        }),
        Err(e) => json!({ "ok": false, "error": e.message, "position": e.start, "end": e.end }),
    })
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteReq {
    filter: String,
    cursor: Option<usize>,
    start: Option<u64>,
    end: Option<u64>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub async fn complete(State(st): State<S>, _a: Authed, b: Bytes) -> ApiResult {
    let req: CompleteReq = body(&b)?;
    if req.filter.len() > filter::MAX_LEN {
        return Err(bad("filter too long"));
    }
    let cat = st.catalog();
    let ctx = filter::context(&req.filter, req.cursor.unwrap_or(req.filter.len()), &cat);
    let lower = ctx.prefix.to_lowercase();
    let item = |label: &str, kind: &str, detail: &str| json!({"label": label, "kind": kind, "detail": detail});
    let list: Vec<Value> = match ctx.expect {
        None => Vec::new(),
        Some(Expect::Field) => cat
            .fields()
            .filter(|f| f.kind != Kind::DimOnly && f.name.to_lowercase().starts_with(&lower))
            .map(|f| item(f.name, "field", f.description))
            .chain(
                ["NOT"
                    .starts_with(&ctx.prefix.to_uppercase())
                    .then(|| item("NOT", "keyword", ""))]
                .into_iter()
                .flatten(),
            )
            .collect(),
        Some(Expect::Operator(f)) => filter::operators(f.kind)
            .iter()
            .filter(|o| o.to_lowercase().starts_with(&lower))
            .map(|o| item(o, "operator", ""))
            .collect(),
        Some(Expect::Connective { in_list }) => {
            let words: &[&str] = if in_list { &[",", ")"] } else { &["AND", "OR"] };
            words
                .iter()
                .filter(|w| w.to_lowercase().starts_with(&lower))
                .map(|w| item(w, "keyword", ""))
                .collect()
        }
        Some(Expect::Value(f)) => {
            let end = req.end.unwrap_or_else(now).min(u64::from(u32::MAX)) as u32;
            let start = req
                .start
                .map_or(end.saturating_sub(86400), |s| s.min(u64::from(end)) as u32);
            let env = env(&st, &cat);
            let w = query::where_sql(start, end.max(start + 1), None, env.dialect);
            let rows = st
                .ch
                .query(&query::complete_sql(&env, f, &w, &ctx.prefix))
                .await?;
            rows.data
                .iter()
                .map(|r| {
                    let v = text(r.get("value"));
                    let label = match f.kind {
                        Kind::Str => {
                            format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                        }
                        _ => v,
                    };
                    item(
                        &label,
                        "value",
                        &format!("{} flows", num(r.get("n").unwrap_or(&json!(0)))),
                    )
                })
                .collect()
        }
    };
    Ok(Json(json!({ "from": ctx.from, "to": ctx.to, "completions": list })).into_response())
}

fn twenty() -> u32 {
    20
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopReq {
    start: u64,
    end: u64,
    #[serde(default)]
    filter: String,
    kind: TopKind,
    #[serde(default = "twenty")]
    limit: u32,
    #[serde(default)]
    table: TableChoice,
}

pub async fn top(State(st): State<S>, _a: Authed, b: Bytes) -> ApiResult {
    let req: TopReq = body(&b)?;
    let cat = st.catalog();
    let base = Base {
        start: req.start,
        end: req.end,
        filter: req.filter.clone(),
    };
    let (start, end, expr) = base.check(&cat)?;
    if !(1..=1000).contains(&req.limit) {
        return Err(bad("limit must be 1..=1000"));
    }
    let fields = query::filter_fields(expr.as_ref());
    let env = env(&st, &cat);
    let (sql, t, s, e) = match req.kind {
        TopKind::HttpHosts | TopKind::DnsNames => {
            if let Some(f) = fields.iter().find(|f| !EVENT_FIELDS.contains(&f.name)) {
                return Err(bad(format!(
                    "{} cannot filter this top list; use {}",
                    f.name,
                    EVENT_FIELDS.join(", ")
                )));
            }
            let w = query::where_sql(start, end, expr.as_ref(), env.dialect);
            (
                query::top_events_sql(&env, &w, req.kind, req.limit),
                "event",
                start,
                end,
            )
        }
        kind => {
            let need = cat.field(kind.field()).ok_or_else(|| {
                bad(format!(
                    "{} is not a column of this server's flows table",
                    kind.field()
                ))
            })?;
            let mut all = fields.clone();
            all.push(need);
            let (t, s, e) = range_table(&cat, &all, start, end, req.table);
            let w = query::where_sql(s, e, expr.as_ref(), env.dialect);
            (
                query::top_flows_sql(&env, t, &w, kind, req.limit),
                t.name,
                s,
                e,
            )
        }
    };
    let rows = st.ch.query(&sql).await?;
    let out: Vec<Value> = rows
        .data
        .iter()
        .map(|r| {
            let n = |k: &str| num(r.get(k).unwrap_or(&json!(0)));
            json!({"value": text(r.get("value")), "flows": n("n_flows"), "bytes": n("n_bytes"),
                   "packets": n("n_packets"), "clients": n("clients")})
        })
        .collect();
    Ok(Json(json!({
        "kind": req.kind, "field": req.kind.field(), "table": t, "start": s, "end": e,
        "rows": out, "rows_read": rows.rows_read, "elapsed_ms": rows.elapsed_ms,
    }))
    .into_response())
}

fn hundred() -> u32 {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowsReq {
    start: u64,
    end: u64,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    offset: u64,
    #[serde(default = "hundred")]
    limit: u32,
}

/// A flow row with times as seconds (floats) for the UI.
fn flow_row(r: Map<String, Value>) -> Value {
    let mut r = query::unprefix(r);
    for (ns, key) in [("start_ns", "start"), ("end_ns", "end")] {
        if let Some(v) = r.remove(ns) {
            r.insert(key.into(), json!(num(&v) / 1e9));
        }
    }
    Value::Object(r)
}

pub async fn flows(State(st): State<S>, _a: Authed, b: Bytes) -> ApiResult {
    let req: FlowsReq = body(&b)?;
    let cat = st.catalog();
    let base = Base {
        start: req.start,
        end: req.end,
        filter: req.filter.clone(),
    };
    let (start, end, expr) = base.check(&cat)?;
    if !(1..=1000).contains(&req.limit) || req.offset > 1_000_000 {
        return Err(bad("limit must be 1..=1000 and offset at most 1000000"));
    }
    let key = req.sort.as_deref().unwrap_or("Start");
    let sort = query::sort_expr(&cat, key).ok_or_else(|| bad(format!("cannot sort by {key:?}")))?;
    let asc = match req.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => return Err(bad(format!("order {o:?}: asc or desc"))),
    };
    let env = env(&st, &cat);
    let w = query::where_sql(start, end, expr.as_ref(), env.dialect);
    let total = st
        .ch
        .query(&format!(
            "SELECT count() AS n FROM {}.flows WHERE {w}",
            env.db
        ))
        .await?;
    let rows = st
        .ch
        .query(&query::flows_sql(
            &env, &w, &sort, asc, req.offset, req.limit,
        ))
        .await?;
    let total = total.data.first().and_then(|r| r.get("n")).map_or(0.0, num);
    let out: Vec<Value> = rows.data.into_iter().map(flow_row).collect();
    Ok(Json(json!({"total": total, "rows": out, "rows_read": rows.rows_read})).into_response())
}

#[derive(Deserialize)]
pub struct FlowQuery {
    sensor_id: Option<String>,
}

pub async fn flow(
    State(st): State<S>,
    _a: Authed,
    Path(flow_id): Path<String>,
    Query(q): Query<FlowQuery>,
) -> ApiResult {
    let id: u64 = flow_id
        .parse()
        .map_err(|_| bad(format!("flow id {flow_id:?} is not a number")))?;
    if let Some(s) = &q.sensor_id {
        if !crate::config::plain_id(s) {
            return Err(bad("sensor_id: letters, digits, '-', '_', '.' only"));
        }
    }
    let cat = st.catalog();
    let env = env(&st, &cat);
    let rows = st
        .ch
        .query(&query::flow_sql(&env, id, q.sensor_id.as_deref()))
        .await?;
    let Some(row) = rows.data.into_iter().next() else {
        return Err(fail(StatusCode::NOT_FOUND, format!("no flow {id}")));
    };
    let sensor = quote(&text(row.get("sensor_id")));
    let ev = |table: &str, cols: &str| {
        format!(
            "SELECT toUInt32(ts) AS x_ts, event_index, {cols} FROM {}.{table} \
             WHERE flow_id = {id} AND sensor_id = {sensor} ORDER BY event_index LIMIT 1000",
            env.db
        )
    };
    let http = st
        .ch
        .query(&ev(
            "http_requests",
            "hostname, url, http_method, http_user_agent, status, protocol",
        ))
        .await?;
    let dns = st
        .ch
        .query(&ev("dns_queries", "type, rrname, rrtype, rcode, dns_id"))
        .await?;
    let rows = |r: crate::ch::Rows| -> Vec<Value> {
        r.data
            .into_iter()
            .map(|m| Value::Object(query::unprefix(m)))
            .collect()
    };
    let (http, dns) = (rows(http), rows(dns));
    let alerts = super::alerts::for_flow(&st, &cat, id, &sensor).await?;
    let tls = match text(row.get("tls_sni")).is_empty() && text(row.get("tls_version")).is_empty() {
        true => Value::Null,
        false => json!({"sni": row.get("tls_sni"), "version": row.get("tls_version"),
                        "alpn": row.get("tls_alpn"), "ja4": row.get("ja4")}),
    };
    Ok(Json(json!({
        "flow": flow_row(row), "tls": tls, "http": http, "dns": dns, "alerts": alerts,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct SensorsQuery {
    start: Option<u64>,
    end: Option<u64>,
}

pub async fn sensors(State(st): State<S>, _a: Authed, Query(q): Query<SensorsQuery>) -> ApiResult {
    let end = q.end.unwrap_or_else(now);
    let start = q.start.unwrap_or(end.saturating_sub(3600));
    let cat = st.catalog();
    let (start, end, _) = Base {
        start,
        end,
        filter: String::new(),
    }
    .check(&cat)?;
    let scrapes = futures_util::future::join_all(
        st.cfg
            .sensors
            .iter()
            .map(|s| st.scraper.read(&s.id, &s.metrics_url)),
    );
    let (stored, scrapes) = tokio::join!(stored_sensors(&st, start, end), scrapes);
    let (s, e, table, mut stored) = stored?;
    // Configured sensors first, in config order, then those only the flows table knows.
    let mut out = Vec::new();
    for (cfg, metrics) in st.cfg.sensors.iter().zip(scrapes) {
        let mut row = stored
            .remove(&cfg.id)
            .unwrap_or_else(|| json!({"sensor_id": cfg.id, "last_seen": null, "last_flow": null}));
        row["configured"] = json!(true);
        row["metrics_url"] = json!(cfg.metrics_url);
        row["drops"] = metrics.get("drops").cloned().unwrap_or(Value::Null);
        row["metrics"] = metrics;
        out.push(row);
    }
    for (_, mut row) in stored {
        row["configured"] = json!(false);
        row["metrics"] = Value::Null;
        row["drops"] = Value::Null;
        out.push(row);
    }
    Ok(Json(json!({"start": s, "end": e, "table": table, "sensors": out})).into_response())
}

/// Per sensor in the flows table: rates over the range (coarsest table that answers), and the
/// last flow's time from the raw table (the day before `end`).
async fn stored_sensors(
    st: &S,
    start: u32,
    end: u32,
) -> Result<
    (
        u32,
        u32,
        &'static str,
        std::collections::BTreeMap<String, Value>,
    ),
    super::ApiError,
> {
    let cat = st.catalog();
    let sensor = cat
        .field("Sensor")
        .ok_or_else(|| bad("no flows table yet"))?;
    let (t, s, e) = range_table(&cat, &[sensor], start, end, TableChoice::Auto);
    let env = env(st, &cat);
    let w = query::where_sql(s, e, None, env.dialect);
    let sql = format!(
        "SELECT sensor_id, toUInt32(max(ts)) AS last_seen, {} AS n_flows, {} AS n_bytes, {} AS n_packets \
         FROM {}.{} WHERE {w} GROUP BY sensor_id ORDER BY sensor_id",
        query::metric(t, query::Unit::Flows, query::Direction::Both),
        query::metric(t, query::Unit::Bytes, query::Direction::Both),
        query::metric(t, query::Unit::Packets, query::Direction::Both),
        env.db,
        t.name
    );
    let last = format!(
        "SELECT sensor_id, toUInt32(max(ts)) AS last_flow FROM {}.flows WHERE {} GROUP BY sensor_id",
        env.db,
        query::where_sql(end.saturating_sub(86_400), end, None, env.dialect)
    );
    let (rows, last) = tokio::join!(st.ch.query(&sql), st.ch.query(&last));
    let (rows, last) = (rows?, last?);
    let secs = f64::from(e - s);
    let mut out = std::collections::BTreeMap::new();
    for r in &rows.data {
        let n = |k: &str| num(r.get(k).unwrap_or(&json!(0)));
        let (f, b, p) = (n("n_flows"), n("n_bytes"), n("n_packets"));
        let id = text(r.get("sensor_id"));
        out.insert(
            id.clone(),
            json!({"sensor_id": id, "last_seen": n("last_seen"), "last_flow": null,
               "flows": f, "bytes": b, "packets": p, "flows_per_sec": f / secs,
               "bytes_per_sec": b / secs, "packets_per_sec": p / secs}),
        );
    }
    for r in &last.data {
        let id = text(r.get("sensor_id"));
        let at = json!(num(r.get("last_flow").unwrap_or(&json!(0))));
        out.entry(id.clone())
            .or_insert_with(|| json!({"sensor_id": id, "last_seen": null}))["last_flow"] = at;
    }
    Ok((s, e, t.name, out))
}
