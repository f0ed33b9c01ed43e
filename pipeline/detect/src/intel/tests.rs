use super::*;
use std::io::Write;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p.display().to_string()
}

const ZEEK: &str = "#separator \\x09\n#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\n\
192.0.2.66\tIntel::ADDR\tfeed-a\tbad host\n\
203.0.113.0/24\tIntel::SUBNET\tfeed-a\tbad net\n\
evil.example\tIntel::DOMAIN\tfeed-b\t-\n\
bad.example.com/dropper.exe\tIntel::URL\tfeed-b\t-\n\
e7d705a3286e19ea42f587b344ee6865\tIntel::JA3\tfeed-c\t-\n\
t13d1516h2_8daaf6152771_02713d6af862\tIntel::JA4\tfeed-c\t-\n\
someone@example.com\tIntel::EMAIL\tfeed-c\t-\n\
not-an-ip\tIntel::ADDR\tfeed-c\t-\n\
short-line\n";

#[test]
fn zeek_files_load_every_supported_type_and_count_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let set = IntelSet::load(&[write(dir.path(), "zeek.intel", ZEEK)]).unwrap();
    let st = set.stats();
    assert_eq!(st.indicators, 6);
    assert_eq!(st.unsupported, 1);
    assert_eq!(st.invalid, 1);
    assert_eq!(st.malformed, 1);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(set.lookup_ip(ip("192.0.2.66")).unwrap().source, "feed-a");
    let h = set.lookup_ip(ip("203.0.113.7")).unwrap();
    assert_eq!(
        (h.kind, h.indicator.as_str()),
        (Kind::Subnet, "203.0.113.0/24")
    );
    assert!(set.lookup_ip(ip("192.0.2.67")).is_none());
    let d = set
        .lookup_str(KindMask::of(&[Kind::Domain]), "A.b.Evil.Example.")
        .unwrap();
    assert_eq!(
        (d.indicator.as_str(), d.source.as_str()),
        ("evil.example", "feed-b")
    );
    assert!(set
        .lookup_str(KindMask::of(&[Kind::Domain]), "notevil.example")
        .is_none());
    assert!(set
        .lookup_str(KindMask::of(&[Kind::Domain]), "example")
        .is_none());
    let u = KindMask::of(&[Kind::Url]);
    assert!(set.lookup_str(u, "bad.example.com/dropper.exe").is_some());
    assert!(set.lookup_str(u, "bad.example.com/other").is_none());
    let ja = KindMask::of(&[Kind::Ja3, Kind::Ja4]);
    assert_eq!(
        set.lookup_str(ja, "e7d705a3286e19ea42f587b344ee6865")
            .unwrap()
            .kind,
        Kind::Ja3
    );
    assert_eq!(
        set.lookup_str(ja, "t13d1516h2_8daaf6152771_02713d6af862")
            .unwrap()
            .kind,
        Kind::Ja4
    );
    // A certificate subject matches by its CN.
    let cert = set
        .lookup_str(KindMask::ALL, "C=XX, O=Bad, CN=www.evil.example")
        .unwrap();
    assert_eq!(cert.indicator, "evil.example");
}

#[test]
fn plain_lists_take_their_type_from_the_spec_or_a_type_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "doms.txt",
        "# bad domains\nbad.example\n\nworse.example # note\n",
    );
    let b = write(dir.path(), "ips.txt", "#type ADDR\n198.51.100.7\n");
    let set = IntelSet::load(&[format!("domain:{a}"), b]).unwrap();
    assert_eq!(set.stats().indicators, 3);
    let d = set.lookup_str(KindMask::ALL, "x.worse.example").unwrap();
    assert_eq!(d.source, "doms.txt");
    assert!(set.lookup_ip("198.51.100.7".parse().unwrap()).is_some());
    assert!(IntelSet::load(&["bogus:/x".to_string()]).is_err());
}

#[test]
fn unreadable_files_are_counted_and_reload_picks_up_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.txt").display().to_string();
    let mut set = IntelSet::load(&[format!("DOMAIN:{path}")]).unwrap();
    assert_eq!(set.stats().unreadable_files, 1);
    assert!(set.is_empty());
    write(dir.path(), "late.txt", "late.example\n");
    assert!(set.reload_if_changed());
    assert!(set.lookup_str(KindMask::ALL, "a.late.example").is_some());
    assert!(!set.reload_if_changed(), "nothing changed since");
    // Growing the file is a change (size differs even within the same mtime second).
    write(dir.path(), "late.txt", "late.example\nlater.example\n");
    assert!(set.reload_if_changed());
    assert_eq!(set.len(), 2);
    assert_eq!(set.reloads, 2);
}

#[test]
fn lines_that_are_not_utf8_or_too_long_are_malformed_and_the_rest_of_the_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("list.txt");
    let mut bytes = b"#type ADDR\n192.0.2.1\n\xff\xfe not text\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'9', load::MAX_INTEL_LINE + 10));
    bytes.extend_from_slice(b"\n192.0.2.2\n");
    std::fs::write(&p, bytes).unwrap();
    let set = IntelSet::load(&[p.display().to_string()]).unwrap();
    let st = set.stats();
    assert_eq!(
        (st.indicators, st.malformed, st.unreadable_files),
        (2, 2, 0)
    );
    assert!(set.lookup_ip("192.0.2.2".parse().unwrap()).is_some());
}

/// Found by the `intel_file` fuzz target: a URL of nothing but a scheme was counted as a
/// loaded indicator that nothing could match.
#[test]
fn url_indicators_drop_their_scheme_in_any_case_and_a_bare_scheme_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "urls.txt",
        "HTTPS://Bad.Example.com/Dropper.exe\nhttp://\nhttps://\n",
    );
    let set = IntelSet::load(&[format!("url:{list}")]).unwrap();
    assert_eq!((set.stats().indicators, set.stats().invalid), (1, 2));
    let u = KindMask::of(&[Kind::Url]);
    assert!(set.lookup_str(u, "bad.example.com/dropper.exe").is_some());
    assert!(set.lookup_str(u, "").is_none());
}
