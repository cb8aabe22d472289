/*
 * test_engine_many.c - sync engine scenarios with three or more devices,
 * ignores and the one-way folder modes (issue #5's "engine unit tests"):
 * relay through a middle device, swarming across peers with one leaving,
 * crossing changes, ignores, send-only and receive-only.
 *
 * Each device has a real SQLite index (mkdtemp). Indexes travel through the
 * real INDEX codec (lr_proto_index_batch_* then lr_proto_index_decode) and
 * are stored with lr_index_remote_*; what to fetch comes from the real need
 * list, each path is decided by lr_sync_decide_with, chunk requests are
 * scheduled by the real lr_xs scheduler, ignore rules by lr_ignore_match and
 * receive-only's "own version" rule by daemon_modes_own_version. The driver
 * around them (src/daemon/sync.c send_work, syncpull.c pull_work) is a small
 * model here, not a mirror: one burst per link, one pull pass, deletes last
 * and deepest first, "the disk" is the local records (as in test_engine.c,
 * whose fixture is not shared: it is that file's own mirror of the driver).
 *
 * Every scenario checks outcomes that a wrong decision would change: which
 * version each device ends with (content and version vector), who holds
 * what, what is never sent or never applied, and that after convergence a
 * further exchange sends nothing and bumps no sequence (no update bouncing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon/modes.h"
#include "hash/hash.h"
#include "identity/identity.h"
#include "ignore/ignore.h"
#include "index/index.h"
#include "proto/proto.h"
#include "sync/decide.h"
#include "sync/xfer.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FOLDER "many"
#define NS INT64_C(1000000000)
#define T0 UINT64_C(1700000000)
#define MAXDEV 4
#define LIST_MAX 100000

enum mode { M_SEND_RECEIVE, M_SEND_ONLY, M_RECEIVE_ONLY };

struct dev {
    char name;
    char dir[64], db[128];
    struct lr_index *ix;
    struct lr_device_id id;
    uint64_t short_id;
    uint64_t now_s; /* this device's clock for local changes */
    enum mode mode;
    struct lr_ignore *ig; /* NULL: no rules file */
    uint64_t ignored;     /* needed paths the last pull skipped as ignored */
};

struct net {
    struct dev d[MAXDEV];
    size_t n;
    bool link[MAXDEV][MAXDEV];
    uint64_t sent, applied; /* records sent / paths applied by the last round */
};

static void net_open(struct net *net, size_t n)
{
    memset(net, 0, sizeof(*net));
    net->n = n;
    for (size_t k = 0; k < n; k++) {
        struct dev *d = &net->d[k];
        d->name = (char)('A' + k);
        char dir[sizeof(d->dir)] = "/tmp/lr-test-many-XXXXXX";
        assert_non_null(mkdtemp(dir));
        memcpy(d->dir, dir, sizeof(dir));
        snprintf(d->db, sizeof(d->db), "%s/index.db", dir);
        for (size_t i = 0; i < sizeof(d->id.b); i++)
            d->id.b[i] = (uint8_t)(0x11 * (k + 1) + i * 13);
        d->short_id = lr_device_id_u64(&d->id);
        d->now_s = T0;
        struct lr_err err = {0};
        assert_int_equal(lr_index_open(d->db, &d->ix, &err), 0);
        assert_int_equal(lr_index_folder_ensure(d->ix, FOLDER, d->short_id, NULL, &err), 0);
    }
}

static void net_close(struct net *net)
{
    for (size_t k = 0; k < net->n; k++) {
        struct dev *d = &net->d[k];
        lr_index_close(d->ix);
        lr_ignore_free(d->ig);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
        assert_int_equal(system(cmd), 0);
    }
}

static void link_set(struct net *net, size_t a, size_t b, bool up)
{
    net->link[a][b] = net->link[b][a] = up;
}

/* ---- local changes (what the scanner records) ------------------------------------- */

/* Chunk symbol s: a chunk of its own length and hash. */
static uint32_t sym_len(uint32_t s)
{
    return 1000 + (s % 53) * 17;
}

static void sym_hash(uint32_t s, struct lr_hash *h)
{
    char tag[32];
    int n = snprintf(tag, sizeof(tag), "many-symbol-%u", s);
    lr_sha256(tag, (size_t)n, h);
}

static void rec_base(struct lr_file_rec *r, const char *path, enum lr_ftype t, uint64_t mtime_s)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)lr_xstrdup(path);
    r->path_len = strlen(path);
    r->type = t;
    r->mtime_ns = (int64_t)mtime_s * NS;
    r->mode = t == LR_FT_DIR ? 0755 : 0644;
}

/* A local change of r->path (r is consumed): the old vector bumped by this device. */
static void local_put(struct dev *d, struct lr_file_rec *r)
{
    struct lr_file_rec old;
    int rc = lr_index_file_get(d->ix, FOLDER, r->path, r->path_len, 0, &old, NULL);
    assert_true(rc == 0 || rc == LR_ENOTFOUND);
    lr_vv_release(&r->vv);
    assert_int_equal(lr_sync_local_change(rc == 0 ? &old.vv : NULL, d->short_id, d->now_s, &r->vv),
                     0);
    if (rc == 0)
        lr_file_rec_release(&old);
    assert_int_equal(lr_index_file_put(d->ix, FOLDER, r, NULL, NULL), 0);
    lr_file_rec_release(r);
}

