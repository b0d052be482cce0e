#!/bin/bash
# Guest script (run-in-vm.sh, two initiator names): SCSI-3 persistent reservations through the
# Linux initiator and sg_persist, ending with Pacemaker fence_scsi's sequence. Each initiator is
# an open-iscsi iface record: two sessions = two I_T nexuses = two /dev/sdX for LUN 0.
set -euo pipefail

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }
write_ok() { dd if=/dev/zero of="$1" bs=4096 count=1 oflag=direct status=none; }
expect_write_ok() { write_ok "$1" || fail "$2 write failed"; echo "OK: $2 write succeeded"; }
expect_write_conflict() {
    local err
    if err=$(write_ok "$1" 2>&1); then fail "$2 write succeeded"; fi
    echo "OK: $2 write rejected: $err"
    { sg_raw -s 512 -i /dev/zero "$1" 2a 00 00 00 00 00 00 00 01 00 2>&1 || true; } | grep -i 'status' | tee /tmp/raw
    grep -qi 'reservation conflict' /tmp/raw || fail "$2: no RESERVATION CONFLICT status"
}
# fence_scsi sends TEST UNIT READY before PR commands to consume unit attentions.
tur() { sg_turs "$1" >/dev/null 2>&1 || sg_turs "$1" >/dev/null 2>&1 || true; }
expect_keys() { # DEV "expected keys, sorted"
    local got
    got=$(sg_persist --in --read-keys "$1" | awk '$1 ~ /^0x/ {print $1}' | sort | xargs)
    [[ "$got" == "$2" ]] || fail "keys: got '$got', want '$2'"
    echo "OK: keys $got"
}

A=$INITIATOR_NAME B=$SECOND_INITIATOR_NAME
step "iscsid, ifaces, login as $A and $B"
modprobe -a iscsi_tcp sd_mod sg
iscsid
declare -A NAME=([A]=$A [B]=$B)
for i in A B; do
    iscsiadm -m iface -I "if$i" -o new >/dev/null
    iscsiadm -m iface -I "if$i" -o update -n iface.initiatorname -v "${NAME[$i]}" >/dev/null
done
iscsiadm -m discovery -t sendtargets -p "$PORTAL" -I ifA -I ifB >/dev/null
TARGET=$(iscsiadm -m node | awk 'NR == 1 {print $2}')
iscsiadm -m node -o delete
for i in A B; do
    iscsiadm -m node -o new -T "$TARGET" -p "$PORTAL" -I "if$i" >/dev/null
    iscsiadm -m node -T "$TARGET" -p "$PORTAL" -I "if$i" --login >/dev/null
done
DA= DB=
for _ in $(seq 100); do
    eval "$(iscsiadm -m session -P3 | awk '/Iface Name:/ {i = $3}
        /Attached scsi disk/ {printf "D%s=/dev/%s\n", substr(i, 3), $4}')"
    [[ -b ${DA:-/nonexistent} && -b ${DB:-/nonexistent} ]] && break
    sleep 0.1
done
[[ -b ${DA:-/nonexistent} && -b ${DB:-/nonexistent} ]] || fail "disks missing"
echo "A=$DA B=$DB"
tur "$DA"; tur "$DB"

KA=0xaaaa KB=0xbbbb
step "register, reserve Exclusive Access (type 3), read keys / reservation / full status"
sg_persist --out --register --param-sark=$KA "$DA"
sg_persist --out --register --param-sark=$KB "$DB"
expect_keys "$DB" "$KA $KB"
sg_persist --out --reserve --param-rk=$KA --prout-type=3 "$DA"
sg_persist --in --read-reservation "$DB" | tee /tmp/res
grep -q "Key=$KA" /tmp/res || fail "reservation key not reported"
grep -qi 'Exclusive Access' /tmp/res || fail "reservation type not reported"
sg_persist --in --read-full-status "$DB" | tee /tmp/full
grep -q "$A" /tmp/full && grep -q "$B" /tmp/full || fail "full status lacks a TransportID"
grep -qi 'reservation holder' /tmp/full || fail "full status lacks the holder"
expect_write_ok "$DA" "A (holder)"
expect_write_conflict "$DB" "B (registered, not holder, type 3)"

step "B preempts and aborts A; A loses its registration"
sg_persist --out --preempt-abort --param-rk=$KB --param-sark=$KA --prout-type=3 "$DB"
expect_keys "$DB" "$KB"
tur "$DA"
expect_write_conflict "$DA" "A (preempted)"
expect_write_ok "$DB" "B (new holder)"

step "release and clear"
sg_persist --out --release --param-rk=$KB --prout-type=3 "$DB"
sg_persist --in --read-reservation "$DB" | tee /tmp/res
grep -qi 'no reservation' /tmp/res || fail "reservation still held after RELEASE"
sg_persist --out --clear --param-rk=$KB "$DB"
expect_keys "$DB" ""
tur "$DA"

step "fence_scsi: register each node's key on its path, reserve WERO, fence, unfence"
sg_persist --out --register-ignore --param-sark=$KA "$DA"
sg_persist --out --register-ignore --param-sark=$KB "$DB"
sg_persist --out --reserve --param-rk=$KA --prout-type=5 "$DA"
expect_write_ok "$DA" "node A (holder)"
expect_write_ok "$DB" "node B (registrant under WERO)"
tur "$DB"
sg_persist --out --preempt-abort --param-rk=$KB --param-sark=$KA --prout-type=5 "$DB"
tur "$DA"
expect_write_conflict "$DA" "fenced node A"
expect_write_ok "$DB" "node B"
# Unfence: the node registers again and may write (registrants only).
sg_persist --out --register-ignore --param-sark=$KA "$DA"
expect_write_ok "$DA" "unfenced node A"
expect_keys "$DB" "$KA $KB"

step "cleanup"
sg_persist --out --clear --param-rk=$KB "$DB"
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --logout >/dev/null
echo "PR OK"
