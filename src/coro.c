/* Coroutines: spawn, join, wait, detach, kill, yield, sleep.
 *
 * Lifetime.  A coroutine struct carries two references from spawn: one
 * held while it runs (dropped right after its stack is released), one held
 * by the handle (dropped by join or detach); every cross-thread message
 * that names it holds one more.  The last reference recycles the struct.
 *
 * Structs are type-stable: they are recycled through a pool and never
 * returned to malloc, so a stale pointer in a message reads a coroutine
 * (whose park_seq only grows) rather than freed memory. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define POOL_CHUNK 64
#define TCACHE_MAX 1024

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static co_coro_t *pool;
static CO__TLS __thread co_coro_t *tcache;
static CO__TLS __thread size_t ntcache;
static CO__TLS __thread uint64_t id_next, id_end;
static atomic_uint_fast64_t ids = 1;

uint64_t co__new_id(void)
{
    if (CO__UNLIKELY(id_next == id_end)) {
        id_next = atomic_fetch_add_explicit(&ids, 1024, memory_order_relaxed);
        id_end = id_next + 1024;
    }
    return id_next++;
}

static co_coro_t *coro_alloc(void)
{
    co_coro_t *c = tcache;
    if (CO__LIKELY(c != NULL)) {
        tcache = c->next;
        ntcache--;
        return c;
    }
    pthread_mutex_lock(&pool_lock);
    c = pool;
    if (c) pool = c->next;
    pthread_mutex_unlock(&pool_lock);
    if (c) return c;
    co_coro_t *chunk = calloc(POOL_CHUNK, sizeof *chunk);
    if (!chunk) return NULL;
    for (size_t i = 1; i < POOL_CHUNK; i++) {
        chunk[i].next = tcache;
        tcache = &chunk[i];
        ntcache++;
    }
    return &chunk[0];
}

static void coro_recycle(co_coro_t *c)
{
    co__hub_t *h = c->hub;
    if (c->name && c->name != c->name_buf) free(c->name);
    c->name = NULL;
    if (ntcache < TCACHE_MAX) {
        c->next = tcache;
        tcache = c;
        ntcache++;
    } else {
        pthread_mutex_lock(&pool_lock);
        c->next = pool;
        pool = c;
        pthread_mutex_unlock(&pool_lock);
    }
    if (co__tls.hub == h)
        h->local_refs--; /* the owner thread: no atomic needed */
    else
        co__hub_unref(h);
}

void co__coro_thread_exit(void)
{
    if (!tcache) return;
    co_coro_t *last = tcache;
    while (last->next) last = last->next;
    pthread_mutex_lock(&pool_lock);
    last->next = pool;
    pool = tcache;
    pthread_mutex_unlock(&pool_lock);
    tcache = NULL;
    ntcache = 0;
}

