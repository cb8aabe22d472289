/*
 * syncerr.c - the table of failing items (syncerr.h, layer 1).
 *
 * Listed paths sit in a small array per folder (at most `max`, 1000 by
 * default) searched by a 64-bit hash first, which keeps the common calls
 * cheap: clearing a path of a folder with no errors is one folder lookup,
 * and with a full list it is 1000 integer compares. Unlisted failing paths
 * are only a 64-bit FNV-1a hash each, in an open-addressing set with
 * backward-shift deletion (no tombstones, so it never degrades).
 */
#include "daemon/syncerr.h"

#include "util/xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct hset {
    uint64_t *slot; /* 0: empty */
    size_t cap;     /* power of two, or 0 */
    size_t n;
};

struct ferr {
    struct ferr *next;
    char *id;
    struct lr_syncerr_item *items;
    uint64_t *hashes;
    size_t n;
    struct hset more;
    bool armed;
    uint64_t due_ms;
    uint64_t backoff_ms;
};

struct lr_syncerr {
    pthread_mutex_t mu;
    size_t max;
    struct ferr *folders;
};

static uint64_t path_hash(const uint8_t *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h ? h : 1; /* 0 marks an empty slot */
}

/* ---- hash set ---- */

static bool hset_has(const struct hset *s, uint64_t h)
{
    if (!s->cap)
        return false;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->slot[i] == h)
            return true;
        if (s->slot[i] == 0)
            return false;
    }
}

static void hset_insert_raw(struct hset *s, uint64_t h)
{
    size_t i = h & (s->cap - 1);
    while (s->slot[i] != 0 && s->slot[i] != h)
        i = (i + 1) & (s->cap - 1);
    if (s->slot[i] == 0) {
        s->slot[i] = h;
        s->n++;
    }
}

static void hset_add(struct hset *s, uint64_t h)
{
    if (hset_has(s, h))
        return;
    if ((s->n + 1) * 4 > s->cap * 3) { /* keep the load under 3/4 */
        struct hset g = {0};
        g.cap = s->cap ? s->cap * 2 : 64;
        g.slot = lr_xcalloc(g.cap, sizeof(*g.slot));
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                hset_insert_raw(&g, s->slot[i]);
        free(s->slot);
        *s = g;
    }
    hset_insert_raw(s, h);
}

static bool hset_del(struct hset *s, uint64_t h)
{
    if (!s->cap)
        return false;
    size_t mask = s->cap - 1, i = h & mask;
    while (s->slot[i] != h) {
        if (s->slot[i] == 0)
            return false;
        i = (i + 1) & mask;
    }
    /* Backward shift: move later entries of the run into the hole when the
     * hole lies between their home slot and where they sit. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; s->slot[j] != 0; j = (j + 1) & mask) {
        size_t home = s->slot[j] & mask;
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            s->slot[hole] = s->slot[j];
            hole = j;
        }
    }
    s->slot[hole] = 0;
    s->n--;
    return true;
}

static void hset_release(struct hset *s)
{
    free(s->slot);
    memset(s, 0, sizeof(*s));
}

/* ---- folders ---- */

static void item_release(struct lr_syncerr_item *it)
{
    free(it->path);
    free(it->msg);
    memset(it, 0, sizeof(*it));
}

static void ferr_free(struct ferr *f)
{
    for (size_t i = 0; i < f->n; i++)
        item_release(&f->items[i]);
    free(f->items);
    free(f->hashes);
    hset_release(&f->more);
    free(f->id);
    free(f);
}

static struct ferr *ferr_find(struct lr_syncerr *t, const char *folder)
{
    for (struct ferr *f = t->folders; f; f = f->next)
        if (strcmp(f->id, folder) == 0)
            return f;
    return NULL;
}

static struct ferr *ferr_get(struct lr_syncerr *t, const char *folder)
{
    struct ferr *f = ferr_find(t, folder);
    if (f)
        return f;
    f = lr_xcalloc(1, sizeof(*f));
    f->id = lr_xstrdup(folder);
    f->items = lr_xcalloc(t->max, sizeof(*f->items));
    f->hashes = lr_xcalloc(t->max, sizeof(*f->hashes));
    f->backoff_ms = LR_SYNCERR_BACKOFF_MIN_MS;
    f->next = t->folders;
    t->folders = f;
    return f;
}

static size_t item_find(const struct ferr *f, uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->hashes[i] == h && f->items[i].path_len == n && memcmp(f->items[i].path, p, n) == 0)
            return i;
    return SIZE_MAX;
}

