/*
 * modes.c - `folder override` (send-only), `folder revert` (receive-only)
 * and the modes' status fields. Contract in modes.h; semantics and reasons
 * in docs/modes.md.
 */
#include "daemon/modes.h"
#include "daemon/daemon_int.h"
#include "daemon/syncint.h"

#include "ignore/ignore.h"
#include "store/store.h"
#include "sync/decide.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "modes"
/* Records or need entries read per page. */
#define MODES_PAGE 1000

/* ---- local changes ---- */

/* r's largest counter is ours (ties included): we made this version. */
static bool authored(const struct lr_file_rec *r, uint64_t self)
{
    uint64_t own = lr_vv_get(&r->vv, self);
    if (own == 0)
        return false;
    for (size_t i = 0; i < r->vv.n; i++)
        if (r->vv.e[i].counter > own)
            return false; /* another device changed it after us */
    return true;
}

/* daemon_modes_own_version, answering `on_error` when the holders cannot be read. */
static bool own_version(struct lr_index *ix, const char *folder, const struct lr_file_rec *r,
                        uint64_t self, bool on_error)
{
    if (!authored(r, self))
        return false;
    struct lr_device_list h = {0};
    if (lr_index_remote_holders(ix, folder, r->path, r->path_len, &r->vv, NULL, &h, NULL) < 0)
        return on_error;
    bool held = h.n > 0;
    lr_device_list_release(&h);
    return !held;
}

bool daemon_modes_own_version(struct lr_index *ix, const char *folder, const struct lr_file_rec *r,
                              uint64_t self)
{
    return own_version(ix, folder, r, self, true);
}

bool daemon_modes_own_version_at(struct lr_index *ix, const char *folder, const uint8_t *path,
                                 size_t path_len, uint64_t self)
{
    struct lr_file_rec r;
    int rc = lr_index_file_get(ix, folder, path, path_len, 0, &r, NULL);
    if (rc == LR_ENOTFOUND)
        return false;
    if (rc < 0)
        return true;
    bool own = own_version(ix, folder, &r, self, true);
    lr_file_rec_release(&r);
    return own;
}

/* Is `r` a local change (modes.h)? Errors count as "no". */
static bool is_local_change(struct lr_index *ix, const char *folder, const struct lr_file_rec *r,
                            uint64_t self)
{
    if (!own_version(ix, folder, r, self, false))
        return false;
    if (!r->deleted)
        return true;
    struct lr_device_list h = {0};
    if (lr_index_remote_holders(ix, folder, r->path, r->path_len, NULL, NULL, &h, NULL) < 0)
        return false;
    bool held = h.n > 0;
    lr_device_list_release(&h);
    return held;
}

uint64_t daemon_modes_local_changes(struct lr_daemon *d, const char *folder)
{
    struct lr_index *ix = NULL;
    struct lr_err err = {0};
    uint64_t n = 0;
    /* Ignored paths are no local changes: revert leaves them alone. */
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder);
    struct lr_ignore *ig = NULL;
    struct lr_err ie = {0};
    if (fc && lr_ignore_load(fc->path, &ig, &ie) < 0)
        ig = NULL; /* a broken rule file: count every change (the folder reports it) */
    char *db = lr_xasprintf("%s/index.db", d->opts->home);
    int rc = lr_index_open(db, &ix, &err);
    free(db);
    uint8_t *after = NULL;
    size_t after_len = 0;
    while (rc == 0) {
        struct lr_file_list l = {0};
        rc = lr_index_list_by_path(ix, folder, after, after_len, MODES_PAGE, 0, &l, &err);
        if (rc < 0)
            break;
        for (size_t i = 0; i < l.n; i++) {
            const struct lr_file_rec *r = &l.v[i];
            if (!lr_ignore_match(ig, (const char *)r->path, r->path_len,
                                 r->type == LR_FT_DIR && !r->deleted))
                n += is_local_change(ix, folder, r, d->short_id);
        }
        bool end = l.n < MODES_PAGE;
        if (!end) {
            free(after);
            after_len = l.v[l.n - 1].path_len;
            after = lr_xmalloc(after_len + 1);
            memcpy(after, l.v[l.n - 1].path, after_len + 1);
        }
        lr_file_list_release(&l);
        if (end)
            break;
    }
    free(after);
    if (rc < 0 && rc != LR_ENOTFOUND)
        lr_warn(MOD, "folder=%s local changes not counted: %s", folder, lr_err_msg(&err, rc));
    lr_index_close(ix);
    lr_ignore_free(ig);
    return rc < 0 ? 0 : n;
}

