//! `pipeline-respond`: the response end of the pipeline.
//!
//! Data flow (ARCHITECTURE.md, "pipeline respond"): JetStream `ALERTS` -> [`run`] (durable
//! consumer, one task per alert) -> [`alert`] (parse, hostile input) -> [`playbook`] (which
//! playbooks match) -> [`steps`] (each step once: `block` through the [`guard`] rails into a
//! signed command on `COMMANDS`, `notify` over HTTP, `tag` into ClickHouse) -> an audit record
//! per decision on `ACTIONS`, which the audit writer in [`run`] stores in table `actions`
//! ([`tables`]) together with the sensors' own records. Beside it, [`operator`] reads the
//! console's block requests from `REQUESTS` into the same guard rails and signed commands.
//!
//! Commands: `pipeline respond --config FILE` ([`main`]), `pipeline keygen --out DIR`
//! ([`keygen`]), `pipeline check-playbooks FILE...` ([`check_playbooks`]).

pub mod alert;
pub mod config;
pub mod guard;
pub mod metrics;
pub mod nats;
pub mod notify;
pub mod operator;
pub mod playbook;
pub mod run;
pub mod steps;
pub mod tables;

use std::path::{Path, PathBuf};

use anyhow::Context;

use config::{config_error, ConfigError, RespondConfig};
use playbook::{Scope, Step};

/// `pipeline keygen --out DIR`: writes `command.key` (private, mode 600) and `command.pub`.
/// Exit 0, 2 when the folder is unusable or a key file exists, 1 on other failures.
pub fn keygen(dir: &Path) -> u8 {
    if !dir.is_dir() {
        eprintln!("error: --out {}: not a folder", dir.display());
        return 2;
    }
    match pipeline_command::keys::generate(dir) {
        Ok((private, public)) => {
            println!(
                "private key: {}\npublic key: {}",
                private.display(),
                public.display()
            );
            println!("give the public key to the sensors; keep the private key for pipeline respond (signing_key)");
            0
        }
        Err(e @ pipeline_command::keys::KeyError::Exists(_)) => {
            eprintln!("error: {e}");
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `pipeline check-playbooks FILE...`: one line per error (file, playbook, field), exit 2 when
/// any; otherwise one line per playbook.
pub fn check_playbooks(files: &[PathBuf]) -> u8 {
    match playbook::load(files) {
        Ok(pbs) => {
            for p in &pbs {
                let steps: Vec<&str> = p.steps.iter().map(Step::kind).collect();
                println!("{}: playbook {}: ok ({})", p.file, p.name, steps.join(", "));
            }
            0
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            2
        }
    }
}

/// The playbooks of the config, checked against it: one line for the first error.
fn playbooks(cfg: &RespondConfig) -> Result<Vec<playbook::Playbook>, ConfigError> {
    let paths: Vec<PathBuf> = cfg.playbooks.iter().map(PathBuf::from).collect();
    let pbs = playbook::load(&paths).map_err(|errors| {
        let more = match errors.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more; see pipeline check-playbooks)", n - 1),
        };
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        config_error("playbooks", format!("{first}{more}"))
    })?;
    for p in pbs.iter().filter(|p| p.enabled) {
        for s in &p.steps {
            match s {
                Step::Block(b) if b.scope == Scope::All && cfg.sensors.is_empty() => {
                    return Err(config_error(
                        "sensors",
                        format!("playbook {} blocks on all sensors: list them", p.name),
                    ));
                }
                Step::Tag(_) if cfg.clickhouse.url.is_empty() && !cfg.dry_run => {
                    return Err(config_error(
                        "clickhouse.url",
                        format!(
                            "playbook {} tags hosts: they are written to ClickHouse",
                            p.name
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(pbs)
}

/// `pipeline respond --config FILE`: exit 0, 1 on a runtime failure, 2 on a bad config (one
/// line naming the key).
pub fn main(path: &Path) -> u8 {
    let res = (|| {
        let cfg = RespondConfig::load(path)?;
        let key = if cfg.signing_key.is_empty() {
            None
        } else {
            Some(
                pipeline_command::keys::load_signing_key(Path::new(&cfg.signing_key))
                    .map_err(|e| config_error("signing_key", e.to_string()))?,
            )
        };
        let pbs = playbooks(&cfg)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        rt.block_on(run::run(cfg, pbs, key))
    })();
    match res {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<ConfigError>() {
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
