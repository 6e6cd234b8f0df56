/* make_corpus.c — writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/)
 * with the project's own writers: wire_seal, dataset_save_*, checkpoint_save, journal_append,
 * snapshot_write, ledger_append. Deterministic (fixed keys and values), so running it again
 * gives the same bytes:
 *
 *     build-fuzz/make_corpus fuzz/corpus
 *
 * Each seed is a valid input (plus a few damaged variants: torn journal and ledger tails),
 * in the framing its target reads (the mode byte and headers described at the top of each
 * fuzz_<target>.c). The config seeds are deploy/coordinator.ini and deploy/client.ini,
 * copied by hand; this program writes one more. */
#include "fuzz_common.h"
#include "fuzz_journal_repair.h"

#include <jansson.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "concord.pb-c.h"
#include "dataset.h"
#include "identity.h"
#include "journal.h"
#include "ledger.h"
#include "log.h"
#include "snapshot.h"
#include "wire.h"

static const char *s_out;
static char s_tmp[256];

static void s_die(const char *what, const cc_err_t *err) {
    fprintf(stderr, "make_corpus: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

/* Writes OUT/target/name: an optional mode byte, then p[0, n). */
static void s_seed(const char *target, const char *name, int mode, const void *p, size_t n) {
    char dir[512], path[768];
    snprintf(dir, sizeof dir, "%s/%s", s_out, target);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) s_die(dir, NULL);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) s_die(path, NULL);
    if (mode >= 0) fputc(mode, f);
    if (n && fwrite(p, 1, n, f) != n) s_die(path, NULL);
    if (fclose(f) != 0) s_die(path, NULL);
}

/* The bytes of a file the writers produced (caller frees). */
static uint8_t *s_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) s_die(path, NULL);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    uint8_t *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) s_die(path, NULL);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* A scratch path s_tmp/name (removed again by s_clean_tmp). */
static char s_tmp_names[16][512];
static int s_n_tmp;

static const char *s_tmp_path(const char *name) {
    for (int i = 0; i < s_n_tmp; i++)
        if (strcmp(strrchr(s_tmp_names[i], '/') + 1, name) == 0) {
            unlink(s_tmp_names[i]);
            return s_tmp_names[i];
        }
    if (s_n_tmp == 16) abort();
    snprintf(s_tmp_names[s_n_tmp], sizeof s_tmp_names[0], "%s/%s", s_tmp, name);
    return s_tmp_names[s_n_tmp++];
}

static void s_clean_tmp(void) {
    for (int i = 0; i < s_n_tmp; i++) unlink(s_tmp_names[i]);
    if (rmdir(s_tmp) != 0) fprintf(stderr, "make_corpus: could not remove %s\n", s_tmp);
}

/* ---- envelope ---- */

/* mode | nf | lens | envelope length | envelope | frames (fuzz_envelope.c). */
static void s_envelope_seed(const char *name, int mode, uint32_t type, int sender,
                            const ProtobufCMessage *body, const float *const *frames,
                            const size_t *counts, size_t nf) {
    uint8_t body_buf[4096];
    size_t body_len = body ? protobuf_c_message_pack(body, body_buf) : 0;
    wire_frame_t wf[8];
    for (size_t i = 0; i < nf; i++) wf[i].data = frames[i], wf[i].n = counts[i];
    wire_out_t msg = {.type = type, .sender_id = fuzz_key(sender)->id, .seq = 7, .round = 3,
                      .body = body_buf, .body_len = body_len, .frames = wf, .n_frames = nf};
    uint8_t *env;
    size_t env_len;
    cc_err_t err = {0};
    if (wire_seal(&msg, fuzz_key(sender)->sk, &env, &env_len, &err) != 0) s_die("wire_seal", &err);
    uint8_t in[8192];
    size_t n = 0;
    in[n++] = (uint8_t)nf;
    for (size_t i = 0; i < nf; i++) {
        in[n++] = (uint8_t)(counts[i] * 4), in[n++] = (uint8_t)((counts[i] * 4) >> 8);
    }
    fuzz_put_le32(in + n, (uint32_t)env_len);
    n += 4;
    memcpy(in + n, env, env_len);
    n += env_len;
    for (size_t i = 0; i < nf; i++) {
        memcpy(in + n, frames[i], counts[i] * 4);
        n += counts[i] * 4;
    }
    s_seed("envelope", name, mode, in, n);
    free(env);
}

