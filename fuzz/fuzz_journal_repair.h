/* fuzz_journal_repair.h — re-seals a round journal after mutation (layout at the top of
 * common/journal.c): the header checksum, each record's head tag (with the key the header
 * holds), its part digests and its checksum. Shared by fuzz_journal.c, which repairs its
 * inputs on request so that mutations get past the hashes, and make_corpus.c, which puts a
 * fixed key in place of the random one journal_open makes, so that the seeds come out byte
 * for byte the same on every run. */
#ifndef CONCORD_FUZZ_JOURNAL_REPAIR_H
#define CONCORD_FUZZ_JOURNAL_REPAIR_H

#include "fuzz_common.h"

#include "journal.h"

#define FJ_HDR 40       /* file header */
#define FJ_KEY 20       /* offset of the head-tag key (16 bytes) */
#define FJ_HDR_SUM 36   /* offset of the header checksum */
#define FJ_HEAD 32      /* record head: magic, length, sequence, digest count, tag */
#define FJ_ENTRY 40     /* trailer entry: offset, length, BLAKE2b-256 */
#define FJ_SUM 16       /* record checksum */
#define FJ_MAGIC 0x4a524543u

/* What to repair (these are also the bits of fuzz_journal's mode byte). */
enum { FJ_HEADER = 1, FJ_RECORDS = 2, FJ_RENUMBER = 4, FJ_DIGESTS = 16 };

static inline void fuzz_journal_header_sum(uint8_t *b) {
    uint8_t d[16];
    crypto_generichash(d, sizeof d, b, FJ_HDR_SUM, NULL, 0);
    memcpy(b + FJ_HDR_SUM, d, 4);
}

/* Are the n trailer entries at t ascending, apart and inside a payload of len bytes? */
static inline int fuzz_journal_trailer_sane(const uint8_t *t, uint32_t n, uint32_t len) {
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++, t += FJ_ENTRY) {
        uint64_t off = fuzz_le32(t), plen = fuzz_le32(t + 4);
        if (off < at || off > len || plen > len - off) return 0;
        at = off + plen;
    }
    return 1;
}

/* Re-seals the record at r (payload length L, D digested parts, all inside the buffer):
 * the part digests (FJ_DIGESTS), the head tag, and the checksum when the trailer is sane
 * (else which bytes it covers is undefined). */
static inline void fuzz_journal_reseal(uint8_t *r, uint32_t L, uint32_t D, const uint8_t *key,
                                       unsigned mode) {
    uint8_t *payload = r + FJ_HEAD, *t = payload + L, d[16];
    int sane = fuzz_journal_trailer_sane(t, D, L);
    static const uint8_t zero_run[32]; /* an entry marking a zero run keeps its mark */
    for (uint32_t i = 0; sane && (mode & FJ_DIGESTS) && i < D; i++) {
        uint8_t *e = t + (size_t)i * FJ_ENTRY;
        if (memcmp(e + 8, zero_run, 32) != 0)
            crypto_generichash(e + 8, 32, payload + fuzz_le32(e), fuzz_le32(e + 4), NULL, 0);
    }
    crypto_generichash(d, sizeof d, r, 20, key, 16);
    memcpy(r + 20, d, 12);
    if (!sane) return;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, FJ_SUM);
    crypto_generichash_update(&st, r, 20);
    uint32_t at = 0;
    for (uint32_t i = 0; i < D; i++) {
        const uint8_t *e = t + (size_t)i * FJ_ENTRY;
        crypto_generichash_update(&st, payload + at, fuzz_le32(e) - at);
        at = fuzz_le32(e) + fuzz_le32(e + 4);
    }
    crypto_generichash_update(&st, payload + at, L - at);
    crypto_generichash_update(&st, t, (size_t)D * FJ_ENTRY);
    crypto_generichash_final(&st, t + (size_t)D * FJ_ENTRY, FJ_SUM);
}

/* Repairs b[0, len) per mode (FJ_*): the header checksum; walking the records from the
 * header on, each record's tag and checksum (renumbered 0, 1, ... with FJ_RENUMBER, its
 * part digests recomputed with FJ_DIGESTS, zero-run entries left as they are). The walk stops at the first record whose magic
 * is wrong, whose digest count is over the limit or whose extent overruns the buffer. */
static inline void fuzz_journal_repair(uint8_t *b, size_t len, unsigned mode) {
    if (len < FJ_HDR) return;
    if (mode & FJ_HEADER) fuzz_journal_header_sum(b);
    if (!(mode & FJ_RECORDS)) return;
    uint64_t seq = 0;
    for (size_t p = FJ_HDR; len - p >= FJ_HEAD + FJ_SUM; seq++) {
        if (fuzz_le32(b + p) != FJ_MAGIC) break;
        uint32_t L = fuzz_le32(b + p + 4), D = fuzz_le32(b + p + 16);
        if (D > JOURNAL_MAX_DIGESTS) break;
        uint64_t extent = FJ_HEAD + (uint64_t)L + (uint64_t)D * FJ_ENTRY + FJ_SUM;
        if (extent > len - p) break;
        if (mode & FJ_RENUMBER) fuzz_put_le64(b + p + 8, seq);
        fuzz_journal_reseal(b + p, L, D, b + FJ_KEY, mode);
        p += (size_t)extent;
    }
}

#endif
