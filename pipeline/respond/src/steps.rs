//! Running one alert through its playbooks, step by step, each step at most once.
//!
//! Exactly once per alert and playbook: before a step runs, its key `<alert id>.<playbook>.<step
//! index>` is looked up in the bucket `<durable>-done`; after the step's outcome is recorded
//! on `ACTIONS`, the key is written; the alert is acknowledged only after all its steps. A
//! crash in between runs the step again, and what it sends then is recognised: a command has
//! the same id (its `Nats-Msg-Id`, inside `COMMANDS`' duplicate window), an action record the
//! same id (inside `ACTIONS`' window, and in table `actions`), a tag the same host and label.
//! Only a notification can go out twice, when the crash falls between the POST and the mark.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv};
use ed25519_dalek::SigningKey;
use pipeline_command::audit::{ActionRecord, Outcome};
use pipeline_command::{command_subject, sign, Action, Command};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::alert::Alert;
use crate::config::RespondConfig;
use crate::guard::{cidr_around, Admitted, Guard, Refusal};
use crate::metrics::Metrics;
use crate::notify::{backoff, redact, Notifier};
use crate::playbook::{template, BlockStep, NotifyStep, Playbook, Scope, Step, TagStep};
use crate::tables::{HostTag, Tables};

/// Attempts at writing a host tag before the step fails.
const TAG_ATTEMPTS: u32 = 3;

/// What the alert tasks share.
pub struct Ctx {
    pub cfg: RespondConfig,
    pub playbooks: Vec<Playbook>,
    pub js: jetstream::Context,
    pub done: kv::Store,
    pub blocks: kv::Store,
    pub guard: Mutex<Guard>,
    pub key: Option<SigningKey>,
    pub notifier: Notifier,
    pub tables: Option<Arc<Tables>>,
    pub metrics: Arc<Metrics>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 32 hex digits of SHA-256 over the parts: stable ids for steps and commands.
pub fn hash_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0x1f]);
        }
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Where a step is: the alert, the playbook, the step's index and id.
struct At<'a> {
    alert: &'a Alert,
    pb: &'a Playbook,
    id: String,
    dry: bool,
}

impl At<'_> {
    fn record(
        &self,
        kind: &str,
        sensor: &str,
        target: String,
        outcome: Outcome,
        detail: String,
        command_id: &str,
    ) -> ActionRecord {
        // The same id when the step runs again: `<command id>:<outcome>`, or for steps
        // without a command `<step id>:<kind>:<outcome>`.
        let id = if command_id.is_empty() {
            format!("{}:{kind}:{}", self.id, outcome.as_str())
        } else {
            format!("{command_id}:{}", outcome.as_str())
        };
        ActionRecord {
            id,
            time_ms: now_ms(),
            source: "respond".into(),
            sensor_id: sensor.to_string(),
            kind: kind.to_string(),
            target,
            outcome,
            detail,
            alert_id: self.alert.id.clone(),
            command_id: command_id.to_string(),
            playbook: self.pb.name.clone(),
        }
    }
}

impl Ctx {
    /// Publishes an action record on `actions.respond` (its id is the message id) and counts it.
    pub(crate) async fn record(&self, r: &ActionRecord) -> Result<()> {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", r.id.as_str());
        let payload = serde_json::to_vec(r)?;
        self.js
            .publish_with_headers("actions.respond", h, payload.into())
            .await?
            .await
            .context("publishing an action record")?;
        self.metrics.step(&r.kind, r.outcome.as_str());
        Ok(())
    }

    /// Runs the playbooks `alert` matches; an error leaves the alert to be delivered again.
    pub async fn handle(&self, alert: &Alert) -> Result<()> {
        for pb in self.playbooks.iter().filter(|p| p.matches(alert)) {
            let mut ran = false;
            for (i, step) in pb.steps.iter().enumerate() {
                let key = format!("{}.{}.{i}", alert.id, pb.name);
                if self
                    .done
                    .get(&key)
                    .await
                    .context("reading the done bucket")?
                    .is_some()
                {
                    self.metrics.steps_done_before.fetch_add(1, Relaxed);
                    continue;
                }
                ran = true;
                let at = At {
                    alert,
                    pb,
                    id: hash_id(&[&alert.id, &pb.name, &i.to_string()]),
                    dry: self.cfg.dry_run || pb.dry_run,
                };
                let outcome = match step {
                    Step::Block(b) => self.block(&at, b).await?,
                    Step::Notify(n) => self.notify(&at, n).await?,
                    Step::Tag(t) => self.tag(&at, t).await?,
                };
                self.done
                    .put(&key, outcome.as_str().into())
                    .await
                    .context("writing the done bucket")?;
            }
            if ran {
                self.metrics.playbook(&pb.name);
            }
        }
        Ok(())
    }

