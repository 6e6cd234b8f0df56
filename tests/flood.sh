#!/usr/bin/env bash
# Flooding (docs/security.md, "Flooding"): the daemons for real on loopback, CURVE on, three
# honest hospitals on thyroid, and two flooders (concord-client --test-flood, client/flood.c):
#   site4     enrolled, never says Hello, sends 2000 garbage + 2000 replayed (a 256 KiB Update
#             it signed once) + 2000 oversized messages per second offered
#   intruder  a key that is not enrolled, opening 100 new connections per second
#  A. no flood: the coordinator's peak RSS (VmHWM) as the baseline. Then 500 half-open
#     connections (a ZMTP greeting, then silence) are closed after handshake_timeout_s.
#  B. default [limits]: every round closes with the three honest updates well before its
#     deadline; the limiter drops site4's excess (concord_messages_rate_limited_total grows)
#     so that at most burst + rate x elapsed of its messages reach verification; ZAP denies
#     the intruder; one log line per 5 s, not per message; VmHWM stays within the baseline
#     plus the queue bound (queue_messages x the largest flood message per connection).
#  C. the same flood with limits.rate = 0 (limiter off): nothing is rate-limited and the
#     flood reaches verification many times over B's bound — so in B it was the limiter
#     that dropped it; RSS stays bounded by the queue limit alone.
#  D. site4 sends messages of 1,000,000 empty parts (ZeroMQ bounds neither): the connection
#     guard cuts its connection, never an honest one; rounds go on; RSS stays bounded.
set -euo pipefail
build=$1
. "$(dirname "$0")/lib.sh"
w=$tmp/w
cur=$w/logs
fail() { echo "FAIL: $*"; tail -20 "$cur/coordinator.log" 2>/dev/null; exit 1; }

DEADLINE=10      # per-round deadline (s); a round that waited for it took >= 10 s
FLOOD_S=8        # seconds of flood measured in B and C
RATE=20 BURST=100 QUEUE=16   # the [limits] defaults, asserted below against --print-config
# Under ASan the coordinator's RSS measures the sanitizer (shadow memory, a 256 MB quarantine
# of freed blocks), not its queues: the RSS bounds are checked in the plain build only.
sanitized=0
if [ "${CONCORD_SANITIZE_PASS:-0}" = 1 ] || grep -q '^CONCORD_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  sanitized=1
fi
# LeakSanitizer: libzmq 4.3.4 sometimes never frees the buffers of a connection the flood cuts
# mid-handshake (seen once in CI: 18 KB lost inside libzmq.so; no frame of ours is shown, as
# libzmq has no frame pointers). Leaks allocated inside libzmq are suppressed for this test
# only — that would also hide a ZeroMQ message we forgot to close, which the daemons' normal
# runs under valgrind (tests/valgrind_daemons_slow.sh) and the other sanitized tests catch.
if [ "$sanitized" = 1 ]; then
  export FLOOD_CLOSE_SLACK=5   # ASan's slower coordinator closes the half-open connections later
  printf 'leak:libzmq.so\n' >"$tmp/lsan.supp"
  export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$tmp/lsan.supp"
fi

rounds_in() { [ -f "$w/history.jsonl" ] && wc -l <"$w/history.jsonl" || echo 0; }
metrics() {
  $py -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$mport/metrics" 2>/dev/null || true
}
metric() { metrics | awk -v k="$1" '$1 == k {print $2}'; }
rejected_sum() { metrics | awk '/^concord_messages_rejected_total/ {s += $2} END {print s + 0}'; }
vmhwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# CPU seconds (user + system) of the poll loop's thread and of all the others (ZeroMQ's I/O
# thread decrypts CURVE, libmicrohttpd's serves /metrics).
cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" -v main="$1" '{t = ($14 + $15) / hz; if ($1 == main) m += t; else o += t}
    END {printf "%.1f s in the poll loop, %.1f s in other threads", m, o}' /proc/"$1"/task/*/stat
}
now() { date +%s.%N; }

"$build/concord-sim" --data "$data/thyroid.train" --clients 4 --rounds 100000 --epochs 5 --split iid --seed 7 \
  --deadline "$DEADLINE" --workdir "$w" --prepare-only >/dev/null
"$build/concord-keygen" --id intruder --out "$w/intruder" >/dev/null 2>&1
sed -e 's/^id = site4$/id = intruder/' -e "s|keys/site4.key|intruder/intruder.key|" -e "s|clients/site4|clients/intruder|" \
  "$w/configs/site4.ini" >"$w/configs/intruder.ini"
