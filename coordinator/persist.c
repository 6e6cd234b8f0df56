/* persist.c — the coordinator's durable state (DESIGN §7).
 *
 *  - Checkpoint (snapshot sections "meta" JSON, "params", "std_mean", "std_std", and with
 *    minus_model = coordinator "minus_meta", "minus": the FedCE minus models), written
 *    at every round transition; it is the commit point of a round. Its meta carries the
 *    committed round's history line and ledger entry, appended to their files after the
 *    next round's tasks have left; a restart appends whichever the files lack and drops
 *    history lines of rounds the checkpoint does not cover.
 *  - Journal of the open round: an "open" record naming the participants, then one record
 *    per accepted update: u32 header length | header JSON | zero run (a hole) | Δ (P float32,
 *    at a 2 MiB-aligned file offset, which the close maps: wsum.h). An Ack is sent
 *    only after the record is durable (JOURNAL-1), so a coordinator killed mid-round replays
 *    the accepted updates and asks only the missing clients. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "fileio.h"
#include "coord.h"
#include "fedce.h"
#include "log.h"
#include "snapshot.h"
#include "wsum.h"

static json_t *s_meta_json(const coord_t *c) {
    char arch[128], hex[2 * WIRE_DIGEST_BYTES + 1];
    model_spec_arch(&c->spec, arch, sizeof arch);
    wire_digest_hex(hex, c->digest);
    json_t *seqs = json_object();
    for (size_t i = 0; i < c->n_clients; i++)
        json_object_set_new(seqs, c->clients[i].id, json_integer((json_int_t)c->clients[i].last_seq));
    json_t *fedce = json_object();
    const fedce_client_t *reg = c->fedce_reg;
    for (size_t i = 0; i < c->n_clients; i++)
        json_object_set_new(fedce, c->clients[i].id,
                            json_pack("{s:f, s:b, s:f, s:I, s:I}", "coef", reg[i].coef, "seen", reg[i].seen, "cos_sum",
                                      reg[i].cos.sum, "cos_n", (json_int_t)reg[i].cos.n, "round",
                                      (json_int_t)c->fedce_round[i]));
    json_t *meta = json_pack("{s:I, s:I, s:I, s:s, s:I, s:I, s:s, s:o}", "round", (json_int_t)c->round,
                     "rounds_done", (json_int_t)c->rounds_done, "rounds_aborted",
                     (json_int_t)c->rounds_aborted, "arch", arch, "n_inputs",
                     (json_int_t)c->spec.n_inputs, "n_classes", (json_int_t)c->spec.n_classes,
                     "model_digest", hex, "last_seq", seqs);
    json_object_set_new(meta, "fedce", fedce);
    /* The history line and ledger entry of the round this checkpoint commits (rounds.c). */
    if (c->committed_line) json_object_set_new(meta, "history_line", json_string(c->committed_line));
    if (c->committed_entry) json_object_set(meta, "ledger_entry", c->committed_entry);
    return meta;
}

int coord_checkpoint_save(coord_t *c, cc_err_t *err) {
    if (c->params_in_time) return cc_err_set(err, CC_ERR_ARG, "checkpoint: θ is a sum in progress (intime.c)");
    snapshot_t *s = snapshot_new();
    json_t *meta = s_meta_json(c);
    char *text = json_dumps(meta, JSON_COMPACT);
    snapshot_put(s, "meta", text, strlen(text));
    snapshot_put(s, "params", c->params, c->P * sizeof(float));
    if (c->std) {
        snapshot_put(s, "std_mean", c->std->mean, c->std->d * sizeof(float));
        snapshot_put(s, "std_std", c->std->std, c->std->d * sizeof(float));
    }
    if (c->fedce && c->fedce_minus) coord_minus_save(c, s); /* tasks resent after a restart carry the same θ⁻_k */
    int rc = snapshot_dir_save(c->state_dir, c->round, s, c->keep_checkpoints, err);
    free(text);
    json_decref(meta);
    snapshot_destroy(&s);
    return rc;
}

