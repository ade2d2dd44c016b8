/* Shared by the benchmark programs: a nanosecond clock and the one-line
 * result format run.sh parses: "RESULT <name> <value> <unit>". */
#ifndef COGENT_BENCH_H
#define COGENT_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline long bench_arg(int argc, char **argv, long dflt)
{
    return argc > 1 ? atol(argv[1]) : dflt;
}

#define BENCH_RESULT(name, value, unit) printf("RESULT %s %.3f %s\n", (name), (double)(value), (unit))

#endif
