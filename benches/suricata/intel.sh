#!/usr/bin/env bash
# Writes the threat intel of a Zeek Intel file (pipeline/cli/tests/data/intel.zeek's format)
# in the forms benches/suricata/detect.rules reads: IP reputation (category 1, "intel") and
# string datasets (one base64 value per line, as Suricata 7 loads them).
#
# Usage: benches/suricata/intel.sh INTEL.zeek OUTDIR
#   OUTDIR/intel-categories.txt, intel-reputation.list   ADDR indicators
#   OUTDIR/intel-domains.lst                              DOMAIN indicators
#   OUTDIR/intel-url-paths.lst                            the path part of URL indicators
#   OUTDIR/intel-ja3.lst, intel-ja4.lst                   JA3 / JA4 indicators
# and prints the `--set` options that declare the datasets and the reputation directory.
set -euo pipefail
in=$1 out=$2
mkdir -p "$out"
echo "1,intel,threat-intel indicators" >"$out/intel-categories.txt"
: >"$out/intel-reputation.list"
for f in domains url-paths ja3 ja4; do : >"$out/intel-$f.lst"; done
b64() { printf '%s' "$1" | base64 -w0; echo; }
while IFS=$'\t' read -r indicator kind _; do
    case "$kind" in
        Intel::ADDR) echo "$indicator,1,100" >>"$out/intel-reputation.list" ;;
        Intel::DOMAIN) b64 "$indicator" >>"$out/intel-domains.lst" ;;
        Intel::URL) b64 "/${indicator#*/}" >>"$out/intel-url-paths.lst" ;;
        Intel::JA3) b64 "$indicator" >>"$out/intel-ja3.lst" ;;
        Intel::JA4) b64 "$indicator" >>"$out/intel-ja4.lst" ;;
    esac
done < <(grep -v '^#' "$in")
dir=$(cd "$out" && pwd)
echo "--set default-reputation-path=$dir --set reputation-categories-file=$dir/intel-categories.txt"
for f in domains url-paths ja3 ja4; do
    echo "--set datasets.intel-$f.type=string --set datasets.intel-$f.load=$dir/intel-$f.lst"
done
