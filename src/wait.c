/* Waiting on sync objects: the one protocol every lock, semaphore, event,
 * condition, barrier and queue uses (see the contract in internal.h).
 *
 * Three kinds of waiter, one node type:
 *  - a coroutine whose waker runs on the same hub: co__wake, no atomics
 *    beyond the object's spin lock;
 *  - a coroutine of another thread's hub: the waker pushes the GRANT
 *    message embedded in the node onto that hub's inbox.  The node lives
 *    on the waiter's stack, so a waiter that was granted while timing out
 *    stays until its hub has handled the message;
 *  - a thread without a hub: a futex on the node's `done` word.
 *
 * Owners of locks are actors: one record per coroutine that ever took a
 * lock, one per hub-less thread.  Records are pooled and never freed, so
 * a report that follows a stale owner pointer reads a record, not freed
 * memory. */
#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* ----------------------------------------------------------- spin lock */

void co__spin_wait(unsigned *l)
{
    /* Exponential backoff: under steady contention (a producer and a
     * consumer on two cores) fewer attempts mean fewer cache-line
     * transfers, and the holder finishes sooner. */
    unsigned backoff = 1;
    for (unsigned n = 0;; n++) {
        if (!__atomic_load_n(l, __ATOMIC_RELAXED) && !__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) return;
        if (n < 32) {
            for (unsigned i = 0; i < backoff; i++) cpu_relax();
            if (backoff < 64) backoff <<= 1;
        } else {
            /* The holder was preempted mid-section: let it run. */
            sched_yield();
        }
    }
}

/* --------------------------------------------------------------- futex */

void co__futex_wake(unsigned *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

int co__futex_wait(unsigned *addr, unsigned val, int64_t deadline)
{
    struct timespec ts, *tp = NULL;
    if (deadline >= 0) {
        ts.tv_sec = deadline / 1000;
        ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
        tp = &ts;
    }
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET_PRIVATE, val, tp, NULL, FUTEX_BITSET_MATCH_ANY);
    if (r < 0 && errno == ETIMEDOUT) return ETIMEDOUT;
    return 0;
}

/* -------------------------------------------------------------- actors */

static pthread_mutex_t actor_lock = PTHREAD_MUTEX_INITIALIZER;
static co__actor_t *actor_pool;
static pthread_key_t actor_key;
static pthread_once_t actor_once = PTHREAD_ONCE_INIT;
static bool multithreaded; /* sticky: see co__multithreaded */
unsigned co__helper_threads;

static void actor_thread_exit(void *a)
{
    co__tls.actor = NULL;
    co__actor_release(a);
}

static void make_actor_key(void)
{
    CO__CHECK(pthread_key_create(&actor_key, actor_thread_exit) == 0, "pthread_key_create failed");
}

static co__actor_t *actor_new(co_coro_t *co)
{
    pthread_mutex_lock(&actor_lock);
    co__actor_t *a = actor_pool;
    if (a) actor_pool = a->next;
    pthread_mutex_unlock(&actor_lock);
    if (!a && !(a = calloc(1, sizeof *a))) return NULL;
    a->next = NULL;
    a->co = co;
    a->tid = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&a->blocked_on, NULL, __ATOMIC_RELAXED);
    a->wfile = NULL;
    a->wline = 0;
    a->held = NULL;
    a->nheld = 0;
    a->abandoned = false;
    return a;
}

void co__actor_release(co__actor_t *a)
{
    if (!a) return;
    if (a->nheld) {
        char who[128];
        fprintf(stderr, "cogent: %s ended holding %zu lock%s; %s locked\n", co__actor_describe(a, who, sizeof who),
                a->nheld, a->nheld == 1 ? "" : "s", a->nheld == 1 ? "it stays" : "they stay");
        a->co = NULL;
        a->abandoned = true;
        return;
    }
    free(a->held);
    a->held = NULL;
    a->co = NULL;
    pthread_mutex_lock(&actor_lock);
    a->next = actor_pool;
    actor_pool = a;
    pthread_mutex_unlock(&actor_lock);
}

co__actor_t *co__actor_adopt_thread(co_coro_t *main_co)
{
    co__actor_t *a = co__tls.actor;
    if (!a) return NULL;
    /* The thread's locks stay its own once it has a hub: the record now
     * belongs to its main coroutine (released with the hub). */
    co__tls.actor = NULL;
    pthread_setspecific(actor_key, NULL);
    a->co = main_co;
    return a;
}

void co__wait_fork_child(void)
{
    __atomic_store_n(&multithreaded, false, __ATOMIC_RELAXED); /* the child has one thread */
    pthread_mutex_init(&actor_lock, NULL);
}

co__actor_t *co__actor_self_slow(void)
{
    co__hub_t *h = co__tls.hub;
    if (h) {
        co_coro_t *c = h->current;
        if (CO__LIKELY(c->actor != NULL)) return c->actor;
        return c->actor = actor_new(c);
    }
    if (CO__LIKELY(co__tls.actor != NULL)) return co__tls.actor;
    pthread_once(&actor_once, make_actor_key);
    co__tls.actor = actor_new(NULL);
    if (co__tls.actor) pthread_setspecific(actor_key, co__tls.actor);
    return co__tls.actor;
}

const char *co__actor_describe(const co__actor_t *a, char *buf, size_t n)
{
    if (!a)
        snprintf(buf, n, "nobody");
    else if (a->abandoned)
        snprintf(buf, n, "a coroutine or thread that ended (thread %d)", (int)a->tid);
    else if (a->co && a->co->is_main)
        snprintf(buf, n, "the main coroutine of thread %d", (int)a->tid);
    else if (a->co && a->co->name)
        snprintf(buf, n, "coroutine '%s' (#%" PRIu64 ") of thread %d", a->co->name, a->co->id, (int)a->tid);
    else if (a->co)
        snprintf(buf, n, "coroutine #%" PRIu64 " of thread %d", a->co->id, (int)a->tid);
    else
        snprintf(buf, n, "thread %d", (int)a->tid);
    return buf;
}

