/* test_journal.c — the round journal (journal.h, JOURNAL-1..4).
 *
 * Acceptance: gathered and 4 MB payloads round-trip through replay and journal_read;
 * records are byte for byte the documented layout (an independent encoder here); a
 * reopened journal continues the sequence; a journal of another round, or a reset one,
 * starts fresh. Rejection and recovery: every truncation length of a 3-record journal
 * keeps exactly the complete records and says truncated unless cut at a record boundary;
 * every byte flipped in the header or a non-final record is CORRUPT (the version field:
 * FORMAT) and leaves the file untouched; a flip in the final record is a torn write
 * (truncated); a crash simulated half-way through an append (ENOSPC) keeps every earlier
 * record, refuses further appends, and reports truncated on reopen. Recovery never reads a
 * payload as records: a torn append whose payload holds a complete record (even one
 * tagged with the journal's own key) is a torn tail, a damaged record is judged from its
 * declared end, and 10,000 fake heads in a torn tail cost one pass. Digested parts
 * (journal_append_digested): round-trip, are laid out as documented, are verified on
 * replay (a flipped byte in one is torn when last, CORRUPT when followed), and are never
 * hashed on append (a wrong digest is accepted, and the record rejected on replay). Zero
 * runs: left as a hole that aligns the next part (2 MiB), laid out as documented, read back
 * as zeros and mapped (journal_fd_upto); a non-zero byte in one is torn when last, CORRUPT
 * when followed; a cut inside or after the hole, a head that never landed while the bytes
 * after the hole did, and a crash half-way through such an append are torn tails. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "journal.h"
#include "tmpdir_fixture.h"
#include "wire.h"

static char s_dir[64];

static void s_setup(void) {
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/concord_jrnl_");
    cr_assert_geq(sodium_init(), 0);
    journal_fault_fail_write_after = 0;
}

static void s_teardown(void) { tmpdir_remove(s_dir); }

TestSuite(journal, .init = s_setup, .fini = s_teardown);

static char *s_path(const char *name) { return tmpdir_join(s_dir, name); }

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

#define S_HDR 40      /* file header */
#define S_OVERHEAD 48 /* record head 32 + checksum 16 */

static void s_make3(const char *path, size_t ends[4]) {
    journal_t *j = s_open(path, 7, NULL);
    ends[0] = S_HDR;
    for (int k = 0; k < 3; k++) {
        s_append_str(j, s_recs[k]);
        ends[k + 1] = ends[k] + S_OVERHEAD + strlen(s_recs[k]);
    }
    journal_close(&j);
    cr_assert_eq(s_size(path), ends[3]);
}

/* ---- an independent encoder of the documented layout (journal.h) ---- */

static void s_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void s_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The journal's head-tag key, from its header. */
static void s_key_of(const char *path, uint8_t key[16]) {
    char *b;
    size_t len;
    s_file(path, &b, &len);
    cr_assert_geq(len, S_HDR);
    memcpy(key, b + 20, 16);
    free(b);
}

typedef struct {
    uint32_t off, len;
    const uint8_t *digest;
} s_dpart_t;

/* Encodes a record into out (32 + len + 40 n_dig + 16 bytes, returned): head tagged with
 * key (NULL: a key that is not the journal's), payload, trailer of the digested parts
 * dig[0, n_dig), checksum. */
static size_t s_encode_record(uint8_t *out, const uint8_t *key, uint64_t seq, const void *payload,
                              uint32_t len, const s_dpart_t *dig, uint32_t n_dig) {
    static const uint8_t other[16] = "not the key.....";
    uint8_t d[16], *t = out + 32 + len;
    s_le32(out, 0x4a524543);
    s_le32(out + 4, len);
    s_le64(out + 8, seq);
    s_le32(out + 16, n_dig);
    crypto_generichash(d, 16, out, 20, key ? key : other, 16);
    memcpy(out + 20, d, 12);
    memmove(out + 32, payload, len);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 16);
    crypto_generichash_update(&st, out, 20);
    uint32_t at = 0;
    for (uint32_t i = 0; i < n_dig; i++, t += 40) {
        s_le32(t, dig[i].off);
        s_le32(t + 4, dig[i].len);
        memcpy(t + 8, dig[i].digest, 32);
        crypto_generichash_update(&st, out + 32 + at, dig[i].off - at);
        at = dig[i].off + dig[i].len;
    }
    crypto_generichash_update(&st, out + 32 + at, len - at);
    crypto_generichash_update(&st, out + 32 + len, 40 * (size_t)n_dig);
    crypto_generichash_final(&st, t, 16);
    return 32 + len + 40 * (size_t)n_dig + 16;
}

