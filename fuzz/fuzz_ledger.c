/* fuzz_ledger.c — libFuzzer target for ledger_verify and ledger_head (common/ledger.h): the
 * contribution ledger a hospital downloads and checks.
 *
 * Input: u8 mode | the ledger text. Every line is signed, so mutated lines fail at the
 * signature; the harness re-signs on request, as the coordinator would have:
 *   bit 0  re-sign every complete line that parses as a JSON object (with the fixed
 *          coordinator key of fuzz_common.h, over the canonical form without "sig"), and
 *          write the line back in canonical form
 *   bit 1  before signing, set "prev" to the digest of the previous (output) line
 *   bit 2  before signing, set "seq" to the line's index
 *   bit 3  treat a final fragment without '\n' like a line (re-signed, still without '\n')
 *   bit 4  verify with the hospital's key instead of the coordinator's
 * Lines that do not parse are kept as they are. Mutations then reach the chain and
 * sequence checks, the canonical-form check and the torn-tail rules (LEDGER-2).
 *
 * Properties checked: ledger_verify returns 0, CORRUPT or TRUNCATED, with a report that
 * agrees with it; when the whole ledger verifies (or only its torn tail does not),
 * ledger_head (which reads only the tail) agrees on the entry count and the head digest.
 * No crash, hang or leak on any input. */
#include "fuzz_common.h"

#include <jansson.h>

#include "ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))

typedef struct {
    char *p;
    size_t n, cap;
} s_buf_t;

static void s_append(s_buf_t *b, const void *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* The line signed as the coordinator would sign it (new string), or NULL if it is not a
 * JSON object. */
static char *s_resign(const char *line, size_t n, unsigned mode, const uint8_t prev[32],
                      uint64_t idx) {
    json_error_t jerr;
    json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
    char *msg = NULL, *out = NULL;
    if (!o || !json_is_object(o)) goto done;
    char hex[2 * crypto_sign_BYTES + 1];
    if (mode & 2) {
        sodium_bin2hex(hex, sizeof hex, prev, 32);
        json_object_set_new(o, "prev", json_string(hex));
    }
    if (mode & 4) json_object_set_new(o, "seq", json_integer((json_int_t)idx));
    json_object_del(o, "sig");
    if (!(msg = json_dumps(o, S_FLAGS))) goto done;
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const uint8_t *)msg, strlen(msg),
                         fuzz_key(FUZZ_KEY_COORDINATOR)->sk);
    sodium_bin2hex(hex, sizeof hex, sig, sizeof sig);
    json_object_set_new(o, "sig", json_string(hex));
    out = json_dumps(o, S_FLAGS);
done:
    free(msg);
    json_decref(o);
    return out;
}

/* Rewrites the ledger per mode into out. */
static void s_rewrite(const uint8_t *p, size_t n, unsigned mode, s_buf_t *out) {
    uint8_t prev[32] = {0};
    uint64_t idx = 0;
    while (n > 0) {
        const uint8_t *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) : n;
        char *signed_line = NULL;
        if ((mode & 1) && (nl || (mode & 8)))
            signed_line = s_resign((const char *)p, len, mode, prev, idx);
        const char *line = signed_line ? signed_line : (const char *)p;
        size_t line_len = signed_line ? strlen(signed_line) : len;
        s_append(out, line, line_len);
        if (nl) s_append(out, "\n", 1);
        crypto_generichash(prev, sizeof prev, (const uint8_t *)line, line_len, NULL, 0);
        free(signed_line);
        idx++;
        p += len + (nl ? 1 : 0);
        n -= len + (nl ? 1 : 0);
    }
}

static void s_fail(const char *what, const cc_err_t *err) {
    fprintf(stderr, "fuzz_ledger: %s (%s)\n", what, err->msg);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader_t r = {data, size};
    unsigned mode = fuzz_u8(&r);
    const char *path;
    if (mode & 1) {
        s_buf_t b = {0};
        s_rewrite(r.p, r.left, mode, &b);
        path = fuzz_memfile(0, b.p, b.n);
        free(b.p);
    } else {
        path = fuzz_memfile(0, r.p, r.left);
    }
    const uint8_t *pk = fuzz_key((mode & 16) ? FUZZ_KEY_HOSPITAL : FUZZ_KEY_COORDINATOR)->pk;

    ledger_report_t rep;
    cc_err_t err = {0};
    int rc = ledger_verify(path, pk, &rep, &err);
    fuzz_report("ledger_verify", rc, err.msg);
    if (rc == 0) {
        if (rep.failure != LEDGER_OK) s_fail("verify OK with a failure in its report", &err);
    } else if (rc == CC_ERR_TRUNCATED) {
        if (rep.failure != LEDGER_FAIL_TRUNCATED || rep.bad_entry != rep.entries)
            s_fail("verify TRUNCATED with a report that disagrees", &err);
    } else if (rc == CC_ERR_CORRUPT) {
        if (rep.failure == LEDGER_OK || rep.failure == LEDGER_FAIL_TRUNCATED ||
            rep.bad_entry != rep.entries)
            s_fail("verify CORRUPT with a report that disagrees", &err);
    } else {
        s_fail("verify returned an undocumented code", &err);
    }
    (void)ledger_failure_name(rep.failure);
    (void)ledger_failure_code(rep.failure);

    ledger_head_t head;
    json_t *last = NULL;
    cc_err_t herr = {0};
    int hrc = ledger_head(path, pk, &head, &last, &herr);
    if (rc == 0 || rc == CC_ERR_TRUNCATED) {
        if (hrc != 0) s_fail("verify accepts the ledger but ledger_head does not", &herr);
        if (head.entries != rep.entries || strcmp(head.head, rep.head) != 0 ||
            (rc == 0) != (head.torn_bytes == 0)) {
            fprintf(stderr, "fuzz_ledger: verify: %llu entries, head %s; ledger_head: %llu "
                    "entries, head %s, torn %llu\n", (unsigned long long)rep.entries, rep.head,
                    (unsigned long long)head.entries, head.head,
                    (unsigned long long)head.torn_bytes);
            abort();
        }
    }
    json_decref(last);
    last = NULL;
    if (ledger_head(path, NULL, &head, &last, &herr) == 0) json_decref(last);
    return 0;
}
