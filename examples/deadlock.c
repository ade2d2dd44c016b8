/* The two-lock deadlock from the classic lecture, shown instead of hung.
 *
 * Alice takes the fork then the knife; Bob takes the knife then the fork.
 * Each gets its first lock and waits for the other's: a cycle.  cogent
 * sees the cycle when Bob's wait would close it, prints who holds what and
 * where it was taken, and fails Bob's call with EDEADLK; Bob backs off,
 * Alice finishes, then Bob retries and finishes too.
 *
 * Run with COGENT_LOCKDEP=1 as well: the lock-order checker then warns
 * about the inversion even in runs whose timing happens not to deadlock. */
#include <cogent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static co_lock_t fork_ = CO_LOCK_INIT_NAMED("fork"), knife = CO_LOCK_INIT_NAMED("knife");

static void *diner(void *arg)
{
    const char *name = arg;
    bool alice = name[0] == 'a';
    co_lock_t *first = alice ? &fork_ : &knife, *second = alice ? &knife : &fork_;
    const char *first_name = alice ? "fork" : "knife", *second_name = alice ? "knife" : "fork";
    for (;;) {
        co_lock_acquire(first, -1);
        printf("%s has the %s\n", name, first_name);
        co_sleep_ms(10); /* long enough for the other to take its first lock */
        if (co_lock_acquire(second, -1) == 0) {
            printf("%s eats with the %s and the %s\n", name, first_name, second_name);
            co_lock_release(second);
            co_lock_release(first);
            return NULL;
        }
        printf("%s: %s -- putting the %s down and trying again\n", name, strerror(errno), first_name);
        co_lock_release(first);
        co_sleep_ms(20);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* our lines and cogent's report in order */
    static char alice[] = "alice", bob[] = "bob";
    co_spawn_opts_t a = {.name = alice}, b = {.name = bob};
    co_coro_t *cs[2] = {co_spawn_with(diner, alice, &a), co_spawn_with(diner, bob, &b)};
    co_joinall(cs, 2, -1, NULL);
    printf("both ate; no hang\n");
    return 0;
}
