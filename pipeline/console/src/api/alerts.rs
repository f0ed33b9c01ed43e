//! Alerts (the pipeline's `alerts` table, when it exists) and their acknowledgements (the
//! console's own `alert_acks` table, written by the writer user only).
//!
//! The alerts table belongs to the pipeline and may gain columns; the console reads the
//! columns it finds (addresses rendered as text) and filters only on those that exist.

use super::{bad, body, env, fail, Admin, ApiError, ApiResult, Authed, S};
use crate::ch::{num, text};
use crate::filter::quote;
use crate::query::{unprefix, ALIAS};
use crate::schema::{addr_text, Catalog};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::Json;
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The alert id column: `alert_id` or `id`.
fn id_column(cat: &Catalog) -> Option<&'static str> {
    ["alert_id", "id"]
        .into_iter()
        .find(|c| cat.alert_columns.iter().any(|x| x == c))
}

fn has(cat: &Catalog, c: &str) -> bool {
    cat.alert_columns.iter().any(|x| x == c)
}

/// The select list: every column, addresses as text, times as unix seconds.
fn select_list(cat: &Catalog) -> String {
    cat.alert_columns
        .iter()
        .filter(|c| crate::config::is_identifier(c))
        .map(|c| {
            if c.ends_with("_ip") {
                format!("{} AS {ALIAS}{c}", addr_text(c))
            } else if c == "ts" {
                format!("toUInt32(ts) AS {ALIAS}ts")
            } else {
                c.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The alerts of one flow (empty without an alerts table).
pub async fn for_flow(
    st: &S,
    cat: &Catalog,
    flow_id: u64,
    sensor: &str,
) -> Result<Vec<Value>, ApiError> {
    if !cat.has_table("alerts") || !has(cat, "flow_id") {
        return Ok(Vec::new());
    }
    let s = if has(cat, "sensor_id") {
        format!(" AND sensor_id = {sensor}")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {} FROM {}.alerts WHERE flow_id = {flow_id}{s} LIMIT 100",
        select_list(cat),
        st.cfg.clickhouse.database
    );
    Ok(st
        .ch
        .query(&sql)
        .await?
        .data
        .into_iter()
        .map(|r| Value::Object(unprefix(r)))
        .collect())
}

fn hundred() -> u32 {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListReq {
    start: u64,
    end: u64,
    #[serde(default)]
    severity: Vec<u8>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    addr: Option<String>,
    #[serde(default)]
    acked: Option<bool>,
    /// One alert by its id (the detail page opened from a link).
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    offset: u64,
    #[serde(default = "hundred")]
    limit: u32,
}

/// Conditions over the columns that exist; a filter on a missing column is an error.
fn conditions(st: &S, cat: &Catalog, req: &ListReq) -> Result<Vec<String>, ApiError> {
    let d = st.dialect();
    let mut w = vec![format!(
        "ts >= toDateTime({}) AND ts < toDateTime({})",
        req.start, req.end
    )];
    let need = |c: &str| -> Result<(), ApiError> {
        if has(cat, c) {
            Ok(())
        } else {
            Err(bad(format!("the alerts table has no {c} column")))
        }
    };
    if !req.severity.is_empty() {
        need("severity")?;
        let l: Vec<String> = req.severity.iter().map(u8::to_string).collect();
        w.push(format!("severity IN ({})", l.join(", ")));
    }
    // An empty rule or address (a cleared filter box) filters nothing.
    if let Some(r) = req.rule.as_deref().filter(|r| !r.is_empty()) {
        need("rule")?;
        w.push(format!("rule = {}", quote(r)));
    }
    if let Some(a) = req.addr.as_deref().filter(|a| !a.is_empty()) {
        need("src_ip")?;
        need("dest_ip")?;
        let ip: IpAddr = a
            .parse()
            .map_err(|_| bad(format!("addr {a:?} is not an IP address")))?;
        let b = match ip {
            IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            IpAddr::V6(v) => v.octets(),
        };
        let lit = d.addr_literal(b);
        w.push(format!("(src_ip = {lit} OR dest_ip = {lit})"));
    }
    if let Some(id) = req.id.as_deref().filter(|i| !i.is_empty()) {
        let col = id_column(cat).ok_or_else(|| bad("the alerts table has no id column"))?;
        if id.len() > 200 {
            return Err(bad("id: at most 200 bytes"));
        }
        w.push(format!("toString({col}) = {}", quote(id)));
    }
    if let Some(acked) = req.acked {
        let id = id_column(cat).ok_or_else(|| bad("the alerts table has no id column"))?;
        if !cat.acks {
            return Err(bad(
                "acknowledgements are not configured (clickhouse.writer_user)",
            ));
        }
        let not = if acked { "" } else { "NOT " };
        w.push(format!(
            "toString({id}) {not}IN (SELECT alert_id FROM {}.alert_acks)",
            st.cfg.clickhouse.console_database
        ));
    }
    Ok(w)
}

/// Whether the page gets live updates, for the page to say so (it polls otherwise).
fn live_status(st: &S) -> Value {
    match st.live.get() {
        Some(l) => {
            let mut v = l.status();
            v["configured"] = json!(true);
            v
        }
        None => json!({"configured": false, "connected": false}),
    }
}

pub async fn list(State(st): State<S>, _a: Authed, b: Bytes) -> ApiResult {
    let req: ListReq = body(&b)?;
    if req.end <= req.start || req.end > u64::from(u32::MAX) || !(1..=1000).contains(&req.limit) {
        return Err(bad("need start < end (unix seconds) and limit 1..=1000"));
    }
    let cat = st.catalog();
    let live = live_status(&st);
    if !cat.has_table("alerts") || !has(&cat, "ts") {
        return Ok(
            Json(json!({"available": false, "total": 0, "rows": [], "live": live})).into_response(),
        );
    }
    let w = conditions(&st, &cat, &req)?.join(" AND ");
    let db = &env(&st, &cat).db.to_string();
    let total = st
        .ch
        .query(&format!("SELECT count() AS n FROM {db}.alerts WHERE {w}"))
        .await?;
    let sql = format!(
        "SELECT {} FROM {db}.alerts WHERE {w} ORDER BY ts DESC LIMIT {}, {}",
        select_list(&cat),
        req.offset.min(1_000_000),
        req.limit
    );
    let mut rows: Vec<Value> = st
        .ch
        .query(&sql)
        .await?
        .data
        .into_iter()
        .map(|r| Value::Object(unprefix(r)))
        .collect();
    add_acks(&st, &cat, &mut rows).await?;
    let total = total.data.first().and_then(|r| r.get("n")).map_or(0.0, num);
    Ok(
        Json(json!({"available": true, "total": total, "rows": rows, "live": live}))
            .into_response(),
    )
}

/// `acked_by` / `acked_at` on each row from the console's table.
async fn add_acks(st: &S, cat: &Catalog, rows: &mut [Value]) -> Result<(), ApiError> {
    let Some(id) = id_column(cat) else {
        return Ok(());
    };
    if !cat.acks || rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = rows.iter().map(|r| quote(&text(r.get(id)))).collect();
    let sql = format!(
        "SELECT alert_id, any(username) AS username, toUInt32(min(ts)) AS at FROM {}.alert_acks \
         WHERE alert_id IN ({}) GROUP BY alert_id",
        st.cfg.clickhouse.console_database,
        ids.join(", ")
    );
    let acks = st.ch.query(&sql).await?;
    for r in rows.iter_mut() {
        let key = text(r.get(id));
        let a = acks.data.iter().find(|a| text(a.get("alert_id")) == key);
        r["acked_by"] = a.map_or(Value::Null, |a| json!(text(a.get("username"))));
        r["acked_at"] = a.map_or(Value::Null, |a| {
            json!(num(a.get("at").unwrap_or(&json!(0))))
        });
    }
    Ok(())
}

pub async fn ack(State(st): State<S>, Admin(a): Admin, Path(alert): Path<String>) -> ApiResult {
    if alert.is_empty() || alert.len() > 200 {
        return Err(bad("alert id: 1 to 200 bytes"));
    }
    let Some(w) = &st.writer else {
        return Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "acknowledgements need clickhouse.writer_user",
        ));
    };
    let cat = st.catalog();
    if let (true, Some(id)) = (cat.has_table("alerts"), id_column(&cat)) {
        let sql = format!(
            "SELECT count() AS n FROM {}.alerts WHERE toString({id}) = {}",
            st.cfg.clickhouse.database,
            quote(&alert)
        );
        let n = st.ch.query(&sql).await?;
        if n.data.first().and_then(|r| r.get("n")).map_or(0.0, num) == 0.0 {
            return Err(fail(StatusCode::NOT_FOUND, format!("no alert {alert:?}")));
        }
    } else {
        return Err(fail(StatusCode::NOT_FOUND, "there is no alerts table"));
    }
    w.execute(&format!(
        "INSERT INTO {}.alert_acks (alert_id, username, ts) VALUES ({}, {}, now())",
        st.cfg.clickhouse.console_database,
        quote(&alert),
        quote(&a.session.username)
    ))
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Counts an open event stream; closing it (the browser left) gives the place back.
struct StreamSlot(Arc<crate::live::Live>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often an open stream re-checks its session and says whether NATS is connected.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// `GET /alerts/stream`: server-sent events, `alert` (a list row, from `ALERTS`), `status`
/// (every 10 s, also a keep-alive) and `lagged` (alerts this browser missed). The stream ends
/// when the session does (logout, expiry).
pub async fn stream(State(st): State<S>, a: Authed) -> Result<impl IntoResponse, ApiError> {
    let Some(live) = st.live.get().cloned() else {
        return Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "live alerts need [nats] url in the console config; the page polls instead",
        ));
    };
    if live.streams.fetch_add(1, Ordering::Relaxed) >= crate::live::MAX_STREAMS {
        live.streams.fetch_sub(1, Ordering::Relaxed);
        return Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams open; the page polls instead",
        ));
    }
    let rx = live.tx.subscribe();
    let tick = tokio::time::interval(STATUS_EVERY);
    let state = (rx, tick, st, a.id, StreamSlot(live));
    let events = futures_util::stream::unfold(
        state,
        |(mut rx, mut tick, st, id, slot)| async move {
            let ev = tokio::select! {
                r = rx.recv() => match r {
                    Ok(row) => Event::default().event("alert").data(&*row),
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(RecvError::Closed) => return None,
                },
                _ = tick.tick() => Event::default().event("status").data(live_status(&st).to_string()),
            };
            st.auth.session(&id)?;
            Some((Ok::<_, Infallible>(ev), (rx, tick, st, id, slot)))
        },
    );
    Ok(Sse::new(events))
}
