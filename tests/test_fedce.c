/* test_fedce.c — FedCE (DESIGN §6.1, common/fedce.h) checked two ways:
 *  - the streaming cosines against a naive double computation that forms S − c_kΔ_k;
 *  - a 3-round, 4-client scenario (one client absent in round 1, one joining in round 2)
 *    against tests/fedce_reference.py, an independent numpy implementation. The tables
 *    s_ref_plus / s_ref_times below are its output, pasted from
 *        /usr/bin/python3 tests/fedce_reference.py --c
 *    (rerun it and paste again if the rules of §6.1 change; the script holds the scenario's
 *    updates and scores, s_updates / s_scores below must stay equal to them);
 *  - the minus model against an aggregation that leaves the client out;
 *  - combination by hand (plus, times, clipping), priors, the client's score rule, misuse.
 * Every numerical check prints its largest difference next to its tolerance. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedce.h"
#include "rng.h"

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t s_state;

static uint64_t s_next(void) { /* splitmix64 */
    uint64_t z = (s_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double s_uniform(void) { return (double)(s_next() >> 11) * 0x1.0p-53; }

static double s_normal(void) {
    double u = s_uniform(), v = s_uniform();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void s_report(const char *what, double diff, double tol) {
    printf("%-58s max diff %.3e  (tol %.0e)\n", what, diff, tol);
    cr_expect(diff <= tol, "%s: difference %.3e exceeds %.0e", what, diff, tol);
}

/* cos(Δ_k, S − c_kΔ_k) for every k, forming S and S − c_kΔ_k in double. */
static void s_naive_cos(double *cos, float *const *d, const double *c, size_t K, size_t P) {
    double *S = calloc(P ? P : 1, sizeof *S), *m = calloc(P ? P : 1, sizeof *m);
    for (size_t k = 0; k < K; k++)
        for (size_t i = 0; i < P; i++) S[i] += c[k] * d[k][i];
    for (size_t k = 0; k < K; k++) {
        double dm = 0.0, nd = 0.0, nm = 0.0;
        for (size_t i = 0; i < P; i++) {
            m[i] = S[i] - c[k] * d[k][i];
            dm += d[k][i] * m[i];
            nd += (double)d[k][i] * d[k][i];
            nm += m[i] * m[i];
        }
        cos[k] = nd == 0.0 || nm == 0.0 ? 0.0 : fmax(-1.0, fmin(1.0, dm / sqrt(nd * nm)));
    }
    free(S);
    free(m);
}

static float **s_updates_new(size_t K, size_t P) {
    float **d = calloc(K, sizeof *d);
    for (size_t k = 0; k < K; k++) {
        d[k] = calloc(P ? P : 1, sizeof **d);
        for (size_t i = 0; i < P; i++) d[k][i] = (float)(0.1 * s_normal());
    }
    return d;
}

static void s_updates_free(float **d, size_t K) {
    for (size_t k = 0; k < K; k++) free(d[k]);
    free(d);
}

static void s_random_coefs(double *c, size_t K) {
    double sum = 0.0;
    for (size_t k = 0; k < K; k++) sum += (c[k] = 0.1 + s_uniform());
    for (size_t k = 0; k < K; k++) c[k] /= sum;
}

/* ---- gradient-space cosines ---------------------------------------------------------- */

#define COS_TOL 1e-9

Test(fedce, streaming_cosines_match_naive) {
    const size_t Ks[] = {2, 3, 10}, Ps[] = {1, 7, 10000};
    const char *variant[] = {"random", "zero update", "identical updates", "zero + identical"};
    s_state = 1;
    for (int v = 0; v < 4; v++) {
        double worst = 0.0;
        for (size_t ki = 0; ki < 3; ki++)
            for (size_t pi = 0; pi < 3; pi++) {
                size_t K = Ks[ki], P = Ps[pi];
                float **d = s_updates_new(K, P);
                double c[10], got[10], want[10];
                s_random_coefs(c, K);
                if (v == 2 || (v == 3 && K > 2)) memcpy(d[1], d[0], P * sizeof(float));
                if (v == 1 || v == 3) memset(d[K - 1], 0, P * sizeof(float));
                cc_err_t err = {0};
                cr_assert_eq(fedce_cos_all(got, (const float *const *)d, c, K, P, &err), 0, "%s", err.msg);
                s_naive_cos(want, d, c, K, P);
                for (size_t k = 0; k < K; k++) {
                    cr_expect(got[k] >= -1.0 && got[k] <= 1.0);
                    worst = fmax(worst, fabs(got[k] - want[k]));
                }
                if (v == 1 || v == 3) cr_expect_eq(got[K - 1], 0.0, "zero update: cos = 0");
                if (v == 2 && K == 2) /* S − c_0Δ_0 = c_1Δ_0: cos = 1 for both */
                    cr_expect(fabs(got[0] - 1.0) < COS_TOL && fabs(got[1] - 1.0) < COS_TOL);
                if ((v == 1 || v == 3) && K == 2) /* the other's remainder S − c_0Δ_0 = 0 */
                    cr_expect_eq(got[0], 0.0, "got %.17g", got[0]);
                s_updates_free(d, K);
            }
        char what[80];
        snprintf(what, sizeof what, "cos streaming vs naive (%s), K 2/3/10 x P 1/7/1e4", variant[v]);
        s_report(what, worst, COS_TOL);
    }
}

/* K = 2 with the other update zero: ‖S − c_0Δ_0‖² is a difference of sums that cancels
 * to rounding noise; the relative guard must turn it into cos = 0, as the naive form
 * (exactly zero there) says. The same when the other update is merely negligible in
 * double but not zero in float — 1e-30 of the first: below the guard. */
Test(fedce, cancellation_guard_gives_zero_for_a_vanishing_remainder) {
    s_state = 2;
    const size_t P = 10000;
    float **d = s_updates_new(2, P);
    double c[2] = {0.37, 0.63}, cos[2];
    cc_err_t err = {0};
    memset(d[1], 0, P * sizeof(float));
    cr_assert_eq(fedce_cos_all(cos, (const float *const *)d, c, 2, P, &err), 0, "%s", err.msg);
    cr_expect_eq(cos[0], 0.0, "got %.17g", cos[0]);
    cr_expect_eq(cos[1], 0.0, "got %.17g", cos[1]);
    for (size_t i = 0; i < P; i++) d[1][i] = d[0][i] * 1e-30f;
    cr_assert_eq(fedce_cos_all(cos, (const float *const *)d, c, 2, P, &err), 0, "%s", err.msg);
    cr_expect_eq(cos[0], 0.0, "got %.17g", cos[0]);
    cr_expect(fabs(cos[1] - 1.0) < COS_TOL, "Δ_1 ∥ Δ_0: cos %.17g", cos[1]);
    /* 1e-3 of the first update: far above the guard, cos = 1 for both (parallel). */
    for (size_t i = 0; i < P; i++) d[1][i] = d[0][i] * 1e-3f;
    cr_assert_eq(fedce_cos_all(cos, (const float *const *)d, c, 2, P, &err), 0, "%s", err.msg);
    cr_expect(fabs(cos[0] - 1.0) < 1e-6 && fabs(cos[1] - 1.0) < 1e-6, "%.17g %.17g", cos[0], cos[1]);
    printf("tol(P) at P = 1, 1e4, 1e7: %.2e %.2e %.2e\n", fedce_cancel_tol(1), fedce_cancel_tol(10000),
           fedce_cancel_tol(10000000));
    s_updates_free(d, 2);
}

Test(fedce, streaming_order_does_not_matter) {
    s_state = 3;
    const size_t K = 10, P = 10000;
    float **d = s_updates_new(K, P);
    double c[10], a[10], b[10];
    s_random_coefs(c, K);
    cc_err_t err = {0};
    cr_assert_eq(fedce_cos_all(a, (const float *const *)d, c, K, P, &err), 0, "%s", err.msg);
    fedce_cos_t *s = fedce_cos_new(K, P);
    cr_assert_not_null(s);
    for (size_t j = 0; j < K; j++) cr_assert_eq(fedce_cos_add(s, K - 1 - j, d[K - 1 - j], c[K - 1 - j], &err), 0);
    for (size_t j = 0; j < K; j++) cr_assert_eq(fedce_cos_dot(s, (3 * j + 1) % K, d[(3 * j + 1) % K], &err), 0);
    cr_assert_eq(fedce_cos_result(s, b, &err), 0, "%s", err.msg);
    double worst = 0.0;
    for (size_t k = 0; k < K; k++) worst = fmax(worst, fabs(a[k] - b[k]));
    s_report("cos: reverse / shuffled stream vs in-order one-shot", worst, 1e-12);
    fedce_cos_destroy(&s);
    cr_expect_null(s);
    fedce_cos_destroy(&s); /* NULL is fine */
    s_updates_free(d, K);
}

Test(fedce, cosines_special_values) {
    float u[4] = {1, -2, 0.5f, 3}, nu[4], o[4] = {2, 1, 0, 0}, z[4] = {0};
    for (int i = 0; i < 4; i++) nu[i] = -u[i];
    double cos[3];
    cc_err_t err = {0};
    /* Opposite updates, equal c: S = 0, S − c_kΔ_k = −c_kΔ_k: anti-aligned, cos = −1. */
    const float *opp[2] = {u, nu};
    double half[2] = {0.5, 0.5};
    cr_assert_eq(fedce_cos_all(cos, opp, half, 2, 4, &err), 0);
    cr_expect(fabs(cos[0] + 1.0) < 1e-15 && fabs(cos[1] + 1.0) < 1e-15, "%.17g %.17g", cos[0], cos[1]);
    /* Orthogonal updates: cos = 0. */
    const float *orth[2] = {u, o};
    cr_assert_eq(fedce_cos_all(cos, orth, half, 2, 4, &err), 0);
    cr_expect(fabs(cos[0]) < 1e-15 && fabs(cos[1]) < 1e-15, "%.17g %.17g", cos[0], cos[1]);
    /* One participant: S − c_0Δ_0 = 0: cos = 0. */
    const float *one[1] = {u};
    double c1[1] = {1.0};
    cr_assert_eq(fedce_cos_all(cos, one, c1, 1, 4, &err), 0);
    cr_expect_eq(cos[0], 0.0);
    /* All updates zero. */
    const float *zeros[3] = {z, z, z};
    double c3[3] = {0.2, 0.3, 0.5};
    cr_assert_eq(fedce_cos_all(cos, zeros, c3, 3, 4, &err), 0);
    for (int k = 0; k < 3; k++) cr_expect_eq(cos[k], 0.0);
    /* P = 0: every norm is 0. */
    cr_assert_eq(fedce_cos_all(cos, zeros, c3, 3, 0, &err), 0);
    for (int k = 0; k < 3; k++) cr_expect_eq(cos[k], 0.0);
}

Test(fedce, streaming_misuse_is_refused) {
    float u[3] = {1, 2, 3}, v[3] = {-1, 0, 2}, bad[3] = {1, NAN, 0}, huge[3] = {3e38f, 3e38f, 0};
    double cos[2];
    cc_err_t err = {0};
    cr_expect_null(fedce_cos_new(0, 3));
    fedce_cos_t *s = fedce_cos_new(2, 3);
    cr_assert_eq(fedce_cos_add(s, 0, u, 0.5, &err), 0);
    cr_expect_eq(fedce_cos_add(s, 0, u, 0.5, &err), CC_ERR_ARG, "added twice");
    cr_expect_eq(fedce_cos_add(s, 2, u, 0.5, &err), CC_ERR_ARG, "k >= K");
    cr_expect_eq(fedce_cos_add(s, 1, v, -0.1, &err), CC_ERR_ARG, "negative c");
    cr_expect_eq(fedce_cos_add(s, 1, v, NAN, &err), CC_ERR_ARG, "NaN c");
    cr_expect_eq(fedce_cos_dot(s, 0, u, &err), CC_ERR_ARG, "pass 2 before pass 1 ended");
    cr_expect_eq(s->state, FEDCE_COS_ACCUM);
    cr_expect_eq(fedce_cos_result(s, cos, &err), CC_ERR_ARG, "no result yet");
    cr_assert_eq(fedce_cos_add(s, 1, v, 0.5, &err), 0, "%s", err.msg);
    cr_assert_eq(fedce_cos_dot(s, 1, v, &err), 0, "%s", err.msg);
    cr_expect_eq(fedce_cos_add(s, 1, v, 0.5, &err), CC_ERR_ARG, "pass 1 after pass 2 began");
    cr_expect_eq(fedce_cos_dot(s, 1, v, &err), CC_ERR_ARG, "dotted twice");
    cr_expect_eq(fedce_cos_result(s, cos, &err), CC_ERR_ARG, "pass 2 incomplete");
    cr_assert_eq(fedce_cos_dot(s, 0, u, &err), 0, "%s", err.msg);
    cr_assert_eq(fedce_cos_result(s, cos, &err), 0, "%s", err.msg);
    double again[2];
    cr_assert_eq(fedce_cos_result(s, again, &err), 0, "result twice is fine");
    cr_expect(cos[0] == again[0] && cos[1] == again[1]);
    fedce_cos_destroy(&s);

    /* A non-finite update fails the accumulator for good. */
    s = fedce_cos_new(2, 3);
    cr_assert_eq(fedce_cos_add(s, 0, u, 0.5, &err), 0);
    cr_expect_eq(fedce_cos_add(s, 1, bad, 0.5, &err), CC_ERR_ARG);
    printf("non-finite update: %s\n", err.msg);
    cr_expect_eq(s->state, FEDCE_COS_FAILED);
    cr_expect_eq(fedce_cos_add(s, 1, v, 0.5, &err), CC_ERR_ARG, "sticky");
    cr_expect_eq(fedce_cos_dot(s, 0, u, &err), CC_ERR_ARG, "sticky");
    cr_expect_eq(fedce_cos_result(s, cos, &err), CC_ERR_ARG, "sticky");
    fedce_cos_destroy(&s);

    /* Finite updates whose weighted sum overflows float range is fine in double; a
     * coefficient that overflows double is not. */
    s = fedce_cos_new(2, 3);
    cr_assert_eq(fedce_cos_add(s, 0, huge, 1e300, &err), 0);
    cr_assert_eq(fedce_cos_add(s, 1, huge, 1e300, &err), 0);
    cr_expect_eq(fedce_cos_dot(s, 0, huge, &err), CC_ERR_ARG);
    printf("overflowing S: %s\n", err.msg);
    cr_expect_eq(s->state, FEDCE_COS_FAILED);
    fedce_cos_destroy(&s);
    const float *hh[2] = {huge, huge};
    double hc[2] = {0.5, 0.5};
    cr_assert_eq(fedce_cos_all(cos, hh, hc, 2, 3, &err), 0, "%s", err.msg);
    cr_expect(fabs(cos[0] - 1.0) < 1e-15 && fabs(cos[1] - 1.0) < 1e-15);
}

/* ---- the reference scenario (tests/fedce_reference.py) ------------------------------ */

enum { REF_P = 6, REF_CLIENTS = 4, REF_ROUNDS = 3 };

typedef struct {
    size_t K;
    size_t part[4];
    double c[4], cos[4], a[4], b[4], w[4];
} s_ref_round_t;

/* Updates of the scenario: s_updates[t][client], used only for the participants. Equal
 * to ROUNDS in tests/fedce_reference.py. */
static const float s_updates[REF_ROUNDS][REF_CLIENTS][REF_P] = {
    {{0.5f, -0.25f, 1.0f, 0.125f, -0.75f, 0.375f},
     {0.25f, 0.5f, -0.125f, 0.625f, 0.0f, -0.5f},
     {-0.375f, 0.25f, 0.75f, -0.5f, 0.875f, 0.125f},
     {0}},
    {{0.1875f, -0.5f, 0.25f, 0.75f, -0.25f, 0.0625f},
     {0},
     {0.625f, 0.125f, -0.375f, 0.25f, 0.5f, -0.875f},
     {0}},
    {{-0.25f, 0.375f, 0.5f, -0.125f, 0.25f, 0.75f},
     {0.875f, -0.625f, 0.125f, 0.375f, -0.5f, 0.25f},
     {0.3125f, 0.4375f, -0.5625f, 0.0f, 0.6875f, -0.1875f},
     {-0.5f, -0.25f, 0.125f, 0.625f, 0.375f, -0.75f}},
};

/* Minus-model scores, SCORES in the script; NAN where the client cannot score. */
static const double s_scores[REF_ROUNDS][REF_CLIENTS] = {
    {NAN, NAN, NAN, NAN},
    {0.62, NAN, 0.71, NAN},
    {0.58, NAN, 0.77, NAN},
};

/* Pasted from `/usr/bin/python3 tests/fedce_reference.py --c`. */
static const s_ref_round_t s_ref_plus[3] = {
    {3, {0, 1, 2},
     {0.3333333333333333, 0.3333333333333333, 0.3333333333333333},
     {-0.20730462274529785, -0.3656959741287793, -0.2857315384715078},
     {1.207304622745298, 1.3656959741287793, 1.2857315384715078},
     {1.0, 1.0, 1.0},
     {0.32310465982075387, 0.34362841552960877, 0.33326692464963736}},
    {2, {0, 2},
     {0.4922587562675469, 0.5077412437324531},
     {-0.024806946917841705, -0.024806946917841684},
     {1.1160557848315698, 1.1552692426946747},
     {0.69, 0.645},
     {0.5041108229190072, 0.4958891770809928}},
    {4, {0, 1, 2, 3},
     {0.2813896407811746, 0.1918099592628981, 0.2768003999559273, 0.25},
     {-0.5606683106807333, -0.6186205672829079, -0.3715625276616517, -0.461825817795212},
     {1.2642599601146243, 1.4921582707058436, 1.2273670043503337, 1.461825817795212},
     {0.6000000000000001, 1.0, 0.5066666666666666, 1.0},
     {0.21264715696456277, 0.29794979235991914, 0.1942382949823392, 0.29516475569317896}},
};
static const s_ref_round_t s_ref_times[3] = {
    {3, {0, 1, 2},
     {0.3333333333333333, 0.3333333333333333, 0.3333333333333333},
     {-0.20730462274529785, -0.3656959741287793, -0.2857315384715078},
     {1.207304622745298, 1.3656959741287793, 1.2857315384715078},
     {1.0, 1.0, 1.0},
     {0.3128759863081744, 0.35392349772588416, 0.3332005159659414}},
    {2, {0, 2},
     {0.4842708026168519, 0.515729197383148},
     {-0.024806946917841743, -0.02480694691784164},
     {1.1160557848315698, 1.1552692426946747},
     {0.69, 0.645},
     {0.5082264332265882, 0.4917735667734118}},
    {4, {0, 1, 2, 3},
     {0.2815298098896818, 0.19605437363356462, 0.27241581647675367, 0.25},
     {-0.5651604301381152, -0.6190703732398409, -0.37580894729428105, -0.4683626829738512},
     {1.2657573332670848, 1.49238317368431, 1.2287824775612102, 1.4683626829738512},
     {0.6000000000000001, 1.0, 0.5066666666666666, 1.0},
     {0.17487733873755743, 0.3436466992676343, 0.14336039071963166, 0.3381155712751767}},
};

#define REF_TOL 1e-12

/* Runs the scenario through the library as coordinator and clients would, comparing every
 * intermediate with the reference. */
static void s_run_scenario(fedce_mode_t mode, const s_ref_round_t *ref) {
    fedce_client_t reg[REF_CLIENTS] = {{.seen = 0}};
    fedce_mean_t hist[REF_CLIENTS] = {{.n = 0}};       /* each client's score history */
    double last_w[REF_CLIENTS];                    /* weight of its last aggregated update */
    int last_round[REF_CLIENTS] = {-9, -9, -9, -9};  /* never aggregated */
    double worst[5] = {0};                         /* c, cos, a, b, w */
    cc_err_t err = {0};
    for (int t = 0; t < REF_ROUNDS; t++) {
        const s_ref_round_t *r = &ref[t];
        size_t K = r->K;
        double c[4], cos[4], a[4], b[4], w[4];
        /* Clients: score the minus model if the update was aggregated last round with
         * a weight < 1 (here the score is given), then report b_k. */
        for (size_t k = 0; k < K; k++) {
            size_t id = r->part[k];
            int scored = last_round[id] == t - 1 && last_w[id] < 1.0;
            cr_assert_eq(scored, !isnan(s_scores[t][id]), "round %d client %zu", t, id);
            cr_assert_eq(fedce_client_score(&b[k], &hist[id], scored, s_scores[t][id], &err), 0, "%s", err.msg);
        }
        /* Coordinator. */
        cr_assert_eq(fedce_priors(c, reg, REF_CLIENTS, r->part, K, &err), 0, "%s", err.msg);
        fedce_cos_t *s = fedce_cos_new(K, REF_P);
        for (size_t k = 0; k < K; k++)
            cr_assert_eq(fedce_cos_add(s, k, s_updates[t][r->part[k]], c[k], &err), 0, "%s", err.msg);
        for (size_t k = 0; k < K; k++)
            cr_assert_eq(fedce_cos_dot(s, k, s_updates[t][r->part[k]], &err), 0, "%s", err.msg);
        cr_assert_eq(fedce_cos_result(s, cos, &err), 0, "%s", err.msg);
        fedce_cos_destroy(&s);
        fedce_client_t absent_before[REF_CLIENTS];
        memcpy(absent_before, reg, sizeof reg);
        cr_assert_eq(fedce_round_weights(w, a, reg, REF_CLIENTS, r->part, K, cos, b, mode, &err), 0, "%s",
                     err.msg);
        double sum = 0.0;
        for (size_t k = 0; k < K; k++) {
            size_t id = r->part[k];
            worst[0] = fmax(worst[0], fabs(c[k] - r->c[k]));
            worst[1] = fmax(worst[1], fabs(cos[k] - r->cos[k]));
            worst[2] = fmax(worst[2], fabs(a[k] - r->a[k]));
            worst[3] = fmax(worst[3], fabs(b[k] - r->b[k]));
            worst[4] = fmax(worst[4], fabs(w[k] - r->w[k]));
            sum += w[k];
            cr_expect_eq(reg[id].coef, w[k]);
            cr_expect(reg[id].seen);
            last_w[id] = w[k];
            last_round[id] = t;
        }
        cr_expect(fabs(sum - 1.0) < 1e-15, "round %d: Σ w = %.17g", t, sum);
        for (size_t id = 0; id < REF_CLIENTS; id++) { /* absent clients keep their state */
            int present = 0;
            for (size_t k = 0; k < K; k++) present |= r->part[k] == id;
            if (!present) cr_expect(memcmp(&reg[id], &absent_before[id], sizeof reg[id]) == 0, "client %zu", id);
        }
    }
    const char *names[5] = {"c", "cos", "a", "b", "w"};
    for (int i = 0; i < 5; i++) {
        char what[80];
        snprintf(what, sizeof what, "scenario (%s) vs fedce_reference.py: %s", fedce_mode_name(mode), names[i]);
        s_report(what, worst[i], REF_TOL);
    }
}

Test(fedce, reference_scenario_plus) { s_run_scenario(FEDCE_PLUS, s_ref_plus); }
Test(fedce, reference_scenario_times) { s_run_scenario(FEDCE_TIMES, s_ref_times); }

/* ---- combination -------------------------------------------------------------------- */

Test(fedce, combine_plus_and_times_by_hand) {
    /* â = a/3 = (1/6, 1/2, 1/3); b̂ = b (sums to 1).
     * plus:  (â + b̂)/2 = (0.18333.., 0.4, 0.41666..), sum 1.
     * times: â ⊙ b̂ = (1/30, 3/20, 1/6), sum 0.35 → (2/21, 3/7, 10/21). */
    const double a[3] = {0.5, 1.5, 1.0}, b[3] = {0.2, 0.3, 0.5};
    const double plus[3] = {(1.0 / 6 + 0.2) / 2, (0.5 + 0.3) / 2, (1.0 / 3 + 0.5) / 2};
    const double times[3] = {2.0 / 21, 3.0 / 7, 10.0 / 21};
    double w[3], worst = 0.0;
    cc_err_t err = {0};
    cr_assert_eq(fedce_combine(w, a, b, 3, FEDCE_PLUS, &err), 0);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(w[k] - plus[k]));
    cr_assert_eq(fedce_combine(w, a, b, 3, FEDCE_TIMES, &err), 0);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(w[k] - times[k]));
    s_report("combine plus / times vs hand", worst, 1e-15);
    /* w may alias a. */
    double x[3] = {0.5, 1.5, 1.0};
    cr_assert_eq(fedce_combine(x, x, b, 3, FEDCE_TIMES, &err), 0);
    for (int k = 0; k < 3; k++) cr_expect(fabs(x[k] - times[k]) < 1e-15);
    /* Errors. */
    const double nan_b[3] = {0.2, NAN, 0.5};
    cr_expect_eq(fedce_combine(w, a, nan_b, 3, FEDCE_PLUS, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_combine(w, a, b, 0, FEDCE_PLUS, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_combine(w, a, b, 3, (fedce_mode_t)7, &err), CC_ERR_ARG);
    /* K = 1. */
    cr_assert_eq(fedce_combine(w, a, b, 1, FEDCE_TIMES, &err), 0);
    cr_expect_eq(w[0], 1.0);
    fedce_mode_t m = FEDCE_PLUS;
    cr_expect_eq(fedce_mode_parse("times", &m), 0);
    cr_expect_eq(m, FEDCE_TIMES);
    cr_expect_eq(fedce_mode_parse("plus", &m), 0);
    cr_expect_eq(m, FEDCE_PLUS);
    cr_expect_eq(fedce_mode_parse("minus", &m), CC_ERR_ARG);
    cr_expect_eq(m, FEDCE_PLUS);
}

/* a_k = 0 happens when client k's update points exactly along the rest (cos = 1): two
 * identical updates and a zero one. a = (0, 0, 1) is clipped to (ε, ε, 1) before
 * normalising; in "times" the products of the aligned clients fall under ε and are
 * clipped again. An update anti-aligned with the rest gets the largest a, 2. */
Test(fedce, clipping_when_a_would_be_zero) {
    float u[5] = {0.5f, -1.0f, 0.25f, 2.0f, -0.75f}, z[5] = {0};
    const float *d[3] = {u, u, z};
    fedce_client_t reg[3] = {{.seen = 0}};
    size_t part[3] = {0, 1, 2};
    double c[3], cos[3], a[3], w[3];
    const double b[3] = {0.5, 0.5, 0.5};
    cc_err_t err = {0};
    cr_assert_eq(fedce_priors(c, reg, 3, part, 3, &err), 0);
    cr_assert_eq(fedce_cos_all(cos, d, c, 3, 5, &err), 0);
    printf("aligned updates: cos = %.17g %.17g %.17g\n", cos[0], cos[1], cos[2]);
    cr_expect(fabs(cos[0] - 1.0) < 1e-15 && fabs(cos[1] - 1.0) < 1e-15 && cos[2] == 0.0);
    const double e = FEDCE_EPS, ah[3] = {e / (1 + 2 * e), e / (1 + 2 * e), 1 / (1 + 2 * e)};
    double plus[3], times[3], tsum = 0.0, worst = 0.0;
    for (int k = 0; k < 3; k++) plus[k] = (ah[k] + 1.0 / 3) / 2;
    for (int k = 0; k < 3; k++) tsum += (times[k] = fmax(ah[k] / 3, e));
    for (int k = 0; k < 3; k++) times[k] /= tsum;
    fedce_client_t reg2[3];
    memcpy(reg2, reg, sizeof reg);
    cr_assert_eq(fedce_round_weights(w, a, reg, 3, part, 3, cos, b, FEDCE_PLUS, &err), 0, "%s", err.msg);
    cr_expect(a[0] <= 1e-15 && a[1] <= 1e-15 && a[2] == 1.0, "a = %g %g %g", a[0], a[1], a[2]);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(w[k] - plus[k]));
    cr_assert_eq(fedce_round_weights(w, a, reg2, 3, part, 3, cos, b, FEDCE_TIMES, &err), 0, "%s", err.msg);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(w[k] - times[k]));
    /* ε / Σ clip(v) with Σ ≈ 1/3: the aligned clients end near 3ε. */
    cr_expect(w[0] == w[1] && w[0] > 2 * e && w[0] < 4 * e, "times: aligned client clipped, got %g", w[0]);
    s_report("clipping at eps: plus / times vs hand", worst, 1e-15);

    /* Anti-aligned: client 2 against two identical others. */
    float nu[5];
    for (int i = 0; i < 5; i++) nu[i] = -u[i];
    const float *d2[3] = {u, u, nu};
    cr_assert_eq(fedce_cos_all(cos, d2, c, 3, 5, &err), 0);
    cr_expect(fabs(cos[2] + 1.0) < 1e-15, "anti-aligned: cos %.17g", cos[2]);
    fedce_mean_t m = {cos[2], 1};
    cr_expect(fabs(fedce_grad_contrib(&m) - 2.0) < 1e-15);
}

