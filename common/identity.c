/* identity.c — key files, enrolment lists and CURVE key derivation (contracts in
 * identity.h).
 *
 * Invariants
 *  ID-1  A secret key file is never readable by anyone but its owner at any moment: the
 *        temp file gets mode 0600 (fchmod) before its first byte is written, and rename
 *        keeps that mode (FILEIO-1 gives the atomic replace).
 *  ID-2  Secret bytes that pass through this module's buffers (file contents, hex, the
 *        stdio buffer of the writer, derived X25519 secrets) are wiped before the buffers
 *        are released. identity_clear wipes the secret fields of an identity_t.
 *  ID-3  A loaded secret key is self-consistent: the public half stored in libsodium's
 *        64-byte layout equals the one derived from the seed (compared in constant time).
 *
 * Parsing is line by line; every error names "file:line" (or "file" for a missing line). */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "fileio.h"

#define S_KEYFILE_MAX 8192          /* a key file is ~250 bytes */
#define S_ENROLMENT_MAX (16u << 20) /* 16 MiB: ~170k enrolment lines */

static const char s_secret_header[] = "concord-secret-key v1";
static const char s_public_header[] = "concord-public-key v1";

/* ---- small helpers ---- */

static int s_sodium_ready(cc_err_t *err) {
    if (sodium_init() < 0) return cc_err_set(err, CC_ERR_ARG, "identity: sodium_init failed");
    return 0;
}

static int s_is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Trims spaces, tabs and CR on both ends in place. */
static char *s_trim(char *s) {
    while (s_is_space(*s)) s++;
    size_t n = strlen(s);
    while (n && s_is_space(s[n - 1])) s[--n] = '\0';
    return s;
}

/* Splits buf (len bytes, NUL-terminated) into lines in place: returns the next line
 * (without '\n') or NULL at the end; *lineno counts from 1. *has_nul is set when the
 * line contained a NUL byte (binary garbage). */
static char *s_next_line(char **cur, const char *end, size_t *lineno, int *has_nul) {
    if (*cur >= end) return NULL;
    char *line = *cur;
    char *nl = memchr(line, '\n', (size_t)(end - line));
    size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
    *has_nul = memchr(line, '\0', len) != NULL;
    line[len] = '\0';
    *cur = line + len + 1;
    (*lineno)++;
    return line;
}

/* Decodes exactly 2*n hex digits of hex into out. Returns 0, or the 1-based position of
 * the first bad character, or -1 when the length is wrong. */
static int s_hex_decode(uint8_t *out, size_t n, const char *hex) {
    size_t len = strlen(hex);
    for (size_t i = 0; i < len; i++) {
        char c = hex[i];
        int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!ok) return (int)i + 1;
    }
    if (len != 2 * n) return -1;
    size_t bin_len = 0;
    if (sodium_hex2bin(out, n, hex, len, NULL, &bin_len, NULL) != 0 || bin_len != n) return -1;
    return 0;
}

/* X25519 keys of an Ed25519 key pair, as Z85. sk may be NULL (public only). */
static int s_derive_curve(const uint8_t pk[WIRE_PK_BYTES], const uint8_t *sk,
                          char curve_public[41], char curve_secret[41]) {
    uint8_t cpk[32], csk[32];
    int rc = -1;
    if (crypto_sign_ed25519_pk_to_curve25519(cpk, pk) != 0) goto fail;
    if (!zmq_z85_encode(curve_public, cpk, sizeof cpk)) goto fail;
    if (sk) {
        if (crypto_sign_ed25519_sk_to_curve25519(csk, sk) != 0) goto fail;
        if (!zmq_z85_encode(curve_secret, csk, sizeof csk)) goto fail;
    }
    rc = 0;
fail:
    sodium_memzero(csk, sizeof csk); /* ID-2 */
    return rc;
}

void identity_public_hex(char out[65], const uint8_t pk[WIRE_PK_BYTES]) {
    sodium_bin2hex(out, 65, pk, WIRE_PK_BYTES);
}

/* ---- identities ---- */

int identity_generate(identity_t *ident, const char *id, cc_err_t *err) {
    memset(ident, 0, sizeof *ident);
    if (s_sodium_ready(err)) return CC_ERR_ARG;
    if (!wire_id_valid(id))
        return cc_err_set(err, CC_ERR_ARG, "invalid id '%s' (1..%d chars of [A-Za-z0-9._-])",
                          id ? id : "", WIRE_MAX_ID);
    snprintf(ident->id, sizeof ident->id, "%s", id);
    crypto_sign_keypair(ident->pk, ident->sk);
    if (s_derive_curve(ident->pk, ident->sk, ident->curve_public, ident->curve_secret) != 0) {
        identity_clear(ident);
        return cc_err_set(err, CC_ERR_ARG, "identity: CURVE key derivation failed");
    }
    return 0;
}

