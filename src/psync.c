/* Process-shared locks, rlocks, semaphores, events, conditions, barriers
 * and values (pshared.h has how waits cross processes and why these are
 * robust).
 *
 * Each object is one mapping: the shared header, then its state.  A lock
 * is a glibc robust process-shared mutex plus its owner (process, thread,
 * coroutine), written by the owner only.  The others keep their state
 * under an internal robust mutex, held for a few instructions, and a
 * futex word `seq` that every change a waiter may care about bumps --
 * with the mutex held, so that a waker that dies mid-wake dies holding it
 * and its successor, told EOWNERDEAD, wakes everyone (`enter`). */
#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "process.h"
#include "pshared.h"

struct co_plock {
    co__shm_hdr_t hdr;
    pthread_mutex_t m;
    co__powner_t owner; /* atomic fields: written by the holder */
};

struct co_prlock {
    struct co_plock lock;
    unsigned long count; /* the owner's levels (the owner's only) */
};

struct co_psem {
    co__shm_hdr_t hdr;
    pthread_mutex_t m;
    long value, initial; /* atomic for readers */
    unsigned bounded;
    unsigned seq;
    unsigned nwait;
};

struct co_pevent {
    co__shm_hdr_t hdr;
    unsigned flag; /* atomic */
    unsigned seq;
};

struct co_pcond {
    struct co_plock lock;
    pthread_mutex_t m;
    unsigned seq;
    unsigned waiting; /* waiters not yet notified */
    unsigned to_wake; /* notifications not yet taken */
};

struct co_pbarrier {
    co__shm_hdr_t hdr;
    pthread_mutex_t m;
    unsigned parties, count;
    unsigned broken; /* atomic for readers */
    unsigned seq;
    uint64_t generation;
    uint64_t outcome; /* bit gen % 64: that round completed (1) or was reset (0) */
};

struct co_pvalue {
    struct co_plock lock;
    uint64_t elem_size, count;
    uint64_t data_off;
};

/* Takes an object's internal mutex; if its holder died, wakes every
 * waiter (they look again at a state that is whole: every change commits
 * with one store). */
static void enter(pthread_mutex_t *m, unsigned *seq, const char *what)
{
    if (co__rmutex_enter(m, what)) co__pwake_all(seq);
}

static void leave(pthread_mutex_t *m)
{
    co__rmutex_unlock(m);
}

/* ---------------------------------------------------------------- lock */

static void init_mutex_at(void *obj, void *off)
{
    co__rmutex_init((pthread_mutex_t *)(void *)((char *)obj + (uintptr_t)off));
}

co_plock_t *co_plock_new(const co_shm_opts_t *opts)
{
    return co__shm_create(CO__SHM_LOCK, sizeof(co_plock_t), opts, init_mutex_at,
                          (void *)(uintptr_t)offsetof(co_plock_t, m));
}

co_plock_t *co_plock_open(const char *name)
{
    return co__shm_open(CO__SHM_LOCK, name);
}

void co_plock_free(co_plock_t *l)
{
    co__shm_free(l);
}

static co__powner_t owner_of(const co_plock_t *l)
{
    co__powner_t o;
    o.pid = __atomic_load_n(&l->owner.pid, __ATOMIC_RELAXED);
    o.tid = __atomic_load_n(&l->owner.tid, __ATOMIC_RELAXED);
    o.co = __atomic_load_n(&l->owner.co, __ATOMIC_RELAXED);
    return o;
}

static void set_owner(co_plock_t *l, const co__powner_t *o)
{
    __atomic_store_n(&l->owner.pid, o->pid, __ATOMIC_RELAXED);
    __atomic_store_n(&l->owner.tid, o->tid, __ATOMIC_RELAXED);
    __atomic_store_n(&l->owner.co, o->co, __ATOMIC_RELAXED);
}

static bool held_by(const co_plock_t *l, const co__powner_t *me)
{
    co__powner_t o = owner_of(l);
    return co__powner_eq(&o, me) && co_plock_locked(l);
}

