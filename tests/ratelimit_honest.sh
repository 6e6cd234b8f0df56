#!/usr/bin/env bash
# Honest hospitals are never rate-limited, however fast the rounds go: every message they
# send in a round answers a task (the task's confirmation Heartbeat, the update) and the
# limiter refunds answers. 4 hospitals x 60 short rounds with [limits] rate = 1/s and burst 5
# (a round every ~50 ms): no message may be dropped and every round must have all four.
# Regression: task confirmations were not counted as answers, and with fast rounds honest
# hospitals lost updates to the limiter (rounds then closed at the deadline without them).
set -euo pipefail
build=$1
. "$(dirname "$0")/lib.sh"
fail() { echo "FAIL: $*"; tail -20 "$tmp/w/logs/coordinator.log" 2>/dev/null; exit 1; }
printf '[limits]\nrate = 1\nburst = 5\n' >"$tmp/limits.ini"
"$build/concord-sim" --data "$data/thyroid.train" --clients 4 --rounds 60 --deadline 3 --seed 2 \
  --workdir "$tmp/w" --config "$tmp/limits.ini" >"$tmp/sim.log" 2>&1 || fail "concord-sim failed"
dropped=$(grep -c "event=rate_limited" "$tmp/w/logs/coordinator.log" || true)
[ "$dropped" = 0 ] || fail "$dropped rate_limited lines for honest hospitals"
$py - "$tmp/w/history.jsonl" <<'PY'
import json, sys
rounds = [json.loads(l) for l in open(sys.argv[1])]
assert len(rounds) == 60, len(rounds)
short = [r["round"] for r in rounds if len(r["responded"]) != 4]
assert not short, f"rounds without all four hospitals: {short}"
print(f"60 rounds at rate 1/s, burst 5: all four hospitals in every round, none rate-limited "
      f"(longest round {max(r['duration_s'] for r in rounds):.3f} s)")
PY
