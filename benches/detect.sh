#!/usr/bin/env bash
# Detection benchmark (offline): records per CPU-second of `pipeline detect --eve` with the
# shipped rules and one million threat-intel indicators, against a bare serde_json loop over
# the same EVE lines measured in the same run; intel load time and memory per indicator.
#
# Usage: benches/detect.sh [--short]
#
#   (default)  EVE of a ~400 MiB capture amplified from the fixtures and the attack captures,
#              1,000,000 indicators.
#   --short    ~40 MiB capture, 1,000,000 indicators: the CI mode (.ci/run), under a minute
#              once built.
#
# Steps:
#   1. cargo build --release (sensor, pcapgen, pipeline, the examples eve_parse_floor and
#      gen_intel of pipeline-detect);
#   2. pcapgen amplify testdata-pcaps/*.pcap testdata-pcaps/attacks/*.pcap to the target size,
#      then `sensor replay --eve FILE` once (benches/work/, kept between runs);
#   3. gen_intel writes N indicators in Zeek format (40% domains, 30% addresses, 10% subnets,
#      10% URLs, 5% JA3, 5% JA4);
#   4. CPU seconds (user + sys, GNU time) of: `pipeline detect --eve EVE --intel INTEL` (the
#      CPU of the same run over no record, step 5, is subtracted to get the per-record rate;
#      both printed); the same without intel; `eve_parse_floor value` (each line into a
#      serde_json::Value) and `eve_parse_floor skip` (IgnoredAny: validate only);
#   5. memory: max RSS of `pipeline detect --eve /dev/null` with and without the indicators,
#      divided by N (what the OS charged), beside the tables' own count (heap capacities);
#   6. benches/detect_online.sh (online against a bare consume loop) and
#      benches/detect_suricata.sh (against Suricata 7 on the attack captures), same mode.
#
# Exit status: 0 whatever the figures are; 1 if the build fails.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

TARGET=400M
[ "${1:-}" = "--short" ] && TARGET=40M
N=1000000

cargo build --release -q --workspace --bin sensor --bin pcapgen --bin pipeline \
    --example eve_parse_floor --example gen_intel
BIN=target/release
mkdir -p benches/work
CAP=benches/work/detect-$TARGET.pcap
EVE=benches/work/detect-$TARGET.eve
INTEL=benches/work/intel-$N.zeek
if [ ! -s "$EVE" ]; then
    "$BIN/pcapgen" amplify --out "$CAP" --target-bytes "$TARGET" testdata-pcaps/*.pcap testdata-pcaps/attacks/*.pcap >/dev/null
    "$BIN/sensor" replay "$CAP" --eve "$EVE" --quiet 2>/dev/null
    rm -f "$CAP"
fi
[ -s "$INTEL" ] || "$BIN/examples/gen_intel" "$N" "$INTEL"
RECORDS=$(wc -l <"$EVE")
BYTES=$(stat -c %s "$EVE")

# cpu_of CMD...: runs CMD (stdout discarded, stderr kept in $TMP/err), sets CPU (s) and RSS (KB).
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cpu_of() {
    /usr/bin/time -f "%U %S %M" -o "$TMP/time" "$@" >/dev/null 2>"$TMP/err"
    read -r u s m <"$TMP/time"
    CPU=$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')
    RSS=$m
}
# calc EXPR: floating-point arithmetic (awk; bc is not installed everywhere).
calc() { awk "BEGIN {printf \"%.6f\", $1}"; }
rate() { awk -v n="$1" -v c="$2" 'BEGIN {printf "%.0f", (c > 0 ? n / c : 0)}'; }

cpu_of "$BIN/pipeline" detect --eve "$EVE" --intel "$INTEL"
DET_CPU=$CPU
LOAD=$(sed -n 's/^intel: .* in \([0-9.]*\)s, .*/\1/p' "$TMP/err")
HEAP=$(sed -n 's/^intel: .*s, \([0-9]*\) bytes (.*/\1/p' "$TMP/err")
ALERTS=$(sed -n 's/^detect: .* alerts \([0-9]*\) .*/\1/p' "$TMP/err")
cpu_of "$BIN/pipeline" detect --eve "$EVE"
NOINTEL_CPU=$CPU
NOINTEL_RATE=$(rate "$RECORDS" "$NOINTEL_CPU")
cpu_of "$BIN/examples/eve_parse_floor" value "$EVE"
VALUE_CPU=$CPU
VALUE_RATE=$(rate "$RECORDS" "$VALUE_CPU")
cpu_of "$BIN/examples/eve_parse_floor" skip "$EVE"
SKIP_CPU=$CPU
SKIP_RATE=$(rate "$RECORDS" "$SKIP_CPU")
cpu_of "$BIN/pipeline" detect --eve /dev/null
RSS0=$RSS
cpu_of "$BIN/pipeline" detect --eve /dev/null --intel "$INTEL"
RSS1=$RSS
LOAD_CPU=$CPU
# Per-record rate with intel: the CPU of the same start-up and load over no record (the run
# above) subtracted; the engine's load time is wall time, which a loaded machine stretches.
DET_RATE=$(rate "$RECORDS" "$(calc "$DET_CPU - $LOAD_CPU")")

echo "== detect benchmark ($TARGET capture: $RECORDS EVE records, $((BYTES / 1048576)) MiB; $N indicators; $(grep -c '^\[\[rule\]\]' config/rules/*.toml | awk -F: '{s+=$2} END {print s}') shipped rules)"
printf '%-44s %10s %14s %8s\n' "run" "CPU s" "records/CPU-s" "ratio"
printf '%-44s %10.2f %14s %8.2f\n' "pipeline detect, shipped rules + 1M intel" "$DET_CPU" "$DET_RATE" "$(calc "$DET_RATE / $VALUE_RATE")"
printf '%-44s %10.2f %14s %8.2f\n' "pipeline detect, shipped rules, no intel" "$NOINTEL_CPU" "$NOINTEL_RATE" "$(calc "$NOINTEL_RATE / $VALUE_RATE")"
printf '%-44s %10.2f %14s %8.2f\n' "bare serde_json::Value parse loop (peer)" "$VALUE_CPU" "$VALUE_RATE" 1
printf '%-44s %10.2f %14s %8.2f\n' "bare serde_json IgnoredAny loop (floor)" "$SKIP_CPU" "$SKIP_RATE" "$(calc "$SKIP_RATE / $VALUE_RATE")"
echo "alerts raised: $ALERTS; goal >= 1000000 records/CPU-s: $([ "$DET_RATE" -ge 1000000 ] && echo met || echo NOT met)"
echo "intel: $N indicators loaded in ${LOAD}s (wall, inside the engine; whole load run ${LOAD_CPU} CPU-s);" \
    "tables $HEAP bytes = $(calc "$HEAP / $N") bytes/indicator;" \
    "max RSS $RSS1 KB vs $RSS0 KB without = $(calc "($RSS1 - $RSS0) * 1024 / $N") bytes/indicator"

# Online part: records per CPU-second through `pipeline detect --config` against a bare
# async-nats pull-and-ack loop on the same stream (its own script, run with the same mode).
echo
timeout 600 bash benches/detect_online.sh "${1:-}" || echo "online detect benchmark failed to run"

# Against Suricata 7 on the attack captures: CPU and the table of alerts (its own script).
echo
timeout 900 bash benches/detect_suricata.sh "${1:-}" || echo "suricata comparison failed to run"
