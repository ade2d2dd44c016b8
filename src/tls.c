/* TLS streams over cogent descriptors (docs/tls.md), with OpenSSL.
 *
 * OpenSSL talks to the descriptor through a BIO of our own whose reads
 * and writes are co_read / co_write with the stream's current deadline:
 * a coroutine waiting for TLS records parks like any other reader, on a
 * descriptor left blocking or not, with or without the patch library.
 * When such a wait ends with ETIMEDOUT or ECANCELED, the BIO tells
 * OpenSSL "retry" rather than "error": the SSL object stays intact (a
 * timed-out read can be tried again, as a socket's can), and the stream
 * reports the errno it kept. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cogent.h"

struct co_tls_ctx {
    SSL_CTX *ssl;
    bool server;
    unsigned char alpn[256]; /* wire format: length-prefixed names */
    unsigned alpn_len;
    unsigned refs; /* atomic: the context and each stream made from it */
};

struct co_tls {
    SSL *ssl;
    co_tls_ctx_t *ctx;
    int fd;
    int64_t deadline; /* of the call in progress, for the BIO */
    int err;          /* the errno the BIO's last wait ended with (0: none) */
};

static __thread char last_error[512];
static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

const char *co_tls_error(void)
{
    return last_error;
}

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): va_start is above
    va_end(ap);
}

/* Appends OpenSSL's queued errors to what `what` failed with, and clears
 * the queue. */
static void set_ssl_error(const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    set_error("%s: %s", what, reason ? reason : buf[0] ? buf : "failed");
    ERR_clear_error();
}

/* ----------------------------------------------------------------- BIO */

static int bio_write(BIO *b, const char *data, int len)
{
    co_tls_t *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = co_write(s->fd, data, (size_t)len, s->deadline);
    if (n >= 0) return (int)n;
    s->err = errno;
    if (errno == ETIMEDOUT || errno == ECANCELED || errno == EAGAIN) BIO_set_retry_write(b);
    return -1;
}

static int bio_read(BIO *b, char *data, int len)
{
    co_tls_t *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = co_read(s->fd, data, (size_t)len, s->deadline);
    if (n >= 0) return (int)n; /* 0: EOF, OpenSSL decides what it means */
    s->err = errno;
    if (errno == ETIMEDOUT || errno == ECANCELED || errno == EAGAIN) BIO_set_retry_read(b);
    return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing is buffered here */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_make(void)
{
    OPENSSL_init_ssl(0, NULL);
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cogent fd");
    if (!m) return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* ------------------------------------------------------------- contexts */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    (void)ssl;
    co_tls_ctx_t *c = arg;
    unsigned char *o;
    if (SSL_select_next_proto(&o, outlen, c->alpn, c->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_wire(co_tls_ctx_t *c, const char *list)
{
    unsigned n = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || l > 255 || n + 1 + l > sizeof c->alpn) return -1;
        c->alpn[n++] = (unsigned char)l;
        memcpy(c->alpn + n, p, l);
        n += (unsigned)l;
        p += l + (e ? 1 : 0);
    }
    c->alpn_len = n;
    return 0;
}

static void ctx_unref(co_tls_ctx_t *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        SSL_CTX_free(c->ssl);
        free(c);
    }
}

/* A missing file is ENOENT with its name; OpenSSL's own message is less
 * direct about it. */
static bool file_missing(const char *what, const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) == 0) return false;
    set_error("%s %s: %s", what, path, strerror(errno));
    return true;
}

