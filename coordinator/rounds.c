/* rounds.c — the round state machine of coord.h and the handlers of client messages.
 *
 * Every received message is verified (signature by the enrolled key of sender_id, the
 * connection's CURVE identity and routing id equal to sender_id, seq strictly increasing)
 * before any handler sees it; a failure is a Nack with a reason, a log line and a counter,
 * and never touches the model. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"
#include "msg.h"
#include "pcn.h"
#include "syncer.h"

#define COUNT(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

static const char *s_state_names[] = {"waiting", "stats", "training", "extended", "done"};

const char *coord_reject_name(coord_reject_t r) {
    static const char *names[REJ_COUNT] = {"signature", "unknown_sender", "replay", "round", "digest",
                                           "shape", "nonfinite", "norm", "not_participant", "duplicate",
                                           "identity", "decode", "data_mismatch", "other"};
    return r < REJ_COUNT ? names[r] : "other";
}

void coord_set_state(coord_t *c, coord_state_t s) {
    if (c->state != s)
        cc_log_info("state", "round=%llu from=%s to=%s", (unsigned long long)c->round, s_state_names[c->state],
                    s_state_names[s]);
    c->state = s;
}

int coord_seq_ready(coord_t *c) {
    cc_err_t err = {0};
    if (c->stop == 2) return -1; /* stopping on an error: nothing more leaves */
    if (coord_seq_reserve(c, &err) == 0) return 0;
    /* A number outside a durable block could be reused after a restart, and the clients
     * would then refuse the coordinator's messages as replays. */
    cc_log_error("seq_reserve_failed", "reason=\"%s\" action=\"nothing more is sent; stopping\"", err.msg);
    c->stop = 2;
    return -1;
}

/* Sends a message about `round` (its envelope's round). */
static void s_send_round(coord_t *c, const char *peer, uint64_t round, uint32_t type, const ProtobufCMessage *body,
                         const wire_frame_t *frames, size_t n_frames) {
    cc_err_t err = {0};
    if (coord_seq_ready(c)) return;
    if (msg_send(c->router, peer, &c->self, &c->seq, type, round, body, frames, n_frames, &err))
        cc_log_warn("send_failed", "peer=%s reason=\"%s\"", peer, err.msg);
}

void coord_send(coord_t *c, const char *peer, uint64_t round, uint32_t type, const ProtobufCMessage *body) {
    s_send_round(c, peer, round, type, body, NULL, 0);
}

static void s_send(coord_t *c, const char *peer, uint32_t type, const ProtobufCMessage *body,
                   const wire_frame_t *frames, size_t n_frames) {
    s_send_round(c, peer, c->round, type, body, frames, n_frames);
}

/* Tells a client its update of `round` is durable. */
static void s_send_ack(coord_t *c, const char *peer, uint64_t round) {
    Concord__Ack ack = CONCORD__ACK__INIT;
    ack.round = round;
    s_send_round(c, peer, round, CONCORD__MSG_TYPE__MSG_ACK, &ack.base, NULL, 0);
}

static void s_nack(coord_t *c, const char *peer, coord_reject_t why, const char *reason) {
    COUNT(c->rejected[why]);
    cc_log_warn("rejected", "peer=%s kind=%s reason=\"%s\"", peer, coord_reject_name(why), reason);
    if (!peer[0] || !wire_id_valid(peer)) return;
    Concord__Nack nack = CONCORD__NACK__INIT;
    nack.round = c->round;
    nack.reason = (char *)reason;
    s_send(c, peer, CONCORD__MSG_TYPE__MSG_NACK, &nack.base, NULL, 0);
}

static int s_is_participant(const coord_t *c, const char *id) {
    for (size_t i = 0; i < c->n_participants; i++)
        if (strcmp(c->participants[i], id) == 0) return 1;
    return 0;
}

static int s_has_update(const coord_t *c, const char *id) {
    for (size_t k = 0; k < c->n_updates; k++)
        if (strcmp(c->updates[k].id, id) == 0) return 1;
    return 0;
}

/* ---- round start ------------------------------------------------------------------ */

/* Federated standardisation: pool the welcomed clients' sufficient statistics once, when
 * the first round starts; the result is part of every later checkpoint. */
static void s_fix_standardizer(coord_t *c) {
    if (c->std || c->standardize != 2) return;
    feature_stats_t *pool = feature_stats_new((size_t)c->spec.n_inputs);
    for (size_t i = 0; i < c->n_clients; i++)
        if (c->clients[i].welcomed && c->clients[i].stats) feature_stats_merge(pool, c->clients[i].stats);
    if (pool->n > 0) c->std = standardizer_from_stats(pool);
    feature_stats_destroy(&pool);
    if (c->std && c->test) standardizer_apply(c->std, c->test);
    cc_log_info("standardizer_fixed", "clients=%zu", coord_clients_welcomed(c));
}

