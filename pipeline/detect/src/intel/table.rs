//! Compact indicator tables: strings in one arena with a hash index of entry numbers, addresses
//! in integer hash maps, subnets in prefix tries (`prefix-trie`).
//!
//! The string table is hand-rolled over `hashbrown::HashTable` because a `HashMap<String, _>`
//! costs a heap allocation (with its allocator header) and a 24-byte `String` per indicator:
//! about 3x the memory at a million indicators. Here an indicator costs its bytes, an 8-byte
//! entry and a 4-byte index slot (plus the table's spare capacity).

use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::HashTable;
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use rustc_hash::{FxBuildHasher, FxHashMap};

/// Index of an indicator's source (`meta.source`) in [`super::IntelSet`]'s source list.
pub type SourceId = u16;

#[derive(Default)]
pub struct StrTable {
    arena: String,
    /// (offset in arena, length, source)
    entries: Vec<(u32, u16, SourceId)>,
    index: HashTable<u32>,
}

impl StrTable {
    fn hash(s: &str) -> u64 {
        FxBuildHasher.hash_one(s)
    }

    fn entry_str(&self, i: u32) -> &str {
        let (off, len, _) = self.entries[i as usize];
        &self.arena[off as usize..off as usize + len as usize]
    }

    /// Adds `s` (kept once; a repeat keeps its first source). Strings longer than 65535 bytes or
    /// past a 4 GiB arena are refused (`false`).
    pub fn insert(&mut self, s: &str, source: SourceId) -> bool {
        if s.len() > usize::from(u16::MAX) || self.arena.len() + s.len() > u32::MAX as usize {
            return false;
        }
        let h = Self::hash(s);
        if self.index.find(h, |&i| self.entry_str(i) == s).is_some() {
            return true;
        }
        let off = self.arena.len() as u32;
        self.arena.push_str(s);
        let n = self.entries.len() as u32;
        self.entries.push((off, s.len() as u16, source));
        let (arena, entries) = (&self.arena, &self.entries);
        self.index.insert_unique(h, n, |&i| {
            let (off, len, _) = entries[i as usize];
            Self::hash(&arena[off as usize..off as usize + len as usize])
        });
        true
    }

    pub fn get(&self, s: &str) -> Option<SourceId> {
        let i = self
            .index
            .find(Self::hash(s), |&i| self.entry_str(i) == s)?;
        Some(self.entries[*i as usize].2)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Heap bytes held (capacities, not lengths: what the allocator gave us).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.entries.capacity() * 8 + self.index.capacity() * 5
    }

    pub fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        self.entries.shrink_to_fit();
        let (arena, entries) = (&self.arena, &self.entries);
        self.index.shrink_to_fit(|&i| {
            let (off, len, _) = entries[i as usize];
            Self::hash(&arena[off as usize..off as usize + len as usize])
        });
    }
}

/// Single addresses and subnets.
#[derive(Default)]
pub struct AddrTable {
    v4: FxHashMap<u32, SourceId>,
    v6: FxHashMap<u128, SourceId>,
    nets4: PrefixMap<Ipv4Net, SourceId>,
    nets6: PrefixMap<Ipv6Net, SourceId>,
    subnets: usize,
}

impl AddrTable {
    pub fn insert_addr(&mut self, ip: IpAddr, source: SourceId) {
        match ip {
            IpAddr::V4(a) => self.v4.entry(u32::from(a)).or_insert(source),
            IpAddr::V6(a) => self.v6.entry(u128::from(a)).or_insert(source),
        };
    }

    pub fn insert_net(&mut self, net: ipnet::IpNet, source: SourceId) {
        self.subnets += 1;
        match net.trunc() {
            ipnet::IpNet::V4(n) => self.nets4.insert(n, source),
            ipnet::IpNet::V6(n) => self.nets6.insert(n, source),
        };
    }

    /// The source of an exact address indicator, else of the longest subnet holding `ip`
    /// (with that subnet).
    pub fn get(&self, ip: IpAddr) -> Option<(SourceId, Option<ipnet::IpNet>)> {
        match ip {
            IpAddr::V4(a) => {
                if let Some(s) = self.v4.get(&u32::from(a)) {
                    return Some((*s, None));
                }
                let host = Ipv4Net::new(a, 32).ok()?;
                self.nets4
                    .get_lpm(&host)
                    .map(|(n, s)| (*s, Some(ipnet::IpNet::V4(n))))
            }
            IpAddr::V6(a) => {
                if let Some(s) = self.v6.get(&u128::from(a)) {
                    return Some((*s, None));
                }
                let host = Ipv6Net::new(a, 128).ok()?;
                self.nets6
                    .get_lpm(&host)
                    .map(|(n, s)| (*s, Some(ipnet::IpNet::V6(n))))
            }
        }
    }

    pub fn addrs(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn subnets(&self) -> usize {
        self.subnets
    }

    /// Heap bytes: hash maps by capacity (slot + control byte); trie nodes estimated at 40 bytes
    /// each (prefix, value, two children and bookkeeping), as the crate does not report its size.
    pub fn heap_bytes(&self) -> usize {
        self.v4.capacity() * 9 + self.v6.capacity() * 33 + self.subnets * 80
    }

    pub fn shrink(&mut self) {
        self.v4.shrink_to_fit();
        self.v6.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_found_once_and_by_content() {
        let mut t = StrTable::default();
        for i in 0..10_000 {
            assert!(t.insert(&format!("host{i}.example"), (i % 7) as u16));
        }
        t.insert("host5.example", 99);
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get("host5.example"), Some(5));
        assert_eq!(t.get("host10000.example"), None);
        t.shrink();
        assert_eq!(t.get("host9999.example"), Some(9999 % 7));
    }

    #[test]
    fn addresses_match_exactly_then_by_longest_prefix() {
        let mut t = AddrTable::default();
        t.insert_addr("192.0.2.1".parse().unwrap(), 1);
        t.insert_net("192.0.2.0/24".parse().unwrap(), 2);
        t.insert_net("192.0.0.0/16".parse().unwrap(), 3);
        t.insert_net("2001:db8::/32".parse().unwrap(), 4);
        assert_eq!(t.get("192.0.2.1".parse().unwrap()).unwrap().0, 1);
        assert_eq!(t.get("192.0.2.9".parse().unwrap()).unwrap().0, 2);
        assert_eq!(t.get("192.0.9.9".parse().unwrap()).unwrap().0, 3);
        assert_eq!(t.get("2001:db8::5".parse().unwrap()).unwrap().0, 4);
        assert!(t.get("198.51.100.1".parse().unwrap()).is_none());
    }
}