/* ---- priors, registry, client scores -------------------------------------------------- */

Test(fedce, priors_for_new_known_and_absent_clients) {
    /* Clients 0..2 aggregated last with 0.5 0.3 0.2, client 3 earlier with 0.6, client 4
     * never seen. */
    fedce_client_t reg[5] = {
        {.coef = 0.5, .seen = 1}, {.coef = 0.3, .seen = 1}, {.coef = 0.2, .seen = 1},
        {.coef = 0.6, .seen = 1}, {.seen = 0},
    };
    double c[5], worst = 0.0;
    cc_err_t err = {0};
    /* Round 0 style: only new clients → 1/K. */
    fedce_client_t fresh[3] = {{.seen = 0}};
    size_t p3[3] = {0, 1, 2};
    cr_assert_eq(fedce_priors(c, fresh, 3, p3, 3, &err), 0);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(c[k] - 1.0 / 3));
    /* Known clients all back, one joins: the newcomer gets 1/(K+1) = 1/4, the rest 3/4 in
     * proportion 0.5 : 0.3 : 0.2. */
    size_t pj[4] = {0, 1, 2, 4};
    const double ej[4] = {0.375, 0.225, 0.15, 0.25};
    cr_assert_eq(fedce_priors(c, reg, 5, pj, 4, &err), 0);
    for (int k = 0; k < 4; k++) worst = fmax(worst, fabs(c[k] - ej[k]));
    /* Client 1 absent: 0 and 2 renormalised over themselves, newcomer 1/3. */
    size_t pa[3] = {0, 2, 4};
    const double ea[3] = {2.0 / 3 * 5 / 7, 2.0 / 3 * 2 / 7, 1.0 / 3};
    cr_assert_eq(fedce_priors(c, reg, 5, pa, 3, &err), 0);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(c[k] - ea[k]));
    /* Known only, from different rounds: plain renormalisation 0.3 : 0.6. */
    size_t pk[2] = {1, 3};
    cr_assert_eq(fedce_priors(c, reg, 5, pk, 2, &err), 0);
    worst = fmax(worst, fmax(fabs(c[0] - 1.0 / 3), fabs(c[1] - 2.0 / 3)));
    /* One participant: 1, new or known. */
    size_t p1[1] = {3};
    cr_assert_eq(fedce_priors(c, reg, 5, p1, 1, &err), 0);
    worst = fmax(worst, fabs(c[0] - 1.0));
    /* Known participants whose weights are all 0: even split of their mass. */
    fedce_client_t zero[3] = {{.coef = 0.0, .seen = 1}, {.coef = 0.0, .seen = 1}, {.seen = 0}};
    cr_assert_eq(fedce_priors(c, zero, 3, p3, 3, &err), 0);
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(c[k] - 1.0 / 3));
    s_report("priors vs hand", worst, 1e-15);

    /* Errors leave c alone. */
    c[0] = 42.0;
    size_t dup[2] = {1, 1}, out[2] = {1, 5};
    cr_expect_eq(fedce_priors(c, reg, 5, dup, 2, &err), CC_ERR_ARG);
    printf("duplicate: %s\n", err.msg);
    cr_expect_eq(fedce_priors(c, reg, 5, out, 2, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_priors(c, reg, 5, p3, 0, &err), CC_ERR_ARG);
    reg[2].coef = NAN;
    cr_expect_eq(fedce_priors(c, reg, 5, p3, 3, &err), CC_ERR_ARG);
    reg[2].coef = -0.1;
    cr_expect_eq(fedce_priors(c, reg, 5, p3, 3, &err), CC_ERR_ARG);
    cr_expect_eq(c[0], 42.0);
}

