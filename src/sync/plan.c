/*
 * plan.c - chunk source plans and the apply order of a pull round
 * (contract in plan.h).
 */
#include "sync/plan.h"

#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

void lr_plan_release(struct lr_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->npaths; i++)
        free(p->paths[i].p);
    free(p->paths);
    free(p->ops);
    memset(p, 0, sizeof(*p));
}

/* ---- distinct chunks ------------------------------------------------------ */

struct key {
    const struct lr_chunk *c;
    size_t idx;
};

static int key_cmp(const void *pa, const void *pb)
{
    const struct key *a = pa, *b = pb;
    int c = memcmp(a->c->hash.b, b->c->hash.b, sizeof(a->c->hash.b));
    if (c)
        return c;
    if (a->c->len != b->c->len)
        return a->c->len < b->c->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* ---- source paths, interned ----------------------------------------------- */

struct path_set {
    struct lr_plan_path *v;
    size_t n, cap;
    size_t *slot; /* open addressing: index + 1, 0 = empty */
    size_t nslot; /* power of two, > 2 n */
};

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static void ps_rehash(struct path_set *s, size_t nslot)
{
    free(s->slot);
    s->slot = lr_xcalloc(nslot, sizeof(s->slot[0]));
    s->nslot = nslot;
    for (size_t i = 0; i < s->n; i++) {
        size_t k = (size_t)fnv1a(s->v[i].p, s->v[i].len) & (nslot - 1);
        while (s->slot[k])
            k = (k + 1) & (nslot - 1);
        s->slot[k] = i + 1;
    }
}

static size_t ps_intern(struct path_set *s, const uint8_t *p, size_t len)
{
    if (2 * (s->n + 1) >= s->nslot)
        ps_rehash(s, s->nslot ? s->nslot * 2 : 16);
    size_t k = (size_t)fnv1a(p, len) & (s->nslot - 1);
    while (s->slot[k]) {
        const struct lr_plan_path *e = &s->v[s->slot[k] - 1];
        if (e->len == len && (len == 0 || memcmp(e->p, p, len) == 0))
            return s->slot[k] - 1;
        k = (k + 1) & (s->nslot - 1);
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4;
        s->v = lr_xreallocarray(s->v, s->cap, sizeof(s->v[0]));
    }
    uint8_t *copy = lr_xmalloc(len + 1);
    if (len)
        memcpy(copy, p, len);
    copy[len] = '\0';
    s->v[s->n].p = copy;
    s->v[s->n].len = len;
    s->slot[k] = ++s->n;
    return s->n - 1;
}

/* ---- build ------------------------------------------------------------------ */

/* Where one target chunk comes from. */
struct res {
    uint64_t off;     /* target offset */
    uint64_t src_off; /* LOCAL: source offset; SELF: target offset of the first copy */
    size_t path;      /* LOCAL */
    size_t first;     /* index of the first chunk with the same (hash, len) */
    enum lr_plan_src src;
};

static void emit(struct lr_plan *p, size_t *cap, const struct res *r, size_t i, uint32_t len)
{
    if (p->nops > 0) {
        struct lr_plan_op *o = &p->ops[p->nops - 1];
        bool join = false;
        if (o->src == r->src) {
            if (r->src == LR_PLAN_REMOTE)
                join = true;
            else if (r->src == LR_PLAN_LOCAL)
                join = o->path == r->path && o->src_off + o->len == r->src_off;
            else
                join = o->src_off + o->len == r->src_off;
        }
        if (join) {
            o->len += len;
            o->nchunks++;
            return;
        }
    }
    if (p->nops == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        p->ops = lr_xreallocarray(p->ops, *cap, sizeof(p->ops[0]));
    }
    struct lr_plan_op *o = &p->ops[p->nops++];
    memset(o, 0, sizeof(*o));
    o->src = r->src;
    o->off = r->off;
    o->len = len;
    o->chunk = i;
    o->nchunks = 1;
    o->path = r->path;
    o->src_off = r->src_off;
}

int lr_plan_build(const struct lr_chunk *chunks, size_t n,
                  int (*lookup)(void *user, const struct lr_hash *h, uint32_t len,
                                struct lr_plan_cand *cand),
                  void *user, struct lr_plan *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (n > LR_INDEX_CHUNKS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "plan: %zu chunks, at most %llu", n,
                          (unsigned long long)LR_INDEX_CHUNKS_MAX);
    uint64_t size = 0;
    for (size_t i = 0; i < n; i++) {
        if (chunks[i].len == 0)
            return lr_err_set(err, LR_EBADVAL, "plan: chunk %zu has length 0", i);
        if (size > UINT64_MAX - chunks[i].len)
            return lr_err_set(err, LR_EBADVAL, "plan: file size overflows");
        size += chunks[i].len;
    }
    if (n == 0)
        return 0;

    int rc = 0;
    struct res *res = lr_xmallocarray(n, sizeof(*res));
    struct key *keys = lr_xmallocarray(n, sizeof(*keys));
    for (size_t i = 0; i < n; i++)
        keys[i] = (struct key){&chunks[i], i};
    qsort(keys, n, sizeof(keys[0]), key_cmp);
    for (size_t i = 0; i < n; i++) {
        bool same =
            i > 0 && keys[i].c->len == keys[i - 1].c->len &&
            memcmp(keys[i].c->hash.b, keys[i - 1].c->hash.b, sizeof(keys[i].c->hash.b)) == 0;
        res[keys[i].idx].first = same ? res[keys[i - 1].idx].first : keys[i].idx;
    }
    free(keys);

    struct lr_plan p = {0};
    struct path_set ps = {0};
    size_t cap = 0;
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        struct res *r = &res[i];
        r->off = off;
        uint32_t len = chunks[i].len;
        if (r->first == i) {
            struct lr_plan_cand cand = {0};
            int found = lookup ? lookup(user, &chunks[i].hash, len, &cand) : 0;
            if (found < 0) {
                rc = lr_err_set(err, found, "plan: chunk %zu: source lookup failed", i);
                goto out;
            }
            if (found > 0 && (!cand.path || cand.path_len == 0)) {
                rc = lr_err_set(err, LR_EUSAGE, "plan: chunk %zu: lookup gave no path", i);
                goto out;
            }
            if (found > 0) {
                r->src = LR_PLAN_LOCAL;
                r->path = ps_intern(&ps, cand.path, cand.path_len);
                r->src_off = cand.off;
            } else {
                r->src = LR_PLAN_REMOTE;
                p.remote_chunks++;
            }
        } else {
            const struct res *f = &res[r->first];
            r->path = f->path;
            if (f->src == LR_PLAN_LOCAL) {
                r->src = LR_PLAN_LOCAL;
                r->src_off = f->src_off;
            } else {
                r->src = LR_PLAN_SELF;
                r->src_off = f->off;
            }
        }
        if (r->src == LR_PLAN_LOCAL)
            p.local_bytes += len;
        else if (r->src == LR_PLAN_REMOTE)
            p.remote_bytes += len;
        else
            p.self_bytes += len;
        emit(&p, &cap, r, i, len);
        off += len;
    }
    p.size = size;
    p.paths = ps.v;
    p.npaths = ps.n;
    ps.v = NULL;
    ps.n = 0;
    *out = p;
    p = (struct lr_plan){0};
out:
    lr_plan_release(&p);
    for (size_t i = 0; i < ps.n; i++)
        free(ps.v[i].p);
    free(ps.v);
    free(ps.slot);
    free(res);
    return rc;
}

