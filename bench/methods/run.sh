#!/usr/bin/env bash
# run.sh — evidence for the aggregation methods: FedAvg vs FedCE vs FedCE + alignment vs
# FedCE + per-class normalisation vs all three, on real federations (concord-sim: a
# coordinator and one concord-client process per hospital on loopback), 3 seeds each.
#
#   bench/methods/run.sh [--quick] [--scenarios "..."] [--methods "..."] [--seeds "1 2 3"]
#   /usr/bin/python3 bench/methods/analyze.py          # tables, plots, docs/results.md
#
# Scenarios (Dirichlet(0.3) label skew unless said; the seed draws the split, θ0 and the training):
#   thy4          thyroid, 4 hospitals, 20 rounds x 2 local epochs, MLP 21-64-32-3
#   thy8          thyroid, 8 hospitals, same
#   thy4-flip     thy4's split, 30% of the labels of the second-largest hospital flipped
#   thy4-flipbig  thy4's split, 30% of the labels of the largest hospital flipped
#   thy4-demo     the demo's main job: thyroid, 4 hospitals, Dirichlet(0.5)
#   fm10          Fashion-MNIST, 10 hospitals, 20 rounds x 1 epoch, MLP 784-128-10
#   fm10-shift    fm10's split, the hospitals ranked 2 and 3 by size see "another scanner":
#                 contrast x0.5, +0.25 offset, Gaussian noise sd 0.1 (bench/methods/make_shards.py)
# Methods: fedavg, fedce, fedce-align (gradient,hessian_diag), fedce-pcn (per-class server),
#   all (the three), fedce-pcnclient (per-class client), fedavg-pcn (per-class server with
#   FedAvg weights: tells the per-class stage apart from the weighting), fedce-align100
#   (alignment with 100x the reference alpha and beta: 1e-2 and 0.5).
#
# A diagnostic of per-class server mode (local batch 32 / 600 / 6000 on Fashion-MNIST,
# out/diag/) and the numpy probe bench/methods/pcn_probe.py run after the scenarios.
#
# For every scenario and seed it also trains each hospital's standalone model on its own
# shard (concord-train, scored on the global test set: collaboration fairness) and scores
# each final model on every hospital's own data (concord-data eval: performance fairness).
#
# Resumable: a run whose history.jsonl already has all its rounds (and whose final model
# exists) is skipped; so are standalone models and evaluations already on disk.
# Results go to bench/methods/out/ (not committed; OUT=... to change). Builds nothing: uses
# BUILD_DIR (default <repo>/build; CONCORD_COMMIT names the commit it was built from, for the
# record, when that is not the checkout's HEAD). CPU etiquette: everything runs under nice -n 10, and
# before each run it waits while /tmp/concord-bench.lock exists (someone is timing).
# --quick: 2 rounds, seed 1, into out-quick/ — a smoke run, not a result.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$repo/build}"
py=/usr/bin/python3
fann="${FANN_DIR:-/usr/share/doc/libfann-dev/examples/datasets}"
fmnist="${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}"
lock=/tmp/concord-bench.lock

quick=0
scenarios="thy4 thy8 thy4-flip thy4-flipbig thy4-demo fm10 fm10-shift"
methods="fedavg fedce fedce-align fedce-pcn all fedce-pcnclient fedavg-pcn fedce-align100"
seeds="1 2 3"
out="${OUT:-}"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --scenarios) scenarios="$2"; shift ;;
    --methods) methods="$2"; shift ;;
    --seeds) seeds="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
th_rounds=20 th_epochs=2 fm_rounds=20 fm_epochs=1
if [ "$quick" = 1 ]; then
    th_rounds=2 fm_rounds=2
    [ "$seeds" = "1 2 3" ] && seeds=1
    out="${out:-$here/out-quick}"
fi
out="${out:-$here/out}"

for bin in concord-sim concord-data concord-train concord-coordinator concord-client; do
    [ -x "$build/$bin" ] || { echo "run.sh: $build/$bin not found (build first, or set BUILD_DIR)" >&2; exit 1; }
done
for f in "$fann/thyroid.train" "$fann/thyroid.test" "$fmnist/train-images-idx3-ubyte.gz" \
         "$fmnist/train-labels-idx1-ubyte.gz" "$fmnist/t10k-images-idx3-ubyte.gz" "$fmnist/t10k-labels-idx1-ubyte.gz"; do
    [ -r "$f" ] || { echo "run.sh: missing data file $f" >&2; exit 1; }
done
mkdir -p "$out"
NICE=(nice -n 10)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$out/run.log"; }

