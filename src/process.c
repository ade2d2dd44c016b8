/* Child processes: co_process_start (a function of the program in a
 * forked child) and co_process_exec (a program), joined, signalled and
 * always reaped.
 *
 * Reaping.  Every started child has a record in the registry until it is
 * reaped.  A helper thread, "cogent-reaper", polls the pidfds of every
 * child that has not ended and reaps each one as it ends, whether or not
 * anyone joins it: no zombie outlives its child.  A joiner does not go
 * through that thread: it waits on the child's pidfd on its own hub's
 * poller (or poll(2), on a thread without a hub) and reaps the child
 * itself if it gets there first; the registry's lock makes whoever comes
 * first the only one to call waitid, and a child is only ever reaped by
 * its pid or pidfd, never with waitpid(-1): children cogent did not start
 * are never touched.  Where the kernel has no pidfds (before 5.3, or
 * COGENT_PIDFD=0 for the tests), the reaper and joiners look at the
 * children with waitid(WNOHANG) every few milliseconds (backing off to
 * 50 ms, as Python's Popen.wait).
 * A signal is only sent to a child that has not been reaped, under the
 * same lock: its pid cannot have been reused.
 *
 * Starting.  co_process_start forks (through the one fork path, fork.c);
 * the child drops the forking thread's hub before anything runs there
 * (co__process_fork_clean), so it starts clean.  co_process_exec does not
 * copy the parent at all: clone(CLONE_VM | CLONE_VFORK) runs a few raw
 * system calls on a small stack of its own -- reset signal handlers,
 * redirect stdio, close descriptors, chdir, execve -- while the parent
 * waits, which is what glibc's posix_spawn does, plus what posix_spawn
 * cannot (PR_SET_PDEATHSIG for daemons).  An exec failure comes back
 * through the shared memory, so the caller gets ENOENT at once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd.h"
#include "fork.h"
#include "helper.h"
#include "hub.h"
#include "process.h"
#include "pshared.h"
#include "sys.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif

extern char **environ;

enum { P_NEW = 0, P_RUNNING, P_ENDED };

typedef struct buf {
    char *data;
    size_t len, cap;
} buf_t;

struct co_process {
    co__lnode_t node; /* the registry (reg_mu), from start to free */
    pid_t pid;
    pid_t owner; /* getpid() of the process that started it */
    int pidfd;   /* -1: no pidfd */
    int state;   /* P_*: reg_mu to change, atomic to read */
    int code;    /* the exit code once ended; CO_EXIT_NONE if lost */
    bool lost;   /* reaped by the program itself */
    bool freed;  /* the handle was freed: the record goes when reaped (reg_mu) */
    bool daemon;
    bool exec;
    bool foreign;     /* a fork child's copy of its parent's record: not ours */
    unsigned joiners; /* atomic: callers inside co_process_join */
    co_process_fn fn;
    void *arg;
    char *name;
    co_stdio_t mode[3];
    int user_fd[3]; /* CO_STDIO_FD */
    int pipe[3];    /* the parent's ends, -1 */
    /* communicate's progress, kept across calls that time out */
    size_t in_off;
    buf_t out, err;
    bool in_done;
};

/* ------------------------------------------------------------ registry */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static co__list_t records;       /* every record of a started child not yet freed and reaped */
static size_t nlive;             /* records not yet reaped (reg_mu) */
static unsigned serial;          /* atomic: "Process-<n>" */
static int use_pidfd = -1;       /* -1 unknown, then 0 / 1 */
static bool pidfd_waitid = true; /* waitid(P_PIDFD) works (5.4+) */
static bool exiting;             /* atomic: the end hooks run */

/* The reaper. */
static int kick_fd = -1; /* eventfd: the set of live children changed */
static bool reaper_running;

/* Set around fork() by co_process_start: the child drops the hub. */
static __thread bool clean_fork;
/* In a child made by co_process_start: its own record (a copy). */
static co_process_t *self_record;

static bool pidfd_supported(void)
{
    int u = __atomic_load_n(&use_pidfd, __ATOMIC_RELAXED);
    if (u >= 0) return u;
    const char *env = getenv("COGENT_PIDFD");
    bool ok = !(env && !strcmp(env, "0"));
    if (ok) {
        int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        if (fd < 0)
            ok = false;
        else
            co__sys_close(fd);
    }
    __atomic_store_n(&use_pidfd, ok, __ATOMIC_RELAXED);
    return ok;
}

/* ------------------------------------------------------- thread ids */

static unsigned fork_gen; /* bumped in every fork child */

pid_t co__gettid(void)
{
    static __thread pid_t tid;
    static __thread unsigned gen;
    unsigned g = __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
    if (CO__UNLIKELY(tid == 0 || gen != g)) {
        tid = (pid_t)syscall(SYS_gettid);
        gen = g;
    }
    return tid;
}

pid_t co__getpid(void)
{
    static pid_t pid;
    static unsigned gen;
    unsigned g = __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
    pid_t p = __atomic_load_n(&pid, __ATOMIC_RELAXED);
    if (CO__UNLIKELY(p == 0 || __atomic_load_n(&gen, __ATOMIC_RELAXED) != g)) {
        p = getpid();
        __atomic_store_n(&gen, g, __ATOMIC_RELAXED);
        __atomic_store_n(&pid, p, __ATOMIC_RELAXED);
    }
    return p;
}

int co_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ------------------------------------------------------------ end hooks */

#define MAX_HOOKS 8
static void (*hooks[MAX_HOOKS])(void);
static unsigned nhooks;
static pthread_mutex_t hooks_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

