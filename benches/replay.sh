#!/usr/bin/env bash
# Replay benchmark: CPU cost of the sensor's full DPI replay against peers and bare read floors,
# all on the same large capture, in the same run. See benches/README.md for how to read it.
#
# Usage: benches/replay.sh [--short]
#
#   (default)  ~1 GiB capture (benches/work/amplified-1G.pcap), best of 3 runs per tool.
#   --short    ~100 MiB capture, the CI mode (.ci/run): well under a minute once built.
#
# Steps:
#   1. cargo build --release --workspace --bin sensor --bin pcapgen (the `sensor` and `pcapgen` binaries);
#   2. build the capture with `pcapgen amplify` from ../shared/pcaps/real (the real captures,
#      beside the repository), or from testdata-pcaps/ when that folder is absent; the capture
#      and its report (.report) are reused while the target size, the inputs and the amplifier
#      source are unchanged; benches/work/ is gitignored;
#   3. run sequentially (2-core machines: nothing else competes), each under CPU accounting:
#        sensor replay FILE --workers N --eve /dev/null   full decode + flows + DPI + EVE output
#        sensor replay FILE --workers N --no-decode       our reader alone: our floor
#        ndpiReader -i FILE -q                            the DPI peer (nDPI: flows + DPI)
#        softflowd -r FILE -6                             flows without DPI
#        sensor replay FILE --eve FILE, and                 EVE files from both (when Suricata
#        suricata -r FILE --runmode single -S /dev/null -k none   is installed: setup.sh)
#        tcpdump -r FILE -w /dev/null                     libpcap read loop: the classic floor
#      A missing peer is skipped with a message; a failing sensor run prints its stderr and the
#      benchmark goes on.
#   4. print a table (CPU seconds = user + sys of the process and all its threads, wall seconds,
#      packets and Gbit per CPU-second, max RSS) and the ratios against the goals.
#
# CPU accounting: every command runs in a subshell that ends with bash's `times` builtin, whose
# second line is getrusage(RUSAGE_CHILDREN): user and sys time of the command and all its
# threads, millisecond resolution, always available. Max RSS comes from GNU time
# (`/usr/bin/time`, Debian package `time`) when installed, else is shown as "-". Wall time is
# bash's $EPOCHREALTIME around the run. The page cache is warmed before the runs.
#
# Environment knobs: BENCH_REPEAT (runs per tool, best CPU kept; default 3), BENCH_WORKERS
# (sensor --workers; default 1: per-worker figures), BENCH_TARGET (capture size, e.g. 2G),
# BENCH_TIMEOUT (seconds per run; default 600, 120 with --short).
#
# Exit status: 0 whatever the figures are; 1 if the build fails or no capture can be made;
# 2 on bad usage.
set -euo pipefail
export LC_ALL=C

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

SHORT=0
for arg in "$@"; do
    case "$arg" in
    --short) SHORT=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "replay.sh: unknown argument: $arg (usage: benches/replay.sh [--short])" >&2
        exit 2
        ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=benches/work
LOGS=$WORK/logs
mkdir -p "$LOGS"

if [[ $SHORT == 1 ]]; then
    TARGET=${BENCH_TARGET:-100M}
    TMO=${BENCH_TIMEOUT:-120}
else
    TARGET=${BENCH_TARGET:-1G}
    TMO=${BENCH_TIMEOUT:-600}
fi
REPEAT=${BENCH_REPEAT:-3}
WORKERS=${BENCH_WORKERS:-1}

now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }
# Float arithmetic: calc 'expr' [awk -v assignments...]
calc() {
    local e=$1
    shift
    awk "$@" "BEGIN { print $e }"
}

# --- 1. build ---------------------------------------------------------------------------------
echo "== build: cargo build --release --workspace --bin sensor --bin pcapgen"
if ! cargo build --release --workspace --bin sensor --bin pcapgen; then
    echo "replay.sh: release build failed" >&2
    exit 1
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SENSOR=$TARGET_DIR/release/sensor
PCAPGEN=$TARGET_DIR/release/pcapgen
for b in "$SENSOR" "$PCAPGEN"; do
    [[ -x $b ]] || {
        echo "replay.sh: $b missing after the build" >&2
        exit 1
    }
