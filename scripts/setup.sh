#!/usr/bin/env bash
# Installs the Debian packages the project uses: the benchmark's peers and floor
# (ndpiReader, softflowd, tcpdump), GNU time for CPU accounting, and the export sinks' servers
# (clickhouse-server/-client, nats-server; the tests start them as child processes, no service
# is enabled). Idempotent.
set -euo pipefail
need=()
command -v ndpiReader >/dev/null 2>&1 || need+=(libndpi-bin)
command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
[ -x /usr/bin/time ] || need+=(time)
# Export sinks: real servers for the integration tests and the export benchmark.
[ -x /usr/sbin/clickhouse-server ] || command -v clickhouse-server >/dev/null 2>&1 || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
