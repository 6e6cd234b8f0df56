/* fileio.h — atomic file replacement and whole-file reads.
 *
 * Durability invariants (cited as FILEIO-n where relied on):
 *  FILEIO-1  A file written through fileio_atomic_* is either absent, its previous
 *            version, or complete: data goes to "<path>.tmp.<pid>", which is flushed and
 *            fsync'ed before rename(2) over <path>.
 *  FILEIO-2  After commit returns 0 the rename itself is durable: the directory is fsync'ed.
 *  FILEIO-3  On any failure the temp file is removed and <path> is untouched.
 *
 * Fault injection: tests set fileio_fault_* to make the Nth write or fsync fail, so every
 * failure path is exercised without a full disk. */
#ifndef CONCORD_FILEIO_H
#define CONCORD_FILEIO_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

typedef struct {
    FILE *fp;          /* write through this */
    char *path;        /* final path */
    char *tmp_path;    /* temp path in the same directory */
} fileio_atomic_t;

/* Opens a temp file beside path; on success fill *f and return 0. */
int fileio_atomic_open(fileio_atomic_t *f, const char *path, cc_err_t *err) CC_WUR;
/* Flushes, fsyncs, closes, renames over the final path, fsyncs the directory
 * (FILEIO-1, FILEIO-2). Always releases f; on failure removes the temp file (FILEIO-3). */
int fileio_atomic_commit(fileio_atomic_t *f, cc_err_t *err) CC_WUR;
/* Discards the temp file and releases f. */
void fileio_atomic_abort(fileio_atomic_t *f);
/* Writes len bytes of buf to path atomically. */
int fileio_write_atomic(const char *path, const void *buf, size_t len, cc_err_t *err) CC_WUR;
/* Reads the whole file into a new buffer (NUL-terminated for convenience, the NUL not
 * counted in *len); caller frees *buf. Refuses files larger than max_len. */
int fileio_read_all(const char *path, size_t max_len, char **buf, size_t *len,
                    cc_err_t *err) CC_WUR;
/* Reads exactly n bytes at file offset off, however the kernel splits them (EINTR
 * retried). 0, 1 if the file ended first, or -1 with errno set. */
int fileio_pread_all(int fd, void *buf, size_t n, uint64_t off) CC_WUR;
/* fsyncs the directory that holds path: a create or rename is durable only once its
 * directory is synced, not the file alone. 0, or -1 with errno set (by open or fsync). */
int fileio_fsync_dir(const char *path) CC_WUR;

/* Fault injection for tests: when > 0, the Nth subsequent fflush/fsync in a commit
 * fails with ENOSPC (1 = the next one). Reset to 0 after it fires. */
extern int fileio_fault_fail_sync_after;

#endif
