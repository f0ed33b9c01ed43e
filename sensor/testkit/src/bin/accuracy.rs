//! `accuracy [DIR] [--workers N] [--detail N]`: replays every capture of DIR (default
//! `../shared/pcaps/real`) and prints, per protocol, tshark's count, ours, matched, missed,
//! extra, recall and precision, then the files behind each miss and extra. See
//! `sensor_testkit::accuracy`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Compare the sensor's extraction with tshark's on a folder of real captures")]
struct Args {
    /// Folder with the captures and their `expected/` tshark tables.
    #[arg(default_value = "../shared/pcaps/real")]
    dir: PathBuf,
    /// DPI workers per replay.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Lines of detail (missed or extra items) shown per file and protocol.
    #[arg(long, default_value_t = 5)]
    detail: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.dir.join("expected").is_dir() {
        eprintln!(
            "accuracy: {} has no expected/ folder of tshark tables",
            args.dir.display()
        );
        return ExitCode::from(2);
    }
    let tty = std::io::stderr().is_terminal();
    let mut n = 0;
    let report = sensor_testkit::accuracy::run(&args.dir, args.workers, |name| {
        n += 1;
        if tty {
            eprint!("\r\x1b[K[{n}] {name}");
        }
    });
    if tty {
        eprint!("\r\x1b[K");
    }
    match report {
        Ok(r) => {
            print!("{}", r.render(args.detail));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("accuracy: {e:#}");
            ExitCode::FAILURE
        }
    }
}
