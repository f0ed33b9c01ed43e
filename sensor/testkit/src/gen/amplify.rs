//! Capture amplifier: builds the large capture of the replay benchmark (`benches/replay.sh`) out
//! of small real ones.
//!
//! `pcapgen amplify --out FILE --target-bytes 1G INPUT...` reads every input (pcap or pcapng
//! files; a directory stands for its `*.pcap`/`*.pcapng` files, sorted by name), keeps the
//! Ethernet packets (LINKTYPE 1; other link types are skipped and counted), and writes ONE
//! classic pcap (Ethernet, nanosecond timestamps) made of whole successive copies of all inputs,
//! until at least `--target-bytes` are written.
//!
//! Copy `k` (k = 0, 1, ...) is the concatenation of the inputs with:
//! - **Timestamps** shifted so that copies follow each other: within a copy, input `i+1` starts
//!   [`INPUT_GAP_NS`] after input `i` ends, each input keeping its own relative timing; copy `k+1`
//!   starts [`INPUT_GAP_NS`] after copy `k` ends. Idle gaps longer than `--max-gap` (default one
//!   hour) inside an input are shortened to `--max-gap`: some public captures are merges of
//!   traces years apart, which would otherwise push the 32-bit pcap seconds past 2106 after a
//!   few copies. Gaps up to `--max-gap` (longer than usual flow idle timeouts) are kept exactly.
//! - **Addresses** rewritten so that each copy's flows are new flows: the outermost IPv4/IPv6
//!   source and destination of every frame (after up to four 802.1Q/802.1ad tags) go through
//!   [`map_ipv4`]/[`map_ipv6`], one bijection per copy applied to every address, so both
//!   directions of a flow stay consistent and its two endpoints stay distinct. Copy 0 is the
//!   identity (the inputs as they are). Multicast and broadcast addresses, and addresses whose
//!   last 16 bits are all zeros or all ones (0.0.0.0, ::, /16 broadcasts), are left as they
//!   are; loopback addresses are rewritten (inside 127/8), since loopback captures hold real
//!   flows. Inner addresses of tunnels, ARP payloads and MAC addresses are not touched.
//! - **Checksums** adjusted incrementally (RFC 1624): the IPv4 header checksum and, when the
//!   transport header is in the outer datagram's first fragment, the TCP/UDP/ICMPv6 checksum
//!   (their pseudo-header holds the addresses). A checksum that was wrong in the input stays
//!   wrong by the same amount, so the copies carry the same mix of good and bad checksums as
//!   the inputs. Left stale: the transport checksum of IPv6 packets whose routing header has
//!   segments left (their pseudo-header uses the final destination, which is not rewritten).
//!   Tunnelled inner packets keep their addresses, hence their checksums. No benchmarked tool
//!   verifies L4 checksums, so stale ones would not change the figures anyway.
//!
//! The output is deterministic: the same inputs (in the same order) and arguments give the same
//! bytes. Inputs are read once into memory (they are small; the real corpus is ~19 MB), the
//! output is streamed through a `BufWriter` into `FILE.partial`, renamed to `FILE` when complete
//! (so an interrupted run never leaves a capture that looks finished).
//!
//! Hand-written rather than `tcprewrite --seed` per copy + `mergecap`: one pass, no temporary
//! copies, pcapng inputs, checksums kept consistent, and no extra package to install.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError};

use crate::gen::pcap_writer::PcapWriter;

/// Gap inserted between two inputs of a copy, and between two copies.
pub const INPUT_GAP_NS: u64 = 1_000_000_000;

/// Most copies: [`map_ipv4`] gives distinct addresses to copies `0..MAX_COPIES`.
const MAX_COPIES: u64 = CYCLE as u64 * 256;

#[derive(clap::Args, Debug, Clone)]
pub struct AmplifyArgs {
    /// Output capture (classic pcap, Ethernet, nanosecond timestamps).
    #[arg(long)]
    pub out: PathBuf,
    /// Write whole copies until the output holds at least this many bytes. Suffixes K, M, G, T
    /// (powers of 1024, optional trailing "B"/"iB"): 1G, 200M, 512k.
    #[arg(long, value_parser = parse_size)]
    pub target_bytes: u64,
    /// Longest idle gap kept inside an input, in seconds; longer gaps are shortened to it.
    #[arg(long, default_value_t = 3600)]
    pub max_gap: u64,
    /// Input captures (pcap or pcapng) or directories of them (*.pcap, *.pcapng, sorted by name).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// Parses a byte count with an optional binary suffix: `1G`, `200M`, `64k`, `1GiB`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, mult) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1u64 << 10),
        Some('m') => (&body[..body.len() - 1], 1 << 20),
        Some('g') => (&body[..body.len() - 1], 1 << 30),
        Some('t') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. 1G, 200M, 4096)"))?;
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("size {s:?} is zero or too large"))
}

