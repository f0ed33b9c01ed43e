//! Indicator files come from feeds and operators: arbitrary bytes as an intel file, read the way
//! `--intel` reads it. The first byte picks the format: Zeek's (or a list with a `#type` line)
//! or a plain list of one of the seven types (`TYPE:PATH`). Never a panic; the counts never
//! exceed the lines read; and in a plain list every value the type accepts is found again by
//! the lookup that rules use.
#![no_main]

use std::net::IpAddr;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use pipeline_detect::intel::{Kind, KindMask, MAX_INTEL_LINE};
use pipeline_detect::IntelSet;

const PROBES: [&str; 4] = ["192.0.2.1", "2001:db8::1", "a.b.evil.example", "evil.example/x"];

/// The file this process writes each input into (one per process: fuzzing jobs run side by side).
fn file() -> PathBuf {
    std::env::temp_dir().join(format!("intel-fuzz-{}.txt", std::process::id()))
}

/// The value a rule's field would carry for an accepted list value, as `lookup_str` takes it.
fn as_looked_up(kind: Kind, value: &str) -> Option<String> {
    match kind {
        // A value with `cn=` is read as a certificate subject by the domain lookup.
        Kind::Domain if value.to_ascii_lowercase().contains("cn=") => None,
        Kind::Url => {
            let v = value.to_ascii_lowercase();
            let host_path = v.strip_prefix("http://").or_else(|| v.strip_prefix("https://"));
            Some(host_path.unwrap_or(&v).to_string())
        }
        _ => Some(value.to_string()),
    }
}

/// Every value of a plain list of `kind` that the type accepts must be found.
fn check_list(set: &IntelSet, kind: Kind, text: &str) {
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if let Some(comment) = line.strip_prefix('#') {
            let c = comment.trim_start();
            if c.starts_with("fields") || c.starts_with("type") {
                // A Zeek header or a `#type` line changes how the rest of the file is read.
                return;
            }
            continue;
        }
        if line.len() > MAX_INTEL_LINE {
            continue;
        }
        let value = line.split('#').next().unwrap_or("").trim();
        if !IntelSet::default().insert(kind, value, "check") {
            continue;
        }
        let found = match kind {
            Kind::Addr => set.lookup_ip(value.parse().expect("accepted address")),
            Kind::Subnet => {
                let net: ipnet::IpNet = value.parse().expect("accepted subnet");
                set.lookup_ip(net.trunc().network())
            }
            _ => match as_looked_up(kind, value) {
                Some(v) => set.lookup_str(KindMask::of(&[kind]), &v),
                None => continue,
            },
        };
        assert!(found.is_some(), "{kind:?} {value:?} loaded but not found");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let path = file();
    std::fs::write(&path, body).expect("writing the input file");
    let list_kind = Kind::ALL.get(usize::from(mode % 8).wrapping_sub(1)).copied();
    let spec = match list_kind {
        Some(k) => format!("{}:{}", k.name(), path.display()),
        None => path.display().to_string(),
    };
    let set = IntelSet::load(&[spec]).expect("a known type");
    let st = set.stats();
    let lines = body.split(|&b| b == b'\n').count();
    assert_eq!(st.unreadable_files, 0);
    assert!(
        st.indicators + st.invalid + st.unsupported + st.malformed <= lines,
        "more outcomes than lines: {st:?}"
    );
    for p in PROBES {
        if let Ok(ip) = p.parse::<IpAddr>() {
            let _ = set.lookup_ip(ip);
        }
        let _ = set.lookup_str(KindMask::of(&Kind::ALL), p);
    }
    if let (Some(kind), Ok(text)) = (list_kind, std::str::from_utf8(body)) {
        check_list(&set, kind, text);
    }
});
