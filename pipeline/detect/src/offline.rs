//! `pipeline detect --eve FILE|-` and `pipeline check-rules FILE...`: the engine over EVE
//! lines, no server needed. Alerts go to stdout as EVE lines, the summary to stderr.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::alert::Alert;
use crate::engine::{Engine, EngineConfig};
use crate::intel::IntelSet;
use crate::lines::{self, Line};
use crate::record::Record;
use crate::rules::RuleSet;

/// Arguments of `pipeline detect` (offline part).
#[derive(Debug, Clone, clap::Args)]
pub struct DetectArgs {
    /// EVE JSON lines to read (`-` for standard input).
    #[arg(long, value_name = "FILE|-")]
    pub eve: Option<String>,
    /// Rules: a directory of `*.toml` files or files (repeatable).
    #[arg(long, value_name = "DIR|FILE", default_value = "config/rules")]
    pub rules: Vec<PathBuf>,
    /// Indicator files: `PATH` (Zeek Intel format, or a list with a `#type` line) or
    /// `TYPE:PATH` (a plain list of one type). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub intel: Vec<String>,
    /// Seconds a record may arrive behind the latest event time and still count.
    #[arg(long, default_value_t = 60)]
    pub lateness: u64,
    /// `sensor_id` for records without one.
    #[arg(long, default_value = "-")]
    pub sensor_id: String,
    /// How often (wall-clock seconds) intel files are checked for changes.
    #[arg(long, default_value_t = 1.0)]
    pub intel_check_secs: f64,
}

/// Exit status of a command: 0 ok, 1 runtime failure, 2 bad usage or config.
pub type Exit = u8;

/// Loads rules, printing one line per error; `None` after errors.
pub fn load_rules(paths: &[PathBuf]) -> Option<RuleSet> {
    match RuleSet::load(paths) {
        Ok(r) => Some(r),
        Err(errors) => {
            for e in errors {
                eprintln!("rules error: {e}");
            }
            None
        }
    }
}

/// `pipeline detect --eve`.
pub fn detect(args: &DetectArgs) -> Exit {
    let Some(eve) = args.eve.as_deref() else {
        eprintln!("usage error: detect needs --eve FILE|- (the online mode is --config)");
        return 2;
    };
    let Some(rules) = load_rules(&args.rules) else {
        return 2;
    };
    let intel = match IntelSet::load(&args.intel) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("config error: {e}");
            return 2;
        }
    };
    let input: Box<dyn Read> = if eve == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(eve) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("error: --eve {eve}: {e}");
                return 1;
            }
        }
    };
    let cfg = EngineConfig {
        lateness_secs: args.lateness,
        sensor_id: args.sensor_id.clone(),
        ..EngineConfig::default()
    };
    let st = intel.stats().clone();
    if !args.intel.is_empty() {
        eprintln!(
            "intel: {} indicators from {} files in {:.2}s, {} bytes ({:.1} bytes/indicator); invalid {}, unsupported {}, malformed {}, unreadable files {}",
            st.indicators, st.files, st.load_seconds, st.heap_bytes,
            st.heap_bytes as f64 / st.indicators.max(1) as f64,
            st.invalid, st.unsupported, st.malformed, st.unreadable_files
        );
    }
    let mut engine = Engine::new(rules, intel, cfg);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let res = run(
        &mut engine,
        BufReader::with_capacity(1 << 20, input),
        &mut out,
        args.intel_check_secs,
    );
    let flushed = out.flush().map_err(|e| format!("writing alerts: {e}"));
    match res.and_then(|c| flushed.map(|_| c)) {
        Ok(counts) => {
            summary(&engine, &counts);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// What the reading loop counted.
#[derive(Debug, Default)]
pub struct Counts {
    pub lines: u64,
    pub malformed: u64,
    pub intel_reloads: u64,
}

/// The longest EVE line read (the sensor's largest records are a few kilobytes; NATS carries
/// at most 1 MiB): a longer line is skipped as malformed, so memory stays bounded.
pub const MAX_EVE_LINE: usize = 4 << 20;

/// Reads EVE lines into the engine, writing alerts as they come; ends with
/// [`Engine::finish`].
pub fn run<R: Read>(
    engine: &mut Engine,
    mut input: BufReader<R>,
    out: &mut impl Write,
    intel_check_secs: f64,
) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut line = Vec::new();
    let check_every = Duration::from_secs_f64(intel_check_secs.max(0.01));
    let mut last_check = Instant::now();
    loop {
        line.clear();
        // Reading from an idle pipe: the wait may have been long, so intel files are checked
        // before the next record is applied (an indicator added meanwhile applies to it).
        let was_idle = input.buffer().is_empty();
        let read = lines::read_line(&mut input, &mut line, MAX_EVE_LINE)
            .map_err(|e| format!("reading EVE: {e}"))?;
        if read == Line::Eof {
            break;
        }
        if (was_idle || counts.lines % 1024 == 0) && last_check.elapsed() >= check_every {
            last_check = Instant::now();
            if engine.intel_mut().reload_if_changed() {
                counts.intel_reloads += 1;
            }
        }
        let text = trim_line(&line);
        if text.is_empty() && read == Line::Line {
            continue;
        }
        counts.lines += 1;
        let parsed = match read {
            Line::TooLong => Err(format!("longer than {MAX_EVE_LINE} bytes")),
            _ => Record::parse_bytes(text).map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(rec) => engine.process(&rec, &mut alerts),
            Err(e) => {
                counts.malformed += 1;
                if counts.malformed.is_power_of_two() {
                    tracing::warn!(line = counts.lines, error = %e, "malformed EVE line skipped");
                }
            }
        }
        write_alerts(out, &mut alerts)?;
        // Interactive use (a pipe from a live source): alerts appear as they are found.
        if input.buffer().is_empty() {
            out.flush().map_err(|e| format!("writing alerts: {e}"))?;
        }
    }
    engine.finish(&mut alerts);
    write_alerts(out, &mut alerts)?;
    Ok(counts)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

fn write_alerts(out: &mut impl Write, alerts: &mut Vec<Alert>) -> Result<(), String> {
    for a in alerts.drain(..) {
        out.write_all(a.to_eve().as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| format!("writing alerts: {e}"))?;
    }
    Ok(())
}

fn summary(engine: &Engine, c: &Counts) {
    let st = engine.stats();
    let mut errors = 0;
    let mut late = 0;
    let mut evicted = 0;
    let mut by_rule = Vec::new();
    for (meta, rs, _) in engine.rule_stats() {
        errors += rs.eval_errors;
        late += rs.late;
        evicted += rs.evicted;
        if rs.alerts > 0 || rs.eval_errors > 0 {
            by_rule.push(format!("{}={}", meta.name, rs.alerts));
        }
    }
    eprintln!(
        "detect: records {} malformed {} eval_errors {} late {} evicted {} alerts {} intel_reloads {} (reload errors {})",
        st.records, c.malformed, errors, late, evicted, st.alerts, c.intel_reloads, engine.intel().reload_errors
    );
    if !by_rule.is_empty() {
        eprintln!("alerts by rule: {}", by_rule.join(" "));
    }
    for (meta, rs, _) in engine.rule_stats() {
        if rs.eval_errors > 0 {
            eprintln!("eval errors: rule {}: {}", meta.name, rs.eval_errors);
        }
    }
}

/// `pipeline check-rules FILE...`: every error on its own line, exit 2 when any.
pub fn check_rules(paths: &[PathBuf]) -> Exit {
    match RuleSet::load(paths) {
        Ok(set) => {
            println!("ok: {} rules", set.len());
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
