#!/usr/bin/env bash
# Runs fuzz targets for SECONDS each (default 60), seeded from the fixtures, and prints a table
# of executions and crashes.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (all targets when none is named)
#   JOBS=2 fuzz/run.sh 600                 (two targets at a time, one per core)
#
# Needs cargo-fuzz (installed here when missing); on the stable toolchain it runs with
# RUSTC_BOOTSTRAP=1 (cargo fuzz needs -Z flags). A crash leaves its input under
# fuzz/artifacts/TARGET/: turn it into a regression test beside the parser.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v sensor-fuzz))
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Seeds: payloads cut from the fixture captures, shaped per target (see sensor/src/gen/seeds.rs).
# Built before RUSTC_BOOTSTRAP is set: the variable is part of cargo's fingerprint, so setting it
# first would rebuild the whole workspace in release mode instead of reusing the usual build.
(cd .. && cargo run --release --quiet --bin pcapgen -- seeds --fixtures testdata-pcaps --out fuzz/corpus)
# Rule targets: the shipped rule files, and their expressions one per seed.
mkdir -p corpus/rule_file corpus/rule_expr
cp ../config/rules/*.toml corpus/rule_file/
grep -h "^\(where\|first\|then\) = '" ../config/rules/*.toml | sed "s/^[a-z]* = '//; s/'$//" \
  | split -l 1 - corpus/rule_expr/shipped-
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null
mkdir -p logs

run_one() {
  local t=$1 secs=$2
  mkdir -p "corpus/$t" "artifacts/$t"
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    >"logs/$t.log" 2>&1 && echo "ok" >"logs/$t.status" || echo "FAILED" >"logs/$t.status"
}
export -f run_one
printf '%s\n' "${targets[@]}" | xargs -P "${JOBS:-1}" -I{} bash -c "run_one {} $secs"

printf '\n%-10s %8s %14s %12s  %s\n' target seconds executions exec/s result
status=0
for t in "${targets[@]}"; do
  runs=$(grep -o 'Done [0-9]* runs' "logs/$t.log" | tail -1 | awk '{print $2}')
  res=$(cat "logs/$t.status")
  crashes=$(find "artifacts/$t" -type f | wc -l)
  [ "$res" = ok ] && [ "$crashes" -eq 0 ] || status=1
  printf '%-10s %8s %14s %12s  %s (%s artifacts)\n' "$t" "$secs" "${runs:-?}" \
    "$(( ${runs:-0} / (secs > 0 ? secs : 1) ))" "$res" "$crashes"
done
exit $status
