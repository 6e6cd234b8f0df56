/* le.h — little-endian integer encoding for the on-disk and signed formats, byte by byte so
 * the result does not depend on the host's byte order or on alignment. */
#ifndef CONCORD_LE_H
#define CONCORD_LE_H

#include <stdint.h>

static inline void le_put_u16(uint8_t *p, uint16_t v) {
    for (int i = 0; i < 2; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t le_get_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t le_get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static inline uint64_t le_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Two's complement without an implementation-defined conversion of values above INT32_MAX. */
static inline int32_t le_get_i32(const uint8_t *p) {
    uint32_t u = le_get_u32(p);
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

#endif