co_tls_ctx_t *co_tls_ctx_new(const co_tls_ctx_opts_t *opts)
{
    co_tls_ctx_opts_t none = {0};
    const co_tls_ctx_opts_t *o = opts ? opts : &none;
    pthread_once(&bio_once, bio_make);
    if (!bio_method) return set_error("co_tls_ctx_new: out of memory"), errno = ENOMEM, NULL;
    if (o->server && (!o->cert_file || !o->key_file)) {
        set_error("co_tls_ctx_new: a server needs cert_file and key_file");
        return errno = EINVAL, NULL;
    }
    if (file_missing("certificate", o->cert_file) || file_missing("key", o->key_file) ||
        file_missing("CA file", o->ca_file))
        return errno = ENOENT, NULL;
    co_tls_ctx_t *c = calloc(1, sizeof *c);
    if (!c) return set_error("co_tls_ctx_new: out of memory"), errno = ENOMEM, NULL;
    c->refs = 1;
    c->server = o->server;
    c->ssl = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
    if (!c->ssl) {
        set_ssl_error("co_tls_ctx_new");
        free(c);
        return errno = ENOMEM, NULL;
    }
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
    /* A peer that closes without close_notify reads as EOF, as Python's
     * suppress_ragged_eofs does (most HTTP servers do close that way). */
    SSL_CTX_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(c->ssl, SSL_MODE_AUTO_RETRY);
    /* Read what is there, not a record header then its body: one read
     * system call per batch of records instead of two per record. */
    SSL_CTX_set_read_ahead(c->ssl, 1);
    int err = EINVAL;
    if (o->cert_file && SSL_CTX_use_certificate_chain_file(c->ssl, o->cert_file) != 1) {
        set_ssl_error(o->cert_file);
        goto fail;
    }
    if (o->key_file && SSL_CTX_use_PrivateKey_file(c->ssl, o->key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            set_ssl_error("the key does not match the certificate");
        else
            set_ssl_error(o->key_file);
        goto fail;
    }
    if (o->cert_file && o->key_file && SSL_CTX_check_private_key(c->ssl) != 1) {
        set_ssl_error("the key does not match the certificate");
        goto fail;
    }
    if (!o->server) {
        if (o->ca_file ? SSL_CTX_load_verify_locations(c->ssl, o->ca_file, NULL) != 1
                       : SSL_CTX_set_default_verify_paths(c->ssl) != 1) {
            set_ssl_error(o->ca_file ? o->ca_file : "the system's CA store");
            goto fail;
        }
        SSL_CTX_set_verify(c->ssl, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    }
    if (o->alpn) {
        if (alpn_wire(c, o->alpn) < 0) {
            set_error("co_tls_ctx_new: bad ALPN list \"%s\"", o->alpn);
            goto fail;
        }
        if (o->server)
            SSL_CTX_set_alpn_select_cb(c->ssl, alpn_select, c);
        else if (SSL_CTX_set_alpn_protos(c->ssl, c->alpn, c->alpn_len) != 0) {
            err = ENOMEM;
            goto fail;
        }
    }
    return c;
fail:
    SSL_CTX_free(c->ssl);
    free(c);
    return errno = err, NULL;
}

void co_tls_ctx_free(co_tls_ctx_t *ctx)
{
    if (ctx) ctx_unref(ctx);
}

/* ------------------------------------------------------------- streams */

static co_tls_t *stream_new(co_tls_ctx_t *ctx, int fd)
{
    co_tls_t *s = calloc(1, sizeof *s);
    BIO *b = NULL;
    if (!s || !(s->ssl = SSL_new(ctx->ssl)) || !(b = BIO_new(bio_method))) {
        if (s) SSL_free(s->ssl);
        free(s);
        set_error("TLS: out of memory");
        errno = ENOMEM;
        return NULL;
    }
    BIO_set_data(b, s);
    SSL_set_bio(s->ssl, b, b);
    s->fd = fd;
    s->ctx = ctx;
    __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED);
    return s;
}

static void stream_free(co_tls_t *s)
{
    SSL_free(s->ssl);
    ctx_unref(s->ctx);
    free(s);
}

/* Why a handshake failed, as an errno and a line. */
static int handshake_error(co_tls_t *s, int rc, const char *who)
{
    int e = SSL_get_error(s->ssl, rc);
    long v = SSL_get_verify_result(s->ssl);
    if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && s->err) {
        int err = s->err;
        set_error("%s: %s", who, err == ETIMEDOUT ? "deadline passed during the handshake" : strerror(err));
        ERR_clear_error();
        return err;
    }
    if (v != X509_V_OK) {
        set_error("%s: certificate verify failed: %s", who, X509_verify_cert_error_string(v));
        ERR_clear_error();
        return EPROTO;
    }
    if (e == SSL_ERROR_SYSCALL || (e == SSL_ERROR_SSL && ERR_peek_last_error() == 0)) {
        int err = s->err ? s->err : ECONNRESET;
        set_error("%s: %s", who, s->err ? strerror(err) : "the peer closed the connection during the handshake");
        ERR_clear_error();
        return err;
    }
    set_ssl_error(who);
    return EPROTO;
}

static co_tls_t *handshake(co_tls_t *s, int64_t deadline, const char *who)
{
    s->deadline = deadline;
    s->err = 0;
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) return s;
    int err = handshake_error(s, rc, who);
    stream_free(s);
    errno = err;
    return NULL;
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

co_tls_t *co_tls_connect(co_tls_ctx_t *ctx, int fd, const char *host, int64_t deadline)
{
    if (!ctx || ctx->server || fd < 0) {
        set_error("co_tls_connect: %s", !ctx ? "ctx is NULL" : fd < 0 ? "bad fd" : "a server context");
        return errno = EINVAL, NULL;
    }
    co_tls_t *s = stream_new(ctx, fd);
    if (!s) return NULL;
    if (host) {
        if (is_ip(host)) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), host);
        } else {
            SSL_set_tlsext_host_name(s->ssl, host);
            SSL_set1_host(s->ssl, host);
        }
    }
    SSL_set_connect_state(s->ssl);
    char who[300];
    snprintf(who, sizeof who, "TLS connect%s%s", host ? " to " : "", host ? host : "");
    return handshake(s, deadline, who);
}

