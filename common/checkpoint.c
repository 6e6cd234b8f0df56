/* checkpoint.c — Concord model files and safetensors export (contracts in checkpoint.h).
 *
 * Model file layout, version 1. Integers are little-endian; "i32" fields are the spec's
 * ints stored as two's complement. H = n_hidden, K = n_conv, P = 52 + 4H + 4K,
 * D = P + 40, n = n_params, d = standardizer features, J = metadata bytes.
 *
 *   offset   bytes  field
 *   0        8      magic "CCKPT\0\0\1"
 *   8        4      u32 format version (1)
 *   12       4      u32 kind (model_kind_t)
 *   16       4      i32 n_inputs
 *   20       4      i32 n_classes
 *   24       4      i32 in_c
 *   28       4      i32 in_h
 *   32       4      i32 in_w
 *   36       4      u32 act (act_kind_t)
 *   40       4      u32 dropout as IEEE-754 float32 bits
 *   44       4      u32 H
 *   48       4      u32 K
 *   52       4H     i32 hidden[H]
 *   52+4H    4K     i32 conv[K]
 *   P        8      u64 n
 *   P+8      8      u64 d (0: no standardizer)
 *   P+16     8      u64 J (0: no metadata)
 *   P+24     16     BLAKE2b-128 of bytes [0, P+24)  -- the header hash
 *   D        4n     f32 params, in model.h's layout
 *   D+4n     4d     f32 standardizer mean
 *   D+4n+4d  4d     f32 standardizer std
 *   D+4n+8d  J      metadata, compact JSON
 *   T-32     32     BLAKE2b-256 of bytes [0, T-32)  -- the file hash
 *   T = D + 4n + 8d + J + 32 is the file size.
 *
 * Why a header hash: once it matches, the lengths are trusted, so a file shorter than
 * they announce was cut off (TRUNCATED) rather than damaged (CORRUPT); a damaged length
 * fails the header hash instead of posing as a truncation. Every future version keeps
 * the magic, the version at offset 8 and the file hash at the end, so an intact file of
 * another version is told apart from a damaged version field.
 *
 * Loader order: magic (a short file that is a prefix of the magic is TRUNCATED) ->
 * version -> header length -> header hash -> sizes bounded -> file length -> file
 * hash -> spec validated and its parameter count and activation sizes recomputed here
 * (so model_new never allocates what the file did not announce) -> decode. */
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "blake2b.h"
#include "fileio.h"
#include "le.h"

#ifndef CONCORD_VERSION
#define CONCORD_VERSION "unknown"
#endif

static const uint8_t s_magic[8] = {'C', 'C', 'K', 'P', 'T', 0, 0, 1};

#define S_FIXED 52             /* bytes before hidden[] */
#define S_LENGTHS 24           /* n, d, J */
#define S_HEAD_HASH 16
#define S_FILE_HASH 32
#define S_HEAD_MAX (S_FIXED + 4 * (MODEL_MAX_HIDDEN + MODEL_MAX_CONV) + S_LENGTHS + S_HEAD_HASH)
#define S_MAX_FLOATS ((uint64_t)CHECKPOINT_MAX_BYTES / 4)
#define S_MAX_ACT ((uint64_t)1 << 26) /* floats per sample in any layer output */
#define S_CHUNK 1024                  /* floats converted per write */

static uint32_t s_float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float s_bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void s_get_floats(float *dst, const uint8_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = s_bits_float(le_get_u32(src + 4 * i));
}

/* ---- writing ---- */

typedef struct {
    FILE *fp;
    int hashing;                 /* update h with every byte written */
    cc_blake2b_t h;
} s_writer_t;

/* Write errors are sticky in fp and reported by fileio_atomic_commit (ferror). */
static void s_write(s_writer_t *w, const void *p, size_t n) {
    if (n == 0) return;
    if (w->hashing) cc_blake2b_update(&w->h, p, n);
    fwrite(p, 1, n, w->fp);
}