wait_lock() {   # waits are logged to lockwaits.jsonl, so the report can tell work from waiting
    local said=0 t0
    t0=$(date +%s)
    while [ -e "$lock" ]; do
        [ "$said" = 1 ] || { log "waiting: $lock exists (someone is timing)"; said=1; }
        sleep 15
    done
    if [ "$said" = 1 ]; then
        echo "{\"waited\":$(( $(date +%s) - t0 )),\"at\":\"$(date -u +%FT%TZ)\"}" >> "$out/lockwaits.jsonl"
        log "lock gone after $(( $(date +%s) - t0 )) s"
    fi
}

# ---- scenarios ---------------------------------------------------------------------------
# sets: data labels test test_labels clients rounds epochs model shards_dir extra_config
scenario() {
    local sc="$1" seed="$2"
    labels="" test_labels="" shards_dir="" extra="" split=dirichlet:0.3
    case "$sc" in
    thy4|thy8|thy4-flip|thy4-flipbig|thy4-demo)
        data="$fann/thyroid.train" test="$fann/thyroid.test"
        clients=4 rounds=$th_rounds epochs=$th_epochs model=mlp:64,32 st_epochs=$((th_rounds * th_epochs))
        [ "$sc" = thy8 ] && clients=8
        [ "$sc" = thy4-demo ] && split=dirichlet:0.5 ;;
    fm10|fm10-shift)
        data="$fmnist/train-images-idx3-ubyte.gz" labels="$fmnist/train-labels-idx1-ubyte.gz"
        test="$fmnist/t10k-images-idx3-ubyte.gz" test_labels="$fmnist/t10k-labels-idx1-ubyte.gz"
        clients=10 rounds=$fm_rounds epochs=$fm_epochs model=mlp:128 st_epochs=$((fm_rounds * fm_epochs)) ;;
    *) echo "run.sh: unknown scenario $sc" >&2; exit 2 ;;
    esac
    case "$sc" in
    thy4-flip|thy4-flipbig|fm10-shift) shards_dir="$out/prep/$sc/seed$seed/train" ;;
    esac
    if [ "$sc" = fm10-shift ]; then
        extra="$out/prep/standardize-none.ini"   # as concord-sim does for IDX images: pixels stay in [0, 1]
        printf '[model]\nstandardize = none\n' > "$extra"
    fi
}

method_flags() {
    case "$1" in
    fedavg) echo "--weighting fedavg" ;;
    fedce) echo "--weighting fedce" ;;
    fedce-align) echo "--weighting fedce --alignment gradient,hessian_diag" ;;
    fedce-pcn) echo "--weighting fedce --per-class server" ;;
    all) echo "--weighting fedce --alignment gradient,hessian_diag --per-class server" ;;
    fedce-pcnclient) echo "--weighting fedce --per-class client" ;;
    fedavg-pcn) echo "--weighting fedavg --per-class server" ;;
    fedce-align100) echo "--weighting fedce --alignment gradient,hessian_diag" ;;
    *) echo "run.sh: unknown method $1" >&2; exit 2 ;;
    esac
}

# Extra coordinator keys of a method (INI text; concord-sim takes one --config file, so they
# are merged with the scenario's).
method_ini() {
    case "$1" in
    fedce-align100) printf '[alignment]\nalpha = 1e-2\nbeta = 0.5\n' ;;
    esac
}

# The same split concord-sim makes from --data (it runs exactly this command).
split_into() {
    local dir="$1" seed="$2"
    [ -f "$dir/summary.json" ] && return 0
    local lab=()
    [ -n "$labels" ] && lab=(--labels "$labels")
    "${NICE[@]}" "$build/concord-data" split "$data" --clients "$clients" --scheme "$split" --seed "$seed" \
        --out "$dir" --min-per-client 5 "${lab[@]}" > "$dir.log"
}

prepare() {
    local sc="$1" seed="$2" dir="$out/prep/$1/seed$2"
    [ -n "$shards_dir" ] || return 0
    [ -f "$dir/noisy.json" ] && return 0
    mkdir -p "$dir"
    split_into "$dir/split" "$seed"
    case "$sc" in
    thy4-flip) "${NICE[@]}" "$py" "$here/make_shards.py" flip "$dir/split" "$dir" --frac 0.3 --rank 2 --seed "$seed" ;;
    thy4-flipbig) "${NICE[@]}" "$py" "$here/make_shards.py" flip "$dir/split" "$dir" --frac 0.3 --rank 1 --seed "$seed" ;;
    fm10-shift) "${NICE[@]}" "$py" "$here/make_shards.py" shift "$dir/split" "$dir" --sites 2 --rank 2 --seed "$seed" ;;
    esac
    log "prepared $dir ($(jq -c .noisy "$dir/noisy.json"))"
}

complete() {   # run dir, rounds
    [ -f "$1/final-model.ckpt" ] && [ -f "$1/history.jsonl" ] && [ "$(wc -l < "$1/history.jsonl")" -ge "$2" ]
}

