/* test_identity.c — identities, key files, enrolment lists, CURVE derivation.
 *
 * Acceptance: generate -> save -> load round trips (secret and public files); the key file
 * has mode 0600 (also under a permissive umask) and .pub holds only public data; comments,
 * blank lines and CRLF are accepted; CURVE keys equal libsodium's conversion encoded by
 * zmq_z85_encode and form a real X25519 pair; enrolment lookups by id and by CURVE key;
 * overwrite with force. Rejection: a 0644 / 0640 key (message names the chmod), an
 * existing key without force, a failed fsync (old file intact), key files with a wrong
 * header, bad hex, wrong length, unknown/duplicate/missing keys, an inconsistent secret,
 * enrolment files with malformed lines, bad hex, wrong length, invalid ids, duplicate ids
 * or keys, an invalid curve point — each naming file:line. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "fileio.h"
#include "identity.h"
#include "tmpdir_fixture.h"

static char s_dir[64];

static void s_setup(void) {
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/concord_ident_");
    cr_assert_geq(sodium_init(), 0);
    fileio_fault_fail_sync_after = 0;
}

static void s_teardown(void) { tmpdir_remove(s_dir); }

TestSuite(identity, .init = s_setup, .fini = s_teardown);

static char *s_path(const char *name) { return tmpdir_join(s_dir, name); }

static void s_write(const char *name, const char *text, mode_t mode) {
    const char *p = s_path(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(p, mode), 0);
}

static const char *s_hex(const uint8_t *b, size_t n) {
    static char out[2][257];
    static int k;
    k ^= 1;
    sodium_bin2hex(out[k], sizeof out[k], b, n);
    return out[k];
}

/* ---- identities ---- */

Test(identity, generate_save_load_round_trip) {
    identity_t a, b;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "hospital-a", &err), 0, "%s", err.msg);
    cr_assert_eq(identity_save(&a, s_dir, 0, &err), 0, "%s", err.msg);

    struct stat st;
    cr_assert_eq(stat(s_path("hospital-a.key"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);

    cr_assert_eq(identity_load(&b, s_path("hospital-a.key"), &err), 0, "%s", err.msg);
    cr_assert_str_eq(b.id, "hospital-a");
    cr_assert_eq(memcmp(a.pk, b.pk, sizeof a.pk), 0);
    cr_assert_eq(memcmp(a.sk, b.sk, sizeof a.sk), 0);
    cr_assert_str_eq(a.curve_public, b.curve_public);
    cr_assert_str_eq(a.curve_secret, b.curve_secret);

    identity_public_t pub;
    cr_assert_eq(identity_load_public(&pub, s_path("hospital-a.pub"), &err), 0, "%s", err.msg);
    cr_assert_str_eq(pub.id, "hospital-a");
    cr_assert_eq(memcmp(pub.pk, a.pk, sizeof a.pk), 0);
    cr_assert_str_eq(pub.curve_public, a.curve_public);

    /* the .pub holds no secret */
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(fileio_read_all(s_path("hospital-a.pub"), 4096, &text, &len, &err), 0);
    cr_assert_null(strstr(text, s_hex(a.sk, 32)));
    cr_assert_not_null(strstr(text, s_hex(a.pk, 32)));
    free(text);

    /* signatures made with the loaded key verify with the generated public key */
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, (const uint8_t *)"m", 1, b.sk);
    cr_assert_eq(crypto_sign_verify_detached(sig, (const uint8_t *)"m", 1, a.pk), 0);

    identity_clear(&b);
    uint8_t zero[64] = {0};
    cr_assert_eq(memcmp(b.sk, zero, 64), 0);
    cr_assert_eq(memcmp(b.curve_secret, zero, sizeof b.curve_secret), 0);
    identity_clear(&a);
}

Test(identity, generate_refuses_invalid_ids) {
    identity_t a;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "", &err), CC_ERR_ARG);
    cr_assert_eq(identity_generate(&a, "a b", &err), CC_ERR_ARG);
    cr_assert_eq(identity_generate(&a, "../etc", &err), CC_ERR_ARG);
    cr_assert_eq(identity_generate(&a, NULL, &err), CC_ERR_ARG);
}

