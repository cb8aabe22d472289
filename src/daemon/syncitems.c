/*
 * syncitems.c - the daemon glue of syncerr.h (layer 2): per-item outcomes
 * reported by the sync driver become the error table, `events`, retries
 * with backoff, and `folder_state` events; plus the check behind
 * `sync --wait` of what connected peers still need from us.
 *
 * Handles. The glue owns a uv_timer_t (wakes the loop for the next retry or
 * state poll), a uv_async_t (the puller, on a pool thread, queued events)
 * and a uv_check_t (runs after every loop iteration: flushes events, polls
 * folder states, takes due retries). All three are unreferenced, so they
 * never keep the loop alive, and the check handle closes all three on the
 * first iteration after d->stopping is set: daemon_stop() runs inside a
 * loop iteration, whose check phase follows, so they are closed before the
 * loop ends.
 *
 * Events from pool threads are queued (bounded: EVQ_MAX, then counted as
 * dropped) and broadcast on the loop; when no `events` stream is open
 * nothing is built at all (`listeners`, refreshed on the loop).
 *
 * Case clashes (LR_ECLASH from the store: a folding directory holds another
 * spelling of the peer's name) are ordinary failing items (listed, evented,
 * retried with the folder's backoff, never a rescan) and are also written
 * to the audit trail. A failure may be reported on the loop (a commit job's
 * done) where the index is not ours to write, so the path is queued (CLASHQ_MAX,
 * then dropped: the next retry queues it again) and the next pull job of the
 * folder records it in sync_items_prune, after finding the spelling on disk
 * (gone by then, e.g. a case-only rename that the same round completed: not
 * recorded). The folders' roots for that are copied on the loop (poll_states).
 */
#include "daemon/conflicts.h"
#include "daemon/syncerr.h"
#include "daemon/syncint.h"
#include "ignore/ignore.h"
#include "store/store.h"

#include "util/jsonx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MOD "pull"
/* Queued item events waiting for the loop. */
#define EVQ_MAX 10000
/* Folder states are compared at most this often. */
#define STATE_POLL_MS 50
/* The loop-side bookkeeping runs at most this often (unless events wait). */
#define TICK_MS 50
/* Peer-need results: recomputed at most this often per folder, or
 * PEER_NEED_GAP_X times the last computation's duration if that is longer
 * (a large folder's check must not steal the serial queue from the
 * transfer it waits for; a small one's takes a few milliseconds, and sync
 * --wait waits for it). While indexes keep changing the result only feeds
 * progress figures (the answer that ends a wait comes from the quiet rule
 * below), so 20x: a 20 000-file transfer's source compared about 10 times
 * at 10x, 40-65 ms each, 4-5 % of both daemons' CPU. */
#define PEER_NEED_MIN_MS 25
#define PEER_NEED_GAP_X 20
/* ... except once both indexes have stopped changing for this long, or 3x
 * the last computation's duration if that is longer: the comparison the
 * waiting sync --wait needs then runs sooner than the gap above after
 * the previous one (the last commit of a 20 000 file transfer was seen
 * 0.4 s late). Not less than 3x: the peer's index batches come in bursts
 * with pauses of 30-140 ms between them while it applies, and a fixed
 * 30 ms had the source compare after nearly every burst (32 comparisons
 * of 20-90 ms in a 6 s transfer instead of about 12). */
#define PEER_NEED_QUIET_MS 30
/* Case clashes waiting for a pull job to record them. */
#define CLASHQ_MAX 1024

struct fstate {
    char *id;
    enum folder_state st;
};

struct pn_cache; /* peer-need results (job-owned) */

struct clash_note {
    char *folder;
    uint8_t *path;
    size_t len;
};

struct root_note {
    char *folder, *root;
};

struct sync_items {
    struct lr_syncerr *tab;      /* pull side */
    struct lr_syncerr *scan_tab; /* scan side, as of the last complete scan */
    struct lr_syncerr *scan_cur; /* scan side, the scan under way */
    uv_timer_t timer;
    uv_async_t async;
    uv_check_t check;
    bool closed;
    atomic_bool listeners;
    atomic_bool ev_pending; /* evq not empty */
    pthread_mutex_t mu;     /* evq, touched */
    json_t **evq;
    size_t nev;
    /* Folders that started an item since the last state poll: a transfer
     * shorter than STATE_POLL_MS still shows as syncing then idle. */
    char **touched;
    size_t ntouched;
    uint64_t dropped;
    uint64_t last_poll_ms;
    uint64_t last_tick_ms;
    uint64_t timer_due; /* absolute, while the timer is armed */
    bool poll_pending;
    struct fstate *st;
    size_t nst;
    struct pn_cache *pn; /* job-owned */
    pthread_mutex_t cmu; /* clashes, roots */
    struct clash_note *clashes;
    size_t nclashes;
    struct root_note *roots; /* copy of the configured folders' roots */
    size_t nroots;
};