done

# --- 2. capture -------------------------------------------------------------------------------
if [[ -d ../shared/pcaps/real ]]; then
    INPUT=../shared/pcaps/real
elif compgen -G 'testdata-pcaps/*.pcap*' >/dev/null; then
    INPUT=testdata-pcaps
    echo "note: ../shared/pcaps/real not found: amplifying the repository's fixtures instead"
else
    echo "replay.sh: no input captures (neither ../shared/pcaps/real nor testdata-pcaps/*.pcap*)" >&2
    exit 1
fi
CAP=$WORK/amplified-$TARGET.pcap
META=$CAP.report
# What the capture depends on: target, input file names and sizes, the amplifier's source.
SIG="target=$TARGET input=$INPUT inputs=$(
    find "$INPUT" -maxdepth 1 -type f \( -name '*.pcap' -o -name '*.pcapng' \) -printf '%f %s\n' |
        sort | cksum | cut -d' ' -f1
) amplifier=$(cksum <sensor/testkit/src/gen/amplify.rs | cut -d' ' -f1)"

cap_ok() {
    [[ -f $CAP && -f $META ]] || return 1
    [[ $(sed -n 1p "$META") == "$SIG" ]] || return 1
    local want
    want=$(sed -n 2p "$META" | grep -o 'bytes=[0-9]*' | cut -d= -f2)
    [[ -n $want && $(stat -c %s "$CAP") == "$want" ]]
}

if cap_ok; then
    echo "== capture: reusing $CAP (built $(stat -c %y "$CAP" | cut -d. -f1))"
else
    echo "== capture: $PCAPGEN amplify --out $CAP --target-bytes $TARGET $INPUT"
    rm -f "$CAP" "$META"
    t0=$(now)
    if ! REPORT=$("$PCAPGEN" amplify --out "$CAP" --target-bytes "$TARGET" "$INPUT" 2>"$LOGS/amplify.err"); then
        cat "$LOGS/amplify.err" >&2
        echo "replay.sh: building the capture failed" >&2
        exit 1
    fi
    t1=$(now)
    printf '%s\n%s\n' "$SIG" "$REPORT" >"$META"
    echo "built in $(calc 't1 - t0' -v t0="$t0" -v t1="$t1" | xargs printf '%.1f') s"
fi
REPORT=$(sed -n 2p "$META")
echo "$REPORT"
PACKETS=$(grep -o ' packets=[0-9]*' <<<"$REPORT" | cut -d= -f2)
FILE_BYTES=$(stat -c %s "$CAP")
if [[ -z $PACKETS || $PACKETS == 0 ]]; then
    echo "replay.sh: no packet count in the amplify report" >&2
    exit 1
fi
# Captured frame bytes: the file minus the 24-byte global and 16-byte record headers.
FRAME_BYTES=$((FILE_BYTES - 24 - 16 * PACKETS))

echo "== warming the page cache"
cat "$CAP" >/dev/null

# --- 3. runs ----------------------------------------------------------------------------------
TIME_BIN=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -f '%M' -o /dev/null true 2>/dev/null; then
    TIME_BIN=/usr/bin/time
else
    echo "note: GNU time (/usr/bin/time, Debian package 'time') not found: max RSS not shown"
fi
TIMEOUT_BIN=()
command -v timeout >/dev/null && TIMEOUT_BIN=(timeout --kill-after=10 "$TMO")

# Per-tool results.
declare -A CPU WALL RSS STATUS
ORDER=()

