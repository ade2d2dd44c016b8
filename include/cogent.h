/* cogent — Python's concurrency toolkit for C on Linux.
 *
 * One header, grouped by concept.  Conventions that hold for every call
 * (see docs/conventions.md):
 *
 *  - Errors are POSIX-shaped: -1 (or NULL) and errno.  ETIMEDOUT at the
 *    deadline, ECANCELED when the caller was killed, EDEADLK when the call
 *    would block forever.  Programming errors (double join, a NULL handle)
 *    abort with a message; those checks are never compiled out.
 *  - Time is an absolute deadline in milliseconds of co_now(): -1 means no
 *    deadline, 0 means do not block, co_now() + 500 is "within 500 ms";
 *    any other negative value has passed.  The few relative durations end
 *    in _ms (co_sleep_ms).
 *  - Every call that may block is a cancellation point and says so
 *    ("Switches: yes").  A call marked "Switches: no" never gives up the CPU.
 *  - Coroutines never move between threads.  Each thread gets its own hub,
 *    created the first time it is needed; the thread's own stack is its
 *    main coroutine.
 *  - Names: co_<noun>_<verb>; _new/_free (cogent allocates), _init/_destroy
 *    (you do, or a CO_*_INIT initialiser); _opts_t structs last, NULL for
 *    defaults; _with = the form taking options; _at = the function behind
 *    a macro that records the caller's file and line.  The full table is
 *    in docs/conventions.md.
 *
 * Contents, lowest layer first:
 *   time, stacks          co_now, stack sizes and protection
 *   fibers, generators    greenlet-style switches; yield/send/next/close
 *   coroutines, groups    spawn/join/kill/sleep on the thread's hub; pools
 *   hub                   the thread's scheduler, introspection
 *   synchronisation       lock, rlock, semaphore, event, condition, barrier
 *   queues                FIFO/LIFO/priority, bounded, closable, joinable
 *   I/O, sockets          cooperative fd calls; TCP/Unix; DNS off the hub
 *   stream server         a handler coroutine per connection
 *   HTTP, TLS             libcurl on the hub; OpenSSL streams (libcogent-http)
 *   timeout scopes        a deadline around any code
 *   threads               threading.Thread: names, daemon, join, timers
 *   futures               one future for every executor and for promises
 *   executors             thread pools: submit, map, shutdown, run from a coroutine
 *   hub pools             a hub per thread, coroutines spawned on any of them
 *   processes             start/join/kill children, run programs, reaping
 *   pipes                 framed byte messages between processes
 *   process-shared        locks, events, queues, values, maps across processes
 *   process pool          Pool / ProcessPoolExecutor over worker processes
 *   signals               co_signal_wait instead of async handlers
 *   debugging             dumps, the blocking monitor, lock-order checks
 */
#ifndef COGENT_H
#define COGENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/select.h> /* sigset_t, also under strict ISO C (POSIX puts it here too) */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

#if defined(COGENT_BUILDING)
#define CO_API __attribute__((visibility("default")))
#else
#define CO_API
#endif

#define CO_VERSION_MAJOR 0
#define CO_VERSION_MINOR 1
#define CO_VERSION_PATCH 0

/* ------------------------------------------------------------------ time */

/* Milliseconds of CLOCK_MONOTONIC.  Deadlines are values of this clock.
 * Switches: no. */
CO_API int64_t co_now(void);

/* ---------------------------------------------------------------- stacks */

/* Default stack size for fibers, generators and coroutines: 64 KiB of
 * address space, committed page by page as it is touched.  The environment
 * variable COGENT_STACK_SIZE (bytes, or with a K/M suffix) overrides it
 * for the process.  See docs/stacks.md. */
#define CO_STACK_DEFAULT ((size_t)64 * 1024)
/* Smallest stack accepted (smaller requests fail with EINVAL). */
#define CO_STACK_MIN ((size_t)16 * 1024)

/* How a stack is protected against overflow (docs/stacks.md):
 *  CO_STACK_GUARD   an inaccessible page below the stack: an overflow
 *                   faults at once and is reported, then the process aborts.
 *  CO_STACK_CANARY  no guard page (stacks carved from shared mappings so a
 *                   million fit in the kernel's map budget): a canary word
 *                   at the bottom and the stack pointer are checked on every
 *                   switch away and at exit; an overflow is reported then. */
typedef enum co_stack_mode { CO_STACK_GUARD = 1, CO_STACK_CANARY = 2 } co_stack_mode_t;

typedef struct co_stack_stats {
    size_t guarded;      /* stacks mapped with a guard page (in use, cached or pooled) */
    size_t canary;       /* stacks mapped in canary mode (in use, cached or pooled) */
    size_t cached;       /* free stacks kept for reuse by this thread, pages and all */
    size_t pooled;       /* free stacks kept for reuse by any thread, memory given back */
    size_t guard_budget; /* how many guarded stacks the process may hold */
} co_stack_stats_t;

/* Fills *st with the calling thread's view of the stack allocator.
 * Switches: no. */
CO_API void co_stack_stats(co_stack_stats_t *st);

/* ---------------------------------------------------------------- fibers */
/* A fiber is a raw stackful coroutine, like Python's greenlet: nothing runs
 * it but an explicit co_fiber_switch.  docs/fiber.md. */

typedef struct co_fiber co_fiber_t;

/* Body of a fiber.  `value` is what the first switch into it handed over;
 * what it returns is handed to its parent, which resumes. */
typedef void *(*co_fiber_fn)(co_fiber_t *self, void *value);

typedef struct co_fiber_opts {
    size_t stack_size; /* 0: the default (CO_STACK_DEFAULT) */
} co_fiber_opts_t;

/* Creates a fiber that will run fn when first switched to.  Its parent is
 * the fiber current at creation.  `ud` is a pointer for the caller,
 * returned by co_fiber_data.  opts may be NULL (defaults).
 * Returns NULL with errno EINVAL (fn NULL, stack_size < CO_STACK_MIN) or
 * ENOMEM.  Switches: no. */
CO_API co_fiber_t *co_fiber_new(co_fiber_fn fn, void *ud, const co_fiber_opts_t *opts);

/* Frees a fiber that is not running: not started, ended, or suspended.
 * A suspended fiber's stack is released without running anything on it:
 * whatever its frames own is the caller's to clean up.  Freeing the
 * current fiber, or one on the chain that would be resumed when it ends,
 * aborts.  NULL is a no-op.  Switches: no. */
CO_API void co_fiber_free(co_fiber_t *f);

/* Suspends the current fiber and runs `target`, handing it `value`: a fresh
 * target starts fn(target, value); a suspended one sees its own pending
 * co_fiber_switch return `value`.  Returns the value handed over by
 * whichever switch (or ended child) resumes the caller.  Switching to an
 * ended fiber aborts; switching to yourself returns `value` at once.
 * Fibers belong to the thread that created them.  Switches: yes (to
 * target only; this is not a hub operation and never a cancellation point). */
CO_API void *co_fiber_switch(co_fiber_t *target, void *value);

/* The running fiber: the thread's main fiber when none was switched to.
 * Switches: no. */
CO_API co_fiber_t *co_fiber_current(void);

/* The fiber resumed when f ends (NULL for a thread's main fiber).
 * Switches: no. */
CO_API co_fiber_t *co_fiber_parent(const co_fiber_t *f);
/* Changes f's parent.  Returns -1 with EINVAL if that would make a cycle
 * or the parent has ended.  Switches: no. */
CO_API int co_fiber_set_parent(co_fiber_t *f, co_fiber_t *parent);
/* State and the `ud` given at creation.  Switches: no. */
CO_API bool co_fiber_started(const co_fiber_t *f);
CO_API bool co_fiber_ended(const co_fiber_t *f);
CO_API void *co_fiber_data(const co_fiber_t *f);

/* ------------------------------------------------------------ generators */
/* A generator is a fiber driven by send/next, like a Python generator
 * coroutine.  docs/generator.md. */

typedef struct co_gen co_gen_t;

/* Body of a generator: produce values with co_gen_yield; what it returns
 * is the generator's final value (Python's StopIteration.value). */
typedef void *(*co_gen_fn)(co_gen_t *g, void *arg);

typedef struct co_gen_opts {
    size_t stack_size; /* 0: the default (CO_STACK_DEFAULT) */
} co_gen_opts_t;

/* Creates a suspended generator; nothing runs until the first next/send.
 * opts may be NULL (defaults).  NULL with EINVAL (fn NULL, stack_size <
 * CO_STACK_MIN) or ENOMEM.  Switches: no. */
CO_API co_gen_t *co_gen_new(co_gen_fn fn, void *arg, const co_gen_opts_t *opts);

/* Resumes g with `in` (what its pending co_gen_yield returns) and waits for
 * its next value.  Returns 1 and stores the yielded value in *out (out may
 * be NULL); returns 0 when the generator returned, storing its final value;
 * returns -1 with errno EPIPE if it had already finished or was closed,
 * EINVAL if `in` is not NULL on the first resume (as in Python, a fresh
 * generator has no yield to receive it).  Resuming a generator from inside
 * itself aborts.  Switches: yes, into the generator and back. */
CO_API int co_gen_send(co_gen_t *g, void *in, void **out);

/* co_gen_send(g, NULL, out). */
CO_API int co_gen_next(co_gen_t *g, void **out);

/* Inside the generator: hands `out` to the caller of send/next and
 * suspends.  Returns 0 and stores in *in (may be NULL) what the next send
 * passed.  Returns -1 with errno ECANCELED when the generator is being
 * closed: clean up and return (further yields fail the same way without
 * suspending).  Calling it outside g aborts.  Switches: yes. */
CO_API int co_gen_yield(co_gen_t *g, void *out, void **in);

/* Ends a suspended generator: its pending yield fails with ECANCELED and
 * it runs until it returns.  A generator never started is just marked
 * finished.  Returns 0, or -1 with EPIPE if it was already finished.
 * Switches: yes, when the generator was suspended. */
CO_API int co_gen_close(co_gen_t *g);

/* True once the generator returned or was closed.  Switches: no. */
CO_API bool co_gen_finished(const co_gen_t *g);

/* Closes (if needed) and frees g.  NULL is a no-op.  Switches: as close. */
CO_API void co_gen_free(co_gen_t *g);

/* ------------------------------------------------------------ coroutines */
/* Coroutines are fibers scheduled by the thread's hub: they run until they
 * block (sleep, join, I/O, a lock...), and the hub runs another.
 * docs/coroutine.md. */

typedef struct co_coro co_coro_t;
typedef struct co_group co_group_t;

typedef void *(*co_fn)(void *arg);

/* Whether a coroutine gets a stack of its own or is compact (docs/stacks.md:
 * it runs on a stack its hub shares between compact coroutines, and while
 * suspended keeps only the part of that stack it uses, copied aside: a
 * million idle ones fit in well under a gigabyte).  A compact coroutine's
 * own stack memory moves while it is suspended: no pointer to one of its
 * locals may be used by anyone else then (another coroutine, a thread, a
 * waiter on a lock or queue that lives in its locals) — an object of
 * cogent's found there aborts with a message.  It cannot use fibers or
 * generators. */
typedef enum co_compact {
    CO_COMPACT_DEFAULT = 0, /* as COGENT_COMPACT says (own stack if unset) */
    CO_COMPACT_NO,          /* a stack of its own */
    CO_COMPACT_YES,         /* compact */
} co_compact_t;

typedef struct co_spawn_opts {
    size_t stack_size;    /* 0: the default (CO_STACK_DEFAULT); compact: at most the hub's shared stack */
    const char *name;     /* copied; NULL: none (shown as "#<id>") */
    co_compact_t compact; /* CO_COMPACT_DEFAULT: the process default */
} co_spawn_opts_t;

/* Creates a coroutine that runs fn(arg) on the calling thread's hub.  It
 * is queued, not run: it starts when the caller next blocks or yields,
 * and gets its stack then (docs/stacks.md).  The handle must be joined or
 * detached exactly once; after that it is invalid, like a joined
 * pthread_t (docs/conventions.md).  NULL with EINVAL (fn NULL, bad stack
 * size) or ENOMEM (no memory for its record).  Switches: no.
 *
 *   co_spawn(fn, arg)             defaults
 *   co_spawn_with(fn, arg, opts)  with options (may be a compound literal:
 *                                 &(co_spawn_opts_t){.name = "w", ...})
 *
 * Both are macros that record the caller's file and line for co_dump;
 * co_spawn_at is the function behind them (file may be NULL). */
#define co_spawn(fn, arg)           co_spawn_at((fn), (arg), NULL, __FILE__, __LINE__)
#define co_spawn_with(fn, arg, ...) co_spawn_at((fn), (arg), (__VA_ARGS__), __FILE__, __LINE__)
CO_API co_coro_t *co_spawn_at(co_fn fn, void *arg, const co_spawn_opts_t *opts, const char *file, int line);

/* Waits until c has returned, stores its return value in *result (may be
 * NULL) and frees the handle.  Errors (the handle stays valid):
 *   ETIMEDOUT  the deadline passed first;
 *   ECANCELED  the caller was killed;
 *   EDEADLK    c is the caller itself, or nothing could ever wake it;
 *   EINVAL     c is a thread's main coroutine (it never ends);
 *   ENOMEM     c runs on another thread and no message could be made;
 *              or c never ran: it gets its stack when it first runs, and
 *              none could be had then (its result is NULL, and the
 *              handle is freed as by a successful join).
 * Joining a handle already joined or detached aborts.  c may live on
 * another thread's hub.  Switches: yes, unless c has already finished. */
CO_API int co_join(co_coro_t *c, int64_t deadline, void **result);

/* Waits until c has finished without consuming the handle.  Errors as
 * co_join.  Switches: yes, unless c has already finished. */
CO_API int co_wait(co_coro_t *c, int64_t deadline);

/* Waits until all n coroutines have finished, then joins them all and
 * stores their results in results[i] (results may be NULL).  On error
 * (ETIMEDOUT, ECANCELED, EDEADLK, ENOMEM for a message) none is joined;
 * if they all finished but some never ran (no stack, as co_join), all are
 * joined and it fails with ENOMEM.  cs NULL with n > 0 aborts.
 * Switches: yes. */
CO_API int co_joinall(co_coro_t *const *cs, size_t n, int64_t deadline, void **results);

/* Gives up the handle: c frees itself when it returns, its result is
 * dropped.  Detaching twice or after join aborts.  Switches: no. */
CO_API void co_detach(co_coro_t *c);

/* Cancels c: its current blocking call, and every later one, fails with
 * ECANCELED; c is expected to clean up and return.  A coroutine killed
 * before it started never runs and finishes with result NULL.  Killing a
 * finished coroutine does nothing.  c may live on another thread's hub.
 * Switches: no. */
CO_API void co_kill(co_coro_t *c);

/* True if c was killed before it finished.  Switches: no. */
CO_API bool co_killed(const co_coro_t *c);
/* True once c has returned (or was killed before it started); its result
 * is then ready for co_join.  Any thread.  Switches: no. */
