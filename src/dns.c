/* Name lookups.  glibc's getaddrinfo and getnameinfo have no
 * non-blocking form, so a lookup that may ask the network runs on the
 * offload pool (offload.c) while the caller waits, and its deadline holds
 * on every thread.  What needs no network is answered at once, on the
 * caller's thread, so that it never waits behind lookups stuck on a dead
 * resolver:
 *
 *  - numeric hosts ("127.0.0.1", "::1", "fe80::1%lo"): parsed, with
 *    AI_NUMERICHOST so that glibc cannot consult any name service;
 *  - names from /etc/hosts, when nsswitch.conf's hosts line starts with
 *    `files` (glibc then asks /etc/hosts first and, the name being there,
 *    nothing else): glibc's own getaddrinfo, so the answer is exactly the
 *    one it would give (order, canonical name, flags).  Both files are
 *    re-read when they change (device, inode, size or mtime).
 *
 * Services are looked up in /etc/services (nsswitch's services line) on
 * the caller's thread in both cases: a local file on every system we
 * know of. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <gnu/lib-names.h>
#include <net/if.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "fork.h"
#include "net.h"
#include "offload.h"

/* ------------------------------------------------------ libc's lookups */

/* The patch library interposes getaddrinfo and getnameinfo and, on a hub,
 * sends them to co_getaddrinfo / co_getnameinfo.  The answers cogent
 * gives on the caller's thread call them by name (so that sanitizers'
 * interceptors still see them), which with the patch loaded comes
 * straight back here: such a call, recognised by in_local, goes to libc's
 * own function, looked up in libc itself. */
typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
typedef int (*gni_fn)(const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int);
static gai_fn libc_gai;
static gni_fn libc_gni;
static pthread_once_t libc_once = PTHREAD_ONCE_INIT;
static __thread bool in_local; /* in a lookup this thread makes on its own */

static void find_libc(void)
{
    void *h = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
    if (h) {
        libc_gai = (gai_fn)dlsym(h, "getaddrinfo");
        libc_gni = (gni_fn)dlsym(h, "getnameinfo");
        dlclose(h); /* a NOLOAD handle: libc stays, of course */
    }
    /* A static program: nothing can interpose, the names are libc's. */
    if (!libc_gai) libc_gai = getaddrinfo;
    if (!libc_gni) libc_gni = getnameinfo;
}

static int local_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    in_local = true;
    int rc = getaddrinfo(node, service, hints, res);
    in_local = false;
    return rc;
}

static int local_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                             socklen_t servlen, int flags)
{
    in_local = true;
    int rc = getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    in_local = false;
    return rc;
}

/* --------------------------------------------------------- /etc/hosts */

#define HOSTS_PATH    "/etc/hosts"
#define NSSWITCH_PATH "/etc/nsswitch.conf"

/* What identifies a version of a file: re-read when any of it changes. */
typedef struct stamp {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} stamp_t;

typedef struct hent {
    char *name;                  /* lowercased: glibc matches names without case */
    char addr[INET6_ADDRSTRLEN]; /* canonical text, without the scope */
    char scope[IF_NAMESIZE];     /* "%eth0" of a link-local address; "" none */
    int family;
    size_t next; /* the next entry of the same name, in file order; 0 none */
} hent_t;

