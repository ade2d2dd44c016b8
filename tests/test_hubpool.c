/* Hub pools (co_hubpool_*): coroutines spawned on a chosen hub or the
 * least loaded one, joined and killed from anywhere, talking across hubs
 * through a queue; freeing the pool ends what still runs. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cogent.h"
#include "harness.h"

static void *my_tid(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)co_thread_id(co_thread_current());
}

static void *nap_tid(void *arg)
{
    co_sleep_ms((intptr_t)arg);
    return my_tid(NULL);
}

static void test_spawn_on_chosen_hub(void)
{
    co_hubpool_t *hp = co_hubpool_new(3, &(co_hubpool_opts_t){.name = "hp"});
    ASSERT(hp != NULL);
    ASSERT_EQ(co_hubpool_size(hp), 3);
    pid_t tids[3];
    for (int i = 0; i < 3; i++) {
        void *r;
        co_coro_t *c = co_hubpool_spawn(hp, i, my_tid, NULL);
        ASSERT(c != NULL);
        ASSERT_EQ(co_join(c, -1, &r), 0);
        tids[i] = (pid_t)(intptr_t)r;
        ASSERT(tids[i] > 0 && tids[i] != getpid());
    }
    ASSERT(tids[0] != tids[1] && tids[1] != tids[2] && tids[0] != tids[2]);
    /* The same hub, the same thread. */
    void *r;
    ASSERT_EQ(co_join(co_hubpool_spawn(hp, 1, my_tid, NULL), -1, &r), 0);
    ASSERT_EQ((pid_t)(intptr_t)r, tids[1]);
    /* Its threads are named after the pool. */
    co_thread_t *l[64];
    size_t n = co_thread_enumerate(l, 64);
    int named = 0;
    for (size_t i = 0; i < n && i < 64; i++) {
        named += !strncmp(co_thread_name(l[i]), "hp_", 3);
        co_thread_free(l[i]);
    }
    ASSERT_EQ(named, 3);
    ASSERT_ERR(co_hubpool_spawn(hp, 3, my_tid, NULL), EINVAL);
    ASSERT_ERR(co_hubpool_spawn(hp, -2, my_tid, NULL), EINVAL);
    ASSERT_ERR(co_hubpool_spawn(hp, 0, NULL, NULL), EINVAL);
    co_hubpool_free(hp);
    co_hubpool_free(NULL);
}

/* -1: the hub with the fewest live coroutines; sleepers pile up evenly
 * (they sleep long enough that none ends while the others are spawned). */
static void test_least_loaded(void)
{
    co_hubpool_t *hp = co_hubpool_new(2, NULL);
    enum { N = 10 };
    co_coro_t *cs[N];
    for (int i = 0; i < N; i++) cs[i] = co_hubpool_spawn(hp, -1, nap_tid, (void *)(intptr_t)500);
    pid_t first = 0;
    int on_first = 0;
    for (int i = 0; i < N; i++) {
        void *r;
        ASSERT_EQ(co_join(cs[i], -1, &r), 0);
        if (!first) first = (pid_t)(intptr_t)r;
        on_first += (pid_t)(intptr_t)r == first;
    }
    ASSERT_EQ(on_first, N / 2);
    co_hubpool_free(hp);
}

/* Spawned from a coroutine (which parks meanwhile), killed from here. */
static void *forever(void *arg)
{
    (void)arg;
    if (co_sleep_ms(1000000) < 0) return (void *)(intptr_t)-errno;
    return NULL;
}

static void *spawn_from_coroutine(void *arg)
{
    return co_hubpool_spawn(arg, 0, forever, NULL);
}

