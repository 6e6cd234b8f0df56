#!/usr/bin/env bash
# data_cli.sh — concord-data end to end on the real thyroid and Fashion-MNIST files:
# inspect, split (every scheme), convert round trips, and the exit codes of malformed
# input (1, with file:line) and bad usage (2).
#
# Usage: bash tests/data_cli.sh BUILD_DIR SOURCE_DIR   (as CMake's ctest runs it)
set -u
BUILD=${1:?usage: data_cli.sh BUILD_DIR SOURCE_DIR}
BIN="$BUILD/concord-data"
THY=/usr/share/doc/libfann-dev/examples/datasets/thyroid.train
FM=/usr/share/datasets/fashion-mnist
T=$(mktemp -d /tmp/data_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$BIN" ] || fail "$BIN not built"

# run WANT_EXIT CMD...: runs CMD with stdout in $T/out and stderr in $T/err.
run() {
    local want=$1 got
    shift
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    [ "$got" -eq "$want" ] || { cat "$T/out" "$T/err" >&2; fail "exit $got, want $want: $*"; }
}
has() { grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "$1 lacks '$2'"; }; }
py() { python3 -c "$@" || fail "python check failed: $1"; }

# Sum of shard rows in a summary.json, checked against the files' own row counts.
shard_total() {
    python3 - "$1" <<'EOF' || fail "summary.json check failed: $1"
import json, sys, os
s = json.load(open(sys.argv[1]))
assert len(s["shards"]) == s["clients"], s
for sh in s["shards"]:
    assert os.path.exists(os.path.join(os.path.dirname(sys.argv[1]), sh["file"])), sh
    assert sum(sh["class_counts"]) == sh["rows"], sh
print(sum(sh["rows"] for sh in s["shards"]))
EOF
}

echo "== version and help"
run 0 "$BIN" --version
grep -qE '^concord-data [0-9]+\.[0-9]+' "$T/out" || fail "version: $(cat "$T/out")"
run 0 "$BIN" --help
has "$T/out" "Usage: concord-data COMMAND"
for c in inspect split convert; do
    run 0 "$BIN" "$c" --help
    has "$T/out" "Usage: concord-data $c"
done

echo "== inspect thyroid"
run 0 "$BIN" inspect "$THY"
has "$T/out" "rows:      3600"
has "$T/out" "features:  21"
has "$T/out" "classes:   3"
has "$T/out" "3319"
run 0 "$BIN" inspect "$THY" --json
py 'import json,sys; d=json.load(open(sys.argv[1])); assert d["rows"]==3600 and d["features"]==21, d; assert [c["count"] for c in d["class_counts"]]==[89,192,3319], d["class_counts"]; assert len(d["feature_summary"])==21' "$T/out"
cp "$T/out" "$T/thy.json"

