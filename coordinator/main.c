/* main.c — concord-coordinator: configuration, start-up and recovery, the poll loop.
 *
 *   concord-coordinator --config coordinator.ini [--set section.key=value ...]
 *
 * One thread runs everything that touches the model (the poll loop over the ROUTER and
 * the ZAP handler); the metrics endpoint runs in libmicrohttpd's thread and only reads
 * counters. SIGTERM/SIGINT stop the loop cleanly: state is always on disk already. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord.h"
#include "fedce.h"
#include "guard.h"
#include "head_stats.h"
#include "ledger.h"
#include "log.h"
#include "ratelimit.h"
#include "syncer.h"
#include "wsum.h"

static volatile sig_atomic_t s_signal, s_hangup;
static void s_on_signal(int sig) { s_signal = sig; }
static void s_on_hangup(int sig) { (void)sig; s_hangup = 1; }

static void s_declare(config_t *cfg) {
    config_declare(cfg, "federation.rounds", "20", "rounds to run before exporting the final model");
    config_declare(cfg, "federation.min_clients", "2", "welcomed clients needed before a round starts");
    config_declare(cfg, "federation.quorum", "0.5", "share of a round's participants that must answer by the deadline");
    config_declare(cfg, "federation.join_timeout_s", "60", "seconds between warnings while waiting for clients");
    config_declare(cfg, "federation.round_deadline_s", "60", "seconds participants have to answer a task");
    config_declare(cfg, "federation.extension_s", "30", "one extension when the deadline passes without quorum");
    config_declare(cfg, "federation.seed", "1", "seed of the initial model and of every client's training");
    config_declare(cfg, "federation.bind", "tcp://*:7700", "ZeroMQ endpoint the coordinator binds");
    config_declare(cfg, "federation.task_window_mb", "32",
                   "with CURVE, tasks in flight hold at most this many MiB of encrypted model copies (at least one task)");
    config_declare(cfg, "federation.task_confirm_s", "10",
                   "a task its client has not confirmed after this many seconds stops counting against the window");
    config_declare(cfg, "federation.upload_window_mb", "16",
                   "updates in flight to the coordinator hold at most this many MiB (at least one update)");
    config_declare(cfg, "federation.upload_grant_s", "60",
                   "a granted update that has not arrived after this many seconds stops counting against the window");
    config_declare(cfg, "federation.io_threads", "2",
                   "ZeroMQ I/O threads: with CURVE they encrypt tasks and decrypt updates, one connection each");
    config_declare(cfg, "federation.enrolment", "enrolment.txt", "enrolled clients: one \"ID PUBLIC_HEX\" per line");
    config_declare(cfg, "model.arch", "mlp:64,32", "softmax | mlp:H1,H2,... | cnn:C1,C2[/H1,...]");
    config_declare(cfg, "model.activation", "relu", "relu | gelu | tanh");
    config_declare(cfg, "model.dropout", "0", "dropout after hidden dense layers");
    config_declare(cfg, "model.inputs", NULL, "features per sample (required)");
    config_declare(cfg, "model.classes", NULL, "number of classes (required)");
    config_declare(cfg, "model.image", "", "CxHxW for image data (CNN), e.g. 1x28x28");
    config_declare(cfg, "model.standardize", "federated", "federated | local | none");
    config_declare(cfg, "training.epochs", "2", "local epochs per round");
    config_declare(cfg, "training.batch", "32", "local mini-batch size");
    config_declare(cfg, "training.optimizer", "sgd", "sgd | adam");
    config_declare(cfg, "training.lr", "0.05", "local learning rate");
    config_declare(cfg, "training.momentum", "0.9", "SGD momentum");
    config_declare(cfg, "training.weight_decay", "0", "L2 weight decay");
    config_declare(cfg, "aggregation.server_lr", "1.0", "server step: θ += server_lr · Σ w_k Δ_k");
    config_declare(cfg, "aggregation.threads", "2", "threads summing the updates at round close (1-8; the result is the same bits)");
    config_declare(cfg, "aggregation.sum_process", "true", "FedAvg: one of those workers is a helper process, which reads the journal faster than a second thread (docs/operations.md)");
    config_declare(cfg, "aggregation.in_time", "auto", "FedAvg: while waiting for updates, sum those in so far (in client-id order) into the new model, so the close sums only the rest (same bits): on | off | auto (= on; docs/configuration.md)");
    config_declare(cfg, "aggregation.max_update_norm", "1e4", "updates with a larger L2 norm are refused");
    config_declare(cfg, "aggregation.weighting", "fedavg", "fedavg (sample counts) | fedce (contribution estimation, DESIGN 6.1)");
    config_declare(cfg, "aggregation.max_norm_ratio", "0", "leave out updates whose norm exceeds this multiple of the round's median update norm (0: off)");
    config_declare(cfg, "aggregation.robust", "none", "none (weighted mean) | median | trimmed_mean: coordinate-wise, unweighted, against Byzantine updates");
    config_declare(cfg, "aggregation.trim", "0.1", "trimmed_mean: share cut at each end of every coordinate (0 - 0.49)");
    config_declare(cfg, "fedce.combine", "plus", "plus: w = (a + b)/2 | times: w = a * b");
    config_declare(cfg, "fedce.metric", "balanced_accuracy", "the clients' minus-model score: balanced_accuracy | accuracy | macro_f1 | loss");
    config_declare(cfg, "fedce.minus_model", "client",
                   "who builds the minus model: client (from its own last update) | coordinator (sent with each task)");
    config_declare(cfg, "alignment.variants", "none", "none, or a comma list of gradient, hessian_diag, hgp (DESIGN 6.2)");
    config_declare(cfg, "alignment.alpha", "1e-4", "weight of the Hessian terms (hessian_diag, hgp)");
    config_declare(cfg, "alignment.beta", "5e-3", "weight of the gradient term");
    config_declare(cfg, "alignment.propagate", "false",
                   "the gradient term also reaches the feature layers (two extra backward passes per batch)");
    config_declare(cfg, "alignment.propagate_eps", "1e-3",
                   "relative finite-difference step of propagate: the head moves by this share of its norm");
    config_declare(cfg, "per_class.mode", "off", "off | client (PCN-SGD) | server (per client) | federation (after weighting), DESIGN 6.3");
    config_declare(cfg, "storage.ledger", "ledger.jsonl", "contribution ledger, one signed line per round (empty: off)");
    config_declare(cfg, "storage.keep_updates", "false", "archive every accepted update as safetensors under state_dir/updates");
    config_declare(cfg, "security.identity", "coordinator.key", "the coordinator's secret key file");
    config_declare(cfg, "security.curve", "true", "CURVE encryption and ZAP authentication");
    config_declare(cfg, "storage.state_dir", "state", "checkpoints and the round journal");
    config_declare(cfg, "storage.keep_checkpoints", "3", "checkpoints kept");
    config_declare(cfg, "storage.export", "final-model", "final model path prefix (.ckpt and .safetensors)");
    config_declare(cfg, "limits.rate", "20", "messages per second each client may send beyond answers to tasks (0: no limit)");
    config_declare(cfg, "limits.burst", "100", "messages a client may send at once before limits.rate applies");
    config_declare(cfg, "limits.queue_messages", "16", "messages ZeroMQ queues per connection before it stops reading it (RCVHWM)");
    config_declare(cfg, "limits.handshake_timeout_s", "10", "seconds a new connection has to finish the CURVE handshake");
    config_declare(cfg, "metrics.http_bind", "", "HOST:PORT for Prometheus metrics (empty: off)");
    config_declare(cfg, "metrics.history", "history.jsonl", "one JSON line per round");
    config_declare(cfg, "metrics.test_data", "", "held-out evaluation file (optional)");
    config_declare(cfg, "metrics.test_labels", "", "IDX labels of test_data");
}

static void s_usage(FILE *fp) {
    fprintf(fp,
        "Usage: concord-coordinator --config FILE [options]\n"
        "Runs the federation's training rounds (DESIGN §4) for the enrolled hospitals.\n\n"
        "  --config FILE         INI configuration (see docs/configuration.md)\n"
        "  --set SECTION.KEY=V   override one configuration key (repeatable)\n"
        "  --rounds N            = --set federation.rounds=N\n"
        "  --state-dir DIR       = --set storage.state_dir=DIR\n"
        "  --bind ENDPOINT       = --set federation.bind=ENDPOINT\n"
        "  --print-config        print every key with its value and exit\n"
        "  --verbose             debug log lines\n"
        "  --help, --version\n\n"
        "       concord-coordinator verify-ledger FILE --public-key coordinator.pub [--json]\n"
        "checks the contribution ledger's hash chain and every signature, naming the first bad entry.\n\n"
        "Signals: SIGTERM/SIGINT stop cleanly; a restart resumes the run from the state dir.\n"
        "SIGHUP re-reads the enrolment file: hospitals no longer listed are refused at once, a\n"
        "changed key is accepted (history kept); new hospitals join after a restart.\n");
}

/* Parses the command line into c->cfg (two passes, see config.h). Returns -1 to continue or
 * an exit code. */
