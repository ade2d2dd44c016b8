/* Cooperative I/O: each call tries the system call on the non-blocking
 * descriptor, and only when the kernel says EAGAIN parks the caller until
 * the fd's poller reports it ready (fd.c), then tries again. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

#include "fd.h"
#include "sys.h"

/* The entry and flags of fd, classified (and made non-blocking on a hub)
 * on first use; NULL with errno EBADF/ENOMEM. */
static inline co__fd_t *io_enter(int fd, unsigned *fl)
{
    co__fd_t *e = co__fd_get(fd);
    if (CO__UNLIKELY(!e)) return NULL;
    *fl = co__fd_flags(e, fd);
    return CO__LIKELY(*fl != 0) ? e : NULL;
}

/* What every call does before its first try: the entry, its flags and
 * the call's deadline.  A thread without a hub that finds the fd blocking
 * polls first when it has a deadline: the call itself would ignore it.
 * 0, or -1 with errno. */
static inline int io_begin(int fd, int64_t deadline, unsigned events, const char *what, co__fd_t **e, unsigned *fl,
                           int64_t *dl)
{
    if (CO__UNLIKELY(!(*e = io_enter(fd, fl)))) return -1;
    *dl = co__fd_deadline(*e, deadline);
    if (CO__UNLIKELY(!(*fl & (CO__FD_NB | CO__FD_FILE))) && *dl >= 0) return co__fd_wait(*e, fd, events, *dl, what);
    return 0;
}

/* After a try that failed: true to try again (interrupted, or the fd is
 * ready now), false to fail with errno as it is. */
static inline bool io_retry(co__fd_t *e, int fd, unsigned fl, unsigned events, int64_t dl, const char *what)
{
    if (errno == EINTR) return true;
    if (errno != EAGAIN || (fl & CO__FD_FILE)) return false;
    return co__fd_wait(e, fd, events, dl, what) == 0;
}

/* What one call needs besides the fd: each operation below reads its own
 * fields. */
typedef struct io_args {
    void *buf;
    const void *cbuf;
    size_t n;
    int flags;
    const struct iovec *iov;
    int iovcnt;
    struct sockaddr *addr;
    const struct sockaddr *caddr;
    socklen_t *addrlen;
    socklen_t alen;
    struct msghdr *msg;
    const struct msghdr *cmsg;
} io_args_t;

/* One try of a system call on a non-blocking fd whose flags are `fl`. */
typedef ssize_t (*io_op_t)(int fd, unsigned fl, const io_args_t *a);

/* A cooperative call: try, and while the kernel says EAGAIN, wait for the
 * poller and try again.  Always inlined, so that `op` is a direct call. */
static inline __attribute__((always_inline)) ssize_t io_call(int fd, int64_t deadline, unsigned events,
                                                             const char *what, io_op_t op, const io_args_t *a)
{
    co__fd_t *e;
    unsigned fl;
    int64_t dl;
    if (io_begin(fd, deadline, events, what, &e, &fl, &dl) < 0) return -1;
    do {
        ssize_t r = op(fd, fl, a);
        if (CO__LIKELY(r >= 0)) return r;
    } while (io_retry(e, fd, fl, events, dl, what));
    return -1;
}

/* Reads from a stream socket carry the short-read hint: a read that got
 * less than it asked for drained the socket, so unless the poller has
 * reported it readable since, the next read would only say EAGAIN: wait
 * first and save that system call (libuv does the same).  Correct with an
 * edge-triggered poller because any data arriving after the short read
 * queues a new event; with a level-triggered one because it reports the
 * state.  Not for the try form: it must not answer EAGAIN from a hint.
 * `want` is how many bytes the read asks for. */