Test(fedce, round_weights_single_participant_and_errors) {
    fedce_client_t reg[3] = {{.cos = {.sum = 0.4, .n = 2}, .coef = 0.7, .seen = 1}, {.seen = 0}, {.seen = 0}};
    fedce_client_t before[3];
    memcpy(before, reg, sizeof reg);
    double w[3] = {0}, a[3] = {0};
    cc_err_t err = {0};
    size_t one[1] = {0};
    cr_assert_eq(fedce_round_weights(w, a, reg, 3, one, 1, NULL, NULL, FEDCE_TIMES, &err), 0, "%s", err.msg);
    cr_expect_eq(w[0], 1.0);
    cr_expect_eq(a[0], 1.0);
    cr_expect(memcmp(reg, before, sizeof reg) == 0, "K = 1 records nothing");
    size_t newcomer[1] = {1};
    cr_assert_eq(fedce_round_weights(w, NULL, reg, 3, newcomer, 1, NULL, NULL, FEDCE_PLUS, &err), 0);
    cr_expect(memcmp(reg, before, sizeof reg) == 0);
    cr_expect_eq(reg[1].seen, 0, "a lone newcomer stays new: it gets the new-client prior next time");

    /* Bad input leaves the registry untouched. */
    size_t part[3] = {0, 1, 2};
    double cos[3] = {0.1, -0.2, 0.3}, b[3] = {0.5, 0.5, NAN};
    cr_expect_eq(fedce_round_weights(w, a, reg, 3, part, 3, cos, b, FEDCE_PLUS, &err), CC_ERR_ARG);
    printf("bad b: %s\n", err.msg);
    b[2] = 0.5;
    cos[1] = INFINITY;
    cr_expect_eq(fedce_round_weights(w, a, reg, 3, part, 3, cos, b, FEDCE_PLUS, &err), CC_ERR_ARG);
    cos[1] = -0.2;
    cr_expect_eq(fedce_round_weights(w, a, reg, 3, part, 3, cos, b, (fedce_mode_t)9, &err), CC_ERR_ARG);
    size_t dup[2] = {2, 2};
    cr_expect_eq(fedce_round_weights(w, a, reg, 3, dup, 2, cos, b, FEDCE_PLUS, &err), CC_ERR_ARG);
    cr_expect(memcmp(reg, before, sizeof reg) == 0);

    /* A good round: the running mean includes the earlier cosines of client 0. */
    cr_assert_eq(fedce_round_weights(w, a, reg, 3, part, 3, cos, b, FEDCE_PLUS, &err), 0, "%s", err.msg);
    cr_expect(fabs(a[0] - (1.0 - 0.5 / 3)) < 1e-15, "a_0 = 1 − (0.4 + 0.1)/3, got %.17g", a[0]);
    cr_expect(fabs(a[1] - 1.2) < 1e-15 && fabs(a[2] - 0.7) < 1e-15);
    cr_expect_eq(reg[0].cos.n, 3);
    cr_expect_eq(reg[1].cos.n, 1);
}