static void s_on_skip(void *ctx, const char *path, const cc_err_t *why) {
    (void)ctx;
    cc_log_warn("checkpoint_skipped", "path=%s reason=\"%s\" action=\"trying the previous one\"", path, why->msg);
}

/* Restores the meta fields; the spec must be the one in the config. */
static int s_restore_meta(coord_t *c, const char *text, size_t len, cc_err_t *err) {
    json_error_t jerr;
    json_t *meta = json_loadb(text, len, 0, &jerr);
    char arch[128];
    model_spec_arch(&c->spec, arch, sizeof arch);
    const char *saved_arch = meta ? json_string_value(json_object_get(meta, "arch")) : NULL;
    int rc = 0;
    if (!meta || !saved_arch) {
        rc = cc_err_set(err, CC_ERR_CORRUPT, "checkpoint meta is not valid JSON");
    } else if (strcmp(saved_arch, arch) != 0 ||
               json_integer_value(json_object_get(meta, "n_inputs")) != c->spec.n_inputs ||
               json_integer_value(json_object_get(meta, "n_classes")) != c->spec.n_classes) {
        rc = cc_err_set(err, CC_ERR_ARG, "the state dir %s holds a %s model, the config asks for %s: "
                        "use another state_dir or the same model", c->state_dir, saved_arch, arch);
    } else {
        c->round = (uint64_t)json_integer_value(json_object_get(meta, "round"));
        coord_drop_committed(c);
        const char *line = json_string_value(json_object_get(meta, "history_line"));
        if (line) c->committed_line = cc_xstrdup(line);
        json_t *entry = json_object_get(meta, "ledger_entry");
        if (json_is_object(entry)) c->committed_entry = json_incref(entry);
        c->rounds_done = (uint64_t)json_integer_value(json_object_get(meta, "rounds_done"));
        c->rounds_aborted = (uint64_t)json_integer_value(json_object_get(meta, "rounds_aborted"));
        json_t *seqs = json_object_get(meta, "last_seq"), *fedce = json_object_get(meta, "fedce");
        fedce_client_t *reg = c->fedce_reg;
        for (size_t i = 0; i < c->n_clients; i++) {
            c->clients[i].last_seq = (uint64_t)json_integer_value(json_object_get(seqs, c->clients[i].id));
            json_t *f = json_object_get(fedce, c->clients[i].id);
            if (!f) continue;
            reg[i].coef = json_real_value(json_object_get(f, "coef"));
            reg[i].seen = json_is_true(json_object_get(f, "seen"));
            reg[i].cos.sum = json_real_value(json_object_get(f, "cos_sum"));
            reg[i].cos.n = (uint64_t)json_integer_value(json_object_get(f, "cos_n"));
            c->fedce_round[i] = (int64_t)json_integer_value(json_object_get(f, "round"));
        }
    }
    json_decref(meta);
    return rc;
}

int coord_checkpoint_load(coord_t *c, cc_err_t *err) {
    snapshot_t *s = NULL;
    uint64_t round = 0;
    int rc = snapshot_dir_load(c->state_dir, &s, &round, s_on_skip, c, err);
    if (rc) return rc; /* 1: fresh start */
    size_t len = 0, plen = 0, mlen = 0, slen = 0;
    const char *meta = snapshot_get(s, "meta", &len);
    const void *params = snapshot_get(s, "params", &plen);
    const void *mean = snapshot_get(s, "std_mean", &mlen), *sd = snapshot_get(s, "std_std", &slen);
    if (!meta || !params || plen != c->P * sizeof(float))
        rc = cc_err_set(err, CC_ERR_CORRUPT, "checkpoint of round %llu lacks meta or params of %zu floats",
                        (unsigned long long)round, c->P);
    if (!rc) rc = s_restore_meta(c, meta, len, err);
    if (!rc && c->fedce && c->fedce_minus) rc = coord_minus_load(c, s, err);
    if (!rc) {
        memcpy(c->params, params, plen);
        wire_digest_floats(c->digest, c->params, c->P);
        if (mean && sd && mlen == slen && mlen == (size_t)c->spec.n_inputs * sizeof(float)) {
            c->std = standardizer_new((size_t)c->spec.n_inputs);
            memcpy(c->std->mean, mean, mlen);
            memcpy(c->std->std, sd, slen);
        }
    }
    snapshot_destroy(&s);
    return rc;
}

