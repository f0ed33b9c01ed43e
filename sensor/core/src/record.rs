//! The records a worker produces and the exporter consumes: a finished flow, a flow's first
//! packet, a DPI event. They are the contract between the flow table and the sinks, so they
//! live here with the flow table, and `sensor-export` takes them as its input.

use sensor_proto::decode::TunnelInfo;
use sensor_proto::dpi::{AppEvent, AppProto};
use sensor_proto::time::Ts;

/// Identity of a flow, repeated in every record of the flow (flow record and events alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowMeta {
    /// Stable id shared by a flow's flow record and all its events (EVE `flow_id`).
    pub flow_id: u64,
    /// Initiator side (EVE `src_*`) and responder side (`dest_*`); IPv4 is IPv4-mapped.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub is_v6: bool,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub app_proto: AppProto,
    pub vlan: u16,
    pub tunnel: Option<TunnelInfo>,
}

/// Flow state at export, EVE `flow.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    /// Packets in one direction only.
    New,
    /// Packets in both directions.
    Established,
    /// TCP closed by FIN in both directions or by RST.
    Closed,
}

/// Why a flow record was exported, EVE `flow.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// TCP FIN seen in both directions.
    Fin,
    /// TCP RST.
    Rst,
    /// Idle for longer than its timeout.
    Timeout,
    /// Lasted longer than the active timeout; the flow goes on under a new `flow_id`.
    ActiveTimeout,
    /// End of capture (or sensor shutdown).
    Shutdown,
    /// Evicted to make room in a full flow table.
    Evicted,
}

impl EndReason {
    pub const ALL: [EndReason; 6] = [
        EndReason::Fin,
        EndReason::Rst,
        EndReason::Timeout,
        EndReason::ActiveTimeout,
        EndReason::Shutdown,
        EndReason::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Timeout => "timeout",
            EndReason::ActiveTimeout => "active_timeout",
            EndReason::Shutdown => "shutdown",
            EndReason::Evicted => "evicted",
        }
    }
}

/// One exported flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub meta: FlowMeta,
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    pub start: Ts,
    pub end: Ts,
    pub state: FlowState,
    pub reason: EndReason,
    /// TCP flags seen from each side (0 for other protocols).
    pub tcp_flags_ts: u8,
    pub tcp_flags_tc: u8,
}

/// A flow's first packet, for consumers that must not wait for the flow to end (scan
/// detection): published to NATS only (`nats.flow_start`), on `sensor.<id>.flow_start`, so
/// EVE files and ClickHouse keep one record per flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStartRecord {
    pub meta: FlowMeta,
    pub ts: Ts,
}

/// One DPI event of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub meta: FlowMeta,
    pub event: AppEvent,
}

/// Records travel in batch vectors that the exporter recycles, so an unboxed event costs
/// only slot size, while a box would cost an allocation per event on the worker.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Flow(FlowRecord),
    Event(EventRecord),
    FlowStart(FlowStartRecord),
}
