/* http.c — Prometheus metrics over HTTP (libmicrohttpd, its own thread). The handler only
 * reads counters the poll loop updates with relaxed atomics; it never touches the model. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "guard.h"
#include "log.h"
#include "ratelimit.h"

static struct MHD_Daemon *s_daemon;
static coord_t *s_coord;

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static size_t s_render(char *buf, size_t cap) {
    const coord_t *c = s_coord;
    size_t n = (size_t)snprintf(buf, cap,
        "# TYPE concord_round gauge\nconcord_round %llu\n"
        "# TYPE concord_rounds_done_total counter\nconcord_rounds_done_total %llu\n"
        "# TYPE concord_rounds_aborted_total counter\nconcord_rounds_aborted_total %llu\n"
        "# TYPE concord_updates_accepted_total counter\nconcord_updates_accepted_total %llu\n"
        "# TYPE concord_messages_received_total counter\nconcord_messages_received_total %llu\n"
        "# TYPE concord_zap_denied_total counter\nconcord_zap_denied_total %llu\n"
        "# TYPE concord_messages_rate_limited_total counter\nconcord_messages_rate_limited_total %llu\n"
        "# TYPE concord_upload_grants_total counter\nconcord_upload_grants_total %llu\n"
        "# TYPE concord_upload_grants_expired_total counter\nconcord_upload_grants_expired_total %llu\n"
        "# TYPE concord_uploads_waiting gauge\nconcord_uploads_waiting %llu\n"
        "# TYPE concord_connections_cut_total counter\nconcord_connections_cut_total %llu\n"
        "# TYPE concord_queue_warmups_received_total counter\nconcord_queue_warmups_received_total %llu\n"
        "# TYPE concord_in_time_rounds_total counter\nconcord_in_time_rounds_total %llu\n"
        "# TYPE concord_in_time_updates_total counter\nconcord_in_time_updates_total %llu\n"
        "# TYPE concord_messages_rejected_total counter\n",
        (unsigned long long)LOAD(c->round), (unsigned long long)LOAD(c->rounds_done),
        (unsigned long long)LOAD(c->rounds_aborted), (unsigned long long)LOAD(c->accepted_updates),
        (unsigned long long)LOAD(c->msgs_in), (unsigned long long)(c->zap ? zap_handler_denied(c->zap) : 0),
        (unsigned long long)ratelimit_dropped(c->limiter), (unsigned long long)LOAD(c->grants_given),
        (unsigned long long)LOAD(c->grants_expired), (unsigned long long)LOAD(c->grants_waiting),
        (unsigned long long)(c->guard ? guard_cut_total(c->guard) : 0), (unsigned long long)LOAD(c->warmups_received),
        (unsigned long long)LOAD(c->in_time_rounds), (unsigned long long)LOAD(c->in_time_updates));
    for (int r = 0; r < REJ_COUNT && n < cap; r++)
        n += (size_t)snprintf(buf + n, cap - n, "concord_messages_rejected_total{reason=\"%s\"} %llu\n",
                              coord_reject_name((coord_reject_t)r), (unsigned long long)LOAD(c->rejected[r]));
    return n < cap ? n : cap - 1;
}

static enum MHD_Result s_answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)cls, (void)version, (void)upload, (void)upload_size, (void)state;
    if (strcmp(method, "GET") != 0 || strcmp(url, "/metrics") != 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(10, (void *)"not found\n", MHD_RESPMEM_PERSISTENT);
        enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, r);
        MHD_destroy_response(r);
        return rc;
    }
    char *buf = cc_xmalloc(8192);
    size_t n = s_render(buf, 8192);
    struct MHD_Response *r = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

int coord_http_start(coord_t *c, const char *bind, cc_err_t *err) {
    const char *colon = strrchr(bind, ':');
    if (!colon) return cc_err_set(err, CC_ERR_ARG, "[metrics] http_bind: expected HOST:PORT, got \"%s\"", bind);
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535) return cc_err_set(err, CC_ERR_ARG, "[metrics] http_bind: bad port in \"%s\"", bind);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - bind), bind);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return cc_err_set(err, CC_ERR_ARG, "[metrics] http_bind: \"%s\" is not an IPv4 address", host);
    s_coord = c;
    s_daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, s_answer, NULL,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)16, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)5, MHD_OPTION_END);
    if (!s_daemon) return cc_err_set(err, CC_ERR_IO, "[metrics] cannot listen on %s", bind);
    return 0;
}

void coord_http_stop(void) {
    if (s_daemon) MHD_stop_daemon(s_daemon);
    s_daemon = NULL;
}
