/* phases.c — what the coordinator sends in each phase of a round, and the alignment
 * statistics phases of DESIGN §6.2:
 *
 *   phase 1   every participant returns g_k and D_k of its training data at θ_t;
 *             ḡ = Σ π_k g_k, D̄ = Σ π_k D_k with π_k = n_k / Σ n_j over those who answered
 *   phase 2   (HGP only) participants get ḡ and return H_k[ḡ]; H̄ḡ = Σ π_k H_k[ḡ]
 *   phase 0   training tasks carry the targets; each client's gaps ‖g_k − ḡ‖, ‖D_k − D̄‖
 *             go to the history and the ledger.
 * The targets are journaled before any training task leaves, so a coordinator restarted
 * mid-round sends the same targets to the clients it still waits for. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "coord.h"
#include "fedce.h"
#include "head_stats.h"
#include "log.h"
#include "msg.h"

size_t coord_slot(const coord_t *c, const char *id) {
    for (size_t i = 0; i < c->n_participants; i++)
        if (strcmp(c->participants[i], id) == 0) return i;
    return SIZE_MAX;
}

long coord_client_index(const coord_t *c, const char *id) {
    for (size_t i = 0; i < c->n_clients; i++)
        if (strcmp(c->clients[i].id, id) == 0) return (long)i;
    return -1;
}

/* c_k for id's task: its weight in the last aggregation it took part in, and that round. */
static void s_fedce_coef(const coord_t *c, const char *id, double *coef, uint64_t *round) {
    long i = coord_client_index(c, id);
    const fedce_client_t *reg = c->fedce_reg;
    *coef = 0.0, *round = 0;
    if (!c->fedce || i < 0 || !reg[i].seen || c->fedce_round[i] < 0) return;
    *coef = reg[i].coef;
    *round = (uint64_t)c->fedce_round[i];
}

/* ---- task snapshots -------------------------------------------------------------------- */

/* Sections of a snapshot, in buffer order; each is a Task frame. */
enum { SEC_PARAMS, SEC_STD_MEAN, SEC_STD_STD, SEC_ALIGN_G, SEC_ALIGN_D, SEC_ALIGN_HG, SEC_COUNT };

struct coord_snapshot {
    float *theta;  /* θ_t (P): owned, or the parent's when θ did not change since it; NULL once
                    * the coordinator took it back (coord_params_claim) */
    struct coord_snapshot *parent;
    float *extra;  /* std mean (d) | std std (d) | ḡ (L) | D̄ (L) | H̄ḡ (L) */
    size_t P, d, L;
    size_t n_sections; /* SEC_ALIGN_G when alignment is off: the targets are not copied */
    uint8_t digest[SEC_COUNT][WIRE_DIGEST_BYTES]; /* of each section, hashed once */
    struct coord_minus *minus; /* a reference: the θ⁻_k frames point into it (minus.c) */
    sumproc_t *pool;           /* where theta goes back to (coord_theta_free) */
    int refs;      /* the coordinator's own + one per frame queued in ZeroMQ */
};

static void s_snapshot_release(void *data, void *hint) {
    (void)data;
    struct coord_snapshot *s = hint;
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (s->parent) s_snapshot_release(NULL, s->parent);
        else coord_theta_free(s->pool, s->theta);
        coord_minus_release(&s->minus);
        free(s->extra);
        free(s);
    }
}

static void s_snapshot_drop(coord_t *c) {
    if (c->snap) s_snapshot_release(NULL, c->snap);
    c->snap = NULL;
}

static float *s_section(const struct coord_snapshot *s, int sec, size_t *len) {
    static const int starts_d[SEC_COUNT] = {0, 0, 1, 2, 2, 2}, starts_l[SEC_COUNT] = {0, 0, 0, 0, 1, 2};
    if (sec == SEC_PARAMS) return *len = s->P, s->theta;
    *len = sec <= SEC_STD_STD ? s->d : s->L;
    return s->extra + (size_t)starts_d[sec] * s->d + (size_t)starts_l[sec] * s->L;
}

/* Freezes θ_t, the standardizer and (when alignment is on) the targets for every task of
 * this phase, sent zero-copy. θ is not copied: the snapshot takes over c->params (the
 * next θ is written into a new buffer, coord_params_replace), or shares its predecessor's
 * when θ has not changed since. Every section is hashed here, once, so sealing K tasks
 * costs no hashing (θ's digest is the model digest computed at close). */