static char *msg_copy(const char *msg)
{
    size_t n = strnlen(msg ? msg : "", LR_SYNCERR_MSG_MAX - 1);
    char *s = lr_xmalloc(n + 1);
    memcpy(s, msg ? msg : "", n);
    s[n] = '\0';
    return s;
}

struct lr_syncerr *lr_syncerr_new(size_t max_per_folder)
{
    struct lr_syncerr *t = lr_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->max = max_per_folder ? max_per_folder : 1;
    return t;
}

void lr_syncerr_free(struct lr_syncerr *t)
{
    if (!t)
        return;
    while (t->folders) {
        struct ferr *f = t->folders;
        t->folders = f->next;
        ferr_free(f);
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int lr_syncerr_set(struct lr_syncerr *t, const char *folder, const uint8_t *path, size_t path_len,
                   const char *msg, int64_t now_s)
{
    uint64_t h = path_hash(path, path_len);
    int fresh = 0;
    pthread_mutex_lock(&t->mu);
    struct ferr *f = ferr_get(t, folder);
    size_t i = item_find(f, h, path, path_len);
    if (i != SIZE_MAX) {
        struct lr_syncerr_item *it = &f->items[i];
        free(it->msg);
        it->msg = msg_copy(msg);
        it->last_s = now_s;
        it->attempts++;
    } else if (f->n < t->max) {
        /* An unlisted path that fails again while there is room becomes listed. */
        fresh = !hset_del(&f->more, h);
        struct lr_syncerr_item *it = &f->items[f->n];
        it->path = lr_xmalloc(path_len + 1);
        memcpy(it->path, path, path_len);
        it->path[path_len] = 0;
        it->path_len = path_len;
        it->msg = msg_copy(msg);
        it->since_s = it->last_s = now_s;
        it->attempts = 1;
        f->hashes[f->n++] = h;
    } else {
        fresh = !hset_has(&f->more, h);
        hset_add(&f->more, h);
    }
    pthread_mutex_unlock(&t->mu);
    return fresh;
}

bool lr_syncerr_clear(struct lr_syncerr *t, const char *folder, const uint8_t *path,
                      size_t path_len)
{
    return lr_syncerr_clear_if(t, folder, path, path_len, NULL);
}

bool lr_syncerr_clear_if(struct lr_syncerr *t, const char *folder, const uint8_t *path,
                         size_t path_len, const char *prefix)
{
    bool was = false;
    pthread_mutex_lock(&t->mu);
    struct ferr *f = ferr_find(t, folder);
    if (f && (f->n || f->more.n)) {
        uint64_t h = path_hash(path, path_len);
        size_t i = item_find(f, h, path, path_len);
        if (i != SIZE_MAX && prefix && strncmp(f->items[i].msg, prefix, strlen(prefix)) != 0) {
            /* Failing for another reason: that one clears it. */
        } else if (i != SIZE_MAX) {
            item_release(&f->items[i]);
            f->n--;
            f->items[i] = f->items[f->n];
            f->hashes[i] = f->hashes[f->n];
            memset(&f->items[f->n], 0, sizeof(f->items[f->n]));
            was = true;
        } else if (!prefix) {
            was = hset_del(&f->more, h); /* unlisted: no message to match */
        }
    }
    pthread_mutex_unlock(&t->mu);
    return was;
}

void lr_syncerr_clear_folder(struct lr_syncerr *t, const char *folder)
{
    pthread_mutex_lock(&t->mu);
    for (struct ferr **pp = &t->folders; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, folder) == 0) {
            struct ferr *f = *pp;
            *pp = f->next;
            ferr_free(f);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void lr_syncerr_replace(struct lr_syncerr *dst, const char *folder, struct lr_syncerr *src)
{
    /* Lock order: src before dst (only ever called this way round). */
    pthread_mutex_lock(&src->mu);
    pthread_mutex_lock(&dst->mu);
    struct ferr *s = ferr_find(src, folder);
    struct ferr *d = ferr_get(dst, folder);
    struct lr_syncerr_item *items = lr_xcalloc(dst->max, sizeof(*items));
    uint64_t *hashes = lr_xcalloc(dst->max, sizeof(*hashes));
    size_t n = 0;
    for (size_t i = 0; s && i < s->n && n < dst->max; i++) {
        const struct lr_syncerr_item *si = &s->items[i];
        struct lr_syncerr_item *it = &items[n];
        it->path = lr_xmalloc(si->path_len + 1);
        memcpy(it->path, si->path, si->path_len + 1);
        it->path_len = si->path_len;
        it->msg = lr_xstrdup(si->msg);
        it->since_s = si->since_s;
        it->last_s = si->last_s;
        it->attempts = si->attempts;
        size_t k = item_find(d, s->hashes[i], si->path, si->path_len);
        if (k != SIZE_MAX) {
            it->since_s = d->items[k].since_s;
            it->attempts += d->items[k].attempts;
        }
        hashes[n++] = s->hashes[i];
    }
    for (size_t i = 0; i < d->n; i++)
        item_release(&d->items[i]);
    free(d->items);
    free(d->hashes);
    d->items = items;
    d->hashes = hashes;
    d->n = n;
    hset_release(&d->more);
    for (size_t i = 0; s && i < s->more.cap; i++)
        if (s->more.slot[i])
            hset_add(&d->more, s->more.slot[i]);
    pthread_mutex_unlock(&dst->mu);
    pthread_mutex_unlock(&src->mu);
}

uint64_t lr_syncerr_count(struct lr_syncerr *t, const char *folder)
{
    pthread_mutex_lock(&t->mu);
    struct ferr *f = ferr_find(t, folder);
    uint64_t n = f ? f->n + f->more.n : 0;
    pthread_mutex_unlock(&t->mu);
    return n;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t lr_syncerr_count_common(struct lr_syncerr *a, struct lr_syncerr *b, const char *folder)
{
    /* b's path hashes, copied so that the two locks are never held at once. */
    uint64_t *h = NULL;
    size_t nh = 0;
    pthread_mutex_lock(&b->mu);
    struct ferr *fb = ferr_find(b, folder);
    if (fb && fb->n + fb->more.n) {
        h = lr_xmalloc((fb->n + fb->more.n) * sizeof(*h));
        memcpy(h, fb->hashes, fb->n * sizeof(*h));
        nh = fb->n;
        for (size_t i = 0; i < fb->more.cap; i++)
            if (fb->more.slot[i])
                h[nh++] = fb->more.slot[i];
    }
    pthread_mutex_unlock(&b->mu);
    uint64_t common = 0;
    if (nh) {
        pthread_mutex_lock(&a->mu);
        struct ferr *fa = ferr_find(a, folder);
        if (fa && fa->n + fa->more.n) {
            uint64_t *la = lr_xmalloc((fa->n + 1) * sizeof(*la));
            memcpy(la, fa->hashes, fa->n * sizeof(*la));
            qsort(la, fa->n, sizeof(*la), u64_cmp);
            for (size_t i = 0; i < nh; i++)
                if (hset_has(&fa->more, h[i]) ||
                    (fa->n && bsearch(&h[i], la, fa->n, sizeof(*la), u64_cmp)))
                    common++;
            free(la);
        }
        pthread_mutex_unlock(&a->mu);
    }
    free(h);
    return common;
}

static int item_cmp(const void *a, const void *b)
{
    const struct lr_syncerr_item *x = a, *y = b;
    size_t n = x->path_len < y->path_len ? x->path_len : y->path_len;
    int c = memcmp(x->path, y->path, n);
    if (c)
        return c;
    return x->path_len < y->path_len ? -1 : x->path_len > y->path_len;
}

void lr_syncerr_list(struct lr_syncerr *t, const char *folder, struct lr_syncerr_list *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&t->mu);
    struct ferr *f = ferr_find(t, folder);
    if (f && f->n) {
        out->v = lr_xcalloc(f->n, sizeof(*out->v));
        for (size_t i = 0; i < f->n; i++) {
            const struct lr_syncerr_item *s = &f->items[i];
            struct lr_syncerr_item *d = &out->v[i];
            *d = *s;
            d->path = lr_xmalloc(s->path_len + 1);
            memcpy(d->path, s->path, s->path_len + 1);
            d->msg = lr_xstrdup(s->msg);
        }
        out->n = f->n;
    }
    out->more = f ? f->more.n : 0;
    pthread_mutex_unlock(&t->mu);
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), item_cmp);
}

void lr_syncerr_list_release(struct lr_syncerr_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        item_release(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void folders_push(struct lr_syncerr_folders *out, const char *id)
{
    out->v = lr_xreallocarray(out->v, out->n + 1, sizeof(*out->v));
    out->v[out->n++] = lr_xstrdup(id);
}

void lr_syncerr_folders(struct lr_syncerr *t, struct lr_syncerr_folders *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&t->mu);
    for (struct ferr *f = t->folders; f; f = f->next)
        if (f->n || f->more.n)
            folders_push(out, f->id);
    pthread_mutex_unlock(&t->mu);
}

void lr_syncerr_folders_release(struct lr_syncerr_folders *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i]);
    free(f->v);
    memset(f, 0, sizeof(*f));
}