static int s_by_id(const void *a, const void *b) { return strcmp(a, b); }

/* Clears the per-round state of §6.1/§6.2 for a new round. */
static void s_reset_round(coord_t *c) {
    c->n_updates = c->n_acked = 0;
    c->targets_ready = 0;
    c->stats_phase = 0;
    memset(c->stat_have, 0, c->n_clients + 1);
    for (size_t i = 0; i < c->n_clients; i++) c->gap_g[i] = c->gap_d[i] = NAN;
    /* U's rows are written as updates arrive and only those rows are read: no clearing. */
    if (c->gram) memset(c->gram, 0, c->n_clients * c->n_clients * sizeof(float));
}

int coord_start_round(coord_t *c) {
    cc_err_t err = {0};
    if (c->round == 0 && !c->std && c->standardize == 2) {
        s_fix_standardizer(c);
        if (coord_checkpoint_save(c, &err)) {
            cc_log_error("checkpoint_failed", "reason=\"%s\"", err.msg);
            return -1;
        }
    }
    c->n_participants = 0;
    for (size_t i = 0; i < c->n_clients; i++)
        if (c->clients[i].welcomed) snprintf(c->participants[c->n_participants++], WIRE_MAX_ID + 1, "%s", c->clients[i].id);
    /* Slots in client-id order: sums over participants never depend on arrival order. */
    qsort(c->participants, c->n_participants, sizeof *c->participants, s_by_id);
    s_reset_round(c);
    if (coord_journal_add_open(c, &err)) {
        cc_log_error("journal_failed", "reason=\"%s\" action=\"round not started\"", err.msg);
        return -1;
    }
    c->round_start = cc_now();
    cc_log_info("round_start", "round=%llu participants=%zu deadline_s=%.1f upload_window=%zu", (unsigned long long)c->round,
                c->n_participants, c->deadline_s, c->upload_window);
    if (c->align_variants) coord_stats_begin(c);
    else coord_begin_training(c);
    return 0;
}

/* ---- round close --------------------------------------------------------------------- */

static size_t s_quorum(const coord_t *c) {
    size_t need = (size_t)ceil(c->quorum * (double)c->n_participants);
    return need < 1 ? 1 : need;
}

/* The run is complete and committed: the clients are told Done even when the export fails;
 * the coordinator then exits 1 (an operator must notice), and a restart exports again. */
static void s_finish(coord_t *c) {
    cc_err_t err = {0};
    if (coord_flush_committed(c)) return; /* the last round's history line and ledger entry */
    coord_set_state(c, COORD_DONE);
    int exported = coord_export(c, &err) == 0;
    if (!exported)
        cc_log_error("export_failed", "prefix=%s reason=\"%s\" action=\"the run is complete; restart to export again\"",
                     c->export_prefix, err.msg);
    else cc_log_info("exported", "prefix=%s rounds=%llu", c->export_prefix, (unsigned long long)c->round);
    Concord__Done done = CONCORD__DONE__INIT;
    done.reason = "federation finished";
    done.rounds = c->round;
    for (size_t i = 0; i < c->n_clients; i++)
        if (c->clients[i].welcomed) s_send(c, c->clients[i].id, CONCORD__MSG_TYPE__MSG_DONE, &done.base, NULL, 0);
    if (!exported) c->stop = 2;
    if (!c->stop) c->stop = 1;
}

/* The updates of the last burst before a round closes are not synced on their own: the
 * round's commit (its checkpoint) makes their effect durable, so they are acknowledged
 * right after it (s_ack_committed) and the close saves a journal fdatasync. A crash before
 * the commit loses only updates nobody was told about; a restart asks their senders again. */
static void s_defer_acks_to_commit(coord_t *c) {
    for (size_t k = 0; k < c->n_updates; k++) c->updates[k].ack_at_commit = k >= c->n_acked;
    c->n_acked = c->n_updates;
}

static void s_ack_committed(coord_t *c, uint64_t round) {
    for (size_t k = 0; k < c->n_updates; k++)
        if (c->updates[k].ack_at_commit) {
            c->updates[k].ack_at_commit = 0;
            s_send_ack(c, c->updates[k].id, round);
        }
}

void coord_drop_committed(coord_t *c) {
    free(c->committed_line);
    json_decref(c->committed_entry);
    c->committed_line = NULL, c->committed_entry = NULL;
}

/* Appends the last committed round's history line and ledger entry. They waited for the
 * next round's tasks to leave: their fsyncs are then off the round's path, and the
 * checkpoint, which carries both, has made them durable already. A failure stops the
 * coordinator; the restart appends them (coord_restore_committed). */
