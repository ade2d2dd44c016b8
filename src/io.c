/* Cooperative I/O: each call tries the system call without blocking, and
 * only when the kernel says EAGAIN parks the caller until the fd's poller
 * reports it ready (fd.c), then tries again.
 *
 * "Without blocking" never means changing a descriptor's flags.
 * O_NONBLOCK belongs to the open file, which other processes may share
 * (the terminal, a shell pipeline's pipe): a flag set here would make
 * their reads fail with EAGAIN, even after this process has exited.
 * Descriptors cogent makes itself are non-blocking from birth; on any
 * other descriptor left blocking, each try takes a non-blocking form of
 * its own:
 *   sockets      MSG_DONTWAIT;
 *   pipes        preadv2/pwritev2 with RWF_NOWAIT (Linux 6.4 and later);
 *   the rest     (terminals, FIFOs, character devices; pipes before
 *                6.4): reads poll with a zero timeout, then read at most
 *                what FIONREAD says is there; writes to a FIFO poll, then
 *                write at most PIPE_BUF.  A ready descriptor then cannot
 *                block, unless another reader or writer of the same open
 *                file takes what was there in between (docs/io.md).
 *                A terminal cannot say how much room it has: its writes
 *                set O_NONBLOCK for that one system call only;
 *   accept       poll, then accept (the same race, with other acceptors);
 *   connect      O_NONBLOCK for the one connect() system call only.
 * A thread without a hub takes the same forms when its call has a
 * deadline, and otherwise simply blocks. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "fd.h"
#include "io.h"
#include "scope.h"
#include "sys.h"

/* How one call tries, on top of the entry's CO__FD_* flags. */
#define IO_NOWAIT  (1u << 29) /* blocking in the kernel: each try uses a non-blocking form */
#define IO_SIGPIPE (1u << 30) /* a broken pipe raises SIGPIPE, as the plain call would */
#define IO_ASKED   (1u << 31) /* accept: the new fd exactly as the caller's flags say */

/* The entry and flags of fd, classified on first use; NULL with errno
 * EBADF/ENOMEM. */
static inline co__fd_t *io_enter(int fd, unsigned *fl)
{
    co__fd_t *e = co__fd_get(fd);
    if (CO__UNLIKELY(!e)) return NULL;
    *fl = co__fd_flags(e, fd);
    return CO__LIKELY(*fl != 0) ? e : NULL;
}

/* What every call does before its first try: the entry, how to try (in
 * *fl) and the call's deadline.  0, or -1 with errno. */
static inline int io_begin(int fd, int64_t deadline, unsigned opt, co__fd_t **e, unsigned *fl, int64_t *dl)
{
    if (CO__UNLIKELY(!(*e = io_enter(fd, fl)))) return -1;
    *dl = co__fd_deadline(*e, deadline);
    /* A hub must never block in the kernel, nor may a thread overstay its
     * deadline. */
    if (CO__UNLIKELY(!(*fl & (CO__FD_NB | CO__FD_FILE))) && (co__tls.hub || !co__no_deadline(*dl))) *fl |= IO_NOWAIT;
    *fl |= opt;
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
    unsigned opt; /* IO_SIGPIPE, IO_ASKED */
} io_args_t;

/* One try of a system call, never blocking on a descriptor in the mode
 * `fl` says. */
typedef ssize_t (*io_op_t)(co__fd_t *e, int fd, unsigned fl, const io_args_t *a);

/* A cooperative call: try, and while the kernel says EAGAIN, wait for the
 * poller and try again.  Always inlined, so that `op` is a direct call. */
