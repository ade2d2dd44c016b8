/* The one fork path (src/fork.c): fork() from inside a coroutine while
 * the process is busy -- another thread with its own hub and coroutines,
 * helper threads (offload workers, the signal dispatcher, the monitor, the
 * dumper), a lock held by another thread, a lock held by the forker --
 * and then use every module in the child.  Nothing may hang: the parent
 * gives the child a deadline and kills it if it runs over. */
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "cogent.h"
#include "harness.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "child: %s:%d: %s (errno %d)\n", __FILE__, __LINE__, #cond, errno);                        \
            _exit(10);                                                                                                 \
        }                                                                                                              \
    } while (0)

static co_lock_t held_elsewhere = CO_LOCK_INIT_NAMED("held by the other thread");
static co_lock_t held_here = CO_LOCK_INIT_NAMED("held by the forker");
static co_event_t other_ready, other_stop;

/* Another thread with a hub: coroutines parked in sleeps and on an event,
 * and a lock held across the fork. */
static void *napper(void *arg)
{
    co_sleep_ms((intptr_t)arg);
    return arg;
}
static void *other_thread(void *unused)
{
    (void)unused;
    co_coro_t *c[4];
    for (intptr_t i = 0; i < 4; i++) c[i] = co_spawn(napper, (void *)(10000 + i));
    co_lock_acquire(&held_elsewhere, -1);
    co_event_set(&other_ready);
    co_event_wait(&other_stop, -1);
    co_lock_release(&held_elsewhere);
    for (int i = 0; i < 4; i++) co_kill(c[i]);
    co_joinall(c, 4, -1, NULL);
    return NULL;
}

/* ---------------------------------------------------------- the child */

static void *gen_body(co_gen_t *g, void *arg)
{
    for (intptr_t i = 0; i < (intptr_t)arg; i++) co_gen_yield(g, (void *)i, NULL);
    return (void *)-1;
}
static void *add(void *arg)
{
    co_yield_now();
    return (void *)((intptr_t)arg + 1);
}
static void *echo_once(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[16];
    ssize_t n = co_read(fd, b, sizeof b, co_now() + 2000);
    if (n > 0) co_write_all(fd, b, (size_t)n, NULL, co_now() + 2000);
    return (void *)n;
}
static void *sem_user(void *s)
{
    if (co_sem_acquire(s, co_now() + 2000) < 0) return (void *)-1;
    co_sem_release(s);
    return NULL;
}
static int handler(int fd, void *arg)
{
    (void)arg;
    char b[8];
    ssize_t n = co_read(fd, b, sizeof b, co_now() + 2000);
    if (n > 0) co_write_all(fd, b, (size_t)n, NULL, co_now() + 2000);
    return 0;
}
static void *thread_with_hub(void *q)
{
    void *item;
    if (co_queue_get(q, &item, co_now() + 2000) < 0) return NULL;
    co_coro_t *c = co_spawn(add, item);
    void *r = NULL;
    co_join(c, -1, &r);
    return r;
}

