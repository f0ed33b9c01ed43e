//! The sensor: the `sensor` binary's CLI, config composition, and the orchestration of replay
//! and live capture over the sensor's crates, in the order packets flow through them:
//!
//! - `sensor-capture`: pcap replay, the XDP program, AF_XDP sockets (re-exported with the live
//!   threads as [`capture`]);
//! - `sensor-proto`: decode (L2-L4, tunnels, fragments) and DPI (TLS, QUIC, HTTP, DNS);
//! - `sensor-core`: dispatch (keyed symmetric hash, SPSC rings), the per-worker flow table, the
//!   worker and the records it emits;
//! - `sensor-export`: EVE JSON, the ClickHouse and NATS sinks, spool, enrichment.
//!
//! This crate adds `config` (the TOML file, composed of each stage's section), `pipeline`
//! (replay and live orchestration), `command` (signed block/unblock commands and operator
//! requests to the live XDP blocklist), `metrics` and `stats`. The test devices are the
//! `sensor-testkit` crate. See ARCHITECTURE.md at the repository root for the map and the
//! invariants.

pub mod capture;
pub mod command;
pub mod config;
pub mod metrics;
pub mod pipeline;
pub mod stats;

/// The stages' crates under the paths the binary, the tests and the pipeline use.
pub use sensor_core::{dispatch, flow, worker};
pub use sensor_export as export;
pub use sensor_proto::{decode, dpi, time};
