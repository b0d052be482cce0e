#!/bin/bash
# Guest-side core test (run by scripts/vm/run-in-vm.sh; see tests/vm_initiator.rs):
# SendTargets discovery, login, SCSI identity (lsscsi, sg_inq pages, sg_readcap), an ext4 round
# trip with checksums across a remount, 20 s of fio random read/write with crc32c verification,
# logout. The target's first LUN is wiped. Ends with "CORE OK".
# Environment from run-in-vm.sh: PORTAL, INITIATOR_NAME. Optional (via --env):
#   EXPECT_IQN    [iqn.2026-11.io.palisade:default]  target name discovery must return
#   EXPECT_VENDOR [PALISADE]                          T10 vendor identification
#   EXPECT_BYTES  [1073741824]                        LUN capacity
#   FIO_SECONDS   [20]
set -euo pipefail

EXPECT_IQN=${EXPECT_IQN:-iqn.2026-11.io.palisade:default}
EXPECT_VENDOR=${EXPECT_VENDOR:-PALISADE}
EXPECT_BYTES=${EXPECT_BYTES:-1073741824}
FIO_SECONDS=${FIO_SECONDS:-20}

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }
t0=$(date +%s)

step "start iscsid ($INITIATOR_NAME)"
modprobe -a iscsi_tcp sd_mod sg ext4
iscsid

step "SendTargets discovery at $PORTAL"
disc=$(iscsiadm -m discovery -t sendtargets -p "$PORTAL")
echo "$disc"
# Each record: "ADDRESS:PORT,TPGT IQN" (RFC 7143 appendix C: TargetName + TargetAddress).
grep -qE "^[^ ]+:[0-9]+,[0-9]+ ${EXPECT_IQN//./\\.}\$" <<<"$disc" || fail "discovery did not return $EXPECT_IQN"
TARGET=$EXPECT_IQN
# The target reports its own listen address (127.0.0.1 on the host), unreachable from here:
# log in through a node record for the forwarded portal instead.
iscsiadm -m node -o delete
iscsiadm -m node -o new -T "$TARGET" -p "$PORTAL" >/dev/null

step "login to $TARGET"
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --login
DEV=
for _ in $(seq 100); do
    DEV=$(iscsiadm -m session -P3 | awk '/Attached scsi disk/ {print $4; exit}')
    [[ -n $DEV && -b /dev/$DEV ]] && break
    sleep 0.1
done
[[ -n $DEV && -b /dev/$DEV ]] || fail "no disk appeared"
NAME=$DEV
DEV=/dev/$DEV
echo "disk: $DEV"
iscsiadm -m session -P2 | grep -E 'Target:|Iface Initiatorname|HeaderDigest|DataDigest|MaxRecvDataSegmentLength|FirstBurstLength|MaxBurstLength|ImmediateData|InitialR2T' || true

step "lsscsi / sg_inq / sg_readcap"
lsscsi -t
lsscsi
lsscsi | grep -q "disk *$EXPECT_VENDOR" || fail "lsscsi does not show a $EXPECT_VENDOR disk"
inq=$(sg_inq "$DEV")
echo "$inq"
vendor=$(awk -F': *' '/Vendor identification/ {print $2}' <<<"$inq" | sed 's/ *$//')
[[ $vendor == "$EXPECT_VENDOR" ]] || fail "vendor '$vendor' != '$EXPECT_VENDOR'"
grep -q 'Peripheral device type: disk' <<<"$inq" || fail "not a disk"
sn=$(sg_inq -p 0x80 "$DEV")
echo "$sn"
serial=$(awk -F': *' '/^ *Unit serial number:/ {print $2; exit}' <<<"$sn" | sed 's/ *$//')
[[ -n $serial ]] || fail "empty unit serial number"
# The kernel read page 0x80 itself at scan time (sysfs vpd_pg80): both must agree.
if [[ -r /sys/block/$NAME/device/vpd_pg80 ]]; then
    kserial=$(tail -c +5 "/sys/block/$NAME/device/vpd_pg80" | tr -d '\0' | sed 's/^ *//; s/ *$//')
    echo "kernel vpd_pg80 serial: '$kserial'"
    [[ $kserial == "$serial" ]] || fail "serial from sg_inq '$serial' != kernel's '$kserial'"
fi
di=$(sg_inq -p 0x83 "$DEV")
echo "$di"
grep -q 'designator_type: NAA' <<<"$di" || fail "no NAA designator in page 0x83"
# The kernel builds the disk's WWID from page 0x83, preferring NAA: it must have found one.
if [[ -r /sys/block/$NAME/device/wwid ]]; then
    wwid=$(cat /sys/block/$NAME/device/wwid)
    echo "kernel wwid: $wwid"
    [[ $wwid == naa.* ]] || fail "kernel wwid '$wwid' is not NAA-based"
fi
cap=$(sg_readcap -l "$DEV")
echo "$cap"
grep -q "Logical block length=512 bytes" <<<"$cap" || fail "block length is not 512"
grep -q "Device size: $EXPECT_BYTES bytes" <<<"$cap" || fail "device size is not $EXPECT_BYTES"
[[ $(( $(cat /sys/block/$NAME/size) * 512 )) -eq $EXPECT_BYTES ]] || fail "kernel sees $(cat /sys/block/$NAME/size) sectors"

step "ext4 round trip"
mkfs.ext4 -q -F "$DEV"
mkdir -p /mnt/t
mount "$DEV" /mnt/t
for i in 1 2 3 4; do
    head -c $((i * 3 * 1024 * 1024 + 123)) /dev/urandom >/mnt/t/file$i
done
mkdir -p /mnt/t/dir
for i in $(seq 50); do echo "small file $i $RANDOM" >/mnt/t/dir/s$i; done
(cd /mnt/t && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum) >/tmp/manifest
sync
umount /mnt/t
echo 3 >/proc/sys/vm/drop_caches
mount "$DEV" /mnt/t
(cd /mnt/t && sha256sum --quiet -c /tmp/manifest) || fail "checksum mismatch after remount"
echo "$(wc -l </tmp/manifest) files verified after remount"
umount /mnt/t

step "fio: ${FIO_SECONDS}s randrw 4k, iodepth 8, direct, crc32c verify"
fio_out=$(fio --name=core --filename="$DEV" --rw=randrw --bs=4k --direct=1 --ioengine=libaio \
    --iodepth=8 --size=64M --runtime="$FIO_SECONDS" --time_based --verify=crc32c \
    --verify_backlog=256 --verify_fatal=1 --eta=never --group_reporting 2>&1) || {
    echo "$fio_out"; fail "fio failed"; }
echo "$fio_out"
grep -q 'err= 0' <<<"$fio_out" || fail "fio reported an error"
grep -qiE 'verify: (bad|got)|verify failed|crc32c: wanted' <<<"$fio_out" && fail "fio verify errors"
echo "fio summary:"
grep -E '^ *(read|write): IOPS=' <<<"$fio_out"

step "logout"
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --logout
if iscsiadm -m session >/dev/null 2>&1; then fail "session still present after logout"; fi
echo "guest time: $(( $(date +%s) - t0 )) s"
echo "CORE OK"