void coord_snapshot_refresh(coord_t *c) {
    struct coord_snapshot *s = cc_xcalloc(1, sizeof *s), *old = c->snap;
    s->P = c->P, s->d = (size_t)c->spec.n_inputs, s->L = c->L, s->refs = 1;
    s->n_sections = c->align_variants ? SEC_COUNT : SEC_ALIGN_G;
    s->theta = c->params;
    s->pool = c->sumproc;
    s->minus = coord_minus_ref(c->minus);
    if (c->params_frozen && old) s->parent = old; /* inherits the coordinator's reference */
    else s_snapshot_drop(c);
    c->params_frozen = 1;
    s->extra = cc_xcalloc(2 * s->d + (s->n_sections == SEC_COUNT ? 3 * s->L : 0) + 1, sizeof(float));
    if (c->std) {
        memcpy(s->extra, c->std->mean, s->d * sizeof(float));
        memcpy(s->extra + s->d, c->std->std, s->d * sizeof(float));
    }
    if (s->n_sections == SEC_COUNT) {
        float *t = s->extra + 2 * s->d;
        memcpy(t, c->target_g, s->L * sizeof(float));
        memcpy(t + s->L, c->target_D, s->L * sizeof(float));
        memcpy(t + 2 * s->L, c->target_Hg, s->L * sizeof(float));
    }
    memcpy(s->digest[SEC_PARAMS], c->digest, WIRE_DIGEST_BYTES);
    for (size_t sec = SEC_STD_MEAN; sec < s->n_sections; sec++) {
        size_t len;
        const float *v = s_section(s, (int)sec, &len);
        wire_digest_floats(s->digest[sec], v, len);
    }
    c->snap = s;
}

float *coord_theta_alloc(coord_t *c) {
    float *theta = sumproc_take(c->sumproc);
    return theta ? theta : cc_xalloc_floats(c->P);
}

void coord_theta_free(sumproc_t *pool, float *theta) {
    if (!sumproc_give(pool, theta)) free(theta);
}

void coord_params_replace(coord_t *c, float *theta) {
    if (!c->params_frozen && theta != c->params) coord_theta_free(c->sumproc, c->params);
    c->params = theta;
    c->params_frozen = 0;
    c->params_in_time = 0;
    s_snapshot_drop(c); /* θ_t is freed once ZeroMQ has sent its last frame */
}

int coord_params_claim(coord_t *c) {
    if (coord_tasks_queued(c)) return 0;
    struct coord_snapshot *root = NULL;
    /* Each snapshot holds one reference for the coordinator (or its child) and one per frame
     * ZeroMQ has not released yet. Only the poll loop adds frames: this cannot change to 0. */
    for (struct coord_snapshot *s = c->snap; s; s = s->parent) {
        if (__atomic_load_n(&s->refs, __ATOMIC_ACQUIRE) != 1) return 0;
        root = s;
    }
    if (root) root->theta = NULL; /* it stays ours when the snapshot goes */
    s_snapshot_drop(c);
    c->params_frozen = 0;
    return 1;
}

void coord_params_free(coord_t *c) {
    s_snapshot_drop(c);
    if (!c->params_frozen) coord_theta_free(c->sumproc, c->params);
    c->params = NULL;
}

/* minus_model = coordinator: id's θ⁻_k goes with its training task as the frame
 * "minus_params", with the weight and round it comes from; without one, c_k = 0 makes the
 * client skip scoring this round, as a client without a previous update does. Returns the
 * number of frames added (its digest is left to sealing: each θ⁻_k goes to one client). */
static size_t s_minus_frame(const coord_t *c, const char *id, int phase, Concord__Task *task, wire_frame_t *frame,
                            Concord__TensorInfo *ti, uint32_t *shape) {
    const float *minus = phase == 0 ? coord_minus_find(c->snap->minus, id, &task->fedce_coef, &task->prev_round) : NULL;
    if (!minus) {
        task->fedce_coef = 0.0, task->prev_round = 0;
        return 0;
    }
    *frame = (wire_frame_t){minus, c->P};
    *shape = (uint32_t)c->P;
    concord__tensor_info__init(ti);
    ti->name = (char *)"minus_params", ti->n_shape = 1, ti->shape = shape;
    return 1;
}

