#!/usr/bin/env bash
# ab.sh ROUNDS LABEL=URL[#PID] ... — perf.py against several targets, interleaved: for each round
# and each config every target runs once in turn, in order on odd rounds and reversed on even
# ones, so drift of the machine (other work, thermal, page cache) lands on every target alike.
# CONFIGS, DURATION and OUT go through to perf.py; ROUND is set to the round number.
# Summarise with: scripts/peers/perf_summary.py OUT --labels A,B,...
# Example:
#   scripts/peers/ab.sh 3 tgt="$(scripts/peers/peers.sh url tgt)" \
#     istgt="$(scripts/peers/peers.sh url istgt)" palisade="iscsi://127.0.0.1:3260/IQN/0#$PALISADE_PID"
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -lt 2 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
ROUNDS="$1"
shift
CONFIGS="${CONFIGS:-rr4k-qd1 rr4k-qd32 rr4k-qd128 seq256k-qd8 seq256k-qd32}"
for t in "$@"; do [[ "$t" == *=iscsi://* ]] || die "'$t' is not LABEL=iscsi://…[#PID]"; done
failed=0
for round in $(seq 1 "$ROUNDS"); do
  mapfile -t order < <(round_order "$round" "$@")
  for cfg in $CONFIGS; do
    for t in "${order[@]}"; do
      label="${t%%=*}"
      spec="${t#*=}"
      url="${spec%%#*}"
      pid=""
      [ "$spec" != "$url" ] && pid="${spec#*#}"
      ROUND="$round" CONFIGS="$cfg" PID="$pid" "$PEERS_LIB_DIR/perf.py" "$url" "$label" || failed=$((failed + 1))
    done
  done
done
[ "$failed" -eq 0 ] || die "$failed perf.py run(s) failed"
