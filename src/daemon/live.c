/*
 * live.c - per-folder watchers and periodic rescans (contract in live.h).
 *
 * The state lives here rather than in struct folder_rt so the watcher's
 * wiring stays in one file: a short list keyed by (daemon, folder ID).
 */
#include "daemon/live.h"

#include "daemon/daemon_int.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"
#include "watch/watch.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MOD "live"

struct live {
    struct live *next;
    struct lr_daemon *d;
    char *id;
    char *path;           /* the root the watcher was started on */
    struct lr_watch *w;   /* NULL while the folder is not usable, or if it could not start */
    uv_timer_t rescan;    /* periodic full rescan */
    uv_timer_t kick;      /* a change scan held back by the pacing below */
    int closing;          /* handles still closing after drop() */
    bool start_failed;    /* logged once; retried after each successful scan */
    uint64_t scan_end_ms; /* uv_now when the last successful scan finished */
    uint64_t scan_ms;     /* how long it took */
    uint64_t held_since;  /* a change scan held back while pulling, since (0: none) */
    uint64_t retry_ms;    /* the folder is in error: the rescan timer's backoff (0: not) */
    /* Paths reported since the last change scan was queued (at most
     * LIVE_PEND_MAX; past it, or on a full rescan, pend_all): while they
     * are all our own writes the scan may be held back. */
    char **pend;
    size_t npend;
    bool pend_all;
};

static struct live *lives; /* loop thread only */

static struct live *find(struct lr_daemon *d, const char *id)
{
    for (struct live *l = lives; l; l = l->next)
        if (l->d == d && strcmp(l->id, id) == 0)
            return l;
    return NULL;
}

static void queue_scan(struct live *l, const char *why)
{
    struct lr_daemon *d = l->d;
    if (d->stopping)
        return;
    struct folder_rt *rt = daemon_folder(d, l->id);
    /* A scan still waiting in the queue has not walked yet: it will see this change. */
    if (!rt || rt->scan_queued)
        return;
    const char *id = l->id;
    struct lr_err err = {0};
    if (scanjobs_queue(d, &id, 1, NULL, &err) < 0)
        lr_warn(MOD, "folder=%s cannot queue a scan (%s): %s", l->id, why, err.msg);
}

static void request_scan(struct live *l);

static void on_kick(uv_timer_t *t)
{
    request_scan(t->data);
}

/*
 * Scans of the whole folder are paced: the next one triggered by changes
 * starts no sooner than the last one's duration after it ended. A small
 * folder (0.06 s for 20 000 files) is not delayed noticeably; a huge one
 * being written by a long sync does not spend all its time rescanning.
 */
/* While the folder is being written by pulls, the changes seen are mostly
 * our own commits (recorded with their inode and ctime, so a scan finds
 * nothing): hold the scan back, at most LIVE_HOLD_MAX_MS, instead of
 * competing with the commits. Only while we write into the folder: a large
 * file being received writes under .landropic until its commit, and an edit
 * made meanwhile was held the full 10 s. */
#define LIVE_HOLD_MS 100
#define LIVE_HOLD_MAX_MS 10000
#define LIVE_OWN_MS 1000
#define LIVE_PEND_MAX 256
/* Paths looked at (lstat) per check of the pending ones: a new directory
 * is looked at to the bottom, and this check runs every LIVE_HOLD_MS. */
#define LIVE_OWN_LOOK_MAX 2048

static void pend_clear(struct live *l)
{
    for (size_t i = 0; i < l->npend; i++)
        free(l->pend[i]);
    free(l->pend);
    l->pend = NULL;
    l->npend = 0;
    l->pend_all = false;
}

/* A reported path that this daemon did not write: the user's change, which
 * is never held back (held, a save waited up to 10 s while a peer's changes
 * kept arriving, and the peer's next edit made a needless conflict copy). */
