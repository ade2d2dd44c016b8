/* Internal declarations shared between cogent's source files.
 *
 * Naming: co__ for anything that crosses a file boundary, unprefixed
 * file-static helpers.  Each function's contract is written here, once:
 * what it returns, whether it may switch, what errno means. */
#ifndef COGENT_INTERNAL_H
#define COGENT_INTERNAL_H

#define COGENT_BUILDING 1
#include "cogent.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdnoreturn.h>
#include <sys/single_threaded.h>
#include <sys/types.h>

#include "arch.h"

#define CO__TLS         __attribute__((tls_model("initial-exec")))
#define CO__LIKELY(x)   __builtin_expect(!!(x), 1)
#define CO__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Sanitizer builds (the build passes -DCO_ASAN / -DCO_TSAN / -DCO_VALGRIND)
 * annotate every switch so the tools follow the program across stacks. */
#if defined(__SANITIZE_ADDRESS__) && !defined(CO_ASAN)
#define CO_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(CO_TSAN)
#define CO_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(CO_ASAN)
#define CO_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(CO_TSAN)
#define CO_TSAN 1
#endif
#endif
#ifndef CO_ASAN
#define CO_ASAN 0
#endif
#ifndef CO_TSAN
#define CO_TSAN 0
#endif

/* ------------------------------------------------------------- failures */

/* Prints "cogent: <msg>" to stderr and aborts.  For programming errors:
 * never compiled out. */
noreturn void co__panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define CO__CHECK(cond, ...)                                                                                           \
    do {                                                                                                               \
        if (CO__UNLIKELY(!(cond))) co__panic(__VA_ARGS__);                                                             \
    } while (0)

/* --------------------------------------------------------------- stacks */

typedef struct co__stack {
    char *lo;         /* lowest byte; the canary zone starts here */
    size_t size;      /* usable bytes above lo */
    uint8_t mode;     /* CO_STACK_GUARD or CO_STACK_CANARY; 0 = none */
    uint8_t valgrind; /* registered with valgrind (id below) */
    uint16_t color;   /* bytes left unused at the top (see stack.c) */
    unsigned vg_id;
} co__stack_t;

/* Canary-mode stacks keep their lowest CO__CANARY_WORDS words zero: an
 * overflow that writes there is caught at the next switch.  Zero, because
 * an untouched page reads as zero without being committed: a canary value
 * would cost every stack a resident page at its bottom. */
#define CO__CANARY_WORDS 8

/* True if the canary zone of a canary-mode stack was written. */
static inline bool co__canary_broken(const co__stack_t *st)
{
    const uint64_t *z = (const uint64_t *)(const void *)st->lo;
    uint64_t acc = 0;
    for (int i = 0; i < CO__CANARY_WORDS; i++) acc |= z[i];
    return acc != 0;
}

/* Gets a stack of `size` usable bytes (rounded up to pages) from this
 * thread's cache or the kernel, in the mode the process policy picks
 * (docs/stacks.md); its canary zone is zero.  0, or -1 with ENOMEM /
 * EINVAL.  Installs the overflow handler on first use. */
int co__stack_get(co__stack_t *st, size_t size);
/* Gives a stack back (cache, slab free list or munmap).  Must not be the
 * stack we are running on.  st->lo and st->mode are cleared. */
void co__stack_put(co__stack_t *st);
/* Reports an overflow of the stack of `f` and aborts. */
noreturn void co__stack_overflow(const co_fiber_t *f, const char *how);
/* Frees this thread's stack cache and alternate signal stack. */
void co__stack_thread_exit(void);

/* --------------------------------------------------------------- fibers */

enum { CO__F_NEW = 0, CO__F_SUSPENDED, CO__F_RUNNING, CO__F_DEAD };
enum { CO__K_MAIN = 0, CO__K_RAW, CO__K_GEN, CO__K_CORO };

