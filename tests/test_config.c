/* test_config.c — INI configuration with command-line overrides.
 *
 * Acceptance: defaults; a file overrides defaults and flags (dedicated and --set) override the
 * file; duplicate keys (last wins); comments, inline comments, CRLF, a BOM, lines far longer
 * than libinih's 200-byte default; paths resolved against the file's directory; every
 * boolean spelling; choices; config_print round trips (print, load the output, same values).
 * Rejection: every getter's format and range errors, each message naming file, line,
 * section, key, what was expected and what was found (or the flag); unknown sections and
 * keys (with hints), keys before any section, syntax errors at their line, NUL bytes,
 * unreadable files, malformed --set; a failed load leaves the config unchanged.
 * Daemon command lines: every --config loads before any flag, wherever it stands; the first
 * bad file stops pass 1; the end of pass 2 turns a config error or a stray argument into
 * "prog: ..." and exit code 2. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char s_dir[64];
static config_t *s_cfg;

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static const config_key_t s_keys[] = {
    {"federation.rounds", "20", "Number of rounds."},
    {"federation.quorum", "0.5", "Fraction of selected clients needed at the deadline."},
    {"federation.seed", "1", "Seed of theta_0 and client selection."},
    {"federation.bind", "tcp://*:7700", "ZeroMQ endpoint the coordinator binds."},
    {"federation.enrolment", NULL, "Enrolment file."},
    {"model.arch", "mlp:64,32", "Model architecture."},
    {"model.standardize", "federated", "federated | local | none."},
    {"security.curve", "true", "CURVE encryption."},
    {"security.identity", NULL, "Path of the coordinator's secret key."},
    {"storage.state_dir", "state", "State directory."},
    {"metrics.http_bind", "127.0.0.1:9100", "Prometheus endpoint; empty = off."},
    {"training.lr", "0.05", "Learning rate.\nSecond help line."},
};

static config_t *s_new_config(void) {
    config_t *c = config_new();
    cr_assert_not_null(c);
    config_declare_table(c, s_keys, sizeof s_keys / sizeof s_keys[0]);
    return c;
}

static void s_setup(void) {
    snprintf(s_dir, sizeof s_dir, "/tmp/concord_cfg_XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    s_cfg = s_new_config();
}

static void s_teardown(void) {
    config_destroy(&s_cfg);
    nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = s_setup, .fini = s_teardown);

/* Path of name in the temp dir (new string). */
static char *s_path(const char *name) {
    char *p = malloc(strlen(s_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", s_dir, name);
    return p;
}

/* Writes text to the temp dir as name; returns its path (caller frees). */
static char *s_write(const char *name, const char *text) {
    char *p = s_path(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s", p);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return p;
}

/* Asserts that msg contains every one of the NULL-terminated needles. */
static void s_has(const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    for (const char *n; (n = va_arg(ap, const char *));)
        cr_expect_not_null(strstr(msg, n), "message \"%s\" lacks \"%s\"", msg, n);
    va_end(ap);
}

/* ---- defaults, files, flags ---- */

Test(config, defaults) {
    cc_err_t err = {0};
    long rounds;
    double q, lr;
    int curve, idx;
    const char *s;
    uint64_t seed;
    cr_assert_eq(config_get_int(s_cfg, "federation.rounds", 1, 100000, &rounds, &err), 0, "%s", err.msg);
    cr_expect_eq(rounds, 20);
    cr_assert_eq(config_get_double(s_cfg, "federation.quorum", 0, 1, &q, &err), 0);
    cr_expect_eq(q, 0.5);
    cr_assert_eq(config_get_double(s_cfg, "training.lr", 0, INFINITY, &lr, &err), 0);
    cr_expect_eq(lr, 0.05);
    cr_assert_eq(config_get_bool(s_cfg, "security.curve", &curve, &err), 0);
    cr_expect_eq(curve, 1);
    cr_assert_eq(config_get_u64(s_cfg, "federation.seed", &seed, &err), 0);
    cr_expect_eq(seed, 1);
    cr_assert_eq(config_get_str(s_cfg, "federation.bind", &s, &err), 0);
    cr_expect_str_eq(s, "tcp://*:7700");
    cr_assert_eq(config_get_choice(s_cfg, "model.standardize", "none|local|federated", &idx, &err), 0);
    cr_expect_eq(idx, 2);
    cr_expect_null(config_get(s_cfg, "federation.enrolment"));
    cr_expect_null(config_get(s_cfg, "federation.nope"));
    cr_expect_str_eq(config_origin(s_cfg, "federation.rounds"), "default");
    cr_expect_eq(config_is_set(s_cfg, "federation.rounds"), 0);
    /* A missing value without default is an error naming the key and how to set it. */
    cr_expect_eq(config_get_str(s_cfg, "federation.enrolment", &s, &err), CC_ERR_ARG);
    s_has(err.msg, "[federation]", "enrolment", "--set federation.enrolment=", NULL);
    /* An undeclared key is an error too. */
    cr_expect_eq(config_get_int(s_cfg, "federation.nope", 0, 1, &rounds, &err), CC_ERR_ARG);
    s_has(err.msg, "federation.nope", NULL);
}

Test(config, file_overrides_defaults) {
    char *p = s_write("c.ini", "; a comment\n"
                               "# another comment\n"
                               "[federation]\n"
                               "rounds = 7\n"
                               "quorum=0.75   ; inline comment\n"
                               "\n"
                               "[model]\n"
                               "  arch = mlp:128\n" /* indented: an ordinary line */
                               "[security]\n"
                               "curve: off\n");      /* ':' as in configparser */
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    long rounds;
    double q;
    int curve;
    cr_assert_eq(config_get_int(s_cfg, "federation.rounds", 1, 100000, &rounds, &err), 0);
    cr_expect_eq(rounds, 7);
    cr_assert_eq(config_get_double(s_cfg, "federation.quorum", 0, 1, &q, &err), 0);
    cr_expect_eq(q, 0.75);
    cr_expect_str_eq(config_get(s_cfg, "model.arch"), "mlp:128");
    cr_assert_eq(config_get_bool(s_cfg, "security.curve", &curve, &err), 0);
    cr_expect_eq(curve, 0);
    cr_expect_str_eq(config_get(s_cfg, "training.lr"), "0.05"); /* untouched default */
    char want[512];
    snprintf(want, sizeof want, "%s:4", p);
    cr_expect_str_eq(config_origin(s_cfg, "federation.rounds"), want);
    cr_expect_eq(config_is_set(s_cfg, "federation.rounds"), 1);
    free(p);
}

Test(config, crlf_bom_and_empty_values) {
    char *p = s_write("c.ini", "\xEF\xBB\xBF[metrics]\r\nhttp_bind =\r\n[federation]\r\nrounds = 3\r\n");
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "metrics.http_bind"), "");
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "3");
    const char *s;
    cr_assert_eq(config_get_str(s_cfg, "metrics.http_bind", &s, &err), 0); /* empty is a value */
    cr_expect_str_eq(s, "");
    free(p);
}

