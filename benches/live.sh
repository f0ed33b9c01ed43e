#!/usr/bin/env bash
# Live benchmark: the highest offered rate each receiver takes with zero loss, all on the same
# veth pair in the same run, with the same traffic: the sensor (bypass off and on, DPI inline in
# the capture thread; and bypass off with DPI behind SPSC rings in a worker thread) against
#   (a) the XDP program counting and dropping every frame: the floor of this machine;
#   (b) a bare AF_XDP copy-mode receive loop that touches nothing: the floor for user space;
#   (c) a plain AF_PACKET capture: tcpdump -w /dev/null;
#   (d) Suricata 7 on AF_XDP, one thread, no rules, Debian's default outputs (when installed).
# Then the bare loop and the sensor again, each held to BENCH_CAP percent (default 10) of one core
# by a CPU cgroup (the "-capped" rows): with a whole core every receiver takes all the veth
# carries, so only a capped receiver runs out. They are compared by frames taken per CPU-second
# in their full-speed trial, which the cap saturates: their zero-loss rates are set more by how
# long the quota keeps them off the CPU (it is enforced at scheduler ticks) against the size of
# their socket ring, the same for both, than by what each frame costs.
# Last the XDP floor, tcpdump and the sensor with bypass on with the veth's NAPI thread held to
# BENCH_CAP percent of a core as well (the "-napi-capped" rows): their work is mostly done in that
# kernel thread (the XDP program; AF_PACKET's copy), which a CFS quota does not stop (this kernel
# throttles a task only on its return to user space), so it is made a real-time thread in a
# cgroup with an RT budget (cpu.rt_runtime_us, CONFIG_RT_GROUP_SCHED, cgroup v1), and the
# receiver's process gets the same CAP percent by CFS quota.
#
# Usage: benches/live.sh [--short]        (needs root: network namespace, XDP, AF_XDP)
#
#   (default)  5 s per trial, 6 bisection steps per receiver.
#   --short    1.5 s per trial, 5 bisection steps: the CI mode (.ci/run), 4-8 minutes.
#
# Traffic: `pcapgen longflows` (64 concurrent TLS connections, ClientHello + ServerHello, then
# 500 small application data records each way; nearly every packet belongs to a flow whose
# metadata is already extracted, which is what bypass is for), sent from inside a namespace by
# `pcapgen send --loops 0`, each loop with rewritten addresses (new flows every loop).
#
# Method, per receiver: start it on the host end of the veth, send for T seconds at a rate,
# stop it, compare what it got with what was sent. Loss = sent - received (XDP floor: frames its
# counter saw; AF_XDP floor: frames its loop received; tcpdump: "packets captured" (GRO merges
# nothing in this mix: each segment acknowledges the other side's last one, so the segments of
# a direction never line up); the sensor: frames the XDP program saw
# minus every drop cause in its summary, so bypassed frames count as taken); a bisection trial
# passes when nothing was lost and the sender kept within 1% of the rate it was asked for (a
# sender the veth held back further did not offer that rate). First a trial as
# fast as the generator goes (the offered maximum); if that is lossless the receiver's zero-loss
# rate is only known to be at least that and is printed ">= X, generator-limited" (or
# "veth-limited" when the generator found the veth full: the kernel's receive side set the pace),
# and ratios against it are printed as bounds, not results; otherwise a bisection between 0 and
# that maximum. Receive side: threaded NAPI on the veth, its thread pinned to cpu 1; the generator
# (`pcapgen send`, PACKET_TX_RING) pinned to cpu 0; the sensor pins its own threads: its capture
# thread on cpu 0 (with `--workers 1` on one queue it runs DPI inline; with live.dispatch =
# "rings" a worker thread on cpu 1 does), and the AF_XDP floor's receive loop is
# pinned where the sensor's capture thread is (cpu 0) and opens its socket with the same
# `live.*` ring and frame sizes (both use the defaults), so both receive under the same policy;
# the XDP floor has no user-space thread and tcpdump is not pinned.
#
# The figures are those of a shared 2-core machine: the generator, the veth's NAPI thread and
# the receiver compete for the same cores, so they are orders of magnitude, not a datasheet.
# Environment: BENCH_SECONDS (per trial), BENCH_STEPS (bisection steps), BENCH_RECEIVERS (which
# rows, space-separated; default all), BENCH_GEN (the generator's --method: ring, the default,
# a PACKET_TX_RING whose skbs the veth copies for XDP, which caps what it carries at what its
# NAPI thread can copy, with back-pressure; or xdp, frames built by an XDP program and
# redirected into the veth: no skb, no copy, no back-pressure, so what the veth's 256-frame
# receive ring cannot hold is dropped and counted as loss, shown as "veth drops"; under xdp the
# tcpdump trial has `floor --mode xdp-pass` on the interface, since a veth takes
# redirected frames only with an XDP program on its receiving end), BENCH_RATE (a cost run: one
# trial per receiver at this offered rate, no bisection; it prints each receiver's CPU per frame,
# its process's and the NAPI thread's, and their ratios: the comparison the xdp generator allows,
# since its drops make zero-loss rates meaningless), BENCH_HUGE (1, the default: both AF_XDP
# receivers' UMEMs on 2 MiB pages reserved for the run; 0: on 4 KiB pages).
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
    STEPS=${BENCH_STEPS:-5}
