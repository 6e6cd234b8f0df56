/* wsum.c — see wsum.h. */
#include "wsum.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WSUM_BLOCK 65536 /* floats: 256 KiB; out's block and the vectors' streaming blocks fit in L2 */
/* Mapped journal: column blocks of 2 MiB (one large folio of the page cache, mapped whole),
 * WSUM_GROUP vectors' windows mapped at once, summed WSUM_BLOCK floats at a time with
 * s_axpy4 so that out's part stays in L2 and is read once per WSUM_GROUP vectors (with one
 * window at a time, out's 2 MiB block went through L3 once per vector: half the speed). */
#define WSUM_MAP_BLOCK (WSUM_MAP_ALIGN / sizeof(float))
#define WSUM_GROUP 4

typedef struct {
    float *out;
    size_t P, K, block, b_first, b_end; /* this thread's blocks [b_first, b_end) of `block` floats */
    int map;                     /* the journal's vectors are mapped, not read */
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

/* y (n) += Σ_i a[i]·x[i] for i < g (≤ WSUM_GROUP), i in order for every element, by
 * WSUM_BLOCK floats: y's part stays in L2 while the g vectors stream past it. */
static void s_add_group(float *y, const float *a, const float *const *x, size_t g, size_t n) {
    for (size_t s0 = 0; s0 < n; s0 += WSUM_BLOCK) {
        size_t m = n - s0 < WSUM_BLOCK ? n - s0 : WSUM_BLOCK;
        if (g == 4) s_axpy4(y + s0, a, x[0] + s0, x[1] + s0, x[2] + s0, x[3] + s0, m);
        else
            for (size_t i = 0; i < g; i++) s_axpy(y + s0, a[i], x[i] + s0, m);
    }
}

/* out's block [s0, s0 + n) += Σ_k scale_k · v_k's block, the vectors WSUM_GROUP at a time:
 * in memory, or mapped from the journal (each window unmapped after its group). */
static int s_block_grouped(wsum_job_t *j, size_t s0, size_t n) {
    const wsum_src_t *src = j->src;
    size_t bytes = n * sizeof(float);
    for (size_t k = 0; k < j->K; k += WSUM_GROUP) {
        size_t g = j->K - k < WSUM_GROUP ? j->K - k : WSUM_GROUP;
        const void *x[WSUM_GROUP] = {0};
        int rc = 0;
        for (size_t i = 0; i < g && !rc; i++)
            if (src->rows) x[i] = src->rows[k + i] + s0;
            else rc = journal_map(src->journal, &src->recs[k + i], src->from[k + i] + s0 * sizeof(float), bytes,
                                  &x[i], &j->err);
        if (!rc) s_add_group(j->out + s0, j->scale + k, (const float *const *)x, g, n);
        for (size_t i = 0; !src->rows && i < g; i++) journal_unmap(x[i], bytes);
        if (rc) return rc;
    }
    return 0;
}

/* The same, each vector read WSUM_BLOCK floats at a time into buf (pread). */
static int s_block_read(wsum_job_t *j, size_t s0, size_t n, float *buf) {
    const wsum_src_t *src = j->src;
    for (size_t t0 = s0; t0 < s0 + n; t0 += WSUM_BLOCK) {
        size_t m = s0 + n - t0 < WSUM_BLOCK ? s0 + n - t0 : WSUM_BLOCK;
        for (size_t k = 0; k < j->K; k++) {
            int rc = journal_read(src->journal, &src->recs[k], src->from[k] + t0 * sizeof(float), buf,
                                  m * sizeof(float), &j->err);
            if (rc) return rc;
            s_axpy(j->out + t0, j->scale[k], buf, m);
        }
    }
    return 0;
}

static void *s_run(void *arg) {
    wsum_job_t *j = arg;
    const wsum_src_t *src = j->src;
    float *buf = src->rows ? NULL : cc_xalloc_floats(WSUM_BLOCK);
    for (size_t b = j->b_first; b < j->b_end && !j->rc; b++) {
        size_t s0 = b * j->block, n = j->P - s0 < j->block ? j->P - s0 : j->block;
        /* A vector's last, partial 2 MiB was written in smaller folios, which map page by
         * page (slower than pread): it is read. */
        if (src->rows || (j->map && n == WSUM_MAP_BLOCK)) j->rc = s_block_grouped(j, s0, n);
        else j->rc = s_block_read(j, s0, n, buf);
    }
    free(buf);
    return NULL;
}

int wsum_maps(const wsum_src_t *src, size_t K) {
    if (src->rows || !src->journal) return 0;
    for (size_t k = 0; k < K; k++)
        if ((src->recs[k].offset + src->from[k]) % WSUM_MAP_ALIGN != 0) return 0;
    return 1;
}

int wsum_blocked(float *out, size_t P, const wsum_src_t *src, size_t K, const float *scale, int threads,
                 cc_err_t *err) {
    int map = wsum_maps(src, K);
    size_t block = map ? WSUM_MAP_BLOCK : WSUM_BLOCK, blocks = (P + block - 1) / block;
    if (threads < 1) threads = 1;
    if (threads > 8) threads = 8;
    if ((size_t)threads > blocks) threads = blocks ? (int)blocks : 1;
    wsum_job_t jobs[8];
    pthread_t tid[8];
    int started[8] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = (wsum_job_t){.out = out, .P = P, .K = K, .block = block, .map = map, .src = src, .scale = scale,
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

/* The pad that puts the floats of a record whose payload starts at `payload` and whose
 * floats would otherwise start `before` bytes into it on the next aligned file offset. */
static uint64_t s_pad(uint64_t payload, uint64_t before) {
    uint64_t at = payload + before;
    return (WSUM_MAP_ALIGN - at % WSUM_MAP_ALIGN) % WSUM_MAP_ALIGN;
}

int wsum_record_append(journal_t *j, const char *header, const void *floats, size_t n_floats,
                       const uint8_t *floats_digest, journal_record_t *rec, cc_err_t *err) {
    uint32_t hlen = (uint32_t)strlen(header);
    uint64_t pad = floats ? s_pad(journal_next_payload_offset(j), sizeof hlen + (uint64_t)hlen) : 0;
    const void *parts[4] = {&hlen, header, NULL, floats}; /* NULL with a length: a zero run */
    size_t lens[4] = {sizeof hlen, hlen, (size_t)pad, n_floats * sizeof(float)};
    const uint8_t *digests[4] = {NULL, NULL, NULL, floats_digest};
    journal_record_t tmp;
    return journal_append_digested(j, parts, lens, digests, floats ? 4 : 2, rec ? rec : &tmp, err);
}

uint64_t wsum_record_floats(const journal_record_t *rec, uint32_t header_len) {
    uint64_t before = sizeof header_len + (uint64_t)header_len;
    return before + s_pad(rec->offset, before);
}
