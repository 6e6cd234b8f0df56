/* concord-bench — micro-benchmarks behind docs/benchmarks.md (DESIGN §9).
 *
 *   concord-bench gemm --layers 784,256,128,10 --batch 64 --threads 1 --seconds 3 --json
 *
 * One binary, one subcommand per benchmark: each is a `s_cmd_<name>(argc, argv)` function
 * registered in s_cmds[] below, called with argv[0] = its name so it can run getopt_long
 * on its own options. `concord-bench --help` lists the subcommands, `concord-bench help CMD`
 * (or `concord-bench CMD --help`) shows one. With --json the last stdout line of every
 * subcommand is one JSON object. */
#include <cblas.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "rng.h"
#include "util.h"

/* ---- Shared helpers ------------------------------------------------------------------- */

typedef int (*s_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    s_cmd_fn fn;
    const char *summary;
} s_cmd_t;

static int s_cmd_gemm(int argc, char **argv);
/* tools/bench_net.c and tools/bench_aggregate.c */
int bench_cmd_ingest(int argc, char **argv);
int bench_cmd_clients(int argc, char **argv);
int bench_cmd_aggregate(int argc, char **argv);

static const s_cmd_t s_cmds[] = {
    {"gemm", s_cmd_gemm, "time the cblas_sgemm calls of one MLP training step (the bare-BLAS bound)"},
    {"aggregate", bench_cmd_aggregate, "round-close aggregation (FedAvg / FedCE) vs memory bandwidth"},
    {"ingest", bench_cmd_ingest, "verified Update ingest vs a bare ZeroMQ DEALER->ROUTER transfer"},
    {"clients", bench_cmd_clients, "load generator: K clients answering a real coordinator's tasks at once"},
};
#define S_N_CMDS (sizeof s_cmds / sizeof s_cmds[0])

static void s_usage(FILE *fp) {
    fprintf(fp,
            "Usage: concord-bench COMMAND [options]\n"
            "Micro-benchmarks of Concord's building blocks (see docs/benchmarks.md).\n\n"
            "Commands:\n");
    for (size_t i = 0; i < S_N_CMDS; i++) fprintf(fp, "  %-10s %s\n", s_cmds[i].name, s_cmds[i].summary);
    fprintf(fp,
            "\n  help COMMAND  options of one command (same as COMMAND --help)\n"
            "  --help, --version\n"
            "With --json, the last stdout line of a command is one JSON object.\n");
}

static const s_cmd_t *s_find_cmd(const char *name) {
    for (size_t i = 0; i < S_N_CMDS; i++)
        if (strcmp(s_cmds[i].name, name) == 0) return &s_cmds[i];
    return NULL;
}

/* Parses "a,b,c" into at most max positive integers <= hi; returns the count or -1. */
static int s_parse_int_list(const char *text, int *out, int max, int hi) {
    const char *p = text;
    int n = 0;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > hi || n == max) return -1;
        out[n++] = (int)v;
        if (*end == '\0') return n;
        if (*end != ',') return -1;
        p = end + 1;
    }
}

static float *s_random_floats(cc_rng_t *rng, size_t n, float scale) {
    float *p = cc_xalloc_floats(n);
    for (size_t i = 0; i < n; i++) p[i] = scale * (float)(2.0 * cc_rng_uniform(rng) - 1.0);
    return p;
}

/* ---- gemm ----------------------------------------------------------------------------- */

#define S_GEMM_MAX_LAYERS 16

typedef enum { S_FWD, S_DW, S_DX } s_gemm_kind_t;

/* One cblas_sgemm call of the training step, exactly as common/layers.c issues it. */
typedef struct {
    s_gemm_kind_t kind;
    int layer;               /* 0-based dense layer */
    int M, N, K;
    double flops;            /* 2·M·N·K */
    double seconds;          /* accumulated over the timed iterations */
    int in_model;            /* the model issues this call (it skips the first layer's dX) */
} s_gemm_call_t;

typedef struct {
    int n_layers;            /* dense layers */
    int B;
    int in[S_GEMM_MAX_LAYERS], out[S_GEMM_MAX_LAYERS];
    float *x[S_GEMM_MAX_LAYERS];    /* (B, in): layer input (activations) */
    float *w[S_GEMM_MAX_LAYERS];    /* (out, in) */
    float *y[S_GEMM_MAX_LAYERS];    /* (B, out): forward output */
    float *dy[S_GEMM_MAX_LAYERS];   /* (B, out): gradient at the output */
    float *dw[S_GEMM_MAX_LAYERS];   /* (out, in) */
    float *dx[S_GEMM_MAX_LAYERS];   /* (B, in) */
    int n_calls;
    s_gemm_call_t calls[3 * S_GEMM_MAX_LAYERS];
} s_gemm_t;