struct co_fiber {
    void *sp; /* saved stack pointer while not running */
    co__stack_t stack;
    co_fiber_t *parent;
    co_fiber_fn fn;
    void *ud;
    uint8_t state;
    uint8_t kind;
#if CO_ASAN
    void *asan_fake;
    const void *asan_lo;
    size_t asan_size;
#endif
#if CO_TSAN
    void *tsan;
#endif
};

typedef struct co__hub co__hub_t;

/* Per-thread state: one slice per module (libdill's layout). */
typedef struct co__thread {
    /* First, at fixed offsets: the assembly fast path reads them. */
    co_fiber_t *cur;       /* the fiber running now (NULL before init) */
    co_fiber_t *dead;      /* an ended fiber whose stack the next landing frees */
    co_fiber_t *prev;      /* the fiber the last switch left (sanitizer bookkeeping) */
    co_fiber_t main_fiber; /* the thread's own stack */
    co__hub_t *hub;        /* created on first use */
    /* stack.c's slice */
    co__stack_t *cache;
    size_t ncache, cache_cap;
    void *altstack;
    /* wait.c's slice: the lock-owner record of a thread without a hub */
    struct co__actor *actor;
} co__thread_t;

extern CO__TLS __thread co__thread_t co__tls;

/* Makes co__tls usable (main fiber, current fiber).  Cheap when done. */
static inline co__thread_t *co__thread(void)
{
    co__thread_t *t = &co__tls;
    if (CO__UNLIKELY(t->cur == NULL)) {
        t->main_fiber.state = CO__F_RUNNING;
        t->main_fiber.kind = CO__K_MAIN;
        t->cur = &t->main_fiber;
    }
    return t;
}

/* Initialises a fiber on a fresh stack of stack_size (0 = default) that
 * runs fn(f, value) when first switched to; the parent is left NULL.
 * 0, or -1 with EINVAL / ENOMEM. */
int co__fiber_init(co_fiber_t *f, co_fiber_fn fn, void *ud, size_t stack_size);
/* co__fiber_transfer, the switch of the hub and generators: src/switch.h. */
/* Releases a fiber's stack (not running, not current).  Idempotent. */
void co__fiber_release(co_fiber_t *f);

/* ------------------------------------------------------------- poller */
#include "poller.h"

/* --------------------------------------------------------------- timers */

typedef struct co__timer {
    int64_t deadline; /* ms of co_now() */
    uint64_t seq;     /* insertion order: FIFO among equal deadlines */
    size_t index;     /* position in the heap, SIZE_MAX when not armed */
} co__timer_t;

typedef struct co__timers {
    co__timer_t **heap;
    size_t n, cap;
    uint64_t seq;
} co__timers_t;

/* A 4-ary min-heap ordered by (deadline, seq): exact for any deadline. */
void co__timers_destroy(co__timers_t *h);
/* Arms t at `deadline`.  0, or -1 with ENOMEM (t is then not armed). */
int co__timers_add(co__timers_t *h, co__timer_t *t, int64_t deadline);
/* Disarms t if armed. */
void co__timers_remove(co__timers_t *h, co__timer_t *t);
/* The earliest armed timer, or NULL. */
static inline co__timer_t *co__timers_first(const co__timers_t *h)
{
    return h->n ? h->heap[0] : NULL;
}
/* A poll(2)-style timeout for a deadline: -1 for none, else the ms left
 * (0 once passed), clamped to int. */
static inline int co__ms_until(int64_t deadline)
{
    if (deadline < 0) return -1;
    int64_t left = deadline - co_now();
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}
static inline bool co__timer_armed(const co__timer_t *t)
{
    return t->index != SIZE_MAX;
}

/* ---------------------------------------------------------- wait lists */

/* A hub-local FIFO of parked coroutines.  Nodes live on the waiters'
 * stacks: push before parking, remove after (whatever woke you). */
