//! `pipeline respond` against real servers (nats-server, clickhouse-server): alerts published
//! on `ALERTS` as `pipeline detect` publishes them become signed commands on `COMMANDS`,
//! action records on `ACTIONS` and rows in `actions` and `host_tags`; guard rails, dry run,
//! restarts and kill -9, notifications against a local receiver; `check-playbooks` and
//! `keygen`. Short by default; `RESPOND_FULL=1` makes the storm and the kill test larger.

mod online_support;
mod respond_support;

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline_command::{Action, Verifier};
use respond_support::*;
use testkit::servers::{have, ClickHouse, Nats};

fn full() -> bool {
    std::env::var_os("RESPOND_FULL").is_some()
}

fn servers() -> bool {
    let ok = have("nats-server") && have("clickhouse-server");
    if !ok {
        eprintln!("skipping: nats-server or clickhouse-server not installed");
    }
    ok
}

const BLOCK_AND_TAG: &str = r#"
[[playbook]]
name = "block-scanners"
[playbook.trigger]
signature_ids = [9900001]
min_severity = 2
[[playbook.step]]
kind = "block"
target = "src"
scope = "origin"
duration = "10m"
[[playbook.step]]
kind = "tag"
host = "src"
label = "scanner"
expire = "1h"
"#;

const BLOCK: &str = r#"
[[playbook]]
name = "block-scanners"
[playbook.trigger]
signature_ids = [9900001]
[[playbook.step]]
kind = "block"
target = "src"
prefix_v4 = 32
duration = "10m"
"#;

/// The commands in `COMMANDS`, verified with the public key as sensor `sensor` would.
fn verified_commands(url: &str, env: &Env, sensor: &str) -> Vec<pipeline_command::Command> {
    let key = pipeline_command::keys::load_verifying_key(&env.public).unwrap();
    let mut v = Verifier::new(key, sensor);
    let now = respond_now();
    stream_messages(url, "COMMANDS")
        .into_iter()
        .map(|(subject, payload)| {
            assert_eq!(subject, format!("commands.{sensor}"));
            v.verify(&payload, now)
                .unwrap_or_else(|e| panic!("command rejected: {e}"))
        })
        .collect()
}

/// `n` alerts of the block playbook, each from its own scanner address.
fn scanners(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            alert(
                &format!("{prefix}-{i}"),
                "s1",
                &format!("198.18.{}.{}", i / 250, i % 250 + 1),
                9900001,
                2,
            )
        })
        .collect()
}