static void s_write_floats(s_writer_t *w, const float *v, size_t n) {
    uint8_t buf[4 * S_CHUNK];
    for (size_t i = 0; i < n; i += S_CHUNK) {
        size_t k = n - i < S_CHUNK ? n - i : S_CHUNK;
        for (size_t j = 0; j < k; j++) le_put_u32(buf + 4 * j, s_float_bits(v[i + j]));
        s_write(w, buf, 4 * k);
    }
}

/* Encodes the header and its hash into buf (S_HEAD_MAX bytes); returns D. */
static size_t s_header_encode(uint8_t *buf, const model_spec_t *s, uint64_t n, uint64_t d,
                              uint64_t J) {
    memcpy(buf, s_magic, 8);
    const uint32_t fixed[] = {CHECKPOINT_VERSION, (uint32_t)s->kind, (uint32_t)s->n_inputs,
                              (uint32_t)s->n_classes, (uint32_t)s->in_c, (uint32_t)s->in_h,
                              (uint32_t)s->in_w, (uint32_t)s->act, s_float_bits(s->dropout),
                              (uint32_t)s->n_hidden, (uint32_t)s->n_conv};
    size_t pos = 8;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++, pos += 4)
        le_put_u32(buf + pos, fixed[i]);
    for (int i = 0; i < s->n_hidden; i++, pos += 4) le_put_u32(buf + pos, (uint32_t)s->hidden[i]);
    for (int i = 0; i < s->n_conv; i++, pos += 4) le_put_u32(buf + pos, (uint32_t)s->conv[i]);
    le_put_u64(buf + pos, n);
    le_put_u64(buf + pos + 8, d);
    le_put_u64(buf + pos + 16, J);
    pos += S_LENGTHS;
    cc_blake2b(buf + pos, S_HEAD_HASH, buf, pos, NULL, 0);
    return pos + S_HEAD_HASH;
}

static int s_check_save_args(const char *path, const model_t *m, const standardizer_t *st,
                             cc_err_t *err) {
    if (!path || !m) return cc_err_set(err, CC_ERR_ARG, "checkpoint: NULL path or model");
    if (m->spec.n_hidden < 0 || m->spec.n_hidden > MODEL_MAX_HIDDEN || m->spec.n_conv < 0 ||
        m->spec.n_conv > MODEL_MAX_CONV)
        return cc_err_set(err, CC_ERR_ARG, "%s: model spec has too many layers", path);
    if (st && st->d != (size_t)m->spec.n_inputs)
        return cc_err_set(err, CC_ERR_ARG,
                          "%s: standardizer has %zu features but the model takes %d inputs",
                          path, st->d, m->spec.n_inputs);
    return 0;
}

int checkpoint_save(const char *path, const model_t *m, const standardizer_t *st,
                    const json_t *meta, cc_err_t *err) {
    int rc = s_check_save_args(path, m, st, err);
    if (rc) return rc;
    char *json = NULL;
    if (meta && !(json = json_dumps(meta, JSON_COMPACT | JSON_ENCODE_ANY)))
        return cc_err_set(err, CC_ERR_ARG, "%s: metadata cannot be serialised as JSON", path);
    size_t J = json ? strlen(json) : 0;
    uint8_t head[S_HEAD_MAX];
    size_t head_len = s_header_encode(head, &m->spec, m->n_params, st ? st->d : 0, J);
    fileio_atomic_t f;
    rc = fileio_atomic_open(&f, path, err);
    if (rc) goto done;
    s_writer_t w = {.fp = f.fp, .hashing = 1};
    cc_blake2b_init(&w.h, S_FILE_HASH, NULL, 0);
    s_write(&w, head, head_len);
    s_write_floats(&w, m->params, m->n_params);
    if (st) {
        s_write_floats(&w, st->mean, st->d);
        s_write_floats(&w, st->std, st->d);
    }
    s_write(&w, json, J);
    uint8_t digest[S_FILE_HASH];
    cc_blake2b_final(&w.h, digest);
    w.hashing = 0;
    s_write(&w, digest, S_FILE_HASH);
    rc = fileio_atomic_commit(&f, err); /* FILEIO-1: all or nothing */
done:
    free(json);
    return rc;
}

