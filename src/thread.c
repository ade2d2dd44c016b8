/* Threads: threading.Thread, Timer, current/enumerate/active_count, and
 * the exit hook that waits for non-daemon threads.
 *
 * A record (co_thread_t) is shared by the thread that runs it and every
 * handle to it, so it is reference-counted: one reference for the
 * running thread (dropped as it ends), one per handle (co_thread_new's,
 * each co_thread_enumerate entry).  Joiners wait on it with wait.c's
 * protocol, so a coroutine of any hub parks and a thread without a hub
 * sleeps on a futex; the thread grants them all as its very last act,
 * after its hub has ended (co__hub_thread_end), so a joiner never sees a
 * coroutine of the thread still running.
 *
 * The registry (reg_lock) lists the threads cogent started that are still
 * alive: enumerate, active count, the exit hook and the fork path read it.
 * The main thread's record is static and always counts as alive. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "debug.h"
#include "fork.h"
#include "thread.h"

enum { T_WAITING = 0, T_FIRED, T_CANCELLED }; /* a timer's fate */

struct co_thread {
    unsigned spin;      /* guards joiners and done (the waiting protocol) */
    co__list_t joiners; /* co__waiter_t nodes */
    unsigned done;      /* atomic: finished; result is readable */
    int refs;           /* atomic */
    co_fn fn;
    void *arg;
    void *result;
    char *name; /* malloc'd, or a static name for the main thread */
    pid_t tid;  /* atomic: set by the thread before it is started */
    bool daemon;
    bool foreign; /* a thread cogent did not start ("Dummy-<n>") */
    bool lost;    /* does not exist in this process (a fork child) */
    bool timer;
    unsigned timer_state; /* atomic: T_* */
    int64_t fire_at;      /* a timer's deadline */
    co_event_t cancel;    /* a timer's cancellation */
    co__lnode_t reg;      /* the registry of live threads (reg_lock) */
    bool registered;
    unsigned started; /* futex: the thread runs, named */
    /* Asked once by the exit hook before it waits for the thread: a hub
     * pool's thread stops waiting for work (co__thread_on_exit). */
    void (*exit_request)(void *arg);
    void *exit_arg;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static co__list_t live; /* threads cogent started, alive */
static size_t nlive;
static unsigned long next_n = 1; /* "Thread-<n>" (reg_lock) */
static unsigned long next_dummy = 1;

static char main_name[] = "MainThread";
static co_thread_t main_rec = {.name = main_name, .refs = 1 << 30};
static co_thread_t *main_thread = &main_rec; /* in a fork child, the thread that forked */

static CO__TLS __thread co_thread_t *self;

void (*co__thread_exit_pools)(void);

static pid_t gettid_(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static void ref(co_thread_t *t)
{
    __atomic_fetch_add(&t->refs, 1, __ATOMIC_RELAXED);
}

static void unref(co_thread_t *t)
{
    if (t == &main_rec) return;
    if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    free(t->name);
    free(t);
}

void co__thread_ref(co_thread_t *t)
{
    ref(t);
}

void co__thread_on_exit(co_thread_t *t, void (*fn)(void *arg), void *arg)
{
    t->exit_arg = arg;
    __atomic_store_n(&t->exit_request, fn, __ATOMIC_RELEASE);
}

bool co__thread_is_self(const co_thread_t *t)
{
    return t == co_thread_current();
}

/* ------------------------------------------------------------- the end */

/* The thread has finished (its hub too): it leaves the registry and its
 * joiners get their answer.  On the thread itself, last of all. */
static void finish(co_thread_t *t)
{
    pthread_mutex_lock(&reg_lock);
    if (t->registered) {
        co__list_remove(&live, &t->reg);
        t->registered = false;
        nlive--;
    }
    pthread_mutex_unlock(&reg_lock);
    co__wlist_t wl = {0};
    co__spin_lock(&t->spin);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    while (!co__list_empty(&t->joiners)) co__grant(&t->joiners, co__waiters_first(&t->joiners), 0, NULL, &wl);
    co__spin_unlock(&t->spin);
    co__wake_list(&wl);
}

/* Threads are detached: nothing joins them at the pthread level, so the
 * fork path (and anyone else who needs to) orders itself after every
 * thread that has ended through this counter, a release by each thread
 * as its last act.  (Without it, a thread's last writes — the doorbell it
 * rang to answer a joiner, say — are unordered with a later fork's
 * rebuild of that hub, and ThreadSanitizer says so.) */
static unsigned long nended;

static void ended(void)
{
    __atomic_fetch_add(&nended, 1, __ATOMIC_RELEASE);
}

/* pthread_exit (or an acted-on pthread_cancel) from fn: the result is
 * lost, and the hub ends after this, from its key's destructor. */
static void exited_early(void *arg)
{
    co_thread_t *t = arg;
    t->result = NULL;
    finish(t);
    self = NULL;
    unref(t);
    ended();
}

static void *thread_main(void *arg)
{
    co_thread_t *t = arg;
    self = t;
    __atomic_store_n(&t->tid, gettid_(), __ATOMIC_RELAXED);
    char kname[16];
    snprintf(kname, sizeof kname, "%s", t->name);
    pthread_setname_np(pthread_self(), kname);
    __atomic_store_n(&t->started, 1, __ATOMIC_RELEASE);
    co__futex_wake(&t->started);

    bool run = true;
    if (t->timer) {
        /* Cancelled (the event set) or fired (its deadline passed): the
         * first to move the state decides. */
        co_event_wait(&t->cancel, t->fire_at);
        unsigned expect = T_WAITING;
        run = __atomic_compare_exchange_n(&t->timer_state, &expect, T_FIRED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    void *result = NULL;
    pthread_cleanup_push(exited_early, t);
    if (run) result = t->fn(t->arg);
    pthread_cleanup_pop(0);
    t->result = result;
    /* Its coroutines end now, before any joiner hears of the end. */
    co__hub_thread_end();
    finish(t);
    self = NULL;
    unref(t);
    ended();
    return NULL;
}

/* ----------------------------------------------------------------- dump */

typedef struct tids {
    pid_t *v;
    size_t n, cap;
} tids_t;

static void note_hub(co__hub_t *h, void *arg)
{
    tids_t *t = arg;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        pid_t *v = realloc(t->v, cap * sizeof *v);
        if (!v) return;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = h->tid;
}

/* co_dump's last part: threads cogent started that have no hub (those
 * with one were described by their hub, under their kernel name). */
static void dump_threads(FILE *f)
{
    tids_t hubs = {0};
    co__hub_each(note_hub, &hubs);
    pthread_mutex_lock(&reg_lock);
    for (co__lnode_t *e = live.head; e; e = e->next) {
        co_thread_t *t = CO__CONTAINER(e, co_thread_t, reg);
        pid_t tid = __atomic_load_n(&t->tid, __ATOMIC_RELAXED);
        bool has_hub = false;
        for (size_t i = 0; i < hubs.n; i++) has_hub |= hubs.v[i] == tid;
        if (!has_hub)
            fprintf(f, "thread %d \"%s\": no hub (started by cogent%s%s)\n", (int)tid, t->name,
                    t->daemon ? ", daemon" : "", t->timer ? ", timer" : "");
    }
    pthread_mutex_unlock(&reg_lock);
    free(hubs.v);
}

/* ---------------------------------------------------------- the start */

static void at_exit(void);
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static void register_exit(void)
{
    atexit(at_exit);
    __atomic_store_n(&co__dump_threads, dump_threads, __ATOMIC_RELEASE);
}

/* Starts a thread; with delay_ms >= 0, a timer. */
static co_thread_t *start(co_fn fn, void *arg, const co_thread_opts_t *opts, bool block_signals, int64_t delay_ms)
{
    co_thread_opts_t o = opts ? *opts : (co_thread_opts_t){0};
    if (!fn || (o.stack_size && o.stack_size < CO_STACK_MIN)) return errno = EINVAL, NULL;
    co__fork_init();
    pthread_once(&exit_once, register_exit);
    co_thread_t *t = calloc(1, sizeof *t);
    if (!t) return errno = ENOMEM, NULL;
    t->fn = fn;
    t->arg = arg;
    t->daemon = o.daemon;
    t->refs = 2; /* the handle and the running thread */
    co_event_init(&t->cancel);
    if (delay_ms >= 0) {
        t->timer = true;
        t->fire_at = co__deadline_after(delay_ms);
    }
    if (o.name) {
        t->name = strdup(o.name);
    } else {
        char buf[32];
        pthread_mutex_lock(&reg_lock);
        unsigned long n = next_n++;
        pthread_mutex_unlock(&reg_lock);
        snprintf(buf, sizeof buf, "Thread-%lu", n);
        t->name = strdup(buf);
    }
    if (!t->name) {
        free(t);
        return errno = ENOMEM, NULL;
    }

    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int e = o.stack_size ? pthread_attr_setstacksize(&a, o.stack_size) : 0;
    /* Registered before it exists, so that enumerate and the exit hook
     * never miss a thread that runs. */
    pthread_mutex_lock(&reg_lock);
    co__list_push(&live, &t->reg);
    t->registered = true;
    nlive++;
    pthread_mutex_unlock(&reg_lock);
    sigset_t all, old;
    if (block_signals) {
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
    }
    pthread_t pt;
    if (!e) e = pthread_create(&pt, &a, thread_main, t);
    if (block_signals) pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    if (e) {
        pthread_mutex_lock(&reg_lock);
        co__list_remove(&live, &t->reg);
        nlive--;
        pthread_mutex_unlock(&reg_lock);
        free(t->name);
        free(t);
        return errno = (e == EINVAL ? EINVAL : e == ENOMEM ? ENOMEM : EAGAIN), NULL;
    }
    while (!__atomic_load_n(&t->started, __ATOMIC_ACQUIRE)) co__futex_wait(&t->started, 0, -1);
    return t;
}

co_thread_t *co__thread_start(co_fn fn, void *arg, const co_thread_opts_t *opts, bool block_signals)
{
    return start(fn, arg, opts, block_signals, -1);
}

co_thread_t *co_thread_new(co_fn fn, void *arg, const co_thread_opts_t *opts)
{
    return start(fn, arg, opts, false, -1);
}

co_thread_t *co_thread_after(int64_t delay_ms, co_fn fn, void *arg, const co_thread_opts_t *opts)
{
    return start(fn, arg, opts, false, delay_ms < 0 ? 0 : delay_ms);
}

void co_thread_free(co_thread_t *t)
{
    if (t) unref(t);
}

/* ------------------------------------------------------------ waiting */

/* Waits until t is done.  0 or an errno value. */
static int wait_done(co_thread_t *t, int64_t deadline, bool cancellable)
{
    if (__atomic_load_n(&t->done, __ATOMIC_ACQUIRE)) return 0;
    if (deadline == 0) return ETIMEDOUT;
    co__spin_lock(&t->spin);
    if (t->done) {
        co__spin_unlock(&t->spin);
        return 0;
    }
    co__waiter_t wnode, *w = co__waiter_get(&wnode); /* in the record if compact */
    co__waiters_push(&t->joiners, w);
    /* The thread owes the answer: never "nothing could wake it". */
    int r = co__wait_block(w, &t->spin, &t->joiners, deadline, "co_thread_join", t, CO__BY_MESSAGE, cancellable);
    if (r) co__spin_unlock(&t->spin);
    return r;
}

int co__thread_wait(co_thread_t *t, int64_t deadline, bool cancellable)
{
    return wait_done(t, deadline, cancellable);
}

int co_thread_join(co_thread_t *t, int64_t deadline, void **result)
{
    CO__CHECK(t != NULL, "co_thread_join: NULL thread");
    if (t == co_thread_current()) return errno = EDEADLK, -1;
    if (t == main_thread) return errno = EINVAL, -1;
    if (__atomic_load_n(&t->lost, __ATOMIC_RELAXED)) return errno = ESRCH, -1;
    int r = wait_done(t, deadline, true);
    if (r) return errno = r, -1;
    if (__atomic_load_n(&t->lost, __ATOMIC_RELAXED)) return errno = ESRCH, -1;
    if (result) *result = t->result;
    return 0;
}

bool co_thread_alive(const co_thread_t *t)
{
    CO__CHECK(t != NULL, "co_thread_alive: NULL thread");
    return !__atomic_load_n(&t->done, __ATOMIC_ACQUIRE);
}

pid_t co_thread_id(const co_thread_t *t)
{
    CO__CHECK(t != NULL, "co_thread_id: NULL thread");
    if (t == &main_rec && main_thread == &main_rec) return getpid();
    return __atomic_load_n(&t->tid, __ATOMIC_RELAXED);
}

const char *co_thread_name(const co_thread_t *t)
{
    CO__CHECK(t != NULL, "co_thread_name: NULL thread");
    return t->name;
}

bool co_thread_daemon(const co_thread_t *t)
{
    CO__CHECK(t != NULL, "co_thread_daemon: NULL thread");
    return t->daemon;
}

int co_thread_cancel(co_thread_t *t)
{
    CO__CHECK(t != NULL, "co_thread_cancel: NULL thread");
    if (!t->timer) return errno = EINVAL, -1;
    unsigned expect = T_WAITING;
    if (__atomic_compare_exchange_n(&t->timer_state, &expect, T_CANCELLED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        co_event_set(&t->cancel);
        return 0;
    }
    return expect == T_CANCELLED ? 0 : (errno = EALREADY, -1);
}

/* ---------------------------------------------------- current, enumerate */

static pthread_key_t dummy_key;
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

/* A thread cogent did not start ends: its record is done. */
static void dummy_exit(void *arg)
{
    co_thread_t *t = arg;
    finish(t);
    self = NULL;
    unref(t);
}

static void make_dummy_key(void)
{
    CO__CHECK(pthread_key_create(&dummy_key, dummy_exit) == 0, "pthread_key_create failed");
}

co_thread_t *co_thread_current(void)
{
    co_thread_t *t = self;
    if (CO__LIKELY(t != NULL)) return t;
    if (gettid_() == getpid()) {
        __atomic_store_n(&main_rec.tid, getpid(), __ATOMIC_RELAXED);
        return self = &main_rec;
    }
    pthread_once(&dummy_once, make_dummy_key);
    t = calloc(1, sizeof *t);
    CO__CHECK(t != NULL, "co_thread_current: out of memory for a thread record");
    char buf[32];
    pthread_mutex_lock(&reg_lock);
    snprintf(buf, sizeof buf, "Dummy-%lu", next_dummy++);
    pthread_mutex_unlock(&reg_lock);
    t->name = strdup(buf);
    CO__CHECK(t->name != NULL, "co_thread_current: out of memory for a thread record");
    t->foreign = true;
    t->daemon = true; /* never waited for: cogent did not start it */
    t->refs = 1;      /* the thread's own, dropped as it exits */
    t->tid = gettid_();
    co_event_init(&t->cancel);
    pthread_setspecific(dummy_key, t);
    return self = t;
}

co_thread_t *co_thread_main(void)
{
    if (main_thread == &main_rec) __atomic_store_n(&main_rec.tid, getpid(), __ATOMIC_RELAXED);
    return main_thread;
}

size_t co_thread_enumerate(co_thread_t **out, size_t cap)
{
    CO__CHECK(out != NULL || cap == 0, "co_thread_enumerate: NULL array");
    co_thread_t *m = co_thread_main();
    pthread_mutex_lock(&reg_lock);
    size_t n = 0;
    if (cap > n) {
        ref(m);
        out[n] = m;
    }
    n++;
    for (co__lnode_t *e = live.head; e; e = e->next) {
        co_thread_t *t = CO__CONTAINER(e, co_thread_t, reg);
        if (t == m) continue;
        if (cap > n) {
            ref(t);
            out[n] = t;
        }
        n++;
    }
    pthread_mutex_unlock(&reg_lock);
    return n;
}

size_t co_thread_count(void)
{
    co_thread_t *m = co_thread_main();
    pthread_mutex_lock(&reg_lock);
    size_t n = 1 + nlive - (m->registered ? 1 : 0);
    pthread_mutex_unlock(&reg_lock);
    return n;
}

/* ------------------------------------------------------------------ exit */

/* At normal exit, on the thread calling exit(): pools are told to shut
 * down (their queued tasks still run), then every non-daemon thread that
 * is still alive is joined — new ones too, until none is left. */
static void at_exit(void)
{
    void (*pools)(void) = __atomic_load_n(&co__thread_exit_pools, __ATOMIC_ACQUIRE);
    if (pools) pools();
    co_thread_t *me = co_thread_current();
    for (;;) {
        co_thread_t *t = NULL;
        pthread_mutex_lock(&reg_lock);
        /* (The analyzer fears the unref below freed a listed record: a
         * thread leaves the list in finish, before its joiners wake.) */
        // NOLINTBEGIN(clang-analyzer-unix.Malloc)
        for (co__lnode_t *e = live.head; e; e = e->next) {
            co_thread_t *c = CO__CONTAINER(e, co_thread_t, reg);
            if (c != me && !c->daemon && !__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
                t = c;
                ref(t);
                break;
            }
        }
        // NOLINTEND(clang-analyzer-unix.Malloc)
        pthread_mutex_unlock(&reg_lock);
        if (!t) break;
        void (*req)(void *) = __atomic_exchange_n(&t->exit_request, NULL, __ATOMIC_ACQ_REL);
        if (req) req(t->exit_arg);
        /* Not cancellable: exit() called by a killed coroutine still
         * waits, as it must. */
        wait_done(t, -1, false);
        unref(t);
    }
}

/* ------------------------------------------------------------------ fork */

void co__thread_fork_prepare(void)
{
    (void)__atomic_load_n(&nended, __ATOMIC_ACQUIRE); /* after every thread that has ended */
    pthread_mutex_lock(&reg_lock);
}

void co__thread_fork_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

/* The child has one thread, the one that forked: it becomes the main
 * thread; every other record is marked lost (join: ESRCH) and leaves the
 * registry.  Its own coroutines waiting in joins of those threads wake. */
static void lose(co_thread_t *t, co__wlist_t *wl)
{
    t->spin = 0; /* a spin lock held by a thread the child does not have */
    __atomic_store_n(&t->lost, true, __ATOMIC_RELAXED);
    co__waiters_fork_filter(&t->joiners, 0, wl);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
}

void co__thread_fork_child(void)
{
    co__wlist_t wl = {0};
    co_thread_t *me = self ? self : &main_rec;
    co__lnode_t *e = live.head;
    live = (co__list_t){0};
    nlive = 0;
    while (e) {
        co__lnode_t *next = e->next; /* read before t may be freed */
        co_thread_t *t = CO__CONTAINER(e, co_thread_t, reg);
        t->registered = false;
        if (t != me) {
            lose(t, &wl);
            unref(t); /* the running thread's reference: it will never drop it */
        }
        e = next;
    }
    if (me != &main_rec) lose(&main_rec, &wl);
    me->tid = gettid_();
    me->daemon = false;
    main_thread = me;
    self = me;
    pthread_mutex_unlock(&reg_lock);
    co__wake_list(&wl);
}
