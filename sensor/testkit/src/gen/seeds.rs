//! Fuzzing seeds from the fixture captures (`pcapgen seeds`): each fuzz target starts from inputs
//! shaped the way it reads them, so the fuzzer begins inside the parsers instead of having to
//! discover a valid Ethernet, IP and TCP header first.
//!
//! - `decode`: every frame, as captured;
//! - `tcp_dpi`: each TCP flow as the target's segment list (`[dir | flags << 1, 0, len]` then
//!   the payload), in capture order;
//! - `http`: each TCP flow's client payload bytes, concatenated (the target cuts them into
//!   segments itself);
//! - `tls`: a segment-size byte, the client's first TLS record, then the server's payload bytes
//!   (the target splits them at the end of that record);
//! - `udp_dpi`, `dns`: each UDP payload;
//! - `quic`: each QUIC or gQUIC payload behind a mode byte 0 (raw datagram), and each client
//!   Initial's decrypted frames behind a mode byte 1 (the target seals them again, so the
//!   fuzzer mutates the frames, not the ciphertext).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use sensor::capture::pcap_file::PcapFile;
use sensor::decode::{ipproto, DecodeConfig, Decoded, Decoder, LinkType, PacketInfo};
use sensor::dpi::quic;

/// Segment size byte of the `tls` seeds (the target cuts at `byte % 97 + 1`): 100-byte
/// segments.
const TLS_SEED_CUT: u8 = 99;

/// Largest seed written; libFuzzer's default -max_len is 4096 for new inputs anyway.
const MAX_SEED: usize = 16 * 1024;

/// Targets and the seeds written for each.
#[derive(Default)]
struct Seeds {
    by_target: HashMap<&'static str, Vec<Vec<u8>>>,
}

impl Seeds {
    fn add(&mut self, target: &'static str, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            let mut bytes = bytes;
            bytes.truncate(MAX_SEED);
            self.by_target.entry(target).or_default().push(bytes);
        }
    }
}

/// One TCP flow's seeds in the making.
#[derive(Default)]
struct TcpSeed {
    segments: Vec<u8>,
    client: Vec<u8>,
    server: Vec<u8>,
}

/// Writes the seeds of every `*.pcap` of `fixtures` under `out/<target>/`; returns a line per
/// target with its count.
pub fn write_all(fixtures: &Path, out: &Path) -> Result<String> {
    let mut seeds = Seeds::default();
    let mut files: Vec<_> = std::fs::read_dir(fixtures)
        .with_context(|| format!("reading {}", fixtures.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    for path in &files {
        let pcap = PcapFile::open(path).map_err(|e| anyhow::anyhow!(e))?;
        let mut decoder = Decoder::new(DecodeConfig::default());
        let mut flows: HashMap<([u8; 16], u16, [u8; 16], u16), TcpSeed> = HashMap::new();
        let mut order = Vec::new();
        for frame in pcap.frames() {
            seeds.add("decode", frame.data.to_vec());
            let Some(link) = LinkType::from_pcap(frame.linktype) else {
                continue;
            };
            let (info, payload): (PacketInfo, &[u8]) =
                match decoder.decode(link, frame.data, frame.ts) {
                    Decoded::Packet(info) => {
                        let off = info.payload_off as usize;
                        let p = frame
                            .data
                            .get(off..off + info.payload_len as usize)
                            .unwrap_or(&[]);
                        (info, p)
                    }
                    _ => continue,
                };
            match info.proto {
                ipproto::UDP => {
                    seeds.add("udp_dpi", payload.to_vec());
                    if info.sport == 53 || info.dport == 53 {
                        seeds.add("dns", payload.to_vec());
                    }
                    if quic::detect(payload) {
                        seeds.add("quic", [&[0u8][..], payload].concat());
                        if let Some((_, frames)) = quic::open_initial(payload) {
                            seeds.add("quic", [&[1u8][..], &frames].concat());
                        }
                    }
                }
                ipproto::TCP => {
                    let fwd = (info.src, info.sport, info.dst, info.dport);
                    let rev = (info.dst, info.dport, info.src, info.sport);
                    let (key, dir) = if flows.contains_key(&rev) {
                        (rev, 1u8)
                    } else {
                        (fwd, 0u8)
                    };
                    if !flows.contains_key(&key) {
                        order.push(key);
                    }
                    let f = flows.entry(key).or_default();
                    let len = payload.len().min(255);
                    if f.segments.len() + 3 + len <= MAX_SEED {
                        f.segments
                            .extend_from_slice(&[dir | (info.tcp.flags << 1), 0, len as u8]);
                        f.segments.extend_from_slice(&payload[..len]);
                    }
                    if dir == 0 {
                        f.client.extend_from_slice(payload);
                    } else if f.server.len() < MAX_SEED {
                        f.server.extend_from_slice(payload);
                    }
                }
                _ => {}
            }
        }
        for key in order {
            let Some(f) = flows.remove(&key) else {
                continue;
            };
            seeds.add("tcp_dpi", f.segments);
            match f.client.first() {
                Some(0x16) => {
                    // the first record (with a preamble-free start), then the server's flight
                    let first = f
                        .client
                        .get(3..5)
                        .map_or(0, |l| 5 + usize::from(u16::from_be_bytes([l[0], l[1]])));
                    let mut seed = vec![TLS_SEED_CUT];
                    seed.extend_from_slice(f.client.get(..first).unwrap_or(&f.client));
                    seed.extend_from_slice(&f.server);
                    seeds.add("tls", seed);
                }
                Some(c) if c.is_ascii_uppercase() => seeds.add("http", f.client),
                _ => {}
            }
        }
    }
    let mut report = String::new();
    let mut targets: Vec<_> = seeds.by_target.into_iter().collect();
    targets.sort_by_key(|(t, _)| *t);
    for (target, list) in targets {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (i, bytes) in list.iter().enumerate() {
            let p = dir.join(format!("fixture-{i:04}"));
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        }
        let _ = writeln!(report, "{target}: {} seeds", list.len());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_from_the_fixtures_cover_every_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata-pcaps");
        let out = tempfile::tempdir().unwrap();
        let report = write_all(&root, out.path()).unwrap();
        for t in ["decode", "tcp_dpi", "tls", "http", "udp_dpi", "dns", "quic"] {
            let n = std::fs::read_dir(out.path().join(t))
                .map(|d| d.count())
                .unwrap_or(0);
            assert!(n > 0, "no seeds for {t}:\n{report}");
        }
        let modes: Vec<u8> = std::fs::read_dir(out.path().join("quic"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap()[0])
            .collect();
        assert!(modes.contains(&0) && modes.contains(&1), "{modes:?}");
        let tls = std::fs::read_dir(out.path().join("tls")).unwrap();
        for e in tls {
            let seed = std::fs::read(e.unwrap().path()).unwrap();
            assert_eq!(seed[..2], [TLS_SEED_CUT, 0x16]);
        }
    }
}