Test(config, duplicate_keys_last_wins) {
    char *p = s_write("c.ini", "[federation]\nrounds = 3\nrounds = 4\n[model]\n[federation]\nrounds = 5\n");
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "5");
    char want[512];
    snprintf(want, sizeof want, "%s:6", p);
    cr_expect_str_eq(config_origin(s_cfg, "federation.rounds"), want);
    /* A second file loaded on top wins too. */
    char *q = s_write("d.ini", "[federation]\nrounds = 6\n");
    cr_assert_eq(config_load_file(s_cfg, q, &err), 0, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "6");
    free(p);
    free(q);
}

Test(config, flags_override_file) {
    char *p = s_write("c.ini", "[federation]\nrounds = 7\nquorum = 0.9\n[model]\narch = softmax\n");
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    cr_assert_eq(config_set(s_cfg, "federation.rounds", "11", "--rounds", &err), 0, "%s", err.msg);
    cr_assert_eq(config_set_assignment(s_cfg, "federation.quorum=0.25", &err), 0, "%s", err.msg);
    cr_assert_eq(config_set_assignment(s_cfg, " model.arch = mlp:8", &err), 0, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "11");
    cr_expect_str_eq(config_origin(s_cfg, "federation.rounds"), "--rounds");
    cr_expect_str_eq(config_get(s_cfg, "federation.quorum"), "0.25");
    cr_expect_str_eq(config_origin(s_cfg, "federation.quorum"), "--set federation.quorum");
    cr_expect_str_eq(config_get(s_cfg, "model.arch"), " mlp:8"); /* value kept verbatim */
    /* Values containing '=' keep everything after the first one. */
    cr_assert_eq(config_set_assignment(s_cfg, "federation.bind=tcp://a=b", &err), 0, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "federation.bind"), "tcp://a=b");
    free(p);
}

