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
#include <sys/mman.h>

#include "compact.h"
#include "coro.h"
#include "hub.h"
#include "scope.h"

#define POOL_CHUNK     64   /* records per chunk at first */
#define POOL_CHUNK_MAX 8192 /* ... doubling up to (about 3 MB) */
#ifdef MADV_POPULATE_WRITE
#define CO__MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define CO__MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#define TCACHE_MAX 1024

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static co_coro_t *pool;

void (*co__coro_drop_actor)(struct co__actor *a);

/* Free structs form stacks linked through their run-queue node. */
static inline void pool_push(co_coro_t **top, co_coro_t *c)
{
    c->rq.next = *top ? &(*top)->rq : NULL;
    *top = c;
}
static inline co_coro_t *pool_pop(co_coro_t **top)
{
    co_coro_t *c = *top;
    if (c) *top = c->rq.next ? CO__CONTAINER(c->rq.next, co_coro_t, rq) : NULL;
    return c;
}
static CO__TLS __thread co_coro_t *tcache;
static CO__TLS __thread size_t ntcache;
static CO__TLS __thread size_t chunk_records = POOL_CHUNK; /* the next chunk's size */
static CO__TLS __thread co_coro_t *fresh, *fresh_end;      /* never used yet: [fresh, fresh_end) */
/* Records freed beyond the cache, handed to the global pool TCACHE_MAX at
 * a time (one lock for the lot: a million coroutines ending together take
 * a thousand locks, not a million). */
static CO__TLS __thread co_coro_t *spill, *spill_tail;
static CO__TLS __thread size_t nspill;
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

/* Stale handles (docs/debugging.md).  A handle is invalid once joined or
 * detached, as a pthread_t is: its record is recycled for the next spawn,
 * and a stale handle would then name another coroutine.  With
 * COGENT_CHECK_HANDLES the most recent records given up wait in a
 * quarantine before reuse, still marked joined or detached, so that a
 * stale use aborts with a message instead. */
#define QUARANTINE_DEFAULT 65536
size_t co__check_handles; /* quarantine size; 0: off */
static co__fifo_t quarantine;
static size_t nquarantine;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void read_env(void)
{
    const char *v = getenv("COGENT_CHECK_HANDLES");
    if (!v || !*v || !strcmp(v, "0")) return;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end || errno || v[0] == '-') {
        fprintf(stderr, "cogent: ignoring COGENT_CHECK_HANDLES=%s (want 1, or how many records to quarantine)\n", v);
        return;
    }
    co__check_handles = n == 1 ? QUARANTINE_DEFAULT : (size_t)n;
}

static co_coro_t *coro_alloc(void)
{
    co_coro_t *c = tcache;
    if (CO__LIKELY(c != NULL)) {
        pool_pop(&tcache);
        ntcache--;
        return c;
    }
    pthread_once(&env_once, read_env);
    if (spill) { /* our own freed records first: no lock */
        c = pool_pop(&spill);
        nspill--;
        return c;
    }
    if (fresh < fresh_end) return fresh++; /* the rest of our last chunk, in address order */
    pthread_mutex_lock(&pool_lock);
    c = pool_pop(&pool);
    /* A batch for the cache while the lock is held. */
    for (co_coro_t *d; ntcache < POOL_CHUNK && (d = pool_pop(&pool));) {
        pool_push(&tcache, d);
        ntcache++;
    }
    pthread_mutex_unlock(&pool_lock);
    if (c) return c;
    /* A thread that keeps needing records gets them in ever larger
     * chunks (up to POOL_CHUNK_MAX records, about 3 MB), handed out from
     * `fresh` in address order.  A million spawned before any ends is
     * 368 MB of records touched in a row: in large chunks, in order, their
     * first touch and later reads run at the memory's pace (cold spawn-all
     * of 1M: 273 -> 223 ns per coroutine on the benchmark VM, most of the
     * gain in the joins).  Large chunks come straight from the kernel
     * (calloc maps them), so pages not yet used cost nothing -- except
     * that once a thread has needed thousands (the largest chunks), each
     * new chunk is populated in one call: the kernel fills its pages
     * without a fault per page (spawn of 1M: 180 -> 150-160 ns).  Earlier
     * populating made a program that spawns a thousand pay for pages it
     * never used. */
    size_t n = chunk_records;
    co_coro_t *chunk = calloc(n, sizeof *chunk);
    if (!chunk && n > POOL_CHUNK) chunk = calloc(n = POOL_CHUNK, sizeof *chunk);
    if (!chunk) return NULL;
    if (n >= POOL_CHUNK_MAX / 2) {
        uintptr_t lo = ((uintptr_t)chunk + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)(chunk + n)) & ~(uintptr_t)4095;
        if (hi > lo) (void)madvise((void *)lo, hi - lo, CO__MADV_POPULATE_WRITE); /* EINVAL before Linux 5.14 */
    }
    if (chunk_records < POOL_CHUNK_MAX) chunk_records *= 2;
    fresh = chunk + 1;
    fresh_end = chunk + n;
    return chunk;
}

