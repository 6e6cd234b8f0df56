/* test_checkpoint.c — model files and safetensors export.
 *
 * Acceptance: bit-for-bit round trips of softmax, MLP and CNN models with standardizer and
 * metadata; the saved bytes equal those of an independent encoder written here from the
 * layout comment in checkpoint.c. Rejection: every single-bit and whole-byte flip of a
 * small file is CORRUPT, every truncation is TRUNCATED, crafted files with consistent
 * checksums but absurd or inconsistent contents are refused before allocating, an intact
 * file of another version is FORMAT, and a save that fails at fsync leaves the previous
 * file intact. Safetensors: the header is JSON, offsets are contiguous and cover the data,
 * names follow the PyTorch twin.
 *
 * checkpoint/export_for_torch writes models, raw inputs and C logits into
 * $CONCORD_EXPORT_DIR for tests/safetensors_torch.sh to compare against PyTorch. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fileio.h"
#include "tmpdir_fixture.h"

static char s_dir[64];

static void s_setup(void) {
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/concord_ckpt_");
    cr_assert_geq(sodium_init(), 0);
    fileio_fault_fail_sync_after = 0;
}

static void s_teardown(void) { tmpdir_remove(s_dir); }

TestSuite(checkpoint, .init = s_setup, .fini = s_teardown);

static char *s_path(const char *name) { return tmpdir_join(s_dir, name); }

/* ---- fixtures ---- */

static model_spec_t s_spec_softmax(void) {
    model_spec_t s = {0};
    s.kind = MODEL_SOFTMAX, s.n_inputs = 3, s.n_classes = 2, s.act = ACT_RELU;
    return s;
}

static model_spec_t s_spec_mlp(void) {
    model_spec_t s = {0};
    s.kind = MODEL_MLP, s.n_inputs = 6, s.n_classes = 3, s.act = ACT_GELU, s.dropout = 0.25f;
    s.n_hidden = 2, s.hidden[0] = 8, s.hidden[1] = 5;
    return s;
}

/* 2x6x6 -> conv 3 -> pool 3x3 -> conv 4 -> pool 1x1 -> dense 5 -> head 3 */
static model_spec_t s_spec_cnn(void) {
    model_spec_t s = {0};
    s.kind = MODEL_CNN, s.n_classes = 3, s.act = ACT_RELU;
    s.in_c = 2, s.in_h = 6, s.in_w = 6, s.n_inputs = 72;
    s.n_conv = 2, s.conv[0] = 3, s.conv[1] = 4;
    s.n_hidden = 1, s.hidden[0] = 5;
    return s;
}

static model_t *s_model(model_spec_t spec, uint64_t seed) {
    cc_err_t err = {0};
    model_t *m = model_new(&spec, &err);
    cr_assert_not_null(m, "%s", err.msg);
    model_init(m, seed);
    return m;
}

static standardizer_t *s_standardizer(size_t d, uint64_t seed) {
    standardizer_t *st = standardizer_new(d);
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    for (size_t i = 0; i < d; i++) {
        st->mean[i] = (float)cc_rng_normal(&rng);
        st->std[i] = 0.5f + (float)cc_rng_uniform(&rng);
    }
    return st;
}

static json_t *s_meta(void) {
    return json_pack("{s:i, s:f, s:s, s:[i, i], s:n}", "round", 7, "lr", 0.1 / 3, "note",
                     "caf\xc3\xa9", "hidden", 64, 32, "none");
}

