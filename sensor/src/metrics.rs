//! Live-capture metrics: counters published by the packet threads (relaxed atomics, written
//! about once a second or once a batch, never per packet on a shared line) and a Prometheus text
//! endpoint that renders them.
//!
//! The endpoint is `sensor_export::prometheus::MetricsServer` (`tiny_http` on its own thread,
//! off the packet cores). Per-batch processing
//! latency is an `hdrhistogram` per worker, merged into a shared one every tick, from which the
//! endpoint reads quantiles.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::capture::xdp::counter;
use crate::command::CommandCounters;
use crate::export::sink::SinkCounters;
use crate::worker::WorkerMetrics;
pub use sensor_export::prometheus::{render_sinks, MetricsServer};

/// What one capture thread (one rx queue) did.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    /// Frames received from the AF_XDP socket.
    pub received: AtomicU64,
    pub bytes: AtomicU64,
    pub dispatched: AtomicU64,
    pub ring_full: AtomicU64,
    pub not_ip: AtomicU64,
    pub decode_dropped: AtomicU64,
    pub fragments_held: AtomicU64,
    /// Socket counters (getsockopt XDP_STATISTICS).
    pub xsk_rx_dropped: AtomicU64,
    pub xsk_rx_ring_full: AtomicU64,
    pub xsk_fill_ring_empty: AtomicU64,
}

