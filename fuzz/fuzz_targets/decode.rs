//! Any bytes as a frame of any supported link type; a stream of frames shares one decoder so
//! the fragment table sees hostile sequences too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_proto::decode::{DecodeConfig, Decoder, LinkType};

const LINKS: [i32; 12] = [1, 0, 101, 228, 229, 113, 276, 9, 104, 239, 192, 105];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let link = LinkType::from_pcap(LINKS[sel as usize % LINKS.len()]).unwrap();
    let mut d = Decoder::new(DecodeConfig {
        frag_max_datagrams: 8,
        frag_max_bytes: 4096,
        ..Default::default()
    });
    // Frames separated by 0xff 0x00 so one input exercises reassembly across frames.
    for (i, frame) in rest.split(|&b| b == 0xff).enumerate() {
        let _ = d.decode(link, frame, i as u64 * 1_000_000);
    }
});
