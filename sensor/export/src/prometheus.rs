//! Prometheus text exposition shared by the sensor and the pipeline's services: the network
//! sinks' counters by outcome ([`render_sinks`]) and a `/metrics` endpoint on its own thread
//! ([`MetricsServer`], `tiny_http`, off the packet cores).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;

use anyhow::{Context, Result};

use crate::sink::SinkCounters;

/// Per sink, rows by outcome, as `<prefix>_rows_total` and `<prefix>_spool`; they add up as the
/// summary's export accounting:
/// `emitted + resumed = acknowledged + rejected + in_spool + dropped + lost + corrupt`.
/// Shared with the pipeline's alert sinks, which are the same sinks.
pub fn render_sinks(o: &mut String, prefix: &str, sinks: &[(&'static str, Arc<SinkCounters>)]) {
    if sinks.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "# HELP {prefix}_rows_total Rows (messages) per network sink, by outcome.\n\
         # TYPE {prefix}_rows_total counter"
    );
    for (name, c) in sinks.iter() {
        for (what, v) in [
            ("emitted", &c.emitted_rows),
            ("resumed", &c.resumed_rows),
            ("acknowledged", &c.sent_rows),
            ("rejected", &c.failed_rows),
            ("spooled", &c.spooled_rows),
            ("replayed", &c.replayed_rows),
            ("dropped_oldest", &c.dropped_rows),
            ("lost", &c.lost_rows),
            ("corrupt", &c.corrupt_rows),
        ] {
            let _ = writeln!(
                o,
                "{prefix}_rows_total{{sink=\"{name}\",outcome=\"{what}\"}} {}",
                v.load(Relaxed)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP {prefix}_spool Per network sink: rows and bytes in its spool now.\n\
         # TYPE {prefix}_spool gauge"
    );
    for (name, c) in sinks.iter() {
        for (what, v) in [("rows", &c.spool_rows), ("bytes", &c.spool_bytes)] {
            let _ = writeln!(
                o,
                "{prefix}_spool{{sink=\"{name}\",unit=\"{what}\"}} {}",
                v.load(Relaxed)
            );
        }
    }
}

/// The `/metrics` endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<thread::JoinHandle<()>>,
    pub addr: String,
}

impl MetricsServer {
    /// Serves whatever `render` returns as `/metrics` (the pipeline's consumer uses it too).
    pub fn serve(
        addr: &str,
        render: impl Fn() -> String + Send + 'static,
    ) -> Result<MetricsServer> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot listen on {addr} for /metrics"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .map_or_else(|| addr.to_string(), |a| a.to_string());
        let server = Arc::new(server);
        let srv = Arc::clone(&server);
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for req in srv.incoming_requests() {
                    let resp = if req.url() == "/metrics" {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4"[..],
                        );
                        let r = tiny_http::Response::from_string(render());
                        match header {
                            Ok(h) => r.with_header(h),
                            Err(()) => r,
                        }
                    } else {
                        tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                    };
                    let _ = req.respond(resp);
                }
            })
            .context("cannot start the metrics thread")?;
        tracing::info!("metrics on http://{bound}/metrics");
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
