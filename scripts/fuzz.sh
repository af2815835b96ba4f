#!/usr/bin/env bash
# Builds Kindling's libFuzzer targets (fuzz/, -DKINDLING_FUZZ=ON, clang, with ASan + UBSan) into
# build-fuzz and runs each for FUZZ_SECONDS (default 30) on its committed seed corpus
# fuzz/corpus/<target>/. New inputs go to build-fuzz/corpus-work/<target>/ (the committed corpus is
# only read); crash reproducers to build-fuzz/artifacts/<target>/. Fails if any target crashes,
# leaks, times out on an input or fails to build. Prints '<N> passed, <M> failed'.
# Usage: scripts/fuzz.sh [target...]   (default: every target)
# Env: FUZZ_SECONDS, FUZZ_BUILD_DIR (default build-fuzz), FUZZ_JOBS (build parallelism, default 1).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-30}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=(code_package_fuzz frame_decoder_fuzz init_http_fuzz init_runtime_api_fuzz function_config_fuzz function_name_fuzz base64_fuzz manifest_fuzz lease_header_fuzz)
(($#)) && TARGETS=("$@")

if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
  echo "fuzz: clang not found, fuzzing skipped"
  exit 0
fi

if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DKINDLING_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || {
    echo "fuzz: configure failed"; echo "0 passed, ${#TARGETS[@]} failed"; exit 1; }
fi
if ! cmake --build "$BUILD" -j"${FUZZ_JOBS:-1}" --target "${TARGETS[@]}" >"$BUILD/fuzz-build.log" 2>&1; then
  tail -n 40 "$BUILD/fuzz-build.log"
  echo "fuzz: build failed"; echo "0 passed, ${#TARGETS[@]} failed"; exit 1
fi

passed=0 failed=0
for t in "${TARGETS[@]}"; do
  work=$BUILD/corpus-work/$t art=$BUILD/artifacts/$t
  mkdir -p "$work" "$art"
  log=$BUILD/$t.log
  # -timeout: one input over 10 s is a hang; -rss_limit_mb: a bomb the limits failed to stop.
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$BUILD/fuzz/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$art/" "$work" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
  if [[ $rc == 0 ]]; then
    passed=$((passed + 1))
    echo "fuzz: $t ok (${runs:-?} runs in ${SECONDS_EACH}s, ${cov:-cov: ?})"
  else
    failed=$((failed + 1))
    echo "fuzz: $t FAILED (exit $rc); log $log, reproducer in $art/:"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -n 10
  fi
done
echo "$passed passed, $failed failed"
((failed == 0))
