/* Signals, cooperatively (gevent.signal_handler, asyncio's
 * add_signal_handler): co_signal_wait parks the caller until one of a set
 * of signals arrives.
 *
 * The first wait for a signal installs cogent's catcher for it.  The
 * catcher is async-signal-safe by construction: it counts the signal and
 * writes a byte to a pipe, nothing else.  A helper thread ("cogent-signal")
 * reads the pipe and hands each counted signal to the oldest waiter whose
 * set contains it, through the waiting protocol: waiters may be
 * coroutines of any hub or threads without one.  A signal nobody waits
 * for stays counted until someone does, as a pending signal would (but
 * counted: two SIGUSR1 are two). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "debug.h"
#include "fork.h"
#include "helper.h"
#include "sys.h"
#include "wait.h"

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER; /* installs and restores */
static unsigned spin;                                        /* waiters and the counts they consume */
static co__list_t waiters;                                   /* key: the waiter's sigset_t */
static unsigned pending[NSIG];                               /* atomic: caught, not yet handed out */
static bool caught[NSIG];                                    /* sig_lock */
static struct sigaction previous[NSIG];                      /* sig_lock */
static int wake_pipe[2] = {-1, -1};
static bool dispatcher_running; /* sig_lock */

static void catcher(int signo)
{
    int e = errno;
    __atomic_fetch_add(&pending[signo], 1, __ATOMIC_RELEASE);
    char b = 1;
    ssize_t w = co__sys_write(wake_pipe[1], &b, 1); /* EAGAIN: a wake-up is queued already */
    (void)w;
    errno = e;
}

/* Takes one counted signal of `set`, lowest number first.  Spin lock held.
 * The signal, or 0. */
static int take(const sigset_t *set)
{
    for (int s = 1; s < NSIG; s++) {
        if (!sigismember(set, s)) continue;
        unsigned n = __atomic_load_n(&pending[s], __ATOMIC_ACQUIRE);
        while (n > 0)
            if (__atomic_compare_exchange_n(&pending[s], &n, n - 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return s;
    }
    return 0;
}

/* Hands counted signals to waiters, oldest waiter first. */
static void dispatch(void)
{
    co__wlist_t wl = {0};
    co__spin_lock(&spin);
    for (co__lnode_t *n = waiters.head, *next; n; n = next) {
        next = n->next;
        co__waiter_t *w = co__waiter_of(n);
        int s = take((const sigset_t *)(intptr_t)w->key);
        if (s) co__grant(&waiters, w, 0, (void *)(intptr_t)s, &wl);
    }
    co__spin_unlock(&spin);
    co__wake_list(&wl);
}

static void *dispatcher(void *unused)
{
    (void)unused;
    for (;;) {
        char b[64];
        ssize_t n = co__sys_read(wake_pipe[0], b, sizeof b);
        if (n < 0 && errno != EINTR) return NULL;
        dispatch();
    }
}

/* Signals that can only be handled where they happen: a handler that
 * returns makes the faulting instruction fault again. */
static bool synchronous(int s)
{
    return s == SIGSEGV || s == SIGBUS || s == SIGFPE || s == SIGILL || s == SIGTRAP || s == SIGSYS;
}

/* Installs the catcher for every signal of set not caught yet.  0 or an
 * errno value (EINVAL: a signal that cannot be caught; EAGAIN: no
 * dispatcher thread). */
static int catch_set(const sigset_t *set)
{
    bool any = false;
    for (int s = 1; s < NSIG; s++) {
        if (!sigismember(set, s)) continue;
        if (s == SIGKILL || s == SIGSTOP || synchronous(s)) return EINVAL;
        any = true;
    }
    if (!any) return EINVAL;
    pthread_mutex_lock(&sig_lock);
    int err = 0;
    if (wake_pipe[0] < 0) {
        if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
            err = errno;
            goto out;
        }
        co__sys_fcntl(wake_pipe[0], F_SETFL, 0); /* the dispatcher blocks on it */
    }
    if (!dispatcher_running) {
        co__fork_init();
        if ((err = co__helper_start("signal", dispatcher, NULL, 64 * 1024)) != 0) goto out;
        dispatcher_running = true;
    }
    for (int s = 1; s < NSIG; s++) {
        if (!sigismember(set, s) || caught[s]) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = catcher;
        sa.sa_flags = SA_RESTART; /* other blocking calls of the program go on */
        sigfillset(&sa.sa_mask);
        if (sigaction(s, &sa, &previous[s]) < 0) {
            err = errno;
            goto out;
        }
        caught[s] = true;
    }
out:
    pthread_mutex_unlock(&sig_lock);
    return err;
}

int co_signal_wait(const sigset_t *set, int64_t deadline)
{
    if (!set) return errno = EINVAL, -1;
    int err = catch_set(set);
    if (err) return errno = err, -1;
    co__thread();
    co__spin_lock(&spin);
    int s = take(set);
    if (s || deadline == 0) {
        co__spin_unlock(&spin);
        return s ? s : (errno = EAGAIN, -1);
    }
    /* The dispatcher reads the set while we wait: a copy of our own, off
     * the caller's stack (which moves if the caller is compact). */
    sigset_t *mine = malloc(sizeof *mine);
    if (!mine) {
        co__spin_unlock(&spin);
        return errno = ENOMEM, -1;
    }
    *mine = *set;
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    w->key = (int64_t)(intptr_t)mine;
    /* Who can end it: a signal, from anywhere, at any time: never a
     * deadlock.  The dispatcher is on its way if one came meanwhile. */
    int r = co__wait_in(w, &spin, &waiters, deadline, "co_signal_wait", mine, CO__BY_MESSAGE);
    free(mine);
    if (r) return errno = r, -1;
    return (int)(intptr_t)w->item;
}

int co_signal_restore(const sigset_t *set)
{
    if (!set) return errno = EINVAL, -1;
    pthread_mutex_lock(&sig_lock);
    for (int s = 1; s < NSIG; s++) {
        if (!sigismember(set, s) || !caught[s]) continue;
        sigaction(s, &previous[s], NULL);
        caught[s] = false;
        __atomic_store_n(&pending[s], 0, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&sig_lock);
    return 0;
}

/* ---------------------------------------------------------------- fork */

void co__signal_fork_prepare(void)
{
    pthread_mutex_lock(&sig_lock);
}

void co__signal_fork_parent(void)
{
    pthread_mutex_unlock(&sig_lock);
}

/* The child keeps the catchers (sigaction survives fork), the counts and
 * the waiters of the forking thread's hub; other threads' waiters are
 * gone with them; the dispatcher is started again if it ran. */
void co__signal_fork_child(void)
{
    spin = 0;
    co__hub_t *h = co__tls.hub;
    for (co__lnode_t *n = waiters.head, *next; n; n = next) {
        next = n->next;
        co__waiter_t *w = co__waiter_of(n);
        if (!h || w->hub != h) co__waiters_remove(&waiters, w); /* another thread's: gone */
    }
    if (dispatcher_running && co__helper_start("signal", dispatcher, NULL, 64 * 1024) != 0) dispatcher_running = false;
    pthread_mutex_unlock(&sig_lock);
}
