/* The shared memory process-shared objects live in (pshared.h).
 *
 * Anonymous objects are a MAP_SHARED | MAP_ANONYMOUS mapping: children
 * forked after they were made share them, nobody else can reach them, and
 * the memory goes with the last process that maps it.
 *
 * Named objects are files in /dev/shm (what shm_open uses), so that an
 * unrelated process can open them by name.  One is made under a temporary
 * name, filled in, and renamed into place (renameat2 RENAME_NOREPLACE:
 * EEXIST if the name is taken), so an opener finds either nothing or a
 * whole object.
 *
 * The cleanup rule.  A name belongs to the process that made it: its
 * co_*_free removes the name, and so does its normal end (exit, a return
 * from main, the end of a co_process_start child), for every name it has
 * not freed.  Processes that opened the object keep it mapped; only the
 * name goes.  If the creator dies abruptly (a crash, SIGKILL), a tracker
 * removes its names: a small process started with the first named object
 * (double-forked, so nobody has to reap it; "cogent-tracker" in ps) that
 * reads "made"/"removed" notes from a pipe whose write end the creator
 * and its forked children hold, and at the pipe's EOF -- every one of
 * them has ended -- removes what is left, checking that each file still
 * holds an object that pid made (a name freed and made again by another
 * process is left alone).  Python's multiprocessing has the same kind of
 * resource tracker. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process.h"
#include "pshared.h"
#include "sys.h"

#define SHM_DIR "/dev/shm/"

/* The names this process made and has not removed, with the mapping
 * made with each (names_mu): only that handle's free removes it. */
typedef struct made {
    char *name;
    const void *map;
} made_t;
static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static made_t *names;
static size_t nnames, capnames;
static int tracker_fd = -1; /* the write end of the tracker's pipe */
static unsigned tmp_serial;

/* ------------------------------------------------------------- names */

/* "/x" or "x" (one path component, no '/' after the first character).
 * The file name without the slash, or NULL with errno. */
static const char *file_name(const char *name)
{
    if (!name) return errno = EINVAL, NULL;
    if (name[0] == '/') name++;
    size_t n = strlen(name);
    if (n == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) return errno = EINVAL, NULL;
    if (n > CO__SHM_NAME_MAX) return errno = ENAMETOOLONG, NULL;
    return name;
}

static void names_add(const char *n, const void *map)
{
    if (nnames == capnames) {
        size_t cap = capnames ? capnames * 2 : 8;
        made_t *a = realloc(names, cap * sizeof *a);
        if (!a) return; /* not removed at exit then; the tracker still does */
        names = a;
        capnames = cap;
    }
    names[nnames] = (made_t){strdup(n), map};
    if (names[nnames].name) nnames++;
}

/* Removes the entry made with `map` from the list; true if it was there. */
static bool names_drop(const void *map)
{
    for (size_t i = 0; i < nnames; i++)
        if (names[i].map == map) {
            free(names[i].name);
            names[i] = names[--nnames];
            return true;
        }
    return false;
}

/* ----------------------------------------------------------- tracker */

static void tracker_note(char op, const char *n)
{
    if (tracker_fd < 0) return;
    char line[CO__SHM_NAME_MAX + 32];
    int len = snprintf(line, sizeof line, "%c %d %s\n", op, (int)co__getpid(), n);
    /* One write of less than PIPE_BUF: never interleaved with another
     * process's note. */
    ssize_t w;
    do w = co__sys_write(tracker_fd, line, (size_t)len);
    while (w < 0 && errno == EINTR);
}

/* The tracker itself: raw system calls and no libc (not even string
 * functions, which sanitizers intercept), in a copy of a process that
 * may have had other threads. */
#define T_MAX 1024
static struct {
    int pid;
    char name[CO__SHM_NAME_MAX + 1];
} t_names[T_MAX];
static char t_line[CO__SHM_NAME_MAX + 64];
static char t_stack[2][16384] __attribute__((aligned(16)));

