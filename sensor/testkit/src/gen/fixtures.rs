//! The deterministic fixture generator behind `testdata-pcaps/` (`pcapgen fixtures --out DIR`).
//!
//! Each capture covers one theme (TLS, HTTP, DNS, IPv6 and VLANs, tunnels and fragments,
//! malformed frames, link types) with a few small flows; `testdata-pcaps/README.md` lists the
//! flows and the events each must give, and tests assert them. Generated rather than recorded so
//! that anyone can regenerate them and see how each case is built, and so that the edge cases
//! (out-of-order segments, fragments, truncation) are exactly the ones we mean.
//!
//! Output is byte-identical on every run: timestamps start at 2024-01-01T00:00:00Z and advance
//! by fixed steps, "random" bytes come from a fixed-seed generator, and nothing reads the clock
//! or the environment. Addresses are documentation ranges (192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24, 2001:db8::/32) and names are under example.com, example.net and example.org.

pub mod attacks;
pub mod dns;
pub mod geo;
mod net;
mod quic;
mod tls;

use std::path::Path as FsPath;

use anyhow::Context;

use self::dns::Rdata;
use self::net::{
    ethernet_for, ip_raw, sa, tcp_packet, udp_packet, v4, v6, Capture, Link, Path, Rng, TcpConn,
    Tunnel, UdpFlow, ACK, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_NULL, LINKTYPE_RAW, PSH,
    SYN,
};
use self::tls::{ClientHello, GREASE, TLS12, TLS13};
use sensor::dpi::Dir;

/// User-Agent of every generated HTTP request.
const USER_AGENT: &str = "pcapgen-fixture/1.0";

type Builder = fn() -> anyhow::Result<Capture>;

/// Every fixture file and the function that builds it.
const FILES: [(&str, Builder); 11] = [
    ("tls.pcap", tls_pcap),
    ("quic.pcap", quic_pcap),
    ("http.pcap", http_pcap),
    ("dns.pcap", dns_pcap),
    ("ipv6_vlan.pcap", ipv6_vlan_pcap),
    ("tunnels.pcap", tunnels_pcap),
    ("malformed.pcap", malformed_pcap),
    ("sll.pcap", sll_pcap),
    ("raw.pcap", raw_pcap),
    ("null.pcap", null_pcap),
    ("starttls.pcap", starttls_pcap),
];

/// Writes every fixture capture into `dir` (created if missing) and returns the file names.
pub fn write_all(dir: &FsPath) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = Vec::with_capacity(FILES.len());
    for (name, build) in FILES {
        let bytes = build()
            .and_then(|c| c.to_bytes())
            .with_context(|| format!("building {name}"))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        names.push(name.to_string());
    }
    Ok(names)
}

/// The live benchmark's mix (`pcapgen longflows`): `flows` TLS connections at once, each a
/// handshake, ClientHello, ServerHello, then `records` small application data records each way
/// and a FIN teardown, their frames interleaved round-robin. Nearly every packet belongs to a
/// flow whose metadata is already extracted: what bypass is for. Deterministic.
pub fn long_flows(flows: usize, records: usize) -> anyhow::Result<Vec<u8>> {
    let mut rng = Rng::new(0x1096);
    let mut per_flow = Vec::with_capacity(flows);
    for i in 0..flows {
        let mut cap = Capture::new(LINKTYPE_ETHERNET);
        let mut c = TcpConn::new(
            Path::ETHERNET,
            sa(v4(192, 0, 2, 100), 40000 + i as u16),
            sa(v4(198, 51, 100, 100 + (i % 50) as u8), 443),
            &mut rng,
        );
        let sni = format!("long{i}.example.com");
        let hello = simple_hello(Some(&sni));
        c.handshake(&mut cap)?;
        c.send(&mut cap, Dir::ToServer, &hello.record(&mut rng))?;
        c.send(&mut cap, Dir::ToClient, &tls::server_hello(TLS13, &mut rng))?;
        for _ in 0..records {
            c.send(
                &mut cap,
                Dir::ToServer,
                &tls::application_data(40, &mut rng),
            )?;
            c.send(
                &mut cap,
                Dir::ToClient,
                &tls::application_data(40, &mut rng),
            )?;
        }
        c.close(&mut cap)?;
        per_flow.push(cap);
    }
    interleave(per_flow).to_bytes()
}

