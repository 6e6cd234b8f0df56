/* test_model_spec.c — architecture specs that must be refused, and how the refusal reaches
 * the operator: a softmax has no hidden layers (model_new would build them while the arch
 * string, and so every checkpoint's meta, still says "softmax"). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model.h"

Test(model_spec, softmax_with_hidden_sizes_does_not_parse_and_points_to_mlp) {
    model_spec_t s = {0};
    cc_err_t err = {0};
    cr_expect_neq(model_spec_parse("softmax:64,32", &s, &err), 0);
    cr_expect_str_eq(err.msg, "model: arch softmax takes no hidden layers; use mlp:64,32");
    cr_expect_neq(model_spec_parse("softmax:", &s, &err), 0);
    cr_expect_str_eq(err.msg, "model: arch softmax takes no hidden layers; use softmax");
    cr_expect_eq(model_spec_parse("softmax", &s, &err), 0, "%s", err.msg);
    cr_expect_eq(s.kind, MODEL_SOFTMAX);
    cr_expect_eq(s.n_hidden, 0);
}

Test(model_spec, validate_refuses_a_softmax_with_hidden_layers) {
    /* As a checkpoint header or a hand-built spec can state it. */
    model_spec_t s = {.kind = MODEL_SOFTMAX, .n_inputs = 6, .n_classes = 3, .n_hidden = 2, .hidden = {8, 4}};
    cc_err_t err = {0};
    cr_expect_neq(model_spec_validate(&s, &err), 0);
    cr_expect_str_eq(err.msg, "model: arch softmax takes no hidden layers (got 2); use mlp:8,4");
    cr_expect_null(model_new(&s, &err));
    s.n_hidden = 0;
    cr_expect_eq(model_spec_validate(&s, &err), 0, "%s", err.msg);
    model_t *m = model_new(&s, &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_expect_eq(m->n_params, 6 * 3 + 3);
    model_destroy(&m);
}

/* Runs concord-coordinator with args (after --config ini) and returns its exit status; its
 * output goes to out. */
static int s_coordinator(const char *ini, const char *args, char *out, size_t len) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/concord-coordinator --config %s %s 2>&1", CONCORD_BINARY_DIR, ini, args);
    FILE *fp = popen(cmd, "r");
    cr_assert_not_null(fp);
    size_t n = fread(out, 1, len - 1, fp);
    out[n] = '\0';
    int status = pclose(fp);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(model_spec, coordinator_names_the_file_line_and_key_of_a_bad_arch) {
    char dir[] = "/tmp/concord-model-spec-XXXXXX", ini[128], out[4096], want[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ini, sizeof ini, "%s/coordinator.ini", dir);
    FILE *fp = fopen(ini, "w");
    cr_assert_not_null(fp);
    fprintf(fp, "[model]\ninputs = 4\nclasses = 3\narch = softmax:16\n[storage]\nstate_dir = state\n");
    fclose(fp);

    cr_expect_eq(s_coordinator(ini, "", out, sizeof out), 1, "%s", out);
    snprintf(want, sizeof want, "%s:4: [model] arch: model: arch softmax takes no hidden layers; use mlp:16", ini);
    cr_expect(strstr(out, want) != NULL, "expected \"%s\" in:\n%s", want, out);

    cr_expect_eq(s_coordinator(ini, "--set model.arch=softmax:8,2", out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "--set model.arch: [model] arch: model: arch softmax takes no hidden layers; use mlp:8,2"),
              "%s", out);

    char state[160];
    snprintf(state, sizeof state, "%s/state", dir);
    cr_expect_neq(access(state, F_OK), 0, "a refused configuration must not create the state dir");
    unlink(ini);
    rmdir(dir);
}
