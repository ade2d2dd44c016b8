/* The process pool (multiprocessing.Pool and ProcessPoolExecutor).
 *
 * Workers.  N worker processes, each started with co_process_start
 * (daemon, a clean hub) and joined to the pool by a socketpair carried by
 * a co_conn.  A worker runs jobs in order: a job is one task (apply,
 * submit) or a chunk of a map's items, all with one function of the
 * program (a pointer: workers are forks of this program) and each with
 * its argument's bytes.  It writes the job and task it runs, and the
 * task's deadline, into its slot of a page shared with the pool, and
 * sends results back in batches (at the end of a job, or once 256 KiB or
 * a millisecond has piled up).
 *
 * The manager.  A thread of the pool's own ("cogent-ppool") runs a hub:
 * a dispatcher coroutine hands each queued job to a free worker (one job
 * in flight per worker: see PREFETCH), a writer and a reader coroutine
 * per worker carry frames, a watchdog kills
 * a worker whose task outlived its deadline, and the main coroutine
 * starts, replaces and stops workers.  Only the submission queue is
 * shared with other threads (a co_queue_t); everything else belongs to
 * the manager's hub, so needs no lock.  Callers wait on the task (an
 * event per task, or the map's results) -- a coroutine parks, a thread
 * blocks.
 *
 * Crashes and timeouts.  A worker that dies (a signal, exit() from a
 * task, SIGKILL by the watchdog or by anyone) is joined for its exit
 * code; its slot says which task of which job it was running.  That task
 * fails -- ETIMEDOUT if the watchdog killed it, else EOWNERDEAD with a
 * message naming the signal -- and so do the tasks before it whose
 * results had not been sent yet (they ran: running them again could
 * repeat what they did); the tasks after it never started and go back to
 * the front of the queue.  A replacement starts in the same slot and the
 * pool goes on.  Unlike Python's ProcessPoolExecutor, one crash breaks
 * only the futures of the work the dead worker held.
 *
 * How data travels.  Arguments and results go through the worker's
 * socketpair, framed, copied twice (into the frame, out of it), in
 * batches: a 12,500-item map chunk is one frame each way.  A map's
 * results stay in the frames they came in (co_presult_t points into
 * them): no copy per item.  Big payloads stream through at the pipe's
 * speed; see docs/pool.md for figures. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "future.h"
#include "hub.h"
#include "process.h"

/* ---------------------------------------------------------------- wire */

enum { F_JOB = 0x4a4f4231, F_RESULTS = 0x52455331, F_INITFAIL = 0x494e4946 };

typedef struct job_hdr {
    uint32_t type; /* F_JOB */
    uint32_t ntasks;
    uint64_t job;    /* the manager's job id */
    uint64_t fn;     /* co_ptask_fn */
    int64_t timeout; /* ms per task, 0: none */
} job_hdr_t;         /* then per task: u64 len, bytes padded to 8 */

typedef struct res_hdr {
    uint32_t type; /* F_RESULTS or F_INITFAIL */
    uint32_t n;
    uint64_t job;
    uint32_t first; /* index of the first result in its job */
    int32_t err;    /* F_INITFAIL: the initializer's error */
} res_hdr_t;        /* then per result: i32 err, u32 msglen, u64 len, msg, bytes, padded to 8 */

typedef struct res_item {
    int32_t err;
    uint32_t msglen;
    uint64_t len;
} res_item_t;

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* The bytes after an item's header: its message (failed, NUL-terminated)
 * or its result (succeeded). */
static size_t item_payload(const res_item_t *it)
{
    return it->msglen ? pad8((size_t)it->msglen + 1) : pad8((size_t)it->len);
}

/* A worker's slot in the page the pool shares with its workers, on a
 * cache line of its own (two workers writing one line at every task
 * would slow each other down). */
typedef struct wslot {
    uint64_t job;     /* the job it runs (0: none yet) */
    uint32_t index;   /* the task within it */
    uint32_t busy;    /* 1 while that task runs */
    int64_t deadline; /* co_now() by which it must end, 0: none */
    char pad[40];
} __attribute__((aligned(64))) wslot_t;

/* -------------------------------------------------------- growing buffer */

typedef struct obuf {
    char *data;
    size_t len, cap;
} obuf_t;

static int obuf_room(obuf_t *b, size_t n)
{
    if (b->cap - b->len >= n) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) return ENOMEM;
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) return ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline void *obuf_put(obuf_t *b, const void *p, size_t n, size_t padded)
{
    if (CO__UNLIKELY(b->cap - b->len < padded) && obuf_room(b, padded)) return NULL;
    char *dst = b->data + b->len;
    if (padded > n) memcpy(dst + padded - 8, &(uint64_t){0}, 8); /* the padding is zero (padded - n < 8) */
    if (n) memcpy(dst, p, n);
    b->len += padded;
    return dst;
}

/* ======================================================== the worker */

struct co_ptask {
    obuf_t *out;   /* the result batch */
    size_t at;     /* where this task's result item starts in it */
    bool returned; /* co_ptask_return was called */
    int err;       /* co_ptask_fail's */
    char *msg;
    int oom; /* the result did not fit in memory */
};

int co_ptask_return(co_ptask_t *t, const void *data, size_t len)
{
    CO__CHECK(t != NULL, "co_ptask_return: NULL task");
    if (len && !data) return errno = EINVAL, -1;
    obuf_t *b = t->out;
    b->len = t->at + sizeof(res_item_t); /* a second call replaces the first */
    if (!obuf_put(b, data, len, pad8(len))) {
        t->oom = 1;
        return errno = ENOMEM, -1;
    }
    res_item_t *it = (res_item_t *)(void *)(b->data + t->at);
    it->len = len;
    t->returned = true;
    return 0;
}

int co_ptask_fail(co_ptask_t *t, int err, const char *msg)
{
    CO__CHECK(t != NULL, "co_ptask_fail: NULL task");
    if (err <= 0) return EINVAL;
    t->err = err;
    free(t->msg);
    t->msg = msg ? strdup(msg) : NULL;
    return err;
}

typedef struct wargs {
    struct co_procpool *pool;
    unsigned index;
    co_conn_t *conn; /* the worker's end */
    wslot_t *slot;
    co_ptask_fn init;
    const void *init_arg;
    size_t init_len;
    size_t max_jobs;
    sigset_t mask; /* the signal mask of the thread that made the pool */
} wargs_t;

#define FLUSH_BYTES (256 * 1024) /* a batch of results goes back at this size */

/* Sends the batch of results (if any) of job `job` starting at `first`. */
static int flush(co_conn_t *c, obuf_t *out, uint64_t job, uint32_t first, uint32_t n)
{
    if (n == 0) return 0;
    res_hdr_t *h = (res_hdr_t *)(void *)out->data;
    *h = (res_hdr_t){.type = F_RESULTS, .n = n, .job = job, .first = first};
    int r = co_conn_send(c, out->data, out->len, -1);
    out->len = sizeof(res_hdr_t);
    return r;
}

