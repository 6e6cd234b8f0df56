/* test_ledger.c — the contribution ledger (ledger.h, LEDGER-1..4).
 *
 * Acceptance: 5 appended entries verify, and every line equals, byte for byte, what an
 * independent implementation of the documented format (canonical JSON, BLAKE2b-256 chain,
 * Ed25519 over the entry without "sig") produces; ledger_head agrees with verify; reals,
 * UTF-8 and entries larger than the tail window round-trip; an empty file is 0 entries.
 * Rejection: every byte of the file flipped three ways fails at the entry holding the byte
 * (never as "truncated"); a removed line fails at the line after it (broken chain), except
 * the last, which only the head digest reveals; swapped and duplicated lines break the
 * chain; a line signed by another key, or a whole ledger checked with another key, is a bad
 * signature; a correctly signed wrong seq, a garbage line and an over-long line are named.
 * Crashes: every prefix of every line as the file's end (bare or NUL-padded) is TRUNCATED, not
 * corrupt; append cuts such a tail and continues, but refuses damage and foreign keys
 * without touching the file; a failed write or fsync leaves the ledger as it was.
 * The CLI (ledger_verify_main): messages and exit codes 0/1/2, --json. ledger/export_sample
 * writes a sample for tests/ledger_cli.sh when CONCORD_LEDGER_OUT is set. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "identity.h"
#include "ledger.h"
#include "log.h"
#include "tmpdir_fixture.h"

#define N_ENTRIES 5
#define FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))

static char s_dir[64];
static identity_t s_coord, s_other;

static void s_setup(void) {
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/concord_ledger_");
    cr_assert_geq(sodium_init(), 0);
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&s_coord, "coordinator", &err), 0, "%s", err.msg);
    cr_assert_eq(identity_generate(&s_other, "intruder", &err), 0, "%s", err.msg);
    ledger_fault_fail_write_after = ledger_fault_fail_fsync_after = 0;
    cc_log_set_level(CC_LOG_ERROR); /* the torn-tail warnings are expected here */
}

static void s_teardown(void) {
    identity_clear(&s_coord);
    identity_clear(&s_other);
    tmpdir_remove(s_dir);
}

TestSuite(ledger, .init = s_setup, .fini = s_teardown);

static char *s_path(const char *name) { return tmpdir_join(s_dir, name); }

/* ---- files ---- */

static char *s_read(const char *path, size_t *len) {
    char *buf = NULL;
    cc_err_t err = {0};
    cr_assert_eq(fileio_read_all(path, 1u << 30, &buf, len, &err), 0, "%s", err.msg);
    return buf;
}

