/* An API fuzzer: property tests over random sequences of cogent calls.
 *
 * Coroutines on two hubs (two threads) and one plain thread that never
 * gets a hub share a pool of objects -- locks, rlocks, semaphores
 * (bounded and not), events, a condition and its lock, queues of every
 * kind, socketpairs and pipes, coroutine handles and groups -- and each
 * draws operations from one table (`ops` below), with random deadlines:
 * none, 0, passed (a moment ago, or any negative value but -1), or soon.
 * After every call the fuzzer checks the call's contract
 * (include/cogent.h, docs/conventions.md):
 *
 *  - it succeeded, or failed with an errno its contract lists for that
 *    deadline and state: ETIMEDOUT only with a deadline, EAGAIN only for a
 *    try, EDEADLK only for a lock cycle without deadline, a lock the
 *    caller holds, or a join of itself;
 *  - a try (deadline 0) and every call marked "Switches: no" return at
 *    once, without switching to another coroutine;
 *  - ETIMEDOUT (and co_poll's 0, and a sleep's end) never come before the
 *    deadline, nor much after it;
 *  - ECANCELED comes only to a coroutine that was killed, and then at
 *    every later blocking call;
 *  - a lock or rlock has one owner at a time (a shadow owner is swapped in
 *    and out around each critical section); a bounded semaphore never
 *    lets more in than its initial value; every semaphore ends where its
 *    acquires and releases say;
 *  - no queue item is lost, duplicated or moved to another queue (each is
 *    a token with a ledger entry), a failed put leaves nothing behind, a
 *    put after close fails, and task counts add up;
 *  - the bytes written into a socketpair or pipe come out, the same ones,
 *    and end of file only once the other end is closed;
 *  - a coroutine's result says how it ended: never ran (only if killed),
 *    cancelled (only if killed), or finished;
 *  - once every actor is asked to stop, everything ends without a single
 *    kill: a wait that nothing ends then is a lost wake-up.  Everything
 *    is joined and freed, and the harness checks that no coroutine, timer,
 *    descriptor or thread is left.
 *
 * The fuzzer models ownership so that it never commits what the contract
 * calls a programming error: a handle is joined or detached exactly once
 * and never used after; only owners release; group members are joined on
 * their own hub.  Those errors are committed on purpose, each in a child
 * process, by test_fuzz_misuse.
 *
 * A wait without a deadline can only be ended by someone else, so those
 * that nothing could end stay out of the mix: one on anything but a lock
 * is made only holding nothing (no lock, rlock or unit), joins and waits
 * without one only target younger coroutines (no join cycle), and a group
 * member never waits on its own group without one.  Lock cycles are left
 * in: cogent fails the wait that closes one with EDEADLK, and that actor
 * then releases all it holds.  Half the drivers are "hot" (mostly tries
 * and passed deadlines) so that the objects stay contended.
 *
 * A condition is waited on holding no other lock: its retake could close
 * a cycle, which co_cond_wait answers with an abort (documented; test_sync
 * test_cond_retake_cycle).  The bugs this fuzzer found are fixed and each
 * has its own test (test_io's close races, test_threads's hubs exiting at
 * once, test_group, test_threads's joins).
 *
 * COGENT_FUZZ_SEED=<n> replays a run's choices (each actor draws from its
 * own stream; threads still interleave differently, so a failure may need
 * a few runs); COGENT_FUZZ_SECONDS=<s> runs longer (default 2; `make fuzz`
 * runs 600).  A watchdog aborts with a dump of every actor and co_dump if
 * the run overshoots its budget by far. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "cogent.h"
#include "harness.h"

/* -------------------------------------------------------------- config */

#define NHUB      2  /* hubs, each on its own thread */
#define DRIVERS   4  /* long-running actors per hub */
#define NSLOT     48 /* coroutine handles held at once */
#define MAX_DEPTH 2  /* how deep workers spawn workers */
#define MAX_COROS 64 /* a hub spawns no more beyond this many coroutines */
#define NLOCK     3
#define NRLOCK    2
#define NSEM      3
#define NEVENT    2
#define NQUEUE    4
#define NFD       3
#define NPROD     (NHUB * DRIVERS + 1) /* producers whose order is followed: drivers, the plain thread */
#define NPRIO     5                    /* priorities given to co_queue_put_prio */

/* Bounds for the timing properties: generous, since sanitizers and a busy
 * two-core machine stretch everything; the bugs they are for (a try that
 * waits, a timer that never fires) overshoot them by far. */
#define TRY_MS      (TEST_SANITIZED ? 2000 : 500)    /* a try or a "Switches: no" call */
#define LATE_MS     (TEST_SANITIZED ? 4000 : 2000)   /* a timeout after its deadline */
#define GRACE_MS    (TEST_SANITIZED ? 30000 : 10000) /* from the stop to every actor's end */
#define WATCHDOG_MS 60000                            /* beyond run + grace: abort with a dump */

/* Where an actor runs: a hub's index, the plain thread, or the main
 * coroutine of a thread (hub mains, the controller). */
enum { PLAIN = NHUB, MAINT };

static uint64_t seed;
static int64_t run_ms;
static atomic_bool stopping;                /* actors end what they do, then end */
static atomic_int nactive;                  /* actors not ended yet */
static co_event_t stop_ev = CO_EVENT_INIT;  /* hub mains wait for it (no actor clears it) */
static co_event_t sweep_ev = CO_EVENT_INIT; /* every actor ended: join what is left */
static atomic_long nops, nspawned, nworkers, nworkers_freed;
static atomic_llong max_late; /* the latest a timeout came after its deadline, ms */

static bool stopped(void)
{
    return atomic_load(&stopping);
}

/* ---------------------------------------------------------------- PRNG */

/* splitmix64: tiny, and any seed gives a good stream. */
typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static unsigned below(rng_t *r, unsigned n)
{
    return (unsigned)(rnd(r) % n);
}
static bool chance(rng_t *r, unsigned percent)
{
    return below(r, 100) < percent;
}

/* -------------------------------------------------------------- actors */

typedef struct actor {
    char name[32];
    int where;        /* a hub's index, PLAIN or MAINT */
    uint64_t seq;     /* spawn order; drivers, mains and the plain thread: 0 */
    int depth;        /* workers: how deep in the spawn tree */
    bool member;      /* spawned into its hub's group */
    bool hot;         /* mostly tries: keeps the CPUs busy, the objects contended */
    int prod;         /* drivers and the plain thread: 1 + their index among producers whose order is followed */
    uint32_t put_seq; /* producers: how many puts they began */
    uint32_t seen[NQUEUE][NPROD][NPRIO]; /* the last put_seq each producer's items had when this actor got them */
    rng_t rng;
    co_coro_t *self;     /* NULL for the plain thread */
    atomic_bool killed;  /* set before anyone calls co_kill on it */
    bool canceled;       /* it saw ECANCELED: clean up and return */
    atomic_bool started; /* workers: the body ran */
    atomic_int refs;     /* workers: one for the body, one for the handle */
    /* what it holds */
    bool lock[NLOCK];
    bool cond_lock; /* the condition's, inside a condition operation */
    unsigned rlock[NRLOCK];
    unsigned sem[NSEM];
    /* what it is doing, for dumps */
    _Atomic(const char *) op;
    atomic_llong op_since;
    char note[48];             /* what the operation is on, when the name is not enough */
    struct actor *prev, *next; /* the registry, while it runs */
} actor_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static actor_t *registry;

static void actor_init(actor_t *a, int where, uint64_t seq, uint64_t stream, const char *name)
{
    memset(a, 0, sizeof *a);
    a->where = where;
    a->seq = seq;
    a->rng.s = seed ^ (stream * 0xd1b54a32d192ed03ull);
    snprintf(a->name, sizeof a->name, "%s", name);
    atomic_init(&a->op, "starting");
}

static void actor_register(actor_t *a)
{
    pthread_mutex_lock(&reg_mu);
    a->prev = NULL;
    a->next = registry;
    if (registry) registry->prev = a;
    registry = a;
    pthread_mutex_unlock(&reg_mu);
}

static void actor_unregister(actor_t *a)
{
    pthread_mutex_lock(&reg_mu);
    if (a->prev)
        a->prev->next = a->next;
    else
        registry = a->next;
    if (a->next) a->next->prev = a->prev;
    pthread_mutex_unlock(&reg_mu);
}

static void set_op(actor_t *a, const char *op)
{
    a->note[0] = '\0';
    atomic_store_explicit(&a->op, op, memory_order_relaxed);
    atomic_store_explicit(&a->op_since, co_now(), memory_order_relaxed);
}

/* ------------------------------------------------------------ failures */