typedef struct co__wnode {
    struct co__wnode *next, *prev;
    co_coro_t *co;
    uint64_t seq;
    bool linked;
} co__wnode_t;
typedef struct co__waitq {
    co__wnode_t *head, *tail;
} co__waitq_t;

void co__waitq_push(co__waitq_t *q, co__wnode_t *n, co_coro_t *co);
void co__waitq_remove(co__waitq_t *q, co__wnode_t *n);
/* Wakes (co__wake with 0) and unlinks up to n waiters, oldest first.
 * Returns how many were woken. */
size_t co__waitq_wake(co__hub_t *h, co__waitq_t *q, size_t n);

/* ---------------------------------------------------------- coroutines */

enum { CO__C_NEW = 0, CO__C_READY, CO__C_RUNNING, CO__C_PARKED, CO__C_DONE };
enum { CO__H_OWNED = 0, CO__H_DETACHED, CO__H_JOINED };

/* A message from another thread to a hub (see hub.c's inbox). */
enum { CO__M_WAKE = 1, CO__M_KILL, CO__M_WATCH, CO__M_GRANT, CO__M_DUMP };
typedef struct co__msg {
    struct co__msg *next;
    int kind;
    int result;
    co_coro_t *co;       /* the target coroutine, on the receiving hub */
    co_coro_t *from;     /* WATCH: who to wake when co finishes */
    co__hub_t *from_hub; /* WATCH: its hub */
    uint64_t seq;        /* WAKE/WATCH: the park being ended */
    void *ptr;           /* GRANT: the waiter; DUMP: the request */
} co__msg_t;

struct co_coro {
    co_fiber_t fiber;   /* its own stack (unused by a main coroutine) */
    co_fiber_t *resume; /* the fiber to switch to when it runs again */
    co__hub_t *hub;
    co_coro_t *next;                /* run queue, free pool */
    co_coro_t *all_prev, *all_next; /* the hub's list of live coroutines */
    uint64_t id;
    char *name; /* NULL, name_buf, or malloc'd */
    char name_buf[24];
    co_fn fn;
    void *arg;
    void *result;
    uint8_t state; /* CO__C_*; touched only by its hub's thread */
    bool is_main;
    atomic_uchar handle; /* CO__H_* */
    atomic_bool killed;  /* sticky cancellation */
    atomic_int refs;     /* 2 at spawn: the running coroutine + the handle */
    /* the current wait */
    uint64_t park_seq; /* bumped after every park: stale wake-ups carry an old one */
    int wake_result;   /* 0, ETIMEDOUT, ECANCELED, EDEADLK */
    bool cancellable;
    const char *wait_what;
    const void *wait_obj; /* the sync object or coroutine waited on */
    int64_t park_since;   /* h->now when it parked (dumps) */
    co__timer_t timer;
    /* who waits for it to finish */
    co__waitq_t waiters; /* same hub */
    /* Other hubs' waiters: a lock-free stack of WATCH messages that turns
     * into CO__DONE when the coroutine is reaped (see coro.c). */
    _Atomic(co__msg_t *) watchers;
    /* group membership */
    co_group_t *group;
    co_coro_t *gprev, *gnext; /* in the group's running or done list */
    /* debugging (docs/debugging.md) */
    const char *spawn_file; /* where it was spawned, if known */
    int spawn_line;
    struct co__actor *actor; /* lock ownership record, made on first lock */
};