static void s_write(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* Offsets at which each line starts; starts[n] = len. Returns the number of lines. */
static size_t s_lines(const char *buf, size_t len, size_t *starts, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (i == 0 || buf[i - 1] == '\n') {
            cr_assert_lt(n, max);
            starts[n++] = i;
        }
    starts[n] = len;
    return n;
}

/* ---- entries ---- */

static void s_fake_digest(char hex[65], int a, int b) {
    uint8_t raw[32];
    for (int i = 0; i < 32; i++) raw[i] = (uint8_t)(a * 31 + b * 7 + i * 13);
    sodium_bin2hex(hex, 65, raw, 32);
}

/* An entry as the coordinator would build it (DESIGN §6.1, §7). */
static json_t *s_entry(int round) {
    static const char *ids[] = {"hospital-a", "hospital-b", "clinic.c_3"};
    json_t *clients = json_object();
    for (int k = 0; k < 3; k++) {
        char d[65];
        s_fake_digest(d, round, k + 1);
        json_object_set_new(clients, ids[k],
            json_pack("{s:s,s:i,s:f,s:f,s:f,s:f,s:f}", "update_digest", d, "n_samples",
                      1000 + 37 * k + round, "cos", 0.1 * (k + 1) - 0.05 * round, "b",
                      0.3 / (k + 1.0), "weight", (k + 1) / 6.0, "gap_g", 1.25e-3 * (round + 1),
                      "gap_d", 7.5e-7 * (k + 2)));
    }
    char md[65];
    s_fake_digest(md, round, 0);
    return json_pack("{s:i,s:s,s:o}", "round", round, "model_digest", md, "clients", clients);
}

static void s_append(const char *path, const identity_t *id, json_t *entry) {
    cc_err_t err = {0};
    int rc = ledger_append(path, id, entry, &err);
    json_decref(entry);
    cr_assert_eq(rc, 0, "ledger_append: %s", err.msg);
}

static void s_build(const char *path, int n) {
    for (int r = 0; r < n; r++) s_append(path, &s_coord, s_entry(r));
}

/* Builds an N_ENTRIES ledger at path and returns its bytes (free()), with starts[i] the
 * offset of line i and starts[N_ENTRIES] = *len. */
static char *s_build_and_split(const char *path, size_t *len, size_t starts[16]) {
    s_build(path, N_ENTRIES);
    char *buf = s_read(path, len);
    cr_assert_eq(s_lines(buf, *len, starts, 15), N_ENTRIES);
    return buf;
}

static int s_verify(const char *path, const uint8_t *pk, ledger_report_t *rep) {
    cc_err_t err = {0};
    return ledger_verify(path, pk, rep, &err);
}

/* An independent implementation of the line format of ledger.h (no '\n'; free()). */
static char *s_forge(json_t *entry, uint64_t seq, const char *prev_line, size_t prev_len,
                     const uint8_t sk[64]) {
    json_t *e = json_deep_copy(entry);
    uint8_t d[32] = {0}, sig[64];
    char hex[129];
    if (prev_line) crypto_generichash(d, 32, (const unsigned char *)prev_line, prev_len, NULL, 0);
    sodium_bin2hex(hex, sizeof hex, d, 32);
    json_object_set_new(e, "seq", json_integer((json_int_t)seq));
    json_object_set_new(e, "prev", json_string(hex));
    char *msg = json_dumps(e, FLAGS);
    crypto_sign_detached(sig, NULL, (const unsigned char *)msg, strlen(msg), sk);
    sodium_bin2hex(hex, sizeof hex, sig, 64);
    json_object_set_new(e, "sig", json_string(hex));
    char *line = json_dumps(e, FLAGS);
    free(msg);
    json_decref(e);
    return line;
}

/* ---- acceptance ---- */

Test(ledger, append_verify_and_head) {
    const char *path = s_path("ledger.jsonl");
    json_t *e0 = s_entry(0);
    s_append(path, &s_coord, json_incref(e0));
    cr_assert_null(json_object_get(e0, "sig"), "the caller's entry was modified");
    cr_assert_null(json_object_get(e0, "seq"));
    json_decref(e0);
    for (int r = 1; r < N_ENTRIES; r++) s_append(path, &s_coord, s_entry(r));

    ledger_report_t rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0, "%s", rep.detail);
    cr_assert_eq(rep.entries, N_ENTRIES);
    cr_assert_eq(rep.failure, LEDGER_OK);

    size_t len, st[16];
    char *buf = s_read(path, &len);
    cr_assert_eq(s_lines(buf, len, st, 15), N_ENTRIES);
    uint8_t d[32];
    char hex[65];
    crypto_generichash(d, 32, (unsigned char *)buf + st[4], st[5] - st[4] - 1, NULL, 0);
    sodium_bin2hex(hex, sizeof hex, d, 32);
    cr_assert_str_eq(rep.head, hex);

    ledger_head_t h;
    json_t *last = NULL;
    cc_err_t err = {0};
    cr_assert_eq(ledger_head(path, s_coord.pk, &h, &last, &err), 0, "%s", err.msg);
    cr_assert_eq(h.entries, N_ENTRIES);
    cr_assert_str_eq(h.head, hex);
    cr_assert_eq(h.torn_bytes, 0);
    cr_assert_eq(json_integer_value(json_object_get(last, "round")), 4);
    cr_assert_eq(json_integer_value(json_object_get(last, "seq")), 4);
    json_decref(last);
    free(buf);
}

/* Deterministic Ed25519 lets the format be checked as a known answer, line by line. */
Test(ledger, lines_match_independent_implementation) {
    const char *path = s_path("ledger.jsonl");
    size_t len, st[16];
    char *buf = s_build_and_split(path, &len, st);
    for (int i = 0; i < N_ENTRIES; i++) {
        json_t *e = s_entry(i);
        char *want = i == 0 ? s_forge(e, 0, NULL, 0, s_coord.sk)
                            : s_forge(e, (uint64_t)i, buf + st[i - 1], st[i] - st[i - 1] - 1,
                                      s_coord.sk);
        size_t n = st[i + 1] - st[i];
        cr_assert_eq(buf[st[i] + n - 1], '\n');
        cr_assert_eq(strlen(want), n - 1, "line %d: length %zu, want %zu", i + 1, n - 1,
                     strlen(want));
        cr_assert(memcmp(want, buf + st[i], n - 1) == 0, "line %d differs:\n%.*s\n%s", i + 1,
                  (int)(n - 1), buf + st[i], want);
        free(want);
        json_decref(e);
    }
    cr_assert(strncmp(buf, "{\"clients\":{\"clinic.c_3\":{", 26) == 0, "%.40s", buf);
    free(buf);
}

Test(ledger, empty_and_missing_files) {
    const char *path = s_path("empty.jsonl");
    s_write(path, "", 0);
    ledger_report_t rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0);
    cr_assert_eq(rep.entries, 0);
    cr_assert_str_eq(rep.head, "0000000000000000000000000000000000000000000000000000000000000000");
    cr_assert_eq(s_verify(s_path("missing.jsonl"), s_coord.pk, &rep), CC_ERR_IO);
    cr_assert_eq(rep.failure, LEDGER_OK);
    ledger_head_t h;
    cc_err_t err = {0};
    cr_assert_eq(ledger_head(s_path("missing.jsonl"), s_coord.pk, &h, NULL, &err), 0);
    cr_assert_eq(h.entries, 0);
    /* The first append to an empty file starts the chain at zeros. */
    s_append(path, &s_coord, s_entry(0));
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0, "%s", rep.detail);
    cr_assert_eq(rep.entries, 1);
}

