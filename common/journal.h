/* journal.h — append-only journal of one round's accepted updates (DESIGN §7).
 *
 * File: a 40-byte header (magic "CCJRNL01", u32 version 3, u64 round, a 16-byte random key
 * made with the header, u32 header checksum = the first 4 bytes of BLAKE2b-128 of the 36
 * bytes before it), then records (integers little-endian):
 *   head     u32 magic 0x4a524543 | u32 payload length L | u64 sequence number |
 *            u32 digested parts D | 12-byte head tag = BLAKE2b-128 keyed with the header's
 *            key, of the 20 head bytes before it (first 12 bytes)
 *   payload  L bytes (the parts, concatenated)
 *   trailer  D entries: u32 offset in the payload | u32 length | BLAKE2b-256 of those bytes,
 *            or 32 zero bytes for a zero run
 *   checksum 16-byte BLAKE2b-128 of (the 20 head bytes, the payload bytes outside the
 *            digested parts and zero runs, the trailer)
 * A zero run is a stretch of the payload that is all zeros and is never written: the file
 * has a hole there (no disk, no hashing; appends go at the end of the file, so no older
 * bytes lie under it), and replay checks that it reads as zeros. It lets a caller place a
 * later part at an aligned file offset (journal_next_payload_offset), e.g. an update's
 * floats at a 2 MiB boundary, which a mapping then gets as huge pages (journal_fd_upto).
 * The head tag makes a record's length trustworthy: a valid tag gives its extent, so
 * recovery never looks inside a payload for records; and only the journal's writer knows
 * the key, so no payload (clients' data) can carry a head that passes for a real one.
 * Durability invariants, cited as JOURNAL-n:
 *  JOURNAL-1  journal_append returns only after the record is written and fsync'ed: an
 *             Ack sent after it never refers to a lost update. With journal_defer_sync on
 *             (group commit), appends only write, and the records are durable once
 *             journal_sync has returned 0: Acks wait for it.
 *  JOURNAL-2  A record is valid only if its head is genuine (magic and tag match, length
 *             and digest count within limits), it is complete, its checksum and its part
 *             digests match, its zero runs read as zeros and its sequence number is the
 *             next one. Replay stops at the
 *             first record that is not valid, and then decides in one linear pass, without
 *             reading any payload as records:
 *             - if a genuine head starts after the damage -- after the damaged record's
 *               declared end when its own head is genuine, anywhere after its start when it
 *               is not -- records were appended after the damaged one, so the damage is not
 *               a torn write: CORRUPT (a flipped byte mid-file, in a payload, a trailer or
 *               a head, or a non-zero byte in a zero run), and the file is left untouched;
 *             - else the damage is a torn write -- a crash cut the last append short, or
 *               left garbage in its space: a record that runs past the end of the file, a
 *               complete final record that fails its checksum, a digest or a zero run (a
 *               hole whose later bytes landed while earlier ones did not), a head cut short
 *               or failing its tag with nothing genuine after it -- and the file is reported
 *               TRUNCATED: the tail is cut off (ftruncate + fsync) and appending resumes
 *               there. Nothing that verifies is ever cut off.
 *             A valid record with the wrong sequence number is CORRUPT. A header cut short,
 *             or a bad header with nothing after it, is a torn creation: the journal starts
 *             fresh, reported TRUNCATED.
 *  JOURNAL-3  The journal belongs to one round; a journal of another round is ignored
 *             (started afresh). A journal of another format version (such as version 1,
 *             whose records had no head tag, or version 2, which had no zero runs and
 *             whose coordinator records kept the floats right after the JSON header) is
 *             CC_ERR_FORMAT and is left untouched; the
 *             version is read right after the magic, before the header checksum, whose
 *             place depends on it (so a damaged version field reads as FORMAT too).
 *  JOURNAL-4  After a failed write or fsync, journal_append refuses (CC_ERR_IO) until
 *             journal_reset or a reopen: the tail is unknown, and a failed fsync is never
 *             retried (the kernel may have dropped the dirty pages). Replay on reopen cuts
 *             the partial record off (JOURNAL-2).
 * Records are read back by offset (pread, or mapped: journal_fd_upto), so the coordinator can
 * stream them in client-id order without holding them all in memory. */
#ifndef CONCORD_JOURNAL_H
#define CONCORD_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct journal journal_t;

/* Largest payload of one record (2 GiB); longer length fields are damage, never allocated. */
#define JOURNAL_MAX_RECORD (1u << 31)
/* Most digested parts and zero runs in one record (their trailer entries). */
#define JOURNAL_MAX_DIGESTS 1024
/* A part's digest: BLAKE2b-256, unkeyed (libsodium crypto_generichash with a 32-byte
 * output and no key; wire_digest_bytes computes the same). */
#define JOURNAL_DIGEST_BYTES 32

/* One valid record found by replay. */
typedef struct {
    uint64_t offset;          /* of the payload, for journal_read */
    uint32_t length;          /* payload bytes */
    uint64_t seq;             /* record sequence number (0, 1, ...) */
} journal_record_t;

typedef struct {
    journal_record_t *records;  /* (n), owned: free() */
    size_t n;
    int truncated;              /* a torn tail was cut off on open (JOURNAL-2) */
    uint64_t round;
} journal_replay_t;

/* Opens path for the given round. If the file exists and belongs to that round, its valid
 * records are replayed into *replay (may be NULL), a partial tail is cut off (JOURNAL-2)
 * and appends continue after the last valid record. If it is absent or of another round
 * (JOURNAL-3), a fresh journal is started. A corrupt journal is an error (CC_ERR_CORRUPT)
 * naming the offset of the bad record. */
