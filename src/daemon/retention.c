/*
 * retention.c - the versions archive's retention: the prune walk and the
 * daemon's job and timer that run it (retention.h).
 */
#include "daemon/retention.h"

#include "config/config.h"
#include "daemon/conflicts.h"
#include "daemon/daemon_int.h"
#include "daemon/sync.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "versions"

/* ---- the walk ------------------------------------------------------------- */

struct prune {
    uint32_t keep;
    int64_t cutoff; /* stamps before it go (INT64_MIN: no age rule) */
    int64_t fresh;  /* stamps from it on stay for now (see prune_file) */
    const atomic_bool *cancel;
    dev_t dev; /* the archive's file system */
    struct daemon_prune_result *out;
    int first_rc;
    struct lr_err *err;
};

/* One archived file of a directory. */
struct ent {
    char *name;
    size_t leaf_len;
    int64_t when;
    unsigned seq;
    uint64_t size;
};

static int cmp_ent(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    size_t n = x->leaf_len < y->leaf_len ? x->leaf_len : y->leaf_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    if (x->leaf_len != y->leaf_len)
        return x->leaf_len < y->leaf_len ? -1 : 1;
    if (x->when != y->when)
        return x->when < y->when ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool same_leaf(const struct ent *x, const struct ent *y)
{
    return x->leaf_len == y->leaf_len && memcmp(x->name, y->name, x->leaf_len) == 0;
}

static void failed(struct prune *p, int e, const char *what, const char *rel, const char *name)
{
    p->out->failed++;
    if (p->first_rc == 0)
        p->first_rc = lr_err_set(p->err, -e, "versions archive: cannot %s %s%s%s: %s", what,
                                 *rel || *name ? rel : "versions/", *rel && *name ? "/" : "", name,
                                 strerror(e));
}

static bool canceled(const struct prune *p)
{
    return p->cancel && atomic_load_explicit(p->cancel, memory_order_relaxed);
}

/*
 * Remove what the rule says of one file's versions v[0..n), oldest first.
 * One stamped in the last seconds stays until a later prune: the archive
 * names a version displaced in second S with the lowest free "-N" of S, so
 * a name freed within S would be taken again by a newer version, which
 * would then sort as the oldest of S.
 */
static void prune_file(struct prune *p, int dfd, const char *rel, const struct ent *v, size_t n)
{
    for (size_t i = 0; i < n && !canceled(p); i++) {
        bool over = p->keep && n - i > p->keep;
        if ((!over && v[i].when >= p->cutoff) || v[i].when >= p->fresh)
            continue;
        if (unlinkat(dfd, v[i].name, 0) < 0) {
            if (errno != ENOENT)
                failed(p, errno, "remove", rel, v[i].name);
            continue;
        }
        p->out->removed++;
        p->out->bytes += v[i].size;
    }
}

static void prune_dir(struct prune *p, int dfd, const char *rel, int depth)
{
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        failed(p, errno, "read", rel, "");
        close(dfd);
        return;
    }
    struct ent *v = NULL;
    size_t n = 0;
    char **subs = NULL;
    size_t nsubs = 0;
    struct dirent *de;
    while (!canceled(p) && (de = readdir(dir))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile */
        if (S_ISDIR(st.st_mode)) {
            if (depth < DAEMON_VERSIONS_DEPTH && st.st_dev == p->dev) {
                subs = lr_xappendarray(subs, nsubs, sizeof(*subs));
                subs[nsubs++] = lr_xstrdup(name);
            }
            continue;
        }
        struct ent e = {0};
        bool cut;
        if (!daemon_version_name_parse(name, &e.leaf_len, &e.when, &e.seq, &cut))
            continue; /* not the archive's */
        e.name = lr_xstrdup(name);
        e.size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        v = lr_xappendarray(v, n, sizeof(*v));
        v[n++] = e;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_ent);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && same_leaf(&v[i], &v[j]); j++)
            ;
        prune_file(p, dirfd(dir), rel, v + i, j - i);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
    for (size_t i = 0; i < nsubs; i++) {
        int fd = canceled(p)
                     ? -1
                     : openat(dirfd(dir), subs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (!canceled(p) && errno != ENOENT)
                failed(p, errno, "open", rel, subs[i]);
        } else {
            char *sub = lr_xasprintf("%s%s%s", rel, *rel ? "/" : "", subs[i]);
            prune_dir(p, fd, sub, depth + 1);
            free(sub);
            /* Mirrors are made again by the next archiving into them. */
            if (unlinkat(dirfd(dir), subs[i], AT_REMOVEDIR) == 0)
                p->out->dirs_removed++;
            else if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
                failed(p, errno, "remove the emptied directory", rel, subs[i]);
        }
        free(subs[i]);
    }
    free(subs);
    closedir(dir);
}

