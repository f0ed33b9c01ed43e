//! Per-direction TCP stream reassembly for DPI.
//!
//! Parsers want the bytes of one direction in order, once. [`Stream`] turns segments as captured
//! (retransmitted, overlapping, out of order, sequence numbers wrapping) into [`Chunk`]s:
//! in-order data, or a [`Chunk::Gap`] when bytes were never seen and waiting for them would cost
//! more memory than a flow may hold. The common case, an in-order segment with nothing held,
//! is passed through as the packet's own slice: no copy, no allocation. Only out-of-order
//! segments are copied, and at most `max_ooo_segments` of them / `max_buffer` bytes.
//!
//! Where the stream starts: at ISN+1 when the SYN was seen; otherwise at the first data segment,
//! unless that segment does not look like the start of a message (the consumer's `looks_like_start`
//! predicate, e.g. a TLS record header or an HTTP request line). Then the segment is held as a
//! *provisional* start and an earlier segment may still take its place: that is the capture that
//! begins with the second segment of a ClientHello, the first one arriving late. The wait ends
//! when a segment that looks like a start arrives (before the held ones: it is the start; after
//! them: the held bytes were the tail of an older message) or when the hold is full; then the
//! lowest sequence held becomes the start.
//!
//! Hand-written rather than a crate: the TCP reassembly crates we know of either own the whole
//! connection state machine or copy every segment; DPI needs neither.

use super::DpiConfig;
use crate::decode::{tcpflags, TcpMeta};

/// What a [`Stream`] hands to its consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// The next bytes of the direction, in order.
    Data(&'a [u8]),
    /// This many bytes were skipped: they were never seen and the hold limit was reached.
    /// The consumer resynchronises or gives up; bytes after the gap follow as `Data`.
    Gap(u32),
}

/// Segments further ahead than this are not held (bogus sequence numbers, not a reorder).
const MAX_AHEAD: u32 = 1 << 30;

/// `a < b` in sequence-number space (RFC 1982 serial arithmetic).
#[inline]
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence-number space.
#[inline]
fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing seen yet.
    Idle,
    /// Data held, but the start of the stream is not known (no SYN, first segment did not look
    /// like a message start).
    Provisional,
    /// `next` is the sequence number of the next byte to deliver.
    Started,
}

/// One held segment.
struct Seg {
    seq: u32,
    data: Box<[u8]>,
}

impl Seg {
    fn end(&self) -> u32 {
        self.seq.wrapping_add(self.data.len() as u32)
    }
}

/// Out-of-order segments, sorted by sequence number; allocated only while something is held.
#[derive(Default)]
struct Held {
    segs: Vec<Seg>,
    bytes: usize,
}

/// Reassembly state of one direction of a TCP connection (16 bytes while nothing is held).
pub struct Stream {
    next: u32,
    state: State,
    held: Option<Box<Held>>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::new()
    }
}

impl Stream {
    pub const fn new() -> Stream {
        Stream {
            next: 0,
            state: State::Idle,
            held: None,
        }
    }

    /// True when the next data segment's position is not settled yet, i.e. when `segment` may
    /// call its `looks_like_start` predicate.
    pub fn start_unknown(&self) -> bool {
        self.state != State::Started
    }

