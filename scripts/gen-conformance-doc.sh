#!/usr/bin/env bash
# gen-conformance-doc.sh — run libiscsi's whole iscsi-test-cu suite against a file-backed and a
# memory-backed LUN of a fresh debug build and regenerate docs/conformance.md from the results.
#
#   scripts/gen-conformance-doc.sh            (PORT=3413 by default; the runner is scripts/peers/run-cu.py)
#
# Runs (each with two initiator names, -i/-I, and the URL given twice for MultipathIO):
#   file      palisade serve --data-dir: LUN 0 = 1 GiB sparse file        whole suite
#   memory    --config: LUN 0 = 1 GiB memory                              whole suite
#   readonly  the same config's LUN 1 (memory, read_only = true)          SCSI.ReadOnly
#   sanitize  memory LUN 0 with iscsi-test-cu -S (allow SANITIZE)          SCSI.Sanitize
#   lbppb     the config's LUN 2 (memory, 512-byte blocks in 4096-byte physical blocks, 512e)
#             the suites of the five tests that need LOGICAL BLOCKS PER PHYSICAL BLOCK >= 2
# A test that SKIPs in a whole-suite run but PASSes in a dedicated run counts as passed.
# The reasons for tests that stay skipped (not applicable) are in scripts/gen-conformance-doc.py.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PORT:-3413}"
IQN="iqn.2026-11.io.palisade:default"
WORK="$(mktemp -d /tmp/palisade-conformance-XXXXXX)"
OUT="$WORK/results"
BIN="$REPO/target/debug/palisade"
SERVER_PID=""

stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
}
trap 'stop_server; rm -rf "$WORK/data"' EXIT

start_server() {  # start_server ARGS...
  stop_server
  "$BIN" "$@" >> "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "server did not start; log:" >&2; cat "$WORK/server.log" >&2; exit 2
}

run_suite() {  # run_suite LABEL ONLY URL [EXTRA_ARGS]
  ONLY="$2" OUTROOT="$OUT" EXTRA_ARGS="${4:-}" TOTAL_TIMEOUT=1800 \
    INIT1=iqn.2026-11.io.palisade.test:init-a INIT2=iqn.2026-11.io.palisade.test:init-b \
    "$REPO/scripts/peers/run-cu.py" "$3" "$1" > "$WORK/$1.log" 2>&1 || true
  local dir; dir=$(sed -n 's/^output: //p' "$WORK/$1.log" | tail -1)
  [ -f "$dir/results.tsv" ] || { echo "run $1 produced no results" >&2; cat "$WORK/$1.log" >&2; exit 2; }
  cp "$dir/results.tsv" "$WORK/$1.tsv"
  grep -E "^tests: " "$dir/summary.txt" | sed "s/^/$1: /"
}

(cd "$REPO" && cargo build --quiet)
mkdir -p "$WORK/data" "$OUT"

start_server serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data"
run_suite file '.' "iscsi://127.0.0.1:$PORT/$IQN/0"

cat > "$WORK/memory.toml" <<EOF
[[portals]]
name = "conformance"
listen = "127.0.0.1:$PORT"
tpgt = 1

[[targets]]
name = "$IQN"

[[targets.luns]]
id = 0
backend = "memory"
size = "1GiB"

[[targets.luns]]
id = 1
backend = "memory"
size = "64MiB"
read_only = true

[[targets.luns]]
id = 2
backend = "memory"
size = "1GiB"
physical_block_size = 4096
EOF
start_server serve --config "$WORK/memory.toml"
run_suite memory '.' "iscsi://127.0.0.1:$PORT/$IQN/0"
run_suite readonly '^SCSI\.ReadOnly$' "iscsi://127.0.0.1:$PORT/$IQN/1"
run_suite sanitize '^SCSI\.Sanitize$' "iscsi://127.0.0.1:$PORT/$IQN/0" -S
run_suite lbppb '^SCSI\.(WriteSame10|WriteSame16|CompareAndWrite)$' \
  "iscsi://127.0.0.1:$PORT/$IQN/2"
stop_server

python3 "$REPO/scripts/gen-conformance-doc.py" \
  --file "$WORK/file.tsv" --memory "$WORK/memory.tsv" \
  --dedicated "$WORK/readonly.tsv" "$WORK/sanitize.tsv" "$WORK/lbppb.tsv" \
  --libiscsi "$(dpkg-query -W -f='${Version}' libiscsi-bin 2>/dev/null || echo unknown)" \
  > "$REPO/docs/conformance.md"
echo "wrote docs/conformance.md (raw results in $WORK)"
