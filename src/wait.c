/* Waiting on shared objects: the one protocol every lock, semaphore,
 * event, condition, barrier, queue, fd and offloaded job uses (see the
 * contract in wait.h).
 *
 * Three kinds of waiter, one node type:
 *  - a coroutine whose waker runs on the same hub: co__wake from
 *    co__grant itself, no atomics beyond the object's spin lock;
 *  - a coroutine of another thread's hub: the waker pushes the GRANT
 *    message embedded in the node onto that hub's inbox.  The node lives
 *    on the waiter's stack, so a waiter that was granted while timing out
 *    stays until its hub has handled the message;
 *  - a thread without a hub: a futex on the node's `done` word. */
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

#include "scope.h"
#include "compact.h"
#include "sys.h"
#include "wait.h"

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
            for (unsigned i = 0; i < backoff; i++) co__cpu_relax();
            if (backoff < 64) backoff <<= 1;
        } else {
            /* The holder was preempted mid-section: let it run. */
            sched_yield();
        }
    }
}

/* ---------------------------------------------------------- wait lists */

/* On the waiter's hub: a grant made on another thread arrived. */
static void grant_arrived(co__hub_t *h, co__msg_t *m)
{
    co__waiter_t *w = CO__CONTAINER(m, co__waiter_t, msg);
    w->delivered = true;
    co__wake(h, w->co, w->seq, 0);
}

void co__wake_list_slow(co__wlist_t *wl)
{
    co__snode_t *n = wl->head;
    while (n) {
        co__waiter_t *w = CO__CONTAINER(n, co__waiter_t, wnode);
        /* Read everything first: once `done` is set a thread waiter may
         * return and its stack (this node) be reused. */
        co__snode_t *next = n->next;
        co_coro_t *co = w->co;
        co__hub_t *h = w->hub;
        if (!co) {
            int wake_fd = w->wake_fd;
            /* A waiter still spinning needs no system call. */
            if (__atomic_exchange_n(&w->done, W_DONE, __ATOMIC_ACQ_REL) == W_SLEEPING)
                co__futex_wake(&w->done); /* a stale address at worst: harmless */
            if (wake_fd >= 0) {           /* it sleeps in poll(2): ring it (a late ring is a spurious wake-up) */
                uint64_t one = 1;
                ssize_t r = co__sys_write(wake_fd, &one, sizeof one);
                (void)r;
            }
        } else { /* another hub's coroutine (co__grant woke this hub's own) */
            /* The waiter stays until its hub handles this message, so the
             * node and the hub outlive the push; the reference keeps the
             * hub (its eventfd) alive for the doorbell after it. */
            w->msg = (co__msg_t){.handle = grant_arrived};
            __atomic_store_n(&w->done, W_DONE, __ATOMIC_RELEASE);
            co__hub_ref(h);
            bool sent = co__hub_send(h, &w->msg);
            CO__CHECK(sent, "a waiter's hub exited while it waited");
            co__hub_unref(h);
        }
        n = next;
    }
    wl->head = wl->tail = NULL;
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
        if (co__expired(deadline)) return ETIMEDOUT;
        int r = co__futex_wait(&w->done, W_SLEEPING, deadline);
        if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) == W_DONE) return 0;
        if (r == ETIMEDOUT) return ETIMEDOUT;
    }
}

/* The caller, granted while its own wait was ending, collects the grant. */
void co__await_grant(co__waiter_t *w)
{
    if (!w->co) {
        /* Say W_SLEEPING before sleeping: the waker calls futex_wake only
         * for a sleeper that said so (sleeping on W_WAITING missed a wake
         * that came in between, and the thread slept for ever). */
        unsigned expect = W_WAITING;
        __atomic_compare_exchange_n(&w->done, &expect, W_SLEEPING, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
        while (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) != W_DONE) co__futex_wait(&w->done, W_SLEEPING, -1);
        return;
    }
    if (!w->remote) return; /* woken on this thread: complete already */
    co__hub_t *h = w->hub;
    while (!w->delivered) {
        w->seq = w->co->park_seq;
        co__park(h, -1, "a grant in flight", CO__BY_MESSAGE, false);
    }
}

static void report_forever(const char *what)
{
    fprintf(stderr,
            "cogent: deadlock: thread %d waits in %s with no deadline, and it is the only thread: nothing can "
            "wake it; failing with EDEADLK\n",
            (int)syscall(SYS_gettid), what);
}

int co__wait_block(co__waiter_t *w, unsigned *spin, co__list_t *l, int64_t deadline, const char *what, const void *obj,
                   int waker, bool cancellable)
{
    int r;
    co__hub_t *h = w->hub;
    if (!w->linked) { /* granted before we got here (conditions) */
        co__spin_unlock(spin);
        co__await_grant(w);
        return 0;
    }
    if (!w->co) {
        if (cancellable) deadline = co__scoped(deadline); /* timeout scopes (scope.h) */
        if (waker == CO__BY_THREADS && co__no_deadline(deadline) && !co__multithreaded()) {
            co__waiters_remove(l, w);
            report_forever(what);
            return EDEADLK;
        }
        co__spin_unlock(spin);
        r = thread_sleep(w, deadline);
        if (r == 0) return 0;
    } else {
        co_coro_t *self = w->co;
        co__compact_check(h, obj, what);
        self->wait_obj = obj;
        co__spin_unlock(spin);
        r = co__park(h, deadline, what, waker, cancellable);
        self->wait_obj = NULL;
        if (r == 0) {
            /* Only a grant wakes this park with 0. */
            CO__CHECK(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE), "%s: woken without a grant", what);
            return 0;
        }
    }
    co__spin_lock(spin);
    if (w->linked) {
        co__waiters_remove(l, w);
        return r;
    }
    co__spin_unlock(spin);
    co__await_grant(w);
    return 0;
}