void daemon_modes_status(struct lr_daemon *d, const struct lr_folder_cfg *fc, uint64_t need_items,
                         json_t *o)
{
    if (fc->mode == LR_MODE_SEND_ONLY)
        json_object_set_new(o, "override_pending", json_integer((json_int_t)need_items));
    else if (fc->mode == LR_MODE_RECEIVE_ONLY)
        json_object_set_new(o, "local_changes",
                            json_integer((json_int_t)daemon_modes_local_changes(d, fc->id)));
}

/* ---- send-only: adopting equal versions ---- */

/* Two live records the same on disk: type, content and the metadata sync keeps (vectors aside). */
static bool same_version(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    return !a->deleted && !b->deleted && lr_sync_same_content(a, b) && !lr_sync_meta_differs(a, b);
}

int daemon_modes_adopt_equal(struct lr_index *ix, const char *folder,
                             const struct lr_file_rec *remote, uint64_t self_if_receive_only,
                             bool was_own, bool *adopted, struct lr_err *err)
{
    *adopted = false;
    struct lr_file_rec local;
    int rc =
        lr_index_file_get(ix, folder, remote->path, remote->path_len, LR_IX_CHUNKS, &local, err);
    bool has = rc == 0;
    if (rc < 0 && rc != LR_ENOTFOUND)
        return rc;
    struct lr_sync_decision dec;
    struct lr_err derr = {0};
    rc = lr_sync_decide(has ? &local : NULL, remote, &dec, &derr);
    /* Receive-only: an own version equal to the peer's, newer only by our
     * counter or concurrent with it (a fresh scan after the folder was added
     * again, of files we made or the peer did), is the peer's version, and
     * takes the peer's vector as it is: a merge would still be a version of
     * ours, withheld, and the peer waited for it for good. */
    /* (Equal vectors too: scanned in the second the peer's version was
     * made, the fresh vector equals it, but was withheld when scanned, before
     * the peer's record came; stored again, it is sent now.) */
    if (rc >= 0 && self_if_receive_only && has && same_version(&local, remote) &&
        authored(&local, self_if_receive_only) &&
        (lr_vv_equal(&local.vv, &remote->vv)
             ? was_own
             : own_version(ix, folder, &local, self_if_receive_only, false))) {
        lr_sync_decision_release(&dec);
        memset(&dec, 0, sizeof(dec));
        dec.apply = LR_SYNC_APPLY_RECORD;
        lr_vv_copy(&dec.vv, &remote->vv);
    }
    if (rc >= 0 && dec.apply == LR_SYNC_APPLY_RECORD && !(dec.flags & LR_SYNC_F_INCONSISTENT)) {
        /* Our record as it is (its inode, ctime and chunks) with the vector;
         * without one, the peer's tombstone of a path we never had. */
        struct lr_file_rec r = has ? local : *remote;
        r.vv = dec.vv;
        if (!has) {
            r.chunks = NULL;
            r.nchunks = 0;
            r.size = 0;
            r.inode = 0;
            r.ctime_ns = 0;
        }
        rc = lr_index_file_put(ix, folder, &r, NULL, err);
        *adopted = rc == 0;
    } else {
        rc = 0; /* anything else is a change a send-only folder does not take */
    }
    lr_sync_decision_release(&dec);
    if (has)
        lr_file_rec_release(&local);
    return rc;
}

/* ---- the jobs ---- */

struct modes_job {
    struct daemon_job base;
    struct lr_api_req *req;
    bool revert; /* else override */
    char *folder, *root;
    uint64_t self;
    /* out */
    uint64_t done_n, archived, kept;
    int rc;
    struct lr_err err;
    struct lr_need_stats need;
    bool need_known;
};

/* A copy of p[0..n) as an owned NUL-terminated key for the next page. */
static void set_after(uint8_t **after, size_t *after_len, const uint8_t *p, size_t n)
{
    free(*after);
    *after = lr_xmalloc(n + 1);
    memcpy(*after, p, n);
    (*after)[n] = 0;
    *after_len = n;
}

