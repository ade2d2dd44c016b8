/* The fd table: which pollers watch a descriptor, who waits on it, and
 * what cogent learned about it (see the contract in internal.h).
 *
 * Readiness.  With epoll, a descriptor is registered once per hub that
 * ever waits on it, edge-triggered for reading and writing, and stays
 * registered until co_close/co_fd_forget: no epoll_ctl per wait (Go's
 * netpoller does the same).  No edge is lost because a coroutine only
 * waits after its system call said EAGAIN, and the poller only runs while
 * that coroutine is parked: any data arriving later makes a new edge.
 * With poll (level-triggered), a hub's poller asks for what its waiters
 * on that fd want, and nothing once they are gone.
 *
 * Each hub wakes only its own waiters, on its own thread; closing is the
 * one thing that reaches across threads (EBADF grants through wait.c's
 * messages, and epoll_ctl on another hub's epoll, which the kernel allows
 * from any thread). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "fd.h"
#include "scope.h"
#include "sys.h"

#define CHUNK_BITS 10
#define CHUNK      (1u << CHUNK_BITS)
#define NCHUNKS    1024u /* fds below 2^20: Linux's default nr_open */

static co__fd_t *chunks[NCHUNKS]; /* atomic (acquire/release), never freed */

static void fd_ready(co__hub_t *h, co__pollee_t *p, unsigned events);
static void fd_hub_exit(co__hub_t *h);

