/*
 * sync.c - the sync driver's peer and folder state, the FOLDERS exchange,
 * the index sender and receiver (docs/protocol.md §6.4-6.6), and status.
 * See sync.h for the threading rules and docs/internals/sync.md ("Driver").
 */
#include "daemon/syncint.h"
#include "daemon/sessions.h"
#include "daemon/modes.h"

#include "sync/decide.h"
#include "sync/delta.h"
#include "sync/summary.h"

#include "util/log.h"
#include "util/str.h"
#include "util/timens.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MOD "sync"

/* ---- state lookup ---- */

struct sync_peer *sync_peer_get(struct lr_daemon *d, const struct lr_device_id *id)
{
    for (struct sync_peer *p = d->sync->peers; p; p = p->next)
        if (lr_device_id_eq(&p->id, id))
            return p;
    struct sync_peer *p = lr_xcalloc(1, sizeof(*p));
    p->id = *id;
    p->next = d->sync->peers;
    d->sync->peers = p;
    return p;
}

struct lr_conn *sync_peer_conn(struct lr_daemon *d, const struct lr_device_id *id)
{
    for (const struct sync_peer *p = d->sync->peers; p; p = p->next)
        if (lr_device_id_eq(&p->id, id))
            return p->conn;
    return NULL;
}

static int folder_id_cmp(const void *key, const void *e)
{
    return strcmp(key, ((const struct lr_proto_folder *)e)->id);
}

/* Their latest FOLDERS entry for the folder, or NULL (the decoder checked
 * that the IDs are strictly increasing, so the list is sorted). */
static const struct lr_proto_folder *their_folder(const struct sync_peer *p, const char *folder_id)
{
    if (!p->theirs.n)
        return NULL;
    return bsearch(folder_id, p->theirs.v, p->theirs.n, sizeof(*p->theirs.v), folder_id_cmp);
}

/* An entry listed only to say the folder does not sync (options 6, 7, 9). */
static bool inert(const struct lr_proto_folder *e)
{
    return e->stopped || e->unshared || e->removed;
}

/* Their FOLDERS offers a folder we do not have (an offer: not inert). We
 * tell them it was removed here (option 9) if our index of it still exists
 * (folders_work looks): then it is one we had. */
static bool offered_not_ours(struct lr_daemon *d, const struct sync_peer *p,
                             const struct lr_proto_folder *e)
{
    return (p->features & LR_FEAT_FOLDER_REMOVED) && p->have_folders && !inert(e) &&
           !lr_config_find_folder(d->cfg, e->id);
}

static uint64_t fp_mix(uint64_t h, uint64_t v)
{
    /* FNV-1a over the value's bytes: distinct states collide only by chance. */
    for (int i = 0; i < 8; i++, v >>= 8)
        h = (h ^ (v & 0xff)) * 1099511628211ull;
    return h;
}

struct sync_folder *sync_folder_get(struct lr_daemon *d, const char *id)
{
    for (struct sync_folder *f = d->sync->folders; f; f = f->next)
        if (strcmp(f->id, id) == 0)
            return f;
    struct sync_folder *f = lr_xcalloc(1, sizeof(*f));
    f->id = lr_xstrdup(id);
    f->next = d->sync->folders;
    d->sync->folders = f;
    return f;
}

struct sync_link *sync_link_find(struct lr_daemon *d, const struct lr_device_id *peer,
                                 const char *folder)
{
    for (struct sync_link *l = d->sync->links; l; l = l->next)
        if (lr_device_id_eq(&l->peer, peer) && strcmp(l->folder, folder) == 0)
            return l;
    return NULL;
}

static struct sync_link *link_get(struct lr_daemon *d, const struct lr_device_id *peer,
                                  const char *folder)
{
    struct sync_link *l = sync_link_find(d, peer, folder);
    if (l)
        return l;
    l = lr_xcalloc(1, sizeof(*l));
    l->peer = *peer;
    l->folder = lr_xstrdup(folder);
    l->next = d->sync->links;
    d->sync->links = l;
    return l;
}

/* A folder we may announce and apply into: configured, not in error. */
bool sync_folder_usable(struct lr_daemon *d, const char *folder)
{
    struct folder_rt *f = daemon_folder(d, folder);
    return f && f->bound && f->state != FOLDER_ERROR && lr_config_find_folder(d->cfg, folder);
}

static bool syncing(struct lr_daemon *d, const struct lr_device_id *peer, const char *folder)
{
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder);
    return fc && lr_folder_shared_with(fc, peer) && sync_folder_usable(d, folder);
}

/* ---- sending ---- */

static void frame_free(struct sync_frame *f)
{
    free(f->p);
    free(f);
}

static void queue_clear(struct sync_peer *p)
{
    struct sync_frame *lists[2] = {p->c_head, p->q_head};
    for (int i = 0; i < 2; i++) {
        while (lists[i]) {
            struct sync_frame *f = lists[i];
            lists[i] = f->next;
            frame_free(f);
        }
    }
    p->c_head = p->c_tail = p->q_head = p->q_tail = NULL;
    p->q_bytes = p->c_bytes = 0;
}

void sync_flush(struct lr_daemon *d, struct sync_peer *p)
{
    (void)d;
    while ((p->c_head || p->q_head) && p->conn) {
        bool ctl = p->c_head != NULL;
        struct sync_frame **head = ctl ? &p->c_head : &p->q_head;
        struct sync_frame **tail = ctl ? &p->c_tail : &p->q_tail;
        /* Off the queue before the send: the send may end the connection,
         * and sync_peer_down, called from inside it, clears the queue. */
        struct sync_frame *f = *head;
        *head = f->next;
        if (!*head)
            *tail = NULL;
        f->next = NULL;
        p->q_bytes -= f->len;
        if (ctl)
            p->c_bytes -= f->len;
        int rc = lr_conn_send_owned(p->conn, f->cls, f->type, f->p, f->len, NULL);
        if (rc == LR_EBUSY) { /* refused before anything ran: back at the head */
            f->next = *head;
            *head = f;
            if (!*tail)
                *tail = f;
            p->q_bytes += f->len;
            if (ctl)
                p->c_bytes += f->len;
            lr_trace(MOD, "send queue full: %zu bytes wait", p->q_bytes);
            return;
        }
        if (rc < 0) {
            char id[LR_DEVICE_ID_SHORTLEN + 1];
            lr_device_id_short(&p->id, id);
            lr_warn(MOD, "peer=%s cannot send %s: %s", id, lr_proto_type_name(f->type),
                    lr_strerror(rc));
            frame_free(f);
            continue;
        }
        free(f); /* the payload now belongs to the transport */
    }
}

void sync_send(struct lr_daemon *d, struct sync_peer *p, enum lr_stream_class cls, uint64_t type,
               uint8_t *payload, size_t len)
{
    if (!p->conn) {
        free(payload);
        return;
    }
    struct sync_frame *f = lr_xcalloc(1, sizeof(*f));
    f->cls = cls;
    f->type = type;
    f->p = payload;
    f->len = len;
    /* Light frames (requests) share the control queue: flushed before bulk. */
    bool ctl = cls != LR_STREAM_BULK;
    struct sync_frame **head = ctl ? &p->c_head : &p->q_head;
    struct sync_frame **tail = ctl ? &p->c_tail : &p->q_tail;
    if (*tail)
        (*tail)->next = f;
    else
        *head = f;
    *tail = f;
    p->q_bytes += len;
    if (ctl)
        p->c_bytes += len;
    sync_flush(d, p);
}

void sync_peer_fatal(struct lr_daemon *d, struct sync_peer *p, const char *what, int rc,
                     const struct lr_err *err)
{
    char id[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(&p->id, id);
    lr_warn(MOD, "peer=%s %s: %s; closing the connection", id, what, lr_err_msg(err, rc));
    if (p->conn) {
        p->closed_ms = uv_now(&d->loop);
        lr_conn_close_app(p->conn, LR_TRANSPORT_APP_PROTO, what);
    }
}

/* ---- FOLDERS ---- */

struct folders_job {
    struct daemon_job base;
    struct lr_device_id peer;
    uint64_t gen;
    char **ids;
    uint32_t *modes;
    struct lr_sync_strategy *strats; /* announced in option 3 (docs/conflicts.md) */
    uint64_t *list_upto;             /* option 4 (§6.5, §6.6); 0: none */
    bool *scanning;                  /* option 5 */
    bool *stopped;                   /* option 6 */
    bool *unshared;                  /* option 7 */
    bool *removed;                   /* option 9: listed only if our index of it exists */
    size_t n;
    bool side;    /* on the serve lane: read only; a missing folder index */
    bool missing; /* sends the job to the serial queue, which creates it */
    uint8_t *out;
    size_t out_len;
    int rc;
    struct lr_err err;
};

static void folders_work(struct daemon_job *base)
{
    struct folders_job *j = (struct folders_job *)base;
    struct lr_daemon *d = base->d;
    struct lr_index *ix = j->side ? sync_side_ix(d, &j->err) : d->ix;
    if (!ix) {
        j->rc = LR_EDB;
        return;
    }
    struct lr_proto_folder *v = lr_xcalloc(j->n ? j->n : 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < j->n && !j->missing; i++) {
        struct lr_folder_info info;
        struct lr_remote_state rs;
        struct lr_err e = {0};
        int rc = j->side || j->removed[i]
                     ? lr_index_folder_get(ix, j->ids[i], &info, &e)
                     : lr_index_folder_ensure(ix, j->ids[i], d->short_id, &info, &e);
        if (rc == LR_ENOTFOUND && j->removed[i])
            continue; /* never had it: not ours to speak of */
        if (rc == LR_ENOTFOUND && j->side) {
            j->missing = true;
            break;
        }
        if (rc < 0 || lr_index_remote_state(ix, j->ids[i], &j->peer, &rs, &e) < 0) {
            lr_warn(MOD, "folder=%s not announced: %s", j->ids[i], e.msg);
            continue;
        }
        if (j->removed[i] && !rs.index_id)
            continue; /* never synced with them: they hold nothing of ours to forget */
        struct lr_proto_folder *f = &v[n++];
        snprintf(f->id, sizeof(f->id), "%s", j->ids[i]);
        f->index_id = info.index_id;
        f->max_seq = info.max_seq;
        /* A full index still arriving is not a base for increments. */
        if (rs.index_id && !rs.full_pending) {
            f->peer_index_id = rs.index_id;
            f->peer_seq = rs.max_seq;
            if (rs.check_seq && rs.check_seq <= rs.max_seq) {
                f->peer_check_seq = rs.check_seq;
                memcpy(f->peer_check, rs.check, sizeof(f->peer_check));
                memcpy(f->peer_check_path, rs.check_path, rs.check_path_len + 1);
                f->peer_check_path_len = rs.check_path_len;
            }
        }
        f->mode = j->modes[i];
        f->list_upto = j->list_upto[i];
        f->scanning = j->scanning[i];
        f->stopped = j->stopped[i];
        f->unshared = j->unshared[i];
        f->removed = j->removed[i];
        lr_sync_strategy_to_proto(&j->strats[i], f);
    }
    if (j->missing) {
        free(v);
        return;
    }
    lr_proto_folders_sort(v, n);
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    j->rc = lr_proto_folders_encode(v, n, &b);
    if (j->rc == 0)
        j->out = lr_buf_detach(&b, &j->out_len);
    else
        lr_err_set(&j->err, j->rc, "cannot encode FOLDERS");
    lr_buf_release(&b);
    free(v);
}

#define queue_sender sync_queue_sender

static void folders_done(struct daemon_job *base, int status)
{
    struct folders_job *j = (struct folders_job *)base;
    struct lr_daemon *d = base->d;
    if (status == 0 && !d->stopping && j->missing) {
        /* A folder has no index yet: the serial queue creates it. */
        j->side = false;
        j->missing = false;
        daemon_job_queue(d, &j->base);
        return;
    }
    if (status == 0 && !d->stopping) {
        struct sync_peer *p = sync_peer_get(d, &j->peer);
        if (j->rc < 0) {
            lr_warn(MOD, "%s", lr_err_msg(&j->err, j->rc));
        } else if (p->gen == j->gen && p->conn) {
            sync_send(d, p, LR_STREAM_CONTROL, LR_MSG_FOLDERS, j->out, j->out_len);
            j->out = NULL;
        }
        if (p->gen == j->gen && p->folders_pending > 0 && --p->folders_pending == 0) {
            /* Bursts that waited for it go now, behind it on the stream. */
            for (struct sync_link *l = d->sync->links; l; l = l->next)
                if (l->send_waiting && l->listed && lr_device_id_eq(&l->peer, &p->id))
                    queue_sender(d, l);
        }
    }
    for (size_t i = 0; i < j->n; i++)
        free(j->ids[i]);
    free(j->ids);
    free(j->modes);
    free(j->strats);
    free(j->list_upto);
    free(j->scanning);
    free(j->stopped);
    free(j->unshared);
    free(j->removed);
    free(j->out);
    free(j);
}

/*
 * Option 5: a peer that lists the folder right after we start would
 * otherwise see our index exchange end (LAST) before our first scan has
 * announced anything, and its sync --wait would return with nothing.
 */
static bool announce_scanning(struct lr_daemon *d, const struct lr_device_id *peer,
                              const char *folder)
{
    struct folder_rt *rt = daemon_folder(d, folder);
    struct sync_link *l = link_get(d, peer, folder);
    l->told_scanning = !rt || !rt->scanned || l->untell_scanning;
    return l->told_scanning;
}

static uint32_t proto_mode(enum lr_folder_mode m)
{
    switch (m) {
    case LR_MODE_SEND_ONLY:
        return LR_PROTO_MODE_SEND_ONLY;
    case LR_MODE_RECEIVE_ONLY:
        return LR_PROTO_MODE_RECEIVE_ONLY;
    case LR_MODE_SEND_RECEIVE:
    default:
        return LR_PROTO_MODE_SEND_RECEIVE;
    }
}

/* Shared with the peer, which is told so (option 6), but in error here. */
static bool stopped_here(struct lr_daemon *d, const struct sync_peer *p,
                         const struct lr_folder_cfg *fc)
{
    const struct folder_rt *rt = daemon_folder(d, fc->id);
    return (p->features & LR_FEAT_FOLDER_STOPPED) && lr_folder_shared_with(fc, &p->id) && rt &&
           rt->bound && rt->state == FOLDER_ERROR;
}

/* Their FOLDERS offers a folder we have and have not shared with them
 * (told so, option 7; an offer is an entry not itself "unshared"). */
static bool unshared_here(struct lr_daemon *d, const struct sync_peer *p,
                          const struct lr_folder_cfg *fc)
{
    const struct folder_rt *rt = daemon_folder(d, fc->id);
    if (!(p->features & LR_FEAT_FOLDER_STOPPED) || !p->have_folders ||
        lr_folder_shared_with(fc, &p->id) || !rt || !rt->bound)
        return false;
    const struct lr_proto_folder *e = their_folder(p, fc->id);
    return e && !inert(e);
}

static uint64_t mix_id(uint64_t h, const char *id)
{
    for (const char *c = id;; c++) {
        h = fp_mix(h, (uint8_t)*c);
        if (!*c)
            return h;
    }
}

/* The folders we list as unshared (option 7) or removed (option 9). */
static uint64_t unshared_sig(struct lr_daemon *d, const struct sync_peer *p)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < d->cfg->nfolders; i++)
        if (unshared_here(d, p, &d->cfg->folders[i]))
            h = mix_id(h, d->cfg->folders[i].id);
    h = fp_mix(h, 9);
    for (size_t i = 0; i < p->theirs.n; i++)
        if (offered_not_ours(d, p, &p->theirs.v[i]))
            h = mix_id(h, p->theirs.v[i].id);
    return h;
}

