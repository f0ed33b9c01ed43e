//! The XDP blocklist as the control thread keeps it: CIDRs from three sources, merged into the
//! kernel's LPM trie, and the part that must survive a restart written to a state file.
//!
//! - `file`: `live.blocklist_file`, `ADDRESS[/LEN] [SECONDS]` per line, re-read when it changes;
//!   its lifetimes count from when it was read. Not persisted: the file is its own record.
//! - `command`: signed commands from `pipeline respond` (the sensor's `command` module).
//! - `operator`: `sensor blocklist add|del` over the control socket.
//!
//! Command and operator blocks carry a wall-clock expiry (Unix ms, 0 = never), so that after a
//! restart a block lasts what is left of it; the kernel map takes CLOCK_MONOTONIC, converted
//! when an entry is written. A CIDR listed by several sources gets the longest of their
//! expiries. The state file also holds the nonces of accepted commands until they expire, so
//! that a command replayed after a restart is still refused. The control thread writes it
//! ([`Blocklist::save_state`]) after each group of changes and before it answers any of them,
//! atomically (temporary file, fsync, rename), so a crash leaves the old or the new state, and
//! no change is reported done before it is kept. One write per group rather than per change:
//! under a burst of commands the write (two fsyncs) was most of each command's cost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::xdp::{lpm_key, monotonic_ns, XdpMaps};

/// Where an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    File,
    Command,
    Operator,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Command => "command",
            Source::Operator => "operator",
        }
    }
}

/// One line of the blocklist file: a CIDR and how long it stays (None: while it is listed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub net: IpNet,
    pub secs: Option<u64>,
}

/// Parses `ADDRESS[/LEN]` (a bare address is a host route); host bits are cleared.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => s
            .parse::<std::net::IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{s:?}: not an address or CIDR"))?,
    };
    Ok(net.trunc())
}

/// Parses a blocklist file: `ADDRESS[/LEN] [SECONDS]` per line, `#` comments, blank lines
/// ignored. Errors name the line.
pub fn parse_file(text: &str) -> Result<Vec<FileEntry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let net =
            parse_net(parts.next().unwrap_or("")).map_err(|e| format!("line {}: {e}", n + 1))?;
        let secs = match parts.next() {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|e| format!("line {}: lifetime {s:?}: {e}", n + 1))?,
            ),
        };
        if parts.next().is_some() {
            return Err(format!("line {}: expected ADDRESS[/LEN] [SECONDS]", n + 1));
        }
        out.push(FileEntry { net, secs });
    }
    Ok(out)
}

/// A command or operator block, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub cidr: IpNet,
    pub source: Source,
    /// Unix ms; 0 = until removed.
    pub expires_at_ms: u64,
    #[serde(default)]
    pub alert_id: String,
    #[serde(default)]
    pub command_id: String,
}

/// The state file's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub blocks: Vec<Block>,
    /// Nonces of accepted commands and their commands' expiry (Unix ms).
    pub nonces: Vec<(String, u64)>,
}

impl State {
    /// Reads the state file; a missing file is an empty state, a damaged one an error.
    pub fn load(path: &Path) -> Result<State, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a blocklist state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes atomically: a temporary file beside it, fsync, rename (then the directory is
    /// synced so the rename itself survives a crash).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// One entry as `sensor blocklist list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub cidr: String,
    pub source: Source,
    /// Seconds left; None = no expiry.
    pub remaining_secs: Option<u64>,
    #[serde(default)]
    pub alert_id: String,
}

/// Wall clock, Unix ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The blocklist: what each source listed, the kernel map they are merged into, and the state
/// file. Owned by the control thread.
pub struct Blocklist {
    /// CIDR -> CLOCK_MONOTONIC expiry in ns (0 = never).
    file: HashMap<IpNet, u64>,
    dynamic: HashMap<IpNet, Block>,
    nonces: HashMap<String, u64>,
    state_file: Option<PathBuf>,
    /// Whether the program's lookups are on (the list had entries when last synced).
    enabled: bool,
}

/// The merged kernel value: 0 (never) wins, else the latest expiry.
fn merge(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(0), _) | (_, Some(0)) => Some(0),
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A wall-clock expiry (Unix ms, 0 = never) as CLOCK_MONOTONIC ns.
fn mono_expiry(expires_at_ms: u64, now_ms: u64, now_mono: u64) -> u64 {
    if expires_at_ms == 0 {
        return 0;
    }
    let left_ns = expires_at_ms
        .saturating_sub(now_ms)
        .saturating_mul(1_000_000);
    // An expired entry gets the smallest non-zero expiry (1 ns: long past), never "forever".
    now_mono.saturating_add(left_ns).max(1)
}

impl Blocklist {
    /// The blocklist as kept across restarts (`state` loaded from `state_file`, whose damage
    /// the caller reports as a configuration error), logging what was restored.
    pub fn restore(
        maps: &mut XdpMaps,
        state: State,
        path: Option<PathBuf>,
    ) -> anyhow::Result<Blocklist> {
        let kept = state.blocks.len();
        let b = Blocklist::new(maps, state, path).map_err(|e| anyhow::anyhow!("{e}"))?;
        if kept > 0 {
            tracing::info!(
                "blocklist: {} command/operator block(s) restored ({kept} kept, the rest expired)",
                b.dynamic.len()
            );
        }
        Ok(b)
    }

