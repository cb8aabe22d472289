/*
 * syncpull.c - the puller: for a folder, walk the need list (index.h) in
 * pages, decide each path (sync/decide.h), order the page (sync/plan.h) and
 * apply it through the store; a file's content comes from local files first
 * (verified chunks copied into its staging file), then from peers holding
 * that version (WANT/CHUNK, verified, written to staging), and is committed
 * with the local record it was decided against as `expect`, so a file
 * edited after the scan is never overwritten (LR_ECHANGED -> rescan, decide
 * again).
 *
 * A transfer (struct sync_xfer) lives on the loop; jobs that use it (chunk
 * writes, the commit) hold a reference. Its staging descriptor is written
 * only by jobs and closed when the last reference goes. Which chunk to ask
 * which peer for, and what an answer means, is decided by the sans-I/O
 * scheduler (sync/xfer.h); this file carries out its actions.
 */
#include "daemon/live.h"
#include "daemon/modes.h"
#include "daemon/syncint.h"
#include "daemon/failpoint.h"
#include "daemon/sessions.h"

#include "daemon/conflicts.h"
#include "chunker/chunker.h"
#include "ignore/ignore.h"

#include "proto/have.h"
#include "store/staging_reuse.h"
#include "sync/decide.h"
#include "sync/plan.h"
#include "sync/xfer.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "pull"
/* Rescans a folder's pulls may ask for in a row without applying anything. */
#define PULL_RESCANS_MAX 3
/* Failed chunk answers tolerated per transfer before it is dropped. */
#define XFER_FAILURES_MAX 16
/* Staging files untouched this long are removed (at most hourly per folder). */
#define STAGING_KEEP_S (24u * 3600u)
#define STAGING_GC_EVERY_MS (3600u * 1000u)
/* HAVE (docs/protocol.md §6.10): how often a transfer's progress may be
 * announced to a peer, most HAVEs sent per tick (the rest wait for the
 * next), and the send queue above which a peer gets none this tick (they
 * would only wait behind the data). */
#define HAVE_EVERY_MS 250u
#define HAVE_PER_TICK 512u
#define HAVE_QUEUE_MAX (4u << 20)
/* How long transfers that only a disconnected peer can serve wait for it to
 * come back (a restart, a network blip, a crossing dial replacing the
 * connection) before they are dropped (sync/xfer.h, lr_xs_peer_gone). */
#define PEER_GRACE_MS 10000u
/* A round starts at most this many transfers when few are in flight, and
 * twice what is in flight otherwise (up to SYNC_XFERS_MAX): a short first
 * job gets data moving while the next one decides the rest (it is queued at
 * once, pull_room_freed), instead of nothing moving until every file of a
 * large need list has been decided and staged. */
#define PULL_RAMP_MIN 64u
/* Need-list entries read at once by a round with little room left. */
#define PULL_PAGE_MIN 16u

/* What a transfer's progress was last announced to a peer as. */
struct have_sent {
    struct lr_device_id peer;
    uint64_t gen;   /* the peer's connection */
    uint64_t epoch; /* its link's FOLDERS epoch */
    uint64_t ver;   /* the transfer's have_ver then */
};

struct sync_xfer {
    struct sync_xfer *next, *prev; /* d->sync->xfers */
    char *folder, *root;
    struct lr_file_rec rec; /* the version to write; vv is the decision's */
    bool had_local;
    uint64_t local_seq; /* the local record decided against */
    struct lr_store_expect expect;
    struct lr_hash key;
    int fd;
    /* Until registered with the scheduler (job side, then pull_done). */
    struct lr_device_id *holders;
    size_t nholders;
    bool *done0; /* chunks already in staging */
    size_t ndone0;
    struct lr_xs_xfer *xx;     /* the scheduler's view; NULL once removed */
    struct sync_session *sess; /* sessions.h; NULL once ended */
    unsigned refs;
    bool dead, committing;
    /* No sidecar was written: its roll-forward record goes into the commit
     * batch's journal (staging_reuse.h). */
    bool journaled;
    /* Complete from local data when the pull round registered it (its
     * commit comes with a batch; see pending_twin). */
    bool from_local;
    /* HAVE: bumped at every chunk verified and written; per peer, what was
     * announced. from_partial: chunks fetched from peers still downloading. */
    uint64_t have_ver;
    struct have_sent *sent;
    size_t nsent;
    size_t from_partial;
    /* Bytes in staging, verified (sync --wait's progress). */
    uint64_t got;
    uint64_t need; /* bytes its staging file had still to take when admitted (room_for) */
};

struct rx_item {
    struct sync_xfer *x;
    size_t chunk;
    uint8_t *payload;
    size_t len;
    bool ok;
    int werr;      /* the staging write failed (negative errno): not the peer's fault */
    uint64_t weak; /* lr_weak64 of the verified bytes, for the committed record */
};

/* The pull module's loop state (d->sync->rx). */
struct sync_pullq {
    struct rx_item *v;
    size_t n;
    unsigned jobs; /* rx jobs queued or running (at most DAEMON_SIDE_RX_MAX) */
    /* HAVE announcements: a timer ticking while transfers exist; closed by
     * the check handle once the daemon stops (both unreferenced, so they
     * never keep the loop alive). */
    uv_timer_t have_timer;
    uv_check_t have_check;
    bool have_closed;
    /* Ends the wait for peers that left (PEER_GRACE_MS after the last one
     * went down); closed with the others. */
    uv_timer_t grace_timer;
};

static void have_on_check(uv_check_t *h)
{
    struct lr_daemon *d = h->data;
    struct sync_pullq *q = d->sync ? d->sync->rx : NULL;
    if (!q || q->have_closed || !d->stopping)
        return;
    q->have_closed = true;
    uv_close((uv_handle_t *)&q->have_timer, NULL);
    uv_close((uv_handle_t *)&q->grace_timer, NULL);
    uv_close((uv_handle_t *)&q->have_check, NULL);
}

static struct sync_pullq *rxq(struct lr_daemon *d)
{
    if (!d->sync->rx) {
        struct sync_pullq *q = lr_xcalloc(1, sizeof(struct sync_pullq));
        d->sync->rx = q;
        uv_timer_init(&d->loop, &q->have_timer);
        uv_timer_init(&d->loop, &q->grace_timer);
        uv_check_init(&d->loop, &q->have_check);
        q->have_timer.data = d;
        q->grace_timer.data = d;
        q->have_check.data = d;
        uv_unref((uv_handle_t *)&q->have_timer);
        uv_unref((uv_handle_t *)&q->grace_timer);
        uv_unref((uv_handle_t *)&q->have_check);
        uv_check_start(&q->have_check, have_on_check);
        q->have_closed = d->stopping;
        if (d->stopping) {
            uv_close((uv_handle_t *)&q->have_timer, NULL);
            uv_close((uv_handle_t *)&q->grace_timer, NULL);
            uv_close((uv_handle_t *)&q->have_check, NULL);
        }
    }
    return d->sync->rx;
}

/* ---- transfers ---- */

static void xfer_unref(struct sync_xfer *x)
{
    if (--x->refs > 0)
        return;
    if (x->fd >= 0)
        close(x->fd);
    free(x->folder);
    free(x->root);
    lr_file_rec_release(&x->rec);
    free(x->holders);
    free(x->done0);
    free(x->sent);
    free(x);
}

static struct lr_xs *xsched(struct lr_daemon *d)
{
    if (!d->sync->xs) {
        struct lr_xs_limits lim = {.wants_max = SYNC_WANTS_MAX,
                                   .bytes_max = SYNC_WANT_BYTES_MAX,
                                   .failures_max = XFER_FAILURES_MAX,
                                   .blocked_max = 8,
                                   .bytes_min = SYNC_WANT_BYTES_MIN,
                                   .latency_ms = SYNC_WANT_LATENCY_MS};
        d->sync->xs = lr_xs_new(&lim);
        for (struct sync_peer *p = d->sync->peers; p; p = p->next)
            if (p->conn)
                lr_xs_peer_up(d->sync->xs, &p->id);
    }
    /* The loop's cached time: what the adaptive window measures answers by. */
    lr_xs_clock(d->sync->xs, uv_now(&d->loop));
    return d->sync->xs;
}

/* The scheduler key of a transfer: folder, path and version (the WANT and
 * HAVE fields that name it). */
static void xfer_tag(const char *folder, const uint8_t *path, size_t path_len,
                     const struct lr_hash *blocks_hash, struct lr_hash *out)
{
    size_t fl = strlen(folder);
    uint8_t *in = lr_xmalloc(fl + 1 + LR_HASH_LEN + path_len);
    memcpy(in, folder, fl + 1); /* the NUL separates folder from the rest */
    memcpy(in + fl + 1, blocks_hash->b, LR_HASH_LEN);
    memcpy(in + fl + 1 + LR_HASH_LEN, path, path_len);
    lr_sha256(in, fl + 1 + LR_HASH_LEN + path_len, out);
    free(in);
}

static void have_tick(uv_timer_t *h);

/* Announcements tick while transfers exist. */
static void have_arm(struct lr_daemon *d)
{
    struct sync_pullq *q = rxq(d);
    if (q->have_closed || d->stopping || uv_is_active((uv_handle_t *)&q->have_timer))
        return;
    uv_timer_start(&q->have_timer, have_tick, HAVE_EVERY_MS, HAVE_EVERY_MS);
}

/* A device the transfer may ask is connected now. */
static bool holder_connected(struct lr_daemon *d, const struct sync_xfer *x)
{
    for (size_t h = 0; h < x->nholders; h++)
        if (sync_peer_conn(d, &x->holders[h]))
            return true;
    return false;
}

static void xfer_link(struct lr_daemon *d, struct sync_xfer *x)
{
    struct sync_state *s = d->sync;
    x->prev = NULL;
    x->next = s->xfers;
    if (s->xfers)
        s->xfers->prev = x;
    s->xfers = x;
    s->nxfers++;
    sync_folder_get(d, x->folder)->nxfers++;
    /* Hand the chunk list to the scheduler. */
    uint32_t *len = lr_xcalloc(x->rec.nchunks + 1, sizeof(*len));
    for (size_t k = 0; k < x->rec.nchunks; k++)
        len[k] = x->rec.chunks[k].len;
    x->xx = lr_xs_add(xsched(d), x, len, x->rec.nchunks, x->done0, x->holders, x->nholders);
    struct lr_hash tag;
    xfer_tag(x->folder, x->rec.path, x->rec.path_len, &x->rec.blocks_hash, &tag);
    lr_xs_set_key(xsched(d), x->xx, &tag);
    have_arm(d);
    uint64_t done_bytes = 0;
    for (size_t k = 0; x->done0 && k < x->rec.nchunks; k++)
        if (x->done0[k])
            done_bytes += x->rec.chunks[k].len;
    x->got = done_bytes;
    /* A copy made from local data is no transfer session (nothing comes
     * from peers); its commit settles the path's sessions (commit_done). */
    if (!x->from_local)
        x->sess = sync_session_start(d, x->folder, x->rec.path, x->rec.path_len,
                                     &x->rec.blocks_hash, x->rec.nchunks, x->rec.size, x->ndone0,
                                     done_bytes, x->holders, x->nholders);
    if (holder_connected(d, x))
        sync_item_xfer_started(d, x->folder, x->rec.path, x->rec.path_len);
    free(len);
    free(x->done0);
    x->done0 = NULL;
}

/* Rounds cut short for lack of transfer slots continue once half are free. */
static void pull_room_freed(struct lr_daemon *d)
{
    if (d->sync->nxfers >= SYNC_XFERS_MAX / 2 || d->stopping)
        return;
    for (struct sync_folder *f = d->sync->folders; f; f = f->next) {
        if (f->pull_cut) {
            f->pull_cut = false;
            sync_pull_trigger(d, f->id);
        }
    }
}

static void xfer_drop(struct lr_daemon *d, struct sync_xfer *x, const char *why)
{
    if (x->dead)
        return;
    if (x->xx) {
        lr_xs_remove(xsched(d), x->xx);
        x->xx = NULL;
    }
    if (x->sess) {
        /* No holder left, or shutdown: it resumes from staging later
         * (if a configured device may still serve it). */
        bool no_peer = why && strcmp(why, LR_XS_NO_PEER) == 0;
        bool resumable = !why || (no_peer && sync_sessions_may_resume(d, x->folder));
        sync_session_end(d, x->sess, resumable ? SYNC_SESSION_INTERRUPTED : SYNC_SESSION_FAILED,
                         no_peer && !resumable ? SYNC_SESSION_UNSHARED : why);
        x->sess = NULL;
    }
    x->dead = true;
    if (x->prev)
        x->prev->next = x->next;
    else
        d->sync->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->next = x->prev = NULL;
    d->sync->nxfers--;
    struct sync_folder *f = sync_folder_get(d, x->folder);
    if (f->nxfers)
        f->nxfers--;
    if (why) {
        char *e = lr_esc(x->rec.path, x->rec.path_len);
        lr_info(MOD, "folder=%s path=%s transfer dropped: %s", x->folder, e, why);
        free(e);
        sync_item_dropped(d, x->folder, x->rec.path, x->rec.path_len, why);
    }
    xfer_unref(x);
    pull_room_freed(d);
}

/* ---- applying a page (job side) ---- */

struct lookup_ctx {
    struct lr_daemon *d;
    const char *folder;
    struct lr_chunk_loc loc; /* kept until the next call (the plan copies the path) */
};

static int lookup_local(void *user, const struct lr_hash *h, uint32_t len,
                        struct lr_plan_cand *cand)
{
    struct lookup_ctx *c = user;
    lr_chunk_loc_release(&c->loc);
    int rc = lr_index_chunk_find(c->d->ix, c->folder, h, &c->loc, NULL);
    if (rc == LR_ENOTFOUND || (rc == 0 && c->loc.len != len))
        return 0;
    if (rc < 0)
        return 0; /* a lookup failure only costs a download */
    cand->path = c->loc.path;
    cand->path_len = c->loc.path_len;
    cand->off = c->loc.off;
    return 1;
}

static void expect_of(const struct lr_file_rec *l, struct lr_store_expect *e)
{
    memset(e, 0, sizeof(*e));
    if (!l || l->deleted)
        return;
    e->exists = true;
    e->type = l->type;
    e->ino = l->inode;
    e->size = l->size;
    e->mtime_ns = l->mtime_ns;
    /* A directory's ctime moves whenever an entry inside it changes. */
    e->ctime_ns = l->type == LR_FT_DIR ? 0 : l->ctime_ns;
}

struct pull_strat {
    struct lr_device_id peer;
    struct lr_sync_strategy s;
    bool send_only; /* its folder is send-only: it never resolves a conflict */
};

struct pull_job {
    struct daemon_job base;
    /* Set by the job once a page of its need list is not empty; read by the
     * loop (sync_folder_writing) while the job runs. */
    atomic_bool has_needs;
    /* Conflict strategies (docs/conflicts.md), snapshot taken in start:
     * ours, and each connected peer's from its latest FOLDERS. */
    struct lr_device_id self;
    struct lr_sync_strategy ours;
    bool receive_only; /* our own versions yield to any concurrent peer's */
    struct pull_strat *theirs;
    size_t ntheirs;
    /* Every configured peer (snapshot taken in start): conflict entries
     * name a relayed version's author by its full ID. */
    struct lr_device_id *peers;
    size_t npeers;
    char *folder, *root;
    char **busy; /* paths with a transfer in flight, sorted (snapshot taken in start) */
    size_t nbusy;
    size_t room;    /* transfers this round may start (SYNC_XFERS_MAX) */
    uint8_t *after; /* pass 0 starts after this path (NULL: the start) */
    size_t after_len;
    bool cut; /* out: stopped for lack of room; resume after `after` */
    bool gc;  /* clean stale staging files first */
    /* The folder's low_space (taken in start): sweep tmp/ first, keeping
     * `live` (staging keys and sidecar names of transfers in flight). */
    bool low_space;
    struct lr_hash *live;
    size_t nlive;
    uint64_t live_left; /* bytes transfers in flight have still to write */
    /* Free space this round may still fill (make_room): of space_free, less
     * space_reserve and live_left; counted in blocks of space_block. */
    uint64_t space_left, space_free, space_reserve, space_block;
    /* out: a file was refused for want of room (space_low), how many, and
     * the staging keys and sidecar names of refused resumed files (kept
     * from the next round's sweep). */
    bool space_low;
    size_t refused;
    struct lr_hash *refused_keys;
    size_t nrefused_keys;
    /* A peer is between the batches of an index burst: its renames may have
     * delivered the deletes and not yet the adds, so no deletes this round. */
    bool hold_deletes;
    /* Copies complete from local data not yet committed, sorted
     * (twin_cmp): in flight when the round started, then this round's own
     * from pass 1 on. A deletion whose twin is among them waits. */
    struct sync_twin *pend;
    size_t npend;
    /* The folder's no_move (sync_folder), copied; out: moves that failed. */
    uint64_t *no_move, *moves_failed;
    size_t nno_move, nmoves_failed;
    size_t twin_held; /* out: deletions that waited for one */
    /* out: twins of this round's adds that failed in pass 0 (a file that
     * could not be staged, a move put back): sync_folder.failed_twins */
    struct sync_twin *failed;
    size_t nfailed;
    /* out: paths applied without a transfer (sync_session_settled): every
     * delete, directory, symlink and file moved whole (a peer's rename);
     * copies made from local data settle theirs at commit (commit_done) */
    struct done_path *done_paths;
    size_t ndone_paths;
    /* out: holders of in-flight versions whose index arrived later */
    struct holder_update *upd;
    size_t nupd;
    /* out */
    struct sync_xfer **xfers;
    size_t nxfers;
    size_t applied, left, conflicts;
    size_t kept; /* directories kept with a new version (keep_dir_with_children) */
    bool rescan, no_marker;
    int rc;
    struct lr_err err;
    struct lr_need_stats need;
    bool need_known;
    struct lr_need_stats ignored; /* needed paths skipped as ignored (pass 0) */
    /* What we hold of each of `theirs`' index (pull_tell_peers), read
     * before `need`, so `need` counts everything that holds. */
    struct pull_held *held;
};

struct pull_held {
    bool ok; /* a complete copy: not in the middle of a full resend */
    uint64_t index_id, seq;
};

struct holder_update {
    char *path;
    struct lr_hash blocks_hash;
    struct lr_device_id *holders;
    size_t nholders;
};

/* Both devices' strategies for a pair of versions. A peer not connected or
 * not announcing the folder is unknown: a conflict our strategy could
 * decide waits for it (LR_SYNC_F_DEFERRED); a peer announcing no strategy
 * (an older build) is keep-both. */
static void pull_sides(struct lr_daemon *d, const struct pull_job *j,
                       const struct lr_device_id *peer, const struct lr_file_rec *local,
                       struct lr_sync_sides *sd)
{
    memset(sd, 0, sizeof(*sd));
    sd->local_dev = j->self;
    sd->remote_dev = *peer;
    sd->local = j->ours;
    sd->remote_unknown = true;
    for (size_t i = 0; i < j->ntheirs; i++) {
        if (lr_device_id_eq(&j->theirs[i].peer, peer)) {
            sd->remote = j->theirs[i].s;
            sd->remote_unknown = false;
        }
    }
    /* What the peers never saw cannot win there (docs/modes.md). */
    sd->local_yields =
        j->receive_only && local && daemon_modes_own_version(d->ix, j->folder, local, d->short_id);
}

