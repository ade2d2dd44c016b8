/* Waiting on futex words in memory shared between processes, and robust
 * locks built on glibc's robust process-shared mutexes (pshared.h).
 *
 * A coroutine waiting on a shared word must not block its thread.  It
 * joins a "slot" -- a (word, value) pair -- of a helper thread and parks
 * (its node is a co__waiter_t on the slot's list, so the waiting protocol
 * does the rest: timeouts, kills, a grant from another thread).  Each
 * helper sleeps in futex_waitv(2) on its own private "kick" word plus up
 * to 127 slots; whenever it wakes it grants the waiters of every slot
 * whose word changed (or that the kernel says it was woken for), drops
 * slots nobody waits on any more, and sleeps again.  Coroutines of one
 * process waiting on the same word share one slot: a thousand consumers
 * of one queue cost one entry.  The cost of a wake-up that crosses
 * processes to a coroutine: the waker's FUTEX_WAKE, the helper's wake-up,
 * and a message to the coroutine's hub (an eventfd write), about three
 * times a thread's plain futex wake-up.
 *
 * The lock word of a glibc robust mutex is its first int: the owner's
 * thread id, FUTEX_WAITERS when someone sleeps on it, FUTEX_OWNER_DIED
 * once the kernel found its owner dead.  A caller that finds the mutex
 * taken sets FUTEX_WAITERS itself (as glibc's own waiters do), so the
 * owner's unlock wakes the word, and waits on it like on any shared word
 * (a thread without a hub too: every acquisition is a trylock, which is
 * also what the sanitizers follow); after taking the mutex it sets the
 * bit again, as glibc does for a woken waiter, so that the next unlock
 * wakes the next sleeper. */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "helper.h"
#include "hub.h"
#include "process.h"
#include "pshared.h"
#include "wait.h"

#ifndef FUTEX_32
#define FUTEX_32 2
#endif
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

struct waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};

#define SLOTS       127 /* futex_waitv takes 128 words: the kick and these */
#define MAX_HELPERS 256

typedef struct slot {
    const unsigned *addr; /* NULL: free */
    unsigned val;
    co__list_t waiters; /* co__waiter_t (spin) */
} slot_t;

typedef struct helper {
    unsigned kick; /* private futex word: bumped when a slot is added */
    bool running;
    unsigned nslots; /* slots in use */
    slot_t slot[SLOTS];
} helper_t;

static unsigned spin;                  /* helpers' slots and waiter lists */
static helper_t *helpers[MAX_HELPERS]; /* made on demand, never freed */
static unsigned nhelpers;              /* atomic */
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static int use_waitv = -1;        /* -1: not known yet */
static unsigned capacity = SLOTS; /* slots per helper: 1 without futex_waitv */

/* ------------------------------------------------------------ futexes */

static int futex_wait_shared(const unsigned *addr, unsigned val, int64_t deadline)
{
    struct timespec ts, *tp = NULL;
    if (!co__no_deadline(deadline)) {
        if (deadline < 0) return ETIMEDOUT;
        ts.tv_sec = deadline / 1000;
        ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
        tp = &ts;
    }
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, tp, NULL, FUTEX_BITSET_MATCH_ANY);
    return r < 0 && errno == ETIMEDOUT ? ETIMEDOUT : 0;
}

