/* Pipes between processes: whole messages, big ones both ways without a
 * deadlock, deadlines, cancellation, committed sends, close and EOF,
 * one-way pipes, an end handed to a program. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "cogent.h"
#include "harness.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "child: %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__, #cond, errno, strerror(errno));    \
            return 10;                                                                                                 \
        }                                                                                                              \
    } while (0)

static char *self_path;

/* Starts fn(arg) in a child and returns its exit code after joining. */
static co_process_t *start(co_process_fn fn, void *arg)
{
    co_process_t *p = co_process_new(fn, arg, NULL);
    ASSERT(p);
    ASSERT_EQ(co_process_start(p), 0);
    return p;
}
static int finish(co_process_t *p)
{
    ASSERT_EQ(co_process_join(p, co_now() + 20000), 0);
    int code = co_process_exitcode(p);
    co_process_free(p);
    return code;
}

static void fill_pattern(char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) b[i] = (char)(seed + i * 31 + i / 977);
}
static bool check_pattern(const char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (char)(seed + i * 31 + i / 977)) return false;
    return true;
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* ------------------------------------------------------------- pipes */

static co_conn_t *ends[2];

static int echo_child(void *arg)
{
    (void)arg;
    co_conn_close(ends[0]);
    for (;;) {
        void *m;
        size_t n;
        if (co_conn_recv(ends[1], &m, &n, co_now() + 10000) < 0) return errno == EPIPE ? 0 : 11;
        int r = co_conn_send(ends[1], m, n, co_now() + 10000);
        free(m);
        CHECK(r == 0);
    }
}

static void test_pipe_ping_pong(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    co_process_t *p = start(echo_child, NULL);
    co_conn_close(ends[1]);
    for (int i = 0; i < 1000; i++) {
        char msg[64], back[64];
        int len = snprintf(msg, sizeof msg, "ping %d", i);
        ASSERT_EQ(co_conn_send(ends[0], msg, (size_t)len, co_now() + 5000), 0);
        ASSERT_EQ(co_conn_recv_into(ends[0], back, sizeof back, co_now() + 5000), len);
        ASSERT(!memcmp(msg, back, (size_t)len));
    }
    /* an empty message is a message */
    ASSERT_EQ(co_conn_send(ends[0], NULL, 0, co_now() + 5000), 0);
    size_t n = 99;
    void *m;
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 5000), 0);
    ASSERT_EQ(n, 0);
    free(m);
    co_conn_free(ends[0]); /* the child sees EPIPE and exits 0 */
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[1]);
}

static void test_pipe_one_mib_both_ways(void)
{
    /* The child echoes a 1 MiB message; then both sides send 1 MiB before
     * either receives: with plain blocking pipes, a deadlock. */
    ASSERT_EQ(co_pipe(ends, true), 0);
    co_process_t *p = start(echo_child, NULL);
    co_conn_close(ends[1]);
    size_t big = 1u << 20;
    char *b = malloc(big);
    fill_pattern(b, big, 1);
    ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 10000), 0);
    void *m;
    size_t n;
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, big);
    ASSERT(check_pattern(m, n, 1));
    free(m);
    /* Several at once: the child's sends wait while ours go out. */
    for (int i = 0; i < 4; i++) {
        fill_pattern(b, big, (unsigned)i + 2);
        ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 10000), 0);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 10000), 0);
        ASSERT_EQ(n, big);
        ASSERT(check_pattern(m, n, (unsigned)i + 2));
        free(m);
    }
    free(b);
    co_conn_free(ends[0]);
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[1]);
}

static int send_then_recv_child(void *arg)
{
    size_t big = (size_t)(uintptr_t)arg;
    co_conn_close(ends[0]);
    char *b = malloc(big);
    fill_pattern(b, big, 7);
    CHECK(co_conn_send(ends[1], b, big, co_now() + 10000) == 0);
    void *m;
    size_t n;
    CHECK(co_conn_recv(ends[1], &m, &n, co_now() + 10000) == 0);
    CHECK(n == big && check_pattern(m, n, 8));
    free(m);
    free(b);
    return 0;
}

static void test_pipe_symmetric_big_sends(void)
{
    size_t big = 4u << 20;
    ASSERT_EQ(co_pipe(ends, true), 0);
    co_process_t *p = start(send_then_recv_child, (void *)(uintptr_t)big);
    co_conn_close(ends[1]);
    char *b = malloc(big);
    fill_pattern(b, big, 8);
    ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 10000), 0);
    void *m;
    size_t n;
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, big);
    ASSERT(check_pattern(m, n, 7));
    free(m);
    free(b);
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void test_pipe_deadlines(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    void *m;
    size_t n;
    char buf[16];
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, 0), EAGAIN);
    ASSERT_ERR(co_conn_recv_into(ends[0], buf, sizeof buf, 0), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, co_now() + 50), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, co_now() - 10), ETIMEDOUT);
    ASSERT_EQ(co_conn_poll(ends[0], 0), 0);
    ASSERT_EQ(co_conn_poll(ends[0], co_now() + 20), 0);
    /* Fill the other direction: nobody reads ends[1]. */
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    int sent = 0;
    while (co_conn_send(ends[0], chunk, sizeof chunk, 0) == 0) sent++;
    ASSERT_EQ(errno, EAGAIN);
    ASSERT(sent > 0);
    t0 = co_now();
    ASSERT_ERR(co_conn_send(ends[0], chunk, 10, co_now() + 50), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    /* Every message sent arrives whole; the refused ones never do. */
    for (int i = 0; i < sent; i++) {
        ASSERT_EQ(co_conn_poll(ends[1], 0), 1);
        ASSERT_EQ(co_conn_recv_into(ends[1], chunk, sizeof chunk, 0), (ssize_t)sizeof chunk);
    }
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, 0), EAGAIN);
    /* recv_into with a small buffer: EMSGSIZE, the message stays */
    ASSERT_EQ(co_conn_send(ends[1], "0123456789", 10, 0), 0);
    ASSERT_ERR(co_conn_recv_into(ends[0], buf, 4, 0), EMSGSIZE);
    ASSERT_EQ(co_conn_recv_into(ends[0], buf, 10, 0), 10);
    ASSERT(!memcmp(buf, "0123456789", 10));
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void *send_after(void *arg)
{
    return (void *)(intptr_t)co_conn_send(arg, "after", 5, co_now() + 10000);
}

