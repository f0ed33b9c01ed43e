#!/usr/bin/env bash
# Enrichment benchmark: what GeoIP/ASN/networks enrichment costs, against peers measured in the
# same run.
#
# Usage: benches/enrich.sh [--short]
#
#   (default)  4,000,000 lookups per row; a 600,000-flow capture, best of 3 replays each way.
#   --short    1,000,000 lookups; a 150,000-flow capture, best of 3 (the CI mode, under a minute
#              once built).
#
# Steps:
#   1. cargo build --release (sensor, pcapgen, pipeline-enrich's lookup_bench example);
#   2. lookups: `lookup_bench ../shared/mmdb N`: lookups per CPU-second of the enrich API
#      (City + ASN + networks, one snapshot) against bare `maxminddb` (lookup + decode of
#      geoip2::City and geoip2::Asn, the crate's documented way) on the same shuffled addresses
#      (one in every network of both test databases, and as many random IPv4 addresses);
#      then the reload latency: a new database renamed into place until lookups see it, with
#      the default 1 s poll;
#   3. exporter: `pcapgen geo --flows F` (DNS, HTTP and TLS flows between addresses of the test
#      databases), replayed with one worker and EVE to a file, without enrichment and with
#      `--geoip-db --asn-db --networks`; CPU-s (user+sys of the whole process) of each, their
#      ratio, and the added CPU per EVE record.
#
# Needs ../shared/mmdb (skips with a message when absent). Exit status: 0 whatever the figures
# are; 1 if the build fails.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

LOOKUPS=4000000; FLOWS=600000; REPS=3
if [ "${1:-}" = "--short" ]; then LOOKUPS=1000000; FLOWS=150000; REPS=3; fi
MMDB=../shared/mmdb
if [ ! -f "$MMDB/GeoLite2-City-Test.mmdb" ]; then
    echo "enrich bench: $MMDB is absent, skipping"
    exit 0
fi

cargo build --release -q --workspace --bin sensor --bin pcapgen
cargo build --release -q -p pipeline-enrich --example lookup_bench
BIN=target/release

echo "== lookups (enrich API vs bare maxminddb, same addresses, same run)"
"$BIN/examples/lookup_bench" "$MMDB" "$LOOKUPS"

mkdir -p benches/work
CAP=benches/work/geo-$FLOWS.pcap
[ -s "$CAP" ] || "$BIN/pcapgen" geo --flows "$FLOWS" --out "$CAP" >/dev/null
NETS=benches/work/enrich-networks.csv
printf '10.0.0.0/8,corp,clients,hq\n1.0.0.0/24,anycast-dns,dns,edge\n2001:218::/32,jp,clients,tokyo\n' >"$NETS"
EVE=benches/work/enrich-eve.json

# CPU seconds (user+sys) of one replay, from GNU time.
cpu_of() {
    local out
    out=$( { /usr/bin/time -f '%U %S' "$BIN/sensor" replay "$CAP" --workers 1 --quiet \
        --eve "$EVE" "$@" 2>&1 >/dev/null; } | tail -1)
    awk '{printf "%.3f", $1 + $2}' <<<"$out"
}
best() { sort -n | head -1; }

if [ ! -x /usr/bin/time ]; then
    echo "enrich bench: /usr/bin/time missing (Debian package time; scripts/setup.sh), skipping the replay part"
    exit 0
fi
echo "== exporter: replay of $CAP ($FLOWS flows), one worker, EVE to a file, best of $REPS"
PLAIN=(); ENR=()
for _ in $(seq "$REPS"); do
    PLAIN+=("$(cpu_of)")
    ENR+=("$(cpu_of --geoip-db "$MMDB/GeoLite2-City-Test.mmdb" --asn-db "$MMDB/GeoLite2-ASN-Test.mmdb" --networks "$NETS")")
done
RECORDS=$(wc -l <"$EVE")
P=$(printf '%s\n' "${PLAIN[@]}" | best)
E=$(printf '%s\n' "${ENR[@]}" | best)
grep -q '"src_country"' "$EVE" || echo "WARNING: the enriched run wrote no src_country"
printf '%-34s %10s\n' "run" "CPU-s"
printf '%-34s %10s   (runs: %s)\n' "replay, no enrichment" "$P" "${PLAIN[*]}"
printf '%-34s %10s   (runs: %s)\n' "replay, geoip+asn+networks" "$E" "${ENR[*]}"
awk -v p="$P" -v e="$E" -v r="$RECORDS" 'BEGIN {
    printf "FIGURE replay_cpu_ratio_enriched_over_plain %.3f\n", e / p;
    printf "FIGURE added_cpu_per_record_ns %.0f (%d EVE records)\n", (e - p) * 1e9 / r, r }'
rm -f "$EVE"