    /// Counts a refusal for `reason` and records it: `record_for` makes the record of each
    /// sensor concerned (of one with no sensor when none is). Playbook steps and operator
    /// requests are refused alike.
    pub(crate) async fn refuse_for(
        &self,
        sensors: &[String],
        reason: &str,
        record_for: impl Fn(&str) -> ActionRecord,
    ) -> Result<Outcome> {
        self.metrics.refusal(reason);
        let none = [String::new()];
        let sensors = if sensors.is_empty() {
            &none[..]
        } else {
            sensors
        };
        for s in sensors {
            self.record(&record_for(s)).await?;
        }
        Ok(Outcome::Rejected)
    }

    /// Records a refusal of step `kind` (one record per sensor concerned, or one).
    async fn refuse(
        &self,
        at: &At<'_>,
        kind: &str,
        sensors: &[String],
        target: String,
        reason: &str,
        detail: String,
    ) -> Result<Outcome> {
        self.refuse_for(sensors, reason, |s| {
            let cmd = hash_id(&[&at.id, s]);
            at.record(
                kind,
                s,
                target.clone(),
                Outcome::Rejected,
                detail.clone(),
                &cmd,
            )
        })
        .await
    }

    async fn block(&self, at: &At<'_>, b: &BlockStep) -> Result<Outcome> {
        let (sensors, cidr) = match self.block_target(at, b) {
            Ok(t) => t,
            Err((sensors, reason, detail)) => {
                return self
                    .refuse(at, "block", &sensors, String::new(), reason, detail)
                    .await
            }
        };
        let now = now_ms();
        let admitted = match self.admit_block(at, cidr, now, now + b.duration.as_millis() as u64) {
            Ok(a) => a,
            Err(r) => {
                let (reason, detail) = (r.reason(), r.to_string());
                return self
                    .refuse(at, "block", &sensors, cidr.to_string(), reason, detail)
                    .await;
            }
        };
        if at.dry {
            for s in &sensors {
                let cmd = hash_id(&[&at.id, s]);
                let detail = format!("dry run: would block for {}s", b.duration.as_secs());
                let r = at.record("block", s, cidr.to_string(), Outcome::DryRun, detail, &cmd);
                self.record(&r).await?;
            }
            return Ok(Outcome::DryRun);
        }
        if admitted == Admitted::New {
            self.save_ledger_entry(&at.id).await?;
        }
        for s in &sensors {
            self.send_block(at, b, s, cidr, now).await?;
        }
        Ok(Outcome::Requested)
    }

    /// The sensors a block goes to and the CIDR it covers, or why there is none (the sensors
    /// known so far, the refusal reason and its text).
    #[allow(clippy::type_complexity)]
    fn block_target(
        &self,
        at: &At<'_>,
        b: &BlockStep,
    ) -> std::result::Result<(Vec<String>, ipnet::IpNet), (Vec<String>, &'static str, String)> {
        let sensors: Vec<String> = match b.scope {
            Scope::All => self.cfg.sensors.clone(),
            Scope::Origin if at.alert.sensor.is_empty() => {
                let detail = "the alert names no sensor (host)".to_string();
                return Err((Vec::new(), "no_sensor", detail));
            }
            Scope::Origin => vec![at.alert.sensor.clone()],
        };
        match b.target.of(at.alert) {
            Some(ip) => Ok((sensors, cidr_around(ip, b.prefix_v4, b.prefix_v6))),
            None => {
                let detail = format!("the alert has no {}_ip", b.target.name());
                Err((sensors, "no_address", detail))
            }
        }
    }

    /// The guard rails' verdict. A dry run only checks the protected networks: it takes no
    /// place in the rate and concurrency limits.
    fn admit_block(
        &self,
        at: &At<'_>,
        cidr: ipnet::IpNet,
        now: u64,
        expires: u64,
    ) -> std::result::Result<Admitted, Refusal> {
        let mut g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        if at.dry {
            g.protected(&cidr)
                .map_or(Ok(Admitted::Again), |p| Err(Refusal::Protected(p)))
        } else {
            g.admit(&at.id, cidr, now, expires)
        }
    }

    /// Writes a newly admitted block to the ledger, so the limits hold across restarts.
    pub(crate) async fn save_ledger_entry(&self, id: &str) -> Result<()> {
        let entry = self
            .guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(l) = entry {
            self.blocks
                .put(id, serde_json::to_vec(&l)?.into())
                .await
                .context("writing the block ledger")?;
        }
        Ok(())
    }

    /// Signs and publishes one sensor's block command (its id fixed by alert and sensor, so a
    /// re-send after a crash is stored once) and records it as requested.
    async fn send_block(
        &self,
        at: &At<'_>,
        b: &BlockStep,
        sensor: &str,
        cidr: ipnet::IpNet,
        now: u64,
    ) -> Result<()> {
        let cmd_id = hash_id(&[&at.id, sensor]);
        let alert = Some(at.alert.id.clone());
        let detail = self
            .publish_block(&cmd_id, sensor, cidr, b.duration.as_secs(), alert, now)
            .await?;
        let r = at.record(
            "block",
            sensor,
            cidr.to_string(),
            Outcome::Requested,
            detail,
            &cmd_id,
        );
        self.record(&r).await
    }