/* Runs one job: every task in order, results in batches. */
static int run_job(const wargs_t *w, const char *frame, size_t flen, obuf_t *out)
{
    const job_hdr_t *jh = (const job_hdr_t *)(const void *)frame;
    co_ptask_fn fn = (co_ptask_fn)(uintptr_t)jh->fn;
    const char *p = frame + sizeof *jh, *end = frame + flen;
    out->len = sizeof(res_hdr_t);
    uint32_t first = 0, batch = 0;
    int64_t last_flush = co_now(), last_look = last_flush;
    uint32_t every = 1, since = 0; /* look at the clock every `every` tasks */
    for (uint32_t i = 0; i < jh->ntasks; i++) {
        uint64_t len;
        if ((size_t)(end - p) < 8) return EPROTO;
        memcpy(&len, p, 8);
        p += 8;
        if ((uint64_t)(end - p) < len) return EPROTO;
        const char *arg = p;
        p += pad8((size_t)len);
        /* The slot says what runs now (the pool reads it if we die). */
        __atomic_store_n(&w->slot->job, jh->job, __ATOMIC_RELAXED);
        __atomic_store_n(&w->slot->index, i, __ATOMIC_RELAXED);
        __atomic_store_n(&w->slot->deadline, jh->timeout ? co_now() + jh->timeout : 0, __ATOMIC_RELAXED);
        __atomic_store_n(&w->slot->busy, 1, __ATOMIC_RELEASE);
        co_ptask_t t = {.out = out, .at = out->len};
        if (!obuf_put(out, &(res_item_t){0}, sizeof(res_item_t), sizeof(res_item_t))) return ENOMEM;
        int err = fn(&t, arg, (size_t)len);
        __atomic_store_n(&w->slot->busy, 0, __ATOMIC_RELEASE);
        if (t.oom && !err) err = ENOMEM;
        if (err < 0) err = EINVAL; /* not an errno value: still a failure */
        if (err) {
            /* A failed task's bytes are dropped; its message takes their place. */
            out->len = t.at + sizeof(res_item_t);
            const char *msg = t.msg ? t.msg : (t.oom ? "the task's result did not fit in memory" : NULL);
            size_t ml = msg ? strlen(msg) : 0;
            if (ml > 4096) ml = 4096;
            if (ml && !obuf_put(out, msg, ml, pad8(ml + 1))) ml = 0; /* NUL-terminated on the wire */
            res_item_t *it = (res_item_t *)(void *)(out->data + t.at);
            *it = (res_item_t){.err = err, .msglen = (uint32_t)ml, .len = 0};
        }
        if (t.msg) free(t.msg);
        batch++;
        /* Results go back in batches: at the end of the job, or when 256 KiB
         * or a millisecond of work has piled up.  The clock is read after
         * every task while tasks are slow, every 64 while they are fast. */
        bool send = out->len >= FLUSH_BYTES;
        if (!send && ++since >= every) {
            since = 0;
            int64_t now = co_now();
            send = now - last_flush >= 1;
            every = now == last_look ? (every < 64 ? every * 2 : 64) : 1;
            last_look = now;
        }
        if (send && i + 1 < jh->ntasks) {
            if (flush(w->conn, out, jh->job, first, batch) < 0) return errno;
            first += batch;
            batch = 0;
            last_flush = co_now();
        }
    }
    return flush(w->conn, out, jh->job, first, batch) < 0 ? errno : 0;
}

static int worker_main(void *arg)
{
    const wargs_t *w = arg;
    /* Forked from the pool's thread, which blocks every signal: the
     * worker gets the mask of the thread that made the pool, so that
     * SIGTERM and friends work on it as on any of the program's
     * processes. */
    pthread_sigmask(SIG_SETMASK, &w->mask, NULL);
    /* Output another thread of the program buffered after the fork's
     * flush is the program's to print, not this copy's (it would come out
     * twice). */
    __fpurge(stdout);
    __fpurge(stderr);
    obuf_t out = {0};
    if (obuf_room(&out, 65536 + sizeof(res_hdr_t))) return 1;
    if (w->init) {
        co_ptask_t t = {.out = &out, .at = sizeof(res_hdr_t)};
        out.len = sizeof(res_hdr_t);
        obuf_put(&out, &(res_item_t){0}, sizeof(res_item_t), sizeof(res_item_t));
        int err = w->init(&t, w->init_arg, w->init_len);
        if (err) {
            const char *msg = t.msg ? t.msg : "";
            size_t ml = strlen(msg);
            out.len = sizeof(res_hdr_t);
            res_hdr_t *h = (res_hdr_t *)(void *)out.data;
            *h = (res_hdr_t){.type = F_INITFAIL, .err = err > 0 ? err : EINVAL};
            obuf_put(&out, msg, ml, ml);
            co_conn_send(w->conn, out.data, out.len, -1);
            return 1;
        }
        free(t.msg);
    }
    size_t jobs = 0;
    for (;;) {
        void *frame;
        size_t flen;
        if (co_conn_recv(w->conn, &frame, &flen, -1) < 0) return errno == EPIPE ? 0 : 1; /* the pool closed us */
        if (flen < sizeof(job_hdr_t) || ((job_hdr_t *)frame)->type != F_JOB) {
            free(frame);
            return 2;
        }
        int e = run_job(w, frame, flen, &out);
        free(frame);
        if (e) return 3;
        if (w->max_jobs && ++jobs >= w->max_jobs) return 0; /* retired: the pool starts another */
    }
}

/* ======================================================= the manager */

enum { S_RUNNING = 0, S_CLOSED, S_TERMINATED, S_BROKEN };
enum { J_SINGLE = 1, J_CHUNK, J_CLOSE, J_TERMINATE, J_CANCEL, J_POKE, J_STOP };
enum { QUIT_FRAME = 0x51554954 };

/* Jobs in flight per worker.  One: a job queued behind a long task in a
 * worker's socket would wait for it while another worker sat idle (and a
 * task with a short deadline behind one that runs for an hour is stuck),
 * so the next job goes to whichever worker is free first, at the cost of
 * a round trip per job (a map's chunks make that small). */
#define PREFETCH 1

/* A task submitted alone (apply, apply_async, submit) is a co_future_t
 * (future.c), the same as a thread pool's: made with two references, the
 * caller's handle and the pool's, completed by the manager with the
 * result's bytes (co_future_set_bytes) or an error and its message.  The
 * dispatcher moves it from pending to running (co_future_set_running)
 * when it hands it to a worker: one cancelled before that is dropped. */

/* A map's or imap's results, filled in by the manager as they come. */
struct co_presults {
    size_t n;
    co_presult_t *res;
    unsigned char *have; /* per item: its result is in */
    void **frames;       /* the result frames res[] points into */
    size_t nframes, capframes;
    size_t failed;
};

typedef struct mapreq {
    struct co_procpool *pool;
    co_ptask_fn fn;
    const struct iovec *items;
    co_presults_t *r;
    size_t ndone; /* results in (lock) */
    size_t chunk, nchunks, sent_chunks;
    size_t window; /* chunks submitted ahead of consumption (imap) */
    bool unordered;
    size_t *order; /* completion order (unordered imap) */
    size_t order_head, order_tail;
    size_t next;            /* ordered: the next index to hand out */
    size_t consumed_chunks; /* chunks whose every result was handed out */
    size_t *chunk_left;     /* per chunk: results not yet handed out */
    int fail;               /* the pool refused the rest (EPIPE, ECANCELED...) (lock) */
    size_t wake_at;         /* the consumer waits for this many results (map: all) */
    struct raw {
        void *frame;
        size_t flen, base; /* its first result is item `base` */
    } * raw;               /* result frames not parsed yet: the consumer parses them */
    size_t nraw, capraw;
    co_lock_t lock;
    co_cond_t cond;
    int refs; /* atomic: the caller's + one per job in the pool */
} mapreq_t;

typedef struct job {
    co__lnode_t node;
    uint64_t id;
    int kind;
    co_ptask_fn fn;
    int64_t timeout;
    co_future_t *fut; /* J_SINGLE */
    void *arg;        /* J_SINGLE: a copy */
    size_t len;
    mapreq_t *map; /* J_CHUNK: items [first, first + count) */
    size_t first, count;
    size_t done; /* results in */
    void *frame; /* encoded by the submitter (a map's chunk), or NULL */
    size_t flen;
} job_t;

typedef struct worker {
    unsigned index;
    co_process_t *proc;
    co_conn_t *conn;
    co__list_t inflight; /* job_t, oldest first */
    size_t njobs, jobs_sent;
    co_queue_t *wq; /* frames for the writer; NULL item: quit */
    bool alive, quitting, ran_something;
    bool timed_out; /* killed by the watchdog */
    uint64_t to_job;
    uint32_t to_index;
} worker_t;

