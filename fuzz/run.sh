#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), seeded from the fixtures.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on the stable toolchain it runs with
# RUSTC_BOOTSTRAP=1 (cargo fuzz needs -Z flags). A crash leaves its input under
# fuzz/artifacts/TARGET/: turn it into a regression test beside the parser.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in decode tcp_dpi udp_dpi dns; do
  mkdir -p "corpus/$t"
  # Seed: the fixture captures' bytes cut into frame-sized pieces are a decent start.
  for f in ../testdata-pcaps/*.pcap; do
    [ -f "$f" ] && split -b 1500 -d "$f" "corpus/$t/$(basename "$f")." 2>/dev/null || true
  done
  echo "== $t for ${secs}s"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
done