CO__NO_SANITIZE static bool t_eq(const char *a, const char *b)
{
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

CO__NO_SANITIZE static void t_remove(int pid, const char *n)
{
    char path[sizeof SHM_DIR + CO__SHM_NAME_MAX + 16];
    size_t k = 0;
    for (const char *d = SHM_DIR; *d;) path[k++] = *d++;
    while (*n && k < sizeof path - 1) path[k++] = *n++;
    path[k] = '\0';
    long fd = co__rawsys6(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0, 0, 0);
    if (fd < 0) return;
    co__shm_hdr_t h;
    long r = co__rawsys6(SYS_pread64, fd, (long)&h, sizeof h, 0, 0, 0);
    CO__RAW(SYS_close, fd, 0, 0);
    if (r == (long)sizeof h && h.magic == CO__SHM_MAGIC && h.creator == pid) CO__RAW(SYS_unlinkat, AT_FDCWD, path, 0);
}

CO__NO_SANITIZE static void t_line_do(char *l)
{
    char op = l[0];
    if ((op != 'R' && op != 'U') || l[1] != ' ') return;
    char *p = l + 2;
    int pid = 0;
    while (*p >= '0' && *p <= '9') pid = pid * 10 + (*p++ - '0');
    if (*p++ != ' ') return;
    for (int i = 0; i < T_MAX; i++) {
        if (op == 'R' && !t_names[i].pid) {
            t_names[i].pid = pid;
            int k = 0;
            while (k < CO__SHM_NAME_MAX && p[k]) t_names[i].name[k] = p[k], k++;
            t_names[i].name[k] = '\0';
            return;
        }
        if (op == 'U' && t_names[i].pid == pid && t_eq(t_names[i].name, p)) {
            t_names[i].pid = 0;
            return;
        }
    }
}

CO__NO_SANITIZE static int tracker_main(void *arg)
{
    long rd = (long)(intptr_t)arg;
    /* Out of the caller's session and process group: a Ctrl-C meant for
     * the program must not kill the one that cleans up after it. */
    CO__RAW(SYS_setsid, 0, 0, 0);
    struct {
        void *h;
        unsigned long flags;
        void *restorer;
        uint64_t mask;
    } ign = {(void *)SIG_IGN, 0, (void *)0, 0};
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) co__rawsys6(SYS_rt_sigaction, sig, (long)&ign, 0, 8, 0, 0);
    uint64_t none = 0;
    co__rawsys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8, 0, 0);
    CO__RAW(SYS_prctl, PR_SET_NAME, "cogent-tracker", 0);
    /* Nothing of the program's stays open here but the pipe. */
    if (rd != 0) {
        CO__RAW(SYS_dup3, rd, 0, 0);
        rd = 0;
    }
    CO__RAW(SYS_close_range, 1, ~0U, 0);
    size_t len = 0;
    for (;;) {
        long n = CO__RAW(SYS_read, rd, t_line + len, sizeof t_line - 1 - len);
        if (n == -EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < len; i++)
            if (t_line[i] == '\n') {
                t_line[i] = '\0';
                t_line_do(t_line + start);
                start = i + 1;
            }
        for (size_t i = start; i < len; i++) t_line[i - start] = t_line[i];
        len -= start;
        if (len == sizeof t_line - 1) len = 0; /* a line too long: not ours */
    }
    for (int i = 0; i < T_MAX; i++)
        if (t_names[i].pid) t_remove(t_names[i].pid, t_names[i].name);
    return 0;
}

CO__NO_SANITIZE static int tracker_middle(void *arg)
{
    /* The tracker's parent exits at once: init adopts it, and our caller
     * reaps only this one. */
    long pid = co__raw_clone(SIGCHLD, t_stack[1] + sizeof t_stack[1], (int *)0, tracker_main, arg);
    return pid < 0 ? 1 : 0;
}

/* Starts the tracker once per process tree; names_mu held. */
static void tracker_start(void)
{
    if (tracker_fd >= 0) return;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return;
    /* A copy of this process runs only raw system calls: no fork
     * handlers, no libc locks (other threads may hold them). */
    long mid = co__raw_clone(SIGCHLD, t_stack[0] + sizeof t_stack[0], NULL, tracker_middle, (void *)(intptr_t)p[0]);
    co__sys_close(p[0]);
    if (mid < 0) {
        co__sys_close(p[1]);
        return;
    }
    siginfo_t si;
    while (syscall(SYS_waitid, P_PID, (pid_t)mid, &si, WEXITED, NULL) < 0 && errno == EINTR) {
    }
    tracker_fd = p[1]; /* inherited by forked children, closed by exec */
}

/* ---------------------------------------------------------- segments */

static void ends_unlink(void);