static void s_envelopes(void) {
    static const float params[6] = {0.5f, -1.25f, 2.0f, 0.0f, 3.5f, -0.75f};
    static const float delta[4] = {0.01f, -0.02f, 0.03f, 0.0f};
    const float *f1[1] = {params}, *f2[1] = {delta};
    size_t c1[1] = {6}, c2[1] = {4};

    uint32_t shape6[1] = {6}, shape4[1] = {4};
    Concord__TensorInfo ti = CONCORD__TENSOR_INFO__INIT, *tis[1] = {&ti};
    ti.name = "params", ti.n_shape = 1, ti.shape = shape6;
    Concord__TrainSettings ts = CONCORD__TRAIN_SETTINGS__INIT;
    ts.epochs = 1, ts.batch = 8, ts.optimizer = "sgd", ts.lr = 0.1f, ts.per_class = "off";
    ts.fedce_metric = "accuracy";
    Concord__Task task = CONCORD__TASK__INIT;
    uint8_t digest[32];
    wire_digest_floats(digest, params, 6);
    task.round = 3, task.model_digest.data = digest, task.model_digest.len = 32;
    task.n_tensors = 1, task.tensors = tis, task.training = &ts;
    s_envelope_seed("task-raw", 0, CONCORD__MSG_TYPE__MSG_TASK, FUZZ_KEY_COORDINATOR,
                    &task.base, f1, c1, 1);
    s_envelope_seed("task-reseal", 2, CONCORD__MSG_TYPE__MSG_TASK, FUZZ_KEY_COORDINATOR,
                    &task.base, f1, c1, 1);

    Concord__TensorInfo ui = CONCORD__TENSOR_INFO__INIT, *uis[1] = {&ui};
    ui.name = "delta", ui.n_shape = 1, ui.shape = shape4;
    Concord__Metrics vm = CONCORD__METRICS__INIT;
    vm.n = 10, vm.loss = 0.5, vm.accuracy = 0.8;
    uint64_t counts[3] = {4, 3, 3};
    Concord__Update up = CONCORD__UPDATE__INIT;
    up.round = 3, up.base_digest.data = digest, up.base_digest.len = 32, up.n_samples = 10;
    up.n_class_counts = 3, up.class_counts = counts, up.n_tensors = 1, up.tensors = uis;
    up.val_metrics = &vm;
    s_envelope_seed("update-raw", 0, CONCORD__MSG_TYPE__MSG_UPDATE, FUZZ_KEY_HOSPITAL, &up.base,
                    f2, c2, 1);
    s_envelope_seed("update-digests-unaligned", 1 | 4, CONCORD__MSG_TYPE__MSG_UPDATE,
                    FUZZ_KEY_HOSPITAL, &up.base, f2, c2, 1);

    double sum[2] = {1.5, 2.5}, sumsq[2] = {3.0, 7.0};
    Concord__FeatureStats fs = CONCORD__FEATURE_STATS__INIT;
    fs.n = 2, fs.n_sum = 2, fs.sum = sum, fs.n_sumsq = 2, fs.sumsq = sumsq;
    Concord__Hello hello = CONCORD__HELLO__INIT;
    hello.protocol_version = 1, hello.n_train = 8, hello.n_val = 2, hello.n_features = 2;
    hello.n_class_counts = 3, hello.class_counts = counts, hello.stats = &fs;
    s_envelope_seed("hello-raw", 0, CONCORD__MSG_TYPE__MSG_HELLO, FUZZ_KEY_HOSPITAL, &hello.base,
                    NULL, NULL, 0);

    Concord__ModelSpec spec = CONCORD__MODEL_SPEC__INIT;
    spec.arch = "mlp:8", spec.n_inputs = 4, spec.n_classes = 3, spec.activation = "relu";
    Concord__Welcome w = CONCORD__WELCOME__INIT;
    w.model = &spec, w.round = 3, w.rounds = 10, w.standardize = "federated", w.heartbeat_ms = 500;
    s_envelope_seed("welcome-raw", 0, CONCORD__MSG_TYPE__MSG_WELCOME, FUZZ_KEY_COORDINATOR,
                    &w.base, NULL, NULL, 0);
    s_envelope_seed("welcome-other-key", 3, CONCORD__MSG_TYPE__MSG_WELCOME,
                    FUZZ_KEY_COORDINATOR, &w.base, NULL, NULL, 0);

    Concord__Heartbeat hb = CONCORD__HEARTBEAT__INIT;
    hb.round = 3, hb.state = "training";
    s_envelope_seed("heartbeat-raw", 0, CONCORD__MSG_TYPE__MSG_HEARTBEAT, FUZZ_KEY_HOSPITAL,
                    &hb.base, NULL, NULL, 0);
}