CO_API bool co_finished(const co_coro_t *c);

/* Lets the other runnable coroutines of this hub run, then returns 0
 * (Go's runtime.Gosched, gevent.sleep(0)).  -1 with ECANCELED if the
 * caller was killed.  Switches: yes. */
CO_API int co_yield_now(void);

/* Sleeps until the deadline (a value of co_now(); one already passed
 * just yields).  0, or -1 with errno:
 *   ECANCELED  the caller was killed (also before it slept);
 *   ENOMEM     the deadline could not be armed.
 * Switches: yes. */
CO_API int co_sleep_until(int64_t deadline);
/* Sleeps for at least ms milliseconds of real time (ms <= 0 yields): the
 * deadline is co_now() + ms + 1, as co_now() counts whole milliseconds.
 * As co_sleep_until. */
CO_API int co_sleep_ms(int64_t ms);

/* The running coroutine (the thread's main coroutine outside any spawned
 * one).  Never NULL.  Switches: no. */
CO_API co_coro_t *co_current(void);
/* A process-wide unique id, > 0; main coroutines have ids too.
 * Switches: no. */
CO_API uint64_t co_id(const co_coro_t *c);
/* The name given at spawn (valid while c is), "main", or for an unnamed
 * coroutine "#<id>" in a per-thread buffer that the next such call
 * overwrites.  Switches: no. */
CO_API const char *co_name(const co_coro_t *c);

/* ---------------------------------------------------------------- groups */
/* A group collects coroutines of one hub: spawn into it, join them all,
 * kill them all, take them in completion order (asyncio.as_completed),
 * and optionally cap how many run at once (gevent.pool.Pool).  A group
 * and its members belong to the creating thread.  docs/coroutine.md. */

typedef struct co_group_opts {
    size_t limit;          /* how many members run at once; 0: no limit */
    co_spawn_opts_t spawn; /* the options of members spawned without their own */
} co_group_opts_t;

/* limit 0 = unlimited.  NULL with ENOMEM.  Switches: no. */
CO_API co_group_t *co_group_new(size_t limit);
/* With options (may be NULL: as co_group_new(0)); spawn.name is copied.
 * NULL with EINVAL (a bad stack size) or ENOMEM.  Switches: no. */
CO_API co_group_t *co_group_new_with(const co_group_opts_t *opts);

/* Frees an empty group (every member joined or detached); freeing a group
 * that still has members aborts.  NULL is a no-op.  Switches: no. */
CO_API void co_group_free(co_group_t *g);

/* Spawns fn(arg) into g, first waiting until the deadline for a free slot
 * when the group is at its limit (members that finished do not hold a
 * slot).  NULL with errno as co_spawn, or EAGAIN (deadline 0 and no free
 * slot), ETIMEDOUT, ECANCELED while waiting.  Macros recording the
 * caller's place, as co_spawn / co_spawn_with:
 *
 *   co_group_spawn(g, fn, arg, deadline)
 *   co_group_spawn_with(g, fn, arg, deadline, opts)
 *
 * Switches: only when it has to wait for a slot. */
#define co_group_spawn(g, fn, arg, deadline) co_group_spawn_at((g), (fn), (arg), (deadline), NULL, __FILE__, __LINE__)
#define co_group_spawn_with(g, fn, arg, deadline, ...)                                                                 \
    co_group_spawn_at((g), (fn), (arg), (deadline), (__VA_ARGS__), __FILE__, __LINE__)
CO_API co_coro_t *co_group_spawn_at(co_group_t *g, co_fn fn, void *arg, int64_t deadline, const co_spawn_opts_t *opts,
                                    const char *file, int line);

/* Waits for every member to finish, then joins them (results dropped).
 * Members taken with co_group_next stay the caller's to join.
 * ETIMEDOUT / ECANCELED: nothing was joined.  Switches: yes. */
CO_API int co_group_join(co_group_t *g, int64_t deadline);

/* Kills every member still running.  Switches: no. */
CO_API void co_group_kill(co_group_t *g);

/* Takes the next member to finish, in completion order, and hands it to
 * the caller (join it for its result; it leaves the group).  Returns NULL
 * with errno ENOENT when the group has no member left to wait for, or
 * ETIMEDOUT / ECANCELED.  Switches: yes, unless one has finished already. */
CO_API co_coro_t *co_group_next(co_group_t *g, int64_t deadline);

/* Members not yet joined or taken: running plus finished.  Switches: no. */
CO_API size_t co_group_size(const co_group_t *g);
/* Members still running.  Switches: no. */
CO_API size_t co_group_running(const co_group_t *g);

/* ------------------------------------------------------------------- hub */

/* The poller backend the calling thread's hub uses: "epoll" or "poll"
 * (environment variable COGENT_POLLER picks it; epoll by default).
 * Creates the hub if needed.  Switches: no. */
CO_API const char *co_hub_poller(void);

typedef struct co_hub_stats {
    uint64_t switches; /* context switches made by this hub */
    size_t coroutines; /* live coroutines, the main one excluded */
    size_t runnable;   /* in the run queue */
    size_t timers;     /* pending deadlines */
} co_hub_stats_t;

/* Statistics of the calling thread's hub (zeros if it has none).
 * Switches: no. */
CO_API void co_hub_stats(co_hub_stats_t *st);

/* ------------------------------------------------------ synchronisation */
/* Locks, semaphores, events, conditions and barriers (Python's threading
 * and gevent.lock).  One object works between coroutines of one hub,
 * coroutines of different threads' hubs, and plain threads without a hub:
 * a coroutine that waits parks only itself, a thread without a hub blocks.
 * Every wait takes a deadline, is a cancellation point, and waiters are
 * served in FIFO order.  docs/sync.md.
 *
 * The structs below are public only so that they can live in your own
 * structs and globals with a static initialiser (positional, so that C
 * and every C++ standard accept them); their fields are private.
 * Zero-filled memory is a valid lock, rlock, event and (unbounded, 0)
 * semaphore.  An object must not be copied or moved once used. */

/* Private: the list of waiters every sync object holds (src/list.h). */
struct co__lnode;
struct co__list {
    struct co__lnode *head, *tail;
};

typedef struct co_lock {
    uintptr_t _state; /* owner | flags */
    unsigned _spin;
    unsigned _flags;
    struct co__list _waiters;
    const char *_name; /* for reports; NULL: shown by address */
    const char *_file; /* where the owner took it */
    int _line;
} co_lock_t;
#define CO_LOCK_INIT                                                                                                   \
    {                                                                                                                  \
        0, 0, 0, {0, 0}, 0, 0, 0                                                                                       \
    }
#define CO_LOCK_INIT_NAMED(str)                                                                                        \
    {                                                                                                                  \
        0, 0, 0, {0, 0}, (str), 0, 0                                                                                   \
    }

typedef struct co_rlock {
    co_lock_t _lock;
    unsigned long _count;
} co_rlock_t;
#define CO_RLOCK_INIT                                                                                                  \
    {                                                                                                                  \
        CO_LOCK_INIT, 0                                                                                                \
    }
#define CO_RLOCK_INIT_NAMED(str)                                                                                       \
    {                                                                                                                  \
        CO_LOCK_INIT_NAMED(str), 0                                                                                     \
    }

typedef struct co_sem {
    unsigned _spin;
    unsigned _bounded;
    long _value, _initial;
    struct co__list _waiters;
} co_sem_t;
#define CO_SEM_INIT(n)                                                                                                 \
    {                                                                                                                  \
        0, 0, (n), (n),                                                                                                \
        {                                                                                                              \
            0, 0                                                                                                       \
        }                                                                                                              \
    }
#define CO_BSEM_INIT(n)                                                                                                \
    {                                                                                                                  \
        0, 1, (n), (n),                                                                                                \
        {                                                                                                              \
            0, 0                                                                                                       \
        }                                                                                                              \
    }

typedef struct co_event {
    unsigned _spin;
    unsigned _set;
    struct co__list _waiters;
} co_event_t;
#define CO_EVENT_INIT                                                                                                  \
    {                                                                                                                  \
        0, 0,                                                                                                          \
        {                                                                                                              \
            0, 0                                                                                                       \
        }                                                                                                              \
    }

typedef struct co_cond {
    unsigned _spin;
    co_lock_t *_lock;
    struct co__list _waiters;
} co_cond_t;
#define CO_COND_INIT(lockp)                                                                                            \
    {                                                                                                                  \
        0, (lockp),                                                                                                    \
        {                                                                                                              \
            0, 0                                                                                                       \
        }                                                                                                              \
    }

typedef struct co_barrier {
    unsigned _spin;
    unsigned _parties, _count;
    unsigned _broken;
    struct co__list _waiters;
} co_barrier_t;
#define CO_BARRIER_INIT(n)                                                                                             \
    {                                                                                                                  \
        0, (n), 0, 0,                                                                                                  \
        {                                                                                                              \
            0, 0                                                                                                       \
        }                                                                                                              \
    }

/* ---- lock (threading.Lock, with owner checks) */

/* Initialises a lock (same as CO_LOCK_INIT); `name` (may be NULL, not
 * copied) is shown in reports.  Switches: no. */
CO_API void co_lock_init(co_lock_t *l, const char *name);
/* Checks that l is free with no waiter.  0, or -1 with EBUSY (then l is
 * untouched).  Switches: no. */
CO_API int co_lock_destroy(co_lock_t *l);
/* Takes l, waiting until the deadline (0: try once).  Errors:
 *   EAGAIN     deadline 0 and l is held, by another or by the caller
 *              (the try form only says "busy", as pthread_mutex_trylock);
 *   ETIMEDOUT  still held by another at the deadline;
 *   ECANCELED  the caller was killed;
 *   EDEADLK    with any other deadline: the caller already holds l
 *              (reported on stderr), waiting would close a cycle of waits
 *              (the cycle is reported), or nothing could ever release it;
 *   ENOMEM     no owner record could be made for the caller (its first
 *              lock only).
 * The owner is the calling coroutine (or the thread, outside any hub).
 * A macro recording the caller's file and line for reports; the function
 * behind it is co_lock_acquire_at (file may be NULL).
 * Switches: yes, when l is held by another. */
#define co_lock_acquire(l, deadline) co_lock_acquire_at((l), (deadline), __FILE__, __LINE__)
CO_API int co_lock_acquire_at(co_lock_t *l, int64_t deadline, const char *file, int line);
/* Releases l, handing it to the oldest waiter if any.  Releasing a lock
 * the caller does not hold aborts with a message.  Switches: no. */
CO_API void co_lock_release(co_lock_t *l);
/* True if someone holds l.  Switches: no. */
CO_API bool co_lock_locked(const co_lock_t *l);

/* ---- rlock (threading.RLock): re-entrant by its owner */

CO_API void co_rlock_init(co_rlock_t *r, const char *name);
/* 0, or -1 with EBUSY if held or waited on.  Switches: no. */
CO_API int co_rlock_destroy(co_rlock_t *r);
/* Takes r, or adds one level if the caller owns it already.  Errors as
 * co_lock_acquire (without the self-deadlock).  A macro, as
 * co_lock_acquire.  Switches: yes, when r is held by another. */
#define co_rlock_acquire(r, deadline) co_rlock_acquire_at((r), (deadline), __FILE__, __LINE__)
CO_API int co_rlock_acquire_at(co_rlock_t *r, int64_t deadline, const char *file, int line);
/* Drops one level; the last one releases r.  A non-owner aborts.
 * Switches: no. */
CO_API void co_rlock_release(co_rlock_t *r);
/* Levels the caller holds (0 if it is not the owner).  Switches: no. */
CO_API unsigned long co_rlock_count(const co_rlock_t *r);

/* ---- semaphore and bounded semaphore */

/* A semaphore starting at `value` (>= 0); bounded: releasing above the
 * initial value is an error.  Switches: no. */
CO_API void co_sem_init(co_sem_t *s, long value, bool bounded);
/* 0, or -1 with EBUSY if someone waits.  Switches: no. */
CO_API int co_sem_destroy(co_sem_t *s);
/* Takes one unit, waiting until the deadline.  Errors: EAGAIN (deadline 0,
 * none free), ETIMEDOUT, ECANCELED, EDEADLK (nothing could release one).
 * Switches: yes, when no unit is free. */
CO_API int co_sem_acquire(co_sem_t *s, int64_t deadline);
/* Gives one unit back (to the oldest waiter if any).  -1 with EINVAL, and
 * nothing changes, if s is bounded and already at its initial value.
 * Switches: no. */
CO_API int co_sem_release(co_sem_t *s);
/* Units free now.  Switches: no. */
CO_API long co_sem_value(const co_sem_t *s);

/* ---- event (threading.Event) */

CO_API void co_event_init(co_event_t *e);
/* 0, or -1 with EBUSY if someone waits.  Switches: no. */
CO_API int co_event_destroy(co_event_t *e);
/* Sets the flag and wakes every waiter.  Switches: no. */
CO_API void co_event_set(co_event_t *e);
/* Clears the flag.  Switches: no. */
CO_API void co_event_clear(co_event_t *e);
/* Switches: no. */
CO_API bool co_event_is_set(const co_event_t *e);
/* Returns 0 once the flag is set (at once if it is).  Errors: ETIMEDOUT
 * (deadline 0 included), ECANCELED, EDEADLK.  Switches: yes, unless set. */
CO_API int co_event_wait(co_event_t *e, int64_t deadline);

/* ---- condition (threading.Condition) over a co_lock_t */

/* A condition whose waits release and retake `lock`.  Switches: no. */
CO_API void co_cond_init(co_cond_t *c, co_lock_t *lock);
/* 0, or -1 with EBUSY if someone waits.  Switches: no. */
CO_API int co_cond_destroy(co_cond_t *c);
/* The caller must hold the lock (else abort).  Releases it, waits for a
 * notify, and takes the lock again before returning — also when it fails
 * with ETIMEDOUT or ECANCELED (EDEADLK: nothing could notify).  Taking it
 * back waits as long as it takes; if that would close a cycle of lock
 * waits (another holds the lock and waits for one the caller holds), no
 * return can be right: the cycle is reported and the process aborts.
 * Switches: yes. */
CO_API int co_cond_wait(co_cond_t *c, int64_t deadline);
/* Waits until pred(arg) is true (checked first, with the lock held).
 * 0 once it is; -1 with the errno of the wait that failed.  Switches: yes,
 * unless pred is true at once. */
CO_API int co_cond_wait_for(co_cond_t *c, bool (*pred)(void *arg), void *arg, int64_t deadline);
/* Wakes the oldest n waiters / all of them.  The caller should hold the
 * lock (as in Python; not checked).  Returns how many were woken.
 * Switches: no. */
CO_API size_t co_cond_notify(co_cond_t *c, size_t n);
CO_API size_t co_cond_notify_all(co_cond_t *c);

/* ---- barrier (threading.Barrier) */

