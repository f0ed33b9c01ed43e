//! `baseline` rules: a per-key volume per bucket of event time (`value` summed over records
//! passing `where`, or the distinct count of `distinct`), compared when the bucket closes with
//! an exponentially weighted mean and deviation learned from the key's earlier buckets
//! (weight `alpha`). After `warmup` buckets, a value above `mean + deviation * stddev` (and at
//! least `min_value`) raises an alert. A key's buckets without records count as zero. The
//! learned state is part of the engine snapshot, so it survives restarts.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::common::{Group, KeySpec, Scratch, Suppression, SuppressionState};
use super::{duration_key, expr_key, key_err, KeyError, RawRule, RuleMeta};
use crate::alert::{alert_id, Alert, Evidence};
use crate::engine::{EngineConfig, RuleStats};
use crate::expr::{Env, Expr};
use crate::intel::IntelSet;
use crate::record::Record;
use crate::time::{self, Micros};

/// Buckets without any record that are still replayed as zeros for every key (a longer gap
/// is treated as this many: with `alpha` = 0.1, 64 empty buckets leave 0.1% of the mean, so
/// more would change nothing but the time spent).
const MAX_GAP_BUCKETS: i64 = 64;

#[derive(Debug)]
pub struct BaselineRule {
    pub filter: Expr,
    pub keys: KeySpec,
    pub value: Option<Expr>,
    pub distinct: Option<(Expr, String)>,
    pub bucket: Micros,
    pub warmup: u32,
    pub deviation: f64,
    pub min_value: f64,
    pub alpha: f64,
    pub suppress: Option<Suppression>,
}

/// A key's learned model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Model {
    pub mean: f64,
    pub var: f64,
    pub buckets: u32,
    /// [`BaselineState::steps`] this model has learned up to: the zeros of the buckets it
    /// had no record in are learned when it next has one (see [`BaselineRule::close`]).
    #[serde(default)]
    pub synced: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BaselineState {
    pub open: BTreeMap<Micros, FxHashMap<String, Group>>,
    pub models: FxHashMap<String, Model>,
    pub last_closed: Option<Micros>,
    pub suppression: SuppressionState,
    /// Learning steps so far: one per closed bucket, plus the empty buckets between them.
    #[serde(default)]
    pub steps: u64,
    #[serde(skip)]
    pub scratch: Scratch,
}

