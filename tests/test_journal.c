/* test_journal.c — the round journal (journal.h, JOURNAL-1..4).
 *
 * Acceptance: gathered and 4 MB payloads round-trip through replay and journal_read;
 * a reopened journal continues the sequence; a journal of another round, or a reset one,
 * starts fresh. Rejection and recovery: every truncation length of a 3-record journal
 * keeps exactly the complete records and says truncated unless cut at a record boundary;
 * every byte flipped in the header or a non-final record is CORRUPT and leaves the file
 * untouched; a flip in the final record is a torn write (truncated); a crash simulated
 * half-way through an append (ENOSPC) keeps every earlier record, refuses further
 * appends, and reports truncated on reopen. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "journal.h"

static char s_dir[64];

static void s_setup(void) {
    snprintf(s_dir, sizeof s_dir, "/tmp/concord_jrnl_XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    cr_assert_geq(sodium_init(), 0);
    journal_fault_fail_write_after = 0;
}

static void s_teardown(void) {
    DIR *d = opendir(s_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", s_dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(s_dir);
}

TestSuite(journal, .init = s_setup, .fini = s_teardown);

static char *s_path(const char *name) {
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", s_dir, name);
    return p[k];
}

static journal_t *s_open(const char *path, uint64_t round, journal_replay_t *r) {
    journal_t *j = NULL;
    cc_err_t err = {0};
    int rc = journal_open(path, round, &j, r, &err);
    cr_assert_eq(rc, 0, "journal_open: %s", err.msg);
    return j;
}

static void s_append_str(journal_t *j, const char *s) {
    const void *parts[1] = {s};
    size_t lens[1] = {strlen(s)};
    cc_err_t err = {0};
    cr_assert_eq(journal_append(j, parts, lens, 1, NULL, &err), 0, "append: %s", err.msg);
}

static void s_expect_record(journal_t *j, const journal_record_t *rec, const char *want) {
    char buf[256] = {0};
    cc_err_t err = {0};
    cr_assert_eq(rec->length, strlen(want));
    cr_assert_eq(journal_read(j, rec, 0, buf, rec->length, &err), 0, "%s", err.msg);
    cr_assert_str_eq(buf, want);
}

static void s_file(const char *path, char **buf, size_t *len) {
    cc_err_t err = {0};
    cr_assert_eq(fileio_read_all(path, 1 << 30, buf, len, &err), 0, "%s", err.msg);
}

static void s_write_file(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(buf, 1, len, fp), len);
    cr_assert_eq(fclose(fp), 0);
}

static size_t s_size(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return (size_t)st.st_size;
}

/* The 3-record fixture: record k spans [ends[k-1], ends[k]), ends[0] = header. */
static const char *s_recs[3] = {"alpha", "the second record, a bit longer", "gamma!"};

static void s_make3(const char *path, size_t ends[4]) {
    journal_t *j = s_open(path, 7, NULL);
    ends[0] = 32;
    for (int k = 0; k < 3; k++) {
        s_append_str(j, s_recs[k]);
        ends[k + 1] = ends[k] + 32 + strlen(s_recs[k]);
    }
    journal_close(&j);
    cr_assert_eq(s_size(path), ends[3]);
}

