/*
 * scanjobs.c - folder scans requested through the daemon, run one job at a
 * time on libuv's worker pool (the daemon's job queue, sync.h) so the loop
 * thread never hashes or touches the disk. A job copies the ids and paths it needs, so a folder
 * removed meanwhile does not pull memory from under it; the index handle belongs to the running job
 * until its completion callback.
 */
#include "daemon/daemon_int.h"
#include "daemon/syncerr.h"
#include "daemon/live.h"
#include "store/store.h"

#include "util/jsonx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MOD "scan"

/*
 * Progress of a running scan: the scanning thread names a folder whose batch
 * it committed, the loop then announces it to peers (sync_local_changed), so
 * a first scan of a large folder is transferred while it runs instead of
 * after. The loop closes the handle at shutdown while a scan may still be
 * running, hence the flag under the mutex; the structure lives until both
 * the handle is closed and no scan job holds it (refs, loop thread only).
 */
struct scan_progress {
    uv_async_t async;
    pthread_mutex_t mu;
    bool closed;
    char **ids; /* folders with news, deduplicated */
    size_t nids;
    struct lr_daemon *d;
    unsigned refs;
};

static void progress_cb(uv_async_t *h)
{
    struct scan_progress *p = h->data;
    pthread_mutex_lock(&p->mu);
    char **ids = p->ids;
    size_t n = p->nids;
    p->ids = NULL;
    p->nids = 0;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < n; i++) {
        if (!p->d->stopping && lr_config_find_folder(p->d->cfg, ids[i]))
            sync_folder_progress(p->d, ids[i]);
        free(ids[i]);
    }
    free(ids);
}

static struct scan_progress *progress(struct lr_daemon *d)
{
    if (!d->scan_progress && !d->stopping) {
        struct scan_progress *p = lr_xcalloc(1, sizeof(*p));
        pthread_mutex_init(&p->mu, NULL);
        p->d = d;
        uv_async_init(&d->loop, &p->async, progress_cb);
        p->async.data = p;
        uv_unref((uv_handle_t *)&p->async);
        p->refs = 1; /* the handle's */
        d->scan_progress = p;
    }
    return d->scan_progress;
}

static void progress_unref(struct scan_progress *p)
{
    if (!p || --p->refs > 0)
        return;
    for (size_t i = 0; i < p->nids; i++)
        free(p->ids[i]);
    free(p->ids);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static void progress_closed(uv_handle_t *h)
{
    progress_unref(h->data);
}

struct commit_ctx {
    struct scan_progress *p;
    const char *folder;
};

/* Scanning thread: a batch of the folder is committed. */
static void on_commit(void *arg)
{
    struct commit_ctx *c = arg;
    struct scan_progress *p = c->p;
    pthread_mutex_lock(&p->mu);
    if (!p->closed) {
        bool have = false;
        for (size_t i = 0; i < p->nids && !have; i++)
            have = strcmp(p->ids[i], c->folder) == 0;
        if (!have) {
            p->ids = lr_xreallocarray(p->ids, p->nids + 1, sizeof(*p->ids));
            p->ids[p->nids++] = lr_xstrdup(c->folder);
        }
        uv_async_send(&p->async);
    }
    pthread_mutex_unlock(&p->mu);
}

struct scan_item {
    char *id;
    char *path;
    int rc;
    struct lr_err err;
    struct lr_scan_result res;
    bool rekeyed; /* the index mark check gave the index a new ID */
    bool again;   /* scanned before by this daemon (its special files were logged) */
};

struct scan_job {
    struct daemon_job base; /* first: the queue sees a struct daemon_job */
    struct scan_item *items;
    size_t nitems;
    struct lr_api_req *req;         /* answered on completion, or NULL */
    struct scan_progress *progress; /* set in start (loop); NULL at shutdown */
};

json_t *lr_scan_result_json(const char *id, const struct lr_scan_result *r)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "id", id, "files",
                     (json_int_t)r->files, "bytes", (json_int_t)r->bytes, "added",
                     (json_int_t)r->added, "changed", (json_int_t)r->changed, "deleted",
                     (json_int_t)r->deleted, "bytes_hashed", (json_int_t)r->bytes_hashed, "seconds",
                     r->seconds);
}