    /// Number of segments currently held out of order.
    pub fn held_segments(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.segs.len())
    }

    /// Bytes currently held out of order.
    pub fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.bytes)
    }

    /// Feeds one segment of this direction (empty payloads are fine: a SYN sets the start).
    /// In-order bytes go to `sink`, followed by any held segments the new one made contiguous.
    /// `looks_like_start` is asked, only while the start is unknown, whether a payload looks like
    /// the first bytes of a message.
    pub fn segment<P, F>(
        &mut self,
        cfg: &DpiConfig,
        tcp: &TcpMeta,
        payload: &[u8],
        looks_like_start: P,
        sink: &mut F,
    ) where
        P: FnOnce(&[u8]) -> bool,
        F: FnMut(Chunk<'_>),
    {
        let mut seq = tcp.seq;
        if tcp.flags & tcpflags::SYN != 0 {
            seq = seq.wrapping_add(1);
            if self.state != State::Started {
                // A SYN seen after held data (reordered capture) still fixes the start.
                self.next = seq;
                self.state = State::Started;
                self.after_start(cfg, sink);
            }
        }
        if payload.is_empty() {
            return;
        }
        match self.state {
            State::Idle => {
                if cfg.max_ooo_segments == 0
                    || payload.len() > cfg.max_buffer
                    || looks_like_start(payload)
                {
                    self.next = seq.wrapping_add(payload.len() as u32);
                    self.state = State::Started;
                    sink(Chunk::Data(payload));
                } else {
                    self.state = State::Provisional;
                    self.hold(seq, payload);
                }
            }
            State::Provisional => {
                let lowest = self
                    .held
                    .as_ref()
                    .and_then(|h| h.segs.first())
                    .map(|s| s.seq);
                let earlier = lowest.is_none_or(|l| seq_lt(seq, l));
                let start = looks_like_start(payload);
                if earlier && start {
                    self.next = seq.wrapping_add(payload.len() as u32);
                    self.state = State::Started;
                    sink(Chunk::Data(payload));
                    self.after_start(cfg, sink);
                } else {
                    self.hold(seq, payload);
                    // A message starting after the held bytes: they are the tail of something
                    // older, no earlier start is worth waiting for.
                    if start || self.over_limit(cfg) {
                        self.release(cfg, sink);
                    }
                }
            }
            State::Started => self.in_stream(cfg, seq, payload, sink),
        }
    }

    /// Delivers what is held, skipping gaps, e.g. when the flow ends.
    pub fn flush<F: FnMut(Chunk<'_>)>(&mut self, sink: &mut F) {
        if self.state == State::Provisional {
            self.start_at_lowest();
        }
        while self.held.is_some() {
            self.skip_to_first_held(sink);
            self.drain(sink);
        }
    }

    fn in_stream<F: FnMut(Chunk<'_>)>(
        &mut self,
        cfg: &DpiConfig,
        seq: u32,
        payload: &[u8],
        sink: &mut F,
    ) {
        let end = seq.wrapping_add(payload.len() as u32);
        if seq_le(end, self.next) {
            return; // retransmission of delivered bytes
        }
        if seq_le(seq, self.next) {
            let skip = self.next.wrapping_sub(seq) as usize;
            if let Some(fresh) = payload.get(skip..) {
                self.next = end;
                sink(Chunk::Data(fresh));
                if self.held.is_some() {
                    self.drain(sink);
                }
            }
            return;
        }
        if seq.wrapping_sub(self.next) > MAX_AHEAD {
            return;
        }
        self.hold(seq, payload);
        while self.over_limit(cfg) {
            self.skip_to_first_held(sink);
            self.drain(sink);
        }
    }

    /// The start was just fixed: deliver what became contiguous, enforce limits.
    fn after_start<F: FnMut(Chunk<'_>)>(&mut self, cfg: &DpiConfig, sink: &mut F) {
        if self.held.is_none() {
            return;
        }
        self.drain(sink);
        while self.over_limit(cfg) {
            self.skip_to_first_held(sink);
            self.drain(sink);
        }
    }

    /// Gives up waiting for an earlier start: the lowest held sequence number is the start.
    fn release<F: FnMut(Chunk<'_>)>(&mut self, cfg: &DpiConfig, sink: &mut F) {
        self.start_at_lowest();
        self.after_start(cfg, sink);
    }

    fn start_at_lowest(&mut self) {
        if let Some(first) = self.held.as_ref().and_then(|h| h.segs.first()) {
            self.next = first.seq;
            self.state = State::Started;
        } else {
            self.state = State::Idle;
        }
    }

    fn over_limit(&self, cfg: &DpiConfig) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| h.segs.len() > cfg.max_ooo_segments || h.bytes > cfg.max_buffer)
    }

    /// Copies a segment into the hold, sorted by sequence number; segments fully covered by one
    /// already held are dropped.
    fn hold(&mut self, seq: u32, payload: &[u8]) {
        let held = self.held.get_or_insert_with(Box::default);
        let end = seq.wrapping_add(payload.len() as u32);
        if held
            .segs
            .iter()
            .any(|s| seq_le(s.seq, seq) && seq_le(end, s.end()))
        {
            return;
        }
        let pos = held
            .segs
            .iter()
            .position(|s| seq_lt(seq, s.seq))
            .unwrap_or(held.segs.len());
        held.segs.insert(
            pos,
            Seg {
                seq,
                data: payload.into(),
            },
        );
        held.bytes += payload.len();
    }

    /// Skips the bytes between `next` and the first held segment, telling the consumer.
    fn skip_to_first_held<F: FnMut(Chunk<'_>)>(&mut self, sink: &mut F) {
        let Some(first) = self.held.as_ref().and_then(|h| h.segs.first()) else {
            return;
        };
        if seq_lt(self.next, first.seq) {
            let gap = first.seq.wrapping_sub(self.next);
            self.next = first.seq;
            sink(Chunk::Gap(gap));
        }
    }

    /// Delivers held segments that are now contiguous with `next`; frees the hold when empty.
    fn drain<F: FnMut(Chunk<'_>)>(&mut self, sink: &mut F) {
        while let Some(held) = self.held.as_mut() {
            let contiguous = held.segs.first().is_some_and(|s| seq_le(s.seq, self.next));
            if !contiguous {
                if held.segs.is_empty() {
                    self.held = None;
                }
                return;
            }
            let seg = held.segs.remove(0);
            held.bytes -= seg.data.len();
            let end = seg.end();
            if seq_lt(self.next, end) {
                let skip = self.next.wrapping_sub(seg.seq) as usize;
                self.next = end;
                if let Some(fresh) = seg.data.get(skip..) {
                    sink(Chunk::Data(fresh));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a stream delivers: data concatenated, gaps as (offset, len).
    #[derive(Default)]
    struct Got {
        data: Vec<u8>,
        gaps: Vec<(usize, u32)>,
        calls: usize,
    }

    impl Got {
        fn sink(&mut self) -> impl FnMut(Chunk<'_>) + '_ {
            |c| {
                self.calls += 1;
                match c {
                    Chunk::Data(d) => self.data.extend_from_slice(d),
                    Chunk::Gap(n) => self.gaps.push((self.data.len(), n)),
                }
            }
        }
    }

    fn meta(seq: u32, flags: u8) -> TcpMeta {
        TcpMeta { seq, ack: 0, flags }
    }

    const ACK: u8 = tcpflags::ACK;
    const SYN: u8 = tcpflags::SYN;

    fn always(_: &[u8]) -> bool {
        true
    }

    fn never(_: &[u8]) -> bool {
        false
    }

    fn feed(s: &mut Stream, got: &mut Got, seq: u32, flags: u8, data: &[u8]) {
        let cfg = DpiConfig::default();
        s.segment(&cfg, &meta(seq, flags), data, never, &mut got.sink());
    }

    #[test]
    fn in_order_after_syn_is_passed_through() {
        let mut s = Stream::new();
        let mut got = Got::default();
        feed(&mut s, &mut got, 1000, SYN, b"");
        feed(&mut s, &mut got, 1001, ACK, b"hello ");
        feed(&mut s, &mut got, 1007, ACK, b"world");
        assert_eq!(got.data, b"hello world");
        assert_eq!(got.calls, 2);
        assert_eq!(s.held_segments(), 0);
    }

    #[test]
    fn retransmissions_and_overlaps_are_trimmed() {
        let mut s = Stream::new();
        let mut got = Got::default();
        feed(&mut s, &mut got, 0, SYN, b"");
        feed(&mut s, &mut got, 1, ACK, b"abcd");
        feed(&mut s, &mut got, 1, ACK, b"abcd");
        feed(&mut s, &mut got, 3, ACK, b"cdefg");
        feed(&mut s, &mut got, 2, ACK, b"b");
        assert_eq!(got.data, b"abcdefg");
    }

    #[test]
    fn out_of_order_segments_are_delivered_when_the_gap_fills() {
        let mut s = Stream::new();
        let mut got = Got::default();
        feed(&mut s, &mut got, 99, SYN, b"");
        feed(&mut s, &mut got, 106, ACK, b"ghi");
        feed(&mut s, &mut got, 103, ACK, b"def");
        feed(&mut s, &mut got, 105, ACK, b"fgh"); // overlaps both held ones
        assert!(got.data.is_empty());
        assert_eq!(s.held_segments(), 3);
        feed(&mut s, &mut got, 100, ACK, b"abc");
        assert_eq!(got.data, b"abcdefghi");
        assert!(got.gaps.is_empty());
        assert_eq!(s.held_segments(), 0);
        assert!(s.held.is_none(), "hold freed once empty");
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut s = Stream::new();
        let mut got = Got::default();
        feed(&mut s, &mut got, u32::MAX - 3, SYN, b"");
        feed(&mut s, &mut got, 0, ACK, b"4567"); // out of order, after the wrap
        feed(&mut s, &mut got, u32::MAX - 2, ACK, b"123");
        feed(&mut s, &mut got, u32::MAX - 2, ACK, b"1"); // old
        assert_eq!(got.data, b"1234567");
    }

    #[test]
    fn gap_is_skipped_and_signalled_when_the_hold_is_full() {
        let cfg = DpiConfig {
            max_ooo_segments: 2,
            ..DpiConfig::default()
        };
        let mut s = Stream::new();
        let mut got = Got::default();
        let f = |s: &mut Stream, got: &mut Got, seq, flags, d: &[u8]| {
            s.segment(&cfg, &meta(seq, flags), d, never, &mut got.sink())
        };
        f(&mut s, &mut got, 0, SYN, b"");
        f(&mut s, &mut got, 1, ACK, b"aa");
        // 3..5 never arrives
        f(&mut s, &mut got, 5, ACK, b"cc");
        f(&mut s, &mut got, 7, ACK, b"dd");
        assert!(got.gaps.is_empty());
        f(&mut s, &mut got, 11, ACK, b"ff"); // third held: over the limit
        assert_eq!(got.gaps, vec![(2, 2)]);
        assert_eq!(got.data, b"aaccdd");
        assert_eq!(s.held_segments(), 1);
        f(&mut s, &mut got, 9, ACK, b"ee");
        assert_eq!(got.data, b"aaccddeeff");
        // the late segment of the skipped gap is old now
        f(&mut s, &mut got, 3, ACK, b"bb");
        assert_eq!(got.data, b"aaccddeeff");
    }

    #[test]
    fn hold_is_bounded_in_bytes() {
        let cfg = DpiConfig {
            max_buffer: 100,
            ..DpiConfig::default()
        };
        let mut s = Stream::new();
        let mut got = Got::default();
        s.segment(&cfg, &meta(0, SYN), b"", never, &mut got.sink());
        s.segment(&cfg, &meta(61, ACK), &[1; 60], never, &mut got.sink());
        assert_eq!(s.held_bytes(), 60);
        s.segment(&cfg, &meta(200, ACK), &[2; 60], never, &mut got.sink());
        // over 100 bytes held: the gap before the first held segment is given up
        assert_eq!(got.gaps, vec![(0, 60)]);
        assert_eq!(got.data.len(), 60);
        assert_eq!(s.held_bytes(), 60);
    }

    #[test]
    fn without_syn_the_first_data_segment_starts_the_stream() {
        let mut s = Stream::new();
        let mut got = Got::default();
        let cfg = DpiConfig::default();
        s.segment(&cfg, &meta(5000, ACK), b"GET /", always, &mut got.sink());
        s.segment(&cfg, &meta(5005, ACK), b" HTTP", always, &mut got.sink());
        s.segment(&cfg, &meta(4000, ACK), b"older", always, &mut got.sink());
        assert_eq!(got.data, b"GET / HTTP");
    }

    #[test]
    fn without_syn_an_earlier_start_replaces_a_provisional_one() {
        let mut s = Stream::new();
        let mut got = Got::default();
        let cfg = DpiConfig::default();
        let starts = |p: &[u8]| p.starts_with(b"\x16\x03");
        // the second and third segments arrive first
        s.segment(&cfg, &meta(2010, ACK), b"part2", starts, &mut got.sink());
        s.segment(&cfg, &meta(2015, ACK), b"part3", starts, &mut got.sink());
        assert!(got.data.is_empty());
        assert!(s.start_unknown());
        s.segment(
            &cfg,
            &meta(2000, ACK),
            b"\x16\x03part1...",
            starts,
            &mut got.sink(),
        );
        assert_eq!(got.data, b"\x16\x03part1...part2part3");
        assert!(!s.start_unknown());
    }

    #[test]
    fn provisional_start_is_released_when_no_earlier_start_comes() {
        let cfg = DpiConfig {
            max_ooo_segments: 2,
            ..DpiConfig::default()
        };
        let mut s = Stream::new();
        let mut got = Got::default();
        for (i, seq) in [10u32, 13, 19].into_iter().enumerate() {
            assert!(got.data.is_empty(), "segment {i}");
            s.segment(&cfg, &meta(seq, ACK), b"xyz", never, &mut got.sink());
        }
        assert_eq!(got.data, b"xyzxyz");
        assert!(got.gaps.is_empty());
        assert_eq!(
            s.held_segments(),
            1,
            "19.. waits for 16..19 as any out-of-order segment"
        );
        s.flush(&mut got.sink());
        assert_eq!(got.data, b"xyzxyzxyz");
        assert_eq!(got.gaps, vec![(6, 3)]);
    }

    #[test]
    fn provisional_start_ends_when_a_later_segment_looks_like_a_start() {
        let mut s = Stream::new();
        let mut got = Got::default();
        let cfg = DpiConfig::default();
        let starts = |p: &[u8]| p.starts_with(b"GET ");
        s.segment(&cfg, &meta(100, ACK), b"...tail", starts, &mut got.sink());
        assert!(got.data.is_empty());
        s.segment(&cfg, &meta(107, ACK), b"GET / ", starts, &mut got.sink());
        assert_eq!(got.data, b"...tailGET / ");
        assert!(!s.start_unknown());
    }

    #[test]
    fn late_syn_fixes_the_start_of_held_data() {
        let mut s = Stream::new();
        let mut got = Got::default();
        feed(&mut s, &mut got, 52, ACK, b"world");
        feed(&mut s, &mut got, 40, SYN, b"");
        assert!(got.data.is_empty());
        feed(&mut s, &mut got, 41, ACK, b"hello, the ");
        assert_eq!(got.data, b"hello, the world");
    }

    #[test]
    fn flush_delivers_held_data_after_gaps() {
        let mut s = Stream::new();
        let mut got = Got::default();
        feed(&mut s, &mut got, 0, SYN, b"");
        feed(&mut s, &mut got, 1, ACK, b"a");
        feed(&mut s, &mut got, 5, ACK, b"e");
        feed(&mut s, &mut got, 3, ACK, b"c");
        s.flush(&mut got.sink());
        assert_eq!(got.data, b"ace");
        assert_eq!(got.gaps, vec![(1, 1), (2, 1)]);
    }

    #[test]
    fn far_ahead_segments_are_ignored() {
        let mut s = Stream::new();
        let mut got = Got::default();
        feed(&mut s, &mut got, 0, SYN, b"");
        feed(&mut s, &mut got, 0x7000_0000, ACK, b"bogus");
        assert_eq!(s.held_segments(), 0);
    }

    #[test]
    fn random_segments_never_panic_and_stay_bounded() {
        let cfg = DpiConfig::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let buf = [0x5au8; 3000];
        for _ in 0..200 {
            let mut s = Stream::new();
            let base = rnd() as u32;
            let mut total = 0usize;
            for _ in 0..50 {
                let r = rnd();
                let seq = base.wrapping_add((r % 20_000) as u32);
                let len = ((r >> 20) % 3000) as usize;
                let flags = if r >> 40 & 7 == 0 { SYN } else { ACK };
                s.segment(
                    &cfg,
                    &meta(seq, flags),
                    &buf[..len],
                    |p| p.len() % 2 == 0,
                    &mut |c| {
                        if let Chunk::Data(d) = c {
                            total += d.len()
                        }
                    },
                );
                assert!(s.held_segments() <= cfg.max_ooo_segments);
                assert!(s.held_bytes() <= cfg.max_buffer);
            }
            s.flush(&mut |_| {});
            assert_eq!(s.held_segments(), 0);
        }
    }
}
