//! What every network sink shares: typed retry decisions, backoff, the spool, and the drain at
//! shutdown. A sink only says how to get ready (connect, create its schema or stream) and how to
//! send one batch; [`drive`] does the rest.
//!
//! Order is kept: while the spool holds anything, new batches go behind it on disk, and the
//! spool is replayed oldest first once the sink answers again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::spool::{Spool, SpoolStats};

/// How a failed request should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Will likely succeed later (network, timeout, server overloaded): retry, then spool.
    Transient(String),
    /// Will never succeed (bad data or schema): log, count, do not retry.
    Permanent(String),
    /// Configuration is wrong (credentials, permissions): stop the run with this line.
    Fatal(Fatal),
}

/// A configuration problem a server reported, with what it is about, so that start-up can name
/// the config key to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub cause: FatalCause,
    pub why: String,
}

/// What a [`Fatal`] error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalCause {
    /// The server refused the user, password or token.
    Credentials,
    /// The TLS handshake failed (a certificate our CA did not sign, no TLS on the server).
    Tls,
    /// Anything else (bad URL, permissions, a stream that cannot be updated).
    Other,
}

impl Fatal {
    pub fn credentials(why: impl std::fmt::Display) -> Fatal {
        Fatal {
            cause: FatalCause::Credentials,
            why: why.to_string(),
        }
    }

    pub fn tls(why: impl std::fmt::Display) -> Fatal {
        Fatal {
            cause: FatalCause::Tls,
            why: why.to_string(),
        }
    }

    pub fn other(why: impl std::fmt::Display) -> Fatal {
        Fatal {
            cause: FatalCause::Other,
            why: why.to_string(),
        }
    }
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cause {
            FatalCause::Credentials => write!(f, "server refused our credentials: {}", self.why),
            FatalCause::Tls => write!(f, "TLS: {}", self.why),
            FatalCause::Other => f.write_str(&self.why),
        }
    }
}

impl From<Fatal> for String {
    fn from(f: Fatal) -> String {
        f.to_string()
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of the current
/// step (`step/2 ..= step`), and the step doubles up to `max`. The jitter keeps sinks (and
/// several sensors) that failed together from retrying in lockstep against a server that is
/// coming back. Every retry in the export path waits through one of these.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            step: first,
            rng: fastrand::Rng::new(),
        }
    }

    /// The next delay to wait, and the step after it doubled.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.u64(0..=nanos))
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.first;
    }

    /// No failure since the last reset.
    pub fn is_reset(&self) -> bool {
        self.step == self.first
    }
}

/// A batch ready for a sink: its row (message) count and its encoded bytes, which are exactly
/// what goes to the spool.
#[derive(Debug)]
pub struct Batch {
    pub rows: u32,
    pub payload: Vec<u8>,
}

impl Batch {
    /// The batch of `rows` rows filled into `buf`, which is left empty with the same capacity
    /// (the next batch of a batcher is about as large).
    pub fn take_from(buf: &mut Vec<u8>, rows: u32) -> Batch {
        let cap = buf.capacity();
        let payload = std::mem::replace(buf, Vec::with_capacity(cap));
        Batch { rows, payload }
    }
}

/// A destination.
pub trait Sink: Send + 'static {
    fn name(&self) -> &'static str;
    /// Connects and creates what the sink needs (schema, stream). Called again after failures.
    fn prepare(&mut self) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Sends one batch; `Ok` means the destination acknowledged all of it.
    fn send(
        &mut self,
        rows: u32,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Live counters of a sink, readable while it runs (the `/metrics` endpoint). They add up:
/// `emitted + resumed = sent + failed + spool_rows + dropped + lost + corrupt`.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Rows the fan-out handed to this sink.
    pub emitted_rows: AtomicU64,
    /// Rows found in the spool at start (left by a previous run).
    pub resumed_rows: AtomicU64,
    /// Rows in the spool now, and its size in bytes.
    pub spool_rows: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Rows written to the spool, and read back and acknowledged.
    pub spooled_rows: AtomicU64,
    pub replayed_rows: AtomicU64,
    /// Rows deleted from a full spool (`drop_oldest`).
    pub dropped_rows: AtomicU64,
    /// Rows of spool records found damaged.
    pub corrupt_rows: AtomicU64,
    /// Rows (or messages) the destination acknowledged, directly or from the spool.
    pub sent_rows: AtomicU64,
    pub sent_batches: AtomicU64,
    /// Rows rejected for good (bad data): counted, not retried.
    pub failed_rows: AtomicU64,
    /// Requests that failed and were retried or spooled.
    pub transient_errors: AtomicU64,
    /// Rows that could not be kept at all (spool full with nowhere to go at shutdown).
    pub lost_rows: AtomicU64,
}

