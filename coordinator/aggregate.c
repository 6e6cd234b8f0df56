/* aggregate.c — the aggregation pipeline at round close (DESIGN §4):
 *   contribution weights (FedAvg sample counts, or FedCE §6.1) → weighted sum in client-id
 *   order (after the §6.3 normalisation already applied at ingest, or per class here in
 *   federation mode) → server step θ ← θ + η_s · Σ_k w_k Δ̃_k.
 *
 * FedAvg streams the journaled updates into a copy of θ_t, block by block (θ_t in the task
 * snapshot, the new θ and a 256 KiB buffer per thread: 2P floats); with [aggregation]
 * in_time, into θ_t's own buffer, which holds θ_t plus the client-id prefix already summed
 * as the updates arrived (intime.c), when that prefix is this close's (P floats).
 * FedCE keeps the round's updates in U (one row per participant slot, slots in client-id
 * order). Its Gram matrix G = U Uᵀ is built as the updates arrive and gives every cos_k
 * from ⟨Δ_k, S⟩ = Σ_j c_j G_kj, ‖S‖² = cᵀGc and ‖Δ_k‖² = G_kk without ever forming
 * S − c_k Δ_k. An update's row of G (⟨Δ_new, Δ_j⟩ for every update accepted before it, and
 * ⟨Δ_new, Δ_new⟩) costs one pass over those rows of U, and is computed while the update is
 * verified rather than after:
 *
 *   poll loop (rounds.c)                         worker thread (one per update)
 *   a plain update of P floats arrives from a
 *   participant whose update is not in yet
 *   coord_gram_early_start ──────────────────►  copy the frame into the sender's row of U,
 *   transport_open (BLAKE2b of the frame,        then its dots against the rows accepted so
 *   Ed25519, finiteness), protocol checks,       far and itself, column block by column
 *   norm bound, journal                          block (fedce_dots_share)
 *   accepted: coord_gram_accept: take the blocks the worker has not reached, join, write
 *             the row's entries of G
 *   rejected: coord_gram_early_end: cancel, join, drop the dots (the row of U is garbage,
 *             but no row is read before its update is accepted)
 *
 * So when the last update is verified only the weights and one more pass over U, for
 * Σ_k w_k Δ_k, remain (plus whatever of its row the verification did not hide, now on two
 * threads). A replayed journal, a per-class update (several vectors) or a failed thread
 * start take the serial path (coord_gram_add after the copy); fedce_dots, fedce_dots_mt
 * and fedce_dots_share compute every entry in the same fixed order, so G is the same bits
 * on every path and in every arrival order, and a run stays reproducible. θ changes only
 * after everything was read. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "fedce.h"
#include "log.h"
#include "wsum.h"

static int s_by_id(const void *a, const void *b) {
    return strcmp(((const coord_update_t *)a)->id, ((const coord_update_t *)b)->id);
}

/* Byte offset of update u's first vector within its journal record (wsum_record_floats:
 * after the header and the zero run that aligns it). */
static int s_vectors_from(coord_t *c, const coord_update_t *u, uint64_t *from, cc_err_t *err) {
    uint32_t hdr_len;
    int rc = journal_read(c->journal, &u->rec, 0, &hdr_len, sizeof hdr_len, err);
    if (rc) return rc;
    if (hdr_len > u->rec.length) return cc_err_set(err, CC_ERR_CORRUPT, "journal: bad header length");
    *from = wsum_record_floats(&u->rec, hdr_len);
    if (*from + c->P * sizeof(float) > u->rec.length)
        return cc_err_set(err, CC_ERR_CORRUPT, "journal: update of %s is shorter than its vector", u->id);
    return 0;
}

/* Reads vector v (of n_vec) of update u from the journal into out (P). */
static int s_read_vector(coord_t *c, const coord_update_t *u, size_t v, float *out, cc_err_t *err) {
    uint64_t from = 0;
    int rc = s_vectors_from(c, u, &from, err);
    if (rc) return rc;
    from += v * c->P * sizeof(float);
    if (from + c->P * sizeof(float) > u->rec.length)
        return cc_err_set(err, CC_ERR_CORRUPT, "journal: update of %s is shorter than its vectors", u->id);
    return journal_read(c->journal, &u->rec, from, out, c->P * sizeof(float), err);
}

