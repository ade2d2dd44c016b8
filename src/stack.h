/* Stacks for fibers (stack.c): mmap'd, committed lazily, protected by a
 * guard page or a canary zone, cached per thread.  docs/stacks.md.
 * Knows nothing of what runs on a stack. */
#ifndef COGENT_STACK_H
#define COGENT_STACK_H

#include "core.h"

typedef struct co__stack {
    char *lo;         /* lowest byte; the canary zone starts here */
    size_t size;      /* usable bytes above lo */
    uint8_t mode;     /* CO_STACK_GUARD or CO_STACK_CANARY; 0 = none */
    uint8_t valgrind; /* registered with valgrind (id below) */
    uint16_t color;   /* bytes left unused at the top (see stack.c) */
    unsigned vg_id;
} co__stack_t;

/* co__stack_t.mode of a compact coroutine's fiber (compact.c): its stack
 * is the hub's shared one, which the fiber layer never gives back. */
#define CO__STACK_SHARED 3

/* stack.c's slice of the per-thread state (co__thread_t). */
typedef struct co__stack_cache {
    co__stack_t *cache; /* free stacks kept for reuse, pages and all */
    size_t n, cap;
    co__stack_t *dirty; /* freed beyond the cache: resident until trimmed */
    size_t ndirty, dirty_cap;
    void *altstack; /* the overflow handler's signal stack; 1: not ours */
} co__stack_cache_t;

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

/* Gets a stack of `size` usable bytes (0: the default; rounded up to
 * pages) from this thread's cache or the kernel, in the mode the process
 * policy picks (docs/stacks.md); its canary zone is zero.  0, or -1 with
 * errno ENOMEM / EINVAL.  Installs the overflow handler on first use. */
int co__stack_get(co__stack_t *st, size_t size);
/* Larger stack requests are mistakes. */
#define CO__STACK_MAX ((size_t)1 << 40)
/* True if `size` is a stack size co__stack_get accepts (0: the default). */
static inline bool co__stack_size_ok(size_t size)
{
    return size == 0 || (size >= CO_STACK_MIN && size <= CO__STACK_MAX);
}
/* Gives a stack back: to this thread's cache, or beyond it to the pool in
 * batches (its memory given back, the mapping kept).  Must not be the
 * stack we are running on.  st->lo and st->mode are cleared. */
void co__stack_put(co__stack_t *st);
/* Freed stacks beyond the cache wait, resident, until the thread is idle
 * (its hub about to wait for events) or too many wait: then their memory
 * goes back to the kernel and they go to the process-wide pool, a batch at
 * a time (Go's runtime gives stack memory back in the background too).
 * co__stack_trim gives back at most `budget` of them; returns how many
 * still wait. */
#define CO__STACK_TRIM_BATCH 4096
size_t co__stack_trim(size_t budget);
/* (How many wait: co__stack_dirty in fiber.h, next to the per-thread state.) */

/* Reports an overflow of the stack of `f` and aborts.  Async-signal-safe. */
noreturn void co__stack_overflow(const co_fiber_t *f, const char *how);
/* Frees this thread's stack cache and alternate signal stack. */
void co__stack_thread_exit(void);

/* The fork path (fork.c): the slab lock is held across fork() so that the
 * child's free lists are whole. */
void co__stack_fork_prepare(void);
void co__stack_fork_parent(void);
void co__stack_fork_child(void);

#endif
