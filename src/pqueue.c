/* A process-shared queue of byte messages (multiprocessing.Queue and
 * JoinableQueue, without a feeder thread and without pickling).
 *
 * A ring of maxsize slots of msgsize bytes (plus a length) in one
 * mapping.  head and tail count messages taken and put since the start;
 * a put copies into slot tail % maxsize and then advances tail, a get
 * copies out of slot head % maxsize and then advances head -- each under
 * the queue's robust mutex, each committed by that one last store.  A
 * process that dies in the middle of a put leaves tail where it was (its
 * half-written slot is not in the queue); one that dies in the middle of
 * a get leaves head where it was (the message is still there for the next
 * getter); either way the next caller gets EOWNERDEAD from the mutex,
 * finds the ring whole, and wakes every waiter.
 *
 * Three futex words: getters wait on `not_empty`, putters on
 * `not_full`, joiners on `done`; a change bumps the word and wakes (with
 * the mutex held, see pshared.h) only when someone sleeps on it, so a
 * busy producer and consumer make no system call at all.
 *
 * Python's multiprocessing.Queue hands a put to a feeder thread that
 * writes it to a pipe later: a put "succeeds" for data that may never
 * arrive, a process that exits with data still in its feeder hangs in
 * join, and a big message can deadlock a child being joined.  Here a put
 * is in the queue when it returns, and nothing runs in the background. */
#include <errno.h>
#include <string.h>

#include "pshared.h"

struct co_pqueue {
    co__shm_hdr_t hdr;
    pthread_mutex_t m;
    uint64_t maxsize, msgsize, stride;  /* set at creation */
    uint64_t head, tail;                /* atomic for readers */
    uint64_t unfinished;                /* atomic for readers */
    unsigned closed;                    /* atomic for readers */
    unsigned not_empty, not_full, done; /* futex words */
    unsigned getters, putters, joiners; /* sleeping on them */
    uint64_t slots_off;
};

#define SLOT_ALIGN 64

static size_t slots_off(void)
{
    return (sizeof(co_pqueue_t) + SLOT_ALIGN - 1) & ~(size_t)(SLOT_ALIGN - 1);
}

static char *slot(co_pqueue_t *q, uint64_t i)
{
    return (char *)q + q->slots_off + (i % q->maxsize) * q->stride;
}

static void queue_init(void *obj, void *arg)
{
    co_pqueue_t *q = obj;
    const uint64_t *dims = arg;
    co__rmutex_init(&q->m);
    q->maxsize = dims[0];
    q->msgsize = dims[1];
    q->stride = (8 + dims[1] + 7) & ~(uint64_t)7;
    q->slots_off = slots_off();
}

co_pqueue_t *co_pqueue_new(size_t maxsize, size_t msgsize, const co_shm_opts_t *opts)
{
    if (maxsize == 0 || msgsize == 0 || msgsize > SIZE_MAX / 2) return errno = EINVAL, NULL;
    size_t stride = (8 + msgsize + 7) & ~(size_t)7;
    if (maxsize > (SIZE_MAX - slots_off()) / stride) return errno = EINVAL, NULL;
    uint64_t dims[2] = {maxsize, msgsize};
    return co__shm_create(CO__SHM_QUEUE, slots_off() + maxsize * stride, opts, queue_init, dims);
}

co_pqueue_t *co_pqueue_open(const char *name)
{
    co_pqueue_t *q = co__shm_open(CO__SHM_QUEUE, name);
    if (q && (q->slots_off != slots_off() || q->maxsize == 0 || q->stride < 8 + q->msgsize ||
              q->maxsize > (q->hdr.size - q->slots_off) / q->stride)) {
        co__shm_free(q);
        return errno = EINVAL, NULL;
    }
    return q;
}

void co_pqueue_free(co_pqueue_t *q)
{
    co__shm_free(q);
}

/* Takes the mutex; if a process died holding it, everyone looks again
 * (the ring itself is whole: see above). */
static void enter(co_pqueue_t *q, const char *what)
{
    if (co__rmutex_enter(&q->m, what)) {
        co__pwake_all(&q->not_empty);
        co__pwake_all(&q->not_full);
        co__pwake_all(&q->done);
    }
}

static void leave(co_pqueue_t *q)
{
    co__rmutex_unlock(&q->m);
}

static void wake(unsigned *word, unsigned sleepers)
{
    if (!sleepers) return;
    __atomic_add_fetch(word, 1, __ATOMIC_RELEASE);
    co__pwake(word, 1);
}

static uint64_t count(const co_pqueue_t *q)
{
    return __atomic_load_n(&q->tail, __ATOMIC_RELAXED) - __atomic_load_n(&q->head, __ATOMIC_RELAXED);
}

