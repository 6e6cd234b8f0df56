/* sumproc.c — see sumproc.h. Parent and helper talk over a SOCK_SEQPACKET socket pair:
 * one request, one answer, file descriptors passed with SCM_RIGHTS. */
#define _GNU_SOURCE
#include "sumproc.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wsum.h"

/* BUFFERS and SUM are answered; POPULATE is not (it runs while the parent copies θ_t into
 * the buffer, and the SUM after it waits in the socket until it is done). */
enum { S_OP_BUFFERS = 1, S_OP_SUM = 2, S_OP_POPULATE = 3 };

/* A request: this head, then (S_OP_SUM) K u64 file offsets and K float scales. */
typedef struct {
    uint32_t op, buffer;
    uint64_t P, K;
} s_head_t;

typedef struct {
    int32_t rc;
    uint64_t units; /* S_OP_SUM: blocks summed */
    char msg[sizeof(((cc_err_t *)0)->msg)];
} s_reply_t;

#define S_REQ_MAX (sizeof(s_head_t) + SUMPROC_MAX_K * (sizeof(uint64_t) + sizeof(float)))

struct sumproc {
    int sock;
    pid_t pid;
    int alive, pending;
    size_t P, shares, units;
    void *area; /* SUMPROC_AREA_BYTES, MAP_SHARED before the fork */
    float *buf[SUMPROC_BUFFERS];
    int used[SUMPROC_BUFFERS]; /* atomic: ZeroMQ's I/O thread gives θ_t back */
};

/* ---- messages ---------------------------------------------------------------------- */

static int s_send(int sock, const void *msg, size_t len, const int *fds, int nfd) {
    char ctl[CMSG_SPACE(sizeof(int) * SUMPROC_BUFFERS)];
    memset(ctl, 0, sizeof ctl);
    struct iovec iov = {(void *)msg, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfd > 0) {
        m.msg_control = ctl;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfd);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfd);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfd);
    }
    ssize_t n;
    do n = sendmsg(sock, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

/* Receives one message into buf and up to SUMPROC_BUFFERS descriptors into fds (*nfd);
 * returns its length, 0 when the peer is gone, < 0 on error. */
static ssize_t s_recv(int sock, void *buf, size_t len, int *fds, int *nfd) {
    char ctl[CMSG_SPACE(sizeof(int) * SUMPROC_BUFFERS)];
    struct iovec iov = {buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    ssize_t n;
    do n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *nfd = 0;
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL; c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (*nfd < SUMPROC_BUFFERS) fds[(*nfd)++] = fd;
            else close(fd);
        }
    }
    return n;
}

/* ---- the helper process ------------------------------------------------------------ */

static uint64_t s_req[S_REQ_MAX / sizeof(uint64_t) + 1];

static void s_unmap_all(float **buf, size_t P) {
    for (int i = 0; i < SUMPROC_BUFFERS; i++) {
        if (buf[i]) munmap(buf[i], P * sizeof(float));
        buf[i] = NULL;
    }
}