/* Re-stamp one needed path with a vector above every version seen. */
static int override_one(struct modes_job *j, const struct lr_need *n, uint64_t now_s)
{
    struct lr_daemon *d = j->base.d;
    struct lr_file_rec local;
    struct lr_vv merged = {0}, next = {0};
    struct lr_err e = {0};
    int rc = lr_index_file_get(d->ix, j->folder, n->path, n->path_len, LR_IX_CHUNKS, &local, &e);
    bool has = rc == 0;
    if (rc < 0 && rc != LR_ENOTFOUND)
        goto out;
    if (has)
        lr_vv_copy(&merged, &local.vv);
    for (size_t k = 0; k < n->ncand; k++) {
        struct lr_vv m = {0};
        if ((rc = lr_sync_vv_merge(&merged, &n->cand[k].r.rec.vv, &m)) < 0)
            goto out;
        lr_vv_release(&merged);
        merged = m;
    }
    if ((rc = lr_sync_local_change(&merged, j->self, now_s, &next)) < 0)
        goto out;
    if (!has) {
        /* We have nothing there: our version is "absent", i.e. a tombstone. */
        memset(&local, 0, sizeof(local));
        local.path = lr_xmalloc(n->path_len + 1);
        memcpy(local.path, n->path, n->path_len + 1);
        local.path_len = n->path_len;
        const struct lr_file_rec *c = &n->cand[0].r.rec;
        local.type = c->type == LR_FT_DIR || c->type == LR_FT_SYMLINK ? c->type : LR_FT_FILE;
        local.deleted = true;
        local.mtime_ns = (int64_t)now_s * 1000000000;
    }
    lr_vv_release(&local.vv);
    local.vv = next;
    memset(&next, 0, sizeof(next));
    rc = lr_index_file_put(d->ix, j->folder, &local, NULL, &e);
out:
    if (rc < 0) {
        char *p = lr_esc((const char *)n->path, n->path_len);
        lr_warn(MOD, "folder=%s path=%s not overridden: %s", j->folder, p, lr_err_msg(&e, rc));
        free(p);
    }
    lr_vv_release(&merged);
    lr_vv_release(&next);
    lr_file_rec_release(&local);
    return rc;
}

static void override_work(struct modes_job *j, struct lr_ignore *ig)
{
    struct lr_daemon *d = j->base.d;
    uint8_t *after = NULL;
    size_t after_len = 0;
    uint64_t now_s = lr_index_folder_stamp(d->ix, j->folder);
    for (;;) {
        struct lr_need_list nl = {0};
        if ((j->rc = lr_index_need_list(d->ix, j->folder, after, after_len, MODES_PAGE, 0, &nl,
                                        &j->err)) < 0)
            break;
        if ((j->rc = lr_index_begin(d->ix, &j->err)) < 0) {
            lr_need_list_release(&nl);
            break;
        }
        for (size_t i = 0; i < nl.n; i++) {
            const struct lr_need *n = &nl.v[i];
            bool dir = n->cand[0].r.rec.type == LR_FT_DIR;
            /* Ignored paths are not ours to claim (docs/modes.md). */
            if (lr_ignore_match(ig, (const char *)n->path, n->path_len, dir))
                continue;
            if (override_one(j, n, now_s) == 0)
                j->done_n++;
            else
                j->kept++;
        }
        if ((j->rc = lr_index_commit(d->ix, &j->err)) < 0) {
            lr_need_list_release(&nl);
            break;
        }
        bool end = nl.n < MODES_PAGE;
        if (!end)
            set_after(&after, &after_len, nl.v[nl.n - 1].path, nl.v[nl.n - 1].path_len);
        lr_need_list_release(&nl);
        if (end)
            break;
    }
    free(after);
}

static void expect_of(const struct lr_file_rec *l, struct lr_store_expect *e)
{
    memset(e, 0, sizeof(*e));
    e->exists = true;
    e->type = l->type;
    e->ino = l->inode;
    e->size = l->size;
    e->mtime_ns = l->mtime_ns;
    e->ctime_ns = l->type == LR_FT_DIR ? 0 : l->ctime_ns;
}

/*
 * Discard one local change: a live entry leaves the disk (a regular file
 * into the versions archive), then the record is forgotten so the need list
 * wants the peers' version, or nothing if they have none. 1 if reverted, 0
 * if kept (changed since the scan, a directory not empty), <0 on error.
 */
