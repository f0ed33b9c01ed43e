//! JetStream for respond: the connection, the streams it writes (`COMMANDS`, `ACTIONS`,
//! created when missing) and its key-value buckets.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv, stream};

use crate::config::{config_error, RespondConfig};

/// Connects with the configured credentials; refused ones are a config error.
pub async fn connect(cfg: &RespondConfig) -> Result<jetstream::Context> {
    let n = &cfg.nats;
    let mut c = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(n.timeout_secs))
        .request_timeout(Some(Duration::from_secs(n.timeout_secs)))
        .name("pipeline-respond");
    if !n.token.is_empty() {
        c = c.token(n.token.clone());
    } else if !n.user.is_empty() {
        c = c.user_and_password(n.user.clone(), n.password.clone());
    }
    if !n.ca_file.is_empty() {
        c = c.add_root_certificates(n.ca_file.clone().into()).require_tls(true);
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

/// Streams `COMMANDS` (`commands.>`, a duplicate window of at least a command's longest
/// validity, so a command re-sent after a crash is stored once) and `ACTIONS` (`actions.>`).
pub async fn streams(js: &jetstream::Context, cfg: &RespondConfig) -> Result<()> {
    let n = &cfg.nats;
    for (name, subject, max_age, window) in [
        (pipeline_command::COMMANDS_STREAM, "commands.>", n.commands_max_age_secs, n.commands_duplicate_window_secs),
        (pipeline_command::ACTIONS_STREAM, "actions.>", n.actions_max_age_secs, n.commands_duplicate_window_secs),
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
pub async fn bucket(js: &jetstream::Context, name: &str, max_age: Duration, replicas: usize) -> Result<kv::Store> {
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
