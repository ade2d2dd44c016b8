/* epoll backend: the default poller. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core.h"
#include "poller.h"
#include "sys.h"

static uint32_t to_epoll(unsigned ev)
{
    return ((ev & CO__POLL_IN) ? EPOLLIN : 0u) | ((ev & CO__POLL_OUT) ? EPOLLOUT : 0u) |
           ((ev & CO__POLL_EDGE) ? EPOLLET | EPOLLRDHUP : 0u);
}

/* The kernel's event array lives on the heap, not on the stack of the
 * coroutine that happens to poll: coroutine stacks stay one page deep. */
static int ep_create(co__poller_t *p)
{
    p->count = 0;
    p->impl = malloc(CO__POLL_BATCH * sizeof(struct epoll_event));
    if (!p->impl) return -1;
    p->fd = epoll_create1(EPOLL_CLOEXEC);
    if (p->fd < 0) {
        free(p->impl);
        p->impl = NULL;
        return -1;
    }
    return 0;
}

static void ep_destroy(co__poller_t *p)
{
    if (p->fd >= 0) co__sys_close_own(p->fd);
    p->fd = -1;
    free(p->impl);
    p->impl = NULL;
}

static int ep_ctl(co__poller_t *p, int op, int fd, unsigned events, void *data)
{
    struct epoll_event e = {.events = to_epoll(events), .data.ptr = data};
    return epoll_ctl(p->fd, op, fd, &e);
}

static int ep_add(co__poller_t *p, int fd, unsigned events, void *data)
{
    if (ep_ctl(p, EPOLL_CTL_ADD, fd, events, data) < 0) return -1;
    __atomic_fetch_add(&p->count, 1, __ATOMIC_RELAXED);
    return 0;
}

static int ep_modify(co__poller_t *p, int fd, unsigned events, void *data)
{
    return ep_ctl(p, EPOLL_CTL_MOD, fd, events, data);
}

static int ep_del(co__poller_t *p, int fd)
{
    struct epoll_event e = {0};
    if (epoll_ctl(p->fd, EPOLL_CTL_DEL, fd, &e) < 0) return -1;
    __atomic_fetch_sub(&p->count, 1, __ATOMIC_RELAXED);
    return 0;
}

static int ep_wait(co__poller_t *p, int timeout_ms)
{
    struct epoll_event *ev = p->impl;
    int n = co__sys_epoll_wait(p->fd, ev, CO__POLL_BATCH, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        unsigned e = 0;
        if (ev[i].events & (EPOLLIN | EPOLLRDHUP)) e |= CO__POLL_IN;
        if (ev[i].events & EPOLLOUT) e |= CO__POLL_OUT;
        if (ev[i].events & (EPOLLERR | EPOLLHUP)) e |= CO__POLL_ERR;
        if (ev[i].events & (EPOLLRDHUP | EPOLLHUP)) e |= CO__POLL_HUP;
        p->events[i].fd = -1; /* epoll reports data only */
        p->events[i].events = e;
        p->events[i].data = ev[i].data.ptr;
    }
    return n;
}

const co__poller_ops_t co__poller_epoll = {
    "epoll", true, ep_create, ep_destroy, ep_add, ep_modify, ep_del, ep_wait,
};
