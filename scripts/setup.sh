#!/usr/bin/env bash
# Installs the Debian packages the project uses: the benchmark's peers and floor
# (ndpiReader, softflowd, tcpdump) and GNU time for CPU accounting. Idempotent.
set -euo pipefail
need=()
command -v ndpiReader >/dev/null 2>&1 || need+=(libndpi-bin)
command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
[ -x /usr/bin/time ] || need+=(time)
# tshark: the oracle of the real-capture accuracy test (TLS ALPN, JA3 and DNS answers are
# compared with a live tshark run; wireshark-common asks a debconf question: noninteractive).
command -v tshark >/dev/null 2>&1 || need+=(tshark)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