else
    SECS=${BENCH_SECONDS:-5}
    STEPS=${BENCH_STEPS:-6}
fi

echo "== build: cargo build --release --workspace --bin sensor --bin pcapgen --bin floor"
cargo build --release --workspace --bin sensor --bin pcapgen --bin floor || {
    echo "live.sh: release build failed" >&2
    exit 1
}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SENSOR=$TARGET_DIR/release/sensor
PCAPGEN=$TARGET_DIR/release/pcapgen
FLOOR=$TARGET_DIR/release/floor
MIX=$WORK/longflows.pcap
"$PCAPGEN" longflows --out "$MIX" >/dev/null || exit 1

GEN=${BENCH_GEN:-ring}
case "$GEN" in
ring | xdp) ;;
*)
    echo "live.sh: BENCH_GEN must be ring or xdp, not $GEN" >&2
    exit 2
    ;;
esac

ID=$$
NS=sbench$ID
A=sba$ID
B=sbb$ID
cleanup() {
    ip link del "$A" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    [[ -n ${CAP_GROUP:-} ]] && rmdir "$CAP_GROUP" 2>/dev/null
    [[ -n ${NAPI_GROUP:-} ]] && rmdir "$NAPI_GROUP" 2>/dev/null
    [[ -n ${HUGE_BEFORE:-} ]] && echo "$HUGE_BEFORE" >/proc/sys/vm/nr_hugepages 2>/dev/null
}
trap cleanup EXIT
ip netns add "$NS"
ip link add "$A" type veth peer name "$B"
ip link set "$B" netns "$NS"
echo 1 >/proc/sys/net/ipv6/conf/"$A"/disable_ipv6
ip netns exec "$NS" sh -c "echo 1 > /proc/sys/net/ipv6/conf/$B/disable_ipv6"
ip link set "$A" up
ip netns exec "$NS" ip link set "$B" up
# A veth hands a frame to its NAPI thread only when an XDP program is attached, or when GRO is
# on and the sending end cannot segment (its TSO off): so for tcpdump, which has no XDP program,
# the kernel's receive path (GRO, AF_PACKET's copy into its ring) runs in the NAPI thread too,
# on cpu 1 as for every other receiver, instead of on the sender's cpu.
ip netns exec "$NS" ethtool -K "$B" tso off gso off >/dev/null 2>&1
napi_on() {
    ethtool -K "$A" gro on >/dev/null 2>&1
    echo 1 >/sys/class/net/"$A"/threaded 2>/dev/null
}
napi_on