/// One kept packet: its bytes live in [`Corpus::arena`].
#[derive(Debug, Clone, Copy)]
struct Packet {
    /// Offset from the copy's start, in nanoseconds (after gap shortening).
    offset_ns: u64,
    start: usize,
    len: u32,
    orig_len: u32,
}

/// What was found in one input file.
#[derive(Debug, Default)]
struct FileLoad {
    ethernet: usize,
    other_linktype: usize,
    truncated: bool,
}

/// All kept packets of all inputs, in input order, with offsets relative to the copy start.
#[derive(Debug, Default)]
struct Corpus {
    arena: Vec<u8>,
    packets: Vec<Packet>,
    /// First timestamp of the first input (absolute, ns): where copy 0 starts.
    start_ns: Option<u64>,
    /// Length of one copy including the trailing gap (ns).
    copy_span_ns: u64,
    /// Record bytes of one copy (16-byte headers + captured bytes).
    copy_bytes: u64,
    snaplen: u32,
}

/// What `amplify` did, for the one-line report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AmplifyStats {
    pub files: usize,
    pub used: usize,
    pub skipped_non_ethernet: usize,
    pub skipped_unreadable: usize,
    pub skipped_empty: usize,
    pub truncated: usize,
    pub non_ethernet_packets: usize,
    pub copies: u64,
    pub packets_per_copy: u64,
    pub packets: u64,
    pub bytes: u64,
    pub copy_span_ns: u64,
}

impl AmplifyStats {
    fn report(&self, out: &Path) -> String {
        format!(
            "amplify: {} of {} files used (skipped: {} non-Ethernet, {} unreadable, {} empty; \
             {} truncated, kept what parsed; {} non-Ethernet packets dropped), copies={} \
             packets_per_copy={} packets={} bytes={} copy_span_s={:.0} -> {}",
            self.used,
            self.files,
            self.skipped_non_ethernet,
            self.skipped_unreadable,
            self.skipped_empty,
            self.truncated,
            self.non_ethernet_packets,
            self.copies,
            self.packets_per_copy,
            self.packets,
            self.bytes,
            self.copy_span_ns as f64 / 1e9,
            out.display()
        )
    }
}

/// Entry point of `pcapgen amplify`: returns the one-line report.
pub fn run(args: &AmplifyArgs) -> anyhow::Result<String> {
    let files = collect_inputs(&args.inputs)?;
    // Write next to the target and rename at the end, unless the target is not a regular file
    // (e.g. /dev/null or a FIFO), which is written directly.
    let direct = std::fs::metadata(&args.out).is_ok_and(|m| !m.is_file());
    let tmp = if direct {
        args.out.clone()
    } else {
        let mut name = args.out.clone().into_os_string();
        name.push(".partial");
        PathBuf::from(name)
    };
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let out = BufWriter::with_capacity(1 << 20, file);
    let stats = match amplify(&files, out, args.target_bytes, args.max_gap) {
        Ok(s) => s,
        Err(e) => {
            if !direct {
                let _ = std::fs::remove_file(&tmp);
            }
            return Err(e);
        }
    };
    if !direct {
        std::fs::rename(&tmp, &args.out)
            .with_context(|| format!("renaming {} to {}", tmp.display(), args.out.display()))?;
    }
    Ok(stats.report(&args.out))
}

/// Expands directories into their `*.pcap`/`*.pcapng` files (sorted by file name); files are
/// kept in the order given.
fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).with_context(|| format!("input {}", input.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading directory {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| e == "pcap" || e == "pcapng")
                })
                .collect();
            found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    if files.is_empty() {
        bail!("no *.pcap or *.pcapng input found");
    }
    Ok(files)
}

