/* A process-shared map of byte strings with a capacity fixed at creation
 * (what multiprocessing's Manager().dict() is used for, without a
 * manager process).
 *
 * Open addressing with linear probing over twice `capacity` entries
 * (so probes stay short and an update always finds a free entry), keys
 * and values stored inline, under the map's robust mutex.  An entry is
 * FREE, WRITING, USED or DEAD (a tombstone).  Writes are made so that a
 * process dying anywhere leaves the map repairable:
 *  - a new key is written into an entry marked WRITING, then marked USED
 *    (the commit);
 *  - a new value for a key already there goes into another entry, and a
 *    journal (the two entries) is written before the swap: mark the new
 *    one USED, the old one DEAD, clear the journal;
 * and the next caller, told EOWNERDEAD, finishes a journaled swap, turns
 * WRITING entries into tombstones and counts the entries again. */
#include <errno.h>
#include <string.h>

#include "pshared.h"

enum { E_FREE = 0, E_WRITING, E_USED, E_DEAD };

typedef struct entry {
    uint32_t state;
    uint32_t hash;
    uint32_t klen, vlen;
    /* key (max_key bytes), then value (max_value bytes) */
} entry_t;

struct co_pmap {
    co__shm_hdr_t hdr;
    pthread_mutex_t m;
    uint64_t capacity, nslots, max_key, max_value, stride;
    uint64_t count;        /* atomic for readers */
    uint64_t j_new, j_old; /* the journal: j_new + 1 (0: empty) */
    uint64_t entries_off;
};

#define ENTRY_ALIGN 64

static size_t entries_off(void)
{
    return (sizeof(co_pmap_t) + ENTRY_ALIGN - 1) & ~(size_t)(ENTRY_ALIGN - 1);
}

static entry_t *at(co_pmap_t *m, uint64_t i)
{
    return (entry_t *)(void *)((char *)m + m->entries_off + i * m->stride);
}

static char *key_of(entry_t *e)
{
    return (char *)(e + 1);
}

static char *val_of(co_pmap_t *m, entry_t *e)
{
    return (char *)(e + 1) + m->max_key;
}

