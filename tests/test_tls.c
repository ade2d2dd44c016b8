/* TLS streams: a CA and certificates made at test time with the openssl
 * CLI; an uppercase echo server on the stream server (co_tls_serve);
 * handshakes that succeed and fail (wrong CA, wrong host), deadlines and
 * kills during a handshake, a read timeout the stream survives;
 * `openssl s_client` as an outside client; HTTPS through the HTTP
 * client against tests/http_testd.c serving TLS; and HTTP/2 multiplexing
 * against nginx, when it is installed. */
#include <curl/curl.h>
#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "harness.h"
#include "testd.h"

static char dir[64];
static char ca_pem[128], other_ca_pem[128], srv_pem[128], srv_key[128], other_key[128];

static int sh(const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(full);
}

/* A CA, a server certificate it signed for localhost and 127.0.0.1, and
 * an unrelated CA.  0, or -1 if openssl is missing. */
static int make_certs(void)
{
    snprintf(dir, sizeof dir, "/tmp/cogent-tls-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj '/CN=cogent test CA'", ec);
    if (sh(cmd)) return -1;
    snprintf(cmd, sizeof cmd, "openssl req -x509 %s -keyout other.key -out other.pem -days 2 -subj '/CN=other CA'", ec);
    if (sh(cmd)) return -1;
    snprintf(cmd, sizeof cmd, "openssl req %s -keyout srv.key -out srv.csr -subj '/CN=localhost'", ec);
    if (sh(cmd)) return -1;
    if (sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf && openssl x509 -req -in srv.csr -CA "
           "ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf"))
        return -1;
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
    snprintf(other_ca_pem, sizeof other_ca_pem, "%s/other.pem", dir);
    snprintf(srv_pem, sizeof srv_pem, "%s/srv.pem", dir);
    snprintf(srv_key, sizeof srv_key, "%s/srv.key", dir);
    snprintf(other_key, sizeof other_key, "%s/other.key", dir);
    return 0;
}

/* ---------------------------------------------- the uppercase echo server */

static char last_sni[256]; /* the server name the echo server's last client asked for */

static int upper(co_tls_t *s, void *arg)
{
    (void)arg;
    snprintf(last_sni, sizeof last_sni, "%s", co_tls_server_name(s));
    char buf[4096];
    ssize_t n;
    while ((n = co_tls_read(s, buf, sizeof buf, -1)) > 0) {
        for (ssize_t i = 0; i < n; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
        if (co_tls_write(s, buf, (size_t)n, -1) != n) return errno;
    }
    return n < 0 ? errno : 0;
}

typedef struct echo {
    co_tls_ctx_t *ctx;
    co_tls_service_t svc;
    co_server_t *srv;
    int port;
} echo_t;

static void echo_start(echo_t *e, const char *alpn)
{
    e->ctx =
        co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true, .cert_file = srv_pem, .key_file = srv_key, .alpn = alpn});
    ASSERT_(e->ctx != NULL, "ctx: %s", co_tls_error());
    e->svc = (co_tls_service_t){.ctx = e->ctx, .handler = upper, .handshake_timeout_ms = 2000};
    e->srv = co_server_new(co_tls_serve, &e->svc, &(co_server_opts_t){.host = "127.0.0.1"});
    ASSERT(e->srv != NULL);
    ASSERT_EQ(co_server_start(e->srv), 0);
    e->port = co_server_port(e->srv);
}

static void echo_stop(echo_t *e)
{
    co_server_free(e->srv);
    co_tls_ctx_free(e->ctx);
}

static co_tls_ctx_t *client_ctx(const char *ca, const char *alpn)
{
    co_tls_ctx_t *c = co_tls_ctx_new(&(co_tls_ctx_opts_t){.ca_file = ca, .alpn = alpn});
    ASSERT_(c != NULL, "client ctx: %s", co_tls_error());
    return c;
}

