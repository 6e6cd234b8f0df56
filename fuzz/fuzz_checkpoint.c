/* fuzz_checkpoint.c — libFuzzer target for checkpoint_load (common/checkpoint.h): a model
 * file that may come from another machine, an old build or a damaged disk.
 *
 * Input: u8 mode | the file. The file carries two BLAKE2b hashes (layout at the top of
 * checkpoint.c); a mutation almost never keeps them right, so the harness repairs them on
 * request before writing the file:
 *   bit 0  recompute the header hash (its place follows from H and K at bytes 44 and 48)
 *   bit 1  recompute the file hash (the last 32 bytes)
 *   bit 2  ask for the standardizer and the metadata too (else the model only)
 * With both repairs the mutations reach the size checks, the spec validation and the
 * decoding. On success: the model's parameter count matches its spec and the outputs are
 * freed. No crash, hang or leak on any input. */
#include "fuzz_common.h"

#include "checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_FIXED 52
#define S_LENGTHS 24
#define S_HEAD_HASH 16
#define S_FILE_HASH 32

static void s_repair(uint8_t *b, size_t len, unsigned mode) {
    if ((mode & 1) && len >= S_FIXED) {
        uint64_t H = fuzz_le32(b + 44), K = fuzz_le32(b + 48);
        if (H <= MODEL_MAX_HIDDEN && K <= MODEL_MAX_CONV) {
            size_t lengths = S_FIXED + 4 * (size_t)(H + K);
            if (len >= lengths + S_LENGTHS + S_HEAD_HASH)
                crypto_generichash(b + lengths + S_LENGTHS, S_HEAD_HASH, b, lengths + S_LENGTHS,
                                   NULL, 0);
        }
    }
    if ((mode & 2) && len >= 12 + S_FILE_HASH)
        crypto_generichash(b + len - S_FILE_HASH, S_FILE_HASH, b, len - S_FILE_HASH, NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned mode;
    const char *path = fuzz_repaired_file(data, size, s_repair, &mode);

    model_t *m = NULL;
    standardizer_t *st = NULL;
    json_t *meta = NULL;
    cc_err_t err = {0};
    int all = mode & 4;
    int rc = checkpoint_load(path, &m, all ? &st : NULL, all ? &meta : NULL, &err);
    fuzz_report("checkpoint_load", rc, err.msg);
    if (rc == 0) {
        if (!m || !m->params || m->n_params == 0) abort();
        if (st && st->d != (size_t)m->spec.n_inputs) abort();
    } else if (m || st || meta || err.msg[0] == '\0' ||
               (rc != CC_ERR_IO && rc != CC_ERR_TRUNCATED && rc != CC_ERR_CORRUPT &&
                rc != CC_ERR_FORMAT && rc != CC_ERR_NOMEM)) {
        abort(); /* on failure every out-parameter is NULL, and the code is a documented one */
    }
    model_destroy(&m);
    standardizer_destroy(&st);
    json_decref(meta);
    return 0;
}
