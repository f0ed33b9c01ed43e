//! Browser tests: Debian's headless Chromium, driven through ChromeDriver (WebDriver, with the
//! `fantoccini` client), against a real `pipeline console` over a real clickhouse-server filled
//! by a real `sensor replay --clickhouse` of the bundled fixtures.
//!
//! What a NOC operator does: log in; Visualize draws one series per top value (checked against
//! ClickHouse); a Sankey draws its nodes; typing in the filter box offers completions, and the
//! completed filter applies; a top-N row opens Visualize filtered on it; a flow's detail lists
//! its HTTP and DNS events; the alerts page answers (alerts when the `alerts` table exists); a
//! viewer has no acknowledge button and the API refuses the viewer's acknowledgement; an admin
//! blocks an alert's addresses through `pipeline respond` (one signed command, one refusal by
//! a guard rail), and a viewer has no block button.
//!
//! Each test saves a screenshot under `target/console-screenshots/`. Without `chromium` or
//! `chromedriver` on PATH the tests print why and pass without running (CI installs both through
//! scripts/setup.sh). The browser sessions run one at a time (a mutex): Chromium is heavy on
//! two cores, and the tests then do not disturb each other's timings.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use testkit::console as console_users;
use testkit::servers::{free_port, have, ClickHouse, Nats, Proc};

const ADMIN: (&str, &str) = ("alice", "alice-pw-3am");
const VIEWER: (&str, &str) = ("victor", "victor-pw-3am");
/// Longest wait for something to appear on the page.
const WAIT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the test binaries live (`target/release`), so the `sensor` binary is found beside them.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf()
}

/// The `sensor` binary; built when a `cargo test -p pipeline-console` run did not build it.
fn sensor_bin() -> PathBuf {
    let bin = target_dir().join("sensor");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = target_dir().ends_with("release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "sensor", "--bin", "sensor"])
            .current_dir(repo_root());
        if release {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo build").success(),
            "building sensor"
        );
    }
    bin
}

/// Why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    for bin in [
        "chromium",
        "chromedriver",
        "clickhouse-server",
        "nats-server",
    ] {
        if !have(bin) {
            return Some(format!(
                "{bin} is not installed (scripts/setup.sh installs it)"
            ));
        }
    }
    if !web_root().join("index.html").is_file() {
        if !have("npm") {
            return Some("the web UI is not built and npm is missing (scripts/setup.sh)".into());
        }
        let web = repo_root().join("pipeline/console/web");
        let ok = |args: &[&str]| {
            Command::new("npm")
                .args(args)
                .current_dir(&web)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !(web.join("node_modules").is_dir() || ok(&["ci", "--no-audit", "--no-fund"]))
            || !ok(&["run", "--silent", "build"])
        {
            return Some("building the web UI failed (npm run build)".into());
        }
    }
    None
}

fn web_root() -> PathBuf {
    repo_root().join("pipeline/console/web/dist")
}

/// ClickHouse filled by a replay of the fixtures, and a console over it.
struct Env {
    ch: ClickHouse,
    /// JetStream with the `ALERTS` stream the console reads live alerts from.
    nats: Nats,
    /// The alerts `pipeline detect`'s engine raised on the attack captures (EVE lines), stored
    /// in `sensor.alerts` by its ClickHouse sink.
    attack_alerts: Vec<Value>,
    console: String,
    /// The replayed data's time range (unix seconds), for the pages' URLs.
    start: u64,
    end: u64,
    driver: Mutex<Option<Driver>>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let ch = ClickHouse::start();
        replay_fixtures(&ch);
        let nats = Nats::start();
        let attack_alerts = store_attack_alerts(&ch);
        block_on(alerts_stream(&nats.url()));
        let range = ch
            .query("SELECT toUInt32(min(ts)), toUInt32(max(ts)) + 60 FROM sensor.flows FORMAT TSV");
        let mut it = range
            .split_whitespace()
            .map(|v| v.parse::<u64>().expect("ts"));
        let (start, end) = (it.next().expect("min"), it.next().expect("max"));
        // The page asks for whole steps; a margin keeps the data inside the range.
        let (start, end) = (start - start % 3600, end + 3600 - end % 3600);
        let console = start_console(&ch, &nats);
        Env {
            ch,
            nats,
            attack_alerts,
            console,
            start,
            end,
            driver: Mutex::new(None),
        }
    })
}