/// Amplifies `files` into `out` (a classic pcap stream). Exposed for tests and other tools.
pub fn amplify<W: Write>(
    files: &[PathBuf],
    out: W,
    target_bytes: u64,
    max_gap_s: u64,
) -> anyhow::Result<AmplifyStats> {
    let max_gap_ns = max_gap_s.saturating_mul(1_000_000_000).max(1);
    let mut corpus = Corpus {
        snaplen: 65535,
        ..Corpus::default()
    };
    let mut stats = AmplifyStats {
        files: files.len(),
        ..AmplifyStats::default()
    };
    for path in files {
        let mut abs: Vec<u64> = Vec::new();
        let first_packet = corpus.packets.len();
        let load = match load_file(path, &mut corpus, &mut abs) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("pcapgen amplify: skipping {}: {e:#}", path.display());
                stats.skipped_unreadable += 1;
                continue;
            }
        };
        stats.non_ethernet_packets += load.other_linktype;
        if load.truncated {
            stats.truncated += 1;
            eprintln!(
                "pcapgen amplify: {}: unreadable after {} packets (truncated or malformed); \
                 keeping those",
                path.display(),
                load.ethernet + load.other_linktype
            );
        }
        if load.ethernet == 0 {
            if load.other_linktype > 0 {
                stats.skipped_non_ethernet += 1;
            } else {
                stats.skipped_empty += 1;
            }
            continue;
        }
        stats.used += 1;
        // Place this input after the previous ones, shortening long idle gaps.
        let base = corpus.copy_span_ns;
        let rel = compress_gaps(&abs, max_gap_ns);
        let span = rel.iter().copied().max().unwrap_or(0);
        corpus
            .start_ns
            .get_or_insert(abs.iter().copied().min().unwrap_or(0));
        for (p, r) in corpus.packets[first_packet..].iter_mut().zip(rel) {
            p.offset_ns = base + r;
        }
        corpus.copy_span_ns = base + span + INPUT_GAP_NS;
    }
    if corpus.packets.is_empty() {
        bail!("no Ethernet packet in {} input file(s)", files.len());
    }
    corpus.copy_bytes = corpus.packets.iter().map(|p| 16 + u64::from(p.len)).sum();
    let copies = target_bytes
        .saturating_sub(24)
        .div_ceil(corpus.copy_bytes)
        .max(1);
    if copies > MAX_COPIES {
        bail!(
            "{copies} copies needed (one copy is {} bytes); at most {MAX_COPIES} are distinct",
            corpus.copy_bytes
        );
    }
    let start_ns = corpus.start_ns.unwrap_or(0);
    let end_ns = u128::from(start_ns) + u128::from(copies) * u128::from(corpus.copy_span_ns);
    if end_ns >= u128::from(u32::MAX) * 1_000_000_000 {
        bail!(
            "{copies} copies of {:.0} s each would overflow pcap's 32-bit seconds; use a \
             smaller --max-gap",
            corpus.copy_span_ns as f64 / 1e9
        );
    }

    let mut w = PcapWriter::new(out, 1, corpus.snaplen, true).context("writing pcap header")?;
    let mut frame: Vec<u8> = Vec::with_capacity(corpus.snaplen as usize);
    for k in 0..copies {
        let copy_start = start_ns + k * corpus.copy_span_ns;
        for p in &corpus.packets {
            let data = &corpus.arena[p.start..p.start + p.len as usize];
            let ts = copy_start + p.offset_ns;
            if k == 0 {
                w.write(ts, data, p.orig_len)
            } else {
                frame.clear();
                frame.extend_from_slice(data);
                rewrite_frame(&mut frame, k as u32);
                w.write(ts, &frame, p.orig_len)
            }
            .context("writing output")?;
        }
    }
    w.into_inner().context("flushing output")?;
    stats.copies = copies;
    stats.packets_per_copy = corpus.packets.len() as u64;
    stats.packets = copies * corpus.packets.len() as u64;
    stats.bytes = 24 + copies * corpus.copy_bytes;
    stats.copy_span_ns = corpus.copy_span_ns;
    Ok(stats)
}

/// Maps absolute timestamps to offsets from the earliest one, preserving order, with every gap
/// between consecutive distinct timestamps capped at `max_gap_ns`.
fn compress_gaps(abs: &[u64], max_gap_ns: u64) -> Vec<u64> {
    let mut sorted: Vec<u64> = abs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut mapped = Vec::with_capacity(sorted.len());
    let mut acc = 0u64;
    for (i, &t) in sorted.iter().enumerate() {
        if i > 0 {
            acc += (t - sorted[i - 1]).min(max_gap_ns);
        }
        mapped.push(acc);
    }
    abs.iter()
        .map(|t| mapped[sorted.binary_search(t).unwrap_or(0)])
        .collect()
}

