/* fedce.h — numerical core of FedCE, DESIGN §6.1 (Jiang et al., CVPR 2023; reference:
 * NVFlare research/fed-ce, FedCEAssembler + SupervisedMonaiProstateFedCELearner).
 *
 * Everything works on flat float32 vectors of length P (one model's parameters or one
 * update) and accumulates in double. No state is global: the caller owns and persists
 * every struct below (they are plain values, safe to memcpy into a checkpoint).
 *
 * Notation, round t, participants k = 1..K (client-id order), Δ_k their updates as the
 * coordinator aggregates them (Δ̃_k of §6.1), c_k this round's coefficients (sum 1 over
 * the participants), w_k this round's aggregation weights.
 *
 * 1. Coefficients c_k (coordinator, fedce_priors). The registry keeps, per client, the last
 *    aggregation weight it received (fedce_client_t.coef) and whether it ever received one
 *    (.seen). With N of the K participants never seen:
 *        new participant:    c_k = 1/K
 *        known participant:  c_k = (1 − N/K) · coef_k / Σ_{known participants j} coef_j
 *    so Σ c_k = 1. Round 0 (all new) gives 1/K; one client joining K known participants
 *    gets exactly 1/(K+1) of the round, the known ones share K/(K+1) in proportion to
 *    their previous weights; clients absent from the round keep their coef untouched and
 *    take no part in the normalisation. (The reference never meets absent or joining
 *    clients; this rule reproduces its 1/K in round 0 and is ours otherwise.)
 *
 * 2. Gradient-space cosine (coordinator, fedce_cos_*), two streaming passes, O(K·P), one
 *    double vector S in memory:
 *        pass 1:  S = Σ_j c_j Δ_j,   n_k = ‖Δ_k‖²
 *        pass 2:  d_k = ⟨Δ_k, S⟩              (‖S‖² once, at the start of pass 2)
 *        num_k = ⟨Δ_k, S − c_kΔ_k⟩ = d_k − c_k n_k
 *        m_k   = ‖S − c_kΔ_k‖²     = ‖S‖² − 2 c_k d_k + c_k² n_k
 *        cos_k = num_k / sqrt(n_k · m_k), clamped to [−1, 1]
 *    cos_k = 0 when n_k = 0 or when m_k ≤ tol(P) · (‖S‖ + c_k ‖Δ_k‖)²: m_k is a difference
 *    of sums whose rounding error is bounded by that, so below it m_k is noise around a
 *    vector that is (numerically) zero, e.g. K = 2 and the other update is 0.
 *    tol(P) = 8 · (264 + ⌈P/1024⌉) · DBL_EPSILON (fedce_cancel_tol: 16× the bound of the
 *    blocked double sums; 4.9e-13 at P = 1e4, 1.8e-11 at P = 1e7), i.e. cos_k = 0 once
 *    ‖S − c_kΔ_k‖ < √tol · (‖S‖ + c_k‖Δ_k‖). S − c_kΔ_k is never formed.
 *
 * 3. Running means (fedce_mean_t = {Σx, n}):
 *        a_k = max(0, 1 − mean cos_k)   over the rounds with K ≥ 2 client k took part in
 *        b_k = 1 − mean score_k         (client side, fedce_client_score)
 *    Client score rule (fedce_client_score): the client's first round records score 0
 *    (the reference's round 0, generalised to clients that join later); a round after
 *    one in which its update was aggregated with weight 0 < c_k < 1 records the minus
 *    model's score; any other round (absent last round, alone last round) records nothing.
 *    An empty mean counts as 0 (a_k = 1, b_k = 1).
 *
 * 4. Combination (fedce_combine), ε = FEDCE_EPS = 1e-6:
 *        â = clip_ε(a) / Σ clip_ε(a),   b̂ = clip_ε(b) / Σ clip_ε(b)   (clip_ε(x) = max(x, ε))
 *        plus:  v = (â + b̂)/2      times:  v = â ⊙ b̂
 *        w = clip_ε(v) / Σ clip_ε(v)
 *    w are this round's aggregation weights and, stored as coef, the source of next
 *    round's c. A round with K = 1 gives w = 1 and records nothing (registry untouched).
 *    (The reference normalises first and clips at 1e-3 after; §6.1 clips, then normalises.)
 *
 * 5. Minus model — the model round t−1 would have produced without client k, for the plain
 *    server step θ_t = θ_{t−1} + η_s Σ_j c_j Δ_j, with c_k the weight Δ_k had in it:
 *        client:       θ⁻_k = θ_{t−1} + (θ_t − θ_{t−1} − η_s c_k Δ_k) / (1 − c_k)
 *        coordinator:  θ⁻_k = θ_{t−1} + η_s (A − c_k Δ_k) / (1 − c_k),  A = Σ_j c_j Δ_j
 *        minus aggregate (FedAvgM / FedAdam): A⁻_k = (A − c_k Δ_k) / (1 − c_k); run the
 *        server optimiser's step with A⁻_k on a copy of its pre-step state.
 *    With [fedce] minus_model = coordinator the coordinator calls the client formula on the
 *    θ_{t−1}, θ_t and Δ_k it holds (coordinator/minus.c): both routes give the same bits.
 *    All equal θ_{t−1} + η_s Σ_{j≠k} (c_j / (1 − c_k)) Δ_j. c_k = 1 (the client was alone)
 *    is an error; rounding in θ_t is amplified by 1/(1 − c_k). With η_s = 1 the client
 *    formula is the reference's (θ_t − c_k θ_k,local)/(1 − c_k).
 */
