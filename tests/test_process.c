/* Processes: start/join/exitcode/terminate/kill, daemons, reaping, the
 * clean hub in the child, running programs (pipes, communicate,
 * deadlines).  Run twice by ctest: with pidfds and with COGENT_PIDFD=0
 * (the reaper's fallback). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "cogent.h"
#include "harness.h"

/* ------------------------------------------------------------- helpers */

/* Children of this process in /proc: all, and zombies among them. */
static void count_children(int *all, int *zombies)
{
    *all = *zombies = 0;
    DIR *d = opendir("/proc");
    ASSERT(d);
    struct dirent *de;
    pid_t me = getpid();
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')'); /* the name may hold spaces */
        if (!rp) continue;
        char state;
        int ppid;
        if (sscanf(rp + 2, "%c %d", &state, &ppid) != 2 || ppid != me) continue;
        (*all)++;
        if (state == 'Z') (*zombies)++;
    }
    closedir(d);
}

static int zombies(void)
{
    int a, z;
    count_children(&a, &z);
    return z;
}

/* Waits (generously) until the process pid has ended: gone, or a zombie
 * that is not ours (an orphan init has yet to reap). */
static bool gone_within(pid_t pid, int ms)
{
    for (int i = 0; i < ms; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f) return true;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        int ppid = 0;
        char state = 0;
        if (rp && sscanf(rp + 2, "%c %d", &state, &ppid) == 2 && state == 'Z' && ppid != getpid()) return true;
        usleep(1000);
    }
    return false;
}

static int exit_with(void *arg)
{
    return (int)(intptr_t)arg;
}

static int sleep_forever(void *arg)
{
    (void)arg;
    for (;;) pause();
    return 0;
}

static int crash(void *arg)
{
    (void)arg;
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn it into an abort */
    volatile int *p = NULL;
    return *p;
}

static int call_exit(void *arg)
{
    exit((int)(intptr_t)arg);
}

static int call_co_exit(void *arg)
{
    co_process_exit((int)(intptr_t)arg);
}

static int sleep_ms(void *arg)
{
    co_sleep_ms((intptr_t)arg);
    return 0;
}

/* --------------------------------------------------------------- cases */

static void test_exitcodes(void)
{
    struct {
        co_process_fn fn;
        intptr_t arg;
        int code;
    } cases[] = {
        {exit_with, 0, 0}, {exit_with, 3, 3}, {call_exit, 4, 4}, {call_co_exit, 5, 5}, {crash, 0, -SIGSEGV},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        co_process_t *p = co_process_new(cases[i].fn, (void *)cases[i].arg, NULL);
        ASSERT(p);
        ASSERT_EQ(co_process_exitcode(p), CO_EXIT_NONE);
        ASSERT(!co_process_is_alive(p));
        ASSERT_EQ(co_process_pid(p), 0);
        ASSERT_EQ(co_process_start(p), 0);
        ASSERT(co_process_pid(p) > 0);
        ASSERT_ERR(co_process_start(p), EINVAL);
        ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
        ASSERT_EQ(co_process_exitcode(p), cases[i].code);
        ASSERT(!co_process_is_alive(p));
        ASSERT_EQ(co_process_join(p, 0), 0); /* joined again: at once */
        co_process_free(p);
    }
    /* killed: exitcode is minus the signal */
    co_process_t *p = co_process_new(sleep_forever, NULL, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    ASSERT(co_process_is_alive(p));
    ASSERT_EQ(co_process_kill(p), 0);
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    ASSERT_EQ(co_process_exitcode(p), -SIGKILL);
    ASSERT_EQ(co_process_kill(p), 0); /* ended: left alone */
    co_process_free(p);
    p = co_process_new(sleep_forever, NULL, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    ASSERT_EQ(co_process_terminate(p), 0);
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    ASSERT_EQ(co_process_exitcode(p), -SIGTERM);
    ASSERT_ERR(co_process_signal(p, -1), EINVAL);
    co_process_free(p);
    ASSERT_EQ(zombies(), 0);
}

static void test_errors(void)
{
    ASSERT_ERR(co_process_new(NULL, NULL, NULL), EINVAL);
    co_process_t *p = co_process_new(exit_with, NULL, NULL);
    ASSERT_ERR(co_process_join(p, 0), EINVAL); /* never started */
    ASSERT_ERR(co_process_terminate(p), EINVAL);
    ASSERT_ERR(co_process_communicate(p, NULL, 0, NULL, NULL, NULL, NULL, 0), EINVAL);
    co_process_free(p);
    co_process_free(NULL);
    ASSERT_ERR(co_process_exec(NULL, NULL), EINVAL);
    const char *none[] = {NULL};
    ASSERT_ERR(co_process_exec(none, NULL), EINVAL);
    const char *missing[] = {"/nonexistent/program", NULL};
    ASSERT_ERR(co_process_exec(missing, NULL), ENOENT);
    const char *missing_path[] = {"no-such-program-in-path-cogent", NULL};
    ASSERT_ERR(co_process_exec(missing_path, NULL), ENOENT);
    char path[] = "/tmp/cogent-test-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd,
                    "\x7f"
                    "ELF garbage",
                    12),
              12);
    close(fd);
    const char *not_exec[] = {path, NULL};
    ASSERT_EQ(chmod(path, 0644), 0);
    ASSERT_ERR(co_process_exec(not_exec, NULL), EACCES);
    ASSERT_EQ(chmod(path, 0755), 0);
    ASSERT_ERR(co_process_exec(not_exec, NULL), ENOEXEC);
    unlink(path);
    const char *t[] = {"true", NULL};
    co_process_opts_t bad = {.stdout_mode = CO_STDIO_FD, .stdout_fd = 987};
    ASSERT_ERR(co_process_exec(t, &bad), EBADF);
    co_process_opts_t bad2 = {.stdin_mode = CO_STDIO_STDOUT};
    ASSERT_ERR(co_process_exec(t, &bad2), EINVAL);
    int pass = 986;
    co_process_opts_t bad3 = {.pass_fds = &pass, .npass_fds = 1};
    ASSERT_ERR(co_process_exec(t, &bad3), EBADF);
    ASSERT_EQ(zombies(), 0);
}

