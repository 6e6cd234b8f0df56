/* history.c — history.jsonl, one JSON line per closed or aborted round:
 *   {"round", "status": "ok"|"aborted", "participants": [...], "responded": [...],
 *    "weights": {id: w}, "clients": {id: {"weight", "n_samples", "update_norm",
 *    "train_seconds", "val": {...}, "test": {...}}}, "federated": {...}, "global": {...},
 *    "duration_s", "slowest_client", "slowest_train_s", "model_digest"}
 * "val"/"test" are the clients' scores of the global model they received (θ_t);
 * "federated" their sample-weighted mean; "global" the new model θ_{t+1} on the
 * coordinator's held-out set, when it has one. The checkpoint is the commit point: lines of
 * rounds the checkpoint does not cover are dropped at start-up. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"
#include "fileio.h"
#include "log.h"
#include "metrics.h"
#include "train.h"

int coord_history_trim(coord_t *c, int64_t *last_round, cc_err_t *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = 0;
    *last_round = -1;
    if (fileio_read_all(c->history_path, (size_t)1 << 32, &text, &len, NULL) != 0) return 0;
    size_t kept = 0, dropped = 0;
    char *out = cc_xmalloc(len + 1);
    for (char *line = text, *next; line < text + len; line = next) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        next = nl ? nl + 1 : text + len;
        json_t *j = json_loadb(line, (size_t)(next - line), JSON_DISABLE_EOF_CHECK, NULL);
        json_int_t r = j ? json_integer_value(json_object_get(j, "round")) : -1;
        json_decref(j);
        if (j && nl && r >= 0 && (uint64_t)r < c->round) {
            memcpy(out + kept, line, (size_t)(next - line));
            kept += (size_t)(next - line);
            if (r > *last_round) *last_round = r;
        } else {
            dropped++;
        }
    }
    /* Appending after lines that should have gone (a torn one, say) would spoil the history. */
    if (dropped && (rc = fileio_write_atomic(c->history_path, out, kept, err)) == 0)
        cc_log_info("history_trimmed", "dropped_lines=%zu reason=\"rounds past the checkpoint\"", dropped);
    free(out);
    free(text);
    return rc;
}

static json_t *s_metrics(const Concord__Metrics *m) {
    return json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)m->n, "loss", m->loss, "accuracy",
                     m->accuracy, "balanced_accuracy", m->balanced_accuracy, "macro_f1", m->macro_f1);
}

/* Sample-weighted mean of the clients' validation (or test) metrics. */
static json_t *s_federated(const coord_t *c, int test) {
    double n = 0, loss = 0, acc = 0, bal = 0, f1 = 0;
    for (size_t k = 0; k < c->n_updates; k++) {
        const coord_update_t *u = &c->updates[k];
        const Concord__Metrics *m = test ? &u->test : &u->val;
        if ((test && !u->has_test) || m->n == 0) continue;
        double w = (double)m->n;
        n += w, loss += w * m->loss, acc += w * m->accuracy, bal += w * m->balanced_accuracy, f1 += w * m->macro_f1;
    }
    if (n == 0) return json_null();
    return json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)n, "loss", loss / n, "accuracy", acc / n,
                     "balanced_accuracy", bal / n, "macro_f1", f1 / n);
}

/* The new global model on the coordinator's held-out set. */
static json_t *s_global(coord_t *c) {
    if (!c->test) return json_null();
    cc_err_t err = {0};
    model_t *m = model_new(&c->spec, &err);
    if (!m) return json_null();
    memcpy(m->params, c->params, c->P * sizeof(float));
    float *probs = cc_xalloc_floats(c->test->n * (size_t)c->spec.n_classes);
    model_predict(m, c->test->x, c->test->n, probs);
    metrics_t mt = {0};
    json_t *j = json_null();
    if (metrics_compute(&mt, probs, c->test->y, c->test->n, c->spec.n_classes, &err) == 0) {
        j = json_pack("{s:I, s:f, s:f, s:f, s:f, s:o}", "n", (json_int_t)mt.n, "loss", mt.loss, "accuracy",
                      mt.accuracy, "balanced_accuracy", mt.balanced_accuracy, "macro_f1", mt.macro_f1,
                      "recall", json_array());
        for (int k = 0; k < mt.n_classes; k++)
            json_array_append_new(json_object_get(j, "recall"), json_real(mt.recall[k]));
    }
    metrics_free(&mt);
    free(probs);
    model_destroy(&m);
    return j;
}

