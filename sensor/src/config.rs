//! Configuration: a TOML file (see `config/sensor.example.toml`), overridden by CLI flags.
//!
//! Parsing and validation are separate steps, as in Vector: `parse` rejects unknown keys and
//! wrong types, `validate` rejects out-of-range values. Every error is one line that names the
//! key (`flow.max_flows: must be between 1 and 100000000, got 0`); the CLI prints it and exits 2.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::capture::afxdp::BindMode;
use crate::capture::xdp::AttachMode;
use crate::decode::DecodeConfig;
use crate::dispatch::FlowHasher;
use crate::dpi::DpiConfig;
use crate::flow::{BypassProtocols, FlowConfig};
use crate::time::NANOS_PER_SEC;
use sensor_export::config::{range, DAY};
pub use sensor_export::config::{
    ClickHouseSection, ConfigError, ExportConfig, ExportSection, NatsSection, Secret, SpoolSection,
    MASK,
};

/// The whole configuration. Every section and key is optional; defaults are the values shown in
/// `config/sensor.example.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sensor: SensorSection,
    pub output: OutputSection,
    pub flow: FlowSection,
    pub decode: DecodeSection,
    pub dpi: DpiSection,
    pub export: ExportSection,
    pub clickhouse: ClickHouseSection,
    pub nats: NatsSection,
    pub spool: SpoolSection,
    pub live: LiveSection,
    pub enrich: crate::export::enrich::EnrichSection,
    pub commands: CommandsSection,
}

/// Signed commands from `pipeline respond` (`sensor run` with `--nats`): consumed from
/// JetStream stream `COMMANDS`, subject `commands.<sensor_id>`, applied to the XDP blocklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsSection {
    /// The Ed25519 public key commands must be signed with (PKCS#8 PEM, `pipeline keygen`'s
    /// `command.pub`). Empty: no command channel.
    pub public_key: String,
    /// Where command and operator blocks and the nonces of accepted commands are kept across
    /// restarts (JSON, rewritten atomically after every change). Empty: not kept.
    pub state_file: String,
}

impl Default for CommandsSection {
    fn default() -> Self {
        CommandsSection {
            public_key: String::new(),
            state_file: "/var/lib/sensor/blocklist.json".into(),
        }
    }
}

/// Threads and rings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    /// DPI workers; 0 means one per core minus one for the reader, at least 1.
    pub workers: usize,
    /// Pin the reader and each worker to a core of its own (round-robin when there are more
    /// threads than cores).
    pub pin_cores: bool,
    /// Packets each reader->worker ring holds (rounded up by the ring to what it needs).
    pub ring_size: usize,
}

impl Default for SensorSection {
    fn default() -> Self {
        SensorSection {
            workers: 0,
            pin_cores: true,
            ring_size: 4096,
        }
    }
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// EVE JSON lines: a file path, `-` for standard output, or empty for none.
    pub eve: String,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection { eve: "-".into() }
    }
}

/// Flow table size and timeouts (seconds of packet time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSection {
    /// Flows tracked at once per worker; when full, the flow nearest to its timeout is
    /// exported early (reason `evicted`).
    pub max_flows: usize,
    pub tcp_idle_timeout: u64,
    pub udp_idle_timeout: u64,
    pub other_idle_timeout: u64,
    /// How long a TCP flow closed by FIN or RST waits for its last packets.
    pub closed_timeout: u64,
    /// Flows longer than this are exported (reason `active_timeout`) and go on as a new flow.
    pub active_timeout: u64,
    /// VLAN id is part of the flow key; turn off when the two directions of a connection are
    /// seen with different VLAN tags (some SPAN setups).
    pub vlan_in_key: bool,
    /// Key of the flow hash that places flows on workers and in their tables: 32 hex digits
    /// (128 bits). Empty: a built-in key, the same on every run, so that replays give the
    /// same flow ids. Set a secret one on a sensor that faces hostile traffic, so that no one
    /// can aim hash collisions at a worker. Changing it changes every `flow_id`.
    pub hash_key: Secret,
}

