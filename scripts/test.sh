#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install what is missing, build,
# run every test (ctest), then rebuild under AddressSanitizer + UndefinedBehaviorSanitizer
# and run the suite again (minus the tests labelled "slow", which only re-run long
# training that the plain build already covered).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/install-deps.sh"
export OPENBLAS_NUM_THREADS=1

echo "== build (RelWithDebInfo) =="
"$root/scripts/build.sh" "$root/build"
echo "== tests =="
(cd "$root/build" && ctest --output-on-failure --timeout 900)

echo "== build (ASan + UBSan) =="
"$root/scripts/build.sh" "$root/build-sanitize" -DCONCORD_SANITIZE=ON
echo "== tests under ASan + UBSan =="
export CONCORD_SANITIZE_PASS=1   # tests that already ran under their own sanitizer skip
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$root/build-sanitize" && ctest --output-on-failure --timeout 900 -LE slow)
