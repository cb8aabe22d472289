/*
 * remote.c - remote indexes (each peer's announced records per folder), the
 * per-(folder, peer) sync state, and the derived need table.
 *
 * Tables (schema v2, docs/internals/index.md): remotes (one row per folder
 * and peer: index ID, max sequence stored, generation, full-resend mark,
 * what the peer holds of ours), rfiles (one row per folder, path and peer,
 * keyed (folder, path, remote) so one probe finds every peer's version of a
 * path), rchunks (block list of live files, offsets implied), need (one row
 * per needed path) and need_stats (counters kept by triggers on need).
 *
 * Version vectors cannot be compared in SQL, so the need of a path is
 * decided here in C whenever one of its inputs changes: a remote put or
 * drop, or a local put (index.c calls lr__ix_need_local_changed). Every
 * input of a path is read with one indexed probe, so the cost per write is
 * O(peers), and nothing ever walks a whole folder.
 */
#include "index/index_int.h"

#include "util/log.h"
#include "util/xalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* rfiles.flags bits: the public LR_RREC_* plus the tombstone bit. */
#define RF_DELETED 0x100u
#define RF_KNOWN_MASK (LR_RREC_UNKNOWN_TYPE | LR_RREC_PARTIAL | RF_DELETED)

/* need.kind */
#define KIND_FILE 0
#define KIND_OTHER 1
#define KIND_DELETE 2

/* Rows dropped per statement round when a generation is discarded. */
#define DROP_BATCH 256

#define RCOLS                                                                                      \
    "r.path, r.type, r.flags, r.size, r.mtime_ns, r.mode, r.target, r.vv, r.seq, r.blocks, r.id, " \
    "m.device, r.nblk"

enum rs_id {
    RS_STATE_GET,
    RS_STATE_ADD,
    RS_FULL_BEGIN,
    RS_SET_SENT,
    RS_SET_CHECK,
    RS_SET_MAXSEQ,
    RS_END_FULL,
    RS_DEL_REMOTE,
    RS_RFILE_UPSERT,
    RS_SEG_GET,
    RS_SEG_SET,
    RS_RCHUNKS_DEL,
    RS_RCHUNK_ADD,
    RS_RCHUNKS_GET,
    RS_RFILE_GET,
    RS_RFILE_LIST,
    RS_PATH_ROWS,
    RS_PATH_LIGHT,
    RS_RCHUNKS_PAGE,
    RS_RFILE_ID,
    RS_PEERS,
    RS_LOCAL_VV,
    RS_NEED_UPSERT,
    RS_NEED_DEL,
    RS_NEED_LIST,
    RS_NEED_STATS,
    RS_STALE,
    RS_RFILE_DEL,
    RS_F_DEL_NEED,
    RS_F_DEL_RCHUNKS,
    RS_F_DEL_RFILES,
    RS_F_DEL_REMOTES,
    RS__COUNT
};
_Static_assert(RS__COUNT <= LR__IX_REMOTE_STMTS, "raise LR__IX_REMOTE_STMTS");

static const char *const rs_sql[RS__COUNT] = {
    [RS_STATE_GET] = "SELECT id, index_id, max_seq, gen, full_pending, sent_index_id, sent_seq, "
                     "open_seq, open_path, check_seq, check_digest, check_path FROM remotes "
                     "WHERE folder = ?1 AND device = ?2",
    [RS_STATE_ADD] = "INSERT INTO remotes(folder, device) VALUES (?1, ?2) RETURNING id",
    [RS_FULL_BEGIN] = "UPDATE remotes SET index_id = ?2, max_seq = 0, gen = gen + 1, "
                      "full_pending = 1, open_seq = 0, open_path = NULL, check_seq = 0, "
                      "check_digest = NULL, check_path = NULL WHERE id = ?1",
    [RS_SET_CHECK] = "UPDATE remotes SET check_seq = ?2, check_digest = ?3, check_path = ?5 "
                     "WHERE id = ?1 AND index_id = ?4",
    [RS_SET_SENT] = "UPDATE remotes SET sent_index_id = ?2, sent_seq = ?3 WHERE id = ?1",
    [RS_SET_MAXSEQ] =
        "UPDATE remotes SET max_seq = ?2, open_seq = ?3, open_path = ?4 WHERE id = ?1",
    [RS_END_FULL] = "UPDATE remotes SET full_pending = 0 WHERE id = ?1",
    [RS_DEL_REMOTE] = "DELETE FROM remotes WHERE id = ?1",
    [RS_RFILE_UPSERT] =
        "INSERT INTO rfiles(folder, path, remote, type, flags, size, mtime_ns, mode, target, vv, "
        "seq, blocks, nblk, total, cover, gen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
        "?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT(folder, path, remote) DO UPDATE SET "
        "type = excluded.type, flags = excluded.flags, size = excluded.size, "
        "mtime_ns = excluded.mtime_ns, mode = excluded.mode, target = excluded.target, "
        "vv = excluded.vv, seq = excluded.seq, blocks = excluded.blocks, nblk = excluded.nblk, "
        "total = excluded.total, cover = excluded.cover, gen = excluded.gen RETURNING id",
    [RS_SEG_GET] = "SELECT id, seq, flags, nblk, total, cover, size, vv, type, mtime_ns, mode "
                   "FROM rfiles WHERE folder = ?1 AND path = ?2 AND remote = ?3",
    [RS_SEG_SET] = "UPDATE rfiles SET nblk = ?2, cover = ?3, flags = ?4, blocks = ?5, gen = ?6 "
                   "WHERE id = ?1",
    [RS_RCHUNKS_DEL] = "DELETE FROM rchunks WHERE file = ?1",
    [RS_RCHUNK_ADD] = "INSERT INTO rchunks(file, idx, len, hash) VALUES (?1, ?2, ?3, ?4)",
    [RS_RCHUNKS_GET] = "SELECT len, hash FROM rchunks WHERE file = ?1 ORDER BY idx",
    [RS_RFILE_GET] = "SELECT " RCOLS " FROM rfiles r JOIN remotes m ON m.id = r.remote "
                     "WHERE r.folder = ?1 AND r.path = ?2 AND r.remote = ?3",
    [RS_RFILE_LIST] = "SELECT " RCOLS " FROM rfiles r JOIN remotes m ON m.id = r.remote "
                      "WHERE r.folder = ?1 AND r.path > ?2 AND r.remote = ?3 "
                      "ORDER BY r.path LIMIT ?4",
    [RS_PATH_ROWS] = "SELECT " RCOLS " FROM rfiles r JOIN remotes m ON m.id = r.remote "
                     "WHERE r.folder = ?1 AND r.path = ?2 ORDER BY m.device",
    [RS_PATH_LIGHT] =
        "SELECT type, flags, size, vv, blocks FROM rfiles WHERE folder = ?1 AND path = ?2",
    [RS_RCHUNKS_PAGE] = "SELECT len, hash FROM rchunks WHERE file = ?1 AND idx >= ?2 ORDER BY idx "
                        "LIMIT ?3",
    [RS_RFILE_ID] = "SELECT id, blocks FROM rfiles WHERE folder = ?1 AND path = ?2 AND remote = ?3",
    [RS_PEERS] = "SELECT device FROM remotes WHERE folder = ?1 ORDER BY device",
    [RS_LOCAL_VV] = "SELECT vv FROM files WHERE folder = ?1 AND path = ?2",
    [RS_NEED_UPSERT] = "INSERT INTO need(folder, path, kind, flags, size) VALUES (?1, ?2, ?3, ?4, "
                       "?5) ON CONFLICT(folder, path) DO UPDATE SET kind = excluded.kind, "
                       "flags = excluded.flags, size = excluded.size WHERE kind <> excluded.kind "
                       "OR flags <> excluded.flags OR size <> excluded.size",
    [RS_NEED_DEL] = "DELETE FROM need WHERE folder = ?1 AND path = ?2",
    [RS_NEED_LIST] = "SELECT path FROM need WHERE folder = ?1 AND path > ?2 ORDER BY path LIMIT ?3",
    [RS_NEED_STATS] = "SELECT items, files, deletes, bytes FROM need_stats WHERE folder = ?1",
    [RS_STALE] = "SELECT id, path FROM rfiles WHERE remote = ?1 AND gen < ?2 LIMIT ?3",
    [RS_RFILE_DEL] = "DELETE FROM rfiles WHERE id = ?1",
    [RS_F_DEL_NEED] = "DELETE FROM need WHERE folder = ?1",
    [RS_F_DEL_RCHUNKS] =
        "DELETE FROM rchunks WHERE file IN (SELECT id FROM rfiles WHERE folder = ?1)",
    [RS_F_DEL_RFILES] = "DELETE FROM rfiles WHERE folder = ?1",
    [RS_F_DEL_REMOTES] = "DELETE FROM remotes WHERE folder = ?1",
};

