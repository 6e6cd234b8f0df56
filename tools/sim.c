/* concord-sim — a whole federation on one machine: split a data set into hospital shards
 * (concord-data split), generate keys and configs, start the coordinator and one
 * concord-client per hospital as separate processes on loopback, show a live per-round
 * table, and end with a summary. Everything (shards, keys, configs, logs, history, model)
 * stays in --workdir; Ctrl-C or a failing daemon stops every child.
 *
 *   concord-sim --data thyroid.train --test thyroid.test --clients 4 --rounds 20 \
 *               --split dirichlet:0.5 --seed 1 --workdir sim-run */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "identity.h"
#include "util.h"

#define SIM_MAX_SITES 1000
/* Clients run this much nicer than the coordinator (see s_spawn). */
#define SIM_CLIENT_NICE 10
/* Descriptors the coordinator needs besides one per hospital connection: ZeroMQ's
 * internals, the journal, checkpoints, the history, the ledger, the metrics endpoint. */
#define SIM_FD_MARGIN 64

typedef struct {
    char name[64];
    char *file, *labels, *test;   /* absolute paths; labels/test may be NULL */
} s_site_t;

typedef struct {
    const char *data, *labels, *test, *test_labels, *split, *workdir, *shards, *config, *model;
    const char *weighting, *alignment, *per_class, *byzantine_mode;
    int byzantine;            /* the last N hospitals run with --test-byzantine MODE */
    int clients, port, curve, threads, prepare_only;
    long rounds, epochs;
    unsigned long long seed;
    double deadline;
    char bindir[PATH_MAX];
    s_site_t sites[SIM_MAX_SITES];
    int n_sites;
    pid_t coordinator;
    pid_t pids[SIM_MAX_SITES];
} s_sim_t;

static volatile sig_atomic_t s_interrupted;
static void s_on_signal(int sig) { (void)sig; s_interrupted = 1; }

static void s_usage(FILE *fp) {
    fprintf(fp,
        "Usage: concord-sim --data FILE --workdir DIR [options]\n"
        "       concord-sim --shards DIR --workdir DIR [options]\n"
        "Runs a federation of hospitals on this machine: one coordinator and one client process\n"
        "per hospital on loopback, with signed updates and CURVE encryption as in production.\n\n"
        "  --data FILE            data set to split into hospital shards (FANN, CSV or IDX)\n"
        "  --labels FILE          IDX labels of --data\n"
        "  --test FILE            held-out test set the coordinator scores every round (global)\n"
        "  --test-labels FILE     IDX labels of --test\n"
        "  --clients N            hospitals (default 4)\n"
        "  --split SCHEME         iid | dirichlet:ALPHA | quantity:ALPHA | column:NAME (default iid)\n"
        "  --shards DIR           take hospitals as they come: every training file in DIR is a\n"
        "                         hospital, NAME.test.EXT beside it its local test file\n"
        "  --rounds R             (default 20)      --epochs E   local epochs per round (default 2)\n"
        "  --model ARCH           (default mlp:64,32)\n"
        "  --seed S               (default 1)\n"
        "  --weighting W          fedavg | fedce (contribution estimation, DESIGN 6.1; default fedavg)\n"
        "  --alignment V          none | comma list of gradient, hessian_diag, hgp (DESIGN 6.2)\n"
        "  --per-class MODE       off | client | server | federation (DESIGN 6.3)\n"
        "  --all                  = --weighting fedce --alignment gradient,hessian_diag --per-class client\n"
        "  --byzantine N:MODE     tests: the last N hospitals send sign_flip, scale or random updates\n"
        "  --config FILE          extra coordinator keys (INI), applied over the generated config\n"
        "  --deadline SECONDS     per-round deadline (default 60, or 3 per hospital per CPU core if more)\n"
        "  --port P               coordinator port (default: a free one)\n"
        "  --threads N            OpenBLAS threads per client (default 1)\n"
        "  --no-curve             plain TCP instead of CURVE (signatures are still checked)\n"
        "  --workdir DIR          where everything goes (default sim-run)\n"
        "  --prepare-only         write shards, keys and configs, print the commands, start nothing\n"
        "  --help, --version\n");
}

