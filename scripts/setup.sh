#!/usr/bin/env bash
# Installs the Debian packages the project uses: the benchmark's peers and floor
# (ndpiReader, softflowd, tcpdump), GNU time for CPU accounting, what the live path builds
# and tests with (clang/llvm for the XDP program, the headers and tools libxdp-sys (xsk-rs)
# builds its bundled C with, iproute2 and ethtool for the veth tests), tshark (the accuracy
# oracle), and the export sinks' servers (clickhouse-server/-client, nats-server; the tests start
# them as child processes, no service is enabled), Suricata 7 from bookworm-backports (the
# community_id reference, below), Node.js, npm and Chromium for the console's web UI and its
# browser tests, and chdb-core from PyPI (below). Idempotent.
set -euo pipefail
bash "$(dirname "$0")/dev-null.sh"
need=()
for pkg in clang llvm libelf-dev zlib1g-dev libbpf-dev libpcap-dev m4 pkg-config make gcc binutils iproute2 ethtool; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v ndpiReader >/dev/null 2>&1 || need+=(libndpi-bin)
command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
[ -x /usr/bin/time ] || need+=(time)
# tshark: the oracle of the real-capture accuracy test (TLS ALPN, JA3 and DNS answers are
# compared with a live tshark run; wireshark-common asks a debconf question: noninteractive).
command -v tshark >/dev/null 2>&1 || need+=(tshark)
# Export sinks: real servers for the integration tests and the export benchmark.
[ -x /usr/sbin/clickhouse-server ] || command -v clickhouse-server >/dev/null 2>&1 || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
# The console benchmark drives ClickHouse's HTTP interface with curl.
command -v curl >/dev/null 2>&1 || need+=(curl)
# The console's browser side: Node.js and npm build it (TypeScript, esbuild); Chromium and
# ChromeDriver run its browser tests (pipeline/console/tests/browser.rs) headless.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
# Suricata 7 (bookworm-backports, 1:7.0.10): the reference for community_id
# (tests/community_id.rs runs `suricata -r` on the fixtures). The backports suite is added to
# apt's sources once, in a file of its own; nothing is installed from it but suricata.
if ! command -v suricata >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  src=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
      | $sudo_cmd tee "$src" >/dev/null
  fi
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq -t bookworm-backports suricata=1:7.0.10-\* \
    || $sudo_cmd apt-get install -y -qq -t bookworm-backports suricata
fi
# chdb-core: ClickHouse 26.9's SQL engine in process (Python), for the test that checks the
# schema variant for current servers; Debian packages only ClickHouse 18.16. Best effort: without
# it that one test skips with a message.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import chdb" 2>/dev/null; then
  python3 -m pip install -q chdb-core==26.9.0 2>/dev/null \
    || python3 -m pip install -q --break-system-packages chdb-core==26.9.0 2>/dev/null \
    || echo "setup.sh: could not install chdb-core; the current-ClickHouse schema test will skip" >&2
fi
# The console's web UI: packages from the npm registry at the versions of the committed
# package-lock.json (npm ci, only when the lock file changed since the last install), then
# type-checked and bundled into pipeline/console/web/dist, which `pipeline console` serves.
web=pipeline/console/web
if [ -f "$web/package-lock.json" ]; then
  if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd "$web" && npm run --silent build)
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