static inline __attribute__((always_inline)) ssize_t io_read(int fd, int64_t deadline, size_t want, const char *what,
                                                             io_op_t op, const io_args_t *a)
{
    co__fd_t *e;
    unsigned fl;
    int64_t dl;
    if (io_begin(fd, deadline, CO__POLL_IN, what, &e, &fl, &dl) < 0) return -1;
    bool hint = (fl & CO__FD_STREAM) && co__tls.hub && dl != 0;
    if (hint && __atomic_load_n(&e->rshort, __ATOMIC_RELAXED) && !__atomic_load_n(&e->rhup, __ATOMIC_RELAXED) &&
        __atomic_load_n(&e->rgen, __ATOMIC_RELAXED) == __atomic_load_n(&e->rseen, __ATOMIC_RELAXED) &&
        co__fd_wait(e, fd, CO__POLL_IN, dl, what) < 0)
        return -1;
    do {
        unsigned gen = __atomic_load_n(&e->rgen, __ATOMIC_RELAXED);
        ssize_t r = op(fd, fl, a);
        if (CO__LIKELY(r >= 0)) {
            if (hint) {
                __atomic_store_n(&e->rshort, r > 0 && (size_t)r < want, __ATOMIC_RELAXED);
                __atomic_store_n(&e->rseen, gen, __ATOMIC_RELAXED);
            }
            return r;
        }
    } while (io_retry(e, fd, fl, CO__POLL_IN, dl, what));
    return -1;
}

/* -------------------------------------------------------- operations */

static ssize_t op_read(int fd, unsigned fl, const io_args_t *a)
{
    (void)fl;
    return co__sys_read(fd, a->buf, a->n);
}

/* Sockets go through send so that a closed peer is EPIPE, not a SIGPIPE
 * that kills the process. */
static ssize_t op_write(int fd, unsigned fl, const io_args_t *a)
{
    return (fl & CO__FD_SOCK) ? co__sys_sendto(fd, a->cbuf, a->n, MSG_NOSIGNAL, NULL, 0)
                              : co__sys_write(fd, a->cbuf, a->n);
}

static ssize_t op_readv(int fd, unsigned fl, const io_args_t *a)
{
    (void)fl;
    return co__sys_readv(fd, a->iov, a->iovcnt);
}

static ssize_t op_writev(int fd, unsigned fl, const io_args_t *a)
{
    if (!(fl & CO__FD_SOCK)) return co__sys_writev(fd, a->iov, a->iovcnt);
    struct msghdr m = {.msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt};
    return co__sys_sendmsg(fd, &m, MSG_NOSIGNAL);
}

static ssize_t op_recvfrom(int fd, unsigned fl, const io_args_t *a)
{
    (void)fl;
    return co__sys_recvfrom(fd, a->buf, a->n, a->flags, a->addr, a->addrlen);
}

static ssize_t op_sendto(int fd, unsigned fl, const io_args_t *a)
{
    (void)fl;
    return co__sys_sendto(fd, a->cbuf, a->n, a->flags | MSG_NOSIGNAL, a->caddr, a->alen);
}

static ssize_t op_recvmsg(int fd, unsigned fl, const io_args_t *a)
{
    (void)fl;
    return co__sys_recvmsg(fd, a->msg, a->flags);
}

static ssize_t op_sendmsg(int fd, unsigned fl, const io_args_t *a)
{
    (void)fl;
    return co__sys_sendmsg(fd, a->cmsg, a->flags | MSG_NOSIGNAL);
}

/* A connection inherits "stream" from its listener (a SOCK_SEQPACKET
 * listener accepts too, and its short reads prove nothing). */