static void coro_recycle(co_coro_t *c)
{
    co__hub_t *h = c->hub;
    if (c->name && c->name != c->name_buf) free(c->name);
    c->name = NULL;
    if (CO__UNLIKELY(co__check_handles)) {
        pthread_mutex_lock(&pool_lock);
        co__fifo_push(&quarantine, &c->rq);
        c = ++nquarantine > co__check_handles ? CO__CONTAINER(co__fifo_pop(&quarantine), co_coro_t, rq) : NULL;
        if (c) {
            nquarantine--;
            pool_push(&pool, c);
        }
        pthread_mutex_unlock(&pool_lock);
    } else if (ntcache < TCACHE_MAX) {
        pool_push(&tcache, c);
        ntcache++;
    } else {
        if (!spill) spill_tail = c;
        pool_push(&spill, c);
        if (++nspill == TCACHE_MAX) {
            pthread_mutex_lock(&pool_lock);
            spill_tail->rq.next = pool ? &pool->rq : NULL;
            pool = spill;
            pthread_mutex_unlock(&pool_lock);
            spill = spill_tail = NULL;
            nspill = 0;
        }
    }
    if (co__tls.hub == h)
        h->local_refs--; /* the owner thread: no atomic needed */
    else
        co__hub_unref(h);
}