# The generator runs pinned to cpu 0 and the veth's NAPI thread on cpu 1. The sensor pins its
# threads itself (capture cpu 0, a rings worker cpu 1); the AF_XDP floor's loop gets the capture thread's
# cpu 0 (a polling AF_XDP loop sharing cpu 1 with the NAPI thread collapsed to a third here).
# napi_pids: the veth's NAPI threads. Kernel threads are processes: their names are in
# /proc/PID/comm (no procps needed).
napi_pids() {
    local f
    for f in /proc/[0-9]*/comm; do
        [[ $(cat "$f" 2>/dev/null) == "napi/$A-"* ]] || continue
        f=${f#/proc/}
        echo "${f%/comm}"
    done
}
pin_napi() {
    local p
    for p in $(napi_pids); do taskset -pc 1 "$p" >/dev/null 2>&1; done
}
# napi_cap on|off: the NAPI threads into the RT-budget group as SCHED_FIFO, or back to what
# every other row has (SCHED_OTHER, the root group).
napi_cap() {
    local p
    for p in $(napi_pids); do
        if [[ $1 == on ]]; then
            echo "$p" >"$NAPI_GROUP/cgroup.procs" && chrt -f -p 50 "$p" >/dev/null
        else
            chrt -o -p 0 "$p" >/dev/null
            echo "$p" >/sys/fs/cgroup/cpu/cgroup.procs
        fi
    done
}

# Frames the veth dropped because its receive ring was full (only a redirecting sender, the
# xdp method, meets a full ring; socket senders wait instead).
veth_drops() {
    ip netns exec "$NS" ethtool -S "$B" 2>/dev/null | awk '/xdp_xmit_errors/ { n += $2 } END { print n + 0 }'
}

# send RATE -> prints "SENT SECONDS WAITS" (RATE 0: as fast as possible). WAITS: times the
# sender found the veth full (its receive side behind), i.e. it was not the limit then.
send() {
    local out
    pin_napi
    out=$(ip netns exec "$NS" taskset -c 0 "$PCAPGEN" send --method "$GEN" --iface "$B" --loops 0 --duration "$SECS" --rate "$1" "$MIX" 2>>"$LOGS/live-send.err")
    echo "$out" >>"$LOGS/live-send.log"
    echo "$(grep -o ' packets=[0-9]*' <<<"$out" | cut -d= -f2) $(grep -o ' seconds=[0-9.]*' <<<"$out" | cut -d= -f2) $(grep -o 'queue_full_waits=[0-9]*' <<<"$out" | cut -d= -f2)"
}

num() { grep -o "$1=[0-9]*" | head -1 | cut -d= -f2; }

# cpu_ns PID...: CPU time, ns, the threads of these processes have run so far (their schedstat:
# ns, where /proc/PID/stat counts 10 ms ticks, too coarse for a tenth of a core over 1.5 s); 0 for
# one that is gone. Summed by the shell: awk prints sums past 2^31 in exponent form.
cpu_ns() {
    local p f t n=0
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            read -r t _ 2>/dev/null <"$f" && n=$((n + t))
        done
    done
    echo "$n"
}

# wait_for_line FILE REGEX: until a line of FILE matches (10 s at most).
wait_for_line() {
    for _ in $(seq 100); do
        grep -qE "$2" "$1" && return
        sleep 0.1
    done
}

# trial NAME RATE -> prints "SENT RECEIVED SECONDS WAITS CPU-NS VETH-DROPS NAPI-NS"
trial() {
    local name=$1 rate=$2 log=$LOGS/live-$1.log pid sent secs waits got pass="" capped="" napicap=""
    if [[ $name == *-napi-capped ]]; then
        napicap=1
        capped=1
        name=${name%-napi-capped}
    elif [[ $name == *-capped ]]; then
        capped=1
        name=${name%-capped}
    fi
    case "$name" in
    xdp-drop) "$FLOOR" --iface "$A" --mode xdp-drop >"$log" 2>&1 & ;;
    afxdp) taskset -c 0 "$FLOOR" --iface "$A" --mode afxdp --config "$WORK/live.toml" >"$log" 2>&1 & ;;
    tcpdump | suricata)
        if [[ $GEN == xdp && $name == tcpdump ]]; then
            "$FLOOR" --iface "$A" --mode xdp-pass >"$LOGS/live-xdp-pass.log" 2>&1 &
            pass=$!
            wait_for_line "$LOGS/live-xdp-pass.log" 'floor ready'
        fi
        if [[ $name == tcpdump ]]; then
            tcpdump -i "$A" -n -B 65536 -w /dev/null -Z root >"$log" 2>&1 &
        else
            # Debian's default configuration (EVE and the other outputs on, into -l's folder),
            # AF_XDP (its own XDP program, copy mode on a veth), one capture-and-detect thread,
            # no rules, no checksum checks.
            rm -rf "$WORK/suricata-live" && mkdir -p "$WORK/suricata-live"
            suricata --af-xdp="$A" --runmode single -S /dev/null -k none -l "$WORK/suricata-live" >"$log" 2>&1 &
        fi
        ;;
    sensor-bypass-off | sensor-bypass-on | sensor-rings-off)
        local extra=(--config "$WORK/live.toml")
        [[ $name == sensor-rings-off ]] && extra=(--config "$WORK/rings.toml")
        [[ $name != sensor-bypass-on ]] && extra+=(--no-bypass)
        "$SENSOR" run --iface "$A" --workers 1 --eve /dev/null --metrics-addr "" "${extra[@]}" >"$log" 2>&1 &
        ;;
    esac
    pid=$!
    # All its threads, and those it starts, into the CPU-capped group.
    [[ -n $capped ]] && echo "$pid" >"$CAP_GROUP/cgroup.procs"
    # Ready when it says so (tcpdump: "listening on"; Suricata: "Engine started").
    wait_for_line "$log" 'floor ready|capturing on|listening on|Engine started'
    [[ -n $napicap ]] && napi_cap on
    local t0 t1 d0 d1 n0 n1
    t0=$(cpu_ns "$pid")
    d0=$(veth_drops)
    n0=$(cpu_ns $(napi_pids))
    read -r sent secs waits < <(send "$rate")
    t1=$(cpu_ns "$pid")
    d1=$(veth_drops)
    n1=$(cpu_ns $(napi_pids))
    sleep 1
    [[ -n $napicap ]] && napi_cap off
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if [[ -n $pass ]]; then
        kill -TERM "$pass" 2>/dev/null
        wait "$pass" 2>/dev/null
    fi
    case "$name" in
    xdp-drop) got=$(num seen <"$log") ;;
    afxdp) got=$(num received <"$log") ;;
    tcpdump) got=$(grep -o '^[0-9]* packets captured' "$log" | cut -d' ' -f1) ;;
    suricata)
        # "device: IFACE: packets: N, drops: M (..%), invalid chksum: 0" at shutdown.
        local line
        line=$(grep -o "device: $A: packets: [0-9]*, drops: [0-9]*" "$log" | tail -n1)
        [[ -n $line ]] && got=$(($(num packets <<<"${line//: /=}") - $(num drops <<<"${line//: /=}")))
        ;;
    sensor-*)
        local seen lost
        seen=$(grep -o 'summary: .*' "$log" | num packets)
        lost=$(($(num socket_dropped <"$log") + $(grep -o 'drops: .*' "$log" | num ring_full) + $(grep -o 'drops: .*' "$log" | num flow_table_full)))
        got=$((${seen:-0} - lost))
        ;;
    esac
    echo "${sent:-0} ${got:-0} ${secs:-0} ${waits:-0} $((t1 - t0)) $((d1 - d0)) $((n1 - n0))"
}