static sqlite3_stmt *rstmt(struct lr_index *ix, enum rs_id id, struct lr_err *err)
{
    if (!ix->rst[id]) {
        if (sqlite3_prepare_v3(ix->db, rs_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &ix->rst[id],
                               NULL) != SQLITE_OK) {
            lr__ix_dberr(ix, err, "prepare");
            ix->rst[id] = NULL;
            return NULL;
        }
    }
    return ix->rst[id];
}

static void done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Step a statement that returns no rows. */
static int step_done(struct lr_index *ix, sqlite3_stmt *s, const char *what, struct lr_err *err)
{
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, what);
    done(s);
    return rc;
}

/* Run a statement whose only parameter is ?1 = v. */
static int exec_id(struct lr_index *ix, enum rs_id id, int64_t v, struct lr_err *err)
{
    sqlite3_stmt *s = rstmt(ix, id, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, v);
    return step_done(ix, s, rs_sql[id], err);
}

void lr__ix_remote_finalize(struct lr_index *ix)
{
    for (int i = 0; i < RS__COUNT; i++) {
        sqlite3_finalize(ix->rst[i]);
        ix->rst[i] = NULL;
    }
}

/* ---- records ------------------------------------------------------------- */

void lr_remote_rec_release(struct lr_remote_rec *r)
{
    if (!r)
        return;
    lr_file_rec_release(&r->rec);
    memset(r, 0, sizeof(*r));
}

void lr_remote_list_release(struct lr_remote_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        lr_remote_rec_release(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void lr_device_list_release(struct lr_device_list *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void need_release(struct lr_need *n)
{
    for (size_t i = 0; i < n->ncand; i++) {
        lr_remote_rec_release(&n->cand[i].r);
        free(n->cand[i].holders);
    }
    free(n->cand);
    free(n->path);
    memset(n, 0, sizeof(*n));
}

void lr_need_list_release(struct lr_need_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        need_release(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* A row of RCOLS with what the need logic compares. */
struct prow {
    struct lr_remote_rec r;
    int64_t id;
    int64_t nblk;
    bool has_blocks;
};

static void prows_release(struct prow *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lr_remote_rec_release(&v[i].r);
    free(v);
}

/* Fill p from the current RCOLS row (p zeroed). Stored rows are checked, not trusted. */
static int read_rrow(struct lr_index *ix, sqlite3_stmt *s, struct prow *p, struct lr_err *err)
{
    memset(p, 0, sizeof(*p));
    struct lr_remote_rec *r = &p->r;
    size_t klen = (size_t)sqlite3_column_bytes(s, 0);
    const uint8_t *key = sqlite3_column_blob(s, 0);
    int64_t type = sqlite3_column_int64(s, 1);
    int64_t flags = sqlite3_column_int64(s, 2);
    if (!key || klen == 0 || klen > LR_INDEX_PATH_MAX || type < 0 ||
        (flags & ~(int64_t)RF_KNOWN_MASK) != 0 ||
        (!(flags & LR_RREC_UNKNOWN_TYPE) && type > LR_FT_SYMLINK) ||
        sqlite3_column_bytes(s, 11) != LR_DEVICE_ID_LEN)
        return lr_err_set(err, LR_EBADVAL, "index %s: corrupt remote record", ix->path);
    r->rec.path = lr__ix_from_key(key, klen);
    r->rec.path_len = klen;
    r->wire_type = (uint64_t)type;
    r->flags = (uint32_t)flags & (LR_RREC_UNKNOWN_TYPE | LR_RREC_PARTIAL);
    r->rec.type = (flags & LR_RREC_UNKNOWN_TYPE) ? LR_FT_UNKNOWN : (enum lr_ftype)type;
    r->rec.deleted = (flags & RF_DELETED) != 0;
    r->rec.size = (uint64_t)sqlite3_column_int64(s, 3);
    r->rec.mtime_ns = sqlite3_column_int64(s, 4);
    r->rec.mode = (uint32_t)sqlite3_column_int64(s, 5);
    if (sqlite3_column_type(s, 6) == SQLITE_BLOB) {
        size_t tl = (size_t)sqlite3_column_bytes(s, 6);
        if (tl > LR_INDEX_TARGET_MAX)
            goto bad;
        r->rec.target = lr_xmalloc(tl + 1);
        if (tl)
            memcpy(r->rec.target, sqlite3_column_blob(s, 6), tl);
        r->rec.target[tl] = 0;
        r->rec.target_len = tl;
    }
    if (lr_vv_decode(sqlite3_column_blob(s, 7), (size_t)sqlite3_column_bytes(s, 7), &r->rec.vv))
        goto bad;
    r->rec.seq = (uint64_t)sqlite3_column_int64(s, 8);
    if (sqlite3_column_type(s, 9) == SQLITE_BLOB) {
        if (sqlite3_column_bytes(s, 9) != LR_HASH_LEN)
            goto bad;
        memcpy(r->rec.blocks_hash.b, sqlite3_column_blob(s, 9), LR_HASH_LEN);
        p->has_blocks = true;
    }
    p->id = sqlite3_column_int64(s, 10);
    memcpy(r->device.b, sqlite3_column_blob(s, 11), LR_DEVICE_ID_LEN);
    p->nblk = sqlite3_column_int64(s, 12);
    if (p->nblk < 0 || (uint64_t)p->nblk > LR_INDEX_CHUNKS_MAX)
        goto bad;
    return 0;
bad:
    lr_remote_rec_release(r);
    return lr_err_set(err, LR_EBADVAL, "index %s: corrupt remote record", ix->path);
}

/* Load the chunk list of rfiles row `id` (nblk rows expected) into r. */
static int load_rchunks(struct lr_index *ix, int64_t id, int64_t nblk, struct lr_remote_rec *r,
                        struct lr_err *err)
{
    sqlite3_stmt *s = rstmt(ix, RS_RCHUNKS_GET, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, id);
    size_t n = (size_t)nblk;
    r->rec.chunks = n ? lr_xmallocarray(n, sizeof(r->rec.chunks[0])) : NULL;
    r->rec.nchunks = 0;
    uint64_t off = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t len = sqlite3_column_int64(s, 0);
        if (r->rec.nchunks >= n || len <= 0 || len > UINT32_MAX ||
            sqlite3_column_bytes(s, 1) != LR_HASH_LEN) {
            rc = lr_err_set(err, LR_EBADVAL, "index %s: corrupt remote chunk row", ix->path);
            goto out;
        }
        struct lr_chunk *c = &r->rec.chunks[r->rec.nchunks++];
        c->off = off;
        c->len = (uint32_t)len;
        memcpy(c->hash.b, sqlite3_column_blob(s, 1), LR_HASH_LEN);
        c->weak = 0;
        off += c->len;
    }
    if (rc != SQLITE_DONE)
        rc = lr__ix_dberr(ix, err, "remote chunk list");
    else if (r->rec.nchunks != n)
        rc = lr_err_set(err, LR_EBADVAL, "index %s: remote chunk rows missing", ix->path);
    else
        rc = 0;
out:
    done(s);
    if (rc) {
        free(r->rec.chunks);
        r->rec.chunks = NULL;
        r->rec.nchunks = 0;
    }
    return rc;
}

/* Every peer's record of one path (key), ordered by device ID. */
static int load_path(struct lr_index *ix, int64_t folder, const uint8_t *key, size_t klen,
                     struct prow **out, size_t *nout, struct lr_err *err)
{
    *out = NULL;
    *nout = 0;
    sqlite3_stmt *s = rstmt(ix, RS_PATH_ROWS, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, key, klen);
    struct prow *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            v = lr_xreallocarray(v, cap, sizeof(v[0]));
        }
        if ((rc = read_rrow(ix, s, &v[n], err)))
            goto out;
        n++;
    }
    rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote rows of a path");
out:
    done(s);
    if (rc) {
        prows_release(v, n);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

/*
 * What need_eval compares of every peer's record of one path (no path,
 * target, device or chunks: cheaper on every write). Row order is
 * irrelevant to decide().
 */
static int load_path_light(struct lr_index *ix, int64_t folder, const uint8_t *key, size_t klen,
                           struct prow **out, size_t *nout, struct lr_err *err)
{
    *out = NULL;
    *nout = 0;
    sqlite3_stmt *s = rstmt(ix, RS_PATH_LIGHT, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, key, klen);
    struct prow *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            v = lr_xreallocarray(v, cap, sizeof(v[0]));
        }
        struct prow *p = &v[n];
        memset(p, 0, sizeof(*p));
        int64_t type = sqlite3_column_int64(s, 0), flags = sqlite3_column_int64(s, 1);
        if (type < 0 || (flags & ~(int64_t)RF_KNOWN_MASK) != 0 ||
            (!(flags & LR_RREC_UNKNOWN_TYPE) && type > LR_FT_SYMLINK) ||
            lr_vv_decode(sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3),
                         &p->r.rec.vv) ||
            (sqlite3_column_type(s, 4) == SQLITE_BLOB &&
             sqlite3_column_bytes(s, 4) != LR_HASH_LEN)) {
            lr_vv_release(&p->r.rec.vv);
            rc = lr_err_set(err, LR_EBADVAL, "index %s: corrupt remote record", ix->path);
            goto out;
        }
        p->r.wire_type = (uint64_t)type;
        p->r.flags = (uint32_t)flags & (LR_RREC_UNKNOWN_TYPE | LR_RREC_PARTIAL);
        p->r.rec.type = (flags & LR_RREC_UNKNOWN_TYPE) ? LR_FT_UNKNOWN : (enum lr_ftype)type;
        p->r.rec.deleted = (flags & RF_DELETED) != 0;
        p->r.rec.size = (uint64_t)sqlite3_column_int64(s, 2);
        if (sqlite3_column_type(s, 4) == SQLITE_BLOB) {
            memcpy(p->r.rec.blocks_hash.b, sqlite3_column_blob(s, 4), LR_HASH_LEN);
            p->has_blocks = true;
        }
        n++;
    }
    rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote rows of a path");
out:
    done(s);
    if (rc) {
        prows_release(v, n);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

/* Local vector of a path; *has false if there is no local record. */
static int local_vv(struct lr_index *ix, int64_t folder, const uint8_t *key, size_t klen,
                    struct lr_vv *vv, bool *has, struct lr_err *err)
{
    memset(vv, 0, sizeof(*vv));
    *has = false;
    sqlite3_stmt *s = rstmt(ix, RS_LOCAL_VV, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, key, klen);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *has = true;
        rc = lr_vv_decode(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), vv)
                 ? lr_err_set(err, LR_EBADVAL, "index %s: corrupt local vector", ix->path)
                 : 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "local vector");
    }
    done(s);
    return rc;
}