static void send_folders(struct lr_daemon *d, struct sync_peer *p)
{
    if (!p->conn || d->stopping)
        return;
    struct folders_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = folders_work;
    j->base.done = folders_done;
    j->peer = p->id;
    j->gen = p->gen;
    size_t cap = d->cfg->nfolders + p->theirs.n + 1;
    j->ids = lr_xcalloc(cap, sizeof(*j->ids));
    j->modes = lr_xcalloc(cap, sizeof(*j->modes));
    j->strats = lr_xcalloc(cap, sizeof(*j->strats));
    j->list_upto = lr_xcalloc(cap, sizeof(*j->list_upto));
    j->scanning = lr_xcalloc(cap, sizeof(*j->scanning));
    j->stopped = lr_xcalloc(cap, sizeof(*j->stopped));
    j->unshared = lr_xcalloc(cap, sizeof(*j->unshared));
    j->removed = lr_xcalloc(cap, sizeof(*j->removed));
    p->unshared_sig = unshared_sig(d, p);
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const struct lr_folder_cfg *fc = &d->cfg->folders[i];
        if (j->n >= LR_PROTO_FOLDERS_ENTRIES_MAX)
            break;
        if (!syncing(d, &p->id, fc->id)) {
            /* In error here, or offered by them and not shared back: listed
             * so, or the peer takes the folder for one we do not have and
             * calls itself in sync. */
            if (stopped_here(d, p, fc))
                j->stopped[j->n] = true;
            else if (unshared_here(d, p, fc))
                j->unshared[j->n] = true;
            else
                continue;
        } else {
            /* A delta of theirs we could not decode: lists up to it, in the
             * index it came from (their_index_id is kept across reconnects). */
            const struct sync_link *l = sync_link_find(d, &p->id, fc->id);
            if (l && l->list_upto && l->list_upto_index == l->their_index_id &&
                (p->features & LR_FEAT_INDEX_DELTA))
                j->list_upto[j->n] = l->list_upto;
            j->scanning[j->n] = announce_scanning(d, &p->id, fc->id);
        }
        j->modes[j->n] = proto_mode(fc->mode);
        if (lr_sync_strategy_parse(fc->conflict, fc->conflict_window, &j->strats[j->n], NULL) < 0)
            memset(&j->strats[j->n], 0, sizeof(j->strats[0])); /* validated by config */
        j->ids[j->n++] = lr_xstrdup(fc->id);
    }
    /* Folders they offer that we removed: told so, or they keep waiting for
     * what only our index of it had (their sessions "interrupted: no peer
     * can serve it" for good). The strategy stays keep-both (zeroed). */
    for (size_t i = 0; i < p->theirs.n && j->n < LR_PROTO_FOLDERS_ENTRIES_MAX; i++) {
        if (!offered_not_ours(d, p, &p->theirs.v[i]))
            continue;
        j->removed[j->n] = true;
        j->modes[j->n] = LR_PROTO_MODE_SEND_RECEIVE;
        j->ids[j->n++] = lr_xstrdup(p->theirs.v[i].id);
    }
    /* Beside the serial queue, so a first scan of a large folder does not
     * hold back the exchange (its batches are announced as committed). */
    j->side = true;
    p->folders_pending++;
    daemon_side_queue(d, DAEMON_SIDE_SERVE, &j->base);
}

struct lr_index *sync_side_ix(struct lr_daemon *d, struct lr_err *err)
{
    struct sync_state *s = d->sync;
    if (!s->serve_ix) {
        char *db = lr_xasprintf("%s/index.db", d->opts->home);
        int rc = lr_index_open(db, &s->serve_ix, err);
        free(db);
        if (rc < 0)
            return NULL;
        /* Point reads and sequential batches: 2 MiB of cache is plenty, and
         * the main handle's 16 MiB is not paid twice (daemon RSS). */
        lr_index_set_cache_kib(s->serve_ix, 2048, NULL);
    }
    return s->serve_ix;
}

/* ---- index sender ---- */

struct send_job {
    struct daemon_job base;
    struct lr_device_id peer;
    char *folder;
    uint64_t epoch;
    /* in */
    bool decided;
    uint64_t from;
    bool first;
    uint64_t view_id, view_seq;
    uint64_t skip_author; /* receive-only: our short ID, whose versions are not sent (0: none) */
    bool record_sent;     /* out: store view_id/view_seq (what the peer holds of ours) */
    bool delta;           /* chunk-list deltas in force with the peer (§6.6) */
    uint64_t list_upto;   /* the peer asked for lists for seq <= this */
    size_t ndeltas;       /* out: entries sent as deltas */
    /* The folder's index mark (store.h). in: the root (owned) and the mark
     * last written; out: the one written now (mark_new), or a mark above
     * the index found (rolled_back: nothing is sent). */
    char *root;
    struct lr_store_mark mark;
    bool mark_new, rolled_back;
    /* in: the peer's check of our latest entry it holds (FOLDERS option 8) */
    uint64_t view_check_seq;
    uint8_t view_check[LR_PROTO_CHECK_LEN];
    uint8_t view_check_path[LR_INDEX_CHECK_PATH_MAX + 1];
    size_t view_check_path_len;
    bool check_failed; /* out: rolled_back by that check */
    /* Reconciliation (§6.11, syncrecon.c). in: a SUMMARY may replace the
     * full index; the buckets the peer asked for (owned copy; NULL: none) */
    bool recon_ok;
    uint8_t *recon_bits;
    uint32_t recon_nb;
    uint64_t recon_seq;
    /* out: a SUMMARY to send instead of INDEX (summary_len > 0) */
    uint8_t *summary;
    size_t summary_len;
    uint32_t summary_nb;
    uint64_t summary_index, summary_seq;
    /* out */
    struct lr_buf *frames; /* INDEX payloads */
    size_t nframes;
    uint64_t index_id; /* ours, that the frames carry */
    uint64_t next;
    bool more;
    int rc;
    struct lr_err err;
};

/* Lists shorter than this go whole: a delta entry's two hashes would eat the gain. */
#define SYNC_DELTA_MIN_BLOCKS 8

/*
 * The delta of rec's chunk list against the version the peer told us it
 * has (its own record of the path in our index, §6.6): into d with the
 * base's blocks hash in *base. False if there is no usable base or the
 * delta would not be shorter than the list.
 */
static bool delta_for_peer(struct lr_index *ix, struct send_job *j, const struct lr_file_rec *rec,
                           struct lr_buf *d, struct lr_hash *base)
{
    if (!j->delta || rec->type != LR_FT_FILE || rec->deleted ||
        rec->nchunks < SYNC_DELTA_MIN_BLOCKS || rec->nchunks > LR_PROTO_DELTA_BLOCKS_MAX ||
        rec->seq <= j->list_upto)
        return false;
    struct lr_remote_rec rr;
    if (lr_index_remote_get(ix, j->folder, &j->peer, rec->path, rec->path_len, LR_IX_CHUNKS, &rr,
                            NULL) < 0)
        return false;
    bool ok = rr.flags == 0 && rr.rec.type == LR_FT_FILE && !rr.rec.deleted && rr.rec.nchunks > 0 &&
              rr.rec.nchunks <= LR_PROTO_DELTA_BLOCKS_MAX;
    if (ok) {
        /* The hash the receiver computes over its copy of this list. */
        lr_index_blocks_hash(rr.rec.chunks, rr.rec.nchunks, base);
        lr_buf_reset(d);
        ok = lr_sync_delta_make(rr.rec.chunks, rr.rec.nchunks, rec->chunks, rec->nchunks,
                                LR_PROTO_DELTA_OVERHEAD, d) == 1;
    }
    lr_remote_rec_release(&rr);
    return ok;
}

/* A full index starts with FIRST, a reconciled one with RECON (§6.11). */
static uint64_t first_flag(const struct send_job *j)
{
    return j->recon_bits ? LR_PROTO_INDEX_RECON : LR_PROTO_INDEX_FIRST;
}

static void push_frame(struct send_job *j, struct lr_buf *b)
{
    j->frames = lr_xreallocarray(j->frames, j->nframes + 1, sizeof(*j->frames));
    j->frames[j->nframes++] = *b;
    lr_buf_init(b, LR_PROTO_INDEX_MAX);
}

/*
 * Before sequences up to info->max_seq leave, the folder's mark says so
 * (store.h): an index.db put back from a backup is then recognised at the
 * next bind. A mark above the index under the same ID is such a rollback
 * found late (the root was not there at bind): LR_ECHANGED, nothing sent.
 * A mark that cannot be written (a read-only folder) does not hold the
 * index back; it is tried again when the index grows.
 */
