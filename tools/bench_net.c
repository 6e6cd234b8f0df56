/* bench_net.c — the network figures of DESIGN §9 (docs/benchmarks.md):
 *
 *   concord-bench ingest  --params P --clients 8 [--messages M] [--journal DIR]...
 *       bare ZeroMQ DEALER→ROUTER transfer vs the coordinator's ingest path (receive,
 *       transport_open, the checks of coordinator/rounds.c s_handle_update, optionally the
 *       journal append, the Ack), same bytes, side by side, as a ratio.
 *   concord-bench clients --endpoint E --keys DIR --clients K
 *       a load generator: K enrolled clients in one process that answer every Task at once
 *       (or spread over --spread seconds) with a valid signed Update, so a real
 *       concord-coordinator can be measured (peak RSS, round overhead) without training.
 *
 * Both seal Updates with wire_seal given the frame's precomputed digest (wire_out_t
 * frame_digests), so a 40 MB frame is hashed once, not once per message. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench_util.h"
#include "concord.pb-c.h"
#include "identity.h"
#include "journal.h"
#include "msg.h"
#include "rng.h"
#include "transport.h"
#include "util.h"
#include "wire.h"
#include "wsum.h"

int bench_cmd_ingest(int argc, char **argv);
int bench_cmd_clients(int argc, char **argv);

/* ---- helpers ---------------------------------------------------------------------------- */

static void s_noop_free(void *data, void *hint) {
    (void)data, (void)hint;
}

/* Seals one Update of a single P-float frame whose digest is already known (hashed once
 * for all messages, so the senders cost nothing per message). *env is malloc'ed. */
static void s_seal_known(const char *id, uint64_t seq, uint64_t round, const uint8_t *body, size_t body_len,
                         const float *frame, size_t P, const uint8_t digest[WIRE_DIGEST_BYTES],
                         const uint8_t sk[WIRE_SK_BYTES], uint8_t **env, size_t *env_len) {
    wire_frame_t f = {frame, P};
    const uint8_t *d[1] = {digest};
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = id, .seq = seq, .round = round,
                      .body = body, .body_len = body_len, .frames = &f, .n_frames = 1, .frame_digests = d};
    cc_err_t err = {0};
    if (wire_seal(&out, sk, env, env_len, &err)) {
        fprintf(stderr, "concord-bench: seal failed: %s\n", err.msg);
        exit(1);
    }
}

/* A packed Update body for one "delta" tensor of P floats. */
static uint8_t *s_update_body(uint64_t round, const uint8_t base[WIRE_DIGEST_BYTES], uint64_t n_samples,
                              size_t n_classes, size_t P, double train_seconds, size_t *len) {
    Concord__Update u = CONCORD__UPDATE__INIT;
    Concord__TensorInfo ti = CONCORD__TENSOR_INFO__INIT, *tp = &ti;
    uint32_t shape = (uint32_t)P;
    uint64_t *counts = cc_xcalloc(n_classes + 1, sizeof *counts);
    for (size_t k = 0; k < n_classes; k++) counts[k] = n_samples / n_classes + (k < n_samples % n_classes);
    ti.name = "delta", ti.n_shape = 1, ti.shape = &shape;
    u.round = round;
    u.base_digest.data = (uint8_t *)base, u.base_digest.len = WIRE_DIGEST_BYTES;
    u.n_samples = n_samples;
    u.n_class_counts = n_classes, u.class_counts = counts;
    u.n_tensors = 1, u.tensors = &tp;
    u.train_seconds = train_seconds;
    *len = concord__update__get_packed_size(&u);
    uint8_t *buf = cc_xmalloc(*len ? *len : 1);
    concord__update__pack(&u, buf);
    free(counts);
    return buf;
}

static float *s_small_delta(size_t P, double scale, uint64_t seed) {
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    float *d = cc_xalloc_floats(P);
    for (size_t i = 0; i < P; i++) d[i] = (float)(scale * (2.0 * cc_rng_uniform(&rng) - 1.0));
    return d;
}

/* ==== ingest ================================================================================ */

enum { S_MODE_BARE = 0, S_MODE_FULL = 1 };
#define S_MAX_JOURNALS 4
#define S_MAX_MODES (2 + S_MAX_JOURNALS)
#define S_MAX_SENDERS 64

/* Stages of the full path, timed in the receiving thread. */
enum { ST_RECV, ST_OPEN, ST_CHECK, ST_NORM, ST_DIGEST, ST_JOURNAL, ST_ACK, ST_N };
static const char *s_stage_names[ST_N] = {"recv", "open", "check", "norm", "digest", "journal", "ack"};

typedef struct {
    size_t P, n_senders, messages;      /* messages per sender */
    int curve;
    double max_norm;
    float *delta;                       /* the one Δ every message carries (shared, read-only) */
    identity_t coord;                   /* the receiver's identity (signs Acks; CURVE server) */
    identity_t *senders;                /* (n_senders) */
    enrolment_t enrol;                  /* the senders' public keys */
    uint8_t **env;                      /* (n_senders * messages) sealed envelopes */
    size_t *env_len;
    uint8_t base[WIRE_DIGEST_BYTES];    /* the "open round's" model digest */
} s_ingest_t;

typedef struct {
    double seconds;                     /* go → last message handled */
    double bytes;                       /* every byte received (envelopes + frames) */
    double stage[ST_N];
    size_t accepted, rejected;
} s_run_t;

/* A sender process: connect, say ready, wait for go, send its messages, wait for done. */
static void s_sender(const s_ingest_t *g, size_t i, const char *endpoint) {
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    const identity_t *me = &g->senders[i];
    zmq_setsockopt(s, ZMQ_ROUTING_ID, me->id, strlen(me->id));
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (g->curve && transport_curve_client(s, me, g->coord.curve_public)) _exit(3);
    if (zmq_connect(s, endpoint) != 0) _exit(3);
    if (zmq_send(s, "R", 1, 0) != 1) _exit(3);
    char buf[8];
    for (;;) {
        int n = zmq_recv(s, buf, sizeof buf, 0);
        if (n == 1 && buf[0] == 'G') break;
        if (n < 0 && errno != EINTR) _exit(3);
    }
    wire_frame_t f = {g->delta, g->P};
    for (size_t m = 0; m < g->messages; m++) {
        size_t k = i * g->messages + m;
        if (transport_send_zc(s, NULL, g->env[k], g->env_len[k], &f, 1, 0, s_noop_free, NULL) != 0) _exit(4);
    }
    for (;;) { /* Acks (full mode) until the receiver's 'D' */
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, s, 0) < 0) {
            zmq_msg_close(&msg);
            if (errno == EINTR) continue;
            break;
        }
        int done = zmq_msg_size(&msg) == 1 && ((char *)zmq_msg_data(&msg))[0] == 'D';
        zmq_msg_close(&msg);
        if (done) break;
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    _exit(0);
}

