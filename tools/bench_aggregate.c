/* bench_aggregate.c — concord-bench aggregate: the coordinator's round-close aggregation
 * (coordinator/aggregate.c) against the machine's memory bandwidth and numpy, side by side
 * in one invocation (DESIGN §9, docs/benchmarks.md).
 *
 * coordinator/aggregate.c's functions are static to the daemon, so the few lines of its close
 * path are replicated here; the work is in library functions called the same way
 * (fedce_dots, fedce_priors, fedce_cos_gram, fedce_round_weights, wsum_blocked,
 * journal_read, wire_digest_bytes, wire_digest_floats). FedCE is timed both as the
 * coordinator closes now (the last update's Gram row on a worker thread while the poll loop
 * hashes the update) and as it did before (the row after the hash, on the close's threads). */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "fedce.h"
#include "journal.h"
#include "rng.h"
#include "util.h"
#include "wire.h"
#include "sumproc.h"
#include "wsum.h"

int bench_cmd_aggregate(int argc, char **argv);

/* ---- memory bandwidth -------------------------------------------------------------------- */

/* Sum of n floats with 32 independent lanes (vectorisable without reassociation), with an
 * AVX2 clone like the close's own kernels: the bandwidth reference must not be the slower
 * code (with SSE2 only it read about 35 GB/s where AVX2 reads more). */
__attribute__((target_clones("avx2", "default")))
static float s_read_sum(const float *p, size_t n) {
    float acc[32] = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; j++) acc[j] += p[i + j];
    float s = 0;
    for (; i < n; i++) s += p[i];
    for (int j = 0; j < 32; j++) s += acc[j];
    return s;
}

typedef struct {
    const float *src;
    float *dst;
    size_t n;
    float out;
} s_part_t;

static void *s_read_thread(void *arg) {
    s_part_t *t = arg;
    t->out = s_read_sum(t->src, t->n);
    return NULL;
}

static void *s_copy_thread(void *arg) {
    s_part_t *t = arg;
    memcpy(t->dst, t->src, t->n * sizeof(float));
    return NULL;
}

/* Seconds of one pass (read: sum, copy: memcpy) over n floats split across T threads. */
static double s_pass(const float *src, float *dst, size_t n, int T, int copy, float *sink) {
    pthread_t th[8];
    s_part_t parts[8];
    size_t chunk = (n + (size_t)T - 1) / (size_t)T;
    chunk = (chunk + 15) & ~(size_t)15;
    double t0 = cc_now();
    for (int i = 0; i < T; i++) {
        size_t from = (size_t)i * chunk < n ? (size_t)i * chunk : n;
        size_t to = from + chunk < n ? from + chunk : n;
        parts[i] = (s_part_t){src + from, dst ? dst + from : NULL, to - from, 0};
        if (i > 0) pthread_create(&th[i], NULL, copy ? s_copy_thread : s_read_thread, &parts[i]);
    }
    if (copy) s_copy_thread(&parts[0]);
    else s_read_thread(&parts[0]);
    for (int i = 1; i < T; i++) pthread_join(th[i], NULL);
    double el = cc_now() - t0;
    for (int i = 0; i < T; i++) *sink += parts[i].out;
    return el;
}

/* Memory bandwidth is measured on at least S_BW_MIN floats (256 MiB, 8 times the 32 MiB L3):
 * a pass over fewer (K = 10, P = 1M is 40 MB) would partly run from the cache, which the
 * close, reading the journal's page cache, does not. */
#define S_BW_MIN ((size_t)64 << 20)

/* The bandwidth of this VM drifts by tens of percent within minutes, so besides the run's
 * bandwidth measured up front, every timed close is paired with a read pass just before it
 * (best of 1 and 2 threads) over the n floats of buf (the updates, or the bandwidth buffer
 * when they are fewer than S_BW_MIN), scaled to KP floats: the paired figure is the median
 * of the per-repetition ratios close / pass, which the drift affects far less. */
static double s_pass_now(const float *buf, size_t n, size_t KP, float *sink) {
    double t1 = s_pass(buf, NULL, n, 1, 0, sink), t2 = s_pass(buf, NULL, n, 2, 0, sink);
    return (t1 < t2 ? t1 : t2) * (double)KP / (double)n;
}

/* ---- the coordinator's close path (coordinator/aggregate.c) -------------------------------- */

typedef struct {
    size_t K, P;
    float *U;              /* (K, P) the round's updates, slots in client-id order */
    float *theta, *theta0; /* (P) θ, and θ_t to restart every repetition from */
    sumproc_t *helper;     /* FedAvg: the coordinator's summing process; θ is its buffer */
    uint64_t *n_samples;   /* (K) */
    double *w;             /* (K) weights of the last close */
    float *G;              /* (K, K) FedCE's Gram matrix, built as the updates "arrive" */
    journal_t *journal;
    const void *frame;     /* (P floats at an odd address) the last update as received */
    journal_record_t *rec; /* (K) */
    uint64_t *from;        /* (K) offset of Δ_k in its record */
    uint8_t digest[WIRE_DIGEST_BYTES];
    double server_lr;
    int threads;           /* of the weighted sum ([aggregation] threads) */
} s_agg_t;

/* The Gram row of update k against updates 0..k (in arrival order): coord_gram_add on
 * `threads` threads (the serial path), or the early row's worker with threads = 1. */
