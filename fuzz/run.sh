#!/usr/bin/env bash
# Runs fuzz targets for SECONDS each (default 60), seeded from the fixtures, and prints a table
# of executions and crashes. Targets live in two cargo-fuzz packages: `fuzz/` (the sensor's
# parsers, against the `sensor-proto` crate alone) and `pipeline/fuzz/` (the pipeline's inputs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (all targets of both packages when none is named)
#   JOBS=2 fuzz/run.sh 600                 (two targets at a time, one per core)
#
# Needs cargo-fuzz (installed here when missing); on the stable toolchain it runs with
# RUSTC_BOOTSTRAP=1 (cargo fuzz needs -Z flags). A crash leaves its input under
# DIR/artifacts/TARGET/ (DIR: fuzz or pipeline/fuzz): turn it into a regression test beside the
# parser.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-60}
shift || true
packages=(fuzz pipeline/fuzz)

# Each target with the package that holds it, in the order the manifests list them.
declare -A dir_of
all=()
for p in "${packages[@]}"; do
  for t in $(sed -n 's/^name = "\(.*\)"$/\1/p' "$p/Cargo.toml" | grep -v -- '-fuzz$'); do
    dir_of[$t]=$p
    all+=("$t")
  done
done
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [ -n "${dir_of[$t]:-}" ] || { echo "unknown fuzz target: $t (known: ${all[*]})" >&2; exit 2; }
done
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Seeds: payloads cut from the fixture captures, shaped per target (see sensor/testkit/src/gen/seeds.rs).
# Built before RUSTC_BOOTSTRAP is set: the variable is part of cargo's fingerprint, so setting it
# first would rebuild the whole workspace in release mode instead of reusing the usual build.
cargo run --release --quiet --bin pcapgen -- seeds --fixtures testdata-pcaps --out fuzz/corpus
# Rule targets: the shipped rule files, and their expressions one per seed.
mkdir -p pipeline/fuzz/corpus/rule_file pipeline/fuzz/corpus/rule_expr
cp config/rules/*.toml pipeline/fuzz/corpus/rule_file/
grep -h "^\(where\|first\|then\) = '" config/rules/*.toml | sed "s/^[a-z]* = '//; s/'$//" \
  | split -l 1 - pipeline/fuzz/corpus/rule_expr/shipped-
# EVE stream: the records of the fixtures and attack captures, 40 lines per seed.
mkdir -p pipeline/fuzz/corpus/eve_stream pipeline/fuzz/corpus/intel_file
cargo run --release --quiet --bin sensor -- replay testdata-pcaps/*.pcap testdata-pcaps/attacks/*.pcap \
  --eve - 2>/dev/null | split -l 40 - pipeline/fuzz/corpus/eve_stream/records-
# Intel files (first byte: 0 = Zeek format, 1-7 = a plain list of ADDR ... JA4): the attack
# captures' Zeek file, and its indicators as plain lists.
intel=pipeline/cli/tests/data/intel.zeek
{ printf '\0'; cat "$intel"; } >pipeline/fuzz/corpus/intel_file/zeek
i=1
for k in ADDR SUBNET DOMAIN URL CERT_HASH JA3 JA4; do
  { printf "\\x0$i"; awk -F'\t' -v k="Intel::$k" '$2 == k { print $1 }' "$intel"; } \
    >pipeline/fuzz/corpus/intel_file/list-$k
  i=$((i + 1))
done
export RUSTC_BOOTSTRAP=1
for p in "${packages[@]}"; do
  for t in "${targets[@]}"; do
    if [ "${dir_of[$t]}" = "$p" ]; then
      cargo fuzz build -O --fuzz-dir "$p" >/dev/null
      mkdir -p "$p/logs"
      break
    fi
  done
done

# (--fuzz-dir always: cargo fuzz would otherwise take the first fuzz/ it finds, the sensor's.)
run_one() {
  local t=$1 p=$2 secs=$3
  mkdir -p "$p/corpus/$t" "$p/artifacts/$t"
  cargo fuzz run -O --fuzz-dir "$p" "$t" "$p/corpus/$t" -- -max_total_time="$secs" \
    -rss_limit_mb=2048 >"$p/logs/$t.log" 2>&1 && echo "ok" >"$p/logs/$t.status" \
    || echo "FAILED" >"$p/logs/$t.status"
}
export -f run_one
for t in "${targets[@]}"; do echo "$t ${dir_of[$t]}"; done \
  | xargs -P "${JOBS:-1}" -L 1 bash -c "run_one \$0 \$1 $secs"

printf '\n%-17s %8s %14s %12s  %s\n' target seconds executions exec/s result
status=0
for t in "${targets[@]}"; do
  p=${dir_of[$t]}
  runs=$(grep -o 'Done [0-9]* runs' "$p/logs/$t.log" | tail -1 | awk '{print $2}')
  res=$(cat "$p/logs/$t.status")
  crashes=$(find "$p/artifacts/$t" -type f | wc -l)
  [ "$res" = ok ] && [ "$crashes" -eq 0 ] || status=1
  printf '%-17s %8s %14s %12s  %s (%s artifacts)\n' "$t" "$secs" "${runs:-?}" \
    "$(( ${runs:-0} / (secs > 0 ? secs : 1) ))" "$res" "$crashes"
done
exit $status
