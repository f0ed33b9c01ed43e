//! The enrichment library's inputs, which operators and updaters supply: the networks file
//! (text through the CSV reader and the CIDR parser into the tries) and MMDB files (bytes through
//! the reader, its whole-file verification, and lookups that decode records). Nothing may panic;
//! a file refused is an `Err`, and lookups in an accepted file answer or count an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline_enrich::{Mmdb, Networks};
use std::net::IpAddr;

const PROBES: [&str; 5] = ["10.1.2.3", "81.2.69.142", "::ffff:1.0.0.1", "2001:218::1", "::"];

fuzz_target!(|data: &[u8]| {
    let probes = PROBES.map(|p| p.parse::<IpAddr>().unwrap());
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = Networks::parse(text) {
            for ip in probes {
                let _ = n.lookup(ip);
            }
        }
    }
    if let Ok(db) = Mmdb::from_bytes(data.to_vec()) {
        for ip in probes {
            let _ = db.geo(ip);
            let _ = db.asn(ip);
        }
    }
});
