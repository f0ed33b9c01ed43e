//! AF_XDP sockets with `xsk-rs`: one socket per rx queue, each with its own UMEM.
//!
//! The UMEM has as many frames as the fill ring has slots, so every frame fits in the fill ring
//! at once and giving frames back can never fail (the fill ring is at least as large as the rx
//! ring, as the AF_XDP maintainers recommend). libxdp's own XDP program is inhibited: our program
//! (capture/xdp.rs) redirects into the XSKMAP the socket fds are set into.
//!
//! A frame is lent to the caller only for the duration of the callback; the caller copies what
//! it keeps, then the frame goes straight back to the fill ring. No allocation per packet.

use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{FillQueue, FrameDesc, RxQueue, Socket, Umem};

/// Copy or zero-copy binding (config `live.bind_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindMode {
    /// Zero-copy when the driver supports it, else copy.
    Auto,
    Copy,
    ZeroCopy,
}

/// Ring and UMEM sizes (powers of two) and polling mode for one socket.
#[derive(Clone, Copy, Debug)]
pub struct XskOptions {
    pub rx_ring: u32,
    /// Fill ring slots, and so UMEM frames.
    pub fill_ring: u32,
    pub frame_size: u32,
    pub bind: BindMode,
    /// Busy polling (SO_PREFER_BUSY_POLL): the capture thread drives the NAPI loop itself and
    /// never sleeps; it then needs a core to itself.
    pub busy_poll: bool,
    /// Back the UMEM with 2 MiB huge pages: the kernel fills frames in fill-ring order through
    /// the whole UMEM, so with 4 KiB pages reading a frame is often a TLB miss.
    pub huge_pages: bool,
}

/// 2 MiB pages one UMEM of `frames` frames of `frame_size` bytes takes.
fn umem_huge_pages(frames: u32, frame_size: u32) -> u64 {
    (u64::from(frames) * u64::from(frame_size)).div_ceil(2 << 20)
}

/// Counters the kernel keeps for a socket (`getsockopt(XDP_STATISTICS)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for lack of a fill ring frame or another reason (includes fill-empty).
    pub rx_dropped: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty (a cause of `rx_dropped`, not an extra drop).
    pub fill_ring_empty: u64,
    pub rx_invalid: u64,
}

impl XskStats {
    /// Frames lost between the XDP redirect and our rx ring.
    pub fn lost(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }
}

/// One bound AF_XDP socket and its UMEM.
pub struct XskSocket {
    umem: Umem,
    rx: RxQueue,
    fill: FillQueue,
    /// Scratch descriptors for a batch.
    descs: Vec<FrameDesc>,
    /// True when bound in zero-copy mode.
    pub zero_copy: bool,
    busy_poll: bool,
    pub queue: u32,
}

/// Why a socket could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{iface} queue {queue}: {msg}")]
pub struct XskError {
    pub iface: String,
    pub queue: u32,
    pub msg: String,
}

const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