static inline __attribute__((always_inline)) ssize_t io_call(int fd, int64_t deadline, unsigned events,
                                                             const char *what, io_op_t op, const io_args_t *a)
{
    co__fd_t *e;
    unsigned fl;
    int64_t dl;
    if (io_begin(fd, deadline, a->opt, &e, &fl, &dl) < 0) return -1;
    do {
        ssize_t r = op(e, fd, fl, a);
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
    if (io_begin(fd, deadline, a->opt, &e, &fl, &dl) < 0) return -1;
    /* (A thread without a hub waits in poll(2), which reports the state:
     * the hint holds there too, for a descriptor whose reads would not
     * block in the kernel anyway -- a blocking read needs no wait first.) */
    bool hint = (fl & CO__FD_STREAM) && dl != 0 && (co__tls.hub || (fl & CO__FD_NB));
    if (hint && __atomic_load_n(&e->rshort, __ATOMIC_RELAXED) && !__atomic_load_n(&e->rhup, __ATOMIC_RELAXED) &&
        __atomic_load_n(&e->rgen, __ATOMIC_RELAXED) == __atomic_load_n(&e->rseen, __ATOMIC_RELAXED) &&
        co__fd_wait(e, fd, CO__POLL_IN, dl, what) < 0)
        return -1;
    do {
        unsigned gen = __atomic_load_n(&e->rgen, __ATOMIC_RELAXED);
        ssize_t r = op(e, fd, fl, a);
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

/* ------------------------------------- descriptors left blocking */

/* 0 if fd is ready for `ev` now; else -1 with errno EAGAIN (not ready)
 * or the error. */
static int ready_now(int fd, short ev)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int r = co__sys_poll(&p, 1, 0);
    if (r < 0) return -1;
    if (r == 0) return errno = EAGAIN, -1;
    return (p.revents & POLLNVAL) ? (errno = EBADF, -1) : 0;
}

/* The first `limit` bytes of iov: a vector in `out` (up to 8 entries) in
 * *res, and its count; iov itself when it is shorter or longer than that
 * (an unusual vector is then not cut). */
enum { CUT_MAX = 8 };
static int iov_cut(const struct iovec *iov, int cnt, size_t limit, struct iovec *out, const struct iovec **res)
{
    size_t sum = 0;
    *res = iov;
    for (int i = 0; i < cnt && i < CUT_MAX; i++) {
        out[i] = iov[i];
        if (iov[i].iov_len >= limit - sum) {
            out[i].iov_len = limit - sum;
            *res = out;
            return i + 1;
        }
        sum += iov[i].iov_len;
    }
    return cnt;
}

/* RWF_NOWAIT is refused for this descriptor's type (terminals, FIFOs;
 * pipes before Linux 6.4): remember, and use the fallback from now on. */
static bool nowait_refused(co__fd_t *e)
{
    if (errno != EOPNOTSUPP && errno != ENOSYS) return false;
    __atomic_fetch_or(&e->flags, CO__FD_NO_NOWAIT, __ATOMIC_RELAXED);
    return true;
}

static ssize_t nowait_readv(co__fd_t *e, int fd, unsigned fl, const struct iovec *iov, int cnt)
{
    if (!(fl & CO__FD_NO_NOWAIT)) {
        ssize_t r = co__sys_preadv2(fd, iov, cnt, RWF_NOWAIT);
        if (r >= 0 || !nowait_refused(e)) return r;
    }
    if (ready_now(fd, POLLIN) < 0) return -1;
    /* Readable: data, end of file, or an error, none of which blocks a
     * read of at most what is there. */
    int avail = 0;
    struct iovec cut[CUT_MAX];
    if (co__sys_ioctl(fd, FIONREAD, &avail) == 0 && avail > 0) cnt = iov_cut(iov, cnt, (size_t)avail, cut, &iov);
    return co__sys_readv(fd, iov, cnt);
}

/* A terminal (or another character device) has no way to say how much
 * room it has: POLLOUT promises a byte, and a longer blocking write would
 * wait for the rest.  Only O_NONBLOCK bounds it; it is set for the one
 * write system call and given back at once. */
static ssize_t toggled_writev(int fd, const struct iovec *iov, int cnt)
{
    int fl = co__sys_fcntl(fd, F_GETFL, 0);
    if (fl < 0) return -1;
    if (!(fl & O_NONBLOCK) && co__sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    ssize_t r = co__sys_writev(fd, iov, cnt);
    int err = errno;
    if (!(fl & O_NONBLOCK)) co__sys_fcntl(fd, F_SETFL, fl);
    errno = err;
    return r;
}

static ssize_t nowait_writev(co__fd_t *e, int fd, unsigned fl, const struct iovec *iov, int cnt)
{
    if (!(fl & CO__FD_NO_NOWAIT)) {
        ssize_t r = co__sys_pwritev2(fd, iov, cnt, RWF_NOWAIT);
        if (r >= 0 || !nowait_refused(e)) return r;
    }
    if (!(fl & CO__FD_PIPE)) return toggled_writev(fd, iov, cnt);
    if (ready_now(fd, POLLOUT) < 0) return -1;
    /* A writable pipe has a free page: PIPE_BUF bytes go without waiting. */
    struct iovec cut[CUT_MAX];
    cnt = iov_cut(iov, cnt, PIPE_BUF, cut, &iov);
    return co__sys_writev(fd, iov, cnt);
}

static ssize_t write_once(co__fd_t *e, int fd, unsigned fl, const struct iovec *iov, int cnt)
{
    if (fl & IO_NOWAIT) return nowait_writev(e, fd, fl, iov, cnt);
    return cnt == 1 ? co__sys_write(fd, iov[0].iov_base, iov[0].iov_len) : co__sys_writev(fd, iov, cnt);
}

/* A write to a pipe whose reader has gone fails with EPIPE, and the
 * kernel raises SIGPIPE, whose default action ends the process.  cogent's
 * calls promise EPIPE alone, without touching the program's disposition:
 * SIGPIPE is blocked in this thread for the one system call, and taken
 * back if the call raised it (unless one was pending before: that one is
 * the program's).  The technique libcurl and OpenSSL use. */
static ssize_t write_nosigpipe(co__fd_t *e, int fd, unsigned fl, const struct iovec *iov, int cnt)
{
    sigset_t only, old, pending;
    sigemptyset(&only);
    sigaddset(&only, SIGPIPE);
    sigemptyset(&old);
    if (co__sys_sigmask(SIG_BLOCK, &only, &old) < 0) return -1;
    bool blocked = sigismember(&old, SIGPIPE) == 1, had = false;
    if (blocked) {
        sigemptyset(&pending);
        had = co__sys_sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    }
    ssize_t r = write_once(e, fd, fl, iov, cnt);
    int err = errno;
    if (r < 0 && err == EPIPE && !had) co__sys_sigtake(&only);
    if (!blocked) co__sys_sigmask(SIG_UNBLOCK, &only, NULL);
    errno = err;
    return r;
}

static ssize_t write_any(co__fd_t *e, int fd, unsigned fl, const struct iovec *iov, int cnt)
{
    if ((fl & CO__FD_PIPE) && !(fl & IO_SIGPIPE)) return write_nosigpipe(e, fd, fl, iov, cnt);
    return write_once(e, fd, fl, iov, cnt);
}

/* The flags of a send: never blocking, and (for cogent's own calls) no
 * SIGPIPE. */
static inline int send_flags(unsigned fl, int flags)
{
    return flags | ((fl & IO_NOWAIT) ? MSG_DONTWAIT : 0) | ((fl & IO_SIGPIPE) ? 0 : MSG_NOSIGNAL);
}
static inline int recv_flags(unsigned fl, int flags)
{
    return flags | ((fl & IO_NOWAIT) ? MSG_DONTWAIT : 0);
}

/* -------------------------------------------------------- operations */

static ssize_t op_read(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    if (CO__LIKELY(!(fl & IO_NOWAIT))) return co__sys_read(fd, a->buf, a->n);
    if (fl & CO__FD_SOCK) return co__sys_recvfrom(fd, a->buf, a->n, MSG_DONTWAIT, NULL, NULL);
    struct iovec v = {.iov_base = a->buf, .iov_len = a->n};
    return nowait_readv(e, fd, fl, &v, 1);
}

/* Sockets go through send so that a closed peer is EPIPE, not a SIGPIPE
 * that kills the process; pipes through write_any for the same reason. */
static ssize_t op_write(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    if (fl & CO__FD_SOCK) return co__sys_sendto(fd, a->cbuf, a->n, send_flags(fl, 0), NULL, 0);
    if (CO__LIKELY(!(fl & (IO_NOWAIT | CO__FD_PIPE)))) return co__sys_write(fd, a->cbuf, a->n);
    struct iovec v = {.iov_base = (void *)a->cbuf, .iov_len = a->n};
    return write_any(e, fd, fl, &v, 1);
}

static ssize_t op_readv(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    if (CO__LIKELY(!(fl & IO_NOWAIT))) return co__sys_readv(fd, a->iov, a->iovcnt);
    if (fl & CO__FD_SOCK) {
        struct msghdr m = {.msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt};
        return co__sys_recvmsg(fd, &m, MSG_DONTWAIT);
    }
    return nowait_readv(e, fd, fl, a->iov, a->iovcnt);
}

static ssize_t op_writev(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    if (fl & CO__FD_SOCK) {
        struct msghdr m = {.msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt};
        return co__sys_sendmsg(fd, &m, send_flags(fl, 0));
    }
    if (CO__LIKELY(!(fl & (IO_NOWAIT | CO__FD_PIPE)))) return co__sys_writev(fd, a->iov, a->iovcnt);
    return write_any(e, fd, fl, a->iov, a->iovcnt);
}

static ssize_t op_recvfrom(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    (void)e;
    return co__sys_recvfrom(fd, a->buf, a->n, recv_flags(fl, a->flags), a->addr, a->addrlen);
}

static ssize_t op_sendto(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    (void)e;
    return co__sys_sendto(fd, a->cbuf, a->n, send_flags(fl, a->flags), a->caddr, a->alen);
}

static ssize_t op_recvmsg(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    (void)e;
    return co__sys_recvmsg(fd, a->msg, recv_flags(fl, a->flags));
}

static ssize_t op_sendmsg(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    (void)e;
    return co__sys_sendmsg(fd, a->cmsg, send_flags(fl, a->flags));
}

/* A connection inherits "stream" from its listener (a SOCK_SEQPACKET
 * listener accepts too, and its short reads prove nothing).  cogent's own
 * are non-blocking; the patch library's are as the caller asked. */
static ssize_t op_accept(co__fd_t *e, int fd, unsigned fl, const io_args_t *a)
{
    (void)e;
    if ((fl & IO_NOWAIT) && ready_now(fd, POLLIN) < 0) return -1;
    int c = co__sys_accept4(fd, a->addr, a->addrlen, a->flags);
    if (c < 0) return -1;
    unsigned nb = !(a->flags & SOCK_NONBLOCK) ? 0u
                  : (fl & IO_ASKED)           ? CO__FD_NB | CO__FD_USER_NB
                                              : CO__FD_NB | CO__FD_NB_OURS;
    return co__fd_new(c, CO__FD_SOCK | (fl & CO__FD_STREAM) | nb);
}

/* MSG_DONTWAIT asks this one call not to wait: the try form. */
static inline int64_t dontwait(int flags, int64_t deadline)
{
    return (flags & MSG_DONTWAIT) ? 0 : deadline;
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

ssize_t co__io_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline, unsigned opt)
{
    return io_call(fd, deadline, CO__POLL_OUT, "co_writev", op_writev,
                   &(io_args_t){.iov = iov, .iovcnt = iovcnt, .opt = (opt & CO__IO_SIGPIPE) ? IO_SIGPIPE : 0u});
}

ssize_t co_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    return co__io_writev(fd, iov, iovcnt, deadline, 0);
}

ssize_t co_recv(int fd, void *buf, size_t n, int flags, int64_t deadline)
{
    const io_args_t a = {.buf = buf, .n = n, .flags = flags};
    deadline = dontwait(flags, deadline);
    if (flags & (MSG_PEEK | MSG_WAITALL | MSG_OOB)) /* these say nothing about what is left */
        return io_call(fd, deadline, CO__POLL_IN, "co_recv", op_recvfrom, &a);
    return io_read(fd, deadline, n, "co_recv", op_recvfrom, &a);
}

ssize_t co_send(int fd, const void *buf, size_t n, int flags, int64_t deadline)
{
    return io_call(fd, dontwait(flags, deadline), CO__POLL_OUT, "co_send", op_sendto,
                   &(io_args_t){.cbuf = buf, .n = n, .flags = flags});
}

ssize_t co_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *fromlen, int64_t deadline)
{
    return io_call(fd, dontwait(flags, deadline), CO__POLL_IN, "co_recvfrom", op_recvfrom,
                   &(io_args_t){.buf = buf, .n = n, .flags = flags, .addr = from, .addrlen = fromlen});
}

ssize_t co_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen,
                  int64_t deadline)
{
    return io_call(fd, dontwait(flags, deadline), CO__POLL_OUT, "co_sendto", op_sendto,
                   &(io_args_t){.cbuf = buf, .n = n, .flags = flags, .caddr = to, .alen = tolen});
}

