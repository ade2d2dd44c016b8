/* Stacks: mmap'd, committed lazily, protected, cached.
 *
 * Two modes (docs/stacks.md):
 *  - guard: a stack is its own mapping with a PROT_NONE page below it.  An
 *    overflow faults on the guard page; the SIGSEGV handler (on an
 *    alternate signal stack) names the coroutine and aborts.  Each such
 *    stack costs two kernel map entries.
 *  - canary: stacks carved from shared "slab" mappings, one map entry for
 *    many stacks, so a million coroutines fit in vm.max_map_count (65530
 *    by default).  A canary word at the bottom and the stack pointer are
 *    checked on every switch away and when the fiber ends.
 *
 * Policy (COGENT_STACK_GUARD): "auto" (default) gives guard pages while the
 * process holds fewer guarded stacks than a quarter of vm.max_map_count,
 * canary after that; "always" and "never" force one mode.
 *
 * Freed stacks go to a per-thread cache (their touched pages stay
 * resident, so reuse is free).  Beyond it they wait, still resident, for
 * the thread to be idle (or for too many to wait), and then go a batch at
 * a time to a process-wide pool: their memory is given back (MADV_FREE,
 * one call per run of neighbours), their mapping kept, and the pool hands
 * them out before anything new is mapped.  Nothing is unmapped one stack
 * at a time, and a million coroutines ending together pay for none of it
 * while they end. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "fiber.h"
#include "fork.h"
#include "stack.h"
#include "sys.h"

#if CO_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if defined(CO_VALGRIND)
#include <valgrind/valgrind.h>
#endif

#define CACHE_MAX 256 /* free stacks kept per thread, pages and all */
/* Freed beyond the cache and not trimmed yet: at most this many (they
 * were all in use a moment ago, so this holds no more memory than the
 * program's peak; idle and busy hubs trim them, stack.h). */
#define DIRTY_MAX     (1 << 22)
#define SLAB_STACKS   64 /* canary stacks per mapping */
#define ALTSTACK_SIZE (64 * 1024)
#define MAX_STACK     CO__STACK_MAX

enum { POLICY_AUTO, POLICY_ALWAYS, POLICY_NEVER };

static pthread_once_t once = PTHREAD_ONCE_INIT;
static size_t page_size;
static size_t default_size;
static int policy;
static size_t guard_budget;
static atomic_size_t live_guarded, live_canary;

/* The pool: free stacks no thread caches, by size, guard and canary mode
 * alike.  They stay mapped (guard stacks keep their guard page, canary
 * stacks their place in a slab) with their memory given back, and are
 * handed out again before anything new is mapped: nothing is ever
 * unmapped one stack at a time.  The records are here, off the stacks, so
 * that pooling one touches none of its pages. */
typedef struct size_class {
    size_t size;
    co__stack_t *v;
    size_t n, cap;
} size_class_t;
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER; /* the pool */
static size_class_t *classes;
static size_t nclasses;
static atomic_size_t pooled;
static int give_back = MADV_FREE; /* MADV_DONTNEED where the kernel lacks it */

static struct sigaction old_segv, old_bus;

/* Bytes, or with a K or M suffix; 0 for anything else (signs, spaces,
 * other suffixes, values that overflow). */
static size_t parse_size(const char *s)
{
    if (*s < '0' || *s > '9') return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return 0;
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10, end++;
    else if (*end == 'm' || *end == 'M')
        shift = 20, end++;
    if (*end != '\0' || v > (SIZE_MAX >> shift)) return 0;
    return (size_t)(v << shift);
}

static void overflow_handler(int sig, siginfo_t *si, void *uctx);

