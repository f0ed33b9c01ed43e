#!/usr/bin/env bash
# Export under an outage, end to end: the 1 GB capture amplified from the real captures,
# replayed with ClickHouse, NATS and an EVE file at once; in the outage runs clickhouse-server
# (then, in one more run, nats-server) is SIGKILLed 1 s into the replay and restarted 5 s later
# on the same data (the scenario of the "export you can trust" issue). After each run it counts, and checks equal:
#   EVE flow records = rows in `flows` = distinct flow_id in `flows`,
#   EVE http / dns records = rows in `http_requests` / `dns_queries`,
#   EVE records = messages in stream SENSOR (JetStream's own count, from nats-server's /jsz).
#
# Usage: benches/outage.sh [--short] [--runs N]
#   (default)  1 GiB capture: one run without an outage, N=3 with ClickHouse killed, one with
#              NATS killed.
#   --short    100 MiB capture, one of each (CI); the kill comes 0.3 s in, as that replay is short.
# Exit status: 1 if a count differs or a step fails, else 0.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

TARGET=1G; RUNS=3; KILL_AT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --short) TARGET=100M; RUNS=1; KILL_AT=0.3 ;;
        --runs) RUNS=$2; shift ;;
        *) echo "usage: benches/outage.sh [--short] [--runs N]" >&2; exit 2 ;;
    esac
    shift
done
for bin in nats-server curl python3; do
    command -v "$bin" >/dev/null || { echo "outage: $bin not installed (scripts/setup.sh)"; exit 0; }
done

# The same build as the tests (`cargo test --workspace --release`): nothing recompiles after them.
cargo test --workspace --release --no-run -q 2>/dev/null || cargo test --workspace --release --no-run
BIN=target/release
INPUT=../shared/pcaps/real
[ -d "$INPUT" ] || INPUT="testdata-pcaps"
mkdir -p benches/work
CAP=benches/work/outage-$TARGET.pcap
if [ ! -s "$CAP" ]; then
    "$BIN/pcapgen" amplify --out "$CAP" --target-bytes "$TARGET" "$INPUT" >/dev/null
fi

. benches/lib/servers.sh
ch_start
nats_start bench bench

stream_msgs() {
    curl -sf "http://127.0.0.1:$NATS_MON/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
n = 0
for acc in d.get("account_details", []):
    for s in acc.get("stream_detail", []):
        if s["name"] == "SENSOR":
            n = s["state"]["messages"]
print(n)'
}

eve_counts() {
    python3 - "$1" <<'PY'
import json, sys
total = flows = http = dns = 0
ids = set()
for line in open(sys.argv[1], "rb"):
    r = json.loads(line)
    total += 1
    t = r.get("event_type")
    if t == "flow":
        flows += 1
        ids.add(r["flow_id"])
    elif t == "http":
        http += 1
    elif t == "dns":
        dns += 1
print(total, flows, len(ids), http, dns)
PY
}

FAILED=0
run_case() { # NAME OUTAGE(none|clickhouse|nats) DB
    local name=$1 outage=$2 db=$3
    # Each run has its own sensor id (subjects) and database; the stream is shared, so its
    # count is taken before and after.
    cat >"$TMP/$db.toml" <<TOML
[sensor]
pin_cores = false
[clickhouse]
database = "$db"
[nats]
user = "bench"
password = "bench"
[spool]
dir = "$TMP/spool-$db"
TOML
    local before t0 t1
    before=$(stream_msgs)
    t0=$EPOCHREALTIME
    "$BIN/sensor" replay "$CAP" --config "$TMP/$db.toml" --eve "$TMP/$db.eve" --quiet \
        --clickhouse "http://127.0.0.1:$CH_HTTP" --nats "nats://127.0.0.1:$NATS_PORT" \
        --sensor-id "$db" 2>"$TMP/$db.err" &
    local sensor=$!
    case "$outage" in
        clickhouse) sleep "$KILL_AT"; ch_kill; sleep 5; ch_restart ;;
        nats) sleep "$KILL_AT"; nats_kill; sleep 5; nats_restart ;;
    esac
    local rc=0
    wait "$sensor" || rc=$?
    t1=$EPOCHREALTIME
    read -r total flows ids http dns < <(eve_counts "$TMP/$db.eve")
    local rows uniq hrows drows msgs
    rows=$(chq "SELECT count() FROM $db.flows")
    uniq=$(chq "SELECT uniqExact(flow_id) FROM $db.flows")
    hrows=$(chq "SELECT count() FROM $db.http_requests")
    drows=$(chq "SELECT count() FROM $db.dns_queries")
    msgs=$(( $(stream_msgs) - before ))
    local verdict=ok
    if [ "$rc" != 0 ] || [ "$rows" != "$flows" ] || [ "$uniq" != "$flows" ] || [ "$ids" != "$flows" ] \
        || [ "$hrows" != "$http" ] || [ "$drows" != "$dns" ] || [ "$msgs" != "$total" ]; then
        verdict=DIFFERS; FAILED=1
    fi
    printf '%-18s exit=%s wall=%.1fs eve=%s eve_flows=%s distinct_flow_ids=%s ch_flows=%s ch_distinct=%s eve_http=%s ch_http=%s eve_dns=%s ch_dns=%s nats_msgs=%s  [%s]\n' \
        "$name" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$total" "$flows" "$ids" \
        "$rows" "$uniq" "$http" "$hrows" "$dns" "$drows" "$msgs" "$verdict"
    grep -E "^  (sink|export accounting) " "$TMP/$db.err" | sed "s/^  /    /"
    rm -f "$TMP/$db.eve"
}

echo "== outage check: $CAP ($(du -h "$CAP" | cut -f1))"
run_case no-outage none run0
for i in $(seq 1 "$RUNS"); do
    run_case "clickhouse-kill-$i" clickhouse "run$i"
done
run_case nats-kill nats runnats
exit "$FAILED"