static void run_end_hooks(void)
{
    __atomic_store_n(&exiting, true, __ATOMIC_RELAXED);
    pthread_mutex_lock(&hooks_mu);
    unsigned n = nhooks;
    void (*h[MAX_HOOKS])(void);
    memcpy(h, hooks, sizeof h);
    pthread_mutex_unlock(&hooks_mu);
    while (n > 0) h[--n]();
}

static void register_atexit(void)
{
    atexit(run_end_hooks);
}

void co__process_at_end(void (*fn)(void))
{
    pthread_once(&atexit_once, register_atexit);
    pthread_mutex_lock(&hooks_mu);
    bool have = false;
    for (unsigned i = 0; i < nhooks; i++) have |= hooks[i] == fn;
    if (!have && nhooks < MAX_HOOKS) hooks[nhooks++] = fn;
    pthread_mutex_unlock(&hooks_mu);
}

bool co__process_exiting(void)
{
    return __atomic_load_n(&exiting, __ATOMIC_RELAXED);
}

noreturn void co__process_end(int code)
{
    run_end_hooks();
    fflush(NULL);
    _exit(code & 0xff);
}

void co_process_exit(int code)
{
    if (self_record) co__process_end(code);
    exit(code);
}

/* -------------------------------------------------------- owned fds */

static int *owned;
static size_t nowned, capowned;

void co__process_own_fd(int fd)
{
    pthread_mutex_lock(&reg_mu);
    if (nowned == capowned) {
        size_t cap = capowned ? capowned * 2 : 16;
        int *o = realloc(owned, cap * sizeof *o);
        if (o) {
            owned = o;
            capowned = cap;
        }
    }
    if (nowned < capowned) owned[nowned++] = fd;
    pthread_mutex_unlock(&reg_mu);
}