/* ---- reading ---- */

typedef struct {
    model_spec_t spec;
    uint64_t n_params, d, meta_len;
    size_t data_off;   /* D */
    size_t total;      /* T */
} s_header_t;

static int s_truncated(cc_err_t *err, const char *path, const char *what, uint64_t want,
                       size_t got) {
    return cc_err_set(err, CC_ERR_TRUNCATED, "%s: truncated: expected %s%llu bytes, got %zu",
                      path, what, (unsigned long long)want, got);
}

static int s_file_hash_ok(const uint8_t *b, size_t len) {
    uint8_t digest[S_FILE_HASH];
    if (len < 12 + S_FILE_HASH) return 0;
    cc_blake2b(digest, S_FILE_HASH, b, len - S_FILE_HASH, NULL, 0);
    return memcmp(digest, b + len - S_FILE_HASH, S_FILE_HASH) == 0;
}

/* Magic and version. */
static int s_check_prefix(const uint8_t *b, size_t len, const char *path, cc_err_t *err) {
    size_t k = len < 8 ? len : 8;
    if (memcmp(b, s_magic, k) != 0)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: not a Concord model file (bad magic)",
                          path);
    if (len < 12) return s_truncated(err, path, "at least ", S_FIXED, len);
    uint32_t version = le_get_u32(b + 8);
    if (version == CHECKPOINT_VERSION) return 0;
    if (s_file_hash_ok(b, len))
        return cc_err_set(err, CC_ERR_FORMAT,
                          "%s: unsupported model file format version %u (this build reads %u)",
                          path, version, CHECKPOINT_VERSION);
    return cc_err_set(err, CC_ERR_CORRUPT,
                      "%s: corrupt: unknown format version %u and the file checksum does not match",
                      path, version);
}

static int s_decode_enums(model_spec_t *s, const uint8_t *b, const char *path, cc_err_t *err) {
    uint32_t kind = le_get_u32(b + 12), act = le_get_u32(b + 36);
    if (kind > MODEL_CNN || act > ACT_TANH)
        return cc_err_set(err, CC_ERR_CORRUPT,
                          "%s: corrupt: unknown model kind %u or activation %u", path, kind, act);
    s->kind = (model_kind_t)kind;
    s->act = (act_kind_t)act;
    return 0;
}

/* Reads the header (after s_check_prefix) and verifies the header hash. */
static int s_parse_header(s_header_t *h, const uint8_t *b, size_t len, const char *path,
                          cc_err_t *err) {
    memset(h, 0, sizeof *h);
    if (len < S_FIXED) return s_truncated(err, path, "at least ", S_FIXED, len);
    uint32_t H = le_get_u32(b + 44), K = le_get_u32(b + 48);
    if (H > MODEL_MAX_HIDDEN || K > MODEL_MAX_CONV)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: %u hidden and %u conv layers", path,
                          H, K);
    size_t lengths = S_FIXED + 4 * ((size_t)H + K);
    h->data_off = lengths + S_LENGTHS + S_HEAD_HASH;
    if (len < h->data_off) return s_truncated(err, path, "at least ", h->data_off, len);
    uint8_t digest[S_HEAD_HASH];
    cc_blake2b(digest, S_HEAD_HASH, b, lengths + S_LENGTHS, NULL, 0);
    if (memcmp(digest, b + lengths + S_LENGTHS, S_HEAD_HASH) != 0)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: header checksum mismatch", path);
    model_spec_t *s = &h->spec;
    int rc = s_decode_enums(s, b, path, err);
    if (rc) return rc;
    s->n_inputs = le_get_i32(b + 16), s->n_classes = le_get_i32(b + 20);
    s->in_c = le_get_i32(b + 24), s->in_h = le_get_i32(b + 28), s->in_w = le_get_i32(b + 32);
    s->dropout = s_bits_float(le_get_u32(b + 40));
    s->n_hidden = (int)H, s->n_conv = (int)K;
    for (uint32_t i = 0; i < H; i++) s->hidden[i] = le_get_i32(b + S_FIXED + 4 * i);
    for (uint32_t i = 0; i < K; i++) s->conv[i] = le_get_i32(b + S_FIXED + 4 * (H + i));
    h->n_params = le_get_u64(b + lengths);
    h->d = le_get_u64(b + lengths + 8);
    h->meta_len = le_get_u64(b + lengths + 16);
    return 0;
}

