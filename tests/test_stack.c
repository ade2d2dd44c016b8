/* Stacks: overflow is reported with the coroutine's id, name and stack
 * size, then the process aborts -- in guard-page mode and in canary mode.
 * Each overflow runs in a fresh child process (re-executing this program)
 * so that the stack policy can be chosen by environment variable. */
#include <sys/mman.h>

#include "cogent.h"
#include "harness.h"

static volatile int sink;

/* Uses about `depth` KiB of stack. */
static int recurse(int depth)
{
    volatile char pad[1000];
    for (int i = 0; i < 1000; i++) pad[i] = (char)(0x80 | depth); /* a frame really used (non-zero data) */
    if (depth <= 0) return pad[0];
    return recurse(depth - 1) + pad[999];
}

static void *overflow_forever(void *arg)
{
    (void)arg;
    sink = recurse(1 << 20);
    return NULL;
}

/* Just a bit past the bottom, then a switch: only the canary can tell. */
static void *overflow_a_little(void *arg)
{
    (void)arg;
    sink = recurse((int)(CO_STACK_MIN / 1000) + 2);
    co_yield_now();
    return NULL;
}

static int child_main(const char *what)
{
    co_spawn_opts_t o = {.stack_size = CO_STACK_MIN, .name = "deep"};
    if (!strcmp(what, "coro")) {
        co_join(co_spawn_with(overflow_forever, NULL, &o), -1, NULL);
    } else if (!strcmp(what, "little")) {
        co_join(co_spawn_with(overflow_a_little, NULL, &o), -1, NULL);
    } else if (!strcmp(what, "fiber")) {
        co_fiber_t *f = co_fiber_new((co_fiber_fn)(void (*)(void))overflow_forever, NULL,
                                     &(co_fiber_opts_t){.stack_size = CO_STACK_MIN});
        co_fiber_switch(f, NULL);
    } else if (!strcmp(what, "spawn")) {
        /* The default stack size (whatever the environment said) works. */
        co_coro_t *c = co_spawn(overflow_a_little, NULL);
        if (!c || co_join(c, -1, NULL) != 0) return 3;
        return 0;
    }
    return 0; /* not reached if the overflow was caught */
}

static int child_status_env(const char *policy, const char *stack_size, const char *what, char *buf, size_t cap)
{
    int p[2];
    ASSERT(pipe(p) == 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        setenv("COGENT_STACK_GUARD", policy, 1);
        if (stack_size) setenv("COGENT_STACK_SIZE", stack_size, 1);
        /* Sanitizers have their own SEGV handling: let ours speak. */
        setenv("ASAN_OPTIONS", "handle_segv=0:handle_abort=0:detect_leaks=0", 1);
        execl("/proc/self/exe", "test_stack", "--child", what, (char *)NULL);
        _exit(99);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, cap - 1 - n)) > 0) n += (size_t)r;
    buf[n] = 0;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return st;
}

static int child_status(const char *policy, const char *what, char *buf, size_t cap)
{
    return child_status_env(policy, NULL, what, buf, cap);
}

static void expect_report(const char *policy, const char *what, const char *mode, const char *who)
{
    char buf[8192];
    int st = child_status(policy, what, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s/%s: status %#x, stderr:\n%s", policy, what, st, buf);
    ASSERT_(strstr(buf, "cogent: stack overflow in ") != NULL, "no report:\n%s", buf);
    ASSERT_(strstr(buf, who) != NULL, "report does not name %s:\n%s", who, buf);
    ASSERT_(strstr(buf, mode) != NULL, "report does not say %s:\n%s", mode, buf);
    ASSERT_(strstr(buf, "stack 16384 bytes") != NULL, "report lacks the size:\n%s", buf);
}

static void test_guard_page_overflow(void)
{
    expect_report("always", "coro", "guard page", "\"deep\"");
    expect_report("always", "fiber", "guard page", "fiber 0x");
}

static void test_canary_overflow(void)
{
    expect_report("never", "little", "canary mode", "\"deep\"");
    /* Deep: no guard page, so it runs through its neighbours' memory and
     * faults far below its own stack; still reported, not a bare SIGSEGV. */
    expect_report("never", "coro", "canary mode", "\"deep\"");
}

/* A bad COGENT_STACK_SIZE is refused loudly at the first stack, and the
 * default is used: spawning still works. */
static void test_bad_stack_size_env(void)
{
    const char *bad[] = {"-5", "abc", "12x", "1k", "99999999999999999999", "18446744073709551615M", " 64k", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char buf[4096];
        int st = child_status_env("auto", bad[i], "spawn", buf, sizeof buf);
        ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "COGENT_STACK_SIZE='%s': status %#x\n%s", bad[i], st, buf);
        if (bad[i][0]) /* empty means unset */
            ASSERT_(strstr(buf, "ignoring COGENT_STACK_SIZE") != NULL, "'%s' not refused:\n%s", bad[i], buf);
    }
    char buf[4096];
    int st = child_status_env("auto", "128k", "spawn", buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0 && !strstr(buf, "ignoring"), "128k: status %#x\n%s", st, buf);
}