uint64_t lr_syncerr_schedule(struct lr_syncerr *t, uint64_t now_ms)
{
    uint64_t next = UINT64_MAX;
    pthread_mutex_lock(&t->mu);
    for (struct ferr *f = t->folders; f; f = f->next) {
        if (!f->n && !f->more.n) {
            f->armed = false;
            f->backoff_ms = LR_SYNCERR_BACKOFF_MIN_MS;
            continue;
        }
        if (!f->armed) {
            f->armed = true;
            f->due_ms = now_ms + f->backoff_ms;
        }
        if (f->due_ms < next)
            next = f->due_ms;
    }
    pthread_mutex_unlock(&t->mu);
    return next;
}

void lr_syncerr_take_due(struct lr_syncerr *t, uint64_t now_ms, struct lr_syncerr_folders *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&t->mu);
    for (struct ferr *f = t->folders; f; f = f->next) {
        if (!f->armed || f->due_ms > now_ms)
            continue;
        f->armed = false;
        f->backoff_ms *= 2;
        if (f->backoff_ms > LR_SYNCERR_BACKOFF_MAX_MS)
            f->backoff_ms = LR_SYNCERR_BACKOFF_MAX_MS;
        folders_push(out, f->id);
    }
    pthread_mutex_unlock(&t->mu);
}

uint64_t lr_syncerr_backoff(struct lr_syncerr *t, const char *folder)
{
    pthread_mutex_lock(&t->mu);
    struct ferr *f = ferr_find(t, folder);
    uint64_t b = f ? f->backoff_ms : LR_SYNCERR_BACKOFF_MIN_MS;
    pthread_mutex_unlock(&t->mu);
    return b;
}
