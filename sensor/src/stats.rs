//! Run counters and the end-of-run summary. Every frame read ends in exactly one bucket, and
//! the summary shows that they add up.

use std::fmt;
use std::time::Duration;

use crate::decode::DecodeStats;
use crate::export::eve::EveStats;
use crate::export::sink::SinkReport;
use crate::export::EndReason;
use crate::flow::FlowStats;

/// What the reader did with the frames it read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub files: u64,
    pub frames: u64,
    /// Bytes on the wire of all frames read.
    pub bytes: u64,
    /// Packets handed to workers (a reassembled datagram counts once).
    pub dispatched: u64,
    /// Fragments absorbed into reassembly (their datagram is dispatched once complete).
    pub fragments_held: u64,
    pub not_ip: u64,
    /// Frames the decoder dropped (truncated, malformed, unsupported, fragment budget).
    pub decode_dropped: u64,
    /// Packets dropped because a worker's ring was full (live capture only; replay waits).
    pub ring_full: u64,
    /// Times the reader waited for a full ring (replay back-pressure, not a loss).
    pub ring_waits: u64,
    /// Files that ended with a truncated or corrupt record.
    pub file_errors: u64,
}

impl ReaderStats {
    /// Counts a frame that gives no packet to hand on (held fragment, not IP, dropped).
    pub fn count_no_packet(&mut self, d: &crate::decode::Decoded) {
        use crate::decode::Decoded;
        match d {
            Decoded::FragmentHeld => self.fragments_held += 1,
            Decoded::NotIp => self.not_ip += 1,
            Decoded::Dropped(_) => self.decode_dropped += 1,
            Decoded::Packet(_) | Decoded::Reassembled(..) => {}
        }
    }
}

/// Everything a run reports at its end.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub reader: ReaderStats,
    pub decode: DecodeStats,
    pub flows: FlowStats,
    pub eve: EveStats,
    /// Network sinks (ClickHouse, NATS), when on.
    pub sinks: Vec<SinkReport>,
    /// Incomplete IP datagrams (and their fragments) still held when the capture ended.
    pub frag_pending: (u64, u64),
    pub workers: usize,
    pub elapsed: Duration,
    /// True for `--no-decode` runs, which only read frames.
    pub read_only: bool,
    /// Live capture: what happened before the capture threads (`reader.frames` is then what
    /// the XDP program saw).
    pub live: Option<LiveStats>,
}

/// Where live packets went before (or instead of) reaching a capture thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub iface: String,
    /// `driver` or `skb`.
    pub xdp_mode: &'static str,
    pub queues: usize,
    /// Frames the XDP program redirected to a socket.
    pub redirected: u64,
    /// Frames received from the sockets (by the capture threads).
    pub received: u64,
    /// Redirected but lost by the socket (rx ring full, no fill ring frame).
    pub socket_dropped: u64,
    /// Passed to the kernel, uncaptured: no socket on their queue.
    pub no_socket: u64,
    /// Passed to the kernel, uncaptured: outside the capture filter.
    pub filtered: u64,
    /// Dropped in XDP: blocklisted address.
    pub blocked: u64,
    /// Counted and dropped in XDP: bypassed flows (their counts are in the flow records).
    pub bypassed: u64,
    /// The command channel's counts, when it ran.
    pub commands: Option<crate::command::CommandStats>,
}

impl Summary {
    /// Frames accounted for; equals `reader.frames` when nothing went missing.
    pub fn accounted(&self) -> u64 {
        let r = &self.reader;
        if self.read_only {
            return r.frames;
        }
        let live = self.live.as_ref().map_or(0, |l| {
            l.socket_dropped + l.no_socket + l.filtered + l.blocked + l.bypassed
        });
        live + self.flows.packets
            + self.flows.table_full_drops
            + r.ring_full
            + r.fragments_held
            + r.not_ip
            + r.decode_dropped
    }

