#!/usr/bin/env bash
# peers.sh — two reference iSCSI targets nobody here wrote, on loopback, for side-by-side runs:
# tgt 1.0.85 (Linux SCSI target framework, user space) and istgt 0.4, from Debian's packages
# (installed with apt-get when missing). Each serves one LUN backed by a file on tmpfs.
#
#   scripts/peers/peers.sh start|stop|restart|status  tgt|istgt|all
#   scripts/peers/peers.sh url|pid|backing            tgt|istgt
#
#   start    idempotent: a running instance (recorded pid alive, same program) is kept; prints
#            "NAME: pid=… url=… backing=…"
#   stop     TERM, then KILL after 5 s, to the pid this script recorded and nothing else
#   status   exit 0 if running, 1 if not
#   url      iscsi://127.0.0.1:PORT/IQN/LUN     pid  the daemon's pid (CPU accounting)
#   backing  the LUN's file
#
# Knobs (environment):
#   TGT_PORT [3261]  TGT_IQN [iqn.2026-11.io.palisade.peers:tgt]       LUN 1 (LUN 0 is tgt's controller)
#   TGT_BACKING      tgt's LUN: an existing file or block device used as it is (not filled, not
#                    resized, not deleted), instead of PEERS_DATA/palisade-peer-tgt-PORT.img
#   TGT_BSOFLAGS     tgt's --bsoflags for the LUN, e.g. "direct" (O_DIRECT: no host page cache)
#   ISTGT_PORT [3262] ISTGT_IQN [iqn.2026-11.io.palisade.peers:istgt] LUN 0
#   ISTGT_QD [128] istgt's per-LUN queue depth (MaxSessions 32, MaxConnections 8 per session)
#   SIZE_MIB [1024]  LUN size; a file of another size is recreated
#   FILL [sparse]    sparse: a new file is a hole (reads of holes flatter a target: prefill for
#                    read benchmarks); random: refill the whole file from /dev/urandom on start
#   PEERS_STATE      pid files, configs, logs (default ~/.local/state/palisade/peers)
#   PEERS_DATA       folder of the LUN files (default /dev/shm)
# Several instances can coexist: everything is keyed by the port (PEERS_STATE/tgt-3261/ …).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TGT_PORT="${TGT_PORT:-3261}"
TGT_IQN="${TGT_IQN:-iqn.2026-11.io.palisade.peers:tgt}"
TGT_LUN=1
ISTGT_PORT="${ISTGT_PORT:-3262}"
ISTGT_IQN="${ISTGT_IQN:-iqn.2026-11.io.palisade.peers:istgt}"
ISTGT_LUN=0
SIZE_MIB="${SIZE_MIB:-1024}"
FILL="${FILL:-sparse}"
case "$FILL" in sparse | random) ;; *) die "FILL must be sparse or random, not $FILL" ;; esac

usage() {
  sed -n '2,12p' "$0" >&2
  exit 2
}

# Per-peer facts: program name (as /proc/PID/comm shows it), port, IQN, LUN, state folder.
peer_vars() {
  case "$1" in
    tgt) COMM=tgtd PORT="$TGT_PORT" IQN="$TGT_IQN" LUN="$TGT_LUN" ;;
    istgt) COMM=istgt PORT="$ISTGT_PORT" IQN="$ISTGT_IQN" LUN="$ISTGT_LUN" ;;
    *) die "unknown peer '$1' (tgt or istgt)" ;;
  esac
  DIR="$PEERS_STATE/$1-$PORT"
  BACKING="$PEERS_DATA/palisade-peer-$1-$PORT.img"
  GIVEN_BACKING=""
  if [ "$1" = tgt ] && [ -n "${TGT_BACKING:-}" ]; then
    BACKING="$TGT_BACKING" GIVEN_BACKING=1
  fi
  URL="iscsi://127.0.0.1:$PORT/$IQN/$LUN"
}

