//! pcap and pcapng files, memory-mapped and iterated without copying frames.
//!
//! The file is mapped once; every [`Frame`] borrows from the mapping, so the replay reader can
//! hand workers an offset into the file instead of a copy of the packet. Record parsing is
//! `pcap-parser`'s; this module only tracks the per-section state (byte order, interfaces,
//! timestamp resolution) that a streaming pcapng reader must keep.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_header};
use pcap_parser::pcapng::{
    parse_block_be, parse_block_le, parse_sectionheaderblock, Block, SectionHeaderBlock,
};
use pcap_parser::PcapError;

use sensor_proto::time::{Ts, NANOS_PER_SEC};

/// Classic pcap magic numbers as read little-endian.
const PCAP_MAGICS: [u32; 6] = [
    0xa1b2_c3d4,
    0xd4c3_b2a1,
    0xa1b2_3c4d,
    0x4d3c_b2a1,
    0xa1b2_cd34,
    0x34cd_b2a1,
];
/// Largest frame length on the wire we believe (the largest snaplen in use, 256 KiB). Corrupt
/// or hostile records claim gigabytes; they are counted at their captured length instead.
const MAX_WIRE_LEN: u32 = 262_144;

/// Length on the wire as counted in flow bytes: the recorded original length, unless it is
/// implausible.
fn wire_len(origlen: u32, caplen: usize) -> u32 {
    let caplen = caplen as u32;
    if origlen > MAX_WIRE_LEN {
        caplen
    } else {
        origlen.max(caplen)
    }
}

/// pcapng section header block type.
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;

/// One captured frame, borrowed from the mapped file.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Ts,
    /// pcap LINKTYPE_* number of the interface that captured it.
    pub linktype: i32,
    pub data: &'a [u8],
    /// Length on the wire (>= data.len() when the capture was truncated by snaplen).
    pub wire_len: u32,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a pcap or pcapng file")]
    NotPcap(PathBuf),
    #[error("{0}: unsupported pcap variant (modified/Kuznetzov pcap)")]
    Unsupported(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Legacy {
        be: bool,
        nanos: bool,
        linktype: i32,
    },
    PcapNg,
}

/// A memory-mapped capture file.
pub struct PcapFile {
    path: PathBuf,
    map: Mmap,
    format: Format,
    /// Offset of the first record (after the classic pcap global header).
    start: usize,
}

/// The worker reads payloads straight out of the mapping (`sensor_core::worker::MappedFiles`).
impl AsRef<[u8]> for PcapFile {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl PcapFile {
    pub fn open(path: &Path) -> Result<PcapFile, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only; a capture file truncated or rewritten by another
        // process while we replay it is outside what a replay can defend against (as for
        // tcpdump -r), and every access goes through bounds-checked slices.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        // Sequential read-ahead; a failed hint only costs speed.
        let _ = map.advise(memmap2::Advice::Sequential);
        let head = map
            .get(..4)
            .ok_or_else(|| CaptureError::NotPcap(path.to_owned()))?;
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (format, start) = if PCAP_MAGICS.contains(&magic) {
            let (rest, hdr) =
                parse_pcap_header(&map).map_err(|_| CaptureError::NotPcap(path.to_owned()))?;
            if hdr.is_modified_format() {
                return Err(CaptureError::Unsupported(path.to_owned()));
            }
            let format = Format::Legacy {
                be: hdr.is_bigendian(),
                nanos: hdr.is_nanosecond_precision(),
                linktype: hdr.network.0,
            };
            (format, map.len() - rest.len())
        } else if magic == PCAPNG_SHB {
            (Format::PcapNg, 0)
        } else {
            return Err(CaptureError::NotPcap(path.to_owned()));
        };
        Ok(PcapFile {
            path: path.to_owned(),
            map,
            format,
            start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole mapped file; frames and payload offsets refer into it.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn frames(&self) -> Frames<'_> {
        Frames {
            data: &self.map,
            pos: self.start,
            format: self.format,
            ng: NgState::default(),
            error: None,
        }
    }
}

/// pcapng per-section state.
#[derive(Default)]
struct NgState {
    be: bool,
    /// Per interface: link type, ticks per second, offset in seconds.
    interfaces: Vec<(i32, u64, i64)>,
}

/// Iterator over the frames of a file. Stops at the end or at the first record it cannot parse
/// (a file cut short by a crashed capture is common); `error()` then says why.
pub struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
    format: Format,
    ng: NgState,
    error: Option<String>,
}

impl<'a> Frames<'a> {
    /// Byte offset of the next record, for progress reporting.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Why iteration stopped before the end of the file, if it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn fail(&mut self, what: String) -> Option<Frame<'a>> {
        self.error = Some(what);
        self.pos = self.data.len();
        None
    }