/* ---- need decision ------------------------------------------------------------ */

/* Lexicographic order of the encodings (pairs of big-endian u64). */
static int vv_lexcmp(const struct lr_vv *a, const struct lr_vv *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    for (size_t i = 0; i < n; i++) {
        if (a->e[i].id != b->e[i].id)
            return a->e[i].id < b->e[i].id ? -1 : 1;
        if (a->e[i].counter != b->e[i].counter)
            return a->e[i].counter < b->e[i].counter ? -1 : 1;
    }
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
}

/* Order of versions in a need entry: vv encoding, deleted, type, blocks hash. */
static int version_cmp(const struct prow *a, const struct prow *b)
{
    int c = vv_lexcmp(&a->r.rec.vv, &b->r.rec.vv);
    if (c)
        return c;
    if (a->r.rec.deleted != b->r.rec.deleted)
        return a->r.rec.deleted ? 1 : -1;
    if (a->r.wire_type != b->r.wire_type)
        return a->r.wire_type < b->r.wire_type ? -1 : 1;
    if (a->has_blocks != b->has_blocks)
        return a->has_blocks ? 1 : -1;
    return a->has_blocks ? memcmp(a->r.rec.blocks_hash.b, b->r.rec.blocks_hash.b, LR_HASH_LEN) : 0;
}

static bool usable(const struct prow *p)
{
    return !(p->r.flags & (LR_RREC_UNKNOWN_TYPE | LR_RREC_PARTIAL));
}

/*
 * The decision for one path. cls[i]: class of row i (SIZE_MAX: not a
 * newest candidate); rep[k]: first row of class k, classes sorted by
 * version_cmp. ncls 0: not needed. Arrays are sized n by the caller.
 */
struct decision {
    size_t *cls, *rep, ncls;
    unsigned flags;
};

static void decide(const struct prow *v, size_t n, const struct lr_vv *local, bool has_local,
                   struct decision *d)
{
    d->ncls = 0;
    d->flags = has_local ? 0 : LR_NEED_NO_LOCAL;
    for (size_t i = 0; i < n; i++) {
        d->cls[i] = SIZE_MAX;
        if (!usable(&v[i]))
            continue;
        enum lr_vv_order o = lr_vv_compare(&v[i].r.rec.vv, local);
        if (o == LR_VV_EQUAL || o == LR_VV_LESS)
            continue;
        bool dominated = false;
        for (size_t j = 0; j < n && !dominated; j++)
            dominated = j != i && usable(&v[j]) &&
                        lr_vv_compare(&v[j].r.rec.vv, &v[i].r.rec.vv) == LR_VV_GREATER;
        if (dominated)
            continue;
        if (o == LR_VV_CONCURRENT)
            d->flags |= LR_NEED_LOCAL_CONFLICT;
        size_t k = 0;
        while (k < d->ncls && version_cmp(&v[d->rep[k]], &v[i]) != 0)
            k++;
        if (k == d->ncls)
            d->rep[d->ncls++] = i;
        d->cls[i] = k;
    }
    /* Sort classes (insertion sort: a handful) and renumber rows. */
    for (size_t a = 1; a < d->ncls; a++) {
        size_t x = d->rep[a], b = a;
        while (b > 0 && version_cmp(&v[d->rep[b - 1]], &v[x]) > 0) {
            d->rep[b] = d->rep[b - 1];
            b--;
        }
        d->rep[b] = x;
    }
    for (size_t k = 0; k < d->ncls; k++) {
        for (size_t i = 0; i < n; i++) {
            if (d->cls[i] != SIZE_MAX && version_cmp(&v[i], &v[d->rep[k]]) == 0)
                d->cls[i] = k;
        }
    }
    if (d->ncls > 1)
        d->flags |= LR_NEED_CONFLICT;
}

/* Recompute and store the need row of one path. local NULL: read it. */
static int need_eval(struct lr_index *ix, int64_t folder, const uint8_t *key, size_t klen,
                     const struct lr_vv *local, bool skip_if_no_rows, struct lr_err *err)
{
    struct prow *v = NULL;
    size_t n = 0;
    struct lr_vv lv = {0};
    bool has_local = true;
    size_t *scratch = NULL;
    int rc = load_path_light(ix, folder, key, klen, &v, &n, err);
    if (rc)
        return rc;
    if (n == 0 && skip_if_no_rows)
        goto out; /* invariant: a need row exists only with remote rows */
    if (!local) {
        if ((rc = local_vv(ix, folder, key, klen, &lv, &has_local, err)))
            goto out;
        local = &lv;
    }
    scratch = lr_xmallocarray(n ? 2 * n : 1, sizeof(size_t));
    struct decision d = {scratch, scratch + n, 0, 0};
    decide(v, n, local, has_local, &d);
    sqlite3_stmt *s;
    if (d.ncls == 0) {
        if (!(s = rstmt(ix, RS_NEED_DEL, err))) {
            rc = LR_EDB;
            goto out;
        }
        sqlite3_bind_int64(s, 1, folder);
        lr__ix_bind_blob(s, 2, key, klen);
        rc = step_done(ix, s, "need delete", err);
        goto out;
    }
    const struct lr_remote_rec *best = &v[d.rep[0]].r;
    int kind = best->rec.deleted              ? KIND_DELETE
               : best->rec.type == LR_FT_FILE ? KIND_FILE
                                              : KIND_OTHER;
    if (!(s = rstmt(ix, RS_NEED_UPSERT, err))) {
        rc = LR_EDB;
        goto out;
    }
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, key, klen);
    sqlite3_bind_int(s, 3, kind);
    sqlite3_bind_int64(s, 4, (int64_t)d.flags);
    sqlite3_bind_int64(s, 5, kind == KIND_FILE ? (int64_t)best->rec.size : 0);
    rc = step_done(ix, s, "need upsert", err);
