/* test_snapshot.c — section files and the checkpoint directory (snapshot.h).
 *
 * Acceptance: sections round-trip byte for byte (empty ones and replaced ones too); the
 * file size matches the layout; the directory keeps the newest N and loads the newest.
 * Rejection and recovery: every truncation of a small file is TRUNCATED; every
 * single-byte flip (three masks) is CORRUPT; trailing bytes and crafted files whose
 * checksums match but whose section table does not are CORRUPT; another version is
 * FORMAT; a truncated or corrupt newest checkpoint is skipped (callback with its path)
 * for the previous one; all bad is an error, none at all a fresh start; a crash at each
 * fsync of a save leaves the previous checkpoint loadable; temp files and foreign names
 * are ignored. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "snapshot.h"
#include "tmpdir_fixture.h"

static char s_dir[64];

static void s_setup(void) {
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/concord_snap_");
    cr_assert_geq(sodium_init(), 0);
    fileio_fault_fail_sync_after = 0;
}

static void s_teardown(void) { tmpdir_remove(s_dir); }

TestSuite(snapshot, .init = s_setup, .fini = s_teardown);

static char *s_path(const char *name) { return tmpdir_join(s_dir, name); }

static int s_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
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

/* A small snapshot whose "round" section says which round it is. */
static snapshot_t *s_small(uint64_t round) {
    snapshot_t *s = snapshot_new();
    char meta[64];
    snprintf(meta, sizeof meta, "{\"round\":%llu}", (unsigned long long)round);
    snapshot_put(s, "meta", meta, strlen(meta));
    float w[3] = {1.5f, -2.0f, (float)round};
    snapshot_put(s, "params", w, sizeof w);
    return s;
}

static int s_read_code(const char *path) {
    snapshot_t *s = NULL;
    cc_err_t err = {0};
    int rc = snapshot_read(path, &s, &err);
    if (rc == 0) snapshot_destroy(&s);
    else cr_assert_null(s);
    cr_assert(rc == 0 || err.code == rc);
    return rc;
}

Test(snapshot, round_trip) {
    snapshot_t *s = snapshot_new();
    float *params = cc_xmalloc(100000 * sizeof *params);
    for (int i = 0; i < 100000; i++) params[i] = (float)i / 7.0f;
    snapshot_put(s, "meta", "{\"round\":3}", 11);
    snapshot_put(s, "params", params, 100000 * sizeof *params);
    snapshot_put(s, "empty", NULL, 0);
    snapshot_put(s, "rng", "old", 3);
    size_t n;
    const void *own = snapshot_get(s, "rng", &n);
    snapshot_put(s, "rng", own, n); /* replaced by its own bytes */
    cr_assert_eq(memcmp(snapshot_get(s, "rng", &n), "old", 3), 0);
    snapshot_put(s, "rng", "state!", 6);
    cc_err_t err = {0};
    cr_assert_eq(snapshot_write(s, s_path("a.snap"), &err), 0, "%s", err.msg);
    snapshot_destroy(&s);
    cr_assert_null(s);
    snapshot_destroy(&s);

    struct stat st;
    cr_assert_eq(stat(s_path("a.snap"), &st), 0);
    size_t sections = (2 + 4 + 8 + 11) + (2 + 6 + 8 + 400000) + (2 + 5 + 8) + (2 + 3 + 8 + 6);
    cr_assert_eq((size_t)st.st_size, 40 + sections + 32);

    cr_assert_eq(snapshot_read(s_path("a.snap"), &s, &err), 0, "%s", err.msg);
    const void *p = snapshot_get(s, "meta", &n);
    cr_assert_eq(n, 11);
    cr_assert_eq(memcmp(p, "{\"round\":3}", 11), 0);
    p = snapshot_get(s, "params", &n);
    cr_assert_eq(n, 100000 * sizeof *params);
    cr_assert_eq(memcmp(p, params, n), 0);
    cr_assert_not_null(snapshot_get(s, "empty", &n));
    cr_assert_eq(n, 0);
    p = snapshot_get(s, "rng", &n);
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(p, "state!", 6), 0);
    cr_assert_null(snapshot_get(s, "missing", &n));
    cr_assert_eq(n, 0);
    cr_assert_null(snapshot_get(s, "me", NULL));
    snapshot_put(s, "meta", "x", 1); /* a read snapshot can be changed */
    p = snapshot_get(s, "meta", &n);
    cr_assert_eq(n, 1);
    snapshot_destroy(&s);
    free(params);
}

/* The bytes of s_small(1) as written to the file "full" (free()). */
static char *s_small_bytes(size_t *len) {
    snapshot_t *s = s_small(1);
    cc_err_t err = {0};
    cr_assert_eq(snapshot_write(s, s_path("full"), &err), 0, "%s", err.msg);
    snapshot_destroy(&s);
    char *full;
    s_file(s_path("full"), &full, len);
    return full;
}

