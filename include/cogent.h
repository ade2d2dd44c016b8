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
 *    deadline, 0 means do not block, co_now() + 500 is "within 500 ms".
 *  - Every call that may block is a cancellation point and says so
 *    ("Switches: yes").  A call marked "Switches: no" never gives up the CPU.
 *  - Coroutines never move between threads.  Each thread gets its own hub,
 *    created the first time it is needed; the thread's own stack is its
 *    main coroutine.
 */
#ifndef COGENT_H
#define COGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    size_t guarded;      /* live stacks with a guard page */
    size_t canary;       /* live stacks in canary mode */
    size_t cached;       /* free stacks kept for reuse by this thread */
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

/* Creates a fiber that will run fn when first switched to.  Its parent is
 * the fiber current at creation.  stack_size 0 means the default.
 * `ud` is a pointer for the caller, returned by co_fiber_data.
 * Returns NULL with errno EINVAL (fn NULL, stack_size < CO_STACK_MIN) or
 * ENOMEM.  Switches: no. */
CO_API co_fiber_t *co_fiber_new(co_fiber_fn fn, void *ud, size_t stack_size);

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

/* Creates a suspended generator; nothing runs until the first next/send.
 * NULL with EINVAL or ENOMEM.  Switches: no. */
CO_API co_gen_t *co_gen_new(co_gen_fn fn, void *arg, size_t stack_size);

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

typedef struct co_spawn_opts {
    size_t stack_size; /* 0: the default */
    const char *name;  /* copied; NULL: none (shown as "#<id>") */
} co_spawn_opts_t;

/* Creates a coroutine that runs fn(arg) on the calling thread's hub.  It
 * is queued, not run: it starts when the caller next blocks or yields.
 * The handle must be joined or detached exactly once.
 * NULL with EINVAL (fn NULL, bad stack size) or ENOMEM.  Switches: no. */
CO_API co_coro_t *co_spawn(co_fn fn, void *arg);
CO_API co_coro_t *co_spawn_ex(co_fn fn, void *arg, const co_spawn_opts_t *opts);

/* Waits until c has returned, stores its return value in *result (may be
 * NULL) and frees the handle.  Errors (the handle stays valid):
 *   ETIMEDOUT  the deadline passed first;
 *   ECANCELED  the caller was killed;
 *   EDEADLK    c is the caller itself, or nothing could ever wake it;
 *   EINVAL     c is a thread's main coroutine (it never ends).
 * Joining a handle already joined or detached aborts.  c may live on
 * another thread's hub.  Switches: yes, unless c has already finished. */
CO_API int co_join(co_coro_t *c, int64_t deadline, void **result);

/* Waits until c has finished without consuming the handle.  Errors as
 * co_join.  Switches: yes, unless c has already finished. */
CO_API int co_wait(co_coro_t *c, int64_t deadline);

/* Waits until all n coroutines have finished, then joins them all and
 * stores their results in results[i] (results may be NULL).  On error
 * (ETIMEDOUT, ECANCELED, EDEADLK) none is joined.  Switches: yes. */
CO_API int co_joinall(co_coro_t *const *cs, size_t n, int64_t deadline, void **results);

/* Gives up the handle: c frees itself when it returns, its result is
 * dropped.  Detaching twice or after join aborts.  Switches: no. */
CO_API void co_detach(co_coro_t *c);

/* Cancels c: its current blocking call, and every later one, fails with
 * ECANCELED; c is expected to clean up and return.  A coroutine killed
 * before it started never runs and finishes with result NULL.  Killing a
 * finished coroutine does nothing.  c may live on another thread's hub.
 * Returns 0.  Switches: no. */
CO_API int co_kill(co_coro_t *c);

/* True if c was killed (whether or not it has finished).  Switches: no. */
CO_API bool co_killed(const co_coro_t *c);
/* True once c has returned (or was killed before it started); its result
 * is then ready for co_join.  Any thread.  Switches: no. */
CO_API bool co_finished(const co_coro_t *c);

/* Lets the other runnable coroutines of this hub run, then returns 0.
 * Returns -1 with ECANCELED if the caller was killed.  Switches: yes. */
CO_API int co_yield (void);

/* Sleeps until the deadline (co_now()-based, ms).  co_sleep(0) just
 * yields.  Returns 0, or -1 with ECANCELED if killed meanwhile.
 * Switches: yes. */
CO_API int co_sleep_until(int64_t deadline);
/* Sleeps for ms milliseconds (ms <= 0 yields).  As co_sleep_until. */
CO_API int co_sleep(int64_t ms);

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

/* limit 0 = unlimited.  NULL with ENOMEM.  Switches: no. */
CO_API co_group_t *co_group_new(size_t limit);

/* Frees an empty group (every member joined or detached); freeing a group
 * that still has members aborts.  NULL is a no-op.  Switches: no. */
CO_API void co_group_free(co_group_t *g);

/* Spawns fn(arg) into g, first waiting for a free slot when the group is
 * at its limit (members that finished do not hold a slot).  NULL with
 * errno as co_spawn_ex, or ETIMEDOUT / ECANCELED while waiting.
 * Switches: only when it has to wait for a slot. */
CO_API co_coro_t *co_group_spawn(co_group_t *g, co_fn fn, void *arg, const co_spawn_opts_t *opts, int64_t deadline);

/* Waits for every member to finish, then joins them (results dropped).
 * Members taken with co_group_next stay the caller's to join.
 * ETIMEDOUT / ECANCELED: nothing was joined.  Switches: yes. */
CO_API int co_group_join(co_group_t *g, int64_t deadline);

/* Kills every member still running.  Returns 0.  Switches: no. */
CO_API int co_group_kill(co_group_t *g);

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

#ifdef __cplusplus
}
#endif

#endif