void identity_clear(identity_t *ident) {
    if (!ident) return;
    sodium_memzero(ident->sk, sizeof ident->sk);
    sodium_memzero(ident->curve_secret, sizeof ident->curve_secret);
}

/* Writes the secret key file through a stdio buffer we own, so it can be wiped (ID-2). */
static int s_write_secret(const identity_t *ident, const char *path, cc_err_t *err) {
    fileio_atomic_t f;
    char iobuf[BUFSIZ];
    char hex[2 * WIRE_SK_BYTES + 1];
    int rc = fileio_atomic_open(&f, path, err);
    if (rc) return rc;
    /* ID-1: the mode is set while the file is still empty. */
    if (fchmod(fileno(f.fp), 0600) != 0) {
        int e = errno;
        fileio_atomic_abort(&f);
        return cc_err_set(err, CC_ERR_IO, "%s: cannot set mode 0600: %s", path, strerror(e));
    }
    setvbuf(f.fp, iobuf, _IOFBF, sizeof iobuf);
    sodium_bin2hex(hex, sizeof hex, ident->sk, WIRE_SK_BYTES);
    int bad = fprintf(f.fp,
                      "%s\n# Concord node secret key: keep it private (mode 0600).\n"
                      "id: %s\nsecret: %s\n",
                      s_secret_header, ident->id, hex) < 0;
    sodium_memzero(hex, sizeof hex);
    if (bad) {
        int e = errno;
        fileio_atomic_abort(&f);
        rc = cc_err_set(err, CC_ERR_IO, "%s: write failed: %s", path, strerror(e));
    } else {
        rc = fileio_atomic_commit(&f, err); /* closes the stream: iobuf is ours again */
    }
    sodium_memzero(iobuf, sizeof iobuf);
    return rc;
}

int identity_save(const identity_t *ident, const char *dir, int force, cc_err_t *err) {
    char key_path[4096], pub_path[4096];
    if (!wire_id_valid(ident->id)) return cc_err_set(err, CC_ERR_ARG, "identity has no valid id");
    int n1 = snprintf(key_path, sizeof key_path, "%s/%s.key", dir, ident->id);
    int n2 = snprintf(pub_path, sizeof pub_path, "%s/%s.pub", dir, ident->id);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof key_path || (size_t)n2 >= sizeof pub_path)
        return cc_err_set(err, CC_ERR_ARG, "%s: directory path too long", dir);
    struct stat st;
    if (!force && lstat(key_path, &st) == 0)
        return cc_err_set(err, CC_ERR_IO, "%s: already exists (use --force to replace it)",
                          key_path);
    int rc = s_write_secret(ident, key_path, err);
    if (rc) return rc;

    char hex[65], text[256];
    identity_public_hex(hex, ident->pk);
    int len = snprintf(text, sizeof text, "%s\nid: %s\npublic: %s\n", s_public_header,
                       ident->id, hex);
    return fileio_write_atomic(pub_path, text, (size_t)len, err);
}

/* Reads a small file into buf (size cap + 1, NUL-terminated). When secret, refuses group
 * or other permission bits, checked on the open descriptor (no check-then-open race). */
static int s_read_small(const char *path, int secret, char *buf, size_t cap, size_t *len,
                        cc_err_t *err) {
    int rc = CC_ERR_IO;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        cc_err_set(err, CC_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = cc_err_set(err, CC_ERR_FORMAT, "%s: not a regular file", path);
        goto fail;
    }
    if (secret && (st.st_mode & 077)) {
        rc = cc_err_set(err, CC_ERR_ARG,
                        "%s: secret key file is accessible by group or others (mode %04o); "
                        "fix with: chmod 600 %s",
                        path, (unsigned)(st.st_mode & 07777), path);
        goto fail;
    }
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0) break;
        n += (size_t)got;
        if (n == cap) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                rc = cc_err_set(err, CC_ERR_FORMAT, "%s: too large for a key file (> %zu bytes)",
                                path, cap);
                goto fail;
            }
            break;
        }
    }
    buf[n] = '\0';
    *len = n;
    rc = 0;
fail:
    close(fd);
    return rc;
}

/* Parses a key file: header line, then "id: X" and "<value_key>: HEX" (value_bytes bytes),
 * each exactly once; '#' comments and blank lines anywhere. */