int coord_flush_committed(coord_t *c) {
    if (!c->committed_line && !c->committed_entry) return 0;
    uint64_t round = c->round - 1;
    cc_err_t err = {0};
    int rc = c->committed_line ? coord_history_write(c, c->committed_line) : 0;
    if (!rc && coord_ledger_write(c, round, c->committed_entry, NULL, &err) != 0) {
        cc_log_error("ledger_append_failed", "round=%llu reason=\"%s\" action=\"stopping; the checkpoint carries the "
                     "entry and a restart appends it\"", (unsigned long long)round, err.msg);
        rc = -1;
    }
    coord_drop_committed(c);
    if (rc) c->stop = 2;
    return rc;
}

/* Commits round t: the checkpoint of round t+1 (the commit point), carrying round t's
 * history line and ledger entry; the Acks it made durable; a new journal. */
static void s_commit(coord_t *c, const char *status, const double *weights, double duration) {
    cc_err_t err = {0};
    coord_drop_committed(c); /* appended at the end of the tick that made them */
    c->committed_line = coord_history_line(c, status, weights, duration);
    c->committed_entry = coord_ledger_entry(c, status, weights);
    c->round++;
    if (coord_checkpoint_save(c, &err)) {
        /* Without a durable checkpoint the round cannot be committed: stop cleanly; a
         * restart replays the journal and closes the round again. */
        cc_log_error("checkpoint_failed", "round=%llu reason=\"%s\" action=\"stopping; restart resumes from the last good state\"",
                     (unsigned long long)c->round, err.msg);
        c->round--;
        coord_drop_committed(c);
        c->stop = 2;
        return;
    }
    s_ack_committed(c, c->round - 1);
    if (coord_journal_open_round(c, 0, &err)) {
        cc_log_error("journal_failed", "reason=\"%s\" action=stopping", err.msg);
        c->stop = 2;
        return;
    }
    c->n_updates = 0;
    c->n_participants = 0;
    if (c->round >= c->rounds) s_finish(c);
    else coord_set_state(c, COORD_WAITING), c->waiting_since = cc_now();
}

static void s_close_round(coord_t *c) {
    s_defer_acks_to_commit(c);
    double duration = cc_now() - c->round_start;
    double *weights = cc_xcalloc(c->n_updates ? c->n_updates : 1, sizeof *weights);
    cc_err_t err = {0};
    if (coord_aggregate(c, weights, &err)) {
        cc_log_error("aggregate_failed", "round=%llu reason=\"%s\" action=stopping", (unsigned long long)c->round, err.msg);
        free(weights);
        c->stop = 2;
        return;
    }
    COUNT(c->rounds_done);
    cc_log_info("round_closed", "round=%llu updates=%zu of=%zu duration_s=%.3f", (unsigned long long)c->round,
                c->n_updates, c->n_participants, duration);
    s_commit(c, "ok", weights, duration);
    free(weights);
}

static void s_abort_round(coord_t *c) {
    COUNT(c->rounds_aborted);
    cc_log_warn("round_aborted", "round=%llu updates=%zu needed=%zu action=\"model unchanged\"",
                (unsigned long long)c->round, c->n_updates, s_quorum(c));
    c->n_updates = 0; /* the partial updates are not used */
    coord_intime_drop(c);
    s_commit(c, "aborted", NULL, cc_now() - c->round_start);
}

static int s_round_complete(const coord_t *c) {
    return (c->state == COORD_TRAINING || c->state == COORD_EXTENDED) && c->n_updates == c->n_participants;
}

static void s_journal_failed(coord_t *c, const char *why) {
    cc_log_error("journal_failed", "reason=\"%s\" action=\"updates not acknowledged; stopping\"", why);
    c->stop = 2;
}

static void s_ack_synced(coord_t *c) {
    for (size_t k = c->n_acked; k < c->sync_upto; k++) s_send_ack(c, c->updates[k].id, c->round);
    c->n_acked = c->sync_upto;
}

/* A sync the syncer finished: Ack what it covered, if it still belongs to the open round
 * (one begun before the round closed is about updates its commit acknowledged). */
static void s_collect_sync(coord_t *c) {
    journal_sync_t sync;
    uint64_t round;
    int sync_errno;
    cc_err_t err = {0};
    if (!c->syncer || !syncer_collect(c->syncer, &sync, &round, &sync_errno)) return;
    if (journal_sync_end(c->journal, &sync, sync_errno, &err)) {
        s_journal_failed(c, err.msg);
        return;
    }
    if (round == c->round && (c->state == COORD_TRAINING || c->state == COORD_EXTENDED) && c->sync_upto <= c->n_updates)
        s_ack_synced(c);
}

/* Group commit (JOURNAL-1): one fdatasync makes every update accepted since the last one
 * durable, then each gets its Ack. The fdatasync runs on the syncer's thread while the
 * loop verifies the updates behind it; coord_tick calls this after each burst of messages
 * and when the syncer wakes the poll, so K updates cost at most K syncs and usually a few. */