static int advance_mark(struct send_job *j, const struct lr_folder_info *info)
{
    if (!j->root || (j->mark.index_id == info->index_id && j->mark.max_seq >= info->max_seq))
        return 0;
    struct lr_store *st;
    struct lr_store_mark m;
    struct lr_err e = {0};
    int rc = lr_store_open(j->root, &st, &e);
    if (rc == 0 && (rc = lr_store_mark_read(st, &m, &e)) == 1 && m.index_id == info->index_id &&
        m.max_seq > info->max_seq) {
        lr_store_close(st);
        j->rolled_back = true;
        return lr_err_set(&j->err, LR_ECHANGED,
                          "folder %s: the index ends at sequence %" PRIu64
                          " but the folder's index mark says %" PRIu64 " was announced",
                          j->folder, info->max_seq, m.max_seq);
    }
    j->mark = (struct lr_store_mark){info->index_id, info->max_seq, info->clock};
    j->mark_new = true;
    if (rc >= 0)
        rc = lr_store_mark_write(st, &j->mark, &e);
    if (rc < 0)
        lr_debug(MOD, "folder=%s index mark not written: %s", j->folder, lr_err_msg(&e, rc));
    lr_store_close(st);
    return 0;
}

/*
 * The peer's check of the latest entry of ours it holds (§6.4, option 8).
 * Our entry of its path must exist with that sequence or a later one, and
 * our entry with that sequence must have the content it holds. Otherwise
 * our index went back in time with the folder's mark (home and folder
 * restored together) and handed sequences out again: LR_ECHANGED,
 * rolled_back, nothing sent. The digest is of content, not vector: a
 * reconciliation merges vectors into our entries without new sequences.
 */
static int check_view(struct lr_index *ix, struct send_job *j, const struct lr_folder_info *info)
{
    if (!j->view_check_seq || j->view_id != info->index_id || j->view_check_seq > info->max_seq)
        return 0;
    struct lr_file_rec r;
    struct lr_file_list l = {0};
    const struct lr_file_rec *at = NULL;
    bool gone = false;
    int rc = 0;
    memset(&r, 0, sizeof(r));
    if (j->view_check_path_len) {
        rc = lr_index_file_get(ix, j->folder, j->view_check_path, j->view_check_path_len, 0, &r,
                               &j->err);
        if (rc == LR_ENOTFOUND) {
            gone = true;
            rc = 0;
        } else if (rc == 0) {
            gone = r.seq < j->view_check_seq;
            if (r.seq == j->view_check_seq)
                at = &r;
        }
    } else {
        rc = lr_index_list_by_seq(ix, j->folder, j->view_check_seq, 1, 0, &l, &j->err);
        if (rc == 0 && l.n == 1 && l.v[0].seq == j->view_check_seq)
            at = &l.v[0];
    }
    if (rc == 0 && at) {
        struct lr_summary_digest dg;
        lr_summary_entry_digest(at, &dg);
        gone = memcmp(dg.b, j->view_check, sizeof(j->view_check)) != 0;
    }
    lr_file_rec_release(&r);
    lr_file_list_release(&l);
    if (rc < 0 || !gone)
        return rc;
    j->rolled_back = j->check_failed = true;
    char id[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(&j->peer, id);
    return lr_err_set(&j->err, LR_ECHANGED,
                      "folder %s: peer %s holds our entry %" PRIu64
                      ", which this index no longer has: it is older than what it announced",
                      j->folder, id, j->view_check_seq);
}

static void send_work(struct daemon_job *base)
{
    struct send_job *j = (struct send_job *)base;
    struct lr_daemon *d = base->d;
    struct lr_folder_info info;
    struct lr_file_list list = {0};
    struct lr_proto_index_batch batch;
    bool have_batch = false;
    struct lr_buf out, dbuf;
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    lr_buf_init(&dbuf, LR_PROTO_INDEX_BATCH_RAW);
    struct lr_index *ix = sync_side_ix(d, &j->err);
    if (!ix) {
        j->rc = LR_EDB;
        goto out;
    }
    if ((j->rc = lr_index_folder_get(ix, j->folder, &info, &j->err)) < 0)
        goto out;
    if ((j->rc = advance_mark(j, &info)) < 0)
        goto out;
    if (!j->decided && (j->rc = check_view(ix, j, &info)) < 0)
        goto out;
    if (!j->decided) {
        bool full =
            lr_proto_index_full_needed(info.index_id, info.max_seq, j->view_id, j->view_seq);
        j->first = full;
        j->from = full ? 1 : j->view_seq + 1;
        j->decided = true;
        j->record_sent = true; /* written by the serial queue (sync_side_ix) */
        if (full && j->recon_ok && info.max_seq > 0) {
            struct lr_buf sb;
            lr_buf_init(&sb, LR_PROTO_SUMMARY_MAX);
            int rc = sync_recon_build(ix, j->folder, &info, j->skip_author, &sb, &j->summary_nb,
                                      &j->err);
            if (rc == 1) {
                j->summary = lr_buf_detach(&sb, &j->summary_len);
                j->summary_index = info.index_id;
                j->summary_seq = info.max_seq;
            }
            lr_buf_release(&sb);
            if (rc < 0) {
                j->rc = rc;
                goto out;
            }
            if (rc == 1)
                goto out; /* the burst waits for the peer's SUMMARY_WANT */
        }
    }
    j->next = j->from;
    if ((j->rc = lr_index_list_by_seq(ix, j->folder, j->from, SYNC_SEND_RECORDS, LR_IX_CHUNKS,
                                      &list, &j->err)) < 0)
        goto out;
    j->index_id = info.index_id;
    /* The serial queue commits meanwhile: records listed above the
     * folder_get's max_seq are above the mark advance_mark wrote, so they
     * wait for the next round, which moves the mark to them first. */
    size_t nlist = list.n;
    while (nlist > 0 && list.v[nlist - 1].seq > info.max_seq)
        nlist--;
    if ((j->rc = lr_proto_index_batch_init(&batch, j->folder, info.index_id, 0, 0)) < 0) {
        lr_err_set(&j->err, j->rc, "cannot start an INDEX batch for folder %s", j->folder);
        goto out;
    }
    have_batch = true;
    for (size_t i = 0; i < nlist; i++) {
        size_t next_block = 0;
        /* Receive-only: our own changes never leave (docs/modes.md). */
        if (j->skip_author && daemon_modes_own_version(ix, j->folder, &list.v[i], j->skip_author)) {
            j->next = list.v[i].seq + 1;
            continue;
        }
        /* Reconciled (§6.11): of what the SUMMARY covered, only the buckets
         * the peer asked for. */
        if (j->recon_bits && list.v[i].seq <= j->recon_seq &&
            !lr_summary_bit(j->recon_bits,
                            lr_summary_bucket(list.v[i].path, list.v[i].path_len, j->recon_nb))) {
            j->next = list.v[i].seq + 1;
            continue;
        }
        struct lr_hash dbase;
        bool use_delta = delta_for_peer(ix, j, &list.v[i], &dbuf, &dbase);
        if (use_delta) {
            /* The declared result hash is computed the way the receiver does. */
            lr_index_blocks_hash(list.v[i].chunks, list.v[i].nchunks, &list.v[i].blocks_hash);
        }
        for (;;) {
            int rc;
            if (use_delta) {
                rc =
                    lr_proto_index_batch_add_delta(&batch, &list.v[i], &dbase, dbuf.data, dbuf.len);
                if (rc == 0)
                    j->ndeltas++;
                if (rc < 0) {
                    use_delta = false; /* too big for a batch: the list goes in segments */
                    continue;
                }
            } else {
                rc = lr_proto_index_batch_add(&batch, &list.v[i], &next_block);
            }
            if (rc == 0)
                break;
            if (rc != LR_PROTO_BATCH_FULL) {
                j->rc = lr_err_set(&j->err, rc, "cannot encode record seq=%llu of folder %s",
                                   (unsigned long long)list.v[i].seq, j->folder);
                goto out;
            }
            if ((j->rc = lr_proto_index_batch_finish(&batch, j->first ? first_flag(j) : 0, &out)) <
                0)
                goto out;
            j->first = false;
            push_frame(j, &out);
        }
        j->next = list.v[i].seq + 1;
    }
    j->more = list.n == SYNC_SEND_RECORDS || nlist < list.n;
    if (!j->more || lr_proto_index_batch_count(&batch) > 0) {
        uint64_t flags = (j->first ? first_flag(j) : 0) | (j->more ? 0 : LR_PROTO_INDEX_LAST);
        if ((j->rc = lr_proto_index_batch_finish(&batch, flags, &out)) < 0)
            goto out;
        j->first = false;
        push_frame(j, &out);
    }
out:
    if (j->rc < 0 && !j->err.msg[0])
        lr_err_set(&j->err, j->rc, "cannot build INDEX for folder %s", j->folder);
    if (have_batch)
        lr_proto_index_batch_release(&batch);
    lr_buf_release(&out);
    lr_buf_release(&dbuf);
    lr_file_list_release(&list);
}

/* Stores what a peer said it holds of our index (a write: serial queue). */
struct sent_job {
    struct daemon_job base;
    struct lr_device_id peer;
    char *folder;
    uint64_t view_id, view_seq;
};

static void sent_work(struct daemon_job *base)
{
    struct sent_job *j = (struct sent_job *)base;
    lr_index_remote_set_sent(base->d->ix, j->folder, &j->peer, j->view_id, j->view_seq, NULL);
}

static void sent_done(struct daemon_job *base, int status)
{
    (void)status;
    struct sent_job *j = (struct sent_job *)base;
    free(j->folder);
    free(j);
}

/* Our side of a link starts over: the next burst decides afresh. */
static void sender_reset(struct sync_link *l)
{
    l->recon_wait = false;
    free(l->recon_bits);
    l->recon_bits = NULL;
    l->epoch++;
    l->send_decided = false;
    l->send_first = false;
    l->send_next = 0;
    l->send_index = 0;
    l->send_blocked = false;
    l->send_dirty = false;
    l->send_caught_up = false;
    l->send_waiting = false;
}

static void send_done(struct daemon_job *base, int status)
{
    struct send_job *j = (struct send_job *)base;
    struct lr_daemon *d = base->d;
    if (j->mark_new)
        sync_folder_get(d, j->folder)->mark = j->mark;
    if (j->check_failed && !d->stopping) {
        struct sync_peer *cp = sync_peer_get(d, &j->peer);
        cp->check_gen = cp->gen;
    }
    if (j->rolled_back && !d->stopping) {
        /* The check at bind gives the index a new ID. */
        lr_warn(MOD, "%s: a new index ID for it", j->err.msg);
        scanjobs_rebind(d, j->folder, true);
    }
    if (status == 0 && !d->stopping && j->record_sent) {
        struct sent_job *s = lr_xcalloc(1, sizeof(*s));
        s->base.kind = DAEMON_JOB_SYNC;
        s->base.work = sent_work;
        s->base.done = sent_done;
        s->peer = j->peer;
        s->folder = lr_xstrdup(j->folder);
        s->view_id = j->view_id;
        s->view_seq = j->view_seq;
        daemon_job_queue(d, &s->base);
    }
    struct sync_link *l = sync_link_find(d, &j->peer, j->folder);
    if (status == 0 && !d->stopping && l) {
        l->send_busy = false;
        struct sync_peer *p = sync_peer_get(d, &j->peer);
        if (l->epoch != j->epoch || !l->listed || !p->conn) {
            /* Superseded (new FOLDERS, reconnect): start over if still syncing. */
            if (l->listed && p->conn)
                queue_sender(d, l);
        } else if (j->rc < 0) {
            lr_warn(MOD, "folder=%s index not sent: %s", j->folder, lr_err_msg(&j->err, j->rc));
        } else if (j->summary) {
            l->recon_wait = true;
            l->recon_index = j->summary_index;
            l->recon_seq = j->summary_seq;
            l->recon_nb = j->summary_nb;
            p->index_sent += j->summary_len;
            p->summaries_sent++;
            sync_send(d, p, LR_STREAM_CONTROL, LR_MSG_SUMMARY, j->summary, j->summary_len);
            j->summary = NULL;
        } else {
            l->send_decided = true;
            l->send_first = j->first;
            l->send_next = j->next;
            l->send_index = j->index_id;
            p->deltas_sent += j->ndeltas;
            lr_debug(MOD, "folder=%s index sent: %zu batches up to seq %llu%s", j->folder,
                     j->nframes, (unsigned long long)j->next, j->more ? ", more to come" : "");
            for (size_t i = 0; i < j->nframes; i++) {
                size_t len;
                uint8_t *pl = lr_buf_detach(&j->frames[i], &len);
                p->index_sent += len;
                sync_send(d, p, LR_STREAM_CONTROL, LR_MSG_INDEX, pl, len);
            }
            if (j->more || l->send_dirty) {
                l->send_dirty = false;
                /* Only our own INDEX backlog holds the burst back: chunk
                 * answers queued meanwhile go after it anyway. */
                if (p->c_bytes > SYNC_INDEX_BACKLOG_MAX)
                    l->send_blocked = true; /* resumed by sync_on_writable */
                else
                    queue_sender(d, l);
            } else {
                l->send_caught_up = true;
                if (l->told_sent_gen != p->gen || l->told_sent_index != j->index_id ||
                    l->told_sent_next != j->next) {
                    l->told_sent_gen = p->gen;
                    l->told_sent_index = j->index_id;
                    l->told_sent_next = j->next;
                    sync_item_index(d, &j->peer, j->folder, true);
                }
                if (l->untell_scanning) {
                    /* Behind the burst that carried the first scan's finds. */
                    l->untell_scanning = false;
                    if (l->told_scanning)
                        send_folders(d, p);
                }
            }
        }
    } else if (l) {
        l->send_busy = false;
    }
    for (size_t i = 0; i < j->nframes; i++)
        lr_buf_release(&j->frames[i]);
    free(j->frames);
    free(j->summary);
    free(j->recon_bits);
    free(j->root);
    free(j->folder);
    free(j);
}

void sync_queue_sender(struct lr_daemon *d, struct sync_link *l)
{
    if (l->send_busy || d->stopping)
        return;
    if (l->recon_wait) {
        /* A SUMMARY went: its SUMMARY_WANT starts the burst, which covers
         * everything committed meanwhile. */
        l->send_caught_up = false;
        return;
    }
    struct sync_peer *p = sync_peer_get(d, &l->peer);
    /* Our FOLDERS first: a FOLDERS job delayed (a folder index to create on
     * the serial queue) let an INDEX overtake it, which the peer ignored as
     * unlisted, and the exchange never completed. */
    l->send_waiting = p->folders_pending > 0;
    if (l->send_waiting) {
        l->send_caught_up = false;
        return;
    }
    struct send_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = send_work;
    j->base.done = send_done;
    j->peer = l->peer;
    j->folder = lr_xstrdup(l->folder);
    j->epoch = l->epoch;
    j->decided = l->send_decided;
    j->from = l->send_next;
    j->first = l->send_first;
    j->view_id = l->their_view_id;
    j->view_seq = l->their_view_seq;
    /* Once per connection (sync_peer.check_gen). */
    if (p->check_gen != p->gen) {
        j->view_check_seq = l->their_check_seq;
        memcpy(j->view_check, l->their_check, sizeof(j->view_check));
        memcpy(j->view_check_path, l->their_check_path, l->their_check_path_len + 1);
        j->view_check_path_len = l->their_check_path_len;
    }
    j->delta = (p->features & LR_FEAT_INDEX_DELTA) != 0;
    j->list_upto = l->their_list_upto;
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, l->folder);
    if (fc && fc->mode == LR_MODE_RECEIVE_ONLY)
        j->skip_author = d->short_id;
    if (fc)
        j->root = lr_xstrdup(fc->path);
    j->mark = sync_folder_get(d, l->folder)->mark;
    /* A summary is worth its round trip only if the peer has an index to
     * compare it with (their FOLDERS' max_seq). */
    j->recon_ok = (p->features & LR_FEAT_RECON) && l->their_max_seq > 0;
    if (l->recon_bits && j->decided) {
        j->recon_bits = lr_xmalloc((l->recon_nb + 7) / 8);
        memcpy(j->recon_bits, l->recon_bits, (l->recon_nb + 7) / 8);
        j->recon_nb = l->recon_nb;
        j->recon_seq = l->recon_seq;
    }
    l->send_busy = true;
    l->send_blocked = false;
    l->send_caught_up = false;
    daemon_side_queue(d, DAEMON_SIDE_SERVE, &j->base);
}

