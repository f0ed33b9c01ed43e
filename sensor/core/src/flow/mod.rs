//! Per-worker flow table: bidirectional flows, counters, timeouts, DPI state.
//!
//! One table per worker, touched only by that worker's thread (no locks). Time is the capture
//! time carried by packets and ticks: the table never reads the clock, so a replay produces the
//! same flows on every run. Memory is bounded: a fixed maximum of flows (the oldest is evicted
//! when full, and counted), and DPI state is boxed only while DPI still wants the flow.

mod table;

pub use table::{FlowStats, FlowTable};

/// One direction of a flow as a packet carries it: what the XDP bypass map is keyed by.
/// Addresses are 16 bytes (IPv4 mapped), ports in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl DirKey {
    pub fn reversed(&self) -> DirKey {
        DirKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// What the table asks of the live path's bypass (see `FlowTable::enable_bypass`). The key is
/// the initiator's direction; the bypass covers both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BypassEvent {
    /// DPI is finished with this flow: count its further packets in the kernel.
    Add(DirKey),
    /// The flow was exported: stop bypassing it.
    Remove(DirKey),
}

/// Which flows the live bypass may take, by the protocol DPI found (config
/// `live.bypass_protocols`, with EVE's `app_proto` names). A flow whose protocol is not listed
/// is never bypassed: every packet of it reaches its worker. When a listed flow is bypassed:
/// - `tls`: once the handshake was read (ServerHello, and the certificate up to TLS 1.2);
/// - `quic`: once the ClientHello was read (the rest is ciphertext);
/// - `failed`: once detection gave up (no parser recognised the payload);
/// - `http`: after the first exchange (request and response headers); the response body and
///   later requests on the connection are not seen, hence not in the default;
/// - `dns`: after the first response; later queries on the same 5-tuple are not seen, hence
///   not in the default;
/// - any of them also when its parser stopped by itself (nothing more to extract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct BypassProtocols {
    bits: u8,
}

impl BypassProtocols {
    /// Accepted names, in the order the docs list them.
    pub const NAMES: [(&'static str, AppProto); 5] = [
        ("tls", AppProto::Tls),
        ("quic", AppProto::Quic),
        ("http", AppProto::Http),
        ("dns", AppProto::Dns),
        ("failed", AppProto::Failed),
    ];

    /// Nothing is bypassed.
    pub const NONE: BypassProtocols = BypassProtocols { bits: 0 };

    /// The default: the protocols whose metadata is complete once DPI is done with them.
    pub const DEFAULT: [&'static str; 3] = ["tls", "quic", "failed"];

    /// From names; the error names the first unknown one and what is accepted.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<BypassProtocols, String> {
        let mut bits = 0;
        for n in names {
            let n = n.as_ref();
            let Some(i) = Self::NAMES.iter().position(|(name, _)| *name == n) else {
                let all: Vec<&str> = Self::NAMES.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown protocol {n:?} (expected some of {})",
                    all.join(", ")
                ));
            };
            bits |= 1 << i;
        }
        Ok(BypassProtocols { bits })
    }

    /// May a flow of protocol `p` be bypassed?
    #[inline]
    pub fn allows(self, p: AppProto) -> bool {
        Self::NAMES
            .iter()
            .position(|(_, q)| *q == p)
            .is_some_and(|i| self.bits & (1 << i) != 0)
    }
}

impl TryFrom<Vec<String>> for BypassProtocols {
    type Error = String;
    fn try_from(names: Vec<String>) -> Result<BypassProtocols, String> {
        BypassProtocols::parse(&names)
    }
}

/// The names, in [`BypassProtocols::NAMES`] order (for the effective config).
impl From<BypassProtocols> for Vec<String> {
    fn from(p: BypassProtocols) -> Vec<String> {
        BypassProtocols::NAMES
            .iter()
            .filter(|(_, proto)| p.allows(*proto))
            .map(|(name, _)| (*name).to_string())
            .collect()
    }
}

impl Default for BypassProtocols {
    fn default() -> Self {
        // The names are this type's own: parsing them cannot fail.
        BypassProtocols::parse(&Self::DEFAULT).unwrap_or(Self::NONE)
    }
}

use sensor_proto::dpi::AppProto;
use sensor_proto::time::NANOS_PER_SEC;

/// Flow table limits and timeouts (config `[flow]`). Timeouts are in packet time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Flows tracked at once by one worker.
    pub max_flows: usize,
    pub tcp_idle_ns: u64,
    pub udp_idle_ns: u64,
    pub other_idle_ns: u64,
    /// How long a TCP flow closed by FIN/RST lingers to collect its last ACKs.
    pub closed_ns: u64,
    /// A flow lasting longer than this is exported and goes on under a new flow_id.
    pub active_ns: u64,
    /// The VLAN id is part of the flow key (as Suricata's `vlan.use-for-tracking`): equal
    /// addresses in different VLANs are different flows.
    pub vlan_in_key: bool,
    /// Emit a [`crate::record::Record::FlowStart`] when a flow is created (`nats.flow_start`).
    pub flow_start: bool,
    /// The flow key's hash (`flow.hash_key`).
    pub hasher: crate::dispatch::FlowHasher,
}

impl FlowConfig {
    /// The VLAN id that takes part in the key of a packet in VLAN `vlan`.
    #[inline]
    pub fn key_vlan(&self, vlan: u16) -> u16 {
        if self.vlan_in_key {
            vlan
        } else {
            0
        }
    }

    /// The hash that places a packet's flow: in the key's VLAN, with the configured key.
    #[inline]
    pub fn flow_hash(&self, info: &sensor_proto::decode::PacketInfo) -> u64 {
        self.hasher.hash(info, self.key_vlan(info.vlan))
    }

    /// What a decoded packet carries to its worker: the one place the replay reader and both
    /// live paths (ring and inline) build it, so they hash alike.
    #[inline]
    pub fn head(
        &self,
        ts: sensor_proto::time::Ts,
        wire_len: u32,
        info: sensor_proto::decode::PacketInfo,
    ) -> crate::dispatch::PacketHead {
        crate::dispatch::PacketHead {
            ts,
            wire_len,
            hash: self.flow_hash(&info),
            info,
        }
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1 << 20,
            tcp_idle_ns: 300 * NANOS_PER_SEC,
            udp_idle_ns: 120 * NANOS_PER_SEC,
            other_idle_ns: 60 * NANOS_PER_SEC,
            closed_ns: 10 * NANOS_PER_SEC,
            active_ns: 1800 * NANOS_PER_SEC,
            vlan_in_key: true,
            flow_start: false,
            hasher: crate::dispatch::FlowHasher::default(),
        }
    }
}