static void s_gram_row(s_agg_t *a, size_t k, int threads) {
    const float **rows = cc_xcalloc(k + 1, sizeof *rows);
    double *d = cc_xcalloc(k + 1, sizeof *d);
    for (size_t j = 0; j <= k; j++) rows[j] = a->U + j * a->P;
    fedce_dots_mt(d, rows, k + 1, a->U + k * a->P, a->P, threads);
    for (size_t j = 0; j <= k; j++) a->G[k * a->K + j] = a->G[j * a->K + k] = (float)d[j];
    free(rows), free(d);
}

/* The last update's Gram row shared by the early row's worker and the poll loop
 * (coord_gram_early_start, coord_gram_accept). */
typedef struct {
    s_agg_t *a;
    const float **rows;
    fedce_dots_share_t share;
    atomic_int copied;
} s_early_t;

/* The early row's worker: the last update's frame copied into its row of U, then blocks
 * of its dots until none is left. */
static void *s_early_row(void *arg) {
    s_early_t *e = arg;
    memcpy(e->a->U + (e->a->K - 1) * e->a->P, e->a->frame, e->a->P * sizeof(float));
    atomic_store(&e->copied, 1);
    fedce_dots_share_work(&e->share);
    return NULL;
}

/* θ += η_s w_k Δ_k for k in [first, end) (coordinator/aggregate.c coord_sum_updates): from
 * U, or from the journal (with the helper process when there is one and with_helper is set). */
static int s_stream_range(s_agg_t *a, size_t first, size_t end, int from_journal, int threads, int with_helper) {
    const float **rows = cc_xcalloc(a->K, sizeof *rows);
    float *scale = cc_xcalloc(a->K, sizeof *scale);
    for (size_t k = 0; k < a->K; k++) rows[k] = a->U + k * a->P, scale[k] = (float)(a->server_lr * a->w[k]);
    wsum_src_t src = {.rows = from_journal ? NULL : rows + first, .journal = a->journal, .recs = a->rec + first,
                      .from = a->from + first, .helper = with_helper ? a->helper : NULL};
    cc_err_t err = {0};
    int rc = wsum_blocked(a->theta, a->P, &src, end - first, scale + first, threads, &err);
    if (rc) fprintf(stderr, "concord-bench aggregate: %s\n", err.msg);
    free(rows), free(scale);
    return rc;
}

static int s_stream(s_agg_t *a, int from_journal, int threads, int with_helper) {
    return s_stream_range(a, 0, a->K, from_journal, threads, with_helper);
}

/* θ_t copied into θ (untimed). cycle: into one of the summing process's buffers, given back
 * (which drops its pages) and taken again, as coord_aggregate's copy path (in_time = off)
 * does: the helper maps the pages while θ_t is copied in, and whatever of that is left runs
 * into the timed sum. The default path sums in θ_t's own buffer, whose pages are mapped;
 * the read pass that follows each copy leaves both with caches as cold. */
static void s_fresh_theta(s_agg_t *a, int cycle) {
    if (cycle && a->helper && sumproc_give(a->helper, a->theta)) a->theta = sumproc_take(a->helper);
    memcpy(a->theta, a->theta0, a->P * sizeof(float));
}

/* FedAvg summed in time (coordinator/intime.c): with updates arriving apart, when the last
 * to arrive is slot m, slots 0..m−1 were summed while the coordinator waited and the close
 * sums slots m..K−1. Each m is equally likely when the arrival order is random, so the
 * close is timed once for every m and the mean is what the coordinator's close takes on
 * average. Per m: the prefix summed one update at a time (untimed: the wait's work, at its
 * costliest, each step a pass over θ too), a read pass (caches as cold as for the other
 * variants), the close. close_s: the mean close; paired: Σ close / Σ read pass; prefix_s:
 * a step's time per update; left: the mean number of updates the close sums. */
static int s_fedavg_in_time(s_agg_t *a, const float *bw_buf, size_t bw_n, float *sink, double *close_s,
                            double *paired, double *prefix_s, double *left) {
    size_t K = a->K, KP = K * a->P;
    double t_close = 0, t_pass = 0, t_prefix = 0;
    size_t n_prefix = 0, n_left = 0;
    int rc = 0;
    for (size_t m = 0; m < K && !rc; m++) {
        s_fresh_theta(a, 1);
        double t0 = cc_now();
        for (size_t k = 0; k < m && !rc; k++) rc = s_stream_range(a, k, k + 1, 1, a->threads, 1);
        t_prefix += cc_now() - t0, n_prefix += m;
        t_pass += s_pass_now(bw_buf, bw_n, KP, sink);
        t0 = cc_now();
        if (!rc) rc = s_stream_range(a, m, K, 1, a->threads, 1);
        t_close += cc_now() - t0, n_left += K - m;
    }
    *close_s = t_close / (double)K, *paired = t_pass / t_close;
    *prefix_s = n_prefix ? t_prefix / (double)n_prefix : 0.0, *left = (double)n_left / (double)K;
    return rc;
}

/* The close once G is complete: the weights (fedce_priors, fedce_cos_gram,
 * fedce_round_weights), then the weighted sum over U. t[0] weights, t[1] weighted sum. */
