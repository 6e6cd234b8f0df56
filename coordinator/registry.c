/* registry.c — the coordinator's table of enrolled clients: one entry per enrolled key,
 * in enrolment order; an entry becomes `welcomed` when its Hello fits the model. */
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"

void coord_clients_init(coord_t *c) {
    c->n_clients = c->enrolment->n;
    c->clients = cc_xcalloc(c->n_clients ? c->n_clients : 1, sizeof *c->clients);
    for (size_t i = 0; i < c->n_clients; i++)
        snprintf(c->clients[i].id, sizeof c->clients[i].id, "%s", c->enrolment->keys[i].id);
}

void coord_clients_free(coord_t *c) {
    for (size_t i = 0; i < c->n_clients; i++) {
        free(c->clients[i].class_counts);
        feature_stats_destroy(&c->clients[i].stats);
    }
    free(c->clients);
    c->clients = NULL;
    c->n_clients = 0;
}

coord_client_t *coord_client_find(coord_t *c, const char *id) {
    for (size_t i = 0; i < c->n_clients; i++)
        if (strcmp(c->clients[i].id, id) == 0) return &c->clients[i];
    return NULL;
}

size_t coord_clients_welcomed(const coord_t *c) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_clients; i++) n += c->clients[i].welcomed;
    return n;
}

void coord_reload_enrolment(coord_t *c) {
    enrolment_t *fresh = NULL;
    cc_err_t err = {0};
    if (enrolment_load(c->enrolment_path, &fresh, &err) != 0) {
        cc_log_error("enrolment_reload_failed", "reason=\"%s\" action=\"keeping the current enrolment\"", err.msg);
        return;
    }
    for (size_t i = 0; i < c->n_clients; i++) {
        coord_client_t *cl = &c->clients[i];
        const identity_public_t *now = enrolment_find(fresh, cl->id), *before = enrolment_find(c->enrolment, cl->id);
        if (!now && before) {
            cl->welcomed = 0;
            cc_log_warn("client_revoked", "client=%s action=\"messages and connections refused from now on\"", cl->id);
        } else if (now && before && memcmp(now->pk, before->pk, sizeof now->pk) != 0) {
            cl->welcomed = 0; /* the new key says Hello again */
            cc_log_info("client_key_rotated", "client=%s action=\"history kept; the new key must say Hello\"", cl->id);
        }
    }
    for (size_t i = 0; i < fresh->n; i++)
        if (!coord_client_find(c, fresh->keys[i].id))
            cc_log_warn("client_needs_restart", "client=%s reason=\"new hospitals join after a coordinator restart\"",
                        fresh->keys[i].id);
    if (c->zap) zap_handler_set_enrolment(c->zap, fresh);
    enrolment_destroy(&c->enrolment);
    c->enrolment = fresh;
    cc_log_info("enrolment_reloaded", "path=%s enrolled=%zu", c->enrolment_path, fresh->n);
}
