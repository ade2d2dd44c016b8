/* Deadlines: a 4-ary min-heap of (deadline, seq).
 *
 * Why a heap and not a timer wheel: a wheel rounds long timeouts to its
 * slot width; a heap is exact for any deadline, O(log4 n) to arm and
 * disarm, and touches fewer cache lines per level than a binary heap. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "timer.h"

int64_t co_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool before(const co__timer_t *a, const co__timer_t *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void place(co__timers_t *h, size_t i, co__timer_t *t)
{
    h->heap[i] = t;
    t->index = i;
}

static void sift_up(co__timers_t *h, size_t i, co__timer_t *t)
{
    while (i > 0) {
        size_t parent = (i - 1) / 4;
        if (!before(t, h->heap[parent])) break;
        place(h, i, h->heap[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(co__timers_t *h, size_t i, co__timer_t *t)
{
    for (;;) {
        size_t first = 4 * i + 1;
        if (first >= h->n) break;
        size_t best = first;
        size_t end = first + 4 < h->n ? first + 4 : h->n;
        for (size_t c = first + 1; c < end; c++)
            if (before(h->heap[c], h->heap[best])) best = c;
        if (!before(h->heap[best], t)) break;
        place(h, i, h->heap[best]);
        i = best;
    }
    place(h, i, t);
}

void co__timers_destroy(co__timers_t *h)
{
    free(h->heap);
    *h = (co__timers_t){0};
}

int co__timers_add(co__timers_t *h, co__timer_t *t, int64_t deadline)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        co__timer_t **heap = realloc(h->heap, cap * sizeof(co__timer_t *));
        if (!heap) {
            t->index = SIZE_MAX;
            return errno = ENOMEM, -1;
        }
        h->heap = heap;
        h->cap = cap;
    }
    t->deadline = deadline;
    t->seq = h->seq++;
    sift_up(h, h->n++, t);
    return 0;
}

void co__timers_remove(co__timers_t *h, co__timer_t *t)
{
    size_t i = t->index;
    if (i == SIZE_MAX) return;
    t->index = SIZE_MAX;
    co__timer_t *last = h->heap[--h->n];
    if (last == t) return;
    /* The moved element may need to go either way. */
    if (i > 0 && before(last, h->heap[(i - 1) / 4]))
        sift_up(h, i, last);
    else
        sift_down(h, i, last);
}
