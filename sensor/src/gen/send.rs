//! Traffic generator: `pcapgen send --iface IF FILE...` puts the Ethernet frames of captures on
//! an interface, at a target rate or as fast as possible, looping with per-loop address
//! rewriting (the amplifier's [`rewrite_frame`]: loop `k` is copy `k`, so every loop's flows are
//! new flows and both directions of each stay consistent), and reports what it sent. The live
//! tests and the live benchmark use it from inside a network namespace.
//!
//! Sending is AF_PACKET raw with `sendmmsg` batches and `PACKET_QDISC_BYPASS`: a few lines of
//! libc, where an AF_PACKET TX ring or AF_XDP TX would need a crate that neither builds here
//! nor adds speed on a veth (the sender is copy-bound either way). A full device queue
//! (ENOBUFS) is waited out and retried, never silently skipped; frames longer than the
//! interface allows (EMSGSIZE) are counted as `too_big` and skipped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::capture::pcap_file::PcapFile;
use crate::gen::amplify::rewrite_frame;

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;
/// `PACKET_QDISC_BYPASS` (linux/if_packet.h).
const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: i32 = 1;

#[derive(clap::Args, Debug, Clone)]
pub struct SendArgs {
    /// Interface to send on.
    #[arg(long)]
    pub iface: String,
    /// Frames per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Passes over the inputs (each with its own addresses); 0 = until --duration.
    #[arg(long, default_value_t = 1)]
    pub loops: u64,
    /// Stop after this many seconds (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    pub duration: f64,
    /// Rewrite addresses in the first loop too (by default loop 0 sends the inputs as they are).
    #[arg(long)]
    pub rewrite_first: bool,
    /// Capture files (Ethernet frames are sent; other link types are skipped and counted).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// What a run sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendReport {
    pub packets: u64,
    pub bytes: u64,
    pub loops: u64,
    pub skipped_link: u64,
    pub too_big: u64,
    /// Times the device queue was full and the sender waited.
    pub waits: u64,
    pub seconds: f64,
}

impl std::fmt::Display for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.seconds.max(1e-9);
        write!(
            f,
            "sent packets={} bytes={} loops={} seconds={:.3} pps={:.0} gbps={:.3} too_big={} skipped_link={} queue_full_waits={}",
            self.packets,
            self.bytes,
            self.loops,
            self.seconds,
            self.packets as f64 / s,
            self.bytes as f64 * 8.0 / s / 1e9,
            self.too_big,
            self.skipped_link,
            self.waits
        )
    }
}

/// A raw AF_PACKET socket bound to one interface, for sending only.
struct RawSocket {
    fd: libc::c_int,
}

impl RawSocket {
    fn open(iface: &str) -> Result<RawSocket> {
        let c = std::ffi::CString::new(iface).map_err(|_| anyhow!("bad interface name"))?;
        // SAFETY: plain libc calls on values we own; the fd is closed in Drop.
        unsafe {
            let ifindex = libc::if_nametoindex(c.as_ptr());
            if ifindex == 0 {
                bail!("interface {iface} not found");
            }
            // Protocol 0: this socket receives nothing.
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("AF_PACKET socket (needs root or CAP_NET_RAW)");
            }
            let sock = RawSocket { fd };
            let one: libc::c_int = 1;
            // Skipping the qdisc is an optimisation; without it frames still go out.
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            if libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) != 0
            {
                return Err(std::io::Error::last_os_error()).context("bind to the interface");
            }
            Ok(sock)
        }
    }

    /// Sends all `frames`; returns (sent, bytes sent, too_big, waits). Waits out a full device
    /// queue.
    fn send_all(&self, frames: &[&[u8]]) -> Result<(u64, u64, u64, u64)> {
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut too_big = 0u64;
        let mut waits = 0u64;
        let mut at = 0;
        while at < frames.len() {
            let chunk = &frames[at..];
            let mut iov: Vec<libc::iovec> = chunk
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                })
                .collect();
            // SAFETY: zeroed mmsghdr is a valid "no address, no control" header.
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = v;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            // SAFETY: msgs point into iov and frames, both alive for the call.
            let n = unsafe { libc::sendmmsg(self.fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
            if n > 0 {
                sent += n as u64;
                bytes += chunk
                    .iter()
                    .take(n as usize)
                    .map(|f| f.len() as u64)
                    .sum::<u64>();
                at += n as usize;
                continue;
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                    waits += 1;
                    std::thread::sleep(Duration::from_micros(50));
                }
                Some(libc::EMSGSIZE) => {
                    too_big += 1;
                    at += 1;
                }
                _ => return Err(err).context("sendmmsg"),
            }
        }
        Ok((sent, bytes, too_big, waits))
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Loads the Ethernet frames of every input, in order.
fn load(files: &[PathBuf]) -> Result<(Vec<Vec<u8>>, u64)> {
    let mut frames = Vec::new();
    let mut skipped = 0;
    for p in files {
        let f = PcapFile::open(p).map_err(|e| anyhow!(e))?;
        for fr in f.frames() {
            if fr.linktype == LINKTYPE_ETHERNET {
                frames.push(fr.data.to_vec());
            } else {
                skipped += 1;
            }
        }
    }
    if frames.is_empty() {
        bail!("no Ethernet frames in the inputs");
    }
    Ok((frames, skipped))
}

/// Paces: returns when frame number `sent` is due at `rate` frames per second after `start`
/// (sleeping while far, spinning in the last 200 µs).
fn wait_until(start: Instant, sent: u64, rate: u64) {
    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
    loop {
        let Some(left) = due.checked_sub(start.elapsed()) else {
            return;
        };
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Sends as asked; returns the report.
pub fn run(args: &SendArgs) -> Result<SendReport> {
    let (frames, skipped_link) = load(&args.files)?;
    let sock = RawSocket::open(&args.iface)?;
    let mut rep = SendReport {
        skipped_link,
        ..Default::default()
    };
    let deadline = (args.duration > 0.0).then(|| Duration::from_secs_f64(args.duration));
    if args.loops == 0 && deadline.is_none() {
        bail!("--loops 0 needs --duration");
    }
    let start = Instant::now();
    let mut buf: Vec<Vec<u8>> = frames.clone();
    let mut total: u64 = 0;
    let mut k: u64 = 0;
    'outer: while args.loops == 0 || k < args.loops {
        let copy = (k + u64::from(args.rewrite_first)) as u32;
        for (dst, src) in buf.iter_mut().zip(&frames) {
            dst.clear();
            dst.extend_from_slice(src);
            if copy > 0 {
                rewrite_frame(dst, copy);
            }
        }
        for chunk in buf.chunks(BATCH) {
            if deadline.is_some_and(|d| start.elapsed() >= d) {
                break 'outer;
            }
            if args.rate > 0 {
                wait_until(start, total, args.rate);
            }
            // At a set rate, send in small bursts so the rate holds at fine grain.
            let step = if args.rate > 0 && args.rate < 100_000 {
                1
            } else {
                chunk.len()
            };
            for part in chunk.chunks(step) {
                let refs: Vec<&[u8]> = part.iter().map(|v| v.as_slice()).collect();
                let (sent, bytes, too_big, waits) = sock.send_all(&refs)?;
                rep.packets += sent;
                rep.bytes += bytes;
                rep.too_big += too_big;
                rep.waits += waits;
                total += part.len() as u64;
                if step == 1 && args.rate > 0 {
                    wait_until(start, total, args.rate);
                }
            }
        }
        k += 1;
    }
    rep.loops = k;
    rep.seconds = start.elapsed().as_secs_f64();
    Ok(rep)
}