Test(snapshot, every_truncation_is_truncated) {
    size_t len;
    char *full = s_small_bytes(&len);
    for (size_t cut = 0; cut < len; cut++) {
        s_write_file(s_path("cut"), full, cut);
        cr_assert_eq(s_read_code(s_path("cut")), CC_ERR_TRUNCATED, "cut at %zu of %zu", cut, len);
    }
    s_write_file(s_path("cut"), full, len);
    cr_assert_eq(s_read_code(s_path("cut")), 0);
    free(full);
}

Test(snapshot, every_byte_flip_is_corrupt) {
    static const uint8_t masks[3] = {0x01, 0x80, 0xff};
    size_t len;
    char *full = s_small_bytes(&len);
    for (size_t i = 0; i < len; i++)
        for (int m = 0; m < 3; m++) {
            full[i] ^= (char)masks[m];
            s_write_file(s_path("flip"), full, len);
            full[i] ^= (char)masks[m];
            cr_assert_eq(s_read_code(s_path("flip")), CC_ERR_CORRUPT, "byte %zu ^ %#x", i, masks[m]);
        }
    /* One byte too many is damage, not a longer file. */
    full = cc_xrealloc(full, len + 1);
    full[len] = 0;
    s_write_file(s_path("long"), full, len + 1);
    cr_assert_eq(s_read_code(s_path("long")), CC_ERR_CORRUPT);
    free(full);
}

/* Re-seals a crafted file: header hash and file hash recomputed. */
static void s_reseal(uint8_t *b, size_t len) {
    crypto_generichash(b + 24, 16, b, 24, NULL, 0);
    crypto_generichash(b + len - 32, 32, b, len - 32, NULL, 0);
}

