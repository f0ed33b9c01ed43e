#!/usr/bin/env bash
# Online detection benchmark: records per CPU-second through `pipeline detect --config` (the
# durable JetStream consumer: the shipped rules, checkpoints, alert sinks) against a bare
# async-nats loop that pulls and acknowledges the same stream (the `bare_consume` example), one
# core each (taskset), measured in the same run. Goal: ratio >= 0.80.
#
# Usage: benches/detect_online.sh [--short]   (benches/detect.sh runs it as its online part)
#
#   (default)  ~100 MiB capture amplified from the fixtures and attack captures;
#   --short    ~10 MiB, the CI mode: well under a minute once built.
#   INTEL=N    also load N generated indicators (default 1000000, 100000 in short mode).
#
# Steps:
#   1. cargo build --release (sensor, pcapgen, pipeline, the bare_consume example);
#   2. pcapgen amplify the captures (benches/work/); nats-server -js on a free loopback port;
#   3. `sensor replay CAPTURE --nats URL --sensor-id b1` fills stream SENSOR (N records);
#   4. bare loop: `bare_consume URL SENSOR N` prints its CPU seconds from first to last message;
#   5. `pipeline detect --config` with its own consumer on the same stream: CPU seconds (utime
#      + stime from /proc) between its first record and its N-th (read from /metrics), so the
#      rules' and intel's load time is not counted;
#   6. print both rates and the ratio.
#
# Exit status: 0 whatever the figures are; 1 if the build or a server start fails.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

TARGET=100M
INTEL_N=${INTEL:-1000000}
if [ "${1:-}" = "--short" ]; then TARGET=10M; INTEL_N=${INTEL:-100000}; fi
command -v nats-server >/dev/null || { echo "online bench: nats-server not installed (scripts/setup.sh)"; exit 0; }

cargo build --release -q --workspace --bin sensor --bin pcapgen --bin pipeline --example bare_consume
BIN=target/release
mkdir -p benches/work
CAP=benches/work/detect-online-$TARGET.pcap
if [ ! -s "$CAP" ]; then
    "$BIN/pcapgen" amplify --out "$CAP" --target-bytes "$TARGET" \
        testdata-pcaps/tls.pcap testdata-pcaps/http.pcap testdata-pcaps/dns.pcap \
        testdata-pcaps/attacks/*.pcap >/dev/null
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS=$(free_port); METRICS=$(free_port)
URL="nats://127.0.0.1:$NATS"
nats-server -js -a 127.0.0.1 -p "$NATS" -sd "$TMP/js" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS") 2>/dev/null && break; sleep 0.1; done

# Indicators: addresses of a documentation range that the traffic does not use, in Zeek's
# Intel format, so every record is looked up and none matches.
{
    printf '#fields\tindicator\tindicator_type\tmeta.source\n'
    awk -v n="$INTEL_N" 'BEGIN { for (i = 0; i < n; i++) printf "100.%d.%d.%d\tIntel::ADDR\tbench\n", 64 + int(i / 65536) % 64, int(i / 256) % 256, i % 256 }'
} >"$TMP/intel.dat"

printf '[sensor]\nworkers = 1\npin_cores = false\n[spool]\ndir = "%s"\n' "$TMP/spool" >"$TMP/sensor.toml"
"$BIN/sensor" replay "$CAP" --config "$TMP/sensor.toml" --nats "$URL" --sensor-id b1 --quiet --eve '' >/dev/null
BARE=$(taskset -c 0 "$BIN/examples/bare_consume" "$URL" SENSOR 0)
BARE_RATE=$(sed 's/.*rate=//' <<<"$BARE")
N=$(sed 's/records=\([0-9]*\).*/\1/' <<<"$BARE")
echo "online bench: $N records in stream SENSOR ($CAP), $INTEL_N indicators"

cat >"$TMP/detect.toml" <<EOF2
instance = "bench"
state_dir = "$TMP/state"
metrics_listen = "127.0.0.1:$METRICS"
[nats]
url = "$URL"
lease_secs = 5
[detect]
rules = "config/rules"
intel = ["$TMP/intel.dat"]
EOF2
taskset -c 0 "$BIN/pipeline" detect --config "$TMP/detect.toml" 2>"$TMP/detect.log" &
DPID=$!
PIDS+=($DPID)
cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$DPID/stat"; }
# (curl fails until the endpoint is up: that is 0 records, not an error under `set -e`.)
records() { { curl -s "http://127.0.0.1:$METRICS/metrics" 2>/dev/null || true; } | awk '/^pipeline_detect_records_total/ { s += $2 } END { print s + 0 }'; }
R0=0; C0=0
for _ in $(seq 6000); do
    R=$(records)
    if [ "$R0" = 0 ] && [ "$R" -gt 0 ]; then R0=$R; C0=$(cpu); fi
    [ "$R" -ge "$N" ] && break
    kill -0 "$DPID" 2>/dev/null || { echo "online bench: pipeline detect exited"; cat "$TMP/detect.log"; exit 1; }
    sleep 0.05
done
C1=$(cpu)
R1=$(records)
kill -TERM "$DPID"; wait "$DPID" 2>/dev/null || true
python3 - "$R0" "$C0" "$R1" "$C1" "$BARE" "$BARE_RATE" <<'PY'
import sys
r0, c0, r1, c1 = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
bare, bare_rate = sys.argv[5], float(sys.argv[6])
n, cpu = r1 - r0, max(c1 - c0, 0.01)
rate = n / cpu
print(f"| consumer (one core) | records | CPU-s | records per CPU-s |")
print(f"|---|---|---|---|")
print(f"| bare async-nats pull + ack each | {bare.split()[0].split('=')[1]} | {bare.split()[1].split('=')[1]} | {bare_rate:,.0f} |")
print(f"| pipeline detect --config (shipped rules, intel) | {n} | {cpu:.2f} | {rate:,.0f} |")
print(f"online / bare: {rate / bare_rate:.2f} (goal >= 0.80)")
PY