impl Default for FlowSection {
    fn default() -> Self {
        let d = FlowConfig::default();
        FlowSection {
            max_flows: d.max_flows,
            tcp_idle_timeout: d.tcp_idle_ns / NANOS_PER_SEC,
            udp_idle_timeout: d.udp_idle_ns / NANOS_PER_SEC,
            other_idle_timeout: d.other_idle_ns / NANOS_PER_SEC,
            closed_timeout: d.closed_ns / NANOS_PER_SEC,
            active_timeout: d.active_ns / NANOS_PER_SEC,
            vlan_in_key: d.vlan_in_key,
            hash_key: Secret::default(),
        }
    }
}

/// IP fragment reassembly budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSection {
    pub frag_max_datagrams: usize,
    pub frag_max_bytes: usize,
    /// Seconds (packet time) an incomplete datagram is kept.
    pub frag_timeout: u64,
}

impl Default for DecodeSection {
    fn default() -> Self {
        let d = DecodeConfig::default();
        DecodeSection {
            frag_max_datagrams: d.frag_max_datagrams,
            frag_max_bytes: d.frag_max_bytes,
            frag_timeout: d.frag_timeout_ns / NANOS_PER_SEC,
        }
    }
}

/// Per-flow DPI buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpiSection {
    /// Bytes buffered per direction to reassemble a TLS first flight or HTTP header block.
    pub max_buffer: usize,
    /// Out-of-order TCP segments held per direction.
    pub max_ooo_segments: usize,
    /// Payload bytes after which a flow no parser recognised is given up.
    pub detect_limit: usize,
    /// UDP flows per worker holding QUIC Initial state at once.
    pub max_quic_flows: usize,
}

impl Default for DpiSection {
    fn default() -> Self {
        let d = DpiConfig::default();
        DpiSection {
            max_buffer: d.max_buffer,
            max_ooo_segments: d.max_ooo_segments,
            detect_limit: d.detect_limit,
            max_quic_flows: d.max_quic_flows,
        }
    }
}

/// Live capture (`sensor run`): XDP program, AF_XDP sockets, bypass, filter, metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSection {
    /// Rx queues to capture, one socket and one pinned capture thread each; empty: all of the
    /// interface's rx queues.
    pub queues: Vec<u32>,
    /// XDP attach mode: `auto` (native, falling back to generic), `driver` or `skb`.
    pub xdp_mode: AttachMode,
    /// AF_XDP binding: `auto` (zero-copy when the driver supports it), `copy` or `zerocopy`.
    pub bind_mode: BindMode,
    /// Rx ring slots per socket (power of two).
    pub rx_ring: u32,
    /// Fill ring slots per socket (power of two, >= rx_ring); also the UMEM's frame count.
    pub fill_ring: u32,
    /// UMEM frame size in bytes: 2048 or 4096 (the largest frame captured).
    pub frame_size: u32,
    /// Busy polling on the sockets; each capture thread then needs a core to itself.
    pub busy_poll: bool,
    /// Back each UMEM with 2 MiB huge pages when enough are reserved (`vm.nr_hugepages`), else
    /// 4 KiB pages and a log line. On by default: the sensor reads every frame, and with 4 KiB
    /// pages that read is often a TLB miss (a tenth of its CPU per frame on the test machine).
    pub huge_pages: bool,
    /// Where DPI runs: `inline` (each queue's capture thread is that queue's DPI worker: no
    /// copy, no hand-over; flows must reach a queue whole), `rings` (capture threads hash and
    /// hand packets to `sensor.workers` workers over SPSC rings), or `auto` (inline when there
    /// is one queue and one worker, else rings).
    pub dispatch: DispatchMode,
    /// Count the packets of flows whose metadata is extracted in the kernel instead of copying
    /// them to user space; their counters are added to the flow record.
    pub bypass: bool,
    /// Which flows bypass may take, by the protocol DPI found (EVE `app_proto` names: `tls`,
    /// `quic`, `http`, `dns`, `failed`); see `flow::BypassProtocols` for when each is bypassed.
    pub bypass_protocols: BypassProtocols,
    /// Capture filter: only frames with an address in one of these CIDRs (empty: all).
    pub filter_cidrs: Vec<Cidr>,
    /// Capture filter: only TCP/UDP frames with one of these ports (empty: all).
    pub filter_ports: Vec<u16>,
    /// Blocklist file: `ADDRESS[/LEN] [SECONDS]` per line; traffic from/to these is dropped in
    /// XDP and counted. Re-read when it changes. Empty: none.
    pub blocklist_file: String,
    /// Unix socket for `sensor blocklist` (mode 0600: root or the sensor's user only). Empty:
    /// `/run/sensor/<iface>.sock`.
    pub control_socket: String,
    /// Prometheus `/metrics` listen address; empty: no endpoint.
    pub metrics_addr: String,
    /// Seconds between summary lines in the log.
    pub stats_interval: u64,
}