/* Sizes bounded, file length, then the file hash. */
static int s_check_body(s_header_t *h, const uint8_t *b, size_t len, const char *path,
                        cc_err_t *err) {
    if (h->n_params > S_MAX_FLOATS || h->d > S_MAX_FLOATS || h->meta_len > CHECKPOINT_MAX_BYTES)
        return cc_err_set(err, CC_ERR_CORRUPT,
                          "%s: corrupt: absurd sizes (%llu params, %llu features, %llu metadata "
                          "bytes)", path, (unsigned long long)h->n_params,
                          (unsigned long long)h->d, (unsigned long long)h->meta_len);
    /* each term < 2^36: no overflow */
    uint64_t total = h->data_off + 4 * h->n_params + 8 * h->d + h->meta_len + S_FILE_HASH;
    if (len < total) return s_truncated(err, path, "", total, len);
    if (len > total)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: %zu bytes after the announced end "
                          "(%llu bytes)", path, len - (size_t)total, (unsigned long long)total);
    h->total = (size_t)total;
    if (!s_file_hash_ok(b, len))
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: checksum mismatch", path);
    return 0;
}

static uint64_t s_max(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* What model_new(spec) would allocate, without allocating: the parameter count and the
 * largest per-sample layer output (mirrors model.c's layer stack). The spec is validated,
 * so no product exceeds 2^58. */
static void s_spec_sizes(const model_spec_t *s, uint64_t *n_params, uint64_t *max_act) {
    uint64_t n = 0, size = (uint64_t)s->n_inputs, act = size;
    uint64_t c = (uint64_t)s->in_c, hh = (uint64_t)s->in_h, ww = (uint64_t)s->in_w;
    for (int i = 0; i < s->n_conv; i++) {
        uint64_t oc = (uint64_t)s->conv[i];
        n += oc * c * 9 + oc;
        act = s_max(act, oc * hh * ww);
        c = oc, hh /= 2, ww /= 2;
        size = c * hh * ww;
    }
    for (int i = 0; i < s->n_hidden; i++) {
        uint64_t out = (uint64_t)s->hidden[i];
        n += size * out + out;
        size = out;
        act = s_max(act, size);
    }
    n += size * (uint64_t)s->n_classes + (uint64_t)s->n_classes;
    *n_params = n;
    *max_act = act;
}

/* The spec must be valid and agree with the announced sizes. */
static int s_check_spec(const s_header_t *h, const char *path, cc_err_t *err) {
    cc_err_t verr = {0};
    if (model_spec_validate(&h->spec, &verr) != 0)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: invalid model spec (%s)", path,
                          verr.msg);
    uint64_t n, act;
    s_spec_sizes(&h->spec, &n, &act);
    if (n != h->n_params)
        return cc_err_set(err, CC_ERR_CORRUPT,
                          "%s: corrupt: the spec needs %llu parameters but the file holds %llu",
                          path, (unsigned long long)n, (unsigned long long)h->n_params);
    if (act > S_MAX_ACT)
        return cc_err_set(err, CC_ERR_CORRUPT,
                          "%s: corrupt: absurd layer size of %llu floats per sample", path,
                          (unsigned long long)act);
    if (h->d != 0 && h->d != (uint64_t)h->spec.n_inputs)
        return cc_err_set(err, CC_ERR_CORRUPT,
                          "%s: corrupt: standardizer has %llu features, the model %d inputs", path,
                          (unsigned long long)h->d, h->spec.n_inputs);
    return 0;
}

static int s_decode_meta(json_t **meta, const s_header_t *h, const uint8_t *b,
                         const char *path, cc_err_t *err) {
    *meta = NULL;
    if (h->meta_len == 0) return 0;
    json_error_t jerr;
    const char *text = (const char *)b + h->total - S_FILE_HASH - h->meta_len;
    *meta = json_loadb(text, (size_t)h->meta_len, JSON_DECODE_ANY, &jerr);
    if (!*meta)
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: metadata is not valid JSON (%s)",
                          path, jerr.text);
    return 0;
}