static int s_parse_args(coord_t *c, int argc, char **argv, int *print_config) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"rounds", required_argument, 0, 'r'}, {"state-dir", required_argument, 0, 'd'},
        {"bind", required_argument, 0, 'b'},   {"print-config", no_argument, 0, 'p'},
        {"verbose", no_argument, 0, 'v'},      {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};
    cc_err_t err = {0};
    int ch, rc = config_load_from_args(c->cfg, argc, argv, opts, &err); /* pass 1: the files */
    while (rc == 0 && (ch = getopt_long(argc, argv, CONFIG_SHORTOPTS, opts, NULL)) != -1) {
        switch (ch) {
        case 'c': break;
        case 's': rc = config_set_assignment(c->cfg, optarg, &err); break;
        case 'r': rc = config_set(c->cfg, "federation.rounds", optarg, "--rounds", &err); break;
        case 'd': rc = config_set(c->cfg, "storage.state_dir", optarg, "--state-dir", &err); break;
        case 'b': rc = config_set(c->cfg, "federation.bind", optarg, "--bind", &err); break;
        case 'p': *print_config = 1; break;
        case 'v': cc_log_set_level(CC_LOG_DEBUG); break;
        case 'h': s_usage(stdout); return 0;
        case 'V': printf("concord-coordinator %s\n", CONCORD_VERSION); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    return config_args_finish("concord-coordinator", rc, &err, argc, argv);
}

/* Reads the typed settings; errors name the key and where its value came from. */
static int s_settings(coord_t *c, cc_err_t *err) {
    const config_t *g = c->cfg;
    long l;
    double d;
    const char *str;
    int rc = 0, idx;
    concord__train_settings__init(&c->training);
    rc = rc ? rc : config_get_int(g, "federation.rounds", 1, 1000000, &l, err);
    c->rounds = (uint64_t)l;
    rc = rc ? rc : config_get_int(g, "federation.min_clients", 1, 100000, &c->min_clients, err);
    rc = rc ? rc : config_get_double(g, "federation.quorum", 0.0, 1.0, &c->quorum, err);
    rc = rc ? rc : config_get_double(g, "federation.join_timeout_s", 0.01, 1e7, &c->join_timeout_s, err);
    rc = rc ? rc : config_get_double(g, "federation.round_deadline_s", 0.01, 1e7, &c->deadline_s, err);
    rc = rc ? rc : config_get_double(g, "federation.extension_s", 0.0, 1e7, &c->extension_s, err);
    rc = rc ? rc : config_get_u64(g, "federation.seed", &c->seed, err);
    rc = rc ? rc : config_get_choice(g, "model.standardize", "none|local|federated", &c->standardize, err);
    rc = rc ? rc : config_get_int(g, "training.epochs", 0, 100000, &l, err);
    c->training.epochs = (uint32_t)l;
    rc = rc ? rc : config_get_int(g, "training.batch", 1, 1 << 20, &l, err);
    c->training.batch = (uint32_t)l;
    rc = rc ? rc : config_get_choice(g, "training.optimizer", "sgd|adam", &idx, err);
    snprintf(c->optimizer, sizeof c->optimizer, "%s", idx ? "adam" : "sgd");
    c->training.optimizer = c->optimizer;
    rc = rc ? rc : config_get_double(g, "training.lr", 0.0, 1e3, &d, err);
    c->training.lr = (float)d;
    rc = rc ? rc : config_get_double(g, "training.momentum", 0.0, 0.9999, &d, err);
    c->training.momentum = (float)d;
    rc = rc ? rc : config_get_double(g, "training.weight_decay", 0.0, 1.0, &d, err);
    c->training.weight_decay = (float)d;
    c->training.seed = c->seed;
    rc = rc ? rc : config_get_double(g, "aggregation.server_lr", 0.0, 1e3, &c->server_lr, err);
    rc = rc ? rc : config_get_double(g, "aggregation.max_update_norm", 0.0, 1e30, &c->max_norm, err);
    c->training.server_lr = (float)c->server_lr;
    rc = rc ? rc : config_get_choice(g, "aggregation.weighting", "fedavg|fedce", &c->fedce, err);
    rc = rc ? rc : config_get_choice(g, "fedce.combine", "plus|times", &idx, err);
    if (!rc && fedce_mode_parse(idx ? "times" : "plus", (fedce_mode_t *)&c->fedce_mode))
        rc = cc_err_set(err, CC_ERR_ARG, "[fedce] combine");
    rc = rc ? rc : config_get_choice(g, "fedce.metric", "balanced_accuracy|accuracy|macro_f1|loss", &idx, err);
    if (!rc) snprintf(c->fedce_metric, sizeof c->fedce_metric, "%s", config_get(g, "fedce.metric"));
    rc = rc ? rc : config_get_choice(g, "fedce.minus_model", "client|coordinator", &c->fedce_minus, err);
    rc = rc ? rc : config_get_str(g, "alignment.variants", &str, err);
    if (!rc && align_variants_parse(str, &c->align_variants))
        rc = cc_err_set(err, CC_ERR_ARG, "%s: [alignment] variants: expected none or a comma list of gradient, "
                        "hessian_diag, hgp, got \"%s\"", config_origin(g, "alignment.variants"), str);
    rc = rc ? rc : config_get_double(g, "alignment.alpha", 0.0, 1e6, &d, err);
    c->align_alpha = (float)d;
    rc = rc ? rc : config_get_double(g, "alignment.beta", 0.0, 1e6, &d, err);
    c->align_beta = (float)d;
    int propagate = 0;
    rc = rc ? rc : config_get_bool(g, "alignment.propagate", &propagate, err);
    c->training.align_propagate = propagate != 0;
    rc = rc ? rc : config_get_double(g, "alignment.propagate_eps", 1e-6, 0.1, &d, err);
    c->training.align_propagate_eps = (float)d;
    rc = rc ? rc : config_get_choice(g, "per_class.mode", "off|client|server|federation", &c->per_class, err);
    if (!rc) snprintf(c->per_class_name, sizeof c->per_class_name, "%s", config_get(g, "per_class.mode"));
    /* PCN-SGD (client mode) steps are normalised per class, so they do not shrink as training
     * converges; momentum 0.9 multiplies them about tenfold and the federation oscillates (the
     * demo's thyroid run swung between 0.94 and 0.06 accuracy). PCNGD is plain gradient
     * descent: unless [training] momentum is set explicitly, client mode uses none. */
    if (!rc && c->per_class == 1 && !config_is_set(g, "training.momentum")) {
        c->training.momentum = 0.0f;
        cc_log_info("per_class_momentum", "momentum=0 reason=\"PCN-SGD steps are normalised; set [training] momentum to override\"");
    }
    rc = rc ? rc : config_get_bool(g, "storage.keep_updates", &c->keep_updates, err);
    rc = rc ? rc : config_get_double(g, "aggregation.max_norm_ratio", 0.0, 1e6, &c->norm_ratio, err);
    rc = rc ? rc : config_get_choice(g, "aggregation.robust", "none|median|trimmed_mean", &c->robust, err);
    rc = rc ? rc : config_get_double(g, "aggregation.trim", 0.0, 0.49, &c->trim, err);
    if (!rc && c->robust && c->per_class == 3)
        rc = cc_err_set(err, CC_ERR_ARG, "[aggregation] robust = %s cannot be combined with [per_class] mode = federation",
                        config_get(g, "aggregation.robust"));
    rc = rc ? rc : config_get_bool(g, "security.curve", &c->curve, err);
    rc = rc ? rc : config_get_int(g, "aggregation.threads", 1, 8, &l, err);
    c->agg_threads = (int)l;
    rc = rc ? rc : config_get_bool(g, "aggregation.sum_process", &c->sum_process, err);
    rc = rc ? rc : config_get_choice(g, "aggregation.in_time", "off|on|auto", &c->in_time, err);
    rc = rc ? rc : config_get_double(g, "federation.task_window_mb", 0.0, 1e9, &c->task_window_mb, err);
    rc = rc ? rc : config_get_double(g, "federation.task_confirm_s", 0.0, 1e7, &c->task_confirm_s, err);
    rc = rc ? rc : config_get_double(g, "federation.upload_window_mb", 0.0, 1e9, &c->upload_window_mb, err);
    rc = rc ? rc : config_get_double(g, "federation.upload_grant_s", 0.0, 1e7, &c->upload_grant_s, err);
    rc = rc ? rc : config_get_int(g, "federation.io_threads", 1, 64, &l, err);
    c->io_threads = (int)l;
    rc = rc ? rc : config_get_int(g, "storage.keep_checkpoints", 1, 1000, &l, err);
    c->keep_checkpoints = (int)l;
    rc = rc ? rc : config_get_str(g, "federation.bind", &str, err);
    /* What every task tells the clients about this federation's methods. */
    c->training.per_class = c->per_class_name;
    c->training.align_variants = c->align_variants;
    c->training.align_alpha = c->align_alpha;
    c->training.align_beta = c->align_beta;
    c->training.fedce = c->fedce != 0;
    c->training.fedce_metric = c->fedce_metric;
    return rc;
}

/* The model spec from [model]: arch, activation, dropout, inputs, classes, image. */
static int s_model_spec(coord_t *c, cc_err_t *err) {
    const char *arch, *act, *image;
    long inputs, classes;
    double dropout;
    int rc = config_get_str(c->cfg, "model.arch", &arch, err);
    rc = rc ? rc : config_get_str(c->cfg, "model.activation", &act, err);
    rc = rc ? rc : config_get_double(c->cfg, "model.dropout", 0.0, 0.99, &dropout, err);
    rc = rc ? rc : config_get_int(c->cfg, "model.inputs", 1, 1 << 26, &inputs, err);
    rc = rc ? rc : config_get_int(c->cfg, "model.classes", 2, 1 << 16, &classes, err);
    rc = rc ? rc : config_get_str(c->cfg, "model.image", &image, err);
    if (rc) return rc;
    memset(&c->spec, 0, sizeof c->spec);
    c->spec.n_inputs = (int)inputs;
    c->spec.n_classes = (int)classes;
    c->spec.dropout = (float)dropout;
    if (model_act_parse(act, &c->spec.act))
        return cc_err_set(err, CC_ERR_ARG, "[model] activation: expected relu, gelu or tanh, got \"%s\"", act);
    if (image[0] && sscanf(image, "%dx%dx%d", &c->spec.in_c, &c->spec.in_h, &c->spec.in_w) != 3)
        return cc_err_set(err, CC_ERR_ARG, "[model] image: expected CxHxW, got \"%s\"", image);
    rc = model_spec_parse(arch, &c->spec, err);
    if (rc) { /* name where the bad arch came from: a file's path:line, or the flag */
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return cc_err_set(err, rc, "%s: [model] arch: %s", config_origin(c->cfg, "model.arch"), why);
    }
    model_t *m = model_new(&c->spec, err);
    if (!m) return CC_ERR_ARG;
    if (c->per_class >= 2 && c->spec.n_classes >= WIRE_MAX_TENSORS)
        return cc_err_set(err, CC_ERR_ARG, "[per_class] mode = %s sends one tensor per class: at most %d classes",
                          c->per_class_name, WIRE_MAX_TENSORS - 1);
    model_init(m, c->seed); /* θ_0 comes from the seed */
    c->P = m->n_params;
    c->params = cc_xalloc_floats(c->P);
    memcpy(c->params, m->params, c->P * sizeof(float));
    wire_digest_floats(c->digest, c->params, c->P);
    model_destroy(&m);
    return 0;
}

/* Paths owned by main (config_get_path allocates). */
typedef struct {
    char *state_dir, *history, *export_prefix, *enrolment, *identity, *test_data, *test_labels, *http_bind;
} s_paths_t;

static void s_paths_free(s_paths_t *p) {
    free(p->state_dir), free(p->history), free(p->export_prefix), free(p->enrolment);
    free(p->identity), free(p->test_data), free(p->test_labels), free(p->http_bind);
}

static int s_paths(coord_t *c, s_paths_t *p, cc_err_t *err) {
    p->state_dir = config_get_path(c->cfg, "storage.state_dir");
    p->history = config_get_path(c->cfg, "metrics.history");
    p->export_prefix = config_get_path(c->cfg, "storage.export");
    p->enrolment = config_get_path(c->cfg, "federation.enrolment");
    p->identity = config_get_path(c->cfg, "security.identity");
    p->test_data = config_get_path(c->cfg, "metrics.test_data");
    p->test_labels = config_get_path(c->cfg, "metrics.test_labels");
    c->ledger_path = config_get_path(c->cfg, "storage.ledger");
    const char *bind = config_get(c->cfg, "metrics.http_bind");
    p->http_bind = cc_xstrdup(bind ? bind : "");
    if (!p->state_dir || !p->history || !p->export_prefix || !p->enrolment || !p->identity)
        return cc_err_set(err, CC_ERR_ARG, "storage, history, export, enrolment and identity paths are required");
    c->state_dir = p->state_dir;
    if (c->ledger_path && c->ledger_path[0] != '/' && !config_is_set(c->cfg, "storage.ledger")) {
        /* The default ledger lives in the state dir, next to the checkpoints it vouches for
         * (not in whatever directory the coordinator was started from). */
        char *in_state = cc_xmalloc(strlen(p->state_dir) + strlen(c->ledger_path) + 2);
        sprintf(in_state, "%s/%s", p->state_dir, c->ledger_path);
        free(c->ledger_path);
        c->ledger_path = in_state;
    }
    c->history_path = p->history;
    c->export_prefix = p->export_prefix;
    if (mkdir(p->state_dir, 0700) != 0 && errno != EEXIST)
        return cc_err_set(err, CC_ERR_IO, "%s: cannot create the state dir: %s", p->state_dir, strerror(errno));
    /* Checked before anything is read or trimmed: a read-only mount fails here, untouched. */
    if (access(p->state_dir, W_OK) != 0)
        return cc_err_set(err, CC_ERR_IO, "%s: the state dir is not writable: %s", p->state_dir, strerror(errno));
    return 0;
}

static int s_load_test(coord_t *c, const s_paths_t *p, cc_err_t *err) {
    if (!p->test_data || !p->test_data[0]) return 0;
    data_load_opts_t lo = {.labels_path = p->test_labels && p->test_labels[0] ? p->test_labels : NULL,
                           .n_classes = c->spec.n_classes};
    int rc = dataset_load(p->test_data, &lo, &c->test, err);
    if (rc) return rc;
    if ((int)c->test->d != c->spec.n_inputs)
        return cc_err_set(err, CC_ERR_ARG, "%s: %zu features, the model expects %d", p->test_data, c->test->d,
                          c->spec.n_inputs);
    if (c->standardize == 1) { /* local: the evaluation site standardises with its own statistics */
        standardizer_t *st = standardizer_fit(c->test);
        standardizer_apply(st, c->test);
        standardizer_destroy(&st);
    }
    return 0;
}

/* Without checkpoints the state dir is a fresh start only if no earlier run left its journal
 * or sequence file there (both are written after the first checkpoint). Returns 1 with the
 * first such file in path, else 0. (History and ledger can be configured to live anywhere:
 * they are not evidence of this state dir.) */
static int s_leftover_state(const coord_t *c, char *path, size_t len) {
    static const char *names[] = {"round.journal", "coordinator.seq"};
    struct stat st;
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, len, "%s/%s", c->state_dir, names[i]);
        if (stat(path, &st) == 0) return 1;
    }
    return 0;
}

