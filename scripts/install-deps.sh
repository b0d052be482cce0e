#!/usr/bin/env bash
# install-deps.sh — everything the test suite needs on a Debian 12 machine, idempotent and
# non-interactive; fast (no apt at all) when everything is already there.
#   * libiscsi-bin: iscsi-test-cu, iscsi-ls, iscsi-inq, iscsi-readcapacity16 (client + conformance tests)
#   * bc, python3: used by ../shared/peers/conformance.sh and its result parser
#   * the QEMU guest image for the VM tests: ../shared/vm-initiator/build-image.sh (installs QEMU,
#     debootstrap, socat itself; a no-op when its cache is present)
# Rust (cargo) must already be installed. Runs apt as root (directly, or through sudo).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_DIR:-$REPO/../shared}"
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(libiscsi-bin bc python3)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
else
  echo "install-deps: packages present (${PACKAGES[*]})"
fi

command -v cargo >/dev/null || { echo "install-deps: cargo not found; install Rust first" >&2; exit 1; }

[ -x "$SHARED/vm-initiator/build-image.sh" ] || { echo "install-deps: $SHARED/vm-initiator missing" >&2; exit 1; }
as_root bash "$SHARED/vm-initiator/build-image.sh" </dev/null