# ZL: zero-loss rate; LIM: why it is only a lower bound ("" when measured by bisection):
#   gen  - lossless at the generator's full speed and the generator never found the veth full:
#          the generator was the limit, the receiver's own limit is higher;
#   veth - lossless at full speed but the generator found the veth full (waited): the veth's
#          receive side (NAPI + XDP) set the pace, not the receiver's user-space part.
declare -A ZL MAXR MAXLOSS LIM CPU VDROP NAPI
read -r -a TOOLS <<<"${BENCH_RECEIVERS:-xdp-drop afxdp tcpdump suricata sensor-bypass-off sensor-bypass-on sensor-rings-off afxdp-capped sensor-bypass-off-capped sensor-rings-off-capped xdp-drop-napi-capped tcpdump-napi-capped sensor-bypass-on-napi-capped}"
if ! command -v suricata >/dev/null; then
    echo "note: suricata not installed (scripts/setup.sh installs it from bookworm-backports): its row is skipped"
    for i in "${!TOOLS[@]}"; do [[ ${TOOLS[$i]} == suricata* ]] && unset "TOOLS[$i]"; done
    TOOLS=("${TOOLS[@]}")
fi
# Both AF_XDP receivers (the sensor, the bare loop) put their UMEM on 2 MiB pages, as the sensor
# does by default when pages are reserved (live.huge_pages): 16 pages per socket at the default
# sizes, one socket at a time here, reserved for the run and given back at the end. With 4 KiB
# pages the sensor's first read of each frame is often a TLB miss; the bare loop reads none.
# BENCH_HUGE=0: both on 4 KiB pages.
HUGE=${BENCH_HUGE:-1}
HUGE_BEFORE=""
PAGES="4 KiB (BENCH_HUGE=0)"
if [[ $HUGE != 0 ]]; then
    PAGES="4 KiB (could not reserve 2 MiB pages: vm.nr_hugepages not writable or memory fragmented)"
    HUGE=0
    before=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null)
    if [[ -n $before ]] && echo $((before + 16)) >/proc/sys/vm/nr_hugepages 2>/dev/null; then
        HUGE_BEFORE=$before
        if (($(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo) >= 16)); then
            HUGE=1
            PAGES="2 MiB (16 reserved for the run)"
        fi
    fi
