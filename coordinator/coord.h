/* coord.h — the coordinator's state, shared by its modules (one process, one poll loop).
 *
 * Round state machine (the only writer of `state` is coord_set_state in rounds.c):
 *
 *     ┌────────────┐ min_clients welcomed ┌───────────┐ all answered, or deadline with
 *     │  WAITING   │─────────────────────►│ TRAINING  │ quorum ───────────────┐
 *     └────────────┘                      └───────────┘                       ▼
 *        ▲    ▲                deadline without quorum │          ┌──────────────────┐
 *        │    │                (first time)            ▼          │ aggregate, save  │
 *        │    │                               ┌────────────┐      │ checkpoint (the  │
 *        │    │   deadline without quorum     │  EXTENDED  │─────►│ commit point,    │
 *        │    └───── abort: model unchanged ◄─┴────────────┘      │ carrying history │
 *        │                                                        │ line and ledger  │
 *        │                                                        │ entry, appended  │
 *        │                                                        │ after next tasks)│
 *        │                                                        └──────────────────┘
 *        └──────────────────── next round ◄───────────────────────────────┘
 *   After `rounds` rounds: DONE (export the model, tell every client, exit).
 *
 *   WAITING   waiting for min_clients welcomed clients (join_timeout_s only logs a warning)
 *   STATS     alignment on (§6.2): collecting head statistics (phase 1, then phase 2 for
 *             HGP) before the training tasks go out with the pooled targets
 *   TRAINING  tasks sent to the round's participants; collecting updates until the deadline
 *   EXTENDED  the deadline passed without quorum once; one extension of extension_s
 *   DONE      all rounds finished */
#ifndef CONCORD_COORD_H
#define CONCORD_COORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "concord.pb-c.h"
#include "config.h"
#include "dataset.h"
#include "identity.h"
#include "journal.h"
#include "model.h"
#include "sumproc.h"
#include "transport.h"

typedef enum { COORD_WAITING, COORD_STATS, COORD_TRAINING, COORD_EXTENDED, COORD_DONE } coord_state_t;

/* Rejection reasons, counted for the metrics endpoint and the logs. */
typedef enum {
    REJ_SIGNATURE, REJ_UNKNOWN_SENDER, REJ_REPLAY, REJ_ROUND, REJ_DIGEST, REJ_SHAPE,
    REJ_NONFINITE, REJ_NORM, REJ_NOT_PARTICIPANT, REJ_DUPLICATE, REJ_IDENTITY, REJ_DECODE,
    REJ_DATA_MISMATCH, REJ_OTHER, REJ_COUNT
} coord_reject_t;

typedef struct {
    char id[WIRE_MAX_ID + 1];
    int welcomed;              /* said Hello in this process's lifetime and fits the model */
    int warmups_sent;          /* queue warm-ups sent since its last Hello (common/transport.h) */
    uint64_t last_seq;         /* highest accepted envelope seq (replay protection) */
    double last_seen;          /* monotonic seconds */
    uint64_t n_train, n_val, n_test;
    size_t n_class_counts;
    uint64_t *class_counts;
    feature_stats_t *stats;    /* from Hello (federated standardisation) */
} coord_client_t;

typedef struct {
    char id[WIRE_MAX_ID + 1];
    size_t slot;               /* participant index (participants are sorted by id) */
    double data_score;         /* b_k reported by the client (FedCE), 1 if none */
    int has_score;
    uint64_t upload_bytes;     /* bytes of the Update message */
    uint8_t digest[WIRE_DIGEST_BYTES]; /* BLAKE2b-256 of Δ̃_k as aggregated (ledger) */
    journal_record_t rec;      /* the update record in the journal */
    uint64_t n_samples;
    double update_norm;
    int excluded;              /* left out of aggregation by the relative norm bound */
    int ack_at_commit;         /* not yet synced when the round closed: the commit makes it durable */
    double train_seconds;
    double arrival;            /* seconds since round start */
    Concord__Metrics val, test;
    int has_test;
} coord_update_t;

