#!/usr/bin/env bash
# Makes /dev/null the null device again when it is a regular file.
#
# On these machines /dev/null has been found as a regular file. Every process that "discards"
# output into it then writes there, and every process that reads it gets that text back. Cargo
# runs its target probe (`rustc - --print=cfg ...`) with stdin from /dev/null; after a build
# script's feature probe had left its error[E0554] text in the file, rustc compiled that text and
# failed, and cargo stopped with "failed to run `rustc` to learn about target-specific
# information" (CI exit 101). The device is recreated (character device 1,3, mode 0666) and moved
# into place in one rename. Needs root (or sudo); without them it warns and goes on, since the
# build fails only when a probe's text is in the file at the wrong moment.
set -euo pipefail
[ -c /dev/null ] && exit 0
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo -n"
echo "dev-null.sh: /dev/null is not a character device ($(stat -c %F /dev/null 2>/dev/null || echo missing)); recreating it" >&2
tmp="/dev/.null.$$"
if $sudo_cmd mknod -m 0666 "$tmp" c 1 3 && $sudo_cmd mv -f "$tmp" /dev/null; then
  exit 0
fi
$sudo_cmd rm -f "$tmp" || true
echo "dev-null.sh: could not recreate /dev/null; builds may fail in cargo's target probe" >&2
