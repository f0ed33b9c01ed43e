//! Detection rules: the file format, loading and validation (`check-rules`), and one module
//! per rule kind with its state.
//!
//! A rules file is TOML with one `[[rule]]` table per rule (`config/rules/README.md` documents
//! every key). Common keys: `name` (unique), `kind` (`match`, `threshold`, `sequence`,
//! `baseline`), `sid`, `rev`, `signature`, `category`, `severity` (1-4), `mitre` (technique
//! ids), `enabled`. Expressions are in the language of [`crate::expr`]. Files are compiled
//! once; an error names the file, the line, the rule and the key.

pub mod baseline;
pub mod common;
pub mod matcher;
pub mod sequence;
pub mod threshold;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::expr::{self, Expr};
use crate::time::{self, Micros};

/// What every alert of a rule carries.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    pub name: String,
    pub kind: &'static str,
    pub sid: u64,
    pub rev: u32,
    pub signature: String,
    pub category: String,
    pub severity: u8,
    pub mitre: Vec<String>,
    pub file: PathBuf,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub meta: Arc<RuleMeta>,
    pub kind: RuleKind,
    /// Records of other event types cannot match (from the rule's expressions).
    pub event_types: Option<Vec<String>>,
}

impl Rule {
    /// Whether a record of this event type can match at all.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|v| v.iter().any(|t| t == event_type))
    }
}

#[derive(Debug)]
pub enum RuleKind {
    Match(matcher::MatchRule),
    Threshold(threshold::ThresholdRule),
    Sequence(sequence::SequenceRule),
    Baseline(baseline::BaselineRule),
}

/// The compiled rules of one or more files.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// One problem in a rules file: `FILE:LINE: rule NAME: KEY: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: usize,
    pub rule: String,
    pub key: String,
    pub msg: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.rule.is_empty() {
            write!(f, "rule {}: ", self.rule)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.msg)
    }
}

/// A rule as written (every key of every kind; the kind's compiler checks which apply).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub sid: Option<u64>,
    pub rev: Option<u32>,
    pub signature: Option<String>,
    pub category: Option<String>,
    pub severity: Option<i64>,
    #[serde(default)]
    pub mitre: Vec<String>,
    pub enabled: Option<bool>,
    #[serde(rename = "where")]
    pub filter: Option<String>,
    pub group_by: Option<Vec<String>>,
    pub distinct: Option<String>,
    pub window: Option<String>,
    pub condition: Option<String>,
    pub limit: Option<u32>,
    pub period: Option<String>,
    pub first: Option<String>,
    pub then: Option<String>,
    pub first_key: Option<Vec<String>>,
    pub then_key: Option<Vec<String>>,
    pub within: Option<String>,
    pub value: Option<String>,
    pub bucket: Option<String>,
    pub warmup: Option<u32>,
    pub deviation: Option<f64>,
    pub min_value: Option<f64>,
    pub alpha: Option<f64>,
    pub regularity: Option<f64>,
    pub min_interval: Option<String>,
    pub early: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

/// A key's problem while compiling one rule.
pub struct KeyError {
    pub key: &'static str,
    pub msg: String,
}

pub(crate) fn key_err(key: &'static str, msg: impl Into<String>) -> KeyError {
    KeyError {
        key,
        msg: msg.into(),
    }
}

/// Compiles an expression key.
pub(crate) fn expr_key(key: &'static str, src: Option<&str>) -> Result<Expr, KeyError> {
    let src = src.ok_or_else(|| key_err(key, "missing"))?;
    expr::parse(src).map_err(|e| key_err(key, e.to_string()))
}

/// Compiles a list of key expressions (`group_by`, `first_key`, ...).
pub(crate) fn expr_list(key: &'static str, srcs: Option<&[String]>) -> Result<Vec<Expr>, KeyError> {
    let srcs = srcs.ok_or_else(|| key_err(key, "missing"))?;
    srcs.iter()
        .map(|s| expr::parse(s).map_err(|e| key_err(key, format!("{s:?}: {e}"))))
        .collect()
}

pub(crate) fn duration_key(key: &'static str, v: Option<&str>) -> Result<Micros, KeyError> {
    let v = v.ok_or_else(|| key_err(key, "missing"))?;
    time::parse_duration(v)
        .ok_or_else(|| key_err(key, format!("{v:?} is not a duration (e.g. 60s, 5m, 1h)")))
}