Test(identity, key_mode_is_0600_even_with_permissive_umask) {
    mode_t old = umask(0);
    identity_t a;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "n1", &err), 0);
    cr_assert_eq(identity_save(&a, s_dir, 0, &err), 0, "%s", err.msg);
    umask(old);
    struct stat st;
    cr_assert_eq(stat(s_path("n1.key"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    identity_clear(&a);
}

Test(identity, group_or_world_readable_key_refused) {
    identity_t a, b;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "n2", &err), 0);
    cr_assert_eq(identity_save(&a, s_dir, 0, &err), 0);
    mode_t bad[] = {0644, 0640, 0604, 0660, 0601};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(chmod(s_path("n2.key"), bad[i]), 0);
        int rc = identity_load(&b, s_path("n2.key"), &err);
        cr_assert_neq(rc, 0, "mode %o accepted", bad[i]);
        cr_assert_not_null(strstr(err.msg, "chmod 600"), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "n2.key"), "%s", err.msg);
    }
    cr_assert_eq(chmod(s_path("n2.key"), 0400), 0);
    cr_assert_eq(identity_load(&b, s_path("n2.key"), &err), 0, "%s", err.msg);
    identity_clear(&a);
    identity_clear(&b);
}

Test(identity, save_refuses_overwrite_without_force) {
    identity_t a, b, c;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "n3", &err), 0);
    cr_assert_eq(identity_generate(&b, "n3", &err), 0);
    cr_assert_eq(identity_save(&a, s_dir, 0, &err), 0);
    cr_assert_neq(identity_save(&b, s_dir, 0, &err), 0);
    cr_assert_not_null(strstr(err.msg, "already exists"), "%s", err.msg);
    cr_assert_eq(identity_load(&c, s_path("n3.key"), &err), 0);
    cr_assert_eq(memcmp(c.pk, a.pk, 32), 0);
    cr_assert_eq(identity_save(&b, s_dir, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(identity_load(&c, s_path("n3.key"), &err), 0);
    cr_assert_eq(memcmp(c.pk, b.pk, 32), 0);
    identity_clear(&a), identity_clear(&b), identity_clear(&c);
}

Test(identity, failed_fsync_leaves_old_key_intact) {
    identity_t a, b, c;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "n4", &err), 0);
    cr_assert_eq(identity_generate(&b, "n4", &err), 0);
    cr_assert_eq(identity_save(&a, s_dir, 0, &err), 0);
    fileio_fault_fail_sync_after = 2; /* the fsync of the .key commit */
    cr_assert_eq(identity_save(&b, s_dir, 1, &err), CC_ERR_IO);
    cr_assert_eq(identity_load(&c, s_path("n4.key"), &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(c.pk, a.pk, 32), 0);
    DIR *d = opendir(s_dir); /* no temp file left behind */
    struct dirent *e;
    while ((e = readdir(d))) cr_assert_null(strstr(e->d_name, ".tmp."), "%s", e->d_name);
    closedir(d);
    identity_clear(&a), identity_clear(&b), identity_clear(&c);
}

Test(identity, curve_keys_match_libsodium_and_zmq) {
    identity_t a;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "n5", &err), 0);
    uint8_t cpk[32], csk[32], pk_from_sk[32];
    char z85[41];
    cr_assert_eq(crypto_sign_ed25519_pk_to_curve25519(cpk, a.pk), 0);
    cr_assert_eq(crypto_sign_ed25519_sk_to_curve25519(csk, a.sk), 0);
    cr_assert_not_null(zmq_z85_encode(z85, cpk, 32));
    cr_assert_str_eq(a.curve_public, z85);
    cr_assert_not_null(zmq_z85_encode(z85, csk, 32));
    cr_assert_str_eq(a.curve_secret, z85);
    cr_assert_eq(strlen(a.curve_public), 40);
    /* a genuine X25519 pair: the public is the base-point multiple of the secret */
    cr_assert_eq(crypto_scalarmult_base(pk_from_sk, csk), 0);
    cr_assert_eq(memcmp(pk_from_sk, cpk, 32), 0);
    /* and ZeroMQ derives the same public from the Z85 secret */
    if (zmq_has("curve")) {
        char z85pub[41];
        cr_assert_eq(zmq_curve_public(z85pub, a.curve_secret), 0);
        cr_assert_str_eq(z85pub, a.curve_public);
    }
    identity_clear(&a);
}

