/* No lost wake-up: many coroutines on two hubs plus plain threads hammer
 * one lock, one semaphore, one condition and one bounded queue, with short
 * deadlines mixed in so that timeouts race with hand-offs.  Every count
 * must come out exact.  Run under TSan too. */
#include <pthread.h>

#include "cogent.h"
#include "harness.h"

#define CORO_PER_HUB 50
#define PLAIN        2
#define ROUNDS       500

static co_lock_t lock = CO_LOCK_INIT;
static co_sem_t sem = CO_SEM_INIT(3);
static co_cond_t cond = CO_COND_INIT(&lock);
static co_queue_t *q;
static long counter, in_sem, max_in_sem, tickets;
static long long produced, consumed;
static co_lock_t sum_lock = CO_LOCK_INIT;

static void work(intptr_t id)
{
    for (int i = 0; i < ROUNDS; i++) {
        /* lock, sometimes with a deadline that may expire */
        int64_t d = (i % 3 == 0) ? co_now() + 1 : -1;
        if (co_lock_acquire(&lock, d) == 0) {
            counter++;
            tickets++;
            co_cond_notify(&cond, 1);
            co_lock_release(&lock);
        } else {
            ASSERT_EQ(errno, ETIMEDOUT);
            i--; /* retry: the count must still come out exact */
            continue;
        }
        /* semaphore: never more than 3 inside */
        while (co_sem_acquire(&sem, (i % 2) ? co_now() + 1 : -1) < 0) ASSERT_EQ(errno, ETIMEDOUT);
        ASSERT_EQ(co_lock_acquire(&sum_lock, -1), 0);
        in_sem++;
        if (in_sem > max_in_sem) max_in_sem = in_sem;
        co_lock_release(&sum_lock);
        if (id % 2 == 0 && id < 300) co_yield_now(); /* coroutines only: ids 300+ are plain threads */
        ASSERT_EQ(co_lock_acquire(&sum_lock, -1), 0);
        in_sem--;
        co_lock_release(&sum_lock);
        ASSERT_EQ(co_sem_release(&sem), 0);
        /* queue: put a value, get one back (maybe another's) */
        while (co_queue_put(q, (void *)(intptr_t)(id * 1000 + i + 1), (i % 4) ? -1 : co_now() + 1) < 0)
            ASSERT_EQ(errno, ETIMEDOUT);
        ASSERT_EQ(co_lock_acquire(&sum_lock, -1), 0);
        produced += id * 1000 + i + 1;
        co_lock_release(&sum_lock);
        void *it;
        while (co_queue_get(q, &it, (i % 5) ? -1 : co_now() + 1) < 0) ASSERT_EQ(errno, ETIMEDOUT);
        ASSERT_EQ(co_lock_acquire(&sum_lock, -1), 0);
        consumed += (intptr_t)it;
        co_lock_release(&sum_lock);
        /* condition: take a ticket when one is there */
        ASSERT_EQ(co_lock_acquire(&lock, -1), 0);
        while (tickets == 0) ASSERT_EQ(co_cond_wait(&cond, -1), 0);
        tickets--;
        co_lock_release(&lock);
    }
}

static void *coro(void *arg)
{
    work((intptr_t)arg);
    return NULL;
}

static void *hub_thread(void *arg)
{
    intptr_t base = (intptr_t)arg;
    co_coro_t *cs[CORO_PER_HUB];
    for (intptr_t i = 0; i < CORO_PER_HUB; i++) cs[i] = co_spawn(coro, (void *)(base + i));
    ASSERT_EQ(co_joinall(cs, CORO_PER_HUB, -1, NULL), 0);
    return NULL;
}

static void *plain(void *arg)
{
    work((intptr_t)arg);
    return NULL;
}

static void test_no_lost_wakeup(void)
{
    co_queue_opts_t o = {.maxsize = 8};
    q = co_queue_new(&o);
    pthread_t other, p[PLAIN];
    ASSERT_EQ(pthread_create(&other, NULL, hub_thread, (void *)100), 0);
    for (intptr_t i = 0; i < PLAIN; i++) ASSERT_EQ(pthread_create(&p[i], NULL, plain, (void *)(300 + i)), 0);
    hub_thread((void *)200);
    pthread_join(other, NULL);
    for (int i = 0; i < PLAIN; i++) pthread_join(p[i], NULL);
    long actors = 2 * CORO_PER_HUB + PLAIN;
    ASSERT_EQ(counter, actors * ROUNDS);
    ASSERT_EQ(tickets, 0);
    ASSERT(max_in_sem <= 3 && max_in_sem >= 1);
    ASSERT_EQ(co_sem_value(&sem), 3);
    ASSERT_EQ(produced, consumed);
    ASSERT(co_queue_empty(q));
    ASSERT(!co_lock_locked(&lock));
    co_queue_free(q, NULL);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_no_lost_wakeup);
    return TEST_MAIN_END();
}