int daemon_versions_prune(const char *root, uint32_t keep, uint32_t days, int64_t now,
                          const atomic_bool *cancel, struct daemon_prune_result *out,
                          struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!keep && !days)
        return 0;
    int vfd;
    int rc = daemon_versions_open(root, &vfd, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    struct stat st;
    if (fstat(vfd, &st) < 0) {
        int e = errno;
        close(vfd);
        return lr_err_set(err, -e, "versions archive of %s: %s", root, strerror(e));
    }
    struct prune p = {
        .keep = keep,
        .cutoff = days ? now - (int64_t)days * 86400 : INT64_MIN,
        .fresh = now - RETENTION_FRESH_S,
        .cancel = cancel,
        .dev = st.st_dev,
        .out = out,
        .err = err,
    };
    prune_dir(&p, vfd, "", 0);
    if (p.first_rc == 0 && canceled(&p))
        return lr_err_set(err, LR_ECANCELED, "prune of %s's archive was canceled", root);
    return p.first_rc;
}

/* ---- the daemon's side ---------------------------------------------------------- */

/* A folder's pruning, by folder ID. */
struct ret_folder {
    char *id;
    bool queued;
    bool done_once;      /* pruned with the settings below since start */
    uint32_t keep, days; /* the settings of the last prune queued */
    uint64_t token;      /* ... and the folder's (config.h: a folder added again differs) */
    uint64_t at;         /* when it was queued (uv_now) */
    /* Not again for writes before this (uv_now): RETENTION_AFTER_MS after
     * the last prune ended, or RETENTION_SHARE times its duration if more,
     * so a large archive's walks take a bounded share of the serial queue
     * while a long pull keeps archiving. */
    uint64_t next_ok;
};

struct retention {
    uv_timer_t timer;
    uv_check_t check;
    bool closed;
    struct ret_folder *v;
    size_t n;
};

struct prune_job {
    struct daemon_job base;
    uint64_t ns; /* the walk's duration */
    char *folder, *root;
    uint32_t keep, days;
    int rc;
    struct lr_err err;
    struct daemon_prune_result res;
    bool skip; /* the folder went, or its retention was lifted, before the job's turn */
};

static struct ret_folder *ret_folder(struct retention *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].id, id) == 0)
            return &r->v[i];
    r->v = lr_xreallocarray(r->v, r->n + 1, sizeof(*r->v));
    struct ret_folder *f = &r->v[r->n++];
    memset(f, 0, sizeof(*f));
    f->id = lr_xstrdup(id);
    return f;
}

/* Loop side, as the job leaves the queue: the settings as they are now (a
 * folder removed, moved or without retention since it was queued is not
 * pruned: `folder remove` leaves the archive alone). */
static void prune_start(struct daemon_job *base)
{
    struct prune_job *j = (struct prune_job *)base;
    const struct lr_folder_cfg *fc = lr_config_find_folder(base->d->cfg, j->folder);
    j->skip = !fc || strcmp(fc->path, j->root) != 0 || (!fc->versions_keep && !fc->versions_days);
    if (!j->skip) {
        j->keep = fc->versions_keep;
        j->days = fc->versions_days;
    }
}

static void prune_work(struct daemon_job *base)
{
    struct prune_job *j = (struct prune_job *)base;
    if (j->skip)
        return;
    uint64_t t0 = uv_hrtime();
    j->rc = daemon_versions_prune(j->root, j->keep, j->days, (int64_t)time(NULL),
                                  &base->d->scan_cancel, &j->res, &j->err);
    j->ns = uv_hrtime() - t0;
}