typedef struct {
    uint64_t *last_seq;                  /* (n_senders) */
} s_recv_state_t;

static size_t s_sender_index(const s_ingest_t *g, const char *id) {
    for (size_t i = 0; i < g->n_senders; i++)
        if (strcmp(g->senders[i].id, id) == 0) return i;
    return SIZE_MAX;
}

/* The coordinator's handling of one received Update (coordinator/rounds.c: s_authenticate,
 * s_handle_update, s_accept_update for a plain update), timed by stage. Returns 1 if accepted. */
static int s_full_handle(const s_ingest_t *g, transport_msg_t *msg, s_recv_state_t *st, journal_t *j,
                         uint64_t *ack_seq, void *router, s_run_t *run) {
    cc_err_t err = {0};
    wire_in_t in;
    double t = cc_now(), t2;
    int ok = transport_open(msg, enrolment_lookup, (void *)&g->enrol, &in, &err) == 0;
    t2 = cc_now(), run->stage[ST_OPEN] += t2 - t, t = t2;
    size_t who = ok ? s_sender_index(g, in.sender_id) : SIZE_MAX;
    Concord__Update *u = NULL;
    ok = ok && who != SIZE_MAX && strcmp(msg->peer, in.sender_id) == 0 &&
         (!g->curve || strcmp(msg->user_id, in.sender_id) == 0) && in.seq > st->last_seq[who];
    if (ok) st->last_seq[who] = in.seq;
    if (ok) u = concord__update__unpack(NULL, in.body_len, in.body);
    ok = ok && u && in.type == CONCORD__MSG_TYPE__MSG_UPDATE && in.round == 0 && u->round == 0 &&
         u->base_digest.len == WIRE_DIGEST_BYTES && memcmp(u->base_digest.data, g->base, WIRE_DIGEST_BYTES) == 0 &&
         u->n_samples >= 1 && u->n_samples <= 1000000 && u->n_tensors == 1 && in.n_frames == 1 &&
         msg_tensor_is(u->tensors[0], "delta", g->P);
    t2 = cc_now(), run->stage[ST_CHECK] += t2 - t, t = t2;
    const void *frame = ok ? zmq_msg_data(&msg->parts[1]) : NULL;
    double norm = ok ? wire_l2norm_bytes(frame, g->P) : 0.0;
    ok = ok && norm <= g->max_norm;
    t2 = cc_now(), run->stage[ST_NORM] += t2 - t, t = t2;
    uint8_t digest[WIRE_DIGEST_BYTES];
    if (ok) memcpy(digest, wire_in_digest(&in, 0), WIRE_DIGEST_BYTES); /* the ledger's update digest: verified */
    t2 = cc_now(), run->stage[ST_DIGEST] += t2 - t, t = t2;
    if (ok && j) { /* coordinator/persist.c coord_journal_add_update */
        char hex[2 * WIRE_DIGEST_BYTES + 1];
        wire_digest_hex(hex, digest);
        json_t *hdr = json_pack("{s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:I, s:f, s:b, s:I}", "type", "update",
                                "digest", hex, "client", in.sender_id, "seq", (json_int_t)in.seq, "n_samples",
                                (json_int_t)u->n_samples, "norm", norm, "train_seconds", u->train_seconds, "arrival",
                                t - run->seconds, "vectors", (json_int_t)1, "data_score", 1.0, "has_score", 0,
                                "upload_bytes", (json_int_t)(g->P * sizeof(float)));
        char *text = json_dumps(hdr, JSON_COMPACT);
        journal_record_t rec; /* the frame is not hashed again: its digest was verified */
        if (wsum_record_append(j, text, frame, g->P, digest, &rec, &err) != 0) {
            fprintf(stderr, "concord-bench ingest: journal: %s\n", err.msg);
            ok = 0;
        }
        free(text);
        json_decref(hdr);
    }
    t2 = cc_now(), run->stage[ST_JOURNAL] += t2 - t, t = t2;
    if (ok) {
        Concord__Ack ack = CONCORD__ACK__INIT;
        if (msg_send(router, in.sender_id, &g->coord, ack_seq, CONCORD__MSG_TYPE__MSG_ACK, 0, &ack.base, NULL, 0,
                     &err) != 0)
            fprintf(stderr, "concord-bench ingest: ack: %s\n", err.msg);
    }
    run->stage[ST_ACK] += cc_now() - t;
    if (u) concord__update__free_unpacked(u, NULL);
    wire_in_clear(&in);
    return ok;
}

