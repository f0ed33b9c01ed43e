//! `sequence` rules: a record matching `first`, then one matching `then` with the same key
//! (`first_key` of the first equals `then_key` of the second) within `within` of event time.
//! E.g. a DNS answer for an intel domain, then a flow to the answered address.
//!
//! Order-independent: a `then` record waits until the watermark passes its timestamp (every
//! earlier `first` has arrived, within the lateness) and is then checked against the `first`
//! timestamps kept for its key. Keys that are lists (DNS answers) give one key per element.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::common::{KeySpec, Suppression, SuppressionState};
use super::{duration_key, expr_key, KeyError, RawRule, RuleMeta};
use crate::alert::{alert_id, Alert, Evidence, Header};
use crate::engine::{EngineConfig, RuleStats};
use crate::expr::{Env, Expr};
use crate::intel::IntelSet;
use crate::record::Record;
use crate::rules::matcher::intel_matches;
use crate::time::{self, Micros};

/// `first` records kept per key (the latest ones).
const FIRSTS_PER_KEY: usize = 16;

#[derive(Debug)]
pub struct SequenceRule {
    pub first: Expr,
    pub then: Expr,
    pub first_key: KeySpec,
    pub then_key: KeySpec,
    pub within: Micros,
    pub suppress: Option<Suppression>,
}

/// A `then` record waiting for the watermark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub key: String,
    pub header: Header,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SequenceState {
    /// Per key: (time, reference, intel hits rendered) of recent `first` records.
    pub firsts: FxHashMap<String, Vec<(Micros, String)>>,
    /// Kept in snapshots as a list of pairs: JSON map keys must be strings, these are tuples.
    #[serde(with = "pairs")]
    pub pending: BTreeMap<(Micros, String, String), Pending>,
    pub suppression: SuppressionState,
    /// Event time of the next pruning of `firsts` (a walk over every key: once per quarter
    /// of `within`, not at every watermark step).
    #[serde(default)]
    pub next_prune: Micros,
}

/// A map with non-string keys as a JSON list of `[key, value]` pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl SequenceRule {
    pub fn compile(raw: &RawRule) -> Result<SequenceRule, KeyError> {
        Ok(SequenceRule {
            first: expr_key("first", raw.first.as_deref())?,
            then: expr_key("then", raw.then.as_deref())?,
            first_key: KeySpec::compile("first_key", raw.first_key.as_deref())?,
            then_key: KeySpec::compile("then_key", raw.then_key.as_deref())?,
            within: duration_key("within", raw.within.as_deref())?,
            suppress: Suppression::compile(raw, 3600 * time::MICROS_PER_SEC)?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn process(
        &self,
        meta: &RuleMeta,
        st: &mut SequenceState,
        rec: &Record,
        intel: &IntelSet,
        cfg: &EngineConfig,
        watermark: Micros,
        stats: &mut RuleStats,
    ) {
        let mut env = Env::new(rec, intel);
        let first = self.first.test(&mut env).and_then(|m| match m {
            true => self.first_key.keys(&mut env, true, false),
            false => Ok(Vec::new()),
        });
        let mut env = Env::new(rec, intel);
        let then = self.then.test(&mut env).and_then(|m| match m {
            true => self.then_key.keys(&mut env, true, false),
            false => Ok(Vec::new()),
        });
        let (first, then) = match (first, then) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return stats.eval_error(&meta.name, e),
        };
        if first.is_empty() && then.is_empty() {
            return;
        }
        if rec.ts < watermark {
            stats.late += 1;
            return;
        }
        stats.matched += 1;
        let header = Header::of(rec, &cfg.sensor_id);
        for key in first {
            let v = st.firsts.entry(key).or_default();
            v.push((rec.ts, header.reference.clone()));
            v.sort();
            if v.len() > FIRSTS_PER_KEY {
                v.remove(0);
            }
        }
        if st.firsts.len() > cfg.max_keys_per_rule {
            let victim = st.firsts.keys().next().cloned();
            if let Some(k) = victim {
                st.firsts.remove(&k);
                stats.evicted += 1;
            }
        }
        let n = then.len();
        let mut header = Some(header);
        for (i, key) in then.into_iter().enumerate() {
            if st.pending.len() >= cfg.max_keys_per_rule {
                stats.evicted += 1;
                continue;
            }
            // The last key takes the header, the others a copy.
            let Some(header) = (if i + 1 == n {
                header.take()
            } else {
                header.clone()
            }) else {
                continue;
            };
            let pk = (rec.ts, header.reference.clone(), key.clone());
            st.pending.insert(pk, Pending { key, header });
        }
    }

    /// Earliest watermark at which [`SequenceRule::close`] would change anything: the oldest
    /// pending `then` record, the next pruning of `firsts` or of the suppression.
    pub fn due(&self, st: &SequenceState) -> Micros {
        let pending = st
            .pending
            .first_key_value()
            .map_or(Micros::MAX, |(k, _)| k.0);
        pending
            .min(st.next_prune)
            .min(st.suppression.due(self.suppress))
    }

    /// Checks the `then` records the watermark has passed; forgets `first` records too old
    /// to pair with anything still to come.
    pub fn close(
        &self,
        meta: &Arc<RuleMeta>,
        st: &mut SequenceState,
        watermark: Micros,
        stats: &mut RuleStats,
        out: &mut Vec<Alert>,
    ) {
        while let Some(entry) = st.pending.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let ((ts, reference, _), p) = entry.remove_entry();
            let Some(firsts) = st.firsts.get(&p.key) else {
                continue;
            };
            let hit = firsts
                .iter()
                .find(|(t, r)| *t <= ts && ts - *t <= self.within && *r != reference)
                .cloned();
            let Some((first_ts, first_ref)) = hit else {
                continue;
            };
            if !st.suppression.allow(self.suppress, &p.key, ts) {
                continue;
            }
            stats.alerts += 1;
            out.push(Alert {
                id: alert_id(&meta.name, &[&p.key, &reference]),
                meta: meta.clone(),
                ts,
                evidence: Evidence {
                    count: 2,
                    window_start: Some(time::format(first_ts)),
                    window_end: Some(time::format(ts)),
                    key: Some(p.key.clone()),
                    refs: vec![first_ref, reference],
                    ..Evidence::default()
                },
                header: p.header,
                intel: intel_matches(Vec::new()),
            });
        }
        if watermark >= st.next_prune {
            let horizon = watermark - self.within;
            st.firsts.retain(|_, v| {
                v.retain(|(t, _)| *t >= horizon);
                !v.is_empty()
            });
            st.next_prune = watermark.saturating_add(self.within / 4);
        }
        st.suppression.prune(self.suppress, watermark);
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn pending_sequences_survive_a_json_snapshot() {
        let mut st = SequenceState::default();
        st.pending.insert(
            (5, "a".into(), "b".into()),
            Pending {
                key: "k".into(),
                header: Header::default(),
            },
        );
        let bytes = serde_json::to_vec(&st).expect("serializes");
        let back: SequenceState = serde_json::from_slice(&bytes).expect("deserializes");
        assert_eq!(back.pending.len(), 1);
        assert_eq!(
            back.pending.keys().next(),
            Some(&(5, "a".to_string(), "b".to_string()))
        );
    }
}
