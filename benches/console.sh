#!/usr/bin/env bash
# Console benchmark: latency of the console's API queries over a large flows table, served
# from the rollups (flows_1m/5m/1h, chosen by the console) against the raw table (the same
# query with "table": "raw"), measured in the same run on the same server.
#
# Usage: benches/console.sh [--short]
#
#   (default)  50 million flow rows, up to 20 runs per query (at least 3; 30 s per cell).
#   --short    3 million rows, 7 runs per query (the CI mode: a few minutes).
#
#   CONSOLE_BENCH_DIR=DIR keeps ClickHouse's data in DIR (not removed on exit); a later run with
#   the same DIR and row target skips steps 3-4 and measures the same rows again (the time the
#   rows were spread from is kept in DIR/now), e.g. to compare a change of the console's queries.
#
# Steps:
#   1. cargo build --release (sensor, pipeline);
#   2. start clickhouse-server on free loopback ports in a temporary directory (killed on exit),
#      with the console's users (read-only `console`, `console_writer`);
#   3. `sensor replay testdata-pcaps/*.pcap --clickhouse URL`: the schema with its rollups and
#      the seed rows;
#   4. INSERT ... SELECT the seed rows again and again, each copy with a new flow id, a new
#      initiator address and a time spread over the last 30 days, until the table holds the
#      target (the materialized views fill the rollups as the rows arrive);
#   5. start `pipeline console serve`, log in, and time each API query for the last hour, day
#      and 30 days, with the console's table choice and with the raw table: p50 and p95 of the
#      wall time seen by the client, the table used, and the rows ClickHouse read;
#   6. print the table and raw/rollup ratios of p50.
#
# Exit status: 0 whatever the figures are; 1 if the build or a server start fails.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

ROWS=50000000; RUNS=20
[ "${1:-}" = "--short" ] && { ROWS=3000000; RUNS=7; }

CH_SERVER=/usr/sbin/clickhouse-server
[ -x "$CH_SERVER" ] || CH_SERVER=$(command -v clickhouse-server || true)
[ -n "$CH_SERVER" ] || { echo "console bench: clickhouse-server not installed (scripts/setup.sh)"; exit 0; }

# --bin, not -p: the same feature unification as the workspace build (no second build).
cargo build --release -q --bin sensor --bin pipeline
BIN=target/release

TMP=$(mktemp -d)
DATA=${CONSOLE_BENCH_DIR:-$TMP/data}
mkdir -p "$DATA"
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
HTTP=$(free_port); TCP=$(free_port); CONSOLE=$(free_port)
mkdir -p "$TMP/users.d"
cat >"$TMP/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$TMP/ch.log</log><errorlog>$TMP/ch.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host><http_port>$HTTP</http_port><tcp_port>$TCP</tcp_port>
  <path>$DATA/</path><tmp_path>$DATA/tmp/</tmp_path>
  <user_files_path>$DATA/user_files/</user_files_path>
  <format_schema_path>$DATA/format_schemas/</format_schema_path>
  <users_config>$TMP/users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size><mlock_executable>false</mlock_executable>
</yandex>
EOF
cat >"$TMP/users.xml" <<EOF
<?xml version="1.0"?>
<yandex><profiles><default></default><console_ro><readonly>2</readonly></console_ro></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
<console><password>bench-ro</password><networks><ip>127.0.0.1</ip></networks><profile>console_ro</profile><quota>default</quota></console></users>
<quotas><default></default></quotas></yandex>
EOF
"$CH_SERVER" --config-file="$TMP/config.xml" >"$TMP/ch.out" 2>&1 &
PIDS+=($!)
CH="http://127.0.0.1:$HTTP"
q() { curl -sS --fail-with-body "$CH/" --data-binary "$1"; }
for _ in $(seq 1 120); do q "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
q "SELECT 1" >/dev/null || { echo "console bench: clickhouse did not start"; cat "$TMP/ch.err.log"; exit 1; }

cat >"$TMP/sensor.toml" <<EOF
[sensor]
pin_cores = false
[clickhouse]
batch_age_ms = 100
[spool]
dir = "$TMP/spool"
EOF
if [ -f "$DATA/now" ] && [ "$(cat "$DATA/rows")" = "$ROWS" ]; then
    NOW=$(cat "$DATA/now")
    TOTAL=$(q "SELECT count() FROM sensor.flows")
    echo "console bench: $TOTAL rows kept in $DATA (spread from $(date -u -d "@$NOW" +%FT%TZ))"
