#!/usr/bin/env bash
# capture-fixtures.sh — record real iSCSI PDUs for the codec tests (fixtures/pdus/).
# Starts a private tgtd (scripts/peers/peers.sh, own state and port) on 127.0.0.1:PORT,
# captures loopback traffic with tshark while
#   (a) libiscsi clients talk to it: iscsi-ls -s, iscsi-inq (standard, VPD 0x00/0x80/0x83/0xb0,
#       an unsupported page -> CHECK CONDITION), iscsi-readcapacity16, and iscsi-test-cu runs
#       (its start-up probes, READ/WRITE(10) residual cases, ABORT TASK);
#   (b) the Linux open-iscsi initiator in the QEMU guest runs tests/guest/capture.sh
#       (discovery, login, inquiry, 64 KiB direct write + read, TUR, logout),
# then cuts the streams into PDUs with scripts/split_pdus.py. Needs root (capture on lo).
# Usage: scripts/capture-fixtures.sh [PORT]   (default 3290)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${1:-3290}"
IQN=iqn.2026-11.io.palisade:capture
WORK=$(mktemp -d /tmp/palisade-capture.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
command -v tshark >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends tshark </dev/null; }
bash "$REPO/scripts/install-deps.sh" >/dev/null

# A tgt of its own: its state and 64 MiB LUN file live in WORK, apart from the shared peers.
export PEERS_STATE="$WORK/peers" PEERS_DATA="$WORK" TGT_PORT="$PORT" TGT_IQN="$IQN" SIZE_MIB=64
cleanup() {
  [ -n "${CAP_PID:-}" ] && kill -INT "$CAP_PID" 2>/dev/null && wait "$CAP_PID" 2>/dev/null || true
  bash "$REPO/scripts/peers/peers.sh" stop tgt >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bash "$REPO/scripts/peers/peers.sh" start tgt
URL="$(bash "$REPO/scripts/peers/peers.sh" url tgt)"

capture() {  # capture NAME COMMAND... : run COMMAND while tshark records port PORT into WORK/NAME.pcap
  local name="$1"; shift
  tshark -i lo -f "tcp port $PORT" -w "$WORK/$name.pcap" -q 2>"$WORK/$name.tshark.log" &
  CAP_PID=$!
  for _ in $(seq 100); do grep -q "Capturing on" "$WORK/$name.tshark.log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.3
  "$@" >"$WORK/$name.out" 2>&1 || { echo "capture $name: command failed"; cat "$WORK/$name.out"; exit 1; }
  sleep 0.5
  kill -INT "$CAP_PID"; wait "$CAP_PID" 2>/dev/null || true; CAP_PID=
  echo "captured $name ($(stat -c %s "$WORK/$name.pcap") bytes)"
}

# Runs under `capture`'s `||`, where errexit is off: every step checks its own result.
libiscsi_session() {
  iscsi-ls -s "iscsi://127.0.0.1:$PORT" || return 1
  iscsi-inq "$URL" || return 1
  for page in 0 128 131 176; do iscsi-inq -e 1 -c "$page" "$URL" || return 1; done
  if iscsi-inq -e 1 -c 153 "$URL"; then  # unsupported VPD page: CHECK CONDITION expected
    echo "VPD page 0x99 was answered; a CHECK CONDITION was expected" >&2
    return 1
  fi
  iscsi-readcapacity16 "$URL"
}
cu() { iscsi-test-cu -d -i iqn.2026-11.io.palisade.test:capture -t "$1" "$URL"; }

capture libiscsi-clients libiscsi_session
capture libiscsi-residuals cu iSCSI.iSCSIResiduals.Read10Residuals,iSCSI.iSCSIResiduals.Write10Residuals
capture libiscsi-abort cu iSCSI.iSCSITMF.AbortTaskSimpleAsync
capture open-iscsi bash "$REPO/scripts/vm/run-in-vm.sh" --portal-port "$PORT" --timeout 300 "$REPO/tests/guest/capture.sh"
grep -q "CAPTURE SESSION OK" "$WORK/open-iscsi.out" || { cat "$WORK/open-iscsi.out"; exit 1; }

python3 "$REPO/scripts/split_pdus.py" "$REPO/fixtures/pdus/libiscsi" "$PORT" \
  clients="$WORK/libiscsi-clients.pcap" residuals="$WORK/libiscsi-residuals.pcap" abort="$WORK/libiscsi-abort.pcap"
python3 "$REPO/scripts/split_pdus.py" "$REPO/fixtures/pdus/open-iscsi" "$PORT" session="$WORK/open-iscsi.pcap"

{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "tshark=$(tshark --version | head -1)"
  echo "tgt=$(dpkg-query -W -f='${Version}' tgt)"
  echo "libiscsi-bin=$(dpkg-query -W -f='${Version}' libiscsi-bin)"
  echo "vm-image=$(grep -h '^kernel' "$(bash "$REPO/scripts/vm/build-image.sh" --print-dir)/BUILD-INFO" | tr '\n' ' ')"
  grep -h 'open-iscsi\|iscsiadm version' "$WORK/open-iscsi.out" | head -2 || true
} > "$REPO/fixtures/pdus/CAPTURE-INFO.txt"
find "$REPO/fixtures/pdus" -name '*.bin' -printf '%s\n' | awk '{ s += $1 } END { printf "fixtures: %d PDU files, %d bytes\n", NR, s }'
