//! One partition: the records of one sensor, read in stream order by a durable pull consumer
//! and given to one engine, with checkpoints.
//!
//! A checkpoint is, in this order: every alert raised so far is done in every sink
//! ([`AlertSinks::mark`]), the engine's state is saved with the stream sequence it covers (an
//! object in the state store, replicated as the streams are), then the last record is
//! acknowledged (ack policy `all`: everything before it too). A crash anywhere in between
//! leaves a checkpoint that is consistent on its own: state at sequence S, alerts up to S safe.
//!
//! Starting (or taking over) a partition loads its checkpoint and re-creates the durable
//! consumer to deliver from S + 1, so records after the checkpoint are processed again on the
//! restored state: the same records in the same order on the same state give the same alerts
//! with the same ids, which the sinks recognise. Records delivered twice (ack wait passed
//! during a long sink outage) carry a sequence already processed and are skipped. A gap in the
//! consumer's delivery sequence (a delivery lost on a reconnect) sends the partition back to
//! its checkpoint: processing on never skips a record.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use sensor_export::nats::PullBatch;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::sinks::AlertOut;
use super::{Command, Shared};

/// The engine as the consumer drives it; see `engine.rs` for the implementation over the
/// detection engine.
pub trait Detector: Send {
    /// Evaluates one record (its EVE JSON), appending the alerts it raises. (The record's
    /// message id is not passed: the engine makes the same reference from the record, and
    /// looking the header up was a few percent of the consumer's CPU.)
    fn process(&mut self, json: &[u8], out: &mut Vec<(String, AlertOut)>);
    /// Nothing came for a while: closes what event time `now` (microseconds) closes, as the end
    /// of the input does offline, appending the alerts.
    fn idle(&mut self, now: i64, out: &mut Vec<(String, AlertOut)>);
    /// The state to restart from, as bytes.
    fn snapshot(&self) -> Vec<u8>;
    /// Counters to publish: (keys in state, malformed records, evaluation errors).
    fn stats(&self) -> (u64, u64, u64);
}

/// Makes the detector of a sensor, from a snapshot when there is one.
pub type Factory = dyn Fn(&str, Option<&[u8]>) -> Result<Box<dyn Detector>> + Send + Sync;

/// Why a partition's task ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop: checkpointed, the lease may be released.
    Stopped,
    /// The lease went to someone else: stopped without a checkpoint.
    LeaseLost,
    /// Back to the last checkpoint (a gap in deliveries): run it again.
    Rewind,
}

/// Object name of a sensor's checkpoint in the state store.
fn object_name(sensor: &str) -> String {
    format!("partition-{sensor}")
}

/// The checkpoint of a sensor: `(sequence, engine snapshot)`, or none yet.
async fn load(sh: &Shared, sensor: &str) -> Result<(u64, Option<Vec<u8>>)> {
    let mut obj = match sh.states.get(object_name(sensor)).await {
        Ok(o) => o,
        Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => {
            return Ok((0, None))
        }
        Err(e) => return Err(e).context("reading a checkpoint"),
    };
    let mut bytes = Vec::new();
    obj.read_to_end(&mut bytes)
        .await
        .context("reading a checkpoint")?;
    let seq = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .context("a checkpoint shorter than its header")?;
    Ok((seq, Some(bytes[8..].to_vec())))
}

/// The sensor's durable consumer, made anew to deliver from `after + 1` in stream order.
async fn consumer(sh: &Shared, sensor: &str, after: u64) -> Result<PullConsumer> {
    let n = &sh.cfg.nats;
    let name = format!("{}-{sensor}", n.durable);
    // Whatever an earlier owner left (its ack floor, its pending deliveries) is replaced by
    // the checkpoint's position.
    let _ = sh.stream.delete_consumer(&name).await;
    let cfg = pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: format!("{}.{sensor}.>", n.subject),
        deliver_policy: if after == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        },
        ack_policy: AckPolicy::All,
        ack_wait: Duration::from_secs(n.ack_wait_secs),
        max_ack_pending: -1,
        num_replicas: n.replicas,
        ..Default::default()
    };
    sh.stream
        .create_consumer(cfg)
        .await
        .with_context(|| format!("creating consumer {name}"))
}

