#!/usr/bin/env bash
# ab-file-lun.sh — A/B of two palisade binaries on the file LUN against the memory LUN (issue 13).
#
#   scripts/ab-file-lun.sh OLD_BINARY NEW_BINARY
#
# Each binary serves, in turn, one 1 GiB file LUN on /dev/shm and one 1 GiB memory LUN (both
# prefilled); for ROUNDS rounds (order A B, then B A, …) each workload runs DURATION s on both
# LUNs with `NEW_BINARY bench`. Prints one TSV line per run: binary, lun, workload, round, IOPS,
# MiB/s, p50 µs, target CPU-s per GiB. Knobs: ROUNDS=3 DURATION=5 PORT=3421
# WORKLOADS="name|bench args;..." (default: 4 KiB randread QD32, 256 KiB read QD8, 64 sessions).
set -euo pipefail
OLD="$1" NEW="$2"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-5}" PORT="${PORT:-3421}"
WORKLOADS="${WORKLOADS:-rr4k-qd32|--pattern randread --block-size 4k --qd 32;read256k-qd8|--pattern read --block-size 256k --qd 8;rr4k-64s-qd8|--pattern randread --block-size 4k --qd 8 --sessions 64}"
TCK=$(getconf CLK_TCK)
DIR="$(mktemp -d /tmp/palisade-ab.XXXXXX)"
LUN_FILE="/dev/shm/palisade-ab-$PORT.img"
IQN="iqn.2026-11.io.palisade:ab"
PID=""
stop() { if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap 'stop; rm -f "$LUN_FILE"; rm -rf "$DIR"' EXIT
cat >"$DIR/palisade.toml" <<EOF
data_dir = "$DIR"

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
path = "$LUN_FILE"
size = "1GiB"

[[targets.luns]]
id = 1
backend = "memory"
size = "1GiB"
EOF
URL="iscsi://127.0.0.1:$PORT/$IQN"
cpu_ticks() { sed -E 's/^[0-9]+ \(.*\) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
start() {
  RUST_LOG=warn "$1" serve --config "$DIR/palisade.toml" >"$DIR/serve.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do ss -Hltn "sport = :$PORT" | grep -q LISTEN && return 0; sleep 0.1; done
  echo "server did not listen: $(cat "$DIR/serve.log")" >&2; exit 1
}
# The file keeps its data between servers: fill it once, the memory LUN each start.
dd if=/dev/urandom of="$LUN_FILE" bs=1M count=1024 status=none
IFS=';' read -ra loads <<<"$WORKLOADS"
for r in $(seq 1 "$ROUNDS"); do
  order=(A B); [ $((r % 2)) = 0 ] && order=(B A)
  for which in "${order[@]}"; do
    bin="$OLD"; [ "$which" = B ] && bin="$NEW"
    start "$bin"
    "$NEW" bench "$URL/1" --pattern write --block-size 1m --qd 8 --total-bytes 1GiB --json >/dev/null
    for load in "${loads[@]}"; do
      name="${load%%|*}" args="${load#*|}"
      for lun in 0 1; do
        t0=$(cpu_ticks "$PID")
        # shellcheck disable=SC2086 # args are words
        out=$("$NEW" bench "$URL/$lun" --duration "${DURATION}s" --json $args)
        t1=$(cpu_ticks "$PID")
        python3 -c '
import json, sys
r = json.loads(sys.argv[1]); cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
gib = r["bytes"] / 2**30
print("\t".join([sys.argv[5], ("file", "memory")[int(sys.argv[6])], sys.argv[7], sys.argv[8],
      "%.0f" % r["iops"], "%.0f" % r["mib_per_s"], "%.0f" % r["latency"]["p50_us"], "%.3f" % (cpu / gib)]))
' "$out" "$t0" "$t1" "$TCK" "$which" "$lun" "$name" "$r"
      done
    done
    stop
  done
done
