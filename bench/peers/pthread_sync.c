/* The pthread reference for the sync figures:
 *   mutex   uncontended pthread_mutex lock+unlock, ns
 *   queue   a bounded (1024) ring with one mutex and two condition
 *           variables, one producer thread and one consumer: items/s */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define CAP 1024
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;
static void *ring[CAP];
static size_t head, count;
static long n;

static void put(void *it)
{
    pthread_mutex_lock(&mu);
    while (count == CAP) pthread_cond_wait(&not_full, &mu);
    ring[(head + count++) % CAP] = it;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&mu);
}

static void *get(void)
{
    pthread_mutex_lock(&mu);
    while (count == 0) pthread_cond_wait(&not_empty, &mu);
    void *it = ring[head];
    head = (head + 1) % CAP;
    count--;
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&mu);
    return it;
}

static void *producer(void *arg)
{
    for (long i = 1; i <= n; i++) put((void *)(intptr_t)i);
    return arg;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "mutex";
    if (!strcmp(what, "mutex") || !strcmp(what, "mutex_mt")) {
        bool mt = !strcmp(what, "mutex_mt");
        if (mt) { /* glibc skips atomics while the process has one thread */
            pthread_t t;
            pthread_create(&t, NULL, producer, NULL);
            pthread_join(t, NULL);
        }
        n = 20000000;
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            pthread_mutex_lock(&m);
            pthread_mutex_unlock(&m);
        }
        printf("RESULT pthread_mutex_uncontended%s %.3f ns/op\n", mt ? "_mt" : "", (now_ns() - t0) / (double)n);
    } else {
        n = 2000000;
        pthread_t p;
        double t0 = now_ns();
        pthread_create(&p, NULL, producer, NULL);
        long long sum = 0;
        for (long i = 0; i < n; i++) sum += (intptr_t)get();
        pthread_join(p, NULL);
        double dt = now_ns() - t0;
        if (sum != (long long)n * (n + 1) / 2) return 1;
        printf("RESULT pthread_queue_threads %.0f items/s\n", (double)n / (dt / 1e9));
    }
    return 0;
}