Test(fedce, all_updates_zero_give_weights_from_b_alone) {
    float z[8] = {0};
    const float *d[3] = {z, z, z};
    fedce_client_t reg[3] = {{.seen = 0}};
    size_t part[3] = {0, 1, 2};
    double c[3], cos[3], w[3], a[3];
    const double b_eq[3] = {0.4, 0.4, 0.4}, b[3] = {0.1, 0.3, 0.6};
    cc_err_t err = {0};
    cr_assert_eq(fedce_priors(c, reg, 3, part, 3, &err), 0);
    cr_assert_eq(fedce_cos_all(cos, d, c, 3, 8, &err), 0);
    double worst = 0.0;
    for (int mode = 0; mode < 2; mode++) {
        fedce_client_t r[3] = {{.seen = 0}};
        cr_assert_eq(fedce_round_weights(w, a, r, 3, part, 3, cos, b_eq, (fedce_mode_t)mode, &err), 0);
        for (int k = 0; k < 3; k++) worst = fmax(worst, fmax(fabs(w[k] - 1.0 / 3), fabs(a[k] - 1.0)));
        cr_assert_eq(fedce_round_weights(w, a, r, 3, part, 3, cos, b, (fedce_mode_t)mode, &err), 0);
        /* â stays uniform (a = 1 again): plus gives (1/3 + b)/2, times gives b. */
        for (int k = 0; k < 3; k++)
            worst = fmax(worst, fabs(w[k] - (mode == FEDCE_PLUS ? (1.0 / 3 + b[k]) / 2 : b[k])));
    }
    s_report("all updates zero: weights from b", worst, 1e-15);
}