/* ---- malformed key files ---- */

static void s_expect_key_error(const char *text, const char *want) {
    s_write("bad.key", text, 0600);
    identity_t a;
    cc_err_t err = {0};
    int rc = identity_load(&a, s_path("bad.key"), &err);
    cr_assert_neq(rc, 0, "accepted: %s", text);
    cr_assert_not_null(strstr(err.msg, want), "wanted '%s' in: %s", want, err.msg);
    uint8_t zero[64] = {0};
    cr_assert_eq(memcmp(a.sk, zero, 64), 0, "secret left in a failed load");
}

Test(identity, malformed_key_files) {
    identity_t a;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "ok", &err), 0);
    char good_hex[129], text[1024];
    sodium_bin2hex(good_hex, sizeof good_hex, a.sk, 64);

    s_expect_key_error("", "empty file");
    s_expect_key_error("concord-secret-key v2\nid: ok\n", "bad.key:1: expected header");
    s_expect_key_error("# comment\n\nconcord-public-key v1\n", "bad.key:3: this is a concord-public-key");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\nsecret: %.127sZ\n", good_hex);
    s_expect_key_error(text, "bad.key:3: bad hex digit in 'secret' at column 128");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\nsecret: %.126s\n", good_hex);
    s_expect_key_error(text, "bad.key:3: 'secret' must be 128 hex digits (got 126)");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\nsecret: %s00\n", good_hex);
    s_expect_key_error(text, "bad.key:3: 'secret' must be 128 hex digits (got 130)");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: bad id\nsecret: %s\n", good_hex);
    s_expect_key_error(text, "bad.key:2: invalid id");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\nid: ok\nsecret: %s\n", good_hex);
    s_expect_key_error(text, "bad.key:3: second 'id' (first at line 2)");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\nsecret: %s\nsecret: %s\n",
             good_hex, good_hex);
    s_expect_key_error(text, "bad.key:4: second 'secret'");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\nsecret %s\n", good_hex);
    s_expect_key_error(text, "bad.key:3: expected 'key: value'");
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\ncolour: blue\nsecret: %s\n", good_hex);
    s_expect_key_error(text, "bad.key:3: unknown key 'colour'");
    s_expect_key_error("concord-secret-key v1\nid: ok\n", "missing 'secret:'");
    snprintf(text, sizeof text, "concord-secret-key v1\nsecret: %s\n", good_hex);
    s_expect_key_error(text, "missing 'id:'");
    /* binary garbage */
    s_write("bad.key", "", 0600);
    FILE *f = fopen(s_path("bad.key"), "wb");
    fwrite("concord-secret-key v1\nid: o\0k\n", 1, 30, f);
    fclose(f);
    cr_assert_neq(identity_load(&a, s_path("bad.key"), &err), 0);
    cr_assert_not_null(strstr(err.msg, "bad.key:2: binary data"), "%s", err.msg);
    /* the public half does not belong to the seed */
    uint8_t sk[64];
    memcpy(sk, a.sk, 64);
    sk[40] ^= 1;
    char bad_hex[129];
    sodium_bin2hex(bad_hex, sizeof bad_hex, sk, 64);
    snprintf(text, sizeof text, "concord-secret-key v1\nid: ok\nsecret: %s\n", bad_hex);
    s_expect_key_error(text, "inconsistent");
    /* a huge file */
    char *huge = malloc(20000);
    memset(huge, '#', 19999), huge[19999] = '\0';
    s_expect_key_error(huge, "too large");
    free(huge);
    /* missing file */
    cr_assert_eq(identity_load(&a, s_path("nope.key"), &err), CC_ERR_IO);
    cr_assert_not_null(strstr(err.msg, "nope.key"), "%s", err.msg);
    /* a directory */
    cr_assert_neq(identity_load(&a, s_dir, &err), 0);
    identity_clear(&a);
}