/// Keys that only some kinds take: a key of another kind is an error (a typo or a rule of the
/// wrong kind, either way not what the author meant).
fn check_kind_keys(raw: &RawRule, kind: &str) -> Result<(), KeyError> {
    let present: [(&'static str, bool, &[&str]); 20] = [
        ("min_interval", raw.min_interval.is_some(), &["threshold"]),
        ("early", raw.early.is_some(), &["threshold"]),
        ("regularity", raw.regularity.is_some(), &["threshold"]),
        (
            "where",
            raw.filter.is_some(),
            &["match", "threshold", "baseline"],
        ),
        (
            "group_by",
            raw.group_by.is_some(),
            &["threshold", "baseline"],
        ),
        (
            "distinct",
            raw.distinct.is_some(),
            &["threshold", "baseline"],
        ),
        ("window", raw.window.is_some(), &["threshold"]),
        ("condition", raw.condition.is_some(), &["threshold"]),
        (
            "limit",
            raw.limit.is_some(),
            &["threshold", "sequence", "baseline"],
        ),
        (
            "period",
            raw.period.is_some(),
            &["threshold", "sequence", "baseline"],
        ),
        ("first", raw.first.is_some(), &["sequence"]),
        ("then", raw.then.is_some(), &["sequence"]),
        ("first_key", raw.first_key.is_some(), &["sequence"]),
        ("then_key", raw.then_key.is_some(), &["sequence"]),
        ("within", raw.within.is_some(), &["sequence"]),
        ("value", raw.value.is_some(), &["baseline"]),
        ("bucket", raw.bucket.is_some(), &["baseline"]),
        ("warmup", raw.warmup.is_some(), &["baseline"]),
        ("deviation", raw.deviation.is_some(), &["baseline"]),
        (
            "min_value",
            raw.min_value.is_some() || raw.alpha.is_some(),
            &["baseline"],
        ),
    ];
    for (key, is_set, kinds) in present {
        if is_set && !kinds.contains(&kind) {
            return Err(key_err(key, format!("not a key of a {kind} rule")));
        }
    }
    Ok(())
}

fn compile_meta(raw: &RawRule, file: &Path) -> Result<RuleMeta, KeyError> {
    let name = raw
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| key_err("name", "missing"))?;
    let kind = match raw.kind.as_deref() {
        Some("match") => "match",
        Some("threshold") => "threshold",
        Some("sequence") => "sequence",
        Some("baseline") => "baseline",
        Some(k) => {
            return Err(key_err(
                "kind",
                format!("{k:?} is not one of match, threshold, sequence, baseline"),
            ))
        }
        None => return Err(key_err("kind", "missing")),
    };
    let sid = raw
        .sid
        .filter(|s| *s > 0)
        .ok_or_else(|| key_err("sid", "missing (a positive signature id)"))?;
    let severity = match raw.severity {
        Some(s @ 1..=4) => s as u8,
        Some(s) => return Err(key_err("severity", format!("must be 1-4, got {s}"))),
        None => return Err(key_err("severity", "missing (1-4)")),
    };
    for m in &raw.mitre {
        let ok = m.starts_with('T')
            && m.len() >= 5
            && m[1..]
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(key_err(
                "mitre",
                format!("{m:?} is not an ATT&CK technique id (T1046, T1110.001)"),
            ));
        }
    }
    Ok(RuleMeta {
        signature: raw.signature.clone().unwrap_or_else(|| name.clone()),
        name,
        kind,
        sid,
        rev: raw.rev.unwrap_or(1),
        category: raw
            .category
            .clone()
            .ok_or_else(|| key_err("category", "missing"))?,
        severity,
        mitre: raw.mitre.clone(),
        file: file.to_path_buf(),
    })
}

