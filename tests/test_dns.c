/* Name lookups during a resolver outage: the deadline holds on every
 * thread, and numeric hosts and /etc/hosts names are answered at once
 * while lookups stuck on the dead resolver hold the worker pool.
 *
 * How the outage is made, without the network and without touching the
 * machine's own files: each case runs in a child process that unshares a
 * mount and a network namespace (inside a user namespace when not root),
 * brings up its private loopback, binds a UDP socket on 127.0.0.1:53 that
 * never answers, and bind-mounts its own resolv.conf (nameserver
 * 127.0.0.1), hosts and nsswitch.conf over the ones in /etc.  glibc has
 * no environment variable that names a nameserver, and resolv.conf cannot
 * name a port, hence the namespaces.  Where namespaces cannot be made
 * (no root and no unprivileged user namespaces, a seccomp filter...) the
 * program exits 77: skipped. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <strings.h>
#include <unistd.h>

#include "cogent.h"
#include "harness.h"
#include "internal.h"

static char dir[] = "/tmp/cogent-dns-XXXXXX";
static char resolv_path[64], hosts_path[64], nss_path[64];
static int dns_sock = -1; /* the resolver that never answers */

static const char HOSTS[] = "127.0.0.1 localhost\n"
                            "::1 localhost ip6-localhost\n"
                            "127.0.0.2 cogent-a.test cogent-alias # a comment\n";