static void dump_fds(void);
static void dump_actors(void)
{
    for (int i = 0; i < 100 && pthread_mutex_trylock(&reg_mu) != 0; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    int64_t now = co_now();
    fprintf(stderr, "fuzz: actors still running:\n");
    for (actor_t *a = registry; a; a = a->next) {
        char held[96] = "";
        size_t n = 0;
        if (a->cond_lock) n += (size_t)snprintf(held + n, sizeof held - n, " C");
        for (int i = 0; i < NLOCK; i++)
            if (a->lock[i]) n += (size_t)snprintf(held + n, sizeof held - n, " L%d", i);
        for (int i = 0; i < NRLOCK && n < sizeof held; i++)
            if (a->rlock[i]) n += (size_t)snprintf(held + n, sizeof held - n, " R%dx%u", i, a->rlock[i]);
        for (int i = 0; i < NSEM && n < sizeof held; i++)
            if (a->sem[i]) n += (size_t)snprintf(held + n, sizeof held - n, " S%dx%u", i, a->sem[i]);
        fprintf(stderr, "  %-12s %-16s for %5lld ms%s%s%s%s%s\n", a->name, atomic_load(&a->op),
                (long long)(now - atomic_load(&a->op_since)), atomic_load(&a->killed) ? " (killed)" : "",
                a->note[0] ? " " : "", a->note, n ? "; holds" : "", held);
    }
    dump_fds();
    pthread_mutex_unlock(&reg_mu);
}

/* Reports a broken property with the seed that found it, every actor's
 * current operation and cogent's own dump, then aborts.  The first
 * failure wins; a second thread failing meanwhile just waits. */
static void fail(const actor_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(const actor_t *a, const char *fmt, ...)
{
    static atomic_bool failing;
    if (atomic_exchange(&failing, true))
        for (;;) pause();
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nfuzz: FAILED (replay with COGENT_FUZZ_SEED=%" PRIu64 "): %s%s%s: %s\n", seed,
            a ? a->name : "the fuzzer", a ? " in " : "", a ? atomic_load(&a->op) : "", msg);
    dump_actors();
    co_dump(2);
    abort();
}

/* The watchdog: nothing in a run may take much longer than its budget. */
static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv = PTHREAD_COND_INITIALIZER;
static bool wd_done;

static void *watchdog(void *arg)
{
    int64_t budget_ms = (int64_t)(intptr_t)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += budget_ms / 1000;
    pthread_mutex_lock(&wd_mu);
    while (!wd_done)
        if (pthread_cond_timedwait(&wd_cv, &wd_mu, &until) == ETIMEDOUT && !wd_done) {
            pthread_mutex_unlock(&wd_mu);
            fail(NULL, "watchdog: the run is still going %lld s after it began (a hang)", (long long)budget_ms / 1000);
        }
    pthread_mutex_unlock(&wd_mu);
    return NULL;
}

/* ------------------------------------------------- calls and contracts */

#define AS_ENUM(n) C_##n,
#define AS_NAME(n) #n,
/* clang-format off */
#define CALLS(X) \
    X(co_spawn) X(co_group_spawn) X(co_join) X(co_wait) X(co_joinall) X(co_detach) X(co_kill) \
    X(co_group_next) X(co_group_join) X(co_group_kill) X(co_yield_now) X(co_sleep) \
    X(co_lock_acquire) X(co_lock_release) X(co_rlock_acquire) X(co_sem_acquire) X(co_sem_release) \
    X(co_event_set) X(co_event_wait) X(co_cond_wait) X(co_cond_notify) \
    X(co_queue_put) X(co_queue_get) X(co_queue_task_done) X(co_queue_join) X(co_queue_close) \
    X(co_read) X(co_write) X(co_poll) X(co_wait_ready) X(co_close)
/* clang-format on */
enum call_id { CALLS(AS_ENUM) NCALL };
static const char *const call_name[NCALL] = {CALLS(AS_NAME)};

#define AS_RES(e)   RES_##e,
#define AS_VALUE(e) e,
#define ERRS(X)                                                                                                        \
    X(EAGAIN) X(ETIMEDOUT) X(ECANCELED) X(EDEADLK) X(EPIPE) X(EBADF) X(EINVAL) X(ENOENT) X(ENOMEM) X(ECONNRESET)
enum { RES_OK, ERRS(AS_RES) RES_OTHER, NRES };
static const int res_errno[NRES] = {0, ERRS(AS_VALUE) - 1};
static const char *const res_name[NRES] = {"ok", ERRS(AS_NAME) "other"};
#define E(e) (1u << RES_##e)

static atomic_ulong stats[NCALL][NRES];

static int res_of(int e)
{
    for (int i = 1; i < RES_OTHER; i++)
        if (res_errno[i] == e) return i;
    return RES_OTHER;
}

#define NODL INT64_MIN /* a call without a deadline */

typedef struct fcall {
    enum call_id id;
    int64_t d;     /* its deadline, or NODL */
    int64_t t0;    /* co_now() before it */
    uint64_t sw0;  /* the hub's switch count before it */
    bool noswitch; /* the contract says it must not switch (a try, "Switches: no") */
} call_t;

static uint64_t switches(void)
{
    co_hub_stats_t st;
    co_hub_stats(&st); /* zeros on the plain thread */
    return st.switches;
}

static call_t begin(enum call_id id, int64_t d, bool noswitch)
{
    return (call_t){.id = id, .d = d, .t0 = co_now(), .sw0 = switches(), .noswitch = noswitch};
}

static const char *dl_str(const call_t *c, char *buf, size_t n)
{
    if (c->d == NODL) return "-";
    if (c->d == -1) return "none";
    if (c->d == 0) return "0 (try)";
    snprintf(buf, n, "%+lld ms", (long long)(c->d - c->t0));
    return buf;
}

/* What a wait may fail with, by its deadline: the try form's error at 0,
 * ETIMEDOUT with any other deadline, nothing more without one; and
 * ECANCELED, which check() holds against kills. */
static unsigned wait_errs(int64_t d, unsigned try_err)
{
    return E(ECANCELED) | (d == 0 ? try_err : d == -1 ? 0 : E(ETIMEDOUT));
}

/* Checks one call: `rc` is what it returned (negative: failed, errno
 * says why), `allowed` the errno values its contract lists for this case.
 * Returns 0 or the errno. */
static int check(actor_t *a, call_t c, long rc, unsigned allowed)
{
    int e = rc < 0 ? errno : 0;
    int64_t now = co_now();
    char b[32];
    int r = e ? res_of(e) : RES_OK;
    atomic_fetch_add_explicit(&stats[c.id][r], 1, memory_order_relaxed);
    if (e && !(allowed & (1u << r)))
        fail(a, "%s (deadline %s) failed with %s, which its contract does not allow here", call_name[c.id],
             dl_str(&c, b, sizeof b), strerror(e));
    if (e == ECANCELED) {
        if (!a->self || !atomic_load(&a->killed) || !co_killed(a->self))
            fail(a, "%s failed with ECANCELED, but nobody killed the caller", call_name[c.id]);
        a->canceled = true;
    }
    if (e == ETIMEDOUT && c.d > 0) {
        if (now < c.d) fail(a, "%s: ETIMEDOUT %lld ms before its deadline", call_name[c.id], (long long)(c.d - now));
        /* A deadline already passed fails at once. */
        long long late = now - (c.d > c.t0 ? c.d : c.t0), m = atomic_load(&max_late);
        if (late > LATE_MS) fail(a, "%s: ETIMEDOUT %lld ms after its deadline", call_name[c.id], late);
        while (late > m && !atomic_compare_exchange_weak(&max_late, &m, late)) {
        }
    }
    if (c.noswitch) {
        if (now - c.t0 > TRY_MS)
            fail(a, "%s (deadline %s) took %lld ms; it must not block", call_name[c.id], dl_str(&c, b, sizeof b),
                 (long long)(now - c.t0));
        if (switches() != c.sw0)
            fail(a, "%s (deadline %s) switched to another coroutine; it must not", call_name[c.id],
                 dl_str(&c, b, sizeof b));
    }
    return e;
}

/* A random deadline: none (if `forever` allows it), a try, one that has
 * passed, or soon. */
static int64_t pick_deadline(actor_t *a, bool forever)
{
    unsigned x = below(&a->rng, 100);
    if (a->hot) x = x < 50 ? 20 : x < 60 ? 40 : x; /* mostly tries and passed deadlines */
    if (x < 12) return forever ? -1 : 0;
    if (x < 35) return 0;
    if (x < 42) return co_now() - 1 - below(&a->rng, 100);
    if (x < 45) return -2 - (int64_t)below(&a->rng, 1000000); /* negative, not -1: passed long ago */
    if (x < 95) return co_now() + 1 + below(&a->rng, 10);
    return co_now() + 20 + below(&a->rng, 100);
}

static bool holds_lock(const actor_t *a)
{
    if (a->cond_lock) return true;
    for (int i = 0; i < NLOCK; i++)
        if (a->lock[i]) return true;
    for (int i = 0; i < NRLOCK; i++)
        if (a->rlock[i]) return true;
    return false;
}

/* Waits without deadline on anything but a lock are only made holding
 * nothing: then whatever they wait for cannot be stuck behind them. */
static bool holds_nothing(const actor_t *a)
{
    if (holds_lock(a)) return false;
    for (int i = 0; i < NSEM; i++)
        if (a->sem[i]) return false;
    return true;
}

/* ------------------------------------------------------ locks, rlocks */

static co_lock_t locks[NLOCK];
static _Atomic(actor_t *) lock_owner[NLOCK];
static co_rlock_t rlocks[NRLOCK];
static _Atomic(actor_t *) rlock_owner[NRLOCK];

/* The shadow owner: swapped in right after an acquire, out right before
 * the release; finding someone else there means two owners at once. */
static void own(_Atomic(actor_t *) *shadow, actor_t *a, const char *what)
{
    actor_t *none = NULL;
    if (!atomic_compare_exchange_strong(shadow, &none, a)) fail(a, "acquired %s while %s holds it", what, none->name);
}

static void disown(_Atomic(actor_t *) *shadow, actor_t *a, const char *what)
{
    actor_t *me = a;
    if (!atomic_compare_exchange_strong(shadow, &me, NULL))
        fail(a, "releases %s, whose shadow owner is %s", what, me ? me->name : "nobody");
}

static void lock_release(actor_t *a, int i)
{
    char what[16];
    snprintf(what, sizeof what, "lock L%d", i);
    disown(&lock_owner[i], a, what);
    a->lock[i] = false;
    call_t c = begin(C_co_lock_release, NODL, true);
    co_lock_release(&locks[i]);
    check(a, c, 0, 0);
}

static void rlock_release(actor_t *a, int i)
{
    char what[16];
    snprintf(what, sizeof what, "rlock R%d", i);
    if (a->rlock[i] == 1) disown(&rlock_owner[i], a, what);
    a->rlock[i]--;
    call_t c = begin(C_co_lock_release, NODL, true);
    co_rlock_release(&rlocks[i]);
    check(a, c, 0, 0);
    if (co_rlock_count(&rlocks[i]) != a->rlock[i])
        fail(a, "rlock R%d: co_rlock_count says %lu after a release, the owner counts %u", i,
             co_rlock_count(&rlocks[i]), a->rlock[i]);
}

static void sem_release(actor_t *a, int i);

/* After EDEADLK, and when an actor ends: give back everything. */
static void release_all(actor_t *a)
{
    for (int i = 0; i < NLOCK; i++)
        if (a->lock[i]) lock_release(a, i);
    for (int i = 0; i < NRLOCK; i++)
        while (a->rlock[i]) rlock_release(a, i);
    for (int i = 0; i < NSEM; i++)
        while (a->sem[i]) sem_release(a, i);
}

/* What co_lock_acquire may fail with: see its contract. */
static unsigned lock_errs(int64_t d)
{
    return wait_errs(d, E(EAGAIN)) | E(ENOMEM) | (d == -1 ? E(EDEADLK) : 0);
}

/* EDEADLK for a cycle of waits: the caller must be on it, holding a lock. */
static void lock_cycle(actor_t *a, const char *what)
{
    if (!holds_lock(a)) fail(a, "%s: EDEADLK for a cycle, but the caller holds no lock", what);
    release_all(a);
}

static void op_lock(actor_t *a)
{
    int i = (int)below(&a->rng, NLOCK);
    int held = 0;
    for (int j = 0; j < NLOCK; j++) held += a->lock[j];
    bool again = a->lock[i] && chance(&a->rng, 10); /* take it twice: the self-deadlock */
    if ((a->lock[i] && !again) || (!a->lock[i] && held >= 2)) {
        for (int j = 0; j < NLOCK; j++)
            if (a->lock[(i + j) % NLOCK]) {
                lock_release(a, (i + j) % NLOCK);
                return;
            }
    }
    int64_t d = pick_deadline(a, true);
    call_t c = begin(C_co_lock_acquire, d, d == 0);
    /* Taking a lock one holds: EDEADLK at once, but the try form says
     * EAGAIN as pthread_mutex_trylock does (test_lock pins both). */
    unsigned self_err = d == 0 ? E(EAGAIN) : E(EDEADLK);
    int e = check(a, c, co_lock_acquire(&locks[i], d), again ? self_err : lock_errs(d));
    if (again) {
        if (!e) fail(a, "took lock L%d it already holds", i);
        return;
    }
    if (e == EDEADLK) lock_cycle(a, "co_lock_acquire");
    if (e) return;
    char what[16];
    snprintf(what, sizeof what, "lock L%d", i);
    own(&lock_owner[i], a, what);
    a->lock[i] = true;
    if (!co_lock_locked(&locks[i])) fail(a, "co_lock_locked(L%d) is false in its owner's hands", i);
}

static void op_rlock(actor_t *a)
{
    int i = (int)below(&a->rng, NRLOCK);
    unsigned depth = a->rlock[i];
    if (depth >= 3 || (depth && chance(&a->rng, 40))) {
        rlock_release(a, i);
        return;
    }
    int64_t d = pick_deadline(a, true);
    /* Re-entry never waits, whatever the deadline. */
    call_t c = begin(C_co_rlock_acquire, d, d == 0 || depth);
    int e = check(a, c, co_rlock_acquire(&rlocks[i], d), depth ? 0 : lock_errs(d));
    if (e == EDEADLK) lock_cycle(a, "co_rlock_acquire");
    if (e) return;
    if (!depth) {
        char what[16];
        snprintf(what, sizeof what, "rlock R%d", i);
        own(&rlock_owner[i], a, what);
    }
    a->rlock[i]++;
    if (co_rlock_count(&rlocks[i]) != a->rlock[i])
        fail(a, "rlock R%d: co_rlock_count says %lu, the owner took it %u times", i, co_rlock_count(&rlocks[i]),
             a->rlock[i]);
}

static void op_release_all(actor_t *a)
{
    release_all(a);
}

/* Gives back one thing held, if any: holdings last a few operations. */
static void release_one(actor_t *a)
{
    enum { N = NLOCK + NRLOCK + NSEM };
    unsigned start = below(&a->rng, N);
    for (unsigned k = 0; k < N; k++) {
        int x = (int)((start + k) % N);
        if (x < NLOCK) {
            if (a->lock[x]) return lock_release(a, x);
        } else if (x < NLOCK + NRLOCK) {
            if (a->rlock[x - NLOCK]) return rlock_release(a, x - NLOCK);
        } else if (a->sem[x - NLOCK - NRLOCK]) {
            return sem_release(a, x - NLOCK - NRLOCK);
        }
    }
}

/* ---------------------------------------------------------- semaphores */

static struct fsem {
    co_sem_t s;
    long initial;
    bool bounded;
    atomic_long inside;   /* bounded: units held by actors now */
    atomic_long acquired; /* successful acquires, all time */
    atomic_long released; /* successful releases, all time */
} sems[NSEM] = {{.initial = 1, .bounded = true}, {.initial = 3, .bounded = true}, {.initial = 0}};

static void sem_range(actor_t *a, int i)
{
    long v = co_sem_value(&sems[i].s);
    if (v < 0 || (sems[i].bounded && v > sems[i].initial))
        fail(a, "semaphore S%d has value %ld (initial %ld%s)", i, v, sems[i].initial,
             sems[i].bounded ? ", bounded" : "");
}

static void op_sem_acquire(actor_t *a)
{
    int i = (int)below(&a->rng, NSEM);
    struct fsem *s = &sems[i];
    int64_t d = pick_deadline(a, holds_nothing(a));
    call_t c = begin(C_co_sem_acquire, d, d == 0);
    int e = check(a, c, co_sem_acquire(&s->s, d), wait_errs(d, E(EAGAIN)));
    sem_range(a, i);
    if (e) return;
    a->sem[i]++;
    atomic_fetch_add(&s->acquired, 1);
    if (s->bounded) {
        long n = atomic_fetch_add(&s->inside, 1) + 1;
        if (n > s->initial) fail(a, "%ld units of bounded semaphore S%d are held; it has %ld", n, i, s->initial);
    }
}

/* Bounded semaphores are released only by holders, else their units could
 * legitimately outnumber the initial value; unbounded ones by anyone. */
static void sem_release(actor_t *a, int i)
{
    struct fsem *s = &sems[i];
    if (a->sem[i]) {
        a->sem[i]--;
        if (s->bounded) atomic_fetch_sub(&s->inside, 1);
    }
    call_t c = begin(C_co_sem_release, NODL, true);
    if (check(a, c, co_sem_release(&s->s), 0)) return;
    atomic_fetch_add(&s->released, 1);
    sem_range(a, i);
}

static void op_sem_release(actor_t *a)
{
    int i = (int)below(&a->rng, NSEM);
    for (int k = 0; k < NSEM && sems[i].bounded && !a->sem[i]; k++) i = (i + 1) % NSEM;
    if (sems[i].bounded && !a->sem[i]) return;
    sem_release(a, i);
}

/* -------------------------------------------------- events, condition */

static co_event_t events[NEVENT];

static void op_event(actor_t *a)
{
    int i = (int)below(&a->rng, NEVENT);
    unsigned x = below(&a->rng, 10);
    if (x < 3) {
        call_t c = begin(C_co_event_set, NODL, true);
        co_event_set(&events[i]);
        check(a, c, 0, 0);
        return;
    }
    if (x < 5) {
        co_event_clear(&events[i]);
        return;
    }
    int64_t d = pick_deadline(a, holds_nothing(a));
    call_t c = begin(C_co_event_wait, d, d == 0);
    check(a, c, co_event_wait(&events[i], d), wait_errs(d, E(ETIMEDOUT)));
}

/* Tickets handed from notifiers to waiters, all under the condition's
 * lock: tickets == given - taken, never negative. */
static co_lock_t cond_lock;
static co_cond_t cond;
static _Atomic(actor_t *) cond_owner;
static long tickets, given, taken;

static void check_tickets(actor_t *a)
{
    if (tickets < 0 || tickets != given - taken)
        fail(a, "condition: %ld tickets, %ld given, %ld taken", tickets, given, taken);
}

static bool have_ticket(void *arg)
{
    (void)arg;
    return tickets > 0 || stopped();
}

static bool cond_enter(actor_t *a)
{
    int64_t d = pick_deadline(a, true);
    call_t c = begin(C_co_lock_acquire, d, d == 0);
    int e = check(a, c, co_lock_acquire(&cond_lock, d), lock_errs(d));
    if (e == EDEADLK) lock_cycle(a, "co_lock_acquire (the condition's lock)");
    if (e) return false;
    own(&cond_owner, a, "the condition's lock");
    a->cond_lock = true;
    check_tickets(a);
    return true;
}

static void cond_leave(actor_t *a)
{
    check_tickets(a);
    disown(&cond_owner, a, "the condition's lock");
    a->cond_lock = false;
    call_t c = begin(C_co_lock_release, NODL, true);
    co_lock_release(&cond_lock);
    check(a, c, 0, 0);
}

/* One wait (or a loop of them) for a ticket, holding nothing else: the
 * wait's retake of its lock must not be able to close a cycle, as
 * co_cond_wait then aborts (documented; test_sync test_cond_retake_cycle). */
static void op_cond_wait(actor_t *a)
{
    if (!holds_nothing(a) || !cond_enter(a)) return;
    int64_t d = pick_deadline(a, true);
    if (chance(&a->rng, 50)) {
        disown(&cond_owner, a, "the condition's lock");
        call_t c = begin(C_co_cond_wait, d, false);
        int e = check(a, c, co_cond_wait_for(&cond, have_ticket, NULL, d), wait_errs(d, E(ETIMEDOUT)));
        own(&cond_owner, a, "the condition's lock");
        if (!e && !have_ticket(NULL)) fail(a, "co_cond_wait_for returned 0 with its predicate false");
    } else {
        while (tickets == 0 && !stopped()) {
            disown(&cond_owner, a, "the condition's lock");
            call_t c = begin(C_co_cond_wait, d, false);
            int e = check(a, c, co_cond_wait(&cond, d), wait_errs(d, E(ETIMEDOUT)));
            own(&cond_owner, a, "the condition's lock");
            if (e) break;
        }
    }
    if (!co_lock_locked(&cond_lock)) fail(a, "a condition wait returned without its lock");
    if (tickets > 0) {
        tickets--;
        taken++;
    }
    cond_leave(a);
}

/* Adds a ticket now and then (few, so that waiters do wait), and
 * notifies either way: a notification without a ticket is a wake-up the
 * waiters must take in their stride. */
static void op_cond_notify(actor_t *a)
{
    if (!cond_enter(a)) return;
    if (tickets < 2 && chance(&a->rng, 60)) {
        tickets++;
        given++;
    }
    call_t c = begin(C_co_cond_notify, NODL, true);
    if (chance(&a->rng, 20))
        co_cond_notify_all(&cond);
    else
        co_cond_notify(&cond, 1 + below(&a->rng, 2));
    check(a, c, 0, 0);
    /* Nested: another lock taken (or released) under the condition's,
     * which makes lock cycles through it. */
    if (chance(&a->rng, 20)) op_lock(a);
    cond_leave(a);
}

/* -------------------------------------------------------------- queues */

/* Every item is a token: a ledger index and a generation, odd so that it
 * is never NULL.  The ledger says where each token is: free, or inside
 * queue q (1 + q).  A get must find its token inside that very queue. */
#define LEDGER (1u << 16)
static atomic_uint ledger[LEDGER]; /* generation << 8 | where */
static atomic_ulong token_next;

/* Who put each token, in which order (its put_seq) and with which
 * priority: a get checks the order (see item_out).  Written by the putter
 * while the token is its own, read by the getter before it lets it go. */
static struct {
    uint8_t prod, prio;
    uint32_t seq;
} meta[LEDGER];

static unsigned token_index(const void *item)
{
    return (unsigned)((uintptr_t)item >> 1) & 0x7fffffff;
}

static void *token_new(int q)
{
    for (;;) {
        uint64_t k = atomic_fetch_add(&token_next, 1);
        unsigned i = (unsigned)(k % LEDGER), gen = (unsigned)(k / LEDGER) & 0xffffff;
        unsigned cur = atomic_load(&ledger[i]);
        if (cur & 0xff) continue; /* still inside a queue from an earlier round */
        if (atomic_compare_exchange_strong(&ledger[i], &cur, gen << 8 | (unsigned)(1 + q)))
            return (void *)(uintptr_t)((uint64_t)gen << 32 | (uint64_t)i << 1 | 1);
    }
}

/* The token leaves queue q (a get took it, or a failed put takes it
 * back).  Returns false if the ledger did not have it inside q. */
static bool token_leave(void *item, int q)
{
    uintptr_t t = (uintptr_t)item;
    unsigned i = token_index(item), gen = (unsigned)(t >> 32);
    if (!(t & 1) || i >= LEDGER) return false;
    unsigned want = gen << 8 | (unsigned)(1 + q);
    return atomic_compare_exchange_strong(&ledger[i], &want, gen << 8);
}

typedef struct fqueue {
    co_queue_t *q;
    co_queue_opts_t opts;
    const char *what;
    bool prio;          /* put with co_queue_put_prio */
    unsigned users;     /* calls in progress (q_mu) */
    bool retired;       /* being replaced (q_mu) */
    atomic_bool closed; /* co_queue_close has returned */
    atomic_long puts, gets, dones;
} fqueue_t;

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static fqueue_t queues[NQUEUE] = {
    {.opts = {.kind = CO_QUEUE_FIFO, .maxsize = 4}, .what = "bounded FIFO"},
    {.opts = {.kind = CO_QUEUE_LIFO}, .what = "LIFO"},
    {.opts = {.kind = CO_QUEUE_PRIORITY, .maxsize = 8}, .what = "bounded priority", .prio = true},
    {.opts = {.kind = CO_QUEUE_FIFO}, .what = "FIFO"},
};

static fqueue_t *q_borrow(actor_t *a)
{
    fqueue_t *fq = &queues[below(&a->rng, NQUEUE)];
    pthread_mutex_lock(&q_mu);
    bool ok = !fq->retired;
    if (ok) fq->users++;
    pthread_mutex_unlock(&q_mu);
    return ok ? fq : NULL;
}

static void q_return(fqueue_t *fq)
{
    pthread_mutex_lock(&q_mu);
    fq->users--;
    pthread_mutex_unlock(&q_mu);
}

static void op_put(actor_t *a)
{
    fqueue_t *fq = q_borrow(a);
    if (!fq) return;
    int qi = (int)(fq - queues);
    bool closed = atomic_load(&fq->closed);
    bool bounded = fq->opts.maxsize > 0;
    void *tok = token_new(qi);
    int64_t prio = fq->prio ? below(&a->rng, NPRIO) : 0;
    unsigned ti = token_index(tok);
    meta[ti].prod = (uint8_t)a->prod;
    meta[ti].prio = (uint8_t)prio;
    meta[ti].seq = ++a->put_seq;
    int64_t d = pick_deadline(a, holds_nothing(a));
    /* Only a full bounded queue makes a put wait. */
    unsigned allowed = E(EPIPE) | E(ENOMEM) | (bounded ? wait_errs(d, E(EAGAIN)) : 0);
    call_t c = begin(C_co_queue_put, d, d == 0 || !bounded);
    int rc;
    if (fq->prio)
        rc = co_queue_put_prio(fq->q, tok, prio, d);
    else if (d == 0 && chance(&a->rng, 50))
        rc = co_queue_put_nowait(fq->q, tok);
    else
        rc = co_queue_put(fq->q, tok, d);
    int e = check(a, c, rc, allowed);
    if (e) {
        if (!token_leave(tok, qi))
            fail(a, "a put to the %s failed (%s), yet its item was taken", fq->what, strerror(e));
    } else {
        if (closed) fail(a, "a put to the %s succeeded after co_queue_close returned", fq->what);
        atomic_fetch_add(&fq->puts, 1);
    }
    q_return(fq);
}

/* A get returned `it` from fq: the ledger must have it inside fq, and the
 * items one producer put one after another reach each getter in that
 * order -- in a FIFO queue, and among equal priorities in a priority
 * queue (a LIFO queue promises no such thing). */
static void item_out(actor_t *a, fqueue_t *fq, void *it, const char *how)
{
    int qi = (int)(fq - queues);
    unsigned i = token_index(it) % LEDGER;
    int prod = meta[i].prod, prio = meta[i].prio;
    uint32_t seq = meta[i].seq; /* read while the token is still ours */
    if (!token_leave(it, qi))
        fail(a, "%s on the %s returned %p, which the ledger does not have in that queue", how, fq->what, it);
    atomic_fetch_add(&fq->gets, 1);
    if (!prod || fq->opts.kind == CO_QUEUE_LIFO) return;
    uint32_t *last = &a->seen[qi][prod - 1][fq->opts.kind == CO_QUEUE_PRIORITY ? prio : 0];
    if (seq <= *last)
        fail(a, "%s on the %s: producer %d's put #%u came out after its put #%u", how, fq->what, prod, seq, *last);
    *last = seq;
}

static void task_done(actor_t *a, fqueue_t *fq)
{
    call_t c = begin(C_co_queue_task_done, NODL, true);
    if (!check(a, c, co_queue_task_done(fq->q), E(EINVAL))) atomic_fetch_add(&fq->dones, 1);
}

static void op_get(actor_t *a)
{
    fqueue_t *fq = q_borrow(a);
    if (!fq) return;
    int64_t d = pick_deadline(a, holds_nothing(a));
    void *it = NULL;
    call_t c = begin(C_co_queue_get, d, d == 0);
    int rc = d == 0 && chance(&a->rng, 50) ? co_queue_get_nowait(fq->q, &it) : co_queue_get(fq->q, &it, d);
    if (!check(a, c, rc, E(EPIPE) | wait_errs(d, E(EAGAIN)))) {
        item_out(a, fq, it, "co_queue_get");
        if (chance(&a->rng, 70)) task_done(a, fq);
    }
    q_return(fq);
}

static void op_task_done(actor_t *a)
{
    fqueue_t *fq = q_borrow(a);
    if (!fq) return;
    task_done(a, fq);
    q_return(fq);
}

static void op_queue_join(actor_t *a)
{
    fqueue_t *fq = q_borrow(a);
    if (!fq) return;
    int64_t d = pick_deadline(a, holds_nothing(a));
    call_t c = begin(C_co_queue_join, d, d == 0);
    check(a, c, co_queue_join(fq->q, d), wait_errs(d, E(ETIMEDOUT)));
    q_return(fq);
}

static void queue_close(actor_t *a, fqueue_t *fq)
{
    call_t c = begin(C_co_queue_close, NODL, true);
    co_queue_close(fq->q);
    check(a, c, 0, 0);
    if (!co_queue_closed(fq->q)) fail(a, "co_queue_closed is false after co_queue_close");
    atomic_store(&fq->closed, true);
}

static void op_queue_close(actor_t *a)
{
    if (!chance(&a->rng, 30)) return; /* rare: a closed queue stays closed until replaced */
    fqueue_t *fq = q_borrow(a);
    if (!fq) return;
    queue_close(a, fq);
    q_return(fq);
}

/* Empties a queue nobody uses and checks its books: every item put came
 * out exactly once, and its task count is puts - task_done's. */
static void queue_settle(actor_t *a, fqueue_t *fq)
{
    void *it;
    while (co_queue_get_nowait(fq->q, &it) == 0) item_out(a, fq, it, "draining");
    int e = errno;
    if (e != (atomic_load(&fq->closed) ? EPIPE : EAGAIN))
        fail(a, "draining the %s ended with %s", fq->what, strerror(e));
    long puts = atomic_load(&fq->puts), gets = atomic_load(&fq->gets), dones = atomic_load(&fq->dones);
    if (puts != gets) fail(a, "the %s took %ld items and gave back %ld", fq->what, puts, gets);
    if ((long)co_queue_unfinished(fq->q) != puts - dones)
        fail(a, "the %s counts %zu unfinished tasks; %ld puts and %ld task_done say %ld", fq->what,
             co_queue_unfinished(fq->q), puts, dones, puts - dones);
    if (co_queue_size(fq->q) != 0 || !co_queue_empty(fq->q)) fail(a, "the %s is not empty once drained", fq->what);
}

static void queue_make(fqueue_t *fq)
{
    fq->q = co_queue_new(&fq->opts);
    ASSERT(fq->q != NULL);
    atomic_store(&fq->closed, false);
    atomic_store(&fq->puts, 0);
    atomic_store(&fq->gets, 0);
    atomic_store(&fq->dones, 0);
}

/* A closed queue nobody uses is settled, freed and made anew. */
static void op_queue_renew(actor_t *a)
{
    fqueue_t *fq = &queues[below(&a->rng, NQUEUE)];
    pthread_mutex_lock(&q_mu);
    bool mine = !fq->retired && fq->users == 0 && atomic_load(&fq->closed);
    if (mine) fq->retired = true;
    pthread_mutex_unlock(&q_mu);
    if (!mine) return;
    queue_settle(a, fq);
    co_queue_free(fq->q, NULL);
    queue_make(fq);
    pthread_mutex_lock(&q_mu);
    fq->retired = false;
    pthread_mutex_unlock(&q_mu);
}

/* --------------------------------------------------- socketpairs, pipes */

/* A pair of descriptors: a socketpair, or a pipe (fd[0] reads, fd[1]
 * writes).  Bytes are counted by direction d, "written into fd[d]": read
 * from the other end of a socketpair, from fd[0] of a pipe (d = 1).
 * A descriptor number must not be reused while anyone may still pass it
 * to a call: an end is closed only once marked closed (no new borrower),
 * and no pair is made while a closed end still has borrowers. */
typedef struct ffd {
    int fd[2];
    bool pipe;
    bool open[2];
    unsigned users[2];
    bool lossy; /* an end was closed: what was inside is gone */
    uint64_t wbytes[2], rbytes[2];
    uint32_t whist[2][256], rhist[2][256]; /* how many of each byte value: the same bytes, in any order */
} ffd_t;

static pthread_mutex_t fd_mu = PTHREAD_MUTEX_INITIALIZER;
static ffd_t fds[NFD];

static bool can_read(const ffd_t *p, int end)
{
    return !p->pipe || end == 0;
}
static bool can_write(const ffd_t *p, int end)
{
    return !p->pipe || end == 1;
}

enum { FOR_READ = 1, FOR_WRITE = 2, FOR_ANY = 3 };

/* Borrows an open end usable for `want`; its fd, or -1. */
static int fd_borrow(actor_t *a, int want, ffd_t **pp, int *endp)
{
    unsigned start = below(&a->rng, NFD * 2);
    pthread_mutex_lock(&fd_mu);
    for (unsigned k = 0; k < NFD * 2; k++) {
        unsigned x = (start + k) % (NFD * 2);
        ffd_t *p = &fds[x / 2];
        int end = (int)(x % 2);
        if (!p->open[end] || (want == FOR_READ && !can_read(p, end)) || (want == FOR_WRITE && !can_write(p, end)))
            continue;
        p->users[end]++;
        *pp = p;
        *endp = end;
        int fd = p->fd[end];
        pthread_mutex_unlock(&fd_mu);
        return fd;
    }
    pthread_mutex_unlock(&fd_mu);
    return -1;
}

static void fd_return(ffd_t *p, int end)
{
    pthread_mutex_lock(&fd_mu);
    p->users[end]--;
    pthread_mutex_unlock(&fd_mu);
}

/* The deadline of an I/O call: none only when the actor holds nothing (a
 * close from another thread then ends it, whatever the race: test_io's
 * close tests). */
static int64_t io_deadline(actor_t *a)
{
    return pick_deadline(a, holds_nothing(a));
}

static void fd_write(actor_t *a, ffd_t *p, int end, int64_t d, size_t n)
{
    unsigned char buf[512];
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)rnd(&a->rng);
    call_t c = begin(C_co_write, d, d == 0);
    ssize_t w = co_write(p->fd[end], buf, n, d);
    check(a, c, w, wait_errs(d, E(EAGAIN)) | E(EBADF) | E(EPIPE) | E(ECONNRESET));
    if (w > (ssize_t)n) fail(a, "co_write wrote %zd of %zu bytes", w, n);
    if (w > 0) {
        pthread_mutex_lock(&fd_mu);
        p->wbytes[end] += (uint64_t)w;
        for (ssize_t i = 0; i < w; i++) p->whist[end][buf[i]]++;
        pthread_mutex_unlock(&fd_mu);
    }
}