echo "== split iid (FANN shards)"
run 0 "$BIN" split "$THY" --clients 4 --scheme iid --seed 1 --out "$T/iid"
has "$T/out" "total"
[ "$(shard_total "$T/iid/summary.json")" = 3600 ] || fail "iid shards do not add up to 3600"
n=0
for k in 1 2 3 4; do
    run 0 "$BIN" inspect "$T/iid/site$k.fann" --json
    n=$((n + $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$T/out")))
done
[ "$n" = 3600 ] || fail "iid shard files hold $n rows"

echo "== split dirichlet (CSV shards), seed-determinism"
run 0 "$BIN" split "$THY" --clients 5 --scheme dirichlet:0.5 --seed 7 --out "$T/dir" --format csv
[ "$(shard_total "$T/dir/summary.json")" = 3600 ] || fail "dirichlet shards do not add up"
py 'import json,sys; s=json.load(open(sys.argv[1])); assert min(x["rows"] for x in s["shards"])>=10; assert s["alpha"]==0.5 and s["seed"]==7' "$T/dir/summary.json"
[ -f "$T/dir/site5.csv" ] || fail "no site5.csv"
run 0 "$BIN" split "$THY" --clients 5 --scheme dirichlet:0.5 --seed 7 --out "$T/dir2" --format csv
for k in 1 2 3 4 5; do cmp -s "$T/dir/site$k.csv" "$T/dir2/site$k.csv" || fail "same seed, different site$k"; done
run 0 "$BIN" split "$THY" --clients 5 --scheme dirichlet:0.5 --seed 8 --out "$T/dir3" --format csv
cmp -s "$T/dir/site1.csv" "$T/dir3/site1.csv" && fail "different seeds, same shards"

echo "== split quantity"
run 0 "$BIN" split "$THY" --clients 6 --scheme quantity:1 --seed 3 --out "$T/qty" --min-per-client 50
[ "$(shard_total "$T/qty/summary.json")" = 3600 ] || fail "quantity shards do not add up"

echo "== split impossible: exit 1 with advice"
run 1 "$BIN" split "$THY" --clients 10 --scheme dirichlet:0.01 --seed 1 --out "$T/bad"
has "$T/err" "concord-data: "
has "$T/err" "raise alpha"

echo "== convert round trip FANN -> CSV -> FANN"
run 0 "$BIN" convert "$THY" "$T/thy.csv"
run 0 "$BIN" convert "$T/thy.csv" "$T/thy2.fann"
run 0 "$BIN" inspect "$T/thy2.fann" --json
py 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); [d.pop(k) for d in (a,b) for k in ("file","format")]; assert a==b, "round trip changed the data"' "$T/thy.json" "$T/out"

echo "== split by column (CSV with a site column)"
awk -F, 'NR==1 {print "hospital," $0; next} {print (NR%3==0 ? "north" : NR%3==1 ? "south" : "east") "," $0}' \
    "$T/thy.csv" >"$T/sites.csv"
run 0 "$BIN" split "$T/sites.csv" --scheme column:hospital --out "$T/col"
[ "$(shard_total "$T/col/summary.json")" = 3600 ] || fail "column shards do not add up"
py 'import json,sys; s=json.load(open(sys.argv[1])); assert [x["value"] for x in s["shards"]]==["east","north","south"], s; assert s["features"]==21' "$T/col/summary.json"
head -1 "$T/col/site1.csv" | grep -q hospital && fail "the site column stayed a feature"

echo "== IDX: split Fashion-MNIST t10k, convert to CSV and back"
run 0 "$BIN" split "$FM/t10k-images-idx3-ubyte.gz" --clients 3 --scheme iid --seed 2 --out "$T/fm"
[ "$(shard_total "$T/fm/summary.json")" = 10000 ] || fail "IDX shards do not add up"
[ -f "$T/fm/site2-images-idx3-ubyte" ] && [ -f "$T/fm/site2-labels-idx1-ubyte" ] || fail "IDX shard names"
run 0 "$BIN" convert "$T/fm/site1-images-idx3-ubyte" "$T/fm1.csv"
run 0 "$BIN" convert "$T/fm1.csv" "$T/back-images-idx3-ubyte"
cmp -s "$T/fm/site1-labels-idx1-ubyte" "$T/back-labels-idx1-ubyte" || fail "IDX labels changed"
# The CSV has no image shape, so only the pixel bytes after the 16-byte header must match.
cmp -s <(tail -c +17 "$T/fm/site1-images-idx3-ubyte") <(tail -c +17 "$T/back-images-idx3-ubyte") \
    || fail "IDX pixels changed in a CSV round trip"

echo "== malformed input: exit 1 with file:line"
awk 'NR==10 {$3="abc"} {print}' "$THY" >"$T/bad.train"
run 1 "$BIN" inspect "$T/bad.train"
has "$T/err" "concord-data: $T/bad.train:10:"
has "$T/err" "'abc'"
head -n 101 "$THY" >"$T/cut.train"
run 1 "$BIN" split "$T/cut.train" --clients 2 --scheme iid --seed 1 --out "$T/cut"
has "$T/err" "$T/cut.train:101: truncated: expected 3600 rows, got 50"
printf 'a,b,label\n1,2,0\n3,4\n' >"$T/cols.csv"
run 1 "$BIN" convert "$T/cols.csv" "$T/cols.fann"
has "$T/err" "$T/cols.csv:3: expected 3 columns, got 2"
printf 'a,b,label\n1,NA,0\n3,4,1\n' >"$T/na.csv"
run 1 "$BIN" convert "$T/na.csv" "$T/na.fann"
has "$T/err" "$T/na.csv:2: column 'b': missing value"
run 0 "$BIN" convert "$T/na.csv" "$T/na.fann" --missing mean
run 0 "$BIN" inspect "$T/na.csv"
has "$T/out" "missing:   1 cell"
run 1 "$BIN" inspect "$T/absent.train"
has "$T/err" "cannot open"

echo "== bad usage: exit 2"
run 2 "$BIN"
run 2 "$BIN" frobnicate
has "$T/err" "unknown command"
run 2 "$BIN" inspect
run 2 "$BIN" inspect "$THY" --bogus
run 2 "$BIN" inspect "$THY" --clients 3
run 2 "$BIN" split "$THY" --scheme iid --seed 1 --out "$T/x"
has "$T/err" "missing --clients"
run 2 "$BIN" split "$THY" --clients 3 --scheme dirichlet:x --seed 1 --out "$T/x"
run 2 "$BIN" split "$THY" --clients 0 --scheme iid --seed 1 --out "$T/x"
run 2 "$BIN" split "$THY" --clients 3 --scheme iid --out "$T/x"
run 2 "$BIN" split "$THY" --clients 3 --scheme column:site --out "$T/x"
run 2 "$BIN" convert "$THY"
run 2 "$BIN" convert "$THY" "$T/o.bin" --format idx
has "$T/err" "--out-labels"
run 2 "$BIN" convert "$THY" "$T/o.csv" --format parquet

echo "data_cli: all passed"