typedef struct {
    /* configuration */
    config_t *cfg;
    uint64_t rounds, seed;
    long min_clients;
    double quorum, join_timeout_s, deadline_s, extension_s, server_lr, max_norm;
    int standardize;           /* 0 none, 1 local, 2 federated */
    int fedce;                 /* [aggregation] weighting = fedce (§6.1) */
    int fedce_mode;            /* fedce_mode_t: plus | times */
    int fedce_minus;           /* [fedce] minus_model: 0 client, 1 coordinator (minus.c) */
    char fedce_metric[32];
    unsigned align_variants;   /* §6.2: ALIGN_* bit mask, 0 = off */
    float align_alpha, align_beta;
    int per_class;             /* §6.3: 0 off, 1 client, 2 server, 3 federation */
    char per_class_name[16];
    char *ledger_path;         /* contribution ledger (JSON lines), NULL = off */
    int ledger_in_step;        /* this process wrote the ledger's last entry: no crash left one ahead */
    char *committed_line;      /* the last committed round's history line, until appended */
    json_t *committed_entry;   /* and its ledger entry */
    double norm_ratio;         /* [aggregation] max_norm_ratio: drop updates over ratio × median norm (0: off) */
    int robust;                /* [aggregation] robust: 0 weighted mean, 1 median, 2 trimmed mean */
    double trim;               /* trimmed mean: fraction cut at each end per coordinate */
    int keep_updates;          /* archive accepted updates as safetensors */
    int curve;
    Concord__TrainSettings training;
    char optimizer[16];
    const char *state_dir, *history_path, *export_prefix;
    int keep_checkpoints;

    /* identity and network */
    identity_t self;
    enrolment_t *enrolment;
    char *enrolment_path;      /* re-read on SIGHUP: revocations and key rotations */
    void *zctx, *router;
    zap_handler_t *zap;
    struct ratelimit *limiter; /* [limits]: per-sender token buckets, checked in main.c's loop */
    uint64_t seq, seq_reserved; /* hi-lo: seq never reused across restarts (persist.c) */

    /* model and round */
    model_spec_t spec;
    float *params;             /* (P) θ_t; read-only while frozen into the task snapshot */
    int params_frozen;         /* params belongs to the snapshot (phases.c) */
    int params_in_time;        /* params holds FedAvg's sum begun in time, not θ_t (intime.c):
                                * θ_t is only in the round's checkpoint until the close */
    size_t P;
    uint8_t digest[WIRE_DIGEST_BYTES];
    standardizer_t *std;       /* fixed when round 0 starts (federated) */
    uint64_t round;            /* the open (or next) round t */
    coord_state_t state;
    double round_start, deadline;
    char (*participants)[WIRE_MAX_ID + 1];
    size_t n_participants;
    coord_update_t *updates;   /* accepted updates of the open round */
    size_t n_updates;
    size_t n_acked;            /* updates[0..n_acked) are durable and acknowledged */
    size_t sync_upto;          /* updates[0..sync_upto) are covered by the sync in flight */
    struct syncer *syncer;     /* the journal's group commit, off the poll loop (syncer.h) */
    struct guard *guard;       /* per-connection bound on what ZeroMQ holds (guard.h) */
    journal_t *journal;
    double waiting_since;

    /* clients */
    coord_client_t *clients;   /* one per enrolled key, same order as enrolment */
    size_t n_clients;

    /* §6.2 alignment of the open round; per-participant arrays are indexed by slot */
    size_t L;                  /* head statistics length C*(d+1) */
    float *stat_g, *stat_D, *stat_Hg;      /* (n_clients, L) */
    uint64_t *stat_n;          /* (n_clients) samples behind each participant's statistics */
    uint8_t *stat_have;        /* (n_clients) bit 1: phase-1 stats, bit 2: phase-2 stats */
    float *target_g, *target_D, *target_Hg; /* (L) the pooled targets */
    double *gap_g, *gap_d;     /* (n_clients) ‖g_k − ḡ‖, ‖D_k − D̄‖ */
    int stats_phase;           /* 1 or 2 while in COORD_STATS */
    int targets_ready;

    /* §6.1 FedCE */
    void *fedce_reg;           /* fedce_client_t (n_clients), enrolment order */
    int64_t *fedce_round;      /* (n_clients) round each coefficient refers to, −1: none */
    double *fedce_cos, *fedce_a, *fedce_b;  /* (n_clients) this round, by slot, for history */
    float *U;                  /* (n_clients, P) Δ̃ of the open round by slot (FedCE only) */
    float *gram;               /* (n_clients, n_clients) ⟨Δ̃_i, Δ̃_j⟩ of the updates so far, by slot */
    struct coord_minus *minus; /* minus_model = coordinator: θ⁻_k of the last aggregation (minus.c) */

    /* What tasks send (θ_t, standardiser, targets), frozen per phase and sent without
     * copying; reference-counted because ZeroMQ may still hold it when the next phase or
     * round starts (phases.c). It owns θ_t: aggregation writes θ_{t+1} into a new buffer. */
    struct coord_snapshot *snap;
    uint8_t *task_state;       /* (n_clients) by slot: none, queued, sent, delivered */
    double *task_sent_at;      /* (n_clients) */
    size_t task_window;        /* tasks in flight at most (CURVE: θ copies in ZeroMQ) */
    double task_confirm_s;     /* a task unconfirmed this long leaves the window */
    uint64_t task_confirmations; /* tasks confirmed by their client: answers, like updates */
    double task_window_mb;     /* [federation] task_window_mb */
    /* Upload grants (grants.c): by participant slot, none / waiting / granted */
    uint8_t *grant_state;
    uint64_t *grant_order;     /* (n_clients) request number of a waiting slot: grants go in this order */
    double *grant_at;          /* (n_clients) when the grant was given */
    uint64_t grant_requests;   /* requests so far (the order's counter) */
    size_t grants_waiting;     /* slots waiting for a grant */
    uint64_t grants_given, grants_expired; /* counters for /metrics */
    uint64_t warmups_received; /* queue warm-ups from enrolled clients (common/transport.h), for /metrics */
    size_t upload_window;      /* granted updates outstanding at most */
    double upload_window_mb;   /* [federation] upload_window_mb */
    double upload_grant_s;     /* [federation] upload_grant_s */
    int io_threads;            /* [federation] io_threads */
    int agg_threads;           /* [aggregation] threads of the close's weighted sum */
    int sum_process;           /* [aggregation] sum_process */
    sumproc_t *sumproc;        /* the FedAvg close's helper process
                                * (sumproc.h), whose shared buffers hold θ; or NULL */
    int sumproc_lost;          /* it died (logged once; closes sum on threads since) */
    /* FedAvg's sum begun as the updates arrive (intime.c) */
    int in_time;               /* [aggregation] in_time: 0 off, 1 on, 2 auto */
    int pre_on;                /* this round sums in time */
    float *pre_theta;          /* θ_t + Σ_{slot < pre_next} pre_scale[slot]·Δ̃_slot, or NULL;
                                * summed in θ_t's own buffer (= params, params_in_time) */
    size_t pre_next;           /* the first slot not in it */
    float *pre_scale;          /* (n_clients) the close's scales if all answer as announced */
    size_t *pre_update;        /* (n_clients) index in updates of each slot's update, or SIZE_MAX */

    /* evaluation */
    dataset_t *test;           /* optional held-out evaluation set (raw features) */

    /* counters */
    uint64_t rejected[REJ_COUNT];
    uint64_t accepted_updates, rounds_done, rounds_aborted, msgs_in;
    uint64_t in_time_rounds, in_time_updates; /* closes that continued the sum begun in time, and the updates it held */
    volatile int stop;
} coord_t;