static int s_weights_and_sum(s_agg_t *a, double t[2]) {
    size_t K = a->K;
    cc_err_t err = {0};
    double t0 = cc_now();
    fedce_client_t *reg = cc_xcalloc(K, sizeof *reg); /* a first round: every client new */
    size_t *part = cc_xcalloc(K, sizeof *part), *rows = cc_xcalloc(K, sizeof *rows);
    double *coef = cc_xcalloc(K, sizeof *coef), *cos = cc_xcalloc(K, sizeof *cos);
    double *ak = cc_xcalloc(K, sizeof *ak), *b = cc_xcalloc(K, sizeof *b);
    for (size_t k = 0; k < K; k++) part[k] = rows[k] = k, b[k] = 1.0;
    int rc = fedce_priors(coef, reg, K, part, K, &err);
    if (!rc && K >= 2) fedce_cos_gram(cos, a->G, K, rows, coef, K);
    if (!rc) rc = fedce_round_weights(a->w, ak, reg, K, part, K, cos, b, FEDCE_PLUS, &err);
    double t1 = cc_now();
    if (!rc) rc = s_stream(a, 0, a->threads, 0);
    t[0] = t1 - t0, t[1] = cc_now() - t1;
    free(reg), free(part), free(rows), free(coef), free(cos), free(ak), free(b);
    if (rc && err.msg[0]) fprintf(stderr, "concord-bench aggregate: FedCE: %s\n", err.msg);
    return rc;
}

/* The close as the coordinator did it before: once the last update was verified, its Gram
 * row (on the close's threads), the weights and the weighted sum. t[0] row, t[1] weights,
 * t[2] weighted sum. */
static int s_close_fedce_serial(s_agg_t *a, double t[3]) {
    double t0 = cc_now();
    s_gram_row(a, a->K - 1, a->threads);
    t[0] = cc_now() - t0;
    return s_weights_and_sum(a, t + 1);
}

/* The close as the coordinator does it now: the last update's row starts on a worker while
 * the poll loop hashes the update (transport_open's BLAKE2b), and the poll loop then takes
 * the row's blocks the worker has not reached (with 2 threads or more); the close is what
 * follows the hash: the rest of the row, the weights and the weighted sum. t[0] the hash
 * (beside the row), t[1] the rest of the row after it, t[2] weights, t[3] weighted sum. */
static int s_close_fedce_early(s_agg_t *a, double t[4]) {
    uint8_t digest[WIRE_DIGEST_BYTES];
    size_t K = a->K;
    s_early_t e = {.a = a, .rows = cc_xcalloc(K, sizeof *e.rows)};
    for (size_t j = 0; j < K; j++) e.rows[j] = a->U + j * a->P;
    atomic_init(&e.copied, 0);
    fedce_dots_share_start(&e.share, e.rows, K, e.rows[K - 1], a->P);
    pthread_t worker;
    double t0 = cc_now();
    int started = pthread_create(&worker, NULL, s_early_row, &e) == 0;
    wire_digest_bytes(digest, a->frame, a->P * sizeof(float));
    double t1 = cc_now();
    if (!started) s_early_row(&e); /* as the coordinator's serial fallback */
    else if (a->threads >= 2 && atomic_load(&e.copied)) fedce_dots_share_work(&e.share);
    if (started) pthread_join(worker, NULL);
    double *d = cc_xcalloc(K, sizeof *d);
    fedce_dots_share_end(&e.share, d);
    for (size_t j = 0; j < K; j++) a->G[(K - 1) * K + j] = a->G[j * K + K - 1] = (float)d[j];
    double t2 = cc_now();
    free(d), free(e.rows);
    t[0] = t1 - t0, t[1] = t2 - t1;
    return s_weights_and_sum(a, t + 2);
}

static void s_fedavg_weights(s_agg_t *a) {
    double total = 0.0;
    for (size_t k = 0; k < a->K; k++) total += (double)a->n_samples[k];
    for (size_t k = 0; k < a->K; k++) a->w[k] = (double)a->n_samples[k] / total;
}

/* ---- numpy side (bench/numpy_aggregate.py, same U and weights via .npy files) --------------- */

static int s_write_npy(const char *path, const float *data, size_t rows, size_t cols, int is_double) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    char hdr[256];
    int n = cols ? snprintf(hdr, sizeof hdr, "{'descr': '<%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                            is_double ? "f8" : "f4", rows, cols)
                 : snprintf(hdr, sizeof hdr, "{'descr': '<%s', 'fortran_order': False, 'shape': (%zu,), }",
                            is_double ? "f8" : "f4", rows);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    uint16_t hl = (uint16_t)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&hl, 2, 1, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t elems = cols ? rows * cols : rows, esz = is_double ? 8 : 4;
    int rc = fwrite(data, esz, elems, f) == elems ? 0 : -1;
    return fclose(f) || rc ? -1 : 0;
}

