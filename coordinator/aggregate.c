/* aggregate.c — FedAvg at round close: θ ← θ + η_s · Σ_k w_k Δ_k with w_k = n_k / Σ n_j.
 *
 * The accepted updates live in the round's journal; they are streamed back one at a time in
 * client-id order (never arrival order), so a run is reproducible bit for bit and the
 * coordinator holds θ, the weighted sum and one update buffer (3P floats), not K updates.
 * θ changes only after every update was read back, so a failed read leaves it untouched. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"

static int s_by_id(const void *a, const void *b) {
    return strcmp(((const coord_update_t *)a)->id, ((const coord_update_t *)b)->id);
}

/* Offset of the delta floats inside an update record: u32 header length + header. */
static int s_delta_offset(coord_t *c, const coord_update_t *u, size_t *from, cc_err_t *err) {
    uint32_t hdr_len;
    int rc = journal_read(c->journal, &u->rec, 0, &hdr_len, sizeof hdr_len, err);
    if (rc) return rc;
    *from = sizeof hdr_len + hdr_len;
    if (*from + c->P * sizeof(float) != u->rec.length)
        return cc_err_set(err, CC_ERR_CORRUPT, "journal: update of %s has %u bytes, expected %zu",
                          u->id, u->rec.length, *from + c->P * sizeof(float));
    return 0;
}

int coord_aggregate(coord_t *c, double *weights, cc_err_t *err) {
    qsort(c->updates, c->n_updates, sizeof *c->updates, s_by_id);
    double total = 0.0;
    for (size_t k = 0; k < c->n_updates; k++) total += (double)c->updates[k].n_samples;
    float *delta = cc_xalloc_floats(c->P), *sum = cc_xalloc_floats(c->P);
    memset(sum, 0, c->P * sizeof(float));
    int rc = 0;
    for (size_t k = 0; k < c->n_updates && rc == 0; k++) {
        const coord_update_t *u = &c->updates[k];
        size_t from;
        weights[k] = (double)u->n_samples / total;
        rc = s_delta_offset(c, u, &from, err);
        if (!rc) rc = journal_read(c->journal, &u->rec, from, delta, c->P * sizeof(float), err);
        if (!rc) cblas_saxpy((int)c->P, (float)weights[k], delta, 1, sum, 1);
    }
    if (!rc) {
        cblas_saxpy((int)c->P, (float)c->server_lr, sum, 1, c->params, 1);
        wire_digest_floats(c->digest, c->params, c->P);
    }
    free(delta);
    free(sum);
    return rc;
}
