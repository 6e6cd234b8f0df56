/* tmpdir_fixture.h — the scratch directory the file-writing Criterion tests share
 * (test_checkpoint.c, test_dataset.c, test_identity.c, test_journal.c, test_ledger.c,
 * test_snapshot.c): made fresh by each test's .init, removed with everything in it by its
 * .fini, and names joined inside it. Each test keeps its own extra setup (sodium_init, the
 * fault-injection counters it resets) next to the call. Header-only: each test is its own
 * executable. */
#ifndef CONCORD_TMPDIR_FIXTURE_H
#define CONCORD_TMPDIR_FIXTURE_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Creates a fresh directory named prefix + six random characters into dir (caller-owned,
 * size bytes); a failure fails the test. */
static inline void tmpdir_make(char *dir, size_t size, const char *prefix) {
    snprintf(dir, size, "%sXXXXXX", prefix);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
}

/* Removes dir and everything below it (best effort: teardown must not fail a test that
 * passed). Subdirectories, which unlink refuses, are emptied first; a name too long for
 * the buffer is skipped rather than cut to someone else's path. */
static inline void tmpdir_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        if (unlink(p) != 0) tmpdir_remove(p); /* a subdirectory */
    }
    closedir(d);
    rmdir(dir);
}

/* dir/name in one of 8 rotating static buffers, so a few joined paths can be live at once
 * (a call's arguments, say); the 9th call reuses the first buffer. */
static inline char *tmpdir_join(const char *dir, const char *name) {
    static char bufs[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(bufs[k], sizeof bufs[k], "%s/%s", dir, name);
    return bufs[k];
}

#endif
