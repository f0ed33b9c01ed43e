//! `pipeline console` as a user runs it: hash-password, check-config, and bad config = one
//! line and exit code 2.

use std::io::Write;
use std::process::{Command, Stdio};

fn pipeline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
}

fn hash(pw: &str) -> String {
    let mut c = pipeline()
        .args(["console", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{pw}\n").as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The example config with a real hash in place of its placeholder.
fn example(dir: &std::path::Path) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("config/console.example.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .unwrap();
    let text = text.replace(line, &format!("password_hash = \"{}\"", hash("pw")));
    let p = dir.join("console.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn hash_password_prints_an_argon2id_hash_that_verifies() {
    let h = hash("correct horse");
    assert!(h.starts_with("$argon2id$"), "{h}");
    assert!(pipeline_console::auth::verify_password("correct horse", &h));
    assert!(!pipeline_console::auth::verify_password(
        "correct horse!",
        &h
    ));
}

#[test]
fn the_example_config_checks_and_masks_its_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let out = pipeline()
        .args(["console", "check-config"])
        .arg(example(dir.path()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
    assert!(!text.contains("change-me"), "{text}");
}

#[test]
fn bad_config_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(example(dir.path())).unwrap();
    let cases = [
        (
            good.replace("http://127.0.0.1:8123", "127.0.0.1:8123"),
            "clickhouse.url",
        ),
        (
            good.replace("role = \"admin\"", "role = \"root\""),
            "unknown variant",
        ),
        (
            good.replace("listen = \"127.0.0.1:8080\"", "listen = 8080"),
            "listen",
        ),
        (
            "[clickhouse]\nurl = \"http://x\"\nuser = \"u\"\n".to_string(),
            "users",
        ),
    ];
    for (text, want) in cases {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, &text).unwrap();
        for args in [
            vec!["console", "check-config"],
            vec!["console", "serve", "--config"],
        ] {
            let out = pipeline().args(&args).arg(&p).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(
                err.contains(want) && err.contains("bad.toml"),
                "{want}: {err}"
            );
        }
    }
    // A certificate that is not one: a config error too, before any connection is tried.
    let bad_cert = dir.path().join("cert.pem");
    std::fs::write(&bad_cert, "not a certificate").unwrap();
    let text = good.replace(
        "# tls_cert = \"/etc/sensor/console.crt\"\n# tls_key = \"/etc/sensor/console.key\"",
        &format!("tls_cert = {:?}\ntls_key = {:?}", bad_cert, bad_cert),
    );
    let p = dir.path().join("tls.toml");
    std::fs::write(&p, text).unwrap();
    let out = pipeline()
        .args(["console", "serve", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("server.tls_cert"), "{err}");
}
