//! The sensor's per-core engine, in the order a packet meets it: `dispatch` (the keyed
//! symmetric flow hash and the SPSC ring messages that carry packets to a worker), `flow` (the
//! worker's flow table, which runs DPI from `sensor-proto` and ends flows), `worker` (the loop
//! that owns one flow table and sends batches of `record`s to the exporter).
//!
//! Deterministic and free of I/O: time comes in with the packets (capture timestamps), so a
//! replay gives the same records every run. Capture (`sensor-capture`) feeds it; export
//! (`sensor-export`) consumes its records.

pub mod dispatch;
pub mod flow;
pub mod record;
pub mod worker;