/* Loads the newest good checkpoint and replays the open round's journal. */
static int s_recover(coord_t *c, cc_err_t *err) {
    char left[4200];
    ledger_head_t head; /* a ledger this key cannot extend (LEDGER-3) would stop the first commit */
    int rc = c->ledger_path && c->ledger_path[0] ? ledger_head(c->ledger_path, c->self.pk, &head, NULL, err) : 0;
    rc = rc ? rc : coord_checkpoint_load(c, err);
    if (rc < 0) return rc;
    if (rc == 1 && s_leftover_state(c, left, sizeof left))
        return cc_err_set(err, CC_ERR_CORRUPT, "%s holds no checkpoint, but %s is left from an earlier run: "
                          "refusing to start a new run over it (restore the checkpoints, or move the old "
                          "state away to start afresh)", c->state_dir, left);
    if (rc == 1) {
        cc_log_info("fresh_start", "state_dir=%s", c->state_dir);
        rc = coord_checkpoint_save(c, err); /* round 0, θ_0: a restart finds the same start */
        if (rc) return rc;
    } else {
        cc_log_info("resumed", "round=%llu state_dir=%s", (unsigned long long)c->round, c->state_dir);
        if (c->std && c->test && c->standardize == 2) standardizer_apply(c->std, c->test);
    }
    int64_t last_history_round;
    rc = coord_history_trim(c, &last_history_round, err);
    rc = rc ? rc : coord_restore_committed(c, last_history_round, err);
    rc = rc ? rc : coord_journal_open_round(c, 1, err);
    rc = rc ? rc : coord_seq_reserve(c, err); /* a full disk fails here rather than at the first reply */
    if (rc) return rc;
    c->waiting_since = cc_now();
    if (c->round >= c->rounds) {
        c->state = COORD_DONE;
    } else if (c->n_participants > 0) { /* killed mid-round: ask only the missing clients */
        c->round_start = cc_now();
        c->deadline = c->round_start + c->deadline_s;
        coord_set_state(c, COORD_TRAINING);
    }
    return 0;
}

