//! Traffic devices: a pcap writer, the deterministic fixture generator behind
//! `testdata-pcaps/`, the capture amplifier used by the benchmark, the fuzzing seeds cut from the
//! fixtures, and the traffic generator (`send`, and `xdp_send` for its XDP method) of the live
//! tests and benchmark.

pub mod amplify;
pub mod fixtures;
pub mod pcap_writer;
pub mod seeds;
pub mod send;
pub mod xdp_send;
