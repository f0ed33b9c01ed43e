//! The `sensor` binary: command-line parsing, config loading and exit codes.
//! Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config (one line naming the key).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;

use sensor::config::{Config, ConfigError};
use sensor::pipeline::{replay, run_live, EveTarget, LiveOptions, ReplayOptions};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "sensor",
    version,
    about = "Network sensor: flows, TLS/HTTP/DNS metadata, EVE JSON"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Sink flags shared by `replay` and `run`; they override the config file.
#[derive(Args, Default)]
struct SinkArgs {
    /// ClickHouse HTTP interface, e.g. http://127.0.0.1:8123 (config clickhouse.url).
    #[arg(long, value_name = "URL")]
    clickhouse: Option<String>,
    /// NATS server, e.g. nats://127.0.0.1:4222 (config nats.url).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Name of this sensor in rows and subjects (config export.sensor_id; default host name).
    #[arg(long, value_name = "ID")]
    sensor_id: Option<String>,
    /// Seconds shutdown waits for sinks before spooling the rest (config export.drain_timeout).
    #[arg(long, value_name = "SECS")]
    drain_timeout: Option<u64>,
}

impl SinkArgs {
    fn apply(self, cfg: &mut Config) {
        if let Some(u) = self.clickhouse {
            cfg.clickhouse.url = u;
        }
        if let Some(u) = self.nats {
            cfg.nats.url = u;
        }
        if let Some(id) = self.sensor_id {
            cfg.export.sensor_id = id;
        }
        if let Some(t) = self.drain_timeout {
            cfg.export.drain_timeout = t;
        }
    }
}

/// Enrichment flags shared by `replay` and `run`; they override the config's `[enrich]`.
#[derive(Args, Default)]
struct EnrichArgs {
    /// MaxMind-format City or Country database for src/dest_country and _city
    /// (config enrich.geoip_db).
    #[arg(long, value_name = "PATH")]
    geoip_db: Option<String>,
    /// MaxMind-format ASN database for src/dest_asn and _as_org (config enrich.asn_db).
    #[arg(long, value_name = "PATH")]
    asn_db: Option<String>,
    /// The operator's networks, CSV cidr,name[,role[,site]], for src/dest_network
    /// (config enrich.networks).
    #[arg(long, value_name = "PATH")]
    networks: Option<String>,
}

impl EnrichArgs {
    fn apply(self, cfg: &mut Config) {
        let e = &mut cfg.enrich;
        for (flag, key) in [
            (self.geoip_db, &mut e.geoip_db),
            (self.asn_db, &mut e.asn_db),
            (self.networks, &mut e.networks),
        ] {
            if let Some(p) = flag {
                *key = p;
            }
        }
    }
}

/// A runtime error that is really a configuration problem (e.g. refused credentials) exits 2.
fn runtime_failure(e: anyhow::Error) -> Failure {
    match e.downcast_ref::<ConfigError>() {
        Some(c) => Failure::Usage(format!("config error: {c}")),
        None => Failure::Runtime(e),
    }
}

