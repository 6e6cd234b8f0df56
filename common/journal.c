/* journal.c — append-only journal of one round's accepted updates (contracts and the
 * durability invariants JOURNAL-1..4 in journal.h).
 *
 * Layout (integers little-endian):
 *   header  0  8  magic "CCJRNL01"
 *           8  4  u32 version (1)
 *          12  8  u64 round
 *          20  8  reserved, zero
 *          28  4  first 4 bytes of BLAKE2b-128 of bytes [0, 28)
 *   record  0  4  u32 magic 0x4a524543
 *           4  4  u32 payload length L (<= JOURNAL_MAX_RECORD)
 *           8  8  u64 sequence number
 *          16  L  payload
 *        16+L 16  BLAKE2b-128 of (length, sequence, payload)
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
#include <libgen.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define S_VERSION 1u
#define S_HDR 32                 /* file header bytes */
#define S_HDR_SUM 28             /* offset of the header checksum */
#define S_REC_HEAD 16            /* magic, length, sequence */
#define S_REC_SUM 16             /* BLAKE2b-128 */
#define S_REC_MAGIC 0x4a524543u
#define S_CHUNK (64 * 1024)      /* bytes read at a time while hashing or scanning */
#define S_IOV_BATCH 64           /* iovecs per pwritev call */

static const uint8_t s_magic[8] = {'C', 'C', 'J', 'R', 'N', 'L', '0', '1'};

int journal_fault_fail_write_after = 0;

struct journal {
    int fd;
    char *path;
    uint64_t round;
    uint64_t end;       /* offset after the last valid record: where the next one goes */
    uint64_t next_seq;
    int failed;         /* FAILED state (see the diagram above) */
};

/* ---- little-endian encoding ---- */

static void s_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void s_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t s_get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t s_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- low-level I/O ---- */

static int s_fault_fires(void) {
    if (journal_fault_fail_write_after <= 0) return 0;
    return --journal_fault_fail_write_after == 0;
}

static int s_fail(journal_t *j, int e, const char *what, cc_err_t *err) {
    j->failed = 1;
    return cc_err_set(err, CC_ERR_IO, "%s: %s failed: %s", j->path, what, strerror(e));
}

/* Reads exactly n bytes at off. Returns 0, 1 if the file ended first, or -1 (errno). */
static int s_pread_all(int fd, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) return 1;
        p += got, n -= (size_t)got, off += (uint64_t)got;
    }
    return 0;
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