static void test_kill_and_join_from_anywhere(void)
{
    co_hubpool_t *hp = co_hubpool_new(2, NULL);
    void *c;
    ASSERT_EQ(co_join(co_spawn(spawn_from_coroutine, hp), -1, &c), 0);
    ASSERT(c != NULL);
    ASSERT_ERR(co_join(c, co_now() + 20, NULL), ETIMEDOUT);
    co_kill(c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    co_hubpool_free(hp);
}

/* Freeing the pool ends what still runs: killed, run to its end. */
static void test_free_ends_coroutines(void)
{
    co_hubpool_t *hp = co_hubpool_new(2, NULL);
    co_coro_t *a = co_hubpool_spawn(hp, 0, forever, NULL);
    co_coro_t *b = co_hubpool_spawn(hp, 1, forever, NULL);
    co_sleep_ms(5);
    co_hubpool_free(hp);
    void *r;
    ASSERT(co_finished(a) && co_finished(b));
    ASSERT_EQ(co_join(a, 0, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    ASSERT_EQ(co_join(b, 0, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
}

/* Producers on one hub, consumers on the other, a queue between. */
static co_queue_t *q;
static atomic_long sum;

static void *producer(void *arg)
{
    for (intptr_t i = 1; i <= 1000; i++) co_queue_put(q, (void *)i, -1);
    return arg;
}

static void *consumer(void *arg)
{
    void *it;
    while (co_queue_get(q, &it, -1) == 0) sum += (intptr_t)it;
    return arg;
}

static void test_queue_across_hubs(void)
{
    co_hubpool_t *hp = co_hubpool_new(2, NULL);
    q = co_queue_new(&(co_queue_opts_t){.maxsize = 16});
    sum = 0;
    co_coro_t *cons[3], *prod[4];
    for (int i = 0; i < 3; i++) cons[i] = co_hubpool_spawn(hp, 1, consumer, NULL);
    for (int i = 0; i < 4; i++) prod[i] = co_hubpool_spawn(hp, 0, producer, NULL);
    ASSERT_EQ(co_joinall(prod, 4, -1, NULL), 0);
    co_queue_close(q);
    ASSERT_EQ(co_joinall(cons, 3, -1, NULL), 0);
    ASSERT_EQ(sum, 4 * 1000 * 1001 / 2);
    co_queue_free(q, NULL);
    co_hubpool_free(hp);
}

/* Many threads spawn at once: every handle comes back, every count is
 * exact. */
static co_hubpool_t *shp;

static void *one(void *arg)
{
    return arg;
}

static void *spawner(void *arg)
{
    long s = 0;
    for (intptr_t i = 0; i < 200; i++) {
        void *r;
        co_coro_t *c = co_hubpool_spawn(shp, (int)(i % 3) - 1, one, (void *)i);
        if (!c || co_join(c, -1, &r) < 0) return (void *)-1;
        s += (long)(intptr_t)r;
    }
    return (void *)s;
}

static void test_stress(void)
{
    shp = co_hubpool_new(2, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, spawner, NULL);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        ASSERT_EQ((long)(intptr_t)r, 199L * 200 / 2);
    }
    co_hubpool_free(shp);
}

/* A server on every hub: connections spread over the hubs (SO_REUSEPORT),
 * each handled on the hub that accepted it. */
static int tid_echo(int fd, void *arg)
{
    (void)arg;
    char c;
    if (co_read(fd, &c, 1, co_now() + 5000) != 1) return EIO;
    int32_t tid = (int32_t)co_thread_id(co_thread_current());
    return co_write_all(fd, &tid, sizeof tid, NULL, co_now() + 5000) < 0 ? errno : 0;
}

static void test_server_on_every_hub(void)
{
    co_hubpool_t *hp = co_hubpool_new(2, NULL);
    ASSERT_ERR(co_hubpool_serve(hp, tid_echo, NULL, &(co_server_opts_t){.host = "/tmp/x", .unix_socket = true}),
               EINVAL);
    co_hubserver_t *hs = co_hubpool_serve(hp, tid_echo, NULL, &(co_server_opts_t){.host = "127.0.0.1"});
    ASSERT(hs != NULL);
    int port = co_hubserver_port(hs);
    ASSERT(port > 0);
    enum { N = 40 };
    int32_t tids[N];
    for (int i = 0; i < N; i++) {
        int fd = co_tcp_connect("127.0.0.1", port, co_now() + 5000);
        ASSERT(fd >= 0);
        ASSERT_EQ(co_write(fd, "x", 1, co_now() + 5000), 1);
        ASSERT_EQ(co_read(fd, &tids[i], sizeof tids[i], co_now() + 5000), (ssize_t)sizeof tids[i]);
        co_close(fd);
    }
    int other = 0;
    for (int i = 0; i < N; i++) {
        ASSERT(tids[i] > 0 && tids[i] != getpid());
        other += tids[i] != tids[0];
    }
    ASSERT(other > 0 && other < N); /* both hubs served (40 connections hashed over 2 listeners) */
    co_server_stats_t st;
    for (int i = 0; i < 1000; i++) {
        co_hubserver_stats(hs, &st);
        if (st.closed == N) break;
        co_sleep_ms(1);
    }
    ASSERT_EQ(st.accepted, N);
    ASSERT_EQ(st.closed, N);
    ASSERT_EQ(st.errors, 0);
    ASSERT_EQ(co_hubserver_stop(hs, co_now() + 1000), 0);
    co_hubserver_free(hs);
    co_hubpool_free(hp);
}

/* At the program's exit a non-daemon hub pool's threads end once what
 * runs on them has finished; an idle pool never held exit up (it hung
 * for ever), nor does exit() called on one of its hubs. */
static void *finish_late(void *arg)
{
    (void)arg;
    co_sleep_ms(100);
    fputs("finished\n", stderr);
    return NULL;
}

static void *exit_on_pool(void *arg)
{
    (void)arg;
    exit(0);
}

static void exit_with_pool(void *arg)
{
    alarm(10); /* a hang is a failure, not a stuck test */
    int how = (int)(intptr_t)arg;
    co_hubpool_t *hp = co_hubpool_new(2, NULL);
    if (!hp) _exit(3);
    if (how == 1) co_detach(co_hubpool_spawn(hp, 1, finish_late, NULL));
    if (how == 2) {
        co_detach(co_hubpool_spawn(hp, 1, exit_on_pool, NULL));
        co_sleep_ms(20000);
        _exit(4);
    }
    exit(0);
}

static void test_exit_with_pool(void)
{
    char buf[256];
    int64_t t0 = co_now();
    int st = run_child(exit_with_pool, (void *)0, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_TIME(co_now() - t0, 0, 5000);
    st = run_child(exit_with_pool, (void *)1, buf, sizeof buf); /* what runs finishes first */
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(strstr(buf, "finished\n") != NULL);
    st = run_child(exit_with_pool, (void *)2, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_spawn_on_chosen_hub);
    RUN(test_least_loaded);
    RUN(test_kill_and_join_from_anywhere);
    RUN(test_free_ends_coroutines);
    RUN(test_queue_across_hubs);
    RUN(test_stress);
    RUN(test_server_on_every_hub);
    RUN(test_exit_with_pool);
    return TEST_MAIN_END();
}
