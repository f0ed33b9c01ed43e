//! The command channel's sensor side: signed block/unblock commands from `pipeline respond`,
//! consumed from JetStream, verified, applied to the XDP blocklist through the control thread,
//! and answered with an audit record. Off the packet cores: one thread with its own small
//! tokio runtime.
//!
//! Messages are handled in groups: those that have arrived when the consumer is free (up to a
//! pull batch), so a lone command is handled at once and a burst shares the fixed costs. Per
//! group, in this order: each message is checked by [`Verifier::verify`] against the wall
//! clock, in stream order; the commands that pass go to the control thread together
//! ([`BlockOp::Apply`]), which writes the kernel map for each and then the state file once
//! (with the commands' nonces, so a replay after a restart is refused too) before it answers;
//! each message's outcome (applied, rejected with the cause, expired, failed) is published as
//! an [`ActionRecord`] on `actions.sensor`, all of them before waiting for JetStream's
//! acknowledgements; only when every record is stored are the commands acknowledged. A crash
//! in between redelivers the commands: their nonces are already kept, so they are refused as
//! replayed, and each record carries the same id (`<command>:<sensor>:<stream sequence>`),
//! which JetStream's duplicate window drops when the first one was stored.
//!
//! Handled one at a time, each command cost a state-file write (two fsyncs) and an audit
//! round trip, and a burst of blocks queued behind them (figures in `benches/README.md`).
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
use crate::capture::control::{BlockOp, Change};
use crate::config::{Config, ConfigError};
use crate::export::nats::{NatsOptions, PullBatch};

