/* fuzz_config.c — libFuzzer target for config_load_file (common/config.h): INI text from a
 * file an operator wrote.
 *
 * Input: the whole file. The keys declared are those of deploy/coordinator.ini and
 * deploy/client.ini (so those files, in the seed corpus, load), each read back with the
 * typed getter a daemon would use (int, u64, double, bool, choice, path, string). After
 * the file, the first line of the input is also applied as a --set assignment, the file is
 * loaded a second time on top (duplicate keys, the last wins), and config_print writes
 * the result to /dev/null. No crash, hang or leak on any input; the only property checked
 * is CONFIG-2: a failed load leaves every value as it was. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

typedef enum { T_STR, T_INT, T_U64, T_DOUBLE, T_BOOL, T_CHOICE, T_PATH } s_type_t;

typedef struct {
    const char *key, *def;
    s_type_t type;
    double lo, hi;
    const char *choices;
} s_key_t;

static const s_key_t s_keys[] = {
    {"federation.rounds", "20", T_INT, 1, 1000000, NULL},
    {"federation.min_clients", "2", T_INT, 1, 100000, NULL},
    {"federation.quorum", "0.5", T_DOUBLE, 0, 1, NULL},
    {"federation.join_timeout_s", "60", T_DOUBLE, 0.01, 1e7, NULL},
    {"federation.round_deadline_s", "60", T_DOUBLE, 0.01, 1e7, NULL},
    {"federation.extension_s", "30", T_DOUBLE, 0, 1e7, NULL},
    {"federation.seed", "1", T_U64, 0, 0, NULL},
    {"federation.bind", "tcp://*:7700", T_STR, 0, 0, NULL},
    {"federation.enrolment", NULL, T_PATH, 0, 0, NULL},
    {"model.arch", "softmax", T_STR, 0, 0, NULL},
    {"model.activation", "relu", T_CHOICE, 0, 0, "relu|gelu|tanh"},
    {"model.dropout", "0", T_DOUBLE, 0, 0.99, NULL},
    {"model.inputs", NULL, T_INT, 1, 1 << 26, NULL},
    {"model.classes", NULL, T_INT, 2, 1 << 16, NULL},
    {"model.standardize", "federated", T_CHOICE, 0, 0, "none|local|federated"},
    {"training.epochs", "1", T_INT, 0, 100000, NULL},
    {"training.batch", "32", T_INT, 1, 1 << 20, NULL},
    {"training.optimizer", "sgd", T_CHOICE, 0, 0, "sgd|adam"},
    {"training.lr", "0.05", T_DOUBLE, 0, 1e3, NULL},
    {"training.momentum", "0.9", T_DOUBLE, 0, 0.9999, NULL},
    {"training.weight_decay", "0", T_DOUBLE, 0, 1, NULL},
    {"training.threads", "1", T_INT, 1, 256, NULL},
    {"aggregation.server_lr", "1", T_DOUBLE, 0, 100, NULL},
    {"aggregation.max_update_norm", "1e4", T_DOUBLE, 0, 1e30, NULL},
    {"aggregation.weighting", "fedavg", T_CHOICE, 0, 0, "fedavg|fedce"},
    {"security.identity", NULL, T_PATH, 0, 0, NULL},
    {"security.curve", "true", T_BOOL, 0, 0, NULL},
    {"storage.state_dir", ".", T_PATH, 0, 0, NULL},
    {"storage.keep_checkpoints", "3", T_INT, 1, 1000, NULL},
    {"storage.export", NULL, T_PATH, 0, 0, NULL},
    {"metrics.http_bind", "", T_STR, 0, 0, NULL},
    {"metrics.history", NULL, T_PATH, 0, 0, NULL},
    {"metrics.test_data", "", T_PATH, 0, 0, NULL},
    {"metrics.test_labels", "", T_PATH, 0, 0, NULL},
    {"client.id", NULL, T_STR, 0, 0, NULL},
    {"client.data", NULL, T_PATH, 0, 0, NULL},
    {"client.labels", "", T_PATH, 0, 0, NULL},
    {"client.test_data", "", T_PATH, 0, 0, NULL},
    {"client.test_labels", "", T_PATH, 0, 0, NULL},
    {"client.val_frac", "0.1", T_DOUBLE, 0, 0.9, NULL},
    {"client.state_dir", ".", T_PATH, 0, 0, NULL},
    {"client.label_column", "", T_STR, 0, 0, NULL},
    {"coordinator.endpoint", NULL, T_STR, 0, 0, NULL},
    {"coordinator.public_key", NULL, T_PATH, 0, 0, NULL},
    {"network.heartbeat_s", "5", T_DOUBLE, 0.1, 3600, NULL},
    {"network.reconnect_min_ms", "200", T_INT, 1, 3600000, NULL},
    {"network.reconnect_max_ms", "10000", T_INT, 1, 3600000, NULL},
};
#define S_NKEYS (sizeof s_keys / sizeof s_keys[0])

static FILE *s_null;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    s_null = fopen("/dev/null", "w");
    if (!s_null) abort();
    return 0;
}

static config_t *s_new_config(void) {
    config_t *cfg = config_new();
    for (size_t i = 0; i < S_NKEYS; i++) config_declare(cfg, s_keys[i].key, s_keys[i].def, "fuzz");
    return cfg;
}

/* Reads every key with its typed getter. */
static void s_read_all(const config_t *cfg) {
    for (size_t i = 0; i < S_NKEYS; i++) {
        const s_key_t *k = &s_keys[i];
        cc_err_t err = {0};
        long l;
        uint64_t u;
        double d;
        int b;
        const char *s;
        char *p;
        switch (k->type) {
        case T_STR: (void)!config_get_str(cfg, k->key, &s, &err); break;
        case T_INT: (void)!config_get_int(cfg, k->key, (long)k->lo, (long)k->hi, &l, &err); break;
        case T_U64: (void)!config_get_u64(cfg, k->key, &u, &err); break;
        case T_DOUBLE: (void)!config_get_double(cfg, k->key, k->lo, k->hi, &d, &err); break;
        case T_BOOL: (void)!config_get_bool(cfg, k->key, &b, &err); break;
        case T_CHOICE: (void)!config_get_choice(cfg, k->key, k->choices, &b, &err); break;
        case T_PATH:
            p = config_get_path(cfg, k->key);
            free(p);
            break;
        }
        (void)config_origin(cfg, k->key);
        (void)config_is_set(cfg, k->key);
    }
}