/* The rows of U of the n_updates updates accepted so far (rows, slots: n_updates each). */
static void s_accepted_rows(const coord_t *c, const float **rows, size_t *slots) {
    for (size_t k = 0; k < c->n_updates; k++) {
        slots[k] = c->updates[k].slot;
        rows[k] = c->U + slots[k] * c->P;
    }
}

/* G's entries of slot's row: dots[k] = ⟨Δ_slot, Δ_slots[k]⟩ (k < n, slot itself among them). */
static void s_gram_put(coord_t *c, size_t slot, const size_t *slots, const double *dots, size_t n) {
    size_t N = c->n_clients;
    for (size_t k = 0; k < n; k++) c->gram[slot * N + slots[k]] = c->gram[slots[k] * N + slot] = (float)dots[k];
}

/* FedCE, serial: ⟨Δ_new, Δ_j⟩ of an update just accepted (its row of U filled, itself
 * counted in n_updates) with every update of the round so far, itself included: one pass
 * over their rows. fedce_dots makes each entry the same bits whatever order the updates
 * arrived in, so a run stays reproducible. */
void coord_gram_add(coord_t *c, size_t slot) {
    if (!c->U || !c->gram || slot >= c->n_clients) return;
    size_t n = c->n_updates;
    const float **rows = cc_xcalloc(n + 1, sizeof *rows);
    size_t *slots = cc_xcalloc(n + 1, sizeof *slots);
    double *dots = cc_xcalloc(n + 1, sizeof *dots);
    s_accepted_rows(c, rows, slots);
    fedce_dots_mt(dots, rows, n, c->U + slot * c->P, c->P, c->agg_threads);
    s_gram_put(c, slot, slots, dots, n);
    free(rows), free(slots), free(dots);
}

/* An update's Gram row in the making (the layout at the top of the file). The worker owns
 * row until joined (copied says it is written); the poll loop writes no row listed in rows,
 * and joins the dots once the update is accepted (share). */
struct coord_gram_early {
    pthread_t thread;
    size_t slot;       /* the sender's participant slot */
    size_t n;          /* rows: the n − 1 updates accepted at the start, then slot's own */
    const float **rows; /* (n) */
    size_t *slots;     /* (n) */
    fedce_dots_share_t share;
    atomic_int copied; /* row holds the frame */
    float *row;        /* (P) U's row of slot: the worker copies the frame into it */
    const void *frame; /* (P floats, any alignment) the received bytes, borrowed */
    size_t P;
};

static void *s_early_run(void *arg) {
    coord_gram_early_t *e = arg;
    memcpy(e->row, e->frame, e->P * sizeof(float));
    atomic_store(&e->copied, 1);
    fedce_dots_share_work(&e->share);
    return NULL;
}

/* Joins the worker (cancelled: it stops at its next block); dots (n) gets the row when not
 * cancelled. */
static void s_early_join(coord_gram_early_t *e, int cancel, double *dots) {
    if (cancel) fedce_dots_share_cancel(&e->share);
    pthread_join(e->thread, NULL);
    fedce_dots_share_end(&e->share, cancel ? NULL : dots);
}

static void s_early_free(coord_gram_early_t *e) { free(e->rows), free(e->slots), free(e); }

coord_gram_early_t *coord_gram_early_start(coord_t *c, size_t slot, const void *frame) {
    if (!c->U || !c->gram || slot >= c->n_clients) return NULL;
    coord_gram_early_t *e = cc_xcalloc(1, sizeof *e);
    e->slot = slot, e->n = c->n_updates + 1, e->P = c->P, e->frame = frame;
    e->row = c->U + slot * c->P;
    e->rows = cc_xcalloc(e->n, sizeof *e->rows);
    e->slots = cc_xcalloc(e->n, sizeof *e->slots);
    s_accepted_rows(c, e->rows, e->slots);
    e->rows[e->n - 1] = e->row, e->slots[e->n - 1] = slot;
    atomic_init(&e->copied, 0);
    fedce_dots_share_start(&e->share, e->rows, e->n, e->row, e->P);
    if (pthread_create(&e->thread, NULL, s_early_run, e) != 0) { /* the serial path will do */
        fedce_dots_share_end(&e->share, NULL);
        s_early_free(e);
        return NULL;
    }
    return e;
}

