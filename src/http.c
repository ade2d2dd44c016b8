/* The HTTP client (docs/http.md): libcurl's multi interface driven by the
 * hub.  Built into libcogent-http on cogent's public API only, the way a
 * user's own library would be: nothing here knows the hub's insides.
 *
 * One pool per thread (its hub): a multi handle, a share handle for TLS
 * sessions, and an epoll set of libcurl's sockets.  Two coroutines drive
 * it while requests run:
 *
 *  - the watcher waits (co_wait_readable) until the epoll set has events,
 *    takes them with epoll_wait(0) and hands each socket to
 *    curl_multi_socket_action;
 *  - the driver waits on an event until libcurl's timer is due, then
 *    hands libcurl CURL_SOCKET_TIMEOUT.  Anything that makes libcurl move
 *    its timer earlier (a request added, a transfer resumed) sets that
 *    event, so a new request costs no system call to wake anyone.
 *
 * libcurl's sockets live in an epoll set of our own, nested in the hub's
 * poller, instead of in cogent's fd table: libcurl closes its sockets
 * itself (sometimes before it says CURL_POLL_REMOVE), and a closed fd
 * leaves the kernel's epoll set by itself, so a number reused by the next
 * socket can never inherit a stale registration (the fd table would need
 * every close to go through co_close).  The set is level-triggered, since
 * libcurl does not promise to read a socket dry.
 *
 * libcurl never blocks and never switches: every call into it (from the
 * driver, the watcher, or a requester adding, pausing or removing its
 * handle) runs to completion, so the multi handle is never entered twice.
 * Callbacks only store: a requester's own code (on_data) runs in the
 * requester, and a transfer whose requester is behind is paused
 * (CURL_WRITEFUNC_PAUSE) until it catches up. */
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cogent.h"
#include "http_util.h"

/* Stacks of the two driving coroutines: libcurl runs TLS handshakes
 * (OpenSSL) and decompression on them. */
#define DRIVER_STACK ((size_t)256 * 1024)
/* A streaming requester that has this much undelivered body pauses its
 * transfer. */
#define PAUSE_AT   ((size_t)256 * 1024)
#define EVENTS     64
#define EASY_CACHE 64

typedef struct pool {
    CURLM *multi;
    CURLSH *share;
    int epfd;
    /* What the epoll set holds for each descriptor number libcurl named
     * (indexed by fd): the events asked for, and whether libcurl still
     * watches it.  A socket libcurl stops watching (CURL_POLL_REMOVE)
     * stays in the set, idle, because libcurl names a kept-alive
     * connection's socket again with the next request on it: leaving it
     * turns an EPOLL_CTL_DEL and an ADD per request into one MOD.  If it turns ready
     * meanwhile (the server closed it), it leaves the set then. */
    struct sock_state {
        uint32_t events; /* 0: not in the set; else what it was last asked for there */
        bool watched;
    } * socks;
    size_t nsocks;
    co_event_t kick;  /* the driver's wake-up */
    int64_t timer;    /* libcurl's timer, a deadline of co_now(); -1: none */
    int64_t waiting;  /* the deadline the driver waits for; -2: not waiting */
    bool driving;     /* the driver runs (or is about to) */
    bool closing;     /* co_http_close / thread exit: callbacks only undo */
    co_event_t ended; /* set when the driver has stopped */
    co_coro_t *watcher;
    /* Transfers admitted into libcurl at once (max_conns; none if
     * unlimited).  libcurl queues a transfer that finds no connection on
     * a list it walks at every curl_multi_remove_handle (7.88): 10k
     * requests queued there cost 10k x 10k steps.  Queued here instead,
     * FIFO, as aiohttp's connector queues them. */
    co_sem_t slots;
    bool limited;
    /* Easy handles of finished requests, reset for the next: making one
     * costs a dozen allocations (kilobytes of buffers). */
    struct spare {
        CURL *easy;
        bool plain; /* still set up for a plain request (below), not reset */
    } spare[EASY_CACHE];
    unsigned nspare;
    co_http_config_t cfg;
    co_http_stats_t st;
} pool_t;

/* A request in progress.  On the heap, never on the requester's stack,
 * and holding everything libcurl's callbacks touch (they run in the
 * driver and the watcher while the requester waits): a compact
 * requester's stack moves while it waits (docs/stacks.md), so neither
 * this nor the caller's response or options may be reached from there.
 * The response's buffers are lent to the request for its duration and
 * given back at its end. */
