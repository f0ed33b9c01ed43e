//! IP fragment reassembly (IPv4 and IPv6), bounded in datagrams, bytes and packet time.
//!
//! Hand-written rather than etherparse's `defrag` module: that one keeps no time or memory
//! budget of its own and is keyed without the tunnel context; a sensor facing hostile traffic
//! needs both. Each datagram under reassembly holds the pieces of payload received (only bytes
//! not held yet are stored, so memory is what arrived, not the highest offset claimed) and the
//! sorted, merged list of byte ranges; the payload is assembled in one exact allocation when
//! the last gap closes. Overlaps resolve first-wins (the bytes
//! already held are kept), duplicates are absorbed. Every byte held is charged to one budget;
//! when a fragment would exceed it, the fragment and its datagram are dropped and counted, so
//! memory stays bounded whatever the input. Expiry is driven by packet time and checked when a
//! fragment arrives: datagrams are queued in arrival order and the oldest are looked at first.

use std::collections::{HashMap, VecDeque};

use super::{DecodeConfig, DecodeError, DecodeStats};
use crate::time::Ts;

/// Largest reassembled IP payload (the IP length fields are 16 bits).
const MAX_DATAGRAM: usize = 65_535;
/// Distinct received ranges per datagram before it is given up (a legitimate datagram arriving
/// out of order has a few; thousands of 8-byte slivers are an attack on the CPU).
const MAX_RANGES: usize = 64;
/// Bytes charged per datagram on top of its buffers (map entry, queue entry, bookkeeping).
const DATAGRAM_OVERHEAD: usize = 256;
/// Bytes charged per stored piece on top of its payload (allocation and list entry).
const PIECE_OVERHEAD: usize = 48;
/// Stored pieces per datagram before it is given up (a 64 KiB datagram in 1480-byte fragments
/// has 45).
const MAX_PIECES: usize = 256;

/// Identifies one datagram: the IP fields RFC 791/8200 name, plus where it was found (VLAN and
/// outer tunnel), so equal inner addresses in different tunnels do not mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub proto: u8,
    pub is_v6: bool,
    pub vlan: u16,
    pub tunnel_kind: u8,
    pub tunnel_id: u32,
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
}

/// What became of one fragment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FragOutcome {
    /// Stored (or absorbed as a duplicate); the datagram is not complete yet.
    Held,
    /// This fragment completed its datagram: the reassembled IP payload.
    Complete(Box<[u8]>),
    /// Not stored; the reason is counted in the stats by the caller (`Malformed`) or here
    /// (`FragBudget`).
    Dropped(DecodeError),
}

struct Datagram {
    /// Distinguishes this datagram from an earlier one with the same key in the expiry queue.
    serial: u64,
    /// Payload received, as (offset, bytes); disjoint, in arrival order.
    pieces: Vec<(u32, Vec<u8>)>,
    /// Bytes allocated for `pieces` (their capacities).
    held: usize,
    /// Received byte ranges `[start, end)`: sorted, disjoint, not adjacent.
    ranges: Vec<(u32, u32)>,
    /// Payload length, known once the last fragment arrived.
    total: Option<u32>,
    /// Fragments stored, reported as dropped if the datagram is given up.
    frags: u64,
}

impl Datagram {
    fn charge(&self) -> usize {
        DATAGRAM_OVERHEAD
            + self.held
            + self.pieces.len() * PIECE_OVERHEAD
            + self.ranges.capacity() * core::mem::size_of::<(u32, u32)>()
    }

    fn max_end(&self) -> u32 {
        self.ranges.last().map_or(0, |r| r.1)
    }

    fn complete(&self) -> bool {
        matches!((self.total, self.ranges.as_slice()), (Some(t), [(0, e)]) if *e == t)
    }

