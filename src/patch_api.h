/* The core's side of libcogent-patch.so (src/patch_core.c): exported, but
 * not part of the public API; only the patch library calls these. */
#ifndef COGENT_PATCH_API_H
#define COGENT_PATCH_API_H

#include "cogent.h"

enum { CO__PATCH_LIBC = 0, CO__PATCH_COGENT = 1 };

/* True if the calling thread has a hub: sleeps and polls park. */
CO_API bool co__patch_on_hub(void);
/* How a blocking call on fd is served: by libc as is, or by cogent's call
 * of the same name (parks a coroutine; or, on a thread without a hub,
 * blocks the thread on a descriptor cogent's own API made non-blocking).
 * Classifies fd on first use; never changes its flags. */
CO_API int co__patch_mode(int fd);
/* A descriptor the caller just made (socket): forget any earlier one of
 * that number; user_nonblock is what the caller asked for. */
CO_API void co__patch_new_fd(int fd, bool user_nonblock, bool sock);
/* `to` is now a dup of `from`: same open file, same view. */
CO_API void co__patch_dup(int from, int to);
/* fcntl(F_SETFL, flags): records the caller's view of O_NONBLOCK and
 * returns the flags to give the kernel: the same. */
CO_API int co__patch_setfl(int fd, int flags);
/* fcntl(F_GETFL): the kernel's flags with O_NONBLOCK as the caller set it. */
CO_API int co__patch_getfl(int fd, int kernel_flags);
/* accept4 with the caller's flags (the new descriptor is exactly as
 * they ask), parking until a connection comes. */
CO_API int co__patch_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags);

#endif
