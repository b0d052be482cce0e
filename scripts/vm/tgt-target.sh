#!/usr/bin/env bash
# A private tgt (Linux SCSI target user-space daemon) on one loopback port, to check that a VM
# guest script or a test fails because of the target under test and not because of itself
# (docs/testing.md, "Validating the harness itself"); also the peer of capture-fixtures.sh.
#
#   scripts/vm/tgt-target.sh start STATE_DIR PORT [SIZE_MIB=256] [IQN]   tgtd + target 1, LUN 1
#   scripts/vm/tgt-target.sh stop STATE_DIR                              stop that tgtd only
#
# tgt's LUN 0 is its controller, so the disk is LUN 1. No systemd: the daemon's PID is kept in
# STATE_DIR and only that PID is ever signalled.
set -euo pipefail

usage() { echo "usage: $0 start STATE_DIR PORT [SIZE_MIB] [IQN] | stop STATE_DIR" >&2; exit 2; }
(($# >= 2)) || usage
action=$1 state=$2

case $action in
start)
    (($# >= 3)) || usage
    port=$3 size=${4:-256} iqn=${5:-iqn.2026-11.io.palisade.test:tgt}
    if ! command -v tgtd >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends tgt >&2
    fi
    mkdir -p "$state"
    truncate -s "${size}M" "$state/lun1.img"
    # -C PORT: a management channel of our own, so a system tgtd (channel 0) is never touched.
    tgtd -f -C "$port" --iscsi "portal=127.0.0.1:$port" >"$state/tgtd.log" 2>&1 &
    echo $! >"$state/tgtd.pid"
    tgtadm_() { tgtadm -C "$port" --lld iscsi "$@"; }
    ready=0
    for _ in $(seq 100); do
        if tgtadm_ --mode target --op show >/dev/null 2>&1; then ready=1; break; fi
        sleep 0.1
    done
    ((ready)) || { cat "$state/tgtd.log" >&2; echo "tgt-target: tgtd did not come up" >&2; exit 1; }
    tgtadm_ --mode target --op new --tid 1 --targetname "$iqn"
    tgtadm_ --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$state/lun1.img"
    tgtadm_ --mode target --op bind --tid 1 --initiator-address ALL
    echo "tgt-target: tgtd $(cat "$state/tgtd.pid") serves $iqn (LUN 1, $size MiB) on 127.0.0.1:$port" >&2
    ;;
stop)
    [[ -f $state/tgtd.pid ]] || exit 0
    pid=$(cat "$state/tgtd.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
    rm -f "$state/tgtd.pid"
    ;;
*) usage ;;
esac