/* A barrier for `parties` (>= 1) callers.  Switches: no. */
CO_API void co_barrier_init(co_barrier_t *b, unsigned parties);
/* 0, or -1 with EBUSY if someone waits.  Switches: no. */
CO_API int co_barrier_destroy(co_barrier_t *b);
/* Waits until `parties` callers have arrived; returns each one's arrival
 * index, 0 .. parties-1 (the last to arrive gets parties-1), and the
 * barrier is ready for the next round.  A wait that times out or is
 * cancelled breaks the barrier: that caller gets ETIMEDOUT / ECANCELED,
 * every other waiter -1 with EPIPE, and so does every later wait until
 * co_barrier_reset.  EDEADLK: the other parties can never arrive.
 * Switches: yes, unless the caller is the last to arrive. */
CO_API int co_barrier_wait(co_barrier_t *b, int64_t deadline);
/* Breaks the barrier (waiters fail with EPIPE) and makes it usable again.
 * Switches: no. */
CO_API void co_barrier_reset(co_barrier_t *b);
/* Breaks it for good (until reset).  Switches: no. */
CO_API void co_barrier_abort(co_barrier_t *b);
/* Callers waiting now; whether it is broken.  Switches: no. */
CO_API unsigned co_barrier_waiting(const co_barrier_t *b);
CO_API bool co_barrier_broken(const co_barrier_t *b);

/* ---------------------------------------------------------------- queues */
/* FIFO, LIFO and priority queues of pointers (queue.Queue, LifoQueue,
 * PriorityQueue, JoinableQueue; gevent.queue), bounded or not, shared
 * freely between coroutines of any hub and plain threads.  Items are
 * opaque pointers: the queue never dereferences or frees them.  An item
 * belongs to the queue from a successful put until a get returns it;
 * whatever close or free leaves inside is the caller's (co_queue_free
 * hands them to a callback).  docs/queue.md. */

typedef struct co_queue co_queue_t;

typedef enum co_queue_kind { CO_QUEUE_FIFO = 0, CO_QUEUE_LIFO, CO_QUEUE_PRIORITY } co_queue_kind_t;

typedef struct co_queue_opts {
    co_queue_kind_t kind;
    size_t maxsize; /* 0: unbounded */
    /* CO_QUEUE_PRIORITY only: a comparator for items (negative: a comes
     * out first).  NULL: the integer priority given to co_queue_put_prio
     * orders them, smallest first.  Equal items come out in put order. */
    int (*cmp)(const void *a, const void *b, void *ctx);
    void *cmp_ctx;
} co_queue_opts_t;

/* A new queue (opts NULL: unbounded FIFO).  NULL with EINVAL (unknown
 * kind, comparator on a non-priority queue) or ENOMEM.  Switches: no. */
CO_API co_queue_t *co_queue_new(const co_queue_opts_t *opts);
/* Frees q; items still inside are passed to drop (may be NULL).  Aborts
 * if anyone waits on q.  NULL is a no-op.  Switches: no. */
CO_API void co_queue_free(co_queue_t *q, void (*drop)(void *item));

/* Puts item, waiting until the deadline for room in a full bounded queue
 * (0: do not wait).  A waiting getter receives it directly.  Errors:
 *   EAGAIN     full and deadline 0 (the nowait form);
 *   ETIMEDOUT  still full at the deadline;
 *   EPIPE      the queue is closed (also when closed while waiting);
 *   ECANCELED  the caller was killed while waiting;
 *   ENOMEM     an unbounded queue could not grow;
 *   EDEADLK    nothing could ever make room.
 * On error the item is not in the queue.  Switches: yes, when full. */
CO_API int co_queue_put(co_queue_t *q, void *item, int64_t deadline);
/* As co_queue_put with an integer priority (smaller first) for a priority
 * queue without comparator; other queues ignore prio.  Switches: as put. */
CO_API int co_queue_put_prio(co_queue_t *q, void *item, int64_t prio, int64_t deadline);
/* Takes the next item into *item, waiting until the deadline.  Errors:
 *   EAGAIN     empty and deadline 0;  ETIMEDOUT  still empty;
 *   EPIPE      closed and empty (items left at close are still returned);
 *   ECANCELED  killed while waiting: no item was taken;
 *   EDEADLK    nothing could ever put one.
 * Switches: yes, when empty. */
CO_API int co_queue_get(co_queue_t *q, void **item, int64_t deadline);
/* The nowait forms: deadline 0. */
CO_API int co_queue_put_nowait(co_queue_t *q, void *item);
CO_API int co_queue_get_nowait(co_queue_t *q, void **item);
/* Closes q: puts fail with EPIPE from now on, waiting putters too; gets
 * drain what is left, then fail with EPIPE.  Idempotent.  Switches: no. */
CO_API void co_queue_close(co_queue_t *q);
CO_API bool co_queue_closed(const co_queue_t *q);
/* Items inside now; maxsize reached (false if unbounded).  Switches: no. */
CO_API size_t co_queue_size(const co_queue_t *q);
CO_API bool co_queue_empty(const co_queue_t *q);
CO_API bool co_queue_full(const co_queue_t *q);

/* Joinable use: every successful put counts one unfinished task;
 * task_done marks one finished.  -1 with EINVAL (nothing changes) if
 * called more times than items were put.  Switches: no. */
CO_API int co_queue_task_done(co_queue_t *q);
/* Waits until every item put has been marked done.  Errors: ETIMEDOUT,
 * ECANCELED, EDEADLK.  Switches: yes, unless all are done. */
CO_API int co_queue_join(co_queue_t *q, int64_t deadline);
/* Tasks put and not yet marked done.  Switches: no. */
CO_API size_t co_queue_unfinished(const co_queue_t *q);

/* ------------------------------------------------------------------- I/O */
/* Cooperative I/O on file descriptors (docs/io.md).  Each call behaves
 * like the system call of the same name, except that where it would block
 * it parks only the calling coroutine until the fd is ready, the deadline
 * passes or the coroutine is killed.  On a thread without a hub they
 * block the thread (a deadline still holds).  Regular files never wait.
 *
 * Return values and errno are the system call's, plus:
 *   EAGAIN     deadline 0, or MSG_DONTWAIT in a call's flags, and the
 *              call would block (the try form);
 *   ETIMEDOUT  the deadline passed first (nothing was transferred);
 *   ECANCELED  the caller was killed;
 *   EBADF      fd is not open, or was closed with co_close while waiting.
 * No call raises SIGPIPE, whatever the descriptor: a socket whose peer
 * has gone, or a pipe or FIFO without a reader, gives EPIPE.  (On a pipe,
 * SIGPIPE is held off in the calling thread for that one system call; the
 * program's disposition and signal mask are left as they were.)
 *
 * cogent never changes the flags of a descriptor it did not make:
 * O_NONBLOCK belongs to the open file, which other processes may share
 * (a terminal, a shell pipeline's pipe).  On a descriptor left blocking,
 * each try uses a non-blocking form of its own (MSG_DONTWAIT, RWF_NOWAIT,
 * or a poll first; docs/io.md has the details and the limits).  The first
 * wait on a descriptor registers it with the hub's poller: a descriptor
 * cogent has seen must be closed with co_close (or handed back with
 * co_fd_forget before another close), so that its number can be reused
 * safely.  Descriptors made by cogent (co_accept, co_tcp_*, co_unix_*,
 * co_socketpair) are non-blocking and close-on-exec from the start.
 * Switches: yes. */
CO_API ssize_t co_read(int fd, void *buf, size_t n, int64_t deadline);
CO_API ssize_t co_write(int fd, const void *buf, size_t n, int64_t deadline);
/* Writes all n bytes, across partial writes, by the one deadline.  0, or
 * -1 with errno; *written (may be NULL) says how many bytes went out
 * either way.  Switches: yes. */
CO_API int co_write_all(int fd, const void *buf, size_t n, size_t *written, int64_t deadline);
CO_API ssize_t co_readv(int fd, const struct iovec *iov, int iovcnt, int64_t deadline);
CO_API ssize_t co_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline);
CO_API ssize_t co_recv(int fd, void *buf, size_t n, int flags, int64_t deadline);
CO_API ssize_t co_send(int fd, const void *buf, size_t n, int flags, int64_t deadline);
CO_API ssize_t co_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *fromlen,
                           int64_t deadline);
CO_API ssize_t co_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen,
                         int64_t deadline);
CO_API ssize_t co_recvmsg(int fd, struct msghdr *msg, int flags, int64_t deadline);
CO_API ssize_t co_sendmsg(int fd, const struct msghdr *msg, int flags, int64_t deadline);
/* Accepts a connection; the new fd is non-blocking and close-on-exec.
 * addr/addrlen may be NULL.  Switches: yes. */
CO_API int co_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline);
/* Connects a socket, waiting for the handshake.  0, or -1 with errno
 * (ECONNREFUSED; ETIMEDOUT: the socket is then half-open, close it).
 * Switches: yes. */
CO_API int co_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline);
/* Waits until fd is readable / writable (or has an error or hang-up to
 * report).  0, or -1 with errno.  Switches: yes. */
CO_API int co_wait_readable(int fd, int64_t deadline);
CO_API int co_wait_writable(int fd, int64_t deadline);
/* poll(2) for coroutines: waits until one of the fds is ready or the
 * deadline; fills revents.  The number of ready fds, 0 at the deadline
 * (as poll does), or -1 with errno (ECANCELED, ENOMEM, EINVAL).
 * Negative fds are skipped, as poll does.  Switches: yes. */
CO_API int co_poll(struct pollfd *fds, nfds_t nfds, int64_t deadline);
/* Closes fd: coroutines waiting on it (any thread) wake with EBADF, and
 * no poller watches it any more before the number can be reused.  0, or
 * -1 with errno (close's).  Switches: no. */
CO_API int co_close(int fd);
/* Makes cogent forget fd (waiters wake with EBADF, pollers stop watching
 * it) without closing it.  Switches: no. */
CO_API void co_fd_forget(int fd);
/* Default time limit for every wait on fd whose own deadline is -1 (as
 * Python's socket.settimeout): a duration, ms >= 0 sets it, a negative ms
 * removes it.  0, or -1 with EBADF.  Switches: no. */
CO_API int co_fd_set_timeout_ms(int fd, int64_t ms);

/* --------------------------------------------------------------- sockets */
/* TCP and Unix-domain sockets and name resolution (docs/net.md).  Every
 * descriptor returned is non-blocking and close-on-exec; close it with
 * co_close.  On failure these calls return -1 with errno and leave a
 * one-line description for co_net_error(), e.g.
 *   "connect to nosuch.test:80: Name or service not known". */

typedef struct co_listen_opts {
    int backlog;    /* 0: SOMAXCONN */
    bool reuseport; /* SO_REUSEPORT: several listeners share the port */
} co_listen_opts_t;

/* Listens on host:port; SO_REUSEADDR is set.  host: NULL or "" = every
 * IPv4 address, "::" every IPv6 one, a numeric address, or a name from
 * /etc/hosts ("localhost" is the loopback address even if the file lacks
 * it).  Listening never asks DNS (it has no deadline to hold): any other
 * name fails at once with EINVAL.  port 0 = any free port (see
 * co_socket_port).  opts may be NULL.  The listening fd, or -1 with errno
 * (EADDRINUSE, EACCES, EINVAL...).  Switches: no. */
CO_API int co_tcp_listen(const char *host, int port, const co_listen_opts_t *opts);
/* Connects to host:port, trying each address the name resolves to until
 * one answers, all by the deadline (the name lookup's share included, on
 * every thread: see co_getaddrinfo); TCP_NODELAY is set.  The connected
 * fd, or -1 with errno (ECONNREFUSED, ETIMEDOUT, ENOENT for a name that
 * does not resolve, EAGAIN for a temporary resolver failure...).
 * Switches: yes. */
CO_API int co_tcp_connect(const char *host, int port, int64_t deadline);
/* Unix-domain stream sockets; the path must fit sockaddr_un
 * (ENAMETOOLONG otherwise).  listen replaces an existing file only if it
 * is a socket nobody answers on (a stale one); a live socket gives
 * EADDRINUSE, and anything else at the path (a regular file, directory,
 * FIFO, device, or a symbolic link, even to a stale socket) gives EEXIST
 * and is left alone, co_net_error() saying what it is ("listen on
 * /tmp/data.txt: the path is a regular file, not a socket").  opts may be
 * NULL; reuseport is ignored.  Switches: connect yes, listen no. */
CO_API int co_unix_listen(const char *path, const co_listen_opts_t *opts);
CO_API int co_unix_connect(const char *path, int64_t deadline);
/* A connected pair of Unix stream sockets.  0, or -1 with errno.
 * Switches: no. */
CO_API int co_socketpair(int sv[2]);
/* The local port of a bound socket, or -1 with errno.  Switches: no. */
CO_API int co_socket_port(int fd);
/* The last failure of a sockets call on this thread, as one line ("" if
 * none).  Switches: no. */
CO_API const char *co_net_error(void);

/* getaddrinfo(3) that never blocks the hub and keeps its deadline.
 * Numeric hosts, and names /etc/hosts answers (when nsswitch.conf asks
 * files first), are answered at once on the calling thread.  Other
 * lookups run on a small worker pool while the caller waits: a coroutine
 * parks; a thread without a hub sleeps (it gets no hub), or with deadline
 * -1 makes the lookup itself.  Returns getaddrinfo's code (0,
 * EAI_NONAME...; gai_strerror describes it); EAI_SYSTEM with errno
 * ETIMEDOUT or ECANCELED when the deadline passed or the caller was
 * killed first, EAGAIN when no worker thread could be started.  Lookups
 * that hang (a resolver outage) never hold up later ones beyond the
 * pool's limits: see docs/net.md.  Free *res with freeaddrinfo.
 * Switches: yes. */
CO_API int co_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res,
                          int64_t deadline);
/* getnameinfo(3), likewise: answered at once when no host name is
 * wanted, with NI_NUMERICHOST, or for an address /etc/hosts names;
 * otherwise off the hub, with the deadline held.  Switches: yes. */
CO_API int co_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                          socklen_t servlen, int flags, int64_t deadline);

/* --------------------------------------------------------- stream server */
/* gevent's StreamServer: a listening socket, and a handler coroutine per
 * connection (docs/net.md). */

typedef struct co_server co_server_t;

/* Serves one connection; the server closes fd when it returns.  Return 0,
 * or an errno value to count the connection as an error. */
typedef int (*co_handler_fn)(int fd, void *arg);

typedef struct co_server_opts {
    const char *host;        /* NULL: every IPv4 address; a path with unix_socket */
    int port;                /* 0: any free port (co_server_port says which) */
    bool unix_socket;        /* host is a filesystem path */
    int backlog;             /* 0: SOMAXCONN */
    bool reuseport;          /* SO_REUSEPORT */
    size_t max_conns;        /* 0: no limit; beyond it new ones wait in the backlog */
    int64_t idle_timeout_ms; /* 0: none; else each wait on a connection fails with ETIMEDOUT after it */
    size_t stack_size;       /* of handler coroutines; 0: default */
} co_server_opts_t;

