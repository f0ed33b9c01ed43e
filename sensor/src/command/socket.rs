//! `sensor blocklist list|add|del` against a running sensor: a Unix socket the sensor opens
//! (`live.control_socket`), created mode 0600 so only its owner (root, or the sensor's user)
//! can connect. One JSON request line per connection, one JSON answer line back.
//!
//! Operator blocks go through the same [`BlockOp`]s as commands, so they are applied by the
//! control thread and persisted in the state file the same way.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::capture::blocklist::{now_ms, parse_net, Block, Listed, Source};
use crate::capture::control::{BlockOp, Change};

/// Longest request line read.
const MAX_REQUEST: u64 = 4096;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What an operator asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List,
    /// Block `cidr` for `secs` seconds (None: until removed).
    Add {
        cidr: String,
        secs: Option<u64>,
    },
    Del {
        cidr: String,
    },
}

/// The answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// What was done, or why not.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub entries: Vec<Listed>,
}

/// The socket server; dropping it stops it and removes the socket file.
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlSocket {
    /// Binds `path` (mode 0600; its folder made if missing, mode 0700). A stale socket file
    /// from a sensor that died is replaced; one another sensor still answers on is an error.
    pub fn start(path: &Path, ops: Sender<BlockOp>) -> Result<ControlSocket> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("control socket folder {}", dir.display()))?;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "control socket {}: another sensor is listening on it (live.control_socket)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("control socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("control-socket".into())
            .spawn(move || serve(&listener, &ops, &flag))
            .context("cannot start the control socket thread")?;
        tracing::info!("blocklist control socket {}", path.display());
        Ok(ControlSocket {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(listener: &UnixListener, ops: &Sender<BlockOp>, stop: &AtomicBool) {
    while !stop.load(Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                if let Err(e) = answer(conn, ops) {
                    tracing::debug!("control socket: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads one request line, answers one line.
fn answer(conn: UnixStream, ops: &Sender<BlockOp>) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line)?;
    let resp = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handle(req, ops),
        Err(e) => Response {
            ok: false,
            message: format!("bad request: {e}"),
            ..Default::default()
        },
    };
    let mut out = serde_json::to_vec(&resp).map_err(std::io::Error::other)?;
    out.push(b'\n');
    (&conn).write_all(&out)
}

fn fail(message: String) -> Response {
    Response {
        ok: false,
        message,
        ..Default::default()
    }
}

fn handle(req: Request, ops: &Sender<BlockOp>) -> Response {
    let change = match req {
        Request::List => return list(ops),
        Request::Add { cidr, secs } => match parse_net(&cidr) {
            Ok(net) => Change::Add {
                block: Block {
                    cidr: net,
                    source: Source::Operator,
                    expires_at_ms: secs
                        .map_or(0, |s| now_ms().saturating_add(s.saturating_mul(1000))),
                    alert_id: String::new(),
                    command_id: String::new(),
                },
                nonce: None,
            },
            Err(e) => return fail(e),
        },
        Request::Del { cidr } => match parse_net(&cidr) {
            Ok(net) => Change::Del { net, nonce: None },
            Err(e) => return fail(e),
        },
    };
    let (reply, rx) = crossbeam_channel::bounded(1);
    let op = BlockOp::Apply {
        changes: vec![change],
        reply,
    };
    if ops.send(op).is_err() {
        return fail("the sensor is stopping".into());
    }
    match rx.recv_timeout(IO_TIMEOUT).map(|mut answers| answers.pop()) {
        Ok(Some(Ok(message))) => Response {
            ok: true,
            message,
            entries: Vec::new(),
        },
        Ok(Some(Err(e))) => fail(e),
        Ok(None) | Err(_) => fail("the control thread did not answer".into()),
    }
}

fn list(ops: &Sender<BlockOp>) -> Response {
    let (reply, rx) = crossbeam_channel::bounded(1);
    if ops.send(BlockOp::List { reply }).is_err() {
        return fail("the sensor is stopping".into());
    }
    match rx.recv_timeout(IO_TIMEOUT) {
        Ok(entries) => Response {
            ok: true,
            message: String::new(),
            entries,
        },
        Err(_) => fail("the control thread did not answer".into()),
    }
}

/// Sends one request to the sensor listening on `path` and returns its answer.
pub fn request(path: &Path, req: &Request) -> Result<Response> {
    let conn = UnixStream::connect(path).with_context(|| {
        format!(
            "no sensor answers on {} (is `sensor run` running, and are you root?)",
            path.display()
        )
    })?;
    conn.set_read_timeout(Some(IO_TIMEOUT * 2))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    (&conn).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .take(16 << 20)
        .read_line(&mut answer)
        .context("reading the answer")?;
    serde_json::from_str(&answer).context("the sensor's answer is not understood")
}

/// `sensor blocklist list` as a table.
pub fn render_list(entries: &[Listed]) -> String {
    use std::fmt::Write as _;
    let mut o = format!(
        "{:<43} {:<9} {:>10}  {}\n",
        "ENTRY", "SOURCE", "EXPIRES IN", "ALERT"
    );
    for e in entries {
        let left = e
            .remaining_secs
            .map_or_else(|| "never".to_string(), |s| format!("{s}s"));
        let _ = writeln!(
            o,
            "{:<43} {:<9} {:>10}  {}",
            e.cidr,
            e.source.as_str(),
            left,
            if e.alert_id.is_empty() {
                "-"
            } else {
                &e.alert_id
            }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_json_line() {
        for r in [
            Request::List,
            Request::Add {
                cidr: "192.0.2.0/24".into(),
                secs: Some(5),
            },
            Request::Del {
                cidr: "2001:db8::1".into(),
            },
        ] {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
    }

    #[test]
    fn a_bad_cidr_is_refused_without_reaching_the_control_thread() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let r = handle(
            Request::Add {
                cidr: "10.0.0.0/40".into(),
                secs: None,
            },
            &tx,
        );
        assert!(!r.ok && r.message.contains("10.0.0.0/40"), "{r:?}");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn the_list_shows_source_expiry_and_alert() {
        let t = render_list(&[Listed {
            cidr: "192.0.2.0/24".into(),
            source: Source::Command,
            remaining_secs: Some(42),
            alert_id: "a-7".into(),
        }]);
        let row = t.lines().nth(1).unwrap();
        for want in ["192.0.2.0/24", "command", "42s", "a-7"] {
            assert!(row.contains(want), "{row}");
        }
    }
}
