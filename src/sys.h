/* Raw system calls for cogent's own I/O.
 *
 * libcogent-patch.so (docs/patch.md) interposes read, write, close, poll
 * and friends.  If cogent itself called those libc entry points, a preloaded
 * patch would route the library's internal I/O back into the library: the
 * hub's doorbell read would try to park, the poll backend would recurse.
 * So everything cogent does on a file descriptor goes through these
 * wrappers, which enter the kernel directly.  They behave like the libc
 * calls of the same name (-1 and errno on failure) without being
 * pthread cancellation points. */
#ifndef COGENT_SYS_H
#define COGENT_SYS_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static inline ssize_t co__sys_read(int fd, void *buf, size_t n)
{
    return syscall(SYS_read, fd, buf, n);
}
static inline ssize_t co__sys_write(int fd, const void *buf, size_t n)
{
    return syscall(SYS_write, fd, buf, n);
}
static inline ssize_t co__sys_readv(int fd, const struct iovec *iov, int n)
{
    return syscall(SYS_readv, fd, iov, n);
}
static inline ssize_t co__sys_writev(int fd, const struct iovec *iov, int n)
{
    return syscall(SYS_writev, fd, iov, n);
}
static inline ssize_t co__sys_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al)
{
    return syscall(SYS_recvfrom, fd, buf, n, flags, a, al);
}
static inline ssize_t co__sys_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a,
                                     socklen_t al)
{
    return syscall(SYS_sendto, fd, buf, n, flags, a, al);
}
static inline ssize_t co__sys_recvmsg(int fd, struct msghdr *m, int flags)
{
    return syscall(SYS_recvmsg, fd, m, flags);
}
static inline ssize_t co__sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
    return syscall(SYS_sendmsg, fd, m, flags);
}
static inline int co__sys_accept4(int fd, struct sockaddr *a, socklen_t *al, int flags)
{
    return (int)syscall(SYS_accept4, fd, a, al, flags);
}
static inline int co__sys_connect(int fd, const struct sockaddr *a, socklen_t al)
{
    return (int)syscall(SYS_connect, fd, a, al);
}
static inline int co__sys_socket(int domain, int type, int proto)
{
    return (int)syscall(SYS_socket, domain, type, proto);
}
static inline int co__sys_close(int fd)
{
    return (int)syscall(SYS_close, fd);
}

#if defined(__SANITIZE_THREAD__)
#define CO__SYS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CO__SYS_TSAN 1
#endif
#endif
/* Closes a descriptor only cogent ever touches (a hub's poller and
 * doorbell).  Under ThreadSanitizer through libc: TSan follows
 * descriptors through libc's calls, and a close it does not see leaves its
 * record of the number, so the next hub's epoll_create1 that gets the
 * number looked like a race with the last owner.  (Only these: the
 * program's own descriptors are closed racing with reads on purpose --
 * co_close's contract -- and TSan would report every such close.) */
static inline int co__sys_close_own(int fd)
{
#ifdef CO__SYS_TSAN
    int old, r;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old); /* still not a cancellation point */
    r = close(fd);
    pthread_setcancelstate(old, NULL);
    return r;
#else
    return (int)syscall(SYS_close, fd);
#endif
}
static inline int co__sys_fcntl(int fd, int cmd, long arg)
{
    return (int)syscall(SYS_fcntl, fd, cmd, arg);
}
static inline int co__sys_dup3(int fd, int to, int flags)
{
    return (int)syscall(SYS_dup3, fd, to, flags);
}
/* preadv2/pwritev2 at the file's own position (offset -1), for
 * RWF_NOWAIT: a non-blocking try on a descriptor whose open file is left
 * blocking (the high half of the offset is ignored on 64-bit ABIs). */
static inline ssize_t co__sys_preadv2(int fd, const struct iovec *iov, int n, int flags)
{
    return syscall(SYS_preadv2, fd, iov, n, -1L, 0L, flags);
}
static inline ssize_t co__sys_pwritev2(int fd, const struct iovec *iov, int n, int flags)
{
    return syscall(SYS_pwritev2, fd, iov, n, -1L, 0L, flags);
}
static inline int co__sys_ioctl(int fd, unsigned long req, void *arg)
{
    return (int)syscall(SYS_ioctl, fd, req, arg);
}
/* The calling thread's signal mask, pending set and a zero-timeout take
 * of a pending signal: the kernel's 8-byte sets inside glibc's sigset_t
 * (which must start empty). */
static inline int co__sys_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    return (int)syscall(SYS_rt_sigprocmask, how, set, old, (size_t)(_NSIG / 8));
}
static inline int co__sys_sigpending(sigset_t *set)
{
    return (int)syscall(SYS_rt_sigpending, set, (size_t)(_NSIG / 8));
}
static inline int co__sys_sigtake(const sigset_t *set)
{
    struct timespec zero = {0, 0};
    return (int)syscall(SYS_rt_sigtimedwait, set, NULL, &zero, (size_t)(_NSIG / 8));
}
/* epoll_wait(2), through epoll_pwait (aarch64 has no epoll_wait system
 * call).  Unlike libc's, not a pthread cancellation point: a thread is
 * never cancelled inside its hub (docs/coroutine.md). */
struct epoll_event;
static inline int co__sys_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms)
{
    return (int)syscall(SYS_epoll_pwait, epfd, ev, max, timeout_ms, NULL, (size_t)(_NSIG / 8));
}
/* poll(2) with a millisecond timeout (-1: none), built on ppoll: aarch64
 * has no poll system call. */
static inline int co__sys_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    return (int)syscall(SYS_ppoll, fds, n, tp, NULL, (size_t)(_NSIG / 8));
}

#endif
