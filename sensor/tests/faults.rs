//! Fault injection against the real servers (Debian's clickhouse-server 18.16 and nats-server
//! 2.9 with JetStream): servers SIGKILLed at random points of a replay, a host that accepts and
//! never answers, a server slower than the sink's `timeout`, a spool whose disk is full, the
//! sensor itself SIGKILLed or stopped with SIGTERM during an outage, and TLS to both sinks.
//!
//! Every case asserts exact identity sets: each EVE record is in ClickHouse exactly once (flows
//! by `(sensor_id, flow_id)`, events by `(sensor_id, flow_id, event_index)`, compared with the
//! EVE records' `flow_id`s per type) and in JetStream exactly once (payloads equal the EVE
//! objects, message ids unique), and the summary's export accounting adds up. What a case
//! loses on purpose (records in memory at a SIGKILL, the oldest spool segments on a full disk)
//! is counted and checked against the figures.
//!
//! Captures are generated (fixtures amplified, placed across midnights so that batches span
//! two partitions): no two records share a `flow_id`, so identity sets are exact.
//!
//! Short mode by default (what `cargo test` and CI run, a few minutes). `FAULTS_FULL=1` runs
//! the full mode: a replay of at least 150,000 flows per server kill case, more kill points.
//! `FAULTS_SEED=N` repeats the kill points of an earlier run (each case prints its seed).
//! Each case prints its figures (records, spooled, replayed, spool peak, catch-up, losses).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::jetstream::{read_stream, read_stream_with};
use common::proxy::{Fault, LossyProxy};
use common::servers::{have, sensor_bin, ClickHouse, Nats, TestCerts};
use common::summary_value;
use serde_json::Value;

const ID: &str = "f1";

fn full() -> bool {
    std::env::var("FAULTS_FULL").is_ok_and(|v| v == "1")
}

fn servers_present() -> bool {
    let ok = have("clickhouse-server") && have("nats-server");
    if !ok {
        eprintln!(
            "SKIPPED: clickhouse-server or nats-server missing (scripts/setup.sh installs them)"
        );
    }
    ok
}

/// A small deterministic generator for kill points (seeded, printed).
struct Rng(u64);