#ifndef CONCORD_FEDCE_H
#define CONCORD_FEDCE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define FEDCE_EPS 1e-6

typedef enum {
    FEDCE_PLUS = 0,  /* w = (â + b̂)/2, the default */
    FEDCE_TIMES = 1, /* w = â ⊙ b̂ */
} fedce_mode_t;

/* "plus" or "times" → *mode. Returns 0, or CC_ERR_ARG (mode untouched). */
int fedce_mode_parse(const char *s, fedce_mode_t *mode) CC_WUR;
const char *fedce_mode_name(fedce_mode_t mode);

/* ---- running means ---------------------------------------------------------------- */

typedef struct {
    double sum; /* Σ x */
    uint64_t n; /* number of values */
} fedce_mean_t;

/* Adds x. Returns 0, or CC_ERR_ARG if x is not finite (m unchanged). */
int fedce_mean_push(fedce_mean_t *m, double x, cc_err_t *err) CC_WUR;
/* sum/n, or if_empty when n = 0. */
double fedce_mean_value(const fedce_mean_t *m, double if_empty);

/* a_k = max(0, 1 − mean cos) (empty: 1). */
double fedce_grad_contrib(const fedce_mean_t *cos_hist);
/* b_k = 1 − mean score (empty: 1). */
double fedce_data_contrib(const fedce_mean_t *score_hist);

/* Client, once per round before local training (rule in the header comment, item 3).
 * scored != 0: score is the minus model's validation metric this round, pushed.
 * scored == 0: pushes 0 if hist is empty (first round), else nothing.
 * Writes *b = 1 − mean. Returns 0, or CC_ERR_ARG for a non-finite score (hist unchanged). */
int fedce_client_score(double *b, fedce_mean_t *hist, int scored, double score,
                       cc_err_t *err) CC_WUR;

/* ---- coordinator registry, coefficients and weights ---------------------------------- */

typedef struct {
    fedce_mean_t cos; /* cos_k of every round with K ≥ 2 the client took part in */
    double coef;      /* last aggregation weight w_k; meaningless while !seen */
    int seen;         /* 0 until the client's first round with K ≥ 2 */
} fedce_client_t;

/* This round's coefficients c (K) of the participants reg[part[0..K)], by the rule of
 * item 1. part holds distinct indices < n_reg. Returns 0, or CC_ERR_ARG (K = 0, bad or
 * repeated index, a seen client with a non-finite or negative coef); c is written only
 * on success. reg is not modified. */
