#!/usr/bin/env bash
# write-placement.sh — 256 KiB sequential writes at QD8 through qemu-img bench (qemu's libiscsi
# driver) with every target and the client pinned to the same CPUs, for docs/performance.md
# (issue 13).
#
# Why pinned: this client spends its time in the kernel sending 256 KiB per command, and on this
# 2-CPU VM what that costs depends on where the scheduler puts the target's threads: unpinned,
# one target's rate moves between runs by up to 1.6× (istgt 1,551 to 2,500 MiB/s over three
# compare-peers runs; Palisade pinned across CPUs 1.4 to 3.0 s for the same 5 GiB), which is no
# property of the target. Pinned, every target gets the same placement:
#   cross: target on CPU 1, client on CPU 0 (an initiator on another host, as in production)
#   same:  target and client on CPU 0
# Storage, like with like: a 1 GiB tmpfs file for each target, filled from /dev/urandom
# (Palisade's file LUN, istgt's and tgt's LUN files), on the same tmpfs.
#
#   scripts/write-placement.sh          # knobs: ROUNDS=3 DURATION=5 OUT=target/write-placement/<stamp>
#                                       # PORT=3433 ISTGT_PORT=41273 TGT_PORT=41274
#                                       # BIN=target/release/palisade (built if missing)
# Writes OUT/write-placement.tsv: perf.py's columns (scripts/peers/perf.py), with the round column
# holding PLACEMENT:ROUND; its servers' files in OUT/write-placement/.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$REPO/scripts/peers"
# shellcheck source-path=SCRIPTDIR source=peers/lib.sh
. "$PEERS/lib.sh"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-5}" PORT="${PORT:-3433}"
ISTGT_PORT="${ISTGT_PORT:-41273}" TGT_PORT="${TGT_PORT:-41274}"
OUT="${OUT:-$REPO/target/write-placement/$(date +%Y%m%d-%H%M%S)}"
BIN="${BIN:-$REPO/target/release/palisade}"
IQN="iqn.2026-12.io.palisade:writes"
# Its own folder inside OUT: compare-peers.sh passes its run folder, whose server files these must not touch.
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"  # the server resolves relative paths against its config's folder
WORK="$OUT/write-placement"
mkdir -p "$WORK"
log() { echo "[write-placement $(date +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs"
[ -x "$BIN" ] || (cd "$REPO" && cargo build --release -q) || die "cargo build failed"

PAL_FILE="/dev/shm/palisade-writes-$PORT.img"
PAL_PID=""
cleanup() {
  [ -n "$PAL_PID" ] && kill "$PAL_PID" 2>/dev/null && wait "$PAL_PID" 2>/dev/null
  ISTGT_PORT="$ISTGT_PORT" "$PEERS/peers.sh" stop istgt >/dev/null 2>&1
  TGT_PORT="$TGT_PORT" "$PEERS/peers.sh" stop tgt >/dev/null 2>&1
  rm -f "$PAL_FILE" "/dev/shm/palisade-peer-istgt-$ISTGT_PORT.img" "/dev/shm/palisade-peer-tgt-$TGT_PORT.img"
}
trap cleanup EXIT

log "filling 1 GiB on tmpfs for each target"
head -c 1G /dev/urandom >"$PAL_FILE" || die "cannot fill $PAL_FILE"
printf 'data_dir = "%s"\n\n[[portals]]\nname = "loopback"\nlisten = "127.0.0.1:%s"\n\n' "$WORK/palisade-data" "$PORT" >"$WORK/palisade.toml"
printf '[[targets]]\nname = "%s"\nportals = ["loopback"]\n\n[[targets.luns]]\nid = 0\nbackend = "file"\npath = "%s"\n' \
  "$IQN" "$PAL_FILE" >>"$WORK/palisade.toml"
"$BIN" serve --config "$WORK/palisade.toml" >"$WORK/palisade.log" 2>&1 &
PAL_PID=$!
wait_listening "$PORT" 10 && kill -0 "$PAL_PID" 2>/dev/null || die "palisade did not start (see $WORK/palisade.log)"

declare -A URL PID
URL[palisade]="iscsi://127.0.0.1:$PORT/$IQN/0"; PID[palisade]=$PAL_PID
ISTGT_PORT="$ISTGT_PORT" FILL=random "$PEERS/peers.sh" restart istgt >>"$WORK/peers.log" 2>&1 || die "istgt did not start"
URL[istgt]="$(ISTGT_PORT="$ISTGT_PORT" "$PEERS/peers.sh" url istgt)"; PID[istgt]="$(ISTGT_PORT="$ISTGT_PORT" "$PEERS/peers.sh" pid istgt)"
TGT_PORT="$TGT_PORT" FILL=random "$PEERS/peers.sh" restart tgt >>"$WORK/peers.log" 2>&1 || die "tgt did not start"
URL[tgt]="$(TGT_PORT="$TGT_PORT" "$PEERS/peers.sh" url tgt)"; PID[tgt]="$(TGT_PORT="$TGT_PORT" "$PEERS/peers.sh" pid tgt)"

TSV="$OUT/write-placement.tsv"
rm -f "$TSV"
for r in $(seq 1 "$ROUNDS"); do
  for spec in "cross 1 0" "same 0 0"; do
    read -r placement srv cli <<<"$spec"
    for label in $(round_order "$r" palisade istgt tgt); do
      # Every thread of the target, and the threads it starts later (they inherit the mask);
      # the client (perf.py and the qemu-img it starts) on its CPU.
      taskset -a -p -c "$srv" "${PID[$label]}" >/dev/null || die "taskset ${PID[$label]}"
      CONFIGS=sw256k-qd8 DURATION="$DURATION" ROUND="$placement:$r" PID="${PID[$label]}" OUT="$TSV" \
        taskset -c "$cli" python3 "$PEERS/perf.py" "${URL[$label]}" "$label" 2>&1 | sed "s/^/$placement r$r: /" >&2 ||
        log "$label: run failed"
    done
  done
done
log "done: $TSV"
