//! Security of the console: SQL injection attempts through every parameter, CSRF, login rate
//! limiting, sessions after logout, roles, headers, and the read-only ClickHouse user.

mod common;

use common::{fixture, http, login, pct, Client, ADMIN, END, START, VIEWER};
use pipeline_console::config::Config;
use pipeline_console::filter::quote;
use serde_json::json;
use std::net::TcpStream;
use std::time::Duration;

const ATTACKS: &[&str] = &[
    "x' OR 1=1 --",
    "x\\' OR 1=1 --",
    "'; DROP TABLE sensor.flows; --",
    "\\'); DROP TABLE sensor.flows; --",
    "x\u{0}y",
    "x\\",
    "x\" OR \"1\"=\"1",
    "1) OR (1=1",
    "sensor.flows",
    "{db}",
    "%' OR '%'='",
];

fn rows(f: &common::Fixture) -> u64 {
    f.ch.count("SELECT count() FROM sensor.flows")
}

/// Every attempt is either refused (400/404) or treated as a value (200): never a ClickHouse
/// syntax error (502), which would mean the text reached the SQL unparsed.
fn not_sql(c: &Client, path: &str, body: serde_json::Value) {
    let r = c.post(path, &body);
    assert!(
        matches!(r.status, 200 | 400 | 404),
        "{path} {body}: {} {}",
        r.status,
        r.body
    );
}

#[test]
fn injection_attempts_through_every_parameter_stay_values_or_are_refused() {
    let Some(f) = fixture() else { return };
    let before = rows(f);
    let c = login(f.port, ADMIN);
    for a in ATTACKS {
        let quoted = format!("{:?}", a);
        for filter in [
            format!("AppProto = {quoted}"),
            format!("SNI LIKE {quoted}"),
            format!("SNI ILIKE {quoted}"),
            format!("AppProto IN ({quoted}, \"x\")"),
            format!("Sensor != {quoted}"),
            a.to_string(),
        ] {
            for path in [
                "/api/v1/flows",
                "/api/v1/graph/timeseries",
                "/api/v1/filter/validate",
            ] {
                not_sql(
                    &c,
                    path,
                    json!({"start": START, "end": END, "filter": filter}),
                );
            }
            // A quoted attack is a value: it matches nothing.
            if filter.starts_with("AppProto =") {
                let v = c.ok(
                    "/api/v1/flows",
                    json!({"start": START, "end": END, "filter": filter}),
                );
                assert_eq!(v["total"], json!(0.0), "{filter}: {v}");
            }
        }
        let base = json!({"start": START, "end": END});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        not_sql(&c, "/api/v1/graph/timeseries", with("dimension", json!(a)));
        not_sql(&c, "/api/v1/graph/timeseries", with("unit", json!(a)));
        not_sql(
            &c,
            "/api/v1/graph/sankey",
            with("dimensions", json!([a, "AppProto"])),
        );
        not_sql(&c, "/api/v1/top", with("kind", json!(a)));
        not_sql(&c, "/api/v1/flows", with("sort", json!(a)));
        not_sql(&c, "/api/v1/flows", with("order", json!(a)));
        not_sql(&c, "/api/v1/alerts", with("rule", json!(a)));
        not_sql(&c, "/api/v1/alerts", with("addr", json!(a)));
        not_sql(
            &c,
            "/api/v1/filter/complete",
            json!({"filter": format!("AppProto = {quoted}")}),
        );
        not_sql(
            &c,
            "/api/v1/filter/complete",
            json!({"filter": format!("SNI = \"{a}")}),
        );
        let enc: String = a.bytes().map(|b| format!("%{b:02X}")).collect();
        for path in [
            format!("/api/v1/flows/{enc}"),
            format!("/api/v1/flows/1?sensor_id={enc}"),
        ] {
            let r = c.get(&path);
            assert!(
                matches!(r.status, 400 | 404),
                "{path}: {} {}",
                r.status,
                r.body
            );
        }
        let r = c.post(&format!("/api/v1/alerts/{enc}/ack"), &json!({}));
        assert!(
            matches!(r.status, 400 | 404),
            "ack {a}: {} {}",
            r.status,
            r.body
        );
        let r = c.get(&format!("/api/v1/sensors?start={enc}"));
        assert_eq!(r.status, 400, "{}", r.body);
    }
    assert_eq!(rows(f), before);
    // (a-2 is acknowledged by the roles test, which may run meanwhile.)
    assert_eq!(
        f.ch.count("SELECT count() FROM console.alert_acks WHERE alert_id != 'a-2'"),
        0
    );
}