/* rounds.c */
void coord_set_state(coord_t *c, coord_state_t s);
void coord_handle_message(coord_t *c, transport_msg_t *msg);
/* A queue warm-up came from client index `client` (n_clients: not an enrolled client):
 * answered with one of ours while the exchange lasts (common/transport.h). */
void coord_warmup_received(coord_t *c, size_t client);
/* Group commit: Acks the updates a finished journal sync covered, and hands the ones
 * accepted since to the syncer thread (one fdatasync for all of them; syncer.h). */
void coord_flush_acks(coord_t *c);
void coord_tick(coord_t *c);           /* timers: deadlines, round start */
double coord_next_timeout(const coord_t *c);
int coord_start_round(coord_t *c);
const char *coord_reject_name(coord_reject_t r);
/* Called before every message: 0 when seq + 1 is durably reserved (coord_seq_reserve).
 * Otherwise nothing may be sent: one error line, stop = 2 (a clean stop), and -1 from then
 * on without touching the disk again, as whenever the coordinator is stopping on an error. */
int coord_seq_ready(coord_t *c);
/* Signs and sends a message without tensor frames about `round` (logs a failure). */
void coord_send(coord_t *c, const char *peer, uint64_t round, uint32_t type, const ProtobufCMessage *body);

/* registry.c */
coord_client_t *coord_client_find(coord_t *c, const char *id);
/* Re-reads the enrolment file (SIGHUP): a hospital no longer listed is revoked at once (its
 * messages and new connections are refused, it is never selected again); a listed hospital
 * with a new key keeps its registry entry and FedCE history. New ids need a restart. On a
 * bad file nothing changes. */
