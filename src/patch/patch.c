/* libcogent-patch.so: gevent's monkey.patch_all for C (docs/patch.md).
 *
 * Linked into a program (before libc) or loaded with LD_PRELOAD, this
 * library interposes the blocking calls of libc.  On a thread with a hub
 * they park the calling coroutine instead of the thread; everywhere else
 * they are libc's own calls.  COGENT_PATCH=0 in the environment turns
 * every wrapper into a plain pass-through.
 *
 * Each wrapper asks the core how to serve the call (co__patch_mode):
 * libc's call as is, or cogent's cooperative call of the same name, with
 * libc's semantics (patch_api.h): a socket the program left blocking
 * still blocks (its coroutine), one it made non-blocking still says
 * EAGAIN; writes are complete; SIGPIPE is raised as by libc; a signal
 * handler interrupts the call with EINTR.  No descriptor's flags are ever
 * changed (docs/patch.md).
 *
 * For the last point the library also wraps the program's signal
 * handlers (sigaction, signal...): the kernel runs a trampoline that
 * tells the hub, then the program's handler. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "patch_api.h"

#define EXPORT __attribute__((visibility("default")))

static int disabled = -1; /* -1: not read yet */

static bool off(void)
{
    if (__builtin_expect(disabled < 0, 0)) {
        const char *v = getenv("COGENT_PATCH");
        disabled = v && (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "no"));
    }
    return disabled;
}

