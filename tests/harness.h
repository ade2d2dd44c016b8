/* A tiny test harness: ASSERT_* print both operands and abort (never
 * compiled out); RUN(fn) runs one case; a test program runs every case,
 * or only the ones named on its command line (for gdb and valgrind). */
#ifndef COGENT_TEST_HARNESS_H
#define COGENT_TEST_HARNESS_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEST_SKIP 77

#define ASSERT_(cond, fmt, ...)                                                                                        \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: assertion failed: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);                    \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define ASSERT(cond) ASSERT_(cond, "%s", #cond)
#define ASSERT_EQ(a, b)                                                                                                \
    do {                                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                            \
        ASSERT_(a_ == b_, "%s == %s (%lld vs %lld)", #a, #b, a_, b_);                                                  \
    } while (0)
#define ASSERT_NE(a, b)                                                                                                \
    do {                                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                            \
        ASSERT_(a_ != b_, "%s != %s (both %lld)", #a, #b, a_);                                                         \
    } while (0)
#define ASSERT_PTR_EQ(a, b)                                                                                            \
    do {                                                                                                               \
        const void *a_ = (a), *b_ = (b);                                                                               \
        ASSERT_(a_ == b_, "%s == %s (%p vs %p)", #a, #b, a_, b_);                                                      \
    } while (0)
#define ASSERT_STR_EQ(a, b)                                                                                            \
    do {                                                                                                               \
        const char *a_ = (a), *b_ = (b);                                                                               \
        ASSERT_(a_ &&b_ && !strcmp(a_, b_), "%s == %s (\"%s\" vs \"%s\")", #a, #b, a_ ? a_ : "(null)",                 \
                b_ ? b_ : "(null)");                                                                                   \
    } while (0)
/* A call that must fail with -1 (or NULL) and this errno. */
#define ASSERT_ERR(call, err)                                                                                          \
    do {                                                                                                               \
        errno = 0;                                                                                                     \
        long long r_ = (long long)(intptr_t)(call);                                                                    \
        int e_ = errno;                                                                                                \
        ASSERT_((r_ == -1 || r_ == 0) && e_ == (err), "%s fails with %s (got %lld, errno %d %s)", #call, #err, r_, e_, \
                strerror(e_));                                                                                         \
    } while (0)
/* Elapsed time within [lo, hi] ms: generous bounds, never a benchmark. */
#define ASSERT_TIME(ms, lo, hi)                                                                                        \
    ASSERT_((ms) >= (lo) && (ms) <= (hi), "elapsed %lld ms within [%d, %d]", (long long)(ms), (lo), (hi))

static int test_argc_ __attribute__((unused));
static char **test_argv_ __attribute__((unused));
static int test_ran_ __attribute__((unused));

static inline int test_selected(const char *name)
{
    if (test_argc_ <= 1) return 1;
    for (int i = 1; i < test_argc_; i++)
        if (!strcmp(test_argv_[i], name)) return 1;
    return 0;
}

/* After every case, like libuv's MAKE_VALGRIND_HAPPY: the case must leave
 * the process as it found it.  Checked: no coroutine and no timer left on
 * this thread's hub, the same open descriptors, and the same threads of
 * the program's own (cogent's helpers, named "cogent-*", are pools that
 * outlive a case by design).  A case that ends otherwise fails, naming
 * what it left.  Cases that must abort run in a child (run_child). */
static void test_leaks_before_(int *fds, int *threads);
static void test_leaks_after_(const char *name, int fds, int threads);

#define RUN(fn)                                                                                                        \
    do {                                                                                                               \
        if (test_selected(#fn)) {                                                                                      \
            int fds_, threads_;                                                                                        \
            fprintf(stderr, "  %s\n", #fn);                                                                            \
            test_leaks_before_(&fds_, &threads_);                                                                      \
            fn();                                                                                                      \
            test_leaks_after_(#fn, fds_, threads_);                                                                    \
            test_ran_++;                                                                                               \
        }                                                                                                              \
    } while (0)

/* Sanitizer builds, for the few cases they cannot follow. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifndef TEST_SANITIZED
#define TEST_SANITIZED 0
#endif
/* ThreadSanitizer alone, for the cases it cannot follow (fibers across
 * fork, its own map-count needs). */
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifndef TEST_TSAN
#define TEST_TSAN 0
#endif

/* ThreadSanitizer starts a thread of its own with the first thread the
 * program makes: start it before the first case counts threads. */
#include <pthread.h>
static void *test_nothing_(void *arg)
{
    return arg;
}
static inline void test_start_(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, test_nothing_, NULL) == 0) pthread_join(t, NULL);
}

#define TEST_MAIN_BEGIN(argc, argv)                                                                                    \
    test_argc_ = (argc);                                                                                               \
    test_argv_ = (argv);                                                                                               \
    test_start_();                                                                                                     \
    fprintf(stderr, "%s\n", (argv)[0])
#define TEST_MAIN_END() (test_ran_ > 0 ? 0 : (fprintf(stderr, "no test case matched\n"), 1))

/* Open descriptors of this process: a test that ends with more than it
 * began with leaked one. */
#include <dirent.h>
static inline int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) abort();
    while (readdir(d)) n++;
    closedir(d);
    return n;
}
/* The kernel's own count of this process's threads (one atomic figure). */
static inline int nthreads_status_(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) abort();
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

/* Threads of this process that are not cogent's helpers.  A listing of
 * /proc/self/task ends early when the thread it stands on exits during
 * the walk (the kernel stops at a dead entry), so one walk can miss live
 * threads: a walk counts only when it saw as many entries as the kernel
 * counted before and after it. */
static inline int count_threads(void)
{
    for (int attempt = 0;; attempt++) {
        int before = nthreads_status_(), seen = 0, n = 0;
        DIR *d = opendir("/proc/self/task");
        if (!d) abort();
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            seen++;
            char path[300], comm[32] = "";
            snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
            FILE *f = fopen(path, "re");
            if (!f) {
                if (errno != ENOENT && errno != ESRCH) n++; /* there, but unreadable: count it */
                continue;                                   /* exited meanwhile: the counts below differ */
            }
            if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
            fclose(f);
            if (strncmp(comm, "cogent-", 7) != 0) n++;
        }
        closedir(d);
        if ((seen == before && nthreads_status_() == before) || attempt == 2000) return n;
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
}

#include <cogent.h>
#include <time.h>

static void test_leaks_before_(int *fds, int *threads)
{
    (void)co_hub_poller(); /* the thread's hub (two fds) lives from its first use on */
    *fds = count_fds();
    *threads = count_threads();
}

static void test_leaks_after_(const char *name, int fds, int threads)
{
    co_hub_stats_t st;
    co_hub_stats(&st);
    ASSERT_(st.coroutines == 0, "%s left %zu coroutine(s) on the hub", name, st.coroutines);
    ASSERT_(st.timers == 0, "%s left %zu timer(s) armed", name, st.timers);
    ASSERT_(count_fds() == fds, "%s left %d descriptor(s) open", name, count_fds() - fds);
    /* A thread the case joined is gone; one it detached may still be on
     * its way out: give it a moment. */
    for (int i = 0; i < 200 && count_threads() > threads; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    /* Fewer is no leak: a thread joined just before the case began (the
     * one test_start_ makes) may still have been listed in /proc then --
     * pthread_join returns when the thread is done, a moment before the
     * kernel takes its entry away. */
    ASSERT_(count_threads() <= threads, "%s left %d thread(s) running", name, count_threads() - threads);
}

/* Brackets a case that must leave the fd count as it found it. */
static int fds_before_ __attribute__((unused));
#define FDS_BEGIN() (fds_before_ = count_fds())
#define FDS_END()   ASSERT_EQ(count_fds(), fds_before_)

/* Runs fn in a child process and returns its wait status; the child's
 * stderr is captured into buf (for asserting on reports). */
#include <sys/wait.h>
#include <unistd.h>
static inline int run_child(void (*fn)(void *), void *arg, char *buf, size_t cap)
{
    int p[2];
    if (pipe(p) < 0) abort();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, cap - 1 - n)) > 0) n += (size_t)r;
    buf[n] = '\0';
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return st;
}

#endif
