/* journal.c — append-only journal of one round's accepted updates (contracts, the format
 * and the durability invariants JOURNAL-1..4 in journal.h).
 *
 * Layout (integers little-endian):
 *   header  0  8  magic "CCJRNL01"
 *           8  4  u32 version (3)
 *          12  8  u64 round
 *          20 16  key of the record-head tags (random, made by s_start_fresh)
 *          36  4  first 4 bytes of BLAKE2b-128 of bytes [0, 36)
 *   record  0  4  u32 magic 0x4a524543
 *           4  4  u32 payload length L (<= JOURNAL_MAX_RECORD)
 *           8  8  u64 sequence number
 *          16  4  u32 digested parts D (<= JOURNAL_MAX_DIGESTS)
 *          20 12  head tag: BLAKE2b-128 keyed with the header's key, of bytes [0, 20)
 *          32  L  payload
 *        32+L 40D trailer, per digested part or zero run: u32 offset in the payload,
 *                 u32 length, BLAKE2b-256 of those payload bytes, or 32 zero bytes for a
 *                 zero run (never written: a hole; checked to read as zeros on replay);
 *                 ascending, not overlapping
 *    32+L+40D 16  BLAKE2b-128 of (bytes [0, 20), the payload outside the digested parts,
 *                 the trailer)
 *
 * Recovery (JOURNAL-2) reads every byte of the file at most twice: once while checking the
 * records, once while looking for a genuine head after the first damaged one, which costs
 * a keyed hash of 20 bytes at each place where the record magic appears.
 *
 * States of a journal_t (`failed` is the only state variable; s_fail is its only setter,
 * s_start_fresh its only clearer):
 *
 *   journal_open ──> OPEN ──append ok──> OPEN
 *                     │  ^
 *   write or fsync    │  └── journal_reset (s_start_fresh) ok ──┐
 *   fails (s_fail)    v                                          │
 *                   FAILED ──────────────────────────────────────┘
 *
 *   OPEN    appends go at `end`, the byte after the last valid record.
 *   FAILED  a write or fsync failed: the file's tail is unknown (a partial record, or
 *           pages the kernel dropped after a failed fsync, which must not be retried), so
 *           appends are refused until journal_reset, or close + journal_open, whose replay
 *           cuts the tail off (JOURNAL-2). */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "blake2b.h"
#include "fileio.h"
#include "le.h"

#define S_VERSION 3u
#define S_HDR 40                 /* file header bytes */
#define S_HDR_VERSION_END 12     /* magic and version: read first (JOURNAL-3) */
#define S_HDR_KEY 20             /* offset of the head-tag key */
#define S_KEY 16
#define S_HDR_SUM 36             /* offset of the header checksum */
#define S_REC_HEAD 32            /* magic, length, sequence, digest count, tag */
#define S_REC_TAGGED 20          /* the head bytes before the tag */
#define S_REC_TAG 12
#define S_REC_SUM 16             /* BLAKE2b-128 */
#define S_ENTRY (8 + JOURNAL_DIGEST_BYTES) /* trailer entry: offset, length, digest */
#define S_REC_MAGIC 0x4a524543u
#define S_CHUNK (64 * 1024)      /* bytes read at a time while hashing or scanning */
#define S_IOV_BATCH 64           /* iovecs per pwritev call */

static const uint8_t s_magic[8] = {'C', 'C', 'J', 'R', 'N', 'L', '0', '1'};

int journal_fault_fail_write_after = 0;

struct journal {
    int fd;
    char *path;
    uint64_t round;
    uint8_t key[S_KEY]; /* of the head tags: from the header */
    uint64_t end;       /* offset after the last valid record: where the next one goes */
    uint64_t next_seq;
    int failed;         /* FAILED state (see the diagram above) */
    int defer_sync;     /* appends leave the fdatasync to journal_sync (group commit) */
    int dirty;          /* records appended since the last fdatasync */
    uint64_t generation; /* counts resets: a sync begun before one is about records gone */
};

