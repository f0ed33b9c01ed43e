//! Threat intelligence: indicator files loaded into compact tables, matched against record
//! fields by the `intel()` function of rule expressions.
//!
//! Two file formats:
//! - Zeek's Intel framework format: tab-separated, a `#fields` header naming at least
//!   `indicator` and `indicator_type` (and usually `meta.source`); types `Intel::ADDR`,
//!   `Intel::SUBNET`, `Intel::DOMAIN`, `Intel::URL`, `Intel::CERT_HASH`, and our own
//!   `Intel::JA3` and `Intel::JA4`. Other Zeek types (EMAIL, FILE_HASH, ...) are counted as
//!   unsupported and skipped.
//! - Plain lists, one indicator per line, one type per file: named on the command line as
//!   `TYPE:PATH` (`domain:bad.txt`), or declared by a first line `#type DOMAIN`. `#` starts a
//!   comment line; the source is the file name.
//!
//! Domains match exactly and as parents (`evil.example` matches `a.b.evil.example`), case
//! insensitively. URLs are `host/path` as Zeek writes them (an `http://` or `https://` in
//! front is dropped), matched exactly, case insensitively.
//! Files are re-read when their modification time or size changes ([`IntelSet::reload_if_changed`]);
//! a file that cannot be read keeps its previous indicators, and is counted and logged, never
//! fatal.

mod load;
mod table;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

pub use load::{IntelFile, IntelLoadStats, MAX_INTEL_LINE};
use table::{AddrTable, SourceId, StrTable};

/// Indicator types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Addr,
    Subnet,
    Domain,
    Url,
    CertHash,
    Ja3,
    Ja4,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Addr,
        Kind::Subnet,
        Kind::Domain,
        Kind::Url,
        Kind::CertHash,
        Kind::Ja3,
        Kind::Ja4,
    ];

    /// Zeek's name (`ADDR`, ...), also accepted with the `Intel::` prefix and in lower case.
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.strip_prefix("Intel::").unwrap_or(s);
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Addr => "ADDR",
            Kind::Subnet => "SUBNET",
            Kind::Domain => "DOMAIN",
            Kind::Url => "URL",
            Kind::CertHash => "CERT_HASH",
            Kind::Ja3 => "JA3",
            Kind::Ja4 => "JA4",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of indicator kinds to look a value up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindMask(pub u8);

impl KindMask {
    pub const ADDRS: KindMask = KindMask(Kind::Addr.bit() | Kind::Subnet.bit());
    pub const ALL: KindMask = KindMask(0x7f);

    pub fn of(kinds: &[Kind]) -> KindMask {
        KindMask(kinds.iter().fold(0, |m, k| m | k.bit()))
    }

    pub fn has(self, k: Kind) -> bool {
        self.0 & k.bit() != 0
    }
}

/// One match: what matched, of which kind, from which source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    pub kind: Kind,
    pub indicator: String,
    pub source: String,
}

/// The loaded indicators of every configured file.
#[derive(Default)]
pub struct IntelSet {
    files: Vec<IntelFile>,
    sources: Vec<String>,
    strings: [StrTable; 5],
    addrs: AddrTable,
    stats: IntelLoadStats,
    /// Re-reads that failed (the previous indicators were kept).
    pub reload_errors: u64,
    /// Successful re-reads after a change.
    pub reloads: u64,
}

fn str_slot(k: Kind) -> Option<usize> {
    match k {
        Kind::Domain => Some(0),
        Kind::Url => Some(1),
        Kind::CertHash => Some(2),
        Kind::Ja3 => Some(3),
        Kind::Ja4 => Some(4),
        Kind::Addr | Kind::Subnet => None,
    }
}

