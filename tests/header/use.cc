#include "use.h"

int main()
{
    int r = use_everything();
    if (r) fprintf(stderr, "header check (C++ %ld) failed at step %d\n", (long)__cplusplus, r);
    return r;
}