void co__coro_thread_exit(void)
{
    pthread_mutex_lock(&pool_lock);
    co_coro_t *c;
    while ((c = pool_pop(&tcache))) pool_push(&pool, c);
    while ((c = pool_pop(&spill))) pool_push(&pool, c);
    while (fresh < fresh_end) pool_push(&pool, fresh++);
    pthread_mutex_unlock(&pool_lock);
    fresh = fresh_end = NULL;
    ntcache = nspill = 0;
    spill_tail = NULL;
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

static const co__fiber_class_t coro_class; /* below */
static void publish_done(co_coro_t *c);

/* The bookkeeping of a coroutine's end, on its hub: it leaves the hub's
 * list, its joiners and its group hear of it. */
static inline __attribute__((always_inline)) void ended(co__hub_t *h, co_coro_t *c)
{
    c->state = CO__C_DONE;
    __atomic_store_n(&h->ncoros, h->ncoros - 1, __ATOMIC_RELAXED);
    co__list_remove(&h->all, &c->all);
    if (!co__list_empty(&c->joiners.list)) co__parkq_wake(h, &c->joiners, SIZE_MAX);
    if (c->group) co__group_member_done(c);
    if (h->exiting && h->ncoros == 0) co__wake(h, &h->main, h->main.park_seq, 0);
    /* Other hubs learn of the end now, as this hub's joiners just did: the
     * stack is released only once this hub has something else to run,
     * which an idle hub may not have for a long time (or ever). */
    publish_done(c);
}

/* Returned (or killed before it ran): off its own stack for good, which
 * the next landing frees. */
static noreturn void finish(co__hub_t *h, co_coro_t *c)
{
    ended(h, c);
    co__schedule(h, true);
    __builtin_unreachable();
}

static void coro_released(co_fiber_t *f);

bool co__coro_start(co__hub_t *h, co_coro_t *c)
{
    if (CO__LIKELY(!atomic_load_explicit(&c->killed, memory_order_relaxed))) {
        if (c->compact) return true; /* its first frame is built on the shared stack (compact.c) */
        if (CO__LIKELY(co__fiber_attach(&c->fiber, c->stack_req) == 0)) return true;
        c->start_error = ENOMEM;
    }
    /* It never runs: ended here, on the scheduler's stack, and reaped at
     * once (it has no stack to release). */
    ended(h, c);
    coro_released(&c->fiber);
    return false;
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
    size_t stack_size = opts ? opts->stack_size : 0;
    if (!fn || !co__stack_size_ok(stack_size) || (opts && (unsigned)opts->compact > CO_COMPACT_YES))
        return errno = EINVAL, NULL;
    co__hub_t *h = co__hub();
    co__hub_check(h);
    co_coro_t *c = coro_alloc();
    if (!c) return errno = ENOMEM, NULL;
    /* Every field set here, without a memset of the whole record (its
     * `rep stos` was a tenth of a spawn).  park_seq is kept and bumped:
     * stale wake-ups aimed at the record's previous life stay stale. */
    c->park_seq++;
    co__fiber_prepare(&c->fiber, coro_entry, NULL); /* its stack comes when it first runs */
    c->fiber.kind = CO__K_CORO;
    c->fiber.cls = &coro_class;
    c->stack_req = stack_size;
    c->start_error = 0;
    c->compact = NULL;
    c->hub = h;
    c->resume = &c->fiber; /* compact: the copier (co__compact_init) */
    if (CO__UNLIKELY(opts && opts->compact ? opts->compact == CO_COMPACT_YES : co__compact_default())) {
        int e = co__compact_init(h, c, stack_size);
        if (e) {
            pool_push(&tcache, c);
            ntcache++;
            return errno = e, NULL;
        }
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
            if (c->compact) co__compact_free(c);
            pool_push(&tcache, c);
            ntcache++;
            return errno = ENOMEM, NULL;
        }
    } else {
        c->name = NULL;
        c->name_buf[0] = '\0';
    }
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
    c->joiners.list = (co__list_t){0};
    c->group = NULL;
    co__list_push(&h->all, &c->all);
    __atomic_store_n(&h->ncoros, h->ncoros + 1, __ATOMIC_RELAXED); /* the monitor reads it */
    h->local_refs++;
    c->state = CO__C_NEW;
    co__ready(h, c);
    return c;
}

/* ------------------------------------------------ cross-thread parts */

/* A coroutine of another hub waits for c to finish: a watch on c's
 * watcher stack, answered by c's reap as a message to the waiter's hub. */
typedef struct watch_msg {
    co__msg_t msg;
    co_coro_t *waiter; /* referenced */
    co__hub_t *hub;    /* the waiter's; referenced until sent */
    uint64_t seq;      /* the waiter's park */
} watch_msg_t;

/* On the waiter's hub: the watched coroutine finished. */
static void watch_answered(co__hub_t *h, co__msg_t *m)
{
    watch_msg_t *w = (watch_msg_t *)m;
    co__wake(h, w->waiter, w->seq, 0);
    unref(w->waiter);
    free(w);
}

static void answer_watch(watch_msg_t *w)
{
    co__hub_t *to = w->hub;
    w->msg.handle = watch_answered;
    if (!co__hub_send(to, &w->msg)) {
        unref(w->waiter);
        free(w);
    }
    co__hub_unref(to);
}

