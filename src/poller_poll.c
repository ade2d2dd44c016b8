/* poll(2) backend: the reference implementation the epoll one is tested
 * against.  O(n) per wait; fine for the test suite and small programs. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/types.h>

#include "core.h"
#include "poller.h"
#include "sys.h"

typedef struct pstate {
    struct pollfd *fds;
    void **data;
    int *slot; /* fd -> index in fds + 1 (0: not watched) */
    size_t nslot;
    size_t n, cap;
    size_t next; /* where the next wait starts scanning: fairness */
} pstate_t;

static short to_poll(unsigned ev)
{
    /* CO__POLL_EDGE is epoll's business: poll is level-triggered, and the
     * I/O layer only asks for what its waiters wait for. */
    return (short)(((ev & CO__POLL_IN) ? POLLIN : 0) | ((ev & CO__POLL_OUT) ? POLLOUT : 0));
}

static int pl_create(co__poller_t *p)
{
    p->count = 0;
    p->fd = -1;
    p->impl = calloc(1, sizeof(pstate_t));
    return p->impl ? 0 : -1;
}

static void pl_destroy(co__poller_t *p)
{
    pstate_t *s = p->impl;
    if (!s) return;
    free(s->fds);
    free(s->data);
    free(s->slot);
    free(s);
    p->impl = NULL;
}

static ssize_t find(const pstate_t *s, int fd)
{
    return (size_t)fd < s->nslot ? (ssize_t)s->slot[fd] - 1 : -1;
}

static int pl_add(co__poller_t *p, int fd, unsigned events, void *data)
{
    pstate_t *s = p->impl;
    if (fd < 0) return errno = EBADF, -1;
    if (find(s, fd) >= 0) return errno = EEXIST, -1;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct pollfd *f = realloc(s->fds, cap * sizeof *f);
        if (!f) return -1;
        s->fds = f;
        void **d = realloc(s->data, cap * sizeof *d);
        if (!d) return -1;
        s->data = d;
        s->cap = cap;
    }
    if ((size_t)fd >= s->nslot) {
        size_t ns = s->nslot ? s->nslot : 64;
        while (ns <= (size_t)fd) ns *= 2;
        int *sl = realloc(s->slot, ns * sizeof *sl);
        if (!sl) return -1;
        for (size_t i = s->nslot; i < ns; i++) sl[i] = 0;
        s->slot = sl;
        s->nslot = ns;
    }
    s->slot[fd] = (int)s->n + 1;
    s->fds[s->n] = (struct pollfd){.fd = fd, .events = to_poll(events)};
    s->data[s->n] = data;
    s->n++;
    p->count++;
    return 0;
}

static int pl_modify(co__poller_t *p, int fd, unsigned events, void *data)
{
    pstate_t *s = p->impl;
    ssize_t i = find(s, fd);
    if (i < 0) return errno = ENOENT, -1;
    s->fds[i].events = to_poll(events);
    s->data[i] = data;
    return 0;
}

static int pl_del(co__poller_t *p, int fd)
{
    pstate_t *s = p->impl;
    ssize_t i = find(s, fd);
    if (i < 0) return errno = ENOENT, -1;
    s->n--;
    s->slot[fd] = 0;
    if ((size_t)i != s->n) {
        s->fds[i] = s->fds[s->n];
        s->data[i] = s->data[s->n];
        s->slot[s->fds[i].fd] = (int)i + 1;
    }
    p->count--;
    return 0;
}

static int pl_wait(co__poller_t *p, int timeout_ms)
{
    pstate_t *s = p->impl;
    int r = co__sys_poll(s->fds, s->n, timeout_ms);
    if (r < 0) return errno == EINTR ? 0 : -1;
    int n = 0;
    for (size_t k = 0; k < s->n && n < r && n < CO__POLL_BATCH; k++) {
        size_t i = (s->next + k) % s->n;
        short re = s->fds[i].revents;
        if (!re) continue;
        unsigned e = 0;
        if (re & POLLIN) e |= CO__POLL_IN;
        if (re & POLLOUT) e |= CO__POLL_OUT;
        if (re & (POLLERR | POLLHUP | POLLNVAL)) e |= CO__POLL_ERR;
        if (re & POLLHUP) e |= CO__POLL_HUP;
        p->events[n++] = (co__poll_event_t){.fd = s->fds[i].fd, .events = e, .data = s->data[i]};
    }
    if (s->n) s->next = (s->next + 1) % s->n;
    return n;
}

const co__poller_ops_t co__poller_poll = {
    "poll", false, pl_create, pl_destroy, pl_add, pl_modify, pl_del, pl_wait,
};