/// `sensor run`'s arguments.
#[derive(clap::Args)]
struct RunArgs {
    /// Interface to capture on.
    #[arg(long)]
    iface: String,
    /// Rx queues to capture, comma-separated (default: config live.queues, else all).
    #[arg(long, value_delimiter = ',')]
    queues: Option<Vec<u32>>,
    /// Configuration file (TOML); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// DPI worker threads (default: cores minus one per capture thread, at least 1).
    #[arg(long)]
    workers: Option<usize>,
    /// EVE JSON output: a file, or - for standard output (default: config, else -).
    #[arg(long)]
    eve: Option<String>,
    /// Turn the kernel bypass of flows whose metadata is extracted off (config live.bypass).
    #[arg(long)]
    no_bypass: bool,
    /// Prometheus endpoint address, empty for none (config live.metrics_addr).
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Stop by itself after this many seconds (as on SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Public key signed commands must carry (config commands.public_key); with --nats,
    /// the sensor consumes commands.<sensor_id>.
    #[arg(long, value_name = "PATH")]
    command_key: Option<String>,
    #[command(flatten)]
    sinks: SinkArgs,
    #[command(flatten)]
    enrich: EnrichArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay pcap/pcapng files through the sensor, as fast as possible by default.
    Replay {
        /// Capture files, replayed one after the other.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Configuration file (TOML); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// DPI worker threads (default: cores minus one, at least 1).
        #[arg(long)]
        workers: Option<usize>,
        /// EVE JSON output: a file, or - for standard output (default: config, else -).
        #[arg(long)]
        eve: Option<String>,
        /// Replay at the recorded timing times X (e.g. 1 = real time, 10 = ten times faster).
        #[arg(long, value_name = "X")]
        speed: Option<f64>,
        /// Only read the files and count frames: the benchmark's floor for our reader.
        #[arg(long)]
        no_decode: bool,
        /// No progress bar even on a terminal.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        sinks: SinkArgs,
        #[command(flatten)]
        enrich: EnrichArgs,
    },
    /// Live capture from an interface: XDP program + AF_XDP sockets, until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig { path: PathBuf },
    /// Show or change the XDP blocklist of a running `sensor run` (over its control socket).
    Blocklist {
        #[command(subcommand)]
        op: BlocklistOp,
        /// The sensor's control socket (default: live.control_socket of --config, else
        /// /run/sensor/<--iface>.sock, else the only socket in /run/sensor).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        /// The running sensor's configuration file, to find its control socket.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// The interface the sensor captures on, to find its control socket.
        #[arg(long, global = true)]
        iface: Option<String>,
    },
}

#[derive(Subcommand)]
enum BlocklistOp {
    /// Every entry: CIDR, source (file, command, operator), time left, alert id.
    List,
    /// Block ADDRESS[/LEN] (kept across restarts like a command's block).
    Add {
        cidr: String,
        /// Lifetime in seconds (default: until deleted).
        #[arg(long)]
        secs: Option<u64>,
    },
    /// Remove an operator's or a command's block of exactly ADDRESS[/LEN].
    Del { cidr: String },
}

enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Usage(format!("config error: {e}"))
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    let cfg = match path {
        Some(p) => Config::load(p)
            .map_err(|e| Failure::Usage(format!("config error: {}: {e}", p.display())))?,
        None => Config::default(),
    };
    Ok(cfg)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::CheckConfig { path } => {
            let cfg = load_config(Some(&path))?;
            cfg.validate()?;
            sensor::export::enrich::check(&cfg.enrich)?;
            sensor::command::check(&cfg)?;
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Cmd::Blocklist {
            op,
            socket,
            config,
            iface,
        } => blocklist(op, socket, config, iface),
        Cmd::Run(args) => run_capture(args),
        Cmd::Replay {
            files,
            config,
            workers,
            eve,
            speed,
            no_decode,
            quiet,
            sinks,
            enrich,
        } => {
            let mut cfg = load_config(config.as_ref())?;
            if let Some(w) = workers {
                if w == 0 {
                    return Err(Failure::Usage("--workers: must be at least 1".into()));
                }
                cfg.sensor.workers = w;
            }
            if let Some(e) = eve {
                cfg.output.eve = e;
            }
            sinks.apply(&mut cfg);
            enrich.apply(&mut cfg);
            if let Some(x) = speed {
                if !(x.is_finite() && x > 0.0) {
                    return Err(Failure::Usage(format!(
                        "--speed: must be a positive number, got {x}"
                    )));
                }
            }
            cfg.validate()?;
            let opts = ReplayOptions {
                files,
                eve: EveTarget::parse(&cfg.output.eve),
                config: cfg,
                speed,
                no_decode,
                progress: !quiet,
            };
            sensor::pipeline::install_stop_signals().map_err(Failure::Runtime)?;
            let summary = replay(&opts).map_err(runtime_failure)?;
            eprintln!("{summary}");
            Ok(())
        }
    }
}

