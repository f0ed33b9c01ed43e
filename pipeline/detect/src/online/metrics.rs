//! Live counters of the online consumer and their Prometheus text, served on `/metrics` by the
//! sensor's endpoint ([`sensor_export::prometheus::MetricsServer::serve`]); the alert sinks' counters are
//! rendered by the sensor's own function, as the sensor's sinks are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use sensor_export::sink::SinkCounters;

/// What one partition (one sensor's records) did, and where it is.
#[derive(Debug, Default)]
pub struct PartitionMetrics {
    /// Records given to the engine.
    pub records: AtomicU64,
    /// Records delivered again (sequence already processed) and skipped.
    pub redelivered: AtomicU64,
    /// Records the engine could not read (not JSON, no timestamp...): counted, skipped.
    pub malformed: AtomicU64,
    /// Rule evaluations that failed on a record (type mismatch, missing field).
    pub eval_errors: AtomicU64,
    /// Records of the partition not yet delivered to us (the consumer's `num_pending`).
    pub lag: AtomicU64,
    /// Stream sequence of the last checkpoint.
    pub checkpoint_seq: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Size of the engine's state: keys held across rules, and the checkpoint's bytes.
    pub state_keys: AtomicU64,
    pub state_bytes: AtomicU64,
    /// Times the partition went back to its checkpoint (a gap in deliveries, an error).
    pub rewinds: AtomicU64,
    /// Times event time was closed after nothing came for `detect.idle_close_ms`.
    pub idle_closes: AtomicU64,
}

/// Everything `/metrics` shows.
#[derive(Default)]
pub struct Metrics {
    pub partitions: Mutex<BTreeMap<String, Arc<PartitionMetrics>>>,
    /// Alerts raised, by rule name (re-raised ones after a rewind included; the sinks drop
    /// those as duplicates).
    pub alerts: Mutex<BTreeMap<String, u64>>,
    /// Partitions this instance holds now.
    pub owned: AtomicU64,
    pub sinks: Mutex<Vec<(&'static str, Arc<SinkCounters>)>>,
}

impl Metrics {
    /// The counters of a partition, created at first use (they survive its restarts).
    pub fn partition(&self, sensor: &str) -> Arc<PartitionMetrics> {
        let mut m = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(sensor.to_string()).or_default().clone()
    }

    pub fn alert(&self, rule: &str) {
        let mut m = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(rule.to_string()).or_default() += 1;
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let parts = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        let families = partition_families();
        for (name, kind, help, field) in families {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (sensor, p) in parts.iter() {
                let _ = writeln!(
                    o,
                    "{name}{{sensor=\"{sensor}\"}} {}",
                    field(p).load(Relaxed)
                );
            }
        }
        drop(parts);
        let _ = writeln!(
            o,
            "# HELP pipeline_detect_alerts_total Alerts raised, per rule.\n\
             # TYPE pipeline_detect_alerts_total counter"
        );
        for (rule, n) in self.alerts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(o, "pipeline_detect_alerts_total{{rule=\"{rule}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP pipeline_detect_partitions Partitions (sensors) this instance holds.\n\
             # TYPE pipeline_detect_partitions gauge\npipeline_detect_partitions {}",
            self.owned.load(Relaxed)
        );
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sensor_export::prometheus::render_sinks(&mut o, "pipeline_alerts", &sinks);
        o
    }
}

/// Reads one counter of a partition.
type Field = fn(&PartitionMetrics) -> &AtomicU64;

/// The per-sensor families: name, type, help, counter.
fn partition_families() -> [(&'static str, &'static str, &'static str, Field); 11] {
    [
        (
            "pipeline_detect_records_total",
            "counter",
            "Records evaluated, per sensor.",
            |p| &p.records,
        ),
        (
            "pipeline_detect_redelivered_total",
            "counter",
            "Records delivered again and skipped (already processed).",
            |p| &p.redelivered,
        ),
        (
            "pipeline_detect_malformed_total",
            "counter",
            "Records that could not be read, counted and skipped.",
            |p| &p.malformed,
        ),
        (
            "pipeline_detect_eval_errors_total",
            "counter",
            "Rule evaluations that failed on a record.",
            |p| &p.eval_errors,
        ),
        (
            "pipeline_detect_lag_records",
            "gauge",
            "Records of the sensor's partition not yet delivered.",
            |p| &p.lag,
        ),
        (
            "pipeline_detect_checkpoint_sequence",
            "gauge",
            "Stream sequence of the last checkpoint.",
            |p| &p.checkpoint_seq,
        ),
        (
            "pipeline_detect_checkpoints_total",
            "counter",
            "Checkpoints written.",
            |p| &p.checkpoints,
        ),
        (
            "pipeline_detect_state_keys",
            "gauge",
            "Keys held in rule state.",
            |p| &p.state_keys,
        ),
        (
            "pipeline_detect_state_bytes",
            "gauge",
            "Size of the last state snapshot.",
            |p| &p.state_bytes,
        ),
        (
            "pipeline_detect_rewinds_total",
            "counter",
            "Returns to the last checkpoint.",
            |p| &p.rewinds,
        ),
        (
            "pipeline_detect_idle_closes_total",
            "counter",
            "Windows closed after the partition was idle for detect.idle_close_ms.",
            |p| &p.idle_closes,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_per_sensor_and_per_rule() {
        let m = Metrics::default();
        m.partition("s1").records.fetch_add(5, Relaxed);
        m.partition("s1").lag.store(7, Relaxed);
        m.alert("ssh-brute");
        m.alert("ssh-brute");
        let text = m.render();
        assert!(
            text.contains("pipeline_detect_records_total{sensor=\"s1\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("pipeline_detect_lag_records{sensor=\"s1\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("pipeline_detect_alerts_total{rule=\"ssh-brute\"} 2"),
            "{text}"
        );
    }
}