static void init_once(void)
{
    co__fork_init();
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    default_size = CO_STACK_DEFAULT;
#if CO_ASAN || CO_TSAN
    default_size *= 4; /* sanitizer frames carry redzones and shadow calls */
#endif
    const char *env = getenv("COGENT_STACK_SIZE");
    if (env && *env) {
        size_t v = parse_size(env);
        if (v < CO_STACK_MIN || v > MAX_STACK)
            fprintf(stderr,
                    "cogent: ignoring COGENT_STACK_SIZE=%s (want bytes from %zu to %zu, K or M suffix ok); using %zu\n",
                    env, (size_t)CO_STACK_MIN, (size_t)MAX_STACK, default_size);
        else
            default_size = v;
    }
    env = getenv("COGENT_STACK_GUARD");
    policy = POLICY_AUTO;
    if (env && (!strcmp(env, "always") || !strcmp(env, "guard")))
        policy = POLICY_ALWAYS;
    else if (env && (!strcmp(env, "never") || !strcmp(env, "canary")))
        policy = POLICY_NEVER;
    else if (env && *env && strcmp(env, "auto") != 0)
        fprintf(stderr, "cogent: ignoring COGENT_STACK_GUARD=%s (want auto, always or never)\n", env);

    size_t max_maps = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    if (f) {
        unsigned long v;
        if (fscanf(f, "%lu", &v) == 1 && v > 0) max_maps = v;
        fclose(f);
    }
    /* Each guarded stack takes two map entries: half of the budget goes to
     * stacks, the rest stays for the program's own mappings. */
    guard_budget = max_maps / 4;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = overflow_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
}

/* Every thread that runs fibers needs an alternate signal stack, or the
 * overflow handler would itself run on the overflowed stack. */
static void ensure_altstack(co__stack_cache_t *t)
{
    if (t->altstack) return;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
        t->altstack = (void *)1; /* someone (the program, ASan) set one */
        return;
    }
    void *m = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return; /* overflow then dies by plain SIGSEGV */
    stack_t ss = {.ss_sp = m, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) {
        munmap(m, ALTSTACK_SIZE);
        return;
    }
    t->altstack = m;
}

static int map_guarded(co__stack_t *st, size_t size)
{
    char *m = mmap(NULL, size + page_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return -1;
    if (mprotect(m, page_size, PROT_NONE) < 0) {
        munmap(m, size + page_size);
        return -1;
    }
    st->lo = m + page_size;
    st->size = size;
    st->mode = CO_STACK_GUARD;
    atomic_fetch_add_explicit(&live_guarded, 1, memory_order_relaxed);
    return 0;
}

/* The size class for `size`, created if needed; NULL when out of memory.
 * Called with slab_lock held. */
static size_class_t *size_class(size_t size)
{
    for (size_t i = 0; i < nclasses; i++)
        if (classes[i].size == size) return &classes[i];
    size_class_t *n = realloc(classes, (nclasses + 1) * sizeof *n);
    if (!n) return NULL;
    classes = n;
    classes[nclasses] = (size_class_t){.size = size};
    return &classes[nclasses++];
}

/* What every new stack gets once: its cache colour and, under valgrind,
 * its registration (kept for its life: stacks are never unmapped). */
static void born(co__stack_t *st)
{
    /* Stacks are page-multiples apart, so their tops (the hottest bytes)
     * would all fall in the same cache sets and evict each other; start
     * each first frame at one of 16 offsets so neighbours use 16 sets. */
    static atomic_uint colors;
    st->color = (uint16_t)((atomic_fetch_add_explicit(&colors, 1, memory_order_relaxed) % 16) * 64);
    st->valgrind = 0;
#if defined(CO_VALGRIND)
    st->vg_id = VALGRIND_STACK_REGISTER(st->lo, st->lo + st->size);
    st->valgrind = 1;
#endif
}

/* Adds st to its class (pool locked).  false when out of memory. */
static bool pool_add(size_class_t *c, const co__stack_t *st)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        co__stack_t *v = realloc(c->v, cap * sizeof *v);
        if (!v) return false;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = *st;
    return true;
}