/* Runs the numpy script on the same updates; returns its JSON (last stdout line) or NULL. */
static json_t *s_run_numpy(const char *script, const char *tmpdir, const s_agg_t *a, const double *w, int threads,
                           int repeat) {
    char upath[4096], wpath[4096], cmd[12288];
    snprintf(upath, sizeof upath, "%s/concord-bench-agg-%ld-U.npy", tmpdir, (long)getpid());
    snprintf(wpath, sizeof wpath, "%s/concord-bench-agg-%ld-w.npy", tmpdir, (long)getpid());
    if (s_write_npy(upath, a->U, a->K, a->P, 0) || s_write_npy(wpath, (const float *)w, a->K, 0, 1)) {
        fprintf(stderr, "concord-bench aggregate: cannot write %s: %s\n", upath, strerror(errno));
        unlink(upath), unlink(wpath);
        return NULL;
    }
    /* OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow a current numpy down: unset for it alone. */
    snprintf(cmd, sizeof cmd,
             "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d "
             "/usr/bin/python3 '%s' --u '%s' --w '%s' --repeat %d",
             threads, threads, script, upath, wpath, repeat);
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    json_t *res = NULL;
    if (p) {
        char line[65536], last[65536] = "";
        while (fgets(line, sizeof line, p)) {
            if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
            else fputs(line, stdout);
        }
        int st = pclose(p);
        if (st == 0 && last[0]) res = json_loads(last, 0, NULL);
    }
    if (!res) fprintf(stderr, "concord-bench aggregate: the numpy baseline failed: %s\n", cmd);
    unlink(upath), unlink(wpath);
    return res;
}

/* ---- command ------------------------------------------------------------------------------- */

static void s_usage(FILE *fp) {
    fprintf(fp,
            "Usage: concord-bench aggregate --clients K --params P --weighting fedavg|fedce [options]\n"
            "Times the coordinator's round-close aggregation on K in-memory updates of P floats and\n"
            "compares it, in the same run, with the machine's memory bandwidth and with numpy:\n"
            "  bandwidth  a read pass (sum) over the K·P floats, or 256 MiB when they are fewer (a\n"
            "             smaller pass runs partly from the L3 cache), 1 and 2 threads; and a copy\n"
            "  fedce      the last update's Gram row (fedce_dots) on a worker while its BLAKE2b runs,\n"
            "             then fedce_cos_gram + fedce_round_weights + the weighted sum (coordinator/\n"
            "             aggregate.c), timed from the end of the hash; the same with the row after\n"
            "             the hash (the previous close); then the new model's digest\n"
            "  fedavg     θ += w_k·Δ_k per update: from memory, and as the coordinator does it from\n"
            "             the journal (page cache; the floats 2 MiB-aligned as persist.c writes\n"
            "             them, so mapped 2 MiB at a time): with the close's threads and the\n"
            "             summing process (the coordinator's path, sumproc.h), on threads alone,\n"
            "             and on 1 thread; summed in time (intime.c, updates arriving apart: the close\n"
            "             sums only the updates from the last to arrive on, timed for each of the\n"
            "             K positions it can have and averaged); then the digest\n"
            "  numpy      bench/numpy_aggregate.py on the same updates and weights (--numpy)\n"
            "Each timing is the median of --repeat runs after one warm-up.\n\n"
            "  --clients K          updates (default 10)\n"
            "  --params P           floats per update (default 1000000)\n"
            "  --weighting W        fedavg | fedce (default fedce)\n"
            "  --threads T          threads of the weighted sum, as [aggregation] threads (default 2); numpy\n"
            "                       gets as many BLAS threads\n"
            "  --repeat R           timed repetitions (default 5)\n"
            "  --journal-dir DIR    where the FedAvg journal goes (default /tmp)\n"
            "  --numpy SCRIPT       run the numpy baseline (/usr/bin/python3 SCRIPT) on the same data\n"
            "  --tmp DIR            where the .npy files for it go (default /dev/shm)\n"
            "  --json               last stdout line: one JSON object\n"
            "  --help\n");
}

