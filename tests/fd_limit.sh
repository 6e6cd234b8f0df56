#!/usr/bin/env bash
# The coordinator's open-file limit against its enrolment: every hospital connection costs a
# descriptor, and 64 more are kept for files and ZeroMQ (coordinator/main.c, FD_MARGIN).
#  1. hard limit too low (ulimit -n 100, 70 enrolled: 134 needed): a warning naming the
#     numbers and the remedy (LimitNOFILE / ulimit -n); the limit is left as it is.
#  2. soft limit low, hard limit high (ulimit -Sn 100): the soft limit is raised to the hard
#     one (read back from /proc/PID/limits) and logged; no warning.
#  3. soft limit enough (ulimit -Sn 200): the limit is left alone, nothing logged.
set -euo pipefail
build=$1
. "$(dirname "$0")/lib.sh"
fail() { echo "FAIL: $*"; [ -f "$tmp/coordinator.log" ] && tail -5 "$tmp/coordinator.log"; exit 1; }

enrolled=70 need=134
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -lt 200 ]; then echo "SKIP: hard open-file limit $hard (needs a number of at least 200)"; exit 77; fi

mkdir -p "$tmp/keys"
"$build/concord-keygen" --id coordinator --out "$tmp/keys" >/dev/null 2>&1
for i in $(seq 1 $enrolled); do "$build/concord-keygen" --id "h$i" --out "$tmp/keys" 2>/dev/null | sed -n 1p; done >"$tmp/enrolment.txt"
[ "$(wc -l <"$tmp/enrolment.txt")" -eq $enrolled ] || fail "enrolment has $(wc -l <"$tmp/enrolment.txt") lines"
cat >"$tmp/coordinator.ini" <<EOF
[federation]
bind = tcp://127.0.0.1:*
enrolment = enrolment.txt
[model]
arch = softmax
inputs = 4
classes = 3
[security]
identity = keys/coordinator.key
EOF

# run_with "ULIMIT ARGS" NAME: starts the coordinator under those limits (state in $tmp/NAME),
# waits until it listens; sets $coord and $log.
run_with() {
  log=$tmp/$2.log
  (ulimit $1; exec "$build/concord-coordinator" --config "$tmp/coordinator.ini" --state-dir "$tmp/$2") >"$log" 2>&1 &
  coord=$!; pids+=("$coord")
  wait_for 'grep -q "event=listening" "$log" || ! kill -0 $coord 2>/dev/null' 20
  kill -0 "$coord" 2>/dev/null || { cat "$log"; fail "$2: the coordinator exited"; }
  cp "$log" "$tmp/coordinator.log"
}
soft_limit() { awk '/^Max open files/ {print $4}' "/proc/$1/limits"; }
# SIGTERM is a clean stop: exit 0 (a sanitizer report would make it 1).
stop() {
  kill "$coord"; local status=0; wait "$coord" 2>/dev/null || status=$?
  [ "$status" -eq 0 ] || { cat "$log"; fail "the coordinator exited $status on SIGTERM"; }
}

run_with "-n 100" low
line=$(grep "level=warn .*event=fd_limit_low " "$log") || fail "1: no fd_limit_low warning"
for want in "soft=100 " "hard=100 " "needed=$need " "enrolled=$enrolled " "LimitNOFILE" "ulimit -n"; do
  case "$line" in *"$want"*) ;; *) fail "1: the warning lacks \"$want\": $line" ;; esac
done
grep -q "event=fd_limit_raised" "$log" && fail "1: claims to have raised a limit already at its hard value"
[ "$(soft_limit "$coord")" = 100 ] || fail "1: soft limit $(soft_limit "$coord"), expected 100"
stop
echo "1: hard limit 100 < $need needed: warned (${line#*event=})"

run_with "-Sn 100" raised
[ "$(soft_limit "$coord")" = "$hard" ] || fail "2: soft limit $(soft_limit "$coord"), expected the hard limit $hard"
grep -q "level=info .*event=fd_limit_raised soft_was=100 soft=$hard hard=$hard needed=$need enrolled=$enrolled" "$log" ||
  fail "2: no fd_limit_raised line naming the numbers"
grep -q "event=fd_limit_low" "$log" && fail "2: warned although the limit was raised enough"
stop
echo "2: soft limit 100, hard $hard: raised to $hard and logged"

run_with "-Sn 200" enough
[ "$(soft_limit "$coord")" = 200 ] || fail "3: soft limit $(soft_limit "$coord"), expected 200 (untouched)"
grep -q "event=fd_limit_" "$log" && fail "3: logged about a limit that is enough"
stop
echo "3: soft limit 200 >= $need: untouched, nothing logged"
echo "fd_limit: all checks passed"
