//! JetStream for respond: the connection, the streams it writes (`COMMANDS`, `ACTIONS`,
//! created when missing) and its key-value buckets.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv, stream};

use crate::config::RespondConfig;

/// Connects with the configured credentials; refused ones are a config error.
pub async fn connect(cfg: &RespondConfig) -> Result<jetstream::Context> {
    let n = &cfg.nats;
    let conn = pipeline_detect::online::config::NatsConfig {
        url: n.url.clone(),
        token: n.token.clone(),
        user: n.user.clone(),
        password: n.password.clone(),
        ca_file: n.ca_file.clone(),
        timeout_secs: n.timeout_secs,
        ..Default::default()
    };
    pipeline_detect::online::connect_nats(&conn, "pipeline-respond".into()).await
}

/// Streams `COMMANDS` (`commands.>`, a duplicate window of at least a command's longest
/// validity, so a command re-sent after a crash is stored once), `ACTIONS` (`actions.>`) and
/// `REQUESTS` (the console's operator requests, `respond.requests`).
pub async fn streams(js: &jetstream::Context, cfg: &RespondConfig) -> Result<()> {
    let n = &cfg.nats;
    for (name, subject, max_age, window) in [
        (
            pipeline_command::COMMANDS_STREAM,
            "commands.>",
            n.commands_max_age_secs,
            n.commands_duplicate_window_secs,
        ),
        (
            pipeline_command::ACTIONS_STREAM,
            "actions.>",
            n.actions_max_age_secs,
            n.commands_duplicate_window_secs,
        ),
        (
            pipeline_command::REQUESTS_STREAM,
            pipeline_command::REQUESTS_SUBJECT,
            pipeline_command::request::REQUESTS_MAX_AGE_SECS,
            n.commands_duplicate_window_secs,
        ),
    ] {
        js.get_or_create_stream(stream::Config {
            name: name.to_string(),
            subjects: vec![subject.to_string()],
            max_age: Duration::from_secs(max_age),
            duplicate_window: Duration::from_secs(window),
            num_replicas: n.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {name}"))?;
    }
    Ok(())
}

/// A key-value bucket whose keys expire after `max_age`, created when missing. Its stream is
/// made directly as `create_key_value` would: that call first asks for the account's limits
/// in a form nats-server 2.9 does not answer.
pub async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        duplicate_window: max_age.min(Duration::from_secs(120)),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the bucket {name}"))?;
    js.get_key_value(name)
        .await
        .with_context(|| format!("opening the bucket {name}"))
}
