/* Lock-order checking, after the Linux kernel's lockdep: remember, for
 * every pair of locks ever held together, which was taken first; warn the
 * first time an acquisition contradicts an order seen before (directly or
 * through a chain A -> B -> C), even though this run did not deadlock.
 *
 * Off by default (COGENT_LOCKDEP=1 or co_lockdep_enable).  When on, each
 * actor (coroutine or thread) keeps the locks it holds in order, and one
 * process-wide mutex guards the order graph: this is a debugging mode,
 * not a fast path.  Locks are known by address; co_lock_destroy forgets
 * one so that a new lock at the same address starts clean. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"

bool co__lockdep_on;
static uint64_t reports;

typedef struct held {
    const co_lock_t *lock;
    const char *file;
    int line;
} held_t;

typedef struct held_stack {
    size_t n, cap;
    held_t e[];
} held_stack_t;

/* An edge "from was held when to was taken", with both places. */
typedef struct edge {
    struct edge *next; /* from's out-list */
    const co_lock_t *to;
    const char *from_file, *to_file;
    int from_line, to_line;
} edge_t;

typedef struct node {
    struct node *next; /* hash chain */
    const co_lock_t *lock;
    edge_t *out;
    unsigned mark;
} node_t;

#define NBUCKETS 1024
static pthread_mutex_t graph_lock = PTHREAD_MUTEX_INITIALIZER;
static node_t *buckets[NBUCKETS];
static unsigned mark_gen;

void co__lockdep_fork_prepare(void)
{
    pthread_mutex_lock(&graph_lock);
}

void co__lockdep_fork_parent(void)
{
    pthread_mutex_unlock(&graph_lock);
}

void co__lockdep_fork_child(void)
{
    pthread_mutex_unlock(&graph_lock);
}

void co_lockdep_enable(bool on)
{
    __atomic_store_n(&co__lockdep_on, on, __ATOMIC_RELAXED);
}

uint64_t co_lockdep_reports(void)
{
    return __atomic_load_n(&reports, __ATOMIC_RELAXED);
}

static size_t bucket(const co_lock_t *l)
{
    return ((uintptr_t)l >> 4) * 0x9E3779B97F4A7C15ull >> 54;
}

static node_t *node_get(const co_lock_t *l, bool create)
{
    node_t **b = &buckets[bucket(l)];
    for (node_t *n = *b; n; n = n->next)
        if (n->lock == l) return n;
    if (!create) return NULL;
    node_t *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->lock = l;
    n->next = *b;
    *b = n;
    return n;
}

static edge_t *edge_find(node_t *from, const co_lock_t *to)
{
    for (edge_t *e = from->out; e; e = e->next)
        if (e->to == to) return e;
    return NULL;
}

/* Depth-first search for a chain from -> ... -> target; on success the
 * chain's edges are left in path[] (at most max), returns its length. */
static size_t find_path(node_t *from, const co_lock_t *target, edge_t **path, size_t depth, size_t max)
{
    if (from->mark == mark_gen || depth >= max) return 0;
    from->mark = mark_gen;
    for (edge_t *e = from->out; e; e = e->next) {
        path[depth] = e;
        if (e->to == target) return depth + 1;
        node_t *n = node_get(e->to, false);
        if (n) {
            size_t len = find_path(n, target, path, depth + 1, max);
            if (len) return len;
        }
    }
    return 0;
}

static const char *lname(const co_lock_t *l, char *buf, size_t n)
{
    if (l->_name)
        snprintf(buf, n, "'%s' (%p)", l->_name, (const void *)l);
    else
        snprintf(buf, n, "%p", (const void *)l);
    return buf;
}

static const char *site(const char *file, int line, char *buf, size_t n)
{
    if (file)
        snprintf(buf, n, "%s:%d", file, line);
    else
        snprintf(buf, n, "?");
    return buf;
}