int journal_open(const char *path, uint64_t round, journal_t **out, journal_replay_t *replay,
                 cc_err_t *err) CC_WUR;
void journal_close(journal_t **j);
/* Appends one record (JOURNAL-1). The payload may be given in parts (gathered, e.g. a
 * header and a float vector) to avoid copying; parts of length 0 may be NULL. A part that
 * is NULL with a non-zero length is a zero run (that many zero bytes, left as a hole in
 * the file, not hashed; a trailer entry, counted in JOURNAL_MAX_DIGESTS). On success
 * *rec (may be NULL) describes it. A payload over JOURNAL_MAX_RECORD is CC_ERR_ARG; a
 * failed write or fsync is CC_ERR_IO and leaves the journal refusing appends (JOURNAL-4). */
int journal_append(journal_t *j, const void *const *parts, const size_t *part_lens,
                   size_t n_parts, journal_record_t *rec, cc_err_t *err) CC_WUR;
/* journal_append, with an optional digest per part: part_digests (may be NULL: no digests)
 * holds n_parts pointers, each NULL or the JOURNAL_DIGEST_BYTES-byte BLAKE2b-256 of exactly
 * that part's bytes, computed by the caller (e.g. the digest a wire message already carried
 * and had verified). The journal TRUSTS it and never hashes a digested part's bytes on
 * append: the record's checksum covers the stored digest instead, and the record keeps the
 * digests (its trailer) so that replay hashes each digested part once and compares. A
 * digest that does not match its bytes -- a wrong digest from the caller, or damage on disk
 * -- makes the record damaged on replay, exactly like a checksum mismatch (JOURNAL-2: a
 * torn tail if it is the last record, else CORRUPT); the append itself cannot notice it,
 * so pass only a digest verified against these very bytes. More than JOURNAL_MAX_DIGESTS
 * digested parts and zero runs is CC_ERR_ARG, and so is a digest for a zero run or a digest
 * of 32 zero bytes (the zero-run mark). Otherwise as journal_append. */
int journal_append_digested(journal_t *j, const void *const *parts, const size_t *part_lens,
                            const uint8_t *const *part_digests, size_t n_parts,
                            journal_record_t *rec, cc_err_t *err) CC_WUR;
/* Group commit (JOURNAL-1): with on, appends write without fdatasync and journal_sync
 * makes everything appended so far durable at once (one fdatasync for a burst of updates).
 * A failed sync leaves the journal FAILED (JOURNAL-4), like a failed append. */
void journal_defer_sync(journal_t *j, int on);
int journal_sync(journal_t *j, cc_err_t *err) CC_WUR;
/* The same group commit with the fdatasync on another thread, so the caller goes on
 * verifying and appending meanwhile (JOURNAL-1 still holds: Acks wait for its end):
 *   journal_sync_begin  (owner's thread) takes every record appended so far; sync->fd is
 *                       -1 when nothing is pending, else a descriptor of its own
 *   journal_sync_run    (any thread) fdatasync + close; returns 0 or the errno
 *   journal_sync_end    (owner's thread) records the outcome: a failure leaves the journal
 *                       FAILED (JOURNAL-4); a sync begun before a reset is about records
 *                       that are gone and changes nothing.
 * Those records are durable once run returned 0. */
typedef struct {
    int fd;
    uint64_t generation;
} journal_sync_t;
int journal_sync_begin(journal_t *j, journal_sync_t *sync, cc_err_t *err) CC_WUR;
int journal_sync_run(journal_sync_t *sync);
int journal_sync_end(journal_t *j, const journal_sync_t *sync, int sync_errno, cc_err_t *err) CC_WUR;
/* Reads len bytes of a record's payload starting at byte `from` within it into buf.
 * from + len beyond the record is CC_ERR_ARG; a file shorter than the record, TRUNCATED. */
int journal_read(journal_t *j, const journal_record_t *rec, size_t from, void *buf, size_t len,
                 cc_err_t *err) CC_WUR;
/* The file offset the payload of the next append will start at: a caller aligns a part
 * of it by a zero run before it. */
uint64_t journal_next_payload_offset(const journal_t *j);
/* The journal's file descriptor, for a caller that maps records' bytes itself (wsum.c and
 * its helper process, sumproc.h), once the file is checked to hold its first `end` bytes
 * (else TRUNCATED: touching a mapped page past the end of a file is SIGBUS). Read-only
 * use; valid until journal_close or journal_reset. A record's bytes from `from` start at
 * file offset rec->offset + from: at a 2 MiB multiple the kernel maps the page cache's
 * large folios whole. */
int journal_fd_upto(journal_t *j, uint64_t end, int *fd, cc_err_t *err) CC_WUR;
/* Starts over for a new round: truncates the file and writes a fresh header. Also leaves
 * the failed state of JOURNAL-4. A reset to the journal's own round is fsync'ed at once; a
 * reset to another round becomes durable with the next journal_sync or synced append:
 * until then a crash may leave the previous round's journal, which a reopen for the new
 * round ignores (JOURNAL-3) — so the caller must have made that round's outcome durable
 * elsewhere first (the coordinator: its checkpoint). Saves an fsync per round. */
int journal_reset(journal_t *j, uint64_t round, cc_err_t *err) CC_WUR;
void journal_replay_free(journal_replay_t *r);

/* Fault injection for tests: when > 0, the Nth subsequent write in journal_append or
 * journal_append_digested fails with ENOSPC after writing half the record (1 = the next
 * one). */
extern int journal_fault_fail_write_after;
/* Tests: the n-th journal_sync_run reports EIO (0: off). */
extern int journal_fault_fail_sync_after;

#endif
