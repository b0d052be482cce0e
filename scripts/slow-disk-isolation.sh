#!/usr/bin/env bash
# slow-disk-isolation.sh — one Palisade server, two LUNs: a fast one (a file on tmpfs) and a slow
# one (a loop device over a file on this machine's disk, throttled to SLOW_IOPS reads and writes
# per second with the blkio cgroup's throttle, cgroup v1 or v2). Measures the fast LUN's 4 KiB
# random-read IOPS alone and while `palisade bench` keeps the slow LUN's queue full: if a
# runtime thread ever waited for the slow disk, the fast LUN would stall with it (issue 13:
# "a slow disk stalls only the commands that wait for it").
#
#   BIN=target/release/palisade OUT=DIR scripts/slow-disk-isolation.sh
#
# Knobs: PORT [41300]  DURATION [8] s per run  ROUNDS [2]  SLOW_IOPS [50]  SLOW_QD [16]
#        FAST_QD [32]  SLOW_DIRECT [0] (1: the slow LUN uses direct_io; 0: buffered, so its
#        reads go through preadv2(RWF_NOWAIT) → EAGAIN → the blocking pool)
#        DISK_DIR [target/isolation, on the repository's disk]
# Writes OUT/isolation.tsv (one row per run) and OUT/isolation.md (the table compare-peers.sh
# puts in docs/performance.md). Needs root (losetup, cgroups). Exit 1 when it cannot measure.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$REPO/target/release/palisade}"
OUT="${OUT:-$REPO/target/isolation/$(date +%Y%m%d-%H%M%S)}"
PORT="${PORT:-41300}"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-2}"
SLOW_IOPS="${SLOW_IOPS:-50}"
SLOW_QD="${SLOW_QD:-16}"
FAST_QD="${FAST_QD:-32}"
SLOW_DIRECT="${SLOW_DIRECT:-0}"
DISK_DIR="${DISK_DIR:-$REPO/target/isolation}"
IQN="iqn.2026-11.io.palisade:isolation"
mkdir -p "$OUT" "$DISK_DIR"
log() { echo "[isolation $(date +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
[ -x "$BIN" ] || die "$BIN is not built (cargo build --release --bin palisade)"
[ "$(id -u)" = 0 ] || die "needs root (losetup, blkio cgroup)"

FAST_FILE="/dev/shm/palisade-isolation-fast-$PORT.img"
SLOW_FILE="$DISK_DIR/isolation-slow-$PORT.img"
LOOP="" PAL_PID="" CGROUP=""
cleanup() {
  if [ -n "$PAL_PID" ] && [ -d "/proc/$PAL_PID" ]; then kill -TERM "$PAL_PID" 2>/dev/null; wait "$PAL_PID" 2>/dev/null; fi
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
  [ -n "$CGROUP" ] && rmdir "$CGROUP" 2>/dev/null
  rm -f "$FAST_FILE" "$SLOW_FILE"
}
trap cleanup EXIT

log "backing stores: $FAST_FILE (tmpfs) and a loop device over $SLOW_FILE ($(df --output=fstype "$DISK_DIR" | tail -1))"
dd if=/dev/urandom of="$FAST_FILE" bs=1M count=256 status=none || die "cannot fill $FAST_FILE"
dd if=/dev/urandom of="$SLOW_FILE" bs=1M count=256 oflag=direct status=none || die "cannot fill $SLOW_FILE"
LOOP="$(losetup --find --show --direct-io=on "$SLOW_FILE")" || die "losetup failed"
MAJMIN="$(lsblk -dno MAJ:MIN "$LOOP" | tr -d ' ')"

cat >"$OUT/isolation.toml" <<EOF
data_dir = "$OUT/palisade-data"

[[portals]]
name = "loopback"
listen = "127.0.0.1:$PORT"
tpgt = 1

[[targets]]
name = "$IQN"
portals = ["loopback"]

[[targets.luns]]
id = 0
backend = "file"
path = "$FAST_FILE"

[[targets.luns]]
id = 1
backend = "block"
path = "$LOOP"
$([ "$SLOW_DIRECT" = 1 ] && echo 'direct_io = true')
EOF
ss -Hltn "sport = :$PORT" | grep -q LISTEN && die "port $PORT is busy"
RUST_LOG=warn "$BIN" serve --config "$OUT/isolation.toml" >"$OUT/palisade.log" 2>&1 &
PAL_PID=$!
for _ in $(seq 100); do ss -Hltn "sport = :$PORT" | grep -q LISTEN && break; sleep 0.1; done
ss -Hltn "sport = :$PORT" | grep -q LISTEN || die "palisade did not listen (log: $OUT/palisade.log)"

# The throttle: every thread of the server (the blocking pool's later ones inherit it) in a
# cgroup whose blkio limit on the loop device is SLOW_IOPS.
if [ -d /sys/fs/cgroup/blkio ]; then
  CGROUP="/sys/fs/cgroup/blkio/palisade-isolation-$PORT"
  mkdir -p "$CGROUP" || die "cannot create $CGROUP"
  echo "$MAJMIN $SLOW_IOPS" >"$CGROUP/blkio.throttle.read_iops_device" || die "blkio read throttle refused"
  echo "$MAJMIN $SLOW_IOPS" >"$CGROUP/blkio.throttle.write_iops_device" || die "blkio write throttle refused"
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw io /sys/fs/cgroup/cgroup.controllers; then
  grep -qw io /sys/fs/cgroup/cgroup.subtree_control || echo +io >/sys/fs/cgroup/cgroup.subtree_control
  CGROUP="/sys/fs/cgroup/palisade-isolation-$PORT"
  mkdir -p "$CGROUP" || die "cannot create $CGROUP"
  echo "$MAJMIN riops=$SLOW_IOPS wiops=$SLOW_IOPS" >"$CGROUP/io.max" || die "io.max refused"
else
  die "no blkio/io cgroup controller to throttle the slow disk with"
fi
echo "$PAL_PID" >"$CGROUP/cgroup.procs" || die "cannot move palisade into $CGROUP"
blockdev --flushbufs "$LOOP" 2>/dev/null || true

URL0="iscsi://127.0.0.1:$PORT/$IQN/0"
URL1="iscsi://127.0.0.1:$PORT/$IQN/1"
TSV="$OUT/isolation.tsv"
printf 'round\trun\tlun\tiops\tp50_us\tp99_us\tp999_us\terrors\n' >"$TSV"
# bench NAME URL QD: one randread run, its row appended to TSV.
bench() {
  local run="$1" lun="$2" url="$3" qd="$4" secs="$5" raw="$OUT/$1-$2-r$r.json"
  timeout -k 5 $((secs + 120)) "$BIN" bench "$url" --pattern randread --block-size 4k --qd "$qd" \
    --duration "${secs}s" --json >"$raw" 2>"$raw.err"
  python3 - "$raw" "$r" "$run" "$lun" "$TSV" <<'PY'
import json, sys
raw, rnd, run, lun, out = sys.argv[1:]
try:
    r = json.load(open(raw))
except Exception:
    sys.exit(f"{run} {lun}: no report ({raw}.err)")
l = r["latency"]
open(out, "a").write("\t".join(map(str, [rnd, run, lun, f'{r["iops"]:.0f}', f'{l["p50_us"]:.0f}', f'{l["p99_us"]:.0f}',
                                          f'{l["p999_us"]:.0f}', r["errors"]])) + "\n")
print(f"{run:6s} {lun:4s} iops={r['iops']:.0f} p50={l['p50_us']:.0f}us p99={l['p99_us']:.0f}us errors={r['errors']}", file=sys.stderr)
PY
}

for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS"
  bench alone fast "$URL0" "$FAST_QD" "$DURATION" || die "fast LUN alone"
  # The slow LUN's run outlasts the fast one's on both sides, so the fast run is measured
  # entirely while the slow queue is full.
  bench busy slow "$URL1" "$SLOW_QD" $((DURATION + 4)) &
  slow=$!
  sleep 2
  bench busy fast "$URL0" "$FAST_QD" "$DURATION" || die "fast LUN next to the slow one"
  wait "$slow" || die "slow LUN"
done

python3 - "$TSV" "$OUT/isolation.md" "$SLOW_IOPS" "$SLOW_QD" "$FAST_QD" "$SLOW_DIRECT" "$DURATION" <<'PY' || die "report"
import csv, statistics, sys
tsv, md, slow_iops, slow_qd, fast_qd, slow_direct, duration = sys.argv[1:]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
def med(run, lun, f):
    v = [float(x[f]) for x in rows if x["run"] == run and x["lun"] == lun]
    return statistics.median(v) if v else None
alone, busy = med("alone", "fast", "iops"), med("busy", "fast", "iops")
slow = med("busy", "slow", "iops")
ratio = busy / alone if alone and busy else None
ok = ratio is not None and ratio >= 0.8
mode = "direct_io" if slow_direct == "1" else "buffered: preadv2(RWF_NOWAIT) misses go to the blocking pool"
n = len([x for x in rows if x["run"] == "alone"])
lines = [
    f"One server, two LUNs; the slow one is a loop device over a file on the machine's disk, throttled to {slow_iops} "
    f"I/O per second by the blkio cgroup ({mode}), kept at QD{slow_qd} by a second `palisade bench`; the fast one is a "
    f"file on tmpfs read at 4 KiB QD{fast_qd}. Medians of {n} rounds of {duration} s (`scripts/slow-disk-isolation.sh`).",
    "",
    "| LUN | IOPS | p50 / p99 / p99.9 µs |",
    "|---|---|---|",
    f"| fast LUN alone | {alone:,.0f} | {med('alone','fast','p50_us'):.0f} / {med('alone','fast','p99_us'):.0f} / {med('alone','fast','p999_us'):.0f} |",
    f"| fast LUN while the slow LUN is busy | {busy:,.0f} | {med('busy','fast','p50_us'):.0f} / {med('busy','fast','p99_us'):.0f} / {med('busy','fast','p999_us'):.0f} |",
    f"| slow LUN (throttled to {slow_iops}/s) | {slow:,.0f} | {med('busy','slow','p50_us'):.0f} / {med('busy','slow','p99_us'):.0f} / {med('busy','slow','p999_us'):.0f} |",
    "",
    f"Fast LUN next to the slow one: {100 * ratio:.0f} % of its throughput alone — "
    + ("**isolated** (≥ 80 %)." if ok else "**not isolated** (< 80 %)."),
]
open(md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