    fn next_legacy(&mut self, be: bool, nanos: bool, linktype: i32) -> Option<Frame<'a>> {
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let parsed = if be {
            parse_pcap_frame_be(rest)
        } else {
            parse_pcap_frame(rest)
        };
        match parsed {
            Ok((after, rec)) => {
                self.pos = self.data.len() - after.len();
                prefetch(after);
                let frac = u64::from(rec.ts_usec);
                let frac_ns = if nanos { frac } else { frac * 1_000 };
                Some(Frame {
                    ts: u64::from(rec.ts_sec) * NANOS_PER_SEC + frac_ns,
                    linktype,
                    data: rec.data,
                    wire_len: wire_len(rec.origlen, rec.data.len()),
                })
            }
            Err(_) => {
                let at = self.pos;
                self.fail(format!("truncated or corrupt record at byte {at}"))
            }
        }
    }

    fn next_ng(&mut self) -> Option<Frame<'a>> {
        loop {
            let rest = self.data.get(self.pos..)?;
            if rest.is_empty() {
                return None;
            }
            let is_shb = rest.get(..4) == Some(&PCAPNG_SHB.to_le_bytes()[..]);
            let parsed: Result<(&[u8], Block<'a>), NomErr<'a>> = if is_shb {
                parse_sectionheaderblock(rest).map(|(r, shb)| (r, Block::SectionHeader(shb)))
            } else if self.ng.be {
                parse_block_be(rest)
            } else {
                parse_block_le(rest)
            };
            let (after, block) = match parsed {
                Ok(ok) => ok,
                Err(_) => {
                    let at = self.pos;
                    return self.fail(format!("truncated or corrupt pcapng block at byte {at}"));
                }
            };
            self.pos = self.data.len() - after.len();
            match block {
                Block::SectionHeader(shb) => self.section(&shb),
                Block::InterfaceDescription(idb) => {
                    let resolution = idb.ts_resolution().unwrap_or(1_000_000).max(1);
                    self.ng
                        .interfaces
                        .push((idb.linktype.0, resolution, idb.ts_offset()));
                }
                Block::EnhancedPacket(epb) => {
                    let Some(&(linktype, resolution, offset)) =
                        self.ng.interfaces.get(epb.if_id as usize)
                    else {
                        continue;
                    };
                    let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let ts = ticks_to_ns(ticks, resolution, offset);
                    let caplen = (epb.caplen as usize).min(epb.data.len());
                    return Some(Frame {
                        ts,
                        linktype,
                        data: &epb.data[..caplen],
                        wire_len: wire_len(epb.origlen, caplen),
                    });
                }
                Block::SimplePacket(spb) => {
                    let Some(&(linktype, _, _)) = self.ng.interfaces.first() else {
                        continue;
                    };
                    let caplen = (spb.origlen as usize).min(spb.data.len());
                    return Some(Frame {
                        ts: 0,
                        linktype,
                        data: &spb.data[..caplen],
                        wire_len: wire_len(spb.origlen, caplen),
                    });
                }
                _ => {}
            }
        }
    }

    fn section(&mut self, shb: &SectionHeaderBlock<'_>) {
        self.ng.be = shb.big_endian();
        self.ng.interfaces.clear();
    }
}