void sync_local_changed(struct lr_daemon *d, const char *folder)
{
    for (struct sync_link *l = d->sync->links; l; l = l->next) {
        if (!l->listed || strcmp(l->folder, folder) != 0)
            continue;
        l->send_caught_up = false;
        if (l->send_busy || l->send_blocked)
            l->send_dirty = true;
        else
            queue_sender(d, l);
    }
}

/* ---- FOLDERS received ---- */

/*
 * recv: their side too (the folder unlisted or listed again, their index
 * replaced, the connection changed): their batches already queued are void
 * and a LAST must come again. A FOLDERS that changes only what they hold of
 * ours re-decides our burst alone; voiding theirs too dropped the LAST that
 * a queued batch carried, and nothing sent it again (sync --wait waited).
 */
static void link_reset(struct sync_link *l, bool recv)
{
    l->listed = false;
    sender_reset(l);
    /* Ours is said again when the folder syncs again. Theirs is kept
     * unless their side restarts (it names the index and sequence it is
     * about, so it cannot go stale): a re-list for reasons of ours does
     * not make them send it again. */
    l->told_pulled = false;
    if (recv) {
        l->their_pulled = false;
        l->recv_epoch++;
        l->recv_mid = false;
        l->recv_last = false;
    }
}

/* Bring the peer's links in line with its latest FOLDERS and our config. */
static void apply_their_folders(struct lr_daemon *d, struct sync_peer *p,
                                const struct lr_proto_folders *theirs, bool fresh)
{
    for (struct sync_link *l = d->sync->links; l; l = l->next) {
        if (!lr_device_id_eq(&l->peer, &p->id) || !l->listed)
            continue;
        bool still = false;
        for (size_t i = 0; i < theirs->n && !still; i++)
            still = !inert(&theirs->v[i]) && strcmp(theirs->v[i].id, l->folder) == 0;
        if (!still || !syncing(d, &p->id, l->folder))
            link_reset(l, true);
    }
    for (size_t i = 0; i < theirs->n; i++) {
        const struct lr_proto_folder *e = &theirs->v[i];
        if (inert(e) || !syncing(d, &p->id, e->id))
            continue;
        struct sync_link *l = link_get(d, &p->id, e->id);
        if (l->listed && !fresh)
            continue;
        bool same_view = e->peer_index_id == l->their_view_id && e->peer_seq == l->their_view_seq;
        /* Or they hold part of what this connection's burst carried: their
         * FOLDERS (sent for its options, or another folder) crossed our
         * batches. Sent again from there, the burst reached them with
         * sequences lower than the ones they had just stored, which they
         * refuse ("seq 11 after 1000 in the same burst"), closing the
         * connection. */
        bool view_in_burst = l->send_decided && l->send_index != 0 &&
                             e->peer_index_id == l->send_index && e->peer_seq < l->send_next;
        if (l->listed && e->index_id == l->their_index_id && (same_view || view_in_burst) &&
            e->list_upto == l->their_list_upto) {
            /* What they hold of ours is what they said last time or what
             * we sent since (a FOLDERS sent for its options, "scanning" no
             * more): the burst under way stands. Deciding it again could
             * swap a full index already on its way for a SUMMARY, and a
             * receive-only peer reconciling lost the versions it would have
             * adopted from the index. */
            /* (their_view_* stay as the burst was decided on: the silent
             * merge rule of a SUMMARY from them reads them, syncrecon.c.) */
            l->their_max_seq = e->max_seq;
            l->their_scanning = e->scanning;
            continue;
        }
        link_reset(l, !l->listed || e->index_id != l->their_index_id);
        l->listed = true;
        l->their_index_id = e->index_id;
        l->their_max_seq = e->max_seq;
        l->their_view_id = e->peer_index_id;
        l->their_view_seq = e->peer_seq;
        l->their_check_seq = e->peer_check_seq;
        memcpy(l->their_check, e->peer_check, sizeof(l->their_check));
        memcpy(l->their_check_path, e->peer_check_path, e->peer_check_path_len + 1);
        l->their_check_path_len = e->peer_check_path_len;
        l->their_list_upto = e->list_upto;
        l->their_scanning = e->scanning;
        queue_sender(d, l);
    }
}

static void queue_forget(struct lr_daemon *d);

/* The folders we share with them that their FOLDERS says they removed. */
static uint64_t removed_sig(struct lr_daemon *d, const struct sync_peer *p)
{
    uint64_t h = 0;
    for (size_t i = 0; i < p->theirs.n; i++) {
        const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, p->theirs.v[i].id);
        if (p->theirs.v[i].removed && fc && lr_folder_shared_with(fc, &p->id))
            h = mix_id(h ? h : 14695981039346656037ull, fc->id);
    }
    return h;
}

static void on_folders(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len)
{
    struct lr_proto_folders f;
    struct lr_err err = {0};
    int rc = lr_proto_folders_decode(payload, len, &f, &err);
    for (size_t i = 0; rc == 0 && i < f.n; i++) {
        if ((f.v[i].stopped || f.v[i].unshared) && !(p->features & LR_FEAT_FOLDER_STOPPED))
            rc = lr_err_set(&err, LR_EBADVAL, "folders[%zu].%s: feature not in force", i,
                            f.v[i].stopped ? "stopped" : "unshared");
        else if (f.v[i].removed && !(p->features & LR_FEAT_FOLDER_REMOVED))
            rc = lr_err_set(&err, LR_EBADVAL, "folders[%zu].removed: feature not in force", i);
    }
    if (rc < 0) {
        lr_proto_folders_release(&f);
        sync_peer_fatal(d, p, "invalid FOLDERS", rc, &err);
        return;
    }
    lr_proto_folders_release(&p->theirs);
    p->theirs = f;
    p->have_folders = true;
    apply_their_folders(d, p, &p->theirs, true);
    /* They offer a folder we have and keep to ourselves, or no longer do. */
    if (unshared_sig(d, p) != p->unshared_sig)
        send_folders(d, p);
    /* They removed a folder we share with them: what we hold of their
     * index of it can never be served or updated again. */
    uint64_t rs = removed_sig(d, p);
    if (rs != p->removed_sig) {
        p->removed_sig = rs;
        queue_forget(d);
    }
    sync_serve_replay(d, p);
}

/* ---- INDEX received ---- */

struct listed {
    char *folder;
    uint64_t index_id;
    uint64_t epoch;
    bool send_only;    /* our folder's mode: adopts equal versions (modes.h) */
    bool receive_only; /* adopts equal versions over own ones (modes.h) */
};

struct recv_job {
    struct daemon_job base;
    struct lr_device_id peer;
    uint64_t gen;
    struct listed *listed;
    size_t nlisted;
    uint8_t *payload;
    size_t len;
    bool delta_ok; /* LR_FEAT_INDEX_DELTA in force with the peer */
    /* out */
    char folder[LR_PROTO_FOLDER_ID_MAX + 1];
    bool ignored, last, fatal;
    size_t ndeltas;     /* delta entries applied */
    size_t stored;      /* entries stored */
    size_t adopted;     /* send-only: our records that took the peer's vector */
    bool miss;          /* a delta whose base we lack: entries from it on not stored */
    uint64_t miss_seq;  /* the batch's last sequence: lists up to it */
    uint64_t miss_from; /* the sender's index ID */
    uint64_t epoch;
    int rc;
    struct lr_err err;
    struct lr_need_stats need;
    bool need_known;
};

struct sync_tracker *sync_tracker_get(struct sync_state *s, const struct lr_device_id *peer,
                                      const char *folder)
{
    for (struct sync_tracker *t = s->trackers; t; t = t->next)
        if (lr_device_id_eq(&t->peer, peer) && strcmp(t->folder, folder) == 0)
            return t;
    struct sync_tracker *t = lr_xcalloc(1, sizeof(*t));
    t->peer = *peer;
    t->folder = lr_xstrdup(folder);
    t->epoch_key = UINT64_MAX;
    lr_proto_burst_init(&t->burst);
    t->next = s->trackers;
    s->trackers = t;
    return t;
}