Test(journal, gathered_and_large_round_trip) {
    const char *path = s_path("j");
    journal_replay_t r;
    journal_t *j = s_open(path, 3, &r);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.truncated, 0);
    cr_assert_eq(r.round, 3);
    journal_replay_free(&r);

    struct { uint32_t client; uint32_t n; } head = {42, 1000};
    float *v = cc_xmalloc(1000 * sizeof *v);
    for (int i = 0; i < 1000; i++) v[i] = (float)i * 0.5f;
    const void *parts[3] = {&head, NULL, v};
    size_t lens[3] = {sizeof head, 0, 1000 * sizeof *v};
    journal_record_t rec0, rec1, rec2;
    cc_err_t err = {0};
    cr_assert_eq(journal_append(j, parts, lens, 3, &rec0, &err), 0, "%s", err.msg);

    size_t big = 4u << 20; /* 4 MB */
    uint8_t *b = cc_xmalloc(big);
    randombytes_buf(b, big);
    const void *bp[1] = {b};
    cr_assert_eq(journal_append(j, bp, &big, 1, &rec1, &err), 0, "%s", err.msg);

    enum { NP = 300 }; /* more parts than one pwritev batch */
    const void *many[NP];
    size_t many_len[NP];
    for (int i = 0; i < NP; i++) many[i] = b + 7 * i, many_len[i] = (size_t)(i % 5);
    cr_assert_eq(journal_append(j, many, many_len, NP, &rec2, &err), 0, "%s", err.msg);
    journal_close(&j);

    j = s_open(path, 3, &r);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.truncated, 0);
    cr_assert_eq(r.records[0].offset, rec0.offset);
    cr_assert_eq(r.records[1].length, big);
    cr_assert_eq(r.records[2].seq, 2);
    cr_assert_eq(rec2.offset, r.records[2].offset);

    uint8_t small[sizeof head + 1000 * sizeof(float)];
    cr_assert_eq(journal_read(j, &r.records[0], 0, small, sizeof small, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(small, &head, sizeof head), 0);
    cr_assert_eq(memcmp(small + sizeof head, v, 1000 * sizeof *v), 0);

    uint8_t *back = cc_xmalloc(big);
    for (size_t at = 0; at < big; at += 1 << 20) /* streamed in 1 MB pieces */
        cr_assert_eq(journal_read(j, &r.records[1], at, back + at, 1 << 20, &err), 0);
    cr_assert_eq(memcmp(back, b, big), 0);

    size_t off = 0;
    for (int i = 0; i < NP; i++) {
        uint8_t piece[8];
        cr_assert_eq(journal_read(j, &r.records[2], off, piece, many_len[i], &err), 0);
        cr_assert_eq(memcmp(piece, b + 7 * i, many_len[i]), 0, "part %d", i);
        off += many_len[i];
    }
    cr_assert_eq(off, r.records[2].length);
    /* Reads past the record are refused. */
    cr_assert_eq(journal_read(j, &r.records[0], 1, small, sizeof small, &err), CC_ERR_ARG);
    cr_assert_eq(journal_read(j, &r.records[0], SIZE_MAX, small, 2, &err), CC_ERR_ARG);
    journal_replay_free(&r);
    journal_close(&j);
    cr_assert_null(j);
    journal_close(&j); /* NULL is fine */
    free(v), free(b), free(back);
}

Test(journal, reopen_continues_appending) {
    const char *path = s_path("j");
    journal_t *j = s_open(path, 1, NULL);
    s_append_str(j, "one");
    s_append_str(j, "two");
    journal_close(&j);
    journal_replay_t r;
    j = s_open(path, 1, &r);
    cr_assert_eq(r.n, 2);
    journal_replay_free(&r);
    s_append_str(j, "three");
    journal_close(&j);
    j = s_open(path, 1, &r);
    cr_assert_eq(r.n, 3);
    const char *want[3] = {"one", "two", "three"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(r.records[i].seq, i);
        s_expect_record(j, &r.records[i], want[i]);
    }
    journal_replay_free(&r);
    journal_close(&j);
}

Test(journal, every_truncation_keeps_complete_records) {
    size_t ends[4];
    s_make3(s_path("full"), ends);
    char *full;
    size_t len;
    s_file(s_path("full"), &full, &len);
    for (size_t cut = 0; cut <= len; cut++) {
        const char *path = s_path("cut");
        s_write_file(path, full, cut);
        size_t complete = 0, boundary = 0;
        for (int k = 0; k <= 3; k++)
            if (ends[k] <= cut) complete = (size_t)k, boundary = ends[k];
        int at_boundary = cut == boundary || cut == 0;
        journal_replay_t r;
        journal_t *j = s_open(path, 7, &r);
        cr_assert_eq(r.n, complete, "cut %zu: %zu records", cut, r.n);
        cr_assert_eq(r.truncated, !at_boundary, "cut %zu", cut);
        cr_assert_eq(s_size(path), boundary < 32 ? 32 : boundary, "cut %zu: tail cut off", cut);
        for (size_t k = 0; k < complete; k++) s_expect_record(j, &r.records[k], s_recs[k]);
        journal_replay_free(&r);
        s_append_str(j, "after"); /* appending resumes at the cut */
        journal_close(&j);
        j = s_open(path, 7, &r);
        cr_assert_eq(r.n, complete + 1, "cut %zu", cut);
        cr_assert_eq(r.truncated, 0);
        s_expect_record(j, &r.records[complete], "after");
        journal_replay_free(&r);
        journal_close(&j);
    }
    free(full);
}

