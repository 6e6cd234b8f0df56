#!/usr/bin/env bash
# bench/runtime_bench.sh — the federation-runtime figures of DESIGN §9 (docs/benchmarks.md):
# ingest, aggregation at round close, coordinator peak RSS, round overhead. Each figure is
# measured against its baseline in the same invocation and reported as a ratio.
#
#   bench/runtime_bench.sh [--quick] [--only ingest|aggregate|memory|overhead]...
#
# Uses $BUILD_DIR (default build/): concord-bench, concord-coordinator, concord-sim,
# concord-client; /usr/bin/python3 with numpy for the aggregation baseline; /usr/bin/time.
# Writes bench/results/runtime-<date>/ (one JSON / log per measurement) and prints a summary.
# --quick: small sizes, one repetition: a smoke run, not a result.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BENCH=$BUILD_DIR/concord-bench
COORD=$BUILD_DIR/concord-coordinator
SIM=$BUILD_DIR/concord-sim
THYROID=/usr/share/doc/libfann-dev/examples/datasets/thyroid.train
QUICK=0
ONLY=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --only) ONLY+=("$2"); shift ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) echo "runtime_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
want() { [ ${#ONLY[@]} -eq 0 ] && return 0; local x; for x in "${ONLY[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
for b in "$BENCH" "$COORD" "$SIM"; do [ -x "$b" ] || { echo "missing $b (build first)" >&2; exit 1; }; done

STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT=$ROOT/bench/results/runtime-$STAMP
[ $QUICK -eq 1 ] && OUT=$ROOT/bench/results/runtime-quick-$STAMP
mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/concord-runtime-bench.XXXXXX) # disk-backed (the state dirs)
trap 'rm -rf "$WORK"' EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

{
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "kernel: $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "build: $BUILD_DIR ($(grep -m1 CMAKE_BUILD_TYPE "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || echo '?'))"
    echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} (numpy runs with it unset)"
} | tee "$OUT/machine.txt"

# ---- 1. ingest ---------------------------------------------------------------------------------
if want ingest; then
    SIZES="1000000 10000000"; REP=3
    [ $QUICK -eq 1 ] && SIZES="100000" && REP=1
    mkdir -p "$WORK/journal"
    for P in $SIZES; do
        log "ingest P=$P"
        "$BENCH" ingest --params "$P" --clients 8 --repeat $REP --journal /dev/shm --journal "$WORK/journal" --json \
            > "$OUT/ingest-$P.txt"
        tail -n 1 "$OUT/ingest-$P.txt" > "$OUT/ingest-$P.json"
        grep -v '^{' "$OUT/ingest-$P.txt" | tee -a "$OUT/run.log"
    done
    for P in $SIZES; do # CURVE: the coordinator's default
        log "ingest P=$P with CURVE on both sides"
        "$BENCH" ingest --params "$P" --clients 8 --repeat $REP --curve --json > "$OUT/ingest-curve-$P.txt"
        tail -n 1 "$OUT/ingest-curve-$P.txt" > "$OUT/ingest-curve-$P.json"
        grep -v '^{' "$OUT/ingest-curve-$P.txt" | tee -a "$OUT/run.log"
    done
fi

# ---- 2. aggregation ------------------------------------------------------------------------------
if want aggregate; then
    SIZES="1000000 10000000"; KS="10 50"; REP=5
    [ $QUICK -eq 1 ] && SIZES="100000" && KS="10" && REP=1
    for W in fedavg fedce; do
        for K in $KS; do
            for P in $SIZES; do
                log "aggregate $W K=$K P=$P"
                "$BENCH" aggregate --clients "$K" --params "$P" --weighting $W --repeat $REP --journal-dir "$WORK" \
                    --numpy "$ROOT/bench/numpy_aggregate.py" --json > "$OUT/aggregate-$W-$K-$P.txt"
                tail -n 1 "$OUT/aggregate-$W-$K-$P.txt" > "$OUT/aggregate-$W-$K-$P.json"
                grep -v '^{' "$OUT/aggregate-$W-$K-$P.txt" | tee -a "$OUT/run.log"
            done
        done
    done
fi

# ---- federation set-up for the daemon runs -------------------------------------------------------
# Keys, enrolment and a coordinator config from concord-sim --prepare-only (its shards are not
# used by the load generator). $1 = dir, $2 = clients.
prepare() {
    "$SIM" --data "$THYROID" --clients "$2" --workdir "$1" --prepare-only > "$1.prepare.log" 2>&1
}
endpoint() { grep '^bind' "$1/configs/coordinator.ini" | awk '{print $3}'; }

# One coordinator + load generator run. $1 name, $2 K, $3 inputs, $4 classes, $5 weighting,
# $6 rounds, $7 spread (s); extra args: coordinator --set overrides. $ARCH: the model
# (default softmax), $LG_FLAGS: extra load-generator flags.
daemon_run() {
    local name=$1 K=$2 D=$3 C=$4 W=$5 R=$6 S=$7; shift 7
    local dir=${DR_BASE:-$WORK}/$name
    prepare "$dir" "$K"
    local ep; ep=$(endpoint "$dir")
    /usr/bin/time -v -o "$OUT/$name.time" "$COORD" --config "$dir/configs/coordinator.ini" \
        --set model.arch="${ARCH:-softmax}" --set model.inputs="$D" --set model.classes="$C" --set model.standardize=none \
        --set aggregation.weighting="$W" --set storage.keep_checkpoints=1 --rounds "$R" "$@" 2> "$OUT/$name.coordinator.log" &
    local cpid=$! rpid=""
    for _ in 1 2 3 4 5 6 7 8 9 10; do rpid=$(pgrep -P $cpid | head -n 1) && [ -n "$rpid" ] && break; sleep 0.01; done
    # RSS sampler: a line "UTC-time MiB" each time the coordinator's VmRSS plus its summing
    # process's own pages (RssAnon + RssFile; the θ buffers they share are RssShmem, counted
    # in the coordinator's) reaches a new high; and at the end "helper MAX FIRST": the summing
    # process's highest own pages, and its first sample (0 without one), in MiB.
    /usr/bin/python3 -c '
import sys, time
pid, peak, helper_peak, helper_first = sys.argv[1], 0, 0, 0
def status(p):
    return {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/%s/status" % p) if l.startswith(("VmRSS", "RssAnon", "RssFile"))}
while True:
    try:
        rss = status(pid)["VmRSS"]
    except Exception:
        break
    helper = 0
    for kid in open("/proc/%s/task/%s/children" % (pid, pid)).read().split():
        try:
            st = status(kid)
            helper += st["RssAnon"] + st["RssFile"]
        except Exception:
            pass
    helper_peak = max(helper_peak, helper)
    helper_first = helper_first or helper
    if rss + helper > peak:
        peak = rss + helper
        t = time.time()
        print("%s.%03dZ %.1f" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)), int(t % 1 * 1000), peak / 1024), flush=True)
    time.sleep(0.005)
print("helper %.1f %.1f" % (helper_peak / 1024, helper_first / 1024), flush=True)' "${rpid:-$cpid}" > "$OUT/$name.rss" 2>/dev/null &
    sleep 0.3
    if ! kill -0 $cpid 2>/dev/null; then echo "$name: the coordinator did not start" | tee -a "$OUT/run.log"; return 0; fi
    "$BENCH" clients --endpoint "$ep" --keys "$dir/keys" --clients "$K" --inputs "$D" --classes "$C" \
        --spread "$S" --trust-tasks --timeout 1800 ${LG_FLAGS:-} --json > "$OUT/$name.clients.txt" 2> "$OUT/$name.clients.log" || true
    wait $cpid || true
    cp "$dir/history.jsonl" "$OUT/$name.history.jsonl" 2>/dev/null || true
    local hwm; hwm=$(awk -F: '/Maximum resident/{gsub(/ /,"",$2); print $2}' "$OUT/$name.time")
    echo "$name: coordinator max RSS ${hwm} KiB; $(grep -v '^{' "$OUT/$name.clients.txt")" | tee -a "$OUT/run.log"
    rm -rf "$dir"
}

# ---- 3. coordinator peak RSS ---------------------------------------------------------------------
if want memory; then
    log "memory: idle baseline (P = 10)"
    ARCH=softmax daemon_run mem-baseline 2 4 2 fedavg 2 0
    if [ $QUICK -eq 1 ]; then
        ARCH=mlp:1000 daemon_run mem-fedavg-burst-2-100000 2 98 2 fedavg 2 0
        ARCH=mlp:1000 LG_FLAGS=--no-curve daemon_run mem-fedce-spread-nocurve-2-100000 2 98 2 fedce 2 0.2 --set security.curve=false
    else
        # The model: an MLP d-1000-2, P = 1000·(d+1) + 2002, whose softmax head (what the
        # alignment buffers are sized by) is small, as in any real model. (With arch = softmax
        # the head is the whole model, and the task snapshot, which always copies the three
        # alignment-target buffers, held 4P instead of P before it copied them only with
        # alignment on: the two softmax runs below check that.)
        export ARCH=mlp:1000
        for P in 1000000 10000000; do
            D=$((P / 1000 - 1))
            for K in 10 50; do
                # burst: every client answers the moment its task arrives (CURVE on, the default)
                daemon_run mem-fedavg-burst-$K-$P "$K" "$D" 2 fedavg 3 0
                daemon_run mem-fedce-burst-$K-$P "$K" "$D" 2 fedce 3 0
                # spread: arrivals over twice the time the coordinator needs to ingest them one by
                # one (one BLAKE2b pass per update at ~0.7 GB/s, plus CURVE), so they do not queue up
                S=$(awk -v k="$K" -v p="$P" 'BEGIN{printf "%.2f", 2 * k * p * 4 * 3 / 0.7e9}')
                daemon_run mem-fedavg-spread-$K-$P "$K" "$D" 2 fedavg 3 "$S"
                # burst and no CURVE: tasks leave at once (no window), every answer arrives together
                LG_FLAGS=--no-curve daemon_run mem-fedavg-burst-nocurve-$K-$P "$K" "$D" 2 fedavg 3 0 --set security.curve=false
                # spread and no CURVE (plain TCP): no per-connection encrypted copy of θ
                LG_FLAGS=--no-curve daemon_run mem-fedavg-spread-nocurve-$K-$P "$K" "$D" 2 fedavg 3 "$S" --set security.curve=false
                LG_FLAGS=--no-curve daemon_run mem-fedce-spread-nocurve-$K-$P "$K" "$D" 2 fedce 3 "$S" --set security.curve=false
            done
        done
        export ARCH=softmax
        S=$(awk 'BEGIN{printf "%.2f", 2 * 10 * 1e7 * 4 * 3 / 0.7e9}')
        LG_FLAGS=--no-curve daemon_run mem-softmax-fedavg-spread-nocurve-10-10000000 10 999999 10 fedavg 3 "$S" --set security.curve=false
        LG_FLAGS=--no-curve daemon_run mem-softmax-fedce-spread-nocurve-10-10000000 10 999999 10 fedce 3 "$S" --set security.curve=false
        unset ARCH
    fi
fi

# ---- 4. round overhead -----------------------------------------------------------------------------
if want overhead; then
    R=21; [ $QUICK -eq 1 ] && R=4
    # (a) instant clients: everything in a round is overhead (P = 10·(9999+1) = 100,000)
    for W in fedavg fedce; do
        log "overhead: load generator, 10 clients, P = 100000, $W"
        daemon_run overhead-lg-$W 10 9999 10 $W $R 0
        grep -E "event=round_start|event=round_closed" "$OUT/overhead-lg-$W.coordinator.log" > "$OUT/overhead-lg-$W.rounds.log" || true
    done
    # the same with every state file on tmpfs: what the fsyncs of the commit cost
    SHM=$(mktemp -d /dev/shm/concord-rt.XXXXXX)
    DR_BASE=$SHM daemon_run overhead-lg-tmpfs-fedavg 10 9999 10 fedavg $R 0
    grep -E "event=round_start|event=round_closed" "$OUT/overhead-lg-tmpfs-fedavg.coordinator.log" > "$OUT/overhead-lg-tmpfs-fedavg.rounds.log" || true
    rm -rf "$SHM"
    # the same without CURVE: what the encryption of tasks and updates costs on these 2 cores
    # (the coordinator's and the load generator's)
    LG_FLAGS=--no-curve daemon_run overhead-lg-nocurve-fedavg 10 9999 10 fedavg $R 0 --set security.curve=false
    # (b) real daemons: concord-sim, 10 hospitals on thyroid, MLP 21-2630-16-3 (100,007 parameters)
    SHM=$(mktemp -d /dev/shm/concord-rt.XXXXXX)
    for V in fedavg fedce tmpfs-fedavg; do
        W=${V#tmpfs-}; base=$WORK; [ "$V" != "$W" ] && base=$SHM
        log "overhead: concord-sim, 10 clients, mlp:2630,16, $V"
        "$SIM" --data "$THYROID" --clients 10 --rounds $R --epochs 2 --model mlp:2630,16 --weighting $W \
            --workdir "$base/sim-$V" > "$OUT/overhead-sim-$V.txt" 2>&1 || log "concord-sim failed (see overhead-sim-$V.txt)"
        cp "$base/sim-$V/history.jsonl" "$OUT/overhead-sim-$V.history.jsonl"
        mkdir -p "$OUT/overhead-sim-$V.logs"
        cp "$base/sim-$V"/logs/*.log "$OUT/overhead-sim-$V.logs/"
        rm -rf "$base/sim-$V"
    done
    rm -rf "$SHM"
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
/usr/bin/python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
# Summary tables from the files of one run (also usable alone: python3 - DIR < this block).
import datetime, glob, json, math, os, re, statistics, sys
out = sys.argv[1]
MiB = 1048576.0

def ts(line):
    t = line.split()[0].rstrip("Z")
    return datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f").timestamp()

def pct(v, q):
    v = sorted(v)
    return v[max(0, math.ceil(q * len(v)) - 1)] if v else float("nan")

def load(path):
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])

print("## Ingest (target: full / bare >= 0.70)\n")
print("| P | curve | bare GB/s | full GB/s | full/bare | + journal /dev/shm | ratio | + journal disk | ratio | BLAKE2b GB/s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(out, "ingest-*.json"))):
    j = load(f); m = {x["mode"]: x for x in j["modes"]}
    bare, full = m["bare"], m["full"]
    shm = [x for k, x in m.items() if k.startswith("full+journal:/dev/shm")]
    disk = [x for k, x in m.items() if k.startswith("full+journal:") and "/dev/shm" not in k]
    cell = lambda xs: ("%.3f | %.3f" % (xs[0]["gb_per_s"], xs[0]["ratio_to_bare"])) if xs else "— | —"
    print("| %s | %s | %.3f | %.3f | **%.3f** | %s | %s | %.3f |" % (f"{j['params']:,}", "on" if j["curve"] else "off",
          bare["gb_per_s"], full["gb_per_s"], full["ratio_to_bare"], cell(shm), cell(disk), j["blake2b_gb_per_s"]))
    for k, x in m.items():
        if k == "bare": continue
        st = x.get("stage_seconds", {})
        print("|  | stages (s), %s | " % k.split(":")[0] + ", ".join("%s %.3f" % (a, v) for a, v in st.items()) + "; handling %.3f GB/s | | | | | | | |" % x.get("handling_gb_per_s", 0))

print("\n## Aggregation at round close\n")
print("| weighting | K | P | read BW 1t / 2t GB/s | one pass ms | Concord close ms (no digest / with digest) | ratio to target | numpy np.average ms | w@U ms | numpy FedCE-eq ms | speed-up vs np.average (no digest / with) | vs w@U |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
extra = []
for f in sorted(glob.glob(os.path.join(out, "aggregate-*.json")), key=lambda p: (load(p)["weighting"], load(p)["clients"], load(p)["params"])):
    j = load(f); n = j.get("numpy", {})
    agg, close, bw = j["aggregation_s"], j["close_s"], j["bandwidth_gb_per_s"]
    if j["weighting"] == "fedce":
        tgt = "%.2fx / %.2fx passes (<= 2.2)" % (agg / j["one_pass_s"], close / j["one_pass_s"])
    else:
        gb = j["clients"] * j["params"] * 4 / 1e9
        it = j["fedavg"].get("in_time")
        tgt = ""
        if it: # the default path when updates arrive apart
            tgt = "summed in time **%.0f%%** (paired %.0f%%); " % (100 * it["fraction_of_bandwidth"], 100 * it["paired_fraction_of_bandwidth"])
        tgt += "all at the close (a burst) %.0f%% / %.0f%% of BW (paired %.0f%%) (>= 80%%); from memory %.0f%%" % (
            100 * gb / agg / bw, 100 * gb / close / bw, 100 * j["fedavg"]["paired_fraction_of_bandwidth"],
            100 * j["fedavg"]["memory"]["fraction_of_bandwidth"])
    na, nm, nf = n.get("average_s", float("nan")), n.get("matvec_s", float("nan")), n.get("fedce_equivalent_s", float("nan"))
    print("| %s | %d | %s | %.1f / %.1f | %.2f | %.2f / %.2f | %s | %.2f | %.2f | %.2f | %.2fx / %.2fx | %.2fx / %.2fx |" % (
        j["weighting"], j["clients"], f"{j['params']:,}", j["read_gb_per_s_1t"], j["read_gb_per_s_2t"], j["one_pass_s"] * 1e3,
        agg * 1e3, close * 1e3, tgt, na * 1e3, nm * 1e3, nf * 1e3, na / agg, na / close, nm / agg, nm / close))
    if j["weighting"] == "fedavg":
        fa = j["fedavg"]
        extra.append("fedavg K=%d P=%s: from memory %.2f ms (%.0f%%), from the journal %.2f ms (%.0f%%, the coordinator's path), from the journal on 1 thread %.2f ms (%.0f%%), model digest %.2f ms" % tuple(
            [j["clients"], f"{j['params']:,}"] + [x for k in ("memory", "journal", "journal_1thread") for x in (fa[k]["seconds"] * 1e3, 100 * fa[k]["fraction_of_bandwidth"])] + [j["digest_s"] * 1e3]))
        it = fa.get("in_time")
        if it:
            extra[-1] += "; summed in time (the coordinator's default): the close %.2f ms on average over the last arrival's K positions (%.1f updates left; %.0f%% of BW, paired %.0f%%), %.2f ms per update summed while waiting" % (
                it["seconds"] * 1e3, it["updates_left_mean"], 100 * it["fraction_of_bandwidth"], 100 * it["paired_fraction_of_bandwidth"], it["prefix_s_per_update"] * 1e3)
    else:
        fc = j["fedce"]; sr = fc["serial"]
        extra.append("fedce K=%d P=%s: close from the end of the last update's hash %.2f ms = %.2fx one pass, paired %.2fx (wait for its Gram row %.2f ms, weights %.3f ms, weighted sum %.2f ms); before, with the row after the hash: %.2f ms = %.2fx, paired %.2fx (row %.2f ms); the row alone (1 worker thread) %.2f ms, the hash alone %.2f ms, beside the row %.2f ms; model digest %.2f ms; the other K-1 Gram rows at ingest %.2f ms in all; whole Gram matrix by ssyrk (the first design) %.2f ms" % (
            j["clients"], f"{j['params']:,}", agg * 1e3, fc["passes"], fc["paired_passes"], fc["row_wait_s"] * 1e3,
            fc["weights_s"] * 1e3, fc["weighted_sum_s"] * 1e3, sr["aggregation_s"] * 1e3, sr["passes"], sr["paired_passes"],
            sr["last_gram_row_s"] * 1e3, fc["last_gram_row_s"] * 1e3, fc["last_hash_s"] * 1e3, fc["hash_beside_row_s"] * 1e3,
            j["digest_s"] * 1e3, fc["ingest_gram_rows_s"] * 1e3, fc["ssyrk_gram_s"] * 1e3))
print()
for e in extra:
    print("- " + e)

print("\n## Coordinator peak RSS\n")
print("Peak RSS: the coordinator's highest VmRSS (`time -v`); when its summing process took part in\n"
      "the closes (FedAvg, models of 2 MiB or more, `aggregation.sum_process`), the larger of that\n"
      "plus the helper's idle pages and the highest sum of both sampled at one moment every 5 ms\n"
      "(the helper's own pages: RssAnon + RssFile, with its journal windows during a close; the θ\n"
      "buffers both map are counted once, in the coordinator).\n")
print("| run | K | P | weighting | arrivals | CURVE | peak RSS MiB | budget MiB | RSS / budget | met | RSS at round 0 start | peak reached after |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
def events(log):
    ev = []
    for line in open(log):
        m = re.search(r"event=(\w+)", line)
        if m and m.group(1) in ("listening", "round_start", "update_accepted", "round_closed", "exported"):
            ev.append((ts(line), m.group(1)))
    return ev
rows = []
for f in glob.glob(os.path.join(out, "mem-*.time")):
    name = os.path.basename(f)[:-5]
    txt = open(f).read()
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", txt).group(1))
    # The summing process, when it took part in the closes (its count is in the
    # coordinator's last line): the coordinator's peak plus the helper's idle pages (its
    # first sample), or the highest sum of the two sampled at the same moment, which sees
    # the helper's 8 MiB of journal windows (a close with it lasts 10 ms or more).
    try:
        shares = re.findall(r"event=sum_process_stopped pid=\d+ shares=(\d+)", open(os.path.join(out, name + ".coordinator.log")).read())
        lines = [l.split() for l in open(os.path.join(out, name + ".rss")) if l.strip()]
        hl = [l for l in lines if l[0] == "helper"]
        both = [float(l[1]) for l in lines if l[0] != "helper"]
        if shares and int(shares[-1]) > 0 and hl:
            kib = max(kib + int(float(hl[-1][2]) * 1024), int(max(both) * 1024))
    except Exception:
        pass
    try:
        cl = load(os.path.join(out, name + ".clients.txt"))
    except Exception:
        continue
    K, P = cl["clients"], cl["params"]
    fedce = "fedce" in name
    budget = ((K + 3) if fedce else 3) * P * 4 + 64 * MiB
    arr = "spread %.1f s" % (2 * K * P * 4 * 3 / 0.7e9) if "spread" in name else "burst"
    curve = "off" if "nocurve" in name else "on"
    phase, start_rss = "—", "—"
    try:
        ev = events(os.path.join(out, name + ".coordinator.log"))
        samples = [(ts(l), float(l.split()[1])) for l in open(os.path.join(out, name + ".rss")) if l.strip() and not l.startswith("helper ")]
        t_peak = samples[-1][0]
        before = [e for e in ev if e[0] <= t_peak]
        phase = before[-1][1] if before else "start-up"
        r0 = [t for t, e in ev if e == "round_start"]
        if r0:
            sr = [v for t, v in samples if t <= r0[0]]
            start_rss = "%.0f MiB" % (sr[-1] if sr else 0)
    except Exception:
        pass
    rows.append((name, K, P, fedce, arr, curve, kib, budget, phase, start_rss))
for name, K, P, fedce, arr, curve, kib, budget, phase, start_rss in sorted(rows, key=lambda r: ("softmax" in r[0], r[2], r[1], r[0])):
    print("| %s | %d | %s | %s | %s | %s | %.1f | %.1f | %.2f | %s | %s | %s |" % (name, K, f"{P:,}", "fedce" if fedce else "fedavg",
          arr, curve, kib * 1024 / MiB, budget / MiB, kib * 1024 / budget, "yes" if kib * 1024 <= budget else "**no**", start_rss, phase))

print("\n## Round overhead (10 clients, P ~ 100k; target < 20 ms)\n")
print("| run | rounds | definition | round 0 ms | median ms (rounds 1..) | p90 ms |")
print("|---|---|---|---|---|---|")
def starts(log):
    s = {}
    for line in open(log):
        m = re.search(r"event=round_start round=(\d+)", line)
        if m: s[int(m.group(1))] = ts(line)
    return s
for f in sorted(glob.glob(os.path.join(out, "overhead-*.history.jsonl"))):
    name = os.path.basename(f)[:-len(".history.jsonl")]
    hist = [json.loads(l) for l in open(f) if l.strip()]
    if name.startswith("overhead-lg"):
        st = starts(os.path.join(out, name + ".coordinator.log"))
        busy = {}
    else:
        logs = os.path.join(out, name + ".logs")
        st = starts(os.path.join(logs, "coordinator.log"))
        busy = {}
        for cf in glob.glob(os.path.join(logs, "site*.log")):
            task = {}
            for line in open(cf):
                m = re.search(r"event=(task|trained) round=(\d+)", line)
                if not m: continue
                r = int(m.group(2))
                if m.group(1) == "task": task[r] = ts(line)
                elif r in task: busy.setdefault(r, []).append(ts(line) - task[r])
    defs = {"A: duration_s - slowest train_s": [], "B: period - slowest train_s": [], "C: period - slowest client busy (task->trained)": []}
    for h in hist:
        r = h["round"]
        tr = max(c["train_seconds"] for c in h["clients"].values())
        defs["A: duration_s - slowest train_s"].append((r, h["duration_s"] - tr))
        if r in st and r + 1 in st:
            per = st[r + 1] - st[r]
            defs["B: period - slowest train_s"].append((r, per - tr))
            if r in busy: defs["C: period - slowest client busy (task->trained)"].append((r, per - max(busy[r])))
    for d, v in defs.items():
        if not v: continue
        r0 = [x for r, x in v if r == 0]
        rest = [x for r, x in v if r > 0]
        print("| %s | %d | %s | %s | %.1f | %.1f |" % (name, len(hist), d, "%.1f" % (r0[0] * 1e3) if r0 else "—",
              statistics.median(rest) * 1e3 if rest else float("nan"), pct(rest, 0.9) * 1e3))
    if busy:
        rr = [h for h in hist if h["round"] > 0]
        sumtr = [sum(c["train_seconds"] for c in h["clients"].values()) / 2 for h in rr]
        mx = [max(c["train_seconds"] for c in h["clients"].values()) for h in rr]
        print("| %s | | (context) median slowest train_s %.1f ms; median sum of train_s / 2 cores %.1f ms | | | |" % (
              name, statistics.median(mx) * 1e3, statistics.median(sumtr) * 1e3))
PY
log "results in $OUT"
