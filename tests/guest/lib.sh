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
