/* HTTP client benchmark, cogent's side: fetch N pages from one URL base
 * with C coroutines at a time (each fetching its share in a loop, as a
 * crawler's workers would), over one hub's pool of C connections.
 * Prints one JSON line: pages/s and client CPU time per page.
 *
 *   bench_http_fetch URL N C [--insecure | --cafile FILE]
 *
 * URL may contain "%d" for the page number (else every fetch is URL). */
#include <cogent.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char *base;
static char pre[512], post[512]; /* base around its "%d" */
static bool numbered;
static long total, next_page, done, failed;
static const char *cafile;
static bool insecure;

static int tls_setup(void *curl, void *arg)
{
    (void)arg;
    if (insecure) curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    if (insecure) curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    return 0;
}

static void *worker(void *arg)
{
    (void)arg;
    co_http_resp_t r = {0};
    char url[1100];
    /* A pinned CA is the pool's (co_http_config_t.ca_file); only
     * --insecure needs the escape hatch. */
    co_http_opts_t o = {.setup = insecure ? tls_setup : NULL};
    while (next_page < total) {
        long i = next_page++;
        if (numbered)
            snprintf(url, sizeof url, "%s%ld%s", pre, i, post);
        else
            snprintf(url, sizeof url, "%s", base);
        if (co_http_request(url, &o, &r, -1) == 0 && r.status == 200)
            done++;
        else {
            if (failed++ < 3) fprintf(stderr, "fetch: %s (status %ld)\n", co_http_error(), r.status);
        }
    }
    co_http_resp_destroy(&r);
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
    if (argc < 4) {
        fprintf(stderr, "usage: %s URL N C [--insecure | --cafile FILE]\n", argv[0]);
        return 2;
    }
    base = argv[1];
    const char *d = strstr(base, "%d");
    if (d && (size_t)(d - base) < sizeof pre) {
        numbered = true;
        memcpy(pre, base, (size_t)(d - base));
        snprintf(post, sizeof post, "%s", d + 2);
    }
    total = atol(argv[2]);
    long c = atol(argv[3]);
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--insecure")) insecure = true;
        if (!strcmp(argv[i], "--cafile") && i + 1 < argc) cafile = argv[++i];
    }
    co_http_configure(&(co_http_config_t){.max_conns = (size_t)c, .ca_file = cafile});
    co_coro_t **cs = calloc((size_t)c, sizeof *cs);
    struct timespec t0, t1;
    double cpu0 = cpu_seconds();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < c; i++) cs[i] = co_spawn(worker, NULL);
    co_joinall(cs, (size_t)c, -1, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double cpu = cpu_seconds() - cpu0;
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    co_http_stats_t st;
    co_http_stats(&st);
    printf("{\"impl\": \"cogent\", \"pages\": %ld, \"failed\": %ld, \"concurrency\": %ld, \"seconds\": %.3f, "
           "\"pages_per_s\": %.0f, \"cpu_us_per_page\": %.1f, \"connects\": %llu}\n",
           done, failed, c, secs, done / secs, cpu * 1e6 / (double)(done ? done : 1), (unsigned long long)st.connects);
    free(cs);
    co_http_close();
    return failed ? 1 : 0;
}
