#!/bin/bash
# Guest side of tests/vm_cluster_gateways.rs: the Linux kernel initiator with dm-multipath across
# two Palisade cluster gateways (docs/cluster.md), gateway 1 behind PORTAL and gateway 2 behind
# SECOND_PORTAL, both serving LUN 0 of one target from one shared file.
#
# 1. One session per gateway form one multipath map with two paths; scsi_dh_alua attaches to both
#    and finds them active/optimized; each gateway is its own target port group (SPC-4 §5.15):
#    REPORT TARGET PORT GROUPS through either path lists groups 1 and 2 with relative target
#    ports 0x0101 and 0x0201 (gateway_id * 256 + TPGT), VPD 83h names group 1 on one path and 2
#    on the other.
# 2. fio (randwrite 4k, direct, crc32c verify, verify_fatal) runs on the map while the HOST kills
#    gateway 1 with SIGKILL and later starts it again: the guest asks for both on its console
#    ("HOST: kill -9 gateway 1", "HOST: restart gateway 1"), the host test reads the console and
#    acts. The map's active paths go 2 -> 1 -> 2, fio must see no error. fio's per-I/O latency
#    log says how long I/O stalled when the gateway died.
# 3. Persistent reservations through either path (SPC-4 §5.13, one state per LU in the cluster):
#    REGISTER key 0x1 through gateway 1's path and 0x2 through gateway 2's; READ KEYS, READ
#    RESERVATION and READ FULL STATUS through each path answer the same, and READ FULL STATUS
#    names relative target ports 0x101 and 0x201.
# Ends with "CLUSTER MULTIPATH OK". Environment from run-in-vm.sh: PORTAL, SECOND_PORTAL,
# INITIATOR_NAME.
set -euo pipefail
# multipath_iscsi_start (tests/guest/lib.sh)
. /run/palisade/lib.sh

FIO_SECONDS=${FIO_SECONDS:-150}
step() { printf '\n=== %s\n' "$*"; }
fail() {
    echo "FAIL: $*"
    multipath -ll 2>&1 || true
    iscsiadm -m session -P1 2>&1 | grep -E 'Current Portal|SID|State' || true
    echo "# iscsid log (last lines)"
    tail -40 /tmp/iscsid.log 2>/dev/null || true
    echo "# dmesg after the logins (last lines)"
    dmesg | grep -vE '^\[ *[0-9]\.' | tail -60
    exit 1
}
path_lines() { multipath -ll "$MAP" 2>/dev/null | sed -E "s/\x1b\[[0-9;]*m//g" | grep -E '[0-9]+:[0-9]+:[0-9]+:[0-9]+ +sd[a-z]+ ' || true; }
paths() { path_lines | grep -c . || true; }
active_paths() { path_lines | grep -c 'active ready' || true; }
failed_paths() { path_lines | grep -c ' failed ' || true; }
wait_active() { # N: until N paths are active and dm-multipath has failed every other one
    local until=$((SECONDS + 180))
    while ((SECONDS < until)); do
        [[ $(active_paths) == "$1" && $(failed_paths) == $(($(paths) - $1)) ]] && return 0
        sleep 0.2
    done
    fail "the map did not reach $1 active paths (has $(paths), $(active_paths) active, $(failed_paths) failed)"
}
show_map() {
    echo "# multipath -ll"
    multipath -ll "$MAP" | sed -E "s/\x1b\[[0-9;]*m//g" | sed 's/^/    /'
    echo "active paths: $(active_paths) (of $(paths), $(failed_paths) failed)"
}
# "G STATE PORT" per relative target port of each group in `sg_rtpg -d` output.
rtpg_ports() {
    awk '/target port group id/ { g = $0; sub(/.*id *: *0x/, "", g); sub(/[ ,].*/, "", g); ports = 0; next }
        /asymmetric access state/ { s = $0; sub(/.*\(/, "", s); sub(/\).*/, "", s); next }
        /Relative target port ids/ { ports = 1; next }
        ports && /^ *0x[0-9a-fA-F]+ *$/ { print g, s, $1 }'
}

step "iscsid and multipathd ($INITIATOR_NAME)"
# iscsid's log kept (fail prints it): how it logs in again to a restarted gateway is part of
# what this test watches.
multipath_iscsi_start /tmp/iscsid.log