/* Whether a peer's record of `path` is a live directory. */
static bool peer_has_dir(struct lr_index *ix, const char *folder, const uint8_t *path, size_t len)
{
    struct lr_device_list h = {0};
    if (lr_index_remote_holders(ix, folder, path, len, NULL, NULL, &h, NULL) < 0)
        return false;
    bool dir = false;
    for (size_t i = 0; i < h.n && !dir; i++) {
        struct lr_remote_rec rr;
        if (lr_index_remote_get(ix, folder, &h.v[i], path, len, 0, &rr, NULL) == 0) {
            dir = rr.rec.type == LR_FT_DIR && !rr.rec.deleted;
            lr_remote_rec_release(&rr);
        }
    }
    lr_device_list_release(&h);
    return dir;
}

static int revert_one(struct modes_job *j, struct lr_store *st, const struct lr_file_rec *r)
{
    struct lr_daemon *d = j->base.d;
    struct lr_err e = {0};
    int rc = 0;
    /* A directory the peers have too (made again here, e.g. by a file of
     * theirs pulled into it after we deleted it) stays: only our version of
     * it goes, and the peers' is applied over it. Deleting it failed while
     * it held their files, and the change was "kept" for good. */
    if (!r->deleted &&
        !(r->type == LR_FT_DIR && peer_has_dir(d->ix, j->folder, r->path, r->path_len))) {
        struct lr_store_expect ex;
        expect_of(r, &ex);
        rc = lr_store_delete(st, NULL, (const char *)r->path, &ex, &e);
        if (rc == -ENOENT)
            rc = 0; /* already gone: only the record is left to forget */
        else if (rc == 0 && r->type == LR_FT_FILE)
            j->archived++;
        if (rc == LR_ECHANGED || rc == -ENOTEMPTY) {
            char *p = lr_esc((const char *)r->path, r->path_len);
            lr_info(MOD, "folder=%s path=%s kept: %s", j->folder, p, lr_err_msg(&e, rc));
            free(p);
            return 0;
        }
        if (rc < 0)
            goto fail;
    }
    if ((rc = lr_index_file_forget(d->ix, j->folder, r->path, r->path_len, NULL, &e)) < 0)
        goto fail;
    return 1;
fail : {
    char *p = lr_esc((const char *)r->path, r->path_len);
    lr_warn(MOD, "folder=%s path=%s not reverted: %s", j->folder, p, lr_err_msg(&e, rc));
    free(p);
}
    return rc;
}

static void revert_work(struct modes_job *j, struct lr_ignore *ig)
{
    struct lr_daemon *d = j->base.d;
    struct lr_store *st = NULL;
    struct lr_file_list dirs = {0}; /* directories, reverted last and deepest first */
    uint8_t *after = NULL;
    size_t after_len = 0;
    if ((j->rc = lr_store_open(j->root, &st, &j->err)) < 0)
        return;
    for (;;) {
        struct lr_file_list l = {0};
        if ((j->rc = lr_index_list_by_path(d->ix, j->folder, after, after_len, MODES_PAGE, 0, &l,
                                           &j->err)) < 0)
            break;
        bool end = l.n < MODES_PAGE;
        if (!end)
            set_after(&after, &after_len, l.v[l.n - 1].path, l.v[l.n - 1].path_len);
        for (size_t i = 0; i < l.n; i++) {
            struct lr_file_rec *r = &l.v[i];
            /* Ignored paths are not synced: nothing of the peers' replaces them. */
            if (lr_ignore_match(ig, (const char *)r->path, r->path_len,
                                r->type == LR_FT_DIR && !r->deleted) ||
                !is_local_change(d->ix, j->folder, r, j->self))
                continue;
            if (r->type == LR_FT_DIR && !r->deleted) {
                dirs.v = lr_xappendarray(dirs.v, dirs.n, sizeof(*dirs.v));
                dirs.v[dirs.n++] = *r;
                memset(r, 0, sizeof(*r));
                continue;
            }
            int rc = revert_one(j, st, r);
            j->done_n += rc > 0;
            j->kept += rc <= 0;
        }
        lr_file_list_release(&l);
        if (end)
            break;
    }
    /* Path order lists a directory before its entries: reverse it so a
     * directory only we added is emptied before it goes. */
    for (size_t i = dirs.n; i-- > 0 && j->rc == 0;) {
        int rc = revert_one(j, st, &dirs.v[i]);
        j->done_n += rc > 0;
        j->kept += rc <= 0;
    }
    lr_file_list_release(&dirs);
    free(after);
    lr_store_close(st);
}