void *co__shm_create(int kind, size_t size, const co_shm_opts_t *opts, void (*init)(void *obj, void *arg), void *arg)
{
    if (size < sizeof(co__shm_hdr_t)) size = sizeof(co__shm_hdr_t);
    long page = sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - (size_t)page) return errno = ENOMEM, NULL;
    size = (size + (size_t)page - 1) & ~((size_t)page - 1);
    const char *name = opts ? opts->name : NULL;
    if (!name) {
        void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return errno = ENOMEM, NULL;
        co__shm_hdr_t *h = m;
        h->magic = CO__SHM_MAGIC;
        h->version = CO__SHM_VERSION;
        h->kind = (uint16_t)kind;
        h->size = size;
        h->creator = (int32_t)co__getpid();
        if (init) init(m, arg);
        return m;
    }
    const char *fn = file_name(name);
    if (!fn) return NULL;
    char path[sizeof SHM_DIR + CO__SHM_NAME_MAX + 16], tmp[sizeof SHM_DIR + 64];
    snprintf(path, sizeof path, SHM_DIR "%s", fn);
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, ".cogent-%d-%u", (int)co__getpid(),
             __atomic_add_fetch(&tmp_serial, 1, __ATOMIC_RELAXED));
    snprintf(tmp, sizeof tmp, SHM_DIR "%s", tmpname);
    co__process_at_end(ends_unlink);
    pthread_mutex_lock(&names_mu);
    tracker_start();
    /* Noted before they exist: a crash at any point leaves nothing. */
    tracker_note('R', tmpname);
    tracker_note('R', fn);
    pthread_mutex_unlock(&names_mu);
    int err = 0;
    void *m = MAP_FAILED;
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, opts->mode ? opts->mode : 0600);
    if (fd < 0) {
        err = errno;
        goto out;
    }
    /* The pages are reserved now: a full /dev/shm says ENOSPC here, not
     * SIGBUS at some later first touch. */
    if ((err = posix_fallocate(fd, 0, (off_t)size)) != 0 ||
        (m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        if (!err) err = errno;
        if (err == EFBIG) err = ENOSPC;
        unlink(tmp);
        goto out;
    }
    co__shm_hdr_t *h = m;
    h->magic = CO__SHM_MAGIC;
    h->version = CO__SHM_VERSION;
    h->kind = (uint16_t)kind;
    h->size = size;
    h->creator = (int32_t)co__getpid();
    snprintf(h->name, sizeof h->name, "%s", fn);
    if (init) init(m, arg);
    if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, path, 1 /* RENAME_NOREPLACE */) < 0) {
        err = errno;
        unlink(tmp);
        munmap(m, size);
        m = MAP_FAILED;
    }
out:
    if (fd >= 0) close(fd);
    pthread_mutex_lock(&names_mu);
    tracker_note('U', tmpname);
    if (m == MAP_FAILED)
        tracker_note('U', fn);
    else
        names_add(fn, m);
    pthread_mutex_unlock(&names_mu);
    if (m == MAP_FAILED) return errno = err, NULL;
    return m;
}

void *co__shm_open(int kind, const char *name)
{
    const char *fn = file_name(name);
    if (!fn) return NULL;
    char path[sizeof SHM_DIR + CO__SHM_NAME_MAX + 16];
    snprintf(path, sizeof path, SHM_DIR "%s", fn);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    struct stat st;
    void *m = MAP_FAILED;
    int err = EINVAL;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(co__shm_hdr_t)) {
        m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) err = errno;
    }
    close(fd);
    if (m == MAP_FAILED) return errno = err, NULL;
    co__shm_hdr_t *h = m;
    if (h->magic != CO__SHM_MAGIC || h->version != CO__SHM_VERSION || h->kind != kind ||
        h->size != (uint64_t)st.st_size) {
        munmap(m, (size_t)st.st_size);
        return errno = EINVAL, NULL;
    }
    return m;
}

void co__shm_free(void *obj)
{
    if (!obj) return;
    co__shm_hdr_t *h = obj;
    size_t size = h->size;
    if (h->name[0] && h->creator == (int32_t)co__getpid()) {
        pthread_mutex_lock(&names_mu);
        if (names_drop(obj)) {
            char path[sizeof SHM_DIR + CO__SHM_NAME_MAX + 16];
            snprintf(path, sizeof path, SHM_DIR "%.200s", h->name);
            unlink(path);
            tracker_note('U', h->name);
        }
        pthread_mutex_unlock(&names_mu);
    }
    munmap(obj, size);
}

/* The end hook: the names this process made and did not free. */
static void ends_unlink(void)
{
    pthread_mutex_lock(&names_mu);
    for (size_t i = 0; i < nnames; i++) {
        char path[sizeof SHM_DIR + CO__SHM_NAME_MAX + 16];
        snprintf(path, sizeof path, SHM_DIR "%.200s", names[i].name);
        unlink(path);
        tracker_note('U', names[i].name);
        free(names[i].name);
    }
    nnames = 0;
    pthread_mutex_unlock(&names_mu);
}

void co__shm_fork_prepare(void)
{
    pthread_mutex_lock(&names_mu);
}

void co__shm_fork_parent(void)
{
    pthread_mutex_unlock(&names_mu);
}

void co__shm_fork_child(void)
{
    /* The names are the parent's to remove; the tracker's pipe stays (this
     * child's own names go to the same tracker). */
    pthread_mutex_unlock(&names_mu);
    for (size_t i = 0; i < nnames; i++) free(names[i].name);
    nnames = 0;
}