step "one session per gateway: $PORTAL (gateway 1) and $SECOND_PORTAL (gateway 2)"
TARGET=$(iscsiadm -m discovery -t sendtargets -p "$PORTAL" | awk 'NR == 1 {print $2}')
# Discovery answers with the gateways' host addresses, unreachable from here: node records are
# made for the two forwarded guest addresses.
iscsiadm -m node -o delete
for p in "$PORTAL" "$SECOND_PORTAL"; do
    iscsiadm -m node -o new -T "$TARGET" -p "$p" >/dev/null
    # A dead gateway's queued commands fail over to the other path after 5 s of session
    # recovery; iscsid keeps logging in again in the background (short login attempts).
    iscsiadm -m node -T "$TARGET" -p "$p" -o update -n node.session.timeo.replacement_timeout -v 5
    iscsiadm -m node -T "$TARGET" -p "$p" -o update -n 'node.conn[0].timeo.login_timeout' -v 5
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
wait_active 2
[[ $(paths) == 2 ]] || fail "the map has $(paths) paths, not 2"
[[ $(multipath -l -v1 | grep -c .) == 1 ]] || fail "more than one multipath map: $(multipath -l -v1)"
show_map
DEV=/dev/mapper/$MAP
[[ -b $DEV ]] || fail "$DEV missing"

step "ALUA: scsi_dh_alua on both paths, one target port group per gateway"
map_text=$(multipath -ll "$MAP" | sed -E "s/\x1b\[[0-9;]*m//g")
grep -q "hwhandler='1 alua'" <<<"$map_text" || fail "multipath did not pick the ALUA hardware handler"
grep -q "prio=50 status=active" <<<"$map_text" || fail "the path group is not active with ALUA priority 50"
echo "alua: map $MAP hwhandler='1 alua', path group prio=50 status=active"
SD_GW1='' SD_GW2=''
for sd in $(grep -oE ' sd[a-z]+ ' <<<"$map_text"); do
    dh=$(cat "/sys/block/$sd/device/dh_state")
    state=$(cat "/sys/block/$sd/device/access_state")
    echo "alua: $sd dh_state=$dh access_state=$state"
    [[ $dh == alua ]] || fail "$sd: device handler is '$dh', not alua"
    [[ $state == active/optimized ]] || fail "$sd: access state '$state'"
    echo "# sg_vpd -p di /dev/$sd"
    sg_vpd -p di "/dev/$sd" | tee "/tmp/vpd-$sd.txt" | sed 's/^/    /'
    group=$(sed -nE 's/.*Target port group: (0x[0-9a-f]+)$/\1/p' "/tmp/vpd-$sd.txt")
    port=$(sed -nE 's/.*Relative target port: (0x[0-9a-f]+)$/\1/p' "/tmp/vpd-$sd.txt")
    [[ -n $group && -n $port ]] || fail "$sd: VPD 83h lacks the target port group or relative port"
    printf 'vpd: %s target port group %d, relative target port 0x%04x\n' "$sd" "$group" "$port"
    case $((group)) in
    1) SD_GW1=$sd ;;
    2) SD_GW2=$sd ;;
    *) fail "$sd: target port group $group is neither gateway's" ;;
    esac
    echo "# sg_rtpg -d /dev/$sd"
    sg_rtpg -d "/dev/$sd" | tee "/tmp/rtpg-$sd.txt" | sed 's/^/    /'
    summary=$(rtpg_ports <"/tmp/rtpg-$sd.txt" | while read -r g s p; do
        printf 'group %d %s port 0x%04x; ' "0x$g" "$s" "$p"
    done)
    echo "rtpg: $sd: $summary"
done
[[ -n $SD_GW1 && -n $SD_GW2 ]] || fail "the paths are not one through each gateway"
echo "paths: gateway 1 = $SD_GW1, gateway 2 = $SD_GW2"

step "fio on $DEV for $FIO_SECONDS s while gateway 1 is killed and restarted"
fio --name=cluster --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --size=64M --time_based --runtime="$FIO_SECONDS" --verify=crc32c --verify_backlog=32 --verify_fatal=1 \
    --verify_dump=1 --eta=never --output=/tmp/fio.txt \
    --write_lat_log=/tmp/fio --log_avg_msec=0 --log_unix_epoch=1 &