static struct sync_items *items(struct lr_daemon *d)
{
    return d->sync ? d->sync->items : NULL;
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

void sync_items_list(struct lr_daemon *d, const char *folder, struct lr_syncerr_list *out)
{
    memset(out, 0, sizeof(*out));
    struct sync_items *s = items(d);
    if (!s)
        return;
    struct lr_syncerr_list a, b;
    lr_syncerr_list(s->tab, folder, &a);
    lr_syncerr_list(s->scan_tab, folder, &b);
    out->v = lr_xcalloc(a.n + b.n + 1, sizeof(*out->v));
    /* Both lists are sorted: merge them. A path failing in the pull and in
     * the scan is one item. */
    size_t i = 0, k = 0, w = 0;
    while (i < a.n || k < b.n) {
        int c = i == a.n ? 1 : k == b.n ? -1 : item_cmp(&a.v[i], &b.v[k]);
        if (c < 0) {
            out->v[w++] = a.v[i++];
        } else if (c > 0) {
            out->v[w++] = b.v[k++];
        } else {
            struct lr_syncerr_item *x = &out->v[w++], *y = &b.v[k++];
            *x = a.v[i++];
            /* Within the table's bound on a message, as each part is. */
            char *m = lr_xasprintf("%.*s; %.*s", LR_SYNCERR_MSG_MAX / 2 - 1, x->msg,
                                   LR_SYNCERR_MSG_MAX / 2 - 2, y->msg);
            free(x->msg);
            x->msg = m;
            x->since_s = y->since_s < x->since_s ? y->since_s : x->since_s;
            x->last_s = y->last_s > x->last_s ? y->last_s : x->last_s;
            x->attempts += y->attempts;
            free(y->path);
            free(y->msg);
        }
    }
    out->n = w;
    free(a.v); /* the items moved */
    free(b.v);
    uint64_t all = sync_items_count(d, folder);
    out->more = all > w ? all - w : 0;
}

uint64_t sync_items_count(struct lr_daemon *d, const char *folder)
{
    struct sync_items *s = items(d);
    if (!s)
        return 0;
    uint64_t a = lr_syncerr_count(s->tab, folder), b = lr_syncerr_count(s->scan_tab, folder);
    if (!a || !b)
        return a + b;
    /* Three reads under three locks: the job thread may change the tables
     * in between, so the common part is clamped to what a snapshot allows. */
    uint64_t common = lr_syncerr_count_common(s->tab, s->scan_tab, folder);
    uint64_t most = a < b ? a : b;
    return a + b - (common < most ? common : most);
}

/* ---- events ---- */

static void ev_push(struct lr_daemon *d, json_t *ev)
{
    struct sync_items *s = items(d);
    bool wake = false;
    pthread_mutex_lock(&s->mu);
    if (s->nev >= EVQ_MAX) {
        s->dropped++;
        json_decref(ev);
    } else {
        s->evq = lr_xreallocarray(s->evq, s->nev + 1, sizeof(*s->evq));
        s->evq[s->nev++] = ev;
        wake = s->nev == 1;
        atomic_store_explicit(&s->ev_pending, true, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->mu);
    if (wake && !s->closed)
        uv_async_send(&s->async); /* thread-safe; coalesced by libuv */
}

static json_t *item_event(const char *type, const char *folder, const uint8_t *path, size_t len)
{
    json_t *ev = json_pack("{s:s, s:s}", "type", type, "folder", folder);
    lr_json_set_path(ev, "path", path, len);
    return ev;
}

static void ev_flush(struct lr_daemon *d)
{
    struct sync_items *s = items(d);
    pthread_mutex_lock(&s->mu);
    json_t **v = s->evq;
    size_t n = s->nev;
    uint64_t dropped = s->dropped;
    s->evq = NULL;
    s->nev = 0;
    s->dropped = 0;
    atomic_store_explicit(&s->ev_pending, false, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++)
        daemon_event(d, v[i]);
    free(v);
    if (dropped)
        daemon_event(d, json_pack("{s:s, s:I}", "type", "dropped", "count", (json_int_t)dropped));
}

static bool wanted(struct lr_daemon *d)
{
    struct sync_items *s = items(d);
    return s && atomic_load_explicit(&s->listeners, memory_order_relaxed);
}

/* ---- item outcomes ---- */

void sync_item_started(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                       int apply)
{
    if (!wanted(d))
        return;
    json_t *ev = item_event("item_started", folder, path, len);
    json_object_set_new(ev, "action", json_string(lr_sync_apply_str((enum lr_sync_apply)apply)));
    ev_push(d, ev);
    struct sync_items *s = items(d);
    pthread_mutex_lock(&s->mu);
    bool seen = false;
    for (size_t i = 0; i < s->ntouched && !seen; i++)
        seen = strcmp(s->touched[i], folder) == 0;
    if (!seen) {
        s->touched = lr_xreallocarray(s->touched, s->ntouched + 1, sizeof(*s->touched));
        s->touched[s->ntouched++] = lr_xstrdup(folder);
    }
    pthread_mutex_unlock(&s->mu);
}

static void touched_release(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void item_ok(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                    const char *what)
{
    struct sync_items *s = items(d);
    if (!s)
        return;
    bool was = lr_syncerr_clear_if(s->tab, folder, path, len, what);
    if (was && len == 0) {
        lr_info(MOD, "folder=%s: '%s' no longer fails", folder, what ? what : "cannot pull");
    } else if (was) {
        char *e = lr_esc(path, len);
        lr_info(MOD, "folder=%s path=%s applied after earlier failures", folder, e);
        free(e);
    }
    /* The folder-level entry (path "", every pull clears it) finishes only if it failed. */
    if (wanted(d) && (len || was))
        ev_push(d, item_event("item_finished", folder, path, len));
}

void sync_item_ok(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len)
{
    item_ok(d, folder, path, len, NULL);
}

void sync_item_folder_ok(struct lr_daemon *d, const char *folder, const char *what)
{
    item_ok(d, folder, (const uint8_t *)"", 0, what);
}

static void fail(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                 const char *msg)
{
    struct sync_items *s = items(d);
    if (!s)
        return;
    /* Logged once when it starts failing (its retries are not): some
     * failures, a directory kept for the ignored files in it, had no
     * log line at all (black-box round 28). */
    if (lr_syncerr_set(s->tab, folder, path, len, msg, (int64_t)time(NULL)) == 1 &&
        lr_log_enabled(LR_LOG_INFO)) {
        char *e = lr_esc(path, len);
        char *m = lr_esc_msg(msg);
        lr_info(MOD, "folder=%s path=%s failing: %s", folder, e, m);
        free(e);
        free(m);
    }
    if (wanted(d)) {
        json_t *ev = item_event("item_failed", folder, path, len);
        json_object_set_new(ev, "error", lr_json_lossy(msg, strlen(msg)));
        ev_push(d, ev);
    }
}

/* Any thread: remember a clash for the next pull job to record. */
static void clash_queue(struct sync_items *s, const char *folder, const uint8_t *path, size_t len)
{
    pthread_mutex_lock(&s->cmu);
    bool known = s->nclashes >= CLASHQ_MAX;
    for (size_t i = 0; i < s->nclashes && !known; i++)
        known = s->clashes[i].len == len && memcmp(s->clashes[i].path, path, len) == 0 &&
                strcmp(s->clashes[i].folder, folder) == 0;
    if (!known) {
        s->clashes = lr_xreallocarray(s->clashes, s->nclashes + 1, sizeof(*s->clashes));
        struct clash_note *c = &s->clashes[s->nclashes++];
        c->folder = lr_xstrdup(folder);
        c->path = lr_xmalloc(len + 1);
        memcpy(c->path, path, len);
        c->path[len] = 0;
        c->len = len;
    }
    pthread_mutex_unlock(&s->cmu);
}

void sync_item_failed(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                      const char *what, int rc, const struct lr_err *err)
{
    char msg[LR_SYNCERR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%s: %s", what, lr_err_msg(err, rc));
    fail(d, folder, path, len, msg);
    struct sync_items *s = items(d);
    if (rc == LR_ECLASH && s)
        clash_queue(s, folder, path, len);
}

/* Job thread (owns d->ix): record the folder's queued clashes that are still there. */
static void clash_drain(struct lr_daemon *d, const char *folder)
{
    struct sync_items *s = items(d);
    struct clash_note *mine = NULL;
    size_t n = 0;
    char *root = NULL;
    pthread_mutex_lock(&s->cmu);
    for (size_t i = 0; i < s->nclashes;) {
        if (strcmp(s->clashes[i].folder, folder) != 0) {
            i++;
            continue;
        }
        mine = lr_xreallocarray(mine, n + 1, sizeof(*mine));
        mine[n++] = s->clashes[i];
        s->clashes[i] = s->clashes[--s->nclashes];
    }
    for (size_t i = 0; i < s->nroots && n && !root; i++)
        if (strcmp(s->roots[i].folder, folder) == 0)
            root = lr_xstrdup(s->roots[i].root);
    pthread_mutex_unlock(&s->cmu);
    struct lr_store *st = NULL;
    if (n && root && lr_store_open(root, &st, NULL) < 0)
        st = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t plen;
        char *existing;
        if (st &&
            lr_store_find_clash(st, (const char *)mine[i].path, &plen, &existing, NULL) == 0) {
            daemon_conflict_clash(d, folder, mine[i].path, mine[i].len, plen, existing);
            free(existing);
        }
        free(mine[i].folder);
        free(mine[i].path);
    }
    lr_store_close(st);
    free(mine);
    free(root);
}

void sync_item_skipped(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                       unsigned flags, int pass)
{
    if (pass != 0 || !(flags & LR_SYNC_F_INCONSISTENT))
        return;
    fail(d, folder, path, len,
         "not applied: the peer's record has the same version vector as ours but different "
         "content (a device broke the versioning rules); edit the file on one device to resolve");
}

#define DROPPED "transfer dropped: "

void sync_item_dropped(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                       const char *why)
{
    /* A transfer of a removed folder is not a failure of the folder. */
    if (!why || !lr_config_find_folder(d->cfg, folder))
        return;
    char msg[LR_SYNCERR_MSG_MAX];
    snprintf(msg, sizeof(msg), DROPPED "%s", why);
    fail(d, folder, path, len, msg);
}

void sync_item_xfer_started(struct lr_daemon *d, const char *folder, const uint8_t *path,
                            size_t len)
{
    /* The entry said no peer could serve it, and `sync --wait` gave that as
     * the reason long after one did (a link back up, the file arriving). A
     * drop for another reason stays until the file is applied. */
    struct sync_items *s = items(d);
    if (s) {
        lr_syncerr_clear_if(s->tab, folder, path, len, DROPPED LR_XS_NO_PEER);
        /* Admitted since: the shortage no longer holds it. */
        lr_syncerr_clear_if(s->tab, folder, path, len, "cannot stage: " SYNC_ERR_NO_ROOM);
    }
}

void sync_item_index(struct lr_daemon *d, const struct lr_device_id *peer, const char *folder,
                     bool sent)
{
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(peer, id);
    daemon_event(d, json_pack("{s:s, s:s, s:s, s:s}", "type", "index_exchanged", "folder", folder,
                              "device", id, "direction", sent ? "sent" : "received"));
}

void sync_items_scan_begin(struct lr_daemon *d, const char *folder)
{
    struct sync_items *s = items(d);
    if (s)
        lr_syncerr_clear_folder(s->scan_cur, folder);
}

void sync_items_scan_failed(struct lr_daemon *d, const char *folder, const uint8_t *path,
                            size_t len, int rc, const char *what)
{
    struct sync_items *s = items(d);
    if (!s)
        return;
    char msg[LR_SYNCERR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%s: %s", what, lr_strerror(rc));
    lr_syncerr_set(s->scan_cur, folder, path, len, msg, (int64_t)time(NULL));
    if (wanted(d)) {
        json_t *ev = item_event("item_failed", folder, path, len);
        json_object_set_new(ev, "error", lr_json_lossy(msg, strlen(msg)));
        ev_push(d, ev);
    }
}

void sync_items_scan_end(struct lr_daemon *d, const char *folder, bool complete)
{
    struct sync_items *s = items(d);
    if (!s)
        return;
    if (complete) {
        lr_syncerr_replace(s->scan_tab, folder, s->scan_cur);
    } else {
        struct lr_syncerr_list l;
        lr_syncerr_list(s->scan_cur, folder, &l);
        for (size_t i = 0; i < l.n; i++)
            lr_syncerr_set(s->scan_tab, folder, l.v[i].path, l.v[i].path_len, l.v[i].msg,
                           l.v[i].last_s);
        lr_syncerr_list_release(&l);
    }
    lr_syncerr_clear_folder(s->scan_cur, folder);
}

/* Needed: some peer's record is newer than or concurrent with ours (index.h, "Need"). */
static bool still_needed(struct lr_daemon *d, const char *folder,
                         const struct lr_device_list *peers, const uint8_t *path, size_t len)
{
    struct lr_file_rec local;
    int rc = lr_index_file_get(d->ix, folder, path, len, 0, &local, NULL);
    if (rc < 0 && rc != LR_ENOTFOUND)
        return true; /* cannot tell: keep the error */
    bool need = false;
    for (size_t i = 0; i < peers->n && !need; i++) {
        struct lr_remote_rec r;
        if (lr_index_remote_get(d->ix, folder, &peers->v[i], path, len, 0, &r, NULL) < 0)
            continue;
        if (!(r.flags & LR_RREC_UNKNOWN_TYPE)) {
            struct lr_vv empty = {0};
            enum lr_vv_order o = lr_vv_compare(&r.rec.vv, rc == 0 ? &local.vv : &empty);
            need = o == LR_VV_GREATER || o == LR_VV_CONCURRENT;
        }
        lr_remote_rec_release(&r);
    }
    if (rc == 0)
        lr_file_rec_release(&local);
    return need;
}

void sync_items_prune(struct lr_daemon *d, const char *folder)
{
    struct sync_items *s = items(d);
    if (!s)
        return;
    clash_drain(d, folder);
    if (lr_syncerr_count(s->tab, folder) == 0)
        return;
    struct lr_need_stats ns;
    if (lr_index_need_stats(d->ix, folder, &ns, NULL) == 0 && ns.items == 0) {
        /* Nothing needed, so nothing can be failing: this also drops the
         * unlisted ones, which are only hashes and cannot be checked. */
        lr_syncerr_clear_folder(s->tab, folder);
        return;
    }
    struct lr_syncerr_list l;
    lr_syncerr_list(s->tab, folder, &l);
    struct lr_device_list peers = {0};
    if (lr_index_remote_peers(d->ix, folder, &peers, NULL) == 0) {
        for (size_t i = 0; i < l.n; i++) {
            if (still_needed(d, folder, &peers, l.v[i].path, l.v[i].path_len))
                continue;
            /* Superseded (a newer local version, the peer's change withdrawn). */
            lr_syncerr_clear(s->tab, folder, l.v[i].path, l.v[i].path_len);
            if (wanted(d))
                ev_push(d, item_event("item_finished", folder, l.v[i].path, l.v[i].path_len));
        }
    }
    lr_device_list_release(&peers);
    lr_syncerr_list_release(&l);
}

/* ---- folder states ---- */

int sync_items_folder_state(struct lr_daemon *d, const char *folder)
{
    struct folder_rt *f = daemon_folder(d, folder);
    enum folder_state st = f ? f->state : FOLDER_IDLE;
    struct sync_folder_status ss;
    sync_folder_status(d, folder, &ss);
    if (st == FOLDER_IDLE && (ss.working || (ss.need_items > 0 && !ss.settled && !ss.peer_stopped)))
        st = FOLDER_SYNCING;
    return (int)st;
}

static void roots_release(struct sync_items *s)
{
    for (size_t i = 0; i < s->nroots; i++) {
        free(s->roots[i].folder);
        free(s->roots[i].root);
    }
    free(s->roots);
    s->roots = NULL;
    s->nroots = 0;
}

/* Loop: the roots clash_drain may look up, when the configuration changed. */
static void roots_refresh(struct lr_daemon *d)
{
    struct sync_items *s = items(d);
    bool same = s->nroots == d->cfg->nfolders;
    for (size_t i = 0; i < s->nroots && same; i++)
        same = strcmp(s->roots[i].folder, d->cfg->folders[i].id) == 0 &&
               strcmp(s->roots[i].root, d->cfg->folders[i].path) == 0;
    if (same)
        return;
    pthread_mutex_lock(&s->cmu);
    roots_release(s);
    s->roots = lr_xcalloc(d->cfg->nfolders + 1, sizeof(*s->roots));
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        s->roots[i].folder = lr_xstrdup(d->cfg->folders[i].id);
        s->roots[i].root = lr_xstrdup(d->cfg->folders[i].path);
    }
    s->nroots = d->cfg->nfolders;
    pthread_mutex_unlock(&s->cmu);
}

static void poll_states(struct lr_daemon *d)
{
    struct sync_items *s = items(d);
    roots_refresh(d);
    /* Forget folders no longer configured (and their errors). */
    for (size_t i = 0; i < s->nst;) {
        if (!lr_config_find_folder(d->cfg, s->st[i].id)) {
            lr_syncerr_clear_folder(s->tab, s->st[i].id);
            lr_syncerr_clear_folder(s->scan_tab, s->st[i].id);
            free(s->st[i].id);
            s->st[i] = s->st[--s->nst];
            continue;
        }
        i++;
    }
    struct lr_syncerr_folders ef;
    lr_syncerr_folders(s->tab, &ef);
    for (size_t i = 0; i < ef.n; i++)
        if (!lr_config_find_folder(d->cfg, ef.v[i]))
            lr_syncerr_clear_folder(s->tab, ef.v[i]);
    lr_syncerr_folders_release(&ef);
    lr_syncerr_folders(s->scan_tab, &ef);
    for (size_t i = 0; i < ef.n; i++)
        if (!lr_config_find_folder(d->cfg, ef.v[i]))
            lr_syncerr_clear_folder(s->scan_tab, ef.v[i]);
    lr_syncerr_folders_release(&ef);
    pthread_mutex_lock(&s->mu);
    char **touched = s->touched;
    size_t ntouched = s->ntouched;
    s->touched = NULL;
    s->ntouched = 0;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const char *id = d->cfg->folders[i].id;
        enum folder_state now = (enum folder_state)sync_items_folder_state(d, id);
        bool busy = false;
        for (size_t k = 0; k < ntouched && !busy; k++)
            busy = strcmp(touched[k], id) == 0;
        struct fstate *fs = NULL;
        for (size_t k = 0; k < s->nst && !fs; k++)
            if (strcmp(s->st[k].id, id) == 0)
                fs = &s->st[k];
        if (!fs) {
            s->st = lr_xreallocarray(s->st, s->nst + 1, sizeof(*s->st));
            fs = &s->st[s->nst++];
            fs->id = lr_xstrdup(id);
            fs->st = FOLDER_IDLE;
        }
        if (busy && fs->st != FOLDER_SYNCING && now != FOLDER_SYNCING) {
            daemon_event(d, json_pack("{s:s, s:s, s:s, s:s}", "type", "folder_state", "folder", id,
                                      "state", daemon_folder_state_name(FOLDER_SYNCING), "from",
                                      daemon_folder_state_name(fs->st)));
            fs->st = FOLDER_SYNCING;
        }
        if (fs->st == now)
            continue;
        daemon_event(d, json_pack("{s:s, s:s, s:s, s:s}", "type", "folder_state", "folder", id,
                                  "state", daemon_folder_state_name(now), "from",
                                  daemon_folder_state_name(fs->st)));
        fs->st = now;
    }
    touched_release(touched, ntouched);
}

/* ---- the loop side: flush, poll, retry ---- */

static void close_all(struct sync_items *s)
{
    if (s->closed)
        return;
    s->closed = true;
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_close((uv_handle_t *)&s->async, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
}

static void on_timer(uv_timer_t *h);

/* Wake the loop at `next` (absolute; UINT64_MAX: no need). */
static void arm(struct sync_items *s, uint64_t now, uint64_t next)
{
    if (next == UINT64_MAX) {
        uv_timer_stop(&s->timer);
        s->timer_due = UINT64_MAX;
        return;
    }
    if (uv_is_active((uv_handle_t *)&s->timer) && s->timer_due == next)
        return; /* unchanged: skip the heap update */
    s->timer_due = next;
    uv_timer_start(&s->timer, on_timer, next > now ? next - now : 0, 0);
}

static void tick(struct lr_daemon *d)
{
    struct sync_items *s = items(d);
    if (!s || s->closed)
        return;
    if (d->stopping) {
        ev_flush(d);
        close_all(s);
        return;
    }
    if (d->api) {
        struct lr_api_server_stats st;
        lr_api_server_stats(d->api, &st);
        atomic_store_explicit(&s->listeners, st.streams > 0, memory_order_relaxed);
    }
    ev_flush(d);
    uint64_t now = uv_now(&d->loop);
    s->last_tick_ms = now;
    if (now - s->last_poll_ms >= STATE_POLL_MS) {
        s->last_poll_ms = now;
        s->poll_pending = false;
        poll_states(d);
    } else {
        s->poll_pending = true; /* this iteration may have changed a state */
    }
    struct lr_syncerr_folders due;
    lr_syncerr_take_due(s->tab, now, &due);
    for (size_t i = 0; i < due.n; i++) {
        if (!lr_config_find_folder(d->cfg, due.v[i]))
            continue;
        lr_debug(MOD, "folder=%s retrying %llu failed items", due.v[i],
                 (unsigned long long)lr_syncerr_count(s->tab, due.v[i]));
        sync_pull_trigger(d, due.v[i]);
    }
    lr_syncerr_folders_release(&due);
    lr_syncerr_take_due(s->scan_tab, now, &due);
    for (size_t i = 0; i < due.n; i++) {
        const char *id = due.v[i];
        if (!lr_config_find_folder(d->cfg, id))
            continue;
        lr_debug(MOD, "folder=%s rescanning for %llu unreadable items", id,
                 (unsigned long long)lr_syncerr_count(s->scan_tab, id));
        scanjobs_queue(d, &id, 1, NULL, NULL);
    }
    lr_syncerr_folders_release(&due);
    uint64_t next = lr_syncerr_schedule(s->tab, now);
    uint64_t next_scan = lr_syncerr_schedule(s->scan_tab, now);
    if (next_scan < next)
        next = next_scan;
    if (s->poll_pending && s->last_poll_ms + STATE_POLL_MS < next)
        next = s->last_poll_ms + STATE_POLL_MS;
    arm(s, now, next);
}

static void on_timer(uv_timer_t *h)
{
    tick(h->data);
}

static void on_async(uv_async_t *h)
{
    (void)h; /* the check phase of this iteration flushes */
}

/*
 * After every loop iteration. During a transfer that is many thousands of
 * times a second, so the full tick runs at most every TICK_MS (or at once
 * for queued events or a stop); a skipped iteration makes sure a tick
 * follows within TICK_MS, as it may have changed a folder's state.
 */
static void on_check(uv_check_t *h)
{
    struct lr_daemon *d = h->data;
    struct sync_items *s = items(d);
    if (!s || s->closed)
        return;
    uint64_t now = uv_now(&d->loop);
    if (!d->stopping && now - s->last_tick_ms < TICK_MS &&
        !atomic_load_explicit(&s->ev_pending, memory_order_relaxed)) {
        uint64_t want = s->last_tick_ms + TICK_MS;
        if (!uv_is_active((uv_handle_t *)&s->timer) || s->timer_due > want)
            arm(s, now, want);
        return;
    }
    tick(d);
}

void sync_items_init(struct lr_daemon *d)
{
    struct sync_items *s = lr_xcalloc(1, sizeof(*s));
    s->tab = lr_syncerr_new(LR_SYNCERR_MAX_DEFAULT);
    s->scan_tab = lr_syncerr_new(LR_SYNCERR_MAX_DEFAULT);
    s->scan_cur = lr_syncerr_new(LR_SYNCERR_MAX_DEFAULT);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    atomic_init(&s->listeners, false);
    atomic_init(&s->ev_pending, false);
    s->timer_due = UINT64_MAX;
    uv_timer_init(&d->loop, &s->timer);
    uv_async_init(&d->loop, &s->async, on_async);
    uv_check_init(&d->loop, &s->check);
    s->timer.data = s->async.data = s->check.data = d;
    uv_check_start(&s->check, on_check);
    uv_unref((uv_handle_t *)&s->timer);
    uv_unref((uv_handle_t *)&s->async);
    uv_unref((uv_handle_t *)&s->check);
    d->sync->items = s;
}

static void pn_cache_free(struct pn_cache *c);

void sync_items_free(struct lr_daemon *d)
{
    struct sync_items *s = items(d);
    if (!s)
        return;
    for (size_t i = 0; i < s->nev; i++)
        json_decref(s->evq[i]);
    free(s->evq);
    touched_release(s->touched, s->ntouched);
    for (size_t i = 0; i < s->nst; i++)
        free(s->st[i].id);
    free(s->st);
    pn_cache_free(s->pn);
    for (size_t i = 0; i < s->nclashes; i++) {
        free(s->clashes[i].folder);
        free(s->clashes[i].path);
    }
    free(s->clashes);
    roots_release(s);
    pthread_mutex_destroy(&s->cmu);
    lr_syncerr_free(s->tab);
    lr_syncerr_free(s->scan_tab);
    lr_syncerr_free(s->scan_cur);
    pthread_mutex_destroy(&s->mu);
    free(s);
    d->sync->items = NULL;
}

/* ---- what connected peers still need from us ---- */

struct pn_key {
    uint64_t index_id, max_seq;                            /* ours */
    uint64_t r_index_id, r_max_seq, r_gen, r_open, r_full; /* theirs */
    uint64_t rules_mtime, rules_size; /* our ignore rules (pn_compute skips what they match) */
};

struct pn_cache {
    struct pn_cache *next;
    char *folder;
    struct lr_device_id peer;
    bool valid;
    struct pn_key key;
    struct sync_peer_need res;
    uint64_t last_ms, dur_ms;
    /* The key as last seen (computed or not) and since when it holds. */
    struct pn_key seen;
    uint64_t seen_ms;
};

static void pn_cache_free(struct pn_cache *c)
{
    while (c) {
        struct pn_cache *n = c->next;
        free(c->folder);
        free(c);
        c = n;
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* out->first for record l: its folder ID and path escaped and, when long,
 * cut (at a UTF-8 boundary, "..." marking it) so the whole line fits. */
static void first_owed(struct sync_peer_need *out, const struct lr_device_id *peer,
                       const char *folder, const struct lr_file_rec *l)
{
    enum { PATH_MAX_SHOWN = 360 };
    char id[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(peer, id);
    char *f = lr_escs_short(folder);
    char *e = lr_esc_cut(lr_esc(l->path, l->path_len), PATH_MAX_SHOWN);
    snprintf(out->first, sizeof(out->first), "peer %s, folder %s: %s%s", id, f, e,
             l->deleted ? " (deleted here)" : "");
    free(f);
    free(e);
}

/* One merge walk over our records and the peer's copy of its index, both in
 * path order. Paths our own rules ignore (`ig`, may be NULL) are not owed:
 * we do not vouch for them, and a peer that ignores them too never takes
 * them (a record synced before a rule came kept sync --wait waiting for
 * every device added since). */
static int pn_compute(struct lr_daemon *d, const char *folder, const struct lr_ignore *ig,
                      const struct lr_device_id *peer, struct sync_peer_need *out)
{
    memset(out, 0, sizeof(*out));
    struct lr_file_list ours = {0};
    struct lr_remote_list theirs = {0};
    uint8_t *after = NULL, *rafter = NULL;
    size_t after_len = 0, rafter_len = 0, ri = 0;
    bool rend = false;
    int rc = 0;
    for (;;) {
        lr_file_list_release(&ours);
        if ((rc = lr_index_list_by_path(d->ix, folder, after, after_len, SYNC_PULL_PAGE, 0, &ours,
                                        NULL)) < 0)
            break;
        for (size_t i = 0; i < ours.n; i++) {
            const struct lr_file_rec *l = &ours.v[i];
            const struct lr_remote_rec *r = NULL;
            /* Our opted-in rules file: a peer that does not opt in never
             * takes it (its built-in rule ignores it), so it is not owed. */
            if (l->path_len == strlen(LR_IGNORE_FILE) &&
                memcmp(l->path, LR_IGNORE_FILE, l->path_len) == 0)
                continue;
            if (lr_ignore_match(ig, (const char *)l->path, l->path_len,
                                l->type == LR_FT_DIR && !l->deleted))
                continue;
            for (;;) {
                if (ri == theirs.n && !rend) {
                    lr_remote_list_release(&theirs);
                    ri = 0;
                    if ((rc = lr_index_remote_list(d->ix, folder, peer, rafter, rafter_len,
                                                   SYNC_PULL_PAGE, 0, &theirs, NULL)) < 0)
                        goto out;
                    rend = theirs.n < SYNC_PULL_PAGE;
                    if (theirs.n) {
                        const struct lr_file_rec *last = &theirs.v[theirs.n - 1].rec;
                        free(rafter);
                        rafter = lr_xmalloc(last->path_len + 1);
                        memcpy(rafter, last->path, last->path_len + 1);
                        rafter_len = last->path_len;
                    }
                }
                if (ri == theirs.n)
                    break;
                const struct lr_file_rec *t = &theirs.v[ri].rec;
                int c = lr_index_path_cmp(t->path, t->path_len, l->path, l->path_len);
                if (c < 0) {
                    ri++;
                    continue;
                }
                if (c == 0)
                    r = &theirs.v[ri];
                break;
            }
            bool need;
            if (!r) {
                need = !l->deleted; /* never having had it, it needs no tombstone */
            } else {
                enum lr_vv_order o = lr_vv_compare(&l->vv, &r->rec.vv);
                need = o == LR_VV_GREATER || o == LR_VV_CONCURRENT;
            }
            if (need) {
                if (out->items == 0)
                    first_owed(out, peer, folder, l);
                out->items++;
                if (l->type == LR_FT_FILE && !l->deleted) {
                    out->files++;
                    out->bytes += l->size;
                }
            }
        }
        if (ours.n < SYNC_PULL_PAGE)
            break;
        const struct lr_file_rec *last = &ours.v[ours.n - 1];
        free(after);
        after = lr_xmalloc(last->path_len + 1);
        memcpy(after, last->path, last->path_len + 1);
        after_len = last->path_len;
    }
out:
    lr_file_list_release(&ours);
    lr_remote_list_release(&theirs);
    free(after);
    free(rafter);
    return rc;
}

struct pn_pair {
    char *folder, *root;
    struct lr_device_id peer;
    /* Its PULLED said it needs nothing, holding our index `index_id` up to
     * `seq` (docs/protocol.md §6.12). */
    bool in_sync;
    uint64_t index_id, seq;
};

struct pn_job {
    struct daemon_job base;
    struct pn_pair *v;
    size_t n;
    struct sync_seq_target *t; /* folders owned */
    size_t nt;
    sync_peer_need_cb cb;
    void *ud;
    struct sync_peer_need res;
};

static struct pn_cache *pn_get(struct sync_items *s, const char *folder,
                               const struct lr_device_id *peer)
{
    for (struct pn_cache *c = s->pn; c; c = c->next)
        if (lr_device_id_eq(&c->peer, peer) && strcmp(c->folder, folder) == 0)
            return c;
    struct pn_cache *c = lr_xcalloc(1, sizeof(*c));
    c->folder = lr_xstrdup(folder);
    c->peer = *peer;
    c->next = s->pn;
    s->pn = c;
    return c;
}

static void pn_work(struct daemon_job *base)
{
    struct pn_job *j = (struct pn_job *)base;
    struct lr_daemon *d = base->d;
    struct sync_items *s = items(d);
    j->res.fresh = true;
    for (size_t i = 0; i < j->nt; i++) {
        const struct sync_seq_target *t = &j->t[i];
        struct lr_remote_state rs;
        int rc = lr_index_remote_state(d->ix, t->folder, &t->peer, &rs, NULL);
        if (rc == 0 && rs.index_id == t->index_id && !rs.full_pending && rs.max_seq >= t->max_seq)
            continue;
        if (j->res.behind++ == 0) {
            char id[LR_DEVICE_ID_SHORTLEN + 1];
            lr_device_id_short(&t->peer, id);
            snprintf(j->res.behind_why, sizeof(j->res.behind_why),
                     "folder %s: peer %s's index up to %llu not received yet", t->folder, id,
                     (unsigned long long)t->max_seq);
        }
    }
    for (size_t i = 0; i < j->n; i++) {
        struct lr_folder_info info;
        struct lr_remote_state rs;
        if (lr_index_folder_get(d->ix, j->v[i].folder, &info, NULL) < 0 ||
            lr_index_remote_state(d->ix, j->v[i].folder, &j->v[i].peer, &rs, NULL) < 0) {
            j->res.fresh = false;
            continue;
        }
        /* It says it needs nothing and holds all of our index: nothing is
         * owed, whatever our comparison would count (paths its rules
         * ignore, which it never takes, held sync --wait until its timeout). */
        if (j->v[i].in_sync && j->v[i].index_id == info.index_id && j->v[i].seq >= info.max_seq)
            continue;
        struct pn_key k = {info.index_id, info.max_seq,    rs.index_id, rs.max_seq, rs.gen,
                           rs.open_seq,   rs.full_pending, 0,           0};
        /* A rule added or removed changes what is owed, not the index. */
        char *rules = lr_xasprintf("%s/%s", j->v[i].root, LR_IGNORE_FILE);
        struct stat sb;
        if (lstat(rules, &sb) == 0) {
            k.rules_mtime =
                (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec;
            k.rules_size = (uint64_t)sb.st_size;
        }
        free(rules);
        struct pn_cache *c = pn_get(s, j->v[i].folder, &j->v[i].peer);
        uint64_t now = mono_ms();
        if (c->seen_ms == 0 || memcmp(&c->seen, &k, sizeof(k)) != 0) {
            c->seen = k;
            c->seen_ms = now;
        }
        if (!c->valid || memcmp(&c->key, &k, sizeof(k)) != 0) {
            uint64_t gap = c->dur_ms * PEER_NEED_GAP_X > PEER_NEED_MIN_MS
                               ? c->dur_ms * PEER_NEED_GAP_X
                               : PEER_NEED_MIN_MS;
            uint64_t calm = c->dur_ms * 3 > PEER_NEED_QUIET_MS ? c->dur_ms * 3 : PEER_NEED_QUIET_MS;
            bool quiet = now - c->seen_ms >= calm;
            if (c->valid && now - c->last_ms < gap && !quiet) {
                j->res.fresh = false; /* stale, and too soon to look again */
            } else {
                struct sync_peer_need r;
                struct lr_ignore *ig = NULL;
                if (lr_ignore_load(j->v[i].root, &ig, NULL) < 0)
                    ig = NULL; /* broken rules: the folder is in error anyway */
                int rc = pn_compute(d, j->v[i].folder, ig, &j->v[i].peer, &r);
                lr_ignore_free(ig);
                if (rc == 0) {
                    c->valid = true;
                    c->key = k;
                    c->res = r;
                } else {
                    c->valid = false;
                    j->res.fresh = false;
                }
                c->last_ms = now;
                c->dur_ms = mono_ms() - now;
                lr_debug(MOD, "folder=%s peer need compared in %llu ms%s", c->folder,
                         (unsigned long long)c->dur_ms, quiet ? " (indexes quiet)" : "");
            }
        }
        if (c->valid) {
            if (!j->res.first[0] && c->res.items)
                memcpy(j->res.first, c->res.first, sizeof(j->res.first));
            j->res.items += c->res.items;
            j->res.files += c->res.files;
            j->res.bytes += c->res.bytes;
        }
    }
}

static void pn_done(struct daemon_job *base, int status)
{
    struct pn_job *j = (struct pn_job *)base;
    j->cb(base->d, j->ud, &j->res, status);
    for (size_t i = 0; i < j->n; i++) {
        free(j->v[i].folder);
        free(j->v[i].root);
    }
    free(j->v);
    for (size_t i = 0; i < j->nt; i++)
        free(j->t[i].folder);
    free(j->t);
    free(j);
}

void sync_items_peer_need(struct lr_daemon *d, const char *const *folders, size_t n,
                          const struct sync_seq_target *t, size_t nt, sync_peer_need_cb cb,
                          void *ud)
{
    struct pn_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = pn_work;
    j->base.done = pn_done;
    j->cb = cb;
    j->ud = ud;
    j->t = lr_xcalloc(nt + 1, sizeof(*j->t));
    for (size_t i = 0; i < nt; i++) {
        j->t[i] = t[i];
        j->t[i].folder = lr_xstrdup(t[i].folder);
    }
    j->nt = nt;
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const struct lr_folder_cfg *fc = &d->cfg->folders[i];
        bool named = n == 0;
        for (size_t k = 0; k < n && !named; k++)
            named = strcmp(folders[k], fc->id) == 0;
        /* Our changes in a receive-only folder are not for others to take. */
        if (!named || fc->mode == LR_MODE_RECEIVE_ONLY || !sync_folder_usable(d, fc->id))
            continue;
        for (struct sync_link *l = d->sync->links; l; l = l->next) {
            if (!l->listed || strcmp(l->folder, fc->id) != 0)
                continue;
            struct sync_peer *p = sync_peer_get(d, &l->peer);
            if (!p->conn || !p->have_folders)
                continue;
            bool send_only = false;
            for (size_t k = 0; k < p->theirs.n; k++)
                if (strcmp(p->theirs.v[k].id, fc->id) == 0)
                    send_only = p->theirs.v[k].mode == LR_PROTO_MODE_SEND_ONLY;
            if (send_only)
                continue; /* it never takes our changes */
            j->v = lr_xreallocarray(j->v, j->n + 1, sizeof(*j->v));
            j->v[j->n].folder = lr_xstrdup(fc->id);
            j->v[j->n].root = lr_xstrdup(fc->path);
            j->v[j->n].peer = l->peer;
            j->v[j->n].in_sync = l->their_pulled && l->their_need == 0;
            j->v[j->n].index_id = l->their_pulled_index;
            j->v[j->n].seq = l->their_pulled_seq;
            j->n++;
        }
    }
    daemon_job_queue(d, &j->base);
}