out:
    free(scratch);
    lr_vv_release(&lv);
    prows_release(v, n);
    return rc;
}

int lr__ix_need_local_changed(struct lr_index *ix, int64_t folder, const uint8_t *key, size_t klen,
                              const struct lr_vv *local, struct lr_err *err)
{
    return need_eval(ix, folder, key, klen, local, true, err);
}

/* ---- sync state ---------------------------------------------------------------- */

struct rstate {
    int64_t id; /* 0: no row */
    struct lr_remote_state st;
};

static int state_get(struct lr_index *ix, int64_t folder, const struct lr_device_id *dev,
                     struct rstate *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = rstmt(ix, RS_STATE_GET, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, dev->b, LR_DEVICE_ID_LEN);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        out->st.index_id = (uint64_t)sqlite3_column_int64(s, 1);
        out->st.max_seq = (uint64_t)sqlite3_column_int64(s, 2);
        out->st.gen = (uint64_t)sqlite3_column_int64(s, 3);
        out->st.full_pending = sqlite3_column_int64(s, 4) != 0;
        out->st.sent_index_id = (uint64_t)sqlite3_column_int64(s, 5);
        out->st.sent_seq = (uint64_t)sqlite3_column_int64(s, 6);
        out->st.open_seq = (uint64_t)sqlite3_column_int64(s, 7);
        /* The open path key, in ix->okey (valid until the next state read). */
        lr_buf_reset(&ix->okey);
        if (out->st.open_seq && sqlite3_column_bytes(s, 8) > 0)
            lr_buf_put(&ix->okey, sqlite3_column_blob(s, 8), (size_t)sqlite3_column_bytes(s, 8));
        out->st.check_seq = (uint64_t)sqlite3_column_int64(s, 9);
        if (sqlite3_column_bytes(s, 10) == (int)sizeof(out->st.check))
            memcpy(out->st.check, sqlite3_column_blob(s, 10), sizeof(out->st.check));
        else
            out->st.check_seq = 0;
        int pl = sqlite3_column_bytes(s, 11);
        if (out->st.check_seq && pl > 0 && pl <= LR_INDEX_CHECK_PATH_MAX) {
            memcpy(out->st.check_path, sqlite3_column_blob(s, 11), (size_t)pl);
            out->st.check_path_len = (size_t)pl;
        }
        out->st.check_path[out->st.check_path_len] = '\0';
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote state");
    }
    done(s);
    return rc;
}

static int state_ensure(struct lr_index *ix, int64_t folder, const struct lr_device_id *dev,
                        struct rstate *out, struct lr_err *err)
{
    int rc = state_get(ix, folder, dev, out, err);
    if (rc || out->id)
        return rc;
    sqlite3_stmt *s = rstmt(ix, RS_STATE_ADD, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, dev->b, LR_DEVICE_ID_LEN);
    if (sqlite3_step(s) == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        rc = 0;
    } else {
        rc = lr__ix_dberr(ix, err, "remote state create");
    }
    done(s);
    return rc;
}

int lr_index_remote_state(struct lr_index *ix, const char *folder_id,
                          const struct lr_device_id *dev, struct lr_remote_state *out,
                          struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr__ix_folder_rowid(ix, folder_id, &folder, err);
    if (rc)
        return rc;
    struct rstate st;
    if ((rc = state_get(ix, folder, dev, &st, err)))
        return rc;
    *out = st.st;
    return 0;
}

struct sent_arg {
    int64_t folder;
    const struct lr_device_id *dev;
    uint64_t a, b;
};

static int set_sent_tx(struct lr_index *ix, void *argp, struct lr_err *err)
{
    struct sent_arg *a = argp;
    struct rstate st;
    int rc = state_ensure(ix, a->folder, a->dev, &st, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = rstmt(ix, RS_SET_SENT, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, st.id);
    sqlite3_bind_int64(s, 2, (int64_t)a->a);
    sqlite3_bind_int64(s, 3, (int64_t)a->b);
    return step_done(ix, s, "remote sent state", err);
}

int lr_index_remote_set_sent(struct lr_index *ix, const char *folder_id,
                             const struct lr_device_id *dev, uint64_t sent_index_id,
                             uint64_t sent_seq, struct lr_err *err)
{
    if (sent_seq > INT64_MAX)
        return lr_err_set(err, LR_EBADVAL, "sequence %" PRIu64 " out of range", sent_seq);
    struct sent_arg a = {0, dev, sent_index_id, sent_seq};
    int rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err);
    return rc ? rc : lr__ix_in_tx(ix, err, set_sent_tx, &a);
}

int lr_index_remote_set_check(struct lr_index *ix, const char *folder_id,
                              const struct lr_device_id *dev, uint64_t index_id, uint64_t seq,
                              const uint8_t check[16], const uint8_t *path, size_t path_len,
                              struct lr_err *err)
{
    int64_t folder;
    if (seq == 0 || seq > INT64_MAX)
        return lr_err_set(err, LR_EBADVAL, "sequence %" PRIu64 " out of range", seq);
    int rc = lr__ix_folder_rowid(ix, folder_id, &folder, err);
    if (rc)
        return rc;
    struct rstate st;
    if ((rc = state_get(ix, folder, dev, &st, err)))
        return rc;
    if (!st.id)
        return 0;
    sqlite3_stmt *s = rstmt(ix, RS_SET_CHECK, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, st.id);
    sqlite3_bind_int64(s, 2, (int64_t)seq);
    lr__ix_bind_blob(s, 3, check, 16);
    sqlite3_bind_int64(s, 4, (int64_t)index_id);
    /* (A cached statement keeps its last bindings: bind NULL explicitly.) */
    if (path_len > 0 && path_len <= LR_INDEX_CHECK_PATH_MAX)
        lr__ix_bind_blob(s, 5, path, path_len);
    else
        sqlite3_bind_null(s, 5);
    return step_done(ix, s, "remote check", err);
}

static int full_begin_tx(struct lr_index *ix, void *argp, struct lr_err *err)
{
    struct sent_arg *a = argp;
    struct rstate st;
    int rc = state_ensure(ix, a->folder, a->dev, &st, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = rstmt(ix, RS_FULL_BEGIN, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, st.id);
    sqlite3_bind_int64(s, 2, (int64_t)a->a);
    if ((rc = step_done(ix, s, "remote full begin", err)))
        return rc;
    lr_debug("index", "full index begins index_id=%016" PRIx64 " gen=%" PRIu64, a->a,
             st.st.gen + 1);
    return 0;
}

int lr_index_remote_full_begin(struct lr_index *ix, const char *folder_id,
                               const struct lr_device_id *dev, uint64_t index_id,
                               struct lr_err *err)
{
    if (index_id == 0)
        return lr_err_set(err, LR_EBADVAL, "peer index ID 0");
    struct sent_arg a = {0, dev, index_id, 0};
    int rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err);
    return rc ? rc : lr__ix_in_tx(ix, err, full_begin_tx, &a);
}

/* ---- put ------------------------------------------------------------------------- */

