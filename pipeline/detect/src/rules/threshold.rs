//! `threshold` rules: records passing `where` are counted per `group_by` key in tumbling
//! windows of event time (aligned to the epoch); when a window closes (the watermark passed
//! its end) each group whose count, or distinct count of `distinct`, meets `condition` raises
//! an alert, at most `limit` per key per `period`.
//!
//! An `early` rule alerts as soon as a group's count crosses a `>=` or `>` condition instead of
//! at the window's end: a count only grows, so the same windows alert, with the same ids, as
//! they would at the end; only the moment, the alert's timestamp (the crossing record's) and
//! the evidence (what was counted up to then) depend on when records arrive. It is what lets a
//! response act on a scan within a second rather than a window plus the lateness.
//!
//! Tumbling rather than sliding windows: a window's contents are a function of the records'
//! timestamps alone, so the alerts do not depend on the order records arrive in (several
//! sensor workers, several pipeline instances). A burst split by a window boundary can fall
//! under the threshold in both halves; size windows with that in mind.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::common::{Group, KeySpec, Scratch, Suppression, SuppressionState, MAX_TIMES};
use super::{duration_key, expr_key, key_err, KeyError, RawRule, RuleMeta};
use crate::alert::{alert_id, Alert, Evidence};
use crate::engine::{EngineConfig, RuleStats};
use crate::expr::{self, Env, Expr};
use crate::intel::IntelSet;
use crate::record::Record;
use crate::time::{self, Micros};

/// `>= 20`, `> 5`, `== 1`...
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub op: expr::CmpOp,
    pub value: f64,
}

impl Condition {
    pub fn parse(s: &str) -> Option<Condition> {
        let s = s.trim();
        let (op, rest) = [
            (">=", expr::CmpOp::Ge),
            ("<=", expr::CmpOp::Le),
            ("==", expr::CmpOp::Eq),
            (">", expr::CmpOp::Gt),
            ("<", expr::CmpOp::Lt),
        ]
        .into_iter()
        .find_map(|(t, op)| s.strip_prefix(t).map(|r| (op, r)))?;
        let value: f64 = rest.trim().parse().ok()?;
        Some(Condition { op, value })
    }

    pub fn holds(&self, v: f64) -> bool {
        use expr::CmpOp::*;
        match self.op {
            Ge => v >= self.value,
            Gt => v > self.value,
            Le => v <= self.value,
            Lt => v < self.value,
            Eq => v == self.value,
            Ne => v != self.value,
        }
    }
}

#[derive(Debug)]
pub struct ThresholdRule {
    pub filter: Expr,
    pub keys: KeySpec,
    pub distinct: Option<(Expr, String)>,
    pub window: Micros,
    pub condition: Condition,
    pub suppress: Option<Suppression>,
    /// Beaconing: also require the intervals between the group's records to vary by at most
    /// this coefficient of variation (stddev / mean).
    pub regularity: Option<f64>,
    /// With `regularity`: the mean interval must be at least this long (check-ins are minutes
    /// apart; a brute-force loop is regular too, but seconds apart).
    pub min_interval: Option<Micros>,
    /// Alert at the crossing rather than at the window's end (see the module's doc).
    pub early: bool,
}

/// Open windows by start, each a map of groups by key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThresholdState {
    pub windows: BTreeMap<Micros, FxHashMap<String, Group>>,
    pub keys: usize,
    pub suppression: SuppressionState,
    #[serde(skip)]
    pub scratch: Scratch,
}

