/* The stream server (gevent's StreamServer): one acceptor coroutine, one
 * handler coroutine per connection, a cap on concurrent connections that
 * leaves the excess in the kernel's backlog, an idle timeout per
 * connection, and a graceful stop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "list.h"
#include "net.h"

typedef struct conn {
    co__lnode_t node; /* the server's list of running handlers */
    co_server_t *s;
    co_coro_t *co;
    int fd;
    bool started;
} conn_t;

struct co_server {
    co_handler_fn fn;
    void *arg;
    int lfd;
    int port;
    char *path;          /* a Unix socket's file, removed at stop... */
    co__sockfile_t sock; /* ...if it is still the one bound */
    size_t max_conns;
    int64_t idle_ms;
    size_t stack_size;
    co__hub_t *hub;
    co_coro_t *acceptor;
    co_sem_t slots;
    co_event_t drained; /* set when stopping and no handler but the stopper is left */
    co_event_t stopped; /* set once stopped, every handler ended */
    co__list_t conns;   /* conn_t: handlers running */
    conn_t *stopper;    /* the handler that called co_server_stop, if one did */
    bool started, stopping;
    bool stop_running;                         /* a co_server_stop call is still at work */
    uint64_t accepted, active, closed, errors; /* atomic (relaxed): read by any thread */
};

static void count(uint64_t *c, int64_t d)
{
    __atomic_fetch_add(c, (uint64_t)d, __ATOMIC_RELAXED);
}

/* No handler runs but (perhaps) the one that is stopping the server. */
static bool only_stopper_left(const co_server_t *s)
{
    const co__lnode_t *h = s->conns.head;
    return !h || (s->stopper && h == &s->stopper->node && !h->next);
}

/* The calling coroutine's connection if it is one of s's handlers. */
static conn_t *own_conn(co_server_t *s)
{
    co_coro_t *me = co_current();
    for (co__lnode_t *n = s->conns.head; n; n = n->next) {
        conn_t *c = CO__CONTAINER(n, conn_t, node);
        if (c->co == me) return c;
    }
    return NULL;
}

static void conn_end(co_server_t *s, conn_t *c)
{
    co_close(c->fd);
    co__list_remove(&s->conns, &c->node);
    free(c);
    count(&s->closed, 1);
    count(&s->active, -1);
    if (s->max_conns) co_sem_release(&s->slots);
    if (c == s->stopper) s->stopper = NULL;
    if (s->stopping) {
        if (only_stopper_left(s)) co_event_set(&s->drained);
        /* Not while a stop call still runs: whoever waits for `stopped`
         * may free the server under it. */
        if (co__list_empty(&s->conns) && !s->stop_running) co_event_set(&s->stopped);
    }
}

static void *handler_main(void *arg)
{
    conn_t *c = arg;
    co_server_t *s = c->s;
    c->started = true;
    if (s->idle_ms > 0) co_fd_set_timeout_ms(c->fd, s->idle_ms);
    int rc = s->fn(c->fd, s->arg);
    if (rc) count(&s->errors, 1);
    conn_end(s, c);
    return NULL;
}

static void *acceptor_main(void *arg)
{
    co_server_t *s = arg;
    co_spawn_opts_t so = {.stack_size = s->stack_size, .name = NULL};
    while (!s->stopping) {
        if (s->max_conns && co_sem_acquire(&s->slots, -1) < 0) break; /* killed: stopping */
        int fd = co_accept(s->lfd, NULL, NULL, -1);
        if (fd < 0) {
            int err = errno;
            if (s->max_conns) co_sem_release(&s->slots);
            if (s->stopping || err == EBADF || err == ECANCELED) break;
            count(&s->errors, 1);
            /* Out of descriptors or memory: give the handlers a moment to
             * release some rather than spin on the same failure. */
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) co_sleep_ms(10);
            continue;
        }
        conn_t *c = calloc(1, sizeof *c);
        co_coro_t *co = c ? co_spawn_with(handler_main, c, &so) : NULL;
        if (!co) {
            free(c);
            co_close(fd);
            count(&s->errors, 1);
            if (s->max_conns) co_sem_release(&s->slots);
            continue;
        }
        c->s = s;
        c->fd = fd;
        c->co = co;
        co__list_push(&s->conns, &c->node);
        co_detach(co);
        count(&s->accepted, 1);
        count(&s->active, 1);
    }
    return NULL;
}