/* One timed transfer of n_senders × messages updates in the given mode. */
static int s_ingest_run(const s_ingest_t *g, int mode, const char *journal_dir, s_run_t *run) {
    memset(run, 0, sizeof *run);
    void *ctx = zmq_ctx_new();
    cc_err_t err = {0};
    zap_handler_t *zap = NULL;
    if (g->curve && !(zap = zap_handler_new(ctx, &g->enrol, &err))) {
        fprintf(stderr, "concord-bench ingest: ZAP: %s\n", err.msg);
        zmq_ctx_term(ctx);
        return -1;
    }
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, linger = 0, hwm = 1000; /* the coordinator's socket options (coordinator/main.c) */
    int64_t maxmsg = (int64_t)(g->P * sizeof(float)) + (1 << 20);
    zmq_setsockopt(router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (g->curve && transport_curve_server(router, &g->coord)) return -1;
    char endpoint[256];
    size_t elen = sizeof endpoint;
    if (zmq_bind(router, "tcp://127.0.0.1:*") != 0 || zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &elen) != 0) {
        fprintf(stderr, "concord-bench ingest: bind: %s\n", zmq_strerror(errno));
        return -1;
    }
    journal_t *j = NULL;
    char jpath[4096] = "";
    if (mode == S_MODE_FULL && journal_dir) {
        snprintf(jpath, sizeof jpath, "%s/concord-bench-ingest-%ld.journal", journal_dir, (long)getpid());
        unlink(jpath);
        if (journal_open(jpath, 0, &j, NULL, &err) != 0) {
            fprintf(stderr, "concord-bench ingest: %s\n", err.msg);
            return -1;
        }
    }
    fflush(NULL);
    pid_t pids[S_MAX_SENDERS];
    for (size_t i = 0; i < g->n_senders; i++) {
        pids[i] = fork();
        if (pids[i] == 0) s_sender(g, i, endpoint);
        if (pids[i] < 0) {
            perror("fork");
            return -1;
        }
    }
    /* Set-up (not timed): every sender connected (and admitted by ZAP) and ready. */
    size_t ready = 0;
    char (*ids)[WIRE_MAX_ID + 1] = cc_xcalloc(g->n_senders, sizeof *ids);
    double t_setup = cc_now();
    while (ready < g->n_senders) {
        zmq_pollitem_t items[2] = {{router, 0, ZMQ_POLLIN, 0}, {zap ? zap_handler_socket(zap) : NULL, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, zap ? 2 : 1, 1000) < 0 && errno != EINTR) break;
        if (zap && (items[1].revents & ZMQ_POLLIN)) zap_handler_handle(zap);
        int status;
        if (waitpid(-1, &status, WNOHANG) > 0 || cc_now() - t_setup > 120) {
            fprintf(stderr, "concord-bench ingest: a sender did not start (%zu of %zu ready)\n", ready, g->n_senders);
            return -1;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            transport_msg_t m;
            if (transport_recv(router, 1, &m, ZMQ_DONTWAIT) == 0) snprintf(ids[ready++], WIRE_MAX_ID + 1, "%s", m.peer);
            transport_msg_close(&m);
        }
    }
    s_recv_state_t st = {cc_xcalloc(g->n_senders, sizeof(uint64_t))};
    uint64_t ack_seq = 0;
    size_t total = g->n_senders * g->messages;
    double t0 = cc_now();
    run->seconds = t0; /* s_full_handle reads it for "arrival" */
    for (size_t i = 0; i < g->n_senders; i++) {
        zmq_send(router, ids[i], strlen(ids[i]), ZMQ_SNDMORE);
        zmq_send(router, "G", 1, 0);
    }
    size_t got = 0;
    while (got < total) {
        if (zap) { /* CURVE: keep answering ZAP (a reconnecting sender), as the coordinator's loop does */
            zmq_pollitem_t items[2] = {{router, 0, ZMQ_POLLIN, 0}, {zap_handler_socket(zap), 0, ZMQ_POLLIN, 0}};
            if (zmq_poll(items, 2, -1) < 0) continue;
            if (items[1].revents & ZMQ_POLLIN) zap_handler_handle(zap);
            if (!(items[0].revents & ZMQ_POLLIN)) continue;
        }
        if (mode == S_MODE_BARE) { /* receive only: every part, then release it */
            int more = 1;
            while (more) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, router, 0) < 0) {
                    zmq_msg_close(&m);
                    if (errno == EINTR) continue;
                    return -1;
                }
                run->bytes += (double)zmq_msg_size(&m);
                more = zmq_msg_more(&m);
                zmq_msg_close(&m);
            }
            got++;
            continue;
        }
        transport_msg_t m;
        double t = cc_now();
        int rc = transport_recv(router, 1, &m, 0);
        run->stage[ST_RECV] += cc_now() - t;
        if (rc == -1 && errno == EINTR) continue;
        if (rc != 0) {
            fprintf(stderr, "concord-bench ingest: receive failed (%d)\n", rc);
            return -1;
        }
        for (size_t p = 0; p < m.n_parts; p++) run->bytes += (double)zmq_msg_size(&m.parts[p]);
        if (s_full_handle(g, &m, &st, j, &ack_seq, router, run)) run->accepted++;
        else run->rejected++;
        transport_msg_close(&m);
        got++;
    }
    run->seconds = cc_now() - t0;
    for (size_t i = 0; i < g->n_senders; i++) {
        zmq_send(router, ids[i], strlen(ids[i]), ZMQ_SNDMORE);
        zmq_send(router, "D", 1, 0);
    }
    int fail = 0;
    for (size_t i = 0; i < g->n_senders; i++) {
        int status = 0;
        if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) fail = 1;
    }
    if (fail) fprintf(stderr, "concord-bench ingest: a sender process failed\n");
    free(ids);
    free(st.last_seq);
    journal_close(&j);
    if (jpath[0]) unlink(jpath);
    zmq_close(router);
    zap_handler_destroy(&zap);
    zmq_ctx_term(ctx);
    return fail ? -1 : 0;
}

/* Rate in GB/s of fn over the buffer, repeated for at least `seconds`. */
typedef enum { S_RATE_DIGEST, S_RATE_FINITE, S_RATE_NORM, S_RATE_MEMCPY } s_rate_kind_t;

static double s_rate(s_rate_kind_t kind, const float *v, size_t P, double seconds) {
    uint8_t d[WIRE_DIGEST_BYTES];
    volatile double sink = 0;
    float *dst = kind == S_RATE_MEMCPY ? cc_xalloc_floats(P) : NULL;
    if (dst) memset(dst, 0, P * sizeof(float));
    long it = 0;
    double t0 = cc_now(), el;
    do {
        switch (kind) {
        case S_RATE_DIGEST: wire_digest_bytes(d, v, P * sizeof(float)), sink += d[0]; break;
        case S_RATE_FINITE: sink += wire_all_finite(v, P); break;
        case S_RATE_NORM: sink += wire_l2norm_bytes(v, P); break;
        case S_RATE_MEMCPY: memcpy(dst, v, P * sizeof(float)), sink += dst[it % P]; break;
        }
        it++;
    } while ((el = cc_now() - t0) < seconds || it < 3);
    free(dst);
    (void)sink;
    return (double)it * (double)P * sizeof(float) / el / 1e9;
}

