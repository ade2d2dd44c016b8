/* Processes (process.c): what the other process modules (pipes, shared
 * objects, the process pool) and the fork path need from it.  The public
 * half is co_process_* in cogent.h; docs/process.md. */
#ifndef COGENT_PROCESS_H
#define COGENT_PROCESS_H

#include <stdnoreturn.h>
#include <sys/types.h>

#include "core.h"

/* The fork path (fork.c).  prepare/parent: the registry's lock is held
 * across fork().  In the child:
 *  - co__process_fork_clean runs before the hub's step: a fork made by
 *    co_process_start (or a pool) drops the forking thread's hub, whose
 *    coroutines are the parent's, so that the child's code starts on a
 *    clean hub (made on first use) and no copy of a parent's coroutine
 *    ever runs; its poller and doorbell descriptors are closed;
 *  - co__process_fork_child runs last: the parent's children are not the
 *    child's, so their records are dropped and the descriptors cogent
 *    made for them (pidfds, stdio pipes) are closed, with every
 *    descriptor registered with co__process_own_fd. */
void co__process_fork_prepare(void);
void co__process_fork_parent(void);
void co__process_fork_clean(void);
void co__process_fork_child(void);

/* Descriptors cogent made for its own use that no forked child may keep
 * (a pool's channels to its workers, the tracker's pipe): closed in every
 * fork child.  Never fail: a descriptor that cannot be recorded is only
 * left open in children. */
void co__process_own_fd(int fd);
void co__process_disown_fd(int fd);

/* Work done when a process ends normally -- exit(), a return from main,
 * or the return of a co_process_start child's function -- most recent
 * first: the process module terminates daemon children and waits for the
 * others; the shared-object module unlinks the names it created.  Up to
 * eight hooks; registering one twice is a no-op. */
void co__process_at_end(void (*fn)(void));
/* True once the process has begun to end normally (the hooks above run):
 * pools stop replacing workers. */
bool co__process_exiting(void);

/* Ends a child made by co_process_start: runs the end
 * hooks, flushes stdio and _exits with code & 0xff.  The parent's atexit
 * handlers do not run (as Python's os._exit after a Process's target). */
noreturn void co__process_end(int code);

/* The thread id and process id of the caller, cached (per thread, and
 * forgotten in every fork child). */
pid_t co__gettid(void);
pid_t co__getpid(void);

/* Raw system calls for code that runs where libc must not (a child
 * sharing its parent's memory, a copy of a multi-threaded process): they
 * leave errno alone and return minus an errno value. */
#if defined(__x86_64__)
static inline long co__rawsys6(long n, long a, long b, long c, long d, long e, long f)
{
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}
#elif defined(__aarch64__)
static inline long co__rawsys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
#endif
#define CO__RAW(n, a, b, c) co__rawsys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* clone(2) without libc: the child runs fn(arg) on `stack_top` and
 * exits with its return value.  libc's clone wrapper is
 * intercepted by the sanitizers, which take any clone for a fork and
 * trip over a child sharing their memory.  Returns the child's pid, or
 * minus an errno value. */
long co__raw_clone(unsigned long flags, void *stack_top, int *ptid, int (*fn)(void *), void *arg);

/* Code that runs in such a child: no sanitizer instrumentation. */
#if defined(__clang__)
#define CO__NO_SANITIZE __attribute__((no_sanitize("address", "thread", "undefined"), noinline))
#else
#define CO__NO_SANITIZE __attribute__((no_sanitize_address, no_sanitize_thread, no_sanitize_undefined, noinline))
#endif

#endif
