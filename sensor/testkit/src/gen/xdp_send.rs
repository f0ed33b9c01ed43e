//! `pcapgen send --method xdp`: frames built by an XDP program run with `BPF_PROG_TEST_RUN` in
//! live-frames mode and redirected into the interface (`xdp-prog/gen.bpf.c` says how).
//!
//! Why: a socket sender (the TX ring, `sendmmsg`, AF_XDP in copy mode) hands a veth one skb per
//! frame, and a veth with an XDP program on its receiving end must copy every such skb before
//! the program may run. On this 2-core rig that copy, in the receiving NAPI thread, was what
//! capped every receiver (425k-690k frames/s) below what they could take. Redirected frames
//! reach the peer as xdp_frames: no skb, no copy.
//!
//! How: one `BPF_PROG_TEST_RUN` call runs the program for the whole send (each call builds and
//! tears down a page pool, about 20 ms here, so short calls would send in fits), and a signal
//! ends it. The calling thread spends the call in the kernel: it spins between frames as a
//! busy-polling sender does, so it takes its core's share whatever the rate. A producer thread
//! copies the frames into the program's slot ring (mmapped), rewritten for their loop, ahead of
//! the program; the program paces them (`--rate`) with the kernel's monotonic clock.
//!
//! What differs from a socket sender: the veth gives no back-pressure. When its receive ring is
//! full the kernel drops the frame and counts it in the sending veth's `xdp_xmit_errors`
//! (`ethtool -S`), so at full speed this sender offers more than the receiver side takes, and
//! loss shows as loss, not as a slower sender. On this VM that 256-frame ring overflowed at
//! every rate above about 100 kpps, even behind the XDP-drop floor, so the live benchmark keeps
//! the TX ring by default (benches/README.md has the figures).

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::Map;
use aya::programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp};
use aya::Ebpf;

use crate::gen::amplify::rewrite_frame;
use crate::gen::send::{SendArgs, SendReport};
use sensor::capture::xdp::{ifindex, monotonic_ns};

static GEN_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gen.bpf.o"));

/// Slots of the frame ring (`GEN_SLOTS` in gen.bpf.c).
const GEN_SLOTS: u64 = 8192;
/// Bytes of frame data a slot holds (`GEN_DATA`); frames up to `GEN_DATA - 1` bytes fit.
const GEN_DATA: usize = 2048;
/// Size of `struct gen_slot`: data, then the length and padding.
const SLOT_SIZE: usize = GEN_DATA + 8;
/// Frames the kernel builds and redirects before it flushes them to the device (the default
/// is NAPI's budget, 64; `TEST_XDP_MAX_BATCH` is 256).
const KERNEL_BATCH: u32 = 64;
/// Frames the producer writes in one go before it publishes them to the program: small enough
/// that the program, sharing the core, is never held off for long (a chunk takes tens of µs).
const CHUNK: u64 = 512;

/// Offsets in `struct gen_ctl`.
const CTL_NEXT: usize = 0;
const CTL_READY: usize = 8;
const CTL_START_NS: usize = 16;
const CTL_INTERVAL: usize = 24;
const CTL_BAD: usize = 40;
const CTL_IFINDEX: usize = 48;
const CTL_STOP: usize = 52;
const CTL_SIZE: usize = 56;

/// A shared mapping of a `BPF_F_MMAPABLE` array map; unmapped on drop.
struct MapMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory. The producer alone writes slots and `ready`, the
// consumer alone `start_ns`/`interval`, the kernel alone `next`; every access is a volatile
// read or write of an aligned word, or of a slot the program is not reading (see `produce`).
unsafe impl Send for MapMem {}
// SAFETY: as for `Send`: shared use is confined to volatile word accesses and the producer's
// own slots, so references from several threads never race on the same bytes.
unsafe impl Sync for MapMem {}

impl MapMem {
    fn new(map: &Map, len: usize, what: &str) -> Result<MapMem> {
        let Map::Array(data) = map else {
            bail!("{what}: not an array map");
        };
        let len = len.div_ceil(4096) * 4096;
        // SAFETY: mapping a map fd we hold; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("mmap {what}"));
        }
        Ok(MapMem {
            ptr: ptr.cast(),
            len,
        })
    }

    fn read_u64(&self, off: usize) -> u64 {
        assert!(off + 8 <= self.len && off.is_multiple_of(8));
        // SAFETY: in bounds and aligned (checked).
        unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u64>()) }
    }

    fn write_u64(&self, off: usize, v: u64) {
        assert!(off + 8 <= self.len && off.is_multiple_of(8));
        // SAFETY: in bounds and aligned (checked).
        unsafe { std::ptr::write_volatile(self.ptr.add(off).cast::<u64>(), v) }
    }

    fn write_u32(&self, off: usize, v: u32) {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked).
        unsafe { std::ptr::write_volatile(self.ptr.add(off).cast::<u32>(), v) }
    }

    fn read_u32(&self, off: usize) -> u32 {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked).
        unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u32>()) }
    }

    /// The data bytes of slot `i`.
    ///
    /// # Safety
    /// The program must not be reading the slot: only the producer calls this, for the slot
    /// of frame `ready` while `ready - next < GEN_SLOTS` (the frame that used it last was sent).
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot_data(&self, i: usize) -> &mut [u8] {
        let off = i * SLOT_SIZE;
        assert!(off + SLOT_SIZE <= self.len);
        // SAFETY: the slot lies inside the mapping (checked above; GEN_DATA <= SLOT_SIZE) and
        // the caller guarantees nobody else reads or writes it while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), GEN_DATA) }
    }
}