typedef struct co_server_stats {
    uint64_t accepted; /* connections accepted */
    uint64_t active;   /* handlers running now */
    uint64_t closed;   /* connections finished */
    uint64_t errors;   /* failed accepts, and handlers that returned an error */
} co_server_stats_t;

/* Listens now (so that the port is known at once; host as co_tcp_listen
 * takes it, or a path as co_unix_listen does) but does not accept yet.
 * NULL with errno (and co_net_error()).  Switches: no. */
CO_API co_server_t *co_server_new(co_handler_fn handler, void *arg, const co_server_opts_t *opts);
/* Starts accepting in a coroutine of the calling thread's hub; handlers
 * run on that hub.  0, or -1 with EINVAL (already started or stopped) /
 * ENOMEM.  Switches: no. */
CO_API int co_server_start(co_server_t *s);
/* Starts if needed, then waits until the server is stopped (gevent's
 * serve_forever).  0, or -1 with ECANCELED (the caller was killed; the
 * server keeps running).  Switches: yes. */
CO_API int co_server_serve(co_server_t *s);
/* Graceful stop, from a coroutine of the server's hub: stops accepting
 * (the listening socket is closed at once; a Unix socket's file is
 * removed if it is still the one the server bound), lets handlers finish
 * until the deadline, then kills those still running and waits for them.
 * A handler of this server may call it: it is neither waited for nor
 * killed by its own call, which returns once the other handlers are done
 * and lets it run on; co_server_serve returns after it too has returned.
 * Returns how many handlers were killed, or -1 with EINVAL (called from
 * another hub) or ECANCELED (the caller was killed while it waited: the
 * remaining handlers are killed at once, the last to end marks the
 * server stopped).  Idempotent: a second call waits until the server is
 * stopped (from one of its handlers: returns 0 at once).
 * Switches: yes. */
CO_API int co_server_stop(co_server_t *s, int64_t deadline);
/* The listening TCP port, or -1.  Switches: no. */
CO_API int co_server_port(const co_server_t *s);
/* Counters, readable from any thread.  Switches: no. */
CO_API void co_server_stats(const co_server_t *s, co_server_stats_t *st);
/* Stops the server if it runs (killing handlers at once) and frees it.
 * Not from one of its own handlers (aborts).  Switches: yes. */
CO_API void co_server_free(co_server_t *s);

/* ------------------------------------------------------------------ HTTP */
/* An HTTP(S) client on the hub (aiohttp's ClientSession, Go's
 * http.Client): libcurl's multi interface driven by the hub's poller and
 * timers.  A coroutine making a request parks only itself; every
 * coroutine of a hub shares that hub's libcurl multi handle, made on
 * first use: one connection pool (keep-alive, HTTP/2 multiplexing), one
 * DNS cache, one TLS session cache.  libcurl does the protocol: TLS with
 * certificate verification (OpenSSL), HTTP/2 (nghttp2), redirects,
 * compression, proxies from the environment (http_proxy, https_proxy,
 * no_proxy) as the curl tool does.  These functions live in
 * libcogent-http (pkg-config cogent-http, CMake cogent::cogent-http), so
 * that programs that do not use them do not load libcurl.
 * docs/http.md. */

/* A growable buffer: data is NUL-terminated (the NUL not counted in len)
 * once anything was stored, NULL before. */
typedef struct co_buf {
    char *data;
    size_t len;
    size_t cap;
} co_buf_t;

/* Hands a piece of the response body to the caller instead of storing
 * it; runs in the requesting coroutine (it may block: the transfer is
 * paused meanwhile).  Return 0, or an errno value to abort the request,
 * which then fails with that errno. */
typedef int (*co_http_data_fn)(const void *data, size_t n, void *arg);

typedef struct co_http_opts {
    const char *method;         /* NULL: GET, or POST when body is set */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; NULL: none */
    const void *body;           /* the request body, copied when the request starts */
    size_t body_len;
    int max_redirects;       /* 0: follow up to 10 (aiohttp's default); < 0: do not follow */
    bool no_compression;     /* do not ask for gzip/deflate/br/zstd */
    size_t max_body;         /* 0: no limit; a longer body fails with EFBIG */
    co_http_data_fn on_data; /* NULL: the body goes to resp->body */
    void *on_data_arg;
    /* The escape hatch: called with the easy handle (a CURL *) after
     * cogent's own options, before the transfer starts, to set any
     * CURLOPT_*.  Return 0, or an errno value to fail the request.  Do not
     * replace CURLOPT_WRITEFUNCTION, HEADERFUNCTION or PRIVATE. */
    int (*setup)(void *curl, void *arg);
    void *setup_arg;
} co_http_opts_t;

/* What a request got.  Fill with zeros before the first use (or after
 * co_http_resp_destroy); a request stores into it whatever it received,
 * even when it fails, and replaces what an earlier request left. */
typedef struct co_http_resp {
    long status;      /* the final response's status code; 0 if none came */
    int http_version; /* 10, 11, 20 or 30 */
    co_buf_t body;    /* the body, decompressed (unless on_data took it) */
    /* The final response's header lines, "Name: value", each ending in a
     * '\0' (len counts them all); co_http_header finds one. */
    co_buf_t headers;
    char *url;     /* the URL of the final response, after redirects */
    int curl_code; /* libcurl's CURLcode: 0 on success */
} co_http_resp_t;

/* Performs a request and waits for the whole response (status, headers,
 * body) until the deadline; the connection goes back to the hub's pool.
 * An HTTP error status (404, 500) is a response, not an error: check
 * resp->status.  opts may be NULL (a GET).  0, or -1 with errno, and
 * co_http_error() describing the failure in one line ("GET
 * http://127.0.0.1:1/: Failed to connect to 127.0.0.1 port 1 after 0 ms:
 * Couldn't connect to server (curl 7)"):
 *   EINVAL       url or resp NULL, a malformed URL, a scheme other than
 *                http and https (setup may allow more), an empty method,
 *                body_len without a body;
 *   ETIMEDOUT    the deadline passed (or a libcurl timeout set through
 *                setup): the transfer is aborted and freed;
 *   ECANCELED    the caller was killed: likewise;
 *   ECONNREFUSED, EHOSTUNREACH, ENETUNREACH: the connection failed;
 *   ENOENT       the host name does not resolve;
 *   EPROTO       TLS failed: handshake, or certificate verification (the
 *                message names the reason);
 *   ECONNRESET   the connection broke mid-response (or nothing came);
 *   ELOOP        more redirects than max_redirects;
 *   EFBIG        the body is longer than max_body;
 *   ENOMEM;  EIO for any other libcurl failure (curl_code says which);
 *   an errno returned by on_data or setup.
 * Switches: yes. */
CO_API int co_http_request(const char *url, const co_http_opts_t *opts, co_http_resp_t *resp, int64_t deadline);
/* A GET; a POST of len bytes of body with a Content-Type (NULL: none).
 * As co_http_request.  Switches: yes. */
CO_API int co_http_get(const char *url, co_http_resp_t *resp, int64_t deadline);
CO_API int co_http_post(const char *url, const void *body, size_t len, const char *content_type, co_http_resp_t *resp,
                        int64_t deadline);
/* Frees what the response holds and zeroes it.  Switches: no. */
CO_API void co_http_resp_destroy(co_http_resp_t *resp);
/* The value of the response's first header named `name` (any case), or
 * NULL; valid until the response is reused or destroyed.  Switches: no. */
CO_API const char *co_http_header(const co_http_resp_t *resp, const char *name);
/* A co_http_data_fn that writes each piece to the fd *(int *)arg with
 * co_write_all (no deadline of its own; the request's holds).  */
CO_API int co_http_to_fd(const void *data, size_t n, void *arg);
/* The last failure of an HTTP call on this thread, as one line ("" if
 * none).  Switches: no. */
CO_API const char *co_http_error(void);

/* Limits of the calling thread's connection pool (aiohttp's TCPConnector).
 * Zero-filled means the defaults. */
typedef struct co_http_config {
    size_t max_conns;      /* open connections in all; 0: 100; SIZE_MAX: no limit */
    size_t max_host_conns; /* per host and port; 0: no limit */
    int64_t dns_ttl_ms;    /* how long a name lookup is reused; 0: 10 s; < 0: not at all */
    bool no_multiplex;     /* never send requests side by side on one HTTP/2 connection */
    const char *ca_file;   /* PEM CAs HTTPS trusts instead of the system's store (copied); NULL: the system's */
} co_http_config_t;

/* Sets the limits of the calling thread's pool (NULL: the defaults).  At
 * most max_conns requests are handed to libcurl at once; the others wait
 * their turn, oldest first (their deadline holds meanwhile).  0, or -1
 * with EBUSY (requests are in progress on this thread) or ENOMEM.
 * Switches: no. */
CO_API int co_http_configure(const co_http_config_t *cfg);
/* Closes the calling thread's pool: its idle connections, its multi
 * handle and the coroutines driving it (made again by the next request).
 * A thread's pool is also closed when the thread exits.  0, or -1 with
 * EBUSY (requests still run on this thread).  Switches: yes. */
CO_API int co_http_close(void);

typedef struct co_http_stats {
    uint64_t requests;      /* started */
    uint64_t failed;        /* ended with an error (timeouts and kills included) */
    uint64_t pauses;        /* transfers paused because on_data was behind */
    uint64_t timer_sets;    /* libcurl timer changes (deletions included) */
    uint64_t stale_sockets; /* libcurl named a socket already closed: a REMOVE after the
                             * close, or a new socket under the old one's number */
    uint64_t sockets_seen;  /* times libcurl asked to watch a socket it had not named (or had dropped) */
    uint64_t connects;      /* connections opened (the rest were reused from the pool) */
    size_t in_flight;       /* requests in progress: in libcurl, or queued for a slot (max_conns) */
    size_t sockets;         /* sockets watched now */
    bool driving;           /* the hub's driver coroutines are running */
} co_http_stats_t;

/* Counters of the calling thread's pool (zeros if it has none).
 * Switches: no. */
CO_API void co_http_stats(co_http_stats_t *st);

/* ------------------------------------------------------------------- TLS */
/* TLS streams over cogent descriptors (Python's ssl.SSLSocket), with
 * OpenSSL: client and server, every read, write, handshake and shutdown
 * with a deadline and a cancellation point.  Certificates are verified
 * by default (the system's CA store, or a CA file), with the host name
 * checked and sent as SNI.  In libcogent-http.  docs/tls.md. */

typedef struct co_tls_ctx co_tls_ctx_t;
typedef struct co_tls co_tls_t;

typedef struct co_tls_ctx_opts {
    bool server;           /* accept side: cert_file and key_file are needed */
    const char *cert_file; /* PEM certificate (chain) */
    const char *key_file;  /* PEM private key */
    const char *ca_file;   /* PEM CAs to trust instead of the system's store */
    bool insecure;         /* client: do not verify the peer (tests only) */
    const char *alpn;      /* comma-separated protocols to offer/accept ("h2,http/1.1"); NULL none */
} co_tls_ctx_opts_t;

/* A context (Python's SSLContext): settings shared by many streams; TLS
 * 1.2 or later.  NULL with errno and co_tls_error(): ENOENT (a file
 * missing), EINVAL (a bad certificate or key, a key that does not match),
 * ENOMEM.  Switches: no. */
CO_API co_tls_ctx_t *co_tls_ctx_new(const co_tls_ctx_opts_t *opts);
/* Frees the context; streams made from it keep what they need.  NULL is
 * a no-op.  Switches: no. */
CO_API void co_tls_ctx_free(co_tls_ctx_t *ctx);

/* Runs the client handshake on the connected fd, for host (SNI and the
 * name the certificate must carry; NULL: no name check, no SNI).  The
 * stream uses fd but does not own it unless co_tls_free is asked to
 * close it.  NULL with errno and co_tls_error():
 *   EPROTO     the handshake failed; a verification failure names the
 *              reason ("certificate verify failed: self-signed
 *              certificate in certificate chain", "...: hostname mismatch");
 *   ECONNRESET the peer closed the connection during the handshake;
 *   ETIMEDOUT, ECANCELED, EINVAL (NULL ctx, a server context), ENOMEM.
 * Switches: yes. */
CO_API co_tls_t *co_tls_connect(co_tls_ctx_t *ctx, int fd, const char *host, int64_t deadline);
/* Runs the server handshake on an accepted fd.  As co_tls_connect.
 * Switches: yes. */
CO_API co_tls_t *co_tls_accept(co_tls_ctx_t *ctx, int fd, int64_t deadline);
/* Reads up to n bytes of application data: the count, 0 at the peer's
 * close_notify or at EOF, or -1 with errno (ETIMEDOUT, ECANCELED: the
 * stream is still usable; EPROTO, ECONNRESET).  Switches: yes. */
CO_API ssize_t co_tls_read(co_tls_t *s, void *buf, size_t n, int64_t deadline);
/* Writes all n bytes: n, or -1 with errno (ETIMEDOUT or ECANCELED after
 * a partial write leave the stream unusable: free it; EPIPE,
 * ECONNRESET, EPROTO).  Switches: yes. */
CO_API ssize_t co_tls_write(co_tls_t *s, const void *buf, size_t n, int64_t deadline);
/* Sends close_notify (and waits for the peer's until the deadline, if
 * `wait_peer`).  0, or -1 with errno.  Switches: yes. */
CO_API int co_tls_shutdown(co_tls_t *s, bool wait_peer, int64_t deadline);
/* Frees the stream, closing its fd with co_close if `close_fd`.  NULL is
 * a no-op.  Switches: no. */
CO_API void co_tls_free(co_tls_t *s, bool close_fd);
/* The stream's fd; the negotiated ALPN protocol ("" if none); the TLS
 * version ("TLSv1.3").  Switches: no. */
CO_API int co_tls_fd(const co_tls_t *s);
CO_API const char *co_tls_alpn(const co_tls_t *s);
CO_API const char *co_tls_version(const co_tls_t *s);
/* The server name (SNI) of the stream: on the server side, the one the
 * client asked for (virtual hosting); on the client side, the one sent;
 * "" if none (a client that connected by IP address sends none).
 * Switches: no. */
CO_API const char *co_tls_server_name(const co_tls_t *s);
/* The last TLS failure on this thread, one line ("" if none).
 * Switches: no. */
CO_API const char *co_tls_error(void);

/* The stream server serving TLS: pass co_tls_serve as the server's
 * handler and a co_tls_service_t (which must outlive the server) as its
 * argument.  Each connection is handshaken (within handshake_timeout_ms,
 * 0: 10 s) and handed to `handler` as a stream; the stream is shut down,
 * freed and its fd closed when the handler returns.  A failed handshake
 * counts as an error in the server's stats. */