static void test_pipe_committed_send(void)
{
    /* A big send whose deadline passes after it started: committed (0),
     * its tail goes out ahead of the next message, nothing interleaves. */
    ASSERT_EQ(co_pipe(ends, true), 0);
    size_t big = 2u << 20;
    char *b = malloc(big);
    fill_pattern(b, big, 3);
    int64_t t0 = co_now();
    ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 50), 0);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    /* The tail cannot go out yet: the next send refuses, sending nothing. */
    ASSERT_ERR(co_conn_send(ends[0], "after", 5, 0), EAGAIN);
    void *m;
    size_t n;
    /* Only part of it is out: a receive times out, keeping what it read. */
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, co_now() + 50), ETIMEDOUT);
    ASSERT_EQ(co_conn_poll(ends[1], 0), 0);
    /* The next send flushes the tail first; meanwhile we receive. */
    co_coro_t *s = co_spawn(send_after, ends[0]);
    ASSERT_EQ(co_conn_recv(ends[1], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, big);
    ASSERT(check_pattern(m, n, 3));
    free(m);
    ASSERT_EQ(co_conn_recv(ends[1], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, 5);
    ASSERT(!memcmp(m, "after", 5));
    free(m);
    void *r;
    ASSERT_EQ(co_join(s, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 0);
    free(b);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void *receiver(void *arg)
{
    void *m;
    size_t n;
    int r = co_conn_recv(arg, &m, &n, -1);
    if (r == 0) free(m);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static atomic_int ticks;
static void *ticker(void *arg)
{
    (void)arg;
    while (co_sleep_ms(2) == 0) atomic_fetch_add(&ticks, 1);
    return NULL;
}

static void test_pipe_cancel_and_parking(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    atomic_store(&ticks, 0);
    co_coro_t *t = co_spawn(ticker, NULL);
    co_coro_t *r = co_spawn(receiver, ends[0]);
    co_sleep_ms(50);
    ASSERT(atomic_load(&ticks) > 5); /* the receiver parked only itself */
    co_kill(r);
    void *res;
    ASSERT_EQ(co_join(r, -1, &res), 0);
    ASSERT_EQ((intptr_t)res, ECANCELED);
    /* Half a message arrives, a receive gives up, the rest arrives: the
     * next receive gets it whole. */
    int fd = co_conn_fd(ends[1]);
    uint64_t len = 6;
    ASSERT_EQ(write(fd, &len, 8), 8);
    ASSERT_EQ(write(fd, "hal", 3), 3);
    void *m;
    size_t n;
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, co_now() + 30), ETIMEDOUT);
    ASSERT_EQ(write(fd, "ves", 3), 3);
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 1000), 0);
    ASSERT_EQ(n, 6);
    ASSERT(!memcmp(m, "halves", 6));
    free(m);
    co_kill(t);
    ASSERT_EQ(co_join(t, -1, NULL), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void *thread_echo(void *arg)
{
    co_conn_t *c = arg;
    void *m;
    size_t n;
    while (co_conn_recv(c, &m, &n, co_now() + 10000) == 0) {
        co_conn_send(c, m, n, co_now() + 10000);
        free(m);
    }
    return NULL;
}

static void test_pipe_close_and_eof(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    ASSERT_EQ(co_conn_send(ends[0], "last", 4, 0), 0);
    co_conn_close(ends[0]);
    ASSERT(co_conn_closed(ends[0]));
    co_conn_close(ends[0]); /* idempotent */
    ASSERT_ERR(co_conn_send(ends[0], "x", 1, 0), EPIPE);
    void *m;
    size_t n;
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, 0), EPIPE);
    /* the peer takes what was sent, then sees the close */
    ASSERT_EQ(co_conn_poll(ends[1], 0), 1);
    ASSERT_EQ(co_conn_recv(ends[1], &m, &n, 0), 0);
    free(m);
    ASSERT_EQ(co_conn_poll(ends[1], 0), 1);
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, co_now() + 1000), EPIPE);
    ASSERT_ERR(co_conn_send(ends[1], "x", 1, co_now() + 1000), EPIPE); /* no SIGPIPE */
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    co_conn_free(NULL);
    /* one-way */
    ASSERT_EQ(co_pipe(ends, false), 0);
    ASSERT_ERR(co_conn_send(ends[0], "x", 1, 0), EBADF);
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, 0), EBADF);
    ASSERT_ERR(co_conn_send(ends[1], NULL, 1, 0), EINVAL);
    ASSERT_EQ(co_conn_send(ends[1], "one way", 7, 0), 0);
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, 0), 0);
    ASSERT_EQ(n, 7);
    free(m);
    co_conn_close(ends[0]);
    ASSERT_ERR(co_conn_send(ends[1], "x", 1, 0), EPIPE); /* a pipe without a reader: no SIGPIPE */
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    /* a plain thread on the other end */
    ASSERT_EQ(co_pipe(ends, true), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, thread_echo, ends[1]), 0);
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(co_conn_send(ends[0], &i, sizeof i, co_now() + 5000), 0);
        int back;
        ASSERT_EQ(co_conn_recv_into(ends[0], &back, sizeof back, co_now() + 5000), (ssize_t)sizeof back);
        ASSERT_EQ(back, i);
    }
    co_conn_close(ends[0]);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

/* A program (this test, exec'd) that echoes on an inherited end. */
static int exec_echo_main(int fd)
{
    co_conn_t *c = co_conn_from_fd(fd);
    CHECK(c);
    void *m;
    size_t n;
    while (co_conn_recv(c, &m, &n, co_now() + 10000) == 0) {
        char *up = m;
        for (size_t i = 0; i < n; i++) up[i] = (char)(up[i] >= 'a' && up[i] <= 'z' ? up[i] - 32 : up[i]);
        CHECK(co_conn_send(c, up, n, co_now() + 10000) == 0);
        free(m);
    }
    co_conn_free(c);
    return 0;
}

static void test_pipe_end_handed_to_a_program(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", co_conn_fd(ends[1]));
    const char *argv[] = {self_path, "--exec-echo", fdarg, NULL};
    int keep = co_conn_fd(ends[1]);
    co_process_opts_t o = {.pass_fds = &keep, .npass_fds = 1};
    co_process_t *p = co_process_exec(argv, &o);
    ASSERT(p);
    co_conn_close(ends[1]);
    ASSERT_EQ(co_conn_send(ends[0], "hello", 5, co_now() + 5000), 0);
    char back[8];
    ASSERT_EQ(co_conn_recv_into(ends[0], back, sizeof back, co_now() + 5000), 5);
    ASSERT(!memcmp(back, "HELLO", 5));
    co_conn_close(ends[0]);
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    ASSERT_ERR(co_conn_from_fd(12345), EBADF);
}

/* ------------------------------------------------- process-shared objects */

#include <dirent.h>
#include <sys/mman.h>

static char shm_prefix[64]; /* "cogent-test-<pid>-": our names in /dev/shm */

static const char *shm_name(const char *what)
{
    static char names[8][128];
    static int next;
    char *n = names[next++ % 8];
    snprintf(n, 128, "%s%s", shm_prefix, what);
    return n;
}

/* A creation's temporary name (".cogent-<pid>-<n>", renamed into place
 * when done) is ours when made by this process or a child of it, or left
 * by a process that is gone; another program's live one is not (the test
 * suites run side by side). */
static bool temp_is_ours(const char *name)
{
    int pid;
    if (sscanf(name, ".cogent-%d-", &pid) != 1) return false;
    if (pid == (int)getpid()) return true;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f) return true; /* gone: a leak, whoever made it */
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *rp = strrchr(buf, ')'); /* the name may hold anything */
    int ppid = 0;
    if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1) return true;
    return ppid == (int)getpid();
}