/// One Ethernet capture of the frames of `parts` taken round-robin, one frame of each in turn.
fn interleave(parts: Vec<Capture>) -> Capture {
    let mut parts: Vec<_> = parts
        .into_iter()
        .map(|c| c.into_frames().into_iter())
        .collect();
    let mut out = Capture::new(LINKTYPE_ETHERNET);
    loop {
        let mut any = false;
        for p in parts.iter_mut() {
            if let Some(frame) = p.next() {
                out.push(frame);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// The same inner traffic in several tunnels at once (`tests/flow_identity.rs`): one DNS
/// exchange from 192.0.2.70:53070 to 198.51.100.53:53 and one HTTP connection from
/// 192.0.2.71:50070 to 198.51.100.71:80, each carried in VXLAN VNI 42 and VNI 43 between the
/// same two VTEPs and in GRE between two other routers, their packets interleaved (the copies
/// of a packet are consecutive). The tunnel is part of the flow key, so this is three DNS flows
/// and three HTTP flows, each with its own events; without it, one flow of each.
pub fn same_inner_in_three_tunnels() -> anyhow::Result<Vec<u8>> {
    let vteps = (v4(203, 0, 113, 70), v4(203, 0, 113, 71));
    let paths = [
        Path::tunnel(Tunnel::Vxlan(vteps, 42)),
        Path::tunnel(Tunnel::Vxlan(vteps, 43)),
        Path::tunnel(Tunnel::Gre((v4(203, 0, 113, 72), v4(203, 0, 113, 73)))),
    ];
    let mut copies = Vec::with_capacity(paths.len());
    for path in paths {
        let mut cap = Capture::new(LINKTYPE_ETHERNET);
        let f = UdpFlow::new(
            path,
            sa(v4(192, 0, 2, 70), 53070),
            sa(v4(198, 51, 100, 53), 53),
        );
        let a = Rdata::A(v4(203, 0, 113, 74).octets());
        dns_exchange(
            &mut cap,
            &f,
            0x7001,
            "tunnel.example.com",
            dns::TYPE_A,
            0,
            &[a],
        )?;
        // The same seed in every tunnel: identical inner segments, sequence numbers included.
        let mut rng = Rng::new(0x7070);
        let mut c = TcpConn::new(
            path,
            sa(v4(192, 0, 2, 71), 50070),
            sa(v4(198, 51, 100, 71), 80),
            &mut rng,
        );
        http_flow(&mut cap, &mut c, "/tunnel", "tunnel.example.com")?;
        copies.push(cap);
    }
    interleave(copies).to_bytes()
}

/// One IPv4 packet of every IP protocol number (`tests/proto_names.rs`): protocol N from
/// 192.0.2.1 to 198.51.100.N, on second N, with 40 zero bytes after the IP header. The bytes
/// are no valid header of most of those protocols: the test compares only the name each tool
/// gives the number.
pub fn every_ip_protocol() -> anyhow::Result<Vec<u8>> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    for n in 0..=u8::MAX {
        cap.at_second(u64::from(n))?;
        let ip = ip_raw(
            v4(192, 0, 2, 1).into(),
            v4(198, 51, 100, n).into(),
            etherparse::IpNumber(n),
            &[0; 40],
        )?;
        cap.push(Path::ETHERNET.frame(Dir::ToServer, &ip)?);
    }
    cap.to_bytes()
}

// ---------------------------------------------------------------------------------------------
// Application payloads

fn http_get(url: &str, host: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\
         {extra_headers}\r\n"
    )
    .into_bytes()
}

fn http_ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The same kind of TLS 1.3 ClientHello for every simple case: SNI, ALPN h2 and http/1.1,
/// supported_versions [GREASE, 1.3, 1.2], one X25519 key share.
fn simple_hello(sni: Option<&str>) -> ClientHello<'_> {
    ClientHello {
        sni,
        alpn: &["h2", "http/1.1"],
        versions: &[GREASE, TLS13, TLS12],
        key_shares: &[(tls::GROUP_X25519, 32)],
        record_len: None,
    }
}

/// A post-quantum-sized ClientHello (X25519MLKEM768 and X25519 key shares), padded to 1800
/// bytes of record.
fn pq_hello(sni: &str) -> ClientHello<'_> {
    ClientHello {
        sni: Some(sni),
        alpn: &["h2", "http/1.1"],
        versions: &[GREASE, TLS13, TLS12],
        key_shares: &[
            (tls::GROUP_X25519_MLKEM768, tls::X25519_MLKEM768_SHARE_LEN),
            (tls::GROUP_X25519, 32),
        ],
        record_len: Some(PQ_HELLO_LEN),
    }
}

const PQ_HELLO_LEN: usize = 1800;

/// How the ClientHello goes on the wire.
enum HelloSegments<'a> {
    /// In segments of at most MSS bytes, in order.
    InOrder,
    /// In segments of these sizes, sent in this order (indexes; a repeat is a retransmission).
    Reordered(&'a [usize], &'a [usize]),
}

/// A TLS connection: handshake, ClientHello, ServerHello (TLS 1.3) + ChangeCipherSpec, then
/// `app_records` application data records each way, FIN teardown.
fn tls_flow(
    cap: &mut Capture,
    rng: &mut Rng,
    conn: &mut TcpConn,
    hello: &ClientHello,
    segments: HelloSegments,
    app_records: usize,
) -> anyhow::Result<()> {
    conn.handshake(cap)?;
    let ch = hello.record(rng);
    match segments {
        HelloSegments::InOrder => conn.send(cap, Dir::ToServer, &ch)?,
        HelloSegments::Reordered(sizes, order) => {
            conn.send_reordered(cap, Dir::ToServer, &ch, sizes, order)?
        }
    }
    conn.send(cap, Dir::ToClient, &tls::server_hello(TLS13, rng))?;
    for i in 0..app_records {
        conn.send(
            cap,
            Dir::ToServer,
            &tls::application_data(120 + 16 * i, rng),
        )?;
        conn.send(
            cap,
            Dir::ToClient,
            &tls::application_data(600 + 64 * i, rng),
        )?;
    }
    conn.ack(cap, Dir::ToServer)?;
    conn.close(cap)
}