void coord_gram_early_end(coord_gram_early_t **e) {
    if (!e || !*e) return;
    s_early_join(*e, 1, NULL);
    s_early_free(*e);
    *e = NULL;
}

int coord_gram_accept(coord_t *c, size_t slot, const void *delta, coord_gram_early_t **early) {
    coord_gram_early_t *e = *early;
    *early = NULL;
    /* The early row is this update's if it was started on these very bytes for this slot,
     * and this update is the only one accepted since. Then this thread takes the blocks
     * the worker has not reached yet (once the frame is in U; with [aggregation] threads
     * ≥ 2): the close is left with less of the row to wait for. */
    int ours = e && e->slot == slot && e->frame == delta && e->n == c->n_updates &&
               c->updates[c->n_updates - 1].slot == slot;
    if (ours && c->agg_threads >= 2 && atomic_load(&e->copied)) fedce_dots_share_work(&e->share);
    if (ours) {
        double *dots = cc_xcalloc(e->n, sizeof *dots);
        s_early_join(e, 0, dots); /* before anything touches U */
        s_gram_put(c, slot, e->slots, dots, e->n);
        free(dots);
        s_early_free(e);
        return 1;
    }
    if (e) s_early_join(e, 1, NULL), s_early_free(e);
    if (c->U && slot < c->n_clients) {
        memcpy(c->U + slot * c->P, delta, c->P * sizeof(float));
        coord_gram_add(c, slot);
    }
    return 0;
}

/* cos_k of §6.1 for every update from the round's Gram matrix. */
static void s_fedce_cosines(const coord_t *c, const double *coef, double *cos) {
    size_t K = c->n_updates;
    size_t *rows = cc_xcalloc(K, sizeof *rows);
    for (size_t k = 0; k < K; k++) rows[k] = c->updates[k].slot;
    fedce_cos_gram(cos, c->gram, c->n_clients, rows, coef, K);
    free(rows);
}

/* FedCE weights of this round's updates (K ≥ 1); updates the registry (coefficients and
 * running means) and records cos, a, b by slot for the history and the ledger. */
static int s_fedce_weights(coord_t *c, double *w, cc_err_t *err) {
    size_t K = c->n_updates;
    size_t *part = cc_xcalloc(K, sizeof *part);
    double *coef = cc_xcalloc(K, sizeof *coef), *cos = cc_xcalloc(K, sizeof *cos);
    double *a = cc_xcalloc(K, sizeof *a), *b = cc_xcalloc(K, sizeof *b);
    for (size_t k = 0; k < K; k++) {
        part[k] = (size_t)coord_client_index(c, c->updates[k].id);
        b[k] = c->updates[k].data_score;
    }
    int rc = fedce_priors(coef, c->fedce_reg, c->n_clients, part, K, err);
    if (!rc && K >= 2) s_fedce_cosines(c, coef, cos);
    if (!rc) rc = fedce_round_weights(w, a, c->fedce_reg, c->n_clients, part, K, cos, b,
                                      (fedce_mode_t)c->fedce_mode, err);
    for (size_t k = 0; !rc && k < K; k++) {
        size_t slot = c->updates[k].slot;
        c->fedce_cos[slot] = K >= 2 ? cos[k] : NAN;
        c->fedce_a[slot] = a[k];
        c->fedce_b[slot] = b[k];
        /* K = 1 leaves the coefficient as it was: it still belongs to its older round, which a
         * client's saved update of this round does not match, so it scores no minus model. */
        if (K >= 2) c->fedce_round[part[k]] = (int64_t)c->round;
    }
    free(part), free(coef), free(cos), free(a), free(b);
    return rc;
}

