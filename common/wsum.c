/* wsum.c — see wsum.h. */
#include "wsum.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WSUM_BLOCK 65536 /* floats: 256 KiB; out's block and the vectors' streaming blocks fit in L2 */

typedef struct {
    float *out;
    size_t P, K, b_first, b_end; /* this thread's blocks [b_first, b_end) */
    const wsum_src_t *src;
    const float *scale;
    int rc;
    cc_err_t err;
} wsum_job_t;

/* y += a·x over n floats; plain multiply and add, vectorised by the compiler (an AVX2
 * clone where the CPU has it: the same bits, as there is no FMA contraction in ISO C). */
__attribute__((target_clones("avx2", "default")))
static void s_axpy(float *restrict y, float a, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* y += a0·x0 + a1·x1 + a2·x2 + a3·x3, element by element in that order (the same bits as
 * four s_axpy calls) but reading and writing y once instead of four times. */
__attribute__((target_clones("avx2", "default")))
static void s_axpy4(float *restrict y, const float *a, const float *restrict x0, const float *restrict x1,
                    const float *restrict x2, const float *restrict x3, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float t = y[i];
        t += a[0] * x0[i];
        t += a[1] * x1[i];
        t += a[2] * x2[i];
        t += a[3] * x3[i];
        y[i] = t;
    }
}

static void *s_run(void *arg) {
    wsum_job_t *j = arg;
    const wsum_src_t *src = j->src;
    float *buf = src->rows ? NULL : cc_xalloc_floats(WSUM_BLOCK);
    for (size_t b = j->b_first; b < j->b_end && !j->rc; b++) {
        size_t s0 = b * WSUM_BLOCK, n = j->P - s0 < WSUM_BLOCK ? j->P - s0 : WSUM_BLOCK;
        size_t k = 0;
        if (src->rows) /* in memory: four vectors per pass over out's block */
            for (; k + 4 <= j->K; k += 4)
                s_axpy4(j->out + s0, j->scale + k, src->rows[k] + s0, src->rows[k + 1] + s0, src->rows[k + 2] + s0,
                        src->rows[k + 3] + s0, n);
        for (; k < j->K && !j->rc; k++) {
            const float *x = buf;
            if (src->rows) x = src->rows[k] + s0;
            else j->rc = journal_read(src->journal, &src->recs[k], src->from[k] + s0 * sizeof(float), buf,
                                      n * sizeof(float), &j->err);
            if (!j->rc) s_axpy(j->out + s0, j->scale[k], x, n);
        }
    }
    free(buf);
    return NULL;
}

int wsum_blocked(float *out, size_t P, const wsum_src_t *src, size_t K, const float *scale, int threads,
                 cc_err_t *err) {
    size_t blocks = (P + WSUM_BLOCK - 1) / WSUM_BLOCK;
    if (threads < 1) threads = 1;
    if (threads > 8) threads = 8;
    if ((size_t)threads > blocks) threads = blocks ? (int)blocks : 1;
    wsum_job_t jobs[8];
    pthread_t tid[8];
    int started[8] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = (wsum_job_t){.out = out, .P = P, .K = K, .src = src, .scale = scale,
                               .b_first = blocks * (size_t)t / (size_t)threads,
                               .b_end = blocks * (size_t)(t + 1) / (size_t)threads};
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, s_run, &jobs[t]) == 0;
        if (t > 0 && !started[t]) s_run(&jobs[t]); /* no thread: do it here */
    }
    s_run(&jobs[0]);
    int rc = 0;
    for (int t = 0; t < threads; t++) {
        if (t > 0 && started[t]) pthread_join(tid[t], NULL);
        if (jobs[t].rc && !rc) {
            rc = jobs[t].rc;
            if (err) *err = jobs[t].err;
        }
    }
    return rc;
}