static ssize_t op_accept(int fd, unsigned fl, const io_args_t *a)
{
    int c = co__sys_accept4(fd, a->addr, a->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return -1;
    return co__fd_new(c, CO__FD_SOCK | (fl & CO__FD_STREAM) | CO__FD_NB | CO__FD_NB_OURS);
}

/* --------------------------------------------------------------- calls */

ssize_t co_read(int fd, void *buf, size_t n, int64_t deadline)
{
    return io_read(fd, deadline, n, "co_read", op_read, &(io_args_t){.buf = buf, .n = n});
}

ssize_t co_write(int fd, const void *buf, size_t n, int64_t deadline)
{
    return io_call(fd, deadline, CO__POLL_OUT, "co_write", op_write, &(io_args_t){.cbuf = buf, .n = n});
}

int co_write_all(int fd, const void *buf, size_t n, size_t *written, int64_t deadline)
{
    size_t done = 0;
    int rc = 0;
    while (done < n) {
        ssize_t w = co_write(fd, (const char *)buf + done, n - done, deadline);
        if (w < 0) {
            rc = -1;
            break;
        }
        done += (size_t)w;
    }
    if (written) *written = done;
    return rc;
}

ssize_t co_readv(int fd, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    size_t want = 0;
    for (int i = 0; i < iovcnt; i++) want += iov[i].iov_len;
    return io_read(fd, deadline, want, "co_readv", op_readv, &(io_args_t){.iov = iov, .iovcnt = iovcnt});
}

ssize_t co_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    return io_call(fd, deadline, CO__POLL_OUT, "co_writev", op_writev, &(io_args_t){.iov = iov, .iovcnt = iovcnt});
}

ssize_t co_recv(int fd, void *buf, size_t n, int flags, int64_t deadline)
{
    const io_args_t a = {.buf = buf, .n = n, .flags = flags};
    if (flags & (MSG_PEEK | MSG_WAITALL | MSG_OOB)) /* these say nothing about what is left */
        return io_call(fd, deadline, CO__POLL_IN, "co_recv", op_recvfrom, &a);
    return io_read(fd, deadline, n, "co_recv", op_recvfrom, &a);
}

ssize_t co_send(int fd, const void *buf, size_t n, int flags, int64_t deadline)
{
    return io_call(fd, deadline, CO__POLL_OUT, "co_send", op_sendto, &(io_args_t){.cbuf = buf, .n = n, .flags = flags});
}

ssize_t co_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *fromlen, int64_t deadline)
{
    return io_call(fd, deadline, CO__POLL_IN, "co_recvfrom", op_recvfrom,
                   &(io_args_t){.buf = buf, .n = n, .flags = flags, .addr = from, .addrlen = fromlen});
}

ssize_t co_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen,
                  int64_t deadline)
{
    return io_call(fd, deadline, CO__POLL_OUT, "co_sendto", op_sendto,
                   &(io_args_t){.cbuf = buf, .n = n, .flags = flags, .caddr = to, .alen = tolen});
}

ssize_t co_recvmsg(int fd, struct msghdr *msg, int flags, int64_t deadline)
{
    return io_call(fd, deadline, CO__POLL_IN, "co_recvmsg", op_recvmsg, &(io_args_t){.msg = msg, .flags = flags});
}

ssize_t co_sendmsg(int fd, const struct msghdr *msg, int flags, int64_t deadline)
{
    return io_call(fd, deadline, CO__POLL_OUT, "co_sendmsg", op_sendmsg, &(io_args_t){.cmsg = msg, .flags = flags});
}

int co_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline)
{
    return (int)io_call(fd, deadline, CO__POLL_IN, "co_accept", op_accept,
                        &(io_args_t){.addr = addr, .addrlen = addrlen});
}

int co_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline)
{
    unsigned fl;
    co__fd_t *e = io_enter(fd, &fl);
    if (!e) return -1;
    int64_t dl = co__fd_deadline(e, deadline);
    for (;;) {
        if (co__sys_connect(fd, addr, addrlen) == 0) return 0;
        if (errno == EAGAIN && !(fl & CO__FD_NB)) return -1;
        if (errno == EAGAIN) { /* a Unix socket whose listener's backlog is full: try again */
            if (co__fd_wait(e, fd, CO__POLL_OUT, dl, "co_connect") < 0) return -1;
            continue;
        }
        if (errno != EINPROGRESS && errno != EINTR) return -1;
        break;
    }
    /* The handshake is under way: writable means it ended, one way or
     * the other; SO_ERROR tells which. */
    if (co__fd_wait(e, fd, CO__POLL_OUT, dl, "co_connect") < 0) return -1;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -1;
    if (err) return errno = err, -1;
    return 0;
}