co_tls_t *co_tls_accept(co_tls_ctx_t *ctx, int fd, int64_t deadline)
{
    if (!ctx || !ctx->server || fd < 0) {
        set_error("co_tls_accept: %s", !ctx ? "ctx is NULL" : fd < 0 ? "bad fd" : "a client context");
        return errno = EINVAL, NULL;
    }
    co_tls_t *s = stream_new(ctx, fd);
    if (!s) return NULL;
    SSL_set_accept_state(s->ssl);
    return handshake(s, deadline, "TLS accept");
}

/* The errno of a failed read/write/shutdown, and its line. */
static int io_error(co_tls_t *s, int rc, const char *what)
{
    int e = SSL_get_error(s->ssl, rc);
    if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && s->err) {
        set_error("TLS %s: %s", what, strerror(s->err));
        return s->err;
    }
    if (e == SSL_ERROR_SYSCALL) {
        int err = s->err ? s->err : ECONNRESET;
        set_error("TLS %s: %s", what, strerror(err));
        ERR_clear_error();
        return err;
    }
    set_ssl_error(what);
    return EPROTO;
}

ssize_t co_tls_read(co_tls_t *s, void *buf, size_t n, int64_t deadline)
{
    if (!s || (!buf && n)) return errno = EINVAL, -1;
    s->deadline = deadline;
    s->err = 0;
    size_t got = 0;
    int rc = SSL_read_ex(s->ssl, buf, n, &got);
    if (rc == 1) return (ssize_t)got;
    if (SSL_get_error(s->ssl, rc) == SSL_ERROR_ZERO_RETURN) return 0;
    return errno = io_error(s, rc, "read"), -1;
}

ssize_t co_tls_write(co_tls_t *s, const void *buf, size_t n, int64_t deadline)
{
    if (!s || (!buf && n)) return errno = EINVAL, -1;
    if (n == 0) return 0;
    s->deadline = deadline;
    s->err = 0;
    size_t put = 0;
    int rc = SSL_write_ex(s->ssl, buf, n, &put);
    if (rc == 1) return (ssize_t)put;
    return errno = io_error(s, rc, "write"), -1;
}

int co_tls_shutdown(co_tls_t *s, bool wait_peer, int64_t deadline)
{
    if (!s) return errno = EINVAL, -1;
    s->deadline = deadline;
    s->err = 0;
    int rc = SSL_shutdown(s->ssl);
    if (rc == 0 && wait_peer) rc = SSL_shutdown(s->ssl);
    if (rc >= 0) return 0;
    return errno = io_error(s, rc, "shutdown"), -1;
}

void co_tls_free(co_tls_t *s, bool close_fd)
{
    if (!s) return;
    if (close_fd) co_close(s->fd);
    stream_free(s);
}

int co_tls_fd(const co_tls_t *s)
{
    return s ? s->fd : -1;
}

const char *co_tls_alpn(const co_tls_t *s)
{
    static __thread char buf[256];
    const unsigned char *p = NULL;
    unsigned len = 0;
    if (s) SSL_get0_alpn_selected(s->ssl, &p, &len);
    memcpy(buf, p ? (const char *)p : "", len);
    buf[len] = '\0';
    return buf;
}

const char *co_tls_version(const co_tls_t *s)
{
    return s ? SSL_get_version(s->ssl) : "";
}

const char *co_tls_server_name(const co_tls_t *s)
{
    const char *n = s ? SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    return n ? n : "";
}

/* --------------------------------------------------------------- serving */

int co_tls_serve(int fd, void *service)
{
    co_tls_service_t *svc = service;
    if (!svc || !svc->ctx || !svc->handler) {
        set_error("co_tls_serve: %s", !svc ? "the service is NULL" : !svc->ctx ? "no context" : "no handler");
        return EINVAL;
    }
    int64_t hs = svc->handshake_timeout_ms > 0 ? svc->handshake_timeout_ms : 10000;
    co_tls_t *s = co_tls_accept(svc->ctx, fd, co_now() + hs);
    if (!s) return errno;
    int r = svc->handler(s, svc->arg);
    /* Best effort: the peer may be gone already. */
    co_tls_shutdown(s, false, co_now() + 1000);
    co_tls_free(s, false); /* the server closes fd */
    return r;
}
