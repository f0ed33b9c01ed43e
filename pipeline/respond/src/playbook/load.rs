//! Reading and checking playbook files. The TOML is walked by hand rather than deserialised
//! with serde: serde stops at the first problem and does not say which `[[playbook]]` it was
//! in, while `pipeline check-playbooks` reports every error, each as one line naming the file,
//! the playbook and the field.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;
use toml::{Table, Value as Toml};

use super::template;
use super::{
    BlockStep, CondValue, Condition, NotifyStep, Op, Playbook, Scope, Side, Step, TagStep, Trigger,
};
use crate::alert::is_token;

/// Longest block a playbook may ask for (automation never blocks for good).
pub const MAX_BLOCK: Duration = Duration::from_secs(30 * 86_400);
/// Largest playbook file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Narrowest prefixes (widest blocks) a playbook may ask for.
const MIN_PREFIX_V4: i64 = 16;
const MIN_PREFIX_V6: i64 = 32;

/// One problem in a playbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookError {
    pub file: String,
    /// The playbook's name, or `#N` (1-based) when it has none; empty for file-level errors.
    pub playbook: String,
    /// The key, as a path (`step[2].duration`); empty for file-level errors.
    pub field: String,
    pub msg: String,
}

impl fmt::Display for PlaybookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if !self.playbook.is_empty() {
            write!(f, "playbook {}: ", self.playbook)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.msg)
    }
}