struct co__hub {
    co__thread_t *thr;
    co_coro_t main; /* the thread's own stack as a coroutine */
    co_coro_t *current;
    co_coro_t *runq_head, *runq_tail;
    size_t nrunq;
    co_coro_t *all; /* live spawned coroutines */
    co__timers_t timers;
    co__poller_t poller;
    int evfd;                   /* the inbox doorbell */
    _Atomic(co__msg_t *) inbox; /* Treiber stack; CO__INBOX_CLOSED after exit */
    /* Biased reference count: while the thread lives, `refs` holds
     * CO__HUB_BIAS plus what other threads took, and the thread counts its
     * own coroutines in `local_refs` without atomics; at exit the two are
     * merged and the last reference frees the hub. */
    _Atomic int64_t refs;
    size_t local_refs;
    size_t ncoros;    /* spawned, not yet finished */
    size_t nexternal; /* parked waits another thread will end */
    uint64_t switches;
    uint64_t ticks;                 /* atomic (relaxed): picks made; the monitor watches it */
    co_coro_t *running;             /* atomic (release): h->current, for other threads */
    unsigned idle;                  /* atomic: 1 while waiting in the poller */
    size_t nsync;                   /* parked in sync-object waits */
    size_t nio;                     /* parked in fd waits (fd.c) */
    int64_t now;                    /* co_now() at the last look at timers */
    co__hub_t *reg_next, *reg_prev; /* the process's hub registry */
    uint64_t mon_ticks;             /* the monitor thread's own notes */
    int64_t mon_since;
    bool mon_reported;
    uint32_t since_poll;
    bool exiting;
    pid_t tid;
};

#define CO__INBOX_CLOSED ((co__msg_t *)(uintptr_t)1)
#define CO__HUB_BIAS     ((int64_t)1 << 40)
#define CO__DONE         ((co__msg_t *)(uintptr_t)1) /* co_coro_t.watchers once finished */

/* True once co has finished and been reaped: its result is readable from
 * any thread. */
static inline bool co__done(const co_coro_t *co)
{
    return atomic_load_explicit(&((co_coro_t *)co)->watchers, memory_order_acquire) == CO__DONE;
}

/* The calling thread's hub, created on first use; aborts if it cannot be
 * created (no fds or memory left for an epoll fd and an eventfd). */
co__hub_t *co__hub_get(void);
static inline co__hub_t *co__hub(void)
{
    co__hub_t *h = co__tls.hub;
    return CO__LIKELY(h != NULL) ? h : co__hub_get();
}

/* Parks the running coroutine until co__wake, the deadline, or (when
 * cancellable) a kill.  Returns 0 when woken, else ETIMEDOUT, ECANCELED,
 * EDEADLK (nothing could ever wake the main coroutine) or ENOMEM (the
 * deadline could not be armed).  A killed coroutine parking cancellably
 * gets ECANCELED without parking; a deadline already passed gives
 * ETIMEDOUT without parking.  Wakers target (co, co->park_seq) as read
 * before the park.  Switches: yes. */
int co__park(co__hub_t *h, int64_t deadline, const char *what, bool cancellable);
/* Makes co (parked on h, the calling thread's hub) runnable with its park
 * returning `result`; ignored unless it is parked with park_seq == seq. */
void co__wake(co__hub_t *h, co_coro_t *co, uint64_t seq, int result);
/* Appends a runnable coroutine to h's run queue (a new one stays NEW). */
static inline void co__ready(co__hub_t *h, co_coro_t *co)
{
    if (co->state != CO__C_NEW) co->state = CO__C_READY;
    co->next = NULL;
    if (h->runq_tail)
        h->runq_tail->next = co;
    else
        h->runq_head = co;
    h->runq_tail = co;
    h->nrunq++;
}
/* Gives up the CPU: the running coroutine, already parked or queued by the
 * caller (or finished when `dying`), is switched away from; returns when
 * it runs again (never when dying).  Switches: yes. */
void co__schedule(co__hub_t *h, bool dying);
/* Sends a message to hub `to` from any thread.  Returns false if that
 * hub's thread has exited: then the message was not sent. */
bool co__hub_send(co__hub_t *to, co__msg_t *m);
/* Drops a reference taken with atomic_fetch_add on h->refs (any thread);
 * the last one frees the hub. */
void co__hub_unref(co__hub_t *h);

/* coro.c: handles a message for a coroutine of h. */
void co__coro_message(co__hub_t *h, co__msg_t *m);
/* coro.c: after a coroutine's stack was released (on the next stack):
 * marks it done, wakes other hubs' watchers, drops the running ref. */