struct co_procpool {
    /* options */
    size_t nworkers, max_jobs;
    int64_t timeout;
    co_ptask_fn init;
    void *init_arg;
    size_t init_len;
    char *name;
    sigset_t mask; /* the creator's signal mask, for the workers */
    pid_t pid;     /* the process the pool belongs to (a fork child's copy is dead) */
    /* shared with callers */
    unsigned state; /* atomic: S_* */
    co_queue_t *submitq;
    co_event_t stopped; /* every worker has ended after close/terminate */
    int broken_err;
    char *broken_msg;
    pthread_t thread;
    co_event_t quit;                               /* the manager may end */
    uint64_t completed, failed, crashes, replaced; /* atomic counters */
    /* the manager's own */
    worker_t *w;
    wslot_t *slots; /* shared with the workers */
    co__list_t pending;
    co_event_t capacity;       /* hub-local: a worker may take a job */
    co_event_t watch;          /* hub-local: a job with a timeout went out */
    unsigned keepers;          /* slot coroutines still running */
    unsigned keepers_starting; /* slots whose first worker has yet to start */
    uint64_t next_job;
    unsigned startup_deaths; /* workers in a row that died before running anything */
    int ready_err;           /* the first workers' start (co_procpool_new waits for it) */
    co_event_t ready;
};

static uint64_t job_serial;

static job_t *job_new(int kind)
{
    job_t *j = calloc(1, sizeof *j);
    if (j) {
        j->kind = kind;
        j->id = __atomic_add_fetch(&job_serial, 1, __ATOMIC_RELAXED);
    }
    return j;
}

static void job_free(job_t *j)
{
    free(j->arg);
    free(j->frame);
    free(j);
}

static void mapreq_unref(mapreq_t *m);

/* ------------------------------------------------------------ results */

static void task_finish(co_procpool_t *p, co_future_t *f, int err, const char *msg, const void *data, size_t len)
{
    /* The counters first: whoever sees the future complete sees them. */
    if (!err) {
        __atomic_add_fetch(&p->completed, 1, __ATOMIC_RELAXED);
        if (co_future_set_bytes(f, data, len) == 0 || errno != ENOMEM) goto out;
        __atomic_sub_fetch(&p->completed, 1, __ATOMIC_RELAXED);
        err = ENOMEM;
        msg = "no memory for the task's result";
    }
    __atomic_add_fetch(&p->failed, 1, __ATOMIC_RELAXED);
    /* One that never started (terminate, shutdown's cancel) is cancelled,
     * as Python's are; one that ran fails. */
    if (err != ECANCELED || co_future_cancel(f) < 0) co_future_set_error(f, err, msg);
out:
    co__future_unref(f);
}

/* Stores result i of a map (pointing into memory the results keep).
 * lock held. */
static void map_store(mapreq_t *m, size_t i, int err, const char *msg, const void *data, size_t len)
{
    co_presults_t *r = m->r;
    if (r->have[i]) return;
    r->have[i] = 1;
    r->res[i] = (co_presult_t){.index = i, .data = err ? NULL : data, .len = err ? 0 : len, .err = err, .msg = msg};
    if (err) r->failed++;
    if (m->unordered) m->order[m->order_tail++] = i;
}

static int map_keep_frame(co_presults_t *r, void *frame)
{
    if (r->nframes == r->capframes) {
        size_t cap = r->capframes ? r->capframes * 2 : 8;
        void **f = realloc(r->frames, cap * sizeof *f);
        if (!f) return ENOMEM;
        r->frames = f;
        r->capframes = cap;
    }
    r->frames[r->nframes++] = frame;
    return 0;
}

/* Fails tasks [from, to) of job j with err/msg (msg copied for maps: it
 * must outlive the job). */
static void job_fail_range(co_procpool_t *p, job_t *j, size_t from, size_t to, int err, const char *msg)
{
    if (from >= to) return;
    if (j->kind == J_SINGLE) {
        task_finish(p, j->fut, err, msg, NULL, 0);
        return;
    }
    mapreq_t *m = j->map;
    co_lock_acquire(&m->lock, -1);
    char *copy = NULL;
    if (msg && (copy = strdup(msg)) && map_keep_frame(m->r, copy)) {
        free(copy);
        copy = NULL;
    }
    for (size_t k = from; k < to; k++) map_store(m, j->first + k, err, copy, NULL, 0);
    m->ndone += to - from;
    __atomic_add_fetch(&p->failed, to - from, __ATOMIC_RELAXED);
    co_cond_notify_all(&m->cond);
    co_lock_release(&m->lock);
}

static size_t job_count(const job_t *j)
{
    return j->kind == J_SINGLE ? 1 : j->count;
}

/* Fails what is left of job j. */
static void job_fail_rest(co_procpool_t *p, job_t *j, size_t from, int err, const char *msg)
{
    job_fail_range(p, j, from, job_count(j), err, msg);
}

/* The end of a job (all its results in, or failed): the pool's
 * reference goes. */
static void job_end(job_t *j)
{
    if (j->kind == J_CHUNK) mapreq_unref(j->map);
    job_free(j);
}

/* --------------------------------------------------------- dispatching */

static bool has_room(const co_procpool_t *p, const worker_t *w)
{
    return w->alive && !w->quitting && w->njobs < PREFETCH && (!p->max_jobs || w->jobs_sent < p->max_jobs);
}

static worker_t *pick(co_procpool_t *p)
{
    worker_t *best = NULL;
    for (size_t i = 0; i < p->nworkers; i++) {
        worker_t *w = &p->w[i];
        if (has_room(p, w) && (!best || w->njobs < best->njobs)) best = w;
    }
    return best;
}

/* The job's frame (see the wire format above), in a buffer of its exact
 * size.  NULL when out of memory. */
static void *encode(const job_t *j, size_t *flen)
{
    job_hdr_t h = {.type = F_JOB,
                   .ntasks = (uint32_t)(j->kind == J_SINGLE ? 1 : j->count),
                   .job = j->id,
                   .fn = (uint64_t)(uintptr_t)j->fn,
                   .timeout = j->timeout};
    size_t total = sizeof h;
    const struct iovec *items = NULL;
    if (j->kind == J_SINGLE) {
        total += 8 + pad8(j->len);
    } else {
        items = j->map->items + j->first;
        for (size_t k = 0; k < j->count; k++) total += 8 + pad8(items[k].iov_len);
    }
    char *f = malloc(total), *q = f;
    if (!f) return NULL;
    memcpy(q, &h, sizeof h);
    q += sizeof h;
    size_t n = j->kind == J_SINGLE ? 1 : j->count;
    for (size_t k = 0; k < n; k++) {
        const void *src = j->kind == J_SINGLE ? j->arg : items[k].iov_base;
        uint64_t len = j->kind == J_SINGLE ? j->len : items[k].iov_len;
        memcpy(q, &len, 8);
        q += 8;
        size_t padded = pad8((size_t)len);
        if (padded > len) memcpy(q + padded - 8, &(uint64_t){0}, 8); /* the padding is zero */
        if (len) memcpy(q, src, (size_t)len);
        q += padded;
    }
    *flen = total;
    return f;
}

static bool stopping(const co_procpool_t *p)
{
    unsigned s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    return s == S_TERMINATED || s == S_BROKEN;
}

/* A job the pool will not run: the reason it gives. */
static void refuse(co_procpool_t *p, job_t *j)
{
    unsigned s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (s == S_BROKEN)
        job_fail_rest(p, j, 0, ENOTRECOVERABLE, p->broken_msg);
    else
        job_fail_rest(p, j, 0, ECANCELED, "the pool was terminated");
    job_end(j);
}

static void finish_if_done(co_procpool_t *p);

