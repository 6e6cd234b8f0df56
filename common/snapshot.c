/* snapshot.c — named-section state files and the checkpoint directory (contracts in
 * snapshot.h).
 *
 * File layout, version 1 (integers little-endian; T = total file length):
 *   0     8   magic "CCSNAP01"
 *   8     4   u32 version (1)
 *   12    4   u32 section count
 *   16    8   u64 T
 *   24    16  BLAKE2b-128 of bytes [0, 24)  -- the header hash
 *   40    ..  per section: u16 name length (1..255), name, u64 length, bytes
 *   T-32  32  BLAKE2b-256 of bytes [0, T-32)  -- the file hash
 *
 * Why a header hash and T: once the header verifies, T is trusted, so a file shorter
 * than T was cut off (TRUNCATED) while a damaged byte anywhere fails one of the two
 * hashes (CORRUPT) -- a flipped length can never pose as a truncation. A file shorter
 * than the header is TRUNCATED if what it has is a prefix of the magic.
 *
 * Reader order: magic -> header length -> header hash -> version -> T bounded ->
 * file length against T -> sections streamed, each length checked against the bytes
 * left before anything is allocated (so every allocation is bounded by the real file
 * size), each section read straight into its own 64-byte-aligned buffer (a float
 * section is usable in place, and no whole-file copy is held) -> file hash. */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blake2b.h"
#include "fileio.h"
#include "le.h"

#define S_VERSION 1u
#define S_HDR 40
#define S_HDR_HASH 16
#define S_SUM 32
#define S_SEC_MIN 11                         /* u16 + 1-byte name + u64 */
#define S_MAX_SECTIONS 4096u
#define S_MAX_BYTES ((uint64_t)1 << 36)      /* 64 GiB */

static const uint8_t s_magic[8] = {'C', 'C', 'S', 'N', 'A', 'P', '0', '1'};

typedef struct {
    char *name;               /* owned, NUL-terminated */
    uint8_t *data;            /* (len) owned, 64-byte aligned */
    size_t len;
} s_section_t;

struct snapshot {
    s_section_t *secs;        /* (n) */
    size_t n, cap;
};

/* ---- sections ---- */

static uint8_t *s_alloc(size_t len) {
    void *p = NULL;
    if (posix_memalign(&p, 64, len ? len : 1) != 0) {
        fprintf(stderr, "concord: out of memory allocating %zu bytes\n", len);
        abort();
    }
    return p;
}

snapshot_t *snapshot_new(void) { return cc_xcalloc(1, sizeof(snapshot_t)); }

void snapshot_destroy(snapshot_t **s) {
    if (!s || !*s) return;
    for (size_t i = 0; i < (*s)->n; i++) {
        free((*s)->secs[i].name);
        free((*s)->secs[i].data);
    }
    free((*s)->secs);
    free(*s);
    *s = NULL;
}

static s_section_t *s_find(const snapshot_t *s, const char *name, size_t name_len) {
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->secs[i].name) == name_len && memcmp(s->secs[i].name, name, name_len) == 0)
            return &s->secs[i];
    return NULL;
}

static s_section_t *s_add(snapshot_t *s, const char *name, size_t name_len) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->secs = cc_xrealloc(s->secs, s->cap * sizeof *s->secs);
    }
    s_section_t *sec = &s->secs[s->n++];
    memset(sec, 0, sizeof *sec);
    sec->name = cc_xmalloc(name_len + 1);
    memcpy(sec->name, name, name_len);
    sec->name[name_len] = '\0';
    return sec;
}

void snapshot_put(snapshot_t *s, const char *name, const void *data, size_t len) {
    size_t name_len = strlen(name);
    /* Section names are program constants, not input: a bad one is a bug. */
    if (name_len < 1 || name_len > 255) abort();
    s_section_t *sec = s_find(s, name, name_len);
    if (!sec) sec = s_add(s, name, name_len);
    uint8_t *copy = s_alloc(len); /* before freeing: data may be the old bytes */
    if (len) memcpy(copy, data, len);
    free(sec->data);
    sec->data = copy, sec->len = len;
}

