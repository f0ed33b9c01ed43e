//! Reading indicator files (Zeek Intel format and plain lists) into an [`IntelSet`].

use std::io::BufReader;
use std::path::PathBuf;

use super::{IntelSet, Kind, Stamp};
use crate::lines::{self, Line};

/// The longest indicator line read (a URL indicator with its Zeek columns is well under
/// this); longer lines, like lines that are not UTF-8, are counted as malformed and skipped.
pub const MAX_INTEL_LINE: usize = 64 << 10;

/// One configured indicator file.
#[derive(Debug, Clone)]
pub struct IntelFile {
    pub path: PathBuf,
    /// The type of every line of a plain list named `TYPE:PATH`; `None`: Zeek format, or a
    /// list whose first line says `#type TYPE`.
    pub list_kind: Option<Kind>,
    pub(super) loaded_stamp: Stamp,
}

/// What the last (re)load read.
#[derive(Debug, Clone, Default)]
pub struct IntelLoadStats {
    pub files: usize,
    pub unreadable_files: usize,
    pub indicators: usize,
    /// Lines whose value is not valid for their type (a bad address, ...).
    pub invalid: usize,
    /// Lines of a Zeek type we do not match (EMAIL, FILE_HASH, ...).
    pub unsupported: usize,
    /// Lines without the columns the header promised, not UTF-8, or over
    /// [`MAX_INTEL_LINE`] bytes.
    pub malformed: usize,
    pub load_seconds: f64,
    pub heap_bytes: usize,
}

impl IntelFile {
    /// `PATH` or `TYPE:PATH`.
    pub fn from_spec(spec: &str) -> Result<IntelFile, String> {
        let (kind, path) = match spec.split_once(':') {
            Some((k, p)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                match Kind::parse(k) {
                    Some(kind) => (Some(kind), p),
                    None => {
                        return Err(format!(
                            "intel: {spec}: unknown indicator type {k:?} (ADDR, SUBNET, DOMAIN, URL, CERT_HASH, JA3, JA4)"
                        ))
                    }
                }
            }
            _ => (None, spec),
        };
        Ok(IntelFile {
            path: PathBuf::from(path),
            list_kind: kind,
            loaded_stamp: None,
        })
    }

    pub(super) fn stamp(&self) -> Stamp {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    pub(super) fn load_into(&mut self, set: &mut IntelSet, stats: &mut IntelLoadStats) {
        stats.files += 1;
        let stamp = self.stamp();
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                stats.unreadable_files += 1;
                tracing::warn!(path = %self.path.display(), error = %e, "intel file unreadable; skipped");
                // Not recorded as loaded: a later reload tries again.
                self.loaded_stamp = None;
                return;
            }
        };
        let source = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut reader = Reader {
            list_kind: self.list_kind,
            columns: None,
            source,
        };
        let mut buf = BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::new();
        loop {
            match lines::read_line(&mut buf, &mut line, MAX_INTEL_LINE) {
                Ok(Line::Eof) => break,
                Ok(Line::TooLong) => stats.malformed += 1,
                Ok(Line::Line) => match std::str::from_utf8(&line) {
                    Ok(text) => reader.line(text.trim_end_matches(['\n', '\r']), set, stats),
                    Err(_) => stats.malformed += 1,
                },
                Err(e) => {
                    stats.unreadable_files += 1;
                    tracing::warn!(path = %self.path.display(), error = %e, "intel file read error");
                    break;
                }
            }
        }
        self.loaded_stamp = stamp;
    }
}

/// Column positions of a Zeek file's `#fields` header.
struct Columns {
    indicator: usize,
    kind: usize,
    source: Option<usize>,
}

struct Reader {
    list_kind: Option<Kind>,
    columns: Option<Columns>,
    source: String,
}

impl Reader {
    fn line(&mut self, line: &str, set: &mut IntelSet, stats: &mut IntelLoadStats) {
        if let Some(h) = line.strip_prefix('#') {
            self.header(h);
            return;
        }
        if line.trim().is_empty() {
            return;
        }
        if let Some(kind) = self.list_kind {
            let v = line.split('#').next().unwrap_or("").trim();
            if !v.is_empty() {
                count(set.insert(kind, v, &self.source), stats);
            }
            return;
        }
        let Some(c) = &self.columns else {
            stats.malformed += 1;
            return;
        };
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(ind), Some(ty)) = (cols.get(c.indicator), cols.get(c.kind)) else {
            stats.malformed += 1;
            return;
        };
        let Some(kind) = Kind::parse(ty) else {
            stats.unsupported += 1;
            return;
        };
        let source = c
            .source
            .and_then(|i| cols.get(i))
            .filter(|s| !s.is_empty() && **s != "-")
            .copied()
            .unwrap_or(self.source.as_str());
        let source = source.to_string();
        count(set.insert(kind, ind, &source), stats);
    }

    fn header(&mut self, h: &str) {
        if let Some(rest) = h.strip_prefix("fields") {
            let names: Vec<&str> = rest.split(['\t', ' ']).filter(|s| !s.is_empty()).collect();
            let pos = |n: &str| names.iter().position(|x| *x == n);
            self.columns = match (pos("indicator"), pos("indicator_type")) {
                (Some(indicator), Some(kind)) => Some(Columns {
                    indicator,
                    kind,
                    source: pos("meta.source"),
                }),
                _ => None,
            };
            self.list_kind = None;
        } else if let Some(rest) = h.trim().strip_prefix("type") {
            if self.columns.is_none() {
                if let Some(k) = Kind::parse(rest.trim_start_matches([':', ' ', '\t']).trim()) {
                    self.list_kind = Some(k);
                }
            }
        }
    }
}

fn count(ok: bool, stats: &mut IntelLoadStats) {
    if ok {
        stats.indicators += 1;
    } else {
        stats.invalid += 1;
    }
}