/// Per-interface facts of a pcapng section.
#[derive(Clone, Copy)]
struct Iface {
    ethernet: bool,
    resolution: u64,
    offset_s: i64,
    snaplen: u32,
}

/// Reads one capture into the corpus: Ethernet packets' bytes go to the arena, their absolute
/// timestamps (ns) to `abs`. A parse error mid-file keeps what was read before it.
fn load_file(path: &Path, corpus: &mut Corpus, abs: &mut Vec<u64>) -> anyhow::Result<FileLoad> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A buffer as large as the file (bounded) holds any block the file can contain.
    let capacity = (file_len.min(64 << 20) as usize).max(1 << 16) + 1;
    let mut reader = pcap_parser::create_reader(capacity, file)
        .map_err(|e| anyhow::anyhow!("not a pcap or pcapng file ({e:?})"))?;
    let mut load = FileLoad::default();
    let mut legacy_ethernet = false;
    let mut legacy_nanos = false;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut last_ts = 0u64;
    let mut stalls = 0;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                stalls = 0;
                // (timestamp ns, captured bytes, original length) of a kept packet.
                let mut kept: Option<(u64, &[u8], u32)> = None;
                match &block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_ethernet = h.network == Linktype::ETHERNET;
                        legacy_nanos = h.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(b) => {
                        if legacy_ethernet {
                            let frac = if legacy_nanos {
                                u64::from(b.ts_usec)
                            } else {
                                u64::from(b.ts_usec) * 1000
                            };
                            let ts = u64::from(b.ts_sec) * 1_000_000_000 + frac;
                            kept = Some((ts, b.data, b.origlen));
                        } else {
                            load.other_linktype += 1;
                        }
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => ifaces.push(Iface {
                        ethernet: idb.linktype == Linktype::ETHERNET,
                        resolution: idb.ts_resolution().unwrap_or(1_000_000),
                        offset_s: idb.ts_offset(),
                        snaplen: idb.snaplen,
                    }),
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match ifaces.get(epb.if_id as usize) {
                            Some(iface) if iface.ethernet => {
                                let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let ns = u128::from(ticks) * 1_000_000_000
                                    / u128::from(iface.resolution.max(1));
                                let ns = ns as i128 + i128::from(iface.offset_s) * 1_000_000_000;
                                let ts = ns.clamp(0, i128::from(u64::MAX)) as u64;
                                kept = Some((ts, epb.packet_data(), epb.origlen));
                            }
                            _ => load.other_linktype += 1,
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => match ifaces.first() {
                        Some(iface) if iface.ethernet => {
                            let mut data = spb.packet_data();
                            if iface.snaplen > 0 && data.len() > iface.snaplen as usize {
                                data = &data[..iface.snaplen as usize];
                            }
                            // No timestamp in an SPB: it shares the previous packet's.
                            kept = Some((last_ts, data, spb.origlen));
                        }
                        _ => load.other_linktype += 1,
                    },
                    PcapBlockOwned::NG(_) => {}
                }
                if let Some((ts, data, orig_len)) = kept {
                    corpus.packets.push(Packet {
                        offset_ns: 0,
                        start: corpus.arena.len(),
                        len: data.len() as u32,
                        orig_len: orig_len.max(data.len() as u32),
                    });
                    corpus.arena.extend_from_slice(data);
                    corpus.snaplen = corpus.snaplen.max(data.len() as u32);
                    abs.push(ts);
                    last_ts = ts;
                    load.ethernet += 1;
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                stalls += 1;
                if stalls > 4 || reader.refill().is_err() {
                    load.truncated = true;
                    break;
                }
            }
            Err(_) => {
                load.truncated = true;
                break;
            }
        }
    }
    Ok(load)
}

/// Number of values the last 16-bit word cycles through: 0x0001..=0xfffe (0x0000 and 0xffff,
/// e.g. 0.0.0.0, 255.255.255.255, ::, the network and broadcast addresses of /16s, stay fixed).
const CYCLE: u32 = 0xfffe;

/// Maps the last 16-bit word `h` of an address for copy `copy`: a rotation of 1..=0xfffe by
/// `copy` times a constant prime to [`CYCLE`], so that successive copies land far apart (not on
/// neighbouring hosts of the input) and the first [`CYCLE`] copies are all distinct.
fn map_low16(h: u16, copy: u32) -> u16 {
    if h == 0 || h == 0xffff {
        return h;
    }
    let d = (copy % CYCLE) * 0x9e37 % CYCLE;
    (1 + (u32::from(h) - 1 + d) % CYCLE) as u16
}

