/* sumproc.h — a second process that takes part in a FedAvg round close (wsum.h).
 *
 * The close reads every update once from the journal, mapped 2 MiB at a time (no copy out
 * of the page cache). Each munmap in a process whose other thread runs on another CPU
 * interrupts that CPU to flush its TLB; with two summing threads every window cost both
 * of them that interrupt, and two threads summed no faster than one (docs/benchmarks.md,
 * "FedAvg close"). A second process has its own address space, so the two CPUs never
 * interrupt each other: the helper sums column blocks into a θ buffer both processes map
 * (memfd), taking them one at a time from a counter in a page both map (so neither waits
 * for the other), while the caller's thread takes the rest.
 *
 * The helper is forked early (sumproc_start), while the caller's heap is still small: the
 * child keeps a copy of everything mapped at that moment. It ignores SIGINT/SIGTERM/SIGHUP
 * (the coordinator decides when to stop), dies with its parent (PR_SET_PDEATHSIG) and
 * exits when its socket closes. If it dies mid-sum, the caller gets an error and the
 * helper is marked gone; later sums run in the caller's threads (wsum.h). */
#ifndef CONCORD_SUMPROC_H
#define CONCORD_SUMPROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

typedef struct sumproc sumproc_t;

/* Most vectors one request can carry (their offsets and scales travel in one message). */
#define SUMPROC_MAX_K 4096
/* Shared θ buffers: the coordinator's θ_t (held while ZeroMQ sends it) and θ_{t+1}. */
#define SUMPROC_BUFFERS 2
/* A page both processes map at the same address, made before the fork: it holds the
 * counter from which both take the blocks of the sum in flight (wsum.c's pool). */
#define SUMPROC_AREA_BYTES 4096

/* Forks the helper; NULL (err set) if the socket pair or fork failed. */
sumproc_t *sumproc_start(cc_err_t *err);
/* Stops the helper (closes its socket, reaps it) and unmaps the buffers: none may be in
 * use any more. Accepts NULL and *s == NULL. */
void sumproc_stop(sumproc_t **s);
/* Makes SUMPROC_BUFFERS shared buffers of P floats (zero-filled), mapped here and in the
 * helper, replacing earlier ones (which must all be free). */
int sumproc_buffers(sumproc_t *s, size_t P, cc_err_t *err) CC_WUR;
/* A free shared buffer of P floats, now in use; NULL when none is free (or no buffers).
 * The helper is told to map its pages at once (they were dropped when it was given back),
 * which it does while the caller fills it. Main thread only. */
float *sumproc_take(sumproc_t *s);
/* Gives back p if it is one of s's buffers (returns 1; thread-safe: ZeroMQ's I/O thread
 * releases θ_t), else returns 0 and leaves p alone (the caller frees it). s may be NULL.
 * A buffer given back loses its pages (MADV_REMOVE): it reads as zeros when taken again,
 * and costs no memory meanwhile. */
int sumproc_give(sumproc_t *s, float *p);
/* Is p one of s's buffers? (s may be NULL.) */
int sumproc_owns(const sumproc_t *s, const float *p);
/* Is the helper running (not exited, not killed)? */
int sumproc_alive(const sumproc_t *s);
pid_t sumproc_pid(const sumproc_t *s);
/* Sums the helper has taken part in (successfully) so far, and the blocks it summed in them. */
size_t sumproc_shares(const sumproc_t *s);
size_t sumproc_units(const sumproc_t *s);
/* The shared page (SUMPROC_AREA_BYTES), at the same address in the helper. */
void *sumproc_area(sumproc_t *s);

/* The helper's part of a weighted sum: out (one of s's buffers, P floats) += Σ_k scale[k] ·
 * v_k, v_k at byte offset at[k] of the file fd, over the blocks it takes from the pool in
 * sumproc_area, set up beforehand (wsum_pool_start; the caller's threads take the others:
 * wsum_file_pool). sumproc_send hands it over (the descriptor travels with it) and
 * returns at once; sumproc_wait waits for the helper's answer. A helper that is gone fails
 * either call (CC_ERR_IO); it is then marked gone for good, and part of out's blocks may
 * have been summed. */
int sumproc_send(sumproc_t *s, const float *out, size_t P, int fd, const uint64_t *at, const float *scale,
                 size_t K, cc_err_t *err) CC_WUR;
int sumproc_wait(sumproc_t *s, cc_err_t *err) CC_WUR;

#endif
