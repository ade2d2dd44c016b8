/* Sockets: TCP listen/connect by name, Unix-domain sockets, socketpair,
 * and the per-thread description of the last failure (co_net_error). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fd.h"
#include "net.h"
#include "sys.h"

static __thread char net_error[256];

const char *co_net_error(void)
{
    return net_error;
}

/* Appends ": reason" (or errno's text) to the description the caller
 * just wrote into net_error, and returns -1 with errno err. */
static int fail_tail(int err, const char *reason)
{
    size_t n = strnlen(net_error, sizeof net_error - 1);
    snprintf(net_error + n, sizeof net_error - n, ": %s", reason ? reason : strerror(err));
    errno = err;
    return -1;
}
/* Records "<what>: <reason>" for co_net_error; -1 with errno err. */
#define FAIL(err, reason, ...) (snprintf(net_error, sizeof net_error, __VA_ARGS__), fail_tail((err), (reason)))

static int gai_errno(int rc)
{
    switch (rc) {
    case EAI_NONAME:
    case EAI_SERVICE:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_FAMILY:
    case EAI_ADDRFAMILY:
        return ENOENT;
    case EAI_AGAIN:
        return EAGAIN;
    case EAI_MEMORY:
        return ENOMEM;
    default:
        return EINVAL;
    }
}

/* A non-blocking, close-on-exec socket cogent knows about. */
static int new_socket(int family, int type)
{
    int fd = co__sys_socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    return co__fd_new(fd, CO__FD_SOCK | CO__FD_NB | CO__FD_NB_OURS | (type == SOCK_STREAM ? CO__FD_STREAM : 0u));
}

/* Resolves host:port for a stream socket.  A numeric address is parsed
 * here, without a worker thread; a passive (listening) one never asks the
 * network.  0, or -1 with errno and net_error. */
static int resolve(const char *what, const char *host, int port, bool passive, struct addrinfo **res,
                   struct addrinfo *one, struct sockaddr_storage *ss, int64_t deadline)
{
    char serv[16];
    if (port < 0 || port > 65535) return FAIL(EINVAL, "port out of range", "%s %s:%d", what, host ? host : "*", port);
    snprintf(serv, sizeof serv, "%d", port);
    memset(one, 0, sizeof *one);
    memset(ss, 0, sizeof *ss);
    one->ai_socktype = SOCK_STREAM;
    one->ai_addr = (struct sockaddr *)ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (!host || !*host) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        s4->sin_addr.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
        one->ai_family = AF_INET;
        one->ai_addrlen = sizeof *s4;
        *res = one;
        return 0;
    }
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        one->ai_family = AF_INET;
        one->ai_addrlen = sizeof *s4;
        *res = one;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        one->ai_family = AF_INET6;
        one->ai_addrlen = sizeof *s6;
        *res = one;
        return 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    /* A listening address is one of this machine's: it never waits for
     * DNS (co_tcp_listen has no deadline to hold). */
    int rc =
        passive ? co__getaddrinfo_local(host, serv, &hints, res) : co_getaddrinfo(host, serv, &hints, res, deadline);
    if (rc == CO__EAI_REMOTE)
        return FAIL(EINVAL, "not a numeric address nor a name in /etc/hosts (listening never asks DNS)", "%s %s:%d",
                    what, host, port);
    if (rc == EAI_SYSTEM) return FAIL(errno, NULL, "%s %s:%d: name lookup", what, host, port);
    if (rc) return FAIL(gai_errno(rc), gai_strerror(rc), "%s %s:%d", what, host, port);
    return 0;
}

static void release(struct addrinfo *res, struct addrinfo *one)
{
    if (res && res != one) freeaddrinfo(res);
}

