//! The live path's control thread, off the packet cores: it owns the XDP maps.
//!
//! - Bypass: workers ask (over a channel, never waiting) to bypass a flow whose DPI is finished
//!   or to stop bypassing an exported one. The thread inserts/deletes both directions of the
//!   flow in the XDP bypass map, and every second reads the map and sends each worker the
//!   packets/bytes the kernel counted for its flows since the last read, with the time of the
//!   last one. The flow table adds them to the flow (so the exported record is complete) and
//!   moves its last-seen time (so a bypassed flow does not idle out while packets flow).
//! - Blocklist ([`Blocklist`]): the file's CIDRs (loaded at start and whenever the file
//!   changes), and blocks from signed commands and operators ([`BlockOp`]: a group of changes
//!   at a time, answered once the state file holds them, between bypass requests), written to
//!   the XDP trie; expired blocks swept every second.
//! - Metrics: the XDP program's per-CPU counters, summed, into [`Metrics`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};

use crate::capture::blocklist::{parse_file, Block, Blocklist, Listed};
use crate::capture::live::realtime_ns;
use crate::capture::xdp::{counter, monotonic_ns, FlowCounters, FlowKey, XdpMaps};
use crate::flow::{BypassEvent, DirKey};
use crate::metrics::Metrics;
use crate::worker::BypassUpdate;

/// How often bypass counters are read and the blocklist file is checked.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// `BPF_NOEXIST`: insert only.
const BPF_NOEXIST: u64 = 1;

/// A change to the blocklist's command and operator blocks.
pub enum Change {
    /// Block a CIDR (a command's or an operator's); `nonce`: the accepted command's, persisted
    /// with the block.
    Add {
        block: Block,
        nonce: Option<(String, u64)>,
    },
    /// Remove the command or operator block of exactly `net`.
    Del {
        net: ipnet::IpNet,
        nonce: Option<(String, u64)>,
    },
}

/// A request for the blocklist, from the command consumer or the control socket.
pub enum BlockOp {
    /// Changes applied in order, then the state file written once for them all; the answer,
    /// sent after that write, has one entry per change: a line saying what was done, or the
    /// error.
    Apply {
        changes: Vec<Change>,
        reply: Sender<Vec<Result<String, String>>>,
    },
    List {
        reply: Sender<Vec<Listed>>,
    },
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
    pub blocklist: Blocklist,
    /// Blocks whose time ran out go here, to be audited by the command channel (when it runs).
    pub ended: Option<Sender<Block>>,
    ops: Receiver<BlockOp>,
    tracked: HashMap<FlowKey, Tracked>,
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
        blocklist: (Blocklist, Option<PathBuf>, Receiver<BlockOp>),
        metrics: Arc<Metrics>,
    ) -> Control {
        let (blocklist, blocklist_file, ops) = blocklist;
        Control {
            maps,
            requests,
            updates,
            blocklist_file,
            metrics,
            blocklist,
            ended: None,
            ops,
            tracked: HashMap::new(),
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
        let entries = parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.blocklist_mtime = meta.modified().ok();
        self.blocklist.set_file(&mut self.maps, &entries)?;
        self.publish_blocklist_size();
        tracing::info!("blocklist {}: {} entries", path.display(), entries.len());
        Ok(())
    }

    fn publish_blocklist_size(&self) {
        self.metrics
            .blocklist_entries
            .store(self.blocklist.len() as u64, Ordering::Relaxed);
    }

    fn op(&mut self, op: BlockOp) {
        match op {
            BlockOp::Apply { changes, reply } => {
                let answers: Vec<_> = changes.into_iter().map(|c| self.change(c)).collect();
                if !answers.is_empty() {
                    self.blocklist.save_state();
                }
                let _ = reply.send(answers);
            }
            BlockOp::List { reply } => {
                let _ = reply.send(self.blocklist.list());
            }
        }
        self.publish_blocklist_size();
    }

    /// One change to the kernel map and the blocklist's memory (not yet to its state file).
    fn change(&mut self, change: Change) -> Result<String, String> {
        match change {
            Change::Add { block, nonce } => {
                let what = match block.expires_at_ms {
                    0 => format!("{} blocked until unblocked", block.cidr),
                    t => format!(
                        "{} blocked for {} s",
                        block.cidr,
                        t.saturating_sub(crate::capture::blocklist::now_ms())
                            .div_ceil(1000)
                    ),
                };
                self.blocklist
                    .add(&mut self.maps, block, nonce)
                    .map(|()| what)
            }
            Change::Del { net, nonce } => {
                let had = self.blocklist.remove(&mut self.maps, net, nonce)?;
                let in_file = self.blocklist.in_file(&net);
                Ok(match (had, in_file) {
                    (true, false) => "unblocked",
                    (true, true) => "unblocked; still listed in the blocklist file",
                    (false, true) => {
                        "not blocked by a command or operator; listed in the blocklist file"
                    }
                    (false, false) => "was not blocked",
                }
                .to_string())
            }
        }
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
        // A channel whose senders are all gone is always ready: replaced by one never ready.
        let (mut requests, mut ops) = (self.requests.clone(), self.ops.clone());
        loop {
            select! {
                recv(requests) -> r => match r {
                    Ok((w, ev)) => self.request(w, ev),
                    Err(_) => requests = crossbeam_channel::never(),
                },
                recv(ops) -> r => match r {
                    Ok(op) => self.op(op),
                    Err(_) => ops = crossbeam_channel::never(),
                },
                default(Duration::from_millis(100)) => {}
            }
            while let Ok(op) = self.ops.try_recv() {
                self.op(op);
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
                self.expire_blocks();
                self.publish_blocklist_size();
                self.publish_counters();
            }
        }
    }

    /// Lifts the blocks whose time ran out and hands them to the audit.
    fn expire_blocks(&mut self) {
        let ended = self.blocklist.expire(&mut self.maps);
        for b in ended {
            tracing::info!("blocklist: {} lifted (its duration ran out)", b.cidr);
            if let Some(tx) = &self.ended {
                if tx.try_send(b).is_err() {
                    tracing::warn!("blocklist: the audit of a lifted block was dropped (queue full or no command channel)");
                }
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
