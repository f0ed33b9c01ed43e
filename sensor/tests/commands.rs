//! The command channel on the veth, with a real `nats-server -js`: signed commands published on
//! `commands.<sensor_id>` change what the XDP program drops; forged, expired, replayed and
//! malformed ones are refused, counted by cause and recorded, and change nothing; blocks and
//! replay protection survive a restart; `sensor blocklist` works on the running sensor; a
//! backlog of commands is applied in groups, each command once and in order.
//!
//! Needs root (namespace, veth, XDP); skipped with a message otherwise, as the live tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use common::servers::{have, sensor_bin, Nats};
use ed25519_dalek::SigningKey;
use futures_util::StreamExt;
use pipeline_command::{sign, Action, Command, Rejection};
use sensor::command::socket::{request, Request};
use serde_json::Value;
use testkit::live::{field, fixture, normalized, sent_packets, skip, Sensor, Veth};

const SENSOR_ID: &str = "veth-s1";
/// The signed block's duration: long enough to outlive a restart, short for the test.
const BLOCK_SECS: u64 = 35;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn connect_opts() -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::with_user_and_password(Nats::USER.into(), Nats::PASSWORD.into())
}

/// Publishes `bytes` on the sensor's command subject and waits for JetStream to store it.
fn publish(n: &Nats, bytes: Vec<u8>) {
    rt().block_on(async {
        let js = jetstream::new(connect_opts().connect(n.url()).await.unwrap());
        js.publish(pipeline_command::command_subject(SENSOR_ID), bytes.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
}

/// Creates stream `COMMANDS` (as the sensor would) and stores every message of `all` in it,
/// in order, publishing them all before waiting for JetStream's acknowledgements.
fn publish_waiting(n: &Nats, all: Vec<Vec<u8>>) {
    rt().block_on(async {
        let js = jetstream::new(connect_opts().connect(n.url()).await.unwrap());
        js.get_or_create_stream(jetstream::stream::Config {
            name: pipeline_command::COMMANDS_STREAM.into(),
            subjects: vec!["commands.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut acks = Vec::new();
        for bytes in all {
            let subject = pipeline_command::command_subject(SENSOR_ID);
            acks.push(js.publish(subject, bytes.into()).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    });
}

/// Every audit record on `actions.sensor`.
fn actions(n: &Nats) -> Vec<(String, Value)> {
    rt().block_on(async {
        let js = jetstream::new(connect_opts().connect(n.url()).await.unwrap());
        let stream = js.get_stream("ACTIONS").await.unwrap();
        let c = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: "actions.sensor".into(),
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut batch = c
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            out.push((id, serde_json::from_slice(&m.payload).unwrap()));
        }
        out
    })
}

fn now_ms() -> u64 {
    sensor::capture::blocklist::now_ms()
}

fn block(net: &str, secs: u64, issued_ms: u64, validity_ms: u64) -> Command {
    let mut c = Command::new(
        format!("cmd-{net}-{issued_ms}"),
        SENSOR_ID,
        Action::Block {
            cidr: net.parse().unwrap(),
            duration_secs: secs,
        },
        issued_ms,
        validity_ms,
    )
    .unwrap();
    c.alert_id = Some("alert-42".into());
    c
}

/// The blocklist as the running sensor lists it: (cidr, source, remaining, alert).
fn listed(sock: &Path) -> Vec<(String, String, Option<u64>, String)> {
    let r = request(sock, &Request::List).expect("control socket");
    assert!(r.ok, "{r:?}");
    r.entries
        .into_iter()
        .map(|e| {
            (
                e.cidr,
                e.source.as_str().to_string(),
                e.remaining_secs,
                e.alert_id,
            )
        })
        .collect()
}

/// `sensor blocklist ARGS --socket SOCK`: (exit code, stdout, stderr).
fn blocklist_cli(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Proc::new(sensor_bin())
        .arg("blocklist")
        .args(args)
        .arg("--socket")
        .arg(sock)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn metric(s: &Sensor, series: &str) -> u64 {
    s.metric(series).unwrap_or(0)
}

/// A rejection counter; every cause is exported, zero included.
fn rejected(s: &Sensor, cause: &str) -> u64 {
    s.metric(&format!(
        "sensor_commands_rejected_total{{cause=\"{cause}\"}}"
    ))
    .unwrap_or_else(|| panic!("no counter for cause {cause}"))
}

/// Everything a run needs: server, keys, veth, state file, control socket, config.
struct Setup {
    nats: Nats,
    key: SigningKey,
    veth: Veth,
    dir: tempfile::TempDir,
    sock: PathBuf,
    state: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = pipeline_command::keys::generate(dir.path()).unwrap();
        let key = pipeline_command::keys::load_signing_key(&private).unwrap();
        Setup {
            nats: Nats::start(),
            key,
            veth: Veth::new(),
            sock: dir.path().join("control.sock"),
            state: dir.path().join("state/blocklist.json"),
            dir,
        }
    }

    fn start(&self, run_dir: &Path) -> Sensor {
        let toml = format!(
            "[live]\ncontrol_socket = \"{}\"\n[nats]\nuser = \"{}\"\npassword = \"{}\"\n\
             [spool]\ndir = \"{}\"\n[commands]\npublic_key = \"{}\"\nstate_file = \"{}\"\n",
            self.sock.display(),
            Nats::USER,
            Nats::PASSWORD,
            run_dir.join("spool").display(),
            self.dir.path().join("command.pub").display(),
            self.state.display(),
        );
        let url = self.nats.url();
        let mut s = Sensor::start_with_config(
            &self.veth.host,
            run_dir,
            &toml,
            &["--nats", &url, "--sensor-id", SENSOR_ID],
        );
        s.wait_for("commands: consuming", Duration::from_secs(20));
        s
    }
}

/// [`normalized`], without the `host` field (this sensor's id; the replay's is the host name).
fn norm(lines: &[Value]) -> Vec<String> {
    let v: Vec<Value> = lines
        .iter()
        .cloned()
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("host");
            }
            v
        })
        .collect();
    normalized(&v)
}

/// Frames of the flows with an address in `net`, and the records without one.
fn split_by(replayed: &[Value], net: &ipnet::IpNet) -> (u64, Vec<Value>, Vec<Value>) {
    let inside = |v: &Value| {
        ["src_ip", "dest_ip"].iter().any(|k| {
            v[*k]
                .as_str()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| net.contains(&a))
        })
    };
    let frames = replayed
        .iter()
        .filter(|v| v["event_type"] == "flow" && inside(v))
        .map(|v| {
            v["flow"]["pkts_toserver"].as_u64().unwrap()
                + v["flow"]["pkts_toclient"].as_u64().unwrap()
        })
        .sum();
    let (ins, outs) = replayed.iter().cloned().partition(|v| inside(v));
    (frames, ins, outs)
}

/// Whether these tests must be skipped here (the reason is printed).
fn cannot_run() -> bool {
    if skip() {
        return true;
    }
    if !have("nats-server") {
        eprintln!("skipping: nats-server not installed");
        return true;
    }
    false
}

#[test]
fn signed_commands_drive_the_xdp_blocklist_and_bad_ones_change_nothing() {
    if cannot_run() {
        return;
    }
    let files = vec![fixture("tls.pcap")];
    let (replayed, _) = common::replay_to_eve(&files, 1);
    let net: ipnet::IpNet = "198.51.100.8/30".parse().unwrap();
    let (frames, inside, others) = split_by(&replayed, &net);
    assert!(
        frames > 0 && !others.is_empty(),
        "the fixture has flows in and out of {net}"
    );
    let setup = Setup::new();
    let run1 = tempfile::tempdir().unwrap();
    let sensor = setup.start(run1.path());

    // Forged (another key), expired, malformed: refused, counted by cause, nothing blocked.
    let forged = SigningKey::from_bytes(&[7; 32]);
    publish(
        &setup.nats,
        sign(&block("192.0.2.0/24", 60, now_ms(), 30_000), &forged),
    );
    let old = now_ms() - 20 * 60_000;
    publish(
        &setup.nats,
        sign(&block("192.0.2.0/24", 60, old, 60_000), &setup.key),
    );
    publish(&setup.nats, b"{\"payload\":\"not base64!\"}".to_vec());
    wait_until("3 commands", Duration::from_secs(10), || {
        metric(&sensor, "sensor_commands_total{outcome=\"received\"}") == 3
    });
    for cause in Rejection::CAUSES {
        let want = u64::from(["bad_signature", "expired", "malformed"].contains(&cause));
        assert_eq!(rejected(&sensor, cause), want, "cause {cause}");
    }
    assert!(
        listed(&setup.sock).is_empty(),
        "refused commands changed the blocklist"
    );

    // A signed block: in the kernel map within a moment; the same bytes again are a replay.
    let cmd = block(&net.to_string(), BLOCK_SECS, now_ms(), 60_000);
    let genuine = sign(&cmd, &setup.key);
    let t0 = Instant::now();
    publish(&setup.nats, genuine.clone());
    wait_until("the block", Duration::from_secs(10), || {
        !listed(&setup.sock).is_empty()
    });
    eprintln!("command publish -> blocklist entry: {:?}", t0.elapsed());
    let l = listed(&setup.sock);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0].0.as_str(), l[0].1.as_str()),
        ("198.51.100.8/30", "command")
    );
    assert!(l[0].2.is_some_and(|s| s <= BLOCK_SECS), "{l:?}");
    assert_eq!(l[0].3, "alert-42");
    publish(&setup.nats, genuine.clone());
    wait_until("the replay", Duration::from_secs(10), || {
        rejected(&sensor, "replayed") == 1
    });

    // Traffic: the blocked network's frames are dropped in XDP, the others pass.
    let sent = sent_packets(&setup.veth.send(2000, &files));
    sensor.wait_seen(&setup.veth.host, sent);
    let blocked = format!(
        "sensor_xdp_packets_total{{iface=\"{}\",outcome=\"blocked\"}}",
        setup.veth.host
    );
    assert_eq!(metric(&sensor, &blocked), frames);
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("[ok]"), "{log}");
    assert_eq!(field(&log, "blocked"), frames, "{log}");
    assert!(
        log.contains("commands: received=5 applied=1 failed=0 rejected=4 (malformed=1 unsigned=0 bad_signature=1 wrong_sensor=0 expired=1 not_yet_valid=0 too_long=0 replayed=1 cache_full=0)"),
        "{log}"
    );
    assert_eq!(norm(&eve), norm(&others), "only {net} is missing");

    // The audit trail: one record per command message, outcome and cause.
    let recs = actions(&setup.nats);
    let outcomes: Vec<(&str, &str)> = recs
        .iter()
        .map(|(_, v)| {
            (
                v["outcome"].as_str().unwrap(),
                v["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(recs.len(), 5, "{outcomes:?}");
    assert!(outcomes[0].0 == "rejected" && outcomes[0].1.starts_with("bad_signature"));
    assert_eq!(outcomes[1].0, "expired");
    assert!(outcomes[2].0 == "rejected" && outcomes[2].1.starts_with("malformed"));
    assert_eq!(outcomes[3].0, "applied");
    assert!(outcomes[4].0 == "rejected" && outcomes[4].1.starts_with("replayed"));
    for (id, v) in &recs {
        assert_eq!(id, v["id"].as_str().unwrap());
        assert_eq!(v["sensor_id"], SENSOR_ID);
        assert_eq!(v["source"], "sensor");
    }
    assert_eq!(recs[3].1["target"], "198.51.100.8/30");
    assert_eq!(recs[3].1["alert_id"], "alert-42");
    assert_eq!(recs[3].1["command_id"], cmd.id.as_str());

    restart_keeps_the_block_and_refuses_the_replay(&setup, &files, &genuine, frames, &inside);
}

/// A second sensor on the same state file: the block is back, the replay still refused; the
/// operator's commands work; after the block's duration its traffic passes again.
fn restart_keeps_the_block_and_refuses_the_replay(
    setup: &Setup,
    files: &[PathBuf],
    genuine: &[u8],
    frames: u64,
    inside: &[Value],
) {
    let run2 = tempfile::tempdir().unwrap();
    let sensor = setup.start(run2.path());
    let l = listed(&setup.sock);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!((l[0].1.as_str(), l[0].3.as_str()), ("command", "alert-42"));
    publish(&setup.nats, genuine.to_vec());
    wait_until("the replay", Duration::from_secs(10), || {
        rejected(&sensor, "replayed") == 1
    });
    let blocked = format!(
        "sensor_xdp_packets_total{{iface=\"{}\",outcome=\"blocked\"}}",
        setup.veth.host
    );
    let seen = sent_packets(&setup.veth.send(2000, files));
    sensor.wait_seen(&setup.veth.host, seen);
    assert_eq!(
        metric(&sensor, &blocked),
        frames,
        "the restored block drops"
    );

    // Operators: add with and without a lifetime, list, delete; a signed unblock.
    let (code, out, err) = blocklist_cli(&setup.sock, &["add", "203.0.113.0/24", "--secs", "100"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("203.0.113.0/24 blocked for 100 s"), "{out}");
    assert_eq!(blocklist_cli(&setup.sock, &["add", "192.0.2.77"]).0, 0);
    let (_, table, _) = blocklist_cli(&setup.sock, &["list"]);
    for row in [
        "203.0.113.0/24",
        "operator",
        "192.0.2.77/32",
        "never",
        "198.51.100.8/30",
        "alert-42",
    ] {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
    let (code, out, _) = blocklist_cli(&setup.sock, &["del", "203.0.113.0/24"]);
    assert_eq!((code, out.trim()), (0, "unblocked"));
    let (code, _, err) = blocklist_cli(&setup.sock, &["add", "10.0.0.0/33"]);
    assert_eq!(code, 2, "a bad CIDR is a usage error: {err}");
    let unblock = Command::new(
        "unblock-1",
        SENSOR_ID,
        Action::Unblock {
            cidr: "192.0.2.77/32".parse().unwrap(),
        },
        now_ms(),
        60_000,
    )
    .unwrap();
    publish(&setup.nats, sign(&unblock, &setup.key));
    wait_until("the unblock", Duration::from_secs(10), || {
        listed(&setup.sock).len() == 1
    });
    let persisted = std::fs::read_to_string(&setup.state).unwrap();
    assert!(
        !persisted.contains("192.0.2.77") && persisted.contains("198.51.100.8/30"),
        "{persisted}"
    );

    // The command's block runs out: its traffic passes again.
    wait_until("the expiry", Duration::from_secs(BLOCK_SECS + 10), || {
        listed(&setup.sock).is_empty()
    });
    let seen = seen + sent_packets(&setup.veth.send(2000, files));
    sensor.wait_seen(&setup.veth.host, seen);
    assert_eq!(
        metric(&sensor, &blocked),
        frames,
        "nothing more blocked after the expiry"
    );
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("[ok]"), "{log}");
    assert!(
        log.contains("commands: received=2 applied=1 failed=0 rejected=1"),
        "{log}"
    );
    let net: ipnet::IpNet = "198.51.100.8/30".parse().unwrap();
    let (_, live_inside, _) = split_by(&eve, &net);
    assert_eq!(
        norm(&live_inside),
        norm(inside),
        "{net} passes after the expiry"
    );
    // The end of the block is in the audit trail, with the alert that caused it.
    let ended: Vec<Value> = actions(&setup.nats)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == "unblock" && v["target"] == "198.51.100.8/30")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["outcome"], "applied");
    assert_eq!(ended[0]["alert_id"], "alert-42");
    assert!(
        ended[0]["detail"]
            .as_str()
            .unwrap()
            .contains("duration ran out"),
        "{ended:?}"
    );
}

/// Commands that wait in the stream when the sensor starts arrive together and are applied in
/// groups (one state-file write and one round of audit acknowledgements per group): each is
/// still handled once, in stream order (a block then its unblock; a replay within the group
/// refused), and the state file holds them all.
#[test]
fn a_backlog_of_commands_is_applied_in_groups_in_order_once_each() {
    if cannot_run() {
        return;
    }
    let setup = Setup::new();
    let t = now_ms();
    let net = |i: usize| format!("10.99.{i}.0/24");
    let mut all: Vec<Vec<u8>> = (0..120)
        .map(|i| sign(&block(&net(i), 600, t, 60_000), &setup.key))
        .collect();
    let unblock = Command::new(
        "unblock-20",
        SENSOR_ID,
        Action::Unblock {
            cidr: net(20).parse().unwrap(),
        },
        t,
        60_000,
    )
    .unwrap();
    all.insert(100, sign(&unblock, &setup.key));
    let forged = SigningKey::from_bytes(&[7; 32]);
    all.insert(50, sign(&block("192.0.2.0/24", 60, t, 60_000), &forged));
    all.insert(11, all[10].clone());
    // Stream order: blocks 0-10, block 10 again, 11-49, forged, 50-99, unblock 20, 100-119.
    publish_waiting(&setup.nats, all);

    let run = tempfile::tempdir().unwrap();
    let sensor = setup.start(run.path());
    wait_until("123 commands", Duration::from_secs(20), || {
        metric(&sensor, "sensor_commands_total{outcome=\"received\"}") == 123
    });
    let l = listed(&setup.sock);
    let mut want: Vec<String> = (0..120).filter(|i| *i != 20).map(net).collect();
    want.sort();
    let mut got: Vec<String> = l.iter().map(|e| e.0.clone()).collect();
    got.sort();
    assert_eq!(got, want, "every block but the unblocked one");
    assert!(l.iter().all(|e| e.1 == "command"), "{l:?}");
    let (code, log, _) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("commands: received=123 applied=121 failed=0 rejected=2 (malformed=0 unsigned=0 bad_signature=1 wrong_sensor=0 expired=0 not_yet_valid=0 too_long=0 replayed=1 cache_full=0)"),
        "{log}"
    );
    let groups: Vec<usize> = log
        .lines()
        .filter_map(|l| l.split("commands: a group of ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        groups.iter().any(|n| *n > 1) && groups.iter().all(|n| *n <= 64),
        "groups of up to a pull batch: {groups:?}"
    );

    // One audit record per message, in stream order, with its own id.
    let recs = actions(&setup.nats);
    assert_eq!(recs.len(), 123);
    let outcome = |i: usize| {
        let v = &recs[i].1;
        (
            v["outcome"].as_str().unwrap().to_string(),
            v["kind"].as_str().unwrap().to_string(),
            v["target"].as_str().unwrap().to_string(),
        )
    };
    let applied = |kind: &str, i: usize| ("applied".to_string(), kind.to_string(), net(i));
    assert_eq!(outcome(10), applied("block", 10));
    assert_eq!(outcome(11).0, "rejected", "the replay in the same group");
    assert!(recs[11].1["detail"]
        .as_str()
        .unwrap()
        .starts_with("replayed"));
    assert_eq!(outcome(12), applied("block", 11));
    assert_eq!(outcome(51).0, "rejected");
    assert!(recs[51].1["detail"]
        .as_str()
        .unwrap()
        .starts_with("bad_signature"));
    assert_eq!(outcome(101), applied("block", 99));
    assert_eq!(outcome(102), applied("unblock", 20));
    assert_eq!(recs[102].1["detail"], "unblocked");
    assert_eq!(outcome(122), applied("block", 119));
    let ids: std::collections::HashSet<&str> = recs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 123, "ids are distinct");
    assert!(recs.iter().all(|(id, v)| v["id"] == id.as_str()));

    // The state file: the 119 blocks and the 121 accepted commands' nonces.
    let state: Value = serde_json::from_slice(&std::fs::read(&setup.state).unwrap()).unwrap();
    assert_eq!(state["blocks"].as_array().unwrap().len(), 119);
    assert_eq!(state["nonces"].as_array().unwrap().len(), 121);
}

#[test]
fn a_bad_command_key_or_state_file_is_one_config_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bad.pub");
    std::fs::write(&key, "-----BEGIN PUBLIC KEY-----\nAAAA\n").unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{").unwrap();
    for (toml, key_name) in [
        (
            format!("[commands]\npublic_key = \"{}\"\n", key.display()),
            "commands.public_key",
        ),
        (
            format!("[commands]\nstate_file = \"{}\"\n", state.display()),
            "commands.state_file",
        ),
        (
            "[commands]\npublic_key = \"x.pub\"\nstate_file = \"\"\n".to_string(),
            "commands.state_file",
        ),
    ] {
        let cfg = dir.path().join("sensor.toml");
        std::fs::write(&cfg, toml).unwrap();
        let out = Proc::new(sensor_bin())
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(key_name), "{err}");
    }
}
