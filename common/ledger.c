/* ledger.c — the tamper-evident contribution ledger (format, canonical form and the
 * durability invariants LEDGER-1..4 in ledger.h).
 *
 * A line is checked in this order; the first failure names it (ledger_failure_t):
 *   1. length      at most LEDGER_MAX_LINE bytes                               TOO_LONG
 *   2. JSON        parses (duplicate keys refused) to an object                BAD_JSON
 *   3. canonical   re-serialising the parse gives back exactly its bytes        NOT_CANONICAL
 *   4. signature   "sig" is 128 lowercase hex and verifies over the canonical
 *                  form without "sig"                                          BAD_SIGNATURE
 *   5. chain       "prev" is the hex digest of the previous line (or zeros)    BROKEN_CHAIN
 *   6. position    "seq" is the line's index                                  WRONG_SEQ
 * The signature comes before the chain so that the kind says what happened: an altered byte
 * anywhere in an entry (even in its "prev" or "seq") breaks its signature, while a line
 * removed, inserted or moved keeps a good signature and breaks the chain. Every check of line
 * i runs before line i+1 is read, so a damaged line is named itself, never its successor
 * (whose "prev" it also breaks).
 *
 * A final fragment without '\n' is torn (TRUNCATED) only if, NUL padding aside, it is a
 * strict prefix of some JSON object in canonical (whitespace-free) syntax, or a complete line
 * that verifies; anything else is judged as an ordinary line (LEDGER-2). s_json_prefix is
 * that prefix test: jansson's error codes cannot tell "ended early" from "invalid" (a number
 * or literal cut short is an "invalid token"). */
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blake2b.h"
#include "fileio.h"
#include "log.h"

#define S_DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))
#define S_DIGEST 32                       /* BLAKE2b-256 */
#define S_CHUNK (64 * 1024)               /* bytes read at a time by the verifier */
#define S_TAIL_FIRST 4096                 /* first window read from the end by append */
#define S_LINE_FIRST 4096                 /* first size of the verifier's line buffer */
#define S_MAX_DEPTH 2048                  /* jansson's parser nests no deeper either */

int ledger_fault_fail_write_after = 0;
int ledger_fault_fail_fsync_after = 0;

typedef struct {
    ledger_failure_t kind;
    char detail[sizeof(((ledger_report_t *)0)->detail)];
} s_fail_t;

static int s_set(s_fail_t *f, ledger_failure_t kind, const char *fmt, ...) CC_PRINTF(3, 4);
static int s_set(s_fail_t *f, ledger_failure_t kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof f->detail, fmt, ap);
    va_end(ap);
    f->kind = kind;
    return -1;
}

static int s_fires(int *counter) {
    if (*counter <= 0) return 0;
    return --*counter == 0;
}

/* ---- hex, digests, canonical form ---- */

static void s_hex(char *out, const uint8_t *bin, size_t n) {
    sodium_bin2hex(out, 2 * n + 1, bin, n); /* lowercase */
}

/* Decodes exactly 2n lowercase hex digits (no other spelling: the bytes are signed). */
static int s_unhex(uint8_t *out, size_t n, const char *hex, size_t hex_len) {
    if (hex_len != 2 * n) return -1;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return -1;
        if (i % 2 == 0) out[i / 2] = (uint8_t)(v << 4);
        else out[i / 2] |= (uint8_t)v;
    }
    return 0;
}

static void s_digest(uint8_t out[S_DIGEST], const char *line, size_t n) {
    cc_blake2b(out, S_DIGEST, (const unsigned char *)line, n, NULL, 0);
}

/* The canonical form (ledger.h) in a new buffer (free()), or NULL. */
static char *s_canonical(const json_t *obj, size_t *len) {
    char *s = json_dumps(obj, S_DUMP_FLAGS);
    if (s) *len = strlen(s);
    return s;
}

/* ---- is this a prefix of a canonical JSON object? ---- */

enum { S_PREFIX_INVALID, S_PREFIX_INCOMPLETE, S_PREFIX_COMPLETE };

/* Scans p[0, n) as the start of a JSON object in whitespace-free syntax (RFC 8259 values;
 * bytes >= 0x80 inside strings are taken as they come). INCOMPLETE: some continuation makes
 * it a complete object; COMPLETE: it is one, ending exactly at n; INVALID: neither. */