void co__coro_reap(co_coro_t *co);
/* coro.c: ends every coroutine of an exiting hub (killed, run to their
 * end); releases without unwinding those that can never end. */
void co__coro_exit_all(co__hub_t *h);

/* coro.c: a process-wide unique coroutine id. */
uint64_t co__new_id(void);
/* coro.c: hands this thread's cached coroutine structs to the global pool. */
void co__coro_thread_exit(void);

/* group.c: a member finished (on its hub, before the switch away). */
void co__group_member_done(co_coro_t *co);
/* group.c: a member is joined or detached by its owner: leaves the group. */
void co__group_member_leave(co_coro_t *co);

/* ------------------------------------------------------ sync waiting */
/* Shared by every sync object (sync.c, queue.c): a spin lock guards each
 * object's state for a few dozen instructions and is never held across
 * a switch; waiters queue as co__waiter_t nodes on their own stacks.
 *
 * Protocol.  A waiter, holding the object's spin lock, fills a node
 * (co__waiter_prepare), appends it and calls co__wait_block, which drops
 * the spin lock and parks (a coroutine) or sleeps on a futex (a thread
 * without a hub).  A waker, holding the spin lock, unlinks nodes with
 * co__grant (setting what the waiter gets: a result and an item) onto a
 * local wake list, drops the spin lock, then calls co__wake_list.  A
 * waiter that times out or is cancelled retakes the spin lock: still
 * linked, it leaves empty-handed; already granted, it takes what it was
 * given (a wake-up that won the race is never lost). */

/* Who owns a lock: a coroutine, or a thread outside any hub.  Type-stable
 * (pooled, never freed) so that a stale owner pointer stays readable. */
typedef struct co__actor {
    struct co__actor *next; /* free pool */
    co_coro_t *co;          /* NULL: a thread */
    pid_t tid;
    const void *blocked_on; /* atomic: the lock it waits for, no deadline */
    const char *wfile;      /* where it waits */
    int wline;
    void *held;     /* lockdep.c: locks held, in order */
    size_t nheld;   /* locks it owns (touched by itself only) */
    bool abandoned; /* ended while owning locks: never reused */
} co__actor_t;

/* The calling coroutine's (or hub-less thread's) actor; NULL only when
 * out of memory.  The first call of each makes the record. */
co__actor_t *co__actor_self_slow(void);
static inline co__actor_t *co__actor_self(void)
{
    co__hub_t *h = co__tls.hub;
    co__actor_t *a = h ? h->current->actor : co__tls.actor;
    return CO__LIKELY(a != NULL) ? a : co__actor_self_slow();
}
/* Returns an actor to the pool when its coroutine or thread ends; one
 * that still owns locks is reported and kept (those locks stay held). */
void co__actor_release(co__actor_t *a);
/* At hub creation: the thread's actor, if it has one, becomes the main
 * coroutine's (locks it holds stay held by the same owner). */
co__actor_t *co__actor_adopt_thread(co_coro_t *main_co);
/* "coroutine 'name' (#id) of thread T" or "thread T"; buf >= 96 bytes. */
const char *co__actor_describe(const co__actor_t *a, char *buf, size_t n);

/* True while the process has only ever had one thread (glibc's flag, the
 * one its own mutexes use): nobody can race us, so the fast paths of
 * locks skip their locked instructions.  A thread can only appear by this
 * thread's own pthread_create, which is never called inside a section. */
static inline bool co__single_threaded(void)
{
    return __libc_single_threaded != 0;
}