# is_ours PID: PID is alive (not a zombie waiting for its parent) and runs our program; a
# recycled pid belongs to someone else and is never signalled.
is_ours() {
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$COMM" ] || return 1
  [ "$(sed -E 's/^[0-9]+ \(.*\) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

# running_pid: the recorded pid, if it is still ours.
running_pid() {
  local pid
  [ -s "$DIR/pid" ] || return 1
  pid="$(cat "$DIR/pid")"
  is_ours "$pid" || return 1
  echo "$pid"
}

# kill_recorded PID: TERM, and KILL after 5 s, to that pid only. tgtd ignores TERM while it
# has targets (its README's shutdown is "kill -9"; its LUN is a scratch file), so it gets KILL.
kill_recorded() {
  local pid="$1" i sig=TERM
  [ "$COMM" = tgtd ] && sig=KILL
  kill -"$sig" "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    is_ours "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 20); do
    is_ours "$pid" || return 0
    sleep 0.1
  done
  die "pid $pid ($COMM) survived SIGKILL"
}

prepare_backing() {
  local want=$((SIZE_MIB * 1024 * 1024))
  if [ -n "$GIVEN_BACKING" ]; then
    [ -e "$BACKING" ] || die "TGT_BACKING $BACKING does not exist"
    return 0
  fi
  if [ "$FILL" = random ]; then
    # Written in full each start: reads then cost what reading data costs.
    dd if=/dev/urandom of="$BACKING" bs=1M count="$SIZE_MIB" status=none || die "cannot fill $BACKING"
  elif [ ! -f "$BACKING" ] || [ "$(stat -c %s "$BACKING")" -ne "$want" ]; then
    rm -f "$BACKING"
    truncate -s "$want" "$BACKING" || die "cannot create $BACKING"
  fi
}

# our_child PID: PID is a live (not zombie) child of this shell. Right after `&` the child is
# still this shell's fork, then setsid, and only then the daemon (a background job is no process
# group leader, so setsid execs without forking): its name says nothing until then, its parent does.
our_child() {
  [ "$(awk '/^PPid:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" = "$$" ] || return 1
  [ "$(sed -E 's/^[0-9]+ \(.*\) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

# launch DAEMON ARGS...: starts the daemon in a session of its own (a Ctrl-C in the caller's
# terminal does not reach it), records its pid, and waits up to 10 s for it to listen on PORT.
launch() {
  local pid i
  setsid "$@" >>"$DIR/log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$DIR/pid"
  for i in $(seq 100); do
    port_listening "$PORT" && is_ours "$pid" && return 0
    our_child "$pid" || return 1
    sleep 0.1
  done
  return 1
}

describe() {
  echo "$1: pid=$2 url=$URL backing=$BACKING"
}

# A failed start leaves nothing running: stop what we started, show the log, exit.
start_failed() {
  local pid
  pid="$(cat "$DIR/pid" 2>/dev/null)" || pid=""
  if [ -n "$pid" ] && our_child "$pid"; then
    kill_recorded "$pid"
  fi
  rm -f "$DIR/pid"
  tail -n 20 "$DIR/log" >&2 || true
  die "$*"
}

# tgtd's control port names its management socket and must be below 32768: the iSCSI port
# itself when it is, else the port folded below it.
control_port() {
  echo $((PORT < 32768 ? PORT : PORT % 32768))
}

tgtadm_() {
  tgtadm --control-port "$(control_port)" --lld iscsi "$@"
}

start_tgt() {
  ensure_debs tgt
  local pid
  prepare_backing
  : >"$DIR/log"
  # tgtd's management socket is /var/run/tgtd/socket.<control port>: using the iSCSI port as the
  # control port keeps instances (and a system tgtd on the default socket) apart.
  launch tgtd -f --control-port "$(control_port)" --iscsi "portal=127.0.0.1:$PORT" ||
    start_failed "tgtd did not listen on 127.0.0.1:$PORT"
  for _ in $(seq 50); do
    tgtadm_ --mode target --op show >/dev/null 2>&1 && break
    sleep 0.1
  done
  tgtadm_ --mode target --op new --tid 1 --targetname "$IQN" >>"$DIR/log" 2>&1 ||
    start_failed "tgtadm: cannot create target $IQN"
  local bsoflags=()
  [ -n "${TGT_BSOFLAGS:-}" ] && bsoflags=(--bsoflags "$TGT_BSOFLAGS")
  tgtadm_ --mode logicalunit --op new --tid 1 --lun "$LUN" --backing-store "$BACKING" "${bsoflags[@]}" >>"$DIR/log" 2>&1 ||
    start_failed "tgtadm: cannot add LUN $LUN ($BACKING)"
  tgtadm_ --mode target --op bind --tid 1 --initiator-address ALL >>"$DIR/log" 2>&1 ||
    start_failed "tgtadm: cannot open the target to initiators"
  pid="$(running_pid)" || start_failed "tgtd exited during setup"
  describe tgt "$pid"
}

write_istgt_conf() {
  # No CHAP anywhere: the auth file only has to exist and parse.
  printf '[AuthGroup1]\n  Comment "unused"\n' >"$DIR/auth.conf"
  mkdir -p "$DIR/media"
  cat >"$DIR/istgt.conf" <<EOF
# written by scripts/peers/peers.sh; rewritten on every start
[Global]
  NodeBase "iqn.2026-11.io.palisade.peers"
  PidFile $DIR/istgt.pidfile
  AuthFile $DIR/auth.conf
  MediaDirectory $DIR/media
  LogFacility "local7"
  Timeout 30
  NopInInterval 20
  DiscoveryAuthMethod None
  MaxSessions 32
  MaxConnections 8
  MaxR2T 32
  MaxOutstandingR2T 16
  DefaultTime2Wait 2
  DefaultTime2Retain 60
  FirstBurstLength 262144
  MaxBurstLength 1048576
  MaxRecvDataSegmentLength 262144
  InitialR2T Yes
  ImmediateData Yes
  DataPDUInOrder Yes
  DataSequenceInOrder Yes
  ErrorRecoveryLevel 0

# istgt refuses to start without this section; with no Portal line the controller is off.
[UnitControl]
  AuthMethod None
  Netmask 127.0.0.1

[PortalGroup1]
  Portal DA1 127.0.0.1:$PORT

[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask 127.0.0.0/8

[LogicalUnit1]
  TargetName $IQN
  Mapping PortalGroup1 InitiatorGroup1
  AuthMethod None
  UseDigest Auto
  UnitType Disk
  QueueDepth ${ISTGT_QD:-128}
  LUN0 Storage $BACKING ${SIZE_MIB}MB
EOF
}

start_istgt() {
  ensure_debs istgt
  local pid
  prepare_backing
  write_istgt_conf
  : >"$DIR/log"
  rm -f "$DIR/istgt.pidfile"
  # -D: stay in the foreground, so the recorded pid is the daemon and its output is in the log.
  launch istgt -D -c "$DIR/istgt.conf" -p "$DIR/istgt.pidfile" || start_failed "istgt did not listen on 127.0.0.1:$PORT"
  pid="$(running_pid)" || start_failed "istgt exited during start-up"
  describe istgt "$pid"
}

start_peer() {
  local pid
  peer_vars "$1"
  mkdir -p "$DIR" "$PEERS_DATA"
  if pid="$(running_pid)"; then
    describe "$1" "$pid"
    return 0
  fi
  port_listening "$PORT" && die "127.0.0.1:$PORT is taken by a process this script did not start"
  "start_$1"
}

stop_peer() {
  local pid
  peer_vars "$1"
  if pid="$(running_pid)"; then
    kill_recorded "$pid"
    # Killed tgtd leaves its management socket behind.
    [ "$1" = tgt ] && rm -f "/var/run/tgtd/socket.$(control_port)" "/var/run/tgtd/socket.$(control_port).lock"
    echo "$1: stopped pid $pid"
  else
    echo "$1: not running"
  fi
  rm -f "$DIR/pid"
}

status_peer() {
  local pid
  peer_vars "$1"
  if pid="$(running_pid)"; then
    describe "$1" "$pid"
  else
    echo "$1: not running"
    return 1
  fi
}

[ $# -eq 2 ] || usage
cmd="$1"
case "$2" in
  tgt | istgt) names=("$2") ;;
  all) names=(tgt istgt) ;;
  *) usage ;;
esac
case "$cmd" in
  start) for n in "${names[@]}"; do start_peer "$n"; done ;;
  stop) for n in "${names[@]}"; do stop_peer "$n"; done ;;
  restart) for n in "${names[@]}"; do
    stop_peer "$n"
    start_peer "$n"
  done ;;
  status)
    rc=0
    for n in "${names[@]}"; do status_peer "$n" || rc=1; done
    exit "$rc"
    ;;
  url | pid | backing)
    [ "${#names[@]}" -eq 1 ] || die "$cmd needs one peer, tgt or istgt"
    peer_vars "${names[0]}"
    case "$cmd" in
      url) echo "$URL" ;;
      backing) echo "$BACKING" ;;
      pid) running_pid || die "${names[0]} is not running" ;;
    esac
    ;;
  *) usage ;;
esac