void co__process_disown_fd(int fd)
{
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < nowned; i++)
        if (owned[i] == fd) {
            owned[i] = owned[--nowned];
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

/* ------------------------------------------------------------- reaping */

static int code_of(const siginfo_t *si)
{
    if (si->si_code == CLD_EXITED) return si->si_status;
    return -si->si_status; /* CLD_KILLED, CLD_DUMPED */
}

static void record_free(co_process_t *p);

/* Collects p's exit status if it has ended; reg_mu held.  True once p has
 * ended (now or before).  A record freed by its handle goes with it. */
static bool reap_locked(co_process_t *p)
{
    if (p->state == P_ENDED) return true;
    if (p->state != P_RUNNING) return false;
    siginfo_t si;
    for (;;) {
        memset(&si, 0, sizeof si);
        long r;
        if (p->pidfd >= 0 && pidfd_waitid)
            r = syscall(SYS_waitid, P_PIDFD, p->pidfd, &si, WEXITED | WNOHANG, NULL);
        else
            r = syscall(SYS_waitid, P_PID, p->pid, &si, WEXITED | WNOHANG, NULL);
        if (r == 0) break;
        if (errno == EINTR) continue;
        if (errno == EINVAL && p->pidfd >= 0 && pidfd_waitid) {
            pidfd_waitid = false; /* 5.3: pidfds, but no waitid on them */
            continue;
        }
        if (errno != ECHILD) return false;
        p->lost = true; /* the program reaped it (waitpid(-1), SIGCHLD ignored) */
        break;
    }
    if (!p->lost && si.si_pid == 0) return false; /* still running */
    p->code = p->lost ? CO_EXIT_NONE : code_of(&si);
    __atomic_store_n(&p->state, P_ENDED, __ATOMIC_RELEASE);
    nlive--;
    if (p->freed) {
        co__list_remove(&records, &p->node);
        record_free(p);
    }
    return true;
}

/* Wakes the reaper: the set of children to watch changed. */
static void kick_reaper(void)
{
    uint64_t one = 1;
    ssize_t w = co__sys_write(kick_fd, &one, sizeof one);
    (void)w;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void *reaper(void *unused)
{
    (void)unused;
    /* Fixed arrays: a program with more live children than fit is
     * watched in turns (the rest are reaped at the next turn). */
    enum { CAP = 1024 };
    static struct pollfd pf[CAP];
    static int ready[CAP];
    const size_t cap = CAP;
    int backoff = 1;
    for (;;) {
        pthread_mutex_lock(&reg_mu);
        bool pidfds = use_pidfd == 1;
        size_t n = 1;
        pf[0] = (struct pollfd){.fd = kick_fd, .events = POLLIN};
        for (co__lnode_t *l = records.head; l && n < cap; l = l->next) {
            co_process_t *p = CO__CONTAINER(l, co_process_t, node);
            if (p->state != P_RUNNING || p->pidfd < 0) continue;
            pf[n++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
        }
        bool any = nlive > 0;
        bool all_watched = n - 1 == nlive;
        pthread_mutex_unlock(&reg_mu);
        /* Without pidfds, look again after a while (1 ms, doubling to
         * 50 ms; a new child starts over). */
        int timeout = (any && (!pidfds || !all_watched)) ? backoff : -1;
        int r = co__sys_poll(pf, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR) continue;
        if (pf[0].revents & POLLIN) {
            uint64_t v;
            ssize_t rd = co__sys_read(kick_fd, &v, sizeof v);
            (void)rd;
            backoff = 1;
        } else if (backoff < 50) {
            backoff *= 2;
        }
        /* The records may have been freed meanwhile: find the ready ones
         * again by their pidfd (a number reused by a newer child only
         * costs that one a look). */
        size_t nready = 0;
        for (size_t i = 1; i < n; i++)
            if (pf[i].revents) ready[nready++] = pf[i].fd;
        qsort(ready, nready, sizeof ready[0], cmp_int);
        pthread_mutex_lock(&reg_mu);
        if (pidfds && all_watched) {
            for (co__lnode_t *l = records.head, *next; l && nready; l = next) {
                next = l->next;
                co_process_t *p = CO__CONTAINER(l, co_process_t, node);
                if (p->state == P_RUNNING && p->pidfd >= 0 &&
                    bsearch(&p->pidfd, ready, nready, sizeof ready[0], cmp_int))
                    reap_locked(p);
            }
        } else {
            for (co__lnode_t *l = records.head, *next; l; l = next) {
                next = l->next; /* reap_locked may free l's record */
                reap_locked(CO__CONTAINER(l, co_process_t, node));
            }
        }
        pthread_mutex_unlock(&reg_mu);
    }
    return NULL;
}

/* Starts the reaper once per process; reg_mu held.  0 or an errno. */
static int reaper_start_locked(void)
{
    if (reaper_running) return 0;
    if (kick_fd < 0) {
        kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (kick_fd < 0) return errno;
    }
    int e = co__helper_start("reaper", reaper, NULL, 64 * 1024);
    if (e) return e;
    reaper_running = true;
    return 0;
}

static void end_children(void);

/* Records a started child; reg_mu NOT held.  0 or an errno value. */
static int registry_add(co_process_t *p)
{
    pthread_mutex_lock(&reg_mu);
    int e = reaper_start_locked();
    if (e == 0) {
        co__list_push(&records, &p->node);
        nlive++;
        __atomic_store_n(&p->state, P_RUNNING, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&reg_mu);
    if (e == 0) kick_reaper();
    co__process_at_end(end_children);
    return e;
}

/* ------------------------------------------------------------- records */

static co_process_t *record_new(const co_process_opts_t *opts, const char *dflt_name)
{
    co_process_opts_t o = opts ? *opts : (co_process_opts_t){0};
    co_process_t *p = calloc(1, sizeof *p);
    if (!p) return errno = ENOMEM, NULL;
    p->pidfd = -1;
    p->code = CO_EXIT_NONE;
    p->daemon = o.daemon;
    p->mode[0] = o.stdin_mode;
    p->mode[1] = o.stdout_mode;
    p->mode[2] = o.stderr_mode;
    p->user_fd[0] = o.stdin_fd;
    p->user_fd[1] = o.stdout_fd;
    p->user_fd[2] = o.stderr_fd;
    p->pipe[0] = p->pipe[1] = p->pipe[2] = -1;
    for (int i = 0; i < 3; i++)
        if ((unsigned)p->mode[i] > CO_STDIO_FD || (p->mode[i] == CO_STDIO_STDOUT && i != 2)) {
            free(p);
            return errno = EINVAL, NULL;
        }
    char num[32];
    if (o.name)
        p->name = strdup(o.name);
    else if (dflt_name)
        p->name = strdup(dflt_name);
    else {
        snprintf(num, sizeof num, "Process-%u", __atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED));
        p->name = strdup(num);
    }
    if (!p->name) {
        free(p);
        return errno = ENOMEM, NULL;
    }
    return p;
}

static void close_pipes(co_process_t *p)
{
    for (int i = 0; i < 3; i++)
        if (p->pipe[i] >= 0) {
            co_close(p->pipe[i]);
            p->pipe[i] = -1;
        }
}

static void record_free(co_process_t *p)
{
    if (!p->foreign) {
        close_pipes(p);
        if (p->pidfd >= 0) co_close(p->pidfd);
    }
    free(p->out.data);
    free(p->err.data);
    free(p->name);
    free(p);
}

co_process_t *co_process_new(co_process_fn fn, void *arg, const co_process_opts_t *opts)
{
    if (!fn) return errno = EINVAL, NULL;
    co_process_t *p = record_new(opts, NULL);
    if (!p) return NULL;
    p->fn = fn;
    p->arg = arg;
    return p;
}

void co_process_free(co_process_t *p)
{
    if (!p) return;
    if (p->foreign || __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == P_NEW) {
        record_free(p);
        return;
    }
    CO__CHECK(__atomic_load_n(&p->joiners, __ATOMIC_ACQUIRE) == 0, "co_process_free: process %d (%s) is being joined",
              (int)p->pid, p->name);
    pthread_mutex_lock(&reg_mu);
    close_pipes(p); /* the child may still read: it sees EOF, as after a parent's exit */
    if (p->state == P_ENDED) {
        co__list_remove(&records, &p->node);
        record_free(p);
    } else {
        p->freed = true; /* reaped later by the reaper, which frees it */
    }
    pthread_mutex_unlock(&reg_mu);
}

/* -------------------------------------------------------------- stdio */

/* Makes the descriptors a child's stdio is redirected to: child[i] is the
 * child's end (-1: inherit), p->pipe[i] the parent's end of a pipe.  Every
 * child end is >= 3 and close-on-exec (the child dup2s it into place), so
 * that no redirection overwrites another's source.  0 or an errno value;
 * on failure nothing is left open. */
static int stdio_make(co_process_t *p, int child[3])
{
    int err = 0;
    child[0] = child[1] = child[2] = -1;
    for (int i = 0; i < 3 && !err; i++) {
        int fd = -1;
        switch (p->mode[i]) {
        case CO_STDIO_INHERIT:
            break;
        case CO_STDIO_DEVNULL:
            fd = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
            if (fd < 0) err = errno;
            break;
        case CO_STDIO_FD:
            fd = fcntl(p->user_fd[i], F_DUPFD_CLOEXEC, 3);
            if (fd < 0) err = errno == EINVAL ? EBADF : errno;
            break;
        case CO_STDIO_STDOUT:
            if (child[1] >= 0) {
                fd = fcntl(child[1], F_DUPFD_CLOEXEC, 3);
                if (fd < 0) err = errno;
            } else {
                fd = fcntl(1, F_DUPFD_CLOEXEC, 3); /* stdout as it is */
                if (fd < 0) err = errno == EBADF ? 0 : errno;
            }
            break;
        case CO_STDIO_PIPE: {
            int pp[2];
            if (pipe2(pp, O_CLOEXEC) < 0) {
                err = errno;
                break;
            }
            int mine = i == 0 ? pp[1] : pp[0];
            int theirs = i == 0 ? pp[0] : pp[1];
            if (theirs < 3) { /* stdio closed in the parent: keep clear of 0..2 */
                int d = fcntl(theirs, F_DUPFD_CLOEXEC, 3);
                co__sys_close(theirs);
                theirs = d;
            }
            if (mine < 3) {
                int d = fcntl(mine, F_DUPFD_CLOEXEC, 3);
                co__sys_close(mine);
                mine = d;
            }
            if (mine < 0 || theirs < 0) {
                err = errno;
                if (mine >= 0) co__sys_close(mine);
                if (theirs >= 0) co__sys_close(theirs);
                break;
            }
            co__sys_fcntl(mine, F_SETFL, O_NONBLOCK);
            co__fd_new(mine, CO__FD_PIPE | CO__FD_NB | CO__FD_NB_OURS);
            p->pipe[i] = mine;
            fd = theirs;
            break;
        }
        default:
            err = EINVAL;
        }
        child[i] = fd;
    }
    if (err) {
        for (int i = 0; i < 3; i++)
            if (child[i] >= 0) co__sys_close(child[i]);
        close_pipes(p);
    }
    return err;
}

static void stdio_close_child(int child[3])
{
    for (int i = 0; i < 3; i++)
        if (child[i] >= 0) co__sys_close(child[i]);
}

/* --------------------------------------------------- co_process_start */

static size_t thread_stack_size(void)
{
    struct rlimit rl;
    size_t s = 8u << 20;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= CO_STACK_MIN)
        s = rl.rlim_cur > ((size_t)64 << 20) ? ((size_t)64 << 20) : (size_t)rl.rlim_cur;
    return s;
}

static void *fiber_body(co_fiber_t *self, void *unused)
{
    (void)self;
    (void)unused;
    co__process_end(self_record->fn(self_record->arg));
}

/* The child of co_process_start, after the fork path ran (its hub is
 * clean, the parent's records are gone). */
static noreturn void child_main(co_process_t *p, int child[3], pid_t parent)
{
    if (p->daemon) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1); /* the parent died before the line above */
    }
    for (int i = 0; i < 3; i++) {
        if (p->pipe[i] >= 0) co_close(p->pipe[i]); /* the parent's ends */
        p->pipe[i] = -1;
        if (child[i] >= 0) {
            co__sys_dup3(child[i], i, 0);
            co__sys_close(child[i]);
            co_fd_forget(i);
        }
    }
    self_record = p;
    /* fn gets a stack of the size a process's thread has, also when the
     * fork was made from a coroutine (whose stack is small). */
    if (co__tls.cur == &co__tls.main_fiber || co__tls.cur == NULL) co__process_end(p->fn(p->arg));
    /* Forked from a compact coroutine: the hub's shared stack it runs on
     * is this child's alone now (the hub was dropped, nothing else will
     * run on it or move it), so it may be switched away from like a
     * guarded stack of its own. */
    if (co__tls.cur->stack.mode == CO__STACK_SHARED) co__tls.cur->stack.mode = CO_STACK_GUARD;
    co_fiber_opts_t fo = {.stack_size = thread_stack_size()};
    co_fiber_t *f = co_fiber_new(fiber_body, NULL, &fo);
    if (!f) {
        fprintf(stderr, "cogent: process %s: no stack for its function\n", p->name);
        co__process_end(1);
    }
    co_fiber_switch(f, NULL);
    abort(); /* not reached: fiber_body ends the process */
}

