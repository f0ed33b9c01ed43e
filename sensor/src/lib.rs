//! The sensor library: everything the `sensor` binary does, in the order packets flow through it.
//!
//! `capture` (pcap replay) -> `decode` (L2-L4, tunnels, fragments) -> `dispatch` (symmetric hash,
//! SPSC rings) -> `flow` (per-worker flow table) -> `dpi` (TLS, HTTP, DNS) -> `export` (EVE JSON).
//! `command` takes signed block/unblock commands and operator requests to the live XDP
//! blocklist. The test devices (fixture generator, amplifier, traffic generator, accuracy
//! report, benchmark floors) are the `sensor-testkit` crate (`sensor/testkit`).
//! `decode`, `dpi` and `time` are re-exported from the `sensor-proto` crate.
//! See ARCHITECTURE.md at the repository root for the map and the invariants.

pub mod capture;
pub mod command;
pub mod config;
pub mod dispatch;
pub mod export;
pub mod flow;
pub mod metrics;
pub mod pipeline;
pub mod stats;
pub mod worker;

/// The parsers live in their own crate (`sensor/proto`); re-exported so every path stays put.
pub use sensor_proto::{decode, dpi, time};