static int s_json_prefix(const char *p, size_t n) {
    enum { V, V_OR_CLOSE, KEY, KEY_OR_CLOSE, COLON, AFTER, STR, NUM, LIT } st = V;
    enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP } num = N_MINUS;
    char stack[S_MAX_DEPTH];
    size_t depth = 0, lit_i = 0;
    const char *lit = "";
    int str_key = 0, esc = 0, uhex = 0;
    if (n > 0 && p[0] != '{') return S_PREFIX_INVALID;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        int digit = c >= '0' && c <= '9';
        switch (st) {
        case V:
        case V_OR_CLOSE:
            if (c == ']' && st == V_OR_CLOSE) depth--, st = AFTER;
            else if (c == '{' || c == '[') {
                if (depth == S_MAX_DEPTH) return S_PREFIX_INVALID;
                stack[depth++] = (char)c;
                st = c == '{' ? KEY_OR_CLOSE : V_OR_CLOSE;
            } else if (c == '"') st = STR, str_key = 0, esc = 0, uhex = 0;
            else if (c == '-') st = NUM, num = N_MINUS;
            else if (digit) st = NUM, num = c == '0' ? N_ZERO : N_INT;
            else if (c == 't' || c == 'f' || c == 'n') {
                lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
                lit_i = 1, st = LIT;
            } else return S_PREFIX_INVALID;
            break;
        case KEY:
        case KEY_OR_CLOSE:
            if (c == '}' && st == KEY_OR_CLOSE) depth--, st = AFTER;
            else if (c == '"') st = STR, str_key = 1, esc = 0, uhex = 0;
            else return S_PREFIX_INVALID;
            break;
        case COLON:
            if (c != ':') return S_PREFIX_INVALID;
            st = V;
            break;
        case AFTER:
            if (depth == 0) return S_PREFIX_INVALID; /* bytes after the complete object */
            if (c == ',') st = stack[depth - 1] == '{' ? KEY : V;
            else if (c == (stack[depth - 1] == '{' ? '}' : ']')) depth--;
            else return S_PREFIX_INVALID;
            break;
        case STR:
            if (uhex) {
                if (!(digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                    return S_PREFIX_INVALID;
                uhex--;
            } else if (esc) {
                esc = 0;
                if (c == 'u') uhex = 4;
                else if (c == 0 || !strchr("\"\\/bfnrt", c)) return S_PREFIX_INVALID;
            } else if (c == '\\') esc = 1;
            else if (c == '"') st = str_key ? COLON : AFTER;
            else if (c < 0x20) return S_PREFIX_INVALID;
            break;
        case NUM:
            switch (num) {
            case N_MINUS:
                if (!digit) return S_PREFIX_INVALID;
                num = c == '0' ? N_ZERO : N_INT;
                break;
            case N_ZERO:
            case N_INT:
            case N_FRAC:
                if (digit && num != N_ZERO) break;
                if (c == '.' && num != N_FRAC) num = N_DOT;
                else if (c == 'e' || c == 'E') num = N_E;
                else { st = AFTER; continue; } /* the number ended: rescan c */
                break;
            case N_DOT:
                if (!digit) return S_PREFIX_INVALID;
                num = N_FRAC;
                break;
            case N_E:
                if (c == '+' || c == '-') { num = N_ESIGN; break; }
                /* fallthrough */
            case N_ESIGN:
                if (!digit) return S_PREFIX_INVALID;
                num = N_EXP;
                break;
            case N_EXP:
                if (!digit) { st = AFTER; continue; }
                break;
            }
            break;
        case LIT:
            if (c != (unsigned char)lit[lit_i]) return S_PREFIX_INVALID;
            if (lit[++lit_i] == '\0') st = AFTER;
            break;
        }
        i++;
    }
    return n > 0 && st == AFTER && depth == 0 ? S_PREFIX_COMPLETE : S_PREFIX_INCOMPLETE;
}

/* ---- checking one line ---- */

/* Checks 2..4 of the order at the top. On success *obj (if not NULL) is the parsed entry.
 * pk NULL skips the signature verification (its format is still checked). */
