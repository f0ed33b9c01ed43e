//! Enrichment in the exporter: facts about each record's two addresses (`pipeline-enrich`:
//! GeoIP country and city, ASN, the operator's networks) added as the flat fields
//! `src_country`, `src_city`, `src_asn`, `src_as_org`, `src_network` and the same with `dest_`.
//!
//! It runs on the exporter's fan-out thread, never on the packet cores. For each record
//! [`Enrich::prepare`] looks both addresses up once and renders what every output needs into
//! buffers of its own: the EVE fields (appended to the record's JSON line, so the NATS payload
//! carries them too) and the ClickHouse columns (appended after the row's other columns). That
//! keeps the EVE writer and the row encoders unaware of enrichment.
//!
//! EVE: a field whose value is unknown is left out (as Suricata leaves out what it does not
//! know), so a record without enrichment is unchanged. ClickHouse: the columns are always there
//! (migration `0005_enrich.sql`), `''` and `0` when unknown.
//!
//! The files are re-read when they change (a thread polls them every
//! `enrich.reload_interval` seconds); the fan-out takes a new snapshot of the data when the
//! enricher's generation moves, which costs one atomic load per record otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pipeline_enrich::{AddrFacts, Enricher, Paths, Snapshot, Watcher};
use serde::{Deserialize, Serialize};

use super::clickhouse::rows::RowBuf;
use super::FlowMeta;
use crate::config::ConfigError;

/// ClickHouse columns added to `flows`, `http_requests` and `dns_queries`, in row order.
pub const COLUMNS: [&str; 10] = [
    "src_country",
    "src_city",
    "src_asn",
    "src_as_org",
    "src_network",
    "dest_country",
    "dest_city",
    "dest_asn",
    "dest_as_org",
    "dest_network",
];

/// `[enrich]`: where the data come from. Empty paths mean those fields stay empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichSection {
    /// MaxMind-format City (or Country) database: `*_country`, `*_city`.
    pub geoip_db: String,
    /// MaxMind-format ASN database: `*_asn`, `*_as_org`.
    pub asn_db: String,
    /// The operator's networks, CSV `cidr,name[,role[,site]]`: `*_network`.
    pub networks: String,
    /// Seconds between checks of the files for a new version.
    pub reload_interval: u64,
}

impl Default for EnrichSection {
    fn default() -> Self {
        EnrichSection {
            geoip_db: String::new(),
            asn_db: String::new(),
            networks: String::new(),
            reload_interval: 1,
        }
    }
}

impl EnrichSection {
    /// Range checks (the files themselves are checked by [`Enrich::open`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.reload_interval) {
            return Err(ConfigError {
                key: "enrich.reload_interval".into(),
                msg: format!("must be between 1 and 3600, got {}", self.reload_interval),
            });
        }
        Ok(())
    }

    fn paths(&self) -> Paths {
        let p = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Paths {
            geoip_db: p(&self.geoip_db),
            asn_db: p(&self.asn_db),
            networks: p(&self.networks),
        }
    }
}

/// Loads the configured files once: what `check-config` runs. A damaged file is a
/// [`ConfigError`] naming its key (`enrich.geoip_db: /x.mmdb: damaged MMDB file: ...`).
pub fn check(cfg: &EnrichSection) -> Result<(), ConfigError> {
    Enricher::open(&cfg.paths()).map(drop).map_err(load_error)
}

fn load_error(e: pipeline_enrich::LoadError) -> ConfigError {
    ConfigError {
        key: format!("enrich.{}", e.key),
        msg: format!("{}: {}", e.path.display(), e.msg),
    }
}

/// The enricher as the fan-out uses it, with its scratch buffers.
pub struct Enrich {
    live: Option<Live>,
    eve: Vec<u8>,
    row: Vec<u8>,
    empty_row: Vec<u8>,
}

struct Live {
    enricher: Arc<Enricher>,
    snap: Snapshot,
    _watch: Watcher,
}

impl Enrich {
    /// Loads the configured files and starts watching them; with none configured, every
    /// record gets empty columns and no EVE field at no lookup cost.
    pub fn open(cfg: &EnrichSection) -> Result<Enrich, ConfigError> {
        let enricher = Enricher::open(&cfg.paths()).map_err(load_error)?;
        let mut empty_row = Vec::new();
        encode_row(&mut empty_row, &AddrFacts::default(), &AddrFacts::default());
        let live = if enricher.is_configured() {
            let enricher = Arc::new(enricher);
            let watch = enricher
                .watch(Duration::from_secs(cfg.reload_interval))
                .map_err(|e| ConfigError {
                    key: "enrich".into(),
                    msg: format!("cannot start the reload thread: {e}"),
                })?;
            Some(Live {
                snap: enricher.snapshot(),
                enricher,
                _watch: watch,
            })
        } else {
            None
        };
        Ok(Enrich {
            live,
            eve: Vec::with_capacity(256),
            row: Vec::with_capacity(128),
            empty_row,
        })
    }

