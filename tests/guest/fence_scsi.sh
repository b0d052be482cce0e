#!/bin/bash
# Guest side of tests/vm_cluster_software.rs, fence_scsi: the real Pacemaker fence agent
# (fence-agents' fence_scsi, see scripts/vm/build-image.sh) fences a node through Palisade's
# persistent reservations. Two cluster nodes = two initiator identities in this guest: two
# open-iscsi iface records, two sessions, one /dev/sdX each for the same LUN. fence_scsi keeps
# the local node's key in /var/run/cluster.key, so each node runs in its own mount namespace
# with its own /run. Ends with "FENCE_SCSI OK".
# Environment from run-in-vm.sh: PORTAL, INITIATOR_NAME, SECOND_INITIATOR_NAME.
set -euo pipefail
# two_node_sessions (tests/guest/lib.sh)
. /run/palisade/lib.sh

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }
# node NAME CMD...: CMD as cluster node NAME (its own /run, so its own fence_scsi key file).
node() {
    local n=$1
    shift
    mkdir -p "/root/run-$n"
    unshare -m --propagation private sh -c 'mount --bind "$0" /run && exec "$@"' "/root/run-$n" "$@"
}
# fence NAME ARGS...: fence_scsi as node NAME, echoing the command line and its output.
fence() {
    local n=$1 rc=0
    shift
    echo "[node-$n]# fence_scsi $*"
    node "$n" fence_scsi "$@" 2>&1 | sed "s/^/    /" || rc=$?
    echo "    (exit $rc)"
    return "$rc"
}
write_block() { dd if=/dev/urandom of="$1" bs=4096 count=1 seek=100 oflag=direct status=none; }
expect_write_ok() {
    write_block "$1" || fail "node $2: write failed"
    echo "node $2: write to $1 succeeded"
}
expect_write_conflict() {
    local err raw
    if err=$(write_block "$1" 2>&1); then fail "node $2: write to $1 succeeded while fenced"; fi
    echo "node $2: write to $1 failed: $err"
    [[ $err == *"Invalid exchange"* ]] || fail "node $2: expected EBADE (Invalid exchange), got: $err"
    # The SCSI status itself: WRITE(10) of one block through SG_IO.
    raw=$(sg_raw -s 512 -i /dev/zero "$1" 2a 00 00 00 00 64 00 00 01 00 2>&1 || true)
    echo "node $2: sg_raw WRITE(10): $(grep -i 'status' <<<"$raw" | xargs)"
    grep -qi 'SCSI Status: Reservation Conflict' <<<"$raw" || fail "node $2: no RESERVATION CONFLICT status: $raw"
}
keys() { sg_persist --in --read-keys "$1" | awk '$1 ~ /^0x/ {print $1}' | sort | xargs; }

two_node_sessions
# Start clean: no registration left from an earlier run against the same target.
[[ -z $(keys "$DA") ]] || fail "registrations present at start: $(keys "$DA")"

KA=a1a1 KB=b2b2
step "unfence (on): each node registers its key, the first one reserves Write Exclusive Registrants Only"
fence a --devices="$DA" --key=$KA --action=on || fail "fence_scsi on for node A"
fence b --devices="$DB" --key=$KB --action=on || fail "fence_scsi on for node B"
echo "registered keys: $(keys "$DA")"
[[ $(keys "$DA") == "0x$KA 0x$KB" ]] || fail "keys after on: $(keys "$DA")"
res=$(sg_persist --in --read-reservation "$DB")
echo "$res" | sed 's/^/    /'
grep -q "Key=0x$KA" <<<"$res" && grep -qi 'Write Exclusive, registrants only' <<<"$res" ||
    fail "no WERO reservation by node A"

step "status of both nodes"
fence a --devices="$DA" --key=$KA --action=status || fail "node A not ON"
fence a --devices="$DA" --key=$KB --action=status || fail "node B not ON"
expect_write_ok "$DA" A
expect_write_ok "$DB" B

step "node A fences node B (off)"
fence a --devices="$DA" --key=$KB --action=off || fail "fence_scsi off against node B"
echo "registered keys: $(keys "$DA")"
[[ $(keys "$DA") == "0x$KA" ]] || fail "node B's key still registered: $(keys "$DA")"
rc=0
fence a --devices="$DA" --key=$KB --action=status || rc=$?
((rc == 2)) || fail "status of node B: exit $rc, want 2 (OFF)"
# The preempted nexus gets a unit attention first (REGISTRATIONS PREEMPTED); fence_scsi's own
# TEST UNIT READY does the same before its commands.
sg_turs "$DB" >/dev/null 2>&1 || true
expect_write_conflict "$DB" B
expect_write_ok "$DA" A

step "node B is unfenced again (on) and may write"
fence b --devices="$DB" --key=$KB --action=on || fail "fence_scsi on for node B after fencing"
fence a --devices="$DA" --key=$KB --action=status || fail "node B not ON after unfencing"
[[ $(keys "$DA") == "0x$KA 0x$KB" ]] || fail "keys after unfencing: $(keys "$DA")"
expect_write_ok "$DB" B
expect_write_ok "$DA" A

step "cleanup: clear the registrations, log out"
# udev may still be probing the disks; logging out under it only produces I/O error noise.
udevadm settle --timeout=30 || true
sg_persist --out --clear --param-rk=0x$KA "$DA" >/dev/null
iscsiadm -m node --logoutall=all >/dev/null
echo "FENCE_SCSI OK"
