/* Locks and re-entrant locks, with deadlock detection.
 *
 * State word: the owner's actor pointer (see wait.c), or 0 when free,
 * with bit 0 set while someone waits.  Taking a free lock and releasing
 * one nobody waits for are one compare-and-swap each; everything else
 * goes through the spin lock and the wait list.  A release hands the lock
 * straight to the oldest waiter (FIFO, no barging), which is what makes
 * the order fair and a waiter's timeout race-free.
 *
 * Cycle detection.  An actor about to wait without a deadline publishes
 * the lock it waits for (`blocked_on`), then follows owner -> the lock
 * that owner waits for -> its owner ...; coming back to itself means the
 * wait would never end.  Publishing and checking happen under one global
 * spin lock, so of two actors closing a cycle at the same moment exactly
 * one sees it (the second) and fails; the other's wait then ends when the
 * loser gives its locks up.  (Without it both could see the cycle and
 * both fail.)  Only waits without a deadline take it: they are edges;
 * waits with a deadline end by themselves. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "lock.h"
#include "wait.h"

#define WAITERS  ((uintptr_t)1)
#define OWNER(s) ((co__actor_t *)((s) & ~WAITERS))

static inline uintptr_t state(const co_lock_t *l)
{
    return __atomic_load_n(&l->_state, __ATOMIC_ACQUIRE);
}

static void describe_lock(const co_lock_t *l, char *buf, size_t n)
{
    if (l->_name)
        snprintf(buf, n, "lock '%s' (%p)", l->_name, (const void *)l);
    else
        snprintf(buf, n, "lock %p", (const void *)l);
}

static void took(co_lock_t *l, co__actor_t *self, const char *file, int line)
{
    self->nheld++;
    __atomic_store_n(&l->_file, file, __ATOMIC_RELAXED);
    __atomic_store_n(&l->_line, line, __ATOMIC_RELAXED);
    if (CO__UNLIKELY(co__lockdep())) co__lockdep_acquired(self, l, file, line);
}

static void where(char *buf, size_t n, const char *file, int line)
{
    if (file)
        snprintf(buf, n, "%s:%d", file, line);
    else
        snprintf(buf, n, "an unknown place");
}

/* -------------------------------------------------------------- cycles */

static unsigned cycle_spin;

static bool closes_cycle(const co_lock_t *l, const co__actor_t *self)
{
    const co_lock_t *cur = l;
    for (int hops = 0; hops < 64; hops++) {
        co__actor_t *o = OWNER(__atomic_load_n(&cur->_state, __ATOMIC_SEQ_CST));
        if (!o) return false;
        if (o == self) return true;
        const co_lock_t *next = __atomic_load_n(&o->blocked_on, __ATOMIC_SEQ_CST);
        /* o waits on the lock it was just handed (it has not run since):
         * not waiting at all. */
        if (!next || next == cur) return false;
        cur = next;
    }
    return false;
}

static void report_cycle(const co_lock_t *l, const co__actor_t *self, const char *file, int line)
{
    char who[128], lk[128], at[160], at2[160];
    describe_lock(l, lk, sizeof lk);
    where(at, sizeof at, file, line);
    fprintf(stderr, "cogent: deadlock: waiting would close a cycle; failing this call with EDEADLK\n");
    fprintf(stderr, "  %s wants %s at %s\n", co__actor_describe(self, who, sizeof who), lk, at);
    const co_lock_t *cur = l;
    for (int hops = 0; hops < 64; hops++) {
        co__actor_t *o = OWNER(__atomic_load_n(&cur->_state, __ATOMIC_SEQ_CST));
        if (!o) break;
        describe_lock(cur, lk, sizeof lk);
        where(at, sizeof at, __atomic_load_n(&cur->_file, __ATOMIC_RELAXED),
              __atomic_load_n(&cur->_line, __ATOMIC_RELAXED));
        co__actor_describe(o, who, sizeof who);
        if (o == self) {
            fprintf(stderr, "  %s is held by %s (taken at %s)\n", lk, who, at);
            break;
        }
        const co_lock_t *next = __atomic_load_n(&o->blocked_on, __ATOMIC_SEQ_CST);
        if (!next) break;
        char nlk[128];
        describe_lock(next, nlk, sizeof nlk);
        where(at2, sizeof at2, o->wfile, o->wline);
        fprintf(stderr, "  %s is held by %s (taken at %s), which waits for %s at %s\n", lk, who, at, nlk, at2);
        cur = next;
    }
}

/* -------------------------------------------------------------- lock */

void co_lock_init(co_lock_t *l, const char *name)
{
    *l = (co_lock_t)CO_LOCK_INIT;
    l->_name = name;
}