else
    "$BIN/sensor" replay testdata-pcaps/*.pcap --config "$TMP/sensor.toml" --clickhouse "$CH" \
        --sensor-id bench --eve '' --quiet
    SEED=$(q "SELECT count() FROM sensor.flows")
    NOW=$(( $(date +%s) / 3600 * 3600 ))
    SPAN=$(( 30 * 86400 ))
    COPIES=$(( (ROWS + SEED - 1) / SEED ))
    echo "console bench: $SEED seed rows x $COPIES copies -> ~$((SEED * COPIES)) rows over 30 days"
    COLS="sensor_id, flow_id, ts, start_ns, end_ns, src_ip, src_port, dest_ip, dest_port, proto, app_proto, vlan, pkts_toserver, pkts_toclient, bytes_toserver, bytes_toclient, state, reason, tcp_flags_ts, tcp_flags_tc, tls_sni, tls_version, tls_alpn, ja4, http_host, dns_name"
    q "CREATE TABLE sensor.bench_seed ENGINE = Memory AS SELECT $COLS FROM sensor.flows"
    t0=$(date +%s.%N)
    # About 1 M rows per INSERT: 5 M-row steps held ~7 GB each while the views grouped them.
    CHUNK=$(( 1000000 / SEED + 1 ))
    done_copies=0
    while [ "$done_copies" -lt "$COPIES" ]; do
        n=$(( COPIES - done_copies < CHUNK ? COPIES - done_copies : CHUNK ))
        # Copy k of a seed row: a new flow id, an initiator address with k in its last two bytes,
        # and a time in the last 30 days picked by a hash (the same for the flow's start and end).
        q "INSERT INTO sensor.flows ($COLS)
           SELECT sensor_id, cityHash64(flow_id, k) AS fid,
                  toDateTime($NOW - $SPAN + intHash64(fid) % $SPAN) AS t,
                  toUInt64(toUInt32(t)) * 1000000000 AS s_ns, s_ns + (end_ns - start_ns),
                  toFixedString(concat(substring(src_ip, 1, 14), reinterpretAsString(toUInt16(k % 65536))), 16),
                  src_port, dest_ip, dest_port, proto, app_proto, vlan, pkts_toserver, pkts_toclient,
                  bytes_toserver, bytes_toclient, state, reason, tcp_flags_ts, tcp_flags_tc, tls_sni,
                  tls_version, tls_alpn, ja4, http_host, dns_name
           FROM sensor.bench_seed ARRAY JOIN arrayMap(x -> x + $done_copies, range($n)) AS k"
        done_copies=$(( done_copies + n ))
    done
    t1=$(date +%s.%N)
    TOTAL=$(q "SELECT count() FROM sensor.flows")
    echo "console bench: $TOTAL rows in flows, generated in $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
    for t in flows_1m flows_5m flows_1h; do
        echo "  $t: $(q "SELECT count() FROM sensor.$t") rows"
    done
    q "OPTIMIZE TABLE sensor.flows_1h FINAL" >/dev/null || true
    echo "$NOW" >"$DATA/now"; echo "$ROWS" >"$DATA/rows"
fi

HASH=$(echo "bench-pw" | "$BIN/pipeline" console hash-password)
cat >"$TMP/console.toml" <<EOF
[server]
listen = "127.0.0.1:$CONSOLE"
[clickhouse]
url = "$CH"
user = "console"
password = "bench-ro"
[limits]
max_execution_time_secs = 60
max_memory_usage = 8000000000
[[users]]
name = "bench"
role = "viewer"
password_hash = "$HASH"
EOF
"$BIN/pipeline" console serve --config "$TMP/console.toml" 2>"$TMP/console.log" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$CONSOLE/" >/dev/null 2>&1 && break; sleep 0.2; done

python3 - "$CONSOLE" "$NOW" "$RUNS" "$TOTAL" <<'PY'
import json, sys, time, urllib.error, urllib.request, http.cookiejar
port, now, runs, total = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
base = f"http://127.0.0.1:{port}/api/v1"
jar = http.cookiejar.CookieJar()
op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
def post(path, body, csrf=None):
    h = {"Content-Type": "application/json"}
    if csrf: h["X-CSRF-Token"] = csrf
    req = urllib.request.Request(base + path, json.dumps(body).encode(), h)
    with op.open(req, timeout=120) as r:
        return json.loads(r.read())
csrf = post("/login", {"username": "bench", "password": "bench-pw"})["csrf_token"]
queries = {
    "timeseries total": ("/graph/timeseries", {"unit": "bytes"}),
    "timeseries AppProto": ("/graph/timeseries", {"unit": "bytes", "dimension": "AppProto", "limit": 10}),
    "timeseries SNI+filter": ("/graph/timeseries", {"unit": "flows", "dimension": "SNI", "filter": "AppProto IN (\"tls\", \"quic\")"}),
    "sankey App>Proto>Sensor": ("/graph/sankey", {"unit": "bytes", "dimensions": ["AppProto", "Proto", "Sensor"]}),
    "top server_names": ("/top", {"kind": "server_names", "limit": 20}),
    "top talkers (raw only)": ("/top", {"kind": "talkers", "limit": 20}),
}
ranges = [("1h", 3600), ("1d", 86400), ("30d", 30 * 86400)]
BUDGET_S = 30  # per cell: at least 3 runs, then stop once this much time was spent
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]
def cell(path, b):
    """p50, p95, rows read, table and number of runs; or the error the API returned."""
    try:
        post(path, b, csrf)  # warm-up
        lat, rr, tb, spent = [], 0, "", 0.0
        while len(lat) < runs and (len(lat) < 3 or spent < BUDGET_S):
            t = time.perf_counter(); out = post(path, b, csrf); d = time.perf_counter() - t
            lat.append(d * 1000); spent += d
            rr, tb = out.get("rows_read", 0), out.get("table", "")
        return (pct(lat, 50), pct(lat, 95), rr, tb, len(lat))
    except urllib.error.HTTPError as e:
        return ("error", e.code, e.read().decode(errors="replace")[:120])
    except OSError as e:
        return ("error", 0, str(e)[:120])
print(f"\n{total} rows; up to {runs} runs per cell (at least 3, then up to {BUDGET_S} s); latency in ms (client wall time)")
print(f"{'query':26} {'range':5} {'table':8} {'p50':>8} {'p95':>8} {'rows read':>11} {'runs':>4}   {'raw p50':>8} {'raw p95':>8} {'rows read':>11} {'runs':>4}  raw/rollup")
for name, (path, body) in queries.items():
    for rname, secs in ranges:
        b = dict(body, start=now - secs, end=now)
        a = cell(path, dict(b, table="auto"))
        # A query the console already sends to the raw table is not measured twice.
        r = a if a[0] != "error" and a[3] == "flows" else cell(path, dict(b, table="raw"))
        if a[0] == "error" or r[0] == "error":
            print(f"{name:26} {rname:5} auto: {a if a[0] == 'error' else 'ok'} raw: {r if r[0] == 'error' else 'ok'}")
            continue
        print(f"{name:26} {rname:5} {a[3]:8} {a[0]:8.1f} {a[1]:8.1f} {a[2]:11} {a[4]:4}   {r[0]:8.1f} {r[1]:8.1f} {r[2]:11} {r[4]:4}  {r[0]/a[0]:6.1f}x")
PY

# Page load -> first drawn chart in Chromium over this table (pipeline/console/examples/
# pageload.rs: logs in through the form, loads Visualize N times, reads the time from the page).
if command -v chromium >/dev/null && command -v chromedriver >/dev/null && [ -f pipeline/console/web/dist/index.html ]; then
    cargo build --release -q -p pipeline-console --example pageload
    for range in 1h 30d; do
        "$BIN/examples/pageload" --url "http://127.0.0.1:$CONSOLE" --user bench --password bench-pw \
            --runs $((RUNS < 10 ? RUNS : 10)) --page "/visualize?start=now-$range&end=now&chart=stacked&dims=AppProto&limit=10" \
            || echo "console bench: page load measurement failed"
    done
else
    echo "console bench: chromium, chromedriver or the built web UI missing: page load not measured"
fi
