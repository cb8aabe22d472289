/*
 * fuzz_sync_plan.c - the pure sync layer on arbitrary input. The first byte
 * selects the target:
 *   0: lr_sync_conflict_name / lr_sync_is_conflict_copy on a path (the only
 *      parser here: it looks for an existing marker and an extension).
 *      Invariants: a valid path gives a valid path in the same directory,
 *      with a marker, a last component of at most 255 bytes, valid UTF-8 if
 *      the input was, and naming the copy again gives the same name (a copy
 *      of a copy never grows a second marker).
 *   1: lr_plan_build on a chunk list drawn from the input. Invariants: the
 *      ops cover the file in order, runs are maximal, SELF copies only bytes
 *      placed earlier, and the byte counters add up.
 *   2: lr_sync_decide on two records drawn from the input, both ways round.
 *      Invariants: one winner, one copy name and one copy maker whichever
 *      record is local.
 */
#include "index/index.h"
#include "sync/decide.h"
#include "sync/plan.h"
#include "util/str.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void fuzz_name(const uint8_t *d, size_t n)
{
    if (n < 16)
        return;
    int64_t mtime = (int64_t)get64(d);
    uint64_t author = get64(d + 8);
    d += 16;
    n -= 16;
    if (lr_index_path_check(d, n, NULL) != 0) {
        (void)lr_sync_is_conflict_copy(d, n);
        return;
    }
    uint8_t *out = NULL;
    size_t on = 0;
    int rc = lr_sync_conflict_name(d, n, mtime, author, &out, &on, NULL);
    if (rc != 0) {
        if (rc != LR_ETOOBIG || out)
            abort();
        return;
    }
    if (lr_index_path_check(out, on, NULL) != 0 || !lr_sync_is_conflict_copy(out, on))
        abort();
    size_t dir = n;
    while (dir > 0 && d[dir - 1] != '/')
        dir--;
    if (on < dir || memcmp(out, d, dir) != 0 || memchr(out + dir, '/', on - dir))
        abort();
    if (on - dir > LR_SYNC_NAME_MAX)
        abort();
    if (lr_utf8_valid(d, n) && !lr_utf8_valid(out, on))
        abort();
    uint8_t *again = NULL;
    size_t an = 0;
    if (lr_sync_conflict_name(out, on, mtime, author, &again, &an, NULL) != 0)
        abort();
    if (an != on || memcmp(again, out, on) != 0)
        abort();
    free(again);
    free(out);
}

struct fz_world {
    const uint8_t *d;
    size_t n;
};

static int fz_lookup(void *user, const struct lr_hash *h, uint32_t len, struct lr_plan_cand *out)
{
    const struct fz_world *w = user;
    (void)len;
    /* a chunk is "local" when the input says so for its symbol */
    uint8_t s = h->b[0];
    if (w->n == 0 || (w->d[s % w->n] & 1) == 0)
        return 0;
    static const char *names[] = {"a", "b/c", "d"};
    out->path = (const uint8_t *)names[s % 3];
    out->path_len = strlen(names[s % 3]);
    out->off = (uint64_t)s * 4096;
    return 1;
}

