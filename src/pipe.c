/* Pipes between processes (multiprocessing.Pipe): two connected ends
 * that carry whole byte messages.
 *
 * The wire.  A duplex pipe is a Unix stream socketpair, a one-way pipe a
 * pipe(2); each message is an 8-byte length and the bytes.  A receiver
 * reads as much as the kernel has into its end's buffer and hands out
 * whole messages from it (a message bigger than 64 KiB goes straight into
 * a buffer of its own, handed over without a copy), so a message is
 * delivered whole or not at all:
 * a receive that times out or is cancelled half-way leaves what it read
 * in the buffer for the next one, and many small messages cost one read.
 *
 * No deadlock on big messages.  A message larger than the kernel's
 * buffer goes out in pieces while the peer reads.  When a duplex end's
 * send has to wait for room and nobody receives on that end, the sender
 * reads what comes in meanwhile into the receive buffer: two processes
 * that each send the other a big message before receiving both get
 * through (with plain blocking pipes they would wait on each other
 * forever).
 *
 * A send either fails having sent nothing, or succeeds: once a message
 * has started out it is committed, and if the deadline passes (or the
 * caller is killed) before the rest fits, the rest is kept and goes out
 * ahead of the next message -- the stream never carries half a message
 * followed by another. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fd.h"
#include "sys.h"

#define HDR       8
#define RBUF_MIN  (64 * 1024)
#define RBUF_KEEP (1024 * 1024) /* a buffer grown for a big message shrinks back beyond this */

struct co_conn {
    int fd;
    bool can_recv, can_send;
    bool duplex;
    unsigned closed; /* atomic */
    co_lock_t rlock, wlock;
    /* Received and not yet handed out: rbuf[rpos .. rpos + rlen). */
    char *rbuf;
    size_t rcap, rpos, rlen;
    bool eof;
    /* A big message is read straight into a buffer of its own, which
     * co_conn_recv hands over without a copy. */
    char *big;
    size_t big_len, big_have;
    /* The unsent tail of a committed message. */
    char *pend;
    size_t pend_len, pend_off;
};

static co_conn_t *conn_make(int fd, bool can_recv, bool can_send, bool duplex)
{
    co_conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->can_recv = can_recv;
    c->can_send = can_send;
    c->duplex = duplex;
    co_lock_init(&c->rlock, "co_conn receive");
    co_lock_init(&c->wlock, "co_conn send");
    return c;
}

int co_pipe(co_conn_t *ends[2], bool duplex)
{
    CO__CHECK(ends != NULL, "co_pipe: NULL ends");
    int fds[2];
    if (duplex) {
        if (co_socketpair(fds) < 0) return -1;
    } else {
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
        if (co__fd_new(fds[0], CO__FD_PIPE | CO__FD_NB | CO__FD_NB_OURS) < 0) {
            co__sys_close(fds[1]);
            return -1;
        }
        if (co__fd_new(fds[1], CO__FD_PIPE | CO__FD_NB | CO__FD_NB_OURS) < 0) {
            co_close(fds[0]);
            return -1;
        }
    }
    ends[0] = conn_make(fds[0], true, duplex, duplex);
    ends[1] = conn_make(fds[1], duplex, true, duplex);
    if (!ends[0] || !ends[1]) {
        free(ends[0]);
        free(ends[1]);
        co_close(fds[0]);
        co_close(fds[1]);
        return errno = ENOMEM, -1;
    }
    return 0;
}

co_conn_t *co_conn_from_fd(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return NULL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return NULL;
    bool sock = S_ISSOCK(st.st_mode);
    if (!sock && !S_ISFIFO(st.st_mode)) return errno = EINVAL, NULL;
    int acc = fl & O_ACCMODE;
    bool r = sock || acc == O_RDONLY || acc == O_RDWR;
    bool w = sock || acc == O_WRONLY || acc == O_RDWR;
    co_conn_t *c = conn_make(fd, r, w, sock);
    if (!c) return errno = ENOMEM, NULL;
    return c;
}

int co_conn_fd(const co_conn_t *c)
{
    return c->fd;
}

static bool is_closed(const co_conn_t *c)
{
    return __atomic_load_n(&c->closed, __ATOMIC_ACQUIRE) != 0;
}

/* ------------------------------------------------------------- receive */

static uint64_t frame_len(const co_conn_t *c)
{
    uint64_t n;
    memcpy(&n, c->rbuf + c->rpos, HDR);
    return n;
}