static co__fd_t *chunk_make(unsigned i)
{
    co__fd_t *c = calloc(CHUNK, sizeof *c);
    if (!c) return NULL;
    for (unsigned k = 0; k < CHUNK; k++) c[k].pollee.ready = fd_ready;
    /* Entries exist, so pollers may come to watch them: hubs must forget
     * them when they exit. */
    __atomic_store_n(&co__hub_exit_hook, fd_hub_exit, __ATOMIC_RELEASE);
    co__fd_t *expect = NULL;
    if (!__atomic_compare_exchange_n(&chunks[i], &expect, c, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        free(c); /* another thread made it first */
        return expect;
    }
    return c;
}

co__fd_t *co__fd_get(int fd)
{
    if (CO__UNLIKELY((unsigned)fd >= NCHUNKS * CHUNK)) {
        errno = EBADF;
        return NULL;
    }
    co__fd_t *c = __atomic_load_n(&chunks[(unsigned)fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (CO__UNLIKELY(c == NULL) && !(c = chunk_make((unsigned)fd >> CHUNK_BITS))) {
        errno = ENOMEM;
        return NULL;
    }
    return &c[(unsigned)fd & (CHUNK - 1)];
}

static co__fd_t *fd_peek(int fd)
{
    if ((unsigned)fd >= NCHUNKS * CHUNK) return NULL;
    co__fd_t *c = __atomic_load_n(&chunks[(unsigned)fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    return c ? &c[(unsigned)fd & (CHUNK - 1)] : NULL;
}

/* ------------------------------------------------------------- flags */

static __attribute__((noinline)) unsigned classify(co__fd_t *e, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return 0;
    int fl = co__sys_fcntl(fd, F_GETFL, 0);
    if (fl < 0) return 0;
    unsigned f = CO__FD_KNOWN;
    if (S_ISSOCK(st.st_mode))
        f |= CO__FD_SOCK;
    else if (S_ISFIFO(st.st_mode))
        f |= CO__FD_PIPE;
    else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
        f |= CO__FD_FILE; /* always "ready": the kernel never says EAGAIN */
    if (fl & O_NONBLOCK) f |= CO__FD_NB | CO__FD_USER_NB;
    return __atomic_or_fetch(&e->flags, f, __ATOMIC_RELAXED);
}

unsigned co__fd_flags(co__fd_t *e, int fd)
{
    unsigned f = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
    if (CO__UNLIKELY(!(f & CO__FD_KNOWN))) f = classify(e, fd);
    /* (patch-io) A blocking descriptor stays blocking, on a hub too: each
     * call on it uses a non-blocking form of its own (io.c). */
    return f;
}

int64_t co__fd_deadline(co__fd_t *e, int64_t deadline)
{
    int64_t t = __atomic_load_n(&e->timeout, __ATOMIC_RELAXED);
    if (co__no_deadline(deadline) && t) deadline = co_now() + (t - 1);
    return co__scoped(deadline); /* timeout scopes (scope.h): for threads without a hub too */
}

/* ------------------------------------------------------ registration */

static bool registered(const co__fd_t *e, const co__hub_t *h)
{
    if (e->hub == h) return true;
    for (const co__fdreg_t *r = e->more; r; r = r->next)
        if (r->hub == h) return true;
    return false;
}

/* Asks h's edge poller to watch fd for e.  0 or -1/errno. */
static int edge_watch(co__hub_t *h, int fd, co__fd_t *e)
{
    const unsigned ev = CO__POLL_IN | CO__POLL_OUT | CO__POLL_EDGE;
    if (h->poller.ops->add(&h->poller, fd, ev, &e->pollee) == 0) return 0;
    /* EEXIST: the kernel still watches this open file for h (its earlier
     * fd number was closed behind our back, or dup'ed): aim the
     * registration at this entry. */
    if (errno == EEXIST && h->poller.ops->modify(&h->poller, fd, ev, &e->pollee) == 0) return 0;
    return -1;
}

/* Registers fd with h's edge poller.  Spin lock held.  0 or -1/errno. */
static int edge_add(co__fd_t *e, co__hub_t *h, int fd)
{
    if (!e->hub) {
        if (edge_watch(h, fd, e) < 0) return -1;
        e->hub = h;
        return 0;
    }
    co__fdreg_t *r = malloc(sizeof *r);
    if (!r) return -1;
    if (edge_watch(h, fd, e) < 0) {
        free(r);
        return -1;
    }
    r->hub = h;
    r->next = e->more;
    e->more = r;
    return 0;
}

/* A level poller asks for what h's waiters on fd want.  Spin lock held,
 * on h's thread.  0 or -1/errno. */
static int level_update(co__fd_t *e, co__hub_t *h, int fd)
{
    unsigned want = 0;
    for (co__lnode_t *n = e->waiters.head; n; n = n->next)
        if (co__waiter_of(n)->hub == h) want |= (unsigned)co__waiter_of(n)->key;
    co__poller_t *p = &h->poller;
    if (!want) {
        p->ops->del(p, fd); /* ENOENT: not watched, fine */
        return 0;
    }
    if (p->ops->modify(p, fd, want, &e->pollee) == 0) return 0;
    return p->ops->add(p, fd, want, &e->pollee);
}

/* Stops h's poller watching fd (any thread for edge pollers). */
static void unwatch(co__hub_t *h, int fd)
{
    h->poller.ops->del(&h->poller, fd); /* EBADF/ENOENT: already gone */
}

/* Drops every registration and grants every waiter EBADF onto wl.  Spin
 * lock held. */
static void forget_locked(co__fd_t *e, int fd, co__wlist_t *wl)
{
    while (!co__list_empty(&e->waiters)) co__grant(&e->waiters, co__waiters_first(&e->waiters), EBADF, NULL, wl);
    if (e->hub) unwatch(e->hub, fd);
    e->hub = NULL;
    while (e->more) {
        co__fdreg_t *r = e->more;
        e->more = r->next;
        unwatch(r->hub, fd);
        free(r);
    }
    /* A level poller of this thread forgets it now; those of other
     * threads when their waiters (woken with EBADF) leave. */
    co__hub_t *me = co__tls.hub;
    if (me && !me->poller.ops->edge) unwatch(me, fd);
    __atomic_store_n(&e->flags, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&e->timeout, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&e->rshort, false, __ATOMIC_RELAXED);
    __atomic_store_n(&e->rhup, false, __ATOMIC_RELAXED);
}

int co__fd_close(int fd, int (*close_fn)(int fd))
{
    co__fd_t *e = fd_peek(fd);
    co__wlist_t wl = {0};
    if (e) {
        co__spin_lock(&e->spin);
        e->closing = true;
        forget_locked(e, fd, &wl);
        co__spin_unlock(&e->spin);
        co__wake_list(&wl);
    }
    int r = close_fn(fd);
    int err = errno;
    if (e) {
        co__spin_lock(&e->spin);
        e->closing = false;
        co__spin_unlock(&e->spin);
    }
    errno = err;
    return r;
}

void co__fd_forget(int fd)
{
    co__fd_t *e = fd_peek(fd);
    if (!e) return;
    co__wlist_t wl = {0};
    co__spin_lock(&e->spin);
    forget_locked(e, fd, &wl);
    co__spin_unlock(&e->spin);
    co__wake_list(&wl);
}

int co__fd_new(int fd, unsigned flags)
{
    co__fd_t *e = co__fd_get(fd);
    if (!e) {
        int err = errno;
        co__sys_close(fd);
        errno = err;
        return -1;
    }
    co__wlist_t wl = {0};
    co__spin_lock(&e->spin);
    if (!co__list_empty(&e->waiters) || e->hub || e->more)
        forget_locked(e, fd, &wl); /* left by a close behind our back */
    __atomic_store_n(&e->flags, CO__FD_KNOWN | flags, __ATOMIC_RELAXED);
    __atomic_store_n(&e->timeout, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&e->rshort, false, __ATOMIC_RELAXED);
    __atomic_store_n(&e->rhup, false, __ATOMIC_RELAXED);
    co__spin_unlock(&e->spin);
    co__wake_list(&wl);
    return fd;
}

/* -------------------------------------------------------------- waits */

/* A thread without a hub waits in poll(2) on the fd and on its own
 * eventfd: its node is on the fd's list like a coroutine's, so that a
 * co_close on any thread grants it EBADF and rings the eventfd (a close
 * does not end another thread's poll(2)).  Made on its first wait, closed
 * when the thread exits. */
static pthread_key_t wake_key;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static CO__TLS __thread int thread_wake_fd = -1;

static void wake_fd_close(void *fdp)
{
    co__sys_close_own((int)(intptr_t)fdp - 1);
    thread_wake_fd = -1;
}

static void wake_key_make(void)
{
    CO__CHECK(pthread_key_create(&wake_key, wake_fd_close) == 0, "pthread_key_create failed");
}

static int wake_fd_get(void)
{
    if (CO__LIKELY(thread_wake_fd >= 0)) return thread_wake_fd;
    pthread_once(&wake_once, wake_key_make);
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return -1;
    pthread_setspecific(wake_key, (void *)(intptr_t)(fd + 1));
    return thread_wake_fd = fd;
}

static int thread_wait(co__fd_t *e, int fd, unsigned events, int64_t deadline)
{
    /* The thread's first wait makes its eventfd, which takes the lowest
     * free number: if that is `fd`, the caller's descriptor was closed
     * (by another thread, say) before this call, and polling it would
     * wait on our own eventfd for ever. */
    int wake = wake_fd_get();
    if (wake == fd) return errno = EBADF, -1;
    struct pollfd p[2] = {
        {.fd = fd, .events = (short)(((events & CO__POLL_IN) ? POLLIN : 0) | ((events & CO__POLL_OUT) ? POLLOUT : 0))},
        {.fd = wake, .events = POLLIN}};
    co__waiter_t w;
    co__spin_lock(&e->spin);
    if (e->closing) {
        co__spin_unlock(&e->spin);
        return errno = EBADF, -1;
    }
    co__waiter_prepare(&w); /* no hub: co and hub are NULL */
    w.key = events;
    w.wake_fd = p[1].fd;
    co__waiters_push(&e->waiters, &w);
    co__spin_unlock(&e->spin);
    int rc = 0;
    for (;;) {
        int ms = co__ms_until(deadline);
        int r = co__sys_poll(p, p[1].fd >= 0 ? 2 : 1, ms);
        if (r > 0 && p[1].revents) {
            uint64_t v;
            ssize_t n = co__sys_read(p[1].fd, &v, sizeof v); /* reset: a late ring is harmless */
            (void)n;
        }
        if (__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) break; /* granted: closed */
        if (r > 0 && p[0].revents) {
            if (p[0].revents & POLLNVAL) rc = EBADF;
            break;
        }
        if (r < 0 && errno != EINTR) {
            rc = errno;
            break;
        }
        if (r == 0 && ms >= 0 && co_now() >= deadline) {
            rc = deadline == 0 ? EAGAIN : ETIMEDOUT;
            break;
        }
    }
    co__spin_lock(&e->spin);
    bool linked = w.linked;
    if (linked) co__waiters_remove(&e->waiters, &w);
    co__spin_unlock(&e->spin);
    if (!linked) { /* granted (EBADF): the granter may still be reading the node */
        co__await_grant(&w);
        rc = w.result;
    }
    return rc ? (errno = rc, -1) : 0;
}

/* Registers fd with h as needed and links w (prepared) for `events`.
 * Spin lock held.  0, or -1 with errno and w not linked. */
static int link_locked(co__fd_t *e, co__hub_t *h, int fd, co__waiter_t *w, unsigned events)
{
    if (e->closing) return errno = EBADF, -1; /* co_close is between its forget and close(2) */
    bool edge = h->poller.ops->edge;
    if (edge && !registered(e, h) && edge_add(e, h, fd) < 0) return -1;
    w->key = events;
    co__waiters_push(&e->waiters, w);
    if (!edge && level_update(e, h, fd) < 0) {
        int err = errno;
        co__waiters_remove(&e->waiters, w);
        return errno = err, -1;
    }
    return 0;
}

int co__fd_link(co__fd_t *e, int fd, co__waiter_t *w, unsigned events)
{
    co__spin_lock(&e->spin);
    co__waiter_prepare(w);
    int r = link_locked(e, w->hub, fd, w, events);
    co__spin_unlock(&e->spin);
    return r;
}

void co__fd_unlink(co__fd_t *e, int fd, co__waiter_t *w)
{
    co__hub_t *h = w->hub;
    co__spin_lock(&e->spin);
    if (w->linked) {
        co__waiters_remove(&e->waiters, w);
    } else if (w->remote) {
        /* Granted by a close on another thread: its message must land
         * before the node (on our stack) goes. */
        co__spin_unlock(&e->spin);
        co__await_grant(w);
        co__spin_lock(&e->spin);
    }
    if (!h->poller.ops->edge) level_update(e, h, fd);
    co__spin_unlock(&e->spin);
}

int co__fd_wait(co__fd_t *e, int fd, unsigned events, int64_t deadline, const char *what)
{
    co__hub_t *h = co__tls.hub;
    if (!h) return thread_wait(e, fd, events, deadline);
    if (deadline == 0) return errno = EAGAIN, -1; /* the try form */
    co__waiter_t wl_, *w;
    co__spin_lock(&e->spin);
    w = co__waiter_get(&wl_);
    if (link_locked(e, h, fd, w, events) < 0) {
        int err = errno;
        co__spin_unlock(&e->spin);
        return errno = err, -1;
    }
    int r = co__wait_block(w, &e->spin, &e->waiters, deadline, what, e, CO__BY_IO, true);
    bool level = !h->poller.ops->edge;
    if (r) { /* spin lock held, w unlinked */
        if (level) level_update(e, h, fd);
        co__spin_unlock(&e->spin);
        return errno = r, -1;
    }
    if (level) {
        co__spin_lock(&e->spin);
        level_update(e, h, fd);
        co__spin_unlock(&e->spin);
    }
    if (w->result) return errno = w->result, -1;
    return 0;
}

/* A poller's event for e, on h's thread (the hub calls it through the
 * entry's pollee). */
static void fd_ready(co__hub_t *h, co__pollee_t *p, unsigned events)
{
    co__fd_t *e = CO__CONTAINER(p, co__fd_t, pollee);
    co__wlist_t wl = {0};
    if (events & (CO__POLL_IN | CO__POLL_ERR)) __atomic_fetch_add(&e->rgen, 1, __ATOMIC_RELAXED);
    /* A hang-up can come with the last data: the read that takes the data
     * is short, yet the next one gives EOF at once, and no edge will say
     * so again. */
    if (events & (CO__POLL_HUP | CO__POLL_ERR)) __atomic_store_n(&e->rhup, true, __ATOMIC_RELAXED);
    co__spin_lock(&e->spin);
    for (co__lnode_t *n = e->waiters.head, *next; n; n = next) {
        next = n->next;
        co__waiter_t *w = co__waiter_of(n);
        if (w->hub == h && (((unsigned)w->key & events) || (events & CO__POLL_ERR)))
            co__grant(&e->waiters, w, 0, NULL, &wl);
    }
    co__spin_unlock(&e->spin);
    if (wl.head) co__wake_list(&wl);
}

/* ------------------------------------------------- hub exit and fork */

/* Calls fn on every entry that exists, spin lock held. */
static void each_entry(void (*fn)(co__fd_t *e, int fd, co__hub_t *h), co__hub_t *h, bool force_unlock)
{
    for (unsigned c = 0; c < NCHUNKS; c++) {
        co__fd_t *chunk = __atomic_load_n(&chunks[c], __ATOMIC_ACQUIRE);
        if (!chunk) continue;
        for (unsigned i = 0; i < CHUNK; i++) {
            co__fd_t *e = &chunk[i];
            if (force_unlock) e->spin = 0; /* a fork child: its holder is gone */
            co__spin_lock(&e->spin);       /* (no peek without it: another exiting hub may be writing) */
            fn(e, (int)(c * CHUNK + i), h);
            co__spin_unlock(&e->spin);
        }
    }
}

static void drop_hub(co__fd_t *e, int fd, co__hub_t *h)
{
    (void)fd;
    if (e->hub == h) {
        e->hub = NULL;
        if (e->more) { /* promote another registration */
            co__fdreg_t *r = e->more;
            e->hub = r->hub;
            e->more = r->next;
            free(r);
        }
    }
    for (co__fdreg_t **p = &e->more; *p;) {
        co__fdreg_t *r = *p;
        if (r->hub == h) {
            *p = r->next;
            free(r);
        } else {
            p = &r->next;
        }
    }
}

/* The hub is going away: it watches nothing any more. */
static void fd_hub_exit(co__hub_t *h)
{
    each_entry(drop_hub, h, false);
}

static void fork_entry(co__fd_t *e, int fd, co__hub_t *h)
{
    /* Waiters and registrations of other threads' hubs: those threads do
     * not exist here. */
    for (co__lnode_t *n = e->waiters.head, *next; n; n = next) {
        next = n->next;
        co__waiter_t *w = co__waiter_of(n);
        if (!h || w->hub != h) co__waiters_remove(&e->waiters, w);
    }
    bool mine = h && registered(e, h);
    while (e->more) {
        co__fdreg_t *r = e->more;
        e->more = r->next;
        free(r);
    }
    e->hub = NULL;
    if (!h) return;
    /* The hub's poller is new: watch again what it watched. */
    if (h->poller.ops->edge) {
        if (mine || !co__list_empty(&e->waiters)) edge_add(e, h, fd);
    } else if (!co__list_empty(&e->waiters)) {
        level_update(e, h, fd);
    }
}

void co__fd_fork_child(co__hub_t *h)
{
    each_entry(fork_entry, h, true);
}