/* ---- datasets ---- */

static dataset_t *s_small_dataset(void) {
    /* 6 rows x 3 features, 3 classes */
    static const float x[6][3] = {{0.1f, 0.5f, 1.0f}, {0.0f, 0.25f, 0.75f}, {1.0f, 0.0f, 0.5f},
                                  {0.2f, 0.4f, 0.6f}, {0.9f, 0.8f, 0.7f}, {0.3f, 0.3f, 0.3f}};
    static const int32_t y[6] = {0, 1, 2, 0, 1, 2};
    dataset_t *ds = dataset_new(6, 3, 3);
    memcpy(ds->x, x, sizeof x);
    memcpy(ds->y, y, sizeof y);
    return ds;
}

static void s_datasets(void) {
    cc_err_t err = {0};
    dataset_t *ds = s_small_dataset();
    size_t n;
    uint8_t *b;

    const char *p = s_tmp_path("small.data");
    if (dataset_save_fann(ds, p, &err) != 0) s_die("dataset_save_fann", &err);
    b = s_slurp(p, &n);
    s_seed("fann", "three-classes.data", -1, b, n);
    free(b);
    static const char binary[] = "3 2 1\n0.5 1\n1\n-1 2.5e-3\n0\n\n7 8\n-1\n";
    s_seed("fann", "binary-blank-line.data", -1, binary, sizeof binary - 1);

    p = s_tmp_path("small.csv");
    if (dataset_save_csv(ds, p, &err) != 0) s_die("dataset_save_csv", &err);
    b = s_slurp(p, &n);
    s_seed("csv", "three-classes.csv", 0, b, n);
    free(b);
    /* named labels, a group column, a missing value (mean imputation), quoting */
    static const char named[] =
        "site,\"age, years\",weight,label\r\n"
        "A,34,NA,yes\r\n"
        "B,\"51\",70.5,no\r\n"
        "A, 29 ,80,yes\r\n";
    s_seed("csv", "names-groups-missing.csv", 1 | (1 << 2) | (1 << 4), named, sizeof named - 1);

    /* IDX: flags | u32 images length | images | labels */
    const char *pi = s_tmp_path("t-images-idx3-ubyte"), *pl = s_tmp_path("t-labels-idx1-ubyte");
    dataset_t *im = dataset_new(3, 16, 3);
    for (size_t i = 0; i < 48; i++) im->x[i] = (float)((i * 37) % 256) / 255.0f;
    im->y[0] = 0, im->y[1] = 2, im->y[2] = 1;
    im->channels = 1, im->height = 4, im->width = 4;
    if (dataset_save_idx(im, pi, pl, &err) != 0) s_die("dataset_save_idx", &err);
    size_t ni, nl;
    uint8_t *bi = s_slurp(pi, &ni), *bl = s_slurp(pl, &nl), *in = malloc(4 + ni + nl);
    fuzz_put_le32(in, (uint32_t)ni);
    memcpy(in + 4, bi, ni);
    memcpy(in + 4 + ni, bl, nl);
    s_seed("idx", "three-4x4", 0, in, 4 + ni + nl);
    s_seed("idx", "three-4x4-gzip", 3, in, 4 + ni + nl);
    free(bi), free(bl), free(in);
    dataset_destroy(&im);
    dataset_destroy(&ds);
}

/* ---- checkpoint ---- */