impl XskSocket {
    pub fn open(iface: &str, queue: u32, opts: &XskOptions) -> Result<XskSocket, XskError> {
        let err = |msg: String| XskError {
            iface: iface.to_string(),
            queue,
            msg,
        };
        let qs = |n: u32, what: &str| {
            QueueSize::new(n).map_err(|e| err(format!("{what} size {n}: {e}")))
        };
        let umem_cfg = UmemConfig::builder()
            .frame_size(
                FrameSize::new(opts.frame_size)
                    .map_err(|e| err(format!("frame size {}: {e}", opts.frame_size)))?,
            )
            .fill_queue_size(qs(opts.fill_ring, "fill ring")?)
            .comp_queue_size(qs(64, "completion ring")?)
            .build()
            .map_err(|e| err(format!("UMEM config: {e}")))?;
        let frames = NonZeroU32::new(opts.fill_ring).ok_or_else(|| err("no frames".into()))?;
        let umem_err = |e: &dyn std::fmt::Display| {
            err(format!(
                "cannot create the UMEM ({e}); a non-root sensor needs CAP_IPC_LOCK"
            ))
        };
        let mut huge = opts.huge_pages;
        let (umem, descs) = if opts.huge_pages {
            match Umem::new(umem_cfg, frames, true) {
                Ok(u) => u,
                Err(e) => {
                    // The default: a machine without reserved pages still captures.
                    let need = umem_huge_pages(opts.fill_ring, opts.frame_size);
                    tracing::info!(
                        "{iface} queue {queue}: no huge pages for the UMEM ({e}), using 4 KiB \
                         pages; {need} free 2 MiB pages (sysctl vm.nr_hugepages) save a TLB \
                         miss per frame read"
                    );
                    huge = false;
                    Umem::new(umem_cfg, frames, false).map_err(|e| umem_err(&e))?
                }
            }
        } else {
            Umem::new(umem_cfg, frames, false).map_err(|e| umem_err(&e))?
        };
        let ifname: Interface = iface
            .parse()
            .map_err(|e| err(format!("bad interface name: {e}")))?;
        let modes: &[(BindFlags, bool)] = match opts.bind {
            BindMode::Auto => &[
                (BindFlags::XDP_ZEROCOPY, true),
                (BindFlags::XDP_COPY, false),
            ],
            BindMode::Copy => &[(BindFlags::XDP_COPY, false)],
            BindMode::ZeroCopy => &[(BindFlags::XDP_ZEROCOPY, true)],
        };
        let mut last = String::new();
        for (flags, zc) in modes {
            let cfg = SocketConfig::builder()
                .rx_queue_size(qs(opts.rx_ring, "rx ring")?)
                .tx_queue_size(qs(64, "tx ring")?)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(*flags | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: the UMEM is not shared with another socket (one UMEM per socket), so
            // the shared-UMEM double-free hazard of Socket::new does not apply.
            match unsafe { Socket::new(cfg, &umem, &ifname, queue) } {
                Ok((_tx, rx, Some((mut fill, _comp)))) => {
                    // SAFETY: these descriptors are this UMEM's and none is in use yet.
                    let given = unsafe { fill.produce(&descs) };
                    if given != descs.len() {
                        return Err(err(format!(
                            "fill ring took {given} of {} frames",
                            descs.len()
                        )));
                    }
                    let mut s = XskSocket {
                        umem,
                        rx,
                        fill,
                        descs,
                        zero_copy: *zc,
                        busy_poll: opts.busy_poll,
                        queue,
                    };
                    if opts.busy_poll {
                        s.enable_busy_poll();
                    }
                    tracing::info!(
                        "{iface} queue {queue}: AF_XDP socket bound in {} mode{}, UMEM on {}",
                        if *zc { "zero-copy" } else { "copy" },
                        if opts.busy_poll { ", busy polling" } else { "" },
                        if huge { "2 MiB pages" } else { "4 KiB pages" }
                    );
                    return Ok(s);
                }
                Ok(_) => return Err(err("socket came without fill/completion rings".into())),
                Err(e) => last = e.to_string(),
            }
        }
        Err(err(format!("cannot bind an AF_XDP socket: {last}")))
    }

    fn enable_busy_poll(&mut self) {
        let fd = self.fd();
        for (opt, val) in [
            (SO_PREFER_BUSY_POLL, 1),
            (libc::SO_BUSY_POLL, 20),
            (SO_BUSY_POLL_BUDGET, 64),
        ] {
            // SAFETY: setsockopt reads an int we own.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&val as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                tracing::warn!(
                    "queue {}: busy-poll socket option {opt}: {}",
                    self.queue,
                    std::io::Error::last_os_error()
                );
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// Receives up to one batch, calling `f` with each frame's bytes, then gives the frames back
    /// to the fill ring. Waits up to `timeout_ms` for the first frame (not when busy polling).
    /// Returns the number of frames.
    pub fn recv_batch(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8])) -> usize {
        // SAFETY: `descs` only ever holds this UMEM's descriptors.
        let mut n = unsafe { self.rx.consume(&mut self.descs) };
        if n == 0 {
            let t = if self.busy_poll { 0 } else { timeout_ms };
            if !matches!(self.rx.poll(t), Ok(true)) && !self.busy_poll {
                return 0;
            }
            // SAFETY: as above.
            n = unsafe { self.rx.consume(&mut self.descs) };
            if n == 0 {
                return 0;
            }
        }
        let batch = self.descs.get(..n).unwrap_or_default();
        for (i, d) in batch.iter().enumerate() {
            if let Some(next) = batch.get(i + 1) {
                // SAFETY: consumed above like `d`; only its address is taken.
                prefetch(unsafe { self.umem.data(next) }.contents());
            }
            // SAFETY: the frame was just consumed from the rx ring: the kernel no longer
            // writes it until we give it back below.
            let data = unsafe { self.umem.data(d) };
            f(data.contents());
        }
        // SAFETY: frames consumed above, not used after this; the fill ring holds every frame
        // of the UMEM, so this always takes all of them.
        let back = unsafe { self.fill.produce(&self.descs[..n]) };
        debug_assert_eq!(back, n);
        if self.fill.needs_wakeup() {
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
        n
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> XskStats {
        match self.rx.fd().xdp_statistics() {
            Ok(s) => XskStats {
                rx_dropped: s.rx_dropped(),
                rx_ring_full: s.rx_ring_full(),
                fill_ring_empty: s.rx_fill_ring_empty_descs(),
                rx_invalid: s.rx_invalid_descs(),
            },
            Err(_) => XskStats::default(),
        }
    }
}

/// Asks for the first cache line of the next frame while the current one is handled: the
/// kernel wrote it on the NAPI thread's core, and the first read of every frame otherwise
/// waited for that line (a third of the decoder's time here).
#[inline(always)]
fn prefetch(frame: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint; it never faults and reads nothing into the program.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(frame.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = frame;
}

#[cfg(test)]
mod tests {
    use super::umem_huge_pages;

    #[test]
    fn the_log_asks_for_whole_pages_covering_the_umem() {
        assert_eq!(umem_huge_pages(16384, 2048), 16, "the default 32 MiB UMEM");
        assert_eq!(umem_huge_pages(4096, 4096), 8);
        assert_eq!(umem_huge_pages(100, 2048), 1, "a partial page is a page");
    }
}