/* Every holder of the candidate is a connected peer whose folder is send-only. */
static bool held_by_send_only(const struct pull_job *j, const struct lr_need_cand *c)
{
    for (size_t h = 0; h < c->nholders; h++) {
        bool so = false;
        for (size_t i = 0; i < j->ntheirs && !so; i++)
            so = j->theirs[i].send_only && lr_device_id_eq(&j->theirs[i].peer, &c->holders[h]);
        if (!so)
            return false;
    }
    return c->nholders > 0;
}

/*
 * A conflict our version wins against a version only send-only peers hold:
 * its holders never resolve it (they apply nothing), so the merged vector
 * they would announce never comes and both sides would wait for good. We
 * store ours with the merged vector instead: the send-only devices then
 * see a newer version they do not take (their "override pending"), and
 * their losing version stays their live file, untouched. The same for a
 * version ours superseded (LR_SYNC_F_SUPERSEDES): they would never take it.
 */
static void resolve_for_send_only(const struct pull_job *j, const struct lr_file_rec *local,
                                  const struct lr_need_cand *c, struct lr_sync_decision *dec)
{
    bool ours = dec->action == LR_SYNC_CONFLICT ||
                (dec->action == LR_SYNC_NOTHING && (dec->flags & LR_SYNC_F_SUPERSEDES));
    if (!ours || dec->apply != LR_SYNC_APPLY_NONE || !local || (dec->flags & LR_SYNC_F_DEFERRED) ||
        !held_by_send_only(j, c))
        return;
    struct lr_vv m = {0};
    if (lr_sync_vv_merge(&local->vv, &c->r.rec.vv, &m) < 0)
        return;
    m.author = lr_sync_vv_merged_author(&m, &local->vv); /* still our version */
    lr_vv_release(&dec->vv);
    dec->vv = m;
    dec->apply = LR_SYNC_APPLY_RECORD;
    dec->from_remote = false;
    dec->flags |= LR_SYNC_F_KEPT_BY_SENDER;
    free(dec->copy_path); /* no copy: the loser stays where it is */
    dec->copy_path = NULL;
    dec->copy_path_len = 0;
    dec->copy_here = false;
}

static void note_holders(struct pull_job *j, const struct lr_need *n)
{
    const struct lr_need_cand *c = &n->cand[0];
    if (c->r.rec.deleted || c->r.rec.type != LR_FT_FILE || c->nholders == 0)
        return;
    j->upd = lr_xreallocarray(j->upd, j->nupd + 1, sizeof(*j->upd));
    struct holder_update *u = &j->upd[j->nupd++];
    u->path = lr_xstrdup((const char *)n->path);
    u->blocks_hash = c->r.rec.blocks_hash;
    u->holders = lr_xcalloc(c->nholders, sizeof(*u->holders));
    memcpy(u->holders, c->holders, c->nholders * sizeof(*u->holders));
    u->nholders = c->nholders;
}

static int cmp_xfer_path(const void *a, const void *b)
{
    const struct sync_xfer *x = *(struct sync_xfer *const *)a, *y = *(struct sync_xfer *const *)b;
    return strcmp((const char *)x->rec.path, (const char *)y->rec.path);
}

/* Loop side: more holders for transfers in flight (swarming with peers whose
 * index arrived after the transfer started). */
static void apply_holder_updates(struct lr_daemon *d, struct pull_job *j)
{
    if (!j->nupd)
        return;
    struct sync_folder *f = sync_folder_get(d, j->folder);
    struct sync_xfer **v = lr_xcalloc(f->nxfers + 1, sizeof(*v));
    size_t n = 0;
    for (struct sync_xfer *x = d->sync->xfers; x && n < f->nxfers; x = x->next)
        if (x->xx && strcmp(x->folder, j->folder) == 0)
            v[n++] = x;
    qsort(v, n, sizeof(*v), cmp_xfer_path);
    for (size_t i = 0; i < j->nupd; i++) {
        struct sync_xfer key_x, *key = &key_x;
        key_x.rec.path = (uint8_t *)j->upd[i].path;
        struct sync_xfer **hit = bsearch(&key, v, n, sizeof(*v), cmp_xfer_path);
        if (hit && memcmp(&(*hit)->rec.blocks_hash, &j->upd[i].blocks_hash, LR_HASH_LEN) == 0)
            lr_xs_add_holders(xsched(d), (*hit)->xx, j->upd[i].holders, j->upd[i].nholders);
    }
    free(v);
}

struct done_path {
    char *path;
    struct lr_hash blocks;
    bool file; /* blocks is a file's */
};

static void done_path_add(struct pull_job *j, const char *path, const struct lr_hash *blocks)
{
    j->done_paths = lr_xreallocarray(j->done_paths, j->ndone_paths + 1, sizeof(*j->done_paths));
    struct done_path *dp = &j->done_paths[j->ndone_paths++];
    dp->path = lr_xstrdup(path);
    dp->file = blocks != NULL;
    if (blocks)
        dp->blocks = *blocks;
}

/* A file committed in a page: its sidecar is forgotten once the page's
 * index transaction has committed (before, a crash must find it). */
struct committed {
    uint8_t *path;
    size_t path_len;
    struct lr_hash key;
};

struct page_ctx {
    struct lr_daemon *d;
    struct pull_job *j;
    struct lr_store *st;
    const struct lr_ignore *ig; /* the folder's rules (NULL: none) */
    uint8_t *buf;
    bool marker_checked;
    struct committed *done;
    size_t ndone;
    /* Directory passes before the last: a directory that is not empty yet
     * (subdirectories of it on later pages still to go) is counted in
     * `deferred`, not reported, and tried again by the next pass. */
    bool defer_notempty;
    size_t deferred;
    char **defer_paths; /* their paths (lr_xappendarray), the next pass's only work */
    /* SHA-256 of LR_CHUNK_MAX zero bytes (staging_need), once zero_known. */
    bool zero_known;
    struct lr_hash zero_hash;
};

static void log_path(const char *what, const char *folder, const uint8_t *p, size_t n, int rc,
                     const struct lr_err *err)
{
    char *e = lr_esc(p, n);
    lr_warn(MOD, "folder=%s path=%s %s: %s", folder, e, what, lr_err_msg(err, rc));
    free(e);
}

/* Store `rec` with vector vv and the identity of what is on disk now. */
static int put_record(struct page_ctx *c, const struct lr_file_rec *src, const struct lr_vv *vv,
                      const struct lr_store_info *info, const struct lr_file_rec *local,
                      struct lr_err *err)
{
    struct lr_file_rec r = *src;
    r.vv = *vv;
    r.inode = 0;
    r.ctime_ns = 0;
    if (info) {
        r.inode = info->ino;
        r.ctime_ns = info->ctime_ns;
    } else if (local && !local->deleted && !r.deleted) {
        r.inode = local->inode;
        r.ctime_ns = local->ctime_ns;
    }
    if (r.deleted || r.type != LR_FT_FILE) {
        r.chunks = NULL;
        r.nchunks = 0;
        r.size = 0;
    }
    return lr_index_file_put(c->d->ix, c->j->folder, &r, NULL, err);
}

/* Commit a complete staging file (job side). */
static int xfer_commit(struct lr_daemon *d, struct lr_store *st, struct lr_store_batch *b,
                       struct sync_xfer *x, bool *rescan, struct lr_err *err)
{
    struct lr_file_rec cur;
    int rc = lr_index_file_get(d->ix, x->folder, x->rec.path, x->rec.path_len, 0, &cur, err);
    if (rc < 0 && rc != LR_ENOTFOUND)
        return rc;
    bool same = x->had_local ? (rc == 0 && cur.seq == x->local_seq) : rc == LR_ENOTFOUND;
    if (rc == 0)
        lr_file_rec_release(&cur);
    if (!same)
        return lr_err_set(err, LR_ECHANGED, "the local record changed meanwhile");
    struct lr_store_info info;
    rc = lr_store_commit_file(st, b, &x->key, x->fd, (const char *)x->rec.path, x->rec.mode,
                              x->rec.mtime_ns, &x->expect, LR_STORE_MKPARENTS, &info, err);
    if (rc == LR_ECHANGED)
        *rescan = true;
    if (rc < 0)
        return rc;
    /* Also for the loop (commit_done: sync_folder_wrote). */
    x->rec.inode = info.ino;
    x->rec.ctime_ns = info.ctime_ns;
    return lr_index_file_put(d->ix, x->folder, &x->rec, NULL, err);
}

/*
 * The sender changed the file while an older version was being fetched:
 * chunks of the new version that the older version's staging file holds
 * (verified) are copied, so only new chunks are fetched; then the path's
 * sidecar names this version (staging_reuse.h). Job side.
 */
static void reuse_older(struct page_ctx *c, struct sync_xfer *x)
{
    struct lr_store_sidecar prev;
    struct lr_err err = {0};
    int rc = lr_store_sidecar_load(c->st, x->rec.path, x->rec.path_len, &prev, &err);
    if (rc < 0 && rc != LR_ENOTFOUND)
        log_path("staging sidecar ignored", x->folder, x->rec.path, x->rec.path_len, rc, &err);
    bool have = rc == 0;
    size_t copied = 0;
    /* One chunk, all of it from peers, and no older version's sidecar to
     * carry on: there is nothing a later version could reuse, so no sidecar;
     * the commit batch journals its record (it commits only through a batch:
     * a file complete here commits right below, with a sidecar). */
    if (!have && x->rec.nchunks == 1 && x->ndone0 == 0 && x->rec.chunks[0].len > 0) {
        x->journaled = true;
        return;
    }
    /* The same version resumed: nothing to copy, but the sidecar is written
     * again (this run's decision: the local record it replaces). */
    if (have && lr_hash_cmp(&prev.key, &x->key) != 0) {
        rc = lr_store_sidecar_reuse(c->st, &prev, &x->key, x->fd, x->rec.chunks, x->rec.nchunks,
                                    x->done0, c->buf, LR_PROTO_CHUNK_DATA_MAX, &copied, &err);
        if (rc < 0)
            log_path("older staging not reused", x->folder, x->rec.path, x->rec.path_len, rc, &err);
        x->ndone0 += copied;
        if (copied) {
            char *e = lr_esc(x->rec.path, x->rec.path_len);
            lr_info(MOD, "folder=%s path=%s reused %zu chunks of an older version's staging",
                    x->folder, e, copied);
            free(e);
        }
    }
    /* The record the commit will write, for a roll-forward after a crash
     * between the commit's renames and its index transaction. */
    struct lr_store_sidecar_commit cm = {
        .rec = x->rec, .had_local = x->had_local, .local_seq = x->local_seq};
    struct stat sb;
    bool ino_known = fstat(x->fd, &sb) == 0;
    cm.staging_ino = ino_known ? (uint64_t)sb.st_ino : 0;
    rc = lr_store_sidecar_write(c->st, x->rec.path, x->rec.path_len, &x->key, x->rec.chunks,
                                x->rec.nchunks, have ? &prev : NULL, ino_known ? &cm : NULL, &err);
    if (rc < 0)
        log_path("staging sidecar not written", x->folder, x->rec.path, x->rec.path_len, rc, &err);
    if (have)
        lr_store_sidecar_release(&prev);
}

/* Files smaller than this are fetched again rather than looked for under
 * another name: a session look-up per small file would cost a pull of
 * 20 000 of them more than it could save. */
#define RENAMED_REUSE_MIN (1u << 20)

/*
 * The same version was being pulled under another name (a session of it
 * there): the peer renamed the file mid-transfer, or while we were down.
 * What that name's staging file holds (verified) is copied, found through
 * its sidecar; only the rest is fetched. The old name's transfer ends
 * "superseded" with the peer's deletion, at the end of the round. (Its
 * data was thrown away and the new name fetched whole: black-box round
 * 35a, 573 MB received for a 419 MB file renamed at 30 %.) Job side.
 */
static void reuse_renamed(struct page_ctx *c, struct sync_xfer *x)
{
    struct lr_session_list l;
    if (x->rec.size < RENAMED_REUSE_MIN ||
        lr_index_session_others(c->d->ix, x->folder, &x->rec.blocks_hash, x->rec.path,
                                x->rec.path_len, 4, &l, NULL) < 0)
        return;
    for (size_t i = 0; i < l.n && x->ndone0 < x->rec.nchunks; i++) {
        struct lr_store_sidecar prev;
        struct lr_err err = {0};
        if (lr_store_sidecar_load(c->st, l.v[i].path, l.v[i].path_len, &prev, &err) < 0)
            continue;
        size_t copied = 0;
        int rc = lr_store_sidecar_reuse(c->st, &prev, &x->key, x->fd, x->rec.chunks, x->rec.nchunks,
                                        x->done0, c->buf, LR_PROTO_CHUNK_DATA_MAX, &copied, &err);
        lr_store_sidecar_release(&prev);
        x->ndone0 += copied;
        char *e = lr_esc(x->rec.path, x->rec.path_len);
        char *eo = lr_esc(l.v[i].path, l.v[i].path_len);
        if (rc < 0)
            lr_warn(MOD, "folder=%s path=%s staging of %s not reused: %s", x->folder, e, eo,
                    lr_err_msg(&err, rc));
        else if (copied)
            lr_info(MOD, "folder=%s path=%s reused %zu chunks staged as %s (a peer's rename)",
                    x->folder, e, copied, eo);
        free(e);
        free(eo);
    }
    lr_session_list_release(&l);
}

/* x was committed: the path's older staging files and its sidecar go. */
static void forget_older(struct lr_store *st, const struct sync_xfer *x)
{
    if (x->journaled)
        return; /* none was written, and there was none before */
    struct lr_err err = {0};
    int rc = lr_store_sidecar_forget(st, x->rec.path, x->rec.path_len, &x->key, &err);
    if (rc < 0)
        log_path("older staging not removed", x->folder, x->rec.path, x->rec.path_len, rc, &err);
}

/* Fill what local data can of a file; returns a transfer for the rest, or
 * NULL once the file was committed or failed. */
static bool is_busy(const struct pull_job *j, const uint8_t *p);

/* Every chunk of an adopted staging file verified (marked done). */
static bool verify_whole(struct sync_xfer *x)
{
    for (size_t k = 0; k < x->rec.nchunks; k++) {
        const struct lr_chunk *ch = &x->rec.chunks[k];
        if (lr_store_staging_verify_chunk(x->fd, ch->off, ch->len, &ch->hash, NULL) < 0)
            return false;
        x->done0[k] = true;
    }
    x->ndone0 = x->rec.nchunks;
    return true;
}

/*
 * The put-back rename gave the file a new ctime: recorded (same inode, size
 * and mtime as its record), or the next scan takes it for a local edit,
 * which asks for a round at once and moves it again, past the folder's
 * retry backoff (about 3 failures a second into a read-only directory).
 */
static void record_put_back(struct page_ctx *c, const char *path)
{
    struct lr_store_info si;
    struct lr_file_rec rec;
    size_t len = strlen(path);
    if (lr_store_stat(c->st, path, &si, NULL) < 0)
        return;
    if (lr_index_file_get(c->d->ix, c->j->folder, (const uint8_t *)path, len, 0, &rec, NULL) < 0)
        return;
    /* The mode too: the failed commit may have set the new version's. */
    if (!rec.deleted && rec.type == LR_FT_FILE && si.type == LR_FT_FILE && !si.special &&
        si.ino == rec.inode && si.size == rec.size && si.mtime_ns == rec.mtime_ns &&
        si.mode == rec.mode)
        (void)lr_index_file_set_stat(c->d->ix, c->j->folder, (const uint8_t *)path, len, si.ino,
                                     si.ctime_ns, NULL);
    lr_file_rec_release(&rec);
}

/* A move whose new name could not be committed: the file goes back to its
 * old name (or, if that is taken now, into the versions archive), so the
 * old name's deletion finds it and archives it as usual. `verified`: its
 * content was found to be what its record says (otherwise the put-back is
 * not recorded, so the next scan hashes what is really there). */
static void unadopt(struct page_ctx *c, struct sync_xfer *x, char **from, bool verified)
{
    if (!*from)
        return;
    struct lr_err err = {0};
    if (x->fd >= 0) {
        close(x->fd);
        x->fd = -1;
    }
    int rc = lr_store_unadopt(c->st, &x->key, *from, &err);
    if (rc < 0) {
        char *e = lr_escs(*from);
        lr_warn(MOD, "folder=%s path=%s could not be put back after a failed move: %s",
                c->j->folder, e, lr_err_msg(&err, rc));
        free(e);
    } else if (verified) {
        record_put_back(c, *from);
    }
    free(*from);
    *from = NULL;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Whether the new name's directory, if it exists, can take an entry. A move
 * whose commit fails is put back, a copy waits for the folder's backoff:
 * where the commit cannot work, copying costs nothing more and keeps the
 * old name untouched. An absent directory is the commit's to create.
 */
static bool parent_writable(struct lr_store *st, const uint8_t *path)
{
    int fd;
    const char *leaf;
    if (lr_store_open_parent(st, (const char *)path, 0, &fd, &leaf, NULL) < 0)
        return true;
    /* Only a refusal counts: any other failure (a kernel or sandbox without
     * faccessat2) would turn every move into a copy. */
    bool ok = faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) == 0 ||
              (errno != EACCES && errno != EPERM && errno != EROFS);
    close(fd);
    return ok;
}

/*
 * A peer's rename applied as a move (docs/conflicts.md): remote is a name
 * new here, planned (plan) wholly from one local file with its size, mtime
 * and chunks, which the same peer deleted with a tombstone superseding our
 * version. That file becomes the staging file (lr_store_adopt), verified
 * below like a resumed one, instead of being copied chunk by chunk (and its
 * old name archived): no data is written, none held twice. Its old path
 * (owned), or NULL (copy as usual). Only files the plan already found
 * locally cost a look-up more.
 */
