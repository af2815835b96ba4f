#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the C++ unit and integration tests (ctest)
# and the Python integration and end-to-end tests (pytest, against real kindlingd processes and
# sandboxes, with the AWS CLI and boto3), then a short libFuzzer run per fuzz target (FUZZ_SECONDS,
# default 20). Prints a summary line per runner, then the total.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
bash scripts/build.sh || exit 1

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

ctest_rc=0
(cd build && ctest --output-on-failure --timeout 600 -j1) 2>&1 | tee "$logs/ctest" || ctest_rc=$?

pytest_rc=0
# Debian's python3 carries the boto3 and pytest the tests use, whatever python3 is first on PATH.
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/ 2>&1 | tee "$logs/pytest" || pytest_rc=$?
[[ $pytest_rc == 5 ]] && pytest_rc=0  # no tests collected is not a failure

# libFuzzer targets (fuzz/), each FUZZ_SECONDS on its committed corpus: prints '<N> passed, <M> failed'.
# Skipped (not failed) where clang is missing.
fuzz_rc=0
if command -v clang >/dev/null && command -v clang++ >/dev/null; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh 2>&1 | tee "$logs/fuzz" || fuzz_rc=$?
else
  echo "fuzz: clang not found, fuzzing skipped"
fi

# One closing line over all three runners: ctest's tests, pytest's tests, fuzz targets.
count() { grep -oE "$2" "$logs/$1" 2>/dev/null | tail -1 | grep -oE '[0-9]+' | head -1; }
ctest_total=$(grep -oE 'out of [0-9]+' "$logs/ctest" | tail -1 | grep -oE '[0-9]+'); ctest_total=${ctest_total:-0}
ctest_failed=$(count ctest '[0-9]+ tests failed'); ctest_failed=${ctest_failed:-0}
py_passed=$(count pytest '[0-9]+ passed'); py_failed=$(count pytest '[0-9]+ failed'); py_errors=$(count pytest '[0-9]+ error')
fz_passed=$(count fuzz '^[0-9]+ passed'); fz_failed=$(count fuzz '[0-9]+ failed$')
passed=$(( ctest_total - ctest_failed + ${py_passed:-0} + ${fz_passed:-0} ))
failed=$(( ctest_failed + ${py_failed:-0} + ${py_errors:-0} + ${fz_failed:-0} ))
echo "ctest exit $ctest_rc, pytest exit $pytest_rc, fuzz exit $fuzz_rc"
if [[ $ctest_rc == 0 && $pytest_rc == 0 && $fuzz_rc == 0 ]]; then
  echo "$passed passed, $failed failed"
  exit 0
fi
(( failed > 0 )) || failed=1  # a runner failed without counting it (e.g. a build or collection error)
echo "$passed passed, $failed failed"
exit 1