void coord_send_task(coord_t *c, const char *id, int phase) {
    Concord__Task task = CONCORD__TASK__INIT;
    Concord__TensorInfo ti[SEC_COUNT + 1], *tp[SEC_COUNT + 1];
    static const char *names[SEC_COUNT] = {"params", "std_mean", "std_std", "align_g", "align_D", "align_Hg"};
    wire_frame_t frames[SEC_COUNT + 1];
    const uint8_t *digests[SEC_COUNT + 1];
    uint32_t shapes[SEC_COUNT + 1];
    int secs[SEC_COUNT];
    size_t n = 0;
    if (c->params_in_time) coord_intime_give_up(c, "a task is sent again: θ_t is read back from the checkpoint");
    if (c->params_in_time) return; /* it could not be: the coordinator stops */
    if (!c->snap) coord_snapshot_refresh(c);
    secs[n++] = SEC_PARAMS;
    if (c->std && c->standardize == 2) secs[n++] = SEC_STD_MEAN, secs[n++] = SEC_STD_STD;
    if (phase == 2) secs[n++] = SEC_ALIGN_G;
    if (phase == 0 && c->targets_ready) {
        if (c->align_variants & ALIGN_GRADIENT) secs[n++] = SEC_ALIGN_G;
        if (c->align_variants & ALIGN_HESS_DIAG) secs[n++] = SEC_ALIGN_D;
        if (c->align_variants & ALIGN_HGP) secs[n++] = SEC_ALIGN_HG;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len;
        frames[i] = (wire_frame_t){s_section(c->snap, secs[i], &len), 0};
        frames[i].n = len, shapes[i] = (uint32_t)len, digests[i] = c->snap->digest[secs[i]];
        concord__tensor_info__init(&ti[i]);
        ti[i].name = (char *)names[secs[i]], ti[i].n_shape = 1, ti[i].shape = &shapes[i];
        tp[i] = &ti[i];
    }
    s_fedce_coef(c, id, &task.fedce_coef, &task.prev_round);
    if (c->fedce && c->fedce_minus && s_minus_frame(c, id, phase, &task, &frames[n], &ti[n], &shapes[n]))
        digests[n] = NULL, tp[n] = &ti[n], n++;
    task.round = c->round;
    task.phase = (uint32_t)phase;
    task.model_digest.data = c->digest;
    task.model_digest.len = WIRE_DIGEST_BYTES;
    task.n_tensors = n;
    task.tensors = tp;
    double left = c->deadline - cc_now();
    task.deadline_ms = left > 0 ? (uint64_t)(left * 1000.0) : 0;
    task.upload_granted = phase != 0 || coord_uploads_pregranted(c);
    task.training = &c->training;
    cc_err_t err = {0};
    if (coord_seq_ready(c)) return;
    __atomic_add_fetch(&c->snap->refs, (int)n, __ATOMIC_ACQ_REL); /* one per frame, released by ZeroMQ */
    if (msg_send_zc(c->router, id, &c->self, &c->seq, CONCORD__MSG_TYPE__MSG_TASK, c->round, &task.base, frames, n,
                    digests, s_snapshot_release, c->snap, &err))
        cc_log_warn("send_failed", "peer=%s reason=\"%s\"", id, err.msg);
}

static int s_has_update(const coord_t *c, const char *id) {
    for (size_t k = 0; k < c->n_updates; k++)
        if (strcmp(c->updates[k].id, id) == 0) return 1;
    return 0;
}

/* ---- task pacing ------------------------------------------------------------------------
 * With CURVE, ZeroMQ encrypts every outgoing task into a copy of its own, so K tasks sent
 * at once hold K copies of θ. At most task_window tasks are therefore in flight: a task
 * leaves the window when its client's next message shows it arrived (clients send a
 * Heartbeat on receiving a task), or task_confirm_s after it was sent. Without CURVE the
 * frames are shared zero-copy and the window is unbounded. Tasks go in slot order. */
enum { TASK_NONE, TASK_QUEUED, TASK_SENT, TASK_DELIVERED };