static void job_free(struct scan_job *j)
{
    for (size_t i = 0; i < j->nitems; i++) {
        free(j->items[i].id);
        free(j->items[i].path);
    }
    free(j->items);
    progress_unref(j->progress);
    free(j);
}

struct skip_ctx {
    struct lr_daemon *d;
    const char *folder;
};

/* An entry the scan could not read: listed by status until a scan reads it. */
static void on_skip(void *arg, const uint8_t *path, size_t len, int rc, const char *what)
{
    struct skip_ctx *c = arg;
    sync_items_scan_failed(c->d, c->folder, path, len, rc, what);
}

static void work(struct daemon_job *base)
{
    struct scan_job *j = (struct scan_job *)base;
    struct lr_daemon *d = j->base.d;
    struct lr_scan_opts opts = {0};
    opts.short_id = d->short_id;
    opts.on_skip = on_skip;
    opts.cancel = &d->scan_cancel;
    if (j->progress)
        opts.on_commit = on_commit;
    for (size_t i = 0; i < j->nitems; i++) {
        struct scan_item *it = &j->items[i];
        struct skip_ctx ctx = {d, it->id};
        struct commit_ctx cc = {j->progress, it->id};
        opts.skip_arg = &ctx;
        opts.commit_arg = &cc;
        opts.quiet_specials = it->again;
        if (atomic_load(&d->scan_cancel)) {
            /* The rest of a canceled job: not even set up (a missing marker
             * would be reported as this folder's error during the stop). */
            it->rc = lr_err_set(&it->err, LR_ECANCELED, "scan of '%s' was canceled", it->id);
            continue;
        }
        sync_items_scan_begin(d, it->id);
        /* Again here, before this scan's changes raise max_seq past the
         * mark: the check at bind found no root if the disk came later. */
        it->rc = lr_store_mark_check(it->path, d->ix, it->id, &it->rekeyed, &it->err);
        if (it->rc == 0)
            it->rc = lr_scan_folder(d->ix, it->id, it->path, &opts, &it->res, &it->err);
        sync_items_scan_end(d, it->id, it->rc == 0);
    }
}