/// An HTTP/1.1 connection with one GET answered 200, closed.
fn http_flow(cap: &mut Capture, conn: &mut TcpConn, url: &str, host: &str) -> anyhow::Result<()> {
    conn.handshake(cap)?;
    conn.exchange(cap, &http_get(url, host, ""), &http_ok("fixture body\n"))?;
    conn.close(cap)
}

/// A DNS query and its response over UDP.
fn dns_exchange(
    cap: &mut Capture,
    flow: &UdpFlow,
    id: u16,
    name: &str,
    qtype: u16,
    rcode: u8,
    answers: &[Rdata],
) -> anyhow::Result<()> {
    flow.send(cap, Dir::ToServer, &dns::query(id, name, qtype))?;
    flow.send(
        cap,
        Dir::ToClient,
        &dns::response(id, name, qtype, rcode, answers),
    )
}

// ---------------------------------------------------------------------------------------------
// The captures (see testdata-pcaps/README.md for what each contains)

fn tls_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0x7415);
    let client = v4(192, 0, 2, 10);
    let eth = Path::ETHERNET;

    // (a) ClientHello in one segment, ServerHello, application data, FIN.
    cap.at_second(0)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50001),
        sa(v4(198, 51, 100, 10), 443),
        &mut rng,
    );
    let hello = simple_hello(Some("single.example.com"));
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        2,
    )?;

    // (b) post-quantum-sized ClientHello over two segments.
    cap.at_second(1)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50002),
        sa(v4(198, 51, 100, 11), 443),
        &mut rng,
    );
    let hello = pq_hello("multi.example.com");
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        1,
    )?;

    // (c) the same size over three segments: 2 before 1, then 1 retransmitted, then 3.
    cap.at_second(2)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50003),
        sa(v4(198, 51, 100, 12), 443),
        &mut rng,
    );
    let hello = pq_hello("ooo.example.com");
    let third = PQ_HELLO_LEN / 3;
    let sizes = [third, third, PQ_HELLO_LEN - 2 * third];
    let segs = HelloSegments::Reordered(&sizes, &[1, 0, 0, 2]);
    tls_flow(&mut cap, &mut rng, &mut c, &hello, segs, 1)?;

    // (d) non-standard server port.
    cap.at_second(3)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50004),
        sa(v4(198, 51, 100, 13), 4433),
        &mut rng,
    );
    let hello = simple_hello(Some("port.example.net"));
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        1,
    )?;

    // (e) no server_name extension.
    cap.at_second(4)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50005),
        sa(v4(198, 51, 100, 14), 443),
        &mut rng,
    );
    let hello = simple_hello(None);
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        1,
    )?;
    Ok(cap)
}

fn http_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0x4777);
    let client = v4(192, 0, 2, 20);
    let eth = Path::ETHERNET;

    // (a) keep-alive: three requests on one connection: 200 with Content-Length, 404 chunked,
    // 304 without body.
    cap.at_second(0)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50010),
        sa(v4(198, 51, 100, 20), 80),
        &mut rng,
    );
    c.handshake(&mut cap)?;
    let host = "www.example.com";
    let body = "<html><body>fixture</body></html>\n";
    let ok = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n{body}",
        body.len()
    );
    c.exchange(&mut cap, &http_get("/", host, ""), ok.as_bytes())?;
    let not_found = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\
                     Transfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n6\r\nfound\n\r\n0\r\n\r\n";
    c.exchange(
        &mut cap,
        &http_get("/missing", host, ""),
        not_found.as_bytes(),
    )?;
    let not_modified = "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n";
    c.exchange(
        &mut cap,
        &http_get("/", host, "If-None-Match: \"v1\"\r\n"),
        not_modified.as_bytes(),
    )?;
    c.close(&mut cap)?;

    // (b) pipelining: two requests in one segment, two responses in one segment.
    cap.at_second(1)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50011),
        sa(v4(198, 51, 100, 21), 80),
        &mut rng,
    );
    c.handshake(&mut cap)?;
    let host = "pipeline.example.com";
    let mut requests = http_get("/first", host, "");
    requests.extend(http_get("/second", host, ""));
    let mut responses = http_ok("first\n");
    responses.extend(http_ok("second\n"));
    c.exchange(&mut cap, &requests, &responses)?;
    c.close(&mut cap)?;

    // (c) POST with a Content-Length body.
    cap.at_second(2)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50012),
        sa(v4(198, 51, 100, 22), 80),
        &mut rng,
    );
    c.handshake(&mut cap)?;
    let form = "name=fixture&value=42";
    let post = format!(
        "POST /submit HTTP/1.1\r\nHost: post.example.org\r\nUser-Agent: {USER_AGENT}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let created = "HTTP/1.1 201 Created\r\nLocation: /submit/1\r\nContent-Length: 0\r\n\r\n";
    c.exchange(&mut cap, post.as_bytes(), created.as_bytes())?;
    c.close(&mut cap)?;

    // (d) HTTP on port 8080.
    cap.at_second(3)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50013),
        sa(v4(198, 51, 100, 23), 8080),
        &mut rng,
    );
    http_flow(&mut cap, &mut c, "/status", "alt.example.net:8080")?;
    Ok(cap)
}