typedef int (*co_tls_handler_fn)(co_tls_t *s, void *arg);
typedef struct co_tls_service {
    co_tls_ctx_t *ctx;
    co_tls_handler_fn handler;
    void *arg;
    int64_t handshake_timeout_ms;
} co_tls_service_t;
CO_API int co_tls_serve(int fd, void *service);

/* -------------------------------------------------------- timeout scopes */
/* A deadline around any code (gevent.Timeout, Trio's move_on_after): while
 * a scope lasts, every blocking cogent call of the calling coroutine —
 * joins, locks, queues, sleeps, I/O, HTTP requests, TLS, and the libc
 * calls libcogent-patch.so serves inside unmodified libraries — fails
 * with ETIMEDOUT once the scope's deadline has passed, and a wait already
 * in progress ends then.  Each call's effective deadline is the earliest
 * of its own and of every scope around it; scopes nest, the earliest
 * wins, and leaving one restores the one outside.  A scope belongs to the
 * coroutine that entered it (a thread's own stack, with or without a hub,
 * has its own); the calls that clean up after a kill are not cut short.
 * docs/coroutine.md.
 *
 *   co_scope_t sc;
 *   co_scope_enter(&sc, co_now() + 100);
 *   PGresult *res = PQexec(conn, "SELECT ...");   // fails after 100 ms
 *   bool expired = co_scope_leave(&sc);
 */
typedef struct co_scope {
    int64_t deadline; /* this scope's own, as given */
    int64_t _outer, _effective;
    uint64_t _owner;
} co_scope_t;

/* Enters a scope with `deadline` (an absolute time of co_now(); -1: none,
 * which still nests correctly).  s lives on the caller's stack until
 * co_scope_leave.  Switches: no. */
CO_API void co_scope_enter(co_scope_t *s, int64_t deadline);
/* Leaves the innermost scope, restoring the one outside, and returns
 * true if its deadline has passed (calls inside may have failed because
 * of it).  Leaving any other scope, or one of another coroutine, aborts
 * with a message.  Switches: no. */
CO_API bool co_scope_leave(co_scope_t *s);
/* The effective scope deadline of the caller now (-1: none).
 * Switches: no. */
CO_API int64_t co_scope_deadline(void);
/* --------------------------------------------------------------- threads */
/* Threads (Python's threading.Thread): each runs fn(arg) with a name and
 * an optional stack size; it gets a hub the first time it needs one, as
 * any thread does.  Joining from a coroutine parks only that coroutine;
 * from a thread without a hub it blocks the thread.  docs/thread.md.
 *
 * Exit.  At normal process exit — return from main, or exit() — cogent
 * waits for every non-daemon thread it started, as Python does: an atexit
 * handler registered when the first thread starts first shuts every
 * non-daemon pool down (its queued tasks still run), then joins those
 * threads.  Daemon threads are not waited for: they vanish with the
 * process.  _exit(), quick_exit() and a signal that kills the process
 * wait for nothing. */

typedef struct co_thread co_thread_t;

typedef struct co_thread_opts {
    const char *name;  /* copied; NULL: "Thread-<n>".  ps -L, top -H and co_dump show its first 15 bytes */
    size_t stack_size; /* 0: the system's default (RLIMIT_STACK, often 8 MiB); else at least CO_STACK_MIN */
    bool daemon;       /* true: not waited for at exit */
} co_thread_opts_t;

/* Starts a thread running fn(arg) and returns once it runs (its name and
 * id are set).  The signal mask is the caller's, as with pthread_create.
 * The handle stays valid until co_thread_free.  NULL with EINVAL (fn
 * NULL, stack_size too small), EAGAIN (the system's thread limit) or
 * ENOMEM.  Switches: no (it waits the few microseconds the thread takes
 * to start). */
CO_API co_thread_t *co_thread_new(co_fn fn, void *arg, const co_thread_opts_t *opts);
/* Gives up the handle.  A thread still running runs on (and, unless a
 * daemon, is still waited for at exit).  NULL is a no-op.  Switches: no. */
CO_API void co_thread_free(co_thread_t *t);
/* Waits until t has finished — fn returned and every coroutine of its
 * hub has ended — and stores fn's return value in *result (may be NULL;
 * NULL for a timer that was cancelled, or a thread that ended with
 * pthread_exit).  Unlike co_join, the handle stays valid: join as often
 * as you like.  Errors:
 *   ETIMEDOUT  the deadline passed first (deadline 0: t still runs);
 *   ECANCELED  the caller was killed;
 *   EDEADLK    t is the calling thread (the main thread joining itself too);
 *   EINVAL     t is the main thread, joined from another thread (it ends
 *              with the process);
 *   ESRCH      t does not exist in this process (a fork child).
 * Switches: yes, unless t has finished. */
CO_API int co_thread_join(co_thread_t *t, int64_t deadline, void **result);
/* True from co_thread_new until t has finished.  Switches: no. */
CO_API bool co_thread_alive(const co_thread_t *t);
/* The kernel's thread id (gettid; what ps -L and top -H show).
 * Switches: no. */
CO_API pid_t co_thread_id(const co_thread_t *t);
/* The name given (whole, even if the kernel's copy is cut), "MainThread"
 * or "Thread-<n>".  Valid while the handle is.  Switches: no. */
CO_API const char *co_thread_name(const co_thread_t *t);
/* Switches: no. */
CO_API bool co_thread_daemon(const co_thread_t *t);
/* The calling thread's record: the one co_thread_new made, the main
 * thread's, or for a thread cogent did not start a record of its own
 * ("Dummy-<n>", not listed by co_thread_enumerate) that lives as long as
 * the thread.  Borrowed: do not free it.  Never NULL.  Switches: no. */
CO_API co_thread_t *co_thread_current(void);
/* The main thread's record (the thread whose id is the process id; in a
 * fork child, the thread that forked).  Borrowed.  Switches: no. */
CO_API co_thread_t *co_thread_main(void);
/* threading.enumerate(): the main thread and every thread cogent started
 * that is still alive (pool workers included).  Stores up to cap of them
 * in out[], each a new reference to give back with co_thread_free, and
 * returns how many there are (which may exceed cap).  Switches: no. */
CO_API size_t co_thread_enumerate(co_thread_t **out, size_t cap);
/* threading.active_count(): what co_thread_enumerate would return.
 * Switches: no. */
CO_API size_t co_thread_count(void);
/* threading.Timer: a thread that waits delay_ms, then runs fn(arg) unless
 * co_thread_cancel came first.  Join and free it as any thread.  (On a
 * hub, a timer is just a coroutine that sleeps: spawn one that calls
 * co_sleep_ms(delay) and then fn, and cancel it with co_kill.)  Errors as
 * co_thread_new.  Switches: no. */
CO_API co_thread_t *co_thread_after(int64_t delay_ms, co_fn fn, void *arg, const co_thread_opts_t *opts);
/* Cancels a timer thread before its function runs.  0 if the function
 * will not run (cancelled now or before); -1 with EALREADY if it has
 * started, EINVAL if t is not a timer.  Switches: no. */
CO_API int co_thread_cancel(co_thread_t *t);

/* --------------------------------------------------------------- futures */
/* One future type (concurrent.futures.Future) for every executor and for
 * promises made by user code.  A future ends in one of two states: done
 * (with a result — a pointer, or bytes the future keeps a copy of — or
 * with an error: an errno value and an optional message), or cancelled
 * before it ran.  Any coroutine of any hub and any thread may wait on it:
 * a coroutine parks, a thread without a hub blocks.  docs/future.md. */

typedef struct co_future co_future_t;

typedef enum co_future_state {
    CO_FUTURE_PENDING = 0, /* not started (queued) */
    CO_FUTURE_RUNNING,     /* started: it can no longer be cancelled */
    CO_FUTURE_DONE,        /* finished, with a result or an error */
    CO_FUTURE_CANCELLED    /* cancelled before it started */
} co_future_state_t;

/* Runs once when a future completes (done or cancelled); see
 * co_future_add_done_callback for where. */
typedef void (*co_future_fn)(co_future_t *f, void *arg);

/* A pending promise, completed by whoever holds it with set_result,
 * set_bytes or set_error.  NULL with ENOMEM.  Switches: no. */
CO_API co_future_t *co_future_new(void);
/* Gives up the handle.  A task still queued or running goes on, its
 * result dropped (a pointer result is never freed by cogent); callbacks
 * still run.  Freeing a future someone waits on aborts.  NULL is a no-op.
 * Switches: no. */
CO_API void co_future_free(co_future_t *f);

/* Completes f with a pointer (value), with a copy of len bytes (the
 * result is then the future's copy, valid while f is, and
 * co_future_size says len), or with an error: err > 0, an errno value,
 * and msg (copied; may be NULL).  Waiters wake, callbacks run.
 * -1 with EALREADY if f was already done or cancelled (nothing changes),
 * EINVAL for err <= 0, ENOMEM (set_bytes).  data NULL with len > 0
 * aborts (a programming error, like any NULL object).  Switches: no. */
CO_API int co_future_set_result(co_future_t *f, void *value);
CO_API int co_future_set_bytes(co_future_t *f, const void *data, size_t len);
CO_API int co_future_set_error(co_future_t *f, int err, const char *msg);
/* Python's set_running_or_notify_cancel: pending -> running, after which
 * cancel fails.  0, or -1 with ECANCELED (f was cancelled: do not run
 * the work) or EALREADY (already running or done).  Switches: no. */
CO_API int co_future_set_running(co_future_t *f);
/* Cancels f if it has not started: it becomes cancelled, waiters wake
 * (their result call fails with ECANCELED), callbacks run, and an
 * executor drops the task.  A running task is never interrupted (threads
 * cannot be stopped safely).  0 if f is cancelled (now or before); -1 with
 * EBUSY (running) or EALREADY (done).  Switches: no. */
CO_API int co_future_cancel(co_future_t *f);

/* Switches: no. */
CO_API co_future_state_t co_future_state(const co_future_t *f);
CO_API bool co_future_done(const co_future_t *f); /* done or cancelled */
CO_API bool co_future_running(const co_future_t *f);
CO_API bool co_future_cancelled(const co_future_t *f);

/* Waits until f is done or cancelled.  0, or -1 with ETIMEDOUT (deadline
 * 0 included), ECANCELED (the caller was killed; f is untouched) or
 * EDEADLK (a promise nothing could complete).  Switches: yes, unless f is
 * done. */
CO_API int co_future_wait(co_future_t *f, int64_t deadline);
/* Waits as co_future_wait, then stores the result in *value (may be
 * NULL) and returns 0.  -1 with errno otherwise; co_future_done(f) tells
 * the two kinds apart:
 *   f done:     errno is f's own error (co_future_error has its message),
 *               or ECANCELED if f was cancelled;
 *   f not done: ETIMEDOUT, ECANCELED (the caller was killed), EDEADLK.
 * Switches: yes, unless f is done. */
CO_API int co_future_result(co_future_t *f, int64_t deadline, void **value);
/* Bytes of a result set with co_future_set_bytes (0 otherwise).
 * Switches: no. */
CO_API size_t co_future_size(const co_future_t *f);
/* f's error: 0 unless f is done with an error (ECANCELED if cancelled);
 * *msg (msg may be NULL) gets its message or NULL, valid while f is.
 * Switches: no. */
CO_API int co_future_error(const co_future_t *f, const char **msg);

/* Adds a callback that runs exactly once, when f completes (done or
 * cancelled), in callback order:
 *  - added by a coroutine: on that coroutine's hub, in a coroutine of its
 *    own, so never at the same time as the hub's other coroutines (it may
 *    block); if that hub's thread is exiting then, on a worker of the
 *    default thread pool; if it has exited, on the completing thread;
 *  - added by a thread without a hub: on the thread that completes f (a
 *    pool worker, or the caller of set_result), right after it does, as
 *    concurrent.futures does;
 *  - added once f is complete: at once, by the caller.
 * 0, or -1 with ENOMEM (or EINVAL for a NULL fn).  Switches: only when it
 * runs fn at once and fn does. */
CO_API int co_future_add_done_callback(co_future_t *f, co_future_fn fn, void *arg);

/* What co_futures_wait waits for. */
typedef enum co_wait_when {
    CO_FIRST_COMPLETED = 1, /* any future done or cancelled */
    CO_FIRST_ERROR,         /* any done with an error; else all completed */
    CO_ALL_COMPLETED        /* every one done or cancelled */
} co_wait_when_t;

/* concurrent.futures.wait: waits until `when` holds for the n futures
 * (fs may repeat one) and returns how many are complete (test each with
 * co_future_done).  -1 with ETIMEDOUT (deadline 0: it does not hold yet),
 * ECANCELED, EDEADLK, ENOMEM, EINVAL (unknown when).  n == 0 returns 0.
 * Switches: yes, unless it holds at once. */
CO_API int co_futures_wait(co_future_t *const *fs, size_t n, co_wait_when_t when, int64_t deadline);

/* concurrent.futures.as_completed: takes the futures in the order they
 * complete.  new holds a reference to each (free the futures whenever you
 * like); next returns the next one to complete (those complete already
 * come first), or NULL with ENOENT once all were returned, ETIMEDOUT,
 * ECANCELED, EDEADLK.  Returned futures stay the caller's.  new: NULL
 * with ENOMEM.  Belongs to one caller at a time.  Switches: new and free
 * no; next yes, unless one has completed. */
typedef struct co_as_completed co_as_completed_t;
CO_API co_as_completed_t *co_as_completed_new(co_future_t *const *fs, size_t n);
CO_API co_future_t *co_as_completed_next(co_as_completed_t *ac, int64_t deadline);
CO_API void co_as_completed_free(co_as_completed_t *ac);

/* ------------------------------------------------------------- executors */
/* A pool of worker threads running tasks (concurrent.futures'
 * ThreadPoolExecutor).  Workers start lazily, one per submit that finds
 * none idle, up to max_workers; they are the program's threads (listed by
 * co_thread_enumerate, non-daemon unless the pool is).  A task is fn(arg)
 * on a worker; its return value is the future's result, or it fails its
 * future with co_task_fail.  docs/executor.md. */

typedef struct co_pool co_pool_t;
#define CO_POOL_MAX_WORKERS 32768 /* Linux's default limit of threads per user is near */

typedef struct co_pool_opts {
    size_t max_workers; /* 0: CPUs + 4, at most 32 (Python's default); larger than
                         * CO_POOL_MAX_WORKERS (SIZE_MAX for "no limit"): that many */
    const char *name;   /* copied; workers are "<name>_<i>"; NULL: "ThreadPool-<n>" */
    size_t max_queue;   /* tasks queued, not yet running; 0: no limit */
    /* Run by each worker before its first task; a non-zero return (an
     * errno value) breaks the pool (BrokenThreadPool): every pending and
     * later task fails with ENOTRECOVERABLE. */
    int (*init)(void *arg);
    void *init_arg;
    size_t stack_size; /* workers' stacks; 0: the system's default */
    bool daemon;       /* workers are daemon threads: not drained at exit */
} co_pool_opts_t;

