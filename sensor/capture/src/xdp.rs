//! The XDP program (`xdp-prog/sensor.bpf.c`, compiled by build.rs and embedded here) and its
//! loader, with `aya`.
//!
//! Attachment goes through a bpf_link (aya's default on current kernels): the kernel detaches
//! the program when the link's fd closes, which happens on a normal exit, on SIGINT/SIGTERM
//! (the run path drops the link before it exits) and when the process dies from a panic or
//! SIGKILL. Nothing is left on the interface and nothing has to be cleaned up at the next start;
//! a program attached by someone else (e.g. `ip link set dev IF xdp obj ...`) makes the attach
//! fail with EBUSY, reported as such.
//!
//! Maps are taken out of the program object so that the control thread can own them while the
//! program stays attached: counters (per CPU), config flags, capture filter, blocklist, bypass.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

/// The compiled XDP program.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// Indexes of the per-CPU counters, as `enum counter` in the C program.
pub mod counter {
    pub const SEEN: u32 = 0;
    pub const SEEN_BYTES: u32 = 1;
    pub const REDIRECTED: u32 = 2;
    pub const NO_SOCKET: u32 = 3;
    pub const FILTERED: u32 = 4;
    pub const BLOCKED: u32 = 5;
    pub const BYPASSED: u32 = 6;
    pub const BYPASSED_BYTES: u32 = 7;
    pub const COUNT: u32 = 8;
}

/// Flags of the `config` map, as `CFG_*` in the C program.
const CFG_FILTER_CIDR: u32 = 1;
const CFG_FILTER_PORT: u32 = 2;
const CFG_BYPASS: u32 = 4;
const CFG_DROP_ALL: u32 = 8;
const CFG_BLOCKLIST: u32 = 16;

/// One direction of a bypassed flow, as the XDP program sees its packets (`struct flow_key`).
/// Addresses are 16 bytes, IPv4 mapped; ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

impl FlowKey {
    pub fn new(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
            pad: [0; 3],
        }
    }

    /// The other direction of the same flow.
    pub fn reversed(&self) -> FlowKey {
        FlowKey::new(self.dst, self.src, self.dport, self.sport, self.proto)
    }
}

/// What the XDP program counted for one direction of a bypassed flow (`struct flow_counters`).
/// `last_ns` is CLOCK_MONOTONIC as of the kernel's last scheduler tick (`bpf_ktime_get_coarse_ns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub pkts: u64,
    pub bytes: u64,
    pub last_ns: u64,
}

// SAFETY: plain #[repr(C)] integers and byte arrays without implicit padding (40 and 24 bytes),
// matching the C structs the kernel map stores.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowCounters {}

/// Why the live path could not start. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error(
        "loading the XDP program was refused ({0}): run as root, or give the binary CAP_BPF, CAP_NET_ADMIN and CAP_IPC_LOCK"
    )]
    Permission(String),
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    #[error("interface {iface}: another XDP program is attached (EBUSY); remove it first (ip link set dev {iface} xdp off)")]
    Busy { iface: String },
    #[error("interface {iface}: cannot attach XDP in {mode} mode: {err}")]
    Attach {
        iface: String,
        mode: &'static str,
        err: String,
    },
    #[error("XDP map {map}: {err}")]
    Map { map: &'static str, err: String },
}

/// How to attach (config `live.xdp_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic (SKB) mode.
    Auto,
    Driver,
    Skb,
}

/// What the program does with frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// The sensor's: blocklist (looked up only while it has entries: see
    /// [`XdpMaps::set_blocklist_enabled`]), filter, bypass, redirect.
    Capture { bypass: bool },
    /// The benchmark's floor: count and drop every frame.
    CountAndDrop,
}

/// The capture filter: CIDRs (either address must match) and ports (either port must match).
#[derive(Clone, Debug, Default)]
pub struct CaptureFilter {
    pub cidrs: Vec<(IpAddr, u8)>,
    pub ports: Vec<u16>,
}

/// The loaded and attached program. Dropping it detaches the program.
pub struct XdpProgram {
    ebpf: Ebpf,
    link: Option<aya::programs::xdp::XdpLinkId>,
    /// `"driver"` or `"skb"`.
    pub mode: &'static str,
    iface: String,
    /// The `config` flags set at load.
    flags: u32,
}

/// Maps the control thread owns once the program runs.
pub struct XdpMaps {
    pub counters: PerCpuArray<MapData, u64>,
    /// CIDR (prefix over the 16-byte address, see [`lpm_key`]) -> expiry, CLOCK_MONOTONIC ns.
    pub blocklist: LpmTrie<MapData, [u8; 16], u64>,
    pub bypass: BpfHashMap<MapData, FlowKey, FlowCounters>,
    config: Array<MapData, u32>,
    /// The flags set at load, to which [`XdpMaps::set_blocklist_enabled`] adds its own.
    flags: u32,
}

