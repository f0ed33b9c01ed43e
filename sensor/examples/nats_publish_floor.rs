//! The NATS floor of `benches/export.sh`: the least a JetStream publisher can do with the same
//! messages the sensor publishes. Reads EVE lines (the sensor's own output for the same capture),
//! publishes each on `sensor.<id>.<event_type>` with a `Nats-Msg-Id` header and the same window
//! of in-flight acknowledgements, waits for every acknowledgement, and prints
//! `messages seconds rate`.
//!
//! Usage: nats_publish_floor URL USER PASSWORD EVE_FILE SENSOR_ID MAX_INFLIGHT

use std::collections::VecDeque;
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: nats_publish_floor URL USER PASSWORD EVE_FILE SENSOR_ID MAX_INFLIGHT");
        std::process::exit(2);
    }
    let inflight: usize = a[6].parse().unwrap_or(4096);
    let text = std::fs::read_to_string(&a[4]).expect("EVE file");
    let msgs: Vec<(String, String, bytes::Bytes)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let t = l
                .split("\"event_type\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("flow");
            (
                format!("sensor.{}.{t}", a[5]),
                format!("floor:{i}"),
                bytes::Bytes::copy_from_slice(l.as_bytes()),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = async_nats::ConnectOptions::with_user_and_password(a[2].clone(), a[3].clone())
            .connect(a[1].as_str())
            .await
            .expect("connect");
        let js = async_nats::jetstream::ContextBuilder::new()
            .max_ack_inflight(inflight)
            .build(client);
        let start = Instant::now();
        let mut pending = VecDeque::new();
        for (subject, id, payload) in &msgs {
            if pending.len() >= inflight {
                let ack: async_nats::jetstream::context::PublishAckFuture =
                    pending.pop_front().expect("pending ack");
                ack.await.expect("ack");
            }
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id.as_str());
            pending.push_back(
                js.publish_with_headers(subject.clone(), h, payload.clone())
                    .await
                    .expect("publish"),
            );
        }
        while let Some(ack) = pending.pop_front() {
            ack.await.expect("ack");
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{} {secs:.3} {:.0}", msgs.len(), msgs.len() as f64 / secs);
    });
}
