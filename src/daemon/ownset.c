/*
 * ownset.c - recently written paths, an open-addressing hash set (ownset.h).
 */
#include "daemon/ownset.h"

#include "hash/hash.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define OWNSET_MIN 64

static uint64_t key_of(const void *p, size_t len)
{
    uint64_t k = lr_weak64(p, len);
    return k ? k : 1; /* 0 marks an empty slot */
}

static size_t slot(const struct lr_ownset *s, uint64_t k)
{
    size_t i = (size_t)(k ^ (k >> 29)) & (s->cap - 1);
    while (s->v[i].key && s->v[i].key != k)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static void put(struct lr_ownset *s, const struct lr_ownset_entry *e)
{
    size_t i = slot(s, e->key);
    s->n += !s->v[i].key;
    s->v[i] = *e;
}

/* Room for one more at most half full: stale entries go first, then the
 * table doubles if the live ones still fill half of it. */
static void make_room(struct lr_ownset *s, uint64_t now_ms, uint64_t keep_ms)
{
    if (s->cap && (s->n + 1) * 2 <= s->cap)
        return;
    size_t live = 0;
    for (size_t i = 0; i < s->cap; i++)
        live += s->v[i].key && s->v[i].at + keep_ms >= now_ms;
    size_t cap = OWNSET_MIN;
    while (cap < (live + 1) * 4)
        cap *= 2;
    struct lr_ownset t = {.v = lr_xcalloc(cap, sizeof(*t.v)), .cap = cap};
    for (size_t i = 0; i < s->cap; i++)
        if (s->v[i].key && s->v[i].at + keep_ms >= now_ms)
            put(&t, &s->v[i]);
    lr_ownset_free(s);
    *s = t;
}

void lr_ownset_note(struct lr_ownset *s, const uint8_t *path, size_t len, uint64_t ino,
                    int64_t ctime_ns, uint64_t now_ms, uint64_t keep_ms)
{
    /* The path, then each directory above it: "a/b/c", "a/b", "a". */
    for (size_t l = len; l > 0;) {
        make_room(s, now_ms, keep_ms);
        struct lr_ownset_entry e = {.key = key_of(path, l), .at = now_ms};
        if (l == len) {
            e.ino = ino;
            e.ctime_ns = ctime_ns;
        }
        put(s, &e);
        while (l > 0 && path[l - 1] != '/')
            l--;
        if (l > 0)
            l--; /* drop the '/' */
    }
}

void lr_ownset_set(struct lr_ownset *s, const uint8_t *path, size_t len, uint64_t ino,
                   int64_t ctime_ns, uint64_t now_ms, uint64_t keep_ms)
{
    make_room(s, now_ms, keep_ms);
    struct lr_ownset_entry e = {
        .key = key_of(path, len), .at = now_ms, .ino = ino, .ctime_ns = ctime_ns};
    put(s, &e);
}

struct lr_ownset_entry *lr_ownset_get(struct lr_ownset *s, const char *path, uint64_t since_ms)
{
    if (!s->cap)
        return NULL;
    struct lr_ownset_entry *e = &s->v[slot(s, key_of(path, strlen(path)))];
    return e->key && e->at >= since_ms ? e : NULL;
}

void lr_ownset_free(struct lr_ownset *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}