impl IntelSet {
    /// Loads the files named by `specs` (`PATH` for Zeek format or a list with a `#type` line,
    /// `TYPE:PATH` for a plain list). Returns an error only for a spec naming an unknown type
    /// (bad usage); unreadable files are logged and counted in the stats.
    pub fn load(specs: &[String]) -> Result<IntelSet, String> {
        let files = specs
            .iter()
            .map(|s| IntelFile::from_spec(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut set = IntelSet {
            files,
            ..IntelSet::default()
        };
        set.rebuild();
        Ok(set)
    }

    /// Re-reads every file when any of them changed (modification time or size), keeping the
    /// previous indicators of a file that cannot be read. Returns whether anything changed.
    pub fn reload_if_changed(&mut self) -> bool {
        let changed = self.files.iter().any(|f| f.stamp() != f.loaded_stamp);
        if !changed {
            return false;
        }
        // A file that was read before and cannot be read now (being replaced, or deleted):
        // keep every previous indicator rather than drop that file's.
        if self
            .files
            .iter()
            .any(|f| f.loaded_stamp.is_some() && f.stamp().is_none())
        {
            self.reload_errors += 1;
            tracing::warn!("an intel file became unreadable; keeping the previous indicators");
            return false;
        }
        let errors_before = self.stats.unreadable_files;
        self.rebuild();
        if self.stats.unreadable_files > errors_before {
            self.reload_errors += 1;
        } else {
            self.reloads += 1;
        }
        true
    }

    fn rebuild(&mut self) {
        let started = std::time::Instant::now();
        let mut fresh = IntelSet::default();
        let mut stats = IntelLoadStats::default();
        let mut files = std::mem::take(&mut self.files);
        for f in &mut files {
            f.load_into(&mut fresh, &mut stats);
        }
        fresh.addrs.shrink();
        fresh.strings.iter_mut().for_each(StrTable::shrink);
        stats.load_seconds = started.elapsed().as_secs_f64();
        self.strings = fresh.strings;
        self.addrs = fresh.addrs;
        self.sources = fresh.sources;
        self.files = files;
        stats.heap_bytes = self.heap_bytes();
        self.stats = stats;
    }

    fn source_id(&mut self, source: &str) -> SourceId {
        // Few distinct sources: a linear scan from the end (the current file's) is enough.
        if let Some(i) = self.sources.iter().rposition(|s| s == source) {
            return i as SourceId;
        }
        if self.sources.len() >= usize::from(SourceId::MAX) {
            return SourceId::MAX - 1;
        }
        self.sources.push(source.to_string());
        (self.sources.len() - 1) as SourceId
    }

    /// Adds one indicator; `false` when its value is not valid for its kind.
    pub fn insert(&mut self, kind: Kind, value: &str, source: &str) -> bool {
        let value = value.trim();
        if value.is_empty() {
            return false;
        }
        let sid = self.source_id(source);
        match kind {
            Kind::Addr => match value.parse::<IpAddr>() {
                Ok(ip) => self.addrs.insert_addr(ip, sid),
                Err(_) => return false,
            },
            Kind::Subnet => match value.parse::<ipnet::IpNet>() {
                Ok(net) => self.addrs.insert_net(net, sid),
                Err(_) => return false,
            },
            Kind::Domain => {
                let d = value.trim_end_matches('.').to_ascii_lowercase();
                return !d.is_empty() && self.strings[0].insert(&d, sid);
            }
            Kind::Url => {
                // `host/path` as Zeek writes URLs; a scheme in any case is dropped, and a URL
                // that is nothing else is not one.
                let lowered = value.to_ascii_lowercase();
                let u = lowered
                    .strip_prefix("http://")
                    .or_else(|| lowered.strip_prefix("https://"))
                    .unwrap_or(&lowered);
                return !u.is_empty() && self.strings[1].insert(u, sid);
            }
            k => {
                let slot = str_slot(k).expect("string kind");
                return self.strings[slot].insert(&value.to_ascii_lowercase(), sid);
            }
        }
        true
    }

    fn hit(&self, kind: Kind, indicator: String, sid: SourceId) -> Hit {
        let source = self
            .sources
            .get(usize::from(sid))
            .cloned()
            .unwrap_or_default();
        Hit {
            kind,
            indicator,
            source,
        }
    }

    /// Looks an address up (exact ADDR first, then the longest SUBNET).
    pub fn lookup_ip(&self, ip: IpAddr) -> Option<Hit> {
        let (sid, net) = self.addrs.get(ip)?;
        Some(match net {
            None => self.hit(Kind::Addr, ip.to_string(), sid),
            Some(n) => self.hit(Kind::Subnet, n.to_string(), sid),
        })
    }

    /// Looks a string value up in the kinds of `mask`: an address string as ADDR/SUBNET, a
    /// domain exactly and by its parents, a certificate subject by its CN, others exactly.
    pub fn lookup_str(&self, mask: KindMask, value: &str) -> Option<Hit> {
        if value.is_empty() {
            return None;
        }
        if (mask.has(Kind::Addr) || mask.has(Kind::Subnet)) && !self.addrs_empty() {
            if let Ok(ip) = value.parse::<IpAddr>() {
                return self.lookup_ip(ip);
            }
        }
        let lowered;
        let v = if value.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = value.to_ascii_lowercase();
            lowered.as_str()
        } else {
            value
        };
        if mask.has(Kind::Domain) && !self.strings[0].is_empty() {
            let name = cert_cn(v).unwrap_or(v).trim_end_matches('.');
            if let Some(h) = self.lookup_domain(name) {
                return Some(h);
            }
        }
        for k in [Kind::Url, Kind::CertHash, Kind::Ja3, Kind::Ja4] {
            let t = &self.strings[str_slot(k).expect("string kind")];
            if mask.has(k) && !t.is_empty() {
                if let Some(sid) = t.get(v) {
                    return Some(self.hit(k, v.to_string(), sid));
                }
            }
        }
        None
    }

    fn lookup_domain(&self, name: &str) -> Option<Hit> {
        let t = &self.strings[0];
        let mut rest = name;
        loop {
            if let Some(sid) = t.get(rest) {
                return Some(self.hit(Kind::Domain, rest.to_string(), sid));
            }
            match rest.find('.') {
                Some(i) => rest = &rest[i + 1..],
                None => return None,
            }
        }
    }

    fn addrs_empty(&self) -> bool {
        self.addrs.addrs() + self.addrs.subnets() == 0
    }

    /// Indicators held, by kind.
    pub fn counts(&self) -> Vec<(Kind, usize)> {
        let mut v = vec![
            (Kind::Addr, self.addrs.addrs()),
            (Kind::Subnet, self.addrs.subnets()),
        ];
        for k in [
            Kind::Domain,
            Kind::Url,
            Kind::CertHash,
            Kind::Ja3,
            Kind::Ja4,
        ] {
            v.push((k, self.strings[str_slot(k).expect("string kind")].len()));
        }
        v
    }

    /// Indicators held (asked for every `intel()` of every record: no allocation).
    pub fn len(&self) -> usize {
        self.addrs.addrs()
            + self.addrs.subnets()
            + self.strings.iter().map(StrTable::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes of the tables (see the tables' `heap_bytes` for how they are counted).
    pub fn heap_bytes(&self) -> usize {
        self.addrs.heap_bytes()
            + self.strings.iter().map(StrTable::heap_bytes).sum::<usize>()
            + self
                .sources
                .iter()
                .map(|s| s.capacity() + 24)
                .sum::<usize>()
    }

    pub fn stats(&self) -> &IntelLoadStats {
        &self.stats
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

/// `CN=name` inside a certificate subject (`C=US, O=Acme, CN=evil.example`).
fn cert_cn(v: &str) -> Option<&str> {
    let i = v.find("cn=")?;
    if i > 0 && !matches!(v.as_bytes()[i - 1], b' ' | b',' | b'/') {
        return None;
    }
    let rest = &v[i + 3..];
    Some(rest.split([',', '/']).next().unwrap_or(rest).trim())
}

/// A file's identity for change detection.
pub(crate) type Stamp = Option<(SystemTime, u64)>;

#[cfg(test)]
mod tests;
