//! NATS JetStream sink: each record's EVE JSON object (the bytes [`super::eve`] writes, without
//! the newline) published on `sensor.<sensor_id>.<event_type>`, with a `Nats-Msg-Id` header so
//! JetStream drops a message it already stored (a batch re-sent after a lost acknowledgement).
//!
//! A batch is acknowledged when every one of its messages is; at most `max_inflight`
//! acknowledgements are awaited at once. The stream is created if missing, or its subjects and
//! limits updated to the configured ones.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;

use super::sink::{SendError, Sink};

/// Connection and stream settings, already resolved (secrets from the environment, etc.).
#[derive(Clone)]
pub struct NatsOptions {
    pub url: String,
    pub token: String,
    pub user: String,
    pub password: String,
    pub ca_file: String,
    pub stream: String,
    pub sensor_id: String,
    pub max_bytes: i64,
    pub max_age: Duration,
    pub duplicate_window: Duration,
    pub max_inflight: usize,
    pub timeout: Duration,
}

impl std::fmt::Debug for NatsOptions {
    /// Token and password are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("stream", &self.stream)
            .field("sensor_id", &self.sensor_id)
            .finish_non_exhaustive()
    }
}

/// Appends one message to a batch payload: `[u16 subject len][subject][u16 id len][id]
/// [u32 payload len][payload]`.
pub fn push_message(out: &mut Vec<u8>, subject: &str, id: &str, payload: &[u8]) {
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// One message of a batch payload, borrowed.
pub struct Message<'a> {
    pub subject: &'a str,
    pub id: &'a str,
    pub payload: &'a [u8],
}

/// Splits a batch payload back into messages; `None` if it is damaged.
pub fn messages(mut p: &[u8]) -> Option<Vec<Message<'_>>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (a, b) = (p.get(..n)?, p.get(n..)?);
        *p = b;
        Some(a)
    }
    let mut out = Vec::new();
    while !p.is_empty() {
        let sl = u16::from_le_bytes(take(&mut p, 2)?.try_into().ok()?);
        let subject = std::str::from_utf8(take(&mut p, usize::from(sl))?).ok()?;
        let il = u16::from_le_bytes(take(&mut p, 2)?.try_into().ok()?);
        let id = std::str::from_utf8(take(&mut p, usize::from(il))?).ok()?;
        let pl = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?);
        let payload = take(&mut p, pl as usize)?;
        out.push(Message {
            subject,
            id,
            payload,
        });
    }
    Some(out)
}

pub struct NatsSink {
    opts: NatsOptions,
    js: Option<jetstream::Context>,
}

impl NatsSink {
    pub fn new(opts: NatsOptions) -> NatsSink {
        NatsSink { opts, js: None }
    }

    async fn connect(&self) -> Result<jetstream::Context, SendError> {
        let o = &self.opts;
        let mut c = async_nats::ConnectOptions::new()
            .connection_timeout(o.timeout)
            .request_timeout(Some(o.timeout))
            .name("sensor");
        if !o.token.is_empty() {
            c = c.token(o.token.clone());
        } else if !o.user.is_empty() {
            c = c.user_and_password(o.user.clone(), o.password.clone());
        }
        if !o.ca_file.is_empty() {
            c = c
                .add_root_certificates(PathBuf::from(&o.ca_file))
                .require_tls(true);
        }
        let client = c.connect(o.url.as_str()).await.map_err(|e| {
            let msg = e.to_string();
            if matches!(
                e.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
            ) {
                SendError::Fatal(format!("server refused our credentials: {msg}"))
            } else if let Some(why) = super::tls::tls_failure(&e) {
                // A certificate our CA did not sign comes as an I/O error.
                SendError::Fatal(format!("TLS: {why}"))
            } else if matches!(e.kind(), async_nats::ConnectErrorKind::Tls) {
                SendError::Fatal(format!("TLS: {msg}"))
            } else {
                SendError::Transient(format!("cannot connect: {msg}"))
            }
        })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(o.timeout)
            .ack_timeout(o.timeout)
            .max_ack_inflight(o.max_inflight)
            .backpressure_on_inflight(true)
            .build(client);
        let cfg = stream::Config {
            name: o.stream.clone(),
            subjects: vec![format!("sensor.{}.>", o.sensor_id)],
            max_bytes: if o.max_bytes > 0 { o.max_bytes } else { -1 },
            max_age: o.max_age,
            duplicate_window: o.duplicate_window,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        match js.get_stream(&o.stream).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| SendError::Transient(format!("stream info: {e}")))?;
                let mut want = info.config.clone();
                let subject = format!("sensor.{}.>", o.sensor_id);
                if !want.subjects.contains(&subject) {
                    want.subjects.push(subject);
                }
                want.max_bytes = cfg.max_bytes;
                want.max_age = cfg.max_age;
                want.duplicate_window = cfg.duplicate_window;
                if want != info.config {
                    js.update_stream(want)
                        .await
                        .map_err(|e| SendError::Fatal(format!("cannot update stream: {e}")))?;
                }
            }
            Err(_) => {
                js.create_stream(cfg).await.map_err(|e| {
                    SendError::Transient(format!("cannot create stream {}: {e}", o.stream))
                })?;
            }
        }
        Ok(js)
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn prepare(&mut self) -> Result<(), SendError> {
        if self.js.is_none() {
            self.js = Some(self.connect().await?);
        }
        Ok(())
    }

    async fn send(&mut self, _rows: u32, payload: &[u8]) -> Result<(), SendError> {
        let Some(js) = self.js.clone() else {
            return Err(SendError::Transient("not connected".into()));
        };
        let Some(msgs) = messages(payload) else {
            return Err(SendError::Permanent("damaged batch".into()));
        };
        let mut pending = VecDeque::with_capacity(self.opts.max_inflight.min(msgs.len()));
        let mut result = Ok(());
        for m in msgs {
            if pending.len() >= self.opts.max_inflight {
                if let Some(ack) = pending.pop_front() {
                    if let Err(e) = wait_ack(ack).await {
                        result = Err(e);
                        break;
                    }
                }
            }
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", m.id);
            match js
                .publish_with_headers(m.subject.to_string(), h, Bytes::copy_from_slice(m.payload))
                .await
            {
                Ok(ack) => pending.push_back(ack),
                Err(e) => {
                    result = Err(publish_error(&e));
                    break;
                }
            }
        }
        while let Some(ack) = pending.pop_front() {
            let r = wait_ack(ack).await;
            if result.is_ok() {
                result = r;
            }
        }
        if let Err(SendError::Transient(_)) = &result {
            // Reconnect and check the stream before the next attempt.
            self.js = None;
        }
        result
    }
}

async fn wait_ack(ack: jetstream::context::PublishAckFuture) -> Result<(), SendError> {
    ack.await.map(|_| ()).map_err(|e| publish_error(&e))
}

fn publish_error(e: &jetstream::context::PublishError) -> SendError {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => SendError::Permanent(e.to_string()),
        _ => SendError::Transient(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_payload_round_trips_and_damage_is_detected() {
        let mut p = Vec::new();
        push_message(&mut p, "sensor.a.flow", "a:1:f", b"{\"x\":1}");
        push_message(&mut p, "sensor.a.dns", "a:1:0", b"{}");
        let m = messages(&p).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].subject, "sensor.a.flow");
        assert_eq!(m[1].id, "a:1:0");
        assert_eq!(m[0].payload, b"{\"x\":1}");
        assert!(messages(&p[..p.len() - 1]).is_none());
    }
}