Test(journal, records_match_independent_encoder) {
    const char *path = s_path("j");
    journal_t *j = s_open(path, 9, NULL);
    s_append_str(j, "alpha");
    const void *parts[3] = {"ab", NULL, "cde"};
    size_t lens[3] = {2, 0, 3};
    cc_err_t err = {0};
    cr_assert_eq(journal_append(j, parts, lens, 3, NULL, &err), 0, "%s", err.msg);
    journal_close(&j);
    char *got;
    size_t len;
    s_file(path, &got, &len);
    uint8_t want[S_HDR + 2 * 64] = {'C', 'C', 'J', 'R', 'N', 'L', '0', '1', 3}, d[16];
    want[12] = 9;                  /* round */
    memcpy(want + 20, got + 20, 16); /* the random key */
    crypto_generichash(d, sizeof d, want, 36, NULL, 0);
    memcpy(want + 36, d, 4);
    size_t n = S_HDR;
    n += s_encode_record(want + n, want + 20, 0, "alpha", 5, NULL, 0);
    n += s_encode_record(want + n, want + 20, 1, "abcde", 5, NULL, 0);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(got, want, n), 0, "bytes differ from the documented layout");
    free(got);
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
        cr_assert_eq(s_size(path), boundary < S_HDR ? S_HDR : boundary, "cut %zu: tail cut off",
                     cut);
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

/* Flips each byte of [from, to) with each mask and reopens: want CORRUPT (FORMAT for the
 * version field, JOURNAL-3), file untouched. */
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
            int want = i >= 8 && i < 12 ? CC_ERR_FORMAT : CC_ERR_CORRUPT;
            cr_assert_eq(rc, want, "byte %zu ^ %#x: rc %d (%s)", i, masks[m], rc, err.msg);
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
    cr_assert_eq(s_size(path), S_HDR);
    s_append_str(j, "round eight");
    journal_close(&j);
    j = s_open(path, 8, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.records[0].seq, 0);
    s_expect_record(j, &r.records[0], "round eight");
    journal_replay_free(&r);
    journal_close(&j);
}

/* JOURNAL-3: a version-1 journal (32-byte header, records without head tags), a journal of
 * today's layout that says version 2 (before zero runs) or 4 are FORMAT, and left untouched;
 * so is an empty version-1 journal (shorter than today's header). */