grep -q "intruder/intruder.key" "$w/configs/intruder.ini" || fail "intruder config not written"
defaults=$("$build/concord-coordinator" --config "$w/configs/coordinator.ini" --print-config)
for kv in "rate = $RATE" "burst = $BURST" "queue_messages = $QUEUE"; do
  grep -q "^$kv\$" <<<"$defaults" || fail "[limits] default changed (expected $kv): update this test's bounds"
done

# run LABEL FLOOD(0/1) [coordinator flags...]: starts everything; leaves $coord, $t_start set.
run() {
  local label=$1 flood=$2; shift 2
  rm -rf "$w/coordinator-state" "$w/history.jsonl" "$w/ledger.jsonl" "$w/clients"
  cur=$w/logs/$label
  mkdir -p "$cur" "$w/clients"
  flooders=()
  mport=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$build/concord-coordinator" --config "$w/configs/coordinator.ini" --set federation.min_clients=3 \
    --set metrics.http_bind="127.0.0.1:$mport" "$@" >"$w/logs/$label/coordinator.log" 2>&1 &
  coord=$!; pids+=("$coord")
  t_start=$(now)
  wait_for '[ -n "$(metric concord_round)" ]' 10
  if [ "$flood" = 1 ]; then
    "$build/concord-client" --config "$w/configs/site4.ini" --test-flood garbage,replay,oversize:2000 \
      >"$w/logs/$label/site4.log" 2>&1 &
    pids+=("$!"); flooders=("$!")
    "$build/concord-client" --config "$w/configs/intruder.ini" --test-flood connect:100 \
      >"$w/logs/$label/intruder.log" 2>&1 &
    pids+=("$!"); flooders+=("$!")
    sleep 1   # the flood is on before the first round starts
  fi
  honest=()
  for s in site1 site2 site3; do
    "$build/concord-client" --config "$w/configs/$s.ini" >"$w/logs/$label/$s.log" 2>&1 &
    pids+=("$!"); honest+=("$!")
  done
}

# stop LABEL: SIGTERM to everyone started by run, in order; the coordinator must exit cleanly.
stop() {
  for p in "${honest[@]}" ${flooders[@]+"${flooders[@]}"}; do kill "$p" 2>/dev/null || true; done
  kill "$coord"; wait "$coord" || fail "$1: coordinator exited with an error"
  for p in "${honest[@]}" ${flooders[@]+"${flooders[@]}"}; do wait "$p" 2>/dev/null || true; done
  flooders=()
}

# check_rounds LABEL: every round ok, with exactly the honest three, closed well before the deadline.
check_rounds() {
  $py - "$w/history.jsonl" "$1" "$DEADLINE" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
label, deadline = sys.argv[2], float(sys.argv[3])
honest = ["site1", "site2", "site3"]
assert len(lines) >= 3, f"{label}: only {len(lines)} rounds"
for l in lines:
    assert l["status"] == "ok", (label, l["round"], l["status"])
    assert sorted(l["participants"]) == honest and sorted(l["responded"]) == honest, (label, l["round"], l["participants"], l["responded"])
d = sorted(l["duration_s"] for l in lines)
# A quarter of the deadline: a round that had waited for the deadline would show >= 10 s.
assert d[-1] < deadline / 4, f"{label}: slowest round {d[-1]:.3f} s (deadline {deadline} s)"
print(f"{label}: {len(lines)} rounds, all ok with {honest}; duration median {d[len(d) // 2]:.3f} s, "
      f"max {d[-1]:.3f} s (deadline {deadline:.0f} s)")
PY
}

# half_open N TIMEOUT_S: N connections that send the 64-byte ZMTP 3.0 greeting of a CURVE
# client and then nothing. The coordinator must close every one of them TIMEOUT_S (the
# handshake timeout) after it connected — not before, not much later — and be back to its
# descriptors of before.
half_open() {
  local port
  port=$(sed -n 's/^bind = tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$w/configs/coordinator.ini")
  $py - "$port" "$coord" "$1" "$2" <<'PY'
import os, selectors, socket, sys, time
port, pid, n, timeout = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))
def settled_fds():
    # Rounds keep running: a checkpoint, history or ledger file, or the journal syncer's
    # descriptor, is open for a moment now and then. The fewest over half a second is the
    # coordinator's standing count.
    n = fds()
    for _ in range(25):
        time.sleep(0.02)
        n = min(n, fds())
    return n
f0 = settled_fds()
greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\0") + b"\0" * 32
sel, born, held = selectors.DefaultSelector(), {}, []
def reap(wait_s):
    for key, _ in sel.select(wait_s):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        if not data:   # closed by the coordinator
            held.append(time.monotonic() - born.pop(s))
            sel.unregister(s); s.close()
