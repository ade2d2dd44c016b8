#include "use.h"

int main(void)
{
    int r = use_everything();
    if (r) fprintf(stderr, "header check (C) failed at step %d\n", r);
    return r;
}
