//! The peer of the online benchmark (`benches/detect_online.sh`): a bare async-nats loop that
//! pulls every message of a stream with a durable consumer and acknowledges each one, doing
//! nothing else. Prints `records=N cpu_s=X rate=R` (CPU seconds of this process, user+system,
//! from the first message to the last), the figures `pipeline detect` online is compared with.
//!
//! Usage: `bare_consume NATS_URL STREAM RECORDS [USER PASSWORD]` (RECORDS 0: all the stream
//! holds at start).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;

fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), async_nats::Error> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: bare_consume NATS_URL STREAM RECORDS [USER PASSWORD]");
        std::process::exit(2);
    }
    let mut want: u64 = a[3].parse()?;
    let mut opts = async_nats::ConnectOptions::new();
    if a.len() >= 6 {
        opts = opts.user_and_password(a[4].clone(), a[5].clone());
    }
    let js = jetstream::new(opts.connect(a[1].as_str()).await?);
    let mut stream = js.get_stream(&a[2]).await?;
    if want == 0 {
        want = stream.info().await?.state.messages;
    }
    let _ = stream.delete_consumer("bare").await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bare".into()),
            ack_wait: Duration::from_secs(300),
            max_ack_pending: -1,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut n = 0u64;
    let mut cpu0 = 0.0;
    while let Some(m) = messages.next().await {
        let m = m?;
        if n == 0 {
            cpu0 = cpu_seconds();
        }
        m.ack().await?;
        n += 1;
        if n >= want {
            break;
        }
    }
    let cpu = cpu_seconds() - cpu0;
    println!(
        "records={n} cpu_s={cpu:.3} rate={:.0}",
        n as f64 / cpu.max(0.01)
    );
    Ok(())
}
