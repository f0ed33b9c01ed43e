//! An HTTP/1.x conversation: the input is split at its first NUL into the client's bytes and the
//! server's, each cut into segments of a fuzzer-chosen size and interleaved, through detection,
//! reassembly and the HTTP parser (keep-alive, pipelining, bodies, CONNECT, Upgrade); then the
//! client bytes as an SSDP datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_proto::decode::TcpMeta;
use sensor_proto::dpi::{http, Dir, DpiConfig, TcpApp};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let (client, server) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let cfg = DpiConfig::default();
    let mut app = TcpApp::new();
    let mut out = Vec::new();
    let syn = TcpMeta { seq: 99, ack: 0, flags: SYN };
    let _ = app.on_segment(&cfg, Dir::ToServer, &syn, &[], 0, &mut out);
    let size = usize::from(cut % 61) + 1;
    let mut seq = [100u32, 1000u32];
    let mut pieces = [client.chunks(size), server.chunks(size)];
    let mut ts = 0u64;
    loop {
        let mut any = false;
        for d in 0..2 {
            if let Some(p) = pieces[d].next() {
                any = true;
                let dir = if d == 0 { Dir::ToServer } else { Dir::ToClient };
                let tcp = TcpMeta { seq: seq[d], ack: seq[1 - d], flags: ACK };
                ts += 1;
                let _ = app.on_segment(&cfg, dir, &tcp, p, ts, &mut out);
                seq[d] = seq[d].wrapping_add(p.len() as u32);
            }
        }
        if !any {
            break;
        }
    }
    app.on_close(ts + 1, &mut out);
    let _ = http::datagram(client, 0, &mut out);
});
