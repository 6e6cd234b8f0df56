/* blake2b.h — BLAKE2b (RFC 7693), the same bytes as libsodium's crypto_generichash.
 *
 * Why our own: every update's frames, the model's digest each round, the journal and the
 * checkpoints are hashed with BLAKE2b, and libsodium, once sodium_init has run (ZeroMQ's
 * CURVE calls it anyway), picks its AVX2 compression function wherever the CPU has AVX2.
 * On this project's machines (AMD EPYC) that one hashes at 0.73 GB/s while libsodium's own
 * portable one, which it no longer uses, does 1.37 GB/s; libb2 (Debian's BLAKE2 library)
 * does 0.63. So the hot paths call this portable implementation, which libsodium's output
 * checks in tests/test_blake2b.c (RFC 7693's vector, every length up to 600 bytes, keys,
 * output sizes, and a long input fed in random pieces). Signatures, keys and
 * everything else stay libsodium's. */
#ifndef CONCORD_BLAKE2B_H
#define CONCORD_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>

#define CC_BLAKE2B_BLOCK 128
#define CC_BLAKE2B_OUT_MAX 64
#define CC_BLAKE2B_KEY_MAX 64

typedef struct {
    uint64_t h[8], t[2];
    uint8_t buf[CC_BLAKE2B_BLOCK];
    size_t buflen, outlen;
} cc_blake2b_t;

/* outlen 1..64 bytes; key NULL or keylen 1..64 bytes (keylen 0: unkeyed). Returns -1 on a
 * bad size (and leaves st unusable), else 0. */
int cc_blake2b_init(cc_blake2b_t *st, size_t outlen, const void *key, size_t keylen);
void cc_blake2b_update(cc_blake2b_t *st, const void *in, size_t n);
/* Writes st's outlen bytes to out; st must be initialised again before reuse. */
void cc_blake2b_final(cc_blake2b_t *st, uint8_t *out);
/* One call: out (outlen bytes) = BLAKE2b(in), unkeyed when key is NULL. -1 on a bad size. */
int cc_blake2b(uint8_t *out, size_t outlen, const void *in, size_t n, const void *key, size_t keylen);

#endif