co_server_t *co_server_new(co_handler_fn handler, void *arg, const co_server_opts_t *opts)
{
    if (!handler || !opts) return errno = EINVAL, NULL;
    co_server_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fn = handler;
    s->arg = arg;
    s->max_conns = opts->max_conns;
    s->idle_ms = opts->idle_timeout_ms;
    s->stack_size = opts->stack_size;
    s->port = -1;
    if (opts->unix_socket) {
        s->lfd = co__unix_listen(opts->host, &(co_listen_opts_t){.backlog = opts->backlog}, &s->sock);
        if (s->lfd >= 0 && !(s->path = strdup(opts->host))) {
            co_close(s->lfd);
            s->lfd = -1;
            errno = ENOMEM;
        }
    } else {
        co_listen_opts_t lo = {.backlog = opts->backlog, .reuseport = opts->reuseport};
        s->lfd = co_tcp_listen(opts->host, opts->port, &lo);
        if (s->lfd >= 0) s->port = co_socket_port(s->lfd);
    }
    if (s->lfd < 0) {
        int err = errno;
        free(s);
        return errno = err, NULL;
    }
    if (s->max_conns) co_sem_init(&s->slots, (long)s->max_conns, false);
    co_event_init(&s->drained);
    co_event_init(&s->stopped);
    return s;
}

int co_server_start(co_server_t *s)
{
    if (s->started || s->stopping) return errno = EINVAL, -1;
    co_spawn_opts_t so = {.stack_size = 0, .name = "co_server acceptor"};
    s->acceptor = co_spawn_with(acceptor_main, s, &so);
    if (!s->acceptor) return -1;
    s->hub = co__hub();
    s->started = true;
    return 0;
}

int co_server_serve(co_server_t *s)
{
    if (!s->started && !s->stopping && co_server_start(s) < 0) return -1;
    return co_event_wait(&s->stopped, -1) == 0 ? 0 : -1;
}

int co_server_stop(co_server_t *s, int64_t deadline)
{
    if (s->started && s->hub != co__tls.hub) return errno = EINVAL, -1;
    conn_t *self = s->started ? own_conn(s) : NULL;
    if (s->stopping) {
        /* A handler cannot wait for the end of every handler: itself. */
        if (!self) co_event_wait(&s->stopped, -1);
        return 0;
    }
    s->stopping = true;
    s->stop_running = true;
    /* A handler stopping its own server is neither waited for nor killed
     * by its own call: it goes on once the others are done. */
    s->stopper = self;
    if (only_stopper_left(s)) co_event_set(&s->drained);
    /* Stop accepting: closing the socket wakes the acceptor (EBADF); the
     * kill reaches it where it waits for a connection slot. */
    co_close(s->lfd);
    s->lfd = -1;
    if (s->path) co__unix_unlink(s->path, &s->sock); /* only our own socket file */
    if (s->acceptor) {
        co_kill(s->acceptor);
        co_join(s->acceptor, -1, NULL);
        s->acceptor = NULL;
    }
    int killed = 0, err = 0;
    if (co_event_wait(&s->drained, deadline) != 0) {
        for (co__lnode_t *n = s->conns.head, *next; n; n = next) {
            next = n->next;
            conn_t *c = CO__CONTAINER(n, conn_t, node);
            if (c == self) continue;
            co_kill(c->co);
            killed++;
            /* Killed before it ever ran, it never will: end it here. */
            if (!c->started) conn_end(s, c);
        }
        /* A killed stopper cannot wait: the last handler to end then
         * marks the server stopped. */
        if (co_event_wait(&s->drained, -1) != 0) err = errno;
    }
    s->stop_running = false;
    if (co__list_empty(&s->conns)) co_event_set(&s->stopped);
    return err ? (errno = err, -1) : killed;
}

int co_server_port(const co_server_t *s)
{
    return s->port;
}

void co_server_stats(const co_server_t *s, co_server_stats_t *st)
{
    st->accepted = __atomic_load_n(&s->accepted, __ATOMIC_RELAXED);
    st->active = __atomic_load_n(&s->active, __ATOMIC_RELAXED);
    st->closed = __atomic_load_n(&s->closed, __ATOMIC_RELAXED);
    st->errors = __atomic_load_n(&s->errors, __ATOMIC_RELAXED);
}

void co_server_free(co_server_t *s)
{
    if (!s) return;
    CO__CHECK(!s->started || s->hub != co__tls.hub || !own_conn(s),
              "co_server_free called from one of the server's own handlers");
    if (!s->stopping || !co__list_empty(&s->conns)) co_server_stop(s, 0);
    if (s->lfd >= 0) co_close(s->lfd);
    free(s->path);
    if (s->max_conns) co_sem_destroy(&s->slots);
    co_event_destroy(&s->drained);
    co_event_destroy(&s->stopped);
    free(s);
}
