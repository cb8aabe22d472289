/*
 * test_engine.c - scenario tests of the sync engine as the daemon runs it:
 * two or three devices, each with a real SQLite index (lr_index_open in a
 * mkdtemp directory), exchange FOLDERS and INDEX through the real proto
 * codecs and pull through the real decide/plan modules, following the
 * driver's calls step by step (src/daemon/sync.c folders_work, send_work,
 * recv_work; src/daemon/syncpull.c pull_work, apply_one, start_file,
 * conflict_copy, xfer_commit).
 *
 * What is modelled rather than run: the disk. A device's local records are
 * its disk (the daemon keeps them equal through CHECK_DISK + rescans, which
 * the store and the integration tests cover); "removing a directory" fails
 * with -ENOTEMPTY while a live record lies below it, as lr_store_delete
 * does; a file is "written" by storing its record. Chunk sources are real:
 * lr_plan_build with the driver's lookup over lr_index_chunk_find, and a
 * file with chunks to fetch becomes a transfer committed after the pull job
 * (with xfer_commit's "local record unchanged" check), as in the daemon.
 *
 * The driver's steps are static functions tied to libuv and the store, so
 * they are mirrored here, each under its original's name, following the
 * driver as committed in 2ff965a, with the later held deletes (pull_start's
 * hold_deletes mid-burst, a resumed round's delete passes): a change to
 * sync.c/syncpull.c must be carried over by hand (the decide, plan, index and proto calls are
 * real).
 *
 * Where the code differs from issue #4's rule (or a module's contract), the
 * check is written to the rule through EXPECT_RULE: it reports XFAIL while
 * the discrepancy stands and fails (XPASS) once it is fixed (in src/ for the
 * pure modules, in the mirror for the driver), so the check gets promoted to
 * a plain assertion then. docs/testing.md lists them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash/hash.h"
#include "identity/identity.h"
#include "index/index.h"
#include "proto/proto.h"
#include "sync/decide.h"
#include "sync/plan.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/xalloc.h"

#include "daemon/syncint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The driver's page sizes (src/daemon/syncint.h), with fallbacks should they move. */
#ifdef SYNC_SEND_RECORDS
#define SEND_RECORDS SYNC_SEND_RECORDS
#else
#define SEND_RECORDS 1000
#endif
#ifdef SYNC_PULL_PAGE
#define PULL_PAGE SYNC_PULL_PAGE
#else
#define PULL_PAGE 1000
#endif
#ifdef SYNC_XFERS_MAX
#define XFERS_MAX SYNC_XFERS_MAX
#else
#define XFERS_MAX 1536
#endif

#define FOLDER "engine-folder"
#define NS INT64_C(1000000000)
#define T0 INT64_C(1700000000) /* 2023-11-14 22:13:20 UTC */

static int xfails;

/* A rule (issue #4's, or a module contract) the code does not meet yet (top comment). */
#define EXPECT_RULE(cond, what)                                                                    \
    do {                                                                                           \
        if (cond)                                                                                  \
            fail_msg("XPASS: %s: the rule holds now; make this a plain assertion", what);          \
        print_message("XFAIL (rule not met yet, see docs/testing.md): %s\n", what);                \
        xfails++;                                                                                  \
    } while (0)

/* ---- devices ------------------------------------------------------------------- */

struct dev {
    char dir[64], db[128];
    struct lr_index *ix;
    struct lr_device_id id;
    uint64_t short_id;
    uint64_t now_s; /* the device's clock for local changes */
};

static void dev_open(struct dev *d, uint8_t tag)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/lr-test-engine-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->db, sizeof(d->db), "%s/index.db", d->dir);
    for (size_t i = 0; i < sizeof(d->id.b); i++)
        d->id.b[i] = (uint8_t)(tag + i * 7);
    d->short_id = lr_device_id_u64(&d->id);
    d->now_s = (uint64_t)T0;
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(d->db, &d->ix, &err), 0);
    assert_int_equal(lr_index_folder_ensure(d->ix, FOLDER, d->short_id, NULL, &err), 0);
}

/* The database is lost (disk replaced, home recreated): a new, empty index. */
static void dev_lose_db(struct dev *d)
{
    lr_index_close(d->ix);
    char p[192];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", d->db, sfx[i]);
        unlink(p);
    }
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(d->db, &d->ix, &err), 0);
    assert_int_equal(lr_index_folder_ensure(d->ix, FOLDER, d->short_id, NULL, &err), 0);
}

static void dev_close(struct dev *d)
{
    lr_index_close(d->ix);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- local changes (what the scanner records) ------------------------------------- */

/* Chunk "symbols": symbol s is a chunk of its own length and hash. */
static uint32_t sym_len(uint32_t s)
{
    return 4096 + (s % 97) * 61;
}

static void sym_hash(uint32_t s, struct lr_hash *h)
{
    char tag[32];
    int n = snprintf(tag, sizeof(tag), "chunk-symbol-%u", s);
    lr_sha256(tag, (size_t)n, h);
}

static void rec_base(struct lr_file_rec *r, const char *path, enum lr_ftype t, int64_t mtime_s,
                     uint32_t mode)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)lr_xstrdup(path);
    r->path_len = strlen(path);
    r->type = t;
    r->mtime_ns = mtime_s * NS;
    r->mode = mode;
}

static void rec_syms(struct lr_file_rec *r, const uint32_t *syms, size_t n)
{
    r->chunks = lr_xcalloc(n ? n : 1, sizeof(*r->chunks));
    r->nchunks = n;
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        r->chunks[i].off = off;
        r->chunks[i].len = sym_len(syms[i]);
        sym_hash(syms[i], &r->chunks[i].hash);
        off += r->chunks[i].len;
    }
    r->size = off;
    lr_index_blocks_hash(r->chunks, n, &r->blocks_hash);
}

/* A local change of r->path: the old vector bumped by this device (lr_vv_bump rule). */
static void local_put(struct dev *d, struct lr_file_rec *r)
{
    struct lr_file_rec old;
    struct lr_err err = {0};
    int rc = lr_index_file_get(d->ix, FOLDER, r->path, r->path_len, 0, &old, &err);
    assert_true(rc == 0 || rc == LR_ENOTFOUND);
    lr_vv_release(&r->vv);
    assert_int_equal(lr_sync_local_change(rc == 0 ? &old.vv : NULL, d->short_id, d->now_s, &r->vv),
                     0);
    if (rc == 0)
        lr_file_rec_release(&old);
    assert_int_equal(lr_index_file_put(d->ix, FOLDER, r, NULL, &err), 0);
    lr_file_rec_release(r);
}

static void w_file_syms(struct dev *d, const char *path, const uint32_t *syms, size_t n,
                        int64_t mtime_s, uint32_t mode)
{
    struct lr_file_rec r;
    rec_base(&r, path, LR_FT_FILE, mtime_s, mode);
    rec_syms(&r, syms, n);
    local_put(d, &r);
}

/* A file of n chunks: symbols seed*1000 .. seed*1000 + n - 1. */
static void w_file(struct dev *d, const char *path, uint32_t seed, size_t n, int64_t mtime_s)
{
    uint32_t syms[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++)
        syms[i] = seed * 1000 + (uint32_t)i;
    w_file_syms(d, path, syms, n, mtime_s, 0644);
}

static void w_dir(struct dev *d, const char *path)
{
    struct lr_file_rec r;
    rec_base(&r, path, LR_FT_DIR, T0, 0755);
    local_put(d, &r);
}

static void w_link(struct dev *d, const char *path, const char *target, int64_t mtime_s)
{
    struct lr_file_rec r;
    rec_base(&r, path, LR_FT_SYMLINK, mtime_s, 0777);
    r.target = (uint8_t *)lr_xstrdup(target);
    r.target_len = strlen(target);
    local_put(d, &r);
}

/* The scanner found path gone: a tombstone of its last type. */
static void w_del(struct dev *d, const char *path)
{
    struct lr_file_rec old, r;
    assert_int_equal(
        lr_index_file_get(d->ix, FOLDER, (const uint8_t *)path, strlen(path), 0, &old, NULL), 0);
    assert_false(old.deleted);
    rec_base(&r, path, old.type, old.mtime_ns / NS, 0);
    r.deleted = true;
    lr_file_rec_release(&old);
    local_put(d, &r);
}

static int get(struct dev *d, const char *path, struct lr_file_rec *out)
{
    return lr_index_file_get(d->ix, FOLDER, (const uint8_t *)path, strlen(path), LR_IX_CHUNKS, out,
                             NULL);
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

static uint64_t need_items(struct dev *d)
{
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(d->ix, FOLDER, &ns, NULL), 0);
    return ns.items;
}

/* ---- FOLDERS (sync.c folders_work), through the real codec ------------------------ */

static void folders_of(struct dev *self, const struct lr_device_id *peer,
                       struct lr_proto_folder *out)
{
    struct lr_folder_info info;
    struct lr_remote_state rs;
    struct lr_err err = {0};
    assert_int_equal(lr_index_folder_ensure(self->ix, FOLDER, self->short_id, &info, &err), 0);
    assert_int_equal(lr_index_remote_state(self->ix, FOLDER, peer, &rs, &err), 0);
    struct lr_proto_folder f;
    memset(&f, 0, sizeof(f));
    snprintf(f.id, sizeof(f.id), "%s", FOLDER);
    f.index_id = info.index_id;
    f.max_seq = info.max_seq;
    if (rs.index_id && !rs.full_pending) {
        f.peer_index_id = rs.index_id;
        f.peer_seq = rs.max_seq;
    }
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    struct lr_proto_folders dec;
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &dec, &err), 0);
    assert_int_equal(dec.n, 1);
    *out = dec.v[0];
    lr_proto_folders_release(&dec);
    lr_buf_release(&b);
}

/* ---- the index sender (sync.c send_work) ------------------------------------------- */

struct sender {
    bool decided, first;
    uint64_t from;
    uint64_t view_id, view_seq; /* the peer's FOLDERS: what it holds of our index */
};

struct frames {
    uint8_t **p;
    size_t *len;
    size_t n;
};

static void frames_push(struct frames *f, struct lr_buf *b)
{
    f->p = lr_xreallocarray(f->p, f->n + 1, sizeof(*f->p));
    f->len = lr_xreallocarray(f->len, f->n + 1, sizeof(*f->len));
    f->p[f->n] = lr_buf_detach(b, &f->len[f->n]);
    f->n++;
    lr_buf_init(b, LR_PROTO_INDEX_MAX);
}

static void frames_free(struct frames *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->p[i]);
    free(f->p);
    free(f->len);
    memset(f, 0, sizeof(*f));
}

