/* Debugging aids: the coroutine dump (on demand or on a signal), the
 * blocking monitor, and the environment switches.
 *
 * A hub's coroutines belong to its thread, so a dump asks each other hub
 * to describe itself (a DUMP message, answered the next time that hub
 * looks at its inbox: at once if it is idle or blocked).  A hub that does
 * not answer in time is busy running something: it is shown with the
 * coroutine it last switched to.  The signal handler only writes a byte
 * to a pipe; a dumper thread does the rest, outside signal context. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "debug.h"
#include "fork.h"
#include "helper.h"
#include "hub.h"
#include "sys.h"
#include "wait.h"

#define DUMP_WAIT_MS 200

void (*co__dump_threads)(FILE *f);

/* ---------------------------------------------------------------- dump */

/* Describes the coroutine another thread's hub is running, from that
 * thread's point of view a snapshot taken without its consent: the hub
 * may move on while we read.  Records are type-stable and name_buf is
 * inline, so the reads stay inside live memory; what they return can be
 * stale, which a diagnostic accepts.  Not instrumented by TSan for that
 * reason (the race is by design, and bounded to this copy). */
__attribute__((no_sanitize("thread"))) static void snapshot_running(co__hub_t *h, char *out, size_t n)
{
    co_coro_t *c = __atomic_load_n(&h->running, __ATOMIC_ACQUIRE);
    if (!c || c->is_main) {
        snprintf(out, n, "the main coroutine");
        return;
    }
    char name[sizeof c->name_buf];
    const volatile char *src = c->name_buf;
    size_t i = 0;
    for (; i + 1 < sizeof name && src[i]; i++) name[i] = src[i];
    name[i] = '\0';
    uint64_t id = *(volatile uint64_t *)&c->id;
    if (name[0])
        snprintf(out, n, "coroutine '%s' (#%" PRIu64 ")", name, id);
    else
        snprintf(out, n, "coroutine #%" PRIu64, id);
}

static const char *state_name(const co_coro_t *c)
{
    switch (c->state) {
    case CO__C_NEW:
        return "new";
    case CO__C_READY:
        return "runnable";
    case CO__C_RUNNING:
        return "running";
    case CO__C_PARKED:
        return "waiting";
    default:
        return "finished";
    }
}

static void describe_coro(FILE *f, const co_coro_t *c, int64_t now, bool self)
{
    fprintf(f, "  #%" PRIu64 " %s: %s", c->id, c->name ? c->name : "-", state_name(c));
    if (c->state == CO__C_PARKED) {
        fprintf(f, " in %s", c->wait_what ? c->wait_what : "?");
        if (c->wait_obj) fprintf(f, " on %p", c->wait_obj);
        fprintf(f, " for %" PRId64 " ms", now - c->park_since);
        if (co__timer_armed(&c->timer)) fprintf(f, " (deadline in %" PRId64 " ms)", c->timer.deadline - now);
    }
    if (self) fprintf(f, " (this dump)");
    if (c->spawn_file) fprintf(f, "; spawned at %s:%d", c->spawn_file, c->spawn_line);
    if (atomic_load_explicit(&((co_coro_t *)c)->killed, memory_order_relaxed)) fprintf(f, ", killed");
    fputc('\n', f);
}

/* Describes h's coroutines (on h's thread); `caller` is the coroutine
 * calling co_dump, if it is one of them. */
static void describe_hub(FILE *f, const co__hub_t *h, const co_coro_t *caller)
{
    int64_t now = co_now();
    char name[16] = ""; /* the kernel's name of this thread (on it: a dump runs on each hub's own thread) */
    pthread_getname_np(pthread_self(), name, sizeof name);
    fprintf(f, "thread %d \"%s\": %zu coroutine%s, %zu runnable, %zu timer%s, %s poller\n", (int)h->tid, name,
            h->ncoros + 1, h->ncoros ? "s" : "", h->nrunq, h->timers.n, h->timers.n == 1 ? "" : "s",
            h->poller.ops->name);
    describe_coro(f, &h->main, now, &h->main == caller);
    for (const co__lnode_t *n = h->all.head; n; n = n->next) {
        const co_coro_t *c = CO__CONTAINER(n, co_coro_t, all);
        describe_coro(f, c, now, c == caller);
    }
}

typedef struct dump_req {
    co__msg_t msg;
    int refs;      /* atomic: the asker and the hub */
    unsigned done; /* atomic; a futex */
    char *buf;
    size_t len;
} dump_req_t;

