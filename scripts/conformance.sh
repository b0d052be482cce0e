#!/usr/bin/env bash
# conformance.sh URL [label] — run the selected libiscsi iscsi-test-cu suites against one LUN.
#
#   URL    iscsi://127.0.0.1:PORT/IQN/LUN   (scratch LUN: -d "dataloss" tests write to it)
#   label  name for the output (default: palisade)
#
# The selection is tests/conformance/expected-families.txt (override: SELECTION=file).
# The run itself is scripts/peers/run-cu.py: one iscsi-test-cu per suite with initiator
# names INIT1/INIT2 (-i/-I, the URL is also given as the second path, so two sessions/initiators
# are logged in), a hang watchdog (IDLE_TIMEOUT, default 20 s without output) and a per-test
# fallback, so a hung test is recorded as INCOMPLETE instead of hanging CI.
#
# Output: target/conformance/<label>-<timestamp>/ (raw logs, results.tsv, events.log) and a copy
# of the selected results in target/conformance/<label>.tsv (test<TAB>status<TAB>note).
# Prints "conformance <label>: run=N passed=N failed=N skipped=N" and every non-passing test.
# Exit status: 0 when no selected test FAILed/hung (known-bad entries excepted), 1 otherwise,
# 2 on usage or environment errors.
set -euo pipefail

URL="${1:?usage: scripts/conformance.sh iscsi://HOST:PORT/IQN/LUN [label]}"
LABEL="${2:-palisade}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNNER="$REPO/scripts/peers/run-cu.py"
SELECTION="${SELECTION:-$REPO/tests/conformance/expected-families.txt}"
OUT_ROOT="${CONFORMANCE_OUT:-$REPO/target/conformance}"

command -v iscsi-test-cu >/dev/null || { echo "conformance: iscsi-test-cu missing (scripts/install-deps.sh)" >&2; exit 2; }
[ -x "$RUNNER" ] || { echo "conformance: $RUNNER not found or not executable" >&2; exit 2; }
[ -r "$SELECTION" ] || { echo "conformance: selection $SELECTION not readable" >&2; exit 2; }

# Selected entries (suites or single tests) and known-bad tests, comments stripped.
mapfile -t ENTRIES < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$SELECTION" | grep -v '^known-bad:' | grep -v '^$')
mapfile -t KNOWN_BAD < <(sed -n 's/^known-bad:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$SELECTION")
[ "${#ENTRIES[@]}" -gt 0 ] || { echo "conformance: empty selection" >&2; exit 2; }

# Suites to run = FAMILY.SUITE part of every entry, as an anchored regex for the runner's ONLY.
SUITES_RE="^($(for e in "${ENTRIES[@]}"; do echo "$e" | cut -d. -f1,2; done | sort -u | sed 's/\./\\./g' | paste -sd'|'))\$"

mkdir -p "$OUT_ROOT"
LOG="$OUT_ROOT/$LABEL.run.log"
START=$(date +%s)
ONLY="$SUITES_RE" OUTROOT="$OUT_ROOT" TOTAL_TIMEOUT="${TOTAL_TIMEOUT:-600}" \
  INIT1="${INIT1:-iqn.2026-11.io.palisade.test:init-a}" INIT2="${INIT2:-iqn.2026-11.io.palisade.test:init-b}" \
  "$RUNNER" "$URL" "$LABEL" > "$LOG" 2>&1 || true
OUT_DIR=$(sed -n 's/^output: //p' "$LOG" | tail -1)
if [ -z "$OUT_DIR" ] || [ ! -f "$OUT_DIR/results.tsv" ]; then
  echo "conformance: the suite runner produced no results; its log:" >&2
  cat "$LOG" >&2
  exit 2
fi

# Keep only results belonging to a selected entry (a suite entry selects all its tests).
RESULTS="$OUT_ROOT/$LABEL.tsv"
awk -F'\t' -v entries="$(printf '%s\n' "${ENTRIES[@]}")" '
  BEGIN { n = split(entries, e, "\n") }
  { for (i = 1; i <= n; i++) if (e[i] != "" && ($1 == e[i] || index($1, e[i] ".") == 1)) { print; next } }
' "$OUT_DIR/results.tsv" > "$RESULTS"

is_known_bad() { local t; for t in "${KNOWN_BAD[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }
run=0 passed=0 failed=0 skipped=0 known=0
NONPASS=()
while IFS=$'\t' read -r test status note; do
  run=$((run + 1))
  case "$status" in
    PASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)); NONPASS+=("SKIP  $test  $note") ;;
    *) if is_known_bad "$test"; then known=$((known + 1)); NONPASS+=("$status(known-bad)  $test  $note")
       else failed=$((failed + 1)); NONPASS+=("$status  $test  $note"); fi ;;
  esac
done < "$RESULTS"

echo "conformance $LABEL: run=$run passed=$passed failed=$failed skipped=$skipped known-bad=$known ($(( $(date +%s) - START )) s, $URL)"
for line in "${NONPASS[@]}"; do echo "  $line"; done
echo "conformance $LABEL: results $RESULTS, logs $OUT_DIR"
[ "$run" -gt 0 ] || { echo "conformance: no test ran" >&2; exit 1; }
[ "$failed" -eq 0 ]
