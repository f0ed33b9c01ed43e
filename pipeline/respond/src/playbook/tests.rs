use std::path::{Path, PathBuf};

use super::*;
use crate::alert::Alert;

const ALERT: &str = r#"{"timestamp":"2024-01-02T03:04:05.000006+0000","flow_id":7,"event_type":"alert","src_ip":"10.0.0.1","src_port":1234,"dest_ip":"192.0.2.9","dest_port":22,"proto":"TCP","host":"s1","alert":{"action":"allowed","gid":1,"signature_id":9100002,"rev":1,"signature":"Vertical scan","category":"Attempted Information Leak","severity":2,"metadata":{"rule_kind":["threshold"]},"id":"a1b2","rule":"tcp-vertical-scan","evidence":{"count":120}}}"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn one(text: &str) -> Result<Playbook, Vec<PlaybookError>> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.toml", text);
    load_file(&p).map(|mut v| v.remove(0))
}

const BASE: &str = "[[playbook]]\nname = \"p\"\n[playbook.trigger]\nmin_severity = 2\n";

#[test]
fn the_shipped_playbooks_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/playbooks");
    let pbs = load(&[dir]).unwrap();
    let names: Vec<&str> = pbs.iter().map(|p| p.name.as_str()).collect();
    for n in [
        "block-port-scanners",
        "notify-slack",
        "notify-teams",
        "tag-scanners",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let a = Alert::parse(ALERT.as_bytes()).unwrap();
    let scan = pbs
        .iter()
        .find(|p| p.name == "block-port-scanners")
        .unwrap();
    assert!(scan.matches(&a));
}

#[test]
fn trigger_and_conditions_decide() {
    let a = Alert::parse(ALERT.as_bytes()).unwrap();
    let step = "[[playbook.step]]\nkind = \"block\"\nduration = \"10m\"\n";
    for (extra, want) in [
        ("", true),
        ("[playbook.trigger]\n", true),
        ("signature_ids = [1, 9100002]\n", true),
        ("signature_ids = [1]\n", false),
        ("rules = [\"x\"]\n", false),
        ("categories = [\"Attempted Information Leak\"]\n", true),
        ("fields = { proto = \"TCP\", dest_port = [22, 23] }\n", true),
        ("fields = { proto = \"UDP\" }\n", false),
        (
            "fields = { \"alert.metadata.rule_kind.0\" = \"threshold\" }\n",
            true,
        ),
        (
            "fields = { \"alert.metadata.rule_kind\" = \"threshold\" }\n",
            true,
        ),
        (
            "fields = { \"alert.metadata.rule_kind\" = \"match\" }\n",
            false,
        ),
    ] {
        let text = format!(
            "[[playbook]]\nname = \"p\"\n[playbook.trigger]\nmin_severity = 2\n{extra}{step}"
        )
        .replace(
            "[playbook.trigger]\nmin_severity = 2\n[playbook.trigger]\n",
            "[playbook.trigger]\n",
        );
        let pb = one(&text).unwrap_or_else(|e| panic!("{extra}: {e:?}"));
        assert_eq!(pb.matches(&a), want, "{extra}");
    }
    for (cond, want) in [
        (
            "field = \"alert.evidence.count\"\nop = \">=\"\nvalue = 100",
            true,
        ),
        (
            "field = \"alert.evidence.count\"\nop = \"<\"\nvalue = 100",
            false,
        ),
        (
            "field = \"src_ip\"\nop = \"in_cidr\"\nvalue = [\"10.0.0.0/8\"]",
            true,
        ),
        (
            "field = \"src_ip\"\nop = \"not_in_cidr\"\nvalue = [\"10.0.0.0/8\"]",
            false,
        ),
        (
            "field = \"dest_ip\"\nop = \"not_in_cidr\"\nvalue = \"10.0.0.0/8\"",
            true,
        ),
        (
            "field = \"alert.signature\"\nop = \"matches\"\nvalue = \"^Vert\"",
            true,
        ),
        (
            "field = \"alert.signature\"\nop = \"contains\"\nvalue = \"scan\"",
            true,
        ),
        (
            "field = \"proto\"\nop = \"in\"\nvalue = [\"UDP\", \"TCP\"]",
            true,
        ),
        ("field = \"nope\"\nop = \"absent\"", true),
        ("field = \"nope\"\nop = \"!=\"\nvalue = 3", true),
        ("field = \"nope\"\nop = \"==\"\nvalue = 3", false),
        ("field = \"proto\"\nop = \">\"\nvalue = 3", false),
    ] {
        let text = format!("{BASE}[[playbook.condition]]\n{cond}\n[[playbook.step]]\nkind = \"tag\"\nlabel = \"x\"\nexpire = \"1h\"\n");
        let pb = one(&text).unwrap_or_else(|e| panic!("{cond}: {e:?}"));
        assert_eq!(pb.matches(&a), want, "{cond}");
    }
    let worse = Alert::parse(ALERT.replace("\"severity\":2", "\"severity\":3").as_bytes()).unwrap();
    let pb = one(&format!(
        "{BASE}[[playbook.step]]\nkind = \"block\"\nduration = \"1m\"\n"
    ))
    .unwrap();
    assert!(pb.matches(&a) && !pb.matches(&worse));
}