/* Flips each byte of [from, to) with each mask and reopens: want CORRUPT, file untouched. */
static void s_expect_corrupt(const char *full, size_t len, size_t from, size_t to) {
    static const uint8_t masks[3] = {0x01, 0x80, 0xff};
    char *bad = cc_xmalloc(len);
    for (size_t i = from; i < to; i++)
        for (int m = 0; m < 3; m++) {
            memcpy(bad, full, len);
            bad[i] ^= (char)masks[m];
            const char *path = s_path("flip");
            s_write_file(path, bad, len);
            journal_t *j = NULL;
            journal_replay_t r;
            cc_err_t err = {0};
            int rc = journal_open(path, 7, &j, &r, &err);
            cr_assert_eq(rc, CC_ERR_CORRUPT, "byte %zu ^ %#x: rc %d (%s)", i, masks[m], rc, err.msg);
            cr_assert_null(j);
            cr_assert_eq(r.n, 0);
            cr_assert_null(r.records);
            cr_assert_eq(s_size(path), len, "byte %zu: a corrupt journal is left as it is", i);
        }
    free(bad);
}

Test(journal, flip_in_header_or_middle_record_is_corrupt) {
    size_t ends[4];
    s_make3(s_path("full"), ends);
    char *full;
    size_t len;
    s_file(s_path("full"), &full, &len);
    s_expect_corrupt(full, len, 0, ends[2]); /* header, first and middle record */
    /* The error names the offset of the bad record. */
    full[ends[1] + 20] ^= 1;
    s_write_file(s_path("flip"), full, len);
    journal_t *j = NULL;
    cc_err_t err = {0};
    cr_assert_eq(journal_open(s_path("flip"), 7, &j, NULL, &err), CC_ERR_CORRUPT);
    char off[32];
    snprintf(off, sizeof off, "offset %zu", ends[1]);
    cr_assert_not_null(strstr(err.msg, off), "%s", err.msg);
    free(full);
}

/* JOURNAL-2: the final record, complete but failing its checksum, is a torn write. */
Test(journal, flip_in_final_record_is_torn_write) {
    size_t ends[4];
    s_make3(s_path("full"), ends);
    char *full;
    size_t len;
    s_file(s_path("full"), &full, &len);
    for (size_t i = ends[2]; i < ends[3]; i++) {
        full[i] ^= 0x10;
        const char *path = s_path("flip");
        s_write_file(path, full, len);
        full[i] ^= 0x10;
        journal_replay_t r;
        journal_t *j = s_open(path, 7, &r);
        cr_assert_eq(r.n, 2, "byte %zu", i);
        cr_assert_eq(r.truncated, 1, "byte %zu", i);
        cr_assert_eq(s_size(path), ends[2]);
        journal_replay_free(&r);
        journal_close(&j);
    }
    free(full);
}

Test(journal, zero_filled_tail_is_torn_write) {
    size_t ends[4];
    const char *path = s_path("j");
    s_make3(path, ends);
    FILE *fp = fopen(path, "ab");
    static const char zeros[4096];
    cr_assert_eq(fwrite(zeros, 1, sizeof zeros, fp), sizeof zeros);
    fclose(fp);
    journal_replay_t r;
    journal_t *j = s_open(path, 7, &r);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.truncated, 1);
    cr_assert_eq(s_size(path), ends[3]);
    journal_replay_free(&r);
    journal_close(&j);
}

Test(journal, other_round_starts_fresh) {
    const char *path = s_path("j");
    size_t ends[4];
    s_make3(path, ends); /* round 7 */
    journal_replay_t r;
    journal_t *j = s_open(path, 8, &r);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.truncated, 0);
    cr_assert_eq(r.round, 8);
    cr_assert_eq(s_size(path), 32);
    s_append_str(j, "round eight");
    journal_close(&j);
    j = s_open(path, 8, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.records[0].seq, 0);
    s_expect_record(j, &r.records[0], "round eight");
    journal_replay_free(&r);
    journal_close(&j);
}