static void s_write_file(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static char *s_read_file(const char *path, size_t *len) {
    char *buf;
    cc_err_t err = {0};
    cr_assert_eq(fileio_read_all(path, (size_t)1 << 30, &buf, len, &err), 0, "%s", err.msg);
    return buf;
}

static void s_assert_same_spec(const model_spec_t *a, const model_spec_t *b) {
    cr_assert_eq(a->kind, b->kind);
    cr_assert_eq(a->n_inputs, b->n_inputs);
    cr_assert_eq(a->n_classes, b->n_classes);
    cr_assert_eq(a->in_c, b->in_c);
    cr_assert_eq(a->in_h, b->in_h);
    cr_assert_eq(a->in_w, b->in_w);
    cr_assert_eq(a->act, b->act);
    cr_assert_eq(memcmp(&a->dropout, &b->dropout, sizeof a->dropout), 0, "dropout bits");
    cr_assert_eq(a->n_hidden, b->n_hidden);
    cr_assert_eq(a->n_conv, b->n_conv);
    cr_assert_eq(memcmp(a->hidden, b->hidden, sizeof a->hidden), 0);
    cr_assert_eq(memcmp(a->conv, b->conv, sizeof a->conv), 0);
}

/* ---- round trips ---- */

static void s_round_trip(model_spec_t spec, const char *name) {
    model_t *m = s_model(spec, 42);
    m->params[0] = -0.0f;  /* bit patterns, not values, must survive */
    m->params[1] = 1e-42f; /* a subnormal */
    standardizer_t *st = s_standardizer((size_t)spec.n_inputs, 9);
    json_t *meta = s_meta();
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_save(s_path(name), m, st, meta, &err), 0, "%s", err.msg);
    model_t *m2 = NULL;
    standardizer_t *st2 = NULL;
    json_t *meta2 = NULL;
    cr_assert_eq(checkpoint_load(s_path(name), &m2, &st2, &meta2, &err), 0, "%s", err.msg);
    s_assert_same_spec(&m->spec, &m2->spec);
    cr_assert_eq(m2->n_params, m->n_params);
    cr_assert_eq(memcmp(m->params, m2->params, m->n_params * sizeof(float)), 0, "params");
    cr_assert_not_null(st2);
    cr_assert_eq(st2->d, st->d);
    cr_assert_eq(memcmp(st->mean, st2->mean, st->d * sizeof(float)), 0, "mean");
    cr_assert_eq(memcmp(st->std, st2->std, st->d * sizeof(float)), 0, "std");
    cr_assert(json_equal(meta, meta2), "metadata");
    model_destroy(&m2);
    standardizer_destroy(&st2);
    json_decref(meta2);
    /* without standardizer and metadata: both come back NULL */
    cr_assert_eq(checkpoint_save(s_path(name), m, NULL, NULL, &err), 0, "%s", err.msg);
    st2 = (standardizer_t *)1, meta2 = (json_t *)1;
    cr_assert_eq(checkpoint_load(s_path(name), &m2, &st2, &meta2, &err), 0, "%s", err.msg);
    cr_assert_null(st2);
    cr_assert_null(meta2);
    cr_assert_eq(memcmp(m->params, m2->params, m->n_params * sizeof(float)), 0);
    model_destroy(&m2);
    /* callers that want only the model */
    cr_assert_eq(checkpoint_load(s_path(name), &m2, NULL, NULL, &err), 0, "%s", err.msg);
    model_destroy(&m2);
    model_destroy(&m);
    standardizer_destroy(&st);
    json_decref(meta);
}

Test(checkpoint, round_trip_softmax) { s_round_trip(s_spec_softmax(), "softmax.cck"); }
Test(checkpoint, round_trip_mlp) { s_round_trip(s_spec_mlp(), "mlp.cck"); }
Test(checkpoint, round_trip_cnn) { s_round_trip(s_spec_cnn(), "cnn.cck"); }

Test(checkpoint, save_rejects_mismatched_standardizer) {
    model_t *m = s_model(s_spec_mlp(), 1);
    standardizer_t *st = s_standardizer(5, 1);
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_save(s_path("x.cck"), m, st, NULL, &err), CC_ERR_ARG);
    cr_assert(strstr(err.msg, "standardizer"), "%s", err.msg);
    cr_assert_neq(access(s_path("x.cck"), F_OK), 0, "nothing written");
    model_destroy(&m);
    standardizer_destroy(&st);
}

/* ---- an independent encoder of the documented layout ---- */

static size_t s_put(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
    return (size_t)bytes;
}

static uint32_t s_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

typedef struct {
    model_spec_t spec;
    uint64_t n_field, d_field;    /* announced sizes */
    const float *params;
    size_t n;                     /* floats actually written */
    const standardizer_t *st;
    const char *json;
} s_craft_t;