Test(ledger, reals_utf8_and_big_entries_round_trip) {
    const char *path = s_path("ledger.jsonl");
    double v[] = {0.1, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1e21,
                  1e20, 100000.0, 1.0 / 3.0, -2.5e-7, 123456789.125};
    json_t *arr = json_array();
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) json_array_append_new(arr, json_real(v[i]));
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 500; i++) { /* xorshift: arbitrary finite bit patterns */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        uint64_t bits = x;
        memcpy(&d, &bits, 8);
        if (isfinite(d)) json_array_append_new(arr, json_real(d));
    }
    json_t *e = json_pack("{s:o,s:s,s:[b,b,n,i]}", "reals", arr, "note",
                          "h\xc3\xa9llo \xe2\x9c\x93 \"q\" \\ \n\t\x01 / \xf0\x9f\x98\x80", "misc",
                          1, 0, -7);
    s_append(path, &s_coord, json_incref(e));
    /* bigger than the first tail window, so appending after it has to widen the window */
    char *big = malloc(100001);
    memset(big, 'x', 100000);
    big[100000] = 0;
    s_append(path, &s_coord, json_pack("{s:s}", "blob", big));
    s_append(path, &s_coord, json_pack("{s:s}", "blob", big));
    s_append(path, &s_coord, json_pack("{s:i}", "round", 3));
    free(big);

    ledger_report_t rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0, "%s", rep.detail);
    cr_assert_eq(rep.entries, 4);
    size_t len;
    char *buf = s_read(path, &len);
    json_t *first = json_loadb(buf, (size_t)(strchr(buf, '\n') - buf), 0, NULL);
    cr_assert_not_null(first);
    json_t *got = json_object_get(first, "reals");
    cr_assert_eq(json_array_size(got), json_array_size(arr));
    for (size_t i = 0; i < json_array_size(arr); i++) {
        double a = json_real_value(json_array_get(arr, i));
        double b = json_real_value(json_array_get(got, i));
        cr_assert(memcmp(&a, &b, 8) == 0, "real %zu: %.17g came back as %.17g", i, a, b);
    }
    cr_assert(json_equal(json_object_get(first, "note"), json_object_get(e, "note")));
    json_decref(first);
    json_decref(e);
    free(buf);
}

/* ---- rejection ---- */

/* Every byte, flipped three ways, fails at the entry holding it (a line's '\n' belongs to
 * it), as damage, never as a torn line. */
Test(ledger, every_byte_flip_names_its_entry) {
    const char *path = s_path("ledger.jsonl"), *copy = s_path("copy.jsonl");
    size_t len, st[16];
    char *buf = s_build_and_split(path, &len, st);
    static const uint8_t masks[] = {0x01, 0x20, 0x80};
    int kinds[LEDGER_FAIL_TRUNCATED + 1] = {0};
    for (size_t p = 0, line = 0; p < len; p++) {
        while (p >= st[line + 1]) line++;
        for (size_t m = 0; m < sizeof masks; m++) {
            buf[p] ^= (char)masks[m];
            s_write(copy, buf, len);
            buf[p] ^= (char)masks[m];
            ledger_report_t rep;
            int rc = s_verify(copy, s_coord.pk, &rep);
            cr_assert_eq(rc, CC_ERR_CORRUPT, "byte %zu ^ 0x%02x (line %zu, '%c'): rc %d, %s", p,
                         masks[m], line + 1, buf[p], rc, rep.detail);
            cr_assert_neq(rep.failure, LEDGER_FAIL_TRUNCATED);
            cr_assert_eq(rep.bad_entry, line, "byte %zu ^ 0x%02x: blamed entry %llu, want %zu (%s)",
                         p, masks[m], (unsigned long long)rep.bad_entry, line, rep.detail);
            cr_assert_eq(rep.entries, line);
            cr_assert_eq(rep.bad_offset, st[line]);
            kinds[rep.failure]++;
        }
    }
    cr_log_info("%zu bytes x 3 flips: bad JSON %d, not canonical %d, bad signature %d", len,
                kinds[LEDGER_FAIL_BAD_JSON], kinds[LEDGER_FAIL_NOT_CANONICAL],
                kinds[LEDGER_FAIL_BAD_SIGNATURE]);
    /* each kind of damage occurred; a flipped "seq" or "prev" is caught by the signature */
    cr_assert_gt(kinds[LEDGER_FAIL_BAD_JSON], 0);
    cr_assert_gt(kinds[LEDGER_FAIL_NOT_CANONICAL], 0);
    cr_assert_gt(kinds[LEDGER_FAIL_BAD_SIGNATURE], 0);
    cr_assert_eq(kinds[LEDGER_FAIL_BROKEN_CHAIN] + kinds[LEDGER_FAIL_WRONG_SEQ], 0);

    /* Named spots: a digit of n_samples, a hex digit of a client's update digest and of the
     * signature, and the case of a signature digit (JSON alone would not notice). */
    const char *spots[] = {"\"n_samples\":10", "\"update_digest\":\"", "\"sig\":\"", "\"sig\":\""};
    const int shift[] = {12, 20, 10, 10};
    for (int s = 0; s < 4; s++) {
        char *at = strstr(buf + st[2], spots[s]);
        cr_assert_not_null(at);
        size_t p = (size_t)(at - buf) + (size_t)shift[s];
        char was = buf[p];
        if (s == 3) {
            while (!(buf[p] >= 'a' && buf[p] <= 'f')) p++;
            was = buf[p];
            buf[p] = (char)(buf[p] - 'a' + 'A');
        } else {
            buf[p] = was == '9' ? '8' : (char)(was + 1);
        }
        s_write(copy, buf, len);
        buf[p] = was;
        ledger_report_t rep;
        cr_assert_eq(s_verify(copy, s_coord.pk, &rep), CC_ERR_CORRUPT);
        cr_assert_eq(rep.bad_entry, 2);
        cr_assert_eq(rep.failure, LEDGER_FAIL_BAD_SIGNATURE, "spot %d: %s", s, rep.detail);
    }
    free(buf);
}