static int wait_ready(int fd, unsigned events, int64_t deadline, const char *what)
{
    unsigned fl;
    co__fd_t *e = io_enter(fd, &fl);
    if (!e) return -1;
    if (fl & CO__FD_FILE) return 0;
    /* Edge-triggered pollers report changes, not states: ask the kernel
     * for the state first.  Once it said "not ready", the next change is
     * an edge the wait below will see. */
    struct pollfd p = {.fd = fd, .events = (short)((events & CO__POLL_IN) ? POLLIN : POLLOUT)};
    int r = co__sys_poll(&p, 1, 0);
    if (r < 0) return -1;
    if (r > 0) return (p.revents & POLLNVAL) ? (errno = EBADF, -1) : 0;
    return co__fd_wait(e, fd, events, co__fd_deadline(e, deadline), what);
}

int co_wait_readable(int fd, int64_t deadline)
{
    return wait_ready(fd, CO__POLL_IN, deadline, "co_wait_readable");
}

int co_wait_writable(int fd, int64_t deadline)
{
    return wait_ready(fd, CO__POLL_OUT, deadline, "co_wait_writable");
}

int co_close(int fd)
{
    co__fd_forget(fd);
    return co__sys_close(fd);
}

void co_fd_forget(int fd)
{
    co__fd_forget(fd);
}

int co_fd_set_timeout_ms(int fd, int64_t ms)
{
    unsigned fl;
    co__fd_t *e = io_enter(fd, &fl);
    if (!e) return -1;
    __atomic_store_n(&e->timeout, ms < 0 ? 0 : ms + 1, __ATOMIC_RELAXED);
    return 0;
}

/* ---------------------------------------------------------------- poll */

static unsigned poll_events_of(short ev)
{
    return ((ev & (POLLIN | POLLPRI | POLLRDHUP)) ? CO__POLL_IN : 0u) | ((ev & POLLOUT) ? CO__POLL_OUT : 0u);
}

/* One wait on several fds: a node on each fd's list, one park; whichever
 * fd is ready first wakes it (grants for the others find it awake and
 * are ignored), then every node is taken off again. */
static int wait_many(co__hub_t *h, struct pollfd *fds, nfds_t n, int64_t deadline)
{
    co__waiter_t local[8];
    co__fd_t *local_e[8];
    co__waiter_t *w = n <= 8 ? local : malloc(n * sizeof *w);
    co__fd_t **ents = n <= 8 ? local_e : malloc(n * sizeof(co__fd_t *));
    int r = 0;
    nfds_t linked = 0;
    if (!w || !ents) {
        r = ENOMEM;
        goto out;
    }
    for (; linked < n; linked++) {
        nfds_t i = linked;
        ents[i] = fds[i].fd < 0 ? NULL : co__fd_get(fds[i].fd);
        if (ents[i] && co__fd_link(ents[i], fds[i].fd, &w[i], poll_events_of(fds[i].events)) < 0) {
            ents[i] = NULL;
            if (errno != EPERM && errno != EBADF) { /* files and closed fds: the next poll reports them */
                r = errno;
                break;
            }
        }
    }
    if (!r) {
        h->current->wait_obj = fds;
        r = co__park(h, deadline, "co_poll", CO__BY_IO, true);
        h->current->wait_obj = NULL;
    }
    for (nfds_t i = 0; i < linked; i++)
        if (ents[i]) co__fd_unlink(ents[i], fds[i].fd, &w[i]);
out:
    if (w != local) free(w);
    if (ents != local_e) free(ents);
    if (r && r != ETIMEDOUT) return errno = r, -1;
    return 0;
}

int co_poll(struct pollfd *fds, nfds_t nfds, int64_t deadline)
{
    co__hub_t *h = co__tls.hub;
    if (!h) {
        for (;;) {
            int r = co__sys_poll(fds, nfds, co__ms_until(deadline));
            if (r >= 0 || errno != EINTR) return r;
        }
    }
    for (;;) {
        int r = co__sys_poll(fds, nfds, 0);
        if (r != 0) return r;
        if (co__expired(deadline)) return 0; /* 0 (the try form) and past deadlines */
        if (wait_many(h, fds, nfds, deadline) < 0) return -1;
    }
}
