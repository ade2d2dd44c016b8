/* Hub pools: N threads, each running a hub, and coroutines spawned on a
 * chosen hub or the least loaded one — one way to use every core with
 * coroutines (each hub is one thread; coroutines never move).
 *
 * A hub's coroutines must be spawned on its own thread, so a spawn from
 * elsewhere is a message to that hub's inbox: its handler (on the hub's
 * thread) spawns the coroutine and answers through a promise the caller
 * waits on, which parks a calling coroutine (its hub runs on) and blocks
 * a plain thread.  The handle that comes back is an ordinary one: join,
 * wait, kill or detach it from any thread.
 *
 * Each pool thread's main coroutine waits on a queue of its own; its hub
 * runs the spawned coroutines meanwhile.  Freeing the pool closes the
 * queues: each thread's exit kills its remaining coroutines and runs them
 * to their end (co__hub_thread_end), then the threads are joined.  At the
 * program's normal exit, a non-daemon pool's threads end once what runs
 * on them has finished (the exit hook asks them, then waits). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "future.h"
#include "thread.h"

typedef struct hub_slot {
    co_thread_t *thread;
    co__hub_t *hub;     /* referenced; set by the thread before it is started */
    co_queue_t *nudges; /* the main coroutine waits on it; closed to stop */
    unsigned ready;     /* futex: hub published */
    unsigned draining;  /* atomic: the program exits; end once no coroutine is left */
} hub_slot_t;

struct co_hubpool {
    size_t n;
    unsigned stopping; /* atomic */
    char *name;
    hub_slot_t *slots;
};

static unsigned long next_pool = 1; /* atomic */

/* A pool thread's main coroutine: parked, so that the hub runs what is
 * spawned on it, until the pool closes its queue.  It wakes once after
 * every coroutine that ends (nudged by `wrapped`): a coroutine that ends
 * is released — and its joiners on other threads answered — when the hub
 * next switches to someone else, and with nothing else to run the hub
 * would wait on the dead coroutine's stack for its next event instead. */
static void *hub_main(void *arg)
{
    hub_slot_t *s = arg;
    co__hub_t *h = co__hub();
    co__hub_ref(h);
    s->hub = h;
    __atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
    co__futex_wake(&s->ready);
    void *it;
    for (;;) {
        /* At the program's exit (a non-daemon pool): what runs here
         * finishes, then the thread ends.  Coroutines spawned on this hub
         * by its own coroutines end without a nudge: look every 10 ms. */
        bool draining = __atomic_load_n(&s->draining, __ATOMIC_ACQUIRE);
        if (draining && h->ncoros == 0) break;
        if (co_queue_get(s->nudges, &it, draining ? co_now() + 10 : -1) < 0 && errno != ETIMEDOUT) break;
    }
    return NULL;
}

/* The exit hook (thread.c), on the exiting thread. */
static void drain(void *arg)
{
    hub_slot_t *s = arg;
    __atomic_store_n(&s->draining, 1, __ATOMIC_RELEASE);
    co_queue_put_nowait(s->nudges, NULL); /* EPIPE if the pool is being freed: it ends anyway */
}

typedef struct job {
    co_fn fn;
    void *arg;
    hub_slot_t *slot;
} job_t;

static void *wrapped(void *arg)
{
    job_t j = *(job_t *)arg;
    free(arg);
    void *r = j.fn(j.arg);
    co_queue_put_nowait(j.slot->nudges, NULL); /* never waits: the queue is unbounded */
    return r;
}