/// Runs a partition until told to stop, its lease is lost, or it must rewind.
pub async fn run(sh: Arc<Shared>, sensor: String, cmd: watch::Receiver<Command>) -> Result<Ended> {
    let m = sh.metrics.partition(&sensor);
    let (start, snap) = load(&sh, &sensor).await?;
    let mut det = (sh.factory)(&sensor, snap.as_deref())?;
    let consumer = consumer(&sh, &sensor, start).await?;
    tracing::info!("partition {sensor}: from sequence {}", start + 1);
    let mut p = Progress {
        last_seq: start,
        last_cseq: 0,
        since: 0,
        at: Instant::now(),
        last_msg: None,
        dirty: false,
        unflushed: false,
        idle_since: Instant::now(),
        idle_closed: false,
    };
    let mut alerts = Vec::new();
    let every = Duration::from_millis(sh.cfg.detect.checkpoint_ms);
    let idle = Duration::from_millis(sh.cfg.detect.idle_close_ms);
    loop {
        let now = *cmd.borrow();
        match now {
            Command::Run => {}
            Command::Stop => {
                checkpoint(&sh, &sensor, det.snapshot(), &mut p, &cmd).await?;
                return Ok(Ended::Stopped);
            }
            Command::Lost => return Ok(Ended::LeaseLost),
        }
        let expires = every.min(Duration::from_millis(500));
        let batch = consumer
            .batch()
            .max_messages(sh.cfg.nats.fetch_batch)
            .expires(expires)
            .messages()
            .await
            .context("pulling records")?;
        let mut batch = PullBatch::new(batch, expires);
        let mut got = 0;
        while let Some(msg) = next_flushing(&sh, &mut batch, &mut p.unflushed).await {
            let msg = msg.map_err(|e| anyhow::anyhow!("pulling records: {e}"))?;
            let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (seq, cseq) = (info.stream_sequence, info.consumer_sequence);
            if p.last_cseq != 0 && cseq != p.last_cseq + 1 {
                tracing::warn!(
                    "partition {sensor}: delivery {cseq} after {}: back to the checkpoint",
                    p.last_cseq
                );
                m.rewinds.fetch_add(1, Relaxed);
                return Ok(Ended::Rewind);
            }
            p.last_cseq = cseq;
            got += 1;
            if seq <= p.last_seq {
                m.redelivered.fetch_add(1, Relaxed);
            } else {
                det.process(&msg.payload, &mut alerts);
                m.records.fetch_add(1, Relaxed);
                p.last_seq = seq;
                p.since += 1;
                // Most records raise nothing: the sinks' lock only when there is something.
                // Alerts go to the sinks at once rather than at the next checkpoint: a
                // response waits for them (their ids make a resend after a crash harmless).
                if !alerts.is_empty() || p.unflushed {
                    p.unflushed = send_alerts(&sh, &mut alerts, true).await;
                }
            }
            p.last_msg = Some(msg);
        }
        if p.unflushed {
            p.unflushed = sh.sinks.lock().await.flush_idle().await;
        }
        if got > 0 {
            p.idle_since = Instant::now();
            p.idle_closed = false;
        } else if !p.idle_closed && p.idle_since.elapsed() >= idle {
            // Event time stands still while nothing comes: close the windows as the end of
            // the input does offline (see ARCHITECTURE.md on what that means for replays).
            p.idle_closed = true;
            det.idle(wall_clock_micros(), &mut alerts);
            if !alerts.is_empty() {
                p.dirty = true;
                send_alerts(&sh, &mut alerts, false).await;
            }
            m.idle_closes.fetch_add(1, Relaxed);
        }
        let (keys, malformed, errors) = det.stats();
        m.state_keys.store(keys, Relaxed);
        m.malformed.store(malformed, Relaxed);
        m.eval_errors.store(errors, Relaxed);
        let due = p.since >= sh.cfg.detect.checkpoint_records || p.at.elapsed() >= every;
        if (p.last_msg.is_some() || p.dirty) && (due || got == 0) {
            checkpoint(&sh, &sensor, det.snapshot(), &mut p, &cmd).await?;
            if let Ok(i) = consumer.get_info().await {
                m.lag.store(i.num_pending, Relaxed);
            }
        }
    }
}