static int s_check_signed(const char *line, size_t n, const uint8_t *pk, json_t **obj,
                          s_fail_t *f) {
    json_error_t jerr;
    json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
    char *canon = NULL, *msg = NULL;
    int rc = -1;
    if (!o) {
        s_set(f, LEDGER_FAIL_BAD_JSON, "bad JSON: %s (byte %d)", jerr.text, jerr.position);
        goto out;
    }
    if (!json_is_object(o)) {
        s_set(f, LEDGER_FAIL_BAD_JSON, "bad JSON: not a JSON object");
        goto out;
    }
    size_t clen = 0, mlen = 0;
    canon = s_canonical(o, &clen);
    if (!canon) {
        s_set(f, LEDGER_FAIL_BAD_JSON, "bad JSON: cannot be re-serialised");
        goto out;
    }
    if (clen != n || memcmp(canon, line, n) != 0) {
        size_t at = 0;
        while (at < n && at < clen && canon[at] == line[at]) at++;
        s_set(f, LEDGER_FAIL_NOT_CANONICAL,
              "not canonical: differs from its canonical form at byte %zu (bytes altered)", at);
        goto out;
    }
    json_t *sig = json_object_get(o, "sig");
    uint8_t sig_bin[crypto_sign_BYTES];
    if (!json_is_string(sig)) {
        s_set(f, LEDGER_FAIL_BAD_SIGNATURE, "bad signature: no \"sig\" string");
        goto out;
    }
    if (s_unhex(sig_bin, sizeof sig_bin, json_string_value(sig), json_string_length(sig)) != 0) {
        s_set(f, LEDGER_FAIL_BAD_SIGNATURE,
              "bad signature: \"sig\" is not %d lowercase hex digits (altered)",
              2 * crypto_sign_BYTES);
        goto out;
    }
    if (pk) {
        json_incref(sig); /* keep it through the deletion */
        json_object_del(o, "sig");
        msg = s_canonical(o, &mlen);
        json_object_set_new(o, "sig", sig);
        if (!msg || crypto_sign_verify_detached(sig_bin, (const unsigned char *)msg, mlen, pk)) {
            s_set(f, LEDGER_FAIL_BAD_SIGNATURE,
                  "bad signature: does not verify with the coordinator's public key (the entry "
                  "was altered, or signed by another key)");
            goto out;
        }
    }
    rc = 0;
    if (obj) *obj = o, o = NULL;
out:
    free(msg);
    free(canon);
    json_decref(o);
    return rc;
}

/* All checks of a complete line that should be entry idx, after the line whose digest is
 * prev (zeros for idx 0). */
static int s_check_line(const char *line, size_t n, uint64_t idx, const uint8_t prev[S_DIGEST],
                        const uint8_t *pk, s_fail_t *f) {
    json_t *o = NULL;
    if (s_check_signed(line, n, pk, &o, f) != 0) return -1;
    int rc = -1;
    json_t *jp = json_object_get(o, "prev"), *js = json_object_get(o, "seq");
    uint8_t want[S_DIGEST];
    if (!json_is_string(jp) ||
        s_unhex(want, sizeof want, json_string_value(jp), json_string_length(jp)) != 0) {
        s_set(f, LEDGER_FAIL_BROKEN_CHAIN, "broken chain: no \"prev\" digest");
    } else if (sodium_memcmp(want, prev, S_DIGEST) != 0) {
        if (idx == 0)
            s_set(f, LEDGER_FAIL_BROKEN_CHAIN, "broken chain: \"prev\" is not zeros, so this is "
                  "not the ledger's first entry (lines removed before it)");
        else
            s_set(f, LEDGER_FAIL_BROKEN_CHAIN, "broken chain: \"prev\" is not the digest of line "
                  "%" PRIu64 " (a line removed, inserted or reordered)", idx);
    } else if (!json_is_integer(js)) {
        s_set(f, LEDGER_FAIL_WRONG_SEQ, "wrong seq: no integer \"seq\"");
    } else if (json_integer_value(js) < 0 || (uint64_t)json_integer_value(js) != idx) {
        s_set(f, LEDGER_FAIL_WRONG_SEQ, "wrong seq: %" JSON_INTEGER_FORMAT ", expected %" PRIu64,
              json_integer_value(js), idx);
    } else {
        rc = 0;
    }
    json_decref(o);
    return rc;
}

/* Judges a final fragment p[0, n) that lacks its '\n', as entry idx (LEDGER-2): f->kind is
 * TRUNCATED when it is torn, else the failure that makes it damage. */
