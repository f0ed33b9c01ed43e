//! `match` rules: one alert per record for which the `where` expression holds (intel hits
//! are `match` rules over `intel(...)`). Stateless, so alerts go out at once. Aggregating or
//! rate-limiting a match is a `threshold` rule with `condition = ">= 1"`: its windows make the
//! choice of which records alert independent of arrival order.

use std::sync::Arc;

use super::{expr_key, KeyError, RawRule, RuleMeta};
use crate::alert::{alert_id, Alert, Evidence, Header, IntelMatch};
use crate::engine::RuleStats;
use crate::expr::{Env, Expr, IntelHit};
use crate::intel::IntelSet;
use crate::record::Record;

#[derive(Debug)]
pub struct MatchRule {
    pub cond: Expr,
}

impl MatchRule {
    pub fn compile(raw: &RawRule) -> Result<MatchRule, KeyError> {
        Ok(MatchRule {
            cond: expr_key("where", raw.filter.as_deref())?,
        })
    }

    pub fn process(
        &self,
        meta: &Arc<RuleMeta>,
        rec: &Record,
        intel: &IntelSet,
        fallback_sensor: &str,
        stats: &mut RuleStats,
        out: &mut Vec<Alert>,
    ) {
        let mut env = Env::new(rec, intel);
        match self.cond.test(&mut env) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return stats.eval_error(&meta.name, e),
        }
        stats.matched += 1;
        let header = Header::of(rec, fallback_sensor);
        let id = alert_id(&meta.name, &[&header.reference]);
        out.push(Alert {
            id,
            meta: meta.clone(),
            ts: rec.ts,
            evidence: Evidence {
                count: 1,
                refs: vec![header.reference.clone()],
                ..Evidence::default()
            },
            header,
            intel: intel_matches(env.hits),
        });
    }
}

/// Intel hits as the alert lists them, sorted and without repeats.
pub fn intel_matches(mut hits: Vec<IntelHit>) -> Vec<IntelMatch> {
    hits.sort();
    hits.dedup();
    hits.into_iter()
        .map(|h| IntelMatch {
            field: h.field.to_string(),
            indicator: h.hit.indicator,
            indicator_type: h.hit.kind.name().to_string(),
            source: h.hit.source,
        })
        .collect()
}