/* ----------------------------------------------------- process threads */

bool co__multithreaded(void)
{
    if (__atomic_load_n(&multithreaded, __ATOMIC_RELAXED)) return true;
    /* /proc/self/task holds one directory per thread (plus . and ..).
     * Threads that never wake anyone are not counted: cogent's own
     * helpers (dumper, monitor) and ThreadSanitizer's background thread. */
    struct stat st;
    unsigned long helpers = __atomic_load_n(&co__helper_threads, __ATOMIC_RELAXED) + (CO_TSAN ? 1 : 0);
    if (stat("/proc/self/task", &st) < 0 || st.st_nlink > 3 + helpers) {
        __atomic_store_n(&multithreaded, true, __ATOMIC_RELAXED);
        return true; /* unknown counts as "someone else might wake it" */
    }
    return false;
}

/* ---------------------------------------------------------- wait lists */

void co__wake_list(co__wlist_t *wl)
{
    co__waiter_t *w = wl->head;
    while (w) {
        /* Read everything first: once `done` is set a thread waiter may
         * return and its stack (this node) be reused. */
        co__waiter_t *next = w->wnext;
        co_coro_t *co = w->co;
        co__hub_t *h = w->hub;
        if (!co) {
            /* A waiter still spinning needs no system call. */
            if (__atomic_exchange_n(&w->done, W_DONE, __ATOMIC_ACQ_REL) == W_SLEEPING)
                co__futex_wake(&w->done); /* a stale address at worst: harmless */
        } else if (!w->remote) {
            __atomic_store_n(&w->done, W_DONE, __ATOMIC_RELEASE);
            co__wake(h, co, w->seq, 0);
        } else {
            /* The waiter stays until its hub handles this message, so the
             * node and the hub outlive the push; the reference keeps the
             * hub (its eventfd) alive for the doorbell after it. */
            w->msg = (co__msg_t){.kind = CO__M_GRANT, .co = co, .ptr = w};
            __atomic_store_n(&w->done, W_DONE, __ATOMIC_RELEASE);
            atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
            bool sent = co__hub_send(h, &w->msg);
            CO__CHECK(sent, "a waiter's hub exited while it waited");
            co__hub_unref(h);
        }
        w = next;
    }
    wl->head = wl->tail = NULL;
}

void co__grant_delivered(co__hub_t *h, co__msg_t *m)
{
    co__waiter_t *w = m->ptr;
    w->delivered = true;
    co__wake(h, w->co, w->seq, 0);
}

/* A thread without a hub waits for its grant on the futex; it says so
 * (W_SLEEPING) so that a grant made before it got there costs the waker
 * no system call.  (Spinning first was measured: no gain for a producer
 * and a consumer on two cores, only burnt CPU.)  0 when granted,
 * ETIMEDOUT at the deadline. */
static int thread_sleep(co__waiter_t *w, int64_t deadline)
{
    unsigned expect = W_WAITING;
    if (!__atomic_compare_exchange_n(&w->done, &expect, W_SLEEPING, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return 0; /* granted just now */
    for (;;) {
        if (deadline >= 0 && deadline <= co_now()) return ETIMEDOUT;
        int r = co__futex_wait(&w->done, W_SLEEPING, deadline);
        if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) == W_DONE) return 0;
        if (r == ETIMEDOUT) return ETIMEDOUT;
    }
}

/* The caller, granted while its own wait was ending, collects the grant. */
void co__await_grant(co__waiter_t *w)
{
    if (!w->co) {
        unsigned v;
        while ((v = __atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) != W_DONE) co__futex_wait(&w->done, v, -1);
        return;
    }
    if (!w->remote) return; /* woken on this thread: complete already */
    co__hub_t *h = w->hub;
    while (!w->delivered) {
        w->seq = w->co->park_seq;
        h->nexternal++;
        co__park(h, -1, "a grant in flight", false);
        h->nexternal--;
    }
}

static void report_forever(const char *what)
{
    fprintf(stderr,
            "cogent: deadlock: thread %d waits in %s with no deadline, and it is the only thread: nothing can "
            "wake it; failing with EDEADLK\n",
            (int)syscall(SYS_gettid), what);
}

int co__wait_block(co__waiter_t *w, unsigned *spin, co__waiter_t **head, co__waiter_t **tail, int64_t deadline,
                   const char *what, const void *obj, bool cancellable)
{
    int r;
    co__hub_t *h = w->hub;
    if (!w->linked) { /* granted before we got here (conditions) */
        co__spin_unlock(spin);
        co__await_grant(w);
        return 0;
    }
    if (!w->co) {
        if (deadline < 0 && !co__multithreaded()) {
            co__wq_remove(head, tail, w);
            report_forever(what);
            return EDEADLK;
        }
        co__spin_unlock(spin);
        r = thread_sleep(w, deadline);
        if (r == 0) return 0;
    } else {
        co_coro_t *self = w->co;
        self->wait_obj = obj;
        co__spin_unlock(spin);
        h->nsync++;
        r = co__park(h, deadline, what, cancellable);
        h->nsync--;
        self->wait_obj = NULL;
        if (r == 0) {
            /* Only a grant wakes this park with 0. */
            CO__CHECK(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE), "%s: woken without a grant", what);
            return 0;
        }
    }
    co__spin_lock(spin);
    if (w->linked) {
        co__wq_remove(head, tail, w);
        return r;
    }
    co__spin_unlock(spin);
    co__await_grant(w);
    return 0;
}