impl BaselineRule {
    pub fn compile(raw: &RawRule) -> Result<BaselineRule, KeyError> {
        let distinct = match raw.distinct.as_deref() {
            Some(d) => Some((expr_key("distinct", Some(d))?, d.to_string())),
            None => None,
        };
        let value = match (&distinct, raw.value.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(key_err("value", "give `value` or `distinct`, not both"))
            }
            (_, Some(v)) => Some(expr_key("value", Some(v))?),
            _ => None,
        };
        let alpha = raw.alpha.unwrap_or(0.1);
        if alpha.is_nan() || alpha <= 0.0 || alpha > 1.0 {
            return Err(key_err("alpha", "must be in (0, 1]"));
        }
        let deviation = raw.deviation.unwrap_or(4.0);
        if deviation.is_nan() || deviation <= 0.0 {
            return Err(key_err("deviation", "must be positive"));
        }
        let bucket = duration_key("bucket", raw.bucket.as_deref())?;
        Ok(BaselineRule {
            filter: expr_key("where", raw.filter.as_deref())?,
            keys: KeySpec::compile("group_by", raw.group_by.as_deref())?,
            value,
            distinct,
            bucket,
            warmup: raw.warmup.unwrap_or(12),
            deviation,
            min_value: raw.min_value.unwrap_or(0.0),
            alpha,
            suppress: Suppression::compile(raw, bucket)?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn process(
        &self,
        meta: &RuleMeta,
        st: &mut BaselineState,
        rec: &Record,
        intel: &IntelSet,
        cfg: &EngineConfig,
        watermark: Micros,
        stats: &mut RuleStats,
    ) {
        let mut env = Env::new(rec, intel);
        let sc = &mut st.scratch;
        let res = self.filter.test(&mut env).and_then(|m| {
            if !m {
                return Ok(None);
            }
            let has_key = self.keys.key_into(&mut env, &mut sc.key)?;
            let value = match &self.value {
                Some(v) => v.eval(&mut env)?.as_f64().unwrap_or(0.0),
                None => 1.0,
            };
            let has_distinct = match &self.distinct {
                Some((d, _)) => sc.distinct(d, &mut env)?,
                None => false,
            };
            Ok(has_key.then_some((value, has_distinct)))
        });
        let (value, has_distinct) = match res {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => return stats.eval_error(&meta.name, e),
        };
        let start = rec.ts.div_euclid(self.bucket) * self.bucket;
        if start + self.bucket <= watermark || st.last_closed.is_some_and(|c| start <= c) {
            stats.late += 1;
            return;
        }
        stats.matched += 1;
        let sc = std::mem::take(&mut st.scratch);
        if !st.models.contains_key(&sc.key) {
            if st.models.len() >= cfg.max_keys_per_rule {
                let victim = st.models.keys().next().cloned();
                if let Some(k) = victim {
                    st.models.remove(&k);
                    stats.evicted += 1;
                }
            }
            let synced = st.steps;
            let m = Model {
                synced,
                ..Model::default()
            };
            st.models.insert(sc.key.clone(), m);
        }
        let bucket = st.open.entry(start).or_default();
        if !bucket.contains_key(&sc.key) {
            bucket.insert(sc.key.clone(), Group::default());
        }
        if let Some(g) = bucket.get_mut(&sc.key) {
            let distinct = has_distinct.then_some(sc.distinct.as_str());
            g.add(rec, &cfg.sensor_id, value, distinct, cfg.max_distinct);
        }
        st.scratch = sc;
    }

    /// Earliest watermark at which [`BaselineRule::close`] would change anything: the end of
    /// the oldest open bucket, or the next pruning.
    pub fn due(&self, st: &BaselineState) -> Micros {
        let end = st
            .open
            .first_key_value()
            .map_or(Micros::MAX, |(s, _)| s + self.bucket);
        end.min(st.suppression.due(self.suppress))
    }

    /// A lower bound of [`BaselineRule::due`] after `process` of a record at `ts`.
    pub fn due_after(&self, ts: Micros) -> Micros {
        ts.div_euclid(self.bucket) * self.bucket + self.bucket
    }

    /// Closes the buckets the watermark passed: compares, alerts, learns.
    pub fn close(
        &self,
        meta: &Arc<RuleMeta>,
        st: &mut BaselineState,
        watermark: Micros,
        stats: &mut RuleStats,
        out: &mut Vec<Alert>,
    ) {
        while let Some((&start, _)) = st.open.first_key_value() {
            if start + self.bucket > watermark {
                break;
            }
            let groups = st.open.pop_first().map(|(_, g)| g).unwrap_or_default();
            // Buckets between the last closed one and this one had no records: zeros.
            if let Some(last) = st.last_closed {
                let gap = ((start - last) / self.bucket - 1).clamp(0, MAX_GAP_BUCKETS);
                st.steps += gap as u64;
            }
            st.last_closed = Some(start);
            // Every model learns every step, a zero when its key had no record; only the keys
            // of this bucket can alert, so only their models catch up now (the same values
            // as learning each zero when its bucket closed, without walking every key).
            // Any order: the engine sorts the alerts of one watermark step.
            for (key, g) in &groups {
                let Some(m) = st.models.get_mut(key) else {
                    continue;
                };
                self.catch_up(m, st.steps);
                let v = match self.distinct {
                    Some(_) => g.distinct_count() as f64,
                    None => g.sum,
                };
                let fire = m.buckets >= self.warmup
                    && v >= self.min_value
                    && v > m.mean + self.deviation * m.var.sqrt();
                let (mean, sd) = (m.mean, m.var.sqrt());
                self.learn(m, v);
                m.synced = st.steps + 1;
                if fire && st.suppression.allow(self.suppress, key, start) {
                    stats.alerts += 1;
                    out.push(self.alert(meta, key, start, g, v, mean, sd));
                }
            }
            st.steps += 1;
        }
        st.suppression.prune(self.suppress, watermark);
    }

    /// Learns the zeros of the steps `m` missed up to `steps`. Once mean and variance are
    /// exactly +0.0, further zeros change only the bucket count.
    fn catch_up(&self, m: &mut Model, steps: u64) {
        let mut missed = steps.saturating_sub(m.synced);
        while missed > 0 && (m.mean.to_bits() != 0 || m.var.to_bits() != 0) {
            self.learn(m, 0.0);
            missed -= 1;
        }
        let rest = u32::try_from(missed).unwrap_or(u32::MAX);
        if rest > 0 && m.buckets == 0 {
            // A first learned value sets the mean: zeros, as learned one at a time.
            self.learn(m, 0.0);
            m.buckets = m.buckets.saturating_add(rest - 1);
        } else {
            m.buckets = m.buckets.saturating_add(rest);
        }
        m.synced = steps;
    }

    fn learn(&self, m: &mut Model, v: f64) {
        if m.buckets == 0 {
            m.mean = v;
            m.var = 0.0;
        } else {
            let diff = v - m.mean;
            let incr = self.alpha * diff;
            m.mean += incr;
            m.var = (1.0 - self.alpha) * (m.var + diff * incr);
        }
        m.buckets = m.buckets.saturating_add(1);
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        meta: &Arc<RuleMeta>,
        key: &str,
        start: Micros,
        g: &Group,
        v: f64,
        mean: f64,
        sd: f64,
    ) -> Alert {
        let ws = time::format(start);
        Alert {
            id: alert_id(&meta.name, &[key, &ws]),
            meta: meta.clone(),
            ts: start + self.bucket,
            evidence: Evidence {
                count: g.count,
                window_start: Some(ws),
                window_end: Some(time::format(start + self.bucket)),
                key: Some(key.to_string()),
                distinct: self.distinct.as_ref().map(|(_, n)| g.distinct_evidence(n)),
                value: Some(v),
                baseline_mean: Some((mean * 1000.0).round() / 1000.0),
                baseline_stddev: Some((sd * 1000.0).round() / 1000.0),
                refs: g.refs(),
            },
            header: g.header.clone(),
            intel: Vec::new(),
        }
    }
}