static void test_policy_and_stats(void)
{
    co_stack_stats_t st;
    co_stack_stats(&st);
    ASSERT(st.guard_budget > 1000);                   /* a quarter of vm.max_map_count */
    co_coro_t *c = co_spawn(overflow_a_little, NULL); /* default size: fits */
    co_stack_stats_t st2;
    co_stack_stats(&st2);
    ASSERT_EQ(st2.guarded + st2.canary, st.guarded + st.canary); /* its stack comes when it first runs */
    co_yield_now();                                              /* it runs until its own yield */
    co_stack_stats(&st2);
    ASSERT_EQ(st2.guarded + st2.canary, st.guarded + st.canary + 1);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    co_stack_stats(&st2);
    ASSERT(st2.cached >= 1); /* the stack went back to the cache */
}

/* Out of address space.  A coroutine gets its stack when it first runs:
 * spawning only makes a record, and fails with ENOMEM once no record can
 * be made; a coroutine that finds no stack when its turn comes never runs,
 * and its join fails with ENOMEM.  Everything is accounted for: each
 * coroutine either ran and joined with its result, or never ran and said
 * so; nothing crashes.  In a child, under RLIMIT_AS. */
#include <sys/resource.h>
static void *nop(void *arg)
{
    co_sleep_ms(1);
    return arg;
}

static void exhaust(void *arg)
{
    (void)arg;
    co_coro_t *warm = co_spawn(nop, NULL); /* hub, poller and caches exist */
    co_join(warm, -1, NULL);
    struct rlimit rl = {.rlim_cur = 0, .rlim_max = RLIM_INFINITY};
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long vm_kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmSize:", 7)) vm_kb = atol(line + 7);
    if (f) fclose(f);
    rl.rlim_cur = (rlim_t)(vm_kb + 64 * 1024) * 1024; /* 64 MiB more than now */
    setrlimit(RLIMIT_AS, &rl);
    enum { MAX = 100000 };
    static co_coro_t *cs[MAX];
    int n = 0;
    co_spawn_opts_t o = {.stack_size = 256 * 1024};
    while (n < MAX && (cs[n] = co_spawn_with(nop, (void *)(intptr_t)n, &o)) != NULL) n++;
    int e = n < MAX ? errno : 0;
    int joined = 0, never_ran = 0;
    for (int i = 0; i < n; i++) {
        void *r = (void *)1;
        if (co_join(cs[i], -1, &r) == 0 && (intptr_t)r == i)
            joined++;
        else if (errno == ENOMEM && r == NULL)
            never_ran++;
    }
    fprintf(stderr, "spawned %d (then errno %d); joined %d, never ran %d\n", n, e, joined, never_ran);
    /* 64 MiB hold a couple of hundred 256 KiB stacks, not 100,000. */
    _exit(n > 10 && (n == MAX || e == ENOMEM) && joined > 10 && never_ran > 0 && joined + never_ran == n ? 0 : 1);
}

static void test_out_of_memory(void)
{
    char buf[1024];
    int st = run_child(exhaust, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %s", st, buf);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child")) return child_main(argv[2]);
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_guard_page_overflow);
    RUN(test_canary_overflow);
    RUN(test_bad_stack_size_env);
    RUN(test_policy_and_stats);
    RUN(test_out_of_memory);
    return TEST_MAIN_END();
}