    /// Starts from a loaded state: blocks still in force go to the kernel map, expired ones
    /// and expired nonces are dropped.
    pub fn new(
        maps: &mut XdpMaps,
        state: State,
        state_file: Option<PathBuf>,
    ) -> Result<Blocklist, String> {
        let now = now_ms();
        let mut b = Blocklist {
            file: HashMap::new(),
            dynamic: HashMap::new(),
            nonces: state.nonces.into_iter().filter(|(_, e)| *e > now).collect(),
            state_file,
            enabled: false,
        };
        for block in state.blocks {
            if block.expires_at_ms != 0 && block.expires_at_ms <= now {
                continue;
            }
            let net = block.cidr.trunc();
            b.dynamic.insert(net, block);
            b.sync(maps, net)?;
        }
        b.set_enabled(maps);
        Ok(b)
    }

    /// The nonces to give the command verifier at start.
    pub fn nonces(&self) -> impl Iterator<Item = (&str, u64)> {
        self.nonces.iter().map(|(n, e)| (n.as_str(), *e))
    }

    pub fn len(&self) -> usize {
        self.file.len()
            + self
                .dynamic
                .keys()
                .filter(|n| !self.file.contains_key(n))
                .count()
    }

    pub fn is_empty(&self) -> bool {
        self.file.is_empty() && self.dynamic.is_empty()
    }

    /// Writes the kernel entry of `net` from what the sources say (or removes it).
    fn sync(&mut self, maps: &mut XdpMaps, net: IpNet) -> Result<(), String> {
        let (now, mono) = (now_ms(), monotonic_ns());
        let dynamic = self
            .dynamic
            .get(&net)
            .map(|b| mono_expiry(b.expires_at_ms, now, mono));
        let key = lpm_key(&net);
        match merge(self.file.get(&net).copied(), dynamic) {
            Some(exp) => maps
                .blocklist
                .insert(&key, exp, 0)
                .map_err(|e| format!("blocklist map: {e}")),
            None => {
                let _ = maps.blocklist.remove(&key);
                Ok(())
            }
        }
    }

    /// Lookups on while there are entries, off when there are none.
    fn set_enabled(&mut self, maps: &mut XdpMaps) {
        let want = !self.is_empty();
        if want != self.enabled {
            match maps.set_blocklist_enabled(want) {
                Ok(()) => self.enabled = want,
                Err(e) => tracing::warn!("blocklist lookups not switched: {e}"),
            }
        }
    }

    /// Replaces the file's entries (a new version of the file was read).
    pub fn set_file(&mut self, maps: &mut XdpMaps, entries: &[FileEntry]) -> Result<(), String> {
        let mono = monotonic_ns();
        let old: Vec<IpNet> = self.file.drain().map(|(n, _)| n).collect();
        for e in entries {
            let exp = e.secs.map_or(0, |s| {
                mono.saturating_add(s.saturating_mul(1_000_000_000)).max(1)
            });
            let slot = self.file.entry(e.net).or_insert(exp);
            *slot = merge(Some(*slot), Some(exp)).unwrap_or(exp);
        }
        let touched: Vec<IpNet> = old.into_iter().chain(self.file.keys().copied()).collect();
        for net in touched {
            self.sync(maps, net)?;
        }
        self.set_enabled(maps);
        Ok(())
    }

    /// Adds (or replaces) a command or operator block. `nonce`: the accepted command's,
    /// remembered with it. Kept across a restart once [`Blocklist::save_state`] has run.
    pub fn add(
        &mut self,
        maps: &mut XdpMaps,
        block: Block,
        nonce: Option<(String, u64)>,
    ) -> Result<(), String> {
        let net = block.cidr.trunc();
        self.nonces.extend(nonce);
        let before = self.dynamic.insert(net, Block { cidr: net, ..block });
        let applied = self.sync(maps, net);
        if applied.is_err() {
            // The kernel entry did not change: neither does what we list and keep.
            match before {
                Some(b) => self.dynamic.insert(net, b),
                None => self.dynamic.remove(&net),
            };
        }
        self.set_enabled(maps);
        applied
    }

    /// Removes the command or operator block of exactly `net`. Returns whether there was one (a
    /// file entry stays: the file is changed by editing it). Kept across a restart once
    /// [`Blocklist::save_state`] has run.
    pub fn remove(
        &mut self,
        maps: &mut XdpMaps,
        net: IpNet,
        nonce: Option<(String, u64)>,
    ) -> Result<bool, String> {
        let net = net.trunc();
        self.nonces.extend(nonce);
        let had = self.dynamic.remove(&net).is_some();
        let r = self.sync(maps, net);
        self.set_enabled(maps);
        r.map(|()| had)
    }