/*
 * The chunk list whose blocks hash is *h among our records of the path:
 * the local one and every peer's (§6.6). 1 and *out filled (caller
 * releases), 0 if none has it, or a negative code (database).
 */
static int delta_base_find(struct lr_index *ix, const char *folder, const struct lr_file_rec *rec,
                           const struct lr_hash *h, struct lr_file_rec *out, struct lr_err *err)
{
    struct lr_hash got;
    /* The stored blocks hash first: a huge local list is loaded only if it is the one. */
    int rc = lr_index_file_get(ix, folder, rec->path, rec->path_len, 0, out, err);
    if (rc < 0 && rc != LR_ENOTFOUND)
        return rc;
    bool local = rc == 0 && out->type == LR_FT_FILE && !out->deleted &&
                 memcmp(out->blocks_hash.b, h->b, LR_HASH_LEN) == 0;
    if (rc == 0)
        lr_file_rec_release(out);
    if (local) {
        rc = lr_index_file_get(ix, folder, rec->path, rec->path_len, LR_IX_CHUNKS, out, err);
        if (rc < 0 && rc != LR_ENOTFOUND)
            return rc;
        if (rc == 0) {
            if (out->nchunks > 0 && out->nchunks <= LR_PROTO_DELTA_BLOCKS_MAX) {
                lr_index_blocks_hash(out->chunks, out->nchunks, &got);
                if (memcmp(got.b, h->b, LR_HASH_LEN) == 0)
                    return 1;
            }
            lr_file_rec_release(out);
        }
    }
    struct lr_device_list holders = {0};
    if ((rc = lr_index_remote_holders(ix, folder, rec->path, rec->path_len, NULL, h, &holders,
                                      err)) < 0)
        return rc;
    int found = 0;
    for (size_t i = 0; i < holders.n && !found; i++) {
        struct lr_remote_rec rr;
        rc = lr_index_remote_get(ix, folder, &holders.v[i], rec->path, rec->path_len, LR_IX_CHUNKS,
                                 &rr, NULL);
        if (rc < 0)
            continue;
        lr_index_blocks_hash(rr.rec.chunks, rr.rec.nchunks, &got);
        if (rr.flags == 0 && rr.rec.nchunks > 0 && rr.rec.nchunks <= LR_PROTO_DELTA_BLOCKS_MAX &&
            memcmp(got.b, h->b, LR_HASH_LEN) == 0) {
            *out = rr.rec;
            memset(&rr.rec, 0, sizeof(rr.rec));
            found = 1;
        }
        lr_remote_rec_release(&rr);
    }
    lr_device_list_release(&holders);
    return found;
}

static void recv_work(struct daemon_job *base)
{
    struct recv_job *j = (struct recv_job *)base;
    struct lr_daemon *d = base->d;
    struct lr_proto_index ix = {0};
    struct sync_tracker *t = NULL;
    bool *was_own = NULL;
    int rc = lr_proto_index_decode(j->payload, j->len, d->sync->zc, &ix, &j->err);
    if (rc < 0) {
        j->rc = rc;
        j->fatal = true;
        /* Its folder is unknown: no batch of this connection is stored
         * after it, whatever its folder (failed_epoch). */
        for (size_t i = 0; i < j->nlisted; i++)
            sync_tracker_get(d->sync, &j->peer, j->listed[i].folder)->failed_epoch =
                j->listed[i].epoch + 1;
        return;
    }
    snprintf(j->folder, sizeof(j->folder), "%s", ix.hdr.folder_id);
    const struct listed *ls = NULL;
    for (size_t i = 0; i < j->nlisted && !ls; i++)
        if (strcmp(j->listed[i].folder, j->folder) == 0)
            ls = &j->listed[i];
    if (!ls) {
        j->ignored = true; /* not syncing (yet, or any more): §6.4 */
        goto out;
    }
    j->epoch = ls->epoch;
    t = sync_tracker_get(d->sync, &j->peer, j->folder);
    if (t->miss_epoch == ls->epoch + 1 || t->failed_epoch == ls->epoch + 1) {
        /* After a delta we could not decode, or a batch we could not store,
         * until the reconnect: §6.6. */
        j->ignored = true;
        goto out;
    }
    if (t->epoch_key != ls->epoch) {
        lr_proto_burst_reset(&t->burst);
        t->epoch_key = ls->epoch;
    }
    if ((rc = lr_proto_burst_check(&t->burst, ls->index_id, &ix, &j->err)) < 0) {
        j->rc = rc;
        j->fatal = true;
        t->epoch_key = UINT64_MAX;
        t->failed_epoch = ls->epoch + 1;
        goto out;
    }
    /* Only the peer's entries and the sequence they reach: after a power
     * cut that loses them, our next FOLDERS asks for them again. */
    if ((rc = lr_index_begin_lazy(d->ix, &j->err)) < 0)
        goto fail;
    bool recon = t->recon_index == ix.hdr.index_id && t->recon_epoch == ls->epoch;
    if ((ix.hdr.flags & LR_PROTO_INDEX_RECON) && !recon) {
        rc = lr_err_set(&j->err, LR_EPROTO, "index %s: RECON without a SUMMARY before it",
                        j->folder);
        goto fail_tx;
    }
    if (ix.hdr.flags & LR_PROTO_INDEX_FIRST)
        t->recon_index = 0; /* a plain full index replaces the reconciliation */
    if ((ix.hdr.flags & LR_PROTO_INDEX_FIRST) &&
        (rc = lr_index_remote_full_begin(d->ix, j->folder, &j->peer, ix.hdr.index_id, &j->err)) < 0)
        goto fail_tx;
    /* Entries at or below what we hold are skipped. A peer that lists a
     * folder again on the same connection (its folder left the error state)
     * resends from what our last FOLDERS said, which is older than what it
     * sent since; refusing them closed the connection and cut every transfer
     * with that peer. Sequences rise through the batch (burst check), so
     * the skipped entries lead and the stored ones follow. */
    uint64_t held_upto = 0;
    struct lr_remote_state held;
    if (!(ix.hdr.flags & LR_PROTO_INDEX_FIRST) &&
        lr_index_remote_state(d->ix, j->folder, &j->peer, &held, NULL) == 0 &&
        held.index_id == ix.hdr.index_id)
        held_upto = held.max_seq;
    size_t nskipped = 0, nstored = 0; /* stored: all but those after a delta miss */
    /* Receive-only: which of our records were own versions before the
     * peer's record was stored (daemon_modes_adopt_equal's `was_own`). */
    if (ls->receive_only && ix.n)
        was_own = lr_xcalloc(ix.n, sizeof(*was_own));
    for (size_t i = 0; i < ix.n; i++) {
        struct lr_proto_entry *e = &ix.v[i];
        if (e->rec.seq <= held_upto) {
            nskipped++;
            continue;
        }
        if (e->delta) {
            struct lr_file_rec b;
            if (!j->delta_ok) {
                rc = lr_err_set(&j->err, LR_EPROTO,
                                "index %s: a delta entry without the INDEX_DELTA feature",
                                j->folder);
                goto fail_tx;
            }
            if ((rc = delta_base_find(d->ix, j->folder, &e->rec, &e->delta_base, &b, &j->err)) < 0)
                goto fail_tx;
            if (rc == 0) {
                /* No record of ours has that list: never guess. Keep what came
                 * before, and have the rest resent with lists (§6.6). */
                j->miss = true;
                /* Lists for the whole batch: its other deltas may miss too,
                 * and each miss costs a reconnect. */
                j->miss_seq = ix.v[ix.n - 1].rec.seq;
                j->miss_from = ix.hdr.index_id;
                t->miss_epoch = ls->epoch + 1;
                break;
            }
            struct lr_chunk *v;
            size_t nv;
            rc = lr_sync_delta_apply(b.chunks, b.nchunks, e->delta_bytes, e->delta_len, e->rec.size,
                                     &e->rec.blocks_hash, &v, &nv, &j->err);
            lr_file_rec_release(&b);
            if (rc < 0)
                goto fail_tx; /* the base had the hash it named: the peer lied */
            e->rec.chunks = v;
            e->rec.nchunks = nv;
            j->ndeltas++;
        }
        struct lr_remote_rec r;
        memset(&r, 0, sizeof(r));
        r.rec = e->rec;
        r.flags = e->unknown_type ? LR_RREC_UNKNOWN_TYPE : 0;
        r.wire_type = e->wire_type;
        r.blk_total = e->blk_total;
        r.blk_first = e->blk_first;
        if (was_own)
            was_own[i] = daemon_modes_own_version_at(d->ix, j->folder, e->rec.path, e->rec.path_len,
                                                     d->short_id);
        if ((rc = lr_index_remote_put(d->ix, j->folder, &j->peer, ix.hdr.index_id, &r, &j->err)) <
            0)
            goto fail_tx;
        nstored++;
    }
    j->stored = nstored;
    if (nstored > 0) {
        /* What our next FOLDERS shows the peer of its index (option 8). */
        const struct lr_proto_entry *e = &ix.v[nskipped + nstored - 1];
        struct lr_summary_digest dg;
        lr_summary_entry_digest(&e->rec, &dg);
        if ((rc = lr_index_remote_set_check(d->ix, j->folder, &j->peer, ix.hdr.index_id, e->rec.seq,
                                            dg.b, e->rec.path, e->rec.path_len, &j->err)) < 0)
            goto fail_tx;
    }
    /* The SUMMARY covered every entry up to its sequence: the records it
     * showed equal were adopted, the others came in this burst. */
    if ((ix.hdr.flags & LR_PROTO_INDEX_LAST) && !j->miss && t->recon_index == ix.hdr.index_id &&
        t->recon_epoch == ls->epoch) {
        if ((rc = lr_index_remote_seq_raise(d->ix, j->folder, &j->peer, ix.hdr.index_id,
                                            t->recon_seq, &j->err)) < 0)
            goto fail_tx;
        t->recon_index = 0;
    }
    if ((ix.hdr.flags & LR_PROTO_INDEX_LAST) && !j->miss &&
        (rc = lr_index_remote_burst_end(d->ix, j->folder, &j->peer, ix.hdr.index_id, NULL,
                                        &j->err)) < 0)
        goto fail_tx;
    if ((rc = lr_index_commit(d->ix, &j->err)) < 0)
        goto fail;
    /* Adopted vectors are our own records, announced under new sequences:
     * they must not be lost to a power cut after the peers saw them, so
     * they go in a transaction of their own with the full sync. */
    if ((ls->send_only || ls->receive_only) && nstored > 0) {
        if ((rc = lr_index_begin(d->ix, &j->err)) < 0)
            goto fail;
        for (size_t i = nskipped; i < nskipped + nstored; i++) {
            bool adopted = false;
            if (ix.v[i].unknown_type)
                continue;
            if ((rc = daemon_modes_adopt_equal(d->ix, j->folder, &ix.v[i].rec,
                                               ls->receive_only ? d->short_id : 0,
                                               was_own && was_own[i], &adopted, &j->err)) < 0)
                goto fail_tx;
            j->adopted += adopted;
        }
        if ((rc = lr_index_commit(d->ix, &j->err)) < 0)
            goto fail;
    }
    j->last = (ix.hdr.flags & LR_PROTO_INDEX_LAST) != 0 && !j->miss;
    j->need_known = lr_index_need_stats(d->ix, j->folder, &j->need, NULL) == 0;
    goto out;
fail_tx:
    lr_index_rollback(d->ix);
fail:
    /* Whatever the cause, what we hold no longer matches the sender's idea of
     * it: the connection closes and the next FOLDERS says what we hold. */
    j->rc = rc;
    j->fatal = true;
    if (t) {
        t->epoch_key = UINT64_MAX;
        t->failed_epoch = ls->epoch + 1;
    }
out:
    free(was_own);
    lr_proto_index_release(&ix);
}

/* The folder-level error of an INDEX batch our database could not store. */
#define INDEX_STORE_FAILED "cannot store the index of peer"