/* Validate r before any write; *total_out: blocks of the whole list. */
static int check_remote(const struct lr_remote_rec *r, uint64_t *total_out, struct lr_err *err)
{
    const struct lr_file_rec *rec = &r->rec;
    int rc = lr_index_path_check(rec->path, rec->path_len, err);
    if (rc)
        return rc;
    if (rec->seq == 0 || rec->seq > INT64_MAX)
        return lr_err_set(err, LR_EBADVAL, "remote record: sequence %" PRIu64, rec->seq);
    if (r->flags & ~(uint32_t)LR_RREC_UNKNOWN_TYPE)
        return lr_err_set(err, LR_EBADVAL, "remote record: flags %#x", (unsigned)r->flags);
    *total_out = 0;
    if (r->flags & LR_RREC_UNKNOWN_TYPE) {
        if (r->wire_type <= LR_FT_SYMLINK || r->wire_type > INT64_MAX)
            return lr_err_set(err, LR_EBADVAL, "remote record: unknown type %" PRIu64,
                              r->wire_type);
        if (rec->nchunks || r->blk_total || r->blk_first)
            return lr_err_set(err, LR_EBADVAL, "remote record: blocks on an unknown type");
        return 0;
    }
    bool live_file = rec->type == LR_FT_FILE && !rec->deleted;
    if (!live_file && (r->blk_total || r->blk_first)) /* nchunks: checked below */
        return lr_err_set(err, LR_EBADVAL, "remote record: blocks on a %s",
                          rec->deleted ? "tombstone" : "non-file");
    uint64_t total = r->blk_total;
    if (total == 0 && r->blk_first == 0)
        total = rec->nchunks;
    if (!live_file || (r->blk_first == 0 && total == rec->nchunks)) {
        /* Whole record: the local rules apply as they are. */
        if ((rc = lr__ix_check_rec(rec, err)))
            return rc;
        *total_out = total;
        return 0;
    }
    /* A segment of a live file's list. */
    if (rec->size > INT64_MAX)
        return lr_err_set(err, LR_EBADVAL, "remote record: size %" PRIu64, rec->size);
    if (total > LR_INDEX_CHUNKS_MAX || total > rec->size)
        return lr_err_set(err, LR_ETOOBIG, "remote record: %" PRIu64 " blocks", total);
    if (rec->nchunks == 0 || r->blk_first > total || rec->nchunks > total - r->blk_first)
        return lr_err_set(err, LR_EBADVAL,
                          "remote record: blocks %" PRIu64 "+%zu of %" PRIu64 " out of range",
                          r->blk_first, rec->nchunks, total);
    if (r->blk_first == 0 && rec->chunks[0].off != 0)
        return lr_err_set(err, LR_EBADVAL, "remote record: first block not at offset 0");
    uint64_t off = rec->chunks[0].off;
    for (size_t i = 0; i < rec->nchunks; i++) {
        if (rec->chunks[i].off != off || rec->chunks[i].len == 0 || off > rec->size ||
            rec->chunks[i].len > rec->size - off)
            return lr_err_set(err, LR_EBADVAL, "remote record: block %zu at %" PRIu64 " invalid", i,
                              rec->chunks[i].off);
        off += rec->chunks[i].len;
    }
    if (r->blk_first + rec->nchunks == total && off != rec->size)
        return lr_err_set(err, LR_EBADVAL,
                          "remote record: blocks cover %" PRIu64 " bytes, size is %" PRIu64, off,
                          rec->size);
    *total_out = total;
    return 0;
}

static int add_rchunks(struct lr_index *ix, int64_t file, uint64_t first, const struct lr_chunk *c,
                       size_t n, struct lr_err *err)
{
    if (n == 0)
        return 0;
    sqlite3_stmt *s = rstmt(ix, RS_RCHUNK_ADD, err);
    if (!s)
        return LR_EDB;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_int64(s, 1, file);
        sqlite3_bind_int64(s, 2, (int64_t)(first + i));
        sqlite3_bind_int64(s, 3, c[i].len);
        lr__ix_bind_blob(s, 4, c[i].hash.b, LR_HASH_LEN);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote chunk insert");
        sqlite3_reset(s);
    }
    sqlite3_clear_bindings(s);
    return rc;
}

/* Blocks hash of a stored list, streamed from the rows (bounded memory). */
static int stored_blocks_hash(struct lr_index *ix, int64_t file, struct lr_hash *out,
                              struct lr_err *err)
{
    sqlite3_stmt *s = rstmt(ix, RS_RCHUNKS_GET, err);
    if (!s)
        return LR_EDB;
    struct lr_sha256_ctx *ctx = lr_sha256_new();
    if (!ctx)
        abort(); /* OOM, as lr_xmalloc */
    sqlite3_bind_int64(s, 1, file);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 1) != LR_HASH_LEN) {
            rc = lr_err_set(err, LR_EBADVAL, "index %s: corrupt remote chunk row", ix->path);
            goto out;
        }
        lr_sha256_update(ctx, sqlite3_column_blob(s, 1), LR_HASH_LEN);
    }
    rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote chunk hashes");
out:
    done(s);
    lr_sha256_final(ctx, out);
    lr_sha256_free(ctx);
    return rc;
}

struct put_arg {
    int64_t folder;
    const struct lr_device_id *dev;
    uint64_t index_id;
    const struct lr_remote_rec *r;
    uint64_t total;
};

static int put_first(struct lr_index *ix, struct put_arg *a, const struct rstate *st,
                     struct lr_err *err)
{
    const struct lr_remote_rec *r = a->r;
    const struct lr_file_rec *rec = &r->rec;
    bool unknown = (r->flags & LR_RREC_UNKNOWN_TYPE) != 0;
    bool live_file = !unknown && rec->type == LR_FT_FILE && !rec->deleted;
    bool complete = rec->nchunks == a->total;
    uint64_t cover = 0;
    for (size_t i = 0; i < rec->nchunks; i++)
        cover += rec->chunks[i].len;
    struct lr_hash bh;
    if (live_file && complete)
        lr_index_blocks_hash(rec->chunks, rec->nchunks, &bh);
    uint32_t flags = (unknown ? LR_RREC_UNKNOWN_TYPE : 0) | (complete ? 0 : LR_RREC_PARTIAL) |
                     (rec->deleted ? RF_DELETED : 0);
    lr_buf_reset(&ix->vvb);
    if (lr_vv_encode_stored(&rec->vv, &ix->vvb))
        return lr_err_set(err, LR_ETOOBIG, "remote record: version vector too big");
    sqlite3_stmt *s = rstmt(ix, RS_RFILE_UPSERT, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, a->folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    sqlite3_bind_int64(s, 3, st->id);
    sqlite3_bind_int64(s, 4, unknown ? (int64_t)r->wire_type : (int64_t)rec->type);
    sqlite3_bind_int64(s, 5, (int64_t)flags);
    sqlite3_bind_int64(s, 6, unknown || rec->deleted ? 0 : (int64_t)rec->size);
    sqlite3_bind_int64(s, 7, rec->mtime_ns);
    sqlite3_bind_int64(s, 8, (int64_t)rec->mode);
    if (!unknown && rec->type == LR_FT_SYMLINK && !rec->deleted)
        lr__ix_bind_blob(s, 9, rec->target, rec->target_len);
    lr__ix_bind_blob(s, 10, ix->vvb.data, ix->vvb.len);
    sqlite3_bind_int64(s, 11, (int64_t)rec->seq);
    if (live_file && complete)
        lr__ix_bind_blob(s, 12, bh.b, LR_HASH_LEN);
    sqlite3_bind_int64(s, 13, (int64_t)rec->nchunks);
    sqlite3_bind_int64(s, 14, (int64_t)a->total);
    sqlite3_bind_int64(s, 15, (int64_t)cover);
    sqlite3_bind_int64(s, 16, (int64_t)st->st.gen);
    int64_t id = 0;
    int rc;
    if (sqlite3_step(s) == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        rc = 0;
    } else {
        rc = lr__ix_dberr(ix, err, "remote record upsert");
    }
    done(s);
    if (rc || (rc = exec_id(ix, RS_RCHUNKS_DEL, id, err)))
        return rc;
    return add_rchunks(ix, id, 0, rec->chunks, rec->nchunks, err);
}

/* A continuation segment: must extend the stored unfinished record exactly. */
static int put_next(struct lr_index *ix, struct put_arg *a, const struct rstate *st,
                    struct lr_err *err)
{
    const struct lr_remote_rec *r = a->r;
    const struct lr_file_rec *rec = &r->rec;
    sqlite3_stmt *s = rstmt(ix, RS_SEG_GET, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, a->folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    sqlite3_bind_int64(s, 3, st->id);
    int rc = sqlite3_step(s);
    bool ok = false;
    int64_t id = 0, nblk = 0, cover = 0;
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        nblk = sqlite3_column_int64(s, 3);
        cover = sqlite3_column_int64(s, 5);
        lr_buf_reset(&ix->vvb);
        ok =
            lr_vv_encode_stored(&rec->vv, &ix->vvb) == 0 &&
            (uint64_t)sqlite3_column_int64(s, 1) == rec->seq &&
            (sqlite3_column_int64(s, 2) & LR_RREC_PARTIAL) && (uint64_t)nblk == r->blk_first &&
            (uint64_t)sqlite3_column_int64(s, 4) == a->total &&
            (uint64_t)cover == rec->chunks[0].off &&
            (uint64_t)sqlite3_column_int64(s, 6) == rec->size &&
            sqlite3_column_int64(s, 8) == LR_FT_FILE &&
            sqlite3_column_int64(s, 9) == rec->mtime_ns &&
            (uint64_t)sqlite3_column_int64(s, 10) == rec->mode &&
            (size_t)sqlite3_column_bytes(s, 7) == ix->vvb.len &&
            (ix->vvb.len == 0 || memcmp(sqlite3_column_blob(s, 7), ix->vvb.data, ix->vvb.len) == 0);
        rc = 0;
    } else if (rc != SQLITE_DONE) {
        rc = lr__ix_dberr(ix, err, "remote segment lookup");
    } else {
        rc = 0;
    }
    done(s);
    if (rc)
        return rc;
    if (!ok)
        return lr_err_set(err, LR_EPROTO,
                          "remote record %s: segment at block %" PRIu64
                          " does not continue a stored unfinished record",
                          (const char *)rec->path, r->blk_first);
    if ((rc = add_rchunks(ix, id, r->blk_first, rec->chunks, rec->nchunks, err)))
        return rc;
    uint64_t newn = r->blk_first + rec->nchunks;
    const struct lr_chunk *last = &rec->chunks[rec->nchunks - 1];
    bool complete = newn == a->total;
    struct lr_hash bh;
    if (complete && (rc = stored_blocks_hash(ix, id, &bh, err)))
        return rc;
    if (!(s = rstmt(ix, RS_SEG_SET, err)))
        return LR_EDB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, (int64_t)newn);
    sqlite3_bind_int64(s, 3, (int64_t)(last->off + last->len));
    sqlite3_bind_int64(s, 4, complete ? 0 : LR_RREC_PARTIAL);
    if (complete)
        lr__ix_bind_blob(s, 5, bh.b, LR_HASH_LEN);
    sqlite3_bind_int64(s, 6, (int64_t)st->st.gen);
    return step_done(ix, s, "remote segment update", err);
}