    /// Whether the blocklist file lists `net` exactly.
    pub fn in_file(&self, net: &IpNet) -> bool {
        self.file.contains_key(&net.trunc())
    }

    /// Drops command and operator blocks (and nonces) that expired; persists when one did.
    /// Returns the blocks that ended, for the audit trail.
    pub fn expire(&mut self, maps: &mut XdpMaps) -> Vec<Block> {
        let now = now_ms();
        let gone: Vec<IpNet> = self
            .dynamic
            .iter()
            .filter(|(_, b)| b.expires_at_ms != 0 && b.expires_at_ms <= now)
            .map(|(n, _)| *n)
            .collect();
        let nonces = self.nonces.len();
        self.nonces.retain(|_, e| *e > now);
        let mut ended = Vec::with_capacity(gone.len());
        for net in &gone {
            ended.extend(self.dynamic.remove(net));
            if let Err(e) = self.sync(maps, *net) {
                tracing::warn!("blocklist: {e}");
            }
        }
        if !gone.is_empty() {
            self.set_enabled(maps);
        }
        if !gone.is_empty() || nonces != self.nonces.len() {
            self.save_state();
        }
        ended
    }

    /// Every entry, file ones first, each source's own expiry.
    pub fn list(&self) -> Vec<Listed> {
        let (now, mono) = (now_ms(), monotonic_ns());
        let mut out: Vec<Listed> = self
            .file
            .iter()
            .map(|(net, exp)| Listed {
                cidr: net.to_string(),
                source: Source::File,
                remaining_secs: (*exp != 0).then(|| exp.saturating_sub(mono) / 1_000_000_000),
                alert_id: String::new(),
            })
            .collect();
        out.extend(self.dynamic.values().map(|b| Listed {
            cidr: b.cidr.to_string(),
            source: b.source,
            remaining_secs:
                (b.expires_at_ms != 0).then(|| b.expires_at_ms.saturating_sub(now).div_ceil(1000)),
            alert_id: b.alert_id.clone(),
        }));
        out.sort_by(|a, b| (a.source.as_str(), &a.cidr).cmp(&(b.source.as_str(), &b.cidr)));
        out
    }

    /// Writes the state file (when there is one); a failure is logged, the blocks stay applied.
    pub fn save_state(&self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let mut blocks: Vec<Block> = self.dynamic.values().cloned().collect();
        blocks.sort_by_key(|b| b.cidr);
        let mut nonces: Vec<(String, u64)> =
            self.nonces.iter().map(|(n, e)| (n.clone(), *e)).collect();
        nonces.sort();
        if let Err(e) = (State { blocks, nonces }).save(path) {
            tracing::warn!("blocklist state {} not written: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_take_cidrs_addresses_and_lifetimes() {
        let v = parse_file(
            "# bad hosts\n192.0.2.1\n\n2001:db8::1 30 # half a minute\n198.51.100.77/24 5\n",
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].net, "192.0.2.1/32".parse::<IpNet>().unwrap());
        assert_eq!(v[0].secs, None);
        assert_eq!(v[1].secs, Some(30));
        assert_eq!(v[1].net.prefix_len(), 128);
        assert_eq!(v[2].net.to_string(), "198.51.100.0/24", "host bits cleared");
    }

    #[test]
    fn a_bad_file_line_is_named() {
        for (text, line) in [
            ("192.0.2.1\nnot-an-address\n", "line 2:"),
            ("192.0.2.1 soon\n", "line 1:"),
            ("10.0.0.0/33\n", "line 1:"),
            ("10.0.0.1 5 6\n", "line 1:"),
        ] {
            let e = parse_file(text).unwrap_err();
            assert!(e.starts_with(line), "{text:?}: {e}");
        }
    }

    #[test]
    fn never_wins_then_the_latest_expiry() {
        assert_eq!(merge(Some(5), Some(0)), Some(0));
        assert_eq!(merge(Some(5), Some(9)), Some(9));
        assert_eq!(merge(None, Some(9)), Some(9));
        assert_eq!(merge(None, None), None);
    }

    #[test]
    fn wall_expiry_becomes_monotonic_and_past_is_never_forever() {
        assert_eq!(mono_expiry(0, 1_000, 50), 0);
        assert_eq!(mono_expiry(3_000, 1_000, 50), 50 + 2_000_000_000);
        assert_eq!(mono_expiry(500, 1_000, 0), 1);
    }

    #[test]
    fn state_round_trips_atomically_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let s = State {
            blocks: vec![Block {
                cidr: "192.0.2.0/24".parse().unwrap(),
                source: Source::Command,
                expires_at_ms: 123,
                alert_id: "a1".into(),
                command_id: "c1".into(),
            }],
            nonces: vec![("ab".repeat(16), 99)],
        };
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), s);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::write(&path, "{").unwrap();
        assert!(State::load(&path).unwrap_err().contains("state.json"));
    }
}