/// What a sink did over a run.
#[derive(Clone, Debug, Default)]
pub struct SinkReport {
    pub name: &'static str,
    /// Rows the fan-out handed to the sink in this run.
    pub emitted_rows: u64,
    pub sent_rows: u64,
    pub sent_batches: u64,
    pub failed_rows: u64,
    pub transient_errors: u64,
    pub lost_rows: u64,
    pub spool: SpoolStats,
    /// Bytes left in the spool at exit (to be replayed by the next run).
    pub spool_bytes_left: u64,
    /// Rows left in the spool at exit.
    pub spool_rows_left: u64,
    /// A configuration problem that stopped the sink.
    pub fatal: Option<String>,
    /// Longest catch-up after an outage: from the sink's first acknowledgement after failures
    /// to the spool being empty again (the replay time after recovery).
    pub catch_up: Duration,
}

impl SinkReport {
    /// Rows that came to the sink: handed over in this run, or found in its spool at start.
    pub fn rows_in(&self) -> u64 {
        self.emitted_rows + self.spool.resumed_rows
    }

    /// Rows with a known outcome: acknowledged, rejected, still in the spool, or dropped (by
    /// the drop-oldest policy, not spoolable, damaged on disk). Equals [`Self::rows_in`] when
    /// nothing went missing.
    pub fn rows_out(&self) -> u64 {
        self.sent_rows
            + self.failed_rows
            + self.spool_rows_left
            + self.spool.dropped_rows
            + self.lost_rows
            + self.spool.corrupt_rows
    }
}

/// Timing of retries.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts for a fresh batch before it is spooled.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long the drain at shutdown keeps trying.
    pub drain: Duration,
}

impl Retry {
    /// A fresh backoff with these steps.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.first_backoff, self.max_backoff)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            drain: Duration::from_secs(10),
        }
    }
}

struct Driver<S: Sink> {
    sink: S,
    spool: Spool,
    counters: Arc<SinkCounters>,
    retry: Retry,
    ready: bool,
    /// When the sink may be tried again after a failure.
    next_try: Instant,
    backoff: Backoff,
    fatal: Option<String>,
    /// A batch that found the spool full under the `Block` policy.
    held: Option<Batch>,
    /// When the sink answered again after failures while the spool held batches.
    recovered_at: Option<Instant>,
    catch_up: Duration,
}

