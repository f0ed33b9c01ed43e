//! Live alerts: an ordered (ephemeral, unacknowledged) JetStream consumer of the `ALERTS`
//! stream that `pipeline detect --config` writes, starting at new messages, fanned out to the
//! browsers' event streams (`GET /api/v1/alerts/stream`) through a broadcast channel.
//!
//! One consumer per console, however many browsers: the server holds one subscription, each
//! browser a broadcast receiver. After a lost connection the consumer is made anew from "new"
//! messages; what was published meanwhile is in ClickHouse's `alerts`, which the page re-reads
//! periodically. A message that is not an alert is counted and skipped.

use crate::config::Nats;
use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Largest alert message read (the pipeline's are a few KiB).
const MAX_ALERT_BYTES: usize = 256 * 1024;
/// Alerts a slow browser may fall behind before it is told it lost some.
const CHANNEL: usize = 1024;
/// Event streams open at once, over all sessions.
pub const MAX_STREAMS: usize = 256;

/// The consumer's state, shared with the HTTP handlers.
pub struct Live {
    pub tx: broadcast::Sender<Arc<str>>,
    pub connected: AtomicBool,
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    /// Event streams open now.
    pub streams: AtomicUsize,
}

impl Live {
    pub fn status(&self) -> Value {
        json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "received": self.received.load(Ordering::Relaxed),
            "malformed": self.malformed.load(Ordering::Relaxed),
        })
    }
}

/// Starts the consumer task (it reconnects for ever, with backoff).
pub fn start(cfg: Nats) -> Arc<Live> {
    let (tx, _) = broadcast::channel(CHANNEL);
    let live = Arc::new(Live {
        tx,
        connected: AtomicBool::new(false),
        received: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        streams: AtomicUsize::new(0),
    });
    let l = live.clone();
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(500);
        loop {
            match consume(&cfg, &l).await {
                Ok(()) => pause = Duration::from_millis(500),
                Err(e) => tracing::warn!("live alerts: {e}; retrying in {pause:?}"),
            }
            l.connected.store(false, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    });
    live
}

pub(crate) async fn connect(cfg: &Nats) -> Result<jetstream::Context, String> {
    let mut o = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name("pipeline-console");
    if !cfg.token.is_empty() {
        o = o.token(cfg.token.clone());
    } else if !cfg.user.is_empty() {
        o = o.user_and_password(cfg.user.clone(), cfg.password.clone());
    }
    let client = o
        .connect(cfg.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", cfg.url))?;
    Ok(jetstream::new(client))
}

/// Reads the stream until the connection or the consumer fails.
async fn consume(cfg: &Nats, live: &Live) -> Result<(), String> {
    let js = connect(cfg).await?;
    let stream = js
        .get_stream(&cfg.alerts_stream)
        .await
        .map_err(|e| format!("stream {}: {e}", cfg.alerts_stream))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::New,
            filter_subject: format!("{}.>", cfg.alerts_subject),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("ordered consumer on {}: {e}", cfg.alerts_stream))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("reading {}: {e}", cfg.alerts_stream))?;
    live.connected.store(true, Ordering::Relaxed);
    tracing::info!(
        "live alerts: reading {} from new messages",
        cfg.alerts_stream
    );
    let mut errors = 0;
    while let Some(m) = messages.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                // The ordered consumer recreates itself on gaps; persistent errors reconnect.
                errors += 1;
                if errors > 10 {
                    return Err(format!("consumer errors: {e}"));
                }
                continue;
            }
        };
        errors = 0;
        live.received.fetch_add(1, Ordering::Relaxed);
        match alert_row(&m.payload) {
            // No receiver (no browser open) is not an error.
            Some(row) => {
                let _ = live.tx.send(Arc::from(row.to_string()));
            }
            None => {
                live.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Err("the message stream ended".into())
}

/// An EVE alert line as a row of the alerts list (the columns of table `alerts`, addresses as
/// text, `ts` in unix seconds); `None` when it is not an alert.
pub fn alert_row(payload: &[u8]) -> Option<Value> {
    if payload.len() > MAX_ALERT_BYTES {
        return None;
    }
    let v: Value = serde_json::from_slice(payload).ok()?;
    let a = v.get("alert")?;
    let id = a.get("id")?.as_str().filter(|s| !s.is_empty())?;
    let ts = pipeline_detect::time::parse(v.get("timestamp")?.as_str()?)?;
    let s = |x: Option<&Value>| x.and_then(Value::as_str).unwrap_or("").to_string();
    let n = |x: Option<&Value>| x.and_then(Value::as_u64).unwrap_or(0);
    let ip = |x: Option<&Value>| {
        x.and_then(Value::as_str)
            .and_then(|t| t.parse::<IpAddr>().ok())
            .map_or(String::new(), |a| a.to_string())
    };
    let mitre: Vec<String> = a
        .pointer("/metadata/mitre")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some(json!({
        "alert_id": id,
        "ts": ts.div_euclid(1_000_000).max(0),
        "sensor_id": s(v.get("host").or_else(|| v.get("sensor_id"))),
        "rule": s(a.get("rule")),
        "signature_id": n(a.get("signature_id")),
        "signature": s(a.get("signature")),
        "category": s(a.get("category")),
        "severity": n(a.get("severity")).min(255),
        "action": s(a.get("action")),
        "flow_id": n(v.get("flow_id")),
        "src_ip": ip(v.get("src_ip")),
        "src_port": n(v.get("src_port")),
        "dest_ip": ip(v.get("dest_ip")),
        "dest_port": n(v.get("dest_port")),
        "proto": s(v.get("proto")),
        "mitre": mitre,
        "evidence": a.get("evidence").map(Value::to_string).unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = r#"{"timestamp":"2024-01-02T03:04:05.000006+0000","flow_id":7,"event_type":"alert","src_ip":"10.0.0.1","src_port":1234,"dest_ip":"2001:db8::1","dest_port":22,"proto":"TCP","sensor_id":"s1","alert":{"action":"allowed","gid":1,"signature_id":9000001,"rev":1,"signature":"SSH brute force","category":"Attempted Administrator Privilege Gain","severity":2,"metadata":{"mitre":["T1110"]},"id":"a1b2","rule":"ssh-brute","evidence":{"count":12}}}"#;

    #[test]
    fn an_alert_line_becomes_a_list_row() {
        let r = alert_row(ALERT.as_bytes()).unwrap();
        assert_eq!(r["alert_id"], "a1b2");
        assert_eq!(r["ts"], 1_704_164_645);
        assert_eq!(r["sensor_id"], "s1");
        assert_eq!(r["severity"], 2);
        assert_eq!(r["src_ip"], "10.0.0.1");
        assert_eq!(r["mitre"][0], "T1110");
        assert_eq!(r["evidence"], r#"{"count":12}"#);
    }

    #[test]
    fn what_is_not_an_alert_is_refused() {
        for bad in [
            &b"not json"[..],
            b"{}",
            b"{\"alert\":{\"id\":\"x\"}}",
            b"{\"timestamp\":\"yesterday\",\"alert\":{\"id\":\"x\"}}",
            b"{\"timestamp\":\"2024-01-02T03:04:05+0000\",\"alert\":{\"id\":\"\"}}",
        ] {
            assert!(alert_row(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_ALERT_BYTES));
        assert!(alert_row(huge.as_bytes()).is_none());
        // A hostile address stays out of the row.
        let odd = ALERT.replace("10.0.0.1", "<script>");
        assert_eq!(alert_row(odd.as_bytes()).unwrap()["src_ip"], "");
    }
}