# measure LOGNAME CMD...: one run; sets M_CPU M_WALL M_RSS M_RC. stdout/stderr go to
# $LOGS/LOGNAME.out/.err.
measure() {
    local log=$LOGS/$1
    shift
    local pre=("${TIMEOUT_BIN[@]}")
    if [[ -n $TIME_BIN ]]; then
        pre=("$TIME_BIN" -f '%M' -o "$log.rss" "${pre[@]}")
    fi
    local t0 t1 out rc=0
    t0=$(now)
    # `times` prints the subshell's own times, then its children's (the command and threads).
    out=$( (
        rc=0
        "${pre[@]}" "$@" >"$log.out" 2>"$log.err" || rc=$?
        times
        exit $rc
    )) || rc=$?
    t1=$(now)
    M_RC=$rc
    M_CPU=$(sed -n 2p <<<"$out" | awk '{
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        printf "%.3f", t }')
    M_WALL=$(calc 't1 - t0' -v t0="$t0" -v t1="$t1")
    M_RSS=-
    if [[ -n $TIME_BIN && -s $log.rss ]]; then
        M_RSS=$(tail -n 1 "$log.rss" | awk '/^[0-9]+$/ { printf "%.0f", $1 / 1024 }')
        [[ -n $M_RSS ]] || M_RSS=-
    fi
}

# bench NAME LOGNAME CMD...: REPEAT runs, keeps the one with the least CPU time.
bench() {
    local name=$1 logname=$2
    shift 2
    ORDER+=("$name")
    printf '   %-28s' "$name"
    local i best=""
    for ((i = 1; i <= REPEAT; i++)); do
        measure "$logname" "$@"
        if [[ $M_RC != 0 ]]; then
            printf ' FAILED (exit %s)\n' "$M_RC"
            echo "   command: $*"
            echo "   --- last lines of its stderr ($LOGS/$logname.err):"
            tail -n 15 "$LOGS/$logname.err" | sed 's/^/   | /'
            STATUS[$name]="failed (exit $M_RC)"
            return 0
        fi
        printf ' %6.3fs' "$M_CPU"
        if [[ -z $best ]] || awk -v a="$M_CPU" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$M_CPU
            CPU[$name]=$M_CPU
            WALL[$name]=$M_WALL
            RSS[$name]=$M_RSS
        fi
    done
    echo
    STATUS[$name]=ok
}

# skip NAME REASON
skip() {
    ORDER+=("$1")
    STATUS[$1]="skipped: $2"
    printf '   %-28s skipped: %s\n' "$1" "$2"
}

echo "== runs (CPU seconds per run, best kept; $REPEAT run(s) each; logs in $LOGS/)"

SENSOR_HELP=$("$SENSOR" replay --help 2>&1 || true)
SENSOR_QUIET=()
grep -q -- '--quiet' <<<"$SENSOR_HELP" && SENSOR_QUIET=(--quiet)

S_FULL="sensor (full DPI + EVE)"
S_NOOUT="sensor (full DPI, no output)"
S_FLOOR="sensor --no-decode (floor)"
bench "$S_FULL" sensor "$SENSOR" replay "$CAP" --workers "$WORKERS" --eve /dev/null "${SENSOR_QUIET[@]}"
SUMMARY=$(grep -m1 '^summary' "$LOGS/sensor.err" 2>/dev/null || true)
# The peers write no per-flow output; this row does the same work as the first (decode, flows,
# DPI, records handed to the exporter) but does not serialize EVE JSON: the like-for-like one.
bench "$S_NOOUT" sensor-no-output "$SENSOR" replay "$CAP" --workers "$WORKERS" --eve "" "${SENSOR_QUIET[@]}"
if grep -q -- '--no-decode' <<<"$SENSOR_HELP"; then
    bench "$S_FLOOR" sensor-no-decode "$SENSOR" replay "$CAP" --workers "$WORKERS" --no-decode "${SENSOR_QUIET[@]}"
else
    skip "$S_FLOOR" "this sensor build has no --no-decode flag"
fi

