#!/usr/bin/env bash
# Export benchmark: how fast the sensor ships records to ClickHouse and NATS JetStream, against
# the floor of this machine for the same server and the same records, measured in the same run.
#
# Usage: benches/export.sh [--short]
#
#   (default)  ~200 MiB capture amplified from the fixtures (testdata-pcaps: dense in flows).
#   --short    ~20 MiB, the CI mode (.ci/run): well under a minute once built.
#
# Steps:
#   1. cargo build --release (sensor, pcapgen, the nats_publish_floor example);
#   2. pcapgen amplify testdata-pcaps/{tls,http,dns}.pcap to the target size (benches/work/);
#   3. start clickhouse-server and nats-server -js on free loopback ports in a temporary
#      directory (killed on exit);
#   4. ClickHouse: `sensor replay CAPTURE --eve '' --clickhouse URL` (rows/s = rows inserted /
#      wall time of the whole replay, decode and DPI included), then the same rows, dumped from
#      the server as RowBinary, inserted by `clickhouse-client --query "INSERT ... FORMAT
#      RowBinary"` into an empty copy of the schema (rows/s of the client: the floor);
#   5. NATS: `sensor replay CAPTURE --eve '' --nats URL` (messages/s = acknowledged messages /
#      wall time), then `nats_publish_floor` publishing the same EVE objects with the same
#      in-flight window and message ids (messages/s of a bare async-nats loop);
#   6. print the table and the ratios (goal for ClickHouse: >= 0.80 of the client).
#
# Exit status: 0 whatever the figures are; 1 if the build or a server start fails.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

TARGET=200M
[ "${1:-}" = "--short" ] && TARGET=20M

for bin in clickhouse-client nats-server; do
    command -v "$bin" >/dev/null || { echo "export bench: $bin not installed (scripts/setup.sh)"; exit 0; }
done
cargo build --release -q --workspace --bin sensor --bin pcapgen --example nats_publish_floor
BIN=target/release
mkdir -p benches/work
CAP=benches/work/export-$TARGET.pcap
if [ ! -s "$CAP" ]; then
    "$BIN/pcapgen" amplify --out "$CAP" --target-bytes "$TARGET" \
        testdata-pcaps/tls.pcap testdata-pcaps/http.pcap testdata-pcaps/dns.pcap >/dev/null
fi

. benches/lib/servers.sh
ch_start || exit 1
nats_start bench bench || exit 1
HTTP=$CH_HTTP; TCP=$CH_TCP; NATS=$NATS_PORT
q() { clickhouse-client --port "$TCP" --query "$1"; }

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

cat >"$TMP/sensor.toml" <<EOF
[sensor]
pin_cores = false
[clickhouse]
database = "bench"
[nats]
user = "bench"
password = "bench"
[spool]
dir = "$TMP/spool"
EOF

# ClickHouse: the sensor.
t0=$(now)
"$BIN/sensor" replay "$CAP" --config "$TMP/sensor.toml" --eve '' --quiet \
    --clickhouse "http://127.0.0.1:$HTTP" --sensor-id bench 2>"$TMP/sensor-ch.err" || {
    echo "sensor run failed:"; cat "$TMP/sensor-ch.err"; exit 0; }
t1=$(now)
ch_secs=$(elapsed "$t0" "$t1")
rows=0
for t in flows http_requests dns_queries; do rows=$((rows + $(q "SELECT count() FROM bench.$t"))); done

# ClickHouse: the client, same rows, same format, into an empty copy of the schema.
q "CREATE DATABASE floor"
for t in flows http_requests dns_queries; do
    q "CREATE TABLE floor.$t AS bench.$t"
    q "SELECT * FROM bench.$t FORMAT RowBinary" >"$TMP/$t.bin"
done
t0=$(now)
for t in flows http_requests dns_queries; do
    clickhouse-client --port "$TCP" --query "INSERT INTO floor.$t FORMAT RowBinary" <"$TMP/$t.bin"
done
t1=$(now)
cl_secs=$(elapsed "$t0" "$t1")
cl_rows=0
for t in flows http_requests dns_queries; do cl_rows=$((cl_rows + $(q "SELECT count() FROM floor.$t"))); done

# Replay alone (no sink), for context: what the replay itself costs in the sensor's time.
t0=$(now)
"$BIN/sensor" replay "$CAP" --config "$TMP/sensor.toml" --eve '' --quiet 2>/dev/null
t1=$(now)
base_secs=$(elapsed "$t0" "$t1")

# NATS: the sensor, then the bare publish loop with the same EVE objects.
t0=$(now)
"$BIN/sensor" replay "$CAP" --config "$TMP/sensor.toml" --eve '' --quiet \
    --nats "nats://127.0.0.1:$NATS" --sensor-id bench 2>"$TMP/sensor-nats.err" || {
    echo "sensor run failed:"; cat "$TMP/sensor-nats.err"; exit 0; }
t1=$(now)
nats_secs=$(elapsed "$t0" "$t1")
nats_msgs=$(grep -o 'sink nats: sent=[0-9]*' "$TMP/sensor-nats.err" | grep -o '[0-9]*$')
"$BIN/sensor" replay "$CAP" --config "$TMP/sensor.toml" --eve "$TMP/eve.json" --quiet 2>/dev/null
read -r floor_msgs floor_secs _ < <("$BIN/examples/nats_publish_floor" "nats://127.0.0.1:$NATS" bench bench "$TMP/eve.json" bench 4096 || echo "0 0 0")

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
ch_rate=$(rate "$rows" "$ch_secs"); cl_rate=$(rate "$cl_rows" "$cl_secs")
n_rate=$(rate "$nats_msgs" "$nats_secs"); f_rate=$(rate "$floor_msgs" "$floor_secs")
echo "== export benchmark: $CAP ($(q 'SELECT version()') / nats-server $(nats-server --version | grep -o 'v[0-9.]*'))"
printf "%-44s %10s %9s %12s\n" "what" "records" "seconds" "records/s"
printf "%-44s %10s %9s %12s\n" "sensor replay, no sink (context)" "-" "$base_secs" "-"
printf "%-44s %10s %9s %12s\n" "sensor -> ClickHouse (rows, whole replay)" "$rows" "$ch_secs" "$ch_rate"
printf "%-44s %10s %9s %12s\n" "clickhouse-client INSERT RowBinary (floor)" "$cl_rows" "$cl_secs" "$cl_rate"
printf "%-44s %10s %9s %12s\n" "sensor -> NATS JetStream (msgs, whole replay)" "$nats_msgs" "$nats_secs" "$n_rate"
printf "%-44s %10s %9s %12s\n" "async-nats publish loop (floor)" "$floor_msgs" "$floor_secs" "$f_rate"
echo "ratio ClickHouse sensor/client: $(ratio "$ch_rate" "$cl_rate") (goal >= 0.80)"
echo "ratio NATS sensor/bare loop:    $(ratio "$n_rate" "$f_rate")"
