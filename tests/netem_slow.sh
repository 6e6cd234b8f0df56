#!/usr/bin/env bash
# The federation over real (emulated) networks: the coordinator and 4 hospitals each in their
# own network namespace, joined by a bridge in a namespace of this test; nothing is changed
# in the host's own network namespace. On the thyroid data (mlp:64,32: ~14 KB per model):
#  - site2 sits behind a slow, lossy link: 100 ms delay each way (200 ms round trip), 5 %
#    loss each way and 1 Mbit/s each way (sch_netem). The round deadline (5 s) is far above
#    what its task and update need on that link, so the configuration implies that its update
#    arrives in every round: asserted, with an arrival time no faster than the link allows.
#  - site4's link is cut (its bridge port down) for at least two whole rounds, then restored:
#    those rounds close at the deadline with the other three (quorum 0.5) and site4 is missing
#    from them; after the restore it reconnects by itself, answers the first or second round
#    after, and every later one, training each round once (no duplicate updates).
#  - every round completes (status ok), and the coordinator exits 0 after the last one.
# Kernels without sch_netem (some VM kernels, which lack fq and etf too, so no qdisc can delay):
# the rate comes from tbf, the loss from an nftables rule on the bridge and the delay from
# tests/delay_wire.py, a userspace cable of two TAP devices that passes on each frame 100 ms
# after it left; the test says so. Either way the round trip is measured before the
# federation starts (>= 180 ms asserted).
# Skips (exit 77, "SKIP: ...") without root, iproute2, network namespaces, or any way to shape.
# KEEP=1 leaves the files and namespaces for a look (then: ip netns del ccnetPID-...).
set -euo pipefail
build=$1
data=/usr/share/doc/libfann-dev/examples/datasets
py=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }

# ---- capabilities ----------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces and tc"
command -v ip >/dev/null && command -v tc >/dev/null || skip "needs iproute2 (ip, tc): deploy/install-deps.sh"