    /// Stores the parts of `src` (placed at `[a, b)`) not held yet and records the range.
    /// Returns whether any byte was already held.
    fn add(&mut self, a: u32, b: u32, src: &[u8]) -> bool {
        let mut overlap = false;
        let mut cur = a;
        // A piece that continues the last one stored extends it, so fragments arriving in
        // order make a single piece however small they are.
        let copy = |pieces: &mut Vec<(u32, Vec<u8>)>, held: &mut usize, from: u32, to: u32| {
            let rel = (from - a) as usize..(to - a) as usize;
            let Some(bytes) = src.get(rel) else {
                return;
            };
            match pieces.last_mut() {
                Some((start, last)) if *start as usize + last.len() == from as usize => {
                    *held -= last.capacity();
                    last.extend_from_slice(bytes);
                    *held += last.capacity();
                }
                _ => {
                    let piece = bytes.to_vec();
                    *held += piece.capacity();
                    pieces.push((from, piece));
                }
            }
        };
        for &(s, e) in &self.ranges {
            if e <= cur {
                continue;
            }
            if s >= b {
                break;
            }
            overlap = true;
            if s > cur {
                copy(&mut self.pieces, &mut self.held, cur, s);
            }
            cur = cur.max(e);
            if cur >= b {
                break;
            }
        }
        if cur < b {
            copy(&mut self.pieces, &mut self.held, cur, b);
        }
        // Merge [a, b) with the ranges it touches (overlapping or adjacent).
        let i = self.ranges.partition_point(|r| r.1 < a);
        let j = self.ranges.partition_point(|r| r.0 <= b);
        let first = self.ranges.get(i).copied();
        let last = j.checked_sub(1).and_then(|k| self.ranges.get(k)).copied();
        match (first, last) {
            (Some(f), Some(l)) if i < j => {
                if let Some(slot) = self.ranges.get_mut(i) {
                    *slot = (f.0.min(a), l.1.max(b));
                }
                self.ranges.drain(i + 1..j);
            }
            _ => self.ranges.insert(i, (a, b)),
        }
        overlap
    }

    /// The payload in one buffer; call when [`Datagram::complete`].
    fn assemble(mut self) -> Box<[u8]> {
        self.pieces.sort_unstable_by_key(|p| p.0);
        let len = self.pieces.iter().map(|p| p.1.len()).sum();
        let mut out = Vec::with_capacity(len);
        for (_, bytes) in &self.pieces {
            out.extend_from_slice(bytes);
        }
        out.into_boxed_slice()
    }

    /// Whether recording `[a, b)` would add a range beyond [`MAX_RANGES`] or a piece beyond
    /// [`MAX_PIECES`].
    fn too_many_ranges(&self, a: u32, b: u32) -> bool {
        if self.pieces.len() >= MAX_PIECES {
            return true;
        }
        if self.ranges.len() < MAX_RANGES {
            return false;
        }
        let i = self.ranges.partition_point(|r| r.1 < a);
        let j = self.ranges.partition_point(|r| r.0 <= b);
        i == j
    }
}

/// The datagrams under reassembly of one decoder.
#[derive(Default)]
pub(super) struct FragTable {
    map: HashMap<FragKey, Datagram>,
    /// (first fragment's time, serial, key) in arrival order; entries of datagrams that are
    /// gone are skipped when popped and compacted away when the queue grows.
    order: VecDeque<(Ts, u64, FragKey)>,
    /// Sum of [`Datagram::charge`] over `map`.
    bytes: usize,
    serial: u64,
}

impl FragTable {
    /// Datagrams under reassembly.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes charged to the budget.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Datagrams under reassembly and the fragments stored in them.
    pub fn pending(&self) -> (u64, u64) {
        let frags = self.map.values().map(|d| d.frags).sum();
        (self.map.len() as u64, frags)
    }