Test(config, set_rejects_unknown_and_malformed) {
    cc_err_t err = {0};
    cr_expect_eq(config_set(s_cfg, "federation.roudns", "3", "--set", &err), CC_ERR_ARG);
    s_has(err.msg, "--set", "[federation]", "roudns", "did you mean rounds", NULL);
    cr_expect_eq(config_set_assignment(s_cfg, "federatoin.rounds=3", &err), CC_ERR_ARG);
    s_has(err.msg, "unknown section [federatoin]", "did you mean [federation]", NULL);
    cr_expect_eq(config_set_assignment(s_cfg, "rounds=3", &err), CC_ERR_ARG);
    s_has(err.msg, "section.key", NULL);
    cr_expect_eq(config_set_assignment(s_cfg, "federation.rounds", &err), CC_ERR_ARG);
    s_has(err.msg, "expected section.key=value", "federation.rounds", NULL);
    cr_expect_eq(config_set(s_cfg, "model.lr", "0.1", "--set", &err), CC_ERR_ARG);
    s_has(err.msg, "belongs in section [training]", NULL);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "20");
}

/* ---- daemon command lines (config_load_from_args, config_args_finish) ---- */

static const struct option s_opts[] = {
    {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'}, {0, 0, 0, 0}};

/* Pass 2 as a daemon runs it: --set applies, 'c' is skipped. Returns config_args_finish's. */
static int s_pass2(int argc, char **argv, int rc, cc_err_t *err) {
    int ch;
    while (rc == 0 && (ch = getopt_long(argc, argv, CONFIG_SHORTOPTS, s_opts, NULL)) != -1)
        if (ch == 's') rc = config_set_assignment(s_cfg, optarg, err);
    return config_args_finish("prog", rc, err, argc, argv);
}

Test(config, args_files_load_before_flags) {
    char *a = s_write("a.ini", "[federation]\nrounds = 7\nquorum = 0.9\n");
    char *b = s_write("b.ini", "[federation]\nrounds = 9\n");
    char *argv[] = {"prog", "--set", "federation.rounds=3", "--config", a, "-c", b, NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    cc_err_t err = {0};
    int rc = config_load_from_args(s_cfg, argc, argv, s_opts, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "9"); /* files in order */
    cr_expect_eq(optind, 0);
    cr_expect_eq(s_pass2(argc, argv, rc, &err), -1, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "3"); /* the flag, though it came first */
    cr_expect_str_eq(config_get(s_cfg, "federation.quorum"), "0.9");
    free(a), free(b);
}

Test(config, args_first_bad_file_stops_pass1) {
    char *bad = s_write("bad.ini", "[federation]\nroudns = 7\n");
    char *good = s_write("good.ini", "[federation]\nrounds = 9\n");
    char *argv[] = {"prog", "--config", bad, "--config", good, NULL};
    cc_err_t err = {0};
    cr_expect_eq(config_load_from_args(s_cfg, 5, argv, s_opts, &err), CC_ERR_FORMAT);
    s_has(err.msg, bad, "roudns", NULL);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "20");
    cr_expect_eq(optind, 0);
    free(bad), free(good);
}

Test(config, args_finish_reports_usage_errors) {
    cr_redirect_stderr();
    cc_err_t err = {0};
    optind = 0;
    char *stray[] = {"prog", "--set", "federation.rounds=3", "extra", NULL};
    cr_expect_eq(s_pass2(4, stray, 0, &err), 2);
    optind = 0;
    char *unknown[] = {"prog", "--set", "nosuch.key=1", NULL};
    cr_expect_eq(s_pass2(3, unknown, 0, &err), 2);
    optind = 0;
    char *fine[] = {"prog", NULL};
    cr_expect_eq(s_pass2(1, fine, 0, &err), -1);
    fflush(stderr);
    cr_expect_stderr_eq_str("prog: unexpected argument \"extra\" (see --help)\n"
                            "prog: --set nosuch.key: unknown section [nosuch] (known sections: federation, "
                            "model, security, storage, metrics, training)\n");
}

/* ---- typed getters: errors name the origin, the key, the expectation and the value ---- */

/* Loads "[section]\n<padding>key = value\n" so the key sits on line 3, then runs check. */
static char *s_load_one(const char *section, const char *key, const char *value) {
    char text[1024];
    snprintf(text, sizeof text, "[%s]\n; padding\n%s = %s\n", section, key, value);
    char *p = s_write("coordinator.ini", text);
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    return p;
}

static void s_expect_file_error(const char *msg, const char *path, const char *section,
                                const char *key, const char *expected, const char *got) {
    char where[512], sec[128], quoted[256];
    snprintf(where, sizeof where, "%s:3: ", path);
    snprintf(sec, sizeof sec, "[%s] %s: ", section, key);
    snprintf(quoted, sizeof quoted, "got \"%s\"", got);
    s_has(msg, where, sec, expected, quoted, NULL);
    cr_expect_eq(strncmp(msg, path, strlen(path)), 0, "message \"%s\" should start with the file", msg);
}

Test(config, int_errors) {
    cc_err_t err = {0};
    long x = -1;
    const char *bad[] = {"ten", "", "1.5", "10k", "0x10", "99999999999999999999999", "+", "1 2", "--3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = s_load_one("federation", "rounds", bad[i]);
        cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, 100000, &x, &err), CC_ERR_ARG,
                     "accepted \"%s\"", bad[i]);
        s_expect_file_error(err.msg, p, "federation", "rounds", "expected an integer in [1, 100000]",
                            bad[i]);
        free(p);
    }
    char *p = s_load_one("federation", "rounds", "0");
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, 100000, &x, &err), CC_ERR_ARG);
    s_expect_file_error(err.msg, p, "federation", "rounds", "expected an integer in [1, 100000]", "0");
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, LONG_MAX, &x, &err), CC_ERR_ARG);
    s_has(err.msg, "expected an integer >= 1", NULL);
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 0, 100000, &x, &err), 0);
    cr_expect_eq(x, 0);
    free(p);
    p = s_load_one("federation", "rounds", "-12");
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", LONG_MIN, LONG_MAX, &x, &err), 0);
    cr_expect_eq(x, -12);
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", LONG_MIN, -20, &x, &err), CC_ERR_ARG);
    s_has(err.msg, "expected an integer <= -20", NULL);
    free(p);
    /* The same error from a flag names the flag. */
    cr_assert_eq(config_set(s_cfg, "federation.rounds", "ten", "--rounds", &err), 0);
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, 100000, &x, &err), CC_ERR_ARG);
    cr_expect_str_eq(err.msg, "--rounds: expected an integer in [1, 100000], got \"ten\"");
    cr_assert_eq(config_set(s_cfg, "federation.rounds", " 5", "--rounds", &err), 0);
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, 100000, &x, &err), CC_ERR_ARG);
    cr_assert_eq(config_set_assignment(s_cfg, "federation.rounds=ten", &err), 0);
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, 100000, &x, &err), CC_ERR_ARG);
    cr_expect_str_eq(err.msg, "--set federation.rounds: expected an integer in [1, 100000], got \"ten\"");
}