const void *snapshot_get(const snapshot_t *s, const char *name, size_t *len) {
    const s_section_t *sec = s_find(s, name, strlen(name));
    if (len) *len = sec ? sec->len : 0;
    return sec ? sec->data : NULL;
}

/* ---- writing ---- */

typedef struct {
    FILE *fp;
    cc_blake2b_t h;
} s_writer_t;

/* Write errors are sticky in fp and reported by fileio_atomic_commit (ferror). */
static void s_emit(s_writer_t *w, const void *p, size_t n) {
    if (n == 0) return;
    cc_blake2b_update(&w->h, p, n);
    fwrite(p, 1, n, w->fp);
}

static void s_header(uint8_t h[S_HDR], uint32_t count, uint64_t total) {
    memcpy(h, s_magic, 8);
    le_put_u32(h + 8, S_VERSION);
    le_put_u32(h + 12, count);
    le_put_u64(h + 16, total);
    cc_blake2b(h + 24, S_HDR_HASH, h, 24, NULL, 0);
}

int snapshot_write(const snapshot_t *s, const char *path, cc_err_t *err) {
    if (s->n > S_MAX_SECTIONS)
        return cc_err_set(err, CC_ERR_ARG, "%s: more than %u sections", path, S_MAX_SECTIONS);
    uint64_t total = S_HDR + S_SUM;
    for (size_t i = 0; i < s->n; i++) total += 2 + strlen(s->secs[i].name) + 8 + s->secs[i].len;
    uint8_t h[S_HDR], sum[S_SUM], b[8];
    s_header(h, (uint32_t)s->n, total);
    fileio_atomic_t f;
    int rc = fileio_atomic_open(&f, path, err);
    if (rc) return rc;
    s_writer_t w = {.fp = f.fp};
    cc_blake2b_init(&w.h, S_SUM, NULL, 0);
    s_emit(&w, h, sizeof h);
    for (size_t i = 0; i < s->n; i++) {
        size_t nl = strlen(s->secs[i].name);
        le_put_u16(b, (uint16_t)nl);
        s_emit(&w, b, 2);
        s_emit(&w, s->secs[i].name, nl);
        le_put_u64(b, s->secs[i].len);
        s_emit(&w, b, 8);
        s_emit(&w, s->secs[i].data, s->secs[i].len);
    }
    cc_blake2b_final(&w.h, sum);
    fwrite(sum, 1, sizeof sum, f.fp);
    return fileio_atomic_commit(&f, err); /* FILEIO-1..3 */
}

/* ---- reading ---- */

/* Checks the first min(size, 40) bytes; on success *count and *total are trusted. */
static int s_check_header(const char *path, const uint8_t *h, uint64_t size, uint32_t *count,
                          uint64_t *total, cc_err_t *err) {
    size_t n = size < S_HDR ? (size_t)size : S_HDR;
    if (memcmp(h, s_magic, n < 8 ? n : 8) != 0)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: not a snapshot (bad magic)", path);
    if (n < S_HDR)
        return cc_err_set(err, CC_ERR_TRUNCATED, "%s: %zu bytes, shorter than the header", path, n);
    uint8_t d[S_HDR_HASH];
    cc_blake2b(d, sizeof d, h, 24, NULL, 0);
    if (memcmp(d, h + 24, sizeof d) != 0)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: header checksum mismatch", path);
    if (le_get_u32(h + 8) != S_VERSION)
        return cc_err_set(err, CC_ERR_FORMAT, "%s: snapshot version %" PRIu32 " is not supported",
                          path, le_get_u32(h + 8));
    *count = le_get_u32(h + 12), *total = le_get_u64(h + 16);
    if (*total < S_HDR + S_SUM || *total > S_MAX_BYTES || *total > SIZE_MAX ||
        *count > S_MAX_SECTIONS || *count > (*total - S_HDR - S_SUM) / S_SEC_MIN)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: absurd length %" PRIu64 " or section count %"
                          PRIu32, path, *total, *count);
    if (size < *total)
        return cc_err_set(err, CC_ERR_TRUNCATED, "%s: %" PRIu64 " of %" PRIu64 " bytes: cut off",
                          path, size, *total);
    if (size > *total)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: %" PRIu64 " bytes after the end", path,
                          size - *total);
    return 0;
}