int co_pqueue_put(co_pqueue_t *q, const void *data, size_t len, int64_t deadline)
{
    CO__CHECK(q != NULL, "co_pqueue_put: NULL queue");
    if (len > q->msgsize) return errno = EMSGSIZE, -1;
    if (len && !data) return errno = EINVAL, -1;
    enter(q, "co_pqueue_put");
    int r = 0;
    for (;;) {
        if (q->closed) {
            r = EPIPE;
            break;
        }
        if (q->tail - q->head < q->maxsize) {
            char *s = slot(q, q->tail);
            uint64_t n = len;
            memcpy(s, &n, 8);
            if (len) memcpy(s + 8, data, len);
            __atomic_store_n(&q->unfinished, q->unfinished + 1, __ATOMIC_RELAXED);
            __atomic_store_n(&q->tail, q->tail + 1, __ATOMIC_RELEASE); /* the commit */
            wake(&q->not_empty, q->getters);
            r = 0;
            break;
        }
        if (r) break; /* the wait failed, still full */
        if (deadline == 0) {
            r = EAGAIN;
            break;
        }
        q->putters++;
        unsigned seen = __atomic_load_n(&q->not_full, __ATOMIC_RELAXED);
        leave(q);
        r = co__pwait(&q->not_full, seen, deadline, true, "co_pqueue_put");
        enter(q, "co_pqueue_put");
        q->putters--;
    }
    /* Room left and another putter asleep: pass the word on (a putter
     * that gave up may have taken the wake-up meant for it). */
    if (q->tail - q->head < q->maxsize && q->putters && !q->closed) wake(&q->not_full, q->putters);
    leave(q);
    return r ? (errno = r, -1) : 0;
}

int co_pqueue_put_nowait(co_pqueue_t *q, const void *data, size_t len)
{
    return co_pqueue_put(q, data, len, 0);
}

ssize_t co_pqueue_get(co_pqueue_t *q, void *buf, size_t cap, int64_t deadline)
{
    CO__CHECK(q != NULL, "co_pqueue_get: NULL queue");
    enter(q, "co_pqueue_get");
    int r = 0;
    ssize_t got = -1;
    for (;;) {
        if (q->tail != q->head) {
            char *s = slot(q, q->head);
            uint64_t n;
            memcpy(&n, s, 8);
            if (n > q->msgsize) n = q->msgsize; /* only a corrupted ring could say so */
            if (n > cap) {
                r = EMSGSIZE; /* it stays */
                break;
            }
            if (n) memcpy(buf, s + 8, (size_t)n);
            __atomic_store_n(&q->head, q->head + 1, __ATOMIC_RELEASE); /* the commit */
            wake(&q->not_full, q->putters);
            got = (ssize_t)n;
            r = 0;
            break;
        }
        if (q->closed) {
            r = EPIPE;
            break;
        }
        if (r) break;
        if (deadline == 0) {
            r = EAGAIN;
            break;
        }
        q->getters++;
        unsigned seen = __atomic_load_n(&q->not_empty, __ATOMIC_RELAXED);
        leave(q);
        r = co__pwait(&q->not_empty, seen, deadline, true, "co_pqueue_get");
        enter(q, "co_pqueue_get");
        q->getters--;
    }
    if (q->tail != q->head && q->getters) wake(&q->not_empty, q->getters);
    leave(q);
    return r ? (errno = r, -1) : got;
}

ssize_t co_pqueue_get_nowait(co_pqueue_t *q, void *buf, size_t cap)
{
    return co_pqueue_get(q, buf, cap, 0);
}

void co_pqueue_close(co_pqueue_t *q)
{
    enter(q, "co_pqueue_close");
    __atomic_store_n(&q->closed, 1, __ATOMIC_RELAXED);
    co__pwake_all(&q->not_empty);
    co__pwake_all(&q->not_full);
    leave(q);
}

bool co_pqueue_closed(const co_pqueue_t *q)
{
    return __atomic_load_n(&q->closed, __ATOMIC_RELAXED) != 0;
}

size_t co_pqueue_size(const co_pqueue_t *q)
{
    return (size_t)count(q);
}

bool co_pqueue_empty(const co_pqueue_t *q)
{
    return count(q) == 0;
}

bool co_pqueue_full(const co_pqueue_t *q)
{
    return count(q) >= q->maxsize;
}

size_t co_pqueue_msgsize(const co_pqueue_t *q)
{
    return (size_t)q->msgsize;
}

int co_pqueue_task_done(co_pqueue_t *q)
{
    enter(q, "co_pqueue_task_done");
    if (q->unfinished == 0) {
        leave(q);
        return errno = EINVAL, -1;
    }
    __atomic_store_n(&q->unfinished, q->unfinished - 1, __ATOMIC_RELAXED);
    if (q->unfinished == 0 && q->joiners) co__pwake_all(&q->done);
    leave(q);
    return 0;
}

int co_pqueue_join(co_pqueue_t *q, int64_t deadline)
{
    enter(q, "co_pqueue_join");
    int r = 0;
    while (q->unfinished > 0) {
        if (r) break;
        if (deadline == 0) {
            r = ETIMEDOUT;
            break;
        }
        q->joiners++;
        unsigned seen = __atomic_load_n(&q->done, __ATOMIC_RELAXED);
        leave(q);
        r = co__pwait(&q->done, seen, deadline, true, "co_pqueue_join");
        enter(q, "co_pqueue_join");
        q->joiners--;
    }
    if (q->unfinished == 0) r = 0;
    leave(q);
    return r ? (errno = r, -1) : 0;
}

size_t co_pqueue_unfinished(const co_pqueue_t *q)
{
    return (size_t)__atomic_load_n(&q->unfinished, __ATOMIC_RELAXED);
}