/* A new slab of canary stacks into the pool (locked).  0 or -1/ENOMEM. */
static int map_slab(size_class_t *c)
{
    if (c->cap - c->n < SLAB_STACKS) {
        size_t cap = c->n + SLAB_STACKS + (c->cap ? c->cap : 256);
        co__stack_t *v = realloc(c->v, cap * sizeof *v);
        if (!v) return errno = ENOMEM, -1;
        c->v = v;
        c->cap = cap;
    }
    size_t size = c->size;
    char *m = mmap(NULL, size * SLAB_STACKS, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return errno = ENOMEM, -1;
    /* Handed out lowest first (the pool is a stack): neighbours in the
     * slab are neighbours in time, and give their memory back together. */
    for (size_t i = SLAB_STACKS; i-- > 0;) {
        co__stack_t st = {.lo = m + i * size, .size = size, .mode = CO_STACK_CANARY};
        born(&st);
        c->v[c->n++] = st;
    }
    atomic_fetch_add_explicit(&live_canary, SLAB_STACKS, memory_order_relaxed);
    atomic_fetch_add_explicit(&pooled, SLAB_STACKS, memory_order_relaxed);
    return 0;
}

/* A stack of `size` from the pool, or a new one: a guard stack while the
 * policy wants one, else a canary stack from a slab.  0 or -1/ENOMEM. */
static int pool_get(co__stack_t *st, size_t size)
{
    pthread_mutex_lock(&slab_lock);
    size_class_t *c = size_class(size);
    if (!c) goto nomem;
    if (c->n == 0) {
        bool want_guard =
            policy == POLICY_ALWAYS ||
            (policy == POLICY_AUTO && atomic_load_explicit(&live_guarded, memory_order_relaxed) < guard_budget);
        if (want_guard && map_guarded(st, size) == 0) {
            pthread_mutex_unlock(&slab_lock);
            born(st);
            return 0;
        }
        if (policy == POLICY_ALWAYS || map_slab(c) < 0) goto nomem;
    }
    *st = c->v[--c->n];
    atomic_fetch_sub_explicit(&pooled, 1, memory_order_relaxed);
    pthread_mutex_unlock(&slab_lock);
    return 0;
nomem:
    pthread_mutex_unlock(&slab_lock);
    return errno = ENOMEM, -1;
}

static int by_address(const void *a, const void *b)
{
    const char *x = ((const co__stack_t *)a)->lo, *y = ((const co__stack_t *)b)->lo;
    return (x > y) - (x < y);
}

/* Gives the memory of n free stacks back to the kernel and puts them in
 * the pool: one madvise per run of neighbours (a slab's stacks are
 * contiguous), one lock for them all. */
static void give_back_all(co__stack_t *v, size_t n)
{
    if (n == 0) return;
    qsort(v, n, sizeof *v, by_address);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[j - 1].lo + v[j - 1].size == v[j].lo) j++;
        char *lo = v[i].lo;
        size_t len = (size_t)(v[j - 1].lo + v[j - 1].size - lo);
#if CO_ASAN
        /* Frames of the last owners may have left poisoned redzones. */
        ASAN_UNPOISON_MEMORY_REGION(lo, len);
#endif
        /* MADV_FREE: the kernel takes the pages when it needs them; until
         * then a stack reused from the pool finds them still there. */
        if (madvise(lo, len, give_back) < 0 && errno == EINVAL && give_back != MADV_DONTNEED) {
            give_back = MADV_DONTNEED;
            madvise(lo, len, give_back);
        }
        i = j;
    }
    pthread_mutex_lock(&slab_lock);
    for (size_t i = 0; i < n; i++) {
        size_class_t *c = size_class(v[i].size);
        if (c && pool_add(c, &v[i])) {
            atomic_fetch_add_explicit(&pooled, 1, memory_order_relaxed);
            continue;
        }
        /* No memory for the record: the stack goes away for good. */
        if (v[i].mode == CO_STACK_GUARD) {
#if defined(CO_VALGRIND)
            if (v[i].valgrind) VALGRIND_STACK_DEREGISTER(v[i].vg_id);
#endif
            munmap(v[i].lo - page_size, v[i].size + page_size);
            atomic_fetch_sub_explicit(&live_guarded, 1, memory_order_relaxed);
        }
        /* A canary stack's range stays in its slab, unused. */
    }
    pthread_mutex_unlock(&slab_lock);
}