/* One sender job; returns `more` (another job follows). */
static bool send_job(struct dev *tx, const struct lr_device_id *peer, struct sender *s,
                     struct frames *out)
{
    struct lr_folder_info info;
    struct lr_file_list list = {0};
    struct lr_proto_index_batch batch;
    struct lr_err err = {0};
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_INDEX_MAX);
    assert_int_equal(lr_index_folder_get(tx->ix, FOLDER, &info, &err), 0);
    if (!s->decided) {
        bool full =
            lr_proto_index_full_needed(info.index_id, info.max_seq, s->view_id, s->view_seq);
        s->first = full;
        s->from = full ? 1 : s->view_seq + 1;
        s->decided = true;
        assert_int_equal(
            lr_index_remote_set_sent(tx->ix, FOLDER, peer, s->view_id, s->view_seq, NULL), 0);
    }
    uint64_t next = s->from;
    assert_int_equal(
        lr_index_list_by_seq(tx->ix, FOLDER, s->from, SEND_RECORDS, LR_IX_CHUNKS, &list, &err), 0);
    assert_int_equal(lr_proto_index_batch_init(&batch, FOLDER, info.index_id, 0, 0), 0);
    for (size_t i = 0; i < list.n; i++) {
        size_t next_block = 0;
        for (;;) {
            int rc = lr_proto_index_batch_add(&batch, &list.v[i], &next_block);
            if (rc == 0)
                break;
            assert_int_equal(rc, LR_PROTO_BATCH_FULL);
            assert_int_equal(
                lr_proto_index_batch_finish(&batch, s->first ? LR_PROTO_INDEX_FIRST : 0, &b), 0);
            s->first = false;
            frames_push(out, &b);
        }
        next = list.v[i].seq + 1;
    }
    bool more = list.n == SEND_RECORDS;
    if (!more || lr_proto_index_batch_count(&batch) > 0) {
        uint64_t flags = (s->first ? LR_PROTO_INDEX_FIRST : 0) | (more ? 0 : LR_PROTO_INDEX_LAST);
        assert_int_equal(lr_proto_index_batch_finish(&batch, flags, &b), 0);
        s->first = false;
        frames_push(out, &b);
    }
    s->from = next;
    lr_proto_index_batch_release(&batch);
    lr_buf_release(&b);
    lr_file_list_release(&list);
    return more;
}

/* ---- the index receiver (sync.c recv_work) ----------------------------------------- */

struct msg_info {
    uint64_t flags, count, raw_len, first_seq, last_seq;
};

/* Store one INDEX payload as recv_work does; < 0: the connection closes. */
static int recv_msg(struct dev *rx, const struct lr_device_id *peer, struct lr_proto_burst *burst,
                    uint64_t folders_index_id, const uint8_t *p, size_t n, struct msg_info *mi,
                    struct lr_err *err)
{
    struct lr_proto_index ix = {0};
    int rc = lr_proto_index_decode(p, n, NULL, &ix, err);
    if (rc < 0)
        return rc;
    memset(mi, 0, sizeof(*mi));
    mi->flags = ix.hdr.flags;
    mi->count = ix.n;
    mi->raw_len = ix.hdr.raw_len;
    if (ix.n) {
        mi->first_seq = ix.v[0].rec.seq;
        mi->last_seq = ix.v[ix.n - 1].rec.seq;
    }
    if ((rc = lr_proto_burst_check(burst, folders_index_id, &ix, err)) < 0)
        goto out;
    if ((rc = lr_index_begin(rx->ix, err)) < 0)
        goto out;
    if ((ix.hdr.flags & LR_PROTO_INDEX_FIRST) &&
        (rc = lr_index_remote_full_begin(rx->ix, FOLDER, peer, ix.hdr.index_id, err)) < 0)
        goto fail_tx;
    for (size_t i = 0; i < ix.n; i++) {
        const struct lr_proto_entry *e = &ix.v[i];
        struct lr_remote_rec r;
        memset(&r, 0, sizeof(r));
        r.rec = e->rec;
        r.flags = e->unknown_type ? LR_RREC_UNKNOWN_TYPE : 0;
        r.wire_type = e->wire_type;
        r.blk_total = e->blk_total;
        r.blk_first = e->blk_first;
        if ((rc = lr_index_remote_put(rx->ix, FOLDER, peer, ix.hdr.index_id, &r, err)) < 0)
            goto fail_tx;
    }
    if ((ix.hdr.flags & LR_PROTO_INDEX_LAST) &&
        (rc = lr_index_remote_burst_end(rx->ix, FOLDER, peer, ix.hdr.index_id, NULL, err)) < 0)
        goto fail_tx;
    rc = lr_index_commit(rx->ix, err);
    goto out;
fail_tx:
    lr_index_rollback(rx->ix);
out:
    lr_proto_index_release(&ix);
    return rc;
}

/* ---- one connection, one direction: tx sends its index to rx ---------------------- */

struct conn_stats {
    size_t msgs, entries, firsts, lasts;
    size_t max_payload;
    uint64_t max_raw, max_count;
    uint64_t first_seq; /* of the first entry delivered */
    bool first_flag_on_first, last_flag_on_last;
    int rc; /* < 0: the receiver closed the connection */
    struct lr_err err;
};

/*
 * Connect, exchange FOLDERS, run sender jobs until the burst ends and store
 * every INDEX at rx, delivering at most `limit` messages (then the
 * connection drops).
 */
/* Called between two INDEX messages of a burst (a job that runs meanwhile). */
static void (*between_msgs)(struct dev *rx, void *user);
static void *between_user;

static void connect_dir(struct dev *tx, struct dev *rx, size_t limit, struct conn_stats *st)
{
    memset(st, 0, sizeof(*st));
    struct lr_proto_folder tf, rf;
    folders_of(tx, &rx->id, &tf); /* tx announces its index */
    folders_of(rx, &tx->id, &rf); /* rx says what it holds of tx's */
    struct sender s = {.view_id = rf.peer_index_id, .view_seq = rf.peer_seq};
    struct lr_proto_burst burst;
    lr_proto_burst_init(&burst);
    bool more = true;
    while (more && st->rc == 0 && st->msgs < limit) {
        struct frames fr = {0};
        more = send_job(tx, &rx->id, &s, &fr);
        for (size_t i = 0; i < fr.n && st->rc == 0 && st->msgs < limit; i++) {
            struct msg_info mi;
            st->rc = recv_msg(rx, &tx->id, &burst, tf.index_id, fr.p[i], fr.len[i], &mi, &st->err);
            if (st->rc < 0)
                break;
            if (st->msgs == 0) {
                st->first_seq = mi.first_seq;
                st->first_flag_on_first = (mi.flags & LR_PROTO_INDEX_FIRST) != 0;
            }
            st->msgs++;
            st->entries += mi.count;
            st->firsts += (mi.flags & LR_PROTO_INDEX_FIRST) != 0;
            st->lasts += (mi.flags & LR_PROTO_INDEX_LAST) != 0;
            st->last_flag_on_last = (mi.flags & LR_PROTO_INDEX_LAST) != 0;
            if (between_msgs && !(mi.flags & LR_PROTO_INDEX_LAST))
                between_msgs(rx, between_user);
            if (fr.len[i] > st->max_payload)
                st->max_payload = fr.len[i];
            if (mi.raw_len > st->max_raw)
                st->max_raw = mi.raw_len;
            if (mi.count > st->max_count)
                st->max_count = mi.count;
        }
        frames_free(&fr);
    }
    lr_proto_burst_release(&burst);
}

static void sync_index(struct dev *tx, struct dev *rx)
{
    struct conn_stats st;
    connect_dir(tx, rx, SIZE_MAX, &st);
    if (st.rc < 0)
        fail_msg("INDEX refused: %s", st.err.msg);
    assert_true(st.last_flag_on_last);
}

/* ---- the puller (syncpull.c pull_work / apply_one), disk modelled by records ------- */

struct op {
    char *path;
    enum lr_sync_action action;
    enum lr_sync_apply apply;
    enum lr_sync_conflict conflict;
    bool copy_here;
    int pass;
    int rc;
};

struct xfer {
    struct lr_file_rec rec; /* the version to write, with the decision's vector */
    bool had_local;
    uint64_t local_seq;
};

struct pull {
    /* knob: apply deletes with each page (the behaviour before commit 55627f7) */
    bool deletes_per_page;
    bool hold_deletes; /* pull_start: a burst's LAST has not arrived yet */
    size_t room_limit; /* transfers a round may start (0: SYNC_XFERS_MAX) */
    /* a round cut short for lack of transfer slots resumes after this path */
    bool cut;
    uint8_t *resume_after;
    size_t resume_len;
    /* results */
    size_t applied, left, conflicts, rounds;
    size_t committed, commit_failed; /* transfers (not counted in applied, as in pull_done) */
    uint64_t local_bytes, net_bytes;
    size_t net_chunks;
    struct op *ops;
    size_t nops;
    struct xfer *xfers;
    size_t nxfers;
};

static void pull_reset(struct pull *p)
{
    for (size_t i = 0; i < p->nops; i++)
        free(p->ops[i].path);
    free(p->ops);
    for (size_t i = 0; i < p->nxfers; i++)
        lr_file_rec_release(&p->xfers[i].rec);
    free(p->xfers);
    free(p->resume_after);
    bool knob = p->deletes_per_page;
    size_t room = p->room_limit;
    memset(p, 0, sizeof(*p));
    p->deletes_per_page = knob;
    p->room_limit = room;
}

static const struct op *op_find(const struct pull *p, const char *path)
{
    for (size_t i = 0; i < p->nops; i++)
        if (strcmp(p->ops[i].path, path) == 0)
            return &p->ops[i];
    return NULL;
}

static size_t op_index(const struct pull *p, const char *path)
{
    for (size_t i = 0; i < p->nops; i++)
        if (strcmp(p->ops[i].path, path) == 0 && p->ops[i].rc >= 0)
            return i;
    fail_msg("no successful op for %s", path);
    return SIZE_MAX;
}

/* The last attempt at path, whatever its outcome. */
static size_t op_last(const struct pull *p, const char *path)
{
    for (size_t i = p->nops; i-- > 0;)
        if (strcmp(p->ops[i].path, path) == 0)
            return i;
    fail_msg("no op for %s", path);
    return SIZE_MAX;
}

struct lookup_ctx {
    struct dev *d;
    struct lr_chunk_loc loc;
};

/* syncpull.c lookup_local */
static int lookup_local(void *user, const struct lr_hash *h, uint32_t len,
                        struct lr_plan_cand *cand)
{
    struct lookup_ctx *c = user;
    lr_chunk_loc_release(&c->loc);
    int rc = lr_index_chunk_find(c->d->ix, FOLDER, h, &c->loc, NULL);
    if (rc == LR_ENOTFOUND || (rc == 0 && c->loc.len != len))
        return 0;
    if (rc < 0)
        return 0;
    cand->path = c->loc.path;
    cand->path_len = c->loc.path_len;
    cand->off = c->loc.off;
    return 1;
}

/* The disk model of lr_store_delete: a directory goes only when nothing live is below. */
static int disk_remove(struct dev *d, const struct lr_file_rec *local)
{
    if (local->type != LR_FT_DIR)
        return 0;
    uint8_t *after = lr_xmalloc(local->path_len + 1);
    memcpy(after, local->path, local->path_len + 1);
    size_t after_len = local->path_len;
    int rc = 0;
    for (;;) {
        struct lr_file_list l;
        assert_int_equal(lr_index_list_by_path(d->ix, FOLDER, after, after_len, 64, 0, &l, NULL),
                         0);
        bool done = l.n < 64;
        for (size_t i = 0; i < l.n && rc == 0; i++) {
            const struct lr_file_rec *r = &l.v[i];
            if (r->path_len <= local->path_len || r->path[local->path_len] != '/' ||
                memcmp(r->path, local->path, local->path_len) != 0) {
                done = true; /* path order: the subtree is contiguous */
                break;
            }
            if (!r->deleted)
                rc = -ENOTEMPTY;
        }
        if (!done && rc == 0) {
            free(after);
            after_len = l.v[l.n - 1].path_len;
            after = lr_xmalloc(after_len + 1);
            memcpy(after, l.v[l.n - 1].path, after_len + 1);
        }
        lr_file_list_release(&l);
        if (done || rc)
            break;
    }
    free(after);
    return rc;
}