static void modes_work(struct daemon_job *base)
{
    struct modes_job *j = (struct modes_job *)base;
    struct lr_daemon *d = base->d;
    struct lr_ignore *ig = NULL;
    struct lr_err ie = {0};
    if (lr_ignore_load(j->root, &ig, &ie) < 0) {
        /* Without the rules we cannot tell ignored paths apart: touch nothing. */
        j->rc = lr_err_set(&j->err, LR_EPATTERN, "folder %s: %s", j->folder, ie.msg);
        return;
    }
    if (j->revert)
        revert_work(j, ig);
    else
        override_work(j, ig);
    lr_ignore_free(ig);
    j->need_known = lr_index_need_stats(d->ix, j->folder, &j->need, NULL) == 0;
}

static void modes_done(struct daemon_job *base, int status)
{
    struct modes_job *j = (struct modes_job *)base;
    struct lr_daemon *d = base->d;
    const char *what = j->revert ? "revert" : "override";
    if (status < 0) {
        lr_api_reply_error(j->req, "canceled", 1,
                           "%s of folder %s canceled: the daemon is stopping", what, j->folder);
    } else if (j->rc < 0) {
        lr_api_reply_rc(j->req, j->rc, &j->err);
    } else {
        lr_info(MOD, "folder=%s %s: %llu paths, %llu files archived, %llu kept", j->folder, what,
                (unsigned long long)j->done_n, (unsigned long long)j->archived,
                (unsigned long long)j->kept);
        json_t *res;
        if (j->revert)
            res = json_pack("{s:s, s:I, s:I, s:I}", "folder", j->folder, "reverted",
                            (json_int_t)j->done_n, "archived", (json_int_t)j->archived, "kept",
                            (json_int_t)j->kept);
        else
            res = json_pack("{s:s, s:I, s:I}", "folder", j->folder, "overridden",
                            (json_int_t)j->done_n, "kept", (json_int_t)j->kept);
        daemon_event(d, json_pack("{s:s, s:s, s:I}", "type", j->revert ? "reverted" : "overridden",
                                  "folder", j->folder, "count", (json_int_t)j->done_n));
        lr_api_reply(j->req, res);
        if (!d->stopping && d->sync) {
            struct sync_folder *f = sync_folder_get(d, j->folder);
            if (j->need_known) {
                f->need = j->need;
                f->need_known = true;
            }
            if (j->revert) {
                f->rescans = 0;
                sync_pull_trigger(d, j->folder); /* the peers' versions come back */
            } else {
                sync_local_changed(d, j->folder); /* peers take ours */
            }
        }
    }
    free(j->folder);
    free(j->root);
    free(j);
}

static void queue_mode_job(struct lr_daemon *d, struct lr_api_req *req, json_t *params, bool revert)
{
    const char *folder = json_string_value(json_object_get(params, "folder"));
    if (!folder) {
        lr_api_reply_error(req, "bad_request", 2, "'folder' (a folder ID) is required");
        return;
    }
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder);
    if (!fc) {
        char *e = lr_escs(folder);
        lr_api_reply_error(req, "notfound", 1, "no folder with ID '%s'", e);
        free(e);
        return;
    }
    enum lr_folder_mode want = revert ? LR_MODE_RECEIVE_ONLY : LR_MODE_SEND_ONLY;
    if (fc->mode != want) {
        char *e = lr_escs(folder);
        lr_api_reply_error(req, "wrong_mode", 1, "folder '%s' is %s: %s applies only to %s folders",
                           e, lr_folder_mode_name(fc->mode), revert ? "revert" : "override",
                           lr_folder_mode_name(want));
        free(e);
        return;
    }
    struct modes_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = modes_work;
    j->base.done = modes_done;
    j->req = req;
    j->revert = revert;
    j->folder = lr_xstrdup(fc->id);
    j->root = lr_xstrdup(fc->path);
    j->self = d->short_id;
    daemon_job_queue(d, &j->base);
}

void daemon_m_folder_override(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    queue_mode_job(d, req, params, false);
}

void daemon_m_folder_revert(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    queue_mode_job(d, req, params, true);
}