static int shm_count(void)
{
    int n = 0;
    DIR *d = opendir("/dev/shm");
    ASSERT(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, shm_prefix, strlen(shm_prefix)) || temp_is_ours(de->d_name)) n++;
    closedir(d);
    return n;
}

static bool shm_exists(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return access(path, F_OK) == 0;
}

/* A shared scratch area children report through. */
typedef struct scratch {
    atomic_int inside, max_inside, entered;
    atomic_long sum;
    atomic_int ready;
    atomic_long last;
} scratch_t;
static scratch_t *scratch;

static void scratch_reset(void)
{
    memset(scratch, 0, sizeof *scratch);
}

/* ---- locks */

static co_plock_t *plock;

static int print_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        CHECK(co_plock_acquire(plock, co_now() + 10000) == 0);
        int in = atomic_fetch_add(&scratch->inside, 1) + 1;
        if (in > atomic_load(&scratch->max_inside)) atomic_store(&scratch->max_inside, in);
        atomic_fetch_add(&scratch->entered, 1);
        usleep(100);
        atomic_fetch_sub(&scratch->inside, 1);
        co_plock_release(plock);
    }
    return 0;
}

static void test_plock_excludes_processes(void)
{
    scratch_reset();
    plock = co_plock_new(NULL);
    ASSERT(plock);
    co_process_t *p[5];
    for (int i = 0; i < 5; i++) p[i] = start(print_worker, NULL);
    for (int i = 0; i < 5; i++) ASSERT_EQ(finish(p[i]), 0);
    ASSERT_EQ(atomic_load(&scratch->max_inside), 1);
    ASSERT_EQ(atomic_load(&scratch->entered), 100);
    ASSERT(!co_plock_locked(plock));
    co_plock_free(plock);
}

static int hold_lock_forever(void *arg)
{
    co_plock_t *l = arg;
    CHECK(co_plock_acquire(l, -1) == 0);
    atomic_store(&scratch->ready, 1);
    for (;;) pause();
}

static void *coro_acquire(void *arg)
{
    int r = co_plock_acquire(arg, co_now() + 10000);
    int e = r < 0 ? errno : 0;
    if (r == 0 || e == EOWNERDEAD) co_plock_release(arg);
    return (void *)(intptr_t)e;
}

static void *thread_acquire(void *arg)
{
    int r = co_plock_acquire(arg, co_now() + 10000);
    int e = r < 0 ? errno : 0;
    if (r == 0 || e == EOWNERDEAD) co_plock_release(arg);
    return (void *)(intptr_t)e;
}

