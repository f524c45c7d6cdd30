#!/usr/bin/env bash
# Builds zfly with warnings as errors and runs the whole test suite (unit selftests, fuzz
# smoke runs when built with clang, integration tests that start real processes).
#   tools/test.sh               gcc build in build/, every test
#   tools/test.sh --sanitize    clang ASan+UBSan build in build-asan/, every test plus fuzzers
# Extra arguments after the option go to ctest (e.g. -L unit, -R bus).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--sanitize" ]; then
  shift
  export ZF_BUILD=${ZF_BUILD:-build-asan}
  export CC=clang
  tools/build.sh -DZF_WERROR=ON -DZF_SANITIZE=ON -DZF_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug
  # Leaks and undefined behaviour fail the run; integration tests also scan process logs.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export ZF_SANITIZED=1
else
  export ZF_BUILD=${ZF_BUILD:-build}
  tools/build.sh -DZF_WERROR=ON
fi
if [ -z "${ZF_TEST_NO_SKIP:-}" ]; then
  exec ctest --test-dir "$ZF_BUILD" --output-on-failure -j2 "$@"
fi
# ZF_TEST_NO_SKIP (set by .ci/run): a test CTest reports as skipped fails the run too, whoever
# made it skip (the Python tests already fail on their own skips then).
log="$ZF_BUILD/ctest-output.txt"
status=0
ctest --test-dir "$ZF_BUILD" --output-on-failure -j2 "$@" | tee "$log" || status=$?
if grep -q '(Skipped)' "$log"; then
  echo "test.sh: ZF_TEST_NO_SKIP is set and CTest skipped tests:" >&2
  grep '(Skipped)' "$log" >&2
  status=1
fi
exit "$status"