impl Default for LiveSection {
    fn default() -> Self {
        LiveSection {
            queues: Vec::new(),
            xdp_mode: AttachMode::Auto,
            bind_mode: BindMode::Auto,
            // 8192 slots are 20 ms at 400 kpps: deeper than the scheduling delays a capture
            // thread sees when it shares a core (2048 lost frames on this 2-core machine).
            rx_ring: 8192,
            fill_ring: 16384,
            frame_size: 2048,
            busy_poll: false,
            huge_pages: true,
            dispatch: DispatchMode::Auto,
            bypass: true,
            bypass_protocols: BypassProtocols::default(),
            filter_cidrs: Vec::new(),
            filter_ports: Vec::new(),
            blocklist_file: String::new(),
            control_socket: String::new(),
            metrics_addr: "127.0.0.1:9187".into(),
            stats_interval: 10,
        }
    }
}

/// Where live capture runs DPI (`live.dispatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchMode {
    /// Inline with one queue and one worker, else rings.
    Auto,
    /// Each queue's capture thread is that queue's DPI worker.
    Inline,
    /// Capture threads hand packets to the workers over SPSC rings.
    Rings,
}

/// An address block, `ADDR/LEN`, or a bare address for one host; parsed once, when the file
/// is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub len: u8,
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Cidr, String> {
        parse_cidr(&s).map(|(addr, len)| Cidr { addr, len })
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        format!("{}/{}", c.addr, c.len)
    }
}

/// Parses `ADDR/LEN` (or a bare address, a host route).
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = a.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        None => max,
    };
    Ok((addr, len))
}

/// `flow.hash_key`: empty for the built-in key, else 32 hex digits.
fn parse_hash_key(s: &str) -> Result<FlowHasher, String> {
    if s.is_empty() {
        return Ok(FlowHasher::default());
    }
    let digits = s.as_bytes();
    if digits.len() != 32 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "must be 32 hex digits (128 bits), got {} characters",
            digits.len()
        ));
    }
    let mut key = [0u8; 16];
    for (k, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        let hex = std::str::from_utf8(pair).unwrap_or("00");
        *k = u8::from_str_radix(hex, 16).unwrap_or(0);
    }
    Ok(FlowHasher::new(key))
}

