//! QUIC Initials and Google QUIC through `QuicFlow`, in two modes chosen by the first byte.
//! Even: the rest is raw datagram bytes, fed whole and then cut into fuzzer-sized datagrams of
//! one flow (header parsing, coalesced packets, key derivation, header protection, gQUIC CHLO
//! search). Odd: the rest is the decrypted payload of up to four client Initials of a chosen
//! version, sealed here with the real Initial keys, so that frame parsing, CRYPTO reassembly
//! and the ClientHello parser see fuzzer-controlled plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_proto::dpi::quic::{self, QuicFlow};
use sensor_proto::dpi::{Dir, DpiConfig};

const VERSIONS: [u32; 6] = [1, 0x6b33_43cf, 0xff00_001d, 0xface_b002, 0x5430_3531, 0x5130_3530];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cfg = DpiConfig {
        max_buffer: 4096,
        ..DpiConfig::default()
    };
    let mut flow = QuicFlow::new();
    let mut out = Vec::new();
    if mode & 1 == 0 {
        let _ = quic::detect(rest);
        let _ = flow.datagram(&cfg, Dir::ToServer, rest, 0, &mut out);
        let size = usize::from(mode >> 1) * 11 + 1;
        for (i, piece) in rest.chunks(size).enumerate() {
            let dir = if i % 3 == 2 { Dir::ToClient } else { Dir::ToServer };
            let _ = flow.datagram(&cfg, dir, piece, i as u64, &mut out);
        }
    } else {
        let version = VERSIONS[usize::from(mode >> 1) % VERSIONS.len()];
        let parts = usize::from(mode >> 5) % 4 + 1;
        let size = rest.len().div_ceil(parts).max(1);
        for (pn, piece) in rest.chunks(size).enumerate() {
            if let Some(pkt) = quic::seal_initial(version, &[7; 8], &[], pn as u32, piece, 0) {
                let _ = flow.datagram(&cfg, Dir::ToServer, &pkt, pn as u64, &mut out);
            }
        }
    }
    let _ = flow.dropped();
});
