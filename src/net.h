/* Sockets (net.c) and names (dns.c): what other files need of them.
 *
 * A Unix socket's file is only ever removed if it is still the very file
 * cogent bound (same device and inode): a path is a name, and between
 * bind and removal anyone may have put something else under it. */
#ifndef COGENT_NET_H
#define COGENT_NET_H

#include <sys/types.h>
#include <time.h>

#include "core.h"

/* The identity of a socket file as bound; ino 0 = unknown (never
 * removed).  ctime, when set, must match too: an inode number freed by
 * an unlink is soon given to the next file made, and a socket someone
 * just put in place of a stale one can get it. */
typedef struct co__sockfile {
    dev_t dev;
    ino_t ino;
    struct timespec ctime; /* {0, 0}: not compared */
} co__sockfile_t;

/* co_unix_listen, also recording in *made (may be NULL) the socket file
 * it bound.  The listening fd, or -1 with errno and co_net_error(). */
int co__unix_listen(const char *path, const co_listen_opts_t *opts, co__sockfile_t *made);
/* Removes path if it is still the socket file `made`.  0 when removed;
 * -1 with errno ENOENT (gone already), ESTALE (something else is there
 * now: left alone) or unlink's errno.  Switches: no. */
int co__unix_unlink(const char *path, const co__sockfile_t *made);

/* Resolves with no network at all (dns.c), for listening addresses:
 * numeric hosts, and names from /etc/hosts (in file order, whatever
 * nsswitch.conf says; "localhost" is the loopback address even if the
 * file lacks it).  getaddrinfo's codes, or CO__EAI_REMOTE for a name
 * only a name service could resolve (*res NULL).  Switches: no. */
#define CO__EAI_REMOTE 1 /* getaddrinfo's own codes are <= 0 */
struct addrinfo;
int co__getaddrinfo_local(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res);

/* The fork path: the /etc/hosts table's lock (dns.c). */
void co__dns_fork_prepare(void);
void co__dns_fork_parent(void);
void co__dns_fork_child(void);

#endif