static void s_ingest_usage(FILE *fp) {
    fprintf(fp,
            "Usage: concord-bench ingest --params P --clients N [options]\n"
            "Throughput of the coordinator's ingest path against a bare ZeroMQ transfer of the same\n"
            "bytes, side by side (DESIGN §9). N sender processes each send M multipart messages\n"
            "[envelope, Δ of P float32] (sealed Updates prepared before timing, sent zero-copy) to\n"
            "one ROUTER over tcp loopback; the clock runs from 'go' to the last message handled.\n"
            "  bare   the ROUTER receives every part and releases it\n"
            "  full   transport_recv + transport_open (digest of every frame, Ed25519, finiteness),\n"
            "         identity/seq/round/base-digest/shape checks, L2 norm bound, the ledger digest\n"
            "         (the verified frame digest),\n"
            "         a signed Ack: what coordinator/rounds.c does for a plain update\n"
            "  full+journal:DIR   the same plus the journal append (write + fsync) the coordinator\n"
            "         does before the Ack, with the journal file in DIR\n"
            "Modes alternate within each repetition; medians are reported. Also measures, on the\n"
            "same Δ, the rates of BLAKE2b (wire_digest_bytes), finiteness, the norm and memcpy.\n\n"
            "  --params P        floats per update (default 1000000)\n"
            "  --clients N       sender processes (default 8)\n"
            "  --messages M      messages per sender (default: about 1.5 GB per mode in total)\n"
            "  --repeat R        repetitions (default 3)\n"
            "  --journal DIR     also run full+journal with the journal in DIR (repeatable, up to 4)\n"
            "  --curve           CURVE on the connection for every mode (ZAP admits the senders)\n"
            "  --max-norm X      the norm bound (default 1e4, the coordinator's default)\n"
            "  --json            last stdout line: one JSON object\n"
            "  --help\n");
}