/// pcap-parser's nom error type, named once.
type NomErr<'a> = pcap_parser::nom::Err<PcapError<&'a [u8]>>;

/// Converts pcapng timestamp ticks to nanoseconds since the epoch.
fn ticks_to_ns(ticks: u64, resolution: u64, offset_secs: i64) -> Ts {
    let secs = ticks / resolution;
    let frac = ticks % resolution;
    let frac_ns = (u128::from(frac) * u128::from(NANOS_PER_SEC) / u128::from(resolution)) as u64;
    let secs = (secs as i64).saturating_add(offset_secs).max(0) as u64;
    secs.saturating_mul(NANOS_PER_SEC).saturating_add(frac_ns)
}

/// How far past the next record the reader also asks for the file's bytes. The record after
/// this one is too close for its fetch to finish before it is decoded; a page further on, the
/// lines have arrived by the time the reader gets there (a bench on the 1 GB capture:
/// benches/README.md, "The reader's first touches").
const PREFETCH_AHEAD: usize = 4096;

/// Asks the CPU to fetch the next record (header and the frame's first bytes) while the
/// caller decodes this one, and the lines a page further on: each record starts on a cache
/// line the reader has not touched yet, and that first touch was the reader's largest single
/// cost in profiles of a large replay.
#[inline]
fn prefetch(next: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = next.as_ptr().cast::<i8>();
        let ahead = p.wrapping_add(PREFETCH_AHEAD);
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is a hint that never
        // faults, whatever the address (all but the first may lie past the mapping's end).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            // The frame's headers can cross into the next line.
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(ahead);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = next;
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        match self.format {
            Format::Legacy {
                be,
                nanos,
                linktype,
            } => self.next_legacy(be, nanos, linktype),
            Format::PcapNg => self.next_ng(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_testkit::gen::pcap_writer::PcapWriter;

    #[test]
    fn reads_back_what_the_writer_wrote_with_nanosecond_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let mut w = PcapWriter::new(File::create(&path).unwrap(), 1, 65535, true).unwrap();
        w.write_packet(1_700_000_000_123_456_789, &[1, 2, 3])
            .unwrap();
        w.write(1_700_000_001_000_000_000, &[4, 5], 60).unwrap();
        w.into_inner().unwrap();

        let f = PcapFile::open(&path).unwrap();
        let frames: Vec<_> = f.frames().collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].ts, 1_700_000_000_123_456_789);
        assert_eq!(frames[0].data, &[1, 2, 3]);
        assert_eq!(frames[1].wire_len, 60);
        assert_eq!(frames[1].linktype, 1);
    }

    #[test]
    fn a_file_cut_mid_record_yields_the_whole_records_and_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let mut w = PcapWriter::new(Vec::new(), 1, 65535, false).unwrap();
        w.write_packet(1_000_000_000, &[0u8; 40]).unwrap();
        w.write_packet(2_000_000_000, &[0u8; 40]).unwrap();
        let mut bytes = w.into_inner().unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&path, bytes).unwrap();
        let f = PcapFile::open(&path).unwrap();
        let mut it = f.frames();
        assert!(it.next().is_some());
        assert!(it.next().is_none());
        assert!(it.error().is_some());
    }

    #[test]
    fn rejects_a_file_that_is_not_a_capture() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(&path, b"hello world, not a pcap").unwrap();
        assert!(matches!(
            PcapFile::open(&path),
            Err(CaptureError::NotPcap(_))
        ));
    }

    #[test]
    fn an_implausible_original_length_counts_as_the_captured_length() {
        assert_eq!(wire_len(4_093_509_168, 48), 48);
        assert_eq!(wire_len(1514, 96), 1514);
        assert_eq!(wire_len(10, 60), 60);
    }

    #[test]
    fn converts_pcapng_ticks_at_any_resolution() {
        assert_eq!(ticks_to_ns(1_500_000, 1_000_000, 0), 1_500_000_000);
        assert_eq!(ticks_to_ns(3, 2, 10), 11_500_000_000);
    }
}