/* Marks c done and answers other hubs' watchers: publishes the result and
 * closes the watcher stack in one step, so a watcher either got in before
 * (and is answered here) or sees DONE.  Safe before c's stack is released:
 * the running reference keeps the record until coro_released.  Once only
 * (a second call finds DONE). */
static void publish_done(co_coro_t *c)
{
    /* While the process has one thread nobody can push a watch between
     * this look and the store: no locked instruction on the common path. */
    if (co__single_threaded() && !atomic_load_explicit(&c->watchers, memory_order_relaxed)) {
        atomic_store_explicit(&c->watchers, CO__DONE, memory_order_release);
        return;
    }
    co__msg_t *w = atomic_exchange_explicit(&c->watchers, CO__DONE, memory_order_acq_rel);
    while (w && w != CO__DONE) {
        co__msg_t *n = w->next;
        answer_watch((watch_msg_t *)w);
        w = n;
    }
}

/* The fiber layer's call after a coroutine's stack was released (on the
 * next stack): marks it done if finish() did not (coroutines dropped at
 * thread exit), drops its lock-owner record and the running reference. */
static void coro_released(co_fiber_t *f)
{
    co_coro_t *c = (co_coro_t *)f;
    if (!co__done(c)) publish_done(c); /* ended() did, unless dropped at thread exit */
    if (c->actor) {
        co__coro_drop_actor(c->actor);
        c->actor = NULL;
    }
    if (c->compact) co__compact_free(c);
    unref(c);
}

/* For overflow reports, from a signal handler: no stdio. */
static void coro_describe(const co_fiber_t *f, co__line_t *l)
{
    const co_coro_t *c = (const co_coro_t *)f;
    co__line_str(l, "coroutine #");
    co__line_uint(l, c->id, 10);
    if (c->name) {
        co__line_str(l, " \"");
        co__line_str(l, c->name);
        co__line_str(l, "\"");
    }
}

static const co__fiber_class_t coro_class = {.released = coro_released, .describe = coro_describe};

/* A kill from another thread, handled on the victim's hub. */
typedef struct kill_msg {
    co__msg_t msg;
    co_coro_t *co; /* referenced */
} kill_msg_t;

static void kill_arrived(co__hub_t *h, co__msg_t *m)
{
    co_coro_t *c = ((kill_msg_t *)m)->co;
    if (c->state == CO__C_PARKED && c->cancellable) co__wake(h, c, c->park_seq, ECANCELED);
    unref(c);
    free(m);
}

/* ------------------------------------------------------------- waits */

static void check_handle(const co_coro_t *c, const char *fn)
{
    CO__CHECK(c != NULL, "%s: NULL coroutine", fn);
    unsigned char st = atomic_load_explicit(&c->handle, memory_order_relaxed);
    CO__CHECK(st == CO__H_OWNED,
              "%s: coroutine #%" PRIu64 " was already %s (a handle is invalid once joined or detached)", fn, c->id,
              st == CO__H_DETACHED ? "detached" : "joined");
}