static const char *s_gemm_kind_name(s_gemm_kind_t k) {
    return k == S_FWD ? "fwd" : k == S_DW ? "dW" : "dX";
}

/* The calls of dense_forward / dense_backward (common/layers.c), same transposes, leading
 * dimensions and beta: forward out = in·Wᵀ (+= onto the bias), dW += doutᵀ·in, din = dout·W. */
static void s_gemm_exec(s_gemm_t *g, const s_gemm_call_t *c) {
    int i = c->layer, B = g->B, ni = g->in[i], no = g->out[i];
    switch (c->kind) {
    case S_FWD:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, no, ni, 1.0f, g->x[i], ni, g->w[i], ni,
                    1.0f, g->y[i], no);
        break;
    case S_DW:
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, no, ni, B, 1.0f, g->dy[i], no, g->x[i], ni,
                    1.0f, g->dw[i], ni);
        break;
    case S_DX:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, ni, no, 1.0f, g->dy[i], no, g->w[i], ni,
                    0.0f, g->dx[i], ni);
        break;
    }
}

static void s_gemm_add_call(s_gemm_t *g, s_gemm_kind_t kind, int layer) {
    s_gemm_call_t *c = &g->calls[g->n_calls++];
    int B = g->B, ni = g->in[layer], no = g->out[layer];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->layer = layer;
    if (kind == S_FWD) c->M = B, c->N = no, c->K = ni;
    else if (kind == S_DW) c->M = no, c->N = ni, c->K = B;
    else c->M = B, c->N = ni, c->K = no;
    c->flops = 2.0 * c->M * c->N * c->K;
    c->in_model = !(kind == S_DX && layer == 0);
}

static void s_gemm_init(s_gemm_t *g, const int *sizes, int n_sizes, int B, uint64_t seed) {
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    memset(g, 0, sizeof *g);
    g->n_layers = n_sizes - 1;
    g->B = B;
    for (int i = 0; i < g->n_layers; i++) {
        int ni = g->in[i] = sizes[i], no = g->out[i] = sizes[i + 1];
        float ws = 1.0f / sqrtf((float)ni);
        g->x[i] = s_random_floats(&rng, (size_t)B * ni, 1.0f);
        g->w[i] = s_random_floats(&rng, (size_t)no * ni, ws);
        g->y[i] = s_random_floats(&rng, (size_t)B * no, ws);
        g->dy[i] = s_random_floats(&rng, (size_t)B * no, 1.0f / (float)B);
        g->dw[i] = cc_xalloc_floats((size_t)no * ni);
        g->dx[i] = cc_xalloc_floats((size_t)B * ni);
        memset(g->dw[i], 0, (size_t)no * ni * sizeof(float));
        memset(g->dx[i], 0, (size_t)B * ni * sizeof(float));
    }
    /* Forward through the layers, then backward from the head: dW then dX per layer. */
    for (int i = 0; i < g->n_layers; i++) s_gemm_add_call(g, S_FWD, i);
    for (int i = g->n_layers - 1; i >= 0; i--) {
        s_gemm_add_call(g, S_DW, i);
        s_gemm_add_call(g, S_DX, i);
    }
}

static void s_gemm_free(s_gemm_t *g) {
    for (int i = 0; i < g->n_layers; i++) {
        free(g->x[i]), free(g->w[i]), free(g->y[i]);
        free(g->dy[i]), free(g->dw[i]), free(g->dx[i]);
    }
}

/* One training step's worth of calls; with timed, each call's time is accumulated. */
static void s_gemm_step(s_gemm_t *g, int timed) {
    for (int k = 0; k < g->n_calls; k++) {
        s_gemm_call_t *c = &g->calls[k];
        if (!timed) {
            s_gemm_exec(g, c);
            continue;
        }
        double t0 = cc_now();
        s_gemm_exec(g, c);
        c->seconds += cc_now() - t0;
    }
}