impl Drop for MapMem {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

extern "C" fn on_wake(_: libc::c_int) {}

/// Installs a do-nothing SIGUSR1 handler without SA_RESTART, so the signal ends the
/// `BPF_PROG_TEST_RUN` call the consumer sits in (EINTR).
fn install_wake_signal() -> Result<()> {
    // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error()).context("sigaction");
        }
    }
    Ok(())
}

/// Sends `frames` as `args` asks (loops, rate, duration); adds what went out to `rep`.
pub fn run(
    args: &SendArgs,
    frames: &[Vec<u8>],
    max_frame: usize,
    deadline: Option<Duration>,
    start: Instant,
    rep: &mut SendReport,
) -> Result<()> {
    let ifindex = ifindex(&args.iface).ok_or_else(|| anyhow!("no interface {}", args.iface))?;
    let mut ebpf = Ebpf::load(GEN_OBJECT).map_err(|e| {
        anyhow!("cannot load the generator's XDP program (needs root or CAP_BPF): {e}")
    })?;
    let prog: &mut Xdp = ebpf
        .program_mut("gen_xdp")
        .ok_or_else(|| anyhow!("gen_xdp missing from the generator object"))?
        .try_into()?;
    prog.load()
        .map_err(|e| anyhow!("the kernel refused the generator's XDP program: {e}"))?;
    let slots = MapMem::new(
        ebpf.map("gen_slots")
            .ok_or_else(|| anyhow!("gen_slots missing"))?,
        GEN_SLOTS as usize * SLOT_SIZE,
        "gen_slots",
    )?;
    let ctl = MapMem::new(
        ebpf.map("gen_ctl")
            .ok_or_else(|| anyhow!("gen_ctl missing"))?,
        CTL_SIZE,
        "gen_ctl",
    )?;
    ctl.write_u32(CTL_IFINDEX, ifindex);
    // Pacing interval in ns times 2^16 (0: as fast as possible).
    let interval = (1_000_000_000u64 << 16).checked_div(args.rate).unwrap_or(0);
    ctl.write_u64(CTL_INTERVAL, interval);
    install_wake_signal()?;
    let max_frame = max_frame.min(GEN_DATA - 1);
    // The page the program starts each run from: as long as any frame, resized per frame.
    let template = vec![0u8; GEN_DATA - 1];
    let prog: &Xdp = ebpf
        .program("gen_xdp")
        .ok_or_else(|| anyhow!("gen_xdp missing"))?
        .try_into()?;

    let stop = AtomicBool::new(false);
    let consumer_done = AtomicBool::new(false);
    // SAFETY: pthread_self of this thread, which stays alive for the scope below.
    let consumer = unsafe { libc::pthread_self() };
    let produced = std::thread::scope(|sc| {
        let producer = sc.spawn(|| {
            let out = produce(
                args, frames, max_frame, deadline, start, &slots, &ctl, &stop,
            );
            // Stop the runs, then knock the consumer out of its call until it says it is out.
            ctl.write_u32(CTL_STOP, 1);
            stop.store(true, Ordering::SeqCst);
            while !consumer_done.load(Ordering::SeqCst) {
                // SAFETY: the consumer thread is alive until consumer_done is set.
                unsafe { libc::pthread_kill(consumer, libc::SIGUSR1) };
                std::thread::sleep(Duration::from_millis(5));
            }
            out
        });
        let consumed = consume(prog, &template, &ctl, &stop);
        if consumed.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        consumer_done.store(true, Ordering::SeqCst);
        let produced = producer
            .join()
            .map_err(|_| anyhow!("the producer thread panicked"))?;
        consumed.and(produced)
    })?;

    let next = ctl.read_u64(CTL_NEXT);
    let ready = ctl.read_u64(CTL_READY);
    let mut unsent_bytes = 0u64;
    for i in next..ready {
        let at = (i % GEN_SLOTS) as usize * SLOT_SIZE + GEN_DATA;
        unsent_bytes += u64::from(slots.read_u32(at));
    }
    rep.packets += next;
    rep.bytes += produced.bytes.saturating_sub(unsent_bytes);
    rep.too_big += produced.too_big;
    rep.loops = produced.loops;
    let bad = ctl.read_u64(CTL_BAD);
    if bad > 0 {
        bail!("the generator's XDP program refused {bad} frames");
    }
    Ok(())
}

/// What the producer wrote.
struct Produced {
    bytes: u64,
    too_big: u64,
    loops: u64,
}