Test(identity, key_file_with_comments_and_crlf_accepted) {
    identity_t a, b;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "crlf", &err), 0);
    char hex[129], text[1024];
    sodium_bin2hex(hex, sizeof hex, a.sk, 64);
    snprintf(text, sizeof text,
             "# made by hand\r\n\r\nconcord-secret-key v1\r\n  # indented comment\r\n"
             "secret:   %s  \r\nid:crlf\r\n",
             hex);
    s_write("crlf.key", text, 0600);
    cr_assert_eq(identity_load(&b, s_path("crlf.key"), &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(a.sk, b.sk, 64), 0);
    cr_assert_str_eq(b.id, "crlf");
    identity_clear(&a), identity_clear(&b);
}

Test(identity, malformed_public_files) {
    identity_public_t p;
    cc_err_t err = {0};
    s_write("x.pub", "concord-secret-key v1\n", 0644);
    cr_assert_neq(identity_load_public(&p, s_path("x.pub"), &err), 0);
    cr_assert_not_null(strstr(err.msg, "x.pub:1: this is a concord-secret-key"), "%s", err.msg);
    s_write("x.pub", "concord-public-key v1\nid: x\npublic: abcd\n", 0644);
    cr_assert_neq(identity_load_public(&p, s_path("x.pub"), &err), 0);
    cr_assert_not_null(strstr(err.msg, "x.pub:3: 'public' must be 64 hex digits"), "%s", err.msg);
    /* all-zero key: a small-order point, refused by the CURVE conversion */
    char text[256];
    snprintf(text, sizeof text, "concord-public-key v1\nid: x\npublic: %064d\n", 0);
    s_write("x.pub", text, 0644);
    cr_assert_neq(identity_load_public(&p, s_path("x.pub"), &err), 0);
    cr_assert_not_null(strstr(err.msg, "not a valid Ed25519 public key"), "%s", err.msg);
}

/* ---- enrolment ---- */

typedef struct {
    identity_t id[3];
    char hex[3][65];
} s_trio_t;

static void s_trio(s_trio_t *t) {
    const char *names[3] = {"hospital-a", "hospital-b", "coordinator"};
    cc_err_t err = {0};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(identity_generate(&t->id[i], names[i], &err), 0);
        identity_public_hex(t->hex[i], t->id[i].pk);
    }
}

Test(identity, enrolment_load_and_find) {
    s_trio_t t;
    s_trio(&t);
    char text[1024];
    snprintf(text, sizeof text,
             "# enrolled hospitals\n\n%s %s\n  %s\t%s   # trailing comment\r\n%s %s\n",
             t.id[0].id, t.hex[0], t.id[1].id, t.hex[1], t.id[2].id, t.hex[2]);
    s_write("enrolled.txt", text, 0644);
    enrolment_t *e = NULL;
    cc_err_t err = {0};
    cr_assert_eq(enrolment_load(s_path("enrolled.txt"), &e, &err), 0, "%s", err.msg);
    cr_assert_eq(e->n, 3);
    for (int i = 0; i < 3; i++) {
        const identity_public_t *k = enrolment_find(e, t.id[i].id);
        cr_assert_not_null(k);
        cr_assert_eq(memcmp(k->pk, t.id[i].pk, 32), 0);
        cr_assert_str_eq(k->curve_public, t.id[i].curve_public);
        cr_assert_eq(enrolment_find_curve(e, t.id[i].curve_public), k);
        uint8_t pk[32];
        cr_assert_eq(enrolment_lookup(e, t.id[i].id, pk), 0);
        cr_assert_eq(memcmp(pk, t.id[i].pk, 32), 0);
    }
    identity_t other;
    cr_assert_eq(identity_generate(&other, "hospital-z", &err), 0);
    uint8_t pk[32];
    cr_assert_null(enrolment_find(e, "hospital-z"));
    cr_assert_null(enrolment_find(e, "hospital"));
    cr_assert_null(enrolment_find_curve(e, other.curve_public));
    cr_assert_eq(enrolment_lookup(e, "hospital-z", pk), -1);
    cr_assert_null(enrolment_find(NULL, "hospital-a"));
    enrolment_destroy(&e);
    cr_assert_null(e);
    enrolment_destroy(&e); /* NULL is fine */

    /* keygen's output (enrolment line + a '#' comment with the CURVE key) is valid */
    char hex[65];
    identity_public_hex(hex, other.pk);
    snprintf(text, sizeof text, "%s %s\n# curve-public: %s\n", other.id, hex, other.curve_public);
    s_write("one.txt", text, 0644);
    cr_assert_eq(enrolment_load(s_path("one.txt"), &e, &err), 0, "%s", err.msg);
    cr_assert_eq(e->n, 1);
    enrolment_destroy(&e);
    /* an empty list is valid (nobody is enrolled) */
    s_write("empty.txt", "# nobody yet\n", 0644);
    cr_assert_eq(enrolment_load(s_path("empty.txt"), &e, &err), 0);
    cr_assert_eq(e->n, 0);
    cr_assert_null(enrolment_find_curve(e, other.curve_public));
    enrolment_destroy(&e);
    for (int i = 0; i < 3; i++) identity_clear(&t.id[i]);
    identity_clear(&other);
}

