#!/usr/bin/env bash
# test.sh — the project's one test command (also what CI runs through .ci/run):
#   1. scripts/install-deps.sh    tools and the VM image (fast when present)
#   2. cargo build                 the workspace with its tests (debug); then cargo fmt --check
#                                  (workspace + fuzz/) and cargo clippy --all-targets -D warnings
#   3. cargo test --workspace      unit tests + integration tests of the real binary:
#                                  libiscsi clients, iscsi-test-cu conformance, Linux initiator in a VM
#   4. scripts/fuzz-smoke.sh       if present (short fuzz run; the hook is filled by the fuzz work)
# Prints the time of every phase and "N passed, N failed, N ignored" over all cargo test binaries.
# Exits non-zero if any phase fails. Logs: target/test-logs/.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
LOGS="$REPO/target/test-logs"
mkdir -p "$LOGS"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

declare -a SUMMARY=()
status=0
phase() {  # phase NAME LOGFILE COMMAND... : runs, tees output, records time and result
  local name="$1" log="$2"; shift 2
  local t0=$SECONDS rc
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local dt=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then SUMMARY+=("ok    ${dt}s  $name"); else SUMMARY+=("FAIL  ${dt}s  $name (rc=$rc, log $log)"); status=1; fi
  return "$rc"
}

phase "install-deps" "$LOGS/install-deps.log" bash scripts/install-deps.sh || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }
phase "cargo build" "$LOGS/build.log" cargo build --workspace --all-targets || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }
# Style and lints fail the run but do not stop the tests: one report shows everything wrong.
phase "cargo fmt --check" "$LOGS/fmt.log" bash -c 'cargo fmt --all --check && cd fuzz && cargo fmt --all --check'
phase "cargo clippy" "$LOGS/clippy.log" cargo clippy --workspace --all-targets -- -D warnings
rm -f target/conformance/palisade.tsv  # only this run's conformance results count
phase "cargo test" "$LOGS/cargo-test.log" cargo test --workspace --no-fail-fast
if [ -f scripts/fuzz-smoke.sh ]; then
  phase "fuzz smoke" "$LOGS/fuzz-smoke.log" bash scripts/fuzz-smoke.sh
else
  SUMMARY+=("skip  0s  fuzz smoke (scripts/fuzz-smoke.sh not present yet)")
fi

# Totals over every "test result:" line of cargo test.
read -r passed failed ignored < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i }
  } END { print p + 0, f + 0, g + 0 }' "$LOGS/cargo-test.log")
echo
echo "=== summary ($SECONDS s total)"
printf '%s\n' "${SUMMARY[@]}"
echo "cargo test: $passed passed, $failed failed, $ignored ignored"
if [ -f target/conformance/palisade.tsv ]; then
  awk -F'\t' '{ n[$2]++ } END { printf "conformance: %d run, %d passed, %d failed, %d skipped\n", NR, n["PASS"], NR - n["PASS"] - n["SKIP"], n["SKIP"] }' target/conformance/palisade.tsv
fi
if [ "$status" -ne 0 ]; then echo "RESULT: FAILED"; else echo "RESULT: OK"; fi
exit "$status"
