/* wsum.h — the weighted sum at the heart of every round close (DESIGN §4):
 *
 *   out += Σ_k scale_k · v_k        (k = 0 .. K−1, in that order for every element)
 *
 * over K vectors of P floats held in memory (FedCE's rows of U) or in journal records (the
 * FedAvg stream), by column blocks: for each block of out, every vector's block in turn.
 * The block of out and the read buffer stay in cache, so each vector crosses memory once
 * and out once in all, and a journal is read 256 KiB at a time instead of P floats. Blocks
 * are split between threads in contiguous ranges; each element's sum runs in the same order
 * whatever the thread count, with plain multiply and add (no FMA), so the result is the
 * same bits on every run and every machine. */
#ifndef CONCORD_WSUM_H
#define CONCORD_WSUM_H

#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "util.h"

/* Where the K vectors are: rows[k] (P floats in memory), or else bytes from[k] onwards of
 * journal record recs[k] (P floats, any alignment). */
typedef struct {
    const float *const *rows;
    journal_t *journal;
    const journal_record_t *recs;
    const uint64_t *from;
} wsum_src_t;

/* out (P) += Σ_k scale[k] · v_k with `threads` threads (1..8). A failed journal read is
 * returned (err set) and leaves out partly updated: callers sum into a scratch θ. */
int wsum_blocked(float *out, size_t P, const wsum_src_t *src, size_t K, const float *scale, int threads,
                 cc_err_t *err) CC_WUR;

#endif