impl ThresholdRule {
    pub fn compile(raw: &RawRule) -> Result<ThresholdRule, KeyError> {
        let filter = expr_key("where", raw.filter.as_deref())?;
        let keys = KeySpec::compile("group_by", raw.group_by.as_deref())?;
        let distinct = match raw.distinct.as_deref() {
            Some(d) => Some((expr_key("distinct", Some(d))?, d.to_string())),
            None => None,
        };
        let window = duration_key("window", raw.window.as_deref())?;
        let cond = raw
            .condition
            .as_deref()
            .ok_or_else(|| key_err("condition", "missing (e.g. \">= 20\")"))?;
        let condition = Condition::parse(cond).ok_or_else(|| {
            key_err(
                "condition",
                format!("{cond:?} is not `OP NUMBER` (>=, >, <=, <, ==)"),
            )
        })?;
        let early = raw.early.unwrap_or(false);
        if early
            && (!matches!(condition.op, expr::CmpOp::Ge | expr::CmpOp::Gt)
                || raw.regularity.is_some())
        {
            return Err(key_err(
                "early",
                "needs a `>=` or `>` condition and no `regularity` (only a growing count crosses once)",
            ));
        }
        Ok(ThresholdRule {
            early,
            filter,
            keys,
            distinct,
            window,
            condition,
            suppress: Suppression::compile(raw, window)?,
            regularity: match raw.regularity {
                Some(r) if r.is_nan() || r < 0.0 => {
                    return Err(key_err("regularity", "must be >= 0"))
                }
                r => r,
            },
            min_interval: match raw.min_interval.as_deref() {
                Some(v) => Some(duration_key("min_interval", Some(v))?),
                None => None,
            },
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn process(
        &self,
        meta: &Arc<RuleMeta>,
        st: &mut ThresholdState,
        rec: &Record,
        intel: &IntelSet,
        cfg: &EngineConfig,
        watermark: Micros,
        stats: &mut RuleStats,
        out: &mut Vec<Alert>,
    ) {
        let mut env = Env::new(rec, intel);
        let sc = &mut st.scratch;
        let found = self.filter.test(&mut env).and_then(|m| {
            if !m {
                return Ok(false);
            }
            let has_key = self.keys.key_into(&mut env, &mut sc.key)?;
            let has_distinct = match &self.distinct {
                Some((d, _)) => sc.distinct(d, &mut env)?,
                None => true,
            };
            Ok(has_key && has_distinct)
        });
        match found {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return stats.eval_error(&meta.name, e),
        }
        let start = rec.ts.div_euclid(self.window) * self.window;
        if start + self.window <= watermark {
            stats.late += 1;
            return;
        }
        stats.matched += 1;
        let sc = std::mem::take(&mut st.scratch);
        let held = st
            .windows
            .get(&start)
            .is_some_and(|w| w.contains_key(&sc.key));
        if !held {
            if st.keys >= cfg.max_keys_per_rule {
                evict_one(st, stats);
            }
            st.keys += 1;
            let w = st.windows.entry(start).or_default();
            w.insert(sc.key.clone(), Group::default());
        }
        if let Some(g) = st.windows.get_mut(&start).and_then(|w| w.get_mut(&sc.key)) {
            let distinct = self.distinct.as_ref().map(|_| sc.distinct.as_str());
            g.add(rec, &cfg.sensor_id, 1.0, distinct, cfg.max_distinct);
            if self.regularity.is_some() && g.times.len() < MAX_TIMES {
                g.times.push(rec.ts);
            }
            if self.early && !g.fired && self.condition.holds(self.value(g) as f64) {
                g.fired = true;
                if st.suppression.allow(self.suppress, &sc.key, start) {
                    stats.alerts += 1;
                    let mut a = self.alert(meta, &sc.key, start, start + self.window, g);
                    a.ts = rec.ts;
                    out.push(a);
                }
            }
        }
        st.scratch = sc;
    }

    /// Earliest watermark at which [`ThresholdRule::close`] would change anything: the end of
    /// the oldest open window, or the next pruning.
    pub fn due(&self, st: &ThresholdState) -> Micros {
        let end = st
            .windows
            .first_key_value()
            .map_or(Micros::MAX, |(s, _)| s + self.window);
        end.min(st.suppression.due(self.suppress))
    }

    /// A lower bound of [`ThresholdRule::due`] after `process` of a record at `ts`: the end
    /// of the window it falls in.
    pub fn due_after(&self, ts: Micros) -> Micros {
        ts.div_euclid(self.window) * self.window + self.window
    }

    /// What `condition` tests: the group's count, or its distinct count.
    fn value(&self, g: &Group) -> u64 {
        match self.distinct {
            Some(_) => g.distinct_count(),
            None => g.count,
        }
    }

    /// Closes the windows that ended at or before `watermark`, raising alerts.
    pub fn close(
        &self,
        meta: &Arc<RuleMeta>,
        st: &mut ThresholdState,
        watermark: Micros,
        stats: &mut RuleStats,
        out: &mut Vec<Alert>,
    ) {
        while let Some((&start, _)) = st.windows.first_key_value() {
            if start + self.window > watermark {
                break;
            }
            let groups = st.windows.pop_first().map(|(_, g)| g).unwrap_or_default();
            st.keys -= groups.len();
            let mut groups: Vec<(String, Group)> = groups.into_iter().collect();
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, g) in groups {
                if g.fired || !self.condition.holds(self.value(&g) as f64) {
                    continue;
                }
                if let Some(max_cv) = self.regularity {
                    let min = self.min_interval.unwrap_or(0) as f64;
                    if g.interval_stats()
                        .is_none_or(|(mean, cv)| cv > max_cv || mean < min)
                    {
                        continue;
                    }
                }
                let end = start + self.window;
                if !st.suppression.allow(self.suppress, &key, start) {
                    continue;
                }
                stats.alerts += 1;
                out.push(self.alert(meta, &key, start, end, &g));
            }
        }
        st.suppression.prune(self.suppress, watermark);
    }

    fn alert(
        &self,
        meta: &Arc<RuleMeta>,
        key: &str,
        start: Micros,
        end: Micros,
        g: &Group,
    ) -> Alert {
        let ws = time::format(start);
        Alert {
            id: alert_id(&meta.name, &[key, &ws]),
            meta: meta.clone(),
            ts: end,
            evidence: Evidence {
                count: g.count,
                window_start: Some(ws),
                window_end: Some(time::format(end)),
                key: Some(key.to_string()),
                distinct: self
                    .distinct
                    .as_ref()
                    .map(|(_, name)| g.distinct_evidence(name)),
                refs: g.refs(),
                ..Evidence::default()
            },
            header: g.header.clone(),
            intel: Vec::new(),
        }
    }
}

/// Makes room for one key: drops a group of the oldest window (counted).
fn evict_one(st: &mut ThresholdState, stats: &mut RuleStats) {
    if let Some(mut entry) = st.windows.first_entry() {
        let victim = entry.get().keys().next().cloned();
        if let Some(k) = victim {
            entry.get_mut().remove(&k);
            st.keys -= 1;
            stats.evicted += 1;
        }
        if entry.get().is_empty() {
            entry.remove();
        }
    }
}
