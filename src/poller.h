/* The poller: what the hub needs from an I/O readiness backend.
 *
 * Each backend (poller_epoll.c, poller_poll.c) implements the same small
 * table of functions, like Redis's aeApi*: create, destroy, add, modify,
 * delete, wait.  The hub picks one at run time (COGENT_POLLER=epoll|poll)
 * so that the test suite runs every test on both. */
#ifndef COGENT_POLLER_H
#define COGENT_POLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CO__POLL_IN  1u
#define CO__POLL_OUT 2u
#define CO__POLL_ERR 4u /* error or hang-up: reported whatever was asked */
/* Asked with add: edge-triggered, registered once for good (epoll only;
 * see `edge`).  Peer hang-up is then reported as readable. */
#define CO__POLL_EDGE 8u
/* Reported: the peer hung up (reading will give EOF) */
#define CO__POLL_HUP 16u

typedef struct co__poll_event {
    int fd;
    unsigned events; /* CO__POLL_* */
    void *data;
} co__poll_event_t;

#define CO__POLL_BATCH 128

typedef struct co__poller co__poller_t;

typedef struct co__poller_ops {
    const char *name;
    /* True: fds are registered once, edge-triggered, for reading and
     * writing (epoll; del may be called from any thread).  False: the I/O
     * layer registers only what its waiters wait for, level-triggered,
     * and only from the hub's own thread (poll). */
    bool edge;
    /* 0, or -1 with errno (EMFILE, ENOMEM). */
    int (*create)(co__poller_t *p);
    void (*destroy)(co__poller_t *p);
    /* Watches fd for `events`, reporting `data` with it.  0 or -1/errno
     * (EEXIST if already watched, EBADF, ENOMEM). */
    int (*add)(co__poller_t *p, int fd, unsigned events, void *data);
    int (*modify)(co__poller_t *p, int fd, unsigned events, void *data);
    /* Stops watching fd.  Must be called before fd is closed. */
    int (*del)(co__poller_t *p, int fd);
    /* Waits up to timeout_ms (-1 forever, 0 not at all) and fills at most
     * CO__POLL_BATCH events into p->events.  Returns their number (0 on
     * timeout or EINTR), or -1 with errno. */
    int (*wait)(co__poller_t *p, int timeout_ms);
} co__poller_ops_t;

struct co__poller {
    const co__poller_ops_t *ops;
    int fd;       /* epoll: the epoll fd */
    size_t count; /* fds watched (atomic: epoll's del runs on any thread) */
    void *impl;   /* backend state (poll: arrays) */
    co__poll_event_t events[CO__POLL_BATCH];
};

extern const co__poller_ops_t co__poller_epoll;
extern const co__poller_ops_t co__poller_poll;

#endif
