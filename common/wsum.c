/* wsum.c — see wsum.h. */
#include "wsum.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "fileio.h"
#include "sumproc.h"

#define WSUM_BLOCK 65536 /* floats: 256 KiB; out's block and the vectors' streaming blocks fit in L2 */
/* Mapped journal: column blocks of 2 MiB (one large folio of the page cache, mapped whole),
 * WSUM_GROUP vectors' windows mapped at once, summed WSUM_BLOCK floats at a time with
 * s_axpy4 so that out's part stays in L2 and is read once per WSUM_GROUP vectors (with one
 * window at a time, out's 2 MiB block went through L3 once per vector: half the speed). */
#define WSUM_MAP_BLOCK (WSUM_MAP_ALIGN / sizeof(float))
#define WSUM_GROUP 4

/* The column blocks of a sum, which its threads and the helper process take one at a
 * time from a shared counter, so that none waits for another slowed by its neighbour or
 * by a costlier kind of block (a static split by estimated cost left one of two up to 30%
 * behind the other): the whole 2 MiB blocks first when mapped, the large units before
 * the small ones that even out the finish, then WSUM_BLOCK blocks of the rest (read, or
 * in memory). With a helper it lives in the page both processes share (sumproc_area). */
typedef struct {
    atomic_size_t next;
    atomic_int failed;          /* an error: nobody takes more blocks */
    atomic_int helper_claimed;  /* the helper has taken a block (wsum_test_helper_first) */
    size_t n_map, n_units, full, P;
} wsum_pool_t;

_Static_assert(sizeof(wsum_pool_t) <= SUMPROC_AREA_BYTES, "the pool fits the shared page");

/* One thread's (or the helper's) work: the pool's blocks of out; the vectors in memory
 * (rows), mapped from a file (fd, at: each vector's file offset) or read from the journal
 * (src). */
typedef struct {
    float *out;
    size_t P, K;
    wsum_pool_t *pool;
    int is_helper;
    size_t units; /* blocks summed */
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

/* out's floats [s0, s0 + n), within one block: mapped, in memory, or read. Only whole
 * 2 MiB blocks are mapped. A vector's last, partial 2 MiB was written in smaller folios,
 * which map page by page (slower than pread): it is read. */
static int s_block(wsum_job_t *j, size_t s0, size_t n, float *buf) {
    if (j->rows || (j->at && n == WSUM_MAP_BLOCK)) return s_block_grouped(j, s0, n);
    return s_block_read(j, s0, n, buf);
}

int wsum_test_helper_first = 0;

/* Test hook: this process's threads wait (up to 10 s) for the helper's first block. */
static void s_wait_for_helper(const wsum_pool_t *pool) {
    for (int i = 0; i < 10000 && !atomic_load(&pool->helper_claimed); i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

/* A job: blocks from its pool until none is left. */
static void *s_run(void *arg) {
    wsum_job_t *j = arg;
    wsum_pool_t *pool = j->pool;
    float *buf = j->rows ? NULL : cc_xalloc_floats(WSUM_BLOCK);
    if (wsum_test_helper_first && !j->is_helper) s_wait_for_helper(pool);
    for (size_t u; !j->rc && !atomic_load(&pool->failed) && (u = atomic_fetch_add(&pool->next, 1)) < pool->n_units;) {
        if (j->is_helper) atomic_store(&pool->helper_claimed, 1);
        size_t s0 = u < pool->n_map ? u * WSUM_MAP_BLOCK : pool->full + (u - pool->n_map) * WSUM_BLOCK;
        size_t n = u < pool->n_map ? WSUM_MAP_BLOCK : (pool->P - s0 < WSUM_BLOCK ? pool->P - s0 : WSUM_BLOCK);
        if ((j->rc = s_block(j, s0, n, buf))) atomic_store(&pool->failed, 1);
        else j->units++;
    }
    free(buf);
    return NULL;
}

static void s_pool_init(wsum_pool_t *pool, size_t P, int mapped) {
    size_t full = mapped ? P / WSUM_MAP_BLOCK * WSUM_MAP_BLOCK : 0;
    atomic_init(&pool->next, 0);
    atomic_init(&pool->failed, 0);
    atomic_init(&pool->helper_claimed, 0);
    pool->n_map = full / WSUM_MAP_BLOCK;
    pool->full = full;
    pool->P = P;
    pool->n_units = pool->n_map + (P - full + WSUM_BLOCK - 1) / WSUM_BLOCK;
}

void wsum_pool_start(void *area, size_t P) { s_pool_init(area, P, 1); }

int wsum_maps(const wsum_src_t *src, size_t K) {
    if (src->rows || !src->journal) return 0;
    for (size_t k = 0; k < K; k++)
        if ((src->recs[k].offset + src->from[k]) % WSUM_MAP_ALIGN != 0) return 0;
    return 1;
}

int wsum_file_pool(float *out, size_t P, int fd, const uint64_t *at, const float *scale, size_t K, void *area,
                   size_t *units, cc_err_t *err) {
    wsum_pool_t *pool = area;
    if (pool->P != P) return cc_err_set(err, CC_ERR_ARG, "wsum: a pool of %zu floats for a sum of %zu", pool->P, P);
    wsum_job_t job = {.out = out, .P = P, .K = K, .pool = pool, .is_helper = 1, .fd = fd, .at = at, .scale = scale};
    s_run(&job);
    *units = job.units;
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

/* Hands the sum to the helper process too when it can take part: the pool then lives in
 * the page it shares with us. Returns the pool, or NULL (this process's threads alone). */
static wsum_pool_t *s_helper_joins(const wsum_src_t *src, float *out, size_t P, size_t K, const float *scale, int fd,
                                   const uint64_t *at) {
    sumproc_t *h = src->helper;
    if (!at || P < WSUM_HELPER_MIN || !sumproc_alive(h) || !sumproc_owns(h, out) || K > SUMPROC_MAX_K) return NULL;
    wsum_pool_start(sumproc_area(h), P);
    cc_err_t ignored;
    if (sumproc_send(h, out, P, fd, at, scale, K, &ignored)) return NULL; /* gone: all here */
    return sumproc_area(h);
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
    wsum_pool_t own, *pool = threads >= 2 ? s_helper_joins(src, out, P, K, scale, fd, at) : NULL;
    int here = pool ? threads - 1 : threads;
    if (!pool) s_pool_init(pool = &own, P, map);
    wsum_job_t jobs[8];
    pthread_t tid[8];
    int started[8] = {0};
    for (int t = 0; t < here; t++) {
        jobs[t] = (wsum_job_t){.out = out, .P = P, .K = K, .pool = pool, .rows = src->rows, .fd = fd, .at = at,
                               .src = src, .scale = scale};
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, s_run, &jobs[t]) == 0;
        /* no thread: the others take its blocks */
    }
    s_run(&jobs[0]);
    int rc = 0;
    if (pool != &own) rc = sumproc_wait(src->helper, err);
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