fn replay_fixtures(ch: &ClickHouse) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[spool]\ndir = \"{}\"\n",
            dir.path().join("spool").display()
        ),
    )
    .expect("sensor config");
    let pcaps = repo_root().join("testdata-pcaps");
    let out = Command::new(sensor_bin())
        .arg("replay")
        .args(
            ["tls", "http", "dns", "quic", "ipv6_vlan", "tunnels"]
                .map(|n| pcaps.join(format!("{n}.pcap"))),
        )
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--eve",
            "/dev/null",
            "--quiet",
        ])
        .args(["--clickhouse", &ch.url(), "--sensor-id", "browser-test"])
        .output()
        .expect("sensor replay");
    assert!(
        out.status.success(),
        "sensor replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ch.count("SELECT count() FROM sensor.flows") > 0,
        "no flows stored"
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The shipped rules' alerts on attack captures, as `pipeline detect --eve` finds them (its
/// engine over `sensor replay`'s EVE output), stored by `pipeline detect`'s ClickHouse sink.
fn detect_alerts(captures: &[&str], sensor_id: &str, ch: Option<&ClickHouse>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("sensor.toml");
    let spool = dir.path().join("spool");
    std::fs::write(&cfg, format!("[spool]\ndir = \"{}\"\n", spool.display())).expect("config");
    let eve = dir.path().join("eve.json");
    let mut cmd = Command::new(sensor_bin());
    cmd.arg("replay")
        .args(
            captures
                .iter()
                .map(|n| repo_root().join("testdata-pcaps/attacks").join(n)),
        )
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--quiet",
            "--sensor-id",
            sensor_id,
        ])
        .arg("--eve")
        .arg(&eve);
    if let Some(ch) = ch {
        cmd.args(["--clickhouse", &ch.url()]);
    }
    let out = cmd.output().expect("sensor replay");
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = pipeline_detect::offline::load_rules(&[repo_root().join("config/rules")])
        .expect("the shipped rules load");
    let intel = pipeline_detect::IntelSet::load(&[]).expect("no intel");
    let cfg = pipeline_detect::EngineConfig {
        sensor_id: sensor_id.into(),
        ..Default::default()
    };
    let mut engine = pipeline_detect::Engine::new(rules, intel, cfg);
    let input = std::io::BufReader::new(std::fs::File::open(&eve).expect("eve"));
    let mut lines = Vec::new();
    pipeline_detect::offline::run(&mut engine, input, &mut lines, 1.0).expect("detection");
    let text = String::from_utf8(lines).expect("utf-8 alerts");
    text.lines().map(str::to_string).collect()
}

/// Alerts of two attack captures, written to `sensor.alerts` by the pipeline's own sink.
fn store_attack_alerts(ch: &ClickHouse) -> Vec<Value> {
    use sensor::export::sink::Sink;
    // One replay per capture: each starts at the same instant, as the detect CLI's test runs them.
    let lines: Vec<String> = ["ssh_bruteforce.pcap", "tcp_scan_noreply.pcap"]
        .iter()
        .flat_map(|c| detect_alerts(&[*c], "attack-sensor", Some(ch)))
        .collect();
    assert!(
        lines.len() >= 3,
        "expected alerts from the attack captures: {lines:?}"
    );
    let mut cfg = pipeline_detect::online::config::OnlineConfig::default();
    cfg.clickhouse.url = ch.url();
    let mut sink = pipeline_detect::online::sinks::AlertsTable::new(&cfg).expect("alerts sink");
    let payload = lines.join("\n") + "\n";
    block_on(async {
        sink.prepare().await.expect("alerts table");
        sink.send(lines.len() as u32, payload.as_bytes())
            .await
            .expect("alerts stored");
    });
    assert_eq!(
        ch.count("SELECT count() FROM sensor.alerts FINAL") as usize,
        lines.len()
    );
    lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect()
}

async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let c = async_nats::ConnectOptions::new()
        .user_and_password(Nats::USER.into(), Nats::PASSWORD.into())
        .connect(url)
        .await
        .expect("nats");
    async_nats::jetstream::new(c)
}

/// Stream `ALERTS` on `alerts.>`, as `pipeline detect --config` makes it.
async fn alerts_stream(url: &str) {
    jetstream(url)
        .await
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "ALERTS".into(),
            subjects: vec!["alerts.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream ALERTS");
}

/// Publishes an alert line as `pipeline detect` does: `alerts.<sensor>.<severity>`, its id as
/// `Nats-Msg-Id`.
async fn publish_alert(url: &str, line: &str) {
    let v: Value = serde_json::from_str(line).expect("alert");
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", v["alert"]["id"].as_str().expect("id"));
    let subject = format!(
        "alerts.{}.{}",
        v["sensor_id"].as_str().unwrap_or("-"),
        v["alert"]["severity"]
    );
    jetstream(url)
        .await
        .publish_with_headers(subject, h, line.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stream ack");
}

/// Starts the console (the library's `serve`, as `pipeline console serve` runs it) on a free
/// port, on its own thread and runtime, reading as the read-only ClickHouse user and writing
/// only its own database; returns its base URL once it answers.
fn start_console(ch: &ClickHouse, nats: &Nats) -> String {
    console_users::add_users(ch);
    let port = free_port();
    let hash = |pw: &str| pipeline_console::auth::hash_password(pw).expect("argon2 hash");
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
web_root = "{web}"
[clickhouse]
url = "{url}"
user = "{reader}"
password = "{reader_pw}"
writer_user = "{writer}"
writer_password = "{writer_pw}"
[[users]]
name = "{an}"
role = "admin"
password_hash = "{ah}"
[[users]]
name = "{vn}"
role = "viewer"
password_hash = "{vh}"
[nats]
url = "{nats_url}"
user = "{nats_user}"
password = "{nats_pw}"
[[sensors]]
id = "browser-test"
metrics_url = "http://127.0.0.1:{down}/metrics"
"#,
        nats_url = nats.url(),
        nats_user = Nats::USER,
        nats_pw = Nats::PASSWORD,
        down = free_port(),
        web = web_root().display(),
        url = ch.url(),
        reader = console_users::READER,
        reader_pw = console_users::READER_PASSWORD,
        writer = console_users::WRITER,
        writer_pw = console_users::WRITER_PASSWORD,
        an = ADMIN.0,
        ah = hash(ADMIN.1),
        vn = VIEWER.0,
        vh = hash(VIEWER.1),
    );
    let cfg = pipeline_console::config::Config::parse(&toml).expect("console config");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let why = match rt.block_on(pipeline_console::api::serve(cfg)) {
            Ok(()) => "stopped".to_string(),
            Err(pipeline_console::api::ServeError::Config(e))
            | Err(pipeline_console::api::ServeError::Runtime(e)) => e,
        };
        panic!("the console stopped: {why}");
    });
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < WAIT, "the console did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    base
}

