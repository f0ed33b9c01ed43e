//! `pipeline respond --config FILE`: the durable consumer of `ALERTS` and, beside it, the
//! audit writer (the durable consumer of `ACTIONS` into table `actions`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use ipnet::IpNet;
use pipeline_command::audit::ActionRecord;
use tokio::sync::{watch, Semaphore};

use crate::alert::Alert;
use crate::config::{config_error, RespondConfig};
use crate::guard::{Guard, Ledger};
use crate::metrics::Metrics;
use crate::nats;
use crate::notify::{backoff, Notifier};
use crate::playbook::{Playbook, MAX_BLOCK};
use crate::steps::{now_ms, Ctx};
use crate::tables::Tables;

/// Largest action record the audit writer reads.
const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The hosts of the NATS and ClickHouse URLs, resolved: never blocked (a block must not cut
/// respond or the sensors off their sinks).
async fn sink_addresses(cfg: &RespondConfig) -> Vec<IpNet> {
    let mut hosts = Vec::new();
    for u in cfg.nats.url.split(',') {
        if let Ok(uri) = u.trim().parse::<hyper::Uri>() {
            if let Some(h) = uri.host() {
                hosts.push((
                    h.trim_matches(['[', ']']).to_string(),
                    uri.port_u16().unwrap_or(4222),
                ));
            }
        }
    }
    if let Ok(uri) = cfg.clickhouse.url.parse::<hyper::Uri>() {
        if let Some(h) = uri.host() {
            hosts.push((
                h.trim_matches(['[', ']']).to_string(),
                uri.port_u16().unwrap_or(8123),
            ));
        }
    }
    let mut out: Vec<IpNet> = vec![
        "127.0.0.0/8".parse().expect("a CIDR"),
        "::1/128".parse().expect("a CIDR"),
    ];
    for (h, port) in hosts {
        match tokio::net::lookup_host((h.as_str(), port)).await {
            Ok(addrs) => out.extend(addrs.map(|a| IpNet::from(a.ip()))),
            Err(e) => tracing::warn!("cannot resolve {h} to protect it from blocks: {e}"),
        }
    }
    out
}

/// The ledger of blocks from before a restart, into `guard`.
async fn restore(ctx: &Ctx) -> Result<()> {
    let mut keys = ctx
        .blocks
        .keys()
        .await
        .context("listing the block ledger")?;
    let mut n = 0;
    while let Some(k) = keys.next().await {
        let Ok(k) = k else { continue };
        if let Ok(Some(v)) = ctx.blocks.get(&k).await {
            if let Ok(l) = serde_json::from_slice::<Ledger>(&v) {
                ctx.guard
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .restore(k, l);
                n += 1;
            }
        }
    }
    tracing::info!("block ledger: {n} entries restored");
    Ok(())
}

/// Forgets expired blocks (in memory and in the bucket) and publishes the active count.
async fn prune(ctx: &Ctx) {
    let now = now_ms();
    let (gone, active) = {
        let mut g = ctx.guard.lock().unwrap_or_else(|e| e.into_inner());
        (g.prune(now), g.active(now))
    };
    ctx.metrics.active_blocks.store(active as u64, Relaxed);
    for id in gone {
        let _ = ctx.blocks.purge(&id).await;
    }
}

/// Waits until the alerts' stream exists (`pipeline detect` creates it).
async fn alerts_stream(js: &jetstream::Context, cfg: &RespondConfig) -> jetstream::stream::Stream {
    let mut waited = 0u32;
    loop {
        match js.get_stream(&cfg.nats.alerts_stream).await {
            Ok(s) => return s,
            Err(e) => {
                if waited.is_multiple_of(50) {
                    tracing::info!("waiting for stream {}: {e}", cfg.nats.alerts_stream);
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Handles one delivered alert in its own task; acknowledges it when every step is done.
fn spawn_alert(ctx: Arc<Ctx>, msg: jetstream::Message, permit: tokio::sync::OwnedSemaphorePermit) {
    tokio::spawn(async move {
        ctx.metrics.alerts.fetch_add(1, Relaxed);
        let res = match Alert::parse(&msg.payload) {
            Ok(a) => ctx.handle(&a).await,
            Err(e) => {
                let n = ctx.metrics.malformed.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!("alert skipped ({n} so far): {e}");
                }
                Ok(())
            }
        };
        match res {
            Ok(()) => {
                if let Err(e) = msg.double_ack().await {
                    tracing::warn!("acknowledging an alert: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("alert left for a retry: {e:#}");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                    .await;
            }
        }
        drop(permit);
    });
}

/// The consumer of alerts until `stop`, then waits for the alerts in hand.
async fn consume(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let cfg = &ctx.cfg;
    // A stop while the stream does not exist yet (detect never ran) ends at once.
    let stream = tokio::select! {
        s = alerts_stream(&ctx.js, cfg) => s,
        _ = stop.changed() => return Ok(()),
    };
    let consumer = stream
        .get_or_create_consumer(
            &cfg.nats.durable,
            pull::Config {
                durable_name: Some(cfg.nats.durable.clone()),
                filter_subject: format!("{}.>", cfg.nats.alerts_subject),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(cfg.nats.ack_wait_secs),
                deliver_policy: DeliverPolicy::All,
                max_ack_pending: (cfg.max_concurrent_alerts * 4) as i64,
                ..Default::default()
            },
        )
        .await
        .context("creating the alerts consumer")?;
    let limit = cfg.max_concurrent_alerts;
    let sem = Arc::new(Semaphore::new(limit));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    'outer: loop {
        let mut msgs = consumer.messages().await.context("reading alerts")?;
        loop {
            tokio::select! {
                _ = stop.changed() => break 'outer,
                _ = tick.tick() => prune(&ctx).await,
                m = msgs.next() => match m {
                    Some(Ok(msg)) => {
                        let permit = sem.clone().acquire_owned().await?;
                        spawn_alert(ctx.clone(), msg, permit);
                    }
                    Some(Err(e)) => tracing::warn!("alerts consumer: {e}"),
                    None => break,
                },
            }
        }
    }
    let _ = sem.acquire_many(limit as u32).await?;
    Ok(())
}

/// The audit writer: records of `ACTIONS` into table `actions`, acknowledged once stored.
async fn audit_writer(
    js: jetstream::Context,
    tables: Arc<Tables>,
    cfg: RespondConfig,
    m: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut tries = 0;
    while let Err(e) = tables.migrate().await {
        tracing::warn!("audit writer: clickhouse not ready ({e:?}); retrying");
        tokio::time::sleep(backoff(
            Duration::from_millis(500),
            Duration::from_secs(10),
            tries,
        ))
        .await;
        tries += 1;
        if *stop.borrow() {
            return Ok(());
        }
    }
    let stream = js.get_stream(pipeline_command::ACTIONS_STREAM).await?;
    let consumer = stream
        .get_or_create_consumer(
            &cfg.audit.durable,
            pull::Config {
                durable_name: Some(cfg.audit.durable.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(cfg.nats.ack_wait_secs),
                max_ack_pending: (cfg.audit.batch * 2) as i64,
                ..Default::default()
            },
        )
        .await
        .context("creating the audit consumer")?;
    while !*stop.borrow() {
        let batch = consumer
            .fetch()
            .max_messages(cfg.audit.batch)
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("audit writer: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut msgs = Vec::new();
        let mut recs = Vec::new();
        while let Some(Ok(msg)) = batch.next().await {
            match serde_json::from_slice::<ActionRecord>(&msg.payload)
                .ok()
                .filter(|_| msg.payload.len() <= MAX_RECORD_BYTES)
            {
                Some(r) => recs.push(r),
                None => {
                    m.audit_malformed.fetch_add(1, Relaxed);
                }
            }
            msgs.push(msg);
        }
        if msgs.is_empty() {
            continue;
        }
        let mut n = 0;
        loop {
            match tables.insert_actions(&recs).await {
                Ok(new) => {
                    m.audit_inserted.fetch_add(new as u64, Relaxed);
                    m.audit_duplicate
                        .fetch_add((recs.len() - new) as u64, Relaxed);
                    break;
                }
                Err(e) => {
                    m.audit_insert_errors.fetch_add(1, Relaxed);
                    tracing::warn!("audit writer: insert failed ({e:?}); retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(Duration::from_millis(200), Duration::from_secs(5), n)) => {}
                        _ = stop.changed() => return Ok(()),
                    }
                    n += 1;
                }
            }
        }
        for msg in msgs {
            let _ = msg.ack().await;
        }
    }
    Ok(())
}

/// Runs respond until SIGINT or SIGTERM.
pub async fn run(
    cfg: RespondConfig,
    playbooks: Vec<Playbook>,
    key: Option<ed25519_dalek::SigningKey>,
) -> Result<()> {
    let js = nats::connect(&cfg).await?;
    nats::streams(&js, &cfg).await?;
    let n = &cfg.nats;
    let done = nats::bucket(
        &js,
        &format!("{}-done", n.durable),
        Duration::from_secs(n.done_max_age_secs),
        n.replicas,
    )
    .await?;
    let blocks = nats::bucket(
        &js,
        &format!("{}-blocks", n.durable),
        MAX_BLOCK + Duration::from_secs(120),
        n.replicas,
    )
    .await?;
    let mut protected = cfg.protected()?;
    protected.extend(sink_addresses(&cfg).await);
    let tables = if cfg.clickhouse.url.is_empty() {
        None
    } else {
        let t = Tables::new(&cfg)?;
        if let Err(sensor_export::sink::SendError::Fatal(why)) = t.migrate().await {
            return Err(config_error("clickhouse.url", why).into());
        }
        Some(Arc::new(t))
    };
    let metrics = Arc::new(Metrics::default());
    let _server = if cfg.metrics_listen.is_empty() {
        None
    } else {
        let m = metrics.clone();
        Some(
            sensor_export::prometheus::MetricsServer::serve(&cfg.metrics_listen, move || {
                m.render()
            })
            .map_err(|e| config_error("metrics_listen", format!("{e:#}")))?,
        )
    };
    let guard = Guard::new(
        protected,
        cfg.guard.max_blocks_per_minute,
        cfg.guard.max_active_blocks,
    );
    let ctx = Arc::new(Ctx {
        playbooks,
        js: js.clone(),
        done,
        blocks,
        guard: Mutex::new(guard),
        key,
        notifier: Notifier::new()?,
        tables: tables.clone(),
        metrics: metrics.clone(),
        cfg: cfg.clone(),
    });
    restore(&ctx).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = match (&tables, cfg.audit.writer) {
        (Some(t), true) => Some(tokio::spawn(audit_writer(
            js.clone(),
            t.clone(),
            cfg.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ))),
        _ => None,
    };
    let mut requests = tokio::spawn(crate::operator::consume(ctx.clone(), stop_rx.clone()));
    let mut consumer = tokio::spawn(consume(ctx, stop_rx));
    tokio::select! {
        _ = pipeline_detect::online::wait_for_signal() => {}
        r = &mut consumer => return r.context("the alerts consumer failed")?,
        r = &mut requests => return r.context("the requests consumer failed")?,
    }
    tracing::info!("stopping: finishing the alerts in hand");
    let _ = stop_tx.send(true);
    consumer.await.context("the alerts consumer failed")??;
    requests.await.context("the requests consumer failed")??;
    if let Some(w) = writer {
        w.await.context("the audit writer failed")??;
    }
    Ok(())
}