static int s_parse_key_file(const char *path, char *buf, size_t len, const char *header,
                            const char *value_key, char id[WIRE_MAX_ID + 1], uint8_t *value,
                            size_t value_bytes, cc_err_t *err) {
    char *cur = buf;
    const char *end = buf + len;
    size_t lineno = 0, id_line = 0, value_line = 0;
    int has_nul, seen_header = 0;
    char *line;
    while ((line = s_next_line(&cur, end, &lineno, &has_nul))) {
        if (has_nul) return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: binary data", path, lineno);
        char *t = s_trim(line);
        if (*t == '\0' || *t == '#') continue;
        if (!seen_header) {
            if (strcmp(t, header) != 0) {
                const char *other = strcmp(header, s_secret_header) == 0 ? s_public_header
                                                                        : s_secret_header;
                if (strcmp(t, other) == 0)
                    return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: this is a %s file, not a %s file",
                                      path, lineno, other, header);
                return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: expected header '%s'", path,
                                  lineno, header);
            }
            seen_header = 1;
            continue;
        }
        char *colon = strchr(t, ':');
        if (!colon)
            return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: expected 'key: value'", path, lineno);
        *colon = '\0';
        char *key = s_trim(t), *val = s_trim(colon + 1);
        if (strcmp(key, "id") == 0) {
            if (id_line)
                return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: second 'id' (first at line %zu)",
                                  path, lineno, id_line);
            if (!wire_id_valid(val))
                return cc_err_set(err, CC_ERR_FORMAT,
                                  "%s:%zu: invalid id (1..%d chars of [A-Za-z0-9._-])", path,
                                  lineno, WIRE_MAX_ID);
            snprintf(id, WIRE_MAX_ID + 1, "%s", val);
            id_line = lineno;
        } else if (strcmp(key, value_key) == 0) {
            if (value_line)
                return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: second '%s' (first at line %zu)",
                                  path, lineno, value_key, value_line);
            int bad = s_hex_decode(value, value_bytes, val);
            if (bad > 0)
                return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: bad hex digit in '%s' at column %d",
                                  path, lineno, value_key, bad);
            if (bad < 0)
                return cc_err_set(err, CC_ERR_FORMAT,
                                  "%s:%zu: '%s' must be %zu hex digits (got %zu)", path, lineno,
                                  value_key, 2 * value_bytes, strlen(val));
            value_line = lineno;
        } else {
            return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: unknown key '%s'", path, lineno, key);
        }
    }
    if (!seen_header)
        return cc_err_set(err, CC_ERR_FORMAT, "%s: empty file (expected header '%s')", path,
                          header);
    if (!id_line) return cc_err_set(err, CC_ERR_FORMAT, "%s: missing 'id:' line", path);
    if (!value_line)
        return cc_err_set(err, CC_ERR_FORMAT, "%s: missing '%s:' line", path, value_key);
    return 0;
}

int identity_load(identity_t *ident, const char *key_path, cc_err_t *err) {
    char buf[S_KEYFILE_MAX + 1];
    uint8_t pk2[WIRE_PK_BYTES], sk2[WIRE_SK_BYTES];
    size_t len = 0;
    memset(ident, 0, sizeof *ident);
    if (s_sodium_ready(err)) return CC_ERR_ARG;
    int rc = s_read_small(key_path, 1, buf, S_KEYFILE_MAX, &len, err);
    if (rc) goto fail;
    rc = s_parse_key_file(key_path, buf, len, s_secret_header, "secret", ident->id, ident->sk,
                          WIRE_SK_BYTES, err);
    if (rc) goto fail;
    /* ID-3: libsodium's sk is seed || pk; both halves must agree. */
    crypto_sign_seed_keypair(pk2, sk2, ident->sk);
    if (sodium_memcmp(sk2, ident->sk, WIRE_SK_BYTES) != 0) {
        rc = cc_err_set(err, CC_ERR_CORRUPT,
                        "%s: secret key is inconsistent (its public half does not match its seed)",
                        key_path);
        goto fail;
    }
    memcpy(ident->pk, pk2, WIRE_PK_BYTES);
    if (s_derive_curve(ident->pk, ident->sk, ident->curve_public, ident->curve_secret) != 0) {
        rc = cc_err_set(err, CC_ERR_CORRUPT, "%s: CURVE key derivation failed", key_path);
        goto fail;
    }
    rc = 0;
fail:
    sodium_memzero(buf, sizeof buf); /* ID-2 */
    sodium_memzero(sk2, sizeof sk2);
    if (rc) {
        identity_clear(ident);
        memset(ident, 0, sizeof *ident);
    }
    return rc;
}

int identity_load_public(identity_public_t *pub, const char *pub_path, cc_err_t *err) {
    char buf[S_KEYFILE_MAX + 1];
    size_t len = 0;
    memset(pub, 0, sizeof *pub);
    if (s_sodium_ready(err)) return CC_ERR_ARG;
    int rc = s_read_small(pub_path, 0, buf, S_KEYFILE_MAX, &len, err);
    if (rc) goto fail;
    rc = s_parse_key_file(pub_path, buf, len, s_public_header, "public", pub->id, pub->pk,
                          WIRE_PK_BYTES, err);
    if (rc) goto fail;
    if (s_derive_curve(pub->pk, NULL, pub->curve_public, NULL) != 0) {
        rc = cc_err_set(err, CC_ERR_FORMAT, "%s: 'public' is not a valid Ed25519 public key",
                        pub_path);
        goto fail;
    }
    return 0;
fail:
    memset(pub, 0, sizeof *pub);
    return rc;
}

