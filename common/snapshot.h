/* snapshot.h — named-section state files and the checkpoint directory of DESIGN §7.
 *
 * A snapshot is a list of named byte sections ("meta" JSON, "params" floats, ...) in one
 * file: magic "CCSNAP01", u32 version, u32 section count, u64 total file length, a
 * 16-byte BLAKE2b-128 of those 24 header bytes, then per section u16 name length, name,
 * u64 length, bytes; then a 32-byte BLAKE2b-256 of everything before it (layout in
 * snapshot.c). Written atomically (FILEIO-1..3). A file shorter than its verified header
 * says is TRUNCATED; a checksum or structure mismatch is CORRUPT (the header hash keeps
 * a damaged length from posing as a truncation); another version is CC_ERR_FORMAT.
 *
 * The checkpoint directory keeps DIR/ckpt-<round, 8 digits>.snap, the newest `keep` of
 * them. Loading takes the newest file that verifies; each file skipped is reported through
 * the callback (so the daemon can log "ckpt-00000012.snap: truncated, using round 11"). */
#ifndef CONCORD_SNAPSHOT_H
#define CONCORD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct snapshot snapshot_t;

snapshot_t *snapshot_new(void);
void snapshot_destroy(snapshot_t **s);
/* Adds a section (copies the bytes; data may be NULL when len is 0). Names are 1..255
 * bytes (a program constant: anything else aborts); putting an existing name replaces
 * its bytes. */
void snapshot_put(snapshot_t *s, const char *name, const void *data, size_t len);
/* Section bytes (owned by s, valid until the section is replaced or s destroyed;
 * 64-byte aligned, so a float section can be used in place) or NULL if absent; *len
 * (may be NULL) receives the length. */
const void *snapshot_get(const snapshot_t *s, const char *name, size_t *len);

int snapshot_write(const snapshot_t *s, const char *path, cc_err_t *err) CC_WUR;
int snapshot_read(const char *path, snapshot_t **out, cc_err_t *err) CC_WUR;

/* Writes DIR/ckpt-<round>.snap atomically, then deletes all but the newest `keep`
 * checkpoints (keep >= 1, else CC_ERR_ARG). Creates DIR if needed. On failure the older
 * checkpoints are untouched (FILEIO-3). Pruning is best effort and never removes the
 * file just written, nor checkpoints of later rounds (files a load skipped as bad: their
 * rounds' saves replace them). */
int snapshot_dir_save(const char *dir, uint64_t round, const snapshot_t *s, int keep,
                      cc_err_t *err) CC_WUR;
/* Called for each checkpoint file that fails to load (path, the error). */
typedef void (*snapshot_skip_fn)(void *ctx, const char *path, const cc_err_t *why);
/* Loads the newest checkpoint that verifies. Returns 0 with *out (caller destroys) and
 * *round set, 1 if the directory is absent or holds no checkpoint at all (a fresh start),
 * or an error (every checkpoint is bad: CC_ERR_CORRUPT). Only canonical names
 * ckpt-<8+ digits>.snap count; other files are ignored, and temp files of a write that
 * crashed before its rename (ckpt-*.snap.tmp.*) are removed. on_skip may be NULL. */
int snapshot_dir_load(const char *dir, snapshot_t **out, uint64_t *round, snapshot_skip_fn on_skip,
                      void *ctx, cc_err_t *err) CC_WUR;

/* Fault injection: forwards to fileio_fault_fail_sync_after (see fileio.h). */

#endif
