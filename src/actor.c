/* Actors: who owns a lock (see actor.h).  One record per coroutine that
 * ever took a lock, one per thread that took one without a hub; a
 * thread's record moves to its main coroutine when the thread gets a hub,
 * so the locks it holds stay held by the same owner. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "actor.h"
#include "fork.h"

static pthread_mutex_t actor_lock = PTHREAD_MUTEX_INITIALIZER;
static co__actor_t *actor_pool;
static pthread_key_t actor_key;
static pthread_once_t actor_once = PTHREAD_ONCE_INIT;

static void actor_thread_exit(void *a)
{
    co__tls.actor = NULL;
    co__actor_release(a);
}

static void init_once(void)
{
    CO__CHECK(pthread_key_create(&actor_key, actor_thread_exit) == 0, "pthread_key_create failed");
    co__coro_drop_actor = co__actor_release;
    co__fork_init();
}

static co__actor_t *actor_new(co_coro_t *co)
{
    pthread_once(&actor_once, init_once);
    pthread_mutex_lock(&actor_lock);
    co__actor_t *a = actor_pool;
    if (a) actor_pool = a->next;
    pthread_mutex_unlock(&actor_lock);
    if (!a && !(a = calloc(1, sizeof *a))) return NULL;
    a->next = NULL;
    a->co = co;
    a->tid = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&a->blocked_on, NULL, __ATOMIC_RELAXED);
    a->wfile = NULL;
    a->wline = 0;
    a->held = NULL;
    a->nheld = 0;
    a->abandoned = false;
    return a;
}

void co__actor_release(co__actor_t *a)
{
    if (!a) return;
    if (a->nheld) {
        char who[128];
        fprintf(stderr, "cogent: %s ended holding %zu lock%s; %s locked\n", co__actor_describe(a, who, sizeof who),
                a->nheld, a->nheld == 1 ? "" : "s", a->nheld == 1 ? "it stays" : "they stay");
        a->co = NULL;
        a->abandoned = true;
        return;
    }
    free(a->held);
    a->held = NULL;
    a->co = NULL;
    pthread_mutex_lock(&actor_lock);
    a->next = actor_pool;
    actor_pool = a;
    pthread_mutex_unlock(&actor_lock);
}

co__actor_t *co__actor_self_slow(void)
{
    co__hub_t *h = co__tls.hub;
    if (h) {
        co_coro_t *c = h->current;
        if (CO__LIKELY(c->actor != NULL)) return c->actor;
        if (c->is_main && co__tls.actor) {
            /* The thread took locks before it had a hub: its record now
             * belongs to its main coroutine (dropped with the hub). */
            c->actor = co__tls.actor;
            c->actor->co = c;
            co__tls.actor = NULL;
            pthread_setspecific(actor_key, NULL);
            return c->actor;
        }
        return c->actor = actor_new(c);
    }
    if (CO__LIKELY(co__tls.actor != NULL)) return co__tls.actor;
    co__tls.actor = actor_new(NULL);
    if (co__tls.actor) pthread_setspecific(actor_key, co__tls.actor);
    return co__tls.actor;
}

const char *co__actor_describe(const co__actor_t *a, char *buf, size_t n)
{
    if (!a)
        snprintf(buf, n, "nobody");
    else if (a->abandoned)
        snprintf(buf, n, "a coroutine or thread that ended (thread %d)", (int)a->tid);
    else if (a->co && a->co->is_main)
        snprintf(buf, n, "the main coroutine of thread %d", (int)a->tid);
    else if (a->co && a->co->name)
        snprintf(buf, n, "coroutine '%s' (#%" PRIu64 ") of thread %d", a->co->name, a->co->id, (int)a->tid);
    else if (a->co)
        snprintf(buf, n, "coroutine #%" PRIu64 " of thread %d", a->co->id, (int)a->tid);
    else
        snprintf(buf, n, "thread %d", (int)a->tid);
    return buf;
}

void co__actor_fork_prepare(void)
{
    pthread_mutex_lock(&actor_lock);
}

void co__actor_fork_parent(void)
{
    pthread_mutex_unlock(&actor_lock);
}

void co__actor_fork_child(void)
{
    pthread_mutex_unlock(&actor_lock);
}