static void s_check_fragment(const char *p, size_t n, uint64_t idx, const uint8_t prev[S_DIGEST],
                             const uint8_t *pk, s_fail_t *f) {
    size_t m = n;
    while (m > 0 && p[m - 1] == '\0') m--; /* a filesystem may zero-fill a torn append */
    if (s_json_prefix(p, m) == S_PREFIX_INCOMPLETE) {
        s_set(f, LEDGER_FAIL_TRUNCATED, "truncated final line: %zu bytes without a line break, "
              "an append cut short by a crash (not tampering); the %" PRIu64 " entries before "
              "it verify", n, idx);
        return;
    }
    if (m > 0 && s_check_line(p, m, idx, prev, pk, f) == 0)
        s_set(f, LEDGER_FAIL_TRUNCATED, "truncated final line: a complete entry without its line "
              "break, an append cut short by a crash (not tampering); the %" PRIu64 " entries "
              "before it verify", idx);
}

/* ---- verification ---- */

typedef struct {
    int fd;
    char *chunk;          /* (S_CHUNK) read-ahead */
    size_t pos, len;      /* unread bytes: chunk[pos, len) */
    uint64_t consumed;    /* file offset of chunk[pos] */
    char *line;           /* (cap) the current line, without '\n'; never NULL, even for an
                           * empty line, so the checks always get a real buffer */
    size_t cap;
} s_reader_t;

enum { S_R_END, S_R_LINE, S_R_FRAGMENT, S_R_TOO_LONG };

/* The next line into r->line (*n bytes). Returns S_R_* or -1 on a read error (errno). Never
 * buffers more than LEDGER_MAX_LINE bytes. */
static int s_reader_next(s_reader_t *r, size_t *n) {
    *n = 0;
    for (;;) {
        if (r->pos == r->len) {
            ssize_t got = read(r->fd, r->chunk, S_CHUNK);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) return -1;
            if (got == 0) return *n ? S_R_FRAGMENT : S_R_END;
            r->pos = 0, r->len = (size_t)got;
        }
        const char *s = r->chunk + r->pos;
        size_t avail = r->len - r->pos;
        const char *nl = memchr(s, '\n', avail);
        size_t take = nl ? (size_t)(nl - s) : avail;
        if (*n + take > LEDGER_MAX_LINE) return S_R_TOO_LONG;
        if (*n + take > r->cap) {
            size_t cap = r->cap;
            while (cap < *n + take) cap *= 2;
            if (cap > LEDGER_MAX_LINE) cap = LEDGER_MAX_LINE;
            r->line = cc_xrealloc(r->line, cap);
            r->cap = cap;
        }
        memcpy(r->line + *n, s, take);
        *n += take;
        r->pos += take + (nl ? 1 : 0);
        r->consumed += take + (nl ? 1 : 0);
        if (nl) return S_R_LINE;
    }
}

