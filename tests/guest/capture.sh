#!/bin/bash
# Guest-side session for scripts/capture-fixtures.sh: the Linux open-iscsi initiator does
# SendTargets discovery, logs in, identifies the disk, writes and reads back 64 KiB with
# O_DIRECT, and logs out. Short on purpose: its PDUs become fixtures/pdus/open-iscsi/.
set -euo pipefail
iscsiadm --version
modprobe -a iscsi_tcp sd_mod sg
iscsid
iscsiadm -m discovery -t sendtargets -p "$PORTAL"
TARGET=$(iscsiadm -m node | awk 'NR == 1 {print $2}')
iscsiadm -m node -o delete
iscsiadm -m node -o new -T "$TARGET" -p "$PORTAL" >/dev/null
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --login
DEV=
for _ in $(seq 100); do
    DEV=$(iscsiadm -m session -P3 | awk '/Attached scsi disk/ {print $4; exit}')
    [[ -n $DEV && -b /dev/$DEV ]] && break
    sleep 0.1
done
[[ -n $DEV && -b /dev/$DEV ]] || { echo "no disk"; exit 1; }
sg_inq /dev/$DEV >/dev/null
sg_readcap /dev/$DEV
head -c 65536 /dev/urandom >/tmp/pattern
dd if=/tmp/pattern of=/dev/$DEV bs=64k count=1 oflag=direct seek=16 status=none
dd if=/dev/$DEV of=/tmp/back bs=64k count=1 iflag=direct skip=16 status=none
cmp /tmp/pattern /tmp/back
sg_turs /dev/$DEV
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --logout
echo "CAPTURE SESSION OK"
