/* minus.c — FedCE minus models computed by the coordinator (DESIGN §6.1,
 * `[fedce] minus_model = coordinator`).
 *
 * At the close of round t the coordinator still holds everything the client-side formula
 * needs: θ_t (the model the round started from), θ_{t+1} (just aggregated), each Δ̃_k (its
 * row of U) and the weight w_k it had. For every update aggregated with 0 < w_k < 1 it
 * computes
 *     θ⁻_k = θ_t + (θ_{t+1} − θ_t − η_s w_k Δ̃_k) / (1 − w_k)
 * with fedce_minus_model, the very function a client uses on the very same floats, so both
 * routes give the same bits (tests/test_fedce_minus.c). The set is sent in round t+1's
 * training tasks (one "minus_params" frame per client, phases.c) and kept until the next
 * aggregation replaces it; an aborted round keeps it, since θ did not change.
 *
 * Crash safety: the set is part of every checkpoint (sections "minus_meta" and "minus"),
 * so a coordinator restarted mid-round sends the same θ⁻_k to the clients it still waits
 * for, and the run stays bit-identical. A checkpoint without the sections (written while
 * minus_model was client) gives an empty set: those clients skip scoring for one round.
 *
 * Memory: n·P floats, n ≤ the last round's participants (plus the same again for a moment
 * at the close, while tasks of the round just closed may still hold the old set).
 * The set is reference-counted: the coordinator holds one reference, and each task
 * snapshot another while ZeroMQ sends frames that point into it (possibly from its I/O
 * thread, hence the atomic count). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "fedce.h"
#include "log.h"
#include "snapshot.h"

struct coord_minus {
    uint64_t round;                /* the aggregation the models come from */
    size_t n, P;
    char (*ids)[WIRE_MAX_ID + 1];  /* (n) in client-id order */
    double *coef;                  /* (n) w_k: the c_k each client's task carries */
    float *theta;                  /* (n, P) θ⁻_k */
    int refs;
};

static struct coord_minus *s_new(uint64_t round, size_t n, size_t P) {
    struct coord_minus *m = cc_xcalloc(1, sizeof *m);
    m->round = round, m->n = n, m->P = P, m->refs = 1;
    m->ids = cc_xcalloc(n + 1, sizeof *m->ids);
    m->coef = cc_xcalloc(n + 1, sizeof *m->coef);
    m->theta = cc_xalloc_floats(n * P + 1);
    return m;
}

struct coord_minus *coord_minus_ref(struct coord_minus *m) {
    if (m) __atomic_add_fetch(&m->refs, 1, __ATOMIC_ACQ_REL);
    return m;
}

void coord_minus_release(struct coord_minus **m) {
    if (!m || !*m) return;
    struct coord_minus *p = *m;
    *m = NULL;
    if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    free(p->ids), free(p->coef), free(p->theta), free(p);
}

/* Makes m the coordinator's set (m may be NULL: none). */
static void s_install(coord_t *c, struct coord_minus *m) {
    coord_minus_release(&c->minus);
    c->minus = m;
}

void coord_minus_build(coord_t *c, const double *w, const float *theta_next) {
    size_t K = c->n_updates, n = 0;
    for (size_t k = 0; k < K; k++) n += w[k] > 0.0 && w[k] < 1.0;
    struct coord_minus *m = s_new(c->round, n, c->P);
    size_t i = 0;
    for (size_t k = 0; k < K; k++) {
        if (!(w[k] > 0.0 && w[k] < 1.0)) continue; /* alone (w = 1) or left out: no minus model */
        const coord_update_t *u = &c->updates[k];
        cc_err_t err = {0};
        float *out = m->theta + i * c->P;
        /* c->params is θ_t here: aggregation replaces it only after this call. */
        if (fedce_minus_model(out, c->params, theta_next, c->U + u->slot * c->P, w[k], c->server_lr, c->P, &err)) {
            cc_log_warn("fedce_minus_failed", "round=%llu client=%s reason=\"%s\"", (unsigned long long)c->round,
                        u->id, err.msg);
            continue;
        }
        snprintf(m->ids[i], sizeof m->ids[i], "%s", u->id);
        m->coef[i++] = w[k];
    }
    m->n = i;
    s_install(c, m);
}

const float *coord_minus_find(const struct coord_minus *m, const char *id, double *coef, uint64_t *round) {
    for (size_t i = 0; m && i < m->n; i++) {
        if (strcmp(m->ids[i], id) != 0) continue;
        *coef = m->coef[i], *round = m->round;
        return m->theta + i * m->P;
    }
    return NULL;
}

/* ---- persistence ------------------------------------------------------------------------ */

void coord_minus_save(const coord_t *c, struct snapshot *s) {
    const struct coord_minus *m = c->minus;
    if (!m) return;
    json_t *ids = json_array(), *coef = json_array();
    for (size_t i = 0; i < m->n; i++) {
        json_array_append_new(ids, json_string(m->ids[i]));
        json_array_append_new(coef, json_real(m->coef[i])); /* %.17g: read back exactly */
    }
    json_t *meta = json_pack("{s:I, s:o, s:o}", "round", (json_int_t)m->round, "clients", ids, "coef", coef);
    char *text = json_dumps(meta, JSON_COMPACT | JSON_REAL_PRECISION(17));
    snapshot_put(s, "minus_meta", text, strlen(text));
    snapshot_put(s, "minus", m->theta, m->n * m->P * sizeof(float));
    free(text);
    json_decref(meta);
}

int coord_minus_load(coord_t *c, const struct snapshot *s, cc_err_t *err) {
    size_t mlen = 0, tlen = 0;
    const char *text = snapshot_get(s, "minus_meta", &mlen);
    const void *theta = snapshot_get(s, "minus", &tlen);
    if (!text) {
        s_install(c, NULL); /* written while minus_model was client: none this round */
        return 0;
    }
    json_t *meta = json_loadb(text, mlen, 0, NULL);
    json_t *ids = json_object_get(meta, "clients"), *coef = json_object_get(meta, "coef");
    size_t n = json_array_size(ids);
    if (!meta || !json_is_array(ids) || json_array_size(coef) != n || !theta || tlen != n * c->P * sizeof(float)) {
        json_decref(meta);
        return cc_err_set(err, CC_ERR_CORRUPT, "checkpoint: minus models do not match their description");
    }
    struct coord_minus *m = s_new((uint64_t)json_integer_value(json_object_get(meta, "round")), n, c->P);
    for (size_t i = 0; i < n; i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        snprintf(m->ids[i], sizeof m->ids[i], "%s", id ? id : "");
        m->coef[i] = json_real_value(json_array_get(coef, i));
    }
    memcpy(m->theta, theta, tlen);
    json_decref(meta);
    s_install(c, m);
    return 0;
}