/* ---- low-level I/O ---- */

static int s_fault_fires(void) {
    if (journal_fault_fail_write_after <= 0) return 0;
    return --journal_fault_fail_write_after == 0;
}

static int s_fail(journal_t *j, int e, const char *what, cc_err_t *err) {
    j->failed = 1;
    return cc_err_set(err, CC_ERR_IO, "%s: %s failed: %s", j->path, what, strerror(e));
}

/* Writes the first `limit` bytes of iov[0..n) at off, however the kernel splits them. */
static int s_pwritev_all(int fd, const struct iovec *iov, size_t n, uint64_t off, size_t limit) {
    size_t i = 0, skip = 0; /* iov[i] has its first `skip` bytes written */
    while (limit > 0) {
        struct iovec w[S_IOV_BATCH];
        int k = 0;
        size_t want = 0;
        for (size_t t = i; t < n && k < S_IOV_BATCH && want < limit; t++) {
            size_t s0 = t == i ? skip : 0, l = iov[t].iov_len - s0;
            if (l > limit - want) l = limit - want;
            if (l == 0) continue;
            w[k].iov_base = (uint8_t *)iov[t].iov_base + s0, w[k].iov_len = l;
            k++, want += l;
        }
        ssize_t got = pwritev(fd, w, k, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = EIO;
            return -1;
        }
        off += (uint64_t)got, limit -= (size_t)got;
        for (size_t g = (size_t)got; g > 0;) {
            size_t left = iov[i].iov_len - skip;
            if (g < left) skip += g, g = 0;
            else g -= left, i++, skip = 0;
        }
    }
    return 0;
}

/* Writes the first `limit` bytes of a record laid out by iov[0..n) at off. An iovec with a
 * NULL base and a non-zero length is a zero run: skipped, so the file has a hole there
 * (it reads as zeros, costs no disk, and the append starts at the end of the file, so no
 * older bytes lie there). The bytes before a hole go first, then those after it. */
static int s_write_record(int fd, const struct iovec *iov, size_t n, uint64_t off, size_t limit) {
    for (size_t i = 0; i < n && limit > 0;) {
        size_t e = i, want = 0;
        int hole = !iov[i].iov_base && iov[i].iov_len;
        if (hole) want = iov[e++].iov_len;
        else
            while (e < n && (iov[e].iov_base || !iov[e].iov_len)) want += iov[e++].iov_len;
        if (want > limit) want = limit;
        if (!hole && s_pwritev_all(fd, iov + i, e - i, off, want) != 0) return -1;
        off += want, limit -= want, i = e;
    }
    return 0;
}

/* ---- header and records ---- */

static void s_header_sum(uint8_t out[4], const uint8_t *h) {
    uint8_t d[16];
    cc_blake2b(d, sizeof d, h, S_HDR_SUM, NULL, 0);
    memcpy(out, d, 4);
}

/* Truncates the file to an empty journal of `round` with a new head-tag key. Leaves the
 * FAILED state. sync: S_SYNC_DIR also fsyncs the directory (a file journal_open may just
 * have created), S_SYNC_FILE the file only, S_SYNC_LATER leaves it to the next sync. */
enum { S_SYNC_LATER, S_SYNC_FILE, S_SYNC_DIR };
static int s_start_fresh(journal_t *j, uint64_t round, int sync, cc_err_t *err) {
    uint8_t h[S_HDR] = {0};
    memcpy(h, s_magic, 8);
    le_put_u32(h + 8, S_VERSION);
    le_put_u64(h + 12, round);
    randombytes_buf(j->key, S_KEY);
    memcpy(h + S_HDR_KEY, j->key, S_KEY);
    s_header_sum(h + S_HDR_SUM, h);
    struct iovec v = {h, sizeof h};
    if (ftruncate(j->fd, 0) != 0) return s_fail(j, errno, "truncate", err);
    if (s_pwritev_all(j->fd, &v, 1, 0, sizeof h) != 0) return s_fail(j, errno, "write", err);
    if (sync != S_SYNC_LATER && fsync(j->fd) != 0) return s_fail(j, errno, "fsync", err);
    if (sync == S_SYNC_DIR && fileio_fsync_dir(j->path) != 0)
        return s_fail(j, errno, "fsync of directory", err);
    j->round = round, j->end = S_HDR, j->next_seq = 0, j->failed = 0, j->dirty = sync == S_SYNC_LATER;
    j->generation++;
    return 0;
}