/* Reads once; false at end of file or on an error. */
static bool fd_read(actor_t *a, ffd_t *p, int end, int64_t d, size_t n)
{
    unsigned char buf[1024];
    call_t c = begin(C_co_read, d, d == 0);
    ssize_t r = co_read(p->fd[end], buf, n, d);
    check(a, c, r, wait_errs(d, E(EAGAIN)) | E(EBADF) | E(ECONNRESET));
    if (r > (ssize_t)n) fail(a, "co_read read %zd of %zu bytes", r, n);
    int dir = 1 - end, peer = p->pipe ? 1 : 1 - end;
    pthread_mutex_lock(&fd_mu);
    bool peer_open = p->open[peer];
    if (r > 0) {
        p->rbytes[dir] += (uint64_t)r;
        for (ssize_t i = 0; i < r; i++) p->rhist[dir][buf[i]]++;
    }
    pthread_mutex_unlock(&fd_mu);
    if (r == 0 && n > 0 && peer_open) fail(a, "co_read gave end of file while the other end is open");
    return r > 0;
}

static void op_fd_write(actor_t *a)
{
    ffd_t *p;
    int end;
    if (fd_borrow(a, FOR_WRITE, &p, &end) < 0) return;
    fd_write(a, p, end, io_deadline(a), 1 + below(&a->rng, 512));
    fd_return(p, end);
}