typedef struct {
    FILE *fp;
    cc_blake2b_t h;
    uint64_t left;            /* section bytes not yet read */
} s_reader_t;

/* Takes n bytes of the section table: CORRUPT if the table overruns its verified
 * length, TRUNCATED if the file shrank under us. */
static int s_take(s_reader_t *r, void *p, uint64_t n) {
    if (n > r->left) return CC_ERR_CORRUPT;
    if (n && fread(p, 1, (size_t)n, r->fp) != n) return CC_ERR_TRUNCATED;
    cc_blake2b_update(&r->h, p, (size_t)n);
    r->left -= n;
    return 0;
}

/* Streams the sections into s, then checks the file hash. */
static int s_read_sections(snapshot_t *s, s_reader_t *r, uint32_t count) {
    uint8_t b[8], name[256], sum[S_SUM], want[S_SUM];
    int rc;
    for (uint32_t i = 0; i < count; i++) {
        if ((rc = s_take(r, b, 2))) return rc;
        size_t nl = le_get_u16(b);
        if (nl < 1 || nl > 255) return CC_ERR_CORRUPT;
        if ((rc = s_take(r, name, nl))) return rc;
        if (memchr(name, '\0', nl) || s_find(s, (const char *)name, nl)) return CC_ERR_CORRUPT;
        if ((rc = s_take(r, b, 8))) return rc;
        uint64_t len = le_get_u64(b);
        if (len > r->left) return CC_ERR_CORRUPT; /* checked before allocating */
        s_section_t *sec = s_add(s, (const char *)name, nl);
        sec->data = s_alloc((size_t)len), sec->len = (size_t)len;
        if ((rc = s_take(r, sec->data, len))) return rc;
    }
    if (r->left != 0) return CC_ERR_CORRUPT;
    cc_blake2b_final(&r->h, sum);
    if (fread(want, 1, sizeof want, r->fp) != sizeof want) return CC_ERR_TRUNCATED;
    return memcmp(sum, want, sizeof sum) == 0 ? 0 : CC_ERR_CORRUPT;
}

int snapshot_read(const char *path, snapshot_t **out, cc_err_t *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    snapshot_t *s = snapshot_new();
    s_reader_t r = {.fp = fp};
    uint8_t h[S_HDR];
    uint32_t count = 0;
    uint64_t total = 0;
    struct stat st;
    int rc;
    if (fstat(fileno(fp), &st) != 0) {
        rc = cc_err_set(err, CC_ERR_IO, "%s: stat failed: %s", path, strerror(errno));
        goto fail;
    }
    size_t want = (uint64_t)st.st_size < S_HDR ? (size_t)st.st_size : S_HDR;
    if (fread(h, 1, want, fp) != want) {
        rc = cc_err_set(err, CC_ERR_IO, "%s: read failed", path);
        goto fail;
    }
    if ((rc = s_check_header(path, h, (uint64_t)st.st_size, &count, &total, err))) goto fail;
    cc_blake2b_init(&r.h, S_SUM, NULL, 0);
    cc_blake2b_update(&r.h, h, S_HDR);
    r.left = total - S_HDR - S_SUM;
    if ((rc = s_read_sections(s, &r, count))) {
        if (rc == CC_ERR_TRUNCATED) cc_err_set(err, rc, "%s: cut off while reading", path);
        else cc_err_set(err, rc, "%s: checksum or section table mismatch", path);
        goto fail;
    }
    fclose(fp);
    *out = s;
    return 0;
fail:
    fclose(fp);
    snapshot_destroy(&s);
    return rc;
}

/* ---- the checkpoint directory ---- */

static char *s_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = cc_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *s_ckpt_path(const char *dir, uint64_t round) {
    char name[48];
    snprintf(name, sizeof name, "ckpt-%08" PRIu64 ".snap", round);
    return s_join(dir, name);
}