/// The IPv4 address of `a` in copy `copy` (copy 0: unchanged): the last 16 bits go through
/// [`map_low16`], and from copy [`CYCLE`] on the second byte gets `copy / CYCLE` added; a
/// bijection within each /8. Multicast, reserved and broadcast (224.0.0.0/3) are left as they
/// are (a multicast flow's source is unicast, so the flow still changes). Loopback is
/// rewritten (inside 127/8): loopback captures hold real flows.
pub fn map_ipv4(a: [u8; 4], copy: u32) -> [u8; 4] {
    let low = u16::from_be_bytes([a[2], a[3]]);
    if a[0] >= 224 || low == 0 || low == 0xffff {
        return a;
    }
    let [b2, b3] = map_low16(low, copy).to_be_bytes();
    [a[0], a[1].wrapping_add((copy / CYCLE) as u8), b2, b3]
}

/// The IPv6 address of `a` in copy `copy` (copy 0: unchanged): the last 16-bit word goes
/// through [`map_low16`], the one before gets `copy / CYCLE` added; a bijection within each
/// /96. Multicast (ff00::/8) is left as it is; `::` stays `::`, `::1` is rewritten.
pub fn map_ipv6(a: [u8; 16], copy: u32) -> [u8; 16] {
    let low = u16::from_be_bytes([a[14], a[15]]);
    if a[0] == 0xff || low == 0 || low == 0xffff {
        return a;
    }
    let mut r = a;
    let w7 = map_low16(low, copy);
    let w6 = u16::from_be_bytes([a[12], a[13]]).wrapping_add((copy / CYCLE) as u16);
    r[12..14].copy_from_slice(&w6.to_be_bytes());
    r[14..16].copy_from_slice(&w7.to_be_bytes());
    r
}

/// Rewrites the outermost IP addresses of an Ethernet frame for copy `copy`, adjusting the
/// checksums that cover them. Frames too short to hold what is touched are left alone.
pub fn rewrite_frame(f: &mut [u8], copy: u32) {
    if f.len() < 14 {
        return;
    }
    let mut off = 12;
    let mut ethertype = be16(f, off);
    let mut tags = 0;
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) && tags < 4 {
        if f.len() < off + 6 {
            return;
        }
        off += 4;
        ethertype = be16(f, off);
        tags += 1;
    }
    let ip = &mut f[off + 2..];
    match ethertype {
        0x0800 => rewrite_ipv4(ip, copy),
        0x86dd => rewrite_ipv6(ip, copy),
        _ => {}
    }
}

fn rewrite_ipv4(p: &mut [u8], copy: u32) {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return;
    }
    let old: [u8; 8] = p[12..20].try_into().expect("8 bytes");
    let src = map_ipv4(old[..4].try_into().expect("4 bytes"), copy);
    let dst = map_ipv4(old[4..].try_into().expect("4 bytes"), copy);
    let mut new = [0u8; 8];
    new[..4].copy_from_slice(&src);
    new[4..].copy_from_slice(&dst);
    if new == old {
        return;
    }
    p[12..20].copy_from_slice(&new);
    let ck = csum_adjust(be16(p, 10), &old, &new);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    // Transport checksum, when this is the first (or only) fragment and its header is here.
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let frag_offset = be16(p, 6) & 0x1fff;
    if ihl >= 20 && frag_offset == 0 {
        adjust_l4(p, ihl, p[9], &old, &new, true);
    }
}

fn rewrite_ipv6(p: &mut [u8], copy: u32) {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return;
    }
    let old: [u8; 32] = p[8..40].try_into().expect("32 bytes");
    let src = map_ipv6(old[..16].try_into().expect("16 bytes"), copy);
    let dst = map_ipv6(old[16..].try_into().expect("16 bytes"), copy);
    let mut new = [0u8; 32];
    new[..16].copy_from_slice(&src);
    new[16..].copy_from_slice(&dst);
    if new == old {
        return;
    }
    p[8..40].copy_from_slice(&new);
    // Walk the extension headers to the transport header of the first fragment.
    let mut next = p[6];
    let mut off = 40;
    for _ in 0..8 {
        match next {
            0 | 60 | 51 => {
                if p.len() < off + 2 {
                    return;
                }
                let len = if next == 51 {
                    (usize::from(p[off + 1]) + 2) * 4
                } else {
                    (usize::from(p[off + 1]) + 1) * 8
                };
                next = p[off];
                off += len;
            }
            44 => {
                if p.len() < off + 8 || be16(p, off + 2) >> 3 != 0 {
                    return;
                }
                next = p[off];
                off += 8;
            }
            43 => {
                // With segments left, the pseudo-header holds the final destination (in the
                // routing header, not rewritten): leave the checksum alone.
                if p.len() < off + 4 || p[off + 3] != 0 {
                    return;
                }
                next = p[off];
                off += (usize::from(p[off + 1]) + 1) * 8;
            }
            _ => break,
        }
    }
    adjust_l4(p, off, next, &old, &new, false);
}

