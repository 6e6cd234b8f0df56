/* test_wsum.c — the round close's blocked weighted sum (wsum.h).
 *
 * Acceptance: out += Σ scale_k v_k equals a double-precision reference; the result is the
 * same bits for 1, 2 and 3 threads and for vectors in memory, read from journal records
 * (pread) or mapped from them (the coordinator's records, wsum_record_append: floats at
 * 2 MiB-aligned offsets; more than one 2 MiB block, the last one short). Rejection: a
 * record shorter than the vector fails with an error instead of summing garbage, on both
 * journal paths. The helper process (sumproc.h) gives the same bits, and its death, before
 * or during a sum, is handled. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "rng.h"
#include "sumproc.h"
#include "wsum.h"

enum { K = 5, P = 32768 * 2 + 1234, PM = 512 * 1024 * 2 + 1234 /* floats: 2 blocks of 2 MiB and a bit */ };

static float *s_vectors_n(size_t n) {
    float *U = malloc((size_t)K * n * sizeof(float));
    cc_rng_t rng;
    cc_rng_seed(&rng, 3);
    for (size_t i = 0; i < (size_t)K * n; i++) U[i] = (float)cc_rng_normal(&rng) * 1e-2f;
    return U;
}

static float *s_vectors(void) { return s_vectors_n(P); }

static void s_start(float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = 0.5f - (float)(i % 7) * 0.1f;
}

static float *s_sum_memory_n(const float *U, size_t n, const float *scale, int threads) {
    const float *rows[K];
    for (size_t k = 0; k < K; k++) rows[k] = U + k * n;
    float *out = malloc(n * sizeof(float));
    s_start(out, n);
    wsum_src_t src = {.rows = rows};
    cc_err_t err = {0};
    cr_assert_eq(wsum_blocked(out, n, &src, K, scale, threads, &err), 0, "%s", err.msg);
    return out;
}

static float *s_sum_memory(const float *U, const float *scale, int threads) {
    return s_sum_memory_n(U, P, scale, threads);
}

Test(wsum, equals_the_reference_for_any_thread_count) {
    float *U = s_vectors(), scale[K] = {0.1f, -0.3f, 0.25f, 1.0f, 0.05f};
    float *one = s_sum_memory(U, scale, 1), *two = s_sum_memory(U, scale, 2), *three = s_sum_memory(U, scale, 3);
    double worst = 0;
    for (size_t i = 0; i < P; i++) {
        double ref = 0.5 - (double)(i % 7) * (double)0.1f;
        for (size_t k = 0; k < K; k++) ref += (double)scale[k] * (double)U[k * P + i];
        worst = fmax(worst, fabs(one[i] - ref));
    }
    cr_expect_lt(worst, 1e-5, "max error %.2e", worst);
    cr_expect_eq(memcmp(one, two, P * sizeof(float)), 0, "2 threads differ from 1");
    cr_expect_eq(memcmp(one, three, P * sizeof(float)), 0, "3 threads differ from 1");
    free(U), free(one), free(two), free(three);
}

Test(wsum, journal_records_give_the_same_bits_and_short_ones_fail) {
    char dir[] = "/tmp/concord_wsum_XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/j", dir);
    float *U = s_vectors(), scale[K] = {0.2f, 0.2f, -0.1f, 0.4f, 0.3f};
    journal_t *j = NULL;
    cc_err_t err = {0};
    cr_assert_eq(journal_open(path, 0, &j, NULL, &err), 0, "%s", err.msg);
    journal_record_t recs[K];
    uint64_t from[K];
    const char hdr[] = "header!";
    for (size_t k = 0; k < K; k++) {
        const void *parts[2] = {hdr, U + k * P};
        size_t lens[2] = {sizeof hdr, P * sizeof(float)};
        cr_assert_eq(journal_append(j, parts, lens, 2, &recs[k], &err), 0, "%s", err.msg);
        from[k] = sizeof hdr;
    }
    float *want = s_sum_memory(U, scale, 1), *got = malloc(P * sizeof(float));
    for (int threads = 1; threads <= 2; threads++) {
        for (size_t i = 0; i < P; i++) got[i] = 0.5f - (float)(i % 7) * 0.1f;
        wsum_src_t src = {.journal = j, .recs = recs, .from = from};
        cr_assert_eq(wsum_blocked(got, P, &src, K, scale, threads, &err), 0, "%s", err.msg);
        cr_expect_eq(memcmp(got, want, P * sizeof(float)), 0, "journal source differs (%d threads)", threads);
    }
    from[3] = sizeof hdr + 8; /* the vector would run past the end of record 3 */
    wsum_src_t src = {.journal = j, .recs = recs, .from = from};
    cr_expect_neq(wsum_blocked(got, P, &src, K, scale, 2, &err), 0, "a short record is an error");
    cr_log_info("short record: %s", err.msg);
    journal_close(&j);
    free(U), free(want), free(got);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* K vectors U of PM floats in the coordinator's journal records, in a directory of their own. */