impl Rng {
    fn new(case: &str) -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{case}: FAULTS_SEED={seed}");
        Rng(seed | 1)
    }

    /// Uniform in [lo, hi).
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (hi - lo) * ((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Where the sinks are for a run.
#[derive(Default)]
struct Sinks<'a> {
    ch: Option<String>,
    nats: Option<String>,
    /// More `[clickhouse]` keys.
    ch_keys: &'a str,
    /// More `[nats]` keys.
    nats_keys: &'a str,
    /// More `[spool]` keys.
    spool_keys: &'a str,
    drain_timeout: u64,
}

fn config(dir: &Path, db: &str, spool: &Path, s: &Sinks<'_>) -> PathBuf {
    let p = dir.join(format!("{db}.toml"));
    std::fs::write(
        &p,
        format!(
            "[sensor]\nworkers = 2\npin_cores = false\n\
             [clickhouse]\ndatabase = \"{db}\"\nbatch_age_ms = 100\nbatch_rows = 500\ntimeout = 5\n{}\
             [nats]\nuser = \"{}\"\npassword = \"{}\"\nbatch_age_ms = 100\nbatch_msgs = 500\ntimeout = 5\n{}\
             [spool]\ndir = \"{}\"\n{}\
             [export]\ndrain_timeout = {}\n",
            s.ch_keys,
            Nats::USER,
            Nats::PASSWORD,
            s.nats_keys,
            spool.display(),
            s.spool_keys,
            s.drain_timeout,
        ),
    )
    .unwrap();
    p
}

fn sensor(files: &[PathBuf], cfg: &Path, s: &Sinks<'_>, eve: &Path, speed: Option<f64>) -> Command {
    let mut c = Command::new(sensor_bin());
    c.arg("replay")
        .args(files)
        .arg("--config")
        .arg(cfg)
        .args(["--sensor-id", ID, "--quiet", "--eve"])
        .arg(eve);
    if let Some(u) = &s.ch {
        c.args(["--clickhouse", u]);
    }
    if let Some(u) = &s.nats {
        c.args(["--nats", u]);
    }
    if let Some(x) = speed {
        c.args(["--speed", &x.to_string()]);
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn read_eve(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Identities by type: (event type, flow_id) -> how many records.
type Ids = BTreeMap<(String, u64), u64>;

fn eve_ids(eve: &[Value], types: &[&str]) -> Ids {
    let mut ids = Ids::new();
    for v in eve {
        let t = v["event_type"].as_str().unwrap_or("");
        if types.contains(&t) {
            *ids.entry((t.to_string(), v["flow_id"].as_u64().unwrap()))
                .or_default() += 1;
        }
    }
    ids
}

const CH_TYPES: [&str; 3] = ["flow", "http", "dns"];
const CH_TABLES: [(&str, &str); 3] = [
    ("flow", "flows"),
    ("http", "http_requests"),
    ("dns", "dns_queries"),
];

/// The identities in ClickHouse, and how many rows share an identity with another.
fn ch_ids(ch: &ClickHouse, db: &str) -> (Ids, u64) {
    let mut ids = Ids::new();
    let mut dups = 0;
    for (t, table) in CH_TABLES {
        let body = ch.query(&format!(
            "SELECT flow_id, count() FROM {db}.{table} WHERE sensor_id = '{ID}' GROUP BY flow_id"
        ));
        for line in body.lines() {
            let mut it = line.split('\t').map(|x| x.parse::<u64>().unwrap());
            let (id, n) = (it.next().unwrap(), it.next().unwrap());
            ids.insert((t.to_string(), id), n);
        }
        let key = if table == "flows" {
            "flow_id"
        } else {
            "flow_id, event_index"
        };
        dups += ch.count(&format!(
            "SELECT count() - uniqExact({key}) FROM {db}.{table} WHERE sensor_id = '{ID}'"
        ));
    }
    (ids, dups)
}

/// Every record of `eve` (of the ClickHouse types) is in ClickHouse exactly once, and nothing
/// else is.
fn assert_ch_exact(ch: &ClickHouse, db: &str, eve: &[Value], what: &str) {
    let (got, dups) = ch_ids(ch, db);
    assert_eq!(dups, 0, "{what}: rows stored twice");
    let want = eve_ids(eve, &CH_TYPES);
    if got != want {
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, n)| got.get(*k) != Some(n))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, n)| want.get(*k) != Some(n))
            .take(5)
            .collect();
        panic!(
            "{what}: ClickHouse holds {} identities, EVE has {}; first differences: want {missing:?}, got {extra:?}",
            got.values().sum::<u64>(),
            want.values().sum::<u64>()
        );
    }
}

/// Every EVE record is one message in JetStream (payload equal, message id unique).
fn assert_nats_exact(msgs: &[(String, String, Value)], eve: &[Value], what: &str) {
    let ids: BTreeSet<&str> = msgs.iter().map(|(_, m, _)| m.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "{what}: a message id twice");
    let mut want: Vec<String> = eve.iter().map(Value::to_string).collect();
    let mut got: Vec<String> = msgs.iter().map(|(_, _, v)| v.to_string()).collect();
    want.sort();
    got.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: message count vs EVE records"
    );
    assert!(got == want, "{what}: payloads differ from the EVE records");
}

