#!/usr/bin/env bash
# The NOC console in one command: starts a local clickhouse-server and nats-server on free
# loopback ports in a temporary directory, fills them from the bundled captures
# (testdata-pcaps/, plus ../shared/pcaps/real/ when present) amplified by the project's generator
# (`pcapgen amplify`) and spread over the last 24 hours, then runs `pipeline console` (with live
# alerts from JetStream ALERTS) and the online detection (`pipeline detect --config`) over the
# attack captures, and prints the URLs and a first login (an admin and a viewer, with passwords
# made for this run).
#
#   scripts/demo.sh                 # ~60 MB of traffic, about a minute to fill on 2 cores
#   DEMO_BYTES=500M scripts/demo.sh # more traffic
#   DEMO_PORT=8080 scripts/demo.sh  # the console's port (default: a free one)
#   DEMO_READY_FILE=F               # when ready, write url=, user=, password= lines to F
#
# Stops everything (servers, console, temporary directory) on Ctrl-C. Needs what
# scripts/setup.sh installs (clickhouse-server, nats-server, node/npm for the web UI).
#
# Why the spread: the captures span seconds, so the sensor writes them into a staging database
# (`demo_staging`), and each flow's rows (flows, HTTP, DNS: every table with `flow_id` and `ts`)
# are copied into `sensor` with one time shift per flow: the flow starts at a point of the last
# 24 hours drawn from a hash of its flow_id (two hashes averaged, so traffic rises and falls over
# the day instead of being flat) and its events keep their distance from its start. Rollup tables fed by
# materialized views on `sensor.flows` fill as the rows arrive.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bytes=${DEMO_BYTES:-60M}

say() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for bin in nats-server node npm; do command -v "$bin" >/dev/null || die "$bin is missing: run scripts/setup.sh"; done
chbin=/usr/sbin/clickhouse-server
[ -x "$chbin" ] || chbin=$(command -v clickhouse-server) || die "clickhouse-server is missing: run scripts/setup.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "building sensor, pcapgen and pipeline (release)"
cargo build --release -q --bin sensor --bin pcapgen --bin pipeline
target=${CARGO_TARGET_DIR:-$root/target}/release
if [ ! -f pipeline/console/web/dist/index.html ]; then
  say "building the web UI"
  (cd pipeline/console/web && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build)
fi