static void handle_command(co_procpool_t *p, job_t *j)
{
    if (j->kind == J_CANCEL) {
        /* shutdown(cancel_pending): what has not started is cancelled */
        while (!co__list_empty(&p->pending)) {
            job_t *q = CO__CONTAINER(p->pending.head, job_t, node);
            co__list_remove(&p->pending, &q->node);
            job_fail_rest(p, q, q->done, ECANCELED, "cancelled by the pool's shutdown");
            job_end(q);
        }
    } else if (j->kind == J_CLOSE) {
        unsigned expect = S_RUNNING;
        __atomic_compare_exchange_n(&p->state, &expect, S_CLOSED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    } else if (j->kind == J_TERMINATE) {
        __atomic_store_n(&p->state, S_TERMINATED, __ATOMIC_RELEASE);
        for (size_t i = 0; i < p->nworkers; i++)
            if (p->w[i].alive) co_process_terminate(p->w[i].proc);
    }
    job_free(j);
    finish_if_done(p);
}

/* Moves submissions into the manager's own pending list; with `block`,
 * waits for one first.  False once the pool is told to stop. */
static bool take_submissions(co_procpool_t *p, bool block)
{
    for (;;) {
        void *item;
        int r = co_queue_get(p->submitq, &item, block ? -1 : 0);
        if (r < 0) return true; /* empty (EAGAIN), or closed at the very end */
        block = false;
        job_t *j = item;
        if (j->kind == J_STOP) {
            job_free(j);
            return false;
        }
        if (j->kind == J_POKE) {
            job_free(j);
            continue;
        }
        if (j->kind == J_CLOSE || j->kind == J_TERMINATE || j->kind == J_CANCEL) {
            handle_command(p, j);
            continue;
        }
        co__list_push(&p->pending, &j->node);
    }
}

static void *dispatcher(void *arg)
{
    co_procpool_t *p = arg;
    for (;;) {
        if (!take_submissions(p, co__list_empty(&p->pending))) break;
        while (!co__list_empty(&p->pending)) {
            job_t *j = CO__CONTAINER(p->pending.head, job_t, node);
            if (stopping(p)) {
                co__list_remove(&p->pending, &j->node);
                refuse(p, j);
                continue;
            }
            if (j->kind == J_CHUNK && __atomic_load_n(&j->map->fail, __ATOMIC_ACQUIRE)) {
                /* its caller gave up on the map: not started, not run */
                co__list_remove(&p->pending, &j->node);
                job_fail_rest(p, j, j->done, ECANCELED, NULL);
                job_end(j);
                continue;
            }
            worker_t *w = pick(p);
            if (!w) {
                co_event_clear(&p->capacity);
                if (!(w = pick(p))) {
                    if (co_event_wait(&p->capacity, co_now() + 100) < 0 && errno == ECANCELED) goto out;
                    if (!take_submissions(p, false)) goto out; /* commands meanwhile */
                    continue;
                }
            }
            /* Running from now on (a worker is there for it), unless
             * cancelled meanwhile: then dropped. */
            if (j->kind == J_SINGLE && co_future_set_running(j->fut) < 0 && errno == ECANCELED) {
                co__list_remove(&p->pending, &j->node); /* cancelled before it started */
                __atomic_add_fetch(&p->failed, 1, __ATOMIC_RELAXED);
                co__future_unref(j->fut);
                job_free(j);
                continue;
            }
            size_t flen = j->flen;
            void *frame = j->frame ? j->frame : encode(j, &flen);
            j->frame = NULL; /* the writer's now (a job sent again is encoded again) */
            obuf_t *f = frame ? malloc(sizeof *f) : NULL;
            if (!f) {
                free(frame);
                co__list_remove(&p->pending, &j->node);
                job_fail_rest(p, j, j->done, ENOMEM, "no memory for the task's arguments");
                job_end(j);
                continue;
            }
            *f = (obuf_t){frame, flen, flen};
            co__list_remove(&p->pending, &j->node);
            co__list_push(&w->inflight, &j->node);
            w->njobs++;
            w->jobs_sent++;
            co_queue_put(w->wq, f, -1);
            if (j->timeout) co_event_set(&p->watch);
        }
        finish_if_done(p);
    }
out:
    return NULL;
}

/* After close: once nothing is queued or running, the workers are told
 * to quit. */
static void finish_if_done(co_procpool_t *p)
{
    if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != S_CLOSED) return;
    if (!co__list_empty(&p->pending) || co_queue_size(p->submitq) > 0) return;
    for (size_t i = 0; i < p->nworkers; i++)
        if (p->w[i].njobs) return;
    for (size_t i = 0; i < p->nworkers; i++) {
        worker_t *w = &p->w[i];
        if (w->alive && !w->quitting) {
            w->quitting = true;
            co_queue_put(w->wq, NULL, -1);
        }
    }
}

/* ----------------------------------------------------------- workers */

static void *writer(void *arg)
{
    worker_t *w = arg;
    for (;;) {
        void *item;
        if (co_queue_get(w->wq, &item, -1) < 0) return NULL; /* closed: the worker is gone */
        obuf_t *f = item;
        if (!f) {
            uint32_t q[2] = {QUIT_FRAME, 0};
            co_conn_send(w->conn, q, sizeof q, co_now() + 1000);
            return NULL;
        }
        int r = co_conn_send(w->conn, f->data, f->len, -1);
        free(f->data);
        free(f);
        if (r < 0) return NULL; /* the worker died: the reader sees it too */
    }
}

static void drop_frames(void *item)
{
    obuf_t *f = item;
    if (!f) return;
    free(f->data);
    free(f);
}

/* Handles one result frame from w.  Returns false on a protocol error. */
/* Checks that a result frame holds n whole items.  Their payloads. */
static bool frame_ok(const res_hdr_t *h, size_t flen)
{
    const char *q = (const char *)(h + 1), *end = (const char *)h + flen;
    for (uint32_t k = 0; k < h->n; k++) {
        res_item_t it;
        if ((size_t)(end - q) < sizeof it) return false;
        memcpy(&it, q, sizeof it);
        q += sizeof it;
        if (it.msglen > 4096 || (size_t)(end - q) < item_payload(&it)) return false;
        q += item_payload(&it);
    }
    return true;
}

/* Handles one result frame from w.  Returns false on a protocol error. */
static bool on_results(co_procpool_t *p, worker_t *w, void *frame, size_t flen)
{
    if (flen < sizeof(res_hdr_t)) return false;
    res_hdr_t *h = frame;
    if (h->type != F_RESULTS || co__list_empty(&w->inflight)) return false;
    job_t *j = CO__CONTAINER(w->inflight.head, job_t, node);
    if (h->job != j->id || h->first != j->done || (size_t)h->n > job_count(j) - j->done || !frame_ok(h, flen))
        return false;
    w->ran_something = true;
    p->startup_deaths = 0;
    size_t n = h->n; /* (the frame may be gone below: freed, or the consumer's) */
    if (j->kind == J_CHUNK) {
        /* The consumer parses it (the map's caller, who waits anyway):
         * this thread only counts. */
        mapreq_t *m = j->map;
        co_lock_acquire(&m->lock, -1);
        if (m->nraw == m->capraw) {
            size_t cap = m->capraw ? m->capraw * 2 : 16;
            struct raw *r = realloc(m->raw, cap * sizeof *r);
            if (r) {
                m->raw = r;
                m->capraw = cap;
            }
        }
        if (m->nraw < m->capraw) {
            m->raw[m->nraw++] = (struct raw){frame, flen, j->first + j->done};
            frame = NULL;
            m->ndone += n;
        }
        if (m->ndone >= m->wake_at || frame) co_cond_notify_all(&m->cond);
        co_lock_release(&m->lock);
        if (frame) { /* no memory to keep it: its items fail */
            job_fail_range(p, j, j->done, j->done + n, ENOMEM, "no memory for the results");
            free(frame);
        }
    } else {
        const res_item_t *it = (const res_item_t *)(const void *)(h + 1);
        const char *body = (const char *)(it + 1);
        task_finish(p, j->fut, it->err, it->msglen ? body : NULL, body, (size_t)it->len);
        free(frame);
    }
    j->done += n;
    if (j->done == job_count(j)) {
        co__list_remove(&w->inflight, &j->node);
        w->njobs--;
        job_end(j);
        co_event_set(&p->capacity);
        finish_if_done(p);
    }
    return true;
}

