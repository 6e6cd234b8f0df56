/* client.h — the hospital's client daemon, shared by its modules (one thread, one poll loop).
 *
 * Session states (the only writer of `state` is client_set_state in session.c):
 *
 *   DISCONNECTED ──connect, send Hello──► HELLO_SENT ──Welcome──► READY ──Done──► FINISHED
 *        ▲                                   │  Reject: log the reason, exit 1     │ Task:
 *        │   no message for 3 heartbeats,    │                                     │ evaluate,
 *        └── or "unknown session" Nack ◄─────┴─────────────────────────────────────┘ train, Update
 *            (reconnect with exponential backoff)
 */
#ifndef CONCORD_CLIENT_H
#define CONCORD_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "concord.pb-c.h"
#include "config.h"
#include "dataset.h"
#include "identity.h"
#include "model.h"
#include "transport.h"

typedef enum { CLIENT_DISCONNECTED, CLIENT_HELLO_SENT, CLIENT_READY, CLIENT_FINISHED } client_state_t;

typedef struct {
    config_t *cfg;
    identity_t self;
    identity_public_t coordinator;
    char *endpoint, *state_dir, *data_path, *labels_path, *test_path, *test_labels_path;
    const char *label_column;
    double val_frac;
    int curve, threads;
    double heartbeat_s, reconnect_min_s, reconnect_max_s;

    /* data: raw as loaded, then standardised in place once (std_applied says how) */
    dataset_t *train, *val, *test;
    uint8_t std_digest[WIRE_DIGEST_BYTES];
    int std_applied;            /* 0 raw, 1 local statistics, 2 the federation's */

    model_t *model;
    char standardize[16];       /* from Welcome */

    void *zctx, *dealer;
    client_state_t state;
    uint64_t seq, seq_reserved; /* hi-lo: seq never reused across restarts */
    uint64_t coord_seq;         /* last coordinator seq seen in this session */
    int warmups_sent;           /* queue warm-ups sent in this session (common/transport.h) */
    double last_recv, last_heartbeat, next_connect, backoff;
    uint64_t last_round;        /* last round an update was sent for (persisted) */
    /* The last task answered since the last Hello: the same task again (the coordinator
     * re-sends it on every Welcome while our answer is still in flight) is not redone. */
    int answered_valid;
    uint64_t answered_round;
    uint32_t answered_phase;
    uint8_t answered_digest[WIRE_DIGEST_BYTES];
    int exit_code;
    int64_t test_stop_at_round; /* tests: SIGSTOP ourselves on this round's task (-1: off) */
    int byzantine;              /* tests: 0 honest, 1 sign_flip, 2 scale (×100), 3 random */
    unsigned flood;             /* tests: --test-flood kinds (bit mask, flood.c), 0: off */
    double flood_rate;          /* tests: messages per second of each kind */

    struct client_upload *upload; /* an update held until the coordinator's grant (upload.c) */

    /* FedCE (§6.1) memory of the previous round, persisted in state_dir/fedce.snap */
    float *prev_params;         /* (P) θ_{t−1}: the global model received last round */
    float *prev_delta;          /* (P) Δ̃_k: the update as the coordinator uses it */
    int64_t prev_round;         /* round of prev_*, −1: none */
    double score_sum;           /* running mean of the minus model's scores */
    uint64_t score_n;
    volatile int stop;
} client_t;

/* session.c */
void client_set_state(client_t *c, client_state_t s);
int client_connect(client_t *c);
void client_disconnect(client_t *c, const char *why);
void client_handle_message(client_t *c, transport_msg_t *msg);
void client_tick(client_t *c);
int client_state_save(client_t *c);
int client_state_load(client_t *c);
/* Signs and queues a message to the coordinator; 0 when queued (failures are logged). */
int client_send(client_t *c, uint32_t type, uint64_t round, const ProtobufCMessage *body,
                const wire_frame_t *frames, size_t n_frames);

/* task.c */
void client_handle_task(client_t *c, const Concord__Task *task, transport_msg_t *msg);
int client_load_data(client_t *c, cc_err_t *err);
int client_fedce_load(client_t *c);

/* upload.c: sends u (the Update of a task) now when granted; otherwise keeps it and asks
 * the coordinator (UploadReady). 0 when sent or asked. */
int client_upload(client_t *c, const Concord__Update *u, const wire_frame_t *frames, size_t n, int granted);
/* UploadGrant for round: sends the update held for it. */
void client_upload_granted(client_t *c, uint64_t round);
/* A task arrived: 1 if the update held answers it (UploadReady is sent again), 0 otherwise
 * (a held update for an older task is dropped). */
int client_upload_held_for(client_t *c, const Concord__Task *t);
void client_upload_drop(client_t *c);

/* flood.c (tests only): parses "MODE[,MODE...][:RATE]"; 0 or -1. */
int client_flood_parse(const char *spec, unsigned *modes, double *rate);
/* Floods the coordinator until *signalled; returns the exit code. */
int client_flood_run(client_t *c, unsigned modes, double rate, volatile sig_atomic_t *signalled);

#endif
