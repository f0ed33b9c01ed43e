//! Traffic generator: `pcapgen send --iface IF FILE...` puts the Ethernet frames of captures on
//! an interface, at a target rate or as fast as possible, looping with per-loop address
//! rewriting (the amplifier's [`rewrite_frame`]: loop `k` is copy `k`, so every loop's flows are
//! new flows and both directions of each stay consistent), and reports what it sent and the CPU
//! time it took. The live tests and the live benchmark use it from inside a network namespace.
//!
//! Two ways to send, both AF_PACKET raw with `PACKET_QDISC_BYPASS` and a few lines of libc:
//! - `--method ring` (default): a `PACKET_TX_RING` (TPACKET_V2). Each frame is copied once,
//!   straight into a slot shared with the kernel, and rewritten there; one `send` hands over
//!   every queued slot. No per-frame message header, iovec or user copy in the kernel, which
//!   was most of the `sendmmsg` path's own cost in a profile here.
//! - `--method mmsg`: `sendmmsg` batches of frames rewritten once per loop into a pre-built
//!   set; kept as the reference the ring is measured against.
//! - `--method xdp`: no socket: an XDP program run with `BPF_PROG_TEST_RUN` builds each frame
//!   and redirects it into the interface ([`crate::gen::xdp_send`]). On a veth whose other end
//!   runs XDP this skips the skb copy that capped the socket methods; the benchmark uses it.
//!   The veth gives it no back-pressure: what its peer cannot take is dropped there.
//!
//! AF_XDP TX was not taken: on a veth it runs in copy mode, where the kernel builds one skb per
//! frame just as the TX ring does, with a UMEM and a completion ring more to manage. A full
//! device queue (ENOBUFS) is waited out and retried, never silently skipped; frames longer than
//! the interface allows are counted as `too_big` and skipped.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::gen::amplify::rewrite_frame;
use crate::gen::xdp_send;
use sensor::capture::pcap_file::PcapFile;

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;
/// Frames queued on the TX ring between two `send` calls at full speed.
const RING_BATCH: usize = 256;
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
    /// How to send: a PACKET_TX_RING (fastest) or sendmmsg batches.
    #[arg(long, value_enum, default_value_t = SendMethod::Ring)]
    pub method: SendMethod,
    /// Capture files (Ethernet frames are sent; other link types are skipped and counted).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// How frames are handed to the kernel.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendMethod {
    /// AF_PACKET PACKET_TX_RING (TPACKET_V2): frames written into a shared ring.
    Ring,
    /// AF_PACKET sendmmsg batches.
    Mmsg,
    /// An XDP program run in live-frames mode (BPF_PROG_TEST_RUN) redirecting into the
    /// interface: no skb per frame.
    Xdp,
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
    /// CPU time of the sender (user + system): on a shared machine, what the sending cost
    /// independently of how much of a core it got.
    pub cpu_seconds: f64,
}

impl std::fmt::Display for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.seconds.max(1e-9);
        write!(
            f,
            "sent packets={} bytes={} loops={} seconds={:.3} pps={:.0} gbps={:.3} too_big={} skipped_link={} queue_full_waits={} cpu_secs={:.3} pps_per_cpu={:.0}",
            self.packets,
            self.bytes,
            self.loops,
            self.seconds,
            self.packets as f64 / s,
            self.bytes as f64 * 8.0 / s / 1e9,
            self.too_big,
            self.skipped_link,
            self.waits,
            self.cpu_seconds,
            self.packets as f64 / self.cpu_seconds.max(1e-9)
        )
    }
}

/// Opens a send-only AF_PACKET socket (protocol 0: it receives nothing) and finds the
/// interface's index; the caller owns the fd and must close it.
fn packet_socket(iface: &str) -> Result<(libc::c_int, u32)> {
    let c = std::ffi::CString::new(iface).map_err(|_| anyhow!("bad interface name"))?;
    // SAFETY: plain libc calls on a C string we own; the fd is handed to the caller.
    unsafe {
        let ifindex = libc::if_nametoindex(c.as_ptr());
        if ifindex == 0 {
            bail!("interface {iface} not found");
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("AF_PACKET socket (needs root or CAP_NET_RAW)");
        }
        Ok((fd, ifindex))
    }
}