/* Parses the result frames in (the consumer, lock held). */
static void map_parse(mapreq_t *m)
{
    uint64_t nok = 0, nfail = 0;
    for (size_t f = 0; f < m->nraw; f++) {
        struct raw *rw = &m->raw[f];
        res_hdr_t *h = rw->frame;
        const char *q = (const char *)(h + 1);
        for (uint32_t k = 0; k < h->n; k++) {
            res_item_t it;
            memcpy(&it, q, sizeof it);
            q += sizeof it;
            map_store(m, rw->base + k, it.err, it.msglen ? q : NULL, q, (size_t)it.len);
            nfail += it.err != 0;
            nok += it.err == 0;
            q += item_payload(&it);
        }
        if (map_keep_frame(m->r, rw->frame)) {
            /* no room to keep it: the results go (an unlikely loss, told) */
            for (uint32_t k = 0; k < h->n; k++) {
                co_presult_t *r = &m->r->res[rw->base + k];
                if (!r->err) nok--, nfail++;
                *r = (co_presult_t){.index = rw->base + k, .err = ENOMEM, .msg = "no memory to keep the result"};
            }
            free(rw->frame);
        }
    }
    m->nraw = 0;
    if (nok) __atomic_add_fetch(&m->pool->completed, nok, __ATOMIC_RELAXED);
    if (nfail) __atomic_add_fetch(&m->pool->failed, nfail, __ATOMIC_RELAXED);
}

static void describe_death(char *buf, size_t cap, pid_t pid, int code, bool timed_out, int64_t timeout)
{
    if (timed_out)
        snprintf(buf, cap, "the task ran longer than its %lld ms timeout: worker %d was killed and replaced",
                 (long long)timeout, (int)pid);
    else if (code < 0 && code != CO_EXIT_NONE)
        snprintf(buf, cap, "worker %d was killed by signal %d (%s)", (int)pid, -code, strsignal(-code));
    else if (code == CO_EXIT_NONE)
        snprintf(buf, cap, "worker %d ended (its exit status was taken by the program)", (int)pid);
    else
        snprintf(buf, cap, "worker %d exited with code %d", (int)pid, code);
}

/* A worker ended.  Its jobs: the task it ran fails, so do those it ran
 * whose results it had not sent, the others go back to the queue. */
static void on_death(co_procpool_t *p, worker_t *w)
{
    pid_t pid = co_process_pid(w->proc);
    int code = co_process_exitcode(w->proc);
    wslot_t s = p->slots[w->index];
    if (!co__list_empty(&w->inflight) && !stopping(p)) __atomic_add_fetch(&p->crashes, 1, __ATOMIC_RELAXED);
    char why[320];
    co__list_t requeue = {0};
    bool first = true;
    while (!co__list_empty(&w->inflight)) {
        job_t *j = CO__CONTAINER(w->inflight.head, job_t, node);
        co__list_remove(&w->inflight, &j->node);
        w->njobs--;
        size_t count = job_count(j);
        if (stopping(p)) {
            refuse(p, j);
            continue;
        }
        if (!(first && s.job == j->id)) {
            /* never started: again, at the front, in order */
            co__list_push(&requeue, &j->node);
            first = false;
            continue;
        }
        first = false;
        size_t k = s.index < count ? s.index : count - 1;
        /* [done, k): they ran, their results were lost with the worker */
        describe_death(why, sizeof why, pid, code, false, 0);
        strncat(why, " after the task ran, before its result was sent", sizeof why - strlen(why) - 1);
        job_fail_range(p, j, j->done, k, EOWNERDEAD, why);
        /* k: it ran (busy) or had just ended (its result lost) */
        bool to = w->timed_out && w->to_job == j->id && w->to_index == k;
        describe_death(why, sizeof why, pid, code, to, j->timeout);
        strncat(why, s.busy || to ? " while running the task" : " after the task ran, before its result was sent",
                sizeof why - strlen(why) - 1);
        job_fail_range(p, j, k, k + 1, to ? ETIMEDOUT : EOWNERDEAD, why);
        /* (k, count): they never started: a new job for them */
        if (k + 1 < count) {
            job_t *rest = job_new(J_CHUNK);
            if (rest) {
                uint64_t id = rest->id;
                *rest = *j;
                rest->id = id;
                rest->node = (co__lnode_t){0};
                rest->first = j->first + k + 1;
                rest->count = count - k - 1;
                rest->done = 0;
                __atomic_add_fetch(&j->map->refs, 1, __ATOMIC_RELAXED);
                co__list_push(&requeue, &rest->node);
            } else {
                job_fail_range(p, j, k + 1, count, ENOMEM, "no memory to queue these tasks again");
            }
        }
        job_end(j);
    }
    /* Requeued jobs go first, in their order. */
    while (!co__list_empty(&requeue)) {
        co__lnode_t *n = requeue.tail;
        co__list_remove(&requeue, n);
        co__list_push_front(&p->pending, n);
    }
    w->timed_out = false;
}

/* The pool needs a worker in this slot: running, or closed with work
 * still queued. */
static bool wanted(co_procpool_t *p)
{
    unsigned s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (s == S_RUNNING) return !co__process_exiting();
    if (s != S_CLOSED || co__process_exiting()) return false;
    return !co__list_empty(&p->pending) || co_queue_size(p->submitq) > 0;
}

static void break_pool(co_procpool_t *p, int err, const char *msg)
{
    if (__atomic_exchange_n(&p->state, S_BROKEN, __ATOMIC_ACQ_REL) == S_BROKEN) return;
    p->broken_err = err;
    free(p->broken_msg);
    p->broken_msg = strdup(msg);
    for (size_t i = 0; i < p->nworkers; i++)
        if (p->w[i].alive) co_process_terminate(p->w[i].proc);
    /* the dispatcher fails what is queued */
    job_t *poke = job_new(J_POKE);
    if (poke) co_queue_put(p->submitq, poke, -1);
}

/* Starts the worker of slot w.  0 or an errno value. */
static int worker_start(co_procpool_t *p, worker_t *w)
{
    co_conn_t *ends[2];
    if (co_pipe(ends, true) < 0) return errno;
    /* Our end is ours alone: no forked child (another worker, the
     * program's own children) keeps a copy that would hide this worker's
     * death from us. */
    co__process_own_fd(co_conn_fd(ends[0]));
    memset(&p->slots[w->index], 0, sizeof p->slots[w->index]);
    wargs_t a = {.pool = p,
                 .index = w->index,
                 .conn = ends[1],
                 .slot = &p->slots[w->index],
                 .init = p->init,
                 .init_arg = p->init_arg,
                 .init_len = p->init_len,
                 .max_jobs = p->max_jobs,
                 .mask = p->mask};
    char name[256];
    snprintf(name, sizeof name, "%s-%u", p->name, w->index);
    co_process_t *proc = co_process_new(worker_main, &a, &(co_process_opts_t){.name = name, .daemon = true});
    int e = proc ? 0 : errno;
    if (!e && co_process_start(proc) < 0) e = errno;
    co_conn_free(ends[1]); /* the worker has its copy */
    if (e) {
        co_process_free(proc);
        co__process_disown_fd(co_conn_fd(ends[0]));
        co_conn_free(ends[0]);
        return e;
    }
    w->proc = proc;
    w->conn = ends[0];
    w->inflight = (co__list_t){0};
    w->njobs = w->jobs_sent = 0;
    w->alive = true;
    w->quitting = w->ran_something = w->timed_out = false;
    return 0;
}

static void worker_gone(co_procpool_t *p, worker_t *w)
{
    w->alive = false;
    co__process_disown_fd(co_conn_fd(w->conn));
    co_conn_free(w->conn);
    w->conn = NULL;
    co_process_free(w->proc);
    w->proc = NULL;
}

typedef struct keeper_arg {
    co_procpool_t *p;
    worker_t *w;
} keeper_arg_t;

/* Keeps slot w staffed: starts a worker, carries its frames, handles its
 * end, starts the next. */
