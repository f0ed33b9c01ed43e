//! Real ClickHouse and NATS servers for integration tests: the Debian packages' binaries started
//! as child processes on free loopback ports, with their configuration and data in a temporary
//! directory.
//!
//! Each server runs under a small `sh` wrapper that reads its standard input: when the test
//! process ends for any reason (even killed), the pipe closes and the wrapper kills the server.
//! That matters because servers shared through a `static` are never dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A free loopback TCP port (bound, read, released), never one this process handed out before.
///
/// Taken below the kernel's range of ephemeral ports (`ip_local_port_range`) when there is room
/// there: the source ports of outgoing connections come from that range, so no connection (of a
/// test, a server or a client) can take the port between this check and the server's bind. One
/// did, as a port from the ephemeral range: a nats-server of a three-node cluster could not bind
/// and CI failed. Someone else's listener can still take it; the servers below start again on
/// new ports when that happens.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = |port: u16, handed_out: &[u16]| {
        !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok()
    };
    let below = PORTS_FROM..ephemeral_ports().0;
    if below.len() >= 1000 {
        // A start per process, so that two test binaries at once seldom probe the same ports.
        let offset = std::process::id() as usize * 7919 % below.len();
        let found = below
            .clone()
            .cycle()
            .skip(offset)
            .take(below.len())
            .find(|p| fresh(*p, &handed_out));
        if let Some(port) = found {
            handed_out.push(port);
            return port;
        }
    }
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// The lowest port [`free_port`] hands out (below it: well-known and registered services).
const PORTS_FROM: u16 = 10_000;

/// The kernel's range of ephemeral ports, or Linux's default when it cannot be read.
fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// How many times a server is started on new ports when it exits at start-up.
pub(crate) const START_ATTEMPTS: usize = 3;

/// Whether a binary is on PATH (tests skip with a message when a server is not installed).
pub fn have(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(bin).is_file()
}

/// A server process under its watchdog wrapper. Public for the other helper processes tests keep
/// in a `static` (chromedriver), which would otherwise outlive the test binary.
pub struct Proc {
    wrapper: Child,
    /// Keeps the wrapper's stdin open; closing it stops the server.
    _stdin: ChildStdin,
    pid: u32,
}

impl Proc {
    /// Starts `cmd` (a shell command line) under the wrapper and reads the server's pid.
    pub fn spawn(cmd: &str, log: &Path) -> Proc {
        let script = format!(
            "{cmd} >>'{log}' 2>&1 & p=$!; echo $p; cat >/dev/null; kill -9 $p 2>/dev/null; wait $p",
            log = log.display()
        );
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        let stdin = wrapper.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("pid line");
        let pid = line.trim().parse().expect("server pid");
        Proc {
            wrapper,
            _stdin: stdin,
            pid,
        }
    }

    /// Whether the server process is gone (reaped by the wrapper, or a zombie).
    pub fn exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Kills the server with SIGKILL (a crash, not a clean stop) and waits for the wrapper.
    pub fn kill(mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        drop(self._stdin);
        let _ = self.wrapper.wait();
    }
}