/* A file of n chunks: symbols seed*100 .. seed*100 + n - 1, mtime = the device's clock. */
static void w_file(struct dev *d, const char *path, uint32_t seed, size_t n)
{
    struct lr_file_rec r;
    rec_base(&r, path, LR_FT_FILE, d->now_s);
    r.chunks = lr_xcalloc(n ? n : 1, sizeof(*r.chunks));
    r.nchunks = n;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = seed * 100 + (uint32_t)i;
        r.chunks[i].off = r.size;
        r.chunks[i].len = sym_len(s);
        sym_hash(s, &r.chunks[i].hash);
        r.size += r.chunks[i].len;
    }
    lr_index_blocks_hash(r.chunks, n, &r.blocks_hash);
    local_put(d, &r);
}

static void w_dir(struct dev *d, const char *path)
{
    struct lr_file_rec r;
    rec_base(&r, path, LR_FT_DIR, T0);
    local_put(d, &r);
}

static void w_del(struct dev *d, const char *path)
{
    struct lr_file_rec old, r;
    assert_int_equal(
        lr_index_file_get(d->ix, FOLDER, (const uint8_t *)path, strlen(path), 0, &old, NULL), 0);
    assert_false(old.deleted);
    rec_base(&r, path, old.type, d->now_s);
    r.deleted = true;
    lr_file_rec_release(&old);
    local_put(d, &r);
}

/* The blocks hash a file of w_file(seed, n) has. */
static struct lr_hash content(uint32_t seed, size_t n)
{
    struct lr_chunk c[64];
    assert_true(n <= 64);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = seed * 100 + (uint32_t)i;
        c[i].off = off;
        c[i].len = sym_len(s);
        sym_hash(s, &c[i].hash);
        off += c[i].len;
    }
    struct lr_hash h;
    lr_index_blocks_hash(c, n, &h);
    return h;
}

static int get(struct dev *d, const char *path, struct lr_file_rec *out)
{
    return lr_index_file_get(d->ix, FOLDER, (const uint8_t *)path, strlen(path), LR_IX_CHUNKS, out,
                             NULL);
}

/* Live with exactly that content? */
static bool has_content(struct dev *d, const char *path, struct lr_hash h)
{
    struct lr_file_rec r;
    if (get(d, path, &r) != 0)
        return false;
    bool ok = !r.deleted && r.type == LR_FT_FILE && memcmp(r.blocks_hash.b, h.b, LR_HASH_LEN) == 0;
    lr_file_rec_release(&r);
    return ok;
}

static bool is_live(struct dev *d, const char *path)
{
    struct lr_file_rec r;
    if (get(d, path, &r) != 0)
        return false;
    bool live = !r.deleted;
    lr_file_rec_release(&r);
    return live;
}

static uint64_t max_seq(struct dev *d)
{
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(d->ix, FOLDER, &fi, NULL), 0);
    return fi.max_seq;
}

/* Needed paths minus the ignored ones (what status and sync --wait count). */
static uint64_t need_items(struct dev *d)
{
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(d->ix, FOLDER, &ns, NULL), 0);
    return ns.items - (d->ignored < ns.items ? d->ignored : ns.items);
}

/* Live paths containing the conflict-copy marker. */
static size_t conflict_copies(struct dev *d, char *first, size_t cap)
{
    struct lr_file_list l = {0};
    assert_int_equal(lr_index_list_by_path(d->ix, FOLDER, NULL, 0, LIST_MAX, 0, &l, NULL), 0);
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (!l.v[i].deleted && strstr((const char *)l.v[i].path, ".sync-conflict-")) {
            if (n++ == 0 && first)
                snprintf(first, cap, "%s", (const char *)l.v[i].path);
        }
    }
    lr_file_list_release(&l);
    return n;
}

/* Same live entries (path, type, content) with equal vectors on both devices. */
static void assert_same_tree(struct dev *a, struct dev *b)
{
    struct lr_file_list la = {0}, lb = {0};
    assert_int_equal(lr_index_list_by_path(a->ix, FOLDER, NULL, 0, LIST_MAX, 0, &la, NULL), 0);
    assert_int_equal(lr_index_list_by_path(b->ix, FOLDER, NULL, 0, LIST_MAX, 0, &lb, NULL), 0);
    size_t i = 0, j = 0;
    for (;;) {
        while (i < la.n && la.v[i].deleted)
            i++;
        while (j < lb.n && lb.v[j].deleted)
            j++;
        if (i == la.n || j == lb.n)
            break;
        const struct lr_file_rec *x = &la.v[i], *y = &lb.v[j];
        if (x->path_len != y->path_len || memcmp(x->path, y->path, x->path_len) != 0)
            fail_msg("%c has %s, %c has %s", a->name, (const char *)x->path, b->name,
                     (const char *)y->path);
        if (x->type != y->type || !lr_vv_equal(&x->vv, &y->vv) ||
            (x->type == LR_FT_FILE && memcmp(x->blocks_hash.b, y->blocks_hash.b, LR_HASH_LEN)))
            fail_msg("%s differs between %c and %c", (const char *)x->path, a->name, b->name);
        i++;
        j++;
    }
    if (i < la.n || j < lb.n)
        fail_msg("%c and %c: one has more live entries (%s)", a->name, b->name,
                 i < la.n ? (const char *)la.v[i].path : (const char *)lb.v[j].path);
    lr_file_list_release(&la);
    lr_file_list_release(&lb);
}

