/* Name lookups off the hub: getaddrinfo and getnameinfo run on the
 * offload pool (offload.c) while the caller is parked. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "offload.h"

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
    if (!res || (!node && !service)) return EAI_NONAME;
    *res = NULL;
    if (!co__tls.hub) return getaddrinfo(node, service, hints, res);
    gai_job_t *g = calloc(1, sizeof *g);
    if (!g) return EAI_MEMORY;
    g->job.run = gai_run;
    g->job.drop = gai_drop;
    if ((node && !(g->node = strdup(node))) || (service && !(g->service = strdup(service)))) {
        gai_drop(&g->job);
        return EAI_MEMORY;
    }
    if (hints) {
        g->hints = *hints;
        g->hints.ai_addr = NULL;
        g->hints.ai_canonname = NULL;
        g->hints.ai_next = NULL;
        g->has_hints = true;
    }
    int r = co__offload(&g->job, deadline, "co_getaddrinfo");
    if (r) {
        if (r == EAGAIN) gai_drop(&g->job); /* never queued */
        errno = r;
        return EAI_SYSTEM;
    }
    int rc = g->rc;
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
    if (!co__tls.hub) return getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    if (!sa || salen > sizeof(struct sockaddr_storage)) return EAI_FAMILY;
    gni_job_t *g = calloc(1, sizeof *g);
    if (!g) return EAI_MEMORY;
    g->job.run = gni_run;
    g->job.drop = gni_drop;
    memcpy(&g->sa, sa, salen);
    g->salen = salen;
    g->hostlen = host ? (hostlen < NI_MAXHOST ? hostlen : NI_MAXHOST) : 0;
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
        if (host && hostlen) memcpy(host, g->host, g->hostlen);
        if (serv && servlen) memcpy(serv, g->serv, g->servlen);
    } else if (rc == EAI_SYSTEM) {
        errno = g->err;
    }
    free(g);
    return rc;
}