/// The export accounting line of a sink, checked to add up; returns its figures by name.
fn accounting(err: &str, sink: &str) -> BTreeMap<String, u64> {
    let line = err
        .lines()
        .find(|l| l.contains(&format!("export accounting {sink}:")))
        .unwrap_or_else(|| panic!("no accounting line for {sink} in {err}"));
    assert!(
        line.ends_with("[ok]"),
        "export accounting does not add up: {line}"
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .filter_map(|w| Some((w[0].to_string(), w[1].parse().ok()?)))
        .collect()
}

/// The figures the closing note wants, printed per case.
fn report(case: &str, err: &str, sink: &str, records: usize) {
    let a = accounting(err, sink);
    eprintln!(
        "FIGURES {case} [{sink}]: records={records} emitted={} spooled={} replayed={} spool_peak_bytes={} catch_up_ms={} \
         acknowledged={} in_spool={} dropped_oldest={} lost={} corrupt={} rejected={}",
        a["emitted"],
        summary_value(err, sink, "spooled"),
        summary_value(err, sink, "replayed"),
        summary_value(err, sink, "spool_peak_bytes"),
        summary_value(err, sink, "catch_up_ms"),
        a["acknowledged"],
        a["in_spool"],
        a["dropped_oldest"],
        a["lost"],
        a["corrupt"],
        a["rejected"],
    );
}

/// A capture of about `bytes` crossing many midnights, and how long its packets span.
fn capture(dir: &Path, bytes: u64) -> (PathBuf, f64) {
    let cap = common::day_crossing_capture(dir, bytes);
    let f = sensor::capture::pcap_file::PcapFile::open(&cap).unwrap();
    let (mut first, mut last) = (None, 0);
    for fr in f.frames() {
        first.get_or_insert(fr.ts);
        last = fr.ts;
    }
    (cap, (last - first.unwrap_or(last)) as f64 / 1e9)
}

/// Size of the capture for the server kill cases: at least 150,000 flows in full mode.
fn kill_capture_bytes() -> u64 {
    if full() {
        160 << 20
    } else {
        6 << 20
    }
}

fn wait_exit(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the sensor did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// A server SIGKILLed at seeded random points of a paced replay, each time restarted after a
/// short outage; the other sink stays up. Both end with every record exactly once.
fn kill_case(case: &str, kill_clickhouse: bool) {
    let ch = ClickHouse::start();
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let (cap, span) = capture(dir.path(), kill_capture_bytes());
    let secs = if full() { 60.0 } else { 14.0 };
    let kills = if full() { 5 } else { 2 };
    let mut rng = Rng::new(case);
    let mut points: Vec<f64> = (0..kills)
        .map(|i| {
            let slot = secs * 0.8 / kills as f64;
            0.5 + slot * i as f64 + rng.between(0.0, slot * 0.5)
        })
        .collect();
    points.sort_by(f64::total_cmp);
    let sinks = Sinks {
        ch: Some(ch.url()),
        nats: Some(nats.url()),
        drain_timeout: 300,
        ..Default::default()
    };
    let cfg = config(dir.path(), case, &dir.path().join("spool"), &sinks);
    let eve = dir.path().join("eve.json");
    let started = Instant::now();
    let child = sensor(&[cap], &cfg, &sinks, &eve, Some((span / secs).max(1e-6)))
        .spawn()
        .unwrap();
    for at in &points {
        let wait = Duration::from_secs_f64(*at).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        if kill_clickhouse {
            ch.kill();
        } else {
            nats.kill();
        }
        let down = rng.between(1.0, 4.0);
        eprintln!(
            "{case}: killed at {:.1}s, down {down:.1}s",
            started.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs_f64(down));
        if kill_clickhouse {
            ch.restart();
        } else {
            nats.restart();
        }
    }
    let out = wait_exit(child, Duration::from_secs(600));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let eve = read_eve(&eve);
    assert_ch_exact(&ch, case, &eve, case);
    assert_nats_exact(&read_stream(&nats, ID), &eve, case);
    let victim = if kill_clickhouse {
        "clickhouse"
    } else {
        "nats"
    };
    assert!(
        summary_value(&err, victim, "spooled") > 0,
        "the outage spooled nothing: {err}"
    );
    for sink in ["clickhouse", "nats"] {
        assert_eq!(accounting(&err, sink)["in_spool"], 0, "{err}");
        report(case, &err, sink, eve.len());
    }
    let flows = eve.iter().filter(|v| v["event_type"] == "flow").count();
    eprintln!(
        "{case}: {flows} flows, {} records, capture span {span:.0}s replayed in {:.1}s",
        eve.len(),
        started.elapsed().as_secs_f64()
    );
    if full() {
        assert!(
            flows >= 150_000,
            "full mode replays at least 150,000 flows, got {flows}"
        );
    }
}

#[test]
fn clickhouse_sigkilled_at_random_points_then_restarted_every_record_once() {
    if servers_present() {
        kill_case("ch_kill", true);
    }
}

#[test]
fn nats_sigkilled_at_random_points_then_restarted_every_record_once() {
    if servers_present() {
        kill_case("nats_kill", false);
    }
}

/// A listener that accepts connections and never answers (kept open until the test ends).
fn silent_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let l2 = l.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l2.incoming().flatten() {
            held.push(c);
        }
    });
    (l, port)
}