Test(fedce, client_score_rule_and_means) {
    fedce_mean_t h = {0};
    double b = -1.0;
    cc_err_t err = {0};
    cr_expect_eq(fedce_mean_value(&h, 7.0), 7.0);
    cr_expect_eq(fedce_data_contrib(&h), 1.0);
    cr_expect_eq(fedce_grad_contrib(&h), 1.0);
    /* First round: no minus model, scores 0. */
    cr_assert_eq(fedce_client_score(&b, &h, 0, NAN, &err), 0);
    cr_expect_eq(h.n, 1);
    cr_expect_eq(b, 1.0);
    /* Scored round. */
    cr_assert_eq(fedce_client_score(&b, &h, 1, 0.6, &err), 0);
    cr_expect(fabs(b - 0.7) < 1e-15, "b = 1 − (0 + 0.6)/2, got %.17g", b);
    /* Absent or alone last round: nothing recorded, same b. */
    cr_assert_eq(fedce_client_score(&b, &h, 0, 0.99, &err), 0);
    cr_expect_eq(h.n, 2);
    cr_expect(fabs(b - 0.7) < 1e-15);
    /* A non-finite score is refused and changes nothing. */
    b = -1.0;
    cr_expect_eq(fedce_client_score(&b, &h, 1, NAN, &err), CC_ERR_ARG);
    cr_expect_eq(h.n, 2);
    cr_expect_eq(b, -1.0);
    cr_expect_eq(fedce_mean_push(&h, INFINITY, &err), CC_ERR_ARG);
    /* a_k is clamped at 0 when the mean cosine rounds above 1. */
    fedce_mean_t m = {2.0000000000000004, 2};
    cr_expect_eq(fedce_grad_contrib(&m), 0.0);
}