static bool users_change_pending(struct live *l)
{
    if (l->pend_all)
        return false; /* too many to tell: as before, taken for ours */
    size_t budget = LIVE_OWN_LOOK_MAX;
    for (size_t i = 0; i < l->npend; i++)
        if (!sync_folder_wrote(l->d, l->id, l->path, l->pend[i], &budget))
            return true;
    return false;
}

static void request_scan(struct live *l)
{
    uint64_t now = uv_now(&l->d->loop);
    uint64_t earliest = l->scan_end_ms + l->scan_ms;
    if (sync_folder_applying(l->d, l->id, LIVE_OWN_MS) && !users_change_pending(l) &&
        (!l->held_since || now - l->held_since < LIVE_HOLD_MAX_MS)) {
        if (!l->held_since)
            l->held_since = now;
        if (earliest < now + LIVE_HOLD_MS)
            earliest = now + LIVE_HOLD_MS;
    }
    if (now >= earliest) {
        l->held_since = 0;
        pend_clear(l);
        queue_scan(l, "change");
        return;
    }
    if (!uv_is_active((uv_handle_t *)&l->kick))
        uv_timer_start(&l->kick, on_kick, earliest - now, 0);
}

static void on_change(void *user, const char *const *paths, size_t n, bool full_rescan)
{
    struct live *l = user;
    if (lr_log_enabled(LR_LOG_DEBUG)) {
        char *e = n ? lr_escs(paths[0]) : NULL;
        lr_debug(MOD, "folder=%s changed paths=%zu first=%s full_rescan=%d", l->id, n, e ? e : "-",
                 full_rescan);
        free(e);
    }
    daemon_event(l->d, json_pack("{s:s, s:s, s:I, s:b}", "type", "local_change", "folder", l->id,
                                 "paths", (json_int_t)n, "full_rescan", full_rescan));
    if (full_rescan || n > LIVE_PEND_MAX - l->npend) {
        pend_clear(l);
        l->pend_all = true;
    } else if (!l->pend_all && n) {
        l->pend = lr_xreallocarray(l->pend, l->npend + n, sizeof(*l->pend));
        for (size_t i = 0; i < n; i++)
            l->pend[l->npend++] = lr_xstrdup(paths[i]);
    }
    request_scan(l);
}

static void on_rescan(uv_timer_t *t)
{
    struct live *l = t->data;
    lr_debug(MOD, "folder=%s periodic rescan", l->id);
    queue_scan(l, "periodic");
}

static void on_closed(uv_handle_t *h)
{
    struct live *l = h->data;
    if (--l->closing > 0)
        return;
    free(l->id);
    free(l->path);
    free(l);
}

/* Unlink and release: the watcher and the timers free their memory from close callbacks. */
static void drop(struct live *l)
{
    for (struct live **pp = &lives; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    lr_watch_stop(l->w);
    l->w = NULL;
    pend_clear(l);
    l->closing = 2;
    uv_close((uv_handle_t *)&l->rescan, on_closed);
    uv_close((uv_handle_t *)&l->kick, on_closed);
}

/*
 * Start the watcher if the folder looks usable (its marker is a directory).
 * Returns true if it was started now.
 */
static bool try_start(struct live *l)
{
    struct lr_daemon *d = l->d;
    if (l->w) {
        struct lr_watch_stats st;
        lr_watch_get_stats(l->w, &st);
        if (!st.root_gone)
            return false;
        /* The root went away and is back (remounted, restored): watch the new one. */
        lr_watch_stop(l->w);
        l->w = NULL;
    }
    char *marker = lr_xasprintf("%s/%s", l->path, LR_SCAN_MARKER);
    struct stat st;
    bool usable = lstat(marker, &st) == 0 && S_ISDIR(st.st_mode);
    free(marker);
    if (!usable)
        return false;
    struct lr_watch_opts o = {.name = l->id};
    struct lr_err err = {0};
    int rc = lr_watch_start(&d->loop, l->path, &o, on_change, l, &l->w, &err);
    if (rc < 0) {
        if (!l->start_failed) {
            char *e = lr_escs(lr_err_msg(&err, rc));
            lr_warn(MOD, "folder=%s not watched live (changes found by rescans only): %s", l->id,
                    e);
            free(e);
        }
        l->start_failed = true;
        return false;
    }
    l->start_failed = false;
    lr_info(MOD, "folder=%s watching for changes", l->id);
    return true;
}

void live_config_changed(struct lr_daemon *d)
{
    if (d->stopping)
        return;
    for (struct live *l = lives, *next; l; l = next) {
        next = l->next;
        const struct lr_folder_cfg *fc = l->d == d ? lr_config_find_folder(d->cfg, l->id) : NULL;
        if (l->d == d && (!fc || strcmp(fc->path, l->path) != 0))
            drop(l);
    }
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const struct lr_folder_cfg *fc = &d->cfg->folders[i];
        if (find(d, fc->id))
            continue;
        struct live *l = lr_xcalloc(1, sizeof(*l));
        l->d = d;
        l->id = lr_xstrdup(fc->id);
        l->path = lr_xstrdup(fc->path);
        uv_timer_init(&d->loop, &l->rescan);
        uv_timer_init(&d->loop, &l->kick);
        l->rescan.data = l->kick.data = l;
        uv_timer_start(&l->rescan, on_rescan, LIVE_RESCAN_MS, LIVE_RESCAN_MS);
        l->next = lives;
        lives = l;
        /* Before the folder's first scan is queued, so nothing falls between the two. */
        try_start(l);
    }
}