/* ---- apply order --------------------------------------------------------------- */

enum lr_sync_phase lr_plan_phase(const struct lr_sync_decision *d)
{
    switch (d->apply) {
    case LR_SYNC_APPLY_NONE:
        return LR_SYNC_PHASE_SKIP;
    case LR_SYNC_APPLY_DELETE:
        return LR_SYNC_PHASE_DELETES;
    case LR_SYNC_APPLY_DIR:
        return LR_SYNC_PHASE_DIRS;
    case LR_SYNC_APPLY_META:
        /* a directory's mode next to its creation; a file's with the files */
        return d->new_type == LR_FT_DIR ? LR_SYNC_PHASE_DIRS : LR_SYNC_PHASE_FILES;
    case LR_SYNC_APPLY_FILE:
    case LR_SYNC_APPLY_SYMLINK:
        if ((d->flags & LR_SYNC_F_REPLACE_TYPE) && d->old_live && d->old_type == LR_FT_DIR)
            return LR_SYNC_PHASE_AFTER;
        return LR_SYNC_PHASE_FILES;
    case LR_SYNC_APPLY_RECORD:
        return LR_SYNC_PHASE_FILES;
    }
    return LR_SYNC_PHASE_SKIP;
}

struct ord_item {
    struct lr_sync_item it;
    size_t idx;
    enum lr_sync_phase phase;
};

static int ord_cmp(const void *pa, const void *pb)
{
    const struct ord_item *a = pa, *b = pb;
    if (a->phase != b->phase)
        return a->phase < b->phase ? -1 : 1;
    int c = lr_index_path_cmp(a->it.path, a->it.path_len, b->it.path, b->it.path_len);
    if (a->phase == LR_SYNC_PHASE_DELETES)
        c = -c;
    if (c)
        return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

size_t lr_plan_order(struct lr_sync_item *items, size_t n)
{
    if (n == 0)
        return 0;
    struct ord_item *v = lr_xmallocarray(n, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        v[i].it = items[i];
        v[i].idx = i;
        v[i].phase = lr_plan_phase(items[i].d);
    }
    qsort(v, n, sizeof(v[0]), ord_cmp);
    size_t work = 0;
    for (size_t i = 0; i < n; i++) {
        items[i] = v[i].it;
        if (v[i].phase != LR_SYNC_PHASE_SKIP)
            work++;
    }
    free(v);
    return work;
}