static int put_tx(struct lr_index *ix, void *argp, struct lr_err *err)
{
    struct put_arg *a = argp;
    const struct lr_remote_rec *r = a->r;
    struct rstate st;
    int rc = state_get(ix, a->folder, a->dev, &st, err);
    if (rc)
        return rc;
    if (!st.id || st.st.index_id == 0)
        return lr_err_set(err, LR_EPROTO, "no index of the peer yet: a full index must start it");
    if (st.st.index_id != a->index_id)
        return lr_err_set(err, LR_EPROTO,
                          "peer index ID %016" PRIx64 " is not the stored %016" PRIx64
                          ": a full index is needed",
                          a->index_id, st.st.index_id);
    if (r->rec.seq <= st.st.max_seq)
        return lr_err_set(err, LR_EPROTO, "peer sequence %" PRIu64 " not above the stored %" PRIu64,
                          r->rec.seq, st.st.max_seq);
    lr__ix_to_key(&ix->key, r->rec.path, r->rec.path_len);
    rc = r->blk_first == 0 ? put_first(ix, a, &st, err) : put_next(ix, a, &st, err);
    if (rc)
        return rc;
    /*
     * Progress: max_seq = every entry up to it is stored. An unfinished
     * segmented record holds it below its own seq until that path is
     * completed or replaced, even if (against the protocol) other entries
     * come first, so a reconnect always resends it.
     */
    bool complete = r->blk_first + r->rec.nchunks == a->total;
    bool same = st.st.open_seq && ix->okey.len == ix->key.len &&
                memcmp(ix->okey.data, ix->key.data, ix->key.len) == 0;
    uint64_t open = 0;
    bool open_here = false;
    if (st.st.open_seq && !same) {
        open = st.st.open_seq; /* another path is unfinished: the older one holds */
    } else if (!complete) {
        open = r->rec.seq;
        open_here = true;
    }
    uint64_t max = complete ? r->rec.seq : st.st.max_seq;
    if (open && max >= open)
        max = open - 1;
    if (max < st.st.max_seq)
        max = st.st.max_seq;
    if (max != st.st.max_seq || open != st.st.open_seq) {
        sqlite3_stmt *s = rstmt(ix, RS_SET_MAXSEQ, err);
        if (!s)
            return LR_EDB;
        sqlite3_bind_int64(s, 1, st.id);
        sqlite3_bind_int64(s, 2, (int64_t)max);
        sqlite3_bind_int64(s, 3, (int64_t)open);
        if (open && open_here)
            lr__ix_bind_blob(s, 4, ix->key.data, ix->key.len);
        else if (open)
            lr__ix_bind_blob(s, 4, ix->okey.data, ix->okey.len);
        if ((rc = step_done(ix, s, "remote max sequence", err)))
            return rc;
    }
    return need_eval(ix, a->folder, ix->key.data, ix->key.len, NULL, false, err);
}

int lr_index_remote_put(struct lr_index *ix, const char *folder_id, const struct lr_device_id *dev,
                        uint64_t index_id, const struct lr_remote_rec *r, struct lr_err *err)
{
    struct put_arg a = {0, dev, index_id, r, 0};
    int rc = check_remote(r, &a.total, err);
    if (rc)
        return rc;
    if ((rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err)))
        return rc;
    return lr__ix_in_tx(ix, err, put_tx, &a);
}

static int adopt_tx(struct lr_index *ix, void *argp, struct lr_err *err)
{
    struct put_arg *a = argp;
    struct rstate st;
    int rc = state_get(ix, a->folder, a->dev, &st, err);
    if (rc)
        return rc;
    if (!st.id || st.st.index_id != a->index_id || !st.st.full_pending)
        return lr_err_set(err, LR_EPROTO,
                          "adopting a record of peer index %016" PRIx64
                          " outside a replacement of it",
                          a->index_id);
    lr__ix_to_key(&ix->key, a->r->rec.path, a->r->rec.path_len);
    if ((rc = put_first(ix, a, &st, err)))
        return rc;
    return need_eval(ix, a->folder, ix->key.data, ix->key.len, NULL, false, err);
}

int lr_index_remote_adopt(struct lr_index *ix, const char *folder_id,
                          const struct lr_device_id *dev, uint64_t index_id,
                          const struct lr_remote_rec *r, struct lr_err *err)
{
    struct put_arg a = {0, dev, index_id, r, 0};
    int rc = check_remote(r, &a.total, err);
    if (rc)
        return rc;
    if (r->blk_first != 0 || a.total != r->rec.nchunks || (r->flags & LR_RREC_UNKNOWN_TYPE))
        return lr_err_set(err, LR_EBADVAL, "adopted record %s: not a whole known record",
                          (const char *)r->rec.path);
    if ((rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err)))
        return rc;
    return lr__ix_in_tx(ix, err, adopt_tx, &a);
}

struct raise_arg {
    int64_t folder;
    const struct lr_device_id *dev;
    uint64_t index_id, seq;
};

static int raise_tx(struct lr_index *ix, void *argp, struct lr_err *err)
{
    struct raise_arg *a = argp;
    struct rstate st;
    int rc = state_get(ix, a->folder, a->dev, &st, err);
    if (rc)
        return rc;
    if (!st.id || st.st.index_id != a->index_id)
        return lr_err_set(err, LR_EPROTO, "peer index %016" PRIx64 " is not the stored one",
                          a->index_id);
    /* An unfinished segmented record holds max_seq below it. */
    if (a->seq <= st.st.max_seq || st.st.open_seq)
        return 0;
    sqlite3_stmt *s = rstmt(ix, RS_SET_MAXSEQ, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, st.id);
    sqlite3_bind_int64(s, 2, (int64_t)a->seq);
    sqlite3_bind_int64(s, 3, 0);
    return step_done(ix, s, "remote max sequence", err);
}

int lr_index_remote_seq_raise(struct lr_index *ix, const char *folder_id,
                              const struct lr_device_id *dev, uint64_t index_id, uint64_t seq,
                              struct lr_err *err)
{
    if (seq > INT64_MAX)
        return lr_err_set(err, LR_EBADVAL, "sequence %" PRIu64 " out of range", seq);
    struct raise_arg a = {0, dev, index_id, seq};
    int rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err);
    return rc ? rc : lr__ix_in_tx(ix, err, raise_tx, &a);
}

/* ---- dropping ------------------------------------------------------------------- */