/* ---- minus model --------------------------------------------------------------------- */

/* θ_t = θ_{t−1} + η Σ_j c_j Δ_j as the coordinator stores it (float); the minus model of
 * client k must equal θ_{t−1} + η Σ_{j≠k} c_j/(1 − c_k) Δ_j, computed here in double. */
Test(fedce, minus_model_equals_aggregation_without_the_client) {
    s_state = 4;
    const size_t K = 4, P = 1000;
    const double lrs[2] = {1.0, 0.5};
    float **d = s_updates_new(K, P);
    float *prev = malloc(P * sizeof *prev), *now = malloc(P * sizeof *now), *agg = malloc(P * sizeof *agg);
    float *out = malloc(P * sizeof *out), *out2 = malloc(P * sizeof *out2);
    double *ref = malloc(P * sizeof *ref);
    for (size_t i = 0; i < P; i++) prev[i] = (float)s_normal();
    double worst = 0.0, worst_coord = 0.0, worst_aggr = 0.0;
    cc_err_t err = {0};
    for (int trial = 0; trial < 2; trial++) {
        double c[4];
        if (trial == 0) s_random_coefs(c, K);
        else c[0] = 0.9, c[1] = 0.05, c[2] = 0.03, c[3] = 0.02; /* 1/(1 − c_0) = 10 */
        for (int li = 0; li < 2; li++) {
            double lr = lrs[li];
            for (size_t i = 0; i < P; i++) {
                double s = 0.0;
                for (size_t j = 0; j < K; j++) s += c[j] * d[j][i];
                agg[i] = (float)s;
                now[i] = (float)(prev[i] + lr * s);
            }
            for (size_t k = 0; k < K; k++) {
                double scale = 0.0, diff = 0.0, diff_c = 0.0, diff_a = 0.0, scale_a = 0.0;
                for (size_t i = 0; i < P; i++) {
                    double s = 0.0;
                    for (size_t j = 0; j < K; j++)
                        if (j != k) s += c[j] / (1.0 - c[k]) * d[j][i];
                    ref[i] = prev[i] + lr * s;
                    scale = fmax(scale, fabs(ref[i]));
                    scale_a = fmax(scale_a, fabs(s));
                }
                cr_assert_eq(fedce_minus_model(out, prev, now, d[k], c[k], lr, P, &err), 0, "%s", err.msg);
                cr_assert_eq(fedce_minus_model_coord(out2, prev, agg, d[k], c[k], lr, P, &err), 0, "%s", err.msg);
                for (size_t i = 0; i < P; i++) {
                    diff = fmax(diff, fabs(out[i] - ref[i]));
                    diff_c = fmax(diff_c, fabs(out2[i] - ref[i]));
                }
                cr_assert_eq(fedce_minus_aggregate(out2, agg, d[k], c[k], P, &err), 0, "%s", err.msg);
                for (size_t i = 0; i < P; i++) {
                    double s = 0.0;
                    for (size_t j = 0; j < K; j++)
                        if (j != k) s += c[j] / (1.0 - c[k]) * d[j][i];
                    diff_a = fmax(diff_a, fabs(out2[i] - s));
                }
                worst = fmax(worst, diff / scale);
                worst_coord = fmax(worst_coord, diff_c / scale);
                worst_aggr = fmax(worst_aggr, diff_a / scale_a);
            }
        }
    }
    s_report("minus model (client) vs aggregation without k, rel", worst, 1e-5);
    s_report("minus model (coordinator) vs aggregation without k, rel", worst_coord, 1e-5);
    s_report("minus aggregate vs aggregate without k, rel", worst_aggr, 1e-5);

    /* out may alias theta_now (the client overwrites its copy of θ_t). */
    double c0 = 0.3;
    cr_assert_eq(fedce_minus_model(out, prev, now, d[1], c0, 1.0, P, &err), 0);
    memcpy(out2, now, P * sizeof *out2);
    cr_assert_eq(fedce_minus_model(out2, prev, out2, d[1], c0, 1.0, P, &err), 0);
    cr_expect(memcmp(out, out2, P * sizeof *out) == 0, "aliased output differs");
    /* c_k = 0: the client's update did not count, the minus model is θ_t. */
    cr_assert_eq(fedce_minus_model(out, prev, now, d[1], 0.0, 1.0, P, &err), 0);
    cr_expect(memcmp(out, now, P * sizeof *out) == 0);

    free(prev), free(now), free(agg), free(out), free(out2), free(ref);
    s_updates_free(d, K);
}

