#!/usr/bin/env bash
# Builds Kindling's C++ tests with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DKINDLING_SANITIZE=ON) into build-asan and runs ctest there.
# Covers every ctest suite except sandbox_test: the jail tests clone into new namespaces and run
# children under seccomp without exec'ing first, which ASan's runtime (shadow memory reservations,
# its own threads and /proc reads) does not survive; the jail is exercised by the normal build's
# sandbox_test and the e2e suite. kindling-init is linked dynamically in this build (sanitizer
# runtimes cannot be linked statically), which init_test runs outside a jail.
# With SAN_E2E=1 it then runs the Python end-to-end suite against this build's kindlingd,
# kindling-chunkd and kindling-images (KINDLING_BUILD_DIR=$BUILD). Sandboxes run the normal build's
# static kindling-init (KINDLINGD_ARGS="--init build/src/bin/kindling-init"): their root is a
# runtime image, which has no sanitizer runtimes; the sanitized kindling-init is covered by
# init_test and the init fuzz targets. kindlingd's sanitizer reports go to its log; a report makes
# it exit non-zero, which fails the test that stops it.
# Env: SAN_BUILD_DIR (default build-asan), SAN_CXX (default: the default c++; clang++ also works),
#      SAN_JOBS (build parallelism, default 1), SAN_E2E (1 adds the e2e suite; default 0).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${SAN_BUILD_DIR:-build-asan}
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  cmake -S . -B "$BUILD" -DKINDLING_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    ${SAN_CXX:+-DCMAKE_CXX_COMPILER=$SAN_CXX} >/dev/null || { echo "sanitizers: configure failed"; exit 1; }
fi
TESTS=$(cd "$BUILD" && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p' | grep -vx sandbox_test)
# shellcheck disable=SC2086
cmake --build "$BUILD" -j"${SAN_JOBS:-1}" --target $TESTS $([[ ${SAN_E2E:-0} != 0 ]] && echo kindlingd kindling-chunkd kindling-images) ||
  { echo "sanitizers: build failed"; exit 1; }
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest_rc=0
(cd "$BUILD" && ctest --output-on-failure --timeout 900 -j1 -E '^sandbox_test$') || ctest_rc=$?
e2e_rc=0
if [[ ${SAN_E2E:-0} != 0 ]]; then
  # Leak reports at kindlingd's exit are real findings; the daemon is stopped with SIGTERM.
  [[ -x build/src/bin/kindling-init ]] || bash scripts/build.sh >/dev/null || { echo "sanitizers: build failed"; exit 1; }
  KINDLING_SANITIZED=1 KINDLING_BUILD_DIR=$(cd "$BUILD" && pwd) KINDLINGD_ARGS="--init $(pwd)/build/src/bin/kindling-init" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e || e2e_rc=$?
fi
echo "sanitizers: ctest exit $ctest_rc, e2e exit $e2e_rc"
((ctest_rc == 0 && e2e_rc == 0))