fn respond_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn an_alert_becomes_one_signed_command_and_audit_rows_protected_and_malformed_ones_do_not() {
    if !servers() {
        return;
    }
    let nats = Nats::start();
    let ch = ClickHouse::start();
    let env = Env::new(BLOCK_AND_TAG);
    let cfg = env.config(&nats.url(), Some(&ch.url()), "", "");
    let mut r = start_respond(&cfg);
    let scan = alert("a-scan-1", "s1", "198.51.100.7", 9900001, 2);
    let protected = alert("a-prot-1", "s1", "10.99.3.4", 9900001, 2);
    let loopback = alert("a-loop-1", "s1", "127.0.0.5", 9900001, 2);
    let unmatched = alert("a-other-1", "s1", "198.51.100.8", 1234, 2);
    let malformed: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"{\"event_type\":\"alert\"}".to_vec(),
        scan.replace("a-scan-1", "bad.id").into_bytes(),
        scan.replace("\"s1\"", "\"s1.>\"")
            .replace("a-scan-1", "a-bad-host")
            .into_bytes(),
        vec![b'{'; 300_000],
    ];
    let mut items: Vec<(String, String, Vec<u8>)> = [&scan, &protected, &loopback, &unmatched]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                "alerts.s1.2".to_string(),
                format!("m-{i}"),
                l.as_bytes().to_vec(),
            )
        })
        .collect();
    for (i, m) in malformed.into_iter().enumerate() {
        items.push(("alerts.s1.2".into(), format!("junk-{i}"), m));
    }
    publish_alerts(&nats.url(), &items);
    wait_until("all alerts handled", Duration::from_secs(60), || {
        metric(&r.metrics(), "pipeline_respond_alerts_total") >= 9
    });
    wait_until(
        "the records of 3 matching alerts",
        Duration::from_secs(30),
        || respond_records(&nats.url()).len() >= 5,
    );
    assert_eq!(
        metric(&r.metrics(), "pipeline_respond_malformed_total"),
        5,
        "{}",
        r.metrics()
    );
    assert_eq!(
        metric(
            &r.metrics(),
            "pipeline_respond_refusals_total{reason=\"protected\"}"
        ),
        2
    );

    let cmds = verified_commands(&nats.url(), &env, "s1");
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0].alert_id.as_deref(), Some("a-scan-1"));
    assert_eq!(
        cmds[0].action,
        Action::Block {
            cidr: "198.51.100.7/32".parse().unwrap(),
            duration_secs: 600
        }
    );
    assert!(cmds[0].expires_at_ms - cmds[0].issued_at_ms <= 300_000);

    // A sensor's own record on the same stream reaches the table too.
    let sensor_rec = pipeline_command::audit::ActionRecord {
        id: format!("{}:s1:applied", cmds[0].id),
        time_ms: respond_now(),
        source: "sensor".into(),
        sensor_id: "s1".into(),
        kind: "block".into(),
        target: "198.51.100.7/32".into(),
        outcome: pipeline_command::audit::Outcome::Applied,
        detail: String::new(),
        alert_id: "a-scan-1".into(),
        command_id: cmds[0].id.clone(),
        playbook: String::new(),
    };
    rt().block_on(async {
        let js = js(&nats.url()).await;
        js.publish(
            "actions.sensor",
            serde_json::to_vec(&sensor_rec).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    });
    // requested + tag for the scan; a rejection and a tag for each protected one; the sensor's.
    let q = |sql: &str| ch.count(sql);
    wait_until("the actions rows", Duration::from_secs(60), || {
        q("SELECT count() FROM sensor.actions") >= 7
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        q("SELECT count() FROM sensor.actions"),
        7,
        "{}",
        ch.query("SELECT * FROM sensor.actions FORMAT TSV")
    );
    assert_eq!(q("SELECT uniqExact(id) FROM sensor.actions"), 7);
    assert_eq!(q("SELECT count() FROM sensor.actions WHERE kind = 'block' AND outcome = 'requested' AND alert_id = 'a-scan-1' AND sensor_id = 's1'"), 1);
    assert_eq!(q("SELECT count() FROM sensor.actions WHERE kind = 'block' AND outcome = 'rejected' AND detail LIKE '%protected%'"), 2);
    assert_eq!(
        q("SELECT count() FROM sensor.actions WHERE source = 'sensor' AND outcome = 'applied'"),
        1
    );
    assert_eq!(
        q("SELECT count() FROM sensor.host_tags WHERE label = 'scanner' AND expires > now()"),
        3
    );

    // A restart re-runs nothing: every alert was acknowledged after its steps.
    r.stop();
    let mut r = start_respond(&cfg);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&r.metrics(), "pipeline_respond_alerts_total"),
        0,
        "{}",
        r.metrics()
    );
    assert_eq!(stream_count(&nats.url(), "COMMANDS"), 1);
    r.stop();
}

#[test]
fn dry_run_records_what_it_would_do_and_publishes_no_command() {
    if !have("nats-server") {
        eprintln!("skipping: nats-server not installed");
        return;
    }
    let nats = Nats::start();
    let env = Env::new(BLOCK);
    let mut r = start_respond(&env.config(&nats.url(), None, "dry_run = true", ""));
    publish_lines(
        &nats.url(),
        &[alert("a-dry-1", "s1", "198.51.100.9", 9900001, 2)],
    );
    wait_until("the dry-run record", Duration::from_secs(30), || {
        !respond_records(&nats.url()).is_empty()
    });
    let recs = respond_records(&nats.url());
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["outcome"], "dry_run");
    assert_eq!(recs[0]["target"], "198.51.100.9/32");
    assert_eq!(stream_count(&nats.url(), "COMMANDS"), 0);
    assert_eq!(
        metric(&r.metrics(), "pipeline_respond_commands_published_total"),
        0
    );
    r.stop();
}