/* The tag of a record head: keyed, so only this journal's writer can make one. */
static void s_head_tag(const journal_t *j, uint8_t tag[S_REC_TAG], const uint8_t *head) {
    uint8_t d[16];
    cc_blake2b(d, sizeof d, head, S_REC_TAGGED, j->key, S_KEY);
    memcpy(tag, d, S_REC_TAG);
}

static void s_make_head(const journal_t *j, uint8_t head[S_REC_HEAD], uint32_t len,
                        uint64_t seq, uint32_t n_digests) {
    le_put_u32(head, S_REC_MAGIC);
    le_put_u32(head + 4, len);
    le_put_u64(head + 8, seq);
    le_put_u32(head + 16, n_digests);
    s_head_tag(j, head + S_REC_TAGGED, head);
}

/* A record head as read back. */
typedef struct {
    uint8_t raw[S_REC_HEAD];
    uint32_t len, n_digests;
    uint64_t seq;
    uint64_t end;  /* offset after the whole record; may lie beyond the end of the file */
} s_head_t;

/* Is head[0, S_REC_HEAD) a genuine record head (magic, tag, limits)? */
static int s_head_genuine(const journal_t *j, const uint8_t *head) {
    uint8_t tag[S_REC_TAG];
    if (le_get_u32(head) != S_REC_MAGIC) return 0;
    s_head_tag(j, tag, head);
    return sodium_memcmp(tag, head + S_REC_TAGGED, S_REC_TAG) == 0 &&
           le_get_u32(head + 4) <= JOURNAL_MAX_RECORD && le_get_u32(head + 16) <= JOURNAL_MAX_DIGESTS;
}

/* Reads the head at p: 1 genuine (fields in *h), 0 cut short or not genuine, -1 on a read
 * error (errno). */
static int s_read_head(const journal_t *j, uint64_t p, uint64_t size, s_head_t *h) {
    if (size - p < S_REC_HEAD) return 0;
    int rc = fileio_pread_all(j->fd, h->raw, S_REC_HEAD, p);
    if (rc) return rc < 0 ? -1 : 0;
    if (!s_head_genuine(j, h->raw)) return 0;
    h->len = le_get_u32(h->raw + 4), h->seq = le_get_u64(h->raw + 8);
    h->n_digests = le_get_u32(h->raw + 16);
    h->end = p + S_REC_HEAD + h->len + (uint64_t)h->n_digests * S_ENTRY + S_REC_SUM;
    return 1;
}

/* Feeds n file bytes at off into st through buf (S_CHUNK). 0, 1 if the file ended first, -1. */
static int s_hash_range(int fd, cc_blake2b_t *st, uint64_t off, uint64_t n,
                        uint8_t *buf) {
    for (uint64_t done = 0; done < n;) {
        size_t k = n - done < S_CHUNK ? (size_t)(n - done) : S_CHUNK;
        int rc = fileio_pread_all(fd, buf, k, off + done);
        if (rc) return rc;
        cc_blake2b_update(st, buf, k);
        done += k;
    }
    return 0;
}

/* Are the trailer's entries ascending, apart and inside a payload of len bytes? */
static int s_trailer_sane(const uint8_t *t, uint32_t n, uint32_t len) {
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++, t += S_ENTRY) {
        uint64_t off = le_get_u32(t), plen = le_get_u32(t + 4);
        if (off < at || off > len || plen > len - off) return 0;
        at = off + plen;
    }
    return 1;
}