static int s_map_buffers(float **buf, size_t P, const int *fds, int nfd, cc_err_t *err) {
    if (nfd != SUMPROC_BUFFERS)
        return cc_err_set(err, CC_ERR_ARG, "sumproc: %d buffer descriptors, expected %d", nfd, SUMPROC_BUFFERS);
    for (int i = 0; i < SUMPROC_BUFFERS; i++) {
        void *p = mmap(NULL, P * sizeof(float), PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
        if (p == MAP_FAILED)
            return cc_err_set(err, CC_ERR_IO, "sumproc: mapping a θ buffer failed: %s", strerror(errno));
        buf[i] = p;
    }
    return 0;
}

/* One request: map new buffers, map a buffer's pages, or sum blocks from the pool in area
 * into a buffer (*units: how many). */
static int s_serve(const s_head_t *h, size_t len, float **buf, size_t *P, const int *fds, int nfd, void *area,
                   size_t *units, cc_err_t *err) {
    if (h->op == S_OP_POPULATE) {
        /* A buffer just taken lost its pages when it was given back: map them all now
         * (one call, not a fault per page), beside the parent's copy of θ_t into it. */
        if (h->buffer < SUMPROC_BUFFERS && buf[h->buffer])
            madvise(buf[h->buffer], *P * sizeof(float), MADV_POPULATE_WRITE); /* best effort */
        return 0;
    }
    if (h->op == S_OP_BUFFERS) {
        s_unmap_all(buf, *P);
        *P = (size_t)h->P;
        return s_map_buffers(buf, *P, fds, nfd, err);
    }
    if (h->op != S_OP_SUM || nfd != 1 || h->buffer >= SUMPROC_BUFFERS || !buf[h->buffer] || h->P != *P ||
        h->K > SUMPROC_MAX_K || len != sizeof *h + h->K * (sizeof(uint64_t) + sizeof(float)))
        return cc_err_set(err, CC_ERR_ARG, "sumproc: malformed request (op %u)", h->op);
    const uint64_t *at = s_req + sizeof *h / sizeof(uint64_t);
    const float *scale = (const float *)(at + h->K);
    return wsum_file_pool(buf[h->buffer], *P, fds[0], at, scale, (size_t)h->K, area, units, err);
}

static _Noreturn void s_child(int sock, pid_t parent, void *area) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0); /* the parent died before prctl */
    signal(SIGINT, SIG_IGN), signal(SIGTERM, SIG_IGN), signal(SIGHUP, SIG_IGN);
    float *buf[SUMPROC_BUFFERS] = {0};
    size_t P = 0;
    for (;;) {
        int fds[SUMPROC_BUFFERS], nfd;
        ssize_t n = s_recv(sock, s_req, sizeof s_req, fds, &nfd);
        if (n <= 0) break; /* the parent closed its end, or is gone */
        s_head_t h;
        s_reply_t r = {0};
        cc_err_t err = {0};
        size_t units = 0;
        if ((size_t)n < sizeof h) r.rc = cc_err_set(&err, CC_ERR_ARG, "sumproc: short request");
        else memcpy(&h, s_req, sizeof h), r.rc = s_serve(&h, (size_t)n, buf, &P, fds, nfd, area, &units, &err);
        r.units = units;
        for (int i = 0; i < nfd; i++) close(fds[i]);
        if ((size_t)n >= sizeof h && h.op == S_OP_POPULATE) continue; /* not answered */
        memcpy(r.msg, err.msg, sizeof r.msg);
        if (s_send(sock, &r, sizeof r, NULL, 0) != 0) break;
    }
    s_unmap_all(buf, P);
    _exit(0);
}

/* ---- the parent's side ------------------------------------------------------------- */

sumproc_t *sumproc_start(cc_err_t *err) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        cc_err_set(err, CC_ERR_IO, "sumproc: socketpair failed: %s", strerror(errno));
        return NULL;
    }
    void *area = mmap(NULL, SUMPROC_AREA_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        cc_err_set(err, CC_ERR_IO, "sumproc: mapping the shared page failed: %s", strerror(errno));
        close(sv[0]), close(sv[1]);
        return NULL;
    }
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        cc_err_set(err, CC_ERR_IO, "sumproc: fork failed: %s", strerror(errno));
        close(sv[0]), close(sv[1]), munmap(area, SUMPROC_AREA_BYTES);
        return NULL;
    }
    if (pid == 0) {
        close(sv[0]);
        s_child(sv[1], parent, area);
    }
    close(sv[1]);
    sumproc_t *s = cc_xcalloc(1, sizeof *s);
    s->sock = sv[0], s->pid = pid, s->alive = 1, s->area = area;
    return s;
}

/* The helper is gone (or misbehaved): reap it, never use it again. */
static int s_gone(sumproc_t *s, cc_err_t *err) {
    int st = 0;
    if (s->alive) {
        close(s->sock);
        s->sock = -1;
        kill(s->pid, SIGKILL); /* in case it is alive but answered nonsense */
        while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {}
    }
    s->alive = 0, s->pending = 0;
    if (WIFSIGNALED(st))
        return cc_err_set(err, CC_ERR_IO, "the summing process (pid %d) was killed by signal %d", (int)s->pid,
                          WTERMSIG(st));
    return cc_err_set(err, CC_ERR_IO, "the summing process (pid %d) is gone", (int)s->pid);
}

