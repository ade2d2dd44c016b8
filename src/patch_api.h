/* The core's side of libcogent-patch.so (src/patch_core.c): exported, but
 * not part of the public API; only the patch library calls these. */
#ifndef COGENT_PATCH_API_H
#define COGENT_PATCH_API_H

#include "cogent.h"

enum { CO__PATCH_LIBC = 0, CO__PATCH_COGENT = 1 };

/* True if the calling thread has a hub: sleeps and polls park. */
CO_API bool co__patch_on_hub(void);
/* How a blocking call on fd is served: by libc as is, or by cogent's call
 * of the same name (parks a coroutine; or, on a thread without a hub,
 * blocks the thread on a descriptor cogent's own API made non-blocking).
 * Classifies fd on first use; never changes its flags. */
CO_API int co__patch_mode(int fd);
/* A descriptor the caller just made (socket): forget any earlier one of
 * that number; user_nonblock is what the caller asked for. */
CO_API void co__patch_new_fd(int fd, bool user_nonblock, bool sock);
/* `to` is now a dup of `from`: same open file, same view. */
CO_API void co__patch_dup(int from, int to);
/* fcntl(F_SETFL, flags): records the caller's view of O_NONBLOCK and
 * returns the flags to give the kernel: the same. */
CO_API int co__patch_setfl(int fd, int flags);
/* fcntl(F_GETFL): the kernel's flags with O_NONBLOCK as the caller set it. */
CO_API int co__patch_getfl(int fd, int kernel_flags);

/* The patched blocking calls, served by cogent (when co__patch_mode says
 * so; poll and sleeps on a thread with a hub) with libc's semantics:
 *  - a signal handler that runs while the call is parked ends it with
 *    EINTR, unless the call is one the kernel restarts (reads, writes,
 *    accept, connect) and the handler has SA_RESTART; poll and sleeps
 *    always end (signals: co__patch_signal);
 *  - a write returns once everything is written, and a MSG_WAITALL
 *    receive on a stream socket once everything is received (or earlier
 *    with the count so far, when interrupted after some progress);
 *  - a write to a pipe or socket without reader raises SIGPIPE as libc's;
 *  - accept4's new descriptor is exactly as its flags ask.
 * Return values and errno as the libc calls'. */
CO_API ssize_t co__patch_read(int fd, void *buf, size_t n);
CO_API ssize_t co__patch_readv(int fd, const struct iovec *iov, int n);
CO_API ssize_t co__patch_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al);
CO_API ssize_t co__patch_recvmsg(int fd, struct msghdr *m, int flags);
CO_API ssize_t co__patch_writev(int fd, const struct iovec *iov, int n);
CO_API ssize_t co__patch_sendmsg(int fd, const struct msghdr *m, int flags);
CO_API int co__patch_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags);
/* close(2) through real_close, after forgetting fd, so that no wait can
 * start on it in between (co_close's guarantee). */
CO_API int co__patch_close(int fd, int (*real_close)(int fd));
CO_API int co__patch_connect(int fd, const struct sockaddr *a, socklen_t al);
/* poll for coroutines until the deadline (ms of co_now, -1 none). */
CO_API int co__patch_poll(struct pollfd *fds, nfds_t n, int64_t deadline);
/* Sleeps until the deadline: 0, or -1 with EINTR (a signal, or co_kill). */
CO_API int co__patch_sleep(int64_t deadline);
/* A handler of the program's ran on the calling thread (`restart`: it was
 * installed with SA_RESTART).  Async-signal-safe; errno is preserved. */
CO_API void co__patch_signal(bool restart);

#endif