int coord_checkpoint_params(coord_t *c, float *out, cc_err_t *err) {
    snapshot_t *s = NULL;
    uint64_t round = 0;
    int rc = snapshot_dir_load(c->state_dir, &s, &round, s_on_skip, c, err);
    if (rc == 1) return cc_err_set(err, CC_ERR_IO, "%s: no checkpoint holds θ_t", c->state_dir);
    if (rc) return rc;
    size_t plen = 0;
    const void *params = snapshot_get(s, "params", &plen);
    uint8_t digest[WIRE_DIGEST_BYTES];
    if (!params || plen != c->P * sizeof(float)) {
        rc = cc_err_set(err, CC_ERR_CORRUPT, "checkpoint of round %llu lacks params of %zu floats", (unsigned long long)round, c->P);
    } else {
        wire_digest_floats(digest, params, c->P);
        if (memcmp(digest, c->digest, sizeof digest) != 0)
            rc = cc_err_set(err, CC_ERR_CORRUPT, "checkpoint of round %llu holds another model than round %llu's",
                            (unsigned long long)round, (unsigned long long)c->round);
        else memcpy(out, params, plen);
    }
    snapshot_destroy(&s);
    return rc;
}

/* A crash between a round's commit and the appends of its history line and ledger entry
 * leaves them only in the checkpoint: append whichever the files lack. */
int coord_restore_committed(coord_t *c, int64_t last_history_round, cc_err_t *err) {
    int rc = 0;
    if (c->round > 0 && c->committed_line && last_history_round < (int64_t)c->round - 1) {
        if (coord_history_write(c, c->committed_line) != 0)
            rc = cc_err_set(err, CC_ERR_IO, "%s: cannot append round %llu's line from the checkpoint", c->history_path,
                            (unsigned long long)(c->round - 1));
        else
            cc_log_info("history_line_restored", "round=%llu path=%s", (unsigned long long)(c->round - 1), c->history_path);
    }
    if (!rc && c->round > 0 && c->committed_entry) {
        int appended;
        rc = coord_ledger_write(c, c->round - 1, c->committed_entry, &appended, err);
        if (appended)
            cc_log_info("ledger_entry_restored", "round=%llu path=%s", (unsigned long long)(c->round - 1), c->ledger_path);
    }
    coord_drop_committed(c);
    return rc;
}

/* Appends u32 header length | JSON header | zero run | floats, the floats 2 MiB-aligned in
 * the file (wsum.h: the close maps them). floats_digest (may be NULL) is the BLAKE2b-256 of
 * the floats, already verified, so the journal does not hash them again. */
static int s_append(coord_t *c, json_t *hdr, const void *floats, size_t n, const uint8_t *floats_digest,
                    journal_record_t *rec, cc_err_t *err) {
    char *text = json_dumps(hdr, JSON_COMPACT);
    int rc = wsum_record_append(c->journal, text, floats, n, floats_digest, rec, err);
    free(text);
    return rc;
}

int coord_journal_add_open(coord_t *c, cc_err_t *err) {
    json_t *ids = json_array();
    for (size_t i = 0; i < c->n_participants; i++) json_array_append_new(ids, json_string(c->participants[i]));
    json_t *hdr = json_pack("{s:s, s:I, s:o}", "type", "open", "round", (json_int_t)c->round, "participants", ids);
    int rc = s_append(c, hdr, NULL, 0, NULL, NULL, err);
    rc = rc ? rc : journal_sync(c->journal, err); /* durable before any task leaves */
    json_decref(hdr);
    return rc;
}

static json_t *s_metrics_json(const Concord__Metrics *m) {
    return json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)m->n, "loss", m->loss, "accuracy",
                     m->accuracy, "balanced_accuracy", m->balanced_accuracy, "macro_f1", m->macro_f1);
}