/* [limits]: what one client or connection may cost the coordinator (docs/security.md,
 * "Flooding"). */
typedef struct {
    double rate, burst, handshake_s;
    long queue;
} s_limits_t;

static int s_limits(const coord_t *c, s_limits_t *l, cc_err_t *err) {
    int rc = config_get_double(c->cfg, "limits.rate", 0.0, 1e9, &l->rate, err);
    rc = rc ? rc : config_get_double(c->cfg, "limits.burst", 1.0, 1e9, &l->burst, err);
    rc = rc ? rc : config_get_int(c->cfg, "limits.queue_messages", 1, 1000000, &l->queue, err);
    rc = rc ? rc : config_get_double(c->cfg, "limits.handshake_timeout_s", 0.1, 3600, &l->handshake_s, err);
    return rc;
}

/* Descriptors needed besides one per hospital connection: the state files, ZeroMQ's own
 * (listener, epoll, mailboxes), the metrics endpoint, connections of strangers. */
#define FD_MARGIN 64

/* Each hospital's connection costs a descriptor: past the soft RLIMIT_NOFILE ZeroMQ cannot
 * accept it, and that hospital only ever times out. So the soft limit goes up to the hard
 * one when the enrolment needs more; if even that is short, the operator is told. */
static void s_check_fd_limit(size_t enrolled) {
    struct rlimit rl;
    rlim_t need = (rlim_t)enrolled + FD_MARGIN;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : rl.rlim_max;
    if (rl.rlim_cur > was && setrlimit(RLIMIT_NOFILE, &rl) == 0)
        cc_log_info("fd_limit_raised", "soft_was=%llu soft=%llu hard=%llu needed=%llu enrolled=%zu",
                    (unsigned long long)was, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                    (unsigned long long)need, enrolled);
    else
        rl.rlim_cur = was;
    if (rl.rlim_cur >= need) return;
    cc_log_warn("fd_limit_low", "soft=%llu hard=%llu needed=%llu enrolled=%zu margin=%d action=\"some hospitals "
                "will fail to connect: raise the open-file limit to at least %llu (LimitNOFILE= in the systemd "
                "unit, or ulimit -n before starting)\"", (unsigned long long)rl.rlim_cur,
                (unsigned long long)rl.rlim_max, (unsigned long long)need, enrolled, FD_MARGIN,
                (unsigned long long)need);
}