static void test_echo(void)
{
    echo_t e;
    echo_start(&e, "http/1.1");
    co_tls_ctx_t *c = client_ctx(ca_pem, "h2,http/1.1");
    for (int round = 0; round < 3; round++) {
        int fd = co_tcp_connect(round == 1 ? "localhost" : "127.0.0.1", e.port, co_now() + 5000);
        ASSERT(fd >= 0);
        co_tls_t *s = co_tls_connect(c, fd, round == 1 ? "localhost" : "127.0.0.1", co_now() + 5000);
        ASSERT_(s != NULL, "connect: %s", co_tls_error());
        ASSERT_STR_EQ(co_tls_alpn(s), "http/1.1");
        ASSERT_STR_EQ(co_tls_version(s), "TLSv1.3");
        ASSERT_EQ(co_tls_fd(s), fd);
        ASSERT_EQ(co_tls_write(s, "hello, tls", 10, co_now() + 5000), 10);
        char buf[64] = "";
        size_t got = 0;
        while (got < 10) {
            ssize_t n = co_tls_read(s, buf + got, sizeof buf - 1 - got, co_now() + 5000);
            ASSERT(n > 0);
            got += (size_t)n;
        }
        ASSERT_STR_EQ(buf, "HELLO, TLS");
        /* SNI: sent with a host name, not with an IP address (RFC 6066). */
        ASSERT_STR_EQ(last_sni, round == 1 ? "localhost" : "");
        ASSERT_STR_EQ(co_tls_server_name(s), round == 1 ? "localhost" : "");
        /* A large write, echoed back. */
        size_t big = 1 << 20;
        char *out = malloc(big), *in = malloc(big);
        memset(out, 'q', big);
        ASSERT_EQ(co_tls_write(s, out, 65536, co_now() + 5000), 65536);
        got = 0;
        while (got < 65536) {
            ssize_t n = co_tls_read(s, in + got, big - got, co_now() + 5000);
            ASSERT(n > 0);
            got += (size_t)n;
        }
        ASSERT_EQ(in[0], 'Q');
        ASSERT_EQ(in[65535], 'Q');
        free(out);
        free(in);
        ASSERT_EQ(co_tls_shutdown(s, round == 0, co_now() + 5000), 0);
        co_tls_free(s, true);
    }
    co_tls_ctx_free(c);
    co_server_stats_t st;
    co_server_stats(e.srv, &st);
    ASSERT_EQ(st.accepted, 3);
    echo_stop(&e);
}

static void test_verify_failures(void)
{
    echo_t e;
    echo_start(&e, NULL);
    co_tls_ctx_t *wrong = client_ctx(other_ca_pem, NULL);
    int fd = co_tcp_connect("127.0.0.1", e.port, co_now() + 5000);
    ASSERT_ERR(co_tls_connect(wrong, fd, "localhost", co_now() + 5000), EPROTO);
    ASSERT_(strstr(co_tls_error(), "certificate verify failed") != NULL, "%s", co_tls_error());
    fprintf(stderr, "    wrong CA: %s\n", co_tls_error());
    co_close(fd);
    co_tls_ctx_t *right = client_ctx(ca_pem, NULL);
    fd = co_tcp_connect("127.0.0.1", e.port, co_now() + 5000);
    ASSERT_ERR(co_tls_connect(right, fd, "www.example.com", co_now() + 5000), EPROTO);
    ASSERT_(strstr(co_tls_error(), "hostname mismatch") != NULL, "%s", co_tls_error());
    fprintf(stderr, "    wrong host: %s\n", co_tls_error());
    co_close(fd);
    /* The system's store does not know our CA. */
    co_tls_ctx_t *sys = client_ctx(NULL, NULL);
    fd = co_tcp_connect("127.0.0.1", e.port, co_now() + 5000);
    ASSERT_ERR(co_tls_connect(sys, fd, "localhost", co_now() + 5000), EPROTO);
    co_close(fd);
    /* insecure: no verification at all. */
    co_tls_ctx_t *ins = co_tls_ctx_new(&(co_tls_ctx_opts_t){.insecure = true});
    fd = co_tcp_connect("127.0.0.1", e.port, co_now() + 5000);
    co_tls_t *s = co_tls_connect(ins, fd, "www.example.com", co_now() + 5000);
    ASSERT(s != NULL);
    co_tls_free(s, true);
    co_tls_ctx_free(ins);
    co_tls_ctx_free(sys);
    co_tls_ctx_free(right);
    co_tls_ctx_free(wrong);
    /* Give the server's handlers time to see the failed handshakes. */
    co_sleep_ms(50);
    co_server_stats_t st;
    co_server_stats(e.srv, &st);
    ASSERT(st.errors >= 3);
    echo_stop(&e);
}