typedef struct req {
    CURL *easy;
    pool_t *p;
    co_event_t ev; /* something for the requester: done, body to hand over */
    bool done;
    bool paused;
    bool streaming;          /* the caller's on_data takes the body */
    co_http_data_fn on_data; /* (called in the requester only) */
    void *on_data_arg;
    CURLcode result;
    int err; /* an errno our callbacks decided (EFBIG, ENOMEM, on_data's) */
    size_t max_body;
    co_buf_t body;    /* the response body (unless streaming) */
    co_buf_t headers; /* the final response's header lines */
    co_buf_t pending; /* body not yet given to on_data */
    co_buf_t spare;   /* the buffer on_data is reading, then the next one */
    size_t received;  /* body bytes so far (max_body) */
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
} req_t;

static __thread pool_t *tls_pool;
static __thread char last_error[512];
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------- errors */

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): va_start is above
    va_end(ap);
}

const char *co_http_error(void)
{
    return last_error;
}

/* The errno a libcurl result stands for.  os_errno: the system call's
 * error libcurl saw, if any. */
static int errno_of(CURLcode c, long os_errno)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return EINVAL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return ENOENT;
    case CURLE_COULDNT_CONNECT:
        return (os_errno == EHOSTUNREACH || os_errno == ENETUNREACH || os_errno == EADDRNOTAVAIL) ? (int)os_errno
                                                                                                  : ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return ENOMEM;
    case CURLE_TOO_MANY_REDIRECTS:
        return ELOOP;
    case CURLE_FILESIZE_EXCEEDED:
        return EFBIG;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ISSUER_ERROR:
        return EPROTO;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return ECONNRESET;
    default:
        return EIO;
    }
}

/* ----------------------------------------------------------- callbacks */

static void pool_timer_due(pool_t *p, int64_t deadline)
{
    p->timer = deadline;
    p->st.timer_sets++;
    /* Wake the driver only if it waits for later (or for nothing). */
    if (p->waiting != -2 && deadline >= 0 && (p->waiting < 0 || deadline < p->waiting)) co_event_set(&p->kick);
}

/* CURLMOPT_TIMERFUNCTION: libcurl's single timer moved (or was deleted,
 * timeout_ms -1).  Never call back into libcurl from here. */
static int on_timer(CURLM *m, long timeout_ms, void *ud)
{
    (void)m;
    pool_t *p = ud;
    if (p->closing) return 0;
    pool_timer_due(p, timeout_ms < 0 ? -1 : co_now() + timeout_ms);
    return 0;
}

/* The state kept for descriptor s, growing the table; NULL: ENOMEM. */
static struct sock_state *sock_state(pool_t *p, curl_socket_t s)
{
    if ((size_t)s >= p->nsocks) {
        size_t n = p->nsocks ? p->nsocks : 64;
        while (n <= (size_t)s) n *= 2;
        struct sock_state *t = realloc(p->socks, n * sizeof *t);
        if (!t) return NULL;
        memset(t + p->nsocks, 0, (n - p->nsocks) * sizeof *t);
        p->socks = t;
        p->nsocks = n;
    }
    return &p->socks[s];
}

/* Takes s out of the epoll set.  Fails harmlessly (counted) when s was
 * closed already: a closed descriptor left the set by itself. */