static void done(struct daemon_job *base, int status)
{
    struct scan_job *j = (struct scan_job *)base;
    struct lr_daemon *d = j->base.d;
    if (status == UV_ECANCELED) {
        /* Dropped before it ran: the daemon is stopping. */
        if (j->req)
            lr_api_reply_error(j->req, "canceled", 1, "the daemon is stopping");
        job_free(j);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < j->nitems; i++) {
        struct scan_item *it = &j->items[i];
        struct folder_rt *f = daemon_folder(d, it->id);
        if (status < 0 && it->rc == 0)
            it->rc = lr_err_set(&it->err, LR_ECANCELED, "scan of '%s' was canceled", it->id);
        if (it->rc == LR_ECANCELED && d->stopping) {
            /* Stopped for the shutdown: not a folder error; the next start scans again. */
            lr_info(MOD, "folder=%s scan stopped: the daemon is stopping", it->id);
            json_array_append_new(arr, json_pack("{s:s, s:s}", "id", it->id, "error",
                                                 "scan canceled: the daemon is stopping"));
            continue;
        }
        if (it->rc < 0) {
            const char *msg = lr_err_msg(&it->err, it->rc);
            char *e = lr_escs(msg);
            lr_warn(MOD, "folder=%s scan failed: %s", it->id, e);
            free(e);
            if (f)
                daemon_folder_fail(f, msg);
            json_t *o = json_pack("{s:s}", "id", it->id);
            /* Lossy: the message may quote a root that is not UTF-8. */
            json_object_set_new(o, "error", lr_json_lossy(msg, strlen(msg)));
            json_array_append_new(arr, o);
            daemon_event(d, json_pack("{s:s, s:s, s:o}", "type", "folder_error", "folder", it->id,
                                      "error", lr_json_lossy(msg, strlen(msg))));
            if (status >= 0) {
                /* Peers are told (it is no longer announced), and it is
                 * retried: a folder back from error was never announced
                 * again, and both sides reported "in sync" for good. */
                sync_folder_scanned(d, it->id, false);
                live_folder_failed(d, it->id);
            }
            continue;
        }
        if (f) {
            f->state = FOLDER_IDLE;
            free(f->error);
            f->error = NULL;
            f->scanned = true;
            f->last = it->res;
            if (!f->bound)
                scanjobs_bind(d, it->id); /* its bind failed: try again */
            else if (it->rekeyed)
                scanjobs_rebind(d, it->id, false);
        }
        /* The scanner logged the result ("scan: folder=... files=..."). */
        sync_folder_scanned(d, it->id, true);
        live_folder_scanned(d, it->id);
        json_t *o = lr_scan_result_json(it->id, &it->res);
        /* The event is its own object, "type" and "folder" first as in
         * every event (the human `events` line starts with them); the
         * reply keeps the contract's "id" key. */
        json_t *ev = json_pack("{s:s, s:s}", "type", "scan_finished", "folder", it->id);
        json_object_update(ev, o);
        json_object_del(ev, "id");
        json_array_append_new(arr, o);
        daemon_event(d, ev);
    }
    if (j->req) {
        /* A scan that failed for a folder is still answered with the others' results;
         * the error entry tells the CLI to exit 1. */
        lr_api_reply(j->req, json_pack("{s:o}", "folders", arr));
    } else {
        json_decref(arr);
    }
    job_free(j);
}

static void start(struct daemon_job *base)
{
    struct scan_job *j = (struct scan_job *)base;
    j->progress = progress(j->base.d);
    if (j->progress)
        j->progress->refs++;
    for (size_t i = 0; i < j->nitems; i++) {
        struct folder_rt *f = daemon_folder(j->base.d, j->items[i].id);
        if (f) {
            f->scan_queued = false;
            f->state = FOLDER_SCANNING;
        }
        live_scan_starting(j->base.d, j->items[i].id);
    }
}

/* ---- binding a folder's index to its configuration entry ---- */

struct bind_job {
    struct daemon_job base;
    char *folder;
    char *root;
    uint64_t token;
    bool reset, rekeyed;
    bool rekey; /* in: a new index ID even if the mark check finds none */
    int rc;
    struct lr_err err;
};

static void bind_work(struct daemon_job *base)
{
    struct bind_job *j = (struct bind_job *)base;
    j->rc = lr_index_folder_bind(base->d->ix, j->folder, base->d->short_id, j->token, &j->reset,
                                 &j->err);
    /* Before the folder is announced: no sequence of an index older than
     * what peers hold may leave (store.h, the index mark). */
    if (j->rc == 0)
        j->rc = lr_store_mark_check(j->root, base->d->ix, j->folder, &j->rekeyed, &j->err);
    if (j->rc == 0 && j->rekey && !j->rekeyed && !j->reset)
        j->rc = lr_index_folder_rekey(base->d->ix, j->folder, 0, &j->err);
}

static void bind_done(struct daemon_job *base, int status)
{
    struct bind_job *j = (struct bind_job *)base;
    struct lr_daemon *d = base->d;
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, j->folder);
    struct folder_rt *f = daemon_folder(d, j->folder);
    /* Removed, or removed and added again (another bind is queued) meanwhile. */
    if (status < 0 || !f || !fc || fc->token != j->token) {
        free(j->folder);
        free(j->root);
        free(j);
        return;
    }
    if (j->rc < 0) {
        const char *msg = lr_err_msg(&j->err, j->rc);
        lr_warn(MOD, "folder=%s index not usable: %s", j->folder, msg);
        char *m = lr_xasprintf("index: %s", msg);
        daemon_folder_fail(f, m);
        free(m);
    } else {
        if (j->reset)
            lr_info(MOD,
                    "folder=%s was removed and added again: its old index is dropped (the first "
                    "scan records what is there; nothing is deleted on peers)",
                    j->folder);
        f->bound = true;
        sync_config_changed(d); /* now announced */
    }
    free(j->folder);
    free(j->root);
    free(j);
}