int co_process_start(co_process_t *p)
{
    CO__CHECK(p != NULL, "co_process_start: NULL process");
    /* (The reaper thread may be ending it right now: an atomic read.) */
    if (p->foreign || p->exec || __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != P_NEW || p->pid)
        return errno = EINVAL, -1;
    if (co__process_exiting()) return errno = EAGAIN, -1;
    bool pidfds = pidfd_supported();
    int child[3];
    int e = stdio_make(p, child);
    if (e) return errno = e, -1;
    pid_t parent = getpid();
    co__fork_init(); /* the fork path must run even if cogent had nothing to reset yet */
    fflush(NULL);    /* no buffered output printed twice (Python does the same) */
    clean_fork = true;
    pid_t pid = fork();
    if (pid == 0) child_main(p, child, parent);
    int fork_err = errno;
    clean_fork = false;
    stdio_close_child(child);
    if (pid < 0) {
        close_pipes(p);
        return errno = fork_err == ENOMEM ? ENOMEM : EAGAIN, -1;
    }
    p->pid = pid;
    p->owner = parent;
    if (pidfds) {
        p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (p->pidfd >= 0) co__fd_new(p->pidfd, 0);
    }
    e = registry_add(p);
    if (e) {
        /* No reaper: reap it here, now, rather than leave a zombie. */
        kill(pid, SIGKILL);
        siginfo_t si;
        syscall(SYS_waitid, P_PID, pid, &si, WEXITED, NULL);
        close_pipes(p);
        if (p->pidfd >= 0) co_close(p->pidfd);
        p->pidfd = -1;
        p->pid = 0;
        return errno = e, -1;
    }
    return 0;
}

/* ---------------------------------------------------- co_process_exec */

