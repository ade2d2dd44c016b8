/* Sockets (net.c): what the stream server needs of the Unix-socket code.
 * A socket file is only ever removed if it is still the very file cogent
 * bound (same device and inode): a path is a name, and between bind and
 * removal anyone may have put something else under it. */
#ifndef COGENT_NET_H
#define COGENT_NET_H

#include <sys/types.h>

#include "core.h"

/* The identity of a socket file as bound; ino 0 = unknown (never removed). */
typedef struct co__sockfile {
    dev_t dev;
    ino_t ino;
} co__sockfile_t;

/* co_unix_listen, also recording in *made (may be NULL) the socket file
 * it bound.  The listening fd, or -1 with errno and co_net_error(). */
int co__unix_listen(const char *path, const co_listen_opts_t *opts, co__sockfile_t *made);
/* Removes path if it is still the socket file `made`.  0 when removed;
 * -1 with errno ENOENT (gone already), ESTALE (something else is there
 * now: left alone) or unlink's errno.  Switches: no. */
int co__unix_unlink(const char *path, const co__sockfile_t *made);

#endif