/* ---- enrolment ---- */

void enrolment_destroy(enrolment_t **e) {
    if (!e || !*e) return;
    free((*e)->keys);
    free(*e);
    *e = NULL;
}

int enrolment_load(const char *path, enrolment_t **out, cc_err_t *err) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, *lines = NULL;
    enrolment_t *e = cc_xcalloc(1, sizeof *e);
    int rc = s_sodium_ready(err);
    if (rc) goto fail;
    rc = fileio_read_all(path, S_ENROLMENT_MAX, &buf, &len, err);
    if (rc) goto fail;

    char *cur = buf, *line;
    size_t lineno = 0;
    int has_nul;
    while ((line = s_next_line(&cur, buf + len, &lineno, &has_nul))) {
        rc = CC_ERR_FORMAT;
        if (has_nul) {
            cc_err_set(err, rc, "%s:%zu: binary data", path, lineno);
            goto fail;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *t = s_trim(line);
        if (*t == '\0') continue;
        char *id = t, *sep = t;
        while (*sep && !s_is_space(*sep)) sep++;
        char *hex = sep;
        if (*sep) *hex++ = '\0';
        hex = s_trim(hex);
        if (*hex == '\0' || strpbrk(hex, " \t")) {
            cc_err_set(err, rc, "%s:%zu: expected 'ID PUBLIC_HEX'", path, lineno);
            goto fail;
        }
        if (!wire_id_valid(id)) {
            cc_err_set(err, rc, "%s:%zu: invalid id (1..%d chars of [A-Za-z0-9._-])", path,
                       lineno, WIRE_MAX_ID);
            goto fail;
        }
        if (e->n == cap) {
            cap = cap ? 2 * cap : 16;
            e->keys = cc_xrealloc(e->keys, cap * sizeof *e->keys);
            lines = cc_xrealloc(lines, cap * sizeof *lines);
        }
        identity_public_t *k = &e->keys[e->n];
        memset(k, 0, sizeof *k);
        snprintf(k->id, sizeof k->id, "%s", id);
        int bad = s_hex_decode(k->pk, WIRE_PK_BYTES, hex);
        if (bad > 0) {
            cc_err_set(err, rc, "%s:%zu: bad hex digit in the public key at column %d", path,
                       lineno, bad);
            goto fail;
        }
        if (bad < 0) {
            cc_err_set(err, rc, "%s:%zu: the public key must be %d hex digits (got %zu)", path,
                       lineno, 2 * WIRE_PK_BYTES, strlen(hex));
            goto fail;
        }
        if (s_derive_curve(k->pk, NULL, k->curve_public, NULL) != 0) {
            cc_err_set(err, rc, "%s:%zu: not a valid Ed25519 public key", path, lineno);
            goto fail;
        }
        for (size_t i = 0; i < e->n; i++) {
            if (strcmp(e->keys[i].id, k->id) == 0) {
                cc_err_set(err, rc, "%s:%zu: duplicate id '%s' (first at line %zu)", path, lineno,
                           k->id, lines[i]);
                goto fail;
            }
            if (memcmp(e->keys[i].pk, k->pk, WIRE_PK_BYTES) == 0) {
                cc_err_set(err, rc, "%s:%zu: duplicate public key (already enrolled as '%s' at line %zu)",
                           path, lineno, e->keys[i].id, lines[i]);
                goto fail;
            }
        }
        lines[e->n++] = lineno;
    }
    free(lines);
    free(buf);
    *out = e;
    return 0;
fail:
    free(lines);
    free(buf);
    enrolment_destroy(&e);
    return rc;
}

const identity_public_t *enrolment_find(const enrolment_t *e, const char *id) {
    if (!e || !id) return NULL;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->keys[i].id, id) == 0) return &e->keys[i];
    return NULL;
}

const identity_public_t *enrolment_find_curve(const enrolment_t *e, const char *z85) {
    if (!e || !z85) return NULL;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->keys[i].curve_public, z85) == 0) return &e->keys[i];
    return NULL;
}

int enrolment_lookup(void *ctx, const char *sender_id, uint8_t pk[WIRE_PK_BYTES]) {
    const identity_public_t *k = enrolment_find(ctx, sender_id);
    if (!k) return -1;
    memcpy(pk, k->pk, WIRE_PK_BYTES);
    return 0;
}