typedef struct {
    char dir[32];
    float *U;
    journal_t *j;
    journal_record_t recs[K];
    uint64_t from[K];
} s_mapped_t;

static const float s_scale[K] = {0.2f, 0.7f, -0.1f, 0.4f, 0.3f};

static void s_mapped_open(s_mapped_t *m) {
    char path[64];
    snprintf(m->dir, sizeof m->dir, "/tmp/concord_wsum_XXXXXX");
    cr_assert_not_null(mkdtemp(m->dir));
    snprintf(path, sizeof path, "%s/j", m->dir);
    m->U = s_vectors_n(PM);
    m->j = NULL;
    cc_err_t err = {0};
    cr_assert_eq(journal_open(path, 0, &m->j, NULL, &err), 0, "%s", err.msg);
    for (size_t k = 0; k < K; k++) {
        const char *hdr = k % 2 ? "{\"type\":\"update\"}" : "{}"; /* different pads */
        cr_assert_eq(wsum_record_append(m->j, hdr, m->U + k * PM, PM, NULL, &m->recs[k], &err), 0, "%s", err.msg);
        m->from[k] = wsum_record_floats(&m->recs[k], (uint32_t)strlen(hdr));
        cr_assert_eq((m->recs[k].offset + m->from[k]) % WSUM_MAP_ALIGN, 0);
        cr_assert_eq(m->from[k] + PM * sizeof(float), m->recs[k].length);
    }
}

static void s_mapped_close(s_mapped_t *m) {
    char cmd[128];
    journal_close(&m->j);
    free(m->U);
    snprintf(cmd, sizeof cmd, "rm -rf %s", m->dir);
    cr_expect_eq(system(cmd), 0);
}

/* The coordinator's records (a zero run puts each vector at a 2 MiB-aligned offset) are
 * mapped, and give the bits of the memory and pread paths; a record too short for its
 * vector fails on the mapped path too. */