static void test_plock_deadlines_and_owner(void)
{
    scratch_reset();
    co_plock_t *l = co_plock_new(NULL);
    ASSERT_EQ(co_plock_acquire(l, 0), 0);
    ASSERT(co_plock_locked(l));
    ASSERT_ERR(co_plock_acquire(l, 0), EAGAIN);
    ASSERT_ERR(co_plock_acquire(l, co_now() + 20), EDEADLK); /* the caller holds it */
    co_plock_release(l);
    ASSERT(!co_plock_locked(l));
    co_process_t *h = start(hold_lock_forever, l);
    while (!atomic_load(&scratch->ready)) usleep(1000);
    ASSERT_ERR(co_plock_acquire(l, 0), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_plock_acquire(l, co_now() + 50), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    ASSERT_ERR(co_plock_acquire(l, co_now() - 1), ETIMEDOUT);
    /* A coroutine waiting is killed: ECANCELED. */
    co_coro_t *c = co_spawn(coro_acquire, l);
    co_sleep_ms(20);
    co_kill(c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    /* The holder dies while a coroutine and a thread wait: one of them
     * gets EOWNERDEAD, the other the lock after it. */
    co_coro_t *w1 = co_spawn(coro_acquire, l);
    pthread_t w2;
    ASSERT_EQ(pthread_create(&w2, NULL, thread_acquire, l), 0);
    co_sleep_ms(30);
    co_process_kill(h);
    ASSERT_EQ(finish(h), -SIGKILL);
    void *r1, *r2;
    ASSERT_EQ(co_join(w1, -1, &r1), 0);
    ASSERT_EQ(pthread_join(w2, &r2), 0);
    ASSERT((intptr_t)r1 + (intptr_t)r2 == EOWNERDEAD);
    ASSERT((intptr_t)r1 == 0 || (intptr_t)r2 == 0);
    ASSERT(!co_plock_locked(l));
    ASSERT_EQ(co_plock_acquire(l, 0), 0); /* usable as before */
    co_plock_release(l);
    co_plock_free(l);
}

static void release_not_held(void *arg)
{
    co_plock_release(arg);
}

/* A child's main code takes the lock before its hub exists, sleeps (the
 * hub is made then), and releases it: still its holder. */
static co_plock_t *hubless_lock;
static int acquire_sleep_release(void *arg)
{
    (void)arg;
    CHECK(co_plock_acquire(hubless_lock, co_now() + 10000) == 0);
    CHECK(co_sleep_ms(5) == 0);
    co_plock_release(hubless_lock);
    return 0;
}
static void test_plock_owner_across_hub_creation(void)
{
    ASSERT((hubless_lock = co_plock_new(NULL)));
    for (int i = 0; i < 3; i++) ASSERT_EQ(finish(start(acquire_sleep_release, NULL)), 0);
    ASSERT(!co_plock_locked(hubless_lock));
    co_plock_free(hubless_lock);
}

static void test_plock_release_by_non_owner_aborts(void)
{
    co_plock_t *l = co_plock_new(NULL);
    char buf[512];
    int st = run_child(release_not_held, l, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "not held by the caller"));
    co_plock_free(l);
}

static int rlock_worker(void *arg)
{
    co_prlock_t *r = arg;
    for (int i = 0; i < 50; i++) {
        CHECK(co_prlock_acquire(r, co_now() + 10000) == 0);
        CHECK(co_prlock_acquire(r, co_now() + 10000) == 0);
        CHECK(co_prlock_count(r) == 2);
        int in = atomic_fetch_add(&scratch->inside, 1) + 1;
        if (in > atomic_load(&scratch->max_inside)) atomic_store(&scratch->max_inside, in);
        atomic_fetch_sub(&scratch->inside, 1);
        co_prlock_release(r);
        co_prlock_release(r);
    }
    return 0;
}

static int rlock_die_holding(void *arg)
{
    co_prlock_t *r = arg;
    co_prlock_acquire(r, -1);
    co_prlock_acquire(r, -1);
    _exit(0); /* dies holding two levels */
}

static void test_prlock(void)
{
    scratch_reset();
    co_prlock_t *r = co_prlock_new(NULL);
    ASSERT_EQ(co_prlock_count(r), 0);
    co_process_t *p[3];
    for (int i = 0; i < 3; i++) p[i] = start(rlock_worker, r);
    for (int i = 0; i < 3; i++) ASSERT_EQ(finish(p[i]), 0);
    ASSERT_EQ(atomic_load(&scratch->max_inside), 1);
    ASSERT_EQ(finish(start(rlock_die_holding, r)), 0);
    ASSERT_ERR(co_prlock_acquire(r, co_now() + 5000), EOWNERDEAD);
    ASSERT_EQ(co_prlock_count(r), 1);
    co_prlock_release(r);
    ASSERT_EQ(co_prlock_count(r), 0);
    co_prlock_free(r);
}

/* ---- semaphores, events, conditions, barriers */

static int sem_worker(void *arg)
{
    co_psem_t *s = arg;
    for (int i = 0; i < 20; i++) {
        CHECK(co_psem_acquire(s, co_now() + 10000) == 0);
        int in = atomic_fetch_add(&scratch->inside, 1) + 1;
        if (in > atomic_load(&scratch->max_inside)) atomic_store(&scratch->max_inside, in);
        usleep(200);
        atomic_fetch_sub(&scratch->inside, 1);
        CHECK(co_psem_release(s) == 0);
    }
    return 0;
}

static void test_psem(void)
{
    scratch_reset();
    co_psem_t *s = co_psem_new(2, true, NULL);
    ASSERT_EQ(co_psem_value(s), 2);
    ASSERT_ERR(co_psem_release(s), EINVAL); /* bounded */
    co_process_t *p[4];
    for (int i = 0; i < 4; i++) p[i] = start(sem_worker, s);
    for (int i = 0; i < 4; i++) ASSERT_EQ(finish(p[i]), 0);
    ASSERT(atomic_load(&scratch->max_inside) <= 2);
    ASSERT_EQ(co_psem_value(s), 2);
    ASSERT_EQ(co_psem_acquire(s, 0), 0);
    ASSERT_EQ(co_psem_acquire(s, 0), 0);
    ASSERT_ERR(co_psem_acquire(s, 0), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_psem_acquire(s, co_now() + 50), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    ASSERT_EQ(co_psem_release(s), 0);
    ASSERT_EQ(co_psem_release(s), 0);
    co_psem_free(s);
    ASSERT_ERR(co_psem_new(-1, false, NULL), EINVAL);
    s = co_psem_new(0, false, NULL);
    ASSERT_EQ(co_psem_release(s), 0); /* unbounded */
    ASSERT_EQ(co_psem_release(s), 0);
    ASSERT_EQ(co_psem_value(s), 2);
    co_psem_free(s);
}

static co_pevent_t *ev_go, *ev_done;

static int event_child(void *arg)
{
    (void)arg;
    CHECK(co_pevent_wait(ev_go, co_now() + 10000) == 0);
    co_pevent_set(ev_done);
    return 0;
}

static void test_pevent(void)
{
    ev_go = co_pevent_new(NULL);
    ev_done = co_pevent_new(NULL);
    ASSERT(!co_pevent_is_set(ev_go));
    ASSERT_ERR(co_pevent_wait(ev_go, 0), ETIMEDOUT);
    ASSERT_ERR(co_pevent_wait(ev_go, co_now() + 20), ETIMEDOUT);
    co_process_t *p = start(event_child, NULL);
    atomic_store(&ticks, 0);
    co_coro_t *t = co_spawn(ticker, NULL);
    co_sleep_ms(30);
    co_pevent_set(ev_go);
    ASSERT_EQ(co_pevent_wait(ev_done, co_now() + 10000), 0); /* parks only this coroutine */
    ASSERT(atomic_load(&ticks) > 3);
    ASSERT_EQ(finish(p), 0);
    co_pevent_clear(ev_go);
    ASSERT(!co_pevent_is_set(ev_go));
    co_kill(t);
    co_join(t, -1, NULL);
    co_pevent_free(ev_go);
    co_pevent_free(ev_done);
}

static co_pcond_t *pcond;
static co_pvalue_t *pval;

static int cond_child(void *arg)
{
    (void)arg;
    int64_t *v = co_pvalue_data(pval);
    co_plock_t *l = co_pcond_lock(pcond);
    CHECK(co_plock_acquire(l, co_now() + 10000) == 0);
    atomic_fetch_add(&scratch->ready, 1);
    while (v[0] == 0) CHECK(co_pcond_wait(pcond, co_now() + 10000) == 0);
    atomic_fetch_add(&scratch->entered, 1);
    co_plock_release(l);
    return 0;
}

static void test_pcond(void)
{
    scratch_reset();
    pcond = co_pcond_new(NULL);
    pval = co_pvalue_new(sizeof(int64_t), 1, NULL);
    co_plock_t *l = co_pcond_lock(pcond);
    co_process_t *p[3];
    for (int i = 0; i < 3; i++) p[i] = start(cond_child, NULL);
    while (atomic_load(&scratch->ready) < 3) co_sleep_ms(1);
    ASSERT_EQ(co_plock_acquire(l, co_now() + 5000), 0);
    /* all three wait now (they took the lock in turn and released it in wait) */
    ASSERT_EQ(co_pcond_notify(pcond, 1), 1); /* v is still 0: that one waits again */
    ((int64_t *)co_pvalue_data(pval))[0] = 1;
    ASSERT_EQ(co_pcond_notify_all(pcond), 2);
    co_plock_release(l);
    for (int i = 0; i < 3; i++) ASSERT_EQ(finish(p[i]), 0);
    ASSERT_EQ(atomic_load(&scratch->entered), 3);
    /* a wait that times out comes back holding the lock */
    ASSERT_EQ(co_plock_acquire(l, 0), 0);
    int64_t t0 = co_now();
    ASSERT_ERR(co_pcond_wait(pcond, co_now() + 30), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 20, 1000);
    ASSERT(co_plock_locked(l));
    ASSERT_EQ(co_pcond_notify(pcond, 5), 0);
    co_plock_release(l);
    co_pcond_free(pcond);
    co_pvalue_free(pval);
}

static co_pbarrier_t *pbar;

static int barrier_child(void *arg)
{
    (void)arg;
    for (int round = 0; round < 5; round++) {
        int r = co_pbarrier_wait(pbar, co_now() + 10000);
        CHECK(r >= 0 && r < 3);
        atomic_fetch_add(&scratch->sum, r);
    }
    return 0;
}

static void test_pbarrier(void)
{
    scratch_reset();
    pbar = co_pbarrier_new(3, NULL);
    ASSERT_ERR(co_pbarrier_new(0, NULL), EINVAL);
    co_process_t *p[2];
    for (int i = 0; i < 2; i++) p[i] = start(barrier_child, NULL);
    for (int round = 0; round < 5; round++) {
        int r = co_pbarrier_wait(pbar, co_now() + 10000);
        ASSERT(r >= 0 && r < 3);
        atomic_fetch_add(&scratch->sum, r);
    }
    for (int i = 0; i < 2; i++) ASSERT_EQ(finish(p[i]), 0);
    ASSERT_EQ(atomic_load(&scratch->sum), 5 * (0 + 1 + 2));
    /* a wait that times out breaks it */
    ASSERT_ERR(co_pbarrier_wait(pbar, co_now() + 30), ETIMEDOUT);
    ASSERT(co_pbarrier_broken(pbar));
    ASSERT_ERR(co_pbarrier_wait(pbar, 0), EPIPE);
    co_pbarrier_reset(pbar);
    ASSERT(!co_pbarrier_broken(pbar));
    co_pbarrier_abort(pbar);
    ASSERT_ERR(co_pbarrier_wait(pbar, 0), EPIPE);
    co_pbarrier_free(pbar);
    co_pbarrier_t *one = co_pbarrier_new(1, NULL);
    ASSERT_EQ(co_pbarrier_wait(one, 0), 0);
    co_pbarrier_free(one);
}

/* ---- values */

static int value_adder(void *arg)
{
    co_pvalue_t *v = arg;
    int64_t *n = co_pvalue_data(v);
    for (int i = 0; i < 1000; i++) {
        CHECK(co_plock_acquire(co_pvalue_lock(v), co_now() + 10000) == 0);
        n[0] += 1; /* not atomic: the lock makes it right */
        co_plock_release(co_pvalue_lock(v));
    }
    return 0;
}

static void test_pvalue(void)
{
    co_pvalue_t *v = co_pvalue_new(sizeof(int64_t), 1, NULL);
    ASSERT_EQ(co_pvalue_count(v), 1);
    ASSERT_EQ(co_pvalue_elem_size(v), 8);
    ASSERT_EQ(((uintptr_t)co_pvalue_data(v)) % 64, 0);
    co_process_t *p[4];
    for (int i = 0; i < 4; i++) p[i] = start(value_adder, v);
    for (int i = 0; i < 4; i++) ASSERT_EQ(finish(p[i]), 0);
    ASSERT_EQ(((int64_t *)co_pvalue_data(v))[0], 4000);
    co_pvalue_free(v);
    co_pvalue_t *a = co_pvalue_new(sizeof(double), 10, NULL);
    double *d = co_pvalue_data(a);
    for (int i = 0; i < 10; i++) ASSERT(d[i] == 0.0);
    co_pvalue_free(a);
    ASSERT_ERR(co_pvalue_new(0, 1, NULL), EINVAL);
    ASSERT_ERR(co_pvalue_new(8, 0, NULL), EINVAL);
    ASSERT_ERR(co_pvalue_new(8, SIZE_MAX / 4, NULL), EINVAL);
}

/* ---- queues */

static co_pqueue_t *pq;

static int queue_producer(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "item %d", i);
        CHECK(co_pqueue_put(pq, msg, (size_t)len, co_now() + 10000) == 0);
    }
    return 0;
}