    /// Looks up the record's addresses and renders the EVE fields (when `eve`) and the
    /// ClickHouse columns (when `row`) for [`Enrich::eve_fields`] and [`Enrich::row`].
    pub fn prepare(&mut self, meta: &FlowMeta, eve: bool, row: bool) {
        self.eve.clear();
        self.row.clear();
        let Some(live) = &mut self.live else {
            return;
        };
        if !eve && !row {
            return;
        }
        if live.enricher.generation() != live.snap.generation() {
            live.snap = live.enricher.snapshot();
        }
        let src = live.snap.lookup(addr(&meta.src, meta.is_v6));
        let dst = live.snap.lookup(addr(&meta.dst, meta.is_v6));
        if eve {
            eve_fields(&mut self.eve, "src_", &src);
            eve_fields(&mut self.eve, "dest_", &dst);
        }
        if row {
            encode_row(&mut self.row, &src, &dst);
        }
    }

    /// Appends the prepared EVE fields to a JSON line ending in `}\n` (a no-op when there are
    /// none).
    pub fn append_eve(&self, line: &mut Vec<u8>) {
        if self.eve.is_empty() || !line.ends_with(b"}\n") {
            return;
        }
        line.truncate(line.len() - 2);
        line.extend_from_slice(&self.eve);
        line.extend_from_slice(b"}\n");
    }

    /// The prepared ClickHouse columns, in [`COLUMNS`] order (empty values when none).
    pub fn row(&self) -> &[u8] {
        if self.live.is_some() {
            &self.row
        } else {
            &self.empty_row
        }
    }

    /// `(reloads, refused reloads, lookup errors)` so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        self.live.as_ref().map_or((0, 0, 0), |l| {
            let s = l.enricher.stats();
            (
                s.reloads.load(Ordering::Relaxed),
                s.reload_failures.load(Ordering::Relaxed),
                s.lookup_errors.load(Ordering::Relaxed),
            )
        })
    }
}

fn addr(a: &[u8; 16], is_v6: bool) -> IpAddr {
    if is_v6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    }
}

/// `,"src_country":"GB",...` for the fields that have a value.
fn eve_fields(out: &mut Vec<u8>, side: &str, f: &AddrFacts<'_>) {
    for (name, value) in [
        ("country", f.country),
        ("city", f.city),
        ("asn", ""),
        ("as_org", f.as_org),
        ("network", f.network_name()),
    ] {
        if name == "asn" && f.asn != 0 {
            eve_key(out, side, name);
            out.extend_from_slice(itoa::Buffer::new().format(f.asn).as_bytes());
        } else if !value.is_empty() {
            eve_key(out, side, name);
            // Escaped by serde_json: names from a database are not trusted to be plain.
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
}

fn eve_key(out: &mut Vec<u8>, side: &str, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(side.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// The ten columns of [`COLUMNS`] as RowBinary.
fn encode_row(out: &mut Vec<u8>, src: &AddrFacts<'_>, dst: &AddrFacts<'_>) {
    let mut b = RowBuf(out);
    for f in [src, dst] {
        b.str(f.country);
        b.str(f.city);
        b.u32(f.asn);
        b.str(f.as_org);
        b.str(f.network_name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_appended_inside_the_object_and_empty_ones_left_out() {
        let mut out = Vec::new();
        let net = pipeline_enrich::Network {
            cidr: "10.0.0.0/8".parse().unwrap(),
            name: "corp \"main\"".into(),
            role: String::new(),
            site: String::new(),
        };
        let f = AddrFacts {
            country: "SE",
            city: "Linköping",
            asn: 0,
            as_org: "",
            network: Some(&net),
        };
        eve_fields(&mut out, "src_", &f);
        let g = AddrFacts {
            asn: 15169,
            as_org: "Google Inc.",
            ..AddrFacts::default()
        };
        eve_fields(&mut out, "dest_", &g);
        let e = Enrich {
            live: None,
            eve: out,
            row: Vec::new(),
            empty_row: Vec::new(),
        };
        let mut line = b"{\"a\":1}\n".to_vec();
        e.append_eve(&mut line);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["src_country"], "SE");
        assert_eq!(v["src_city"], "Linköping");
        assert_eq!(v["src_network"], "corp \"main\"");
        assert_eq!(v["dest_asn"], 15169);
        assert_eq!(v["dest_as_org"], "Google Inc.");
        assert_eq!(v.as_object().unwrap().len(), 6, "{v}");
        assert!(line.ends_with(b"}\n"));
    }

    #[test]
    fn an_empty_row_is_ten_empty_values() {
        let mut out = Vec::new();
        encode_row(&mut out, &AddrFacts::default(), &AddrFacts::default());
        // Per side: four empty strings (one length byte each) and a UInt32.
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn reload_interval_is_range_checked() {
        let mut s = EnrichSection::default();
        assert!(s.validate().is_ok());
        s.reload_interval = 0;
        let e = s.validate().unwrap_err();
        assert_eq!(e.key, "enrich.reload_interval");
    }
}