/* Drop the remote's rows with gen < below, in batches, re-evaluating need. */
static int drop_rows(struct lr_index *ix, int64_t folder, int64_t remote, int64_t below,
                     uint64_t *dropped, struct lr_err *err)
{
    struct lr_buf b;
    lr_buf_init(&b, SIZE_MAX);
    int rc = 0;
    for (;;) {
        sqlite3_stmt *s = rstmt(ix, RS_STALE, err);
        if (!s) {
            rc = LR_EDB;
            break;
        }
        sqlite3_bind_int64(s, 1, remote);
        sqlite3_bind_int64(s, 2, below);
        sqlite3_bind_int64(s, 3, DROP_BATCH);
        lr_buf_reset(&b);
        size_t cnt = 0;
        /* (id, key length, key) triples; at most DROP_BATCH paths held. */
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(s, 0);
            uint64_t kl = (uint64_t)sqlite3_column_bytes(s, 1);
            lr_buf_put(&b, &id, sizeof(id));
            lr_buf_put(&b, &kl, sizeof(kl));
            lr_buf_put(&b, sqlite3_column_blob(s, 1), (size_t)kl);
            cnt++;
        }
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "stale remote rows");
        done(s);
        if (rc || cnt == 0)
            break;
        size_t pos = 0;
        for (size_t i = 0; i < cnt && rc == 0; i++) {
            int64_t id;
            uint64_t kl;
            memcpy(&id, b.data + pos, sizeof(id));
            memcpy(&kl, b.data + pos + sizeof(id), sizeof(kl));
            const uint8_t *key = b.data + pos + sizeof(id) + sizeof(kl);
            pos += sizeof(id) + sizeof(kl) + (size_t)kl;
            if (!(rc = exec_id(ix, RS_RCHUNKS_DEL, id, err)) &&
                !(rc = exec_id(ix, RS_RFILE_DEL, id, err)))
                rc = need_eval(ix, folder, key, (size_t)kl, NULL, false, err);
        }
        if (dropped)
            *dropped += cnt;
        if (rc || cnt < DROP_BATCH)
            break;
    }
    lr_buf_release(&b);
    return rc;
}

struct end_arg {
    int64_t folder;
    const struct lr_device_id *dev;
    uint64_t index_id;
    uint64_t *dropped;
    bool forget;
};

static int end_tx(struct lr_index *ix, void *argp, struct lr_err *err)
{
    struct end_arg *a = argp;
    struct rstate st;
    int rc = state_get(ix, a->folder, a->dev, &st, err);
    if (rc)
        return rc;
    if (a->forget) {
        if (!st.id)
            return 0;
        if ((rc = drop_rows(ix, a->folder, st.id, INT64_MAX, a->dropped, err)))
            return rc;
        return exec_id(ix, RS_DEL_REMOTE, st.id, err);
    }
    if (!st.id || st.st.index_id != a->index_id)
        return lr_err_set(err, LR_EPROTO,
                          "burst end for peer index %016" PRIx64 ", stored %016" PRIx64,
                          a->index_id, st.st.index_id);
    if (!st.st.full_pending)
        return 0;
    if ((rc = drop_rows(ix, a->folder, st.id, (int64_t)st.st.gen, a->dropped, err)))
        return rc;
    lr_debug("index", "full index complete gen=%" PRIu64 " dropped=%" PRIu64, st.st.gen,
             a->dropped ? *a->dropped : 0);
    return exec_id(ix, RS_END_FULL, st.id, err);
}

int lr_index_remote_burst_end(struct lr_index *ix, const char *folder_id,
                              const struct lr_device_id *dev, uint64_t index_id, uint64_t *dropped,
                              struct lr_err *err)
{
    uint64_t d = 0;
    if (dropped)
        *dropped = 0;
    struct end_arg a = {0, dev, index_id, &d, false};
    int rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err);
    if (rc || (rc = lr__ix_in_tx(ix, err, end_tx, &a)))
        return rc;
    if (dropped)
        *dropped = d;
    return 0;
}

int lr_index_remote_forget(struct lr_index *ix, const char *folder_id,
                           const struct lr_device_id *dev, struct lr_err *err)
{
    struct end_arg a = {0, dev, 0, NULL, true};
    int rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err);
    return rc ? rc : lr__ix_in_tx(ix, err, end_tx, &a);
}

int lr__ix_remote_folder_remove(struct lr_index *ix, int64_t folder, struct lr_err *err)
{
    /* need_stats goes with the folder row (trigger folders_ad). */
    static const enum rs_id seq[] = {RS_F_DEL_NEED, RS_F_DEL_RCHUNKS, RS_F_DEL_RFILES,
                                     RS_F_DEL_REMOTES};
    int rc = 0;
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]) && rc == 0; i++)
        rc = exec_id(ix, seq[i], folder, err);
    return rc;
}

/* ---- reads ------------------------------------------------------------------------- */

static int remote_id(struct lr_index *ix, const char *folder_id, const struct lr_device_id *dev,
                     int64_t *folder, int64_t *remote, struct lr_err *err)
{
    int rc = lr__ix_folder_rowid(ix, folder_id, folder, err);
    if (rc)
        return rc;
    struct rstate st;
    if ((rc = state_get(ix, *folder, dev, &st, err)))
        return rc;
    *remote = st.id;
    return 0;
}

int lr_index_remote_get(struct lr_index *ix, const char *folder_id, const struct lr_device_id *dev,
                        const uint8_t *path, size_t path_len, unsigned flags,
                        struct lr_remote_rec *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder, remote;
    int rc = lr_index_path_check(path, path_len, err);
    if (rc || (rc = remote_id(ix, folder_id, dev, &folder, &remote, err)))
        return rc;
    if (!remote)
        return lr_err_set(err, LR_ENOTFOUND, "no index of the peer");
    sqlite3_stmt *s = rstmt(ix, RS_RFILE_GET, err);
    if (!s)
        return LR_EDB;
    lr__ix_to_key(&ix->key, path, path_len);
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    sqlite3_bind_int64(s, 3, remote);
    struct prow p;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = read_rrow(ix, s, &p, err);
    else if (rc == SQLITE_DONE)
        rc = lr_err_set(err, LR_ENOTFOUND, "the peer has no record of the path");
    else
        rc = lr__ix_dberr(ix, err, "remote get");
    done(s);
    if (rc)
        return rc;
    if ((flags & LR_IX_CHUNKS) && (rc = load_rchunks(ix, p.id, p.nblk, &p.r, err))) {
        lr_remote_rec_release(&p.r);
        return rc;
    }
    *out = p.r;
    return 0;
}

int lr_index_remote_list(struct lr_index *ix, const char *folder_id, const struct lr_device_id *dev,
                         const uint8_t *after, size_t after_len, size_t max, unsigned flags,
                         struct lr_remote_list *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder, remote;
    int rc = remote_id(ix, folder_id, dev, &folder, &remote, err);
    if (rc || max == 0 || !remote)
        return rc;
    if (after_len > LR_INDEX_PATH_MAX)
        return lr_err_set(err, LR_EBADPATH, "list bound too long");
    sqlite3_stmt *s = rstmt(ix, RS_RFILE_LIST, err);
    if (!s)
        return LR_EDB;
    lr__ix_to_key(&ix->key2, after, after_len);
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key2.data, ix->key2.len);
    sqlite3_bind_int64(s, 3, remote);
    sqlite3_bind_int64(s, 4, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    struct prow *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : (max < 64 ? max : 64);
            v = lr_xreallocarray(v, cap, sizeof(v[0]));
        }
        if ((rc = read_rrow(ix, s, &v[n], err)))
            break;
        n++;
    }
    if (rc >= 0)
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote list");
    done(s);
    for (size_t i = 0; i < n && rc == 0 && (flags & LR_IX_CHUNKS); i++)
        rc = load_rchunks(ix, v[i].id, v[i].nblk, &v[i].r, err);
    if (rc) {
        prows_release(v, n);
        return rc;
    }
    out->v = n ? lr_xmallocarray(n, sizeof(out->v[0])) : NULL;
    for (size_t i = 0; i < n; i++)
        out->v[i] = v[i].r;
    out->n = n;
    free(v);
    return 0;
}

int lr_index_remote_holders(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                            size_t path_len, const struct lr_vv *vv, const struct lr_hash *blocks,
                            struct lr_device_list *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr_index_path_check(path, path_len, err);
    if (rc || (rc = lr__ix_folder_rowid(ix, folder_id, &folder, err)))
        return rc;
    lr__ix_to_key(&ix->key, path, path_len);
    struct prow *v;
    size_t n;
    if ((rc = load_path(ix, folder, ix->key.data, ix->key.len, &v, &n, err)))
        return rc;
    struct lr_device_list l = {n ? lr_xmallocarray(n, sizeof(l.v[0])) : NULL, 0};
    for (size_t i = 0; i < n; i++) {
        if (!usable(&v[i]) || (vv && !lr_vv_equal(&v[i].r.rec.vv, vv)))
            continue;
        if (blocks &&
            (!v[i].has_blocks || memcmp(v[i].r.rec.blocks_hash.b, blocks->b, LR_HASH_LEN) != 0))
            continue;
        l.v[l.n++] = v[i].r.device;
    }
    prows_release(v, n);
    *out = l;
    return 0;
}