/* syncpull.c put_record */
static int put_record(struct dev *d, const struct lr_file_rec *src, const struct lr_vv *vv)
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
    return lr_index_file_put(d->ix, FOLDER, &r, NULL, NULL);
}

/* syncpull.c xfer_commit: only if the local record is still the one decided against. */
static int xfer_commit(struct dev *d, const struct xfer *x)
{
    struct lr_file_rec cur;
    int rc = lr_index_file_get(d->ix, FOLDER, x->rec.path, x->rec.path_len, 0, &cur, NULL);
    bool same = x->had_local ? (rc == 0 && cur.seq == x->local_seq) : rc == LR_ENOTFOUND;
    if (rc == 0)
        lr_file_rec_release(&cur);
    if (!same)
        return LR_ECHANGED;
    return lr_index_file_put(d->ix, FOLDER, &x->rec, NULL, NULL);
}

/* syncpull.c start_file: local chunks first; a transfer for the rest (committed later). */
static int start_file(struct dev *d, struct pull *p, const struct lr_file_rec *remote,
                      const struct lr_sync_decision *dec, const struct lr_file_rec *local)
{
    struct xfer x;
    memset(&x, 0, sizeof(x));
    x.rec = *remote;
    x.rec.path = lr_xmalloc(remote->path_len + 1);
    memcpy(x.rec.path, remote->path, remote->path_len + 1);
    x.rec.target = NULL;
    x.rec.target_len = 0;
    memset(&x.rec.vv, 0, sizeof(x.rec.vv));
    lr_vv_copy(&x.rec.vv, &dec->vv);
    x.rec.chunks = lr_xcalloc(remote->nchunks ? remote->nchunks : 1, sizeof(*x.rec.chunks));
    if (remote->nchunks)
        memcpy(x.rec.chunks, remote->chunks, remote->nchunks * sizeof(*x.rec.chunks));
    x.had_local = local != NULL;
    x.local_seq = local ? local->seq : 0;
    struct lookup_ctx lc = {.d = d};
    struct lr_plan plan;
    struct lr_err err = {0};
    assert_int_equal(lr_plan_build(remote->chunks, remote->nchunks, lookup_local, &lc, &plan, &err),
                     0);
    lr_chunk_loc_release(&lc.loc);
    assert_int_equal(plan.local_bytes + plan.remote_bytes + plan.self_bytes, remote->size);
    p->local_bytes += plan.local_bytes;
    /* SELF runs are fetched like REMOTE ones (docs/internals/sync.md, "Files") */
    p->net_bytes += plan.remote_bytes + plan.self_bytes;
    for (size_t i = 0; i < plan.nops; i++)
        if (plan.ops[i].src != LR_PLAN_LOCAL)
            p->net_chunks += plan.ops[i].nchunks;
    bool all_local = plan.remote_bytes + plan.self_bytes == 0;
    lr_plan_release(&plan);
    if (!all_local) {
        p->xfers = lr_xreallocarray(p->xfers, p->nxfers + 1, sizeof(*p->xfers));
        p->xfers[p->nxfers++] = x;
        return 1; /* a transfer */
    }
    int rc = xfer_commit(d, &x);
    lr_file_rec_release(&x.rec);
    return rc;
}

/* syncpull.c conflict_copy (the device clock stands in for time(NULL)). */
static int conflict_copy(struct dev *d, const struct lr_file_rec *local,
                         const struct lr_sync_decision *dec)
{
    struct lr_file_rec prev;
    int rc = lr_index_file_get(d->ix, FOLDER, dec->copy_path, dec->copy_path_len, 0, &prev, NULL);
    bool had_prev = rc == 0;
    assert_true(rc == 0 || rc == LR_ENOTFOUND);
    if (had_prev && !prev.deleted) {
        bool same = prev.type == local->type &&
                    (local->type == LR_FT_FILE
                         ? memcmp(&prev.blocks_hash, &local->blocks_hash, LR_HASH_LEN) == 0
                         : prev.target_len == local->target_len &&
                               memcmp(prev.target, local->target, local->target_len) == 0);
        lr_file_rec_release(&prev);
        return same ? 0 : LR_EEXISTS;
    }
    struct lr_file_rec r = *local;
    r.path = dec->copy_path;
    r.path_len = dec->copy_path_len;
    memset(&r.vv, 0, sizeof(r.vv));
    rc = lr_sync_local_change(had_prev ? &prev.vv : NULL, d->short_id, d->now_s, &r.vv);
    if (had_prev)
        lr_file_rec_release(&prev);
    if (rc == 0)
        rc = lr_index_file_put(d->ix, FOLDER, &r, NULL, NULL);
    lr_vv_release(&r.vv);
    return rc;
}

/* syncpull.c apply_one; returns the rc logged in the op (1: became a transfer). */
static int apply_one(struct dev *d, struct pull *p, const struct lr_file_rec *remote,
                     const struct lr_file_rec *local, const struct lr_sync_decision *dec)
{
    const struct lr_file_rec *src = dec->from_remote ? remote : local;
    bool old_live = local && !local->deleted;
    int rc = 0;
    if (dec->action == LR_SYNC_CONFLICT && dec->copy_here && dec->copy_path && old_live) {
        if ((rc = conflict_copy(d, local, dec)) < 0) {
            p->left++;
            return rc;
        }
        p->conflicts++;
    }
    switch (dec->apply) {
    case LR_SYNC_APPLY_RECORD:
    case LR_SYNC_APPLY_META:
        rc = put_record(d, src, &dec->vv);
        break;
    case LR_SYNC_APPLY_DIR:
        if (old_live && local->type != LR_FT_DIR)
            rc = disk_remove(d, local);
        if (rc == 0)
            rc = put_record(d, remote, &dec->vv);
        break;
    case LR_SYNC_APPLY_SYMLINK:
        if (old_live && local->type == LR_FT_DIR)
            rc = disk_remove(d, local);
        if (rc == 0)
            rc = put_record(d, remote, &dec->vv);
        break;
    case LR_SYNC_APPLY_DELETE:
        if (old_live)
            rc = disk_remove(d, local);
        if (rc == 0)
            rc = put_record(d, remote, &dec->vv);
        break;
    case LR_SYNC_APPLY_FILE:
        if (old_live && local->type == LR_FT_DIR && (rc = disk_remove(d, local)) < 0)
            break;
        /* (a removed directory changes only what the store expects on disk) */
        rc = start_file(d, p, remote, dec, local);
        if (rc == 1)
            return 1;
        break;
    case LR_SYNC_APPLY_NONE:
    default:
        return 0;
    }
    if (rc == 0)
        p->applied++;
    else
        p->left++;
    return rc;
}

static void log_op(struct pull *p, const char *path, const struct lr_sync_decision *dec, int pass,
                   int rc)
{
    p->ops = lr_xreallocarray(p->ops, p->nops + 1, sizeof(*p->ops));
    struct op *o = &p->ops[p->nops++];
    o->path = lr_xstrdup(path);
    o->action = dec->action;
    o->apply = dec->apply;
    o->conflict = dec->conflict;
    o->copy_here = dec->copy_here;
    o->pass = pass;
    o->rc = rc;
}

static void commit_xfers(struct dev *d, struct pull *p);

/* One pull job: the three passes of pull_work, then the transfers commit. */
static void pull_job(struct dev *d, struct pull *p)
{
    bool saw_delete = false, round_end = false;
    bool resumed = p->resume_after != NULL;
    /* pull_start: room = SYNC_XFERS_MAX less the transfers in flight */
    size_t limit = p->room_limit ? p->room_limit : XFERS_MAX;
    size_t inflight = p->nxfers, room = limit > inflight ? limit - inflight : 0;
    p->cut = false;
    for (int pass = 0; pass < 3; pass++) {
        /* A resumed round did not see the deletes sorted before its start. */
        if (pass > 0 &&
            ((!saw_delete && !resumed) || !round_end || p->deletes_per_page || p->hold_deletes))
            break;
        uint8_t *after = NULL;
        size_t after_len = 0;
        if (pass == 0 && p->resume_after) {
            after = p->resume_after;
            after_len = p->resume_len;
            p->resume_after = NULL;
        }
        for (;;) {
            if (pass == 0 && p->nxfers - inflight >= room) {
                p->cut = true;
                p->resume_after = after;
                p->resume_len = after_len;
                after = NULL;
                break;
            }
            struct lr_need_list nl = {0};
            assert_int_equal(lr_index_need_list(d->ix, FOLDER, after, after_len, PULL_PAGE,
                                                LR_IX_CHUNKS, &nl, NULL),
                             0);
            struct lr_sync_decision *decs = lr_xcalloc(nl.n + 1, sizeof(*decs));
            struct lr_file_rec *locals = lr_xcalloc(nl.n + 1, sizeof(*locals));
            bool *has_local = lr_xcalloc(nl.n + 1, sizeof(*has_local));
            struct lr_sync_item *items = lr_xcalloc(nl.n + 1, sizeof(*items));
            size_t nitems = 0;
            for (size_t i = 0; i < nl.n; i++) {
                const struct lr_need *n = &nl.v[i];
                const struct lr_remote_rec *r = &n->cand[0].r;
                if (r->flags & (LR_RREC_UNKNOWN_TYPE | LR_RREC_PARTIAL)) {
                    p->left += pass == 0;
                    continue;
                }
                int rc = lr_index_file_get(d->ix, FOLDER, n->path, n->path_len, LR_IX_CHUNKS,
                                           &locals[i], NULL);
                assert_true(rc == 0 || rc == LR_ENOTFOUND);
                has_local[i] = rc == 0;
                assert_true(
                    lr_sync_decide(has_local[i] ? &locals[i] : NULL, &r->rec, &decs[i], NULL) >= 0);
                if (decs[i].apply == LR_SYNC_APPLY_NONE ||
                    (decs[i].flags & (LR_SYNC_F_INCONSISTENT | LR_SYNC_F_UNKNOWN_TYPE))) {
                    if (pass == 0) {
                        p->left++;
                        log_op(p, (const char *)n->path, &decs[i], pass, 0);
                    }
                    continue;
                }
                /* A directory replaced by a file or link goes with the
                 * deletes: its children must be gone first. Pass 1 deletes
                 * files and links, pass 2 directories (the daemon repeats
                 * it while it makes progress; one is enough here). */
                bool dir_goes =
                    has_local[i] && !locals[i].deleted && locals[i].type == LR_FT_DIR &&
                    (decs[i].apply == LR_SYNC_APPLY_FILE || decs[i].apply == LR_SYNC_APPLY_SYMLINK);
                bool is_delete = decs[i].apply == LR_SYNC_APPLY_DELETE || dir_goes;
                bool dir_delete =
                    is_delete && has_local[i] && !locals[i].deleted && locals[i].type == LR_FT_DIR;
                saw_delete |= is_delete;
                int turn = !is_delete ? 0 : !dir_delete ? 1 : 2;
                if (!p->deletes_per_page && turn != pass)
                    continue;
                items[nitems].path = n->path;
                items[nitems].path_len = n->path_len;
                items[nitems].d = &decs[i];
                items[nitems].user = (void *)(uintptr_t)i;
                nitems++;
            }
            size_t nwork = lr_plan_order(items, nitems);
            assert_int_equal(lr_index_begin(d->ix, NULL), 0);
            for (size_t k = 0; k < nwork; k++) {
                size_t i = (size_t)(uintptr_t)items[k].user;
                int rc = apply_one(d, p, &nl.v[i].cand[0].r.rec, has_local[i] ? &locals[i] : NULL,
                                   &decs[i]);
                log_op(p, (const char *)nl.v[i].path, &decs[i], pass, rc);
            }
            assert_int_equal(lr_index_commit(d->ix, NULL), 0);
            bool end = nl.n < PULL_PAGE;
            if (pass == 0 && end)
                round_end = true;
            if (!end) {
                free(after);
                after_len = nl.v[nl.n - 1].path_len;
                after = lr_xmalloc(after_len + 1);
                memcpy(after, nl.v[nl.n - 1].path, after_len + 1);
            }
            for (size_t i = 0; i < nl.n; i++) {
                lr_sync_decision_release(&decs[i]);
                lr_file_rec_release(&locals[i]);
            }
            free(decs);
            free(locals);
            free(has_local);
            free(items);
            lr_need_list_release(&nl);
            if (end)
                break;
        }
        free(after);
    }
    p->rounds++;
    /* The transfers land (their chunks verified) and commit in one batch; after
     * a cut, the resumed round is queued first (pull_room_freed), so they land
     * after it. */
    if (!p->cut)
        commit_xfers(d, p);
}