/* ---- index exchange: tx's new records to rx, through the INDEX codec --------------- */

static uint64_t send_index(struct dev *tx, struct dev *rx)
{
    struct lr_folder_info info;
    struct lr_remote_state rs;
    struct lr_err err = {0};
    assert_int_equal(lr_index_folder_get(tx->ix, FOLDER, &info, &err), 0);
    /* What rx holds of tx's index: what its FOLDERS would tell tx. */
    assert_int_equal(lr_index_remote_state(rx->ix, FOLDER, &tx->id, &rs, &err), 0);
    bool full = lr_proto_index_full_needed(info.index_id, info.max_seq, rs.index_id, rs.max_seq);
    if (!full && rs.max_seq >= info.max_seq)
        return 0;
    struct lr_file_list list = {0};
    assert_int_equal(lr_index_list_by_seq(tx->ix, FOLDER, full ? 1 : rs.max_seq + 1, LIST_MAX,
                                          LR_IX_CHUNKS, &list, &err),
                     0);
    struct lr_proto_index_batch batch;
    assert_int_equal(lr_proto_index_batch_init(&batch, FOLDER, info.index_id, 0, 0), 0);
    uint64_t n = 0;
    for (size_t i = 0; i < list.n; i++) {
        /* Receive-only: our own versions never leave (docs/modes.md). */
        if (tx->mode == M_RECEIVE_ONLY &&
            daemon_modes_own_version(tx->ix, FOLDER, &list.v[i], tx->short_id))
            continue;
        size_t next_block = 0;
        assert_int_equal(lr_proto_index_batch_add(&batch, &list.v[i], &next_block), 0);
        n++;
    }
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_INDEX_MAX);
    assert_int_equal(lr_proto_index_batch_finish(
                         &batch, (full ? LR_PROTO_INDEX_FIRST : 0) | LR_PROTO_INDEX_LAST, &b),
                     0);
    struct lr_proto_index msg = {0};
    assert_int_equal(lr_proto_index_decode(b.data, b.len, NULL, &msg, &err), 0);
    assert_int_equal(msg.n, n);
    assert_int_equal(lr_index_begin(rx->ix, &err), 0);
    if (full)
        assert_int_equal(lr_index_remote_full_begin(rx->ix, FOLDER, &tx->id, info.index_id, &err),
                         0);
    for (size_t i = 0; i < msg.n; i++) {
        struct lr_remote_rec r;
        memset(&r, 0, sizeof(r));
        r.rec = msg.v[i].rec;
        r.wire_type = msg.v[i].wire_type;
        r.blk_total = msg.v[i].blk_total;
        r.blk_first = msg.v[i].blk_first;
        assert_int_equal(lr_index_remote_put(rx->ix, FOLDER, &tx->id, info.index_id, &r, &err), 0);
    }
    assert_int_equal(lr_index_remote_burst_end(rx->ix, FOLDER, &tx->id, info.index_id, NULL, &err),
                     0);
    assert_int_equal(lr_index_commit(rx->ix, &err), 0);
    lr_proto_index_release(&msg);
    lr_buf_release(&b);
    lr_proto_index_batch_release(&batch);
    lr_file_list_release(&list);
    return n;
}

/* ---- pull: decide every needed path, apply (the disk is the local records) ---------- */

static bool holder_linked(struct net *net, size_t self, const struct lr_need_cand *c)
{
    for (size_t h = 0; h < c->nholders; h++)
        for (size_t k = 0; k < net->n; k++)
            if (net->link[self][k] && lr_device_id_eq(&net->d[k].id, &c->holders[h]))
                return true;
    return false;
}

/* A live local record strictly below `path` (a directory that is not empty). */
static bool live_below(struct dev *d, const uint8_t *path, size_t len)
{
    struct lr_file_list l = {0};
    assert_int_equal(lr_index_list_by_path(d->ix, FOLDER, path, len, 1000, 0, &l, NULL), 0);
    bool found = false;
    for (size_t i = 0; i < l.n && !found; i++) {
        const struct lr_file_rec *r = &l.v[i];
        if (r->path_len <= len || r->path[len] != '/' || memcmp(r->path, path, len) != 0)
            break;
        found = !r->deleted;
    }
    lr_file_list_release(&l);
    return found;
}

static void store(struct dev *d, const struct lr_file_rec *src, const struct lr_vv *vv)
{
    struct lr_file_rec r = *src;
    r.vv = *vv;
    r.inode = 0;
    r.ctime_ns = 0;
    if (r.deleted || r.type != LR_FT_FILE) {
        r.chunks = NULL;
        r.nchunks = 0;
        r.size = 0;
    }
    struct lr_err err = {0};
    if (lr_index_file_put(d->ix, FOLDER, &r, NULL, &err) != 0)
        fail_msg("%c: storing %s: %s", d->name, (const char *)src->path, err.msg);
}

