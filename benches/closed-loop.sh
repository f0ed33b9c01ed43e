#!/usr/bin/env bash
# Closed-loop benchmark: how long from the packet that completes a detection to the block in
# the sensor's XDP program. Everything real, on a veth pair in a namespace it creates: the
# generator sends port scans (the fixture `attacks/tcp_scan_noreply.pcap`, each loop with its
# own addresses); `sensor run` (default batch settings, `nats.flow_start = true`) publishes a
# `flow_start` record per new flow; `pipeline detect` (default settings, the shipped rules)
# raises `tcp-vertical-scan-start` as the scan's 30th port starts; `pipeline respond` (a
# playbook blocking the source, guard-rail limits raised out of the way) signs a command; the
# sensor verifies it and writes its kernel map.
#
# Each detection is timed from the crossing packet's capture time (the alert's timestamp) to
# the sensor's `applied` audit record (written once the map update returned), and split by
# stage with the store times of the JetStream streams (SENSOR, ALERTS, COMMANDS). Then a burst
# of new scans at a high rate gives the alerts, commands and blocks per second the path
# sustains. The last line is `block latency ms: p50 X p99 Y max Z`.
#
# Usage: benches/closed-loop.sh [--short]      (needs root, nats-server, clickhouse-server)
#
#   (default)  300 paced detections (10 scans a second), then a burst of 2000 scans;
#   --short    100 paced detections, a burst of 300: the CI mode (about a minute once built).
#
# The harness is the ignored test `closed_loop_benchmark` of pipeline/cli/tests/closed_loop.rs
# (pipeline/cli/tests/closed_loop_bench/), which shares the end-to-end test's set-up.
# Exit status: 0 whatever the figures are; 1 if the build fails.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

N=300
BURST=2000
if [ "${1:-}" = "--short" ]; then N=100; BURST=300; fi
if [ "$(id -u)" != 0 ]; then echo "closed-loop bench: needs root (veth, XDP)"; exit 0; fi
for s in nats-server clickhouse-server; do
    command -v "$s" >/dev/null || [ -x "/usr/sbin/$s" ] || { echo "closed-loop bench: $s not installed (scripts/setup.sh)"; exit 0; }
done

# The workspace's test build (the same features as `cargo test --workspace --release`, so
# nothing is rebuilt), then the test binary's path from cargo's own report.
cargo test --workspace --release --no-run -q 2>/dev/null
BIN=$(cargo test --workspace --release --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "closed_loop" and m.get("executable"):
        print(m["executable"])')
[ -x "$BIN" ] || { echo "closed-loop bench: test binary not found"; exit 1; }

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "closed-loop bench: $N paced detections, burst of $BURST scans"
(cd pipeline/cli && CLOSED_LOOP_DETECTIONS=$N CLOSED_LOOP_BURST=$BURST \
    "$BIN" --ignored --exact closed_loop_bench::closed_loop_benchmark --nocapture --test-threads 1) \
    2>&1 | tee "$OUT" | grep -v '^block latency ms:' || true
# The result line last, after the harness's own lines.
grep '^block latency ms:' "$OUT" || echo "block latency ms: no result (see above)"