static void commit_xfers(struct dev *d, struct pull *p)
{
    assert_int_equal(lr_index_begin(d->ix, NULL), 0);
    for (size_t i = 0; i < p->nxfers; i++) {
        if (xfer_commit(d, &p->xfers[i]) == 0)
            p->committed++;
        else
            p->commit_failed++;
        lr_file_rec_release(&p->xfers[i].rec);
    }
    p->nxfers = 0;
    assert_int_equal(lr_index_commit(d->ix, NULL), 0);
}

/* Rounds until the driver would not start another: pull_done re-triggers while a
 * round applied something and left something, pull_room_freed resumes a cut
 * round, and commit_done re-triggers once the folder's transfers have landed. */
static void pull(struct dev *d, struct pull *p)
{
    for (int i = 0; i < 20; i++) {
        size_t applied = p->applied, left = p->left, committed = p->committed;
        pull_job(d, p);
        if (p->cut) {
            /* pull_room_freed starts the resumed round once fewer than half the
             * slots are taken; until then the transfers land, and the first
             * trigger (their commit_done) resumes the round */
            size_t limit = p->room_limit ? p->room_limit : XFERS_MAX;
            if (p->nxfers >= limit / 2)
                commit_xfers(d, p);
            continue;
        }
        if (p->committed > committed)
            continue; /* commit_done: the folder's last transfer landed */
        if (p->applied == applied || p->left == left)
            return;
    }
    fail_msg("pull rounds do not settle");
}

/* Both ways, until neither device needs anything (at most `max` exchanges). */
static void converge(struct dev *a, struct dev *b, int max)
{
    for (int i = 0; i < max; i++) {
        struct pull pa = {0}, pb = {0};
        sync_index(a, b);
        sync_index(b, a);
        pull(a, &pa);
        pull(b, &pb);
        pull_reset(&pa);
        pull_reset(&pb);
        if (need_items(a) == 0 && need_items(b) == 0) {
            /* one more exchange to carry the last applied records over */
            sync_index(a, b);
            sync_index(b, a);
            if (need_items(a) == 0 && need_items(b) == 0)
                return;
        }
    }
    fail_msg("devices did not converge (need %llu / %llu)", (unsigned long long)need_items(a),
             (unsigned long long)need_items(b));
}

static bool rec_equal(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    if (a->path_len != b->path_len || memcmp(a->path, b->path, a->path_len) != 0 ||
        a->type != b->type || a->deleted != b->deleted || !lr_vv_equal(&a->vv, &b->vv))
        return false;
    if (a->deleted)
        return true;
    return a->size == b->size && a->mode == b->mode && a->mtime_ns == b->mtime_ns &&
           memcmp(&a->blocks_hash, &b->blocks_hash, sizeof(a->blocks_hash)) == 0 &&
           a->target_len == b->target_len &&
           (a->target_len == 0 || memcmp(a->target, b->target, a->target_len) == 0);
}

/* The two devices hold the same versions of every path (tombstones included). */
static void assert_same_tree(struct dev *a, struct dev *b)
{
    struct lr_file_list la, lb;
    assert_int_equal(lr_index_list_by_path(a->ix, FOLDER, NULL, 0, 100000, 0, &la, NULL), 0);
    assert_int_equal(lr_index_list_by_path(b->ix, FOLDER, NULL, 0, 100000, 0, &lb, NULL), 0);
    assert_int_equal(la.n, lb.n);
    for (size_t i = 0; i < la.n; i++)
        if (!rec_equal(&la.v[i], &lb.v[i]))
            fail_msg("devices differ at %s", (const char *)la.v[i].path);
    lr_file_list_release(&la);
    lr_file_list_release(&lb);
}

static size_t count_conflict_copies(struct dev *d)
{
    struct lr_file_list l;
    assert_int_equal(lr_index_list_by_path(d->ix, FOLDER, NULL, 0, 100000, 0, &l, NULL), 0);
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++)
        n += !l.v[i].deleted && lr_sync_is_conflict_copy(l.v[i].path, l.v[i].path_len);
    lr_file_list_release(&l);
    return n;
}

static bool same_content(struct dev *d, const char *path, uint32_t seed, size_t n)
{
    struct lr_file_rec r, want;
    if (get(d, path, &r) != 0)
        return false;
    uint32_t syms[64];
    for (size_t i = 0; i < n; i++)
        syms[i] = seed * 1000 + (uint32_t)i;
    rec_base(&want, path, LR_FT_FILE, 0, 0);
    rec_syms(&want, syms, n);
    bool same = !r.deleted && r.type == LR_FT_FILE && r.size == want.size &&
                memcmp(&r.blocks_hash, &want.blocks_hash, LR_HASH_LEN) == 0;
    lr_file_rec_release(&r);
    lr_file_rec_release(&want);
    return same;
}