    /// Stores one fragment: `data` goes at byte `offset` of the datagram's payload; `more` is
    /// the more-fragments flag. Expires old datagrams first.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        cfg: &DecodeConfig,
        stats: &mut DecodeStats,
        key: FragKey,
        offset: usize,
        more: bool,
        data: &[u8],
        ts: Ts,
    ) -> FragOutcome {
        self.expire(cfg, stats, ts);
        let end = offset + data.len();
        if end > MAX_DATAGRAM || (more && data.is_empty()) {
            return FragOutcome::Dropped(DecodeError::Malformed);
        }
        let (a, b) = (offset as u32, end as u32);

        if !self.map.contains_key(&key) {
            if self.map.len() >= cfg.frag_max_datagrams
                || self.bytes + DATAGRAM_OVERHEAD + data.len() > cfg.frag_max_bytes
            {
                stats.frag_dropped += 1;
                return FragOutcome::Dropped(DecodeError::FragBudget);
            }
            self.serial += 1;
            let dg = Datagram {
                serial: self.serial,
                pieces: Vec::new(),
                held: 0,
                ranges: Vec::new(),
                total: None,
                frags: 0,
            };
            self.bytes += dg.charge();
            self.map.insert(key, dg);
            self.order.push_back((ts, self.serial, key));
            self.compact(cfg);
        }
        let Some(dg) = self.map.get_mut(&key) else {
            return FragOutcome::Dropped(DecodeError::Malformed);
        };

        // The first last fragment fixes the datagram's end: data past it is cut off, and a
        // last fragment that disagrees is ignored (first wins).
        let (mut b, mut data) = (b, data);
        let conflicts = match (more, dg.total) {
            (true, Some(t)) if b > t => {
                if a >= t {
                    true
                } else {
                    stats.frag_overlaps += 1;
                    b = t;
                    data = data.get(..(t - a) as usize).unwrap_or(&[]);
                    false
                }
            }
            (true, _) => false,
            (false, Some(t)) => t != b,
            (false, None) => dg.max_end() > b,
        };
        if conflicts {
            stats.frag_overlaps += 1;
            return FragOutcome::Held;
        }

        let before = dg.charge();
        // At most this much is added (less when part of it is already held; an extended piece
        // may double its capacity).
        let last_cap = dg.pieces.last().map_or(0, |p| p.1.capacity());
        let grow =
            data.len().max(last_cap) + PIECE_OVERHEAD + 2 * core::mem::size_of::<(u32, u32)>();
        if self.bytes + grow > cfg.frag_max_bytes || dg.too_many_ranges(a, b) {
            let frags = dg.frags;
            self.bytes -= before;
            self.map.remove(&key);
            stats.frag_dropped += 1 + frags;
            return FragOutcome::Dropped(DecodeError::FragBudget);
        }
        if !more {
            dg.total = Some(b);
        }
        if dg.add(a, b, data) {
            stats.frag_overlaps += 1;
        }
        dg.frags += 1;
        self.bytes = self.bytes - before + dg.charge();

        if !dg.complete() {
            return FragOutcome::Held;
        }
        let Some(dg) = self.map.remove(&key) else {
            return FragOutcome::Held;
        };
        self.bytes -= dg.charge();
        stats.reassembled += 1;
        FragOutcome::Complete(dg.assemble())
    }

    /// Drops datagrams whose first fragment is older than the timeout (in packet time).
    fn expire(&mut self, cfg: &DecodeConfig, stats: &mut DecodeStats, now: Ts) {
        while let Some(&(t, serial, key)) = self.order.front() {
            if now.saturating_sub(t) <= cfg.frag_timeout_ns {
                break;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|d| d.serial == serial) {
                if let Some(dg) = self.map.remove(&key) {
                    self.bytes -= dg.charge();
                    stats.frag_timeouts += 1;
                    stats.frag_dropped += dg.frags;
                }
            }
        }
    }

    /// Keeps the expiry queue within a constant factor of the live datagrams: completed
    /// datagrams leave their queue entry behind.
    fn compact(&mut self, cfg: &DecodeConfig) {
        if self.order.len() <= 2 * cfg.frag_max_datagrams.max(self.map.len()) + 16 {
            return;
        }
        let map = &self.map;
        self.order
            .retain(|(_, serial, key)| map.get(key).is_some_and(|d| d.serial == *serial));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: [1; 16],
            dst: [2; 16],
            id,
            proto: 17,
            is_v6: false,
            vlan: 0,
            tunnel_kind: 0,
            tunnel_id: 0,
            outer_src: [0; 16],
            outer_dst: [0; 16],
        }
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn ranges_merge_and_overlaps_keep_first_bytes() {
        let cfg = DecodeConfig::default();
        let mut st = DecodeStats::default();
        let mut t = FragTable::default();
        let p = payload(40);
        assert_eq!(
            t.insert(&cfg, &mut st, key(1), 16, true, &p[16..24], 0),
            FragOutcome::Held
        );
        // Overlaps [16, 24) with different bytes: the first ones win.
        let mut bogus = p[8..32].to_vec();
        bogus[8..16].fill(0xee);
        assert_eq!(
            t.insert(&cfg, &mut st, key(1), 8, true, &bogus, 0),
            FragOutcome::Held
        );
        assert_eq!(st.frag_overlaps, 1);
        assert_eq!(
            t.insert(&cfg, &mut st, key(1), 0, true, &p[0..8], 0),
            FragOutcome::Held
        );
        let out = t.insert(&cfg, &mut st, key(1), 32, false, &p[32..40], 0);
        assert_eq!(out, FragOutcome::Complete(p.into_boxed_slice()));
        assert_eq!((t.len(), t.bytes()), (0, 0));
        assert_eq!(st.reassembled, 1);
    }

    #[test]
    fn conflicting_last_fragment_is_ignored() {
        let cfg = DecodeConfig::default();
        let mut st = DecodeStats::default();
        let mut t = FragTable::default();
        let p = payload(32);
        t.insert(&cfg, &mut st, key(1), 16, false, &p[16..32], 0);
        // Claims the datagram ends at 24.
        assert_eq!(
            t.insert(&cfg, &mut st, key(1), 16, false, &p[16..24], 0),
            FragOutcome::Held
        );
        // Data past the known end.
        assert_eq!(
            t.insert(&cfg, &mut st, key(1), 32, true, &p[0..8], 0),
            FragOutcome::Held
        );
        assert_eq!(st.frag_overlaps, 2);
        // Runs past the end: cut at the end; its bytes over [16, 32) are already held.
        let mut long = p[0..32].to_vec();
        long.extend_from_slice(&[0xee; 8]);
        let out = t.insert(&cfg, &mut st, key(1), 0, true, &long, 0);
        assert_eq!(out, FragOutcome::Complete(p.into_boxed_slice()));
        assert_eq!(st.frag_overlaps, 4);
    }

    #[test]
    fn oversized_and_empty_fragments_are_malformed() {
        let cfg = DecodeConfig::default();
        let mut st = DecodeStats::default();
        let mut t = FragTable::default();
        assert_eq!(
            t.insert(&cfg, &mut st, key(1), 65_528, false, &[0; 16], 0),
            FragOutcome::Dropped(DecodeError::Malformed)
        );
        assert_eq!(
            t.insert(&cfg, &mut st, key(1), 8, true, &[], 0),
            FragOutcome::Dropped(DecodeError::Malformed)
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn slivers_beyond_the_range_limit_drop_the_datagram() {
        let cfg = DecodeConfig::default();
        let mut st = DecodeStats::default();
        let mut t = FragTable::default();
        let mut last = FragOutcome::Held;
        for i in 0..=MAX_RANGES {
            last = t.insert(&cfg, &mut st, key(1), i * 16, true, &[0; 8], 0);
        }
        assert_eq!(last, FragOutcome::Dropped(DecodeError::FragBudget));
        assert_eq!(st.frag_dropped, MAX_RANGES as u64 + 1);
        assert_eq!((t.len(), t.bytes()), (0, 0));
    }

    #[test]
    fn expiry_queue_stays_bounded_when_datagrams_complete() {
        let cfg = DecodeConfig {
            frag_max_datagrams: 4,
            ..DecodeConfig::default()
        };
        let mut st = DecodeStats::default();
        let mut t = FragTable::default();
        for id in 0..1000 {
            t.insert(&cfg, &mut st, key(id), 0, true, &[0; 8], 0);
            t.insert(&cfg, &mut st, key(id), 8, false, &[0; 8], 0);
        }
        assert_eq!(st.reassembled, 1000);
        assert!(t.order.len() <= 2 * 4 + 17, "{}", t.order.len());
    }
}
