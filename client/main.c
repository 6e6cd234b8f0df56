/* main.c — concord-client: the hospital's daemon. Loads its data, connects out to the
 * coordinator (it opens no port), and answers tasks until the federation is done.
 *
 *   concord-client --config client.ini [--set section.key=value ...] */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "client.h"
#include "log.h"

static volatile sig_atomic_t s_signal;
static void s_on_signal(int sig) { s_signal = sig; }

static void s_declare(config_t *cfg) {
    config_declare(cfg, "client.id", NULL, "this hospital's id (as enrolled)");
    config_declare(cfg, "client.data", NULL, "training data file (FANN, CSV or IDX)");
    config_declare(cfg, "client.labels", "", "IDX labels of data");
    config_declare(cfg, "client.test_data", "", "local test file (optional)");
    config_declare(cfg, "client.test_labels", "", "IDX labels of test_data");
    config_declare(cfg, "client.val_frac", "0.1", "stratified validation share of the training file");
    config_declare(cfg, "client.state_dir", "client-state", "sequence numbers and progress");
    config_declare(cfg, "client.label_column", "", "CSV label column (default \"label\", else the last)");
    config_declare(cfg, "coordinator.endpoint", "tcp://127.0.0.1:7700", "the coordinator's ZeroMQ endpoint");
    config_declare(cfg, "coordinator.public_key", "coordinator.pub", "the coordinator's public key file (pinned)");
    config_declare(cfg, "security.identity", NULL, "this hospital's secret key file");
    config_declare(cfg, "security.curve", "true", "CURVE encryption (must match the coordinator)");
    config_declare(cfg, "training.threads", "1", "OpenBLAS threads for local training");
    config_declare(cfg, "network.heartbeat_s", "5", "heartbeat period; 3 missed answers mean reconnect");
    config_declare(cfg, "network.reconnect_min_ms", "200", "first reconnect delay");
    config_declare(cfg, "network.reconnect_max_ms", "10000", "reconnect delay cap (doubling)");
}

static void s_usage(FILE *fp) {
    fprintf(fp,
        "Usage: concord-client --config FILE [options]\n"
        "A hospital's node: trains on local data, sends only signed model updates.\n\n"
        "  --config FILE         INI configuration (see docs/configuration.md)\n"
        "  --set SECTION.KEY=V   override one configuration key (repeatable)\n"
        "  --id ID               = --set client.id=ID\n"
        "  --data FILE           = --set client.data=FILE\n"
        "  --coordinator EP      = --set coordinator.endpoint=EP\n"
        "  --state-dir DIR       = --set client.state_dir=DIR\n"
        "  --print-config        print every key with its value and exit\n"
        "  --help, --version\n"
        "Testing:\n"
        "  --test-stop-at-round N  stop this process (SIGSTOP) at its first task of round N or later, so a\n"
        "                        test can kill or resume it at a known point of the round\n"
        "  --test-byzantine MODE  send a corrupted but correctly signed update every round:\n"
        "                        sign_flip (-Δ), scale (100·Δ) or random (Gaussian, same norm)\n"
        "  --test-flood MODES[:RATE]  never say Hello; flood the coordinator with RATE messages per\n"
        "                        second (default 2000) of each of MODES, a comma list of garbage,\n"
        "                        replay, oversize, connect, parts (client/flood.c; tests/flood.sh)\n");
}

/* Parses the command line into c->cfg and c's test switches (two passes, see config.h).
 * Returns -1 to continue or an exit code. */