static void sock_drop(pool_t *p, curl_socket_t s)
{
    if (epoll_ctl(p->epfd, EPOLL_CTL_DEL, s, NULL) < 0) p->st.stale_sockets++;
    p->socks[s].events = 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what libcurl wants now.  sockp is
 * what we assigned to s (non-NULL while libcurl knows we watch it). */
static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp)
{
    (void)e;
    pool_t *p = ud;
    if (s < 0) return -1;
    if (what == CURL_POLL_REMOVE) {
        if (!sockp) return 0;
        /* The pitfall: libcurl may have closed s already, and the number
         * may even be a new descriptor by now.  Nothing is done to the set
         * here (see pool_t.socks): a closed descriptor has left it by
         * itself, and a new one of that number was never added (we add
         * only what libcurl names), so nothing else can be touched. */
        if ((size_t)s < p->nsocks) p->socks[s].watched = false;
        p->st.sockets--;
        if (!p->closing) curl_multi_assign(p->multi, s, NULL);
        return 0;
    }
    struct sock_state *ss = sock_state(p, s);
    if (!ss) return -1; /* libcurl fails the transfer */
    struct epoll_event ev = {.events = 0, .data.fd = s};
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    if (!sockp) {
        p->st.sockets++;
        p->st.sockets_seen++;
        curl_multi_assign(p->multi, s, p);
    }
    ss->watched = true;
    /* Always a system call: only the kernel knows whether the socket in
     * the set under this number is still this one (closed and reopened
     * sockets keep their numbers).  MOD first if one may be there: a
     * kept-alive socket named again, or a change; ENOENT: the socket we
     * had under this number was closed (and left the set) and this is a
     * new one, named as a change without a REMOVE, or after one: add it.
     * ADD first otherwise; EEXIST: the same open file still sits in the
     * set under this number (closed and reopened by dup, say): aim it. */
    if (ss->events) {
        if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, s, &ev) < 0) {
            if (errno != ENOENT || epoll_ctl(p->epfd, EPOLL_CTL_ADD, s, &ev) < 0) goto fail;
            p->st.stale_sockets++;
        }
    } else if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, s, &ev) < 0 &&
               (errno != EEXIST || epoll_ctl(p->epfd, EPOLL_CTL_MOD, s, &ev) < 0)) {
        goto fail;
    }
    ss->events = ev.events;
    return 0;
fail:
    ss->events = 0;
    return -1;
}

/* Finished transfers: tell their requesters. */
static void reap(pool_t *p)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(p->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        req_t *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r) continue;
        r->done = true;
        r->result = m->data.result;
        co_event_set(&r->ev);
    }
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    req_t *r = ud;
    size_t len = size * n;
    co_buf_t *h = &r->headers;
    if (len >= 5 && !memcmp(data, "HTTP/", 5)) {
        h->len = 0; /* a new response (after a redirect, or a 100 Continue) */
        if (h->data) h->data[0] = '\0';
        return len;
    }
    size_t keep = len;
    while (keep && (data[keep - 1] == '\n' || data[keep - 1] == '\r')) keep--;
    if (!keep) return len;
    /* Each line ends in a '\0' that len counts (co_http_resp_t). */
    if (co__buf_append(h, data, keep) < 0 || co__buf_append(h, "", 1) < 0) {
        r->err = ENOMEM;
        return 0;
    }
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    req_t *r = ud;
    size_t len = size * n;
    if (r->err) return 0; /* fails the transfer with CURLE_WRITE_ERROR */
    co_buf_t *b = r->streaming ? &r->pending : &r->body;
    if (r->max_body && r->received + len > r->max_body) {
        r->err = EFBIG;
        return 0;
    }
    if (r->streaming) {
        if (r->pending.len >= PAUSE_AT) {
            /* The requester is behind (on_data blocks): libcurl keeps
             * this piece and offers it again once we resume. */
            r->paused = true;
            r->p->st.pauses++;
            co_event_set(&r->ev);
            return CURL_WRITEFUNC_PAUSE;
        }
        co_event_set(&r->ev);
    }
    if (co__buf_append(b, data, len) < 0) {
        r->err = ENOMEM;
        return 0;
    }
    r->received += len;
    return len;
}

/* --------------------------------------------------------- the drivers */