/* The parsed files, shared by every thread; rebuilt whole on a change. */
static struct {
    pthread_mutex_t lock;
    stamp_t hosts_st, nss_st;
    bool checked;
    bool files_first; /* nsswitch.conf: hosts: files, unconditionally first */
    hent_t *ents;     /* ents[0] unused: 0 means "none" in the indexes */
    size_t n, cap;
    size_t *by_name, *by_addr; /* open addressing, nslots (a power of two) */
    size_t nslots;
} H = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void stamp_of(const char *path, stamp_t *s)
{
    struct stat st;
    *s = (stamp_t){0};
    if (stat(path, &st) != 0) return;
    *s = (stamp_t){true, st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

static bool stamp_eq(const stamp_t *a, const stamp_t *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

/* Address text as glibc reads it from /etc/hosts: IPv4 in any form
 * inet_aton takes, IPv6 with an optional %scope.  Canonical text into
 * out, the scope (may be NULL) into scope; the family, or 0 if it is not
 * an address. */
static int parse_addr(const char *tok, char out[INET6_ADDRSTRLEN], char scope[IF_NAMESIZE])
{
    struct in_addr a4;
    struct in6_addr a6;
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE];
    size_t len = strlen(tok);
    if (scope) scope[0] = '\0';
    if (len >= sizeof buf) return 0;
    if (!strchr(tok, ':')) {
        if (!inet_aton(tok, &a4)) return 0;
        inet_ntop(AF_INET, &a4, out, INET6_ADDRSTRLEN);
        return AF_INET;
    }
    memcpy(buf, tok, len + 1);
    char *pct = strchr(buf, '%');
    if (pct) {
        if (strlen(pct + 1) >= IF_NAMESIZE) return 0;
        if (scope) memcpy(scope, pct + 1, strlen(pct + 1) + 1);
        *pct = '\0';
    }
    if (inet_pton(AF_INET6, buf, &a6) != 1) return 0;
    inet_ntop(AF_INET6, &a6, out, INET6_ADDRSTRLEN);
    return AF_INET6;
}

static void hosts_clear(void)
{
    for (size_t i = 1; i < H.n; i++) free(H.ents[i].name);
    free(H.ents);
    free(H.by_name);
    free(H.by_addr);
    H.ents = NULL;
    H.by_name = H.by_addr = NULL;
    H.n = H.cap = H.nslots = 0;
}

/* The slot of key in idx: where it is, or the empty one where it goes.
 * Only once indexed (H.nslots > 0, hence H.ents too). */
static size_t *slot_of(size_t *idx, const char *key, bool by_addr)
{
    size_t mask = H.nslots - 1;
    const hent_t *ents = H.ents;
    for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask) {
        size_t e = idx[i];
        if (!e || !ents || !strcmp(by_addr ? ents[e].addr : ents[e].name, key)) return &idx[i];
    }
}

static bool hosts_add(const char *name, const char *addr, const char *scope, int family)
{
    if (H.n == H.cap) {
        size_t cap = H.cap ? 2 * H.cap : 64;
        hent_t *e = realloc(H.ents, cap * sizeof *e);
        if (!e) return false;
        H.ents = e;
        H.cap = cap;
        if (!H.n) H.n = 1; /* entry 0 is "none" */
    }
    char *nm = strdup(name);
    if (!nm) return false;
    lower(nm);
    hent_t *e = &H.ents[H.n++];
    e->name = nm;
    e->family = family;
    e->next = 0;
    memcpy(e->addr, addr, sizeof e->addr);
    memcpy(e->scope, scope, sizeof e->scope);
    return true;
}

/* Indexes the entries by name (the first of each name, chained in file
 * order) and by address. */
static bool hosts_index(void)
{
    size_t slots = 64;
    while (slots < 2 * H.n) slots *= 2;
    H.nslots = slots;
    H.by_name = calloc(slots, sizeof *H.by_name);
    H.by_addr = calloc(slots, sizeof *H.by_addr);
    if (!H.by_name || !H.by_addr) return false;
    for (size_t i = 1; i < H.n; i++) {
        size_t *s = slot_of(H.by_name, H.ents[i].name, false);
        if (!*s) {
            *s = i;
        } else {
            size_t e = *s;
            while (H.ents[e].next) e = H.ents[e].next;
            H.ents[e].next = i;
        }
        s = slot_of(H.by_addr, H.ents[i].addr, true);
        if (!*s) *s = i;
    }
    return true;
}

static void hosts_load(void)
{
    hosts_clear();
    FILE *f = fopen(HOSTS_PATH, "re");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    bool ok = true;
    while (ok && getline(&line, &cap, f) >= 0) {
        char *hash = strchr(line, '#'), *save = NULL;
        if (hash) *hash = '\0';
        char addr[INET6_ADDRSTRLEN], scope[IF_NAMESIZE];
        char *tok = strtok_r(line, " \t\r\n", &save);
        int family = tok ? parse_addr(tok, addr, scope) : 0;
        if (!family) continue;
        while (ok && (tok = strtok_r(NULL, " \t\r\n", &save)))
            if (strlen(tok) < NI_MAXHOST) ok = hosts_add(tok, addr, scope, family);
    }
    free(line);
    fclose(f);
    /* Out of memory: no fast path at all (every lookup takes the pool),
     * rather than a partial table that would send a listed name to DNS. */
    if (!ok || (H.n && !hosts_index())) hosts_clear();
}

/* nsswitch.conf: does the hosts line start with `files`, with no action
 * after it (like [SUCCESS=continue]) that could go on past a hit? */
static bool nss_files_first(void)
{
    FILE *f = fopen(NSSWITCH_PATH, "re");
    if (!f) return false; /* glibc's built-in order then: not ours to guess */
    char *line = NULL;
    size_t cap = 0;
    bool first = false;
    while (getline(&line, &cap, f) >= 0) {
        char *hash = strchr(line, '#'), *save = NULL;
        if (hash) *hash = '\0';
        char *db = strtok_r(line, " \t\r\n", &save);
        if (!db || strcmp(db, "hosts:") != 0) continue;
        char *a = strtok_r(NULL, " \t\r\n", &save), *b = a ? strtok_r(NULL, " \t\r\n", &save) : NULL;
        first = a && !strcmp(a, "files") && (!b || b[0] != '[');
        break;
    }
    free(line);
    fclose(f);
    return first;
}

/* Re-reads what changed.  H.lock held. */
static void hosts_refresh(void)
{
    stamp_t hs, ns;
    stamp_of(HOSTS_PATH, &hs);
    stamp_of(NSSWITCH_PATH, &ns);
    if (!H.checked || !stamp_eq(&hs, &H.hosts_st)) hosts_load();
    if (!H.checked || !stamp_eq(&ns, &H.nss_st)) H.files_first = nss_files_first();
    H.hosts_st = hs;
    H.nss_st = ns;
    H.checked = true;
}

/* Takes the table's lock, the files re-read if they changed. */
static void hosts_lock(void)
{
    co__fork_init(); /* the lock is held across fork (see below) */
    pthread_mutex_lock(&H.lock);
    hosts_refresh();
}

/* The first entry of name, or 0.  H.lock held, refreshed. */
static size_t hosts_find(const char *name)
{
    char key[NI_MAXHOST];
    size_t len = strlen(name);
    if (!H.nslots || len >= sizeof key) return 0;
    memcpy(key, name, len + 1);
    lower(key);
    return *slot_of(H.by_name, key, false);
}

/* Will glibc answer a lookup of name for family from /etc/hosts alone?
 * For AF_INET6 an IPv6 entry is needed: glibc asks every source for one
 * before it would map an IPv4 address. */
static bool hosts_answers(const char *name, int family)
{
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) return false;
    hosts_lock();
    bool yes = false;
    if (H.files_first)
        for (size_t e = hosts_find(name); e && !yes; e = H.ents[e].next)
            yes = family == AF_UNSPEC || H.ents[e].family == family;
    pthread_mutex_unlock(&H.lock);
    return yes;
}