fn dns_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0xd115);
    let client = v4(192, 0, 2, 30);
    let resolver = sa(v4(198, 51, 100, 53), 53);
    let eth = Path::ETHERNET;

    cap.at_second(0)?;
    let f = UdpFlow::new(eth, sa(client, 53001), resolver);
    let a = Rdata::A(v4(203, 0, 113, 80).octets());
    dns_exchange(
        &mut cap,
        &f,
        0x1001,
        "www.example.com",
        dns::TYPE_A,
        0,
        &[a],
    )?;

    cap.at_second(1)?;
    let f = UdpFlow::new(eth, sa(client, 53002), resolver);
    let aaaa = Rdata::Aaaa(v6(&[0, 0x80]).octets());
    dns_exchange(
        &mut cap,
        &f,
        0x1002,
        "www.example.com",
        dns::TYPE_AAAA,
        0,
        &[aaaa],
    )?;

    cap.at_second(2)?;
    let f = UdpFlow::new(eth, sa(client, 53003), resolver);
    let mx = Rdata::Mx(10, "mail");
    dns_exchange(&mut cap, &f, 0x1003, "example.org", dns::TYPE_MX, 0, &[mx])?;

    cap.at_second(3)?;
    let f = UdpFlow::new(eth, sa(client, 53004), resolver);
    let name = "nonexistent.example.net";
    dns_exchange(
        &mut cap,
        &f,
        0x1004,
        name,
        dns::TYPE_A,
        dns::RCODE_NXDOMAIN,
        &[],
    )?;

    cap.at_second(4)?;
    let f = UdpFlow::new(eth, sa(v6(&[0, 0x30]), 53005), sa(v6(&[0, 0x53]), 53));
    let aaaa = Rdata::Aaaa(v6(&[0, 0x6]).octets());
    dns_exchange(
        &mut cap,
        &f,
        0x1005,
        "ipv6.example.com",
        dns::TYPE_AAAA,
        0,
        &[aaaa],
    )?;

    // DNS over TCP: length-prefixed query and response.
    cap.at_second(5)?;
    let mut c = TcpConn::new(eth, sa(client, 50020), resolver, &mut rng);
    c.handshake(&mut cap)?;
    let name = "txt.example.com";
    let q = dns::query(0x1006, name, dns::TYPE_TXT);
    let r = dns::response(0x1006, name, dns::TYPE_TXT, 0, &[Rdata::Txt(b"v=fixture1")]);
    c.exchange(&mut cap, &dns::tcp_framed(&q), &dns::tcp_framed(&r))?;
    c.close(&mut cap)?;
    Ok(cap)
}

/// The ClientHello handshake message of a QUIC client (the TLS record without its header):
/// ALPN h3, TLS 1.3 only, as QUIC requires.
fn quic_hello(sni: Option<&str>, pq: bool, rng: &mut Rng) -> Vec<u8> {
    let pq_shares = [
        (tls::GROUP_X25519_MLKEM768, tls::X25519_MLKEM768_SHARE_LEN),
        (tls::GROUP_X25519, 32),
    ];
    let hello = ClientHello {
        sni,
        alpn: &["h3"],
        versions: &[GREASE, TLS13],
        key_shares: if pq {
            &pq_shares
        } else {
            &[(tls::GROUP_X25519, 32)]
        },
        record_len: pq.then_some(PQ_HELLO_LEN),
    };
    hello.record(rng).split_off(5)
}

