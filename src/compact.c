/* Compact coroutines: one stack per hub, shared, and each suspended
 * coroutine's live part of it copied aside (see compact.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compact.h"
#include "switch.h"
#include "wait.h"

#if CO_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if defined(CO_VALGRIND)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

#define SHARED_SIZE ((size_t)256 * 1024) /* address space; only what runs is touched */
#define COPIER_SIZE ((size_t)32 * 1024)

typedef struct co__shared {
    char *lo, *top; /* the shared stack: [lo, top), a guard page below lo */
    char *map;
    size_t maplen;
    unsigned vg_id;
    co__hub_t *hub;
    co_coro_t *owner;  /* whose frames are on it now (its resume is its fiber); NULL: nobody's */
    co_fiber_t copier; /* the resume of every other compact coroutine: evicts the owner, restores */
#if CO_ASAN
    /* Clang's ASan marks only a frame's redzones at its entry, trusting
     * the rest to be clean: the poison evicted or ended coroutines left
     * on the shared stack, from here up, goes before anyone else runs. */
    char *dirty;
#endif
} co__shared_t;

typedef struct co__compact {
    char *buf; /* the frames [sp, top) while evicted (under ASan, then their shadow) */
    size_t len, cap;
    co__waiter_t waiter;
    co__parknode_t park;
} co__compact_t;

/* --------------------------------------------------------------- policy */

int co__compact_env = -1;

bool co__compact_default_slow(void)
{
    /* Racing first reads all compute the same answer. */
    const char *v = getenv("COGENT_COMPACT");
    int yes = v && *v && strcmp(v, "0") != 0;
    __atomic_store_n(&co__compact_env, yes, __ATOMIC_RELAXED);
    return yes;
}

/* --------------------------------------------------------------- copies */

#if CO_ASAN
/* The bytes of a stack carry their frames' redzones in ASan's shadow:
 * frames copied back must get their shadow back too, and reading them
 * (redzones included) must not be checked. */
static char *shadow_of(const char *p)
{
    size_t scale, offset;
    __asan_get_shadow_mapping(&scale, &offset);
    return (char *)(((uintptr_t)p >> scale) + offset);
}
/* Not memcpy, which ASan checks (and the shadow itself is no memory it
 * lets anyone read). */
__attribute__((no_sanitize("address"))) static void copy_raw(char *d, const char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        *(volatile uint64_t *)(void *)(d + i) = *(const volatile uint64_t *)(const void *)(s + i);
    for (; i < n; i++) ((volatile char *)d)[i] = s[i];
}
#define SHADOW_LEN(n) ((n) / 8)
#else
#define SHADOW_LEN(n) ((size_t)0)
#endif

#if CO_ASAN
static void mark_dirty(co__shared_t *sh, const char *from)
{
    if (from < sh->lo) from = sh->lo;
    if (!sh->dirty || from < sh->dirty) sh->dirty = (char *)(uintptr_t)from;
}
static void clean(co__shared_t *sh)
{
    if (!sh->dirty) return;
    ASAN_UNPOISON_MEMORY_REGION(sh->dirty, (size_t)(sh->top - sh->dirty));
    sh->dirty = NULL;
}
#else
#define mark_dirty(sh, from) ((void)(sh), (void)(from))
#define clean(sh)            ((void)(sh))
#endif

/* Copies the owner's frames out of the shared stack into its buffer. */
static void evict(co__shared_t *sh)
{
    co_coro_t *o = sh->owner;
    if (!o) return;
    co__compact_t *cp = o->compact;
    const char *sp = o->fiber.sp;
    size_t len = (size_t)(sh->top - sp), need = len + SHADOW_LEN(len);
    if (need > cp->cap || (cp->cap > 4096 && need < cp->cap / 4)) { /* grow, or shrink after a deep moment */
        size_t cap = (need + 63) & ~(size_t)63;
        char *b = realloc(cp->buf, cap);
        CO__CHECK(b != NULL, "out of memory saving the stack of compact coroutine #%llu (%zu bytes)",
                  (unsigned long long)o->id, len);
        cp->buf = b;
        cp->cap = cap;
    }
#if CO_ASAN
    copy_raw(cp->buf, sp, len);
    copy_raw(cp->buf + len, shadow_of(sp), SHADOW_LEN(len));
#else
    memcpy(cp->buf, sp, len);
#endif
    cp->len = len;
    o->resume = &sh->copier; /* its next run starts with a restore */
    sh->owner = NULL;
    mark_dirty(sh, sp);
}

/* Puts c's frames on the shared stack (a new one gets its first frame)
 * and makes it the owner. */
static void restore(co__shared_t *sh, co_coro_t *c)
{
    co__compact_t *cp = c->compact;
    clean(sh);
#if defined(CO_VALGRIND)
    /* Memcheck took the shared stack below the last stack pointer it saw
     * there for freed: the frames written now are addressable again (and
     * their definedness comes with the copy), and so is a little below
     * them, where the switch's landing call pushes (valgrind folds that
     * push into the stack change, which it takes for a switch and does
     * not track). */
    char *from = (c->fiber.state == CO__F_NEW ? sh->top - 1024 : sh->top - cp->len) - 256;
    VALGRIND_MAKE_MEM_UNDEFINED(from, (size_t)(sh->top - from));
#endif
    if (c->fiber.state == CO__F_NEW) {
        co__fiber_frame(&c->fiber);
    } else {
        char *sp = sh->top - cp->len;
        CO__CHECK(sp == (char *)c->fiber.sp, "compact coroutine #%llu: its saved frames do not fit where they were",
                  (unsigned long long)c->id);
#if CO_ASAN
        copy_raw(sp, cp->buf, cp->len);
        copy_raw(shadow_of(sp), cp->buf + cp->len, SHADOW_LEN(cp->len));
#else
        memcpy(sp, cp->buf, cp->len);
#endif
    }
    c->resume = &c->fiber;
    sh->owner = c;
}

