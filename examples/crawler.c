/* A web crawler: the asyncio/aiohttp lesson in C.  Breadth-first from a
 * start URL, staying on its host; each page is fetched by straight-line
 * code in a coroutine of a group with a limit (gevent's Pool, asyncio's
 * Semaphore around aiohttp), at most -H connections per host, pages
 * deeper than -d not fetched, 5xx answers and timeouts retried with
 * exponential backoff.  Results print in completion order; on a terminal
 * a live line shows done / in flight / failed / rate.
 *
 *   crawler URL [-c CONCURRENCY] [-H PER_HOST] [-d DEPTH] [-r RETRIES]
 *               [-t TIMEOUT_MS] [-n MAX_PAGES] [-q]
 *
 * Output, one line per page: "<status> <depth> <ms> <url>", or
 * "ERR <errno name> <depth> <ms> <url>: <why>"; then a summary. */
#include <cogent.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct page {
    char *url;
    int depth;
} page_t;

static struct {
    long concurrency, per_host, max_depth, retries, timeout_ms, max_pages;
    bool quiet, tty;
    char *host; /* the start URL's host: the crawl stays there */
} cfg = {50, 8, 3, 3, 10000, 1000, false, false, NULL};

static struct {
    long queued, in_flight, running, ok, failed, retried; /* in_flight: taken off the queue, not finished */
    int64_t start;
} st;

static co_queue_t *frontier; /* page_t *, breadth-first (FIFO) */

/* ------------------------------------------------------ the seen set */

static char **seen;
static size_t seen_cap, seen_len;

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* Adds url; false if it was there. */
static bool seen_add(const char *url)
{
    if (seen_len * 2 >= seen_cap) {
        size_t cap = seen_cap ? seen_cap * 2 : 1024;
        char **n = calloc(cap, sizeof *n);
        if (!n) return false;
        for (size_t i = 0; i < seen_cap; i++)
            if (seen[i]) {
                size_t j = hash(seen[i]) & (cap - 1);
                while (n[j]) j = (j + 1) & (cap - 1);
                n[j] = seen[i];
            }
        free(seen);
        seen = n;
        seen_cap = cap;
    }
    size_t j = hash(url) & (seen_cap - 1);
    for (; seen[j]; j = (j + 1) & (seen_cap - 1))
        if (!strcmp(seen[j], url)) return false;
    seen[j] = strdup(url);
    seen_len++;
    return true;
}

/* -------------------------------------------------------------- links */

/* The absolute form of href found on `base`, without its fragment, if it
 * is http(s) on the start host; else NULL.  libcurl's URL parser does the
 * resolving. */
static char *resolve(CURLU *u, const char *base, const char *href)
{
    char *out = NULL, *host = NULL, *scheme = NULL;
    curl_url_set(u, CURLUPART_URL, base, 0);
    if (curl_url_set(u, CURLUPART_URL, href, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) return NULL;
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        (!strcmp(scheme, "http") || !strcmp(scheme, "https")) &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && !strcasecmp(host, cfg.host))
        curl_url_get(u, CURLUPART_URL, &out, 0);
    curl_free(scheme);
    curl_free(host);
    return out;
}

static void add_page(const char *url, int depth)
{
    if (depth > cfg.max_depth || (long)seen_len >= cfg.max_pages || !seen_add(url)) return;
    page_t *p = malloc(sizeof *p);
    p->url = strdup(url);
    p->depth = depth;
    st.queued++;
    co_queue_put(frontier, p, -1);
}

/* Every href="..." of the page. */
static void find_links(const char *base, const char *html, int depth)
{
    CURLU *u = curl_url();
    for (const char *p = html; (p = strstr(p, "href=")) != NULL;) {
        p += 5;
        char q = *p;
        if (q != '"' && q != '\'') continue;
        const char *end = strchr(++p, q);
        if (!end) break;
        char href[2048];
        size_t n = (size_t)(end - p) < sizeof href - 1 ? (size_t)(end - p) : sizeof href - 1;
        memcpy(href, p, n);
        href[n] = '\0';
        char *abs = resolve(u, base, href);
        if (abs) add_page(abs, depth + 1);
        curl_free(abs);
        p = end + 1;
    }
    curl_url_cleanup(u);
}

/* ------------------------------------------------------------ progress */

static void progress(bool final)
{
    double secs = (double)(co_now() - st.start) / 1000.0;
    double rate = secs > 0 ? (double)(st.ok + st.failed) / secs : 0;
    if (cfg.tty)
        fprintf(stderr, "\r\033[Kdone %ld | in flight %ld | queued %ld | failed %ld | retried %ld | %.0f pages/s%s",
                st.ok + st.failed, st.running, st.queued + st.in_flight - st.running, st.failed, st.retried, rate,
                final ? "\n" : "");
    else
        fprintf(stderr, "progress: done %ld, in flight %ld, queued %ld, failed %ld, retried %ld, %.0f pages/s\n",
                st.ok + st.failed, st.running, st.queued + st.in_flight - st.running, st.failed, st.retried, rate);
}