static void test_bad_contexts(void)
{
    ASSERT_ERR(co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true}), EINVAL);
    ASSERT_ERR(
        co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true, .cert_file = "/nonexistent.pem", .key_file = srv_key}),
        ENOENT);
    ASSERT(strstr(co_tls_error(), "/nonexistent.pem") != NULL);
    ASSERT_ERR(co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true, .cert_file = srv_pem, .key_file = other_key}),
               EINVAL);
    ASSERT(strstr(co_tls_error(), "does not match") != NULL);
    ASSERT_ERR(co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true, .cert_file = srv_key, .key_file = srv_key}), EINVAL);
    ASSERT_ERR(co_tls_ctx_new(&(co_tls_ctx_opts_t){.alpn = "h2,,x"}), EINVAL);
    co_tls_ctx_t *c = client_ctx(ca_pem, NULL);
    ASSERT_ERR(co_tls_accept(c, 0, -1), EINVAL);
    ASSERT_ERR(co_tls_connect(NULL, 0, "x", -1), EINVAL);
    co_tls_ctx_free(c);
    co_tls_ctx_free(NULL);
    co_tls_free(NULL, true);
}

/* A peer that accepts TCP and says nothing. */
typedef struct mute {
    int lfd, cfd;
} mute_t;

static void *mute_accept(void *arg)
{
    mute_t *m = arg;
    m->cfd = co_accept(m->lfd, NULL, NULL, -1);
    return NULL;
}

static void *tls_connect_co(void *arg)
{
    int *port = arg;
    co_tls_ctx_t *c = client_ctx(ca_pem, NULL);
    int fd = co_tcp_connect("127.0.0.1", *port, -1);
    co_tls_t *s = co_tls_connect(c, fd, "localhost", -1);
    intptr_t err = s ? 0 : errno;
    co_tls_free(s, false);
    co_close(fd);
    co_tls_ctx_free(c);
    return (void *)err;
}

static void test_handshake_deadline_and_kill(void)
{
    mute_t m = {co_tcp_listen("127.0.0.1", 0, NULL), -1};
    int port = co_socket_port(m.lfd);
    co_coro_t *a = co_spawn(mute_accept, &m);
    co_tls_ctx_t *c = client_ctx(ca_pem, NULL);
    int fd = co_tcp_connect("127.0.0.1", port, co_now() + 5000);
    int64_t t0 = co_now();
    ASSERT_ERR(co_tls_connect(c, fd, "localhost", co_now() + 150), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 140, 3000);
    ASSERT(strstr(co_tls_error(), "deadline") != NULL);
    co_close(fd);
    co_join(a, -1, NULL);
    co_close(m.cfd);
    /* Killed in the middle of the handshake. */
    a = co_spawn(mute_accept, &m);
    co_coro_t *k = co_spawn(tls_connect_co, &port);
    co_sleep_ms(100);
    t0 = co_now();
    co_kill(k);
    void *res;
    ASSERT_EQ(co_join(k, co_now() + 2000, &res), 0);
    ASSERT_EQ((intptr_t)res, ECANCELED);
    ASSERT(co_now() - t0 < 1000);
    co_join(a, -1, NULL);
    co_close(m.cfd);
    /* The server side: a client that never speaks. */
    co_tls_ctx_t *sc = co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true, .cert_file = srv_pem, .key_file = srv_key});
    a = co_spawn(mute_accept, &m);
    fd = co_tcp_connect("127.0.0.1", port, co_now() + 5000);
    co_join(a, -1, NULL);
    ASSERT_ERR(co_tls_accept(sc, m.cfd, co_now() + 100), ETIMEDOUT);
    /* ...or hangs up at once. */
    co_close(fd);
    ASSERT_ERR(co_tls_accept(sc, m.cfd, co_now() + 2000), ECONNRESET);
    co_close(m.cfd);
    co_tls_ctx_free(sc);
    co_tls_ctx_free(c);
    co_close(m.lfd);
}

