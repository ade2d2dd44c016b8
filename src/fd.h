/* The fd table (fd.c): what cogent knows about each file descriptor
 * number: the hubs whose pollers watch it, the coroutines waiting on it,
 * how it was found (socket, pipe, regular file, who made it
 * non-blocking), the caller's own view of O_NONBLOCK (for the patch
 * library) and a default timeout.  Entries are type-stable (chunks are
 * never freed), so a stale pointer from a poller event always reads an
 * entry: poller events are hints, and every waiter retries its system
 * call after waking. */
#ifndef COGENT_FD_H
#define COGENT_FD_H

#include "core.h"
#include "hub.h"
#include "wait.h"

enum {
    CO__FD_KNOWN = 1,    /* classified: the flags below are valid */
    CO__FD_SOCK = 2,     /* a socket: send/recv with MSG_NOSIGNAL */
    CO__FD_FILE = 4,     /* never waits (regular file, directory...) */
    CO__FD_NB = 8,       /* O_NONBLOCK set in the kernel */
    CO__FD_NB_OURS = 16, /* ...by cogent, not by the caller */
    CO__FD_USER_NB = 32, /* the caller's view: it asked for O_NONBLOCK */
    CO__FD_STREAM = 64,  /* a stream socket: a short read means it was drained */
    /* (patch-io) Descriptors cogent did not make keep their flags: */
    CO__FD_PIPE = 128,      /* a pipe or FIFO: a write can raise SIGPIPE */
    CO__FD_NO_NOWAIT = 256, /* RWF_NOWAIT refused: poll, then a call cut to fit */
};

typedef struct co__fdreg {
    co__hub_t *hub;
    struct co__fdreg *next;
} co__fdreg_t;

typedef struct co__fd {
    co__pollee_t pollee; /* what the pollers report (fd_ready) */
    unsigned spin;
    unsigned flags;     /* atomic (relaxed): CO__FD_* */
    co__hub_t *hub;     /* an edge poller watching it (spin) */
    co__fdreg_t *more;  /* other hubs' edge pollers (spin) */
    co__list_t waiters; /* co__waiter_t; key = CO__POLL_* wanted (spin) */
    bool closing;       /* co_close between its forget and close(2): no new waiter (spin) */
    int64_t timeout;    /* atomic: default wait in ms + 1, 0 none */
    /* The short-read hint (io.c): after a read that drained a stream
     * socket, wait for the poller's next "readable" instead of making a
     * read that can only say EAGAIN.  All atomic (relaxed). */
    unsigned rgen;  /* bumped by every readable event */
    unsigned rseen; /* rgen when the last read started */
    bool rshort;    /* the last read returned less than asked */
    bool rhup;      /* hang-up or error seen: a read never waits first */
} co__fd_t;

/* The entry of fd, made on first use; NULL with errno EBADF for a
 * negative or huge fd, ENOMEM when a chunk cannot be allocated. */
co__fd_t *co__fd_get(int fd);
/* The entry's flags, classifying fd on first use (one fstat and one
 * F_GETFL).  Never changes the descriptor's own flags: O_NONBLOCK belongs
 * to the open file, which other processes may share (io.c says how a
 * blocking descriptor is served).  Returns 0 with errno set if fd is not
 * open. */
unsigned co__fd_flags(co__fd_t *e, int fd);
/* Records what cogent knows about a descriptor it just made (flags given
 * as CO__FD_*), forgetting anything left from an earlier fd of the same
 * number.  Returns fd, or -1 with errno ENOMEM (closing fd). */
int co__fd_new(int fd, unsigned flags);
/* Waits until fd may be ready for `events` (CO__POLL_IN/OUT), the deadline
 * passes or the caller is killed: 0, or -1 with errno ETIMEDOUT,
 * ECANCELED, EBADF (fd closed with co_close meanwhile), ENOMEM, EPERM
 * (fd cannot be polled).  On a thread without a hub: poll(2).  `what`
 * names the call for dumps.  Switches: yes. */
int co__fd_wait(co__fd_t *e, int fd, unsigned events, int64_t deadline, const char *what);
/* For a wait on several fds (co_poll): link, on the calling coroutine's
 * hub, a node w for `events` on e (registering fd as needed): 0, or -1
 * with errno.  After the park, unlink every node linked, whatever woke
 * the caller. */
int co__fd_link(co__fd_t *e, int fd, co__waiter_t *w, unsigned events);
void co__fd_unlink(co__fd_t *e, int fd, co__waiter_t *w);
/* The deadline of a call on e given the caller's: the caller's if it set
 * one, else now + the entry's default timeout, else none. */
int64_t co__fd_deadline(co__fd_t *e, int64_t deadline);
/* Forgets fd: waiters get EBADF, every poller stops watching it.  Does
 * not close it.  Safe on any fd. */
void co__fd_forget(int fd);
/* Closes fd with close_fn (close(2), or libc's close for the patch) after
 * forgetting it; no wait can start on it in between (it fails with EBADF
 * instead of missing the close).  close_fn's result. */
int co__fd_close(int fd, int (*close_fn)(int fd));
/* The fork path: after the forking thread's hub (if any) has a new
 * poller, entries drop other threads' waiters and registrations, and the
 * hub's poller watches again what it watched. */
void co__fd_fork_child(co__hub_t *h);

#endif
