//! A three-node (or N-node) nats-server cluster with JetStream, all on loopback ports, for tests
//! of replicated streams and of consumers that fail over between nodes.
//!
//! Each node has its own client, route and monitoring port and its own store directory; routes
//! list every other node. [`Cluster::start`] returns once every node answers `/healthz` (its
//! JetStream is up and a meta leader was elected), so a stream with `num_replicas` up to the
//! node count can be created at once. Nodes can be killed (SIGKILL) and restarted on the same
//! store to test fail-over.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::servers::{free_port, start_retrying, wait_started, Nats, Proc};

struct Node {
    port: u16,
    route_port: u16,
    http_port: u16,
    proc: Mutex<Option<Proc>>,
}

/// A running cluster; nodes stop when it is dropped (or when the test process ends).
pub struct Cluster {
    pub dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes (user [`Nats::USER`], password [`Nats::PASSWORD`], as [`Nats::start`])
    /// and waits until all are healthy; the whole cluster again on new ports when a node exits
    /// at start-up (a port taken between picking it and binding it).
    pub fn start(n: usize) -> Cluster {
        start_retrying("nats-server cluster", || Self::try_start(n))
    }

    fn try_start(n: usize) -> Result<Cluster, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes = (0..n)
            .map(|_| Node {
                port: free_port(),
                route_port: free_port(),
                http_port: free_port(),
                proc: Mutex::new(None),
            })
            .collect();
        let c = Cluster { dir, nodes };
        for i in 0..n {
            c.write_config(i);
            c.try_restart(i)?;
        }
        for i in 0..n {
            c.try_wait_healthy(i)?;
        }
        Ok(c)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.conf"))
    }

    fn write_config(&self, i: usize) {
        let node = &self.nodes[i];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| format!("\"nats-route://127.0.0.1:{}\"", o.route_port))
            .collect();
        let store = self.dir.path().join(format!("n{i}"));
        let conf = format!(
            "server_name: n{i}\nlisten: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\n\
             jetstream {{ store_dir: \"{}\" }}\n\
             authorization {{ user: \"{}\", password: \"{}\" }}\n\
             cluster {{\n  name: \"test\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
            node.port,
            node.http_port,
            store.display(),
            Nats::USER,
            Nats::PASSWORD,
            node.route_port,
            routes.join(", ")
        );
        std::fs::write(self.config_path(i), conf).expect("node config");
    }

    /// Starts node `i` again (after [`Self::kill`]) on its store directory.
    pub fn restart(&self, i: usize) {
        if let Err(e) = self.try_restart(i) {
            panic!("{e}");
        }
    }

    fn try_restart(&self, i: usize) -> Result<(), String> {
        let log = self.log_path(i);
        let p = Proc::spawn(
            &format!("nats-server -c '{}'", self.config_path(i).display()),
            &log,
        );
        let port = self.nodes[i].port;
        let what = format!("nats-server node n{i}");
        let started = wait_started(&what, &p, &log, Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        *self.nodes[i].proc.lock().unwrap() = Some(p);
        started
    }

    /// Waits until node `i` says it is healthy (JetStream included).
    pub fn wait_healthy(&self, i: usize) {
        if let Err(e) = self.try_wait_healthy(i) {
            panic!("{e}");
        }
    }

    fn try_wait_healthy(&self, i: usize) -> Result<(), String> {
        let port = self.nodes[i].http_port;
        let what = format!("nats-server node n{i} /healthz");
        let guard = self.nodes[i].proc.lock().unwrap();
        let Some(p) = guard.as_ref() else {
            return Err(format!("{what}: node not running"));
        };
        wait_started(&what, p, &self.log_path(i), Duration::from_secs(60), || {
            http_ok(port, "/healthz")
        })
    }

    /// SIGKILL of node `i`.
    pub fn kill(&self, i: usize) {
        if let Some(p) = self.nodes[i].proc.lock().unwrap().take() {
            p.kill();
        }
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Whether `GET path` on the loopback port answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}