impl Config {
    /// Reads and parses a file (no range checks: see [`Config::validate`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses TOML text; unknown keys and wrong types are errors naming the key.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new("", one_line(&e, text)))?;
        check_keys(&table)?;
        toml::from_str::<Config>(text)
            .map_err(|e| ConfigError::new(&key_at(&e, text), e.message().to_string()))
    }

    /// Range checks, section by section; the first problem found is returned. (Types, enum
    /// values, addresses and CIDRs were checked by [`Config::parse`].)
    pub fn validate(&self) -> Result<(), ConfigError> {
        range("sensor.workers", self.sensor.workers, 0, 256)?;
        range("sensor.ring_size", self.sensor.ring_size, 64, 1 << 22)?;
        self.flow.validate()?;
        self.decode.validate()?;
        self.dpi.validate()?;
        self.export.validate()?;
        self.clickhouse.validate()?;
        self.nats.validate()?;
        self.spool
            .validate(!self.clickhouse.url.is_empty() || !self.nats.url.is_empty())?;
        self.live.validate()?;
        self.enrich.validate()?;
        if !self.commands.public_key.is_empty() && self.commands.state_file.is_empty() {
            return Err(ConfigError::new(
                "commands.state_file",
                "must not be empty when commands.public_key is set (blocks and replay protection must survive a restart)",
            ));
        }
        Ok(())
    }

    /// Whether live capture runs DPI in the capture threads (`live.dispatch`), given the
    /// number of queues captured.
    pub fn inline_dpi(&self, queues: usize) -> bool {
        match self.live.dispatch {
            DispatchMode::Inline => true,
            DispatchMode::Rings => false,
            DispatchMode::Auto => queues == 1 && self.worker_count() == 1,
        }
    }

    /// Workers to start: the configured number, or cores minus one (at least one).
    pub fn worker_count(&self) -> usize {
        if self.sensor.workers > 0 {
            return self.sensor.workers;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    }

    pub fn flow_config(&self) -> FlowConfig {
        let s = NANOS_PER_SEC;
        FlowConfig {
            max_flows: self.flow.max_flows,
            tcp_idle_ns: self.flow.tcp_idle_timeout * s,
            udp_idle_ns: self.flow.udp_idle_timeout * s,
            other_idle_ns: self.flow.other_idle_timeout * s,
            closed_ns: self.flow.closed_timeout * s,
            active_ns: self.flow.active_timeout * s,
            vlan_in_key: self.flow.vlan_in_key,
            flow_start: self.nats.flow_start && !self.nats.url.is_empty(),
            // Checked by `validate`.
            hasher: parse_hash_key(self.flow.hash_key.expose()).unwrap_or_default(),
        }
    }

    pub fn decode_config(&self) -> DecodeConfig {
        DecodeConfig {
            frag_max_datagrams: self.decode.frag_max_datagrams,
            frag_max_bytes: self.decode.frag_max_bytes,
            frag_timeout_ns: self.decode.frag_timeout * NANOS_PER_SEC,
        }
    }

    pub fn dpi_config(&self) -> DpiConfig {
        DpiConfig {
            max_buffer: self.dpi.max_buffer,
            max_ooo_segments: self.dpi.max_ooo_segments,
            detect_limit: self.dpi.detect_limit,
            max_quic_flows: self.dpi.max_quic_flows,
        }
    }

    /// The effective configuration as TOML (what `sensor check-config` prints), secrets masked
    /// (by [`Secret`]'s `Serialize`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The control socket of a sensor capturing on `iface`.
    pub fn control_socket(&self, iface: &str) -> std::path::PathBuf {
        if self.live.control_socket.is_empty() {
            Path::new("/run/sensor").join(format!("{iface}.sock"))
        } else {
            self.live.control_socket.clone().into()
        }
    }

    /// The sections the exporter reads, with the sensor id resolved by [`Config::sensor_id`].
    pub fn export_config<'a>(&'a self, sensor_id: &'a str) -> ExportConfig<'a> {
        ExportConfig {
            sensor_id,
            export: &self.export,
            clickhouse: &self.clickhouse,
            nats: &self.nats,
            spool: &self.spool,
            enrich: &self.enrich,
        }
    }

    /// The sensor id: configured, else the host name (cleaned to what the id allows).
    pub fn sensor_id(&self) -> String {
        if !self.export.sensor_id.is_empty() {
            return self.export.sensor_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let id: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        if id.is_empty() {
            "sensor".into()
        } else {
            id
        }
    }
}

impl FlowSection {
    fn validate(&self) -> Result<(), ConfigError> {
        range("flow.max_flows", self.max_flows, 1, 100_000_000)?;
        range("flow.tcp_idle_timeout", self.tcp_idle_timeout, 1, DAY)?;
        range("flow.udp_idle_timeout", self.udp_idle_timeout, 1, DAY)?;
        range("flow.other_idle_timeout", self.other_idle_timeout, 1, DAY)?;
        range("flow.closed_timeout", self.closed_timeout, 0, DAY)?;
        range("flow.active_timeout", self.active_timeout, 1, 7 * DAY)?;
        parse_hash_key(self.hash_key.expose()).map_err(|e| ConfigError::new("flow.hash_key", e))?;
        Ok(())
    }
}

impl DecodeSection {
    fn validate(&self) -> Result<(), ConfigError> {
        range(
            "decode.frag_max_datagrams",
            self.frag_max_datagrams,
            0,
            1 << 20,
        )?;
        range("decode.frag_max_bytes", self.frag_max_bytes, 0, 1 << 30)?;
        range("decode.frag_timeout", self.frag_timeout, 1, 3600)
    }
}

impl DpiSection {
    fn validate(&self) -> Result<(), ConfigError> {
        range("dpi.max_buffer", self.max_buffer, 512, 1 << 20)?;
        range("dpi.max_ooo_segments", self.max_ooo_segments, 0, 256)?;
        range("dpi.detect_limit", self.detect_limit, 16, 1 << 20)?;
        range("dpi.max_quic_flows", self.max_quic_flows, 0, 1 << 20)
    }
}

impl LiveSection {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("live.rx_ring", self.rx_ring),
            ("live.fill_ring", self.fill_ring),
        ] {
            range(key, v, 64, 1 << 16)?;
            if !v.is_power_of_two() {
                return Err(ConfigError::new(
                    key,
                    format!("must be a power of two, got {v}"),
                ));
            }
        }
        if self.fill_ring < self.rx_ring {
            return Err(ConfigError::new(
                "live.fill_ring",
                format!(
                    "must be at least live.rx_ring ({}), got {}",
                    self.rx_ring, self.fill_ring
                ),
            ));
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(ConfigError::new(
                "live.frame_size",
                format!("must be 2048 or 4096, got {}", self.frame_size),
            ));
        }
        if !self.metrics_addr.is_empty()
            && self.metrics_addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::new(
                "live.metrics_addr",
                format!(
                    "must be HOST:PORT with a numeric host, got {:?}",
                    self.metrics_addr
                ),
            ));
        }
        range("live.stats_interval", self.stats_interval, 1, DAY)
    }
}