/* The contract's copy name, built independently of lr_sync_conflict_name. */
static void contract_copy_name(const char *dir_and_name, const char *ext, int64_t mtime_s,
                               const struct dev *author, char *out, size_t outlen)
{
    time_t t = (time_t)mtime_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    char d7[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(&author->id, d7);
    snprintf(out, outlen, "%s.sync-conflict-%04d%02d%02d-%02d%02d%02d-%s%s", dir_and_name,
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, d7,
             ext);
}

/* ==== 1. newer / older / concurrent vectors ======================================== */

static void test_vectors_newer_older(void **state)
{
    (void)state;
    struct dev a, b, c;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    dev_open(&c, 0x63);
    struct pull p = {0};

    w_file(&a, "f.txt", 1, 3, T0);
    converge(&a, &b, 4);
    converge(&b, &c, 4); /* C holds the first version, then goes away */
    assert_true(same_content(&c, "f.txt", 1, 3));

    /* newer: B edits; A takes it (a content change: only the changed chunk moves) */
    b.now_s += 100;
    uint32_t v2[] = {1000, 1001, 7777};
    w_file_syms(&b, "f.txt", v2, 3, T0 + 100, 0644);
    sync_index(&b, &a);
    assert_int_equal(need_items(&a), 1);
    pull(&a, &p);
    const struct op *o = op_find(&p, "f.txt");
    assert_non_null(o);
    assert_int_equal(o->action, LR_SYNC_TAKE_REMOTE);
    assert_int_equal(o->apply, LR_SYNC_APPLY_FILE);
    assert_int_equal(p.net_chunks, 1);
    assert_int_equal(p.net_bytes, sym_len(7777));
    struct lr_file_rec ra, rb;
    assert_int_equal(get(&a, "f.txt", &ra), 0);
    assert_int_equal(get(&b, "f.txt", &rb), 0);
    assert_true(rec_equal(&ra, &rb));
    assert_int_equal(lr_vv_compare(&ra.vv, &rb.vv), LR_VV_EQUAL);
    lr_file_rec_release(&ra);
    lr_file_rec_release(&rb);
    pull_reset(&p);

    /* older: C comes back with the first version; A neither needs nor applies it */
    sync_index(&c, &a);
    assert_int_equal(need_items(&a), 0);
    pull(&a, &p);
    assert_int_equal(p.nops, 0);
    assert_int_equal(p.applied, 0);
    assert_int_equal(get(&a, "f.txt", &ra), 0);
    assert_int_equal(ra.chunks[2].len, sym_len(7777));
    lr_file_rec_release(&ra);
    pull_reset(&p);
    /* and C takes the newer one from A */
    sync_index(&a, &c);
    pull(&c, &p);
    assert_true(op_find(&p, "f.txt") && op_find(&p, "f.txt")->action == LR_SYNC_TAKE_REMOTE);
    pull_reset(&p);
    converge(&a, &c, 4);
    assert_same_tree(&a, &c);

    dev_close(&a);
    dev_close(&b);
    dev_close(&c);
}

static void test_vectors_concurrent_conflict(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    struct pull pa = {0}, pb = {0};
    w_file(&a, "docs/report.txt", 1, 2, T0);
    converge(&a, &b, 4);

    /* both edit while apart; B's edit has the newer mtime */
    a.now_s += 50;
    b.now_s += 60;
    w_file(&a, "docs/report.txt", 2, 2, T0 + 300);
    w_file(&b, "docs/report.txt", 3, 2, T0 + 400);
    sync_index(&a, &b);
    sync_index(&b, &a);

    /* B holds the winner: nothing changes there, no copy */
    pull(&b, &pb);
    const struct op *o = op_find(&pb, "docs/report.txt");
    assert_non_null(o);
    assert_int_equal(o->action, LR_SYNC_CONFLICT);
    assert_int_equal(o->conflict, LR_SYNC_CONFLICT_CONTENT);
    assert_int_equal(o->apply, LR_SYNC_APPLY_NONE);
    assert_false(o->copy_here);
    assert_int_equal(count_conflict_copies(&b), 0);
    assert_true(same_content(&b, "docs/report.txt", 3, 2));

    /* A holds the loser: copy named per the contract, then B's version with the merged vector */
    pull(&a, &pa);
    o = op_find(&pa, "docs/report.txt");
    assert_non_null(o);
    assert_int_equal(o->action, LR_SYNC_CONFLICT);
    assert_true(o->copy_here);
    assert_int_equal(o->rc, 1); /* B's chunks are fetched */
    assert_int_equal(pa.conflicts, 1);
    char want[256];
    contract_copy_name("docs/report", ".txt", T0 + 300, &a, want, sizeof(want));
    assert_true(same_content(&a, want, 2, 2));
    assert_true(same_content(&a, "docs/report.txt", 3, 2));
    struct lr_file_rec r;
    assert_int_equal(get(&a, "docs/report.txt", &r), 0);
    assert_int_equal(lr_vv_get(&r.vv, a.short_id), a.now_s);
    assert_int_equal(lr_vv_get(&r.vv, b.short_id), b.now_s);
    lr_file_rec_release(&r);
    pull_reset(&pa);
    pull_reset(&pb);

    converge(&a, &b, 4);
    assert_same_tree(&a, &b);
    assert_int_equal(count_conflict_copies(&a), 1);
    assert_true(same_content(&b, want, 2, 2));
    dev_close(&a);
    dev_close(&b);
}

/*
 * Equal mtimes: the rule gives the name to a fixed order of device
 * IDs. Two worlds swap which device wrote which content; the same device
 * wins in both, the one with the larger short ID (until session 31 the
 * content decided ties: the same content won in both). Both devices always
 * agree.
 */
static void test_vectors_mtime_tie(void **state)
{
    (void)state;
    int winner_dev[2];
    for (int world = 0; world < 2; world++) {
        struct dev a, b;
        dev_open(&a, 0x21);
        dev_open(&b, 0x42);
        w_file(&a, "t.bin", 1, 2, T0);
        converge(&a, &b, 4);
        a.now_s += 10;
        b.now_s += 20;
        w_file(&a, "t.bin", world ? 5 : 4, 2, T0 + 500);
        w_file(&b, "t.bin", world ? 4 : 5, 2, T0 + 500);
        converge(&a, &b, 6);
        assert_same_tree(&a, &b);
        assert_int_equal(count_conflict_copies(&a), 1);
        /* who kept the name: the device whose content it is */
        bool a_won = same_content(&a, "t.bin", world ? 5 : 4, 2);
        assert_true(a_won || same_content(&a, "t.bin", world ? 4 : 5, 2));
        winner_dev[world] = a_won ? 0 : 1;
        dev_close(&a);
        dev_close(&b);
    }
    assert_int_equal(winner_dev[0], winner_dev[1]);
    assert_int_equal(winner_dev[0], 1); /* b: 0x42 > 0x21 */
}

/*
 * Three devices edit one file concurrently; each pulls only the first
 * candidate of a need (as the driver does) and they gossip pairwise until
 * nothing is needed anywhere: the newest mtime keeps the name everywhere and
 * each losing version exists once as a conflict copy.
 */
static void test_three_devices_conflict(void **state)
{
    (void)state;
    struct dev d[3];
    dev_open(&d[0], 0x21);
    dev_open(&d[1], 0x42);
    dev_open(&d[2], 0x63);
    w_file(&d[0], "shared.txt", 1, 2, T0);
    converge(&d[0], &d[1], 4);
    converge(&d[0], &d[2], 4);
    const int64_t mt[3] = {T0 + 200, T0 + 300, T0 + 100}; /* device 1 wins */
    for (int i = 0; i < 3; i++) {
        d[i].now_s += 10 * (uint64_t)(i + 1);
        w_file(&d[i], "shared.txt", 2 + (uint32_t)i, 2, mt[i]);
    }
    int it;
    for (it = 0; it < 12; it++) {
        for (int x = 0; x < 3; x++)
            for (int y = 0; y < 3; y++)
                if (x != y)
                    sync_index(&d[x], &d[y]);
        for (int x = 0; x < 3; x++) {
            struct pull p = {0};
            pull(&d[(x + it) % 3], &p);
            pull_reset(&p);
        }
        if (need_items(&d[0]) + need_items(&d[1]) + need_items(&d[2]) == 0)
            break;
    }
    assert_true(it < 12);
    assert_same_tree(&d[0], &d[1]);
    assert_same_tree(&d[0], &d[2]);
    assert_true(same_content(&d[0], "shared.txt", 3, 2));
    assert_int_equal(count_conflict_copies(&d[0]), 2);
    char c0[128], c2[128];
    contract_copy_name("shared", ".txt", mt[0], &d[0], c0, sizeof(c0));
    contract_copy_name("shared", ".txt", mt[2], &d[2], c2, sizeof(c2));
    assert_true(same_content(&d[1], c0, 2, 2));
    assert_true(same_content(&d[1], c2, 4, 2));
    for (int i = 0; i < 3; i++)
        dev_close(&d[i]);
}

/* Counters never go backwards after the database is lost. */
static void test_counters_after_db_loss(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    struct pull p = {0};
    a.now_s = (uint64_t)T0 + 1000;
    w_file(&a, "keep.txt", 1, 2, T0);
    w_file(&a, "gone-while-db-lost.txt", 2, 1, T0);
    /* several changes within one second: counters run ahead of the clock */
    for (int i = 0; i < 5; i++)
        w_file(&a, "busy.txt", 10 + (uint32_t)i, 1, T0 + i);
    struct lr_file_rec r;
    assert_int_equal(get(&a, "busy.txt", &r), 0);
    uint64_t before = lr_vv_get(&r.vv, a.short_id);
    assert_int_equal(before, a.now_s + 4);
    lr_file_rec_release(&r);
    converge(&a, &b, 4);

    /* A's database is lost; the rescan a little later finds keep.txt and busy.txt */
    struct lr_folder_info old_info, new_info;
    assert_int_equal(lr_index_folder_get(a.ix, FOLDER, &old_info, NULL), 0);
    dev_lose_db(&a);
    a.now_s += 60;
    w_file(&a, "keep.txt", 1, 2, T0);
    w_file(&a, "busy.txt", 14, 1, T0 + 4);
    assert_int_equal(lr_index_folder_get(a.ix, FOLDER, &new_info, NULL), 0);
    assert_true(new_info.index_id != old_info.index_id);
    assert_int_equal(get(&a, "busy.txt", &r), 0);
    assert_true(lr_vv_get(&r.vv, a.short_id) > before);
    lr_file_rec_release(&r);

    /* B takes the rescanned versions as newer (same content: record only, no data) */
    struct conn_stats st;
    connect_dir(&a, &b, SIZE_MAX, &st);
    assert_int_equal(st.rc, 0);
    assert_true(st.first_flag_on_first); /* new index ID: full index */
    pull(&b, &p);
    assert_int_equal(op_find(&p, "busy.txt")->action, LR_SYNC_TAKE_REMOTE);
    assert_int_equal(op_find(&p, "busy.txt")->apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(op_find(&p, "keep.txt")->apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(p.net_bytes, 0);
    /* a file A no longer knows about is not a delete: B keeps it and gives it back */
    assert_null(op_find(&p, "gone-while-db-lost.txt"));
    assert_true(is_live(&b, "gone-while-db-lost.txt"));
    pull_reset(&p);
    converge(&a, &b, 4);
    assert_same_tree(&a, &b);
    assert_true(is_live(&a, "gone-while-db-lost.txt"));
    /* the next local change on A, still within the same second, dominates */
    w_file(&a, "busy.txt", 15, 1, T0 + 5);
    sync_index(&a, &b);
    pull(&b, &p);
    assert_int_equal(op_find(&p, "busy.txt")->action, LR_SYNC_TAKE_REMOTE);
    pull_reset(&p);
    dev_close(&a);
    dev_close(&b);
}

/* ==== 2. identical content merge, metadata only ===================================== */

static void test_identical_content_merge(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    struct pull pa = {0}, pb = {0};
    /* the same files made on both devices independently (concurrent vectors) */
    w_dir(&a, "d");
    w_dir(&b, "d");
    w_file(&a, "d/same.bin", 7, 4, T0);
    w_file(&b, "d/same.bin", 7, 4, T0);
    w_file(&a, "meta.bin", 8, 2, T0 + 10);
    uint32_t m[] = {8000, 8001};
    w_file_syms(&b, "meta.bin", m, 2, T0 + 20, 0600);
    sync_index(&a, &b);
    sync_index(&b, &a);
    pull(&a, &pa);
    pull(&b, &pb);
    const char *paths[] = {"d", "d/same.bin"};
    for (size_t i = 0; i < 2; i++) {
        const struct op *oa = op_find(&pa, paths[i]), *ob = op_find(&pb, paths[i]);
        assert_true(oa && ob);
        assert_int_equal(oa->action, LR_SYNC_MERGE_VV);
        assert_int_equal(ob->action, LR_SYNC_MERGE_VV);
        assert_int_equal(oa->conflict, LR_SYNC_CONFLICT_NONE);
        assert_int_equal(oa->apply, LR_SYNC_APPLY_RECORD);
        assert_int_equal(ob->apply, LR_SYNC_APPLY_RECORD);
    }
    /* metadata only: B's newer mtime wins on both, set on A's disk, no copy */
    const struct op *oa = op_find(&pa, "meta.bin"), *ob = op_find(&pb, "meta.bin");
    assert_int_equal(oa->action, LR_SYNC_MERGE_VV);
    assert_int_equal(oa->conflict, LR_SYNC_CONFLICT_METADATA);
    assert_int_equal(oa->apply, LR_SYNC_APPLY_META);
    assert_int_equal(ob->action, LR_SYNC_MERGE_VV);
    assert_int_equal(ob->apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(pa.conflicts + pb.conflicts, 0);
    assert_int_equal(pa.net_bytes + pb.net_bytes, 0);
    assert_int_equal(pa.local_bytes + pb.local_bytes, 0);
    /* converged in one exchange: equal merged vectors, nothing needed */
    assert_int_equal(need_items(&a), 0);
    assert_int_equal(need_items(&b), 0);
    assert_same_tree(&a, &b);
    struct lr_file_rec r;
    assert_int_equal(get(&a, "meta.bin", &r), 0);
    assert_int_equal(r.mode, 0600);
    assert_true(r.mtime_ns == (T0 + 20) * NS);
    assert_int_equal(r.vv.n, 2);
    lr_file_rec_release(&r);
    assert_int_equal(count_conflict_copies(&a) + count_conflict_copies(&b), 0);
    /* and the next exchange changes nothing */
    pull_reset(&pa);
    pull_reset(&pb);
    sync_index(&a, &b);
    sync_index(&b, &a);
    pull(&a, &pa);
    pull(&b, &pb);
    assert_int_equal(pa.nops + pb.nops, 0);
    pull_reset(&pa);
    pull_reset(&pb);
    dev_close(&a);
    dev_close(&b);
}

/* ==== 3. modify vs delete =========================================================== */

static void test_modify_vs_delete(void **state)
{
    (void)state;
    struct dev a, b, c;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    dev_open(&c, 0x63);
    struct pull pa = {0}, pb = {0};
    w_file(&a, "edited.txt", 1, 2, T0);
    w_file(&a, "plain.txt", 2, 2, T0);
    w_file(&a, "seen.txt", 3, 2, T0);
    converge(&a, &b, 4);
    converge(&a, &c, 4); /* C holds the first versions, then goes away */
    /* B edits seen.txt and A receives that before deleting it */
    b.now_s += 5;
    w_file(&b, "seen.txt", 4, 2, T0 + 5);
    converge(&a, &b, 4);

    a.now_s += 10;
    b.now_s += 20;
    w_del(&a, "edited.txt"); /* a tombstone of the version before B's edit */
    w_file(&b, "edited.txt", 5, 2, T0 + 20);
    w_del(&a, "plain.txt"); /* the current version: B did not touch it */
    w_del(&a, "seen.txt");  /* the current version, B's edit included */
    sync_index(&a, &b);
    sync_index(&b, &a);

    pull(&b, &pb);
    const struct op *o = op_find(&pb, "edited.txt");
    assert_int_equal(o->action, LR_SYNC_CONFLICT);
    assert_int_equal(o->conflict, LR_SYNC_CONFLICT_MODIFY_DELETE);
    assert_int_equal(o->apply, LR_SYNC_APPLY_NONE);
    assert_true(same_content(&b, "edited.txt", 5, 2)); /* modify beats delete */
    assert_int_equal(op_find(&pb, "plain.txt")->apply, LR_SYNC_APPLY_DELETE);
    assert_int_equal(op_find(&pb, "seen.txt")->apply, LR_SYNC_APPLY_DELETE);
    assert_false(is_live(&b, "plain.txt"));
    assert_false(is_live(&b, "seen.txt"));

    /* the deleting device brings the edit back */
    pull(&a, &pa);
    o = op_find(&pa, "edited.txt");
    assert_int_equal(o->action, LR_SYNC_CONFLICT);
    assert_int_equal(o->apply, LR_SYNC_APPLY_FILE);
    assert_false(o->copy_here);
    pull_reset(&pa);
    pull_reset(&pb);
    converge(&a, &b, 4);
    assert_same_tree(&a, &b);
    assert_true(same_content(&a, "edited.txt", 5, 2));
    assert_int_equal(count_conflict_copies(&a), 0);

    /* C deletes the version it holds, from before B's edit, and comes back
     * later: its tombstone does not delete B's edit either */
    c.now_s = a.now_s + 1000;
    w_del(&c, "edited.txt");
    sync_index(&c, &b);
    pull(&b, &pb);
    o = op_find(&pb, "edited.txt");
    assert_non_null(o);
    assert_int_equal(o->action, LR_SYNC_CONFLICT);
    assert_int_equal(o->apply, LR_SYNC_APPLY_NONE);
    assert_true(same_content(&b, "edited.txt", 5, 2));
    pull_reset(&pb);
    dev_close(&c);
    dev_close(&a);
    dev_close(&b);
}

/* ==== 4/5. add before delete; renames served from local chunks ========================= */

static void test_rename_within_page(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    struct pull p = {0};
    w_file(&a, "old.bin", 1, 8, T0);
    w_file(&a, "keep/edit.bin", 2, 8, T0);
    converge(&a, &b, 4);

    /* rename (add + delete, the add sorting after the delete), a move into a new
     * directory, and a rename with one chunk changed */
    a.now_s += 10;
    w_file(&a, "zz-new.bin", 1, 8, T0);
    w_del(&a, "old.bin");
    w_dir(&a, "moved");
    uint32_t e[8];
    for (uint32_t i = 0; i < 8; i++)
        e[i] = 2000 + i;
    e[3] = 99999;
    w_file_syms(&a, "moved/edit2.bin", e, 8, T0 + 10, 0644);
    w_del(&a, "keep/edit.bin");
    sync_index(&a, &b);
    pull(&b, &p);
    /* adds first, deletes at the end of the round */
    assert_true(op_index(&p, "zz-new.bin") < op_index(&p, "old.bin"));
    assert_true(op_index(&p, "moved") < op_index(&p, "moved/edit2.bin"));
    assert_true(op_index(&p, "moved/edit2.bin") < op_index(&p, "keep/edit.bin"));
    /* the renamed file costs no network; the edited one only its changed chunk */
    assert_int_equal(op_find(&p, "zz-new.bin")->rc, 0);
    assert_int_equal(p.net_chunks, 1);
    assert_int_equal(p.net_bytes, sym_len(99999));
    uint64_t want_local = 0;
    for (uint32_t i = 0; i < 8; i++)
        want_local += sym_len(1000 + i) + (i == 3 ? 0 : sym_len(2000 + i));
    assert_int_equal(p.local_bytes, want_local);
    assert_false(is_live(&b, "old.bin"));
    pull_reset(&p);
    converge(&a, &b, 4);
    assert_same_tree(&a, &b);
    dev_close(&a);
    dev_close(&b);
}

/*
 * A directory of more files than a pull page renamed: its deletes ("a/...")
 * sort before its adds ("z/...") and fill whole pages. The driver keeps the
 * deletes for the end of the round, so every add is built from local chunks;
 * applying deletes per page (the knob) makes the same rename download data,
 * which shows the check has teeth.
 */
enum rename_mode {
    RN_DRIVER = 0,    /* as the driver does it */
    RN_PER_PAGE = 1,  /* deletes applied with each page (the knob) */
    RN_MID_BURST = 2, /* another pull round runs between two INDEX messages */
    RN_CUT = 3,       /* new files need more transfers than a round may start */
};

/* A round between two INDEX messages: the daemon's pull_start holds the
 * deletes while a connected peer's burst has not ended (LAST). */
static void pull_between(struct dev *rx, void *user)
{
    struct pull *p = user;
    p->hold_deletes = true;
    pull_job(rx, p);
    p->hold_deletes = false;
}

static void rename_dir(enum rename_mode mode, struct pull *out)
{
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    const size_t n = PULL_PAGE + PULL_PAGE / 4;
    char path[64];
    assert_int_equal(lr_index_begin(a.ix, NULL), 0);
    w_dir(&a, "a");
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "a/f%05zu", i);
        w_file(&a, path, 10 + (uint32_t)i, 2, T0);
    }
    assert_int_equal(lr_index_commit(a.ix, NULL), 0);
    converge(&a, &b, 4);

    /* the scanner's order: the walk passes "a" and its children (gone) before "z" */
    a.now_s += 100;
    assert_int_equal(lr_index_begin(a.ix, NULL), 0);
    w_del(&a, "a");
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "a/f%05zu", i);
        w_del(&a, path);
    }
    w_dir(&a, "z");
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "z/f%05zu", i);
        w_file(&a, path, 10 + (uint32_t)i, 2, T0);
    }
    if (mode == RN_CUT) {
        /* on the second page, between the deletes and the adds */
        w_dir(&a, "b");
        for (uint32_t i = 0; i < 5; i++) {
            snprintf(path, sizeof(path), "b/new%u", i);
            w_file(&a, path, 900000 + i, 2, T0);
        }
        out->room_limit = 3;
    }
    assert_int_equal(lr_index_commit(a.ix, NULL), 0);
    out->deletes_per_page = mode == RN_PER_PAGE;
    if (mode == RN_MID_BURST) {
        between_msgs = pull_between;
        between_user = out;
    }
    sync_index(&a, &b);
    between_msgs = NULL;
    if (mode == RN_CUT)
        pull(&b, out); /* the cut round resumes */
    else
        pull_job(&b, out); /* one round */
    if (mode == RN_CUT) {
        /* Every trigger while a cut round is pending resumes it (pull_start takes
         * f->pull_after), here the commit of its own transfers. The resumed
         * round walks pass 0 from the cut on and sees no delete there (they
         * sort before); it runs the delete passes anyway (it did not see what
         * sorted before its start), so the folder settles. */
        assert_false(is_live(&b, "a"));
        assert_int_equal(need_items(&b), 0);
    } else if (mode != RN_PER_PAGE) {
        assert_false(is_live(&b, "a")); /* its children sat on two pages: pass 2 */
        assert_int_equal(need_items(&b), 0);
    }
    if (mode != RN_PER_PAGE) {
        converge(&a, &b, 4);
        assert_same_tree(&a, &b);
    }
    dev_close(&a);
    dev_close(&b);
}