static void recv_done(struct daemon_job *base, int status)
{
    struct recv_job *j = (struct recv_job *)base;
    struct lr_daemon *d = base->d;
    if (!d->stopping) {
        struct sync_peer *p = sync_peer_get(d, &j->peer);
        if (p->gen == j->gen && p->index_queued >= j->len)
            p->index_queued -= j->len;
    }
    if (status == 0 && !d->stopping) {
        struct sync_peer *p = sync_peer_get(d, &j->peer);
        struct sync_link *l = j->folder[0] ? sync_link_find(d, &j->peer, j->folder) : NULL;
        p->deltas_recv += j->ndeltas;
        if (j->fatal) {
            if (j->rc == LR_EDB && j->folder[0] && lr_config_find_folder(d->cfg, j->folder)) {
                /* Our database failed (disk full, ...), not the peer: the
                 * folder says so in status and sync --wait, until a batch of
                 * a peer's is stored again. */
                char id[LR_DEVICE_ID_SHORTLEN + 1], what[64];
                lr_device_id_short(&p->id, id);
                snprintf(what, sizeof(what), "%s %s", INDEX_STORE_FAILED, id);
                sync_item_failed(d, j->folder, (const uint8_t *)"", 0, what, j->rc, &j->err);
            }
            if (p->gen == j->gen)
                sync_peer_fatal(d, p, "INDEX not accepted", j->rc, &j->err);
        } else if (j->miss) {
            p->delta_misses++;
            if (l) {
                if (l->list_upto_index != j->miss_from)
                    l->list_upto = 0;
                if (j->miss_seq > l->list_upto)
                    l->list_upto = j->miss_seq;
                l->list_upto_index = j->miss_from;
            }
            char id[LR_DEVICE_ID_SHORTLEN + 1];
            lr_device_id_short(&p->id, id);
            lr_info(MOD,
                    "peer=%s folder=%s: delta against a list we do not have; "
                    "reconnecting to have seq <= %llu resent with lists",
                    id, j->folder, (unsigned long long)j->miss_seq);
            if (p->gen == j->gen && p->conn) {
                p->closed_ms = uv_now(&d->loop);
                lr_conn_close(p->conn, "index delta without base: resend with lists");
            }
        }
        if (!j->fatal && !j->ignored) {
            lr_debug(MOD, "folder=%s index batch of %zu bytes stored%s", j->folder, j->len,
                     j->last ? " (last of the burst)" : "");
            sync_item_folder_ok(d, j->folder, INDEX_STORE_FAILED);
            struct sync_folder *f = sync_folder_get(d, j->folder);
            if (j->need_known) {
                f->need = j->need;
                f->need_known = true;
            }
            if (l && p->gen == j->gen && l->recv_epoch == j->epoch) {
                l->recv_mid = !j->last;
                if (j->last)
                    l->recv_last = true;
            }
            bool news = true;
            if (l && p->gen == j->gen) {
                l->recv_news |= j->stored > 0;
                news = l->told_recv_gen != p->gen || l->recv_news;
                if (j->last && news) {
                    l->told_recv_gen = p->gen;
                    l->recv_news = false;
                }
            }
            if (j->last && news)
                sync_item_index(d, &j->peer, j->folder, false);
            if (j->last)
                sync_pull_trigger(d, j->folder);
            if (j->adopted)
                sync_local_changed(d, j->folder); /* the adopted vectors */
        }
    }
    for (size_t i = 0; i < j->nlisted; i++)
        free(j->listed[i].folder);
    free(j->listed);
    free(j->payload);
    free(j);
}

static void on_index(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len)
{
    if (p->index_queued + len > SYNC_INDEX_QUEUED_MAX) {
        char id[LR_DEVICE_ID_SHORTLEN + 1];
        lr_device_id_short(&p->id, id);
        lr_warn(MOD, "peer=%s sends its index faster than it can be stored; reconnecting", id);
        lr_conn_close(p->conn, "index backlog");
        return;
    }
    p->index_queued += len;
    p->index_recv += len;
    struct recv_job *j = lr_xcalloc(1, sizeof(*j));
    j->delta_ok = (p->features & LR_FEAT_INDEX_DELTA) != 0;
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = recv_work;
    j->base.done = recv_done;
    j->peer = p->id;
    j->gen = p->gen;
    j->payload = lr_conn_take_payload(p->conn, payload);
    if (!j->payload) {
        j->payload = lr_xmalloc(len ? len : 1);
        if (len)
            memcpy(j->payload, payload, len);
    }
    j->len = len;
    for (struct sync_link *l = d->sync->links; l; l = l->next) {
        if (!l->listed || !lr_device_id_eq(&l->peer, &p->id))
            continue;
        j->listed = lr_xreallocarray(j->listed, j->nlisted + 1, sizeof(*j->listed));
        j->listed[j->nlisted].folder = lr_xstrdup(l->folder);
        j->listed[j->nlisted].index_id = l->their_index_id;
        j->listed[j->nlisted].epoch = l->recv_epoch;
        const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, l->folder);
        j->listed[j->nlisted].send_only = fc && fc->mode == LR_MODE_SEND_ONLY;
        j->listed[j->nlisted].receive_only = fc && fc->mode == LR_MODE_RECEIVE_ONLY;
        j->nlisted++;
    }
    /* Which folder it is for is known once decoded: until then sync_folder_status
     * counts any waiting INDEX job as activity. */
    daemon_job_queue(d, &j->base);
}

/* ---- hooks ---- */

static void note_new_shares(struct lr_daemon *d);

void sync_init(struct lr_daemon *d)
{
    d->sync = lr_xcalloc(1, sizeof(*d->sync));
    d->sync->zc = lr_proto_zc_new();
    d->sync->spares = lr_store_spares_new();
    d->sync->next_req_id = 1;
    sync_items_init(d);
    sync_sessions_init(d);
    if (d->cfg)
        note_new_shares(d); /* the configured shares are not new: started_ms covers them */
}

void sync_free(struct lr_daemon *d)
{
    struct sync_state *s = d->sync;
    if (!s)
        return;
    sync_pull_free(d);
    sync_sessions_free(d);
    lr_store_spares_free(s->spares);
    while (s->peers) {
        struct sync_peer *p = s->peers;
        s->peers = p->next;
        sync_serve_peer_down(d, p);
        queue_clear(p);
        lr_proto_folders_release(&p->theirs);
        free(p);
    }
    while (s->links) {
        struct sync_link *l = s->links;
        s->links = l->next;
        free(l->recon_bits);
        free(l->folder);
        free(l);
    }
    while (s->folders) {
        struct sync_folder *f = s->folders;
        s->folders = f->next;
        free(f->id);
        free(f->pull_after);
        free(f->no_move);
        lr_ownset_free(&f->own);
        free(f->failed_twins);
        free(f->refused_keys);
        free(f);
    }
    while (s->trackers) {
        struct sync_tracker *t = s->trackers;
        s->trackers = t->next;
        lr_proto_burst_release(&t->burst);
        free(t->folder);
        free(t);
    }
    sync_items_free(d);
    lr_proto_zc_free(s->zc);
    for (size_t i = 0; i < s->nrx_zc; i++)
        lr_proto_zc_free(s->rx_zc[i]);
    free(s->rx_zc);
    lr_file_rec_release(&s->serve_rec);
    lr_index_close(s->serve_ix);
    lr_proto_zc_free(s->serve_zc);
    free(s->serve_folder);
    free(s);
    d->sync = NULL;
}

void sync_peer_up(struct lr_daemon *d, struct lr_conn *c, const struct lr_device_id *peer,
                  uint64_t features)
{
    struct sync_peer *p = sync_peer_get(d, peer);
    if (p->conn && p->conn != c)
        sync_peer_down(d, p->conn, peer, false);
    p->conn = c;
    p->features = features & SYNC_FEATURES;
    p->gen++;
    p->folders_pending = 0; /* jobs of the old connection no longer count */
    p->index_queued = 0;
    p->have_folders = false;
    lr_proto_folders_release(&p->theirs);
    for (struct sync_link *l = d->sync->links; l; l = l->next) {
        if (lr_device_id_eq(&l->peer, peer))
            link_reset(l, true);
    }
    send_folders(d, p);
    sync_pull_peer_up(d, p);
}

void sync_peer_down(struct lr_daemon *d, struct lr_conn *c, const struct lr_device_id *peer,
                    bool lost)
{
    if (!d->sync)
        return;
    struct sync_peer *p = sync_peer_get(d, peer);
    if (p->conn != c)
        return;
    p->conn = NULL;
    p->gen++;
    p->lost_ms = lost ? uv_now(&d->loop) : 0;
    p->index_queued = 0;
    p->seqs_pending = 0;
    p->have_folders = false;
    lr_proto_folders_release(&p->theirs);
    queue_clear(p);
    for (struct sync_link *l = d->sync->links; l; l = l->next) {
        if (lr_device_id_eq(&l->peer, peer))
            link_reset(l, true);
    }
    sync_pull_peer_down(d, p);
    sync_serve_peer_down(d, p);
}

void sync_on_pulled(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len)
{
    struct lr_proto_pulled m;
    struct lr_err err = {0};
    int rc = lr_proto_pulled_decode(payload, len, &m, &err);
    if (rc < 0) {
        sync_peer_fatal(d, p, "invalid PULLED", rc, &err);
        return;
    }
    p->index_recv += len;
    struct sync_link *l = sync_link_find(d, &p->id, m.folder_id);
    if (!l || !l->listed)
        return; /* a folder that does not sync (now): as for INDEX, a race with FOLDERS */
    l->their_pulled = true;
    l->their_pulled_index = m.peer_index_id;
    l->their_pulled_seq = m.peer_seq;
    l->their_need = m.need;
}

void sync_on_message(struct lr_daemon *d, struct lr_conn *c, uint64_t type, const uint8_t *payload,
                     size_t len)
{
    if (d->stopping)
        return;
    struct sync_peer *p = sync_peer_get(d, lr_conn_peer(c));
    if (p->conn != c)
        return;
    switch (type) {
    case LR_MSG_FOLDERS:
        on_folders(d, p, payload, len);
        break;
    case LR_MSG_INDEX:
        on_index(d, p, payload, len);
        break;
    case LR_MSG_WANT:
        sync_serve_on_want(d, p, payload, len);
        break;
    case LR_MSG_CHUNK:
        sync_pull_on_chunk(d, p, payload, len);
        break;
    case LR_MSG_HAVE:
        sync_pull_on_have(d, p, payload, len);
        break;
    case LR_MSG_SUMMARY:
        sync_recon_on_summary(d, p, payload, len);
        break;
    case LR_MSG_SUMMARY_WANT:
        sync_recon_on_want(d, p, payload, len);
        break;
    case LR_MSG_PULLED:
        sync_on_pulled(d, p, payload, len);
        break;
    case LR_MSG_SEQ_ASK:
        sync_on_seq_ask(d, p, payload, len);
        break;
    case LR_MSG_SEQS:
        sync_on_seqs(d, p, payload, len);
        break;
    default: {
        char id[LR_DEVICE_ID_SHORTLEN + 1];
        lr_device_id_short(&p->id, id);
        lr_debug(MOD, "message peer=%s type=%llu len=%zu ignored", id, (unsigned long long)type,
                 len);
        break;
    }
    }
}

void sync_on_writable(struct lr_daemon *d, struct lr_conn *c)
{
    if (d->stopping)
        return;
    struct sync_peer *p = sync_peer_get(d, lr_conn_peer(c));
    if (p->conn != c)
        return;
    sync_flush(d, p);
    if (p->c_bytes <= SYNC_INDEX_BACKLOG_MAX)
        for (struct sync_link *l = d->sync->links; l; l = l->next)
            if (l->send_blocked && lr_device_id_eq(&l->peer, &p->id))
                queue_sender(d, l);
    if (p->q_head)
        return;
    sync_pump(d);
}

/*
 * Job: drop what the index holds of devices a folder is no longer shared
 * with (peer removed, or no longer in the folder's shares), or that removed
 * the folder (their FOLDERS, option 9). Their versions stayed needed, so
 * the folder was `syncing` for good with 'no peer can serve it' (black-box
 * runs). Shared again, the device's index comes again in full: FOLDERS
 * then says we hold nothing of it. A transfer session whose version no
 * device holds any more fails, naming why.
 */
