//! Parts the stateful rule kinds share: group keys, bounded groups with their evidence, and
//! suppression (`limit` alerts per key per `period`).

use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::{duration_key, expr_list, key_err, KeyError, RawRule};
use crate::alert::{Distinct, Header};
use crate::expr::{Env, EvalError, Expr, Value};
use crate::record::Record;
use crate::time::Micros;

/// References and distinct values kept per group for the evidence.
pub const EVIDENCE_MAX: usize = 16;

/// Group-by keys: expressions with their source text (the evidence names them).
#[derive(Debug)]
pub struct KeySpec {
    pub exprs: Vec<Expr>,
    pub names: Vec<String>,
}

impl KeySpec {
    pub fn compile(key: &'static str, srcs: Option<&[String]>) -> Result<KeySpec, KeyError> {
        let exprs = expr_list(key, srcs)?;
        if exprs.is_empty() {
            return Err(key_err(key, "needs at least one key"));
        }
        Ok(KeySpec {
            exprs,
            names: srcs.unwrap_or_default().to_vec(),
        })
    }

    /// The record's key as [`KeySpec::keys`] with `named` set and lists rendered whole,
    /// written into `out` (cleared first) so that a key already held costs no allocation.
    /// `false` when a part is missing.
    pub fn key_into<'x>(&'x self, env: &mut Env<'x>, out: &mut String) -> Result<bool, EvalError> {
        out.clear();
        for (e, name) in self.exprs.iter().zip(&self.names) {
            let v = e.eval(env)?;
            if v.is_null() {
                return Ok(false);
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
            out.push('=');
            v.render(out);
        }
        Ok(true)
    }

    /// The record's key (`name=value name=value`), `None` when a part is missing. A list
    /// value (DNS answers) gives one key per element when `expand` is set, else is rendered
    /// whole.
    /// `named`: prefix each part with its expression (`src_ip=...`); sequences compare keys
    /// of two different expressions, so theirs are values only.
    pub fn keys<'x>(
        &'x self,
        env: &mut Env<'x>,
        expand: bool,
        named: bool,
    ) -> Result<Vec<String>, EvalError> {
        let mut keys = vec![String::new()];
        for (e, name) in self.exprs.iter().zip(&self.names) {
            let v = e.eval(env)?;
            let parts: Vec<&Value> = match &v {
                Value::Null => return Ok(Vec::new()),
                Value::List(l) if expand => l.iter().filter(|x| !x.is_null()).collect(),
                v => vec![v],
            };
            let mut next = Vec::with_capacity(keys.len() * parts.len());
            for k in &keys {
                for p in &parts {
                    let mut s = k.clone();
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    if named {
                        s.push_str(name);
                        s.push('=');
                    }
                    p.render(&mut s);
                    next.push(s);
                }
            }
            keys = next;
        }
        Ok(keys)
    }
}

/// Buffers a stateful rule renders a record's key and distinct value into (not part of its
/// state: skipped in snapshots), so that a record of a group already held allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    pub key: String,
    pub distinct: String,
}

impl Scratch {
    /// Renders `d`'s value into `self.distinct`; `false` when it is null.
    pub fn distinct<'x>(&mut self, d: &'x Expr, env: &mut Env<'x>) -> Result<bool, EvalError> {
        let v = d.eval(env)?;
        self.distinct.clear();
        if v.is_null() {
            return Ok(false);
        }
        v.render(&mut self.distinct);
        Ok(true)
    }
}

/// One group of an aggregate: count, distinct values (bounded), earliest references, and its
/// representative record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Group {
    pub count: u64,
    pub sum: f64,
    pub distinct: FxHashSet<String>,
    /// Distinct values not kept because the set was full (the count is then a lower bound).
    pub distinct_overflow: u64,
    pub refs: BTreeSet<(Micros, String)>,
    pub header: Header,
    /// Event times of the records, for rules that test regularity (bounded by
    /// [`MAX_TIMES`]).
    #[serde(default)]
    pub times: Vec<Micros>,
    /// An `early` rule has alerted for this group already (its window raises nothing more).
    #[serde(default)]
    pub fired: bool,
}

/// Event times kept per group for the regularity test.
pub const MAX_TIMES: usize = 4096;