/// Compiles one rule as written.
pub fn compile(raw: &RawRule, file: &Path) -> Result<Rule, KeyError> {
    let meta = compile_meta(raw, file)?;
    check_kind_keys(raw, meta.kind)?;
    let mut kind = match meta.kind {
        "match" => RuleKind::Match(matcher::MatchRule::compile(raw)?),
        "threshold" => RuleKind::Threshold(threshold::ThresholdRule::compile(raw)?),
        "sequence" => RuleKind::Sequence(sequence::SequenceRule::compile(raw)?),
        _ => RuleKind::Baseline(baseline::BaselineRule::compile(raw)?),
    };
    let event_types = match &kind {
        RuleKind::Match(m) => m.cond.required_event_types(),
        RuleKind::Threshold(t) => t.filter.required_event_types(),
        RuleKind::Baseline(b) => b.filter.required_event_types(),
        RuleKind::Sequence(q) => q
            .first
            .required_event_types()
            .zip(q.then.required_event_types())
            .map(|(mut a, b)| {
                a.extend(b);
                a
            }),
    };
    // The engine gives the rule only records of its event types: a filter's leading test of
    // the event type is then always true (a sequence has two filters: both kept whole).
    let filter = match &mut kind {
        RuleKind::Match(m) => Some(&mut m.cond),
        RuleKind::Threshold(t) => Some(&mut t.filter),
        RuleKind::Baseline(b) => Some(&mut b.filter),
        RuleKind::Sequence(_) => None,
    };
    if let (Some(f), Some(_)) = (filter, &event_types) {
        *f = std::mem::replace(f, Expr::Const(expr::Const::Null)).without_event_type_guard();
    }
    Ok(Rule {
        meta: Arc::new(meta),
        kind,
        event_types,
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line of `key = ...` inside a rule's table (the table's header line when absent). The
/// table runs from its `[[rule]]` header to the next header.
fn key_line(text: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let start = span.start.min(text.len());
    let mut off = start;
    for (i, l) in text[start..].split_inclusive('\n').enumerate() {
        let t = l.trim_start();
        if i > 0 && t.starts_with('[') {
            break;
        }
        if !key.is_empty() && t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return line_of(text, off);
        }
        off += l.len();
    }
    line_of(text, start)
}

impl RuleSet {
    /// Parses and compiles one file's text. Every error found is returned (one per rule at
    /// most), or the rules.
    pub fn parse(file: &Path, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            vec![RuleError {
                file: file.to_path_buf(),
                line,
                rule: String::new(),
                key: String::new(),
                msg: e.message().trim().to_string(),
            }]
        })?;
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for r in &raw.rule {
            let span = r.span();
            let raw = r.get_ref();
            if raw.enabled == Some(false) {
                continue;
            }
            match compile(raw, file) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(RuleError {
                    file: file.to_path_buf(),
                    line: key_line(text, span, e.key),
                    rule: raw.name.clone().unwrap_or_else(|| "(unnamed)".into()),
                    key: e.key.to_string(),
                    msg: e.msg,
                }),
            }
        }
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }

    /// Loads files (a directory stands for its `*.toml` files, sorted); names must be unique
    /// across all of them.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, Vec<RuleError>> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| vec![io_error(p, &e)])?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                v.sort();
                files.extend(v);
            } else {
                files.push(p.clone());
            }
        }
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        for f in &files {
            match std::fs::read_to_string(f) {
                Ok(text) => match RuleSet::parse(f, &text) {
                    Ok(rules) => set.rules.extend(rules),
                    Err(e) => errors.extend(e),
                },
                Err(e) => errors.push(io_error(f, &e)),
            }
        }
        set.check_unique(&mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn check_unique(&self, errors: &mut Vec<RuleError>) {
        let mut seen: std::collections::HashMap<&str, &Path> = Default::default();
        let mut sids: std::collections::HashMap<u64, &str> = Default::default();
        for r in &self.rules {
            let m = &r.meta;
            let dup_name = seen.insert(&m.name, &m.file).is_some();
            let dup_sid = sids.insert(m.sid, &m.name).filter(|n| *n != m.name);
            if dup_name || dup_sid.is_some() {
                let (key, msg) = match dup_sid {
                    Some(other) if !dup_name => {
                        ("sid", format!("{} is also the sid of rule {other}", m.sid))
                    }
                    _ => ("name", "defined twice".to_string()),
                };
                errors.push(RuleError {
                    file: m.file.clone(),
                    line: 1,
                    rule: m.name.clone(),
                    key: key.into(),
                    msg,
                });
            }
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn io_error(p: &Path, e: &std::io::Error) -> RuleError {
    RuleError {
        file: p.to_path_buf(),
        line: 0,
        rule: String::new(),
        key: String::new(),
        msg: format!("cannot read: {e}"),
    }
}

#[cfg(test)]
mod tests;