static void req_unref(dump_req_t *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(r->buf);
        free(r);
    }
}

/* On the asked hub's thread. */
static void dump_asked(co__hub_t *h, co__msg_t *m)
{
    dump_req_t *r = (dump_req_t *)m;
    FILE *f = open_memstream(&r->buf, &r->len);
    if (f) {
        describe_hub(f, h, NULL);
        fclose(f);
    }
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    co__futex_wake(&r->done);
    req_unref(r);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = co__sys_write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

typedef struct asked {
    co__hub_t *hub;
    dump_req_t *req; /* NULL: its inbox was closed (exiting) */
} asked_t;

typedef struct asking {
    co__hub_t *self;
    asked_t *asked;
    size_t n, cap;
} asking_t;

/* Sends a dump request to h (registry locked). */
static void ask(co__hub_t *h, void *arg)
{
    asking_t *a = arg;
    if (h == a->self) return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        asked_t *n = realloc(a->asked, cap * sizeof *n);
        if (!n) return; /* out of memory: that hub goes unlisted */
        a->asked = n;
        a->cap = cap;
    }
    dump_req_t *r = calloc(1, sizeof *r);
    if (r) {
        r->refs = 2;
        r->msg.handle = dump_asked;
        if (!co__hub_send(h, &r->msg)) {
            free(r);
            r = NULL;
        }
    }
    co__hub_ref(h);
    a->asked[a->n++] = (asked_t){h, r};
}

int co_dump(int fd)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    if (!f) return -1;
    co__hub_t *self = co__tls.hub;
    asking_t a = {.self = self};
    co__hub_each(ask, &a);
    asked_t *asked = a.asked;
    size_t nasked = a.n;

    fprintf(f, "cogent: dump of %zu hub%s (pid %d)\n", nasked + (self != NULL), nasked + (self != NULL) == 1 ? "" : "s",
            (int)getpid());
    if (self) describe_hub(f, self, self->current);
    int64_t deadline = co_now() + DUMP_WAIT_MS;
    for (size_t i = 0; i < nasked; i++) {
        dump_req_t *r = asked[i].req;
        co__hub_t *h = asked[i].hub;
        while (r && !__atomic_load_n(&r->done, __ATOMIC_ACQUIRE))
            if (co__futex_wait(&r->done, 0, deadline) == ETIMEDOUT) break;
        if (r && __atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
            if (r->buf) fwrite(r->buf, 1, r->len, f);
        } else if (r) {
            char name[96];
            snapshot_running(h, name, sizeof name);
            fprintf(f, "thread %d: busy, did not answer within %d ms; running %s\n", (int)h->tid, DUMP_WAIT_MS, name);
        } else {
            fprintf(f, "thread %d: exiting\n", (int)h->tid);
        }
        if (r) req_unref(r);
        co__hub_unref(h);
    }
    free(asked);
    void (*more)(FILE *) = __atomic_load_n(&co__dump_threads, __ATOMIC_ACQUIRE);
    if (more) more(f);
    fclose(f);
    int rc = write_all(fd, out, outlen);
    int e = errno;
    free(out);
    return rc < 0 ? (errno = e, -1) : 0;
}

/* -------------------------------------------------------------- signal */

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_pipe[2] = {-1, -1};
static int sig_current;

static void on_signal(int signo)
{
    (void)signo;
    int e = errno;
    char b = 1;
    ssize_t w = co__sys_write(sig_pipe[1], &b, 1);
    (void)w;
    errno = e;
}

static void *dumper(void *unused)
{
    (void)unused;
    for (;;) {
        char b[16];
        ssize_t n = co__sys_read(sig_pipe[0], b, sizeof b);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return NULL;
        co_dump(STDERR_FILENO);
    }
}