static void bind_queue(struct lr_daemon *d, const char *id, bool rekey);

void scanjobs_rebind(struct lr_daemon *d, const char *id, bool rekey)
{
    struct folder_rt *f = daemon_folder(d, id);
    if (!f || !f->bound)
        return;
    f->bound = false;
    sync_config_changed(d);
    bind_queue(d, id, rekey);
}

void scanjobs_bind(struct lr_daemon *d, const char *id)
{
    bind_queue(d, id, false);
}

static void bind_queue(struct lr_daemon *d, const char *id, bool rekey)
{
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, id);
    if (!fc)
        return;
    struct bind_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC; /* a SCAN job is a struct scan_job (busy_with) */
    j->base.work = bind_work;
    j->base.done = bind_done;
    j->folder = lr_xstrdup(id);
    j->root = lr_xstrdup(fc->path);
    j->token = fc->token;
    j->rekey = rekey;
    daemon_job_queue(d, &j->base);
}

int scanjobs_queue(struct lr_daemon *d, const char *const *ids, size_t n, struct lr_api_req *req,
                   struct lr_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!lr_config_find_folder(d->cfg, ids[i])) {
            char *e = lr_escs(ids[i]);
            int rc = lr_err_set(err, LR_ENOTFOUND, "no folder with ID '%s'", e);
            free(e);
            return rc;
        }
    }
    struct scan_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SCAN;
    j->base.start = start;
    j->base.work = work;
    j->base.done = done;
    j->req = req;
    size_t count = n ? n : d->cfg->nfolders;
    j->items = lr_xcalloc(count ? count : 1, sizeof(*j->items));
    for (size_t i = 0; i < count; i++) {
        const struct lr_folder_cfg *f =
            n ? lr_config_find_folder(d->cfg, ids[i]) : &d->cfg->folders[i];
        j->items[i].id = lr_xstrdup(f->id);
        j->items[i].path = lr_xstrdup(f->path);
        struct folder_rt *rt = daemon_folder(d, f->id);
        if (rt)
            rt->scan_queued = true;
        j->items[i].again = rt && rt->scanned;
    }
    j->nitems = count;
    daemon_job_queue(d, &j->base);
    return 0;
}

static bool job_has(const struct scan_job *j, const char *id)
{
    for (size_t i = 0; i < j->nitems; i++)
        if (strcmp(j->items[i].id, id) == 0)
            return true;
    return false;
}

static bool busy_with(const struct daemon_job *base, const char *const *ids, size_t n)
{
    if (base->kind != DAEMON_JOB_SCAN)
        return false;
    const struct scan_job *j = (const struct scan_job *)base;
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (job_has(j, ids[i]))
            return true;
    return false;
}

struct daemon_job *scanjobs_last(struct lr_daemon *d, const char *const *ids, size_t n)
{
    struct daemon_job *last = NULL;
    if (d->job_running && busy_with(d->job_running, ids, n))
        last = d->job_running;
    for (struct daemon_job *j = d->jobs_head; j; j = j->next)
        if (busy_with(j, ids, n))
            last = j;
    return last;
}

void scanjobs_cancel(struct lr_daemon *d)
{
    /* Every waiting job, scans and sync work alike. A running scan stops at
     * its next read (a first scan of a large tree took seconds to end);
     * other running jobs complete during shutdown. */
    atomic_store(&d->scan_cancel, true);
    daemon_jobs_cancel(d);
    struct scan_progress *p = d->scan_progress;
    if (p) {
        pthread_mutex_lock(&p->mu);
        p->closed = true;
        pthread_mutex_unlock(&p->mu);
        uv_close((uv_handle_t *)&p->async, progress_closed);
        d->scan_progress = NULL;
    }
}