/// Binds an AF_PACKET socket from [`packet_socket`] to its interface. The TX ring binds only
/// after its ring is set up and mapped, so this is not part of opening the socket.
fn bind_to_interface(fd: libc::c_int, ifindex: libc::c_uint) -> Result<()> {
    // SAFETY: sockaddr_ll is plain data (zero is valid); bind reads the struct we own.
    let rc = unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("bind to the interface");
    }
    Ok(())
}

/// A raw AF_PACKET socket bound to one interface, for sending only.
struct RawSocket {
    fd: libc::c_int,
}

impl RawSocket {
    fn open(iface: &str) -> Result<RawSocket> {
        let (fd, ifindex) = packet_socket(iface)?;
        let sock = RawSocket { fd };
        // SAFETY: plain libc calls on values we own; the fd is closed in Drop.
        unsafe {
            let one: libc::c_int = 1;
            // Skipping the qdisc is an optimisation; without it frames still go out.
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            bind_to_interface(fd, ifindex)?;
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
            let mut msgs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    // SAFETY: mmsghdr is plain C data (integers and raw pointers); all zeroes
                    // is a valid "no address, no control, no iovec" header, filled in below.
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

/// An AF_PACKET socket with a `PACKET_TX_RING` (TPACKET_V2): frames are written straight into
/// a ring shared with the kernel and one `send` hands over everything queued, so there is no
/// per-frame iovec, message header or copy from a user buffer; the kernel builds the skbs in
/// one loop. Slots come back (status `AVAILABLE`) when the kernel has freed the frame's skb;
/// a frame the device refused (full queue) stays queued and is retried by the next `send`.
struct TxRing {
    fd: libc::c_int,
    map: *mut u8,
    map_len: usize,
    frame_size: usize,
    frames: usize,
    /// Next slot to fill.
    head: usize,
    /// Slots filled and not yet seen returned, oldest first starting at `head - pending`.
    pending: usize,
    /// Lengths of the frames in flight, per slot (for the byte count of what was sent).
    lens: Vec<u32>,
    /// Bytes of virtio-net header before each frame (0 or [VNET_HDR_LEN]).
    vnet: usize,
    /// Largest frame the interface takes (MTU + Ethernet header).
    max_frame: usize,
}

/// `TPACKET_V2` (linux/if_packet.h enum tpacket_versions).
const TPACKET_V2: libc::c_int = 1;
/// Offset of the frame data in a slot: TPACKET2_HDRLEN - sizeof(sockaddr_ll) (the kernel's
/// default when PACKET_TX_HAS_OFF is not set).
const TX_DATA_OFF: usize = 32;
/// Slot size: a 1500-byte MTU frame and the header fit.
const TX_FRAME_SIZE: usize = 2048;
/// Ring block size and count: 4096 slots, 8 MiB.
const TX_BLOCK_SIZE: usize = 1 << 16;
const TX_BLOCKS: usize = 128;

impl TxRing {
    fn open(iface: &str) -> Result<TxRing> {
        let (fd, ifindex) = packet_socket(iface)?;
        // SAFETY: libc calls on values we own; the fd and mapping are released in Drop (the
        // struct is built right after the socket so every later error path drops it).
        unsafe {
            let mut ring = TxRing {
                fd,
                map: std::ptr::null_mut(),
                map_len: 0,
                frame_size: TX_FRAME_SIZE,
                frames: TX_BLOCK_SIZE / TX_FRAME_SIZE * TX_BLOCKS,
                head: 0,
                pending: 0,
                lens: Vec::new(),
                vnet: 0,
                max_frame: mtu(iface).map_or(1514, |m| m + 14),
            };
            let setopt = |name: libc::c_int, val: *const libc::c_void, len: usize| {
                if libc::setsockopt(fd, libc::SOL_PACKET, name, val, len as libc::socklen_t) != 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            let v2: libc::c_int = TPACKET_V2;
            setopt(
                libc::PACKET_VERSION,
                (&v2 as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>(),
            )
            .context("PACKET_VERSION TPACKET_V2")?;
            let one: libc::c_int = 1;
            // Optimisations: without them frames still go out (through the qdisc), and a bad
            // frame would stop the ring instead of being skipped; our own length check comes
            // first anyway.
            let _ = setopt(
                PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>(),
            );
            let _ = setopt(
                libc::PACKET_LOSS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>(),
            );
            // With a virtio-net header saying the whole frame is header, the kernel copies the
            // frame into the skb's linear part instead of pointing page fragments at the ring,
            // which a veth would copy again into a freshly allocated page per frame (a fifth
            // of the sender's time in a profile here). Without it frames still go out.
            if setopt(
                PACKET_VNET_HDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>(),
            )
            .is_ok()
            {
                ring.vnet = VNET_HDR_LEN;
            }
            let req = libc::tpacket_req {
                tp_block_size: TX_BLOCK_SIZE as u32,
                tp_block_nr: TX_BLOCKS as u32,
                tp_frame_size: TX_FRAME_SIZE as u32,
                tp_frame_nr: ring.frames as u32,
            };
            setopt(
                libc::PACKET_TX_RING,
                (&req as *const libc::tpacket_req).cast(),
                std::mem::size_of::<libc::tpacket_req>(),
            )
            .context("PACKET_TX_RING")?;
            ring.map_len = TX_BLOCK_SIZE * TX_BLOCKS;
            let map = libc::mmap(
                std::ptr::null_mut(),
                ring.map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if map == libc::MAP_FAILED {
                ring.map_len = 0;
                return Err(std::io::Error::last_os_error()).context("mmap of the TX ring");
            }
            ring.map = map.cast();
            ring.lens = vec![0; ring.frames];
            bind_to_interface(fd, ifindex)?;
            Ok(ring)
        }
    }

    /// The status word of slot `i`, shared with the kernel.
    fn status(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        debug_assert!(i < self.frames);
        // SAFETY: slot i lies inside the mapping (i < frames, frames * frame_size <= map_len)
        // and starts with the u32 tp_status, 4-byte aligned; the kernel and we access it only
        // as a whole word.
        unsafe { &*(self.map.add(i * self.frame_size) as *const std::sync::atomic::AtomicU32) }
    }

    /// Frees returned slots from the oldest pending one; returns (frames, bytes) sent.
    fn reap(&mut self) -> (u64, u64) {
        let (mut n, mut bytes) = (0u64, 0u64);
        while self.pending > 0 {
            let i = (self.head + self.frames - self.pending) % self.frames;
            let st = self.status(i).load(Ordering::Acquire);
            if st & (libc::TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
                break;
            }
            // AVAILABLE (sent), or WRONG_FORMAT (cannot happen after our length check; the
            // kernel skips such frames with PACKET_LOSS): either way the slot is free again.
            if st & libc::TP_STATUS_WRONG_FORMAT == 0 {
                n += 1;
                bytes += u64::from(self.lens.get(i).copied().unwrap_or(0));
            }
            self.status(i)
                .store(libc::TP_STATUS_AVAILABLE, Ordering::Release);
            self.pending -= 1;
        }
        (n, bytes)
    }

    /// Asks the kernel to send every queued frame, without waiting. Returns false when the
    /// device queue was full (the rest stays queued).
    fn kick(&self) -> Result<bool> {
        // SAFETY: send with no buffer on a TX ring socket: the kernel reads the ring.
        let r = unsafe { libc::send(self.fd, std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if r >= 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(false),
            _ => Err(err).context("send on the TX ring"),
        }
    }

    /// Queues one frame (copied into the next slot, then rewritten for `copy` if non-zero);
    /// waits for a free slot when the ring is full. Returns false (and queues nothing) when
    /// the frame is too big for the interface.
    fn queue(&mut self, frame: &[u8], copy: u32, rep: &mut SendReport) -> Result<bool> {
        if frame.len() > self.max_frame || frame.len() + self.vnet > self.frame_size - TX_DATA_OFF {
            return Ok(false);
        }
        while self.pending == self.frames {
            let (n, b) = self.reap();
            rep.packets += n;
            rep.bytes += b;
            if self.pending == self.frames {
                if !self.kick()? {
                    rep.waits += 1;
                }
                // The kernel frees slots as the receiver drops their skbs.
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        let i = self.head;
        // SAFETY: slot i is ours (status AVAILABLE, not pending); its data area
        // [TX_DATA_OFF, TX_DATA_OFF + vnet + len) lies inside the slot (len checked above).
        unsafe {
            let slot = self.map.add(i * self.frame_size);
            if self.vnet > 0 {
                // struct virtio_net_hdr: flags 0, gso_type NONE, hdr_len = the whole frame
                // (little-endian, as the kernel reads it for AF_PACKET), the rest 0.
                let mut h = [0u8; VNET_HDR_LEN];
                h[2..4].copy_from_slice(&(frame.len() as u16).to_le_bytes());
                std::ptr::copy_nonoverlapping(h.as_ptr(), slot.add(TX_DATA_OFF), VNET_HDR_LEN);
            }
            let data =
                std::slice::from_raw_parts_mut(slot.add(TX_DATA_OFF + self.vnet), frame.len());
            data.copy_from_slice(frame);
            if copy > 0 {
                rewrite_frame(data, copy);
            }
            let hdr = slot.cast::<libc::tpacket2_hdr>();
            (*hdr).tp_len = (self.vnet + frame.len()) as u32;
        }
        if let Some(l) = self.lens.get_mut(i) {
            *l = frame.len() as u32;
        }
        self.status(i)
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.head = (i + 1) % self.frames;
        self.pending += 1;
        Ok(true)
    }

    /// Sends what is queued and waits (at most `limit`) for the kernel to return every slot.
    fn drain(&mut self, rep: &mut SendReport, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if !self.kick()? {
                rep.waits += 1;
            }
            let (n, b) = self.reap();
            rep.packets += n;
            rep.bytes += b;
            if self.pending == 0 {
                return Ok(());
            }
            if start.elapsed() >= limit {
                // Frames the device took (SENDING: their skb is still alive on the receive
                // side) were sent; frames still requested were not.
                for j in 0..self.pending {
                    let i = (self.head + self.frames - self.pending + j) % self.frames;
                    if self.status(i).load(Ordering::Acquire) & TP_STATUS_SENDING != 0 {
                        rep.packets += 1;
                        rep.bytes += u64::from(self.lens.get(i).copied().unwrap_or(0));
                    }
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// `PACKET_VNET_HDR` (linux/if_packet.h).
const PACKET_VNET_HDR: libc::c_int = 15;
/// `sizeof(struct virtio_net_hdr)`.
const VNET_HDR_LEN: usize = 10;

/// `TP_STATUS_SENDING` (linux/if_packet.h).
const TP_STATUS_SENDING: u32 = 1 << 1;

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and the fd.
        unsafe {
            if !self.map.is_null() {
                libc::munmap(self.map.cast(), self.map_len);
            }
            libc::close(self.fd);
        }
    }
}

/// The MTU of an interface, from sysfs.
fn mtu(iface: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
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

/// CPU time (user + system) of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain C data (timevals and longs): all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass, which is ours and of the right type.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Frames sent between two rate checks: every frame below 100 kpps so the rate holds at fine
/// grain, otherwise a batch.
fn pacing_step(rate: u64, batch: usize) -> usize {
    if rate > 0 && rate < 100_000 {
        1
    } else {
        batch
    }
}

/// Sends as asked; returns the report.
pub fn run(args: &SendArgs) -> Result<SendReport> {
    let (frames, skipped_link) = load(&args.files)?;
    let deadline = (args.duration > 0.0).then(|| Duration::from_secs_f64(args.duration));
    if args.loops == 0 && deadline.is_none() {
        bail!("--loops 0 needs --duration");
    }
    let mut rep = SendReport {
        skipped_link,
        ..Default::default()
    };
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    match args.method {
        SendMethod::Ring => run_ring(args, &frames, deadline, start, &mut rep)?,
        SendMethod::Mmsg => run_mmsg(args, &frames, deadline, start, &mut rep)?,
        SendMethod::Xdp => {
            let max_frame = mtu(&args.iface).map_or(1514, |m| m + 14);
            xdp_send::run(args, &frames, max_frame, deadline, start, &mut rep)?
        }
    }
    rep.seconds = start.elapsed().as_secs_f64();
    rep.cpu_seconds = cpu_seconds() - cpu0;
    Ok(rep)
}

/// The TX ring path: each frame is copied into its slot and rewritten there.
fn run_ring(
    args: &SendArgs,
    frames: &[Vec<u8>],
    deadline: Option<Duration>,
    start: Instant,
    rep: &mut SendReport,
) -> Result<()> {
    let mut ring = TxRing::open(&args.iface)?;
    let step = pacing_step(args.rate, RING_BATCH);
    let mut total: u64 = 0;
    let mut k: u64 = 0;
    'outer: while args.loops == 0 || k < args.loops {
        let copy = (k + u64::from(args.rewrite_first)) as u32;
        for part in frames.chunks(step) {
            if deadline.is_some_and(|d| start.elapsed() >= d) {
                break 'outer;
            }
            if args.rate > 0 {
                wait_until(start, total, args.rate);
            }
            for f in part {
                if !ring.queue(f, copy, rep)? {
                    rep.too_big += 1;
                }
            }
            total += part.len() as u64;
            if !ring.kick()? {
                rep.waits += 1;
            }
            let (n, b) = ring.reap();
            rep.packets += n;
            rep.bytes += b;
        }
        k += 1;
    }
    rep.loops = k;
    ring.drain(rep, Duration::from_secs(2))
}

/// The `sendmmsg` path: each loop's frames are rewritten once into a pre-built set, then sent
/// in batches.
fn run_mmsg(
    args: &SendArgs,
    frames: &[Vec<u8>],
    deadline: Option<Duration>,
    start: Instant,
    rep: &mut SendReport,
) -> Result<()> {
    let sock = RawSocket::open(&args.iface)?;
    let mut buf: Vec<Vec<u8>> = frames.to_vec();
    let step = pacing_step(args.rate, BATCH);
    let mut total: u64 = 0;
    let mut k: u64 = 0;
    'outer: while args.loops == 0 || k < args.loops {
        let copy = (k + u64::from(args.rewrite_first)) as u32;
        for (dst, src) in buf.iter_mut().zip(frames) {
            dst.clear();
            dst.extend_from_slice(src);
            if copy > 0 {
                rewrite_frame(dst, copy);
            }
        }
        for part in buf.chunks(step) {
            if deadline.is_some_and(|d| start.elapsed() >= d) {
                break 'outer;
            }
            if args.rate > 0 {
                wait_until(start, total, args.rate);
            }
            let refs: Vec<&[u8]> = part.iter().map(|v| v.as_slice()).collect();
            let (sent, bytes, too_big, waits) = sock.send_all(&refs)?;
            rep.packets += sent;
            rep.bytes += bytes;
            rep.too_big += too_big;
            rep.waits += waits;
            total += part.len() as u64;
        }
        k += 1;
    }
    rep.loops = k;
    Ok(())
}