/* libc's function `name`, looked up once. */
#define REAL(ret, name, params)                                                                                        \
    static ret(*real_##name) params;                                                                                   \
    static ret(*get_##name(void)) params                                                                               \
    {                                                                                                                  \
        if (__builtin_expect(real_##name == NULL, 0)) {                                                                \
            real_##name = (ret(*) params)dlsym(RTLD_NEXT, #name);                                                      \
            if (!real_##name) {                                                                                        \
                fprintf(stderr, "cogent-patch: libc has no %s\n", #name);                                              \
                abort();                                                                                               \
            }                                                                                                          \
        }                                                                                                              \
        return real_##name;                                                                                            \
    }

REAL(ssize_t, read, (int, void *, size_t))
REAL(ssize_t, write, (int, const void *, size_t))
REAL(ssize_t, readv, (int, const struct iovec *, int))
REAL(ssize_t, writev, (int, const struct iovec *, int))
REAL(ssize_t, recv, (int, void *, size_t, int))
REAL(ssize_t, send, (int, const void *, size_t, int))
REAL(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *))
REAL(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t))
REAL(ssize_t, recvmsg, (int, struct msghdr *, int))
REAL(ssize_t, sendmsg, (int, const struct msghdr *, int))
REAL(int, accept4, (int, struct sockaddr *, socklen_t *, int))
REAL(int, connect, (int, const struct sockaddr *, socklen_t))
REAL(int, poll, (struct pollfd *, nfds_t, int))
REAL(int, ppoll, (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))
REAL(int, select, (int, fd_set *, fd_set *, fd_set *, struct timeval *))
REAL(int, pselect, (int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *))
REAL(unsigned, sleep, (unsigned))
REAL(int, usleep, (useconds_t))
REAL(int, nanosleep, (const struct timespec *, struct timespec *))
REAL(int, clock_nanosleep, (clockid_t, int, const struct timespec *, struct timespec *))
REAL(int, close, (int))
REAL(int, dup, (int))
REAL(int, dup2, (int, int))
REAL(int, dup3, (int, int, int))
REAL(int, fcntl, (int, int, ...))
REAL(int, fcntl64, (int, int, ...))
REAL(int, ioctl, (int, unsigned long, ...))
REAL(int, socket, (int, int, int))
REAL(int, getaddrinfo, (const char *, const char *, const struct addrinfo *, struct addrinfo **))
REAL(int, getnameinfo, (const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int))
REAL(int, sigaction, (int, const struct sigaction *, struct sigaction *))
REAL(sighandler_t, signal, (int, sighandler_t))
REAL(int, siginterrupt, (int, int))

/* COGENT_PATCH_HUB=1: the main thread gets a hub as the program starts,
 * so that an unmodified program's own blocking calls go through cogent
 * (without it, only threads that use cogent have one).  Meant for running
 * ordinary programs under the patch, to check that nothing they or their
 * neighbours can see changes (docs/patch.md). */
static void __attribute__((constructor)) hub_at_start(void)
{
    const char *v = getenv("COGENT_PATCH_HUB");
    if (!off() && v && !strcmp(v, "1")) co_hub_poller();
}

static bool cooperative(int fd)
{
    return !off() && co__patch_mode(fd) == CO__PATCH_COGENT;
}

static bool on_hub(void)
{
    return !off() && co__patch_on_hub();
}

/* -------------------------------------------------------- reads, writes */

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    return cooperative(fd) ? co__patch_read(fd, buf, n) : get_read()(fd, buf, n);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    if (!cooperative(fd)) return get_write()(fd, buf, n);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
    return co__patch_writev(fd, &v, 1);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
    return cooperative(fd) ? co__patch_readv(fd, iov, n) : get_readv()(fd, iov, n);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
    return cooperative(fd) ? co__patch_writev(fd, iov, n) : get_writev()(fd, iov, n);
}

/* MSG_DONTWAIT asks for libc's own non-blocking call. */
EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    if (cooperative(fd) && !(flags & MSG_DONTWAIT)) return co__patch_recvfrom(fd, buf, n, flags, NULL, NULL);
    return get_recv()(fd, buf, n, flags);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    if (!cooperative(fd) || (flags & MSG_DONTWAIT)) return get_send()(fd, buf, n, flags);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return co__patch_sendmsg(fd, &m, flags);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al)
{
    if (cooperative(fd) && !(flags & MSG_DONTWAIT)) return co__patch_recvfrom(fd, buf, n, flags, a, al);
    return get_recvfrom()(fd, buf, n, flags, a, al);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t al)
{
    if (!cooperative(fd) || (flags & MSG_DONTWAIT)) return get_sendto()(fd, buf, n, flags, a, al);
    struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
    struct msghdr m = {.msg_name = (void *)a, .msg_namelen = a ? al : 0, .msg_iov = &v, .msg_iovlen = 1};
    return co__patch_sendmsg(fd, &m, flags);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
    if (cooperative(fd) && !(flags & MSG_DONTWAIT)) return co__patch_recvmsg(fd, m, flags);
    return get_recvmsg()(fd, m, flags);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    if (cooperative(fd) && !(flags & MSG_DONTWAIT)) return co__patch_sendmsg(fd, m, flags);
    return get_sendmsg()(fd, m, flags);
}

/* _FORTIFY_SOURCE forms: the same calls with the buffer's size checked.
 * (glibc declares them only inside its fortified headers.) */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *a, socklen_t *al);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *m, size_t fdslen);