#[test]
fn the_one_quoting_function_round_trips_through_the_server() {
    let Some(f) = fixture() else { return };
    let mut all: Vec<String> = ATTACKS.iter().map(|s| s.to_string()).collect();
    all.push((0u8..128).map(char::from).collect());
    all.push("ünïcødé ✓ \u{7f}\t\r\n".into());
    for s in all {
        let out = testkit::console::query_as(
            &f.ch,
            testkit::console::READER,
            testkit::console::READER_PASSWORD,
            &format!("SELECT {} AS v FORMAT JSONEachRow", quote(&s)),
        )
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["v"], s);
    }
}

#[test]
fn state_changes_need_the_csrf_token_of_the_session() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let other = login(f.port, VIEWER);
    let body = json!({"filter": "DstPort = 1"}).to_string();
    let ct = ("Content-Type", "application/json");
    for headers in [
        vec![("Cookie", c.cookie.as_str()), ct],
        vec![("Cookie", c.cookie.as_str()), ct, ("X-CSRF-Token", "00")],
        vec![
            ("Cookie", c.cookie.as_str()),
            ct,
            ("X-CSRF-Token", other.csrf.as_str()),
        ],
    ] {
        for path in [
            "/api/v1/filter/validate",
            "/api/v1/logout",
            "/api/v1/alerts/a-1/ack",
            "/api/v1/views",
            "/api/v1/block",
        ] {
            let r = http(f.port, "POST", path, &headers, Some(&body));
            assert_eq!(r.status, 403, "{path}: {}", r.body);
            assert!(r.json()["error"].as_str().unwrap().contains("X-CSRF-Token"));
        }
        let r = http(f.port, "DELETE", "/api/v1/views/any", &headers, None);
        assert_eq!(r.status, 403, "DELETE view: {}", r.body);
    }
    // Reads that need a session: the saved views and the live alerts' event stream.
    for path in ["/api/v1/views", "/api/v1/alerts/stream"] {
        assert_eq!(http(f.port, "GET", path, &[], None).status, 401, "{path}");
    }
    assert_eq!(
        c.post("/api/v1/filter/validate", &json!({"filter": ""}))
            .status,
        200
    );
    // Without a session at all: 401, for reads too.
    assert_eq!(http(f.port, "GET", "/api/v1/me", &[], None).status, 401);
    assert_eq!(
        http(f.port, "POST", "/api/v1/flows", &[ct], Some("{}")).status,
        401
    );
}

#[test]
fn a_session_is_dead_after_logout() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, VIEWER);
    assert_eq!(c.get("/api/v1/me").json()["role"], "viewer");
    assert_eq!(c.post("/api/v1/logout", &json!({})).status, 204);
    assert_eq!(c.get("/api/v1/me").status, 401);
    assert_eq!(
        c.post("/api/v1/flows", &json!({"start": START, "end": END}))
            .status,
        401
    );
}

