/* fuzz_journal.c — libFuzzer target for journal_open's replay (common/journal.h): the
 * round journal as a crash, a full disk or a damaged sector may have left it.
 *
 * Input: u8 mode | the journal file. The header and every record head carry checksums
 * (the heads a tag keyed with the key in the header), records a checksum and part digests;
 * the harness repairs them on request (fuzz_journal_repair.h), so mutations get past them:
 *   bit 0  recompute the header checksum (bytes 36..40)
 *   bit 1  walk the records from offset 40 and re-seal each (head tag, checksum); the walk
 *          stops at the first record whose magic is wrong, whose digest count is over the
 *          limit or whose extent overruns the file
 *   bit 2  during that walk, also renumber the records 0, 1, 2, ...
 *   bit 3  open with the round the header names (else round 1: another round's journal
 *          starts afresh, JOURNAL-3)
 *   bit 4  during that walk, also recompute the part digests of each record's trailer
 * The file is a real file in a temp directory on /dev/shm (journal_open fsyncs it and its
 * directory).
 *
 * Properties checked when the open succeeds (JOURNAL-2): the replayed records are numbered
 * 0..n-1 in file order and lie inside the file, one after the other; each reads back as
 * the bytes the file holds; two more records append (one plain, one with a digested part,
 * journal_append_digested); and a second open of the same round replays n + 2 records and
 * reports nothing truncated (whatever the first open cut off, it left a valid journal). On failure, the code is CORRUPT, FORMAT or IO. No crash, hang or
 * leak on any input. */
#include "fuzz_common.h"

#include "fuzz_journal_repair.h"
#include "journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_fail(const char *what, const cc_err_t *err) {
    fprintf(stderr, "fuzz_journal: %s: %s\n", what, err ? err->msg : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader_t r = {data, size};
    unsigned mode = fuzz_u8(&r);
    size_t len = r.left;
    uint8_t *b = fuzz_dup(r.p, len); /* kept: the checks below read the record heads */
    fuzz_journal_repair(b, len, mode);
    uint64_t round = (mode & 8) && len >= 20 ? fuzz_le64(b + 12) : 1;
    const char *path = fuzz_tmp_path("journal");
    fuzz_write_path(path, b, len);

    journal_t *j = NULL;
    journal_replay_t rep;
    cc_err_t err = {0};
    int rc = journal_open(path, round, &j, &rep, &err);
    fuzz_report("journal_open", rc, err.msg);
    if (rc != 0) {
        if (j || (rc != CC_ERR_CORRUPT && rc != CC_ERR_FORMAT && rc != CC_ERR_IO))
            s_fail("open failed with an undocumented result", &err);
        free(b);
        return 0;
    }
    uint64_t prev_end = FJ_HDR;
    uint8_t *buf = NULL;
    for (size_t i = 0; i < rep.n; i++) {
        const journal_record_t *rec = &rep.records[i];
        if (rec->seq != i || rec->offset != prev_end + FJ_HEAD ||
            rec->offset + rec->length + FJ_SUM > len)
            s_fail("replayed records out of order or outside the file", NULL);
        uint64_t digests = fuzz_le32(b + rec->offset - FJ_HEAD + 16);
        prev_end = rec->offset + rec->length + digests * FJ_ENTRY + FJ_SUM;
        if (prev_end > len) s_fail("a replayed record's trailer lies outside the file", NULL);
        buf = realloc(buf, rec->length + 1);
        if (!buf) abort();
        if (journal_read(j, rec, 0, buf, rec->length, &err) != 0) s_fail("read", &err);
        if (memcmp(buf, b + rec->offset, rec->length) != 0) s_fail("read other bytes", NULL);
    }
    free(buf);
    free(b);
    static const char payload[] = "fuzz", digested[] = "digested part";
    uint8_t d[JOURNAL_DIGEST_BYTES];
    crypto_generichash(d, sizeof d, (const uint8_t *)digested, sizeof digested, NULL, 0);
    const void *parts[2] = {payload, digested};
    size_t lens[2] = {sizeof payload, sizeof digested};
    const uint8_t *digests[2] = {NULL, d};
    if (journal_append(j, parts, lens, 1, NULL, &err) != 0 ||
        journal_append_digested(j, parts, lens, digests, 2, NULL, &err) != 0)
        s_fail("append after open", &err);
    journal_close(&j);
    size_t n = rep.n;
    journal_replay_free(&rep);

    if (journal_open(path, round, &j, &rep, &err) != 0) s_fail("reopen after append", &err);
    if (rep.n != n + 2 || rep.truncated) {
        fprintf(stderr, "fuzz_journal: reopen replayed %zu records (want %zu), truncated=%d\n",
                rep.n, n + 2, rep.truncated);
        abort();
    }
    journal_replay_free(&rep);
    journal_close(&j);
    return 0;
}
