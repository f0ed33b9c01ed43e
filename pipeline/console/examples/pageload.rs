//! Time from page load to the first drawn chart, in Debian's headless Chromium through
//! ChromeDriver: what `benches/console_pageload.sh` runs against the demo's console.
//!
//! `pageload --url http://127.0.0.1:PORT --user U --password P [--runs N] [--page PATH]`
//!
//! Logs in once through the form, then loads PATH (default: Visualize over the last 24 h) N
//! times as a full navigation and reads, from the page itself: DOMContentLoaded, the API calls'
//! durations (Resource Timing), and `data-first-chart-ms` (set when ECharts reports its first
//! chart finished). Prints p50/p95 per figure, and the first chart's time against the graph
//! query's own time measured in the same load (the peer: what the back end costs).

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    user: String,
    password: String,
    runs: usize,
    page: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        user: String::new(),
        password: String::new(),
        runs: 10,
        page: "/visualize?start=now-24h&end=now&chart=stacked&dims=AppProto&limit=10".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--url" => a.url = v,
            "--user" => a.user = v,
            "--password" => a.password = v,
            "--runs" => a.runs = v.parse().map_err(|e| format!("--runs: {e}"))?,
            "--page" => a.page = v,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.url.is_empty() || a.user.is_empty() {
        return Err(
            "usage: pageload --url URL --user U --password P [--runs N] [--page PATH]".into(),
        );
    }
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pageload: {e}");
            std::process::exit(2);
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (apt package chromium-driver)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = std::env::temp_dir().join(format!("pageload-profile-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(measure(&a, port, &profile));
    let _ = driver.kill();
    let _ = driver.wait();
    let _ = std::fs::remove_dir_all(&profile);
    if let Err(e) = r {
        eprintln!("pageload: {e}");
        std::process::exit(1);
    }
}

async fn measure(a: &Args, port: u16, profile: &std::path::Path) -> Result<(), String> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,1000", format!("--user-data-dir={}", profile.display())],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("WebDriver session: {e}"))?;
    let r = runs(&c, a).await;
    let _ = c.close().await;
    r
}

async fn runs(c: &Client, a: &Args) -> Result<(), String> {
    c.goto(&a.url).await.map_err(|e| e.to_string())?;
    let user = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=username]"))
        .await
        .map_err(|e| format!("login form: {e}"))?;
    user.send_keys(&a.user).await.map_err(|e| e.to_string())?;
    let pass = c
        .find(Locator::Css("input[name=password]"))
        .await
        .map_err(|e| e.to_string())?;
    pass.send_keys(&a.password)
        .await
        .map_err(|e| e.to_string())?;
    pass.send_keys("\u{E007}")
        .await
        .map_err(|e| e.to_string())?;
    wait(c, "document.querySelector('nav.top .who')").await?;
    let mut rows: Vec<[f64; 4]> = Vec::new();
    for i in 0..a.runs {
        c.goto(&format!("{}{}", a.url, a.page))
            .await
            .map_err(|e| e.to_string())?;
        let v = wait(
            c,
            "(() => { const f = document.documentElement.dataset.firstChartMs; if (!f) return null; \
             const nav = performance.getEntriesByType('navigation')[0]; \
             const api = performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/')); \
             const ts = api.filter(e => e.name.includes('graph/')).map(e => e.duration); \
             const apiEnd = Math.max(0, ...api.map(e => e.responseEnd)); \
             return [Number(f), nav ? nav.domContentLoadedEventEnd : 0, ts.length ? ts[0] : 0, apiEnd]; })()",
        )
        .await?;
        let n = |j: usize| v[j].as_f64().unwrap_or(0.0);
        rows.push([n(0), n(1), n(2), n(3)]);
        eprintln!(
            "run {i}: first chart {:.0} ms (DOMContentLoaded {:.0} ms, graph query {:.0} ms)",
            n(0),
            n(1),
            n(2)
        );
    }
    let col = |j: usize| {
        let mut v: Vec<f64> = rows.iter().map(|r| r[j]).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        (q(0.5), q(0.95))
    };
    let (fc50, fc95) = col(0);
    let (dcl50, _) = col(1);
    let (g50, g95) = col(2);
    let (api50, _) = col(3);
    println!(
        "page load -> first drawn chart ({} runs, Chromium headless, {}):",
        rows.len(),
        a.page
    );
    println!("  first chart         p50 {fc50:7.0} ms   p95 {fc95:7.0} ms   (goal < 2000 ms)");
    println!("  DOMContentLoaded    p50 {dcl50:7.0} ms");
    println!("  graph API query     p50 {g50:7.0} ms   p95 {g95:7.0} ms   (the peer: the back end's share)");
    println!("  last API answer     p50 {api50:7.0} ms");
    if g50 > 0.0 {
        println!(
            "  ratio first chart / graph query (p50): {:.1}x",
            fc50 / g50
        );
    }
    Ok(())
}

/// Polls an expression until it is not null; its value.
async fn wait(c: &Client, expr: &str) -> Result<Value, String> {
    let start = Instant::now();
    loop {
        let v = c
            .execute(&format!("return {expr};"), vec![])
            .await
            .map_err(|e| e.to_string())?;
        if !v.is_null() {
            return Ok(v);
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("timed out waiting for {expr}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
