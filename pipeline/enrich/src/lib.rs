//! Facts about addresses, added to flow records off the packet path: GeoIP country and city and
//! the autonomous system (MaxMind-format MMDB files, [`mmdb`]), and the operator's own networks
//! (a CIDR file, [`networks`]).
//!
//! Shared by the sensor's exporter (which writes the fields into EVE, ClickHouse and NATS) and
//! the pipeline. The data are judgement-free facts; detection is elsewhere.
//!
//! - [`Enricher::open`] loads the configured files. A file that is set but absent is not an
//!   error (its fields stay empty and it is loaded when it appears); a damaged file is, so a
//!   caller can refuse to start on it.
//! - [`Enricher::poll`] (run every second or so by [`Enricher::watch`]'s thread) re-reads a file
//!   whose modification time, size or inode changed. A damaged new version is logged and counted
//!   ([`Stats::reload_failures`]) and the previous data stay in use; a removed file keeps its data
//!   too (a replace by rename briefly removes it).
//! - [`Enricher::snapshot`] gives the data in use at that moment, three `Arc` clones from
//!   `arc-swap` (no lock); [`Snapshot::lookup`] borrows from it and allocates nothing. A reader
//!   that keeps a snapshot sees a reload when it takes the next one ([`Enricher::generation`]
//!   says when that is worth doing).
//!
//! Polling rather than inotify: operators replace these files by rename, copy, or an updater on
//! a network file system; a stat of three paths a second sees all of them, and a change is
//! picked up within one interval.

pub mod mmdb;
pub mod networks;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

pub use mmdb::Mmdb;
pub use networks::{Network, Networks};

/// The files to read; `None` (or an empty path) means that kind of field stays empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paths {
    /// City or Country database (`src_country`, `src_city`).
    pub geoip_db: Option<PathBuf>,
    /// ASN database (`src_asn`, `src_as_org`).
    pub asn_db: Option<PathBuf>,
    /// The operator's networks (`src_network`).
    pub networks: Option<PathBuf>,
}

/// A file that could not be used, named by its config key (`geoip_db`, `asn_db`, `networks`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {}: {msg}", path.display())]
pub struct LoadError {
    pub key: &'static str,
    pub path: PathBuf,
    pub msg: String,
}

/// Counters, all monotonic.
#[derive(Debug, Default)]
pub struct Stats {
    /// New versions of a file loaded after start-up.
    pub reloads: AtomicU64,
    /// New versions refused (damaged or unreadable); the previous data stayed in use.
    pub reload_failures: AtomicU64,
    /// Lookups a database could not answer (a record it could not decode); fields left empty.
    pub lookup_errors: AtomicU64,
}

/// Identity of a file version: modification time, size, inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    mtime_ns: i128,
    size: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        size: m.len(),
        ino: m.ino(),
    })
}

/// One configured file and the data last loaded from it.
struct Slot<T> {
    key: &'static str,
    path: Option<PathBuf>,
    data: ArcSwapOption<T>,
    /// The version last tried (loaded or refused); `None` when the file was absent.
    seen: Mutex<Option<Stamp>>,
    load: fn(&Path) -> Result<T, String>,
}

impl<T> Slot<T> {
    fn new(
        key: &'static str,
        path: &Option<PathBuf>,
        load: fn(&Path) -> Result<T, String>,
    ) -> Self {
        Slot {
            key,
            path: path.clone().filter(|p| !p.as_os_str().is_empty()),
            data: ArcSwapOption::empty(),
            seen: Mutex::new(None),
            load,
        }
    }

    fn error(&self, path: &Path, msg: String) -> LoadError {
        LoadError {
            key: self.key,
            path: path.to_path_buf(),
            msg,
        }
    }

    /// Loads the file if it is there; an absent file leaves the slot empty.
    fn initial(&self) -> Result<(), LoadError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let Some(before) = stamp(path) else {
            tracing::warn!(
                "enrich.{}: {} does not exist; its fields stay empty until it does",
                self.key,
                path.display()
            );
            return Ok(());
        };
        let data = (self.load)(path).map_err(|m| self.error(path, m))?;
        self.data.store(Some(Arc::new(data)));
        *lock(&self.seen) = Some(before);
        Ok(())
    }

    /// Re-reads the file when its version changed. `Ok(true)`: new data in use.
    fn poll(&self) -> Result<bool, LoadError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let now = stamp(path);
        let mut seen = lock(&self.seen);
        if now == *seen {
            return Ok(false);
        }
        let Some(before) = now else {
            tracing::warn!(
                "enrich.{}: {} was removed; keeping the data loaded",
                self.key,
                path.display()
            );
            *seen = None;
            return Ok(false);
        };
        let loaded = (self.load)(path);
        // A file still being written is tried again at the next poll rather than remembered.
        if stamp(path) == Some(before) {
            *seen = Some(before);
        }
        let data = loaded.map_err(|m| self.error(path, m))?;
        self.data.store(Some(Arc::new(data)));
        Ok(true)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn load_networks(path: &Path) -> Result<Networks, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    Networks::parse(&text)
}

