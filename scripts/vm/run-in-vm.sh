#!/usr/bin/env bash
# Palisade VM harness, run side: boots the guest built by build-image.sh under QEMU and runs one
# script in it as root against the iSCSI target listening on this host's loopback.
#
# The guest network is QEMU user networking with restrict=on: the guest reaches nothing but
# 10.0.2.100:3260 (forwarded to 127.0.0.1:PORT) and 10.0.2.101:3260 (forwarded to
# 127.0.0.1:PORT2, or PORT again), each guest connection becoming one `socat` on the host.
#
# Exit status: the script's own; 124 when --timeout expired; 125 when the guest ended (rebooted,
# powered off, panicked) without reporting a status; 2 for usage errors.
set -euo pipefail
# The whole script is one { ... } block, parsed before it runs: editing this file while VMs run
# (bash reads scripts as it goes) cannot change what a running instance executes.
{

usage() {
    cat >&2 <<'EOF'
usage: scripts/vm/run-in-vm.sh --portal-port PORT [options] SCRIPT
  --portal-port PORT              target on 127.0.0.1:PORT, guest sees it at 10.0.2.100:3260 ($PORTAL)
  --second-portal-port PORT2      127.0.0.1:PORT2 at 10.0.2.101:3260 ($SECOND_PORTAL); default PORT
  --initiator-name IQN            $INITIATOR_NAME, also /etc/iscsi/initiatorname.iscsi
  --second-initiator-name IQN2    $SECOND_INITIATOR_NAME (for a second open-iscsi iface record)
  --portal-connect-retry SEC      while a portal's host port refuses connections, hold the guest's
                                  connection and retry for up to SEC s (a host that does not
                                  answer) instead of closing it at once (default 0: close)
  --env NAME=VALUE                exported to SCRIPT (repeatable)
  --lib FILE                      shell functions for SCRIPT, at /run/palisade/lib.sh in the guest
  --share DIR                     host DIR mounted read-write at /mnt/share (9p)
  --timeout SEC                   limit for the whole run (default 600)
  --memory MB                     guest memory (default 1024)
  --cpus N                        guest CPUs (default 2)
Environment: PALISADE_VM_CACHE (image cache root), PALISADE_VM_ACCEL=tcg|kvm (default tcg).
EOF
    exit 2
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT='' PORT2='' SCRIPT='' SHARE='' LIB='' TIMEOUT=600 MEMORY=1024 CPUS=2 CONNECT_RETRY=0
INIT1=iqn.2026-11.io.palisade.vm:node-a
INIT2=iqn.2026-11.io.palisade.vm:node-b
ENV_VARS=()
while (($#)); do
    case $1 in
    --portal-port) PORT=${2:-}; shift 2 || usage ;;
    --second-portal-port) PORT2=${2:-}; shift 2 || usage ;;
    --initiator-name) INIT1=${2:-}; shift 2 || usage ;;
    --second-initiator-name) INIT2=${2:-}; shift 2 || usage ;;
    --portal-connect-retry) CONNECT_RETRY=${2:-}; shift 2 || usage ;;
    --env) [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage; ENV_VARS+=("$2"); shift 2 ;;
    --share) SHARE=$(cd "${2:-}" && pwd) || usage; shift 2 ;;
    --lib) LIB=${2:-}; [[ -f $LIB ]] || usage; shift 2 ;;
    --timeout) TIMEOUT=${2:-}; shift 2 || usage ;;
    --memory) MEMORY=${2:-}; shift 2 || usage ;;
    --cpus) CPUS=${2:-}; shift 2 || usage ;;
    -h | --help) usage ;;
    -*) echo "run-in-vm: unknown option $1" >&2; usage ;;
    *) [[ -z $SCRIPT ]] || usage; SCRIPT=$1; shift ;;
    esac