/* Apply one decision; false if it must wait (not stored, decided again later). */
static bool apply(struct net *net, size_t self, const struct lr_need *n,
                  const struct lr_file_rec *local, const struct lr_sync_decision *dec)
{
    struct dev *d = &net->d[self];
    const struct lr_need_cand *c = &n->cand[0];
    if (dec->apply == LR_SYNC_APPLY_FILE && !holder_linked(net, self, c))
        return false; /* nobody connected can serve the chunks */
    if (dec->apply == LR_SYNC_APPLY_DELETE && local && !local->deleted &&
        local->type == LR_FT_DIR && live_below(d, n->path, n->path_len))
        return false; /* lr_store_delete: -ENOTEMPTY */
    if (dec->copy_here) {
        /* The local loser moves to the copy name: a local change there. */
        struct lr_file_rec cp;
        assert_int_equal(get(d, (const char *)n->path, &cp), 0);
        free(cp.path);
        cp.path = (uint8_t *)lr_xstrdup((const char *)dec->copy_path);
        cp.path_len = dec->copy_path_len;
        local_put(d, &cp);
    }
    store(d, dec->from_remote ? &c->r.rec : local, &dec->vv);
    return true;
}

static uint64_t pull(struct net *net, size_t self)
{
    struct dev *d = &net->d[self];
    d->ignored = 0;
    if (d->mode == M_SEND_ONLY)
        return 0; /* the puller is never started for a send-only folder */
    struct lr_need_list nl = {0};
    assert_int_equal(lr_index_need_list(d->ix, FOLDER, NULL, 0, LIST_MAX, LR_IX_CHUNKS, &nl, NULL),
                     0);
    uint64_t applied = 0;
    /* Pass 0: all but deletes, in path order; pass 1: deletes, deepest first. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < nl.n; k++) {
            size_t i = pass == 0 ? k : nl.n - 1 - k;
            const struct lr_need *n = &nl.v[i];
            const struct lr_remote_rec *r = &n->cand[0].r;
            if (lr_ignore_match(d->ig, (const char *)n->path, n->path_len,
                                r->rec.type == LR_FT_DIR)) {
                d->ignored += pass == 0;
                continue;
            }
            struct lr_file_rec local;
            int rc = get(d, (const char *)n->path, &local);
            assert_true(rc == 0 || rc == LR_ENOTFOUND);
            struct lr_sync_decision dec;
            assert_true(lr_sync_decide_with(rc == 0 ? &local : NULL, &r->rec, NULL, &dec, NULL) >=
                        0);
            bool del = dec.apply == LR_SYNC_APPLY_DELETE;
            if (dec.apply != LR_SYNC_APPLY_NONE && !(dec.flags & LR_SYNC_F_INCONSISTENT) &&
                (pass == 1) == del && apply(net, self, n, rc == 0 ? &local : NULL, &dec))
                applied++;
            lr_sync_decision_release(&dec);
            if (rc == 0)
                lr_file_rec_release(&local);
        }
    }
    lr_need_list_release(&nl);
    return applied;
}

/* One round: every link sends both ways, then every device pulls. */
static void round_once(struct net *net)
{
    net->sent = net->applied = 0;
    for (size_t a = 0; a < net->n; a++)
        for (size_t b = 0; b < net->n; b++)
            if (net->link[a][b])
                net->sent += send_index(&net->d[a], &net->d[b]);
    for (size_t a = 0; a < net->n; a++)
        net->applied += pull(net, a);
}

/* Rounds until nothing is sent or applied; then one more must change no sequence. */
static void settle(struct net *net)
{
    int rounds = 0;
    do {
        round_once(net);
        if (++rounds > 12)
            fail_msg("no convergence after 12 rounds (sent %llu, applied %llu)",
                     (unsigned long long)net->sent, (unsigned long long)net->applied);
    } while (net->sent || net->applied);
    uint64_t seq[MAXDEV];
    for (size_t k = 0; k < net->n; k++)
        seq[k] = max_seq(&net->d[k]);
    round_once(net);
    assert_int_equal(net->sent, 0);
    assert_int_equal(net->applied, 0);
    for (size_t k = 0; k < net->n; k++)
        assert_int_equal(max_seq(&net->d[k]), seq[k]);
}

/* The need entry for `path` at device d (caller releases *nl); NULL if not needed. */
static const struct lr_need *need_of(struct dev *d, const char *path, struct lr_need_list *nl)
{
    memset(nl, 0, sizeof(*nl));
    assert_int_equal(lr_index_need_list(d->ix, FOLDER, NULL, 0, LIST_MAX, LR_IX_CHUNKS, nl, NULL),
                     0);
    for (size_t i = 0; i < nl->n; i++)
        if (nl->v[i].path_len == strlen(path) && memcmp(nl->v[i].path, path, strlen(path)) == 0)
            return &nl->v[i];
    return NULL;
}

static void setup_log(void)
{
    lr_log_set_level(LR_LOG_ERROR);
}

/* ---- scenarios ----------------------------------------------------------------------- */

/*
 * A-B-C, A and C not connected: A's changes reach C through B with A's
 * vector untouched (B re-announces, never re-versions), C's edit reaches A
 * the same way and supersedes A's version, A's delete reaches C.
 */
static void test_relay_through_middle(void **state)
{
    (void)state;
    setup_log();
    struct net net;
    net_open(&net, 3);
    struct dev *a = &net.d[0], *b = &net.d[1], *c = &net.d[2];
    link_set(&net, 0, 1, true);
    link_set(&net, 1, 2, true);
    w_dir(a, "d");
    w_file(a, "d/x", 1, 3);
    w_file(a, "y", 2, 2);

    /* Step by step: C learns y from B only, before it has it. */
    send_index(a, b);
    pull(&net, 1);
    assert_true(has_content(b, "y", content(2, 2)));
    send_index(b, c);
    struct lr_need_list nl;
    const struct lr_need *n = need_of(c, "y", &nl);
    assert_non_null(n);
    assert_int_equal(n->ncand, 1);
    assert_int_equal(n->cand[0].nholders, 1);
    assert_true(lr_device_id_eq(&n->cand[0].holders[0], &b->id));
    lr_need_list_release(&nl);
    settle(&net);

    struct lr_file_rec ra, rc;
    assert_int_equal(get(a, "y", &ra), 0);
    assert_int_equal(get(c, "y", &rc), 0);
    assert_true(lr_vv_equal(&ra.vv, &rc.vv)); /* the original vector, through B */
    assert_int_equal(lr_vv_get(&rc.vv, b->short_id), 0);
    assert_int_equal(lr_vv_get(&rc.vv, c->short_id), 0);
    lr_file_rec_release(&rc);
    assert_true(has_content(c, "d/x", content(1, 3)));
    assert_true(is_live(c, "d"));
    assert_same_tree(a, c);
    assert_same_tree(b, c);

    /* C's edit goes back to A through B and supersedes A's version. */
    c->now_s = T0 + 50;
    w_file(c, "y", 3, 4);
    settle(&net);
    assert_true(has_content(a, "y", content(3, 4)));
    struct lr_file_rec ra2;
    assert_int_equal(get(a, "y", &ra2), 0);
    assert_int_equal(lr_vv_compare(&ra2.vv, &ra.vv), LR_VV_GREATER);
    lr_file_rec_release(&ra2);
    lr_file_rec_release(&ra);

    /* A's delete reaches C. */
    a->now_s = T0 + 60;
    w_del(a, "d/x");
    settle(&net);
    assert_false(is_live(c, "d/x"));
    assert_true(is_live(c, "d"));
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(conflict_copies(&net.d[k], NULL, 0), 0);
        assert_int_equal(need_items(&net.d[k]), 0);
    }
    assert_same_tree(a, b);
    assert_same_tree(a, c);
    net_close(&net);
}

