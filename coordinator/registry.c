/* registry.c — the coordinator's table of enrolled clients: one entry per enrolled key,
 * in enrolment order; an entry becomes `welcomed` when its Hello fits the model. */
#include <stdlib.h>
#include <string.h>

#include "coord.h"

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