Test(journal, other_version_is_format_error) {
    uint8_t v1[32 + 16 + 5 + 16] = {'C', 'C', 'J', 'R', 'N', 'L', '0', '1', 1};
    v1[12] = 7; /* round 7 */
    uint8_t d[16];
    crypto_generichash(d, sizeof d, v1, 28, NULL, 0);
    memcpy(v1 + 28, d, 4);
    uint8_t *r = v1 + 32; /* magic, length 5, sequence 0, "hello", BLAKE2b-128 */
    r[0] = 0x43, r[1] = 0x45, r[2] = 0x52, r[3] = 0x4a, r[4] = 5;
    memcpy(r + 16, "hello", 5);
    crypto_generichash(r + 21, 16, r + 4, 12 + 5, NULL, 0); /* not the v1 rule, no matter */
    const char *path = s_path("j");
    for (int k = 0; k < 4; k++) {
        size_t len = sizeof v1;
        char *bytes = (char *)v1;
        if (k == 1) len = 32; /* an empty version-1 journal */
        if (k >= 2) { /* today's layout, version 2 or 4 */
            size_t ends[4];
            unlink(path);
            s_make3(path, ends);
            s_file(path, &bytes, &len);
            bytes[8] = k == 2 ? 2 : 4;
            crypto_generichash(d, sizeof d, (uint8_t *)bytes, 36, NULL, 0);
            memcpy(bytes + 36, d, 4);
        }
        s_write_file(path, bytes, len);
        journal_t *j = NULL;
        cc_err_t err = {0};
        cr_assert_eq(journal_open(path, 7, &j, NULL, &err), CC_ERR_FORMAT, "%d: %s", k, err.msg);
        cr_assert_null(j);
        const char *want = k == 2 ? "version 2" : k == 3 ? "version 4" : "version 1";
        cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
        cr_assert_eq(s_size(path), len);
        if (k >= 2) free(bytes);
    }
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
    cr_assert_eq(s_size(path), S_HDR);
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

/* A reset to a new round waits for the next sync (journal.h); to the same round it is
 * synced at once. Either way the old records never come back for the round reset to. */
Test(journal, reset_to_new_round_syncs_with_the_next_records) {
    const char *path = s_path("j");
    journal_t *j = s_open(path, 7, NULL);
    journal_defer_sync(j, 1);
    s_append_str(j, "old round");
    cc_err_t err = {0};
    cr_assert_eq(journal_sync(j, &err), 0, "%s", err.msg);
    cr_assert_eq(journal_reset(j, 8, &err), 0, "%s", err.msg);
    cr_assert_eq(s_size(path), S_HDR);
    s_append_str(j, "new round");
    cr_assert_eq(journal_sync(j, &err), 0, "%s", err.msg);
    cr_assert_eq(journal_reset(j, 8, &err), 0, "%s", err.msg); /* same round: drops its records */
    s_append_str(j, "again");
    cr_assert_eq(journal_sync(j, &err), 0, "%s", err.msg);
    journal_close(&j);
    journal_replay_t r;
    j = s_open(path, 8, &r);
    cr_assert_eq(r.n, 1);
    s_expect_record(j, &r.records[0], "again");
    journal_replay_free(&r);
    journal_close(&j);
    j = s_open(path, 7, &r); /* the previous round's journal is gone: started afresh */
    cr_assert_eq(r.n, 0);
    journal_replay_free(&r);
    journal_close(&j);
}

/* The group commit on another thread (journal_sync_begin/run/end, used by the coordinator's
 * syncer): what it covers, a failure, a reset or a close while it runs. */
Test(journal, sync_on_another_thread_covers_what_was_appended) {
    const char *path = s_path("j");
    journal_t *j = s_open(path, 3, NULL);
    journal_defer_sync(j, 1);
    journal_sync_t sync;
    cc_err_t err = {0};
    cr_assert_eq(journal_sync_begin(j, &sync, &err), 0, "%s", err.msg);
    cr_assert_eq(sync.fd, -1, "nothing appended: nothing to sync");
    s_append_str(j, "one");
    cr_assert_eq(journal_sync_begin(j, &sync, &err), 0, "%s", err.msg);
    cr_assert_geq(sync.fd, 0);
    journal_sync_t again;
    cr_assert_eq(journal_sync_begin(j, &again, &err), 0, "%s", err.msg);
    cr_assert_eq(again.fd, -1, "the first sync took every record appended so far");
    s_append_str(j, "two"); /* after begin: left for the next sync */
    cr_assert_eq(journal_sync_run(&sync), 0);
    cr_assert_eq(sync.fd, -1, "run closes its descriptor");
    cr_assert_eq(journal_sync_end(j, &sync, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(journal_sync_begin(j, &again, &err), 0, "%s", err.msg);
    cr_assert_geq(again.fd, 0, "\"two\" is still to be synced");
    journal_close(&j); /* the sync has a descriptor of its own */
    cr_assert_eq(journal_sync_run(&again), 0);
    journal_replay_t r;
    j = s_open(path, 3, &r);
    cr_assert_eq(r.n, 2);
    journal_replay_free(&r);
    journal_close(&j);
}

Test(journal, failed_sync_on_another_thread_fails_the_journal_unless_reset_since) {
    journal_t *j = s_open(s_path("j"), 3, NULL);
    journal_defer_sync(j, 1);
    journal_sync_t sync;
    cc_err_t err = {0};
    s_append_str(j, "a");
    cr_assert_eq(journal_sync_begin(j, &sync, &err), 0, "%s", err.msg);
    journal_fault_fail_sync_after = 1;
    int e = journal_sync_run(&sync);
    cr_assert_eq(e, EIO);
    cr_assert_eq(journal_sync_end(j, &sync, e, &err), CC_ERR_IO);
    const void *p[1] = {"b"};
    size_t l[1] = {1};
    cr_assert_eq(journal_append(j, p, l, 1, NULL, &err), CC_ERR_IO, "JOURNAL-4: refused after a failed sync");
    cr_assert_eq(journal_reset(j, 4, &err), 0, "%s", err.msg);
    s_append_str(j, "c");
    cr_assert_eq(journal_sync_begin(j, &sync, &err), 0, "%s", err.msg);
    cr_assert_eq(journal_reset(j, 5, &err), 0, "%s", err.msg); /* the round closed meanwhile */
    journal_fault_fail_sync_after = 1;
    e = journal_sync_run(&sync);
    cr_assert_eq(journal_sync_end(j, &sync, e, &err), 0, "a sync of records reset away changes nothing");
    s_append_str(j, "d");
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

/* ---- recovery never reads a payload as records (JOURNAL-2) ---- */

static const size_t s_two_end = S_HDR + 2 * S_OVERHEAD + 5 + 31; /* after s_recs[0..1] */

/* A journal of round 7 with s_recs[0] and s_recs[1], still open; its key in key. */
static journal_t *s_two_records(const char *path, uint8_t key[16]) {
    unlink(path);
    journal_t *j = s_open(path, 7, NULL);
    s_append_str(j, s_recs[0]);
    s_append_str(j, s_recs[1]);
    s_key_of(path, key);
    return j;
}

/* Appends payload with a simulated crash half-way (JOURNAL-4), and closes. */
static void s_torn_append(journal_t *j, const uint8_t *payload, size_t n) {
    journal_fault_fail_write_after = 1;
    const void *p[1] = {payload};
    cc_err_t err = {0};
    cr_assert_eq(journal_append(j, p, &n, 1, NULL, &err), CC_ERR_IO);
    journal_close(&j);
}

/* Overwrites [off, off + n) of the file with zeros (a lost page). */
static void s_zero(const char *path, size_t off, size_t n) {
    char *b;
    size_t len;
    s_file(path, &b, &len);
    cr_assert_leq(off + n, len);
    memset(b + off, 0, n);
    s_write_file(path, b, len);
    free(b);
}

/* Reopening gives the two records, the torn tail cut off, and appending resumes. */
static void s_expect_two_and_torn(const char *path) {
    journal_replay_t r;
    journal_t *j = s_open(path, 7, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.truncated, 1);
    s_expect_record(j, &r.records[0], s_recs[0]);
    s_expect_record(j, &r.records[1], s_recs[1]);
    cr_assert_eq(s_size(path), s_two_end);
    journal_replay_free(&r);
    s_append_str(j, "after");
    journal_close(&j);
    j = s_open(path, 7, &r);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.truncated, 0);
    journal_replay_free(&r);
    journal_close(&j);
}

/* n bytes of float-like data holding, at `at`, a complete record with sequence seq whose
 * head is tagged with key (NULL: another key). */
static uint8_t *s_payload_with_fake(size_t n, size_t at, const uint8_t *key, uint64_t seq) {
    uint8_t *p = cc_xmalloc(n);
    for (size_t i = 0; i + 4 <= n; i += 4) {
        float f = 0.001f * (float)(i % 977) - 0.3f;
        memcpy(p + i, &f, 4);
    }
    s_encode_record(p + at, key, seq, "planted", 7, NULL, 0);
    return p;
}

/* Finding 3a (docs/security.md): a crash while appending an update whose payload holds a
 * complete, valid-looking record is a torn tail, not CORRUPT -- even when the planted head
 * carries the journal's own tag, since a genuine torn head says where its record ends. */
Test(journal, torn_append_with_fake_record_in_payload_is_truncated) {
    const char *path = s_path("j");
    uint8_t key[16];
    for (int own_key = 0; own_key < 2; own_key++) {
        journal_t *j = s_two_records(path, key);
        uint8_t *payload = s_payload_with_fake(4096, 1000, own_key ? key : NULL, 2);
        s_torn_append(j, payload, 4096); /* 2072 of 4144 bytes: the fake is in the file */
        free(payload);
        cr_assert_gt(s_size(path), s_two_end + 32 + 1000 + 55);
        s_expect_two_and_torn(path);
    }
    /* The torn record's head lost as well (a page never written): only a genuine head
     * after it would make it CORRUPT, and a payload cannot carry one without the key. */
    journal_t *j = s_two_records(path, key);
    uint8_t *payload = s_payload_with_fake(4096, 1000, NULL, 2);
    s_torn_append(j, payload, 4096);
    s_zero(path, s_two_end, 32);
    s_expect_two_and_torn(path);
    j = s_two_records(path, key); /* (with the key, it is indistinguishable from a record) */
    free(payload);
    payload = s_payload_with_fake(4096, 1000, key, 2);
    s_torn_append(j, payload, 4096);
    s_zero(path, s_two_end, 32);
    cc_err_t err = {0};
    cr_assert_eq(journal_open(path, 7, &j, NULL, &err), CC_ERR_CORRUPT, "%s", err.msg);
    free(payload);
}

/* A flipped byte mid-file followed by valid records is CORRUPT, judged from the damaged
 * record's declared end: the record planted in its payload (tagged with the journal's key,
 * next sequence number) is not where the search starts, the real next record is. Without
 * the records after it, the same damage is a torn tail. */
Test(journal, damaged_record_is_judged_from_its_declared_end) {
    const char *path = s_path("j");
    journal_t *j = s_open(path, 7, NULL);
    s_append_str(j, s_recs[0]);
    uint8_t key[16];
    s_key_of(path, key);
    uint8_t *payload = s_payload_with_fake(4096, 1000, key, 2);
    const void *p[1] = {payload};
    size_t n = 4096;
    cc_err_t err = {0};
    cr_assert_eq(journal_append(j, p, &n, 1, NULL, &err), 0, "%s", err.msg);
    s_append_str(j, s_recs[2]);
    journal_close(&j);
    size_t rec1 = S_HDR + S_OVERHEAD + 5, rec2 = rec1 + S_OVERHEAD + 4096;
    char *full;
    size_t len;
    s_file(path, &full, &len);
    const size_t flips[3] = {rec1 + 32 + 10, rec1 + 32 + 1000 + 40, rec1 + 32 + 4096 + 3};
    for (int f = 0; f < 3; f++) { /* payload, inside the planted record, the checksum */
        full[flips[f]] ^= 0x20;
        s_write_file(path, full, len);
        cr_assert_eq(journal_open(path, 7, &j, NULL, &err), CC_ERR_CORRUPT, "%s", err.msg);
        char want[96];
        snprintf(want, sizeof want, "at offset %zu is followed by a valid record head at offset %zu",
                 rec1, rec2);
        cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
        cr_assert_eq(s_size(path), len);
        s_write_file(path, full, rec2); /* the damaged record last: torn */
        journal_replay_t r;
        j = s_open(path, 7, &r);
        cr_assert_eq(r.n, 1);
        cr_assert_eq(r.truncated, 1);
        cr_assert_eq(s_size(path), rec1);
        journal_replay_free(&r);
        journal_close(&j);
        full[flips[f]] ^= 0x20;
    }
    free(full);
    free(payload);
}

/* Finding 3b: 10,000 fake heads (each claiming a length that fits in the file) in a torn
 * tail are never hashed over their claims. Asserts the result; the timeout only guards
 * against a hang (a quadratic scan hashes gigabytes here). */
Test(journal, many_fake_heads_in_torn_tail_cost_one_pass, .timeout = 120) {
    const char *path = s_path("j");
    const size_t n = 10000 * 400;
    uint8_t key[16];
    for (int variant = 0; variant < 2; variant++) {
        journal_t *j = s_two_records(path, key);
        uint8_t *payload = s_payload_with_fake(n, 0, NULL, 2);
        for (size_t at = 0; at + 48 <= n; at += 400) {
            uint32_t claim = (uint32_t)(n / 2 - at / 2);
            s_le32(payload + at, 0x4a524543);
            s_le32(payload + at + 4, claim);
            s_le64(payload + at + 8, 2);
            s_le32(payload + at + 16, 0);
            uint8_t d[16]; /* variant 0: tagged with the journal's key, 1: unkeyed */
            crypto_generichash(d, 16, payload + at, 20, variant ? NULL : key, variant ? 0 : 16);
            memcpy(payload + at + 20, d, 12);
        }
        s_torn_append(j, payload, n);
        free(payload);
        if (variant) s_zero(path, s_two_end, 32); /* its head lost: the tail is searched */
        s_expect_two_and_torn(path);
    }
}

/* ---- digested parts (journal_append_digested) ---- */

/* A journal of round 7 whose records are: s_recs[0]; a digested record (a header part, a
 * digested 200 KB part of floats that crosses read chunks, an undigested string, an empty
 * digested part); s_recs[2] unless `last`. Returns the digested record's offset and
 * writes its payload bytes (caller frees) and the offset of its first float part. */
static uint8_t *s_make_digested(const char *path, int last, const uint8_t *wrong, size_t *rec1,
                                size_t *payload_len, size_t *floats_at) {
    unlink(path);
    journal_t *j = s_open(path, 7, NULL);
    s_append_str(j, s_recs[0]);
    enum { NF = 50000 };
    float *v = cc_xmalloc(NF * sizeof *v);
    for (int i = 0; i < NF; i++) v[i] = 0.25f * (float)(i % 101) - 3.0f;
    uint8_t dv[32], de[32];
    wire_digest_bytes(dv, v, NF * sizeof *v); /* the digest a wire frame carries */
    wire_digest_bytes(de, NULL, 0);
    static const char hdr[] = "{\"type\":\"update\"}", txt[] = "trailing text";
    const void *parts[4] = {hdr, v, txt, NULL};
    size_t lens[4] = {sizeof hdr - 1, NF * sizeof *v, sizeof txt - 1, 0};
    const uint8_t *digests[4] = {NULL, wrong ? wrong : dv, NULL, de};
    journal_record_t rec;
    cc_err_t err = {0};
    cr_assert_eq(journal_append_digested(j, parts, lens, digests, 4, &rec, &err), 0, "%s", err.msg);
    if (!last) s_append_str(j, s_recs[2]);
    journal_close(&j);
    *rec1 = S_HDR + S_OVERHEAD + 5;
    cr_assert_eq(rec.offset, *rec1 + 32);
    *payload_len = lens[0] + lens[1] + lens[2];
    *floats_at = lens[0];
    uint8_t *payload = cc_xmalloc(*payload_len);
    memcpy(payload, hdr, lens[0]);
    memcpy(payload + lens[0], v, lens[1]);
    memcpy(payload + lens[0] + lens[1], txt, lens[2]);
    free(v);
    return payload;
}

Test(journal, digested_parts_round_trip_in_the_documented_layout) {
    const char *path = s_path("j");
    size_t rec1, n, fl;
    uint8_t *payload = s_make_digested(path, 0, NULL, &rec1, &n, &fl);
    journal_replay_t r;
    journal_t *j = s_open(path, 7, &r);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.truncated, 0);
    cr_assert_eq(r.records[1].length, n);
    uint8_t *back = cc_xmalloc(n);
    cc_err_t err = {0};
    cr_assert_eq(journal_read(j, &r.records[1], 0, back, n, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(back, payload, n), 0);
    s_expect_record(j, &r.records[0], s_recs[0]);
    s_expect_record(j, &r.records[2], s_recs[2]);
    journal_replay_free(&r);
    journal_close(&j);
    /* The same bytes from the independent encoder: trailer (offset, length, digest) of the
     * two digested parts, checksum over the head, the other bytes and the trailer. */
    uint8_t key[16], dv[32], de[32];
    s_key_of(path, key);
    crypto_generichash(dv, 32, payload + fl, n - fl - 13, NULL, 0);
    crypto_generichash(de, 32, NULL, 0, NULL, 0);
    s_dpart_t dig[2] = {{(uint32_t)fl, (uint32_t)(n - fl - 13), dv}, {(uint32_t)n, 0, de}};
    uint8_t *want = cc_xmalloc(n + 200);
    size_t wn = s_encode_record(want, key, 1, payload, (uint32_t)n, dig, 2);
    char *got;
    size_t len;
    s_file(path, &got, &len);
    cr_assert_eq(len, rec1 + wn + S_OVERHEAD + strlen(s_recs[2]));
    cr_assert_eq(memcmp(got + rec1, want, wn), 0, "bytes differ from the documented layout");
    free(got), free(want), free(back), free(payload);
}

/* Damage inside a digested part (which the record checksum does not cover) is caught by
 * its digest: torn when the record is last, CORRUPT when a record follows. */
Test(journal, flipped_byte_in_digested_part_is_detected) {
    const char *path = s_path("j");
    for (int last = 0; last < 2; last++) {
        size_t rec1, n, fl;
        free(s_make_digested(path, last, NULL, &rec1, &n, &fl));
        char *full;
        size_t len;
        s_file(path, &full, &len);
        const size_t at[2] = {rec1 + 32 + fl, rec1 + 32 + fl + 150001}; /* first float, mid */
        for (int k = 0; k < 2; k++) {
            full[at[k]] ^= 0x04;
            s_write_file(path, full, len);
            full[at[k]] ^= 0x04;
            journal_t *j = NULL;
            journal_replay_t r;
            cc_err_t err = {0};
            int rc = journal_open(path, 7, &j, &r, &err);
            if (!last) {
                cr_assert_eq(rc, CC_ERR_CORRUPT, "byte %zu: %s", at[k], err.msg);
                cr_assert_eq(s_size(path), len);
                continue;
            }
            cr_assert_eq(rc, 0, "%s", err.msg);
            cr_assert_eq(r.n, 1);
            cr_assert_eq(r.truncated, 1);
            cr_assert_eq(s_size(path), rec1);
            journal_replay_free(&r);
            journal_close(&j);
        }
        free(full);
    }
}

/* The append trusts the caller's digest and does not hash the part: a wrong digest is
 * appended without complaint, and replay rejects the record as damaged. */
Test(journal, append_trusts_the_digest_and_replay_checks_it) {
    const char *path = s_path("j");
    uint8_t wrong[32];
    memset(wrong, 0xa5, sizeof wrong);
    for (int last = 0; last < 2; last++) {
        size_t rec1, n, fl;
        free(s_make_digested(path, last, wrong, &rec1, &n, &fl));
        size_t len = s_size(path);
        journal_t *j = NULL;
        journal_replay_t r;
        cc_err_t err = {0};
        int rc = journal_open(path, 7, &j, &r, &err);
        if (!last) {
            cr_assert_eq(rc, CC_ERR_CORRUPT, "%s", err.msg);
            cr_assert_eq(s_size(path), len);
            continue;
        }
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(r.n, 1);
        cr_assert_eq(r.truncated, 1);
        journal_replay_free(&r);
        journal_close(&j);
    }
}

Test(journal, too_many_digested_parts_are_refused) {
    journal_t *j = s_open(s_path("j"), 1, NULL);
    enum { NP = JOURNAL_MAX_DIGESTS + 1 };
    static const void *parts[NP];
    static size_t lens[NP];
    static const uint8_t *digests[NP];
    uint8_t d[32];
    wire_digest_bytes(d, NULL, 0);
    for (int i = 0; i < NP; i++) digests[i] = d;
    cc_err_t err = {0};
    cr_assert_eq(journal_append_digested(j, parts, lens, digests, NP, NULL, &err), CC_ERR_ARG);
    cr_assert_eq(journal_append_digested(j, parts, lens, digests, NP - 1, NULL, &err), 0, "%s",
                 err.msg); /* the limit itself is fine (empty parts) */
    s_append_str(j, "still fine");
    journal_close(&j);
    journal_replay_t r;
    j = s_open(s_path("j"), 1, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.truncated, 0);
    journal_replay_free(&r);
    journal_close(&j);
}

/* Group commit: deferred appends become durable at journal_sync (they replay after a
 * reopen); a failed write leaves the journal refusing both appends and syncs. */
Test(journal, deferred_sync_group_commit) {
    const char *path = s_path("group.journal");
    journal_t *j = s_open(path, 4, NULL);
    journal_defer_sync(j, 1);
    cc_err_t err = {0};
    cr_assert_eq(journal_sync(j, &err), 0, "sync with nothing appended: %s", err.msg);
    s_append_str(j, "first");
    s_append_str(j, "second");
    cr_assert_eq(journal_sync(j, &err), 0, "%s", err.msg);
    cr_assert_eq(journal_sync(j, &err), 0, "a second sync is a no-op: %s", err.msg);
    journal_close(&j);
    journal_replay_t r = {0};
    j = s_open(path, 4, &r);
    cr_expect_eq(r.n, 2, "both deferred records replay");
    journal_replay_free(&r);
    journal_defer_sync(j, 1);
    journal_fault_fail_write_after = 1;
    const void *parts[1] = {"third"};
    size_t lens[1] = {5};
    cr_expect_neq(journal_append(j, parts, lens, 1, NULL, &err), 0, "the simulated crash fails the append");
    cr_expect_neq(journal_sync(j, &err), 0, "a failed journal refuses to sync");
    journal_close(&j);
}

/* ---- zero runs ---- */

#define S_ALIGN (2u << 20)
enum { S_ZF = 300000 }; /* floats after the zero run: 1.2 MB, more than one read chunk */

typedef struct {
    size_t rec1;      /* file offset of the record with the zero run */
    size_t hole, run; /* file offset and length of the run */
    size_t floats;    /* file offset of the floats (2 MiB-aligned) */
    size_t n;         /* payload bytes */
    uint8_t *payload; /* as replay must give it back (zeros in the run); caller frees */
    journal_record_t rec;
} s_zrec_t;

/* A journal of round 7: s_recs[0]; a record "head" | zero run | S_ZF digested floats |
 * "tail", the floats at a 2 MiB-aligned file offset; s_recs[2] unless `last`. */
static s_zrec_t s_make_zero_run(const char *path, int last) {
    unlink(path);
    journal_t *j = s_open(path, 7, NULL);
    s_append_str(j, s_recs[0]);
    s_zrec_t z = {.rec1 = S_HDR + S_OVERHEAD + 5};
    cr_assert_eq(journal_next_payload_offset(j), z.rec1 + 32);
    float *v = cc_xmalloc(S_ZF * sizeof *v);
    for (int i = 0; i < S_ZF; i++) v[i] = 0.5f * (float)(i % 97) + 1.0f;
    uint8_t dv[32];
    wire_digest_bytes(dv, v, S_ZF * sizeof *v);
    z.hole = z.rec1 + 32 + 4;
    z.floats = (z.hole + S_ALIGN - 1) / S_ALIGN * S_ALIGN;
    z.run = z.floats - z.hole;
    const void *parts[4] = {"head", NULL, v, "tail"};
    size_t lens[4] = {4, z.run, S_ZF * sizeof *v, 4};
    const uint8_t *digests[4] = {NULL, NULL, dv, NULL};
    cc_err_t err = {0};
    cr_assert_eq(journal_append_digested(j, parts, lens, digests, 4, &z.rec, &err), 0, "%s", err.msg);
    if (!last) s_append_str(j, s_recs[2]);
    journal_close(&j);
    z.n = 4 + z.run + S_ZF * sizeof *v + 4;
    z.payload = cc_xcalloc(1, z.n);
    memcpy(z.payload, "head", 4);
    memcpy(z.payload + 4 + z.run, v, S_ZF * sizeof *v);
    memcpy(z.payload + z.n - 4, "tail", 4);
    free(v);
    return z;
}

Test(journal, zero_run_is_a_hole_in_the_documented_layout) {
    const char *path = s_path("j");
    s_zrec_t z = s_make_zero_run(path, 0);
    cr_assert_eq(z.floats % S_ALIGN, 0);
    journal_replay_t r;
    journal_t *j = s_open(path, 7, &r);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.truncated, 0);
    cr_assert_eq(r.records[1].offset, z.rec.offset);
    cr_assert_eq(r.records[1].length, z.n);
    uint8_t *back = cc_xmalloc(z.n);
    cc_err_t err = {0};
    cr_assert_eq(journal_read(j, &r.records[1], 0, back, z.n, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(back, z.payload, z.n), 0);
    s_expect_record(j, &r.records[2], s_recs[2]);
    /* journal_fd_upto: the floats mapped at their aligned offset; a file too short fails */
    size_t fl = z.floats - z.rec.offset, flen = S_ZF * sizeof(float);
    int fd = -1;
    cr_assert_eq(journal_fd_upto(j, z.floats + flen, &fd, &err), 0, "%s", err.msg);
    void *m = mmap(NULL, flen, PROT_READ, MAP_SHARED, fd, (off_t)z.floats);
    cr_assert_neq(m, MAP_FAILED);
    cr_assert_eq(memcmp(m, z.payload + fl, flen), 0);
    munmap(m, flen);
    struct stat fst;
    cr_assert_eq(fstat(fd, &fst), 0);
    cr_assert_eq(journal_fd_upto(j, (uint64_t)fst.st_size + 1, &fd, &err), CC_ERR_TRUNCATED);
    cr_assert_eq(fd, -1);
    journal_replay_free(&r);
    journal_close(&j);
    /* The same bytes from the independent encoder: the run's trailer entry has 32 zero
     * bytes for a digest, and the checksum skips it as it skips a digested part. */
    uint8_t key[16], dv[32], zero[32] = {0};
    s_key_of(path, key);
    crypto_generichash(dv, 32, z.payload + fl, flen, NULL, 0);
    s_dpart_t dig[2] = {{4, (uint32_t)z.run, zero}, {(uint32_t)fl, (uint32_t)flen, dv}};
    uint8_t *want = cc_xmalloc(z.n + 200);
    size_t wn = s_encode_record(want, key, 1, z.payload, (uint32_t)z.n, dig, 2);
    char *got;
    size_t len;
    s_file(path, &got, &len);
    cr_assert_eq(len, z.rec1 + wn + S_OVERHEAD + strlen(s_recs[2]));
    cr_assert_eq(memcmp(got + z.rec1, want, wn), 0, "bytes differ from the documented layout");
    /* a hole: the file takes less disk than the run */
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_lt((size_t)st.st_blocks * 512, len - z.run / 2, "%zu blocks for %zu bytes",
                 (size_t)st.st_blocks, len);
    free(got), free(want), free(back), free(z.payload);
}

/* A byte written into the hole is damage: torn when the record is last, CORRUPT when a
 * record follows (JOURNAL-2). */
Test(journal, non_zero_byte_in_a_zero_run_is_detected) {
    const char *path = s_path("j");
    for (int last = 0; last < 2; last++) {
        const size_t into[3] = {0, 70001, 1}; /* first byte, middle, last byte of the run */
        for (int k = 0; k < 3; k++) {
            s_zrec_t z = s_make_zero_run(path, last);
            size_t at = k == 2 ? z.hole + z.run - 1 : z.hole + into[k], len = s_size(path);
            FILE *f = fopen(path, "r+b");
            cr_assert_not_null(f);
            cr_assert_eq(fseek(f, (long)at, SEEK_SET), 0);
            cr_assert_eq(fputc(0x01, f), 0x01);
            cr_assert_eq(fclose(f), 0);
            journal_t *j = NULL;
            journal_replay_t r;
            cc_err_t err = {0};
            int rc = journal_open(path, 7, &j, &r, &err);
            free(z.payload);
            if (!last) {
                cr_assert_eq(rc, CC_ERR_CORRUPT, "byte %zu: %s", at, err.msg);
                cr_assert_eq(s_size(path), len);
                continue;
            }
            cr_assert_eq(rc, 0, "%s", err.msg);
            cr_assert_eq(r.n, 1);
            cr_assert_eq(r.truncated, 1);
            cr_assert_eq(s_size(path), z.rec1);
            journal_replay_free(&r);
            journal_close(&j);
        }
    }
}

static void s_expect_first_only(const char *path, size_t rec1) {
    journal_replay_t r;
    journal_t *j = s_open(path, 7, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.truncated, 1);
    cr_assert_eq(s_size(path), rec1);
    s_expect_record(j, &r.records[0], s_recs[0]);
    journal_replay_free(&r);
    s_append_str(j, "after");
    journal_close(&j);
    j = s_open(path, 7, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.truncated, 0);
    journal_replay_free(&r);
    journal_close(&j);
}

/* A crash during an append with a zero run: the file cut inside the hole, right after it,
 * inside the floats or just before the end, or the bytes after the hole on disk while the
 * head never landed (zeros), or the simulated crash half-way through: a torn tail each
 * time, the earlier record kept. */
Test(journal, torn_append_with_a_zero_run_is_truncated) {
    const char *path = s_path("j");
    for (int k = 0; k < 6; k++) {
        s_zrec_t z = s_make_zero_run(path, 1);
        size_t len = s_size(path);
        const size_t cut[5] = {z.hole + 1, z.hole + z.run / 2, z.floats, z.floats + 4096 + 3, len - 1};
        if (k < 5) cr_assert_eq(truncate(path, (off_t)cut[k]), 0);
        else s_zero(path, z.rec1, 32);
        s_expect_first_only(path, z.rec1);
        free(z.payload);
    }
    /* the simulated crash (half the record written, ENOSPC) */
    unlink(path);
    journal_t *j = s_open(path, 7, NULL);
    s_append_str(j, s_recs[0]);
    float v[1000] = {0.5f};
    const void *parts[3] = {"h", NULL, v};
    size_t lens[3] = {1, 3 * 4096 - 5, sizeof v};
    cc_err_t err = {0};
    journal_fault_fail_write_after = 1;
    cr_assert_eq(journal_append(j, parts, lens, 3, NULL, &err), CC_ERR_IO);
    journal_close(&j);
    s_expect_first_only(path, S_HDR + S_OVERHEAD + 5);
}

/* A zero run takes no digest, and a digest of 32 zero bytes (the mark of a zero run) is
 * refused. */
Test(journal, zero_run_digests_are_refused) {
    journal_t *j = s_open(s_path("j"), 1, NULL);
    uint8_t zero[32] = {0}, some[32];
    memset(some, 7, sizeof some);
    const void *parts[2] = {"ab", NULL};
    size_t lens[2] = {2, 100};
    const uint8_t *d1[2] = {NULL, some}, *d2[2] = {zero, NULL};
    cc_err_t err = {0};
    cr_assert_eq(journal_append_digested(j, parts, lens, d1, 2, NULL, &err), CC_ERR_ARG);
    cr_assert_eq(journal_append_digested(j, parts, lens, d2, 2, NULL, &err), CC_ERR_ARG);
    cr_assert_eq(journal_append(j, parts, lens, 2, NULL, &err), 0, "%s", err.msg);
    journal_close(&j);
}
