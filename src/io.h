/* The cooperative calls with options (io.c), for the core's side of the
 * patch library (patch_core.c): an unmodified program keeps the plain
 * calls' behaviour where cogent's own calls promise something else. */
#ifndef COGENT_IO_H
#define COGENT_IO_H

#include <sys/socket.h>
#include <sys/uio.h>

#include "core.h"

/* A broken pipe or closed peer raises SIGPIPE, as the plain call does.
 * Without it (cogent's own calls), never: the call fails with EPIPE. */
#define CO__IO_SIGPIPE 1u

/* co_writev and co_sendmsg with options.  Return values and errors as
 * theirs.  Switches: yes. */
ssize_t co__io_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline, unsigned opt);
ssize_t co__io_sendmsg(int fd, const struct msghdr *msg, int flags, int64_t deadline, unsigned opt);
/* accept4: the new descriptor is exactly as `flags` ask (SOCK_NONBLOCK,
 * SOCK_CLOEXEC), where co_accept makes it non-blocking and close-on-exec.
 * Switches: yes. */
int co__io_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags, int64_t deadline);

#endif