/// Subject of the sensor's audit records.
pub const ACTIONS_SUBJECT: &str = "actions.sensor";
/// How long the consumer waits for the control thread to apply a command.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Redelivery when a command was not acknowledged (the sensor died while applying it).
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages per pull batch, and so at most per group.
const MAX_GROUP: usize = 64;

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
                .max_messages(MAX_GROUP)
                .expires(expires)
                .messages()
                .await
                .context("pulling commands")?;
            let mut batch = PullBatch::new(batch, expires);
            while let Some((group, pulled)) = next_group(&mut batch).await {
                if !group.is_empty() {
                    self.handle(&js, &group).await?;
                }
                pulled?;
            }
            self.audit_ended(&js).await?;
        }
        Ok(())
    }

    /// Records the blocks whose time ran out since the last look (kind `unblock`).
    async fn audit_ended(&mut self, js: &jetstream::Context) -> Result<()> {
        let mut records = Vec::new();
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
            records.push(r);
        }
        self.publish_all(js, &records).await
    }

    /// A group of messages, in stream order: verify each, apply those that pass together,
    /// record every outcome, then acknowledge them all.
    async fn handle(
        &mut self,
        js: &jetstream::Context,
        group: &[jetstream::Message],
    ) -> Result<()> {
        let mut outcomes: Vec<Result<Command, ActionRecord>> = Vec::with_capacity(group.len());
        for msg in group {
            self.counters.received.fetch_add(1, Relaxed);
            outcomes.push(self.verifier.verify(&msg.payload, now_ms()).map_err(|r| {
                self.counters.reject(r.cause());
                tracing::warn!("commands: message {} rejected: {r}", sequence(msg));
                rejected_record(&msg.payload, &r)
            }));
        }
        let verified: Vec<&Command> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        let n_verified = verified.len();
        let mut applied = self.apply(&verified).into_iter();
        let mut records = Vec::with_capacity(group.len());
        for (msg, outcome) in group.iter().zip(outcomes) {
            let mut record = match outcome {
                Ok(_) => applied
                    .next()
                    .context("an applied command without its record")?,
                Err(rejected) => rejected,
            };
            let cmd_part = if record.command_id.is_empty() {
                "unparsed".to_string()
            } else {
                clean_id(&record.command_id)
            };
            record.id = format!("{cmd_part}:{}:{}", self.sensor_id, sequence(msg));
            record.sensor_id.clone_from(&self.sensor_id);
            records.push(record);
        }
        if group.len() > 1 {
            tracing::info!(
                "commands: a group of {} messages, {n_verified} verified",
                group.len()
            );
        }
        self.publish_all(js, &records).await?;
        for msg in group {
            msg.ack()
                .await
                .map_err(|e| anyhow::anyhow!("acknowledging command {}: {e}", sequence(msg)))?;
        }
        Ok(())
    }

    /// Applies verified commands through the control thread, in order; their audit records,
    /// in the same order, without ids (set by the caller).
    fn apply(&self, cmds: &[&Command]) -> Vec<ActionRecord> {
        if cmds.is_empty() {
            return Vec::new();
        }
        let changes = cmds.iter().map(|c| change_of(c)).collect();
        let (reply, answer) = crossbeam_channel::bounded(1);
        let answers = self
            .ops
            .send(BlockOp::Apply { changes, reply })
            .map_err(|_| "the control thread is gone".to_string())
            .and_then(|()| {
                answer
                    .recv_timeout(APPLY_TIMEOUT)
                    .map_err(|_| "the control thread did not answer".to_string())
            });
        cmds.iter()
            .enumerate()
            .map(|(i, cmd)| {
                let result = match &answers {
                    Ok(a) => a.get(i).cloned().unwrap_or_else(|| {
                        Err("the control thread did not answer for it".to_string())
                    }),
                    Err(e) => Err(e.clone()),
                };
                self.outcome(cmd, result)
            })
            .collect()
    }

    /// Counts and logs what became of an applied command; its audit record.
    fn outcome(&self, cmd: &Command, result: Result<String, String>) -> ActionRecord {
        let (kind, cidr) = match &cmd.action {
            Action::Block { cidr, .. } => ("block", cidr),
            Action::Unblock { cidr } => ("unblock", cidr),
        };
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

    /// Publishes audit records and waits until JetStream has stored them all: every record is
    /// sent before the first acknowledgement is awaited; one that is not stored is published
    /// again with [`Consumer::publish`] (same id: a copy the first attempt did store is
    /// dropped by the duplicate window).
    async fn publish_all(&self, js: &jetstream::Context, records: &[ActionRecord]) -> Result<()> {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let sent = js
                .publish_with_headers(ACTIONS_SUBJECT, audit_headers(r), audit_payload(r)?)
                .await;
            pending.push((r, sent));
        }
        for (r, sent) in pending {
            let stored = match sent {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = stored {
                tracing::warn!("commands: audit record {}: {e}; retrying", r.id);
                self.publish(js, r).await?;
            }
        }
        Ok(())
    }

    /// Publishes an audit record and waits for JetStream to store it, retrying until it does
    /// or the sensor stops (the command then stays unacknowledged and comes back).
    async fn publish(&self, js: &jetstream::Context, r: &ActionRecord) -> Result<()> {
        let payload = audit_payload(r)?;
        loop {
            let sent = match js
                .publish_with_headers(ACTIONS_SUBJECT, audit_headers(r), payload.clone())
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

/// The messages that have arrived, up to a batch's worth: waits for the first, then takes
/// those already there without waiting. With them, the pull's error when one ended the group
/// (the messages before it are still handled). None when the batch ended (or its deadline
/// passed).
async fn next_group<S, T, E>(batch: &mut PullBatch<S>) -> Option<(Vec<T>, Result<()>)>
where
    S: futures_util::Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::FutureExt as _;
    let mut group = Vec::new();
    let mut next = batch.next().await?;
    loop {
        match next {
            Ok(m) => group.push(m),
            Err(e) => return Some((group, Err(anyhow::anyhow!("pulling commands: {e}")))),
        }
        if group.len() >= MAX_GROUP {
            break;
        }
        match batch.next().now_or_never().flatten() {
            Some(m) => next = m,
            None => break,
        }
    }
    Some((group, Ok(())))
}

/// The stream sequence of a command message (0 when its reply subject does not say).
fn sequence(msg: &jetstream::Message) -> u64 {
    msg.info().map_or(0, |i| i.stream_sequence)
}

/// A verified command as a change to the blocklist.
fn change_of(cmd: &Command) -> Change {
    let nonce = Some((cmd.nonce.clone(), cmd.expires_at_ms));
    match &cmd.action {
        Action::Block {
            cidr,
            duration_secs,
        } => {
            let expires_at_ms = match duration_secs {
                0 => 0,
                s => now_ms().saturating_add(s.saturating_mul(1000)),
            };
            Change::Add {
                block: Block {
                    cidr: *cidr,
                    source: Source::Command,
                    expires_at_ms,
                    alert_id: cmd.alert_id.clone().unwrap_or_default(),
                    command_id: cmd.id.clone(),
                },
                nonce,
            }
        }
        Action::Unblock { cidr } => Change::Del { net: *cidr, nonce },
    }
}

/// An audit record's headers: its id as the message id, for JetStream's duplicate window.
fn audit_headers(r: &ActionRecord) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", r.id.as_str());
    headers
}

fn audit_payload(r: &ActionRecord) -> Result<bytes::Bytes> {
    Ok(bytes::Bytes::from(serde_json::to_vec(r)?))
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

    /// Messages come in groups of what has arrived, at most [`MAX_GROUP`]; an error ends it.
    #[test]
    fn a_group_is_what_has_arrived_up_to_a_batch() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use futures_util::stream::{iter, pending, StreamExt as _};
            // 70 messages there at once, then none for a while.
            let arrived = iter((0..70).map(Ok::<u32, String>)).chain(pending());
            let mut batch = PullBatch::new(arrived, Duration::ZERO);
            let (first, pulled) = next_group(&mut batch).await.unwrap();
            assert_eq!(first, (0..64).collect::<Vec<_>>());
            assert!(pulled.is_ok());
            let (rest, _) = next_group(&mut batch).await.unwrap();
            assert_eq!(rest, (64..70).collect::<Vec<_>>(), "then what is left");
            assert!(next_group(&mut batch).await.is_none(), "past the deadline");

            // An error ends the group; what came before it is still there.
            let failing = iter([Ok(70), Err("gone".to_string()), Ok(71)]);
            let mut batch = PullBatch::new(failing, Duration::from_secs(60));
            let (group, pulled) = next_group(&mut batch).await.unwrap();
            assert_eq!(group, vec![70]);
            let e = pulled.unwrap_err();
            assert!(e.to_string().contains("gone"), "{e}");

            let mut batch = PullBatch::new(iter([Ok::<u32, String>(72)]), Duration::ZERO);
            assert_eq!(next_group(&mut batch).await.unwrap().0, vec![72]);
            assert!(next_group(&mut batch).await.is_none(), "the batch ended");
        });
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