done
PORT2=${PORT2:-$PORT}
for n in "$PORT" "$PORT2" "$TIMEOUT" "$MEMORY" "$CPUS" "$CONNECT_RETRY"; do [[ $n =~ ^[0-9]+$ ]] || usage; done
[[ -f $SCRIPT ]] || { echo "run-in-vm: no script $SCRIPT" >&2; usage; }
# QEMU option values are comma-separated: a comma in a path would split them.
[[ $SHARE != *,* ]] || { echo "run-in-vm: --share path must not contain a comma" >&2; exit 2; }

# Builds the image when the cache is missing or stale (root needed then), else returns at once.
"$HERE/build-image.sh" >&2
IMAGE=$("$HERE/build-image.sh" --print-dir)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/palisade-vm.XXXXXX")
# TMP goes into QEMU's comma-separated options and into the socat command QEMU splits at spaces.
[[ $TMP != *[,\ ]* ]] || { echo "run-in-vm: TMPDIR must not contain a comma or space" >&2; exit 2; }
QEMU_PID=''
cleanup() {
    if [[ -n $QEMU_PID ]]; then kill -TERM "$QEMU_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

cp "$SCRIPT" "$TMP/script"
# An empty lib when none is given: the guest's init copies whatever arrives.
if [[ -n $LIB ]]; then cp "$LIB" "$TMP/lib"; else : >"$TMP/lib"; fi
{
    printf 'INITIATOR_NAME=%q\nSECOND_INITIATOR_NAME=%q\n' "$INIT1" "$INIT2"
    printf 'PORTAL=10.0.2.100:3260\nSECOND_PORTAL=10.0.2.101:3260\n'
    printf 'PALISADE_VM_SHARE=%d\n' "$([[ -n $SHARE ]] && echo 1 || echo 0)"
    for kv in "${ENV_VARS[@]}"; do printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"; done
} >"$TMP/env"
: >"$TMP/status"

case ${PALISADE_VM_ACCEL:-tcg} in
# KVM is not usable on every host that has /dev/kvm (on the CI machine kind QEMU aborts or the
# guest hangs in the decompressor), so TCG is the default and KVM an explicit opt-in.
tcg) ACCEL=(-accel tcg,thread=multi -cpu max) ;;
kvm) ACCEL=(-accel kvm -cpu host) ;;
*) echo "run-in-vm: PALISADE_VM_ACCEL must be tcg or kvm" >&2; exit 2 ;;
esac

# One socat per guest connection (cmd: form): iSCSI opens a new TCP connection per login.
# PALISADE_VM_TRACE=DIR keeps each connection's raw bytes (DIR/PID-PORT.i2t, .t2i) for debugging.
if [[ -n ${PALISADE_VM_TRACE:-} ]]; then
    mkdir -p "$PALISADE_VM_TRACE"
    TRACE_DIR=$(cd "$PALISADE_VM_TRACE" && pwd)
    [[ $TRACE_DIR != *[,\ ]* ]] || { echo "run-in-vm: PALISADE_VM_TRACE must not contain a comma or space" >&2; exit 2; }
fi
# QEMU hands the command the guest connection as stdin, stdout AND stderr: socat's own messages
# (e.g. "Connection refused" when the target is gone) must go to -lf, not into the guest's
# iSCSI byte stream, where the initiator would parse them as a PDU header.
#
# The guest's TCP connect always succeeds (QEMU accepts it, then starts the command), so a target
# port that refuses reaches the guest as a connection closed right after it opened. open-iscsi
# 2.1.8 mishandles that during session recovery: a close after it bound the new connection leaves
# it retrying "can't bind conn" forever (open-iscsi issue #387). --portal-connect-retry makes a
# refused port look like a host that does not answer: socat retries every 0.5 s and the guest's
# login times out meanwhile, which iscsid handles. (PALISADE_VM_TRACE is not applied then.)
if ((CONNECT_RETRY > 0)); then
    printf '#!/bin/sh\nexec socat -lf %s STDIO TCP:127.0.0.1:"$1",retry=%d,interval=0.5\n' \
        "$TMP/socat.log" $((CONNECT_RETRY * 2)) >"$TMP/portal-connect"
    chmod +x "$TMP/portal-connect"