void live_folder_failed(struct lr_daemon *d, const char *folder_id)
{
    struct live *l = find(d, folder_id);
    if (!l || d->stopping)
        return;
    l->retry_ms = l->retry_ms ? 2 * l->retry_ms : LIVE_RETRY_MIN_MS;
    if (l->retry_ms > LIVE_RETRY_MAX_MS)
        l->retry_ms = LIVE_RETRY_MAX_MS;
    lr_info(MOD, "folder=%s in error: scanned again in %llu s", l->id,
            (unsigned long long)(l->retry_ms / 1000));
    uv_timer_start(&l->rescan, on_rescan, l->retry_ms, LIVE_RESCAN_MS);
}

void live_folder_scanned(struct lr_daemon *d, const char *folder_id)
{
    struct live *l = find(d, folder_id);
    if (!l || d->stopping)
        return;
    if (l->retry_ms) { /* back from error: the periodic rescan again */
        l->retry_ms = 0;
        uv_timer_start(&l->rescan, on_rescan, LIVE_RESCAN_MS, LIVE_RESCAN_MS);
    }
    struct folder_rt *rt = daemon_folder(d, folder_id);
    l->scan_end_ms = uv_now(&d->loop);
    l->scan_ms = rt ? (uint64_t)(rt->last.seconds * 1000.0) : 0;
    /* Started only now: changes made while that scan walked may have been missed. */
    if (try_start(l))
        queue_scan(l, "watch started");
}

void live_scan_starting(struct lr_daemon *d, const char *folder_id)
{
    struct live *l = find(d, folder_id);
    if (!l)
        return;
    lr_watch_forget_pending(l->w);
    uv_timer_stop(&l->kick);
    l->held_since = 0;
}

void live_stop(struct lr_daemon *d)
{
    for (struct live *l = lives, *next; l; l = next) {
        next = l->next;
        if (l->d == d)
            drop(l);
    }
}

bool live_scan_pending(struct lr_daemon *d, const char *folder_id)
{
    for (struct live *l = lives; l; l = l->next) {
        if (l->d != d || strcmp(l->id, folder_id) != 0)
            continue;
        if (uv_is_active((uv_handle_t *)&l->kick))
            return true;
        if (l->w) {
            /* A change made just before the question may still be queued in
             * the kernel (CI run under load: bob's `sync --wait` returned
             * without alice's file made 20 ms before it). */
            lr_watch_read_now(l->w);
            if (uv_is_active((uv_handle_t *)&l->kick))
                return true;
            struct lr_watch_stats st;
            lr_watch_get_stats(l->w, &st);
            return st.window_open;
        }
        return false;
    }
    return false;
}