void coord_reload_enrolment(coord_t *c);
void coord_clients_init(coord_t *c);
void coord_clients_free(coord_t *c);
size_t coord_clients_welcomed(const coord_t *c);

/* aggregate.c: θ += η_s Σ_k w_k Δ̃_k in client-id order; FedAvg weights n_k/N streamed
 * from the journal, or FedCE weights from the in-memory updates (U). */
int coord_aggregate(coord_t *c, double *weights_out, cc_err_t *err);
/* FedAvg's weights w (K) of updates of n (K) samples: n_k / Σ_j n_j. And the scale the
 * weighted sum applies to an update of weight w: η_s · w as a float. The close and the
 * in-time prefix (intime.c) both use these, so their scales are the same floats. */
void coord_fedavg_weights(double *w, const uint64_t *n, size_t K);
float coord_step_scale(const coord_t *c, double w);
/* θ += Σ_i scale[i]·Δ̃ of *ups[i] (i < n, in that order for every element; wsum.h: by
 * column blocks on agg_threads threads, or agg_threads − 1 and the summing process), from
 * U (FedCE) or the journal (FedAvg). A failure leaves θ partly updated; a summing process
 * found gone is logged and marked lost (sumproc_lost). */
int coord_sum_updates(coord_t *c, const coord_update_t *const *ups, size_t n, const float *scale, float *theta,
                      cc_err_t *err);
/* The FedCE registry index of a client id, or −1. */
long coord_client_index(const coord_t *c, const char *id);

/* intime.c: FedAvg's weighted sum begun as the updates arrive (the file's top comment).
 * wanted: this federation sums in time. begin: the training phase starts (participants and
 * their Hello counts fixed, no update yet). add: updates[k] was just accepted and
 * journaled. idle: the poll loop's every turn: when no message waits (and θ_t is out of
 * ZeroMQ's hands), sums the slots now in after those summed, in θ_t's buffer. take: at the
 * close, with the close's scales of the K sorted updates: params, holding θ_t plus the sum
 * of the first *first of them, if that prefix is this close's, else NULL (θ_t is back in
 * params). drop: the round goes on or ends without it; give_up: the same, logged with why.
 * Both put θ_t back into params from the checkpoint; if that fails, the coordinator stops
 * (params_in_time stays set, and nothing is committed or exported). restore: θ_t back into
 * params from the checkpoint when params_in_time (a close that failed after take). */
int coord_intime_wanted(const coord_t *c);
void coord_intime_begin(coord_t *c);
void coord_intime_add(coord_t *c, size_t k);
void coord_intime_idle(coord_t *c);
/* waiting: slot 0's update is in but nothing is summed yet (θ_t still held by ZeroMQ, or a
 * message was waiting): the poll loop looks again soon rather than at the next message. */
int coord_intime_waiting(const coord_t *c);
float *coord_intime_take(coord_t *c, const float *scale, size_t K, size_t *first);
void coord_intime_drop(coord_t *c);
void coord_intime_give_up(coord_t *c, const char *why);
int coord_intime_restore(coord_t *c, cc_err_t *err);