static void op_fd_read(actor_t *a)
{
    ffd_t *p;
    int end;
    if (fd_borrow(a, FOR_READ, &p, &end) < 0) return;
    fd_read(a, p, end, io_deadline(a), 1 + below(&a->rng, 1024));
    fd_return(p, end);
}

/* co_poll over one or two ends, each for what it can do. */
static void op_fd_poll(actor_t *a)
{
    struct pollfd pfd[2];
    ffd_t *p[2];
    int end[2], n = 0;
    for (int k = 1 + (int)below(&a->rng, 2); n < k;) {
        int fd = fd_borrow(a, FOR_ANY, &p[n], &end[n]);
        if (fd < 0) break;
        short ev = (short)((can_read(p[n], end[n]) && chance(&a->rng, 70) ? POLLIN : 0) |
                           (can_write(p[n], end[n]) && chance(&a->rng, 50) ? POLLOUT : 0));
        pfd[n] = (struct pollfd){.fd = fd, .events = ev ? ev : can_read(p[n], end[n]) ? POLLIN : POLLOUT};
        n++;
    }
    if (n == 0) return;
    int64_t d = io_deadline(a);
    snprintf(a->note, sizeof a->note, "fd %d%s%s, fd %d%s%s", pfd[0].fd, pfd[0].events & POLLIN ? " in" : "",
             pfd[0].events & POLLOUT ? " out" : "", n > 1 ? pfd[1].fd : -1,
             n > 1 && (pfd[1].events & POLLIN) ? " in" : "", n > 1 && (pfd[1].events & POLLOUT) ? " out" : "");
    call_t c = begin(C_co_poll, d, d == 0);
    int r = co_poll(pfd, (nfds_t)n, d);
    int e = check(a, c, r, E(ECANCELED) | E(ENOMEM) | E(EINVAL));
    if (!e) {
        int ready = 0;
        for (int i = 0; i < n; i++) ready += pfd[i].revents != 0;
        if (ready != r) fail(a, "co_poll returned %d, but %d descriptors have events", r, ready);
        int64_t now = co_now();
        if (r == 0 && d == -1) fail(a, "co_poll without deadline returned 0");
        if (r == 0 && d > 0 && now < d) fail(a, "co_poll returned 0 %lld ms before its deadline", (long long)(d - now));
        if (r == 0 && d > 0 && now - d > LATE_MS)
            fail(a, "co_poll returned 0 %lld ms after its deadline", (long long)(now - d));
        pthread_mutex_lock(&fd_mu);
        for (int i = 0; i < n; i++)
            if ((pfd[i].revents & POLLNVAL) && p[i]->open[end[i]]) {
                pthread_mutex_unlock(&fd_mu);
                fail(a, "co_poll reports POLLNVAL for a descriptor that is open");
            }
        pthread_mutex_unlock(&fd_mu);
    }
    for (int i = 0; i < n; i++) fd_return(p[i], end[i]);
}