/// Fills the slot ring ahead of the program, publishing `ready`; returns when the loops are
/// written and sent, at the deadline, or when the consumer stops.
#[allow(clippy::too_many_arguments)]
fn produce(
    args: &SendArgs,
    frames: &[Vec<u8>],
    max_frame: usize,
    deadline: Option<Duration>,
    start: Instant,
    slots: &MapMem,
    ctl: &MapMem,
    stop: &AtomicBool,
) -> Result<Produced> {
    let mut out = Produced {
        bytes: 0,
        too_big: 0,
        loops: 0,
    };
    let over = || stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| start.elapsed() >= d);
    let mut ready = 0u64;
    let mut k = 0u64;
    'outer: while args.loops == 0 || k < args.loops {
        let copy = (k + u64::from(args.rewrite_first)) as u32;
        for f in frames {
            // Longer than the interface takes (or shorter than an Ethernet header): skipped
            // and counted, as the socket methods do.
            if f.len() > max_frame || f.len() < 14 {
                out.too_big += 1;
                continue;
            }
            if ready.is_multiple_of(CHUNK) {
                publish(ctl, ready);
                // Wait for a chunk of free slots: ones the program has sent.
                while ready - ctl.read_u64(CTL_NEXT) > GEN_SLOTS - CHUNK {
                    if over() {
                        break 'outer;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                if over() {
                    break 'outer;
                }
            }
            let i = (ready % GEN_SLOTS) as usize;
            // SAFETY: slot i was sent (ready - next < GEN_SLOTS) and is not yet published.
            let data = unsafe { slots.slot_data(i) };
            data[..f.len()].copy_from_slice(f);
            if copy > 0 {
                rewrite_frame(&mut data[..f.len()], copy);
            }
            slots.write_u32(i * SLOT_SIZE + GEN_DATA, f.len() as u32);
            out.bytes += f.len() as u64;
            ready += 1;
        }
        k += 1;
        out.loops = k;
    }
    publish(ctl, ready);
    // Let the program send what is written (finite loops), unless it is time to stop.
    while ctl.read_u64(CTL_NEXT) < ready && !over() {
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(out)
}

/// Makes the frames written so far visible to the program.
fn publish(ctl: &MapMem, ready: u64) {
    fence(Ordering::Release);
    ctl.write_u64(CTL_READY, ready);
}

/// Runs the program until `stop`: one long call, re-entered if it ends early.
fn consume(prog: &Xdp, template: &[u8], ctl: &MapMem, stop: &AtomicBool) -> Result<()> {
    let interval = ctl.read_u64(CTL_INTERVAL);
    let mut transient = 0;
    // Whether the kernel ever accepted a call: a refusal before that means the method is not
    // available on this machine, not a failure mid-run.
    let mut started = false;
    while !stop.load(Ordering::SeqCst) {
        // Pacing restarts from the frames already sent, so a gap between calls is not made
        // up in one burst.
        let sent = ctl.read_u64(CTL_NEXT);
        let offset = ((u128::from(sent) * u128::from(interval)) >> 16) as u64;
        ctl.write_u64(CTL_START_NS, monotonic_ns().saturating_sub(offset));
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(template);
        opts.repeat = u32::MAX;
        opts.attrs = TestRunAttrs::new().xdp_live_frames(KERNEL_BATCH);
        match prog.test_run(opts) {
            Ok(_) => {
                transient = 0;
                started = true;
            }
            Err(ProgramError::SyscallError(e)) => match e.io_error.raw_os_error() {
                Some(libc::EINTR) => {}
                // The kernel's page pool or frame cache could not allocate a batch: memory
                // pressure, which passes. The program had not run for the frame that failed,
                // so the next call starts from it, and the frames before it were flushed.
                Some(libc::ENOMEM | libc::EAGAIN | libc::EBUSY)
                    if transient < TRANSIENT_RETRIES =>
                {
                    transient += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Some(libc::EPERM | libc::EINVAL | libc::EOPNOTSUPP) if !started => {
                    return Err(anyhow!(
                        "{XDP_METHOD_UNAVAILABLE}: this kernel refuses BPF_PROG_TEST_RUN with \
                         live frames ({}: {}; it needs Linux 5.18 or later and may be denied by \
                         the host's policy); use --method ring",
                        e.call,
                        e.io_error
                    ))
                }
                _ => {
                    return Err(anyhow!(
                        "BPF_PROG_TEST_RUN with live frames failed: {}: {}",
                        e.call,
                        e.io_error
                    ))
                }
            },
            Err(e) => return Err(anyhow!("BPF_PROG_TEST_RUN with live frames failed: {e}")),
        }
    }
    Ok(())
}

/// Start of the error when the kernel does not allow the method at all (tests and scripts skip
/// on it).
pub const XDP_METHOD_UNAVAILABLE: &str = "the xdp send method is unavailable";

/// Consecutive failed calls with a passing cause (memory pressure) before the generator gives up.
const TRANSIENT_RETRIES: u32 = 100;
