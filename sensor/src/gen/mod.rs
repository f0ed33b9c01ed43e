//! Test devices, part of the crate as in smoltcp: a pcap writer, the deterministic fixture
//! generator behind `testdata-pcaps/`, and the capture amplifier used by the benchmark.
//! Nothing here runs on the packet path.

pub mod amplify;
pub mod fixtures;
pub mod pcap_writer;
