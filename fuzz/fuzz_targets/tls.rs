//! A TLS conversation's first flights through detection, stream reassembly and the TLS parser:
//! the input is a segment-size byte, the client's first record (its length read from the record
//! header), then the server's bytes (ServerHello, Certificate, ...), each direction cut into
//! segments of the chosen size. Then the same bytes through the standalone decoders: the
//! ClientHello body (fields, JA3, JA4 for TCP and QUIC), the ServerHello body (JA3S) and the
//! Certificate body (x509).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_proto::decode::TcpMeta;
use sensor_proto::dpi::{ja, tls, Dir, DpiConfig, TcpApp};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let first = rest
        .get(3..5)
        .map_or(rest.len(), |l| 5 + usize::from(u16::from_be_bytes([l[0], l[1]])))
        .min(rest.len());
    let (client, server) = rest.split_at(first);
    let cfg = DpiConfig::default();
    let mut app = TcpApp::new();
    let mut out = Vec::new();
    let syn = TcpMeta { seq: 99, ack: 0, flags: SYN };
    let _ = app.on_segment(&cfg, Dir::ToServer, &syn, &[], 0, &mut out);
    let size = usize::from(cut % 97) + 1;
    let mut ts = 0u64;
    for (dir, bytes, mut seq) in [(Dir::ToServer, client, 100u32), (Dir::ToClient, server, 5000)] {
        for piece in bytes.chunks(size) {
            ts += 1;
            let tcp = TcpMeta { seq, ack: 1, flags: ACK };
            let _ = app.on_segment(&cfg, dir, &tcp, piece, ts, &mut out);
            seq = seq.wrapping_add(piece.len() as u32);
        }
    }
    app.on_close(ts + 1, &mut out);
    // record header (5) + handshake header (4) skipped: the message bodies
    let ch = client.get(9..).unwrap_or_default();
    let _ = tls::client_hello(ch);
    let _ = ja::client_fingerprints(ch, ja::Transport::Quic);
    let _ = ja::server_fingerprint(server.get(9..).unwrap_or_default());
    let _ = tls::first_certificate(rest);
});