fi
printf '[live]\nhuge_pages = %s\n' "$([[ $HUGE == 1 ]] && echo true || echo false)" >"$WORK/live.toml"
{
    cat "$WORK/live.toml"
    printf 'dispatch = "rings"\n'
} >"$WORK/rings.toml"
# drop_rows REGEX: the rows whose names match leave TOOLS (what they need is not available).
drop_rows() {
    read -r -a TOOLS <<<"$(tr ' ' '\n' <<<"${TOOLS[*]}" | grep -v -- "$1" | tr '\n' ' ')"
}

# The capped rows run the receiver in a CPU cgroup held to CAP percent of one core (CFS quota of
# 1 ms per period), so that the receiver, not the veth, is what runs out: on this rig the veth
# carries less than any receiver takes with a whole core. Every capped receiver gets the same
# budget, so their zero-loss rates compare the receivers' own cost per frame; the absolute
# figures are those of CAP percent of a core.
CAP=${BENCH_CAP:-10}
if ! [[ $CAP =~ ^[0-9]+$ ]] || ((CAP < 1 || CAP > 100)); then
    echo "live.sh: BENCH_CAP must be a whole percentage of one core, 1 to 100, not $CAP" >&2
    exit 2
fi
CAP_GROUP=""
if [[ " ${TOOLS[*]} " == *-capped* ]]; then
    if [[ -w /sys/fs/cgroup/cpu/cgroup.procs ]]; then
        CAP_GROUP=/sys/fs/cgroup/cpu/sensor-bench-$$
        mkdir -p "$CAP_GROUP" &&
            echo $((100000 / CAP)) >"$CAP_GROUP/cpu.cfs_period_us" &&
            echo 1000 >"$CAP_GROUP/cpu.cfs_quota_us" || CAP_GROUP=""
    elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
        CAP_GROUP=/sys/fs/cgroup/sensor-bench-$$
        mkdir -p "$CAP_GROUP" && echo "1000 $((100000 / CAP))" >"$CAP_GROUP/cpu.max" || CAP_GROUP=""
    fi
    if [[ -z $CAP_GROUP ]]; then
        echo "live.sh: no writable CPU cgroup (v1 cpu controller or v2 cpu.max): the -capped rows are skipped"
        drop_rows '-capped$'
    fi
fi
# The -napi-capped rows: the NAPI thread gets CAP percent of each 10 ms as a real-time budget.
# The budget is enforced at scheduler ticks, so the thread runs in bursts; the generator's
# schedule is absolute, so it catches up after the veth held it back, and a trial passes only if
# the sender kept to the offered rate on average (below).
NAPI_GROUP=""
if [[ " ${TOOLS[*]} " == *-napi-capped* && $GEN == xdp ]]; then
    # Without back-pressure a NAPI thread that runs in bursts loses most frames in the veth's
    # ring, handshakes among them, so the sensor would bypass nothing: no comparison.
    echo "live.sh: BENCH_GEN=xdp: the -napi-capped rows are skipped (they need the sender held back, not dropped)"
    drop_rows '-napi-capped$'