static void s_write_lines(const char *path, const char *buf, const size_t *st, const int *order,
                          int n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (int i = 0; i < n; i++)
        fwrite(buf + st[order[i]], 1, st[order[i] + 1] - st[order[i]], f);
    cr_assert_eq(fclose(f), 0);
}

Test(ledger, removed_swapped_and_duplicated_lines_break_the_chain) {
    const char *path = s_path("ledger.jsonl"), *copy = s_path("copy.jsonl");
    size_t len, st[16];
    char *buf = s_build_and_split(path, &len, st);
    ledger_report_t good, rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &good), 0);

    for (int k = 0; k < N_ENTRIES; k++) { /* remove line k */
        int order[N_ENTRIES], n = 0;
        for (int i = 0; i < N_ENTRIES; i++)
            if (i != k) order[n++] = i;
        s_write_lines(copy, buf, st, order, n);
        int rc = s_verify(copy, s_coord.pk, &rep);
        if (k == N_ENTRIES - 1) {
            /* The documented limit: a shorter ledger is valid; only its head differs. */
            cr_assert_eq(rc, 0);
            cr_assert_eq(rep.entries, N_ENTRIES - 1);
            cr_assert_str_neq(rep.head, good.head);
            continue;
        }
        cr_assert_eq(rc, CC_ERR_CORRUPT, "removed line %d", k + 1);
        cr_assert_eq(rep.failure, LEDGER_FAIL_BROKEN_CHAIN, "removed line %d: %s", k + 1,
                     rep.detail);
        cr_assert_eq(rep.bad_entry, (uint64_t)k);
        cr_assert_eq(rep.entries, (uint64_t)k);
    }
    for (int k = 0; k + 1 < N_ENTRIES; k++) { /* swap lines k and k+1 */
        int order[N_ENTRIES] = {0, 1, 2, 3, 4};
        order[k] = k + 1, order[k + 1] = k;
        s_write_lines(copy, buf, st, order, N_ENTRIES);
        cr_assert_eq(s_verify(copy, s_coord.pk, &rep), CC_ERR_CORRUPT);
        cr_assert_eq(rep.failure, LEDGER_FAIL_BROKEN_CHAIN, "swap %d: %s", k, rep.detail);
        cr_assert_eq(rep.bad_entry, (uint64_t)k);
    }
    for (int k = 0; k < N_ENTRIES; k++) { /* line k twice */
        int order[N_ENTRIES + 1], n = 0;
        for (int i = 0; i < N_ENTRIES; i++) {
            order[n++] = i;
            if (i == k) order[n++] = i;
        }
        s_write_lines(copy, buf, st, order, n);
        cr_assert_eq(s_verify(copy, s_coord.pk, &rep), CC_ERR_CORRUPT);
        cr_assert_eq(rep.failure, LEDGER_FAIL_BROKEN_CHAIN, "dup %d: %s", k, rep.detail);
        cr_assert_eq(rep.bad_entry, (uint64_t)k + 1);
    }
    free(buf);
}

Test(ledger, foreign_key_is_a_bad_signature) {
    const char *path = s_path("ledger.jsonl");
    size_t len, st[16];
    char *buf = s_build_and_split(path, &len, st);
    ledger_report_t rep;
    /* the whole ledger against another key: the first entry is already bad */
    cr_assert_eq(s_verify(path, s_other.pk, &rep), CC_ERR_CORRUPT);
    cr_assert_eq(rep.failure, LEDGER_FAIL_BAD_SIGNATURE);
    cr_assert_eq(rep.bad_entry, 0);
    /* ledger_append refuses to extend it with the intruder's key (LEDGER-3) */
    cc_err_t err = {0};
    json_t *e = s_entry(5);
    cr_assert_eq(ledger_append(path, &s_other, e, &err), CC_ERR_CORRUPT);
    cr_assert(strstr(err.msg, "bad signature"), "%s", err.msg);
    size_t len2;
    char *buf2 = s_read(path, &len2);
    cr_assert(len2 == len && memcmp(buf, buf2, len) == 0, "refused append changed the file");
    free(buf2);
    /* a well-formed 6th line, chained right, signed by the intruder */
    char *forged = s_forge(e, N_ENTRIES, buf + st[4], st[5] - st[4] - 1, s_other.sk);
    FILE *f = fopen(path, "ab");
    fprintf(f, "%s\n", forged);
    fclose(f);
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), CC_ERR_CORRUPT);
    cr_assert_eq(rep.failure, LEDGER_FAIL_BAD_SIGNATURE, "%s", rep.detail);
    cr_assert_eq(rep.bad_entry, N_ENTRIES);
    cr_assert_eq(rep.entries, N_ENTRIES);
    free(forged);
    json_decref(e);
    free(buf);
}