/* Waits until c is done.  0 or an errno value. */
static __attribute__((noinline)) int wait_done_slow(co_coro_t *c, int64_t deadline, const char *what)
{
    co__hub_t *h = co__hub();
    co_coro_t *self = h->current;
    if (c == self) return EDEADLK;
    if (c->is_main) return EINVAL;
    if (c->hub == h) {
        for (;;) {
            co__parknode_t local, *node = co__parknode_get(&local, self);
            co__parkq_push(&c->joiners, node, self);
            self->wait_obj = c;
            int r = co__park(h, deadline, what, CO__BY_HUB, true);
            self->wait_obj = NULL;
            co__parkq_remove(&c->joiners, node);
            if (r) return r;
            if (c->state == CO__C_DONE) return 0;
        }
    }
    /* Another thread's coroutine: leave a watch on it; its reap sends the
     * answer to our inbox.  Its own hub need not be running for this. */
    for (;;) {
        if (co__expired(deadline)) return ETIMEDOUT;
        if (atomic_load_explicit(&self->killed, memory_order_relaxed)) return ECANCELED;
        watch_msg_t *w = malloc(sizeof *w);
        if (!w) return ENOMEM;
        *w = (watch_msg_t){.waiter = self, .hub = h, .seq = self->park_seq};
        ref(self);
        co__hub_ref(h);
        co__msg_t *head = atomic_load_explicit(&c->watchers, memory_order_acquire);
        do {
            if (head == CO__DONE) break;
            w->msg.next = head;
        } while (!atomic_compare_exchange_weak_explicit(&c->watchers, &head, &w->msg, memory_order_release,
                                                        memory_order_acquire));
        if (head == CO__DONE) {
            unref(self);
            co__hub_unref(h);
            free(w);
            return 0;
        }
        self->wait_obj = c;
        int r = co__park(h, deadline, what, CO__BY_MESSAGE, true);
        self->wait_obj = NULL;
        if (r) {
            /* The watch stays on c until c ends, aimed at this park.  A park
             * that failed at once (the deadline passed since the check
             * above, or a kill came meanwhile) has not bumped park_seq:
             * bump it, or the answer would end the caller's next park as
             * if it were that park's own wake-up. */
            self->park_seq++;
            return r;
        }
        if (co__done(c)) return 0;
    }
}

/* Done already (the common case of a join): no frame is set up. */
static inline int wait_done(co_coro_t *c, int64_t deadline, const char *what)
{
    return CO__LIKELY(co__done(c)) ? 0 : wait_done_slow(c, deadline, what);
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
    CO__CHECK(was == CO__H_OWNED,
              "%s: coroutine #%" PRIu64 " was already %s (a handle is invalid once joined or detached)", fn, c->id,
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
    int never_ran = c->start_error;
    release_handle(c, CO__H_JOINED, "co_join");
    return never_ran ? (errno = never_ran, -1) : 0;
}

int co_joinall(co_coro_t *const *cs, size_t n, int64_t deadline, void **results)
{
    CO__CHECK(cs != NULL || n == 0, "co_joinall: NULL array of %zu coroutines", n);
    /* One pass that checks and waits (a million records are not read
     * twice), then one that joins: none is joined unless all are done. */
    enum { AHEAD = 8 }; /* records are read far apart: fetch them ahead */
    for (size_t i = 0; i < n; i++) {
        if (i + AHEAD < n) __builtin_prefetch(cs[i + AHEAD]);
        check_handle(cs[i], "co_joinall");
        int r = wait_done(cs[i], deadline, "co_joinall");
        if (r) return errno = r, -1;
    }
    int never_ran = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + AHEAD < n) __builtin_prefetch(cs[i + AHEAD], 1);
        if (results) results[i] = cs[i]->result;
        if (cs[i]->start_error) never_ran = cs[i]->start_error;
        release_handle(cs[i], CO__H_JOINED, "co_joinall");
    }
    return never_ran ? (errno = never_ran, -1) : 0;
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
              "co_kill: coroutine #%" PRIu64 " was already joined (a handle is invalid once joined)", c->id);
    co__hub_t *h = co__tls.hub;
    bool local = h && c->hub == h;
    /* Killing a finished coroutine does nothing, not even co_killed. */
    if (co__done(c) || (local && c->state == CO__C_DONE)) return;
    atomic_store_explicit(&c->killed, true, memory_order_relaxed);
    if (local) {
        if (c->state == CO__C_PARKED && c->cancellable) co__wake(h, c, c->park_seq, ECANCELED);
        return;
    }
    kill_msg_t *m = malloc(sizeof *m);
    CO__CHECK(m != NULL, "co_kill: out of memory for a cross-thread message");
    *m = (kill_msg_t){.msg.handle = kill_arrived, .co = c};
    ref(c);
    if (!co__hub_send(c->hub, &m->msg)) {
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
    if (co__expired(deadline)) return co_yield_now();
    int r = co__park(h, deadline, "co_sleep", CO__BY_HUB, true);
    if (r == ETIMEDOUT && co__expired(deadline)) return 0; /* else a timeout scope cut it short (scope.h) */
    return errno = r ? r : EINTR, -1;
}