static uint8_t *s_encode(const s_craft_t *c, size_t *len) {
    const model_spec_t *s = &c->spec;
    size_t J = c->json ? strlen(c->json) : 0, d = c->st ? c->st->d : 0;
    size_t cap = 200 + 4 * c->n + 8 * d + J;
    uint8_t *b = cc_xcalloc(1, cap), *p = b;
    memcpy(p, "CCKPT\0\0\1", 8), p += 8;
    const uint32_t fixed[] = {1, s->kind, (uint32_t)s->n_inputs, (uint32_t)s->n_classes,
                              (uint32_t)s->in_c, (uint32_t)s->in_h, (uint32_t)s->in_w, s->act,
                              s_bits(s->dropout), (uint32_t)s->n_hidden, (uint32_t)s->n_conv};
    for (int i = 0; i < 11; i++) p += s_put(p, fixed[i], 4);
    for (int i = 0; i < s->n_hidden; i++) p += s_put(p, (uint32_t)s->hidden[i], 4);
    for (int i = 0; i < s->n_conv; i++) p += s_put(p, (uint32_t)s->conv[i], 4);
    p += s_put(p, c->n_field, 8);
    p += s_put(p, c->d_field, 8);
    p += s_put(p, J, 8);
    crypto_generichash(p, 16, b, (size_t)(p - b), NULL, 0), p += 16;
    for (size_t i = 0; i < c->n; i++) p += s_put(p, s_bits(c->params[i]), 4);
    for (size_t i = 0; i < d; i++) p += s_put(p, s_bits(c->st->mean[i]), 4);
    for (size_t i = 0; i < d; i++) p += s_put(p, s_bits(c->st->std[i]), 4);
    memcpy(p, c->json ? c->json : "", J), p += J;
    crypto_generichash(p, 32, b, (size_t)(p - b), NULL, 0), p += 32;
    *len = (size_t)(p - b);
    cr_assert_leq(*len, cap);
    return b;
}

Test(checkpoint, layout_matches_independent_encoder) {
    model_t *m = s_model(s_spec_mlp(), 5);
    standardizer_t *st = s_standardizer(6, 5);
    json_t *meta = json_pack("{s:i}", "round", 3);
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_save(s_path("a.cck"), m, st, meta, &err), 0, "%s", err.msg);
    s_craft_t c = {.spec = m->spec, .n_field = m->n_params, .d_field = 6, .params = m->params,
                   .n = m->n_params, .st = st, .json = "{\"round\":3}"};
    size_t len, len2;
    uint8_t *want = s_encode(&c, &len);
    char *got = s_read_file(s_path("a.cck"), &len2);
    cr_assert_eq(len2, len);
    cr_assert_eq(memcmp(got, want, len), 0, "bytes differ from the documented layout");
    free(want);
    free(got);
    model_destroy(&m);
    standardizer_destroy(&st);
    json_decref(meta);
}

/* Loads a crafted file and checks the code and a fragment of the message. */
static void s_expect_load(const uint8_t *b, size_t len, int code, const char *fragment) {
    s_write_file(s_path("crafted.cck"), b, len);
    model_t *m = (model_t *)1;
    standardizer_t *st = (standardizer_t *)1;
    json_t *meta = (json_t *)1;
    cc_err_t err = {0};
    int rc = checkpoint_load(s_path("crafted.cck"), &m, &st, &meta, &err);
    cr_assert_eq(rc, code, "rc %d, want %d: %s", rc, code, err.msg);
    if (code == 0) {
        model_destroy(&m);
        standardizer_destroy(&st);
        json_decref(meta);
        return;
    }
    cr_assert(strstr(err.msg, fragment), "\"%s\" lacks \"%s\"", err.msg, fragment);
    cr_assert(strstr(err.msg, "crafted.cck"), "names the file: %s", err.msg);
    cr_assert(!m && !st && !meta, "outputs NULL on failure");
}

/* Encodes c, then loads it as s_expect_load does. */
static void s_expect_crafted(const s_craft_t *c, int code, const char *fragment) {
    size_t len;
    uint8_t *b = s_encode(c, &len);
    s_expect_load(b, len, code, fragment);
    free(b);
}