static void op_fd_wait(actor_t *a)
{
    ffd_t *p;
    int end;
    int fd = fd_borrow(a, FOR_ANY, &p, &end);
    if (fd < 0) return;
    int64_t d = io_deadline(a);
    call_t c = begin(C_co_wait_ready, d, d == 0);
    int r = can_read(p, end) ? co_wait_readable(fd, d) : co_wait_writable(fd, d);
    check(a, c, r, wait_errs(d, E(EAGAIN)) | E(EBADF));
    fd_return(p, end);
}

/* Closes one end, maybe while others wait on it (they get EBADF). */
static void op_fd_close(actor_t *a)
{
    if (!chance(&a->rng, 30)) return;
    unsigned x = below(&a->rng, NFD * 2);
    ffd_t *p = &fds[x / 2];
    int end = (int)(x % 2);
    pthread_mutex_lock(&fd_mu);
    bool mine = p->open[end];
    p->open[end] = false;
    if (mine) p->lossy = true;
    int fd = p->fd[end];
    pthread_mutex_unlock(&fd_mu);
    if (!mine) return;
    call_t c = begin(C_co_close, NODL, true);
    check(a, c, co_close(fd), 0);
}

/* For failure reports (no lock: the run is stuck or failing). */
static void dump_fds(void)
{
    for (int i = 0; i < NFD; i++)
        fprintf(stderr, "  pair %d (%s): fd %d %s (%u users), fd %d %s (%u users)\n", i,
                fds[i].pipe ? "pipe" : "socketpair", fds[i].fd[0], fds[i].open[0] ? "open" : "closed", fds[i].users[0],
                fds[i].fd[1], fds[i].open[1] ? "open" : "closed", fds[i].users[1]);
}

static void fd_make(ffd_t *p, bool pipe)
{
    int sv[2];
    if (pipe)
        ASSERT_EQ(pipe2(sv, O_NONBLOCK | O_CLOEXEC), 0);
    else
        ASSERT_EQ(co_socketpair(sv), 0);
    *p = (ffd_t){.fd = {sv[0], sv[1]}, .pipe = pipe, .open = {true, true}};
}

/* A pair with one end closed gets its other end closed too; one whose
 * ends are both closed and unused is made anew, unless a closed end still
 * has borrowers (its number must not come back yet). */
static void op_fd_renew(actor_t *a)
{
    ffd_t *p = &fds[below(&a->rng, NFD)];
    pthread_mutex_lock(&fd_mu);
    int last = p->open[0] != p->open[1] ? (p->open[0] ? 0 : 1) : -1;
    int fd = last >= 0 ? p->fd[last] : -1; /* the pair may be made anew once we unlock */
    if (last >= 0) p->open[last] = false;
    bool pending = false;
    for (int i = 0; i < NFD; i++)
        for (int e = 0; e < 2; e++) pending |= !fds[i].open[e] && fds[i].users[e];
    if (last < 0 && !pending && !p->open[0] && !p->open[1]) fd_make(p, chance(&a->rng, 40));
    pthread_mutex_unlock(&fd_mu);
    if (last >= 0) {
        call_t c = begin(C_co_close, NODL, true);
        check(a, c, co_close(fd), 0);
    }
}

/* ------------------------------------------------ coroutines and groups */

enum body { B_QUICK, B_SLEEP, B_EVWAIT, B_WORKER };

/* A handle to a spawned coroutine.  Taken for a join or detach
 * (`consuming`: nobody else touches it meanwhile) or used for a wait or
 * kill (`users`: nobody consumes it meanwhile). */
typedef struct slot {
    co_coro_t *co; /* NULL: free; RESERVED: being spawned */
    int hub;
    enum body body;
    uint64_t seq;
    actor_t *child; /* B_WORKER */
    bool grouped;   /* still a member of its hub's group */
    bool consuming;
    unsigned users;
    bool killed; /* co_kill was called on it */
} slot_t;

static char reserved_;
#define RESERVED ((co_coro_t *)&reserved_)
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static slot_t slots[NSLOT];
static atomic_ulong spawn_seq = 1;

typedef struct fhub {
    int index;
    co_event_t may_exit; /* hubs exit one at a time (see test_fuzz) */
    co_group_t *group;
    size_t limit;    /* the group's: 0 (none) or a few */
    bool group_busy; /* a group call is under way (only this hub touches it) */
    actor_t main;
    pthread_t thread;
} fhub_t;
static fhub_t hubs[NHUB];

static char m_quick, m_slept, m_event, m_canceled, m_worker; /* results */

static bool live(const slot_t *s)
{
    return s->co && s->co != RESERVED;
}

/* Which handles an actor may take, slot_mu held.  `forever`: for a wait
 * without deadline, only younger coroutines (or itself: EDEADLK at once),
 * so that no two coroutines wait for each other. */
static bool may_take(const actor_t *a, const slot_t *s, bool consume, bool forever)
{
    if (!live(s) || s->consuming || (consume && s->users)) return false;
    if (consume && s->grouped && s->hub != a->where) return false; /* members: on their hub */
    return !forever || s->seq > a->seq || s->co == a->self;
}

static slot_t *slot_take(actor_t *a, bool consume, bool forever, bool (*also)(const slot_t *))
{
    unsigned start = below(&a->rng, NSLOT);
    pthread_mutex_lock(&slot_mu);
    for (unsigned k = 0; k < NSLOT; k++) {
        slot_t *s = &slots[(start + k) % NSLOT];
        if (!may_take(a, s, consume, forever) || (also && !also(s))) continue;
        if (consume)
            s->consuming = true;
        else
            s->users++;
        pthread_mutex_unlock(&slot_mu);
        return s;
    }
    pthread_mutex_unlock(&slot_mu);
    return NULL;
}

static void slot_untake(slot_t *s, bool consume)
{
    pthread_mutex_lock(&slot_mu);
    if (consume)
        s->consuming = false;
    else
        s->users--;
    pthread_mutex_unlock(&slot_mu);
}

static void child_unref(actor_t *c, int n)
{
    if (atomic_fetch_sub(&c->refs, n) == n) {
        free(c);
        atomic_fetch_add(&nworkers_freed, 1);
    }
}

/* The handle was joined or detached: the slot is free again. */
static void slot_consumed(slot_t *s, bool joined)
{
    actor_t *child = s->child;
    pthread_mutex_lock(&slot_mu);
    *s = (slot_t){0};
    pthread_mutex_unlock(&slot_mu);
    /* Joined before its body ever ran (killed first): the body's reference
     * goes with the handle's. */
    if (child) child_unref(child, joined && !atomic_load(&child->started) ? 2 : 1);
}

/* What a joined coroutine returned must say how it ended. */
static void check_result(actor_t *a, const slot_t *s, void *res)
{
    static const char *const kinds[] = {"quick", "sleeper", "event waiter", "worker"};
    if (res == NULL) {
        if (!s->killed) fail(a, "a %s finished with NULL (never ran), but nobody killed it", kinds[s->body]);
        if (s->child && atomic_load(&s->child->started)) fail(a, "a worker that ran finished with NULL");
        return;
    }
    if (res == &m_canceled && !s->killed) fail(a, "a %s saw ECANCELED, but nobody killed it", kinds[s->body]);
    bool ok = s->body == B_QUICK    ? res == &m_quick
              : s->body == B_SLEEP  ? res == &m_slept || res == &m_canceled
              : s->body == B_EVWAIT ? res == &m_event || res == &m_canceled
                                    : res == &m_worker;
    if (!ok) fail(a, "a %s returned %p, not one of its results", kinds[s->body], res);
}

static void *body_quick(void *arg)
{
    (void)arg;
    return &m_quick;
}

static void *body_sleep(void *arg)
{
    int64_t ms = (intptr_t)arg, t0 = co_now();
    if (co_sleep_ms(ms) < 0) {
        if (errno == ECANCELED) return &m_canceled;
        fail(NULL, "co_sleep_ms in a child failed with %s", strerror(errno));
    }
    if (co_now() < t0 + ms)
        fail(NULL, "co_sleep_ms(%lld) returned after %lld ms", (long long)ms, (long long)(co_now() - t0));
    return &m_slept;
}

static void *body_evwait(void *arg)
{
    if (co_event_wait(&events[(intptr_t)arg], -1) < 0) {
        if (errno == ECANCELED) return &m_canceled;
        fail(NULL, "co_event_wait without deadline in a child failed with %s", strerror(errno));
    }
    return &m_event;
}

