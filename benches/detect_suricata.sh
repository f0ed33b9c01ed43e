#!/usr/bin/env bash
# Detection against Suricata: on the attack captures, the CPU seconds of
# `sensor replay CAP --eve - | pipeline detect --eve -` (the shipped rules) against
# `suricata -r CAP --runmode single` with the equivalent rules of benches/suricata/, and the
# table of which alerts each raised. Both get the same intel (pipeline/cli/tests/data/
# intel.zeek, converted for Suricata by benches/suricata/intel.sh).
#
# Usage: benches/detect_suricata.sh [--short]   (benches/detect.sh runs it)
#
#   (default)  CPU on the attack captures amplified to ~200 MiB (pcapgen amplify: copies with
#              their addresses rewritten, so every copy is an attack by other hosts);
#   --short    ~20 MiB, the CI mode.
#
# The alert table replays each attack capture on its own: one row per rule (by sid), with how
# many alerts each side raised on each capture.
#
# Exit status: 0 whatever the figures are; 1 if the build fails.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

TARGET=200M
[ "${1:-}" = "--short" ] && TARGET=20M
command -v suricata >/dev/null || { echo "suricata bench: suricata not installed (scripts/setup.sh)"; exit 0; }
cargo build --release -q --workspace --bin sensor --bin pcapgen --bin pipeline
BIN=target/release
INTEL=pipeline/cli/tests/data/intel.zeek
mkdir -p benches/work
CAP=benches/work/detect-attacks-$TARGET.pcap
[ -s "$CAP" ] || "$BIN/pcapgen" amplify --out "$CAP" --target-bytes "$TARGET" testdata-pcaps/attacks/*.pcap >"$CAP.report"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
read -r -a SETS <<<"$(bash benches/suricata/intel.sh "$INTEL" "$TMP/intel" | tr '\n' ' ')"
SURICATA=(suricata -c benches/suricata/suricata.yaml -S benches/suricata/detect.rules --runmode single "${SETS[@]}")
suri() { # suri PCAP LOGDIR: Suricata with our rules and config, alerts in LOGDIR/eve.json
    mkdir -p "$2"
    "${SURICATA[@]}" -r "$1" -l "$2" >"$2/stdout" 2>&1
}
ours() { # ours PCAP: alerts (EVE lines) on stdout
    "$BIN/sensor" replay "$1" --eve - --quiet 2>/dev/null | "$BIN/pipeline" detect --eve - --intel "$INTEL" 2>/dev/null
}
# cpu CMD...: user + system CPU seconds of CMD and all its children (GNU time).
cpu() {
    /usr/bin/time -f "%U %S" -o "$TMP/time" "$@" >/dev/null 2>&1 || true
    awk '{printf "%.2f", $1 + $2}' "$TMP/time"
}

# Alert table: each capture alone.
for p in testdata-pcaps/attacks/*.pcap; do
    n=$(basename "$p" .pcap)
    ours "$p" >"$TMP/ours-$n.eve"
    suri "$p" "$TMP/suri-$n"
done
python3 - "$TMP" testdata-pcaps/attacks/*.pcap <<'PY'
import collections, json, os, sys
tmp, caps = sys.argv[1], [os.path.basename(p)[:-5] for p in sys.argv[2:]]
def sids(path):
    c = collections.Counter()
    if os.path.exists(path):
        for line in open(path):
            a = json.loads(line).get("alert")
            if a:
                c[(a["signature_id"], a.get("rule") or a["signature"])] += 1
    return c
ours = {n: sids(f"{tmp}/ours-{n}.eve") for n in caps}
suri = {n: sids(f"{tmp}/suri-{n}/eve.json") for n in caps}
names = {}  # our rule name where we raised it, else Suricata's msg
for d in suri.values():
    for sid, name in d:
        names.setdefault(sid, name)
for d in ours.values():
    for sid, name in d:
        names[sid] = name
print("| sid | rule | capture | pipeline detect | suricata |")
print("|---|---|---|---|---|")
for sid in sorted(names):
    for n in caps:
        o = sum(v for (s, _), v in ours[n].items() if s == sid)
        s = sum(v for (s2, _), v in suri[n].items() if s2 == sid)
        if o or s:
            print(f"| {sid} | {names[sid]} | {n} | {o} | {s} |")
tot_o = sum(sum(d.values()) for d in ours.values())
tot_s = sum(sum(d.values()) for d in suri.values())
print(f"alerts on the attack captures: pipeline detect {tot_o}, suricata {tot_s}")
PY

# CPU on the amplified capture, best of 3 each (the machine is shared).
best() { sort -n | head -1; }
OURS=$(for _ in 1 2 3; do cpu bash -c "'$BIN/sensor' replay '$CAP' --eve - --quiet 2>/dev/null | '$BIN/pipeline' detect --eve - --intel '$INTEL'"; echo; done | best)
SENSOR=$(for _ in 1 2 3; do cpu "$BIN/sensor" replay "$CAP" --eve /dev/null --quiet; echo; done | best)
SURI=$(for _ in 1 2 3; do rm -rf "$TMP/suri-cpu"; mkdir -p "$TMP/suri-cpu"; cpu "${SURICATA[@]}" -r "$CAP" -l "$TMP/suri-cpu"; echo; done | best)
OURS_ALERTS=$(ours "$CAP" | wc -l)
SURI_ALERTS=$(wc -l <"$TMP/suri-cpu/eve.json")
PKTS=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' "$CAP.report" 2>/dev/null | head -1)
echo
echo "== CPU on $CAP ($(($(stat -c %s "$CAP") / 1048576)) MiB${PKTS:+, $PKTS packets}), best of 3"
printf '%-62s %8s %8s\n' "run" "CPU s" "alerts"
printf '%-62s %8s %8s\n' "sensor replay --eve - | pipeline detect --eve - (both)" "$OURS" "$OURS_ALERTS"
printf '%-62s %8s %8s\n' "  of which sensor replay --eve /dev/null alone" "$SENSOR" "-"
printf '%-62s %8s %8s\n' "suricata -r --runmode single (rules of benches/suricata)" "$SURI" "$SURI_ALERTS"
awk -v o="$OURS" -v s="$SURI" 'BEGIN {printf "suricata CPU / (sensor + pipeline) CPU: %.2f (goal > 1: less CPU than Suricata for the same detections)\n", (o > 0 ? s / o : 0)}'