fi
if [[ " ${TOOLS[*]} " == *-napi-capped* ]]; then
    if [[ -w /sys/fs/cgroup/cpu/cpu.rt_runtime_us ]] && command -v chrt >/dev/null; then
        NAPI_GROUP=/sys/fs/cgroup/cpu/sensor-bench-napi-$$
        mkdir -p "$NAPI_GROUP" &&
            echo 10000 >"$NAPI_GROUP/cpu.rt_period_us" &&
            echo $((CAP * 100)) >"$NAPI_GROUP/cpu.rt_runtime_us" || NAPI_GROUP=""
    fi
    if [[ -z $NAPI_GROUP ]]; then
        echo "live.sh: no RT group budget (cgroup v1 cpu.rt_runtime_us, CONFIG_RT_GROUP_SCHED) or no chrt: the -napi-capped rows are skipped"
        drop_rows '-napi-capped$'
    fi
fi
FIXED=${BENCH_RATE:-0}
if ! [[ $FIXED =~ ^[0-9]+$ ]]; then
    echo "live.sh: BENCH_RATE must be frames per second, a whole number, not $FIXED" >&2
    exit 2
fi
rm -f "$LOGS/live-send.log"
for t in "${TOOLS[@]}"; do
    read -r sent got secs waits cpuns vdrops napins < <(trial "$t" "$FIXED")
    # The receiver's own CPU per frame it took during the as-fast-as-possible trial (all its
    # threads, user + system): its cost, whatever the veth let through.
    CPU[$t]=$(awk -v k="$cpuns" -v n="$got" 'BEGIN { if (n > 0) printf "%.3f", k / 1e3 / n; else print "-" }')
    # The veth's NAPI thread's CPU per frame the receiver took (XDP program, AF_XDP or AF_PACKET
    # copy, and the veth's own work, the same for every row).
    NAPI[$t]=$(awk -v k="$napins" -v n="$got" 'BEGIN { if (n > 0) printf "%.3f", k / 1e3 / n; else print "-" }')
    max=$(awk -v s="$sent" -v t="$secs" 'BEGIN { printf "%d", (t > 0 ? s / t : 0) }')
    MAXR[$t]=$max
    MAXLOSS[$t]=$((sent - got))
    VDROP[$t]=$vdrops
    LIM[$t]=""
    if ((FIXED > 0)); then
        echo "-- $t at $FIXED pps: sent $sent in ${secs}s ($max pps), received $got, veth drops $vdrops"
        continue
    fi
    echo "-- $t: as fast as possible: sent $sent in ${secs}s ($max pps, generator waited $waits times), received $got, veth drops $vdrops"
    # A -napi-capped receiver always holds the sender back (its NAPI thread is the limit by
    # design), so its full-speed trial is no bound: it is always bisected.
    if ((sent > 0 && got >= sent)) && [[ $t != *-napi-capped ]]; then
        ZL[$t]=$max
        # A few waits (under 0.1% of the frames) are start-up noise, not a limit.
        if ((waits * 1000 <= sent)); then LIM[$t]=gen; else LIM[$t]=veth; fi
        continue
    fi
    lo=0
    hi=$max
    for _ in $(seq "$STEPS"); do
        mid=$(((lo + hi) / 2))
        read -r sent got secs waits _ vdrops _ < <(trial "$t" "$mid")
        # Offered means sent: a sender that fell more than 1% behind the rate (the veth held it
        # back: the receive side could not keep up) did not offer it.
        behind=$(awk -v s="$sent" -v r="$mid" -v t="$SECS" 'BEGIN { print (s < 0.99 * r * t) ? 1 : 0 }')
        if ((sent > 0 && got >= sent && behind == 0)); then
            lo=$mid
            r=ok
        elif ((got >= sent)); then
            hi=$mid
            r="sender fell behind the rate: the veth held it back $waits times"
        else
            hi=$mid
            r="lost $((sent - got)), of which veth drops $vdrops"
        fi
        echo "   $t at $mid pps: sent $sent, received $got ($r)"
    done
    ZL[$t]=$lo
done

