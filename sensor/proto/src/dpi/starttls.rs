//! Plain-text starts of protocols that switch to TLS in the same connection: SMTP, LMTP and FTP
//! (`220` greeting, `EHLO`/`HELO`/`LHLO`, `AUTH TLS`), IMAP (`* OK`), POP3 (`+OK`), and
//! PostgreSQL's SSLRequest/GSSENCRequest.
//!
//! Detection ([`super::TcpApp`]) classifies the start of every piece of each direction, so the
//! ClientHello that follows `STARTTLS`/`STLS`/`AUTH TLS`/`S` is found wherever the plain-text
//! exchange ends. What this module adds is the budget: a flow that starts like one of these
//! protocols may show much more plain text than `detect_limit` before the switch (long EHLO
//! replies, FTP banners, IMAP capability lists), so its detection window is
//! [`PLAIN_WINDOW_FACTOR`] times larger. The window stays bounded; the text itself is not
//! buffered (only the first bytes of each piece are looked at).

/// How much larger the detection window is for a recognised plain-text start.
pub const PLAIN_WINDOW_FACTOR: usize = 16;

/// PostgreSQL SSLRequest: length 8, code 80877103.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// PostgreSQL GSSENCRequest: length 8, code 80877104.
const PG_GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// Line starts of greetings and first commands of the protocols above.
const PREFIXES: &[&[u8]] = &[
    b"220 ",
    b"220-",
    b"* OK",
    b"+OK",
    b"EHLO ",
    b"HELO ",
    b"LHLO ",
    b"ehlo ",
    b"helo ",
    b"AUTH TLS",
    b"AUTH SSL",
];

/// Does `b`, the first bytes of a direction, start like one of the protocols above?
pub fn plaintext_start(b: &[u8]) -> bool {
    b.starts_with(&PG_SSL_REQUEST)
        || b.starts_with(&PG_GSSENC_REQUEST)
        || PREFIXES.iter().any(|p| b.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_and_requests_are_recognised() {
        for yes in [
            &b"220 mail.example.com ESMTP\r\n"[..],
            b"220-ftp.example.com welcome\r\n",
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
            b"+OK POP3 ready\r\n",
            b"EHLO client.example\r\n",
            b"AUTH TLS\r\n",
            &PG_SSL_REQUEST,
        ] {
            assert!(plaintext_start(yes), "{:?}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01",
            b"22",
            b"",
            b"SSH-2.0-OpenSSH\r\n",
            &PG_SSL_REQUEST[..7],
        ] {
            assert!(!plaintext_start(no), "{:?}", String::from_utf8_lossy(no));
        }
    }
}