struct forget_folder {
    char *id;
    struct lr_device_id *keep; /* the devices it is shared with */
    size_t nkeep;
    struct lr_device_id *gone; /* ... of which these removed the folder */
    size_t ngone;
    size_t forgot;
    struct lr_need_stats need;
    bool need_ok;
    char *why; /* a session's failure, naming the first device forgotten */
};

/* Then, for a folder that forgot something: its unfinished sessions, taken
 * on the loop once the forget is done (not for every folder at each
 * configuration change), and which of them no device holds now. */
struct orphan_folder {
    char *id;
    char *why;
    struct sync_session_key *keys;
    size_t nkeys;
    bool *orphan; /* per key */
};

static bool id_in(const struct lr_device_id *id, const struct lr_device_id *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lr_device_id_eq(id, &v[i]))
            return true;
    return false;
}

/* Job side: the sessions whose version none of the peers left holds. */
static void find_orphans(struct lr_index *ix, struct orphan_folder *ff)
{
    ff->orphan = lr_xcalloc(ff->nkeys + 1, sizeof(*ff->orphan));
    for (size_t i = 0; i < ff->nkeys; i++) {
        struct lr_device_list h = {0};
        struct lr_err err = {0};
        const struct sync_session_key *k = &ff->keys[i];
        if (lr_index_remote_holders(ix, ff->id, k->path, k->path_len, NULL, &k->blocks, &h, &err) <
            0) {
            lr_warn(MOD, "folder=%s: cannot list who holds a version: %s", ff->id, err.msg);
            continue;
        }
        ff->orphan[i] = h.n == 0;
        lr_device_list_release(&h);
    }
}

struct forget_job {
    struct daemon_job base;
    struct forget_folder *v;
    size_t n;
};

static void forget_work(struct daemon_job *base)
{
    struct forget_job *j = (struct forget_job *)base;
    struct lr_index *ix = base->d->ix;
    for (size_t i = 0; i < j->n; i++) {
        struct forget_folder *ff = &j->v[i];
        struct lr_device_list held = {0};
        struct lr_err err = {0};
        if (lr_index_remote_peers(ix, ff->id, &held, &err) < 0) {
            lr_warn(MOD, "folder=%s: cannot list the peers it holds: %s", ff->id, err.msg);
            continue;
        }
        for (size_t k = 0; k < held.n; k++) {
            if (id_in(&held.v[k], ff->keep, ff->nkeep) && !id_in(&held.v[k], ff->gone, ff->ngone))
                continue;
            char id[LR_DEVICE_ID_SHORTLEN + 1];
            lr_device_id_short(&held.v[k], id);
            if (lr_index_remote_forget(ix, ff->id, &held.v[k], &err) < 0) {
                lr_warn(MOD, "folder=%s: cannot forget peer=%s: %s", ff->id, id, err.msg);
                continue;
            }
            bool gone = id_in(&held.v[k], ff->gone, ff->ngone);
            lr_info(MOD, "folder=%s: forgot the index of peer=%s (%s)", ff->id, id,
                    gone ? "it removed the folder" : "no longer shared with it");
            if (!ff->why)
                ff->why = lr_xasprintf(gone ? "peer %s removed the folder, and no other device "
                                              "has this version"
                                            : "the folder is no longer shared with peer %s, and "
                                              "no other device has this version",
                                       id);
            ff->forgot++;
        }
        lr_device_list_release(&held);
        if (ff->forgot)
            ff->need_ok = lr_index_need_stats(ix, ff->id, &ff->need, NULL) == 0;
    }
}

struct orphan_job {
    struct daemon_job base;
    struct orphan_folder *v;
    size_t n;
};

static void orphan_work(struct daemon_job *base)
{
    struct orphan_job *j = (struct orphan_job *)base;
    for (size_t i = 0; i < j->n; i++)
        find_orphans(base->d->ix, &j->v[i]);
}

static void orphan_done(struct daemon_job *base, int status)
{
    struct orphan_job *j = (struct orphan_job *)base;
    struct lr_daemon *d = base->d;
    for (size_t i = 0; i < j->n; i++) {
        struct orphan_folder *of = &j->v[i];
        bool live = status == 0 && !d->stopping && lr_config_find_folder(d->cfg, of->id);
        for (size_t k = 0; live && of->orphan && k < of->nkeys; k++)
            if (of->orphan[k])
                sync_session_orphaned(d, of->id, &of->keys[k], of->why);
        free(of->id);
        free(of->why);
        free(of->orphan);
        sync_session_keys_free(of->keys, of->nkeys);
    }
    free(j->v);
    free(j);
}

static void forget_done(struct daemon_job *base, int status)
{
    struct forget_job *j = (struct forget_job *)base;
    struct lr_daemon *d = base->d;
    bool forgot = false;
    struct orphan_job *oj = NULL;
    for (size_t i = 0; i < j->n; i++) {
        struct forget_folder *ff = &j->v[i];
        if (status == 0 && !d->stopping && ff->forgot && lr_config_find_folder(d->cfg, ff->id)) {
            struct sync_folder *f = sync_folder_get(d, ff->id);
            if (ff->need_ok) {
                f->need = ff->need;
                f->need_known = true;
            }
            if (!oj) {
                oj = lr_xcalloc(1, sizeof(*oj));
                oj->v = lr_xcalloc(j->n, sizeof(*oj->v));
            }
            struct orphan_folder *of = &oj->v[oj->n++];
            of->id = lr_xstrdup(ff->id);
            of->why = ff->why;
            ff->why = NULL;
            of->nkeys = sync_sessions_unfinished(d, ff->id, &of->keys);
            forgot = true;
        }
        free(ff->keep);
        free(ff->gone);
        free(ff->why);
    }
    if (oj) {
        /* Queued before the rounds below, which may end those sessions'
         * transfers: a session fails naming why, not as plain interrupted. */
        oj->base.kind = DAEMON_JOB_SYNC;
        oj->base.work = orphan_work;
        oj->base.done = orphan_done;
        daemon_job_queue(d, &oj->base);
    }
    for (size_t i = 0; i < j->n; i++) {
        struct forget_folder *ff = &j->v[i];
        /* The round prunes the failing items nothing needs any more
         * (and, nothing needed, the staging files left). */
        if (status == 0 && !d->stopping && ff->forgot && lr_config_find_folder(d->cfg, ff->id))
            sync_pull_trigger(d, ff->id);
        free(ff->id);
    }
    /* A FOLDERS of ours that left before the forget said we held their
     * index: sent again, it says we hold nothing, and a device that shares
     * the folder again (or added it back) sends it in full. */
    for (struct sync_peer *p = d->sync ? d->sync->peers : NULL; forgot && p; p = p->next)
        send_folders(d, p);
    free(j->v);
    free(j);
}

static void queue_forget(struct lr_daemon *d)
{
    if (d->stopping || !d->cfg->nfolders)
        return;
    struct forget_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = forget_work;
    j->base.done = forget_done;
    j->v = lr_xcalloc(d->cfg->nfolders, sizeof(*j->v));
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const struct lr_folder_cfg *fc = &d->cfg->folders[i];
        struct forget_folder *ff = &j->v[j->n++];
        ff->id = lr_xstrdup(fc->id);
        ff->keep = lr_xcalloc(fc->nshared + 1, sizeof(*ff->keep));
        ff->gone = lr_xcalloc(fc->nshared + 1, sizeof(*ff->gone));
        for (size_t k = 0; k < fc->nshared; k++) {
            if (!lr_config_find_peer(d->cfg, &fc->shared[k]))
                continue;
            ff->keep[ff->nkeep++] = fc->shared[k];
            const struct sync_peer *p = sync_peer_get(d, &fc->shared[k]);
            const struct lr_proto_folder *e = p->have_folders ? their_folder(p, fc->id) : NULL;
            if (e && e->removed)
                ff->gone[ff->ngone++] = fc->shared[k];
        }
    }
    daemon_job_queue(d, &j->base);
}

/* A peer added, or a folder newly shared with one: its connect grace
 * starts now (a sync --wait right after `peer add` and `folder share`
 * answered "in sync" before the dial had a chance). */
static void note_new_shares(struct lr_daemon *d)
{
    uint64_t now = uv_now(&d->loop);
    for (size_t i = 0; i < d->cfg->npeers; i++)
        sync_peer_get(d, &d->cfg->peers[i].id); /* a peer not met yet counts from now */
    for (struct sync_peer *p = d->sync->peers; p; p = p->next) {
        size_t n = 0;
        if (lr_config_find_peer(d->cfg, &p->id))
            for (size_t i = 0; i < d->cfg->nfolders; i++)
                n += lr_folder_shared_with(&d->cfg->folders[i], &p->id);
        if (n > p->nshared_cfg)
            p->shared_ms = now;
        p->nshared_cfg = n;
    }
}

void sync_redial_for_wait(struct lr_daemon *d, const char *const *folders, size_t n)
{
    if (!d->sync)
        return;
    uint64_t now = uv_now(&d->loop);
    for (size_t i = 0; i < d->cfg->npeers; i++) {
        const struct lr_device_id *id = &d->cfg->peers[i].id;
        bool shares = false;
        for (size_t k = 0; k < d->cfg->nfolders && !shares; k++) {
            const struct lr_folder_cfg *fc = &d->cfg->folders[k];
            bool named = n == 0;
            for (size_t m = 0; m < n && !named; m++)
                named = strcmp(folders[m], fc->id) == 0;
            shares = named && lr_folder_shared_with(fc, id);
        }
        struct sync_peer *p = shares ? sync_peer_get(d, id) : NULL;
        if (!p || p->conn)
            continue;
        p->redial_ms = now;
        daemon_dial_now(d, id);
    }
}

void sync_config_changed(struct lr_daemon *d)
{
    if (!d->sync)
        return;
    note_new_shares(d);
    sync_pull_config_changed(d);
    queue_forget(d);
    for (struct sync_peer *p = d->sync->peers; p; p = p->next) {
        if (!p->conn)
            continue;
        send_folders(d, p);
        if (p->have_folders)
            apply_their_folders(d, p, &p->theirs, false);
    }
}

void sync_folder_progress(struct lr_daemon *d, const char *folder_id)
{
    if (!d->sync)
        return;
    struct sync_folder *f = sync_folder_get(d, folder_id);
    if (!f->in_error)
        sync_local_changed(d, folder_id);
}

void sync_folder_scanned(struct lr_daemon *d, const char *folder_id, bool ok)
{
    if (!d->sync)
        return;
    struct sync_folder *f = sync_folder_get(d, folder_id);
    /* Before the FOLDERS that lists it again (a folder back from error):
     * that one must still say "scanning" (announce_scanning). */
    for (struct sync_link *l = d->sync->links; ok && l; l = l->next)
        if (l->told_scanning && strcmp(l->folder, folder_id) == 0)
            l->untell_scanning = true;
    if (ok != !f->in_error) {
        /* Usability changed: tell the peers (an errored folder is not announced). */
        f->in_error = !ok;
        sync_config_changed(d);
    }
    if (!ok)
        return;
    sync_local_changed(d, folder_id);
    sync_pull_trigger(d, folder_id);
}

void sync_peer_index_stats(struct lr_daemon *d, const struct lr_device_id *peer,
                           struct sync_peer_index_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!d->sync)
        return;
    for (const struct sync_peer *p = d->sync->peers; p; p = p->next) {
        if (!lr_device_id_eq(&p->id, peer))
            continue;
        out->bytes_sent = p->index_sent;
        out->bytes_received = p->index_recv;
        out->deltas_sent = p->deltas_sent;
        out->deltas_received = p->deltas_recv;
        out->delta_misses = p->delta_misses;
        out->summaries_sent = p->summaries_sent;
        out->summaries_received = p->summaries_recv;
    }
}