/* A timed-out read leaves the stream usable. */
static void test_read_timeout_keeps_stream(void)
{
    echo_t e;
    echo_start(&e, NULL);
    co_tls_ctx_t *c = client_ctx(ca_pem, NULL);
    int fd = co_tcp_connect("127.0.0.1", e.port, co_now() + 5000);
    co_tls_t *s = co_tls_connect(c, fd, "localhost", co_now() + 5000);
    ASSERT(s != NULL);
    char buf[16];
    ASSERT_ERR(co_tls_read(s, buf, sizeof buf, co_now() + 100), ETIMEDOUT);
    ASSERT_ERR(co_tls_read(s, buf, sizeof buf, 0), EAGAIN); /* the try form */
    ASSERT_EQ(co_tls_write(s, "again", 5, co_now() + 5000), 5);
    size_t got = 0;
    while (got < 5) {
        ssize_t n = co_tls_read(s, buf + got, sizeof buf - got, co_now() + 5000);
        ASSERT(n > 0);
        got += (size_t)n;
    }
    ASSERT(!memcmp(buf, "AGAIN", 5));
    co_tls_free(s, true);
    co_tls_ctx_free(c);
    echo_stop(&e);
}

/* openssl s_client, an outside client, against our server. */
static void test_s_client(void)
{
    echo_t e;
    echo_start(&e, NULL);
    int in[2], out[2];
    ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
    char port[32];
    snprintf(port, sizeof port, "127.0.0.1:%d", e.port);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execlp("openssl", "openssl", "s_client", "-connect", port, "-CAfile", ca_pem, "-verify_return_error",
               "-servername", "localhost", "-quiet", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    ASSERT_EQ(co_write_all(in[1], "ping from s_client\n", 19, NULL, co_now() + 5000), 0);
    char buf[256] = "";
    size_t got = 0;
    while (!strchr(buf, '\n')) {
        ssize_t n = co_read(out[0], buf + got, sizeof buf - 1 - got, co_now() + 10000);
        ASSERT_(n > 0, "s_client said nothing (%s)", n < 0 ? strerror(errno) : "EOF");
        got += (size_t)n;
        buf[got] = '\0';
    }
    ASSERT_STR_EQ(buf, "PING FROM S_CLIENT\n");
    co_close(in[1]);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    co_close(out[0]);
    echo_stop(&e);
}

/* ------------------------------------------------------------- HTTPS */

static testd_t tsrv;

static int use_ca(void *curl, void *arg)
{
    curl_easy_setopt(curl, CURLOPT_CAINFO, (const char *)arg);
    return 0;
}

static struct curl_slist *resolve;
static int wrong_name(void *curl, void *arg)
{
    curl_easy_setopt(curl, CURLOPT_CAINFO, (const char *)arg);
    curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
    return 0;
}

static void test_https(void)
{
    char url[256];
    co_http_resp_t r = {0};
    co_http_opts_t o = {.setup = use_ca, .setup_arg = ca_pem};
    TESTD_URL(url, &tsrv, "https", "/bytes/100000");
    for (int i = 0; i < 3; i++) {
        int rc = co_http_request(url, &o, &r, co_now() + 10000);
        ASSERT_(rc == 0, "https: %s", co_http_error());
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(r.body.len, 100000);
    }
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.connects, 1); /* kept alive */
    /* By name (localhost is in the certificate). */
    snprintf(url, sizeof url, "https://localhost:%d/status/200", tsrv.port);
    ASSERT_EQ(co_http_request(url, &o, &r, co_now() + 10000), 0);
    /* The system's CA store does not know our CA. */
    TESTD_URL(url, &tsrv, "https", "/status/200");
    ASSERT_ERR(co_http_get(url, &r, co_now() + 10000), EPROTO);
    fprintf(stderr, "    %s\n", co_http_error());
    ASSERT(strstr(co_http_error(), "certificate") != NULL);
    /* A name the certificate does not carry. */
    char entry[64];
    snprintf(entry, sizeof entry, "wrong.test:%d:127.0.0.1", tsrv.port);
    resolve = curl_slist_append(NULL, entry);
    snprintf(url, sizeof url, "https://wrong.test:%d/status/200", tsrv.port);
    ASSERT_ERR(co_http_request(url, &(co_http_opts_t){.setup = wrong_name, .setup_arg = ca_pem}, &r, co_now() + 10000),
               EPROTO);
    fprintf(stderr, "    %s\n", co_http_error());
    curl_slist_free_all(resolve);
    /* The pool's pinned CA (co_http_config_t.ca_file): plain GETs verify
     * against it, on handles reused as they are. */
    ASSERT_EQ(co_http_configure(&(co_http_config_t){.ca_file = ca_pem}), 0);
    TESTD_URL(url, &tsrv, "https", "/status/200");
    for (int i = 0; i < 3; i++) ASSERT_(co_http_get(url, &r, co_now() + 10000) == 0, "%s", co_http_error());
    ASSERT_EQ(co_http_configure(&(co_http_config_t){.ca_file = other_ca_pem}), 0);
    ASSERT_ERR(co_http_get(url, &r, co_now() + 10000), EPROTO);
    ASSERT_EQ(co_http_configure(&(co_http_config_t){.ca_file = "/nonexistent/ca.pem"}), 0);
    ASSERT_ERR(co_http_get(url, &r, co_now() + 10000), EPROTO);
    fprintf(stderr, "    %s\n", co_http_error());
    /* Back to the system's store: the handles set up for the CA are gone. */
    ASSERT_EQ(co_http_configure(NULL), 0);
    ASSERT_ERR(co_http_get(url, &r, co_now() + 10000), EPROTO);
    co_http_resp_destroy(&r);
    ASSERT_EQ(co_http_close(), 0);
}

