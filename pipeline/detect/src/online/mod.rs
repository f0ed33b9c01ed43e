//! The online consumer, `pipeline detect --config FILE`: the engine over JetStream stream
//! `SENSOR`, alerts to JetStream `ALERTS` and ClickHouse `alerts`, exactly once across crashes,
//! restarts and several instances.
//!
//! Data flow (see ARCHITECTURE.md, "pipeline detect online"):
//! - [`leases`]: the instance claims partitions (one per sensor) in a key-value bucket and
//!   runs a task per partition it holds;
//! - [`partition`]: a durable pull consumer of the sensor's subjects, records in stream order
//!   through one engine ([`partition::Detector`]), checkpoints (alerts safe, state saved in an
//!   object store, records acknowledged);
//! - [`sinks`]: the sensor's sink drivers, spools and counters, over `ALERTS` and `alerts`;
//! - [`metrics`] renders what `/metrics` shows.
//!
//! This module does not know the rules: it hands records to a [`partition::Detector`] and
//! takes alerts back.

pub mod config;
pub mod engine;
pub mod leases;
pub mod metrics;
pub mod partition;
pub mod sinks;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv, object_store, stream};

use config::{config_error, OnlineConfig};
use metrics::Metrics;
use partition::Factory;
use sinks::AlertSinks;

/// What the lease loop tells a partition task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    /// Checkpoint and end (shutdown, or handing the partition to another instance).
    Stop,
    /// The lease is someone else's: end now, no checkpoint.
    Lost,
}

/// What the partition tasks share.
pub struct Shared {
    pub cfg: OnlineConfig,
    pub stream: stream::Stream,
    pub leases: kv::Store,
    pub states: object_store::ObjectStore,
    pub sinks: tokio::sync::Mutex<AlertSinks>,
    pub metrics: Arc<Metrics>,
    pub factory: Arc<Factory>,
}

/// Connects to NATS with the configured credentials; refused ones are a config error.
async fn connect(cfg: &OnlineConfig) -> Result<jetstream::Context> {
    connect_nats(&cfg.nats, format!("pipeline-detect-{}", cfg.instance)).await
}

/// Connects with the credentials, CA and timeout of `n` (the other pipeline jobs too); refused
/// credentials and certificates are a config error naming the key.
pub async fn connect_nats(n: &config::NatsConfig, name: String) -> Result<jetstream::Context> {
    let mut c = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(n.timeout_secs))
        .request_timeout(Some(Duration::from_secs(n.timeout_secs)))
        .name(name);
    if !n.token.is_empty() {
        c = c.token(n.token.clone());
    } else if !n.user.is_empty() {
        c = c.user_and_password(n.user.clone(), n.password.clone());
    }
    if !n.ca_file.is_empty() {
        c = c
            .add_root_certificates(n.ca_file.clone().into())
            .require_tls(true);
    }
    let client = c.connect(n.url.as_str()).await.map_err(|e| {
        use async_nats::ConnectErrorKind as K;
        match e.kind() {
            K::AuthorizationViolation | K::Authentication => {
                anyhow::Error::from(config_error("nats.password", format!("refused: {e}")))
            }
            K::Tls => config_error("nats.ca_file", format!("TLS: {e}")).into(),
            _ => anyhow::anyhow!("cannot connect to NATS at {}: {e}", n.url),
        }
    })?;
    Ok(jetstream::new(client))
}

/// The lease bucket and the state store of `durable`, created when missing.
async fn stores(
    js: &jetstream::Context,
    cfg: &OnlineConfig,
) -> Result<(kv::Store, object_store::ObjectStore)> {
    let n = &cfg.nats;
    let bucket = format!("{}-leases", n.durable);
    // The bucket's stream as `create_key_value` makes it, created directly: that call first
    // asks for the account's limits in a form nats-server 2.9 does not answer.
    let lease = Duration::from_secs(n.lease_secs);
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: lease,
        duplicate_window: lease,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: n.replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the lease bucket {bucket}"))?;
    let leases = js
        .get_key_value(&bucket)
        .await
        .with_context(|| format!("opening the lease bucket {bucket}"))?;
    let bucket = format!("{}-state", n.durable);
    let states = match js.get_object_store(&bucket).await {
        Ok(s) => s,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                num_replicas: n.replicas,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the state store {bucket}"))?,
    };
    Ok((leases, states))
}

/// Runs the consumer until SIGINT or SIGTERM, then checkpoints, hands its partitions back and
/// drains the sinks. `factory` makes each partition's engine.
pub async fn run(cfg: OnlineConfig, factory: Arc<Factory>) -> Result<()> {
    let js = connect(&cfg).await?;
    let (leases, states) = stores(&js, &cfg).await?;
    let sinks = AlertSinks::start(&cfg).await?;
    let metrics = Arc::new(Metrics::default());
    *metrics.sinks.lock().unwrap_or_else(|e| e.into_inner()) = sinks.counters();
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
    // The sensors create their stream: until one has, there is nothing to do.
    let mut waited = 0u32;
    let stream = loop {
        match js.get_stream(&cfg.nats.stream).await {
            Ok(s) => break s,
            Err(e) => {
                if waited.is_multiple_of(50) {
                    tracing::info!("waiting for stream {}: {e}", cfg.nats.stream);
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let sh = Arc::new(Shared {
        cfg,
        stream,
        leases,
        states,
        sinks: tokio::sync::Mutex::new(sinks),
        metrics,
        factory,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let lease_loop = tokio::spawn(leases::run(sh.clone(), stop_rx));
    wait_for_signal().await;
    tracing::info!("stopping: checkpointing and handing partitions back");
    let _ = stop_tx.send(true);
    lease_loop.await.context("the lease loop failed")??;
    let sh = Arc::into_inner(sh).context("partition tasks still running at shutdown")?;
    for r in sh.sinks.into_inner().finish().await {
        tracing::info!(
            "alerts to {}: {} sent, {} rejected, {} left in the spool",
            r.name,
            r.sent_rows,
            r.failed_rows,
            r.spool_rows_left
        );
    }
    Ok(())
}

/// Returns on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `pipeline detect --config FILE`: loads the config and the rules, runs the consumer on a
/// multi-threaded runtime until SIGINT/SIGTERM. Exit status: 0, 1 on a runtime failure, 2 on a
/// bad config (one line naming the key).
pub fn main(path: &Path) -> u8 {
    let res = (|| {
        let cfg = OnlineConfig::load(path)?;
        let factory = engine::factory(&cfg)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        rt.block_on(run(cfg, factory))
    })();
    match res {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<config::ConfigError>() {
            Some(c) => {
                eprintln!("config error: {c}");
                2
            }
            None => {
                eprintln!("error: {e:#}");
                1
            }
        },
    }
}