void coord_flush_acks(coord_t *c) {
    s_collect_sync(c);
    if (c->stop || c->n_acked >= c->n_updates || (c->syncer && syncer_busy(c->syncer))) return;
    journal_sync_t sync;
    cc_err_t err = {0};
    if (journal_sync_begin(c->journal, &sync, &err)) {
        s_journal_failed(c, err.msg);
        return;
    }
    c->sync_upto = c->n_updates;
    if (sync.fd >= 0 && c->syncer) {
        syncer_submit(c->syncer, &sync, c->round);
        return;
    }
    int sync_errno = journal_sync_run(&sync); /* no syncer (tests), or nothing pending */
    if (journal_sync_end(c->journal, &sync, sync_errno, &err)) {
        s_journal_failed(c, err.msg);
        return;
    }
    s_ack_synced(c);
}

static void s_tick(coord_t *c);

void coord_tick(coord_t *c) {
    s_tick(c);
    if (!c->stop) coord_flush_committed(c); /* after the next round's tasks have left */
}

static void s_tick(coord_t *c) {
    double now = cc_now();
    if (s_round_complete(c)) {
        s_close_round(c); /* its commit acknowledges the updates not yet synced */
    } else {
        coord_flush_acks(c);
    }
    if (c->stop) return;
    coord_pump_tasks(c);
    coord_pump_grants(c);
    if (c->state == COORD_WAITING) {
        if (coord_clients_welcomed(c) >= (size_t)c->min_clients) {
            if (coord_start_round(c)) c->stop = 2;
        } else if (now - c->waiting_since > c->join_timeout_s) {
            cc_log_warn("join_timeout", "round=%llu welcomed=%zu min_clients=%ld action=\"still waiting\"",
                        (unsigned long long)c->round, coord_clients_welcomed(c), c->min_clients);
            c->waiting_since = now;
        }
        return;
    }
    if (c->state == COORD_STATS && now >= c->deadline) {
        coord_stats_deadline(c);
        return;
    }
    if ((c->state != COORD_TRAINING && c->state != COORD_EXTENDED) || now < c->deadline) return;
    if (c->n_updates >= s_quorum(c)) {
        s_close_round(c);
    } else if (c->state == COORD_TRAINING) {
        c->deadline = now + c->extension_s;
        cc_log_warn("deadline_extended", "round=%llu updates=%zu needed=%zu extension_s=%.1f",
                    (unsigned long long)c->round, c->n_updates, s_quorum(c), c->extension_s);
        coord_set_state(c, COORD_EXTENDED);
    } else {
        s_abort_round(c);
    }
}

double coord_next_timeout(const coord_t *c) {
    double t = 1.0;
    /* A round closed at its deadline leaves WAITING with the clients there: start the next
     * one now, not when some message happens to wake the poll. */
    if (c->state == COORD_WAITING && coord_clients_welcomed(c) >= (size_t)c->min_clients) return 0.0;
    if (c->state == COORD_STATS || c->state == COORD_TRAINING || c->state == COORD_EXTENDED) {
        double left = c->deadline - cc_now();
        if (left < t) t = left < 0 ? 0 : left;
        if (coord_tasks_queued(c) && t > 0.05) t = 0.05; /* a presumed delivery frees the window */
        if (coord_intime_waiting(c) && t > 0.05) t = 0.05; /* ZeroMQ may have let go of θ_t since */
    }
    return t;
}

/* ---- message handlers ---------------------------------------------------------------- */

static void s_reject_hello(coord_t *c, const char *id, const char *reason) {
    COUNT(c->rejected[REJ_DATA_MISMATCH]);
    cc_log_warn("hello_rejected", "client=%s reason=\"%s\"", id, reason);
    Concord__Reject rej = CONCORD__REJECT__INIT;
    rej.reason = (char *)reason;
    s_send(c, id, CONCORD__MSG_TYPE__MSG_REJECT, &rej.base, NULL, 0);
}

/* Checks a Hello against the federation's model; returns 0 or fills reason. */
static int s_hello_fits(const coord_t *c, const Concord__Hello *h, char *reason, size_t len) {
    if (h->protocol_version != WIRE_VERSION)
        snprintf(reason, len, "protocol version %u, the coordinator speaks %d", h->protocol_version, WIRE_VERSION);
    else if ((int)h->n_features != c->spec.n_inputs)
        snprintf(reason, len, "the data has %u features, the federation's model expects %d", h->n_features,
                 c->spec.n_inputs);
    else if (h->n_class_counts > (size_t)c->spec.n_classes)
        snprintf(reason, len, "the data has %zu classes, the federation's model has %d", h->n_class_counts,
                 c->spec.n_classes);
    else if (h->n_train == 0)
        snprintf(reason, len, "the training split is empty");
    else
        return 0;
    return -1;
}