static void test_pqueue_across_processes(void)
{
    pq = co_pqueue_new(16, 64, NULL);
    co_process_t *p = start(queue_producer, (void *)10000);
    for (int i = 0; i < 10000; i++) {
        char buf[64], want[64];
        ssize_t n = co_pqueue_get(pq, buf, sizeof buf, co_now() + 10000);
        int len = snprintf(want, sizeof want, "item %d", i);
        ASSERT_EQ(n, len);
        ASSERT(!memcmp(buf, want, (size_t)len));
    }
    ASSERT_EQ(finish(p), 0);
    ASSERT(co_pqueue_empty(pq));
    co_pqueue_free(pq);
}

static void test_pqueue_errors(void)
{
    ASSERT_ERR(co_pqueue_new(0, 8, NULL), EINVAL);
    ASSERT_ERR(co_pqueue_new(8, 0, NULL), EINVAL);
    co_pqueue_t *q = co_pqueue_new(2, 8, NULL);
    ASSERT_EQ(co_pqueue_msgsize(q), 8);
    char buf[16];
    ASSERT_ERR(co_pqueue_put(q, "123456789", 9, 0), EMSGSIZE);
    ASSERT_ERR(co_pqueue_get(q, buf, sizeof buf, 0), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_pqueue_get(q, buf, sizeof buf, co_now() + 30), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 20, 1000);
    ASSERT_EQ(co_pqueue_put_nowait(q, "a", 1), 0);
    ASSERT_EQ(co_pqueue_put(q, "bb", 2, 0), 0);
    ASSERT(co_pqueue_full(q));
    ASSERT_EQ(co_pqueue_size(q), 2);
    ASSERT_ERR(co_pqueue_put_nowait(q, "c", 1), EAGAIN);
    ASSERT_ERR(co_pqueue_put(q, "c", 1, co_now() + 30), ETIMEDOUT);
    ASSERT_ERR(co_pqueue_get(q, buf, 0, 0), EMSGSIZE); /* it stays */
    ASSERT_EQ(co_pqueue_get_nowait(q, buf, sizeof buf), 1);
    ASSERT_EQ(buf[0], 'a');
    ASSERT_EQ(co_pqueue_put(q, NULL, 0, 0), 0); /* an empty message */
    ASSERT_EQ(co_pqueue_unfinished(q), 3);
    co_pqueue_close(q);
    ASSERT(co_pqueue_closed(q));
    ASSERT_ERR(co_pqueue_put(q, "x", 1, 0), EPIPE);
    ASSERT_EQ(co_pqueue_get(q, buf, sizeof buf, 0), 2); /* drained first */
    ASSERT_EQ(co_pqueue_get(q, buf, sizeof buf, 0), 0);
    ASSERT_ERR(co_pqueue_get(q, buf, sizeof buf, co_now() + 1000), EPIPE);
    for (int i = 0; i < 3; i++) ASSERT_EQ(co_pqueue_task_done(q), 0);
    ASSERT_ERR(co_pqueue_task_done(q), EINVAL);
    ASSERT_EQ(co_pqueue_join(q, 0), 0);
    co_pqueue_free(q);
}

static void *queue_getter(void *arg)
{
    char buf[64];
    ssize_t n = co_pqueue_get(arg, buf, sizeof buf, co_now() + 10000);
    return (void *)(intptr_t)(n < 0 ? -errno : n);
}