work=$(mktemp -d /tmp/console-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- ClickHouse: `default` (the sensor and this script), `console_ro` (readonly = 2: reads,
# and may set its per-query limits), `console_rw` (only the console's own database).
ch_http=$(free_port); ch_tcp=$(free_port)
mkdir -p "$work/ch/data"
ro_pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
rw_pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/ch/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$work/ch/server.log</log><errorlog>$work/ch/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$ch_http</http_port>
  <tcp_port>$ch_tcp</tcp_port>
  <path>$work/ch/data/</path>
  <tmp_path>$work/ch/data/tmp/</tmp_path>
  <user_files_path>$work/ch/data/user_files/</user_files_path>
  <format_schema_path>$work/ch/data/format_schemas/</format_schema_path>
  <users_config>$work/ch/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
cat >"$work/ch/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
    <readonly><readonly>2</readonly><max_memory_usage>2000000000</max_memory_usage></readonly>
  </profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <console_ro><password>$ro_pw</password><networks><ip>127.0.0.1</ip></networks><profile>readonly</profile><quota>default</quota></console_ro>
    <console_rw><password>$rw_pw</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota><allow_databases><database>console</database></allow_databases></console_rw>
  </users>
  <quotas><default></default></quotas>
</yandex>
EOF
say "starting clickhouse-server on 127.0.0.1:$ch_http"
"$chbin" --config-file="$work/ch/config.xml" >"$work/ch/stdout.log" 2>&1 &
pids+=($!)
chq() { curl -sS --fail-with-body "http://127.0.0.1:$ch_http/" --data-binary @-; }
for _ in $(seq 1 120); do echo 'SELECT 1' | chq >/dev/null 2>&1 && break; sleep 0.5; done
echo 'SELECT 1' | chq >/dev/null || die "clickhouse-server did not start (see $work/ch/server.err.log)"

nats_port=$(free_port)
say "starting nats-server -js on 127.0.0.1:$nats_port"
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)

# --- Traffic: the bundled captures (and the real ones when present), amplified.
inputs=("$root"/testdata-pcaps/*.pcap)
[ -d "$root/../shared/pcaps/real" ] && inputs+=("$root/../shared/pcaps/real")
say "amplifying ${#inputs[@]} captures to $bytes"
"$target/pcapgen" amplify --out "$work/traffic.pcap" --target-bytes "$bytes" "${inputs[@]}" >/dev/null

sensor_cfg() {
  cat >"$work/sensor-$1.toml" <<EOF
[clickhouse]
database = "$1"
[spool]
dir = "$work/spool-$1"
EOF
  echo "$work/sensor-$1.toml"
}
# The schema of `sensor` comes from the sensor itself (migrations, rollups): an empty capture.
printf '\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x01\x00\x00\x00' >"$work/empty.pcap"
"$target/sensor" replay "$work/empty.pcap" --quiet --eve /dev/null --config "$(sensor_cfg sensor)" \
  --clickhouse "http://127.0.0.1:$ch_http" --sensor-id demo-sensor-1 2>"$work/schema.log" \
  || die "the sensor could not create the schema (see $work/schema.log)"
say "replaying into ClickHouse (staging) and NATS"
"$target/sensor" replay "$work/traffic.pcap" --quiet --eve /dev/null --config "$(sensor_cfg demo_staging)" \
  --clickhouse "http://127.0.0.1:$ch_http" --nats "nats://127.0.0.1:$nats_port" --sensor-id demo-sensor-1 \
  2>"$work/replay.log" || die "replay failed (see $work/replay.log)"
grep -E '^(packets|flows|export accounting)' "$work/replay.log" | sed 's/^/  /' >&2 || true

say "spreading the flows over the last 24 hours"
now=$(date +%s)
tables=$(echo "SELECT table FROM system.columns WHERE database = 'demo_staging' AND name IN ('flow_id', 'ts') GROUP BY table HAVING count() = 2 FORMAT TSV" | chq)
for t in $tables; do
  echo "SELECT 1 FROM system.tables WHERE database = 'sensor' AND name = '$t' FORMAT TSV" | chq | grep -q 1 || continue
  # Per flow: a start in [now - 24 h, now - 400 s), the mean of two hashes of its flow_id (a
  # hump over the day); each row keeps its distance from its flow's first row.
  shift="(toInt64($now - 86400) + toInt64(intDiv(cityHash64(flow_id) % 86000 + cityHash64(flow_id, 7) % 86000, 2)) - toInt64(if(fts = 0, toUInt32(ts), fts)))"
  # Stored columns only, named on both sides: an ALIAS column (flows.host) takes no value.
  stored="SELECT name, type FROM system.columns WHERE database = 'sensor' AND table = '$t' AND default_kind NOT IN ('ALIAS', 'MATERIALIZED') FORMAT TSV"
  names=$(echo "$stored" | chq | cut -f1 | paste -sd, -)
  cols=$(echo "$stored" | chq |
    while IFS=$'\t' read -r name type; do
      case "$type" in
        DateTime*) echo "toDateTime(toInt64(toUInt32($name)) + $shift, 'UTC') AS $name" ;;
        UInt64) case "$name" in *_ns) echo "toUInt64(toInt64($name) + $shift * 1000000000) AS $name" ;; *) echo "$name" ;; esac ;;
        *) echo "$name" ;;
      esac
    done | paste -sd, -)
  echo "INSERT INTO sensor.$t ($names) SELECT $cols FROM demo_staging.$t ANY LEFT JOIN
        (SELECT flow_id, toUInt32(min(ts)) AS fts FROM demo_staging.flows GROUP BY flow_id) USING flow_id" |
    chq || die "could not copy $t"
  say "  $t: $(echo "SELECT count() FROM sensor.$t FORMAT TSV" | chq) rows"
done

# --- The console: a config with two users made for this run.
port=${DEMO_PORT:-$(free_port)}
admin_pw=$(head -c 9 /dev/urandom | base64 | tr -d '/+=' | cut -c1-12)
viewer_pw=$(head -c 9 /dev/urandom | base64 | tr -d '/+=' | cut -c1-12)
admin_hash=$(printf '%s\n' "$admin_pw" | "$target/pipeline" console hash-password)
viewer_hash=$(printf '%s\n' "$viewer_pw" | "$target/pipeline" console hash-password)
cat >"$work/console.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
web_root = "$root/pipeline/console/web/dist"

[clickhouse]
url = "http://127.0.0.1:$ch_http"
database = "sensor"
user = "console_ro"
password = "$ro_pw"
writer_user = "console_rw"
writer_password = "$rw_pw"

[nats]
url = "nats://127.0.0.1:$nats_port"

[[users]]
name = "admin"
role = "admin"
password_hash = "$admin_hash"

[[users]]
name = "viewer"
role = "viewer"
password_hash = "$viewer_hash"
EOF
"$target/pipeline" console serve --config "$work/console.toml" 2>"$work/console.log" &
console=$!
pids+=($console)
# Ready when it logs that it listens (another program may own the port: then it exits).
for _ in $(seq 1 150); do
  kill -0 $console 2>/dev/null || die "the console stopped: $(tail -3 "$work/console.log")"
  grep -q "listening on" "$work/console.log" && break
  sleep 0.2
done
curl -s -o /dev/null --fail "http://127.0.0.1:$port/" || die "the console does not answer on port $port: $(tail -3 "$work/console.log")"

# --- Alerts: the online detection (`pipeline detect --config`) over the SENSOR stream writes
# JetStream ALERTS (which the console reads live) and the alerts table; the attack captures are
# replayed into NATS, one sensor id each (a partition's event time only moves forward). They are
# dated 2024-01-01, so each is replayed from a copy moved into the last 24 hours (two hours
# apart): their flows and alerts are then on the graphs and in the alerts page's default range.
# dns_tunnel.pcap is kept for the operator to replay live, moved to an hour before the demo's
# start: a partition's windows close when it idles, at the wall clock less the lateness allowed,
# so a capture dated "now" would wait for more traffic before its alert.
shift_pcap() { # IN OUT START: a classic pcap (as pcapgen writes them) with its first packet at START
  python3 - "$@" <<'PY'
import struct, sys
src, dst, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = bytearray(open(src, "rb").read())
magic = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
e = magic.get(bytes(d[:4]))
if e is None:
    sys.exit(f"{src}: not a classic pcap")
off, delta = 24, None
while off + 16 <= len(d):
    sec, _, incl, _ = struct.unpack_from(e + "IIII", d, off)
    delta = start - sec if delta is None else delta
    struct.pack_into(e + "I", d, off, sec + delta)
    off += 16 + incl
open(dst, "wb").write(d)
PY
}
cat >"$work/detect.toml" <<EOF
instance = "demo-detect"
state_dir = "$work/detect"
[nats]
url = "nats://127.0.0.1:$nats_port"
[clickhouse]
url = "http://127.0.0.1:$ch_http"
[detect]
rules = "$root/config/rules"
EOF
"$target/pipeline" detect --config "$work/detect.toml" 2>"$work/detect.log" &
pids+=($!)
say "replaying the attack captures into NATS for the online detection"
mkdir -p "$work/attacks"
at=$((now - 22 * 3600))
for f in "$root"/testdata-pcaps/attacks/*.pcap; do
  name=$(basename "$f" .pcap)
  if [ "$name" = dns_tunnel ]; then
    shift_pcap "$f" "$work/attacks/$name.pcap" "$((now - 3600))" || die "could not shift $f"
    continue
  fi
  shift_pcap "$f" "$work/attacks/$name.pcap" "$at" || die "could not shift $f"
  at=$((at + 2 * 3600))
  "$target/sensor" replay "$work/attacks/$name.pcap" --quiet --eve /dev/null --config "$work/sensor-sensor.toml" \
    --clickhouse "http://127.0.0.1:$ch_http" --nats "nats://127.0.0.1:$nats_port" \
    --sensor-id "demo-attack-${name//_/-}" 2>>"$work/attacks.log" || die "replaying $name failed (see $work/attacks.log)"
done
# The detection reads the day of traffic first (its alerts keep the captures' dates), then the
# attacks: ready once those of the last 24 hours are in (at most two minutes).
n=0
for _ in $(seq 1 240); do
  n=$(echo "SELECT count() FROM sensor.alerts WHERE ts >= toDateTime($now - 86400) FORMAT TSV" | chq 2>/dev/null || echo 0)
  [ "${n:-0}" -gt 0 ] && break
  sleep 0.5
done
say "  alerts in the last 24 hours: ${n:-0} (more may follow while the detection catches up; see $work/detect.log)"

cat >&2 <<EOF

  NOC console:  http://127.0.0.1:$port/
  alerts        http://127.0.0.1:$port/alerts   (the attack captures, moved into the last 24 hours)
  a live alert  $target/sensor replay $work/attacks/dns_tunnel.pcap --quiet --eve /dev/null \\
                  --config $work/sensor-sensor.toml --nats nats://127.0.0.1:$nats_port --sensor-id demo-live
                (appears on the open alerts page without a reload)
  sensors       the Sensors page reads [[sensors]] metrics_url of a running 'sensor run'; the demo
                replays captures, so it shows the stored flow rates only
  log in as     admin  / $admin_pw   (admin: may acknowledge alerts)
           or   viewer / $viewer_pw   (viewer)

  ClickHouse    http://127.0.0.1:$ch_http (user default)   NATS  nats://127.0.0.1:$nats_port
  files         $work (console.log, console.toml)
  Ctrl-C stops everything.
EOF
# For scripts that drive the demo (benches/console_pageload.sh): where it runs and who logs in.
if [ -n "${DEMO_READY_FILE:-}" ]; then
  printf 'url=http://127.0.0.1:%s\nuser=admin\npassword=%s\n' "$port" "$admin_pw" >"$DEMO_READY_FILE.tmp"
  mv "$DEMO_READY_FILE.tmp" "$DEMO_READY_FILE"
fi
wait "${pids[-1]}"
