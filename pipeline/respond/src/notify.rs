//! The `notify` step: an HTTP POST of the rendered JSON body, with a timeout per attempt and
//! retries with exponential backoff and jitter.
//!
//! The client is hyper's (hyper-util with rustls and the system's roots), which the workspace
//! already builds for ClickHouse over HTTPS. A 2xx answer is success; connection errors,
//! timeouts, 429 and 5xx are retried; other answers (a 4xx: the request itself is wrong) fail
//! at once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::playbook::NotifyStep;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Largest response body read (and dropped) so a connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct Notifier {
    client: Client<Https, Full<Bytes>>,
}

/// How a notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub ok: bool,
    pub attempts: u32,
    /// The last status or error.
    pub detail: String,
}

/// One attempt's result: `Ok(status)` or an error text; `retry` says whether to try again.
struct Attempt {
    status: Option<u16>,
    error: String,
    retry: bool,
}

impl Notifier {
    pub fn new() -> anyhow::Result<Notifier> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Notifier { client })
    }

    async fn attempt(&self, step: &NotifyStep, body: &Bytes) -> Attempt {
        let mut req = hyper::Request::post(step.url.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "pipeline-respond");
        for (k, v) in &step.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = match req.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => {
                return Attempt {
                    status: None,
                    error: format!("request: {e}"),
                    retry: false,
                }
            }
        };
        let call = async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            // Read (a bounded part of) the body so the connection can be reused.
            let mut body = resp.into_body();
            let mut read = 0;
            while read < MAX_RESPONSE_BYTES {
                match body.frame().await {
                    Some(Ok(f)) => read += f.data_ref().map_or(0, |d| d.len()),
                    _ => break,
                }
            }
            Ok::<u16, hyper_util::client::legacy::Error>(status)
        };
        match tokio::time::timeout(step.timeout, call).await {
            Err(_) => Attempt {
                status: None,
                error: format!("no answer within {:?}", step.timeout),
                retry: true,
            },
            Ok(Err(e)) => Attempt {
                status: None,
                error: format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ),
                retry: true,
            },
            Ok(Ok(s)) => Attempt {
                status: Some(s),
                error: String::new(),
                retry: s == 429 || s >= 500,
            },
        }
    }

    /// Posts `body` per `step`: the first attempt, then up to `step.retries` more, each counted
    /// in `attempts`.
    pub async fn send(&self, step: &NotifyStep, body: Vec<u8>, attempts: &AtomicU64) -> Delivery {
        let body = Bytes::from(body);
        let started = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            attempts.fetch_add(1, Relaxed);
            let a = self.attempt(step, &body).await;
            let detail = match a.status {
                Some(s) => format!("HTTP {s}"),
                None => a.error.clone(),
            };
            if a.status.is_some_and(|s| (200..300).contains(&s)) {
                return Delivery {
                    ok: true,
                    attempts: n,
                    detail,
                };
            }
            if !a.retry || n > step.retries {
                let detail = format!(
                    "{detail} after {n} attempts in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return Delivery {
                    ok: false,
                    attempts: n,
                    detail,
                };
            }
            tokio::time::sleep(backoff(step.backoff, step.max_backoff, n - 1)).await;
        }
    }
}

/// The pause before retry `n` (0-based): `base * 2^n`, at most `max`, times a random factor in
/// [0.5, 1) so that many failing notifications do not retry in step.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let full = base
        .saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
        .min(max);
    let mut r = [0u8; 4];
    let frac = match getrandom::getrandom(&mut r) {
        Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    full.mul_f64(0.5 + frac / 2.0)
}

/// What the audit trail shows of a URL: scheme, host and port (webhook paths are secrets).
pub fn redact(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}/...",
            u.scheme_str().unwrap_or("http"),
            u.authority().map(|a| a.as_str()).unwrap_or("")
        ),
        Err(_) => "(bad url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let (b, m) = (Duration::from_millis(100), Duration::from_secs(1));
        for n in 0..40 {
            let d = backoff(b, m, n);
            let full = (b * 2u32.pow(n.min(10))).min(m);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
    }

    #[test]
    fn webhook_paths_are_not_recorded() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/..."
        );
    }
}
