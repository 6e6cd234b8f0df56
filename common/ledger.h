/* ledger.h — the tamper-evident contribution ledger (DESIGN §7): one JSON line per round,
 * hash-chained and signed by the coordinator, and a verifier that names the first bad entry,
 * so a hospital can check what it was credited with.
 *
 * File format: UTF-8 text, one entry per line, each line ending in '\n'. Entry i (0-based,
 * on line i+1) is a JSON object holding whatever the coordinator records (round,
 * model_digest, clients: {id: {update_digest, n_samples, cos, b, weight, gap_g, gap_d}}, ...)
 * plus three fields the ledger adds:
 *   "seq"   integer i: the entry's position;
 *   "prev"  64 lowercase hex: BLAKE2b-256 (crypto_generichash, unkeyed, 32 bytes) of the
 *           exact bytes of line i-1 without its '\n'; 64 '0's for entry 0;
 *   "sig"   128 lowercase hex: Ed25519 (crypto_sign_detached) by the coordinator's key over
 *           the canonical form of the entry without "sig" (so "seq" and "prev" are signed).
 *
 * Canonical form: the bytes of jansson's
 *     json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))
 * that is: no whitespace outside strings; object keys in strcmp order; integers in decimal;
 * reals as printf "%.17g" (".0" appended when that has neither '.' nor 'e'), which
 * round-trips every finite double; strings as raw UTF-8 with only '"', '\\' and control
 * characters escaped (\b \f \n \r \t, else \u00XX). Each line is the canonical form of the
 * whole entry (with "sig"), so a line is valid only if re-serialising its parse gives back
 * exactly its bytes: any altered byte is caught even where JSON would not notice (hex case,
 * escapes, number spelling). The signed bytes are plain canonical JSON (they start with
 * '{'), so they can never be mistaken for a wire envelope's signed string, which starts
 * with the "concord-envelope-v1" domain tag.
 *
 * Durability invariants, cited as LEDGER-n:
 *  LEDGER-1  ledger_append returns 0 only after its line is written and fsync'ed (and, for a
 *            file it created, the directory entry too).
 *  LEDGER-2  A line goes out in one O_APPEND write of line + '\n', under an exclusive flock,
 *            so a crash leaves at most a torn final line: a fragment with no '\n' that is a
 *            prefix of a canonical line (possibly padded with NUL bytes by the filesystem).
 *            Verification reports that as TRUNCATED (an append cut short, not tampering) and
 *            the next append cuts it off. A final fragment that could not come from a torn
 *            append (bytes after a complete object, a byte no JSON prefix allows, a complete
 *            line that does not verify) is damage, reported like any corrupt line and never
 *            cut off.
 *  LEDGER-3  Append never extends a ledger whose last line does not verify with the
 *            coordinator's key (nor one ending in damage, LEDGER-2). It reads only the tail
 *            of the file, not the whole ledger: ledger_verify is the full check.
 *  LEDGER-4  After a failed write or fsync, append cuts the file back to its previous length
 *            (best effort) and returns CC_ERR_IO. After a failed fsync the line may still
 *            reach the disk, so the caller must ask ledger_head whether the entry landed
 *            before appending it again.
 *
 * What the chain does not prove: whole lines removed from the END of the file leave a valid,
 * shorter ledger. To pin the length, publish the head digest (ledger_report_t.head, the
 * BLAKE2b-256 of the last line) out of band; a shortened ledger has another head.
 *
 * One writer (the coordinator) per file; readers need no lock, but a verification racing an
 * append may see the new line torn (TRUNCATED): run it again. */
#ifndef CONCORD_LEDGER_H
#define CONCORD_LEDGER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "util.h"

/* Longest line (bytes, without '\n'). Append refuses longer entries (CC_ERR_ARG); verify
 * reports a longer line as corrupt and never buffers more than this. */
#define LEDGER_MAX_LINE (16u * 1024 * 1024)
#define LEDGER_DIGEST_HEX 65            /* 64 hex digits + NUL */

/* What the first bad line is guilty of, in the order verify checks a line. */
typedef enum {
    LEDGER_OK = 0,
    LEDGER_FAIL_TOO_LONG,      /* a line over LEDGER_MAX_LINE bytes */
    LEDGER_FAIL_BAD_JSON,      /* does not parse, or not an object, or a duplicate key */
    LEDGER_FAIL_NOT_CANONICAL, /* parses, but its bytes are not the canonical form */
    LEDGER_FAIL_BAD_SIGNATURE, /* "sig" missing/malformed or not by the given key: altered */
    LEDGER_FAIL_BROKEN_CHAIN,  /* "prev" is not the previous line's digest: a line removed,
                                  inserted or reordered before this one */
    LEDGER_FAIL_WRONG_SEQ,     /* "seq" is not the line's position */
    LEDGER_FAIL_TRUNCATED,     /* the final line is torn (LEDGER-2): a crash, not tampering */
} ledger_failure_t;