FIO=$!
sleep 10
kill -0 $FIO 2>/dev/null || { cat /tmp/fio.txt; fail "fio ended early"; }
KILL_ASKED=$(date +%s.%N)
echo "HOST: kill -9 gateway 1"
wait_active 1
echo "one active path $(awk -v a="$KILL_ASKED" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s after asking for the kill"
show_map
sleep 10
kill -0 $FIO 2>/dev/null || { cat /tmp/fio.txt; fail "fio ended while gateway 1 was down"; }
RESTART_ASKED=$(date +%s.%N)
echo "HOST: restart gateway 1"
wait_active 2
echo "two active paths $(awk -v a="$RESTART_ASKED" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s after asking for the restart"
show_map
cat "/sys/block/$SD_GW1/device/access_state" | sed "s/^/alua after restart: $SD_GW1 access_state=/"
kill -0 $FIO 2>/dev/null || { cat /tmp/fio.txt; fail "fio ended before gateway 1 came back"; }
echo "fio still running with both paths back"
rc=0
wait $FIO || rc=$?
cat /tmp/fio.txt
((rc == 0)) || fail "fio exited $rc"
grep -qE 'err= *0' /tmp/fio.txt || fail "fio reports errors"
grep -qiE 'verify: bad|crc32c: wanted|verify failed' /tmp/fio.txt && fail "fio verify errors"
read -r READS WRITES < <(sed -nE 's/.*issued rwts: total=([0-9]+),([0-9]+),.*/\1 \2/p' /tmp/fio.txt) || true
((${READS:-0} > 0 && ${WRITES:-0} > 0)) || fail "fio verified nothing (reads ${READS:-?}, writes ${WRITES:-?})"
echo "fio: $(grep -oE 'err= *[0-9]+' /tmp/fio.txt | head -1), $WRITES blocks written, $READS verified by crc32c"
# How long I/O stalled when gateway 1 died, from fio's per-I/O log (/tmp/fio_lat.1.log: completion
# time in ms since the epoch, submission-to-completion latency in ns, direction, size, ...): the
# longest any I/O waited (one caught on the dead gateway, retried on gateway 2 once its session's
# replacement_timeout ended), and the longest time no I/O completed at all.
# Only I/O issued between a second before the kill request and the restart request counts.
awk -F', *' -v k="$KILL_ASKED" -v r="$RESTART_ASKED" '
    { t = $1 / 1000; lat = $2 / 1e9; issued = t - lat }
    issued >= k - 1 && issued < r && lat > worst { worst = lat; done_at = t - k }
    prev != "" && t > k && t < r && t - prev > gap { gap = t - prev; gap_from = prev - k; gap_to = t - k }
    { prev = t; n++ }
    END {
        printf "stall: I/O stalled %.1f s when gateway 1 died: the longest I/O waited %.1f s (issued %+.1f s, completed %+.1f s from the kill request)", worst, worst, done_at - worst, done_at
        printf "; longest time without any completion %.1f s (%+.1f s to %+.1f s); %d I/Os logged\n", gap, gap_from, gap_to, n
    }' /tmp/fio_lat.1.log
# fio's summary covers the writes only; the verify reads are in the per-I/O log above.
echo "fio total latency of the writes: $(grep -E '^ +lat \(.*min=' /tmp/fio.txt | tr -s ' ' | paste -sd ';')"

step "persistent reservations through either path ($SD_GW1 via gateway 1, $SD_GW2 via gateway 2)"
for kv in "$SD_GW1 0x1" "$SD_GW2 0x2"; do
    read -r sd key <<<"$kv"
    echo "# sg_persist --out --register --param-sark=$key /dev/$sd"
    out=$(sg_persist --out --register --param-sark="$key" "/dev/$sd" 2>&1) || {
        echo "$out" | sed 's/^/    /'
        fail "PR OUT REGISTER $key through $sd failed"
    }
    echo "$out" | sed 's/^/    /'
done
for sd in "$SD_GW1" "$SD_GW2"; do
    for what in k r s; do
        echo "# sg_persist --no-inquiry --in -$what /dev/$sd"
        sg_persist --no-inquiry --in "-$what" "/dev/$sd" >"/tmp/pr-$what-$sd.txt" 2>&1 ||
            { sed 's/^/    /' "/tmp/pr-$what-$sd.txt"; fail "PR IN -$what through $sd failed"; }
        sed 's/^/    /' "/tmp/pr-$what-$sd.txt"
    done
done
for what in k r s; do
    cmp -s "/tmp/pr-$what-$SD_GW1.txt" "/tmp/pr-$what-$SD_GW2.txt" ||
        fail "PR IN -$what differs between the paths"
    echo "pr: -$what through both paths: same answer ($(grep -m1 -oE 'PR generation=0x[0-9a-f]+' "/tmp/pr-$what-$SD_GW1.txt"))"
done
keys=$(grep -E '^ +0x[0-9a-f]+$' "/tmp/pr-k-$SD_GW1.txt" | tr -d ' ' | sort | tr '\n' ' ')
echo "pr: registered keys: $keys"
[[ $keys == "0x1 0x2 " ]] || fail "READ KEYS lists '$keys', not 0x1 and 0x2"
ports=$(sed -nE 's/.*Relative port address: (0x[0-9a-f]+)$/\1/p' "/tmp/pr-s-$SD_GW1.txt" | sort | tr '\n' ' ')
echo "pr: READ FULL STATUS relative target ports: $ports"
[[ $ports == "0x101 0x201 " ]] || fail "READ FULL STATUS names relative ports '$ports', not 0x101 and 0x201"

step "cleanup"
multipath -F >/dev/null 2>&1 || true
iscsiadm -m node --logoutall=all >/dev/null
echo "CLUSTER MULTIPATH OK"