static size_t s_tasks_in_flight(coord_t *c, double now) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_participants; i++) {
        if (c->task_state[i] != TASK_SENT) continue;
        if (now - c->task_sent_at[i] > c->task_confirm_s) c->task_state[i] = TASK_DELIVERED; /* presumed */
        else n++;
    }
    return n;
}

void coord_pump_tasks(coord_t *c) {
    if (c->state != COORD_STATS && c->state != COORD_TRAINING && c->state != COORD_EXTENDED) return;
    double now = cc_now();
    size_t busy = s_tasks_in_flight(c, now);
    int phase = c->state == COORD_STATS ? c->stats_phase : 0;
    for (size_t i = 0; i < c->n_participants && busy < c->task_window; i++) {
        if (c->task_state[i] != TASK_QUEUED) continue;
        c->task_state[i] = TASK_SENT, c->task_sent_at[i] = now, busy++;
        coord_send_task(c, c->participants[i], phase);
    }
}

int coord_tasks_queued(const coord_t *c) {
    for (size_t i = 0; i < c->n_participants; i++)
        if (c->task_state[i] == TASK_QUEUED) return 1;
    return 0;
}

void coord_queue_task(coord_t *c, size_t slot) {
    c->task_state[slot] = TASK_QUEUED;
    coord_pump_tasks(c);
}

void coord_task_delivered(coord_t *c, const char *id) {
    size_t slot = coord_slot(c, id);
    if (slot == SIZE_MAX || c->task_state[slot] != TASK_SENT) return;
    c->task_state[slot] = TASK_DELIVERED;
    c->task_confirmations++; /* an answer to a task: the rate limiter refunds it (main.c) */
    coord_pump_tasks(c);
}

/* Queues the tasks of a new phase for every participant (those without an update, in the
 * training phase). */
static void s_queue_phase(coord_t *c, int phase) {
    memset(c->task_state, TASK_NONE, c->n_participants);
    for (size_t i = 0; i < c->n_participants; i++)
        if (phase != 0 || !s_has_update(c, c->participants[i])) c->task_state[i] = TASK_QUEUED;
    coord_pump_tasks(c);
}

void coord_begin_training(coord_t *c) {
    coord_snapshot_refresh(c);
    c->deadline = cc_now() + c->deadline_s;
    coord_set_state(c, COORD_TRAINING);
    coord_grants_reset(c);
    coord_intime_begin(c);
    s_queue_phase(c, 0);
}

void coord_stats_begin(coord_t *c) {
    coord_snapshot_refresh(c);
    c->stats_phase = 1;
    c->deadline = cc_now() + c->deadline_s;
    coord_set_state(c, COORD_STATS);
    s_queue_phase(c, 1);
}

/* π_k-weighted mean of the answered slots' rows of stats into target; returns Σ n_k. */
static uint64_t s_pool(const coord_t *c, const float *stats, uint8_t bit, float *target) {
    const float **rows = cc_xcalloc(c->n_participants + 1, sizeof *rows);
    double *w = cc_xcalloc(c->n_participants + 1, sizeof *w);
    uint64_t total = 0;
    size_t k = 0;
    for (size_t i = 0; i < c->n_participants; i++)
        if (c->stat_have[i] & bit) total += c->stat_n[i];
    for (size_t i = 0; i < c->n_participants; i++)
        if (c->stat_have[i] & bit) rows[k] = stats + i * c->L, w[k++] = (double)c->stat_n[i] / (double)total;
    align_targets_combine(target, rows, w, k, c->L);
    free(rows);
    free(w);
    return total;
}

static size_t s_answered(const coord_t *c, uint8_t bit) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_participants; i++) n += (c->stat_have[i] & bit) != 0;
    return n;
}