static void *keeper(void *arg)
{
    co_procpool_t *p = ((keeper_arg_t *)arg)->p;
    worker_t *w = ((keeper_arg_t *)arg)->w;
    free(arg);
    bool first = true;
    while (first || wanted(p)) {
        int e = worker_start(p, w);
        if (first) {
            if (e && !p->ready_err) p->ready_err = e;
            if (--p->keepers_starting == 0) co_event_set(&p->ready);
        }
        if (e) {
            if (first) break;
            co_sleep_ms(100); /* no process could be made now: try again */
            continue;
        }
        if (!first) __atomic_add_fetch(&p->replaced, 1, __ATOMIC_RELAXED);
        first = false;
        co_event_set(&p->capacity);
        co_coro_t *wr = co_spawn(writer, w);
        for (;;) {
            void *frame;
            size_t flen;
            if (co_conn_recv(w->conn, &frame, &flen, -1) < 0) break; /* EOF: the worker ended */
            res_hdr_t *h = frame;
            if (flen >= sizeof *h && h->type == F_INITFAIL) {
                size_t ml = flen - sizeof *h;
                char msg[600];
                snprintf(msg, sizeof msg, "the initializer failed in worker %d: %s%s%.*s", (int)co_process_pid(w->proc),
                         strerror(h->err), ml ? ": " : "", (int)(ml > 400 ? 400 : ml), (const char *)(h + 1));
                break_pool(p, ENOTRECOVERABLE, msg);
                free(frame);
                continue;
            }
            if (!on_results(p, w, frame, flen)) {
                free(frame);
                co_process_kill(w->proc); /* it speaks nonsense: replace it */
            }
        }
        w->alive = false;
        co_process_join(w->proc, -1);
        co_queue_close(w->wq);
        co_join(wr, -1, NULL);
        /* the queue may still hold frames: gone with the worker */
        co_queue_t *fresh = co_queue_new(NULL);
        if (fresh) {
            co_queue_free(w->wq, drop_frames);
            w->wq = fresh;
        }
        if (!w->ran_something && !stopping(p) && !w->quitting && p->max_jobs != 1 &&
            ++p->startup_deaths >= 3 * p->nworkers) {
            char msg[400], why[256];
            describe_death(why, sizeof why, co_process_pid(w->proc), co_process_exitcode(w->proc), false, 0);
            snprintf(msg, sizeof msg, "workers keep dying before running anything (the last: %s)", why);
            break_pool(p, ENOTRECOVERABLE, msg);
        }
        on_death(p, w);
        worker_gone(p, w);
        co_event_set(&p->capacity);
        job_t *poke = job_new(J_POKE); /* the dispatcher looks at the requeued jobs */
        if (poke) co_queue_put(p->submitq, poke, -1);
    }
    if (--p->keepers == 0) co_event_set(&p->stopped);
    return NULL;
}

/* Kills the worker of a task that outlived its deadline. */
static void *watchdog(void *arg)
{
    co_procpool_t *p = arg;
    for (;;) {
        int64_t now = co_now(), next = -1;
        for (size_t i = 0; i < p->nworkers; i++) {
            worker_t *w = &p->w[i];
            if (!w->alive || w->timed_out) continue;
            wslot_t *s = &p->slots[i];
            if (!__atomic_load_n(&s->busy, __ATOMIC_ACQUIRE)) continue;
            int64_t d = __atomic_load_n(&s->deadline, __ATOMIC_RELAXED);
            if (!d) continue;
            if (now >= d) {
                w->timed_out = true;
                w->to_job = __atomic_load_n(&s->job, __ATOMIC_RELAXED);
                w->to_index = __atomic_load_n(&s->index, __ATOMIC_RELAXED);
                co_process_kill(w->proc);
            } else if (next < 0 || d < next) {
                next = d;
            }
        }
        /* Look again at the earliest deadline, and every 50 ms while tasks
         * with deadlines may be starting. */
        bool any = false;
        for (size_t i = 0; i < p->nworkers; i++)
            for (co__lnode_t *n = p->w[i].inflight.head; n && !any; n = n->next)
                any = CO__CONTAINER(n, job_t, node)->timeout != 0;
        int r;
        if (!any) {
            co_event_clear(&p->watch);
            r = co_event_wait(&p->watch, -1);
        } else {
            int64_t until = co_now() + 50;
            if (next >= 0 && next < until) until = next;
            r = co_sleep_until(until);
        }
        if (r < 0 && errno == ECANCELED) return NULL;
    }
}

static void *manager(void *arg)
{
    co_procpool_t *p = arg;
    co_event_init(&p->capacity);
    co_event_init(&p->watch);
    co_coro_t *d = co_spawn(dispatcher, p);
    co_coro_t *wd = co_spawn(watchdog, p);
    p->keepers = p->keepers_starting = (unsigned)p->nworkers;
    for (size_t i = 0; i < p->nworkers; i++) {
        keeper_arg_t *ka = malloc(sizeof *ka);
        CO__CHECK(ka != NULL, "out of memory starting a process pool");
        *ka = (keeper_arg_t){p, &p->w[i]};
        co_detach(co_spawn(keeper, ka));
    }
    /* Ends when the pool is freed: every worker has ended by then. */
    co_event_wait(&p->quit, -1);
    job_t *stop = job_new(J_STOP);
    if (stop)
        co_queue_put(p->submitq, stop, -1);
    else
        co_kill(d);
    co_join(d, -1, NULL);
    co_kill(wd);
    co_join(wd, -1, NULL);
    while (__atomic_load_n(&p->keepers, __ATOMIC_ACQUIRE) > 0) co_sleep_ms(1); /* (already 0: stopped was set) */
    return NULL;
}

/* ========================================================== the API */

static unsigned pool_serial;

static void pool_destroy(co_procpool_t *p)
{
    if (p->submitq) co_queue_free(p->submitq, (void (*)(void *))job_free);
    if (p->w)
        for (size_t i = 0; i < p->nworkers; i++)
            if (p->w[i].wq) co_queue_free(p->w[i].wq, drop_frames);
    if (p->slots) munmap(p->slots, p->nworkers * sizeof(wslot_t));
    co_event_destroy(&p->stopped);
    co_event_destroy(&p->quit);
    co_event_destroy(&p->ready);
    free(p->w);
    free(p->init_arg);
    free(p->name);
    free(p->broken_msg);
    free(p);
}

static void *manager_thread(void *arg)
{
    co_procpool_t *p = arg;
    pthread_setname_np(pthread_self(), "cogent-ppool");
    return manager(p);
}

