/* The benchmark echo server: listens on 127.0.0.1:PORT, echoes each read
 * back unchanged, one coroutine per connection on one hub, until SIGINT or
 * SIGTERM, then exits 0.  Any load generator can drive it.
 *
 *   echo_server PORT */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>

#include "cogent.h"

static int echo(int fd, void *arg)
{
    (void)arg;
    /* On the coroutine's stack: an idle connection touches none of it. */
    char buf[16384];
    for (;;) {
        ssize_t n = co_recv(fd, buf, sizeof buf, 0, -1);
        if (n <= 0) return n < 0 && errno != ECONNRESET ? errno : 0;
        if (co_write_all(fd, buf, (size_t)n, NULL, -1) < 0) return errno == EPIPE || errno == ECONNRESET ? 0 : errno;
    }
}

/* SIGINT/SIGTERM arrive on a signalfd, read by a coroutine. */
static void *stopper(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    struct signalfd_siginfo si;
    if (sfd >= 0) co_read(sfd, &si, sizeof si, -1);
    co_server_stop(arg, co_now() + 1000);
    if (sfd >= 0) co_close(sfd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    co_server_opts_t o = {.host = "127.0.0.1", .port = atoi(argv[1]), .backlog = 4096};
    co_server_t *s = co_server_new(echo, NULL, &o);
    if (!s) {
        fprintf(stderr, "echo_server: %s\n", co_net_error());
        return 1;
    }
    co_coro_t *st = co_spawn(stopper, s);
    co_server_serve(s);
    co_join(st, -1, NULL);
    co_server_free(s);
    return 0;
}