/* sum (P) = Σ_k w_k Δ̃_k, in slot (= client-id) order. */
static int s_weighted_sum(coord_t *c, const double *w, float *sum, cc_err_t *err) {
    memset(sum, 0, c->P * sizeof(float));
    float *buf = cc_xalloc_floats(c->P);
    int rc = 0;
    if (c->per_class != 3) { /* stream Δ̃_k from the journal */
        for (size_t k = 0; k < c->n_updates && !rc; k++) {
            rc = s_read_vector(c, &c->updates[k], 0, buf, err);
            if (!rc) cblas_saxpy((int)c->P, (float)w[k], buf, 1, sum, 1);
        }
        free(buf);
        return rc;
    }
    /* §6.3 federation mode: per class, A_c = Σ_k w_k Δ_kc; the class part is
     * s·Σ_c A_c/‖A_c‖ with s keeping the norm of Σ_c A_c; the regulariser parts add as is. */
    float *cls = cc_xalloc_floats(c->P), *plain = cc_xalloc_floats(c->P);
    memset(plain, 0, c->P * sizeof(float));
    int C = c->spec.n_classes;
    for (int v = 0; v <= C && !rc; v++) {
        memset(cls, 0, c->P * sizeof(float));
        for (size_t k = 0; k < c->n_updates && !rc; k++) {
            rc = s_read_vector(c, &c->updates[k], (size_t)v, buf, err);
            if (!rc) cblas_saxpy((int)c->P, (float)w[k], buf, 1, cls, 1);
        }
        if (rc || v == C) break;
        cblas_saxpy((int)c->P, 1.0f, cls, 1, plain, 1);
        double norm = wire_l2norm(cls, c->P);
        if (norm > 0) cblas_saxpy((int)c->P, (float)(1.0 / norm), cls, 1, sum, 1);
    }
    if (!rc) {
        double unit = wire_l2norm(sum, c->P), target = wire_l2norm(plain, c->P);
        cblas_sscal((int)c->P, unit > 0 ? (float)(target / unit) : 0.0f, sum, 1);
        cblas_saxpy((int)c->P, 1.0f, cls, 1, sum, 1); /* cls holds Σ_k w_k Δ_k,reg */
    }
    free(cls), free(plain), free(buf);
    return rc;
}

void coord_fedavg_weights(double *w, const uint64_t *n, size_t K) {
    double total = 0.0;
    for (size_t k = 0; k < K; k++) total += (double)n[k];
    for (size_t k = 0; k < K; k++) w[k] = (double)n[k] / total;
}

float coord_step_scale(const coord_t *c, double w) { return (float)(c->server_lr * w); }

int coord_sum_updates(coord_t *c, const coord_update_t *const *ups, size_t n, const float *scale, float *theta,
                      cc_err_t *err) {
    uint64_t *from = cc_xcalloc(n + 1, sizeof *from);
    const float **rows = cc_xcalloc(n + 1, sizeof *rows);
    journal_record_t *recs = cc_xcalloc(n + 1, sizeof *recs);
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        recs[k] = ups[k]->rec;
        if (c->U) rows[k] = c->U + ups[k]->slot * c->P;
        else rc = s_vectors_from(c, ups[k], &from[k], err);
    }
    wsum_src_t src = {.rows = c->U ? rows : NULL, .journal = c->journal, .recs = recs, .from = from,
                      .helper = c->sumproc};
    if (!rc) rc = wsum_blocked(theta, c->P, &src, n, scale, c->agg_threads, err);
    if (c->sumproc && !sumproc_alive(c->sumproc) && !c->sumproc_lost) {
        /* Found gone: before this sum (which then ran here whole) or during it. Its buffers
         * stay mapped: θ may live in one. */
        c->sumproc_lost = 1;
        cc_log_warn("sum_process_gone",
                    "round=%llu pid=%d during_sum=%d reason=\"%s\" action=\"summing on threads from now on\"",
                    (unsigned long long)c->round, (int)sumproc_pid(c->sumproc), rc != 0, rc ? err->msg : "it had exited");
    }
    free(from), free(rows), free(recs);
    return rc;
}

/* θ_t into theta: a copy of params, or (theta being params, which held the sum begun in
 * time) read back from the checkpoint. */