static void s_register(coord_client_t *cl, const Concord__Hello *h, int n_inputs) {
    cl->welcomed = 1;
    cl->warmups_sent = 0;
    cl->n_train = h->n_train, cl->n_val = h->n_val, cl->n_test = h->n_test;
    free(cl->class_counts);
    cl->n_class_counts = h->n_class_counts;
    cl->class_counts = cc_xcalloc(h->n_class_counts + 1, sizeof(uint64_t));
    memcpy(cl->class_counts, h->class_counts, h->n_class_counts * sizeof(uint64_t));
    feature_stats_destroy(&cl->stats);
    const Concord__FeatureStats *st = h->stats;
    if (st && st->n_sum == (size_t)n_inputs && st->n_sumsq == (size_t)n_inputs && st->n > 0) {
        cl->stats = feature_stats_new((size_t)n_inputs);
        cl->stats->n = st->n;
        memcpy(cl->stats->sum, st->sum, st->n_sum * sizeof(double));
        memcpy(cl->stats->sumsq, st->sumsq, st->n_sumsq * sizeof(double));
    }
}

void coord_warmup_received(coord_t *c, size_t client) {
    if (client >= c->n_clients) return;
    COUNT(c->warmups_received);
    coord_client_t *cl = &c->clients[client];
    if (cl->welcomed) transport_warmup_turn(c->router, cl->id, &cl->warmups_sent);
}

static void s_handle_hello(coord_t *c, coord_client_t *cl, const wire_in_t *in) {
    Concord__Hello *h = concord__hello__unpack(NULL, in->body_len, in->body);
    char reason[256];
    if (!h) {
        s_nack(c, cl->id, REJ_DECODE, "Hello body does not decode");
        return;
    }
    if (s_hello_fits(c, h, reason, sizeof reason)) {
        s_reject_hello(c, cl->id, reason);
        concord__hello__free_unpacked(h, NULL);
        return;
    }
    s_register(cl, h, c->spec.n_inputs);
    concord__hello__free_unpacked(h, NULL);
    Concord__Welcome w = CONCORD__WELCOME__INIT;
    Concord__ModelSpec spec;
    char arch[128];
    msg_spec_to_proto(&c->spec, &spec, arch, sizeof arch);
    static const char *std_names[] = {"none", "local", "federated"};
    w.model = &spec;
    w.round = c->round;
    w.rounds = c->rounds;
    w.standardize = (char *)std_names[c->standardize];
    s_send(c, cl->id, CONCORD__MSG_TYPE__MSG_WELCOME, &w.base, NULL, 0);
    transport_warmup_turn(c->router, cl->id, &cl->warmups_sent); /* the exchange starts (common/transport.h) */
    cc_log_info("client_welcomed", "client=%s n_train=%llu welcomed=%zu", cl->id, (unsigned long long)cl->n_train,
                coord_clients_welcomed(c));
    /* A participant that (re)connects mid-round gets its task (again); an upload it was
     * granted or waiting for ends with the old connection (it asks again). */
    coord_upload_done(c, cl->id);
    size_t slot = coord_slot(c, cl->id);
    if (slot != SIZE_MAX && c->state == COORD_STATS && !(c->stat_have[slot] & c->stats_phase))
        coord_queue_task(c, slot);
    if (slot != SIZE_MAX && (c->state == COORD_TRAINING || c->state == COORD_EXTENDED) && !s_has_update(c, cl->id))
        coord_queue_task(c, slot);
}

/* Protocol-state checks of an Update; returns the reject kind or -1 when it is acceptable. */
static int s_check_update(const coord_t *c, const coord_client_t *cl, const wire_in_t *in,
                          const Concord__Update *u, char *reason, size_t len) {
    if (c->state != COORD_TRAINING && c->state != COORD_EXTENDED)
        return snprintf(reason, len, "no round is open"), REJ_ROUND;
    if (in->round != c->round || u->round != c->round)
        return snprintf(reason, len, "update for round %llu, the open round is %llu",
                        (unsigned long long)u->round, (unsigned long long)c->round), REJ_ROUND;
    if (!s_is_participant(c, cl->id)) return snprintf(reason, len, "not a participant of this round"), REJ_NOT_PARTICIPANT;
    if (s_has_update(c, cl->id)) return snprintf(reason, len, "update already accepted this round"), REJ_DUPLICATE;
    if (u->base_digest.len != WIRE_DIGEST_BYTES || memcmp(u->base_digest.data, c->digest, WIRE_DIGEST_BYTES) != 0)
        return snprintf(reason, len, "trained from another model than this round's"), REJ_DIGEST;
    if (u->n_samples == 0 || u->n_samples > cl->n_train + cl->n_val)
        return snprintf(reason, len, "n_samples %llu not in [1, %llu]", (unsigned long long)u->n_samples,
                        (unsigned long long)(cl->n_train + cl->n_val)), REJ_OTHER;
    return -1;
}

