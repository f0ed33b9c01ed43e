#!/usr/bin/env bash
# Live benchmark: the highest offered rate each receiver takes with zero loss, all on the same
# veth pair in the same run, with the same traffic: the sensor (bypass off and on) against
#   (a) the XDP program counting and dropping every frame: the floor of this machine;
#   (b) a bare AF_XDP copy-mode receive loop that touches nothing: the floor for user space;
#   (c) a plain AF_PACKET capture: tcpdump -w /dev/null.
#
# Usage: benches/live.sh [--short]        (needs root: network namespace, XDP, AF_XDP)
#
#   (default)  5 s per trial, 6 bisection steps per receiver.
#   --short    1.5 s per trial, 3 bisection steps: the CI mode (.ci/run), about 2 minutes.
#
# Traffic: `pcapgen longflows` (64 concurrent TLS connections, ClientHello + ServerHello, then
# 500 small application data records each way; nearly every packet belongs to a flow whose
# metadata is already extracted, which is what bypass is for), sent from inside a namespace by
# `pcapgen send --loops 0`, each loop with rewritten addresses (new flows every loop).
#
# Method, per receiver: start it on the host end of the veth, send for T seconds at a rate,
# stop it, compare what it got with what was sent. Loss = sent - received (XDP floor: frames its
# counter saw; AF_XDP floor: frames its loop received; tcpdump: "packets captured" (GRO is off
# for that trial so the kernel does not merge segments); the sensor: frames the XDP program saw
# minus every drop cause in its summary, so bypassed frames count as taken). First a trial as
# fast as the generator goes (the offered maximum); if that is lossless the receiver's zero-loss
# rate is at least the generator's and is marked ">="; otherwise a bisection between 0 and that
# maximum. Receive side: threaded NAPI on the veth; the sensor runs one capture thread and one
# worker, pinned.
#
# The figures are those of a shared 2-core machine: the generator, the veth's NAPI thread and
# the receiver compete for the same cores, so they are orders of magnitude, not a datasheet.
# Environment: BENCH_SECONDS (per trial), BENCH_STEPS (bisection steps).
# Exit status: 0 whatever the figures; 1 if the build fails; 2 on bad usage.
set -uo pipefail
export LC_ALL=C

SHORT=0
for arg in "$@"; do
    case "$arg" in
    --short) SHORT=1 ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "live.sh: unknown argument: $arg (usage: benches/live.sh [--short])" >&2
        exit 2
        ;;
    esac
done

if [[ $(id -u) != 0 ]]; then
    echo "live.sh: skipped: needs root (network namespace, XDP, AF_XDP)"
    exit 0
fi
for tool in ip ethtool; do
    command -v "$tool" >/dev/null || {
        echo "live.sh: skipped: $tool not found (scripts/setup.sh installs it)"
        exit 0
    }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=benches/work
LOGS=$WORK/logs
mkdir -p "$LOGS"
if [[ $SHORT == 1 ]]; then
    SECS=${BENCH_SECONDS:-1.5}
    STEPS=${BENCH_STEPS:-3}
else
    SECS=${BENCH_SECONDS:-5}
    STEPS=${BENCH_STEPS:-6}
fi

echo "== build: cargo build --release -p sensor"
cargo build --release -p sensor || {
    echo "live.sh: release build failed" >&2
    exit 1
}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SENSOR=$TARGET_DIR/release/sensor
PCAPGEN=$TARGET_DIR/release/pcapgen
MIX=$WORK/longflows.pcap
"$PCAPGEN" longflows --out "$MIX" >/dev/null || exit 1