Test(journal, other_version_is_format_error) {
    const char *path = s_path("j");
    size_t ends[4];
    s_make3(path, ends);
    char *full;
    size_t len;
    s_file(path, &full, &len);
    full[8] = 2; /* version 2, with a header checksum that matches */
    uint8_t d[16];
    crypto_generichash(d, sizeof d, (uint8_t *)full, 28, NULL, 0);
    memcpy(full + 28, d, 4);
    s_write_file(path, full, len);
    journal_t *j = NULL;
    cc_err_t err = {0};
    cr_assert_eq(journal_open(path, 7, &j, NULL, &err), CC_ERR_FORMAT, "%s", err.msg);
    cr_assert_eq(s_size(path), len);
    free(full);
}

static void s_fault_then_reopen(int fail_at, size_t before) {
    const char *path = s_path("fault");
    unlink(path);
    journal_t *j = s_open(path, 2, NULL);
    for (size_t k = 0; k < before; k++) s_append_str(j, s_recs[k]);
    journal_fault_fail_write_after = fail_at;
    size_t ok = 0;
    cc_err_t err = {0};
    for (;; ok++) {
        const void *p[1] = {s_recs[2]};
        size_t l[1] = {strlen(s_recs[2])};
        if (journal_append(j, p, l, 1, NULL, &err) != 0) break;
    }
    cr_assert_eq((int)ok, fail_at - 1);
    cr_assert_eq(err.code, CC_ERR_IO);
    cr_assert_not_null(strstr(err.msg, "No space"), "%s", err.msg);
    cr_assert_eq(journal_fault_fail_write_after, 0);
    /* JOURNAL-4: the journal stays failed. */
    const void *p[1] = {"x"};
    size_t l[1] = {1};
    cr_assert_eq(journal_append(j, p, l, 1, NULL, &err), CC_ERR_IO);
    journal_close(&j);

    journal_replay_t r;
    j = s_open(path, 2, &r);
    cr_assert_eq(r.n, before + ok);
    cr_assert_eq(r.truncated, 1);
    for (size_t k = 0; k < before; k++) s_expect_record(j, &r.records[k], s_recs[k]);
    for (size_t k = before; k < r.n; k++) s_expect_record(j, &r.records[k], s_recs[2]);
    journal_replay_free(&r);
    s_append_str(j, "recovered");
    journal_close(&j);
    j = s_open(path, 2, &r);
    cr_assert_eq(r.n, before + ok + 1);
    cr_assert_eq(r.truncated, 0);
    s_expect_record(j, &r.records[r.n - 1], "recovered");
    journal_replay_free(&r);
    journal_close(&j);
}

Test(journal, crash_mid_append_keeps_earlier_records) {
    s_fault_then_reopen(1, 0);
    s_fault_then_reopen(1, 2);
    s_fault_then_reopen(3, 1);
}

Test(journal, reset_starts_new_round_and_clears_failure) {
    const char *path = s_path("j");
    journal_t *j = s_open(path, 4, NULL);
    s_append_str(j, "a");
    journal_fault_fail_write_after = 1;
    const void *p[1] = {"b"};
    size_t l[1] = {1};
    cc_err_t err = {0};
    cr_assert_eq(journal_append(j, p, l, 1, NULL, &err), CC_ERR_IO);
    cr_assert_eq(journal_reset(j, 5, &err), 0, "%s", err.msg);
    cr_assert_eq(s_size(path), 32);
    s_append_str(j, "fresh");
    journal_close(&j);
    journal_replay_t r;
    j = s_open(path, 5, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.truncated, 0);
    cr_assert_eq(r.records[0].seq, 0);
    s_expect_record(j, &r.records[0], "fresh");
    journal_replay_free(&r);
    journal_close(&j);
}

Test(journal, oversized_append_is_refused) {
    journal_t *j = s_open(s_path("j"), 1, NULL);
    const void *p[2] = {"x", "y"};
    size_t l[2] = {JOURNAL_MAX_RECORD, 1}; /* never read: the sum is checked first */
    cc_err_t err = {0};
    cr_assert_eq(journal_append(j, p, l, 2, NULL, &err), CC_ERR_ARG);
    s_append_str(j, "still fine");
    journal_close(&j);
}
