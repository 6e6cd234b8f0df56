/* ledger.c (coordinator) — the contribution ledger of DESIGN §7: after every committed
 * round, one coordinator-signed, hash-chained JSON line naming the model it produced and,
 * per hospital, the digest of the update used, its sample count, FedCE cosine and scores,
 * its weight and its alignment gaps, so a hospital can check what it was credited with
 * (`concord-coordinator verify-ledger`). A round's entry travels in its checkpoint and is
 * appended once the next round's tasks are out (rounds.c); a restart appends it if a crash
 * came first, and a round already in the ledger is never written twice. */
#include <math.h>
#include <string.h>

#include "coord.h"
#include "ledger.h"
#include "log.h"

static json_t *s_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *s_entry(const coord_t *c, const char *status, const double *weights) {
    char hex[2 * WIRE_DIGEST_BYTES + 1];
    wire_digest_hex(hex, c->digest);
    json_t *clients = json_object();
    for (size_t k = 0; k < c->n_updates; k++) {
        const coord_update_t *u = &c->updates[k];
        char uhex[2 * WIRE_DIGEST_BYTES + 1];
        wire_digest_hex(uhex, u->digest);
        size_t s = u->slot < c->n_clients ? u->slot : 0;
        json_t *cl = json_pack("{s:s, s:I, s:o}", "update_digest", uhex, "n_samples", (json_int_t)u->n_samples,
                               "weight", s_num(weights ? weights[k] : 0.0));
        json_object_set_new(cl, "cos", s_num(c->fedce ? c->fedce_cos[s] : NAN));
        json_object_set_new(cl, "a", s_num(c->fedce ? c->fedce_a[s] : NAN));
        json_object_set_new(cl, "b", s_num(c->fedce ? c->fedce_b[s] : NAN));
        json_object_set_new(cl, "gap_g", s_num(c->align_variants ? c->gap_g[s] : NAN));
        json_object_set_new(cl, "gap_d", s_num(c->align_variants ? c->gap_d[s] : NAN));
        json_object_set_new(clients, u->id, cl);
    }
    return json_pack("{s:I, s:s, s:s, s:s, s:o}", "round", (json_int_t)c->round, "status", status, "model_digest",
                     hex, "weighting", c->fedce ? "fedce" : "fedavg", "clients", clients);
}

json_t *coord_ledger_entry(const coord_t *c, const char *status, const double *weights) {
    return c->ledger_path && c->ledger_path[0] ? s_entry(c, status, weights) : NULL;
}

int coord_ledger_write(coord_t *c, uint64_t round, json_t *entry, int *appended, cc_err_t *err) {
    if (appended) *appended = 0;
    if (!c->ledger_path || !c->ledger_path[0] || !entry) return 0;
    ledger_head_t head;
    json_t *last = NULL;
    /* Only the first round committed after a start can find its entry written already. */
    if (!c->ledger_in_step && ledger_head(c->ledger_path, c->self.pk, &head, &last, err) == 0 && last) {
        json_int_t r = json_integer_value(json_object_get(last, "round"));
        json_decref(last);
        if (head.entries > 0 && r >= (json_int_t)round) { /* recorded before a crash */
            c->ledger_in_step = r == (json_int_t)round;
            return 0;
        }
    }
    int rc = ledger_append(c->ledger_path, &c->self, entry, err);
    c->ledger_in_step = rc == 0;
    if (appended) *appended = rc == 0;
    return rc;
}
