#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DCONCORD_FUZZ=ON, in build-fuzz/) and runs each one
# for SECONDS (default 60) on a fresh copy of its seed corpus (fuzz/corpus/<target>/), then
# prints per target: executions, exec/s, coverage (cov: and ft: of libFuzzer's last status
# line), corpus size and crashes. See docs/security.md, "Fuzzing".
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 journal ledger
#
# Targets: envelope config fann csv idx checkpoint journal snapshot ledger (default: all).
# Each run: nice -n 10, -max_total_time=SECONDS -rss_limit_mb=2048 -timeout=10, the
# dictionary fuzz/dict/<target>.dict when there is one. libFuzzer stops a target at its
# first crash (or leak, timeout, out-of-memory); the reproducer is left in
# build-fuzz/fuzz-work/<target>/artifacts/ and its path printed: replay it with
#   build-fuzz/fuzz/fuzz_<target> FILE        (FUZZ_VERBOSE=1 shows what the parser returned)
# and keep it under fuzz/crashes/<target>/.
#
# Environment: FUZZ_BUILD_DIR (default ROOT/build-fuzz); FUZZ_NO_BUILD=1 uses the targets
# already built there (the `fuzz` build target does this); FUZZ_KEEP_CORPUS=1 continues from
# the corpus a previous run grew instead of a fresh copy of the seeds; FUZZ_ARGS adds
# libFuzzer flags. While /tmp/concord-bench.lock (FUZZ_BENCH_LOCK) exists, a timing
# benchmark is running on this machine and nothing is fuzzed: the script waits before each
# target, and a target the lock interrupts goes on, for the seconds it has left, afterwards.
# A lock older than an hour is stale, and under CI (CI set) the lock is ignored.
#
# Exit status: 0 when no target crashed, 1 when one did, 2 on a usage or build error,
# 77 when clang or libFuzzer is not installed (message starting with SKIP).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
all_targets=(envelope config fann csv idx checkpoint journal snapshot ledger)

seconds=60
if [ $# -gt 0 ]; then
  case "$1" in
    ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
  esac
  seconds=$1
  shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $t "*) ;;
    *) echo "fuzz: unknown target '$t' (targets: ${all_targets[*]})" >&2; exit 2 ;;
  esac
done

build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=$(nproc 2>/dev/null || echo 2)

# clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev)
if ! command -v clang >/dev/null 2>&1; then
  echo "SKIP: clang is not installed (deploy/install-deps.sh installs it)"
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
  > "$probe/probe.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" 2>"$probe/err"; then
  echo "SKIP: clang cannot link -fsanitize=fuzzer (install libclang-rt-14-dev): $(head -1 "$probe/err")"
  exit 77
fi

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  echo "== build ($build, clang, CONCORD_FUZZ=ON) =="
  if ! { nice -n 10 cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCONCORD_FUZZ=ON \
           >"$probe/cmake.log" 2>&1 &&
         nice -n 10 cmake --build "$build" --target fuzz_targets -j "$jobs" >>"$probe/cmake.log" 2>&1; }; then
    tail -40 "$probe/cmake.log" >&2
    echo "fuzz: build failed" >&2
    exit 2
  fi
fi

export OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

lock=${FUZZ_BENCH_LOCK:-/tmp/concord-bench.lock}
# CI owns its machine: no benchmark runs beside it, and a lock left behind by an ended
# session must not stall the run. Elsewhere a lock older than an hour is stale too.
[ -n "${CI:-}" ] && lock=/nonexistent/concord-bench.lock
s_lock_held() { [ -e "$lock" ] && [ -n "$(find "$lock" -mmin -60 2>/dev/null)" ]; }
s_wait_for_benchmarks() {
  local said=0
  while s_lock_held; do
    [ $said = 1 ] || echo "fuzz: $lock exists (a benchmark is running): waiting"
    said=1
    sleep 10
  done
}

# The value after "KEY " in a libFuzzer status line ("cov: 123").
s_field() { sed -n "s/.* $1 \([0-9][0-9]*\).*/\1/p" <<<"$2"; }

