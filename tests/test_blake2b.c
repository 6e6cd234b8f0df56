/* test_blake2b.c — our BLAKE2b against independent answers.
 *
 * Known answers from RFC 7693 Appendix A (BLAKE2b-512 of "abc") and from python3's
 * hashlib.blake2b (the empty input at 32 bytes; a keyed 768-byte input at 16 bytes). Then
 * libsodium's crypto_generichash, which the journal, checkpoints and wire digests used
 * before, as the reference: every input length from 0 to 600 bytes (across the one-,
 * two- and many-block cases and the held-back last block), every output size 1..64, keys
 * of 1..64 bytes, long inputs fed in random pieces (including empty ones and pieces that
 * end exactly on a block boundary), and bad sizes refused. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "blake2b.h"
#include "rng.h"

static void s_hex(uint8_t *out, const char *hex) {
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static uint8_t *s_bytes(size_t n, uint64_t seed) {
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)cc_rng_below(&rng, 256);
    return p;
}

static void s_expect_sodium(const uint8_t *in, size_t n, size_t outlen, const uint8_t *key, size_t keylen,
                            const char *what) {
    uint8_t want[64], got[64];
    cr_assert_eq(crypto_generichash(want, outlen, in, n, key, keylen), 0);
    cr_assert_eq(cc_blake2b(got, outlen, in, n, key, keylen), 0);
    cr_expect_eq(memcmp(got, want, outlen), 0, "%s: n=%zu outlen=%zu keylen=%zu", what, n, outlen, keylen);
}

Test(blake2b, known_answers) {
    uint8_t want[64], got[64];
    s_hex(want, "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
                "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
    cr_assert_eq(cc_blake2b(got, 64, "abc", 3, NULL, 0), 0);
    cr_expect_eq(memcmp(got, want, 64), 0, "RFC 7693 Appendix A");
    s_hex(want, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
    cr_assert_eq(cc_blake2b(got, 32, "", 0, NULL, 0), 0);
    cr_expect_eq(memcmp(got, want, 32), 0, "empty input, 32 bytes");
    uint8_t in[768], key[64];
    for (int i = 0; i < 768; i++) in[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++) key[i] = (uint8_t)i;
    s_hex(want, "2a3e38ab8d4bf5f1eb8fb8feedb15df3");
    cr_assert_eq(cc_blake2b(got, 16, in, sizeof in, key, sizeof key), 0);
    cr_expect_eq(memcmp(got, want, 16), 0, "keyed, 16 bytes");
}

Test(blake2b, equals_libsodium_for_every_length_size_and_key) {
    cr_assert_geq(sodium_init(), 0);
    uint8_t *in = s_bytes(600, 1), *key = s_bytes(64, 2);
    for (size_t n = 0; n <= 600; n++) s_expect_sodium(in, n, 32, NULL, 0, "length");
    for (size_t outlen = 1; outlen <= 64; outlen++) {
        s_expect_sodium(in, 300, outlen, NULL, 0, "output size");
        s_expect_sodium(in, 128, outlen, key, 32, "output size, keyed");
    }
    for (size_t keylen = 1; keylen <= 64; keylen++) {
        s_expect_sodium(in, 0, 32, key, keylen, "key, empty input");
        s_expect_sodium(in, 129, 16, key, keylen, "key");
    }
    free(in), free(key);
}

Test(blake2b, pieces_give_the_same_digest) {
    cr_assert_geq(sodium_init(), 0);
    size_t n = 1 << 20;
    uint8_t *in = s_bytes(n, 3), want[32], got[32];
    cr_assert_eq(crypto_generichash(want, 32, in, n, NULL, 0), 0);
    cc_rng_t rng;
    cc_rng_seed(&rng, 4);
    for (int trial = 0; trial < 20; trial++) {
        cc_blake2b_t st;
        cr_assert_eq(cc_blake2b_init(&st, 32, NULL, 0), 0);
        for (size_t at = 0; at < n;) {
            size_t k = trial % 4 == 0 ? CC_BLAKE2B_BLOCK * cc_rng_below(&rng, 5) /* whole blocks, or nothing */
                                      : cc_rng_below(&rng, trial % 2 ? 300 : 70000);
            if (k > n - at) k = n - at;
            cc_blake2b_update(&st, in + at, k);
            at += k;
        }
        cc_blake2b_final(&st, got);
        cr_expect_eq(memcmp(got, want, 32), 0, "pieces, trial %d", trial);
    }
    free(in);
}

Test(blake2b, bad_sizes_are_refused) {
    cc_blake2b_t st;
    uint8_t out[64], key[65] = {0};
    cr_expect_eq(cc_blake2b_init(&st, 0, NULL, 0), -1, "no output");
    cr_expect_eq(cc_blake2b_init(&st, 65, NULL, 0), -1, "output over 64 bytes");
    cr_expect_eq(cc_blake2b_init(&st, 32, key, 65), -1, "key over 64 bytes");
    cr_expect_eq(cc_blake2b_init(&st, 32, NULL, 5), -1, "a key length without a key");
    cr_expect_eq(cc_blake2b(out, 65, "x", 1, NULL, 0), -1);
}