# costs_known A B: both receivers ran and took frames, so both have a CPU cost per frame.
costs_known() {
    local r
    for r in "$1" "$2"; do
        [[ -n ${CPU[$r]:-} && ${CPU[$r]} != - ]] || {
            echo "-   (not run: BENCH_RECEIVERS, or $r took no frame)"
            return 1
        }
    done
}
# cost_ratio A B: frames per CPU-second of A over B's, counting the process and the NAPI thread.
cost_ratio() {
    costs_known "$1" "$2" || return
    awk -v a="${CPU[$1]}" -v na="${NAPI[$1]}" -v b="${CPU[$2]}" -v nb="${NAPI[$2]}" 'BEGIN { printf "%.2f", (b + nb) / (a + na) }'
}
# sat_ratio A B: frames per CPU-second of A's process over B's, both in their full-speed
# trial; a receiver that lost nothing there was not saturated (its figure includes waiting for
# frames), and the ratio says so.
sat_ratio() {
    costs_known "$1" "$2" || return
    local note="" r
    for r in "$1" "$2"; do
        ((MAXLOSS[$r] > 0)) || note="$note ($r lost nothing at max: not saturated, its cost includes its wake-ups)"
    done
    awk -v a="${CPU[$1]}" -v b="${CPU[$2]}" -v note="$note" 'BEGIN { printf "%.2f%s", b / a, note }'
}
if ((FIXED > 0)); then
    echo
    echo "== live benchmark, cost run: every receiver offered $FIXED pps for ${SECS}s, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-30s %12s %12s %11s %12s %13s\n' receiver "sent pps" "lost" "veth drops" "CPU us/frame" "NAPI us/frame"
    for t in "${TOOLS[@]}"; do
        printf '%-30s %12s %12s %11s %12s %13s\n' "$t" "${MAXR[$t]}" "${MAXLOSS[$t]}" "${VDROP[$t]}" "${CPU[$t]}" "${NAPI[$t]}"
    done
    echo "(CPU us/frame: the receiver process's own; NAPI us/frame: the veth's NAPI thread's; both over the frames"
    echo " the receiver took. At a rate a thread keeps up with, its cost per frame includes its wake-ups.)"
    echo
    echo "frames per CPU-second (process + NAPI thread), ratio at the same offered rate:"
    echo "  sensor bypass on  / XDP count-and-drop  $(cost_ratio sensor-bypass-on xdp-drop)"
    echo "  sensor bypass on  / tcpdump (AF_PACKET) $(cost_ratio sensor-bypass-on tcpdump)"
    echo "  sensor bypass off / bare AF_XDP loop    $(cost_ratio sensor-bypass-off afxdp)"
    exit 0
fi

shown() {
    case "${LIM[$1]}" in
    gen) echo ">= ${ZL[$1]}, generator-limited" ;;
    veth) echo ">= ${ZL[$1]}, veth-limited" ;;
    *) echo "${ZL[$1]}" ;;
    esac
}
# ratio A B: A's zero-loss rate over B's, saying so when either is only a lower bound.
ratio() {
    if [[ -z ${ZL[$1]:-} || -z ${ZL[$2]:-} ]]; then
        echo "-   (not run: BENCH_RECEIVERS)"
        return
    fi
    local a=${ZL[$1]} b=${ZL[$2]} la=${LIM[$1]} lb=${LIM[$2]}
    if ((b <= 0)); then
        echo "-   ($2 has no zero-loss rate)"
    elif [[ -n $la && -n $lb ]]; then
        awk -v a="$a" -v b="$b" -v x="$la" -v y="$lb" 'BEGIN { printf "unknown (both only lower bounds: %s %s-limited, %s %s-limited; %.2f is not a result)", a, x, b, y, a / b }'
    elif [[ -n $la ]]; then
        awk -v a="$a" -v b="$b" -v x="$la" -v n="$1" 'BEGIN { printf ">= %.2f (%s %s-limited)", a / b, n, x }'
    elif [[ -n $lb ]]; then
        awk -v a="$a" -v b="$b" -v x="$lb" -v n="$2" 'BEGIN { printf "<= %.2f (%s %s-limited)", a / b, n, x }'
    else
        awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
    fi
}

echo
echo "== live benchmark: zero-loss rate on one veth queue, ${SECS}s trials, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "AF_XDP UMEM pages: $PAGES; the sockets said: $(for t in "${TOOLS[@]}"; do grep -ho 'UMEM on [0-9]* [KM]iB pages' "$LOGS/live-$t.log" 2>/dev/null; done | sort | uniq -c | awk '{ printf "%s%s x %s %s %s", (NR > 1 ? ", " : ""), $1, $4, $5, $6 }')"
printf '%-30s %-32s %16s %12s %11s %12s %12s\n' receiver "zero-loss pps" "max offered pps" "lost at max" "veth drops" "CPU us/frame" "NAPI us/frame"
for t in "${TOOLS[@]}"; do
    printf '%-30s %-32s %16s %12s %11s %12s %12s\n' "$t" "$(shown "$t")" "${MAXR[$t]}" "${MAXLOSS[$t]}" "${VDROP[$t]}" "${CPU[$t]}" "${NAPI[$t]}"
