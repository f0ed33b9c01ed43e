//! The live path's control thread, off the packet cores: it owns the XDP maps.
//!
//! - Bypass: workers ask (over a channel, never waiting) to bypass a flow whose DPI is finished
//!   or to stop bypassing an exported one. The thread inserts/deletes both directions of the
//!   flow in the XDP bypass map, and every second reads the map and sends each worker the
//!   packets/bytes the kernel counted for its flows since the last read, with the time of the
//!   last one. The flow table adds them to the flow (so the exported record is complete) and
//!   moves its last-seen time (so a bypassed flow does not idle out while packets flow).
//! - Blocklist: a file of addresses (one per line, optional lifetime in seconds), loaded into
//!   the XDP blocklist map at start and again whenever the file changes.
//! - Metrics: the XDP program's per-CPU counters, summed, into [`Metrics`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::capture::live::realtime_ns;
use crate::capture::xdp::{addr16, counter, monotonic_ns, FlowCounters, FlowKey, XdpMaps};
use crate::flow::{BypassEvent, DirKey};
use crate::metrics::Metrics;
use crate::worker::BypassUpdate;

/// How often bypass counters are read and the blocklist file is checked.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// `BPF_NOEXIST`: insert only.
const BPF_NOEXIST: u64 = 1;

/// One blocklist entry: an address, and how long it stays (None: until removed from the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    pub addr: IpAddr,
    pub secs: Option<u64>,
}

/// Parses a blocklist file: `ADDRESS [SECONDS]` per line, `#` comments, blank lines ignored.
/// Errors name the line.
pub fn parse_blocklist(text: &str) -> Result<Vec<BlockEntry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let addr = parts
            .next()
            .unwrap_or("")
            .parse::<IpAddr>()
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        let secs = match parts.next() {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|e| format!("line {}: lifetime {s:?}: {e}", n + 1))?,
            ),
        };
        if parts.next().is_some() {
            return Err(format!("line {}: expected ADDRESS [SECONDS]", n + 1));
        }
        out.push(BlockEntry { addr, secs });
    }
    Ok(out)
}

struct Tracked {
    worker: usize,
    pkts: u64,
    bytes: u64,
}

pub struct Control {
    pub maps: XdpMaps,
    pub requests: Receiver<(usize, BypassEvent)>,
    pub updates: Vec<Sender<BypassUpdate>>,
    pub blocklist_file: Option<PathBuf>,
    pub metrics: Arc<Metrics>,
    tracked: HashMap<FlowKey, Tracked>,
    blocked: HashSet<[u8; 16]>,
    blocklist_mtime: Option<SystemTime>,
}

fn fk(k: &DirKey) -> FlowKey {
    FlowKey::new(k.src, k.dst, k.sport, k.dport, k.proto)
}

fn dk(k: &FlowKey) -> DirKey {
    DirKey {
        src: k.src,
        dst: k.dst,
        sport: k.sport,
        dport: k.dport,
        proto: k.proto,
    }
}

