//! `floor --iface IF --mode xdp-drop|xdp-pass|afxdp [--queue N] [--duration S] [--config F]`:
//! the live benchmark's floors on an interface (see `sensor_testkit::floor`). Prints one line of
//! counts when it stops (after `--duration`, or on SIGINT/SIGTERM). Exit 2 on bad arguments or
//! config, 1 when the floor cannot run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sensor::config::Config;
use sensor_testkit::floor::{self, FloorMode};

#[derive(Parser)]
#[command(
    about = "Benchmark floor on an interface: XDP count-and-drop, or a bare AF_XDP receive loop"
)]
struct Args {
    #[arg(long)]
    iface: String,
    #[arg(long, value_enum)]
    mode: FloorMode,
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Seconds to run (or until SIGINT/SIGTERM).
    #[arg(long, default_value_t = 3600.0)]
    duration: f64,
    /// Configuration file: the AF_XDP floor's socket takes its `[live]` ring and frame sizes,
    /// as `sensor run` would (default: the defaults).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let usage = |msg: String| {
        eprintln!("floor: {msg}");
        ExitCode::from(2)
    };
    let cfg = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => return usage(format!("config error: {}: {e}", p.display())),
        },
        None => Config::default(),
    };
    if let Err(e) = cfg.validate() {
        return usage(format!("config error: {e}"));
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return usage(format!(
            "--duration: must be a positive number of seconds, got {}",
            args.duration
        ));
    }
    if sensor::pipeline::rx_queues(&args.iface).is_none() {
        return usage(format!("--iface: interface {:?} not found", args.iface));
    }
    match floor::run(
        &args.iface,
        args.mode,
        args.queue,
        &cfg.live,
        std::time::Duration::from_secs_f64(args.duration),
    ) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("floor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