static void run_actor(actor_t *a, long budget);

static void *body_worker(void *arg)
{
    actor_t *a = arg;
    atomic_store(&a->started, true);
    atomic_fetch_add(&nactive, 1);
    a->self = co_current();
    run_actor(a, 1 + (long)below(&a->rng, 30));
    atomic_fetch_sub(&nactive, 1);
    child_unref(a, 1);
    return &m_worker;
}

static void op_spawn(actor_t *a)
{
    co_hub_stats_t st;
    co_hub_stats(&st);
    if (st.coroutines >= MAX_COROS) return;
    slot_t *s = NULL;
    pthread_mutex_lock(&slot_mu);
    for (unsigned k = 0, start = below(&a->rng, NSLOT); k < NSLOT && !s; k++)
        if (!slots[(start + k) % NSLOT].co) s = &slots[(start + k) % NSLOT];
    if (s) s->co = RESERVED;
    pthread_mutex_unlock(&slot_mu);
    if (!s) return;

    fhub_t *h = &hubs[a->where];
    uint64_t seq = atomic_fetch_add(&spawn_seq, 1);
    unsigned x = below(&a->rng, 100);
    enum body body = x < 25 ? B_QUICK : x < 50 ? B_SLEEP : x < 62 ? B_EVWAIT : B_WORKER;
    if (body == B_WORKER && a->depth >= MAX_DEPTH) body = B_QUICK;
    bool grouped = chance(&a->rng, 30) && !h->group_busy;
    co_fn fn = body == B_QUICK    ? body_quick
               : body == B_SLEEP  ? body_sleep
               : body == B_EVWAIT ? body_evwait
                                  : body_worker;
    void *arg = NULL;
    actor_t *child = NULL;
    char name[32];
    snprintf(name, sizeof name, "%c%" PRIu64, "qsew"[body], seq);
    if (body == B_SLEEP) arg = (void *)(intptr_t)below(&a->rng, 300);
    if (body == B_EVWAIT) arg = (void *)(intptr_t)below(&a->rng, NEVENT);
    if (body == B_WORKER) {
        child = malloc(sizeof *child);
        ASSERT(child != NULL);
        actor_init(child, a->where, seq, rnd(&a->rng), name);
        child->depth = a->depth + 1;
        child->member = grouped;
        atomic_init(&child->refs, 2);
        arg = child;
        atomic_fetch_add(&nworkers, 1);
    }
    co_spawn_opts_t opts = {.name = name};
    co_coro_t *c;
    if (grouped) {
        h->group_busy = true;
        int64_t d = pick_deadline(a, !a->member && holds_nothing(a));
        call_t call = begin(C_co_group_spawn, d, d == 0);
        c = co_group_spawn_with(h->group, fn, arg, d, &opts);
        check(a, call, c ? 0 : -1, E(EINVAL) | E(ENOMEM) | wait_errs(d, E(EAGAIN)));
        h->group_busy = false;
        if (h->limit && co_group_running(h->group) > h->limit)
            fail(a, "a group limited to %zu runs %zu members", h->limit, co_group_running(h->group));
    } else {
        call_t call = begin(C_co_spawn, NODL, true);
        c = co_spawn_with(fn, arg, &opts);
        check(a, call, c ? 0 : -1, E(EINVAL) | E(ENOMEM));
    }
    if (!c) {
        if (child) {
            free(child);
            atomic_fetch_add(&nworkers_freed, 1);
        }
        pthread_mutex_lock(&slot_mu);
        s->co = NULL;
        pthread_mutex_unlock(&slot_mu);
        return;
    }
    atomic_fetch_add(&nspawned, 1);
    pthread_mutex_lock(&slot_mu);
    *s = (slot_t){.co = c, .hub = a->where, .body = body, .seq = seq, .child = child, .grouped = grouped};
    pthread_mutex_unlock(&slot_mu);
}

static void op_join(actor_t *a)
{
    int64_t d = pick_deadline(a, holds_nothing(a));
    slot_t *s = slot_take(a, true, d == -1, NULL);
    if (!s) return;
    bool self = s->co == a->self;
    void *res = NULL;
    call_t c = begin(C_co_join, d, d == 0);
    int e = check(a, c, co_join(s->co, d, &res), self ? E(EDEADLK) : wait_errs(d, E(ETIMEDOUT)) | E(ENOMEM));
    if (self && !e) fail(a, "co_join of itself succeeded");
    if (e) {
        slot_untake(s, true);
        return;
    }
    check_result(a, s, res);
    slot_consumed(s, true);
}

static void op_wait(actor_t *a)
{
    int64_t d = pick_deadline(a, holds_nothing(a));
    slot_t *s = slot_take(a, false, d == -1, NULL);
    if (!s) return;
    bool self = s->co == a->self;
    call_t c = begin(C_co_wait, d, d == 0);
    int e = check(a, c, co_wait(s->co, d), self ? E(EDEADLK) : wait_errs(d, E(ETIMEDOUT)) | E(ENOMEM));
    if (!e && !co_finished(s->co)) fail(a, "co_wait returned 0, but co_finished is false");
    slot_untake(s, false);
}

static void op_joinall(actor_t *a)
{
    int64_t d = pick_deadline(a, holds_nothing(a));
    slot_t *s[3];
    co_coro_t *cs[3];
    void *res[3];
    size_t n = 0;
    bool self = false;
    for (unsigned k = 1 + below(&a->rng, 3); n < k; n++) {
        if (!(s[n] = slot_take(a, true, d == -1, NULL))) break;
        cs[n] = s[n]->co;
        self |= cs[n] == a->self;
    }
    if (!n) return;
    call_t c = begin(C_co_joinall, d, d == 0);
    int e = check(a, c, co_joinall(cs, n, d, res), wait_errs(d, E(ETIMEDOUT)) | E(ENOMEM) | (self ? E(EDEADLK) : 0));
    if (self && !e) fail(a, "co_joinall including itself succeeded");
    for (size_t i = 0; i < n; i++) {
        if (e) {
            slot_untake(s[i], true); /* none was joined: the handles stay valid */
        } else {
            check_result(a, s[i], res[i]);
            slot_consumed(s[i], true);
        }
    }
}

/* A worker is detached only once its body runs: a detached worker that
 * never ran would keep its actor record forever. */
static bool detachable(const slot_t *s)
{
    return !s->child || atomic_load(&s->child->started);
}

static void op_detach(actor_t *a)
{
    slot_t *s = slot_take(a, true, false, detachable);
    if (!s) return;
    call_t c = begin(C_co_detach, NODL, true);
    co_detach(s->co);
    check(a, c, 0, 0);
    slot_consumed(s, false);
}

static void mark_killed(slot_t *s)
{
    s->killed = true;
    if (s->child) atomic_store(&s->child->killed, true);
}

static void op_kill(actor_t *a)
{
    slot_t *s = slot_take(a, false, false, NULL);
    if (!s) return;
    pthread_mutex_lock(&slot_mu);
    mark_killed(s);
    pthread_mutex_unlock(&slot_mu);
    call_t c = begin(C_co_kill, NODL, true);
    co_kill(s->co);
    check(a, c, 0, 0);
    if (!co_killed(s->co) && !co_finished(s->co))
        fail(a, "after co_kill, the coroutine is neither killed nor finished");
    slot_untake(s, false);
}

static void op_group_next(actor_t *a)
{
    fhub_t *h = &hubs[a->where];
    if (h->group_busy) return;
    h->group_busy = true;
    int64_t d = pick_deadline(a, !a->member && holds_nothing(a));
    call_t c = begin(C_co_group_next, d, d == 0);
    co_coro_t *m = co_group_next(h->group, d);
    int e = check(a, c, m ? 0 : -1, E(ENOENT) | wait_errs(d, E(ETIMEDOUT)));
    if (e == ENOENT && co_group_size(h->group) != 0)
        fail(a, "co_group_next said ENOENT, but the group has %zu members", co_group_size(h->group));
    if (m) {
        if (!co_finished(m)) fail(a, "co_group_next returned a coroutine that has not finished");
        slot_t *found = NULL;
        pthread_mutex_lock(&slot_mu);
        for (int i = 0; i < NSLOT; i++)
            if (slots[i].co == m && slots[i].grouped && slots[i].hub == a->where) found = &slots[i];
        if (found) found->grouped = false; /* out of the group; its handle stays where it was */
        pthread_mutex_unlock(&slot_mu);
        if (!found) fail(a, "co_group_next returned a coroutine that is not a member");
    }
    h->group_busy = false;
}

/* Joins the whole group: first takes every member's handle, so that
 * nobody else joins, waits on or kills one meanwhile. */
static void op_group_join(actor_t *a)
{
    fhub_t *h = &hubs[a->where];
    if (h->group_busy) return;
    slot_t *m[NSLOT];
    size_t n = 0;
    bool ok = true;
    pthread_mutex_lock(&slot_mu);
    for (int i = 0; i < NSLOT; i++)
        if (live(&slots[i]) && slots[i].grouped && slots[i].hub == a->where) {
            ok &= !slots[i].consuming && !slots[i].users;
            m[n++] = &slots[i];
        }
    if (ok)
        for (size_t i = 0; i < n; i++) m[i]->consuming = true;
    pthread_mutex_unlock(&slot_mu);
    if (!ok) return;
    if (co_group_size(h->group) != n)
        fail(a, "the group has %zu members, the fuzzer counts %zu", co_group_size(h->group), n);
    h->group_busy = true;
    int64_t d = pick_deadline(a, !a->member && holds_nothing(a));
    call_t c = begin(C_co_group_join, d, d == 0);
    int e = check(a, c, co_group_join(h->group, d), wait_errs(d, E(ETIMEDOUT)));
    h->group_busy = false;
    if (!e && co_group_size(h->group) != 0) fail(a, "co_group_join left %zu members", co_group_size(h->group));
    for (size_t i = 0; i < n; i++) {
        if (e) {
            slot_untake(m[i], true);
        } else {
            if (m[i]->child && !atomic_load(&m[i]->child->started) && !m[i]->killed)
                fail(a, "a worker of the group never ran, and nobody killed it");
            slot_consumed(m[i], true);
        }
    }
}

static void op_group_kill(actor_t *a)
{
    fhub_t *h = &hubs[a->where];
    pthread_mutex_lock(&slot_mu);
    for (int i = 0; i < NSLOT; i++)
        if (live(&slots[i]) && slots[i].grouped && slots[i].hub == a->where) mark_killed(&slots[i]);
    pthread_mutex_unlock(&slot_mu);
    call_t c = begin(C_co_group_kill, NODL, true);
    co_group_kill(h->group);
    check(a, c, 0, 0);
}

static void op_yield(actor_t *a)
{
    call_t c = begin(C_co_yield_now, NODL, false);
    check(a, c, co_yield_now(), E(ECANCELED));
}

static void op_sleep(actor_t *a)
{
    int64_t target;
    int rc;
    call_t c = begin(C_co_sleep, NODL, false);
    if (chance(&a->rng, 50)) {
        int64_t ms = below(&a->rng, 10);
        target = c.t0 + ms;
        rc = co_sleep_ms(ms);
    } else {
        target = pick_deadline(a, false);
        rc = co_sleep_until(target);
    }
    if (check(a, c, rc, E(ECANCELED) | E(ENOMEM))) return;
    int64_t now = co_now();
    if (now < target) fail(a, "a sleep ended %lld ms before its time", (long long)(target - now));
    if (target > c.t0 && now - target > LATE_MS) fail(a, "a sleep ended %lld ms late", (long long)(now - target));
}