typedef struct {
    uint64_t entries;           /* entries that verified: all of them when the ledger is OK,
                                   else those before the bad one (== bad_entry) */
    char head[LEDGER_DIGEST_HEX]; /* hex BLAKE2b-256 of the last verified line (64 '0's if
                                   none): publish it to pin the ledger's length */
    ledger_failure_t failure;   /* LEDGER_OK, or what failed first */
    uint64_t bad_entry;         /* 0-based index of the first bad line (its line number - 1) */
    uint64_t bad_offset;        /* byte offset at which that line starts */
    char detail[384];           /* one phrase: what failed, e.g. "bad signature: ..." */
} ledger_report_t;

/* Appends entry as the next line of the ledger at path (created, mode 0644, if missing):
 * adds "seq" and "prev" from the file's last line (read from the tail, not the whole file),
 * signs with coordinator->sk, writes and fsyncs (LEDGER-1, LEDGER-2). entry is borrowed and
 * not modified; it must be a JSON object without the keys "seq", "prev" and "sig", whose
 * canonical form survives a round trip (no NUL in strings) and fits LEDGER_MAX_LINE: else
 * CC_ERR_ARG. A torn final line is cut off first (logged as a warning). A last line that does
 * not verify with coordinator->pk, or damage at the end of the file, is CC_ERR_CORRUPT and
 * nothing is written (LEDGER-3). I/O failures are CC_ERR_IO (LEDGER-4). */
int ledger_append(const char *path, const identity_t *coordinator, json_t *entry,
                  cc_err_t *err) CC_WUR;

/* Checks the whole ledger, line by line, stopping at the first bad line: the line parses as a
 * JSON object, is canonical, its signature verifies with coordinator_pk, its "prev" is the
 * digest of the line before (zeros for the first) and its "seq" is its position. rep (not
 * NULL) is always filled. Returns 0 when every line verifies (an empty file is a valid
 * ledger of 0 entries), CC_ERR_TRUNCATED for a torn final line after valid ones (LEDGER-2),
 * CC_ERR_CORRUPT for any other bad line (err: "PATH:LINE: detail"), CC_ERR_IO when the file
 * cannot be read (rep->failure stays LEDGER_OK). Reads the file once, holding one line. */
int ledger_verify(const char *path, const uint8_t coordinator_pk[WIRE_PK_BYTES],
                  ledger_report_t *rep, cc_err_t *err) CC_WUR;

/* The ledger's end, from its tail only (LEDGER-3), e.g. to learn after a restart or a failed
 * append which round it last recorded. */
typedef struct {
    uint64_t entries;            /* the last complete line's seq + 1; 0 if none */
    char head[LEDGER_DIGEST_HEX];/* digest of the last complete line (64 '0's if none):
                                    the "prev" the next entry gets */
    uint64_t torn_bytes;         /* length of a torn final fragment, 0 if none (left as is) */
} ledger_head_t;

/* Fills *out from the last complete line, which must be canonical and, when coordinator_pk
 * is not NULL, signed by it (else CC_ERR_CORRUPT); damage after it is CC_ERR_CORRUPT. A
 * missing or empty file is an empty ledger. If last is not NULL, *last receives the last
 * entry (with seq, prev and sig; caller json_decref()s it) or NULL if there is none.
 * Never modifies the file. */
int ledger_head(const char *path, const uint8_t *coordinator_pk, ledger_head_t *out,
                json_t **last, cc_err_t *err) CC_WUR;

/* "bad signature", "broken chain", ...: for people. */
const char *ledger_failure_name(ledger_failure_t f);
/* "bad_signature", "broken_chain", ...: for --json. */
const char *ledger_failure_code(ledger_failure_t f);

/* The `concord-coordinator verify-ledger` subcommand: argv[0] is "verify-ledger", then
 *   FILE --public-key COORDINATOR.pub [--json] | --help
 * Prints "ledger FILE: N entries, chain and signatures OK" or
 * "ledger FILE: entry K (line K+1): <what failed>" on stdout (--json: one JSON object).
 * Returns the exit status: 0 the ledger verifies, 1 it does not or a file cannot be read,
 * 2 usage error. Resets getopt (optind), so it may be called more than once. */
int ledger_verify_main(int argc, char **argv);

/* Fault injection for tests: when > 0, the Nth subsequent append write (1 = the next one)
 * writes half its line and fails with ENOSPC; likewise the Nth fsync of an append. Each
 * resets to 0 after it fires. */
extern int ledger_fault_fail_write_after;
extern int ledger_fault_fail_fsync_after;

#endif
