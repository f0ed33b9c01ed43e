//! HTTPS for the ClickHouse sink: the `clickhouse` crate's own TLS features trust only the
//! system's (or webpki's) roots, while an appliance usually talks to a server whose certificate
//! comes from a private CA. So the sink builds the hyper client itself (rustls with the `ring`
//! provider, as async-nats already uses: no new system library) and hands it to
//! `clickhouse::Client::with_http_client`. Trusted roots: the PEM file of `clickhouse.ca_file`
//! when set, the system's roots otherwise.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{pem::PemObject, CertificateDer};

/// What the crate's default client uses: ClickHouse closes idle connections after 3 s, so the
/// pool drops them first; TCP keepalive notices a dead peer.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A `clickhouse::Client` speaking HTTPS (and still HTTP) that trusts `ca_file`'s certificates,
/// or the system's roots when `ca_file` is empty. The error names the problem with the file.
pub fn https_client(ca_file: &str) -> Result<clickhouse::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            // A system root rustls cannot parse is skipped, as every TLS client does.
            let _ = roots.add(c);
        }
        if roots.is_empty() {
            return Err("no system CA certificates found; set clickhouse.ca_file".into());
        }
    } else {
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| format!("cannot read {ca_file}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{ca_file}: not a PEM certificate file: {e}"))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{ca_file}: unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("{ca_file}: no certificate in it"));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let hyper = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector);
    Ok(clickhouse::Client::with_http_client(hyper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let e = https_client(missing.to_str().unwrap()).unwrap_err();
        assert!(e.contains("none.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = https_client(empty.to_str().unwrap()).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }
}