/* Tensor frames an update must carry in this federation's per-class mode: "delta", or
 * "delta_c0" .. "delta_c{C-1}" and "delta_reg" (§6.3 server and federation modes). */
static size_t s_expected_vectors(const coord_t *c) { return c->per_class >= 2 ? (size_t)c->spec.n_classes + 1 : 1; }

static int s_check_tensors(const coord_t *c, const Concord__Update *u, const wire_in_t *in, char *reason, size_t len) {
    size_t n = s_expected_vectors(c);
    if (u->n_tensors != n || in->n_frames != n)
        return snprintf(reason, len, "expected %zu tensors of %zu floats", n, c->P), REJ_SHAPE;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        if (n == 1) snprintf(name, sizeof name, "delta");
        else if (i + 1 < n) snprintf(name, sizeof name, "delta_c%zu", i);
        else snprintf(name, sizeof name, "delta_reg");
        if (!msg_tensor_is(u->tensors[i], name, c->P))
            return snprintf(reason, len, "tensor %zu should be \"%s\" of %zu floats", i, name, c->P), REJ_SHAPE;
    }
    return -1;
}

/* Copies the update's vectors (n, P) out of the frames (memcpy: frames may be unaligned),
 * and forms Δ̃ (P) as aggregation uses it; returns ‖Σ vectors‖, the norm of the raw update. */
static double s_update_vectors(const coord_t *c, const Concord__Update *u, transport_msg_t *msg, float *vec,
                               float *delta) {
    size_t n = s_expected_vectors(c), P = c->P;
    for (size_t i = 0; i < n; i++) memcpy(vec + i * P, zmq_msg_data(&msg->parts[1 + i]), P * sizeof(float));
    if (n == 1) {
        memcpy(delta, vec, P * sizeof(float));
        return wire_l2norm(delta, P);
    }
    memset(delta, 0, P * sizeof(float));
    for (size_t i = 0; i < n; i++) cblas_saxpy((int)P, 1.0f, vec + i * P, 1, delta, 1);
    double norm = wire_l2norm(delta, P);
    if (c->per_class == 2) { /* server mode: normalise per client before weighting */
        int C = c->spec.n_classes;
        uint8_t *present = cc_xcalloc((size_t)C, 1);
        for (int k = 0; k < C && (size_t)k < u->n_class_counts; k++) present[k] = u->class_counts[k] > 0;
        pcn_server_normalize(delta, vec, vec + (size_t)C * P, present, C, P);
        free(present);
    }
    return norm;
}

/* Copies the numbers only: the source belongs to a message about to be freed. */
static void s_copy_metrics(Concord__Metrics *dst, const Concord__Metrics *src) {
    concord__metrics__init(dst);
    if (!src) return;
    dst->n = src->n;
    dst->loss = src->loss;
    dst->accuracy = src->accuracy;
    dst->balanced_accuracy = src->balanced_accuracy;
    dst->macro_f1 = src->macro_f1;
}

static void s_fill_update(coord_update_t *rec, const coord_t *c, const char *id, const Concord__Update *u,
                          double norm) {
    memset(rec, 0, sizeof *rec);
    snprintf(rec->id, sizeof rec->id, "%s", id);
    rec->n_samples = u->n_samples;
    rec->update_norm = norm;
    rec->train_seconds = u->train_seconds;
    rec->arrival = cc_now() - c->round_start;
    s_copy_metrics(&rec->val, u->val_metrics);
    s_copy_metrics(&rec->test, u->test_metrics);
    rec->has_test = u->test_metrics != NULL;
    rec->has_score = u->has_data_score && isfinite(u->data_score);
    rec->data_score = rec->has_score ? u->data_score : 1.0;
}

/* Journals an acceptable update and acknowledges it. vectors (n_vec × P floats, any
 * alignment) is what the journal keeps: Δ̃_k, or every per-class part in federation mode;
 * delta (any alignment) is Δ̃_k as aggregated. delta_digest, when not NULL, is delta's
 * BLAKE2b-256 already verified by transport_open (a plain update is its own frame), so the
 * update is not hashed again for the ledger. *early: FedCE's Gram row of the update, begun
 * while it was verified (consumed if the update is accepted). */
