#!/usr/bin/env bash
# install-deps.sh — everything the test suite needs on a Debian 12 machine that has only Rust,
# idempotent and non-interactive; fast (no apt at all) when everything is already there.
#   * etcd-server: the `etcd` binary; tests/cluster.rs starts three members on loopback
#   * libiscsi-bin: iscsi-test-cu, iscsi-ls, iscsi-inq, iscsi-readcapacity16 (client + conformance tests)
#   * bc, python3: the conformance run and its result parser
#   * tgt, istgt: peer targets the comparison tests start on loopback
#   * mount, util-linux: losetup, lsblk, blockdev for the disk rows of scripts/compare-peers.sh and
#     scripts/slow-disk-isolation.sh (loop devices; usually there already)
#   * the VM harness (scripts/vm/build-image.sh): QEMU, socat, debootstrap and the cached Debian
#     guest image for the VM tests (a no-op when the cached image matches the sources)
# Runs apt and the image build as root (directly, or through sudo).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(libiscsi-bin bc python3 tgt istgt etcd-server mount util-linux)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

command -v cargo >/dev/null || { echo "install-deps: cargo not found; install Rust first" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  as_root apt-get update -qq
  # policy-rc.d 101: the tgt/istgt packages must not start system-wide daemons on 0.0.0.0:3260;
  # the tests start their own instances on loopback ports.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 0755 $policy"
    trap 'as_root rm -f "$policy"' EXIT
  fi
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
else
  echo "install-deps: packages present (${PACKAGES[*]})"
fi

# The image goes into the cache of the user who runs the tests, also when built through sudo
# (whose HOME is root's).
export PALISADE_VM_CACHE="${PALISADE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade-vm}"
as_root env PALISADE_VM_CACHE="$PALISADE_VM_CACHE" bash "$REPO/scripts/vm/build-image.sh" </dev/null
echo "install-deps: VM image $(bash "$REPO/scripts/vm/build-image.sh" --print-dir)"