Test(checkpoint, crafted_inconsistent_files) {
    model_spec_t spec = s_spec_softmax();
    float params[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    s_craft_t c = {.spec = spec, .n_field = 8, .params = params, .n = 8};
    s_expect_crafted(&c, 0, "");  /* the baseline loads */
    c.n_field = (uint64_t)1 << 60;  /* absurd, refused before any allocation */
    s_expect_crafted(&c, CC_ERR_CORRUPT, "absurd sizes");
    c.n_field = 1000;  /* a trusted header announcing more than the file holds */
    s_expect_crafted(&c, CC_ERR_TRUNCATED, "truncated: expected 4124 bytes");
    c.n_field = 8, c.spec.n_inputs = 4;  /* spec needs 10 params */
    s_expect_crafted(&c, CC_ERR_CORRUPT, "needs 10 parameters");
    c.spec = spec, c.spec.n_classes = 1;
    s_expect_crafted(&c, CC_ERR_CORRUPT, "invalid model spec");
    c.spec = spec, c.spec.act = 7;
    s_expect_crafted(&c, CC_ERR_CORRUPT, "activation");
    c.spec = spec, c.json = "{\"round\":";  /* checksummed but not JSON */
    s_expect_crafted(&c, CC_ERR_CORRUPT, "not valid JSON");
    standardizer_t *st = s_standardizer(2, 1);  /* d != n_inputs */
    c.json = NULL, c.st = st, c.d_field = 2;
    s_expect_crafted(&c, CC_ERR_CORRUPT, "standardizer has 2 features");
    standardizer_destroy(&st);
}

Test(checkpoint, crafted_absurd_layer_size) {
    /* 1x256x256 image, conv 4096 then conv 1: a 344 KB file whose first conv layer
     * outputs 2^28 floats per sample (model_new would allocate a 2.4 GB im2col buffer) */
    model_spec_t s = {0};
    s.kind = MODEL_CNN, s.n_classes = 2, s.in_c = 1, s.in_h = 256, s.in_w = 256;
    s.n_inputs = 256 * 256, s.n_conv = 2, s.conv[0] = 4096, s.conv[1] = 1;
    size_t n = (4096 * 9 + 4096) + (4096 * 9 + 1) + (64 * 64 * 2 + 2);
    float *params = cc_xcalloc(n, sizeof *params);
    s_craft_t c = {.spec = s, .n_field = n, .params = params, .n = n};
    s_expect_crafted(&c, CC_ERR_CORRUPT, "absurd layer size");
    free(params);
}

/* Regression (fuzz/crashes/checkpoint/cnn-shape-product-overflow): the image sizes of a
 * CNN spec are multiplied without overflow. 5 x 1718039348 x 2147418113 = 2^64 + 4, so a
 * 64-bit product wraps to exactly n_inputs = 4 (and is signed overflow, UB); the fuzzer's
 * shape overflows without wrapping to n_inputs. Both are refused, the file as CORRUPT. */
Test(checkpoint, cnn_shape_product_overflow_is_refused) {
    static const int shapes[][4] = {{5, 1718039348, 2147418113, 4},
                                    {1660944128, 138613264, 74, 16},
                                    {1 << 26, 1 << 26, 1, 1 << 26}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        model_spec_t s = {0};
        s.kind = MODEL_CNN, s.n_classes = 2, s.n_conv = 1, s.conv[0] = 1;
        s.in_c = shapes[k][0], s.in_h = shapes[k][1], s.in_w = shapes[k][2];
        s.n_inputs = shapes[k][3];
        cc_err_t err = {0};
        cr_assert_eq(model_spec_validate(&s, &err), CC_ERR_ARG, "shape %zu accepted", k);
        cr_assert(strstr(err.msg, "channels x height x width = n_inputs"), "%s", err.msg);
        float params[16] = {0};
        s_craft_t c = {.spec = s, .n_field = 16, .params = params, .n = 16};
        s_expect_crafted(&c, CC_ERR_CORRUPT, "invalid model spec");
    }
    model_spec_t ok = {0}; /* the check still accepts a real image */
    ok.kind = MODEL_CNN, ok.n_classes = 2, ok.n_conv = 1, ok.conv[0] = 1;
    ok.in_c = 3, ok.in_h = 4, ok.in_w = 5, ok.n_inputs = 60;
    cc_err_t err = {0};
    cr_assert_eq(model_spec_validate(&ok, &err), 0, "%s", err.msg);
}

/* Regression (fuzz/crashes/checkpoint/mlp-with-conv-layers, found by the 10-minute run):
 * an MLP or softmax spec with conv layers passed validation (image sizes are only checked
 * for a CNN), and model_new built the conv layers from its unchecked image sizes:
 * -33554432 x 16777215 overflowed int (UB). Conv layers belong to a CNN only. */
Test(checkpoint, conv_layers_outside_a_cnn_are_refused) {
    for (int kind = MODEL_SOFTMAX; kind <= MODEL_MLP; kind++) {
        model_spec_t s = {0};
        s.kind = (model_kind_t)kind, s.n_inputs = 4, s.n_classes = 3;
        s.in_c = -33554432, s.in_h = 16777215, s.in_w = 0;
        s.n_conv = 2, s.conv[0] = 40, s.conv[1] = 43;
        cc_err_t err = {0};
        cr_assert_eq(model_spec_validate(&s, &err), CC_ERR_ARG, "kind %d accepted", kind);
        cr_assert(strstr(err.msg, "only a cnn has conv layers"), "%s", err.msg);
        cr_assert_null(model_new(&s, &err));
        float params[64] = {0};
        s_craft_t c = {.spec = s, .n_field = 64, .params = params, .n = 64};
        s_expect_crafted(&c, CC_ERR_CORRUPT, "only a cnn has conv layers");
    }
}

Test(checkpoint, other_version_is_format_error) {
    float params[8] = {0};
    s_craft_t c = {.spec = s_spec_softmax(), .n_field = 8, .params = params, .n = 8};
    size_t len;
    uint8_t *b = s_encode(&c, &len);
    b[8] = 2; /* an intact version-2 file: fix up the file hash */
    crypto_generichash(b + len - 32, 32, b, len - 32, NULL, 0);
    s_expect_load(b, len, CC_ERR_FORMAT, "unsupported model file format version 2");
    b[len - 1] ^= 1; /* a damaged version field: corrupt */
    s_expect_load(b, len, CC_ERR_CORRUPT, "corrupt");
    free(b);
}

Test(checkpoint, not_a_model_file) {
    const char text[] = "label,f0,f1\n0,1.5,2\n";
    s_expect_load((const uint8_t *)text, sizeof text - 1, CC_ERR_CORRUPT,
                  "not a Concord model file");
    cc_err_t err = {0};
    model_t *m;
    cr_assert_eq(checkpoint_load(s_path("missing.cck"), &m, NULL, NULL, &err), CC_ERR_IO);
    cr_assert_null(m);
}

/* ---- damage: flips, truncation, trailing bytes ---- */

static char *s_small_file(size_t *len) {
    model_t *m = s_model(s_spec_softmax(), 3);
    standardizer_t *st = s_standardizer(3, 3);
    json_t *meta = json_pack("{s:i}", "round", 1);
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_save(s_path("small.cck"), m, st, meta, &err), 0, "%s", err.msg);
    model_destroy(&m);
    standardizer_destroy(&st);
    json_decref(meta);
    return s_read_file(s_path("small.cck"), len);
}