static void *watcher_main(void *arg)
{
    pool_t *p = arg;
    struct epoll_event evs[EVENTS];
    unsigned busy = 0;
    for (;;) {
        if (co_wait_readable(p->epfd, -1) < 0) break; /* ECANCELED: the driver stops us */
        int n = epoll_wait(p->epfd, evs, EVENTS, 0);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if ((size_t)fd < p->nsocks && !p->socks[fd].watched) {
                sock_drop(p, fd); /* an idle socket libcurl stopped watching turned ready */
                continue;
            }
            int mask = 0;
            if (evs[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
            int running;
            curl_multi_socket_action(p->multi, fd, mask, &running);
        }
        if (n > 0) reap(p);
        /* Sockets still ready keep the set readable, and the wait above
         * returns at once: let the requesters we woke run now and then. */
        if (n > 0 && ++busy % 16 == 0 && co_yield_now() < 0) break;
        if (n <= 0) busy = 0;
    }
    return NULL;
}

/* Runs while requests are in flight, then stops (an idle hub keeps no
 * coroutine of ours: its deadlock check and its exit see only the
 * program's). */
static void *driver_main(void *arg)
{
    pool_t *p = arg;
    bool killed = false;
    while (!killed && p->st.in_flight > 0) {
        p->watcher =
            co_spawn_with(watcher_main, p, &(co_spawn_opts_t){.stack_size = DRIVER_STACK, .name = "http-watcher"});
        if (!p->watcher) break; /* ENOMEM: requesters time out or are killed */
        while (p->st.in_flight > 0) {
            int64_t t = p->timer;
            if (t >= 0 && t <= co_now()) {
                p->timer = -1;
                int running;
                curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
                reap(p);
                continue;
            }
            p->waiting = t;
            int r = co_event_wait(&p->kick, t);
            p->waiting = -2;
            co_event_clear(&p->kick);
            if (r < 0 && errno == ECANCELED) { /* the thread is ending */
                killed = true;
                break;
            }
        }
        co_kill(p->watcher);
        co_join(p->watcher, -1, NULL); /* (a request may start meanwhile: look again) */
        p->watcher = NULL;
    }
    p->driving = false;
    co_event_set(&p->ended);
    return NULL;
}

/* --------------------------------------------------------------- pools */

static void pool_apply(pool_t *p)
{
    size_t total = p->cfg.max_conns ? p->cfg.max_conns : 100;
    long cap = total >= (size_t)LONG_MAX ? 0 : (long)total;
    if (p->limited) co_sem_destroy(&p->slots);
    p->limited = cap > 0;
    if (p->limited) co_sem_init(&p->slots, cap, true);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, cap);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)p->cfg.max_host_conns);
    /* Keep as many idle connections as may be open at once. */
    if (cap) curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, cap);
    curl_multi_setopt(p->multi, CURLMOPT_PIPELINING, p->cfg.no_multiplex ? CURLPIPE_NOTHING : CURLPIPE_MULTIPLEX);
}

/* A request is plain when it sets no option of its own: a GET with the
 * defaults, or with only max_body / on_data (which act in our callbacks).
 * The handle of a plain request needs no reset for the next plain one:
 * all but a few of its options are the same (easy_setup). */
static bool is_plain(const co_http_opts_t *o)
{
    return !o || (!o->method && !o->headers && !o->body && !o->max_redirects && !o->no_compression && !o->setup);
}

/* A handle for the next request: *ready if it is still set up for a
 * plain request and this one is plain too. */
static CURL *easy_get(pool_t *p, bool plain, bool *ready)
{
    *ready = false;
    if (!p->nspare) return curl_easy_init();
    struct spare *s = &p->spare[--p->nspare];
    if (s->plain && plain)
        *ready = true;
    else if (s->plain)
        curl_easy_reset(s->easy);
    return s->easy;
}

static void easy_put(pool_t *p, CURL *e, bool plain)
{
    if (!e) return;
    if (p->nspare < EASY_CACHE) {
        if (!plain) curl_easy_reset(e); /* forget what the caller set (setup, headers, body...) */
        p->spare[p->nspare++] = (struct spare){e, plain};
    } else {
        curl_easy_cleanup(e);
    }
}

static void pool_free(pool_t *p)
{
    p->closing = true;
    while (p->nspare) curl_easy_cleanup(p->spare[--p->nspare].easy);
    curl_multi_cleanup(p->multi); /* closes the idle connections */
    curl_share_cleanup(p->share);
    co_close(p->epfd);
    free(p->socks);
    free((char *)p->cfg.ca_file);
    co_event_destroy(&p->kick);
    co_event_destroy(&p->ended);
    if (p->limited) co_sem_destroy(&p->slots);
    free(p);
}

/* Thread exit: the hub's coroutines have ended (or will, and we come
 * again: destructors run up to PTHREAD_DESTRUCTOR_ITERATIONS times). */
static void pool_thread_exit(void *arg)
{
    pool_t *p = arg;
    if (p->st.in_flight || p->driving) {
        pthread_setspecific(pool_key, p);
        return;
    }
    tls_pool = NULL;
    pool_free(p);
}

/* A fork child does not inherit the pool of the thread that forked: its
 * multi handle's kept-alive connections, TLS sessions and epoll set are
 * the parent's (sockets shared with it: a request of the child would
 * write into the parent's connection).  The child leaves them to the
 * parent, untouched (a cleanup would send TLS close_notify on the
 * parent's connections), closes only its own copy of the epoll set, and
 * makes a pool of its own at its first request.  Requests in flight at
 * the fork are the parent's: the child's copies of their coroutines
 * must not wait for them (docs/http.md). */