static void s_gemm_usage(FILE *fp) {
    fprintf(fp,
            "Usage: concord-bench gemm [options]\n"
            "Times, in a loop, exactly the cblas_sgemm calls of one training step of a dense MLP\n"
            "(per layer: forward X·Wᵀ, backward dW += dYᵀ·X and dX = dY·W, with the transposes and\n"
            "leading dimensions of common/layers.c) on random data, after a warm-up. Reports\n"
            "GFLOP/s of the full 6·MACs set and the equivalent samples/s (rate / (6·MACs per\n"
            "sample)), per-call times, and the rate of the subset the model issues (it skips\n"
            "the first layer's dX).\n\n"
            "  --layers N0,N1,...   layer widths, input first (default 784,256,128,10)\n"
            "  --batch N            rows per step (default 64)\n"
            "  --threads N          OpenBLAS threads (default 1)\n"
            "  --seconds S          timed duration (default 3)\n"
            "  --seed N             random data seed (default 1)\n"
            "  --json               last stdout line: one JSON object\n"
            "  --help\n");
}

static int s_cmd_gemm(int argc, char **argv) {
    enum { O_LAYERS = 256, O_BATCH, O_THREADS, O_SECONDS, O_SEED, O_JSON, O_HELP };
    static const struct option longopts[] = {
        {"layers", required_argument, 0, O_LAYERS}, {"batch", required_argument, 0, O_BATCH},
        {"threads", required_argument, 0, O_THREADS}, {"seconds", required_argument, 0, O_SECONDS},
        {"seed", required_argument, 0, O_SEED}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    int sizes[S_GEMM_MAX_LAYERS + 1] = {784, 256, 128, 10};
    int n_sizes = 4, B = 64, threads = 1, json = 0;
    double seconds = 3.0, v;
    uint64_t seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_LAYERS:
            n_sizes = s_parse_int_list(optarg, sizes, S_GEMM_MAX_LAYERS + 1, 1 << 16);
            if (n_sizes < 2)
                return bench_bad("gemm", "--layers", optarg, "2 to 17 comma-separated widths in [1, 65536]");
            break;
        case O_BATCH:
            if (bench_num(optarg, 1, 1 << 16, &v)) return bench_bad("gemm", "--batch", optarg, "an integer in [1, 65536]");
            B = (int)v;
            break;
        case O_THREADS:
            if (bench_num(optarg, 1, 256, &v)) return bench_bad("gemm", "--threads", optarg, "an integer in [1, 256]");
            threads = (int)v;
            break;
        case O_SECONDS:
            if (bench_num(optarg, 0.01, 3600, &v)) return bench_bad("gemm", "--seconds", optarg, "a number in [0.01, 3600]");
            seconds = v;
            break;
        case O_SEED:
            if (bench_num(optarg, 0, 1.8e19, &v)) return bench_bad("gemm", "--seed", optarg, "a non-negative integer");
            seed = strtoull(optarg, NULL, 10);
            break;
        case O_JSON: json = 1; break;
        case O_HELP: s_gemm_usage(stdout); return 0;
        default: s_gemm_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "concord-bench gemm: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    openblas_set_num_threads(threads);

    s_gemm_t g;
    s_gemm_init(&g, sizes, n_sizes, B, seed);
    double macs = 0.0; /* multiply-adds per sample of one forward pass */
    for (int i = 0; i < g.n_layers; i++) macs += (double)g.in[i] * g.out[i];

    /* Warm-up: page in the buffers, start OpenBLAS's threads, settle the clock. */
    double t0 = cc_now();
    for (int it = 0; it < 3 || cc_now() - t0 < 0.25 * (seconds < 1.0 ? seconds : 1.0); it++) s_gemm_step(&g, 0);

    long iters = 0;
    t0 = cc_now();
    double elapsed;
    do {
        s_gemm_step(&g, 1);
        iters++;
    } while ((elapsed = cc_now() - t0) < seconds);

    double step_flops = 0.0, model_flops = 0.0, model_sec = 0.0, calls_sec = 0.0;
    for (int k = 0; k < g.n_calls; k++) {
        const s_gemm_call_t *cl = &g.calls[k];
        step_flops += cl->flops;
        calls_sec += cl->seconds;
        if (cl->in_model) model_flops += cl->flops, model_sec += cl->seconds;
    }
    double gflops = step_flops * (double)iters / elapsed / 1e9;
    double sps = (double)B * (double)iters / elapsed;
    /* The model-set figures come from the per-call times (scaled to the wall clock so the
     * small timer overhead is spread evenly). */
    double scale = calls_sec > 0 ? elapsed / calls_sec : 1.0;
    double model_step = model_sec * scale / (double)iters;
    double model_gflops = model_flops / model_step / 1e9;
    double model_sps = (double)B / model_step;

    printf("gemm: layers");
    for (int i = 0; i < n_sizes; i++) printf("%c%d", i ? ',' : ' ', sizes[i]);
    printf(", batch %d, %d thread%s, OpenBLAS %s\n", B, threads, threads > 1 ? "s" : "", openblas_get_corename());
    printf("  %-6s %-22s %-6s %10s %9s\n", "call", "M x N x K", "trans", "usec/call", "GFLOP/s");
    for (int k = 0; k < g.n_calls; k++) {
        const s_gemm_call_t *cl = &g.calls[k];
        char name[16], shape[48];
        snprintf(name, sizeof name, "%s%d", s_gemm_kind_name(cl->kind), cl->layer + 1);
        snprintf(shape, sizeof shape, "%d x %d x %d", cl->M, cl->N, cl->K);
        double us = cl->seconds / (double)iters * 1e6;
        printf("  %-6s %-22s %-6s %10.2f %9.2f%s\n", name, shape,
               cl->kind == S_FWD ? "N,T" : cl->kind == S_DW ? "T,N" : "N,N", us,
               cl->seconds > 0 ? cl->flops * (double)iters / cl->seconds / 1e9 : 0.0,
               cl->in_model ? "" : "  (not issued by the model)");
    }
    printf("full 6-GEMM set: %.2f GFLOP/s, %.1f usec/step, %.0f samples/s equivalent (%ld steps in %.2fs)\n",
           gflops, elapsed / (double)iters * 1e6, sps, iters, elapsed);
    printf("model's set:     %.2f GFLOP/s, %.1f usec/step, %.0f samples/s equivalent\n", model_gflops,
           model_step * 1e6, model_sps);

    if (json) {
        json_t *lay = json_array(), *calls = json_array();
        for (int i = 0; i < n_sizes; i++) json_array_append_new(lay, json_integer(sizes[i]));
        for (int k = 0; k < g.n_calls; k++) {
            const s_gemm_call_t *cl = &g.calls[k];
            json_array_append_new(calls, json_pack("{s:s, s:i, s:i, s:i, s:i, s:b, s:f, s:f}",
                "kind", s_gemm_kind_name(cl->kind), "layer", cl->layer + 1, "m", cl->M, "n", cl->N,
                "k", cl->K, "in_model", cl->in_model, "usec", cl->seconds / (double)iters * 1e6,
                "gflops", cl->seconds > 0 ? cl->flops * (double)iters / cl->seconds / 1e9 : 0.0));
        }
        json_t *j = json_pack("{s:s, s:o, s:i, s:i, s:s, s:f, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:I}",
            "cmd", "gemm", "layers", lay, "batch", B, "threads", threads,
            "openblas_core", openblas_get_corename(), "seconds", elapsed, "iterations", (json_int_t)iters,
            "macs_per_sample", macs, "flop_per_sample", 6.0 * macs, "gflops", gflops,
            "samples_per_sec", sps, "model_set_flop_per_sample", model_flops / (double)B,
            "model_set_gflops", model_gflops, "model_set_samples_per_sec", model_sps, "calls", calls,
            "peak_rss_bytes", (json_int_t)cc_peak_rss());
        bench_print_json(j);
    }
    s_gemm_free(&g);
    return 0;
}

/* ---- Dispatch ------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    cc_malloc_tune();
    if (argc < 2) {
        s_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        s_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("concord-bench %s\n", CONCORD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            s_usage(stdout);
            return 0;
        }
        const s_cmd_t *c = s_find_cmd(argv[2]);
        if (!c) {
            fprintf(stderr, "concord-bench: unknown command \"%s\" (see --help)\n", argv[2]);
            return 2;
        }
        char *hargv[] = {(char *)c->name, (char *)"--help", NULL};
        return c->fn(2, hargv);
    }
    const s_cmd_t *c = s_find_cmd(cmd);
    if (!c) {
        fprintf(stderr, "concord-bench: unknown command \"%s\" (see --help)\n", cmd);
        return 2;
    }
    return c->fn(argc - 1, argv + 1);
}