co_hubpool_t *co_hubpool_new(size_t n, const co_hubpool_opts_t *opts)
{
    co_hubpool_opts_t o = opts ? *opts : (co_hubpool_opts_t){0};
    if (o.name && strlen(o.name) > 200) return errno = EINVAL, NULL;
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (size_t)c : 1;
    }
    co_hubpool_t *hp = calloc(1, sizeof *hp);
    if (!hp) return errno = ENOMEM, NULL;
    hp->n = n;
    hp->slots = calloc(n, sizeof *hp->slots);
    char buf[32];
    snprintf(buf, sizeof buf, "HubPool-%lu", __atomic_fetch_add(&next_pool, 1, __ATOMIC_RELAXED));
    hp->name = strdup(o.name ? o.name : buf);
    if (!hp->slots || !hp->name) goto nomem;
    for (size_t i = 0; i < n; i++) {
        char name[240];
        snprintf(name, sizeof name, "%s_%zu", hp->name, i);
        hub_slot_t *s = &hp->slots[i];
        if (!(s->nudges = co_queue_new(NULL))) {
            co_hubpool_free(hp);
            return errno = ENOMEM, NULL;
        }
        s->thread = co__thread_start(hub_main, s, &(co_thread_opts_t){.name = name, .daemon = o.daemon}, true);
        if (!s->thread) {
            int e = errno;
            co_hubpool_free(hp);
            return errno = e, NULL;
        }
        while (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE)) co__futex_wait(&s->ready, 0, -1);
        if (!o.daemon) co__thread_on_exit(s->thread, drain, s);
    }
    return hp;
nomem:
    free(hp->slots);
    free(hp->name);
    free(hp);
    return errno = ENOMEM, NULL;
}

size_t co_hubpool_size(const co_hubpool_t *hp)
{
    CO__CHECK(hp != NULL, "co_hubpool_size: NULL pool");
    return hp->n;
}

typedef struct spawn_msg {
    co__msg_t msg;
    job_t *job;
    co_future_t *reply; /* referenced: the handle, or an error */
} spawn_msg_t;

/* On the chosen hub's thread. */
static void spawn_arrived(co__hub_t *h, co__msg_t *m)
{
    spawn_msg_t *sm = (spawn_msg_t *)m;
    co_coro_t *c = h->exiting ? NULL : co_spawn_at(wrapped, sm->job, NULL, NULL, 0);
    if (c) {
        co_future_set_result(sm->reply, c);
    } else {
        co_future_set_error(sm->reply, h->exiting ? EPIPE : errno, NULL);
        free(sm->job);
    }
    co_future_free(sm->reply);
    free(sm);
}

/* The hub with the fewest live coroutines (read without its consent: a
 * snapshot is enough to choose). */
static size_t least_loaded(const co_hubpool_t *hp)
{
    size_t best = 0, min = SIZE_MAX;
    for (size_t i = 0; i < hp->n; i++) {
        size_t load = __atomic_load_n(&hp->slots[i].hub->ncoros, __ATOMIC_RELAXED);
        if (load < min) {
            min = load;
            best = i;
        }
    }
    return best;
}

co_coro_t *co_hubpool_spawn(co_hubpool_t *hp, int which, co_fn fn, void *arg)
{
    CO__CHECK(hp != NULL, "co_hubpool_spawn: NULL pool");
    if (!fn || which < -1 || (which >= 0 && (size_t)which >= hp->n)) return errno = EINVAL, NULL;
    if (__atomic_load_n(&hp->stopping, __ATOMIC_ACQUIRE)) return errno = EPIPE, NULL;
    size_t i = which < 0 ? least_loaded(hp) : (size_t)which;
    co_future_t *reply = co_future_new();
    spawn_msg_t *sm = malloc(sizeof *sm);
    job_t *job = malloc(sizeof *job);
    if (!reply || !sm || !job) {
        co_future_free(reply);
        free(sm);
        free(job);
        return errno = ENOMEM, NULL;
    }
    co__future_ref(reply); /* the message's */
    *job = (job_t){.fn = fn, .arg = arg, .slot = &hp->slots[i]};
    *sm = (spawn_msg_t){.msg.handle = spawn_arrived, .job = job, .reply = reply};
    if (!co__hub_send(hp->slots[i].hub, &sm->msg)) {
        co__future_unref(reply);
        co_future_free(reply);
        free(sm);
        free(job);
        return errno = EPIPE, NULL;
    }
    /* The hub answers at its next look at its inbox.  Not cancellable:
     * the coroutine may exist already, and its handle must not be lost. */
    int r = co__future_wait(reply, -1, false);
    CO__CHECK(r == 0, "co_hubpool_spawn: waiting for the hub's answer failed (%d)", r);
    void *c = NULL;
    int e = co_future_result(reply, 0, &c) < 0 ? errno : 0;
    co_future_free(reply);
    return e ? (errno = e, NULL) : c;
}