static standardizer_t *s_decode_standardizer(const s_header_t *h, const uint8_t *b) {
    if (h->d == 0) return NULL;
    standardizer_t *st = standardizer_new((size_t)h->d);
    const uint8_t *p = b + h->data_off + 4 * h->n_params;
    s_get_floats(st->mean, p, (size_t)h->d);
    s_get_floats(st->std, p + 4 * h->d, (size_t)h->d);
    return st;
}

/* Builds the outputs from a fully checked buffer. */
static int s_decode(const s_header_t *h, const uint8_t *b, model_t **m, standardizer_t **st,
                    json_t **meta, const char *path, cc_err_t *err) {
    json_t *j = NULL;
    int rc = s_decode_meta(&j, h, b, path, err);
    if (rc) return rc;
    cc_err_t merr = {0};
    *m = model_new(&h->spec, &merr);
    if (!*m || (*m)->n_params != h->n_params) {
        model_destroy(m);
        json_decref(j);
        return cc_err_set(err, CC_ERR_CORRUPT, "%s: corrupt: cannot build the model (%s)", path,
                          merr.msg[0] ? merr.msg : "parameter count mismatch");
    }
    s_get_floats((*m)->params, b + h->data_off, (size_t)h->n_params);
    if (st) *st = s_decode_standardizer(h, b);
    if (meta) *meta = j;
    else json_decref(j);
    return 0;
}

int checkpoint_load(const char *path, model_t **m, standardizer_t **st, json_t **meta,
                    cc_err_t *err) {
    *m = NULL;
    if (st) *st = NULL;
    if (meta) *meta = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = fileio_read_all(path, CHECKPOINT_MAX_BYTES, &buf, &len, err);
    if (rc == CC_ERR_FORMAT) { /* larger than CHECKPOINT_MAX_BYTES */
        rc = CC_ERR_NOMEM;
        if (err) err->code = rc;
    }
    if (rc) goto done;
    const uint8_t *b = (const uint8_t *)buf;
    s_header_t h;
    if (len < 8 && memcmp(b, s_magic, len) == 0) {
        rc = s_truncated(err, path, "at least ", S_FIXED, len);
        goto done;
    }
    if ((rc = s_check_prefix(b, len, path, err)) || (rc = s_parse_header(&h, b, len, path, err)) ||
        (rc = s_check_body(&h, b, len, path, err)) || (rc = s_check_spec(&h, path, err)))
        goto done;
    rc = s_decode(&h, b, m, st, meta, path, err);
done:
    free(buf);
    return rc;
}

/* ---- safetensors export ---- */

typedef struct {
    char name[40];
    int rank;
    int64_t shape[4];
    const float *data;
    size_t count;
} s_tensor_t;

static const char *s_act_torch(act_kind_t act) {
    switch (act) {
    case ACT_RELU: return "ReLU()";
    case ACT_GELU: return "GELU(approximate='tanh')"; /* layers.c uses the tanh form */
    case ACT_TANH: return "Tanh()";
    }
    return "?";
}