static char *adopt_renamed(struct page_ctx *c, const struct lr_file_rec *remote,
                           const struct lr_file_rec *local, const struct lr_need_cand *cand,
                           const struct sync_xfer *x, const struct lr_plan *plan)
{
    struct pull_job *j = c->j;
    if ((local && !local->deleted) || remote->nchunks == 0 || plan->remote_bytes != 0 ||
        plan->npaths != 1)
        return NULL;
    struct lr_file_rec old;
    if (lr_index_file_get(c->d->ix, j->folder, plan->paths[0].p, plan->paths[0].len, 0, &old,
                          NULL) < 0)
        return NULL;
    /* An ignored file keeps its name whatever peers do (docs/ignore.md). */
    bool gone = !old.deleted && old.type == LR_FT_FILE && old.size == remote->size &&
                !(c->ig && lr_ignore_match(c->ig, (const char *)old.path, old.path_len, false)) &&
                old.mtime_ns == remote->mtime_ns &&
                memcmp(&old.blocks_hash, &remote->blocks_hash, sizeof(old.blocks_hash)) == 0;
    struct lr_remote_rec rr;
    if (gone && lr_index_remote_get(c->d->ix, j->folder, &cand->r.device, old.path, old.path_len, 0,
                                    &rr, NULL) == 0) {
        gone =
            rr.flags == 0 && rr.rec.deleted && lr_vv_compare(&rr.rec.vv, &old.vv) == LR_VV_GREATER;
        lr_remote_rec_release(&rr);
    } else {
        gone = false;
    }
    struct lr_err err = {0};
    /* As before any delete: never in a folder whose root was swapped. */
    if (gone && !c->marker_checked) {
        if (lr_store_check_marker(c->st, &err) < 0)
            gone = false;
        else
            c->marker_checked = true;
    }
    char *from = NULL;
    uint64_t h = lr_weak64(remote->path, remote->path_len);
    if (gone && !is_busy(j, old.path) &&
        !(j->nno_move && bsearch(&h, j->no_move, j->nno_move, sizeof(h), u64_cmp)) &&
        parent_writable(c->st, remote->path)) {
        struct lr_store_expect e;
        expect_of(&old, &e);
        int rc = lr_store_adopt(c->st, (const char *)old.path, &e, &x->key, &err);
        char *ep = lr_esc(remote->path, remote->path_len), *eo = lr_esc(old.path, old.path_len);
        if (rc == 0) {
            from = lr_xstrdup((const char *)old.path);
            lr_info(MOD, "folder=%s path=%s moved from %s (a peer's rename)", j->folder, ep, eo);
        } else {
            lr_debug(MOD, "folder=%s path=%s not moved from %s, copied: %s", j->folder, ep, eo,
                     lr_err_msg(&err, rc));
        }
        free(ep);
        free(eo);
    }
    lr_file_rec_release(&old);
    return from;
}

static void pend_add_failed(struct pull_job *j, const struct sync_xfer *x);

/* Whether ch is a chunk of zeros of the largest size, the kind a run of
 * zeros is cut into (FastCDC finds no cut in it), which staging keeps as a
 * hole (lr_store_staging_write). */
static bool zero_chunk(struct page_ctx *c, const struct lr_chunk *ch)
{
    if (ch->len != LR_CHUNK_MAX)
        return false;
    if (!c->zero_known) {
        /* c->buf holds the largest chunk (start_file reads into it). */
        memset(c->buf, 0, LR_CHUNK_MAX);
        lr_sha256(c->buf, LR_CHUNK_MAX, &c->zero_hash);
        c->zero_known = true;
    }
    return lr_hash_cmp(&ch->hash, &c->zero_hash) == 0;
}

/* Where data starts in a staging file, from an offset on (SEEK_DATA):
 * data begins at `at`, the first at or after `from` (UINT64_MAX: none). */
struct data_map {
    bool known;
    uint64_t from, at;
};

/* Whether [off, off + len) of fd is wholly a hole: never written. Asked in
 * increasing order of off, one lseek per stretch of data or hole. False
 * when it cannot tell (no SEEK_DATA: the whole file counts as data). */
static bool in_hole(int fd, uint64_t off, uint64_t len, struct data_map *m)
{
    if (!m->known || off < m->from || off > m->at) {
        off_t r = lseek(fd, (off_t)off, SEEK_DATA);
        if (r < 0 && errno != ENXIO)
            return false;
        m->known = true;
        m->from = off;
        m->at = r < 0 ? UINT64_MAX : (uint64_t)r;
    }
    return m->at - off >= len;
}

/* Bytes a transfer of rec still has to write into its staging file fd,
 * in whole blocks of the file system: its size, less what the file holds
 * already (resumed, or allocated whole by a file system without sparse
 * files); with `precise`, less its chunks of zeros, which become holes
 * (lr_store_staging_write). A run of zeros ends as chunks of the largest
 * size (FastCDC finds no cut in it), so only those are hashed. */
static uint64_t staging_need(struct page_ctx *c, const struct lr_file_rec *rec, int fd,
                             bool precise)
{
    uint64_t need = rec->size;
    if (precise) {
        need = 0;
        for (size_t k = 0; k < rec->nchunks; k++)
            if (!zero_chunk(c, &rec->chunks[k]))
                need += rec->chunks[k].len;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0) {
        uint64_t have = (uint64_t)sb.st_blocks * 512;
        need = need > have ? need - have : 0;
    }
    uint64_t blk = c->j->space_block;
    return blk && need % blk ? need + (blk - need % blk) : need;
}

/* Append what a sweep must keep of x: its staging key and sidecar name. */
static void sweep_keep(struct lr_hash **v, size_t *n, const struct sync_xfer *x)
{
    *v = lr_xreallocarray(*v, *n + 2, sizeof(**v));
    (*v)[(*n)++] = x->key;
    lr_store_sidecar_key(x->rec.path, x->rec.path_len, &(*v)[(*n)++]);
}

/*
 * Whether the file system has room for what x still has to write; if not,
 * x is refused (a per-file error, retried with the others' backoff) before
 * it takes any: parallel transfers on a nearly full disk each took part of
 * it and none could finish. A new staging file is removed again; a resumed
 * one is kept for the sweep to weigh (make_room).
 */
static bool room_for(struct page_ctx *c, struct sync_xfer *x, bool resumed)
{
    struct pull_job *j = c->j;
    uint64_t need = staging_need(c, &x->rec, x->fd, false);
    if (need > j->space_left)
        need = staging_need(c, &x->rec, x->fd, true);
    if (need <= j->space_left) {
        j->space_left -= need;
        x->need = need;
        return true;
    }
    j->space_low = true;
    struct lr_err err = {0};
    int rc = lr_err_set(&err, -ENOSPC,
                        SYNC_ERR_NO_ROOM " %" PRIu64 " bytes to write, %" PRIu64 " left of %" PRIu64
                                         " free (less a reserve of %" PRIu64 " and %" PRIu64
                                         " still to write for files in flight)",
                        need, j->space_left, j->space_free, j->space_reserve, j->live_left);
    /* Once the room is gone every file is refused: one line in the log
     * (each is listed in status), the count at the round's end. */
    if (j->refused++ == 0)
        log_path("cannot stage", j->folder, x->rec.path, x->rec.path_len, rc, &err);
    sync_item_failed(c->d, j->folder, x->rec.path, x->rec.path_len, "cannot stage", rc, &err);
    j->left++;
    pend_add_failed(j, x);
    close(x->fd);
    x->fd = -1;
    if (!resumed) {
        (void)lr_store_staging_discard(c->st, &x->key, NULL);
    } else {
        /* What it holds is kept from the next round's sweep: refused for
         * the room other files took, it is not stale. */
        sweep_keep(&j->refused_keys, &j->nrefused_keys, x);
    }
    return false;
}

static struct sync_xfer *start_file(struct page_ctx *c, const struct lr_file_rec *remote,
                                    const struct lr_sync_decision *dec,
                                    const struct lr_file_rec *local, bool dir_removed,
                                    const struct lr_need_cand *cand)
{
    struct pull_job *j = c->j;
    struct lr_err err = {0};
    struct sync_xfer *x = lr_xcalloc(1, sizeof(*x));
    x->fd = -1;
    x->refs = 1;
    x->folder = lr_xstrdup(j->folder);
    x->root = lr_xstrdup(j->root);
    /* Deep copy of the remote record with the decided vector. */
    x->rec = *remote;
    x->rec.path = lr_xmalloc(remote->path_len + 1);
    memcpy(x->rec.path, remote->path, remote->path_len + 1);
    x->rec.target = NULL;
    x->rec.target_len = 0;
    memset(&x->rec.vv, 0, sizeof(x->rec.vv));
    lr_vv_copy(&x->rec.vv, &dec->vv);
    x->rec.chunks = lr_xcalloc(remote->nchunks ? remote->nchunks : 1, sizeof(*x->rec.chunks));
    if (remote->nchunks)
        memcpy(x->rec.chunks, remote->chunks, remote->nchunks * sizeof(*x->rec.chunks));
    x->rec.inode = 0;
    x->rec.ctime_ns = 0;
    x->had_local = local != NULL;
    x->local_seq = local ? local->seq : 0;
    /* A directory being replaced was removed from disk just before: the
     * commit expects nothing there, but the record decided against is still
     * the directory's. */
    expect_of(dir_removed ? NULL : local, &x->expect);
    x->nholders = cand->nholders;
    x->holders = lr_xcalloc(x->nholders ? x->nholders : 1, sizeof(*x->holders));
    if (x->nholders)
        memcpy(x->holders, cand->holders, x->nholders * sizeof(*x->holders));
    x->done0 = lr_xcalloc(remote->nchunks ? remote->nchunks : 1, sizeof(*x->done0));
    /* Staging key: this version of this path (two paths with the same
     * content may be in flight at once). */
    uint8_t *keyin = lr_xmalloc(LR_HASH_LEN + remote->path_len);
    memcpy(keyin, &remote->blocks_hash, LR_HASH_LEN);
    memcpy(keyin + LR_HASH_LEN, remote->path, remote->path_len);
    lr_sha256(keyin, LR_HASH_LEN + remote->path_len, &x->key);
    free(keyin);
    struct lookup_ctx lc = {.d = c->d, .folder = j->folder};
    struct lr_plan plan;
    int prc = lr_plan_build(remote->chunks, remote->nchunks, lookup_local, &lc, &plan, &err);
    lr_chunk_loc_release(&lc.loc);
    char *moved_from = prc == 0 ? adopt_renamed(c, remote, local, cand, x, &plan) : NULL;
    bool resumed = false;
    int rc = lr_store_staging_open(c->st, &x->key, remote->size, &x->fd, &resumed, &err);
    if (rc < 0) {
        log_path("cannot stage", j->folder, remote->path, remote->path_len, rc, &err);
        sync_item_failed(c->d, j->folder, remote->path, remote->path_len, "cannot stage", rc, &err);
        j->left++;
        unadopt(c, x, &moved_from, false);
        pend_add_failed(j, x);
        if (prc == 0)
            lr_plan_release(&plan);
        xfer_unref(x);
        return NULL;
    }
    if (moved_from && !verify_whole(x)) {
        /* The old file does not hold what its record says: back to its
         * name (its delete then archives it), and the new one is copied. */
        unadopt(c, x, &moved_from, false);
        memset(x->done0, 0, x->rec.nchunks * sizeof(*x->done0));
        x->ndone0 = 0;
        rc = lr_store_staging_open(c->st, &x->key, remote->size, &x->fd, &resumed, &err);
        if (rc < 0) {
            log_path("cannot stage", j->folder, remote->path, remote->path_len, rc, &err);
            sync_item_failed(c->d, j->folder, remote->path, remote->path_len, "cannot stage", rc,
                             &err);
            j->left++;
            pend_add_failed(j, x);
            if (prc == 0)
                lr_plan_release(&plan);
            xfer_unref(x);
            return NULL;
        }
    }
    if (!moved_from && !room_for(c, x, resumed)) {
        if (prc == 0)
            lr_plan_release(&plan);
        xfer_unref(x);
        return NULL;
    }
    /* Moved: the old name's chunks are all in staging already. */
    if (prc == 0 && !moved_from) {
        for (size_t i = 0; i < plan.nops; i++) {
            const struct lr_plan_op *op = &plan.ops[i];
            if (op->src != LR_PLAN_LOCAL)
                continue;
            for (size_t k = op->chunk; k < op->chunk + op->nchunks; k++) {
                struct lr_chunk *ch = &x->rec.chunks[k];
                uint64_t src = op->src_off + (ch->off - op->off);
                if (lr_store_read_chunk(c->st, (const char *)plan.paths[op->path].p, src, ch->len,
                                        &ch->hash, c->buf, NULL) == 0 &&
                    lr_store_staging_write(x->fd, ch->off, c->buf, ch->len, NULL) == 0) {
                    x->done0[k] = true;
                    x->ndone0++;
                    /* Verified bytes: serving them on needs no SHA-256
                     * (index.h; the transfer is not registered yet). */
                    ch->weak = lr_weak64(c->buf, ch->len);
                }
            }
        }
    }
    if (prc == 0)
        lr_plan_release(&plan);
    /* What a resumed staging file holds is verified again, but the part
     * never written is a hole: only a chunk of zeros can match there, and
     * one of the largest size is known by its hash (a shorter one, at most
     * a file's last chunk, is fetched again). A 1 GiB file killed at 35 %
     * read and hashed the whole GiB on the serial lane first. */
    struct data_map dm = {0};
    for (size_t k = 0; resumed && k < x->rec.nchunks; k++) {
        const struct lr_chunk *ch = &x->rec.chunks[k];
        if (x->done0[k])
            continue;
        bool ok =
            in_hole(x->fd, ch->off, ch->len, &dm)
                ? zero_chunk(c, ch)
                : lr_store_staging_verify_chunk(x->fd, ch->off, ch->len, &ch->hash, NULL) == 0;
        if (ok) {
            x->done0[k] = true;
            x->ndone0++;
        }
    }
    if (!resumed && !moved_from && x->ndone0 < x->rec.nchunks)
        reuse_renamed(c, x);
    /* Also when the file is complete already: a moved file's commit below
     * is recorded only when the page's transaction commits, and the sidecar
     * lets a crash before that be rolled forward. */
    reuse_older(c, x);
    if (x->ndone0 < x->rec.nchunks || !moved_from) {
        /* (Moved: the old file did not hold what its record said; the
         * rest of this version comes from peers.) A file complete from
         * local data (copies of a file held here, an empty file, a staging
         * file a crash left complete) is registered too: the scheduler
         * reports it complete at once and it commits with the next batch,
         * one barrier for many files. Committed here, each one cost two
         * fsyncs (20 000 identical small files took 23 s). A deletion
         * whose twin this is waits for the record (pending_twin). */
        x->from_local = x->ndone0 == x->rec.nchunks;
        free(moved_from);
        return x;
    }
    rc = xfer_commit(c->d, c->st, NULL, x, &j->rescan, &err);
    if (rc < 0) {
        log_path("not applied", j->folder, x->rec.path, x->rec.path_len, rc, &err);
        sync_item_failed(c->d, j->folder, x->rec.path, x->rec.path_len, "not applied", rc, &err);
        j->left++;
        unadopt(c, x, &moved_from, true);
        /* Back under its old name, whose deletion (this round's last pass)
         * would archive it while the new name is missing: it waits, as for a
         * copy that failed (pending_twin), until the move is made. */
        pend_add_failed(j, x);
        j->moves_failed =
            lr_xreallocarray(j->moves_failed, j->nmoves_failed + 1, sizeof(*j->moves_failed));
        j->moves_failed[j->nmoves_failed++] = lr_weak64(x->rec.path, x->rec.path_len);
    } else {
        j->applied++;
        sync_item_ok(c->d, j->folder, x->rec.path, x->rec.path_len);
        c->done = lr_xreallocarray(c->done, c->ndone + 1, sizeof(*c->done));
        struct committed *cd = &c->done[c->ndone++];
        cd->path = lr_xmalloc(x->rec.path_len + 1);
        memcpy(cd->path, x->rec.path, x->rec.path_len + 1);
        cd->path_len = x->rec.path_len;
        cd->key = x->key;
        /* Moved here whole: its session is completed in pull_done. */
        done_path_add(j, (const char *)x->rec.path, &x->rec.blocks_hash);
    }
    free(moved_from);
    xfer_unref(x);
    return NULL;
}

static void mark_busy(struct pull_job *j, const char *path);

static void add_xfer(struct pull_job *j, struct sync_xfer *x)
{
    j->xfers = lr_xreallocarray(j->xfers, j->nxfers + 1, sizeof(*j->xfers));
    j->xfers[j->nxfers++] = x;
    /* A later pass of this round must not start the path again: its local
     * record is unchanged until the commit (a directory being replaced still
     * reads as the directory), and a second transfer would share the staging
     * file, writing into it after the first one placed it. */
    mark_busy(j, (const char *)x->rec.path);
}

/* Seconds between the counters of a rename's two halves (see renamed_to). */
#define RENAME_WINDOW_S 600

/*
 * Copies made from local data commit with a batch after their round
 * (start_file). A peer's rename not applied as a move arrives as such a
 * copy and the old name's deletion: that deletion waits until the copy is
 * recorded, so renamed_to finds it and the old name is not archived (the
 * data held twice). Only the deletions with such a twin wait: a copy that
 * keeps failing (a read-only directory) holds back the old name of its own
 * rename, nothing else.
 */