Test(config, bad_default_is_reported) {
    config_declare(s_cfg, "federation.rounds", "lots", "Number of rounds.");
    cc_err_t err = {0};
    long x;
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, 100, &x, &err), CC_ERR_ARG);
    s_has(err.msg, "[federation] rounds (default)", "got \"lots\"", NULL);
}

Test(config, u64_errors) {
    cc_err_t err = {0};
    uint64_t x = 0;
    const char *bad[] = {"-1", "abc", "0x", "18446744073709551616", "1e3", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = s_load_one("federation", "seed", bad[i]);
        cr_expect_eq(config_get_u64(s_cfg, "federation.seed", &x, &err), CC_ERR_ARG, "accepted \"%s\"", bad[i]);
        s_expect_file_error(err.msg, p, "federation", "seed", "expected an unsigned 64-bit integer", bad[i]);
        free(p);
    }
    char *p = s_load_one("federation", "seed", "18446744073709551615");
    cr_assert_eq(config_get_u64(s_cfg, "federation.seed", &x, &err), 0, "%s", err.msg);
    cr_expect_eq(x, UINT64_MAX);
    free(p);
    p = s_load_one("federation", "seed", "0xDEADbeef");
    cr_assert_eq(config_get_u64(s_cfg, "federation.seed", &x, &err), 0, "%s", err.msg);
    cr_expect_eq(x, 0xdeadbeefULL);
    free(p);
}