fn quic_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0x9a1c);
    let client = v4(192, 0, 2, 40);
    let eth = Path::ETHERNET;
    let scid = [0x5c; 8];

    // (a) v1: the ClientHello in one Initial; the server answers, then the client goes 1-RTT.
    cap.at_second(0)?;
    let f = UdpFlow::new(eth, sa(client, 51001), sa(v4(198, 51, 100, 40), 443));
    let dcid = rng.bytes(8);
    let hello = quic_hello(Some("single.quic.example.com"), false, &mut rng);
    for p in quic::initials(quic::V1, &dcid, &scid, &hello, &[&[(0, hello.len())]])? {
        f.send(&mut cap, Dir::ToServer, &p)?;
    }
    f.send(&mut cap, Dir::ToClient, &quic::short(&scid, 300, &mut rng))?;
    f.send(&mut cap, Dir::ToServer, &quic::short(&dcid, 60, &mut rng))?;

    // (b) v1, post-quantum-sized ClientHello over two Initials, as current Chrome sends it.
    cap.at_second(1)?;
    let f = UdpFlow::new(eth, sa(client, 51002), sa(v4(198, 51, 100, 41), 443));
    let dcid = rng.bytes(8);
    let hello = quic_hello(Some("pq.quic.example.com"), true, &mut rng);
    let n = hello.len();
    for p in quic::initials(
        quic::V1,
        &dcid,
        &scid,
        &hello,
        &[&[(0, 1100)], &[(1100, n)]],
    )? {
        f.send(&mut cap, Dir::ToServer, &p)?;
    }
    f.send(&mut cap, Dir::ToClient, &quic::short(&scid, 300, &mut rng))?;

    // (c) v1, the same size over three Initials sent out of order (third, first, second), the
    // second holding two CRYPTO frames in reverse order.
    cap.at_second(2)?;
    let f = UdpFlow::new(eth, sa(client, 51003), sa(v4(198, 51, 100, 42), 443));
    let dcid = rng.bytes(8);
    let hello = quic_hello(Some("ooo.quic.example.net"), true, &mut rng);
    let n = hello.len();
    let ps = quic::initials(
        quic::V1,
        &dcid,
        &scid,
        &hello,
        &[&[(0, 600)], &[(900, 1200), (600, 900)], &[(1200, n)]],
    )?;
    for i in [2, 0, 1] {
        f.send(&mut cap, Dir::ToServer, &ps[i])?;
    }

    // (d) QUIC v2 (RFC 9369) on port 4433.
    cap.at_second(3)?;
    let f = UdpFlow::new(eth, sa(client, 51004), sa(v4(198, 51, 100, 43), 4433));
    let dcid = rng.bytes(16);
    let hello = quic_hello(Some("v2.quic.example.org"), false, &mut rng);
    for p in quic::initials(quic::V2, &dcid, &[], &hello, &[&[(0, hello.len())]])? {
        f.send(&mut cap, Dir::ToServer, &p)?;
    }

    // (e) draft-29: the Initial and a 0-RTT packet coalesced in one datagram.
    cap.at_second(4)?;
    let f = UdpFlow::new(eth, sa(client, 51005), sa(v4(198, 51, 100, 44), 443));
    let dcid = rng.bytes(8);
    let hello = quic_hello(Some("draft29.quic.example.com"), false, &mut rng);
    let mut d = Vec::new();
    for p in quic::initials(quic::DRAFT29, &dcid, &scid, &hello, &[&[(0, hello.len())]])? {
        d.extend(p);
    }
    d.extend(quic::zero_rtt(quic::DRAFT29, &dcid, &scid, 64, &mut rng));
    f.send(&mut cap, Dir::ToServer, &d)?;

    // (f) v1 ClientHello without server_name (a connection by address).
    cap.at_second(5)?;
    let f = UdpFlow::new(eth, sa(client, 51006), sa(v4(198, 51, 100, 45), 443));
    let dcid = rng.bytes(8);
    let hello = quic_hello(None, false, &mut rng);
    for p in quic::initials(quic::V1, &dcid, &scid, &hello, &[&[(0, hello.len())]])? {
        f.send(&mut cap, Dir::ToServer, &p)?;
    }

    // (g) Google QUIC Q043: CHLO in clear with SNI and user agent.
    cap.at_second(6)?;
    let f = UdpFlow::new(eth, sa(client, 51007), sa(v4(198, 51, 100, 46), 443));
    let chlo = quic::gquic_q043_chlo(
        rng.next_u64(),
        "gquic.example.com",
        "pcapgen-fixture Chrome/70",
        &mut rng,
    );
    f.send(&mut cap, Dir::ToServer, &chlo)?;
    Ok(cap)
}

/// TLS after a plain-text start: SMTP STARTTLS with an EHLO reply longer than the default
/// detection window (then TLS 1.2 with a certificate in clear), IMAP STARTTLS, POP3 STLS, FTP
/// AUTH TLS, PostgreSQL SSLRequest, and an HTTP CONNECT tunnel.
fn starttls_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0x5717);
    let client = v4(192, 0, 2, 70);
    let eth = Path::ETHERNET;
    let ehlo_reply: String = (0..200)
        .map(|i| format!("250-X-FIXTURE-EXTENSION-{i:03} capability text for the window\r\n"))
        .collect::<String>()
        + "250 STARTTLS\r\n";
    // (plain-text steps, server port, SNI)
    type Steps = Vec<(Dir, Vec<u8>)>;
    let smtp: Steps = vec![
        (
            Dir::ToClient,
            b"220 mx.example.com ESMTP fixture\r\n".to_vec(),
        ),
        (Dir::ToServer, b"EHLO client.example.org\r\n".to_vec()),
        (
            Dir::ToClient,
            format!("250-mx.example.com\r\n{ehlo_reply}").into_bytes(),
        ),
        (Dir::ToServer, b"STARTTLS\r\n".to_vec()),
        (Dir::ToClient, b"220 2.0.0 Ready to start TLS\r\n".to_vec()),
    ];
    let imap: Steps = vec![
        (
            Dir::ToClient,
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n".to_vec(),
        ),
        (Dir::ToServer, b"a1 STARTTLS\r\n".to_vec()),
        (
            Dir::ToClient,
            b"a1 OK Begin TLS negotiation now\r\n".to_vec(),
        ),
    ];
    let pop3: Steps = vec![
        (Dir::ToClient, b"+OK POP3 fixture ready\r\n".to_vec()),
        (Dir::ToServer, b"STLS\r\n".to_vec()),
        (Dir::ToClient, b"+OK Begin TLS\r\n".to_vec()),
    ];
    let ftp: Steps = vec![
        (
            Dir::ToClient,
            b"220 ftp.example.com fixture FTP\r\n".to_vec(),
        ),
        (Dir::ToServer, b"AUTH TLS\r\n".to_vec()),
        (Dir::ToClient, b"234 AUTH TLS successful\r\n".to_vec()),
    ];
    let postgres: Steps = vec![
        (Dir::ToServer, vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]),
        (Dir::ToClient, b"S".to_vec()),
    ];
    let connect: Steps = vec![
        (
            Dir::ToServer,
            b"CONNECT tunnel.example.com:443 HTTP/1.1\r\nHost: tunnel.example.com:443\r\n\r\n"
                .to_vec(),
        ),
        (
            Dir::ToClient,
            b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec(),
        ),
    ];
    let flows: [(Steps, u16, &str); 6] = [
        (smtp, 25, "smtp.example.com"),
        (imap, 143, "imap.example.com"),
        (pop3, 110, "pop3.example.com"),
        (ftp, 21, "ftp.example.com"),
        (postgres, 5432, "db.example.com"),
        (connect, 3128, "tunnel.example.com"),
    ];
    for (i, (steps, port, sni)) in flows.into_iter().enumerate() {
        cap.at_second(i as u64)?;
        let mut c = TcpConn::new(
            eth,
            sa(client, 50070 + i as u16),
            sa(v4(198, 51, 100, 70 + i as u8), port),
            &mut rng,
        );
        c.handshake(&mut cap)?;
        for (dir, bytes) in &steps {
            c.send(&mut cap, *dir, bytes)?;
        }
        let hello = simple_hello(Some(sni));
        c.send(&mut cap, Dir::ToServer, &hello.record(&mut rng))?;
        if port == 25 {
            let flight = tls::server_flight_tls12_with_certificate(&mut rng);
            c.send(&mut cap, Dir::ToClient, &flight)?;
        } else {
            c.send(&mut cap, Dir::ToClient, &tls::server_hello(TLS13, &mut rng))?;
        }
        c.send(
            &mut cap,
            Dir::ToServer,
            &tls::application_data(64, &mut rng),
        )?;
        c.ack(&mut cap, Dir::ToClient)?;
        c.close(&mut cap)?;
    }
    Ok(cap)
}