/* Answer WANTs from each holder's own records, as a serving peer does. */
static bool serve(struct dev *holder, const char *path, size_t chunk, const struct lr_hash *want)
{
    struct lr_file_rec r;
    if (get(holder, path, &r) != 0)
        return false;
    bool ok = !r.deleted && chunk < r.nchunks &&
              memcmp(r.chunks[chunk].hash.b, want->b, LR_HASH_LEN) == 0;
    lr_file_rec_release(&r);
    return ok;
}

/*
 * A and B hold version 2 of big.bin, D still version 1: C's need names A and
 * B as holders (not D), the scheduler spreads chunks over both, B leaves
 * with requests outstanding, A serves the rest, and C commits version 2.
 */
static void test_swarm_one_leaves(void **state)
{
    (void)state;
    setup_log();
    struct net net;
    net_open(&net, 4);
    struct dev *a = &net.d[0], *b = &net.d[1], *c = &net.d[2], *d = &net.d[3];
    enum { NCH = 24 };
    link_set(&net, 0, 1, true);
    link_set(&net, 0, 3, true);
    w_file(a, "big.bin", 10, NCH);
    settle(&net);
    assert_true(has_content(d, "big.bin", content(10, NCH)));
    link_set(&net, 0, 3, false);
    a->now_s = T0 + 10;
    w_file(a, "big.bin", 11, NCH);
    settle(&net);
    assert_true(has_content(b, "big.bin", content(11, NCH)));
    assert_true(has_content(d, "big.bin", content(10, NCH)));

    /* C connects to all three; their indexes arrive before it pulls. */
    link_set(&net, 2, 0, true);
    link_set(&net, 2, 1, true);
    link_set(&net, 2, 3, true);
    send_index(a, c);
    send_index(b, c);
    send_index(d, c);
    struct lr_need_list nl;
    const struct lr_need *n = need_of(c, "big.bin", &nl);
    assert_non_null(n);
    assert_int_equal(n->ncand, 1);
    const struct lr_need_cand *cand = &n->cand[0];
    assert_memory_equal(cand->r.rec.blocks_hash.b, content(11, NCH).b, LR_HASH_LEN);
    assert_int_equal(cand->nholders, 2);
    bool ha = false, hb = false;
    for (size_t i = 0; i < cand->nholders; i++) {
        ha |= lr_device_id_eq(&cand->holders[i], &a->id);
        hb |= lr_device_id_eq(&cand->holders[i], &b->id);
        assert_false(lr_device_id_eq(&cand->holders[i], &d->id));
    }
    assert_true(ha && hb);
    assert_int_equal(cand->r.rec.nchunks, NCH);

    uint32_t lens[NCH];
    for (size_t i = 0; i < NCH; i++)
        lens[i] = cand->r.rec.chunks[i].len;
    struct lr_xs_limits lim = {
        .wants_max = 3, .bytes_max = 1 << 20, .failures_max = 4, .blocked_max = 8};
    struct lr_xs *xs = lr_xs_new(&lim);
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, lens, NCH, NULL, cand->holders, cand->nholders);
    lr_xs_peer_up(xs, &a->id);
    lr_xs_peer_up(xs, &b->id);
    struct held {
        struct lr_device_id peer;
        uint64_t req;
    } pend[64];
    size_t npend = 0, from_a = 0, from_b = 0, b_after = 0;
    bool b_gone = false, complete = false;
    for (int iter = 0; iter < 1000 && !complete; iter++) {
        struct lr_xs_act act[16];
        size_t na = lr_xs_pump(xs, act, 16);
        for (size_t k = 0; k < na; k++) {
            assert_int_not_equal(act[k].kind, LR_XS_DROP);
            if (act[k].kind == LR_XS_COMPLETE) {
                assert_ptr_equal(act[k].x, x);
                complete = true;
                continue;
            }
            bool to_b = lr_device_id_eq(act[k].peer, &b->id);
            assert_true(to_b || lr_device_id_eq(act[k].peer, &a->id));
            b_after += b_gone && to_b;
            assert_true(npend < 64);
            pend[npend].peer = *act[k].peer;
            pend[npend].req = act[k].req_id;
            npend++;
        }
        if (complete)
            break;
        /* B leaves once both served a share; its outstanding requests are lost. */
        if (!b_gone && from_a >= 4 && from_b >= 4) {
            size_t keep = 0;
            bool b_had = false;
            for (size_t k = 0; k < npend; k++) {
                if (lr_device_id_eq(&pend[k].peer, &b->id))
                    b_had = true;
                else
                    pend[keep++] = pend[k];
            }
            assert_true(b_had); /* it leaves mid-file, with requests out */
            npend = keep;
            lr_xs_peer_down(xs, &b->id);
            link_set(&net, 2, 1, false);
            b_gone = true;
            continue;
        }
        assert_true(npend > 0); /* nothing in flight and not complete: stuck */
        /* Answer the oldest request. */
        struct held h = pend[0];
        memmove(pend, pend + 1, (npend - 1) * sizeof(*pend));
        npend--;
        struct lr_xs_xfer *ax;
        size_t chunk;
        assert_int_equal(lr_xs_answer(xs, &h.peer, h.req, LR_XS_ANS_OK, &ax, &chunk), 0);
        assert_ptr_equal(ax, x);
        bool is_a = lr_device_id_eq(&h.peer, &a->id);
        struct dev *holder = is_a ? a : b;
        bool ok = serve(holder, "big.bin", chunk, &cand->r.rec.chunks[chunk].hash);
        assert_true(ok);
        lr_xs_written(xs, x, chunk, ok);
        if (is_a)
            from_a++;
        else
            from_b++;
    }
    assert_true(complete);
    assert_true(b_gone);
    assert_int_equal(b_after, 0); /* nothing asked of a peer that left */
    assert_int_equal(from_a + from_b, NCH);
    assert_true(from_b >= 4 && from_a > from_b);
    for (size_t i = 0; i < NCH; i++)
        assert_int_equal(lr_xs_state(x, i), LR_XS_DONE);
    lr_xs_remove(xs, x);
    lr_xs_free(xs);
    lr_need_list_release(&nl);

    /* The commit: C stores version 2 with A's vector; D then takes it from C. */
    assert_int_equal(pull(&net, 2), 1);
    assert_true(has_content(c, "big.bin", content(11, NCH)));
    settle(&net);
    assert_true(has_content(d, "big.bin", content(11, NCH)));
    assert_same_tree(a, c);
    assert_same_tree(c, d);
    net_close(&net);
}