/* Room for `want` bytes from rpos on (compacting first).  0 or ENOMEM. */
static int rbuf_room(co_conn_t *c, size_t want)
{
    if (want < RBUF_MIN) want = RBUF_MIN;
    if (c->rpos + want <= c->rcap) return 0;
    if (c->rpos > 0) { /* compact */
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen);
        c->rpos = 0;
        if (want <= c->rcap) return 0;
    }
    char *b = realloc(c->rbuf, want);
    if (!b) return ENOMEM;
    c->rbuf = b;
    c->rcap = want;
    return 0;
}

/* A buffer grown for one big message goes back to its usual size. */
static void rbuf_shrink(co_conn_t *c)
{
    if (c->rcap <= RBUF_KEEP || c->rlen > RBUF_MIN) return;
    memmove(c->rbuf, c->rbuf + c->rpos, c->rlen);
    c->rpos = 0;
    char *b = realloc(c->rbuf, RBUF_MIN);
    if (b) {
        c->rbuf = b;
        c->rcap = RBUF_MIN;
    }
}

/* Length of the whole message at the front of the buffer, or -1 if it
 * has not all arrived. */
static int64_t ready_len(const co_conn_t *c)
{
    if (c->rlen < HDR) return -1;
    uint64_t n = frame_len(c);
    if (n > (uint64_t)INT64_MAX - HDR || c->rlen - HDR < n) return -1;
    return (int64_t)n;
}

/* Reads what the kernel has (one read, waiting until the deadline for
 * something to come).  rlock held.  0, or an errno value. */
static int fill(co_conn_t *c, int64_t deadline)
{
    char *dst;
    size_t room;
    if (c->big && c->big_have < c->big_len) {
        dst = c->big + c->big_have;
        room = c->big_len - c->big_have; /* never past this message */
    } else {
        size_t want = HDR;
        if (c->rlen >= HDR) {
            uint64_t n = frame_len(c);
            if (n > SIZE_MAX - HDR) return EMSGSIZE; /* not from a cogent peer */
            want = HDR + (size_t)n;
        }
        if (rbuf_room(c, want)) return ENOMEM;
        dst = c->rbuf + c->rpos + c->rlen;
        room = c->rcap - c->rpos - c->rlen;
    }
    ssize_t r = co_read(c->fd, dst, room, deadline);
    if (r < 0) return errno == EBADF && is_closed(c) ? EPIPE : errno;
    if (r == 0)
        c->eof = true;
    else if (dst != c->rbuf + c->rpos + c->rlen)
        c->big_have += (size_t)r;
    else
        c->rlen += (size_t)r;
    return 0;
}

/* Waits until a whole message is ready: at the front of the buffer
 * (*big false) or in c->big.  rlock held.  Its length, or -1 with errno. */
static int64_t next_message(co_conn_t *c, int64_t deadline, bool *big)
{
    for (;;) {
        *big = c->big != NULL;
        if (c->big) {
            if (c->big_have == c->big_len) return (int64_t)c->big_len;
        } else {
            int64_t n = ready_len(c);
            if (n >= 0) return n;
            if (c->rlen >= HDR && frame_len(c) > RBUF_MIN && frame_len(c) <= SIZE_MAX - HDR) {
                /* Big: from now on its bytes go straight into its own
                 * buffer (no copy out of the receive buffer later). */
                size_t len = (size_t)frame_len(c);
                char *b = malloc(len);
                if (!b) return errno = ENOMEM, -1;
                size_t have = c->rlen - HDR; /* < len: not whole yet */
                memcpy(b, c->rbuf + c->rpos + HDR, have);
                c->big = b;
                c->big_len = len;
                c->big_have = have;
                c->rpos = c->rlen = 0;
                continue;
            }
        }
        if (c->eof) return errno = EPIPE, -1; /* closed, maybe in the middle of a message */
        int e = fill(c, deadline);
        if (e) return errno = e, -1;
    }
}

/* Drops the message handed out (n bytes at the front, or the big one). */
static void consume(co_conn_t *c, bool big, int64_t n)
{
    if (big) {
        c->big = NULL;
        c->big_len = c->big_have = 0;
        return;
    }
    c->rpos += HDR + (size_t)n;
    c->rlen -= HDR + (size_t)n;
    if (c->rlen == 0) c->rpos = 0;
    rbuf_shrink(c);
}