uint64_t sync_fingerprint(struct lr_daemon *d)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < d->nfolders; i++) {
        /* Whether it is in error, not the state: scanning and syncing are
         * read elsewhere (a scan) or follow from the needs and transfers. */
        h = fp_mix(h, d->folders[i].state == FOLDER_ERROR);
        h = fp_mix(h, sync_items_count(d, d->folders[i].id));
    }
    if (!d->sync)
        return h;
    /* Progress only: sequences, needs, connections. The busy flags (a sender
     * or pull running, a burst arriving, transfers in flight) are not done
     * whenever they are set, and one that was set and cleared again without
     * moving a sequence or a need changed nothing (a scan that found nothing
     * still runs a sender that sends nothing). */
    for (const struct sync_peer *p = d->sync->peers; p; p = p->next) {
        h = fp_mix(fp_mix(h, p->gen), p->have_folders);
        for (size_t i = 0; i < p->theirs.n; i++)
            h = fp_mix(h, (uint64_t)p->theirs.v[i].stopped |
                              (uint64_t)p->theirs.v[i].unshared << 1 |
                              (uint64_t)p->theirs.v[i].removed << 2);
    }
    for (const struct sync_link *l = d->sync->links; l; l = l->next) {
        h = fp_mix(fp_mix(h, l->their_index_id), l->their_max_seq);
        h = fp_mix(fp_mix(h, l->their_view_id), l->their_view_seq);
        h = fp_mix(fp_mix(h, l->epoch), l->send_next);
        h = fp_mix(fp_mix(h, l->listed), l->their_scanning);
    }
    for (const struct sync_folder *f = d->sync->folders; f; f = f->next) {
        h = fp_mix(fp_mix(h, f->need.items), f->need.bytes);
        h = fp_mix(h,
                   (uint64_t)f->need_known | (uint64_t)f->stuck << 1 | (uint64_t)f->in_error << 2);
    }
    return h;
}

bool sync_folder_applying(struct lr_daemon *d, const char *folder_id, uint64_t within_ms)
{
    if (!d->sync)
        return false;
    const struct sync_folder *f = sync_folder_get(d, folder_id);
    return f->pull_running || f->commits > 0 ||
           (f->applied_at && uv_now(&d->loop) - f->applied_at < within_ms);
}

uint64_t sync_folder_applied_at(struct lr_daemon *d, const char *folder_id)
{
    return d->sync ? sync_folder_get(d, folder_id)->applied_at : 0;
}

static bool wrote(struct sync_folder *f, const char *root, const char *path, uint64_t since,
                  bool running, size_t *budget);

/* Every entry of a directory we wrote is ours too. Its identity alone does
 * not tell: it is taken when the loop hears of the commit, and a file the
 * user made in it between our rename and then (a save right after our file
 * appeared) was in the ctime noted, so the save was held 10 s (ASan CI
 * run). Files are judged by name (one made since is not noted); a file of
 * ours edited in place does not change the directory, as before. */
static bool dir_all_ours(struct sync_folder *f, const char *root, const char *path, uint64_t since,
                         bool running, size_t *budget)
{
    char *full = lr_xasprintf("%s/%s", root, path);
    DIR *dir = opendir(full);
    free(full);
    if (!dir)
        return errno == ENOENT; /* gone meanwhile: the entry's own check decides */
    bool ours = true;
    struct dirent *de;
    while (ours && *budget > 0 && (de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *rel = lr_xasprintf("%s/%s", path, de->d_name);
        if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
            ours = wrote(f, root, rel, since, running, budget);
        } else {
            (*budget)--;
            ours = running || lr_ownset_get(&f->own, rel, since);
        }
        free(rel);
    }
    closedir(dir);
    return ours;
}

/* budget: entries that may still be looked at; none left, the rest counts
 * as ours (too many to tell, as the watcher's own overflow). */
static bool wrote(struct sync_folder *f, const char *root, const char *path, uint64_t since,
                  bool running, size_t *budget)
{
    if (*budget == 0)
        return true;
    (*budget)--;
    struct lr_ownset_entry *e = lr_ownset_get(&f->own, path, since);
    if (!e) /* a running round notes what it wrote when it ends */
        return running;
    if (!e->ino)
        return true; /* being written */
    char *full = lr_xasprintf("%s/%s", root, path);
    struct stat sb;
    int rc = lstat(full, &sb);
    free(full);
    if (e->ino == LR_OWNSET_ABSENT)
        return rc < 0 && errno == ENOENT;
    if (rc < 0 || (uint64_t)sb.st_ino != e->ino || lr_timespec_ns(&sb.st_ctim) != e->ctime_ns)
        return false;
    if (!S_ISDIR(sb.st_mode) || e->entries_ours)
        return true;
    /* Looked at once per identity: held, this check runs every 100 ms for
     * every directory a bulk pull made, and read them all each time. */
    bool ours = dir_all_ours(f, root, path, since, running, budget);
    /* A verdict, not "too many to tell" nor "not noted yet" (a running
     * round notes its paths when it ends). */
    if (*budget > 0 && !running)
        e->entries_ours = ours;
    return ours;
}

bool sync_folder_wrote(struct lr_daemon *d, const char *folder_id, const char *root,
                       const char *path, size_t *budget)
{
    if (!d->sync)
        return false;
    struct sync_folder *f = sync_folder_get(d, folder_id);
    uint64_t now = uv_now(&d->loop);
    return wrote(f, root, path, now > SYNC_OWN_KEEP_MS ? now - SYNC_OWN_KEEP_MS : 0,
                 f->pull_running, budget);
}

void sync_folder_note_written(struct lr_daemon *d, const char *folder_id, const char *root,
                              const uint8_t *path, size_t len, uint64_t ino, int64_t ctime_ns)
{
    struct sync_folder *f = sync_folder_get(d, folder_id);
    uint64_t now = uv_now(&d->loop);
    if (ino)
        lr_ownset_set(&f->own, path, len, ino, ctime_ns, now, SYNC_OWN_KEEP_MS);
    /* Each entry (the path itself when its identity is not given, then the
     * directories above it) as it is now: a directory we made is ours only
     * until the user adds to it, a deletion until the name comes back. */
    for (size_t l = len; l > 0;) {
        if (!ino || l < len) {
            const struct lr_ownset_entry *e;
            char *rel = lr_xstrndup((const char *)path, l);
            if (l < len && (e = lr_ownset_get(&f->own, rel, now)) && e->ino) {
                free(rel);
                break; /* noted with its identity just now, and the rest above it */
            }
            char *full = lr_xasprintf("%s/%s", root, rel);
            struct stat sb;
            if (lstat(full, &sb) == 0)
                lr_ownset_set(&f->own, (const uint8_t *)rel, l, (uint64_t)sb.st_ino,
                              lr_timespec_ns(&sb.st_ctim), now, SYNC_OWN_KEEP_MS);
            else if (errno == ENOENT)
                lr_ownset_set(&f->own, (const uint8_t *)rel, l, LR_OWNSET_ABSENT, 0, now,
                              SYNC_OWN_KEEP_MS);
            free(full);
            free(rel);
        }
        while (l > 0 && path[l - 1] != '/')
            l--;
        if (l > 0)
            l--;
    }
}

/* Their latest FOLDERS lists the folder as in error there (option 6) or
 * not shared with us (option 7): why it cannot sync, or NULL. */
static const char *peer_stopped(const struct sync_peer *p, const char *folder_id)
{
    const struct lr_proto_folder *e = their_folder(p, folder_id);
    if (e && e->stopped)
        return "has the folder in error (see 'landropic status' there)";
    if (e && e->unshared)
        return "has the folder but does not share it with this device ('landropic folder "
               "share' there)";
    return NULL;
}

void sync_folder_status(struct lr_daemon *d, const char *folder_id, struct sync_folder_status *out)
{
    memset(out, 0, sizeof(*out));
    if (!d->sync)
        return;
    struct sync_folder *f = sync_folder_get(d, folder_id);
    out->need_items = f->need.items;
    out->need_files = f->need.files;
    out->need_bytes = f->need.bytes;
    out->got_bytes = f->nxfers ? sync_pull_got_bytes(d, folder_id) : 0;
    if (out->got_bytes > out->need_bytes)
        out->got_bytes = out->need_bytes;
    out->active = f->pull_queued || f->pull_running || f->nxfers > 0;
    out->working = f->nxfers > 0 || ((f->pull_queued || f->pull_running) && f->need.items > 0);
    if (f->nxfers)
        snprintf(out->why, sizeof(out->why), "pulling (%zu transfer%s in flight)", f->nxfers,
                 f->nxfers == 1 ? "" : "s");
    else if (out->active)
        snprintf(out->why, sizeof(out->why), "a pull round is %s",
                 f->pull_running ? "running" : "queued");
    out->fetching_none = out->active && !f->nxfers;
    char id[LR_DEVICE_ID_SHORTLEN + 1];
    for (struct sync_link *l = d->sync->links; l; l = l->next)
        if (l->listed && strcmp(l->folder, folder_id) == 0 && (l->send_busy || l->send_blocked)) {
            if (!out->active) {
                lr_device_id_short(&l->peer, id);
                snprintf(out->why, sizeof(out->why), "sending our index to %s%s", id,
                         l->send_blocked ? " (waiting for the connection to drain)" : "");
            }
            out->active = true;
            out->fetching_none = false;
        }
    /* An INDEX job not yet decoded may be for this folder. */
    for (const struct daemon_job *j = d->jobs_head; j; j = j->next)
        if (j->kind == DAEMON_JOB_SYNC && j->work == recv_work)
            out->active = true;
    if (d->job_running && d->job_running->kind == DAEMON_JOB_SYNC &&
        d->job_running->work == recv_work)
        out->active = true;
    if (out->active && !out->why[0])
        snprintf(out->why, sizeof(out->why), "applying a received index");
    struct folder_rt *rt = daemon_folder(d, folder_id);
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder_id);
    if (!rt || !fc || rt->state == FOLDER_ERROR) {
        out->settled = true;
        return;
    }
    /* A send-only folder never pulls: what it needs waits for an override. */
    bool settled =
        !out->active && (out->need_items == 0 || f->stuck || fc->mode == LR_MODE_SEND_ONLY);
    if (!out->active && !settled) {
        snprintf(out->why, sizeof(out->why), "%llu item%s still to apply",
                 (unsigned long long)out->need_items, out->need_items == 1 ? "" : "s");
        out->fetching_none = true;
    }
    uint64_t now = uv_now(&d->loop);
    for (size_t i = 0; i < fc->nshared && settled; i++) {
        struct sync_peer *p = sync_peer_get(d, &fc->shared[i]);
        if (!lr_config_find_peer(d->cfg, &fc->shared[i]))
            continue;
        lr_device_id_short(&p->id, id);
        if (!p->conn) {
            /* The connect grace at start, again after we closed the
             * connection ourselves to have it come back (a sync --wait
             * answered "in sync" in that gap while the peer lacked files),
             * and after the path failed (black-box round 27: the wait
             * ended 0.1 s after an idle timeout, the peer lacking files). */
            bool dialling = p->redial_ms && now - p->redial_ms < SYNC_REDIAL_GRACE_MS && d->tr &&
                            lr_transport_connecting(d->tr, &p->id);
            settled = !dialling && now - d->started_ms >= SYNC_CONNECT_GRACE_MS &&
                      now - p->shared_ms >= SYNC_CONNECT_GRACE_MS &&
                      (!p->closed_ms || now - p->closed_ms >= SYNC_CONNECT_GRACE_MS) &&
                      (!p->lost_ms || now - p->lost_ms >= SYNC_CONNECT_GRACE_MS);
            if (!settled)
                snprintf(out->why, sizeof(out->why), "peer %s not connected yet", id);
            continue;
        }
        if (!p->have_folders) {
            settled = false;
            snprintf(out->why, sizeof(out->why), "no folder list from peer %s yet", id);
            continue;
        }
        const char *stop = peer_stopped(p, folder_id);
        if (stop) {
            settled = false;
            out->peer_stopped = true;
            snprintf(out->why, sizeof(out->why), "peer %s %s", id, stop);
            continue;
        }
        struct sync_link *l = sync_link_find(d, &p->id, folder_id);
        if (l && l->listed && l->their_scanning) {
            settled = false;
            snprintf(out->why, sizeof(out->why), "peer %s is still scanning the folder", id);
        } else if (l && l->listed) {
            settled = l->recv_last && !l->recv_mid && l->send_caught_up;
            if (!settled)
                snprintf(out->why, sizeof(out->why),
                         "index exchange with peer %s: theirs %s, ours %s", id,
                         l->recv_last && !l->recv_mid ? "received" : "still arriving",
                         l->send_caught_up ? "sent" : "not all sent");
        }
    }
    out->settled = settled;
}