int co__stack_get(co__stack_t *st, size_t size)
{
    co__thread_t *t = &co__tls;
    /* The common case first: a default-size stack from this thread's cache
     * (a non-empty cache means the module and the thread are set up). */
    if (CO__LIKELY(size == 0 && t->stacks.n > 0 && t->stacks.cache[t->stacks.n - 1].size == default_size)) {
        *st = t->stacks.cache[--t->stacks.n];
#if CO_ASAN
        ASAN_UNPOISON_MEMORY_REGION(st->lo, st->size);
#endif
        return 0;
    }
    pthread_once(&once, init_once);
    if (size == 0) size = default_size;
    if (size < CO_STACK_MIN || size > MAX_STACK) return errno = EINVAL, -1;
    size = (size + page_size - 1) & ~(page_size - 1);
    t = co__thread();
    ensure_altstack(&t->stacks);

    for (size_t i = t->stacks.n; i-- > 0;) {
        if (t->stacks.cache[i].size != size) continue;
        *st = t->stacks.cache[i];
        t->stacks.cache[i] = t->stacks.cache[--t->stacks.n];
#if CO_ASAN
        /* Frames of the previous owner may have left poisoned redzones. */
        ASAN_UNPOISON_MEMORY_REGION(st->lo, st->size);
#endif
        return 0;
    }

    if (pool_get(st, size) < 0) return -1;
#if CO_ASAN
    ASAN_UNPOISON_MEMORY_REGION(st->lo, st->size);
#endif
    return 0;
}

void co__stack_put(co__stack_t *st)
{
    if (!st->lo) return;
    co__thread_t *t = &co__tls;
    if (CO__LIKELY(t->stacks.n < t->stacks.cap)) {
        t->stacks.cache[t->stacks.n++] = *st; /* a canary zone is still zero: checked at exit */
        st->lo = NULL;
        st->mode = 0;
        return;
    }
    if (t->stacks.n == t->stacks.cap && t->stacks.cap < CACHE_MAX) {
        size_t cap = t->stacks.cap ? t->stacks.cap * 2 : 16;
        co__stack_t *c = realloc(t->stacks.cache, cap * sizeof *c);
        if (c) {
            t->stacks.cache = c;
            t->stacks.cap = cap;
        }
    }
    if (t->stacks.n < t->stacks.cap) {
        t->stacks.cache[t->stacks.n++] = *st; /* a canary zone is still zero: checked at exit */
    } else {
        /* Beyond the cache: waits, resident, for an idle moment. */
        co__stack_cache_t *c = &t->stacks;
        if (c->ndirty == c->dirty_cap) {
            size_t cap = c->dirty_cap ? c->dirty_cap * 2 : 1024;
            co__stack_t *d = cap <= DIRTY_MAX ? realloc(c->dirty, cap * sizeof *d) : NULL;
            if (d) {
                c->dirty = d;
                c->dirty_cap = cap;
            }
        }
        if (c->ndirty < c->dirty_cap)
            c->dirty[c->ndirty++] = *st;
        else
            give_back_all(st, 1);
        if (c->ndirty >= DIRTY_MAX) co__stack_trim(CO__STACK_TRIM_BATCH); /* too many: now, a batch */
    }
    memset(st, 0, sizeof *st);
}

size_t co__stack_trim(size_t budget)
{
    co__stack_cache_t *c = &co__tls.stacks;
    size_t k = c->ndirty < budget ? c->ndirty : budget;
    c->ndirty -= k;
    give_back_all(c->dirty + c->ndirty, k);
    return c->ndirty;
}