static void chk_fail(const char *what)
{
    fprintf(stderr, "*** buffer overflow detected ***: %s: terminated\n", what);
    abort();
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (n > buflen) chk_fail("read");
    return read(fd, buf, n);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (n > buflen) chk_fail("recv");
    return recv(fd, buf, n, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *a, socklen_t *al)
{
    if (n > buflen) chk_fail("recvfrom");
    return recvfrom(fd, buf, n, flags, a, al);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
    if (fdslen / sizeof *fds < n) chk_fail("poll");
    return poll(fds, n, timeout);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *m, size_t fdslen)
{
    if (fdslen / sizeof *fds < n) chk_fail("ppoll");
    return ppoll(fds, n, t, m);
}

/* ------------------------------------------------- connections, sockets */

EXPORT int accept4(int fd, struct sockaddr *a, socklen_t *al, int flags)
{
    if (cooperative(fd)) return co__patch_accept(fd, a, al, flags);
    int c = get_accept4()(fd, a, al, flags);
    if (c >= 0 && !off()) co__patch_new_fd(c, (flags & SOCK_NONBLOCK) != 0, true);
    return c;
}

EXPORT int accept(int fd, struct sockaddr *a, socklen_t *al)
{
    return accept4(fd, a, al, 0);
}

EXPORT int connect(int fd, const struct sockaddr *a, socklen_t al)
{
    return cooperative(fd) ? co__patch_connect(fd, a, al) : get_connect()(fd, a, al);
}

EXPORT int socket(int domain, int type, int proto)
{
    int fd = get_socket()(domain, type, proto);
    if (fd >= 0 && !off()) co__patch_new_fd(fd, (type & SOCK_NONBLOCK) != 0, true);
    return fd;
}

EXPORT int close(int fd)
{
    if (off()) return get_close()(fd);
    return co__patch_close(fd, get_close()); /* waiters wake with EBADF; no poller watches it */
}

EXPORT int dup(int fd)
{
    int to = get_dup()(fd);
    if (to >= 0 && !off()) co__patch_dup(fd, to);
    return to;
}

EXPORT int dup3(int fd, int to, int flags)
{
    if (!off() && fd != to) co_fd_forget(to); /* dup3 closes `to` first */
    int r = get_dup3()(fd, to, flags);
    if (r >= 0 && !off()) co__patch_dup(fd, r);
    return r;
}

EXPORT int dup2(int fd, int to)
{
    if (!off() && fd != to) co_fd_forget(to);
    int r = get_dup2()(fd, to);
    if (r >= 0 && !off() && fd != to) co__patch_dup(fd, r);
    return r;
}

static int do_fcntl(int (*real)(int, int, ...), int fd, int cmd, va_list ap)
{
    /* Every fcntl command takes an int, a long or a pointer, or nothing:
     * passing a pointer-sized value covers them all on LP64. */
    void *arg = va_arg(ap, void *);
    if (off()) return real(fd, cmd, arg);
    if (cmd == F_SETFL) {
        int flags = (int)(intptr_t)arg;
        return real(fd, cmd, (void *)(intptr_t)co__patch_setfl(fd, flags));
    }
    if (cmd == F_GETFL) return co__patch_getfl(fd, real(fd, cmd));
    int r = real(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) co__patch_dup(fd, r);
    return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = do_fcntl(get_fcntl(), fd, cmd, ap);
    va_end(ap);
    return r;
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = do_fcntl(get_fcntl64(), fd, cmd, ap);
    va_end(ap);
    return r;
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req == FIONBIO && !off() && arg) {
        /* FIONBIO is fcntl(F_SETFL, O_NONBLOCK) in another form. */
        int fl = get_fcntl()(fd, F_GETFL);
        if (fl < 0) return -1;
        int user = co__patch_getfl(fd, fl);
        int want = *(int *)arg ? (user | O_NONBLOCK) : (user & ~O_NONBLOCK);
        return get_fcntl()(fd, F_SETFL, co__patch_setfl(fd, want)) < 0 ? -1 : 0;
    }
    return get_ioctl()(fd, req, arg);
}

/* ------------------------------------------------------- poll, select */

/* libc's timeouts and sleeps last at least what was asked.  co_now()
 * counts whole milliseconds, so now + d can come up to 1 ms early in real
 * time: a non-zero duration ends one tick later (python3's time.sleep(0.05)
 * measured 49.x ms with time.monotonic). */
static int64_t after(int64_t ms)
{
    int64_t now = co_now();
    if (ms <= 0) return now;
    return ms >= INT64_MAX - 1 - now ? -1 : now + ms + 1;
}

static int64_t deadline_ms(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : after(timeout_ms);
}