typedef struct spawn {
    char *const *argv;
    char *const *envp;
    char **paths; /* candidates for argv[0] */
    size_t npaths;
    const char *cwd;
    int child[3];
    const int *pass;
    size_t npass;
    int maxfd; /* highest descriptor, for the close fallback */
    bool daemon;
    sigset_t mask; /* the caller's signal mask, for the program */
    volatile int err;
} spawn_t;

#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".globl co__raw_clone\n"
        ".hidden co__raw_clone\n"
        ".type co__raw_clone,@function\n"
        "co__raw_clone:\n" /* rdi flags, rsi stack, rdx ptid, rcx fn, r8 arg */
        "  and $-16, %rsi\n"
        "  sub $16, %rsi\n"
        "  mov %rcx, 8(%rsi)\n" /* fn and arg wait on the child's stack */
        "  mov %r8, 0(%rsi)\n"
        "  mov $56, %eax\n" /* clone(flags, newsp, ptid, ctid = 0, tls = 0) */
        "  xor %r10d, %r10d\n"
        "  xor %r8d, %r8d\n"
        "  syscall\n"
        "  test %rax, %rax\n"
        "  jnz 1f\n"
        "  xor %ebp, %ebp\n" /* the child: outermost frame */
        "  pop %rdi\n"
        "  pop %rax\n"
        "  call *%rax\n"
        "  mov %eax, %edi\n"
        "  mov $231, %eax\n" /* exit_group */
        "  syscall\n"
        "  hlt\n"
        "1: ret\n"
        ".size co__raw_clone, .-co__raw_clone\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".p2align 2\n"
        ".globl co__raw_clone\n"
        ".hidden co__raw_clone\n"
        ".type co__raw_clone,%function\n"
        "co__raw_clone:\n" /* x0 flags, x1 stack, x2 ptid, x3 fn, x4 arg */
        "  hint 34\n"      /* bti c */
        "  and x1, x1, #-16\n"
        "  stp x3, x4, [x1, #-16]!\n"
        "  mov x3, xzr\n" /* clone(flags, newsp, ptid, tls = 0, ctid = 0) */
        "  mov x4, xzr\n"
        "  mov x8, #220\n"
        "  svc #0\n"
        "  cbnz x0, 1f\n"
        "  mov x29, xzr\n" /* the child: outermost frame */
        "  mov x30, xzr\n"
        "  ldp x3, x0, [sp], #16\n"
        "  blr x3\n"
        "  mov x8, #94\n" /* exit_group */
        "  svc #0\n"
        "1: ret\n"
        ".size co__raw_clone, .-co__raw_clone\n");
#endif

/* The kernel's struct sigaction (what rt_sigaction takes). */
struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

/* The child of co_process_exec: runs on its own stack in the parent's
 * memory, while the parent is suspended (CLONE_VFORK).  Raw system calls
 * only, no instrumentation: nothing here may touch the parent's state. */