done
echo "(veth drops: of the frames lost at max, those the veth's receive ring had no room for, before any"
echo " XDP program ran; the receiver's own NAPI thread was behind. The rest were lost in the receiver.)"
echo "(CPU us/frame: the receiver process's own CPU time over the frames it took in the first trial; the XDP"
echo " floor's work runs in the NAPI thread, not in its process, so its figure is near 0; NAPI us/frame: the"
echo " veth's NAPI thread's CPU time over the same frames, both at max. Under a cap they are a cost at saturation.)"
gen_cpu=$(grep -o 'pps_per_cpu=[0-9]*' "$LOGS/live-send.log" 2>/dev/null | cut -d= -f2 | sort -n | tail -1)
if [[ $GEN == xdp ]]; then
    echo "generator: pcapgen send --method xdp (XDP program redirecting into the veth; it spins between frames, so no per-CPU figure)"
else
    echo "generator: pcapgen send (PACKET_TX_RING), at most ${gen_cpu:-?} frames per CPU-second of its own in this run"
fi
echo
echo "ratios (goal in brackets; a '>=' rate is a lower bound, so a ratio against one is a bound, not a result):"
echo "  sensor bypass off / bare AF_XDP loop    [>= 0.90]  $(ratio sensor-bypass-off afxdp)"
echo "  sensor bypass on  / XDP count-and-drop  [>= 0.80]  $(ratio sensor-bypass-on xdp-drop)"
echo "  sensor bypass on  / tcpdump (AF_PACKET) [>= 1.50]  $(ratio sensor-bypass-on tcpdump)"
echo "  sensor bypass off / tcpdump (AF_PACKET)            $(ratio sensor-bypass-off tcpdump)"
echo "  sensor bypass on  / Suricata 7 (AF_XDP, no rules)   $(ratio sensor-bypass-on suricata)"
echo "  sensor bypass off / Suricata 7 (AF_XDP, no rules)   $(ratio sensor-bypass-off suricata)"
echo "  process CPU per frame, Suricata 7 / sensor bypass off, full-speed trial [>= 3.00]  $(sat_ratio sensor-bypass-off suricata)"
echo "  sensor rings, bypass off / bare AF_XDP loop        $(ratio sensor-rings-off afxdp)"
echo "  with every receiver held to ${CAP}% of a core (the -capped rows), by frames taken per CPU-second of the"
echo "  receiver's process in its full-speed trial, where the cap saturates it (the CPU column):"
echo "  sensor bypass off / bare AF_XDP loop    [>= 0.90]  $(sat_ratio sensor-bypass-off-capped afxdp-capped)"
echo "  sensor rings, bypass off / bare AF_XDP loop        $(sat_ratio sensor-rings-off-capped afxdp-capped)"
echo "  the same rows by zero-loss rate, which the quota's tick-sized gaps against the socket ring set more"
echo "  than the cost per frame does (both receivers have the same ring):"
echo "  sensor bypass off / bare AF_XDP loop               $(ratio sensor-bypass-off-capped afxdp-capped)"
echo "  with the receiver and the veth's NAPI thread each held to ${CAP}% of a core (the -napi-capped rows):"
echo "  sensor bypass on  / XDP count-and-drop  [>= 0.80]  $(ratio sensor-bypass-on-napi-capped xdp-drop-napi-capped)"
echo "  sensor bypass on  / tcpdump (AF_PACKET) [>= 1.50]  $(ratio sensor-bypass-on-napi-capped tcpdump-napi-capped)"
echo "  XDP count-and-drop / tcpdump (AF_PACKET): what any XDP receiver could reach here  $(ratio xdp-drop-napi-capped tcpdump-napi-capped)"
echo "  bare AF_XDP loop  / XDP count-and-drop             $(ratio afxdp xdp-drop)"
exit 0
