//! Compiles the sensor's XDP program (`xdp-prog/sensor.bpf.c`) so the binary embeds it (see
//! `xdp-prog/compile.rs`).

include!("../../xdp-prog/compile.rs");

fn main() {
    compile_bpf("sensor", "../../xdp-prog/sensor.bpf.c");
}