static int s_die(const char *fmt, const char *arg) {
    fprintf(stderr, "concord-sim: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 2;
}

static int s_parse(s_sim_t *s, int argc, char **argv) {
    static const struct option opts[] = {
        {"data", 1, 0, 'd'}, {"labels", 1, 0, 'L'}, {"test", 1, 0, 't'}, {"test-labels", 1, 0, 'T'},
        {"clients", 1, 0, 'n'}, {"rounds", 1, 0, 'r'}, {"split", 1, 0, 's'}, {"seed", 1, 0, 'S'},
        {"workdir", 1, 0, 'w'}, {"shards", 1, 0, 'D'}, {"config", 1, 0, 'c'}, {"model", 1, 0, 'm'},
        {"epochs", 1, 0, 'e'}, {"deadline", 1, 0, 'l'}, {"port", 1, 0, 'p'}, {"threads", 1, 0, 'j'},
        {"no-curve", 0, 0, 'C'}, {"prepare-only", 0, 0, 'P'}, {"weighting", 1, 0, 'W'},
        {"alignment", 1, 0, 'A'}, {"per-class", 1, 0, 'K'}, {"all", 0, 0, 'Z'}, {"byzantine", 1, 0, 'Y'}, {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': s->data = optarg; break;
        case 'L': s->labels = optarg; break;
        case 't': s->test = optarg; break;
        case 'T': s->test_labels = optarg; break;
        case 's': s->split = optarg; break;
        case 'w': s->workdir = optarg; break;
        case 'D': s->shards = optarg; break;
        case 'c': s->config = optarg; break;
        case 'm': s->model = optarg; break;
        case 'C': s->curve = 0; break;
        case 'P': s->prepare_only = 1; break;
        case 'W': s->weighting = optarg; break;
        case 'A': s->alignment = optarg; break;
        case 'K': s->per_class = optarg; break;
        case 'Y': {
            char *colon = strchr(optarg, ':');
            s->byzantine = (int)strtol(optarg, &end, 10);
            if (!colon || end != colon || s->byzantine < 1) return s_die("--byzantine: expected N:MODE, got \"%s\"", optarg);
            s->byzantine_mode = colon + 1;
            break;
        }
        /* Per-class client mode: server mode diverges with multi-step local updates
         * (docs/results.md), so "everything on" uses the stable one. */
        case 'Z': s->weighting = "fedce", s->alignment = "gradient,hessian_diag", s->per_class = "client"; break;
        case 'n': s->clients = (int)strtol(optarg, &end, 10);
            if (*end || s->clients < 1 || s->clients > SIM_MAX_SITES) return s_die("--clients: expected 1..1000, got \"%s\"", optarg);
            break;
        case 'r': s->rounds = strtol(optarg, &end, 10);
            if (*end || s->rounds < 1) return s_die("--rounds: expected a positive integer, got \"%s\"", optarg);
            break;
        case 'e': s->epochs = strtol(optarg, &end, 10);
            if (*end || s->epochs < 0) return s_die("--epochs: expected an integer >= 0, got \"%s\"", optarg);
            break;
        case 'S': s->seed = strtoull(optarg, &end, 10);
            if (*end) return s_die("--seed: expected an integer, got \"%s\"", optarg);
            break;
        case 'l': s->deadline = strtod(optarg, &end);
            if (*end || s->deadline <= 0) return s_die("--deadline: expected seconds > 0, got \"%s\"", optarg);
            break;
        case 'p': s->port = (int)strtol(optarg, &end, 10);
            if (*end || s->port < 1 || s->port > 65535) return s_die("--port: expected 1..65535, got \"%s\"", optarg);
            break;
        case 'j': s->threads = (int)strtol(optarg, &end, 10);
            if (*end || s->threads < 1) return s_die("--threads: expected >= 1, got \"%s\"", optarg);
            break;
        case 'h': s_usage(stdout); return 0;
        case 'V': printf("concord-sim %s\n", CONCORD_VERSION); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (optind < argc) return s_die("unexpected argument \"%s\" (see --help)", argv[optind]);
    if (!s->data == !s->shards) return s_die("%s", "give either --data FILE or --shards DIR (see --help)");
    return -1;
}

static char *s_abs(const char *path) {
    char buf[PATH_MAX];
    if (path[0] == '/') return cc_xstrdup(path);
    if (!getcwd(buf, sizeof buf)) return cc_xstrdup(path);
    size_t n = strlen(buf) + strlen(path) + 2;
    char *out = cc_xmalloc(n);
    snprintf(out, n, "%s/%s", buf, path);
    return out;
}

static char *s_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *out = cc_xmalloc(n);
    snprintf(out, n, "%s/%s", dir, name);
    return out;
}

static int s_mkdir(const char *path) {
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "concord-sim: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Starts argv[0] from our bin dir with stdout+stderr to log (NULL: inherit), `nicer`
 * steps below our own CPU priority. */
static pid_t s_spawn(const s_sim_t *s, char *const argv[], const char *log, int nicer) {
    char *bin = s_join(s->bindir, argv[0]);
    pid_t pid = fork();
    if (pid == 0) {
        if (log) {
            FILE *f = fopen(log, "w");
            if (f) dup2(fileno(f), 1), dup2(fileno(f), 2);
        }
        setpgid(0, 0);
        if (nicer) {
            errno = 0;
            int now = getpriority(PRIO_PROCESS, 0);
            if (errno == 0) setpriority(PRIO_PROCESS, 0, now + nicer > 19 ? 19 : now + nicer);
        }
        execv(bin, argv);
        fprintf(stderr, "concord-sim: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    free(bin);
    return pid;
}

/* Runs concord-data split and reads its summary.json into the site list. */
static int s_split(s_sim_t *s, const char *shard_dir) {
    char clients[16], seed[32];
    snprintf(clients, sizeof clients, "%d", s->clients);
    snprintf(seed, sizeof seed, "%llu", s->seed);
    char *argv[16] = {"concord-data", "split", (char *)s->data, "--clients", clients, "--scheme",
                      (char *)s->split, "--seed", seed, "--out", (char *)shard_dir, "--min-per-client", "5"};
    int n = 13;
    if (s->labels) argv[n++] = "--labels", argv[n++] = (char *)s->labels;
    argv[n] = NULL;
    pid_t pid = s_spawn(s, argv, NULL, 0);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "concord-sim: splitting %s failed\n", s->data);
        return -1;
    }
    char *summary = s_join(shard_dir, "summary.json");
    json_t *j = json_load_file(summary, 0, NULL);
    free(summary);
    json_t *shards = json_object_get(j, "shards");
    for (size_t i = 0; i < json_array_size(shards) && s->n_sites < SIM_MAX_SITES; i++) {
        json_t *sh = json_array_get(shards, i);
        s_site_t *site = &s->sites[s->n_sites++];
        snprintf(site->name, sizeof site->name, "%s", json_string_value(json_object_get(sh, "name")));
        site->file = s_join(shard_dir, json_string_value(json_object_get(sh, "file")));
        const char *labels = json_string_value(json_object_get(sh, "labels"));
        site->labels = labels ? s_join(shard_dir, labels) : NULL;
    }
    json_decref(j);
    return s->n_sites ? 0 : -1;
}

static int s_by_name(const void *a, const void *b) {
    return strcmp(((const s_site_t *)a)->name, ((const s_site_t *)b)->name);
}

/* Natural sites: every training file of dir is a hospital; NAME.test.EXT its local test. */
static int s_scan_shards(s_sim_t *s) {
    DIR *d = opendir(s->shards);
    if (!d) {
        fprintf(stderr, "concord-sim: --shards %s: %s\n", s->shards, strerror(errno));
        return -1;
    }
    char *dir = s_abs(s->shards);
    struct dirent *e;
    while ((e = readdir(d)) && s->n_sites < SIM_MAX_SITES) {
        const char *dot = strchr(e->d_name, '.');
        if (e->d_name[0] == '.' || !dot || strstr(e->d_name, ".test.") || strcmp(e->d_name, "summary.json") == 0)
            continue;
        s_site_t *site = &s->sites[s->n_sites++];
        snprintf(site->name, sizeof site->name, "%.*s", (int)(dot - e->d_name), e->d_name);
        site->file = s_join(dir, e->d_name);
        char test[NAME_MAX + 8];
        snprintf(test, sizeof test, "%.*s.test%s", (int)(dot - e->d_name), e->d_name, dot);
        char *tp = s_join(dir, test);
        if (access(tp, R_OK) == 0) site->test = tp;
        else free(tp);
    }
    closedir(d);
    free(dir);
    qsort(s->sites, (size_t)s->n_sites, sizeof *s->sites, s_by_name);
    if (!s->n_sites) fprintf(stderr, "concord-sim: --shards %s holds no data files\n", s->shards);
    return s->n_sites ? 0 : -1;
}

/* The model's input size, class count and image shape, from every shard and the test set. */
typedef struct {
    size_t d;
    int classes, c, h, w;
} s_shape_t;

static int s_data_shape(const s_sim_t *s, s_shape_t *sh) {
    memset(sh, 0, sizeof *sh);
    cc_err_t err = {0};
    for (int i = 0; i <= s->n_sites; i++) {
        const char *path = i < s->n_sites ? s->sites[i].file : s->test;
        const char *labels = i < s->n_sites ? s->sites[i].labels : s->test_labels;
        if (!path) continue;
        data_load_opts_t lo = {.labels_path = labels};
        dataset_t *ds = NULL;
        if (dataset_load(path, &lo, &ds, &err) != 0) {
            fprintf(stderr, "concord-sim: %s\n", err.msg);
            return -1;
        }
        if (sh->d && ds->d != sh->d) {
            fprintf(stderr, "concord-sim: %s has %zu features, %s has %zu\n", path, ds->d, s->sites[0].file, sh->d);
            dataset_destroy(&ds);
            return -1;
        }
        sh->d = ds->d;
        if (ds->n_classes > sh->classes) sh->classes = ds->n_classes;
        sh->c = ds->channels, sh->h = ds->height, sh->w = ds->width;
        dataset_destroy(&ds);
    }
    if (sh->classes < 2) sh->classes = 2;
    return 0;
}

/* Keys for the coordinator and every hospital, and the enrolment file. */
static int s_keys(const s_sim_t *s, const char *keydir) {
    cc_err_t err = {0};
    identity_t id;
    char *enrol = s_join(keydir, "enrolment.txt");
    FILE *fp = fopen(enrol, "w");
    int rc = fp ? 0 : -1;
    for (int i = -1; i < s->n_sites && rc == 0; i++) {
        rc = identity_generate(&id, i < 0 ? "coordinator" : s->sites[i].name, &err);
        if (!rc) rc = identity_save(&id, keydir, 1, &err);
        if (!rc && i >= 0) {
            char hex[65];
            identity_public_hex(hex, id.pk);
            fprintf(fp, "%s %s\n", id.id, hex);
        }
        identity_clear(&id);
    }
    if (fp && fclose(fp) != 0) rc = -1;
    if (rc) fprintf(stderr, "concord-sim: key generation failed: %s\n", err.msg[0] ? err.msg : strerror(errno));
    free(enrol);
    return rc;
}

static int s_write_coordinator_ini(const s_sim_t *s, const char *work, const s_shape_t *sh, const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp, "# generated by concord-sim\n[federation]\nrounds = %ld\nmin_clients = %d\nquorum = 0.5\n"
                "round_deadline_s = %g\nextension_s = %g\nseed = %llu\nbind = tcp://127.0.0.1:%d\n"
                "enrolment = %s/keys/enrolment.txt\n\n",
            s->rounds, s->n_sites, s->deadline, s->deadline / 2, s->seed, s->port, work);
    fprintf(fp, "[model]\narch = %s\ninputs = %zu\nclasses = %d\n", s->model, sh->d, sh->classes);
    if (sh->c) fprintf(fp, "image = %dx%dx%d\nstandardize = none\n", sh->c, sh->h, sh->w);
    fprintf(fp, "\n[aggregation]\nweighting = %s\n\n[alignment]\nvariants = %s\n\n[per_class]\nmode = %s\n",
            s->weighting ? s->weighting : "fedavg", s->alignment ? s->alignment : "none",
            s->per_class ? s->per_class : "off");
    fprintf(fp, "\n[training]\nepochs = %ld\n\n[security]\nidentity = %s/keys/coordinator.key\ncurve = %s\n\n",
            s->epochs, work, s->curve ? "true" : "false");
    fprintf(fp, "[storage]\nstate_dir = %s/coordinator-state\nexport = %s/final-model\nledger = %s/ledger.jsonl\n\n",
            work, work, work);
    fprintf(fp, "[metrics]\nhistory = %s/history.jsonl\n", work);
    if (s->test) {
        char *t = s_abs(s->test);
        fprintf(fp, "test_data = %s\n", t);
        free(t);
        if (s->test_labels) {
            t = s_abs(s->test_labels);
            fprintf(fp, "test_labels = %s\n", t);
            free(t);
        }
    }
    return fclose(fp);
}

static int s_write_client_ini(const s_sim_t *s, const char *work, const s_site_t *site, const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp, "# generated by concord-sim\n[client]\nid = %s\ndata = %s\nstate_dir = %s/clients/%s\n", site->name,
            site->file, work, site->name);
    if (site->labels) fprintf(fp, "labels = %s\n", site->labels);
    if (site->test) fprintf(fp, "test_data = %s\n", site->test);
    fprintf(fp, "\n[coordinator]\nendpoint = tcp://127.0.0.1:%d\npublic_key = %s/keys/coordinator.pub\n\n"
                "[security]\nidentity = %s/keys/%s.key\ncurve = %s\n\n[training]\nthreads = %d\n\n"
                "[network]\nheartbeat_s = 2\nreconnect_min_ms = 100\nreconnect_max_ms = 2000\n",
            s->port, work, work, site->name, s->curve ? "true" : "false", s->threads);
    return fclose(fp);
}

static int s_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = 7700;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* ---- running and watching ------------------------------------------------------------- */

static void s_kill_all(s_sim_t *s, int sig) {
    for (int i = 0; i < s->n_sites; i++)
        if (s->pids[i] > 0) kill(s->pids[i], sig);
    if (s->coordinator > 0) kill(s->coordinator, sig);
}

/* Waits for every child; after `grace` seconds the survivors get SIGKILL. */
static void s_reap_all(s_sim_t *s, double grace) {
    double until = cc_now() + grace;
    for (;;) {
        int alive = 0;
        for (int i = -1; i < s->n_sites; i++) {
            pid_t *p = i < 0 ? &s->coordinator : &s->pids[i];
            if (*p > 0 && waitpid(*p, NULL, WNOHANG) == *p) *p = 0;
            alive += *p > 0;
        }
        if (!alive) return;
        if (cc_now() > until) s_kill_all(s, SIGKILL), until = cc_now() + 60;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static double s_num(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : -1.0;
}

static void s_print_row(json_t *line) {
    json_t *g = json_object_get(line, "global"), *f = json_object_get(line, "federated");
    json_t *m = json_is_object(g) ? g : f;
    char acc[16] = "   -  ", bal[16] = "   -  ";
    if (json_is_object(m)) {
        snprintf(acc, sizeof acc, "%.4f", s_num(m, "accuracy"));
        snprintf(bal, sizeof bal, "%.4f", s_num(m, "balanced_accuracy"));
    }
    printf("%5lld  %-8s %4zu/%-4zu  %8s  %8s  %-14.14s %7.3fs  %7.3fs\n",
           (long long)json_integer_value(json_object_get(line, "round")),
           json_string_value(json_object_get(line, "status")), json_array_size(json_object_get(line, "responded")),
           json_array_size(json_object_get(line, "participants")), acc, bal,
           json_string_value(json_object_get(line, "slowest_client")), s_num(line, "slowest_train_s"),
           s_num(line, "duration_s"));
    fflush(stdout);
}

/* Prints the history lines that appeared since *offset. Returns the last line (owned) or NULL. */
static json_t *s_follow(const char *history, long *offset, json_t *last) {
    FILE *fp = fopen(history, "r");
    if (!fp) return last;
    fseek(fp, *offset, SEEK_SET);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0 && line[n - 1] == '\n') {
        *offset += n;
        json_t *j = json_loads(line, 0, NULL);
        if (!j) continue;
        s_print_row(j);
        json_decref(last);
        last = j;
    }
    free(line);
    fclose(fp);
    return last;
}

/* Watches the run until the coordinator exits; returns its exit status (or -1). */
static int s_watch(s_sim_t *s, const char *history, json_t **last) {
    long offset = 0;
    int status = -1;
    printf("\nround  status   answered  global_acc  bal_acc  slowest        train     round\n");
    while (!s_interrupted) {
        *last = s_follow(history, &offset, *last);
        pid_t done = waitpid(s->coordinator, &status, WNOHANG);
        if (done == s->coordinator) {
            s->coordinator = 0;
            *last = s_follow(history, &offset, *last);
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        for (int i = 0; i < s->n_sites; i++) {
            int cs;
            if (s->pids[i] > 0 && waitpid(s->pids[i], &cs, WNOHANG) == s->pids[i]) {
                s->pids[i] = 0;
                if (!WIFEXITED(cs) || WEXITSTATUS(cs) != 0)
                    fprintf(stderr, "concord-sim: hospital %s stopped (status %d); see its log\n", s->sites[i].name,
                            WIFEXITED(cs) ? WEXITSTATUS(cs) : -1);
            }
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void s_summary(const s_sim_t *s, const char *work, json_t *last, double seconds) {
    printf("\n== summary ==\n%d hospitals, %ld rounds, %.1f s, model %s; weighting %s, alignment %s, per-class %s\n",
           s->n_sites, s->rounds, seconds, s->model, s->weighting ? s->weighting : "fedavg",
           s->alignment ? s->alignment : "none", s->per_class ? s->per_class : "off");
    if (last) {
        json_t *g = json_object_get(last, "global"), *ft = json_object_get(last, "federated_test");
        if (json_is_object(g)) {
            printf("global test set (%lld rows): accuracy %.4f, balanced accuracy %.4f, macro-F1 %.4f\n",
                   (long long)s_num(g, "n"), s_num(g, "accuracy"), s_num(g, "balanced_accuracy"), s_num(g, "macro_f1"));
            json_t *recall = json_object_get(g, "recall");
            printf("recall per class:");
            for (size_t k = 0; k < json_array_size(recall); k++)
                printf("  %zu: %.4f", k, json_number_value(json_array_get(recall, k)));
            printf("\n");
        }
        if (json_is_object(ft))
            printf("hospitals' local test sets (mean): accuracy %.4f, balanced accuracy %.4f\n",
                   s_num(ft, "accuracy"), s_num(ft, "balanced_accuracy"));
        json_t *clients = json_object_get(last, "clients"), *cl;
        const char *id;
        printf("\n%-14s %9s %8s  %s\n", "hospital", "samples", "weight", "val acc (global model)");
        json_object_foreach(clients, id, cl) {
            json_t *v = json_object_get(cl, "val");
            printf("%-14s %9lld %8.4f  %.4f\n", id, (long long)s_num(cl, "n_samples"), s_num(cl, "weight"),
                   json_is_object(v) ? s_num(v, "accuracy") : -1.0);
        }
    }
    printf("\nfiles in %s: history.jsonl, ledger.jsonl (signed), final-model.ckpt / .safetensors, logs/, keys/, "
           "configs/\n", work);
}

/* Every hospital trains on this machine's cores at once, so a round takes about
 * (hospitals / cores) times one hospital's training. 3 s per hospital per core is three
 * times what a CNN round on Fashion-MNIST needs (100 hospitals on 2 cores: 50 s), and it is
 * only a ceiling: a round closes as soon as every hospital has answered. */
static double s_default_deadline(int hospitals) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double per_core = (double)hospitals / (double)(cores > 0 ? cores : 1);
    return per_core * 3.0 > 60.0 ? per_core * 3.0 : 60.0;
}

static int s_prepare(s_sim_t *s, const char *work, s_shape_t *sh) {
    char *sub[] = {"keys", "configs", "logs", "clients", "shards"};
    if (s_mkdir(work)) return -1;
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
        char *p = s_join(work, sub[i]);
        int rc = s_mkdir(p);
        free(p);
        if (rc) return -1;
    }
    char *shard_dir = s_join(work, "shards");
    int rc = s->shards ? s_scan_shards(s) : s_split(s, shard_dir);
    free(shard_dir);
    if (rc || s_data_shape(s, sh)) return -1;
    char *keydir = s_join(work, "keys");
    rc = s_keys(s, keydir);
    free(keydir);
    if (!s->deadline) s->deadline = s_default_deadline(s->n_sites);
    return rc;
}

/* Writes configs/coordinator.ini and configs/<site>.ini. */
static int s_write_configs(const s_sim_t *s, const char *work, const s_shape_t *sh) {
    char *cini = s_join(work, "configs/coordinator.ini");
    int rc = s_write_coordinator_ini(s, work, sh, cini);
    free(cini);
    for (int i = 0; i < s->n_sites && rc == 0; i++) {
        char name[128];
        snprintf(name, sizeof name, "configs/%s.ini", s->sites[i].name);
        char *ini = s_join(work, name);
        rc = s_write_client_ini(s, work, &s->sites[i], ini);
        free(ini);
    }
    if (rc) fprintf(stderr, "concord-sim: cannot write the configs in %s/configs\n", work);
    return rc;
}

static void s_print_commands(const s_sim_t *s, const char *work) {
    printf("prepared %s for %d hospitals; run:\n  %s/concord-coordinator --config %s/configs/coordinator.ini\n",
           work, s->n_sites, s->bindir, work);
    for (int i = 0; i < s->n_sites; i++)
        printf("  %s/concord-client --config %s/configs/%s.ini\n", s->bindir, work, s->sites[i].name);
}

/* The coordinator holds one descriptor per hospital connection and inherits our limit.
 * Raises the soft limit as far as needed (up to the hard limit); refuses when even the hard
 * limit is too low, rather than leaving hospitals unable to connect and the federation
 * waiting for them forever. */
static int s_fd_limit(const s_sim_t *s) {
    struct rlimit rl;
    rlim_t need = (rlim_t)s->n_sites + SIM_FD_MARGIN;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need) return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr, "concord-sim: %d hospitals need %llu open files in the coordinator, the hard limit is %llu; "
                        "raise it (ulimit -Hn) or run fewer hospitals\n",
                s->n_sites, (unsigned long long)need, (unsigned long long)rl.rlim_max);
        return -1;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "concord-sim: cannot raise the open-file limit to %llu: %s\n", (unsigned long long)need,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int s_launch(s_sim_t *s, const char *work) {
    if (s_fd_limit(s)) return -1;
    char *cini = s_join(work, "configs/coordinator.ini"), *log = s_join(work, "logs/coordinator.log");
    char *cargv[] = {"concord-coordinator", "--config", cini, s->config ? "--config" : NULL, (char *)s->config, NULL};
    s->coordinator = s_spawn(s, cargv, log, 0);
    free(log);
    for (int i = 0; i < s->n_sites; i++) {
        char name[128];
        snprintf(name, sizeof name, "configs/%s.ini", s->sites[i].name);
        char *ini = s_join(work, name);
        snprintf(name, sizeof name, "logs/%s.log", s->sites[i].name);
        char *clog = s_join(work, name);
        int byz = s->byzantine && i >= s->n_sites - s->byzantine;
        /* On one machine the hospitals share the coordinator's cores (in a federation each
         * has its own); everyone waits on the coordinator, so it must not be starved by
         * them. A lower priority costs the hospitals nothing while it is idle. */
        char *argv[] = {"concord-client", "--config", ini, byz ? "--test-byzantine" : NULL, (char *)s->byzantine_mode, NULL};
        s->pids[i] = s_spawn(s, argv, clog, SIM_CLIENT_NICE);
        free(ini), free(clog);
    }
    printf("started the coordinator (127.0.0.1:%d) and %d hospitals; logs in %s/logs\n", s->port, s->n_sites, work);
    free(cini);
    return 0;
}

static void s_self_dir(char *out, size_t len) {
    ssize_t n = readlink("/proc/self/exe", out, len - 1);
    out[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
}

int main(int argc, char **argv) {
    static s_sim_t s = {.split = "iid", .workdir = "sim-run", .model = "mlp:64,32", .clients = 4, .rounds = 20,
                        .epochs = 2, .seed = 1, .curve = 1, .threads = 1};
    int rc = s_parse(&s, argc, argv);
    if (rc >= 0) return rc;
    s_self_dir(s.bindir, sizeof s.bindir);
    if (!s.port) s.port = s_free_port();
    char *work = s_abs(s.workdir);
    s_shape_t sh;
    double t0 = cc_now();
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    json_t *last = NULL;
    int started = 0;
    char *history = s_join(work, "history.jsonl");
    if (s_prepare(&s, work, &sh) || s_write_configs(&s, work, &sh)) rc = 1;
    else if (s.prepare_only) s_print_commands(&s, work), rc = 0;
    else if (s_launch(&s, work)) rc = 2;
    else rc = s_watch(&s, history, &last), started = 1;
    free(history);
    if (rc == -1 && !s_interrupted) rc = 1;
    if (s_interrupted) fprintf(stderr, "\nconcord-sim: interrupted, stopping every daemon\n");
    s_kill_all(&s, SIGTERM);
    s_reap_all(&s, 3.0);
    if (rc == 0 && !s.prepare_only) s_summary(&s, work, last, cc_now() - t0);
    else if (rc != 0 && started && !s_interrupted)
        fprintf(stderr, "concord-sim: the coordinator failed; see %s/logs/coordinator.log\n", work);
    json_decref(last);
    for (int i = 0; i < s.n_sites; i++) free(s.sites[i].file), free(s.sites[i].labels), free(s.sites[i].test);
    free(work);
    return s_interrupted ? 130 : rc;
}