/* The copier: every compact coroutine whose frames are not on the shared
 * stack has it as its resume, so the hub's plain switch to such a
 * coroutine lands here, off the shared stack, with the coroutine to run
 * already the hub's current one.  A coroutine that ended on the shared
 * stack gave it up as it was released (the landing of the switch that
 * brought us here), so the owner found here is alive. */
static void *copier_main(co_fiber_t *f, void *unused)
{
    (void)unused;
    co__shared_t *sh = f->ud;
    for (;;) {
        co_coro_t *next = sh->hub->current;
        CO__CHECK(next->compact != NULL && next != sh->owner,
                  "compact coroutines: the copier was switched to for coroutine #%llu, which needs no restore",
                  (unsigned long long)next->id);
        evict(sh);
        restore(sh, next);
        co__fiber_transfer(f, &next->fiber, NULL, false);
    }
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static co__shared_t *shared_new(co__hub_t *h)
{
    co__shared_t *sh = calloc(1, sizeof *sh);
    if (!sh) return NULL;
    sh->hub = h;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    sh->maplen = SHARED_SIZE + page;
    sh->map =
        mmap(NULL, sh->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (sh->map == MAP_FAILED) goto fail;
    if (mprotect(sh->map, page, PROT_NONE) < 0) goto fail_map; /* overflows fault, and are reported */
    sh->lo = sh->map + page;
    sh->top = sh->lo + SHARED_SIZE;
#if defined(CO_VALGRIND)
    sh->vg_id = VALGRIND_STACK_REGISTER(sh->lo, sh->top);
#endif
    if (co__fiber_init(&sh->copier, copier_main, sh, COPIER_SIZE) < 0) goto fail_vg;
    sh->copier.kind = CO__K_RAW;
    return sh;
fail_vg:
#if defined(CO_VALGRIND)
    VALGRIND_STACK_DEREGISTER(sh->vg_id);
#endif
fail_map:
    munmap(sh->map, sh->maplen);
fail:
    free(sh);
    return NULL;
}

int co__compact_init(co__hub_t *h, co_coro_t *c, size_t stack_size)
{
    if (stack_size > SHARED_SIZE) return EINVAL;
    if (!h->shared && !(h->shared = shared_new(h))) return ENOMEM;
    co__compact_t *cp = calloc(1, sizeof *cp);
    if (!cp) return ENOMEM;
    co__shared_t *sh = h->shared;
    c->compact = cp;
    /* Its fiber runs on the shared stack, which the fiber layer never
     * gives back or checks for canaries (the guard page covers it). */
    c->fiber.stack = (co__stack_t){.lo = sh->lo, .size = (size_t)(sh->top - sh->lo), .mode = CO__STACK_SHARED};
    c->resume = &sh->copier; /* its first frame is built there */
#if CO_ASAN
    c->fiber.asan_fake = NULL;
    c->fiber.asan_lo = sh->lo;
    c->fiber.asan_size = (size_t)(sh->top - sh->lo);
#endif
#if CO_TSAN
    c->fiber.tsan = NULL;
#endif
    return 0;
}

void co__compact_free(co_coro_t *c)
{
    co__shared_t *sh = c->hub->shared;
    if (sh && sh->owner == c) {
        /* It ended there: its frames go with it (they, and the switch's
         * below them, never returned: stale ASan poison). */
        sh->owner = NULL;
        mark_dirty(sh, (const char *)c->fiber.sp - 256);
    }
    free(c->compact->buf);
    free(c->compact);
    c->compact = NULL;
}

void co__compact_hub_exit(co__hub_t *h)
{
    co__shared_t *sh = h->shared;
    if (!sh) return;
    co__fiber_release(&sh->copier);
#if CO_ASAN
    ASAN_UNPOISON_MEMORY_REGION(sh->lo, (size_t)(sh->top - sh->lo));
#endif
#if defined(CO_VALGRIND)
    VALGRIND_STACK_DEREGISTER(sh->vg_id);
#endif
    munmap(sh->map, sh->maplen);
    free(sh);
    h->shared = NULL;
}

void co__compact_fork_child(co__hub_t *h)
{
#if CO_TSAN
    /* TSan keeps no working fiber of the parent's in a child (it syncs
     * with nothing): the copier gets a new one at its next switch. */
    if (h->shared) h->shared->copier.tsan = NULL;
#else
    (void)h;
#endif
}

/* --------------------------------------------------------------- switch */

/* ---------------------------------------------------------------- nodes */

co__waiter_t *co__compact_waiter(co_coro_t *c)
{
    return &c->compact->waiter;
}

co__parknode_t *co__compact_parknode(co_coro_t *c)
{
    return &c->compact->park;
}

void co__compact_check_slow(const co__hub_t *h, const void *obj, const char *what)
{
    const co__shared_t *sh = h->shared;
    const char *p = obj;
    CO__CHECK(!(p >= sh->lo && p < sh->top),
              "%s: the object waited on (%p) lives on a compact coroutine's stack, which moves while that coroutine "
              "is suspended; give it a place of its own (a global, the heap, or a coroutine with its own stack): "
              "docs/stacks.md",
              what, obj);
}
