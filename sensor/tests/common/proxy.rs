//! A TCP proxy in front of a real ClickHouse server that makes an INSERT's outcome unknown to
//! the sensor, on purpose: it supplements the real server (every byte it does forward goes to
//! it), it does not replace it.
//!
//! For the next INSERT requests it either forwards the request, lets the server store it and
//! answer, then closes the client's connection instead of relaying the answer (a lost
//! acknowledgement: the rows are stored, the sensor does not know), or closes the connection
//! before forwarding anything (a lost request: nothing is stored, the sensor does not know
//! either), or holds the server's answer for a while before relaying it (a slow server: the
//! answer may come after the client gave up). The plan can be limited to the INSERTs into one
//! table, so a test can aim at the parts of one batch (one INSERT per day of a batch).
//! HTTP/1.1 without pipelining, as the `clickhouse` crate speaks it, so the answer
//! after an INSERT on a connection is that INSERT's answer.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What happens to the next INSERTs, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Stored by the server, its answer not relayed.
    LoseAck,
    /// Never forwarded.
    LoseRequest,
    /// Forwarded and answered normally (to aim the next fault at a later INSERT).
    Pass,
    /// Forwarded; the answer is relayed only after this many milliseconds.
    DelayAnswer(u64),
}

pub struct LossyProxy {
    pub port: u16,
    plan: Arc<Mutex<Vec<Fault>>>,
    /// Faults applied so far: (lost acks, lost requests).
    lost_acks: Arc<AtomicU32>,
    lost_requests: Arc<AtomicU32>,
}

/// What the connection threads share.
#[derive(Clone)]
struct Shared {
    plan: Arc<Mutex<Vec<Fault>>>,
    acks: Arc<AtomicU32>,
    reqs: Arc<AtomicU32>,
    /// Only INSERTs into this table (`.name` in the statement) take faults from the plan.
    table: Option<String>,
}

impl LossyProxy {
    /// Forwards to `127.0.0.1:upstream`, applying `plan` to the first INSERTs it sees.
    pub fn start(upstream: u16, plan: &[Fault]) -> LossyProxy {
        Self::start_for(upstream, None, plan)
    }

    /// Like [`LossyProxy::start`], the plan applied only to INSERTs into `table` (when given).
    pub fn start_for(upstream: u16, table: Option<&str>, plan: &[Fault]) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let mut rev = plan.to_vec();
        rev.reverse();
        let p = LossyProxy {
            port,
            plan: Arc::new(Mutex::new(rev)),
            lost_acks: Arc::new(AtomicU32::new(0)),
            lost_requests: Arc::new(AtomicU32::new(0)),
        };
        let shared = Shared {
            plan: p.plan.clone(),
            acks: p.lost_acks.clone(),
            reqs: p.lost_requests.clone(),
            table: table.map(|t| format!(".{t}")),
        };
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let shared = shared.clone();
                std::thread::spawn(move || serve(client, server, shared));
            }
        });
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn lost_acks(&self) -> u32 {
        self.lost_acks.load(Ordering::SeqCst)
    }

    pub fn lost_requests(&self) -> u32 {
        self.lost_requests.load(Ordering::SeqCst)
    }

    /// Faults of the plan not applied yet.
    pub fn faults_left(&self) -> usize {
        self.plan.lock().unwrap().len()
    }
}

fn serve(mut client: TcpStream, mut server: TcpStream, shared: Shared) {
    let Shared {
        plan,
        acks,
        reqs,
        table,
    } = shared;
    let drop_answer = Arc::new(AtomicBool::new(false));
    let delay_ms = Arc::new(AtomicU64::new(0));
    // Server -> client, unless the answer is to be lost.
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let drop2 = drop_answer.clone();
    let delay2 = delay_ms.clone();
    let back = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match s2.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let ms = delay2.swap(0, Ordering::SeqCst);
            if ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            if drop2.load(Ordering::SeqCst) {
                // The server answered, so the INSERT is done; the sensor never hears it.
                acks.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if c2.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c2.shutdown(Shutdown::Both);
        let _ = s2.shutdown(Shutdown::Both);
    });
    // Client -> server, looking at each request line.
    let mut buf = vec![0u8; 64 << 10];
    // The tail of the previous read, so a request line split over two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut seen = std::mem::take(&mut tail);
        seen.extend_from_slice(&buf[..n]);
        if !drop_answer.load(Ordering::SeqCst) && is_insert(&seen, table.as_deref()) {
            let fault = plan.lock().unwrap().pop();
            match fault {
                Some(Fault::LoseAck) => drop_answer.store(true, Ordering::SeqCst),
                Some(Fault::LoseRequest) => {
                    reqs.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Some(Fault::DelayAnswer(ms)) => delay_ms.store(ms, Ordering::SeqCst),
                Some(Fault::Pass) | None => {}
            }
        }
        let keep = seen.len().saturating_sub(64);
        tail = seen.split_off(keep);
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = back.join();
}

/// Whether these bytes hold the request line of a batch INSERT (the statement is in the URL;
/// the schema's own INSERTs at start-up are not RowBinary).
fn is_insert(bytes: &[u8], table: Option<&str>) -> bool {
    let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w.eq_ignore_ascii_case(s));
    has(b"query=INSERT") && has(b"RowBinary") && table.is_none_or(|t| has(t.as_bytes()))
}