/* Takes l for `me`: 0, EOWNERDEAD or the wait's errno. */
static int take(co_plock_t *l, const co__powner_t *me, int64_t deadline, bool cancellable, const char *what)
{
    int r = co__rmutex_lock(&l->m, deadline, false, cancellable, what);
    if (r == 0 || r == EOWNERDEAD) set_owner(l, me);
    return r;
}

static void give_back(co_plock_t *l, const char *what)
{
    co__powner_t me = co__powner_self();
    CO__CHECK(held_by(l, &me), "%s: lock %p is not held by the caller (pid %d, thread %d, coroutine %llu)", what,
              (void *)l, (int)me.pid, (int)me.tid, (unsigned long long)me.co);
    set_owner(l, &(co__powner_t){0});
    co__rmutex_unlock(&l->m);
}

int co_plock_acquire(co_plock_t *l, int64_t deadline)
{
    CO__CHECK(l != NULL, "co_plock_acquire: NULL lock");
    co__powner_t me = co__powner_self();
    if (held_by(l, &me)) return errno = deadline == 0 ? EAGAIN : EDEADLK, -1;
    int r = take(l, &me, deadline, true, "co_plock_acquire");
    return r ? (errno = r, -1) : 0;
}

void co_plock_release(co_plock_t *l)
{
    CO__CHECK(l != NULL, "co_plock_release: NULL lock");
    give_back(l, "co_plock_release");
}

bool co_plock_locked(const co_plock_t *l)
{
    unsigned w = __atomic_load_n((const unsigned *)(const void *)&l->m, __ATOMIC_RELAXED);
    return (w & FUTEX_TID_MASK) != 0;
}

/* --------------------------------------------------------------- rlock */

co_prlock_t *co_prlock_new(const co_shm_opts_t *opts)
{
    return co__shm_create(CO__SHM_RLOCK, sizeof(co_prlock_t), opts, init_mutex_at,
                          (void *)(uintptr_t)offsetof(co_plock_t, m));
}

co_prlock_t *co_prlock_open(const char *name)
{
    return co__shm_open(CO__SHM_RLOCK, name);
}

void co_prlock_free(co_prlock_t *r)
{
    co__shm_free(r);
}

int co_prlock_acquire(co_prlock_t *r, int64_t deadline)
{
    CO__CHECK(r != NULL, "co_prlock_acquire: NULL rlock");
    co__powner_t me = co__powner_self();
    if (held_by(&r->lock, &me)) {
        r->count++;
        return 0;
    }
    int e = take(&r->lock, &me, deadline, true, "co_prlock_acquire");
    if (e == 0 || e == EOWNERDEAD) r->count = 1;
    return e ? (errno = e, -1) : 0;
}

void co_prlock_release(co_prlock_t *r)
{
    CO__CHECK(r != NULL, "co_prlock_release: NULL rlock");
    co__powner_t me = co__powner_self();
    CO__CHECK(held_by(&r->lock, &me), "co_prlock_release: rlock %p is not held by the caller", (void *)r);
    if (--r->count == 0) give_back(&r->lock, "co_prlock_release");
}

unsigned long co_prlock_count(const co_prlock_t *r)
{
    co__powner_t me = co__powner_self();
    return held_by(&r->lock, &me) ? r->count : 0;
}

/* ----------------------------------------------------------- semaphore */

typedef struct sem_init_args {
    long value;
    bool bounded;
} sem_init_args_t;

static void sem_init(void *obj, void *arg)
{
    co_psem_t *s = obj;
    const sem_init_args_t *a = arg;
    co__rmutex_init(&s->m);
    s->value = s->initial = a->value;
    s->bounded = a->bounded;
}

co_psem_t *co_psem_new(long value, bool bounded, const co_shm_opts_t *opts)
{
    if (value < 0) return errno = EINVAL, NULL;
    sem_init_args_t a = {value, bounded};
    return co__shm_create(CO__SHM_SEM, sizeof(co_psem_t), opts, sem_init, &a);
}