fi
fwd() {
    if ((CONNECT_RETRY > 0)); then
        printf 'guestfwd=tcp:%s:3260-cmd:%s %s' "$1" "$TMP/portal-connect" "$2"
    elif [[ -n ${TRACE_DIR:-} ]]; then
        # QEMU splits the command into words itself (no shell): sh names each connection's files.
        printf "guestfwd=tcp:%s:3260-cmd:sh -c 'exec socat -lf %s -r %s/\$\$-%s.i2t -R %s/\$\$-%s.t2i STDIO TCP:127.0.0.1:%s'" \
            "$1" "$TMP/socat.log" "$TRACE_DIR" "$2" "$TRACE_DIR" "$2" "$2"
    else
        printf 'guestfwd=tcp:%s:3260-cmd:socat -lf %s STDIO TCP:127.0.0.1:%s' "$1" "$TMP/socat.log" "$2"
    fi
}
QEMU_ARGS=(
    -nodefaults -no-user-config -display none -vga none -no-reboot
    "${ACCEL[@]}" -m "$MEMORY" -smp "$CPUS"
    -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img"
    -append "console=ttyS0 quiet panic=-1 rdinit=/init"
    -serial stdio -serial "file:$TMP/status"
    -netdev "user,id=net0,restrict=on,$(fwd 10.0.2.100 "$PORT"),$(fwd 10.0.2.101 "$PORT2")"
    -device virtio-net-pci,netdev=net0,romfile=
    -fw_cfg "name=opt/palisade/init,file=$HERE/guest/init.sh"
    -fw_cfg "name=opt/palisade/script,file=$TMP/script"
    -fw_cfg "name=opt/palisade/env,file=$TMP/env"
    -fw_cfg "name=opt/palisade/lib,file=$TMP/lib"
)
[[ -z $SHARE ]] ||
    QEMU_ARGS+=(-virtfs "local,path=$SHARE,mount_tag=palisade,security_model=none,id=share0")

echo "run-in-vm: $(basename "$IMAGE"), ${PALISADE_VM_ACCEL:-tcg}, portals 10.0.2.100:3260 -> 127.0.0.1:$PORT," \
    "10.0.2.101:3260 -> 127.0.0.1:$PORT2" >&2
# timeout(1) bounds QEMU and the socat children in its process group; the console goes to our
# stdout line by line without the serial line's carriage returns (and is kept to explain a
# missing status).
mkfifo "$TMP/console.fifo"
sed -u 's/\r$//' <"$TMP/console.fifo" | tee "$TMP/console" &
READER_PID=$!
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "${QEMU_ARGS[@]}" </dev/null >"$TMP/console.fifo" &
QEMU_PID=$!
QEMU_RC=0
wait "$QEMU_PID" || QEMU_RC=$?
QEMU_PID=''
wait "$READER_PID" || true

# socat complaints (target not listening, connection reset) explain many guest-side failures.
if [[ -s $TMP/socat.log ]]; then
    echo "run-in-vm: socat (host side of the portals) logged $(wc -l <"$TMP/socat.log") lines, last ones:" >&2
    tail -n 5 "$TMP/socat.log" | sed 's/^/run-in-vm:   /' >&2
fi
STATUS=$(tr -dc '0-9' <"$TMP/status")
if [[ -n $STATUS ]]; then
    exit "$STATUS"
elif ((QEMU_RC == 124 || QEMU_RC == 137)); then
    echo "run-in-vm: timeout: the VM was killed after ${TIMEOUT} s" >&2
    exit 124
elif grep -q 'reboot: Restarting system\|sysrq: Resetting' "$TMP/console"; then
    echo "run-in-vm: the guest rebooted without reporting a status (QEMU -no-reboot exit $QEMU_RC)" >&2
    exit 125
else
    echo "run-in-vm: the guest ended without reporting a status (QEMU exit $QEMU_RC)" >&2
    exit 125
fi
}
