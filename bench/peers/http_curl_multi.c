/* The floor: libcurl's multi interface in its own curl_multi_poll loop,
 * C transfers in flight at a time, each finished handle reused for the
 * next page (what a hand-written C crawler on libcurl would do).
 *
 *   http_curl_multi URL N C [--insecure | --cafile FILE] */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct buf {
    char *data;
    size_t len, cap;
} buf_t;

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    buf_t *b = ud;
    size_t len = sz * n;
    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return len;
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
    const char *base = argv[1];
    long total = atol(argv[2]), c = atol(argv[3]);
    const char *cafile = NULL;
    int insecure = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--insecure")) insecure = 1;
        if (!strcmp(argv[i], "--cafile") && i + 1 < argc) cafile = argv[++i];
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, c);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, c);
    CURL **easy = calloc((size_t)c, sizeof *easy);
    buf_t *bufs = calloc((size_t)c, sizeof *bufs);
    long next = 0, done = 0, failed = 0;
    char url[512];
    struct timespec t0, t1;
    double cpu0 = cpu_seconds();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < c && next < total; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &bufs[i]);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, (char *)&bufs[i]);
        curl_easy_setopt(easy[i], CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(easy[i], CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L); /* as cogent sets it: no SIGPIPE dance per call */
        if (insecure) curl_easy_setopt(easy[i], CURLOPT_SSL_VERIFYPEER, 0L);
        if (insecure) curl_easy_setopt(easy[i], CURLOPT_SSL_VERIFYHOST, 0L);
        if (cafile) curl_easy_setopt(easy[i], CURLOPT_CAINFO, cafile);
        snprintf(url, sizeof url, base, (int)next++);
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_multi_add_handle(m, easy[i]);
    }
    int running = 1;
    while (done + failed < total) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *e = msg->easy_handle;
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result == CURLE_OK && code == 200)
                done++;
            else
                failed++;
            curl_multi_remove_handle(m, e);
            buf_t *b;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&b);
            b->len = 0;
            if (next < total) {
                snprintf(url, sizeof url, base, (int)next++);
                curl_easy_setopt(e, CURLOPT_URL, url);
                curl_multi_add_handle(m, e);
            }
        }
        if (done + failed < total) curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double cpu = cpu_seconds() - cpu0;
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"impl\": \"curl-multi\", \"pages\": %ld, \"failed\": %ld, \"concurrency\": %ld, \"seconds\": %.3f, "
           "\"pages_per_s\": %.0f, \"cpu_us_per_page\": %.1f}\n",
           done, failed, c, secs, done / secs, cpu * 1e6 / (double)(done ? done : 1));
    for (long i = 0; i < c; i++) {
        if (easy[i]) curl_easy_cleanup(easy[i]);
        free(bufs[i].data);
    }
    curl_multi_cleanup(m);
    free(easy);
    free(bufs);
    return failed ? 1 : 0;
}