/* The contended half of co__spin_lock: spins, then yields the CPU. */
void co__spin_wait(unsigned *l);
static inline void co__spin_lock(unsigned *l)
{
    if (co__single_threaded()) {
        __atomic_store_n(l, 1, __ATOMIC_RELAXED);
        return;
    }
    if (CO__UNLIKELY(__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))) co__spin_wait(l);
}
static inline void co__spin_unlock(unsigned *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* A waiter's `done` word (also the futex of a thread without a hub). */
enum { W_WAITING = 0, W_DONE = 1, W_SLEEPING = 2 };

typedef struct co__waiter {
    struct co__waiter *next, *prev; /* the object's list */
    struct co__waiter *wnext;       /* the waker's wake list */
    co_coro_t *co;                  /* NULL: a thread without a hub (futex) */
    co__hub_t *hub;
    uint64_t seq;   /* the park a same-hub or message wake ends */
    unsigned done;  /* atomic: set by the waker once granted */
    bool linked;    /* on the object's list (spin lock held to touch) */
    bool remote;    /* granted from another thread's hub: a message comes */
    bool delivered; /* that message was handled (the waiter's thread) */
    int result;     /* what the waker granted: 0 or an errno */
    void *item;     /* what the waker handed over (queues) */
    int64_t key;    /* the waiter's own data (priority, index...) */
    co__msg_t msg;  /* the GRANT message of a remote wake */
} co__waiter_t;

typedef struct co__wlist {
    co__waiter_t *head, *tail;
} co__wlist_t;

/* (Inline: these run on every blocking wait and every hand-off.) */
/* Fills w for the calling coroutine or thread.  Spin lock held. */
static inline void co__waiter_prepare(co__waiter_t *w)
{
    co__hub_t *h = co__tls.hub;
    w->co = h ? h->current : NULL;
    w->hub = h;
    w->seq = h ? h->current->park_seq : 0;
    __atomic_store_n(&w->done, W_WAITING, __ATOMIC_RELAXED);
    w->remote = false;
    w->delivered = false;
    w->result = 0;
    w->item = NULL;
}
/* Appends w to the object's list (head, tail).  Spin lock held. */
static inline void co__wq_push(co__waiter_t **head, co__waiter_t **tail, co__waiter_t *w)
{
    w->next = NULL;
    w->prev = *tail;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
    w->linked = true;
}
/* Unlinks w.  Spin lock held. */
static inline void co__wq_remove(co__waiter_t **head, co__waiter_t **tail, co__waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        *tail = w->prev;
    w->linked = false;
}
/* Unlinks w and puts it on the wake list `wl` with what it gets.  Spin
 * lock held.  Nothing is woken until co__wake_list. */
static inline void co__grant(co__waiter_t **head, co__waiter_t **tail, co__waiter_t *w, int result, void *item,
                             co__wlist_t *wl)
{
    co__wq_remove(head, tail, w);
    w->result = result;
    w->item = item;
    /* Decided now, under the spin lock, so that a waiter timing out knows
     * whether a message is on its way. */
    w->remote = w->co && w->hub != co__tls.hub;
    w->wnext = NULL;
    if (wl->tail)
        wl->tail->wnext = w;
    else
        wl->head = w;
    wl->tail = w;
}

/* Wakes what co__grant collected.  Spin lock NOT held.  Switches: no. */
void co__wake_list(co__wlist_t *wl);
/* Blocks the caller, whose node w is linked on head/tail, after dropping
 * *spin.  Returns 0 when granted (w->result and w->item say what; spin
 * lock not held), or ETIMEDOUT / ECANCELED / EDEADLK with w unlinked and
 * the spin lock HELD, so that the caller can repair the object's state.
 * `what` names the call for dumps; `obj` is the object.  A thread
 * without a hub is not cancellable.  Switches: yes. */
int co__wait_block(co__waiter_t *w, unsigned *spin, co__waiter_t **head, co__waiter_t **tail, int64_t deadline,
                   const char *what, const void *obj, bool cancellable);
/* The common case of the above: appends w (prepared by the caller, with
 * any item or key it carries), blocks cancellably, and drops the spin lock
 * whatever happens.  0 when granted, else the errno of the failed wait
 * (w unlinked, the object untouched).  Switches: yes. */
static inline int co__wait_in(co__waiter_t *w, unsigned *spin, co__waiter_t **head, co__waiter_t **tail,
                              int64_t deadline, const char *what, const void *obj)
{
    co__wq_push(head, tail, w);
    int r = co__wait_block(w, spin, head, tail, deadline, what, obj, true);
    if (r) co__spin_unlock(spin);
    return r;
}
/* The futex of a waiting thread: sleeps while *addr == val until the
 * deadline (ms of co_now, -1: none); 0 when woken (maybe spuriously),
 * ETIMEDOUT at the deadline.  And the wake of one sleeper. */
int co__futex_wait(unsigned *addr, unsigned val, int64_t deadline);
void co__futex_wake(unsigned *addr);
/* The message handler for a remote grant (on the waiter's hub). */
void co__grant_delivered(co__hub_t *h, co__msg_t *m);

/* lock.c: for conditions: retakes l whatever happens (no deadline, not a
 * cancellation point).  Switches: yes. */
void co__lock_retake(co_lock_t *l);
/* lock.c: true if the caller owns l. */
bool co__lock_owned(const co_lock_t *l);

/* True once the process has been seen with more than one thread (sticky;
 * checked through /proc only while it is false). */
bool co__multithreaded(void);
/* Threads cogent runs for itself (atomic): not counted above. */
extern unsigned co__helper_threads;

/* lockdep.c: called with the lock just taken / about to be released by
 * the caller, when lock-order checking is on. */
extern bool co__lockdep_on;
static inline bool co__lockdep(void)
{
    return __atomic_load_n(&co__lockdep_on, __ATOMIC_RELAXED);
}
void co__lockdep_acquired(co__actor_t *self, const co_lock_t *l, const char *file, int line);
void co__lockdep_released(co__actor_t *self, const co_lock_t *l);
void co__lockdep_forget(const co_lock_t *l);

/* ------------------------------------------------------------ fd table */
/* What cogent knows about each file descriptor number (fd.c): the hubs
 * whose pollers watch it, the coroutines waiting on it, how it was found
 * (socket, regular file, who made it non-blocking), the caller's own view
 * of O_NONBLOCK (for the patch library) and a default timeout.  Entries
 * are type-stable (chunks are never freed), so a stale pointer from a
 * poller event always reads an entry: poller events are hints, and every
 * waiter retries its system call after waking. */

enum {
    CO__FD_KNOWN = 1,    /* classified: the flags below are valid */
    CO__FD_SOCK = 2,     /* a socket: send/recv with MSG_NOSIGNAL */
    CO__FD_FILE = 4,     /* never waits (regular file, directory...) */
    CO__FD_NB = 8,       /* O_NONBLOCK set in the kernel */
    CO__FD_NB_OURS = 16, /* ...by cogent, not by the caller */
    CO__FD_USER_NB = 32, /* the caller's view: it asked for O_NONBLOCK */
    CO__FD_STREAM = 64,  /* a stream socket: a short read means it was drained */
};

typedef struct co__fdreg {
    co__hub_t *hub;
    struct co__fdreg *next;
} co__fdreg_t;

typedef struct co__fd {
    unsigned spin;
    unsigned flags;            /* atomic (relaxed): CO__FD_* */
    co__hub_t *hub;            /* an edge poller watching it (spin) */
    co__fdreg_t *more;         /* other hubs' edge pollers (spin) */
    co__waiter_t *head, *tail; /* waiters; key = CO__POLL_* wanted (spin) */
    int64_t timeout;           /* atomic: default wait in ms + 1, 0 none */
    /* The short-read hint (io.c): after a read that drained a stream
     * socket, wait for the poller's next "readable" instead of making a
     * read that can only say EAGAIN.  All atomic (relaxed). */
    unsigned rgen;  /* bumped by every readable event */
    unsigned rseen; /* rgen when the last read started */
    bool rshort;    /* the last read returned less than asked */
    bool rhup;      /* hang-up or error seen: a read never waits first */
} co__fd_t;

/* The entry of fd, made on first use; NULL with EBADF for a negative or
 * huge fd, ENOMEM when a chunk cannot be allocated. */
co__fd_t *co__fd_get(int fd);
/* The entry's flags, classifying fd on first use (one fstat and one
 * F_GETFL) and, when the caller is on a hub, making it non-blocking.
 * Returns 0 with errno set if fd is not open. */
unsigned co__fd_flags(co__fd_t *e, int fd);
/* Records what cogent knows about a descriptor it just made (flags given
 * as CO__FD_*), forgetting anything left from an earlier fd of the same
 * number.  Returns fd, or -1 (closing fd) on ENOMEM. */
int co__fd_new(int fd, unsigned flags);
/* Waits until fd may be ready for `events` (CO__POLL_IN/OUT), the deadline
 * passes or the caller is killed: 0, or -1 with errno ETIMEDOUT,
 * ECANCELED, EBADF (fd closed with co_close meanwhile), ENOMEM, EPERM
 * (fd cannot be polled).  On a thread without a hub: poll(2).  `what`
 * names the call for dumps.  Switches: yes. */
int co__fd_wait(co__fd_t *e, int fd, unsigned events, int64_t deadline, const char *what);
/* For a wait on several fds (co_poll): link, on the calling coroutine's
 * hub, a node w for `events` on e (registering fd as needed): 0, or -1
 * with errno.  After the park, unlink every node linked, whatever woke
 * the caller. */
int co__fd_link(co__fd_t *e, int fd, co__waiter_t *w, unsigned events);
void co__fd_unlink(co__fd_t *e, int fd, co__waiter_t *w);
/* The deadline of a call on e given the caller's: the caller's if it set
 * one, else now + the entry's default timeout, else none. */
int64_t co__fd_deadline(co__fd_t *e, int64_t deadline);
/* hub.c: a poller event for e on h (the hub's thread). */
void co__fd_event(co__hub_t *h, co__fd_t *e, unsigned events);
/* Forgets fd: waiters get EBADF, every poller stops watching it.  Does
 * not close it.  Safe on any fd. */
void co__fd_forget(int fd);
/* hub.c: the hub is going away: it watches nothing any more. */
void co__fd_hub_exit(co__hub_t *h);
/* hub.c: in a fork child, after the hub's poller was made anew. */
void co__fd_fork_child(co__hub_t *h);
/* The caller, granted while its wait was ending, waits for the grant's
 * message (wait.c). */
void co__await_grant(co__waiter_t *w);

/* dns.c / offload: a job run on cogent's small worker pool. */
typedef struct co__job {
    void (*run)(struct co__job *j);  /* on a worker thread */
    void (*drop)(struct co__job *j); /* frees an abandoned job after run */
    /* private to offload */
    struct co__job *next;
    unsigned spin;
    bool done, abandoned;
    co__waiter_t *head, *tail;
} co__job_t;
/* Runs j->run(j) on a worker thread, parking the caller until it is done
 * (a thread without a hub runs it itself).  0: done, the caller owns j.
 * ETIMEDOUT / ECANCELED / EAGAIN (no thread could be started): j is the
 * pool's, which calls j->drop after run.  Switches: yes. */
int co__offload(co__job_t *j, int64_t deadline, const char *what);

/* debug.c: the hub registry and the environment switches, at hub creation. */
void co__debug_hub_created(co__hub_t *h);
void co__debug_hub_exiting(co__hub_t *h);
/* In a fork child: locks other threads may have held are made anew. */
void co__wait_fork_child(void);
void co__lockdep_fork_child(void);
/* debug.c: answers a DUMP message (on the hub's thread). */
void co__dump_answer(co__hub_t *h, co__msg_t *m);

#endif