/* True if a torch.nn.Flatten sits in the twin right before layer i. */
static int s_flatten_before(const model_t *m, int i) {
    return i > 0 && m->layers[i].kind == LAYER_DENSE && m->layers[i - 1].kind == LAYER_MAXPOOL;
}

static void s_add_tensor(s_tensor_t *t, const char *name, const float *data, int rank,
                         int64_t d0, int64_t d1) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rank = rank;
    t->shape[0] = d0, t->shape[1] = d1, t->shape[2] = 3, t->shape[3] = 3;
    t->data = data;
    t->count = (size_t)d0;
    for (int r = 1; r < rank; r++) t->count *= (size_t)t->shape[r];
}

/* Fills t (room for 2 * n_layers + 2) in file order; returns the count. The twin's
 * index of layer i is i plus the number of Flatten modules before it. */
static int s_collect_tensors(const model_t *m, const standardizer_t *st, s_tensor_t *t) {
    int nt = 0, shift = 0;
    char wname[24], bname[24];
    for (int i = 0; i < m->n_layers; i++) {
        const layer_t *l = &m->layers[i];
        shift += s_flatten_before(m, i);
        snprintf(wname, sizeof wname, "%d.weight", i + shift);
        snprintf(bname, sizeof bname, "%d.bias", i + shift);
        const float *w = m->params + l->w_off, *b = m->params + l->b_off;
        if (l->kind == LAYER_DENSE) {
            s_add_tensor(&t[nt++], wname, w, 2, l->out_size, l->in_size);
            s_add_tensor(&t[nt++], bname, b, 1, l->out_size, 0);
        } else if (l->kind == LAYER_CONV) {
            s_add_tensor(&t[nt++], wname, w, 4, l->oc, l->c);
            s_add_tensor(&t[nt++], bname, b, 1, l->oc, 0);
        }
    }
    if (st) {
        s_add_tensor(&t[nt++], "standardizer.mean", st->mean, 1, (int64_t)st->d, 0);
        s_add_tensor(&t[nt++], "standardizer.std", st->std, 1, (int64_t)st->d, 0);
    }
    return nt;
}

/* One module of the twin, e.g. "Linear(64, 10)". */
static void s_layer_torch(const layer_t *l, char *buf, size_t len) {
    switch (l->kind) {
    case LAYER_DENSE: snprintf(buf, len, "Linear(%d, %d)", l->in_size, l->out_size); break;
    case LAYER_ACT: snprintf(buf, len, "%s", s_act_torch(l->act)); break;
    case LAYER_DROPOUT: snprintf(buf, len, "Dropout(p=%.9g)", l->p); break;
    case LAYER_CONV:
        snprintf(buf, len, "Conv2d(%d, %d, kernel_size=3, padding=1)", l->c, l->oc);
        break;
    case LAYER_MAXPOOL: snprintf(buf, len, "MaxPool2d(2)"); break;
    }
}

/* "Conv2d(1, 4, kernel_size=3, padding=1), ReLU(), MaxPool2d(2), Flatten(), Linear(...)" */
static char *s_torch_sequential(const model_t *m) {
    size_t cap = 64 * ((size_t)m->n_layers + 1), pos = 0;
    char *s = cc_xmalloc(cap), module[64];
    s[0] = '\0';
    for (int i = 0; i < m->n_layers; i++) {
        if (s_flatten_before(m, i)) pos += (size_t)snprintf(s + pos, cap - pos, "Flatten(), ");
        s_layer_torch(&m->layers[i], module, sizeof module);
        pos += (size_t)snprintf(s + pos, cap - pos, "%s%s", module,
                                i + 1 < m->n_layers ? ", " : "");
    }
    return s;
}

static void s_meta_set(json_t *o, const char *key, const char *fmt, long long v) {
    char buf[64];
    snprintf(buf, sizeof buf, fmt, v);
    json_object_set_new(o, key, json_string(buf));
}