ssize_t co_recvmsg(int fd, struct msghdr *msg, int flags, int64_t deadline)
{
    return io_call(fd, dontwait(flags, deadline), CO__POLL_IN, "co_recvmsg", op_recvmsg,
                   &(io_args_t){.msg = msg, .flags = flags});
}

ssize_t co__io_sendmsg(int fd, const struct msghdr *msg, int flags, int64_t deadline, unsigned opt)
{
    return io_call(fd, dontwait(flags, deadline), CO__POLL_OUT, "co_sendmsg", op_sendmsg,
                   &(io_args_t){.cmsg = msg, .flags = flags, .opt = (opt & CO__IO_SIGPIPE) ? IO_SIGPIPE : 0u});
}

ssize_t co_sendmsg(int fd, const struct msghdr *msg, int flags, int64_t deadline)
{
    return co__io_sendmsg(fd, msg, flags, deadline, 0);
}

int co_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline)
{
    return (int)io_call(fd, deadline, CO__POLL_IN, "co_accept", op_accept,
                        &(io_args_t){.addr = addr, .addrlen = addrlen, .flags = SOCK_NONBLOCK | SOCK_CLOEXEC});
}

int co__io_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags, int64_t deadline)
{
    return (int)io_call(fd, deadline, CO__POLL_IN, "accept", op_accept,
                        &(io_args_t){.addr = addr, .addrlen = addrlen, .flags = flags, .opt = IO_ASKED});
}