fn ipv6_vlan_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0x6666);

    // TLS over IPv6.
    cap.at_second(0)?;
    let mut c = TcpConn::new(
        Path::ETHERNET,
        sa(v6(&[0, 0x10]), 50030),
        sa(v6(&[0, 0x443]), 443),
        &mut rng,
    );
    let hello = simple_hello(Some("v6.example.com"));
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        1,
    )?;

    // HTTP in 802.1Q VLAN 100.
    cap.at_second(1)?;
    let mut c = TcpConn::new(
        Path::link(Link::Vlan(100)),
        sa(v4(192, 0, 2, 40), 50031),
        sa(v4(198, 51, 100, 40), 80),
        &mut rng,
    );
    http_flow(&mut cap, &mut c, "/vlan", "vlan.example.com")?;

    // DNS in QinQ (S-tag 200, C-tag 300).
    cap.at_second(2)?;
    let f = UdpFlow::new(
        Path::link(Link::QinQ(200, 300)),
        sa(v4(192, 0, 2, 41), 53010),
        sa(v4(198, 51, 100, 53), 53),
    );
    let a = Rdata::A(v4(203, 0, 113, 41).octets());
    dns_exchange(
        &mut cap,
        &f,
        0x2001,
        "qinq.example.com",
        dns::TYPE_A,
        0,
        &[a],
    )?;
    Ok(cap)
}