P_NDPI="ndpiReader (flows+DPI)"
if command -v ndpiReader >/dev/null; then
    # -q: no per-flow or summary printing (detection itself is unchanged); no -w/-C/-j/-x: no
    # output files; a pcap file is always read by one thread. Run in benches/work/ in case.
    bench "$P_NDPI" ndpiReader bash -c 'cd "$1" && exec ndpiReader -i "$2" -q' _ "$WORK" "$ROOT/$CAP"
else
    skip "$P_NDPI" "ndpiReader not installed (Debian package libndpi-bin)"
fi

P_SOFT="softflowd (flows, no DPI)"
if command -v softflowd >/dev/null || [[ -x /usr/sbin/softflowd ]]; then
    SOFTFLOWD=$(command -v softflowd || echo /usr/sbin/softflowd)
    # -r: read the file, track flows, print statistics, exit (never forks). No -n: no collector,
    # so nothing is sent anywhere (expired flows are formatted and dropped). -6: track IPv6 too.
    bench "$P_SOFT" softflowd "$SOFTFLOWD" -r "$CAP" -6
else
    skip "$P_SOFT" "softflowd not installed (Debian package softflowd)"
fi

P_SURI="suricata 7 (EVE to a file)"
S_FILE="sensor (EVE to a file)"
if command -v suricata >/dev/null; then
    # The peer whose output we share, with Debian's default configuration (EVE with flow, dns,
    # tls, http, quic and more, written to eve.json in -l's folder), one thread (--runmode
    # single), no rules (-S /dev/null), no checksum checks (-k none, as the sensor). The sensor
    # row beside it writes its EVE to a file too; both files are deleted after each run.
    SURI_DIR=$WORK/suricata-log
    rm -rf "$SURI_DIR" && mkdir -p "$SURI_DIR"
    bench "$S_FILE" sensor-eve-file bash -c 'rm -f "$2"; "$1" replay "$3" --workers "$4" --eve "$2" "${@:5}"; rc=$?; rm -f "$2"; exit $rc' \
        _ "$SENSOR" "$SURI_DIR/sensor-eve.json" "$CAP" "$WORKERS" "${SENSOR_QUIET[@]}"
    bench "$P_SURI" suricata bash -c 'rm -f "$1"/*; suricata -r "$2" --runmode single -S /dev/null -k none -l "$1"; rc=$?; rm -f "$1"/*; exit $rc' \
        _ "$SURI_DIR" "$CAP"
else
    skip "$S_FILE" "only measured beside Suricata"
    skip "$P_SURI" "suricata not installed (scripts/setup.sh installs it from bookworm-backports)"
fi

P_TCPD="tcpdump -r (floor)"
if command -v tcpdump >/dev/null || [[ -x /usr/sbin/tcpdump ]]; then
    TCPDUMP=$(command -v tcpdump || echo /usr/sbin/tcpdump)
    # -Z root: as root, tcpdump otherwise hands its output file to the user `tcpdump`, and here
    # that file is /dev/null.
    bench "$P_TCPD" tcpdump "$TCPDUMP" -r "$CAP" -w /dev/null -Z root
else
    skip "$P_TCPD" "tcpdump not installed (Debian package tcpdump)"
fi

# --- 4. report --------------------------------------------------------------------------------
echo
echo "== sensor summary line"
if [[ -n $SUMMARY ]]; then
    echo "$SUMMARY"
    SEEN=$(grep -o 'packets=[0-9]*' <<<"$SUMMARY" | head -n1 | cut -d= -f2 || true)
    if [[ -n $SEEN && $SEEN != "$PACKETS" ]]; then
        echo "WARNING: the sensor counted $SEEN packets, the capture holds $PACKETS"
    fi
else
    echo "(no 'summary' line on the sensor's stderr; last lines:)"
    tail -n 5 "$LOGS/sensor.err" 2>/dev/null | sed 's/^/   | /' || true
fi