static int s_load_damaged(const void *b, size_t len, cc_err_t *err) {
    s_write_file(s_path("damaged.cck"), b, len);
    model_t *m = NULL;
    standardizer_t *st = NULL;
    json_t *meta = NULL;
    int rc = checkpoint_load(s_path("damaged.cck"), &m, &st, &meta, err);
    if (rc == 0) {
        model_destroy(&m);
        standardizer_destroy(&st);
        json_decref(meta);
    }
    cr_assert(rc != 0 || !m, "outputs NULL on failure");
    return rc;
}

Test(checkpoint, every_byte_flip_is_corrupt) {
    size_t len;
    char *orig = s_small_file(&len);
    char *b = cc_xmalloc(len);
    static const uint8_t masks[] = {1, 2, 4, 8, 16, 32, 64, 128, 255};
    int tried = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (size_t k = 0; k < sizeof masks; k++) {
            memcpy(b, orig, len);
            b[pos] = (char)(b[pos] ^ masks[k]);
            cc_err_t err = {0};
            int rc = s_load_damaged(b, len, &err);
            cr_assert_eq(rc, CC_ERR_CORRUPT, "byte %zu ^ 0x%02x: rc %d: %s", pos, masks[k], rc,
                         err.msg);
            cr_assert(strstr(err.msg, "corrupt"), "%s", err.msg);
            tried++;
        }
    }
    printf("checkpoint/every_byte_flip_is_corrupt: %d damaged copies of a %zu-byte file\n",
           tried, len);
    free(b);
    free(orig);
}

static void s_truncations(model_spec_t spec) {
    model_t *m = s_model(spec, 4);
    standardizer_t *st = s_standardizer((size_t)spec.n_inputs, 4);
    json_t *meta = s_meta();
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_save(s_path("t.cck"), m, st, meta, &err), 0, "%s", err.msg);
    size_t len;
    char *b = s_read_file(s_path("t.cck"), &len);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = s_load_damaged(b, cut, &err);
        cr_assert_eq(rc, CC_ERR_TRUNCATED, "cut at %zu of %zu: rc %d: %s", cut, len, rc, err.msg);
        cr_assert(strstr(err.msg, "truncated: expected"), "%s", err.msg);
    }
    char *longer = cc_xmalloc(len + 1);
    memcpy(longer, b, len);
    longer[len] = '\n';
    cr_assert_eq(s_load_damaged(longer, len + 1, &err), CC_ERR_CORRUPT, "trailing byte");
    cr_assert(strstr(err.msg, "after the announced end"), "%s", err.msg);
    free(longer);
    free(b);
    model_destroy(&m);
    standardizer_destroy(&st);
    json_decref(meta);
}

