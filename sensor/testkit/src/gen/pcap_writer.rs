//! Minimal classic-pcap writer (microsecond or nanosecond timestamps).
//!
//! Hand-written: writing the 24-byte global header and 16-byte record headers is a few lines,
//! and the pcap crates' writers either are release candidates or pull in more than we need.

use std::io::{self, Write};

/// pcap magic for microsecond timestamps (written little-endian).
const MAGIC_US: u32 = 0xa1b2_c3d4;
/// pcap magic for nanosecond timestamps.
const MAGIC_NS: u32 = 0xa1b2_3c4d;

/// Writes frames to a classic pcap stream.
pub struct PcapWriter<W: Write> {
    out: W,
    nanos: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header. `linktype` is a LINKTYPE_* number (1 = Ethernet).
    pub fn new(mut out: W, linktype: u32, snaplen: u32, nanos: bool) -> io::Result<Self> {
        let magic = if nanos { MAGIC_NS } else { MAGIC_US };
        out.write_all(&magic.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&snaplen.to_le_bytes())?;
        out.write_all(&linktype.to_le_bytes())?;
        Ok(PcapWriter { out, nanos })
    }

    /// Writes one record: `ts_ns` nanoseconds since the epoch, `data` as captured (possibly
    /// shorter than `orig_len` to model snaplen truncation).
    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let secs = (ts_ns / 1_000_000_000) as u32;
        let frac = if self.nanos {
            (ts_ns % 1_000_000_000) as u32
        } else {
            ((ts_ns % 1_000_000_000) / 1_000) as u32
        };
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&frac.to_le_bytes())?;
        self.out.write_all(&(data.len() as u32).to_le_bytes())?;
        self.out.write_all(&orig_len.to_le_bytes())?;
        self.out.write_all(data)
    }

    /// Writes a frame that was captured whole.
    pub fn write_packet(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        self.write(ts_ns, data, data.len() as u32)
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
