//! The command channel's sensor side: signed block/unblock commands from `pipeline respond`,
//! consumed from JetStream, verified, applied to the XDP blocklist through the control thread,
//! and answered with an audit record. Off the packet cores: one thread with its own small
//! tokio runtime.
//!
//! Per message, in this order: [`Verifier::verify`] against the wall clock; a command that
//! passes goes to the control thread ([`BlockOp`]), which writes the kernel map and the state
//! file (with the command's nonce, so a replay after a restart is refused too) before it
//! answers; the outcome (applied, rejected with the cause, expired, failed) is published as an
//! [`ActionRecord`] on `actions.sensor` and acknowledged by JetStream; only then is the command
//! acknowledged. A crash in between redelivers the command: its nonce is already kept, so it
//! is refused as replayed, and its record carries the same id (`<command>:<sensor>:<stream
//! sequence>`), which JetStream's duplicate window drops when the first one was stored.
//!
//! Every message counts once in `received` and once in `applied`, `failed` or one rejection
//! cause of [`Rejection::CAUSES`].
//!
//! The operators' side of the same blocklist is [`socket`].

pub mod socket;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use crossbeam_channel::{Receiver, Sender};
use pipeline_command::audit::{ActionRecord, Outcome};
use pipeline_command::{Action, Command, Rejection, Verifier, ACTIONS_STREAM, COMMANDS_STREAM};

use crate::capture::blocklist::{now_ms, Block, Source};
use crate::capture::control::BlockOp;
use crate::config::{Config, ConfigError};
use crate::export::nats::{NatsOptions, PullBatch};

/// Subject of the sensor's audit records.
pub const ACTIONS_SUBJECT: &str = "actions.sensor";
/// How long the consumer waits for the control thread to apply a command.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Redelivery when a command was not acknowledged (the sensor died while applying it).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// What the command channel counted; exported on `/metrics` and in the summary.
#[derive(Debug, Default)]
pub struct CommandCounters {
    pub received: AtomicU64,
    pub applied: AtomicU64,
    pub failed: AtomicU64,
    /// Indexed as [`Rejection::CAUSES`].
    pub rejected: [AtomicU64; Rejection::CAUSES.len()],
}