static void s_accept_update(coord_t *c, coord_client_t *cl, const Concord__Update *u, const void *vectors,
                            size_t n_vec, const void *delta, const uint8_t *delta_digest, double norm,
                            uint64_t bytes, coord_gram_early_t **early) {
    coord_update_t *rec = &c->updates[c->n_updates];
    cc_err_t err = {0};
    s_fill_update(rec, c, cl->id, u, norm);
    rec->slot = coord_slot(c, cl->id);
    rec->upload_bytes = bytes;
    if (delta_digest) memcpy(rec->digest, delta_digest, WIRE_DIGEST_BYTES);
    else wire_digest_bytes(rec->digest, delta, c->P * sizeof(float));
    /* A plain update's journaled bytes are its verified frame: not hashed again. */
    if (coord_journal_add_update(c, rec, vectors, n_vec, delta_digest && vectors == delta ? delta_digest : NULL,
                                 &rec->rec, &err)) {
        /* No Ack for what is not durable (JOURNAL-1); the journal refuses appends until it is
         * reopened (JOURNAL-4), so stop: a restart replays what was stored. */
        cc_log_error("journal_failed", "client=%s reason=\"%s\" action=\"update not accepted; stopping\"", cl->id, err.msg);
        s_nack(c, cl->id, REJ_OTHER, "coordinator could not store the update; it will be asked again");
        c->stop = 2;
        return;
    }
    if (c->keep_updates) coord_archive_update(c, cl->id, delta);
    c->n_updates++;
    int early_row = coord_gram_accept(c, rec->slot, delta, early); /* FedCE: its rows of U and of the Gram matrix */
    coord_intime_add(c, c->n_updates - 1); /* FedAvg: summed in time once nothing waits (main.c) */
    COUNT(c->accepted_updates); /* its Ack leaves with the next group commit (coord_flush_acks) */
    cc_log_info("update_accepted", "round=%llu client=%s n_samples=%llu norm=%.4g updates=%zu of=%zu%s",
                (unsigned long long)c->round, cl->id, (unsigned long long)u->n_samples, norm, c->n_updates,
                c->n_participants, !c->U ? "" : early_row ? " gram_row=early" : " gram_row=serial");
}

static void s_handle_update(coord_t *c, coord_client_t *cl, const wire_in_t *in, transport_msg_t *msg,
                            coord_gram_early_t **early) {
    Concord__Update *u = concord__update__unpack(NULL, in->body_len, in->body);
    char reason[256];
    if (!u) {
        s_nack(c, cl->id, REJ_DECODE, "Update body does not decode");
        return;
    }
    int kind = s_check_update(c, cl, in, u, reason, sizeof reason);
    if (kind < 0) kind = s_check_tensors(c, u, in, reason, sizeof reason);
    size_t n_vec = s_expected_vectors(c);
    float *vec = NULL, *delta = NULL;
    const void *journal_bytes = NULL, *delta_bytes = NULL;
    double norm = 0.0;
    if (kind >= 0) {
        /* rejected below */
    } else if (n_vec == 1) {
        /* Plain updates are used straight from the received frame (no copy of P floats):
         * the journal, the digest and U take bytes of any alignment. */
        journal_bytes = delta_bytes = zmq_msg_data(&msg->parts[1]);
        norm = wire_l2norm_bytes(delta_bytes, c->P);
    } else {
        vec = cc_xalloc_floats(n_vec * c->P);
        delta = cc_xalloc_floats(c->P);
        norm = s_update_vectors(c, u, msg, vec, delta);
        journal_bytes = c->per_class == 3 ? (const void *)vec : (const void *)delta;
        delta_bytes = delta;
    }
    if (kind < 0 && !(norm <= c->max_norm)) {
        snprintf(reason, sizeof reason, "update norm %.4g over the bound %.4g", norm, c->max_norm);
        kind = REJ_NORM;
    }
    if (kind >= 0) s_nack(c, cl->id, (coord_reject_t)kind, reason);
    else s_accept_update(c, cl, u, journal_bytes, c->per_class == 3 ? n_vec : 1, delta_bytes,
                         n_vec == 1 ? wire_in_digest(in, 0) : NULL, norm, transport_msg_bytes(msg), early);
    free(vec);
    free(delta);
    concord__update__free_unpacked(u, NULL);
    coord_upload_done(c, cl->id);
    /* The round closes in coord_tick, once this message's frames are released: closing here
     * would hold one more update in memory during aggregation. */
}

/* UploadReady: the client's update for this round is ready (grants.c). */
static void s_handle_upload_ready(coord_t *c, coord_client_t *cl, const wire_in_t *in) {
    if (c->state != COORD_TRAINING && c->state != COORD_EXTENDED)
        s_nack(c, cl->id, REJ_ROUND, "no round is collecting updates");
    else if (in->round != c->round)
        s_nack(c, cl->id, REJ_ROUND, "UploadReady for another round");
    else if (!s_is_participant(c, cl->id))
        s_nack(c, cl->id, REJ_NOT_PARTICIPANT, "not a participant of this round");
    else if (s_has_update(c, cl->id))
        s_nack(c, cl->id, REJ_DUPLICATE, "this round's update was received already");
    else
        coord_upload_request(c, coord_slot(c, cl->id));
}

static void s_handle_heartbeat(coord_t *c, coord_client_t *cl) {
    Concord__Heartbeat hb = CONCORD__HEARTBEAT__INIT;
    hb.round = c->round;
    hb.state = (char *)s_state_names[c->state];
    s_send(c, cl->id, CONCORD__MSG_TYPE__MSG_HEARTBEAT, &hb.base, NULL, 0);
}