/// A running chromedriver under the servers' watchdog: it lives in a `static` that is never
/// dropped, and the watchdog kills it when the test process ends.
struct Driver {
    _proc: Proc,
    url: String,
}

fn driver(env: &Env) -> MutexGuard<'_, Option<Driver>> {
    let mut g = env.driver.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        let port = free_port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chromedriver.log");
        let proc = Proc::spawn(&format!("chromedriver --port={port}"), &log);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < WAIT, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        *g = Some(Driver {
            _proc: proc,
            url: format!("http://127.0.0.1:{port}"),
        });
    }
    g
}

/// A browser session with a fresh profile directory, the flags the brief names.
async fn browser(driver_url: &str, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("a WebDriver session with chromium")
}

/// Runs one browser test: skips with a message when the browser is missing, else runs `f` with
/// a fresh session, and closes the session even when `f` fails.
fn run<F, Fut>(name: &str, f: F)
where
    F: FnOnce(&'static Env, Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    if let Some(why) = missing() {
        eprintln!("SKIP {name}: {why}");
        return;
    }
    let env = env();
    let guard = driver(env);
    let url = guard.as_ref().expect("driver").url.clone();
    let profile = tempfile::tempdir().expect("profile dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        let c = browser(&url, profile.path()).await;
        let r = f(env, c.clone()).await;
        if r.is_err() {
            let _ = screenshot(&c, &format!("{name}-FAILED")).await;
        }
        let _ = c.close().await;
        r
    });
    drop(guard);
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// Saves a PNG of the page under target/console-screenshots/.
async fn screenshot(c: &Client, name: &str) -> Result<PathBuf, String> {
    let dir = repo_root().join("target/console-screenshots");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let png = c.screenshot().await.map_err(|e| e.to_string())?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).map_err(|e| e.to_string())?;
    eprintln!("screenshot: {}", path.display());
    Ok(path)
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Polls a JavaScript expression until it returns something truthy (its value), or fails.
async fn wait_js(c: &Client, what: &str, expr: &str) -> Result<Value, String> {
    let start = Instant::now();
    loop {
        let v = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .map_err(err(what))?;
        let truthy = !matches!(&v, Value::Null | Value::Bool(false))
            && v.as_str() != Some("")
            && v.as_u64() != Some(0);
        if truthy {
            return Ok(v);
        }
        if start.elapsed() > WAIT {
            let page = c
                .execute(
                    "return document.getElementById('app').innerText.slice(0, 600);",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            return Err(format!(
                "timed out waiting for {what}; the page says: {page}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens the console and logs in through the form; waits for the navigation bar.
async fn login(c: &Client, env: &Env, who: (&str, &str), path: &str) -> Result<(), String> {
    c.goto(&format!("{}{path}", env.console))
        .await
        .map_err(err("open"))?;
    let user = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input[name=username]"))
        .await
        .map_err(err("the login form"))?;
    user.send_keys(who.0).await.map_err(err("type user"))?;
    let pass = c
        .find(Locator::Css("input[name=password]"))
        .await
        .map_err(err("password field"))?;
    pass.send_keys(who.1).await.map_err(err("type password"))?;
    c.find(Locator::Css("form.login button[type=submit]"))
        .await
        .map_err(err("login button"))?
        .click()
        .await
        .map_err(err("click login"))?;
    wait_js(
        c,
        "the navigation bar after login",
        "document.querySelector('nav.top .who')?.innerText",
    )
    .await?;
    Ok(())
}

/// Waits until the main chart has drawn (ECharts' `finished`) and returns its dataset.
async fn drawn(c: &Client) -> Result<Value, String> {
    wait_js(
        c,
        "the chart to be drawn",
        "(() => { const el = document.getElementById('main-chart'); return el && el.dataset.drawn ? Object.assign({}, el.dataset) : null })()",
    )
    .await
}

/// How many painted pixels the chart's canvas has (a blank chart has none).
async fn painted(c: &Client) -> Result<u64, String> {
    let v = c
        .execute(
            "const cv = document.querySelector('#main-chart canvas'); if (!cv) return 0; \
             const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; \
             let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;",
            vec![],
        )
        .await
        .map_err(err("read the canvas"))?;
    Ok(v.as_u64().unwrap_or(0))
}

fn range(env: &Env) -> String {
    format!("start={}&end={}", env.start, env.end)
}

#[test]
fn browser_login_then_visualize_draws_one_series_per_top_value() {
    run("visualize", |env, c| async move {
        let limit = 3;
        let path = format!(
            "/visualize?{}&chart=stacked&unit=bytes&dims=AppProto&limit={limit}",
            range(env)
        );
        login(&c, env, ADMIN, &path).await?;
        let ds = drawn(&c).await?;
        let distinct = env.ch.count(&format!(
            "SELECT uniqExact(app_proto) FROM sensor.flows WHERE ts >= {} AND ts < {}",
            env.start, env.end
        ));
        let expected = distinct.min(limit) + u64::from(distinct > limit);
        let series: u64 = ds["drawnSeries"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let rows = c
            .execute(
                "return document.querySelectorAll('.stats-table tbody tr').length;",
                vec![],
            )
            .await
            .map_err(err("count table rows"))?;
        let px = painted(&c).await?;
        screenshot(&c, "visualize").await?;
        if series != expected || rows.as_u64() != Some(expected) || px < 1000 {
            return Err(format!(
                "expected {expected} series ({distinct} app protocols, top {limit} + Other), drew {series}, table rows {rows}, {px} painted pixels"
            ));
        }
        Ok(())
    });
}

#[test]
fn browser_sankey_draws_its_nodes() {
    run("sankey", |env, c| async move {
        let path = format!(
            "/visualize?{}&chart=sankey&unit=flows&dims=AppProto,DstPort&limit=5",
            range(env)
        );
        login(&c, env, ADMIN, &path).await?;
        let ds = drawn(&c).await?;
        let nodes: u64 = ds["drawnNodes"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let from_api: u64 = ds["nodes"].as_str().unwrap_or("0").parse().unwrap_or(0);
        let links = c
            .execute(
                "return document.querySelectorAll('.stats-table tbody tr').length;",
                vec![],
            )
            .await
            .map_err(err("count link rows"))?;
        let px = painted(&c).await?;
        screenshot(&c, "sankey").await?;
        if nodes < 3 || nodes != from_api || links.as_u64().unwrap_or(0) < 2 || px < 1000 {
            return Err(format!(
                "sankey: {nodes} nodes drawn, {from_api} from the API, {links} links, {px} painted pixels"
            ));
        }
        Ok(())
    });
}

#[test]
fn browser_filter_completes_field_and_value_then_applies() {
    run("filter", |env, c| async move {
        let path = format!(
            "/visualize?{}&chart=stacked&dims=AppProto&limit=10",
            range(env)
        );
        login(&c, env, ADMIN, &path).await?;
        drawn(&c).await?;
        let input = c
            .find(Locator::Css("input.filter"))
            .await
            .map_err(err("filter box"))?;
        input.click().await.map_err(err("focus filter"))?;
        input.send_keys("AppPr").await.map_err(err("type"))?;
        wait_js(&c, "a completion for AppPr", "[...document.querySelectorAll('.completions li .label')].some(e => e.innerText === 'AppProto')").await?;
        screenshot(&c, "filter-completion").await?;
        input.send_keys("\u{E004}").await.map_err(err("Tab"))?; // Tab accepts the selection
        input.send_keys("= ").await.map_err(err("type ="))?;
        let value = wait_js(&c, "value completions after AppProto =", "[...document.querySelectorAll('.completions li.value .label')].map(e => e.innerText).find(v => /http/.test(v))").await?;
        let label = value.as_str().unwrap_or_default().to_string();
        // Pick the http value with the arrow keys, then Tab.
        let idx = c
            .execute(&format!("return [...document.querySelectorAll('.completions li .label')].findIndex(e => e.innerText === {});", json!(label)), vec![])
            .await
            .map_err(err("find value"))?
            .as_u64()
            .unwrap_or(0);
        for _ in 0..idx {
            input
                .send_keys("\u{E015}")
                .await
                .map_err(err("ArrowDown"))?;
        }
        input.send_keys("\u{E004}").await.map_err(err("Tab"))?;
        let typed = input
            .prop("value")
            .await
            .map_err(err("value"))?
            .unwrap_or_default();
        input.send_keys("\u{E007}").await.map_err(err("Enter"))?;
        let url = wait_js(
            &c,
            "the filter in the URL",
            "new URLSearchParams(location.search).get('filter')",
        )
        .await?;
        let ds = drawn(&c).await?;
        let series = ds["drawnSeries"].as_str().unwrap_or("0").to_string();
        screenshot(&c, "filter-applied").await?;
        if !typed.starts_with("AppProto = ")
            || !typed.contains("http")
            || url.as_str() != Some(typed.trim())
            || series != "1"
        {
            return Err(format!(
                "typed {typed:?}, URL filter {url}, {series} series drawn (expected 1)"
            ));
        }
        Ok(())
    });
}

#[test]
fn browser_invalid_filter_shows_inline_error_and_is_not_applied() {
    run("filter-error", |env, c| async move {
        let path = format!("/visualize?{}", range(env));
        login(&c, env, ADMIN, &path).await?;
        let input = c
            .find(Locator::Css("input.filter"))
            .await
            .map_err(err("filter box"))?;
        input.send_keys("AppProto = ").await.map_err(err("type"))?;
        input.send_keys("\u{E007}").await.map_err(err("Enter"))?;
        let msg = wait_js(
            &c,
            "the inline error",
            "document.querySelector('.filter-error:not(.hidden)')?.innerText",
        )
        .await?;
        screenshot(&c, "filter-error").await?;
        let url = c.current_url().await.map_err(err("url"))?;
        if url.as_str().contains("filter=") {
            return Err(format!("an invalid filter reached the URL: {url}"));
        }
        if !msg.as_str().unwrap_or("").contains("at character") {
            return Err(format!("the error does not say where: {msg}"));
        }
        Ok(())
    });
}

#[test]
fn browser_top_row_opens_visualize_filtered_on_it() {
    run("top", |env, c| async move {
        login(
            &c,
            env,
            ADMIN,
            &format!("/top?kind=server_names&{}", range(env)),
        )
        .await?;
        let first = wait_js(
            &c,
            "a top row",
            "document.querySelector('a.top-link')?.innerText",
        )
        .await?;
        screenshot(&c, "top-server-names").await?;
        c.find(Locator::Css("a.top-link"))
            .await
            .map_err(err("row link"))?
            .click()
            .await
            .map_err(err("click"))?;
        wait_js(
            &c,
            "the visualize page",
            "location.pathname === '/visualize'",
        )
        .await?;
        let ds = drawn(&c).await?;
        let filter = c
            .execute(
                "return new URLSearchParams(location.search).get('filter');",
                vec![],
            )
            .await
            .map_err(err("filter"))?;
        let boxed = c
            .find(Locator::Css("input.filter"))
            .await
            .map_err(err("box"))?
            .prop("value")
            .await
            .map_err(err("value"))?;
        screenshot(&c, "top-to-visualize").await?;
        let name = first.as_str().unwrap_or_default();
        let f = filter.as_str().unwrap_or_default();
        if !f.contains(&format!("\"{name}\""))
            || boxed.as_deref() != Some(f)
            || ds["drawnSeries"].as_str() == Some("0")
        {
            return Err(format!(
                "row {name:?} led to filter {f:?} (box {boxed:?}), chart {ds}"
            ));
        }
        Ok(())
    });
}

#[test]
fn browser_flow_detail_shows_its_http_and_dns_events() {
    run("flow-detail", |env, c| async move {
        for (app, section) in [("http", "HTTP requests"), ("dns", "DNS")] {
            let filter = format!("AppProto = \"{app}\"");
            let q = format!("/flows?{}&filter={}", range(env), urlencode(&filter));
            if app == "http" {
                login(&c, env, ADMIN, &q).await?;
            } else {
                c.goto(&format!("{}{q}", env.console))
                    .await
                    .map_err(err("open flows"))?;
            }
            wait_js(
                &c,
                "flow rows",
                "document.querySelectorAll('a.flow-link').length",
            )
            .await?;
            screenshot(&c, &format!("flows-{app}")).await?;
            c.find(Locator::Css("a.flow-link"))
                .await
                .map_err(err("flow link"))?
                .click()
                .await
                .map_err(err("click"))?;
            let flow_id = wait_js(
                &c,
                "the detail page",
                "location.pathname.startsWith('/flows/') && location.pathname.split('/')[2]",
            )
            .await?;
            let heading = wait_js(&c, "the events", &format!("[...document.querySelectorAll('section.events h2')].map(h => h.innerText).find(t => t.startsWith({}))", json!(section))).await?;
            screenshot(&c, &format!("flow-detail-{app}")).await?;
            let table = if app == "http" {
                "http_requests"
            } else {
                "dns_queries"
            };
            let expected = env.ch.count(&format!(
                "SELECT count() FROM sensor.{table} WHERE flow_id = {}",
                flow_id.as_str().unwrap_or("0")
            ));
            let shown = heading.as_str().unwrap_or_default().to_string();
            if expected == 0 || shown != format!("{section} ({expected})") {
                return Err(format!(
                    "flow {flow_id}: page says {shown:?}, ClickHouse has {expected} {table} rows"
                ));
            }
        }
        Ok(())
    });
}

#[test]
fn browser_alerts_page_lists_alerts_or_says_there_is_no_table() {
    run("alerts", |env, c| async move {
        login(&c, env, ADMIN, &format!("/alerts?{}", range(env))).await?;
        let has_table = env.ch.count(
            "SELECT count() FROM system.tables WHERE database = 'sensor' AND name = 'alerts'",
        ) > 0;
        let text = wait_js(
            &c,
            "the alert list",
            "document.querySelector('.alerts-table, .empty, .error')?.innerText",
        )
        .await?;
        screenshot(&c, "alerts").await?;
        let text = text.as_str().unwrap_or_default();
        if has_table {
            let n = env.ch.count("SELECT count() FROM sensor.alerts");
            let rows = c
                .execute(
                    "return document.querySelectorAll('tr.alert-row').length;",
                    vec![],
                )
                .await
                .map_err(err("rows"))?;
            if rows.as_u64() != Some(n.min(100)) {
                return Err(format!("{n} alerts in ClickHouse, {rows} rows shown"));
            }
        } else if !text.contains("No alerts table") {
            return Err(format!(
                "without an alerts table the page should say so, it says {text:?}"
            ));
        } else {
            eprintln!("alerts: no `alerts` table on this branch; checked the page says so");
        }
        Ok(())
    });
}

#[test]
fn browser_viewer_cannot_acknowledge() {
    run("viewer", |env, c| async move {
        login(&c, env, VIEWER, &format!("/alerts?{}", range(env))).await?;
        let role = wait_js(
            &c,
            "the role",
            "document.querySelector('nav.top .role')?.innerText",
        )
        .await?;
        // The API refuses a viewer's acknowledgement, with the session's own CSRF token.
        let status = c
            .execute_async(
                "const done = arguments[0]; fetch('/api/v1/me').then(r => r.json()).then(me => \
                 fetch('/api/v1/alerts/any-id/ack', {method: 'POST', headers: {'X-CSRF-Token': me.csrf_token}})) \
                 .then(r => r.json().then(b => done([r.status, b.error]))).catch(e => done([0, String(e)]));",
                vec![],
            )
            .await
            .map_err(err("ack as viewer"))?;
        screenshot(&c, "alerts-viewer").await?;
        if role.as_str() != Some("viewer") || status[0].as_u64() != Some(403) {
            return Err(format!("role {role}, acknowledge answered {status}"));
        }
        // With alerts present, a viewer's detail page has no acknowledge button.
        if let Some(id) = wait_js(
            &c,
            "the list",
            "document.querySelector('.alerts-table, .empty')",
        )
        .await
        .ok()
        .and(
            c.execute(
                "return document.querySelector('a.alert-link')?.getAttribute('href');",
                vec![],
            )
            .await
            .ok(),
        )
        .and_then(|v| v.as_str().map(str::to_string))
        {
            c.goto(&format!("{}{id}", env.console))
                .await
                .map_err(err("open alert"))?;
            wait_js(
                &c,
                "the alert detail",
                "document.querySelector('.ack')?.innerText",
            )
            .await?;
            screenshot(&c, "alert-detail-viewer").await?;
            let buttons = c
                .execute(
                    "return document.querySelectorAll('.ack-button').length;",
                    vec![],
                )
                .await
                .map_err(err("buttons"))?;
            if buttons.as_u64() != Some(0) {
                return Err("a viewer sees the acknowledge button".into());
            }
            let blocks = c
                .execute(
                    "return document.querySelectorAll('.block-button').length;",
                    vec![],
                )
                .await
                .map_err(err("block buttons"))?;
            if blocks.as_u64() != Some(0) {
                return Err("a viewer sees the block button".into());
            }
        }
        Ok(())
    });
}

#[test]
fn browser_alerts_page_shows_an_attack_captures_alerts_then_a_live_one() {
    run("alerts-live", |env, c| async move {
        let start = env.start - 3600;
        login(&c, env, ADMIN, &format!("/alerts?start={start}&end=now")).await?;
        let n = env.attack_alerts.len();
        wait_js(
            &c,
            "the attack captures' alerts",
            &format!("document.querySelectorAll('tr.alert-row').length === {n}"),
        )
        .await?;
        let shown: Vec<String> = serde_json::from_value(
            c.execute(
                "return [...document.querySelectorAll('tr.alert-row')].map(r => r.dataset.id);",
                vec![],
            )
            .await
            .map_err(err("row ids"))?,
        )
        .map_err(err("ids"))?;
        let mut want: Vec<String> = env
            .attack_alerts
            .iter()
            .map(|a| a["alert"]["id"].as_str().unwrap_or_default().to_string())
            .collect();
        let mut got = shown.clone();
        want.sort();
        got.sort();
        if got != want {
            return Err(format!("rows {got:?}, the engine raised {want:?}"));
        }
        let rules = c
            .execute(
                "return document.querySelector('.alerts-table').innerText;",
                vec![],
            )
            .await
            .map_err(err("table text"))?;
        for a in &env.attack_alerts {
            let rule = a["alert"]["rule"].as_str().unwrap_or_default();
            if !rules.as_str().unwrap_or_default().contains(rule) {
                return Err(format!("rule {rule} not on the page"));
            }
        }
        // The stream is connected (the console's consumer reads ALERTS from new messages).
        wait_js(
            &c,
            "the live status",
            "document.querySelector('.live-status')?.dataset.live === 'connected'",
        )
        .await?;
        screenshot(&c, "alerts-attacks").await?;
        // A new alert from another capture, now: it appears without a reload.
        let mut line: Value = serde_json::from_str(
            detect_alerts(&["dns_tunnel.pcap"], "live-sensor", None)
                .first()
                .ok_or("no alert from dns_tunnel.pcap")?,
        )
        .map_err(err("alert"))?;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(err("clock"))?
            .as_micros() as i64;
        line["timestamp"] = json!(pipeline_detect::time::format(now_us));
        let id = format!("live-{now_us}");
        line["alert"]["id"] = json!(id);
        c.execute("window.__noReload = 'still here'; return 1;", vec![])
            .await
            .map_err(err("mark the page"))?;
        publish_alert(&env.nats.url(), &line.to_string()).await;
        let first = wait_js(
            &c,
            "the live alert at the top of the list",
            &format!(
                "document.querySelectorAll('tr.alert-row').length === {} &&                  document.querySelector('tr.alert-row')?.dataset.id === {}",
                n + 1,
                json!(id)
            ),
        )
        .await;
        screenshot(&c, "alerts-live").await?;
        first?;
        let state = c
            .execute(
                "const r = document.querySelector('tr.alert-row');                  return [window.__noReload, r.className, r.innerText];",
                vec![],
            )
            .await
            .map_err(err("page state"))?;
        let rule = line["alert"]["rule"].as_str().unwrap_or_default();
        if state[0].as_str() != Some("still here")
            || !state[1].as_str().unwrap_or_default().contains("fresh")
            || !state[2].as_str().unwrap_or_default().contains(rule)
        {
            return Err(format!("after the live alert: {state}"));
        }
        Ok(())
    });
}

#[test]
fn browser_a_saved_view_is_listed_opens_and_is_deleted() {
    run("saved-views", |env, c| async move {
        let path = format!("/top?kind=ja4&{}", range(env));
        login(&c, env, VIEWER, &path).await?;
        wait_js(
            &c,
            "the top list",
            "document.querySelector('a.top-link, .empty')",
        )
        .await?;
        let path = c
            .execute("return location.pathname + location.search;", vec![])
            .await
            .map_err(err("the URL"))?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = format!("ja4 view {}", std::process::id());
        let input = c
            .find(Locator::Css("input[name=view-name]"))
            .await
            .map_err(err("the view name box"))?;
        input.send_keys(&name).await.map_err(err("type a name"))?;
        c.find(Locator::Css("button.save-view-button"))
            .await
            .map_err(err("save button"))?
            .click()
            .await
            .map_err(err("save"))?;
        wait_js(
            &c,
            "the saved toast",
            "document.getElementById('toast')?.innerText.includes('saved')",
        )
        .await?;
        c.find(Locator::Css("nav.top a[href='/views']"))
            .await
            .map_err(err("Views link"))?
            .click()
            .await
            .map_err(err("open Views"))?;
        let sel = format!("tr.view-row[data-name={}] a.view-link", json!(name));
        wait_js(
            &c,
            "the saved view in the list",
            &format!("document.querySelector({})", json!(sel)),
        )
        .await?;
        screenshot(&c, "saved-views").await?;
        c.find(Locator::Css(&sel))
            .await
            .map_err(err("view link"))?
            .click()
            .await
            .map_err(err("open the view"))?;
        let url = wait_js(
            &c,
            "the view's page",
            "location.pathname === '/top' && location.pathname + location.search",
        )
        .await?;
        if url.as_str() != Some(path.as_str()) {
            return Err(format!("the view opened {url}, saved {path}"));
        }
        c.goto(&format!("{}/views", env.console))
            .await
            .map_err(err("back to views"))?;
        let del = format!("tr.view-row[data-name={}] button.delete-view", json!(name));
        wait_js(
            &c,
            "the delete button",
            &format!("document.querySelector({})", json!(del)),
        )
        .await?;
        c.find(Locator::Css(&del))
            .await
            .map_err(err("delete button"))?
            .click()
            .await
            .map_err(err("delete"))?;
        wait_js(
            &c,
            "the view gone",
            &format!(
                "!document.querySelector({}) && !!document.querySelector('.views-table, .empty')",
                json!(sel)
            ),
        )
        .await?;
        Ok(())
    });
}

#[test]
fn browser_sensors_page_lists_the_replaying_sensor() {
    run("sensors", |env, c| async move {
        login(&c, env, ADMIN, &format!("/sensors?{}", range(env))).await?;
        let text = wait_js(
            &c,
            "the sensor table",
            "document.querySelector('.sensors-table')?.innerText",
        )
        .await?;
        screenshot(&c, "sensors").await?;
        if !text.as_str().unwrap_or_default().contains("browser-test") {
            return Err(format!("sensor browser-test missing: {text}"));
        }
        // Its metrics_url answers nothing: the row says so, in red.
        let cell = wait_js(
            &c,
            "the unreachable sensor",
            "(() => { const td = document.querySelector('tr[data-sensor=\"browser-test\"] td.unreachable'); \
             return td && [td.innerText, getComputedStyle(td).color] })()",
        )
        .await?;
        if !cell[0].as_str().unwrap_or_default().contains("unreachable")
            || cell[1].as_str() != Some("rgb(248, 113, 113)")
        {
            return Err(format!("the unreachable sensor shows {cell}"));
        }
        Ok(())
    });
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `pipeline respond` in process (its library's `main`, as `pipeline respond --config` runs
/// it), with a fresh key pair, an idle playbook, ClickHouse for its audit trail, and `protected`
/// as a protected network; returns the public key's path. One for the whole run.
fn respond(env: &Env, protected: &str) -> &'static Path {
    static KEY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, public) = KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("respond dir");
        let (private, public) = pipeline_command::keys::generate(dir.path()).expect("keygen");
        let cfg = dir.path().join("respond.toml");
        // Respond needs a playbook; this one is loaded and never runs.
        let playbook = dir.path().join("idle.toml");
        std::fs::write(
            &playbook,
            "[[playbook]]\nname = \"idle\"\nenabled = false\n[playbook.trigger]\n\
             signature_ids = [1]\n[[playbook.step]]\nkind = \"tag\"\nhost = \"src\"\n\
             label = \"idle\"\nexpire = \"1h\"\n",
        )
        .expect("respond playbook");
        let text = format!(
            "playbooks = [\"{}\"]\nsigning_key = \"{}\"\n[guard]\nprotected = [\"{protected}\"]\n\
             [nats]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\nack_wait_secs = 30\n\
             [clickhouse]\nurl = \"{}\"\n",
            playbook.display(),
            private.display(),
            env.nats.url(),
            Nats::USER,
            Nats::PASSWORD,
            env.ch.url()
        );
        std::fs::write(&cfg, text).expect("respond config");
        std::thread::spawn(move || {
            let code = pipeline_respond::main(&cfg);
            panic!("pipeline respond stopped with {code}");
        });
        (dir, public)
    });
    public
}

/// Clicks the block button of `address`, checks the confirm dialog, confirms, and waits for
/// respond's answer; returns (status, status text).
async fn block(c: &Client, address: &str, sensor: &str) -> Result<(String, String), String> {
    let button = format!("document.querySelector('.block-button[data-address=\"{address}\"]')");
    wait_js(c, "the block button", &button).await?;
    c.execute(&format!("{button}.click(); return true;"), vec![])
        .await
        .map_err(err("click block"))?;
    let summary = wait_js(
        c,
        "the confirm dialog",
        "document.querySelector('dialog.block-dialog[open] .block-summary')?.innerText",
    )
    .await?;
    let summary = summary.as_str().unwrap_or("").to_string();
    let want = format!("Block {address} for 1 hour on sensor {sensor}?");
    if summary != want {
        return Err(format!("the dialog says {summary:?}, not {want:?}"));
    }
    screenshot(c, &format!("block-confirm-{}", address.replace(':', "_"))).await?;
    c.execute(
        "document.querySelector('dialog.block-dialog .block-confirm').click(); return true;",
        vec![],
    )
    .await
    .map_err(err("confirm"))?;
    let status = format!(
        "document.querySelector('.block-button[data-address=\"{address}\"]').parentElement.querySelector('.block-status')"
    );
    let done = wait_js(
        c,
        "respond's answer",
        &format!("(s => s.dataset.status && s.dataset.status !== 'pending' ? [s.dataset.status, s.innerText] : null)({status})"),
    )
    .await?;
    Ok((
        done[0].as_str().unwrap_or("").to_string(),
        done[1].as_str().unwrap_or("").to_string(),
    ))
}

#[test]
fn browser_admin_blocks_an_alerts_address_through_respond() {
    run("block", |env, c| async move {
        let a = env
            .attack_alerts
            .iter()
            .find(|a| a["src_ip"].is_string() && a["dest_ip"].is_string())
            .ok_or("no alert with both addresses")?;
        let (id, src, dest) = (
            a["alert"]["id"].as_str().unwrap_or(""),
            a["src_ip"].as_str().unwrap_or(""),
            a["dest_ip"].as_str().unwrap_or(""),
        );
        let sensor = a["sensor_id"]
            .as_str()
            .or(a["host"].as_str())
            .unwrap_or("attack-sensor");
        let public = respond(env, dest);
        login(&c, env, ADMIN, &format!("/alerts/{}", urlencode(id))).await?;
        let (status, text) = block(&c, src, sensor).await?;
        screenshot(&c, "block-sent").await?;
        if status != "sent" && status != "applied" {
            return Err(format!("blocking {src}: {status} {text}"));
        }
        // One command on COMMANDS, signed with respond's key, for the alert's sensor.
        let key = pipeline_command::keys::load_verifying_key(public).map_err(err("key"))?;
        let mut v = pipeline_command::Verifier::new(key, sensor);
        let msgs = commands(&env.nats.url()).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(err("clock"))?
            .as_millis() as u64;
        let cmds: Vec<_> = msgs.iter().map(|m| v.verify(m, now)).collect();
        if !matches!(cmds.as_slice(), [Ok(cmd)] if cmd.alert_id.as_deref() == Some(id)) {
            return Err(format!("commands: {cmds:?}"));
        }
        // The alert's actions list shows the request, by the operator.
        wait_js(
            &c,
            "the action in the alert's list",
            "[...document.querySelectorAll('.actions-list td')].some(td => td.innerText === 'console:alice')",
        )
        .await?;
        // The destination is protected: refused by the guard rail, with the reason.
        let (status, text) = block(&c, dest, sensor).await?;
        screenshot(&c, "block-refused").await?;
        if status != "refused" || !text.contains("protected network") {
            return Err(format!("blocking {dest}: {status} {text}"));
        }
        if commands(&env.nats.url()).await.len() != 1 {
            return Err("a refused block published a command".into());
        }
        Ok(())
    });
}

/// The payloads of stream `COMMANDS`.
async fn commands(url: &str) -> Vec<Vec<u8>> {
    let js = jetstream(url).await;
    let Ok(mut s) = js.get_stream(pipeline_command::COMMANDS_STREAM).await else {
        return Vec::new();
    };
    let Ok(info) = s.info().await else {
        return Vec::new();
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    for seq in first..=last {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push(m.payload.to_vec());
        }
    }
    out
}
