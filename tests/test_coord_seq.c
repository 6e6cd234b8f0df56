/* test_coord_seq.c — the coordinator's sequence-number blocks (persist.c, rounds.c): a
 * message never carries a number outside a block reserved on disk. When a new block cannot
 * be stored mid-run (disk gone, full, read-only) nothing more is sent and the coordinator
 * stops cleanly (stop = 2) after one error line naming the file and the reason. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord.h"
#include "fileio.h"

static char s_dir[] = "/tmp/concord-seq-XXXXXX", s_file[64];
static coord_t s_c;
static void *s_ctx;

static void setup(void) {
    cr_redirect_stderr(); /* the log lines, counted below */
    cr_assert_not_null(mkdtemp(s_dir));
    snprintf(s_file, sizeof s_file, "%s/coordinator.seq", s_dir);
    memset(&s_c, 0, sizeof s_c);
    s_c.state_dir = s_dir;
}

static void teardown(void) {
    coord_params_free(&s_c);
    if (s_c.router) zmq_close(s_c.router);
    if (s_ctx) zmq_ctx_term(s_ctx);
    identity_clear(&s_c.self);
    unlink(s_file);
    rmdir(s_dir);
}

static uint64_t s_on_disk(void) {
    char *text = NULL;
    size_t len;
    cr_assert_eq(fileio_read_all(s_file, 64, &text, &len, NULL), 0);
    uint64_t v = strtoull(text, NULL, 10);
    free(text);
    return v;
}

/* The state dir disappears (an unmounted disk): the next block cannot be stored. */
static void s_lose_the_disk(void) {
    cr_assert_eq(unlink(s_file), 0);
    cr_assert_eq(rmdir(s_dir), 0);
}

static size_t s_count_in_stderr(const char *needle, char *line, size_t len) {
    fflush(stderr);
    FILE *fp = cr_get_redirected_stderr();
    char buf[1024];
    size_t n = 0;
    while (fgets(buf, sizeof buf, fp))
        if (strstr(buf, needle)) n++, snprintf(line, len, "%s", buf);
    return n;
}

Test(coord_seq, a_block_that_could_not_be_stored_is_never_used, .init = setup, .fini = teardown) {
    cc_err_t err = {0};
    cr_assert_eq(coord_seq_reserve(&s_c, &err), 0, "%s", err.msg);
    uint64_t block = s_c.seq_reserved;
    cr_assert_gt(block, 1);
    cr_expect_eq(s_on_disk(), block);
    s_c.seq = block - 1; /* the block is used up: the next message needs a new one */
    s_lose_the_disk();
    cr_expect_neq(coord_seq_reserve(&s_c, &err), 0);
    cr_expect(strstr(err.msg, s_file) && strstr(err.msg, "No such file or directory"), "%s", err.msg);
    cr_expect_eq(s_c.seq_reserved, block, "the reservation moved although nothing was stored");
    cr_expect_neq(coord_seq_reserve(&s_c, &err), 0, "a second try used a block that is not on disk");
    cr_assert_eq(mkdir(s_dir, 0700), 0); /* the disk is back: the next try stores a block */
    cr_expect_eq(coord_seq_reserve(&s_c, &err), 0, "%s", err.msg);
    cr_expect_gt(s_c.seq_reserved, s_c.seq + 1);
    cr_expect_eq(s_on_disk(), s_c.seq_reserved);
}

/* A coordinator with a softmax model of 4 inputs and 3 classes (P = 15) whose ROUTER has no
 * peer: it drops what is sent, and every message sent still takes a sequence number. */
static void s_sender(void) {
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&s_c.self, "coordinator", &err), 0, "%s", err.msg);
    s_c.spec = (model_spec_t){.kind = MODEL_SOFTMAX, .n_inputs = 4, .n_classes = 3};
    s_c.P = 15;
    s_c.params = cc_xcalloc(s_c.P, sizeof(float));
    concord__train_settings__init(&s_c.training);
    s_ctx = zmq_ctx_new();
    s_c.router = zmq_socket(s_ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(s_c.router, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_bind(s_c.router, "inproc://seq-test"), 0);
}

Test(coord_seq, no_task_leaves_without_a_durable_number_and_the_coordinator_stops,
     .init = setup, .fini = teardown) {
    cc_err_t err = {0};
    s_sender();
    cr_assert_eq(coord_seq_reserve(&s_c, &err), 0, "%s", err.msg);
    s_c.seq = s_c.seq_reserved - 2;
    coord_send_task(&s_c, "alice", 0); /* the block's last number */
    cr_assert_eq(s_c.seq, s_c.seq_reserved - 1, "a task takes a sequence number");
    cr_expect_eq(s_c.stop, 0);
    uint64_t last = s_c.seq;
    s_lose_the_disk();
    coord_send_task(&s_c, "bob", 0);
    cr_expect_eq(s_c.seq, last, "a task was sent with a number outside a durable block");
    cr_expect_eq(s_c.stop, 2, "the coordinator did not stop on the failed reservation");
    coord_send_task(&s_c, "carol", 0);
    cr_expect_neq(coord_seq_ready(&s_c), 0);
    cr_expect_eq(s_c.seq, last, "a later task was sent with a number outside a durable block");
    char line[1024] = "";
    cr_expect_eq(s_count_in_stderr("event=seq_reserve_failed", line, sizeof line), 1,
                 "expected one seq_reserve_failed line");
    cr_expect(strstr(line, "level=error") && strstr(line, s_file) && strstr(line, "No such file or directory"),
              "the line should name %s and the reason: %s", s_file, line);
}
