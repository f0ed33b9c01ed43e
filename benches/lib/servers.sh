# Shared by the benchmark scripts: a temporary folder cleaned at exit, free loopback ports, and
# clickhouse-server / nats-server started there (and killed at exit). Source it after `cd` to the
# repository; it sets TMP and PIDS and installs an EXIT trap.
#
#   ch_start [EXTRA_USERS_XML]   clickhouse-server on HTTP=$CH_HTTP, native TCP=$CH_TCP; waits
#                                until it answers; sets CH_PID. EXTRA_USERS_XML is inserted into
#                                <users> (and may name profiles in CH_EXTRA_PROFILES).
#   ch_kill / ch_restart         SIGKILL it / start it again on the same ports and data.
#   nats_start USER PASS         nats-server -js on NATS_PORT (monitoring on NATS_MON), store
#                                under $TMP/js; sets NATS_PID.
#   nats_kill / nats_restart     SIGKILL it / start it again on the same ports and store.
#   chq SQL                      a query over HTTP (fails loudly).

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    # Reaped here, so bash does not report each as "Killed" at exit.
    for p in "${PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

CH_SERVER=/usr/sbin/clickhouse-server
[ -x "$CH_SERVER" ] || CH_SERVER=$(command -v clickhouse-server || true)
CH_EXTRA_PROFILES=${CH_EXTRA_PROFILES:-}

ch_write_config() {
    CH_HTTP=$(free_port); CH_TCP=$(free_port)
    cat >"$TMP/ch-config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$TMP/ch.log</log><errorlog>$TMP/ch.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host><http_port>$CH_HTTP</http_port><tcp_port>$CH_TCP</tcp_port>
  <path>$TMP/data/</path><tmp_path>$TMP/data/tmp/</tmp_path>
  <user_files_path>$TMP/data/user_files/</user_files_path>
  <format_schema_path>$TMP/data/format_schemas/</format_schema_path>
  <users_config>$TMP/ch-users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size><mlock_executable>false</mlock_executable>
</yandex>
XML
    cat >"$TMP/ch-users.xml" <<XML
<?xml version="1.0"?>
<yandex><profiles><default></default>$CH_EXTRA_PROFILES</profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>$1</users>
<quotas><default></default></quotas></yandex>
XML
}

chq() { curl -sS --fail-with-body "http://127.0.0.1:$CH_HTTP/" --data-binary "$1"; }

ch_launch() {
    "$CH_SERVER" --config-file="$TMP/ch-config.xml" >>"$TMP/ch.out" 2>&1 &
    CH_PID=$!
    PIDS+=("$CH_PID")
}

ch_wait() {
    for _ in $(seq 1 240); do
        chq "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    echo "clickhouse-server did not start:"; tail -5 "$TMP/ch.err.log" 2>/dev/null
    return 1
}

ch_start() {
    [ -n "$CH_SERVER" ] || { echo "clickhouse-server not installed (scripts/setup.sh)"; return 1; }
    ch_write_config "${1:-}"
    ch_launch
    ch_wait
}

ch_kill() { kill -9 "$CH_PID" 2>/dev/null || true; wait "$CH_PID" 2>/dev/null || true; }
ch_restart() { ch_launch; ch_wait; }

nats_start() {
    NATS_PORT=$(free_port); NATS_MON=$(free_port); NATS_USER=$1; NATS_PASS=$2
    nats_launch
}

nats_kill() { kill -9 "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; }
nats_restart() { nats_launch; }

nats_launch() {
    nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON" -sd "$TMP/js" \
        --user "$NATS_USER" --pass "$NATS_PASS" >>"$TMP/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$NATS_MON/jsz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nats-server did not start:"; tail -5 "$TMP/nats.log"
    return 1
}