CO__NO_SANITIZE static int spawn_child(void *arg)
{
    spawn_t *s = arg;
    long r;
    /* Signals are blocked (the parent blocked them all before clone).  A
     * handler of the parent must not run here, in its memory: every
     * caught signal goes back to its default action (ignored ones stay
     * ignored, as execve keeps them). */
    for (int sig = 1; sig < 65; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct ksigaction old = {0}, dfl = {0};
        if (co__rawsys6(SYS_rt_sigaction, sig, 0, (long)&old, 8, 0, 0) == 0 && old.handler != (void *)SIG_DFL &&
            old.handler != (void *)SIG_IGN)
            co__rawsys6(SYS_rt_sigaction, sig, (long)&dfl, 0, 8, 0, 0);
    }
    if (s->daemon) CO__RAW(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
    for (int i = 0; i < 3; i++)
        if (s->child[i] >= 0 && (r = CO__RAW(SYS_dup3, s->child[i], i, 0)) < 0) goto fail;
    /* Every other descriptor above 2 goes: close-on-exec for all (one
     * call), then the kept ones are kept. */
    if (CO__RAW(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        for (int fd = 3; fd <= s->maxfd; fd++) CO__RAW(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
    for (size_t i = 0; i < s->npass; i++)
        if (s->pass[i] > 2 && (r = CO__RAW(SYS_fcntl, s->pass[i], F_SETFD, 0)) < 0) goto fail;
    if (s->cwd && (r = CO__RAW(SYS_chdir, s->cwd, 0, 0)) < 0) goto fail;
    co__rawsys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&s->mask, 0, 8, 0, 0);
    r = -ENOENT;
    long seen_eacces = 0;
    for (size_t i = 0; i < s->npaths; i++) {
        r = CO__RAW(SYS_execve, s->paths[i], s->argv, s->envp);
        if (r == -EACCES)
            seen_eacces = 1;
        else if (r != -ENOENT && r != -ENOTDIR)
            break; /* a program was found and could not run */
    }
    if ((r == -ENOENT || r == -ENOTDIR) && seen_eacces) r = -EACCES; /* as execvp says */
fail:
    s->err = (int)-r;
    CO__RAW(SYS_exit_group, 127, 0, 0);
    return 0;
}

static void free_paths(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

/* The places execvp would try for `file`, in order. */
static int find_paths(const char *file, char ***out, size_t *n)
{
    *n = 0;
    if (strchr(file, '/')) {
        char **p = malloc(sizeof *p);
        if (!p || !(p[0] = strdup(file))) return free(p), ENOMEM;
        *out = p;
        *n = 1;
        return 0;
    }
    if (!*file) return ENOENT;
    const char *path = getenv("PATH");
    if (!path) path = "/bin:/usr/bin";
    size_t cnt = 1;
    for (const char *c = path; *c; c++) cnt += *c == ':';
    char **p = calloc(cnt, sizeof *p);
    if (!p) return ENOMEM;
    size_t k = 0;
    for (const char *s = path;; s++) {
        const char *e = strchrnul(s, ':');
        size_t dl = (size_t)(e - s);
        char *full = malloc(dl + strlen(file) + 2);
        if (!full) return free_paths(p, k), ENOMEM;
        if (dl == 0) /* an empty entry is the current directory */
            memcpy(full, file, strlen(file) + 1);
        else
            sprintf(full, "%.*s/%s", (int)dl, s, file);
        p[k++] = full;
        if (!*e) break;
        s = e;
    }
    *out = p;
    *n = k;
    return 0;
}

/* Whether close_range(CLOSE_RANGE_CLOEXEC) works (5.11+): if not, the
 * child marks every descriptor up to the highest one, one at a time. */
static int cloexec_range = -1;

static int highest_fd(void)
{
    if (cloexec_range < 0) cloexec_range = syscall(SYS_close_range, ~0U, ~0U, CLOSE_RANGE_CLOEXEC) == 0;
    if (cloexec_range) return -1;
    int hi = 1024;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return hi;
    hi = 2;
    struct dirent *de;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name);
        if (fd > hi) hi = fd;
    }
    closedir(d);
    return hi;
}

#define SPAWN_STACK (32 * 1024)

co_process_t *co_process_exec(const char *const argv[], const co_process_opts_t *opts)
{
    if (!argv || !argv[0]) return errno = EINVAL, NULL;
    if (co__process_exiting()) return errno = EAGAIN, NULL;
    co_process_t *p = record_new(opts, argv[0]);
    if (!p) return NULL;
    p->exec = true;
    spawn_t s = {.argv = (char *const *)argv,
                 .envp = (char *const *)(opts && opts->env ? opts->env : (const char *const *)environ),
                 .cwd = opts ? opts->cwd : NULL,
                 .pass = opts ? opts->pass_fds : NULL,
                 .npass = opts ? opts->npass_fds : 0,
                 .daemon = p->daemon,
                 .maxfd = -1};
    int e = find_paths(argv[0], &s.paths, &s.npaths);
    if (e) {
        record_free(p);
        return errno = e, NULL;
    }
    char *stack = malloc(SPAWN_STACK);
    if (!stack) {
        free_paths(s.paths, s.npaths);
        record_free(p);
        return errno = ENOMEM, NULL;
    }
    for (size_t i = 0; i < s.npass; i++)
        if (fcntl(s.pass[i], F_GETFD) < 0) e = EBADF;
    if (!e) e = stdio_make(p, s.child);
    if (e) {
        free(stack);
        free_paths(s.paths, s.npaths);
        record_free(p);
        return errno = e, NULL;
    }
    /* The fallback when close_range(CLOSE_RANGE_CLOEXEC) is missing. */
    s.maxfd = highest_fd();
    bool pidfds = pidfd_supported();
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &s.mask);
    int pidfd = -1;
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD | (pidfds ? CLONE_PIDFD : 0);
    long pid = co__raw_clone((unsigned long)flags, stack + SPAWN_STACK, &pidfd, spawn_child, &s);
    if (pid == -EINVAL && pidfds) { /* CLONE_PIDFD is 5.2+ */
        flags &= ~CLONE_PIDFD;
        pid = co__raw_clone((unsigned long)flags, stack + SPAWN_STACK, &pidfd, spawn_child, &s);
    }
    int clone_err = pid < 0 ? (int)-pid : 0;
    pthread_sigmask(SIG_SETMASK, &s.mask, NULL);
    free(stack);
    free_paths(s.paths, s.npaths);
    stdio_close_child(s.child);
    if (pid < 0 || s.err) {
        if (pid > 0) { /* it ran, could not exec, and exited: reap it */
            siginfo_t si;
            syscall(SYS_waitid, P_PID, pid, &si, WEXITED, NULL);
            if (pidfd >= 0) co__sys_close(pidfd);
        }
        e = pid < 0 ? (clone_err == ENOMEM ? ENOMEM : EAGAIN) : s.err;
        close_pipes(p);
        record_free(p);
        return errno = e, NULL;
    }
    p->pid = (pid_t)pid;
    p->owner = getpid();
    if (pidfds && !(flags & CLONE_PIDFD)) pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    p->pidfd = pidfd;
    if (pidfd >= 0) {
        co__sys_fcntl(pidfd, F_SETFD, FD_CLOEXEC);
        co__fd_new(pidfd, 0);
    }
    e = registry_add(p);
    if (e) {
        kill(pid, SIGKILL);
        siginfo_t si;
        syscall(SYS_waitid, P_PID, pid, &si, WEXITED, NULL);
        record_free(p);
        return errno = e, NULL;
    }
    return p;
}

/* ------------------------------------------------------ join, signals */

static int state_of(const co_process_t *p)
{
    return __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
}

/* Reaps p if it has ended.  True if it has. */
static bool try_reap(co_process_t *p)
{
    if (state_of(p) == P_ENDED) return true;
    pthread_mutex_lock(&reg_mu);
    bool done = reap_locked(p);
    pthread_mutex_unlock(&reg_mu);
    return done;
}

/* Sleeps a little (until `until` at most), parking a coroutine. */
static int nap_until(int64_t until)
{
    if (co__tls.hub) return co_sleep_until(until);
    int64_t left = until - co_now();
    if (left > 0) {
        struct timespec ts = {left / 1000, (long)(left % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int join(co_process_t *p, int64_t deadline)
{
    int backoff = 1;
    for (;;) {
        if (try_reap(p)) return p->lost ? (errno = ECHILD, -1) : 0;
        if (p->pidfd >= 0) {
            /* The child's pidfd turns readable when it ends: wait for that
             * on this hub's poller (poll(2) without a hub). */
            if (co_wait_readable(p->pidfd, deadline) < 0) {
                if (errno == EAGAIN) errno = ETIMEDOUT; /* deadline 0 */
                if (errno == ETIMEDOUT && try_reap(p)) continue;
                return -1;
            }
            continue;
        }
        /* No pidfd: look every few milliseconds (1 ms, doubling to 50,
         * as Python's Popen.wait). */
        if (deadline == 0 || co__expired(deadline)) return errno = ETIMEDOUT, -1;
        int64_t until = co_now() + backoff;
        if (!co__no_deadline(deadline) && deadline < until) until = deadline;
        if (nap_until(until) < 0) return -1;
        if (backoff < 50) backoff *= 2;
    }
}

int co_process_join(co_process_t *p, int64_t deadline)
{
    CO__CHECK(p != NULL, "co_process_join: NULL process");
    if (p->foreign || state_of(p) == P_NEW) return errno = EINVAL, -1;
    __atomic_fetch_add(&p->joiners, 1, __ATOMIC_ACQ_REL);
    int r = join(p, deadline);
    int e = errno;
    __atomic_fetch_sub(&p->joiners, 1, __ATOMIC_ACQ_REL);
    errno = e;
    return r;
}

int co_process_exitcode(co_process_t *p)
{
    if (p->foreign || state_of(p) == P_NEW) return CO_EXIT_NONE;
    if (!try_reap(p)) return CO_EXIT_NONE;
    return p->code;
}

bool co_process_is_alive(co_process_t *p)
{
    if (p->foreign || state_of(p) == P_NEW) return false;
    return !try_reap(p);
}

pid_t co_process_pid(const co_process_t *p)
{
    return p->pid;
}

const char *co_process_name(const co_process_t *p)
{
    return p->name;
}

bool co_process_daemon(const co_process_t *p)
{
    return p->daemon;
}

int co_process_signal(co_process_t *p, int sig)
{
    CO__CHECK(p != NULL, "co_process_signal: NULL process");
    if (p->foreign || state_of(p) == P_NEW || sig < 0 || sig >= NSIG) return errno = EINVAL, -1;
    pthread_mutex_lock(&reg_mu);
    /* Not reaped (under the lock): the pid is still our child's. */
    if (!reap_locked(p)) {
        if (p->pidfd >= 0)
            syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
        else
            kill(p->pid, sig);
    }
    pthread_mutex_unlock(&reg_mu);
    return 0;
}

int co_process_terminate(co_process_t *p)
{
    return co_process_signal(p, SIGTERM);
}

int co_process_kill(co_process_t *p)
{
    return co_process_signal(p, SIGKILL);
}

size_t co_process_active(co_process_t **out, size_t cap)
{
    size_t n = 0;
    pid_t me = getpid();
    pthread_mutex_lock(&reg_mu);
    for (co__lnode_t *l = records.head, *next; l; l = next) {
        next = l->next;
        co_process_t *p = CO__CONTAINER(l, co_process_t, node);
        if (p->owner != me || p->freed || reap_locked(p)) continue;
        if (n < cap) out[n] = p;
        n++;
    }
    pthread_mutex_unlock(&reg_mu);
    return n;
}

/* --------------------------------------------------------------- stdio */

int co_process_stdin(const co_process_t *p)
{
    return p->pipe[0];
}

int co_process_stdout(const co_process_t *p)
{
    return p->pipe[1];
}

int co_process_stderr(const co_process_t *p)
{
    return p->pipe[2];
}

void co_process_close_stdin(co_process_t *p)
{
    if (p->pipe[0] >= 0) co_close(p->pipe[0]);
    p->pipe[0] = -1;
}

static int buf_room(buf_t *b, size_t want)
{
    if (b->cap - b->len >= want) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < want) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

/* Reads what the pipe has into b (or drops it): 0, 1 at EOF, or an errno
 * value. */
static int drain(int fd, buf_t *b, bool keep)
{
    for (;;) {
        char scratch[4096];
        char *dst = scratch;
        size_t room = sizeof scratch;
        if (keep) {
            if (buf_room(b, 65536 + 1)) return ENOMEM;
            dst = b->data + b->len;
            room = b->cap - b->len - 1;
        }
        ssize_t n = co__sys_read(fd, dst, room);
        if (n > 0) {
            if (keep) b->len += (size_t)n;
            continue;
        }
        if (n == 0) return 1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return 0;
        return errno;
    }
}

static void hand_out(buf_t *b, char **out, size_t *len, bool keep)
{
    if (!keep) return;
    if (!b->data) buf_room(b, 1);
    if (!b->data) {
        *out = NULL; /* ENOMEM for a single byte: report an empty output */
        if (len) *len = 0;
        return;
    }
    b->data[b->len] = '\0';
    *out = b->data;
    if (len) *len = b->len;
    *b = (buf_t){0};
}

int co_process_communicate(co_process_t *p, const void *input, size_t len, char **out, size_t *outlen, char **err,
                           size_t *errlen, int64_t deadline)
{
    CO__CHECK(p != NULL, "co_process_communicate: NULL process");
    if (p->foreign || state_of(p) == P_NEW) return errno = EINVAL, -1;
    if (len > 0 && (!input || (p->pipe[0] < 0 && !p->in_done))) return errno = EINVAL, -1;
    if (p->pipe[0] >= 0 && !p->in_done && p->in_off >= len) { /* nothing (left) to write: EOF now */
        co_process_close_stdin(p);
        p->in_done = true;
    }
    for (;;) {
        struct pollfd pf[3];
        int which[3];
        nfds_t n = 0;
        if (p->pipe[0] >= 0 && !p->in_done) {
            pf[n] = (struct pollfd){.fd = p->pipe[0], .events = POLLOUT};
            which[n++] = 0;
        }
        for (int i = 1; i < 3; i++)
            if (p->pipe[i] >= 0) {
                pf[n] = (struct pollfd){.fd = p->pipe[i], .events = POLLIN};
                which[n++] = i;
            }
        if (n == 0) break;
        int r = co_poll(pf, n, deadline);
        if (r < 0) return -1;
        if (r == 0) return errno = ETIMEDOUT, -1;
        for (nfds_t k = 0; k < n; k++) {
            if (!pf[k].revents) continue;
            int i = which[k];
            if (i == 0) {
                ssize_t w = co__sys_write(p->pipe[0], (const char *)input + p->in_off, len - p->in_off);
                if (w > 0) p->in_off += (size_t)w;
                /* EPIPE: the child does not read its input; not an error
                 * (as Python's communicate). */
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || p->in_off >= len) {
                    co_process_close_stdin(p);
                    p->in_done = true;
                }
            } else {
                bool keep = i == 1 ? out != NULL : err != NULL;
                int d = drain(p->pipe[i], i == 1 ? &p->out : &p->err, keep);
                if (d == ENOMEM) return errno = ENOMEM, -1;
                if (d) { /* EOF or an error: this stream is finished */
                    co_close(p->pipe[i]);
                    p->pipe[i] = -1;
                }
            }
        }
    }
    if (co_process_join(p, deadline) < 0) return -1;
    hand_out(&p->out, out, outlen, out != NULL);
    hand_out(&p->err, err, errlen, err != NULL);
    return 0;
}

/* ----------------------------------------------------------------- end */

/* The end hook: daemon children are terminated, every child is waited
 * for (Python's multiprocessing does the same at exit).  Blocks the
 * thread; no hub is involved. */
static void end_children(void)
{
    pid_t me = getpid();
    pthread_mutex_lock(&reg_mu);
    for (co__lnode_t *l = records.head, *next; l; l = next) {
        next = l->next; /* reap_locked frees the record of a freed handle */
        co_process_t *p = CO__CONTAINER(l, co_process_t, node);
        if (p->owner == me && p->daemon && !reap_locked(p)) {
            if (p->pidfd >= 0)
                syscall(SYS_pidfd_send_signal, p->pidfd, SIGTERM, NULL, 0);
            else
                kill(p->pid, SIGTERM);
        }
    }
    pthread_mutex_unlock(&reg_mu);
    int backoff = 1;
    for (;;) {
        struct pollfd pf[64];
        nfds_t n = 0;
        size_t left = 0;
        pthread_mutex_lock(&reg_mu);
        /* (The analyzer does not follow co__list_remove updating the head
         * when reap_locked frees a record: the head is never a freed one.) */
        for (co__lnode_t *l = records.head, *next; l; l = next) {
            next = l->next; // NOLINT(clang-analyzer-unix.Malloc)
            co_process_t *p = CO__CONTAINER(l, co_process_t, node);
            if (p->owner != me || reap_locked(p)) continue;
            left++;
            if (p->pidfd >= 0 && n < 64) pf[n++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
        }
        pthread_mutex_unlock(&reg_mu);
        if (left == 0) return;
        if (n == left) {
            co__sys_poll(pf, n, -1);
        } else {
            co__sys_poll(NULL, 0, backoff);
            if (backoff < 50) backoff *= 2;
        }
    }
}

/* ---------------------------------------------------------------- fork */

/* The process-shared objects' modules have their steps here, in this
 * order: their helpers and locks sit below the registry. */
void co__process_fork_prepare(void)
{
    pthread_mutex_lock(&reg_mu);
    co__shm_fork_prepare();
    co__pwait_fork_prepare();
}

void co__process_fork_parent(void)
{
    co__pwait_fork_parent();
    co__shm_fork_parent();
    pthread_mutex_unlock(&reg_mu);
}

void co__process_fork_clean(void)
{
    co__hub_t *h = co__tls.hub;
    if (!clean_fork || !h) return;
    /* The hub and its coroutines are copies of the parent's: none of them
     * may ever run here.  Its descriptors are closed; its memory (and the
     * coroutines' stacks) is left as it is, never to be touched: the
     * thread makes a new hub when it first needs one. */
    h->poller.ops->destroy(&h->poller);
    co__sys_close(h->evfd);
    co__tls.hub = NULL;
}

void co__process_fork_child(void)
{
    clean_fork = false;
    __atomic_add_fetch(&fork_gen, 1, __ATOMIC_RELAXED);
    co__pwait_fork_child();
    co__shm_fork_child();
    /* The parent's children are not ours: their records are the parent's
     * (a handle copied here answers EINVAL / CO_EXIT_NONE), and the
     * descriptors cogent made for them are closed, so that this process
     * holds no pipe end that would keep one of them from seeing EOF. */
    for (co__lnode_t *l = records.head; l; l = l->next) {
        co_process_t *p = CO__CONTAINER(l, co_process_t, node);
        p->foreign = true;
        for (int i = 0; i < 3; i++)
            if (p->pipe[i] >= 0) co_close(p->pipe[i]);
        if (p->pidfd >= 0) co_close(p->pidfd);
    }
    records = (co__list_t){0};
    nlive = 0;
    for (size_t i = 0; i < nowned; i++) co_close(owned[i]);
    nowned = 0;
    if (kick_fd >= 0) co__sys_close(kick_fd);
    kick_fd = -1;
    reaper_running = false;
    self_record = NULL;
    __atomic_store_n(&exiting, false, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&reg_mu);
}