static int recv_enter(co_conn_t *c, int64_t deadline)
{
    CO__CHECK(c != NULL, "co_conn_recv: NULL connection");
    if (!c->can_recv) return errno = EBADF, -1;
    if (is_closed(c)) return errno = EPIPE, -1;
    if (co_lock_acquire(&c->rlock, deadline) < 0) return -1;
    return 0;
}

int co_conn_recv(co_conn_t *c, void **data, size_t *len, int64_t deadline)
{
    if (recv_enter(c, deadline) < 0) return -1;
    bool big;
    int64_t n = next_message(c, deadline, &big);
    if (n < 0) {
        int e = errno;
        co_lock_release(&c->rlock);
        return errno = e, -1;
    }
    char *m = big ? c->big : malloc(n ? (size_t)n : 1);
    if (!m) {
        co_lock_release(&c->rlock);
        return errno = ENOMEM, -1; /* the message stays for the next call */
    }
    if (!big && n) memcpy(m, c->rbuf + c->rpos + HDR, (size_t)n);
    consume(c, big, n);
    co_lock_release(&c->rlock);
    if (data)
        *data = m;
    else
        free(m);
    if (len) *len = (size_t)n;
    return 0;
}

ssize_t co_conn_recv_into(co_conn_t *c, void *buf, size_t cap, int64_t deadline)
{
    if (recv_enter(c, deadline) < 0) return -1;
    bool big;
    int64_t n = next_message(c, deadline, &big);
    if (n < 0 || (uint64_t)n > cap || n > SSIZE_MAX) {
        int e = n < 0 ? errno : EMSGSIZE; /* too long: it stays, for co_conn_recv */
        co_lock_release(&c->rlock);
        return errno = e, -1;
    }
    if (n) memcpy(buf, big ? c->big : c->rbuf + c->rpos + HDR, (size_t)n);
    if (big) free(c->big);
    consume(c, big, n);
    co_lock_release(&c->rlock);
    return (ssize_t)n;
}

int co_conn_poll(co_conn_t *c, int64_t deadline)
{
    if (recv_enter(c, deadline) < 0) return -1;
    int r;
    for (;;) {
        if (ready_len(c) >= 0 || c->eof || (c->big && c->big_have == c->big_len)) {
            r = 1;
            break;
        }
        int e = fill(c, deadline);
        if (e == ETIMEDOUT || e == EAGAIN) {
            r = 0;
            break;
        }
        if (e) {
            r = e == EPIPE ? 1 : (errno = e, -1); /* a receive would fail at once: ready */
            break;
        }
    }
    int e = errno;
    co_lock_release(&c->rlock);
    errno = e;
    return r;
}

/* ---------------------------------------------------------------- send */

/* Reads what has come in while a send waits (duplex ends, with rlock
 * held by the sender), so that the peer's own send can progress. */
static void drain_incoming(co_conn_t *c)
{
    while (!c->eof) {
        if (c->big && c->big_have < c->big_len) { /* (once it is whole, what follows goes to rbuf) */
            ssize_t r = co_read(c->fd, c->big + c->big_have, c->big_len - c->big_have, 0);
            if (r <= 0) {
                if (r == 0) c->eof = true;
                return;
            }
            c->big_have += (size_t)r;
            continue;
        }
        if (rbuf_room(c, c->rlen + 64 * 1024)) return;
        ssize_t r = co_read(c->fd, c->rbuf + c->rpos + c->rlen, c->rcap - c->rpos - c->rlen, 0);
        if (r < 0) return; /* EAGAIN: nothing more now; errors are the receiver's to see */
        if (r == 0)
            c->eof = true;
        else
            c->rlen += (size_t)r;
    }
}

/* Writes iov until all is out or the deadline; `*off` counts bytes out.
 * While it waits for room, a duplex end nobody receives on reads what
 * comes in (see above).  0 when all is out, else an errno value. */