Test(config, double_errors) {
    cc_err_t err = {0};
    double x = -1;
    const char *bad[] = {"half", "nan", "inf", "-inf", "1.5", "-0.1", "0.5x", "", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = s_load_one("federation", "quorum", bad[i]);
        cr_expect_eq(config_get_double(s_cfg, "federation.quorum", 0, 1, &x, &err), CC_ERR_ARG,
                     "accepted \"%s\"", bad[i]);
        s_expect_file_error(err.msg, p, "federation", "quorum", "expected a number in [0, 1]", bad[i]);
        free(p);
    }
    char *p = s_load_one("federation", "quorum", "1e-1");
    cr_assert_eq(config_get_double(s_cfg, "federation.quorum", 0, 1, &x, &err), 0, "%s", err.msg);
    cr_expect_eq(x, 0.1);
    cr_expect_eq(config_get_double(s_cfg, "federation.quorum", 0.5, INFINITY, &x, &err), CC_ERR_ARG);
    s_has(err.msg, "expected a number >= 0.5", NULL);
    cr_expect_eq(config_get_double(s_cfg, "federation.quorum", -INFINITY, 0.05, &x, &err), CC_ERR_ARG);
    s_has(err.msg, "expected a number <= 0.05", NULL);
    free(p);
    p = s_load_one("federation", "quorum", "nan");
    cr_expect_eq(config_get_double(s_cfg, "federation.quorum", -INFINITY, INFINITY, &x, &err), CC_ERR_ARG);
    s_has(err.msg, "expected a finite number", NULL);
    free(p);
}

Test(config, bool_spellings_and_errors) {
    cc_err_t err = {0};
    const char *yes[] = {"true", "TRUE", "yes", "Yes", "on", "1"};
    const char *no[] = {"false", "False", "no", "NO", "off", "0"};
    for (size_t i = 0; i < 6; i++) {
        int b = -1;
        cr_assert_eq(config_set(s_cfg, "security.curve", yes[i], "--curve", &err), 0);
        cr_expect_eq(config_get_bool(s_cfg, "security.curve", &b, &err), 0, "%s", yes[i]);
        cr_expect_eq(b, 1, "%s", yes[i]);
        cr_assert_eq(config_set(s_cfg, "security.curve", no[i], "--curve", &err), 0);
        cr_expect_eq(config_get_bool(s_cfg, "security.curve", &b, &err), 0, "%s", no[i]);
        cr_expect_eq(b, 0, "%s", no[i]);
    }
    const char *bad[] = {"maybe", "2", "", "y", "enabled"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int b;
        char *p = s_load_one("security", "curve", bad[i]);
        cr_expect_eq(config_get_bool(s_cfg, "security.curve", &b, &err), CC_ERR_ARG, "accepted \"%s\"", bad[i]);
        s_expect_file_error(err.msg, p, "security", "curve", "expected a boolean", bad[i]);
        free(p);
    }
}