void co_hubpool_free(co_hubpool_t *hp)
{
    if (!hp) return;
    for (size_t i = 0; i < hp->n; i++)
        CO__CHECK(!hp->slots[i].thread || !co__thread_is_self(hp->slots[i].thread),
                  "co_hubpool_free: called from a thread of pool '%s'", hp->name);
    __atomic_store_n(&hp->stopping, 1, __ATOMIC_RELEASE);
    for (size_t i = 0; i < hp->n; i++)
        if (hp->slots[i].nudges) co_queue_close(hp->slots[i].nudges);
    for (size_t i = 0; i < hp->n; i++) {
        hub_slot_t *s = &hp->slots[i];
        if (s->thread) {
            int r = co__thread_wait(s->thread, -1, false);
            CO__CHECK(r == 0, "co_hubpool_free: waiting for thread %zu failed (%d)", i, r);
            co_thread_free(s->thread);
        }
        if (s->hub) co__hub_unref(s->hub);
        co_queue_free(s->nudges, NULL);
    }
    free(hp->slots);
    free(hp->name);
    free(hp);
}

/* ------------------------------------------------------ multi-hub server */

/* One stream server per hub of a pool, all listening on one port with
 * SO_REUSEPORT: the kernel spreads incoming connections over the
 * listeners, and each connection's handler runs on the hub whose
 * listener accepted it.  Each server is made, started, stopped and freed
 * by a coroutine of its own hub (servers belong to their hub). */
struct co_hubserver {
    co_hubpool_t *hp;
    size_t n;
    int port;
    int64_t stop_deadline; /* for the stoppers */
    co_server_t **servers;
};

typedef struct serve_req {
    co_handler_fn handler;
    void *arg;
    co_server_opts_t opts;
} serve_req_t;

static void *serve_on_hub(void *arg)
{
    serve_req_t *r = arg;
    co_server_t *s = co_server_new(r->handler, r->arg, &r->opts);
    if (!s) return (void *)(intptr_t)-errno;
    if (co_server_start(s) < 0) {
        int e = errno;
        co_server_free(s);
        return (void *)(intptr_t)-e;
    }
    return s;
}

static bool is_error(void *r)
{
    return (intptr_t)r < 0 && (intptr_t)r > -4096;
}

typedef struct stop_req {
    co_server_t *s;
    int64_t deadline;
    bool free_it;
} stop_req_t;

static void *stop_on_hub(void *arg)
{
    stop_req_t *r = arg;
    int killed = co_server_stop(r->s, r->deadline);
    if (r->free_it) co_server_free(r->s);
    return (void *)(intptr_t)killed;
}

/* Work for one hub, answered through a promise: the caller waits on it
 * without being a cancellation point (a server must not be left half
 * made or half stopped), which a join would be. */
typedef struct remote {
    co_fn fn;
    void *arg;
    co_future_t *done; /* referenced by the coroutine */
} remote_t;

static void *remote_main(void *arg)
{
    remote_t r = *(remote_t *)arg; /* the caller's copy is gone once it has its answer */
    co_future_set_result(r.done, r.fn(r.arg));
    co_future_free(r.done);
    return NULL;
}

/* Starts fn(arg) on hub i; r (the caller's) gets the promise to wait on. */
static void remote_start(co_hubpool_t *hp, size_t i, remote_t *r)
{
    r->done = co_future_new();
    CO__CHECK(r->done != NULL, "co_hubserver: out of memory");
    co__future_ref(r->done); /* the coroutine's */
    co_coro_t *c = co_hubpool_spawn(hp, (int)i, remote_main, r);
    CO__CHECK(c != NULL, "co_hubserver: cannot reach hub %zu (%d)", i, errno);
    co_detach(c);
}

static void *remote_wait(remote_t *r)
{
    int e = co__future_wait(r->done, -1, false);
    CO__CHECK(e == 0, "co_hubserver: waiting for a hub failed (%d)", e);
    void *v = NULL;
    co_future_result(r->done, 0, &v);
    co_future_free(r->done);
    return v;
}

static void *run_on(co_hubpool_t *hp, size_t i, co_fn fn, void *arg)
{
    remote_t r = {.fn = fn, .arg = arg};
    remote_start(hp, i, &r);
    return remote_wait(&r);
}

static int stop_all(co_hubserver_t *hs, int64_t deadline, bool free_it);