ID=$$
NS=sbench$ID
A=sba$ID
B=sbb$ID
cleanup() {
    ip link del "$A" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
ip netns add "$NS"
ip link add "$A" type veth peer name "$B"
ip link set "$B" netns "$NS"
echo 1 >/proc/sys/net/ipv6/conf/"$A"/disable_ipv6
ip netns exec "$NS" sh -c "echo 1 > /proc/sys/net/ipv6/conf/$B/disable_ipv6"
ip link set "$A" up
ip netns exec "$NS" ip link set "$B" up
napi_on() {
    ethtool -K "$A" gro on >/dev/null 2>&1
    echo 1 >/sys/class/net/"$A"/threaded 2>/dev/null
}
napi_on

# send RATE -> prints "SENT SECONDS" (RATE 0: as fast as possible)
send() {
    local out
    out=$(ip netns exec "$NS" "$PCAPGEN" send --iface "$B" --loops 0 --duration "$SECS" --rate "$1" "$MIX" 2>>"$LOGS/live-send.err")
    echo "$(grep -o 'packets=[0-9]*' <<<"$out" | cut -d= -f2) $(grep -o 'seconds=[0-9.]*' <<<"$out" | cut -d= -f2)"
}

num() { grep -o "$1=[0-9]*" | head -1 | cut -d= -f2; }

# trial NAME RATE -> prints "SENT RECEIVED SECONDS"
trial() {
    local name=$1 rate=$2 log=$LOGS/live-$1.log pid sent secs got
    case "$name" in
    xdp-drop) "$SENSOR" floor --iface "$A" --mode xdp-drop >"$log" 2>&1 & ;;
    afxdp) "$SENSOR" floor --iface "$A" --mode afxdp >"$log" 2>&1 & ;;
    tcpdump)
        ethtool -K "$A" gro off >/dev/null 2>&1
        tcpdump -i "$A" -n -B 65536 -w /dev/null >"$log" 2>&1 &
        ;;
    sensor-bypass-off | sensor-bypass-on)
        local extra=()
        [[ $name == sensor-bypass-off ]] && extra=(--no-bypass)
        "$SENSOR" run --iface "$A" --workers 1 --eve /dev/null --metrics-addr "" "${extra[@]}" >"$log" 2>&1 &
        ;;
    esac
    pid=$!
    # Ready when it says so (tcpdump: "listening on").
    for _ in $(seq 100); do
        grep -qE 'floor ready|capturing on|listening on' "$log" && break
        sleep 0.1
    done
    read -r sent secs < <(send "$rate")
    sleep 1
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    case "$name" in
    xdp-drop) got=$(num seen <"$log") ;;
    afxdp) got=$(num received <"$log") ;;
    tcpdump)
        got=$(grep -o '^[0-9]* packets captured' "$log" | cut -d' ' -f1)
        napi_on
        ;;
    sensor-*)
        local seen lost
        seen=$(grep -o 'summary: .*' "$log" | num packets)
        lost=$(($(num socket_dropped <"$log") + $(grep -o 'drops: .*' "$log" | num ring_full) + $(grep -o 'drops: .*' "$log" | num flow_table_full)))
        got=$((${seen:-0} - lost))
        ;;
    esac
    echo "${sent:-0} ${got:-0} ${secs:-0}"
}

declare -A ZL MAXR MAXLOSS
TOOLS=(xdp-drop afxdp tcpdump sensor-bypass-off sensor-bypass-on)
for t in "${TOOLS[@]}"; do
    read -r sent got secs < <(trial "$t" 0)
    max=$(awk -v s="$sent" -v t="$secs" 'BEGIN { printf "%d", (t > 0 ? s / t : 0) }')
    MAXR[$t]=$max
    MAXLOSS[$t]=$((sent - got))
    echo "-- $t: as fast as possible: sent $sent in ${secs}s ($max pps), received $got"
    if ((sent > 0 && got >= sent)); then
        ZL[$t]=">=$max"
        continue
    fi
    lo=0
    hi=$max
    for _ in $(seq "$STEPS"); do
        mid=$(((lo + hi) / 2))
        read -r sent got secs < <(trial "$t" "$mid")
        if ((sent > 0 && got >= sent)); then
            lo=$mid
            r=ok
        else
            hi=$mid
            r="lost $((sent - got))"
        fi
        echo "   $t at $mid pps: sent $sent, received $got ($r)"
    done
    ZL[$t]=$lo
done

val() { echo "${ZL[$1]#>=}"; }
ratio() { awk -v a="$(val "$1")" -v b="$(val "$2")" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "== live benchmark: zero-loss rate on one veth queue, ${SECS}s trials, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-20s %18s %16s %14s\n' receiver "zero-loss pps" "max offered pps" "lost at max"
for t in "${TOOLS[@]}"; do
    printf '%-20s %18s %16s %14s\n' "$t" "${ZL[$t]}" "${MAXR[$t]}" "${MAXLOSS[$t]}"
done
echo
echo "ratios (goal in brackets; '>=' rates are the generator's limit, so a ratio against one is a lower bound):"
echo "  sensor bypass off / bare AF_XDP loop    $(ratio sensor-bypass-off afxdp)   [>= 0.90]"
echo "  sensor bypass on  / XDP count-and-drop  $(ratio sensor-bypass-on xdp-drop)   [>= 0.80]"
echo "  sensor bypass on  / tcpdump (AF_PACKET) $(ratio sensor-bypass-on tcpdump)   [>= 1.50]"
echo "  sensor bypass off / tcpdump (AF_PACKET) $(ratio sensor-bypass-off tcpdump)"
echo "  bare AF_XDP loop  / XDP count-and-drop  $(ratio afxdp xdp-drop)"
exit 0
