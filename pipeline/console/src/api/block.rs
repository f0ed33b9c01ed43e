//! The admin's block button. The console holds no signing key: it publishes an operator
//! request (`pipeline_command::request::BlockRequest`) on stream `REQUESTS`, and `pipeline
//! respond` checks it, applies its guard rails, signs and sends the command, and audits it in
//! table `actions` with `console:<user>` as the source. The outcome is read back from there:
//! the request's records have ids `<request id>:<sensor>:<outcome>`, and the sensors' own
//! records share the command ids of the `requested` ones.

use super::{bad, body, fail, Admin, ApiResult, Authed, S};
use crate::ch::text;
use crate::filter::quote;
use async_nats::jetstream::{self, stream};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hyper::body::Bytes;
use pipeline_command::request::{plain_id, BlockRequest, REQUESTS_MAX_AGE_SECS};
use pipeline_command::{DUPLICATE_WINDOW_SECS, REQUESTS_STREAM, REQUESTS_SUBJECT};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockReq {
    target: String,
    duration_secs: u64,
    #[serde(default)]
    sensor: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    alert_id: String,
}

/// 32 hex digits from the OS generator.
fn request_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The JetStream context for requests, connected on first use; stream `REQUESTS` is created
/// when missing (as respond does), so a request made before respond first ran is kept.
async fn jetstream(st: &S) -> Result<&jetstream::Context, String> {
    let Some(n) = &st.cfg.nats else {
        return Err("blocks need [nats] url in the console config".into());
    };
    st.requests
        .get_or_try_init(|| async {
            let js = crate::live::connect(n).await?;
            js.get_or_create_stream(stream::Config {
                name: REQUESTS_STREAM.to_string(),
                subjects: vec![REQUESTS_SUBJECT.to_string()],
                max_age: Duration::from_secs(REQUESTS_MAX_AGE_SECS),
                duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_SECS),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {REQUESTS_STREAM}: {e}"))?;
            Ok(js)
        })
        .await
}

/// `POST /block` (admin): publishes the request; 202 with its id, pending until respond
/// answers in `actions` (`GET /block/{id}`).
pub async fn request(State(st): State<S>, Admin(a): Admin, b: Bytes) -> ApiResult {
    let r: BlockReq = body(&b)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let req = BlockRequest {
        id: request_id(),
        time_ms: now,
        user: a.session.username.clone(),
        target: r.target,
        duration_secs: r.duration_secs,
        sensor: r.sensor,
        reason: r.reason,
        alert_id: r.alert_id,
    };
    let cidr = req.validate().map_err(bad)?;
    let js = jetstream(&st)
        .await
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", req.id.as_str());
    let payload = serde_json::to_vec(&req).map_err(|e| bad(e.to_string()))?;
    let published = async {
        js.publish_with_headers(REQUESTS_SUBJECT, h, payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = published.await {
        return Err(fail(
            StatusCode::BAD_GATEWAY,
            format!("publishing the request: {e}"),
        ));
    }
    tracing::info!("block request {} by {}: {cidr}", req.id, req.user);
    let answer = json!({
        "id": req.id, "status": "pending", "target": cidr.to_string(),
        "duration_secs": req.duration_secs, "sensor": req.sensor,
    });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

const ACTION_COLUMNS: &str = "toUInt32(ts) AS ts, time_ms, source, sensor_id, kind, target, \
    outcome, detail, alert_id, command_id, playbook";

/// What the request's records say, most decisive first.
fn status(records: &[Value]) -> &'static str {
    let has = |o: &str| records.iter().any(|r| text(r.get("outcome")) == o);
    if has("rejected") {
        "refused"
    } else if has("dry_run") {
        "dry_run"
    } else if has("applied") {
        "applied"
    } else if has("requested") {
        "sent"
    } else {
        "pending"
    }
}

/// `GET /block/{id}`: the request's audit records and its status (`pending`, `sent`,
/// `applied`, `refused`, `dry_run`).
pub async fn outcome(State(st): State<S>, _a: Authed, Path(id): Path<String>) -> ApiResult {
    if !plain_id(&id) {
        return Err(bad("request id: 1 to 64 of A-Z a-z 0-9 _ -"));
    }
    let cat = st.catalog();
    if !cat.has_table("actions") {
        return Ok(Json(json!({"id": id, "status": "pending", "records": []})).into_response());
    }
    let db = &st.cfg.clickhouse.database;
    let prefix = format!("{id}:");
    let mine = format!("substring(id, 1, {}) = {}", prefix.len(), quote(&prefix));
    let sql = format!(
        "SELECT {ACTION_COLUMNS} FROM {db}.actions WHERE {mine} OR command_id IN \
         (SELECT command_id FROM {db}.actions WHERE {mine} AND outcome = 'requested') \
         ORDER BY time_ms LIMIT 1000"
    );
    let records = st.ch.query(&sql).await?.data;
    let records: Vec<Value> = records.into_iter().map(Value::Object).collect();
    let s = status(&records);
    Ok(Json(json!({"id": id, "status": s, "records": records})).into_response())
}

/// `GET /alerts/{id}/actions`: what the response did about an alert (playbooks' and
/// operators' records, and the sensors' outcomes).
pub async fn for_alert(State(st): State<S>, _a: Authed, Path(alert): Path<String>) -> ApiResult {
    if alert.is_empty() || alert.len() > 200 {
        return Err(bad("alert id: 1 to 200 bytes"));
    }
    let cat = st.catalog();
    if !cat.has_table("actions") {
        return Ok(Json(json!({"available": false, "rows": []})).into_response());
    }
    let db = &st.cfg.clickhouse.database;
    let sql = format!(
        "SELECT {ACTION_COLUMNS} FROM {db}.actions WHERE alert_id = {a} OR command_id IN \
         (SELECT command_id FROM {db}.actions WHERE alert_id = {a} AND command_id != '') \
         ORDER BY time_ms LIMIT 1000",
        a = quote(&alert)
    );
    let rows: Vec<Value> = st
        .ch
        .query(&sql)
        .await?
        .data
        .into_iter()
        .map(Value::Object)
        .collect();
    Ok(Json(json!({"available": true, "rows": rows})).into_response())
}