impl CommandCounters {
    fn reject(&self, cause: &str) {
        if let Some(i) = Rejection::CAUSES.iter().position(|c| *c == cause) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    /// The counts now, for the summary.
    pub fn snapshot(&self) -> CommandStats {
        CommandStats {
            received: self.received.load(Relaxed),
            applied: self.applied.load(Relaxed),
            failed: self.failed.load(Relaxed),
            rejected: Rejection::CAUSES
                .iter()
                .zip(&self.rejected)
                .map(|(c, n)| (*c, n.load(Relaxed)))
                .collect(),
        }
    }
}

/// The command channel's counts at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandStats {
    pub received: u64,
    pub applied: u64,
    pub failed: u64,
    /// Every cause of [`Rejection::CAUSES`], zero included.
    pub rejected: Vec<(&'static str, u64)>,
}

/// Loads the configured public key (None when the channel is off); a missing or damaged key
/// or state file is a configuration error naming its key.
pub fn check(cfg: &Config) -> Result<Option<ed25519_dalek::VerifyingKey>, ConfigError> {
    let c = &cfg.commands;
    if !c.state_file.is_empty() {
        crate::capture::blocklist::State::load(std::path::Path::new(&c.state_file)).map_err(
            |msg| ConfigError {
                key: "commands.state_file".into(),
                msg,
            },
        )?;
    }
    if c.public_key.is_empty() {
        return Ok(None);
    }
    pipeline_command::keys::load_verifying_key(std::path::Path::new(&c.public_key))
        .map(Some)
        .map_err(|e| ConfigError {
            key: "commands.public_key".into(),
            msg: e.to_string(),
        })
}

/// The running consumer; [`CommandChannel::stop`] ends it.
pub struct CommandChannel {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The command side's ends of the control thread's channels: changes to the blocklist, and
/// the blocks whose time ran out (audited as they end).
pub struct ControlLink {
    pub ops: Sender<BlockOp>,
    pub ended: Receiver<Block>,
}

/// What the consumer thread works with.
struct Consumer {
    nats: NatsOptions,
    sensor_id: String,
    verifier: Verifier,
    ops: Sender<BlockOp>,
    ended: Receiver<Block>,
    counters: Arc<CommandCounters>,
    stop: Arc<AtomicBool>,
}

impl CommandChannel {
    /// Starts consuming `commands.<sensor_id>`. `nonces`: those kept from before a restart.
    pub fn start(
        cfg: &Config,
        key: ed25519_dalek::VerifyingKey,
        nonces: Vec<(String, u64)>,
        link: ControlLink,
        counters: Arc<CommandCounters>,
    ) -> Result<CommandChannel> {
        let sensor_id = cfg.sensor_id();
        let mut verifier = Verifier::new(key, sensor_id.clone());
        for (n, e) in nonces {
            verifier.remember(n, e);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut c = Consumer {
            nats: NatsOptions::from_config(&cfg.nats, &sensor_id),
            sensor_id,
            verifier,
            ops: link.ops,
            ended: link.ended,
            counters,
            stop: Arc::clone(&stop),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the command channel's runtime")?;
        let thread = std::thread::Builder::new()
            .name("commands".into())
            .spawn(move || rt.block_on(c.run()))
            .context("cannot start the command channel thread")?;
        Ok(CommandChannel {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops after the message in hand (within about half a second).
    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Consumer {
    /// Sessions until stopped; a lost server is retried every second.
    async fn run(&mut self) {
        while !self.stop.load(Relaxed) {
            if let Err(e) = self.session().await {
                tracing::warn!("commands: {e:#}; retrying");
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until && !self.stop.load(Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn session(&mut self) -> Result<()> {
        let client = self
            .nats
            .connect_options("sensor-commands")
            .connect(self.nats.url.as_str())
            .await
            .context("connecting to NATS")?;
        let js = jetstream::ContextBuilder::new()
            .timeout(self.nats.timeout)
            .build(client);
        let stream = js
            .get_or_create_stream(stream_config(COMMANDS_STREAM, "commands.>"))
            .await
            .context("stream COMMANDS")?;
        js.get_or_create_stream(stream_config(ACTIONS_STREAM, "actions.>"))
            .await
            .context("stream ACTIONS")?;
        let subject = pipeline_command::command_subject(&self.sensor_id);
        let name = format!("sensor-{}", self.sensor_id);
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("consumer {name}"))?;
        tracing::info!("commands: consuming {subject} (stream COMMANDS, consumer {name})");
        while !self.stop.load(Relaxed) {
            let expires = Duration::from_millis(500);
            let batch = consumer
                .batch()
                .max_messages(64)
                .expires(expires)
                .messages()
                .await
                .context("pulling commands")?;
            let mut batch = PullBatch::new(batch, expires);
            while let Some(msg) = batch.next().await {
                let msg = msg.map_err(|e| anyhow::anyhow!("pulling commands: {e}"))?;
                self.handle(&js, &msg).await?;
            }
            self.audit_ended(&js).await?;
        }
        Ok(())
    }

    /// Records the blocks whose time ran out since the last look (kind `unblock`).
    async fn audit_ended(&mut self, js: &jetstream::Context) -> Result<()> {
        while let Ok(b) = self.ended.try_recv() {
            let what = if b.command_id.is_empty() {
                format!("{}-{}", b.cidr, b.expires_at_ms)
            } else {
                b.command_id.clone()
            };
            let r = ActionRecord {
                id: format!("{}:{}:ended", clean_id(&what), self.sensor_id),
                time_ms: now_ms(),
                source: "sensor".into(),
                sensor_id: self.sensor_id.clone(),
                kind: "unblock".into(),
                target: b.cidr.to_string(),
                outcome: Outcome::Applied,
                detail: format!("{} block ended: its duration ran out", b.source.as_str()),
                alert_id: b.alert_id,
                command_id: b.command_id,
                playbook: String::new(),
            };
            self.publish(js, &r).await?;
        }
        Ok(())
    }

    /// One command: verify, apply, record, acknowledge.
    async fn handle(&mut self, js: &jetstream::Context, msg: &jetstream::Message) -> Result<()> {
        self.counters.received.fetch_add(1, Relaxed);
        let seq = msg.info().map_or(0, |i| i.stream_sequence);
        let mut record = match self.verifier.verify(&msg.payload, now_ms()) {
            Ok(cmd) => self.apply(&cmd),
            Err(r) => {
                self.counters.reject(r.cause());
                tracing::warn!("commands: message {seq} rejected: {r}");
                rejected_record(&msg.payload, &r)
            }
        };
        let cmd_part = if record.command_id.is_empty() {
            "unparsed".to_string()
        } else {
            clean_id(&record.command_id)
        };
        record.id = format!("{cmd_part}:{}:{seq}", self.sensor_id);
        record.sensor_id.clone_from(&self.sensor_id);
        self.publish(js, &record).await?;
        msg.ack()
            .await
            .map_err(|e| anyhow::anyhow!("acknowledging command {seq}: {e}"))
    }

    /// Applies a verified command through the control thread.
    fn apply(&self, cmd: &Command) -> ActionRecord {
        let nonce = Some((cmd.nonce.clone(), cmd.expires_at_ms));
        let (reply, answer) = crossbeam_channel::bounded(1);
        let (kind, cidr, op) = match &cmd.action {
            Action::Block {
                cidr,
                duration_secs,
            } => {
                let expires_at_ms = match duration_secs {
                    0 => 0,
                    s => now_ms().saturating_add(s.saturating_mul(1000)),
                };
                let block = Block {
                    cidr: *cidr,
                    source: Source::Command,
                    expires_at_ms,
                    alert_id: cmd.alert_id.clone().unwrap_or_default(),
                    command_id: cmd.id.clone(),
                };
                let op = BlockOp::Add {
                    block,
                    nonce,
                    reply,
                };
                ("block", *cidr, op)
            }
            Action::Unblock { cidr } => {
                let op = BlockOp::Del {
                    net: *cidr,
                    nonce,
                    reply,
                };
                ("unblock", *cidr, op)
            }
        };
        let result = self
            .ops
            .send(op)
            .map_err(|_| "the control thread is gone".to_string())
            .and_then(|()| {
                answer
                    .recv_timeout(APPLY_TIMEOUT)
                    .map_err(|_| "the control thread did not answer".to_string())?
            });
        let (outcome, detail) = match result {
            Ok(d) => {
                self.counters.applied.fetch_add(1, Relaxed);
                let late = now_ms().saturating_sub(cmd.issued_at_ms);
                tracing::info!(
                    "commands: {} {kind} {cidr}: {d} ({late} ms after issue)",
                    cmd.id
                );
                (Outcome::Applied, d)
            }
            Err(e) => {
                self.counters.failed.fetch_add(1, Relaxed);
                tracing::warn!("commands: {} {kind} {cidr} failed: {e}", cmd.id);
                (Outcome::Failed, e)
            }
        };
        record_of(Some(cmd), kind, outcome, detail)
    }

    /// Publishes an audit record and waits for JetStream to store it, retrying until it does
    /// or the sensor stops (the command then stays unacknowledged and comes back).
    async fn publish(&self, js: &jetstream::Context, r: &ActionRecord) -> Result<()> {
        let payload = bytes::Bytes::from(serde_json::to_vec(r)?);
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", r.id.as_str());
            let sent = match js
                .publish_with_headers(ACTIONS_SUBJECT, headers, payload.clone())
                .await
            {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(e) if self.stop.load(Relaxed) => {
                    anyhow::bail!("audit record {} not stored at shutdown: {e}", r.id)
                }
                Err(e) => {
                    tracing::warn!("commands: audit record {}: {e}; retrying", r.id);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// What feeds the blocklist while the sensor runs: the operators' control socket, and the
/// command channel when `--nats` and `commands.public_key` are set.
pub struct BlocklistInputs {
    _socket: socket::ControlSocket,
    commands: Option<CommandChannel>,
}

impl BlocklistInputs {
    /// `key`: from [`check`]; `nonces`: those the blocklist kept from before a restart.
    pub fn start(
        cfg: &Config,
        iface: &str,
        key: Option<ed25519_dalek::VerifyingKey>,
        nonces: Vec<(String, u64)>,
        link: ControlLink,
        metrics: &crate::metrics::Metrics,
    ) -> Result<BlocklistInputs> {
        let socket = socket::ControlSocket::start(&cfg.control_socket(iface), link.ops.clone())?;
        let commands = match key {
            Some(key) if !cfg.nats.url.is_empty() => Some(CommandChannel::start(
                cfg,
                key,
                nonces,
                link,
                Arc::clone(&metrics.commands),
            )?),
            Some(_) => {
                tracing::warn!(
                    "commands.public_key is set but NATS is not (--nats): no command channel"
                );
                None
            }
            None => None,
        };
        Ok(BlocklistInputs {
            _socket: socket,
            commands,
        })
    }

    /// Stops the command channel (the socket goes when this is dropped); its counts when it
    /// ran.
    pub fn stop(&mut self, metrics: &crate::metrics::Metrics) -> Option<CommandStats> {
        let c = self.commands.take()?;
        c.stop();
        Some(metrics.commands.snapshot())
    }
}

/// The streams as `pipeline respond` creates them with its default config (whichever side
/// starts first creates them).
fn stream_config(name: &str, subjects: &str) -> stream::Config {
    let max_age = if name == COMMANDS_STREAM {
        pipeline_command::COMMANDS_MAX_AGE_SECS
    } else {
        pipeline_command::ACTIONS_MAX_AGE_SECS
    };
    stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(max_age),
        duplicate_window: Duration::from_secs(pipeline_command::DUPLICATE_WINDOW_SECS),
        ..Default::default()
    }
}

/// A record id part from untrusted text: bounded, and only characters safe in ids.
fn clean_id(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The audit record of a command, without its id (set by the caller).
fn record_of(cmd: Option<&Command>, kind: &str, outcome: Outcome, detail: String) -> ActionRecord {
    ActionRecord {
        id: String::new(),
        time_ms: now_ms(),
        source: "sensor".into(),
        sensor_id: String::new(),
        kind: kind.into(),
        target: cmd.map_or(String::new(), |c| match &c.action {
            Action::Block { cidr, .. } | Action::Unblock { cidr } => cidr.to_string(),
        }),
        outcome,
        detail,
        alert_id: cmd.and_then(|c| c.alert_id.clone()).unwrap_or_default(),
        command_id: cmd.map_or(String::new(), |c| c.id.clone()),
        playbook: String::new(),
    }
}

/// The record of a refused message: what it claimed to be (unverified), and why it was refused.
fn rejected_record(bytes: &[u8], r: &Rejection) -> ActionRecord {
    let claimed = pipeline_command::peek(bytes);
    let kind = match claimed.as_ref().map(|c| &c.action) {
        Some(Action::Block { .. }) => "block",
        Some(Action::Unblock { .. }) => "unblock",
        None => "command",
    };
    let text = r.to_string();
    let detail = if text.starts_with(r.cause()) {
        text
    } else {
        format!("{}: {text}", r.cause())
    };
    let outcome = if *r == Rejection::Expired {
        Outcome::Expired
    } else {
        Outcome::Rejected
    };
    let mut rec = record_of(claimed.as_ref(), kind, outcome, detail);
    rec.command_id = clean_id(&rec.command_id);
    rec.alert_id = clean_id(&rec.alert_id);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_record_names_the_cause_and_what_was_claimed() {
        let r = rejected_record(b"{", &Rejection::Malformed("envelope: eof".into()));
        assert_eq!(r.kind, "command");
        assert_eq!(r.outcome, Outcome::Rejected);
        assert!(r.detail.starts_with("malformed"), "{}", r.detail);
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let mut cmd = Command::new(
            "c/1 x",
            "s1",
            Action::Block {
                cidr: "192.0.2.0/24".parse().unwrap(),
                duration_secs: 5,
            },
            1_000,
            1_000,
        )
        .unwrap();
        cmd.alert_id = Some("a1".into());
        let bytes = pipeline_command::sign(&cmd, &key);
        let r = rejected_record(&bytes, &Rejection::Expired);
        assert_eq!(r.outcome, Outcome::Expired);
        assert_eq!(
            (r.kind.as_str(), r.target.as_str()),
            ("block", "192.0.2.0/24")
        );
        assert_eq!(
            (r.command_id.as_str(), r.alert_id.as_str()),
            ("c_1_x", "a1")
        );
        let r = rejected_record(&bytes, &Rejection::BadSignature);
        assert!(r.detail.starts_with("bad_signature: "), "{}", r.detail);
    }

    #[test]
    fn every_cause_is_counted_in_its_own_slot() {
        let c = CommandCounters::default();
        for cause in Rejection::CAUSES {
            c.reject(cause);
        }
        c.reject("replayed");
        let s = c.snapshot();
        assert_eq!(s.rejected.len(), Rejection::CAUSES.len());
        assert!(s
            .rejected
            .iter()
            .all(|(c, n)| *n == if *c == "replayed" { 2 } else { 1 }));
    }
}