Test(fedce, minus_model_refuses_a_lone_client) {
    float p[2] = {1, 2}, n[2] = {3, 4}, d[2] = {2, 2}, out[2] = {-7, -7};
    cc_err_t err = {0};
    cr_expect_eq(fedce_minus_model(out, p, n, d, 1.0, 1.0, 2, &err), CC_ERR_ARG);
    printf("c_k = 1: %s\n", err.msg);
    cr_expect_eq(fedce_minus_model(out, p, n, d, 1.5, 1.0, 2, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_minus_model(out, p, n, d, -0.1, 1.0, 2, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_minus_model(out, p, n, d, NAN, 1.0, 2, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_minus_model(out, p, n, d, 0.5, NAN, 2, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_minus_model_coord(out, p, n, d, 1.0, 1.0, 2, &err), CC_ERR_ARG);
    cr_expect_eq(fedce_minus_aggregate(out, n, d, 1.0, 2, &err), CC_ERR_ARG);
    cr_expect(out[0] == -7.0f && out[1] == -7.0f, "out untouched on error");
}

/* The coordinator's Gram-matrix route (one ssyrk pass) gives the streaming cosines. */
Test(fedce, gram_cosines_equal_the_streaming_ones) {
    enum { K = 6, N = 8, P = 5000 };
    float *U = calloc((size_t)N * P, sizeof(float));
    size_t rows[K] = {0, 2, 3, 5, 6, 7};
    double c[K] = {0.1, 0.3, 0.05, 0.25, 0.2, 0.1}, got[K], want[K];
    const float *deltas[K];
    cc_rng_t rng;
    cc_rng_seed(&rng, 77);
    for (size_t k = 0; k < K; k++) {
        float *row = U + rows[k] * P;
        for (size_t i = 0; i < P; i++) row[i] = (float)cc_rng_normal(&rng) + (k % 2 ? 0.5f : -0.2f);
        deltas[k] = row;
    }
    float *G = calloc(N * N, sizeof(float));
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, P, 1.0f, U, P, 0.0f, G, N);
    fedce_cos_gram(got, G, N, rows, c, K);
    cc_err_t err = {0};
    cr_assert_eq(fedce_cos_all(want, deltas, c, K, P, &err), 0, "%s", err.msg);
    double worst = 0;
    for (size_t k = 0; k < K; k++) worst = fmax(worst, fabs(got[k] - want[k]));
    cr_log_info("Gram vs streaming cosines: max diff %.2e (tol 1e-4, float Gram)", worst);
    cr_expect_lt(worst, 1e-4);
    free(U), free(G);
}

/* fedce_dots: each dot equals a double-precision reference; ⟨u, v⟩ is bitwise the same
 * whichever is the row, so a Gram matrix built as rows arrive is the same in any order. */
Test(fedce, dots_are_exact_enough_and_order_free) {
    enum { N = 5, P = 65536 * 2 + 37 }; /* three blocks, the last short */
    float *U = malloc((size_t)N * P * sizeof(float));
    cc_rng_t rng;
    cc_rng_seed(&rng, 5);
    for (size_t i = 0; i < (size_t)N * P; i++) U[i] = (float)cc_rng_normal(&rng) * 0.01f;
    const float *rows[N];
    for (size_t i = 0; i < N; i++) rows[i] = U + i * P;
    double got[N], worst = 0;
    fedce_dots(got, rows, N, rows[2], P);
    for (size_t i = 0; i < N; i++) {
        double ref = 0;
        for (size_t p = 0; p < P; p++) ref += (double)rows[i][p] * (double)rows[2][p];
        worst = fmax(worst, fabs(got[i] - ref) / fmax(1e-30, fabs(ref) + 1e-3 * got[2]));
    }
    cr_expect_lt(worst, 1e-5, "relative error %.2e", worst);
    /* Build G with rows arriving in order 0..N-1 and in reverse: identical bits (an entry is
     * computed four rows at a time in one order and alone in the other). */
    double G1[N][N], G2[N][N], tmp[N];
    for (size_t k = 0; k < N; k++) {
        fedce_dots(tmp, rows, k + 1, rows[k], P);
        for (size_t i = 0; i <= k; i++) G1[i][k] = G1[k][i] = tmp[i];
    }
    for (size_t j = 0; j < N; j++) {
        size_t k = N - 1 - j;
        const float *arrived[N];
        for (size_t i = 0; i <= j; i++) arrived[i] = rows[N - 1 - i];
        fedce_dots(tmp, arrived, j + 1, rows[k], P);
        for (size_t i = 0; i <= j; i++) G2[N - 1 - i][k] = G2[k][N - 1 - i] = tmp[i];
    }
    cr_expect_eq(memcmp(G1, G2, sizeof G1), 0, "the Gram matrix depends on the arrival order");
    double mt[N];
    fedce_dots_mt(mt, rows, N, rows[2], P, 2);
    fedce_dots(got, rows, N, rows[2], P);
    cr_expect_eq(memcmp(mt, got, sizeof mt), 0, "2 threads differ from 1");
    free(U);
}

static void *s_share_worker(void *arg) {
    fedce_dots_share_work(arg);
    return NULL;
}

/* fedce_dots_share (FedCE's early Gram row): a worker takes blocks, this thread joins after
 * it has taken some; the dots are fedce_dots's bits whoever took which block, and a
 * cancelled share stops taking blocks. */
Test(fedce, shared_dots_match_fedce_dots) {
    enum { N = 7, P = 65536 * 9 + 123 }; /* ten blocks, the last short */
    float *U = malloc((size_t)N * P * sizeof(float));
    cc_rng_t rng;
    cc_rng_seed(&rng, 9);
    for (size_t i = 0; i < (size_t)N * P; i++) U[i] = (float)cc_rng_normal(&rng);
    const float *rows[N];
    for (size_t i = 0; i < N; i++) rows[i] = U + i * P;
    double want[N], got[N];
    fedce_dots(want, rows, N, rows[N - 1], P);
    for (int joined_at = 0; joined_at <= 10; joined_at += 5) {
        fedce_dots_share_t share;
        fedce_dots_share_start(&share, rows, N, rows[N - 1], P);
        pthread_t worker;
        cr_assert_eq(pthread_create(&worker, NULL, s_share_worker, &share), 0);
        while (atomic_load(&share.next) < (size_t)joined_at) sched_yield();
        fedce_dots_share_work(&share);
        pthread_join(worker, NULL);
        fedce_dots_share_end(&share, got);
        cr_expect_eq(memcmp(want, got, sizeof got), 0, "the dots differ when this thread joins at block %d", joined_at);
    }
    fedce_dots_share_t share;
    fedce_dots_share_start(&share, rows, N, rows[N - 1], P);
    fedce_dots_share_cancel(&share);
    fedce_dots_share_work(&share); /* takes nothing */
    cr_expect_geq(atomic_load(&share.next), share.n_blocks);
    cr_expect_eq(share.partial[0], 0.0, "a cancelled share computed a block");
    fedce_dots_share_end(&share, NULL);
    free(U);
}