int co_lock_destroy(co_lock_t *l)
{
    co__spin_lock(&l->_spin);
    bool busy = state(l) != 0 || !co__list_empty(&l->_waiters);
    co__spin_unlock(&l->_spin);
    if (busy) return errno = EBUSY, -1;
    if (co__lockdep()) co__lockdep_forget(l);
    return 0;
}

static int lock_slow(co_lock_t *l, co__actor_t *self, int64_t deadline, const char *file, int line, bool cancellable)
{
    co__spin_lock(&l->_spin);
    for (;;) {
        uintptr_t s = state(l);
        if (s == 0) {
            if (__atomic_compare_exchange_n(&l->_state, &s, (uintptr_t)self, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED)) {
                co__spin_unlock(&l->_spin);
                took(l, self, file, line);
                return 0;
            }
            continue;
        }
        if (deadline == 0) {
            co__spin_unlock(&l->_spin);
            return EAGAIN;
        }
        if (OWNER(s) == self) {
            co__spin_unlock(&l->_spin);
            char who[128], lk[128], at[160], at2[160];
            describe_lock(l, lk, sizeof lk);
            where(at, sizeof at, file, line);
            where(at2, sizeof at2, __atomic_load_n(&l->_file, __ATOMIC_RELAXED),
                  __atomic_load_n(&l->_line, __ATOMIC_RELAXED));
            fprintf(stderr,
                    "cogent: deadlock: %s takes %s at %s, but already holds it (taken at %s); failing with "
                    "EDEADLK\n",
                    co__actor_describe(self, who, sizeof who), lk, at, at2);
            return EDEADLK;
        }
        if ((s & WAITERS) ||
            __atomic_compare_exchange_n(&l->_state, &s, s | WAITERS, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            break;
    }
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    w->key = (int64_t)(intptr_t)self;
    co__waiters_push(&l->_waiters, w);
    if (co__no_deadline(deadline)) {
        self->wfile = file;
        self->wline = line;
        co__spin_lock(&cycle_spin);
        __atomic_store_n(&self->blocked_on, l, __ATOMIC_SEQ_CST);
        bool cycle = closes_cycle(l, self);
        if (cycle) __atomic_store_n(&self->blocked_on, NULL, __ATOMIC_SEQ_CST);
        co__spin_unlock(&cycle_spin);
        if (cycle) {
            co__waiters_remove(&l->_waiters, w);
            if (co__list_empty(&l->_waiters)) __atomic_fetch_and(&l->_state, ~WAITERS, __ATOMIC_RELAXED);
            co__spin_unlock(&l->_spin);
            report_cycle(l, self, file, line);
            __atomic_store_n(&self->blocked_on, NULL, __ATOMIC_SEQ_CST);
            return EDEADLK;
        }
    }
    int r = co__wait_block(w, &l->_spin, &l->_waiters, deadline, "co_lock_acquire", l, CO__BY_THREADS, cancellable);
    if (co__no_deadline(deadline)) __atomic_store_n(&self->blocked_on, NULL, __ATOMIC_SEQ_CST);
    if (r == 0) { /* handed over: the state names us already */
        took(l, self, file, line);
        return 0;
    }
    if (co__list_empty(&l->_waiters)) __atomic_fetch_and(&l->_state, ~WAITERS, __ATOMIC_RELAXED);
    co__spin_unlock(&l->_spin);
    return r;
}

/* Takes l for self.  0 or an errno value.  The swap is acquire-release:
 * it also publishes self's actor record to other threads' cycle checks,
 * which read it through the state word (free on x86, where every locked
 * instruction is a full barrier). */
static inline int lock_take(co_lock_t *l, co__actor_t *self, int64_t deadline, const char *file, int line,
                            bool cancellable)
{
    uintptr_t zero = 0;
    if (co__single_threaded()) {
        if (CO__LIKELY(__atomic_load_n(&l->_state, __ATOMIC_RELAXED) == 0)) {
            __atomic_store_n(&l->_state, (uintptr_t)self, __ATOMIC_RELAXED);
            took(l, self, file, line);
            return 0;
        }
    } else if (CO__LIKELY(__atomic_compare_exchange_n(&l->_state, &zero, (uintptr_t)self, false, __ATOMIC_ACQ_REL,
                                                      __ATOMIC_RELAXED))) {
        took(l, self, file, line);
        return 0;
    }
    return lock_slow(l, self, deadline, file, line, cancellable);
}

int co_lock_acquire_at(co_lock_t *l, int64_t deadline, const char *file, int line)
{
    co__actor_t *self = co__actor_self();
    if (CO__UNLIKELY(!self)) return errno = ENOMEM, -1;
    int r = lock_take(l, self, deadline, file, line, true);
    return r ? (errno = r, -1) : 0;
}

void co__lock_retake(co_lock_t *l)
{
    co__actor_t *self = co__actor_self();
    CO__CHECK(self != NULL, "out of memory retaking a lock");
    int r = lock_take(l, self, -1, NULL, 0, false);
    /* EDEADLK: taking it back would close a cycle (reported above), and
     * co_cond_wait must return holding it: no return is right. */
    CO__CHECK(r == 0, "co_cond_wait: %s",
              r == EDEADLK ? "retaking its lock would close a cycle of waits: a certain "
                             "deadlock (reported above); the program cannot go on"
                           : "retaking its lock failed");
}

static void lock_handoff(co_lock_t *l)
{
    co__spin_lock(&l->_spin);
    co__waiter_t *w = co__waiters_first(&l->_waiters);
    if (!w) { /* its waiters timed out meanwhile */
        __atomic_store_n(&l->_state, 0, __ATOMIC_RELEASE);
        co__spin_unlock(&l->_spin);
        return;
    }
    co__wlist_t wl = {0};
    co__actor_t *heir = (co__actor_t *)(intptr_t)w->key;
    /* It waits no longer: a cycle check must not follow it back here. */
    __atomic_store_n(&heir->blocked_on, NULL, __ATOMIC_SEQ_CST);
    uintptr_t next = (uintptr_t)heir | (w->node.next ? WAITERS : 0);
    __atomic_store_n(&l->_state, next, __ATOMIC_RELEASE);
    co__grant(&l->_waiters, w, 0, NULL, &wl);
    co__spin_unlock(&l->_spin);
    co__wake_list(&wl);
}

void co_lock_release(co_lock_t *l)
{
    co__actor_t *self = co__actor_self();
    CO__CHECK(self != NULL, "co_lock_release: out of memory for the caller's owner record");
    uintptr_t s = (uintptr_t)self;
    if (CO__UNLIKELY(co__lockdep())) co__lockdep_released(self, l);
    if (co__single_threaded()) {
        s = __atomic_load_n(&l->_state, __ATOMIC_RELAXED);
        if (CO__LIKELY(s == (uintptr_t)self)) {
            __atomic_store_n(&l->_state, 0, __ATOMIC_RELAXED);
            self->nheld--;
            return;
        }
    } else if (CO__LIKELY(__atomic_compare_exchange_n(&l->_state, &s, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED))) {
        self->nheld--;
        return;
    }
    if (OWNER(s) != self) {
        char who[128], owner[128], lk[128];
        describe_lock(l, lk, sizeof lk);
        co__panic("co_lock_release: %s releases %s, which is %s%s", co__actor_describe(self, who, sizeof who), lk,
                  OWNER(s) ? "held by " : "not held",
                  OWNER(s) ? co__actor_describe(OWNER(s), owner, sizeof owner) : "");
    }
    self->nheld--;
    lock_handoff(l);
}

bool co__lock_owned(const co_lock_t *l)
{
    co__actor_t *self = co__actor_self();
    return self && OWNER(state(l)) == self;
}

bool co_lock_locked(const co_lock_t *l)
{
    return state(l) != 0;
}

/* ------------------------------------------------------------- rlock */

void co_rlock_init(co_rlock_t *r, const char *name)
{
    co_lock_init(&r->_lock, name);
    r->_count = 0;
}

int co_rlock_destroy(co_rlock_t *r)
{
    return co_lock_destroy(&r->_lock);
}

int co_rlock_acquire_at(co_rlock_t *r, int64_t deadline, const char *file, int line)
{
    co__actor_t *self = co__actor_self();
    if (CO__UNLIKELY(!self)) return errno = ENOMEM, -1;
    if (OWNER(state(&r->_lock)) == self) { /* only we could have put us there */
        r->_count++;
        return 0;
    }
    int e = lock_take(&r->_lock, self, deadline, file, line, true);
    if (e) return errno = e, -1;
    r->_count = 1;
    return 0;
}

void co_rlock_release(co_rlock_t *r)
{
    co__actor_t *self = co__actor_self();
    co__actor_t *owner = OWNER(state(&r->_lock));
    if (!self || owner != self) {
        char who[128], ow[128], lk[128];
        describe_lock(&r->_lock, lk, sizeof lk);
        co__panic("co_rlock_release: %s releases r%s, which is %s%s", co__actor_describe(self, who, sizeof who), lk,
                  owner ? "held by " : "not held", owner ? co__actor_describe(owner, ow, sizeof ow) : "");
    }
    if (--r->_count == 0) co_lock_release(&r->_lock);
}

unsigned long co_rlock_count(const co_rlock_t *r)
{
    co__actor_t *self = co__actor_self();
    return self && OWNER(state(&r->_lock)) == self ? r->_count : 0;
}