/// Every metric of a live run.
#[derive(Debug)]
pub struct Metrics {
    pub iface: String,
    pub queues: Vec<(u32, QueueMetrics)>,
    pub workers: Vec<Arc<WorkerMetrics>>,
    /// XDP counters summed over CPUs, indexed as `capture::xdp::counter`.
    pub xdp: [AtomicU64; counter::COUNT as usize],
    pub bypass_flows: AtomicU64,
    pub bypass_map_full: AtomicU64,
    pub blocklist_entries: AtomicU64,
    /// The command channel's counts (all zero while it is off).
    pub commands: Arc<CommandCounters>,
    /// Each network sink's counters, once the exporter runs.
    pub sinks: Mutex<Vec<(&'static str, Arc<SinkCounters>)>>,
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

impl Metrics {
    pub fn new(iface: &str, queues: &[u32], workers: usize) -> Arc<Metrics> {
        Arc::new(Metrics {
            iface: iface.to_string(),
            queues: queues
                .iter()
                .map(|q| (*q, QueueMetrics::default()))
                .collect(),
            workers: (0..workers)
                .map(|_| Arc::new(WorkerMetrics::default()))
                .collect(),
            xdp: Default::default(),
            bypass_flows: AtomicU64::new(0),
            bypass_map_full: AtomicU64::new(0),
            blocklist_entries: AtomicU64::new(0),
            commands: Arc::new(CommandCounters::default()),
            sinks: Mutex::new(Vec::new()),
        })
    }

    pub fn xdp(&self, idx: u32) -> u64 {
        self.xdp.get(idx as usize).map_or(0, |a| a.load(Relaxed))
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        self.render_xdp(&mut o);
        self.render_queues(&mut o);
        self.render_drops(&mut o);
        self.render_workers(&mut o);
        self.render_bypass(&mut o);
        self.render_latency(&mut o);
        self.render_blocklist(&mut o);
        if let Ok(sinks) = self.sinks.lock() {
            render_sinks(&mut o, "sensor_export", &sinks);
        }
        o
    }

    /// What the XDP program counted.
    fn render_xdp(&self, o: &mut String) {
        let iface = &self.iface;
        family(
            o,
            "sensor_xdp_packets_total",
            "counter",
            "Frames seen by the XDP program, by outcome.",
        );
        for (idx, what) in [
            (counter::SEEN, "seen"),
            (counter::REDIRECTED, "redirected"),
            (counter::NO_SOCKET, "no_socket"),
            (counter::FILTERED, "filtered"),
            (counter::BLOCKED, "blocked"),
            (counter::BYPASSED, "bypassed"),
        ] {
            let _ = writeln!(
                o,
                "sensor_xdp_packets_total{{iface=\"{iface}\",outcome=\"{what}\"}} {}",
                self.xdp(idx)
            );
        }
        family(
            o,
            "sensor_xdp_bytes_total",
            "counter",
            "Bytes seen by the XDP program, and bytes it counted for bypassed flows.",
        );
        for (idx, what) in [
            (counter::SEEN_BYTES, "seen"),
            (counter::BYPASSED_BYTES, "bypassed"),
        ] {
            let _ = writeln!(
                o,
                "sensor_xdp_bytes_total{{iface=\"{iface}\",outcome=\"{what}\"}} {}",
                self.xdp(idx)
            );
        }
    }

    /// Per rx queue: frames and bytes taken from its socket.
    fn render_queues(&self, o: &mut String) {
        let iface = &self.iface;
        family(
            o,
            "sensor_queue_packets_total",
            "counter",
            "Per rx queue: frames received from the AF_XDP socket and handed to workers.",
        );
        for (q, m) in &self.queues {
            for (what, v) in [("received", &m.received), ("dispatched", &m.dispatched)] {
                let _ = writeln!(
                    o,
                    "sensor_queue_packets_total{{iface=\"{iface}\",queue=\"{q}\",stage=\"{what}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }
        family(
            o,
            "sensor_queue_bytes_total",
            "counter",
            "Per rx queue: bytes received from the AF_XDP socket.",
        );
        for (q, m) in &self.queues {
            let _ = writeln!(
                o,
                "sensor_queue_bytes_total{{iface=\"{iface}\",queue=\"{q}\"}} {}",
                m.bytes.load(Relaxed)
            );
        }
        family(
            o,
            "sensor_socket_fill_ring_empty_total",
            "counter",
            "Per rx queue: times the kernel found the fill ring empty (part of socket_rx_dropped).",
        );
        for (q, m) in &self.queues {
            let _ = writeln!(
                o,
                "sensor_socket_fill_ring_empty_total{{iface=\"{iface}\",queue=\"{q}\"}} {}",
                m.xsk_fill_ring_empty.load(Relaxed)
            );
        }
    }

    /// Every drop, by where and why.
    fn render_drops(&self, o: &mut String) {
        let iface = &self.iface;
        family(
            o,
            "sensor_drops_total",
            "counter",
            "Packets not processed, by where and why they were lost.",
        );
        for (idx, cause) in [
            (counter::NO_SOCKET, "xdp_no_socket"),
            (counter::FILTERED, "xdp_filtered"),
            (counter::BLOCKED, "xdp_blocklist"),
        ] {
            let _ = writeln!(
                o,
                "sensor_drops_total{{iface=\"{iface}\",cause=\"{cause}\"}} {}",
                self.xdp(idx)
            );
        }
        for (q, m) in &self.queues {
            for (cause, v) in [
                ("socket_rx_dropped", &m.xsk_rx_dropped),
                ("socket_rx_ring_full", &m.xsk_rx_ring_full),
                ("ring_full", &m.ring_full),
                ("not_ip", &m.not_ip),
                ("decode", &m.decode_dropped),
            ] {
                let _ = writeln!(
                    o,
                    "sensor_drops_total{{iface=\"{iface}\",queue=\"{q}\",cause=\"{cause}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }
        for (w, m) in self.workers.iter().enumerate() {
            let _ = writeln!(
                o,
                "sensor_drops_total{{iface=\"{iface}\",worker=\"{w}\",cause=\"flow_table_full\"}} {}",
                m.table_full.load(Relaxed)
            );
        }
    }

    /// Per worker: packets, bytes and flows.
    fn render_workers(&self, o: &mut String) {
        family(
            o,
            "sensor_worker_packets_total",
            "counter",
            "Per worker: packets through the flow table, and packets the kernel counted for bypassed flows.",
        );
        for (w, m) in self.workers.iter().enumerate() {
            for (what, v) in [("processed", &m.packets), ("bypassed", &m.bypass_packets)] {
                let _ = writeln!(
                    o,
                    "sensor_worker_packets_total{{worker=\"{w}\",kind=\"{what}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }
        family(
            o,
            "sensor_worker_bytes_total",
            "counter",
            "Per worker: bytes through the flow table.",
        );
        for (w, m) in self.workers.iter().enumerate() {
            let _ = writeln!(
                o,
                "sensor_worker_bytes_total{{worker=\"{w}\"}} {}",
                m.bytes.load(Relaxed)
            );
        }
        family(
            o,
            "sensor_flows_active",
            "gauge",
            "Per worker: flows in the table.",
        );
        for (w, m) in self.workers.iter().enumerate() {
            let _ = writeln!(
                o,
                "sensor_flows_active{{worker=\"{w}\"}} {}",
                m.flows_active.load(Relaxed)
            );
        }
        family(
            o,
            "sensor_flows_exported_total",
            "counter",
            "Per worker: flow records exported.",
        );
        for (w, m) in self.workers.iter().enumerate() {
            let _ = writeln!(
                o,
                "sensor_flows_exported_total{{worker=\"{w}\"}} {}",
                m.flows_exported.load(Relaxed)
            );
        }
    }

    /// Bypassed flows, and requests that could not be carried out.
    fn render_bypass(&self, o: &mut String) {
        let iface = &self.iface;
        family(
            o,
            "sensor_bypass_flows",
            "gauge",
            "Flows whose packets the XDP program counts and drops.",
        );
        let _ = writeln!(
            o,
            "sensor_bypass_flows{{iface=\"{iface}\"}} {}",
            self.bypass_flows.load(Relaxed)
        );
        family(
            o,
            "sensor_bypass_refused_total",
            "counter",
            "Bypass requests not carried out (request queue or kernel map full): those flows stay in user space.",
        );
        let refused = self.bypass_map_full.load(Relaxed)
            + self
                .workers
                .iter()
                .map(|m| m.bypass_requests_dropped.load(Relaxed))
                .sum::<u64>();
        let _ = writeln!(
            o,
            "sensor_bypass_refused_total{{iface=\"{iface}\"}} {refused}"
        );
    }

    /// Per worker: batch processing latency quantiles.
    fn render_latency(&self, o: &mut String) {
        family(
            o,
            "sensor_batch_latency_seconds",
            "summary",
            "Per worker: time to process one batch from its ring (since start).",
        );
        for (w, m) in self.workers.iter().enumerate() {
            let Ok(h) = m.latency.lock() else { continue };
            let Some(h) = h.as_ref() else { continue };
            for q in [0.5, 0.9, 0.99, 0.999] {
                let _ = writeln!(
                    o,
                    "sensor_batch_latency_seconds{{worker=\"{w}\",quantile=\"{q}\"}} {:.9}",
                    h.value_at_quantile(q) as f64 / 1e9
                );
            }
            let _ = writeln!(
                o,
                "sensor_batch_latency_seconds_count{{worker=\"{w}\"}} {}",
                h.len()
            );
            let sum: f64 = h
                .iter_recorded()
                .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                .sum();
            let _ = writeln!(
                o,
                "sensor_batch_latency_seconds_sum{{worker=\"{w}\"}} {:.9}",
                sum / 1e9
            );
        }
    }

    /// Blocklist size and the command channel's counters, every rejection cause included.
    fn render_blocklist(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "# HELP sensor_blocklist_entries CIDRs on the XDP blocklist (file, commands, operators).\n\
             # TYPE sensor_blocklist_entries gauge\n\
             sensor_blocklist_entries{{iface=\"{}\"}} {}",
            self.iface,
            self.blocklist_entries.load(Relaxed)
        );
        let s = self.commands.snapshot();
        let _ = writeln!(
            o,
            "# HELP sensor_commands_total Signed commands read from the command channel, by outcome.\n\
             # TYPE sensor_commands_total counter"
        );
        let rejected: u64 = s.rejected.iter().map(|(_, n)| n).sum();
        for (what, v) in [
            ("received", s.received),
            ("applied", s.applied),
            ("failed", s.failed),
            ("rejected", rejected),
        ] {
            let _ = writeln!(o, "sensor_commands_total{{outcome=\"{what}\"}} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP sensor_commands_rejected_total Commands refused, by cause.\n\
             # TYPE sensor_commands_rejected_total counter"
        );
        for (cause, v) in &s.rejected {
            let _ = writeln!(o, "sensor_commands_rejected_total{{cause=\"{cause}\"}} {v}");
        }
    }
}

/// The sensor's `/metrics` endpoint, serving [`Metrics::render`].
pub fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<MetricsServer> {
    MetricsServer::serve(addr, move || metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_counters_are_rendered_by_outcome() {
        let m = Metrics::new("lo", &[], 0);
        assert!(
            !m.render().contains("sensor_export_rows_total"),
            "no sinks, no lines"
        );
        let c = Arc::new(SinkCounters::default());
        c.emitted_rows.store(12, Relaxed);
        c.sent_rows.store(9, Relaxed);
        c.spool_rows.store(3, Relaxed);
        *m.sinks.lock().unwrap() = vec![("nats", c)];
        let text = m.render();
        for want in [
            "sensor_export_rows_total{sink=\"nats\",outcome=\"emitted\"} 12",
            "sensor_export_rows_total{sink=\"nats\",outcome=\"acknowledged\"} 9",
            "sensor_export_spool{sink=\"nats\",unit=\"rows\"} 3",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
