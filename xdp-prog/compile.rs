// Shared by the build scripts of `sensor` (sensor.bpf.c) and `sensor-testkit` (gen.bpf.c),
// which `include!` it: compiles one XDP program for the BPF target with BTF into OUT_DIR, so
// the binary embeds the object it loads. Stable Rust cannot build eBPF here (no nightly, no
// rust-src), hence C and clang. `CLANG` overrides the compiler.

/// Compiles `src` (relative to the crate) to `OUT_DIR/<name>.bpf.o`.
fn compile_bpf(name: &str, src: &str) {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={src}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let out = out_dir.join(format!("{name}.bpf.o"));
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed ({s}) compiling {src}"),
        Err(e) => panic!(
            "cannot run {clang} to build the XDP programs: {e} (install clang: scripts/setup.sh)"
        ),
    }
}
