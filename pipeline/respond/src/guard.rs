//! Guard rails on blocks: protected networks are never blocked (nor any CIDR that overlaps
//! one), at most `max_blocks_per_minute` blocks start in any 60 s, and at most
//! `max_active_blocks` distinct CIDRs are blocked at once.
//!
//! The ledger of blocks ([`Ledger`], one per block step) is kept by the caller in a key-value
//! bucket and given back to [`Guard::restore`] at start, so the limits hold across restarts,
//! and a block step run again after a crash (same id) is not counted twice.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How long a block counts towards the rate.
const RATE_WINDOW_MS: u64 = 60_000;

/// One admitted block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub cidr: IpNet,
    pub issued_ms: u64,
    pub expires_ms: u64,
}

/// Why a block was refused; `reason()` names it in metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Protected(IpNet),
    Rate(usize),
    Active(usize),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Protected(_) => "protected",
            Refusal::Rate(_) => "rate",
            Refusal::Active(_) => "active",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Protected(n) => write!(f, "guard: overlaps the protected network {n}"),
            Refusal::Rate(n) => write!(
                f,
                "guard: {n} blocks in the last minute (max_blocks_per_minute)"
            ),
            Refusal::Active(n) => write!(f, "guard: {n} blocks active (max_active_blocks)"),
        }
    }
}

/// Whether the block was new or one already admitted (a step run again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    New,
    Again,
}

pub struct Guard {
    protected: Vec<IpNet>,
    per_minute: usize,
    max_active: usize,
    ledger: HashMap<String, Ledger>,
}

/// The CIDR of prefix `v4`/`v6` around `ip`.
pub fn cidr_around(ip: IpAddr, v4: u8, v6: u8) -> IpNet {
    let len = if ip.is_ipv4() { v4 } else { v6 };
    IpNet::new(ip, len)
        .unwrap_or_else(|_| IpNet::from(ip))
        .trunc()
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

impl Guard {
    pub fn new(protected: Vec<IpNet>, per_minute: usize, max_active: usize) -> Guard {
        Guard {
            protected,
            per_minute,
            max_active,
            ledger: HashMap::new(),
        }
    }

    /// The protected network `cidr` overlaps, if any.
    pub fn protected(&self, cidr: &IpNet) -> Option<IpNet> {
        self.protected.iter().find(|p| overlaps(p, cidr)).copied()
    }

    /// Entries from before a restart.
    pub fn restore(&mut self, id: String, l: Ledger) {
        self.ledger.insert(id, l);
    }

    /// Forgets blocks that expired and left the rate window; returns their ids.
    pub fn prune(&mut self, now_ms: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .ledger
            .iter()
            .filter(|(_, l)| l.expires_ms <= now_ms && l.issued_ms + RATE_WINDOW_MS <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.ledger.remove(id);
        }
        gone
    }

    /// Distinct CIDRs blocked now.
    pub fn active(&self, now_ms: u64) -> usize {
        self.ledger
            .values()
            .filter(|l| l.expires_ms > now_ms)
            .map(|l| l.cidr)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Decides on block `id` of `cidr` until `expires_ms`, and records it when admitted.
    pub fn admit(
        &mut self,
        id: &str,
        cidr: IpNet,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Admitted, Refusal> {
        if let Some(p) = self.protected(&cidr) {
            return Err(Refusal::Protected(p));
        }
        if self.ledger.contains_key(id) {
            return Ok(Admitted::Again);
        }
        let recent = self
            .ledger
            .values()
            .filter(|l| l.issued_ms + RATE_WINDOW_MS > now_ms)
            .count();
        if recent >= self.per_minute {
            return Err(Refusal::Rate(recent));
        }
        let live = |l: &&Ledger| l.expires_ms > now_ms;
        let already = self.ledger.values().filter(live).any(|l| l.cidr == cidr);
        let active = self.active(now_ms);
        if !already && active >= self.max_active {
            return Err(Refusal::Active(active));
        }
        self.ledger.insert(
            id.to_string(),
            Ledger {
                cidr,
                issued_ms: now_ms,
                expires_ms,
            },
        );
        Ok(Admitted::New)
    }

    /// The ledger entry of `id`.
    pub fn get(&self, id: &str) -> Option<&Ledger> {
        self.ledger.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn protected_networks_and_cidrs_overlapping_them_are_refused() {
        let mut g = Guard::new(vec![net("10.1.0.0/16"), net("2001:db8::/32")], 100, 100);
        for c in ["10.1.2.3/32", "10.0.0.0/8", "2001:db8:1::/48"] {
            assert_eq!(
                g.admit(c, net(c), 0, 10),
                Err(Refusal::Protected(g.protected(&net(c)).unwrap())),
                "{c}"
            );
        }
        assert_eq!(g.admit("x", net("10.2.0.1/32"), 0, 10), Ok(Admitted::New));
        assert_eq!(
            cidr_around("10.1.2.3".parse().unwrap(), 24, 64),
            net("10.1.2.0/24")
        );
        assert_eq!(
            cidr_around("2001:db8::1".parse().unwrap(), 24, 64),
            net("2001:db8::/64")
        );
    }

    #[test]
    fn rate_and_active_limits_hold_and_a_step_run_again_counts_once() {
        let mut g = Guard::new(vec![], 3, 4);
        let cidr = |i: u8| IpNet::from(IpAddr::from([192, 0, 2, i]));
        for i in 0..3 {
            assert_eq!(
                g.admit(&format!("b{i}"), cidr(i), 1000, 600_000),
                Ok(Admitted::New)
            );
        }
        assert_eq!(g.admit("b0", cidr(0), 1000, 600_000), Ok(Admitted::Again));
        assert_eq!(g.admit("b3", cidr(3), 2000, 600_000), Err(Refusal::Rate(3)));
        // A minute later the rate allows more, up to the active limit.
        assert_eq!(g.admit("b3", cidr(3), 62_000, 600_000), Ok(Admitted::New));
        assert_eq!(
            g.admit("b4", cidr(4), 62_000, 600_000),
            Err(Refusal::Active(4))
        );
        // Blocking an address blocked already does not add an active block.
        assert_eq!(g.admit("b5", cidr(1), 62_000, 700_000), Ok(Admitted::New));
        // Once blocks expire they no longer count and are pruned.
        assert_eq!(g.active(600_000), 1);
        assert_eq!(g.prune(700_000).len(), 5);
        assert_eq!(g.admit("b6", cidr(6), 700_000, 800_000), Ok(Admitted::New));
    }
}