Test(config, choice) {
    cc_err_t err = {0};
    int idx = -1;
    const char *choices = "federated|local|none";
    const char *vals[] = {"federated", "local", "none"};
    for (int i = 0; i < 3; i++) {
        char *p = s_load_one("model", "standardize", vals[i]);
        cr_assert_eq(config_get_choice(s_cfg, "model.standardize", choices, &idx, &err), 0, "%s", err.msg);
        cr_expect_eq(idx, i);
        free(p);
    }
    const char *bad[] = {"Local", "loc", "localx", "", "federated|local"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = s_load_one("model", "standardize", bad[i]);
        cr_expect_eq(config_get_choice(s_cfg, "model.standardize", choices, &idx, &err), CC_ERR_ARG,
                     "accepted \"%s\"", bad[i]);
        s_expect_file_error(err.msg, p, "model", "standardize", "expected one of federated|local|none", bad[i]);
        free(p);
    }
}

Test(config, long_values_are_not_truncated) {
    /* Far beyond libinih's default 200-byte line buffer, which would split the line. */
    size_t n = 100000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    char *text = malloc(n + 64);
    sprintf(text, "[model]\narch = %s\n[federation]\nrounds = 9\n", big);
    char *p = s_write("c.ini", text);
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    cr_expect_str_eq(config_get(s_cfg, "model.arch"), big);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "9");
    /* An error quoting it stays readable: the value is elided, the explanation kept. */
    long x;
    cr_assert_eq(config_set(s_cfg, "federation.rounds", big, "--rounds", &err), 0);
    cr_expect_eq(config_get_int(s_cfg, "federation.rounds", 1, 10, &x, &err), CC_ERR_ARG);
    s_has(err.msg, "--rounds: expected an integer in [1, 10]", "...\"", NULL);
    free(big);
    free(text);
    free(p);
}

/* ---- file-level errors ---- */

/* Writes text as name and loads it: FORMAT, with a message that holds "<path><at>" and, unless
 * NULL, hint. */
static void s_load_fails(const char *name, const char *text, const char *at, const char *hint) {
    char *p = s_write(name, text);
    cc_err_t err = {0};
    cr_expect_eq(config_load_file(s_cfg, p, &err), CC_ERR_FORMAT, "%s", name);
    char where[512];
    snprintf(where, sizeof where, "%s%s", p, at);
    s_has(err.msg, where, hint, NULL);
    free(p);
}

Test(config, unknown_key) {
    s_load_fails("coordinator.ini", "[federation]\nrounds = 3\nroudns = 4\n",
                 ":3: [federation] unknown key \"roudns\"", "did you mean rounds?");
    /* Failed load: nothing applied, not even the good line before it. */
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "20");
    s_load_fails("c2.ini", "[model]\nlr = 0.1\n", ":2: [model] unknown key \"lr\"",
                 "belongs in section [training]");
}

Test(config, unknown_section) {
    s_load_fails("coordinator.ini", "[federation]\nrounds = 3\n\n[federatoin]\n; c\nquorum = 0.1\n",
                 ":4: unknown section [federatoin]", "did you mean [federation]?");
    /* An empty unknown section is an error too, reported at its header. */
    s_load_fails("c2.ini", "[federation]\nrounds = 3\n[bogus]\n", ":3: unknown section [bogus]",
                 "known sections: federation, model, security, storage, metrics, training");
    /* A section name longer than libinih's 50-byte buffer is reported in full. */
    char text[256], longname[120], where[512];
    memset(longname, 's', 100);
    longname[100] = '\0';
    snprintf(text, sizeof text, "[%s]\nrounds = 1\n", longname);
    char *p = s_write("c3.ini", text);
    cc_err_t err = {0};
    cr_expect_eq(config_load_file(s_cfg, p, &err), CC_ERR_FORMAT);
    snprintf(where, sizeof where, ":1: unknown section [%s]", longname);
    s_has(err.msg, where, NULL);
    free(p);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "20");
}