fn tunnels_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0x7777);
    let resolver = sa(v4(198, 51, 100, 53), 53);

    // GRE: HTTP.
    cap.at_second(0)?;
    let path = Path::tunnel(Tunnel::Gre((v4(203, 0, 113, 1), v4(203, 0, 113, 2))));
    let mut c = TcpConn::new(
        path,
        sa(v4(192, 0, 2, 50), 50040),
        sa(v4(198, 51, 100, 50), 80),
        &mut rng,
    );
    http_flow(&mut cap, &mut c, "/gre", "gre.example.com")?;

    // VXLAN (VNI 42): TLS.
    cap.at_second(1)?;
    let path = Path::tunnel(Tunnel::Vxlan((v4(203, 0, 113, 3), v4(203, 0, 113, 4)), 42));
    let mut c = TcpConn::new(
        path,
        sa(v4(192, 0, 2, 51), 50041),
        sa(v4(198, 51, 100, 51), 443),
        &mut rng,
    );
    let hello = simple_hello(Some("vxlan.example.com"));
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        1,
    )?;

    // GTP-U (TEID 0x1234): DNS.
    cap.at_second(2)?;
    let path = Path::tunnel(Tunnel::GtpU(
        (v4(203, 0, 113, 5), v4(203, 0, 113, 6)),
        0x1234,
    ));
    let f = UdpFlow::new(path, sa(v4(192, 0, 2, 52), 53020), resolver);
    let a = Rdata::A(v4(203, 0, 113, 52).octets());
    dns_exchange(
        &mut cap,
        &f,
        0x3001,
        "gtp.example.com",
        dns::TYPE_A,
        0,
        &[a],
    )?;

    // IPv4 in IPv6: TLS.
    cap.at_second(3)?;
    let outer = (v6(&[0xffff, 0, 0, 0, 0, 1]), v6(&[0xffff, 0, 0, 0, 0, 2]));
    let path = Path::tunnel(Tunnel::V4inV6(outer));
    let mut c = TcpConn::new(
        path,
        sa(v4(192, 0, 2, 53), 50042),
        sa(v4(198, 51, 100, 52), 443),
        &mut rng,
    );
    let hello = simple_hello(Some("4in6.example.net"));
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        1,
    )?;

    // IPv6 in IPv4: HTTP.
    cap.at_second(4)?;
    let path = Path::tunnel(Tunnel::V6inV4((v4(203, 0, 113, 7), v4(203, 0, 113, 8))));
    let mut c = TcpConn::new(
        path,
        sa(v6(&[0, 0x54]), 50043),
        sa(v6(&[0, 0x80]), 80),
        &mut rng,
    );
    http_flow(&mut cap, &mut c, "/6in4", "6in4.example.org")?;

    // MPLS (label 100): DNS.
    cap.at_second(5)?;
    let f = UdpFlow::new(
        Path::link(Link::Mpls(100)),
        sa(v4(192, 0, 2, 55), 53021),
        resolver,
    );
    let a = Rdata::A(v4(203, 0, 113, 55).octets());
    dns_exchange(
        &mut cap,
        &f,
        0x3002,
        "mpls.example.com",
        dns::TYPE_A,
        0,
        &[a],
    )?;

    // PPPoE session 0x0011: TLS.
    cap.at_second(6)?;
    let mut c = TcpConn::new(
        Path::link(Link::Pppoe(0x0011)),
        sa(v4(192, 0, 2, 56), 50044),
        sa(v4(198, 51, 100, 56), 443),
        &mut rng,
    );
    let hello = simple_hello(Some("pppoe.example.net"));
    tls_flow(
        &mut cap,
        &mut rng,
        &mut c,
        &hello,
        HelloSegments::InOrder,
        1,
    )?;

    // IPv4 fragments: a 2000-byte DNS response in two fragments, the second sent first.
    cap.at_second(7)?;
    let (c4, s4) = (
        std::net::SocketAddrV4::new(v4(192, 0, 2, 57), 53022),
        std::net::SocketAddrV4::new(v4(198, 51, 100, 53), 53),
    );
    let f = UdpFlow::new(Path::ETHERNET, c4.into(), s4.into());
    let name = "frag4.example.com";
    f.send(
        &mut cap,
        Dir::ToServer,
        &dns::query(0x3003, name, dns::TYPE_TXT),
    )?;
    let text = rng
        .bytes(1900)
        .iter()
        .map(|b| b'a' + b % 26)
        .collect::<Vec<u8>>();
    let resp = dns::response(0x3003, name, dns::TYPE_TXT, 0, &[Rdata::Txt(&text)]);
    let [first, second] = net::ipv4_udp_fragments((s4, c4), &resp, 0x4242, 1480)?;
    cap.push(Path::ETHERNET.frame(Dir::ToClient, &second)?);
    cap.push(Path::ETHERNET.frame(Dir::ToClient, &first)?);

    // IPv6 fragments: a DNS query padded to 1600 bytes in two fragments, then the response.
    cap.at_second(8)?;
    let (c6, s6) = (
        std::net::SocketAddrV6::new(v6(&[0, 0x57]), 53023, 0, 0),
        std::net::SocketAddrV6::new(v6(&[0, 0x53]), 53, 0, 0),
    );
    let name = "frag6.example.com";
    let q = dns::padded_query(0x3004, name, dns::TYPE_A, 1600);
    for frag in net::ipv6_udp_fragments((c6, s6), &q, 0x0006_0006, 1232)? {
        cap.push(Path::ETHERNET.frame(Dir::ToServer, &frag)?);
    }
    let f = UdpFlow::new(Path::ETHERNET, c6.into(), s6.into());
    let a = Rdata::A(v4(203, 0, 113, 57).octets());
    f.send(
        &mut cap,
        Dir::ToClient,
        &dns::response(0x3004, name, dns::TYPE_A, 0, &[a]),
    )?;
    Ok(cap)
}

