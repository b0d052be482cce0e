#!/bin/bash
# Guest side of tests/vm_cluster_software.rs, dm-multipath: two iSCSI sessions to one Palisade
# LUN, one through each guest portal address (PORTAL, SECOND_PORTAL), form one multipath map
# with two paths. fio writes and verifies (crc32c, direct I/O) on the map while the second path
# is logged out and logged back in; fio must see no error, and the map's path count must go
# 2 -> 1 -> 2. Before that, ALUA (SPC-4 §5.15): the kernel's scsi_dh_alua handler must attach to
# both paths and find them active/optimized, multipath must pick the ALUA hardware handler and
# priorities, and sg_rtpg / sg_vpd show the target port group and each path's relative target
# port (the host runs the target on two portal groups, TPGT 1 and 2, one per guest address).
# Ends with "MULTIPATH OK".
# Environment from run-in-vm.sh: PORTAL, SECOND_PORTAL, INITIATOR_NAME.
set -euo pipefail
# multipath_iscsi_start (tests/guest/lib.sh)
. /run/palisade/lib.sh

FIO_SECONDS=${FIO_SECONDS:-90}
step() { printf '\n=== %s\n' "$*"; }
fail() {
    echo "FAIL: $*"
    multipath -ll 2>&1 || true
    dmesg | grep -iE 'multipath|device-mapper|iscsi|sd[a-z]' | tail -30
    exit 1
}
# Paths of the map as multipath -ll shows them ("H:C:T:L sdX MAJ:MIN state ...").
paths() { multipath -ll "$MAP" 2>/dev/null | grep -cE '[0-9]+:[0-9]+:[0-9]+:[0-9]+ +sd[a-z]+ ' || true; }
active_paths() { multipath -ll "$MAP" 2>/dev/null | grep -E '[0-9]+:[0-9]+:[0-9]+:[0-9]+ +sd[a-z]+ ' | grep -c 'active ready' || true; }
wait_paths() { # N: until the map has N active paths (multipathd reacts to udev events)
    local i
    for i in $(seq 600); do
        [[ $(paths) == "$1" && $(active_paths) == "$1" ]] && return 0
        sleep 0.2
    done
    fail "the map did not reach $1 active paths (has $(paths), $(active_paths) active)"
}
show_map() { echo "# multipath -ll"; multipath -ll "$MAP" | sed -E "s/\x1b\[[0-9;]*m//g" | sed 's/^/    /'; echo "paths: $(paths)"; }

step "iscsid and multipathd ($INITIATOR_NAME)"
multipath_iscsi_start

step "two sessions: $PORTAL and $SECOND_PORTAL"
TARGET=$(iscsiadm -m discovery -t sendtargets -p "$PORTAL" | awk 'NR == 1 {print $2}')
# Discovery answers with the target's host address, unreachable from here: node records are
# made for the two forwarded guest addresses.
iscsiadm -m node -o delete
for p in "$PORTAL" "$SECOND_PORTAL"; do
    iscsiadm -m node -o new -T "$TARGET" -p "$p" >/dev/null
    # Fail a lost path's commands over to the other path quickly.
    iscsiadm -m node -T "$TARGET" -p "$p" -o update -n node.session.timeo.replacement_timeout -v 5
    iscsiadm -m node -T "$TARGET" -p "$p" --login >/dev/null
done
iscsiadm -m session
udevadm settle --timeout=60
MAP=''
for _ in $(seq 300); do
    MAP=$(multipath -l -v1 2>/dev/null | head -1)
    [[ -n $MAP ]] && break
    multipath >/dev/null 2>&1 || true
    sleep 0.2
done
[[ -n $MAP ]] || fail "no multipath map"
wait_paths 2
show_map
DEV=/dev/mapper/$MAP
[[ -b $DEV ]] || fail "$DEV missing"

