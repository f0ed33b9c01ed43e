//! Compiles the traffic generator's XDP program (`xdp-prog/gen.bpf.c`) so `pcapgen send
//! --method xdp` embeds it (see `xdp-prog/compile.rs`).

include!("../../xdp-prog/compile.rs");

fn main() {
    compile_bpf("gen", "../../xdp-prog/gen.bpf.c");
}