static const uint8_t s_zero_run_digest[JOURNAL_DIGEST_BYTES]; /* a trailer entry's mark of a zero run */

static int s_is_zero_run(const uint8_t *entry) {
    return memcmp(entry + 8, s_zero_run_digest, JOURNAL_DIGEST_BYTES) == 0;
}

/* Do the n file bytes at off read as zeros? 0 yes (*ok = 1) or no (*ok = 0), 1 if the file
 * ended first, -1 on a read error (errno). */
static int s_zeros_range(int fd, uint64_t off, uint64_t n, uint8_t *buf, int *ok) {
    *ok = 0;
    for (uint64_t done = 0; done < n;) {
        size_t k = n - done < S_CHUNK ? (size_t)(n - done) : S_CHUNK;
        int rc = fileio_pread_all(fd, buf, k, off + done);
        if (rc) return rc;
        if (buf[0] != 0 || memcmp(buf, buf + 1, k - 1) != 0) return 0;
        done += k;
    }
    *ok = 1;
    return 0;
}

/* One trailer entry's bytes at payload + off: a digested part against its digest, a zero
 * run against zeros. 0 (*ok set), 1 if the file ended first, -1 (errno). */
static int s_check_entry(int fd, uint64_t payload, const uint8_t *e, uint8_t *buf, int *ok) {
    uint64_t off = le_get_u32(e), len = le_get_u32(e + 4);
    if (s_is_zero_run(e)) return s_zeros_range(fd, payload + off, len, buf, ok);
    uint8_t d[JOURNAL_DIGEST_BYTES];
    cc_blake2b_t part;
    cc_blake2b_init(&part, JOURNAL_DIGEST_BYTES, NULL, 0);
    int rc = s_hash_range(fd, &part, payload + off, len, buf);
    if (rc) return rc;
    cc_blake2b_final(&part, d);
    *ok = memcmp(d, e + 8, sizeof d) == 0;
    return 0;
}

/* Hashes the payload of the record at p (head h, trailer t with sane entries): each
 * digested part against its digest, each zero run against zeros, the rest into the record
 * checksum, which *ok says matches t's stored one. Every payload byte is read once. 0, 1 if
 * the file ended first, -1 on a read error (errno). */
static int s_check_hashes(int fd, uint64_t p, const s_head_t *h, const uint8_t *t, uint8_t *buf,
                          int *ok) {
    size_t tlen = (size_t)h->n_digests * S_ENTRY;
    uint64_t payload = p + S_REC_HEAD, at = 0;
    uint8_t sum[S_REC_SUM];
    cc_blake2b_t st;
    int rc, entry_ok;
    *ok = 0;
    cc_blake2b_init(&st, S_REC_SUM, NULL, 0);
    cc_blake2b_update(&st, h->raw, S_REC_TAGGED);
    for (uint32_t i = 0; i < h->n_digests; i++) {
        const uint8_t *e = t + (size_t)i * S_ENTRY;
        uint64_t off = le_get_u32(e), len = le_get_u32(e + 4);
        if ((rc = s_hash_range(fd, &st, payload + at, off - at, buf))) return rc;
        if ((rc = s_check_entry(fd, payload, e, buf, &entry_ok)) || !entry_ok) return rc;
        at = off + len;
    }
    if ((rc = s_hash_range(fd, &st, payload + at, h->len - at, buf))) return rc;
    cc_blake2b_update(&st, t, tlen);
    cc_blake2b_final(&st, sum);
    *ok = memcmp(sum, t + tlen, sizeof sum) == 0;
    return 0;
}

/* Checks the body of a complete record whose head h at p is genuine (trailer, digests,
 * checksum). 1 valid, 0 damaged, -1 on a read error (errno). */
