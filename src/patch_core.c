/* What libcogent-patch.so needs from the core (declared in patch_api.h).
 *
 * The patch library links against libcogent.so and cannot see its
 * internals, so the decisions that need the fd table live here, behind a
 * few exported co__patch_* functions.  The core itself never interposes
 * anything. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

#include "fd.h"
#include "io.h"
#include "patch_api.h"
#include "sys.h"

bool co__patch_on_hub(void)
{
    return co__tls.hub != NULL;
}

int co__patch_mode(int fd)
{
    co__fd_t *e;
    if (!co__tls.hub) {
        /* Outside a hub: libc's own call, unless cogent made the fd
         * non-blocking behind the caller's back; then cogent's call, which
         * blocks the thread as the caller expects. */
        if ((unsigned)fd >= (1u << 20) || !(e = co__fd_get(fd))) return CO__PATCH_LIBC;
        unsigned f = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
        return (f & CO__FD_NB_OURS) && !(f & CO__FD_USER_NB) ? CO__PATCH_COGENT : CO__PATCH_LIBC;
    }
    if (!(e = co__fd_get(fd))) return CO__PATCH_LIBC; /* libc reports EBADF */
    unsigned f = co__fd_flags(e, fd);
    if (!f || (f & CO__FD_USER_NB)) return CO__PATCH_LIBC; /* it asked not to block */
    return CO__PATCH_COGENT;
}

void co__patch_new_fd(int fd, bool user_nonblock, bool sock)
{
    if (fd < 0) return;
    unsigned f = (sock ? CO__FD_SOCK : 0u) | (user_nonblock ? CO__FD_NB | CO__FD_USER_NB : 0u);
    co__fd_new(fd, f); /* ENOMEM: the fd stays unknown and is classified at first use */
}

void co__patch_dup(int from, int to)
{
    co__fd_t *a = co__fd_get(from);
    if (!a || to < 0) return;
    unsigned f = __atomic_load_n(&a->flags, __ATOMIC_RELAXED);
    if (!(f & CO__FD_KNOWN)) return; /* classified when first used */
    /* A dup shares the open file, so its O_NONBLOCK and the caller's view
     * of it. */
    co__fd_new(to, f & (CO__FD_SOCK | CO__FD_FILE | CO__FD_PIPE | CO__FD_NO_NOWAIT | CO__FD_NB | CO__FD_NB_OURS |
                        CO__FD_USER_NB));
}

int co__patch_setfl(int fd, int flags)
{
    co__fd_t *e = co__fd_get(fd);
    if (!e) return flags;
    unsigned f = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
    if (!(f & CO__FD_KNOWN)) return flags; /* classification will read the kernel's */
    /* The kernel gets exactly what the caller asks: cogent serves a
     * blocking descriptor without O_NONBLOCK (io.c), and the flag is the
     * open file's, seen by every process that shares it. */
    unsigned nb = (flags & O_NONBLOCK) ? CO__FD_NB | CO__FD_USER_NB : 0u;
    __atomic_fetch_and(&e->flags, ~(unsigned)(CO__FD_NB | CO__FD_USER_NB | CO__FD_NB_OURS), __ATOMIC_RELAXED);
    __atomic_fetch_or(&e->flags, nb, __ATOMIC_RELAXED);
    return flags;
}

int co__patch_getfl(int fd, int kernel_flags)
{
    co__fd_t *e = co__fd_get(fd);
    if (!e || kernel_flags < 0) return kernel_flags;
    unsigned f = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
    if (!(f & CO__FD_KNOWN)) return kernel_flags;
    return (f & CO__FD_USER_NB) ? kernel_flags | O_NONBLOCK : kernel_flags & ~O_NONBLOCK;
}

/* ------------------------------------------------------------ signals */

/* A signal handler interrupts the patched call its thread is blocked in,
 * as the kernel interrupts a blocking system call; with coroutines, every
 * patched call of the thread's hub that is parked is blocked.  The patch
 * library's handler wrapper counts each handler run here (co__patch_signal)
 * and rings the hub; the hub, at its next look at events, calls deliver():
 * every call parked since before that handler ran ends with EINTR, unless
 * the call is one the kernel restarts (read, write, accept...) and every
 * handler that ran since was installed with SA_RESTART.  cogent's own
 * co_* calls are never interrupted: they have deadlines and co_kill. */
typedef struct intr {
    co__lnode_t node;
    co_coro_t *co;
    unsigned seen;    /* the counter below when the call began */
    bool restartable; /* SA_RESTART handlers do not interrupt it */
} intr_t;

