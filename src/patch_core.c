/* What libcogent-patch.so needs from the core (declared in patch_api.h).
 *
 * The patch library links against libcogent.so and cannot see its
 * internals, so the decisions that need the fd table live here, behind a
 * few exported co__patch_* functions.  The core itself never interposes
 * anything. */
#include <errno.h>
#include <fcntl.h>

#include "fd.h"
#include "io.h"
#include "patch_api.h"
#include "sys.h"

bool co__patch_on_hub(void)
{
    return co__tls.hub != NULL;
}

int co__patch_mode(int fd)
{
    co__fd_t *e;
    if (!co__tls.hub) {
        /* Outside a hub: libc's own call, unless cogent made the fd
         * non-blocking behind the caller's back; then cogent's call, which
         * blocks the thread as the caller expects. */
        if ((unsigned)fd >= (1u << 20) || !(e = co__fd_get(fd))) return CO__PATCH_LIBC;
        unsigned f = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
        return (f & CO__FD_NB_OURS) && !(f & CO__FD_USER_NB) ? CO__PATCH_COGENT : CO__PATCH_LIBC;
    }
    if (!(e = co__fd_get(fd))) return CO__PATCH_LIBC; /* libc reports EBADF */
    unsigned f = co__fd_flags(e, fd);
    if (!f || (f & CO__FD_USER_NB)) return CO__PATCH_LIBC; /* it asked not to block */
    return CO__PATCH_COGENT;
}

void co__patch_new_fd(int fd, bool user_nonblock, bool sock)
{
    if (fd < 0) return;
    unsigned f = (sock ? CO__FD_SOCK : 0u) | (user_nonblock ? CO__FD_NB | CO__FD_USER_NB : 0u);
    co__fd_new(fd, f); /* ENOMEM: the fd stays unknown and is classified at first use */
}

void co__patch_dup(int from, int to)
{
    co__fd_t *a = co__fd_get(from);
    if (!a || to < 0) return;
    unsigned f = __atomic_load_n(&a->flags, __ATOMIC_RELAXED);
    if (!(f & CO__FD_KNOWN)) return; /* classified when first used */
    /* A dup shares the open file, so its O_NONBLOCK and the caller's view
     * of it. */
    co__fd_new(to, f & (CO__FD_SOCK | CO__FD_FILE | CO__FD_PIPE | CO__FD_NO_NOWAIT | CO__FD_NB | CO__FD_NB_OURS |
                        CO__FD_USER_NB));
}

int co__patch_setfl(int fd, int flags)
{
    co__fd_t *e = co__fd_get(fd);
    if (!e) return flags;
    unsigned f = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
    if (!(f & CO__FD_KNOWN)) return flags; /* classification will read the kernel's */
    /* The kernel gets exactly what the caller asks: cogent serves a
     * blocking descriptor without O_NONBLOCK (io.c), and the flag is the
     * open file's, seen by every process that shares it. */
    unsigned nb = (flags & O_NONBLOCK) ? CO__FD_NB | CO__FD_USER_NB : 0u;
    __atomic_fetch_and(&e->flags, ~(unsigned)(CO__FD_NB | CO__FD_USER_NB | CO__FD_NB_OURS), __ATOMIC_RELAXED);
    __atomic_fetch_or(&e->flags, nb, __ATOMIC_RELAXED);
    return flags;
}

int co__patch_getfl(int fd, int kernel_flags)
{
    co__fd_t *e = co__fd_get(fd);
    if (!e || kernel_flags < 0) return kernel_flags;
    unsigned f = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
    if (!(f & CO__FD_KNOWN)) return kernel_flags;
    return (f & CO__FD_USER_NB) ? kernel_flags | O_NONBLOCK : kernel_flags & ~O_NONBLOCK;
}

int co__patch_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return co__io_accept4(fd, addr, len, flags, -1);
}
