#!/usr/bin/env bash
# The docker-compose federation of deploy/ (a coordinator and 4 hospitals), run as processes:
# the very config files the containers mount (deploy/coordinator.ini, deploy/compose/
# hospitalN.ini) in the same /etc/concord layout, keys made with concord-keygen as the
# compose `keys` step does, and only the container-specific absolute paths and host names
# overridden with --set (and min_clients = 4, so every round has all four: rounds take
# milliseconds here). No Docker engine runs on our machines; this checks the rest.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Keys, as the compose keys step makes them.
mkdir -p "$tmp/keys"
for id in coordinator hospital1 hospital2 hospital3 hospital4; do
  "$build/concord-keygen" --id "$id" --out "$tmp/keys" >/dev/null 2>&1
done
for i in 1 2 3 4; do echo "hospital$i $(awk '/^public:/{print $2}' "$tmp/keys/hospital$i.pub")"; done >"$tmp/keys/enrolment.txt"

# Data, as the compose header describes.
"$build/concord-data" split /usr/share/doc/libfann-dev/examples/datasets/thyroid.train --clients 4 \
  --scheme dirichlet:0.5 --seed 1 --out "$tmp/shards" >/dev/null

# The coordinator's /etc/concord.
mkdir -p "$tmp/coordinator/etc/concord/keys" "$tmp/coordinator/state"
cp "$src/deploy/coordinator.ini" "$tmp/coordinator/etc/concord/coordinator.ini"
cp "$tmp/keys/coordinator.key" "$tmp/keys/enrolment.txt" "$tmp/coordinator/etc/concord/keys/"
st=$tmp/coordinator/state
"$build/concord-coordinator" --config "$tmp/coordinator/etc/concord/coordinator.ini" \
  --set federation.bind="tcp://127.0.0.1:$port" --set federation.rounds=3 --set federation.min_clients=4 --set metrics.http_bind= \
  --set storage.state_dir="$st" --set storage.export="$st/final-model" --set metrics.history="$st/history.jsonl" \
  --set storage.ledger="$st/ledger.jsonl" >"$tmp/coordinator.log" 2>&1 &
coord=$!; pids+=("$coord")

for i in 1 2 3 4; do
  h=$tmp/hospital$i
  mkdir -p "$h/etc/concord/keys" "$h/data" "$h/state"
  cp "$src/deploy/compose/hospital$i.ini" "$h/etc/concord/client.ini"
  cp "$tmp/keys/hospital$i.key" "$tmp/keys/coordinator.pub" "$h/etc/concord/keys/"
  cp "$tmp/shards/site$i.fann" "$h/data/train.data"
  "$build/concord-client" --config "$h/etc/concord/client.ini" --set client.data="$h/data/train.data" \
    --set client.state_dir="$h/state" --set coordinator.endpoint="tcp://127.0.0.1:$port" >"$h.log" 2>&1 &
  pids+=("$!")
done

for _ in $(seq 1 600); do kill -0 "$coord" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$coord" 2>/dev/null; then echo "FAIL: the federation did not finish"; tail "$tmp/coordinator.log"; exit 1; fi
wait "$coord" || { echo "FAIL: coordinator exited with an error"; tail "$tmp/coordinator.log"; exit 1; }
[ "$(wc -l <"$st/history.jsonl")" -eq 3 ] || { echo "FAIL: expected 3 rounds"; exit 1; }
/usr/bin/python3 - "$st/history.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert all(sorted(l["responded"]) == ["hospital1", "hospital2", "hospital3", "hospital4"] for l in lines)
print("compose topology: the deploy/ configs run 3 rounds, every one answered by all 4 hospitals")
PY
"$build/concord-coordinator" verify-ledger "$st/ledger.jsonl" --public-key "$tmp/keys/coordinator.pub" >/dev/null
[ -s "$st/final-model.safetensors" ] || { echo "FAIL: no exported model"; exit 1; }