static coord_reject_t s_wire_reject(int rc) {
    switch (rc) {
    case WIRE_ERR_SIGNATURE: case WIRE_ERR_DIGEST: return REJ_SIGNATURE;
    case WIRE_ERR_SENDER: return REJ_UNKNOWN_SENDER;
    case WIRE_ERR_NONFINITE: return REJ_NONFINITE;
    case WIRE_ERR_FRAMES: return REJ_SHAPE;
    default: return REJ_DECODE;
    }
}

/* Authenticates msg; returns the sender's entry or NULL (after a Nack). */
static coord_client_t *s_authenticate(coord_t *c, transport_msg_t *msg, wire_in_t *in) {
    cc_err_t err = {0};
    int rc = transport_open(msg, enrolment_lookup, c->enrolment, in, &err);
    if (rc) {
        s_nack(c, msg->peer, s_wire_reject(rc), err.msg);
        return NULL;
    }
    coord_client_t *cl = coord_client_find(c, in->sender_id);
    const char *why = NULL;
    if (!cl) why = "sender not enrolled";
    else if (strcmp(msg->peer, in->sender_id) != 0) why = "connection identity differs from the signed sender";
    else if (c->curve && strcmp(msg->user_id, in->sender_id) != 0) why = "CURVE key belongs to another client";
    if (why) {
        s_nack(c, msg->peer, REJ_IDENTITY, why);
        return NULL;
    }
    if (in->seq <= cl->last_seq) {
        s_nack(c, cl->id, REJ_REPLAY, "sequence number not above the last accepted one (replay)");
        return NULL;
    }
    cl->last_seq = in->seq;
    cl->last_seen = cc_now();
    coord_task_delivered(c, cl->id); /* any message after a task shows it arrived */
    return cl;
}

/* FedCE: what may be a plain update from a participant whose update is not in yet (two
 * parts, the second exactly P floats, from a routing id that is a welcomed participant and,
 * under CURVE, holds that participant's key) gets its Gram row started on a worker thread
 * before it is verified (aggregate.c). Nothing here is trusted: verification still requires
 * the routing id to be the signed sender, and only an accepted update's row is kept. */
static coord_gram_early_t *s_gram_early_start(coord_t *c, transport_msg_t *msg) {
    if (!c->U || s_expected_vectors(c) != 1 || (c->state != COORD_TRAINING && c->state != COORD_EXTENDED)) return NULL;
    if (msg->n_parts != 2 || zmq_msg_size(&msg->parts[1]) != c->P * sizeof(float)) return NULL;
    if (c->curve && strcmp(msg->user_id, msg->peer) != 0) return NULL;
    coord_client_t *cl = coord_client_find(c, msg->peer);
    size_t slot = coord_slot(c, msg->peer);
    if (!cl || !cl->welcomed || slot == SIZE_MAX || s_has_update(c, msg->peer)) return NULL;
    return coord_gram_early_start(c, slot, zmq_msg_data(&msg->parts[1]));
}

void coord_handle_message(coord_t *c, transport_msg_t *msg) {
    COUNT(c->msgs_in);
    coord_gram_early_t *early = s_gram_early_start(c, msg);
    wire_in_t in;
    memset(&in, 0, sizeof in);
    coord_client_t *cl = s_authenticate(c, msg, &in);
    /* Every message but Hello belongs to a session its sender opened with a Hello. */
    int in_session = in.type == CONCORD__MSG_TYPE__MSG_UPDATE || in.type == CONCORD__MSG_TYPE__MSG_STATS ||
                     in.type == CONCORD__MSG_TYPE__MSG_UPLOAD_READY || in.type == CONCORD__MSG_TYPE__MSG_HEARTBEAT;
    if (!cl) {
        /* refused by s_authenticate */
    } else if (in_session && !cl->welcomed) {
        s_nack(c, cl->id, REJ_OTHER, "unknown session: send Hello first");
    } else switch (in.type) {
    case CONCORD__MSG_TYPE__MSG_HELLO: s_handle_hello(c, cl, &in); break;
    case CONCORD__MSG_TYPE__MSG_UPDATE: s_handle_update(c, cl, &in, msg, &early); break;
    case CONCORD__MSG_TYPE__MSG_STATS: coord_handle_stats(c, cl, &in, msg); break;
    case CONCORD__MSG_TYPE__MSG_UPLOAD_READY: s_handle_upload_ready(c, cl, &in); break;
    case CONCORD__MSG_TYPE__MSG_HEARTBEAT: s_handle_heartbeat(c, cl); break;
    default: s_nack(c, cl->id, REJ_DECODE, "unexpected message type"); break;
    }
    coord_gram_early_end(&early); /* not accepted as an update: its row is dropped */
    wire_in_clear(&in);
}