static void s_checkpoint(const char *name, int mode, const char *arch, int n_inputs, int c,
                         int h, int w, int with_extras) {
    model_spec_t spec = {0};
    cc_err_t err = {0};
    if (model_spec_parse(arch, &spec, &err) != 0) s_die("model_spec_parse", &err);
    spec.n_inputs = n_inputs, spec.n_classes = 3, spec.in_c = c, spec.in_h = h, spec.in_w = w;
    spec.act = ACT_RELU;
    model_t *m = model_new(&spec, &err);
    if (!m) s_die("model_new", &err);
    model_init(m, 42);
    standardizer_t *st = NULL;
    json_t *meta = NULL;
    if (with_extras) {
        st = standardizer_new((size_t)n_inputs);
        for (int i = 0; i < n_inputs; i++) st->mean[i] = 0.5f * (float)i, st->std[i] = 1.5f;
        meta = json_pack("{s:i,s:s,s:f}", "round", 3, "optimizer", "sgd", "lr", 0.05);
    }
    const char *p = s_tmp_path("model.ckpt");
    if (checkpoint_save(p, m, st, meta, &err) != 0) s_die("checkpoint_save", &err);
    size_t n;
    uint8_t *b = s_slurp(p, &n);
    s_seed("checkpoint", name, mode, b, n);
    free(b);
    json_decref(meta);
    standardizer_destroy(&st);
    model_destroy(&m);
}

/* ---- journal ---- */

static void s_journal(void) {
    const char *p = s_tmp_path("round.journal");
    journal_t *j;
    cc_err_t err = {0};
    if (journal_open(p, 5, &j, NULL, &err) != 0) s_die("journal_open", &err);
    static const char r0[] = "hospital-a update", r1[] = "hospital-b update, longer payload";
    const float v[3] = {0.25f, -0.5f, 1.0f};
    const void *parts0[2] = {r0, v}, *parts1[1] = {r1};
    size_t lens0[2] = {sizeof r0, sizeof v}, lens1[1] = {sizeof r1};
    if (journal_append(j, parts0, lens0, 2, NULL, &err) != 0 ||
        journal_append(j, parts1, lens1, 1, NULL, &err) != 0)
        s_die("journal_append", &err);
    journal_close(&j);
    size_t n0;
    uint8_t *b0 = s_slurp(p, &n0); /* the two plain records, for the seeds below */
    if (journal_open(p, 5, &j, NULL, &err) != 0) s_die("journal_open", &err);
    uint8_t dv[JOURNAL_DIGEST_BYTES]; /* a third record: header, digested floats, empty */
    crypto_generichash(dv, sizeof dv, (const uint8_t *)v, sizeof v, NULL, 0);
    const void *parts2[3] = {r0, v, NULL};
    size_t lens2[3] = {sizeof r0, sizeof v, 0};
    const uint8_t *digests2[3] = {NULL, dv, NULL};
    if (journal_append_digested(j, parts2, lens2, digests2, 3, NULL, &err) != 0)
        s_die("journal_append_digested", &err);
    const void *parts3[3] = {r1, NULL, v}; /* a fourth: a zero run (a hole) before floats */
    size_t lens3[3] = {sizeof r1, 64, sizeof v};
    const uint8_t *digests3[3] = {NULL, NULL, dv};
    if (journal_append_digested(j, parts3, lens3, digests3, 3, NULL, &err) != 0)
        s_die("journal_append_digested", &err);
    journal_close(&j);
    size_t n;
    uint8_t *b = s_slurp(p, &n);
    /* journal_open made a random head-tag key: a fixed one instead, the heads re-tagged */
    for (int i = 0; i < 16; i++) b0[FJ_KEY + i] = b[FJ_KEY + i] = (uint8_t)(0x4b + 3 * i);
    fuzz_journal_repair(b0, n0, FJ_HEADER | FJ_RECORDS);
    fuzz_journal_repair(b, n, FJ_HEADER | FJ_RECORDS);
    s_seed("journal", "two-records", 8, b0, n0);           /* as written, its own round */
    s_seed("journal", "two-records-repair", 8 | 3, b0, n0);
    s_seed("journal", "two-records-torn", 8, b0, n0 - 5);  /* the last append cut short */
    s_seed("journal", "other-round", 0, b0, n0);           /* opened for round 1: afresh */
    s_seed("journal", "digested", 8, b, n);                /* + records with trailers, a zero run */
    s_seed("journal", "digested-repair", 8 | 16 | 3, b, n); /* its digests recomputed too */
    free(b0);
    free(b);
}

/* ---- snapshot ---- */