/* phases.c: the alignment statistics phases (§6.2) */
void coord_stats_begin(coord_t *c);
void coord_handle_stats(coord_t *c, coord_client_t *cl, const wire_in_t *in, transport_msg_t *msg);
void coord_stats_deadline(coord_t *c);
void coord_send_task(coord_t *c, const char *id, int phase);
/* Task pacing (phases.c): queue slot's task of the current phase; a participant's message
 * confirms its task arrived; the pump sends queued tasks while the window has room. */
void coord_queue_task(coord_t *c, size_t slot);
void coord_task_delivered(coord_t *c, const char *id);
void coord_pump_tasks(coord_t *c);
int coord_tasks_queued(const coord_t *c);
void coord_begin_training(coord_t *c);
/* Freezes the current θ, standardiser and targets into a new task snapshot. */
void coord_snapshot_refresh(coord_t *c);
/* Makes theta (coord_theta_alloc'ed, or params itself after a close summed in place) the
 * new θ; the old one is freed, or left to the snapshot that froze it. */
void coord_params_replace(coord_t *c, float *theta);
/* Takes θ_t's buffer back from the task snapshot for a sum in place (intime.c): only when no
 * task is queued and ZeroMQ holds no frame of it (returns 0 otherwise). The snapshot is
 * dropped; a task sent later makes a new one (after θ_t is back). */
int coord_params_claim(coord_t *c);
/* A buffer for a new θ (P floats): one of the summing process's shared buffers when one is
 * free (the FedAvg close then sums a share there), else malloc'ed. Freed with
 * coord_theta_free (thread-safe: ZeroMQ's I/O thread frees θ_t with the snapshot). */
float *coord_theta_alloc(coord_t *c);
void coord_theta_free(sumproc_t *pool, float *theta);
/* FedCE's Gram matrix, a row per accepted update (aggregate.c, whose top comment draws the
 * flow). add: the serial path, for the update just accepted into slot (counted in
 * n_updates, its row of U filled), e.g. at a journal replay. */
void coord_gram_add(coord_t *c, size_t slot);
/* early_start: starts a worker thread that copies frame (P floats, any alignment, which
 * must stay valid and unchanged until the end) into slot's row of U and computes its dots
 * with the rows of the updates accepted so far; slot must have no accepted update, and
 * until the end nothing may write U or accept another update. NULL when FedCE is off or
 * the thread cannot start (the serial path then does the work). */
typedef struct coord_gram_early coord_gram_early_t;
coord_gram_early_t *coord_gram_early_start(coord_t *c, size_t slot, const void *frame);
/* end: the message was not accepted as slot's update: joins the worker and drops its dots
 * (slot's row of U holds the frame, unread until an update of slot is accepted). *e NULL
 * allowed; sets *e = NULL. */
void coord_gram_early_end(coord_gram_early_t **e);
/* accept: the update just accepted into slot (counted in n_updates), Δ̃ = delta (P floats,
 * any alignment): fills its row of U and its Gram entries, from *early if that was started
 * on these bytes for this slot (returns 1), else serially (0). Consumes *early (NULL
 * allowed), sets it NULL. */
int coord_gram_accept(coord_t *c, size_t slot, const void *delta, coord_gram_early_t **early);
/* At exit: drops the snapshot and frees θ. */
void coord_params_free(coord_t *c);
size_t coord_slot(const coord_t *c, const char *id);   /* participant slot or SIZE_MAX */
int coord_journal_add_targets(coord_t *c, cc_err_t *err);

/* grants.c: upload flow control. A task says whether its update may be sent at once
 * (upload_window holds every participant's update); otherwise the client asks when its
 * update is ready, and grants go in request order while the window has room. */
int coord_uploads_pregranted(const coord_t *c);
void coord_grants_reset(coord_t *c);
/* slot asked to send its update (UploadReady, checked by the caller). */
void coord_upload_request(coord_t *c, size_t slot);
/* id's update was handled (accepted or refused), it said Hello again, or its connection
 * closed: its grant (or its wait for one) ends. 1 if it had one. */
int coord_upload_done(coord_t *c, const char *id);
/* Ends expired grants and gives the next ones while the window has room; called after each
 * message's frames are freed and on every tick (cheap when nobody waits). */
void coord_pump_grants(coord_t *c);