/// Waits until `ok`, or fails early with the end of the server's log when its process is gone.
pub(crate) fn wait_started(
    what: &str,
    proc: &Proc,
    log: &Path,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    while !ok() {
        if proc.exited() {
            return Err(format!("{what} exited at start-up: {}", log_tail(log)));
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "{what} not ready after {timeout:?}: {}",
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts a server by `attempt` (which picks new ports each time), again when it fails.
pub(crate) fn start_retrying<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match attempt() {
            Ok(server) => return server,
            Err(e) => {
                eprintln!("{what}: {e}; starting again on new ports");
                errors.push(e);
            }
        }
    }
    panic!("{what} did not start: {}", errors.join(" | "));
}

/// The last lines of a server's log, for an error message.
pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

/// A throwaway certificate authority and a server certificate it signed for `127.0.0.1` and
/// `localhost`, as PEM files in a temporary directory; made at test time, never committed.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the servers use.
    pub wrong_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCerts {
    pub fn new() -> TestCerts {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = |name: &str| {
            let key = KeyPair::generate().expect("CA key");
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            let cert = p.self_signed(&key).expect("CA certificate");
            (cert, Issuer::new(p, key))
        };
        let (ca_cert, issuer) = ca("sensor test CA");
        let (wrong_cert, _) = ca("some other CA");
        let key = KeyPair::generate().expect("server key");
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
        p.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = p.signed_by(&key, &issuer).expect("server certificate");
        let d = dir.path();
        let write = |name: &str, text: String| {
            let path = d.join(name);
            std::fs::write(&path, text).expect("PEM file");
            path
        };
        TestCerts {
            ca: write("ca.pem", ca_cert.pem()),
            wrong_ca: write("wrong-ca.pem", wrong_cert.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            dir,
        }
    }
}

/// A ClickHouse server (Debian's 18.16 in CI) with a `default` user without password and a
/// `sensor` user whose password is [`ClickHouse::PASSWORD`].
pub struct ClickHouse {
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    pub tcp_port: u16,
    /// The HTTPS interface, when started with [`ClickHouse::start_tls`].
    pub https_port: Option<u16>,
    proc: Mutex<Option<Proc>>,
}

impl ClickHouse {
    pub const PASSWORD: &'static str = "s3cret-pw";

    pub fn start() -> ClickHouse {
        Self::start_with(None)
    }

    /// Also serves HTTPS with `certs`' server certificate (the HTTP port stays, for checks).
    pub fn start_tls(certs: &TestCerts) -> ClickHouse {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&TestCerts>) -> ClickHouse {
        start_retrying("clickhouse-server", || {
            let ch = Self::configure(certs);
            ch.try_restart().map(|()| ch)
        })
    }

    /// A temporary directory with the configuration, on new ports; the server is not started.
    fn configure(certs: Option<&TestCerts>) -> ClickHouse {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let (http_port, tcp_port) = (free_port(), free_port());
        let https_port = certs.map(|_| free_port());
        let tls = match (certs, https_port) {
            (Some(c), Some(port)) => format!(
                "<https_port>{port}</https_port>\n  <openSSL><server>\
                 <certificateFile>{}</certificateFile><privateKeyFile>{}</privateKeyFile>\
                 <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>\
                 <cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols>\
                 <preferServerCiphers>true</preferServerCiphers></server></openSSL>",
                c.cert.display(),
                c.key.display()
            ),
            _ => String::new(),
        };
        std::fs::create_dir_all(d.join("data")).expect("data dir");
        std::fs::write(
            d.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  {tls}
  <path>{d}/data/</path>
  <tmp_path>{d}/data/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
"#,
                d = d.display()
            ),
        )
        .expect("config.xml");
        std::fs::write(
            d.join("users.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <sensor><password>{}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></sensor>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#,
                Self::PASSWORD
            ),
        )
        .expect("users.xml");
        ClickHouse {
            dir,
            http_port,
            tcp_port,
            https_port,
            proc: Mutex::new(None),
        }
    }

    fn binary() -> &'static str {
        if Path::new("/usr/sbin/clickhouse-server").is_file() {
            "/usr/sbin/clickhouse-server"
        } else {
            "clickhouse-server"
        }
    }

    /// (Re)starts the server on the same ports and data directory, and waits until it answers.
    pub fn restart(&self) {
        if let Err(e) = self.try_restart() {
            panic!("{e}");
        }
    }

    fn try_restart(&self) -> Result<(), String> {
        let d = self.dir.path();
        let log = d.join("server.err.log");
        let p = Proc::spawn(
            &format!(
                "{} --config-file='{}'",
                Self::binary(),
                d.join("config.xml").display()
            ),
            &d.join("stdout.log"),
        );
        let started = wait_started(
            "clickhouse-server",
            &p,
            &log,
            Duration::from_secs(60),
            || self.try_query("SELECT 1").is_ok(),
        );
        *self.proc.lock().unwrap() = Some(p);
        started
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&self) {
        if let Some(p) = self.proc.lock().unwrap().take() {
            p.kill();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The HTTPS interface's URL (only for a server from [`ClickHouse::start_tls`]).
    pub fn https_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}",
            self.https_port.expect("a server started with TLS")
        )
    }

    /// Runs a query as `default` over HTTP; the body, or the server's error.
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let req = format!(
            "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{sql}",
            sql.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&resp).to_string();
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
        if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
            Ok(body.to_string())
        } else {
            Err(body.to_string())
        }
    }

    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql)
            .unwrap_or_else(|e| panic!("query failed: {sql}: {e}"))
    }

    /// A single number.
    pub fn count(&self, sql: &str) -> u64 {
        self.query(sql)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: not a number: {e}"))
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A NATS server with JetStream, user `sensor` / [`Nats::PASSWORD`] unless started with
/// other options.
pub struct Nats {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Authentication and TLS options of the command line.
    args: String,
    proc: Mutex<Option<Proc>>,
}

impl Nats {
    pub const USER: &'static str = "sensor";
    pub const PASSWORD: &'static str = "nats-pw";
    pub const TOKEN: &'static str = "nats-tok-9f3";

    pub fn start() -> Nats {
        Self::start_with(&format!("--user {} --pass {}", Self::USER, Self::PASSWORD))
    }

    /// Requires TLS with `certs`' server certificate, and the token [`Nats::TOKEN`].
    pub fn start_tls_token(certs: &TestCerts) -> Nats {
        Self::start_with(&format!(
            "--tls --tlscert '{}' --tlskey '{}' --auth {}",
            certs.cert.display(),
            certs.key.display(),
            Self::TOKEN
        ))
    }

    fn start_with(args: &str) -> Nats {
        start_retrying("nats-server", || {
            let n = Nats {
                dir: tempfile::tempdir().expect("temp dir"),
                port: free_port(),
                args: args.to_string(),
                proc: Mutex::new(None),
            };
            n.try_restart().map(|()| n)
        })
    }

    /// Starts the server again on the same port and store, and waits until it accepts clients.
    pub fn restart(&self) {
        if let Err(e) = self.try_restart() {
            panic!("{e}");
        }
    }

    fn try_restart(&self) -> Result<(), String> {
        let d = self.dir.path();
        let log = d.join("server.log");
        let p = Proc::spawn(
            &format!(
                "nats-server -js -a 127.0.0.1 -p {} -sd '{}' {}",
                self.port,
                d.join("js").display(),
                self.args
            ),
            &log,
        );
        let started = wait_started("nats-server", &p, &log, Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        *self.proc.lock().unwrap() = Some(p);
        started
    }

    pub fn kill(&self) {
        if let Some(p) = self.proc.lock().unwrap().take() {
            p.kill();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let (low, high) = ephemeral_ports();
        if low >= PORTS_FROM + 1000 {
            assert!(
                ports.iter().all(|p| (PORTS_FROM..low).contains(p)),
                "below the ephemeral ports {low}-{high}: {ports:?}"
            );
        }
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }

    /// The way CI once lost a cluster: a node's port taken before it bound it. The wait ends at
    /// once with the server's own reason instead of a 30 s timeout.
    #[test]
    fn a_server_that_cannot_bind_its_port_is_seen_exiting_with_its_log() {
        if !have("nats-server") {
            eprintln!("skipped: nats-server not installed");
            return;
        }
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let p = Proc::spawn(&format!("nats-server -a 127.0.0.1 -p {port}"), &log);
        let err = wait_started("nats-server", &p, &log, Duration::from_secs(30), || false)
            .expect_err("the server cannot start");
        assert!(err.contains("exited at start-up"), "{err}");
        assert!(err.contains("address already in use"), "{err}");
        assert!(p.exited());
        p.kill();
    }

    #[test]
    fn start_retrying_starts_again_until_an_attempt_succeeds() {
        let mut attempts = 0;
        let got = start_retrying("server", || {
            attempts += 1;
            if attempts < START_ATTEMPTS {
                Err(format!("attempt {attempts} failed"))
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(got, START_ATTEMPTS);
    }
}