static void pool_fork_child(void)
{
    pool_t *p = tls_pool;
    /* (A driver still winding down after the last request ends by itself
     * in the child too: its watcher sees the closed set.) */
    if (!p || p->st.in_flight) return;
    co_close(p->epfd); /* the child's copy only (cogent's fork path ran first) */
    tls_pool = NULL;   /* the rest is left behind, as the parent's */
    pthread_setspecific(pool_key, NULL);
}

static void pool_key_make(void)
{
    pthread_key_create(&pool_key, pool_thread_exit);
    pthread_atfork(NULL, NULL, pool_fork_child);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static pool_t *pool_get(void)
{
    if (tls_pool) return tls_pool;
    pthread_once(&pool_once, pool_key_make);
    pool_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->multi = curl_multi_init();
    p->share = curl_share_init();
    if (p->epfd < 0 || !p->multi || !p->share) {
        if (p->epfd >= 0) close(p->epfd);
        curl_multi_cleanup(p->multi);
        curl_share_cleanup(p->share);
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    co_event_init(&p->kick);
    co_event_init(&p->ended);
    co_event_set(&p->ended);
    p->timer = -1;
    p->waiting = -2;
    /* One thread uses the share: no lock callbacks needed. */
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    pool_apply(p);
    pthread_setspecific(pool_key, p);
    return tls_pool = p;
}

int co_http_configure(const co_http_config_t *cfg)
{
    pool_t *p = pool_get();
    if (!p) return -1;
    if (p->st.in_flight) return errno = EBUSY, -1;
    co_http_config_t zero = {0};
    char *ca = cfg && cfg->ca_file ? strdup(cfg->ca_file) : NULL;
    if (cfg && cfg->ca_file && !ca) return errno = ENOMEM, -1;
    free((char *)p->cfg.ca_file);
    p->cfg = cfg ? *cfg : zero;
    p->cfg.ca_file = ca;
    /* The spare handles were set up for the old settings. */
    while (p->nspare) curl_easy_cleanup(p->spare[--p->nspare].easy);
    pool_apply(p);
    return 0;
}

int co_http_close(void)
{
    pool_t *p = tls_pool;
    if (!p) return 0;
    if (p->st.in_flight) return errno = EBUSY, -1;
    /* The driver stops by itself once nothing is in flight; wait for it
     * to be gone, so that no coroutine of ours outlives the pool. */
    while (p->driving)
        if (co_event_wait(&p->ended, -1) < 0) return -1;
    tls_pool = NULL;
    pthread_setspecific(pool_key, NULL);
    pool_free(p);
    return 0;
}

void co_http_stats(co_http_stats_t *st)
{
    pool_t *p = tls_pool;
    if (!p) {
        memset(st, 0, sizeof *st);
        return;
    }
    *st = p->st;
    st->driving = p->driving;
}

/* ------------------------------------------------------------ requests */

/* Sets the easy handle up for the request; `ready`: it was set up for a
 * plain request and this one is plain too: only what differs between
 * two such requests is set.  0 or an errno. */
static int easy_setup(req_t *r, const char *url, const co_http_opts_t *o, bool ready)
{
    CURL *e = r->easy;
    pool_t *p = r->p;
    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK) return ENOMEM;
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    int64_t ttl = p->cfg.dns_ttl_ms;
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, ttl == 0 ? 10L : ttl < 0 ? 0L : (long)((ttl + 999) / 1000));
    /* HTTPS: a new request waits for a connection being set up that may
     * carry it as an HTTP/2 stream, rather than opening another. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, (long)(!p->cfg.no_multiplex && !strncasecmp(url, "https:", 6)));
    if (ready) return 0;
    if (p->cfg.ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, p->cfg.ca_file);
    curl_easy_setopt(e, CURLOPT_SHARE, p->share);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_USERAGENT,
                     "cogent/"
                     "0.1 libcurl/" LIBCURL_VERSION);
    /* An HTTP client: no file://, ftp://, gopher://... (a URL from a page
     * must not read local files); setup may allow more. */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    int redirs = o ? o->max_redirects : 0;
    if (redirs >= 0) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)(redirs ? redirs : 10));
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    }
    if (!o || !o->no_compression) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (o && o->body) {
        /* Copied: libcurl sends it from the driver, while the caller's
         * memory (a compact coroutine's stack) may have moved. */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body) != CURLE_OK) return ENOMEM;
    }
    if (o && o->method) {
        if (!strcmp(o->method, "HEAD"))
            curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (strcmp(o->method, o->body ? "POST" : "GET") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
    }
    /* No "Expect: 100-continue" (libcurl sends it with bodies over 1 MiB
     * and then waits up to a second for servers that never answer it),
     * unless the caller asks for it: aiohttp and Go do not send it. */
    bool expect = false;
    for (const char *const *h = o && o->headers ? o->headers : NULL; h && *h; h++) {
        struct curl_slist *l = curl_slist_append(r->hdrs, *h);
        if (!l) return ENOMEM;
        r->hdrs = l;
        if (!strncasecmp(*h, "Expect:", 7)) expect = true;
    }
    if (o && o->body && !expect) {
        struct curl_slist *l = curl_slist_append(r->hdrs, "Expect:");
        if (!l) return ENOMEM;
        r->hdrs = l;
    }
    if (r->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    if (o && o->setup) return o->setup(e, o->setup_arg);
    return 0;
}

static void resp_reset(co_http_resp_t *resp)
{
    resp->status = 0;
    resp->http_version = 0;
    resp->curl_code = 0;
    resp->body.len = 0;
    if (resp->body.data) resp->body.data[0] = '\0';
    resp->headers.len = 0;
    if (resp->headers.data) resp->headers.data[0] = '\0';
    free(resp->url);
    resp->url = NULL;
}

/* Hands the pending body to on_data, in the requester.  on_data may
 * block, and libcurl meanwhile stores more: it goes to the other buffer.
 * 0 or an errno. */
static int deliver(req_t *r)
{
    if (!r->pending.len) return 0;
    co_buf_t take = r->pending;
    r->pending = r->spare;
    int e = r->on_data(take.data, take.len, r->on_data_arg);
    take.len = 0;
    r->spare = take;
    return e;
}

static const char *method_name(const co_http_opts_t *o)
{
    if (o && o->method) return o->method;
    return o && o->body ? "POST" : "GET";
}

int co_http_request(const char *url, const co_http_opts_t *opts, co_http_resp_t *resp, int64_t deadline)
{
    if (!url || !resp) {
        set_error("co_http_request: %s is NULL", url ? "resp" : "url");
        return errno = EINVAL, -1;
    }
    resp_reset(resp);
    if (opts && opts->method && !opts->method[0]) {
        set_error("co_http_request: the method is empty");
        return errno = EINVAL, -1;
    }
    if (opts && opts->body_len && !opts->body) {
        set_error("%s %s: body_len is %zu but body is NULL", method_name(opts), url, opts->body_len);
        return errno = EINVAL, -1;
    }
    pool_t *p = pool_get();
    if (!p) {
        set_error("%s %s: no memory for the connection pool", method_name(opts), url);
        return -1;
    }
    req_t *r = calloc(1, sizeof *r);
    if (!r) {
        set_error("%s %s: out of memory", method_name(opts), url);
        return errno = ENOMEM, -1;
    }
    r->p = p;
    r->streaming = opts && opts->on_data;
    r->on_data = opts ? opts->on_data : NULL;
    r->on_data_arg = opts ? opts->on_data_arg : NULL;
    r->max_body = opts ? opts->max_body : 0;
    /* The response's buffers, lent (their capacity is reused). */
    r->body = resp->body;
    r->headers = resp->headers;
    resp->body = (co_buf_t){0};
    resp->headers = (co_buf_t){0};
    co_event_init(&r->ev);
    int err = 0;
    bool plain = is_plain(opts), ready;
    r->easy = easy_get(p, plain, &ready);
    if (!r->easy) {
        err = ENOMEM;
        goto out;
    }
    if ((err = easy_setup(r, url, opts, ready))) goto out;
    p->st.requests++;
    p->st.in_flight++; /* from here on, co_http_configure and co_http_close wait */
    if (p->limited && co_sem_acquire(&p->slots, deadline) < 0) {
        err = errno == EAGAIN ? ETIMEDOUT : errno;
        p->st.in_flight--;
        goto out;
    }
    if (curl_multi_add_handle(p->multi, r->easy) != CURLM_OK) {
        err = ENOMEM;
        goto unslot;
    }
    if (!p->driving) {
        co_event_clear(&p->ended);
        co_coro_t *d = co_spawn_with(driver_main, p, &(co_spawn_opts_t){.stack_size = DRIVER_STACK, .name = "http"});
        if (!d) {
            co_event_set(&p->ended);
            err = ENOMEM;
            goto remove;
        }
        co_detach(d);
        p->driving = true;
    }
    int waited = 0;
    for (;;) {
        if (r->streaming && !err) {
            err = deliver(r);
            if (!err && r->paused) {
                /* Resuming may hand us buffered data at once (on_write). */
                r->paused = false;
                curl_easy_pause(r->easy, CURLPAUSE_CONT);
                continue;
            }
        }
        if (err || (r->done && !r->pending.len)) break;
        if (r->pending.len) continue; /* more came while on_data ran */
        waited = co_event_wait(&r->ev, deadline) < 0 ? errno : 0;
        co_event_clear(&r->ev);
        if (waited && !r->done) {
            err = waited;
            break;
        }
    }
remove:
    curl_multi_remove_handle(p->multi, r->easy);
unslot:
    if (p->limited) co_sem_release(&p->slots);
    p->st.in_flight--;
    if (!p->st.in_flight && p->driving) co_event_set(&p->kick); /* the driver stops */
out:;
    long os_errno = 0;
    if (r->easy) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        resp->status = code;
        long ver = 0;
        curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &ver);
        resp->http_version = ver == CURL_HTTP_VERSION_1_0   ? 10
                             : ver == CURL_HTTP_VERSION_1_1 ? 11
                             : ver == CURL_HTTP_VERSION_2_0 ? 20
                             : ver == CURL_HTTP_VERSION_3   ? 30
                                                            : 0;
        char *eff = NULL;
        curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
        if (eff) resp->url = strdup(eff);
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
        long conns = 0;
        curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &conns);
        p->st.connects += (uint64_t)conns;
    }
    resp->body = r->body;
    resp->headers = r->headers;
    if (!err && !r->done) err = ENOMEM;
    if (!err && r->result != CURLE_OK) err = r->err ? r->err : errno_of(r->result, os_errno);
    if (!err && r->err) err = r->err;
    resp->curl_code = r->done ? (int)r->result : 0;
    if (err) {
        p->st.failed++;
        const char *m = method_name(opts);
        if (r->done && r->result != CURLE_OK && !r->err)
            set_error("%s %s: %s (curl %d)", m, url, r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result),
                      (int)r->result);
        else if (err == ETIMEDOUT)
            set_error("%s %s: deadline passed", m, url);
        else if (err == ECANCELED)
            set_error("%s %s: cancelled", m, url);
        else
            set_error("%s %s: %s", m, url, strerror(err));
    }
    easy_put(p, r->easy, plain);
    curl_slist_free_all(r->hdrs);
    co__buf_free(&r->pending);
    co__buf_free(&r->spare);
    co_event_destroy(&r->ev);
    free(r);
    if (err) return errno = err, -1;
    return 0;
}