typedef struct co_pool_stats {
    size_t workers;     /* started and not yet ended */
    size_t idle;        /* waiting for a task */
    size_t queued;      /* submitted, not started */
    uint64_t completed; /* tasks that ran to their end */
} co_pool_stats_t;

/* A new pool; no thread starts until the first submit.  opts may be
 * NULL.  NULL with EINVAL (a name too long: 200 bytes at most) or ENOMEM.
 * Switches: no. */
CO_API co_pool_t *co_pool_new(const co_pool_opts_t *opts);
/* Shuts p down (pending tasks still run), waits for its workers to end
 * and frees it; no thread of p is left.  From one of p's own workers, or
 * on the default pool, aborts.  NULL is a no-op.  Switches: yes. */
CO_API void co_pool_free(co_pool_t *p);

/* Queues fn(arg) and returns its future (free it when done with it).
 * With a bounded queue (max_queue) that is full, waits for room until the
 * deadline.  NULL with errno:
 *   EINVAL           fn NULL;
 *   EPIPE            p was shut down;
 *   ENOTRECOVERABLE  p is broken (a worker's init failed);
 *   EAGAIN           the queue is full and deadline is 0 (the try form),
 *                    or no worker thread could be started;
 *   ETIMEDOUT        still full at the deadline;
 *   ECANCELED        the caller was killed while waiting for room;
 *   ENOMEM.
 * Switches: only when it waits for room. */
/* (p NULL: the default pool, co_pool_default.) */
CO_API co_future_t *co_pool_submit(co_pool_t *p, co_fn fn, void *arg, int64_t deadline);

/* Inside a task: makes its future fail with err (> 0) and msg (copied,
 * may be NULL) when the task returns; its return value is dropped.  0, or
 * -1 with EINVAL (err <= 0, or not called from a task).  Switches: no. */
CO_API int co_task_fail(int err, const char *msg);

typedef struct co_map_opts {
    size_t window;    /* tasks in flight at most; 0: twice the pool's max_workers */
    size_t chunksize; /* items per task (fewer, bigger tasks for cheap fns); 0: 1 */
} co_map_opts_t;

/* Executor.map: results[i] = fn(items[i]) for i < n, computed on p's
 * workers, taken in input order.  At most `window` tasks are in flight:
 * never all n at once.  0 when all succeeded.  -1 with errno: the first
 * failure in input order (a task's error, with everything after it
 * cancelled), or submit's errors, or ETIMEDOUT / ECANCELED (tasks not
 * started are cancelled; running ones finish on their own, their results
 * dropped).  *ndone (may be NULL) gets how many leading results are in
 * results[], n on success.  opts may be NULL; p NULL: the default pool.
 * Switches: yes. */
CO_API int co_pool_map(co_pool_t *p, co_fn fn, void *const *items, size_t n, void **results, size_t *ndone,
                       int64_t deadline, const co_map_opts_t *opts);

/* Stops p taking tasks: later submits fail with EPIPE.  Queued tasks
 * still run, or, with cancel_pending, are cancelled now.  Workers end
 * once the queue is empty.  Idempotent.  Does not wait: see
 * co_pool_join.  Switches: no. */
CO_API void co_pool_shutdown(co_pool_t *p, bool cancel_pending);
/* Waits until every worker of a pool that was shut down (or is broken)
 * has ended: shutdown(wait=True) is co_pool_shutdown + co_pool_join.
 * 0, or -1 with EINVAL (p still runs: nothing would end), ETIMEDOUT,
 * ECANCELED, EDEADLK (called from one of p's workers).  Switches: yes. */
CO_API int co_pool_join(co_pool_t *p, int64_t deadline);
/* Counters.  Switches: no. */
CO_API void co_pool_stats(co_pool_t *p, co_pool_stats_t *st);

/* The default pool, made at its first use: COGENT_POOL_SIZE workers
 * (default CPUs + 4, at most 32), named "cogent-pool_<i>", drained at
 * exit.  Never freed.  NULL with ENOMEM.  Switches: no. */
CO_API co_pool_t *co_pool_default(void);
/* asyncio's to_thread / run_in_executor, gevent's threadpool: runs
 * fn(arg) on p (NULL: the default pool) and waits for it — a coroutine
 * parks, its hub runs on; a thread without a hub blocks — storing its
 * return value in *result (may be NULL).  If the wait ends early
 * (ETIMEDOUT, ECANCELED) a task not yet started is cancelled, a running
 * one finishes on its own and its result is dropped.  0, or -1 with
 * errno: the task's error (co_task_fail), or submit's and the wait's.
 * Switches: yes. */
CO_API int co_pool_run(co_pool_t *p, co_fn fn, void *arg, int64_t deadline, void **result);

/* ------------------------------------------------------------- hub pools */
/* N threads, each running a hub, and coroutines spawned on a chosen hub
 * or the least loaded one: coroutines on every core (a coroutine never
 * moves between threads).  docs/executor.md. */

typedef struct co_hubpool co_hubpool_t;

typedef struct co_hubpool_opts {
    const char *name; /* copied (200 bytes at most); threads "<name>_<i>"; NULL: "HubPool-<n>" */
    bool daemon;      /* the threads are daemon threads: not waited for at exit
                       * (else exit waits until their coroutines have finished) */
} co_hubpool_opts_t;

/* Starts n threads (0: one per CPU), each running a hub, with every
 * signal blocked.  NULL with EINVAL (name too long), EAGAIN or ENOMEM.
 * Switches: no (it waits for the threads to start). */
CO_API co_hubpool_t *co_hubpool_new(size_t n, const co_hubpool_opts_t *opts);
/* Switches: no. */
CO_API size_t co_hubpool_size(const co_hubpool_t *hp);
/* Spawns fn(arg) on hub `which` (0 .. size-1), or with -1 on the one with
 * the fewest live coroutines, and returns its handle: an ordinary one, to
 * join, wait on, kill or detach from any thread (exactly once, as every
 * handle).  The spawn is done by that hub's thread; the caller waits for
 * its answer (microseconds, unless that hub is busy running something):
 * a coroutine parks, a thread blocks; not a cancellation point.  NULL with
 * EINVAL (fn NULL, which out of range), EPIPE (the pool is being freed),
 * ENOMEM.  Switches: yes. */
CO_API co_coro_t *co_hubpool_spawn(co_hubpool_t *hp, int which, co_fn fn, void *arg);
/* Stops the pool: on each thread, the coroutines still running are
 * killed (their blocking calls fail with ECANCELED) and run to their end,
 * as at any thread's exit; then the threads are joined and the pool
 * freed.  Handles of its coroutines not yet joined stay valid for join.
 * From one of its threads, aborts.  NULL is a no-op.  Switches: yes. */
CO_API void co_hubpool_free(co_hubpool_t *hp);

/* A stream server on every hub of a pool (SO_REUSEPORT): one listener
 * per hub on one port; the kernel spreads connections over them and each
 * connection's handler runs on the hub that accepted it. */
typedef struct co_hubserver co_hubserver_t;

/* Starts a co_server with opts (as co_server_new takes them; reuseport is
 * forced on, unix_socket is refused) on every hub of hp, all on one port:
 * opts->port, or with 0 the free port the first one got.  NULL with
 * errno (co_server_new's: EADDRINUSE...; EINVAL: handler NULL or a Unix
 * socket).  Switches: yes. */
CO_API co_hubserver_t *co_hubpool_serve(co_hubpool_t *hp, co_handler_fn handler, void *arg,
                                        const co_server_opts_t *opts);
/* The port all the listeners share.  Switches: no. */
CO_API int co_hubserver_port(const co_hubserver_t *hs);
/* The servers' counters, summed.  Switches: no. */
CO_API void co_hubserver_stats(const co_hubserver_t *hs, co_server_stats_t *st);
/* co_server_stop on every hub (listeners closed at once, handlers given
 * until the deadline, then killed); returns how many were killed in all.
 * Not from one of its handlers.  Switches: yes. */
CO_API int co_hubserver_stop(co_hubserver_t *hs, int64_t deadline);
/* Stops (handlers killed at once) and frees every server.  Free it before
 * the pool.  NULL is a no-op.  Switches: yes. */
CO_API void co_hubserver_free(co_hubserver_t *hs);
/* ------------------------------------------------------------- processes */
/* Child processes (Python's multiprocessing.Process and subprocess.Popen):
 * a function of the program run in a forked child, or a program run from
 * its path.  Every child cogent starts is reaped exactly once, as soon as
 * it ends, whether or not it is joined; children it did not start are
 * never reaped behind the program's back.  Joining parks only the calling
 * coroutine (a pidfd on its hub's poller).  docs/process.md. */

typedef struct co_process co_process_t;

/* Body of a child started with co_process_start: its return value is the
 * child's exit code (0..255; Python's exitcode). */
typedef int (*co_process_fn)(void *arg);

/* Where a child's standard stream goes. */
typedef enum co_stdio {
    CO_STDIO_INHERIT = 0, /* the parent's (the default) */
    CO_STDIO_DEVNULL,     /* /dev/null */
    CO_STDIO_PIPE,        /* a pipe to the parent: co_process_stdin/stdout/stderr */
    CO_STDIO_STDOUT,      /* stderr only: wherever stdout goes (Python's STDOUT) */
    CO_STDIO_FD           /* the descriptor in the matching *_fd field */
} co_stdio_t;

typedef struct co_process_opts {
    const char *name; /* copied; NULL: "Process-<n>" (a program: its argv[0]) */
    /* Terminated (SIGTERM) and reaped when the parent ends normally, and
     * killed (SIGKILL) if the parent dies abruptly -- precisely, when the
     * thread that started it ends (PR_SET_PDEATHSIG).  A non-daemon child
     * is waited for when the parent ends normally. */
    bool daemon;
    co_stdio_t stdin_mode, stdout_mode, stderr_mode;
    int stdin_fd, stdout_fd, stderr_fd; /* with CO_STDIO_FD (the child gets a copy) */
    /* co_process_exec only: */
    const char *const *env; /* NULL-terminated "NAME=value"s; NULL: the caller's environment */
    const char *cwd;        /* NULL: the caller's */
    const int *pass_fds;    /* descriptors the program keeps; every other one above 2 is closed */
    size_t npass_fds;
} co_process_opts_t;

/* What co_process_exitcode says for a child that has no exit code: not
 * started, still running, or reaped by the program itself (waitpid(-1),
 * SIGCHLD ignored) before cogent could. */
#define CO_EXIT_NONE (-2147483647 - 1)

/* A child that will run fn(arg) once started (Python's Process(target=...)).
 * opts may be NULL.  NULL with EINVAL (fn NULL) or ENOMEM.  Switches: no. */
CO_API co_process_t *co_process_new(co_process_fn fn, void *arg, const co_process_opts_t *opts);
/* Forks the child.  It has one thread (the caller's), on a clean hub: no
 * coroutine of the parent runs there, but everything else is a copy --
 * memory, descriptors (minus those cogent made for other children), and
 * locks: a lock held by another thread of the parent stays held in the
 * child forever (docs/process.md).  fn runs on a stack of the thread's
 * usual size; when it returns (or calls co_process_exit) the child
 * terminates its own daemon children, waits for the others, flushes stdio
 * and _exits -- the parent's atexit handlers do not run.  0, or -1 with
 * EINVAL (started already), EAGAIN (no process or pipe could be made),
 * ENOMEM.  Switches: no. */
CO_API int co_process_start(co_process_t *p);
/* Starts a program (subprocess.Popen): argv[0] is looked up in PATH
 * unless it has a '/'; opts may be NULL.  The child is made without
 * copying the parent (as posix_spawn does), with the caller's signal mask
 * and default handlers.  NULL with EINVAL (argv or argv[0] NULL), ENOENT /
 * EACCES / ENOEXEC (the program could not be run: nothing is left
 * behind), EBADF (a bad *_fd), EAGAIN, ENOMEM.  Switches: no. */
CO_API co_process_t *co_process_exec(const char *const argv[], const co_process_opts_t *opts);
/* Frees the handle.  A child still running goes on and is reaped when it
 * ends (a daemon child is terminated when the parent ends).  A pipe the
 * handle still holds is closed.  Freeing a handle someone is joining
 * aborts.  NULL is a no-op.  Switches: no. */
CO_API void co_process_free(co_process_t *p);

/* Waits until the child has ended (it is reaped by then).  0, or -1 with
 * errno:
 *   ETIMEDOUT  the deadline passed first (0: the try form);
 *   ECANCELED  the caller was killed;
 *   EINVAL     the child was never started;
 *   ECHILD     the program reaped it itself: its exit code is lost.
 * Switches: yes, unless it has ended. */
CO_API int co_process_join(co_process_t *p, int64_t deadline);
/* The exit code: 0..255 for a child that exited, minus the signal number
 * for one killed by a signal (-9 for SIGKILL, as Python), CO_EXIT_NONE
 * if it has none (yet).  Switches: no. */
CO_API int co_process_exitcode(co_process_t *p);
/* Started and not ended; looks (and reaps) without waiting.
 * Switches: no. */
CO_API bool co_process_is_alive(co_process_t *p);
/* The child's process id (0 before it started).  Switches: no. */
CO_API pid_t co_process_pid(const co_process_t *p);
CO_API const char *co_process_name(const co_process_t *p);
CO_API bool co_process_daemon(const co_process_t *p);
/* Sends SIGTERM / SIGKILL / sig to the child.  A child that has ended
 * already is left alone (0).  0, or -1 with EINVAL (not started, or a bad
 * signal number).  Switches: no. */
CO_API int co_process_terminate(co_process_t *p);
CO_API int co_process_kill(co_process_t *p);
CO_API int co_process_signal(co_process_t *p, int sig);

/* The parent's end of a CO_STDIO_PIPE stream (non-blocking, close-on-exec,
 * for co_read/co_write/co_poll), or -1.  The handle owns it: close it
 * with co_process_close_stdin (EOF for the child), never with close().
 * Switches: no. */
CO_API int co_process_stdin(const co_process_t *p);
CO_API int co_process_stdout(const co_process_t *p);
CO_API int co_process_stderr(const co_process_t *p);
/* Closes the stdin pipe: the child reads EOF.  Switches: no. */
CO_API void co_process_close_stdin(co_process_t *p);
/* subprocess's communicate: writes `input` (len bytes, may be 0) to the
 * child's stdin pipe and closes it, reads its stdout and stderr pipes to
 * EOF -- all at once, so that no pipe fills up while another is waited
 * on -- then waits for the child to end.  *out / *err (each may be NULL:
 * that output is read and dropped) get malloc'd, NUL-terminated buffers
 * the caller frees, *outlen / *errlen (may be NULL) their lengths.  0, or
 * -1 with errno: ETIMEDOUT / ECANCELED (nothing is lost: the child runs
 * on, and a later call carries on where this one stopped, as Python's),
 * EINVAL (input given without a stdin pipe), ENOMEM, or join's errors.
 * Switches: yes. */