# Runs target $1 for $2 seconds on $work/corpus, log in $3. If the benchmark lock appears
# meanwhile, the fuzzer is interrupted (SIGTERM: libFuzzer prints its stats and exits 72)
# and the function returns 72 after creating $work/interrupted.
s_run() {
  local bin=$1 secs=$2 log=$3 rc=0 pid watcher
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  timeout --kill-after=30 $((secs + 120)) nice -n 10 "$bin" \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} \
    "$work/corpus" >"$log" 2>&1 &
  pid=$!
  ( while kill -0 "$pid" 2>/dev/null; do
      if s_lock_held; then touch "$work/interrupted"; kill -TERM "$pid" 2>/dev/null; exit 0; fi
      sleep 2
    done ) &
  watcher=$!
  wait "$pid" || rc=$?
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  return $rc
}

printf '%-11s %12s %9s %7s %7s %8s %8s\n' target executions exec/s cov ft corpus crashes > "$probe/table"
failed=0
passed=0
for t in "${targets[@]}"; do
  bin="$build/fuzz/fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing (build with -DCONCORD_FUZZ=ON)" >&2
    exit 2
  fi
  work="$build/fuzz-work/$t"
  mkdir -p "$work"
  rm -rf "$work/artifacts" "$work"/log*
  mkdir -p "$work/artifacts"
  if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]; then rm -rf "$work/corpus"; fi
  mkdir -p "$work/corpus"
  cp "$root/fuzz/corpus/$t/"* "$work/corpus/"
  dict=()
  [ -f "$root/fuzz/dict/$t.dict" ] && dict=("-dict=$root/fuzz/dict/$t.dict")
  echo "== fuzz_$t: ${seconds} s =="
  # Runs in parts when a benchmark interrupts: the next part continues on the grown corpus
  # for the seconds left, after the benchmark.
  left=$seconds execs=0 spent=0 part=0 rc=0 status=""
  while [ "$left" -gt 0 ]; do
    s_wait_for_benchmarks
    part=$((part + 1))
    rm -f "$work/interrupted"
    t0=$(date +%s)
    rc=0
    s_run "$bin" "$left" "$work/log.$part" || rc=$?
    dt=$(($(date +%s) - t0))
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log.$part" | tail -1)
    execs=$((execs + ${n:-0}))
    spent=$((spent + dt))
    st=$(grep -E '^#[0-9]+[[:space:]].* cov: ' "$work/log.$part" | tail -1 || true)
    [ -z "$st" ] || status=$st
    if [ -e "$work/interrupted" ] && [ "$rc" = 72 ]; then
      rc=0
      left=$((left - dt))
      echo "  interrupted by a benchmark after ${dt} s; ${left} s left"
      continue
    fi
    break
  done
  cat "$work"/log.* > "$work/log"
  rate="?"
  [ "$spent" -gt 0 ] && rate=$((execs / spent))
  cov=$(s_field cov: "$status")
  ft=$(s_field ft: "$status")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$status")
  artifacts=$(find "$work/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' \
                -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  ncrash=0
  [ -z "$artifacts" ] || ncrash=$(wc -l <<<"$artifacts")
  if [ "$ncrash" = 0 ] && [ "$rc" != 0 ]; then ncrash="?(rc=$rc)"; fi
  printf '%-11s %12s %9s %7s %7s %8s %8s\n' "$t" "$execs" "$rate" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$ncrash" | tee -a "$probe/table"
  if [ "$ncrash" != 0 ]; then
    failed=$((failed + 1))
    grep -m1 -E '^==[0-9]+==ERROR|runtime error|^SUMMARY|ERROR: libFuzzer' "$work/log" | sed 's/^/  /' || true
    while read -r a; do echo "  reproducer: $a"; done <<<"$artifacts"
    echo "  log: $work/log"
  else
    passed=$((passed + 1))
  fi
done
echo
echo "== fuzz summary ($(date -u +%Y-%m-%d), ${seconds} s per target) =="
cat "$probe/table"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