typedef struct one {
    const char *url;
    int ok;
} one_t;

static void *fetch_tls(void *arg)
{
    one_t *o = arg;
    co_http_resp_t r = {0};
    if (co_http_request(o->url, &(co_http_opts_t){.setup = use_ca, .setup_arg = ca_pem}, &r, co_now() + 30000) == 0 &&
        r.status == 200)
        o->ok++;
    co_http_resp_destroy(&r);
    return NULL;
}

static void test_https_many(void)
{
    char url[256];
    TESTD_URL(url, &tsrv, "https", "/bytes/1000");
    one_t o = {url, 0};
    co_coro_t *cs[300];
    for (int i = 0; i < 300; i++) cs[i] = co_spawn(fetch_tls, &o);
    ASSERT_EQ(co_joinall(cs, 300, -1, NULL), 0);
    ASSERT_EQ(o.ok, 300);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT(st.connects <= 100);
    ASSERT_EQ(co_http_close(), 0);
}

/* A TLS handshake with the HTTP client, killed: the stalled peer accepts
 * TCP and never answers the ClientHello. */
static void *fetch_kill(void *arg)
{
    co_http_resp_t r = {0};
    intptr_t e = co_http_get((const char *)arg, &r, -1) < 0 ? errno : 0;
    co_http_resp_destroy(&r);
    return (void *)e;
}

static void test_https_handshake_killed(void)
{
    mute_t m = {co_tcp_listen("127.0.0.1", 0, NULL), -1};
    co_coro_t *a = co_spawn(mute_accept, &m);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", co_socket_port(m.lfd));
    co_coro_t *k = co_spawn(fetch_kill, url);
    co_sleep_ms(100);
    co_kill(k);
    void *res;
    ASSERT_EQ(co_join(k, co_now() + 2000, &res), 0);
    ASSERT_EQ((intptr_t)res, ECANCELED);
    ASSERT_EQ(co_http_close(), 0);
    co_join(a, -1, NULL);
    co_close(m.cfd);
    co_close(m.lfd);
}

/* HTTP/2 with a real server: nginx (when installed) serving TLS with h2
 * over ALPN.  Many coroutines' requests go side by side as streams of one
 * connection (libcurl's multiplexing, CURLOPT_PIPEWAIT). */
