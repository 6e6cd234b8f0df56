#!/usr/bin/env bash
# fuzz_smoke.sh — smoke pass of the libFuzzer targets (fuzz/, docs/security.md "Fuzzing"):
# builds them with clang in BUILD_DIR/fuzz-smoke and runs each for FUZZ_SMOKE_SECONDS
# (default 6) from its seed corpus, through scripts/fuzz.sh: about a minute of fuzzing in
# all, plus the build. Fails when a target crashes, leaks, hangs or runs out of memory
# (the reproducer's path is printed).
#
#   bash tests/fuzz_smoke.sh BUILD_DIR SOURCE_DIR        (ctest runs it so)
#
# Skips (prints SKIP, exits 0) when clang or libFuzzer is missing, and in the second,
# sanitizer pass of scripts/test.sh (CONCORD_SANITIZE_PASS=1, or a BUILD_DIR configured
# with CONCORD_SANITIZE=ON): the fuzz build is already ASan + UBSan, once is enough.
set -euo pipefail
build=$(cd "${1:?usage: fuzz_smoke.sh BUILD_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: fuzz_smoke.sh BUILD_DIR SOURCE_DIR}" && pwd)

if [ "${CONCORD_SANITIZE_PASS:-0}" = 1 ] ||
   grep -q '^CONCORD_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "SKIP: fuzz smoke runs in the plain pass only (this is the sanitizer pass)"
  exit 0
fi

rc=0
FUZZ_BUILD_DIR="$build/fuzz-smoke" bash "$src/scripts/fuzz.sh" "${FUZZ_SMOKE_SECONDS:-6}" || rc=$?
case $rc in
  0) echo "fuzz_smoke: OK" ;;
  77) echo "SKIP: clang or libFuzzer is not installed"; exit 0 ;;
  *) echo "fuzz_smoke: FAILED (scripts/fuzz.sh exit $rc)"; exit 1 ;;
esac