void co__pwake(const unsigned *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

void co__pwake_all(unsigned *seq)
{
    __atomic_add_fetch(seq, 1, __ATOMIC_RELEASE);
    co__pwake(seq, INT32_MAX);
}

static bool waitv_supported(void)
{
    int u = __atomic_load_n(&use_waitv, __ATOMIC_RELAXED);
    if (u >= 0) return u;
    const char *env = getenv("COGENT_FUTEX_WAITV");
    bool ok = !(env && !strcmp(env, "0"));
    if (ok) {
        /* A word that does not hold the value: EAGAIN at once if the call
         * exists. */
        unsigned w = 1;
        struct waitv v = {.val = 0, .uaddr = (uintptr_t)&w, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG};
        ok = !(syscall(SYS_futex_waitv, &v, 1, 0, NULL, CLOCK_MONOTONIC) < 0 && errno == ENOSYS);
    }
    capacity = ok ? SLOTS : 1;
    __atomic_store_n(&use_waitv, ok, __ATOMIC_RELEASE);
    return ok;
}

/* ------------------------------------------------------------ helpers */

/* Grants every waiter of s and frees it.  Spin lock held. */
static void slot_grant(helper_t *h, slot_t *s, co__wlist_t *wl)
{
    while (!co__list_empty(&s->waiters)) co__grant(&s->waiters, co__waiters_first(&s->waiters), 0, NULL, wl);
    s->addr = NULL;
    h->nslots--;
}

static void *helper_main(void *arg)
{
    helper_t *h = arg;
    struct waitv v[SLOTS + 1];
    const unsigned *woken = NULL; /* the word the kernel said it woke us for */
    for (;;) {
        co__wlist_t wl = {0};
        const unsigned *pass_on = NULL;
        co__spin_lock(&spin);
        unsigned n = 0;
        v[n++] = (struct waitv){.val = h->kick, .uaddr = (uintptr_t)&h->kick, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG};
        for (unsigned i = 0; i < capacity; i++) {
            slot_t *s = &h->slot[i];
            if (!s->addr) continue;
            if (co__list_empty(&s->waiters)) {
                /* Everyone left (timed out, killed).  A wake-up the kernel
                 * gave us for this word goes on to another sleeper. */
                if (s->addr == woken) pass_on = s->addr;
                s->addr = NULL;
                h->nslots--;
                continue;
            }
            if (__atomic_load_n(s->addr, __ATOMIC_ACQUIRE) != s->val || s->addr == woken) {
                slot_grant(h, s, &wl);
                continue;
            }
            v[n++] = (struct waitv){.val = s->val, .uaddr = (uintptr_t)s->addr, .flags = FUTEX_32};
        }
        co__spin_unlock(&spin);
        co__wake_list(&wl);
        if (pass_on) co__pwake(pass_on, 1);
        woken = NULL;
        if (use_waitv) {
            long r = syscall(SYS_futex_waitv, v, n, 0, NULL, CLOCK_MONOTONIC);
            if (r > 0 && (unsigned long)r < n) woken = (const unsigned *)(uintptr_t)v[r].uaddr;
        } else if (n == 1) {
            co__futex_wait(&h->kick, (unsigned)v[0].val, -1);
        } else {
            /* One word: a bounded sleep notices the slot emptying. */
            if (futex_wait_shared((const unsigned *)(uintptr_t)v[1].uaddr, (unsigned)v[1].val, co_now() + 50) == 0)
                woken = (const unsigned *)(uintptr_t)v[1].uaddr;
        }
    }
    return NULL;
}

/* A helper with room, starting one if all are full.  0 or an errno. */
static int need_room(void)
{
    pthread_mutex_lock(&start_mu);
    co__spin_lock(&spin);
    unsigned n = __atomic_load_n(&nhelpers, __ATOMIC_RELAXED);
    bool room = false;
    for (unsigned i = 0; i < n && !room; i++) room = helpers[i]->nslots < capacity && helpers[i]->running;
    co__spin_unlock(&spin);
    int e = 0;
    if (!room) {
        if (n == MAX_HELPERS) {
            e = EAGAIN;
        } else {
            helper_t *h = calloc(1, sizeof *h);
            if (!h) {
                e = ENOMEM;
            } else if ((e = co__helper_start("pwait", helper_main, h, 64 * 1024)) != 0) {
                free(h);
            } else {
                co__spin_lock(&spin);
                h->running = true;
                helpers[n] = h;
                __atomic_store_n(&nhelpers, n + 1, __ATOMIC_RELEASE);
                co__spin_unlock(&spin);
            }
        }
    }
    pthread_mutex_unlock(&start_mu);
    return e;
}

/* The slot for (addr, val): joined if some helper has it, else made in a
 * helper with room (kicked, so that it watches it).  Spin lock held.  NULL
 * if every helper is full. */
static slot_t *slot_for(const unsigned *addr, unsigned val, helper_t **kick)
{
    unsigned n = __atomic_load_n(&nhelpers, __ATOMIC_RELAXED);
    *kick = NULL;
    for (unsigned i = 0; i < n; i++) {
        helper_t *h = helpers[i];
        if (!h->running) continue;
        for (unsigned k = 0; k < capacity; k++)
            if (h->slot[k].addr == addr && h->slot[k].val == val) return &h->slot[k];
    }
    for (unsigned i = 0; i < n; i++) {
        helper_t *h = helpers[i];
        if (!h->running || h->nslots >= capacity) continue;
        for (unsigned k = 0; k < capacity; k++) {
            slot_t *s = &h->slot[k];
            if (s->addr) continue;
            s->addr = addr;
            s->val = val;
            s->waiters = (co__list_t){0};
            h->nslots++;
            *kick = h;
            return s;
        }
    }
    return NULL;
}

int co__pwait(const unsigned *addr, unsigned val, int64_t deadline, bool cancellable, const char *what)
{
    if (co__expired(deadline)) return ETIMEDOUT;
    /* Look again every CO__PWAIT_RECHECK ms whatever happens. */
    int64_t until = co__deadline_after(CO__PWAIT_RECHECK);
    bool capped = co__no_deadline(deadline) || until < deadline;
    if (capped) deadline = until;
    co__hub_t *hub = co__tls.hub;
    if (!hub) {
        int r = futex_wait_shared(addr, val, deadline);
        return r == ETIMEDOUT && capped ? 0 : r;
    }
    waitv_supported();
    for (;;) {
        co__spin_lock(&spin);
        helper_t *kick;
        slot_t *s = slot_for(addr, val, &kick);
        if (!s) {
            co__spin_unlock(&spin);
            int e = need_room();
            if (e) return e;
            continue;
        }
        co__waiter_t wl_, *w = co__waiter_get(&wl_); /* in a compact coroutine's record: its stack moves */
        co__waiters_push(&s->waiters, w);
        if (kick) { /* a new slot: the helper must watch it (a system call under the spin lock, new slots only) */
            __atomic_add_fetch(&kick->kick, 1, __ATOMIC_RELEASE);
            co__futex_wake(&kick->kick);
        }
        /* Nobody in this process may be able to wake it, but another
         * process can, any time: never a deadlock. */
        int r = co__wait_block(w, &spin, &s->waiters, deadline, what, addr, CO__BY_MESSAGE, cancellable);
        if (r) co__spin_unlock(&spin); /* left the slot; the helper drops it if it is empty */
        return r == ETIMEDOUT && capped ? 0 : r;
    }
}

/* ---------------------------------------------------------------- fork */

void co__pwait_fork_prepare(void)
{
    pthread_mutex_lock(&start_mu);
    co__spin_lock(&spin);
}

void co__pwait_fork_parent(void)
{
    co__spin_unlock(&spin);
    pthread_mutex_unlock(&start_mu);
}

/* The helpers are gone.  Waiters of other threads' hubs are gone too;
 * the forking thread's own (a plain fork: its hub and coroutines live on)
 * stay, and their helpers start again. */
void co__pwait_fork_child(void)
{
    spin = 0;
    pthread_mutex_unlock(&start_mu); /* taken by this thread in prepare */
    co__hub_t *hub = co__tls.hub;
    unsigned n = nhelpers;
    for (unsigned i = 0; i < n; i++) {
        helper_t *h = helpers[i];
        h->running = false;
        for (unsigned k = 0; k < SLOTS; k++) {
            slot_t *s = &h->slot[k];
            if (!s->addr) continue;
            for (co__lnode_t *l = s->waiters.head, *next; l; l = next) {
                next = l->next;
                co__waiter_t *w = co__waiter_of(l);
                if (!hub || w->hub != hub) co__waiters_remove(&s->waiters, w);
            }
        }
        if (h->nslots && co__helper_start("pwait", helper_main, h, 64 * 1024) == 0) h->running = true;
    }
}

/* -------------------------------------------------------- robust locks */

void co__rmutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

/* The futex word of a glibc mutex: its first member. */
static unsigned *lock_word(pthread_mutex_t *m)
{
    return (unsigned *)(void *)m;
}

static int try_take(pthread_mutex_t *m)
{
    int r = pthread_mutex_trylock(m);
    if (r == EOWNERDEAD) pthread_mutex_consistent(m);
    return r;
}

int co__rmutex_lock(pthread_mutex_t *m, int64_t deadline, bool spin_first, bool cancellable, const char *what)
{
    int r = try_take(m);
    if (r != EBUSY) return r;
    if (deadline == 0) return EAGAIN;
    if (spin_first) {
        for (int i = 0; i < 200; i++) {
            if (i < 100)
                co__cpu_relax();
            else
                sched_yield();
            if (__atomic_load_n(lock_word(m), __ATOMIC_RELAXED) != 0) continue;
            if ((r = try_take(m)) != EBUSY) return r;
        }
    }
    unsigned *word = lock_word(m);
    for (;;) {
        unsigned v = __atomic_load_n(word, __ATOMIC_RELAXED);
        if (v == 0 || (v & FUTEX_OWNER_DIED)) {
            if ((r = try_take(m)) != EBUSY) break;
            continue;
        }
        if (!(v & FUTEX_WAITERS) &&
            !__atomic_compare_exchange_n(word, &v, v | FUTEX_WAITERS, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            continue;
        r = co__pwait(word, v | FUTEX_WAITERS, deadline, cancellable, what);
        if (r) {
            /* We may have taken the wake-up meant for the next sleeper:
             * hand it on (a spurious wake-up at worst). */
            if (__atomic_load_n(word, __ATOMIC_RELAXED) & FUTEX_WAITERS) co__pwake(word, 1);
            return r;
        }
        if ((r = try_take(m)) != EBUSY) break;
    }
    /* Taken after a wait: the sleepers' bit went with the unlock that woke
     * us; put it back so that our unlock wakes the next one. */
    __atomic_fetch_or(word, FUTEX_WAITERS, __ATOMIC_RELAXED);
    return r;
}

bool co__rmutex_enter(pthread_mutex_t *m, const char *what)
{
    /* Not cancellable: a kill must not leave an object half-changed, and
     * the wait is bounded by the owner's few instructions (or its death). */
    int r = co__rmutex_lock(m, -1, true, false, what);
    if (r == EAGAIN) r = pthread_mutex_lock(m); /* no helper thread: block the thread, briefly */
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return true;
    }
    CO__CHECK(r == 0, "%s: a shared object's lock failed: %s", what, strerror(r));
    return false;
}

void co__rmutex_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}

co__powner_t co__powner_self(void)
{
    co__hub_t *h = co__tls.hub;
    /* A thread's main code is coroutine 0 whether or not its hub exists
     * yet: one made between an acquire and its release (a first sleep)
     * must not change who holds the lock. */
    return (co__powner_t){
        .pid = co__getpid(), .tid = co__gettid(), .co = h && !h->current->is_main ? h->current->id : 0};
}
