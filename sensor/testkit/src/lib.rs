//! The sensor's test devices, kept out of the product: the pcap writer, the deterministic
//! fixture generator behind `testdata-pcaps/`, the capture amplifier, the fuzzing seeds and the
//! traffic generator of the live tests and benchmarks ([`gen`], binary `pcapgen`); the accuracy
//! report against tshark ([`accuracy`], binary `accuracy`); and the live benchmark's floors
//! ([`floor`], binary `floor`). A dev-dependency of the sensor's tests; nothing here runs on a
//! sensor's packet path.

pub mod accuracy;
pub mod floor;
pub mod gen;
