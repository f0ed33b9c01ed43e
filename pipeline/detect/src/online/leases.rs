//! Who runs which partition: leases in a JetStream key-value bucket.
//!
//! A partition is a sensor (the second token of its subjects). Its lease is the key
//! `sensor.<id>` holding the owner's instance name; the bucket's `max_age` is the lease time, so
//! a key its owner stops renewing disappears and another instance can create it. Instances
//! also keep a key `member.<instance>` alive; each aims at an equal share of the partitions
//! (ceil(partitions / members)), claims free ones up to it and hands back (after a checkpoint)
//! what it holds beyond it, so a joining instance gets work and a dead one's partitions are
//! taken over once its leases lapse.
//!
//! A renewal is a compare-and-set on the key's revision: if it fails, someone else holds the
//! partition now, and its task stops at once without a checkpoint. An owner that was paused
//! past its lease may still finish a checkpoint; every checkpoint is consistent on its own
//! (state and the sequence it covers), so the next owner restarts from a valid point and what
//! is processed twice raises the same alert ids, which the sinks drop.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::partition::{self, Ended};
use super::{Command, Shared};

struct Held {
    revision: u64,
    cmd: watch::Sender<Command>,
    task: JoinHandle<Result<Ended>>,
}

/// The lease loop of one instance; returns once `stop` turns true and every partition it held
/// has checkpointed and been handed back.
pub async fn run(sh: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let tick = Duration::from_millis((sh.cfg.nats.lease_secs * 1000 / 3).max(100));
    let mut held: HashMap<String, Held> = HashMap::new();
    let me = Bytes::from(sh.cfg.instance.clone());
    loop {
        let member = format!("member.{}", sh.cfg.instance);
        if let Err(e) = sh.leases.put(&member, me.clone()).await {
            tracing::warn!("leases: {e}");
        }
        renew(&sh, &mut held, &me).await;
        reap(&sh, &mut held).await;
        if let Ok(sensors) = sensors(&sh).await {
            let members = count_members(&sh.leases).await.max(1);
            let share = sensors.len().div_ceil(members);
            let free: Vec<&String> = sensors.iter().filter(|s| !held.contains_key(*s)).collect();
            for s in free {
                if held.len() >= share {
                    break;
                }
                if let Some(revision) = claim(&sh.leases, s, &me).await {
                    held.insert(s.clone(), start(&sh, s, revision));
                }
            }
            // Hand back what is beyond our share (a checkpoint first; `reap` releases it).
            let extra = held.len().saturating_sub(share);
            for h in held
                .values()
                .filter(|h| *h.cmd.borrow() == Command::Run)
                .take(extra)
            {
                let _ = h.cmd.send(Command::Stop);
            }
        }
        sh.metrics.owned.store(held.len() as u64, Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    for h in held.values() {
        let _ = h.cmd.send(Command::Stop);
    }
    for (s, h) in held.drain() {
        let _ = h.task.await;
        let _ = sh
            .leases
            .delete_expect_revision(format!("sensor.{s}"), Some(h.revision))
            .await;
    }
    let _ = sh
        .leases
        .delete(format!("member.{}", sh.cfg.instance))
        .await;
    Ok(())
}

fn start(sh: &Arc<Shared>, sensor: &str, revision: u64) -> Held {
    let (tx, rx) = watch::channel(Command::Run);
    let task = tokio::spawn(partition::run(sh.clone(), sensor.to_string(), rx));
    Held {
        revision,
        cmd: tx,
        task,
    }
}

/// Creates the lease of `sensor`, or takes back our own (left by our previous run).
async fn claim(leases: &kv::Store, sensor: &str, me: &Bytes) -> Option<u64> {
    let key = format!("sensor.{sensor}");
    if let Ok(rev) = leases.create(&key, me.clone()).await {
        tracing::info!("partition {sensor}: claimed");
        return Some(rev);
    }
    let entry = leases.entry(&key).await.ok()??;
    if entry.operation == kv::Operation::Put && entry.value == *me {
        return leases.update(&key, me.clone(), entry.revision).await.ok();
    }
    None
}

/// Renews every lease we hold; a failed compare-and-set means it is someone else's now.
async fn renew(sh: &Shared, held: &mut HashMap<String, Held>, me: &Bytes) {
    for (s, h) in held.iter_mut() {
        match sh
            .leases
            .update(format!("sensor.{s}"), me.clone(), h.revision)
            .await
        {
            Ok(rev) => h.revision = rev,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::warn!("partition {s}: lease taken by another instance; stopping");
                let _ = h.cmd.send(Command::Lost);
            }
            // Not reachable: keep running; the lease decides when it is back.
            Err(e) => tracing::warn!("partition {s}: cannot renew the lease: {e}"),
        }
    }
}

/// Restarts partitions that must rewind or failed, forgets lost ones, and releases the ones
/// that stopped on request.
async fn reap(sh: &Arc<Shared>, held: &mut HashMap<String, Held>) {
    let done: Vec<String> = held
        .iter()
        .filter(|(_, h)| h.task.is_finished())
        .map(|(s, _)| s.clone())
        .collect();
    for s in done {
        let Some(h) = held.remove(&s) else { continue };
        let asked = *h.cmd.borrow();
        let ended = match h.task.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        match ended {
            _ if asked == Command::Lost => {}
            Ok(Ended::Stopped) | Err(_) if asked == Command::Stop => {
                let _ = sh
                    .leases
                    .delete_expect_revision(format!("sensor.{s}"), Some(h.revision))
                    .await;
                tracing::info!("partition {s}: handed back");
            }
            Ok(Ended::LeaseLost | Ended::Stopped) => {}
            Ok(Ended::Rewind) => {
                held.insert(s.clone(), start(sh, &s, h.revision));
            }
            Err(e) => {
                tracing::warn!("partition {s}: {e:#}; restarting from its checkpoint");
                sh.metrics.partition(&s).rewinds.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                held.insert(s.clone(), start(sh, &s, h.revision));
            }
        }
    }
}

/// The sensors that have records in the stream.
async fn sensors(sh: &Shared) -> Result<BTreeSet<String>> {
    let filter = format!("{}.*.*", sh.cfg.nats.subject);
    let mut subjects = sh.stream.info_with_subjects(filter).await?;
    let mut out = BTreeSet::new();
    while let Some(s) = subjects.next().await {
        let (subject, _) = s?;
        if let Some(id) = subject.split('.').nth(1) {
            out.insert(id.to_string());
        }
    }
    Ok(out)
}

async fn count_members(leases: &kv::Store) -> usize {
    let Ok(mut keys) = leases.keys().await else {
        return 1;
    };
    let mut n = 0;
    while let Some(k) = keys.next().await {
        if k.is_ok_and(|k| k.starts_with("member.")) {
            n += 1;
        }
    }
    n
}