/// Known keys per section, for precise unknown-key errors (serde's name only the field).
fn check_keys(table: &toml::Table) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::new("", format!("internal: {e}")))?;
    for (section, value) in table {
        let Some(known) = defaults.get(section) else {
            return Err(ConfigError::new(section, "unknown section"));
        };
        let (Some(keys), Some(known)) = (value.as_table(), known.as_table()) else {
            return Err(ConfigError::new(section, "must be a table ([section])"));
        };
        for key in keys.keys() {
            if !known.contains_key(key) {
                let expected: Vec<&str> = known.keys().map(String::as_str).collect();
                return Err(ConfigError::new(
                    &format!("{section}.{key}"),
                    format!("unknown key (expected one of: {})", expected.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

/// The dotted key whose value a toml error points at, from the error's span.
fn key_at(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else {
        return String::new();
    };
    let before = text.get(..span.start).unwrap_or("");
    let section = before
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && l.ends_with(']')).then(|| l.trim_matches(['[', ']']).trim())
        })
        .unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|l| l.lines().next())
        .unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    match (section.is_empty(), key.is_empty() || key.starts_with('[')) {
        (_, true) => section.to_string(),
        (true, false) => key.to_string(),
        (false, false) => format!("{section}.{key}"),
    }
}

/// A toml syntax error as one line with its line number.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let line = e
        .span()
        .map(|s| text.get(..s.start).unwrap_or("").matches('\n').count() + 1);
    match line {
        Some(l) => format!("line {l}: {}", e.message()),
        None => e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpi::AppProto;

    #[test]
    fn empty_file_gives_defaults_that_validate() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        c.validate().unwrap();
    }

    #[test]
    fn example_config_parses_and_equals_defaults() {
        let text = include_str!("../../config/sensor.example.toml");
        let c = Config::parse(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c, Config::default(), "example must document the defaults");
    }

    #[test]
    fn unknown_key_is_named_with_its_section() {
        let e = Config::parse("[flow]\nmax_flow = 3\n").unwrap_err();
        assert_eq!(e.key, "flow.max_flow");
        assert!(e.msg.contains("unknown key"), "{e}");
        let e = Config::parse("[flows]\n").unwrap_err();
        assert_eq!(e.key, "flows");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Config::parse("[sensor]\nworkers = \"two\"\n").unwrap_err();
        assert_eq!(e.key, "sensor.workers", "{e}");
    }

    #[test]
    fn out_of_range_value_names_the_key_and_the_bounds() {
        let c = Config::parse("[flow]\nmax_flows = 0\n").unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "flow.max_flows: must be between 1 and 100000000, got 0"
        );
    }

    #[test]
    fn syntax_error_is_one_line_with_a_line_number() {
        let e = Config::parse("[flow]\nmax_flows = = 3\n").unwrap_err();
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.starts_with("line 2"), "{s}");
    }

    #[test]
    fn secrets_are_masked_in_the_effective_config() {
        let c = Config::parse(
            "[clickhouse]\npassword = \"hunter2\"\n[nats]\ntoken = \"tok-42\"\npassword = \"pw-7\"\n",
        )
        .unwrap();
        let t = c.to_toml();
        for secret in ["hunter2", "tok-42", "pw-7"] {
            assert!(!t.contains(secret), "{t}");
        }
        assert!(t.contains(MASK));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.clickhouse.password.expose(), "hunter2");
    }

    #[test]
    fn sink_keys_are_checked() {
        let e = Config::parse("[export]\nsensor_id = \"a.b\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "export.sensor_id");
        let e = Config::parse("[clickhouse]\nurl = \"tcp://x\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "clickhouse.url");
        let e = Config::parse("[spool]\nfull_policy = \"maybe\"\n").unwrap_err();
        assert_eq!(e.key, "spool.full_policy");
        assert!(e.msg.contains("drop_oldest"), "{e}");
    }

    #[test]
    fn live_values_are_checked_with_their_key() {
        let rejected = |toml: &str| match Config::parse(toml) {
            Ok(c) => c.validate().unwrap_err(),
            Err(e) => e,
        };
        for (toml, key) in [
            (
                "[live]\nfill_ring = 1024\nrx_ring = 2048\n",
                "live.fill_ring",
            ),
            ("[live]\nrx_ring = 1000\n", "live.rx_ring"),
            (
                "[live]\nfilter_cidrs = [\"10.0.0.0/40\"]\n",
                "live.filter_cidrs",
            ),
            ("[live]\nxdp_mode = \"fast\"\n", "live.xdp_mode"),
            ("[live]\ndispatch = \"threads\"\n", "live.dispatch"),
        ] {
            let e = rejected(toml);
            assert_eq!(e.key, key, "{e}");
        }
        let e = rejected("[live]\nbypass_protocols = [\"tls\", \"ssh\"]\n");
        assert_eq!(e.key, "live.bypass_protocols", "{e}");
        assert!(e.to_string().contains("\"ssh\""), "{e}");
        let c = Config::parse("[live]\nbypass_protocols = [\"http\", \"dns\"]\n").unwrap();
        c.validate().unwrap();
        let p = c.live.bypass_protocols;
        assert!(p.allows(AppProto::Http) && p.allows(AppProto::Dns));
        assert!(!p.allows(AppProto::Tls) && !p.allows(AppProto::Unknown));
        let d = Config::default().live.bypass_protocols;
        assert_eq!(d, BypassProtocols::default());
        assert!(d.allows(AppProto::Tls) && d.allows(AppProto::Quic) && d.allows(AppProto::Failed));
        assert!(!d.allows(AppProto::Http) && !d.allows(AppProto::Dns));
        assert_eq!(parse_cidr("192.0.2.0/24").unwrap().1, 24);
        assert_eq!(parse_cidr("2001:db8::1").unwrap().1, 128);
        let c = Config::parse("[live]\nfilter_cidrs = [\"2001:db8::1\"]\nxdp_mode = \"skb\"\nbind_mode = \"zerocopy\"\ndispatch = \"rings\"\n").unwrap();
        assert_eq!(c.live.filter_cidrs[0].len, 128);
        assert_eq!(c.live.xdp_mode, AttachMode::Skb);
        assert_eq!(c.live.bind_mode, BindMode::ZeroCopy);
        assert!(!c.inline_dpi(1));
    }

    #[test]
    fn the_flow_hash_key_is_checked_used_and_masked() {
        let key = "00112233445566778899aabbccddeeff";
        let c = Config::parse(&format!("[flow]\nhash_key = \"{key}\"\n")).unwrap();
        c.validate().unwrap();
        let keyed = c.flow_config().hasher;
        assert_ne!(keyed, Config::default().flow_config().hasher);
        assert_eq!(
            keyed,
            FlowHasher::new(core::array::from_fn(|i| (i * 0x11) as u8))
        );
        assert!(!c.to_toml().contains(key), "{}", c.to_toml());
        assert!(!format!("{c:?}").contains(key));
        for bad in ["abc", "00112233445566778899aabbccddeefg"] {
            let e = Config::parse(&format!("[flow]\nhash_key = \"{bad}\"\n"))
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(e.key, "flow.hash_key", "{e}");
            assert!(!e.msg.contains(bad), "the key is not echoed: {e}");
        }
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::parse("[sensor]\nworkers = 3\n").unwrap();
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
    }
}