static int s_check_body(const journal_t *j, uint64_t p, const s_head_t *h) {
    size_t tlen = (size_t)h->n_digests * S_ENTRY; /* <= 40 KiB: n_digests is bounded */
    uint8_t *t = cc_xmalloc(tlen + S_REC_SUM), buf[S_CHUNK];
    int ok = 0, rc = fileio_pread_all(j->fd, t, tlen + S_REC_SUM, p + S_REC_HEAD + h->len);
    if (rc == 0 && s_trailer_sane(t, h->n_digests, h->len))
        rc = s_check_hashes(j->fd, p, h, t, buf, &ok);
    free(t);
    return rc < 0 ? -1 : ok; /* a short read is damage */
}

enum { S_NO_HEAD, S_DAMAGED, S_VALID };

/* What is at p: S_VALID (a whole record that verifies), S_DAMAGED (a genuine head whose
 * record is cut short or fails a check: its extent in h->end), S_NO_HEAD (no genuine head:
 * cut short or damaged), or -1 on a read error (errno). Never allocates from a field that
 * is not tag-protected, and reads a payload only under a genuine head. */
static int s_check_record(const journal_t *j, uint64_t p, uint64_t size, s_head_t *h) {
    int rc = s_read_head(j, p, size, h);
    if (rc <= 0) return rc < 0 ? -1 : S_NO_HEAD;
    if (h->end > size) return S_DAMAGED;
    rc = s_check_body(j, p, h);
    return rc < 0 ? -1 : rc ? S_VALID : S_DAMAGED;
}

/* The offset of the first genuine record head in [from, size), or size if there is none;
 * UINT64_MAX on a read error (errno). One pass: a keyed hash of 20 bytes wherever the
 * record magic appears. */
static uint64_t s_next_genuine_head(const journal_t *j, uint64_t from, uint64_t size) {
    uint8_t buf[S_CHUNK];
    for (uint64_t base = from; base < size && size - base >= S_REC_HEAD;) {
        size_t k = size - base < S_CHUNK ? (size_t)(size - base) : S_CHUNK, q = 0;
        if (fileio_pread_all(j->fd, buf, k, base) != 0) return UINT64_MAX;
        for (; q + S_REC_HEAD <= k; q++)
            if (buf[q] == (S_REC_MAGIC & 0xff) && s_head_genuine(j, buf + q)) return base + q;
        base += q; /* the next chunk starts at the first place not fully checked */
    }
    return size;
}

static void s_push(journal_replay_t *r, uint64_t offset, uint32_t len, uint64_t seq) {
    if ((r->n & (r->n - 1)) == 0) /* grow at powers of two */
        r->records = cc_xrealloc(r->records, (r->n ? 2 * r->n : 1) * sizeof *r->records);
    r->records[r->n++] = (journal_record_t){offset, len, seq};
}

/* After the first record at p that is not valid: CORRUPT if a genuine head follows the
 * damage, else a torn tail, cut off (JOURNAL-2). The damage ends at the record's declared
 * end when its head is genuine (its payload is never looked into), else right after p. */
static int s_recover_tail(journal_t *j, uint64_t p, uint64_t size, int what, const s_head_t *h,
                          journal_replay_t *r, cc_err_t *err) {
    uint64_t from = what == S_DAMAGED ? h->end : p + 1;
    uint64_t later = from < size ? s_next_genuine_head(j, from, size) : size;
    if (later == UINT64_MAX)
        return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
    if (later < size)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: damaged record at offset %" PRIu64
                          " is followed by a valid record head at offset %" PRIu64, j->path, p,
                          later);
    if (ftruncate(j->fd, (off_t)p) != 0) return s_fail(j, errno, "truncate", err);
    if (fsync(j->fd) != 0) return s_fail(j, errno, "fsync", err);
    r->truncated = 1;
    return 0;
}