static void s_expect_enrol_error(const char *text, const char *want) {
    s_write("enr.txt", text, 0644);
    enrolment_t *e = (enrolment_t *)1;
    cc_err_t err = {0};
    cr_assert_neq(enrolment_load(s_path("enr.txt"), &e, &err), 0, "accepted: %s", text);
    cr_assert_null(e);
    cr_assert_not_null(strstr(err.msg, want), "wanted '%s' in: %s", want, err.msg);
}

Test(identity, malformed_enrolment_files) {
    s_trio_t t;
    s_trio(&t);
    char text[2048];
    snprintf(text, sizeof text, "%s %s\n%s\n", t.id[0].id, t.hex[0], t.id[1].id);
    s_expect_enrol_error(text, "enr.txt:2: expected 'ID PUBLIC_HEX'");
    snprintf(text, sizeof text, "# x\n%s %s extra\n", t.id[0].id, t.hex[0]);
    s_expect_enrol_error(text, "enr.txt:2: expected 'ID PUBLIC_HEX'");
    snprintf(text, sizeof text, "%s %.63sg\n", t.id[0].id, t.hex[0]);
    s_expect_enrol_error(text, "enr.txt:1: bad hex digit in the public key at column 64");
    snprintf(text, sizeof text, "%s %.62s\n", t.id[0].id, t.hex[0]);
    s_expect_enrol_error(text, "enr.txt:1: the public key must be 64 hex digits (got 62)");
    snprintf(text, sizeof text, "\n\nbad/id %s\n", t.hex[0]);
    s_expect_enrol_error(text, "enr.txt:3: invalid id");
    snprintf(text, sizeof text, "%s %s\n%s %s\n%s %s\n", t.id[0].id, t.hex[0], t.id[1].id,
             t.hex[1], t.id[0].id, t.hex[2]);
    s_expect_enrol_error(text, "enr.txt:3: duplicate id 'hospital-a' (first at line 1)");
    snprintf(text, sizeof text, "%s %s\nother %s\n", t.id[0].id, t.hex[0], t.hex[0]);
    s_expect_enrol_error(text, "enr.txt:2: duplicate public key (already enrolled as 'hospital-a'");
    snprintf(text, sizeof text, "x %064d\n", 0);
    s_expect_enrol_error(text, "enr.txt:1: not a valid Ed25519 public key");
    s_write("enr.txt", "", 0644);
    FILE *f = fopen(s_path("enr.txt"), "wb");
    fwrite("a\0b\n", 1, 4, f);
    fclose(f);
    enrolment_t *e = NULL;
    cc_err_t err = {0};
    cr_assert_neq(enrolment_load(s_path("enr.txt"), &e, &err), 0);
    cr_assert_not_null(strstr(err.msg, "enr.txt:1: binary data"), "%s", err.msg);
    cr_assert_eq(enrolment_load(s_path("missing.txt"), &e, &err), CC_ERR_IO);
    cr_assert_null(e);
    for (int i = 0; i < 3; i++) identity_clear(&t.id[i]);
}