/* Likewise for the reverse lookup of an address; also true for what is
 * not an internet address (glibc answers or refuses those itself). */
static bool hosts_answers_addr(const struct sockaddr *sa, socklen_t salen)
{
    char text[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in))
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, text, sizeof text);
    else if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6))
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, text, sizeof text);
    else
        return true;
    hosts_lock();
    bool yes = H.files_first && H.nslots && *slot_of(H.by_addr, text, true);
    pthread_mutex_unlock(&H.lock);
    return yes;
}

/* The fork path (fork.c): the table's lock is held across fork, so that
 * the child never inherits it taken by a thread it does not have. */
void co__dns_fork_prepare(void)
{
    pthread_mutex_lock(&H.lock);
}

void co__dns_fork_parent(void)
{
    pthread_mutex_unlock(&H.lock);
}

void co__dns_fork_child(void)
{
    pthread_mutex_unlock(&H.lock);
}

/* ------------------------------------------------- local answers only */

/* Looks numeric to glibc: an IPv4 address in any inet_aton form, or an
 * IPv6 one with an optional %scope. */
static bool numeric_host(const char *node)
{
    char out[INET6_ADDRSTRLEN];
    return parse_addr(node, out, NULL) != 0;
}

/* hints (glibc's defaults for NULL) with `flags` added; the pointers
 * cleared, as getaddrinfo wants them in hints. */