step "ALUA on both paths: scsi_dh_alua, access state, REPORT TARGET PORT GROUPS, VPD 83h"
map_text=$(multipath -ll "$MAP" | sed -E "s/\x1b\[[0-9;]*m//g")
grep -q "hwhandler='1 alua'" <<<"$map_text" || fail "multipath did not pick the ALUA hardware handler"
# multipath's alua prioritizer gives an active/optimized path priority 50.
grep -q "prio=50 status=active" <<<"$map_text" || fail "the path group is not active with ALUA priority 50"
echo "alua: map $MAP hwhandler='1 alua', path group prio=50 status=active"
RELATIVE_PORTS=()
for sd in $(grep -oE ' sd[a-z]+ ' <<<"$map_text"); do
    dh=$(cat "/sys/block/$sd/device/dh_state")
    state=$(cat "/sys/block/$sd/device/access_state")
    echo "alua: $sd dh_state=$dh access_state=$state"
    [[ $dh == alua ]] || fail "$sd: device handler is '$dh', not alua"
    [[ $state == active/optimized ]] || fail "$sd: access state '$state'"
    echo "# sg_vpd -p di /dev/$sd"
    sg_vpd -p di "/dev/$sd" | tee "/tmp/vpd-$sd.txt" | sed 's/^/    /'
    grep -qE 'Target port group: 0x0*1$' "/tmp/vpd-$sd.txt" || fail "$sd: VPD 83h target port group is not 1"
    port=$(sed -nE 's/.*Relative target port: (0x[0-9a-f]+)$/\1/p' "/tmp/vpd-$sd.txt")
    [[ -n $port ]] || fail "$sd: no relative target port designator"
    RELATIVE_PORTS+=("$((port))")
    echo "# sg_rtpg -d /dev/$sd"
    sg_rtpg -d "/dev/$sd" | tee "/tmp/rtpg-$sd.txt" | sed 's/^/    /'
    grep -qiE 'target port group id *: *0x0*1\b' "/tmp/rtpg-$sd.txt" || fail "$sd: RTPG lacks group 1"
    grep -qiE 'access state *: *0x00.*active/optimized' "/tmp/rtpg-$sd.txt" || fail "$sd: RTPG state"
    grep -qiE 'target port count *: *0*2$' "/tmp/rtpg-$sd.txt" || fail "$sd: RTPG does not list both ports"
done
ports_seen=$(printf '%s\n' "${RELATIVE_PORTS[@]}" | sort -n | tr '\n' ' ')
echo "alua: relative target ports of the paths: $ports_seen"
[[ $ports_seen == "1 2 " ]] || fail "the two paths are not relative target ports 1 and 2"

step "fio on $DEV (randwrite 4k, direct, crc32c verify) for $FIO_SECONDS s while a path goes away and comes back"
fio --name=multipath --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --size=64M --time_based --runtime="$FIO_SECONDS" --verify=crc32c --verify_backlog=32 --verify_fatal=1 \
    --verify_dump=1 --eta=never --output=/tmp/fio.txt &
FIO=$!
sleep 10
kill -0 $FIO 2>/dev/null || { cat /tmp/fio.txt; fail "fio ended early"; }
echo "# iscsiadm -m node -T $TARGET -p $SECOND_PORTAL --logout"
iscsiadm -m node -T "$TARGET" -p "$SECOND_PORTAL" --logout | sed 's/^/    /'
wait_paths 1
show_map
sleep 10
kill -0 $FIO 2>/dev/null || { cat /tmp/fio.txt; fail "fio ended while the map had one path"; }
echo "# iscsiadm -m node -T $TARGET -p $SECOND_PORTAL --login"
iscsiadm -m node -T "$TARGET" -p "$SECOND_PORTAL" --login | sed 's/^/    /'
wait_paths 2
show_map
kill -0 $FIO 2>/dev/null || { cat /tmp/fio.txt; fail "fio ended before the path came back"; }
echo "fio still running with both paths back"
rc=0
wait $FIO || rc=$?
cat /tmp/fio.txt
((rc == 0)) || fail "fio exited $rc"
grep -qE 'err= *0' /tmp/fio.txt || fail "fio reports errors"
# verify_backlog reads back what was written: its reads are the verified blocks.
read -r READS WRITES < <(sed -nE 's/.*issued rwts: total=([0-9]+),([0-9]+),.*/\1 \2/p' /tmp/fio.txt) || true
((${READS:-0} > 0 && ${WRITES:-0} > 0)) || fail "fio verified nothing (reads ${READS:-?}, writes ${WRITES:-?})"
echo "fio: $(grep -oE 'err= *[0-9]+' /tmp/fio.txt | head -1), $WRITES blocks written, $READS verified by crc32c"

step "cleanup"
multipath -F >/dev/null 2>&1 || true
iscsiadm -m node --logoutall=all >/dev/null
echo "MULTIPATH OK"