static void prune_done(struct daemon_job *base, int status)
{
    struct prune_job *j = (struct prune_job *)base;
    struct lr_daemon *d = base->d;
    struct retention *r = d->retention;
    uint64_t wait = j->ns / 1000000 * RETENTION_SHARE;
    for (size_t i = 0; r && i < r->n; i++) {
        if (strcmp(r->v[i].id, j->folder) == 0) {
            r->v[i].queued = false;
            r->v[i].next_ok =
                uv_now(&d->loop) + (wait > RETENTION_AFTER_MS ? wait : RETENTION_AFTER_MS);
        }
    }
    if (status == 0 && !j->skip)
        lr_debug(MOD, "folder=%s prune done: %llu removed, %llu failed, %llu ms", j->folder,
                 (unsigned long long)j->res.removed, (unsigned long long)j->res.failed,
                 (unsigned long long)(j->ns / 1000000));
    if (status == 0 && j->res.removed)
        lr_info(MOD,
                "folder=%s pruned %llu archived versions (%llu bytes): keep %u per file, %u days",
                j->folder, (unsigned long long)j->res.removed, (unsigned long long)j->res.bytes,
                j->keep, j->days);
    if (status == 0 && j->rc < 0 && j->rc != LR_ENOMARKER && j->rc != LR_ECANCELED)
        lr_warn(MOD, "folder=%s prune: %llu entries not handled: %s", j->folder,
                (unsigned long long)j->res.failed, lr_err_msg(&j->err, j->rc));
    free(j->folder);
    free(j->root);
    free(j);
}

static void queue_prune(struct lr_daemon *d, struct ret_folder *rf, const struct lr_folder_cfg *fc)
{
    struct prune_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.start = prune_start;
    j->base.work = prune_work;
    j->base.done = prune_done;
    j->folder = lr_xstrdup(fc->id);
    j->root = lr_xstrdup(fc->path);
    j->keep = fc->versions_keep;
    j->days = fc->versions_days;
    rf->queued = true;
    rf->done_once = true;
    rf->keep = fc->versions_keep;
    rf->days = fc->versions_days;
    rf->token = fc->token;
    rf->at = uv_now(&d->loop);
    daemon_job_queue(d, &j->base);
}

static void on_tick(uv_timer_t *h)
{
    struct lr_daemon *d = h->data;
    struct retention *r = d->retention;
    if (d->stopping || !d->cfg)
        return;
    uint64_t now = uv_now(&d->loop);
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const struct lr_folder_cfg *fc = &d->cfg->folders[i];
        if (!fc->versions_keep && !fc->versions_days) {
            /* Lifted: set again later, even to the same values, it prunes at once. */
            for (size_t k = 0; k < r->n; k++)
                if (strcmp(r->v[k].id, fc->id) == 0)
                    r->v[k].done_once = false;
            continue;
        }
        struct ret_folder *rf = ret_folder(r, fc->id);
        if (rf->queued)
            continue;
        bool changed = !rf->done_once || rf->keep != fc->versions_keep ||
                       rf->days != fc->versions_days || rf->token != fc->token;
        bool wrote = sync_folder_applied_at(d, fc->id) >= rf->at && now >= rf->next_ok;
        if (changed || wrote || now - rf->at >= RETENTION_SWEEP_MS)
            queue_prune(d, rf, fc);
    }
    /* Folders removed since: their entries go (a folder added again starts over). */
    for (size_t i = 0; i < r->n;) {
        if (!r->v[i].queued && !lr_config_find_folder(d->cfg, r->v[i].id)) {
            free(r->v[i].id);
            r->v[i] = r->v[--r->n];
        } else {
            i++;
        }
    }
}

static void on_check(uv_check_t *h)
{
    struct lr_daemon *d = h->data;
    struct retention *r = d->retention;
    if (!r || r->closed || !d->stopping)
        return;
    r->closed = true;
    uv_close((uv_handle_t *)&r->timer, NULL);
    uv_close((uv_handle_t *)&r->check, NULL);
}

void retention_init(struct lr_daemon *d)
{
    struct retention *r = lr_xcalloc(1, sizeof(*r));
    d->retention = r;
    uv_timer_init(&d->loop, &r->timer);
    uv_check_init(&d->loop, &r->check);
    r->timer.data = d;
    r->check.data = d;
    /* Neither keeps the loop alive: a stopping daemon does not wait for them. */
    uv_unref((uv_handle_t *)&r->timer);
    uv_unref((uv_handle_t *)&r->check);
    uv_timer_start(&r->timer, on_tick, RETENTION_TICK_MS, RETENTION_TICK_MS);
    uv_check_start(&r->check, on_check);
}

void retention_free(struct lr_daemon *d)
{
    struct retention *r = d->retention;
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].id);
    free(r->v);
    free(r);
    d->retention = NULL;
}