static struct addrinfo hints_with(const struct addrinfo *hints, int flags)
{
    struct addrinfo h = {.ai_family = AF_UNSPEC, .ai_flags = AI_V4MAPPED | AI_ADDRCONFIG};
    if (hints) {
        h = *hints;
        h.ai_addr = NULL;
        h.ai_canonname = NULL;
        h.ai_next = NULL;
        h.ai_addrlen = 0;
    }
    h.ai_flags |= flags;
    return h;
}

/* Answers on the calling thread what needs no network (see the top of
 * the file): true with getaddrinfo's code in *rc if it did. */
static bool gai_local(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res,
                      int *rc)
{
    if (!node || (hints && (hints->ai_flags & AI_NUMERICHOST))) {
        *rc = local_getaddrinfo(node, service, hints, res);
        return true;
    }
    if (numeric_host(node)) {
        struct addrinfo h = hints_with(hints, AI_NUMERICHOST);
        *rc = local_getaddrinfo(node, service, &h, res);
        if (*rc != EAI_NONAME) return true;
    }
    if (hosts_answers(node, hints ? hints->ai_family : AF_UNSPEC)) {
        *rc = local_getaddrinfo(node, service, hints, res);
        return true;
    }
    return false;
}

/* Appends to *res (a list being built) getaddrinfo's answer for the
 * numeric address text. */
static int append_numeric(const char *text, const char *service, const struct addrinfo *h, struct addrinfo **res)
{
    struct addrinfo *more = NULL;
    int rc = local_getaddrinfo(text, service, h, &more);
    if (rc) return rc;
    struct addrinfo **tail = res;
    while (*tail) tail = &(*tail)->ai_next;
    *tail = more; /* freeaddrinfo frees the whole chain, node by node */
    return 0;
}

int co__getaddrinfo_local(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    int rc;
    *res = NULL;
    if (!node || numeric_host(node) || (hints && (hints->ai_flags & AI_NUMERICHOST))) {
        struct addrinfo h = hints_with(hints, AI_NUMERICHOST);
        return local_getaddrinfo(node, service, &h, res);
    }
    /* Names: /etc/hosts in file order whatever nsswitch.conf says, since
     * no other source may be asked; "localhost" is the loopback address
     * even when the file forgot it (RFC 6761). */
    struct addrinfo h = hints_with(hints, AI_NUMERICHOST);
    int family = h.ai_family;
    enum { MAX = 16 };
    char addrs[MAX][INET6_ADDRSTRLEN + IF_NAMESIZE];
    int n = 0;
    bool listed;
    hosts_lock();
    size_t first = hosts_find(node);
    listed = first != 0;
    for (size_t e = first; e && n < MAX; e = H.ents[e].next)
        if (family == AF_UNSPEC || H.ents[e].family == family)
            snprintf(addrs[n++], sizeof addrs[0], "%s%s%s", H.ents[e].addr, H.ents[e].scope[0] ? "%" : "",
                     H.ents[e].scope);
    pthread_mutex_unlock(&H.lock);
    if (!listed && !strcasecmp(node, "localhost")) {
        listed = true;
        if (family != AF_INET6) strcpy(addrs[n++], "127.0.0.1");
        if (family != AF_INET) strcpy(addrs[n++], "::1");
    }
    if (!listed) return CO__EAI_REMOTE;
    rc = EAI_NONAME;
    for (int i = 0; i < n; i++) {
        int r = append_numeric(addrs[i], service, &h, res);
        if (r == 0)
            rc = 0;
        else if (rc != 0)
            rc = r;
    }
    return rc;
}

/* --------------------------------------------------------- name lookups */

typedef struct gai_job {
    co__job_t job;
    char *node, *service;
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res;
    int rc, err;
} gai_job_t;