#[test]
fn a_viewer_cannot_block_and_nothing_is_published() {
    let Some(f) = fixture() else { return };
    let v = login(f.port, VIEWER);
    let body = json!({"target": "198.51.100.9", "duration_secs": 3600, "sensor": "t1"});
    let r = v.post("/api/v1/block", &body);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "admin role required");
    // An admin without the CSRF header of the session is refused too.
    let a = login(f.port, ADMIN);
    let b = body.to_string();
    let headers = [
        ("Cookie", a.cookie.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = http(f.port, "POST", "/api/v1/block", &headers, Some(&b));
    assert_eq!(r.status, 403, "{}", r.body);
    // Without a session: 401.
    let r = http(f.port, "POST", "/api/v1/block", &headers[1..], Some(&b));
    assert_eq!(r.status, 401, "{}", r.body);
    if let Some(n) = &f.nats {
        let msgs = common::block_on(common::requests(&n.url()));
        assert!(msgs.is_empty(), "{msgs:?}");
    }
    // Reading an outcome needs a session, and an id that is an id.
    assert_eq!(
        http(f.port, "GET", "/api/v1/block/abc", &[], None).status,
        401
    );
    for bad in ["a%27%20OR%201%3D1", "x.y", "..%2F..%2Fetc"] {
        let r = v.get(&format!("/api/v1/block/{bad}"));
        assert!(
            matches!(r.status, 400 | 404),
            "{bad}: {} {}",
            r.status,
            r.body
        );
    }
    for a in ATTACKS {
        let path = format!("/api/v1/alerts/{}/actions", pct(a));
        let r = v.get(&path);
        assert!(
            matches!(r.status, 200 | 400 | 404),
            "{a}: {} {}",
            r.status,
            r.body
        );
    }
}

#[test]
fn a_viewer_cannot_acknowledge_an_admin_can() {
    let Some(f) = fixture() else { return };
    let v = login(f.port, VIEWER);
    let r = v.post("/api/v1/alerts/a-2/ack", &json!({}));
    assert_eq!(r.status, 403, "{}", r.body);
    let a = login(f.port, ADMIN);
    assert_eq!(a.post("/api/v1/alerts/a-2/ack", &json!({})).status, 204);
    assert_eq!(a.post("/api/v1/alerts/nope/ack", &json!({})).status, 404);
    let list = a.ok("/api/v1/alerts", json!({"start": START, "end": END}));
    assert_eq!(list["available"], true);
    assert_eq!(list["total"], json!(2.0));
    let a2 = list["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert_id"] == "a-2")
        .unwrap();
    assert_eq!(a2["acked_by"], "alice");
    let unacked = a.ok(
        "/api/v1/alerts",
        json!({"start": START, "end": END, "acked": false, "severity": [2]}),
    );
    assert_eq!(unacked["rows"][0]["alert_id"], "a-1");
    let by_addr = a.ok(
        "/api/v1/alerts",
        json!({"start": START, "end": END, "addr": "10.0.0.2"}),
    );
    assert_eq!(by_addr["total"], json!(1.0));
    // Cleared filter boxes (empty rule and address, as the page sends them) filter nothing.
    let cleared = a.ok(
        "/api/v1/alerts",
        json!({"start": START, "end": END, "rule": "", "addr": ""}),
    );
    assert_eq!(cleared["total"], json!(2.0));
    // One alert by id (the detail page); a hostile id is a value that matches nothing.
    let one = a.ok(
        "/api/v1/alerts",
        json!({"start": 1, "end": END, "id": "a-1"}),
    );
    assert_eq!(
        (one["total"].clone(), one["rows"][0]["alert_id"].clone()),
        (json!(1.0), json!("a-1"))
    );
    let none = a.ok(
        "/api/v1/alerts",
        json!({"start": 1, "end": END, "id": "a-1' OR 1 = 1 --"}),
    );
    assert_eq!(none["total"], json!(0.0));
}

#[test]
fn wrong_passwords_lock_the_login_out_even_for_the_right_one() {
    let Some(f) = fixture() else { return };
    // A console of its own: the lockout also covers the client address, shared by all tests.
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::servers::free_port();
    let cfg = Config::parse(&common::config_text(&f.ch, port, dir.path())).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _ = rt.block_on(pipeline_console::api::serve(cfg));
    });
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let try_login = |pw: &str| {
        let body = json!({"username": ADMIN.0, "password": pw}).to_string();
        http(
            port,
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            Some(&body),
        )
    };
    for _ in 0..5 {
        assert_eq!(try_login("wrong").status, 401);
    }
    let r = try_login(ADMIN.1);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    // Not JSON: refused before any password check.
    let r = http(
        port,
        "POST",
        "/api/v1/login",
        &[],
        Some("username=a&password=b"),
    );
    assert_eq!(r.status, 415);
}

#[test]
fn answers_carry_security_headers_and_a_strict_session_cookie() {
    let Some(f) = fixture() else { return };
    let body = json!({"username": ADMIN.0, "password": ADMIN.1}).to_string();
    let r = http(
        f.port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(&body),
    );
    let cookie = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let page = http(f.port, "GET", "/visualize", &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>console</title>"));
    for r in [&r, &page, &http(f.port, "GET", "/api/v1/nope", &[], None)] {
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
    }
    assert_eq!(http(f.port, "GET", "/api/v1/nope", &[], None).status, 404);
}

#[test]
fn the_console_clickhouse_user_cannot_write() {
    let Some(f) = fixture() else { return };
    let r = testkit::console::query_as(
        &f.ch,
        testkit::console::READER,
        testkit::console::READER_PASSWORD,
        "INSERT INTO sensor.flows (flow_id) VALUES (1)",
    );
    assert!(r.unwrap_err().contains("readonly"));
    let w = testkit::console::query_as(
        &f.ch,
        testkit::console::WRITER,
        testkit::console::WRITER_PASSWORD,
        "INSERT INTO sensor.flows (flow_id) VALUES (1)",
    );
    assert!(w.is_err(), "the writer is limited to the console database");
}