static int64_t deadline_ts(const struct timespec *t)
{
    if (!t) return -1;
    return after((int64_t)t->tv_sec * 1000 + (t->tv_nsec + 999999) / 1000000);
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    if (!on_hub()) return get_poll()(fds, n, timeout);
    return co__patch_poll(fds, n, timeout == 0 ? 0 : deadline_ms(timeout));
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask)
{
    /* The signal mask is not applied while a coroutine waits: the hub
     * serves other coroutines meanwhile (docs/patch.md). */
    if (!on_hub() || mask) return get_ppoll()(fds, n, t, mask);
    return co__patch_poll(fds, n, (t && !t->tv_sec && !t->tv_nsec) ? 0 : deadline_ts(t));
}

static int select_common(int nfds, fd_set *r, fd_set *w, fd_set *x, int64_t deadline)
{
    struct pollfd local[64], *p = local;
    int n = 0;
    for (int fd = 0; fd < nfds; fd++)
        if ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x))) n++;
    if (n > 64 && !(p = malloc((size_t)n * sizeof *p))) return errno = ENOMEM, -1;
    int k = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (short)(((r && FD_ISSET(fd, r)) ? POLLIN : 0) | ((w && FD_ISSET(fd, w)) ? POLLOUT : 0) |
                           ((x && FD_ISSET(fd, x)) ? POLLPRI : 0));
        if (ev) p[k++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int rc = co__patch_poll(p, (nfds_t)k, deadline);
    if (rc >= 0) {
        int bad = 0;
        for (int i = 0; i < k; i++)
            if (p[i].revents & POLLNVAL) bad = 1;
        if (bad) {
            rc = -1;
            errno = EBADF;
        } else {
            if (r) FD_ZERO(r);
            if (w) FD_ZERO(w);
            if (x) FD_ZERO(x);
            rc = 0;
            for (int i = 0; i < k; i++) {
                short re = p[i].revents;
                if (r && (re & (POLLIN | POLLHUP | POLLERR)) && (p[i].events & POLLIN)) FD_SET(p[i].fd, r), rc++;
                if (w && (re & (POLLOUT | POLLERR)) && (p[i].events & POLLOUT)) FD_SET(p[i].fd, w), rc++;
                if (x && (re & POLLPRI)) FD_SET(p[i].fd, x), rc++;
            }
        }
    }
    if (p != local) free(p);
    return rc;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv)
{
    if (!on_hub() || nfds < 0 || nfds > FD_SETSIZE || (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)))
        return get_select()(nfds, r, w, x, tv);
    int64_t d = -1;
    if (tv && (tv->tv_sec || tv->tv_usec))
        d = tv->tv_sec > INT32_MAX ? -1 : co_now() + tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
    else if (tv)
        d = 0;
    int rc = select_common(nfds, r, w, x, d);
    /* Linux's select leaves in *tv the time not slept (pselect does not),
     * and programs rely on it to loop with one budget. */
    if (tv && d > 0) {
        int64_t left = rc == 0 ? 0 : d - co_now();
        if (left < 0) left = 0;
        tv->tv_sec = left / 1000;
        tv->tv_usec = (left % 1000) * 1000;
    }
    return rc;
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *t, const sigset_t *mask)
{
    if (!on_hub() || mask || nfds < 0 || nfds > FD_SETSIZE) return get_pselect()(nfds, r, w, x, t, mask);
    return select_common(nfds, r, w, x, (t && !t->tv_sec && !t->tv_nsec) ? 0 : deadline_ts(t));
}

/* ------------------------------------------------------------- sleeps */

/* A sleep parks on the hub; a signal handler (or co_kill) ends it early
 * with EINTR. */
EXPORT unsigned sleep(unsigned s)
{
    if (!on_hub()) return get_sleep()(s);
    int saved = errno;
    int64_t d = after((int64_t)s * 1000);
    if (co__patch_sleep(d) < 0) {
        int64_t left = d - co_now();
        return left > 0 ? (unsigned)(left / 1000) : 0; /* whole seconds not slept, as glibc */
    }
    errno = saved;
    return 0;
}

