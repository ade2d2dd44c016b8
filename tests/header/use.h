/* Uses every kind of declaration in cogent.h: the macros that record the
 * caller's place, the static initialisers, the option structs.  Compiled
 * as C11 (-pedantic) and as C++11, C++17 and C++20 by header_check.sh. */
#include <cogent.h>
#include <stdint.h>
#include <stdio.h>

static co_lock_t lock_a = CO_LOCK_INIT;
static co_lock_t lock_b = CO_LOCK_INIT_NAMED("b");
static co_rlock_t rlock_a = CO_RLOCK_INIT;
static co_rlock_t rlock_b = CO_RLOCK_INIT_NAMED("rb");
static co_sem_t sem = CO_SEM_INIT(2);
static co_sem_t bsem = CO_BSEM_INIT(1);
static co_event_t event = CO_EVENT_INIT;
static co_cond_t cond = CO_COND_INIT(&lock_a);
static co_barrier_t barrier = CO_BARRIER_INIT(1);

static void *task(void *arg)
{
    co_yield_now();
    co_sleep_ms(1);
    return arg;
}

static int use_everything(void)
{
    co_spawn_opts_t opts = {0, "named", CO_COMPACT_YES};
    co_coro_t *a = co_spawn(task, (void *)(intptr_t)1);
    co_coro_t *b = co_spawn_with(task, (void *)(intptr_t)2, &opts);
    co_group_t *g = co_group_new(2);
    co_coro_t *c = co_group_spawn(g, task, (void *)(intptr_t)3, -1);
    co_coro_t *d = co_group_spawn_with(g, task, (void *)(intptr_t)4, -1, &opts);
    void *r[2];
    co_coro_t *both[2] = {a, b};
    if (co_joinall(both, 2, co_now() + 1000, r) != 0 || (intptr_t)r[0] + (intptr_t)r[1] != 3) return 1;
    if (!c || !d || co_group_join(g, -1) != 0) return 2;
    co_group_free(g);
    if (co_lock_acquire(&lock_a, -1) != 0) return 3;
    co_lock_release(&lock_a);
    if (co_lock_acquire(&lock_b, 0) != 0) return 4;
    co_lock_release(&lock_b);
    if (co_rlock_acquire(&rlock_a, -1) != 0 || co_rlock_acquire(&rlock_a, -1) != 0) return 5;
    co_rlock_release(&rlock_a);
    co_rlock_release(&rlock_a);
    if (co_rlock_acquire(&rlock_b, -1) != 0) return 6;
    co_rlock_release(&rlock_b);
    if (co_sem_acquire(&sem, 0) != 0 || co_sem_release(&sem) != 0) return 7;
    if (co_sem_acquire(&bsem, 0) != 0 || co_sem_release(&bsem) != 0) return 8;
    co_event_set(&event);
    if (co_event_wait(&event, 0) != 0) return 9;
    (void)cond;
    if (co_barrier_wait(&barrier, -1) != 0) return 10;
    co_fiber_opts_t fo = {0};
    co_gen_opts_t go = {0};
    (void)fo;
    (void)go;
    co_queue_opts_t qo = {CO_QUEUE_FIFO, 4, NULL, NULL};
    co_queue_t *q = co_queue_new(&qo);
    if (!q || co_queue_put(q, (void *)&qo, -1) != 0) return 11;
    void *item;
    if (co_queue_get(q, &item, -1) != 0 || item != (void *)&qo) return 12;
    co_queue_free(q, NULL);
    return 0;
}