Test(ledger, signed_wrong_seq_garbage_and_long_lines) {
    const char *path = s_path("ledger.jsonl");
    s_build(path, 2);
    size_t len, st[16];
    char *buf = s_read(path, &len);
    cr_assert_eq(s_lines(buf, len, st, 15), 2);
    json_t *e = s_entry(2);
    /* the coordinator's own key, right chain, wrong position */
    char *line = s_forge(e, 7, buf + st[1], st[2] - st[1] - 1, s_coord.sk);
    FILE *f = fopen(path, "ab");
    fprintf(f, "%s\n", line);
    fclose(f);
    ledger_report_t rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), CC_ERR_CORRUPT);
    cr_assert_eq(rep.failure, LEDGER_FAIL_WRONG_SEQ, "%s", rep.detail);
    cr_assert_eq(rep.bad_entry, 2);
    cr_assert(strstr(rep.detail, "7, expected 2"), "%s", rep.detail);
    free(line);
    json_decref(e);

    const char *g = s_path("garbage.jsonl");
    s_write(g, buf, len);
    f = fopen(g, "ab");
    fputs("hello\n", f);
    fclose(f);
    cr_assert_eq(s_verify(g, s_coord.pk, &rep), CC_ERR_CORRUPT);
    cr_assert_eq(rep.failure, LEDGER_FAIL_BAD_JSON);
    cr_assert_eq(rep.bad_entry, 2);

    s_write(g, buf, len); /* a blank line is not an entry either */
    f = fopen(g, "ab");
    fputs("\n", f);
    fclose(f);
    cr_assert_eq(s_verify(g, s_coord.pk, &rep), CC_ERR_CORRUPT);
    cr_assert_eq(rep.failure, LEDGER_FAIL_BAD_JSON);

    /* a line over the limit is refused without buffering it, with or without its '\n' */
    for (int nl = 0; nl < 2; nl++) {
        size_t n = LEDGER_MAX_LINE + 10;
        char *big = malloc(len + n + 1);
        memcpy(big, buf, len);
        memset(big + len, 'x', n);
        big[len + n] = '\n';
        s_write(g, big, len + n + (size_t)nl);
        free(big);
        cr_assert_eq(s_verify(g, s_coord.pk, &rep), CC_ERR_CORRUPT);
        cr_assert_eq(rep.failure, LEDGER_FAIL_TOO_LONG, "%s", rep.detail);
        cr_assert_eq(rep.bad_entry, 2);
        cc_err_t err = {0};
        json_t *e2 = json_pack("{s:i}", "round", 2);
        cr_assert_eq(ledger_append(g, &s_coord, e2, &err), CC_ERR_CORRUPT);
        json_decref(e2);
    }
    free(buf);
}

/* Regression (fuzz/crashes/ledger/empty-first-line): an empty first line reached the
 * checks with no line buffer at all (memcpy into NULL, UB, and a NULL "line" for the JSON
 * parser). It is bad JSON on line 1, said exactly as for a blank line further down. */
Test(ledger, empty_first_line_is_bad_json) {
    const char *path = s_path("ledger.jsonl"), *g = s_path("blank.jsonl");
    s_build(path, 2);
    size_t len;
    char *buf = s_read(path, &len);
    ledger_report_t later, rep;
    s_write(g, buf, len); /* the blank line after two entries */
    FILE *f = fopen(g, "ab");
    fputs("\n", f);
    fclose(f);
    cr_assert_eq(s_verify(g, s_coord.pk, &later), CC_ERR_CORRUPT);
    cr_assert_eq(later.failure, LEDGER_FAIL_BAD_JSON);

    char *first = malloc(len + 1);
    first[0] = '\n';
    memcpy(first + 1, buf, len);
    for (int alone = 0; alone < 2; alone++) { /* before the entries; alone (the reproducer) */
        s_write(g, first, alone ? 1 : len + 1);
        cr_assert_eq(s_verify(g, s_coord.pk, &rep), CC_ERR_CORRUPT);
        cr_assert_eq(rep.failure, LEDGER_FAIL_BAD_JSON, "%s", rep.detail);
        cr_assert_eq(rep.bad_entry, 0);
        cr_assert_eq(rep.bad_offset, 0);
        cr_assert_eq(rep.entries, 0);
        cr_assert_str_eq(rep.detail, later.detail);
    }
    free(first);
    free(buf);
}

/* ---- crashes ---- */

/* Every prefix of every line, bare or NUL-padded, as the end of the file is a torn append:
 * the entries before it verify. */
static void s_check_torn_prefixes(const char *path) {
    const char *copy = s_path("torn.jsonl");
    size_t len, st[16];
    char *buf = s_read(path, &len);
    size_t n = s_lines(buf, len, st, 15);
    char *pad = malloc(len + 64);
    for (size_t k = 0; k < n; k++) {
        for (size_t cut = st[k] + 1; cut < st[k + 1]; cut++) {
            for (int padded = 0; padded < 2; padded++) {
                memcpy(pad, buf, cut);
                memset(pad + cut, 0, 64);
                s_write(copy, pad, cut + (padded ? 64 : 0));
                ledger_report_t rep;
                int rc = s_verify(copy, s_coord.pk, &rep);
                cr_assert_eq(rc, CC_ERR_TRUNCATED, "cut at %zu of %zu (padded %d): rc %d %s", cut,
                             len, padded, rc, rep.detail);
                cr_assert_eq(rep.failure, LEDGER_FAIL_TRUNCATED);
                cr_assert_eq(rep.bad_entry, k);
                cr_assert_eq(rep.entries, k);
            }
        }
    }
    free(pad);
    free(buf);
}

