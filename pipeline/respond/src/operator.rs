//! Operator block requests from the console (`pipeline_command::request`), read from stream
//! `REQUESTS` by their own durable consumer: checked as hostile input, put through the same
//! guard rails as a playbook's block (protected networks, blocks per minute, blocks at once,
//! dry run), signed and published, and audited with `console:<user>` as the source.
//!
//! Exactly once: a request's key `request.<id>` in the done bucket is written after its
//! records are published, and the message acknowledged after that. A redelivery finds the key
//! and sends nothing; a crash before the key is written sends again with the same command ids
//! (`Nats-Msg-Id`, inside `COMMANDS`' duplicate window) and record ids, which are stored once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use ipnet::IpNet;
use pipeline_command::audit::{ActionRecord, Outcome};
use pipeline_command::request::{BlockRequest, MAX_REQUEST_BYTES};
use tokio::sync::watch;

use crate::guard::{Admitted, Refusal};
use crate::steps::{hash_id, now_ms, Ctx};

/// One audit record of request `req` for `sensor`; its id is `<request id>:<sensor>:<outcome>`.
fn record(
    req: &BlockRequest,
    sensor: &str,
    target: String,
    outcome: Outcome,
    detail: String,
    command_id: &str,
) -> ActionRecord {
    let why = if req.reason.is_empty() {
        String::new()
    } else {
        format!("; reason: {}", req.reason)
    };
    ActionRecord {
        id: format!("{}:{sensor}:{}", req.id, outcome.as_str()),
        time_ms: now_ms(),
        source: req.source(),
        sensor_id: sensor.to_string(),
        kind: "block".into(),
        target,
        outcome,
        detail: format!("{detail}{why}"),
        alert_id: req.alert_id.clone(),
        command_id: command_id.to_string(),
        playbook: String::new(),
    }
}

/// Records a refusal (one record per sensor concerned, or one) and counts it.
async fn refuse(
    ctx: &Ctx,
    req: &BlockRequest,
    sensors: &[String],
    target: String,
    reason: &str,
    detail: String,
) -> Result<Outcome> {
    ctx.refuse_for(sensors, reason, |s| {
        let cmd = hash_id(&["request", &req.id, s]);
        record(
            req,
            s,
            target.clone(),
            Outcome::Rejected,
            detail.clone(),
            &cmd,
        )
    })
    .await
}

/// The sensors a request goes to, or why it has none.
fn sensors(
    ctx: &Ctx,
    req: &BlockRequest,
) -> std::result::Result<Vec<String>, (&'static str, String)> {
    let known = &ctx.cfg.sensors;
    if req.sensor.is_empty() {
        if known.is_empty() {
            return Err((
                "no_sensor",
                "all sensors: none listed in respond's config (sensors)".into(),
            ));
        }
        return Ok(known.clone());
    }
    if !known.is_empty() && !known.contains(&req.sensor) {
        let detail = format!("sensor {}: not in respond's config (sensors)", req.sensor);
        return Err(("unknown_sensor", detail));
    }
    Ok(vec![req.sensor.clone()])
}

/// The guard's verdict on the request (a dry run checks only the protected networks).
fn admit(
    ctx: &Ctx,
    gid: &str,
    cidr: IpNet,
    now: u64,
    expires: u64,
) -> std::result::Result<Admitted, Refusal> {
    let mut g = ctx.guard.lock().unwrap_or_else(|e| e.into_inner());
    if ctx.cfg.dry_run {
        g.protected(&cidr)
            .map_or(Ok(Admitted::Again), |p| Err(Refusal::Protected(p)))
    } else {
        g.admit(gid, cidr, now, expires)
    }
}