static void put_file(const char *path, const char *text)
{
    /* In place (same inode): the bind mount shows the new content. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static bool write_id_map(const char *file, const char *map)
{
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, map, strlen(map)) == (ssize_t)strlen(map);
    close(fd);
    return ok;
}

/* The child's private world; false (with a reason on stderr) if it
 * cannot be made here. */
static bool outage_enter(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int flags = CLONE_NEWNS | CLONE_NEWNET;
    if (unshare(uid == 0 ? flags : flags | CLONE_NEWUSER) < 0) {
        fprintf(stderr, "    unshare: %s\n", strerror(errno));
        return false;
    }
    if (uid != 0) {
        char map[64];
        write_id_map("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        if (!write_id_map("/proc/self/uid_map", map)) return false;
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if (!write_id_map("/proc/self/gid_map", map)) return false;
    }
    /* Nothing mounted here may leak back to the machine. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        fprintf(stderr, "    mount --make-rprivate /: %s\n", strerror(errno));
        return false;
    }
    const char *from[] = {resolv_path, hosts_path, nss_path};
    const char *to[] = {"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf"};
    for (int i = 0; i < 3; i++) {
        if (mount(from[i], to[i], NULL, MS_BIND, NULL) < 0) {
            fprintf(stderr, "    bind mount over %s: %s\n", to[i], strerror(errno));
            return false;
        }
    }
    /* The new network namespace's loopback starts down. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)) {
        fprintf(stderr, "    loopback up: %s\n", strerror(errno));
        return false;
    }
    close(s);
    dns_sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (dns_sock < 0 || bind(dns_sock, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "    bind 127.0.0.1:53: %s\n", strerror(errno));
        return false;
    }
    return true;
}

/* The names the dead resolver was asked for, in the order they came
 * (a lookup stuck earlier may send its query late: names tell them apart). */
static char asked_names[256][NI_MAXHOST];
static int nasked;

/* Reads the queries that came, waiting up to wait_ms for one to. */
static void collect_queries(int wait_ms)
{
    unsigned char b[512];
    ssize_t n;
    struct pollfd p = {.fd = dns_sock, .events = POLLIN};
    while (poll(&p, 1, wait_ms) == 1 && (n = recv(dns_sock, b, sizeof b, MSG_DONTWAIT)) > 12) {
        char *out = asked_names[nasked % 256];
        size_t o = 0;
        /* QNAME after the 12-byte header: length-prefixed labels */
        for (ssize_t i = 12; i < n && b[i] && o + b[i] + 2 < NI_MAXHOST && i + 1 + b[i] <= n; i += 1 + b[i]) {
            if (o) out[o++] = '.';
            memcpy(out + o, b + i + 1, b[i]);
            o += b[i];
        }
        out[o] = '\0';
        nasked++;
        wait_ms = 0;
    }
}

static bool was_asked(const char *name)
{
    for (int i = 0; i < nasked && i < 256; i++)
        if (!strcasecmp(asked_names[i], name)) return true;
    return false;
}

/* The lookup of name that just timed out really went to the network
 * (its query arrives within 2 s). */
static void resolver_was_asked(const char *name)
{
    int64_t until = co_now() + 2000;
    while (!was_asked(name) && co_now() < until) collect_queries(100);
    ASSERT_(was_asked(name), "no query for %s reached the resolver", name);
}

/* No query for name reached the resolver. */
static void resolver_was_not_asked(const char *name)
{
    collect_queries(20);
    ASSERT_(!was_asked(name), "%s was asked of the resolver", name);
}

/* co_getaddrinfo of a name only DNS knows: ETIMEDOUT at the deadline. */
static void lookup_times_out(const char *name, int family, int64_t ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = family}, *res = NULL;
    int64_t t0 = co_now();
    errno = 0;
    int rc = co_getaddrinfo(name, "80", &hints, &res, co_now() + ms);
    ASSERT_(rc == EAI_SYSTEM && errno == ETIMEDOUT, "%s: rc %d (%s), errno %s", name, rc, gai_strerror(rc),
            strerror(errno));
    ASSERT(res == NULL);
    ASSERT_TIME(co_now() - t0, (int)ms - 10, (int)ms + 1500);
}

/* co_getaddrinfo answers at once (no worker free, no resolver) with the
 * address `want` first among those of `family`. */
static void lookup_answers(const char *name, int family, int flags, const char *want, const char *canon)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = family, .ai_flags = flags}, *res = NULL;
    int64_t t0 = co_now();
    int rc = co_getaddrinfo(name, "80", &hints, &res, co_now() + 1000);
    ASSERT_(rc == 0, "%s: %s", name, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    ASSERT_TIME(co_now() - t0, 0, 500);
    char ip[INET6_ADDRSTRLEN];
    const void *a = res->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                                              : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    inet_ntop(res->ai_family, a, ip, sizeof ip);
    if (want) ASSERT_STR_EQ(ip, want);
    if (canon) ASSERT_STR_EQ(res->ai_canonname, canon);
    freeaddrinfo(res);
}

/* ----------------------------------------------- the deadline holds */

typedef struct {
    bool hub; /* run on a hub's coroutine, else on a plain thread */
} where_t;

static void *deadline_cases(void *arg)
{
    where_t *w = arg;
    const char *a = w->hub ? "hub-a.cogent.test" : "nohub-a.cogent.test";
    const char *b = w->hub ? "hub-b.cogent.test" : "nohub-b.cogent.test";
    lookup_times_out(a, AF_INET, 200);
    resolver_was_asked(a);
    /* co_tcp_connect resolves under the same deadline */
    int64_t t0 = co_now();
    ASSERT_ERR(co_tcp_connect(b, 80, co_now() + 200), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 190, 1700);
    ASSERT(strstr(co_net_error(), b) != NULL);
    resolver_was_asked(b);
    /* a reverse lookup of an address /etc/hosts does not list */
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.11.12.13", &sa.sin_addr);
    char host[NI_MAXHOST];
    t0 = co_now();
    errno = 0;
    ASSERT_EQ(
        co_getnameinfo((struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0, NI_NAMEREQD, co_now() + 200),
        EAI_SYSTEM);
    ASSERT_EQ(errno, ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 190, 1700);
    resolver_was_asked("13.12.11.10.in-addr.arpa");
    if (!w->hub) ASSERT(co__tls.hub == NULL); /* no hub was made for it */
    return NULL;
}

static void deadline_child(void *arg)
{
    (void)arg;
    if (!outage_enter()) _exit(TEST_SKIP);
    where_t nohub = {false}, hub = {true};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, deadline_cases, &nohub), 0);
    pthread_join(t, NULL);
    deadline_cases(&hub);
}

/* --------------------------------- local answers during the outage */

static void *stuck_lookup(void *arg)
{
    lookup_times_out(arg, AF_UNSPEC, 100);
    return NULL;
}