/// Runs a sink until its input closes, then drains (bounded by `retry.drain`).
pub async fn drive<S: Sink>(
    sink: S,
    ready: bool,
    spool: Spool,
    mut rx: mpsc::Receiver<Batch>,
    counters: Arc<SinkCounters>,
    retry: Retry,
) -> SinkReport {
    let name = sink.name();
    let mut d = Driver {
        sink,
        spool,
        counters,
        retry,
        ready,
        next_try: Instant::now(),
        backoff: retry.backoff(),
        fatal: None,
        held: None,
        recovered_at: None,
        catch_up: Duration::ZERO,
    };
    if !d.spool.is_empty() {
        tracing::info!(
            "{name}: resuming a spool of {} bytes in {}",
            d.spool.bytes(),
            d.spool.dir().display()
        );
    }
    loop {
        if d.fatal.is_some() {
            // Keep taking input so the pipeline finishes; everything goes to the spool.
            match rx.recv().await {
                Some(b) => {
                    d.received(&b);
                    d.spool_batch(b);
                }
                None => break,
            }
            d.publish();
            continue;
        }
        let now = Instant::now();
        if let Some(b) = d.held.take() {
            if d.spool.has_room(b.payload.len()) {
                d.spool_batch(b);
            } else if d.spool.is_empty() && now >= d.next_try {
                // Larger than the whole spool: it can only go straight to the sink.
                d.send_held(b).await;
                continue;
            } else {
                d.held = Some(b);
            }
        }
        let can_take = d.held.is_none();
        if !d.spool.is_empty() && now >= d.next_try {
            // Whatever already arrived goes behind the spool, then one spooled batch is sent.
            d.spool_arrived(&mut rx);
            d.replay_one().await;
            d.publish();
            continue;
        }
        let wake = if d.spool.is_empty() && d.held.is_none() {
            None
        } else {
            Some(d.next_try.max(now + Duration::from_millis(20)))
        };
        tokio::select! {
            b = rx.recv(), if can_take => match b {
                Some(b) => {
                    d.received(&b);
                    d.take(b).await;
                }
                None => break,
            },
            _ = sleep_until_opt(wake) => {}
        }
        d.publish();
    }
    d.drain().await;
    d.publish();
    d.report(name)
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl<S: Sink> Driver<S> {
    /// Spools the batches that arrived already, while the spool takes them.
    fn spool_arrived(&mut self, rx: &mut mpsc::Receiver<Batch>) {
        while self.held.is_none() {
            match rx.try_recv() {
                Ok(b) => {
                    self.received(&b);
                    self.spool_batch(b);
                }
                Err(_) => break,
            }
        }
    }

    /// What the sink did over the run.
    fn report(self, name: &'static str) -> SinkReport {
        let c = &self.counters;
        SinkReport {
            name,
            emitted_rows: c.emitted_rows.load(Ordering::Relaxed),
            spool_rows_left: self.spool.rows(),
            sent_rows: c.sent_rows.load(Ordering::Relaxed),
            sent_batches: c.sent_batches.load(Ordering::Relaxed),
            failed_rows: c.failed_rows.load(Ordering::Relaxed),
            transient_errors: c.transient_errors.load(Ordering::Relaxed),
            lost_rows: c.lost_rows.load(Ordering::Relaxed),
            spool_bytes_left: self.spool.bytes(),
            spool: self.spool.stats.clone(),
            fatal: self.fatal,
            catch_up: self.catch_up,
        }
    }

    fn received(&self, b: &Batch) {
        self.counters
            .emitted_rows
            .fetch_add(u64::from(b.rows), Ordering::Relaxed);
    }

    /// Copies the spool's figures into the live counters.
    fn publish(&self) {
        let (c, s) = (&self.counters, &self.spool.stats);
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&c.resumed_rows, s.resumed_rows);
        set(&c.spool_rows, self.spool.rows());
        set(&c.spool_bytes, self.spool.bytes());
        set(&c.spooled_rows, s.spooled_rows);
        set(&c.replayed_rows, s.replayed_rows);
        set(&c.dropped_rows, s.dropped_rows);
        set(&c.corrupt_rows, s.corrupt_rows);
    }

    fn failed(&mut self, why: &str) {
        self.counters
            .transient_errors
            .fetch_add(1, Ordering::Relaxed);
        if self.backoff.is_reset() {
            tracing::warn!("{}: {why}; spooling and retrying", self.sink.name());
        }
        self.ready = false;
        self.next_try = Instant::now() + self.backoff.next_delay();
    }

    fn succeeded(&mut self, rows: u32) {
        if !self.backoff.is_reset() {
            tracing::info!("{}: sending again", self.sink.name());
            if !self.spool.is_empty() && self.recovered_at.is_none() {
                self.recovered_at = Some(Instant::now());
            }
        }
        self.backoff.reset();
        self.counters
            .sent_rows
            .fetch_add(u64::from(rows), Ordering::Relaxed);
        self.counters.sent_batches.fetch_add(1, Ordering::Relaxed);
    }

    fn permanent(&mut self, rows: u32, why: &str) {
        tracing::error!(
            "{}: batch of {rows} rows rejected, not retried: {why}",
            self.sink.name()
        );
        self.counters
            .failed_rows
            .fetch_add(u64::from(rows), Ordering::Relaxed);
    }

    fn fatal(&mut self, why: Fatal) {
        tracing::error!("{}: {why}", self.sink.name());
        self.fatal = Some(why.to_string());
    }

    async fn ensure_ready(&mut self) -> Result<(), SendError> {
        if !self.ready {
            self.sink.prepare().await?;
            self.ready = true;
        }
        Ok(())
    }

    async fn attempt(&mut self, rows: u32, payload: &[u8]) -> Result<(), SendError> {
        self.ensure_ready().await?;
        self.sink.send(rows, payload).await
    }

    /// A fresh batch: sent directly while the sink is healthy and the spool empty.
    async fn take(&mut self, b: Batch) {
        if !self.spool.is_empty() || Instant::now() < self.next_try {
            self.spool_batch(b);
            return;
        }
        let mut delay = self.retry.backoff();
        for attempt in 1..=self.retry.attempts {
            match self.attempt(b.rows, &b.payload).await {
                Ok(()) => {
                    self.succeeded(b.rows);
                    return;
                }
                Err(SendError::Permanent(why)) => {
                    self.permanent(b.rows, &why);
                    return;
                }
                Err(SendError::Fatal(why)) => {
                    self.fatal(why);
                    self.spool_batch(b);
                    return;
                }
                Err(SendError::Transient(why)) => {
                    if attempt == self.retry.attempts {
                        self.failed(&why);
                    } else {
                        self.counters
                            .transient_errors
                            .fetch_add(1, Ordering::Relaxed);
                        self.ready = false;
                        tokio::time::sleep(delay.next_delay()).await;
                    }
                }
            }
        }
        self.spool_batch(b);
    }

    fn spool_batch(&mut self, b: Batch) {
        if self.held.is_some() {
            // Only reached at shutdown with a full blocking spool: nowhere left to keep it.
            self.lost(b.rows, "spool full");
            return;
        }
        if !self.spool.has_room(b.payload.len()) {
            self.held = Some(b);
            return;
        }
        match self.spool.push(b.rows, &b.payload) {
            Ok(true) => {}
            Ok(false) => self.held = Some(b),
            Err(e) => self.lost(b.rows, &format!("cannot write the spool: {e}")),
        }
    }

    /// Sends a batch the spool has no room for; on a transient failure it stays held.
    async fn send_held(&mut self, b: Batch) {
        match self.attempt(b.rows, &b.payload).await {
            Ok(()) => self.succeeded(b.rows),
            Err(SendError::Permanent(why)) => self.permanent(b.rows, &why),
            Err(SendError::Fatal(why)) => {
                self.held = Some(b);
                self.fatal(why);
            }
            Err(SendError::Transient(why)) => {
                self.held = Some(b);
                self.failed(&why);
            }
        }
    }

    fn flush_held(&mut self) {
        if let Some(b) = self.held.take() {
            if self.spool.has_room(b.payload.len()) {
                self.spool_batch(b);
            } else {
                self.held = Some(b);
            }
        }
    }

    fn lost(&mut self, rows: u32, why: &str) {
        tracing::error!("{}: {rows} rows lost: {why}", self.sink.name());
        self.counters
            .lost_rows
            .fetch_add(u64::from(rows), Ordering::Relaxed);
    }

    /// Sends the oldest spooled batch. `false` when the sink failed (or nothing was there).
    async fn replay_one(&mut self) -> bool {
        let b = match self.spool.peek() {
            Ok(Some(b)) => b,
            Ok(None) => return false,
            Err(e) => {
                tracing::error!("{}: cannot read the spool: {e}", self.sink.name());
                self.next_try = Instant::now() + self.retry.max_backoff;
                return false;
            }
        };
        match self.attempt(b.rows, &b.payload).await {
            Ok(()) => {
                self.succeeded(b.rows);
                if let Err(e) = self.spool.ack(&b) {
                    tracing::error!("{}: cannot update the spool: {e}", self.sink.name());
                }
                if self.spool.is_empty() {
                    if let Some(t) = self.recovered_at.take() {
                        self.catch_up = self.catch_up.max(t.elapsed());
                    }
                }
                true
            }
            Err(SendError::Permanent(why)) => {
                self.permanent(b.rows, &why);
                let _ = self.spool.ack(&b);
                true
            }
            Err(SendError::Fatal(why)) => {
                self.fatal(why);
                false
            }
            Err(SendError::Transient(why)) => {
                self.failed(&why);
                false
            }
        }
    }

    /// Input closed: send what the spool holds until it is empty or the deadline passes; a
    /// batch still held (spool full) gets sent directly or is counted as lost.
    async fn drain(&mut self) {
        let deadline = Instant::now() + self.retry.drain;
        while self.fatal.is_none() && Instant::now() < deadline {
            if let Some(b) = self.held.take() {
                if self.spool.is_empty() {
                    if Instant::now() < self.next_try {
                        self.held = Some(b);
                        tokio::time::sleep_until(self.next_try.min(deadline)).await;
                        continue;
                    }
                    self.send_held(b).await;
                } else {
                    self.held = Some(b);
                    self.flush_held();
                }
            }
            if self.spool.is_empty() && self.held.is_none() {
                break;
            }
            if Instant::now() < self.next_try {
                tokio::time::sleep_until(self.next_try.min(deadline)).await;
                continue;
            }
            self.replay_one().await;
        }
        if let Some(b) = self.held.take() {
            self.lost(b.rows, "spool full at shutdown");
        }
        if !self.spool.is_empty() {
            tracing::warn!(
                "{}: {} bytes left in the spool {}; the next run sends them",
                self.sink.name(),
                self.spool.bytes(),
                self.spool.dir().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half_and_resets() {
        let (first, max) = (Duration::from_millis(200), Duration::from_secs(5));
        let mut b = Backoff::new(first, max);
        assert!(b.is_reset());
        let mut step = first;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside {step:?}/2..={step:?}"
            );
            step = (step * 2).min(max);
        }
        assert!(!b.is_reset());
        b.reset();
        assert!(b.is_reset());
        assert!(b.next_delay() <= first);
        // Two sinks that failed together do not retry in lockstep.
        let delays = |mut b: Backoff| -> Vec<Duration> { (0..8).map(|_| b.next_delay()).collect() };
        assert_ne!(
            delays(Backoff::new(first, max)),
            delays(Backoff::new(first, max))
        );
    }

    #[test]
    fn fatal_errors_say_what_they_are_about() {
        let f = Fatal::credentials("Code: 516");
        assert_eq!(f.cause, FatalCause::Credentials);
        assert_eq!(f.to_string(), "server refused our credentials: Code: 516");
        assert_eq!(
            Fatal::tls("unknown issuer").to_string(),
            "TLS: unknown issuer"
        );
        assert_eq!(String::from(Fatal::other("bad url")), "bad url");
    }
}