static int s_theta_t_into(coord_t *c, float *theta, cc_err_t *err) {
    if (theta == c->params) return coord_intime_restore(c, err);
    memcpy(theta, c->params, c->P * sizeof(float));
    return 0;
}

/* θ_{t+1} = θ_t + η_s Σ_k w_k Δ̃_k in client-id order, the updates taken in place from U
 * (FedCE) or read from the journal (FedAvg), into a new buffer (*out). FedAvg with in_time
 * sums in θ_t's own buffer (intime.c: θ_t is in the checkpoint), continuing the sum begun as
 * the updates arrived when it is this close's; that saves a copy of θ_t and P floats. A
 * failed sum whose summing process died starts again from θ_t on threads. */
static int s_stream_into(coord_t *c, const double *w, float **out, cc_err_t *err) {
    size_t K = c->n_updates, first = 0;
    const coord_update_t **ups = cc_xcalloc(K + 1, sizeof *ups);
    float *scale = cc_xcalloc(K + 1, sizeof *scale);
    for (size_t k = 0; k < K; k++) ups[k] = &c->updates[k], scale[k] = coord_step_scale(c, w[k]);
    float *theta = coord_intime_take(c, scale, K, &first);
    int rc = 0;
    if (!theta && c->params_in_time) { /* given up, and θ_t could not be read back */
        rc = cc_err_set(err, CC_ERR_IO, "θ_t is not in memory and could not be read from the checkpoint");
    } else if (!theta && coord_intime_wanted(c) && coord_params_claim(c)) {
        theta = c->params, c->params_in_time = 1; /* nothing summed in time: all, in place too */
    } else if (!theta) {
        theta = coord_theta_alloc(c);
        memcpy(theta, c->params, c->P * sizeof(float));
    }
    int lost = c->sumproc_lost;
    if (!rc) rc = coord_sum_updates(c, ups + first, K - first, scale + first, theta, err);
    if (rc && !lost && c->sumproc_lost) { /* it died during this sum: again, here */
        first = 0;
        rc = s_theta_t_into(c, theta, err);
        if (!rc) rc = coord_sum_updates(c, ups, K, scale, theta, err);
    }
    if (first)
        cc_log_info("in_time_close", "round=%llu summed_before=%zu summed_at_close=%zu", (unsigned long long)c->round,
                    first, K - first);
    free(ups), free(scale);
    *out = theta;
    return rc;
}

static int s_cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median (robust 1) or mean after cutting `cut` values at each end (robust 2) of v (K). */
static float s_robust_value(float *v, size_t K, int robust, size_t cut) {
    qsort(v, K, sizeof *v, s_cmp_float);
    if (robust == 1) return K % 2 ? v[K / 2] : 0.5f * (v[K / 2 - 1] + v[K / 2]);
    double acc = 0.0;
    for (size_t k = cut; k < K - cut; k++) acc += v[k];
    return (float)(acc / (double)(K - 2 * cut));
}

/* Relative norm bound: updates over ratio × the round's median norm are left out (and
 * shown as excluded in the history); returns how many remain. */
static int s_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static size_t s_apply_norm_bound(coord_t *c) {
    size_t K = c->n_updates, kept = 0;
    if (c->norm_ratio <= 0.0 || K < 3) return K;
    double *norms = cc_xcalloc(K, sizeof *norms);
    for (size_t k = 0; k < K; k++) norms[k] = c->updates[k].update_norm;
    qsort(norms, K, sizeof *norms, s_cmp_double);
    double median = K % 2 ? norms[K / 2] : 0.5 * (norms[K / 2 - 1] + norms[K / 2]);
    free(norms);
    coord_update_t *keep = cc_xcalloc(K, sizeof *keep), *drop = cc_xcalloc(K, sizeof *drop);
    size_t n_drop = 0;
    for (size_t k = 0; k < K; k++) {
        coord_update_t *u = &c->updates[k];
        u->excluded = u->update_norm > c->norm_ratio * median;
        if (u->excluded)
            cc_log_warn("update_excluded", "round=%llu client=%s norm=%.4g median=%.4g ratio=%.2f",
                        (unsigned long long)c->round, u->id, u->update_norm, median, c->norm_ratio);
        if (u->excluded) drop[n_drop++] = *u;
        else keep[kept++] = *u;
    }
    /* The kept updates first (aggregated), the excluded after them (history only). */
    memcpy(c->updates, keep, kept * sizeof *keep);
    memcpy(c->updates + kept, drop, n_drop * sizeof *drop);
    free(keep), free(drop);
    return kept;
}

