#!/usr/bin/env bash
# Shows that two sensor binaries write the same EVE output, byte for byte: replays every capture
# in testdata-pcaps/ and every capture in the real-capture set (REAL_PCAPS, default
# /work/shared/pcaps/real; skipped when absent) with each binary, one worker, and compares the
# EVE files and exit codes. For restructures that must not change behaviour.
#
#   scripts/eve-identical.sh OLD_SENSOR NEW_SENSOR
#
# Prints one line per capture and `identical N of M`; exits 1 on any difference.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 OLD_SENSOR NEW_SENSOR" >&2
  exit 2
fi
old=$(realpath "$1")
new=$(realpath "$2")
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
real=${REAL_PCAPS:-/work/shared/pcaps/real}

captures=()
while IFS= read -r f; do captures+=("$f"); done < <(find testdata-pcaps -type f \( -name '*.pcap' -o -name '*.pcapng' \) | sort)
if [ -d "$real" ]; then
  while IFS= read -r f; do captures+=("$f"); done < <(find "$real" -maxdepth 1 -type f \( -name '*.pcap' -o -name '*.pcapng' \) | sort)
else
  echo "($real absent: real captures skipped)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Replays FILE with BINARY into OUT; prints the exit code (a capture the sensor refuses must be
# refused by both binaries alike).
replay() {
  local bin=$1 file=$2 out=$3 rc=0
  "$bin" replay "$file" --workers 1 --quiet --eve "$out" >/dev/null 2>&1 || rc=$?
  echo "$rc"
}

same=0
total=0
for f in "${captures[@]}"; do
  total=$((total + 1))
  rc_old=$(replay "$old" "$f" "$work/old.eve")
  rc_new=$(replay "$new" "$f" "$work/new.eve")
  touch "$work/old.eve" "$work/new.eve"
  lines=$(wc -l <"$work/old.eve")
  if [ "$rc_old" = "$rc_new" ] && cmp -s "$work/old.eve" "$work/new.eve"; then
    same=$((same + 1))
    printf 'identical  %6s lines  rc %s  %s\n' "$lines" "$rc_old" "$f"
  else
    printf 'DIFFERENT  rc %s/%s  %s: %s\n' "$rc_old" "$rc_new" "$f" \
      "$(cmp "$work/old.eve" "$work/new.eve" 2>&1 | head -1 || true)"
  fi
  rm -f "$work/old.eve" "$work/new.eve"
done
echo "identical $same of $total"
[ "$same" -eq "$total" ]