/* The plain thread's pause: not a cogent call (it would make a hub). */
static void op_nap(actor_t *a)
{
    nanosleep(&(struct timespec){0, (long)below(&a->rng, 2000000)}, NULL);
}

/* ------------------------------------------------------------ the table */

typedef struct op {
    const char *name;
    void (*fn)(actor_t *a);
    unsigned hub, plain; /* weights for coroutines and for the plain thread */
} op_t;

static const op_t ops[] = {
    {"spawn", op_spawn, 8, 0},
    {"join", op_join, 5, 0},
    {"wait", op_wait, 3, 0},
    {"joinall", op_joinall, 2, 0},
    {"detach", op_detach, 2, 0},
    {"kill", op_kill, 4, 3},
    {"group_next", op_group_next, 2, 0},
    {"group_join", op_group_join, 1, 0},
    {"group_kill", op_group_kill, 1, 0},
    {"yield", op_yield, 4, 0},
    {"sleep", op_sleep, 4, 0},
    {"nap", op_nap, 0, 3},
    {"lock", op_lock, 8, 8},
    {"rlock", op_rlock, 5, 5},
    {"release_all", op_release_all, 1, 1},
    {"sem_acquire", op_sem_acquire, 5, 5},
    {"sem_release", op_sem_release, 5, 5},
    {"event", op_event, 5, 5},
    {"cond_wait", op_cond_wait, 3, 3},
    {"cond_notify", op_cond_notify, 3, 3},
    {"queue_put", op_put, 8, 8},
    {"queue_get", op_get, 8, 8},
    {"queue_task_done", op_task_done, 3, 3},
    {"queue_join", op_queue_join, 1, 1},
    {"queue_close", op_queue_close, 1, 1},
    {"queue_renew", op_queue_renew, 2, 2},
    {"fd_write", op_fd_write, 5, 5},
    {"fd_read", op_fd_read, 5, 5},
    {"fd_poll", op_fd_poll, 3, 3},
    {"fd_wait", op_fd_wait, 2, 2},
    {"fd_close", op_fd_close, 1, 1},
    {"fd_renew", op_fd_renew, 2, 2},
};
#define NOPS (sizeof ops / sizeof ops[0])

static const op_t *pick_op(actor_t *a)
{
    bool plain = a->where == PLAIN;
    unsigned total = 0;
    for (size_t i = 0; i < NOPS; i++) total += plain ? ops[i].plain : ops[i].hub;
    unsigned x = below(&a->rng, total);
    for (size_t i = 0;; i++) {
        unsigned w = plain ? ops[i].plain : ops[i].hub;
        if (x < w) return &ops[i];
        x -= w;
    }
}

/* -------------------------------------------------------------- actors */

/* An actor's life: operations until its budget runs out, it is killed or
 * the run stops; then it gives back what it holds. */
static void run_actor(actor_t *a, long budget)
{
    actor_register(a);
    for (long i = 0; (budget < 0 || i < budget) && !stopped() && !a->canceled; i++) {
        const op_t *op = pick_op(a);
        set_op(a, op->name);
        op->fn(a);
        atomic_fetch_add_explicit(&nops, 1, memory_order_relaxed);
        if (chance(&a->rng, 40)) release_one(a);
    }
    set_op(a, "ending");
    release_all(a);
    if (a->canceled) {
        /* A kill stays: every later blocking call fails too. */
        call_t c = begin(C_co_yield_now, NODL, false);
        if (check(a, c, co_yield_now(), E(ECANCELED)) != ECANCELED) fail(a, "co_yield_now succeeded after ECANCELED");
        c = begin(C_co_sleep, NODL, false);
        if (check(a, c, co_sleep_ms(5), E(ECANCELED)) != ECANCELED) fail(a, "co_sleep_ms succeeded after ECANCELED");
    }
    actor_unregister(a);
}

static void *body_driver(void *arg)
{
    actor_t *a = arg;
    a->self = co_current();
    run_actor(a, -1);
    atomic_fetch_sub(&nactive, 1);
    return &m_worker;
}

static void *plain_thread(void *arg)
{
    actor_t *a = arg;
    run_actor(a, -1);
    atomic_fetch_sub(&nactive, 1);
    return NULL;
}

/* Once every actor has ended, a hub's main coroutine joins what is left
 * of its own coroutines (members of its group included). */
static void sweep(fhub_t *h)
{
    actor_t *a = &h->main;
    set_op(a, "sweep");
    for (;;) {
        slot_t *s = NULL;
        pthread_mutex_lock(&slot_mu);
        for (int i = 0; i < NSLOT && !s; i++)
            if (live(&slots[i]) && slots[i].hub == h->index) s = &slots[i];
        bool busy = s && (s->consuming || s->users);
        if (s) s->consuming = true;
        pthread_mutex_unlock(&slot_mu);
        if (!s) break;
        if (busy) fail(a, "a handle is still in use after every actor ended");
        void *res;
        call_t c = begin(C_co_join, co_now() + GRACE_MS, false);
        if (check(a, c, co_join(s->co, c.d, &res), 0)) break;
        check_result(a, s, res);
        slot_consumed(s, true);
    }
}

static void *hub_thread(void *arg)
{
    fhub_t *h = arg;
    actor_t *a = &h->main;
    char name[16];
    snprintf(name, sizeof name, "hub%d-main", h->index);
    actor_init(a, h->index, 0, 100 + (uint64_t)h->index, name);
    a->self = co_current();
    h->limit = below(&a->rng, 2) ? 0 : 3;
    h->group = co_group_new(h->limit);
    ASSERT(h->group != NULL);
    actor_t *drivers[DRIVERS];
    co_coro_t *cs[DRIVERS];
    for (int i = 0; i < DRIVERS; i++) {
        drivers[i] = malloc(sizeof *drivers[i]);
        ASSERT(drivers[i] != NULL);
        snprintf(name, sizeof name, "hub%d-d%d", h->index, i);
        actor_init(drivers[i], h->index, 0, 1000 + (uint64_t)(h->index * DRIVERS + i), name);
        drivers[i]->hot = i % 2;
        drivers[i]->prod = 1 + h->index * DRIVERS + i;
        atomic_fetch_add(&nactive, 1);
        ASSERT((cs[i] = co_spawn_with(body_driver, drivers[i], &(co_spawn_opts_t){.name = name})) != NULL);
    }
    set_op(a, "waiting for the stop");
    ASSERT_EQ(co_event_wait(&stop_ev, -1), 0);
    set_op(a, "joining its drivers");
    call_t c = begin(C_co_joinall, co_now() + GRACE_MS, false);
    check(a, c, co_joinall(cs, DRIVERS, c.d, NULL), 0);
    for (int i = 0; i < DRIVERS; i++) free(drivers[i]);
    set_op(a, "waiting for the sweep");
    c = begin(C_co_event_wait, co_now() + 2 * GRACE_MS, false);
    check(a, c, co_event_wait(&sweep_ev, c.d), 0);
    sweep(h);
    if (co_group_size(h->group) != 0) fail(a, "the group keeps %zu members after the sweep", co_group_size(h->group));
    co_group_free(h->group);
    set_op(a, "waiting to exit");
    c = begin(C_co_event_wait, co_now() + 2 * GRACE_MS, false);
    check(a, c, co_event_wait(&h->may_exit, c.d), 0);
    return NULL;
}

/* ------------------------------------------------------------ the stop */

/* What ends every wait that may still be pending once actors stop
 * starting operations: events set, the condition notified (its waiters
 * then see the stop), queues closed and their tasks marked done,
 * unbounded semaphores fed, and a byte into and out of every pair.  No
 * kill: with the fuzzer's rules, whatever still waits after this is a
 * lost wake-up. */
