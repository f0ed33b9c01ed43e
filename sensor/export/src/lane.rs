//! The fan-out's side of a network sink. An [`Encoder`] turns each record into the sink's own
//! rows or messages and cuts batches by size and age; a [`Lane`] hands the batches to the sink's
//! task ([`super::sink::drive`]) over a bounded channel. The fan-out drives a list of lanes and
//! names no sink, so a new sink is one module with a [`super::sink::Sink`] and an `Encoder`.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::clickhouse::rows::FlowSummary;
use super::sink::Batch;
use super::Record;

/// A record as the fan-out prepared it, once, for every sink.
pub struct Prepared<'a> {
    pub record: &'a Record,
    pub sensor_id: &'a str,
    /// The EVE line without its newline; empty unless an encoder wants JSON.
    pub json: &'a [u8],
    /// An event's index among its flow's events (all types together), unique with `flow_id`.
    pub index: Option<u32>,
    /// A flow record's summary of its events (the flow row's TLS columns), when rows are wanted.
    pub summary: Option<&'a FlowSummary>,
    /// The enrichment columns to append to a row; empty unless an encoder wants rows.
    pub enrich_row: &'a [u8],
}

/// Which pending batches [`Encoder::take`] hands over.
#[derive(Clone, Copy, Debug)]
pub enum Due {
    /// Those that reached their size.
    Full,
    /// Those that reached their size or their age at this instant.
    FullOrOld(Instant),
    /// Every non-empty one (end of run).
    All,
}

impl Due {
    /// Whether a batch of `rows` rows begun at `since` goes now.
    pub fn takes(
        self,
        rows: usize,
        max_rows: usize,
        since: Option<Instant>,
        age: Duration,
    ) -> bool {
        match self {
            Due::All => true,
            Due::Full => rows >= max_rows,
            Due::FullOrOld(now) => {
                rows >= max_rows || since.is_some_and(|s| now.duration_since(s) >= age)
            }
        }
    }
}

/// What a sink makes of records, on the fan-out thread.
pub trait Encoder: Send {
    /// The EVE line ([`Prepared::json`]).
    fn wants_json(&self) -> bool;
    /// Row enrichment and flow summaries ([`Prepared::enrich_row`], [`Prepared::summary`]).
    fn wants_rows(&self) -> bool;
    /// `flow_start` records (no other output gets them).
    fn wants_flow_starts(&self) -> bool;
    /// Adds a record to the pending batches.
    fn encode(&mut self, r: &Prepared<'_>);
    /// Moves the pending batches that `due` selects into `out`.
    fn take(&mut self, due: Due, out: &mut Vec<Batch>);
    /// When the oldest pending batch was begun; `None` when nothing is pending.
    fn oldest(&self) -> Option<Instant>;
    /// How old a pending batch may get.
    fn max_age(&self) -> Duration;
}

/// One sink as the fan-out drives it.
pub struct Lane {
    pub name: &'static str,
    tx: mpsc::Sender<Batch>,
    encoder: Box<dyn Encoder>,
    out: Vec<Batch>,
}

impl Lane {
    pub fn new(name: &'static str, tx: mpsc::Sender<Batch>, encoder: Box<dyn Encoder>) -> Lane {
        Lane {
            name,
            tx,
            encoder,
            out: Vec::new(),
        }
    }

    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    /// Encodes a record and sends the batches it filled.
    pub fn encode(&mut self, r: &Prepared<'_>) {
        self.encoder.encode(r);
        self.flush(Due::Full);
    }

    /// Sends the batches `due` selects, waiting while the sink's queue is full: a sink that
    /// falls behind and cannot spool stops the fan-out, which stops taking from the workers.
    pub fn flush(&mut self, due: Due) {
        self.encoder.take(due, &mut self.out);
        for b in self.out.drain(..) {
            // The sink task only ends after its input closes, so a send error cannot happen
            // while the fan-out runs; if it did, the batch is gone with the task that failed.
            let _ = self.tx.blocking_send(b);
        }
    }

    /// Time from `now` until the oldest pending batch is due.
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        let since = self.encoder.oldest()?;
        Some(
            self.encoder
                .max_age()
                .saturating_sub(now.duration_since(since)),
        )
    }
}

/// A batch being filled with length-prefixed messages (see the encoders).
#[derive(Default)]
pub struct Pending {
    pub rows: u32,
    buf: Vec<u8>,
    pub since: Option<Instant>,
}

impl Pending {
    /// The buffer to append one more row to.
    pub fn start_row(&mut self) -> &mut Vec<u8> {
        if self.rows == 0 {
            self.buf.clear();
            self.since = Some(Instant::now());
        }
        self.rows += 1;
        &mut self.buf
    }

    pub fn take(&mut self) -> Option<Batch> {
        if self.rows == 0 {
            return None;
        }
        self.since = None;
        Some(Batch::take_from(
            &mut self.buf,
            std::mem::take(&mut self.rows),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_selects_full_old_or_all() {
        let age = Duration::from_millis(100);
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(150);
        assert!(!Due::Full.takes(9, 10, Some(t0), age));
        assert!(Due::Full.takes(10, 10, Some(t0), age));
        assert!(!Due::FullOrOld(t0).takes(9, 10, Some(t0), age));
        assert!(Due::FullOrOld(later).takes(1, 10, Some(t0), age));
        assert!(!Due::FullOrOld(later).takes(0, 10, None, age));
        assert!(Due::All.takes(1, 10, Some(later), age));
    }

    #[test]
    fn a_pending_batch_counts_its_rows_and_starts_its_clock_once() {
        let mut p = Pending::default();
        assert!(p.take().is_none());
        p.start_row().extend_from_slice(b"a");
        let since = p.since;
        p.start_row().extend_from_slice(b"b");
        assert_eq!(p.since, since);
        let b = p.take().unwrap();
        assert_eq!((b.rows, b.payload.as_slice()), (2, &b"ab"[..]));
        assert_eq!((p.rows, p.since), (0, None));
    }
}
