/* libcurl's easy interface from C pthreads, each with its own handle
 * (and so its own connection), fetching its share of the pages in a loop:
 * the thread-per-connection way.
 *
 *   http_curl_threads URL N C [--insecure | --cafile FILE] */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char *base, *cafile;
static int insecure;
static long total, next_page, done, failed;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

static void *worker(void *arg)
{
    (void)arg;
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (insecure) curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    if (insecure) curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    if (cafile) curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
    char url[512];
    for (;;) {
        pthread_mutex_lock(&mu);
        long i = next_page < total ? next_page++ : -1;
        pthread_mutex_unlock(&mu);
        if (i < 0) break;
        snprintf(url, sizeof url, base, (int)i);
        curl_easy_setopt(e, CURLOPT_URL, url);
        long code = 0;
        int ok = curl_easy_perform(e) == CURLE_OK && curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
                 code == 200;
        pthread_mutex_lock(&mu);
        if (ok)
            done++;
        else
            failed++;
        pthread_mutex_unlock(&mu);
    }
    curl_easy_cleanup(e);
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 4) return 2;
    base = argv[1];
    total = atol(argv[2]);
    long c = atol(argv[3]);
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--insecure")) insecure = 1;
        if (!strcmp(argv[i], "--cafile") && i + 1 < argc) cafile = argv[++i];
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_t *ts = calloc((size_t)c, sizeof *ts);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    struct timespec t0, t1;
    double cpu0 = cpu_seconds();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < c; i++) pthread_create(&ts[i], &attr, worker, NULL);
    for (long i = 0; i < c; i++) pthread_join(ts[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double cpu = cpu_seconds() - cpu0;
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"impl\": \"curl-threads\", \"pages\": %ld, \"failed\": %ld, \"concurrency\": %ld, \"seconds\": %.3f, "
           "\"pages_per_s\": %.0f, \"cpu_us_per_page\": %.1f}\n",
           done, failed, c, secs, done / secs, cpu * 1e6 / (double)(done ? done : 1));
    free(ts);
    return failed ? 1 : 0;
}
