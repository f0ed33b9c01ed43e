//! Any bytes as one DNS message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = sensor_proto::dpi::dns::parse_message(data, 0, &mut out);
});
