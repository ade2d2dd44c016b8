/* Deadlines (timer.c): a 4-ary min-heap ordered by (deadline, seq), exact
 * for any deadline.  A timer is embedded in whatever waits on it. */
#ifndef COGENT_TIMER_H
#define COGENT_TIMER_H

#include "core.h"

typedef struct co__timer {
    int64_t deadline; /* ms of co_now() */
    uint64_t seq;     /* insertion order: FIFO among equal deadlines */
    size_t index;     /* position in the heap, SIZE_MAX when not armed */
} co__timer_t;

typedef struct co__timers {
    co__timer_t **heap;
    size_t n, cap;
    uint64_t seq;
} co__timers_t;

void co__timers_destroy(co__timers_t *h);
/* Arms t at `deadline`.  0, or -1 with errno ENOMEM (t is then not armed). */
int co__timers_add(co__timers_t *h, co__timer_t *t, int64_t deadline);
/* Disarms t if armed. */
void co__timers_remove(co__timers_t *h, co__timer_t *t);
/* The earliest armed timer, or NULL. */
static inline co__timer_t *co__timers_first(const co__timers_t *h)
{
    return h->n ? h->heap[0] : NULL;
}
static inline bool co__timer_armed(const co__timer_t *t)
{
    return t->index != SIZE_MAX;
}

/* Deadlines as the public API takes them: -1 is none, any other negative
 * value has passed already (co_now() - 300000 is negative right after
 * boot), >= 0 is a time of co_now(). */
static inline bool co__no_deadline(int64_t deadline)
{
    return deadline == -1;
}
/* True if the deadline has passed (never for -1). */
static inline bool co__expired(int64_t deadline)
{
    return !co__no_deadline(deadline) && deadline <= co_now();
}
/* A poll(2)-style timeout for a deadline: -1 for none, else the ms left
 * (0 once passed), clamped to int. */
static inline int co__ms_until(int64_t deadline)
{
    if (co__no_deadline(deadline)) return -1;
    if (deadline < 0) return 0;
    int64_t left = deadline - co_now();
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}
/* now + ms without overflowing: a huge duration saturates to "none". */
static inline int64_t co__deadline_after(int64_t ms)
{
    int64_t now = co_now();
    return ms > INT64_MAX - now ? -1 : now + ms;
}

#endif