/// While alerts wait for a busy sink, how often they are offered to it again when no record
/// comes.
const FLUSH_POLL: Duration = Duration::from_millis(5);

/// The batch's next message. Meanwhile, alerts waiting for a busy sink are offered to it every
/// [`FLUSH_POLL`]: the sensor sends records in batches, and the alerts must not wait for the
/// next one. (Dropping the `next` future loses nothing: messages wait in the subscription.)
async fn next_flushing<S: futures_util::Stream + Unpin>(
    sh: &Shared,
    batch: &mut PullBatch<S>,
    unflushed: &mut bool,
) -> Option<S::Item> {
    loop {
        if !*unflushed {
            return batch.next().await;
        }
        match tokio::time::timeout(FLUSH_POLL, batch.next()).await {
            Ok(item) => return item,
            Err(_) => *unflushed = sh.sinks.lock().await.flush_idle().await,
        }
    }
}

/// Hands alerts to the sinks (counted per rule); `flush`: sends them to each sink that has
/// nothing in flight. Returns whether some still wait for their sink.
async fn send_alerts(sh: &Shared, alerts: &mut Vec<(String, AlertOut)>, flush: bool) -> bool {
    let mut sinks = sh.sinks.lock().await;
    for (rule, a) in alerts.drain(..) {
        sh.metrics.alert(&rule);
        sinks.push(&a).await;
    }
    flush && sinks.flush_idle().await
}

/// Where a partition is since its last checkpoint.
struct Progress {
    last_seq: u64,
    last_cseq: u64,
    /// Records processed since the last checkpoint, and when it was.
    since: u64,
    at: Instant,
    /// The last message delivered (processed or skipped), acknowledged at the checkpoint.
    last_msg: Option<async_nats::jetstream::Message>,
    /// State changed without a record to acknowledge (an idle close).
    dirty: bool,
    /// Alerts wait in the sinks' batches for a busy sink (see `AlertSinks::flush_idle`).
    unflushed: bool,
    /// When the last record came, and whether the idle close was done since.
    idle_since: Instant,
    idle_closed: bool,
}

fn wall_clock_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Alerts safe, state saved (`snapshot`, taken at the last record processed), records
/// acknowledged; see the module's comment. Gives up (an
/// error, nothing saved) when the lease is lost while the sinks are still sending.
async fn checkpoint(
    sh: &Shared,
    sensor: &str,
    snapshot: Vec<u8>,
    p: &mut Progress,
    cmd: &watch::Receiver<Command>,
) -> Result<()> {
    if p.last_msg.is_none() && !p.dirty {
        return Ok(());
    }
    let mark = sh.sinks.lock().await.mark().await;
    if !mark.wait(&|| *cmd.borrow() == Command::Lost).await {
        anyhow::bail!("partition {sensor}: lease lost while alerts were being sent");
    }
    let mut bytes = p.last_seq.to_le_bytes().to_vec();
    bytes.extend_from_slice(&snapshot);
    let m = sh.metrics.partition(sensor);
    m.state_bytes.store(bytes.len() as u64, Relaxed);
    sh.states
        .put(object_name(sensor).as_str(), &mut bytes.as_slice())
        .await
        .map_err(|e| anyhow::anyhow!("saving the checkpoint of {sensor}: {e}"))?;
    if let Some(msg) = p.last_msg.take() {
        msg.ack()
            .await
            .map_err(|e| anyhow::anyhow!("acknowledging records of {sensor}: {e}"))?;
    }
    p.dirty = false;
    m.checkpoint_seq.store(p.last_seq, Relaxed);
    m.checkpoints.fetch_add(1, Relaxed);
    p.since = 0;
    p.at = Instant::now();
    Ok(())
}