int co_tcp_listen(const char *host, int port, const co_listen_opts_t *opts)
{
    struct addrinfo one, *res = NULL;
    struct sockaddr_storage ss;
    if (resolve("listen on", host, port, true, &res, &one, &ss, 0) < 0) return -1;
    int backlog = opts && opts->backlog > 0 ? opts->backlog : SOMAXCONN;
    int err = 0;
    const char *step = "socket";
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = new_socket(a->ai_family, SOCK_STREAM);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int on = 1;
        step = "setsockopt";
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
            (opts && opts->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) ||
            (step = "bind", bind(fd, a->ai_addr, a->ai_addrlen) < 0) || (step = "listen", listen(fd, backlog) < 0)) {
            err = errno;
            co_close(fd);
            continue;
        }
        release(res, &one);
        return fd;
    }
    release(res, &one);
    return FAIL(err ? err : EADDRNOTAVAIL, NULL, "listen on %s:%d: %s", host && *host ? host : "*", port, step);
}

int co_tcp_connect(const char *host, int port, int64_t deadline)
{
    struct addrinfo one, *res = NULL;
    struct sockaddr_storage ss;
    if (resolve("connect to", host, port, false, &res, &one, &ss, deadline) < 0) return -1;
    int err = EADDRNOTAVAIL;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = new_socket(a->ai_family, SOCK_STREAM);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (co_connect(fd, a->ai_addr, a->ai_addrlen, deadline) == 0) {
            int on = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
            release(res, &one);
            return fd;
        }
        err = errno;
        co_close(fd);
        if (err == ETIMEDOUT || err == ECANCELED) break; /* the deadline is for the whole call */
    }
    release(res, &one);
    return FAIL(err, NULL, "connect to %s:%d", host && *host ? host : "127.0.0.1", port);
}

static int unix_addr(const char *what, const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if (!path || !*path) return FAIL(EINVAL, "empty path", "%s a Unix socket", what);
    if (strlen(path) >= sizeof sun->sun_path) return FAIL(ENAMETOOLONG, NULL, "%s %s", what, path);
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return 0;
}

/* What a file is, for messages ("the path is a regular file"). */
static const char *file_kind(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return "a regular file";
    case S_IFDIR:
        return "a directory";
    case S_IFLNK:
        return "a symbolic link";
    case S_IFIFO:
        return "a FIFO";
    case S_IFCHR:
        return "a character device";
    case S_IFBLK:
        return "a block device";
    case S_IFSOCK:
        return "a socket";
    default:
        return "a file of unknown type";
    }
}

/* Does anyone listen on the socket file at sun?  1 yes, 0 no (the kernel
 * refused: no listener behind the file), -1 with errno when the probe
 * cannot tell (no permission...). */
static int probe_listener(const struct sockaddr_un *sun)
{
    int p = co__sys_socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p < 0) return -1;
    int r = co__sys_connect(p, (const struct sockaddr *)sun, sizeof *sun);
    int err = errno;
    co__sys_close(p);
    if (r == 0 || err == EAGAIN) return 1; /* EAGAIN: alive, its backlog is full */
    if (err == ECONNREFUSED) return 0;
    errno = err;
    return -1;
}

int co__unix_unlink(const char *path, const co__sockfile_t *made)
{
    struct stat st;
    if (!made->ino) return errno = ESTALE, -1;
    if (lstat(path, &st) < 0) return -1;
    bool ctime_differs = (made->ctime.tv_sec || made->ctime.tv_nsec) &&
                         (st.st_ctim.tv_sec != made->ctime.tv_sec || st.st_ctim.tv_nsec != made->ctime.tv_nsec);
    if (!S_ISSOCK(st.st_mode) || st.st_dev != made->dev || st.st_ino != made->ino || ctime_differs)
        return errno = ESTALE, -1;
    /* A window remains between the lstat above and this unlink: a process
     * that replaces the file in those few microseconds loses its file.
     * Linux has no "unlink if still this inode"; only someone who may
     * write to the directory can be in that window, racing on the very
     * path given to cogent.  Everything else under the path is safe. */
    return unlink(path);
}