Test(wsum, mapped_journal_records_give_the_same_bits) {
    s_mapped_t m;
    s_mapped_open(&m);
    const float *U = m.U, *scale = s_scale;
    cc_err_t err = {0};
    float *want = s_sum_memory_n(U, PM, scale, 1), *got = malloc(PM * sizeof(float));
    wsum_src_t src = {.journal = m.j, .recs = m.recs, .from = m.from};
    cr_assert(wsum_maps(&src, K), "aligned vectors are mapped");
    for (int threads = 1; threads <= 3; threads++) {
        s_start(got, PM);
        cr_assert_eq(wsum_blocked(got, PM, &src, K, scale, threads, &err), 0, "%s", err.msg);
        cr_expect_eq(memcmp(got, want, PM * sizeof(float)), 0, "mapped journal differs (%d threads)", threads);
    }
    /* the same vectors in plain records (right after a 7-byte header: unaligned) are read
     * with pread, with the same bits */
    journal_record_t plain[K];
    uint64_t plain_from[K];
    for (size_t k = 0; k < K; k++) {
        const void *parts[2] = {"header!", U + k * PM};
        size_t lens[2] = {7, PM * sizeof(float)};
        cr_assert_eq(journal_append(m.j, parts, lens, 2, &plain[k], &err), 0, "%s", err.msg);
        plain_from[k] = 7;
    }
    wsum_src_t read_src = {.journal = m.j, .recs = plain, .from = plain_from};
    cr_assert_not(wsum_maps(&read_src, K), "unaligned vectors are read, not mapped");
    s_start(got, PM);
    cr_assert_eq(wsum_blocked(got, PM, &read_src, K, scale, 2, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(got, want, PM * sizeof(float)), 0, "pread path differs");
    /* a short record on the mapped path fails too, without SIGBUS */
    journal_record_t short_rec = m.recs[4];
    short_rec.length -= 8;
    m.recs[4] = short_rec;
    cr_assert_neq(wsum_blocked(got, PM, &src, K, scale, 2, &err), 0, "a short record is an error");
    cr_log_info("short mapped record: %s", err.msg);
    free(want), free(got);
    s_mapped_close(&m);
}

/* The helper process (sumproc.h) sums blocks of a mapped sum into a shared θ buffer, taken
 * from the same counter as our threads, with the same bits; it takes no part in a sum
 * into an out that is not its buffer; once killed, sums run here, with the same bits;
 * killed mid-sum, the sum fails and the helper is gone; an error inside the helper comes
 * back as an error. */
Test(wsum, helper_process_sums_a_share_with_the_same_bits) {
    s_mapped_t m;
    s_mapped_open(&m);
    const float *U = m.U, *scale = s_scale;
    cc_err_t err = {0};
    sumproc_t *h = sumproc_start(&err);
    cr_assert_not_null(h, "%s", err.msg);
    cr_assert_eq(sumproc_buffers(h, PM, &err), 0, "%s", err.msg);
    float *a = sumproc_take(h), *b = sumproc_take(h);
    cr_assert(a && b && a != b, "two shared buffers");
    cr_assert_null(sumproc_take(h), "only two");
    cr_assert(sumproc_give(h, b));
    cr_assert_eq(sumproc_take(h), b, "a buffer given back is taken again");
    float *want = s_sum_memory_n(U, PM, scale, 1), *plain = malloc(PM * sizeof(float));
    cr_assert_not(sumproc_give(h, plain), "not one of its buffers");
    wsum_src_t src = {.journal = m.j, .recs = m.recs, .from = m.from, .helper = h};
    wsum_test_helper_first = 1; /* so that the helper surely sums blocks of its own */
    for (int threads = 2; threads <= 3; threads++) {
        s_start(a, PM);
        size_t before = sumproc_shares(h), units = sumproc_units(h);
        cr_assert_eq(wsum_blocked(a, PM, &src, K, scale, threads, &err), 0, "%s", err.msg);
        cr_expect_eq(sumproc_shares(h), before + 1, "the helper took part (%d threads)", threads);
        cr_expect_gt(sumproc_units(h), units, "the helper summed blocks (%d threads)", threads);
        cr_expect_eq(memcmp(a, want, PM * sizeof(float)), 0, "helper's sum differs (%d threads)", threads);
    }
    wsum_test_helper_first = 0;
    /* without the hook, whoever is first takes each block: the same bits */
    s_start(a, PM);
    cr_assert_eq(wsum_blocked(a, PM, &src, K, scale, 2, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(a, want, PM * sizeof(float)), 0, "helper's sum differs (no hook)");
    s_start(plain, PM);
    cr_assert_eq(wsum_blocked(plain, PM, &src, K, scale, 2, &err), 0, "%s", err.msg);
    cr_expect_eq(sumproc_shares(h), 3, "no part in a sum into a private out");
    cr_expect_eq(memcmp(plain, want, PM * sizeof(float)), 0);
    /* an error inside the helper (a directory cannot be mapped) comes back; it lives on */
    int dfd = open(m.dir, O_RDONLY | O_DIRECTORY);
    uint64_t at[K] = {0};
    wsum_pool_start(sumproc_area(h), PM);
    cr_assert_eq(sumproc_send(h, a, PM, dfd, at, scale, K, &err), 0, "%s", err.msg);
    cr_expect_neq(sumproc_wait(h, &err), 0, "mapping a directory fails");
    cr_log_info("helper's error: %s", err.msg);
    cr_expect(sumproc_alive(h));
    close(dfd);
    /* killed while it holds a request: the wait fails and the helper is gone */
    cr_assert_eq(kill(sumproc_pid(h), SIGSTOP), 0);
    uint64_t at0[K];
    for (size_t k = 0; k < K; k++) at0[k] = m.recs[k].offset + m.from[k];
    int fd = -1;
    cr_assert_eq(journal_fd_upto(m.j, 0, &fd, &err), 0, "%s", err.msg);
    wsum_pool_start(sumproc_area(h), PM);
    cr_assert_eq(sumproc_send(h, a, PM, fd, at0, scale, K, &err), 0, "%s", err.msg);
    cr_assert_eq(kill(sumproc_pid(h), SIGKILL), 0);
    cr_expect_eq(sumproc_wait(h, &err), CC_ERR_IO);
    cr_log_info("helper killed: %s", err.msg);
    cr_expect_not(sumproc_alive(h));
    /* gone: the whole sum runs here, with the same bits */
    s_start(a, PM);
    cr_assert_eq(wsum_blocked(a, PM, &src, K, scale, 2, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(a, want, PM * sizeof(float)), 0, "sum after the helper died differs");
    sumproc_stop(&h);
    cr_expect_null(h);
    free(want), free(plain);
    s_mapped_close(&m);
}