static void report(co__actor_t *self, const held_t *h, const co_lock_t *l, const char *file, int line, edge_t **path,
                   size_t len)
{
    char a[96], b[96], s1[160], s2[160], who[128];
    fprintf(stderr, "cogent: lockdep: lock order inversion (a deadlock waiting to happen)\n");
    fprintf(stderr, "  %s takes lock %s at %s while holding lock %s (taken at %s)\n",
            co__actor_describe(self, who, sizeof who), lname(l, a, sizeof a), site(file, line, s1, sizeof s1),
            lname(h->lock, b, sizeof b), site(h->file, h->line, s2, sizeof s2));
    fprintf(stderr, "  but earlier the opposite order was seen:\n");
    const co_lock_t *from = l;
    for (size_t i = 0; i < len; i++) {
        fprintf(stderr, "    lock %s was taken at %s while holding lock %s (taken at %s)\n",
                lname(path[i]->to, a, sizeof a), site(path[i]->to_file, path[i]->to_line, s1, sizeof s1),
                lname(from, b, sizeof b), site(path[i]->from_file, path[i]->from_line, s2, sizeof s2));
        from = path[i]->to;
    }
    __atomic_fetch_add(&reports, 1, __ATOMIC_RELEASE);
}

void co__lockdep_acquired(co__actor_t *self, const co_lock_t *l, const char *file, int line)
{
    held_stack_t *hs = self->held;
    pthread_mutex_lock(&graph_lock);
    for (size_t i = 0; hs && i < hs->n; i++) {
        held_t *h = &hs->e[i];
        if (h->lock == l) continue;
        node_t *from = node_get(h->lock, true);
        if (!from || edge_find(from, l)) continue;
        /* New order h -> l: does l already lead to h? */
        node_t *ln = node_get(l, false);
        edge_t *path[16];
        size_t len = 0;
        if (ln) {
            mark_gen++;
            len = find_path(ln, h->lock, path, 0, 16);
        }
        if (len) report(self, h, l, file, line, path, len);
        edge_t *e = calloc(1, sizeof *e);
        if (!e) continue;
        *e = (edge_t){
            .next = from->out, .to = l, .from_file = h->file, .from_line = h->line, .to_file = file, .to_line = line};
        from->out = e;
    }
    pthread_mutex_unlock(&graph_lock);
    if (!hs || hs->n == hs->cap) {
        size_t cap = hs ? hs->cap * 2 : 8;
        held_stack_t *n = realloc(hs, sizeof *n + cap * sizeof n->e[0]);
        if (!n) return; /* out of memory: this lock goes unrecorded */
        if (!hs) n->n = 0;
        n->cap = cap;
        self->held = hs = n;
    }
    hs->e[hs->n++] = (held_t){l, file, line};
}

void co__lockdep_released(co__actor_t *self, const co_lock_t *l)
{
    held_stack_t *hs = self->held;
    if (!hs) return;
    for (size_t i = hs->n; i-- > 0;) {
        if (hs->e[i].lock == l) {
            memmove(&hs->e[i], &hs->e[i + 1], (hs->n - i - 1) * sizeof hs->e[0]);
            hs->n--;
            return;
        }
    }
}

void co__lockdep_forget(const co_lock_t *l)
{
    pthread_mutex_lock(&graph_lock);
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (node_t **pn = &buckets[b]; *pn;) {
            node_t *n = *pn;
            for (edge_t **pe = &n->out; *pe;) {
                if ((*pe)->to == l) {
                    edge_t *dead = *pe;
                    *pe = dead->next;
                    free(dead);
                } else
                    pe = &(*pe)->next;
            }
            if (n->lock == l) {
                *pn = n->next;
                while (n->out) {
                    edge_t *dead = n->out;
                    n->out = dead->next;
                    free(dead);
                }
                free(n);
            } else
                pn = &n->next;
        }
    }
    pthread_mutex_unlock(&graph_lock);
}
