//! The engine: every rule over every record, event time, watermark, bounded state, snapshots.
//!
//! Time is event time. The watermark is the latest event time seen minus the configured
//! lateness; windows, buckets and pending sequences close when the watermark passes them, and
//! a record older than an already-closed window is late (counted, not applied). So a replay
//! gives the same alerts every run and in any record order within the lateness, online or
//! offline. Nothing reads the wall clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::expr::EvalError;
use crate::intel::IntelSet;
use crate::record::Record;
use crate::rules::baseline::BaselineState;
use crate::rules::sequence::SequenceState;
use crate::rules::threshold::ThresholdState;
use crate::rules::{Rule, RuleKind, RuleMeta, RuleSet};
use crate::time::{Micros, MICROS_PER_SEC};

/// Engine settings (the online consumer reads them from its `[detect]` config section).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How far behind the latest event time a record may arrive and still count (seconds).
    pub lateness_secs: u64,
    /// Keys (groups) per stateful rule; past it the oldest window's groups are evicted, counted.
    pub max_keys_per_rule: usize,
    /// Distinct values kept per group (past it the distinct count is a lower bound, counted).
    pub max_distinct: usize,
    /// `sensor_id` for records that carry none.
    pub sensor_id: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lateness_secs: 60,
            max_keys_per_rule: 100_000,
            max_distinct: 10_000,
            sensor_id: "-".into(),
        }
    }
}

/// Per-rule counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleStats {
    /// Records that passed the rule's filter and were applied.
    pub matched: u64,
    pub alerts: u64,
    pub eval_errors: u64,
    /// Records older than a window already closed.
    pub late: u64,
    /// Keys dropped because the rule's state was full.
    pub evicted: u64,
}

impl RuleStats {
    pub fn eval_error(&mut self, rule: &str, e: EvalError) {
        self.eval_errors += 1;
        if self.eval_errors.is_power_of_two() {
            tracing::warn!(rule, error = %e, count = self.eval_errors, "rule evaluation error");
        }
    }
}

/// Engine-wide counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineStats {
    pub records: u64,
    pub alerts: u64,
}

/// A stateful rule's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RuleState {
    None,
    Threshold(ThresholdState),
    Sequence(SequenceState),
    Baseline(BaselineState),
}

impl RuleState {
    fn for_rule(r: &Rule) -> RuleState {
        match r.kind {
            RuleKind::Match(_) => RuleState::None,
            RuleKind::Threshold(_) => RuleState::Threshold(Default::default()),
            RuleKind::Sequence(_) => RuleState::Sequence(Default::default()),
            RuleKind::Baseline(_) => RuleState::Baseline(Default::default()),
        }
    }

    /// Keys held (groups, models, pending records).
    pub fn keys(&self) -> usize {
        match self {
            RuleState::None => 0,
            RuleState::Threshold(s) => s.keys,
            RuleState::Sequence(s) => s.firsts.len() + s.pending.len(),
            RuleState::Baseline(s) => s.models.len(),
        }
    }
}

/// What [`Engine::snapshot`] writes.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    max_ts: Option<Micros>,
    watermark: Micros,
    stats: EngineStats,
    rules: BTreeMap<String, (RuleState, RuleStats)>,
}

const SNAPSHOT_VERSION: u32 = 1;

/// The detection engine.
pub struct Engine {
    rules: Vec<Rule>,
    /// The rules a record of each event type named by some rule can match, in rule order
    /// (alerts of one record come out in that order); `other_types` for the rest.
    by_type: FxHashMap<String, Vec<usize>>,
    other_types: Vec<usize>,
    states: Vec<RuleState>,
    /// Per rule, a watermark before which closing it changes nothing (a lower bound: the
    /// oldest window end, pending record or pruning it holds), so that a watermark step asks
    /// only the rules with something to close.
    due: Vec<Micros>,
    rule_stats: Vec<RuleStats>,
    intel: IntelSet,
    cfg: EngineConfig,
    lateness: Micros,
    max_ts: Option<Micros>,
    watermark: Micros,
    stats: EngineStats,
}

impl Engine {
    pub fn new(rules: RuleSet, intel: IntelSet, cfg: EngineConfig) -> Engine {
        let states = rules.rules.iter().map(RuleState::for_rule).collect();
        let rule_stats = vec![RuleStats::default(); rules.rules.len()];
        let wanting = |t: &str| -> Vec<usize> {
            let rs = rules.rules.iter().enumerate();
            rs.filter(|(_, r)| r.wants(t)).map(|(i, _)| i).collect()
        };
        let mut by_type = FxHashMap::default();
        for t in rules
            .rules
            .iter()
            .flat_map(|r| r.event_types.iter().flatten())
        {
            by_type.insert(t.clone(), wanting(t));
        }
        let other_types = (0..rules.rules.len())
            .filter(|i| rules.rules[*i].event_types.is_none())
            .collect();
        Engine {
            by_type,
            other_types,
            lateness: cfg.lateness_secs as i64 * MICROS_PER_SEC,
            due: vec![Micros::MIN; rules.rules.len()],
            rules: rules.rules,
            states,
            rule_stats,
            intel,
            cfg,
            max_ts: None,
            watermark: Micros::MIN,
            stats: EngineStats::default(),
        }
    }