static void s_metrics_from_json(json_t *j, Concord__Metrics *m) {
    concord__metrics__init(m);
    m->n = (uint64_t)json_integer_value(json_object_get(j, "n"));
    m->loss = json_real_value(json_object_get(j, "loss"));
    m->accuracy = json_real_value(json_object_get(j, "accuracy"));
    m->balanced_accuracy = json_real_value(json_object_get(j, "balanced_accuracy"));
    m->macro_f1 = json_real_value(json_object_get(j, "macro_f1"));
}

int coord_journal_add_update(coord_t *c, const coord_update_t *u, const void *vectors, size_t n_vectors,
                             const uint8_t *vectors_digest, journal_record_t *rec, cc_err_t *err) {
    char dhex[2 * WIRE_DIGEST_BYTES + 1];
    wire_digest_hex(dhex, u->digest);
    json_t *hdr = json_pack("{s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:o, s:I, s:f, s:b, s:I}", "type", "update",
                            "digest", dhex,
                            "client", u->id, "seq", (json_int_t)coord_client_find(c, u->id)->last_seq, "n_samples",
                            (json_int_t)u->n_samples, "norm", u->update_norm, "train_seconds", u->train_seconds,
                            "arrival", u->arrival, "val", s_metrics_json(&u->val), "vectors", (json_int_t)n_vectors,
                            "data_score", u->data_score, "has_score", u->has_score, "upload_bytes",
                            (json_int_t)u->upload_bytes);
    if (u->has_test) json_object_set_new(hdr, "test", s_metrics_json(&u->test));
    int rc = s_append(c, hdr, vectors, n_vectors * c->P, vectors_digest, rec, err);
    json_decref(hdr);
    return rc;
}

static json_t *s_doubles(const double *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, isfinite(v[i]) ? json_real(v[i]) : json_null());
    return a;
}

int coord_journal_add_targets(coord_t *c, cc_err_t *err) {
    json_t *n = json_array();
    for (size_t i = 0; i < c->n_participants; i++) json_array_append_new(n, json_integer((json_int_t)c->stat_n[i]));
    json_t *hdr = json_pack("{s:s, s:o, s:o, s:o}", "type", "targets", "gap_g", s_doubles(c->gap_g, c->n_participants),
                            "gap_d", s_doubles(c->gap_d, c->n_participants), "stat_n", n);
    float *t = cc_xalloc_floats(3 * c->L);
    memcpy(t, c->target_g, c->L * sizeof(float));
    memcpy(t + c->L, c->target_D, c->L * sizeof(float));
    memcpy(t + 2 * c->L, c->target_Hg, c->L * sizeof(float));
    int rc = s_append(c, hdr, t, 3 * c->L, NULL, NULL, err);
    rc = rc ? rc : journal_sync(c->journal, err); /* durable before the training tasks leave */
    free(t);
    json_decref(hdr);
    return rc;
}

static void s_replay_targets(coord_t *c, json_t *hdr, const journal_record_t *rec, size_t hlen, cc_err_t *err) {
    json_t *gg = json_object_get(hdr, "gap_g"), *gd = json_object_get(hdr, "gap_d");
    for (size_t i = 0; i < c->n_participants; i++) {
        json_t *a = json_array_get(gg, i), *b = json_array_get(gd, i);
        c->gap_g[i] = json_is_number(a) ? json_number_value(a) : NAN;
        c->gap_d[i] = json_is_number(b) ? json_number_value(b) : NAN;
    }
    size_t from = wsum_record_floats(rec, (uint32_t)hlen);
    if (from + 3 * c->L * sizeof(float) == rec->length &&
        journal_read(c->journal, rec, from, c->target_g, c->L * sizeof(float), err) == 0 &&
        journal_read(c->journal, rec, from + c->L * sizeof(float), c->target_D, c->L * sizeof(float), err) == 0 &&
        journal_read(c->journal, rec, from + 2 * c->L * sizeof(float), c->target_Hg, c->L * sizeof(float), err) == 0)
        c->targets_ready = 1;
}

/* Refills the update's row of U (FedCE) from the journal: Δ̃, or in federation mode the
 * sum of its per-class parts. */
