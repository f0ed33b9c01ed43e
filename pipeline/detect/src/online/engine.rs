//! The detection [`Engine`] behind the consumer's [`Detector`]: one engine per partition,
//! built from the configured rules and intel files, restored from the partition's checkpoint.
//!
//! The engine is given the partition's sensor id as the fallback `sensor_id` of records that
//! carry none, as `pipeline detect --eve --sensor-id ID` is offline: both then write the same
//! record references and alert ids.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::config::{config_error, OnlineConfig};
use super::partition::{Detector, Factory};
use super::sinks::AlertOut;
use crate::{Alert, Engine, EngineConfig, IntelSet, Record, RuleSet};

/// How often intel files are checked for changes (they are re-read when they change).
const INTEL_CHECK: Duration = Duration::from_secs(1);

struct EngineDetector {
    engine: Engine,
    sensor: String,
    alerts: Vec<Alert>,
    malformed: u64,
    intel_checked: Instant,
}

impl EngineDetector {
    fn drain(&mut self, out: &mut Vec<(String, AlertOut)>) {
        for a in self.alerts.drain(..) {
            let sensor_id = if a.header.sensor_id.is_empty() {
                self.sensor.clone()
            } else {
                a.header.sensor_id.clone()
            };
            out.push((
                a.meta.name.clone(),
                AlertOut {
                    id: a.id.clone(),
                    sensor_id,
                    severity: a.meta.severity,
                    json: a.to_eve(),
                },
            ));
        }
    }
}

impl Detector for EngineDetector {
    fn process(&mut self, json: &[u8], out: &mut Vec<(String, AlertOut)>) {
        match Record::parse_bytes(json) {
            Ok(rec) => self.engine.process(&rec, &mut self.alerts),
            Err(e) => {
                self.malformed += 1;
                if self.malformed.is_power_of_two() {
                    tracing::warn!(sensor = %self.sensor, error = %e, "malformed record skipped");
                }
            }
        }
        if self.intel_checked.elapsed() >= INTEL_CHECK {
            self.intel_checked = Instant::now();
            self.engine.intel_mut().reload_if_changed();
        }
        self.drain(out);
    }

    fn idle(&mut self, now: i64, out: &mut Vec<(String, AlertOut)>) {
        self.engine.advance_watermark(now, &mut self.alerts);
        self.drain(out);
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = self.malformed.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.engine.snapshot());
        bytes
    }

    fn stats(&self) -> (u64, u64, u64) {
        let (mut keys, mut errors) = (0, 0);
        for (_, st, k) in self.engine.rule_stats() {
            keys += k as u64;
            errors += st.eval_errors;
        }
        (keys, self.malformed, errors)
    }
}

fn rules(cfg: &OnlineConfig) -> Result<RuleSet> {
    RuleSet::load(&[PathBuf::from(&cfg.detect.rules)]).map_err(|errors| {
        let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
        let more = match errors.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        config_error("detect.rules", format!("{first}{more}")).into()
    })
}

fn intel(cfg: &OnlineConfig) -> Result<IntelSet> {
    IntelSet::load(&cfg.detect.intel).map_err(|e| config_error("detect.intel", e).into())
}

/// Checks the rules and intel files once (a bad file is a config error at start-up), then
/// returns the factory of the partitions' engines.
pub fn factory(cfg: &OnlineConfig) -> Result<Arc<Factory>> {
    rules(cfg)?;
    intel(cfg)?;
    let cfg = cfg.clone();
    Ok(Arc::new(move |sensor: &str, snapshot: Option<&[u8]>| {
        let ecfg = EngineConfig {
            lateness_secs: cfg.detect.lateness_secs,
            max_keys_per_rule: cfg.detect.max_keys_per_rule,
            max_distinct: cfg.detect.max_distinct,
            sensor_id: sensor.to_string(),
        };
        let mut engine = Engine::new(rules(&cfg)?, intel(&cfg)?, ecfg);
        let mut malformed = 0;
        if let Some(s) = snapshot {
            let (head, body) = s.split_at(8.min(s.len()));
            malformed = head.try_into().map(u64::from_le_bytes).unwrap_or(0);
            engine
                .restore(body)
                .map_err(|e| anyhow::anyhow!("checkpoint of {sensor}: {e}"))?;
        }
        let d: Box<dyn Detector> = Box::new(EngineDetector {
            engine,
            sensor: sensor.to_string(),
            alerts: Vec::new(),
            malformed,
            intel_checked: Instant::now(),
        });
        Ok(d)
    }))
}