CO_API int co_process_communicate(co_process_t *p, const void *input, size_t len, char **out, size_t *outlen,
                                  char **err, size_t *errlen, int64_t deadline);
/* In a child started with co_process_start: ends it now, as the return
 * of its function with `code` would.  Elsewhere: exit(code).
 * Switches: no (it does not return). */
CO_API void co_process_exit(int code) __attribute__((__noreturn__));
/* The children this process started that have not ended (Python's
 * active_children, which also reaps): fills out[0..min(n, cap)) (out may
 * be NULL with cap 0) and returns n.  The handles stay the caller's.
 * Switches: no. */
CO_API size_t co_process_active(co_process_t **out, size_t cap);
/* Online CPUs (os.cpu_count), at least 1.  Switches: no. */
CO_API int co_cpu_count(void);

/* ----------------------------------------------------------------- pipes */
/* multiprocessing.Pipe: two connected ends carrying whole byte messages
 * between processes (or threads, or coroutines).  Make the pipe, start
 * the child, and let each side close the end it does not use.  A message
 * of any size goes through whichever side is slower: a duplex end whose
 * send must wait reads what comes in meanwhile, so two sides sending each
 * other big messages before receiving do not deadlock.  A waiting call
 * parks only its coroutine.  One sender and one receiver at a time per
 * end (others wait their turn).  docs/ipc.md. */

typedef struct co_conn co_conn_t;

/* Makes a pipe: duplex, both ends send and receive (a Unix socketpair);
 * else ends[0] only receives and ends[1] only sends (a pipe).  0, or -1
 * with errno (EMFILE, ENOMEM).  Switches: no. */
CO_API int co_pipe(co_conn_t *ends[2], bool duplex);
/* Takes over fd (a socket or a pipe end, such as an end's descriptor
 * handed to a program with pass_fds) as a connection.  NULL with EBADF,
 * EINVAL (neither a socket nor a pipe) or ENOMEM.  Switches: no. */
CO_API co_conn_t *co_conn_from_fd(int fd);
/* The end's descriptor (for pass_fds, or to poll it).  Switches: no. */
CO_API int co_conn_fd(const co_conn_t *c);
/* Sends one message of len bytes (0 is a message too).  0, or -1 with
 * errno: EAGAIN (deadline 0, no room), ETIMEDOUT, ECANCELED -- each with
 * nothing sent; EPIPE (the other end was closed, or this one);
 * EBADF (a receive-only end); EINVAL (data NULL with len > 0).  Once a
 * message has started out it is committed: if the deadline passes or the
 * caller is killed before it is all out, the call still returns 0 and
 * the rest goes out ahead of the next message.  Switches: yes, when the
 * kernel's buffer is full. */
CO_API int co_conn_send(co_conn_t *c, const void *data, size_t len, int64_t deadline);
/* Receives the next whole message into a malloc'd buffer (*data; the
 * caller frees it; data may be NULL to drop it) of *len bytes.  0, or -1
 * with errno: EAGAIN (deadline 0), ETIMEDOUT, ECANCELED (what was read so
 * far is kept for the next call); EPIPE (the other end was closed: no
 * message is left; or this end was); EBADF (a send-only end); ENOMEM
 * (the message stays).  Switches: yes, unless a message is waiting. */
CO_API int co_conn_recv(co_conn_t *c, void **data, size_t *len, int64_t deadline);
/* As co_conn_recv into buf (cap bytes): the message's length, or -1 with
 * errno as above, or EMSGSIZE (longer than cap: it stays, for
 * co_conn_recv).  Switches: as co_conn_recv. */
CO_API ssize_t co_conn_recv_into(co_conn_t *c, void *buf, size_t cap, int64_t deadline);
/* Waits until a whole message (or the other end's close) can be
 * received without waiting.  1 when it can, 0 at the deadline, -1 with
 * errno (ECANCELED, EPIPE for a closed end, EBADF).  Switches: yes. */
CO_API int co_conn_poll(co_conn_t *c, int64_t deadline);
/* Closes the end: the other end's receives get EPIPE once they have
 * taken what was sent before, its sends EPIPE.  Calls made on this end
 * afterwards fail with EPIPE.  Close an end nobody is using.  NULL and a
 * second close are no-ops.  Switches: no. */
CO_API void co_conn_close(co_conn_t *c);
CO_API bool co_conn_closed(const co_conn_t *c);
/* Closes (if needed) and frees.  NULL is a no-op.  Switches: no. */
CO_API void co_conn_free(co_conn_t *c);

/* ------------------------------------------------- process-shared objects */
/* multiprocessing's Lock, RLock, Semaphore, BoundedSemaphore, Event,
 * Condition, Barrier, Queue and JoinableQueue, Value and Array, and a map
 * of byte strings, in memory shared between processes: anonymous (made
 * before co_process_start, shared with the children started after it) or
 * named, so that an unrelated process can open them (_open).  They behave
 * as the in-process objects of the same names; a coroutine that waits
 * parks only itself, a thread without a hub blocks.  They are robust: a
 * lock whose holder died goes to the next acquirer with EOWNERDEAD; a
 * queue whose producer or consumer died mid-operation keeps every message
 * committed; no waiter is stranded by a process that died.  Names are
 * removed when their creator frees them or ends, even abruptly.
 * docs/ipc.md.
 *
 * Every _new takes opts (NULL: anonymous): */
typedef struct co_shm_opts {
    const char *name; /* "name" or "/name" (one path component, <= 200 bytes): a named object; NULL: anonymous */
    unsigned mode;    /* permissions of a named object; 0: 0600 */
} co_shm_opts_t;
/* and fails with NULL and errno EINVAL (a bad name or argument), EEXIST
 * (the name is taken), ENAMETOOLONG, EACCES, ENOSPC (/dev/shm is full) or
 * ENOMEM.  Every _open fails with ENOENT (no such name), EINVAL (the name
 * holds another kind of object), EACCES or ENOMEM.  _free unmaps (and,
 * called by the creator, removes the name; those who opened it keep
 * using it); NULL is a no-op; freeing an object a coroutine or thread of
 * this process waits on is a programming error.  None of them switches. */

/* ---- lock and rlock (multiprocessing.Lock / RLock) */
typedef struct co_plock co_plock_t;
typedef struct co_prlock co_prlock_t;
CO_API co_plock_t *co_plock_new(const co_shm_opts_t *opts);
CO_API co_plock_t *co_plock_open(const char *name);
CO_API void co_plock_free(co_plock_t *l);
/* Takes the lock until the deadline (0: try once).  0, or -1 with errno:
 *   EOWNERDEAD  taken -- the caller holds it -- but its previous holder
 *               died holding it: what it protects may be half-changed;
 *               repair it, then release as usual;
 *   EAGAIN      deadline 0 and the lock is held;
 *   ETIMEDOUT, ECANCELED;
 *   EDEADLK     the caller holds it already (any deadline but 0).
 * The owner is the calling coroutine (or thread).  Switches: yes, when
 * the lock is held. */
CO_API int co_plock_acquire(co_plock_t *l, int64_t deadline);
/* Releasing a lock the caller does not hold aborts.  Switches: no. */
CO_API void co_plock_release(co_plock_t *l);
CO_API bool co_plock_locked(const co_plock_t *l);
CO_API co_prlock_t *co_prlock_new(const co_shm_opts_t *opts);
CO_API co_prlock_t *co_prlock_open(const char *name);
CO_API void co_prlock_free(co_prlock_t *r);
/* As co_plock_acquire; the owner may take it again (one more level).
 * EOWNERDEAD: the dead holder's levels are gone, the caller holds one. */
CO_API int co_prlock_acquire(co_prlock_t *r, int64_t deadline);
/* Drops one level; a non-owner aborts.  Switches: no. */
CO_API void co_prlock_release(co_prlock_t *r);
CO_API unsigned long co_prlock_count(const co_prlock_t *r); /* the caller's levels */

/* ---- semaphore and bounded semaphore */
typedef struct co_psem co_psem_t;
/* value >= 0; bounded: releasing above the initial value is an error. */
CO_API co_psem_t *co_psem_new(long value, bool bounded, const co_shm_opts_t *opts);
CO_API co_psem_t *co_psem_open(const char *name);
CO_API void co_psem_free(co_psem_t *s);
/* 0, or -1 with EAGAIN (deadline 0), ETIMEDOUT, ECANCELED.  Switches: yes,
 * when no unit is free. */
CO_API int co_psem_acquire(co_psem_t *s, int64_t deadline);
/* -1 with EINVAL if bounded and at its initial value.  Switches: no. */
CO_API int co_psem_release(co_psem_t *s);
CO_API long co_psem_value(const co_psem_t *s);

/* ---- event */
typedef struct co_pevent co_pevent_t;
CO_API co_pevent_t *co_pevent_new(const co_shm_opts_t *opts);
CO_API co_pevent_t *co_pevent_open(const char *name);
CO_API void co_pevent_free(co_pevent_t *e);
CO_API void co_pevent_set(co_pevent_t *e);
CO_API void co_pevent_clear(co_pevent_t *e);
CO_API bool co_pevent_is_set(const co_pevent_t *e);
/* 0 once set; -1 with ETIMEDOUT (deadline 0 included), ECANCELED.
 * Switches: yes, unless set. */
CO_API int co_pevent_wait(co_pevent_t *e, int64_t deadline);

/* ---- condition, with a lock of its own (multiprocessing.Condition) */
typedef struct co_pcond co_pcond_t;
CO_API co_pcond_t *co_pcond_new(const co_shm_opts_t *opts);
CO_API co_pcond_t *co_pcond_open(const char *name);
CO_API void co_pcond_free(co_pcond_t *c);
/* The condition's lock: take it with co_plock_acquire around waits and
 * notifies.  Switches: no. */
CO_API co_plock_t *co_pcond_lock(co_pcond_t *c);
/* The caller holds the lock (else abort): releases it, waits for a
 * notify, takes it back -- also when it fails with ETIMEDOUT or
 * ECANCELED.  0, or -1 with errno (EOWNERDEAD: notified or not, the lock
 * was taken back from a holder that died).  Switches: yes. */
CO_API int co_pcond_wait(co_pcond_t *c, int64_t deadline);
/* Wakes n waiters (of any process) / all of them; the caller should hold
 * the lock.  Returns how many were waiting to be woken.  Switches: no. */
CO_API size_t co_pcond_notify(co_pcond_t *c, size_t n);
CO_API size_t co_pcond_notify_all(co_pcond_t *c);

/* ---- barrier */
typedef struct co_pbarrier co_pbarrier_t;
CO_API co_pbarrier_t *co_pbarrier_new(unsigned parties, const co_shm_opts_t *opts);
CO_API co_pbarrier_t *co_pbarrier_open(const char *name);
CO_API void co_pbarrier_free(co_pbarrier_t *b);
/* As co_barrier_wait: the arrival index (the last gets parties - 1), or
 * -1 with ETIMEDOUT / ECANCELED (breaking it) or EPIPE (broken).
 * Switches: yes, unless the caller is the last to arrive. */
CO_API int co_pbarrier_wait(co_pbarrier_t *b, int64_t deadline);
CO_API void co_pbarrier_reset(co_pbarrier_t *b);
CO_API void co_pbarrier_abort(co_pbarrier_t *b);
CO_API bool co_pbarrier_broken(const co_pbarrier_t *b);

/* ---- queue (multiprocessing.Queue / JoinableQueue) of byte messages */
/* A bounded FIFO of up to maxsize messages of up to msgsize bytes each,
 * copied in and out (nothing is pickled, nothing runs behind the
 * caller's back: a put is in the queue when it returns).  A producer or
 * consumer that dies mid-call loses no message put before it: a message
 * is in the queue whole, or not at all. */
typedef struct co_pqueue co_pqueue_t;
/* maxsize >= 1, msgsize >= 1.  Switches: no. */
CO_API co_pqueue_t *co_pqueue_new(size_t maxsize, size_t msgsize, const co_shm_opts_t *opts);
CO_API co_pqueue_t *co_pqueue_open(const char *name);
CO_API void co_pqueue_free(co_pqueue_t *q);
/* Puts a copy of len bytes.  0, or -1 with errno: EMSGSIZE (len >
 * msgsize), EAGAIN (full, deadline 0: Python's queue.Full), ETIMEDOUT,
 * ECANCELED, EPIPE (closed).  Switches: yes, when full. */
CO_API int co_pqueue_put(co_pqueue_t *q, const void *data, size_t len, int64_t deadline);
/* Takes the oldest message into buf (cap bytes): its length, or -1 with
 * errno: EMSGSIZE (longer than cap: it stays), EAGAIN (empty, deadline
 * 0), ETIMEDOUT, ECANCELED, EPIPE (closed and empty).
 * Switches: yes, when empty. */
CO_API ssize_t co_pqueue_get(co_pqueue_t *q, void *buf, size_t cap, int64_t deadline);
CO_API int co_pqueue_put_nowait(co_pqueue_t *q, const void *data, size_t len);
CO_API ssize_t co_pqueue_get_nowait(co_pqueue_t *q, void *buf, size_t cap);
/* Puts fail with EPIPE from now on, gets once it is empty; waiters wake.
 * Switches: no. */
CO_API void co_pqueue_close(co_pqueue_t *q);
CO_API bool co_pqueue_closed(const co_pqueue_t *q);
CO_API size_t co_pqueue_size(const co_pqueue_t *q);
CO_API bool co_pqueue_empty(const co_pqueue_t *q);
CO_API bool co_pqueue_full(const co_pqueue_t *q);
CO_API size_t co_pqueue_msgsize(const co_pqueue_t *q);
/* Joinable use, as co_queue_task_done / co_queue_join.  task_done: -1 with
 * EINVAL if called more times than messages were put.  join: 0, or -1
 * with ETIMEDOUT, ECANCELED.  Switches: task_done no, join yes. */
CO_API int co_pqueue_task_done(co_pqueue_t *q);
CO_API int co_pqueue_join(co_pqueue_t *q, int64_t deadline);
CO_API size_t co_pqueue_unfinished(const co_pqueue_t *q);

/* ---- Value and Array: typed shared memory with a lock */
/* count elements of elem_size bytes, zero-filled, aligned for any type;
 * with a co_plock of its own that co_pvalue_lock takes (use it or not, as
 * Python's lock=True/False).  In C the type is the caller's:
 *   int64_t *n = co_pvalue_data(v);    (Value('q'))
 *   double *a = co_pvalue_data(arr);   (Array('d', 10)) */
typedef struct co_pvalue co_pvalue_t;
CO_API co_pvalue_t *co_pvalue_new(size_t elem_size, size_t count, const co_shm_opts_t *opts);
CO_API co_pvalue_t *co_pvalue_open(const char *name);
CO_API void co_pvalue_free(co_pvalue_t *v);
CO_API void *co_pvalue_data(co_pvalue_t *v);
CO_API size_t co_pvalue_count(const co_pvalue_t *v);
CO_API size_t co_pvalue_elem_size(const co_pvalue_t *v);
CO_API co_plock_t *co_pvalue_lock(co_pvalue_t *v);