#[test]
fn an_alert_storm_is_held_to_the_block_rate() {
    if !have("nats-server") {
        eprintln!("skipping: nats-server not installed");
        return;
    }
    let nats = Nats::start();
    let env = Env::new(BLOCK);
    let n = if full() { 10_000 } else { 2_000 };
    let lines = scanners("storm", n);
    let mut r = start_respond(&env.config(
        &nats.url(),
        None,
        "",
        "max_blocks_per_minute = 50\nmax_active_blocks = 1000",
    ));
    let t = std::time::Instant::now();
    publish_lines(&nats.url(), &lines);
    eprintln!("{n} alerts published in {:?}", t.elapsed());
    wait_until("every alert handled", Duration::from_secs(120), || {
        stream_count(&nats.url(), "ACTIONS") >= n as u64
    });
    let recs = respond_records(&nats.url());
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for rec in &recs {
        *by.entry(rec["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    eprintln!("storm of {n}: {by:?}");
    assert_eq!(by.get("requested"), Some(&50), "{by:?}");
    assert_eq!(by.get("rejected"), Some(&(n - 50)), "{by:?}");
    assert!(recs
        .iter()
        .filter(|r| r["outcome"] == "rejected")
        .all(|r| r["detail"]
            .as_str()
            .unwrap()
            .contains("max_blocks_per_minute")));
    assert_eq!(stream_count(&nats.url(), "COMMANDS"), 50);
    assert_eq!(
        metric(
            &r.metrics(),
            "pipeline_respond_refusals_total{reason=\"rate\"}"
        ),
        (n - 50) as u64
    );
    r.stop();
}

#[test]
fn kill_9_mid_stream_then_restart_runs_each_alerts_playbook_once() {
    if !servers() {
        return;
    }
    let nats = Nats::start();
    let ch = ClickHouse::start();
    let env = Env::new(BLOCK);
    let n = if full() { 5_000 } else { 1_000 };
    let lines = scanners("k", n);
    let cfg = env.config(
        &nats.url(),
        Some(&ch.url()),
        "",
        "max_blocks_per_minute = 100000\nmax_active_blocks = 100000",
    );
    let mut r = start_respond(&cfg);
    publish_lines(&nats.url(), &lines);
    wait_until("a third handled", Duration::from_secs(60), || {
        metric(&r.metrics(), "pipeline_respond_commands_published_total") >= (n / 3) as u64
    });
    r.kill9();
    let r2 = start_respond(&cfg);
    wait_until("every command", Duration::from_secs(120), || {
        stream_count(&nats.url(), "COMMANDS") >= n as u64
    });
    wait_until("every requested record", Duration::from_secs(60), || {
        stream_count(&nats.url(), "ACTIONS") >= n as u64
    });
    std::thread::sleep(Duration::from_secs(1));
    let cmds = verified_commands(&nats.url(), &env, "s1");
    let mut per_alert: BTreeMap<String, usize> = BTreeMap::new();
    for c in &cmds {
        *per_alert.entry(c.alert_id.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(per_alert.len(), n, "every alert blocked");
    assert!(
        per_alert.values().all(|c| *c == 1),
        "an alert blocked twice"
    );
    let requested = respond_records(&nats.url())
        .into_iter()
        .filter(|r| r["outcome"] == "requested")
        .count();
    assert_eq!(requested, n, "one requested record per alert in ACTIONS");
    wait_until("the actions rows", Duration::from_secs(60), || {
        ch.count("SELECT count() FROM sensor.actions") >= n as u64
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ch.count("SELECT count() FROM sensor.actions WHERE outcome = 'requested'"),
        n as u64
    );
    assert_eq!(
        ch.count("SELECT uniqExact(alert_id) FROM sensor.actions"),
        n as u64
    );
    eprintln!(
        "kill test: {} steps redone after the restart found done, {} commands re-sent and recognised",
        metric(&r2.metrics(), "pipeline_respond_steps_done_before_total"),
        metric(&r2.metrics(), "pipeline_respond_commands_duplicate_total")
    );
    drop(r2);
}

const NOTIFY: &str = r#"
[[playbook]]
name = "to-down"
[playbook.trigger]
signature_ids = [1]
[[playbook.step]]
kind = "notify"
url = "DOWN"
timeout = "1s"
retries = 2
backoff = "100ms"
body = { text = "x" }

[[playbook]]
name = "to-slow"
[playbook.trigger]
signature_ids = [2]
[[playbook.step]]
kind = "notify"
url = "RECV/slow"
timeout = "300ms"
retries = 1
backoff = "100ms"
body = { text = "x" }

[[playbook]]
name = "to-flaky"
[playbook.trigger]
signature_ids = [3]
[[playbook.step]]
kind = "notify"
url = "RECV/flaky"
timeout = "2s"
retries = 3
backoff = "100ms"
[playbook.step.body]
text = "{{ alert.signature }} from {{ src_ip }} ({{ playbook }})"
blocks = [{ type = "section", fields = ["sev {{ alert.severity }}"] }]
"#;

#[test]
fn notify_fails_on_a_down_or_slow_receiver_and_succeeds_on_retry_after_a_500() {
    if !have("nats-server") {
        eprintln!("skipping: nats-server not installed");
        return;
    }
    let nats = Nats::start();
    let recv = Receiver::start(vec![
        ("/slow", vec![Answer::Slow(Duration::from_secs(2))]),
        ("/flaky", vec![Answer::Status(500), Answer::Status(200)]),
    ]);
    let down = format!("http://127.0.0.1:{}/hook", testkit::servers::free_port());
    let env = Env::new(&NOTIFY.replace("DOWN", &down).replace("RECV", &recv.url("")));
    let mut r = start_respond(&env.config(&nats.url(), None, "", ""));
    let lines: Vec<String> = (1..=3)
        .map(|sid| alert(&format!("n-{sid}"), "s1", "198.51.100.1", sid, 2))
        .collect();
    publish_lines(&nats.url(), &lines);
    wait_until("three notify records", Duration::from_secs(60), || {
        respond_records(&nats.url()).len() >= 3
    });
    let recs = respond_records(&nats.url());
    let by: BTreeMap<&str, &serde_json::Value> = recs
        .iter()
        .map(|r| (r["playbook"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by["to-down"]["outcome"], "failed");
    assert!(
        by["to-down"]["detail"]
            .as_str()
            .unwrap()
            .contains("after 3 attempts"),
        "{}",
        by["to-down"]
    );
    assert_eq!(by["to-slow"]["outcome"], "failed");
    assert!(
        by["to-slow"]["detail"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{}",
        by["to-slow"]
    );
    assert_eq!(
        recv.count("/slow"),
        2,
        "the slow receiver got the first try and one retry"
    );
    assert_eq!(by["to-flaky"]["outcome"], "applied", "{}", by["to-flaky"]);
    assert!(by["to-flaky"]["detail"]
        .as_str()
        .unwrap()
        .contains("HTTP 200"));
    assert_eq!(
        by["to-flaky"]["target"],
        format!("http://127.0.0.1:{}/...", recv.port)
    );
    assert_eq!(recv.count("/flaky"), 2);
    let body = recv
        .got
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(p, _)| p == "/flaky")
        .unwrap()
        .1
        .clone();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["text"],
        "TEST scan \"quoted\" from 198.51.100.1 (to-flaky)"
    );
    assert_eq!(body["blocks"][0]["fields"][0], "sev 2");
    assert_eq!(
        metric(&r.metrics(), "pipeline_respond_notify_attempts_total"),
        3 + 2 + 2
    );
    assert_eq!(
        metric(
            &r.metrics(),
            "pipeline_respond_steps_total{kind=\"notify\",outcome=\"failed\"}"
        ),
        2
    );
    r.stop();
}

#[test]
fn check_playbooks_and_keygen_and_bad_configs_exit_2_with_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[playbook]]\nname = \"p\"\n[playbook.trigger]\nmin_severity = 9000\n[[playbook.step]]\nkind = \"block\"\nscope = \"everywhere\"\nduration = \"1h\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["check-playbooks", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{}: playbook p: trigger.min_severity: must be 1 to 255",
            bad.display()
        )),
        "{err}"
    );
    assert!(
        lines[1].contains("playbook p: step[0].scope: must be \"origin\" or \"all\""),
        "{err}"
    );
    let shipped = online_support::repo_root().join("config/playbooks");
    let out = run(&["check-playbooks", shipped.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);

    // keygen: a missing folder and an existing key are usage errors.
    let out = run(&["keygen", "--out", dir.path().join("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        run(&["keygen", "--out", dir.path().to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let out = run(&["keygen", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(run(&["keygen"]).status.code(), Some(2));

    // respond: bad configs, a missing key, a bad playbook.
    let key = dir.path().join("command.key");
    for (text, key_name) in [
        ("[nats]\nurl = \"http://x\"\n".to_string(), "nats.url"),
        (
            format!(
                "signing_key = \"{}\"\n",
                dir.path().join("none.key").display()
            ),
            "signing_key",
        ),
        (
            format!(
                "signing_key = \"{}\"\nplaybooks = [\"{}\"]\n",
                key.display(),
                bad.display()
            ),
            "playbooks",
        ),
        (
            format!(
                "signing_key = \"{}\"\nplaybooks = [\"{}\"]\n",
                key.display(),
                shipped.display()
            ),
            "clickhouse.url",
        ),
    ] {
        let p = dir.path().join("respond.toml");
        std::fs::write(&p, text).unwrap();
        let out = run(&["respond", "--config", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key_name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(key_name), "{key_name} not in {err}");
    }
}

#[test]
fn an_operator_request_becomes_one_signed_command_and_a_protected_one_is_refused_and_audited() {
    if !servers() {
        return;
    }
    let nats = Nats::start();
    let ch = ClickHouse::start();
    let env = Env::new(BLOCK);
    let cfg = env.config(
        &nats.url(),
        Some(&ch.url()),
        "sensors = [\"s1\", \"s2\"]",
        "",
    );
    let mut r = start_respond(&cfg);
    let sent = block_request("op-1", "198.51.100.20", "s1");
    let items = vec![
        ("op-1".to_string(), sent.clone()),
        // The same request again under another message id: the done bucket stops it.
        ("op-1-again".to_string(), sent),
        // All sensors, in a protected network: refused for each, audited.
        (
            "op-prot".to_string(),
            block_request("op-prot", "10.99.3.4", ""),
        ),
        (
            "op-wide".to_string(),
            block_request("op-wide", "0.0.0.0/0", "s1"),
        ),
        ("op-junk".to_string(), b"not json".to_vec()),
    ];
    publish_requests(&nats.url(), &items);
    wait_until("all requests handled", Duration::from_secs(60), || {
        metric(&r.metrics(), "pipeline_respond_requests_total") >= 5
    });
    let m = r.metrics();
    assert_eq!(
        metric(&m, "pipeline_respond_requests_malformed_total"),
        1,
        "{m}"
    );
    assert_eq!(metric(&m, "pipeline_respond_steps_done_before_total"), 1);
    assert_eq!(
        metric(&m, "pipeline_respond_refusals_total{reason=\"protected\"}"),
        1
    );

    let cmds = verified_commands(&nats.url(), &env, "s1");
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0].alert_id.as_deref(), Some("a-op-1"));
    assert_eq!(
        cmds[0].action,
        Action::Block {
            cidr: "198.51.100.20/32".parse().unwrap(),
            duration_secs: 3600
        }
    );

    // requested on s1; protected refused on s1 and s2; the wide CIDR refused as invalid.
    let q = |sql: &str| ch.count(sql);
    wait_until(
        "the operator's actions rows",
        Duration::from_secs(60),
        || q("SELECT count() FROM sensor.actions") >= 4,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let all = ch.query("SELECT * FROM sensor.actions FORMAT TSV");
    assert_eq!(q("SELECT count() FROM sensor.actions"), 4, "{all}");
    assert_eq!(
        q(
            "SELECT count() FROM sensor.actions WHERE source = 'console:alice' \
           AND outcome = 'requested' AND target = '198.51.100.20/32' AND sensor_id = 's1' \
           AND id = 'op-1:s1:requested' AND command_id != '' AND alert_id = 'a-op-1'"
        ),
        1,
        "{all}"
    );
    assert_eq!(
        q(
            "SELECT count() FROM sensor.actions WHERE source = 'console:alice' \
           AND outcome = 'rejected' AND detail LIKE '%protected network 10.99.0.0/16%' \
           AND detail LIKE '%reason: seen scanning%'"
        ),
        2,
        "{all}"
    );
    assert_eq!(
        q(
            "SELECT count() FROM sensor.actions WHERE id = 'op-wide::rejected' \
           AND detail LIKE 'target%wider than /16%'"
        ),
        1,
        "{all}"
    );
    r.stop();
}