Test(ledger, torn_final_line_is_truncated_not_tampering) {
    const char *path = s_path("ledger.jsonl");
    s_build(path, N_ENTRIES);
    s_check_torn_prefixes(path);
    /* a zero-filled tail after the last complete line */
    const char *copy = s_path("zeros.jsonl");
    size_t len;
    char *buf = s_read(path, &len);
    char *z = calloc(1, len + 4096);
    memcpy(z, buf, len);
    s_write(copy, z, len + 4096);
    ledger_report_t rep;
    cr_assert_eq(s_verify(copy, s_coord.pk, &rep), CC_ERR_TRUNCATED);
    cr_assert_eq(rep.entries, N_ENTRIES);
    /* but bytes after a complete object are damage: "...}x", "...} " */
    memcpy(z, buf, len);
    z[len - 1] = 'x';
    s_write(copy, z, len);
    cr_assert_eq(s_verify(copy, s_coord.pk, &rep), CC_ERR_CORRUPT);
    cr_assert_eq(rep.bad_entry, N_ENTRIES - 1);
    z[len - 1] = ' ';
    s_write(copy, z, len);
    cr_assert_eq(s_verify(copy, s_coord.pk, &rep), CC_ERR_CORRUPT);
    cr_assert_eq(rep.failure, LEDGER_FAIL_NOT_CANONICAL);
    /* and so is a torn line with an impossible byte in it */
    memcpy(z, buf, len - 20);
    z[len - 40] = '\x01';
    s_write(copy, z, len - 20);
    cr_assert_eq(s_verify(copy, s_coord.pk, &rep), CC_ERR_CORRUPT);
    free(z);
    free(buf);
}

Test(ledger, torn_prefixes_of_every_json_construct) {
    const char *path = s_path("ledger.jsonl");
    s_append(path, &s_coord, json_pack("{s:[b,b,n,i,f,f,f,i,[],{}],s:s,s:{s:{s:[]}}}", "a", 1, 0,
                                       -12, -1.5e-7, 0.0, -1e300, 0, "s",
                                       "\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80 \"\\\n\x01/", "o",
                                       "p", "q"));
    s_append(path, &s_coord, json_pack("{s:[f,f,i],s:s}", "r", -0.0, 1e21, 0, "u",
                                       "tail \xe2\x82\xac"));
    s_check_torn_prefixes(path);
}

Test(ledger, append_cuts_a_torn_tail_and_continues) {
    const char *path = s_path("ledger.jsonl");
    size_t len, st[16];
    char *buf = s_build_and_split(path, &len, st);
    size_t cut = st[4] + (st[5] - st[4]) / 2;
    s_write(path, buf, cut);
    ledger_head_t h;
    cc_err_t err = {0};
    cr_assert_eq(ledger_head(path, s_coord.pk, &h, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(h.entries, N_ENTRIES - 1);
    cr_assert_eq(h.torn_bytes, cut - st[4]);
    s_append(path, &s_coord, json_pack("{s:i}", "round", 99));
    ledger_report_t rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0, "%s", rep.detail);
    cr_assert_eq(rep.entries, N_ENTRIES);
    json_t *last = NULL;
    cr_assert_eq(ledger_head(path, s_coord.pk, &h, &last, &err), 0, "%s", err.msg);
    cr_assert_eq(json_integer_value(json_object_get(last, "round")), 99);
    cr_assert_eq(json_integer_value(json_object_get(last, "seq")), N_ENTRIES - 1);
    json_decref(last);

    /* a complete last line that lost only its '\n' is torn too; append replaces it */
    s_write(path, buf, len - 1);
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), CC_ERR_TRUNCATED);
    cr_assert(strstr(rep.detail, "complete entry"), "%s", rep.detail);
    s_append(path, &s_coord, json_pack("{s:i}", "round", 4));
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0, "%s", rep.detail);
    cr_assert_eq(rep.entries, N_ENTRIES);

    /* a torn first line: the file restarts */
    s_write(path, buf, 10);
    s_append(path, &s_coord, s_entry(0));
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0, "%s", rep.detail);
    cr_assert_eq(rep.entries, 1);
    free(buf);
}

Test(ledger, append_refuses_damage_without_touching_the_file) {
    const char *path = s_path("ledger.jsonl");
    s_build(path, 3);
    size_t len;
    char *buf = s_read(path, &len);
    const char *bad[] = {"x", " ", "{\"a\":1}", "{\"a\":tx"};
    for (int i = 0; i < 4; i++) {
        s_write(path, buf, len);
        FILE *f = fopen(path, "ab");
        fputs(bad[i], f);
        fclose(f);
        cc_err_t err = {0};
        json_t *e = s_entry(3);
        cr_assert_eq(ledger_append(path, &s_coord, e, &err), CC_ERR_CORRUPT, "tail '%s'", bad[i]);
        cr_assert(strstr(err.msg, "not a torn append"), "%s", err.msg);
        json_decref(e);
        ledger_head_t h;
        cr_assert_eq(ledger_head(path, s_coord.pk, &h, NULL, &err), CC_ERR_CORRUPT);
        size_t len2;
        char *b2 = s_read(path, &len2);
        cr_assert_eq(len2, len + strlen(bad[i]));
        free(b2);
    }
    /* a damaged last line (flipped byte) also stops appends */
    buf[len - 10] ^= 0x01;
    s_write(path, buf, len);
    cc_err_t err = {0};
    json_t *e = s_entry(3);
    cr_assert_eq(ledger_append(path, &s_coord, e, &err), CC_ERR_CORRUPT);
    cr_assert(strstr(err.msg, "last entry"), "%s", err.msg);
    json_decref(e);
    free(buf);
}

