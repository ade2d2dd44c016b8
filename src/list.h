/* The two list shapes cogent needs, intrusive (the node lives inside the
 * element, so linking never allocates) and valid when zero-filled:
 *
 *  - co__list_t: doubly linked, for elements that leave from the middle
 *    (waiters that time out, coroutines that finish, group members).
 *    `struct co__list` itself is declared in cogent.h, because the sync
 *    objects users embed in their own structs hold one.
 *  - co__fifo_t: singly linked, push at the tail and pop at the head (the
 *    run queue, wake lists, job queues): one store less per operation.
 *
 * Neither is thread-safe: whoever owns the list serialises access (the
 * hub's thread, or the spin lock of the object the list belongs to). */
#ifndef COGENT_LIST_H
#define COGENT_LIST_H

#include "core.h"

typedef struct co__lnode {
    struct co__lnode *next, *prev;
} co__lnode_t;
typedef struct co__list co__list_t;

static inline bool co__list_empty(const co__list_t *l)
{
    return l->head == NULL;
}
/* Appends n at the tail. */
static inline void co__list_push(co__list_t *l, co__lnode_t *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}
/* Inserts n at the head. */
static inline void co__list_push_front(co__list_t *l, co__lnode_t *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}
/* Unlinks n, which must be on l. */
static inline void co__list_remove(co__list_t *l, co__lnode_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->next = n->prev = NULL;
}
/* Unlinks and returns the head, or NULL. */
static inline co__lnode_t *co__list_pop(co__list_t *l)
{
    co__lnode_t *n = l->head;
    if (n) co__list_remove(l, n);
    return n;
}

typedef struct co__snode {
    struct co__snode *next;
} co__snode_t;
typedef struct co__fifo {
    co__snode_t *head, *tail;
} co__fifo_t;

static inline bool co__fifo_empty(const co__fifo_t *q)
{
    return q->head == NULL;
}
static inline void co__fifo_push(co__fifo_t *q, co__snode_t *n)
{
    n->next = NULL;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
}
/* Unlinks and returns the head, or NULL. */
static inline co__snode_t *co__fifo_pop(co__fifo_t *q)
{
    co__snode_t *n = q->head;
    if (n) {
        q->head = n->next;
        if (!q->head) q->tail = NULL;
    }
    return n;
}

#endif