fn map_err(map: &'static str, e: impl std::fmt::Display) -> XdpError {
    XdpError::Map {
        map,
        err: e.to_string(),
    }
}

/// The index of an interface in this network namespace; None when it does not exist.
pub fn ifindex(iface: &str) -> Option<u32> {
    let c = std::ffi::CString::new(iface).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The trie key of a CIDR as the program looks addresses up: the 16-byte form of the network
/// address (host bits cleared) and its prefix length over those 128 bits (96 + len for IPv4).
pub fn lpm_key(net: &ipnet::IpNet) -> LpmKey<[u8; 16]> {
    let net = net.trunc();
    let len = match net {
        ipnet::IpNet::V4(n) => 96 + u32::from(n.prefix_len()),
        ipnet::IpNet::V6(n) => u32::from(n.prefix_len()),
    };
    LpmKey::new(len, addr16(net.addr()))
}

/// IPv4-mapped (or plain IPv6) 16-byte form, as the program keys addresses.
pub fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Writes the program's config word (its behaviour) and fills the capture filter's maps;
/// returns the config word.
fn configure(
    ebpf: &mut Ebpf,
    filter: &CaptureFilter,
    behaviour: Behaviour,
) -> Result<u32, XdpError> {
    let mut flags = match behaviour {
        Behaviour::Capture { bypass } => {
            if bypass {
                CFG_BYPASS
            } else {
                0
            }
        }
        Behaviour::CountAndDrop => CFG_DROP_ALL,
    };
    if !filter.cidrs.is_empty() {
        flags |= CFG_FILTER_CIDR;
        let map = ebpf
            .map_mut("filter_cidrs")
            .ok_or_else(|| map_err("filter_cidrs", "missing"))?;
        let mut trie: LpmTrie<_, [u8; 16], u8> =
            LpmTrie::try_from(map).map_err(|e| map_err("filter_cidrs", e))?;
        for (addr, len) in &filter.cidrs {
            let prefix = match addr {
                IpAddr::V4(_) => 96 + u32::from(*len),
                IpAddr::V6(_) => u32::from(*len),
            };
            trie.insert(&LpmKey::new(prefix, addr16(*addr)), 1, 0)
                .map_err(|e| map_err("filter_cidrs", e))?;
        }
    }
    if !filter.ports.is_empty() {
        flags |= CFG_FILTER_PORT;
        let map = ebpf
            .map_mut("filter_ports")
            .ok_or_else(|| map_err("filter_ports", "missing"))?;
        let mut ports: BpfHashMap<_, u16, u8> =
            BpfHashMap::try_from(map).map_err(|e| map_err("filter_ports", e))?;
        for p in &filter.ports {
            ports
                .insert(p, 1, 0)
                .map_err(|e| map_err("filter_ports", e))?;
        }
    }
    {
        let map = ebpf
            .map_mut("config")
            .ok_or_else(|| map_err("config", "missing"))?;
        let mut cfg: Array<_, u32> = Array::try_from(map).map_err(|e| map_err("config", e))?;
        cfg.set(0, flags, 0).map_err(|e| map_err("config", e))?;
    }
    Ok(flags)
}

impl XdpProgram {
    /// Loads the program, configures it and attaches it to `iface`. `MEMLOCK` is raised when
    /// allowed (not fatal otherwise: current kernels charge BPF memory to the cgroup).
    pub fn load(
        iface: &str,
        mode: AttachMode,
        filter: &CaptureFilter,
        behaviour: Behaviour,
    ) -> Result<XdpProgram, XdpError> {
        let if_index = ifindex(iface).ok_or_else(|| XdpError::NoInterface(iface.to_string()))?;
        raise_memlock();
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| load_error(&e))?;

        let filter_flags = configure(&mut ebpf, filter, behaviour)?;

        let prog: &mut Xdp = ebpf
            .program_mut("sensor_xdp")
            .ok_or_else(|| XdpError::Load("program sensor_xdp missing from the object".into()))?
            .try_into()
            .map_err(|e| XdpError::Load(format!("{e}")))?;
        prog.load().map_err(|e| load_error(&e))?;
        let tries: &[(XdpMode, &'static str)] = match mode {
            AttachMode::Auto => &[(XdpMode::Driver, "driver"), (XdpMode::Skb, "skb")],
            AttachMode::Driver => &[(XdpMode::Driver, "driver")],
            AttachMode::Skb => &[(XdpMode::Skb, "skb")],
        };
        let mut last = None;
        for (i, (m, name)) in tries.iter().enumerate() {
            match prog.attach_to_if_index(if_index, *m) {
                Ok(link) => {
                    if i > 0 {
                        tracing::warn!(
                            "{iface}: native XDP refused ({}); attached in generic (skb) mode, slower",
                            last.as_ref().map_or(String::new(), |e: &String| e.clone())
                        );
                    } else {
                        tracing::info!("{iface}: XDP program attached in {name} mode");
                    }
                    return Ok(XdpProgram {
                        ebpf,
                        link: Some(link),
                        mode: name,
                        iface: iface.to_string(),
                        flags: filter_flags,
                    });
                }
                Err(e) => {
                    let s = chain(&e);
                    if s.contains("EBUSY") || s.contains("Device or resource busy") {
                        return Err(XdpError::Busy {
                            iface: iface.to_string(),
                        });
                    }
                    last = Some(s);
                }
            }
        }
        Err(XdpError::Attach {
            iface: iface.to_string(),
            mode: tries.last().map_or("", |t| t.1),
            err: last.unwrap_or_default(),
        })
    }

    /// Points rx queue `queue` at an AF_XDP socket.
    pub fn register_socket(&mut self, queue: u32, fd: impl AsRawFd) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("xsks")
            .ok_or_else(|| map_err("xsks", "missing"))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| map_err("xsks", e))?;
        xsks.set(queue, fd.as_raw_fd(), 0)
            .map_err(|e| map_err("xsks", e))
    }

    /// Hands the maps the control thread needs over to it.
    pub fn take_maps(&mut self) -> Result<XdpMaps, XdpError> {
        let mut take = |name: &'static str| {
            self.ebpf
                .take_map(name)
                .ok_or_else(|| map_err(name, "missing"))
        };
        let counters = take("counters")?;
        let blocklist = take("blocklist")?;
        let bypass = take("bypass")?;
        let config = take("config")?;
        Ok(XdpMaps {
            counters: PerCpuArray::try_from(counters).map_err(|e| map_err("counters", e))?,
            blocklist: LpmTrie::try_from(blocklist).map_err(|e| map_err("blocklist", e))?,
            bypass: BpfHashMap::try_from(bypass).map_err(|e| map_err("bypass", e))?,
            config: Array::try_from(config).map_err(|e| map_err("config", e))?,
            flags: self.flags,
        })
    }

    /// Detaches the program now (also done on drop). After it returns no XDP run is in
    /// progress, so every redirected frame is already on a socket's rx ring.
    pub fn detach(&mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        let detached = self
            .ebpf
            .program_mut("sensor_xdp")
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .map(|p| p.detach(link));
        match detached {
            Some(Ok(())) => tracing::info!("{}: XDP program detached", self.iface),
            Some(Err(e)) => tracing::warn!("{}: detaching XDP: {e}", self.iface),
            None => tracing::warn!("{}: XDP program object gone before detach", self.iface),
        }
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach();
    }
}

