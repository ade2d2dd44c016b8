/* Generators: next, send, final value, close, errors. */
#include "cogent.h"
#include <pthread.h>

#include "harness.h"

static void *count_to(co_gen_t *g, void *arg)
{
    intptr_t n = (intptr_t)arg;
    for (intptr_t i = 0; i < n; i++)
        if (co_gen_yield(g, (void *)i, NULL) < 0) return (void *)-1;
    return (void *)100;
}

static void test_next_until_done(void)
{
    co_gen_t *g = co_gen_new(count_to, (void *)5, NULL);
    ASSERT(g);
    void *v;
    intptr_t expect = 0;
    int r;
    while ((r = co_gen_next(g, &v)) > 0) ASSERT_EQ((intptr_t)v, expect++);
    ASSERT_EQ(r, 0);
    ASSERT_EQ((intptr_t)v, 100); /* the final value */
    ASSERT_EQ(expect, 5);
    ASSERT(co_gen_finished(g));
    ASSERT_ERR(co_gen_next(g, &v), EPIPE);
    ASSERT_ERR(co_gen_close(g), EPIPE);
    co_gen_free(g);
}

/* The classic consumer: x = yield; handle x. */
static void *running_sum(co_gen_t *g, void *arg)
{
    (void)arg;
    intptr_t sum = 0;
    void *in = NULL;
    for (;;) {
        if (co_gen_yield(g, (void *)sum, &in) < 0) break;
        sum += (intptr_t)in;
    }
    return (void *)(sum * 1000); /* returned after close: nobody sees it */
}

static void test_send(void)
{
    co_gen_t *g = co_gen_new(running_sum, NULL, NULL);
    void *v;
    ASSERT_ERR(co_gen_send(g, (void *)1, &v), EINVAL); /* fresh: nothing to receive it */
    ASSERT_EQ(co_gen_next(g, &v), 1);
    ASSERT_EQ((intptr_t)v, 0);
    for (intptr_t i = 1; i <= 10; i++) ASSERT_EQ(co_gen_send(g, (void *)i, &v), 1);
    ASSERT_EQ((intptr_t)v, 55);
    ASSERT_EQ(co_gen_close(g), 0);
    ASSERT(co_gen_finished(g));
    ASSERT_ERR(co_gen_send(g, (void *)1, &v), EPIPE);
    co_gen_free(g);
}

static int cleaned;
static void *needs_cleanup(co_gen_t *g, void *arg)
{
    (void)arg;
    char *buf = malloc(64); /* owned by the generator's frame */
    while (co_gen_yield(g, buf, NULL) == 0) {
    }
    ASSERT_EQ(errno, ECANCELED);
    /* A second yield after close fails at once, without suspending. */
    ASSERT_ERR(co_gen_yield(g, NULL, NULL), ECANCELED);
    free(buf);
    cleaned++;
    return NULL;
}

static void test_close_runs_cleanup(void)
{
    cleaned = 0;
    co_gen_t *g = co_gen_new(needs_cleanup, NULL, NULL);
    void *v;
    ASSERT_EQ(co_gen_next(g, &v), 1);
    ASSERT(v != NULL);
    ASSERT_EQ(co_gen_close(g), 0);
    ASSERT_EQ(cleaned, 1);
    co_gen_free(g);
    /* Freeing a suspended generator closes it first. */
    g = co_gen_new(needs_cleanup, NULL, NULL);
    ASSERT_EQ(co_gen_next(g, &v), 1);
    co_gen_free(g);
    ASSERT_EQ(cleaned, 2);
    /* Closing one never started: it never runs. */
    g = co_gen_new(needs_cleanup, NULL, NULL);
    ASSERT_EQ(co_gen_close(g), 0);
    ASSERT_EQ(cleaned, 2);
    ASSERT_ERR(co_gen_next(g, &v), EPIPE);
    co_gen_free(g);
}

/* Generators nest: one drives another from inside itself. */
static void *doubler(co_gen_t *g, void *arg)
{
    co_gen_t *inner = co_gen_new(count_to, arg, NULL);
    void *v;
    while (co_gen_next(inner, &v) > 0)
        if (co_gen_yield(g, (void *)((intptr_t)v * 2), NULL) < 0) break;
    co_gen_free(inner);
    return NULL;
}

static void test_nested(void)
{
    co_gen_t *g = co_gen_new(doubler, (void *)4, NULL);
    void *v;
    intptr_t got[8], n = 0;
    while (co_gen_next(g, &v) > 0) got[n++] = (intptr_t)v;
    ASSERT_EQ(n, 4);
    ASSERT(got[0] == 0 && got[1] == 2 && got[2] == 4 && got[3] == 6);
    co_gen_free(g);
}

static co_gen_t *self_gen;
static void *resume_self(co_gen_t *g, void *arg)
{
    (void)arg;
    co_gen_next(g, NULL);
    return NULL;
}
static void child_resume_self(void *arg)
{
    (void)arg;
    self_gen = co_gen_new(resume_self, NULL, NULL);
    co_gen_next(self_gen, NULL);
}
static void child_yield_outside(void *arg)
{
    (void)arg;
    co_gen_t *g = co_gen_new(count_to, (void *)3, NULL);
    co_gen_yield(g, NULL, NULL);
}

static void *next_elsewhere(void *g)
{
    co_gen_next(g, NULL);
    return NULL;
}
static void child_other_thread(void *arg)
{
    (void)arg;
    co_gen_t *g = co_gen_new(count_to, (void *)3, NULL);
    pthread_t t;
    pthread_create(&t, NULL, next_elsewhere, g);
    pthread_join(t, NULL);
}

static void test_misuse_aborts(void)
{
    char buf[1024];
    int st = run_child(child_resume_self, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "already running"));
    st = run_child(child_yield_outside, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "not called from inside generator"));
    st = run_child(child_other_thread, NULL, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, "belongs to another thread"), "%#x: %s", st, buf);
    ASSERT_ERR(co_gen_new(NULL, NULL, NULL), EINVAL);
    co_gen_free(NULL);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_next_until_done);
    RUN(test_send);
    RUN(test_close_runs_cleanup);
    RUN(test_nested);
    RUN(test_misuse_aborts);
    return TEST_MAIN_END();
}