static void child_uses_everything(void)
{
    void *r;
    /* coroutines, timers, groups */
    co_coro_t *c = co_spawn(add, (void *)1);
    CHECK(co_join(c, co_now() + 2000, &r) == 0 && (intptr_t)r == 2);
    int64_t t0 = co_now();
    CHECK(co_sleep_ms(20) == 0 && co_now() - t0 >= 15);
    co_group_t *g = co_group_new(2);
    for (intptr_t i = 0; i < 5; i++) CHECK(co_group_spawn(g, add, (void *)i, co_now() + 2000));
    CHECK(co_group_join(g, co_now() + 2000) == 0);
    co_group_free(g);
    /* generators and fibers */
    co_gen_t *gen = co_gen_new(gen_body, (void *)3, NULL);
    int got = 0;
    while (co_gen_next(gen, &r) == 1) got++;
    CHECK(got == 3);
    co_gen_free(gen);
    /* locks: the forker's own lock is still its own; one held by a thread
     * that does not exist here stays held (docs/conventions.md) */
    co_lock_release(&held_here);
    CHECK(co_lock_acquire(&held_here, co_now() + 1000) == 0);
    co_lock_release(&held_here);
    CHECK(co_lock_acquire(&held_elsewhere, co_now() + 50) == -1 && errno == ETIMEDOUT);
    co_rlock_t rl = CO_RLOCK_INIT;
    CHECK(co_rlock_acquire(&rl, -1) == 0 && co_rlock_acquire(&rl, -1) == 0);
    co_rlock_release(&rl);
    co_rlock_release(&rl);
    co_sem_t sem = CO_SEM_INIT(1);
    co_coro_t *s1 = co_spawn(sem_user, &sem), *s2 = co_spawn(sem_user, &sem);
    CHECK(co_join(s1, -1, &r) == 0 && r == NULL && co_join(s2, -1, &r) == 0 && r == NULL);
    co_barrier_t bar = CO_BARRIER_INIT(1);
    CHECK(co_barrier_wait(&bar, 0) == 0);
    co_event_t ev = CO_EVENT_INIT;
    co_event_set(&ev);
    CHECK(co_event_wait(&ev, 0) == 0);
    /* queues, and a new thread with its own hub */
    co_queue_t *q = co_queue_new(NULL);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_with_hub, q) == 0);
    CHECK(co_queue_put(q, (void *)41, -1) == 0);
    CHECK(pthread_join(t, &r) == 0 && (intptr_t)r == 42);
    co_queue_free(q, NULL);
    /* cooperative I/O and poll */
    int sv[2];
    CHECK(co_socketpair(sv) == 0);
    co_coro_t *e = co_spawn(echo_once, (void *)(intptr_t)sv[1]);
    CHECK(co_write_all(sv[0], "ping", 4, NULL, co_now() + 2000) == 0);
    struct pollfd p = {.fd = sv[0], .events = POLLIN};
    CHECK(co_poll(&p, 1, co_now() + 2000) == 1);
    char b[8];
    CHECK(co_read(sv[0], b, sizeof b, co_now() + 2000) == 4 && !memcmp(b, "ping", 4));
    CHECK(co_join(e, -1, &r) == 0 && (intptr_t)r == 4);
    co_close(sv[0]);
    co_close(sv[1]);
    /* name lookups on the (restarted) offload pool, a server and a client */
    struct addrinfo *ai = NULL;
    CHECK(co_getaddrinfo("localhost", "80", NULL, &ai, co_now() + 3000) == 0 && ai);
    freeaddrinfo(ai);
    co_server_opts_t so = {.host = "127.0.0.1"};
    co_server_t *srv = co_server_new(handler, NULL, &so);
    CHECK(srv && co_server_start(srv) == 0);
    int fd = co_tcp_connect("127.0.0.1", co_server_port(srv), co_now() + 2000);
    CHECK(fd >= 0 && co_write_all(fd, "hi", 2, NULL, co_now() + 2000) == 0);
    CHECK(co_read(fd, b, sizeof b, co_now() + 2000) == 2);
    co_close(fd);
    CHECK(co_server_stop(srv, co_now() + 2000) >= 0);
    co_server_free(srv);
    /* signals: the dispatcher was restarted */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    raise(SIGUSR2);
    CHECK(co_signal_wait(&set, co_now() + 2000) == SIGUSR2);
    /* the dump lists this process's hubs only: ours (the other thread's is
     * gone) */
    int dp[2];
    CHECK(pipe(dp) == 0);
    CHECK(co_dump(dp[1]) == 0);
    close(dp[1]);
    char dump[4096];
    ssize_t n = read(dp[0], dump, sizeof dump - 1);
    close(dp[0]);
    CHECK(n > 0);
    dump[n] = '\0';
    CHECK(strstr(dump, "dump of 1 hub"));
}

static void *forker(void *unused)
{
    (void)unused;
    CHECK(co_lock_acquire(&held_here, -1) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        child_uses_everything();
        _exit(0);
    }
    co_lock_release(&held_here);
    return (void *)(intptr_t)pid;
}

static void test_fork_from_coroutine_busy_process(void)
{
    co_event_init(&other_ready);
    co_event_init(&other_stop);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, other_thread, NULL), 0);
    ASSERT_EQ(co_event_wait(&other_ready, co_now() + 5000), 0);

    void *r;
    /* The child uses a generator: the forker needs a stack of its own. */
    ASSERT_EQ(co_join(co_spawn_with(forker, NULL, &(co_spawn_opts_t){.compact = CO_COMPACT_NO}), -1, &r), 0);
    pid_t pid = (pid_t)(intptr_t)r;
    ASSERT(pid > 0);
    int st = 0;
    int64_t deadline = co_now() + 20000;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && co_now() < deadline) co_sleep_ms(10);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    ASSERT_(w == pid, "the child hung (killed after %d s)", 20);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);

    co_event_set(&other_stop);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    /* Helpers, started before the case (their pipes live as long as the
     * process): an offload worker (a lookup), the signal dispatcher, the
     * monitor, the dumper. */
    struct addrinfo *ai = NULL;
    ASSERT_EQ(co_getaddrinfo("localhost", NULL, NULL, &ai, co_now() + 3000), 0);
    freeaddrinfo(ai);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    ASSERT_ERR(co_signal_wait(&set, 0), EAGAIN);
    ASSERT_EQ(co_monitor_start(10000), 0);
    ASSERT_EQ(co_dump_on_signal(SIGQUIT), 0);
    RUN(test_fork_from_coroutine_busy_process);
    return TEST_MAIN_END();
}