static void unblock(actor_t *a)
{
    for (int i = 0; i < NEVENT; i++) co_event_set(&events[i]);
    co_cond_notify_all(&cond);
    for (int i = 0; i < NQUEUE; i++) {
        fqueue_t *fq = &queues[i];
        pthread_mutex_lock(&q_mu);
        bool ok = !fq->retired;
        if (ok) fq->users++;
        pthread_mutex_unlock(&q_mu);
        if (!ok) continue;
        if (!atomic_load(&fq->closed)) queue_close(a, fq);
        while (co_queue_task_done(fq->q) == 0) atomic_fetch_add(&fq->dones, 1);
        q_return(fq);
    }
    for (int i = 0; i < NSEM; i++)
        if (!sems[i].bounded && co_sem_value(&sems[i].s) == 0) sem_release(a, i);
    /* Drain every end first, then write a byte into each: it stays there
     * until the next round, for readers and pollers to see. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < NFD * 2; i++) {
            ffd_t *p = &fds[i / 2];
            int end = i % 2;
            pthread_mutex_lock(&fd_mu);
            bool ok = p->open[end];
            if (ok) p->users[end]++;
            pthread_mutex_unlock(&fd_mu);
            if (!ok) continue;
            if (pass == 0 && can_read(p, end))
                while (fd_read(a, p, end, 0, 1024)) {
                }
            if (pass == 1 && can_write(p, end)) fd_write(a, p, end, 0, 1);
            fd_return(p, end);
        }
}

static void stop_and_wait(actor_t *a)
{
    atomic_store(&stopping, true);
    co_event_set(&stop_ev);
    int64_t until = co_now() + GRACE_MS;
    while (atomic_load(&nactive) > 0) {
        if (co_now() > until)
            fail(a, "%d actors still run %d ms after the stop, though nothing they may wait for is pending",
                 atomic_load(&nactive), GRACE_MS);
        unblock(a);
        co_sleep_ms(2);
    }
}

/* Once everything has ended: every object is back where it started, and
 * every byte and item is accounted for. */
static void final_checks(actor_t *a)
{
    for (int i = 0; i < NLOCK; i++) {
        if (atomic_load(&lock_owner[i]) || co_lock_locked(&locks[i])) fail(a, "lock L%d is still held", i);
        if (co_lock_destroy(&locks[i]) != 0) fail(a, "co_lock_destroy(L%d): %s", i, strerror(errno));
    }
    for (int i = 0; i < NRLOCK; i++)
        if (atomic_load(&rlock_owner[i]) || co_rlock_destroy(&rlocks[i]) != 0) fail(a, "rlock R%d is still held", i);
    if (co_lock_destroy(&cond_lock) != 0 || co_cond_destroy(&cond) != 0) fail(a, "the condition is still in use");
    check_tickets(a);
    for (int i = 0; i < NSEM; i++) {
        struct fsem *s = &sems[i];
        long want = s->initial + atomic_load(&s->released) - atomic_load(&s->acquired);
        if (co_sem_value(&s->s) != want)
            fail(a, "semaphore S%d ends at %ld; %ld + %ld releases - %ld acquires = %ld", i, co_sem_value(&s->s),
                 s->initial, atomic_load(&s->released), atomic_load(&s->acquired), want);
        if (s->bounded && (atomic_load(&s->inside) != 0 || want != s->initial))
            fail(a, "bounded semaphore S%d ends with %ld units out", i, s->initial - want);
        if (co_sem_destroy(&s->s) != 0) fail(a, "semaphore S%d is still waited on", i);
    }
    for (int i = 0; i < NEVENT; i++)
        if (co_event_destroy(&events[i]) != 0) fail(a, "event E%d is still waited on", i);
    for (int i = 0; i < NQUEUE; i++) {
        if (queues[i].users) fail(a, "the %s is still in use", queues[i].what);
        queue_settle(a, &queues[i]);
        co_queue_free(queues[i].q, NULL);
    }
    for (unsigned i = 0; i < LEDGER; i++)
        if (atomic_load(&ledger[i]) & 0xff) fail(a, "item #%u is still in a queue that was drained (lost)", i);
    for (int i = 0; i < NFD; i++) {
        ffd_t *p = &fds[i];
        for (int end = 0; end < 2; end++)
            if (p->open[end] && can_read(p, end))
                while (fd_read(a, p, end, 0, 1024)) {
                }
        for (int dir = 0; dir < 2; dir++) {
            if (p->rbytes[dir] > p->wbytes[dir])
                fail(a, "pair %d: %" PRIu64 " bytes read, %" PRIu64 " written", i, p->rbytes[dir], p->wbytes[dir]);
            if (!p->lossy &&
                (p->rbytes[dir] != p->wbytes[dir] || memcmp(p->rhist[dir], p->whist[dir], sizeof p->rhist[dir])))
                fail(a, "pair %d: %" PRIu64 " bytes written, %" PRIu64 " read back%s", i, p->wbytes[dir],
                     p->rbytes[dir], p->rbytes[dir] == p->wbytes[dir] ? ", different ones" : "");
        }
        for (int end = 0; end < 2; end++)
            if (p->open[end]) ASSERT_EQ(co_close(p->fd[end]), 0);
    }
    for (int i = 0; i < NSLOT; i++)
        if (slots[i].co) fail(a, "a coroutine handle was never joined");
    if (atomic_load(&nworkers) != atomic_load(&nworkers_freed))
        fail(a, "%ld workers made, %ld freed", atomic_load(&nworkers), atomic_load(&nworkers_freed));
}

/* Every object starts afresh: a test program may run the case twice. */
static void world_init(void)
{
    atomic_store(&stopping, false);
    atomic_store(&nactive, 0);
    co_event_clear(&stop_ev);
    co_event_clear(&sweep_ev);
    static const char *const lock_names[NLOCK] = {"L0", "L1", "L2"}, *const rlock_names[NRLOCK] = {"R0", "R1"};
    for (int i = 0; i < NLOCK; i++) co_lock_init(&locks[i], lock_names[i]);
    for (int i = 0; i < NRLOCK; i++) co_rlock_init(&rlocks[i], rlock_names[i]);
    co_lock_init(&cond_lock, "C");
    co_cond_init(&cond, &cond_lock);
    for (int i = 0; i < NSEM; i++) {
        co_sem_init(&sems[i].s, sems[i].initial, sems[i].bounded);
        atomic_store(&sems[i].inside, 0);
        atomic_store(&sems[i].acquired, 0);
        atomic_store(&sems[i].released, 0);
    }
    for (int i = 0; i < NEVENT; i++) co_event_init(&events[i]);
    tickets = given = taken = 0;
    for (int i = 0; i < NQUEUE; i++) queue_make(&queues[i]);
    for (int i = 0; i < NFD; i++) fd_make(&fds[i], i == NFD - 1);
    memset(slots, 0, sizeof slots);
    memset(stats, 0, sizeof stats);
}

static void print_summary(int64_t stop_ms)
{
    fprintf(stderr, "fuzz: seed %" PRIu64 ": %ld operations in %.1f s (+%.1f s to stop), %ld coroutines spawned", seed,
            atomic_load(&nops), run_ms / 1000.0, stop_ms / 1000.0, atomic_load(&nspawned));
    fprintf(stderr, ", timeouts at most %lld ms late\n", atomic_load(&max_late));
    for (int c = 0; c < NCALL; c++) {
        unsigned long total = 0;
        for (int r = 0; r < NRES; r++) total += atomic_load(&stats[c][r]);
        if (!total) continue;
        char line[400];
        int n = snprintf(line, sizeof line, "  %-19s %8lu:", call_name[c], total);
        for (int r = 0; r < NRES && n < (int)sizeof line; r++)
            if (atomic_load(&stats[c][r]))
                n += snprintf(line + n, sizeof line - (size_t)n, " %s %lu", res_name[r], atomic_load(&stats[c][r]));
        fprintf(stderr, "%s\n", line);
    }
}

static void read_config(void)
{
    const char *s = getenv("COGENT_FUZZ_SEED"), *t = getenv("COGENT_FUZZ_SECONDS");
    seed = s && *s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)co_now();
    double secs = t && *t ? strtod(t, NULL) : 2.0;
    if (!(secs > 0)) secs = 2.0;
    run_ms = (int64_t)(secs * 1000);
}

static void test_fuzz(void)
{
    read_config();
    fprintf(stderr, "fuzz: seed %" PRIu64 ", %.1f s (replay: COGENT_FUZZ_SEED=%" PRIu64 ")\n", seed, run_ms / 1000.0,
            seed);
    /* SIGPIPE keeps its default action: co_write on a pipe whose reader
     * closed says EPIPE and raises nothing (docs/io.md), or the run dies. */
    world_init();
    actor_t ctl, plain;
    actor_init(&ctl, MAINT, 0, 7, "controller");
    actor_init(&plain, PLAIN, 0, 3, "plain");
    plain.prod = NPROD;
    pthread_t wd, pt;
    ASSERT_EQ(pthread_create(&wd, NULL, watchdog, (void *)(intptr_t)(run_ms + GRACE_MS + WATCHDOG_MS)), 0);
    for (int i = 0; i < NHUB; i++) {
        hubs[i] = (fhub_t){.index = i};
        co_event_init(&hubs[i].may_exit);
        ASSERT_EQ(pthread_create(&hubs[i].thread, NULL, hub_thread, &hubs[i]), 0);
    }
    atomic_fetch_add(&nactive, 1);
    ASSERT_EQ(pthread_create(&pt, NULL, plain_thread, &plain), 0);

    co_sleep_ms(run_ms);
    int64_t t0 = co_now();
    set_op(&ctl, "stopping");
    stop_and_wait(&ctl);
    co_event_set(&sweep_ev);
    /* The hubs exit at once (their fd registrations go together). */
    for (int i = 0; i < NHUB; i++) co_event_set(&hubs[i].may_exit);
    for (int i = 0; i < NHUB; i++) ASSERT_EQ(pthread_join(hubs[i].thread, NULL), 0);
    ASSERT_EQ(pthread_join(pt, NULL), 0);
    set_op(&ctl, "final checks");
    final_checks(&ctl);
    print_summary(co_now() - t0);

    pthread_mutex_lock(&wd_mu);
    wd_done = true;
    pthread_cond_signal(&wd_cv);
    pthread_mutex_unlock(&wd_mu);
    ASSERT_EQ(pthread_join(wd, NULL), 0);
}

/* -------------------------------------------------------------- misuse */

/* What the contract calls a programming error aborts with a message, also
 * across hubs and threads without one: each case commits one in a child
 * process (the fuzzer itself never does). */
static co_lock_t mis_lock = CO_LOCK_INIT_NAMED("theirs");
static co_rlock_t mis_rlock = CO_RLOCK_INIT_NAMED("theirs");
static co_lock_t mis_cond_lock = CO_LOCK_INIT;
static co_cond_t mis_cond = CO_COND_INIT(&mis_cond_lock);
static co_event_t mis_ready = CO_EVENT_INIT, mis_never = CO_EVENT_INIT;
static co_coro_t *mis_c;
static co_group_t *mis_g;
static co_queue_t *mis_q;

static void *mis_quick(void *arg)
{
    return arg;
}

static void in_thread(void *(*fn)(void *))
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, fn, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

static void *join_it(void *arg)
{
    (void)arg;
    co_join(mis_c, -1, NULL);
    return NULL;
}

static void join_twice(void *arg)
{
    (void)arg;
    mis_c = co_spawn(mis_quick, NULL);
    co_yield_now();           /* it ends */
    in_thread(join_it);       /* joined there... */
    co_join(mis_c, -1, NULL); /* ...and again here */
}

/* Takes the lock (or rlock), says so, and keeps it. */
static void *take_and_keep(void *arg)
{
    if (arg)
        co_rlock_acquire(&mis_rlock, -1);
    else
        co_lock_acquire(&mis_lock, -1);
    co_event_set(&mis_ready);
    co_event_wait(&mis_never, -1);
    return NULL;
}

static void *hub_taking_lock(void *arg)
{
    (void)arg;
    co_join(co_spawn(take_and_keep, NULL), -1, NULL);
    return NULL;
}

static void release_theirs(void *arg)
{
    (void)arg;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hub_taking_lock, NULL), 0);
    co_event_wait(&mis_ready, -1);
    co_lock_release(&mis_lock); /* held by a coroutine of the other hub */
}

static void release_rlock_theirs(void *arg)
{
    (void)arg;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, take_and_keep, &mis_rlock), 0); /* a thread without a hub */
    co_event_wait(&mis_ready, -1);
    co_rlock_release(&mis_rlock);
}

static void *wait_unlocked(void *arg)
{
    (void)arg;
    co_cond_wait(&mis_cond, -1);
    return NULL;
}

static void cond_wait_unlocked(void *arg)
{
    (void)arg;
    in_thread(wait_unlocked); /* a thread without a hub */
}

static void *get_forever(void *arg)
{
    (void)arg;
    void *it;
    co_queue_get(mis_q, &it, -1);
    return NULL;
}

static void free_waited_queue(void *arg)
{
    (void)arg;
    mis_q = co_queue_new(NULL);
    co_spawn(get_forever, NULL);
    co_yield_now(); /* it waits */
    co_queue_free(mis_q, NULL);
}

static void join_member_elsewhere(void *arg)
{
    (void)arg;
    mis_g = co_group_new(0);
    mis_c = co_group_spawn(mis_g, mis_quick, NULL, -1);
    co_yield_now(); /* it ends */
    in_thread(join_it);
}

static void *spawn_into_group(void *arg)
{
    (void)arg;
    co_group_spawn(mis_g, mis_quick, NULL, -1);
    return NULL;
}

static void group_elsewhere(void *arg)
{
    (void)arg;
    mis_g = co_group_new(0);
    in_thread(spawn_into_group);
}

static void test_fuzz_misuse(void)
{
    static const struct {
        const char *what;
        void (*fn)(void *);
        const char *says;
    } cases[] = {
        {"a handle joined on another thread, then here", join_twice, "already joined"},
        {"a lock held by a coroutine of another hub, released here", release_theirs, "releases lock 'theirs'"},
        {"an rlock held by a thread without a hub, released here", release_rlock_theirs, "releases rlock 'theirs'"},
        {"a condition waited on without its lock by a thread without a hub", cond_wait_unlocked,
         "does not hold the condition's lock"},
        {"a queue freed while a coroutine waits on it", free_waited_queue, "has waiters"},
        {"a group member joined from another thread", join_member_elsewhere, "from another thread"},
        {"a group used from another thread", group_elsewhere, "belongs to another thread"},
    };
    char buf[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = run_child(cases[i].fn, NULL, buf, sizeof buf);
        ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, "cogent: ") && strstr(buf, cases[i].says),
                "%s: status %#x, stderr: %s", cases[i].what, st, buf);
    }
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_fuzz);
    RUN(test_fuzz_misuse);
    return TEST_MAIN_END();
}