co_psem_t *co_psem_open(const char *name)
{
    return co__shm_open(CO__SHM_SEM, name);
}

void co_psem_free(co_psem_t *s)
{
    co__shm_free(s);
}

/* A unit is free and someone sleeps: wake one (a waiter that gave up may
 * have taken the wake-up meant for it). */
static void sem_pass_on(co_psem_t *s)
{
    if (s->value > 0 && s->nwait > 0) {
        __atomic_add_fetch(&s->seq, 1, __ATOMIC_RELEASE);
        co__pwake(&s->seq, 1);
    }
}

int co_psem_acquire(co_psem_t *s, int64_t deadline)
{
    CO__CHECK(s != NULL, "co_psem_acquire: NULL semaphore");
    enter(&s->m, &s->seq, "co_psem_acquire");
    int r = 0;
    for (;;) {
        if (s->value > 0) {
            __atomic_store_n(&s->value, s->value - 1, __ATOMIC_RELAXED);
            r = 0;
            break;
        }
        if (r) break; /* the wait failed and no unit came meanwhile */
        if (deadline == 0) {
            r = EAGAIN;
            break;
        }
        s->nwait++;
        unsigned seen = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
        leave(&s->m);
        r = co__pwait(&s->seq, seen, deadline, true, "co_psem_acquire");
        enter(&s->m, &s->seq, "co_psem_acquire");
        s->nwait--;
    }
    sem_pass_on(s);
    leave(&s->m);
    return r ? (errno = r, -1) : 0;
}

int co_psem_release(co_psem_t *s)
{
    CO__CHECK(s != NULL, "co_psem_release: NULL semaphore");
    enter(&s->m, &s->seq, "co_psem_release");
    if (s->bounded && s->value >= s->initial) {
        leave(&s->m);
        return errno = EINVAL, -1;
    }
    __atomic_store_n(&s->value, s->value + 1, __ATOMIC_RELAXED);
    sem_pass_on(s);
    leave(&s->m);
    return 0;
}

long co_psem_value(const co_psem_t *s)
{
    return __atomic_load_n(&s->value, __ATOMIC_RELAXED);
}

/* --------------------------------------------------------------- event */
/* No lock at all: the flag is one word, and a waiter reads the sequence
 * word before the flag, so a set between the two is seen either way. */

co_pevent_t *co_pevent_new(const co_shm_opts_t *opts)
{
    return co__shm_create(CO__SHM_EVENT, sizeof(co_pevent_t), opts, NULL, NULL);
}

co_pevent_t *co_pevent_open(const char *name)
{
    return co__shm_open(CO__SHM_EVENT, name);
}

void co_pevent_free(co_pevent_t *e)
{
    co__shm_free(e);
}

void co_pevent_set(co_pevent_t *e)
{
    if (__atomic_exchange_n(&e->flag, 1, __ATOMIC_ACQ_REL)) return;
    co__pwake_all(&e->seq);
}

void co_pevent_clear(co_pevent_t *e)
{
    __atomic_store_n(&e->flag, 0, __ATOMIC_RELEASE);
}

bool co_pevent_is_set(const co_pevent_t *e)
{
    return __atomic_load_n(&e->flag, __ATOMIC_ACQUIRE) != 0;
}

int co_pevent_wait(co_pevent_t *e, int64_t deadline)
{
    CO__CHECK(e != NULL, "co_pevent_wait: NULL event");
    for (;;) {
        unsigned seen = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
        if (co_pevent_is_set(e)) return 0;
        if (deadline == 0) return errno = ETIMEDOUT, -1;
        int r = co__pwait(&e->seq, seen, deadline, true, "co_pevent_wait");
        if (co_pevent_is_set(e)) return 0;
        if (r) return errno = r, -1;
    }
}

/* ----------------------------------------------------------- condition */

