//! Counters of `pipeline respond` and their Prometheus text, served on `/metrics` by the
//! sensor's endpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    /// Alert records read from the stream (re-deliveries included).
    pub alerts: AtomicU64,
    /// Records that are not alerts respond can act on: counted, acknowledged, skipped.
    pub malformed: AtomicU64,
    /// Operator block requests read from `REQUESTS` (re-deliveries included), and those
    /// unreadable (not JSON, too big, no usable id): counted, acknowledged, skipped.
    pub requests: AtomicU64,
    pub requests_malformed: AtomicU64,
    /// Steps skipped because a previous run had done them (re-delivery, restart).
    pub steps_done_before: AtomicU64,
    /// Notification attempts (first tries and retries).
    pub notify_attempts: AtomicU64,
    /// Commands JetStream took, and those it recognised as re-sent (same id).
    pub commands_published: AtomicU64,
    pub commands_duplicate: AtomicU64,
    /// Blocks active now (distinct CIDRs).
    pub active_blocks: AtomicU64,
    /// Audit writer: records inserted, found stored already, unreadable, failed inserts.
    pub audit_inserted: AtomicU64,
    pub audit_duplicate: AtomicU64,
    pub audit_malformed: AtomicU64,
    pub audit_insert_errors: AtomicU64,
    /// Playbooks run, per playbook.
    pub playbooks: Mutex<BTreeMap<String, u64>>,
    /// Steps by (kind, outcome).
    pub steps: Mutex<BTreeMap<(String, String), u64>>,
    /// Guard-rail refusals by reason (protected, rate, active) and other refusals
    /// (no_address, no_sensor).
    pub refusals: Mutex<BTreeMap<String, u64>>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    *m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(k)
        .or_default() += 1;
}

impl Metrics {
    pub fn playbook(&self, name: &str) {
        bump(&self.playbooks, name.to_string());
    }

    pub fn step(&self, kind: &str, outcome: &str) {
        bump(&self.steps, (kind.to_string(), outcome.to_string()));
    }

    pub fn refusal(&self, reason: &str) {
        bump(&self.refusals, reason.to_string());
    }

    pub fn render(&self) -> String {
        let mut o = String::with_capacity(2048);
        self.render_scalars(&mut o);
        self.render_labelled(&mut o);
        o
    }

    fn render_scalars(&self, o: &mut String) {
        let up = AtomicU64::new(1);
        let scalars: [(&str, &str, &str, &AtomicU64); 14] = [
            (
                "pipeline_respond_alerts_total",
                "counter",
                "Alert records read (re-deliveries included).",
                &self.alerts,
            ),
            (
                "pipeline_respond_malformed_total",
                "counter",
                "Records that are not usable alerts, counted and skipped.",
                &self.malformed,
            ),
            (
                "pipeline_respond_requests_total",
                "counter",
                "Operator block requests read (re-deliveries included).",
                &self.requests,
            ),
            (
                "pipeline_respond_requests_malformed_total",
                "counter",
                "Operator requests that are unreadable, counted and skipped.",
                &self.requests_malformed,
            ),
            (
                "pipeline_respond_steps_done_before_total",
                "counter",
                "Steps skipped because an earlier run did them.",
                &self.steps_done_before,
            ),
            (
                "pipeline_respond_notify_attempts_total",
                "counter",
                "HTTP attempts of notify steps.",
                &self.notify_attempts,
            ),
            (
                "pipeline_respond_commands_published_total",
                "counter",
                "Signed commands JetStream stored.",
                &self.commands_published,
            ),
            (
                "pipeline_respond_commands_duplicate_total",
                "counter",
                "Commands JetStream recognised as re-sent.",
                &self.commands_duplicate,
            ),
            (
                "pipeline_respond_active_blocks",
                "gauge",
                "Distinct CIDRs blocked now.",
                &self.active_blocks,
            ),
            (
                "pipeline_respond_audit_inserted_total",
                "counter",
                "Action records inserted into table actions.",
                &self.audit_inserted,
            ),
            (
                "pipeline_respond_audit_duplicate_total",
                "counter",
                "Action records the table held already.",
                &self.audit_duplicate,
            ),
            (
                "pipeline_respond_audit_malformed_total",
                "counter",
                "Unreadable action records, skipped.",
                &self.audit_malformed,
            ),
            (
                "pipeline_respond_audit_insert_errors_total",
                "counter",
                "Failed inserts into table actions (retried).",
                &self.audit_insert_errors,
            ),
            ("pipeline_respond_up", "gauge", "1 while running.", &up),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
    }

    fn render_labelled(&self, o: &mut String) {
        let _ = writeln!(o, "# HELP pipeline_respond_playbooks_total Playbooks run, per playbook.\n# TYPE pipeline_respond_playbooks_total counter");
        for (p, n) in self
            .playbooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "pipeline_respond_playbooks_total{{playbook=\"{p}\"}} {n}"
            );
        }
        let _ = writeln!(o, "# HELP pipeline_respond_steps_total Steps by kind and outcome.\n# TYPE pipeline_respond_steps_total counter");
        for ((k, out), n) in self.steps.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                o,
                "pipeline_respond_steps_total{{kind=\"{k}\",outcome=\"{out}\"}} {n}"
            );
        }
        let _ = writeln!(o, "# HELP pipeline_respond_refusals_total Blocks refused, by reason.\n# TYPE pipeline_respond_refusals_total counter");
        for (r, n) in self
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(o, "pipeline_respond_refusals_total{{reason=\"{r}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_are_rendered() {
        let m = Metrics::default();
        m.step("block", "requested");
        m.step("block", "requested");
        m.refusal("rate");
        m.playbook("scan");
        m.alerts.fetch_add(3, Relaxed);
        let t = m.render();
        for line in [
            "pipeline_respond_steps_total{kind=\"block\",outcome=\"requested\"} 2",
            "pipeline_respond_refusals_total{reason=\"rate\"} 1",
            "pipeline_respond_playbooks_total{playbook=\"scan\"} 1",
            "pipeline_respond_alerts_total 3",
        ] {
            assert!(t.contains(line), "{line} in {t}");
        }
    }
}
