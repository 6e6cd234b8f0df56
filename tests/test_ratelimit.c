/* test_ratelimit.c — the coordinator's per-sender token buckets (coordinator/ratelimit.c,
 * compiled in here: the daemons' modules are not part of the common library). */
#include <criterion/criterion.h>

#include "../coordinator/ratelimit.c"

Test(ratelimit, burst_then_rate) {
    ratelimit_t *rl = ratelimit_new(2, 8.0, 5.0, 5.0);
    cr_assert_not_null(rl);
    int passed = 0;
    for (int i = 0; i < 100; i++) passed += ratelimit_take(rl, 0, 1.0); /* one instant */
    cr_assert_eq(passed, 5, "a full bucket lets exactly burst messages through, got %d", passed);
    cr_assert_eq(ratelimit_dropped(rl), 95);
    /* 1 s later: 8 more tokens, capped at burst (RL-1). */
    passed = 0;
    for (int i = 0; i < 100; i++) passed += ratelimit_take(rl, 0, 2.0);
    cr_assert_eq(passed, 5);
    /* 0.25 s later: 2 tokens. */
    passed = 0;
    for (int i = 0; i < 100; i++) passed += ratelimit_take(rl, 0, 2.25);
    cr_assert_eq(passed, 2);
    ratelimit_destroy(&rl);
    cr_assert_null(rl);
}

Test(ratelimit, sustained_rate) {
    ratelimit_t *rl = ratelimit_new(1, 20.0, 100.0, 5.0);
    int passed = 0;
    /* 5000 messages per second for 10 s: burst + 10 s x 20/s pass. */
    for (int i = 0; i < 50000; i++) passed += ratelimit_take(rl, 0, 100.0 + i / 5000.0);
    cr_assert(passed >= 100 + 199 && passed <= 100 + 200, "passed %d", passed);
    ratelimit_destroy(&rl);
}

Test(ratelimit, keys_are_independent) {
    ratelimit_t *rl = ratelimit_new(3, 1.0, 2.0, 5.0);
    for (int i = 0; i < 50; i++) (void)ratelimit_take(rl, 2, 0.0); /* the flooder */
    cr_assert_eq(ratelimit_take(rl, 0, 0.0), 1, "another sender's bucket is untouched");
    cr_assert_eq(ratelimit_take(rl, 1, 0.0), 1);
    cr_assert_eq(ratelimit_take(rl, 2, 0.0), 0);
    cr_assert_eq(ratelimit_take(rl, 7, 0.0), 1, "a key out of range is never limited");
    ratelimit_destroy(&rl);
}

Test(ratelimit, refund_keeps_answers_free_but_never_over_burst) {
    ratelimit_t *rl = ratelimit_new(1, 1.0, 3.0, 5.0);
    /* An answering client: every message refunded, 1000 of them in one instant. */
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(ratelimit_take(rl, 0, 0.0), 1, "answer %d dropped", i);
        ratelimit_refund(rl, 0);
    }
    /* Refunds on a full bucket bank nothing (RL-1): still exactly burst at once. */
    for (int i = 0; i < 10; i++) ratelimit_refund(rl, 0);
    int passed = 0;
    for (int i = 0; i < 10; i++) passed += ratelimit_take(rl, 0, 0.0);
    cr_assert_eq(passed, 3);
    ratelimit_destroy(&rl);
}

Test(ratelimit, log_due_once_per_interval) {
    ratelimit_t *rl = ratelimit_new(1, 1.0, 1.0, 5.0);
    uint64_t n = 0;
    cr_assert_eq(ratelimit_log_due(rl, 0, 0.0, &n), 0, "nothing dropped, nothing to log");
    (void)ratelimit_take(rl, 0, 0.0);
    for (int i = 0; i < 7; i++) (void)ratelimit_take(rl, 0, 0.0);
    cr_assert_eq(ratelimit_log_due(rl, 0, 0.0, &n), 1);
    cr_assert_eq(n, 7);
    for (int i = 0; i < 4; i++) (void)ratelimit_take(rl, 0, 0.0);
    cr_assert_eq(ratelimit_log_due(rl, 0, 4.9, &n), 0, "at most one line per 5 s");
    (void)ratelimit_take(rl, 0, 5.0); /* refilled: passes */
    (void)ratelimit_take(rl, 0, 5.0);
    cr_assert_eq(ratelimit_log_due(rl, 0, 5.0, &n), 1);
    cr_assert_eq(n, 5, "the drops since the last line: %llu", (unsigned long long)n);
    ratelimit_destroy(&rl);
}

Test(ratelimit, off_and_bad_settings) {
    ratelimit_t *rl = ratelimit_new(1, 0.0, 1.0, 5.0);
    cr_assert_not_null(rl);
    cr_assert_eq(ratelimit_enabled(rl), 0);
    for (int i = 0; i < 1000; i++) cr_assert_eq(ratelimit_take(rl, 0, 0.0), 1);
    cr_assert_eq(ratelimit_dropped(rl), 0, "rate 0 is off: nothing dropped or counted");
    ratelimit_destroy(&rl);
    cr_assert_null(ratelimit_new(1, -1.0, 1.0, 5.0));
    cr_assert_null(ratelimit_new(1, 5.0, 0.5, 5.0));
    cr_assert_eq(ratelimit_take(NULL, 0, 0.0), 1);
    cr_assert_eq(ratelimit_dropped(NULL), 0);
    ratelimit_destroy(NULL);
}