#[test]
fn every_error_is_one_line_naming_file_playbook_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.toml",
        r#"
[[playbook]]
name = "scan"
[playbook.trigger]
min_severity = 0
colour = "red"
[[playbook.step]]
kind = "block"
target = "middle"
duration = "ten minutes"
prefix_v4 = 4
[[playbook.step]]
kind = "notify"
url = "ftp://x"
body = { text = "{{ src_ip" }
[[playbook.step]]
kind = "tag"
label = "bad label"
[[playbook.step]]
kind = "explode"

[[playbook]]
[playbook.trigger]
[[playbook.condition]]
field = "x"
op = "~"
"#,
    );
    let errs = load(std::slice::from_ref(&p)).unwrap_err();
    let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let f = p.display().to_string();
    for want in [
        format!("{f}: playbook scan: trigger.min_severity: must be 1 to 255, got 0"),
        format!("{f}: playbook scan: trigger.colour: unknown key"),
        format!("{f}: playbook scan: step[0].target: must be \"src\" or \"dest\""),
        format!("{f}: playbook scan: step[0].duration: must be a duration"),
        format!("{f}: playbook scan: step[0].prefix_v4: must be 16 to 32, got 4"),
        format!("{f}: playbook scan: step[1].url: must be an http:// or https:// URL"),
        format!("{f}: playbook scan: step[1].body: unclosed {{{{"),
        format!("{f}: playbook scan: step[2].label: must be 1-64"),
        format!("{f}: playbook scan: step[2].expire: missing"),
        format!("{f}: playbook scan: step[3].kind: must be block, notify or tag"),
        format!("{f}: playbook #2: name: missing"),
        format!("{f}: playbook #2: condition[0].op: must be one of"),
        format!("{f}: playbook #2: step: missing"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&want)),
            "{want}\nnot in:\n{}",
            lines.join("\n")
        );
    }
    assert!(lines.iter().all(|l| !l.contains('\n')));
    // A TOML syntax error names the line.
    let p = write(dir.path(), "syntax.toml", "[[playbook]]\nname = \n");
    let errs = load(&[p]).unwrap_err();
    assert!(errs[0].to_string().contains("line 2"), "{}", errs[0]);
    // Two playbooks of one name.
    let a = write(
        dir.path(),
        "a.toml",
        &format!("{BASE}[[playbook.step]]\nkind = \"block\"\nduration = \"1m\"\n"),
    );
    let errs = load(&[a.clone(), a]).unwrap_err();
    assert!(
        errs[0].to_string().contains("name: the same name"),
        "{}",
        errs[0]
    );
}

proptest::proptest! {
    /// Whatever a playbook file holds, loading it returns playbooks or errors, never panics.
    #[test]
    fn arbitrary_files_never_panic(text in "(\\[\\[playbook\\]\\]|\\[playbook\\.(trigger|step)\\]|\\[\\[playbook\\.(step|condition)\\]\\]|[a-z_]{1,12} = (\"[a-z{} .]{0,12}\"|[0-9]{1,4}|\\[\\]|true)|\n){0,30}") {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "f.toml", &text);
        let _ = load(&[p]);
    }

    /// Whatever an alert holds, parsing and matching it never panics.
    #[test]
    fn arbitrary_alerts_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), cut in 0usize..800) {
        let _ = Alert::parse(&bytes);
        let cut = cut.min(ALERT.len());
        if let Ok(a) = Alert::parse(&ALERT.as_bytes()[..cut]) {
            let pb = one(&format!("{BASE}[[playbook.step]]\nkind = \"block\"\nduration = \"1m\"\n")).unwrap();
            let _ = pb.matches(&a);
        }
    }
}