static void ref(co_coro_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void unref(co_coro_t *c)
{
    /* Holding the only reference, nobody else can take one: skip the
     * locked decrement (the count is re-initialised at the next spawn). */
    if (atomic_load_explicit(&c->refs, memory_order_acquire) == 1 ||
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        if (!c->is_main) coro_recycle(c);
    }
}

/* ------------------------------------------------------------ spawn */

static noreturn void finish(co__hub_t *h, co_coro_t *c)
{
    c->state = CO__C_DONE;
    __atomic_store_n(&h->ncoros, h->ncoros - 1, __ATOMIC_RELAXED);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        h->all = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
    if (c->waiters.head) co__waitq_wake(h, &c->waiters, SIZE_MAX);
    if (c->group) co__group_member_done(c);
    if (h->exiting && h->ncoros == 0) co__wake(h, &h->main, h->main.park_seq, 0);
    co__schedule(h, true);
    __builtin_unreachable();
}

static void *coro_entry(co_fiber_t *f, void *unused)
{
    (void)unused;
    co_coro_t *c = (co_coro_t *)f;
    if (!atomic_load_explicit(&c->killed, memory_order_relaxed)) c->result = c->fn(c->arg);
    finish(c->hub, c);
}

co_coro_t *co_spawn_at(co_fn fn, void *arg, const co_spawn_opts_t *opts, const char *file, int line)
{
    if (!fn) return errno = EINVAL, NULL;
    co__hub_t *h = co__hub();
    co_coro_t *c = coro_alloc();
    if (!c) return errno = ENOMEM, NULL;
    /* Every field set here, without a memset of the whole record (its
     * `rep stos` was a tenth of a spawn).  park_seq is kept and bumped:
     * stale wake-ups aimed at the record's previous life stay stale. */
    c->park_seq++;
    c->fiber.kind = CO__K_CORO;
    if (co__fiber_init(&c->fiber, coro_entry, NULL, opts ? opts->stack_size : 0) < 0) {
        int e = errno;
        c->next = tcache;
        tcache = c;
        ntcache++;
        return errno = e, NULL;
    }
    if (opts && opts->name) {
        size_t n = strlen(opts->name);
        /* name_buf always holds the name, cut if long: other threads'
         * diagnostics read it there (debug.c). */
        size_t cut = n < sizeof c->name_buf ? n : sizeof c->name_buf - 1;
        memcpy(c->name_buf, opts->name, cut);
        c->name_buf[cut] = '\0';
        if (n < sizeof c->name_buf) {
            c->name = c->name_buf;
        } else if (!(c->name = strdup(opts->name))) {
            co__fiber_release(&c->fiber);
            c->next = tcache;
            tcache = c;
            ntcache++;
            return errno = ENOMEM, NULL;
        }
    } else {
        c->name = NULL;
        c->name_buf[0] = '\0';
    }
    c->resume = &c->fiber;
    c->hub = h;
    c->id = co__new_id();
    c->fn = fn;
    c->arg = arg;
    c->result = NULL;
    c->is_main = false;
    atomic_init(&c->handle, CO__H_OWNED);
    atomic_init(&c->killed, false);
    atomic_init(&c->refs, 2);
    atomic_init(&c->watchers, NULL);
    c->wake_result = 0;
    c->cancellable = false;
    c->wait_what = NULL;
    c->wait_obj = NULL;
    c->spawn_file = file;
    c->spawn_line = line;
    c->actor = NULL;
    c->timer.index = SIZE_MAX;
    c->waiters.head = c->waiters.tail = NULL;
    c->group = NULL;
    c->gprev = c->gnext = NULL;
    c->all_prev = NULL;
    c->all_next = h->all;
    if (h->all) h->all->all_prev = c;
    h->all = c;
    __atomic_store_n(&h->ncoros, h->ncoros + 1, __ATOMIC_RELAXED); /* the monitor reads it */
    h->local_refs++;
    c->state = CO__C_NEW;
    co__ready(h, c);
    return c;
}

/* ------------------------------------------------ cross-thread parts */

/* Answers a WATCH: its coroutine has finished. */
static void answer_watch(co__msg_t *m)
{
    co__hub_t *to = m->from_hub;
    m->kind = CO__M_WAKE;
    m->co = m->from;
    m->result = 0;
    if (!co__hub_send(to, m)) {
        unref(m->from);
        free(m);
    }
    co__hub_unref(to);
}

void co__coro_reap(co_coro_t *c)
{
    /* Publishes the result and closes the watcher stack in one step: a
     * watcher either got in before (and is answered here) or sees DONE. */
    co__msg_t *w = atomic_exchange_explicit(&c->watchers, CO__DONE, memory_order_acq_rel);
    while (w) {
        co__msg_t *n = w->next;
        answer_watch(w);
        w = n;
    }
    if (c->actor) {
        co__actor_release(c->actor);
        c->actor = NULL;
    }
    unref(c);
}

void co__coro_message(co__hub_t *h, co__msg_t *m)
{
    co_coro_t *c = m->co;
    switch (m->kind) {
    case CO__M_WAKE:
        co__wake(h, c, m->seq, m->result);
        unref(c);
        free(m);
        break;
    case CO__M_GRANT:
        co__grant_delivered(h, m);
        break;
    case CO__M_DUMP:
        co__dump_answer(h, m);
        break;
    case CO__M_KILL:
        if (c->state == CO__C_PARKED && c->cancellable) co__wake(h, c, c->park_seq, ECANCELED);
        unref(c);
        free(m);
        break;
    default:
        co__panic("corrupt inbox message kind %d", m->kind);
    }
}

/* ------------------------------------------------------------- waits */

static void check_handle(const co_coro_t *c, const char *fn)
{
    CO__CHECK(c != NULL, "%s: NULL coroutine", fn);
    unsigned char st = atomic_load_explicit(&c->handle, memory_order_relaxed);
    CO__CHECK(st == CO__H_OWNED, "%s: coroutine #%" PRIu64 " was already %s", fn, c->id,
              st == CO__H_DETACHED ? "detached" : "joined");
}

/* Waits until c is done.  0 or an errno value. */
static int wait_done(co_coro_t *c, int64_t deadline, const char *what)
{
    if (co__done(c)) return 0;
    co__hub_t *h = co__hub();
    co_coro_t *self = h->current;
    if (c == self) return EDEADLK;
    if (c->is_main) return EINVAL;
    if (c->hub == h) {
        for (;;) {
            co__wnode_t node;
            co__waitq_push(&c->waiters, &node, self);
            int r = co__park(h, deadline, what, true);
            co__waitq_remove(&c->waiters, &node);
            if (r) return r;
            if (c->state == CO__C_DONE) return 0;
        }
    }
    /* Another thread's coroutine: leave a WATCH on it; its reap sends the
     * WAKE to our inbox.  Its own hub need not be running for this. */
    for (;;) {
        if (deadline >= 0 && deadline <= co_now()) return ETIMEDOUT;
        if (atomic_load_explicit(&self->killed, memory_order_relaxed)) return ECANCELED;
        co__msg_t *m = calloc(1, sizeof *m);
        if (!m) return ENOMEM;
        *m = (co__msg_t){.kind = CO__M_WATCH, .from = self, .from_hub = h, .seq = self->park_seq};
        ref(self);
        atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
        co__msg_t *head = atomic_load_explicit(&c->watchers, memory_order_acquire);
        do {
            if (head == CO__DONE) break;
            m->next = head;
        } while (
            !atomic_compare_exchange_weak_explicit(&c->watchers, &head, m, memory_order_release, memory_order_acquire));
        if (head == CO__DONE) {
            unref(self);
            co__hub_unref(h);
            free(m);
            return 0;
        }
        h->nexternal++;
        int r = co__park(h, deadline, what, true);
        h->nexternal--;
        if (r) return r;
        if (co__done(c)) return 0;
    }
}

int co_wait(co_coro_t *c, int64_t deadline)
{
    check_handle(c, "co_wait");
    int r = wait_done(c, deadline, "co_wait");
    return r ? (errno = r, -1) : 0;
}

/* The handle is the caller's alone (joining or detaching it twice, even
 * from two threads at once, is the caller's bug): a plain check and store
 * catch the sequential misuse without a locked instruction. */
static void release_handle(co_coro_t *c, unsigned char to, const char *fn)
{
    unsigned char was = atomic_load_explicit(&c->handle, memory_order_relaxed);
    CO__CHECK(was == CO__H_OWNED, "%s: coroutine #%" PRIu64 " was already %s", fn, c->id,
              was == CO__H_DETACHED ? "detached" : "joined");
    atomic_store_explicit(&c->handle, to, memory_order_relaxed);
    if (c->group) co__group_member_leave(c);
    unref(c);
}

int co_join(co_coro_t *c, int64_t deadline, void **result)
{
    check_handle(c, "co_join");
    int r = wait_done(c, deadline, "co_join");
    if (r) return errno = r, -1;
    if (result) *result = c->result;
    release_handle(c, CO__H_JOINED, "co_join");
    return 0;
}

int co_joinall(co_coro_t *const *cs, size_t n, int64_t deadline, void **results)
{
    for (size_t i = 0; i < n; i++) check_handle(cs[i], "co_joinall");
    for (size_t i = 0; i < n; i++) {
        int r = wait_done(cs[i], deadline, "co_joinall");
        if (r) return errno = r, -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (results) results[i] = cs[i]->result;
        release_handle(cs[i], CO__H_JOINED, "co_joinall");
    }
    return 0;
}

void co_detach(co_coro_t *c)
{
    check_handle(c, "co_detach");
    CO__CHECK(!c->is_main, "co_detach: coroutine #%" PRIu64 " is a thread's main coroutine", c->id);
    release_handle(c, CO__H_DETACHED, "co_detach");
}

void co_kill(co_coro_t *c)
{
    CO__CHECK(c != NULL, "co_kill: NULL coroutine");
    CO__CHECK(atomic_load_explicit(&c->handle, memory_order_relaxed) != CO__H_JOINED,
              "co_kill: coroutine #%" PRIu64 " was already joined", c->id);
    co__hub_t *h = co__tls.hub;
    bool local = h && c->hub == h;
    /* Killing a finished coroutine does nothing, not even co_killed. */
    if (co__done(c) || (local && c->state == CO__C_DONE)) return;
    atomic_store_explicit(&c->killed, true, memory_order_relaxed);
    if (local) {
        if (c->state == CO__C_PARKED && c->cancellable) co__wake(h, c, c->park_seq, ECANCELED);
        return;
    }
    co__msg_t *m = calloc(1, sizeof *m);
    CO__CHECK(m != NULL, "co_kill: out of memory for a cross-thread message");
    *m = (co__msg_t){.kind = CO__M_KILL, .co = c};
    ref(c);
    if (!co__hub_send(c->hub, m)) {
        unref(c);
        free(m);
    }
}

bool co_killed(const co_coro_t *c)
{
    return atomic_load_explicit(&c->killed, memory_order_relaxed);
}

bool co_finished(const co_coro_t *c)
{
    return co__done(c);
}

int co_yield_now(void)
{
    co__hub_t *h = co__hub();
    co_coro_t *self = h->current;
    if (atomic_load_explicit(&self->killed, memory_order_relaxed)) return errno = ECANCELED, -1;
    co__ready(h, self);
    co__schedule(h, false);
    return 0;
}

int co_sleep_until(int64_t deadline)
{
    co__hub_t *h = co__hub();
    if (deadline >= 0 && deadline <= co_now()) return co_yield_now();
    int r = co__park(h, deadline, "co_sleep", true);
    if (r == ETIMEDOUT) return 0;
    return errno = r ? r : EINTR, -1;
}

int co_sleep_ms(int64_t ms)
{
    return ms <= 0 ? co_yield_now() : co_sleep_until(co_now() + ms);
}

co_coro_t *co_current(void)
{
    return co__hub()->current;
}

uint64_t co_id(const co_coro_t *c)
{
    return c->id;
}

const char *co_name(const co_coro_t *c)
{
    static CO__TLS __thread char buf[32];
    if (c->name) return c->name;
    snprintf(buf, sizeof buf, "#%" PRIu64, c->id);
    return buf;
}

/* ------------------------------------------------------- thread exit */

void co__coro_exit_all(co__hub_t *h)
{
    CO__CHECK(h->current == &h->main, "a thread exited from inside coroutine #%" PRIu64 " (pthread_exit?)",
              h->current->id);
    while (h->ncoros > 0) {
        for (co_coro_t *c = h->all; c; c = c->all_next) {
            atomic_store_explicit(&c->killed, true, memory_order_relaxed);
            if (c->state == CO__C_PARKED && c->cancellable) co__wake(h, c, c->park_seq, ECANCELED);
        }
        if (co__park(h, -1, "thread exit", false) != EDEADLK) continue;
        /* What is left can never finish: drop it without unwinding.  All
         * bookkeeping first (wait-list nodes live on these stacks), then
         * the stacks go. */
        co_coro_t *stuck = h->all;
        for (co_coro_t *c = stuck; c; c = c->all_next) c->state = CO__C_DONE;
        for (co_coro_t *c = stuck; c; c = c->all_next) {
            if (c->group) co__group_member_done(c);
            if (co__timer_armed(&c->timer)) co__timers_remove(&h->timers, &c->timer);
        }
        h->all = NULL;
        h->ncoros = 0;
        while (stuck) {
            co_coro_t *c = stuck;
            stuck = c->all_next;
            co__fiber_release(&c->fiber);
            co__coro_reap(c);
        }
    }
}