/// ClickHouse's host accepts and never answers: the EVE output and NATS get everything, the
/// ClickHouse batches wait in the spool, and the next run delivers them once ClickHouse is
/// there.
#[test]
fn a_silent_clickhouse_host_spools_while_nats_and_eve_keep_going() {
    if !servers_present() {
        return;
    }
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let (cap, _) = capture(dir.path(), 1 << 20);
    let (_silent, port) = silent_listener();
    let spool = dir.path().join("spool");
    let sinks = Sinks {
        ch: Some(format!("http://127.0.0.1:{port}")),
        nats: Some(nats.url()),
        ch_keys: "",
        drain_timeout: 2,
        ..Default::default()
    };
    let cfg = config(dir.path(), "silent", &spool, &sinks);
    let eve1 = dir.path().join("eve1.json");
    let started = Instant::now();
    let out = wait_exit(
        sensor(&[cap], &cfg, &sinks, &eve1, None).spawn().unwrap(),
        Duration::from_secs(120),
    );
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let eve1 = read_eve(&eve1);
    assert_nats_exact(&read_stream(&nats, ID), &eve1, "silent: nats");
    let a = accounting(&err, "clickhouse");
    assert_eq!(a["acknowledged"], 0, "{err}");
    assert_eq!(
        a["in_spool"], a["emitted"],
        "every ClickHouse row waits in the spool: {err}"
    );
    assert_eq!(
        a["emitted"],
        eve_ids(&eve1, &CH_TYPES).values().sum::<u64>(),
        "{err}"
    );
    report("silent_host", &err, "clickhouse", eve1.len());
    report("silent_host", &err, "nats", eve1.len());
    eprintln!("silent_host: run with a silent ClickHouse took {took:?}");

    // The next run, ClickHouse there: the spool goes first, then its own records.
    let ch = ClickHouse::start();
    let sinks = Sinks {
        ch: Some(ch.url()),
        drain_timeout: 60,
        ..Default::default()
    };
    let cfg = config(dir.path(), "silent", &spool, &sinks);
    let eve2 = dir.path().join("eve2.json");
    let dns = common::repo_root().join("testdata-pcaps/dns.pcap");
    let out = sensor(&[dns], &cfg, &sinks, &eve2, None).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let mut eve = eve1;
    eve.extend(read_eve(&eve2));
    assert_ch_exact(&ch, "silent", &eve, "silent: next run");
    assert_eq!(
        accounting(&err, "clickhouse")["resumed"],
        a["in_spool"],
        "{err}"
    );
    report("silent_host_next_run", &err, "clickhouse", eve.len());
}

/// ClickHouse answers later than the sink's `timeout` (the proxy holds the answers): the sink
/// gives up, the rows are stored anyway and the late answers arrive at a closed connection.
/// The check after the unknown outcome finds them: every row once.
#[test]
fn a_server_slower_than_the_timeout_stores_each_row_once() {
    if !servers_present() {
        return;
    }
    let ch = ClickHouse::start();
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let (cap, _) = capture(dir.path(), 1 << 20);
    let proxy = LossyProxy::start_for(
        ch.http_port,
        Some("flows"),
        &[
            Fault::DelayAnswer(2500),
            Fault::Pass,
            Fault::DelayAnswer(2500),
        ],
    );
    let sinks = Sinks {
        ch: Some(proxy.url()),
        nats: Some(nats.url()),
        ch_keys: "",
        drain_timeout: 120,
        ..Default::default()
    };
    // `timeout = 1` must win over the config's default 5: written as the only timeout.
    let cfg = config(dir.path(), "slow", &dir.path().join("spool"), &sinks);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replacen("timeout = 5", "timeout = 1", 1);
    std::fs::write(&cfg, text).unwrap();
    let eve = dir.path().join("eve.json");
    let out = sensor(&[cap], &cfg, &sinks, &eve, None).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(proxy.faults_left(), 0, "every delay applied: {err}");
    let eve = read_eve(&eve);
    assert!(summary_value(&err, "clickhouse", "retried") >= 2, "{err}");
    assert!(
        err.contains("stored before an acknowledgement was lost"),
        "the late-answered rows were found stored: {err}"
    );
    assert_ch_exact(&ch, "slow", &eve, "slow");
    assert_nats_exact(&read_stream(&nats, ID), &eve, "slow: nats");
    report("slow_server", &err, "clickhouse", eve.len());
}

