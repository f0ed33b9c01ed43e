use super::*;

fn errs(text: &str) -> Vec<String> {
    match RuleSet::parse(Path::new("r.toml"), text) {
        Ok(_) => vec![],
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

const GOOD: &str = r#"
[[rule]]
name = "a"
kind = "match"
sid = 1
category = "c"
severity = 1
mitre = ["T1046", "T1110.001"]
where = 'dest_port == 22'

[[rule]]
name = "b"
kind = "threshold"
sid = 2
category = "c"
severity = 2
where = 'event_type == "flow"'
group_by = ["src_ip"]
distinct = "dest_port"
window = "1m"
condition = ">= 3"
"#;

#[test]
fn good_rules_compile() {
    let rules = RuleSet::parse(Path::new("r.toml"), GOOD).unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].meta.signature, "a");
    assert_eq!(rules[1].meta.kind, "threshold");
}

#[test]
fn errors_name_file_line_rule_and_key() {
    let bad = GOOD.replace("where = 'dest_port == 22'", "where = 'dest_prt == 22'");
    assert_eq!(
        errs(&bad),
        vec!["r.toml:9: rule a: where: at offset 0: unknown field `dest_prt`"]
    );
    let bad = GOOD.replace("severity = 2", "severity = 7");
    assert_eq!(
        errs(&bad),
        vec!["r.toml:16: rule b: severity: must be 1-4, got 7"]
    );
    let bad = GOOD.replace("condition = \">= 3\"", "condition = \"lots\"");
    assert_eq!(
        errs(&bad),
        vec![r#"r.toml:21: rule b: condition: "lots" is not `OP NUMBER` (>=, >, <=, <, ==)"#]
    );
    let bad = GOOD.replace("window = \"1m\"", "window = \"1 fortnight\"");
    assert!(
        errs(&bad)[0].starts_with("r.toml:20: rule b: window:"),
        "{:?}",
        errs(&bad)
    );
    let bad = GOOD.replace(
        "mitre = [\"T1046\", \"T1110.001\"]",
        "mitre = [\"lateral\"]",
    );
    assert!(errs(&bad)[0].starts_with("r.toml:8: rule a: mitre:"));
    let bad = GOOD.replace(
        "where = 'dest_port == 22'",
        "where = 'dest_port == 22'\nwindow = \"1m\"",
    );
    assert_eq!(
        errs(&bad),
        vec!["r.toml:10: rule a: window: not a key of a match rule"]
    );
}

#[test]
fn unknown_keys_and_toml_errors_have_a_line() {
    let bad = GOOD.replace("severity = 1\n", "severity = 1\nsevrity = 1\n");
    let e = errs(&bad);
    assert!(
        e[0].starts_with("r.toml:8: ") && e[0].contains("sevrity"),
        "{e:?}"
    );
    let e = errs("[[rule]]\nname = \"x\nkind = 1\n");
    assert!(e[0].starts_with("r.toml:2: "), "{e:?}");
}

#[test]
fn names_and_sids_are_unique_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        GOOD.replace("name = \"b\"", "name = \"c\""),
    )
    .unwrap();
    let e = RuleSet::load(&[dir.path().to_path_buf()]).unwrap_err();
    let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rule a: name: defined twice")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rule c: sid: 2 is also the sid of rule b")),
        "{lines:?}"
    );
}

#[test]
fn the_shipped_rules_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/rules");
    let set = RuleSet::load(&[dir]).unwrap_or_else(|e| panic!("{}", e[0]));
    assert!(set.len() >= 25);
    for r in &set.rules {
        assert!(
            !r.meta.mitre.is_empty(),
            "{} has no MITRE technique",
            r.meta.name
        );
    }
}