run_one() {
    local sc="$1" m="$2" seed="$3"
    local dir="$out/runs/$sc/$m/seed$seed"
    if complete "$dir" "$rounds"; then return 0; fi
    wait_lock
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    local src=(--data "$data" --clients "$clients" --split "$split")
    [ -n "$labels" ] && src+=(--labels "$labels")
    [ -n "$shards_dir" ] && src=(--shards "$shards_dir")
    local tst=(--test "$test")
    [ -n "$test_labels" ] && tst+=(--test-labels "$test_labels")
    local cfg=() mini
    mini="$(method_ini "$m")"
    if [ -n "$mini" ]; then
        local merged="$out/prep/config-$sc-$m.ini"
        { [ -n "$extra" ] && cat "$extra"; printf '%s\n' "$mini"; } > "$merged"
        cfg=(--config "$merged")
    elif [ -n "$extra" ]; then
        cfg=(--config "$extra")
    fi
    # shellcheck disable=SC2046
    local cmd=("$build/concord-sim" "${src[@]}" "${tst[@]}" --rounds "$rounds" --epochs "$epochs" --seed "$seed"
               --model "$model" $(method_flags "$m") "${cfg[@]}" --workdir "$dir")
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    "${NICE[@]}" "${cmd[@]}" > "$dir.log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(printf %.3f "$(echo "$t1 - $t0" | bc)")
    printf '{"scenario":"%s","method":"%s","seed":%s,"seconds":%s,"exit":%s}\n' "$sc" "$m" "$seed" "$secs" "$rc" >> "$out/times.jsonl"
    printf '%q ' "${cmd[@]}" > "$dir.cmd"
    if [ "$rc" != 0 ] || ! complete "$dir" "$rounds"; then
        log "FAILED $sc $m seed$seed (exit $rc; see $dir.log)"
        return 0
    fi
    log "done $sc $m seed$seed in $(printf %.1f "$secs") s: $(tail -1 "$dir/history.jsonl" | jq -c '[.global.accuracy, .global.balanced_accuracy] | map(. * 1000 | round / 1000)')"
}

