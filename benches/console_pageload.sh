#!/usr/bin/env bash
# Page load -> first drawn chart of the NOC console, in Debian's headless Chromium: starts the
# demo (scripts/demo.sh: ClickHouse and NATS filled from the captures spread over a day, and
# `pipeline console`), then loads Visualize over the last 24 hours N times through ChromeDriver
# (pipeline/console/examples/pageload.rs) and prints p50/p95 of the time to the first chart,
# with the graph query's own time from the same loads as the peer. Goal: under 2 s.
#
#   benches/console_pageload.sh           # 60 MB of traffic, 20 loads
#   benches/console_pageload.sh --short   # 20 MB, 5 loads (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bytes=60M runs=20
[ "${1:-}" = "--short" ] && bytes=20M runs=5
for bin in chromium chromedriver; do
  command -v "$bin" >/dev/null || { echo "console_pageload: $bin missing (scripts/setup.sh installs it)"; exit 1; }
done
# Everything is built before the demo starts, so its wait below is only for the servers.
cargo build --release -q --bin sensor --bin pcapgen --bin pipeline
cargo build --release -q -p pipeline-console --example pageload
ready=$(mktemp -u /tmp/console-pageload-ready.XXXXXX)
DEMO_BYTES=$bytes DEMO_READY_FILE=$ready bash scripts/demo.sh 2>/tmp/console-pageload-demo.log &
demo=$!
trap 'kill $demo 2>/dev/null || true; wait $demo 2>/dev/null || true; rm -f "$ready"' EXIT
for _ in $(seq 1 1200); do
  [ -f "$ready" ] && break
  kill -0 $demo 2>/dev/null || { echo "console_pageload: the demo stopped:"; tail -5 /tmp/console-pageload-demo.log; exit 1; }
  sleep 0.5
done
[ -f "$ready" ] || { echo "console_pageload: the demo was not ready after 10 minutes"; exit 1; }
url=$(sed -n 's/^url=//p' "$ready"); user=$(sed -n 's/^user=//p' "$ready"); password=$(sed -n 's/^password=//p' "$ready")
"${CARGO_TARGET_DIR:-target}/release/examples/pageload" --url "$url" --user "$user" --password "$password" --runs "$runs"
