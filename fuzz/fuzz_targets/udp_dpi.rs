//! Any bytes as a UDP datagram on the DNS, mDNS, LLMNR and SSDP ports and on a random port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_proto::dpi::{udp_datagram, Dir};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for (sport, dport) in [(40000, 53), (53, 40000), (5353, 5353), (5355, 40000), (40000, 1900), (1234, 4321)] {
        let _ = udp_datagram(Dir::ToServer, sport, dport, data, 0, &mut out);
    }
});