static int twin_cmp(const void *a, const void *b)
{
    const struct sync_twin *x = a, *y = b;
    int c = lr_hash_cmp(&x->blocks, &y->blocks);
    if (c)
        return c;
    if (x->mtime_ns != y->mtime_ns)
        return x->mtime_ns < y->mtime_ns ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

/* x's identity as a twin; false for an empty file, nobody's twin (renamed_to). */
static bool twin_of(const struct sync_xfer *x, struct sync_twin *t)
{
    if (x->rec.size == 0)
        return false;
    uint64_t author = lr_sync_vv_author(&x->rec.vv);
    *t = (struct sync_twin){.blocks = x->rec.blocks_hash,
                            .mtime_ns = x->rec.mtime_ns,
                            .size = x->rec.size,
                            .author = author,
                            .counter = lr_vv_get(&x->rec.vv, author)};
    return true;
}

static void twins_add(struct sync_twin **v, size_t *n, const struct sync_twin *t)
{
    *v = lr_xreallocarray(*v, *n + 1, sizeof(**v));
    (*v)[(*n)++] = *t;
}

static void pend_push(struct pull_job *j, const struct sync_xfer *x)
{
    struct sync_twin t;
    if (twin_of(x, &t))
        twins_add(&j->pend, &j->npend, &t);
}

/* A copy or move that failed: its old name keeps waiting in the rounds
 * resumed after this one (pull_start), bounded. */
static void folder_failed_twin(struct sync_folder *f, const struct sync_twin *t)
{
    if (f->nfailed_twins < SYNC_FAILED_TWINS_MAX)
        twins_add(&f->failed_twins, &f->nfailed_twins, t);
}

/* Pass 1 begins: this round's copies join the ones in flight before it. */
static void pend_add_own(struct pull_job *j)
{
    for (size_t i = 0; i < j->nxfers; i++)
        if (j->xfers[i]->from_local)
            pend_push(j, j->xfers[i]);
    if (j->npend > 1)
        qsort(j->pend, j->npend, sizeof(*j->pend), twin_cmp);
}

/* Pass 0: a file that could not be staged, or a move put back, keeps its
 * twin's old name like a copy that failed to commit (pend_add_own sorts
 * before pass 1, where deletions consult it). */
static void pend_add_failed(struct pull_job *j, const struct sync_xfer *x)
{
    struct sync_twin t;
    if (!twin_of(x, &t))
        return;
    twins_add(&j->pend, &j->npend, &t);
    twins_add(&j->failed, &j->nfailed, &t);
}

/* A copy not yet committed would be the twin renamed_to looks for: same
 * content, mtime and size, and the same author stamped it and the
 * tombstone within RENAME_WINDOW_S (several copies may share the rest). */
static bool pending_twin(const struct pull_job *j, const struct lr_file_rec *local,
                         const struct lr_file_rec *tomb)
{
    if (local->type != LR_FT_FILE || local->size == 0 || j->npend == 0)
        return false;
    uint64_t author = lr_sync_vv_author(&tomb->vv);
    uint64_t ct = lr_vv_get(&tomb->vv, author);
    if (author == 0)
        return false;
    struct sync_twin k = {
        .blocks = local->blocks_hash, .mtime_ns = local->mtime_ns, .size = local->size};
    const struct sync_twin *hit = bsearch(&k, j->pend, j->npend, sizeof(*j->pend), twin_cmp);
    if (!hit)
        return false;
    const struct sync_twin *lo = hit, *end = j->pend + j->npend;
    while (lo > j->pend && twin_cmp(lo - 1, &k) == 0)
        lo--;
    uint64_t old = lr_vv_get(&local->vv, author);
    for (const struct sync_twin *p = lo; p < end && twin_cmp(p, &k) == 0; p++)
        if (p->author == author && p->counter > old &&
            (ct > p->counter ? ct - p->counter : p->counter - ct) <= RENAME_WINDOW_S)
            return true;
    return false;
}

/*
 * A peer's rename reaches us as a new name, made here from the old file's
 * chunks, and the old name's deletion. Archiving the old name then kept
 * the data twice for good. If another live file holds exactly the old
 * one's content by the records (lr_index_file_twin: size, mtime, chunks)
 * and is on disk as recorded, the old name's version is not lost by
 * unlinking it: its path (owned), else NULL (archive as usual).
 */
static char *renamed_to(struct page_ctx *c, const struct lr_file_rec *local,
                        const struct lr_file_rec *tomb)
{
    if (local->type != LR_FT_FILE || local->size == 0)
        return NULL;
    struct lr_file_rec twin;
    if (lr_index_file_twin(c->d->ix, c->j->folder, local->path, local->path_len, &twin, NULL) < 0)
        return NULL;
    /* A rename, not a copy made (cp -p) or unpacked long before: the new
     * name and the old one's deletion are one author's, stamped within
     * minutes (one scan stamps its changes alike), and the new name was
     * stamped after the old version (a file made beside it in the same
     * scan, then deleted alone, is no rename: it was kept unarchived since
     * its look-alike lived on; black-box round 23). An ignored twin is not
     * watched by scans: never relied on. */
    uint64_t author = lr_sync_vv_author(&tomb->vv);
    uint64_t ct = lr_vv_get(&tomb->vv, author), cn = lr_vv_get(&twin.vv, author);
    bool rename = author != 0 && lr_sync_vv_author(&twin.vv) == author && cn &&
                  cn > lr_vv_get(&local->vv, author) &&
                  (ct > cn ? ct - cn : cn - ct) <= RENAME_WINDOW_S &&
                  !(c->ig && lr_ignore_match(c->ig, (const char *)twin.path, twin.path_len, false));
    struct lr_store_info info;
    char *p = NULL;
    if (rename && lr_store_stat(c->st, (const char *)twin.path, &info, NULL) == 0 &&
        info.type == LR_FT_FILE && !info.special && twin.inode && info.ino == twin.inode &&
        info.size == twin.size && info.mtime_ns == twin.mtime_ns && twin.ctime_ns &&
        info.ctime_ns == twin.ctime_ns)
        p = lr_xstrdup((const char *)twin.path);
    lr_file_rec_release(&twin);
    return p;
}

/* Remove the local entry (expect from `local`) before a type change. */
static int remove_old(struct page_ctx *c, const struct lr_file_rec *local, struct lr_err *err)
{
    struct lr_store_expect e;
    expect_of(local, &e);
    int rc = lr_store_delete(c->st, NULL, (const char *)local->path, &e, err);
    return rc == -ENOENT ? 0 : rc;
}

static int conflict_copy(struct page_ctx *c, const struct lr_file_rec *local,
                         const struct lr_sync_decision *dec, struct lr_err *err);

/* Whether this device first keeps its losing version as the conflict copy.
 * Such a conflict goes to the audit trail once the copy is made (apply_one):
 * noted when decided, a row named a copy that a failure (the file changed on
 * disk meanwhile) never made, and stayed. */
static bool copy_first(const struct lr_sync_decision *dec, const struct lr_file_rec *local)
{
    return dec->action == LR_SYNC_CONFLICT && dec->copy_here && dec->copy_path && local &&
           !local->deleted;
}

/* Whether the decision puts a peer's file where our directory is. */
static bool replaces_dir(const struct lr_sync_decision *dec, const struct lr_file_rec *local)
{
    return dec->apply == LR_SYNC_APPLY_FILE && local && !local->deleted && local->type == LR_FT_DIR;
}

/*
 * Our directory at local->path goes to make room for a peer's file: until
 * that commits, a scan (this run's, or after a stop or crash) must not take
 * its absence for our deletion (index.h, LR_IX_INODE_REPLACED). Marked
 * before the removal, in a transaction of its own (a crash right after the
 * removal finds it; one before finds the directory, and a scan refreshes
 * its identity), and put back if the directory stays (`on` false). A
 * failure only loses the mark (logged): the scan would make it a
 * modify-delete conflict, resolved for the file.
 */
static void mark_replaced(struct page_ctx *c, const struct lr_file_rec *local, bool on)
{
    struct lr_err err = {0};
    int rc = lr_index_file_set_stat(c->d->ix, c->j->folder, local->path, local->path_len,
                                    on ? LR_IX_INODE_REPLACED : local->inode,
                                    on ? 0 : local->ctime_ns, &err);
    if (rc < 0)
        log_path("directory being replaced not marked", c->j->folder, local->path, local->path_len,
                 rc, &err);
}

/* Directory passes of a round that defer "not empty" (pull_work). */
#define PULL_DIR_PASSES 8

/* Pages of our records a directory's check for live children reads at most. */
#define KEEP_DIR_PAGES 16
#define KEEP_DIR_PAGE 256

/*
 * A peer's file or symlink is to replace our directory, which still holds
 * files of ours that the peer's index does not account for (unaccounted():
 * added or changed here while the peer replaced the directory; the peer's
 * deletions of what it knew run in the round's delete pass, or come later). Like modify beating
 * delete, the directory stays: its version is bumped, so both sides now see concurrent versions of
 * the path and the type rule (a directory keeps the name, docs/conflicts.md) turns the peer's file
 * into a conflict copy on the device holding it. Without this the two devices stayed apart for
 * good, each refusing the other's change. 1 if bumped, 0 if the directory
 * holds no live record of ours (only unknown or ignored files: reported as
 * before), < 0 on error.
 */
/* Whether our live record `r` is one the peer's index does not account for:
 * the peer has no record of the path, or an older or concurrent one. (One
 * the peer has as it is, or older, is merely not yet deleted there: its
 * tombstone may still be on its way, in a later INDEX batch.) */
static bool unaccounted(struct page_ctx *c, const struct lr_device_id *peer,
                        const struct lr_file_rec *r)
{
    struct lr_remote_rec rr;
    int rc = lr_index_remote_get(c->d->ix, c->j->folder, peer, r->path, r->path_len, 0, &rr, NULL);
    if (rc == LR_ENOTFOUND)
        return true;
    if (rc < 0)
        return false;
    enum lr_vv_order o = lr_vv_compare(&r->vv, &rr.rec.vv);
    lr_remote_rec_release(&rr);
    return o == LR_VV_GREATER || o == LR_VV_CONCURRENT;
}

static int keep_dir_with_children(struct page_ctx *c, const struct lr_file_rec *dir,
                                  const struct lr_device_id *peer, struct lr_err *err)
{
    struct pull_job *j = c->j;
    uint8_t *after = lr_xmalloc(dir->path_len);
    memcpy(after, dir->path, dir->path_len);
    size_t after_len = dir->path_len;
    bool found = false, end = false;
    int rc = 0;
    /* '/' sorts below every other byte: the children follow the directory. */
    for (int page = 0; page < KEEP_DIR_PAGES && !found && !end && rc == 0; page++) {
        struct lr_file_list l = {0};
        rc =
            lr_index_list_by_path(c->d->ix, j->folder, after, after_len, KEEP_DIR_PAGE, 0, &l, err);
        for (size_t k = 0; rc == 0 && k < l.n && !found && !end; k++) {
            const struct lr_file_rec *r = &l.v[k];
            end = r->path_len <= dir->path_len || memcmp(r->path, dir->path, dir->path_len) != 0 ||
                  r->path[dir->path_len] != '/';
            found = !end && !r->deleted && unaccounted(c, peer, r);
        }
        if (rc == 0 && l.n == KEEP_DIR_PAGE && !found && !end) {
            const struct lr_file_rec *last = &l.v[l.n - 1];
            free(after);
            after = lr_xmalloc(last->path_len);
            memcpy(after, last->path, last->path_len);
            after_len = last->path_len;
        } else {
            end = true;
        }
        lr_file_list_release(&l);
    }
    free(after);
    if (rc < 0 || !found)
        return rc;
    struct lr_file_rec r = *dir;
    memset(&r.vv, 0, sizeof(r.vv));
    rc = lr_sync_local_change(&dir->vv, c->d->short_id, lr_index_folder_stamp(c->d->ix, j->folder),
                              &r.vv);
    if (rc == 0)
        rc = lr_index_file_put(c->d->ix, j->folder, &r, NULL, err);
    else
        rc = lr_err_set(err, rc, "version vector full");
    lr_vv_release(&r.vv);
    if (rc < 0)
        return rc;
    char *e = lr_esc(dir->path, dir->path_len);
    lr_info(MOD,
            "folder=%s path=%s directory kept: it holds files the peer's version replacing it "
            "does not know (conflict: the directory keeps the name)",
            j->folder, e);
    free(e);
    return 1;
}

/* Whether a file could be committed at path: a valid, unreserved name whose
 * existing parents are real directories (missing ones are made at commit),
 * and, where nothing is expected (`absent`), no other spelling of the name
 * on a folding folder (the commit would refuse it after the download). */
static int target_check(struct page_ctx *c, const char *path, bool absent, struct lr_err *err)
{
    int rc = lr_store_path_check(path, err);
    if (rc < 0)
        return rc;
    int dfd = -1;
    const char *leaf;
    rc = lr_store_open_parent(c->st, path, 0, &dfd, &leaf, err);
    struct stat sb;
    if (rc == 0 && absent && fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        rc = lr_store_check_clash(c->st, path, err) == LR_ECLASH ? LR_ECLASH : 0;
    if (dfd >= 0)
        close(dfd);
    return rc == -ENOENT ? 0 : rc;
}

/* After a directory refused to go (ENOTEMPTY): true if keep_dir_with_children
 * kept it; else *rc and *err keep the refusal (only unknown or ignored files
 * in it) or take the check's failure. */
static bool dir_kept(struct page_ctx *c, const struct lr_file_rec *dir,
                     const struct lr_device_id *peer, int *rc, struct lr_err *err)
{
    /* A receive-only device's new directory version would never be sent
     * and would yield again at once (LR_SYNC_F_YIELDED): a loop. Its local
     * files keep the directory as a failing item until `folder revert`. */
    if (c->j->receive_only) {
        *err = (struct lr_err){0};
        *rc = lr_err_set(err, -ENOTEMPTY,
                         "the directory holds files the peer does not have: local changes of "
                         "this receive-only folder ('folder revert' discards them) or ignored "
                         "files (they stay)");
        return false;
    }
    struct lr_err kerr = {0};
    int k = keep_dir_with_children(c, dir, peer, &kerr);
    if (k < 0) {
        *rc = k;
        *err = kerr;
    }
    c->j->kept += k == 1;
    return k == 1;
}

/*
 * A directory pass before the last (pull_work): a directory that is not
 * empty yet (rc -ENOTEMPTY) waits for the next pass, unreported, its path
 * kept for it; true then. Otherwise its item_started goes out now (these
 * passes announce an item only when it is tried for good, not each time
 * it waits) and false.
 */
static bool defer_dir(struct page_ctx *c, const struct lr_need *need, int rc, int action)
{
    if (!c->defer_notempty)
        return false;
    if (rc == -ENOTEMPTY) {
        c->defer_paths = lr_xappendarray(c->defer_paths, c->deferred, sizeof(*c->defer_paths));
        c->defer_paths[c->deferred++] = lr_xstrndup((const char *)need->path, need->path_len);
        return true;
    }
    sync_item_started(c->d, c->j->folder, need->path, need->path_len, action);
    return false;
}

static void apply_one(struct page_ctx *c, const struct lr_need *need,
                      const struct lr_need_cand *cand, const struct lr_file_rec *local,
                      const struct lr_sync_decision *dec)
{
    struct pull_job *j = c->j;
    const struct lr_file_rec *remote = &cand->r.rec;
    const struct lr_file_rec *src = dec->from_remote ? remote : local;
    const char *path = (const char *)need->path;
    struct lr_store_expect e;
    struct lr_store_info info;
    struct lr_err err = {0};
    int rc = 0;
    expect_of(local, &e);
    bool old_live = local && !local->deleted;
    if (dec->apply == LR_SYNC_APPLY_DELETE && old_live && pending_twin(j, local, remote)) {
        char *twin = renamed_to(c, local, remote); /* recorded already: no need to wait */
        free(twin);
        if (!twin) {
            j->twin_held++; /* its twin's commit asks for the next round */
            return;
        }
    }
    if (!c->defer_notempty) /* else once it is tried for good: defer_dir */
        sync_item_started(c->d, j->folder, need->path, need->path_len, (int)dec->apply);
    if (copy_first(dec, local)) {
        if ((rc = conflict_copy(c, local, dec, &err)) < 0) {
            /* Without its copy the loser must not be replaced: leave both alone. */
            j->left++;
            if (rc == LR_ECHANGED)
                j->rescan = true;
            log_path("conflict copy failed", j->folder, need->path, need->path_len, rc, &err);
            sync_item_failed(c->d, j->folder, need->path, need->path_len, "conflict copy failed",
                             rc, &err);
            return;
        }
        daemon_conflict_note(c->d, j->folder, local, remote, cand->holders, cand->nholders,
                             j->peers, j->npeers, dec);
    }
    switch (dec->apply) {
    case LR_SYNC_APPLY_RECORD:
        rc = put_record(c, src, &dec->vv, NULL, local, &err);
        break;
    case LR_SYNC_APPLY_META:
        rc = lr_store_set_meta(c->st, NULL, path, src->mode, src->mtime_ns, &e, &info, &err);
        if (rc == 0)
            rc = put_record(c, src, &dec->vv, &info, local, &err);
        break;
    case LR_SYNC_APPLY_DIR:
        if (old_live && local->type != LR_FT_DIR)
            rc = remove_old(c, local, &err);
        if (rc == 0)
            rc = lr_store_mkdir(c->st, NULL, path, remote->mode, LR_STORE_MKPARENTS, &info, &err);
        if (rc == 0)
            rc = put_record(c, remote, &dec->vv, &info, local, &err);
        break;
    case LR_SYNC_APPLY_SYMLINK:
        if (old_live && local->type == LR_FT_DIR) {
            rc = remove_old(c, local, &err);
            if (defer_dir(c, need, rc, (int)dec->apply))
                return;
            if (rc == -ENOTEMPTY && dir_kept(c, local, &cand->r.device, &rc, &err)) {
                j->left++; /* decided again, as a conflict, next round */
                return;
            }
            memset(&e, 0, sizeof(e));
        }
        if (rc == 0)
            rc = lr_store_symlink(c->st, NULL, path, (const char *)remote->target, remote->mtime_ns,
                                  &e, LR_STORE_MKPARENTS, &info, &err);
        if (rc == 0)
            rc = put_record(c, remote, &dec->vv, &info, local, &err);
        break;
    case LR_SYNC_APPLY_DELETE:
        if (!c->marker_checked) {
            /* Never delete in a folder whose root was swapped or unmounted. */
            if ((rc = lr_store_check_marker(c->st, &err)) < 0) {
                j->no_marker = true;
                break;
            }
            c->marker_checked = true;
        }
        if (old_live) {
            char *twin = renamed_to(c, local, remote);
            rc =
                lr_store_delete_ex(c->st, NULL, path, &e, twin ? LR_STORE_DEL_UNARCHIVED : 0, &err);
            if (rc == 0 && twin) {
                char *ep = lr_esc(need->path, need->path_len), *et = lr_escs(twin);
                lr_info(MOD, "folder=%s path=%s deleted without archiving: renamed, it is at %s",
                        j->folder, ep, et);
                free(ep);
                free(et);
            }
            free(twin);
            if (rc == -ENOENT)
                rc = 0;
            if (defer_dir(c, need, rc, (int)dec->apply))
                return;
        }
        if (rc == 0)
            rc = put_record(c, remote, &dec->vv, NULL, NULL, &err);
        break;
    case LR_SYNC_APPLY_FILE: {
        /* Refuse before downloading what the store would refuse at commit:
         * a reserved name, a path through a symlink or a file. */
        if ((rc = target_check(c, path, !old_live, &err)) < 0) {
            if (replaces_dir(dec, local))
                mark_replaced(c, local, false); /* it stays */
            break;
        }
        if (old_live && local->type == LR_FT_DIR) {
            rc = remove_old(c, local, &err);
            if (rc < 0)
                mark_replaced(c, local, false); /* it stays */
            if (defer_dir(c, need, rc, (int)dec->apply))
                return;
            if (rc == -ENOTEMPTY && dir_kept(c, local, &cand->r.device, &rc, &err)) {
                j->left++; /* decided again, as a conflict, next round */
                return;
            }
            if (rc < 0)
                break;
        }
        struct sync_xfer *x =
            start_file(c, remote, dec, local, old_live && local->type == LR_FT_DIR, cand);
        if (x)
            add_xfer(j, x);
        return;
    }
    case LR_SYNC_APPLY_NONE:
    default:
        return;
    }
    if (rc == 0) {
        j->applied++;
        sync_item_ok(c->d, j->folder, need->path, need->path_len);
        /* A file's record or metadata (its content already here) is a file
         * version too: a session of it ends complete, others superseded. */
        const struct lr_file_rec *got =
            dec->apply == LR_SYNC_APPLY_RECORD || dec->apply == LR_SYNC_APPLY_META ? src : remote;
        done_path_add(j, path, got->type == LR_FT_FILE && !got->deleted ? &got->blocks_hash : NULL);
        return;
    }
    j->left++;
    if (rc == LR_ECHANGED)
        j->rescan = true;
    if (rc != -ENOTEMPTY)
        log_path("not applied", j->folder, need->path, need->path_len, rc, &err);
    sync_item_failed(c->d, j->folder, need->path, need->path_len, "not applied", rc, &err);
}

/*
 * Keep the local loser of a conflict as dec->copy_path (docs/internals/
 * sync.md, "Daemon steps for copy_here"). The store has no rename, so the
 * loser is copied (its chunks verified against the local record, which is
 * CHECK_DISK for a file) into staging and committed under the new name; the
 * winner then replaces the original, which goes to the versions archive.
 */
static int conflict_copy(struct page_ctx *c, const struct lr_file_rec *local,
                         const struct lr_sync_decision *dec, struct lr_err *err)
{
    struct pull_job *j = c->j;
    const char *cpath = (const char *)dec->copy_path;
    struct lr_file_rec prev;
    int rc =
        lr_index_file_get(c->d->ix, j->folder, dec->copy_path, dec->copy_path_len, 0, &prev, err);
    bool had_prev = rc == 0;
    if (rc < 0 && rc != LR_ENOTFOUND)
        return rc;
    struct lr_store_expect e;
    expect_of(had_prev ? &prev : NULL, &e);
    if (had_prev && !prev.deleted) {
        bool same = lr_sync_same_content(&prev, local);
        lr_file_rec_release(&prev);
        if (same)
            return 0; /* a peer resolving the same conflict made it already */
        return lr_err_set(err, LR_EEXISTS, "conflict copy name %s is taken", cpath);
    }
    struct lr_store_info info;
    struct lr_file_rec r = *local;
    r.path = dec->copy_path;
    r.path_len = dec->copy_path_len;
    memset(&r.vv, 0, sizeof(r.vv));
    /* A receive-only device never announces its own versions: the copy of
     * a version another device made (a conflict between two peers it
     * relays for) is stamped with that device's ID, so it reaches them;
     * the copy of our own yielded edit stays ours, and local. */
    uint64_t stamp = c->d->short_id;
    if (j->receive_only && !(dec->flags & LR_SYNC_F_YIELDED))
        stamp = lr_sync_vv_author(&local->vv);
    rc = lr_sync_local_change(had_prev ? &prev.vv : NULL, stamp ? stamp : c->d->short_id,
                              lr_index_folder_stamp(c->d->ix, j->folder), &r.vv);
    if (had_prev)
        lr_file_rec_release(&prev);
    if (rc < 0)
        return lr_err_set(err, rc, "conflict copy: version vector full");
    if (local->type == LR_FT_SYMLINK) {
        rc = lr_store_symlink(c->st, NULL, cpath, (const char *)local->target, local->mtime_ns, &e,
                              LR_STORE_MKPARENTS, &info, err);
    } else {
        struct lr_hash key;
        uint8_t *keyin = lr_xmalloc(dec->copy_path_len + 8);
        memcpy(keyin, "conflict", 8);
        memcpy(keyin + 8, dec->copy_path, dec->copy_path_len);
        lr_sha256(keyin, dec->copy_path_len + 8, &key);
        free(keyin);
        int fd = -1;
        rc = lr_store_staging_open(c->st, &key, local->size, &fd, NULL, err);
        for (size_t k = 0; rc == 0 && k < local->nchunks; k++) {
            const struct lr_chunk *ch = &local->chunks[k];
            rc = lr_store_read_chunk(c->st, (const char *)local->path, ch->off, ch->len, &ch->hash,
                                     c->buf, err);
            if (rc == LR_EVERIFY)
                rc = lr_err_set(err, LR_ECHANGED, "the losing version changed on disk");
            if (rc == 0)
                rc = lr_store_staging_write(fd, ch->off, c->buf, ch->len, err);
        }
        if (rc == 0)
            rc = lr_store_commit_file(c->st, NULL, &key, fd, cpath, local->mode, local->mtime_ns,
                                      &e, LR_STORE_MKPARENTS, &info, err);
        if (fd >= 0)
            close(fd);
    }
    /* A copy whose name this folder ignores stays here, unrecorded, as any
     * ignored file: recorded, it was sent to the peers (docs/ignore.md). */
    bool ignored = c->ig && lr_ignore_match(c->ig, cpath, dec->copy_path_len, false);
    if (rc == 0 && !ignored) {
        r.inode = info.ino;
        r.ctime_ns = info.ctime_ns;
        rc = lr_index_file_put(c->d->ix, j->folder, &r, NULL, err);
    }
    lr_vv_release(&r.vv);
    if (rc == 0) {
        char *e1 = lr_esc(local->path, local->path_len), *e2 = lr_escs(cpath);
        lr_info(MOD, "folder=%s path=%s conflict: local version kept as %s", j->folder, e1, e2);
        free(e1);
        free(e2);
        j->conflicts++;
    }
    return rc;
}

/*
 * The conflict copy's name is already held by a different version (its
 * author lost twice within one second of mtime): name this copy with the
 * loser's content tag instead (lr_sync_conflict_name_alt), on every device
 * alike, before the audit trail records it. A name held by the same
 * content is left: that copy exists already.
 */
static void copy_name_free(struct lr_daemon *d, const char *folder, const struct lr_file_rec *local,
                           const struct lr_file_rec *remote, struct lr_sync_decision *dec)
{
    if (dec->action != LR_SYNC_CONFLICT || !dec->copy_path)
        return;
    const struct lr_file_rec *loser = dec->copy_here ? local : remote;
    if (!loser || loser->deleted || loser->type == LR_FT_DIR)
        return;
    struct lr_file_rec prev;
    if (lr_index_file_get(d->ix, folder, dec->copy_path, dec->copy_path_len, 0, &prev, NULL) < 0)
        return;
    struct lr_hash tag;
    if (loser->type == LR_FT_SYMLINK)
        lr_sha256(loser->target, loser->target_len, &tag);
    else
        tag = loser->blocks_hash;
    bool taken = !prev.deleted && !lr_sync_same_content(&prev, loser);
    lr_file_rec_release(&prev);
    uint8_t *alt;
    size_t alt_len;
    if (!taken || lr_sync_conflict_name_alt(dec->copy_path, dec->copy_path_len, &tag, &alt,
                                            &alt_len, NULL) < 0)
        return;
    free(dec->copy_path);
    dec->copy_path = alt;
    dec->copy_path_len = alt_len;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether a path under directory p (p + "/...") has a transfer in flight. */
static bool busy_below(const struct pull_job *j, const uint8_t *p, size_t n)
{
    size_t lo = 0, hi = j->nbusy;
    while (lo < hi) { /* first busy path not below p + "/" in strcmp order */
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(j->busy[mid], (const char *)p, n);
        if (c < 0 || (c == 0 && (unsigned char)j->busy[mid][n] < '/'))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < j->nbusy && strncmp(j->busy[lo], (const char *)p, n) == 0 && j->busy[lo][n] == '/';
}

static bool is_busy(const struct pull_job *j, const uint8_t *p)
{
    const char *key = (const char *)p;
    return j->nbusy && bsearch(&key, j->busy, j->nbusy, sizeof(*j->busy), cmp_str);
}

/* Add path to the sorted busy list (a transfer started in this round). */
static void mark_busy(struct pull_job *j, const char *path)
{
    size_t lo = 0, hi = j->nbusy;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(j->busy[mid], path);
        if (c == 0)
            return;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    j->busy = lr_xreallocarray(j->busy, j->nbusy + 1, sizeof(*j->busy));
    memmove(&j->busy[lo + 1], &j->busy[lo], (j->nbusy - lo) * sizeof(*j->busy));
    j->busy[lo] = lr_xstrdup(path);
    j->nbusy++;
}

/* Count one needed version as lr_need_stats does. */
static void need_count(struct lr_need_stats *s, const struct lr_file_rec *r)
{
    s->items++;
    if (r->deleted) {
        s->deletes++;
    } else if (r->type == LR_FT_FILE) {
        s->files++;
        s->bytes += r->size;
    }
}

/* Kept free on the folder's file system: its directories, sidecars and
 * what the user writes meanwhile (1/256 of it, at least 64 KiB, at most
 * 64 MiB). */
static uint64_t space_reserve(uint64_t total)
{
    uint64_t r = total / 256;
    return r < (64u << 10) ? (64u << 10) : r > (64u << 20) ? (64u << 20) : r;
}

/*
 * The round's free-space budget, after a sweep if the disk filled up:
 * staging files of transfers not running (interrupted ones, of versions
 * since deleted or replaced) held the space the files still needed, so a
 * nearly full disk stayed stuck until the day-old cleanup (black-box round
 * 34: two 3 MiB files on a 5 MiB file system, both half staged, neither
 * ever committed). Their resumable data is given up for the room.
 */
static void make_room(struct page_ctx *c)
{
    struct pull_job *j = c->j;
    struct lr_err err = {0};
    if (j->low_space) {
        uint64_t removed = 0;
        if (lr_store_staging_sweep(c->st, j->live, j->nlive, &removed, &err) < 0)
            lr_warn(MOD, "folder=%s low on space: staging sweep: %s", j->folder, err.msg);
        else if (removed)
            lr_info(
                MOD,
                "folder=%s low on space: removed %llu staging files and sidecars of transfers not "
                "running",
                j->folder, (unsigned long long)removed);
    }
    uint64_t total;
    if (lr_store_free_space(c->st, &j->space_free, &total, &j->space_block, &err) < 0) {
        j->space_left = UINT64_MAX; /* unknown: writes will tell */
        return;
    }
    j->space_reserve = space_reserve(total);
    uint64_t held = j->live_left + j->space_reserve;
    j->space_left = j->space_free > held ? j->space_free - held : 0;
}

static void pull_work(struct daemon_job *base)
{
    struct pull_job *j = (struct pull_job *)base;
    struct lr_daemon *d = base->d;
    struct page_ctx c = {.d = d, .j = j};
    uint8_t *after = NULL;
    size_t after_len = 0;
    bool round_end = false;
    bool resumed = j->after != NULL;
    if ((j->rc = lr_store_open_with(j->root, d->sync->spares, &c.st, &j->err)) < 0) {
        j->no_marker = j->rc == LR_ENOMARKER;
        /* Nothing of the folder can be applied (.landropic/tmp not a
         * directory, ...): a folder-level entry (path "") in status, retried
         * with the items' backoff; it was only logged, and never retried. */
        if (!j->no_marker)
            sync_item_failed(d, j->folder, (const uint8_t *)"", 0, "cannot pull", j->rc, &j->err);
        return;
    }
    sync_item_folder_ok(d, j->folder, "cannot pull");
    /* Ignored paths are never applied, so a peer's change never replaces or
     * deletes an ignored file (docs/modes.md); without the rules, nothing. */
    struct lr_ignore *ig = NULL;
    if ((j->rc = lr_ignore_load(j->root, &ig, &j->err)) < 0) {
        lr_store_close(c.st);
        return;
    }
    c.ig = ig;
    if (j->gc) {
        /* Staging files nobody resumed for a day: interrupted transfers of
         * versions since replaced, or of entries refused at commit. */
        uint64_t removed = 0;
        struct lr_err gerr = {0};
        if (lr_store_staging_gc(c.st, STAGING_KEEP_S, &removed, &gerr) < 0)
            lr_warn(MOD, "folder=%s staging cleanup: %s", j->folder, gerr.msg);
        else if (removed)
            lr_info(MOD, "folder=%s removed %llu stale staging files", j->folder,
                    (unsigned long long)removed);
        /* Sidecars of versions committed just before a crash. */
        if (lr_store_sidecar_gc(c.st, &removed, &gerr) < 0)
            lr_warn(MOD, "folder=%s staging sidecar cleanup: %s", j->folder, gerr.msg);
    }
    make_room(&c);
    c.buf = lr_xmalloc(LR_PROTO_CHUNK_DATA_MAX);
    /*
     * Deletes wait for the end of the round, not the end of a page: a renamed
     * directory arrives as adds and deletes that may sit on different pages,
     * and the adds are built from the deleted files' chunks. Pass 0 applies
     * everything but deletes; pass 1 deletes files and links; the passes
     * after it remove directories (deleted, or replaced by a file or link),
     * deepest first within a page. A directory whose subdirectories sit on
     * a later page is not empty yet: it waits for the next pass, silently,
     * while a pass makes progress, and only the last pass reports what is
     * still not empty (an unknown or ignored file keeps it). Reporting it
     * from the first pass showed thousands-of-files deletes as failing
     * "directory not empty" for seconds. A round with too many transfers in
     * flight stops at a page boundary (j->cut) and the next one resumes
     * there; deletes run only in a round whose pass 0 reached the end of the
     * list, so every add has taken the local chunks it needs by then.
     */
    bool saw_delete = false, saw_dir_delete = false, last_pass = false;
    /* The directories the last pass deferred (sorted): a later pass tries
     * only these, so an error is reported once and each one announced once. */
    char **retry = NULL;
    size_t nretry = 0;
    for (int pass = 0; !last_pass && !j->no_marker; pass++) {
        /* A resumed round did not see the deletes sorted before its start. */
        if (pass > 0 && ((!saw_delete && !resumed) || !round_end || j->hold_deletes))
            break; /* held deletes: the burst's LAST triggers the next pull */
        if (pass == 1)
            pend_add_own(j);
        if (pass >= 2 && !saw_dir_delete)
            break;
        size_t applied_before = j->applied;
        /* A directory whose files' deletions wait for their twins is not
         * empty yet and not failing: deferred silently, even in the last
         * pass (the copies' commits ask for the next round). */
        c.defer_notempty = pass >= 2 && (pass < PULL_DIR_PASSES + 1 || j->twin_held);
        c.deferred = 0;
        c.defer_paths = NULL;
        free(after);
        after = NULL;
        after_len = 0;
        if (pass == 0 && j->after) {
            after = j->after;
            after_len = j->after_len;
            j->after = NULL;
        }
        for (;;) {
            if (pass == 0 && j->nxfers >= j->room) {
                j->cut = true;
                j->after = after;
                j->after_len = after_len;
                after = NULL;
                break;
            }
            /* Pass 0 reads about as many entries as it may still start
             * transfers for, so a short round is short. */
            size_t page = SYNC_PULL_PAGE;
            if (pass == 0 && j->room - j->nxfers < page)
                page = j->room - j->nxfers > PULL_PAGE_MIN ? j->room - j->nxfers : PULL_PAGE_MIN;
            struct lr_need_list nl = {0};
            if ((j->rc = lr_index_need_list(d->ix, j->folder, after, after_len, page, LR_IX_CHUNKS,
                                            &nl, &j->err)) < 0)
                break;
            if (nl.n)
                atomic_store(&j->has_needs, true);
            struct lr_sync_decision *decs = lr_xcalloc(nl.n + 1, sizeof(*decs));
            struct lr_file_rec *locals = lr_xcalloc(nl.n + 1, sizeof(*locals));
            bool *has_local = lr_xcalloc(nl.n + 1, sizeof(*has_local));
            struct lr_sync_item *items = lr_xcalloc(nl.n + 1, sizeof(*items));
            size_t nitems = 0;
            for (size_t i = 0; i < nl.n; i++) {
                const struct lr_need *n = &nl.v[i];
                const struct lr_remote_rec *r = &n->cand[0].r;
                if (lr_ignore_match(ig, (const char *)n->path, n->path_len,
                                    r->rec.type == LR_FT_DIR)) {
                    if (pass == 0)
                        need_count(&j->ignored, &r->rec);
                    continue;
                }
                const char *key = (const char *)n->path;
                if (pass > 2 && !bsearch(&key, retry, nretry, sizeof(*retry), cmp_str))
                    continue; /* not deferred by the pass before */
                if (is_busy(j, n->path) || (r->flags & (LR_RREC_UNKNOWN_TYPE | LR_RREC_PARTIAL))) {
                    if (pass == 0 && !(r->flags & LR_RREC_PARTIAL) && is_busy(j, n->path))
                        note_holders(j, n);
                    j->left += pass == 0;
                    continue;
                }
                int rc = lr_index_file_get(d->ix, j->folder, n->path, n->path_len, LR_IX_CHUNKS,
                                           &locals[i], NULL);
                has_local[i] = rc == 0;
                if (rc < 0 && rc != LR_ENOTFOUND) {
                    j->left += pass == 0;
                    continue;
                }
                struct lr_err err = {0};
                struct lr_sync_sides sides;
                pull_sides(d, j, &r->device, has_local[i] ? &locals[i] : NULL, &sides);
                rc = lr_sync_decide_with(has_local[i] ? &locals[i] : NULL, &r->rec, &sides,
                                         &decs[i], &err);
                if (rc < 0) {
                    if (pass == 0) {
                        log_path("undecidable", j->folder, n->path, n->path_len, rc, &err);
                        sync_item_failed(d, j->folder, n->path, n->path_len, "undecidable", rc,
                                         &err);
                        j->left++;
                    }
                    continue;
                }
                resolve_for_send_only(j, has_local[i] ? &locals[i] : NULL, &n->cand[0], &decs[i]);
                copy_name_free(d, j->folder, has_local[i] ? &locals[i] : NULL, &r->rec, &decs[i]);
                /* the audit trail (conflicts.h); once per pair of versions */
                if (pass == 0 && !copy_first(&decs[i], has_local[i] ? &locals[i] : NULL))
                    daemon_conflict_note(d, j->folder, has_local[i] ? &locals[i] : NULL, &r->rec,
                                         n->cand[0].holders, n->cand[0].nholders, j->peers,
                                         j->npeers, &decs[i]);
                if (decs[i].apply == LR_SYNC_APPLY_NONE ||
                    (decs[i].flags & (LR_SYNC_F_INCONSISTENT | LR_SYNC_F_UNKNOWN_TYPE))) {
                    sync_item_skipped(d, j->folder, n->path, n->path_len, decs[i].flags, pass);
                    if (pass == 0)
                        j->left += pass == 0;
                    continue;
                }
                /* A directory replaced by a file or link goes with the deletes:
                 * its children must be gone first (lr_plan_order phases). */
                bool dir_goes =
                    has_local[i] && !locals[i].deleted && locals[i].type == LR_FT_DIR &&
                    (decs[i].apply == LR_SYNC_APPLY_FILE || decs[i].apply == LR_SYNC_APPLY_SYMLINK);
                bool is_delete = decs[i].apply == LR_SYNC_APPLY_DELETE || dir_goes;
                bool dir_delete =
                    is_delete && has_local[i] && !locals[i].deleted && locals[i].type == LR_FT_DIR;
                if (dir_delete && busy_below(j, n->path, n->path_len)) {
                    /* A file inside is still being fetched: its commit would
                     * make the directory again (under the new file, or empty
                     * once that file's own deletion is applied, and then our
                     * scan announces it as new: a deleted tree came back on
                     * every device). It goes in a round after the transfer. */
                    j->left += pass == 0;
                    continue;
                }
                saw_delete |= is_delete;
                saw_dir_delete |= dir_delete;
                int turn = !is_delete ? 0 : !dir_delete ? 1 : 2;
                if (turn != (pass < 2 ? pass : 2))
                    continue; /* this pass is not its turn */
                items[nitems].path = n->path;
                items[nitems].path_len = n->path_len;
                items[nitems].d = &decs[i];
                items[nitems].user = (void *)(uintptr_t)i;
                nitems++;
            }
            size_t nwork = lr_plan_order(items, nitems);
            for (size_t k = 0; k < nwork && !j->no_marker; k++) {
                size_t i = (size_t)(uintptr_t)items[k].user;
                if (replaces_dir(&decs[i], has_local[i] ? &locals[i] : NULL))
                    mark_replaced(&c, &locals[i], true); /* before the page's transaction */
            }
            bool tx = lr_index_begin(d->ix, NULL) == 0;
            for (size_t k = 0; k < nwork && !j->no_marker; k++) {
                size_t i = (size_t)(uintptr_t)items[k].user;
                apply_one(&c, &nl.v[i], &nl.v[i].cand[0], has_local[i] ? &locals[i] : NULL,
                          &decs[i]);
            }
            if (c.ndone) {
                /* Files renamed into place, their records not committed. */
                LR_FAILPOINT("pull_before_index");
            }
            bool committed = true;
            if (tx && lr_index_commit(d->ix, &j->err) < 0) {
                lr_warn(MOD, "folder=%s: %s", j->folder, j->err.msg);
                committed = false;
            }
            for (size_t k = 0; k < c.ndone; k++) {
                struct lr_err ferr = {0};
                if (committed && lr_store_sidecar_forget(c.st, c.done[k].path, c.done[k].path_len,
                                                         &c.done[k].key, &ferr) < 0)
                    log_path("older staging not removed", j->folder, c.done[k].path,
                             c.done[k].path_len, -1, &ferr);
                free(c.done[k].path);
            }
            c.ndone = 0;
            bool end = nl.n < page || j->no_marker;
            if (pass == 0 && nl.n < page)
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
        /* Another directory pass while one makes progress; the one after a
         * pass without progress (or the PULL_DIR_PASSES-th) reports. */
        if (pass >= 2) {
            last_pass = !c.defer_notempty || c.deferred == 0 || pass > PULL_DIR_PASSES;
            for (size_t i = 0; i < nretry; i++)
                free(retry[i]);
            free(retry);
            retry = c.defer_paths;
            nretry = c.deferred;
            c.defer_paths = NULL;
            if (nretry)
                qsort(retry, nretry, sizeof(*retry), cmp_str);
        }
        if (pass >= 2 && !last_pass && j->applied == applied_before)
            pass = PULL_DIR_PASSES; /* the next one is the reporting pass */
    }
    c.defer_notempty = false;
    for (size_t i = 0; i < nretry; i++)
        free(retry[i]);
    free(retry);
    free(after);
    free(c.buf);
    for (size_t k = 0; k < c.ndone; k++)
        free(c.done[k].path); /* not committed: the sidecars stay */
    free(c.done);
    lr_ignore_free(ig);
    j->held = lr_xcalloc(j->ntheirs + 1, sizeof(*j->held));
    for (size_t k = 0; k < j->ntheirs; k++) {
        struct lr_remote_state rs;
        if (lr_index_remote_state(d->ix, j->folder, &j->theirs[k].peer, &rs, NULL) == 0 &&
            rs.index_id && !rs.full_pending) {
            j->held[k].ok = true;
            j->held[k].index_id = rs.index_id;
            j->held[k].seq = rs.max_seq;
        }
    }
    j->need_known = lr_index_need_stats(d->ix, j->folder, &j->need, NULL) == 0;
    if (j->rc == 0 && !j->no_marker && j->nbusy == 0 && j->nxfers == 0 && j->need_known &&
        j->need.items == 0) {
        /*
         * Nothing needed and nothing in flight (pull_start's snapshot; none
         * started): whatever tmp/ still holds is left from interrupted
         * transfers of versions no longer wanted. A journaled version
         * (staging_reuse.h) has no sidecar through which a later version of
         * its path would remove its staging file, so this is where it goes.
         */
        uint64_t removed = 0;
        struct lr_err gerr = {0};
        if (lr_store_staging_gc(c.st, 0, &removed, &gerr) < 0)
            lr_warn(MOD, "folder=%s staging cleanup: %s", j->folder, gerr.msg);
        else if (removed)
            lr_debug(MOD, "folder=%s in sync: %llu leftover staging entries removed", j->folder,
                     (unsigned long long)removed);
    }
    lr_store_close(c.st);
    sync_items_prune(d, j->folder);
    /* What is ignored is not needed (status, sync --wait); a round cut short
     * saw only part of it and reports more. */
    j->need.items -= j->ignored.items < j->need.items ? j->ignored.items : j->need.items;
    j->need.files -= j->ignored.files < j->need.files ? j->ignored.files : j->need.files;
    j->need.deletes -= j->ignored.deletes < j->need.deletes ? j->ignored.deletes : j->need.deletes;
    j->need.bytes -= j->ignored.bytes < j->need.bytes ? j->ignored.bytes : j->need.bytes;
}

static void pull_start(struct daemon_job *base)
{
    struct pull_job *j = (struct pull_job *)base;
    struct lr_daemon *d = base->d;
    struct sync_folder *f = sync_folder_get(d, j->folder);
    f->pull_queued = false;
    f->pull_running = true;
    f->round = j;
    f->pull_again = false;
    f->pull_cut = false;
    for (struct sync_link *l = d->sync->links; l; l = l->next)
        if (l->listed && l->recv_mid && strcmp(l->folder, j->folder) == 0 &&
            sync_peer_get(d, &l->peer)->conn)
            j->hold_deletes = true;
    for (struct sync_xfer *x = d->sync->xfers; x; x = x->next)
        if (x->from_local && !x->dead && strcmp(x->folder, j->folder) == 0)
            pend_push(j, x);
    /* A round resumed after a cut does not see the adds before its start:
     * those that failed since the list's start wait as if in flight. */
    for (size_t i = 0; f->pull_after && i < f->nfailed_twins; i++)
        twins_add(&j->pend, &j->npend, &f->failed_twins[i]);
    if (j->npend > 1)
        qsort(j->pend, j->npend, sizeof(*j->pend), twin_cmp);
    if (f->nno_move) {
        j->no_move = lr_xmalloc(f->nno_move * sizeof(*j->no_move));
        memcpy(j->no_move, f->no_move, f->nno_move * sizeof(*j->no_move));
        j->nno_move = f->nno_move;
    }
    f->commit_untriggered = false;
    uint64_t now = uv_now(&d->loop);
    if (!f->gc_done || now - f->gc_at >= STAGING_GC_EVERY_MS) {
        j->gc = true;
        f->gc_done = true;
        f->gc_at = now;
    }
    j->busy = lr_xcalloc(f->nxfers + 1, sizeof(*j->busy));
    j->low_space = f->low_space;
    f->low_space = false;
    for (struct sync_xfer *x = d->sync->xfers; x; x = x->next) {
        if (strcmp(x->folder, j->folder) != 0)
            continue;
        if (j->nbusy < f->nxfers)
            j->busy[j->nbusy++] = lr_xstrdup((const char *)x->rec.path);
        if (!x->dead)
            j->live_left += x->need > x->got ? x->need - x->got : 0;
        if (j->low_space)
            sweep_keep(&j->live, &j->nlive, x);
    }
    if (j->low_space && f->nrefused_keys) {
        j->live = lr_xreallocarray(j->live, j->nlive + f->nrefused_keys, sizeof(*j->live));
        memcpy(j->live + j->nlive, f->refused_keys, f->nrefused_keys * sizeof(*j->live));
        j->nlive += f->nrefused_keys;
    }
    qsort(j->busy, j->nbusy, sizeof(*j->busy), cmp_str);
    size_t room = d->sync->nxfers < SYNC_XFERS_MAX ? SYNC_XFERS_MAX - d->sync->nxfers : 0;
    size_t ramp = 2 * d->sync->nxfers > PULL_RAMP_MIN ? 2 * d->sync->nxfers : PULL_RAMP_MIN;
    j->room = room < ramp ? room : ramp;
    j->self = *lr_identity_device_id(d->ident);
    j->peers = lr_xcalloc(d->cfg->npeers + 1, sizeof(*j->peers));
    for (size_t i = 0; i < d->cfg->npeers; i++)
        j->peers[j->npeers++] = d->cfg->peers[i].id;
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, j->folder);
    if (fc && lr_sync_strategy_parse(fc->conflict, fc->conflict_window, &j->ours, NULL) < 0)
        memset(&j->ours, 0, sizeof(j->ours)); /* config validated it; keep-both if not */
    j->receive_only = fc && fc->mode == LR_MODE_RECEIVE_ONLY;
    for (struct sync_peer *p = d->sync->peers; p; p = p->next) {
        for (size_t k = 0; p->conn && p->have_folders && k < p->theirs.n; k++) {
            /* A peer with the folder in error, or removed there, is as one
             * not sharing it. */
            if (p->theirs.v[k].stopped || p->theirs.v[k].unshared || p->theirs.v[k].removed ||
                strcmp(p->theirs.v[k].id, j->folder) != 0)
                continue;
            j->theirs = lr_xreallocarray(j->theirs, j->ntheirs + 1, sizeof(*j->theirs));
            j->theirs[j->ntheirs].peer = p->id;
            j->theirs[j->ntheirs].send_only = p->theirs.v[k].mode == LR_PROTO_MODE_SEND_ONLY;
            if (lr_sync_strategy_from_proto(&p->theirs.v[k], &j->theirs[j->ntheirs].s) == 0)
                j->ntheirs++;
        }
    }
    if (f->pull_after) {
        j->after = f->pull_after;
        j->after_len = f->pull_after_len;
        f->pull_after = NULL;
        f->pull_after_len = 0;
    } else {
        /* This round's pass 0 sees every add again: what failed before is
         * tried again (pend_add_own) or fails again (pend_add_failed). */
        free(f->failed_twins);
        f->failed_twins = NULL;
        f->nfailed_twins = 0;
    }
}

/*
 * PULLED (docs/protocol.md §6.12): each peer sharing the folder learns
 * whether we still need anything, as of what we hold of its index. Its
 * `sync --wait` compares indexes to know what we still need from it, and
 * cannot tell a path our rules ignore, which we never take: it waited for
 * that until its timeout. Sent when the answer changes: once "not in
 * sync", and "in sync" again for each new extent of what we hold; a
 * transfer costs a message or two, not one a round.
 */
static void pull_tell_peers(struct lr_daemon *d, const struct pull_job *j, bool in_sync)
{
    for (size_t k = 0; j->held && k < j->ntheirs; k++) {
        struct sync_peer *p = sync_peer_get(d, &j->theirs[k].peer);
        struct sync_link *l = sync_link_find(d, &p->id, j->folder);
        if (!j->held[k].ok || !p->conn || !l || !l->listed)
            continue;
        /* Only "in sync" is acted on: "not in sync" needs saying once. */
        if (l->told_pulled && l->told_in_sync == in_sync &&
            (!in_sync ||
             (l->told_pulled_index == j->held[k].index_id && l->told_pulled_seq == j->held[k].seq)))
            continue;
        struct lr_proto_pulled m = {.peer_index_id = j->held[k].index_id,
                                    .peer_seq = j->held[k].seq,
                                    .need = in_sync         ? 0
                                            : j->need.items ? j->need.items
                                                            : 1};
        snprintf(m.folder_id, sizeof(m.folder_id), "%s", j->folder);
        struct lr_buf b;
        lr_buf_init(&b, LR_PROTO_PULLED_MAX);
        if (lr_proto_pulled_encode(&m, &b) == 0) {
            size_t len;
            uint8_t *pl = lr_buf_detach(&b, &len);
            p->index_sent += len;
            sync_send(d, p, LR_STREAM_CONTROL, LR_MSG_PULLED, pl, len);
            l->told_pulled = true;
            l->told_in_sync = in_sync;
            l->told_pulled_index = m.peer_index_id;
            l->told_pulled_seq = m.peer_seq;
        }
        lr_buf_release(&b);
    }
}

/* Bounded: past it a failing move is tried again each round it is asked
 * for (as before), which costs CPU, not data. */
#define NO_MOVE_MAX 4096u

static void no_move_update(struct sync_folder *f, struct pull_job *j)
{
    if (j->rc == 0 && j->need_known && j->need.items == 0) {
        free(f->no_move);
        f->no_move = NULL;
        f->nno_move = 0;
        return;
    }
    for (size_t i = 0; i < j->nmoves_failed && f->nno_move < NO_MOVE_MAX; i++) {
        uint64_t h = j->moves_failed[i];
        if (f->no_move && bsearch(&h, f->no_move, f->nno_move, sizeof(h), u64_cmp))
            continue;
        f->no_move = lr_xreallocarray(f->no_move, f->nno_move + 1, sizeof(*f->no_move));
        f->no_move[f->nno_move++] = h;
        qsort(f->no_move, f->nno_move, sizeof(*f->no_move), u64_cmp);
    }
}

bool sync_folder_writing(struct lr_daemon *d, const char *folder_id)
{
    if (!d->sync || !sync_folder_applying(d, folder_id, 0))
        return false;
    const struct sync_folder *f = sync_folder_get(d, folder_id);
    /* A round that has found nothing to do (a peer's burst of no records
     * starts one) writes nothing: a change seen meanwhile is the user's. */
    return f->commits > 0 || !f->round || atomic_load(&f->round->has_needs);
}

static void pull_done(struct daemon_job *base, int status)
{
    struct pull_job *j = (struct pull_job *)base;
    struct lr_daemon *d = base->d;
    struct sync_folder *f = sync_folder_get(d, j->folder);
    f->pull_running = false;
    if (f->round == j)
        f->round = NULL;
    f->pull_queued = false;
    if (j->applied || j->conflicts) /* wrote into the folder (a round that only looked did not) */
        f->applied_at = uv_now(&d->loop);
    daemon_conflicts_flush(d); /* events of conflicts the job recorded */
    if (status == 0 && !d->stopping) {
        if (j->need_known) {
            f->need = j->need;
            f->need_known = true;
        }
        apply_holder_updates(d, j);
        for (size_t i = 0; i < j->ndone_paths; i++) {
            const struct done_path *dp = &j->done_paths[i];
            sync_folder_note_written(d, j->folder, j->root, (const uint8_t *)dp->path,
                                     strlen(dp->path), 0, 0);
            sync_session_settled(d, j->folder, dp->path, dp->file ? &dp->blocks : NULL);
        }
        for (size_t i = 0; i < j->nxfers; i++)
            xfer_link(d, j->xfers[i]);
        f->twin_held = j->twin_held != 0;
        f->low_space |= j->space_low;
        free(f->refused_keys);
        f->refused_keys = j->refused_keys;
        f->nrefused_keys = j->nrefused_keys;
        j->refused_keys = NULL;
        j->nrefused_keys = 0;
        if (j->refused > 1)
            lr_warn(MOD,
                    "folder=%s %zu files not staged for want of free space (status lists them)",
                    j->folder, j->refused);
        for (size_t i = 0; i < j->nfailed; i++)
            folder_failed_twin(f, &j->failed[i]);
        no_move_update(f, j);
        free(f->pull_after);
        f->pull_after = NULL;
        f->pull_after_len = 0;
        if (j->cut) {
            f->pull_after = j->after;
            f->pull_after_len = j->after_len;
            j->after = NULL;
            f->pull_cut = true;
            pull_room_freed(d);
        }
        if (j->applied || j->nxfers || j->conflicts) {
            lr_info(MOD, "folder=%s applied=%zu transfers=%zu conflicts=%zu left=%zu", j->folder,
                    j->applied, j->nxfers, j->conflicts, j->left);
            daemon_event(d,
                         json_pack("{s:s, s:s, s:I, s:I, s:I}", "type", "sync_applied", "folder",
                                   j->folder, "applied", (json_int_t)j->applied, "transfers",
                                   (json_int_t)j->nxfers, "conflicts", (json_int_t)j->conflicts));
        }
        j->nxfers = 0;
        if (j->no_marker) {
            struct folder_rt *rt = daemon_folder(d, j->folder);
            const char *msg = lr_err_msg(&j->err, LR_ENOMARKER);
            lr_warn(MOD, "folder=%s stopped: %s", j->folder, msg);
            if (rt)
                daemon_folder_fail(rt, msg);
            sync_folder_scanned(d, j->folder, false);
            live_folder_failed(d, j->folder);
        } else if (j->rc < 0) {
            lr_warn(MOD, "folder=%s pull failed: %s", j->folder, lr_err_msg(&j->err, j->rc));
        }
        if (j->applied || j->kept) {
            /* A kept directory's new version too: unannounced, the peer
             * tried its files under its own file or symlink for good. */
            f->rescans = 0;
            sync_local_changed(d, j->folder);
        }
        f->stuck = j->applied == 0 && f->nxfers == 0 && !j->cut && !j->hold_deletes;
        if (!j->no_marker)
            pull_tell_peers(d, j,
                            j->rc == 0 && j->need_known && j->need.items == 0 && !j->cut &&
                                f->nxfers == 0);
        if (j->rescan && f->rescans < PULL_RESCANS_MAX) {
            f->rescans++;
            scanjobs_queue(d, (const char *const *)&j->folder, 1, NULL, NULL);
        } else if (f->pull_again || ((j->applied || j->kept) && j->left)) {
            sync_pull_trigger(d, j->folder);
        }
        sync_pump(d);
    }
    for (size_t i = 0; i < j->nxfers; i++)
        xfer_unref(j->xfers[i]);
    free(j->xfers);
    for (size_t i = 0; i < j->nbusy; i++)
        free(j->busy[i]);
    free(j->busy);
    free(j->live);
    free(j->refused_keys);
    free(j->theirs);
    free(j->held);
    free(j->pend);
    free(j->failed);
    free(j->no_move);
    free(j->moves_failed);
    free(j->peers);
    for (size_t i = 0; i < j->nupd; i++) {
        free(j->upd[i].path);
        free(j->upd[i].holders);
    }
    for (size_t i = 0; i < j->ndone_paths; i++)
        free(j->done_paths[i].path);
    free(j->done_paths);
    free(j->upd);
    free(j->after);
    free(j->folder);
    free(j->root);
    free(j);
}

bool sync_folder_first_transfer(struct lr_daemon *d, const char *folder, char *out, size_t n)
{
    out[0] = '\0';
    if (!d->sync || n < 4)
        return false;
    for (struct sync_xfer *x = d->sync->xfers; x; x = x->next)
        if (!x->dead && strcmp(x->folder, folder) == 0) {
            char *e = lr_esc_cut(lr_esc(x->rec.path, x->rec.path_len), n - 1);
            snprintf(out, n, "%s", e);
            free(e);
            return true;
        }
    return false;
}

uint64_t sync_pull_got_bytes(struct lr_daemon *d, const char *folder)
{
    uint64_t n = 0;
    for (struct sync_xfer *x = d->sync->xfers; x; x = x->next)
        if (!x->dead && strcmp(x->folder, folder) == 0)
            n += x->got;
    return n;
}

void sync_pull_trigger(struct lr_daemon *d, const char *folder)
{
    if (d->stopping)
        return;
    struct sync_folder *f = sync_folder_get(d, folder);
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder);
    if (!fc || !sync_folder_usable(d, folder) || fc->mode == LR_MODE_SEND_ONLY)
        return;
    if (f->pull_queued)
        return;
    if (f->pull_running) {
        f->pull_again = true;
        return;
    }
    struct pull_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.start = pull_start;
    j->base.work = pull_work;
    j->base.done = pull_done;
    j->folder = lr_xstrdup(folder);
    j->root = lr_xstrdup(fc->path);
    f->pull_queued = true;
    daemon_job_queue(d, &j->base);
}

/* ---- commits ---- */

/* Completed transfers wait here; one job commits a batch of one folder's:
 * staged data made durable with one barrier, renames, directories synced
 * once, one index transaction (docs/decisions/0001-durability-batching.md). */
#define COMMIT_BATCH_MAX 512

struct sync_commitq {
    struct sync_xfer **v;
    size_t n;
    bool busy;
    uint64_t journals; /* commit journals named so far */
};

static struct sync_commitq *commitq(struct lr_daemon *d)
{
    if (!d->sync->cq)
        d->sync->cq = lr_xcalloc(1, sizeof(struct sync_commitq));
    return d->sync->cq;
}

/*
 * A commit batch goes in two steps: its staged data is made durable (one
 * syncfs) on the barrier side lane, then the serial queue renames the files
 * into place, fsyncs the directories it changed and commits the index. A
 * syncfs also flushes whatever else is dirty (files still being received),
 * which can take a while; on the serial queue it held back pull rounds and
 * index batches behind it. Nothing is renamed before its barrier returned,
 * so the order of decision 0001 is kept.
 */
struct commit_job {
    struct daemon_job base;
    struct sync_xfer **x;
    size_t n;
    uint64_t journal_id; /* unique in this process */
    bool journal;        /* written: removed once the index committed */
    int barrier_rc;      /* the first step's outcome; its message in err[0] */
    int *rc;
    bool *rescan;
    struct lr_err *err;
};

/*
 * The batch's journal (staging_reuse.h): the roll-forward records of its
 * transfers that have no sidecar. Without it (an error, logged) a crash
 * between the renames and the index commit would make the next scan take
 * those files for local edits; the commit itself goes on.
 */
static void write_journal(struct commit_job *j, struct lr_store *st)
{
    struct lr_store_sidecar *v = lr_xcalloc(j->n + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++) {
        struct sync_xfer *x = j->x[i];
        struct stat sb;
        if (!x->journaled || fstat(x->fd, &sb) < 0)
            continue;
        struct lr_store_sidecar *sc = &v[n++];
        sc->key = x->key;
        sc->chunks = x->rec.chunks; /* borrowed, like the record */
        sc->nchunks = x->rec.nchunks;
        sc->has_commit = true;
        sc->commit.rec = x->rec;
        sc->commit.staging_ino = (uint64_t)sb.st_ino;
        sc->commit.had_local = x->had_local;
        sc->commit.local_seq = x->local_seq;
    }
    struct lr_err err = {0};
    int rc = n ? lr_store_journal_write(st, j->journal_id, v, n, &err) : 0;
    if (rc < 0)
        lr_warn(MOD, "folder=%s no roll-forward for %zu files of a commit batch: %s",
                j->x[0]->folder, n, lr_err_msg(&err, rc));
    j->journal = n && rc == 0;
    free(v);
}

/* Barrier lane: touches only the transfers' staging descriptors and the
 * batch's own journal. */
static void barrier_work(struct daemon_job *base)
{
    struct commit_job *j = (struct commit_job *)base;
    struct lr_store *st = NULL;
    uint64_t t0 = uv_hrtime();
    /* No spare pool: this handle creates (the journal) but removes nothing. */
    int rc = j->n ? lr_store_open(j->x[0]->root, &st, &j->err[0]) : 0;
    if (rc == 0 && j->n)
        write_journal(j, st);
    if (rc == 0 && j->n) {
        struct lr_store_batch *b = lr_store_batch_new(st, LR_STORE_BARRIER_SYNCFS);
        for (size_t i = 0; i < j->n && rc == 0; i++)
            rc = lr_store_batch_stage(b, j->x[i]->fd, &j->err[0]);
        LR_FAILPOINT("commit_before_barrier");
        if (rc == 0)
            rc = lr_store_batch_barrier(b, &j->err[0]);
        lr_store_batch_free(b);
    }
    lr_store_close(st);
    j->barrier_rc = rc;
    if (j->n)
        lr_debug(MOD, "folder=%s commit barrier: %zu files durable in %llu ms", j->x[0]->folder,
                 j->n, (unsigned long long)((uv_hrtime() - t0) / 1000000));
}

static void commit_work(struct daemon_job *base)
{
    struct commit_job *j = (struct commit_job *)base;
    struct lr_daemon *d = base->d;
    struct lr_store *st = NULL;
    struct lr_store_batch *b = NULL;
    uint64_t t0 = uv_hrtime();
    int rc = j->barrier_rc;
    if (rc == 0 && j->n)
        rc = lr_store_open_with(j->x[0]->root, d->sync->spares, &st, &j->err[0]);
    /* The data is durable already: the batch only fsyncs the directories
     * the renames change (a second syncfs would again wait for everything
     * still being received). */
    if (rc == 0)
        b = lr_store_batch_new(st, LR_STORE_BARRIER_FSYNC);
    if (rc < 0) {
        for (size_t i = 0; i < j->n; i++) {
            j->rc[i] = rc;
            if (i)
                j->err[i] = j->err[0];
        }
        goto out;
    }
    LR_FAILPOINT("commit_before_rename");
    bool tx = lr_index_begin(d->ix, NULL) == 0;
    for (size_t i = 0; i < j->n; i++) {
        j->rc[i] = xfer_commit(d, st, b, j->x[i], &j->rescan[i], &j->err[i]);
        int r = j->rc[i];
        if (r == LR_EBADPATH || r == -ELOOP || r == -ENOTDIR || r == -ENAMETOOLONG) {
            lr_store_staging_discard(st, &j->x[i]->key, NULL); /* would never commit */
            forget_older(st, j->x[i]);
        }
    }
    LR_FAILPOINT("commit_before_index");
    if ((rc = lr_store_batch_sync_dirs(b, &j->err[0])) < 0) {
        /* The renames may not survive a crash: do not record them; the next
         * scan finds whatever is on disk. */
        if (tx)
            lr_index_rollback(d->ix);
        for (size_t i = 0; i < j->n; i++)
            if (j->rc[i] == 0)
                j->rc[i] = rc;
    } else if (tx && (rc = lr_index_commit(d->ix, &j->err[0])) < 0) {
        for (size_t i = 0; i < j->n; i++)
            if (j->rc[i] == 0)
                j->rc[i] = rc;
    } else {
        for (size_t i = 0; i < j->n; i++)
            if (j->rc[i] == 0)
                forget_older(st, j->x[i]);
        /* Recorded: nothing left to roll forward. (After a failure the
         * journal stays for the next start, like the sidecars.) */
        if (j->journal)
            lr_store_journal_remove(st, j->journal_id);
        LR_FAILPOINT("commit_after_index");
    }
out:
    lr_store_batch_free(b);
    lr_store_close(st);
    if (j->n)
        lr_debug(MOD, "folder=%s commit: %zu files renamed and recorded in %llu ms",
                 j->x[0]->folder, j->n, (unsigned long long)((uv_hrtime() - t0) / 1000000));
}

static void queue_commits(struct lr_daemon *d);
static void commit_done(struct daemon_job *base, int status);

/* The data is durable (or the barrier failed, reported per file by
 * commit_work): the renames and the index wait their turn on the serial queue. */
static void barrier_done(struct daemon_job *base, int status)
{
    struct lr_daemon *d = base->d;
    if (status != 0 || d->stopping) {
        commit_done(base, status);
        return;
    }
    base->start = NULL;
    base->work = commit_work;
    base->done = commit_done;
    daemon_job_queue(d, base);
}

static void commit_done(struct daemon_job *base, int status)
{
    struct commit_job *j = (struct commit_job *)base;
    struct lr_daemon *d = base->d;
    if (j->n) {
        struct sync_folder *f = sync_folder_get(d, j->x[0]->folder);
        f->commits--;
        f->applied_at = uv_now(&d->loop);
    }
    if (status == 0 && !d->stopping && j->n) {
        char *folder = lr_xstrdup(j->x[0]->folder);
        bool changed = false, rescan = false;
        /* A copy made from local data that failed is made again by the very
         * next round and fails again: it waits for the folder's retry
         * backoff (syncerr.h) instead, or the two would loop. */
        bool retry_now = false, copied = false;
        for (size_t i = 0; i < j->n; i++) {
            struct sync_xfer *x = j->x[i];
            retry_now |= j->rc[i] < 0 && !x->from_local;
            copied |= j->rc[i] == 0 && x->from_local;
            if (j->rc[i] < 0) {
                /* Before xfer_drop: its freed room may start a round at
                 * once (pull_start), which must find this copy here if
                 * no longer in flight. */
                struct sync_twin t;
                if (x->from_local && twin_of(x, &t))
                    folder_failed_twin(sync_folder_get(d, folder), &t);
                log_path("not applied", folder, x->rec.path, x->rec.path_len, j->rc[i], &j->err[i]);
                sync_item_failed(d, folder, x->rec.path, x->rec.path_len, "not applied", j->rc[i],
                                 &j->err[i]);
                if (x->sess)
                    sync_session_end(d, x->sess, SYNC_SESSION_FAILED,
                                     lr_err_msg(&j->err[i], j->rc[i]));
                x->sess = NULL;
            } else {
                if (x->sess)
                    sync_session_end(d, x->sess, SYNC_SESSION_COMPLETE, NULL);
                x->sess = NULL;
                if (x->from_local) /* e.g. a staging file a crash left complete */
                    sync_session_settled(d, folder, (const char *)x->rec.path, &x->rec.blocks_hash);
                char *e = lr_esc(x->rec.path, x->rec.path_len);
                if (x->from_partial)
                    lr_info(MOD,
                            "folder=%s path=%s written (%zu chunks, %zu from peers still "
                            "downloading it)",
                            folder, e, x->rec.nchunks, x->from_partial);
                else
                    lr_debug(MOD, "folder=%s path=%s written (%zu chunks)", folder, e,
                             x->rec.nchunks);
                free(e);
                sync_item_ok(d, folder, x->rec.path, x->rec.path_len);
                changed = true;
            }
            rescan |= j->rescan[i];
            xfer_drop(d, x, NULL);
        }
        if (changed) {
            size_t ok = 0;
            for (size_t i = 0; i < j->n; i++)
                ok += j->rc[i] == 0;
            daemon_event(d, json_pack("{s:s, s:s, s:I}", "type", "files_written", "folder", folder,
                                      "count", (json_int_t)ok));
            sync_local_changed(d, folder);
        }
        struct sync_folder *f = sync_folder_get(d, folder);
        for (size_t i = 0; i < j->n; i++)
            if (j->rc[i] == 0)
                sync_folder_note_written(d, folder, j->x[i]->root, j->x[i]->rec.path,
                                         j->x[i]->rec.path_len, j->x[i]->rec.inode,
                                         j->x[i]->rec.ctime_ns);
        /* Capped like a pull round's: a target that keeps differing from
         * its record (a file the scan cannot read: it is skipped, its
         * record stays) otherwise looped rescan, round, commit, about 150
         * times a second. Past the cap the failure waits for the backoff. */
        if (rescan && f->rescans < PULL_RESCANS_MAX) {
            f->rescans++;
            scanjobs_queue(d, (const char *const *)&folder, 1, NULL, NULL);
        } else if ((changed && (f->nxfers == 0 || (copied && f->twin_held))) || retry_now ||
                   (f->nxfers == 0 && f->commit_untriggered))
            sync_pull_trigger(d, folder); /* what is left, or failed, is decided again */
        else if (changed)
            f->commit_untriggered = true; /* the folder's last batch asks (above) */
        else if (f->nxfers == 0 && !f->pull_running && !f->pull_queued)
            f->stuck = true; /* only copies failed since the last round: they wait for
                                the retry backoff (status: idle) */
        free(folder);
    }
    for (size_t i = 0; i < j->n; i++)
        xfer_unref(j->x[i]);
    free(j->x);
    free(j->rc);
    free(j->rescan);
    free(j->err);
    free(j);
    if (status == 0 && !d->stopping) {
        commitq(d)->busy = false;
        queue_commits(d);
    }
}

static void commit_start(struct daemon_job *base)
{
    struct commit_job *j = (struct commit_job *)base;
    struct sync_commitq *q = commitq(base->d);
    j->journal_id = ++q->journals;
    j->x = lr_xcalloc(q->n + 1, sizeof(*j->x));
    size_t keep = 0;
    for (size_t i = 0; i < q->n; i++) {
        if (j->n < COMMIT_BATCH_MAX && strcmp(q->v[i]->folder, q->v[0]->folder) == 0)
            j->x[j->n++] = q->v[i];
        else
            q->v[keep++] = q->v[i];
    }
    q->n = keep;
    if (j->n) {
        struct sync_folder *f = sync_folder_get(base->d, j->x[0]->folder);
        f->commits++;
        uint64_t now = uv_now(&base->d->loop);
        for (size_t i = 0; i < j->n; i++) /* being written: ours until done says what */
            lr_ownset_note(&f->own, j->x[i]->rec.path, j->x[i]->rec.path_len, 0, 0, now,
                           SYNC_OWN_KEEP_MS);
    }
    j->rc = lr_xcalloc(j->n + 1, sizeof(*j->rc));
    j->rescan = lr_xcalloc(j->n + 1, sizeof(*j->rescan));
    j->err = lr_xcalloc(j->n + 1, sizeof(*j->err));
}

static void queue_commits(struct lr_daemon *d)
{
    struct sync_commitq *q = commitq(d);
    if (q->busy || q->n == 0 || d->stopping)
        return;
    struct commit_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.start = commit_start;
    j->base.work = barrier_work;
    j->base.done = barrier_done;
    q->busy = true;
    daemon_side_queue(d, DAEMON_SIDE_BARRIER, &j->base);
}

static void queue_commit(struct lr_daemon *d, struct sync_xfer *x)
{
    if (x->rec.nchunks > 64) {
        char *e = lr_esc(x->rec.path, x->rec.path_len);
        lr_debug(MOD, "folder=%s path=%s complete (%zu chunks), committing", x->folder, e,
                 x->rec.nchunks);
        free(e);
    }
    struct sync_commitq *q = commitq(d);
    x->committing = true;
    x->refs++;
    q->v = lr_xreallocarray(q->v, q->n + 1, sizeof(*q->v));
    q->v[q->n++] = x;
    queue_commits(d);
}

/* ---- received chunks ---- */

/* Verifies and writes received chunks on the rx side lane: it touches only
 * its items' staging descriptors and its own decompression context. */
struct rx_job {
    struct daemon_job base;
    struct rx_item *v;
    size_t n;
    struct lr_proto_zc *zc;
};

/*
 * A large file's data would otherwise reach the disk only in the commit
 * barrier, after the last chunk: 0.6-0.8 s of syncfs for 1 GiB here, where
 * nothing else moves. So each time a chunk ends in a new window, the disk
 * is asked to start on the window before the previous one (chunks arrive
 * a little out of order; whatever lands later is left to the barrier).
 * Small files are left to the barrier: per-file writeback costs more
 * system calls than it saves.
 */
#define WRITEBACK_MIN_SIZE (32u << 20)
#define WRITEBACK_WINDOW (8u << 20)

static void writeback_behind(const struct sync_xfer *x, const struct lr_chunk *ch)
{
    if (x->rec.size < WRITEBACK_MIN_SIZE)
        return;
    uint64_t end = ch->off + ch->len;
    uint64_t w = end / WRITEBACK_WINDOW;
    if (w == ch->off / WRITEBACK_WINDOW || w < 2)
        return;
    lr_store_staging_writeback(x->fd, (w - 2) * WRITEBACK_WINDOW, WRITEBACK_WINDOW);
}

static void rx_work(struct daemon_job *base)
{
    struct rx_job *j = (struct rx_job *)base;
    uint8_t *buf = lr_xmalloc(LR_PROTO_CHUNK_DATA_MAX);
    for (size_t i = 0; i < j->n; i++) {
        struct rx_item *it = &j->v[i];
        const struct lr_chunk *ch = &it->x->rec.chunks[it->chunk];
        struct lr_proto_chunk c;
        struct lr_hash h;
        const uint8_t *data = NULL;
        it->ok = lr_proto_chunk_decode(it->payload, it->len, &c, NULL) == 0 &&
                 lr_proto_chunk_bytes(j->zc, &c, buf, ch->len, &data, NULL) == 0;
        if (it->ok) {
            lr_sha256(data, ch->len, &h);
            it->ok = memcmp(&h, &ch->hash, sizeof(h)) == 0;
            /* Serving it on later re-checks this instead of a SHA-256
             * (syncserve.c); the loop thread stores it in rx_done. */
            it->weak = it->ok ? lr_weak64(data, ch->len) : 0;
            int w = it->ok ? lr_store_staging_write(it->x->fd, ch->off, data, ch->len, NULL) : 0;
            if (w < 0) {
                it->ok = false;
                it->werr = w;
            } else if (it->ok) {
                writeback_behind(it->x, ch);
            }
            LR_FAILPOINT("rx_after_write");
        }
    }
    free(buf);
}

static void queue_rx(struct lr_daemon *d);

static void rx_done(struct daemon_job *base, int status)
{
    struct rx_job *j = (struct rx_job *)base;
    struct lr_daemon *d = base->d;
    for (size_t i = 0; i < j->n; i++) {
        struct rx_item *it = &j->v[i];
        struct sync_xfer *x = it->x;
        if (status == 0 && !d->stopping && !x->dead && x->xx && it->werr) {
            /* Disk full or failing here: give the file up with that reason
             * (listed in status, retried later: from its staging file,
             * unless the next round's sweep must take that for room). */
            char why[160];
            snprintf(why, sizeof(why), "cannot write its staging file: %s", lr_strerror(it->werr));
            if (it->werr == -ENOSPC || it->werr == -EDQUOT)
                sync_folder_get(d, x->folder)->low_space = true;
            xfer_drop(d, x, why);
        } else if (status == 0 && !d->stopping && !x->dead && x->xx) {
            if (!it->ok) {
                char *e = lr_esc(x->rec.path, x->rec.path_len);
                lr_warn(MOD, "folder=%s path=%s chunk off=%llu failed verification", x->folder, e,
                        (unsigned long long)x->rec.chunks[it->chunk].off);
                free(e);
            }
            lr_xs_written(xsched(d), x->xx, it->chunk, it->ok);
            if (it->ok) {
                x->rec.chunks[it->chunk].weak = it->weak;
                x->have_ver++;
                x->got += x->rec.chunks[it->chunk].len;
            }
            if (x->sess)
                sync_session_chunk(d, x->sess, it->ok, x->rec.chunks[it->chunk].len);
        }
        free(it->payload);
        xfer_unref(x);
    }
    free(j->v);
    if (j->zc) {
        struct sync_state *s = d->sync;
        s->rx_zc = lr_xreallocarray(s->rx_zc, s->nrx_zc + 1, sizeof(*s->rx_zc));
        s->rx_zc[s->nrx_zc++] = j->zc;
    }
    free(j);
    rxq(d)->jobs--;
    if (status == 0 && !d->stopping) {
        queue_rx(d);
        sync_pump(d);
    }
}

static void rx_start(struct daemon_job *base)
{
    struct rx_job *j = (struct rx_job *)base;
    struct sync_state *s = base->d->sync;
    struct sync_pullq *q = rxq(base->d);
    j->v = q->v;
    j->n = q->n;
    q->v = NULL;
    q->n = 0;
    j->zc = s->nrx_zc ? s->rx_zc[--s->nrx_zc] : lr_proto_zc_new();
}

static void queue_rx(struct lr_daemon *d)
{
    struct sync_pullq *q = rxq(d);
    if (q->jobs >= DAEMON_SIDE_RX_MAX || q->n == 0 || d->stopping)
        return;
    struct rx_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.start = rx_start;
    j->base.work = rx_work;
    j->base.done = rx_done;
    q->jobs++;
    daemon_side_queue(d, DAEMON_SIDE_RX, &j->base);
}

void sync_pull_on_have(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len)
{
    struct lr_err err = {0};
    if (!(p->features & LR_FEAT_HAVE)) {
        lr_err_set(&err, LR_EPROTO, "HAVE (%zu bytes) without the HAVE feature in force", len);
        sync_peer_fatal(d, p, "unexpected HAVE", LR_EPROTO, &err);
        return;
    }
    struct lr_proto_have h;
    int rc = lr_proto_have_decode(payload, len, &h, &err);
    if (rc < 0) {
        sync_peer_fatal(d, p, "invalid HAVE", rc, &err);
        return;
    }
    /* Not syncing with that peer, or no transfer of that version (it just
     * completed, was dropped, or we never wanted it): a race, ignored. */
    struct sync_link *l = sync_link_find(d, &p->id, h.folder_id);
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, h.folder_id);
    if (!l || !l->listed || !fc || !lr_folder_shared_with(fc, &p->id) || !d->sync->xs)
        return;
    struct lr_hash tag;
    xfer_tag(h.folder_id, h.path, h.path_len, &h.blocks_hash, &tag);
    struct lr_xs_xfer *xx = lr_xs_find(d->sync->xs, &tag);
    struct sync_xfer *x = xx ? lr_xs_user(xx) : NULL;
    if (!x || x->dead || x->committing || x->rec.path_len != h.path_len ||
        memcmp(x->rec.path, h.path, h.path_len) != 0 || strcmp(x->folder, h.folder_id) != 0 ||
        memcmp(&x->rec.blocks_hash, &h.blocks_hash, LR_HASH_LEN) != 0)
        return;
    if (h.nchunks != x->rec.nchunks) {
        /* The blocks hash names the chunk list, so its length too. */
        char *e = lr_esc(h.path, h.path_len);
        lr_err_set(&err, LR_EPROTO, "HAVE for %s declares %llu chunks, the version has %zu", e,
                   (unsigned long long)h.nchunks, x->rec.nchunks);
        free(e);
        sync_peer_fatal(d, p, "invalid HAVE", LR_EPROTO, &err);
        return;
    }
    uint8_t *bits = lr_xcalloc((x->rec.nchunks + 7) / 8 + 1, 1);
    struct lr_proto_have_it it;
    uint64_t first, count;
    lr_proto_have_iter(&h, &it);
    while (lr_proto_have_next(&h, &it, &first, &count))
        for (uint64_t k = first; k < first + count; k++)
            bits[k >> 3] = (uint8_t)(bits[k >> 3] | (1u << (k & 7)));
    size_t learned = lr_xs_have(d->sync->xs, xx, &p->id, bits);
    free(bits);
    if (learned) {
        char id[LR_DEVICE_ID_SHORTLEN + 1];
        lr_device_id_short(&p->id, id);
        char *e = lr_esc(h.path, h.path_len);
        lr_debug(MOD, "peer=%s folder=%s path=%s HAVE: %zu new of %llu held, %zu chunks", id,
                 h.folder_id, e, learned, (unsigned long long)h.nheld, x->rec.nchunks);
        free(e);
        sync_pump(d);
    }
}

void sync_pull_on_chunk(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                        size_t len)
{
    struct lr_proto_chunk c;
    struct lr_err err = {0};
    int rc = lr_proto_chunk_decode(payload, len, &c, &err);
    if (rc < 0) {
        sync_peer_fatal(d, p, "invalid CHUNK", rc, &err);
        return;
    }
    lr_trace(MOD, "CHUNK req=%llu status=%llu len=%zu", (unsigned long long)c.req_id,
             (unsigned long long)c.status, c.data_len);
    enum lr_xs_answer ans = c.status == LR_PROTO_CHUNK_OK     ? LR_XS_ANS_OK
                            : c.status == LR_PROTO_CHUNK_BUSY ? LR_XS_ANS_BUSY
                                                              : LR_XS_ANS_REFUSED;
    struct lr_xs_xfer *xx;
    size_t chunk;
    if (lr_xs_answer(xsched(d), &p->id, c.req_id, ans, &xx, &chunk) < 0) {
        lr_err_set(&err, LR_EPROTO, "CHUNK answers request %llu, which is not outstanding",
                   (unsigned long long)c.req_id);
        sync_peer_fatal(d, p, "unexpected CHUNK", LR_EPROTO, &err);
        return;
    }
    struct sync_xfer *x = xx ? lr_xs_user(xx) : NULL;
    if (x && ans == LR_XS_ANS_OK && x->sess)
        sync_session_served(x->sess, &p->id);
    if (x && ans == LR_XS_ANS_OK) {
        /* Verified and written on the rx lane; the scheduler hears of it then. */
        struct sync_pullq *q = rxq(d);
        q->v = lr_xreallocarray(q->v, q->n + 1, sizeof(*q->v));
        struct rx_item *it = &q->v[q->n++];
        memset(it, 0, sizeof(*it));
        it->x = x;
        it->chunk = chunk;
        /* The transport's buffer is kept rather than copied (every
         * received byte of chunk data went through one more memcpy). */
        it->payload = lr_conn_take_payload(p->conn, payload);
        if (!it->payload) {
            it->payload = lr_xmalloc(len ? len : 1);
            if (len)
                memcpy(it->payload, payload, len);
        }
        it->len = len;
        x->refs++;
        queue_rx(d);
    }
    sync_pump(d);
}

/* ---- carrying out the scheduler's actions ---- */

static void send_want(struct lr_daemon *d, const struct lr_xs_act *a)
{
    struct sync_xfer *x = lr_xs_user(a->x);
    struct sync_peer *p = sync_peer_get(d, a->peer);
    const struct lr_chunk *ch = &x->rec.chunks[a->chunk];
    struct lr_proto_want w;
    memset(&w, 0, sizeof(w));
    w.req_id = a->req_id;
    snprintf(w.folder_id, sizeof(w.folder_id), "%s", x->folder);
    w.path = x->rec.path;
    w.path_len = x->rec.path_len;
    w.blocks_hash = x->rec.blocks_hash;
    w.offset = ch->off;
    w.size = ch->len;
    w.hash = ch->hash;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_WANT_MAX);
    if (lr_proto_want_encode(&w, &b) < 0) {
        /* Only an invalid record can cause this; the request is answered
         * locally as refused so the scheduler's window stays true. */
        lr_buf_release(&b);
        struct lr_xs_xfer *xx;
        size_t k;
        lr_xs_answer(xsched(d), &p->id, a->req_id, LR_XS_ANS_REFUSED, &xx, &k);
        xfer_drop(d, x, "cannot encode WANT");
        return;
    }
    size_t len;
    uint8_t *pl = lr_buf_detach(&b, &len);
    lr_buf_release(&b);
    sync_send(d, p, LR_STREAM_LIGHT, LR_MSG_WANT, pl, len);
}

/* ---- announcing progress (HAVE) ---- */

static struct have_sent *sent_entry(struct sync_xfer *x, const struct lr_device_id *peer)
{
    for (size_t i = 0; i < x->nsent; i++)
        if (lr_device_id_eq(&x->sent[i].peer, peer))
            return &x->sent[i];
    x->sent = lr_xreallocarray(x->sent, x->nsent + 1, sizeof(*x->sent));
    struct have_sent *e = &x->sent[x->nsent++];
    memset(e, 0, sizeof(*e));
    e->peer = *peer;
    e->ver = UINT64_MAX; /* never sent */
    return e;
}

struct have_out {
    struct sync_peer *p;
    uint8_t *pl;
    size_t len;
};

/* Encode x's progress for p into *o; false if it could not be encoded. */
static bool have_build(struct sync_peer *p, struct sync_xfer *x, const uint8_t *bits,
                       struct have_out *o)
{
    struct lr_proto_have h;
    memset(&h, 0, sizeof(h));
    snprintf(h.folder_id, sizeof(h.folder_id), "%s", x->folder);
    h.path = x->rec.path;
    h.path_len = x->rec.path_len;
    h.blocks_hash = x->rec.blocks_hash;
    h.nchunks = x->rec.nchunks;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HAVE_MAX);
    uint64_t nsent = 0;
    if (lr_proto_have_encode(&h, bits, &b, &nsent) < 0) {
        lr_buf_release(&b); /* a path too long to leave room: not announced */
        return false;
    }
    o->p = p;
    o->pl = lr_buf_detach(&b, &o->len);
    lr_buf_release(&b);
    char id[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(&p->id, id);
    lr_trace(MOD, "peer=%s folder=%s HAVE %llu of %zu chunks (%zu bytes)", id, x->folder,
             (unsigned long long)nsent, x->rec.nchunks, o->len);
    return true;
}

/*
 * Every HAVE_EVERY_MS: each transfer that holds some chunks and is not
 * complete tells each connected peer syncing its folder with the HAVE
 * feature what it holds, if that changed since it last told that peer on
 * this connection and FOLDERS epoch; peers whose index holds the version
 * (they need nothing from us) are skipped.
 */
static void have_tick(uv_timer_t *t)
{
    struct lr_daemon *d = t->data;
    struct sync_state *s = d->sync;
    if (d->stopping || !s)
        return;
    if (!s->xfers) {
        uv_timer_stop(t);
        return;
    }
    bool any_peer = false;
    for (struct sync_peer *p = s->peers; p && !any_peer; p = p->next)
        any_peer = p->conn && (p->features & LR_FEAT_HAVE);
    if (!any_peer)
        return;
    /* Built first, sent after the walk: a send may close a connection and
     * reach back into the scheduler, dropping transfers of this list. */
    struct have_out *out = lr_xcalloc(HAVE_PER_TICK, sizeof(*out));
    size_t nout = 0;
    unsigned budget = HAVE_PER_TICK;
    uint8_t *bits = NULL;
    size_t bits_cap = 0;
    for (struct sync_xfer *x = s->xfers; x && budget; x = x->next) {
        if (x->dead || !x->xx || x->committing)
            continue;
        size_t ndone = lr_xs_ndone(x->xx);
        if (ndone == 0 || ndone >= x->rec.nchunks)
            continue;
        bool have_bits = false;
        for (struct sync_peer *p = s->peers; p && budget; p = p->next) {
            if (!p->conn || !(p->features & LR_FEAT_HAVE) || p->q_bytes > HAVE_QUEUE_MAX)
                continue;
            struct sync_link *l = sync_link_find(d, &p->id, x->folder);
            if (!l || !l->listed || lr_xs_holder_of(s->xs, x->xx, &p->id) == LR_XS_HOLDER_FULL)
                continue;
            struct have_sent *e = sent_entry(x, &p->id);
            if (e->gen == p->gen && e->epoch == l->epoch && e->ver == x->have_ver)
                continue;
            if (!have_bits) {
                size_t nb = (x->rec.nchunks + 7) / 8;
                if (nb > bits_cap) {
                    free(bits);
                    bits = lr_xmalloc(nb);
                    bits_cap = nb;
                }
                lr_xs_done_bits(x->xx, bits);
                have_bits = true;
            }
            e->gen = p->gen;
            e->epoch = l->epoch;
            e->ver = x->have_ver;
            if (have_build(p, x, bits, &out[nout])) {
                nout++;
                budget--;
            }
        }
    }
    free(bits);
    for (size_t i = 0; i < nout; i++)
        sync_send(d, out[i].p, LR_STREAM_BULK, LR_MSG_HAVE, out[i].pl, out[i].len);
    free(out);
}

/* ---- serving WANTs from staging (called by syncserve.c) ---- */

/*
 * A WANT for a version we are still downloading: a reference to its
 * transfer if chunk (off, size, hash) of it is verified and written in the
 * staging file, else NULL. The staging descriptor stays open while the
 * reference is held; the caller reads it on the serve lane and hashes what
 * it read before sending (the file is written by other jobs meanwhile, at
 * other offsets only).
 */
struct sync_xfer *sync_pull_staging_ref(struct lr_daemon *d, const char *folder,
                                        const uint8_t *path, size_t path_len,
                                        const struct lr_hash *blocks_hash, uint64_t off,
                                        uint32_t size, const struct lr_hash *hash)
{
    if (!d->sync->xs || sync_folder_get(d, folder)->nxfers == 0)
        return NULL;
    struct lr_hash tag;
    xfer_tag(folder, path, path_len, blocks_hash, &tag);
    struct lr_xs_xfer *xx = lr_xs_find(d->sync->xs, &tag);
    struct sync_xfer *x = xx ? lr_xs_user(xx) : NULL;
    if (!x || x->dead || x->fd < 0 || x->rec.path_len != path_len ||
        memcmp(x->rec.path, path, path_len) != 0 || strcmp(x->folder, folder) != 0 ||
        memcmp(&x->rec.blocks_hash, blocks_hash, LR_HASH_LEN) != 0)
        return NULL;
    size_t lo = 0, hi = x->rec.nchunks;
    while (lo < hi) { /* chunks are in offset order */
        size_t mid = lo + (hi - lo) / 2;
        if (x->rec.chunks[mid].off < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= x->rec.nchunks || x->rec.chunks[lo].off != off || x->rec.chunks[lo].len != size ||
        memcmp(&x->rec.chunks[lo].hash, hash, LR_HASH_LEN) != 0 ||
        lr_xs_state(xx, lo) != LR_XS_DONE)
        return NULL;
    x->refs++;
    return x;
}

int sync_pull_staging_fd(const struct sync_xfer *x)
{
    return x->fd;
}

void sync_pull_staging_unref(struct sync_xfer *x)
{
    if (x)
        xfer_unref(x);
}

#define PUMP_ACTS 64

void sync_pump(struct lr_daemon *d)
{
    struct sync_state *s = d->sync;
    if (d->stopping)
        return;
    if (s->pumping) {
        /* A send reached back here (a connection closing): the outer call
         * goes round again. */
        s->pump_again = true;
        return;
    }
    s->pumping = true;
    struct lr_xs_act a[PUMP_ACTS];
    size_t n;
    do {
        s->pump_again = false;
        while ((n = lr_xs_pump(xsched(d), a, PUMP_ACTS)) > 0 && !d->stopping) {
            for (size_t i = 0; i < n; i++) {
                struct sync_xfer *x = lr_xs_user(a[i].x);
                switch (a[i].kind) {
                case LR_XS_WANT:
                    if (!x->dead)
                        send_want(d, &a[i]);
                    break;
                case LR_XS_COMPLETE:
                    /* It stays registered (reported, never scheduled
                     * again) until the commit is done: a WANT for it is
                     * still served from its staging file meanwhile, and
                     * xfer_drop removes it. */
                    x->from_partial = lr_xs_nfrom_partial(x->xx);
                    queue_commit(d, x);
                    break;
                case LR_XS_DROP:
                default:
                    xfer_drop(d, x, a[i].why);
                    break;
                }
            }
        }
    } while (s->pump_again && !d->stopping);
    s->pumping = false;
}

void sync_pull_peer_up(struct lr_daemon *d, struct sync_peer *p)
{
    lr_xs_peer_up(xsched(d), &p->id);
    sync_pump(d);
}

/* The grace for peers that left is over: what only they could serve is
 * dropped (and retried by the puller with backoff, or resumed later). */
static void grace_over(uv_timer_t *h)
{
    struct lr_daemon *d = h->data;
    if (d->stopping || !d->sync || !d->sync->xs)
        return;
    for (struct sync_peer *p = d->sync->peers; p; p = p->next)
        if (!p->conn)
            lr_xs_peer_gone(d->sync->xs, &p->id);
    sync_pump(d);
}

void sync_pull_peer_down(struct lr_daemon *d, struct sync_peer *p)
{
    lr_xs_peer_down(xsched(d), &p->id);
    struct sync_pullq *q = rxq(d);
    if (!q->have_closed && !d->stopping)
        uv_timer_start(&q->grace_timer, grace_over, PEER_GRACE_MS, 0);
    sync_pump(d);
}

/*
 * Job: empty the staging area of a folder removed while it had transfers
 * under way. Their staging files stayed in .landropic/tmp (an 80 MiB one
 * in black-box round 28) until the folder was added again, and for good if
 * it never was. Serial lane: queued after any commit of the folder that was
 * already running, and before anything of a folder added again under that
 * path (which starts by emptying it anyway). Staging files still open in an
 * rx job are unlinked under it, which that job does not notice.
 */
struct unstage_job {
    struct daemon_job base;
    char *folder, *root;
};

static void unstage_work(struct daemon_job *base)
{
    struct unstage_job *j = (struct unstage_job *)base;
    struct lr_store *st;
    struct lr_err err = {0};
    uint64_t removed = 0;
    if (lr_store_open(j->root, &st, &err) < 0) {
        lr_debug(MOD, "folder=%s (removed) staging not emptied: %s", j->folder, err.msg);
        return;
    }
    if (lr_store_staging_gc(st, 0, &removed, &err) < 0)
        lr_warn(MOD, "folder=%s (removed) staging cleanup: %s", j->folder, err.msg);
    else if (removed)
        lr_info(MOD, "folder=%s (removed): %llu staging entries of its transfers removed",
                j->folder, (unsigned long long)removed);
    lr_store_close(st);
}

static void unstage_done(struct daemon_job *base, int status)
{
    (void)status;
    struct unstage_job *j = (struct unstage_job *)base;
    free(j->folder);
    free(j->root);
    free(j);
}

static void queue_unstage(struct lr_daemon *d, const char *folder, const char *root)
{
    struct unstage_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = unstage_work;
    j->base.done = unstage_done;
    j->folder = lr_xstrdup(folder);
    j->root = lr_xstrdup(root);
    daemon_job_queue(d, &j->base);
}

void sync_pull_config_changed(struct lr_daemon *d)
{
    /* A removed peer is not waited for (PEER_GRACE_MS is for a restart):
     * what only it could serve is dropped at the next pump, so the folder
     * does not stay "syncing" with transfers in flight for 10 s more. */
    bool gone = false;
    for (struct sync_peer *p = d->sync->peers; p; p = p->next) {
        if (!p->conn && d->sync->xs && !lr_config_find_peer(d->cfg, &p->id)) {
            lr_xs_peer_gone(d->sync->xs, &p->id);
            gone = true;
        }
    }
    struct sync_xfer *next;
    /* Each removed folder's staging is emptied once, after its drops. */
    char *unstage[8];
    size_t nunstage = 0;
    for (struct sync_xfer *x = d->sync->xfers; x; x = next) {
        next = x->next;
        if (x->committing || lr_config_find_folder(d->cfg, x->folder))
            continue;
        bool listed = false;
        for (size_t i = 0; i < nunstage && !listed; i++)
            listed = strcmp(unstage[i], x->folder) == 0;
        if (!listed && nunstage < sizeof(unstage) / sizeof(unstage[0])) {
            queue_unstage(d, x->folder, x->root);
            unstage[nunstage++] = lr_xstrdup(x->folder);
        }
        xfer_drop(d, x, "folder removed");
    }
    for (size_t i = 0; i < nunstage; i++)
        free(unstage[i]);
    sync_sessions_config_changed(d);
    if (gone)
        sync_pump(d);
}

void sync_pull_free(struct lr_daemon *d)
{
    struct sync_state *s = d->sync;
    while (s->xfers)
        xfer_drop(d, s->xfers, NULL);
    lr_xs_free(s->xs);
    s->xs = NULL;
    if (s->cq) {
        for (size_t i = 0; i < s->cq->n; i++)
            xfer_unref(s->cq->v[i]);
        free(s->cq->v);
        free(s->cq);
        s->cq = NULL;
    }
    if (s->rx) {
        struct sync_pullq *q = s->rx;
        for (size_t i = 0; i < q->n; i++) {
            free(q->v[i].payload);
            xfer_unref(q->v[i].x);
        }
        free(q->v);
        free(q);
        s->rx = NULL;
    }
}
