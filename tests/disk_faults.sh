#!/usr/bin/env bash
# Faults of the coordinator's disk, with the daemons for real on loopback (issue 5,
# "Hardening"). The coordinator must never lose the last good state, must say which file,
# which operation and which error, and must either go on or stop cleanly (exit 1):
#  1a. disk full (small tmpfs) while appending the journal: the update is not acknowledged
#      (JOURNAL-1), the coordinator stops; after freeing space a restart resumes and the
#      final model is bit-identical to an uninterrupted run.
#  1b. disk full while writing a checkpoint: it stops, the temp file is gone (FILEIO-3), the
#      previous checkpoint is untouched; a restart completes the run.
#  1c. disk full under history.jsonl and the ledger: the round's checkpoint (the commit
#      point) carries its history line and ledger entry, the appends after it fail and the
#      coordinator stops; the restart appends both from the checkpoint, exactly once, and
#      the ledger verifies.
#  1d. file size limit (ulimit -f): SIGXFSZ does not kill the coordinator, the journal
#      append fails with EFBIG, it stops; a restart cuts the torn record and completes.
#  2.  damaged checkpoints at restart (federation.sh B covers a truncated newest one):
#      the newest bit-flipped, the newest truncated and the one before bit-flipped, all bad,
#      checkpoints gone while the journal remains, and a damaged last ledger entry: each bad file is named
#      and the newest good one used, or the coordinator refuses to start; never a fresh start
#      over existing state, and nothing is modified when it refuses.
#  3.  state dir read-only (bind mount remounted ro): at start it says so and exits 1
#      touching nothing; mid-run it stops at the next checkpoint naming the file, and a
#      restart on the writable dir completes the run bit-identically.
#  4.  the final export fails (its directory is missing): the clients are still told Done,
#      the coordinator exits 1 naming the file and the error; a restart exports again (exit 1
#      while it still fails, 0 and the reference model once the directory exists).
# Cases needing mount(2) print "SKIP: reason" when it is not allowed; the script exits 77
# only when every case was skipped.
set -euo pipefail
build=$1
. "$(dirname "$0")/lib.sh"
mounts=()
cleanup_extra() { # innermost mount first
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null || true; done
}
cases=0
skipped=0
cur=""   # workdir of the case running, for fail()

