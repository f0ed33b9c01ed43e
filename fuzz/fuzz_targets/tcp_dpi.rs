//! A TCP conversation made of fuzzer-chosen segments (direction, sequence offset, flags,
//! payload) through protocol detection, stream reassembly and the TLS/HTTP/DNS parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor_proto::decode::TcpMeta;
use sensor_proto::dpi::{Dir, DpiConfig, TcpApp};

fuzz_target!(|data: &[u8]| {
    let cfg = DpiConfig::default();
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    // Odd first byte: a flow on port 53, so DNS-over-TCP framing is exercised too.
    let mut app = if mode & 1 == 1 {
        TcpApp::with_ports(40000, 53)
    } else {
        TcpApp::new()
    };
    let mut out = Vec::new();
    let mut seq = [1000u32, 5000u32];
    let mut ts = 0u64;
    // Each segment: [dir|flags, seq jitter, len] then len bytes.
    while rest.len() >= 3 {
        let (hdr, tail) = rest.split_at(3);
        let dir = if hdr[0] & 1 == 0 { Dir::ToServer } else { Dir::ToClient };
        let flags = hdr[0] >> 1;
        let d = (hdr[0] & 1) as usize;
        let len = (hdr[2] as usize).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        let jitter = i32::from(hdr[1] as i8);
        let s = seq[d].wrapping_add_signed(jitter);
        let tcp = TcpMeta { seq: s, ack: seq[1 - d], flags };
        ts += 1000;
        let _ = app.on_segment(&cfg, dir, &tcp, payload, ts, &mut out);
        seq[d] = seq[d].wrapping_add(len as u32);
        rest = tail;
    }
    app.on_close(ts, &mut out);
});