/* Collects the valid records from the header on; handles the damaged tail (JOURNAL-2). */
static int s_replay(journal_t *j, uint64_t size, journal_replay_t *r, cc_err_t *err) {
    uint64_t p = S_HDR, seq = 0;
    s_head_t h;
    int what = S_VALID;
    for (; p < size; seq++) {
        what = s_check_record(j, p, size, &h);
        if (what < 0) return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
        if (what != S_VALID) break;
        if (h.seq != seq)
            return cc_err_set(err, CC_ERR_CORRUPT, "%s: record at offset %" PRIu64
                              " has sequence %" PRIu64 ", expected %" PRIu64, j->path, p, h.seq, seq);
        s_push(r, p + S_REC_HEAD, h.len, seq);
        p = h.end;
    }
    if (p < size) {
        int rc = s_recover_tail(j, p, size, what, &h, r, err);
        if (rc) return rc;
    }
    j->end = p, j->next_seq = seq;
    return 0;
}

/* Reads the header and replays, or starts fresh (JOURNAL-3, and a torn header). */
static int s_load(journal_t *j, uint64_t round, uint64_t size, journal_replay_t *r, cc_err_t *err) {
    uint8_t h[S_HDR], sum[4];
    size_t have = size < S_HDR ? (size_t)size : S_HDR;
    if (fileio_pread_all(j->fd, h, have, 0) != 0)
        return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
    int magic = have >= 8 && memcmp(h, s_magic, 8) == 0;
    if (magic && have >= S_HDR_VERSION_END && le_get_u32(h + 8) != S_VERSION) /* JOURNAL-3 */
        return cc_err_set(err, CC_ERR_FORMAT, "%s: journal version %" PRIu32 " is not supported "
                          "(this build reads version %u)", j->path, le_get_u32(h + 8), S_VERSION);
    if (size < S_HDR) { /* cut off at creation, before any record could be acked (JOURNAL-1) */
        r->truncated = size > 0;
        return s_start_fresh(j, round, S_SYNC_DIR, err);
    }
    s_header_sum(sum, h);
    if (!magic || memcmp(sum, h + S_HDR_SUM, 4) != 0) {
        if (size > S_HDR)
            return cc_err_set(err, CC_ERR_CORRUPT, "%s: bad journal header at offset 0", j->path);
        r->truncated = 1; /* JOURNAL-2: a torn header with nothing after it */
        return s_start_fresh(j, round, S_SYNC_DIR, err);
    }
    if (le_get_u64(h + 12) != round) return s_start_fresh(j, round, S_SYNC_DIR, err); /* JOURNAL-3 */
    j->round = round;
    memcpy(j->key, h + S_HDR_KEY, S_KEY);
    return s_replay(j, size, r, err);
}

/* ---- public API ---- */