static void cond_init(void *obj, void *arg)
{
    (void)arg;
    co_pcond_t *c = obj;
    co__rmutex_init(&c->lock.m);
    co__rmutex_init(&c->m);
}

co_pcond_t *co_pcond_new(const co_shm_opts_t *opts)
{
    return co__shm_create(CO__SHM_COND, sizeof(co_pcond_t), opts, cond_init, NULL);
}

co_pcond_t *co_pcond_open(const char *name)
{
    return co__shm_open(CO__SHM_COND, name);
}

void co_pcond_free(co_pcond_t *c)
{
    co__shm_free(c);
}

co_plock_t *co_pcond_lock(co_pcond_t *c)
{
    return &c->lock;
}

int co_pcond_wait(co_pcond_t *c, int64_t deadline)
{
    CO__CHECK(c != NULL, "co_pcond_wait: NULL condition");
    co__powner_t me = co__powner_self();
    CO__CHECK(held_by(&c->lock, &me), "co_pcond_wait: the condition's lock is not held by the caller");
    enter(&c->m, &c->seq, "co_pcond_wait");
    c->waiting++;
    unsigned seen = __atomic_load_n(&c->seq, __ATOMIC_RELAXED);
    leave(&c->m);
    give_back(&c->lock, "co_pcond_wait");
    int r;
    for (;;) {
        r = co__pwait(&c->seq, seen, deadline, true, "co_pcond_wait");
        enter(&c->m, &c->seq, "co_pcond_wait");
        if (c->to_wake > 0) { /* a notification: ours, or one we take now rather than lose */
            c->to_wake--;
            r = 0;
            break;
        }
        if (r) {
            c->waiting--;
            break;
        }
        seen = __atomic_load_n(&c->seq, __ATOMIC_RELAXED);
        leave(&c->m);
    }
    leave(&c->m);
    /* Back under the lock whatever happened, as threading.Condition. */
    int t = take(&c->lock, &me, -1, false, "co_pcond_wait");
    if (t == EOWNERDEAD) r = EOWNERDEAD;
    return r ? (errno = r, -1) : 0;
}

size_t co_pcond_notify(co_pcond_t *c, size_t n)
{
    CO__CHECK(c != NULL, "co_pcond_notify: NULL condition");
    enter(&c->m, &c->seq, "co_pcond_notify");
    size_t k = n < c->waiting ? n : c->waiting;
    c->waiting -= (unsigned)k;
    c->to_wake += (unsigned)k;
    if (k) co__pwake_all(&c->seq);
    leave(&c->m);
    return k;
}

size_t co_pcond_notify_all(co_pcond_t *c)
{
    return co_pcond_notify(c, SIZE_MAX);
}

/* ------------------------------------------------------------- barrier */

static void barrier_init(void *obj, void *arg)
{
    co_pbarrier_t *b = obj;
    co__rmutex_init(&b->m);
    b->parties = (unsigned)(uintptr_t)arg;
}

co_pbarrier_t *co_pbarrier_new(unsigned parties, const co_shm_opts_t *opts)
{
    if (parties == 0) return errno = EINVAL, NULL;
    return co__shm_create(CO__SHM_BARRIER, sizeof(co_pbarrier_t), opts, barrier_init, (void *)(uintptr_t)parties);
}

co_pbarrier_t *co_pbarrier_open(const char *name)
{
    return co__shm_open(CO__SHM_BARRIER, name);
}

void co_pbarrier_free(co_pbarrier_t *b)
{
    co__shm_free(b);
}

/* Ends round `gen`: completed (waiters return their index) or not (they
 * fail with EPIPE).  Mutex held. */
static void barrier_next(co_pbarrier_t *b, bool completed)
{
    uint64_t bit = (uint64_t)1 << (b->generation % 64);
    b->outcome = completed ? b->outcome | bit : b->outcome & ~bit;
    b->generation++;
    b->count = 0;
    co__pwake_all(&b->seq);
}

