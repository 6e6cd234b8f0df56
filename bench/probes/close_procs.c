/* bench/probes/close_procs.c — does a second thread or a second process sum a mapped journal
 * faster? (docs/benchmarks.md, "FedAvg close: the summing process").
 *
 * Writes K vectors of P floats to a file (at 2 MiB-aligned offsets, as the coordinator's
 * journal stores them, or at the offsets a plain append gives), then sums them the way the
 * FedAvg close does: out's 2 MiB column blocks, four vectors' windows mapped at a time
 * (MAP_POPULATE), out += a0·x0 + a1·x1 + a2·x2 + a3·x3 by 256 KiB, windows unmapped after.
 * Half of the blocks on each of two threads of this process, or on this process and a
 * child forked before any large allocation (out is a shared anonymous mapping). Printed as
 * % of a 2-thread read pass over the same floats in memory, in the same repetition; also
 * the sum from memory on two threads.
 *
 *   cc -O3 -pthread -o /tmp/close_procs bench/probes/close_procs.c
 *   /tmp/close_procs K P PATH ALIGNED      e.g. /tmp/close_procs 12 10000000 build/probe.bin 1
 *
 * PATH should be on the file system the coordinator's state dir lives on; it is removed at
 * the end. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WINDOW ((size_t)2 << 20)        /* bytes mapped per vector and column block */
#define BLOCK (WINDOW / sizeof(float))  /* floats per column block */
#define SUB 65536                       /* floats summed at a time: out's part stays in L2 */

typedef float unaligned_float __attribute__((aligned(1)));

static int s_fd, s_K, s_mapped;
static size_t s_P;
static off_t *s_off;       /* (K) file offset of each vector's first float; shared */
static float *s_out;       /* (P) shared with the child */
static float **s_rows;     /* (K) the vectors in memory (this process only) */
static float s_w[256];
static volatile float s_sink;

typedef struct {
    size_t from, to; /* floats */
} s_range_t;

static double s_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

__attribute__((target_clones("avx2", "default")))
static void s_axpy4(float *restrict y, const float *a, const unaligned_float *restrict x0,
                    const unaligned_float *restrict x1, const unaligned_float *restrict x2,
                    const unaligned_float *restrict x3, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float t = y[i];
        t += a[0] * x0[i];
        t += a[1] * x1[i];
        t += a[2] * x2[i];
        t += a[3] * x3[i];
        y[i] = t;
    }
}

__attribute__((target_clones("avx2", "default")))
static float s_read_sum(const float *p, size_t n) {
    float acc[32] = {0}, s = 0;
    for (size_t i = 0; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; j++) acc[j] += p[i + j];
    for (int j = 0; j < 32; j++) s += acc[j];
    return s;
}

/* out[r) += Σ w_k v_k, the vectors mapped (s_mapped) or in memory; K a multiple of 4. */
static void s_sum(const s_range_t *r) {
    for (size_t c = r->from; c < r->to; c += BLOCK) {
        size_t n = r->to - c < BLOCK ? r->to - c : BLOCK;
        for (int k = 0; k + 4 <= s_K; k += 4) {
            const char *map[4] = {0};
            size_t len[4] = {0};
            const unaligned_float *x[4];
            for (int q = 0; q < 4; q++) {
                if (!s_mapped) {
                    x[q] = s_rows[k + q] + c;
                    continue;
                }
                off_t at = s_off[k + q] + (off_t)(c * sizeof(float)), page = at & ~(off_t)4095;
                len[q] = (size_t)(at - page) + n * sizeof(float);
                map[q] = mmap(NULL, len[q], PROT_READ, MAP_SHARED | MAP_POPULATE, s_fd, page);
                if (map[q] == MAP_FAILED) perror("mmap"), exit(1);
                x[q] = (const unaligned_float *)(map[q] + (at - page));
            }
            for (size_t s = 0; s < n; s += SUB)
                s_axpy4(s_out + c + s, s_w + k, x[0] + s, x[1] + s, x[2] + s, x[3] + s, n - s < SUB ? n - s : SUB);
            for (int q = 0; q < 4; q++)
                if (map[q]) munmap((void *)map[q], len[q]);
        }
    }
}

static void *s_sum_thread(void *arg) {
    s_sum(arg);
    return NULL;
}

