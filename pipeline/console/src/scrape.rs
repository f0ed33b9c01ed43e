//! The sensors' Prometheus endpoints (`sensor run`'s `/metrics`): scraped on demand with a
//! timeout and a bounded body, parsed strictly, and kept in memory so that two scrapes give
//! rates (counter deltas over the time between them).
//!
//! Hand-written rather than a crate: the console reads five families of the sensor's own
//! exposition (the text format's sample lines, `name{label="value",...} value [timestamp]`),
//! and a parser that refuses anything else is short; a line that does not parse is counted and
//! skipped, and the numbers of samples, labels and causes are capped, so a hostile endpoint
//! costs bounded memory and cannot panic the console.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Samples read from one body at most.
const MAX_SAMPLES: usize = 100_000;
/// Labels of one sample at most.
const MAX_LABELS: usize = 32;
/// Distinct drop causes kept per sensor.
const MAX_CAUSES: usize = 64;
/// A scrape younger than this is reused (many browsers do not multiply the sensors' load).
const REUSE: Duration = Duration::from_secs(1);

/// One sample line.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Sample lines of a body, and how many other lines (not comments) did not parse.
pub fn parse(text: &str) -> (Vec<Sample>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() >= MAX_SAMPLES {
            bad += 1;
            continue;
        }
        match sample(line) {
            Some(s) => out.push(s),
            None => bad += 1,
        }
    }
    (out, bad)
}