int journal_open(const char *path, uint64_t round, journal_t **out, journal_replay_t *replay,
                 cc_err_t *err) {
    *out = NULL;
    if (replay) memset(replay, 0, sizeof *replay);
    if (sodium_init() < 0) return cc_err_set(err, CC_ERR_IO, "libsodium failed to initialise");
    journal_replay_t r = {.round = round};
    journal_t *j = cc_xcalloc(1, sizeof *j);
    j->path = cc_xstrdup(path);
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    int rc;
    if (j->fd < 0 || fstat(j->fd, &st) != 0) {
        rc = cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if ((rc = s_load(j, round, (uint64_t)st.st_size, &r, err))) goto fail;
    if (replay) *replay = r;
    else journal_replay_free(&r);
    *out = j;
    return 0;
fail:
    journal_replay_free(&r);
    journal_close(&j);
    return rc;
}

void journal_close(journal_t **j) {
    if (!j || !*j) return;
    if ((*j)->fd >= 0) close((*j)->fd);
    free((*j)->path);
    free(*j);
    *j = NULL;
}

/* Appends one record; part_digests (may be NULL) as in journal_append_digested. */
static int s_append(journal_t *j, const void *const *parts, const size_t *part_lens,
                    const uint8_t *const *part_digests, size_t n_parts, journal_record_t *rec,
                    cc_err_t *err) {
    if (j->failed)
        return cc_err_set(err, CC_ERR_IO, "%s: an earlier write failed; reopen or reset the journal",
                          j->path);
    uint64_t len = 0;
    size_t n_digests = 0;
    for (size_t i = 0; i < n_parts; i++) {
        len += part_lens[i];
        if (part_lens[i] > JOURNAL_MAX_RECORD || len > JOURNAL_MAX_RECORD)
            return cc_err_set(err, CC_ERR_ARG, "%s: record larger than %u bytes", j->path,
                              (unsigned)JOURNAL_MAX_RECORD);
        int zero_run = !parts[i] && part_lens[i], digested = part_digests && part_digests[i];
        if (digested && (zero_run || memcmp(part_digests[i], s_zero_run_digest,
                                            JOURNAL_DIGEST_BYTES) == 0))
            return cc_err_set(err, CC_ERR_ARG, "%s: a zero run has no digest, and a digest of 32 "
                              "zero bytes marks a zero run", j->path);
        n_digests += zero_run || digested;
    }
    if (n_digests > JOURNAL_MAX_DIGESTS)
        return cc_err_set(err, CC_ERR_ARG, "%s: %zu digested parts and zero runs, at most %d",
                          j->path, n_digests, JOURNAL_MAX_DIGESTS);
    uint8_t head[S_REC_HEAD], sum[S_REC_SUM];
    s_make_head(j, head, (uint32_t)len, j->next_seq, (uint32_t)n_digests);
    uint8_t *trailer = cc_xmalloc(n_digests * S_ENTRY + 1), *e = trailer;
    cc_blake2b_t st;
    cc_blake2b_init(&st, S_REC_SUM, NULL, 0);
    cc_blake2b_update(&st, head, S_REC_TAGGED);
    struct iovec *iov = cc_xmalloc((n_parts + 3) * sizeof *iov);
    iov[0] = (struct iovec){head, sizeof head};
    uint32_t at = 0;
    for (size_t i = 0; i < n_parts; i++) {
        int zero_run = !parts[i] && part_lens[i];
        if (zero_run || (part_digests && part_digests[i])) { /* trusted: not hashed here */
            le_put_u32(e, at);
            le_put_u32(e + 4, (uint32_t)part_lens[i]);
            memcpy(e + 8, zero_run ? s_zero_run_digest : part_digests[i], JOURNAL_DIGEST_BYTES);
            e += S_ENTRY;
        } else {
            cc_blake2b_update(&st, parts[i], part_lens[i]);
        }
        iov[i + 1] = (struct iovec){(void *)parts[i], part_lens[i]};
        at += (uint32_t)part_lens[i];
    }
    cc_blake2b_update(&st, trailer, n_digests * S_ENTRY);
    cc_blake2b_final(&st, sum);
    iov[n_parts + 1] = (struct iovec){trailer, n_digests * S_ENTRY};
    iov[n_parts + 2] = (struct iovec){sum, sizeof sum};
    size_t total = S_REC_HEAD + (size_t)len + n_digests * S_ENTRY + S_REC_SUM;
    int fault = s_fault_fires(); /* a simulated crash: half the record reaches the file */
    int rc = s_write_record(j->fd, iov, n_parts + 3, j->end, fault ? total / 2 : total);
    free(iov);
    free(trailer);
    if (rc == 0 && fault) errno = ENOSPC, rc = -1;
    if (rc != 0) return s_fail(j, errno, "write", err);
    if (j->defer_sync) j->dirty = 1;
    else if (fdatasync(j->fd) != 0) return s_fail(j, errno, "fdatasync", err); /* JOURNAL-1 */
    if (rec) *rec = (journal_record_t){j->end + S_REC_HEAD, (uint32_t)len, j->next_seq};
    j->end += total, j->next_seq++;
    return 0;
}

void journal_defer_sync(journal_t *j, int on) { j->defer_sync = on != 0; }

int journal_sync(journal_t *j, cc_err_t *err) {
    journal_sync_t sync;
    int rc = journal_sync_begin(j, &sync, err);
    return rc ? rc : journal_sync_end(j, &sync, journal_sync_run(&sync), err);
}

int journal_sync_begin(journal_t *j, journal_sync_t *sync, cc_err_t *err) {
    *sync = (journal_sync_t){-1, j->generation};
    if (j->failed)
        return cc_err_set(err, CC_ERR_IO, "%s: an earlier write failed; reopen or reset the journal",
                          j->path);
    if (!j->dirty) return 0;
    /* A descriptor of its own: the sync may outlive a reset or even journal_close. */
    if ((sync->fd = fcntl(j->fd, F_DUPFD_CLOEXEC, 0)) < 0) return s_fail(j, errno, "dup", err);
    j->dirty = 0; /* records appended from now on wait for the next sync */
    return 0;
}

int journal_fault_fail_sync_after = 0;

int journal_sync_run(journal_sync_t *sync) {
    if (sync->fd < 0) return 0;
    int e = fdatasync(sync->fd) == 0 ? 0 : errno;
    if (journal_fault_fail_sync_after > 0 && --journal_fault_fail_sync_after == 0) e = EIO;
    close(sync->fd);
    sync->fd = -1;
    return e;
}

int journal_sync_end(journal_t *j, const journal_sync_t *sync, int sync_errno, cc_err_t *err) {
    if (sync->generation != j->generation) return 0; /* its records were reset away */
    if (sync_errno) return s_fail(j, sync_errno, "fdatasync", err); /* JOURNAL-4: never retried */
    return 0;
}

int journal_append(journal_t *j, const void *const *parts, const size_t *part_lens,
                   size_t n_parts, journal_record_t *rec, cc_err_t *err) {
    return s_append(j, parts, part_lens, NULL, n_parts, rec, err);
}

int journal_append_digested(journal_t *j, const void *const *parts, const size_t *part_lens,
                            const uint8_t *const *part_digests, size_t n_parts,
                            journal_record_t *rec, cc_err_t *err) {
    return s_append(j, parts, part_lens, part_digests, n_parts, rec, err);
}

int journal_read(journal_t *j, const journal_record_t *rec, size_t from, void *buf, size_t len,
                 cc_err_t *err) {
    if (from > rec->length || len > rec->length - from)
        return cc_err_set(err, CC_ERR_ARG, "%s: read of [%zu, +%zu) beyond a record of %" PRIu32
                          " bytes", j->path, from, len, rec->length);
    int rc = fileio_pread_all(j->fd, buf, len, rec->offset + from);
    if (rc < 0) return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
    if (rc > 0)
        return cc_err_set(err, CC_ERR_TRUNCATED, "%s: record at offset %" PRIu64 " is cut off",
                          j->path, rec->offset);
    return 0;
}

uint64_t journal_next_payload_offset(const journal_t *j) { return j->end + S_REC_HEAD; }

int journal_fd_upto(journal_t *j, uint64_t end, int *fd, cc_err_t *err) {
    *fd = -1;
    struct stat st;
    if (fstat(j->fd, &st) != 0)
        return cc_err_set(err, CC_ERR_IO, "%s: stat failed: %s", j->path, strerror(errno));
    if ((uint64_t)st.st_size < end) /* touching a mapped page past the end would be SIGBUS */
        return cc_err_set(err, CC_ERR_TRUNCATED, "%s: %" PRIu64 " bytes, records reach byte %" PRIu64,
                          j->path, (uint64_t)st.st_size, end);
    *fd = j->fd;
    return 0;
}

int journal_reset(journal_t *j, uint64_t round, cc_err_t *err) {
    /* Until the next sync a crash leaves the old file: harmless when it belongs to another
     * round (ignored, JOURNAL-3), but records of this very round must not come back. */
    return s_start_fresh(j, round, round == j->round ? S_SYNC_FILE : S_SYNC_LATER, err);
}

void journal_replay_free(journal_replay_t *r) {
    if (!r) return;
    free(r->records);
    r->records = NULL;
    r->n = 0;
}