/* ---- a map of byte strings, capacity fixed at creation */
typedef struct co_pmap co_pmap_t;
/* Up to capacity entries, keys up to max_key bytes, values up to
 * max_value bytes.  Switches: no. */
CO_API co_pmap_t *co_pmap_new(size_t capacity, size_t max_key, size_t max_value, const co_shm_opts_t *opts);
CO_API co_pmap_t *co_pmap_open(const char *name);
CO_API void co_pmap_free(co_pmap_t *m);
/* Each call takes the map's lock (waiting until the deadline for another
 * process's call to finish; a killed caller's call still finishes):
 * errors ETIMEDOUT, EAGAIN (deadline 0 and busy).
 * set: 0, or -1 with ENOSPC (a new key and the map is full), EMSGSIZE (key
 * or value too long), EINVAL (klen 0).
 * get: copies the value into buf (cap bytes) and returns its length, or
 * -1 with ENOENT, EMSGSIZE (longer than cap).
 * del: 0, or -1 with ENOENT.
 * next: iterates: *cursor starts at 0; copies the next key into key (kcap
 * bytes) and returns its length, or -1 with ENOENT when done (EMSGSIZE:
 * that key is longer than kcap).  Entries set or deleted meanwhile may or
 * may not be seen.  Switches: yes, while another process holds the
 * map's lock. */
CO_API int co_pmap_set(co_pmap_t *m, const void *key, size_t klen, const void *val, size_t vlen, int64_t deadline);
CO_API ssize_t co_pmap_get(co_pmap_t *m, const void *key, size_t klen, void *buf, size_t cap, int64_t deadline);
CO_API int co_pmap_del(co_pmap_t *m, const void *key, size_t klen, int64_t deadline);
CO_API ssize_t co_pmap_next(co_pmap_t *m, size_t *cursor, void *key, size_t kcap, int64_t deadline);
CO_API size_t co_pmap_size(const co_pmap_t *m);

/* ---------------------------------------------------------- process pool */
/* multiprocessing.Pool and ProcessPoolExecutor: worker processes (forks
 * of this program, started on a clean hub) running tasks -- a function of
 * the program and its argument's bytes -- and sending back bytes or an
 * error.  Nothing is pickled: C passes bytes.  A worker that crashes
 * (a signal, exit(), OOM) or outlives a task's deadline fails only the
 * tasks it held, with an error that names the signal, and is replaced;
 * the pool goes on.  Waiting on a result parks only the calling
 * coroutine, or blocks a thread without a hub.  docs/procpool.md. */

typedef struct co_procpool co_procpool_t;
/* A running task, in the worker. */
typedef struct co_ptask co_ptask_t;
/* A task: runs in a worker with its argument (len bytes, valid during the
 * call).  Return 0 for success -- the result is the bytes given to
 * co_ptask_return (none: empty) -- or an errno value to fail it. */
typedef int (*co_ptask_fn)(co_ptask_t *t, const void *arg, size_t len);
/* Sets the task's result (copied; a second call replaces the first).
 * 0, or -1 with ENOMEM / EINVAL (data NULL with len > 0).  Switches: no. */
CO_API int co_ptask_return(co_ptask_t *t, const void *data, size_t len);
/* Gives the task's failure a message (copied); returns err, so that a
 * task can `return co_ptask_fail(t, EINVAL, "bad input");`.  EINVAL for
 * err <= 0.  Switches: no. */
CO_API int co_ptask_fail(co_ptask_t *t, int err, const char *msg);

typedef struct co_procpool_opts {
    size_t workers; /* 0: co_cpu_count() */
    /* Runs in each worker before its first task, with init_arg's bytes;
     * a failure (non-zero) breaks the pool: every task not done fails
     * with ENOTRECOVERABLE, and so does every later submission (no worker
     * is started again and again, as Python's would). */
    co_ptask_fn init;
    const void *init_arg;
    size_t init_len;
    size_t max_tasks_per_child; /* 0: none; else a worker is replaced after this many jobs (a map chunk is one) */
    int64_t task_timeout_ms;    /* 0: none; a task running longer is killed with its worker: ETIMEDOUT */
    const char *name;           /* workers are named "<name>-<i>"; NULL: "ProcessPool-<n>" */
} co_procpool_opts_t;

typedef struct co_procpool_stats {
    size_t workers;     /* slots (each with a worker, or one being replaced) */
    uint64_t completed; /* tasks that succeeded */
    uint64_t failed;    /* tasks that failed, were cancelled or lost to a crash */
    uint64_t crashes;   /* workers that died holding work */
    uint64_t replaced;  /* workers started after the first ones */
} co_procpool_stats_t;

/* One result of a map: where it sits in the input, and its bytes or its
 * error. */
typedef struct co_presult {
    size_t index;     /* the item's position in the input */
    const void *data; /* the result (NULL if it failed); see its owner for how long it lives */
    size_t len;
    int err;         /* 0, or the task's error (EOWNERDEAD: its worker died; ETIMEDOUT: timed out) */
    const char *msg; /* the error's message, or NULL */
} co_presult_t;

typedef struct co_presults co_presults_t;
typedef struct co_pimap co_pimap_t;

/* Starts the workers and waits until they run.  opts may be NULL.  NULL
 * with EINVAL, EAGAIN (no process could be started), ENOMEM.
 * Switches: yes (while the workers start). */
CO_API co_procpool_t *co_procpool_new(const co_procpool_opts_t *opts);
/* Runs fn(arg) on a worker and waits for it (Pool.apply): 0 and the
 * result in *result (malloc'd, the caller frees; may be NULL) and *rlen.
 * -1 with errno: the task's error; EPIPE (closed), ENOTRECOVERABLE
 * (broken); EINVAL; ETIMEDOUT / ECANCELED (the task is dropped if it has
 * not started, else its result is).  Switches: yes. */
CO_API int co_procpool_apply(co_procpool_t *p, co_ptask_fn fn, const void *arg, size_t len, void **result, size_t *rlen,
                             int64_t deadline);
/* Pool.apply_async and Executor.submit: queues fn(arg) (the argument's
 * bytes are copied) and returns its future -- the same co_future_t as a
 * thread pool's (co_future_wait / result / cancel / add_done_callback /
 * co_futures_wait / co_as_completed all apply).  Its result is the
 * task's bytes (co_future_result's value, co_future_size bytes, valid
 * while the future is), or an error: the task's own (co_future_error has
 * its message), EOWNERDEAD (its worker died: the message names the
 * signal), ETIMEDOUT (the pool's task_timeout_ms), ECANCELED (cancelled
 * before it started, terminate, shutdown's cancel_pending),
 * ENOTRECOVERABLE (the initializer failed).  A cancel succeeds until a
 * worker takes the task.  Free it with co_future_free (the task still
 * runs).  NULL with EINVAL (fn NULL, or arg NULL with len > 0), EPIPE
 * (closed), ENOTRECOVERABLE (broken), ENOMEM.  Switches: no. */
CO_API co_future_t *co_procpool_submit(co_procpool_t *p, co_ptask_fn fn, const void *arg, size_t len);
/* Pool.apply_async(callback=, error_callback=): submit, and once the
 * task ends, callback(f, cb_arg) if it succeeded or error_callback(f,
 * cb_arg) if it failed or was cancelled (either may be NULL), where
 * co_future_add_done_callback says: on the caller's hub if a coroutine
 * submitted, else on the pool's own thread -- keep those short, as
 * Python's.  The future is the caller's, as submit's.  NULL with submit's
 * errors.  Switches: no. */
CO_API co_future_t *co_procpool_apply_async(co_procpool_t *p, co_ptask_fn fn, const void *arg, size_t len,
                                            co_future_fn callback, co_future_fn error_callback, void *cb_arg);
/* Pool.map: fn on every item, in chunks (chunksize 0: four chunks per
 * worker, as Python), results in input order.  The items must stay valid
 * until it returns.  The results (free them with co_presults_free), or
 * NULL with EPIPE, ENOTRECOVERABLE, EINVAL, ENOMEM, ETIMEDOUT, ECANCELED
 * (chunks not started are dropped).  A task's failure is its item's (see
 * co_presults_failed); a crash fails only the items its worker held.
 * Switches: yes. */
CO_API co_presults_t *co_procpool_map(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n,
                                      size_t chunksize, int64_t deadline);
/* The results: how many, how many failed, item i (its data lives as long
 * as the results).  Switches: no. */
CO_API size_t co_presults_count(const co_presults_t *r);
CO_API size_t co_presults_failed(const co_presults_t *r);
CO_API const co_presult_t *co_presults_get(const co_presults_t *r, size_t i);
CO_API void co_presults_free(co_presults_t *r);
/* Pool.imap / imap_unordered (and Executor.map): results one at a time,
 * in input order / in completion order, while later items still run;
 * the input is taken a few chunks ahead of the consumer (chunksize 0 as
 * map), and the items must stay valid until the iterator is freed.
 * NULL with errno as map.  Switches: no. */
CO_API co_pimap_t *co_procpool_imap(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n,
                                    size_t chunksize);
CO_API co_pimap_t *co_procpool_imap_unordered(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n,
                                              size_t chunksize);
/* The next result into *out (its data lives as long as the iterator; a
 * failed task is a result too: out->err).  0, or -1 with errno: ENOENT
 * (all were returned), ETIMEDOUT, ECANCELED, or the pool's refusal of
 * the rest (EPIPE, ENOTRECOVERABLE, ENOMEM).  Switches: yes, unless a
 * result is waiting. */
CO_API int co_pimap_next(co_pimap_t *it, co_presult_t *out, int64_t deadline);
/* Drops the results not taken; chunks not started are not run.  NULL is
 * a no-op.  Switches: no. */
CO_API void co_pimap_free(co_pimap_t *it);
/* Pool.close: no new task (EPIPE); queued ones still run, then the
 * workers end.  Switches: no. */
CO_API void co_procpool_close(co_procpool_t *p);
/* Pool.terminate: the workers are stopped now (SIGTERM); tasks queued or
 * running fail with ECANCELED -- nobody waits forever on them, as on
 * Python's.  Switches: no. */
CO_API void co_procpool_terminate(co_procpool_t *p);
/* Pool.join: waits until every worker has ended, after close or
 * terminate.  0, or -1 with EINVAL (still open), ETIMEDOUT, ECANCELED,
 * EDEADLK (from a task's callback on the pool's own thread).
 * Switches: yes. */
CO_API int co_procpool_join(co_procpool_t *p, int64_t deadline);
/* Executor.shutdown: close; with cancel_pending, tasks not started are
 * cancelled (ECANCELED); with wait, join.  0, or join's errors.
 * Switches: when it waits. */
CO_API int co_procpool_shutdown(co_procpool_t *p, bool wait, bool cancel_pending);
/* Frees the pool: one still open is terminated first (as Python's `with
 * Pool()`); waits for its workers to end.  NULL is a no-op.
 * Switches: yes. */
CO_API void co_procpool_free(co_procpool_t *p);
/* Counters.  Switches: no. */
CO_API void co_procpool_stats(const co_procpool_t *p, co_procpool_stats_t *st);
/* A pool belongs to the process that made it: in a fork child (a
 * co_process_start child included) its copy refuses every call with
 * ECHILD -- submit, apply, map, imap, join, shutdown -- close and
 * terminate do nothing, and free leaves the copy's memory alone. */

/* --------------------------------------------------------------- signals */
/* Signals handled cooperatively (gevent.signal_handler): a coroutine or a
 * thread waits for a signal as for any event, and runs ordinary code when
 * it comes, instead of an async-signal handler.  No cogent call may be
 * made from a signal handler of the program's own (they are not
 * async-signal-safe; one made while the hub waits for events aborts with
 * a message).  docs/conventions.md. */

/* Waits until one of the signals in `set` arrives and returns its number
 * (the lowest, if several are pending).  The first wait for a signal
 * installs cogent's catcher for it, process-wide, in place of the
 * previous action (restored by co_signal_restore): from then on the
 * signal is counted, whichever thread it is delivered to, and each
 * delivery is handed to one waiter, oldest first; a signal that comes
 * while nobody waits is kept for the next wait.  Any coroutine of any
 * hub, or a thread without one, may wait.  Errors:
 *   EINVAL     set is NULL or empty, or holds SIGKILL, SIGSTOP or a signal
 *              that only a synchronous handler can deal with (SIGSEGV,
 *              SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS);
 *   EAGAIN     deadline 0 and none is pending (the try form);
 *   ETIMEDOUT  none came by the deadline;
 *   ECANCELED  the caller was killed.
 * Switches: yes, unless a signal is pending. */
CO_API int co_signal_wait(const sigset_t *set, int64_t deadline);
/* Gives the signals in `set` back their action from before cogent caught
 * them, dropping any not yet handed out.  Waiters keep waiting for other
 * signals of their sets.  Signals cogent never caught are left alone.
 * 0, or -1 with EINVAL (set NULL).  Switches: no. */
CO_API int co_signal_restore(const sigset_t *set);

/* ------------------------------------------------------------- debugging */
/* docs/debugging.md. */

/* Writes every coroutine of every hub to fd: id, name, state, what it
 * waits on and for how long, where it was spawned (threads without a hub
 * are not listed).  Other hubs are asked to describe
 * themselves; one that does not answer within 200 ms (busy running a
 * coroutine) is shown with the coroutine it runs.  0, or -1 with errno of
 * a failed write.  Switches: no (it blocks while others answer). */
CO_API int co_dump(int fd);
/* Dumps to stderr whenever the process receives `signo` (SIGQUIT is the
 * usual one; COGENT_DUMP_SIGNAL=1 in the environment enables SIGQUIT at
 * the first hub).  0 = stop.  0, or -1 with EINVAL / ENOMEM.
 * Switches: no. */
CO_API int co_dump_on_signal(int signo);

/* Starts the blocking monitor: a thread that reports (stderr) any
 * coroutine running longer than threshold_ms without giving up the CPU,
 * with its name and thread, once per stall.  threshold_ms 0 stops it.
 * COGENT_MONITOR=<ms> in the environment starts it at the first hub.
 * 0, or -1 with EINVAL / EAGAIN.  Switches: no. */
CO_API int co_monitor_start(int64_t threshold_ms);
/* Stalls reported so far.  Switches: no. */
CO_API uint64_t co_monitor_reports(void);

/* Lock-order checking (like the kernel's lockdep): every acquisition of a
 * lock or rlock while holding others records the order; the first time
 * two locks are seen taken in both orders a warning with both places goes
 * to stderr, even if no deadlock happened.  COGENT_LOCKDEP=1 in the
 * environment turns it on at start.  Turn it on before taking locks.
 * Switches: no. */
CO_API void co_lockdep_enable(bool on);
/* Order inversions reported so far.  Switches: no. */
CO_API uint64_t co_lockdep_reports(void);

#ifdef __cplusplus
}
#endif

#endif