static void s_snapshot(void) {
    snapshot_t *s = snapshot_new();
    static const char meta[] = "{\"round\":12,\"clients\":[\"hospital-a\",\"hospital-b\"]}";
    const float params[5] = {0.5f, -0.25f, 1.0f, 0.0f, 2.0f};
    snapshot_put(s, "meta", meta, sizeof meta - 1);
    snapshot_put(s, "params", params, sizeof params);
    snapshot_put(s, "empty", NULL, 0);
    const char *p = s_tmp_path("ckpt-00000012.snap");
    cc_err_t err = {0};
    if (snapshot_write(s, p, &err) != 0) s_die("snapshot_write", &err);
    snapshot_destroy(&s);
    size_t n;
    uint8_t *b = s_slurp(p, &n);
    s_seed("snapshot", "three-sections", 0, b, n);
    s_seed("snapshot", "three-sections-repair", 7, b, n);
    free(b);
}

/* ---- ledger ---- */

static void s_ledger(void) {
    identity_t coord;
    memset(&coord, 0, sizeof coord);
    const fuzz_key_t *k = fuzz_key(FUZZ_KEY_COORDINATOR);
    snprintf(coord.id, sizeof coord.id, "%s", k->id);
    memcpy(coord.pk, k->pk, sizeof coord.pk);
    memcpy(coord.sk, k->sk, sizeof coord.sk);
    const char *p = s_tmp_path("ledger.jsonl");
    cc_err_t err = {0};
    for (int round = 1; round <= 3; round++) {
        json_t *e = json_pack("{s:i,s:s,s:{s:{s:s,s:i,s:f,s:f}}}", "round", round,
                              "model_digest",
                              "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                              "clients", "hospital-a", "update_digest", "ab12", "n_samples",
                              100 * round, "weight", 0.5, "cos", 0.25 * round);
        if (round == 3) { /* a line longer than ledger_head's first 4 KB window */
            json_t *clients = json_object_get(e, "clients");
            for (int k = 0; k < 40; k++) {
                char id[32], digest[65];
                snprintf(id, sizeof id, "site-%02d", k);
                for (int d = 0; d < 64; d++) digest[d] = "0123456789abcdef"[(k * 7 + d) % 16];
                digest[64] = '\0';
                json_object_set_new(clients, id,
                                    json_pack("{s:s,s:i,s:f,s:f,s:f}", "update_digest", digest,
                                              "n_samples", 10 + k, "weight", 1.0 / 41,
                                              "cos", 0.01 * k, "b", -0.5 + 0.03 * k));
            }
        }
        if (ledger_append(p, &coord, e, &err) != 0) s_die("ledger_append", &err);
        json_decref(e);
    }
    sodium_memzero(coord.sk, sizeof coord.sk);
    size_t n;
    uint8_t *b = s_slurp(p, &n);
    s_seed("ledger", "three-entries", 0, b, n);
    s_seed("ledger", "three-entries-resign", 1 | 2 | 4, b, n);
    s_seed("ledger", "three-entries-torn", 0, b, n - 40);
    s_seed("ledger", "three-entries-torn-short", 0, b, n / 10);
    free(b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus OUTDIR   (e.g. fuzz/corpus)\n");
        return 2;
    }
    s_out = argv[1];
    if (mkdir(s_out, 0755) != 0 && errno != EEXIST) s_die(s_out, NULL);
    snprintf(s_tmp, sizeof s_tmp, "/tmp/concord-corpus-XXXXXX");
    if (!mkdtemp(s_tmp)) s_die("mkdtemp", NULL);
    cc_log_set_level(CC_LOG_ERROR);
    (void)fuzz_key(0);

    s_envelopes();
    s_datasets();
    s_checkpoint("softmax-full", 7, "softmax", 4, 0, 0, 0, 1);
    s_checkpoint("mlp-model-only", 3, "mlp:5", 4, 0, 0, 0, 0);
    s_checkpoint("cnn-1x4x4", 7, "cnn:2", 16, 1, 4, 4, 1);
    s_checkpoint("softmax-no-repair", 4, "softmax", 2, 0, 0, 0, 1);
    s_journal();
    s_snapshot();
    s_ledger();

    static const char cfg[] =
        "\xEF\xBB\xBF; a small config: BOM, comments, duplicates, inline comments\n"
        "[federation]\nrounds = 5 ; five\nrounds=7\nseed = 18446744073709551615\n"
        "  [model]  \narch = cnn:16,32/128\nactivation = gelu\ndropout = 0.25\n"
        "[security]\ncurve = off\nidentity = ../keys/c.key\n";
    s_seed("config", "small.ini", -1, cfg, sizeof cfg - 1);

    s_clean_tmp();
    printf("make_corpus: seeds written under %s\n", s_out);
    return 0;
}
