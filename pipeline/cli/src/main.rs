//! `pipeline`: a thin dispatcher; each subcommand's work lives in its library crate.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Downstream jobs over the sensor's records"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The NOC console: web UI and JSON API over ClickHouse.
    Console(pipeline_console::Args),
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Console(a) => pipeline_console::run(a),
    }
}