/*
 * Crossing changes with three connected devices, none syncing meanwhile: A
 * renames doc.txt to moved.txt while C edits doc.txt (the edit beats the
 * delete: both names survive), and A and C edit notes.txt (one winner, one
 * conflict copy, the same everywhere). Everything settles and goes quiet.
 */
static void test_crossing_changes(void **state)
{
    (void)state;
    setup_log();
    struct net net;
    net_open(&net, 3);
    struct dev *a = &net.d[0], *b = &net.d[1], *c = &net.d[2];
    link_set(&net, 0, 1, true);
    link_set(&net, 0, 2, true);
    link_set(&net, 1, 2, true);
    w_file(a, "doc.txt", 20, 3);
    w_file(a, "notes.txt", 21, 2);
    settle(&net);
    assert_true(has_content(c, "doc.txt", content(20, 3)));

    a->now_s = T0 + 100;
    w_del(a, "doc.txt");
    w_file(a, "moved.txt", 20, 3); /* a rename: same content, new name */
    w_file(a, "notes.txt", 23, 2);
    c->now_s = T0 + 200; /* C's notes.txt edit is the newer one */
    w_file(c, "doc.txt", 22, 3);
    w_file(c, "notes.txt", 24, 2);
    /* C (the winner's holder) decides first: it must change nothing, or its
     * merged vector would reach A as a plainly newer version and replace
     * A's edit before A made the conflict copy. */
    send_index(a, c);
    send_index(c, a);
    pull(&net, 2);
    send_index(c, a);
    pull(&net, 0);
    settle(&net);

    for (size_t k = 0; k < 3; k++) {
        struct dev *d = &net.d[k];
        assert_true(has_content(d, "doc.txt", content(22, 3)));   /* the edit survived */
        assert_true(has_content(d, "moved.txt", content(20, 3))); /* the rename too */
        assert_true(has_content(d, "notes.txt", content(24, 2))); /* newer mtime wins */
        char copy[256];
        assert_int_equal(conflict_copies(d, copy, sizeof(copy)), 1);
        assert_true(has_content(d, copy, content(23, 2))); /* A's edit kept as the copy */
        assert_int_equal(need_items(d), 0);
    }
    assert_same_tree(a, b);
    assert_same_tree(a, c);
    net_close(&net);
}