co_procpool_t *co_procpool_new(const co_procpool_opts_t *opts)
{
    co_procpool_opts_t o = opts ? *opts : (co_procpool_opts_t){0};
    if (o.init_len && !o.init_arg) return errno = EINVAL, NULL;
    if (o.task_timeout_ms < 0) return errno = EINVAL, NULL;
    if (co__process_exiting()) return errno = EAGAIN, NULL;
    co_procpool_t *p = calloc(1, sizeof *p);
    if (!p) return errno = ENOMEM, NULL;
    p->nworkers = o.workers ? o.workers : (size_t)co_cpu_count();
    p->pid = co__getpid();
    p->max_jobs = o.max_tasks_per_child;
    p->timeout = o.task_timeout_ms;
    p->init = o.init;
    p->init_len = o.init_len;
    co_event_init(&p->stopped);
    co_event_init(&p->quit);
    co_event_init(&p->ready);
    char name[64];
    if (!o.name) snprintf(name, sizeof name, "ProcessPool-%u", __atomic_add_fetch(&pool_serial, 1, __ATOMIC_RELAXED));
    p->name = strdup(o.name ? o.name : name);
    p->init_arg = malloc(o.init_len ? o.init_len : 1);
    p->w = calloc(p->nworkers, sizeof *p->w);
    p->submitq = co_queue_new(NULL);
    void *slots = mmap(NULL, p->nworkers * sizeof(wslot_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    p->slots = slots == MAP_FAILED ? NULL : slots;
    bool ok = p->name && p->init_arg && p->w && p->submitq && p->slots;
    for (size_t i = 0; ok && i < p->nworkers; i++) {
        p->w[i].index = (unsigned)i;
        ok = (p->w[i].wq = co_queue_new(NULL)) != NULL;
    }
    if (!ok) {
        pool_destroy(p);
        return errno = ENOMEM, NULL;
    }
    if (o.init_len) memcpy(p->init_arg, o.init_arg, o.init_len);
    /* The manager takes none of the program's signals. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &p->mask);
    int e = pthread_create(&p->thread, NULL, manager_thread, p);
    pthread_sigmask(SIG_SETMASK, &p->mask, NULL);
    if (e) {
        pool_destroy(p);
        return errno = e, NULL;
    }
    /* Wait for the first workers (a coroutine parks). */
    while (co_event_wait(&p->ready, -1) < 0) {
    }
    if (p->ready_err) {
        e = p->ready_err;
        co_procpool_terminate(p);
        co_procpool_free(p);
        return errno = e, NULL;
    }
    return p;
}

/* In a fork child the pool's thread and workers are not there: its copy
 * refuses everything (ECHILD) rather than queue work nobody would run. */
static bool foreign(const co_procpool_t *p)
{
    return co__getpid() != p->pid;
}

static int refusal(const co_procpool_t *p)
{
    if (foreign(p)) return ECHILD;
    unsigned s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    return s == S_RUNNING ? 0 : s == S_BROKEN ? ENOTRECOVERABLE : EPIPE;
}

static int post(co_procpool_t *p, int kind)
{
    job_t *j = job_new(kind);
    if (!j) return ENOMEM;
    co_queue_put(p->submitq, j, -1);
    return 0;
}

/* Queues one task: its future.  NULL with errno. */
static co_future_t *submit_one(co_procpool_t *p, co_ptask_fn fn, const void *arg, size_t len)
{
    CO__CHECK(p != NULL, "co_procpool: NULL pool");
    if (!fn || (len && !arg)) return errno = EINVAL, NULL;
    int e = refusal(p);
    if (e) return errno = e, NULL;
    co_future_t *f = co__future_task(NULL, NULL); /* the handle's reference and the pool's */
    if (!f) return errno = ENOMEM, NULL;
    job_t *j = job_new(J_SINGLE);
    void *copy = malloc(len ? len : 1);
    if (!j || !copy) {
        co__future_discard(f);
        free(j);
        free(copy);
        return errno = ENOMEM, NULL;
    }
    if (len) memcpy(copy, arg, len);
    j->fut = f;
    j->fn = fn;
    j->arg = copy;
    j->len = len;
    j->timeout = p->timeout;
    co_queue_put(p->submitq, j, -1);
    return f;
}

co_future_t *co_procpool_submit(co_procpool_t *p, co_ptask_fn fn, const void *arg, size_t len)
{
    return submit_one(p, fn, arg, len);
}

typedef struct async_cb {
    co_future_fn callback, error_callback;
    void *arg;
} async_cb_t;

/* apply_async's callbacks: one or the other, once. */
static void async_done(co_future_t *f, void *arg)
{
    async_cb_t cb = *(async_cb_t *)arg;
    free(arg);
    if (co_future_error(f, NULL) == 0) {
        if (cb.callback) cb.callback(f, cb.arg);
    } else if (cb.error_callback) {
        cb.error_callback(f, cb.arg);
    }
}

co_future_t *co_procpool_apply_async(co_procpool_t *p, co_ptask_fn fn, const void *arg, size_t len,
                                     co_future_fn callback, co_future_fn error_callback, void *cb_arg)
{
    async_cb_t *cb = NULL;
    if (callback || error_callback) {
        CO__CHECK(p != NULL, "co_procpool_apply_async: NULL pool");
        if (!fn || (len && !arg)) return errno = EINVAL, NULL;
        if (!(cb = malloc(sizeof *cb))) return errno = ENOMEM, NULL;
        *cb = (async_cb_t){callback, error_callback, cb_arg};
    }
    co_future_t *f = submit_one(p, fn, arg, len);
    if (!f) {
        free(cb);
        return NULL;
    }
    if (cb && co_future_add_done_callback(f, async_done, cb) < 0) {
        int e = errno;
        free(cb);
        co_future_cancel(f); /* not started: dropped; else it runs, unheard */
        co_future_free(f);
        return errno = e, NULL;
    }
    return f;
}

int co_procpool_apply(co_procpool_t *p, co_ptask_fn fn, const void *arg, size_t len, void **result, size_t *rlen,
                      int64_t deadline)
{
    co_future_t *f = submit_one(p, fn, arg, len);
    if (!f) return -1;
    if (co_future_wait(f, deadline) < 0) {
        int e = errno;
        co_future_cancel(f); /* dropped if it has not started */
        co_future_free(f);
        return errno = e, -1;
    }
    void *v;
    int e = 0;
    if (co_future_result(f, 0, &v) < 0) {
        e = errno;
    } else {
        size_t n = co_future_size(f);
        if (result) {
            *result = malloc(n ? n : 1);
            if (!*result)
                e = ENOMEM;
            else if (n)
                memcpy(*result, v, n);
        }
        if (!e && rlen) *rlen = n;
    }
    co_future_free(f);
    return e ? (errno = e, -1) : 0;
}

/* ---------------------------------------------------------------- maps */

static void presults_free(co_presults_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nframes; i++) free(r->frames[i]);
    free(r->frames);
    free(r->res);
    free(r->have);
    free(r);
}

static void mapreq_unref(mapreq_t *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t f = 0; f < m->nraw; f++) free(m->raw[f].frame);
    free(m->raw);
    presults_free(m->r);
    free(m->order);
    free(m->chunk_left);
    co_cond_destroy(&m->cond);
    co_lock_destroy(&m->lock);
    free(m);
}

/* Queues chunk c of m.  0 or an errno. */
static int map_send_chunk(mapreq_t *m, size_t c)
{
    job_t *j = job_new(J_CHUNK);
    if (!j) return ENOMEM;
    j->fn = m->fn;
    j->timeout = m->pool->timeout;
    j->map = m;
    j->first = c * m->chunk;
    j->count = m->r->n - j->first < m->chunk ? m->r->n - j->first : m->chunk;
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    co_queue_put(m->pool->submitq, j, -1);
    return 0;
}

static size_t default_chunk(const co_procpool_t *p, size_t n)
{
    /* Python's Pool.map: four chunks per worker. */
    size_t per = p->nworkers * 4;
    size_t c = n / per + (n % per ? 1 : 0);
    return c ? c : 1;
}

static mapreq_t *map_start(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n, size_t chunk,
                           bool unordered, size_t window)
{
    CO__CHECK(p != NULL, "co_procpool: NULL pool");
    if (!fn || (n && !items)) return errno = EINVAL, NULL;
    int e = refusal(p);
    if (e) return errno = e, NULL;
    mapreq_t *m = calloc(1, sizeof *m);
    co_presults_t *r = calloc(1, sizeof *r);
    if (!m || !r) {
        free(m);
        free(r);
        return errno = ENOMEM, NULL;
    }
    m->pool = p;
    m->fn = fn;
    m->items = items;
    m->r = r;
    m->unordered = unordered;
    m->chunk = chunk ? chunk : default_chunk(p, n);
    m->nchunks = n / m->chunk + (n % m->chunk ? 1 : 0);
    m->window = window && window < m->nchunks ? window : m->nchunks;
    m->refs = 1;
    r->n = n;
    r->res = malloc((n ? n : 1) * sizeof *r->res); /* written as results come (have[] says which) */
    r->have = calloc(n ? n : 1, 1);
    m->chunk_left = calloc(m->nchunks ? m->nchunks : 1, sizeof *m->chunk_left);
    if (unordered) m->order = calloc(n ? n : 1, sizeof *m->order);
    co_lock_init(&m->lock, "co_procpool map");
    co_cond_init(&m->cond, &m->lock);
    if (!r->res || !r->have || !m->chunk_left || (unordered && !m->order)) {
        mapreq_unref(m);
        return errno = ENOMEM, NULL;
    }
    for (size_t c = 0; c < m->nchunks; c++) m->chunk_left[c] = (c + 1) * m->chunk <= n ? m->chunk : n - c * m->chunk;
    for (; m->sent_chunks < m->window; m->sent_chunks++)
        if ((e = map_send_chunk(m, m->sent_chunks)) != 0) {
            /* what was sent runs; the caller learns of the rest */
            __atomic_store_n(&m->fail, e, __ATOMIC_RELEASE);
            break;
        }
    return m;
}