/// A tmpfs of `kib` KiB mounted on a new directory (root only); `None` (with a message) when
/// mounting is not possible here.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, kib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        }
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The spool's disk fills up (a 192 KiB tmpfs under a far larger `spool.max_bytes`) while
/// ClickHouse is down. `drop_oldest`: the oldest segments go, counted, and exactly the rest is
/// delivered by the next run. `block`: the replay waits, and completes once ClickHouse is back.
#[test]
fn a_full_spool_disk_drops_the_oldest_counted_or_blocks() {
    if !servers_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), 192) else {
        return;
    };
    let ch = ClickHouse::start();
    ch.kill();
    let (cap, _) = capture(dir.path(), 2 << 20);
    let spool = disk.0.join("spool");
    let drop_keys = "max_bytes = 1073741824\nfull_policy = \"drop_oldest\"\n";
    let sinks = Sinks {
        ch: Some(ch.url()),
        spool_keys: drop_keys,
        drain_timeout: 0,
        ..Default::default()
    };
    let cfg = config(dir.path(), "diskfull", &spool, &sinks);
    let eve1 = dir.path().join("eve1.json");
    let out = sensor(std::slice::from_ref(&cap), &cfg, &sinks, &eve1, None)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let a = accounting(&err, "clickhouse");
    assert!(
        a["dropped_oldest"] > 0,
        "the full disk dropped nothing: {err}"
    );
    assert!(dir_bytes(&spool) <= 192 << 10);
    report("spool_disk_full_drop_oldest", &err, "clickhouse", 0);
    let eve1 = read_eve(&eve1);

    // The next run delivers exactly what the spool kept: the newest records of run 1.
    ch.restart();
    let eve2 = dir.path().join("eve2.json");
    let sinks2 = Sinks {
        drain_timeout: 60,
        ..sinks
    };
    let cfg = config(dir.path(), "diskfull", &spool, &sinks2);
    let dns = common::repo_root().join("testdata-pcaps/dns.pcap");
    let out = sensor(&[dns], &cfg, &sinks2, &eve2, None).output().unwrap();
    let err2 = stderr(&out);
    assert!(out.status.success(), "{err2}");
    let eve2 = read_eve(&eve2);
    let (got, dups) = ch_ids(&ch, "diskfull");
    assert_eq!(dups, 0);
    let mut want = eve_ids(&eve1, &CH_TYPES);
    for (k, n) in eve_ids(&eve2, &CH_TYPES) {
        *want.entry(k).or_default() += n;
    }
    for (k, n) in &got {
        assert!(
            want.get(k).is_some_and(|w| w >= n),
            "{k:?} was never emitted"
        );
    }
    let total = |i: &Ids| i.values().sum::<u64>();
    assert_eq!(
        total(&got),
        total(&want) - a["dropped_oldest"],
        "ClickHouse holds every record but the dropped ones: {err2}"
    );
    assert_eq!(accounting(&err2, "clickhouse")["resumed"], a["in_spool"]);
    // The summary names the dropped records (first and last, in spool order); neither is in
    // ClickHouse.
    let line = err
        .lines()
        .find(|l| l.contains("sink clickhouse spool full: dropped the oldest"))
        .unwrap_or_else(|| panic!("no dropped-records line: {err}"));
    eprintln!("spool_disk_full_drop_oldest: {}", line.trim());
    let names: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.matches('/').count() == 3)
        .collect();
    assert_eq!(names.len(), 2, "{line}");
    for name in names {
        let parts: Vec<&str> = name.split('/').collect();
        let index = if parts[0] == "flows" {
            String::new()
        } else {
            format!(" AND event_index = {}", parts[3])
        };
        let n = ch.count(&format!(
            "SELECT count() FROM diskfull.{} WHERE sensor_id = '{ID}' AND flow_id = {}{index}",
            parts[0], parts[2]
        ));
        assert_eq!(n, 0, "dropped record {name} is in ClickHouse");
    }

    // `block`: the replay waits on the full disk while ClickHouse is down.
    ch.kill();
    let _ = std::fs::remove_dir_all(&spool);
    let sinks3 = Sinks {
        ch: Some(ch.url()),
        spool_keys: "max_bytes = 1073741824\nfull_policy = \"block\"\n",
        drain_timeout: 300,
        ..Default::default()
    };
    let cfg = config(dir.path(), "diskblock", &spool, &sinks3);
    let eve3 = dir.path().join("eve3.json");
    let mut child = sensor(&[cap], &cfg, &sinks3, &eve3, None).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the replay must wait on a full disk"
    );
    ch.restart();
    let out = wait_exit(child, Duration::from_secs(300));
    let err3 = stderr(&out);
    assert!(out.status.success(), "{err3}");
    let eve3 = read_eve(&eve3);
    assert_ch_exact(&ch, "diskblock", &eve3, "disk full, block");
    let a3 = accounting(&err3, "clickhouse");
    assert_eq!(a3["dropped_oldest"] + a3["lost"], 0, "{err3}");
    report("spool_disk_full_block", &err3, "clickhouse", eve3.len());
}