int co_pbarrier_wait(co_pbarrier_t *b, int64_t deadline)
{
    CO__CHECK(b != NULL, "co_pbarrier_wait: NULL barrier");
    enter(&b->m, &b->seq, "co_pbarrier_wait");
    if (b->broken) {
        leave(&b->m);
        return errno = EPIPE, -1;
    }
    uint64_t gen = b->generation;
    unsigned idx = b->count++;
    if (b->count == b->parties) {
        barrier_next(b, true);
        leave(&b->m);
        return (int)idx;
    }
    int r;
    for (;;) {
        unsigned seen = __atomic_load_n(&b->seq, __ATOMIC_RELAXED);
        leave(&b->m);
        r = co__pwait(&b->seq, seen, deadline, true, "co_pbarrier_wait");
        enter(&b->m, &b->seq, "co_pbarrier_wait");
        if (b->generation != gen) {
            r = (b->outcome >> (gen % 64)) & 1 ? (int)idx : -EPIPE;
            break;
        }
        if (b->broken) {
            r = -EPIPE;
            break;
        }
        if (r) { /* this caller gives up: the barrier breaks for all */
            __atomic_store_n(&b->broken, 1, __ATOMIC_RELAXED);
            barrier_next(b, false);
            r = -r;
            break;
        }
    }
    leave(&b->m);
    return r >= 0 ? r : (errno = -r, -1);
}

void co_pbarrier_reset(co_pbarrier_t *b)
{
    enter(&b->m, &b->seq, "co_pbarrier_reset");
    __atomic_store_n(&b->broken, 0, __ATOMIC_RELAXED);
    barrier_next(b, false); /* those waiting now fail with EPIPE */
    leave(&b->m);
}

void co_pbarrier_abort(co_pbarrier_t *b)
{
    enter(&b->m, &b->seq, "co_pbarrier_abort");
    __atomic_store_n(&b->broken, 1, __ATOMIC_RELAXED);
    barrier_next(b, false);
    leave(&b->m);
}

bool co_pbarrier_broken(const co_pbarrier_t *b)
{
    return __atomic_load_n(&b->broken, __ATOMIC_RELAXED) != 0;
}

/* --------------------------------------------------------------- value */

#define VALUE_ALIGN 64

static size_t value_off(void)
{
    return (sizeof(co_pvalue_t) + VALUE_ALIGN - 1) & ~(size_t)(VALUE_ALIGN - 1);
}

static void value_init(void *obj, void *arg)
{
    co_pvalue_t *v = obj;
    const size_t *dims = arg;
    co__rmutex_init(&v->lock.m);
    v->elem_size = dims[0];
    v->count = dims[1];
    v->data_off = value_off();
}

co_pvalue_t *co_pvalue_new(size_t elem_size, size_t count, const co_shm_opts_t *opts)
{
    if (elem_size == 0 || count == 0 || count > (SIZE_MAX - value_off()) / elem_size) return errno = EINVAL, NULL;
    size_t dims[2] = {elem_size, count};
    return co__shm_create(CO__SHM_VALUE, value_off() + elem_size * count, opts, value_init, dims);
}

co_pvalue_t *co_pvalue_open(const char *name)
{
    co_pvalue_t *v = co__shm_open(CO__SHM_VALUE, name);
    if (v && (v->data_off != value_off() || v->elem_size == 0 ||
              v->count > (v->lock.hdr.size - v->data_off) / v->elem_size)) {
        co__shm_free(v);
        return errno = EINVAL, NULL;
    }
    return v;
}

void co_pvalue_free(co_pvalue_t *v)
{
    co__shm_free(v);
}

void *co_pvalue_data(co_pvalue_t *v)
{
    return (char *)v + v->data_off;
}

size_t co_pvalue_count(const co_pvalue_t *v)
{
    return (size_t)v->count;
}

size_t co_pvalue_elem_size(const co_pvalue_t *v)
{
    return (size_t)v->elem_size;
}

co_plock_t *co_pvalue_lock(co_pvalue_t *v)
{
    return &v->lock;
}
