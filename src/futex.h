/* Futex waits for threads without a hub (the waiting protocol, helper
 * start-up, dumps): the one primitive below every blocking wait. */
#ifndef COGENT_FUTEX_H
#define COGENT_FUTEX_H

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "timer.h"

/* Sleeps while *addr == val until the deadline (ms of co_now, -1: none;
 * CLOCK_MONOTONIC, which FUTEX_WAIT_BITSET uses).  0 when woken (maybe
 * spuriously), ETIMEDOUT at the deadline.  Not a cancellation point. */
static inline int co__futex_wait(unsigned *addr, unsigned val, int64_t deadline)
{
    struct timespec ts, *tp = NULL;
    if (!co__no_deadline(deadline)) {
        if (deadline < 0) return ETIMEDOUT; /* passed long ago */
        ts.tv_sec = deadline / 1000;
        ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
        tp = &ts;
    }
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET_PRIVATE, val, tp, NULL, FUTEX_BITSET_MATCH_ANY);
    if (r < 0 && errno == ETIMEDOUT) return ETIMEDOUT;
    return 0;
}

/* Wakes one sleeper on addr. */
static inline void co__futex_wake(unsigned *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#endif