/// The sensor is SIGKILLed in the middle of a replay while ClickHouse is down; the next run on
/// the same spool delivers every record that reached the spool, exactly once. What was still in
/// memory (channels, batches being filled, flows not yet ended) is the only loss.
#[test]
fn a_sigkilled_sensor_leaves_a_spool_the_next_run_delivers_once() {
    if !servers_present() {
        return;
    }
    let ch = ClickHouse::start();
    ch.kill();
    let dir = tempfile::tempdir().unwrap();
    let (cap, span) = capture(dir.path(), 2 << 20);
    let spool = dir.path().join("spool");
    let sinks = Sinks {
        ch: Some(ch.url()),
        drain_timeout: 60,
        ..Default::default()
    };
    let cfg = config(dir.path(), "killed", &spool, &sinks);
    let eve1 = dir.path().join("eve1.json");
    let mut child = sensor(&[cap], &cfg, &sinks, &eve1, Some(span / 10.0))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    child.kill().unwrap();
    let _ = child.wait();
    let on_disk = sensor::export::spool::Spool::open(
        &spool.join("clickhouse"),
        1 << 40,
        16 << 20,
        sensor::export::spool::FullPolicy::Block,
    )
    .unwrap()
    .rows();
    assert!(on_disk > 0, "nothing reached the spool before the kill");
    let eve1 = read_eve(&eve1);

    ch.restart();
    let eve2 = dir.path().join("eve2.json");
    let dns = common::repo_root().join("testdata-pcaps/dns.pcap");
    let out = sensor(&[dns], &cfg, &sinks, &eve2, None).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let a = accounting(&err, "clickhouse");
    assert_eq!(a["resumed"], on_disk, "{err}");
    assert_eq!(a["in_spool"], 0, "{err}");
    let eve2 = read_eve(&eve2);
    let (got, dups) = ch_ids(&ch, "killed");
    assert_eq!(dups, 0, "a spooled row was delivered twice");
    let total: u64 = got.values().sum();
    assert_eq!(total, on_disk + a["emitted"], "{err}");
    // Run 2's records all arrived; the spooled ones are records run 1 made (its EVE file may
    // lack the last lines it had not flushed when killed).
    let want2 = eve_ids(&eve2, &CH_TYPES);
    for (k, n) in &want2 {
        assert!(got.get(k).is_some_and(|g| g >= n), "{k:?} of run 2 missing");
    }
    let made1 = eve_ids(&eve1, &CH_TYPES);
    let from_spool_known = got
        .iter()
        .filter(|(k, _)| made1.contains_key(*k))
        .map(|(_, n)| n)
        .sum::<u64>();
    eprintln!(
        "FIGURES sensor_sigkill: spooled before the kill={on_disk} rows, run 1 EVE lines={} \
         (rows of them in ClickHouse {from_spool_known}), run 2 emitted={} resumed={} acknowledged={}; \
         lost = records in memory at the kill (not in the spool)",
        eve1.len(),
        a["emitted"],
        a["resumed"],
        a["acknowledged"]
    );
    report("sensor_sigkill_next_run", &err, "clickhouse", eve2.len());
}

