//! `pipeline`: the downstream system's binary. One subcommand per job; each job's work lives
//! in its library crate behind one function, so this file only parses and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

/// mimalloc rather than the system allocator, as in the sensor: detection allocates small,
/// short-lived strings (group keys, references, evidence) per record, where glibc's malloc
/// and free were a sixth of `pipeline detect`'s CPU (benches/README.md, "Detection").
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Downstream jobs over the sensor's records: detection, response and the NOC console"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the detection rules: over EVE records, printing alerts as EVE lines (`--eve`), or
    /// online as a durable JetStream consumer (`--config FILE`).
    Detect(DetectCmd),
    /// The NOC console: web UI and JSON API over ClickHouse.
    Console(pipeline_console::Args),
    /// Validate rule files: one line per error (file, rule, key), exit 2 when any.
    CheckRules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the response playbooks over the alerts (durable JetStream consumer): signed blocks
    /// to the sensors, notifications, host tags, and the audit trail; see
    /// `config/pipeline-respond.example.toml`.
    Respond {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate playbook files: one line per error (file, playbook, field), exit 2 when any.
    CheckPlaybooks {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a new Ed25519 key pair for signing sensor commands (command.key, command.pub).
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct DetectCmd {
    /// Online: the consumer's TOML config (NATS, ClickHouse, rules, state); see
    /// `config/pipeline-detect.example.toml`.
    #[arg(long, value_name = "FILE", conflicts_with = "eve")]
    config: Option<PathBuf>,
    #[command(flatten)]
    offline: pipeline_detect::offline::DetectArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 2 } else { 0 });
        }
    };
    let code = match cli.cmd {
        Cmd::Detect(DetectCmd {
            config: Some(path), ..
        }) => pipeline_detect::online::main(&path),
        Cmd::Detect(args) => pipeline_detect::offline::detect(&args.offline),
        Cmd::CheckRules { files } => pipeline_detect::offline::check_rules(&files),
        Cmd::Console(a) => return pipeline_console::run(a),
        Cmd::Respond { config } => pipeline_respond::main(&config),
        Cmd::CheckPlaybooks { files } => pipeline_respond::check_playbooks(&files),
        Cmd::Keygen { out } => pipeline_respond::keygen(&out),
    };
    ExitCode::from(code)
}