/* Is name exactly the canonical "ckpt-<round, 8+ digits>.snap"? */
static int s_ckpt_round(const char *name, uint64_t *round) {
    if (strncmp(name, "ckpt-", 5) != 0 || name[5] < '0' || name[5] > '9') return 0;
    char *end;
    errno = 0;
    unsigned long long r = strtoull(name + 5, &end, 10);
    if (errno || strcmp(end, ".snap") != 0) return 0;
    char canon[48];
    snprintf(canon, sizeof canon, "ckpt-%08llu.snap", r);
    if (strcmp(canon, name) != 0) return 0;
    *round = r;
    return 1;
}

static int s_cmp_desc(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Lists the checkpoint rounds in dir, newest first (*rounds owned: free()); removes the
 * temp files of writes that crashed before their rename (FILEIO-1 left them behind). A
 * missing directory holds no checkpoints. */
static int s_list(const char *dir, uint64_t **rounds, size_t *n, cc_err_t *err) {
    *rounds = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d && errno == ENOENT) return 0;
    if (!d) return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t r;
        if (strncmp(e->d_name, "ckpt-", 5) == 0 && strstr(e->d_name, ".snap.tmp.")) {
            char *p = s_join(dir, e->d_name);
            unlink(p); /* best effort: an ignored leftover either way */
            free(p);
        } else if (s_ckpt_round(e->d_name, &r)) {
            if (*n == cap) *rounds = cc_xrealloc(*rounds, (cap = cap ? 2 * cap : 16) * sizeof **rounds);
            (*rounds)[(*n)++] = r;
        }
    }
    closedir(d);
    if (*n) qsort(*rounds, *n, sizeof **rounds, s_cmp_desc);
    return 0;
}

static int s_mkdir(const char *dir, cc_err_t *err) {
    if (mkdir(dir, 0755) != 0) {
        if (errno == EEXIST) return 0;
        return cc_err_set(err, CC_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    }
    char *parent = s_join(dir, ".."); /* make the new entry durable too (as FILEIO-2) */
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(parent);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return cc_err_set(err, CC_ERR_IO, "%s: fsync of parent failed: %s", dir, strerror(e));
    }
    close(fd);
    return 0;
}

int snapshot_dir_save(const char *dir, uint64_t round, const snapshot_t *s, int keep,
                      cc_err_t *err) {
    if (keep < 1) return cc_err_set(err, CC_ERR_ARG, "%s: keep must be at least 1", dir);
    int rc = s_mkdir(dir, err);
    if (rc) return rc;
    char *path = s_ckpt_path(dir, round);
    rc = snapshot_write(s, path, err); /* FILEIO-1..3: on failure older checkpoints stand */
    free(path);
    if (rc) return rc;
    uint64_t *rounds;
    size_t n, kept = 1; /* the one just written */
    if (s_list(dir, &rounds, &n, NULL) != 0) return 0; /* pruning is best effort */
    for (size_t i = 0; i < n; i++) {
        if (rounds[i] >= round || kept++ < (size_t)keep) continue;
        path = s_ckpt_path(dir, rounds[i]);
        unlink(path); /* a failure leaves an extra file for the next save to prune */
        free(path);
    }
    free(rounds);
    return 0;
}

int snapshot_dir_load(const char *dir, snapshot_t **out, uint64_t *round, snapshot_skip_fn on_skip,
                      void *ctx, cc_err_t *err) {
    *out = NULL;
    uint64_t *rounds;
    size_t n;
    int rc = s_list(dir, &rounds, &n, err);
    if (rc) return rc;
    if (n == 0) return 1;
    for (size_t i = 0; i < n; i++) {
        char *path = s_ckpt_path(dir, rounds[i]);
        cc_err_t why = {0};
        rc = snapshot_read(path, out, &why);
        if (rc == 0) *round = rounds[i];
        else if (on_skip) on_skip(ctx, path, &why);
        free(path);
        if (rc == 0) break;
    }
    free(rounds);
    if (*out) return 0;
    return cc_err_set(err, CC_ERR_CORRUPT, "%s: none of the %zu checkpoints verifies", dir, n);
}
