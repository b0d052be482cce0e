# Shell functions for the guest scripts of the VM tests, handed in by run-in-vm.sh --lib (the
# Rust tests always pass it) and sourced from /run/palisade/lib.sh. The caller defines `step`
# and `fail`.

# Two cluster nodes in one guest: two open-iscsi iface records with the two initiator names
# (INITIATOR_NAME, SECOND_INITIATOR_NAME), each logged in to the target behind PORTAL, so each
# node has its own session and its own /dev/sdX for LUN 0. Sets TARGET, DA (node A's disk) and
# DB (node B's).
two_node_sessions() {
    local A=$INITIATOR_NAME B=$SECOND_INITIATOR_NAME
    step "node A = $A, node B = $B: one session each"
    modprobe -a iscsi_tcp sd_mod sg
    iscsid
    declare -A IQN=([a]=$A [b]=$B)
    for n in a b; do
        iscsiadm -m iface -I "node-$n" -o new >/dev/null
        iscsiadm -m iface -I "node-$n" -o update -n iface.initiatorname -v "${IQN[$n]}" >/dev/null
    done
    # Discovery answers with the target's host address, unreachable from here: node records are
    # made for the forwarded portal.
    TARGET=$(iscsiadm -m discovery -t sendtargets -p "$PORTAL" -I node-a | awk 'NR == 1 {print $2}')
    iscsiadm -m node -o delete
    for n in a b; do
        iscsiadm -m node -o new -T "$TARGET" -p "$PORTAL" -I "node-$n" >/dev/null
        iscsiadm -m node -T "$TARGET" -p "$PORTAL" -I "node-$n" --login >/dev/null
    done
    DA='' DB=''
    for _ in $(seq 200); do
        eval "$(iscsiadm -m session -P3 | awk '/Iface Name:/ {i = $3}
            /Attached scsi disk/ {printf "D%s=/dev/%s\n", toupper(substr(i, 6)), $4}')"
        [[ -b ${DA:-/nonexistent} && -b ${DB:-/nonexistent} ]] && break
        sleep 0.1
    done
    [[ -b ${DA:-/nonexistent} && -b ${DB:-/nonexistent} ]] || fail "no disk for a node"
    echo "node A: $DA, node B: $DB (LUN 0 of $TARGET)"
}

# dm-multipath over open-iscsi, set up before any login (the SCSI midlayer attaches scsi_dh_alua
# to each new disk whose standard INQUIRY reports TPGS != 0, reading REPORT TARGET PORT GROUPS
# and VPD 83h to do so): the modules, a multipath.conf that makes one map of every SCSI disk,
# iscsid, and multipathd once it answers. With a FILE argument iscsid runs in the foreground at
# debug level 1 with its log in FILE.
multipath_iscsi_start() {
    modprobe -a iscsi_tcp sd_mod sg dm_mod dm_multipath dm_round_robin dm_service_time scsi_dh_alua
    cat >/etc/multipath.conf <<'CONF'
defaults {
    user_friendly_names yes
    # every SCSI disk here is an iSCSI LUN under test: no wwids file needed
    find_multipaths no
    path_grouping_policy multibus
    # with no path left (one gone for good), queue a short while, then fail: I/O must not hang
    no_path_retry 12
    polling_interval 2
}
CONF
    if [[ -n ${1:-} ]]; then
        iscsid -f -d 1 >"$1" 2>&1 &
        for _ in $(seq 100); do iscsiadm -m session 2>&1 | grep -q 'No active sessions' && break; sleep 0.1; done
    else
        iscsid
    fi
    multipathd
    for _ in $(seq 100); do multipathd show status >/dev/null 2>&1 && break; sleep 0.2; done
    multipathd show status >/dev/null 2>&1 || fail "multipathd did not start"
}