/* Phase 1 (and 2) complete: pool the targets, journal them, start the next phase. */
static void s_phase_done(coord_t *c) {
    cc_err_t err = {0};
    if (c->stats_phase == 1) {
        s_pool(c, c->stat_g, 1, c->target_g);
        s_pool(c, c->stat_D, 1, c->target_D);
        for (size_t i = 0; i < c->n_participants; i++) {
            c->gap_g[i] = (c->stat_have[i] & 1) ? align_gap(c->stat_g + i * c->L, c->target_g, c->L) : NAN;
            c->gap_d[i] = (c->stat_have[i] & 1) ? align_gap(c->stat_D + i * c->L, c->target_D, c->L) : NAN;
        }
        if (c->align_variants & ALIGN_HGP) {
            c->stats_phase = 2;
            coord_snapshot_refresh(c); /* carries ḡ now */
            c->deadline = cc_now() + c->deadline_s;
            s_queue_phase(c, 2);
            return;
        }
    } else {
        s_pool(c, c->stat_Hg, 2, c->target_Hg);
    }
    c->targets_ready = 1;
    if (coord_journal_add_targets(c, &err)) {
        cc_log_error("journal_failed", "reason=\"%s\" action=stopping", err.msg);
        c->stop = 2;
        return;
    }
    cc_log_info("targets_ready", "round=%llu answered=%zu of=%zu", (unsigned long long)c->round,
                s_answered(c, (uint8_t)c->stats_phase), c->n_participants);
    coord_begin_training(c);
}

static int s_stats_tensor(const Concord__Stats *st, size_t n_frames, const char *name, size_t L, size_t *index) {
    for (size_t i = 0; i < st->n_tensors && i < n_frames; i++)
        if (msg_tensor_is(st->tensors[i], name, L)) return *index = i, 1;
    return 0;
}

static void s_copy_frame(float *dst, transport_msg_t *msg, size_t i, size_t n) {
    memcpy(dst, zmq_msg_data(&msg->parts[1 + i]), n * sizeof(float)); /* memcpy: frames may be unaligned */
}

void coord_handle_stats(coord_t *c, coord_client_t *cl, const wire_in_t *in, transport_msg_t *msg) {
    Concord__Stats *st = concord__stats__unpack(NULL, in->body_len, in->body);
    size_t slot = coord_slot(c, cl->id), ig = 0, iD = 0, iH = 0;
    const char *why = NULL;
    if (!st) why = "Stats body does not decode";
    else if (c->state != COORD_STATS || st->round != c->round || in->round != c->round) why = "no statistics phase is open for that round";
    else if (slot == SIZE_MAX) why = "not a participant of this round";
    else if (st->phase != (uint32_t)c->stats_phase) why = "statistics of another phase";
    else if (c->stat_have[slot] & c->stats_phase) why = "statistics already received";
    else if (st->n_samples == 0 || st->n_samples > cl->n_train) why = "n_samples out of range";
    else if (st->n_tensors != in->n_frames ||
             (c->stats_phase == 1 && !(s_stats_tensor(st, in->n_frames, "g", c->L, &ig) &&
                                       s_stats_tensor(st, in->n_frames, "D", c->L, &iD))) ||
             (c->stats_phase == 2 && !s_stats_tensor(st, in->n_frames, "Hg", c->L, &iH)))
        why = "statistics tensors missing or of the wrong size";
    if (why) {
        cc_log_warn("rejected", "peer=%s kind=stats reason=\"%s\"", cl->id, why);
        if (st) concord__stats__free_unpacked(st, NULL);
        return;
    }
    if (c->stats_phase == 1) {
        s_copy_frame(c->stat_g + slot * c->L, msg, ig, c->L);
        s_copy_frame(c->stat_D + slot * c->L, msg, iD, c->L);
    } else {
        s_copy_frame(c->stat_Hg + slot * c->L, msg, iH, c->L);
    }
    c->stat_n[slot] = st->n_samples;
    c->stat_have[slot] |= (uint8_t)c->stats_phase;
    concord__stats__free_unpacked(st, NULL);
    if (s_answered(c, (uint8_t)c->stats_phase) == c->n_participants) s_phase_done(c);
}

void coord_stats_deadline(coord_t *c) {
    size_t need = (size_t)ceil(c->quorum * (double)c->n_participants), got = s_answered(c, (uint8_t)c->stats_phase);
    if (need < 1) need = 1;
    if (got >= need) {
        cc_log_warn("stats_deadline", "round=%llu phase=%d answered=%zu of=%zu action=\"pooling what arrived\"",
                    (unsigned long long)c->round, c->stats_phase, got, c->n_participants);
        s_phase_done(c);
    } else {
        cc_log_warn("stats_deadline", "round=%llu phase=%d answered=%zu needed=%zu action=\"training without targets\"",
                    (unsigned long long)c->round, c->stats_phase, got, need);
        coord_begin_training(c); /* targets_ready stays 0: clients train without the penalty */
    }
}
