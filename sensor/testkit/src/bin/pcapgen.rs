//! `pcapgen`: writes the deterministic fixtures of `testdata-pcaps/` and builds large captures
//! for the benchmark by amplifying existing ones, cuts fuzzing seeds from the fixtures, and sends
//! captures onto an interface (the live tests' and benchmark's traffic generator).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pcapgen",
    version,
    about = "Fixture generator and capture amplifier"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write every fixture capture into DIR (byte-identical on every run).
    Fixtures {
        #[arg(long, default_value = "testdata-pcaps")]
        out: PathBuf,
    },
    /// Write the detection engine's attack captures into DIR (byte-identical on every run).
    Attacks {
        #[arg(long, default_value = "testdata-pcaps/attacks")]
        out: PathBuf,
    },
    /// Concatenate copies of Ethernet captures, each copy with rewritten addresses and shifted
    /// timestamps, until the output reaches --target-bytes.
    Amplify(sensor_testkit::gen::amplify::AmplifyArgs),
    /// Write the live benchmark's mix: many concurrent long TLS flows, interleaved.
    Longflows {
        #[arg(long)]
        out: PathBuf,
        /// Concurrent flows.
        #[arg(long, default_value_t = 64)]
        flows: usize,
        /// Application data records each way per flow.
        #[arg(long, default_value_t = 500)]
        records: usize,
    },
    /// Write traffic between addresses the MMDB test databases know (enrichment test and
    /// benchmark): DNS, HTTP and TLS flows in turn.
    Geo {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 12)]
        flows: usize,
    },
    /// Send the Ethernet frames of captures on an interface, at a rate or as fast as possible,
    /// looping with per-loop address rewriting; prints what was sent.
    Send(sensor_testkit::gen::send::SendArgs),
    /// Write fuzzing seeds cut from the fixture captures into OUT/<target>/.
    Seeds {
        #[arg(long, default_value = "testdata-pcaps")]
        fixtures: PathBuf,
        #[arg(long, default_value = "fuzz/corpus")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Fixtures { out } => sensor_testkit::gen::fixtures::write_all(&out).map(|names| {
            for n in names {
                println!("{}", out.join(n).display());
            }
        }),
        Cmd::Attacks { out } => {
            sensor_testkit::gen::fixtures::attacks::write_all(&out).map(|names| {
                for n in names {
                    println!("{}", out.join(n).display());
                }
            })
        }
        Cmd::Amplify(args) => {
            sensor_testkit::gen::amplify::run(&args).map(|report| println!("{report}"))
        }
        Cmd::Longflows {
            out,
            flows,
            records,
        } => sensor_testkit::gen::fixtures::long_flows(flows, records).and_then(|bytes| {
            std::fs::write(&out, bytes)?;
            println!("{}", out.display());
            Ok(())
        }),
        Cmd::Geo { out, flows } => {
            sensor_testkit::gen::fixtures::geo::capture(flows).and_then(|b| {
                std::fs::write(&out, b)?;
                println!("{}", out.display());
                Ok(())
            })
        }
        Cmd::Send(args) => sensor_testkit::gen::send::run(&args).map(|report| println!("{report}")),
        Cmd::Seeds { fixtures, out } => {
            sensor_testkit::gen::seeds::write_all(&fixtures, &out).map(|report| print!("{report}"))
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcapgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