/// Decides on one valid request and publishes its commands and records.
async fn block(ctx: &Ctx, req: &BlockRequest, cidr: IpNet) -> Result<Outcome> {
    let target = cidr.to_string();
    let sensors = match sensors(ctx, req) {
        Ok(s) => s,
        Err((reason, detail)) => return refuse(ctx, req, &[], target, reason, detail).await,
    };
    let now = now_ms();
    let gid = format!("request.{}", req.id);
    let expires = now + req.duration_secs * 1000;
    let admitted = match admit(ctx, &gid, cidr, now, expires) {
        Ok(a) => a,
        Err(r) => return refuse(ctx, req, &sensors, target, r.reason(), r.to_string()).await,
    };
    if ctx.cfg.dry_run {
        for s in &sensors {
            let cmd = hash_id(&["request", &req.id, s]);
            let detail = format!("dry run: would block for {}s", req.duration_secs);
            let r = record(req, s, target.clone(), Outcome::DryRun, detail, &cmd);
            ctx.record(&r).await?;
        }
        return Ok(Outcome::DryRun);
    }
    if admitted == Admitted::New {
        ctx.save_ledger_entry(&gid).await?;
    }
    let alert = Some(req.alert_id.clone()).filter(|a| !a.is_empty());
    for s in &sensors {
        let cmd = hash_id(&["request", &req.id, s]);
        let detail = ctx
            .publish_block(&cmd, s, cidr, req.duration_secs, alert.clone(), now)
            .await?;
        let r = record(req, s, target.clone(), Outcome::Requested, detail, &cmd);
        ctx.record(&r).await?;
    }
    Ok(Outcome::Requested)
}

/// Handles one request message; an error leaves it to be delivered again.
pub async fn handle(ctx: &Ctx, payload: &[u8]) -> Result<()> {
    ctx.metrics.requests.fetch_add(1, Relaxed);
    let req = (payload.len() <= MAX_REQUEST_BYTES)
        .then(|| serde_json::from_slice::<BlockRequest>(payload).ok())
        .flatten()
        .filter(|r| pipeline_command::request::plain_id(&r.id));
    let Some(req) = req else {
        let n = ctx.metrics.requests_malformed.fetch_add(1, Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!("operator request skipped ({n} so far): unreadable");
        }
        return Ok(());
    };
    let key = format!("request.{}", req.id);
    if ctx
        .done
        .get(&key)
        .await
        .context("reading the done bucket")?
        .is_some()
    {
        ctx.metrics.steps_done_before.fetch_add(1, Relaxed);
        return Ok(());
    }
    let outcome = match req.validate() {
        Ok(cidr) => block(ctx, &req, cidr).await?,
        Err(why) => refuse(ctx, &req, &[], req.target.clone(), "invalid", why).await?,
    };
    tracing::info!(
        "operator request {} by {}: {}",
        req.id,
        req.user,
        outcome.as_str()
    );
    ctx.done
        .put(&key, outcome.as_str().into())
        .await
        .context("writing the done bucket")?;
    Ok(())
}

/// The durable consumer of `REQUESTS` until `stop`; requests are rare, so one at a time.
pub async fn consume(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let stream = ctx
        .js
        .get_stream(pipeline_command::REQUESTS_STREAM)
        .await
        .context("opening stream REQUESTS")?;
    let durable = format!("{}-requests", ctx.cfg.nats.durable);
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(ctx.cfg.nats.ack_wait_secs),
                ..Default::default()
            },
        )
        .await
        .context("creating the requests consumer")?;
    'outer: loop {
        let mut msgs = consumer.messages().await.context("reading requests")?;
        loop {
            let msg = tokio::select! {
                _ = stop.changed() => break 'outer,
                m = msgs.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!("requests consumer: {e}");
                        continue;
                    }
                    None => break,
                },
            };
            match handle(&ctx, &msg.payload).await {
                Ok(()) => {
                    if let Err(e) = msg.double_ack().await {
                        tracing::warn!("acknowledging a request: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!("request left for a retry: {e:#}");
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                        .await;
                }
            }
        }
    }
    Ok(())
}