static int s_parse_args(client_t *c, int argc, char **argv, int *print_config) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"id", required_argument, 0, 'i'},     {"data", required_argument, 0, 'd'},
        {"coordinator", required_argument, 0, 'e'}, {"state-dir", required_argument, 0, 't'},
        {"print-config", no_argument, 0, 'p'}, {"help", no_argument, 0, 'h'},
        {"test-stop-at-round", required_argument, 0, 'S'}, {"test-byzantine", required_argument, 0, 'B'},
        {"test-flood", required_argument, 0, 'F'},
        {"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};
    cc_err_t err = {0};
    int ch, rc = config_load_from_args(c->cfg, argc, argv, opts, &err); /* pass 1: the files */
    while (rc == 0 && (ch = getopt_long(argc, argv, CONFIG_SHORTOPTS, opts, NULL)) != -1) {
        switch (ch) {
        case 'c': break;
        case 's': rc = config_set_assignment(c->cfg, optarg, &err); break;
        case 'i': rc = config_set(c->cfg, "client.id", optarg, "--id", &err); break;
        case 'd': rc = config_set(c->cfg, "client.data", optarg, "--data", &err); break;
        case 'e': rc = config_set(c->cfg, "coordinator.endpoint", optarg, "--coordinator", &err); break;
        case 't': rc = config_set(c->cfg, "client.state_dir", optarg, "--state-dir", &err); break;
        case 'p': *print_config = 1; break;
        case 'S': c->test_stop_at_round = strtoll(optarg, NULL, 10); break;
        case 'B':
            if (strcmp(optarg, "sign_flip") == 0) c->byzantine = 1;
            else if (strcmp(optarg, "scale") == 0) c->byzantine = 2;
            else if (strcmp(optarg, "random") == 0) c->byzantine = 3;
            else {
                fprintf(stderr, "concord-client: --test-byzantine: expected sign_flip, scale or random, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'F':
            if (client_flood_parse(optarg, &c->flood, &c->flood_rate) != 0) {
                fprintf(stderr, "concord-client: --test-flood: expected MODE[,MODE...][:RATE] with modes garbage, "
                        "replay, oversize, connect, parts and 0 < RATE <= 1e6, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'h': s_usage(stdout); return 0;
        case 'V': printf("concord-client %s\n", CONCORD_VERSION); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    return config_args_finish("concord-client", rc, &err, argc, argv);
}

static char *s_opt_path(const config_t *cfg, const char *key) {
    char *p = config_get_path(cfg, key);
    if (p && !p[0]) {
        free(p);
        return NULL;
    }
    return p;
}

static int s_settings(client_t *c, cc_err_t *err) {
    const char *id, *endpoint, *label_column;
    long threads, rmin, rmax;
    int rc = config_get_str(c->cfg, "client.id", &id, err);
    rc = rc ? rc : config_get_str(c->cfg, "coordinator.endpoint", &endpoint, err);
    rc = rc ? rc : config_get_double(c->cfg, "client.val_frac", 0.0, 0.9, &c->val_frac, err);
    rc = rc ? rc : config_get_bool(c->cfg, "security.curve", &c->curve, err);
    rc = rc ? rc : config_get_int(c->cfg, "training.threads", 1, 256, &threads, err);
    rc = rc ? rc : config_get_double(c->cfg, "network.heartbeat_s", 0.05, 3600, &c->heartbeat_s, err);
    rc = rc ? rc : config_get_int(c->cfg, "network.reconnect_min_ms", 1, 3600000, &rmin, err);
    rc = rc ? rc : config_get_int(c->cfg, "network.reconnect_max_ms", 1, 3600000, &rmax, err);
    rc = rc ? rc : config_get_str(c->cfg, "client.label_column", &label_column, err);
    if (rc) return rc;
    c->endpoint = cc_xstrdup(endpoint);
    c->label_column = label_column[0] ? label_column : NULL;
    c->threads = (int)threads;
    c->reconnect_min_s = (double)rmin / 1000.0;
    c->reconnect_max_s = (double)rmax / 1000.0;
    c->backoff = c->reconnect_min_s;
    c->data_path = s_opt_path(c->cfg, "client.data");
    c->labels_path = s_opt_path(c->cfg, "client.labels");
    c->test_path = s_opt_path(c->cfg, "client.test_data");
    c->test_labels_path = s_opt_path(c->cfg, "client.test_labels");
    c->state_dir = s_opt_path(c->cfg, "client.state_dir");
    if (!c->data_path) return cc_err_set(err, CC_ERR_ARG, "[client] data: a training data file is required");
    if (!c->state_dir) return cc_err_set(err, CC_ERR_ARG, "[client] state_dir is required");
    char *key = s_opt_path(c->cfg, "security.identity"), *pub = s_opt_path(c->cfg, "coordinator.public_key");
    rc = key ? identity_load(&c->self, key, err) : cc_err_set(err, CC_ERR_ARG, "[security] identity is required");
    if (!rc && strcmp(c->self.id, id) != 0)
        rc = cc_err_set(err, CC_ERR_ARG, "[client] id is \"%s\" but the key file %s belongs to \"%s\"", id, key, c->self.id);
    if (!rc) rc = pub ? identity_load_public(&c->coordinator, pub, err)
                      : cc_err_set(err, CC_ERR_ARG, "[coordinator] public_key is required");
    free(key);
    free(pub);
    return rc;
}

static void s_loop(client_t *c) {
    while (!c->stop && !s_signal) {
        if (c->dealer) {
            zmq_pollitem_t item = {c->dealer, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&item, 1, 200) < 0 && errno != EINTR) break;
            for (int burst = 0; burst < 16 && c->dealer && (item.revents & ZMQ_POLLIN); burst++) {
                transport_msg_t msg;
                int rc = transport_recv(c->dealer, 0, &msg, ZMQ_DONTWAIT);
                if (rc == -1) break;
                if (rc == 0) client_handle_message(c, &msg);
                transport_msg_close(&msg);
                if (c->stop) break;
            }
        } else {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        client_tick(c);
    }
}

static void s_teardown(client_t *c) {
    if (c->dealer) zmq_close(c->dealer);
    if (c->zctx) zmq_ctx_term(c->zctx);
    identity_clear(&c->self);
    dataset_destroy(&c->train), dataset_destroy(&c->val), dataset_destroy(&c->test);
    model_destroy(&c->model);
    free(c->prev_params), free(c->prev_delta);
    client_upload_drop(c);
    config_destroy(&c->cfg);
    free(c->endpoint), free(c->state_dir), free(c->data_path), free(c->labels_path);
    free(c->test_path), free(c->test_labels_path);
}

static int s_run(client_t *c) {
    cc_err_t err = {0};
    int rc = s_settings(c, &err);
    if (!rc) rc = client_load_data(c, &err);
    if (!rc && mkdir(c->state_dir, 0700) != 0 && errno != EEXIST)
        rc = cc_err_set(&err, CC_ERR_IO, "%s: cannot create the state dir: %s", c->state_dir, strerror(errno));
    if (rc) {
        cc_log_error("startup_failed", "reason=\"%s\"", err.msg);
        fprintf(stderr, "concord-client: %s\n", err.msg);
        return 1;
    }
    if (client_state_load(c) < 0) return 1;
    openblas_set_num_threads(c->threads);
    cc_log_info("data_loaded", "train=%zu val=%zu test=%zu features=%zu classes=%d", c->train->n,
                c->val ? c->val->n : 0, c->test ? c->test->n : 0, c->train->d, c->train->n_classes);
    c->zctx = zmq_ctx_new();
    c->state = CLIENT_DISCONNECTED;
    c->next_connect = cc_now();
    if (c->flood) return client_flood_run(c, c->flood, c->flood_rate, &s_signal);
    s_loop(c);
    if (s_signal) cc_log_info("stopped", "signal=%d", (int)s_signal);
    return c->exit_code;
}

int main(int argc, char **argv) {
    cc_malloc_tune();
    cc_log_set_component("client");
    client_t c;
    memset(&c, 0, sizeof c);
    c.cfg = config_new();
    c.test_stop_at_round = -1;
    c.prev_round = -1;
    s_declare(c.cfg);
    int print_config = 0;
    int rc = s_parse_args(&c, argc, argv, &print_config);
    if (rc < 0 && print_config) {
        config_print(c.cfg, stdout, 1);
        rc = 0;
    }
    if (rc >= 0) {
        config_destroy(&c.cfg);
        return rc;
    }
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = s_run(&c);
    s_teardown(&c);
    return rc;
}