Test(ledger, append_argument_refusals) {
    const char *path = s_path("ledger.jsonl");
    s_build(path, 1);
    size_t len;
    char *before = s_read(path, &len);
    cc_err_t err = {0};
    json_t *bad[6];
    bad[0] = json_array();
    bad[1] = json_pack("{s:i}", "seq", 3);
    bad[2] = json_pack("{s:s}", "prev", "00");
    bad[3] = json_pack("{s:s}", "sig", "00");
    bad[4] = json_pack("{s:s%}", "nul", "a\0b", (size_t)3);
    char *huge = malloc(LEDGER_MAX_LINE + 1);
    memset(huge, 'y', LEDGER_MAX_LINE);
    huge[LEDGER_MAX_LINE] = 0;
    bad[5] = json_pack("{s:s}", "huge", huge);
    free(huge);
    for (int i = 0; i < 6; i++) {
        cr_assert_not_null(bad[i], "%d", i);
        cr_assert_eq(ledger_append(path, &s_coord, bad[i], &err), CC_ERR_ARG, "case %d", i);
        json_decref(bad[i]);
    }
    cr_assert_eq(ledger_append(path, &s_coord, NULL, &err), CC_ERR_ARG);
    size_t len2;
    char *after = s_read(path, &len2);
    cr_assert(len == len2 && memcmp(before, after, len) == 0);
    free(before);
    free(after);
}

Test(ledger, failed_write_or_fsync_leaves_the_ledger_as_it_was) {
    const char *path = s_path("ledger.jsonl");
    s_build(path, 3);
    size_t len;
    char *before = s_read(path, &len);
    for (int which = 0; which < 2; which++) {
        if (which == 0) ledger_fault_fail_write_after = 1;
        else ledger_fault_fail_fsync_after = 1;
        cc_err_t err = {0};
        json_t *e = s_entry(3);
        cr_assert_eq(ledger_append(path, &s_coord, e, &err), CC_ERR_IO);
        cr_assert(strstr(err.msg, which ? "fsync" : "write"), "%s", err.msg);
        json_decref(e);
        size_t len2;
        char *after = s_read(path, &len2);
        cr_assert(len == len2 && memcmp(before, after, len) == 0, "fault %d changed the file",
                  which);
        free(after);
        ledger_head_t h;
        cr_assert_eq(ledger_head(path, s_coord.pk, &h, NULL, &err), 0);
        cr_assert_eq(h.entries, 3);
    }
    s_append(path, &s_coord, s_entry(3));
    ledger_report_t rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0, "%s", rep.detail);
    cr_assert_eq(rep.entries, 4);
    free(before);
}

/* ---- the CLI ---- */

typedef struct {
    int rc;
    char out[4096], err[4096];
} s_cli_t;

static void s_slurp(int fd, char *buf, size_t cap) {
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
}