Test(config, key_before_section) {
    s_load_fails("c.ini", "\nrounds = 3\n[federation]\n",
                 ":2: key \"rounds\" appears before any [section]", NULL);
}

Test(config, syntax_error_line) {
    s_load_fails("c.ini", "[federation]\nrounds = 3\n\nthis line has no equals sign\nquorum = 0.1\n",
                 ":4: syntax error", "this line has no equals sign");
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "20");
    cr_expect_str_eq(config_get(s_cfg, "federation.quorum"), "0.5");
    /* An unterminated header. */
    s_load_fails("c2.ini", "[federation]\nrounds = 3\n[model\narch = x\n", ":3: syntax error",
                 "[model");
    /* The first error wins, whichever kind it is. */
    s_load_fails("c3.ini", "[federation]\nrounds = 3\nbroken\nnope = 1\n", ":3: syntax error", NULL);
    s_load_fails("c4.ini", "[federation]\nnope = 1\nbroken\n",
                 ":2: [federation] unknown key \"nope\"", NULL);
}
Test(config, unreadable_and_binary_files) {
    cc_err_t err = {0};
    char *p = s_path("missing.ini");
    cr_expect_eq(config_load_file(s_cfg, p, &err), CC_ERR_IO);
    s_has(err.msg, p, "No such file", NULL);
    free(p);
    p = s_path("dir.ini");
    cr_assert_eq(mkdir(p, 0700), 0);
    cr_expect_eq(config_load_file(s_cfg, p, &err), CC_ERR_IO);
    s_has(err.msg, p, NULL);
    free(p);
    p = s_path("bin.ini");
    FILE *f = fopen(p, "wb");
    fwrite("[federation]\nrounds = 3\0\n", 1, 25, f);
    fclose(f);
    cr_expect_eq(config_load_file(s_cfg, p, &err), CC_ERR_FORMAT);
    s_has(err.msg, ":2: NUL byte", NULL);
    free(p);
    cr_expect_str_eq(config_get(s_cfg, "federation.rounds"), "20");
}

/* ---- paths ---- */

Test(config, path_resolution) {
    char *sub = s_path("etc");
    cr_assert_eq(mkdir(sub, 0700), 0);
    char *p = s_write("etc/c.ini", "[storage]\nstate_dir = state\n[security]\nidentity = /abs/coord.key\n"
                                   "[federation]\nenrolment = keys/../enrolled.txt\n");
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    char want[512];
    char *got = config_get_path(s_cfg, "storage.state_dir");
    snprintf(want, sizeof want, "%s/state", sub);
    cr_expect_str_eq(got, want);
    free(got);
    got = config_get_path(s_cfg, "security.identity");
    cr_expect_str_eq(got, "/abs/coord.key");
    free(got);
    got = config_get_path(s_cfg, "federation.enrolment");
    snprintf(want, sizeof want, "%s/keys/../enrolled.txt", sub);
    cr_expect_str_eq(got, want);
    free(got);
    /* From a flag: relative to the working directory. */
    cr_assert_eq(config_set(s_cfg, "storage.state_dir", "run/state", "--state-dir", &err), 0);
    got = config_get_path(s_cfg, "storage.state_dir");
    cr_expect_str_eq(got, "run/state");
    free(got);
    /* A file given without a directory: relative stays relative. */
    cr_assert_eq(chdir(sub), 0);
    cr_assert_eq(config_load_file(s_cfg, "c.ini", &err), 0, "%s", err.msg);
    got = config_get_path(s_cfg, "storage.state_dir");
    cr_expect_str_eq(got, "state");
    free(got);
    cr_assert_eq(chdir("/"), 0);
    /* Unset or empty: NULL. */
    config_t *c = s_new_config();
    cr_expect_null(config_get_path(c, "federation.enrolment"));
    cr_expect_null(config_get_path(c, "federation.nope"));
    got = config_get_path(c, "storage.state_dir"); /* default: relative to the cwd */
    cr_expect_str_eq(got, "state");
    free(got);
    cr_assert_eq(config_set(c, "security.identity", "", "--identity", &err), 0);
    cr_expect_null(config_get_path(c, "security.identity"));
    config_destroy(&c);
    cr_expect_null(c);
    config_destroy(&c); /* NULL is fine */
    free(sub);
    free(p);
}

