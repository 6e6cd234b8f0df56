/* syncer.h — the journal's group commit on a thread of its own.
 *
 * An fdatasync of a burst of updates takes milliseconds (a 400 KB update is 0.1 ms to write
 * into the page cache and about 1 ms to sync); on the poll loop it stalled the verification
 * of the updates queued behind it. The loop now hands the sync to this thread (one at a
 * time, journal_sync_begin/run/end of journal.h) and goes on; the thread wakes the loop
 * through an eventfd it polls, and the loop then sends the Acks (JOURNAL-1: an Ack still
 * never precedes the sync of its update). */
#ifndef CONCORD_SYNCER_H
#define CONCORD_SYNCER_H

#include <stdint.h>

#include "journal.h"
#include "util.h"

typedef struct syncer syncer_t;

syncer_t *syncer_start(cc_err_t *err);
/* Waits for a sync in flight, then stops the thread. */
void syncer_stop(syncer_t **s);
/* Readable when a sync has finished (for zmq_poll). */
int syncer_fd(const syncer_t *s);
int syncer_busy(syncer_t *s);
/* Hands over a begun sync (the syncer runs it); tag comes back with its outcome. At most
 * one in flight: returns -1 when busy. */
int syncer_submit(syncer_t *s, const journal_sync_t *sync, uint64_t tag);
/* Takes a finished sync without blocking: 1 with its sync, tag and errno (0 = durable),
 * 0 when none has finished. */
int syncer_collect(syncer_t *s, journal_sync_t *sync, uint64_t *tag, int *sync_errno);

#endif