int co_dump_on_signal(int signo)
{
    if (signo < 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP) return errno = EINVAL, -1;
    co__fork_init();
    pthread_mutex_lock(&sig_lock);
    if (sig_current) signal(sig_current, SIG_DFL);
    sig_current = 0;
    if (signo == 0) {
        pthread_mutex_unlock(&sig_lock);
        return 0;
    }
    if (sig_pipe[0] < 0) {
        if (pipe2(sig_pipe, O_CLOEXEC) < 0) {
            int e = errno;
            pthread_mutex_unlock(&sig_lock);
            return errno = e, -1;
        }
        co__sys_fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
        int e = co__helper_start("dump", dumper, NULL, 0);
        if (e) {
            co__sys_close(sig_pipe[0]);
            co__sys_close(sig_pipe[1]);
            sig_pipe[0] = sig_pipe[1] = -1;
            pthread_mutex_unlock(&sig_lock);
            return errno = e, -1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(signo, &sa, NULL);
    sig_current = signo;
    pthread_mutex_unlock(&sig_lock);
    return 0;
}

/* ------------------------------------------------------------- monitor */

static pthread_mutex_t mon_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t mon_threshold; /* atomic: 0 = off */
static bool mon_started;
static uint64_t mon_reports;

/* One hub's check (the registry is locked, so h stays alive). */
static void monitor_check(co__hub_t *h, void *arg)
{
    int64_t threshold = *(const int64_t *)arg;
    int64_t now = co_now();
    uint64_t t = __atomic_load_n(&h->ticks, __ATOMIC_RELAXED);
    if (__atomic_load_n(&h->idle, __ATOMIC_RELAXED) || t != h->mon_ticks) {
        h->mon_ticks = t;
        h->mon_since = now;
        h->mon_reported = false;
        return;
    }
    if (h->mon_reported || now - h->mon_since < threshold) return;
    h->mon_reported = true;
    char name[96];
    snapshot_running(h, name, sizeof name);
    fprintf(stderr,
            "cogent: monitor: %s of thread %d has run for %" PRId64 " ms without giving up the CPU (threshold %" PRId64
            " ms): a blocking call or a long computation "
            "stalls every coroutine of that thread\n",
            name, (int)h->tid, now - h->mon_since, threshold);
    __atomic_fetch_add(&mon_reports, 1, __ATOMIC_RELEASE); /* counted once written */
}

static void *monitor(void *unused)
{
    (void)unused;
    for (;;) {
        int64_t th = __atomic_load_n(&mon_threshold, __ATOMIC_RELAXED);
        int64_t step = th > 0 ? th / 4 : 100;
        if (step < 2) step = 2;
        struct timespec ts = {step / 1000, (long)(step % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (th > 0) co__hub_each(monitor_check, &th);
    }
    return NULL;
}

int co_monitor_start(int64_t threshold_ms)
{
    if (threshold_ms < 0) return errno = EINVAL, -1;
    co__fork_init();
    pthread_mutex_lock(&mon_lock);
    __atomic_store_n(&mon_threshold, threshold_ms, __ATOMIC_RELAXED);
    if (threshold_ms > 0 && !mon_started) {
        if (co__helper_start("monitor", monitor, NULL, 0) != 0) {
            pthread_mutex_unlock(&mon_lock);
            return errno = EAGAIN, -1;
        }
        mon_started = true;
    }
    pthread_mutex_unlock(&mon_lock);
    return 0;
}

uint64_t co_monitor_reports(void)
{
    return __atomic_load_n(&mon_reports, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- fork */

void co__debug_fork_prepare(void)
{
    pthread_mutex_lock(&mon_lock);
    pthread_mutex_lock(&sig_lock);
}

void co__debug_fork_parent(void)
{
    pthread_mutex_unlock(&sig_lock);
    pthread_mutex_unlock(&mon_lock);
}

/* The helper threads (dumper, monitor) did not survive the fork: start
 * them again if they were running. */
void co__debug_fork_child(void)
{
    if (sig_pipe[0] >= 0 && co__helper_start("dump", dumper, NULL, 0) != 0)
        fprintf(stderr, "cogent: fork: cannot restart the dumper\n");
    pthread_mutex_unlock(&sig_lock);
    mon_started = false;
    pthread_mutex_unlock(&mon_lock);
    int64_t th = __atomic_load_n(&mon_threshold, __ATOMIC_RELAXED);
    if (th > 0) co_monitor_start(th);
}

/* --------------------------------------------------------- environment */

static bool env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

__attribute__((constructor)) static void debug_from_env(void)
{
    if (env_on("COGENT_LOCKDEP")) co_lockdep_enable(true);
    if (env_on("COGENT_DUMP_SIGNAL")) co_dump_on_signal(SIGQUIT);
    const char *m = getenv("COGENT_MONITOR");
    if (m && *m) {
        char *end;
        long long ms = strtoll(m, &end, 10);
        if (*end || ms <= 0)
            fprintf(stderr, "cogent: ignoring COGENT_MONITOR=%s (want a threshold in ms)\n", m);
        else
            co_monitor_start(ms);
    }
}