int bench_cmd_ingest(int argc, char **argv) {
    enum { O_PARAMS = 256, O_CLIENTS, O_MESSAGES, O_REPEAT, O_JOURNAL, O_CURVE, O_MAXNORM, O_JSON, O_HELP };
    static const struct option longopts[] = {
        {"params", required_argument, 0, O_PARAMS}, {"clients", required_argument, 0, O_CLIENTS},
        {"messages", required_argument, 0, O_MESSAGES}, {"repeat", required_argument, 0, O_REPEAT},
        {"journal", required_argument, 0, O_JOURNAL}, {"curve", no_argument, 0, O_CURVE},
        {"max-norm", required_argument, 0, O_MAXNORM}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    s_ingest_t g;
    memset(&g, 0, sizeof g);
    g.P = 1000000, g.n_senders = 8, g.max_norm = 1e4;
    size_t repeat = 3;
    int json = 0, c;
    const char *journals[S_MAX_JOURNALS];
    size_t n_journals = 0;
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_PARAMS:
            if (bench_num(optarg, 1, 4e8, &v)) return bench_bad("ingest", "--params", optarg, "an integer in [1, 4e8]");
            g.P = (size_t)v;
            break;
        case O_CLIENTS:
            if (bench_num(optarg, 1, S_MAX_SENDERS, &v)) return bench_bad("ingest", "--clients", optarg, "an integer in [1, 64]");
            g.n_senders = (size_t)v;
            break;
        case O_MESSAGES:
            if (bench_num(optarg, 1, 1e6, &v)) return bench_bad("ingest", "--messages", optarg, "an integer >= 1");
            g.messages = (size_t)v;
            break;
        case O_REPEAT:
            if (bench_num(optarg, 1, 100, &v)) return bench_bad("ingest", "--repeat", optarg, "an integer in [1, 100]");
            repeat = (size_t)v;
            break;
        case O_JOURNAL:
            if (n_journals == S_MAX_JOURNALS) return bench_bad("ingest", "--journal", optarg, "at most 4 directories");
            journals[n_journals++] = optarg;
            break;
        case O_CURVE: g.curve = 1; break;
        case O_MAXNORM:
            if (bench_num(optarg, 0, 1e30, &v)) return bench_bad("ingest", "--max-norm", optarg, "a number >= 0");
            g.max_norm = v;
            break;
        case O_JSON: json = 1; break;
        case O_HELP: s_ingest_usage(stdout); return 0;
        default: s_ingest_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "concord-bench ingest: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!g.messages) {
        double per = 1.5e9 / ((double)g.n_senders * (double)g.P * sizeof(float));
        g.messages = per < 2 ? 2 : (size_t)ceil(per);
    }
    cc_err_t err = {0};

    /* Identities, the one Δ, and every sealed envelope (seq 1..M per sender), before timing. */
    double tp = cc_now();
    if (identity_generate(&g.coord, "coordinator", &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    g.senders = cc_xcalloc(g.n_senders, sizeof *g.senders);
    g.enrol.n = g.n_senders;
    g.enrol.keys = cc_xcalloc(g.n_senders, sizeof *g.enrol.keys);
    for (size_t i = 0; i < g.n_senders; i++) {
        char id[32];
        snprintf(id, sizeof id, "client%02zu", i + 1);
        if (identity_generate(&g.senders[i], id, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        identity_public_t *k = &g.enrol.keys[i];
        snprintf(k->id, sizeof k->id, "%s", id);
        memcpy(k->pk, g.senders[i].pk, WIRE_PK_BYTES);
        memcpy(k->curve_public, g.senders[i].curve_public, sizeof k->curve_public);
    }
    g.delta = s_small_delta(g.P, 1e-4, 1);
    uint8_t dd[1][WIRE_DIGEST_BYTES];
    wire_digest_floats(dd[0], g.delta, g.P);
    randombytes_buf(g.base, sizeof g.base);
    size_t body_len;
    uint8_t *body = s_update_body(0, g.base, 1000, 2, g.P, 0.0, &body_len);
    size_t n_env = g.n_senders * g.messages;
    g.env = cc_xcalloc(n_env, sizeof *g.env);
    g.env_len = cc_xcalloc(n_env, sizeof *g.env_len);
    for (size_t i = 0; i < g.n_senders; i++)
        for (size_t m = 0; m < g.messages; m++)
            s_seal_known(g.senders[i].id, m + 1, 0, body, body_len, g.delta, g.P, dd[0], g.senders[i].sk,
                         &g.env[i * g.messages + m], &g.env_len[i * g.messages + m]);
    free(body);
    /* The sealed message must pass the real wire_open (and so the full path). */
    {
        const void *fr[1] = {g.delta};
        size_t fb[1] = {g.P * sizeof(float)};
        wire_in_t in;
        if (wire_open(g.env[0], g.env_len[0], fr, fb, 1, enrolment_lookup, &g.enrol, &in, &err) != 0)
            return fprintf(stderr, "concord-bench ingest: internal error: %s\n", err.msg), 1;
        wire_in_clear(&in);
    }
    double prep = cc_now() - tp;

    /* Single-thread rates of the per-byte work, on the same Δ (warm in cache for small P). */
    double r_digest = s_rate(S_RATE_DIGEST, g.delta, g.P, 0.5), r_finite = s_rate(S_RATE_FINITE, g.delta, g.P, 0.3);
    double r_norm = s_rate(S_RATE_NORM, g.delta, g.P, 0.3), r_copy = s_rate(S_RATE_MEMCPY, g.delta, g.P, 0.3);

    size_t n_modes = 2 + n_journals;
    const char *mode_names[S_MAX_MODES];
    char names_buf[S_MAX_MODES][300];
    mode_names[0] = "bare", mode_names[1] = "full";
    for (size_t k = 0; k < n_journals; k++) {
        snprintf(names_buf[k], sizeof names_buf[k], "full+journal:%s", journals[k]);
        mode_names[2 + k] = names_buf[k];
    }
    s_run_t *runs = cc_xcalloc(repeat * n_modes, sizeof *runs);
    double mb = (double)g.P * 4 / 1e6;
    printf("ingest: %zu senders x %zu messages of %.1f MB (P = %zu), curve %s, %zu repetitions; prepared in %.1fs\n",
           g.n_senders, g.messages, mb, g.P, g.curve ? "on" : "off", repeat, prep);
    printf("single-thread rates on this Δ: BLAKE2b %.3f GB/s, finiteness %.2f GB/s, L2 norm %.2f GB/s, memcpy %.2f GB/s\n",
           r_digest, r_finite, r_norm, r_copy);
    fflush(stdout);
    for (size_t r = 0; r < repeat; r++) {
        for (size_t k = 0; k < n_modes; k++) {
            s_run_t *run = &runs[r * n_modes + k];
            if (s_ingest_run(&g, k == 0 ? S_MODE_BARE : S_MODE_FULL, k >= 2 ? journals[k - 2] : NULL, run) != 0)
                return 1;
            printf("  rep %zu %-28s %7.3f s  %6.3f GB/s  accepted %zu rejected %zu\n", r + 1, mode_names[k],
                   run->seconds, run->bytes / run->seconds / 1e9, run->accepted, run->rejected);
            fflush(stdout);
            if (k > 0 && run->rejected) {
                fprintf(stderr, "concord-bench ingest: %zu updates were rejected\n", run->rejected);
                return 1;
            }
        }
    }
    double med[S_MAX_MODES], med_stage[S_MAX_MODES][ST_N], *tmp = cc_xcalloc(repeat, sizeof *tmp);
    double bytes = runs[0].bytes;
    for (size_t k = 0; k < n_modes; k++) {
        for (size_t r = 0; r < repeat; r++) tmp[r] = runs[r * n_modes + k].bytes / runs[r * n_modes + k].seconds;
        med[k] = bench_median(tmp, repeat);
        for (int s = 0; s < ST_N; s++) {
            for (size_t r = 0; r < repeat; r++) tmp[r] = runs[r * n_modes + k].stage[s];
            med_stage[k][s] = bench_median(tmp, repeat);
        }
    }
    free(tmp);
    printf("medians (%.2f GB per run):\n", bytes / 1e9);
    json_t *jmodes = json_array();
    for (size_t k = 0; k < n_modes; k++) {
        printf("  %-28s %6.3f GB/s  ratio to bare %.3f", mode_names[k], med[k] / 1e9, med[k] / med[0]);
        json_t *jm = json_pack("{s:s, s:f, s:f}", "mode", mode_names[k], "gb_per_s", med[k] / 1e9, "ratio_to_bare",
                               med[k] / med[0]);
        if (k > 0) {
            double busy = 0;
            json_t *js = json_object();
            printf("\n      stage seconds:");
            for (int s = 0; s < ST_N; s++) {
                printf(" %s %.3f", s_stage_names[s], med_stage[k][s]);
                json_object_set_new(js, s_stage_names[s], json_real(med_stage[k][s]));
                if (s != ST_RECV) busy += med_stage[k][s];
            }
            printf("\n      handling (all but recv) %.3f s = %.3f GB/s of received bytes", busy, bytes / busy / 1e9);
            json_object_set_new(jm, "stage_seconds", js);
            json_object_set_new(jm, "handling_gb_per_s", json_real(bytes / busy / 1e9));
        }
        printf("\n");
        json_t *reps = json_array();
        for (size_t r = 0; r < repeat; r++)
            json_array_append_new(reps, json_real(runs[r * n_modes + k].bytes / runs[r * n_modes + k].seconds / 1e9));
        json_object_set_new(jm, "runs_gb_per_s", reps);
        json_array_append_new(jmodes, jm);
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:b, s:f, s:f, s:f, s:f, s:f, s:o}", "cmd", "ingest", "params",
                              (json_int_t)g.P, "clients", (json_int_t)g.n_senders, "messages",
                              (json_int_t)g.messages, "repeat", (json_int_t)repeat, "curve", g.curve,
                              "bytes_per_run", bytes, "blake2b_gb_per_s", r_digest, "finite_gb_per_s", r_finite,
                              "norm_gb_per_s", r_norm, "memcpy_gb_per_s", r_copy, "modes", jmodes);
        bench_print_json(j);
    } else {
        json_decref(jmodes);
    }
    for (size_t k = 0; k < n_env; k++) free(g.env[k]);
    free(g.env), free(g.env_len), free(runs), free(g.delta), free(g.enrol.keys);
    for (size_t i = 0; i < g.n_senders; i++) identity_clear(&g.senders[i]);
    free(g.senders);
    identity_clear(&g.coord);
    return 0;
}

/* ==== clients (load generator) ================================================================ */

typedef enum { LC_HELLO_SENT, LC_READY, LC_DONE } s_lc_state_t;

typedef struct {
    identity_t self;
    void *sock;
    uint64_t seq, coord_seq;
    s_lc_state_t state;
    int pending;                /* an Update is due at `due` */
    int granted;                /* the task let the Update go without asking (else UploadReady, grant) */
    int asked;                  /* UploadReady sent: the Update goes on the UploadGrant */
    double due;
    uint64_t round;
    uint8_t base[WIRE_DIGEST_BYTES];
    double task_at;             /* when the task arrived (for the spread) */
    size_t tasks, updates, acks, nacks;
} s_lc_t;

typedef struct {
    s_lc_t *cl;
    size_t K, P, n_train, classes, inputs;
    identity_public_t coord;
    float *delta;
    uint8_t delta_digest[1][WIRE_DIGEST_BYTES];
    double spread, scale;
    int trust_tasks, verbose;
    uint64_t seed;
} s_lg_t;

static int s_lookup_coord(void *ctx, const char *sender_id, uint8_t pk[WIRE_PK_BYTES]) {
    const identity_public_t *c = ctx;
    if (strcmp(sender_id, c->id) != 0) return -1;
    memcpy(pk, c->pk, WIRE_PK_BYTES);
    return 0;
}

static void s_lc_send(s_lg_t *g, s_lc_t *cl, uint32_t type, uint64_t round, const ProtobufCMessage *body) {
    cc_err_t err = {0};
    if (msg_send(cl->sock, NULL, &cl->self, &cl->seq, type, round, body, NULL, 0, &err))
        fprintf(stderr, "concord-bench clients: %s: send: %s\n", cl->self.id, err.msg);
    (void)g;
}

static void s_lc_hello(s_lg_t *g, s_lc_t *cl) {
    Concord__Hello h = CONCORD__HELLO__INIT;
    uint64_t *counts = cc_xcalloc(g->classes + 1, sizeof *counts);
    for (size_t k = 0; k < g->classes; k++) counts[k] = g->n_train / g->classes + (k < g->n_train % g->classes);
    h.protocol_version = WIRE_VERSION;
    h.n_train = g->n_train;
    h.n_class_counts = g->classes, h.class_counts = counts;
    h.n_features = (uint32_t)g->inputs;
    s_lc_send(g, cl, CONCORD__MSG_TYPE__MSG_HELLO, 0, &h.base);
    free(counts);
    cl->state = LC_HELLO_SENT;
}

static void s_lc_update(s_lg_t *g, s_lc_t *cl) {
    size_t body_len;
    uint8_t *body = s_update_body(cl->round, cl->base, g->n_train, g->classes, g->P, cc_now() - cl->task_at, &body_len);
    uint8_t *env;
    size_t env_len;
    s_seal_known(cl->self.id, ++cl->seq, cl->round, body, body_len, g->delta, g->P, g->delta_digest[0], cl->self.sk,
                 &env, &env_len);
    wire_frame_t f = {g->delta, g->P};
    if (transport_send_zc(cl->sock, NULL, env, env_len, &f, 1, 0, s_noop_free, NULL) != 0)
        fprintf(stderr, "concord-bench clients: %s: update send: %s\n", cl->self.id, zmq_strerror(errno));
    free(env);
    free(body);
    cl->pending = 0;
    cl->updates++;
}

/* The Update is due: send it, or first ask for a grant as concord-client does. */
static void s_lc_due(s_lg_t *g, s_lc_t *cl) {
    if (cl->granted) {
        s_lc_update(g, cl);
        return;
    }
    Concord__UploadReady r = CONCORD__UPLOAD_READY__INIT;
    r.round = cl->round;
    s_lc_send(g, cl, CONCORD__MSG_TYPE__MSG_UPLOAD_READY, cl->round, &r.base);
    cl->pending = 0, cl->asked = 1;
}

/* The task's "params" tensor gives P; the Δ is made (once) on the first task. */
static int s_lc_task(s_lg_t *g, s_lc_t *cl, const uint8_t *body, size_t body_len, transport_msg_t *msg, size_t idx) {
    Concord__Task *t = concord__task__unpack(NULL, body_len, body);
    if (!t) return -1;
    size_t P = 0;
    for (size_t i = 0; i < t->n_tensors; i++)
        if (t->tensors[i]->name && strcmp(t->tensors[i]->name, "params") == 0 && t->tensors[i]->n_shape == 1)
            P = t->tensors[i]->shape[0];
    int rc = 0;
    if (t->phase != 0 || !P || t->model_digest.len != WIRE_DIGEST_BYTES || t->n_tensors + 1 != msg->n_parts) {
        fprintf(stderr, "concord-bench clients: %s: unsupported task (phase %u; alignment must be off)\n", cl->self.id,
                t->phase);
        rc = -1;
    } else {
        if (!g->delta) {
            g->P = P;
            g->delta = s_small_delta(P, g->scale, g->seed);
            wire_digest_floats(g->delta_digest[0], g->delta, P);
        }
        if (P != g->P) rc = -1;
        cl->round = t->round;
        memcpy(cl->base, t->model_digest.data, WIRE_DIGEST_BYTES);
        cl->task_at = cc_now();
        cl->due = cl->task_at + (g->K > 1 ? g->spread * (double)idx / (double)(g->K - 1) : 0.0);
        cl->pending = rc == 0;
        cl->granted = t->upload_granted, cl->asked = 0;
        cl->tasks++;
        /* Like concord-client: confirm the task at once (the coordinator paces tasks on it). */
        Concord__Heartbeat hb = CONCORD__HEARTBEAT__INIT;
        hb.round = t->round;
        hb.state = "task_received";
        if (rc == 0 && cl->due > cl->task_at) s_lc_send(g, cl, CONCORD__MSG_TYPE__MSG_HEARTBEAT, t->round, &hb.base);
    }
    concord__task__free_unpacked(t, NULL);
    return rc;
}

/* Handles one message for client idx; returns -1 on a fatal condition (Reject). */
static int s_lc_message(s_lg_t *g, size_t idx, transport_msg_t *msg) {
    s_lc_t *cl = &g->cl[idx];
    cc_err_t err = {0};
    wire_in_t in;
    memset(&in, 0, sizeof in);
    uint32_t type;
    uint64_t seq;
    const uint8_t *body;
    size_t body_len;
    Concord__Envelope *e = NULL;
    if (msg->warmup_parts) return 0; /* a queue warm-up: dropped, as a client does */
    /* With --trust-tasks only the envelope of a Task is decoded (no hash of θ): the load
     * generator then costs the machine almost nothing; everything else is verified. */
    if (g->trust_tasks && (e = concord__envelope__unpack(NULL, zmq_msg_size(&msg->parts[0]),
                                                        zmq_msg_data(&msg->parts[0]))) != NULL &&
        e->type == CONCORD__MSG_TYPE__MSG_TASK) {
        type = e->type, seq = e->seq, body = e->body.data, body_len = e->body.len;
    } else {
        if (e) concord__envelope__free_unpacked(e, NULL), e = NULL;
        if (transport_open(msg, s_lookup_coord, &g->coord, &in, &err) != 0) {
            fprintf(stderr, "concord-bench clients: %s: refused a message: %s\n", cl->self.id, err.msg);
            return 0;
        }
        type = in.type, seq = in.seq, body = in.body, body_len = in.body_len;
    }
    int rc = 0;
    if (seq <= cl->coord_seq) {
        fprintf(stderr, "concord-bench clients: %s: replayed coordinator message\n", cl->self.id);
    } else {
        cl->coord_seq = seq;
        switch (type) {
        case CONCORD__MSG_TYPE__MSG_WELCOME: cl->state = LC_READY; break;
        case CONCORD__MSG_TYPE__MSG_TASK:
            if (s_lc_task(g, cl, body, body_len, msg, idx) != 0) rc = -1;
            break;
        case CONCORD__MSG_TYPE__MSG_ACK: cl->acks++; break;
        case CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT:
            if (cl->asked && in.round == cl->round) cl->asked = 0, s_lc_update(g, cl);
            break;
        case CONCORD__MSG_TYPE__MSG_NACK: {
            Concord__Nack *n = concord__nack__unpack(NULL, body_len, body);
            fprintf(stderr, "concord-bench clients: %s: Nack: %s\n", cl->self.id, n && n->reason ? n->reason : "?");
            if (n) concord__nack__free_unpacked(n, NULL);
            cl->nacks++;
            break;
        }
        case CONCORD__MSG_TYPE__MSG_REJECT: {
            Concord__Reject *r = concord__reject__unpack(NULL, body_len, body);
            fprintf(stderr, "concord-bench clients: %s: rejected: %s\n", cl->self.id, r && r->reason ? r->reason : "?");
            if (r) concord__reject__free_unpacked(r, NULL);
            rc = -1;
            break;
        }
        case CONCORD__MSG_TYPE__MSG_DONE: cl->state = LC_DONE; break;
        default: break;
        }
    }
    if (e) concord__envelope__free_unpacked(e, NULL);
    wire_in_clear(&in);
    return rc;
}

static void s_clients_usage(FILE *fp) {
    fprintf(fp,
            "Usage: concord-bench clients --endpoint E --keys DIR --clients K [options]\n"
            "A load generator for a real concord-coordinator: K enrolled clients in one process\n"
            "(one DEALER each, CURVE as configured). Each says Hello, and answers every training\n"
            "Task with a valid signed Update (the task's base digest, one small random Δ shared by\n"
            "all clients, hashed once) without training, asking for an upload grant first when\n"
            "the task says so, so the coordinator's own costs show:\n"
            "peak RSS, ingest, round overhead. Alignment (stats phases) must be off. Exits when\n"
            "every client got Done (or after --timeout).\n\n"
            "  --endpoint E      the coordinator's endpoint (tcp://127.0.0.1:PORT)\n"
            "  --keys DIR        DIR/PREFIX1.key .. DIR/PREFIXK.key and DIR/coordinator.pub\n"
            "                    (concord-sim --prepare-only writes such a directory)\n"
            "  --clients K       clients (default 8)\n"
            "  --prefix S        client id prefix (default site)\n"
            "  --inputs D        features per sample announced in Hello (= [model] inputs)\n"
            "  --classes C       classes announced in Hello (default 2)\n"
            "  --n-train N       training samples announced (default 1000)\n"
            "  --spread S        client k answers k/(K-1)·S seconds after its task (default 0)\n"
            "  --scale X         Δ values uniform in ±X (default 1e-4)\n"
            "  --no-curve        plain TCP (the coordinator's [security] curve = false)\n"
            "  --trust-tasks     do not hash the task's θ (decode its envelope only)\n"
            "  --io-threads N    ZeroMQ I/O threads shared by the K clients (default 2: K real\n"
            "                    hospitals each have one; a single one for all K would make the\n"
            "                    generator's CURVE decryption the round's bottleneck)\n"
            "  --timeout S       give up after S seconds (default 3600)\n"
            "  --json            last stdout line: one JSON object\n"
            "  --help\n");
}

int bench_cmd_clients(int argc, char **argv) {
    enum { O_ENDPOINT = 256, O_KEYS, O_CLIENTS, O_PREFIX, O_INPUTS, O_CLASSES, O_NTRAIN, O_SPREAD, O_SCALE,
           O_NOCURVE, O_TRUST, O_IO, O_TIMEOUT, O_JSON, O_HELP };
    static const struct option longopts[] = {
        {"endpoint", required_argument, 0, O_ENDPOINT}, {"keys", required_argument, 0, O_KEYS},
        {"clients", required_argument, 0, O_CLIENTS}, {"prefix", required_argument, 0, O_PREFIX},
        {"inputs", required_argument, 0, O_INPUTS}, {"classes", required_argument, 0, O_CLASSES},
        {"n-train", required_argument, 0, O_NTRAIN}, {"spread", required_argument, 0, O_SPREAD},
        {"scale", required_argument, 0, O_SCALE}, {"no-curve", no_argument, 0, O_NOCURVE},
        {"trust-tasks", no_argument, 0, O_TRUST}, {"io-threads", required_argument, 0, O_IO},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    s_lg_t g;
    memset(&g, 0, sizeof g);
    g.K = 8, g.n_train = 1000, g.classes = 2, g.scale = 1e-4, g.seed = 7;
    const char *endpoint = NULL, *keys = NULL, *prefix = "site";
    int curve = 1, json = 0, io_threads = 2, c;
    double timeout = 3600, v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_ENDPOINT: endpoint = optarg; break;
        case O_KEYS: keys = optarg; break;
        case O_CLIENTS:
            if (bench_num(optarg, 1, 1000, &v)) return bench_bad("clients", "--clients", optarg, "an integer in [1, 1000]");
            g.K = (size_t)v;
            break;
        case O_PREFIX: prefix = optarg; break;
        case O_INPUTS:
            if (bench_num(optarg, 1, 1 << 26, &v)) return bench_bad("clients", "--inputs", optarg, "an integer >= 1");
            g.inputs = (size_t)v;
            break;
        case O_CLASSES:
            if (bench_num(optarg, 2, 1 << 16, &v)) return bench_bad("clients", "--classes", optarg, "an integer >= 2");
            g.classes = (size_t)v;
            break;
        case O_NTRAIN:
            if (bench_num(optarg, 1, 1e12, &v)) return bench_bad("clients", "--n-train", optarg, "an integer >= 1");
            g.n_train = (size_t)v;
            break;
        case O_SPREAD:
            if (bench_num(optarg, 0, 1e5, &v)) return bench_bad("clients", "--spread", optarg, "seconds >= 0");
            g.spread = v;
            break;
        case O_SCALE:
            if (bench_num(optarg, 0, 1e6, &v)) return bench_bad("clients", "--scale", optarg, "a number >= 0");
            g.scale = v;
            break;
        case O_NOCURVE: curve = 0; break;
        case O_TRUST: g.trust_tasks = 1; break;
        case O_IO:
            if (bench_num(optarg, 1, 64, &v)) return bench_bad("clients", "--io-threads", optarg, "an integer in [1, 64]");
            io_threads = (int)v;
            break;
        case O_TIMEOUT:
            if (bench_num(optarg, 0.1, 1e7, &v)) return bench_bad("clients", "--timeout", optarg, "seconds > 0");
            timeout = v;
            break;
        case O_JSON: json = 1; break;
        case O_HELP: s_clients_usage(stdout); return 0;
        default: s_clients_usage(stderr); return 2;
        }
    }
    if (optind < argc || !endpoint || !keys || !g.inputs) {
        fprintf(stderr, "concord-bench clients: --endpoint, --keys and --inputs are required (see --help)\n");
        return 2;
    }
    cc_err_t err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/coordinator.pub", keys);
    if (identity_load_public(&g.coord, path, &err)) return fprintf(stderr, "concord-bench clients: %s\n", err.msg), 1;
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_IO_THREADS, io_threads);
    g.cl = cc_xcalloc(g.K, sizeof *g.cl);
    zmq_pollitem_t *items = cc_xcalloc(g.K, sizeof *items);
    for (size_t i = 0; i < g.K; i++) {
        s_lc_t *cl = &g.cl[i];
        snprintf(path, sizeof path, "%s/%s%zu.key", keys, prefix, i + 1);
        if (identity_load(&cl->self, path, &err)) return fprintf(stderr, "concord-bench clients: %s\n", err.msg), 1;
        cl->seq = (uint64_t)time(NULL) * 1000; /* above anything a previous run of this id used */
        cl->sock = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0;
        zmq_setsockopt(cl->sock, ZMQ_ROUTING_ID, cl->self.id, strlen(cl->self.id));
        zmq_setsockopt(cl->sock, ZMQ_LINGER, &linger, sizeof linger);
        if (curve && transport_curve_client(cl->sock, &cl->self, g.coord.curve_public))
            return fprintf(stderr, "concord-bench clients: CURVE set-up failed\n"), 1;
        if (zmq_connect(cl->sock, endpoint) != 0)
            return fprintf(stderr, "concord-bench clients: connect %s: %s\n", endpoint, zmq_strerror(errno)), 1;
        items[i].socket = cl->sock, items[i].events = ZMQ_POLLIN;
        s_lc_hello(&g, cl);
    }
    double t0 = cc_now(), last_hello = t0;
    size_t done = 0;
    int fatal = 0;
    while (done < g.K && !fatal && cc_now() - t0 < timeout) {
        double now = cc_now(), next = now + 0.2;
        for (size_t i = 0; i < g.K; i++)
            if (g.cl[i].pending && g.cl[i].due < next) next = g.cl[i].due;
        long ms = next > now ? (long)ceil((next - now) * 1000.0) : 0;
        if (zmq_poll(items, (int)g.K, ms) < 0 && errno != EINTR) break;
        for (size_t i = 0; i < g.K && !fatal; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            for (int burst = 0; burst < 16; burst++) {
                transport_msg_t m;
                if (transport_recv(g.cl[i].sock, 0, &m, ZMQ_DONTWAIT) != 0) break;
                if (s_lc_message(&g, i, &m) != 0) fatal = 1;
                transport_msg_close(&m);
                if (fatal) break;
            }
        }
        now = cc_now();
        for (size_t i = 0; i < g.K; i++)
            if (g.cl[i].pending && g.cl[i].due <= now) s_lc_due(&g, &g.cl[i]);
        if (now - last_hello > 2.0) { /* a Hello may have raced the connection, as in the real client */
            for (size_t i = 0; i < g.K; i++)
                if (g.cl[i].state == LC_HELLO_SENT) s_lc_hello(&g, &g.cl[i]);
            last_hello = now;
        }
        done = 0;
        for (size_t i = 0; i < g.K; i++) done += g.cl[i].state == LC_DONE;
    }
    size_t tasks = 0, updates = 0, acks = 0, nacks = 0;
    for (size_t i = 0; i < g.K; i++)
        tasks += g.cl[i].tasks, updates += g.cl[i].updates, acks += g.cl[i].acks, nacks += g.cl[i].nacks;
    double el = cc_now() - t0;
    printf("clients: %zu clients, P = %zu, %zu tasks, %zu updates, %zu acks, %zu nacks, %zu done, %.2f s, peak RSS %.1f MiB\n",
           g.K, g.P, tasks, updates, acks, nacks, done, el, (double)cc_peak_rss() / 1048576.0);
    if (json)
        bench_print_json(json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I}", "cmd", "clients", "clients",
                               (json_int_t)g.K, "params", (json_int_t)g.P, "tasks", (json_int_t)tasks, "updates",
                               (json_int_t)updates, "acks", (json_int_t)acks, "nacks", (json_int_t)nacks, "done",
                               (json_int_t)done, "seconds", el, "peak_rss_bytes", (json_int_t)cc_peak_rss()));
    for (size_t i = 0; i < g.K; i++) {
        zmq_close(g.cl[i].sock);
        identity_clear(&g.cl[i].self);
    }
    zmq_ctx_term(ctx);
    free(items), free(g.cl), free(g.delta);
    return done == g.K && !fatal && nacks == 0 ? 0 : 1;
}