/* Marks the results not in yet as failed with err (the caller gave up),
 * so that jobs still queued are dropped.  lock held. */
static void map_abandon(mapreq_t *m, int err)
{
    if (!m->fail) __atomic_store_n(&m->fail, err, __ATOMIC_RELEASE);
}

co_presults_t *co_procpool_map(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n, size_t chunksize,
                               int64_t deadline)
{
    mapreq_t *m = map_start(p, fn, items, n, chunksize, false, 0);
    if (!m) return NULL;
    co_lock_acquire(&m->lock, -1);
    m->wake_at = n; /* woken once, with everything in (or a failure) */
    int e = 0;
    while (m->ndone < n) {
        if (m->fail && m->sent_chunks < m->nchunks) {
            e = m->fail;
            break;
        }
        if (co_cond_wait(&m->cond, deadline) < 0) {
            e = errno;
            break;
        }
    }
    co_presults_t *r = NULL;
    if (e) {
        map_abandon(m, e);
    } else {
        map_parse(m);
        r = m->r;
        m->r = NULL;
    }
    co_lock_release(&m->lock);
    mapreq_unref(m);
    return e ? (errno = e, NULL) : r;
}

size_t co_presults_count(const co_presults_t *r)
{
    return r->n;
}

size_t co_presults_failed(const co_presults_t *r)
{
    return r->failed;
}

const co_presult_t *co_presults_get(const co_presults_t *r, size_t i)
{
    CO__CHECK(i < r->n, "co_presults_get: index %zu of %zu results", i, r->n);
    return &r->res[i];
}

void co_presults_free(co_presults_t *r)
{
    presults_free(r);
}

struct co_pimap {
    mapreq_t *m;
};

static co_pimap_t *imap(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n, size_t chunksize,
                        bool unordered)
{
    co_pimap_t *it = malloc(sizeof *it);
    if (!it) return errno = ENOMEM, NULL;
    /* Two chunks per worker ahead of the consumer: the input is taken as
     * results are, not all at once. */
    mapreq_t *m = map_start(p, fn, items, n, chunksize, unordered, p->nworkers * 2);
    if (!m) {
        free(it);
        return NULL;
    }
    it->m = m;
    return it;
}

co_pimap_t *co_procpool_imap(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n, size_t chunksize)
{
    return imap(p, fn, items, n, chunksize, false);
}

co_pimap_t *co_procpool_imap_unordered(co_procpool_t *p, co_ptask_fn fn, const struct iovec *items, size_t n,
                                       size_t chunksize)
{
    return imap(p, fn, items, n, chunksize, true);
}

int co_pimap_next(co_pimap_t *it, co_presult_t *out, int64_t deadline)
{
    CO__CHECK(it != NULL && out != NULL, "co_pimap_next: NULL iterator or result");
    mapreq_t *m = it->m;
    co_presults_t *r = m->r;
    co_lock_acquire(&m->lock, -1);
    int e = 0;
    size_t i = 0;
    for (;;) {
        if (m->nraw) map_parse(m);
        if (m->unordered) {
            if (m->order_head == r->n) {
                e = ENOENT;
                break;
            }
            if (m->order_head < m->order_tail) {
                i = m->order[m->order_head++];
                break;
            }
        } else {
            if (m->next == r->n) {
                e = ENOENT;
                break;
            }
            if (r->have[m->next]) {
                i = m->next++;
                break;
            }
        }
        if (m->fail && m->sent_chunks < m->nchunks) {
            e = m->fail;
            break;
        }
        if (co_cond_wait(&m->cond, deadline) < 0) {
            e = errno;
            break;
        }
    }
    if (!e) {
        *out = r->res[i];
        /* A chunk wholly handed out makes room for the next one. */
        size_t c = i / m->chunk;
        if (--m->chunk_left[c] == 0 && m->sent_chunks < m->nchunks && !m->fail) {
            int se = map_send_chunk(m, m->sent_chunks);
            if (se)
                __atomic_store_n(&m->fail, se, __ATOMIC_RELEASE);
            else
                m->sent_chunks++;
        }
    }
    co_lock_release(&m->lock);
    return e ? (errno = e, -1) : 0;
}

void co_pimap_free(co_pimap_t *it)
{
    if (!it) return;
    co_lock_acquire(&it->m->lock, -1);
    map_abandon(it->m, ECANCELED);
    co_lock_release(&it->m->lock);
    mapreq_unref(it->m);
    free(it);
}

/* --------------------------------------------------------- lifecycle */

void co_procpool_close(co_procpool_t *p)
{
    CO__CHECK(p != NULL, "co_procpool_close: NULL pool");
    if (foreign(p)) return;
    unsigned expect = S_RUNNING;
    if (__atomic_compare_exchange_n(&p->state, &expect, S_CLOSED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        post(p, J_POKE);
}

void co_procpool_terminate(co_procpool_t *p)
{
    CO__CHECK(p != NULL, "co_procpool_terminate: NULL pool");
    if (foreign(p)) return;
    unsigned s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (s == S_TERMINATED) return;
    if (s != S_BROKEN) __atomic_store_n(&p->state, S_TERMINATED, __ATOMIC_RELEASE);
    post(p, J_TERMINATE);
}

int co_procpool_join(co_procpool_t *p, int64_t deadline)
{
    CO__CHECK(p != NULL, "co_procpool_join: NULL pool");
    if (foreign(p)) return errno = ECHILD, -1;
    if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == S_RUNNING) return errno = EINVAL, -1;
    if (pthread_equal(pthread_self(), p->thread)) return errno = EDEADLK, -1;
    return co_event_wait(&p->stopped, deadline);
}

int co_procpool_shutdown(co_procpool_t *p, bool wait, bool cancel_pending)
{
    CO__CHECK(p != NULL, "co_procpool_shutdown: NULL pool");
    if (foreign(p)) return errno = ECHILD, -1;
    co_procpool_close(p);
    if (cancel_pending) post(p, J_CANCEL);
    return wait ? co_procpool_join(p, -1) : 0;
}

void co_procpool_free(co_procpool_t *p)
{
    if (!p) return;
    if (foreign(p)) return; /* a fork child's copy: its state may be mid-change, left as it is */
    CO__CHECK(!pthread_equal(pthread_self(), p->thread), "co_procpool_free: called from the pool's own thread");
    if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == S_RUNNING) co_procpool_terminate(p);
    while (co_event_wait(&p->stopped, -1) < 0) {
    }
    co_event_set(&p->quit);
    pthread_join(p->thread, NULL);
    /* Whatever the dispatcher had not taken (submissions after the end). */
    void *item;
    while (co_queue_get_nowait(p->submitq, &item) == 0) {
        job_t *j = item;
        if (j->kind == J_SINGLE || j->kind == J_CHUNK)
            refuse(p, j);
        else
            job_free(j);
    }
    pool_destroy(p);
}

void co_procpool_stats(const co_procpool_t *p, co_procpool_stats_t *st)
{
    st->workers = p->nworkers;
    st->completed = __atomic_load_n(&p->completed, __ATOMIC_RELAXED);
    st->failed = __atomic_load_n(&p->failed, __ATOMIC_RELAXED);
    st->crashes = __atomic_load_n(&p->crashes, __ATOMIC_RELAXED);
    st->replaced = __atomic_load_n(&p->replaced, __ATOMIC_RELAXED);
}
