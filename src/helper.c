/* cogent's own helper threads (see helper.h) and the question the
 * deadlock check asks: could another thread of the program end a wait? */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fork.h"
#include "futex.h"
#include "helper.h"

static unsigned helpers;   /* atomic: helper threads alive (or starting) */
static bool multithreaded; /* atomic, sticky: see co__multithreaded */

typedef struct start {
    void *(*fn)(void *);
    void *arg;
    char name[16];
    unsigned named; /* futex: the helper has its name */
} start_t;

/* First code of every helper: names itself, tells its creator (which
 * waits, so that nobody ever sees a helper without its name: tests count
 * the program's threads by it), runs, and is uncounted as it leaves. */
static void *helper_main(void *p)
{
    start_t *sp = p, s = *sp;
    pthread_setname_np(pthread_self(), s.name);
    __atomic_store_n(&sp->named, 1, __ATOMIC_RELEASE);
    co__futex_wake(&sp->named); /* sp is the creator's: not touched after */
    void *r = s.fn(s.arg);
    __atomic_fetch_sub(&helpers, 1, __ATOMIC_RELAXED);
    return r;
}

int co__helper_start(const char *name, void *(*fn)(void *), void *arg, size_t stack_size)
{
    co__fork_init();
    start_t s = {.fn = fn, .arg = arg};
    snprintf(s.name, sizeof s.name, "cogent-%s", name);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (stack_size) pthread_attr_setstacksize(&a, stack_size);
    /* A helper never takes the program's signals: it starts with all of
     * them blocked (the new thread inherits the mask at creation). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* Counted before it exists, so that no check sees an uncounted thread. */
    __atomic_fetch_add(&helpers, 1, __ATOMIC_RELAXED);
    pthread_t t;
    int e = pthread_create(&t, &a, helper_main, &s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    if (e) {
        __atomic_fetch_sub(&helpers, 1, __ATOMIC_RELAXED);
        return e;
    }
    while (!__atomic_load_n(&s.named, __ATOMIC_ACQUIRE)) co__futex_wait(&s.named, 0, -1);
    return 0;
}

unsigned co__helper_count(void)
{
    return __atomic_load_n(&helpers, __ATOMIC_RELAXED);
}

bool co__multithreaded(void)
{
    if (__atomic_load_n(&multithreaded, __ATOMIC_RELAXED)) return true;
    /* /proc/self/task holds one directory per thread (plus . and ..).
     * Threads that never wake anyone are not counted: cogent's own
     * helpers and ThreadSanitizer's background thread. */
    struct stat st;
    unsigned long others = co__helper_count() + (CO_TSAN ? 1 : 0);
    if (stat("/proc/self/task", &st) < 0 || st.st_nlink > 3 + others) {
        __atomic_store_n(&multithreaded, true, __ATOMIC_RELAXED);
        return true; /* unknown counts as "someone else might wake it" */
    }
    return false;
}

void co__helper_fork_child(void)
{
    __atomic_store_n(&helpers, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&multithreaded, false, __ATOMIC_RELAXED); /* the child has one thread */
}