static int write_out(co_conn_t *c, struct iovec *iov, int cnt, size_t total, size_t *off, int64_t deadline)
{
    bool draining = false;
    int err = 0;
    for (;;) {
        /* skip what went out */
        size_t skip = *off;
        int first = 0;
        struct iovec v[2];
        for (int i = 0; i < cnt; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[first].iov_base = (char *)iov[i].iov_base + skip;
            v[first].iov_len = iov[i].iov_len - skip;
            first++;
            skip = 0;
        }
        ssize_t w = first ? co_writev(c->fd, v, first, 0) : 0;
        if (w > 0) {
            *off += (size_t)w;
            if (*off == total) break;
            continue;
        }
        if (w == 0 && *off == total) break;
        if (errno != EAGAIN) {
            err = errno == EBADF && is_closed(c) ? EPIPE : errno;
            break;
        }
        if (!draining && c->duplex && c->can_recv && co_lock_acquire(&c->rlock, 0) == 0) draining = true;
        struct pollfd p = {.fd = c->fd, .events = (short)(POLLOUT | (draining && !c->eof ? POLLIN : 0))};
        int r = co_poll(&p, 1, deadline);
        if (r < 0) {
            err = errno;
            break;
        }
        if (r == 0) {
            err = deadline == 0 ? EAGAIN : ETIMEDOUT;
            break;
        }
        if (p.revents & POLLNVAL) {
            err = is_closed(c) ? EPIPE : EBADF;
            break;
        }
        if (draining && (p.revents & (POLLIN | POLLHUP))) drain_incoming(c);
    }
    if (draining) co_lock_release(&c->rlock);
    return err;
}

/* Sends the tail of a committed message.  wlock held.  0 or an errno. */
static int flush_pending(co_conn_t *c, int64_t deadline)
{
    if (!c->pend) return 0;
    struct iovec v = {c->pend + c->pend_off, c->pend_len - c->pend_off};
    size_t off = 0;
    int e = write_out(c, &v, 1, v.iov_len, &off, deadline);
    c->pend_off += off;
    if (c->pend_off == c->pend_len) {
        free(c->pend);
        c->pend = NULL;
        c->pend_len = c->pend_off = 0;
    }
    return e;
}

int co_conn_send(co_conn_t *c, const void *data, size_t len, int64_t deadline)
{
    CO__CHECK(c != NULL, "co_conn_send: NULL connection");
    if (!c->can_send) return errno = EBADF, -1;
    if (len && !data) return errno = EINVAL, -1;
    if (is_closed(c)) return errno = EPIPE, -1;
    if (co_lock_acquire(&c->wlock, deadline) < 0) return -1;
    int e = flush_pending(c, deadline);
    if (e) {
        co_lock_release(&c->wlock);
        return errno = e, -1;
    }
    uint64_t n = len;
    char hdr[HDR];
    memcpy(hdr, &n, HDR);
    struct iovec iov[2] = {{hdr, HDR}, {(void *)data, len}};
    size_t total = HDR + len, off = 0;
    e = write_out(c, iov, 2, total, &off, deadline);
    if (e && off > 0 && e != EPIPE) {
        /* Started: the message is committed; its tail goes out first
         * next time. */
        size_t rest = total - off;
        char *t = malloc(rest);
        if (t) {
            size_t hdr_left = off < HDR ? HDR - off : 0;
            memcpy(t, hdr + (HDR - hdr_left), hdr_left);
            memcpy(t + hdr_left, (const char *)data + (off > HDR ? off - HDR : 0), rest - hdr_left);
            c->pend = t;
            c->pend_len = rest;
            c->pend_off = 0;
            e = 0;
        } else {
            /* Not even room to keep it: wait for it to go out. */
            e = write_out(c, iov, 2, total, &off, -1);
        }
    }
    co_lock_release(&c->wlock);
    return e ? (errno = e, -1) : 0;
}

/* --------------------------------------------------------------- close */

void co_conn_close(co_conn_t *c)
{
    if (!c || __atomic_exchange_n(&c->closed, 1, __ATOMIC_ACQ_REL)) return;
    /* A committed tail gets one last chance without waiting. */
    if (c->pend && co_lock_acquire(&c->wlock, 0) == 0) {
        flush_pending(c, 0);
        co_lock_release(&c->wlock);
    }
    co_close(c->fd);
}

bool co_conn_closed(const co_conn_t *c)
{
    return is_closed(c);
}

void co_conn_free(co_conn_t *c)
{
    if (!c) return;
    co_conn_close(c);
    CO__CHECK(co_lock_destroy(&c->rlock) == 0 && co_lock_destroy(&c->wlock) == 0,
              "co_conn_free: connection %p is in use", (void *)c);
    free(c->rbuf);
    free(c->big);
    free(c->pend);
    free(c);
}