void sumproc_stop(sumproc_t **sp) {
    if (!sp || !*sp) return;
    sumproc_t *s = *sp;
    if (s->alive) {
        close(s->sock);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    s_unmap_all(s->buf, s->P);
    munmap(s->area, SUMPROC_AREA_BYTES);
    free(s);
    *sp = NULL;
}

static int s_answer(sumproc_t *s, size_t *units, cc_err_t *err) {
    s_reply_t r;
    int fds[SUMPROC_BUFFERS], nfd;
    ssize_t n = s_recv(s->sock, &r, sizeof r, fds, &nfd);
    for (int i = 0; i < nfd; i++) close(fds[i]);
    s->pending = 0;
    if (n != (ssize_t)sizeof r) return s_gone(s, err);
    r.msg[sizeof r.msg - 1] = '\0';
    if (units) *units = (size_t)r.units;
    return r.rc ? cc_err_set(err, r.rc, "%s", r.msg) : 0;
}

int sumproc_wait(sumproc_t *s, cc_err_t *err) {
    if (!s->pending) return cc_err_set(err, CC_ERR_ARG, "sumproc: no sum pending");
    size_t units = 0;
    int rc = s_answer(s, &units, err);
    if (!rc) s->shares++, s->units += units;
    return rc;
}

int sumproc_buffers(sumproc_t *s, size_t P, cc_err_t *err) {
    if (!s->alive) return cc_err_set(err, CC_ERR_IO, "the summing process (pid %d) is gone", (int)s->pid);
    s_unmap_all(s->buf, s->P);
    s->P = P;
    int fds[SUMPROC_BUFFERS], rc = 0;
    for (int i = 0; i < SUMPROC_BUFFERS; i++) fds[i] = -1;
    for (int i = 0; i < SUMPROC_BUFFERS && !rc; i++) {
        fds[i] = memfd_create("concord-theta", MFD_CLOEXEC);
        if (fds[i] < 0 || ftruncate(fds[i], (off_t)(P * sizeof(float))) != 0)
            rc = cc_err_set(err, CC_ERR_IO, "sumproc: a shared θ buffer of %zu floats: %s", P, strerror(errno));
    }
    if (!rc) rc = s_map_buffers(s->buf, P, fds, SUMPROC_BUFFERS, err);
    s_head_t h = {.op = S_OP_BUFFERS, .P = P};
    if (!rc && s_send(s->sock, &h, sizeof h, fds, SUMPROC_BUFFERS) != 0) rc = s_gone(s, err);
    if (!rc) rc = s_answer(s, NULL, err);
    for (int i = 0; i < SUMPROC_BUFFERS; i++)
        if (fds[i] >= 0) close(fds[i]); /* the mappings keep the memory */
    for (int i = 0; i < SUMPROC_BUFFERS; i++) s->used[i] = 0;
    if (rc) s_unmap_all(s->buf, s->P);
    return rc;
}

float *sumproc_take(sumproc_t *s) {
    for (int i = 0; s && i < SUMPROC_BUFFERS; i++) {
        int free_ = 0;
        if (s->buf[i] && __atomic_compare_exchange_n(&s->used[i], &free_, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            s_head_t h = {.op = S_OP_POPULATE, .buffer = (uint32_t)i, .P = s->P};
            cc_err_t ignored;
            if (s->alive && !s->pending && s_send(s->sock, &h, sizeof h, NULL, 0) != 0) s_gone(s, &ignored);
            return s->buf[i];
        }
    }
    return NULL;
}

int sumproc_owns(const sumproc_t *s, const float *p) {
    for (int i = 0; s && p && i < SUMPROC_BUFFERS; i++)
        if (s->buf[i] == p) return 1;
    return 0;
}

int sumproc_give(sumproc_t *s, float *p) {
    for (int i = 0; s && p && i < SUMPROC_BUFFERS; i++)
        if (s->buf[i] == p) {
            /* Its pages go back to the system (both processes' mappings of it), as a freed
             * malloc'ed θ would: a free buffer must not count in the coordinator's RSS. */
            madvise(p, s->P * sizeof(float), MADV_REMOVE);
            __atomic_store_n(&s->used[i], 0, __ATOMIC_RELEASE);
            return 1;
        }
    return 0;
}

int sumproc_alive(const sumproc_t *s) { return s && s->alive; }
pid_t sumproc_pid(const sumproc_t *s) { return s ? s->pid : 0; }
size_t sumproc_shares(const sumproc_t *s) { return s ? s->shares : 0; }
size_t sumproc_units(const sumproc_t *s) { return s ? s->units : 0; }
void *sumproc_area(sumproc_t *s) { return s ? s->area : NULL; }

int sumproc_send(sumproc_t *s, const float *out, size_t P, int fd, const uint64_t *at, const float *scale,
                 size_t K, cc_err_t *err) {
    int buffer = -1;
    for (int i = 0; i < SUMPROC_BUFFERS; i++)
        if (s->buf[i] == out) buffer = i;
    if (!s->alive || buffer < 0 || P != s->P || K > SUMPROC_MAX_K || s->pending)
        return cc_err_set(err, CC_ERR_ARG, "sumproc: cannot take this sum (helper %s, out %s one of its buffers)",
                          s->alive ? "running" : "gone", buffer < 0 ? "not" : "is");
    s_head_t h = {.op = S_OP_SUM, .buffer = (uint32_t)buffer, .P = P, .K = K};
    size_t len = sizeof h + K * (sizeof(uint64_t) + sizeof(float));
    unsigned char *msg = cc_xmalloc(len);
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, at, K * sizeof(uint64_t));
    memcpy(msg + sizeof h + K * sizeof(uint64_t), scale, K * sizeof(float));
    int rc = s_send(s->sock, msg, len, &fd, 1);
    free(msg);
    if (rc) return s_gone(s, err);
    s->pending = 1;
    return 0;
}
