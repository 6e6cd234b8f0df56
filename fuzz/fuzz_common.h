/* fuzz_common.h — helpers shared by the libFuzzer targets (fuzz/fuzz_*.c) and by
 * fuzz/make_corpus.c, which writes their seed inputs.
 *
 * Every parser under test reads a path, so each target hands it the input through a file:
 * a memfd opened again through /proc/self/fd/N (no directory entry, nothing left behind
 * after a crash), or, where the code needs a real directory (the journal fsyncs it), a
 * file in a private temp directory on /dev/shm, removed at exit.
 *
 * Keys: two fixed Ed25519 identities ("coordinator", "hospital-a") derived from constant
 * seeds, so the sealed envelopes and the signed ledger of the seed corpus verify in every
 * run, and the targets reach the code after the signature checks.
 *
 * Input framing: most targets start their input with one "mode" byte that the harness
 * reads (options of the call, and which checksums to repair before the call, so mutations
 * get past the hashes into the code behind them); fuzz_reader_t walks such inputs without
 * ever reading past their end. */
#ifndef CONCORD_FUZZ_COMMON_H
#define CONCORD_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixed identities ---- */

typedef struct {
    const char *id;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
} fuzz_key_t;

enum { FUZZ_KEY_COORDINATOR = 0, FUZZ_KEY_HOSPITAL = 1, FUZZ_N_KEYS = 2 };

/* The fixed identity `which` (FUZZ_KEY_*); aborts if libsodium cannot start. */
static inline const fuzz_key_t *fuzz_key(int which) {
    static fuzz_key_t keys[FUZZ_N_KEYS];
    static int ready;
    if (!ready) {
        if (sodium_init() < 0) abort();
        static const char *ids[FUZZ_N_KEYS] = {"coordinator", "hospital-a"};
        for (int i = 0; i < FUZZ_N_KEYS; i++) {
            uint8_t seed[crypto_sign_SEEDBYTES];
            for (size_t b = 0; b < sizeof seed; b++) seed[b] = (uint8_t)(0xc0 + 17 * i + b);
            keys[i].id = ids[i];
            crypto_sign_seed_keypair(keys[i].pk, keys[i].sk, seed);
        }
        ready = 1;
    }
    return &keys[which];
}

/* ---- files ---- */

/* The private temp directory (created on first use, removed with its files at exit). */
static char s_fuzz_dir[256];
#define FUZZ_MAX_TMP 8
static char s_fuzz_tmp[FUZZ_MAX_TMP][320];
static int s_fuzz_ntmp;

static inline void s_fuzz_cleanup(void) {
    for (int i = 0; i < s_fuzz_ntmp; i++) {
        unlink(s_fuzz_tmp[i]);
        /* and the leftovers of atomic writes: "<path>.tmp.<pid>" */
        char p[400];
        snprintf(p, sizeof p, "%s.tmp.%ld", s_fuzz_tmp[i], (long)getpid());
        unlink(p);
    }
    if (s_fuzz_dir[0]) rmdir(s_fuzz_dir);
}