static void test_names(void)
{
    co_process_t *a = co_process_new(exit_with, NULL, NULL);
    co_process_t *b = co_process_new(exit_with, NULL, &(co_process_opts_t){.name = "worker", .daemon = true});
    ASSERT(!strncmp(co_process_name(a), "Process-", 8));
    ASSERT_STR_EQ(co_process_name(b), "worker");
    ASSERT(!co_process_daemon(a) && co_process_daemon(b));
    co_process_free(a);
    co_process_free(b);
    const char *argv[] = {"true", NULL};
    co_process_t *c = co_process_exec(argv, NULL);
    ASSERT(c);
    ASSERT_STR_EQ(co_process_name(c), "true");
    ASSERT_EQ(co_process_join(c, co_now() + 10000), 0);
    ASSERT_EQ(co_process_exitcode(c), 0);
    co_process_free(c);
}

static atomic_int ticks;
static void *ticker(void *arg)
{
    (void)arg;
    while (co_sleep_ms(5) == 0) atomic_fetch_add(&ticks, 1);
    return NULL;
}

static void test_join_deadline_parks_only_caller(void)
{
    co_process_t *p = co_process_new(sleep_ms, (void *)(intptr_t)300, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    ASSERT_ERR(co_process_join(p, 0), ETIMEDOUT);
    ASSERT_ERR(co_process_join(p, co_now() - 5), ETIMEDOUT);
    int64_t t0 = co_now();
    ASSERT_ERR(co_process_join(p, co_now() + 50), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 250);
    atomic_store(&ticks, 0);
    co_coro_t *c = co_spawn(ticker, NULL);
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    ASSERT(atomic_load(&ticks) >= 5); /* the hub ran the ticker meanwhile */
    co_kill(c);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    ASSERT_EQ(co_process_exitcode(p), 0);
    co_process_free(p);
}

static void *joiner(void *arg)
{
    return (void *)(intptr_t)(co_process_join(arg, -1) < 0 ? errno : 0);
}

static void test_join_cancelled(void)
{
    co_process_t *p = co_process_new(sleep_forever, NULL, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    co_coro_t *c = co_spawn(joiner, p);
    co_sleep_ms(20);
    co_kill(c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    ASSERT(co_process_is_alive(p));
    co_process_kill(p);
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    co_process_free(p);
}

static void *thread_joiner(void *arg)
{
    return (void *)(intptr_t)(co_process_join(arg, co_now() + 10000) < 0 ? errno : co_process_exitcode(arg));
}

static void test_join_from_threads_and_hubs(void)
{
    /* Two plain threads (no hub) and two coroutines join one child. */
    co_process_t *p = co_process_new(sleep_ms, (void *)(intptr_t)100, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, thread_joiner, p), 0);
    co_coro_t *c[2] = {co_spawn(joiner, p), co_spawn(joiner, p)};
    for (int i = 0; i < 2; i++) {
        void *r;
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT_EQ((intptr_t)r, 0);
        ASSERT_EQ(co_join(c[i], -1, &r), 0);
        ASSERT_EQ((intptr_t)r, 0);
    }
    co_process_free(p);
}

static void test_reaped_without_join(void)
{
    /* Ended and never joined: reaped anyway, the code kept. */
    co_process_t *p = co_process_new(exit_with, (void *)7, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    pid_t pid = co_process_pid(p);
    int a = 1, z = 1;
    for (int i = 0; i < 5000 && (a || z); i++) {
        count_children(&a, &z);
        usleep(1000);
    }
    ASSERT_EQ(a, 0);
    ASSERT_EQ(z, 0);
    ASSERT(kill(pid, 0) < 0 && errno == ESRCH);
    ASSERT_EQ(co_process_exitcode(p), 7);
    co_process_free(p);
    /* Freed while running: reaped when it ends. */
    p = co_process_new(sleep_ms, (void *)(intptr_t)50, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    pid = co_process_pid(p);
    co_process_free(p);
    ASSERT(gone_within(pid, 5000));
    ASSERT_EQ(zombies(), 0);
    /* A program, freed at once. */
    const char *argv[] = {"sleep", "0.05", NULL};
    p = co_process_exec(argv, NULL);
    ASSERT(p);
    pid = co_process_pid(p);
    co_process_free(p);
    ASSERT(gone_within(pid, 5000));
    ASSERT_EQ(zombies(), 0);
}

static void test_foreign_children_left_alone(void)
{
    /* A child the program forked itself stays its own to reap. */
    fflush(NULL);
    pid_t mine = fork();
    if (mine == 0) _exit(9);
    co_process_t *p = co_process_new(exit_with, (void *)1, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    co_process_free(p);
    usleep(100000); /* the reaper had every chance */
    int st;
    ASSERT_EQ(waitpid(mine, &st, 0), mine);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 9);
}

static void test_reaped_behind_our_back(void)
{
    co_process_t *p = co_process_new(sleep_ms, (void *)(intptr_t)30, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    /* The program reaps it itself: join says ECHILD, the code is lost.
     * (The reaper may have been first: then the code is known.) */
    int st;
    pid_t r = waitpid(co_process_pid(p), &st, 0);
    int jr = co_process_join(p, co_now() + 10000);
    if (r == co_process_pid(p)) {
        ASSERT_EQ(jr, -1);
        ASSERT_EQ(errno, ECHILD);
        ASSERT_EQ(co_process_exitcode(p), CO_EXIT_NONE);
    } else {
        ASSERT_EQ(jr, 0);
        ASSERT_EQ(co_process_exitcode(p), 0);
    }
    co_process_free(p);
}

/* The child must not run any of the parent's coroutines. */
static int out_fd = -1;
static void *parent_only(void *arg)
{
    (void)arg;
    co_sleep_ms(30);
    ssize_t w = write(out_fd, "P", 1);
    (void)w;
    return NULL;
}
static int child_sleeps(void *arg)
{
    (void)arg;
    co_sleep_ms(100); /* the child's hub runs: a copy of parent_only would write now */
    ssize_t w = write(out_fd, "C", 1);
    (void)w;
    return co_hub_stats(&(co_hub_stats_t){0}), 0;
}
static int deep(int n)
{
    volatile char pad[1024];
    pad[0] = (char)n;
    return n == 0 ? pad[0] : deep(n - 1) + 1 + pad[0] * 0;
}
static int child_deep_stack(void *arg)
{
    (void)arg;
    return deep(2000) == 2000 ? 0 : 1; /* ~2 MiB: far beyond a coroutine's stack */
}
static void *start_from_coroutine(void *arg)
{
    co_process_t *p = co_process_new(arg, NULL, NULL);
    if (co_process_start(p) < 0) return (void *)-1;
    return p;
}

static void test_clean_hub_in_child(void)
{
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    out_fd = pp[1];
    co_coro_t *c = co_spawn(parent_only, NULL);
    co_process_t *p = co_process_new(child_sleeps, NULL, NULL);
    ASSERT_EQ(co_process_start(p), 0);
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    ASSERT_EQ(co_process_exitcode(p), 0);
    co_process_free(p);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    close(pp[1]);
    char buf[16];
    ssize_t n = read(pp[0], buf, sizeof buf);
    ASSERT_EQ(n, 2);
    ASSERT((buf[0] == 'P' && buf[1] == 'C') || (buf[0] == 'C' && buf[1] == 'P'));
    close(pp[0]);
    /* Started from a spawned coroutine: fn still gets a full-size stack. */
    void *r;
    ASSERT_EQ(co_join(co_spawn(start_from_coroutine, (void *)child_deep_stack), -1, &r), 0);
    ASSERT(r != (void *)-1);
    p = r;
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    ASSERT_EQ(co_process_exitcode(p), 0);
    co_process_free(p);
}

/* Runs fn in an intermediate process and returns what it wrote to fd 100
 * (a pipe), after it ended. */
static void mid_daemon(void *arg)
{
    bool die_hard = arg != NULL;
    co_process_t *p = co_process_new(sleep_forever, NULL, &(co_process_opts_t){.daemon = true});
    co_process_start(p);
    pid_t pid = co_process_pid(p);
    ssize_t w = write(100, &pid, sizeof pid);
    (void)w;
    if (die_hard) kill(getpid(), SIGKILL);
    exit(0); /* the end hooks terminate the daemon */
}

static pid_t run_mid(void (*fn)(void *), void *arg, int *status)
{
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    fflush(NULL);
    pid_t mid = fork();
    if (mid == 0) {
        dup2(pp[1], 100);
        fn(arg);
        _exit(0);
    }
    close(pp[1]);
    pid_t got = 0;
    ssize_t n = read(pp[0], &got, sizeof got);
    ASSERT_EQ(n, (ssize_t)sizeof got);
    close(pp[0]);
    ASSERT_EQ(waitpid(mid, status, 0), mid);
    return got;
}

static void test_daemon_dies_with_parent(void)
{
    int st;
    pid_t d = run_mid(mid_daemon, NULL, &st);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(gone_within(d, 5000)); /* terminated (and reaped) before the parent ended */
    d = run_mid(mid_daemon, (void *)1, &st);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT(gone_within(d, 5000)); /* PR_SET_PDEATHSIG */
}

static int write_late(void *arg)
{
    (void)arg;
    usleep(200000);
    ssize_t w = write(100, "late", 4);
    (void)w;
    return 0;
}
static void mid_non_daemon(void *arg)
{
    (void)arg;
    co_process_t *p = co_process_new(write_late, NULL, NULL);
    co_process_start(p);
    pid_t pid = co_process_pid(p);
    ssize_t w = write(100, &pid, sizeof pid);
    (void)w;
    exit(0); /* waits for the child */
}

static void test_non_daemon_waited_at_exit(void)
{
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    fflush(NULL);
    int64_t t0 = co_now();
    pid_t mid = fork();
    if (mid == 0) {
        dup2(pp[1], 100);
        mid_non_daemon(NULL);
    }
    close(pp[1]);
    int st;
    ASSERT_EQ(waitpid(mid, &st, 0), mid);
    ASSERT_TIME(co_now() - t0, 150, 10000);
    char buf[64];
    ssize_t n = 0, r;
    while ((r = read(pp[0], buf + n, sizeof buf - (size_t)n)) > 0) n += r;
    close(pp[0]);
    ASSERT_EQ(n, (ssize_t)(sizeof(pid_t) + 4));
    ASSERT(!memcmp(buf + sizeof(pid_t), "late", 4));
}

static void test_active(void)
{
    co_process_t *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = co_process_new(i == 0 ? exit_with : sleep_forever, NULL, NULL);
        ASSERT_EQ(co_process_start(p[i]), 0);
    }
    ASSERT_EQ(co_process_join(p[0], co_now() + 10000), 0);
    co_process_t *act[4];
    ASSERT_EQ(co_process_active(act, 4), 2);
    ASSERT(act[0] != p[0] && act[1] != p[0]);
    ASSERT_EQ(co_process_active(NULL, 0), 2);
    for (int i = 1; i < 3; i++) {
        co_process_kill(p[i]);
        ASSERT_EQ(co_process_join(p[i], co_now() + 10000), 0);
    }
    ASSERT_EQ(co_process_active(NULL, 0), 0);
    for (int i = 0; i < 3; i++) co_process_free(p[i]);
    ASSERT(co_cpu_count() >= 1);
}

/* ------------------------------------------------------------- programs */

static void test_exec_communicate(void)
{
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    co_process_opts_t o = {.stdout_mode = CO_STDIO_PIPE, .stderr_mode = CO_STDIO_PIPE};
    co_process_t *p = co_process_exec(argv, &o);
    ASSERT(p);
    ASSERT(co_process_stdout(p) >= 0 && co_process_stderr(p) >= 0 && co_process_stdin(p) == -1);
    char *out, *err;
    size_t ol, el;
    ASSERT_EQ(co_process_communicate(p, NULL, 0, &out, &ol, &err, &el, co_now() + 10000), 0);
    ASSERT_STR_EQ(out, "out\n");
    ASSERT_EQ(ol, 4);
    ASSERT_STR_EQ(err, "err\n");
    ASSERT_EQ(co_process_exitcode(p), 3);
    free(out);
    free(err);
    co_process_free(p);
    /* stderr into stdout; env; cwd */
    const char *argv2[] = {"sh", "-c", "echo $COGENT_X; pwd; echo e >&2", NULL};
    const char *env[] = {"COGENT_X=hello", "PATH=/bin:/usr/bin", NULL};
    co_process_opts_t o2 = {.stdout_mode = CO_STDIO_PIPE, .stderr_mode = CO_STDIO_STDOUT, .env = env, .cwd = "/tmp"};
    p = co_process_exec(argv2, &o2);
    ASSERT(p);
    ASSERT_EQ(co_process_communicate(p, NULL, 0, &out, NULL, NULL, NULL, co_now() + 10000), 0);
    ASSERT_STR_EQ(out, "hello\n/tmp\ne\n");
    free(out);
    co_process_free(p);
    /* devnull; a program that was not given our descriptors */
    int keep[2];
    ASSERT_EQ(pipe(keep), 0);
    char script[128];
    snprintf(script, sizeof script,
             "cat; test -e /proc/self/fd/%d && echo leaked; test -e /proc/self/fd/%d && echo kept", keep[0], keep[1]);
    const char *argv3[] = {"sh", "-c", script, NULL};
    co_process_opts_t o3 = {
        .stdin_mode = CO_STDIO_DEVNULL, .stdout_mode = CO_STDIO_PIPE, .pass_fds = &keep[1], .npass_fds = 1};
    p = co_process_exec(argv3, &o3);
    ASSERT(p);
    ASSERT_EQ(co_process_communicate(p, NULL, 0, &out, NULL, NULL, NULL, co_now() + 10000), 0);
    ASSERT_STR_EQ(out, "kept\n");
    free(out);
    co_process_free(p);
    close(keep[0]);
    close(keep[1]);
}

static void test_exec_big_input_both_ways(void)
{
    /* 4 MiB through cat and back: communicate writes and reads at once,
     * so neither pipe fills up while the other is waited on. */
    size_t n = 4u << 20;
    char *in = malloc(n);
    for (size_t i = 0; i < n; i++) in[i] = (char)(i * 7 + i / 4096);
    const char *argv[] = {"cat", NULL};
    co_process_opts_t o = {.stdin_mode = CO_STDIO_PIPE, .stdout_mode = CO_STDIO_PIPE};
    co_process_t *p = co_process_exec(argv, &o);
    ASSERT(p);
    char *out;
    size_t ol;
    ASSERT_EQ(co_process_communicate(p, in, n, &out, &ol, NULL, NULL, co_now() + 20000), 0);
    ASSERT_EQ(ol, n);
    ASSERT(!memcmp(in, out, n));
    ASSERT_EQ(co_process_exitcode(p), 0);
    free(out);
    free(in);
    co_process_free(p);
}

static void test_exec_communicate_deadline(void)
{
    const char *argv[] = {"sh", "-c", "echo first; exec sleep 10", NULL};
    co_process_opts_t o = {.stdout_mode = CO_STDIO_PIPE};
    co_process_t *p = co_process_exec(argv, &o);
    ASSERT(p);
    char *out = NULL;
    int64_t t0 = co_now();
    ASSERT_ERR(co_process_communicate(p, NULL, 0, &out, NULL, NULL, NULL, co_now() + 200), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 150, 2000);
    ASSERT(co_process_is_alive(p));
    ASSERT_EQ(co_process_kill(p), 0);
    /* A second call carries on: what was read before is kept. */
    ASSERT_EQ(co_process_communicate(p, NULL, 0, &out, NULL, NULL, NULL, co_now() + 10000), 0);
    ASSERT_STR_EQ(out, "first\n");
    ASSERT_EQ(co_process_exitcode(p), -SIGKILL);
    free(out);
    co_process_free(p);
}

static void *killer(void *arg)
{
    co_sleep_ms(30);
    co_kill(arg);
    return NULL;
}
static void *communicator(void *arg)
{
    char *out = NULL;
    int r = co_process_communicate(arg, NULL, 0, &out, NULL, NULL, NULL, -1);
    free(out);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static void test_exec_communicate_cancelled(void)
{
    const char *argv[] = {"sleep", "10", NULL};
    co_process_opts_t o = {.stdout_mode = CO_STDIO_PIPE};
    co_process_t *p = co_process_exec(argv, &o);
    ASSERT(p);
    co_coro_t *c = co_spawn(communicator, p);
    co_coro_t *k = co_spawn(killer, c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    ASSERT_EQ(co_join(k, -1, NULL), 0);
    co_process_kill(p);
    ASSERT_EQ(co_process_join(p, co_now() + 10000), 0);
    co_process_free(p);
}

static int hold_a_while(void *arg)
{
    (void)arg;
    usleep(300000);
    return 0;
}

static void test_children_do_not_hold_siblings_pipes(void)
{
    /* cat waits for EOF on its stdin; a child forked afterwards must not
     * keep a copy of the pipe's write end, or cat would wait for it too. */
    const char *argv[] = {"cat", NULL};
    co_process_opts_t o = {.stdin_mode = CO_STDIO_PIPE, .stdout_mode = CO_STDIO_DEVNULL};
    co_process_t *cat = co_process_exec(argv, &o);
    ASSERT(cat);
    co_process_t *other = co_process_new(hold_a_while, NULL, NULL);
    ASSERT_EQ(co_process_start(other), 0);
    co_process_close_stdin(cat);
    int64_t t0 = co_now();
    ASSERT_EQ(co_process_join(cat, co_now() + 10000), 0);
    ASSERT_TIME(co_now() - t0, 0, 250);
    ASSERT_EQ(co_process_join(other, co_now() + 10000), 0);
    co_process_free(cat);
    co_process_free(other);
}

static void test_exec_many_concurrently(void)
{
    /* 20 programs at once from 4 coroutines; every one reaped. */
    enum { N = 20 };
    co_process_t *p[N];
    for (int i = 0; i < N; i++) {
        char code[8];
        snprintf(code, sizeof code, "%d", i);
        const char *argv[] = {"sh", "-c", "exit $0", code, NULL};
        p[i] = co_process_exec(argv, NULL);
        ASSERT(p[i]);
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(co_process_join(p[i], co_now() + 10000), 0);
        ASSERT_EQ(co_process_exitcode(p[i]), i);
        co_process_free(p[i]);
    }
    ASSERT_EQ(zombies(), 0);
}

static void test_stdio_pipes_fn_child(void)
{
    co_process_opts_t o = {.stdout_mode = CO_STDIO_PIPE};
    co_process_t *p = co_process_new(child_sleeps, NULL, &o);
    out_fd = 1;
    ASSERT_EQ(co_process_start(p), 0);
    char *out;
    ASSERT_EQ(co_process_communicate(p, NULL, 0, &out, NULL, NULL, NULL, co_now() + 10000), 0);
    ASSERT_STR_EQ(out, "C");
    free(out);
    co_process_free(p);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    /* The reaper (a helper thread and its eventfd) lives from the first
     * child on: start it before the cases count descriptors. */
    co_process_t *warm = co_process_new(exit_with, NULL, NULL);
    ASSERT_EQ(co_process_start(warm), 0);
    ASSERT_EQ(co_process_join(warm, -1), 0);
    co_process_free(warm);
    RUN(test_exitcodes);
    RUN(test_errors);
    RUN(test_names);
    RUN(test_join_deadline_parks_only_caller);
    RUN(test_join_cancelled);
    RUN(test_join_from_threads_and_hubs);
    RUN(test_reaped_without_join);
    RUN(test_foreign_children_left_alone);
    RUN(test_reaped_behind_our_back);
    RUN(test_clean_hub_in_child);
    RUN(test_daemon_dies_with_parent);
    RUN(test_non_daemon_waited_at_exit);
    RUN(test_active);
    RUN(test_exec_communicate);
    RUN(test_exec_big_input_both_ways);
    RUN(test_exec_communicate_deadline);
    RUN(test_exec_communicate_cancelled);
    RUN(test_children_do_not_hold_siblings_pipes);
    RUN(test_exec_many_concurrently);
    RUN(test_stdio_pipes_fn_child);
    return TEST_MAIN_END();
}