static void *fetch_h2(void *arg)
{
    const char *url = arg;
    co_http_resp_t r = {0};
    intptr_t ok = co_http_get(url, &r, co_now() + 20000) == 0 && r.status == 200 && r.http_version == 20 &&
                  r.body.len == 6 && !strcmp(r.body.data, "hello\n");
    if (!ok) fprintf(stderr, "    h2: %s (status %ld, HTTP %d)\n", co_http_error(), r.status, r.http_version);
    co_http_resp_destroy(&r);
    return (void *)ok;
}

static void test_http2_nginx(void)
{
    const char *nginx = access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : NULL;
    if (!nginx) {
        fprintf(stderr, "    skipped: nginx is not installed (scripts/deps.sh installs it)\n");
        return;
    }
    int lfd = co_tcp_listen("127.0.0.1", 0, NULL); /* a free port, for nginx */
    ASSERT(lfd >= 0);
    int port = co_socket_port(lfd);
    co_close(lfd);
    char path[256], conf[2048];
    snprintf(path, sizeof path, "%s/www", dir);
    ASSERT_EQ(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/www/hello.txt", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs("hello\n", f);
    fclose(f);
    snprintf(conf, sizeof conf,
             "daemon off; master_process off; pid %s/nginx.pid; error_log %s/nginx.log;\n"
             "events { worker_connections 256; }\n"
             "http { access_log off; client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
             "  fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
             "  server { listen 127.0.0.1:%d ssl http2; ssl_certificate %s; ssl_certificate_key %s; root %s/www; } }\n",
             dir, dir, dir, dir, dir, dir, dir, port, srv_pem, srv_key, dir);
    snprintf(path, sizeof path, "%s/nginx.conf", dir);
    f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(conf, f);
    fclose(f);
    pid_t pid = testd_spawn_quiet((char *const[]){(char *)nginx, "-c", path, "-p", dir, NULL});
    ASSERT(pid >= 0);
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        int fd = co_tcp_connect("127.0.0.1", port, co_now() + 1000);
        if (fd >= 0) {
            co_close(fd);
            up = 1;
        } else {
            co_sleep_ms(50);
        }
    }
    if (!up) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fprintf(stderr, "    skipped: nginx did not start (see %s/nginx.log)\n", dir);
        return;
    }
    ASSERT_EQ(co_http_configure(&(co_http_config_t){.ca_file = ca_pem}), 0);
    char url[128];
    snprintf(url, sizeof url, "https://localhost:%d/hello.txt", port);
    co_coro_t *cs[50];
    for (int i = 0; i < 50; i++) cs[i] = co_spawn(fetch_h2, url);
    int ok = 0;
    for (int i = 0; i < 50; i++) {
        void *r;
        ASSERT_EQ(co_join(cs[i], -1, &r), 0);
        ok += (int)(intptr_t)r;
    }
    co_http_stats_t st;
    co_http_stats(&st);
    fprintf(stderr, "    50 requests over HTTP/2: %d ok, %llu connection(s)\n", ok, (unsigned long long)st.connects);
    ASSERT_EQ(ok, 50);
    ASSERT_EQ(st.connects, 1); /* one connection, 50 streams */
    ASSERT_EQ(co_http_configure(NULL), 0);
    ASSERT_EQ(co_http_close(), 0);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (system("command -v openssl >/dev/null 2>&1") != 0 || make_certs() < 0) {
        fprintf(stderr, "skipped: the openssl command is needed (scripts/deps.sh installs it)\n");
        return TEST_SKIP;
    }
    const char *args[] = {"--tls", srv_pem, srv_key, NULL};
    if (testd_start(&tsrv, args) < 0) {
        fprintf(stderr, "cannot start %s --tls\n", TESTD);
        return 1;
    }
    RUN(test_echo);
    RUN(test_verify_failures);
    RUN(test_bad_contexts);
    RUN(test_handshake_deadline_and_kill);
    RUN(test_read_timeout_keeps_stream);
    RUN(test_s_client);
    RUN(test_https);
    RUN(test_https_many);
    RUN(test_https_handshake_killed);
    RUN(test_http2_nginx);
    testd_stop(&tsrv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return TEST_MAIN_END();
}