    pub fn pps(&self) -> f64 {
        self.reader.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn gbps(&self) -> f64 {
        self.reader.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.reader;
        writeln!(
            f,
            "summary: files={} packets={} bytes={} seconds={:.3} pps={:.0} gbps={:.3} workers={}",
            r.files,
            r.frames,
            r.bytes,
            self.elapsed.as_secs_f64(),
            self.pps(),
            self.gbps(),
            self.workers
        )?;
        if self.read_only {
            return write!(f, "  (read only: --no-decode)");
        }
        let fl = &self.flows;
        let reasons: Vec<String> = EndReason::ALL
            .iter()
            .zip(fl.exported)
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        writeln!(
            f,
            "  flows: {} ({})",
            fl.exported_total(),
            reasons.join(" ")
        )?;
        writeln!(
            f,
            "  events: tls={} http={} dns={} quic={}",
            fl.events_tls, fl.events_http, fl.events_dns, fl.events_quic
        )?;
        if fl.quic_state_full + fl.quic_crypto_dropped > 0 {
            writeln!(
                f,
                "  quic: {} flow(s) not inspected (dpi.max_quic_flows reached), {} CRYPTO byte(s) not reassembled",
                fl.quic_state_full, fl.quic_crypto_dropped
            )?;
        }
        let d = &self.decode;
        writeln!(
            f,
            "  decode: ipv4={} ipv6={} tcp={} udp={} icmp={} other_l4={} vlan={} tunnelled={} fragments={} reassembled={}",
            d.ipv4, d.ipv6, d.tcp, d.udp, d.icmp, d.other_l4, d.vlan, d.tunnelled, d.fragments, d.reassembled
        )?;
        writeln!(
            f,
            "  drops: truncated={} malformed={} unsupported={} frag_budget={} frag_timeout={} ring_full={} flow_table_full={}",
            d.truncated, d.malformed, d.unsupported, d.frag_dropped, d.frag_timeouts, r.ring_full, fl.table_full_drops
        )?;
        if r.file_errors > 0 {
            writeln!(
                f,
                "  file errors: {} file(s) ended in a truncated or corrupt record; the rest of each was skipped",
                r.file_errors
            )?;
        }
        for s in &self.sinks {
            write_sink(f, s)?;
        }
        if r.ring_waits > 0 {
            writeln!(
                f,
                "  back-pressure: the reader waited {} times for a full worker ring (replay is lossless)",
                r.ring_waits
            )?;
        }
        if self.frag_pending.0 > 0 {
            writeln!(
                f,
                "  incomplete at end: {} IP datagrams ({} fragments, counted in fragments_held)",
                self.frag_pending.0, self.frag_pending.1
            )?;
        }
        if let Some(l) = &self.live {
            write_live(f, l, fl)?;
        }
        self.write_accounting(f)
    }
}

impl Summary {
    /// The last line: every packet read is accounted for by where it went.
    fn write_accounting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, fl) = (&self.reader, &self.flows);
        let ok = if self.accounted() == r.frames {
            "ok"
        } else {
            "MISMATCH"
        };
        write!(
            f,
            "  accounting: packets {} = processed {} + not_ip {} + fragments_held {} + decode_dropped {} + ring_full {} + flow_table_full {} [{ok}]",
            r.frames,
            fl.packets,
            r.not_ip,
            r.fragments_held,
            r.decode_dropped,
            r.ring_full,
            fl.table_full_drops
        )?;
        if let Some(l) = &self.live {
            write!(
                f,
                " (live: rx counted by XDP; + socket_dropped {} + no_socket {} + filtered {} + blocked {} + bypassed {})",
                l.socket_dropped, l.no_socket, l.filtered, l.blocked, l.bypassed
            )?;
        }
        Ok(())
    }
}