impl XdpMaps {
    /// Turns the program's blocklist lookups on or off: on while the list has entries, so an
    /// empty list costs no lookup per frame. One word of an array map, which the program reads
    /// once per frame.
    pub fn set_blocklist_enabled(&mut self, on: bool) -> Result<(), XdpError> {
        let flags = if on {
            self.flags | CFG_BLOCKLIST
        } else {
            self.flags
        };
        self.config
            .set(0, flags, 0)
            .map_err(|e| map_err("config", e))
    }

    /// Sums one counter over all CPUs.
    pub fn counter(&self, idx: u32) -> u64 {
        self.counters
            .get(&idx, 0)
            .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
            .unwrap_or(0)
    }

    /// All counters, summed over CPUs, indexed by [`counter`].
    pub fn counters(&self) -> [u64; counter::COUNT as usize] {
        let mut out = [0u64; counter::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.counter(i as u32);
        }
        out
    }
}

/// An error and its sources on one line (aya's errors keep the OS error in `source`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A load failure, told apart: missing privileges, or anything else.
fn load_error(e: &dyn std::error::Error) -> XdpError {
    let s = chain(e);
    let denied = s.contains("EPERM")
        || s.contains("Operation not permitted")
        || s.contains("EACCES")
        || s.contains("Permission denied");
    if denied {
        XdpError::Permission(s)
    } else {
        XdpError::Load(s)
    }
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_coarse_ns` (blocklist expiry, bypass last
/// seen), which lags it by at most one scheduler tick.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Lifts RLIMIT_MEMLOCK for older kernels that charge BPF maps and UMEM to it. Failure is
/// logged, not fatal: some sandboxes forbid it and current kernels charge the memory cgroup.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        tracing::debug!(
            "setrlimit(MEMLOCK) refused: {}; continuing",
            std::io::Error::last_os_error()
        );
    }
}