/// The configured files, their data in use, and counters.
pub struct Enricher {
    geo: Slot<Mmdb>,
    asn: Slot<Mmdb>,
    nets: Slot<Networks>,
    generation: AtomicU64,
    stats: Arc<Stats>,
}

impl Enricher {
    /// Loads every configured file that exists; the first damaged one is the error.
    pub fn open(paths: &Paths) -> Result<Enricher, LoadError> {
        let e = Enricher {
            geo: Slot::new("geoip_db", &paths.geoip_db, Mmdb::open),
            asn: Slot::new("asn_db", &paths.asn_db, Mmdb::open),
            nets: Slot::new("networks", &paths.networks, load_networks),
            generation: AtomicU64::new(0),
            stats: Arc::new(Stats::default()),
        };
        e.geo.initial()?;
        e.asn.initial()?;
        e.nets.initial()?;
        Ok(e)
    }

    /// Whether any file is configured (when none is, callers can skip enrichment entirely).
    pub fn is_configured(&self) -> bool {
        self.geo.path.is_some() || self.asn.path.is_some() || self.nets.path.is_some()
    }

    /// Checks every configured file once, reloading those that changed. Returns how many new
    /// versions were taken; refused ones are logged and counted.
    pub fn poll(&self) -> usize {
        let results = [self.geo.poll(), self.asn.poll(), self.nets.poll()];
        let mut taken = 0;
        for r in results {
            match r {
                Ok(true) => taken += 1,
                Ok(false) => {}
                Err(e) => {
                    self.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("enrich.{e}; keeping the previous data");
                }
            }
        }
        if taken > 0 {
            self.stats
                .reloads
                .fetch_add(taken as u64, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            tracing::info!("enrich: reloaded {taken} file(s)");
        }
        taken
    }

    /// Changes each time new data is taken; compare with [`Snapshot::generation`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The data in use now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            generation: self.generation(),
            geo: self.geo.data.load_full(),
            asn: self.asn.data.load_full(),
            nets: self.nets.data.load_full(),
            stats: self.stats.clone(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Polls every `interval` on a thread of its own until the returned handle is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> std::io::Result<Watcher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let me = self.clone();
        let thread = thread::Builder::new()
            .name("enrich-watch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    me.poll();
                }
            })?;
        Ok(Watcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// The polling thread of [`Enricher::watch`]; stops (and is joined) when dropped.
pub struct Watcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What is known about one address; empty strings and 0 where nothing is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrFacts<'a> {
    pub country: &'a str,
    pub city: &'a str,
    pub asn: u32,
    pub as_org: &'a str,
    pub network: Option<&'a Network>,
}

impl<'a> AddrFacts<'a> {
    /// The `*_network` field: the network's name, or empty.
    pub fn network_name(&self) -> &'a str {
        self.network.map_or("", |n| n.name.as_str())
    }

    /// Whether every field is empty.
    pub fn is_empty(&self) -> bool {
        self.country.is_empty()
            && self.city.is_empty()
            && self.asn == 0
            && self.as_org.is_empty()
            && self.network.is_none()
    }
}

/// The data in use at one moment; lookups borrow from it.
pub struct Snapshot {
    generation: u64,
    geo: Option<Arc<Mmdb>>,
    asn: Option<Arc<Mmdb>>,
    nets: Option<Arc<Networks>>,
    stats: Arc<Stats>,
}

impl Snapshot {
    /// The [`Enricher::generation`] this snapshot was taken at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Facts about `ip` (IPv4-mapped IPv6 is looked up as IPv4). Never fails: a record a
    /// database cannot decode leaves its fields empty and is counted.
    pub fn lookup(&self, ip: IpAddr) -> AddrFacts<'_> {
        let ip = networks::canonical(ip);
        let mut f = AddrFacts::default();
        if let Some(db) = &self.geo {
            match db.geo(ip) {
                Ok(g) => (f.country, f.city) = (g.country, g.city),
                Err(_) => self.count_error(),
            }
        }
        if let Some(db) = &self.asn {
            match db.asn(ip) {
                Ok(a) => (f.asn, f.as_org) = (a.number, a.org),
                Err(_) => self.count_error(),
            }
        }
        if let Some(n) = &self.nets {
            f.network = n.lookup(ip);
        }
        f
    }

    fn count_error(&self) {
        self.stats.lookup_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Time from `since` to the first poll that takes new data, polling every `step` up to
/// `limit` (tests and the benchmark's reload latency).
pub fn wait_for_generation(
    e: &Enricher,
    after: u64,
    step: Duration,
    limit: Duration,
) -> Option<Duration> {
    let since = Instant::now();
    while since.elapsed() < limit {
        if e.generation() > after {
            return Some(since.elapsed());
        }
        thread::sleep(step);
    }
    None
}