Test(checkpoint, every_truncation_softmax) { s_truncations(s_spec_softmax()); }
Test(checkpoint, every_truncation_mlp) { s_truncations(s_spec_mlp()); }
Test(checkpoint, every_truncation_cnn) { s_truncations(s_spec_cnn()); }

Test(checkpoint, truncation_message_counts_bytes) {
    size_t len;
    char *b = s_small_file(&len);
    cc_err_t err = {0};
    cr_assert_eq(s_load_damaged(b, len - 1, &err), CC_ERR_TRUNCATED);
    char want[96];
    snprintf(want, sizeof want, "truncated: expected %zu bytes, got %zu", len, len - 1);
    cr_assert(strstr(err.msg, want), "\"%s\" lacks \"%s\"", err.msg, want);
    free(b);
}

/* ---- atomic save under injected faults ---- */

static int s_count_temp_files(void) {
    DIR *d = opendir(s_dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

Test(checkpoint, failed_save_keeps_previous_file) {
    model_t *a = s_model(s_spec_mlp(), 1), *b = s_model(s_spec_mlp(), 2);
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_save(s_path("m.cck"), a, NULL, NULL, &err), 0, "%s", err.msg);
    for (int when = 1; when <= 2; when++) {  /* 1: the flush fails, 2: the fsync fails */
        fileio_fault_fail_sync_after = when;
        cr_assert_eq(checkpoint_save(s_path("m.cck"), b, NULL, NULL, &err), CC_ERR_IO);
        cr_assert(strstr(err.msg, "m.cck"), "%s", err.msg);
        cr_assert_eq(s_count_temp_files(), 0, "temp file removed");
        model_t *got = NULL;
        cr_assert_eq(checkpoint_load(s_path("m.cck"), &got, NULL, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(memcmp(got->params, a->params, a->n_params * sizeof(float)), 0,
                     "previous version intact");
        model_destroy(&got);
    }
    fileio_fault_fail_sync_after = 0;
    cr_assert_eq(checkpoint_save(s_path("m.cck"), b, NULL, NULL, &err), 0, "%s", err.msg);
    model_t *got = NULL;
    cr_assert_eq(checkpoint_load(s_path("m.cck"), &got, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(got->params, b->params, b->n_params * sizeof(float)), 0);
    model_destroy(&got);
    model_destroy(&a);
    model_destroy(&b);
}

/* ---- safetensors ---- */

typedef struct {
    json_t *header;
    uint8_t *data;     /* points into file */
    size_t data_len;
    char *file;
} s_st_file_t;

static void s_st_read(s_st_file_t *f, const char *path) {
    size_t len;
    f->file = s_read_file(path, &len);
    cr_assert_geq(len, 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | (uint8_t)f->file[i];
    cr_assert_leq(n, len - 8);
    cr_assert_eq((8 + n) % 8, 0, "data section 8-byte aligned");
    json_error_t jerr;
    f->header = json_loadb(f->file + 8, (size_t)n, 0, &jerr);
    cr_assert_not_null(f->header, "header is JSON: %s", jerr.text);
    f->data = (uint8_t *)f->file + 8 + n;
    f->data_len = len - 8 - (size_t)n;
}

static void s_st_free(s_st_file_t *f) {
    json_decref(f->header);
    free(f->file);
}

/* dtype F32, size = prod(shape) * 4, offsets contiguous in listed order, covering all. */
static void s_st_check_layout(const s_st_file_t *f) {
    const char *key;
    json_t *v;
    size_t next = 0;
    json_object_foreach(f->header, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        cr_assert_str_eq(json_string_value(json_object_get(v, "dtype")), "F32", "%s", key);
        json_t *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
        size_t count = 1, i;
        json_t *dim;
        json_array_foreach(shape, i, dim) count *= (size_t)json_integer_value(dim);
        size_t b = (size_t)json_integer_value(json_array_get(offs, 0));
        size_t e = (size_t)json_integer_value(json_array_get(offs, 1));
        cr_assert_eq(b, next, "%s starts where the previous tensor ended", key);
        cr_assert_eq(e - b, 4 * count, "%s: size matches shape", key);
        next = e;
    }
    cr_assert_eq(next, f->data_len, "tensors cover the data section");
}

static const float *s_st_tensor(const s_st_file_t *f, const char *name, size_t *count) {
    json_t *v = json_object_get(f->header, name);
    cr_assert_not_null(v, "tensor %s present", name);
    json_t *offs = json_object_get(v, "data_offsets");
    size_t b = (size_t)json_integer_value(json_array_get(offs, 0));
    *count = ((size_t)json_integer_value(json_array_get(offs, 1)) - b) / 4;
    return (const float *)(f->data + b); /* little-endian host, aligned: data at 8k */
}

static const char *s_st_meta(const s_st_file_t *f, const char *key) {
    const char *s = json_string_value(json_object_get(json_object_get(f->header, "__metadata__"),
                                                      key));
    cr_assert_not_null(s, "metadata %s", key);
    return s;
}

static void s_st_shape_is(const s_st_file_t *f, const char *name, const char *want) {
    char *got = json_dumps(json_object_get(json_object_get(f->header, name), "shape"),
                           JSON_COMPACT);
    cr_assert_str_eq(got, want, "shape of %s", name);
    free(got);
}

Test(checkpoint, safetensors_mlp) {
    model_t *m = s_model(s_spec_mlp(), 11);
    standardizer_t *st = s_standardizer(6, 11);
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_export_safetensors(s_path("m.safetensors"), m, st, &err), 0, "%s",
                 err.msg);
    s_st_file_t f;
    s_st_read(&f, s_path("m.safetensors"));
    s_st_check_layout(&f);
    /* layers: 0 Linear 1 GELU 2 Dropout 3 Linear 4 GELU 5 Dropout 6 Linear */
    s_st_shape_is(&f, "0.weight", "[8,6]");
    s_st_shape_is(&f, "0.bias", "[8]");
    s_st_shape_is(&f, "3.weight", "[5,8]");
    s_st_shape_is(&f, "6.weight", "[3,5]");
    s_st_shape_is(&f, "6.bias", "[3]");
    cr_assert_eq(json_object_size(f.header), 1 + 6 + 2);
    size_t n;
    const float *w = s_st_tensor(&f, "3.weight", &n);
    cr_assert_eq(memcmp(w, m->params + m->layers[3].w_off, n * 4), 0);
    const float *mean = s_st_tensor(&f, "standardizer.mean", &n);
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(mean, st->mean, 6 * 4), 0);
    const float *sd = s_st_tensor(&f, "standardizer.std", &n);
    cr_assert_eq(memcmp(sd, st->std, 6 * 4), 0);
    cr_assert_str_eq(s_st_meta(&f, "arch"), "mlp:8,5");
    cr_assert_str_eq(s_st_meta(&f, "activation"), "gelu");
    cr_assert_str_eq(s_st_meta(&f, "activation_torch"), "GELU(approximate='tanh')");
    cr_assert_str_eq(s_st_meta(&f, "dropout"), "0.25");
    cr_assert_str_eq(s_st_meta(&f, "n_inputs"), "6");
    cr_assert_str_eq(s_st_meta(&f, "n_classes"), "3");
    cr_assert_str_eq(s_st_meta(&f, "torch_sequential"),
                     "Linear(6, 8), GELU(approximate='tanh'), Dropout(p=0.25), Linear(8, 5), "
                     "GELU(approximate='tanh'), Dropout(p=0.25), Linear(5, 3)");
    s_st_free(&f);
    model_destroy(&m);
    standardizer_destroy(&st);
}

Test(checkpoint, safetensors_cnn_counts_the_flatten) {
    model_t *m = s_model(s_spec_cnn(), 12);
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_export_safetensors(s_path("c.safetensors"), m, NULL, &err), 0, "%s",
                 err.msg);
    s_st_file_t f;
    s_st_read(&f, s_path("c.safetensors"));
    s_st_check_layout(&f);
    s_st_shape_is(&f, "0.weight", "[3,2,3,3]");
    s_st_shape_is(&f, "0.bias", "[3]");
    s_st_shape_is(&f, "3.weight", "[4,3,3,3]");
    s_st_shape_is(&f, "7.weight", "[5,4]");   /* index 6 is the Flatten */
    s_st_shape_is(&f, "9.weight", "[3,5]");
    cr_assert_eq(json_object_size(f.header), 1 + 8, "no standardizer tensors");
    cr_assert_str_eq(s_st_meta(&f, "input_shape"), "[2, 6, 6]");
    cr_assert_str_eq(s_st_meta(&f, "standardizer"), "none");
    cr_assert_str_eq(s_st_meta(&f, "torch_sequential"),
                     "Conv2d(2, 3, kernel_size=3, padding=1), ReLU(), MaxPool2d(2), "
                     "Conv2d(3, 4, kernel_size=3, padding=1), ReLU(), MaxPool2d(2), Flatten(), "
                     "Linear(4, 5), ReLU(), Linear(5, 3)");
    size_t n;
    const float *w = s_st_tensor(&f, "9.bias", &n);
    cr_assert_eq(memcmp(w, m->params + m->layers[8].b_off, 3 * 4), 0);
    s_st_free(&f);
    model_destroy(&m);
}

/* ---- the fixtures for tests/safetensors_torch.py ---- */

static void s_write_floats(const char *dir, const char *name, const char *ext, const float *v,
                           size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s.%s", dir, name, ext);
    s_write_file(p, v, n * sizeof *v); /* little-endian hosts only, as the test checks */
}

static void s_export_one(const char *dir, FILE *manifest, const char *name, model_spec_t spec,
                         int with_st) {
    const int N = 9;
    model_t *m = s_model(spec, 1000 + (uint64_t)spec.n_inputs);
    standardizer_t *st = with_st ? s_standardizer((size_t)spec.n_inputs, 77) : NULL;
    size_t d = (size_t)spec.n_inputs;
    float *x = cc_xmalloc(N * d * sizeof *x), *z = cc_xmalloc(N * d * sizeof *z);
    cc_rng_t rng;
    cc_rng_seed(&rng, 31337);
    for (size_t i = 0; i < N * d; i++) {
        x[i] = (float)(2.0 * cc_rng_normal(&rng) + 0.5);
        z[i] = st ? (x[i] - st->mean[i % d]) / st->std[i % d] : x[i];
    }
    const float *logits = model_forward(m, z, N, 0);
    char p[512];
    snprintf(p, sizeof p, "%s/%s.safetensors", dir, name);
    cc_err_t err = {0};
    cr_assert_eq(checkpoint_export_safetensors(p, m, st, &err), 0, "%s", err.msg);
    s_write_floats(dir, name, "inputs.f32", x, N * d);
    s_write_floats(dir, name, "logits.f32", logits, (size_t)N * spec.n_classes);
    fprintf(manifest, "%s %d\n", name, N);
    free(x);
    free(z);
    model_destroy(&m);
    standardizer_destroy(&st);
}

Test(checkpoint, export_for_torch) {
    const char *dir = getenv("CONCORD_EXPORT_DIR");
    if (!dir) dir = s_dir;  /* still exercise the path */
    const uint16_t probe = 1;
    cr_assert_eq(*(const uint8_t *)&probe, 1, "raw float files assume a little-endian host");
    char p[512];
    snprintf(p, sizeof p, "%s/manifest.txt", dir);
    FILE *manifest = fopen(p, "w");
    cr_assert_not_null(manifest, "cannot write %s", p);
    model_spec_t s = {0};
    s.kind = MODEL_SOFTMAX, s.n_inputs = 4, s.n_classes = 3;
    s_export_one(dir, manifest, "softmax", s, 1);
    s = (model_spec_t){0};
    s.kind = MODEL_MLP, s.n_inputs = 7, s.n_classes = 4, s.act = ACT_GELU, s.dropout = 0.1f;
    s.n_hidden = 2, s.hidden[0] = 16, s.hidden[1] = 8;
    s_export_one(dir, manifest, "mlp_gelu", s, 1);
    s.act = ACT_TANH, s.dropout = 0, s.n_hidden = 1, s.hidden[0] = 6, s.n_inputs = 5;
    s_export_one(dir, manifest, "mlp_tanh", s, 0);
    s = (model_spec_t){0};
    s.kind = MODEL_CNN, s.n_classes = 5, s.act = ACT_RELU, s.in_c = 1, s.in_h = 8, s.in_w = 8;
    s.n_inputs = 64, s.n_conv = 2, s.conv[0] = 4, s.conv[1] = 6, s.n_hidden = 1, s.hidden[0] = 10;
    s_export_one(dir, manifest, "cnn_relu", s, 1);
    s = (model_spec_t){0};
    s.kind = MODEL_CNN, s.n_classes = 2, s.act = ACT_GELU, s.in_c = 2, s.in_h = 6, s.in_w = 7;
    s.n_inputs = 84, s.n_conv = 1, s.conv[0] = 3;  /* odd width: pooling floors */
    s_export_one(dir, manifest, "cnn_gelu", s, 0);
    cr_assert_eq(fclose(manifest), 0);
}