int ledger_verify(const char *path, const uint8_t coordinator_pk[WIRE_PK_BYTES],
                  ledger_report_t *rep, cc_err_t *err) {
    memset(rep, 0, sizeof *rep);
    uint8_t prev[S_DIGEST] = {0};
    s_hex(rep->head, prev, S_DIGEST);
    if (!path || !coordinator_pk)
        return cc_err_set(err, CC_ERR_ARG, "ledger_verify: no path or key");
    if (sodium_init() < 0) return cc_err_set(err, CC_ERR_ARG, "ledger: sodium_init failed");
    s_reader_t r = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    if (r.fd < 0) return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    r.chunk = cc_xmalloc(S_CHUNK);
    r.line = cc_xmalloc(S_LINE_FIRST), r.cap = S_LINE_FIRST;
    s_fail_t f = {LEDGER_OK, ""};
    int rc = 0;
    for (uint64_t idx = 0;; idx++) {
        uint64_t start = r.consumed;
        size_t n;
        int k = s_reader_next(&r, &n);
        if (k < 0) {
            rc = cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (k == S_R_END) break;
        if (k == S_R_TOO_LONG)
            s_set(&f, LEDGER_FAIL_TOO_LONG, "line too long: over %u bytes without a line break",
                  LEDGER_MAX_LINE);
        else if (k == S_R_FRAGMENT)
            s_check_fragment(r.line, n, idx, prev, coordinator_pk, &f);
        else
            s_check_line(r.line, n, idx, prev, coordinator_pk, &f);
        if (f.kind != LEDGER_OK) {
            rep->failure = f.kind;
            rep->bad_entry = idx;
            rep->bad_offset = start;
            snprintf(rep->detail, sizeof rep->detail, "%s", f.detail);
            int code = f.kind == LEDGER_FAIL_TRUNCATED ? CC_ERR_TRUNCATED : CC_ERR_CORRUPT;
            rc = cc_err_set(err, code, "%s:%" PRIu64 ": %s", path, idx + 1, f.detail);
            break;
        }
        s_digest(prev, r.line, n);
        s_hex(rep->head, prev, S_DIGEST);
        rep->entries = idx + 1;
    }
    close(r.fd);
    free(r.chunk);
    free(r.line);
    return rc;
}

/* ---- the tail, for append and head ---- */

static ptrdiff_t s_rfind_nl(const char *p, size_t n) {
    while (n > 0)
        if (p[--n] == '\n') return (ptrdiff_t)n;
    return -1;
}

typedef struct {
    uint64_t entries;              /* next seq */
    uint8_t digest[S_DIGEST];      /* of the last complete line: the next "prev" */
    uint64_t cut;                  /* offset after the last '\n' */
    uint64_t size;
    uint64_t torn;                 /* bytes of a torn fragment after cut */
} s_tail_t;

/* Reads the end of the ledger (growing a window from the end, never the whole file) and
 * checks its last complete line and any fragment after it (LEDGER-2, LEDGER-3). */
static int s_tail_examine(int fd, const char *path, const uint8_t *pk, s_tail_t *t,
                          json_t **last, cc_err_t *err) {
    struct stat stt;
    memset(t, 0, sizeof *t);
    if (fstat(fd, &stt) != 0)
        return cc_err_set(err, CC_ERR_IO, "%s: stat failed: %s", path, strerror(errno));
    uint64_t size = t->size = (uint64_t)stt.st_size;
    /* a torn fragment and the line before it, each at most LEDGER_MAX_LINE, and 2 '\n' */
    const uint64_t cap = 2 * (uint64_t)LEDGER_MAX_LINE + 3;
    uint64_t w = size < S_TAIL_FIRST ? size : S_TAIL_FIRST, off, line_off = 0;
    char *buf = NULL;
    size_t line_len = 0;
    int has_line = 0, rc = 0;
    json_t *o = NULL;
    s_fail_t f = {LEDGER_OK, ""};
    for (;;) {
        off = size - w;
        buf = cc_xrealloc(buf, (size_t)w + 1);
        int got = fileio_pread_all(fd, buf, (size_t)w, off);
        if (got != 0) {
            rc = cc_err_set(err, CC_ERR_IO, "%s: read failed: %s", path,
                            got > 0 ? "the file shrank while it was read" : strerror(errno));
            goto out;
        }
        ptrdiff_t a = s_rfind_nl(buf, (size_t)w);
        if (a < 0 && off == 0) break; /* no complete line at all */
        if (a >= 0) {
            t->cut = off + (uint64_t)a + 1;
            ptrdiff_t b = s_rfind_nl(buf, (size_t)a);
            if (b >= 0 || off == 0) {
                has_line = 1;
                line_off = off + (uint64_t)(b + 1);
                line_len = (size_t)(a - (b + 1));
                break;
            }
        }
        if (w == (size < cap ? size : cap)) {
            rc = cc_err_set(err, CC_ERR_CORRUPT, "%s: no complete line in its last %" PRIu64
                            " bytes (lines are at most %u bytes); run verify-ledger", path, w,
                            LEDGER_MAX_LINE);
            goto out;
        }
        w = 2 * w < cap ? 2 * w : cap;
        if (w > size) w = size;
    }
    if (has_line) {
        const char *line = buf + (line_off - off);
        json_t *js = NULL;
        if (line_len > LEDGER_MAX_LINE)
            s_set(&f, LEDGER_FAIL_TOO_LONG, "line too long: %zu bytes", line_len);
        else if (s_check_signed(line, line_len, pk, &o, &f) == 0 &&
                 (!json_is_integer(js = json_object_get(o, "seq")) || json_integer_value(js) < 0))
            s_set(&f, LEDGER_FAIL_WRONG_SEQ, "wrong seq: no integer \"seq\"");
        if (f.kind != LEDGER_OK) {
            rc = cc_err_set(err, CC_ERR_CORRUPT, "%s: the last entry (at byte %" PRIu64 ") does "
                            "not verify: %s; run verify-ledger", path, line_off, f.detail);
            goto out;
        }
        t->entries = (uint64_t)json_integer_value(js) + 1;
        s_digest(t->digest, line, line_len);
    }
    if (t->cut < size) {
        uint64_t n = size - t->cut;
        if (n > LEDGER_MAX_LINE)
            s_set(&f, LEDGER_FAIL_TOO_LONG, "%" PRIu64 " bytes without a line break", n);
        else
            s_check_fragment(buf + (t->cut - off), (size_t)n, t->entries, t->digest, pk, &f);
        if (f.kind != LEDGER_FAIL_TRUNCATED) {
            rc = cc_err_set(err, CC_ERR_CORRUPT, "%s: its last %" PRIu64 " bytes are damage, not "
                            "a torn append (%s); run verify-ledger", path, n, f.detail);
            goto out;
        }
        t->torn = n;
    }
    if (last) *last = o, o = NULL;
out:
    json_decref(o);
    free(buf);
    return rc;
}

int ledger_head(const char *path, const uint8_t *coordinator_pk, ledger_head_t *out,
                json_t **last, cc_err_t *err) {
    s_tail_t t;
    memset(out, 0, sizeof *out);
    memset(&t, 0, sizeof t);
    s_hex(out->head, t.digest, S_DIGEST);
    if (last) *last = NULL;
    if (!path) return cc_err_set(err, CC_ERR_ARG, "ledger_head: no path");
    if (sodium_init() < 0) return cc_err_set(err, CC_ERR_ARG, "ledger: sodium_init failed");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return 0;
    if (fd < 0) return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc = s_tail_examine(fd, path, coordinator_pk, &t, last, err);
    close(fd);
    if (rc != 0) return rc;
    out->entries = t.entries;
    out->torn_bytes = t.torn;
    s_hex(out->head, t.digest, S_DIGEST);
    return 0;
}

/* ---- append ---- */

static int s_write_all(int fd, const char *p, size_t n) {
    if (s_fires(&ledger_fault_fail_write_after)) {
        if (write(fd, p, n / 2) < 0) return -1;
        errno = ENOSPC;
        return -1;
    }
    while (n > 0) {
        ssize_t got = write(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = EIO;
            return -1;
        }
        p += got, n -= (size_t)got;
    }
    return 0;
}

/* The line for entry (+ seq, prev, sig) with its '\n', in a new buffer; *n excludes '\n'. */
static int s_build_line(json_t *entry, const s_tail_t *t, const identity_t *coord, char **out,
                        size_t *n, cc_err_t *err) {
    char prev_hex[LEDGER_DIGEST_HEX], sig_hex[2 * crypto_sign_BYTES + 1];
    uint8_t sig[crypto_sign_BYTES];
    char *msg = NULL, *line = NULL;
    size_t mlen = 0;
    int rc = 0;
    json_t *e = json_copy(entry); /* shallow: the caller's object stays as it was */
    if (!e) return cc_err_set(err, CC_ERR_NOMEM, "ledger: cannot copy the entry");
    s_hex(prev_hex, t->digest, S_DIGEST);
    if (t->entries > (uint64_t)INT64_MAX ||
        json_object_set_new(e, "seq", json_integer((json_int_t)t->entries)) != 0 ||
        json_object_set_new(e, "prev", json_string(prev_hex)) != 0 ||
        !(msg = s_canonical(e, &mlen))) {
        rc = cc_err_set(err, CC_ERR_ARG, "ledger: entry cannot be serialised");
        goto out;
    }
    crypto_sign_detached(sig, NULL, (const unsigned char *)msg, mlen, coord->sk);
    s_hex(sig_hex, sig, sizeof sig);
    if (json_object_set_new(e, "sig", json_string(sig_hex)) != 0 || !(line = s_canonical(e, n))) {
        rc = cc_err_set(err, CC_ERR_ARG, "ledger: entry cannot be serialised");
        goto out;
    }
    if (*n > LEDGER_MAX_LINE) {
        rc = cc_err_set(err, CC_ERR_ARG, "ledger: entry is %zu bytes, over the %u-byte limit", *n,
                        LEDGER_MAX_LINE);
        goto out;
    }
    /* What we write must verify as what it is: catches strings with NUL bytes, nesting deeper
     * than the parser takes, and a key pair whose halves do not match. */
    s_fail_t f;
    if (s_check_line(line, *n, t->entries, t->digest, coord->pk, &f) != 0) {
        rc = cc_err_set(err, CC_ERR_ARG, "ledger: the entry would not verify as written (%s)",
                        f.detail);
        goto out;
    }
    line = cc_xrealloc(line, *n + 1);
    line[*n] = '\n';
    *out = line, line = NULL;
out:
    free(line);
    free(msg);
    json_decref(e);
    return rc;
}

int ledger_append(const char *path, const identity_t *coordinator, json_t *entry,
                  cc_err_t *err) {
    static const char *const reserved[] = {"seq", "prev", "sig"};
    if (!path || !coordinator || !json_is_object(entry))
        return cc_err_set(err, CC_ERR_ARG, "ledger_append: the entry must be a JSON object");
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(entry, reserved[i]))
            return cc_err_set(err, CC_ERR_ARG, "ledger_append: the entry may not carry \"%s\" "
                              "(the ledger adds it)", reserved[i]);
    if (sodium_init() < 0) return cc_err_set(err, CC_ERR_ARG, "ledger: sodium_init failed");
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t n = 0;
    s_tail_t t;
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {}
    if (rc != 0) {
        rc = cc_err_set(err, CC_ERR_IO, "%s: lock failed: %s", path, strerror(errno));
        goto out;
    }
    /* LEDGER-3 */
    if ((rc = s_tail_examine(fd, path, coordinator->pk, &t, NULL, err)) != 0) goto out;
    if ((rc = s_build_line(entry, &t, coordinator, &line, &n, err)) != 0) goto out;
    if (t.torn) { /* LEDGER-2: an append cut short; it was never acknowledged */
        if (ftruncate(fd, (off_t)t.cut) != 0 || fsync(fd) != 0) {
            rc = cc_err_set(err, CC_ERR_IO, "%s: cutting off a torn final line failed: %s", path,
                            strerror(errno));
            goto out;
        }
        cc_log_warn("ledger_torn_tail", "path=%s bytes=%" PRIu64 " offset=%" PRIu64 " action=cut",
                    path, t.torn, t.cut);
    }
    /* LEDGER-2: one write of line + '\n'; LEDGER-1: fsync before returning 0. */
    const char *what = "write";
    int failed = s_write_all(fd, line, n + 1) != 0;
    if (!failed) {
        what = "fsync";
        if (s_fires(&ledger_fault_fail_fsync_after)) errno = EIO, failed = 1;
        else failed = fsync(fd) != 0;
    }
    if (failed) { /* LEDGER-4 */
        int e = errno;
        if (ftruncate(fd, (off_t)t.cut) == 0) (void)fsync(fd);
        rc = cc_err_set(err, CC_ERR_IO, "%s: %s of entry %" PRIu64 " failed: %s%s", path, what,
                        t.entries, strerror(e), what[0] == 'f' ? " (it may still be in the ledger:"
                        " check ledger_head before appending it again)" : "");
        goto out;
    }
    if (t.size == 0 && fileio_fsync_dir(path) != 0) { /* LEDGER-1: a new file's directory entry */
        rc = cc_err_set(err, CC_ERR_IO, "%s: fsync of its directory failed: %s", path,
                        strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(line);
    close(fd); /* releases the lock */
    return rc;
}

/* ---- names ---- */

const char *ledger_failure_name(ledger_failure_t f) {
    switch (f) {
    case LEDGER_OK: return "ok";
    case LEDGER_FAIL_TOO_LONG: return "line too long";
    case LEDGER_FAIL_BAD_JSON: return "bad JSON";
    case LEDGER_FAIL_NOT_CANONICAL: return "not canonical";
    case LEDGER_FAIL_BAD_SIGNATURE: return "bad signature";
    case LEDGER_FAIL_BROKEN_CHAIN: return "broken chain";
    case LEDGER_FAIL_WRONG_SEQ: return "wrong seq";
    case LEDGER_FAIL_TRUNCATED: return "truncated final line";
    }
    return "unknown";
}

const char *ledger_failure_code(ledger_failure_t f) {
    switch (f) {
    case LEDGER_OK: return "ok";
    case LEDGER_FAIL_TOO_LONG: return "too_long";
    case LEDGER_FAIL_BAD_JSON: return "bad_json";
    case LEDGER_FAIL_NOT_CANONICAL: return "not_canonical";
    case LEDGER_FAIL_BAD_SIGNATURE: return "bad_signature";
    case LEDGER_FAIL_BROKEN_CHAIN: return "broken_chain";
    case LEDGER_FAIL_WRONG_SEQ: return "wrong_seq";
    case LEDGER_FAIL_TRUNCATED: return "truncated";
    }
    return "unknown";
}

/* ---- concord-coordinator verify-ledger ---- */

#define S_CLI "concord-coordinator verify-ledger"

static void s_usage(FILE *fp) {
    fprintf(fp,
        "Usage: " S_CLI " FILE --public-key COORDINATOR.pub [--json]\n"
        "Check a Concord contribution ledger: every line parses, is signed by the coordinator's\n"
        "key, names the digest of the line before it (a BLAKE2b-256 chain) and its position.\n\n"
        "  --public-key PUB  the coordinator's public key file (ID.pub from concord-keygen)\n"
        "  --json            print the result as one JSON object (with the head digest)\n"
        "  --help\n\n"
        "Prints \"ledger FILE: N entries, chain and signatures OK\", or names the first bad\n"
        "entry: \"ledger FILE: entry K (line K+1): what failed\". A final line torn by a crash\n"
        "is reported as truncated, not as tampering. Lines removed from the end leave a valid\n"
        "shorter ledger: compare the head digest (--json) with the one the coordinator\n"
        "published.\n"
        "Exit status: 0 the ledger verifies, 1 it does not or a file cannot be read, 2 usage.\n");
}

static void s_print_json(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

int ledger_verify_main(int argc, char **argv) {
    enum { OPT_PUB = 256, OPT_JSON, OPT_HELP };
    static const struct option opts[] = {
        {"public-key", required_argument, 0, OPT_PUB}, {"json", no_argument, 0, OPT_JSON},
        {"help", no_argument, 0, OPT_HELP}, {0, 0, 0, 0}};
    const char *pub_path = NULL, *file = NULL;
    int as_json = 0, c;
    optind = 0; /* glibc: full re-initialisation, whoever ran getopt before */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PUB: pub_path = optarg; break;
        case OPT_JSON: as_json = 1; break;
        case OPT_HELP: s_usage(stdout); return 0;
        default:
            fprintf(stderr, S_CLI ": unknown option or missing value: %s\n", argv[optind - 1]);
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) file = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, S_CLI ": unexpected argument '%s' (one ledger FILE)\n", argv[optind]);
        return 2;
    }
    if (!file || !pub_path) {
        fprintf(stderr, S_CLI ": %s is required\n", !file ? "a ledger FILE" : "--public-key");
        s_usage(stderr);
        return 2;
    }
    cc_err_t err = {0};
    identity_public_t pub;
    ledger_report_t rep;
    int rc = identity_load_public(&pub, pub_path, &err), verdict = 0;
    if (rc == 0) {
        rc = ledger_verify(file, pub.pk, &rep, &err);
        verdict = rc == 0 || rep.failure != LEDGER_OK;
    }
    if (!verdict) {
        /* a file could not be read, or the key file is bad: no verdict on the ledger */
        if (as_json)
            s_print_json(json_pack("{s:s,s:b,s:s}", "file", file, "ok", 0, "error", err.msg));
        else fprintf(stderr, S_CLI ": %s\n", err.msg);
        return 1;
    }
    if (as_json) {
        char pk_hex[65];
        identity_public_hex(pk_hex, pub.pk);
        json_t *o = json_pack("{s:s,s:b,s:I,s:s,s:s,s:s}", "file", file, "ok", rc == 0, "entries",
                              (json_int_t)rep.entries, "head", rep.head, "public_key", pk_hex,
                              "signer", pub.id);
        if (o && rc != 0)
            json_object_set_new(o, "failure", json_pack("{s:s,s:I,s:I,s:I,s:s}", "kind",
                                ledger_failure_code(rep.failure), "entry",
                                (json_int_t)rep.bad_entry, "line", (json_int_t)rep.bad_entry + 1,
                                "offset", (json_int_t)rep.bad_offset, "detail", rep.detail));
        s_print_json(o);
    } else if (rc == 0) {
        printf("ledger %s: %" PRIu64 " entries, chain and signatures OK\n", file, rep.entries);
    } else {
        printf("ledger %s: entry %" PRIu64 " (line %" PRIu64 "): %s\n", file, rep.bad_entry,
               rep.bad_entry + 1, rep.detail);
    }
    return fflush(stdout) == 0 && rc == 0 ? 0 : 1;
}