/* connect has no non-blocking form of its own: a blocking socket is made
 * non-blocking for the one system call that starts the handshake, and
 * given its flags back at once.  A socket being connected carries no data
 * another holder could read or write meanwhile. */
static int connect_start(int fd, const struct sockaddr *addr, socklen_t addrlen, bool toggle)
{
    int fl = 0;
    if (toggle && ((fl = co__sys_fcntl(fd, F_GETFL, 0)) < 0 || co__sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -1;
    int r = co__sys_connect(fd, addr, addrlen);
    int err = errno;
    if (toggle) co__sys_fcntl(fd, F_SETFL, fl);
    errno = err;
    return r;
}

int co_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline)
{
    unsigned fl;
    co__fd_t *e;
    int64_t dl;
    if (io_begin(fd, deadline, 0, &e, &fl, &dl) < 0) return -1;
    for (;;) {
        if (connect_start(fd, addr, addrlen, (fl & IO_NOWAIT) != 0) == 0) return 0;
        if (errno == EAGAIN && !(fl & (CO__FD_NB | IO_NOWAIT))) return -1;
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
    return co__fd_close(fd, co__sys_close);
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
    /* A compact coroutine's stack moves while it waits: its nodes go on
     * the heap (compact.h). */
    bool on_stack = n <= 8 && !h->current->compact;
    co__waiter_t *w = on_stack ? local : malloc(n * sizeof *w);
    co__fd_t **ents = n <= 8 ? local_e : malloc(n * sizeof(co__fd_t *));
    int r = 0;
    nfds_t linked = 0;
    bool look_again = false;
    if (!w || !ents) {
        r = ENOMEM;
        goto out;
    }
    for (; linked < n; linked++) {
        nfds_t i = linked;
        ents[i] = fds[i].fd < 0 ? NULL : co__fd_get(fds[i].fd);
        if (ents[i] && co__fd_link(ents[i], fds[i].fd, &w[i], poll_events_of(fds[i].events)) < 0) {
            ents[i] = NULL;
            if (errno != EPERM && errno != EBADF) {
                r = errno;
                break;
            }
            /* A file, or a descriptor closed since the first look (or being
             * closed): the next poll(2) reports it, and nothing would wake a
             * wait for it.  Look again instead of waiting. */
            look_again = true;
        }
    }
    if (!r && !look_again) {
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
    /* A timeout scope (scope.h) ends the wait sooner, as ETIMEDOUT: only
     * the call's own deadline is poll's "0 ready". */
    int64_t own = deadline;
    deadline = co__scoped(deadline);
    if (!h) {
        for (;;) {
            int r = co__sys_poll(fds, nfds, co__ms_until(deadline));
            if (r == 0 && deadline != own) return errno = ETIMEDOUT, -1;
            if (r >= 0 || errno != EINTR) return r;
        }
    }
    for (;;) {
        int r = co__sys_poll(fds, nfds, 0);
        if (r != 0) return r;
        if (co__expired(deadline))
            return deadline != own ? (errno = ETIMEDOUT, -1) : 0; /* 0: try form, past deadlines */
        if (wait_many(h, fds, nfds, deadline) < 0) return -1;
    }
}
