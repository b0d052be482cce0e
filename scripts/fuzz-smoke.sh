#!/usr/bin/env bash
# fuzz-smoke.sh — short libFuzzer run of every target in fuzz/ (docs/fuzzing.md); called by
# scripts/test.sh. Installs cargo-fuzz when missing, builds all targets once, runs each for
# FUZZ_SECONDS (default 30) from the seeds made out of fixtures/, prints executions per target
# and fails if any target crashes (the crashing input is kept under target/fuzz-artifacts/).
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 30)
#   FUZZ_TARGETS     space-separated subset of targets (default: all)
#   FUZZ_TARGET_DIR  cargo target dir of the instrumented build; outside the checkout by
#                    default so CI's fresh clones reuse the compiled dependencies
#   FUZZ_SANITIZER   cargo fuzz --sanitizer (default none: safe Rust gains little from ASan,
#                    and without it the build is faster and runs execute ~2x more inputs)
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
TARGETS="${FUZZ_TARGETS:-pdu_framing text_keys login_machine scsi_cdb config_toml}"
TARGET_DIR="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade/fuzz-target}"
SANITIZER="${FUZZ_SANITIZER:-none}"
WORK="$REPO/target/fuzz-smoke"
ARTIFACTS="$REPO/target/fuzz-artifacts"
# cargo fuzz passes nightly-only flags (-Zsanitizer, sancov passes); only stable Rust is here.
export RUSTC_BOOTSTRAP=1

t0=$SECONDS
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked || { echo "fuzz-smoke: cargo install cargo-fuzz failed"; exit 1; }
fi
echo "fuzz-smoke: $(cargo fuzz --version)"

echo "fuzz-smoke: building targets (target dir $TARGET_DIR)"
cargo fuzz build --fuzz-dir fuzz -a -s "$SANITIZER" --target-dir "$TARGET_DIR" || { echo "fuzz-smoke: build failed"; exit 1; }
build_s=$((SECONDS - t0))

rm -rf "$WORK"
mkdir -p "$WORK" "$ARTIFACTS"
python3 fuzz/make_seeds.py "$WORK/seeds" || { echo "fuzz-smoke: seed generation failed"; exit 1; }

status=0
declare -a REPORT=()
for target in $TARGETS; do
  mkdir -p "$WORK/corpus/$target" "$ARTIFACTS/$target"
  log="$WORK/$target.log"
  # The first corpus folder receives new inputs; the seeds folder is only read.
  cargo fuzz run --fuzz-dir fuzz -a -s "$SANITIZER" --target-dir "$TARGET_DIR" "$target" \
    "$WORK/corpus/$target" "$WORK/seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$ARTIFACTS/$target/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    REPORT+=("ok    $target: ${runs:-? runs}, $cov")
  else
    status=1
    REPORT+=("CRASH $target (rc=$rc): see $log; inputs in $ARTIFACTS/$target/")
    grep -m1 -A4 -E "panicked at|ERROR: libFuzzer" "$log" | sed 's/^/      /'
    echo "      reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -a $target <artifact>"
  fi
done

echo
echo "=== fuzz smoke: ${SECONDS_PER_TARGET}s per target, build ${build_s}s, total $((SECONDS - t0))s"
printf '%s\n' "${REPORT[@]}"
exit "$status"
