//! The test devices' command lines: `pcapgen fixtures` and `pcapgen attacks` write exactly the
//! committed captures of `testdata-pcaps/` (the generator is deterministic, and the committed
//! files are its output), and `floor` refuses bad arguments with one line and exit code 2.
//! (Being this package's integration test also makes `cargo test --workspace` build its
//! binaries, which the sensor's and the pipeline's live tests run.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `.pcap` files of a folder, by name.
fn captures(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn pcapgen_writes_the_committed_fixtures_byte_for_byte() {
    for (cmd, committed) in [
        ("fixtures", "testdata-pcaps"),
        ("attacks", "testdata-pcaps/attacks"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let st = Command::new(env!("CARGO_BIN_EXE_pcapgen"))
            .args([cmd, "--out"])
            .arg(out.path())
            .status()
            .unwrap();
        assert!(st.success(), "pcapgen {cmd}: {st}");
        let written = captures(out.path());
        let expected = captures(&repo().join(committed));
        assert!(!expected.is_empty());
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&written), names(&expected), "pcapgen {cmd}");
        for ((name, a), (_, b)) in written.iter().zip(&expected) {
            assert!(
                a == b,
                "pcapgen {cmd}: {name} differs from {committed}/{name}"
            );
        }
    }
}

#[test]
fn floor_refuses_bad_arguments_with_one_line_and_exit_2() {
    for args in [
        &["--iface", "no-such-if0", "--mode", "xdp-drop"][..],
        &["--iface", "lo", "--mode", "xdp-drop", "--duration=-1"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_floor"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("floor: "), "{err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_accuracy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
}
