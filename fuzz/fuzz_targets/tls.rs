//! A client's TLS first flight (records carrying a ClientHello, possibly split across records
//! and TCP segments) through detection, stream reassembly and the TLS parser, cut into segments
//! of a fuzzer-chosen size; then the same bytes as one handshake message body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::decode::TcpMeta;
use sensor::dpi::{tls, Dir, DpiConfig, TcpApp};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, flight)) = data.split_first() else {
        return;
    };
    let cfg = DpiConfig::default();
    let mut app = TcpApp::new();
    let mut out = Vec::new();
    let syn = TcpMeta { seq: 99, ack: 0, flags: SYN };
    let _ = app.on_segment(&cfg, Dir::ToServer, &syn, &[], 0, &mut out);
    let size = usize::from(cut % 97) + 1;
    let mut seq = 100u32;
    for (i, piece) in flight.chunks(size).enumerate() {
        let tcp = TcpMeta { seq, ack: 1, flags: ACK };
        let _ = app.on_segment(&cfg, Dir::ToServer, &tcp, piece, i as u64, &mut out);
        seq = seq.wrapping_add(piece.len() as u32);
    }
    app.on_close(1 << 20, &mut out);
    let _ = tls::client_hello(flight);
});