int co_http_get(const char *url, co_http_resp_t *resp, int64_t deadline)
{
    return co_http_request(url, NULL, resp, deadline);
}

int co_http_post(const char *url, const void *body, size_t len, const char *content_type, co_http_resp_t *resp,
                 int64_t deadline)
{
    char ct[256];
    const char *hdrs[2] = {NULL, NULL};
    if (content_type) {
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        hdrs[0] = ct;
    }
    /* A NULL body of length 0 is an empty POST; of any other length, EINVAL. */
    co_http_opts_t o = {.body = body || len ? body : "", .body_len = len, .headers = hdrs};
    if (!url || !resp) return co_http_request(url, NULL, resp, deadline); /* EINVAL */
    return co_http_request(url, &o, resp, deadline);
}

void co_http_resp_destroy(co_http_resp_t *resp)
{
    if (!resp) return;
    co__buf_free(&resp->body);
    co__buf_free(&resp->headers);
    free(resp->url);
    memset(resp, 0, sizeof *resp);
}

const char *co_http_header(const co_http_resp_t *resp, const char *name)
{
    if (!resp || !name || !resp->headers.data) return NULL;
    size_t nl = strlen(name);
    const char *p = resp->headers.data, *end = p + resp->headers.len;
    for (; p < end; p += strlen(p) + 1) {
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            return v;
        }
    }
    return NULL;
}

int co_http_to_fd(const void *data, size_t n, void *arg)
{
    return co_write_all(*(const int *)arg, data, n, NULL, -1) < 0 ? errno : 0;
}