/* ---- need list ----------------------------------------------------------------------- */

/* Build one need entry for key from the current rows. */
static int need_build(struct lr_index *ix, int64_t folder, const uint8_t *key, size_t klen,
                      unsigned flags, struct lr_need *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    struct prow *v = NULL;
    size_t n = 0;
    struct lr_vv lv = {0};
    bool has_local;
    size_t *scratch = NULL;
    int rc = load_path(ix, folder, key, klen, &v, &n, err);
    if (rc || (rc = local_vv(ix, folder, key, klen, &lv, &has_local, err)))
        goto out;
    scratch = lr_xmallocarray(n ? 2 * n : 1, sizeof(size_t));
    struct decision d = {scratch, scratch + n, 0, 0};
    decide(v, n, &lv, has_local, &d);
    if (d.ncls == 0) {
        rc = lr_err_set(err, LR_EBADVAL, "index %s: need row without a newer remote record",
                        ix->path);
        goto out;
    }
    out->path = lr__ix_from_key(key, klen);
    out->path_len = klen;
    out->flags = d.flags;
    out->cand = lr_xcalloc(d.ncls, sizeof(out->cand[0]));
    out->ncand = d.ncls;
    for (size_t k = 0; k < d.ncls; k++) {
        struct lr_need_cand *c = &out->cand[k];
        struct prow *rp = &v[d.rep[k]];
        c->holders = lr_xmallocarray(n, sizeof(c->holders[0]));
        for (size_t i = 0; i < n; i++) {
            if (d.cls[i] == k)
                c->holders[c->nholders++] = v[i].r.device;
        }
        if ((flags & LR_IX_CHUNKS) && (rc = load_rchunks(ix, rp->id, rp->nblk, &rp->r, err)))
            goto out;
        c->r = rp->r; /* moved */
        memset(&rp->r, 0, sizeof(rp->r));
    }
out:
    if (rc)
        need_release(out);
    free(scratch);
    lr_vv_release(&lv);
    prows_release(v, n);
    return rc;
}

int lr_index_need_list(struct lr_index *ix, const char *folder_id, const uint8_t *after,
                       size_t after_len, size_t max, unsigned flags, struct lr_need_list *out,
                       struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr__ix_folder_rowid(ix, folder_id, &folder, err);
    if (rc || max == 0)
        return rc;
    if (after_len > LR_INDEX_PATH_MAX)
        return lr_err_set(err, LR_EBADPATH, "list bound too long");
    sqlite3_stmt *s = rstmt(ix, RS_NEED_LIST, err);
    if (!s)
        return LR_EDB;
    /* First the page's keys (the statement is reset before the per-path reads). */
    lr__ix_to_key(&ix->key2, after, after_len);
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key2.data, ix->key2.len);
    sqlite3_bind_int64(s, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    struct lr_buf keys;
    lr_buf_init(&keys, SIZE_MAX);
    size_t cnt = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t kl = (uint64_t)sqlite3_column_bytes(s, 0);
        if (kl == 0 || kl > LR_INDEX_PATH_MAX) {
            rc = lr_err_set(err, LR_EBADVAL, "index %s: corrupt need row", ix->path);
            break;
        }
        lr_buf_put(&keys, &kl, sizeof(kl));
        lr_buf_put(&keys, sqlite3_column_blob(s, 0), (size_t)kl);
        cnt++;
    }
    if (rc >= 0)
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "need list");
    done(s);
    struct lr_need_list l = {cnt ? lr_xcalloc(cnt, sizeof(l.v[0])) : NULL, 0};
    size_t pos = 0;
    for (size_t i = 0; i < cnt && rc == 0; i++) {
        uint64_t kl;
        memcpy(&kl, keys.data + pos, sizeof(kl));
        const uint8_t *key = keys.data + pos + sizeof(kl);
        pos += sizeof(kl) + (size_t)kl;
        if ((rc = need_build(ix, folder, key, (size_t)kl, flags, &l.v[l.n], err)) == 0)
            l.n++;
    }
    lr_buf_release(&keys);
    if (rc) {
        lr_need_list_release(&l);
        return rc;
    }
    *out = l;
    return 0;
}

int lr_index_need_stats(struct lr_index *ix, const char *folder_id, struct lr_need_stats *out,
                        struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr__ix_folder_rowid(ix, folder_id, &folder, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = rstmt(ix, RS_NEED_STATS, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->items = (uint64_t)sqlite3_column_int64(s, 0);
        out->files = (uint64_t)sqlite3_column_int64(s, 1);
        out->deletes = (uint64_t)sqlite3_column_int64(s, 2);
        out->bytes = (uint64_t)sqlite3_column_int64(s, 3);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "need stats");
    }
    done(s);
    return rc;
}

int lr_index_remote_chunks(struct lr_index *ix, const char *folder_id,
                           const struct lr_device_id *dev, const uint8_t *path, size_t path_len,
                           const struct lr_hash *blocks, uint64_t first, uint64_t first_off,
                           size_t max, struct lr_chunk *out, size_t *n, struct lr_err *err)
{
    *n = 0;
    int64_t folder, remote;
    int rc = lr_index_path_check(path, path_len, err);
    if (rc || (rc = remote_id(ix, folder_id, dev, &folder, &remote, err)))
        return rc;
    if (first > INT64_MAX)
        return lr_err_set(err, LR_EBADVAL, "block index %" PRIu64 " out of range", first);
    if (!remote)
        return lr_err_set(err, LR_ENOTFOUND, "no index of the peer");
    sqlite3_stmt *s = rstmt(ix, RS_RFILE_ID, err);
    if (!s)
        return LR_EDB;
    lr__ix_to_key(&ix->key, path, path_len);
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    sqlite3_bind_int64(s, 3, remote);
    int64_t id = 0;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        bool same = !blocks || (sqlite3_column_bytes(s, 1) == LR_HASH_LEN &&
                                memcmp(sqlite3_column_blob(s, 1), blocks->b, LR_HASH_LEN) == 0);
        rc = same ? 0 : lr_err_set(err, LR_ENOTFOUND, "the peer's record is another version");
    } else if (rc == SQLITE_DONE) {
        rc = lr_err_set(err, LR_ENOTFOUND, "the peer has no record of the path");
    } else {
        rc = lr__ix_dberr(ix, err, "remote record id");
    }
    done(s);
    if (rc || max == 0)
        return rc;
    if (!(s = rstmt(ix, RS_RCHUNKS_PAGE, err)))
        return LR_EDB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, (int64_t)first);
    sqlite3_bind_int64(s, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    uint64_t off = first_off;
    size_t k = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t len = sqlite3_column_int64(s, 0);
        if (k >= max || len <= 0 || len > UINT32_MAX || sqlite3_column_bytes(s, 1) != LR_HASH_LEN ||
            off > UINT64_MAX - (uint64_t)len) {
            rc = lr_err_set(err, LR_EBADVAL, "index %s: corrupt remote chunk row", ix->path);
            break;
        }
        out[k].off = off;
        out[k].len = (uint32_t)len;
        memcpy(out[k].hash.b, sqlite3_column_blob(s, 1), LR_HASH_LEN);
        out[k].weak = 0;
        off += (uint64_t)len;
        k++;
    }
    if (rc >= 0)
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote chunk page");
    done(s);
    if (rc == 0)
        *n = k;
    return rc;
}

int lr_index_remote_peers(struct lr_index *ix, const char *folder_id, struct lr_device_list *out,
                          struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr__ix_folder_rowid(ix, folder_id, &folder, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = rstmt(ix, RS_PEERS, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    struct lr_device_list l = {0};
    size_t cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != LR_DEVICE_ID_LEN) {
            rc = lr_err_set(err, LR_EBADVAL, "index %s: corrupt peer row", ix->path);
            break;
        }
        if (l.n == cap) {
            cap = cap ? cap * 2 : 4;
            l.v = lr_xreallocarray(l.v, cap, sizeof(l.v[0]));
        }
        memcpy(l.v[l.n++].b, sqlite3_column_blob(s, 0), LR_DEVICE_ID_LEN);
    }
    if (rc >= 0)
        rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "remote peers");
    done(s);
    if (rc) {
        lr_device_list_release(&l);
        return rc;
    }
    *out = l;
    return 0;
}
