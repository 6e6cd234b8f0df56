/* persist.c — the coordinator's durable state (DESIGN §7).
 *
 *  - Checkpoint (snapshot sections "meta" JSON, "params", "std_mean", "std_std"), written
 *    at every round transition; it is the commit point of a round (history lines of rounds
 *    it does not cover are dropped on restart).
 *  - Journal of the open round: an "open" record naming the participants, then one record
 *    per accepted update: u32 header length | header JSON | Δ (P float32). An Ack is sent
 *    only after the record is durable (JOURNAL-1), so a coordinator killed mid-round replays
 *    the accepted updates and asks only the missing clients. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "fileio.h"
#include "coord.h"
#include "log.h"
#include "snapshot.h"

static json_t *s_meta_json(const coord_t *c) {
    char arch[128], hex[2 * WIRE_DIGEST_BYTES + 1];
    model_spec_arch(&c->spec, arch, sizeof arch);
    wire_digest_hex(hex, c->digest);
    json_t *seqs = json_object();
    for (size_t i = 0; i < c->n_clients; i++)
        json_object_set_new(seqs, c->clients[i].id, json_integer((json_int_t)c->clients[i].last_seq));
    return json_pack("{s:I, s:I, s:I, s:s, s:I, s:I, s:s, s:o}", "round", (json_int_t)c->round,
                     "rounds_done", (json_int_t)c->rounds_done, "rounds_aborted",
                     (json_int_t)c->rounds_aborted, "arch", arch, "n_inputs",
                     (json_int_t)c->spec.n_inputs, "n_classes", (json_int_t)c->spec.n_classes,
                     "model_digest", hex, "last_seq", seqs);
}

int coord_checkpoint_save(coord_t *c, cc_err_t *err) {
    snapshot_t *s = snapshot_new();
    json_t *meta = s_meta_json(c);
    char *text = json_dumps(meta, JSON_COMPACT);
    snapshot_put(s, "meta", text, strlen(text));
    snapshot_put(s, "params", c->params, c->P * sizeof(float));
    if (c->std) {
        snapshot_put(s, "std_mean", c->std->mean, c->std->d * sizeof(float));
        snapshot_put(s, "std_std", c->std->std, c->std->d * sizeof(float));
    }
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
        c->rounds_done = (uint64_t)json_integer_value(json_object_get(meta, "rounds_done"));
        c->rounds_aborted = (uint64_t)json_integer_value(json_object_get(meta, "rounds_aborted"));
        json_t *seqs = json_object_get(meta, "last_seq");
        for (size_t i = 0; i < c->n_clients; i++)
            c->clients[i].last_seq = (uint64_t)json_integer_value(json_object_get(seqs, c->clients[i].id));
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

static int s_append(coord_t *c, json_t *hdr, const float *floats, size_t n, journal_record_t *rec,
                    cc_err_t *err) {
    char *text = json_dumps(hdr, JSON_COMPACT);
    uint32_t hlen = (uint32_t)strlen(text);
    const void *parts[3] = {&hlen, text, floats};
    size_t lens[3] = {sizeof hlen, hlen, n * sizeof(float)};
    journal_record_t tmp;
    int rc = journal_append(c->journal, parts, lens, floats ? 3 : 2, rec ? rec : &tmp, err);
    free(text);
    return rc;
}

int coord_journal_add_open(coord_t *c, cc_err_t *err) {
    json_t *ids = json_array();
    for (size_t i = 0; i < c->n_participants; i++) json_array_append_new(ids, json_string(c->participants[i]));
    json_t *hdr = json_pack("{s:s, s:I, s:o}", "type", "open", "round", (json_int_t)c->round, "participants", ids);
    int rc = s_append(c, hdr, NULL, 0, NULL, err);
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

int coord_journal_add_update(coord_t *c, const coord_update_t *u, const float *delta,
                             journal_record_t *rec, cc_err_t *err) {
    json_t *hdr = json_pack("{s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:o}", "type", "update", "client", u->id,
                            "seq", (json_int_t)coord_client_find(c, u->id)->last_seq, "n_samples",
                            (json_int_t)u->n_samples, "norm", u->update_norm, "train_seconds",
                            u->train_seconds, "arrival", u->arrival, "val", s_metrics_json(&u->val));
    if (u->has_test) json_object_set_new(hdr, "test", s_metrics_json(&u->test));
    int rc = s_append(c, hdr, delta, c->P, rec, err);
    json_decref(hdr);
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
        c->participants = cc_xrealloc(c->participants, (c->n_participants + 1) * sizeof *c->participants);
        for (size_t i = 0; i < c->n_participants; i++)
            snprintf(c->participants[i], sizeof c->participants[i], "%s",
                     json_string_value(json_array_get(ids, i)) ? json_string_value(json_array_get(ids, i)) : "");
    } else if (type && strcmp(type, "update") == 0) {
        coord_update_t *u = &c->updates[c->n_updates];
        memset(u, 0, sizeof *u);
        const char *id = json_string_value(json_object_get(hdr, "client"));
        snprintf(u->id, sizeof u->id, "%s", id ? id : "");
        u->rec = *rec;
        u->n_samples = (uint64_t)json_integer_value(json_object_get(hdr, "n_samples"));
        u->update_norm = json_real_value(json_object_get(hdr, "norm"));
        u->train_seconds = json_real_value(json_object_get(hdr, "train_seconds"));
        u->arrival = json_real_value(json_object_get(hdr, "arrival"));
        s_metrics_from_json(json_object_get(hdr, "val"), &u->val);
        u->has_test = json_object_get(hdr, "test") != NULL;
        if (u->has_test) s_metrics_from_json(json_object_get(hdr, "test"), &u->test);
        coord_client_t *cl = coord_client_find(c, u->id);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(hdr, "seq"));
        if (cl && seq > cl->last_seq) cl->last_seq = seq;
        if (cl) c->n_updates++;
    }
    json_decref(hdr);
    return 0;
}

int coord_journal_open_round(coord_t *c, int replay, cc_err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/round.journal", c->state_dir);
    journal_close(&c->journal);
    journal_replay_t rep = {0};
    int rc = journal_open(path, c->round, &c->journal, replay ? &rep : NULL, err);
    if (rc) return rc;
    c->n_updates = 0;
    c->n_participants = 0;
    if (!replay) return journal_reset(c->journal, c->round, err);
    if (rep.truncated)
        cc_log_warn("journal_truncated", "path=%s round=%llu action=\"cut off the partial last record\"",
                    path, (unsigned long long)c->round);
    for (size_t i = 0; i < rep.n && rc == 0; i++) rc = s_replay_record(c, &rep.records[i], err);
    if (rep.n)
        cc_log_info("journal_replayed", "round=%llu participants=%zu updates=%zu", (unsigned long long)c->round,
                    c->n_participants, c->n_updates);
    journal_replay_free(&rep);
    return rc;
}

int coord_export(coord_t *c, cc_err_t *err) {
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
    c->seq_reserved = c->seq + SEQ_BLOCK;
    int n = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)c->seq_reserved);
    return fileio_write_atomic(path, buf, (size_t)n, err);
}