static int s_replay_row(coord_t *c, const coord_update_t *u, size_t hlen, size_t n_vec, cc_err_t *err) {
    if (!c->U || u->slot == SIZE_MAX) return 0;
    float *row = c->U + u->slot * c->P, *buf = cc_xalloc_floats(c->P);
    memset(row, 0, c->P * sizeof(float));
    int rc = 0;
    for (size_t v = 0; v < n_vec && !rc; v++) {
        rc = journal_read(c->journal, &u->rec, wsum_record_floats(&u->rec, (uint32_t)hlen) + v * c->P * sizeof(float),
                          buf, c->P * sizeof(float), err);
        for (size_t i = 0; !rc && i < c->P; i++) row[i] += buf[i];
    }
    free(buf);
    return rc;
}

/* Rebuilds participants and updates of the open round from one journal record. */
static int s_replay_record(coord_t *c, const journal_record_t *rec, cc_err_t *err) {
    uint32_t hlen;
    int rc = journal_read(c->journal, rec, 0, &hlen, sizeof hlen, err);
    if (rc) return rc;
    if (hlen > rec->length - sizeof hlen) return cc_err_set(err, CC_ERR_CORRUPT, "journal: bad header length");
    char *text = cc_xmalloc(hlen + 1);
    rc = journal_read(c->journal, rec, sizeof hlen, text, hlen, err);
    json_t *hdr = rc ? NULL : json_loadb(text, hlen, 0, NULL);
    free(text);
    if (rc) return rc;
    if (!hdr) return cc_err_set(err, CC_ERR_CORRUPT, "journal: record header is not JSON");
    const char *type = json_string_value(json_object_get(hdr, "type"));
    if (type && strcmp(type, "open") == 0) {
        json_t *ids = json_object_get(hdr, "participants");
        c->n_participants = json_array_size(ids);
        if (c->n_participants > c->n_clients) return json_decref(hdr), cc_err_set(err, CC_ERR_CORRUPT, "journal: more participants than enrolled clients");
        for (size_t i = 0; i < c->n_participants; i++)
            snprintf(c->participants[i], sizeof c->participants[i], "%s",
                     json_string_value(json_array_get(ids, i)) ? json_string_value(json_array_get(ids, i)) : "");
    } else if (type && strcmp(type, "targets") == 0) {
        s_replay_targets(c, hdr, rec, hlen, err);
    } else if (type && strcmp(type, "update") == 0 && c->n_updates < c->n_clients) {
        coord_update_t *u = &c->updates[c->n_updates];
        memset(u, 0, sizeof *u);
        const char *id = json_string_value(json_object_get(hdr, "client"));
        snprintf(u->id, sizeof u->id, "%s", id ? id : "");
        u->rec = *rec;
        u->slot = coord_slot(c, u->id);
        u->n_samples = (uint64_t)json_integer_value(json_object_get(hdr, "n_samples"));
        u->update_norm = json_real_value(json_object_get(hdr, "norm"));
        u->train_seconds = json_real_value(json_object_get(hdr, "train_seconds"));
        u->arrival = json_real_value(json_object_get(hdr, "arrival"));
        u->data_score = json_real_value(json_object_get(hdr, "data_score"));
        u->has_score = json_is_true(json_object_get(hdr, "has_score"));
        u->upload_bytes = (uint64_t)json_integer_value(json_object_get(hdr, "upload_bytes"));
        const char *dhex = json_string_value(json_object_get(hdr, "digest"));
        if (dhex && strlen(dhex) == 2 * WIRE_DIGEST_BYTES)
            for (size_t i = 0; i < WIRE_DIGEST_BYTES; i++) sscanf(dhex + 2 * i, "%2hhx", &u->digest[i]);
        s_metrics_from_json(json_object_get(hdr, "val"), &u->val);
        u->has_test = json_object_get(hdr, "test") != NULL;
        if (u->has_test) s_metrics_from_json(json_object_get(hdr, "test"), &u->test);
        coord_client_t *cl = coord_client_find(c, u->id);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(hdr, "seq"));
        size_t n_vec = (size_t)json_integer_value(json_object_get(hdr, "vectors"));
        if (cl && seq > cl->last_seq) cl->last_seq = seq;
        if (cl && u->slot != SIZE_MAX) {
            rc = s_replay_row(c, u, hlen, n_vec ? n_vec : 1, err);
            c->n_updates++;
            if (!rc) coord_gram_add(c, u->slot);
        }
    }
    json_decref(hdr);
    return rc;
}