static void test_rename_dir_across_pages(void **state)
{
    (void)state;
    struct pull p = {0};
    rename_dir(RN_DRIVER, &p);
    const size_t n = PULL_PAGE + PULL_PAGE / 4;
    assert_int_equal(p.net_bytes, 0);
    assert_int_equal(p.net_chunks, 0);
    /* every add of the round came before every delete */
    size_t last_add = 0, first_del = SIZE_MAX, dels = 0, adds = 0;
    for (size_t i = 0; i < p.nops; i++) {
        if (p.ops[i].rc < 0)
            continue;
        if (p.ops[i].apply == LR_SYNC_APPLY_DELETE) {
            dels++;
            if (first_del == SIZE_MAX)
                first_del = i;
        } else {
            adds++;
            last_add = i;
        }
    }
    assert_int_equal(adds, n + 1);
    assert_int_equal(dels, n + 1);
    assert_true(last_add < first_del);
    pull_reset(&p);

    rename_dir(RN_PER_PAGE, &p);
    print_message("directory rename of %zu files: 0 bytes fetched; with deletes per page %llu\n", n,
                  (unsigned long long)p.net_bytes);
    assert_true(p.net_bytes > 0);
    pull_reset(&p);

    /* A pull round may run between two INDEX messages of one burst (a transfer
     * commit or an earlier round re-triggers it; the job queue interleaves
     * them). The first message holds the tombstones, the adds follow. */
    rename_dir(RN_MID_BURST, &p);
    print_message("... with a pull round between two INDEX messages of the burst: %llu bytes\n",
                  (unsigned long long)p.net_bytes);
    assert_int_equal(p.net_bytes, 0); /* the round between held its deletes */
    pull_reset(&p);

    /* A round cut short for lack of transfer slots (SYNC_XFERS_MAX) before it
     * reached the adds: the deletes wait for the round that reaches the end */
    rename_dir(RN_CUT, &p);
    assert_true(p.rounds >= 2);
    uint64_t want = 0;
    for (uint32_t i = 0; i < 5; i++)
        want += sym_len(900000000 + i * 1000) + sym_len(900000000 + i * 1000 + 1);
    assert_int_equal(p.net_bytes, want);
    pull_reset(&p);
}

/* ==== 6. file <-> directory <-> symlink ============================================== */