static s_cli_t s_cli(int argc, const char **args) {
    static s_cli_t r;
    char *argv[16];
    cr_assert_lt(argc, 16);
    for (int i = 0; i < argc; i++) argv[i] = (char *)args[i];
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int o = open(s_path("cli.out"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    int e = open(s_path("cli.err"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    int so = dup(1), se = dup(2);
    dup2(o, 1), dup2(e, 2);
    r.rc = ledger_verify_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1), dup2(se, 2);
    close(so), close(se);
    s_slurp(o, r.out, sizeof r.out);
    s_slurp(e, r.err, sizeof r.err);
    return r;
}

Test(ledger, cli_messages_and_exit_codes) {
    char path[300], bad[300], torn[300], nope[300], nope_pub[300];
    snprintf(path, sizeof path, "%s", s_path("ledger.jsonl")); /* s_path's buffers rotate */
    snprintf(bad, sizeof bad, "%s", s_path("bad.jsonl"));
    snprintf(torn, sizeof torn, "%s", s_path("torn.jsonl"));
    snprintf(nope, sizeof nope, "%s", s_path("nope.jsonl"));
    snprintf(nope_pub, sizeof nope_pub, "%s", s_path("nope.pub"));
    s_build(path, N_ENTRIES);
    cc_err_t err = {0};
    cr_assert_eq(identity_save(&s_coord, s_dir, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(identity_save(&s_other, s_dir, 1, &err), 0, "%s", err.msg);
    char pub[300], other[300], want[600];
    snprintf(pub, sizeof pub, "%s/coordinator.pub", s_dir);
    snprintf(other, sizeof other, "%s/intruder.pub", s_dir);

    s_cli_t r = s_cli(2, (const char *[]){"verify-ledger", "--help"});
    cr_assert_eq(r.rc, 0);
    cr_assert(strstr(r.out, "Usage: concord-coordinator verify-ledger"), "%s", r.out);

    r = s_cli(4, (const char *[]){"verify-ledger", path, "--public-key", pub});
    cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
    snprintf(want, sizeof want, "ledger %s: 5 entries, chain and signatures OK\n", path);
    cr_assert_str_eq(r.out, want);

    r = s_cli(3, (const char *[]){"verify-ledger", "--public-key=" , path}); /* empty key path */
    cr_assert_eq(r.rc, 1);

    /* options in any order; --json */
    r = s_cli(5, (const char *[]){"verify-ledger", "--json", "--public-key", pub, path});
    cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
    json_t *j = json_loads(r.out, 0, NULL);
    cr_assert_not_null(j, "%s", r.out);
    cr_assert(json_is_true(json_object_get(j, "ok")));
    cr_assert_eq(json_integer_value(json_object_get(j, "entries")), 5);
    ledger_report_t rep;
    cr_assert_eq(s_verify(path, s_coord.pk, &rep), 0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "head")), rep.head);
    cr_assert_str_eq(json_string_value(json_object_get(j, "signer")), "coordinator");
    json_decref(j);

    /* a flipped digit in entry 2 */
    size_t len, st[16];
    char *buf = s_read(path, &len);
    cr_assert_eq(s_lines(buf, len, st, 15), N_ENTRIES);
    char *at = strstr(buf + st[2], "\"n_samples\":10");
    at[13] = at[13] == '9' ? '8' : (char)(at[13] + 1);
    s_write(bad, buf, len);
    free(buf);
    r = s_cli(4, (const char *[]){"verify-ledger", bad, "--public-key", pub});
    cr_assert_eq(r.rc, 1);
    snprintf(want, sizeof want, "ledger %s: entry 2 (line 3): bad signature", bad);
    cr_assert(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
    r = s_cli(5, (const char *[]){"verify-ledger", bad, "--public-key", pub, "--json"});
    cr_assert_eq(r.rc, 1);
    j = json_loads(r.out, 0, NULL);
    cr_assert_not_null(j, "%s", r.out);
    cr_assert(json_is_false(json_object_get(j, "ok")));
    json_t *fail = json_object_get(j, "failure");
    cr_assert_str_eq(json_string_value(json_object_get(fail, "kind")), "bad_signature");
    cr_assert_eq(json_integer_value(json_object_get(fail, "entry")), 2);
    cr_assert_eq(json_integer_value(json_object_get(fail, "line")), 3);
    json_decref(j);

    /* the wrong key */
    r = s_cli(4, (const char *[]){"verify-ledger", path, "--public-key", other});
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.out, "entry 0 (line 1): bad signature"), "%s", r.out);

    /* a torn tail says so */
    buf = s_read(path, &len);
    s_write(torn, buf, len - 7);
    free(buf);
    r = s_cli(4, (const char *[]){"verify-ledger", torn, "--public-key", pub});
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.out, "entry 4 (line 5): truncated final line"), "%s", r.out);
    cr_assert(strstr(r.out, "not tampering"), "%s", r.out);

    /* files that cannot be read: 1, on stderr */
    r = s_cli(4, (const char *[]){"verify-ledger", nope, "--public-key", pub});
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "nope.jsonl"), "%s", r.err);
    r = s_cli(4, (const char *[]){"verify-ledger", path, "--public-key", nope_pub});
    cr_assert_eq(r.rc, 1);
    r = s_cli(5, (const char *[]){"verify-ledger", nope, "--public-key", pub, "--json"});
    cr_assert_eq(r.rc, 1);
    j = json_loads(r.out, 0, NULL);
    cr_assert_not_null(json_object_get(j, "error"), "%s", r.out);
    json_decref(j);

    /* usage: 2 */
    cr_assert_eq(s_cli(1, (const char *[]){"verify-ledger"}).rc, 2);
    cr_assert_eq(s_cli(2, (const char *[]){"verify-ledger", path}).rc, 2);
    cr_assert_eq(s_cli(3, (const char *[]){"verify-ledger", "--public-key", pub}).rc, 2);
    cr_assert_eq(s_cli(3, (const char *[]){"verify-ledger", path, "--public-key"}).rc, 2);
    r = s_cli(5, (const char *[]){"verify-ledger", path, path, "--public-key", pub});
    cr_assert_eq(r.rc, 2);
    r = s_cli(5, (const char *[]){"verify-ledger", path, "--public-key", pub, "--bogus"});
    cr_assert_eq(r.rc, 2);
    cr_assert(strstr(r.err, "--bogus"), "%s", r.err);
}

/* For tests/ledger_cli.sh: a sample ledger and keys in $CONCORD_LEDGER_OUT (no-op without). */
Test(ledger, export_sample) {
    const char *out = getenv("CONCORD_LEDGER_OUT");
    if (!out || !*out) return;
    char path[512];
    snprintf(path, sizeof path, "%s/ledger.jsonl", out);
    unlink(path);
    s_build(path, N_ENTRIES);
    cc_err_t err = {0};
    cr_assert_eq(identity_save(&s_coord, out, 1, &err), 0, "%s", err.msg); /* coordinator.pub */
    cr_assert_eq(identity_save(&s_other, out, 1, &err), 0, "%s", err.msg); /* intruder.pub */
}