/*
 * B ignores *.tmp and build/ (and, by the built-in rule, the ignore file):
 * none of A's versions of those paths is applied, B's old.tmp (indexed
 * before the rule) is neither replaced nor deleted by A's changes, and the
 * ignored paths do not count as needed.
 */
static void test_ignores(void **state)
{
    (void)state;
    setup_log();
    struct net net;
    net_open(&net, 2);
    struct dev *a = &net.d[0], *b = &net.d[1];
    link_set(&net, 0, 1, true);
    w_file(b, "old.tmp", 30, 2); /* B's, indexed (and sent) before B ignored it */
    w_file(a, "later.tmp", 36, 1);
    settle(&net); /* B takes later.tmp, then starts ignoring it */
    assert_true(has_content(b, "later.tmp", content(36, 1)));
    const char *rules = "*.tmp\nbuild/\n";
    struct lr_err err = {0};
    assert_int_equal(lr_ignore_parse(rules, strlen(rules), &b->ig, &err), 0);
    a->now_s = T0 + 10;
    w_file(a, "keep.txt", 31, 1);
    w_file(a, "x.tmp", 32, 1);
    w_dir(a, "build");
    w_file(a, "build/o", 33, 2);
    w_file(a, "old.tmp", 34, 1);
    w_file(a, ".landropicignore", 35, 1); /* A syncs its rules (opted in) */
    settle(&net);

    assert_true(has_content(b, "keep.txt", content(31, 1)));
    struct lr_file_rec r;
    assert_int_equal(get(b, "x.tmp", &r), LR_ENOTFOUND);
    assert_int_equal(get(b, "build", &r), LR_ENOTFOUND);
    assert_int_equal(get(b, "build/o", &r), LR_ENOTFOUND);
    assert_int_equal(get(b, ".landropicignore", &r), LR_ENOTFOUND);
    assert_true(has_content(b, "old.tmp", content(30, 2)));
    assert_int_equal(get(b, "old.tmp", &r), 0);
    assert_int_equal(lr_vv_get(&r.vv, a->short_id), 0); /* still B's own version */
    lr_file_rec_release(&r);
    assert_int_equal(b->ignored, 5);
    assert_int_equal(need_items(b), 0);
    /* A took B's old.tmp in the first exchange, then edited it: a plainly
     * newer version B does not take. */
    assert_true(has_content(a, "old.tmp", content(34, 1)));

    /* A deletes what B ignores: plainly newer versions for B, never applied. */
    a->now_s = T0 + 20;
    w_del(a, "x.tmp");
    w_del(a, "later.tmp");
    w_del(a, "old.tmp");
    w_del(a, "build/o");
    settle(&net);
    /* Both were synced to A before B ignored them (A's tombstones supersede
     * B's records): really needed, only the rules keep the files. */
    const char *gone[] = {"later.tmp", "old.tmp"};
    for (size_t k = 0; k < 2; k++) {
        struct lr_need_list nl;
        const struct lr_need *n = need_of(b, gone[k], &nl);
        assert_non_null(n);
        assert_true(n->cand[0].r.rec.deleted);
        assert_int_equal(get(b, gone[k], &r), 0);
        assert_int_equal(lr_vv_compare(&n->cand[0].r.rec.vv, &r.vv), LR_VV_GREATER);
        assert_false(r.deleted);
        lr_file_rec_release(&r);
        lr_need_list_release(&nl);
        assert_false(is_live(a, gone[k]));
    }
    assert_true(has_content(b, "old.tmp", content(30, 2)));
    assert_true(has_content(b, "later.tmp", content(36, 1)));
    assert_int_equal(need_items(b), 0);
    assert_true(b->ignored >= 4);
    net_close(&net);
}