/* CONFIG-2: after a failed load, every value and origin is what it was. */
static void s_check_unchanged(const config_t *cfg, char **vals, char **origins) {
    for (size_t i = 0; i < S_NKEYS; i++) {
        const char *v = config_get(cfg, s_keys[i].key), *o = config_origin(cfg, s_keys[i].key);
        if ((v == NULL) != (vals[i] == NULL) || (v && strcmp(v, vals[i]) != 0) ||
            (o == NULL) != (origins[i] == NULL) || (o && strcmp(o, origins[i]) != 0)) {
            fprintf(stderr, "fuzz_config: a failed load changed %s\n", s_keys[i].key);
            abort();
        }
    }
}

static void s_snapshot(const config_t *cfg, char **vals, char **origins) {
    for (size_t i = 0; i < S_NKEYS; i++) {
        const char *v = config_get(cfg, s_keys[i].key), *o = config_origin(cfg, s_keys[i].key);
        vals[i] = v ? strdup(v) : NULL;
        origins[i] = o ? strdup(o) : NULL;
    }
}

static void s_free_snapshot(char **vals, char **origins) {
    for (size_t i = 0; i < S_NKEYS; i++) {
        free(vals[i]);
        free(origins[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfile(0, data, size);
    config_t *cfg = s_new_config();
    cc_err_t err = {0};
    char *vals[S_NKEYS], *origins[S_NKEYS];

    s_snapshot(cfg, vals, origins);
    int rc = config_load_file(cfg, path, &err);
    fuzz_report("config_load_file", rc, err.msg);
    if (rc != 0) s_check_unchanged(cfg, vals, origins);
    s_free_snapshot(vals, origins);
    s_read_all(cfg);

    /* the first line as a --set assignment */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t n = nl ? (size_t)(nl - data) : size;
    char *line = malloc(n + 1);
    if (!line) abort();
    memcpy(line, data, n);
    line[n] = '\0';
    (void)!config_set_assignment(cfg, line, &err);
    free(line);

    if (rc == 0) { /* the same file again, on top */
        s_snapshot(cfg, vals, origins);
        if (config_load_file(cfg, path, &err) != 0) s_check_unchanged(cfg, vals, origins);
        s_free_snapshot(vals, origins);
        s_read_all(cfg);
    }
    config_print(cfg, s_null, 1);
    config_destroy(&cfg);
    return 0;
}