/// Reads every playbook of `paths` (files, or folders whose `*.toml` files are read in name
/// order). All errors, or the playbooks.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Playbook>, Vec<PlaybookError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut found: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(file_error(p, format!("cannot read the folder: {e}"))),
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    for f in &files {
        match load_file(f) {
            Ok(pbs) => out.extend(pbs),
            Err(e) => errors.extend(e),
        }
    }
    let mut names = HashSet::new();
    for pb in &out {
        if !names.insert(pb.name.clone()) {
            errors.push(PlaybookError {
                file: pb.file.clone(),
                playbook: pb.name.clone(),
                field: "name".into(),
                msg: "the same name as another playbook".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn file_error(p: &Path, msg: String) -> PlaybookError {
    PlaybookError {
        file: p.display().to_string(),
        playbook: String::new(),
        field: String::new(),
        msg,
    }
}

/// Reads one file.
pub fn load_file(path: &Path) -> Result<Vec<Playbook>, Vec<PlaybookError>> {
    let fail = |msg: String| vec![file_error(path, msg)];
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let table: Table = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let msg = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        fail(match line {
            Some(l) => format!("line {l}: {msg}"),
            None => msg,
        })
    })?;
    let file = path.display().to_string();
    let mut errors = Vec::new();
    for key in table.keys().filter(|k| *k != "playbook") {
        errors.push(PlaybookError {
            file: file.clone(),
            playbook: String::new(),
            field: key.clone(),
            msg: "unknown key (a file holds [[playbook]] tables)".into(),
        });
    }
    let list = match table.get("playbook") {
        Some(Toml::Array(a)) => a.as_slice(),
        Some(_) => {
            errors.push(file_error(
                path,
                "playbook: must be [[playbook]] tables".into(),
            ));
            &[]
        }
        None => {
            errors.push(file_error(path, "no [[playbook]] in the file".into()));
            &[]
        }
    };
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let mut r = Reader::new(&file, i, v);
        let pb = playbook(&mut r);
        errors.append(&mut r.errors);
        if let Some(pb) = pb {
            out.push(pb);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Walks one `[[playbook]]`, collecting errors.
struct Reader<'a> {
    file: &'a str,
    name: String,
    errors: Vec<PlaybookError>,
    root: Option<&'a Table>,
}

impl<'a> Reader<'a> {
    fn new(file: &'a str, index: usize, v: &'a Toml) -> Reader<'a> {
        let root = v.as_table();
        let name = root
            .and_then(|t| t.get("name"))
            .and_then(Toml::as_str)
            .map_or_else(|| format!("#{}", index + 1), str::to_string);
        Reader {
            file,
            name,
            errors: Vec::new(),
            root,
        }
    }

    fn err(&mut self, field: &str, msg: impl Into<String>) {
        self.errors.push(PlaybookError {
            file: self.file.to_string(),
            playbook: self.name.clone(),
            field: field.to_string(),
            msg: msg.into(),
        });
    }

    /// Reports keys of `t` (at `path`) not in `known`.
    fn known(&mut self, t: &Table, path: &str, known: &[&str]) {
        for k in t.keys().filter(|k| !known.contains(&k.as_str())) {
            let field = join(path, k);
            self.err(&field, format!("unknown key (known: {})", known.join(", ")));
        }
    }

    fn str(&mut self, t: &Table, path: &str, key: &str) -> Option<String> {
        match t.get(key)? {
            Toml::String(s) => Some(s.clone()),
            _ => {
                self.err(&join(path, key), "must be a string");
                None
            }
        }
    }

    fn int(&mut self, t: &Table, path: &str, key: &str, lo: i64, hi: i64) -> Option<i64> {
        match t.get(key)? {
            Toml::Integer(n) if (lo..=hi).contains(n) => Some(*n),
            Toml::Integer(n) => {
                self.err(&join(path, key), format!("must be {lo} to {hi}, got {n}"));
                None
            }
            _ => {
                self.err(&join(path, key), "must be an integer");
                None
            }
        }
    }

    fn bool(&mut self, t: &Table, path: &str, key: &str) -> Option<bool> {
        match t.get(key)? {
            Toml::Boolean(b) => Some(*b),
            _ => {
                self.err(&join(path, key), "must be true or false");
                None
            }
        }
    }

    fn duration(&mut self, t: &Table, path: &str, key: &str, max: Duration) -> Option<Duration> {
        let s = self.str(t, path, key)?;
        let d = pipeline_detect::time::parse_duration(&s)
            .and_then(|us| u64::try_from(us).ok())
            .map(Duration::from_micros);
        match d {
            Some(d) if d <= max => Some(d),
            Some(_) => {
                self.err(
                    &join(path, key),
                    format!("at most {}s, got {s:?}", max.as_secs()),
                );
                None
            }
            None => {
                self.err(
                    &join(path, key),
                    format!("must be a duration like \"500ms\", \"30s\", \"10m\", \"1h\", \"7d\", got {s:?}"),
                );
                None
            }
        }
    }

    fn list<T>(
        &mut self,
        t: &Table,
        path: &str,
        key: &str,
        each: impl Fn(&Toml) -> Option<T>,
        what: &str,
    ) -> Vec<T> {
        let Some(v) = t.get(key) else {
            return Vec::new();
        };
        let Some(items) = v.as_array() else {
            self.err(&join(path, key), format!("must be a list of {what}"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match each(item) {
                Some(x) => out.push(x),
                None => self.err(
                    &format!("{}[{i}]", join(path, key)),
                    format!("must be {what}"),
                ),
            }
        }
        out
    }

    fn table<'t>(&mut self, t: &'t Table, path: &str, key: &str) -> Option<&'t Table> {
        match t.get(key)? {
            Toml::Table(x) => Some(x),
            _ => {
                self.err(&join(path, key), "must be a table");
                None
            }
        }
    }

    fn side(&mut self, t: &Table, path: &str, key: &str) -> Side {
        match self.str(t, path, key).as_deref() {
            None | Some("src") => Side::Src,
            Some("dest") => Side::Dest,
            Some(other) => {
                self.err(
                    &join(path, key),
                    format!("must be \"src\" or \"dest\", got {other:?}"),
                );
                Side::Src
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// TOML (a body template, a field value) as JSON; dates become their text.
pub fn to_json(v: &Toml) -> Value {
    match v {
        Toml::String(s) => Value::String(s.clone()),
        Toml::Integer(i) => Value::from(*i),
        Toml::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Toml::Boolean(b) => Value::Bool(*b),
        Toml::Datetime(d) => Value::String(d.to_string()),
        Toml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Toml::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

fn playbook(r: &mut Reader<'_>) -> Option<Playbook> {
    let Some(root) = r.root else {
        r.err("", "must be a table");
        return None;
    };
    r.known(
        root,
        "",
        &[
            "name",
            "description",
            "enabled",
            "dry_run",
            "trigger",
            "condition",
            "step",
        ],
    );
    match root.get("name").and_then(Toml::as_str) {
        Some(n) if is_token(n) => {}
        Some(n) => r.err(
            "name",
            format!("must be letters, digits, '-' or '_', got {n:?}"),
        ),
        None => r.err("name", "missing"),
    }
    r.str(root, "", "description");
    let enabled = r.bool(root, "", "enabled").unwrap_or(true);
    let dry_run = r.bool(root, "", "dry_run").unwrap_or(false);
    let trigger = match r.table(root, "", "trigger") {
        Some(t) => trigger(r, t),
        None => {
            if !root.contains_key("trigger") {
                r.err(
                    "trigger",
                    "missing (a playbook without one would run on every alert)",
                );
            }
            Trigger::default()
        }
    };
    let conditions = tables(r, root, "condition")
        .into_iter()
        .filter_map(|(path, t)| condition(r, &path, t))
        .collect();
    let step_tables = tables(r, root, "step");
    if step_tables.is_empty() && !root.contains_key("step") {
        r.err(
            "step",
            "missing: a playbook needs at least one [[playbook.step]]",
        );
    }
    let steps: Vec<Step> = step_tables
        .into_iter()
        .filter_map(|(path, t)| step(r, &path, t))
        .collect();
    if !r.errors.is_empty() {
        return None;
    }
    Some(Playbook {
        name: r.name.clone(),
        file: r.file.to_string(),
        enabled,
        dry_run,
        trigger,
        conditions,
        steps,
    })
}

/// The tables of an array of tables `key`, with their paths (`step[0]`).
fn tables<'a>(r: &mut Reader<'a>, root: &'a Table, key: &str) -> Vec<(String, &'a Table)> {
    match root.get(key) {
        None => Vec::new(),
        Some(Toml::Array(a)) => {
            let mut out = Vec::new();
            for (i, v) in a.iter().enumerate() {
                match v.as_table() {
                    Some(t) => out.push((format!("{key}[{i}]"), t)),
                    None => r.err(&format!("{key}[{i}]"), "must be a table"),
                }
            }
            out
        }
        Some(_) => {
            r.err(key, format!("must be [[playbook.{key}]] tables"));
            Vec::new()
        }
    }
}

fn trigger(r: &mut Reader<'_>, t: &Table) -> Trigger {
    let p = "trigger";
    r.known(
        t,
        p,
        &[
            "signature_ids",
            "categories",
            "rules",
            "min_severity",
            "fields",
        ],
    );
    let signature_ids = r.list(
        t,
        p,
        "signature_ids",
        |v| v.as_integer().and_then(|n| u64::try_from(n).ok()),
        "non-negative integers",
    );
    let text = |v: &Toml| v.as_str().map(str::to_string);
    let categories = r.list(t, p, "categories", text, "strings");
    let rules = r.list(t, p, "rules", text, "strings");
    let min_severity = r.int(t, p, "min_severity", 1, 255).map(|n| n as u64);
    let mut fields = Vec::new();
    if let Some(f) = r.table(t, p, "fields") {
        for (path, v) in f {
            let allowed = match v {
                Toml::Array(a) => a.iter().map(to_json).collect(),
                Toml::Table(_) => {
                    r.err(
                        &format!("trigger.fields.{path}"),
                        "must be a value or a list of values",
                    );
                    continue;
                }
                other => vec![to_json(other)],
            };
            fields.push((path.clone(), allowed));
        }
    }
    Trigger {
        signature_ids,
        categories,
        rules,
        min_severity,
        fields,
    }
}

fn op_of(s: &str) -> Option<Op> {
    Some(match s {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "in" => Op::In,
        "not_in" => Op::NotIn,
        "in_cidr" => Op::InCidr,
        "not_in_cidr" => Op::NotInCidr,
        "exists" => Op::Exists,
        "absent" => Op::Absent,
        "contains" => Op::Contains,
        "matches" => Op::Matches,
        _ => return None,
    })
}

fn condition(r: &mut Reader<'_>, p: &str, t: &Table) -> Option<Condition> {
    r.known(t, p, &["field", "op", "value"]);
    let field = r.str(t, p, "field");
    if field.is_none() && !t.contains_key("field") {
        r.err(&join(p, "field"), "missing");
    }
    let op_text = r.str(t, p, "op").unwrap_or_default();
    let Some(op) = op_of(&op_text) else {
        r.err(
            &join(p, "op"),
            format!("must be one of ==, !=, <, <=, >, >=, in, not_in, in_cidr, not_in_cidr, exists, absent, contains, matches; got {op_text:?}"),
        );
        return None;
    };
    let vp = join(p, "value");
    let value = t.get("value");
    let value = match (op, value) {
        (Op::Exists | Op::Absent, None) => CondValue::None,
        (Op::Exists | Op::Absent, Some(_)) => {
            r.err(&vp, format!("{op_text} takes no value"));
            return None;
        }
        (_, None) => {
            r.err(&vp, "missing");
            return None;
        }
        (Op::In | Op::NotIn, Some(Toml::Array(a))) => {
            CondValue::List(a.iter().map(to_json).collect())
        }
        (Op::InCidr | Op::NotInCidr, Some(v)) => {
            let items: Vec<&Toml> = match v {
                Toml::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            let mut nets = Vec::new();
            for (i, x) in items.iter().enumerate() {
                match x.as_str().and_then(|s| s.parse::<IpNet>().ok()) {
                    Some(n) => nets.push(n),
                    None => r.err(&format!("{vp}[{i}]"), "must be a CIDR like \"10.0.0.0/8\""),
                }
            }
            CondValue::Nets(nets)
        }
        (Op::Matches, Some(Toml::String(s))) => {
            match regex::RegexBuilder::new(s).size_limit(1 << 20).build() {
                Ok(re) => CondValue::Regex(re),
                Err(e) => {
                    let first = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    r.err(&vp, format!("not a regular expression: {first}"));
                    return None;
                }
            }
        }
        (Op::Lt | Op::Le | Op::Gt | Op::Ge, Some(v @ (Toml::Integer(_) | Toml::Float(_)))) => {
            CondValue::One(to_json(v))
        }
        (Op::Contains, Some(Toml::String(s))) => CondValue::One(Value::String(s.clone())),
        (Op::Eq | Op::Ne, Some(v)) if !v.is_table() && !v.is_array() => CondValue::One(to_json(v)),
        (_, Some(_)) => {
            let want = match op {
                Op::In | Op::NotIn => "a list",
                Op::Matches | Op::Contains => "a string",
                Op::Lt | Op::Le | Op::Gt | Op::Ge => "a number",
                _ => "a string, number or boolean",
            };
            r.err(&vp, format!("must be {want} for {op_text}"));
            return None;
        }
    };
    Some(Condition {
        field: field?,
        op,
        value,
    })
}

fn step(r: &mut Reader<'_>, p: &str, t: &Table) -> Option<Step> {
    let kind = r.str(t, p, "kind");
    match kind.as_deref() {
        Some("block") => block(r, p, t).map(Step::Block),
        Some("notify") => notify(r, p, t).map(Step::Notify),
        Some("tag") => tag(r, p, t).map(Step::Tag),
        Some(k) => {
            r.err(
                &join(p, "kind"),
                format!("must be block, notify or tag, got {k:?}"),
            );
            None
        }
        None => {
            if !t.contains_key("kind") {
                r.err(&join(p, "kind"), "missing (block, notify or tag)");
            }
            None
        }
    }
}

fn block(r: &mut Reader<'_>, p: &str, t: &Table) -> Option<BlockStep> {
    r.known(
        t,
        p,
        &[
            "kind",
            "target",
            "prefix_v4",
            "prefix_v6",
            "scope",
            "duration",
        ],
    );
    let target = r.side(t, p, "target");
    let prefix_v4 = r.int(t, p, "prefix_v4", MIN_PREFIX_V4, 32).unwrap_or(32) as u8;
    let prefix_v6 = r.int(t, p, "prefix_v6", MIN_PREFIX_V6, 128).unwrap_or(128) as u8;
    let scope = match r.str(t, p, "scope").as_deref() {
        None | Some("origin") => Scope::Origin,
        Some("all") => Scope::All,
        Some(s) => {
            r.err(
                &join(p, "scope"),
                format!("must be \"origin\" or \"all\", got {s:?}"),
            );
            Scope::Origin
        }
    };
    if !t.contains_key("duration") {
        r.err(
            &join(p, "duration"),
            "missing (how long the block lasts, at most 30d)",
        );
    }
    let duration = r.duration(t, p, "duration", MAX_BLOCK)?;
    if duration < Duration::from_secs(1) {
        r.err(&join(p, "duration"), "at least 1s");
        return None;
    }
    Some(BlockStep {
        target,
        prefix_v4,
        prefix_v6,
        scope,
        duration,
    })
}

fn notify(r: &mut Reader<'_>, p: &str, t: &Table) -> Option<NotifyStep> {
    r.known(
        t,
        p,
        &[
            "kind",
            "url",
            "timeout",
            "retries",
            "backoff",
            "max_backoff",
            "headers",
            "body",
        ],
    );
    let url = r.str(t, p, "url");
    match url.as_deref() {
        None => r.err(&join(p, "url"), "missing"),
        Some(u)
            if u.parse::<hyper::Uri>().is_err()
                || !(u.starts_with("http://") || u.starts_with("https://")) =>
        {
            r.err(
                &join(p, "url"),
                format!("must be an http:// or https:// URL, got {u:?}"),
            )
        }
        _ => {}
    }
    let minute = Duration::from_secs(60);
    let timeout = r
        .duration(t, p, "timeout", minute)
        .unwrap_or(Duration::from_secs(5));
    let retries = r.int(t, p, "retries", 0, 10).unwrap_or(3) as u32;
    let backoff = r
        .duration(t, p, "backoff", minute)
        .unwrap_or(Duration::from_millis(500));
    let max_backoff = r
        .duration(t, p, "max_backoff", 10 * minute)
        .unwrap_or(Duration::from_secs(30));
    let mut headers = Vec::new();
    if let Some(h) = r.table(t, p, "headers") {
        for (k, v) in h {
            let field = format!("{}.{k}", join(p, "headers"));
            let ok_name = hyper::header::HeaderName::from_bytes(k.as_bytes()).is_ok();
            match v.as_str() {
                Some(s) if ok_name && hyper::header::HeaderValue::from_str(s).is_ok() => {
                    headers.push((k.clone(), s.to_string()))
                }
                _ => r.err(&field, "must be a header name with a string value"),
            }
        }
    }
    let body = match t.get("body") {
        Some(v @ Toml::Table(_)) => {
            let json = to_json(v);
            if let Err(e) = template::check(&json) {
                r.err(&join(p, "body"), e);
            }
            json
        }
        Some(_) => {
            r.err(
                &join(p, "body"),
                "must be a table (the JSON object to send)",
            );
            Value::Null
        }
        None => {
            r.err(
                &join(p, "body"),
                "missing (the JSON object to send, with {{ field }} placeholders)",
            );
            Value::Null
        }
    };
    Some(NotifyStep {
        url: url?,
        timeout,
        retries,
        backoff,
        max_backoff,
        headers,
        body,
    })
}

fn tag(r: &mut Reader<'_>, p: &str, t: &Table) -> Option<TagStep> {
    r.known(t, p, &["kind", "host", "label", "expire"]);
    let host = r.side(t, p, "host");
    let label = r.str(t, p, "label");
    match label.as_deref() {
        None => r.err(&join(p, "label"), "missing"),
        Some(l)
            if l.is_empty()
                || l.len() > 64
                || !l
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            r.err(
                &join(p, "label"),
                format!("must be 1-64 letters, digits, '-', '_', '.', ':', got {l:?}"),
            )
        }
        _ => {}
    }
    if !t.contains_key("expire") {
        r.err(
            &join(p, "expire"),
            "missing (how long the tag holds, at most 365d)",
        );
    }
    let expire = r.duration(t, p, "expire", Duration::from_secs(365 * 86_400))?;
    Some(TagStep {
        host,
        label: label?,
        expire,
    })
}