static inline const char *fuzz_tmpdir(void) {
    if (s_fuzz_dir[0]) return s_fuzz_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(s_fuzz_dir, sizeof s_fuzz_dir, "%s/concord-fuzz-XXXXXX", base);
    if (!mkdtemp(s_fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(s_fuzz_cleanup);
    return s_fuzz_dir;
}

/* A path NAME in the temp directory, registered for removal at exit. Returns a pointer
 * to storage that lives as long as the process. */
static inline const char *fuzz_tmp_path(const char *name) {
    const char *dir = fuzz_tmpdir();
    for (int i = 0; i < s_fuzz_ntmp; i++) {
        const char *slash = strrchr(s_fuzz_tmp[i], '/');
        if (slash && strcmp(slash + 1, name) == 0) return s_fuzz_tmp[i];
    }
    if (s_fuzz_ntmp == FUZZ_MAX_TMP) abort();
    snprintf(s_fuzz_tmp[s_fuzz_ntmp], sizeof s_fuzz_tmp[0], "%s/%s", dir, name);
    return s_fuzz_tmp[s_fuzz_ntmp++];
}

/* Replaces the contents of the file at path with data[0, n). */
static inline void fuzz_write_path(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w, n -= (size_t)w;
    }
    close(fd);
}

/* Puts data[0, n) in memory file `slot` (0..3) and returns a path that opens it
 * ("/proc/self/fd/N"; a temp file where memfd_create is unavailable). The path stays valid
 * for the process; the contents until the next call for the same slot. */
#define FUZZ_SLOTS 4
static inline const char *fuzz_memfile(int slot, const void *data, size_t n) {
    static int fds[FUZZ_SLOTS] = {-2, -2, -2, -2};
    static char paths[FUZZ_SLOTS][64];
    if (slot < 0 || slot >= FUZZ_SLOTS) abort();
    if (fds[slot] == -2) {
        char name[32];
        snprintf(name, sizeof name, "concord-fuzz-%d", slot);
        fds[slot] = memfd_create(name, MFD_CLOEXEC);
        if (fds[slot] >= 0) snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
        else snprintf(paths[slot], sizeof paths[slot], "%s", fuzz_tmp_path(name));
    }
    if (fds[slot] < 0) {
        fuzz_write_path(paths[slot], data, n);
        return paths[slot];
    }
    if (ftruncate(fds[slot], 0) != 0) abort();
    const uint8_t *p = data;
    off_t off = 0;
    while (n > 0) {
        ssize_t w = pwrite(fds[slot], p, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) abort();
        p += w, n -= (size_t)w, off += w;
    }
    return paths[slot];
}

/* ---- reading a framed input ---- */

typedef struct {
    const uint8_t *p;
    size_t left;
} fuzz_reader_t;

static inline uint8_t fuzz_u8(fuzz_reader_t *r) {
    if (!r->left) return 0;
    r->left--;
    return *r->p++;
}

static inline uint32_t fuzz_u16(fuzz_reader_t *r) {
    uint32_t lo = fuzz_u8(r);
    return lo | (uint32_t)fuzz_u8(r) << 8;
}

static inline uint32_t fuzz_u32(fuzz_reader_t *r) {
    uint32_t lo = fuzz_u16(r);
    return lo | fuzz_u16(r) << 16;
}

/* Takes up to n bytes (fewer at the end of the input); *got receives how many. */
static inline const uint8_t *fuzz_take(fuzz_reader_t *r, size_t n, size_t *got) {
    const uint8_t *p = r->p;
    *got = n < r->left ? n : r->left;
    r->p += *got, r->left -= *got;
    return p;
}

/* ---- little-endian helpers for the checksum repairs ---- */

static inline uint32_t fuzz_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t fuzz_le64(const uint8_t *p) {
    return (uint64_t)fuzz_le32(p) | (uint64_t)fuzz_le32(p + 4) << 32;
}

static inline void fuzz_put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void fuzz_put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* With FUZZ_VERBOSE=1 in the environment (e.g. when replaying one input by hand), prints
 * what the call under test returned; silent otherwise. */
static inline void fuzz_report(const char *what, int rc, const char *msg) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") && *getenv("FUZZ_VERBOSE") == '1';
    if (verbose) fprintf(stderr, "%s: rc=%d %s\n", what, rc, rc ? msg : "");
}

/* Known-bug filters: a target may skip inputs that hit a bug already reported (and saved
 * under fuzz/crashes/<target>/), so that fuzzing goes on past it and CI stays green until
 * the fix lands; the fix removes the filter. FUZZ_UNFILTERED=1 in the environment turns
 * every filter off (to replay the reproducers). */
static inline int fuzz_filters_on(void) {
    static int on = -1;
    if (on < 0) on = !(getenv("FUZZ_UNFILTERED") && *getenv("FUZZ_UNFILTERED") == '1');
    return on;
}

/* A writable copy of data[0, n) (one spare byte so n == 0 is a valid allocation). */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t n) {
    uint8_t *b = malloc(n + 1);
    if (!b) abort();
    if (n) memcpy(b, data, n);
    return b;
}

/* Repairs, in a writable copy of a file, the checksums that mode asks for. */
typedef void (*fuzz_repair_fn)(uint8_t *file, size_t len, unsigned mode);

/* The input "u8 mode | file" of a file-format target: the file, repaired as mode asks, is
 * put in memory file 0. Returns the path that opens it, and the mode in *mode. */
static inline const char *fuzz_repaired_file(const uint8_t *data, size_t size, fuzz_repair_fn repair,
                                             unsigned *mode) {
    fuzz_reader_t r = {data, size};
    *mode = fuzz_u8(&r);
    uint8_t *b = fuzz_dup(r.p, r.left);
    repair(b, r.left, *mode);
    const char *path = fuzz_memfile(0, b, r.left);
    free(b);
    return path;
}

#endif