static void *s_read_thread(void *arg) {
    const s_range_t *r = arg;
    for (int k = 0; k < s_K; k++) s_sink += s_read_sum(s_rows[k] + r->from, r->to - r->from);
    return NULL;
}

/* Runs f on halves a and b: on two threads, or (child_sock >= 0) b in the child. */
static double s_two(void *(*f)(void *), s_range_t *a, s_range_t *b, int req, int done) {
    double t = s_now();
    pthread_t th;
    if (req >= 0) {
        if (write(req, b, sizeof *b) != sizeof *b) exit(1);
        f(a);
        char c;
        if (read(done, &c, 1) != 1) exit(1);
    } else {
        pthread_create(&th, NULL, f, b);
        f(a);
        pthread_join(th, NULL);
    }
    return s_now() - t;
}

int main(int argc, char **argv) {
    if (argc != 5) return fprintf(stderr, "usage: %s K P PATH ALIGNED(0|1)\n", argv[0]), 2;
    s_K = atoi(argv[1]) / 4 * 4, s_P = (size_t)atol(argv[2]);
    int aligned = atoi(argv[4]);
    if (s_K < 4 || s_K > 256 || s_P < 2 * BLOCK) return fprintf(stderr, "K in [4, 256], P >= %zu\n", 2 * BLOCK), 2;
    int rw = PROT_READ | PROT_WRITE, shared = MAP_SHARED | MAP_ANONYMOUS;
    s_off = mmap(NULL, 256 * sizeof *s_off, rw, shared, -1, 0);
    s_out = mmap(NULL, s_P * sizeof(float), rw, shared, -1, 0);
    s_fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0644);
    int req[2], done[2];
    if (s_fd < 0 || pipe(req) || pipe(done)) return perror(argv[3]), 1;
    for (int k = 0; k < s_K; k++) s_w[k] = 1.0f / (float)s_K;
    if (fork() == 0) { /* the helper: forked while this process is small */
        s_range_t r;
        while (read(req[0], &r, sizeof r) == sizeof r) {
            s_mapped = 1;
            s_sum(&r);
            if (write(done[1], "x", 1) != 1) _exit(1);
        }
        _exit(0);
    }
    s_rows = malloc((size_t)s_K * sizeof *s_rows);
    off_t at = 40; /* a journal header, then per vector a 100-byte head and 32 bytes after */
    for (int k = 0; k < s_K; k++) {
        s_rows[k] = aligned_alloc(64, s_P * sizeof(float));
        for (size_t i = 0; i < s_P; i++) s_rows[k][i] = (float)((i + (size_t)k) & 1023) * 1e-3f;
        s_off[k] = at + 100;
        if (aligned) s_off[k] = (s_off[k] + (off_t)WINDOW - 1) & ~(off_t)(WINDOW - 1);
        if (pwrite(s_fd, s_rows[k], s_P * sizeof(float), s_off[k]) != (ssize_t)(s_P * sizeof(float))) return perror("write"), 1;
        at = s_off[k] + (off_t)(s_P * sizeof(float)) + 32;
    }
    if (fsync(s_fd)) return perror("fsync"), 1;
    size_t half = s_P / BLOCK / 2 * BLOCK;
    s_range_t a = {0, half}, b = {half, s_P};
    double gb = (double)s_K * (double)s_P * sizeof(float) / 1e9;
    printf("K = %d, P = %zu, vectors at %s offsets\n", s_K, s_P, aligned ? "2 MiB-aligned" : "unaligned");
    for (int rep = 0; rep < 4; rep++) {
        double bw = gb / s_two(s_read_thread, &a, &b, -1, -1), r[3];
        s_mapped = 0, r[0] = gb / s_two(s_sum_thread, &a, &b, -1, -1);
        s_mapped = 1, r[1] = gb / s_two(s_sum_thread, &a, &b, -1, -1);
        r[2] = gb / s_two(s_sum_thread, &a, &b, req[1], done[0]);
        printf("read pass 2 threads %.1f GB/s | sum from memory, 2 threads %.0f%% | mapped, 2 threads %.0f%% | "
               "mapped, 2 processes %.0f%%\n", bw, 100 * r[0] / bw, 100 * r[1] / bw, 100 * r[2] / bw);
    }
    close(req[1]);
    unlink(argv[3]);
    return 0;
}