tag=ccnet$$                      # unique per run: parallel runs never share a namespace
ns_br=$tag-br ns_co=$tag-coord
sites=(site1 site2 site3 site4)
slow=site2 cut=site4
port=7700 coord_ip=10.77.0.1
tmp=$(mktemp -d)
namespaces=() pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do   # anything else still running inside our own namespaces
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ -n "${KEEP:-}" ] && trap - EXIT
w=$tmp/run
fail() {
  echo "FAIL: $*"
  for f in "$w"/logs/*.log "$tmp"/wire-*.log; do [ -f "$f" ] && echo "== $f" && tail -15 "$f"; done
  exit 1
}

ns_add() { ip netns add "$1" && namespaces+=("$1") && ip -n "$1" link set lo up; }
ns_add "$ns_br" 2>/dev/null || skip "cannot create network namespaces (ip netns add failed)"
ip -n "$ns_br" link add br0 type bridge 2>/dev/null || skip "no bridge support in this kernel"
ip -n "$ns_br" link set br0 up

# Joins namespace $1 to the bridge with address $2: eth0 there, port p-$3 on the bridge.
attach() {
  ip -n "$ns_br" link add "p-$3" type veth peer name eth0 netns "$1"
  plug "$@"
}
plug() { # as attach, once both ends exist: p-$3 in the bridge's namespace, eth0 in $1
  ip -n "$ns_br" link set "p-$3" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
}
# As attach, but the link is tests/delay_wire.py (100 ms each way): it makes both TAP ends in
# the bridge's namespace, and the hospital's end moves into $1 (the wire keeps its fd).
attach_delayed() {
  local log=$tmp/wire-$3.log t=0
  ip netns exec "$ns_br" "$py" "$here/delay_wire.py" "p-$3" "w-$3" 0.1 >"$log" 2>&1 &
  pids+=("$!")
  until grep -q '^ready$' "$log"; do
    sleep 0.1; t=$((t + 1))
    kill -0 "${pids[-1]}" 2>/dev/null && [ "$t" -le 50 ] ||
      skip "sch_netem missing and no TAP devices for the delay: $(cat "$log")"
  done
  ip -n "$ns_br" link set "w-$3" netns "$1"
  ip -n "$1" link set "w-$3" name eth0
  plug "$@"
}

# The slow link: 100 ms delay, 5 % loss and 1 Mbit/s each way, on both directions: the
# hospital's eth0 (upload) and its bridge port (download). One netem qdisc if the kernel has
# sch_netem, otherwise tbf for the rate, nftables on the bridge for the loss and delay_wire.py.
mode=netem
{ tc -n "$ns_br" qdisc add dev br0 root netem delay 100ms && tc -n "$ns_br" qdisc del dev br0 root; } \
  2>/dev/null || mode=tbf
shape() { # $1 namespace, $2 device
  if [ "$mode" = netem ]; then
    tc -n "$1" qdisc add dev "$2" root netem delay 100ms loss 5% rate 1mbit
  else
    tc -n "$1" qdisc add dev "$2" root tbf rate 1mbit burst 2kb latency 2s
  fi
}
ns_add "$ns_co"
attach "$ns_co" "$coord_ip" coord || skip "cannot create veth pairs"
for i in 1 2 3 4; do
  ns_add "$tag-site$i"
  if [ "site$i" = "$slow" ] && [ "$mode" != netem ]; then
    attach_delayed "$tag-site$i" "10.77.0.1$i" "site$i"
  else
    attach "$tag-site$i" "10.77.0.1$i" "site$i"
  fi
done

if [ "$mode" = netem ]; then
  shape "$ns_br" "p-$slow"
else
  tc -n "$ns_br" qdisc add dev "p-$slow" root tbf rate 1mbit burst 2kb latency 2s 2>/dev/null ||
    skip "neither sch_netem nor tbf in this kernel: cannot shape a link"
  command -v nft >/dev/null || skip "sch_netem missing and nft (nftables) not installed for the loss"
  ip netns exec "$ns_br" nft -f - 2>/dev/null <<NFT || skip "sch_netem missing and nftables bridge filtering unavailable"
table bridge lossy {
  chain impair {
    type filter hook forward priority 0; policy accept;
    iifname "p-$slow" numgen random mod 100 < 5 counter drop
    oifname "p-$slow" numgen random mod 100 < 5 counter drop
  }
}
NFT
  echo "NOTE: sch_netem is not in this kernel: $slow's link gets 1 Mbit/s (tbf), 5 % loss (nftables)" \
       "and 100 ms delay (tests/delay_wire.py, a userspace TAP cable) each way"
fi
shape "$tag-$slow" eth0

# The delay is really there: the round trip from the slow hospital to the coordinator's
# address, timed as connect() to a closed port (SYN out, RST back). The fastest of 8, since a
# SYN or RST lost to the 5 % loss costs a 1 s retransmission; the first also resolves ARP.
rtt=$(ip netns exec "$tag-$slow" "$py" - "$coord_ip" <<'PY'
import socket, sys, time
rtts = []
for _ in range(8):
    s = socket.socket()
    s.settimeout(3)
    t = time.monotonic()
    try:
        s.connect((sys.argv[1], 9))
    except ConnectionRefusedError:
        rtts.append(time.monotonic() - t)
    except OSError:
        pass
    s.close()
print(f"{min(rtts):.3f}" if rtts else "none")
PY
)
[ "$rtt" != none ] || fail "no answer from $coord_ip over $slow's link"
$py -c "import sys; sys.exit(not 0.18 <= $rtt < 0.5)" ||
  fail "$slow's round trip to the coordinator is $rtt s, not the ~0.2 s its link should add"
echo "$slow's round trip to the coordinator: $rtt s"

# ---- the federation ----------------------------------------------------------------------------
rounds=10 deadline=5
"$build/concord-sim" --data "$data/thyroid.train" --test "$data/thyroid.test" --clients 4 --rounds $rounds \
  --epochs 1 --split iid --seed 7 --deadline $deadline --workdir "$w" --prepare-only >/dev/null
endpoint=tcp://$coord_ip:$port
ip netns exec "$ns_co" "$build/concord-coordinator" --config "$w/configs/coordinator.ini" \
  --set federation.bind="$endpoint" >"$w/logs/coordinator.log" 2>&1 &
coord=$!; pids+=("$coord")
for s in "${sites[@]}"; do
  ip netns exec "$tag-$s" "$build/concord-client" --config "$w/configs/$s.ini" \
    --set coordinator.endpoint="$endpoint" >"$w/logs/$s.log" 2>&1 &
  pids+=("$!")
done

wait_for() { # $1 shell condition, $2 seconds
  local t=0
  until eval "$1"; do
    sleep 0.1; t=$((t + 1))
    [ "$t" -le $(($2 * 10)) ] || fail "timed out waiting for: $1"
  done
}
rounds_in() { [ -f "$w/history.jsonl" ] && wc -l <"$w/history.jsonl" || echo 0; }

# Rounds before `before` closed with the link up; rounds after `cut_at` started with it down,
# and those before `restored_at` also closed before it came back.
wait_for '[ "$(rounds_in)" -ge 2 ]' 40
before=$(rounds_in)
ip -n "$ns_br" link set "p-$cut" down
cut_at=$(rounds_in)
echo "cut $cut's link after $cut_at rounds"
wait_for '[ "$(rounds_in)" -ge $((cut_at + 3)) ]' $((4 * deadline + 10))
restored_at=$(rounds_in)
ip -n "$ns_br" link set "p-$cut" up
echo "restored $cut's link after $restored_at rounds"
[ "$restored_at" -le $((rounds - 3)) ] || fail "the cut took too many rounds: $restored_at of $rounds"

wait_for '! kill -0 "$coord" 2>/dev/null' $((4 * deadline + 30))
wait "$coord" || fail "the coordinator exited with an error"

# ---- what happened -------------------------------------------------------------------------------
# Evidence that the slow link was lossy: netem's drop counters on both ends, or nftables'.
if [ "$mode" = netem ]; then
  { tc -s -n "$ns_br" qdisc show dev "p-$slow"; tc -s -n "$tag-$slow" qdisc show dev eth0; } >"$tmp/drops.txt"
  dropped=$(awk '/dropped/ {gsub(",", "", $7); n += $7} END {print n + 0}' "$tmp/drops.txt")
else
  ip netns exec "$ns_br" nft list table bridge lossy >"$tmp/drops.txt"
  dropped=$(awk '/counter/ {n += $(NF-3)} END {print n + 0}' "$tmp/drops.txt")
fi
[ "$dropped" -gt 0 ] || fail "no packet was dropped on $slow's lossy link: $(cat "$tmp/drops.txt")"

delay_s=0.1
$py - "$w/history.jsonl" "$before" "$cut_at" "$restored_at" "$rounds" "$slow" "$cut" "$deadline" "$delay_s" <<'PY' ||
import json, sys
path, before, cut_at, restored_at, R = sys.argv[1], *map(int, sys.argv[2:6])
slow, cut, deadline, delay = sys.argv[6], sys.argv[7], float(sys.argv[8]), float(sys.argv[9])
L = [json.loads(l) for l in open(path)]
assert [l["round"] for l in L] == list(range(R)), [l["round"] for l in L]
assert all(l["status"] == "ok" for l in L), [(l["round"], l["status"]) for l in L]
everyone = ["site1", "site2", "site3", "site4"]
for l in L[:before]:
    assert sorted(l["responded"]) == everyone, ("link up", l["round"], l["responded"])
# The slow hospital arrives in every round, and no faster than its link allows: the task
# (θ) down and the update up, each at least upload_bytes less 4 KB (envelope, tbf burst) at
# 1 Mbit/s, plus one one-way delay each; and typically far later than the others.
for l in L:
    assert slow in l["responded"], (slow, "missing from round", l["round"])
    c = l["clients"][slow]
    floor = 2 * (max(c["upload_bytes"] - 4096, 0) * 8 / 1e6 + delay)
    assert c["arrival_s"] >= floor, (l["round"], c["arrival_s"], floor)
def median(xs): return sorted(xs)[len(xs) // 2]
slow_ar = [l["clients"][slow]["arrival_s"] for l in L]
fast_ar = [v["arrival_s"] for l in L for k, v in l["clients"].items() if k != slow]
assert median(slow_ar) > 3 * median(fast_ar), (median(slow_ar), median(fast_ar))
# The cut: still a participant (the coordinator cannot know), missing from every round that
# started after the cut and closed before the restore; those closed at the deadline.
during = L[cut_at + 1:restored_at]
assert len(during) >= 2, len(during)
for l in during:
    assert cut in l["participants"] and cut not in l["responded"], (l["round"], l["responded"])
    assert sorted(l["responded"]) == [s for s in everyone if s != cut], (l["round"], l["responded"])
    assert l["duration_s"] >= deadline - 0.05, (l["round"], l["duration_s"])
back = [l["round"] for l in L[restored_at:] if cut in l["responded"]]
assert back, f"{cut} never answered after its link came back"
# It reconnects within two heartbeat timeouts (< 2 deadlines), and stays.
assert back[0] <= restored_at + 1 and back == list(range(back[0], R)), (restored_at, back)
print(f"rounds {[l['round'] for l in during]} closed at the {deadline:g} s deadline without {cut} (link cut); "
      f"it answered again from round {back[0]} on (rounds {back})")
print(f"{slow} (slow, lossy link) answered all {R} rounds; its updates arrived after "
      f"{[round(a, 2) for a in slow_ar]} s (median of the others: {median(fast_ar):.3f} s)")
PY
  fail "history assertions"
grep -q "event=disconnected" "$w/logs/$cut.log" || fail "$cut's log shows no disconnect during the cut"
[ "$(grep -c "client_welcomed client=$cut" "$w/logs/coordinator.log")" -ge 2 ] ||
  fail "$cut was not welcomed again after the cut"
# One Hello per connection: Hellos queued during the outage and delivered together would each
# fetch the round's task again, and the hospital would train and upload it several times.
dups=$(grep -c "rejected peer=$cut kind=duplicate" "$w/logs/coordinator.log" || true)
[ "$dups" -eq 0 ] || fail "$cut trained a round more than once after the cut ($dups duplicate updates refused)"
echo "$slow's link dropped $dropped packets ($mode); round trip $rtt s"
echo "netem_slow: all checks passed"
