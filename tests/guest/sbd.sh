#!/bin/bash
# Guest side of tests/vm_cluster_software.rs, sbd: the STONITH Block Device daemon on a Palisade
# LUN. Two cluster nodes = two initiator identities in this guest (two open-iscsi iface records,
# one /dev/sdX each for the same LUN). The sbd header and node slots are written through node A's
# device and read through node B's and back; then node A runs `sbd watch` on the softdog watchdog
# and node B sends it a `reset` message through B's device, which makes node A's sbd reboot the
# guest. So this script never ends by itself when all goes well: run-in-vm.sh then exits 125
# (guest ended without a status) and the console shows sbd's log and the kernel's reset.
# Environment from run-in-vm.sh: PORTAL, INITIATOR_NAME, SECOND_INITIATOR_NAME.
set -euo pipefail
# two_node_sessions (tests/guest/lib.sh)
. /run/palisade/lib.sh

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }
run() { # echo a command as node NAME runs it, then its output, indented
    local n=$1
    shift
    echo "[node-$n]# $*"
    "$@" 2>&1 | sed 's/^/    /'
}

two_node_sessions

# sbd logs only to syslog: a tiny /dev/log reader copies its messages to the console and a file
# (only sbd's: udev's multipath rule logs noise on every disk event).
python3 -u -c '
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
while True:
    m = s.recv(8192).decode(errors="replace").split(">", 1)[-1].rstrip()
    if " sbd" not in m:
        continue
    print("syslog| " + m, flush=True)
    with open("/run/syslog.txt", "a") as f:
        f.write(m + "\n")
' &
for _ in $(seq 100); do [[ -S /dev/log ]] && break; sleep 0.1; done
[[ -S /dev/log ]] || fail "no /dev/log reader"

step "create the sbd header through node A's device, read it through node B's"
# Watchdog timeout generous for a TCG guest (10 s); `sbd message` waits msgwait (20 s) each time.
run a sbd -d "$DA" -1 10 -4 20 create
run b sbd -d "$DB" dump | tee /tmp/dump
grep -q 'Timeout (watchdog) *: 10' /tmp/dump || fail "node B does not see the header node A wrote"
grep -q 'Timeout (msgwait) *: 20' /tmp/dump || fail "msgwait not 20 in node B's view"

step "allocate the node slots, message and list across the two identities"
run a sbd -d "$DA" allocate node-a
run b sbd -d "$DB" allocate node-b
run b sbd -d "$DB" list | tee /tmp/list
grep -qP '^\s*0\tnode-a\tclear' /tmp/list && grep -qP '^\s*1\tnode-b\tclear' /tmp/list ||
    fail "node B does not list both slots clear"
run b sbd -d "$DB" -n node-b message node-a test
run a sbd -d "$DA" list | tee /tmp/list
grep -qP 'node-a\ttest\tnode-b' /tmp/list || fail "node A does not see node B's test message"
# A clear slot for the watcher below: it must act on the message sent later, not on this one.
run a sbd -d "$DA" -n node-a message node-a clear
run b sbd -d "$DB" list | tee /tmp/list
grep -qP '^\s*0\tnode-a\tclear\tnode-a' /tmp/list || fail "node B does not see node A's clear"

step "node A watches its slot with the softdog watchdog"
modprobe softdog
[[ -c /dev/watchdog ]] || fail "no /dev/watchdog after loading softdog"
echo "[node-a]# SBD_PACEMAKER=no SBD_SYNC_RESOURCE_STARTUP=no sbd -d $DA -n node-a -W -w /dev/watchdog -v watch"
# Without a cluster stack: only the disk servant decides (no Pacemaker health check).
SBD_PACEMAKER=no SBD_SYNC_RESOURCE_STARTUP=no sbd -d "$DA" -n node-a -W -w /dev/watchdog -v watch
for _ in $(seq 300); do
    grep -q 'node-a.*clear\|Monitoring\|servant.*started\|sbd_init_watchdog\|Using watchdog' /run/syslog.txt 2>/dev/null &&
        pgrep -f 'sbd: watcher' >/dev/null && break
    sleep 0.2
done
pgrep -fa sbd | sed 's/^/    /'
pgrep -f 'sbd: watcher' >/dev/null || fail "node A's sbd watcher is not running"
sleep 3

step "node B sends a test message to node A: its watcher reads it through node A's device"
run b sbd -d "$DB" -n node-b message node-a test
for _ in $(seq 150); do grep -q 'Received command test from node-b' /run/syslog.txt && break; sleep 0.2; done
grep -q 'Received command test from node-b' /run/syslog.txt || fail "node A's sbd did not log the test message"

step "node B sends reset to node A: node A's sbd must reboot this guest"
run b sbd -d "$DB" -n node-b message node-a reset
echo "SBD RESET SENT"
# The watcher acts within its loop timeout; still running after this means it did not.
sleep 120
fail "still alive 120 s after the reset message"
