/* Small helpers shared by libcogent-http's files (http.c, tls.c). */
#ifndef COGENT_HTTP_UTIL_H
#define COGENT_HTTP_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "cogent.h"

/* Appends n bytes to b, keeping a '\0' after them.  0, or -1 (ENOMEM). */
static inline int co__buf_append(co_buf_t *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static inline void co__buf_free(co_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