# The hospitals' training files of a scenario/seed: lines "name file [labels]".
hospitals() {
    local sc="$1" seed="$2"
    if [ -n "$shards_dir" ]; then
        for f in "$shards_dir"/*.*; do
            local b; b="$(basename "$f")"
            echo "${b%%.*} $f"
        done
    else
        local d="$out/runs/$sc/fedavg/seed$seed/shards"
        [ -f "$d/summary.json" ] || d="$out/prep/$sc/seed$seed/split"
        [ -f "$d/summary.json" ] || { mkdir -p "$d"; split_into "$d" "$seed"; }
        jq -r --arg d "$d" '.shards[] | "\(.name) \($d)/\(.file)" + (if .labels_file then " \($d)/\(.labels_file)" else "" end)' "$d/summary.json"
    fi
}

standalone() {
    local sc="$1" seed="$2" dir="$out/standalone/$1/seed$2"
    mkdir -p "$dir"
    local tst=(--test "$test")
    [ -n "$test_labels" ] && tst+=(--test-labels "$test_labels")
    local std=()
    [ "$sc" = fm10-shift ] && std=(--standardize none)
    while read -r name file lab; do
        [ -s "$dir/$name.json" ] && continue
        wait_lock
        local l=()
        [ -n "$lab" ] && l=(--labels "$lab")
        if "${NICE[@]}" "$build/concord-train" --data "$file" "${l[@]}" "${tst[@]}" --model "$model" \
               --epochs "$st_epochs" --seed "$seed" "${std[@]}" --json --quiet > "$dir/$name.out" 2> "$dir/$name.err"; then
            tail -1 "$dir/$name.out" > "$dir/$name.json"
        else
            log "FAILED standalone $sc seed$seed $name (see $dir/$name.err)"
        fi
    done < <(hospitals "$sc" "$seed")
}

evaluate() {   # the final model of one run on every hospital's own data (+ extras)
    local sc="$1" m="$2" seed="$3" run="$out/runs/$1/$2/seed$3"
    complete "$run" "$rounds" || return 0
    mkdir -p "$run/eval"
    while read -r name file lab; do
        [ -s "$run/eval/$name.json" ] && continue
        local l=()
        [ -n "$lab" ] && l=(--labels "$lab")
        "${NICE[@]}" "$build/concord-data" eval --model "$run/final-model.ckpt" --data "$file" "${l[@]}" --json \
            > "$run/eval/$name.json" 2> "$run/eval/$name.err" || log "FAILED eval $run on $name"
    done < <(hospitals "$sc" "$seed")
    local p="$out/prep/$sc/seed$seed"
    if [ -d "$p/clean" ]; then   # the noisy hospital scored on its true labels
        for f in "$p/clean"/*.*; do
            local b; b="$(basename "$f")"
            [ -s "$run/eval/${b%%.*}.clean.json" ] || "${NICE[@]}" "$build/concord-data" eval \
                --model "$run/final-model.ckpt" --data "$f" --json > "$run/eval/${b%%.*}.clean.json"
        done
    fi
    if [ "$sc" = fm10-shift ] && [ ! -s "$run/eval/test-shifted.json" ]; then   # the global test set through the other scanner
        "${NICE[@]}" "$build/concord-data" eval --model "$run/final-model.ckpt" --data "$out/prep/t10k-shifted.csv" \
            --json > "$run/eval/test-shifted.json"
    fi
}

# ---- the batch ---------------------------------------------------------------------------
{
    echo "{\"started\":\"$(date -u +%FT%TZ)\",\"commit\":\"${CONCORD_COMMIT:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}\","
    echo "\"build\":\"$build\",\"version\":\"$("$build/concord-sim" --version)\",\"quick\":$quick,"
    echo "\"th_rounds\":$th_rounds,\"th_epochs\":$th_epochs,\"fm_rounds\":$fm_rounds,\"fm_epochs\":$fm_epochs,"
    echo "\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\",\"nproc\":$(nproc),"
    echo "\"mem_gib\":$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo),\"kernel\":\"$(uname -r)\"}"
} | jq -c . >> "$out/batches.jsonl"
t_batch=$(date +%s)
log "batch: scenarios [$scenarios] methods [$methods] seeds [$seeds] -> $out"
if [[ " $scenarios " == *" fm10-shift "* ]] && [ ! -s "$out/prep/t10k-shifted.csv" ]; then
    mkdir -p "$out/prep"
    "${NICE[@]}" "$py" "$here/make_shards.py" shift-test "$fmnist/t10k-images-idx3-ubyte.gz" \
        "$fmnist/t10k-labels-idx1-ubyte.gz" "$out/prep/t10k-shifted.csv" --seed 0
fi
for sc in $scenarios; do
    for seed in $seeds; do
        scenario "$sc" "$seed"
        prepare "$sc" "$seed"
        for m in $methods; do
            run_one "$sc" "$m" "$seed"
            evaluate "$sc" "$m" "$seed"
        done
        standalone "$sc" "$seed"
    done
done
# Per-class server mode against the number of local steps in an update: Fashion-MNIST, 10
# hospitals (IID and Dirichlet(0.3)), FedAvg weights, 10 rounds x 1 epoch, local batch 32 /
# 600 / 6000 (about 170 / 9 / 1 steps per round), per-class off vs server.
diag_pcn_batch() {
    local split b pc seed dir ini
    for split in iid dirichlet:0.3; do
        for b in 32 600 6000; do
            ini="$out/prep/batch-$b.ini"
            mkdir -p "$out/prep"
            printf '[training]\nbatch = %s\n' "$b" > "$ini"
            for pc in off server; do
                for seed in $seeds; do
                    dir="$out/diag/pcn-batch/${split%%:*}/b$b/$pc/seed$seed"
                    complete "$dir" "$diag_rounds" && continue
                    wait_lock
                    rm -rf "$dir"
                    mkdir -p "$(dirname "$dir")"
                    "${NICE[@]}" "$build/concord-sim" --data "$fmnist/train-images-idx3-ubyte.gz" \
                        --labels "$fmnist/train-labels-idx1-ubyte.gz" --test "$fmnist/t10k-images-idx3-ubyte.gz" \
                        --test-labels "$fmnist/t10k-labels-idx1-ubyte.gz" --clients 10 --split "$split" \
                        --rounds "$diag_rounds" --epochs 1 --seed "$seed" --model mlp:128 --weighting fedavg \
                        --per-class "$pc" --config "$ini" --workdir "$dir" > "$dir.log" 2>&1 \
                        || log "FAILED diag $dir (see $dir.log)"
                    complete "$dir" "$diag_rounds" && log "done diag ${split%%:*} batch $b per-class $pc seed$seed: $(tail -1 "$dir/history.jsonl" | jq -c '.global.accuracy * 1000 | round / 1000')"
                done
            done
        done
    done
}
diag_rounds=10
[ "$quick" = 1 ] && diag_rounds=2
if [[ " $scenarios " == *" fm10 "* ]]; then diag_pcn_batch; fi

if [ "$quick" = 0 ] && [ ! -s "$out/pcn_probe.json" ]; then   # the numpy probe of per-class server mode
    wait_lock
    log "pcn probe"
    "${NICE[@]}" "$py" "$here/pcn_probe.py" --out "$out/pcn_probe.json" > "$out/pcn_probe.log"
fi
t_end=$(date +%s)
echo "{\"finished\":\"$(date -u +%FT%TZ)\",\"seconds\":$((t_end - t_batch))}" >> "$out/batches.jsonl"
log "batch finished in $((t_end - t_batch)) s"