/// A sink's line and its accounting line (rows in = rows out).
fn write_sink(f: &mut fmt::Formatter<'_>, s: &SinkReport) -> fmt::Result {
    writeln!(
            f,
            "  sink {}: sent={} batches={} failed={} lost={} retried={} spooled={} replayed={} spool_dropped={} spool_corrupt={} spool_peak_bytes={} spool_left_bytes={} catch_up_ms={}",
            s.name,
            s.sent_rows,
            s.sent_batches,
            s.failed_rows,
            s.lost_rows,
            s.transient_errors,
            s.spool.spooled_rows,
            s.spool.replayed_rows,
            s.spool.dropped_rows,
            s.spool.corrupt_records,
            s.spool.peak_bytes,
            s.spool_bytes_left,
            s.catch_up.as_millis()
        )?;
    let (rin, rout) = (s.rows_in(), s.rows_out());
    let ok = if rin == rout {
        "ok".to_string()
    } else {
        format!("MISMATCH by {}", i128::from(rin) - i128::from(rout))
    };
    writeln!(
            f,
            "  export accounting {}: emitted {} + resumed {} = acknowledged {} + rejected {} + in_spool {} + dropped_oldest {} + lost {} + corrupt {} [{ok}]",
            s.name,
            s.emitted_rows,
            s.spool.resumed_rows,
            s.sent_rows,
            s.failed_rows,
            s.spool_rows_left,
            s.spool.dropped_rows,
            s.lost_rows,
            s.spool.corrupt_rows
        )?;
    if let (Some(a), Some(b)) = (&s.spool.dropped_first, &s.spool.dropped_last) {
        writeln!(
                f,
                "  sink {} spool full: dropped the oldest {} rows in {} segment(s), records {a} to {b} (in spool order)",
                s.name, s.spool.dropped_rows, s.spool.dropped_segments
            )?;
    }
    Ok(())
}

/// The live capture's XDP counters and the command channel's.
fn write_live(f: &mut fmt::Formatter<'_>, l: &LiveStats, fl: &FlowStats) -> fmt::Result {
    writeln!(
            f,
            "  live: iface={} xdp_mode={} queues={} redirected={} received={} socket_dropped={} no_socket={} filtered={} blocked={} bypassed={} (bypass counts added to flows: {} packets, {} after their flow ended)",
            l.iface,
            l.xdp_mode,
            l.queues,
            l.redirected,
            l.received,
            l.socket_dropped,
            l.no_socket,
            l.filtered,
            l.blocked,
            l.bypassed,
            fl.bypass_packets,
            fl.bypass_orphan_packets
        )?;
    if let Some(c) = &l.commands {
        let causes: Vec<String> = c.rejected.iter().map(|(k, n)| format!("{k}={n}")).collect();
        writeln!(
            f,
            "  commands: received={} applied={} failed={} rejected={} ({})",
            c.received,
            c.applied,
            c.failed,
            c.rejected.iter().map(|(_, n)| n).sum::<u64>(),
            causes.join(" ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::sink::SinkReport;
    use crate::export::spool::SpoolStats;

    fn line(s: &Summary, what: &str) -> String {
        s.to_string()
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn export_accounting_adds_up_or_says_by_how_much_it_does_not() {
        let mut r = SinkReport {
            name: "clickhouse",
            emitted_rows: 100,
            sent_rows: 80,
            failed_rows: 2,
            lost_rows: 1,
            spool_rows_left: 7,
            spool: SpoolStats {
                resumed_rows: 10,
                dropped_rows: 15,
                corrupt_rows: 5,
                dropped_segments: 1,
                dropped_first: Some("flows/s/1/0".into()),
                dropped_last: Some("flows/s/9/0".into()),
                ..SpoolStats::default()
            },
            ..SinkReport::default()
        };
        let mut s = Summary {
            sinks: vec![r.clone()],
            ..Summary::default()
        };
        let ok = line(&s, "export accounting clickhouse:");
        assert!(ok.ends_with("[ok]"), "{ok}");
        assert!(
            ok.contains("emitted 100 + resumed 10 = acknowledged 80"),
            "{ok}"
        );
        let dropped = line(&s, "spool full: dropped the oldest 15 rows");
        assert!(
            dropped.contains("records flows/s/1/0 to flows/s/9/0"),
            "{dropped}"
        );
        r.sent_rows = 77;
        s.sinks = vec![r];
        let bad = line(&s, "export accounting clickhouse:");
        assert!(bad.ends_with("[MISMATCH by 3]"), "{bad}");
    }
}