int coord_journal_open_round(coord_t *c, int replay, cc_err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/round.journal", c->state_dir);
    if (!replay && c->journal) { /* the next round: reset the open journal (synced with its open record) */
        c->n_updates = c->n_acked = 0;
        c->n_participants = 0;
        return journal_reset(c->journal, c->round, err);
    }
    journal_close(&c->journal);
    journal_replay_t rep = {0};
    int rc = journal_open(path, c->round, &c->journal, replay ? &rep : NULL, err);
    if (rc) return rc;
    journal_defer_sync(c->journal, 1); /* group commit: coord_flush_acks syncs before Acking */
    c->n_updates = c->n_acked = 0;
    c->n_participants = 0;
    if (!replay) return journal_reset(c->journal, c->round, err);
    if (rep.truncated)
        cc_log_warn("journal_truncated", "path=%s round=%llu action=\"cut off the partial last record\"",
                    path, (unsigned long long)c->round);
    for (size_t i = 0; i < rep.n && rc == 0; i++) rc = s_replay_record(c, &rep.records[i], err);
    c->n_acked = c->n_updates; /* replayed: durable; their senders were (or are) told in their session */
    if (rep.n)
        cc_log_info("journal_replayed", "round=%llu participants=%zu updates=%zu", (unsigned long long)c->round,
                    c->n_participants, c->n_updates);
    journal_replay_free(&rep);
    return rc;
}

int coord_export(coord_t *c, cc_err_t *err) {
    if (c->params_in_time) return cc_err_set(err, CC_ERR_ARG, "export: θ is a sum in progress (intime.c)");
    model_t *m = model_new(&c->spec, err);
    if (!m) return CC_ERR_ARG;
    memcpy(m->params, c->params, c->P * sizeof(float));
    char path[4096];
    json_t *meta = json_pack("{s:I, s:s}", "rounds", (json_int_t)c->round, "trained_by", "concord-coordinator");
    snprintf(path, sizeof path, "%s.ckpt", c->export_prefix);
    int rc = checkpoint_save(path, m, c->std, meta, err);
    snprintf(path, sizeof path, "%s.safetensors", c->export_prefix);
    if (!rc) rc = checkpoint_export_safetensors(path, m, c->std, err);
    json_decref(meta);
    model_destroy(&m);
    return rc;
}

#define SEQ_BLOCK 1000000ULL

int coord_seq_reserve(coord_t *c, cc_err_t *err) {
    if (c->seq + 1 < c->seq_reserved) return 0;
    char path[4096], *text = NULL, buf[64];
    size_t len;
    snprintf(path, sizeof path, "%s/coordinator.seq", c->state_dir);
    if (c->seq_reserved == 0 && fileio_read_all(path, 64, &text, &len, NULL) == 0) {
        c->seq = strtoull(text, NULL, 10); /* everything below may have been used */
        free(text);
    }
    uint64_t reserved = c->seq + SEQ_BLOCK;
    int n = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)reserved);
    int rc = fileio_write_atomic(path, buf, (size_t)n, err);
    if (rc == 0) c->seq_reserved = reserved; /* else the old block stands, on disk and here (FILEIO-3) */
    return rc;
}

void coord_archive_update(coord_t *c, const char *id, const void *delta) {
    char dir[4096], path[4200];
    cc_err_t err = {0};
    snprintf(dir, sizeof dir, "%s/updates", c->state_dir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/updates/round-%06llu", c->state_dir, (unsigned long long)c->round);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, id);
    model_t *m = model_new(&c->spec, &err);
    if (m) {
        memcpy(m->params, delta, c->P * sizeof(float));
        if (checkpoint_export_safetensors(path, m, NULL, &err) != 0) m->n_params = 0;
    }
    if (!m || m->n_params == 0) cc_log_warn("archive_failed", "client=%s reason=\"%s\"", id, err.msg);
    model_destroy(&m);
}