/// `sensor run`: flags over the config, checks, then the live capture until it stops.
fn run_capture(args: RunArgs) -> Result<(), Failure> {
    let RunArgs {
        iface,
        queues,
        config,
        workers,
        eve,
        no_bypass,
        metrics_addr,
        duration,
        command_key,
        sinks,
        enrich,
    } = args;
    let mut cfg = load_config(config.as_ref())?;
    if let Some(k) = command_key {
        cfg.commands.public_key = k;
    }
    sinks.apply(&mut cfg);
    enrich.apply(&mut cfg);
    if let Some(w) = workers {
        if w == 0 {
            return Err(Failure::Usage("--workers: must be at least 1".into()));
        }
        cfg.sensor.workers = w;
    }
    if let Some(q) = queues {
        cfg.live.queues = q;
    }
    if let Some(e) = eve {
        cfg.output.eve = e;
    }
    if no_bypass {
        cfg.live.bypass = false;
    }
    if let Some(a) = metrics_addr {
        cfg.live.metrics_addr = a;
    }
    let duration = match duration {
        Some(d) if !(d.is_finite() && d > 0.0) => {
            return Err(Failure::Usage(format!(
                "--duration: must be a positive number of seconds, got {d}"
            )))
        }
        d => d.map(std::time::Duration::from_secs_f64),
    };
    cfg.validate()?;
    if iface.is_empty() || sensor::pipeline::rx_queues(&iface).is_none() {
        return Err(Failure::Usage(format!(
            "--iface: interface {iface:?} not found"
        )));
    }
    let opts = LiveOptions {
        iface,
        eve: EveTarget::parse(&cfg.output.eve),
        config: cfg,
        duration,
    };
    let summary = run_live(&opts).map_err(runtime_failure)?;
    eprintln!("{summary}");
    Ok(())
}

/// `sensor blocklist`: one request to the running sensor's control socket.
fn blocklist(
    op: BlocklistOp,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    iface: Option<String>,
) -> Result<(), Failure> {
    use sensor::command::socket::{render_list, request, Request};
    let path = match (socket, config, iface) {
        (Some(s), _, _) => s,
        (None, None, None) => only_socket()?,
        (None, cfg, iface) => {
            let cfg = load_config(cfg.as_ref())?;
            match iface {
                Some(i) => cfg.control_socket(&i),
                None if !cfg.live.control_socket.is_empty() => cfg.control_socket(""),
                None => only_socket()?,
            }
        }
    };
    let req = match op {
        BlocklistOp::List => Request::List,
        BlocklistOp::Add { cidr, secs } => Request::Add { cidr, secs },
        BlocklistOp::Del { cidr } => Request::Del { cidr },
    };
    if let Request::Add { cidr, .. } | Request::Del { cidr } = &req {
        sensor::capture::blocklist::parse_net(cidr).map_err(Failure::Usage)?;
    }
    let resp = request(&path, &req).map_err(Failure::Runtime)?;
    if !resp.ok {
        return Err(Failure::Runtime(anyhow::anyhow!("{}", resp.message)));
    }
    match req {
        Request::List => print!("{}", render_list(&resp.entries)),
        _ => println!("{}", resp.message),
    }
    Ok(())
}

/// The one control socket in /run/sensor, when there is exactly one.
fn only_socket() -> Result<PathBuf, Failure> {
    let found: Vec<PathBuf> = std::fs::read_dir("/run/sensor")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::Usage(
            "no control socket in /run/sensor: give --socket, --config or --iface".into(),
        )),
        _ => Err(Failure::Usage(format!(
            "{} control sockets in /run/sensor: give --socket, --config or --iface",
            found.len()
        ))),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // async-nats logs every reconnect attempt and its own copy of errors the
                // NATS sink already reports in one line.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=off")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("sensor: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("sensor: {e:#}");
            ExitCode::from(1)
        }
    }
}