int co__unix_listen(const char *path, const co_listen_opts_t *opts, co__sockfile_t *made)
{
    struct sockaddr_un sun;
    if (made) *made = (co__sockfile_t){0};
    if (unix_addr("listen on", path, &sun) < 0) return -1;
    int fd = new_socket(AF_UNIX, SOCK_STREAM);
    if (fd < 0) return FAIL(errno, NULL, "listen on %s: socket", path);
    /* A socket file left by an earlier run makes bind fail: it is
     * replaced, but only if it is a socket (lstat: a symbolic link is not
     * followed, so a link is never replaced even if it points at a stale
     * socket) and nobody answers on it.  Anything else is reported, never
     * removed.  A few rounds, in case others create or remove the file
     * under our feet; then bind's own error stands. */
    for (int round = 0;; round++) {
        if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0) break;
        int err = errno;
        struct stat st;
        if (err != EADDRINUSE || round == 3) {
            co_close(fd);
            return FAIL(err, NULL, "listen on %s: bind", path);
        }
        if (lstat(path, &st) < 0) {
            if (errno == ENOENT) continue; /* removed meanwhile */
            err = errno;
            co_close(fd);
            return FAIL(err, NULL, "listen on %s: bind: address in use, and lstat", path);
        }
        if (!S_ISSOCK(st.st_mode)) {
            co_close(fd);
            snprintf(net_error, sizeof net_error, "listen on %s: the path is %s, not a socket", path,
                     file_kind(st.st_mode));
            return errno = EEXIST, -1;
        }
        int alive = probe_listener(&sun);
        if (alive != 0) {
            err = errno;
            co_close(fd);
            if (alive > 0) return FAIL(EADDRINUSE, "a server is listening on it", "listen on %s", path);
            return FAIL(EADDRINUSE, strerror(err), "listen on %s: a socket file that cannot be probed", path);
        }
        co__sockfile_t stale = {.dev = st.st_dev, .ino = st.st_ino, .ctime = st.st_ctim};
        if (co__unix_unlink(path, &stale) < 0 && errno != ENOENT && errno != ESTALE) {
            err = errno;
            co_close(fd);
            return FAIL(err, NULL, "listen on %s: removing the stale socket file", path);
        }
    }
    if (listen(fd, opts && opts->backlog > 0 ? opts->backlog : SOMAXCONN) < 0) {
        int err = errno;
        co_close(fd);
        return FAIL(err, NULL, "listen on %s", path);
    }
    struct stat st;
    /* No ctime for the stop-time check: the program may well chmod its
     * socket after listening. */
    if (made && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) *made = (co__sockfile_t){st.st_dev, st.st_ino, {0, 0}};
    return fd;
}

int co_unix_listen(const char *path, const co_listen_opts_t *opts)
{
    return co__unix_listen(path, opts, NULL);
}

int co_unix_connect(const char *path, int64_t deadline)
{
    struct sockaddr_un sun;
    if (unix_addr("connect to", path, &sun) < 0) return -1;
    int fd = new_socket(AF_UNIX, SOCK_STREAM);
    if (fd < 0) return FAIL(errno, NULL, "connect to %s: socket", path);
    if (co_connect(fd, (struct sockaddr *)&sun, sizeof sun, deadline) < 0) {
        int err = errno;
        co_close(fd);
        return FAIL(err, NULL, "connect to %s", path);
    }
    return fd;
}

int co_socketpair(int sv[2])
{
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) < 0)
        return FAIL(errno, NULL, "socketpair");
    if (co__fd_new(p[0], CO__FD_SOCK | CO__FD_STREAM | CO__FD_NB | CO__FD_NB_OURS) < 0) {
        co__sys_close(p[1]);
        return FAIL(errno, NULL, "socketpair");
    }
    if (co__fd_new(p[1], CO__FD_SOCK | CO__FD_STREAM | CO__FD_NB | CO__FD_NB_OURS) < 0) {
        co_close(p[0]);
        return FAIL(errno, NULL, "socketpair");
    }
    sv[0] = p[0];
    sv[1] = p[1];
    return 0;
}

int co_socket_port(int fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return errno = EAFNOSUPPORT, -1;
}
