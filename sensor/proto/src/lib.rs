//! The sensor's parsers: bytes in, typed results out. No capture, no I/O, no clock.
//!
//! `decode` (L2-L4: link types, tunnels, IP fragments) turns a frame into a `PacketInfo`;
//! `dpi` (TLS, QUIC, HTTP, DNS) turns flow payloads into application events; `time` is the
//! packet timestamp type both use. Kept as their own crate so they build, test and fuzz without
//! the capture and export stacks (aya, AF_XDP, tokio, NATS, TLS clients).
//!
//! Hostile input must never panic here, so indexing and `unwrap` are denied in non-test code:
//! every access that can fail is a `get` or a pattern whose failure is handled.

#![deny(clippy::indexing_slicing, clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used))]

pub mod decode;
pub mod dpi;
pub mod time;