/* guard_gone_fn: a client's connection closed; an upload grant it held goes to the next. */
static void s_client_gone(void *ctx, const char *peer) {
    coord_t *c = ctx;
    if (coord_upload_done(c, peer))
        cc_log_info("upload_grant_released", "client=%s reason=\"its connection closed\"", peer);
}

/* Bytes of one update's tensor frames: Δ̃ (P floats), or its C + 1 per-class parts in
 * server and federation mode. */
static double s_update_bytes(const coord_t *c) {
    return (double)c->P * sizeof(float) * (c->per_class >= 2 ? c->spec.n_classes + 1 : 1);
}

static int s_network(coord_t *c, const s_paths_t *p, cc_err_t *err) {
    s_limits_t lim;
    int rc = s_limits(c, &lim, err);
    rc = rc ? rc : identity_load(&c->self, p->identity, err);
    rc = rc ? rc : enrolment_load(p->enrolment, &c->enrolment, err);
    c->enrolment_path = p->enrolment;
    if (rc) return rc;
    s_check_fd_limit(c->enrolment->n);
    const char *bind;
    rc = config_get_str(c->cfg, "federation.bind", &bind, err);
    if (rc) return rc;
    /* One bucket per enrolled client (registry order) and one shared by every other sender. */
    c->limiter = ratelimit_new(c->enrolment->n + 1, lim.rate, lim.burst, 5.0);
    c->zctx = zmq_ctx_new();
    zmq_ctx_set(c->zctx, ZMQ_IO_THREADS, c->io_threads); /* before the first socket */
    if (c->curve && !(c->zap = zap_handler_new(c->zctx, c->enrolment, err))) return CC_ERR_IO;
    c->router = zmq_socket(c->zctx, ZMQ_ROUTER);
    int one = 1, linger = 2000, hwm = (int)lim.queue, handshake_ms = (int)(lim.handshake_s * 1000.0);
    /* Largest legal message part: the update tensor; anything bigger is dropped by ZMQ. */
    int64_t maxmsg = (int64_t)(c->P * sizeof(float)) + (1 << 20);
    zmq_setsockopt(c->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
    /* RCVHWM counts whole messages per connection; when it is reached ZeroMQ stops reading
     * that connection (TCP back-pressure), so a flooder's queue stays this short. */
    zmq_setsockopt(c->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->router, ZMQ_HANDSHAKE_IVL, &handshake_ms, sizeof handshake_ms);
    if (c->curve && transport_curve_server(c->router, &c->self))
        return cc_err_set(err, CC_ERR_IO, "CURVE set-up failed: %s", zmq_strerror(errno));
    /* What one connection may hold: queue_messages whole messages and the one being
     * assembled, each at most an update (its frames and 64 KiB for the envelope: honest
     * envelopes are under 2 KiB), plus 8 MiB for the kernel's receive buffer. */
    uint64_t guard_bound = (uint64_t)((double)(hwm + 1) * (s_update_bytes(c) + (64 << 10))) + (8u << 20);
    if (!(c->guard = guard_start(c->zctx, c->router, guard_bound, s_client_gone, c, err))) return CC_ERR_IO;
    if (zmq_bind(c->router, bind) != 0)
        return cc_err_set(err, CC_ERR_IO, "[federation] bind %s: %s", bind, zmq_strerror(errno));
    cc_log_info("listening", "bind=%s curve=%d enrolled=%zu model_params=%zu rate_limit=%g burst=%g queue_messages=%d",
                bind, c->curve, c->enrolment->n, c->P, lim.rate, lim.burst, hwm);
    return 0;
}

/* The token bucket of msg's sender: the identity the connection authenticated as (ZAP user
 * id with CURVE; without CURVE only the routing id, which the peer chooses), known before
 * any byte of the message is verified. Everyone else shares the last bucket. */
static size_t s_limiter_key(const coord_t *c, const transport_msg_t *msg) {
    const char *who = c->curve ? msg->user_id : msg->peer;
    long i = who[0] ? coord_client_index(c, who) : -1;
    return i < 0 ? c->n_clients : (size_t)i;
}

/* Answers the coordinator accepted so far from client `key`: updates and task confirmations (counted for all
 * clients: one message is handled at a time) and the statistics phases of its slot. */
static uint64_t s_answers(const coord_t *c, size_t key) {
    uint64_t n = __atomic_load_n(&c->accepted_updates, __ATOMIC_RELAXED) + c->task_confirmations;
    size_t slot = key < c->n_clients ? coord_slot(c, c->clients[key].id) : SIZE_MAX;
    if (slot != SIZE_MAX && c->stat_have) n += (uint64_t)__builtin_popcount(c->stat_have[slot]);
    return n;
}

/* Rate limit (docs/security.md, "Flooding"), then verification and dispatch. A dropped
 * message costs no hashing and gets no answer; its sender is logged once per 5 s. */
static void s_handle(coord_t *c, transport_msg_t *msg) {
    size_t key = s_limiter_key(c, msg);
    double now = cc_now();
    if (!ratelimit_take(c->limiter, key, now)) {
        uint64_t dropped;
        if (ratelimit_log_due(c->limiter, key, now, &dropped))
            cc_log_warn("rate_limited", "client=%s peer=%s dropped=%llu action=\"messages dropped unread\"",
                        key < c->n_clients ? c->clients[key].id : "-", msg->peer, (unsigned long long)dropped);
        return;
    }
    if (msg->warmup_parts) { /* a queue warm-up: it did its work by passing through */
        coord_warmup_received(c, key);
        return;
    }
    uint64_t answers = s_answers(c, key);
    coord_handle_message(c, msg);
    if (s_answers(c, key) > answers) ratelimit_refund(c->limiter, key);
}

/* Tells the connection guard what the poll loop took from the message's connection. */
static void s_guard_taken(coord_t *c, transport_msg_t *msg) {
    /* ZMQ_SRCFD: deprecated in libzmq 4.3 but kept, and the only link from a message to
     * its connection's socket. */
    int fd = zmq_msg_get(&msg->parts[0], ZMQ_SRCFD);
    /* + the routing frame, though the ROUTER adds it itself: counting more than arrived
     * only makes the guard more lenient. */
    guard_taken(c->guard, fd, msg->peer, transport_msg_bytes(msg) + WIRE_MAX_ID, msg->n_parts + msg->warmup_parts + 1);
}

static void s_loop(coord_t *c) {
    /* The ROUTER, the journal syncer's wake-up (coord_tick collects it), the connection
     * guard's monitor, and ZAP if CURVE is on. */
    zmq_pollitem_t items[4] = {{c->router, 0, ZMQ_POLLIN, 0}, {NULL, syncer_fd(c->syncer), ZMQ_POLLIN, 0},
                               {guard_socket(c->guard), 0, ZMQ_POLLIN, 0},
                               {c->zap ? zap_handler_socket(c->zap) : NULL, 0, ZMQ_POLLIN, 0}};
    int n_items = c->zap ? 4 : 3;
    if (c->state == COORD_DONE) c->stop = 0;
    while (!c->stop && !s_signal) {
        if (c->state == COORD_DONE) break;
        if (s_hangup) s_hangup = 0, coord_reload_enrolment(c);
        long timeout_ms = (long)(coord_next_timeout(c) * 1000.0);
        if (timeout_ms > 100) timeout_ms = 100; /* the connection guard looks every 0.1 s */
        if (zmq_poll(items, n_items, timeout_ms) < 0 && errno != EINTR) break;
        if (items[2].revents & ZMQ_POLLIN) guard_events(c->guard);
        if (n_items == 4 && (items[3].revents & ZMQ_POLLIN)) zap_handler_handle(c->zap);
        for (int burst = 0; burst < 64 && (items[0].revents & ZMQ_POLLIN); burst++) {
            transport_msg_t msg;
            int rc = transport_recv(c->router, 1, &msg, ZMQ_DONTWAIT);
            if (rc == -1) break;
            if (rc == 0) s_guard_taken(c, &msg), s_handle(c, &msg);
            else __atomic_fetch_add(&c->rejected[REJ_DECODE], 1, __ATOMIC_RELAXED);
            transport_msg_close(&msg);
            coord_pump_grants(c); /* an upload grant that message ended goes on now its frames are freed */
            if (c->stop) break;
        }
        guard_check(c->guard, cc_now());
        coord_intime_idle(c); /* FedAvg: sum what arrived, if nothing waits */
        coord_tick(c);
    }
}

/* Per-round and per-client arrays of §6.1 / §6.2 (sized by the enrolment). */
static void s_alloc_round_state(coord_t *c) {
    size_t n = c->n_clients + 1;
    model_t *m = model_new(&c->spec, NULL);
    c->L = head_stats_len(m);
    model_destroy(&m);
    c->participants = cc_xcalloc(n, sizeof *c->participants);
    c->updates = cc_xcalloc(n, sizeof *c->updates);
    c->stat_g = cc_xcalloc(n * c->L, sizeof(float)), c->stat_D = cc_xcalloc(n * c->L, sizeof(float));
    c->stat_Hg = cc_xcalloc(n * c->L, sizeof(float));
    c->stat_n = cc_xcalloc(n, sizeof *c->stat_n);
    c->stat_have = cc_xcalloc(n, 1);
    c->task_state = cc_xcalloc(n, 1);
    c->task_sent_at = cc_xcalloc(n, sizeof *c->task_sent_at);
    /* Each task in flight under CURVE holds an encrypted copy of θ in ZeroMQ (and of θ⁻_k). */
    double per_task = (double)c->P * sizeof(float) * (c->fedce && c->fedce_minus ? 2 : 1);
    c->task_window = !c->curve ? SIZE_MAX : (size_t)fmax(1.0, floor(c->task_window_mb * 1048576.0 / per_task));
    c->grant_state = cc_xcalloc(n, 1);
    c->grant_order = cc_xcalloc(n, sizeof *c->grant_order);
    c->grant_at = cc_xcalloc(n, sizeof *c->grant_at);
    c->upload_window = (size_t)fmax(1.0, floor(c->upload_window_mb * 1048576.0 / s_update_bytes(c)));
    c->target_g = cc_xcalloc(c->L, sizeof(float)), c->target_D = cc_xcalloc(c->L, sizeof(float));
    c->target_Hg = cc_xcalloc(c->L, sizeof(float));
    c->gap_g = cc_xcalloc(n, sizeof *c->gap_g), c->gap_d = cc_xcalloc(n, sizeof *c->gap_d);
    c->fedce_reg = cc_xcalloc(n, sizeof(fedce_client_t));
    c->fedce_round = cc_xcalloc(n, sizeof *c->fedce_round);
    for (size_t i = 0; i < n; i++) c->fedce_round[i] = -1, c->gap_g[i] = c->gap_d[i] = NAN;
    c->fedce_cos = cc_xcalloc(n, sizeof(double)), c->fedce_a = cc_xcalloc(n, sizeof(double));
    c->fedce_b = cc_xcalloc(n, sizeof(double));
    if (c->fedce) { /* the round's updates in memory, one row per participant slot */
        c->U = cc_xalloc_floats(c->n_clients * c->P); /* rows written as updates arrive */
        c->gram = cc_xcalloc(c->n_clients * c->n_clients, sizeof(float));
    }
}

/* Why the close would not use a summing process (sumproc.h), or NULL: FedCE sums from
 * memory, robust and per-class federation mode sum otherwise, one thread means no second
 * worker, and a model under 2 MiB gains nothing (checked once P is known). */
static const char *s_sum_process_unused(const coord_t *c) {
    return !c->sum_process ? "aggregation.sum_process = false"
           : c->fedce ? "weighting is fedce (sums from memory)"
           : c->robust ? "a robust aggregate"
           : c->per_class == 3 ? "per_class mode is federation"
           : c->agg_threads < 2 ? "aggregation threads = 1"
           : c->P && c->P < WSUM_HELPER_MIN ? "the model has under 2 MiB of parameters" : NULL;
}

/* Forked once the settings are known and before the model is built, while the heap is
 * small (the child keeps a copy of what is mapped at the fork). */
static void s_sum_process_start(coord_t *c) {
    cc_err_t err = {0};
    if (s_sum_process_unused(c)) return;
    if (!(c->sumproc = sumproc_start(&err)))
        cc_log_warn("sum_process_failed", "reason=\"%s\" action=\"summing on threads\"", err.msg);
}

/* Once P is known: its θ buffers, or stopped when the model is too small for it. */
static void s_sum_process_ready(coord_t *c) {
    const char *unused = s_sum_process_unused(c);
    cc_err_t err = {0};
    if (!c->sumproc) return;
    if (!unused && sumproc_buffers(c->sumproc, c->P, &err) == 0) {
        cc_log_info("sum_process", "pid=%d params=%zu", (int)sumproc_pid(c->sumproc), c->P);
        /* θ_0 into a shared buffer: a close summing in time sums in θ_t's own (intime.c),
         * and the summing process takes part only in sums into its buffers. */
        float *theta = sumproc_take(c->sumproc);
        if (theta) {
            memcpy(theta, c->params, c->P * sizeof(float));
            free(c->params);
            c->params = theta;
        }
        return;
    }
    if (unused) cc_log_info("sum_process_unused", "reason=\"%s\"", unused);
    else cc_log_warn("sum_process_failed", "reason=\"%s\" action=\"summing on threads\"", err.msg);
    sumproc_stop(&c->sumproc);
}

static void s_teardown(coord_t *c) {
    coord_http_stop();
    if (c->router) zmq_close(c->router), c->router = NULL; /* ZeroMQ releases queued frames... */
    guard_stop(&c->guard);
    coord_params_free(c); /* ...θ lives until the last is; a sum begun in time is in θ's buffer */
    coord_drop_committed(c);
    journal_close(&c->journal);
    if (c->router) zmq_close(c->router);
    zap_handler_destroy(&c->zap);
    ratelimit_destroy(&c->limiter);
    if (c->zctx) zmq_ctx_term(c->zctx);
    identity_clear(&c->self);
    enrolment_destroy(&c->enrolment);
    coord_clients_free(c);
    standardizer_destroy(&c->std);
    dataset_destroy(&c->test);
    config_destroy(&c->cfg);
    free(c->ledger_path);
    free(c->participants);
    free(c->updates);
    free(c->stat_g), free(c->stat_D), free(c->stat_Hg), free(c->stat_n), free(c->stat_have);
    free(c->task_state), free(c->task_sent_at);
    free(c->grant_state), free(c->grant_order), free(c->grant_at);
    free(c->target_g), free(c->target_D), free(c->target_Hg), free(c->gap_g), free(c->gap_d);
    free(c->fedce_reg), free(c->fedce_round), free(c->fedce_cos), free(c->fedce_a), free(c->fedce_b), free(c->U);
    free(c->gram), free(c->pre_scale), free(c->pre_update);
    coord_minus_release(&c->minus);
    if (c->sumproc)
        cc_log_info("sum_process_stopped", "pid=%d shares=%zu blocks=%zu lost=%d", (int)sumproc_pid(c->sumproc),
                    sumproc_shares(c->sumproc), sumproc_units(c->sumproc), c->sumproc_lost);
    sumproc_stop(&c->sumproc); /* last: θ may have lived in its buffers */
}

static int s_run(coord_t *c, s_paths_t *p) {
    cc_err_t err = {0};
    int rc = s_settings(c, &err);
    if (!rc) s_sum_process_start(c);
    rc = rc ? rc : s_model_spec(c, &err);
    if (!rc) s_sum_process_ready(c);
    rc = rc ? rc : s_paths(c, p, &err);
    rc = rc ? rc : s_load_test(c, p, &err);
    rc = rc ? rc : s_network(c, p, &err);
    if (!rc) {
        coord_clients_init(c);
        s_alloc_round_state(c);
        rc = s_recover(c, &err);
    }
    if (!rc && p->http_bind[0]) rc = coord_http_start(c, p->http_bind, &err);
    if (rc) {
        cc_log_error("startup_failed", "reason=\"%s\"", err.msg);
        fprintf(stderr, "concord-coordinator: %s\n", err.msg);
        return 1;
    }
    if (c->state == COORD_DONE) {
        cc_log_info("already_done", "rounds=%llu action=\"exporting again\"", (unsigned long long)c->round);
        if (coord_export(c, &err) == 0) return 0;
        cc_log_error("export_failed", "prefix=%s reason=\"%s\"", c->export_prefix, err.msg);
        return 1;
    }
    if (!(c->syncer = syncer_start(&err))) {
        cc_log_error("startup_failed", "reason=\"%s\"", err.msg);
        return 1;
    }
    s_loop(c);
    syncer_stop(&c->syncer); /* waits for a sync in flight */
    if (s_signal) cc_log_info("stopped", "signal=%d round=%llu", (int)s_signal, (unsigned long long)c->round);
    if (c->stop == 2)
        cc_log_error("stopped_on_error", "round=%llu state_dir=%s action=\"the state on disk is the last good one: "
                     "fix the cause logged above, then restart to resume\"", (unsigned long long)c->round, c->state_dir);
    return c->stop == 2 ? 1 : 0;
}

int main(int argc, char **argv) {
    cc_log_set_component("coordinator");
    cc_malloc_tune();
    if (argc > 1 && strcmp(argv[1], "verify-ledger") == 0) return ledger_verify_main(argc - 1, argv + 1);
    openblas_set_num_threads(1);
    coord_t c;
    memset(&c, 0, sizeof c);
    c.cfg = config_new();
    s_declare(c.cfg);
    int print_config = 0;
    int rc = s_parse_args(&c, argc, argv, &print_config);
    if (rc >= 0) {
        config_destroy(&c.cfg);
        return rc;
    }
    if (print_config) {
        config_print(c.cfg, stdout, 1);
        config_destroy(&c.cfg);
        return 0;
    }
    struct sigaction sa = {.sa_handler = s_on_signal}, hup = {.sa_handler = s_on_hangup};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &hup, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Past a file size limit (ulimit -f) a write then fails with EFBIG and is handled like a
     * full disk, instead of the signal killing the daemon mid-write. */
    signal(SIGXFSZ, SIG_IGN);
    s_paths_t p = {0};
    rc = s_run(&c, &p);
    s_teardown(&c);
    s_paths_free(&p);
    return rc;
}