static void test_type_changes(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    struct pull p = {0};
    w_file(&a, "fd", 1, 2, T0);   /* file -> directory */
    w_dir(&a, "df");              /* directory -> file */
    w_file(&a, "df/a", 2, 1, T0); /*   (children deleted) */
    w_dir(&a, "df/sub");
    w_file(&a, "df/sub/b", 3, 1, T0);
    w_file(&a, "fs", 4, 1, T0);     /* file -> symlink */
    w_link(&a, "sf", "target", T0); /* symlink -> file */
    w_link(&a, "sd", "target", T0); /* symlink -> directory */
    w_dir(&a, "ds");                /* directory -> symlink */
    w_file(&a, "ds/x", 5, 1, T0);
    w_dir(&a, "dl"); /* directory -> file whose content is on B already */
    w_file(&a, "dl/k", 21, 1, T0);
    w_file(&a, "stable.bin", 20, 3, T0);
    converge(&a, &b, 4);

    a.now_s += 10;
    w_dir(&a, "fd");
    w_file(&a, "fd/c", 6, 1, T0 + 10);
    w_del(&a, "df/sub/b");
    w_del(&a, "df/sub");
    w_del(&a, "df/a");
    w_file(&a, "df", 7, 1, T0 + 10);
    w_link(&a, "fs", "../elsewhere", T0 + 10);
    w_file(&a, "sf", 8, 1, T0 + 10);
    w_dir(&a, "sd");
    w_file(&a, "sd/y", 9, 1, T0 + 10);
    w_del(&a, "ds/x");
    w_link(&a, "ds", "ds-target", T0 + 10);
    w_del(&a, "dl/k");
    w_file(&a, "dl", 20, 3, T0 + 10);
    sync_index(&a, &b);
    pull(&b, &p);

    struct {
        const char *path;
        enum lr_sync_apply apply;
    } want[] = {{"fd", LR_SYNC_APPLY_DIR},     {"df", LR_SYNC_APPLY_FILE},
                {"fs", LR_SYNC_APPLY_SYMLINK}, {"sf", LR_SYNC_APPLY_FILE},
                {"sd", LR_SYNC_APPLY_DIR},     {"ds", LR_SYNC_APPLY_SYMLINK},
                {"dl", LR_SYNC_APPLY_FILE}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct op *o = op_find(&p, want[i].path);
        assert_non_null(o);
        assert_int_equal(o->action, LR_SYNC_TAKE_REMOTE);
        assert_int_equal(o->apply, want[i].apply);
    }
    /* file -> directory: the directory before what goes inside */
    assert_true(op_index(&p, "fd") < op_index(&p, "fd/c"));
    assert_true(op_index(&p, "sd") < op_index(&p, "sd/y"));
    /* directory -> file/symlink: the children go first, the directory only when empty */
    assert_true(op_index(&p, "df/sub/b") < op_index(&p, "df/sub"));
    assert_int_equal(op_find(&p, "df/sub")->rc, 0); /* emptied before its turn: no retry */
    assert_true(op_index(&p, "df") > op_index(&p, "df/sub"));
    assert_true(op_index(&p, "df") > op_index(&p, "df/a"));
    assert_true(op_index(&p, "ds") > op_index(&p, "ds/x"));
    assert_true(op_last(&p, "dl") > op_index(&p, "dl/k"));
    /* dir -> file/symlink after the round's deletes (plan.h's PHASE_AFTER; the
     * driver's directory pass): applied in this round, not failing first */
    assert_int_equal(op_find(&p, "ds")->rc, 0);
    assert_true(op_find(&p, "df")->rc >= 0);
    assert_int_equal(op_find(&p, "dl")->rc, 0);
    struct lr_file_rec r;
    assert_int_equal(get(&b, "ds", &r), 0);
    assert_int_equal(r.type, LR_FT_SYMLINK);
    assert_string_equal((const char *)r.target, "ds-target");
    lr_file_rec_release(&r);
    /* directory -> file, the content fetched (df) or all local (dl); the commit
     * checks the record decided against, the directory's (fixed in 2ff965a:
     * it expected no record and looped forever) */
    const char *d2f[] = {"df", "dl"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(get(&b, d2f[i], &r), 0);
        assert_int_equal(r.type, LR_FT_FILE);
        assert_false(r.deleted);
        lr_file_rec_release(&r);
    }
    assert_true(same_content(&b, "dl", 20, 3));
    assert_int_equal(p.commit_failed, 0);

    pull_reset(&p);
    converge(&a, &b, 4);
    assert_same_tree(&a, &b);

    /* concurrent file vs directory: the directory keeps the name; the device
     * holding the file copies it away first */
    a.now_s += 10;
    b.now_s += 20;
    w_dir(&a, "sf");
    w_file(&a, "sf/inside", 11, 1, T0 + 20);
    w_file(&b, "sf", 12, 1, T0 + 30); /* newer mtime, still loses to the directory */
    sync_index(&a, &b);
    sync_index(&b, &a);
    pull(&b, &p);
    const struct op *o = op_find(&p, "sf");
    assert_int_equal(o->conflict, LR_SYNC_CONFLICT_TYPE);
    assert_int_equal(o->apply, LR_SYNC_APPLY_DIR);
    assert_true(o->copy_here);
    assert_int_equal(o->rc, 0);
    assert_true(op_index(&p, "sf") < op_index(&p, "sf/inside"));
    char copy[128];
    contract_copy_name("sf", "", T0 + 30, &b, copy, sizeof(copy));
    assert_true(same_content(&b, copy, 12, 1));
    pull_reset(&p);
    converge(&a, &b, 4);
    assert_same_tree(&a, &b);
    assert_true(same_content(&a, copy, 12, 1));
    dev_close(&a);
    dev_close(&b);
}

/* ==== 7. index-ID mismatch -> full resend ============================================== */

static void remote_count(struct dev *rx, const struct dev *peer, size_t *n)
{
    struct lr_remote_list l;
    assert_int_equal(lr_index_remote_list(rx->ix, FOLDER, &peer->id, NULL, 0, 1000000, 0, &l, NULL),
                     0);
    *n = l.n;
    lr_remote_list_release(&l);
}

static void test_index_id_mismatch(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    char path[64];
    for (int i = 0; i < 50; i++) {
        snprintf(path, sizeof(path), "f%03d", i);
        w_file(&a, path, 1 + (uint32_t)i, 1, T0);
    }
    converge(&a, &b, 4);
    struct lr_folder_info ai;
    assert_int_equal(lr_index_folder_get(a.ix, FOLDER, &ai, NULL), 0);
    struct lr_remote_state rs;
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_true(rs.index_id == ai.index_id && rs.max_seq == 50);

    /* A's database is recreated: a new index ID, 10 records, sequences 1..10,
     * all below what B holds. An incremental "from 51" would skip them all. */
    dev_lose_db(&a);
    a.now_s += 100;
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof(path), "g%03d", i);
        w_file(&a, path, 100 + (uint32_t)i, 1, T0 + 100);
    }
    struct lr_folder_info ni;
    assert_int_equal(lr_index_folder_get(a.ix, FOLDER, &ni, NULL), 0);
    assert_true(ni.index_id != ai.index_id && ni.max_seq == 10);

    /* B still announces the old ID: A's sender sends a full index (FIRST) */
    struct lr_proto_folder bf;
    folders_of(&b, &a.id, &bf);
    assert_true(bf.peer_index_id == ai.index_id && bf.peer_seq == 50);
    assert_true(lr_proto_index_full_needed(ni.index_id, ni.max_seq, bf.peer_index_id, bf.peer_seq));

    /* A broken sender skipping FIRST is refused, and nothing of it is stored */
    struct frames fr = {0};
    struct sender s = {.decided = true, .first = false, .from = 1};
    assert_false(send_job(&a, &b.id, &s, &fr));
    assert_int_equal(fr.n, 1);
    struct lr_proto_burst burst;
    lr_proto_burst_init(&burst);
    struct msg_info mi;
    struct lr_err err = {0};
    assert_int_equal(recv_msg(&b, &a.id, &burst, ni.index_id, fr.p[0], fr.len[0], &mi, &err),
                     LR_EPROTO);
    lr_proto_burst_release(&burst);
    /* ... nor is a batch of another index than FOLDERS announced */
    lr_proto_burst_init(&burst);
    assert_int_equal(recv_msg(&b, &a.id, &burst, ai.index_id, fr.p[0], fr.len[0], &mi, &err),
                     LR_EPROTO);
    lr_proto_burst_release(&burst);
    frames_free(&fr);
    /* ... nor a stale batch of the old index, though B would take its sequence 51:
     * FOLDERS announced the new ID */
    struct lr_file_rec stale;
    rec_base(&stale, "stale", LR_FT_FILE, T0, 0644);
    uint32_t one = 424242;
    rec_syms(&stale, &one, 1);
    stale.seq = 51;
    assert_int_equal(lr_vv_set(&stale.vv, a.short_id, (uint64_t)T0 + 7), 0);
    struct lr_proto_index_batch sb;
    assert_int_equal(lr_proto_index_batch_init(&sb, FOLDER, ai.index_id, 0, 0), 0);
    size_t nb = 0;
    assert_int_equal(lr_proto_index_batch_add(&sb, &stale, &nb), 0);
    struct lr_buf sbuf;
    lr_buf_init(&sbuf, LR_PROTO_INDEX_MAX);
    assert_int_equal(lr_proto_index_batch_finish(&sb, LR_PROTO_INDEX_LAST, &sbuf), 0);
    lr_proto_burst_init(&burst);
    assert_int_equal(recv_msg(&b, &a.id, &burst, ni.index_id, sbuf.data, sbuf.len, &mi, &err),
                     LR_EPROTO);
    lr_proto_burst_release(&burst);
    lr_buf_release(&sbuf);
    lr_proto_index_batch_release(&sb);
    lr_file_rec_release(&stale);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_true(rs.index_id == ai.index_id && rs.max_seq == 50);

    /* The full resend is cut after its first message: B's FOLDERS then claims
     * nothing of the new index (full_pending), so the next connection restarts it */
    for (int i = 10; i < 2500; i++) {
        snprintf(path, sizeof(path), "g%04d", i);
        w_file(&a, path, 100 + (uint32_t)i, 1, T0 + 100);
    }
    struct conn_stats st;
    connect_dir(&a, &b, 1, &st);
    assert_int_equal(st.rc, 0);
    assert_true(st.first_flag_on_first);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_true(rs.index_id == ni.index_id && rs.full_pending);
    assert_int_equal(rs.max_seq, SEND_RECORDS); /* the stored sequence was reset, then rebuilt */
    folders_of(&b, &a.id, &bf);
    assert_int_equal(bf.peer_index_id, 0);
    connect_dir(&a, &b, SIZE_MAX, &st);
    assert_int_equal(st.rc, 0);
    assert_true(st.first_flag_on_first && st.first_seq == 1);
    assert_int_equal(st.firsts, 1);
    assert_int_equal(st.entries, 2500);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_true(rs.index_id == ni.index_id && rs.max_seq == 2500 && !rs.full_pending);
    /* the old index's records are forgotten, never read as deletions */
    size_t n;
    remote_count(&b, &a, &n);
    assert_int_equal(n, 2500);
    assert_true(is_live(&b, "f000"));

    /* A's database is restored from a backup: the same index ID, but sequences
     * 2501.. handed out again for other paths than B already saw under them.
     * An incremental "from 2801" would skip them: a full resend instead. */
    char cmd[1024];
    lr_index_close(a.ix);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s.bak'", a.db, a.db);
    assert_int_equal(system(cmd), 0);
    struct lr_err err2 = {0};
    assert_int_equal(lr_index_open(a.db, &a.ix, &err2), 0);
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof(path), "h%03d", i);
        w_file(&a, path, 5000 + (uint32_t)i, 1, T0 + 100);
    }
    sync_index(&a, &b);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_int_equal(rs.max_seq, 2800);
    lr_index_close(a.ix);
    snprintf(cmd, sizeof(cmd), "rm -f '%s-wal' '%s-shm' && mv '%s.bak' '%s'", a.db, a.db, a.db,
             a.db);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(lr_index_open(a.db, &a.ix, &err2), 0);
    struct lr_folder_info ri;
    assert_int_equal(lr_index_folder_get(a.ix, FOLDER, &ri, NULL), 0);
    assert_true(ri.index_id == ni.index_id && ri.max_seq == 2500);
    for (int i = 0; i < 100; i++) {
        snprintf(path, sizeof(path), "k%03d", i);
        w_file(&a, path, 6000 + (uint32_t)i, 1, T0 + 100);
    }
    connect_dir(&a, &b, SIZE_MAX, &st);
    assert_int_equal(st.rc, 0);
    assert_true(st.first_flag_on_first && st.first_seq == 1);
    assert_int_equal(st.entries, 2600);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_true(rs.index_id == ni.index_id && rs.max_seq == 2600 && !rs.full_pending);
    remote_count(&b, &a, &n);
    assert_int_equal(n, 2600);
    struct lr_remote_rec rr;
    assert_int_equal(
        lr_index_remote_get(b.ix, FOLDER, &a.id, (const uint8_t *)"k099", 4, 0, &rr, NULL), 0);
    lr_remote_rec_release(&rr);
    assert_int_equal(
        lr_index_remote_get(b.ix, FOLDER, &a.id, (const uint8_t *)"h000", 4, 0, &rr, NULL),
        LR_ENOTFOUND);
    /* and once caught up, increments again */
    folders_of(&b, &a.id, &bf);
    assert_false(lr_proto_index_full_needed(ri.index_id, 2600, bf.peer_index_id, bf.peer_seq));
    dev_close(&a);
    dev_close(&b);
}

