/* greenlet's eat/play: two fibers hand control (and values) back and
 * forth with explicit switches.  Nothing is scheduled; nothing blocks.
 *
 *   Python:                         C with cogent:
 *   g1 = greenlet(eat)              eat_f  = co_fiber_new(eat, NULL, NULL);
 *   g2 = greenlet(play)             play_f = co_fiber_new(play, NULL, NULL);
 *   g1.switch('tom')                co_fiber_switch(eat_f, "tom");
 */
#include <cogent.h>
#include <stdio.h>

static co_fiber_t *eat_f, *play_f;

static void *eat(co_fiber_t *self, void *name)
{
    (void)self;
    printf("%s eat 1\n", (char *)name);
    co_fiber_switch(play_f, name); /* play starts with our value */
    printf("%s eat 2\n", (char *)name);
    co_fiber_switch(play_f, NULL); /* play resumes where it switched away */
    return NULL;
}

static void *play(co_fiber_t *self, void *name)
{
    (void)self;
    printf("%s play 1\n", (char *)name);
    co_fiber_switch(eat_f, NULL);
    printf("%s play 2\n", (char *)name);
    static char done[] = "play is done";
    return done; /* handed to the parent: main */
}

int main(void)
{
    eat_f = co_fiber_new(eat, NULL, NULL);
    play_f = co_fiber_new(play, NULL, NULL);
    if (!eat_f || !play_f) return perror("co_fiber_new"), 1;
    char tom[] = "tom";
    const char *r = co_fiber_switch(eat_f, tom);
    printf("back in main: %s\n", r);
    co_fiber_free(eat_f); /* suspended after "eat 2": freed without resuming */
    co_fiber_free(play_f);
    return 0;
}