fn is_name(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// `name{k="v",...} value [timestamp]`, values finite.
fn sample(line: &str) -> Option<Sample> {
    let end = line
        .char_indices()
        .find(|&(i, c)| !is_name(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut words = rest.split_ascii_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    if let Some(ts) = words.next() {
        ts.parse::<i64>().ok()?;
    }
    if words.next().is_some() || !value.is_finite() {
        return None;
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Reads `k="v",...}`; returns what follows the closing brace.
fn parse_labels<'a>(mut r: &'a str, labels: &mut Vec<(String, String)>) -> Option<&'a str> {
    loop {
        r = r.trim_start();
        if let Some(after) = r.strip_prefix('}') {
            return Some(after);
        }
        if labels.len() >= MAX_LABELS {
            return None;
        }
        let end = r.find(|c: char| !is_name(c, false) || c == ':')?;
        if end == 0 || r.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let key = r[..end].to_string();
        r = r[end..].trim_start().strip_prefix('=')?.trim_start();
        r = r.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = r.char_indices();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        r = r[close + 1..].trim_start();
        if let Some(after) = r.strip_prefix(',') {
            r = after;
        } else if !r.starts_with('}') {
            return None;
        }
    }
}

/// What the console shows of a sensor's metrics: counters since its start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Frames and bytes the XDP program saw (everything that reached the sensor).
    pub packets: f64,
    pub bytes: f64,
    pub flows: f64,
    /// `sensor_drops_total` by cause, plus export rows lost (`export_<sink>_<outcome>`).
    pub drops: BTreeMap<String, f64>,
}

pub fn figures(samples: &[Sample]) -> Figures {
    let mut f = Figures::default();
    let add_drop = |f: &mut Figures, cause: String, v: f64| {
        if f.drops.len() < MAX_CAUSES || f.drops.contains_key(&cause) {
            *f.drops.entry(cause).or_default() += v;
        }
    };
    for s in samples {
        match s.name.as_str() {
            "sensor_xdp_packets_total" if s.label("outcome") == Some("seen") => {
                f.packets += s.value
            }
            "sensor_xdp_bytes_total" if s.label("outcome") == Some("seen") => f.bytes += s.value,
            "sensor_flows_exported_total" => f.flows += s.value,
            "sensor_drops_total" => {
                let cause = s.label("cause").unwrap_or("unknown").to_string();
                add_drop(&mut f, cause, s.value);
            }
            "sensor_export_rows_total" => {
                let outcome = s.label("outcome").unwrap_or("");
                if matches!(outcome, "dropped_oldest" | "lost" | "corrupt") {
                    let sink = s.label("sink").unwrap_or("sink");
                    add_drop(&mut f, format!("export_{sink}_{outcome}"), s.value);
                }
            }
            _ => {}
        }
    }
    f
}

struct Snap {
    at: Instant,
    unix: f64,
    figures: Figures,
    malformed: u64,
}

#[derive(Default)]
struct History {
    prev: Option<Snap>,
    last: Option<Snap>,
    error: Option<String>,
}

/// Per second between two readings of a counter (a restart of the sensor resets it).
fn rate(cur: f64, prev: f64, secs: f64) -> f64 {
    let d = if cur >= prev { cur - prev } else { cur };
    d / secs
}

impl History {
    fn report(&self) -> Value {
        let Some(last) = &self.last else {
            return json!({"reachable": false, "error": self.error});
        };
        let f = &last.figures;
        let mut out = json!({
            "reachable": self.error.is_none(), "error": self.error, "scraped_at": last.unix,
            "packets_total": f.packets, "bytes_total": f.bytes, "flows_total": f.flows,
            "drops": f.drops, "malformed_lines": last.malformed, "interval_secs": null,
            "packets_per_sec": null, "bits_per_sec": null, "flows_per_sec": null,
            "drops_per_sec": null,
        });
        if let (Some(p), None) = (&self.prev, &self.error) {
            let secs = last.at.duration_since(p.at).as_secs_f64().max(1e-3);
            let g = &p.figures;
            let drops: Map<String, Value> = f
                .drops
                .iter()
                .map(|(k, v)| {
                    let before = g.drops.get(k).copied().unwrap_or(0.0);
                    (k.clone(), json!(rate(*v, before, secs)))
                })
                .collect();
            out["interval_secs"] = json!(secs);
            out["packets_per_sec"] = json!(rate(f.packets, g.packets, secs));
            out["bits_per_sec"] = json!(rate(f.bytes, g.bytes, secs) * 8.0);
            out["flows_per_sec"] = json!(rate(f.flows, g.flows, secs));
            out["drops_per_sec"] = Value::Object(drops);
        }
        out
    }
}

/// Scrapes sensors and remembers their last two readings.
pub struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
    state: Mutex<HashMap<String, History>>,
}

impl Scraper {
    pub fn new(timeout: Duration, max_bytes: usize) -> Scraper {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        Scraper {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(http),
            timeout,
            max_bytes,
            state: Mutex::new(HashMap::new()),
        }
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let req = hyper::Request::get(url)
            .header("Accept", "text/plain")
            .body(Empty::new())
            .map_err(|e| format!("bad URL: {e}"))?;
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let cause =
                    std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"));
                format!("unreachable ({e}{cause})")
            })?;
            if !resp.status().is_success() {
                return Err(format!("answered HTTP {}", resp.status()));
            }
            let body = Limited::new(resp.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| format!("body: {e} (limit {} bytes)", self.max_bytes))?;
            Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// The sensor's figures now, with rates since the previous scrape.
    pub async fn read(&self, id: &str, url: &str) -> Value {
        {
            let st = self.state.lock().unwrap();
            if let Some(h) = st.get(id) {
                if h.error.is_none() && h.last.as_ref().is_some_and(|l| l.at.elapsed() < REUSE) {
                    return h.report();
                }
            }
        }
        let r = self.fetch(url).await;
        let mut st = self.state.lock().unwrap();
        let h = st.entry(id.to_string()).or_default();
        match r {
            Ok(text) => {
                let (samples, malformed) = parse(&text);
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let snap = Snap {
                    at: Instant::now(),
                    unix,
                    figures: figures(&samples),
                    malformed,
                };
                // After an outage the old reading is not a base for rates.
                h.prev = if h.error.is_some() {
                    None
                } else {
                    h.last.take()
                };
                h.last = Some(snap);
                h.error = None;
            }
            Err(e) => h.error = Some(e),
        }
        h.report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_parse_with_labels_escapes_and_timestamps() {
        let text = "# HELP x y\n# TYPE x counter\n\
                    sensor_drops_total{iface=\"eth0\",cause=\"ring_full\"} 12\n\
                    a_b:c 3.5 1700000000000\n\
                    weird{v=\"q\\\"uote\\\\ \\n\",} 1e3\n";
        let (s, bad) = parse(text);
        assert_eq!(bad, 0);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("cause"), Some("ring_full"));
        assert_eq!(s[0].value, 12.0);
        assert_eq!(s[1].name, "a_b:c");
        assert_eq!(s[2].label("v"), Some("q\"uote\\ \n"));
        assert_eq!(s[2].value, 1000.0);
    }

    #[test]
    fn hostile_lines_are_counted_and_skipped() {
        let many_labels = format!(
            "x{{{}}} 1",
            (0..40)
                .map(|i| format!("l{i}=\"v\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        for bad in [
            "x{",
            "x{a=\"b} 1",
            "x{a=b} 1",
            "x 1 2 3",
            "x NaN",
            "x +Inf",
            "9x 1",
            "x{a=\"\\q\"} 1",
            "x{1a=\"b\"} 1",
            "{a=\"b\"} 1",
            "x{a=\"b\" c=\"d\"} 1",
            "x",
            "x 1 notatime",
            "é 1",
            &many_labels,
        ] {
            let (s, n) = parse(bad);
            assert!(s.is_empty() && n == 1, "{bad:?} gave {s:?}");
        }
    }

    #[test]
    fn figures_sum_the_sensor_families_and_rates_survive_a_reset() {
        let text = "sensor_xdp_packets_total{iface=\"e\",outcome=\"seen\"} 100\n\
            sensor_xdp_packets_total{iface=\"e\",outcome=\"redirected\"} 90\n\
            sensor_xdp_bytes_total{iface=\"e\",outcome=\"seen\"} 6400\n\
            sensor_flows_exported_total{worker=\"0\"} 4\n\
            sensor_flows_exported_total{worker=\"1\"} 6\n\
            sensor_drops_total{iface=\"e\",queue=\"0\",cause=\"ring_full\"} 2\n\
            sensor_drops_total{iface=\"e\",queue=\"1\",cause=\"ring_full\"} 3\n\
            sensor_export_rows_total{sink=\"nats\",outcome=\"lost\"} 1\n\
            sensor_export_rows_total{sink=\"nats\",outcome=\"acknowledged\"} 9\n";
        let f = figures(&parse(text).0);
        assert_eq!((f.packets, f.bytes, f.flows), (100.0, 6400.0, 10.0));
        assert_eq!(f.drops["ring_full"], 5.0);
        assert_eq!(f.drops["export_nats_lost"], 1.0);
        assert_eq!(f.drops.len(), 2);
        assert_eq!(rate(30.0, 10.0, 2.0), 10.0);
        assert_eq!(rate(4.0, 10.0, 2.0), 2.0);
    }
}
