//! Export: what workers produce and the sinks that consume it.
//!
//! Workers turn finished flows and DPI events into [`Record`]s and send them in batches over a
//! bounded channel to the exporter ([`runtime`]), off the packet cores. Sinks only see records;
//! they know nothing of packets or flow tables: EVE JSON ([`eve`]), ClickHouse
//! ([`clickhouse`]) and NATS JetStream ([`nats`]). The network sinks are a list for the
//! exporter: each is an [`lane::Encoder`] on the fan-out thread and a [`sink::Sink`] driven by
//! the shared retry, backoff and drain logic of [`sink`] with its on-disk [`spool`].

pub mod clickhouse;
pub mod enrich;
pub mod eve;
pub mod ipproto_names;
pub mod lane;
pub mod nats;
pub mod prometheus;
pub mod runtime;
pub mod sink;
pub mod spool;
pub mod tls;

pub mod config;

/// The records are the flow table's output (`sensor-core`); sinks take them as they are.
pub use sensor_core::record::*;