int fedce_priors(double *c, const fedce_client_t *reg, size_t n_reg, const size_t *part,
                 size_t K, cc_err_t *err) CC_WUR;

/* Combination of item 4: w (K) from raw a, b (K). w may alias a or b. K = 1 gives w = 1.
 * Returns 0, or CC_ERR_ARG (K = 0, non-finite a or b, bad mode). */
int fedce_combine(double *w, const double *a, const double *b, size_t K, fedce_mode_t mode,
                  cc_err_t *err) CC_WUR;

/* The coordinator's end of a round's FedCE step: for K ≥ 2 pushes cos[k] into
 * reg[part[k]].cos, computes a_k, w = fedce_combine(a, b), and stores coef = w_k,
 * seen = 1 for every participant. a_out (K, may be NULL) receives a_k (for the ledger).
 * K = 1: w[0] = 1, a_out[0] = 1, cos and b may be NULL, reg untouched.
 * b are the clients' reported b_k. All inputs are checked before reg is touched, so on
 * error (CC_ERR_ARG: bad index, non-finite cos or b) reg is unchanged. */
int fedce_round_weights(double *w, double *a_out, fedce_client_t *reg, size_t n_reg,
                        const size_t *part, size_t K, const double *cos, const double *b,
                        fedce_mode_t mode, cc_err_t *err) CC_WUR;

/* ---- gradient-space cosines: streaming --------------------------------------------
 *
 *   fedce_cos_new ──► ACCUM ──fedce_cos_add × K (each k once, any order)──►
 *       ──first fedce_cos_dot (needs all K added; computes ‖S‖²)──► DOT
 *       ──fedce_cos_dot × K (each k once)──► fedce_cos_result (any number of times)
 *   any call failing on a non-finite update ──► FAILED (sticky: every later call fails)
 *   Misuse (k ≥ K, a k twice, calls out of order) returns CC_ERR_ARG and changes nothing.
 * The Δ_k of pass 2 must be the same vectors as in pass 1. */

typedef enum {
    FEDCE_COS_ACCUM = 0, /* pass 1: fedce_cos_add accumulates S and ‖Δ_k‖² */
    FEDCE_COS_DOT,       /* pass 2: fedce_cos_dot computes ⟨Δ_k, S⟩ */
    FEDCE_COS_FAILED,    /* a non-finite update was seen; only destroy remains */
} fedce_cos_state_t;

typedef struct {
    size_t K, P;
    fedce_cos_state_t state;
    double *S;        /* (P) Σ_j c_j Δ_j */
    double *c;        /* (K) */
    double *sq;       /* (K) ‖Δ_k‖² */
    double *dot;      /* (K) ⟨Δ_k, S⟩ */
    uint8_t *added;   /* (K) pass-1 done for k */
    uint8_t *dotted;  /* (K) pass-2 done for k */
    size_t n_added, n_dotted;
    double S_sq;      /* ‖S‖², set on entering DOT */
} fedce_cos_t;

/* New accumulator for K ≥ 1 updates of length P (holds 8·P bytes for S). NULL if K = 0.
 * Owned by the caller: fedce_cos_destroy. */
fedce_cos_t *fedce_cos_new(size_t K, size_t P);
/* Frees *s (NULL allowed) and sets *s = NULL. */
void fedce_cos_destroy(fedce_cos_t **s);
/* Pass 1, update k with coefficient c_k ≥ 0 (finite). delta (P) is only read. */
int fedce_cos_add(fedce_cos_t *s, size_t k, const float *delta, double c_k,
                  cc_err_t *err) CC_WUR;
/* Pass 2, update k. delta (P) is only read. */
int fedce_cos_dot(fedce_cos_t *s, size_t k, const float *delta, cc_err_t *err) CC_WUR;
/* cos (K) once every k went through both passes. */
int fedce_cos_result(const fedce_cos_t *s, double *cos, cc_err_t *err) CC_WUR;

/* One shot over K updates in memory (tests, small federations): deltas[k] (P each),
 * c (K). Same numbers as the streaming API fed in order k = 0..K−1. */