int co_sleep_ms(int64_t ms)
{
    /* At least ms of real time: co_now() counts whole milliseconds, so
     * now + ms could end up to 1 ms early; one tick more. */
    return ms <= 0 ? co_yield_now() : co_sleep_until(co__deadline_after(ms == INT64_MAX ? ms : ms + 1));
}

co_coro_t *co_current(void)
{
    return co__hub()->current;
}

uint64_t co_id(const co_coro_t *c)
{
    CO__CHECK(c != NULL, "co_id: NULL coroutine");
    return c->id;
}

const char *co_name(const co_coro_t *c)
{
    static CO__TLS __thread char buf[32];
    CO__CHECK(c != NULL, "co_name: NULL coroutine");
    if (c->name) return c->name;
    snprintf(buf, sizeof buf, "#%" PRIu64, c->id);
    return buf;
}

/* ------------------------------------------------- main coroutines */

void co__coro_init_main(co_coro_t *m, co__hub_t *h, co_fiber_t *thread_fiber)
{
    m->is_main = true;
    m->hub = h;
    m->state = CO__C_RUNNING;
    m->resume = thread_fiber;
    m->timer.index = SIZE_MAX;
    m->id = co__new_id();
    atomic_init(&m->refs, 1);
    strcpy(m->name_buf, "main");
    m->name = m->name_buf;
}

/* ------------------------------------------------------- thread exit */

#define EACH_CORO(c, list)                                                                                             \
    for (co__lnode_t *n_ = (list)->head; n_; n_ = n_->next)                                                            \
        for (co_coro_t *c = CO__CONTAINER(n_, co_coro_t, all); c; c = NULL)

void co__coro_exit_all(co__hub_t *h)
{
    while (h->ncoros > 0) {
        EACH_CORO(c, &h->all)
        {
            atomic_store_explicit(&c->killed, true, memory_order_relaxed);
            if (c->state == CO__C_PARKED && c->cancellable) co__wake(h, c, c->park_seq, ECANCELED);
        }
        if (co__park(h, -1, "thread exit", CO__BY_HUB, false) != EDEADLK) continue;
        /* What is left can never finish: drop it without unwinding.  All
         * bookkeeping first (wait-list nodes live on these stacks), then
         * the stacks go. */
        EACH_CORO(c, &h->all) c->state = CO__C_DONE;
        EACH_CORO(c, &h->all)
        {
            if (c->group) co__group_member_done(c);
            if (co__timer_armed(&c->timer)) co__timers_remove(&h->timers, &c->timer);
        }
        co__list_t stuck = h->all;
        h->all = (co__list_t){0};
        h->ncoros = 0;
        co__lnode_t *n;
        while ((n = co__list_pop(&stuck))) {
            co_coro_t *c = CO__CONTAINER(n, co_coro_t, all);
            co__fiber_release(&c->fiber);
            coro_released(&c->fiber);
        }
    }
    if (h->main.actor) {
        co__coro_drop_actor(h->main.actor);
        h->main.actor = NULL;
    }
    co__compact_hub_exit(h); /* no compact coroutine is left */
}

/* ------------------------------------------------------------ fork */

void co__coro_fork_prepare(void)
{
    pthread_mutex_lock(&pool_lock);
}

void co__coro_fork_parent(void)
{
    pthread_mutex_unlock(&pool_lock);
}

void co__coro_fork_child(void)
{
    pthread_mutex_unlock(&pool_lock);
}