static void gai_run(co__job_t *j)
{
    gai_job_t *g = (gai_job_t *)j;
    errno = 0;
    g->rc = getaddrinfo(g->node, g->service, g->has_hints ? &g->hints : NULL, &g->res);
    g->err = errno;
}

static void gai_drop(co__job_t *j)
{
    gai_job_t *g = (gai_job_t *)j;
    if (g->rc == 0 && g->res) freeaddrinfo(g->res);
    free(g->node);
    free(g->service);
    free(g);
}

int co_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res,
                   int64_t deadline)
{
    if (CO__UNLIKELY(in_local)) { /* an interposer's call back: see local_getaddrinfo */
        pthread_once(&libc_once, find_libc);
        return libc_gai(node, service, hints, res);
    }
    if (!res || (!node && !service)) return EAI_NONAME;
    *res = NULL;
    int rc;
    if (gai_local(node, service, hints, res, &rc)) return rc;
    gai_job_t *g = calloc(1, sizeof *g);
    if (!g) return EAI_MEMORY;
    g->job.run = gai_run;
    g->job.drop = gai_drop;
    if ((node && !(g->node = strdup(node))) || (service && !(g->service = strdup(service)))) {
        gai_drop(&g->job);
        return EAI_MEMORY;
    }
    if (hints) {
        g->hints = hints_with(hints, 0);
        g->has_hints = true;
    }
    int r = co__offload(&g->job, deadline, "co_getaddrinfo");
    if (r) {
        if (r == EAGAIN) gai_drop(&g->job); /* never queued */
        errno = r;
        return EAI_SYSTEM;
    }
    rc = g->rc;
    if (rc == 0) *res = g->res;
    g->res = NULL;
    if (rc == EAI_SYSTEM) errno = g->err;
    gai_drop(&g->job);
    return rc;
}

typedef struct gni_job {
    co__job_t job;
    struct sockaddr_storage sa;
    socklen_t salen;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    socklen_t hostlen, servlen;
    int flags, rc, err;
} gni_job_t;

static void gni_run(co__job_t *j)
{
    gni_job_t *g = (gni_job_t *)j;
    errno = 0;
    g->rc = getnameinfo((struct sockaddr *)&g->sa, g->salen, g->hostlen ? g->host : NULL, g->hostlen,
                        g->servlen ? g->serv : NULL, g->servlen, g->flags);
    g->err = errno;
}

static void gni_drop(co__job_t *j)
{
    free(j);
}

int co_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                   socklen_t servlen, int flags, int64_t deadline)
{
    if (CO__UNLIKELY(in_local)) {
        pthread_once(&libc_once, find_libc);
        return libc_gni(sa, salen, host, hostlen, serv, servlen, flags);
    }
    if (!sa || salen < sizeof(sa_family_t) || salen > sizeof(struct sockaddr_storage)) return EAI_FAMILY;
    /* No host wanted, a numeric one, an address /etc/hosts names, or not
     * an internet address: nothing to ask the network.  (NI_NOFQDN makes
     * glibc look up this machine's own name once: not a local answer.) */
    if (!host || !hostlen || (flags & NI_NUMERICHOST) || (!(flags & NI_NOFQDN) && hosts_answers_addr(sa, salen)))
        return local_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    gni_job_t *g = calloc(1, sizeof *g);
    if (!g) return EAI_MEMORY;
    g->job.run = gni_run;
    g->job.drop = gni_drop;
    memcpy(&g->sa, sa, salen);
    g->salen = salen;
    g->hostlen = hostlen < NI_MAXHOST ? hostlen : NI_MAXHOST;
    g->servlen = serv ? (servlen < NI_MAXSERV ? servlen : NI_MAXSERV) : 0;
    g->flags = flags;
    int r = co__offload(&g->job, deadline, "co_getnameinfo");
    if (r) {
        if (r == EAGAIN) free(g);
        errno = r;
        return EAI_SYSTEM;
    }
    int rc = g->rc;
    if (rc == 0) {
        memcpy(host, g->host, g->hostlen);
        if (serv && servlen) memcpy(serv, g->serv, g->servlen);
    } else if (rc == EAI_SYSTEM) {
        errno = g->err;
    }
    free(g);
    return rc;
}