int fedce_cos_all(double *cos, const float *const *deltas, const double *c, size_t K,
                  size_t P, cc_err_t *err) CC_WUR;

/* The same cosines from a Gram matrix: G (n, n) row-major with G_ij = ⟨U_i, U_j⟩ (only the
 * upper triangle is read, as cblas_ssyrk leaves it), the K updates being rows rows[0..K) of
 * U with coefficients c (K). ⟨Δ_k,S⟩ = Σ_j c_j G_kj, ‖S‖² = cᵀGc, ‖Δ_k‖² = G_kk. A
 * remainder ‖S − c_kΔ_k‖² within 1e-5 of the terms it came from (float G) counts as 0,
 * and so does the cosine. One pass over the updates (the Gram matrix) instead of two. */
void fedce_cos_gram(double *cos, const float *G, size_t n, const size_t *rows, const double *c, size_t K);

/* out[i] = ⟨rows[i], x⟩ (i < n), all P long, in one pass over the rows: block by block
 * (x's block stays in cache), each dot in a fixed order (32 float lanes per block of 65536,
 * the blocks summed in double). The order depends only on the index, and a·b = b·a, so
 * ⟨u, v⟩ is bitwise the same whichever of u, v is the row: a Gram matrix built one row at
 * a time is the same whatever the order its rows arrived in. */
void fedce_dots(double *out, const float *const *rows, size_t n, const float *x, size_t P);
/* The same on `threads` threads (fedce_dots_share: the same bits as fedce_dots). */
void fedce_dots_mt(double *out, const float *const *rows, size_t n, const float *x, size_t P, int threads);

/* fedce_dots shared by threads that join when they can (FedCE's early Gram row: its worker
 * thread, then the poll loop once the update is verified). _start sets it up (x and the
 * rows must stay put until _end); every thread calling _work takes column blocks one at a
 * time until none is left, each block's dots stored apart; once all have returned, _end
 * sums each dot's blocks in order (the same bits as fedce_dots) into out and frees the
 * blocks (out NULL: just frees). _cancel: the threads stop at their next block. */
typedef struct {
    const float *const *rows;
    size_t n, P, n_blocks;
    const float *x;
    double *partial; /* (n_blocks, n) */
    atomic_size_t next;
} fedce_dots_share_t;
void fedce_dots_share_start(fedce_dots_share_t *s, const float *const *rows, size_t n, const float *x, size_t P);
void fedce_dots_share_work(fedce_dots_share_t *s);
void fedce_dots_share_cancel(fedce_dots_share_t *s);
void fedce_dots_share_end(fedce_dots_share_t *s, double *out);

/* Rounding bound of the blocked sums, the cancellation threshold of item 2. */
double fedce_cancel_tol(size_t P);

/* ---- minus model (item 5) ----------------------------------------------------------
 * out (P) may alias any input (the computation is element by element). c_k is the weight
 * Δ_k had in round t−1's aggregation: 0 ≤ c_k < 1, else CC_ERR_ARG and out untouched. */

/* Client: from θ_{t−1} (theta_prev), θ_t (theta_now) and its own Δ̃_k. */
int fedce_minus_model(float *out, const float *theta_prev, const float *theta_now,
                      const float *delta_k, double c_k, double server_lr, size_t P,
                      cc_err_t *err) CC_WUR;
/* Coordinator, plain step: from θ_{t−1}, the weighted aggregate A = Σ c_j Δ̃_j and Δ̃_k. */
int fedce_minus_model_coord(float *out, const float *theta_prev, const float *agg,
                            const float *delta_k, double c_k, double server_lr, size_t P,
                            cc_err_t *err) CC_WUR;
/* A⁻_k = (A − c_k Δ̃_k)/(1 − c_k): the aggregate without client k, to feed a stateful
 * server optimiser (FedAvgM, FedAdam) on a copy of its state. */
int fedce_minus_aggregate(float *out, const float *agg, const float *delta_k, double c_k,
                          size_t P, cc_err_t *err) CC_WUR;

#endif