/* FNV-1a, then mixed: keys are short byte strings. */
static uint32_t hash(const void *k, size_t n)
{
    const unsigned char *p = k;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

static void map_init(void *obj, void *arg)
{
    co_pmap_t *m = obj;
    const uint64_t *d = arg;
    co__rmutex_init(&m->m);
    m->capacity = d[0];
    m->nslots = d[1];
    m->max_key = d[2];
    m->max_value = d[3];
    m->stride = d[4];
    m->entries_off = entries_off();
}

co_pmap_t *co_pmap_new(size_t capacity, size_t max_key, size_t max_value, const co_shm_opts_t *opts)
{
    if (capacity == 0 || max_key == 0 || max_key > UINT32_MAX || max_value > UINT32_MAX) return errno = EINVAL, NULL;
    size_t nslots = 2;
    while (nslots < capacity * 2) {
        if (nslots > SIZE_MAX / 4) return errno = EINVAL, NULL;
        nslots *= 2;
    }
    size_t stride = (sizeof(entry_t) + max_key + max_value + 7) & ~(size_t)7;
    if (nslots > (SIZE_MAX - entries_off()) / stride) return errno = EINVAL, NULL;
    uint64_t d[5] = {capacity, nslots, max_key, max_value, stride};
    return co__shm_create(CO__SHM_MAP, entries_off() + nslots * stride, opts, map_init, d);
}

co_pmap_t *co_pmap_open(const char *name)
{
    co_pmap_t *m = co__shm_open(CO__SHM_MAP, name);
    if (m && (m->entries_off != entries_off() || m->nslots == 0 || (m->nslots & (m->nslots - 1)) ||
              m->stride < sizeof(entry_t) + m->max_key + m->max_value ||
              m->nslots > (m->hdr.size - m->entries_off) / m->stride)) {
        co__shm_free(m);
        return errno = EINVAL, NULL;
    }
    return m;
}

void co_pmap_free(co_pmap_t *m)
{
    co__shm_free(m);
}

/* A process died holding the mutex: finish or undo what it was doing. */
static void repair(co_pmap_t *m)
{
    if (m->j_new) {
        entry_t *n = at(m, m->j_new - 1), *o = at(m, m->j_old);
        if (n->state == E_USED)
            o->state = E_DEAD; /* the swap had committed: finish it */
        else
            n->state = E_DEAD; /* it had not: the old value stands */
        m->j_new = 0;
    }
    uint64_t c = 0;
    for (uint64_t i = 0; i < m->nslots; i++) {
        entry_t *e = at(m, i);
        if (e->state == E_WRITING) e->state = E_DEAD;
        if (e->state == E_USED) c++;
    }
    __atomic_store_n(&m->count, c, __ATOMIC_RELAXED);
}

static int enter(co_pmap_t *m, int64_t deadline, const char *what)
{
    int r = co__rmutex_lock(&m->m, deadline, true, false, what);
    if (r == EOWNERDEAD) {
        repair(m);
        r = 0;
    }
    return r;
}

/* The entry holding key, or -1; *free_at gets the first FREE or DEAD
 * entry on its probe path (-1 if none before the key or a FREE one). */
static int64_t find(co_pmap_t *m, const void *key, size_t klen, uint32_t h, int64_t *free_at)
{
    *free_at = -1;
    uint64_t mask = m->nslots - 1;
    for (uint64_t n = 0, i = h & mask; n < m->nslots; n++, i = (i + 1) & mask) {
        entry_t *e = at(m, i);
        if (e->state == E_FREE) {
            if (*free_at < 0) *free_at = (int64_t)i;
            return -1;
        }
        if (e->state != E_USED) {
            if (*free_at < 0) *free_at = (int64_t)i;
            continue;
        }
        if (e->hash == h && e->klen == klen && !memcmp(key_of(e), key, klen)) return (int64_t)i;
    }
    return -1;
}

static void fill(co_pmap_t *m, entry_t *e, const void *key, size_t klen, uint32_t h, const void *val, size_t vlen)
{
    e->state = E_WRITING;
    e->hash = h;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    memcpy(key_of(e), key, klen);
    if (vlen) memcpy(val_of(m, e), val, vlen);
}

int co_pmap_set(co_pmap_t *m, const void *key, size_t klen, const void *val, size_t vlen, int64_t deadline)
{
    CO__CHECK(m != NULL, "co_pmap_set: NULL map");
    if (klen == 0 || !key || (vlen && !val)) return errno = EINVAL, -1;
    if (klen > m->max_key || vlen > m->max_value) return errno = EMSGSIZE, -1;
    int r = enter(m, deadline, "co_pmap_set");
    if (r) return errno = r, -1;
    uint32_t h = hash(key, klen);
    int64_t free_at;
    int64_t old = find(m, key, klen, h, &free_at);
    if (old < 0 && m->count >= m->capacity) {
        co__rmutex_unlock(&m->m);
        return errno = ENOSPC, -1;
    }
    if (free_at < 0) { /* every entry on the path is taken: only for an update (count < nslots / 2) */
        uint64_t mask = m->nslots - 1;
        for (uint64_t i = (uint64_t)(old + 1) & mask;; i = (i + 1) & mask)
            if (at(m, i)->state != E_USED) {
                free_at = (int64_t)i;
                break;
            }
    }
    entry_t *n = at(m, (uint64_t)free_at);
    fill(m, n, key, klen, h, val, vlen);
    if (old < 0) {
        __atomic_store_n(&n->state, E_USED, __ATOMIC_RELEASE); /* the commit */
        __atomic_store_n(&m->count, m->count + 1, __ATOMIC_RELAXED);
    } else {
        m->j_old = (uint64_t)old;
        __atomic_store_n(&m->j_new, (uint64_t)free_at + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&n->state, E_USED, __ATOMIC_RELEASE); /* the commit */
        at(m, (uint64_t)old)->state = E_DEAD;
        m->j_new = 0;
    }
    co__rmutex_unlock(&m->m);
    return 0;
}

ssize_t co_pmap_get(co_pmap_t *m, const void *key, size_t klen, void *buf, size_t cap, int64_t deadline)
{
    CO__CHECK(m != NULL, "co_pmap_get: NULL map");
    if (klen == 0 || !key) return errno = EINVAL, -1;
    if (klen > m->max_key) return errno = ENOENT, -1;
    int r = enter(m, deadline, "co_pmap_get");
    if (r) return errno = r, -1;
    int64_t free_at;
    int64_t i = find(m, key, klen, hash(key, klen), &free_at);
    ssize_t n = -1;
    if (i < 0) {
        r = ENOENT;
    } else {
        entry_t *e = at(m, (uint64_t)i);
        if (e->vlen > cap) {
            r = EMSGSIZE;
        } else {
            if (e->vlen) memcpy(buf, val_of(m, e), e->vlen);
            n = (ssize_t)e->vlen;
        }
    }
    co__rmutex_unlock(&m->m);
    return r ? (errno = r, -1) : n;
}

int co_pmap_del(co_pmap_t *m, const void *key, size_t klen, int64_t deadline)
{
    CO__CHECK(m != NULL, "co_pmap_del: NULL map");
    if (klen == 0 || !key) return errno = EINVAL, -1;
    if (klen > m->max_key) return errno = ENOENT, -1;
    int r = enter(m, deadline, "co_pmap_del");
    if (r) return errno = r, -1;
    int64_t free_at;
    int64_t i = find(m, key, klen, hash(key, klen), &free_at);
    if (i < 0) {
        r = ENOENT;
    } else {
        __atomic_store_n(&at(m, (uint64_t)i)->state, E_DEAD, __ATOMIC_RELEASE);
        __atomic_store_n(&m->count, m->count - 1, __ATOMIC_RELAXED);
    }
    co__rmutex_unlock(&m->m);
    return r ? (errno = r, -1) : 0;
}

ssize_t co_pmap_next(co_pmap_t *m, size_t *cursor, void *key, size_t kcap, int64_t deadline)
{
    CO__CHECK(m != NULL && cursor != NULL, "co_pmap_next: NULL map or cursor");
    int r = enter(m, deadline, "co_pmap_next");
    if (r) return errno = r, -1;
    ssize_t n = -1;
    r = ENOENT;
    for (uint64_t i = *cursor; i < m->nslots; i++) {
        entry_t *e = at(m, i);
        if (e->state != E_USED) continue;
        *cursor = (size_t)i + 1;
        if (e->klen > kcap) {
            r = EMSGSIZE;
        } else {
            memcpy(key, key_of(e), e->klen);
            n = (ssize_t)e->klen;
            r = 0;
        }
        break;
    }
    if (r == ENOENT) *cursor = (size_t)m->nslots;
    co__rmutex_unlock(&m->m);
    return r ? (errno = r, -1) : n;
}

size_t co_pmap_size(const co_pmap_t *m)
{
    return (size_t)__atomic_load_n(&m->count, __ATOMIC_RELAXED);
}
