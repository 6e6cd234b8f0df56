/* blake2b.c — see blake2b.h. RFC 7693, section 3; little-endian words throughout. */
#include "blake2b.h"

#include <string.h>

static const uint64_t s_iv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                                 0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                                 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static uint64_t s_load64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static void s_store64(uint8_t *p, uint64_t w) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    memcpy(p, &w, sizeof w);
}

static inline uint64_t s_rotr(uint64_t w, unsigned c) { return (w >> c) | (w << (64 - c)); }

/* The mixing function G (RFC 7693 3.1) on v[a], v[b], v[c], v[d] with words x, y. */
#define G(a, b, c, d, x, y)                   \
    do {                                      \
        v[a] = v[a] + v[b] + (x);             \
        v[d] = s_rotr(v[d] ^ v[a], 32);       \
        v[c] = v[c] + v[d];                   \
        v[b] = s_rotr(v[b] ^ v[c], 24);       \
        v[a] = v[a] + v[b] + (y);             \
        v[d] = s_rotr(v[d] ^ v[a], 16);       \
        v[c] = v[c] + v[d];                   \
        v[b] = s_rotr(v[b] ^ v[c], 63);       \
    } while (0)

/* One round with the message schedule written out (RFC 7693 2.7's SIGMA row), so every
 * index is a constant and the sixteen words stay in registers. */
#define ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    do {                                                                              \
        G(0, 4, 8, 12, m[s0], m[s1]);                                                 \
        G(1, 5, 9, 13, m[s2], m[s3]);                                                 \
        G(2, 6, 10, 14, m[s4], m[s5]);                                                \
        G(3, 7, 11, 15, m[s6], m[s7]);                                                \
        G(0, 5, 10, 15, m[s8], m[s9]);                                                \
        G(1, 6, 11, 12, m[s10], m[s11]);                                              \
        G(2, 7, 8, 13, m[s12], m[s13]);                                               \
        G(3, 4, 9, 14, m[s14], m[s15]);                                               \
    } while (0)

/* The compression function F (RFC 7693 3.2): block into h, t bytes so far, last block? */
static void s_compress(cc_blake2b_t *st, const uint8_t *block, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) m[i] = s_load64(block + 8 * i);
    for (int i = 0; i < 8; i++) v[i] = st->h[i], v[i + 8] = s_iv[i];
    v[12] ^= st->t[0];
    v[13] ^= st->t[1];
    if (last) v[14] = ~v[14];
    ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    ROUND(14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3);
    ROUND(11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4);
    ROUND(7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8);
    ROUND(9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13);
    ROUND(2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9);
    ROUND(12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11);
    ROUND(13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10);
    ROUND(6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5);
    ROUND(10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0);
    ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    ROUND(14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3);
    for (int i = 0; i < 8; i++) st->h[i] ^= v[i] ^ v[i + 8];
}

static void s_count(cc_blake2b_t *st, uint64_t n) {
    st->t[0] += n;
    if (st->t[0] < n) st->t[1]++;
}

int cc_blake2b_init(cc_blake2b_t *st, size_t outlen, const void *key, size_t keylen) {
    if (outlen < 1 || outlen > CC_BLAKE2B_OUT_MAX || keylen > CC_BLAKE2B_KEY_MAX || (keylen && !key)) return -1;
    memset(st, 0, sizeof *st);
    memcpy(st->h, s_iv, sizeof st->h);
    st->h[0] ^= 0x01010000ULL ^ ((uint64_t)keylen << 8) ^ (uint64_t)outlen; /* the parameter block */
    st->outlen = outlen;
    if (keylen) { /* the key, zero-padded, is the first block */
        memcpy(st->buf, key, keylen);
        st->buflen = CC_BLAKE2B_BLOCK;
    }
    return 0;
}

void cc_blake2b_update(cc_blake2b_t *st, const void *in, size_t n) {
    const uint8_t *p = in;
    if (n == 0) return;
    /* The last block is compressed by final (with the last-block flag), so a full buffer
     * is only compressed once more input follows it. */
    if (st->buflen) {
        size_t room = CC_BLAKE2B_BLOCK - st->buflen;
        if (n <= room) {
            memcpy(st->buf + st->buflen, p, n);
            st->buflen += n;
            return;
        }
        memcpy(st->buf + st->buflen, p, room);
        s_count(st, CC_BLAKE2B_BLOCK);
        s_compress(st, st->buf, 0);
        p += room, n -= room, st->buflen = 0;
    }
    for (; n > CC_BLAKE2B_BLOCK; p += CC_BLAKE2B_BLOCK, n -= CC_BLAKE2B_BLOCK) {
        s_count(st, CC_BLAKE2B_BLOCK);
        s_compress(st, p, 0);
    }
    memcpy(st->buf, p, n);
    st->buflen = n;
}

void cc_blake2b_final(cc_blake2b_t *st, uint8_t *out) {
    uint8_t full[CC_BLAKE2B_OUT_MAX];
    s_count(st, st->buflen);
    memset(st->buf + st->buflen, 0, CC_BLAKE2B_BLOCK - st->buflen);
    s_compress(st, st->buf, 1);
    for (int i = 0; i < 8; i++) s_store64(full + 8 * i, st->h[i]);
    memcpy(out, full, st->outlen);
}

int cc_blake2b(uint8_t *out, size_t outlen, const void *in, size_t n, const void *key, size_t keylen) {
    cc_blake2b_t st;
    if (cc_blake2b_init(&st, outlen, key, key ? keylen : 0) != 0) return -1;
    cc_blake2b_update(&st, in, n);
    cc_blake2b_final(&st, out);
    return 0;
}
