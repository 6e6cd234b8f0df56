#!/usr/bin/env bash
# The federation runtime for real: a coordinator and hospitals as separate processes on
# loopback (CURVE + signed updates), on the thyroid data.
#  A. 3 clients x 3 rounds: every round in history.jsonl, the global loss decreases.
#  B. kill -9 of the coordinator mid-round, restart: the run completes and the final model
#     is bit-identical to an uninterrupted run with the same seed (also with every upload
#     waiting for its grant, and with plain FedCE, whose Gram rows the restart rebuilds
#     serially where the uninterrupted run computed them while each update was verified).
#     The FedAvg closes sum a share in the coordinator's summing process; killed, it is
#     noticed at the next close, which sums on threads, and the model is the same bits.
#  C. kill -9 of one client mid-round: the round closes at its deadline with the others
#     (quorum); the client restarts and rejoins a later round.
set -euo pipefail
build=$1
. "$(dirname "$0")/lib.sh"
fail() { echo "FAIL: $*"; for f in "$tmp"/*/logs/coordinator.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }
rounds_in() { [ -f "$1/history.jsonl" ] && wc -l <"$1/history.jsonl" || echo 0; }
# Starts the hospitals site1..site3 of the run prepared in DIR, site3 stopping (SIGSTOP) on
# its first task of a round >= 1; their pids go to cpid (the caller's, or the global one).
declare -A cpid
start_sites() {
  local dir=$1 s extra
  for s in site1 site2 site3; do
    extra=(); [ "$s" = site3 ] && extra=(--test-stop-at-round 1)
    "$build/concord-client" --config "$dir/configs/$s.ini" "${extra[@]}" >>"$dir/logs/$s.log" 2>&1 &
    cpid[$s]=$!; pids+=("${cpid[$s]}")
  done
}

# ---- A ---------------------------------------------------------------------------------
"$build/concord-sim" --data "$data/thyroid.train" --test "$data/thyroid.test" --clients 3 --rounds 3 \
  --epochs 1 --split iid --seed 3 --workdir "$tmp/a" >"$tmp/a.out" 2>&1 || { cat "$tmp/a.out"; fail "A: sim failed"; }
$py - "$tmp/a/history.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["round"] for l in lines] == [0, 1, 2], [l["round"] for l in lines]
assert all(l["status"] == "ok" and len(l["responded"]) == 3 for l in lines)
loss = [l["global"]["loss"] for l in lines]
assert loss[-1] < loss[0], loss
print("A: rounds", [l["round"] for l in lines], "global loss", [round(x, 4) for x in loss])
PY
grep -q "== summary ==" "$tmp/a.out" || fail "A: no summary"
[ -s "$tmp/a/final-model.ckpt" ] && [ -s "$tmp/a/final-model.safetensors" ] || fail "A: no exported model"
# The exported model scores exactly what the coordinator reported for the last round.
"$build/concord-data" eval --model "$tmp/a/final-model.ckpt" --data "$data/thyroid.test" --json >"$tmp/a/eval.json"
$py - "$tmp/a/eval.json" "$tmp/a/history.jsonl" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))
last = [json.loads(l) for l in open(sys.argv[2])][-1]
assert abs(ev["accuracy"] - last["global"]["accuracy"]) < 1e-7, (ev["accuracy"], last["global"]["accuracy"])
print("A: concord-data eval of the exported model agrees with the history:", ev["accuracy"])
PY

# The contribution ledger verifies with the coordinator's key, and a changed byte is caught.
"$build/concord-coordinator" verify-ledger "$tmp/a/ledger.jsonl" --public-key "$tmp/a/keys/coordinator.pub" \
  || fail "A: ledger does not verify"
sed 's/"n_samples":\([0-9]\)/"n_samples":9\1/' "$tmp/a/ledger.jsonl" >"$tmp/a/ledger-tampered.jsonl"
if "$build/concord-coordinator" verify-ledger "$tmp/a/ledger-tampered.jsonl" --public-key "$tmp/a/keys/coordinator.pub" \
     >"$tmp/a/verify.out" 2>&1; then fail "A: a tampered ledger verified"; fi
grep -q "entry 0" "$tmp/a/verify.out" || fail "A: verify-ledger did not name the bad entry: $(cat "$tmp/a/verify.out")"
echo "A: ledger verifies; a credited sample count changed by hand is caught at entry 0"

# ---- B ----------------------------------------------------------------------------------
# Twice: plain FedAvg, then with every method on (FedCE, all three alignment terms, per-class
# server mode), whose state (FedCE registry, targets, clients' minus-model memory) must
# survive the crash too.
cat >"$tmp/all.ini" <<'INI'
[aggregation]
weighting = fedce
[alignment]
variants = gradient,hessian_diag,hgp
[per_class]
mode = server
[storage]
keep_updates = true
INI
# B_REF=LABEL compares with an uninterrupted run made earlier instead of running one.
run_b() {
  local label=$1; shift
  local ref=${B_REF:-$label-ref}
  local common=(--data "$data/thyroid.train" --test "$data/thyroid.test" --clients 3 --rounds 4 --epochs 2
                --split dirichlet:1.0 --seed 11 "$@")
  if [ "$ref" = "$label-ref" ]; then
    "$build/concord-sim" "${common[@]}" --workdir "$tmp/$ref" >"$tmp/$ref.out" 2>&1 ||
      { cat "$tmp/$ref.out"; fail "B/$label: reference run"; }
  fi
  "$build/concord-sim" "${common[@]}" --workdir "$tmp/$label" --prepare-only >/dev/null
  b2=$tmp/$label
  local extra_cfg=()
  [ $# -gt 0 ] && extra_cfg=(--config "$2")
  start_coordinator() {
    "$build/concord-coordinator" --config "$b2/configs/coordinator.ini" "${extra_cfg[@]}" >>"$b2/logs/coordinator.log" 2>&1 &
    coord=$!; pids+=("$coord")
  }
  start_coordinator
  start_sites "$b2"   # site3 stops on round 1's task
  wait_for 'grep -q "test_stop round=1" "$b2/logs/site3.log"' 30
  wait_for '[ "$(grep -c "update_accepted round=1" "$b2/logs/coordinator.log")" -ge 2 ]' 30
  kill -9 "$coord"; wait "$coord" 2>/dev/null || true
  echo "B/$label: coordinator killed with $(grep -c 'update_accepted round=1' "$b2/logs/coordinator.log") of 3 updates of round 1 journaled"
  start_coordinator
  kill -CONT "${cpid[site3]}"
  wait_for '! kill -0 "$coord" 2>/dev/null' 90
  wait "$coord" || fail "B/$label: restarted coordinator exited with an error"
  grep -q "journal_replayed round=1" "$b2/logs/coordinator.log" || fail "B/$label: no journal replay after the restart"
  cmp "$tmp/$ref/final-model.ckpt" "$b2/final-model.ckpt" || fail "B/$label: final model differs from the uninterrupted run ($ref)"
  echo "B/$label: resumed run's final model is bit-identical to the uninterrupted one ($ref)"
}
run_b fedavg
# The summing process (aggregation.sum_process) takes part in each FedAvg close once the
# model has 2 MiB of parameters (thyroid's default MLP has not: it is stopped). With a wider
# MLP (1.1M parameters), a run with it and a run on threads only end in the same bits; and
# killed while round 1 waits for site3, it is noticed at that close, the rest sums on
# threads, and the final model is still the same bits. The sum begun as updates arrive
# ([aggregation] in_time, on by default) ends in the same bits as a close that sums
# everything (in_time = off): the killed run sums site1 and site2 in time for sure, while
# site3 is stopped, and ends in the model of the in_time = off run.
grep -q 'event=sum_process_unused reason="the model has under 2 MiB of parameters"' "$tmp/fedavg-ref/logs/coordinator.log" ||
  fail "B/sum_process: a 2k-parameter model kept its summing process"
printf '[model]\narch = mlp:1024,1024\n' >"$tmp/wide.ini"
{ cat "$tmp/wide.ini"; printf '[aggregation]\nsum_process = false\n'; } >"$tmp/wide-threads.ini"
{ cat "$tmp/wide.ini"; printf '[aggregation]\nin_time = off\n'; } >"$tmp/wide-at-close.ini"
sp_common=(--data "$data/thyroid.train" --test "$data/thyroid.test" --clients 3 --rounds 4 --epochs 1
           --split dirichlet:1.0 --seed 11)
for v in wide wide-threads wide-at-close; do
  "$build/concord-sim" "${sp_common[@]}" --config "$tmp/$v.ini" --workdir "$tmp/sp-$v" >"$tmp/sp-$v.out" 2>&1 ||
    { cat "$tmp/sp-$v.out"; fail "B/sum_process: run $v"; }
done
grep -q "event=sum_process_stopped pid=[0-9]* shares=4 blocks=[0-9]* lost=0" "$tmp/sp-wide-at-close/logs/coordinator.log" ||
  fail "B/sum_process: the summing process did not take a share of each of the 4 closes"
# Summing in time, it takes part in every step (the updates a step can add): 4 or more.
shares=$(sed -n 's/.*event=sum_process_stopped pid=[0-9]* shares=\([0-9]*\) blocks=[0-9]* lost=0.*/\1/p' "$tmp/sp-wide/logs/coordinator.log")
[ "${shares:-0}" -ge 4 ] || fail "B/sum_process: summing in time, the summing process took part in ${shares:-no} sums, not 4 or more"
! grep -q "event=sum_process " "$tmp/sp-wide-threads/logs/coordinator.log" || fail "B/sum_process: sum_process = false still forked one"
cmp "$tmp/sp-wide/final-model.ckpt" "$tmp/sp-wide-threads/final-model.ckpt" ||
  fail "B/sum_process: the summing process and threads alone end in different models"
! grep -q "event=in_time" "$tmp/sp-wide-at-close/logs/coordinator.log" || fail "B/in_time: in_time = off still summed in time"
cmp "$tmp/sp-wide/final-model.ckpt" "$tmp/sp-wide-at-close/final-model.ckpt" ||
  fail "B/in_time: summing in time and at the close end in different models"
sp=$tmp/sp-killed
"$build/concord-sim" "${sp_common[@]}" --config "$tmp/wide.ini" --workdir "$sp" --prepare-only >/dev/null
"$build/concord-coordinator" --config "$sp/configs/coordinator.ini" --config "$tmp/wide.ini" >>"$sp/logs/coordinator.log" 2>&1 &
coord=$!; pids+=("$coord")
start_sites "$sp"
wait_for 'grep -q "test_stop round=1" "$sp/logs/site3.log"' 30
# site1 and site2 (slots 0 and 1) answer round 1 while site3 is stopped: summed in time.
wait_for 'grep -q "event=in_time_summed round=1 slots=[0-9-]* summed=2 of=3" "$sp/logs/coordinator.log"' 60
helper=$(pgrep -P "$coord" || true)
[ -n "$helper" ] || fail "B/sum_process: the coordinator has no child process"
kill -9 "$helper"
kill -CONT "${cpid[site3]}"
wait_for '! kill -0 "$coord" 2>/dev/null' 90
wait "$coord" || fail "B/sum_process: the coordinator exited with an error after its summing process died"
grep -q "event=sum_process_gone round=1" "$sp/logs/coordinator.log" ||
  fail "B/sum_process: the lost summing process was not noticed in round 1"
cmp "$tmp/sp-wide/final-model.ckpt" "$sp/final-model.ckpt" || fail "B/sum_process: final model differs after the summing process died"
echo "B/sum_process: $shares sums it took part in (4 at the close alone), the same bits as threads alone; killed before round 1's close, noticed, same final model"
echo "B/in_time: round 1 summed site1 and site2 while site3 was stopped ($(grep -o "event=in_time_close round=1 [a-z_=0-9 ]*" "$sp/logs/coordinator.log" || echo "the close started over")); the same model as in_time = off ($(grep -c "event=in_time_summed" "$tmp/sp-wide/logs/coordinator.log") in-time steps in the run with the summing process)"
# Upload flow control: with room for one update in flight, every hospital sends UploadReady
# and waits for its grant, across the crash and restart too; the result is the same model.
printf '[federation]\nupload_window_mb = 0\n' >"$tmp/grants.ini"
B_REF=fedavg-ref run_b grants --config "$tmp/grants.ini"
grep -q "event=upload_granted" "$tmp/grants/logs/coordinator.log" || fail "B/grants: no upload grant given"
for s in site1 site2 site3; do
  grep -q "event=upload_ready" "$tmp/grants/logs/$s.log" || fail "B/grants: $s never asked for a grant"
done
# Plain FedCE: each update's Gram row is computed while the update is verified (gram_row=early
# in the log), but after the restart round 1's journaled updates get theirs serially, as the
# replay rebuilds them; the final model must still be the same bits.
printf '[aggregation]\nweighting = fedce\n' >"$tmp/fedce.ini"
run_b fedce --config "$tmp/fedce.ini"
grep -q "event=update_accepted.*gram_row=early" "$tmp/fedce/logs/coordinator.log" ||
  fail "B/fedce: no Gram row was computed while its update was verified"
! grep -q "gram_row=serial" "$tmp/fedce-ref/logs/coordinator.log" ||
  fail "B/fedce: the uninterrupted run computed a Gram row after its update was verified"
run_b all --config "$tmp/all.ini"
# The coordinator builds the minus models (fedce.minus_model = coordinator) with the client
# route's formula on the same floats: a crashed and resumed run of it must end in the final
# model of the uninterrupted client-route run above, with the same FedCE data scores.
{ cat "$tmp/all.ini"; printf '[fedce]\nminus_model = coordinator\n'; } >"$tmp/allcoord.ini"
B_REF=all-ref run_b allcoord --config "$tmp/allcoord.ini"
for s in site1 site2 site3; do
  grep -q "minus_from=coordinator" "$tmp/allcoord/logs/$s.log" || fail "B/allcoord: $s never scored a minus model from its task"
  ! grep -q "minus_from=client" "$tmp/allcoord/logs/$s.log" || fail "B/allcoord: $s rebuilt a minus model itself"
done
$py - "$tmp/all-ref/history.jsonl" "$tmp/allcoord/history.jsonl" <<'PY'
import json, sys
ref, got = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
scores = lambda h: [{k: v["fedce_data"] for k, v in l["clients"].items()} for l in h]
assert scores(ref) == scores(got), (scores(ref), scores(got))
print("B/allcoord: fedce_data of every client and round equal to the client route's:", scores(got)[-1])
PY
$py - "$tmp/all/history.jsonl" <<'PY'
import json, sys
last = [json.loads(l) for l in open(sys.argv[1])][-1]
cl = last["clients"]["site1"]
for k in ("weight", "fedce_cos", "fedce_grad", "fedce_data", "gap_g", "gap_d", "upload_bytes"):
    assert k in cl, k
assert last["weighting"] == "fedce" and last["per_class"] == "server"
assert abs(sum(last["weights"].values()) - 1) < 1e-6
print("B/all: history carries weight, fedce_cos/grad/data, gaps and upload bytes per client")
PY
# Audit: every archived update (safetensors) hashes to the update digest the ledger credits.
"$build/concord-coordinator" verify-ledger "$tmp/all/ledger.jsonl" --public-key "$tmp/all/keys/coordinator.pub" >/dev/null \
  || fail "B/all: ledger does not verify after the crash and restart"
$py - "$tmp/all/ledger.jsonl" "$tmp/all/coordinator-state/updates" <<'PY'
import hashlib, json, os, struct, sys
ledger = [json.loads(l) for l in open(sys.argv[1])]
assert [e["round"] for e in ledger] == [0, 1, 2, 3], [e["round"] for e in ledger]
checked = 0
for e in ledger:
    for cid, cl in e["clients"].items():
        raw = open(os.path.join(sys.argv[2], "round-%06d" % e["round"], cid + ".safetensors"), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        assert hashlib.blake2b(raw[8 + n:], digest_size=32).hexdigest() == cl["update_digest"], (e["round"], cid)
        checked += 1
print(f"B/all: {checked} archived updates match the digests the ledger credits, one entry per round")
PY

# A truncated newest checkpoint is reported and the previous good one used.
st=$tmp/fedavg-ref/coordinator-state
newest=$(ls "$st"/ckpt-*.snap | sort | tail -n 1)
head -c 100 "$newest" >"$newest.cut" && mv "$newest.cut" "$newest"
"$build/concord-coordinator" --config "$tmp/fedavg-ref/configs/coordinator.ini" --rounds 3 >"$tmp/recover.log" 2>&1 ||
  { cat "$tmp/recover.log"; fail "B: restart with a truncated checkpoint failed"; }
grep -q "event=checkpoint_skipped path=$newest" "$tmp/recover.log" || fail "B: the truncated checkpoint was not reported"
grep -q "event=resumed round=3" "$tmp/recover.log" || fail "B: did not fall back to the previous checkpoint"
echo "B: a truncated newest checkpoint is reported and the previous one (round 3) used"

# ---- D: natural sites (--shards), each hospital with its own local test file ----------------
"$build/concord-data" split "$data/thyroid.train" --clients 3 --scheme iid --seed 2 --format csv --out "$tmp/d-train" >/dev/null
"$build/concord-data" split "$data/thyroid.test" --clients 3 --scheme iid --seed 2 --format csv --out "$tmp/d-test" >/dev/null
mkdir -p "$tmp/d-sites"
for i in 1 2 3; do
  cp "$tmp/d-train/site$i.csv" "$tmp/d-sites/hospital$i.csv"
  cp "$tmp/d-test/site$i.csv" "$tmp/d-sites/hospital$i.test.csv"
done
"$build/concord-sim" --shards "$tmp/d-sites" --rounds 2 --seed 2 --workdir "$tmp/d" >"$tmp/d.out" 2>&1 ||
  { cat "$tmp/d.out"; fail "D: --shards run failed"; }
$py - "$tmp/d/history.jsonl" <<'PY'
import json, sys
last = [json.loads(l) for l in open(sys.argv[1])][-1]
assert sorted(last["clients"]) == ["hospital1", "hospital2", "hospital3"], sorted(last["clients"])
assert all("test" in c and c["test"]["n"] > 0 for c in last["clients"].values())
ft = last["federated_test"]
n = sum(c["test"]["n"] for c in last["clients"].values())
mean = sum(c["test"]["n"] * c["test"]["accuracy"] for c in last["clients"].values()) / n
assert ft and abs(ft["accuracy"] - mean) < 1e-6, (ft, mean)
print(f"D: natural sites with local test files: every hospital's local test metrics and their mean ({mean:.4f})")
PY
grep -q "hospitals' local test sets" "$tmp/d.out" || fail "D: summary lacks the local test mean"

# ---- C ---------------------------------------------------------------------------------
"$build/concord-sim" --data "$data/thyroid.train" --clients 3 --rounds 5 --epochs 1 --split iid --seed 4 \
  --deadline 3 --workdir "$tmp/c" --prepare-only >/dev/null
c=$tmp/c
"$build/concord-coordinator" --config "$c/configs/coordinator.ini" >>"$c/logs/coordinator.log" 2>&1 &
coord=$!; pids+=("$coord")
start_sites "$c"
wait_for 'grep -q "test_stop round=1" "$c/logs/site3.log"' 30
kill -9 "${cpid[site3]}"              # killed in the middle of round 1
killed_after=1
wait_for '[ "$(rounds_in "$c")" -ge $((killed_after + 1)) ]' 30
"$build/concord-client" --config "$c/configs/site3.ini" >>"$c/logs/site3.log" 2>&1 &
pids+=("$!")
wait_for '! kill -0 "$coord" 2>/dev/null' 90
wait "$coord" || fail "C: coordinator exited with an error"
$py - "$c/history.jsonl" "$killed_after" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
k = int(sys.argv[2])
hit = lines[k]
assert hit["status"] == "ok" and sorted(hit["responded"]) == ["site1", "site2"], hit["responded"]
later = [l for l in lines[k + 1:] if "site3" in l["responded"]]
assert later, "site3 never rejoined"
print(f"C: round {hit['round']} closed at the deadline with {hit['responded']}; "
      f"site3 rejoined in round {later[0]['round']}")
PY
# Round 1's sum begun in time (site1 and site2, in θ_1's own buffer) had three participants'
# weights: the close gave it up and read θ_1 back from the checkpoint (intime.c).
if grep -q "event=in_time_summed round=1 " "$c/logs/coordinator.log"; then
  grep -q "event=in_time_dropped round=1 " "$c/logs/coordinator.log" || fail "C: round 1's sum in time was not given up"
  grep -q "event=theta_restored round=1 from=checkpoint" "$c/logs/coordinator.log" ||
    fail "C: θ_1 was not read back from the checkpoint"
  echo "C: round 1's sum in time given up at the close, θ_1 read back from the checkpoint"
fi
# ---- E: revoking a hospital and rotating another's key with SIGHUP ----------------------------
"$build/concord-sim" --data "$data/thyroid.train" --clients 3 --rounds 4 --epochs 1 --split iid --seed 5 \
  --deadline 4 --weighting fedce --workdir "$tmp/e" --prepare-only >/dev/null
e=$tmp/e
# The hospitals first, each up to its first Hello (ZeroMQ queues it until the coordinator
# binds), so that all three are welcomed at once and site2, however slowly it starts (ASan),
# is in round 1: round 0 starts as soon as min_clients = 2 are welcomed.
start_sites "$e"
for s in site1 site2 site3; do wait_for "grep -q 'event=connecting' '$e/logs/$s.log'" 60; done
"$build/concord-coordinator" --config "$e/configs/coordinator.ini" --set federation.min_clients=2 \
  >>"$e/logs/coordinator.log" 2>&1 &
coord=$!; pids+=("$coord")
# site3 stops on its first task of round >= 1 (round 2 if, on a loaded machine, it joined late)
wait_for 'grep -q "test_stop round=" "$e/logs/site3.log"' 30
# site2 must have answered round 1 before it is replaced (otherwise the run depends on timing).
wait_for 'grep -q "update_accepted round=1 client=site2" "$e/logs/coordinator.log"' 30
mkdir -p "$e/newkeys"
"$build/concord-keygen" --id site2 --out "$e/newkeys" >"$e/newkeys/line" 2>/dev/null
{ grep '^site1 ' "$e/keys/enrolment.txt"; grep '^site2 ' "$e/newkeys/line"; } >"$e/keys/enrolment.new"
mv "$e/keys/enrolment.new" "$e/keys/enrolment.txt"      # site3 revoked, site2 with a new key
kill -9 "${cpid[site2]}"
kill -HUP "$coord"
wait_for 'grep -q "event=enrolment_reloaded" "$e/logs/coordinator.log"' 10
"$build/concord-client" --config "$e/configs/site2.ini" --set security.identity="$e/newkeys/site2.key" \
  >>"$e/logs/site2.log" 2>&1 &
pids+=("$!")
kill -CONT "${cpid[site3]}"
wait_for '! kill -0 "$coord" 2>/dev/null' 60
wait "$coord" || fail "E: coordinator exited with an error"
grep -q "event=client_revoked client=site3" "$e/logs/coordinator.log" || fail "E: no revocation logged"
grep -q "event=client_key_rotated client=site2" "$e/logs/coordinator.log" || fail "E: no key rotation logged"
grep -q "rejected peer=site3 kind=unknown_sender" "$e/logs/coordinator.log" || fail "E: the revoked hospital's update was not refused"
grep -q "event=revoked" "$e/logs/site3.log" || fail "E: the revoked hospital's log does not say it was refused"
kill -0 "${cpid[site3]}" 2>/dev/null && fail "E: the revoked hospital's daemon kept running"
$py - "$e/history.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert all("site3" not in l["responded"] for l in lines[1:]), [l["responded"] for l in lines]
assert all(sorted(l["responded"]) == ["site1", "site2"] for l in lines[2:]), [l["responded"] for l in lines]
# FedCE history kept across the key rotation: a_k is 1 − the mean of ALL its cosines so far.
cos = []
for l in lines:
    c = l["clients"].get("site2")
    if not c or c.get("fedce_cos") is None:
        continue
    cos.append(c["fedce_cos"])
    want = max(0.0, 1.0 - sum(cos) / len(cos))
    assert abs(c["fedce_grad"] - want) < 1e-6, (l["round"], c["fedce_grad"], want)
assert len(cos) >= 3
print(f"E: site3 revoked by SIGHUP and refused; site2's new key kept its FedCE history "
      f"(a_k = 1 - mean of all {len(cos)} cosines, before and after the rotation)")
PY

# ---- F: a hospital whose data does not fit the model is refused at Hello, with the reason ----
"$build/concord-sim" --data "$data/thyroid.train" --clients 2 --rounds 2 --workdir "$tmp/f" --prepare-only >/dev/null
"$build/concord-coordinator" --config "$tmp/f/configs/coordinator.ini" >>"$tmp/f/logs/coordinator.log" 2>&1 &
coord=$!; pids+=("$coord")
set +e
timeout 30 "$build/concord-client" --config "$tmp/f/configs/site1.ini" --data "$data/diabetes.train" >"$tmp/f/site1.out" 2>&1
rc=$?
set -e
kill "$coord"; wait "$coord" 2>/dev/null || true
[ "$rc" -eq 1 ] || fail "F: a misfitting hospital should exit 1, got $rc"
grep -q 'event=rejected_by_coordinator reason="the data has 8 features, the federation.s model expects 21"' "$tmp/f/site1.out" \
  || fail "F: the hospital's log does not show the reason: $(tail -3 "$tmp/f/site1.out")"
echo "F: a hospital with 8-feature data is refused at Hello and its log says why"

echo "federation: all checks passed"
