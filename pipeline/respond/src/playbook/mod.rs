//! Playbooks: which alerts a response applies to, and its steps in order.
//!
//! A playbook file (TOML, `config/playbooks/*.toml`, format in README.md "Playbooks") holds
//! `[[playbook]]` tables: a `trigger` (signature ids, categories, rule names, a minimum
//! severity, field equalities), `condition`s over any alert field, and `step`s: `block`,
//! `notify`, `tag`. [`load`] reads and checks files, reporting every error as one line naming
//! the file, the playbook and the field; [`Playbook::matches`] decides whether an alert runs it.

mod load;
pub mod template;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use serde_json::Value;

pub use load::{load, load_file, PlaybookError, MAX_BLOCK};

use crate::alert::Alert;

/// One playbook.
#[derive(Debug)]
pub struct Playbook {
    /// Unique across the loaded files; letters, digits, `-` and `_` (part of key-value keys).
    pub name: String,
    pub file: String,
    pub enabled: bool,
    /// Record what the steps would do, do nothing (on top of the global `dry_run`).
    pub dry_run: bool,
    pub trigger: Trigger,
    pub conditions: Vec<Condition>,
    pub steps: Vec<Step>,
}

/// The alert filter; empty lists accept anything.
#[derive(Debug, Default)]
pub struct Trigger {
    pub signature_ids: Vec<u64>,
    pub categories: Vec<String>,
    pub rules: Vec<String>,
    /// Suricata's scale: 1 is the most severe, so this accepts severities `<=` it.
    pub min_severity: Option<u64>,
    /// Field path and the values it may have (any of them).
    pub fields: Vec<(String, Vec<Value>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    InCidr,
    NotInCidr,
    Exists,
    Absent,
    Contains,
    Matches,
}

/// A test on one alert field.
#[derive(Debug)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: CondValue,
}

#[derive(Debug)]
pub enum CondValue {
    None,
    One(Value),
    List(Vec<Value>),
    Nets(Vec<IpNet>),
    Regex(Regex),
}

/// Which address of the alert a step acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Src,
    Dest,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Src => "src",
            Side::Dest => "dest",
        }
    }

    pub fn of(self, a: &Alert) -> Option<IpAddr> {
        match self {
            Side::Src => a.src_ip,
            Side::Dest => a.dest_ip,
        }
    }
}

/// Which sensors a block goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every sensor of the respond config's `sensors`.
    All,
    /// The sensor that saw it (the alert's `host`).
    Origin,
}

#[derive(Debug)]
pub struct BlockStep {
    pub target: Side,
    /// Prefix length of the CIDR around the address, per family.
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub scope: Scope,
    pub duration: Duration,
}

#[derive(Debug)]
pub struct NotifyStep {
    pub url: String,
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// First pause between attempts, doubled each time up to `max_backoff`, with jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub headers: Vec<(String, String)>,
    /// JSON with `{{ field }}` placeholders in its strings ([`template`]).
    pub body: Value,
}

#[derive(Debug)]
pub struct TagStep {
    pub host: Side,
    pub label: String,
    pub expire: Duration,
}

#[derive(Debug)]
pub enum Step {
    Block(BlockStep),
    Notify(NotifyStep),
    Tag(TagStep),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Block(_) => "block",
            Step::Notify(_) => "notify",
            Step::Tag(_) => "tag",
        }
    }
}

/// Loose equality of JSON values: numbers by value, the rest exactly; a list on the left
/// (`alert.metadata.mitre`) is equal when one of its elements is.
fn same(a: &Value, b: &Value) -> bool {
    match (a, a.as_f64(), b.as_f64()) {
        (Value::Array(items), _, _) if !b.is_array() => items.iter().any(|x| same(x, b)),
        (_, Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Condition {
    pub fn holds(&self, a: &Alert) -> bool {
        let v = a.field(&self.field).filter(|v| !v.is_null());
        let num = |x: &Value| x.as_f64();
        match (&self.op, &self.value, v) {
            (Op::Exists, _, v) => v.is_some(),
            (Op::Absent, _, v) => v.is_none(),
            (Op::Ne, CondValue::One(want), v) => !v.is_some_and(|v| same(v, want)),
            (Op::NotIn, CondValue::List(l), v) => !v.is_some_and(|v| l.iter().any(|w| same(v, w))),
            (Op::NotInCidr, CondValue::Nets(n), v) => !v.is_some_and(|v| in_nets(v, n)),
            (_, _, None) => false,
            (Op::Eq, CondValue::One(want), Some(v)) => same(v, want),
            (Op::In, CondValue::List(l), Some(v)) => l.iter().any(|w| same(v, w)),
            (Op::InCidr, CondValue::Nets(n), Some(v)) => in_nets(v, n),
            (Op::Contains, CondValue::One(Value::String(s)), Some(Value::String(v))) => {
                v.contains(s.as_str())
            }
            (Op::Matches, CondValue::Regex(r), Some(Value::String(v))) => r.is_match(v),
            (op, CondValue::One(want), Some(v)) => match (num(v), num(want)) {
                (Some(x), Some(y)) => match op {
                    Op::Lt => x < y,
                    Op::Le => x <= y,
                    Op::Gt => x > y,
                    Op::Ge => x >= y,
                    _ => false,
                },
                _ => false,
            },
            _ => false,
        }
    }
}

fn in_nets(v: &Value, nets: &[IpNet]) -> bool {
    v.as_str()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
}

impl Playbook {
    /// Whether `a` runs this playbook: enabled, the trigger accepts it, every condition holds.
    pub fn matches(&self, a: &Alert) -> bool {
        let t = &self.trigger;
        self.enabled
            && (t.signature_ids.is_empty() || t.signature_ids.contains(&a.signature_id))
            && (t.categories.is_empty() || t.categories.contains(&a.category))
            && (t.rules.is_empty() || t.rules.contains(&a.rule))
            && t.min_severity.is_none_or(|m| a.severity <= m)
            && t.fields.iter().all(|(path, allowed)| {
                a.field(path)
                    .is_some_and(|v| allowed.iter().any(|w| same(v, w)))
            })
            && self.conditions.iter().all(|c| c.holds(a))
    }
}

#[cfg(test)]
mod tests;
