/* syncer.c — see syncer.h. One request slot, one result slot, one eventfd: the poll loop
 * submits, the thread runs journal_sync_run and signals, the loop collects. */
#include "syncer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { S_IDLE, S_QUEUED, S_RUNNING, S_DONE };

struct syncer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int event_fd;
    int state;    /* S_*: guarded by lock */
    int stopping; /* guarded by lock */
    journal_sync_t sync;
    uint64_t tag;
    int sync_errno;
};

static void *s_main(void *arg) {
    syncer_t *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->state != S_QUEUED && !s->stopping) pthread_cond_wait(&s->wake, &s->lock);
        if (s->state != S_QUEUED) break; /* stopping, nothing left to run */
        s->state = S_RUNNING;
        journal_sync_t sync = s->sync;
        pthread_mutex_unlock(&s->lock);
        int e = journal_sync_run(&sync);
        pthread_mutex_lock(&s->lock);
        s->sync = sync, s->sync_errno = e, s->state = S_DONE;
        uint64_t one = 1;
        if (write(s->event_fd, &one, sizeof one) != (ssize_t)sizeof one) { /* cannot fail: counter far from max */ }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

syncer_t *syncer_start(cc_err_t *err) {
    syncer_t *s = calloc(1, sizeof *s);
    if (!s) return cc_err_set(err, CC_ERR_IO, "syncer: out of memory"), NULL;
    s->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->event_fd < 0) {
        cc_err_set(err, CC_ERR_IO, "syncer: eventfd failed: %s", strerror(errno));
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    int e = pthread_create(&s->thread, NULL, s_main, s);
    if (e) {
        cc_err_set(err, CC_ERR_IO, "syncer: cannot start its thread: %s", strerror(e));
        close(s->event_fd);
        free(s);
        return NULL;
    }
    return s;
}

void syncer_stop(syncer_t **sp) {
    syncer_t *s = *sp;
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL); /* a queued sync has run: its descriptor is closed */
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    close(s->event_fd);
    free(s);
    *sp = NULL;
}

int syncer_fd(const syncer_t *s) { return s->event_fd; }

int syncer_busy(syncer_t *s) {
    pthread_mutex_lock(&s->lock);
    int busy = s->state != S_IDLE;
    pthread_mutex_unlock(&s->lock);
    return busy;
}

int syncer_submit(syncer_t *s, const journal_sync_t *sync, uint64_t tag) {
    pthread_mutex_lock(&s->lock);
    int ok = s->state == S_IDLE;
    if (ok) {
        s->sync = *sync, s->tag = tag, s->state = S_QUEUED;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return ok ? 0 : -1;
}

int syncer_collect(syncer_t *s, journal_sync_t *sync, uint64_t *tag, int *sync_errno) {
    uint64_t n;
    if (read(s->event_fd, &n, sizeof n) < 0 && errno != EAGAIN) { /* nothing to drain */ }
    pthread_mutex_lock(&s->lock);
    int done = s->state == S_DONE;
    if (done) {
        *sync = s->sync, *tag = s->tag, *sync_errno = s->sync_errno;
        s->state = S_IDLE;
    }
    pthread_mutex_unlock(&s->lock);
    return done;
}
