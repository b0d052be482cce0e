#!/usr/bin/env bash
# qd1-placement.sh — 4 KiB random reads at queue depth 1 with every target and the client pinned to
# the same CPUs, next to the floor (benches/qd1_floor.rs), for docs/performance.md (issue 13).
#
# Why pinned: at QD1 each command costs a few wake-ups, and on this 2-CPU VM a wake-up across CPUs
# (an IPI to a halted vCPU) costs ~30 µs where one on the same CPU costs ~3 µs (perf sched traces
# in docs/performance.md). Unpinned, the scheduler decides per run whether a target's thread shares
# the client's CPU or the disk interrupt's, which moves QD1 results by 20 % either way and is no
# property of the target. Pinned, every target gets the same placement:
#   cross: target on CPU 1, client on CPU 0 (an initiator on another host, as in production)
#   same:  target and client on CPU 0 (no IPI at all)
# Storage, like with like: a 1 GiB tmpfs file (Palisade's file LUN, tgt on a copy of the same
# random data) and a 1 GiB file on this machine's disk (Palisade direct_io = true, tgt
# bsoflags=direct, the very same file). "floor" is a server that only reads the 48-byte command
# and writes 48 + 4096 bytes: what the kernel alone costs per I/O, below which no target can go.
#
#   scripts/qd1-placement.sh            # knobs: ROUNDS=3 DURATION=5 OUT=target/qd1-placement/<stamp>
#                                       # PORT=3431 TGT_PORT=41271 TGT_DIRECT_PORT=41272 DISK_DIR=target/qd1-placement
#                                       # BIN=target/release/palisade (built if missing) DISK=1
# Writes OUT/placement.tsv (its servers' files in OUT/qd1-placement/): placement storage label round iops p50_us p99_us cpu_us_per_io cpu_s_per_GiB
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$REPO/scripts/peers"
# shellcheck source-path=SCRIPTDIR source=peers/lib.sh
. "$PEERS/lib.sh"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-5}" PORT="${PORT:-3431}" DISK="${DISK:-1}"
TGT_PORT="${TGT_PORT:-41271}" TGT_DIRECT_PORT="${TGT_DIRECT_PORT:-41272}"
OUT="${OUT:-$REPO/target/qd1-placement/$(date +%Y%m%d-%H%M%S)}"
DISK_DIR="${DISK_DIR:-$REPO/target/qd1-placement}"
BIN="${BIN:-$REPO/target/release/palisade}"
TCK=$(getconf CLK_TCK)
IQN="iqn.2026-12.io.palisade:qd1"
# Its own folder inside OUT: compare-peers.sh passes its run folder, whose server files these must not touch.
mkdir -p "$OUT" "$DISK_DIR"
OUT="$(cd "$OUT" && pwd)"  # the server resolves relative paths against its config's folder
WORK="$OUT/qd1-placement"
mkdir -p "$WORK"
log() { echo "[qd1-placement $(date +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs"
[ -x "$BIN" ] || (cd "$REPO" && cargo build --release -q) || die "cargo build failed"
(cd "$REPO" && cargo bench -q --bench qd1_floor --no-run >/dev/null 2>&1) || die "cannot build benches/qd1_floor.rs"

PAL_FILE="/dev/shm/palisade-qd1-$PORT.img" TGT_FILE="/dev/shm/palisade-qd1-tgt-$PORT.img"
DISK_FILE="$DISK_DIR/qd1-direct-$PORT.img"
PAL_PID=""
cleanup() {
  [ -n "$PAL_PID" ] && kill "$PAL_PID" 2>/dev/null && wait "$PAL_PID" 2>/dev/null
  TGT_PORT="$TGT_PORT" "$PEERS/peers.sh" stop tgt >/dev/null 2>&1
  TGT_PORT="$TGT_DIRECT_PORT" "$PEERS/peers.sh" stop tgt >/dev/null 2>&1
  rm -f "$PAL_FILE" "$TGT_FILE" "$DISK_FILE"
}
trap cleanup EXIT

log "filling 1 GiB on tmpfs (twice, same data) and, with DISK=1, 1 GiB on the disk"
head -c 1G /dev/urandom >"$PAL_FILE" || die "cannot fill $PAL_FILE"
cp "$PAL_FILE" "$TGT_FILE"
[ "$DISK" = 1 ] && { dd if="$PAL_FILE" of="$DISK_FILE" bs=1M oflag=direct status=none || die "cannot fill $DISK_FILE"; }

{
  printf 'data_dir = "%s"\n\n[[portals]]\nname = "loopback"\nlisten = "127.0.0.1:%s"\n\n' "$WORK/palisade-data" "$PORT"
  printf '[[targets]]\nname = "%s"\nportals = ["loopback"]\n\n[[targets.luns]]\nid = 0\nbackend = "file"\npath = "%s"\n' "$IQN" "$PAL_FILE"
  [ "$DISK" = 1 ] && printf '\n[[targets.luns]]\nid = 1\nbackend = "file"\npath = "%s"\ndirect_io = true\n' "$DISK_FILE"
} >"$WORK/palisade.toml"
"$BIN" serve --config "$WORK/palisade.toml" >"$WORK/palisade.log" 2>&1 &
PAL_PID=$!
wait_listening "$PORT" 10 && kill -0 "$PAL_PID" 2>/dev/null || die "palisade did not start (see $WORK/palisade.log)"

declare -A URL PID
URL[palisade]="iscsi://127.0.0.1:$PORT/$IQN/0"; PID[palisade]=$PAL_PID
URL[palisade-direct]="iscsi://127.0.0.1:$PORT/$IQN/1"; PID[palisade-direct]=$PAL_PID
TGT_PORT="$TGT_PORT" TGT_BACKING="$TGT_FILE" "$PEERS/peers.sh" restart tgt >>"$WORK/peers.log" 2>&1 || die "tgt did not start"
URL[tgt]="$(TGT_PORT="$TGT_PORT" "$PEERS/peers.sh" url tgt)"; PID[tgt]="$(TGT_PORT="$TGT_PORT" "$PEERS/peers.sh" pid tgt)"
if [ "$DISK" = 1 ]; then
  TGT_PORT="$TGT_DIRECT_PORT" TGT_BACKING="$DISK_FILE" TGT_BSOFLAGS=direct "$PEERS/peers.sh" restart tgt >>"$WORK/peers.log" 2>&1 ||
    die "tgt (direct) did not start"
  URL[tgt-direct]="$(TGT_PORT="$TGT_DIRECT_PORT" "$PEERS/peers.sh" url tgt)"
  PID[tgt-direct]="$(TGT_PORT="$TGT_DIRECT_PORT" "$PEERS/peers.sh" pid tgt)"
fi

TSV="$OUT/placement.tsv"
printf 'placement\tstorage\tlabel\tround\tiops\tp50_us\tp99_us\tcpu_us_per_io\tcpu_s_per_GiB\n' >"$TSV"
# one_run PLACEMENT STORAGE LABEL ROUND TARGET_CPUS CLIENT_CPU
one_run() {
  local placement="$1" storage="$2" label="$3" round="$4" srv="$5" cli="$6" line
  if [ "$label" = floor ]; then
    line="$(cd "$REPO" && FLOOR_SECONDS="$DURATION" FLOOR_SERVER_CPUS="$srv" FLOOR_CLIENT_CPUS="$cli" \
      cargo bench -q --bench qd1_floor -- --tsv 2>/dev/null | tail -1)"
  else
    local pid="${PID[$label]}" raw="$WORK/$placement-$label-r$round.json" t0 t1
    # Every thread, and the threads they start later (they inherit the mask).
    taskset -a -p -c "$srv" "$pid" >/dev/null || die "taskset $pid"
    t0=$(proc_cpu_ticks "$pid")
    taskset -c "$cli" "$BIN" bench "${URL[$label]}" --pattern randread --block-size 4k --qd 1 \
      --duration "${DURATION}s" --json >"$raw" 2>"$raw.err" || { log "$label: bench failed"; return; }
    t1=$(proc_cpu_ticks "$pid")
    line="$(python3 - "$raw" "$t0" "$t1" "$TCK" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
lat, ios = r["latency"], r["ios"]
print(f'{r["iops"]:.0f}\t{lat["p50_us"]:.1f}\t{lat["p99_us"]:.1f}\t{cpu / ios * 1e6:.2f}\t{cpu / (r["bytes"] / 2**30):.3f}')
PY
)"
  fi
  [ -n "$line" ] || { log "$label: no result"; return; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$placement" "$storage" "$label" "$round" "$line" >>"$TSV"
  log "$placement $label r$round: $line"
}

for r in $(seq 1 "$ROUNDS"); do
  for spec in "cross 1 0" "same 0 0"; do
    read -r placement srv cli <<<"$spec"
    for label in $(round_order "$r" palisade tgt floor); do one_run "$placement" tmpfs "$label" "$r" "$srv" "$cli"; done
    if [ "$DISK" = 1 ]; then
      for label in $(round_order "$r" palisade-direct tgt-direct); do one_run "$placement" disk "$label" "$r" "$srv" "$cli"; done
    fi
  done
done
# Leave the targets as they were found: unpinned.
for label in palisade tgt tgt-direct; do [ -n "${PID[$label]:-}" ] && taskset -a -p -c "0-$(($(nproc) - 1))" "${PID[$label]}" >/dev/null 2>&1; done
log "done: $TSV"
