/* fuzz_snapshot.c — libFuzzer target for snapshot_read (common/snapshot.h): the
 * coordinator's checkpoint files, read back at restart.
 *
 * Input: u8 mode | the file. The header and the file carry BLAKE2b hashes (layout at the
 * top of snapshot.c); the harness repairs them on request, in this order:
 *   bit 0  set the total-length field (bytes 16..24) to the file's real length
 *   bit 1  recompute the header hash (bytes 24..40)
 *   bit 2  recompute the file hash (the last 32 bytes)
 * With all three the mutations reach the section table. On success the sections "meta"
 * and "params" are looked up (as the coordinator does) and the snapshot destroyed; on
 * failure the code is TRUNCATED, CORRUPT, FORMAT or IO. No crash, hang or leak on any
 * input. */
#include "fuzz_common.h"

#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_HDR 40
#define S_SUM 32

static void s_repair(uint8_t *b, size_t len, unsigned mode) {
    if (len < S_HDR) return;
    if (mode & 1) fuzz_put_le64(b + 16, len);
    if (mode & 2) crypto_generichash(b + 24, 16, b, 24, NULL, 0);
    if ((mode & 4) && len >= S_HDR + S_SUM)
        crypto_generichash(b + len - S_SUM, S_SUM, b, len - S_SUM, NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned mode;
    const char *path = fuzz_repaired_file(data, size, s_repair, &mode);

    snapshot_t *s = NULL;
    cc_err_t err = {0};
    int rc = snapshot_read(path, &s, &err);
    fuzz_report("snapshot_read", rc, err.msg);
    if (rc == 0) {
        size_t n;
        const void *p = snapshot_get(s, "meta", &n);
        if (!p && n != 0) abort();
        p = snapshot_get(s, "params", &n);
        if (p && ((uintptr_t)p % 64) != 0) abort(); /* sections are 64-byte aligned */
        snapshot_destroy(&s);
    } else if (s || (rc != CC_ERR_TRUNCATED && rc != CC_ERR_CORRUPT && rc != CC_ERR_FORMAT &&
                     rc != CC_ERR_IO)) {
        abort();
    }
    return 0;
}