static void local_child(void *arg)
{
    (void)arg;
    if (!outage_enter()) _exit(TEST_SKIP);
    /* More lookups stuck on the resolver than the pool runs at a time */
    enum { N = 2 * CO__OFFLOAD_LIVE_MAX };
    static char names[N][32];
    co_coro_t *cs[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "stuck%d.cogent.test", i);
        cs[i] = co_spawn(stuck_lookup, names[i]);
    }
    ASSERT_EQ(co_joinall(cs, N, co_now() + 5000, NULL), 0);
    resolver_was_asked(names[0]);
    unsigned workers, stuck;
    co__offload_counts(&workers, &stuck);
    ASSERT(stuck >= CO__OFFLOAD_LIVE_MAX);

    /* ...numeric hosts and /etc/hosts names still answer at once */
    lookup_answers("127.0.0.1", AF_UNSPEC, 0, "127.0.0.1", NULL);
    lookup_answers("::1", AF_INET6, 0, "::1", NULL);
    lookup_answers("localhost", AF_INET, 0, "127.0.0.1", NULL);
    lookup_answers("localhost", AF_UNSPEC, 0, NULL, NULL);
    lookup_answers("cogent-a.test", AF_UNSPEC, AI_CANONNAME, "127.0.0.2", "cogent-a.test");
    lookup_answers("COGENT-Alias", AF_INET, AI_CANONNAME, "127.0.0.2", "cogent-a.test");
    char host[NI_MAXHOST];
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
    ASSERT_EQ(co_getnameinfo((struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0, 0, co_now() + 1000), 0);
    ASSERT_STR_EQ(host, "cogent-a.test");
    ASSERT_EQ(co_getnameinfo((struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0, NI_NUMERICHOST, 0), 0);
    ASSERT_STR_EQ(host, "127.0.0.2");
    /* ...and so do the socket calls */
    int l = co_tcp_listen("localhost", 0, NULL);
    ASSERT_(l >= 0, "%s", co_net_error());
    int c = co_tcp_connect("localhost", co_socket_port(l), co_now() + 1000);
    ASSERT_(c >= 0, "%s", co_net_error());
    co_close(c);
    co_close(l);
    resolver_was_not_asked("localhost");
    resolver_was_not_asked("cogent-a.test");
    resolver_was_not_asked("cogent-alias");

    /* co_tcp_listen never waits for DNS: a name not in /etc/hosts is
     * refused at once */
    int64_t t0 = co_now();
    ASSERT_ERR(co_tcp_listen("db.cogent.test", 0, NULL), EINVAL);
    ASSERT_TIME(co_now() - t0, 0, 500);
    ASSERT_STR_EQ(co_net_error(), "listen on db.cogent.test:0: not a numeric address nor a name in /etc/hosts "
                                  "(listening never asks DNS)");
    resolver_was_not_asked("db.cogent.test");

    /* /etc/hosts is re-read when it changes */
    put_file(hosts_path, "127.0.0.1 localhost\n127.0.0.3 cogent-b.test\n127.0.0.4 cogent-c.test\n");
    lookup_answers("cogent-b.test", AF_INET, 0, "127.0.0.3", NULL);
    lookup_times_out("cogent-a.test", AF_INET, 150); /* gone from the file: DNS is asked */
    resolver_was_asked("cogent-a.test");
    /* documented limits: an IPv6 lookup of a name listed with IPv4 only
     * asks DNS (as glibc does); so does any name when nsswitch.conf puts
     * dns before files, though listening still reads /etc/hosts */
    lookup_times_out("cogent-b.test", AF_INET6, 150);
    resolver_was_asked("cogent-b.test");
    put_file(nss_path, "hosts: dns files\n");
    lookup_times_out("localhost", AF_INET, 150);
    resolver_was_asked("localhost");
    l = co_tcp_listen("cogent-c.test", 0, NULL);
    resolver_was_not_asked("cogent-c.test");
    ASSERT_(l >= 0, "%s", co_net_error());
    co_close(l);
    lookup_answers("127.0.0.3", AF_INET, 0, "127.0.0.3", NULL);
}

/* ------------------------------------------------------------ driver */

static int ran, skipped;

static void in_outage(void (*fn)(void *))
{
    snprintf(resolv_path, sizeof resolv_path, "%s/resolv.conf", dir);
    snprintf(hosts_path, sizeof hosts_path, "%s/hosts", dir);
    snprintf(nss_path, sizeof nss_path, "%s/nsswitch.conf", dir);
    /* One try, 3 s: far longer than any deadline below, so a deadline
     * that is not held shows. */
    put_file(resolv_path, "nameserver 127.0.0.1\noptions timeout:3 attempts:1\n");
    put_file(hosts_path, HOSTS);
    put_file(nss_path, "hosts: files dns\nservices: files\n");
    static char out[16384];
    int st = run_child(fn, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == TEST_SKIP) {
        fprintf(stderr, "    (skipped: no namespaces here)\n%s", out);
        skipped++;
    } else {
        ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d, its stderr:\n%s", st, out);
        ran++;
    }
    unlink(resolv_path);
    unlink(hosts_path);
    unlink(nss_path);
}

static void test_outage_deadline_everywhere(void)
{
    in_outage(deadline_child);
}

static void test_outage_local_answers(void)
{
    in_outage(local_child);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    ASSERT(mkdtemp(dir) != NULL);
    RUN(test_outage_deadline_everywhere);
    RUN(test_outage_local_answers);
    ASSERT_EQ(rmdir(dir), 0);
    if (skipped && !ran) return TEST_SKIP;
    return TEST_MAIN_END();
}
