/* The mutex vs recursive lock lesson (threading.Lock vs threading.RLock).
 *
 * A bank account whose deposit() takes the account's lock and whose
 * transfer() takes it too and then calls deposit().  With a plain lock the
 * second acquisition by the same owner would hang forever; cogent refuses
 * it at once with EDEADLK and says where.  With a re-entrant lock the same
 * owner may take it again, and must release it as many times. */
#include <cogent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct account {
    co_lock_t lock;   /* the mutex version */
    co_rlock_t rlock; /* the recursive version */
    long balance;
} account_t;

static int deposit_mutex(account_t *a, long amount)
{
    if (co_lock_acquire(&a->lock, -1) < 0) return -1; /* EDEADLK if we already hold it */
    a->balance += amount;
    co_lock_release(&a->lock);
    return 0;
}

static int transfer_mutex(account_t *a, long amount)
{
    co_lock_acquire(&a->lock, -1);
    int r = deposit_mutex(a, amount); /* takes the same lock again */
    int e = errno;
    co_lock_release(&a->lock);
    errno = e;
    return r;
}

static void deposit_rlock(account_t *a, long amount)
{
    co_rlock_acquire(&a->rlock, -1);
    printf("  deposit holds the rlock %lu time(s)\n", co_rlock_count(&a->rlock));
    a->balance += amount;
    co_rlock_release(&a->rlock);
}

static void transfer_rlock(account_t *a, long amount)
{
    co_rlock_acquire(&a->rlock, -1);
    printf("  transfer holds the rlock %lu time(s)\n", co_rlock_count(&a->rlock));
    deposit_rlock(a, amount); /* the same owner: allowed, count goes to 2 */
    co_rlock_release(&a->rlock);
}

int main(void)
{
    account_t acct = {CO_LOCK_INIT_NAMED("account"), CO_RLOCK_INIT_NAMED("account"), 100};

    setvbuf(stdout, NULL, _IONBF, 0); /* keep our lines and cogent's report in order */
    printf("with a plain lock (threading.Lock):\n");
    if (transfer_mutex(&acct, 50) < 0)
        printf("  transfer failed: %s -- Python would hang here forever\n", strerror(errno));
    printf("  balance %ld (unchanged)\n", acct.balance);

    printf("with a re-entrant lock (threading.RLock):\n");
    transfer_rlock(&acct, 50);
    printf("  balance %ld\n", acct.balance);
    return 0;
}