    /// Applies one record: match rules' alerts are pushed at once; windows the record's time
    /// closes push theirs.
    pub fn process(&mut self, rec: &Record, out: &mut Vec<Alert>) {
        self.stats.records += 1;
        let before = out.len();
        let wanting = self.by_type.get(rec.event_type.as_ref());
        for &i in wanting.unwrap_or(&self.other_types) {
            let rule = &self.rules[i];
            let stats = &mut self.rule_stats[i];
            let (meta, wm, cfg, intel) = (&rule.meta, self.watermark, &self.cfg, &self.intel);
            let due = &mut self.due[i];
            match (&rule.kind, &mut self.states[i]) {
                (RuleKind::Match(m), _) => {
                    let n = out.len();
                    m.process(meta, rec, intel, &cfg.sensor_id, stats, out);
                    stats.alerts += (out.len() - n) as u64;
                }
                (RuleKind::Threshold(t), RuleState::Threshold(s)) => {
                    t.process(meta, s, rec, intel, cfg, wm, stats, out);
                    *due = (*due).min(t.due_after(rec.ts));
                }
                (RuleKind::Sequence(q), RuleState::Sequence(s)) => {
                    q.process(meta, s, rec, intel, cfg, wm, stats);
                    *due = (*due).min(rec.ts);
                }
                (RuleKind::Baseline(b), RuleState::Baseline(s)) => {
                    b.process(meta, s, rec, intel, cfg, wm, stats);
                    *due = (*due).min(b.due_after(rec.ts));
                }
                _ => {}
            }
        }
        self.stats.alerts += (out.len() - before) as u64;
        if carries_event_time(&rec.event_type) {
            self.advance_watermark(rec.ts, out);
        }
    }

    /// Tells the engine that event time `ts` has been seen (a record, or the online consumer's
    /// idle tick): the watermark becomes `ts - lateness` if that is later, and everything it
    /// passed closes.
    pub fn advance_watermark(&mut self, ts: Micros, out: &mut Vec<Alert>) {
        if self.max_ts.is_some_and(|m| m >= ts) {
            return;
        }
        self.max_ts = Some(ts);
        let wm = ts.saturating_sub(self.lateness);
        if wm > self.watermark {
            self.close_until(wm, out);
        }
    }

    /// End of input (offline): closes every window, whatever its time.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.close_until(Micros::MAX / 2, out);
    }

    fn close_until(&mut self, wm: Micros, out: &mut Vec<Alert>) {
        self.watermark = wm;
        let before = out.len();
        for (i, rule) in self.rules.iter().enumerate() {
            if self.due[i] > wm {
                continue;
            }
            let stats = &mut self.rule_stats[i];
            self.due[i] = match (&rule.kind, &mut self.states[i]) {
                (RuleKind::Threshold(t), RuleState::Threshold(s)) => {
                    t.close(&rule.meta, s, wm, stats, out);
                    t.due(s)
                }
                (RuleKind::Sequence(q), RuleState::Sequence(s)) => {
                    q.close(&rule.meta, s, wm, stats, out);
                    q.due(s)
                }
                (RuleKind::Baseline(b), RuleState::Baseline(s)) => {
                    b.close(&rule.meta, s, wm, stats, out);
                    b.due(s)
                }
                _ => Micros::MAX,
            };
        }
        // Several rules and keys closing together: a fixed order (time, then id).
        if out.len() - before > 1 {
            out[before..].sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
        }
        self.stats.alerts += (out.len() - before) as u64;
    }

    /// The engine's state (windows, sequences, baselines, watermark, counters) as bytes
    /// (JSON), to be stored with the position of the last record applied.
    pub fn snapshot(&self) -> Vec<u8> {
        let rules = self
            .rules
            .iter()
            .zip(&self.states)
            .zip(&self.rule_stats)
            .map(|((r, s), st)| (r.meta.name.clone(), (s.clone(), st.clone())))
            .collect();
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            max_ts: self.max_ts,
            watermark: self.watermark,
            stats: self.stats.clone(),
            rules,
        };
        serde_json::to_vec(&snap).expect("state serializes")
    }

    /// Restores a [`Engine::snapshot`]. State of rules that no longer exist is dropped; a rule
    /// whose kind changed starts empty. Errors leave the engine as it was.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| format!("snapshot: {e}"))?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(format!(
                "snapshot: version {} (expected {SNAPSHOT_VERSION})",
                snap.version
            ));
        }
        let mut rules = snap.rules;
        for (i, r) in self.rules.iter().enumerate() {
            let fresh = RuleState::for_rule(r);
            match rules.remove(&r.meta.name) {
                Some((s, st)) if std::mem::discriminant(&s) == std::mem::discriminant(&fresh) => {
                    self.states[i] = s;
                    self.rule_stats[i] = st;
                }
                _ => {
                    self.states[i] = fresh;
                    self.rule_stats[i] = RuleStats::default();
                }
            }
        }
        self.due.fill(Micros::MIN);
        self.max_ts = snap.max_ts;
        self.watermark = snap.watermark;
        self.stats = snap.stats;
        Ok(())
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Per rule: its metadata, counters and keys held.
    pub fn rule_stats(&self) -> impl Iterator<Item = (&Arc<RuleMeta>, &RuleStats, usize)> {
        self.rules
            .iter()
            .zip(&self.rule_stats)
            .zip(&self.states)
            .map(|((r, st), s)| (&r.meta, st, s.keys()))
    }

    pub fn intel(&self) -> &IntelSet {
        &self.intel
    }

    pub fn intel_mut(&mut self) -> &mut IntelSet {
        &mut self.intel
    }

    pub fn watermark(&self) -> Micros {
        self.watermark
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
}

/// Whether a record's time is traffic time, which moves the watermark. Suricata's `stats`
/// records are counter dumps stamped with the wall clock of the dump: in `suricata -r` output
/// they are years ahead of the packets around them, and one of them would make every later
/// record late. They are still given to the rules that ask for them.
fn carries_event_time(event_type: &str) -> bool {
    event_type != "stats"
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
