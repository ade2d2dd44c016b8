/* What every source file of cogent needs: the public header, build
 * switches (sanitizers), branch hints and the abort-with-a-message check.
 *
 * Error conventions, by layer (stated once here, followed everywhere):
 *  - public functions (co_*): -1 or NULL with errno, as POSIX calls do;
 *  - internal functions that wait or decide (co__park, co__wait_block,
 *    co__offload...): return 0 or an errno value, errno untouched, so
 *    that a caller can still clean up before setting errno itself;
 *  - internal functions that wrap a system call or make a resource
 *    (co__stack_get, co__fd_wait, co__timers_add, pollers): 0 or a
 *    result >= 0, else -1 with errno, like the call they wrap.
 * Each declaration says which it follows. */
#ifndef COGENT_CORE_H
#define COGENT_CORE_H

#define COGENT_BUILDING 1
#include "cogent.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>
#include <sys/single_threaded.h>
#include <time.h>

#define CO__TLS         __attribute__((tls_model("initial-exec")))
#define CO__LIKELY(x)   __builtin_expect(!!(x), 1)
#define CO__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The struct that contains `ptr` as its member `member`. */
#define CO__CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Sanitizer builds (the build passes -DCO_ASAN / -DCO_TSAN / -DCO_VALGRIND)
 * annotate every switch so the tools follow the program across stacks. */
#if defined(__SANITIZE_ADDRESS__) && !defined(CO_ASAN)
#define CO_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(CO_TSAN)
#define CO_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(CO_ASAN)
#define CO_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(CO_TSAN)
#define CO_TSAN 1
#endif
#endif
#ifndef CO_ASAN
#define CO_ASAN 0
#endif
#ifndef CO_TSAN
#define CO_TSAN 0
#endif

/* True while the process has only ever had one thread (glibc's flag, the
 * one its own mutexes use): nobody can race us, so fast paths skip their
 * locked instructions.  A thread can only appear by this thread's own
 * pthread_create, which is never called inside such a section. */
static inline bool co__single_threaded(void)
{
    return __libc_single_threaded != 0;
}

/* The CPU's hint inside a spin loop (waiting for another core). */
static inline void co__cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* CLOCK_MONOTONIC in nanoseconds: for spin budgets (co_now() is ms). */
static inline int64_t co__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Prints "cogent: <msg>" to stderr and aborts (panic.c).  For programming
 * errors: never compiled out. */
noreturn void co__panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define CO__CHECK(cond, ...)                                                                                           \
    do {                                                                                                               \
        if (CO__UNLIKELY(!(cond))) co__panic(__VA_ARGS__);                                                             \
    } while (0)

#endif