/* ==== 8. resume by sequence ============================================================ */

static void test_resume_by_sequence(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    char path[64];
    assert_int_equal(lr_index_begin(a.ix, NULL), 0);
    for (int i = 0; i < 1500; i++) {
        snprintf(path, sizeof(path), "base/%05d", i);
        w_file(&a, path, 1 + (uint32_t)i, 1, T0);
    }
    assert_int_equal(lr_index_commit(a.ix, NULL), 0);
    sync_index(&a, &b);

    /* 3500 more: four sender jobs; the connection drops after two messages */
    assert_int_equal(lr_index_begin(a.ix, NULL), 0);
    for (int i = 0; i < 3500; i++) {
        snprintf(path, sizeof(path), "more/%05d", i);
        w_file(&a, path, 5000 + (uint32_t)i, 1, T0);
    }
    assert_int_equal(lr_index_commit(a.ix, NULL), 0);
    struct conn_stats st;
    connect_dir(&a, &b, 2, &st);
    assert_int_equal(st.rc, 0);
    assert_false(st.first_flag_on_first); /* incremental */
    assert_int_equal(st.first_seq, 1501);
    assert_int_equal(st.msgs, 2);
    struct lr_remote_state rs;
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    uint64_t got = rs.max_seq;
    assert_int_equal(got, 1500 + 2 * SEND_RECORDS);

    /* reconnect: B asks from what it stored, A sends from there, nothing twice */
    struct lr_proto_folder bf;
    folders_of(&b, &a.id, &bf);
    assert_int_equal(bf.peer_seq, got);
    connect_dir(&a, &b, SIZE_MAX, &st);
    assert_int_equal(st.rc, 0);
    assert_false(st.first_flag_on_first);
    assert_int_equal(st.first_seq, got + 1);
    assert_int_equal(st.entries, 5000 - got);
    assert_true(st.last_flag_on_last);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_int_equal(rs.max_seq, 5000);
    size_t n;
    remote_count(&b, &a, &n);
    assert_int_equal(n, 5000);
    /* up to date: the next burst is one empty LAST */
    connect_dir(&a, &b, SIZE_MAX, &st);
    assert_int_equal(st.msgs, 1);
    assert_int_equal(st.entries, 0);
    assert_true(st.last_flag_on_last);
    /* a crash before commit loses nothing but is asked again (the state commits
     * with the records): a batch rolled back leaves max_seq where it was */
    w_file(&a, "late", 9, 1, T0);
    struct frames fr = {0};
    struct sender s = {.decided = true, .from = 5001};
    send_job(&a, &b.id, &s, &fr);
    assert_int_equal(lr_index_begin(b.ix, NULL), 0);
    struct lr_proto_index ix;
    assert_int_equal(lr_proto_index_decode(fr.p[0], fr.len[0], NULL, &ix, NULL), 0);
    struct lr_remote_rec r;
    memset(&r, 0, sizeof(r));
    r.rec = ix.v[0].rec;
    r.wire_type = ix.v[0].wire_type;
    r.blk_total = ix.v[0].blk_total;
    r.blk_first = ix.v[0].blk_first;
    assert_int_equal(lr_index_remote_put(b.ix, FOLDER, &a.id, ix.hdr.index_id, &r, NULL), 0);
    lr_index_rollback(b.ix);
    lr_proto_index_release(&ix);
    frames_free(&fr);
    folders_of(&b, &a.id, &bf);
    assert_int_equal(bf.peer_seq, 5000);
    connect_dir(&a, &b, SIZE_MAX, &st);
    assert_int_equal(st.first_seq, 5001);
    assert_int_equal(st.entries, 1);

    /* the connection drops inside a record whose chunk list spans batches:
     * B's sequence stays below it, and the reconnect resends it whole */
    uint32_t *syms = lr_xcalloc(60000, sizeof(*syms));
    for (uint32_t i = 0; i < 60000; i++)
        syms[i] = 7000000 + i;
    struct lr_file_rec big;
    rec_base(&big, "huge.img", LR_FT_FILE, T0, 0600);
    rec_syms(&big, syms, 60000);
    free(syms);
    struct lr_hash big_blocks = big.blocks_hash;
    local_put(&a, &big);
    w_file(&a, "after-huge", 8, 1, T0);
    connect_dir(&a, &b, 1, &st);
    assert_int_equal(st.rc, 0);
    assert_int_equal(st.first_seq, 5002);
    assert_false(st.last_flag_on_last);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_int_equal(rs.max_seq, 5001);
    folders_of(&b, &a.id, &bf);
    assert_int_equal(bf.peer_seq, 5001);
    connect_dir(&a, &b, SIZE_MAX, &st);
    assert_int_equal(st.rc, 0);
    assert_int_equal(st.first_seq, 5002);
    assert_true(st.msgs >= 3 && st.last_flag_on_last);
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_true(rs.max_seq == 5003 && rs.open_seq == 0);
    struct lr_remote_rec hr;
    assert_int_equal(lr_index_remote_get(b.ix, FOLDER, &a.id, (const uint8_t *)"huge.img", 8,
                                         LR_IX_CHUNKS, &hr, NULL),
                     0);
    assert_int_equal(hr.rec.nchunks, 60000);
    assert_memory_equal(&hr.rec.blocks_hash, &big_blocks, LR_HASH_LEN);
    assert_false(hr.flags & LR_RREC_PARTIAL);
    lr_remote_rec_release(&hr);
    dev_close(&a);
    dev_close(&b);
}

/* ==== 9. index batching: a large index through the sender, bounded, round trip ======== */

static void test_index_batching_roundtrip(void **state)
{
    (void)state;
    struct dev a, b;
    dev_open(&a, 0x21);
    dev_open(&b, 0x42);
    const int n = 100000;
    char path[96];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(lr_index_begin(a.ix, NULL), 0);
    for (int i = 0; i < n; i++) {
        /* long names make the payloads big */
        if (i < 997) {
            snprintf(path, sizeof(path), "dir%03d", i);
            w_dir(&a, path);
        }
        snprintf(path, sizeof(path), "dir%03d/a-rather-long-file-name-to-fill-batches-%07d.dat",
                 i % 997, i);
        switch (i % 10) {
        case 0:
            w_link(&a, path, "../some/where/else", T0 + i);
            break;
        case 1:
            w_file(&a, path, (uint32_t)i, 1, T0 + i);
            w_del(&a, path);
            break;
        default:
            w_file(&a, path, (uint32_t)i, 1 + (size_t)(i % 7), T0 + i);
            break;
        }
        if (i % 10000 == 9999) {
            assert_int_equal(lr_index_commit(a.ix, NULL), 0);
            assert_int_equal(lr_index_begin(a.ix, NULL), 0);
        }
    }
    /* one file whose chunk list no batch holds: segments */
    uint32_t *syms = lr_xcalloc(60000, sizeof(*syms));
    for (uint32_t i = 0; i < 60000; i++)
        syms[i] = 3000000 + i;
    struct lr_file_rec big;
    rec_base(&big, "huge.img", LR_FT_FILE, T0, 0600);
    rec_syms(&big, syms, 60000);
    free(syms);
    local_put(&a, &big);
    assert_int_equal(lr_index_commit(a.ix, NULL), 0);

    struct conn_stats st;
    connect_dir(&a, &b, SIZE_MAX, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st.rc < 0)
        fail_msg("refused: %s", st.err.msg);
    print_message("index of %d records + a 60000-chunk file: %zu INDEX messages, largest %zu "
                  "bytes (raw %llu), %.1f s with the puts\n",
                  n, st.msgs, st.max_payload, (unsigned long long)st.max_raw,
                  (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    assert_true(st.max_payload <= LR_PROTO_INDEX_MAX);
    assert_true(st.max_raw <= LR_PROTO_INDEX_BATCH_RAW);
    assert_true(st.max_count <= LR_PROTO_INDEX_ENTRIES_MAX);
    assert_int_equal(st.firsts, 1);
    assert_true(st.first_flag_on_first && st.last_flag_on_last);
    assert_int_equal(st.lasts, 1);
    assert_true(st.msgs >= (size_t)n / SEND_RECORDS + 2); /* the big file took extra batches */

    /* round trip: every record as A holds it (sequence, vector, chunks) */
    struct lr_folder_info ai;
    assert_int_equal(lr_index_folder_get(a.ix, FOLDER, &ai, NULL), 0);
    struct lr_remote_state rs;
    assert_int_equal(lr_index_remote_state(b.ix, FOLDER, &a.id, &rs, NULL), 0);
    assert_true(rs.max_seq == ai.max_seq && rs.index_id == ai.index_id && !rs.full_pending);
    uint8_t after[128];
    size_t after_len = 0, total = 0;
    for (;;) {
        struct lr_file_list la;
        struct lr_remote_list lb;
        assert_int_equal(
            lr_index_list_by_path(a.ix, FOLDER, after, after_len, 5000, LR_IX_CHUNKS, &la, NULL),
            0);
        assert_int_equal(lr_index_remote_list(b.ix, FOLDER, &a.id, after, after_len, 5000,
                                              LR_IX_CHUNKS, &lb, NULL),
                         0);
        assert_int_equal(la.n, lb.n);
        for (size_t i = 0; i < la.n; i++) {
            const struct lr_file_rec *x = &la.v[i], *y = &lb.v[i].rec;
            if (!rec_equal(x, y) || x->seq != y->seq || x->nchunks != y->nchunks)
                fail_msg("record %s differs after the round trip", (const char *)x->path);
            for (size_t k = 0; k < x->nchunks; k++)
                assert_true(x->chunks[k].off == y->chunks[k].off &&
                            x->chunks[k].len == y->chunks[k].len &&
                            memcmp(&x->chunks[k].hash, &y->chunks[k].hash, LR_HASH_LEN) == 0);
        }
        total += la.n;
        bool end = la.n < 5000;
        if (!end) {
            after_len = la.v[la.n - 1].path_len;
            assert_true(after_len < sizeof(after));
            memcpy(after, la.v[la.n - 1].path, after_len);
        }
        lr_file_list_release(&la);
        lr_remote_list_release(&lb);
        if (end)
            break;
    }
    assert_int_equal(total, (size_t)n + 997 + 1);
    dev_close(&a);
    dev_close(&b);
}

int main(void)
{
    lr_log_set_level(LR_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_newer_older),
        cmocka_unit_test(test_vectors_concurrent_conflict),
        cmocka_unit_test(test_vectors_mtime_tie),
        cmocka_unit_test(test_three_devices_conflict),
        cmocka_unit_test(test_counters_after_db_loss),
        cmocka_unit_test(test_identical_content_merge),
        cmocka_unit_test(test_modify_vs_delete),
        cmocka_unit_test(test_rename_within_page),
        cmocka_unit_test(test_rename_dir_across_pages),
        cmocka_unit_test(test_type_changes),
        cmocka_unit_test(test_index_id_mismatch),
        cmocka_unit_test(test_resume_by_sequence),
        cmocka_unit_test(test_index_batching_roundtrip),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    print_message("%d known discrepancies with issue #4 (XFAIL)\n", xfails);
    return rc;
}
