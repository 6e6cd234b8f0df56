/* wsum.c — see wsum.h. */
#include "wsum.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fileio.h"
#include "sumproc.h"

#define WSUM_BLOCK WSUM_MIN_SHARE /* 256 KiB: out's block and the vectors' streaming blocks fit in L2 */
/* Mapped journal: column blocks of 2 MiB (one large folio of the page cache, mapped whole),
 * WSUM_GROUP vectors' windows mapped at once, summed WSUM_BLOCK floats at a time with
 * s_axpy4 so that out's part stays in L2 and is read once per WSUM_GROUP vectors (with one
 * window at a time, out's 2 MiB block went through L3 once per vector: half the speed). */
#define WSUM_MAP_BLOCK (WSUM_MAP_ALIGN / sizeof(float))
#define WSUM_GROUP 4

/* One thread's share: out's floats [first, end), the vectors in memory (rows), mapped from
 * a file (fd, at: each vector's file offset) or read from the journal (src). */
typedef struct {
    float *out;
    size_t P, K, first, end;
    const float *const *rows;
    int fd;
    const uint64_t *at;
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
 * in memory, or mapped from the file (each window unmapped after its group). */
static int s_block_grouped(wsum_job_t *j, size_t s0, size_t n) {
    size_t bytes = n * sizeof(float);
    for (size_t k = 0; k < j->K; k += WSUM_GROUP) {
        size_t g = j->K - k < WSUM_GROUP ? j->K - k : WSUM_GROUP;
        const float *x[WSUM_GROUP] = {0};
        int rc = 0;
        for (size_t i = 0; i < g && !rc; i++) {
            if (j->rows) {
                x[i] = j->rows[k + i] + s0;
                continue;
            }
            uint64_t off = j->at[k + i] + s0 * sizeof(float);
            void *p = mmap(NULL, bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, j->fd, (off_t)off);
            if (p == MAP_FAILED)
                rc = cc_err_set(&j->err, CC_ERR_IO, "wsum: mapping %zu bytes of the journal at offset %" PRIu64 " failed: %s",
                                bytes, off, strerror(errno));
            else x[i] = p;
        }
        if (!rc) s_add_group(j->out + s0, j->scale + k, x, g, n);
        for (size_t i = 0; !j->rows && i < g; i++)
            if (x[i]) munmap((void *)x[i], bytes);
        if (rc) return rc;
    }
    return 0;
}

/* Vector k's floats [t0, t0 + m) into buf: pread from the file, or journal_read. */
static int s_read(wsum_job_t *j, size_t k, size_t t0, float *buf, size_t m) {
    if (!j->at)
        return journal_read(j->src->journal, &j->src->recs[k], j->src->from[k] + t0 * sizeof(float), buf,
                            m * sizeof(float), &j->err);
    uint64_t off = j->at[k] + t0 * sizeof(float);
    int rc = fileio_pread_all(j->fd, buf, m * sizeof(float), off);
    if (rc)
        return cc_err_set(&j->err, rc < 0 ? CC_ERR_IO : CC_ERR_TRUNCATED, "wsum: reading the journal at offset %" PRIu64 ": %s",
                          off, rc < 0 ? strerror(errno) : "end of file");
    return 0;
}

/* The same, each vector read WSUM_BLOCK floats at a time into buf. */
static int s_block_read(wsum_job_t *j, size_t s0, size_t n, float *buf) {
    for (size_t t0 = s0; t0 < s0 + n; t0 += WSUM_BLOCK) {
        size_t m = s0 + n - t0 < WSUM_BLOCK ? s0 + n - t0 : WSUM_BLOCK;
        for (size_t k = 0; k < j->K; k++) {
            int rc = s_read(j, k, t0, buf, m);
            if (rc) return rc;
            s_axpy(j->out + t0, j->scale[k], buf, m);
        }
    }
    return 0;
}

static void *s_run(void *arg) {
    wsum_job_t *j = arg;
    float *buf = j->rows ? NULL : cc_xalloc_floats(WSUM_BLOCK);
    size_t step = j->at ? WSUM_MAP_BLOCK : WSUM_BLOCK;
    for (size_t s0 = j->first; s0 < j->end && !j->rc;) {
        size_t n = step - s0 % step; /* up to the next block boundary */
        if (n > j->end - s0) n = j->end - s0;
        /* Only whole 2 MiB blocks are mapped. A vector's last, partial 2 MiB was written in
         * smaller folios, which map page by page (slower than pread): it is read. */
        if (j->rows || (j->at && n == WSUM_MAP_BLOCK)) j->rc = s_block_grouped(j, s0, n);
        else j->rc = s_block_read(j, s0, n, buf);
        s0 += n;
    }
    free(buf);
    return NULL;
}

/* Where share t of `shares` starts (t = shares: P). Mapped, a float costs 2 in a whole
 * 2 MiB block and 3 in the partial last one (read: pread is about 1.5 times slower), and
 * the shares cost the same; a boundary in the mapped part falls on a 2 MiB block, in the
 * rest on a WSUM_BLOCK, so no share cuts a mapped block. */
static size_t s_share_start(size_t P, int mapped, int t, int shares) {
    if (t >= shares) return P;
    size_t full = mapped ? P / WSUM_MAP_BLOCK * WSUM_MAP_BLOCK : 0;
    double total = 2.0 * (double)full + 3.0 * (double)(P - full), target = total * t / shares;
    size_t x;
    if (!mapped) x = (size_t)((double)P * t / shares) / WSUM_BLOCK * WSUM_BLOCK;
    else if (target <= 2.0 * (double)full) x = (size_t)(target / 2.0 / WSUM_MAP_BLOCK + 0.5) * WSUM_MAP_BLOCK;
    else x = full + (size_t)((target - 2.0 * (double)full) / 3.0 / WSUM_BLOCK + 0.5) * WSUM_BLOCK;
    return x < P ? x : P;
}

int wsum_maps(const wsum_src_t *src, size_t K) {
    if (src->rows || !src->journal) return 0;
    for (size_t k = 0; k < K; k++)
        if ((src->recs[k].offset + src->from[k]) % WSUM_MAP_ALIGN != 0) return 0;
    return 1;
}

int wsum_file_range(float *out, size_t P, int fd, const uint64_t *at, const float *scale, size_t K,
                    size_t first, size_t end, cc_err_t *err) {
    if (first > end || end > P) return cc_err_set(err, CC_ERR_ARG, "wsum: range [%zu, %zu) of %zu floats", first, end, P);
    wsum_job_t job = {.out = out, .P = P, .K = K, .first = first, .end = end, .fd = fd, .at = at, .scale = scale};
    s_run(&job);
    if (job.rc && err) *err = job.err;
    return job.rc;
}

/* For the mapped path: each vector's file offset, and the journal's descriptor once the
 * file is known to hold them all. */
static int s_file_offsets(const wsum_src_t *src, size_t K, size_t P, uint64_t *at, int *fd, cc_err_t *err) {
    uint64_t end = 0;
    for (size_t k = 0; k < K; k++) {
        at[k] = src->recs[k].offset + src->from[k];
        if (src->from[k] > src->recs[k].length || P * sizeof(float) > src->recs[k].length - src->from[k])
            return cc_err_set(err, CC_ERR_ARG, "wsum: vector %zu runs past its journal record", k);
        if (at[k] + P * sizeof(float) > end) end = at[k] + P * sizeof(float);
    }
    return journal_fd_upto(src->journal, end, fd, err);
}

/* Hands the last share, out's floats [first, P), to the helper process when it can take
 * it; returns the shares left for this process's threads. */
static int s_helper_share(const wsum_src_t *src, float *out, size_t P, size_t K, const float *scale, int fd,
                          const uint64_t *at, size_t first, int shares) {
    if (!at || shares < 2 || P < WSUM_HELPER_MIN || !sumproc_alive(src->helper) || !sumproc_owns(src->helper, out) ||
        K > SUMPROC_MAX_K)
        return shares;
    cc_err_t ignored;
    if (sumproc_send(src->helper, out, P, fd, at, scale, K, first, P, &ignored)) return shares; /* gone: all here */
    return shares - 1;
}

int wsum_blocked(float *out, size_t P, const wsum_src_t *src, size_t K, const float *scale, int threads,
                 cc_err_t *err) {
    int map = wsum_maps(src, K), fd = -1;
    uint64_t *at = map ? cc_xcalloc(K + 1, sizeof *at) : NULL;
    if (map) {
        int rc = s_file_offsets(src, K, P, at, &fd, err);
        if (rc) return free(at), rc;
    }
    size_t units = (P + WSUM_BLOCK - 1) / WSUM_BLOCK;
    if (threads < 1) threads = 1;
    if (threads > 8) threads = 8;
    if ((size_t)threads > units) threads = units ? (int)units : 1;
    int here = s_helper_share(src, out, P, K, scale, fd, at, s_share_start(P, map, threads - 1, threads), threads);
    wsum_job_t jobs[8];
    pthread_t tid[8];
    int started[8] = {0};
    for (int t = 0; t < here; t++) {
        jobs[t] = (wsum_job_t){.out = out, .P = P, .K = K, .rows = src->rows, .fd = fd, .at = at, .src = src,
                               .scale = scale, .first = s_share_start(P, map, t, threads),
                               .end = s_share_start(P, map, t + 1, threads)};
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, s_run, &jobs[t]) == 0;
        if (t > 0 && !started[t]) s_run(&jobs[t]); /* no thread: do it here */
    }
    s_run(&jobs[0]);
    int rc = 0;
    if (here < threads) rc = sumproc_wait(src->helper, err);
    for (int t = 0; t < here; t++) {
        if (t > 0 && started[t]) pthread_join(tid[t], NULL);
        if (jobs[t].rc && !rc) {
            rc = jobs[t].rc;
            if (err) *err = jobs[t].err;
        }
    }
    free(at);
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