impl Group {
    /// Adds one record. `max_distinct` bounds the distinct set. The record's reference and
    /// header are made only when the group keeps them (its first record, or one earlier than
    /// those it holds): most records of a large group are later than its evidence.
    pub fn add(
        &mut self,
        rec: &Record,
        fallback_sensor: &str,
        value: f64,
        distinct: Option<&str>,
        max_distinct: usize,
    ) {
        self.count += 1;
        self.sum += value;
        if let Some(d) = distinct {
            if !self.distinct.contains(d) {
                if self.distinct.len() < max_distinct {
                    self.distinct.insert(d.to_string());
                } else {
                    self.distinct_overflow += 1;
                }
            }
        }
        let ts = rec.ts;
        let mut reference = None;
        if self.refs.len() < EVIDENCE_MAX || self.refs.last().is_some_and(|l| ts <= l.0) {
            let r = (ts, rec.reference(fallback_sensor));
            if self.refs.len() < EVIDENCE_MAX || self.refs.last().is_some_and(|l| r < *l) {
                self.refs.insert(r.clone());
                if self.refs.len() > EVIDENCE_MAX {
                    self.refs.pop_last();
                }
            }
            reference = Some(r.1);
        }
        if self.count == 1 || ts <= self.header.ts {
            let reference = reference.unwrap_or_else(|| rec.reference(fallback_sensor));
            if self.count == 1 || (ts, reference.as_str()) < self.header.key() {
                self.header = Header::with_reference(rec, fallback_sensor, reference);
            }
        }
    }

    pub fn distinct_count(&self) -> u64 {
        self.distinct.len() as u64 + self.distinct_overflow
    }

    pub fn distinct_evidence(&self, field: &str) -> Distinct {
        let mut values: Vec<&String> = self.distinct.iter().collect();
        values.sort();
        Distinct {
            field: field.to_string(),
            count: self.distinct_count(),
            values: values.into_iter().take(EVIDENCE_MAX).cloned().collect(),
        }
    }

    pub fn refs(&self) -> Vec<String> {
        self.refs.iter().map(|(_, r)| r.clone()).collect()
    }
}

/// `limit` alerts per key per `period` (event time, periods aligned to the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Suppression {
    pub limit: u32,
    pub period: Micros,
}

impl Suppression {
    /// From `limit`/`period`; without them every firing alerts (`default_period` only sizes the
    /// state's pruning).
    pub fn compile(raw: &RawRule, default_period: Micros) -> Result<Option<Suppression>, KeyError> {
        match (raw.limit, raw.period.as_deref()) {
            (None, None) => Ok(None),
            (Some(0), _) => Err(key_err("limit", "must be at least 1")),
            (limit, period) => Ok(Some(Suppression {
                limit: limit.unwrap_or(1),
                period: match period {
                    Some(p) => duration_key("period", Some(p))?,
                    None => default_period,
                },
            })),
        }
    }
}

/// Alerts already raised per key in its current period.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SuppressionState {
    counts: FxHashMap<String, (Micros, u32)>,
    pub suppressed: u64,
    /// Event time of the next pruning: pruning walks every key, so it runs once per
    /// period at most, not at every watermark step.
    #[serde(default)]
    next_prune: Micros,
}

impl SuppressionState {
    /// Whether an alert for `key` at event time `ts` may be raised (and counts it).
    pub fn allow(&mut self, s: Option<Suppression>, key: &str, ts: Micros) -> bool {
        let Some(s) = s else { return true };
        let period = ts.div_euclid(s.period) * s.period;
        let e = self.counts.entry(key.to_string()).or_insert((period, 0));
        if e.0 != period {
            *e = (period, 0);
        }
        if e.1 < s.limit {
            e.1 += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Forgets periods that ended before `watermark`.
    pub fn prune(&mut self, s: Option<Suppression>, watermark: Micros) {
        if let Some(s) = s {
            if watermark < self.next_prune {
                return;
            }
            self.counts.retain(|_, (p, _)| *p + s.period > watermark);
            self.next_prune = watermark.saturating_add(s.period);
        }
    }

    /// Earliest watermark at which [`SuppressionState::prune`] would do anything.
    pub fn due(&self, s: Option<Suppression>) -> Micros {
        s.map_or(Micros::MAX, |_| self.next_prune)
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

impl Group {
    /// Mean (microseconds) and coefficient of variation (stddev / mean) of the intervals
    /// between the kept event times: CV 0 for a perfectly periodic series. `None` with fewer
    /// than three times.
    pub fn interval_stats(&self) -> Option<(f64, f64)> {
        let mut t = self.times.clone();
        t.sort_unstable();
        if t.len() < 3 {
            return None;
        }
        let d: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        if mean <= 0.0 {
            return None;
        }
        let var = d.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / d.len() as f64;
        Some((mean, var.sqrt() / mean))
    }
}
