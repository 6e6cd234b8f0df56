/* wsum.h — the weighted sum at the heart of every round close (DESIGN §4):
 *
 *   out += Σ_k scale_k · v_k        (k = 0 .. K−1, in that order for every element)
 *
 * over K vectors of P floats held in memory (FedCE's rows of U) or in journal records (the
 * FedAvg stream), by column blocks: for each block of out, every vector's block in turn.
 * The block of out and the read buffer stay in cache, so each vector crosses memory once
 * and out once in all, and a journal is read 256 KiB at a time instead of P floats; or,
 * when every vector starts at a 2 MiB-aligned file offset (the coordinator's journal puts
 * them there), mapped 2 MiB at a time (the page cache's large folios, no copy; four
 * vectors' windows per thread at a time, unmapped after, so RSS grows by 8 MiB a thread;
 * a vector's last, partial 2 MiB is read with pread). The threads take blocks one at a
 * time from a shared counter, and so does a helper process (sumproc.h) when there is one
 * and out is one of its shared buffers: its unmaps do not interrupt our CPU, as a second
 * thread's would. Each element's sum runs in the same order whatever the thread
 * count and wherever it runs, with plain multiply and add (no FMA), so the result is the
 * same bits on every run and every machine. */
#ifndef CONCORD_WSUM_H
#define CONCORD_WSUM_H

#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "sumproc.h"
#include "util.h"

/* Where the K vectors are: rows[k] (P floats in memory), or else bytes from[k] onwards of
 * journal record recs[k] (P floats, any alignment). helper (may be NULL): a helper process
 * that takes part in a mapped journal sum whose out is one of its buffers. */
typedef struct {
    const float *const *rows;
    journal_t *journal;
    const journal_record_t *recs;
    const uint64_t *from;
    sumproc_t *helper;
} wsum_src_t;

/* File offset alignment at which wsum_blocked maps the journal's vectors. */
#define WSUM_MAP_ALIGN ((size_t)2 << 20)
/* Floats a vector needs before a helper process takes part: one whole mapped block (below
 * that every float is read with pread, where a second process gains nothing over a second
 * thread and its round trip only costs). */
#define WSUM_HELPER_MIN (WSUM_MAP_ALIGN / sizeof(float))

/* Does wsum_blocked map the vectors (a journal source, each vector at a file offset that
 * is a multiple of WSUM_MAP_ALIGN)? Else it reads them (pread), or they are in memory. */
int wsum_maps(const wsum_src_t *src, size_t K);

/* The coordinator's journal records (coordinator/persist.c; concord-bench aggregate writes
 * the same): u32 header length H | H header bytes | a zero run (journal.h: a hole) | the
 * floats, which so start at a WSUM_MAP_ALIGN-aligned file offset. wsum_record_append
 * appends one (floats_digest: their BLAKE2b-256, or NULL; no floats: no zero run, nothing
 * after the header); wsum_record_floats gives where the floats of such a record start
 * within its payload, from H. */
int wsum_record_append(journal_t *j, const char *header, const void *floats, size_t n_floats,
                       const uint8_t *floats_digest, journal_record_t *rec, cc_err_t *err) CC_WUR;
uint64_t wsum_record_floats(const journal_record_t *rec, uint32_t header_len);

/* out (P) += Σ_k scale[k] · v_k with `threads` threads (1..8), or threads − 1 and the
 * helper. A failed journal read, or the helper dying mid-sum (it is then gone for good:
 * sumproc_alive), is returned (err set) and leaves out partly updated: callers sum into a
 * scratch θ, and may start again from θ. */
int wsum_blocked(float *out, size_t P, const wsum_src_t *src, size_t K, const float *scale, int threads,
                 cc_err_t *err) CC_WUR;

/* The helper's part of a mapped sum (sumproc.h): out's blocks taken from the pool in
 * area (wsum_pool_start, then shared with this process's threads) += Σ_k scale[k] · v_k,
 * v_k being P floats at byte offset at[k] (a multiple of WSUM_MAP_ALIGN) of file fd,
 * which must hold them all (touching a mapped page past a file's end is SIGBUS); whole
 * 2 MiB blocks mapped, the rest read. *units: the blocks it summed. */
int wsum_file_pool(float *out, size_t P, int fd, const uint64_t *at, const float *scale, size_t K, void *area,
                   size_t *units, cc_err_t *err) CC_WUR;
/* Sets up in area (SUMPROC_AREA_BYTES, shared with the helper) the pool of a mapped sum of
 * P floats; wsum_blocked does it before it hands the helper a sum. */
void wsum_pool_start(void *area, size_t P);

/* Tests only: when set, this process's threads start on a sum only once the helper has
 * taken its first block (or 10 s passed), so that a test sees the helper do its part. */
extern int wsum_test_helper_first;

#endif
