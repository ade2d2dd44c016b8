/* How cogent reports a programming error: a line on stderr, then abort()
 * (a core dump and the debugger's attention, never a silent exit); and
 * lines built without stdio for reports from signal handlers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core.h"
#include "fiber.h"

noreturn void co__panic(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): va_start is above
    va_end(ap);
    fprintf(stderr, "cogent: %s\n", buf);
    fflush(stderr);
    abort();
}

void co__line_str(co__line_t *l, const char *s)
{
    while (*s && l->n < sizeof l->buf - 1) l->buf[l->n++] = *s++;
}

void co__line_uint(co__line_t *l, uint64_t v, int base)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v % (unsigned)base];
        v /= (unsigned)base;
    } while (v);
    while (i > 0 && l->n < sizeof l->buf - 1) l->buf[l->n++] = tmp[--i];
}