static CO__TLS __thread co__list_t intrs;     /* this thread's patched calls in progress */
static CO__TLS __thread unsigned sig_any;     /* handlers that ran on this thread */
static CO__TLS __thread unsigned sig_nonstop; /* ...of which installed without SA_RESTART */

static unsigned sig_counter(bool restartable)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return restartable ? __atomic_load_n(&sig_nonstop, __ATOMIC_RELAXED) : __atomic_load_n(&sig_any, __ATOMIC_RELAXED);
}

void co__patch_signal(bool restart)
{
    __atomic_store_n(&sig_any, __atomic_load_n(&sig_any, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    if (!restart) __atomic_store_n(&sig_nonstop, __atomic_load_n(&sig_nonstop, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    co__hub_signal();
}

/* co__hub_signal_hook: on the hub's thread, from its scheduler.  A call
 * whose coroutine is not parked in a cancellable wait right now (it is
 * about to park, or finishing) is left for the next look: the hub keeps
 * looking until it has parked or returned. */
static bool deliver(co__hub_t *h)
{
    bool done = true;
    for (co__lnode_t *n = intrs.head; n; n = n->next) {
        intr_t *i = CO__CONTAINER(n, intr_t, node);
        unsigned now = sig_counter(i->restartable);
        if (now == i->seen) continue;
        co_coro_t *co = i->co;
        if (co->state == CO__C_PARKED && co->cancellable) {
            i->seen = now;
            co__wake(h, co, co->park_seq, EINTR);
        } else {
            done = false;
        }
    }
    return done;
}

static void intr_begin(intr_t *i, bool restartable)
{
    co__hub_t *h = co__tls.hub;
    i->co = NULL;
    if (!h) return; /* a thread without a hub: its system calls see signals themselves */
    __atomic_store_n(&co__hub_signal_hook, deliver, __ATOMIC_RELEASE);
    i->co = h->current;
    i->restartable = restartable;
    i->seen = sig_counter(restartable);
    co__list_push(&intrs, &i->node);
}

static void intr_end(intr_t *i)
{
    if (i->co) co__list_remove(&intrs, &i->node);
}

/* ------------------------------------------------------- patched calls */

ssize_t co__patch_read(int fd, void *buf, size_t n)
{
    intr_t in;
    intr_begin(&in, true);
    ssize_t r = co_read(fd, buf, n, -1);
    intr_end(&in);
    return r;
}

ssize_t co__patch_readv(int fd, const struct iovec *iov, int n)
{
    intr_t in;
    intr_begin(&in, true);
    ssize_t r = co_readv(fd, iov, n, -1);
    intr_end(&in);
    return r;
}

/* MSG_WAITALL on a stream socket: the kernel's blocking receive waits for
 * all of it (or end of file, an error, a signal); cogent's tries never
 * wait in the kernel, so the rest is received here.  (On other sockets
 * the flag means nothing: one datagram is one receive.) */
static bool waitall(int fd, int flags, ssize_t r, size_t want)
{
    if (!(flags & MSG_WAITALL) || r <= 0 || (size_t)r >= want) return false;
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

ssize_t co__patch_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al)
{
    intr_t in;
    intr_begin(&in, true);
    ssize_t r = a ? co_recvfrom(fd, buf, n, flags, a, al, -1) : co_recv(fd, buf, n, flags, -1);
    if (waitall(fd, flags, r, n)) {
        size_t done = (size_t)r;
        ssize_t k;
        while (done < n && (k = co_recv(fd, (char *)buf + done, n - done, flags, -1)) > 0) done += (size_t)k;
        r = (ssize_t)done; /* what came before an end, an error or a signal */
    }
    intr_end(&in);
    return r;
}

/* Drops the first n bytes of the vector (*v, *cnt). */
static void iov_advance(struct iovec **v, size_t *cnt, size_t n)
{
    while (*cnt && n >= (*v)->iov_len) {
        n -= (*v)->iov_len;
        (*v)++;
        (*cnt)--;
    }
    if (*cnt) {
        (*v)->iov_base = (char *)(*v)->iov_base + n;
        (*v)->iov_len -= n;
    }
}

/* A copy of m's vector that the loops below may advance: `local` when it
 * fits, else allocated (NULL: out of memory, the caller settles for what
 * it has). */
static struct iovec *iov_copy(const struct msghdr *m, struct iovec *local, size_t nlocal)
{
    struct iovec *iov = m->msg_iovlen <= nlocal ? local : malloc(m->msg_iovlen * sizeof *iov);
    if (iov)
        for (size_t i = 0; i < m->msg_iovlen; i++) iov[i] = m->msg_iov[i];
    return iov;
}

ssize_t co__patch_recvmsg(int fd, struct msghdr *m, int flags)
{
    size_t total = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++) total += m->msg_iov[i].iov_len;
    intr_t in;
    intr_begin(&in, true);
    ssize_t r = co_recvmsg(fd, m, flags, -1);
    struct iovec local[16], *iov;
    if (waitall(fd, flags, r, total) && (iov = iov_copy(m, local, 16))) {
        size_t cnt = m->msg_iovlen, done = (size_t)r;
        struct iovec *v = iov;
        iov_advance(&v, &cnt, done);
        ssize_t k = 1;
        while (done < total && cnt && k > 0) {
            struct msghdr rest = {.msg_iov = v, .msg_iovlen = cnt};
            if ((k = co_recvmsg(fd, &rest, flags, -1)) > 0) {
                done += (size_t)k;
                iov_advance(&v, &cnt, (size_t)k);
            }
        }
        if (iov != local) free(iov);
        r = (ssize_t)done;
    }
    intr_end(&in);
    return r;
}

/* A blocking write returns once everything is written (a datagram goes
 * whole or not at all), or earlier with the count so far if a signal
 * interrupts it or an error follows some progress: as the kernel does.
 * cogent's tries are non-blocking and may each take a part, so the rest
 * is sent here.  Ancillary data went with the first part. */
static ssize_t out_all(int fd, const struct msghdr *m, int flags, bool sock)
{
    size_t total = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++) total += m->msg_iov[i].iov_len;
    intr_t in;
    intr_begin(&in, true);
    ssize_t r = sock ? co__io_sendmsg(fd, m, flags, -1, CO__IO_SIGPIPE)
                     : co__io_writev(fd, m->msg_iov, (int)m->msg_iovlen, -1, CO__IO_SIGPIPE);
    if (r > 0 && (size_t)r < total) {
        struct iovec local[16];
        struct iovec *iov = iov_copy(m, local, 16);
        if (iov) {
            size_t cnt = m->msg_iovlen, done = (size_t)r;
            struct iovec *v = iov;
            iov_advance(&v, &cnt, done);
            while (done < total && cnt) {
                struct msghdr rest = {
                    .msg_name = m->msg_name, .msg_namelen = m->msg_namelen, .msg_iov = v, .msg_iovlen = cnt};
                ssize_t w = sock ? co__io_sendmsg(fd, &rest, flags, -1, CO__IO_SIGPIPE)
                                 : co__io_writev(fd, v, (int)cnt, -1, CO__IO_SIGPIPE);
                if (w <= 0) break; /* the count so far is the answer */
                done += (size_t)w;
                iov_advance(&v, &cnt, (size_t)w);
            }
            if (iov != local) free(iov);
            r = (ssize_t)done;
        }
    }
    intr_end(&in);
    return r;
}

ssize_t co__patch_writev(int fd, const struct iovec *iov, int n)
{
    if (n < 0) return errno = EINVAL, -1;
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    return out_all(fd, &m, 0, false);
}

ssize_t co__patch_sendmsg(int fd, const struct msghdr *m, int flags)
{
    return out_all(fd, m, flags, true);
}

int co__patch_close(int fd, int (*real_close)(int fd))
{
    return co__fd_close(fd, real_close);
}

int co__patch_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    intr_t in;
    intr_begin(&in, true);
    int r = co__io_accept4(fd, addr, len, flags, -1);
    intr_end(&in);
    return r;
}

int co__patch_connect(int fd, const struct sockaddr *a, socklen_t al)
{
    intr_t in;
    intr_begin(&in, true);
    int r = co_connect(fd, a, al, -1);
    intr_end(&in);
    return r;
}

int co__patch_poll(struct pollfd *fds, nfds_t n, int64_t deadline)
{
    intr_t in;
    intr_begin(&in, false);
    int r = co_poll(fds, n, deadline);
    intr_end(&in);
    return r;
}

int co__patch_sleep(int64_t deadline)
{
    intr_t in;
    intr_begin(&in, false);
    int r = co_sleep_until(deadline);
    intr_end(&in);
    /* ECANCELED (co_kill) reads as EINTR to code that knows only signals. */
    return r < 0 ? (errno = EINTR, -1) : 0;
}