int bench_cmd_aggregate(int argc, char **argv) {
    enum { O_CLIENTS = 256, O_PARAMS, O_WEIGHTING, O_THREADS, O_REPEAT, O_JDIR, O_NUMPY, O_TMP, O_JSON, O_HELP };
    static const struct option longopts[] = {
        {"clients", required_argument, 0, O_CLIENTS}, {"params", required_argument, 0, O_PARAMS},
        {"weighting", required_argument, 0, O_WEIGHTING}, {"threads", required_argument, 0, O_THREADS},
        {"repeat", required_argument, 0, O_REPEAT}, {"journal-dir", required_argument, 0, O_JDIR},
        {"numpy", required_argument, 0, O_NUMPY}, {"tmp", required_argument, 0, O_TMP},
        {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    s_agg_t a;
    memset(&a, 0, sizeof a);
    a.K = 10, a.P = 1000000, a.server_lr = 1.0;
    int fedce = 1, threads = 2, repeat = 5, json = 0, c;
    const char *jdir = "/tmp", *numpy = NULL, *tmpdir = "/dev/shm";
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_CLIENTS:
            if (bench_num(optarg, 1, 10000, &v))
                return bench_bad("aggregate", "--clients", optarg, "an integer in [1, 10000]");
            a.K = (size_t)v;
            break;
        case O_PARAMS:
            if (bench_num(optarg, 1, 2e9, &v)) return bench_bad("aggregate", "--params", optarg, "an integer in [1, 2e9]");
            a.P = (size_t)v;
            break;
        case O_WEIGHTING:
            if (strcmp(optarg, "fedavg") && strcmp(optarg, "fedce"))
                return bench_bad("aggregate", "--weighting", optarg, "fedavg or fedce");
            fedce = strcmp(optarg, "fedce") == 0;
            break;
        case O_THREADS:
            if (bench_num(optarg, 1, 8, &v)) return bench_bad("aggregate", "--threads", optarg, "an integer in [1, 8]");
            threads = (int)v;
            break;
        case O_REPEAT:
            if (bench_num(optarg, 1, 1000, &v)) return bench_bad("aggregate", "--repeat", optarg, "an integer in [1, 1000]");
            repeat = (int)v;
            break;
        case O_JDIR: jdir = optarg; break;
        case O_NUMPY: numpy = optarg; break;
        case O_TMP: tmpdir = optarg; break;
        case O_JSON: json = 1; break;
        case O_HELP: s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "concord-bench aggregate: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (a.P > (size_t)INT32_MAX) return bench_bad("aggregate", "--params", "P", "at most 2^31 - 1 (BLAS int)");
    openblas_set_num_threads(1); /* as concord-coordinator */
    a.threads = threads;
    size_t K = a.K, P = a.P, KP = K * P;
    double upd_bytes = (double)KP * sizeof(float);

    /* The updates (small values, as real Δs), θ, and buffers, all touched before timing. */
    cc_rng_t rng;
    cc_rng_seed(&rng, 11);
    /* The summing process, where the coordinator has one: forked now, while this process is
     * small, as the coordinator does. */
    if (!fedce && threads >= 2 && a.P >= WSUM_HELPER_MIN) {
        cc_err_t err = {0};
        if (!(a.helper = sumproc_start(&err)) || sumproc_buffers(a.helper, P, &err))
            return fprintf(stderr, "concord-bench aggregate: %s\n", err.msg), 1;
    }
    a.U = cc_xalloc_floats(KP);
    for (size_t i = 0; i < KP; i++) a.U[i] = (float)(1e-3 * (2.0 * cc_rng_uniform(&rng) - 1.0));
    a.theta = a.helper ? sumproc_take(a.helper) : cc_xalloc_floats(P), a.theta0 = cc_xalloc_floats(P);
    for (size_t i = 0; i < P; i++) a.theta0[i] = (float)(0.1 * (2.0 * cc_rng_uniform(&rng) - 1.0));
    memcpy(a.theta, a.theta0, P * sizeof(float));
    a.n_samples = cc_xcalloc(K, sizeof *a.n_samples);
    a.w = cc_xcalloc(K, sizeof *a.w);
    for (size_t k = 0; k < K; k++) a.n_samples[k] = 500 + cc_rng_below(&rng, 1000);

    /* (a) memory bandwidth: read passes over the K·P floats (at least S_BW_MIN: over a
     * buffer of its own when they are fewer), and a copy of up to 256 MiB. */
    size_t bw_n = KP >= S_BW_MIN ? KP : S_BW_MIN;
    float *bw_own = KP >= S_BW_MIN ? NULL : cc_xalloc_floats(bw_n);
    for (size_t i = 0; bw_own && i < bw_n; i++) bw_own[i] = (float)(i & 1023) * 1e-6f;
    const float *bw_buf = bw_own ? bw_own : a.U;
    float sink = 0;
    size_t ncopy = KP < ((size_t)64 << 20) ? KP : ((size_t)64 << 20);
    float *copy_dst = cc_xalloc_floats(ncopy);
    memset(copy_dst, 0, ncopy * sizeof(float));
    double *tt = cc_xcalloc((size_t)repeat + 1, sizeof *tt);
    double bw_read[2], bw_copy[2];
    for (int T = 1; T <= 2; T++) {
        s_pass(bw_buf, NULL, bw_n, T, 0, &sink);
        for (int r = 0; r < repeat; r++) tt[r] = s_pass(bw_buf, NULL, bw_n, T, 0, &sink);
        bw_read[T - 1] = (double)bw_n * sizeof(float) / bench_median(tt, (size_t)repeat) / 1e9;
        s_pass(a.U, copy_dst, ncopy, T, 1, &sink);
        for (int r = 0; r < repeat; r++) tt[r] = s_pass(a.U, copy_dst, ncopy, T, 1, &sink);
        bw_copy[T - 1] = 2.0 * (double)ncopy * sizeof(float) / bench_median(tt, (size_t)repeat) / 1e9;
    }
    free(copy_dst);
    double bw = bw_read[0] > bw_read[1] ? bw_read[0] : bw_read[1]; /* the machine's read bandwidth */
    double pass_s = upd_bytes / (bw * 1e9);                       /* one pass over the updates */
    /* The digest of the new θ (coord_aggregate's last line), timed apart. */
    wire_digest_floats(a.digest, a.theta, P);
    for (int r = 0; r < repeat; r++) {
        double t0 = cc_now();
        wire_digest_floats(a.digest, a.theta, P);
        tt[r] = cc_now() - t0;
    }
    double digest_s = bench_median(tt, (size_t)repeat);

    printf("aggregate: K = %d updates x P = %zu floats (%.1f MB of updates), %s, OpenBLAS %d thread%s (%s)\n", (int)K,
           P, upd_bytes / 1e6, fedce ? "FedCE" : "FedAvg", 1, "", openblas_get_corename());
    printf("memory bandwidth: read %.2f GB/s (1 thread), %.2f GB/s (2 threads); copy %.2f / %.2f GB/s (read+write)\n",
           bw_read[0], bw_read[1], bw_copy[0], bw_copy[1]);
    printf("one pass over the updates at %.2f GB/s: %.2f ms; digest of the new model (BLAKE2b, P floats): %.2f ms\n",
           bw, pass_s * 1e3, digest_s * 1e3);

    json_t *jres = json_object();
    int rc = 0;
    double close_s = 0, agg_s = 0;
    if (fedce) {
        /* G's rows of updates 0..K−2 are built at ingest, before the close, each on one
         * worker thread beside its update's verification: timed apart. */
        a.G = cc_xcalloc(K * K, sizeof *a.G);
        uint8_t *frame_buf = cc_xmalloc(P * sizeof(float) + 3);
        memcpy(frame_buf + 3, a.U + (K - 1) * P, P * sizeof(float)); /* unaligned, as ZeroMQ may leave it */
        a.frame = frame_buf + 3;
        double t_rows = cc_now();
        for (size_t k = 0; k + 1 < K; k++) s_gram_row(&a, k, 1);
        double ingest_rows_s = cc_now() - t_rows;
        enum { R_MAX = 64 };
        int R = repeat > R_MAX ? R_MAX : repeat;
        /* now: hash, row wait, weights, sum; before: row, weights, sum; alone: row, hash */
        double now[4][R_MAX], was[3][R_MAX], alone[2][R_MAX], tot[R_MAX], tot_was[R_MAX];
        double paired[R_MAX], paired_was[R_MAX], parts[4];
        uint8_t hash[WIRE_DIGEST_BYTES];
        memcpy(a.theta, a.theta0, P * sizeof(float));
        rc = s_close_fedce_early(&a, parts) || s_close_fedce_serial(&a, parts); /* warm-up */
        for (int r = 0; r < R && !rc; r++) {
            memcpy(a.theta, a.theta0, P * sizeof(float));
            double pass_now = s_pass_now(bw_buf, bw_n, KP, &sink);
            rc = s_close_fedce_early(&a, parts);
            for (int s = 0; s < 4; s++) now[s][r] = parts[s];
            tot[r] = parts[1] + parts[2] + parts[3];
            paired[r] = tot[r] / pass_now;
            memcpy(a.theta, a.theta0, P * sizeof(float));
            pass_now = s_pass_now(bw_buf, bw_n, KP, &sink);
            if (!rc) rc = s_close_fedce_serial(&a, parts);
            for (int s = 0; s < 3; s++) was[s][r] = parts[s];
            tot_was[r] = parts[0] + parts[1] + parts[2];
            paired_was[r] = tot_was[r] / pass_now;
            double t0 = cc_now();
            memcpy(a.U + (K - 1) * P, a.frame, P * sizeof(float));
            s_gram_row(&a, K - 1, 1);
            double t1 = cc_now();
            wire_digest_bytes(hash, a.frame, P * sizeof(float));
            alone[0][r] = t1 - t0, alone[1][r] = cc_now() - t1;
        }
        if (rc) return 1;
        double med[4], med_was[3], med_alone[2];
        for (int s = 0; s < 4; s++) med[s] = bench_median(now[s], (size_t)R);
        for (int s = 0; s < 3; s++) med_was[s] = bench_median(was[s], (size_t)R);
        for (int s = 0; s < 2; s++) med_alone[s] = bench_median(alone[s], (size_t)R);
        agg_s = bench_median(tot, (size_t)R);
        double was_s = bench_median(tot_was, (size_t)R);
        close_s = agg_s + digest_s;
        printf("FedCE close, from the end of the last update's hash: wait for its Gram row %.2f ms, weights %.3f ms, "
               "weighted sum (%d thread%s) %.2f ms\n", med[1] * 1e3, med[2] * 1e3, threads, threads > 1 ? "s" : "",
               med[3] * 1e3);
        printf("  the last update's Gram row (frame copy + dots, 1 worker thread) %.2f ms alone; its BLAKE2b %.2f ms "
               "alone, %.2f ms beside the row\n", med_alone[0] * 1e3, med_alone[1] * 1e3, med[0] * 1e3);
        printf("  before (the row after the hash, %d thread%s): row %.2f ms + weights %.3f ms + weighted sum %.2f ms "
               "= %.2f ms = %.2fx one pass\n", threads, threads > 1 ? "s" : "", med_was[0] * 1e3, med_was[1] * 1e3,
               med_was[2] * 1e3, was_s * 1e3, was_s / pass_s);
        printf("  the other %zu Gram rows, built as those updates arrived (1 thread each): %.2f ms in all (%.2f ms per "
               "update)\n", K - 1, ingest_rows_s * 1e3, K > 1 ? ingest_rows_s * 1e3 / (double)(K - 1) : 0.0);
        /* For comparison (the first design): the whole Gram matrix at close with ssyrk. */
        double alt_s;
        {
            float *G = cc_xcalloc(K * K, sizeof *G);
            for (int r = -1; r < R; r++) {
                double t0 = cc_now();
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)K, (int)P, 1.0f, a.U, (int)P, 0.0f, G, (int)K);
                if (r >= 0) alone[0][r] = cc_now() - t0;
            }
            alt_s = bench_median(alone[0], (size_t)R);
            free(G);
        }
        printf("  for comparison: the whole Gram matrix at close (cblas_ssyrk, 1 thread) %.2f ms\n", alt_s * 1e3);
        double paired_passes = bench_median(paired, (size_t)R), paired_was_passes = bench_median(paired_was, (size_t)R);
        printf("  close %.2f ms = %.2fx one pass (target <= 2.2x; before %.2fx); with the model digest %.2f ms = %.2fx\n",
               agg_s * 1e3, agg_s / pass_s, was_s / pass_s, close_s * 1e3, close_s / pass_s);
        printf("  paired (each close against a read pass just before it): median %.2fx one pass (before %.2fx)\n",
               paired_passes, paired_was_passes);
        json_t *jf = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "last_gram_row_s", med_alone[0],
                               "weights_s", med[2], "weighted_sum_s", med[3], "ingest_gram_rows_s", ingest_rows_s,
                               "ssyrk_gram_s", alt_s, "aggregation_s", agg_s, "close_with_digest_s", close_s, "passes",
                               agg_s / pass_s, "passes_with_digest", close_s / pass_s, "paired_passes", paired_passes);
        json_object_set_new(jf, "last_hash_s", json_real(med_alone[1]));
        json_object_set_new(jf, "hash_beside_row_s", json_real(med[0]));
        json_object_set_new(jf, "row_wait_s", json_real(med[1]));
        json_object_set_new(jf, "serial", json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "last_gram_row_s", med_was[0],
                                                    "weights_s", med_was[1], "weighted_sum_s", med_was[2],
                                                    "aggregation_s", was_s, "passes", was_s / pass_s, "paired_passes",
                                                    paired_was_passes));
        json_object_set_new(jres, "fedce", jf);
        free(a.G), free(frame_buf);
    } else {
        /* The journal: one "update" record per client (a small JSON header, a zero run, Δ at a
         * 2 MiB-aligned offset), written by persist.c's own wsum_record_append before timing,
         * so reads come from the page cache. */
        char jpath[4096];
        cc_err_t err = {0};
        snprintf(jpath, sizeof jpath, "%s/concord-bench-agg-%ld.journal", jdir, (long)getpid());
        unlink(jpath);
        a.rec = cc_xcalloc(K, sizeof *a.rec);
        a.from = cc_xcalloc(K, sizeof *a.from);
        if (journal_open(jpath, 0, &a.journal, NULL, &err)) return fprintf(stderr, "concord-bench aggregate: %s\n", err.msg), 1;
        for (size_t k = 0; k < K; k++) {
            char hdr[256];
            uint32_t hl = (uint32_t)snprintf(hdr, sizeof hdr, "{\"type\":\"update\",\"client\":\"site%zu\",\"n_samples\":%llu,\"vectors\":1}",
                                             k + 1, (unsigned long long)a.n_samples[k]);
            if (wsum_record_append(a.journal, hdr, a.U + k * P, P, NULL, &a.rec[k], &err))
                return fprintf(stderr, "concord-bench aggregate: %s\n", err.msg), 1;
            a.from[k] = wsum_record_floats(&a.rec[k], hl);
        }
        s_fedavg_weights(&a);
        /* memory / journal as the coordinator sums it (its threads and its helper process) /
         * journal on threads alone / journal on 1 thread */
        const char *names[4] = {"memory", "journal", "journal_threads", "journal_1thread"};
        double med[4], *paired = cc_xcalloc((size_t)repeat, sizeof *paired);
        for (int variant = 0; variant < 4 && !rc; variant++) {
            for (int r = -1; r < repeat && !rc; r++) { /* r = -1: warm-up */
                s_fresh_theta(&a, variant == 1);
                /* before every variant's close, so that all start with the caches as cold */
                double pass_now = s_pass_now(bw_buf, bw_n, KP, &sink);
                double t0 = cc_now();
                rc = s_stream(&a, variant >= 1, variant == 3 ? 1 : threads, variant == 1);
                if (r >= 0) tt[r] = cc_now() - t0;
                if (r >= 0 && variant == 1) paired[r] = pass_now / tt[r];
            }
            med[variant] = bench_median(tt, (size_t)repeat);
        }
        double paired_fraction = bench_median(paired, (size_t)repeat);
        free(paired);
        double it_close = 0, it_paired = 0, it_prefix = 0, it_left = 0;
        if (!rc) rc = s_fedavg_in_time(&a, bw_buf, bw_n, &sink, &it_close, &it_paired, &it_prefix, &it_left);
        float *it_theta = cc_xalloc_floats(P); /* the last in-time close's result */
        memcpy(it_theta, a.theta, P * sizeof(float));
        /* leave θ as the coordinator's path computes it, for the numpy check */
        memcpy(a.theta, a.theta0, P * sizeof(float));
        if (!rc) rc = s_stream(&a, 1, threads, 1);
        int it_same = memcmp(it_theta, a.theta, P * sizeof(float)) == 0;
        free(it_theta);
        wsum_src_t jsrc = {.journal = a.journal, .recs = a.rec, .from = a.from};
        int mapped = wsum_maps(&jsrc, K);
        journal_close(&a.journal);
        unlink(jpath);
        if (rc) return 1;
        agg_s = med[1]; /* the coordinator's path */
        close_s = agg_s + digest_s;
        json_t *jf = json_object();
        printf("FedAvg close (θ += w_k·Δ_k over the K updates by blocks; rate = update bytes / time, vs read bandwidth %.2f GB/s;"
               " journal %s; %s):\n", bw, mapped ? "mapped 2 MiB at a time" : "read with pread",
               sumproc_alive(a.helper) ? "the coordinator's path shares the blocks with its helper process" : "no helper process");
        for (int variant = 0; variant < 4; variant++) {
            double rate = upd_bytes / med[variant] / 1e9;
            printf("  %-16s %8.2f ms  %6.2f GB/s  %5.1f%% of bandwidth%s\n", names[variant], med[variant] * 1e3, rate,
                   100.0 * rate / bw, variant == 1 ? "   <- the coordinator's code path" : "");
            json_object_set_new(jf, names[variant], json_pack("{s:f, s:f, s:f}", "seconds", med[variant], "gb_per_s", rate,
                                                              "fraction_of_bandwidth", rate / bw));
        }
        printf("  with the model digest (coordinator's path): %.2f ms, %.1f%% of bandwidth\n", close_s * 1e3,
               100.0 * upd_bytes / close_s / 1e9 / bw);
        printf("  paired (each close against a read pass just before it): median %.1f%% of bandwidth\n",
               100.0 * paired_fraction);
        printf("  summed in time (the coordinator's default, in θ_t's own buffer), updates arriving apart: those\n"
               "  before the last to arrive summed while waiting (%.2f ms per update, one at a time); the close sums\n"
               "  the rest, %.1f updates on average over the K positions the last can have: %.2f ms = %.1f%% of\n"
               "  bandwidth (paired %.1f%%); the result %s the full close's bits\n",
               it_prefix * 1e3, it_left, it_close * 1e3, 100.0 * upd_bytes / it_close / 1e9 / bw, 100.0 * it_paired,
               it_same ? "has" : "DOES NOT HAVE");
        json_object_set_new(jf, "close_with_digest_s", json_real(close_s));
        json_object_set_new(jf, "journal_mapped", json_boolean(mapped));
        json_object_set_new(jf, "helper_process", json_boolean(sumproc_alive(a.helper)));
        json_object_set_new(jf, "paired_fraction_of_bandwidth", json_real(paired_fraction));
        json_object_set_new(jf, "in_time", json_pack("{s:f, s:f, s:f, s:f, s:f}", "seconds", it_close,
                                                      "fraction_of_bandwidth", upd_bytes / it_close / 1e9 / bw,
                                                      "paired_fraction_of_bandwidth", it_paired, "prefix_s_per_update",
                                                      it_prefix, "updates_left_mean", it_left));
        json_object_set_new(json_object_get(jf, "in_time"), "same_bits_as_full_close", json_boolean(it_same));
        json_object_set_new(jres, "fedavg", jf);
    }
    /* The result θ (for the numpy check): θ_t + Σ w_k Δ_k. */
    double theta_sum = 0;
    for (size_t i = 0; i < P; i++) theta_sum += (double)a.theta[i] - (double)a.theta0[i];

    json_t *np = NULL;
    if (numpy) {
        np = s_run_numpy(numpy, tmpdir, &a, a.w, threads, repeat);
        if (np) {
            double np_avg = json_real_value(json_object_get(np, "average_s"));
            double np_mv = json_real_value(json_object_get(np, "matvec_s"));
            double np_check = json_real_value(json_object_get(np, "weighted_sum_total"));
            printf("numpy (%s): np.average %.2f ms, w @ U %.2f ms", json_string_value(json_object_get(np, "blas")),
                   np_avg * 1e3, np_mv * 1e3);
            json_t *nf = json_object_get(np, "fedce_equivalent_s");
            if (nf) printf(", U @ U.T + w @ U %.2f ms", json_real_value(nf) * 1e3);
            printf("\n  Concord close (aggregation, without / with the digest) vs np.average: %.2fx / %.2fx faster; "
                   "vs w @ U: %.2fx / %.2fx\n",
                   np_avg / agg_s, np_avg / close_s, np_mv / agg_s, np_mv / close_s);
            if (nf)
                printf("  vs numpy's FedCE equivalent (U @ U.T + w @ U): %.2fx / %.2fx\n", json_real_value(nf) / agg_s,
                       json_real_value(nf) / close_s);
            printf("  check: Σ(θ − θ_t) Concord %.6g, numpy Σ(w @ U) %.6g\n", theta_sum, np_check);
        }
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:i, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "cmd",
                              "aggregate", "weighting", fedce ? "fedce" : "fedavg", "clients", (json_int_t)K, "params",
                              (json_int_t)P, "threads", threads, "openblas_core", openblas_get_corename(),
                              "read_gb_per_s_1t", bw_read[0], "read_gb_per_s_2t", bw_read[1], "copy_gb_per_s_1t",
                              bw_copy[0], "copy_gb_per_s_2t", bw_copy[1], "bandwidth_gb_per_s", bw, "one_pass_s", pass_s,
                              "digest_s", digest_s, "aggregation_s", agg_s, "close_s", close_s, "theta_delta_sum",
                              theta_sum);
        json_object_update(j, jres);
        if (np) json_object_set(j, "numpy", np);
        bench_print_json(j);
    }
    json_decref(jres);
    if (np) json_decref(np);
    (void)sink;
    if (!sumproc_give(a.helper, a.theta)) free(a.theta);
    sumproc_stop(&a.helper);
    free(tt), free(bw_own), free(a.U), free(a.theta0), free(a.n_samples), free(a.w), free(a.rec), free(a.from);
    return 0;
}