# In batches well under the listen backlog (ZeroMQ's default, 100): past it the kernel drops
# the handshake's last ACK, the client believes it is connected, and the coordinator accepts
# the connection only when the SYN-ACK is retransmitted 1-3 s later (a CI run measured 4.1 s
# for a 2 s timeout that way). The timeout runs from the coordinator's accept, so the test
# must not overflow the backlog it cannot see.
BATCH = 25
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(greeting)
    born[s] = time.monotonic()
    sel.register(s, selectors.EVENT_READ)
    if i % BATCH == BATCH - 1:
        reap(0.05)   # lets the coordinator's I/O thread accept the batch
peak = fds() - f0
end = time.monotonic() + timeout + 5
while born and time.monotonic() < end:
    reap(0.1)
    peak = max(peak, fds() - f0)
assert not born, f"{len(born)} of {n} half-open connections still open {timeout + 5:.0f} s later"
slack = float(os.environ.get("FLOOD_CLOSE_SLACK", "2"))  # s; more under sanitizers (slower poll loop)
assert min(held) >= timeout - 0.5 and max(held) <= timeout + slack, (min(held), max(held), slack)
time.sleep(0.3)
left = settled_fds()
assert left <= f0, f"{left - f0} descriptors more than before"
print(f"A: {n} half-open connections each closed after {min(held):.1f}-{max(held):.1f} s "
      f"(handshake_timeout_s = {timeout:g}); up to {peak} held at once; descriptors back to {f0}")
PY
}

# ---- A: baseline ------------------------------------------------------------------------------
run a 0 --set limits.handshake_timeout_s=2
wait_for '[ "$(rounds_in)" -ge 20 ]' 60
base_kb=$(vmhwm_kb "$coord")
echo "A: baseline coordinator VmHWM ${base_kb} kB"
# Each honest client answers the coordinator's two queue warm-ups (common/transport.h).
warmups=$(metric concord_queue_warmups_received_total)
[ "${warmups:-0}" -ge 6 ] || fail "A: the coordinator received ${warmups:-no} queue warm-ups from 3 clients (expected 2 each)"
half_open 500 2 || fail "A: half-open connections"
check_rounds A
stop A