static json_t *s_safetensors_metadata(const model_t *m, const standardizer_t *st) {
    const model_spec_t *s = &m->spec;
    static const char *kinds[] = {"softmax", "mlp", "cnn"};
    char arch[256], buf[128];
    json_t *o = json_object();
    json_object_set_new(o, "format", json_string("pt"));
    json_object_set_new(o, "producer", json_string("concord " CONCORD_VERSION));
    model_spec_arch(s, arch, sizeof arch);
    json_object_set_new(o, "arch", json_string(arch));
    json_object_set_new(o, "kind", json_string(kinds[s->kind]));
    json_object_set_new(o, "activation", json_string(model_act_name(s->act)));
    json_object_set_new(o, "activation_torch", json_string(s_act_torch(s->act)));
    snprintf(buf, sizeof buf, "%.9g", s->dropout);
    json_object_set_new(o, "dropout", json_string(buf));
    s_meta_set(o, "n_inputs", "%lld", s->n_inputs);
    s_meta_set(o, "n_classes", "%lld", s->n_classes);
    if (s->kind == MODEL_CNN)
        snprintf(buf, sizeof buf, "[%d, %d, %d]", s->in_c, s->in_h, s->in_w);
    else
        snprintf(buf, sizeof buf, "[%d]", s->n_inputs);
    json_object_set_new(o, "input_shape", json_string(buf));
    json_object_set_new(o, "input_layout", json_string("rows of n_inputs floats; images NCHW"));
    char *seq = s_torch_sequential(m);
    json_object_set_new(o, "torch_sequential", json_string(seq));
    free(seq);
    json_object_set_new(o, "standardizer",
                        json_string(st ? "apply x' = (x - standardizer.mean) / standardizer.std "
                                         "to the raw features before the model"
                                       : "none"));
    return o;
}

/* The JSON header with offsets, in tensor order; caller frees. */
static char *s_safetensors_header(const model_t *m, const standardizer_t *st,
                                  const s_tensor_t *t, int nt) {
    json_t *root = json_object();
    json_object_set_new(root, "__metadata__", s_safetensors_metadata(m, st));
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        json_t *shape = json_array();
        for (int r = 0; r < t[i].rank; r++)
            json_array_append_new(shape, json_integer((json_int_t)t[i].shape[r]));
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets",
                            json_pack("[I, I]", (json_int_t)off,
                                      (json_int_t)(off + 4 * t[i].count)));
        json_object_set_new(root, t[i].name, e);
        off += 4 * t[i].count;
    }
    char *text = json_dumps(root, JSON_COMPACT); /* keeps insertion order */
    json_decref(root);
    return text;
}

int checkpoint_export_safetensors(const char *path, const model_t *m, const standardizer_t *st,
                                  cc_err_t *err) {
    if (!path || !m) return cc_err_set(err, CC_ERR_ARG, "safetensors: NULL path or model");
    s_tensor_t *t = cc_xcalloc(2 * (size_t)m->n_layers + 2, sizeof *t);
    int nt = s_collect_tensors(m, st, t);
    char *header = s_safetensors_header(m, st, t, nt);
    int rc = 0;
    if (!header) {
        rc = cc_err_set(err, CC_ERR_ARG, "%s: cannot serialise the safetensors header", path);
        goto done;
    }
    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;
    fileio_atomic_t f;
    if ((rc = fileio_atomic_open(&f, path, err))) goto done;
    s_writer_t w = {.fp = f.fp, .hashing = 0};
    uint8_t n8[8];
    le_put_u64(n8, padded);
    s_write(&w, n8, 8);
    s_write(&w, header, hlen);
    for (size_t i = hlen; i < padded; i++) s_write(&w, " ", 1);
    for (int i = 0; i < nt; i++) s_write_floats(&w, t[i].data, t[i].count);
    rc = fileio_atomic_commit(&f, err); /* FILEIO-1 */
done:
    free(header);
    free(t);
    return rc;
}
