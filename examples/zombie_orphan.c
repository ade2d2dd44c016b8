/* Zombies and orphans, shown with ps.
 *
 * A zombie is a child that has ended but whose parent has not collected
 * its exit status yet: the kernel keeps its entry (state Z, <defunct>).
 * A child made with plain fork() stays a zombie until the parent calls
 * waitpid; a child cogent started is reaped the moment it ends, joined or
 * not, so it never lingers (and children cogent did not start are left to
 * the program, as the first one shows).
 *
 * An orphan is a child whose parent ended first: it is adopted by init
 * (or by the nearest "subreaper"), which reaps it when it ends. */
#include <cogent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void ps(pid_t pid)
{
    char p[32];
    snprintf(p, sizeof p, "%d", (int)pid);
    const char *argv[] = {"ps", "-o", "pid,ppid,stat,comm", "-p", p, NULL};
    co_process_t *ps = co_process_exec(argv, NULL);
    if (!ps) {
        perror("ps");
        return;
    }
    co_process_join(ps, -1);
    if (co_process_exitcode(ps) != 0) printf("    (no process %d: gone)\n", (int)pid);
    co_process_free(ps);
    fflush(stdout);
}

static int quick(void *arg)
{
    (void)arg;
    return 7;
}

/* The middle process of the orphan demo: starts a grandchild with plain
 * fork and ends at once. */
static int middle(void *arg)
{
    (void)arg;
    pid_t g = fork();
    if (g == 0) {
        printf("  grandchild %d: my parent is %d\n", (int)getpid(), (int)getppid());
        fflush(stdout);
        usleep(400 * 1000); /* the parent ends meanwhile */
        printf("  grandchild %d: my parent ended; now my parent is %d (adopted)\n", (int)getpid(), (int)getppid());
        fflush(stdout);
        _exit(0);
    }
    usleep(100 * 1000);
    printf("  middle %d ends, leaving %d behind\n", (int)getpid(), (int)g);
    fflush(stdout);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order, also through a pipe */
    printf("1. a zombie: a plain fork() child that exits, not waited for\n");
    fflush(stdout);
    pid_t z = fork();
    if (z == 0) _exit(0);
    co_sleep_ms(200);
    ps(z);
    waitpid(z, NULL, 0);
    printf("  after waitpid:\n");
    ps(z);

    printf("2. a child cogent started exits, and is not joined\n");
    co_process_t *c = co_process_new(quick, NULL, NULL);
    co_process_start(c);
    pid_t cp = co_process_pid(c);
    co_sleep_ms(200);
    ps(cp);
    printf("  reaped by cogent as it ended: exit code %d\n", co_process_exitcode(c));
    co_process_free(c);

    printf("3. an orphan: its parent ends first\n");
    fflush(stdout);
    co_process_t *m = co_process_new(middle, NULL, NULL);
    co_process_start(m);
    co_process_join(m, -1);
    co_process_free(m);
    co_sleep_ms(600); /* the grandchild reports, then ends (init reaps it) */
    return 0;
}