# ---- B: flood, default limits -----------------------------------------------------------------
run b 1
wait_for '[ "$(rounds_in)" -ge 1 ]' 30
limited1=$(metric concord_messages_rate_limited_total)
sleep "$FLOOD_S"
limited2=$(metric concord_messages_rate_limited_total)
rejected=$(rejected_sum)
denied=$(metric concord_zap_denied_total)
# Measured after the counters: burst + rate x elapsed is then an upper bound of what passed.
elapsed=$($py -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$(now)" "$t_start")
hwm_kb=$(vmhwm_kb "$coord")
cpu=$(cpu_s "$coord")
stop B
check_rounds B
grep -h "event=flood_end" "$w/logs/b/site4.log" "$w/logs/b/intruder.log" | sed 's/.*event=flood_end /B: flooder sent: /'
$py - "$limited1" "$limited2" "$rejected" "$denied" "$elapsed" "$RATE" "$BURST" <<'PY' || fail "B: counters"
import sys
l1, l2, rejected, denied = (int(x) for x in sys.argv[1:5])
elapsed, rate, burst = (float(x) for x in sys.argv[5:8])
bound = burst + rate * elapsed + 5   # + 5: an honest client's occasional refusal
assert 0 < l1 < l2, f"rate-limited count not growing: {l1} -> {l2}"
assert rejected <= bound, f"{rejected} messages reached verification and were refused, over burst + rate x {elapsed:.1f} s = {bound:.0f}"
assert denied > 100, f"only {denied} ZAP denials for the intruder's connection flood"
print(f"B: rate-limited {l1} -> {l2}; {rejected} refused after verification (bound {bound:.0f} in {elapsed:.1f} s); "
      f"{denied} connections denied by ZAP")
PY
log_lines=$(grep -c "event=rate_limited client=site4" "$w/logs/b/coordinator.log" || true)
zap_lines=$(grep -c "event=zap_denied" "$w/logs/b/coordinator.log" || true)
max_lines=$($py -c "import sys; print(int(float(sys.argv[1]) / 5) + 2)" "$elapsed")
[ "$log_lines" -ge 1 ] && [ "$log_lines" -le "$max_lines" ] || fail "B: $log_lines rate_limited log lines (want 1..$max_lines: one per 5 s)"
[ "$zap_lines" -ge 1 ] && [ "$zap_lines" -le "$max_lines" ] || fail "B: $zap_lines zap_denied log lines (want 1..$max_lines)"
echo "B: log lines: $log_lines rate_limited, $zap_lines zap_denied over ${elapsed%.*} s; coordinator CPU: ${cpu}"
# RSS bound: the baseline, plus per flooding connection queue_messages (16) messages of at
# most 257 KiB (the replayed Update; garbage is 64 KiB, oversized frames are refused by
# ZeroMQ before they are allocated): 2 x 16 x 257 KiB = 8.0 MiB, plus 16 MiB for allocator
# arenas and handshake buffers. Without the queue bound this flood held > 1 GB (docs/security.md).
limit_kb=$((base_kb + 2 * QUEUE * 257 + 16 * 1024))
check_rss() {
  if [ "$sanitized" = 1 ]; then echo "SKIP: $1: RSS bound not checked under sanitizers (VmHWM ${hwm_kb} kB)"; return; fi
  [ "$hwm_kb" -le "$limit_kb" ] || fail "$1: coordinator VmHWM ${hwm_kb} kB over ${limit_kb} kB"
  echo "$1: coordinator VmHWM ${hwm_kb} kB (baseline ${base_kb} kB, bound ${limit_kb} kB$2)"
}
check_rss B ""

# ---- C: the same flood, limiter off -----------------------------------------------------------
run c 1 --set limits.rate=0
wait_for '[ "$(rounds_in)" -ge 1 ]' 30
sleep "$FLOOD_S"
elapsed=$($py -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$(now)" "$t_start")
limited=$(metric concord_messages_rate_limited_total)
rejected=$(rejected_sum)   # measured after elapsed: a lower bound of what was verified
hwm_kb=$(vmhwm_kb "$coord")
cpu=$(cpu_s "$coord")
stop C
check_rounds C
[ "$limited" = 0 ] || fail "C: limits.rate = 0 still rate-limited $limited messages"
$py - "$rejected" "$elapsed" "$RATE" "$BURST" "$cpu" <<'PY' || fail "C: the flood did not reach verification without the limiter"
import sys
rejected, elapsed, rate, burst = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
bound = burst + rate * elapsed + 5
assert rejected > 5 * bound, f"only {rejected} refused after verification without the limiter (B's bound: {bound:.0f})"
print(f"C: limiter off: nothing rate-limited, {rejected} messages verified and refused in {elapsed:.1f} s "
      f"({rejected / bound:.0f}x the limiter's bound); coordinator CPU: {sys.argv[5]}")
PY
check_rss C ": the queue limit alone"

# ---- D: one message of very many parts ---------------------------------------------------------
# ZeroMQ keeps every part of a message until the last one arrives and bounds neither their
# number nor their total: an enrolled hospital sending messages of 1,000,000 empty parts took
# the coordinator to 160 MB in 6 s before the connection guard (coordinator/guard.c), and
# more parts per message would take it further. The guard cuts a connection holding more
# bytes than queue_messages whole updates explain: here (16 + 1) x (14 KB + 64 KiB) + 8 MiB.
run d 0
wait_for '[ "$(rounds_in)" -ge 1 ]' 30
"$build/concord-client" --config "$w/configs/site4.ini" --test-flood parts:5 >"$w/logs/d/site4.log" 2>&1 &
pids+=("$!"); flooders=("$!")
sleep "$FLOOD_S"
cut=$(metric concord_connections_cut_total)
hwm_kb=$(vmhwm_kb "$coord")
stop D
check_rounds D
[ "${cut:-0}" -ge 1 ] || fail "D: the parts flood was never cut (concord_connections_cut_total = ${cut:-none})"
grep -q "event=connection_cut client=- peer_addr=127.0.0.1:" "$w/logs/d/coordinator.log" || fail "D: no connection_cut log line"
! grep -q "event=connection_cut client=site[123]" "$w/logs/d/coordinator.log" || fail "D: an honest hospital's connection was cut"
echo "D: the parts flood's connection was cut $cut times in ${FLOOD_S} s; the honest hospitals' never"
# Bounded memory: the baseline plus 96 MiB. A part held costs ZeroMQ 64 bytes against about
# 35 on the wire, the guard looks every 0.1 s, the flooder reconnects at once after a cut,
# and the freed memory stays in the allocator's arenas: measured 47-53 MiB over the
# baseline, flat over 20 s. Without the guard: 160 MB within 6 s (1,000,000-part messages;
# more parts per message, more memory).
limit_kb=$((base_kb + 96 * 1024))
check_rss D ": the connection guard"
# Under sanitizers: no daemon, flooders included, may report anything.
if grep -l "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$w"/logs/*/*.log; then
  fail "sanitizer reports in the logs above"
fi
echo "flood: all checks passed"