static int s_fsync_dir(const char *path) {
    char *copy = cc_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* ---- header and records ---- */

static void s_header_sum(uint8_t out[4], const uint8_t *h) {
    uint8_t d[16];
    crypto_generichash(d, sizeof d, h, S_HDR_SUM, NULL, 0);
    memcpy(out, d, 4);
}

/* Truncates the file to an empty journal of `round` and makes that durable: the file,
 * and the directory entry of a file just created. Leaves the FAILED state. */
static int s_start_fresh(journal_t *j, uint64_t round, cc_err_t *err) {
    uint8_t h[S_HDR] = {0};
    memcpy(h, s_magic, 8);
    s_put_u32(h + 8, S_VERSION);
    s_put_u64(h + 12, round);
    s_header_sum(h + S_HDR_SUM, h);
    struct iovec v = {h, sizeof h};
    if (ftruncate(j->fd, 0) != 0) return s_fail(j, errno, "truncate", err);
    if (s_pwritev_all(j->fd, &v, 1, 0, sizeof h) != 0) return s_fail(j, errno, "write", err);
    if (fsync(j->fd) != 0) return s_fail(j, errno, "fsync", err);
    if (s_fsync_dir(j->path) != 0) return s_fail(j, errno, "fsync of directory", err);
    j->round = round, j->end = S_HDR, j->next_seq = 0, j->failed = 0;
    return 0;
}

static void s_record_sum_init(crypto_generichash_state *st, uint32_t len, uint64_t seq) {
    uint8_t b[12];
    s_put_u32(b, len);
    s_put_u64(b + 4, seq);
    crypto_generichash_init(st, NULL, 0, S_REC_SUM);
    crypto_generichash_update(st, b, sizeof b);
}

/* Is there a complete record with a matching checksum at p? 1 yes (its length and
 * sequence in *len, *seq), 0 no, -1 on a read error (errno). Never allocates from the
 * length field: the payload is hashed through a fixed buffer. */
static int s_check_record(int fd, uint64_t p, uint64_t size, uint32_t *len, uint64_t *seq) {
    uint8_t h[S_REC_HEAD], sum[S_REC_SUM], want[S_REC_SUM], buf[S_CHUNK];
    if (size - p < S_REC_HEAD + S_REC_SUM) return 0;
    int rc = s_pread_all(fd, h, sizeof h, p);
    if (rc) return rc < 0 ? -1 : 0;
    *len = s_get_u32(h + 4), *seq = s_get_u64(h + 8);
    if (s_get_u32(h) != S_REC_MAGIC || *len > JOURNAL_MAX_RECORD) return 0;
    if (size - p - S_REC_HEAD - S_REC_SUM < *len) return 0;
    crypto_generichash_state st;
    s_record_sum_init(&st, *len, *seq);
    for (uint64_t done = 0; done < *len;) {
        size_t k = *len - done < S_CHUNK ? (size_t)(*len - done) : S_CHUNK;
        if ((rc = s_pread_all(fd, buf, k, p + S_REC_HEAD + done))) return rc < 0 ? -1 : 0;
        crypto_generichash_update(&st, buf, k);
        done += k;
    }
    crypto_generichash_final(&st, sum, sizeof sum);
    if ((rc = s_pread_all(fd, want, sizeof want, p + S_REC_HEAD + *len))) return rc < 0 ? -1 : 0;
    return memcmp(sum, want, sizeof sum) == 0;
}

/* Does a valid record start anywhere in (p, size)? 1, 0, or -1 on a read error. Decides
 * between a torn tail and damage in the middle (JOURNAL-2). */
static int s_valid_after(int fd, uint64_t p, uint64_t size) {
    uint8_t buf[S_CHUNK];
    for (uint64_t base = p + 1; base + S_REC_HEAD + S_REC_SUM <= size; base += S_CHUNK - 3) {
        size_t k = size - base < S_CHUNK ? (size_t)(size - base) : S_CHUNK;
        if (s_pread_all(fd, buf, k, base) != 0) return -1;
        for (size_t q = 0; q + 4 <= k; q++) {
            if (s_get_u32(buf + q) != S_REC_MAGIC) continue;
            uint32_t len;
            uint64_t seq;
            int rc = s_check_record(fd, base + q, size, &len, &seq);
            if (rc != 0) return rc;
        }
        if (base + k >= size) break;
    }
    return 0;
}

static void s_push(journal_replay_t *r, uint64_t offset, uint32_t len, uint64_t seq) {
    if ((r->n & (r->n - 1)) == 0) /* grow at powers of two */
        r->records = cc_xrealloc(r->records, (r->n ? 2 * r->n : 1) * sizeof *r->records);
    r->records[r->n++] = (journal_record_t){offset, len, seq};
}

/* Collects the valid records from the header on; handles the damaged tail (JOURNAL-2). */
static int s_replay(journal_t *j, uint64_t size, journal_replay_t *r, cc_err_t *err) {
    uint64_t p = S_HDR, seq = 0;
    for (; p < size; seq++) {
        uint32_t len;
        uint64_t rseq;
        int ok = s_check_record(j->fd, p, size, &len, &rseq);
        if (ok < 0) return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
        if (!ok) break;
        if (rseq != seq)
            return cc_err_set(err, CC_ERR_CORRUPT, "%s: record at offset %" PRIu64
                              " has sequence %" PRIu64 ", expected %" PRIu64, j->path, p, rseq, seq);
        s_push(r, p + S_REC_HEAD, len, seq);
        p += S_REC_HEAD + (uint64_t)len + S_REC_SUM;
    }
    if (p < size) {
        int later = s_valid_after(j->fd, p, size); /* JOURNAL-2: torn tail or damage? */
        if (later < 0) return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
        if (later)
            return cc_err_set(err, CC_ERR_CORRUPT, "%s: damaged record at offset %" PRIu64
                              " is followed by valid records", j->path, p);
        if (ftruncate(j->fd, (off_t)p) != 0) return s_fail(j, errno, "truncate", err);
        if (fsync(j->fd) != 0) return s_fail(j, errno, "fsync", err);
        r->truncated = 1;
    }
    j->end = p, j->next_seq = seq;
    return 0;
}

/* Reads the header and replays, or starts fresh (JOURNAL-3, and a torn header). */
static int s_load(journal_t *j, uint64_t round, uint64_t size, journal_replay_t *r, cc_err_t *err) {
    if (size < S_HDR) { /* cut off at creation, before any record could be acked (JOURNAL-1) */
        r->truncated = size > 0;
        return s_start_fresh(j, round, err);
    }
    uint8_t h[S_HDR], sum[4];
    if (s_pread_all(j->fd, h, sizeof h, 0) != 0)
        return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
    s_header_sum(sum, h);
    if (memcmp(h, s_magic, 8) != 0 || memcmp(sum, h + S_HDR_SUM, 4) != 0) {
        if (size > S_HDR)
            return cc_err_set(err, CC_ERR_CORRUPT, "%s: bad journal header at offset 0", j->path);
        r->truncated = 1; /* JOURNAL-2: a torn header with nothing after it */
        return s_start_fresh(j, round, err);
    }
    if (s_get_u32(h + 8) != S_VERSION)
        return cc_err_set(err, CC_ERR_FORMAT, "%s: journal version %" PRIu32 " is not supported",
                          j->path, s_get_u32(h + 8));
    if (s_get_u64(h + 12) != round) return s_start_fresh(j, round, err); /* JOURNAL-3 */
    j->round = round;
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

int journal_append(journal_t *j, const void *const *parts, const size_t *part_lens,
                   size_t n_parts, journal_record_t *rec, cc_err_t *err) {
    if (j->failed)
        return cc_err_set(err, CC_ERR_IO, "%s: an earlier write failed; reopen or reset the journal",
                          j->path);
    uint64_t len = 0;
    for (size_t i = 0; i < n_parts; i++) {
        len += part_lens[i];
        if (part_lens[i] > JOURNAL_MAX_RECORD || len > JOURNAL_MAX_RECORD)
            return cc_err_set(err, CC_ERR_ARG, "%s: record larger than %u bytes", j->path,
                              (unsigned)JOURNAL_MAX_RECORD);
    }
    uint8_t head[S_REC_HEAD], sum[S_REC_SUM];
    s_put_u32(head, S_REC_MAGIC);
    s_put_u32(head + 4, (uint32_t)len);
    s_put_u64(head + 8, j->next_seq);
    crypto_generichash_state st;
    s_record_sum_init(&st, (uint32_t)len, j->next_seq);
    struct iovec *iov = cc_xmalloc((n_parts + 2) * sizeof *iov);
    iov[0] = (struct iovec){head, sizeof head};
    for (size_t i = 0; i < n_parts; i++) {
        crypto_generichash_update(&st, parts[i], part_lens[i]);
        iov[i + 1] = (struct iovec){(void *)parts[i], part_lens[i]};
    }
    crypto_generichash_final(&st, sum, sizeof sum);
    iov[n_parts + 1] = (struct iovec){sum, sizeof sum};
    size_t total = S_REC_HEAD + (size_t)len + S_REC_SUM;
    int fault = s_fault_fires(); /* a simulated crash: half the record reaches the file */
    int rc = s_pwritev_all(j->fd, iov, n_parts + 2, j->end, fault ? total / 2 : total);
    free(iov);
    if (rc == 0 && fault) errno = ENOSPC, rc = -1;
    if (rc != 0) return s_fail(j, errno, "write", err);
    if (fdatasync(j->fd) != 0) return s_fail(j, errno, "fdatasync", err); /* JOURNAL-1 */
    if (rec) *rec = (journal_record_t){j->end + S_REC_HEAD, (uint32_t)len, j->next_seq};
    j->end += total, j->next_seq++;
    return 0;
}

int journal_read(journal_t *j, const journal_record_t *rec, size_t from, void *buf, size_t len,
                 cc_err_t *err) {
    if (from > rec->length || len > rec->length - from)
        return cc_err_set(err, CC_ERR_ARG, "%s: read of [%zu, +%zu) beyond a record of %" PRIu32
                          " bytes", j->path, from, len, rec->length);
    int rc = s_pread_all(j->fd, buf, len, rec->offset + from);
    if (rc < 0) return cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", j->path, strerror(errno));
    if (rc > 0)
        return cc_err_set(err, CC_ERR_TRUNCATED, "%s: record at offset %" PRIu64 " is cut off",
                          j->path, rec->offset);
    return 0;
}

int journal_reset(journal_t *j, uint64_t round, cc_err_t *err) {
    return s_start_fresh(j, round, err);
}

void journal_replay_free(journal_replay_t *r) {
    if (!r) return;
    free(r->records);
    r->records = NULL;
    r->n = 0;
}