/// SIGTERM while both servers are down: the run ends cleanly with its batches kept in the
/// spool, and the next run delivers them, every record once to each sink.
#[test]
fn sigterm_during_an_outage_keeps_the_spool_for_the_next_run() {
    if !servers_present() {
        return;
    }
    let ch = ClickHouse::start();
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let (cap, span) = capture(dir.path(), 2 << 20);
    let spool = dir.path().join("spool");
    let sinks = Sinks {
        ch: Some(ch.url()),
        nats: Some(nats.url()),
        drain_timeout: 1,
        ..Default::default()
    };
    let cfg = config(dir.path(), "sigterm", &spool, &sinks);
    let eve1 = dir.path().join("eve1.json");
    let child = sensor(&[cap], &cfg, &sinks, &eve1, Some(span / 12.0))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    ch.kill();
    nats.kill();
    std::thread::sleep(Duration::from_secs(2));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = wait_exit(child, Duration::from_secs(120));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let left: BTreeMap<&str, u64> = ["clickhouse", "nats"]
        .into_iter()
        .map(|s| (s, accounting(&err, s)["in_spool"]))
        .collect();
    assert!(
        left.values().all(|n| *n > 0),
        "the outage left nothing spooled: {err}"
    );
    for sink in ["clickhouse", "nats"] {
        report("sigterm_outage", &err, sink, 0);
    }
    let eve1 = read_eve(&eve1);

    ch.restart();
    nats.restart();
    let sinks2 = Sinks {
        drain_timeout: 60,
        ..sinks
    };
    let eve2 = dir.path().join("eve2.json");
    let dns = common::repo_root().join("testdata-pcaps/dns.pcap");
    let out = sensor(&[dns], &cfg, &sinks2, &eve2, None).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let mut eve = eve1;
    eve.extend(read_eve(&eve2));
    assert_ch_exact(&ch, "sigterm", &eve, "sigterm: next run");
    assert_nats_exact(&read_stream(&nats, ID), &eve, "sigterm: next run");
    for sink in ["clickhouse", "nats"] {
        assert_eq!(accounting(&err, sink)["resumed"], left[sink], "{err}");
        report("sigterm_outage_next_run", &err, sink, eve.len());
    }
}

/// Both sinks over TLS at once, to real servers configured with a CA made by the test: a
/// ClickHouse HTTPS listener and a NATS server that requires TLS (and a token).
#[test]
fn tls_to_both_sinks_delivers_every_record_once() {
    if !servers_present() {
        return;
    }
    let certs = TestCerts::new();
    let ch = ClickHouse::start_tls(&certs);
    let nats = Nats::start_tls_token(&certs);
    let dir = tempfile::tempdir().unwrap();
    let (cap, _) = capture(dir.path(), 512 << 10);
    let ca = certs.ca.display().to_string();
    let ch_keys = format!(
        "user = \"sensor\"\npassword = \"{}\"\nca_file = \"{ca}\"\n",
        ClickHouse::PASSWORD
    );
    let nats_keys = format!("ca_file = \"{ca}\"\ntoken = \"{}\"\n", Nats::TOKEN);
    let sinks = Sinks {
        ch: Some(ch.https_url()),
        nats: Some(nats.url()),
        ch_keys: &ch_keys,
        nats_keys: &nats_keys,
        drain_timeout: 60,
        ..Default::default()
    };
    let cfg = config(dir.path(), "tls", &dir.path().join("spool"), &sinks);
    // The token replaces the user and password of the default config.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!(
            "user = \"{}\"\npassword = \"{}\"\n",
            Nats::USER,
            Nats::PASSWORD
        ),
        "",
    );
    std::fs::write(&cfg, text).unwrap();
    let eve = dir.path().join("eve.json");
    let out = sensor(&[cap], &cfg, &sinks, &eve, None).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let eve = read_eve(&eve);
    assert!(!eve.is_empty());
    assert_ch_exact(&ch, "tls", &eve, "tls: clickhouse");
    let opts = async_nats::ConnectOptions::with_token(Nats::TOKEN.into())
        .add_root_certificates(certs.ca.clone())
        .require_tls(true);
    assert_nats_exact(&read_stream_with(&nats, opts, ID), &eve, "tls: nats");
    for sink in ["clickhouse", "nats"] {
        assert_eq!(
            accounting(&err, sink)["acknowledged"],
            accounting(&err, sink)["emitted"]
        );
        report("tls_both", &err, sink, eve.len());
    }
}