Test(snapshot, crafted_files_with_matching_checksums) {
    snapshot_t *s = snapshot_new();
    snapshot_put(s, "ab", "xyz", 3);
    snapshot_put(s, "cd", "uvw", 3);
    cc_err_t err = {0};
    cr_assert_eq(snapshot_write(s, s_path("ok"), &err), 0, "%s", err.msg);
    snapshot_destroy(&s);
    char *c;
    size_t len;
    s_file(s_path("ok"), &c, &len);
    uint8_t *full = (uint8_t *)c, *b = cc_xmalloc(len);
    /* Sections: "ab" at 40 (name 42, length 44, bytes 52), "cd" at 55. */
    struct { size_t at; uint8_t v; int want; const char *what; } cases[] = {
        {8, 2, CC_ERR_FORMAT, "version 2"},
        {12, 3, CC_ERR_CORRUPT, "count 3"},
        {12, 1, CC_ERR_CORRUPT, "count 1: bytes left over"},
        {40, 0, CC_ERR_CORRUPT, "empty name"},
        {57, 'a', CC_ERR_CORRUPT, "duplicate name"},
        {43, 0, CC_ERR_CORRUPT, "NUL in a name"},
        {44, 200, CC_ERR_CORRUPT, "section past the end"},
        {51, 0x80, CC_ERR_CORRUPT, "absurd section length"},
        {23, 0x40, CC_ERR_CORRUPT, "absurd total length"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(b, full, len);
        b[cases[k].at] = cases[k].v;
        if (cases[k].at == 57) b[58] = 'b';
        s_reseal(b, len);
        s_write_file(s_path("crafted"), b, len);
        cr_assert_eq(s_read_code(s_path("crafted")), cases[k].want, "%s", cases[k].what);
    }
    memcpy(b, full, len);
    s_reseal(b, len);
    s_write_file(s_path("crafted"), b, len);
    cr_assert_eq(s_read_code(s_path("crafted")), 0);
    free(b), free(c);
}

typedef struct {
    int calls;
    char path[512];
    int code;
} s_skips_t;

static void s_on_skip(void *ctx, const char *path, const cc_err_t *why) {
    s_skips_t *k = ctx;
    k->calls++;
    snprintf(k->path, sizeof k->path, "%s", path);
    k->code = why->code;
}

static void s_save(const char *dir, uint64_t round, int keep) {
    snapshot_t *s = s_small(round);
    cc_err_t err = {0};
    cr_assert_eq(snapshot_dir_save(dir, round, s, keep, &err), 0, "%s", err.msg);
    snapshot_destroy(&s);
}

static char *s_ckpt(const char *dir, uint64_t round) {
    static char p[2][512];
    static int k;
    k = (k + 1) % 2;
    snprintf(p[k], sizeof p[k], "%s/ckpt-%08llu.snap", dir, (unsigned long long)round);
    return p[k];
}

/* Loads dir and checks the round; returns the number of skip calls. */
static int s_load_expect(const char *dir, uint64_t want, s_skips_t *k) {
    snapshot_t *s = NULL;
    uint64_t round = 0;
    cc_err_t err = {0};
    memset(k, 0, sizeof *k);
    int rc = snapshot_dir_load(dir, &s, &round, s_on_skip, k, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(round, want);
    size_t n;
    const float *w = snapshot_get(s, "params", &n);
    cr_assert_eq(n, 3 * sizeof(float));
    cr_assert_eq(w[2], (float)want);
    snapshot_destroy(&s);
    return k->calls;
}

Test(snapshot, dir_keeps_newest_n) {
    const char *dir = s_path("state/ckpt"); /* the parent exists; DIR itself is created */
    cr_assert_eq(mkdir(s_path("state"), 0755), 0);
    for (uint64_t r = 1; r <= 6; r++) s_save(dir, r, 3);
    for (uint64_t r = 1; r <= 6; r++) cr_assert_eq(s_exists(s_ckpt(dir, r)), r >= 4, "round %llu", (unsigned long long)r);
    s_skips_t k;
    cr_assert_eq(s_load_expect(dir, 6, &k), 0);
    /* Checkpoints of later rounds (a bad one a load skipped) are never pruned, nor the
     * file just written. */
    s_save(dir, 3, 1);
    cr_assert(s_exists(s_ckpt(dir, 3)) && s_exists(s_ckpt(dir, 6)));
    cc_err_t err = {0};
    snapshot_t *s = s_small(7);
    cr_assert_eq(snapshot_dir_save(dir, 7, s, 0, &err), CC_ERR_ARG);
    snapshot_destroy(&s);
}

static void s_damage(const char *path, int truncate) {
    char *b;
    size_t len;
    s_file(path, &b, &len);
    if (truncate) len -= 5;
    else b[len / 2] ^= 0x20;
    s_write_file(path, b, len);
    free(b);
}

Test(snapshot, bad_newest_falls_back) {
    const char *dir = s_path("ckpt");
    for (uint64_t r = 1; r <= 3; r++) s_save(dir, r, 5);
    s_skips_t k;
    s_damage(s_ckpt(dir, 3), 1);
    cr_assert_eq(s_load_expect(dir, 2, &k), 1);
    cr_assert_str_eq(k.path, s_ckpt(dir, 3));
    cr_assert_eq(k.code, CC_ERR_TRUNCATED);
    s_damage(s_ckpt(dir, 2), 0);
    cr_assert_eq(s_load_expect(dir, 1, &k), 2);
    cr_assert_str_eq(k.path, s_ckpt(dir, 2));
    cr_assert_eq(k.code, CC_ERR_CORRUPT);

    s_damage(s_ckpt(dir, 1), 0);
    snapshot_t *s = NULL;
    uint64_t round = 99;
    cc_err_t err = {0};
    memset(&k, 0, sizeof k);
    cr_assert_eq(snapshot_dir_load(dir, &s, &round, s_on_skip, &k, &err), CC_ERR_CORRUPT);
    cr_assert_null(s);
    cr_assert_eq(k.calls, 3);
    cr_assert_eq(snapshot_dir_load(dir, &s, &round, NULL, NULL, &err), CC_ERR_CORRUPT);
}

Test(snapshot, empty_or_missing_dir_is_fresh_start) {
    snapshot_t *s = NULL;
    uint64_t round = 0;
    cc_err_t err = {0};
    cr_assert_eq(mkdir(s_path("empty"), 0755), 0);
    cr_assert_eq(snapshot_dir_load(s_path("empty"), &s, &round, NULL, NULL, &err), 1);
    cr_assert_eq(snapshot_dir_load(s_path("absent"), &s, &round, NULL, NULL, &err), 1);
    cr_assert_null(s);
}

Test(snapshot, crash_at_each_fsync_keeps_previous) {
    const char *dir = s_path("ckpt");
    s_save(dir, 1, 1);
    for (int at = 1; at <= 2; at++) {
        fileio_fault_fail_sync_after = at;
        snapshot_t *s = s_small(2);
        cc_err_t err = {0};
        cr_assert_eq(snapshot_dir_save(dir, 2, s, 1, &err), CC_ERR_IO, "fsync %d", at);
        snapshot_destroy(&s);
        cr_assert_not(s_exists(s_ckpt(dir, 2)));
        s_skips_t k;
        cr_assert_eq(s_load_expect(dir, 1, &k), 0, "fsync %d", at);
        DIR *d = opendir(dir);
        struct dirent *e;
        int files = 0;
        while ((e = readdir(d))) files += e->d_name[0] != '.';
        closedir(d);
        cr_assert_eq(files, 1, "no temp file left after fsync %d fails", at);
    }
    cr_assert_eq(fileio_fault_fail_sync_after, 0);
    s_save(dir, 2, 1);
    s_skips_t k;
    cr_assert_eq(s_load_expect(dir, 2, &k), 0);
    cr_assert_not(s_exists(s_ckpt(dir, 1)));
}

Test(snapshot, leftovers_and_foreign_names_are_ignored) {
    const char *dir = s_path("ckpt");
    s_save(dir, 4, 3);
    char p[512];
    const char *foreign[] = {"ckpt-5.snap", "notes.txt", "ckpt-00000009.snap.bak",
                             "ckpt-0000000x.snap", "ckpt-00000010.snap~"};
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, foreign[i]);
        s_write_file(p, "junk", 4);
    }
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/ckpt-00000005.snap.tmp.12345", dir);
    s_write_file(tmp, "half a checkpoint", 17);
    s_skips_t k;
    cr_assert_eq(s_load_expect(dir, 4, &k), 0);
    cr_assert_not(s_exists(tmp), "the temp file of a crashed write is removed");
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, foreign[i]);
        cr_assert(s_exists(p), "%s left alone", foreign[i]);
    }
}