/// Adjusts the TCP, UDP or ICMPv6 checksum of the transport header at `off`, if it was
/// captured, for the address change `old` -> `new`.
fn adjust_l4(p: &mut [u8], off: usize, proto: u8, old: &[u8], new: &[u8], ipv4: bool) {
    let at = match proto {
        6 => off + 16,
        17 => off + 6,
        58 if !ipv4 => off + 2,
        _ => return,
    };
    if p.len() < at + 2 {
        return;
    }
    let ck = be16(p, at);
    if proto == 17 && ck == 0 {
        // No UDP checksum (IPv4), or an invalid zero one (IPv6): leave it.
        return;
    }
    let mut new_ck = csum_adjust(ck, old, new);
    if proto == 17 && new_ck == 0 {
        new_ck = 0xffff;
    }
    p[at..at + 2].copy_from_slice(&new_ck.to_be_bytes());
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` over the 16-bit words of `old`/`new`.
fn csum_adjust(ck: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = u32::from(!ck);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]))
            + u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CLIENT4: [u8; 4] = [192, 168, 1, 10];
    const SERVER4: [u8; 4] = [93, 184, 216, 34];
    const CLIENT6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const SERVER6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53,
    ];

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn tcp4_vlan(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(etherparse::VlanId::try_new(42).unwrap())
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1000, 64000)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(src, dst, 64)
            .tcp(sport, dport, 7, 64000)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    /// Input A: a UDP exchange (IPv4) and a TCP exchange over a VLAN, 1 ms apart, from t=1000 s.
    fn input_a() -> Vec<(u64, Vec<u8>)> {
        let t0 = 1_000_000_000_000;
        vec![
            (t0, udp4(CLIENT4, SERVER4, 40000, 53, b"query")),
            (t0 + 1_000_000, udp4(SERVER4, CLIENT4, 53, 40000, b"answer")),
            (
                t0 + 2_000_000,
                tcp4_vlan(CLIENT4, SERVER4, 40001, 80, b"GET / HTTP/1.1\r\n\r\n"),
            ),
            (
                t0 + 3_000_000,
                tcp4_vlan(SERVER4, CLIENT4, 80, 40001, b"HTTP/1.1 200 OK\r\n\r\n"),
            ),
        ]
    }

    /// Input B: IPv6 TCP, starting earlier in absolute time than A (it must still follow A).
    fn input_b() -> Vec<(u64, Vec<u8>)> {
        let t0 = 500_000_000_000;
        vec![
            (t0, tcp6(CLIENT6, SERVER6, 50000, 443, b"hello")),
            (t0 + 5_000_000, tcp6(SERVER6, CLIENT6, 443, 50000, b"world")),
            (t0 + 7_000_000, tcp6(CLIENT6, SERVER6, 50000, 443, b"")),
        ]
    }

    fn write_input(path: &Path, linktype: u32, packets: &[(u64, Vec<u8>)]) {
        let mut w = PcapWriter::new(File::create(path).unwrap(), linktype, 65535, false).unwrap();
        for (ts, data) in packets {
            w.write_packet(*ts, data).unwrap();
        }
        w.into_inner().unwrap();
    }

    /// Reads back a classic pcap written by `PcapWriter` (nanosecond timestamps).
    fn read_output(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let (mut rest, hdr) = pcap_parser::parse_pcap_header(bytes).unwrap();
        assert!(hdr.is_nanosecond_precision());
        assert_eq!(hdr.network, Linktype::ETHERNET);
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (r, b) = pcap_parser::parse_pcap_frame(rest).unwrap();
            let ts = u64::from(b.ts_sec) * 1_000_000_000 + u64::from(b.ts_usec);
            out.push((ts, b.data.to_vec()));
            rest = r;
        }
        out
    }

    fn ipv4_header_ok(frame: &[u8], l3: usize) -> bool {
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        let mut sum = 0u32;
        for w in frame[l3..l3 + ihl].chunks_exact(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    fn setup() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pcap");
        let b = dir.path().join("b.pcap");
        write_input(&a, 1, &input_a());
        write_input(&b, 1, &input_b());
        (dir, vec![a, b])
    }

    #[test]
    fn amplify_two_inputs() {
        let (dir, _) = setup();
        // A non-Ethernet input (LINKTYPE_RAW) is skipped and counted.
        write_input(&dir.path().join("c.pcap"), 101, &[(1, vec![0x45; 20])]);
        let out = dir.path().join("out.pcap");
        let one_copy: u64 = input_a()
            .iter()
            .chain(input_b().iter())
            .map(|(_, d)| 16 + d.len() as u64)
            .sum();
        let args = AmplifyArgs {
            out: out.clone(),
            target_bytes: 24 + 2 * one_copy + 1, // needs 3 whole copies
            max_gap: 3600,
            inputs: vec![dir.path().to_path_buf()],
        };
        let report = run(&args).unwrap();
        assert!(report.contains("2 of 3 files used"), "{report}");
        assert!(report.contains("1 non-Ethernet"), "{report}");
        assert!(report.contains("copies=3 "), "{report}");
        assert!(report.contains("packets=21 "), "{report}");
        let bytes = std::fs::read(&out).unwrap();
        assert!(
            report.contains(&format!("bytes={} ", bytes.len())),
            "{report}"
        );
        assert!(!dir.path().join("out.pcap.partial").exists());

        let pkts = read_output(&bytes);
        let per_copy = input_a().len() + input_b().len();
        assert_eq!(pkts.len(), 3 * per_copy);

        // Copy 0 is the inputs unchanged; A first, then B after A (despite B's earlier times).
        let expected: Vec<Vec<u8>> = input_a()
            .into_iter()
            .chain(input_b())
            .map(|(_, d)| d)
            .collect();
        for (i, (_, d)) in pkts[..per_copy].iter().enumerate() {
            assert_eq!(d, &expected[i]);
        }
        let t: Vec<u64> = pkts.iter().map(|p| p.0).collect();
        assert_eq!(t[0], 1_000_000_000_000);
        assert_eq!(t[3] - t[0], 3_000_000); // relative timing inside A kept
        assert_eq!(t[4], t[3] + INPUT_GAP_NS); // B starts one gap after A ends
        assert_eq!(t[6] - t[4], 7_000_000); // relative timing inside B kept
        let span = t[6] + INPUT_GAP_NS - t[0];
        for k in 1..3 {
            let copy = &t[k * per_copy..(k + 1) * per_copy];
            let prev = &t[(k - 1) * per_copy..k * per_copy];
            assert!(copy.iter().min() > prev.iter().max(), "copy {k} overlaps");
            for (c, p) in copy.iter().zip(prev) {
                assert_eq!(c - p, span, "copy {k} shifted by one copy span");
            }
        }

        // Copy k is exactly what the builder makes with the mapped addresses: addresses
        // rewritten consistently in both directions, IPv4 header and L4 checksums valid.
        for k in 1..3u32 {
            let (c4, s4) = (map_ipv4(CLIENT4, k), map_ipv4(SERVER4, k));
            let (c6, s6) = (map_ipv6(CLIENT6, k), map_ipv6(SERVER6, k));
            assert_ne!(c4, CLIENT4);
            assert_ne!(s4, SERVER4);
            assert_ne!(c4, s4);
            assert_ne!(c6, CLIENT6);
            assert_ne!(c6, s6);
            let mapped_a = [
                udp4(c4, s4, 40000, 53, b"query"),
                udp4(s4, c4, 53, 40000, b"answer"),
                tcp4_vlan(c4, s4, 40001, 80, b"GET / HTTP/1.1\r\n\r\n"),
                tcp4_vlan(s4, c4, 80, 40001, b"HTTP/1.1 200 OK\r\n\r\n"),
            ];
            let mapped_b = [
                tcp6(c6, s6, 50000, 443, b"hello"),
                tcp6(s6, c6, 443, 50000, b"world"),
                tcp6(c6, s6, 50000, 443, b""),
            ];
            let copy = &pkts[k as usize * per_copy..(k as usize + 1) * per_copy];
            for (i, want) in mapped_a.iter().chain(mapped_b.iter()).enumerate() {
                assert_eq!(&copy[i].1, want, "copy {k} packet {i}");
            }
            assert!(ipv4_header_ok(&copy[0].1, 14));
            assert!(ipv4_header_ok(&copy[2].1, 18));
        }
        // Copies differ from each other.
        assert_ne!(map_ipv4(CLIENT4, 1), map_ipv4(CLIENT4, 2));
    }

    #[test]
    fn amplify_is_deterministic() {
        let (_dir, files) = setup();
        let mut a = Vec::new();
        let mut b = Vec::new();
        let sa = amplify(&files, &mut a, 10_000, 3600).unwrap();
        let sb = amplify(&files, &mut b, 10_000, 3600).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(a, b);
        assert_eq!(a.len() as u64, sa.bytes);
        assert!(a.len() >= 10_000);
    }

    #[test]
    fn amplify_reads_pcapng() {
        // Minimal little-endian pcapng: SHB, IDB (Ethernet, default µs resolution), one EPB.
        fn block(kind: u32, body: &[u8]) -> Vec<u8> {
            let len = (12 + body.len()) as u32;
            let mut v = kind.to_le_bytes().to_vec();
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(body);
            v.extend_from_slice(&len.to_le_bytes());
            v
        }
        let frame = udp4(CLIENT4, SERVER4, 1, 2, b"ng!"); // 45 bytes: pad to 48
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut idb = 1u16.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&65535u32.to_le_bytes());
        let ticks: u64 = 1_700_000_000_000_123; // µs
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ticks as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&frame);
        epb.resize(epb.len().next_multiple_of(4), 0);
        let mut file = block(0x0a0d_0d0a, &shb);
        file.extend(block(1, &idb));
        file.extend(block(6, &epb));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcapng");
        std::fs::write(&path, file).unwrap();
        let mut out = Vec::new();
        let s = amplify(&[path], &mut out, 1, 3600).unwrap();
        assert_eq!((s.used, s.copies, s.packets), (1, 1, 1));
        let pkts = read_output(&out);
        assert_eq!(pkts, vec![(ticks * 1000, frame)]);
    }

    #[test]
    fn mapping_is_a_bijection_per_copy() {
        for k in [1u32, 2, 77, CYCLE - 1, CYCLE, CYCLE + 1, 3 * CYCLE + 5] {
            let mut seen = std::collections::HashSet::new();
            for lo in 0..=u16::MAX {
                let [x, y] = lo.to_be_bytes();
                assert!(seen.insert(map_ipv4([10, 1, x, y], k)));
            }
            assert_eq!(map_ipv4([224, 0, 0, 251], k), [224, 0, 0, 251]);
            assert_eq!(map_ipv4([255, 255, 255, 255], k), [255, 255, 255, 255]);
            assert_eq!(map_ipv4([0, 0, 0, 0], k), [0, 0, 0, 0]);
            assert_ne!(map_ipv4([10, 1, 2, 3], k), [10, 1, 2, 3]);
            assert_ne!(map_ipv4([127, 0, 0, 1], k), [127, 0, 0, 1]);
            assert_eq!(map_ipv4([127, 0, 0, 1], k)[0], 127);
            let mut lo6 = [0u8; 16];
            lo6[15] = 1;
            assert_ne!(map_ipv6(lo6, k), lo6);
            assert_eq!(map_ipv6([0; 16], k), [0; 16]);
        }
        assert_eq!(map_ipv4([10, 1, 2, 3], 0), [10, 1, 2, 3]);
        assert_eq!(map_ipv6(CLIENT6, 0), CLIENT6);
        // Every copy gives an address a different image.
        let mut seen = std::collections::HashSet::new();
        for k in 0..3 * CYCLE {
            assert!(seen.insert(map_ipv4([10, 1, 2, 3], k)), "copy {k}");
        }
    }

    #[test]
    fn truncated_and_garbage_frames_do_not_panic() {
        let full = tcp4_vlan(CLIENT4, SERVER4, 1, 2, b"x");
        for n in 0..full.len() {
            let mut f = full[..n].to_vec();
            rewrite_frame(&mut f, 3);
        }
        let full6 = tcp6(CLIENT6, SERVER6, 1, 2, b"x");
        for n in 0..full6.len() {
            let mut f = full6[..n].to_vec();
            rewrite_frame(&mut f, 3);
        }
        let mut junk = vec![0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, 0, 0];
        junk.resize(80, 0x2c);
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&junk);
        rewrite_frame(&mut f, 3);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("200M"), Ok(200 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("x").is_err());
        assert!(parse_size("0").is_err());
    }
}