static void *progress_main(void *arg)
{
    (void)arg;
    /* A terminal gets a live line; a pipe or file a line a second. */
    while (co_sleep_ms(cfg.tty ? 100 : 1000) == 0) progress(false);
    return NULL;
}

/* A result line, above the live line on a terminal. */
static void result(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void result(const char *fmt, ...)
{
    if (cfg.quiet) return;
    if (cfg.tty) fprintf(stderr, "\r\033[K");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* --------------------------------------------------------------- fetch */

static bool worth_retrying(int err, long status)
{
    return (err == 0 && status >= 500) || err == ETIMEDOUT || err == ECONNRESET || err == ECONNREFUSED;
}

static void *fetch(void *arg)
{
    page_t *p = arg;
    st.running++;
    co_http_resp_t r = {0};
    int64_t t0 = co_now();
    int err = 0;
    for (long attempt = 0;; attempt++) {
        err = co_http_get(p->url, &r, co_now() + cfg.timeout_ms) < 0 ? errno : 0;
        if (attempt >= cfg.retries || !worth_retrying(err, r.status)) break;
        st.retried++;
        /* 100 ms, 200 ms, 400 ms... with up to 50% jitter. */
        int64_t backoff = (100 << attempt) + rand() % (50 << attempt);
        if (co_sleep_ms(backoff) < 0) break; /* killed */
    }
    long ms = (long)(co_now() - t0);
    if (err) {
        st.failed++;
        result("ERR %s %d %ld %s: %s\n", strerrorname_np(err) ? strerrorname_np(err) : "?", p->depth, ms, p->url,
               co_http_error());
    } else {
        if (r.status == 200)
            st.ok++;
        else
            st.failed++;
        result("%ld %d %ld %s\n", r.status, p->depth, ms, p->url);
        const char *ct = co_http_header(&r, "Content-Type");
        if (r.status == 200 && r.body.data && (!ct || strstr(ct, "html")))
            find_links(r.url ? r.url : p->url, r.body.data, p->depth);
    }
    co_http_resp_destroy(&r);
    free(p->url);
    free(p);
    st.running--;
    st.in_flight--;
    /* Nothing queued and nothing running: nothing more will be found. */
    if (st.in_flight == 0 && st.queued == 0) co_queue_close(frontier);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: crawler URL [-c CONCURRENCY] [-H PER_HOST] [-d DEPTH] [-r RETRIES] [-t TIMEOUT_MS]"
                    " [-n MAX_PAGES] [-q]\n");
    exit(2);
}

/* A whole number of at least `min`, or the usage message. */
static long number(const char *arg, long min)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < min) usage();
    return v;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "c:H:d:r:t:n:q")) != -1) {
        switch (opt) {
        case 'c':
            cfg.concurrency = number(optarg, 1);
            break;
        case 'H':
            cfg.per_host = number(optarg, 0);
            break;
        case 'd':
            cfg.max_depth = number(optarg, 0);
            break;
        case 'r':
            cfg.retries = number(optarg, 0);
            break;
        case 't':
            cfg.timeout_ms = number(optarg, 1);
            break;
        case 'n':
            cfg.max_pages = number(optarg, 1);
            break;
        case 'q':
            cfg.quiet = true;
            break;
        default:
            usage();
        }
    }
    if (optind != argc - 1) usage();
    const char *start = argv[optind];
    CURLU *u = curl_url();
    if (curl_url_set(u, CURLUPART_URL, start, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_HOST, &cfg.host, 0)) {
        fprintf(stderr, "crawler: not a URL: %s\n", start);
        return 2;
    }
    curl_url_cleanup(u);
    cfg.tty = isatty(2);
    co_http_configure(
        &(co_http_config_t){.max_conns = (size_t)cfg.concurrency, .max_host_conns = (size_t)cfg.per_host});

    frontier = co_queue_new(NULL);
    co_group_t *workers = co_group_new((size_t)cfg.concurrency);
    st.start = co_now();
    co_coro_t *prog = co_spawn(progress_main, NULL);
    add_page(start, 0);
    page_t *p;
    /* Breadth-first: the queue is FIFO, so pages come out level by level;
     * the group's limit holds us here while `concurrency` fetches run. */
    while (co_queue_get(frontier, (void **)&p, -1) == 0) {
        st.queued--;
        st.in_flight++;
        if (!co_group_spawn(workers, fetch, p, -1)) {
            perror("crawler: spawn");
            return 1;
        }
    }
    co_group_join(workers, -1);
    co_kill(prog);
    co_join(prog, -1, NULL);
    progress(true);
    long secs100 = (long)((co_now() - st.start) / 10);
    printf("pages %ld ok %ld failed %ld retried %ld in %ld.%02ld s\n", st.ok + st.failed, st.ok, st.failed, st.retried,
           secs100 / 100, secs100 % 100);
    co_group_free(workers);
    co_queue_free(frontier, NULL);
    for (size_t i = 0; i < seen_cap; i++) free(seen[i]);
    free(seen);
    curl_free(cfg.host);
    co_http_close();
    return 0;
}