/* minus.c: FedCE minus models computed by the coordinator (§6.1, minus_model = coordinator).
 * build: at a FedCE close, before θ_t (c->params) is replaced by theta_next (P): θ⁻_k of
 * every update k < n_updates aggregated with weight 0 < w[k] < 1; replaces the set. */
void coord_minus_build(coord_t *c, const double *w, const float *theta_next);
/* id's θ⁻ (P floats owned by m, valid while a reference is held) with the weight its update
 * had and the round it was aggregated in; NULL (coef, round untouched) if m has none. */
const float *coord_minus_find(const struct coord_minus *m, const char *id, double *coef, uint64_t *round);
struct coord_minus *coord_minus_ref(struct coord_minus *m);   /* +1 reference; NULL allowed */
void coord_minus_release(struct coord_minus **m);             /* −1 reference; *m = NULL */
/* Checkpoint sections "minus_meta" and "minus" (nothing without a set); load installs the
 * saved set, or none if the checkpoint has no sections. */
struct snapshot;
void coord_minus_save(const coord_t *c, struct snapshot *s);
int coord_minus_load(coord_t *c, const struct snapshot *s, cc_err_t *err);

/* persist.c */
int coord_checkpoint_save(coord_t *c, cc_err_t *err);
int coord_checkpoint_load(coord_t *c, cc_err_t *err);   /* 1 = fresh start */
/* θ_t (the model whose digest is c->digest) from the newest checkpoint into out (P). */
int coord_checkpoint_params(coord_t *c, float *out, cc_err_t *err);
int coord_journal_open_round(coord_t *c, int replay, cc_err_t *err);
/* Journals an accepted update: n_vectors vectors of P floats (1: Δ̃; C+1: the per-class
 * parts of §6.3 federation mode). vectors_digest, when not NULL, is their BLAKE2b-256
 * already verified (a plain update's frame digest): the journal does not hash them again. */
int coord_journal_add_update(coord_t *c, const coord_update_t *u, const void *vectors, size_t n_vectors,
                             const uint8_t *vectors_digest,
                             journal_record_t *rec, cc_err_t *err);
int coord_journal_add_open(coord_t *c, cc_err_t *err);
int coord_export(coord_t *c, cc_err_t *err);
/* [storage] keep_updates: state_dir/updates/round-<t>/<id>.safetensors, Δ̃_k laid out as the
 * model's tensors (a PyTorch state_dict of the update). Failures are logged, not fatal. */
void coord_archive_update(coord_t *c, const char *id, const void *delta);
/* Makes sure seq + 1 lies in a block reserved on disk (state_dir/coordinator.seq), so a
 * restarted coordinator never reuses a sequence number clients have seen. On failure the
 * reservation is unchanged: the next call tries the disk again. */
int coord_seq_reserve(coord_t *c, cc_err_t *err);

/* history.c */
/* Drops lines of rounds >= c->round (not committed); an error if they cannot be dropped.
 * *last_round: the last round left in the file, -1 if none. */
int coord_history_trim(coord_t *c, int64_t *last_round, cc_err_t *err);
/* The closing round's line (JSON text, to free). */
char *coord_history_line(coord_t *c, const char *status, const double *weights, double duration);
/* Appends a line durably (fsync); -1 after logging the file, operation and error. */
int coord_history_write(const coord_t *c, const char *line);

/* ledger.c (coordinator side): one signed, hash-chained line per committed round. */
/* The closing round's entry (NULL when the ledger is off). */
json_t *coord_ledger_entry(const coord_t *c, const char *status, const double *weights);
/* Appends round's entry unless the ledger holds that round already (*appended, may be NULL,
 * says which). */
int coord_ledger_write(coord_t *c, uint64_t round, json_t *entry, int *appended, cc_err_t *err);

/* The history line and ledger entry of the last committed round, carried by its checkpoint
 * until they are appended (rounds.c: after the next round's tasks have left; persist.c:
 * at a restart, whichever the files lack). */
int coord_flush_committed(coord_t *c);
int coord_restore_committed(coord_t *c, int64_t last_history_round, cc_err_t *err);
void coord_drop_committed(coord_t *c);

/* http.c */
int coord_http_start(coord_t *c, const char *bind, cc_err_t *err);
void coord_http_stop(void);

#endif