impl Control {
    pub fn new(
        maps: XdpMaps,
        requests: Receiver<(usize, BypassEvent)>,
        updates: Vec<Sender<BypassUpdate>>,
        blocklist_file: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> Control {
        Control {
            maps,
            requests,
            updates,
            blocklist_file,
            metrics,
            tracked: HashMap::new(),
            blocked: HashSet::new(),
            blocklist_mtime: None,
        }
    }

    /// Loads the blocklist file now; an error names the problem (used at start-up, where a bad
    /// file is a configuration error).
    pub fn load_blocklist(&mut self) -> Result<(), String> {
        let Some(path) = self.blocklist_file.clone() else {
            return Ok(());
        };
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let entries = parse_blocklist(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.blocklist_mtime = meta.modified().ok();
        let now = monotonic_ns();
        let mut want = HashSet::new();
        for e in &entries {
            let a = addr16(e.addr);
            let expiry = e
                .secs
                .map_or(0, |s| now.saturating_add(s.saturating_mul(1_000_000_000)));
            self.maps
                .blocklist
                .insert(a, expiry, 0)
                .map_err(|err| format!("blocklist map: {err}"))?;
            want.insert(a);
        }
        for old in self.blocked.difference(&want) {
            let _ = self.maps.blocklist.remove(old);
        }
        self.blocked = want;
        self.metrics
            .blocklist_entries
            .store(self.blocked.len() as u64, Ordering::Relaxed);
        tracing::info!(
            "blocklist {}: {} addresses",
            path.display(),
            self.blocked.len()
        );
        Ok(())
    }

    fn reload_blocklist_if_changed(&mut self) {
        let Some(path) = self.blocklist_file.as_ref() else {
            return;
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime.is_some() && mtime != self.blocklist_mtime {
            if let Err(e) = self.load_blocklist() {
                tracing::warn!("blocklist not reloaded: {e}");
                self.blocklist_mtime = mtime;
            }
        }
    }

    /// Serves requests and sweeps until `finish` is set (after the capture threads are done),
    /// then sends the last counters and hangs up, which lets the workers flush.
    pub fn run(mut self, finish: &AtomicBool) -> [u64; counter::COUNT as usize] {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            match self.requests.recv_timeout(Duration::from_millis(100)) {
                Ok((w, ev)) => self.request(w, ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
            }
            while let Ok((w, ev)) = self.requests.try_recv() {
                self.request(w, ev);
            }
            if finish.load(Ordering::Acquire) {
                while let Ok((w, ev)) = self.requests.try_recv() {
                    self.request(w, ev);
                }
                self.sweep();
                return self.publish_counters();
            }
            if Instant::now() >= next_sweep {
                next_sweep = Instant::now() + SWEEP_EVERY;
                self.sweep();
                self.reload_blocklist_if_changed();
                self.publish_counters();
            }
        }
    }

    fn publish_counters(&self) -> [u64; counter::COUNT as usize] {
        let c = self.maps.counters();
        for (slot, v) in self.metrics.xdp.iter().zip(c) {
            slot.store(v, Ordering::Relaxed);
        }
        self.metrics
            .bypass_flows
            .store((self.tracked.len() / 2) as u64, Ordering::Relaxed);
        c
    }

    fn request(&mut self, worker: usize, ev: BypassEvent) {
        match ev {
            BypassEvent::Add(k) => {
                let a = fk(&k);
                let b = a.reversed();
                if self.tracked.contains_key(&a) || self.tracked.contains_key(&b) {
                    return;
                }
                let zero = FlowCounters::default();
                if self.maps.bypass.insert(a, zero, BPF_NOEXIST).is_err() {
                    self.metrics.bypass_map_full.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if self.maps.bypass.insert(b, zero, BPF_NOEXIST).is_err() {
                    let _ = self.maps.bypass.remove(&a);
                    self.metrics.bypass_map_full.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                for key in [a, b] {
                    self.tracked.insert(
                        key,
                        Tracked {
                            worker,
                            pkts: 0,
                            bytes: 0,
                        },
                    );
                }
            }
            BypassEvent::Remove(k) => {
                let a = fk(&k);
                for key in [a, a.reversed()] {
                    if let Some(t) = self.tracked.remove(&key) {
                        if let Ok(c) = self.maps.bypass.get(&key, 0) {
                            self.send_delta(&key, &t, &c);
                        }
                        let _ = self.maps.bypass.remove(&key);
                    }
                }
            }
        }
    }

    /// Sends every tracked direction's new counts to its worker.
    fn sweep(&mut self) {
        let keys: Vec<FlowKey> = self.tracked.keys().copied().collect();
        for key in keys {
            let Ok(c) = self.maps.bypass.get(&key, 0) else {
                continue;
            };
            if let Some(t) = self.tracked.get(&key) {
                self.send_delta(&key, t, &c);
            }
            if let Some(t) = self.tracked.get_mut(&key) {
                t.pkts = c.pkts;
                t.bytes = c.bytes;
            }
        }
    }

    fn send_delta(&self, key: &FlowKey, t: &Tracked, c: &FlowCounters) {
        let pkts = c.pkts.saturating_sub(t.pkts);
        if pkts == 0 {
            return;
        }
        // Kernel time (CLOCK_MONOTONIC) to the capture clock (wall time).
        let age = monotonic_ns().saturating_sub(c.last_ns);
        let u = BypassUpdate {
            key: dk(key),
            pkts,
            bytes: c.bytes.saturating_sub(t.bytes),
            last_ts: realtime_ns().saturating_sub(age),
        };
        if let Some(tx) = self.updates.get(t.worker) {
            let _ = tx.send(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklist_lines_with_and_without_lifetimes() {
        let v =
            parse_blocklist("# bad hosts\n192.0.2.1\n\n2001:db8::1 30 # half a minute\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].secs, None);
        assert_eq!(v[1].secs, Some(30));
        assert!(v[1].addr.is_ipv6());
    }

    #[test]
    fn a_bad_blocklist_line_is_named() {
        let e = parse_blocklist("192.0.2.1\nnot-an-address\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse_blocklist("192.0.2.1 soon\n").unwrap_err();
        assert!(e.starts_with("line 1:"), "{e}");
    }
}
