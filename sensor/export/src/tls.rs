//! What both sinks need to tell a TLS failure (a server certificate our CA did not sign, a
//! server that does not speak TLS) from a network one: only the first is a configuration
//! problem that no retry fixes.

/// The TLS failure somewhere in an error's chain (a certificate the CA did not sign, a server
/// that does not speak TLS), as one line; `None` when the failure is not about TLS.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        // `io::Error::source` skips the error it wraps, which is where tokio-rustls puts
        // the rustls one (and hyper-rustls wraps that io::Error in another).
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_is_found_inside_an_io_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let msg = tls_failure(&io).unwrap();
        assert!(msg.contains("UnknownIssuer"), "{msg}");
        // As hyper-rustls hands it over: an io::Error around tokio-rustls' io::Error.
        let twice = std::io::Error::other(io);
        assert_eq!(tls_failure(&twice), Some(msg));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure(&plain), None);
    }
}