/* Coordinate-wise median or trimmed mean of the kept updates, read from the journal in
 * chunks (K × chunk floats at a time), into sum. Unweighted: robust statistics ignore the
 * clients' claimed sample counts, which a Byzantine client could inflate. */
static int s_robust_sum(coord_t *c, size_t K, float *sum, cc_err_t *err) {
    const size_t chunk = 4096;
    float *block = cc_xalloc_floats(K * chunk), *col = cc_xcalloc(K, sizeof *col);
    size_t cut = c->robust == 2 ? (size_t)floor(c->trim * (double)K) : 0;
    uint64_t *from = cc_xcalloc(K + 1, sizeof *from);
    int rc = 0;
    for (size_t k = 0; k < K && !rc; k++) rc = s_vectors_from(c, &c->updates[k], &from[k], err);
    for (size_t s0 = 0; s0 < c->P && !rc; s0 += chunk) {
        size_t n = c->P - s0 < chunk ? c->P - s0 : chunk;
        for (size_t k = 0; k < K && !rc; k++)
            rc = journal_read(c->journal, &c->updates[k].rec, from[k] + s0 * sizeof(float), block + k * chunk,
                              n * sizeof(float), err);
        for (size_t i = 0; i < n && !rc; i++) {
            for (size_t k = 0; k < K; k++) col[k] = block[k * chunk + i];
            sum[s0 + i] = s_robust_value(col, K, c->robust, cut);
        }
    }
    free(block), free(col), free(from);
    return rc;
}

/* The round's aggregate into a new θ; θ_t stays as it is (in the task snapshot, which
 * ZeroMQ may still be sending) until everything was read, so a failure leaves it unchanged. */
int coord_aggregate(coord_t *c, double *weights, cc_err_t *err) {
    qsort(c->updates, c->n_updates, sizeof *c->updates, s_by_id);
    size_t all = c->n_updates;
    c->n_updates = s_apply_norm_bound(c); /* excluded updates sit after n_updates */
    int rc = 0;
    if (c->fedce) {
        rc = s_fedce_weights(c, weights, err);
    } else {
        uint64_t *n = cc_xcalloc(c->n_updates + 1, sizeof *n);
        for (size_t k = 0; k < c->n_updates; k++) n[k] = c->updates[k].n_samples;
        coord_fedavg_weights(weights, n, c->n_updates);
        free(n);
    }
    float *theta = NULL;
    if (!rc && !c->robust && c->per_class != 3) {
        rc = s_stream_into(c, weights, &theta, err);
    } else if (!rc) {
        theta = coord_theta_alloc(c);
        memcpy(theta, c->params, c->P * sizeof(float));
        float *sum = cc_xalloc_floats(c->P);
        rc = c->robust ? s_robust_sum(c, c->n_updates, sum, err) : s_weighted_sum(c, weights, sum, err);
        if (!rc) cblas_saxpy((int)c->P, (float)c->server_lr, sum, 1, theta, 1);
        free(sum);
    }
    if (!rc) {
        if (c->fedce && c->fedce_minus) coord_minus_build(c, weights, theta); /* reads θ_t: before the replace */
        coord_params_replace(c, theta);
        wire_digest_floats(c->digest, c->params, c->P);
    } else if (theta == c->params) { /* summed in place: θ_t back for the round's retry */
        cc_err_t ignored;
        if (coord_intime_restore(c, &ignored)) c->stop = 2;
    } else if (theta) {
        coord_theta_free(c->sumproc, theta);
    }
    coord_intime_drop(c); /* not taken: the close did not stream, or failed before */
    for (size_t k = c->n_updates; k < all; k++) weights[k] = 0.0;
    c->n_updates = all; /* the history and the ledger list every accepted update */
    return rc;
}