static void test_pqueue_many_coroutines_and_threads(void)
{
    /* 50 coroutines and 3 threads wait on one queue; a child feeds them. */
    pq = co_pqueue_new(4, 64, NULL);
    enum { NC = 50, NT = 3 };
    co_coro_t *c[NC];
    pthread_t t[NT];
    for (int i = 0; i < NC; i++) c[i] = co_spawn(queue_getter, pq);
    for (int i = 0; i < NT; i++) ASSERT_EQ(pthread_create(&t[i], NULL, queue_getter, pq), 0);
    co_sleep_ms(20);
    co_process_t *p = start(queue_producer, (void *)(intptr_t)(NC + NT));
    for (int i = 0; i < NC; i++) {
        void *r;
        ASSERT_EQ(co_join(c[i], -1, &r), 0);
        ASSERT((intptr_t)r > 0);
    }
    for (int i = 0; i < NT; i++) {
        void *r;
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT((intptr_t)r > 0);
    }
    ASSERT_EQ(finish(p), 0);
    /* a waiting getter killed: ECANCELED, and no message taken */
    co_coro_t *k = co_spawn(queue_getter, pq);
    co_sleep_ms(10);
    co_kill(k);
    void *r;
    ASSERT_EQ(co_join(k, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    ASSERT(co_pqueue_empty(pq));
    co_pqueue_free(pq);
}

static int joinable_consumer(void *arg)
{
    (void)arg;
    char buf[64];
    for (;;) {
        ssize_t n = co_pqueue_get(pq, buf, sizeof buf, -1);
        CHECK(n >= 0);
        atomic_fetch_add(&scratch->sum, 1);
        CHECK(co_pqueue_task_done(pq) == 0);
    }
}

static void test_pqueue_joinable_with_daemon_consumers(void)
{
    scratch_reset();
    pq = co_pqueue_new(8, 64, NULL);
    co_process_t *c[2];
    for (int i = 0; i < 2; i++) {
        c[i] = co_process_new(joinable_consumer, NULL, &(co_process_opts_t){.daemon = true});
        ASSERT_EQ(co_process_start(c[i]), 0);
    }
    for (int i = 0; i < 100; i++) ASSERT_EQ(co_pqueue_put(pq, "job", 3, co_now() + 10000), 0);
    ASSERT_EQ(co_pqueue_join(pq, co_now() + 10000), 0);
    ASSERT_EQ(atomic_load(&scratch->sum), 100);
    ASSERT_EQ(co_pqueue_unfinished(pq), 0);
    ASSERT_EQ(co_pqueue_join(pq, 0), 0);
    for (int i = 0; i < 2; i++) {
        co_process_terminate(c[i]);
        ASSERT_EQ(finish(c[i]), -SIGTERM);
    }
    co_pqueue_free(pq);
}

/* Big messages: most of a put or get is its copy, made holding the
 * queue's mutex, so a kill at a random moment usually lands inside. */
#define BIG (256 * 1024)

static void big_fill(char *b, uint64_t seq)
{
    memcpy(b, &seq, 8);
    for (size_t i = 8; i < BIG; i += 8) memcpy(b + i, &(uint64_t){seq * 1000003u + i}, 8);
}
static bool big_check(const char *b, uint64_t *seq)
{
    memcpy(seq, b, 8);
    for (size_t i = 8; i < BIG; i += 8) {
        uint64_t v;
        memcpy(&v, b + i, 8);
        if (v != *seq * 1000003u + i) return false;
    }
    return true;
}

static int big_producer(void *arg)
{
    (void)arg;
    char *b = malloc(BIG);
    for (uint64_t seq = (uint64_t)atomic_load(&scratch->last);; seq++) {
        big_fill(b, seq);
        CHECK(co_pqueue_put(pq, b, BIG, co_now() + 10000) == 0);
        atomic_store(&scratch->last, (long)seq + 1);
    }
}

static int big_consumer(void *arg)
{
    (void)arg;
    char *b = malloc(BIG);
    for (;;) {
        ssize_t n = co_pqueue_get(pq, b, BIG, co_now() + 10000);
        CHECK(n == BIG);
        uint64_t seq;
        CHECK(big_check(b, &seq));
        atomic_store(&scratch->last, (long)seq);
    }
}

static void test_pqueue_producer_and_consumer_killed(void)
{
    scratch_reset();
    pq = co_pqueue_new(4, BIG, NULL);
    char *b = malloc(BIG);
    uint64_t expect = 0;
    for (int round = 0; round < 12; round++) {
        /* A producer killed at a random moment: what is in the queue is
         * whole and in order, nothing is doubled. */
        atomic_store(&scratch->last, (long)expect);
        co_process_t *p = start(big_producer, NULL);
        usleep(1000 + (unsigned)(round * 700));
        co_process_kill(p);
        ASSERT_EQ(finish(p), -SIGKILL);
        ssize_t n;
        while ((n = co_pqueue_get(pq, b, BIG, 0)) >= 0) {
            ASSERT_EQ(n, BIG);
            uint64_t seq;
            ASSERT(big_check(b, &seq));
            ASSERT_EQ(seq, expect);
            expect++;
        }
        ASSERT_EQ(errno, EAGAIN);
        /* A consumer killed at a random moment: the messages left are
         * whole, and at most the one it was taking is gone. */
        for (int i = 0; i < 4; i++) {
            big_fill(b, expect + (uint64_t)i);
            ASSERT_EQ(co_pqueue_put(pq, b, BIG, co_now() + 5000), 0);
        }
        atomic_store(&scratch->last, -1);
        co_process_t *c = start(big_consumer, NULL);
        usleep(200 + (unsigned)(round * 50));
        co_process_kill(c);
        ASSERT_EQ(finish(c), -SIGKILL);
        long last = atomic_load(&scratch->last);
        uint64_t first_left = 0;
        bool any = false;
        size_t left = 0;
        while ((n = co_pqueue_get(pq, b, BIG, 0)) >= 0) {
            uint64_t seq;
            ASSERT(big_check(b, &seq));
            if (!any) first_left = seq;
            any = true;
            left++;
        }
        if (any) {
            ASSERT((long)first_left == last + 1 || (long)first_left == last + 2 ||
                   (last < 0 && first_left <= expect + 1));
            ASSERT_EQ(first_left + left, expect + 4);
        }
        expect += 4;
    }
    /* and the queue works as before */
    big_fill(b, 42);
    ASSERT_EQ(co_pqueue_put(pq, b, BIG, 0), 0);
    ASSERT_EQ(co_pqueue_get(pq, b, BIG, 0), BIG);
    free(b);
    co_pqueue_free(pq);
}

/* ---- maps */

static void test_pmap_basics(void)
{
    co_pmap_t *m = co_pmap_new(4, 16, 32, NULL);
    ASSERT(m);
    ASSERT_EQ(co_pmap_size(m), 0);
    char v[64];
    ASSERT_ERR(co_pmap_get(m, "a", 1, v, sizeof v, 0), ENOENT);
    ASSERT_EQ(co_pmap_set(m, "a", 1, "apple", 5, 0), 0);
    ASSERT_EQ(co_pmap_set(m, "b", 1, "banana", 6, 0), 0);
    ASSERT_EQ(co_pmap_get(m, "a", 1, v, sizeof v, 0), 5);
    ASSERT(!memcmp(v, "apple", 5));
    ASSERT_EQ(co_pmap_set(m, "a", 1, "apricot", 7, 0), 0); /* update */
    ASSERT_EQ(co_pmap_get(m, "a", 1, v, sizeof v, 0), 7);
    ASSERT(!memcmp(v, "apricot", 7));
    ASSERT_EQ(co_pmap_size(m), 2);
    ASSERT_ERR(co_pmap_get(m, "a", 1, v, 3, 0), EMSGSIZE);
    ASSERT_ERR(co_pmap_set(m, "0123456789abcdefX", 17, "v", 1, 0), EMSGSIZE);
    char bigv[40] = {0};
    ASSERT_ERR(co_pmap_set(m, "k", 1, bigv, sizeof bigv, 0), EMSGSIZE);
    ASSERT_ERR(co_pmap_set(m, "", 0, "v", 1, 0), EINVAL);
    ASSERT_EQ(co_pmap_set(m, "c", 1, "", 0, 0), 0); /* an empty value */
    ASSERT_EQ(co_pmap_set(m, "d", 1, "date", 4, 0), 0);
    ASSERT_ERR(co_pmap_set(m, "e", 1, "elder", 5, 0), ENOSPC); /* full */
    ASSERT_EQ(co_pmap_set(m, "d", 1, "durian", 6, 0), 0);      /* full, but an update */
    ASSERT_EQ(co_pmap_del(m, "c", 1, 0), 0);
    ASSERT_ERR(co_pmap_del(m, "c", 1, 0), ENOENT);
    ASSERT_EQ(co_pmap_set(m, "e", 1, "elder", 5, 0), 0);
    /* iterate */
    size_t cur = 0;
    int seen = 0;
    char k[16];
    ssize_t kl;
    while ((kl = co_pmap_next(m, &cur, k, sizeof k, 0)) >= 0) {
        ASSERT_EQ(kl, 1);
        ASSERT(strchr("abde", k[0]));
        seen++;
    }
    ASSERT_EQ(errno, ENOENT);
    ASSERT_EQ(seen, 4);
    /* churn: tombstones never lose an entry */
    for (int i = 0; i < 1000; i++) {
        char key[8];
        int kn = snprintf(key, sizeof key, "t%d", i % 7);
        co_pmap_del(m, "e", 1, 0);
        ASSERT_EQ(co_pmap_set(m, key, (size_t)kn, &i, sizeof i, 0), 0);
        ASSERT_EQ(co_pmap_del(m, key, (size_t)kn, 0), 0);
        ASSERT_EQ(co_pmap_set(m, "e", 1, "elder", 5, 0), 0);
    }
    ASSERT_EQ(co_pmap_size(m), 4);
    ASSERT_EQ(co_pmap_get(m, "b", 1, v, sizeof v, 0), 6);
    co_pmap_free(m);
    ASSERT_ERR(co_pmap_new(0, 1, 1, NULL), EINVAL);
}

static co_pmap_t *pm;

static int map_writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char key[16];
    for (int i = 0;; i++) {
        int kn = snprintf(key, sizeof key, "k%d", i % 50);
        char *val = malloc(BIG);
        memset(val, id * 16 + i % 16, BIG);
        CHECK(co_pmap_set(pm, key, (size_t)kn, val, BIG, co_now() + 10000) == 0);
        free(val);
        if (id == 0 && i == 200) return 0;
    }
}

static void test_pmap_across_processes_and_writer_killed(void)
{
    pm = co_pmap_new(64, 16, BIG, NULL);
    ASSERT_EQ(finish(start(map_writer, (void *)0)), 0);
    ASSERT_EQ(co_pmap_size(pm), 50);
    char *v = malloc(BIG);
    for (int round = 0; round < 8; round++) {
        co_process_t *p = start(map_writer, (void *)(intptr_t)(round + 1));
        usleep(2000 + (unsigned)round * 500);
        co_process_kill(p);
        ASSERT_EQ(finish(p), -SIGKILL);
        /* every value whole (one byte repeated), every key once */
        size_t cur = 0, seen = 0;
        char k[16];
        ssize_t kl;
        while ((kl = co_pmap_next(pm, &cur, k, sizeof k, co_now() + 5000)) >= 0) {
            ASSERT_EQ(co_pmap_get(pm, k, (size_t)kl, v, BIG, co_now() + 5000), BIG);
            for (size_t i = 1; i < BIG; i++) ASSERT_EQ(v[i], v[0]);
            seen++;
        }
        ASSERT_EQ(seen, 50);
        ASSERT_EQ(co_pmap_size(pm), 50);
    }
    free(v);
    co_pmap_free(pm);
}

/* ---- named objects */

/* The other side, in this test program exec'd afresh (an unrelated
 * process: nothing inherited): opens each object by name and uses it. */
static int exec_named_main(const char *prefix)
{
    char n[128];
    snprintf(n, sizeof n, "%slock", prefix);
    co_plock_t *l = co_plock_open(n);
    CHECK(l);
    snprintf(n, sizeof n, "%squeue", prefix);
    co_pqueue_t *q = co_pqueue_open(n);
    CHECK(q);
    snprintf(n, sizeof n, "%sreply", prefix);
    co_pqueue_t *reply = co_pqueue_open(n);
    CHECK(reply);
    snprintf(n, sizeof n, "%smap", prefix);
    co_pmap_t *m = co_pmap_open(n);
    CHECK(m);
    snprintf(n, sizeof n, "%sevent", prefix);
    co_pevent_t *e = co_pevent_open(n);
    CHECK(e);
    snprintf(n, sizeof n, "%svalue", prefix);
    co_pvalue_t *v = co_pvalue_open(n);
    CHECK(v && co_pvalue_count(v) == 4);
    snprintf(n, sizeof n, "%squeue", prefix);
    CHECK(co_plock_open(n) == NULL && errno == EINVAL); /* another kind */
    CHECK(co_plock_acquire(l, co_now() + 5000) == 0);
    ((int *)co_pvalue_data(v))[3] = 77;
    co_plock_release(l);
    char buf[64];
    ssize_t got = co_pqueue_get(q, buf, sizeof buf, co_now() + 5000);
    CHECK(got == 5 && !memcmp(buf, "hello", 5));
    CHECK(co_pmap_set(m, "from", 4, "exec", 4, co_now() + 5000) == 0);
    CHECK(co_pqueue_put(reply, "world", 5, co_now() + 5000) == 0);
    CHECK(co_pevent_wait(e, co_now() + 5000) == 0);
    co_plock_free(l);
    co_pqueue_free(q);
    co_pqueue_free(reply);
    co_pmap_free(m);
    co_pevent_free(e);
    co_pvalue_free(v);
    return 0;
}

static void test_named_objects_opened_by_a_program(void)
{
    int before = shm_count();
    co_plock_t *l = co_plock_new(&(co_shm_opts_t){.name = shm_name("lock")});
    co_pqueue_t *q = co_pqueue_new(4, 64, &(co_shm_opts_t){.name = shm_name("queue")});
    co_pqueue_t *reply = co_pqueue_new(4, 64, &(co_shm_opts_t){.name = shm_name("reply")});
    co_pmap_t *m = co_pmap_new(8, 8, 8, &(co_shm_opts_t){.name = shm_name("map")});
    co_pevent_t *e = co_pevent_new(&(co_shm_opts_t){.name = shm_name("event")});
    co_pvalue_t *v = co_pvalue_new(sizeof(int), 4, &(co_shm_opts_t){.name = shm_name("value")});
    ASSERT(l && q && reply && m && e && v);
    ASSERT_EQ(shm_count(), before + 6);
    ASSERT_ERR(co_plock_new(&(co_shm_opts_t){.name = shm_name("lock")}), EEXIST);
    ASSERT_ERR(co_plock_open(shm_name("nosuch")), ENOENT);
    ASSERT_ERR(co_plock_new(&(co_shm_opts_t){.name = "a/b"}), EINVAL);
    ASSERT_ERR(co_plock_new(&(co_shm_opts_t){.name = "/"}), EINVAL);
    ASSERT_EQ(co_pqueue_put(q, "hello", 5, 0), 0);
    const char *argv[] = {self_path, "--exec-named", shm_prefix, NULL};
    co_process_t *p = co_process_exec(argv, NULL);
    ASSERT(p);
    char buf[64];
    ASSERT_EQ(co_pqueue_get(reply, buf, sizeof buf, co_now() + 10000), 5);
    ASSERT(!memcmp(buf, "world", 5));
    ASSERT_EQ(co_pmap_get(m, "from", 4, buf, sizeof buf, 0), 4);
    ASSERT_EQ(((int *)co_pvalue_data(v))[3], 77);
    co_pevent_set(e);
    ASSERT_EQ(finish(p), 0);
    /* The creator's free removes the name; an opener's does not. */
    co_plock_t *l2 = co_plock_open(shm_name("lock"));
    ASSERT(l2);
    co_plock_free(l2);
    ASSERT(shm_exists(shm_name("lock")));
    co_plock_free(l);
    ASSERT(!shm_exists(shm_name("lock")));
    co_pqueue_free(q);
    co_pqueue_free(reply);
    co_pmap_free(m);
    co_pevent_free(e);
    co_pvalue_free(v);
    ASSERT_EQ(shm_count(), before);
}

/* arg: 0 a normal end, 1 a crash; the names get suffix arg. */
static int make_named_and_die(void *arg)
{
    intptr_t how = (intptr_t)arg;
    char qn[64], ln[64];
    snprintf(qn, sizeof qn, "orphan-q%d", (int)how);
    snprintf(ln, sizeof ln, "orphan-l%d", (int)how);
    CHECK(co_pqueue_new(4, 64, &(co_shm_opts_t){.name = shm_name(qn)}));
    CHECK(co_plock_new(&(co_shm_opts_t){.name = shm_name(ln)}));
    atomic_store(&scratch->ready, 1);
    if (how) kill(getpid(), SIGKILL);
    return 0; /* a normal end: the names go with it */
}

static int exec_orphans_main(const char *prefix)
{
    snprintf(shm_prefix, sizeof shm_prefix, "%s", prefix);
    scratch = mmap(NULL, sizeof *scratch, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    /* The tracker starts with this program's first named object: made
     * here, so that the child shares it with us. */
    co_plock_free(co_plock_new(&(co_shm_opts_t){.name = shm_name("tracked")}));
    co_process_t *p = co_process_new(make_named_and_die, (void *)2, NULL);
    CHECK(co_process_start(p) == 0);
    CHECK(co_process_join(p, -1) == 0 && co_process_exitcode(p) == -SIGKILL);
    CHECK(shm_exists(shm_name("orphan-q2"))); /* this program still shares the tracker */
    return 0;
}

static void test_named_objects_cleaned_up(void)
{
    scratch_reset();
    int before = shm_count();
    /* A normal end, the objects never freed: removed by the end hook. */
    ASSERT_EQ(finish(start(make_named_and_die, (void *)0)), 0);
    ASSERT_EQ(atomic_load(&scratch->ready), 1);
    ASSERT(!shm_exists(shm_name("orphan-q0")));
    ASSERT_EQ(shm_count(), before);
    /* A crash: the tracker removes them once every process sharing it has
     * ended -- here that includes this test, so the names stay for now. */
    scratch_reset();
    ASSERT_EQ(finish(start(make_named_and_die, (void *)1)), -SIGKILL);
    ASSERT_EQ(atomic_load(&scratch->ready), 1);
    ASSERT(shm_exists(shm_name("orphan-q1")));
    /* The same in a program with a tracker of its own (this test exec'd
     * afresh), which then ends entirely: its names go. */
    const char *argv[] = {self_path, "--exec-orphans", shm_prefix, NULL};
    ASSERT_EQ(finish(co_process_exec(argv, NULL)), 0);
    for (int i = 0; i < 5000 && (shm_exists(shm_name("orphan-q2")) || shm_exists(shm_name("orphan-l2"))); i++)
        usleep(1000);
    ASSERT(!shm_exists(shm_name("orphan-q2")));
    ASSERT(!shm_exists(shm_name("orphan-l2")));
    /* The first crash's names: this test's tracker removes them when the
     * test ends; do it now by hand so that the count checks hold. */
    char path[256];
    snprintf(path, sizeof path, "/dev/shm/%s", shm_name("orphan-q1"));
    unlink(path);
    snprintf(path, sizeof path, "/dev/shm/%s", shm_name("orphan-l1"));
    unlink(path);
    ASSERT_EQ(shm_count(), before);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--exec-echo")) return exec_echo_main(atoi(argv[2]));
    if (argc == 3 && !strcmp(argv[1], "--exec-named")) return exec_named_main(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--exec-orphans")) return exec_orphans_main(argv[2]);
    self_path = argv[0];
    TEST_MAIN_BEGIN(argc, argv);
    ASSERT_EQ(finish(start(nothing, NULL)), 0); /* the reaper lives from the first child on */
    RUN(test_pipe_ping_pong);
    RUN(test_pipe_one_mib_both_ways);
    RUN(test_pipe_symmetric_big_sends);
    RUN(test_pipe_deadlines);
    RUN(test_pipe_committed_send);
    RUN(test_pipe_cancel_and_parking);
    RUN(test_pipe_close_and_eof);
    RUN(test_pipe_end_handed_to_a_program);
    scratch = mmap(NULL, sizeof *scratch, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    snprintf(shm_prefix, sizeof shm_prefix, "cogent-test-%d-", (int)getpid());
    /* The tracker's pipe lives from the first named object on. */
    co_plock_free(co_plock_new(&(co_shm_opts_t){.name = shm_name("warm")}));
    RUN(test_plock_excludes_processes);
    RUN(test_plock_deadlines_and_owner);
    RUN(test_plock_release_by_non_owner_aborts);
    RUN(test_plock_owner_across_hub_creation);
    RUN(test_prlock);
    RUN(test_psem);
    RUN(test_pevent);
    RUN(test_pcond);
    RUN(test_pbarrier);
    RUN(test_pvalue);
    RUN(test_pqueue_across_processes);
    RUN(test_pqueue_errors);
    RUN(test_pqueue_many_coroutines_and_threads);
    RUN(test_pqueue_joinable_with_daemon_consumers);
    RUN(test_pqueue_producer_and_consumer_killed);
    RUN(test_pmap_basics);
    RUN(test_pmap_across_processes_and_writer_killed);
    RUN(test_named_objects_opened_by_a_program);
    RUN(test_named_objects_cleaned_up);
    return TEST_MAIN_END();
}