static json_t *s_num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *s_clients(const coord_t *c, const double *weights, json_t *weight_map) {
    json_t *clients = json_object();
    for (size_t k = 0; k < c->n_updates; k++) {
        const coord_update_t *u = &c->updates[k];
        double w = weights ? weights[k] : 0.0;
        json_object_set_new(weight_map, u->id, json_real(w));
        json_t *cl = json_pack("{s:f, s:I, s:f, s:f, s:f, s:I, s:o}", "weight", w, "n_samples",
                               (json_int_t)u->n_samples, "update_norm", u->update_norm, "train_seconds",
                               u->train_seconds, "arrival_s", u->arrival, "upload_bytes",
                               (json_int_t)u->upload_bytes, "val", s_metrics(&u->val));
        if (u->has_test) json_object_set_new(cl, "test", s_metrics(&u->test));
        if (u->excluded) json_object_set_new(cl, "excluded", json_true());
        size_t slot = u->slot;
        if (c->fedce && slot < c->n_clients) {
            json_object_set_new(cl, "fedce_cos", s_num_or_null(c->fedce_cos[slot]));
            json_object_set_new(cl, "fedce_grad", s_num_or_null(c->fedce_a[slot]));
            json_object_set_new(cl, "fedce_data", s_num_or_null(c->fedce_b[slot]));
        }
        if (c->align_variants && slot < c->n_clients) {
            json_object_set_new(cl, "gap_g", s_num_or_null(c->gap_g[slot]));
            json_object_set_new(cl, "gap_d", s_num_or_null(c->gap_d[slot]));
        }
        json_object_set_new(clients, u->id, cl);
    }
    return clients;
}

/* Appends one line and makes it durable. */
static int s_append_line(const char *path, const char *text) {
    FILE *fp = fopen(path, "a");
    const char *what = "open";
    int ok = fp != NULL;
    if (ok) what = "write", ok = fprintf(fp, "%s\n", text) >= 0 && fflush(fp) == 0;
    if (ok) what = "fsync", ok = fsync(fileno(fp)) == 0;
    int e = errno;
    if (fp && fclose(fp) != 0 && ok) what = "close", ok = 0, e = errno;
    if (!ok)
        cc_log_error("history_write_failed", "path=%s op=%s error=\"%s\" action=\"stopping; the checkpoint carries "
                     "the line and a restart appends it\"", path, what, strerror(e));
    return ok ? 0 : -1;
}

char *coord_history_line(coord_t *c, const char *status, const double *weights, double duration) {
    json_t *participants = json_array(), *responded = json_array(), *wmap = json_object();
    for (size_t i = 0; i < c->n_participants; i++) json_array_append_new(participants, json_string(c->participants[i]));
    const coord_update_t *slowest = NULL;
    for (size_t k = 0; k < c->n_updates; k++) {
        json_array_append_new(responded, json_string(c->updates[k].id));
        if (!slowest || c->updates[k].train_seconds > slowest->train_seconds) slowest = &c->updates[k];
    }
    char hex[2 * WIRE_DIGEST_BYTES + 1];
    wire_digest_hex(hex, c->digest);
    json_t *line = json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:s, s:f, s:s}",
        "round", (json_int_t)c->round, "status", status, "participants", participants,
        "responded", responded, "clients", s_clients(c, weights, wmap), "weights", wmap,
        "federated", s_federated(c, 0), "federated_test", s_federated(c, 1), "global", s_global(c),
        "duration_s", duration, "slowest_client", slowest ? slowest->id : "",
        "slowest_train_s", slowest ? slowest->train_seconds : 0.0, "model_digest", hex);
    json_object_set_new(line, "weighting", json_string(c->fedce ? "fedce" : "fedavg"));
    json_object_set_new(line, "per_class", json_string(c->per_class_name));
    json_object_set_new(line, "alignment", json_integer((json_int_t)c->align_variants));
    uint64_t upload = 0;
    for (size_t k = 0; k < c->n_updates; k++) upload += c->updates[k].upload_bytes;
    json_object_set_new(line, "upload_bytes", json_integer((json_int_t)upload));
    char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(line);
    return text;
}

int coord_history_write(const coord_t *c, const char *line) {
    return c->history_path && c->history_path[0] ? s_append_line(c->history_path, line) : 0;
}