fn malformed_pcap() -> anyhow::Result<Capture> {
    let mut cap = Capture::new(LINKTYPE_ETHERNET);
    let mut rng = Rng::new(0xbad);
    let client = v4(192, 0, 2, 60);
    let resolver = sa(v4(198, 51, 100, 53), 53);
    let eth = Path::ETHERNET;
    const ETH_LEN: usize = 14;
    const IPV4_LEN: usize = 20;

    // Snaplen cuts: mid-Ethernet, mid-IPv4 header, mid-TCP header.
    cap.at_second(0)?;
    let dns_ip = udp_packet(
        sa(client, 53030),
        resolver,
        &dns::query(0x4000, "cut.example.com", dns::TYPE_A),
    )?;
    let dns_frame = eth.frame(Dir::ToServer, &dns_ip)?;
    cap.push_cut(&dns_frame, 8);
    cap.push_cut(&dns_frame, ETH_LEN + 10);
    let syn = tcp_packet(
        sa(client, 50051),
        sa(v4(198, 51, 100, 60), 80),
        1000,
        0,
        SYN,
        &[],
    )?;
    cap.push_cut(&eth.frame(Dir::ToServer, &syn)?, ETH_LEN + IPV4_LEN + 10);

    // Mid-payload: an HTTP request of which only "GET /trunc" was captured.
    cap.at_second(1)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50052),
        sa(v4(198, 51, 100, 60), 80),
        &mut rng,
    );
    c.handshake(&mut cap)?;
    let req = http_get("/truncated", "cut.example.com", "");
    c.send_cut(&mut cap, Dir::ToServer, &req, 10)?;
    c.ack(&mut cap, Dir::ToClient)?;
    c.close(&mut cap)?;

    // IPv4 header length (IHL) 4 < 5.
    cap.at_second(2)?;
    let mut ip = dns_ip.clone();
    ip[0] = 0x44;
    cap.push(eth.frame(Dir::ToServer, &ip)?);
    // IPv4 total length 12 < header length 20.
    let mut ip = dns_ip.clone();
    ip[2..4].copy_from_slice(&12u16.to_be_bytes());
    cap.push(eth.frame(Dir::ToServer, &ip)?);
    // TCP data offset 3 < 5.
    let mut ip = tcp_packet(
        sa(client, 50053),
        sa(v4(198, 51, 100, 60), 80),
        2000,
        1,
        PSH | ACK,
        b"GET /bad-offset HTTP/1.1\r\n\r\n",
    )?;
    ip[IPV4_LEN + 12] = 0x30;
    cap.push(eth.frame(Dir::ToServer, &ip)?);
    // IPv4 ethertype followed by garbage (version nibble 15).
    let mut garbage = ethernet_for(Dir::ToServer, 0x0800).to_vec();
    garbage.push(0xff);
    garbage.extend(rng.bytes(59));
    cap.push(garbage);

    // A TLS handshake record claiming a 16 MB ClientHello (record length 65535), 200 bytes sent.
    cap.at_second(3)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50054),
        sa(v4(198, 51, 100, 61), 443),
        &mut rng,
    );
    c.handshake(&mut cap)?;
    c.send(
        &mut cap,
        Dir::ToServer,
        &tls::oversized_client_hello(200, &mut rng),
    )?;
    c.ack(&mut cap, Dir::ToClient)?;
    c.close(&mut cap)?;

    // A request line of garbage on port 80.
    cap.at_second(4)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50055),
        sa(v4(198, 51, 100, 60), 80),
        &mut rng,
    );
    c.handshake(&mut cap)?;
    c.send(
        &mut cap,
        Dir::ToServer,
        b"@@@@ \x01\x02\x03 garbage-not-http \xff\xfe\r\n\r\n",
    )?;
    c.ack(&mut cap, Dir::ToClient)?;
    c.close(&mut cap)?;

    // A DNS query whose name is a compression pointer to itself.
    cap.at_second(5)?;
    let f = UdpFlow::new(eth, sa(client, 53031), resolver);
    f.send(&mut cap, Dir::ToServer, &dns::looping_query(0x4666))?;

    // Valid traffic after the garbage.
    cap.at_second(6)?;
    let f = UdpFlow::new(eth, sa(client, 53032), resolver);
    let a = Rdata::A(v4(203, 0, 113, 60).octets());
    dns_exchange(&mut cap, &f, 0x4001, "ok.example.com", dns::TYPE_A, 0, &[a])?;
    cap.at_second(7)?;
    let mut c = TcpConn::new(
        eth,
        sa(client, 50056),
        sa(v4(198, 51, 100, 62), 80),
        &mut rng,
    );
    http_flow(&mut cap, &mut c, "/after-garbage", "ok.example.com")?;
    Ok(cap)
}

/// One DNS exchange and one HTTP GET on a capture of link type `linktype` with link `link`.
fn linktype_pcap(
    linktype: u32,
    link: Link,
    tag: &str,
    seed: u64,
    last: u8,
) -> anyhow::Result<Capture> {
    let mut cap = Capture::new(linktype);
    let mut rng = Rng::new(seed);
    let path = Path::link(link);
    let client = v4(192, 0, 2, last);
    let host = format!("{tag}.example.com");
    cap.at_second(0)?;
    let f = UdpFlow::new(path, sa(client, 53040), sa(v4(198, 51, 100, 53), 53));
    let a = Rdata::A(v4(203, 0, 113, last).octets());
    dns_exchange(
        &mut cap,
        &f,
        0x5000 + u16::from(last),
        &host,
        dns::TYPE_A,
        0,
        &[a],
    )?;
    cap.at_second(1)?;
    let mut c = TcpConn::new(
        path,
        sa(client, 50060),
        sa(v4(198, 51, 100, last), 80),
        &mut rng,
    );
    http_flow(&mut cap, &mut c, &format!("/{tag}"), &host)?;
    Ok(cap)
}

fn sll_pcap() -> anyhow::Result<Capture> {
    linktype_pcap(LINKTYPE_LINUX_SLL, Link::Sll, "sll", 0x5111, 71)
}

fn raw_pcap() -> anyhow::Result<Capture> {
    linktype_pcap(LINKTYPE_RAW, Link::Raw, "raw", 0x5222, 72)
}

fn null_pcap() -> anyhow::Result<Capture> {
    linktype_pcap(LINKTYPE_NULL, Link::Null, "null", 0x5333, 73)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_byte_identical_and_non_empty() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let names_a = write_all(a.path()).unwrap();
        let names_b = write_all(b.path()).unwrap();
        assert_eq!(names_a, names_b);
        assert_eq!(names_a.len(), FILES.len());
        for name in &names_a {
            let x = std::fs::read(a.path().join(name)).unwrap();
            let y = std::fs::read(b.path().join(name)).unwrap();
            // pcap global header (24 bytes) plus at least one record.
            assert!(x.len() > 24 + 16, "{name} is empty");
            assert!(x.len() < 128 * 1024, "{name} is {} bytes", x.len());
            assert!(x == y, "{name} differs between runs");
        }
    }

    #[test]
    fn client_hello_sizes() {
        let mut rng = Rng::new(1);
        assert_eq!(
            pq_hello("multi.example.com").record(&mut rng).len(),
            PQ_HELLO_LEN
        );
        let simple = simple_hello(Some("single.example.com")).record(&mut rng);
        assert!(simple.len() < net::MSS, "{}", simple.len());
    }
}