void co__stack_thread_exit(void)
{
    co__thread_t *t = &co__tls;
    give_back_all(t->stacks.cache, t->stacks.n);
    give_back_all(t->stacks.dirty, t->stacks.ndirty);
    free(t->stacks.dirty);
    t->stacks.dirty = NULL;
    t->stacks.ndirty = t->stacks.dirty_cap = 0;
    free(t->stacks.cache);
    t->stacks.cache = NULL;
    t->stacks.n = t->stacks.cap = 0;
    if (t->stacks.altstack && t->stacks.altstack != (void *)1) {
        stack_t ss = {.ss_flags = SS_DISABLE};
        sigaltstack(&ss, NULL);
        munmap(t->stacks.altstack, ALTSTACK_SIZE);
    }
    t->stacks.altstack = NULL;
}

void co_stack_stats(co_stack_stats_t *st)
{
    pthread_once(&once, init_once);
    st->guarded = atomic_load(&live_guarded);
    st->canary = atomic_load(&live_canary);
    st->cached = co__tls.stacks.n + co__tls.stacks.ndirty;
    st->pooled = atomic_load(&pooled);
    st->guard_budget = policy == POLICY_NEVER ? 0 : guard_budget;
}

/* ------------------------------------------------- overflow reporting */

/* Async-signal-safe: the overflow handler may not call stdio. */
noreturn void co__stack_overflow(const co_fiber_t *f, const char *how)
{
    co__line_t l = {.n = 0};
    co__line_str(&l, "cogent: stack overflow in ");
    if (f->cls && f->cls->describe) {
        f->cls->describe(f, &l);
    } else {
        co__line_str(&l, f->kind == CO__K_GEN ? "generator fiber 0x" : "fiber 0x");
        co__line_uint(&l, (uintptr_t)f, 16);
    }
    co__line_str(&l, " (stack ");
    co__line_uint(&l, f->stack.size, 10);
    co__line_str(&l, " bytes, ");
    co__line_str(&l, f->stack.mode == CO_STACK_GUARD     ? "guard page"
                     : f->stack.mode == CO__STACK_SHARED ? "the compact coroutines' shared stack, guard page"
                                                         : "canary mode");
    co__line_str(&l, "): ");
    co__line_str(&l, how);
    co__line_str(&l, "; give it a larger stack_size (docs/stacks.md)\n");
    ssize_t w = co__sys_write(2, l.buf, l.n);
    (void)w;
    abort();
}

static void chain(int sig, siginfo_t *si, void *uctx)
{
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uctx);
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
    } else {
        /* Restore the default action; returning re-runs the faulting
         * instruction, which now kills the process as it would have. */
        sigaction(sig, old, NULL);
    }
}

/* The stack pointer of the interrupted code. */
static uintptr_t fault_sp(const void *uctx)
{
    const ucontext_t *uc = uctx;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#else
    return (uintptr_t)uc->uc_mcontext.sp; /* aarch64 (arch.h admits no other) */
#endif
}

static void overflow_handler(int sig, siginfo_t *si, void *uctx)
{
    const co_fiber_t *f = co__tls.cur;
    if (f && f->stack.mode) {
        uintptr_t a = (uintptr_t)si->si_addr, lo = (uintptr_t)f->stack.lo, sp = fault_sp(uctx);
        /* The guard page, or just below it (a frame larger than a page
         * can jump over the guard). */
        if ((f->stack.mode == CO_STACK_GUARD || f->stack.mode == CO__STACK_SHARED) && a < lo + 256 &&
            a + page_size + 64 * 1024 >= lo)
            co__stack_overflow(f, "the guard page was hit");
        /* Below the stack, wherever the fault happened: a canary-mode
         * stack has no guard page, so a deep overflow runs through its
         * neighbours' memory first and faults far below. */
        if (sp < lo) co__stack_overflow(f, "the stack pointer went below the stack");
    }
    chain(sig, si, uctx);
}

/* ------------------------------------------------------------ fork */

void co__stack_fork_prepare(void)
{
    pthread_mutex_lock(&slab_lock);
}

void co__stack_fork_parent(void)
{
    pthread_mutex_unlock(&slab_lock);
}

void co__stack_fork_child(void)
{
    pthread_mutex_unlock(&slab_lock);
}