/* ---- printing ---- */

/* Prints cfg (with_values) to name in the temp dir; returns the path. */
static char *s_print_to(const config_t *cfg, const char *name, int with_values) {
    char *p = s_path(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    config_print(cfg, f, with_values);
    fclose(f);
    return p;
}

static void s_expect_same_values(const config_t *a, const config_t *b) {
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++) {
        const char *va = config_get(a, s_keys[i].key), *vb = config_get(b, s_keys[i].key);
        if (!va || !vb) cr_expect_eq(va, vb, "%s: %s vs %s", s_keys[i].key, va ? va : "(null)", vb ? vb : "(null)");
        else cr_expect_str_eq(va, vb, "%s", s_keys[i].key);
    }
}

Test(config, print_round_trip) {
    char *sub = s_path("etc");
    cr_assert_eq(mkdir(sub, 0700), 0);
    char *p = s_write("etc/c.ini", "[federation]\nrounds = 7\nenrolment = enrolled.txt\n"
                                   "[metrics]\nhttp_bind =\n[model]\narch = cnn:8;16\n");
    cc_err_t err = {0};
    cr_assert_eq(config_load_file(s_cfg, p, &err), 0, "%s", err.msg);
    cr_assert_eq(config_set(s_cfg, "training.lr", "0.125", "--lr", &err), 0);
    cr_assert_eq(config_set_assignment(s_cfg, "model.standardize=local", &err), 0);

    /* with_values = 1: same values back, paths still resolve to the same place. */
    char *out = s_print_to(s_cfg, "etc/printed.ini", 1);
    config_t *c = s_new_config();
    cr_assert_eq(config_load_file(c, out, &err), 0, "%s", err.msg);
    s_expect_same_values(s_cfg, c);
    char *pa = config_get_path(s_cfg, "federation.enrolment"), *pb = config_get_path(c, "federation.enrolment");
    cr_expect_str_eq(pa, pb);
    free(pa);
    free(pb);
    config_destroy(&c);

    /* with_values = 0: the defaults. */
    char *out0 = s_print_to(s_cfg, "defaults.ini", 0);
    c = s_new_config();
    cr_assert_eq(config_load_file(c, out0, &err), 0, "%s", err.msg);
    config_t *fresh = s_new_config();
    s_expect_same_values(fresh, c);
    config_destroy(&fresh);
    config_destroy(&c);

    /* Layout: sections in declaration order, keys in declaration order, help as comments. */
    FILE *f = fopen(out, "r");
    char *text = calloc(1, 1 << 16);
    size_t n = fread(text, 1, (1 << 16) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *fed = strstr(text, "[federation]"), *model = strstr(text, "[model]");
    const char *sec = strstr(text, "[security]"), *train = strstr(text, "[training]");
    cr_assert(fed && model && sec && train, "%s", text);
    cr_expect(fed < model && model < sec && sec < train);
    cr_expect(strstr(text, "rounds = 7") < strstr(text, "quorum = 0.5"));
    s_has(text, "# Number of rounds.\n", "# default: 20\n", "# set at ", "# Learning rate.\n# Second help line.\n",
          "enrolment = enrolled.txt\n", "http_bind =\n", "cnn:8;16", "# identity =\n", NULL);
    free(text);
    free(out);
    free(out0);
    free(sub);
    free(p);
}

Test(config, print_unrepresentable_value) {
    cc_err_t err = {0};
    cr_assert_eq(config_set(s_cfg, "model.arch", "mlp:8 ; comment-like", "--model", &err), 0);
    char *out = s_print_to(s_cfg, "p.ini", 1);
    config_t *c = s_new_config();
    cr_assert_eq(config_load_file(c, out, &err), 0, "%s", err.msg);
    /* Written as a comment with a note, so loading it back falls back to the default. */
    cr_expect_str_eq(config_get(c, "model.arch"), "mlp:64,32");
    config_destroy(&c);
    free(out);
}
