//! Compiles the XDP programs (`xdp-prog/sensor.bpf.c`, and `gen.bpf.c` for the traffic
//! generator) for the BPF target with BTF, so the binaries embed the objects they load. Stable
//! Rust cannot build eBPF here (no nightly, no rust-src), hence C and clang. `CLANG` overrides
//! the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    for name in ["sensor", "gen"] {
        let src = PathBuf::from(format!("../xdp-prog/{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        let out = out_dir.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{clang} failed ({s}) compiling {}", src.display()),
            Err(e) => panic!(
                "cannot run {clang} to build the XDP programs: {e} (install clang: scripts/setup.sh)"
            ),
        }
    }
}