echo
printf '== replay benchmark: %s\n' "$CAP"
printf '   %s packets, %s frame bytes (%.2f GB file); sensor --workers %s; best of %s run(s)\n' \
    "$PACKETS" "$FRAME_BYTES" "$(calc "$FILE_BYTES / 1e9")" "$WORKERS" "$REPEAT"
printf '   CPU-s = user+sys of all threads; rates are per CPU-second unless marked wall\n\n'
printf '%-28s %8s %8s %11s %11s %11s %8s\n' tool CPU-s wall-s Mpps/CPU-s Gbit/CPU-s "Mpps wall" RSS-MB
for name in "${ORDER[@]}"; do
    if [[ ${STATUS[$name]} != ok ]]; then
        printf '%-28s %s\n' "$name" "${STATUS[$name]}"
        continue
    fi
    awk -v n="$name" -v c="${CPU[$name]}" -v w="${WALL[$name]}" -v r="${RSS[$name]}" \
        -v p="$PACKETS" -v b="$FRAME_BYTES" 'BEGIN {
            if (c > 0) { mpps = sprintf("%.2f", p / c / 1e6); gb = sprintf("%.2f", b * 8 / c / 1e9) }
            else { mpps = "inf"; gb = "inf" }
            mw = (w > 0) ? sprintf("%.2f", p / w / 1e6) : "inf"
            printf "%-28s %8.3f %8.3f %11s %11s %11s %8s\n", n, c, w, mpps, gb, mw, r }'
done

# ratio_line LABEL NUM DEN OP GOAL NOTE: prints CPU[NUM] / CPU[DEN] against "OP GOAL". With the
# peer as NUM and the sensor as DEN this is the sensor's packets per CPU-second over the peer's
# (same packets for both); with the sensor as NUM, how many times a floor's CPU the sensor costs.
ratio_line() {
    local label=$1 num=$2 den=$3 op=$4 goal=$5 note=$6
    if [[ ${STATUS[$num]:-} != ok || ${STATUS[$den]:-} != ok ]]; then
        printf '   %-46s %8s\n' "$label" "n/a"
        return
    fi
    awk -v l="$label" -v a="${CPU[$num]}" -v b="${CPU[$den]}" -v op="$op" -v g="$goal" \
        -v note="$note" 'BEGIN {
            if (b <= 0) { printf "   %-46s %8s\n", l, "n/a (0 CPU-s)"; exit }
            r = a / b
            met = (op == ">=") ? (r >= g) : (r <= g)
            printf "   %-46s %7.2fx   goal %s %sx %s   %s\n", l, r, op, g, met ? "met " : "MISS", note }'
}

echo
echo "== ratios (same file, same run; noise of a few % is normal, nothing here fails the build)"
ratio_line "sensor vs ndpiReader (packets per CPU-s)" "$P_NDPI" "$S_NOOUT" ">=" 6 "DPI, no output, like the peer"
ratio_line "sensor+EVE vs ndpiReader (packets per CPU-s)" "$P_NDPI" "$S_FULL" ">=" 6 "we also write EVE JSON"
ratio_line "sensor vs softflowd (packets per CPU-s)" "$P_SOFT" "$S_NOOUT" ">=" 1.2 "DPI vs flows only, no output"
ratio_line "sensor+EVE vs softflowd (packets per CPU-s)" "$P_SOFT" "$S_FULL" ">=" 1.2 "we also write EVE JSON"
ratio_line "sensor+EVE vs Suricata 7 (CPU-s, EVE files)" "$P_SURI" "$S_FILE" ">=" 8 "the peer with our output format"
ratio_line "sensor CPU / our read floor (--no-decode)" "$S_NOOUT" "$S_FLOOR" "<=" 2 "cost over reading alone"
ratio_line "sensor CPU / tcpdump read floor" "$S_NOOUT" "$P_TCPD" "<=" 2 "cost over libpcap reading"
ratio_line "our read floor vs tcpdump (packets per CPU-s)" "$P_TCPD" "$S_FLOOR" ">=" 1 "our reader vs libpcap"
exit 0