/*
 * send-only A: B's changes are not applied and stay needed; A's override
 * (merged vectors, re-stamped) makes A's versions win on B, deleting what
 * only B added. receive-only E in D-E-F: relays D's and F's changes, never
 * sends its own edit or file, and the conflict copy it makes of its own
 * version stays local.
 */
static void test_one_way_modes(void **state)
{
    (void)state;
    setup_log();
    struct net net;
    net_open(&net, 2);
    struct dev *a = &net.d[0], *b = &net.d[1];
    a->mode = M_SEND_ONLY;
    link_set(&net, 0, 1, true);
    w_file(a, "f1", 40, 2);
    w_file(a, "f2", 41, 2);
    settle(&net);
    assert_true(has_content(b, "f1", content(40, 2)));
    b->now_s = T0 + 10;
    w_file(b, "f1", 42, 2);
    w_file(b, "b-new", 43, 1);
    settle(&net);
    assert_true(has_content(a, "f1", content(40, 2)));
    assert_false(is_live(a, "b-new"));
    assert_int_equal(need_items(a), 2);

    /* folder override (docs/modes.md): merge every newest vector, bump ours. */
    struct lr_need_list nl = {0};
    assert_int_equal(lr_index_need_list(a->ix, FOLDER, NULL, 0, LIST_MAX, LR_IX_CHUNKS, &nl, NULL),
                     0);
    assert_int_equal(nl.n, 2);
    a->now_s = T0 + 20;
    for (size_t i = 0; i < nl.n; i++) {
        struct lr_file_rec cur, rec;
        int rc = get(a, (const char *)nl.v[i].path, &cur);
        struct lr_vv merged = {0}, bumped = {0};
        if (rc == 0) {
            lr_vv_copy(&merged, &cur.vv);
            rec = cur;
        } else {
            rec_base(&rec, (const char *)nl.v[i].path, nl.v[i].cand[0].r.rec.type, a->now_s);
            rec.deleted = true;
        }
        for (size_t k = 0; k < nl.v[i].ncand; k++) {
            struct lr_vv m = {0};
            assert_int_equal(lr_sync_vv_merge(&merged, &nl.v[i].cand[k].r.rec.vv, &m), 0);
            lr_vv_release(&merged);
            merged = m;
        }
        assert_int_equal(lr_sync_local_change(&merged, a->short_id, a->now_s, &bumped), 0);
        lr_vv_release(&rec.vv);
        rec.vv = bumped;
        assert_int_equal(lr_index_file_put(a->ix, FOLDER, &rec, NULL, NULL), 0);
        lr_vv_release(&merged);
        lr_file_rec_release(&rec);
    }
    lr_need_list_release(&nl);
    settle(&net);
    assert_true(has_content(b, "f1", content(40, 2))); /* A's version won plainly */
    assert_false(is_live(b, "b-new"));
    assert_int_equal(conflict_copies(b, NULL, 0), 0);
    assert_int_equal(need_items(a), 0);
    assert_same_tree(a, b);
    net_close(&net);

    /* receive-only in the middle. */
    net_open(&net, 3);
    struct dev *d = &net.d[0], *e = &net.d[1], *f = &net.d[2];
    e->mode = M_RECEIVE_ONLY;
    link_set(&net, 0, 1, true);
    link_set(&net, 1, 2, true);
    w_file(d, "g", 50, 2);
    f->now_s = T0 + 5;
    w_file(f, "h", 51, 1);
    settle(&net);
    assert_true(has_content(f, "g", content(50, 2))); /* relayed by E */
    assert_true(has_content(d, "h", content(51, 1)));
    e->now_s = T0 + 10;
    w_file(e, "g", 52, 2);
    w_file(e, "e-own", 53, 1);
    settle(&net);
    assert_true(has_content(d, "g", content(50, 2)));
    assert_true(has_content(f, "g", content(50, 2)));
    assert_false(is_live(d, "e-own"));
    assert_false(is_live(f, "e-own"));
    assert_true(has_content(e, "g", content(52, 2)));
    struct lr_remote_rec rr;
    assert_int_equal(
        lr_index_remote_get(d->ix, FOLDER, &e->id, (const uint8_t *)"e-own", 5, 0, &rr, NULL),
        LR_ENOTFOUND);

    /* F edits g later: at E it beats E's own edit, which becomes a local copy. */
    f->now_s = T0 + 30;
    w_file(f, "g", 54, 2);
    settle(&net);
    for (size_t k = 0; k < 3; k++)
        assert_true(has_content(&net.d[k], "g", content(54, 2)));
    char copy[256];
    assert_int_equal(conflict_copies(e, copy, sizeof(copy)), 1);
    assert_true(has_content(e, copy, content(52, 2)));
    assert_int_equal(conflict_copies(d, NULL, 0), 0);
    assert_int_equal(conflict_copies(f, NULL, 0), 0);
    assert_true(is_live(e, "e-own"));
    assert_false(is_live(d, "e-own"));
    assert_same_tree(d, f);
    net_close(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_through_middle), cmocka_unit_test(test_swarm_one_leaves),
        cmocka_unit_test(test_crossing_changes),     cmocka_unit_test(test_ignores),
        cmocka_unit_test(test_one_way_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