static void fuzz_plan(const uint8_t *d, size_t n)
{
    size_t nc = n / 2;
    if (nc > 4096)
        nc = 4096;
    struct lr_chunk *c = calloc(nc ? nc : 1, sizeof(*c));
    if (!c)
        abort();
    for (size_t i = 0; i < nc; i++) {
        memset(&c[i].hash, 0, sizeof(c[i].hash));
        c[i].hash.b[0] = d[2 * i] & 0x1f; /* few symbols: many duplicates */
        c[i].len = (uint32_t)(d[2 * i + 1] & 0x3) + 1;
    }
    struct fz_world w = {d, n};
    struct lr_plan p;
    int rc = lr_plan_build(c, nc, fz_lookup, &w, &p, NULL);
    if (rc != 0)
        abort();
    uint64_t off = 0, sum[3] = {0, 0, 0};
    size_t chunk = 0;
    for (size_t k = 0; k < p.nops; k++) {
        const struct lr_plan_op *o = &p.ops[k];
        if (o->off != off || o->chunk != chunk || o->nchunks == 0)
            abort();
        uint64_t len = 0;
        for (size_t i = o->chunk; i < o->chunk + o->nchunks; i++)
            len += c[i].len;
        if (len != o->len)
            abort();
        if (o->src == LR_PLAN_LOCAL && o->path >= p.npaths)
            abort();
        if (o->src == LR_PLAN_SELF && o->src_off + o->len > o->off)
            abort();
        if (k > 0 && p.ops[k - 1].src == o->src && o->src == LR_PLAN_REMOTE)
            abort();
        sum[o->src] += o->len;
        off += o->len;
        chunk += o->nchunks;
    }
    if (off != p.size || chunk != nc || sum[LR_PLAN_REMOTE] != p.remote_bytes ||
        sum[LR_PLAN_LOCAL] != p.local_bytes || sum[LR_PLAN_SELF] != p.self_bytes)
        abort();
    lr_plan_release(&p);
    free(c);
}

static void rec_from(const uint8_t *d, struct lr_file_rec *r)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)"dir/name.ext";
    r->path_len = 12;
    r->type = (enum lr_ftype)(d[0] % 4 == 3 ? 0 : d[0] % 4);
    r->deleted = (d[0] & 0x10) != 0;
    r->mtime_ns = (int64_t)(d[1] % 4) * 1000000000 - 1;
    r->mode = d[2] & 1 ? 0644 : 0600;
    if (!r->deleted && r->type == LR_FT_FILE) {
        r->size = d[3] % 3;
        r->blocks_hash.b[0] = d[3] % 3;
    }
    if (!r->deleted && r->type == LR_FT_SYMLINK) {
        r->target = (uint8_t *)(d[3] & 1 ? "x" : "y");
        r->target_len = 1;
    }
    for (int i = 0; i < 3; i++)
        if (d[4 + i] % 4)
            lr_vv_set(&r->vv, (uint64_t)i << 62 | 5, d[4 + i] % 4);
}

static void fuzz_decide(const uint8_t *d, size_t n)
{
    if (n < 14)
        return;
    struct lr_file_rec a, b;
    rec_from(d, &a);
    rec_from(d + 7, &b);
    struct lr_sync_decision x, y;
    int ax = lr_sync_decide(&a, &b, &x, NULL);
    int ay = lr_sync_decide(&b, &a, &y, NULL);
    if (ax < 0 || ay < 0)
        abort();
    if ((ax == LR_SYNC_CONFLICT || ax == LR_SYNC_MERGE_VV) && ay != ax)
        abort();
    if (ax == LR_SYNC_TAKE_REMOTE && ay != LR_SYNC_NOTHING)
        abort();
    if (ax == LR_SYNC_CONFLICT) {
        bool a_wins_x = x.apply == LR_SYNC_APPLY_NONE;
        bool a_wins_y = y.apply != LR_SYNC_APPLY_NONE;
        if (a_wins_x != a_wins_y || (x.copy_path == NULL) != (y.copy_path == NULL))
            abort();
        if (x.copy_path &&
            (x.copy_path_len != y.copy_path_len ||
             memcmp(x.copy_path, y.copy_path, x.copy_path_len) != 0 || x.copy_here == y.copy_here))
            abort();
    }
    lr_sync_decision_release(&x);
    lr_sync_decision_release(&y);
    lr_vv_release(&a.vv);
    lr_vv_release(&b.vv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_name(data + 1, size - 1);
        break;
    case 1:
        fuzz_plan(data + 1, size - 1);
        break;
    default:
        fuzz_decide(data + 1, size - 1);
        break;
    }
    return 0;
}