co_hubserver_t *co_hubpool_serve(co_hubpool_t *hp, co_handler_fn handler, void *arg, const co_server_opts_t *opts)
{
    CO__CHECK(hp != NULL, "co_hubpool_serve: NULL pool");
    co_server_opts_t o = opts ? *opts : (co_server_opts_t){0};
    if (!handler || o.unix_socket) return errno = EINVAL, NULL;
    o.reuseport = true;
    co_hubserver_t *hs = calloc(1, sizeof *hs);
    if (!hs || !(hs->servers = calloc(hp->n, sizeof(co_server_t *)))) {
        free(hs);
        return errno = ENOMEM, NULL;
    }
    hs->hp = hp;
    hs->n = hp->n;
    int err = 0;
    /* Port 0: the kernel may give a socket with SO_REUSEPORT a port that
     * another listener of the same user already holds the same way (then
     * connections were spread over another program's listener too: a test
     * saw EOF and refused connects).  A port found free by an ordinary
     * bind is taken instead; if someone takes it meanwhile, another. */
    bool pick = o.port == 0;
    for (int attempt = 0; attempt < 8; attempt++) {
        if (pick) {
            int fd = co_tcp_listen(o.host, 0, NULL);
            if (fd < 0) {
                err = errno;
                break;
            }
            o.port = co_socket_port(fd);
            co_close(fd);
        }
        err = 0;
        for (size_t i = 0; i < hp->n && !err; i++) {
            serve_req_t req = {handler, arg, o};
            void *r = run_on(hp, i, serve_on_hub, &req);
            if (is_error(r)) {
                err = -(int)(intptr_t)r;
                break;
            }
            hs->servers[i] = r;
            if (i == 0) hs->port = co_server_port(r);
        }
        if (!(pick && err == EADDRINUSE)) break;
        stop_all(hs, co_now() + 1000, true); /* the listeners made so far go; try another port */
    }
    if (err) {
        co_hubserver_free(hs);
        return errno = err, NULL;
    }
    return hs;
}

int co_hubserver_port(const co_hubserver_t *hs)
{
    CO__CHECK(hs != NULL, "co_hubserver_port: NULL server");
    return hs->port;
}

void co_hubserver_stats(const co_hubserver_t *hs, co_server_stats_t *st)
{
    CO__CHECK(hs != NULL && st != NULL, "co_hubserver_stats: NULL argument");
    memset(st, 0, sizeof *st);
    for (size_t i = 0; i < hs->n; i++) {
        if (!hs->servers[i]) continue;
        co_server_stats_t one;
        co_server_stats(hs->servers[i], &one);
        st->accepted += one.accepted;
        st->active += one.active;
        st->closed += one.closed;
        st->errors += one.errors;
    }
}

/* Stops (and with free_it, frees) every hub's server: all at once, so
 * that the deadline holds for each.  Returns how many handlers were
 * killed in all. */
static int stop_all(co_hubserver_t *hs, int64_t deadline, bool free_it)
{
    stop_req_t *reqs = calloc(hs->n, sizeof *reqs);
    remote_t *rs = calloc(hs->n, sizeof *rs);
    CO__CHECK(reqs && rs, "co_hubserver: out of memory");
    for (size_t i = 0; i < hs->n; i++) {
        if (!hs->servers[i]) continue;
        reqs[i] = (stop_req_t){hs->servers[i], deadline, free_it};
        rs[i] = (remote_t){.fn = stop_on_hub, .arg = &reqs[i]};
        remote_start(hs->hp, i, &rs[i]);
    }
    int killed = 0;
    for (size_t i = 0; i < hs->n; i++) {
        if (!hs->servers[i]) continue;
        intptr_t r = (intptr_t)remote_wait(&rs[i]);
        if (r > 0) killed += (int)r;
        if (free_it) hs->servers[i] = NULL;
    }
    free(reqs);
    free(rs);
    return killed;
}

int co_hubserver_stop(co_hubserver_t *hs, int64_t deadline)
{
    CO__CHECK(hs != NULL, "co_hubserver_stop: NULL server");
    return stop_all(hs, deadline, false);
}

void co_hubserver_free(co_hubserver_t *hs)
{
    if (!hs) return;
    stop_all(hs, 0, true);
    free(hs->servers);
    free(hs);
}