EXPORT int usleep(useconds_t us)
{
    if (!on_hub()) return get_usleep()(us);
    return co__patch_sleep(after(((int64_t)us + 999) / 1000));
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!on_hub()) return get_nanosleep()(req, rem);
    if (!req || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L || req->tv_sec < 0) return errno = EINVAL, -1;
    int64_t d = deadline_ts(req);
    if (co__patch_sleep(d) < 0) {
        if (rem) {
            int64_t left = d - co_now();
            if (left < 0) left = 0;
            rem->tv_sec = left / 1000;
            rem->tv_nsec = (left % 1000) * 1000000L;
        }
        return -1;
    }
    return 0;
}

EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem)
{
    if (!on_hub() || (clk != CLOCK_MONOTONIC && clk != CLOCK_REALTIME))
        return get_clock_nanosleep()(clk, flags, req, rem);
    if (!req || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L) return EINVAL;
    struct timespec rel = *req;
    if (flags & TIMER_ABSTIME) {
        struct timespec now;
        clock_gettime(clk, &now);
        int64_t ns = (int64_t)(req->tv_sec - now.tv_sec) * 1000000000LL + (req->tv_nsec - now.tv_nsec);
        if (ns < 0) ns = 0;
        rel.tv_sec = ns / 1000000000LL;
        rel.tv_nsec = ns % 1000000000LL;
        rem = NULL;
    }
    if (nanosleep(&rel, rem) < 0) return errno; /* clock_nanosleep returns the error */
    return 0;
}

/* ------------------------------------------------------- name lookups */

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    if (!on_hub()) return get_getaddrinfo()(node, service, hints, res);
    return co_getaddrinfo(node, service, hints, res, -1);
}

EXPORT int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                       socklen_t servlen, int flags)
{
    if (!on_hub()) return get_getnameinfo()(sa, salen, host, hostlen, serv, servlen, flags);
    return co_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags, -1);
}

/* ------------------------------------------------------------- signals */

/* The program's handlers.  The kernel runs `trampoline` for each (same
 * mask and flags, plus SA_SIGINFO), which tells the core that a handler
 * ran on this thread before calling the program's: the hub then ends the
 * patched calls it interrupts with EINTR.  The program still sees its own
 * handler and flags in what sigaction reports. */
typedef struct handler {
    _Atomic(void *) fn; /* sa_handler or sa_sigaction */
    atomic_int flags;   /* the program's sa_flags */
} handler_t;
static handler_t handlers[NSIG];
static _Atomic(uint64_t) interrupting; /* siginterrupt's set: bit sig-1 */

/* Taken at load time: no lazy binding inside a handler. */
static void (*const note_signal)(bool) = co__patch_signal;

static void trampoline(int sig, siginfo_t *si, void *uc)
{
    int flags = atomic_load_explicit(&handlers[sig].flags, memory_order_relaxed);
    void *fn = atomic_load_explicit(&handlers[sig].fn, memory_order_relaxed);
    /* First: a handler may leave with siglongjmp. */
    note_signal((flags & SA_RESTART) != 0);
    if (fn == (void *)SIG_IGN || fn == (void *)SIG_DFL) return; /* changed meanwhile */
    if (flags & SA_SIGINFO)
        ((void (*)(int, siginfo_t *, void *))fn)(sig, si, uc);
    else
        ((void (*)(int))fn)(sig);
}

/* Handlers worth wrapping: a function, for a signal that can arrive
 * while a call is blocked.  Faults (SIGSEGV...) are the thread's own
 * doing and interrupt nothing; their handlers are left as they are. */