    /// Signs and publishes block command `cmd_id` for `sensor` (`cmd_id` is its `Nats-Msg-Id`:
    /// a re-send is stored once); the detail of its audit record.
    pub(crate) async fn publish_block(
        &self,
        cmd_id: &str,
        sensor: &str,
        cidr: ipnet::IpNet,
        duration_secs: u64,
        alert_id: Option<String>,
        now: u64,
    ) -> Result<String> {
        let key = self.key.as_ref().context("no signing key")?;
        let action = Action::Block {
            cidr,
            duration_secs,
        };
        let validity = self.cfg.command_validity_secs * 1000;
        let mut cmd = Command::new(cmd_id.to_string(), sensor, action, now, validity)
            .map_err(|e| anyhow::anyhow!("no randomness for a nonce: {e}"))?;
        cmd.alert_id = alert_id;
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", cmd_id);
        let ack = self
            .js
            .publish_with_headers(command_subject(sensor), h, sign(&cmd, key).into())
            .await?
            .await
            .context("publishing a command")?;
        let mut detail = format!(
            "for {duration_secs}s; command valid {}s",
            self.cfg.command_validity_secs
        );
        if ack.duplicate {
            self.metrics.commands_duplicate.fetch_add(1, Relaxed);
            detail.push_str("; sent before (same id), stored once");
        } else {
            self.metrics.commands_published.fetch_add(1, Relaxed);
        }
        Ok(detail)
    }

    /// A placeholder's value: names of the run, else the alert's field.
    fn lookup(at: &At<'_>, path: &str) -> Option<Value> {
        Some(match path {
            "playbook" => Value::from(at.pb.name.as_str()),
            "sensor" => Value::from(at.alert.sensor.as_str()),
            "alert_id" => Value::from(at.alert.id.as_str()),
            _ => return at.alert.field(path).cloned(),
        })
    }

    async fn notify(&self, at: &At<'_>, n: &NotifyStep) -> Result<Outcome> {
        let target = redact(&n.url);
        let (outcome, detail) = if at.dry {
            (Outcome::DryRun, "dry run: would POST".to_string())
        } else {
            let body = template::render(&n.body, &|p: &str| Self::lookup(at, p));
            let attempts = &self.metrics.notify_attempts;
            let d = self
                .notifier
                .send(n, serde_json::to_vec(&body)?, attempts)
                .await;
            (
                if d.ok {
                    Outcome::Applied
                } else {
                    Outcome::Failed
                },
                d.detail,
            )
        };
        let r = at.record("notify", &at.alert.sensor, target, outcome, detail, "");
        self.record(&r).await?;
        Ok(outcome)
    }

    async fn tag(&self, at: &At<'_>, t: &TagStep) -> Result<Outcome> {
        let Some(host) = t.host.of(at.alert) else {
            let why = format!("the alert has no {}_ip", t.host.name());
            return self
                .refuse(at, "tag", &[], String::new(), "no_address", why)
                .await;
        };
        let now = now_ms();
        let tag = HostTag {
            time_ms: now,
            expires_ms: now + t.expire.as_millis() as u64,
            host,
            label: t.label.clone(),
            id: at.id.clone(),
            sensor_id: at.alert.sensor.clone(),
            alert_id: at.alert.id.clone(),
            playbook: at.pb.name.clone(),
        };
        let detail = format!("label {} for {}s", t.label, t.expire.as_secs());
        let (outcome, detail) = match (&self.tables, at.dry) {
            (_, true) => (Outcome::DryRun, format!("dry run: would tag, {detail}")),
            (None, false) => (Outcome::Failed, "no clickhouse.url".to_string()),
            (Some(tables), false) => {
                let mut last = String::new();
                let mut ok = false;
                for n in 0..TAG_ATTEMPTS {
                    match tables.insert_tag(&tag).await {
                        Ok(()) => {
                            ok = true;
                            break;
                        }
                        Err(e) => last = format!("{e:?}"),
                    }
                    tokio::time::sleep(backoff(
                        Duration::from_millis(500),
                        Duration::from_secs(5),
                        n,
                    ))
                    .await;
                }
                if ok {
                    (Outcome::Applied, detail)
                } else {
                    (Outcome::Failed, format!("{detail}: {last}"))
                }
            }
        };
        let r = at.record(
            "tag",
            &at.alert.sensor,
            host.to_string(),
            outcome,
            detail,
            "",
        );
        self.record(&r).await?;
        Ok(outcome)
    }
}
