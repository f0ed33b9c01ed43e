//! `pipeline console`: the NOC console. An axum server with a JSON API (`/api/v1/...`) over the
//! ClickHouse tables the sensor writes, and the web UI's static files (`web/dist`).
//!
//! Layering, as in Akvorado's console: [`filter`] parses the filter language into an AST and
//! renders it as SQL over known columns only; [`schema`] knows the fields and which tables hold
//! them (checked against the server at start-up); [`query`] builds each endpoint's SQL and
//! picks the coarsest table that answers it; [`ch`] runs it over ClickHouse's HTTP interface
//! with query limits; [`api`] is the HTTP layer, [`auth`] sessions, CSRF and roles; [`live`]
//! reads JetStream `ALERTS` for the live alerts page, [`scrape`] the sensors' `/metrics`.

pub mod api;
pub mod auth;
pub mod ch;
pub mod config;
pub mod filter;
pub mod live;
pub mod query;
pub mod schema;
pub mod scrape;

use clap::{Args as ClapArgs, Subcommand};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

/// `pipeline console ...`
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Serve the console (web UI and JSON API).
    Serve {
        /// Console config (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config and print the effective one.
    CheckConfig { config: PathBuf },
    /// Read a password on stdin (one line) and print its argon2id hash for `[[users]]`.
    HashPassword,
}

/// Runs one `pipeline console` subcommand. Exit codes: 0 ok, 1 runtime failure, 2 bad config.
pub fn run(args: Args) -> ExitCode {
    match args.cmd {
        Cmd::HashPassword => hash_password(),
        Cmd::CheckConfig { config } => match config::Config::load(&config) {
            Ok(c) => {
                println!("{}", c.effective());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::Serve { config } => {
            let cfg = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            init_logs();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("console: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(api::serve(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(api::ServeError::Config(e)) => {
                    eprintln!("console config {}: {e}", config.display());
                    ExitCode::from(2)
                }
                Err(api::ServeError::Runtime(e)) => {
                    eprintln!("console: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("console: cannot read the password from stdin");
        return ExitCode::from(2);
    }
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        eprintln!("console: empty password on stdin");
        return ExitCode::from(2);
    }
    match auth::hash_password(pw) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("console: {e}");
            ExitCode::from(1)
        }
    }
}
