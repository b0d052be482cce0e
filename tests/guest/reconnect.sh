#!/bin/bash
# Guest side of tests/vm_reconnect.rs (run by scripts/vm/run-in-vm.sh): log in with a
# long replacement timeout, print "FIO RUNNING", then write 64 MiB with fio (crc32c verify
# headers) and read it all back verified. The host restarts the target (SIGTERM, start again on
# the same port and data) a few seconds after the marker; the kernel initiator must recover the
# session by itself (ERL 0 session recovery) and fio must find no error and no corruption.
# Ends with "RECONNECT OK". Environment from run-in-vm.sh: PORTAL, INITIATOR_NAME.
set -euo pipefail
TARGET=${EXPECT_IQN:-iqn.2026-11.io.palisade:default}
FIO_SIZE=${FIO_SIZE:-64M}

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*"; dmesg | grep -iE 'iscsi|connection|session|sd ' | tail -40; exit 1; }
t0=$(date +%s)

modprobe -a iscsi_tcp sd_mod sg
iscsid
iscsiadm -m node -o delete || true
iscsiadm -m node -o new -T "$TARGET" -p "$PORTAL" >/dev/null
# ERL 0 session recovery: the kernel keeps SCSI commands queued for up to 120 s while iscsid
# logs in again (set explicitly; a short per-attempt login timeout retries quickly).
iscsiadm -m node -T "$TARGET" -p "$PORTAL" -o update -n node.session.timeo.replacement_timeout -v 120
iscsiadm -m node -T "$TARGET" -p "$PORTAL" -o update -n node.conn[0].timeo.login_timeout -v 5

step "login"
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --login
DEV=
for _ in $(seq 100); do
    DEV=$(iscsiadm -m session -P3 | awk '/Attached scsi disk/ {print $4; exit}')
    [[ -n $DEV && -b /dev/$DEV ]] && break
    sleep 0.1
done
[[ -n $DEV && -b /dev/$DEV ]] || fail "no disk appeared"
DEV=/dev/$DEV
echo "disk: $DEV"
iscsiadm -m session -P1 | grep -E 'Target:|SID|iSCSI Session State|Internal iscsid Session State' || true

step "fio: write $FIO_SIZE with crc32c headers, then verify it all (target restarts meanwhile)"
echo "FIO RUNNING"
fio_out=$(fio --name=reconnect --filename="$DEV" --rw=write --bs=64k --direct=1 --ioengine=libaio \
    --iodepth=4 --size="$FIO_SIZE" --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --eta=never 2>&1) || { echo "$fio_out"; fail "fio failed"; }
echo "$fio_out" | grep -E 'err=|IOPS=|verify' || true
grep -q 'err= 0' <<<"$fio_out" || { echo "$fio_out"; fail "fio reported an error"; }
grep -qiE 'verify: (bad|got)|verify failed|crc32c: wanted' <<<"$fio_out" && fail "fio verify errors"
echo "FIO VERIFIED"

step "second read-back pass after the restart (fio --verify_only)"
ver_out=$(fio --name=reconnect --filename="$DEV" --rw=write --bs=64k --direct=1 --ioengine=libaio \
    --iodepth=4 --size="$FIO_SIZE" --verify=crc32c --verify_only --verify_fatal=1 --eta=never 2>&1) || {
    echo "$ver_out"; fail "verify-only pass failed"; }
grep -q 'err= 0' <<<"$ver_out" || { echo "$ver_out"; fail "verify-only pass reported an error"; }
echo "VERIFY-ONLY PASS OK"

step "kernel and iscsid view of the recovery"
dmesg | grep -iE 'iscsi|connection[0-9]|session recovery|detected conn error' | tail -20 || true
iscsiadm -m session -P1 | grep -E 'iSCSI Session State|Internal iscsid Session State|iSCSI Connection State' || true
iscsiadm -m session -P1 | grep -q 'iSCSI Session State: LOGGED_IN' || fail "session not logged in at the end"

step "logout"
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --logout
echo "guest time: $(( $(date +%s) - t0 )) s"
echo "RECONNECT OK"