fail() {
  echo "FAIL: $*"
  if [ -n "$cur" ]; then for f in "$cur"/logs/*.log; do echo "== $f"; tail -15 "$f"; done; fi
  exit 1
}
skip() { echo "SKIP: $*"; skipped=$((skipped + 1)); }

# Waits up to $2 seconds for process $1 to end; its exit status goes to $status.
wait_exit() {
  wait_for "! kill -0 $1 2>/dev/null" "$2"
  status=0; wait "$1" 2>/dev/null || status=$?
}
sha_of() { (cd "$1" && find . -type f ! -name '*.log' -print0 | sort -z | xargs -0 sha256sum); }

common=(--data "$data/thyroid.train" --clients 3 --rounds 3 --epochs 1 --split iid --seed 7)
# The uninterrupted run every resumed run is compared with.
"$build/concord-sim" "${common[@]}" --deadline 30 --workdir "$tmp/ref" >"$tmp/ref.out" 2>&1 ||
  { cat "$tmp/ref.out"; fail "reference run"; }

# prep NAME [sim args]: keys, shards and configs of a federation in $tmp/NAME.
prep() {
  local name=$1; shift
  "$build/concord-sim" "${common[@]}" --workdir "$tmp/$name" --prepare-only "$@" >/dev/null
  cur=$tmp/$name
}
# start_coord DIR [coordinator args]: sets $coord.
start_coord() {
  local dir=$1; shift
  "$build/concord-coordinator" --config "$dir/configs/coordinator.ini" "$@" >>"$dir/logs/coordinator.log" 2>&1 &
  coord=$!; pids+=("$coord")
}
# start_clients DIR STOP_ROUND SITES...: each SIGSTOPs itself when round STOP_ROUND's task
# arrives (-1: never). Sets cpid[site].
declare -A cpid
start_clients() {
  local dir=$1 stop=$2; shift 2
  for s in "$@"; do
    "$build/concord-client" --config "$dir/configs/$s.ini" --test-stop-at-round "$stop" >>"$dir/logs/$s.log" 2>&1 &
    cpid[$s]=$!; pids+=("${cpid[$s]}")
  done
}
# Tries a small tmpfs at $1 (size $2); 1 if mounting is not allowed here.
mount_tmpfs() {
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2,mode=0700" tmpfs "$1" 2>"$tmp/mount.err" || return 1
  mounts+=("$1")
}
# Fills the file system of directory $1 to the last byte.
fill() {
  dd if=/dev/zero of="$1/filler" bs=64k 2>/dev/null || true
  [ "$(df --output=avail "$1" | tail -n 1 | tr -d ' ')" -eq 0 ] || fail "could not fill $1"
}
log_has() { grep -q -- "$2" "$1/logs/coordinator.log"; }
# The coordinator's error line for event $2 must name file $3 and the error text $4.
expect_error() {
  local dir=$1 event=$2 file=$3 text=$4 line
  line=$(grep -m 1 "level=error .*event=$event " "$dir/logs/coordinator.log") ||
    fail "no event=$event error line"
  case "$line" in *"$file"*"$text"*) ;; *) fail "event=$event does not name $file and \"$text\": $line" ;; esac
  echo "    logged: ${line#*level=error }"
}
same_model_as_ref() {
  cmp -s "$tmp/ref/final-model.ckpt" "$1/final-model.ckpt" || fail "final model differs from the uninterrupted run"
}
history_rounds() { $py -c 'import json,sys; print(" ".join(str(json.loads(l)["round"]) for l in open(sys.argv[1])))' "$1"; }
stop_clients() { for s in "${!cpid[@]}"; do kill -9 "${cpid[$s]}" 2>/dev/null || true; done; cpid=(); }
# disk_case NAME SIZE DEADLINE: counts a case, prepares federation NAME (round deadline
# DEADLINE s) with a SIZE tmpfs at $tmp/NAME/disk. Sets $d and $mnt (the caller's locals);
# 1 if mounting is not allowed here (why: $tmp/mount.err).
disk_case() {
  cases=$((cases + 1))
  prep "$1" --deadline "$3"
  d=$tmp/$1 mnt=$tmp/$1/disk
  mount_tmpfs "$mnt" "$2"
}
# stops_cleanly LABEL [NOTE]: the coordinator started last exits 1 within 20 s.
stops_cleanly() {
  wait_exit "$coord" 20
  [ "$status" -eq 1 ] || fail "$1: coordinator exit status $status, expected 1${2:+ ($2)}"
}
# restart_completes LABEL DIR [coordinator args]: a restart runs to the end (exit 0) within 30 s.
restart_completes() {
  local label=$1 dir=$2; shift 2
  start_coord "$dir" "$@"
  wait_exit "$coord" 30
  [ "$status" -eq 0 ] || fail "$label: restarted coordinator exited $status"
}
# complete_history LABEL FILE: one line for each of the 3 rounds, in order.
complete_history() {
  [ "$(history_rounds "$2")" = "0 1 2" ] || fail "$1: history rounds: $(history_rounds "$2")"
}
# complete_ledger LABEL LEDGER DIR: verifies with DIR's coordinator key, one entry a round.
complete_ledger() {
  "$build/concord-coordinator" verify-ledger "$2" --public-key "$3/keys/coordinator.pub" >/dev/null ||
    fail "$1: the ledger does not verify"
  [ "$(wc -l <"$2")" -eq 3 ] || fail "$1: the ledger has $(wc -l <"$2") entries, expected 3"
}

# ---- 1a: disk full while appending the journal -------------------------------------------
case_journal_full() {
  local d mnt
  disk_case j 512k 30 || { skip "1a: cannot mount a tmpfs ($(head -n 1 "$tmp/mount.err"))"; return; }
  # The production layout: state, history and ledger on the one disk that fills up.
  local on_disk=(--state-dir "$mnt/state" --set "metrics.history=$mnt/history.jsonl" --set "storage.ledger=$mnt/ledger.jsonl")
  start_coord "$d" "${on_disk[@]}"
  start_clients "$d" 1 site1 site2 site3
  wait_for '[ "$(cat "$d"/logs/site*.log | grep -c "test_stop round=1")" -eq 3 ]' 30
  fill "$mnt"
  for s in site1 site2 site3; do kill -CONT "${cpid[$s]}"; done
  stops_cleanly 1a
  expect_error "$d" journal_failed "$mnt/state/round.journal" "No space left on device"
  log_has "$d" "update_accepted round=1" && fail "1a: an update was accepted although it could not be journaled"
  grep -q "update_acked round=1" "$d"/logs/site*.log && fail "1a: a hospital got an Ack for an update that is not journaled"
  log_has "$d" "event=stopped_on_error" || fail "1a: no final line saying why it stopped"
  # A restart while the disk is still full refuses to run, and says why.
  local good; good=$(sha256sum "$mnt/state/ckpt-00000001.snap")
  start_coord "$d" "${on_disk[@]}"
  stops_cleanly "1a/restart on a full disk"
  expect_error "$d" startup_failed "$mnt/state/" "No space left on device"
  [ "$(sha256sum "$mnt/state/ckpt-00000001.snap")" = "$good" ] || fail "1a: the last good checkpoint changed"
  rm -f "$mnt/filler"
  restart_completes 1a "$d" "${on_disk[@]}"
  log_has "$d" "event=resumed round=1" || fail "1a: the restart did not resume round 1"
  same_model_as_ref "$d"
  stop_clients
  echo "1a: disk full at a journal append: no Ack, exit 1 naming the file; after freeing space the run completes bit-identically"
}

# ---- 1b: disk full while writing a checkpoint --------------------------------------------
case_checkpoint_full() {
  local d mnt
  disk_case c 512k 5 || { skip "1b: cannot mount a tmpfs"; return; }
  start_coord "$d" --state-dir "$mnt/state"
  start_clients "$d" -1 site1 site2
  start_clients "$d" 1 site3                       # never answers round 1: it closes at the deadline
  wait_for 'log_has "$d" "update_accepted round=1 .*updates=2 of=3"' 30
  local before; before=$(sha256sum "$mnt/state/ckpt-00000001.snap")
  fill "$mnt"                                      # before the deadline (5 s) closes round 1
  stops_cleanly 1b
  expect_error "$d" checkpoint_failed "$mnt/state/ckpt-00000002.snap" "No space left on device"
  [ -e "$mnt/state/ckpt-00000002.snap" ] && fail "1b: a checkpoint of round 2 exists"
  compgen -G "$mnt/state/*.tmp.*" >/dev/null && fail "1b: a temp file was left behind (FILEIO-3)"
  [ "$(sha256sum "$mnt/state/ckpt-00000001.snap")" = "$before" ] || fail "1b: the last good checkpoint changed"
  rm -f "$mnt/filler"
  kill -CONT "${cpid[site3]}"
  restart_completes 1b "$d" --state-dir "$mnt/state"
  log_has "$d" "event=resumed round=1" || fail "1b: the restart did not resume round 1"
  complete_history 1b "$d/history.jsonl"
  "$build/concord-data" eval --model "$d/final-model.ckpt" --data "$data/thyroid.test" >/dev/null ||
    fail "1b: the final model does not load"
  stop_clients
  echo "1b: disk full at a checkpoint: exit 1 naming it, no temp file, round 1's checkpoint intact; the restart completes"
}

# ---- 1c: disk full under history.jsonl and the ledger ------------------------------------
case_history_full() {
  local d mnt
  disk_case h 256k 30 || { skip "1c: cannot mount a tmpfs"; return; }
  local files=(--set "metrics.history=$mnt/history.jsonl" --set "storage.ledger=$mnt/ledger.jsonl")
  fill "$mnt"                                      # full from the start: round 0's line cannot be written
  start_coord "$d" "${files[@]}"
  start_clients "$d" -1 site1 site2 site3
  stops_cleanly 1c
  expect_error "$d" history_write_failed "$mnt/history.jsonl" "No space left on device"
  [ -e "$d/coordinator-state/ckpt-00000001.snap" ] || fail "1c: round 0 is not committed (no checkpoint of round 1)"
  grep -q "history_line" "$d/coordinator-state/ckpt-00000001.snap" || fail "1c: the checkpoint does not carry round 0's line"
  [ -s "$mnt/history.jsonl" ] && fail "1c: a history line was written on a full disk"
  rm -f "$mnt/filler"
  restart_completes 1c "$d" "${files[@]}"
  log_has "$d" "event=history_line_restored round=0" || fail "1c: the restart did not append round 0's line"
  log_has "$d" "event=ledger_entry_restored round=0" || fail "1c: the restart did not append round 0's ledger entry"
  complete_history 1c "$mnt/history.jsonl"
  complete_ledger 1c "$mnt/ledger.jsonl" "$d"
  same_model_as_ref "$d"
  stop_clients
  echo "1c: disk full under the history: the checkpoint carries the line and entry, exit 1; the restart appends them once, the ledger verifies"
}

# ---- 1d: file size limit: EFBIG, not a death by SIGXFSZ ----------------------------------
case_file_size_limit() {
  cases=$((cases + 1))
  prep f --deadline 30
  local d=$tmp/f
  # 40 KiB: a checkpoint (15 KB) fits, the journal of round 0 does not hold 3 updates of 15 KB
  # (the third is cut at the limit: a torn record). The log, written under the limit too, stays small.
  (ulimit -f 40; exec "$build/concord-coordinator" --config "$d/configs/coordinator.ini") >>"$d/logs/coordinator.log" 2>&1 &
  coord=$!; pids+=("$coord")
  start_clients "$d" -1 site1 site2 site3
  stops_cleanly 1d "153 would be death by SIGXFSZ"
  expect_error "$d" journal_failed "$d/coordinator-state/round.journal" "File too large"
  restart_completes 1d "$d"
  log_has "$d" "event=journal_truncated" || fail "1d: the restart did not report cutting off the torn record"
  same_model_as_ref "$d"
  stop_clients
  echo "1d: ulimit -f: the journal append fails with EFBIG, exit 1; the restart completes bit-identically"
}

# ---- 2: damaged checkpoints at restart ---------------------------------------------------
# A copy of the finished reference state (checkpoints of rounds 1, 2, 3), with its own
# history, ledger and export paths; k_args hold --rounds 1, so the coordinator stops right
# after recovery (a resumed round >= --rounds exports and exits).
copy_ref_state() {
  local d=$tmp/k/$1
  mkdir -p "$d"
  cp -a "$tmp/ref/coordinator-state" "$d/state"
  cp "$tmp/ref/history.jsonl" "$tmp/ref/ledger.jsonl" "$d/"
  k_args=(--config "$tmp/ref/configs/coordinator.ini" --state-dir "$d/state" --rounds 1 --bind "tcp://127.0.0.1:*"
          --set "metrics.history=$d/history.jsonl" --set "storage.ledger=$d/ledger.jsonl" --set "storage.export=$d/export")
  kdir=$d
}
flip_byte() { $py -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^1]))' "$1" "$2"; }
run_k() { status=0; timeout 20 "$build/concord-coordinator" "${k_args[@]}" >"$kdir/out.log" 2>&1 || status=$?; }
k_has() { grep -q -- "$1" "$kdir/out.log" || { cat "$kdir/out.log"; fail "$2: expected \"$1\""; }; }

case_bad_checkpoints() {
  cases=$((cases + 1))
  cur=""
  copy_ref_state flipped
  flip_byte "$kdir/state/ckpt-00000003.snap" 5000
  run_k
  [ "$status" -eq 0 ] || { cat "$kdir/out.log"; fail "2/flipped: exit $status"; }
  k_has "level=warn .*event=checkpoint_skipped path=$kdir/state/ckpt-00000003.snap reason=\"[^\"]*checksum" 2/flipped
  k_has "event=resumed round=2" 2/flipped
  echo "2: bit-flipped newest checkpoint named (checksum mismatch), round 2's used"

  copy_ref_state two
  truncate -s 7000 "$kdir/state/ckpt-00000003.snap"
  flip_byte "$kdir/state/ckpt-00000002.snap" 100
  run_k
  [ "$status" -eq 0 ] || { cat "$kdir/out.log"; fail "2/two: exit $status"; }
  k_has "event=checkpoint_skipped path=$kdir/state/ckpt-00000003.snap reason=\"[^\"]*cut off" 2/two
  k_has "event=checkpoint_skipped path=$kdir/state/ckpt-00000002.snap reason=\"[^\"]*checksum" 2/two
  k_has "event=resumed round=1" 2/two
  echo "2: truncated newest and bit-flipped second: both named, round 1's used"

  copy_ref_state all
  truncate -s 7000 "$kdir/state/ckpt-00000003.snap"
  flip_byte "$kdir/state/ckpt-00000002.snap" 100
  flip_byte "$kdir/state/ckpt-00000001.snap" 14000
  local before; before=$(sha_of "$kdir")
  run_k
  [ "$status" -ne 0 ] || fail "2/all: started although no checkpoint verifies"
  for r in 1 2 3; do k_has "event=checkpoint_skipped path=$kdir/state/ckpt-0000000$r.snap" 2/all; done
  k_has "level=error .*event=startup_failed .*none of the 3 checkpoints verifies" 2/all
  grep -q "event=fresh_start" "$kdir/out.log" && fail "2/all: started from scratch over existing state"
  [ "$(sha_of "$kdir")" = "$before" ] || fail "2/all: files changed although it refused to start"
  echo "2: every checkpoint bad: each named, refuses to start (exit $status), nothing modified"

  copy_ref_state gone
  rm "$kdir"/state/ckpt-*.snap
  before=$(sha_of "$kdir")
  run_k
  [ "$status" -ne 0 ] || fail "2/gone: started from scratch although the journal remains"
  grep -q "event=fresh_start" "$kdir/out.log" && fail "2/gone: started from scratch over existing state"
  k_has "level=error .*event=startup_failed .*holds no checkpoint, but $kdir/state/[a-z.]* is left from an earlier run" 2/gone
  [ "$(sha_of "$kdir")" = "$before" ] || fail "2/gone: files changed although it refused to start"
  echo "2: checkpoints gone but the journal left: refuses to start from scratch, nothing modified"

  # The ledger's last entry damaged: it could not be extended (LEDGER-3), so the coordinator
  # says so at start rather than stopping at the first commit.
  copy_ref_state ledger
  flip_byte "$kdir/ledger.jsonl" $(($(stat -c %s "$kdir/ledger.jsonl") - 40))
  before=$(sha_of "$kdir")
  run_k
  [ "$status" -eq 1 ] || fail "2/ledger: exit $status with a damaged ledger, expected 1"
  k_has "level=error .*event=startup_failed reason=\"$kdir/ledger.jsonl: " 2/ledger
  [ "$(sha_of "$kdir")" = "$before" ] || fail "2/ledger: files changed although it refused to start"
  echo "2: damaged last ledger entry: refuses to start naming the ledger, nothing modified"
}

# ---- 3: state dir read-only --------------------------------------------------------------
case_read_only() {
  cases=$((cases + 1))
  # At start: an existing state dir mounted read-only; the history (elsewhere) has a line
  # past the checkpoint that a start-up would trim: it must stay.
  copy_ref_state ro
  echo '{"round":3,"status":"ok"}' >>"$kdir/history.jsonl"
  if ! mount --bind "$kdir/state" "$kdir/state" 2>"$tmp/mount.err"; then
    skip "3: cannot bind-mount ($(head -n 1 "$tmp/mount.err"))"; return
  fi
  mounts+=("$kdir/state")
  mount -o remount,ro,bind "$kdir/state" 2>"$tmp/mount.err" || { skip "3: cannot remount read-only"; return; }
  local before; before=$(sha_of "$kdir")
  run_k
  [ "$status" -eq 1 ] || { cat "$kdir/out.log"; fail "3/start: exit $status, expected 1"; }
  k_has "level=error .*event=startup_failed .*$kdir/state: the state dir is not writable: Read-only file system" 3/start
  [ "$(sha_of "$kdir")" = "$before" ] || fail "3/start: files changed"
  grep -q "event=listening" "$kdir/out.log" && fail "3/start: it bound its socket before checking the state dir"
  echo "3: read-only state dir at start: exit 1, says so, nothing touched"

  # Mid-run: the state dir is covered by a read-only bind mount of itself while round 1 is
  # open. (Remounting the file system itself read-only is refused while the journal is open
  # for writing; a write failing through an open file is case 1a.)
  prep r --deadline 30
  local d=$tmp/r st=$tmp/r/coordinator-state
  start_coord "$d"
  start_clients "$d" 1 site1 site2 site3
  wait_for '[ "$(cat "$d"/logs/site*.log | grep -c "test_stop round=1")" -eq 3 ]' 30
  local good; good=$(sha256sum "$st/ckpt-00000001.snap")
  mount --bind "$st" "$st" && mounts+=("$st") && mount -o remount,ro,bind "$st" || fail "3: read-only bind mount"
  for s in site1 site2 site3; do kill -CONT "${cpid[$s]}"; done
  stops_cleanly 3/mid-run
  expect_error "$d" checkpoint_failed "$st/ckpt-00000002.snap" "Read-only file system"
  [ "$(sha256sum "$st/ckpt-00000001.snap")" = "$good" ] || fail "3/mid-run: the last good checkpoint changed"
  umount "$st"; unset 'mounts[${#mounts[@]}-1]'
  restart_completes 3/mid-run "$d"
  same_model_as_ref "$d"
  # Round 1's history line and ledger entry were written before its checkpoint failed: the
  # restart dropped the line and wrote it again, and found the entry there.
  complete_history 3/mid-run "$d/history.jsonl"
  complete_ledger 3/mid-run "$d/ledger.jsonl" "$d"
  stop_clients
  echo "3: state dir read-only mid-run: exit 1 at the checkpoint naming it; the restart completes bit-identically"
}

# ---- 4: the final export fails ------------------------------------------------------------
case_export_failed() {
  cases=$((cases + 1))
  prep x --deadline 30
  local d=$tmp/x out=$tmp/x/exports/final-model   # exports/ does not exist
  start_coord "$d" --set "storage.export=$out"
  start_clients "$d" -1 site1 site2 site3
  wait_exit "$coord" 30
  [ "$status" -eq 1 ] || fail "4: coordinator exit status $status after a failed export, expected 1"
  expect_error "$d" export_failed "$out.ckpt" "No such file or directory"
  log_has "$d" "event=stopped_on_error" || fail "4: no final line saying why it stopped"
  for s in site1 site2 site3; do
    wait_for 'grep -q "event=federation_done" "$d/logs/$s.log"' 10
  done
  # A restart finds the run complete and exports again: still failing, it exits 1 again.
  start_coord "$d" --set "storage.export=$out"
  wait_exit "$coord" 20
  [ "$status" -eq 1 ] || fail "4: restart with the export dir still missing: exit status $status, expected 1"
  [ "$(grep -c "level=error .*event=export_failed prefix=$out " "$d/logs/coordinator.log")" -eq 2 ] ||
    fail "4: the restart did not log its failed export"
  mkdir "$d/exports"
  start_coord "$d" --set "storage.export=$out"
  wait_exit "$coord" 20
  [ "$status" -eq 0 ] || fail "4: restart with the export dir present: exit status $status"
  log_has "$d" "event=already_done" || fail "4: the restart did not find the run complete"
  cmp -s "$tmp/ref/final-model.ckpt" "$out.ckpt" || fail "4: the exported model differs from the uninterrupted run"
  [ -s "$out.safetensors" ] || fail "4: no safetensors export"
  stop_clients
  echo "4: failed final export: Done still sent, exit 1 naming the file; a restart exports the same model"
}

# DISK_FAULTS_ONLY="case_read_only ..." runs some cases (when debugging one).
for c in ${DISK_FAULTS_ONLY:-case_journal_full case_checkpoint_full case_history_full case_file_size_limit
                              case_bad_checkpoints case_read_only case_export_failed}; do
  "$c"
done

# Under the sanitizer build an error report also exits 1: make sure none hides in a log.
if grep -rlE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$tmp" --include='*.log' >"$tmp/san.txt"; then
  cur=""; fail "sanitizer reports in: $(cat "$tmp/san.txt")"
fi
if [ "$skipped" -eq "$cases" ]; then echo "disk_faults: every case skipped"; exit 77; fi
echo "disk_faults: all checks passed ($skipped of $cases cases skipped)"