static bool wrappable(int sig, const struct sigaction *act)
{
    void *fn = (void *)act->sa_handler;
    if (fn == (void *)SIG_DFL || fn == (void *)SIG_IGN || fn == (void *)trampoline) return false;
    return sig != SIGSEGV && sig != SIGBUS && sig != SIGILL && sig != SIGFPE && sig != SIGTRAP && sig != SIGSYS;
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (off() || sig <= 0 || sig >= NSIG) return get_sigaction()(sig, act, old);
    void *prev_fn = atomic_load(&handlers[sig].fn);
    int prev_flags = atomic_load(&handlers[sig].flags);
    struct sigaction k;
    bool wrap = act && wrappable(sig, act);
    if (wrap) {
        k = *act;
        k.sa_sigaction = trampoline;
        k.sa_flags |= SA_SIGINFO;
        /* Before the kernel can run the trampoline for it. */
        atomic_store(&handlers[sig].flags, act->sa_flags);
        atomic_store(&handlers[sig].fn, (void *)act->sa_handler);
        act = &k;
    }
    int r = get_sigaction()(sig, act, old);
    if (r < 0 && wrap) {
        atomic_store(&handlers[sig].fn, prev_fn);
        atomic_store(&handlers[sig].flags, prev_flags);
    }
    if (r == 0 && old && old->sa_sigaction == trampoline) {
        old->sa_handler = (sighandler_t)prev_fn;
        old->sa_flags = (old->sa_flags & ~SA_SIGINFO) | (prev_flags & SA_SIGINFO);
    }
    return r;
}

/* glibc's own signal() and siginterrupt() install through an internal
 * alias of sigaction that interposition cannot see: they are redone here
 * with the same semantics, over the sigaction above. */
static sighandler_t bsd_signal_common(int sig, sighandler_t h)
{
    if (h == SIG_ERR || sig <= 0 || sig >= NSIG) return errno = EINVAL, SIG_ERR;
    struct sigaction a = {.sa_handler = h}, o;
    sigemptyset(&a.sa_mask);
    sigaddset(&a.sa_mask, sig);
    a.sa_flags = (atomic_load(&interrupting) >> (sig - 1)) & 1 ? 0 : SA_RESTART;
    if (sigaction(sig, &a, &o) < 0) return SIG_ERR;
    return o.sa_handler;
}

EXPORT sighandler_t signal(int sig, sighandler_t h)
{
    if (off()) return get_signal()(sig, h);
    return bsd_signal_common(sig, h);
}

sighandler_t bsd_signal(int sig, sighandler_t h); /* declared only for old X/Open levels */
EXPORT sighandler_t bsd_signal(int sig, sighandler_t h)
{
    if (off()) return get_signal()(sig, h);
    return bsd_signal_common(sig, h);
}

/* signal() under strict ISO C (no _DEFAULT_SOURCE) is System V's: one
 * shot, not masked, not restarted. */
sighandler_t __sysv_signal(int sig, sighandler_t h);
static sighandler_t sysv_common(int sig, sighandler_t h)
{
    if (h == SIG_ERR || sig <= 0 || sig >= NSIG) return errno = EINVAL, SIG_ERR;
    struct sigaction a = {.sa_handler = h, .sa_flags = SA_RESETHAND | SA_NODEFER}, o;
    sigemptyset(&a.sa_mask);
    if (sigaction(sig, &a, &o) < 0) return SIG_ERR;
    return o.sa_handler;
}

EXPORT sighandler_t __sysv_signal(int sig, sighandler_t h)
{
    return sysv_common(sig, h);
}

EXPORT sighandler_t sysv_signal(int sig, sighandler_t h)
{
    return sysv_common(sig, h);
}

EXPORT int siginterrupt(int sig, int flag)
{
    if (off()) return get_siginterrupt()(sig, flag);
    struct sigaction a;
    if (sig <= 0 || sig >= NSIG || sigaction(sig, NULL, &a) < 0) return errno = EINVAL, -1;
    uint64_t bit = (uint64_t)1 << (sig - 1);
    if (flag) {
        atomic_fetch_or(&interrupting, bit);
        a.sa_flags &= ~SA_RESTART;
    } else {
        atomic_fetch_and(&interrupting, ~bit);
        a.sa_flags |= SA_RESTART;
    }
    return sigaction(sig, &a, NULL);
}
