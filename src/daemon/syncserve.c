/*
 * syncserve.c - answering a peer's WANTs (docs/protocol.md §6.7): a WANT is
 * served only for a folder syncing with that peer, only from the path's
 * current local record if it is a live regular file with the wanted blocks
 * hash and a chunk at that offset, size and hash, read through the store
 * (regular files only, never following symlinks) and checked again before it
 * is sent: against the chunk's lr_weak64 where this device recorded one when
 * it read the bytes itself, else against its SHA-256: a chunk that changed
 * since the scan is not sent (with the weak check, but for odds of 2^-64,
 * which the receiver's own SHA-256 then catches), the file is rescanned and
 * the answer is NO_SUCH_CHUNK. Reads run as jobs on the serve side lane
 * (sync.h), beside the serial queue, that drain a peer's queue in batches;
 * they look records up through a read-only second handle on the index
 * (SQLite WAL lets it read while the serial queue writes), so serving never
 * waits for a scan or a commit and a commit never waits for serving.
 *
 * A WANT for a version we are still downloading ourselves (we announced
 * its chunks with HAVE, §6.10) is served from that transfer's staging file
 * when the index cannot serve it: only a chunk the scheduler has as
 * verified and written, read through the transfer's descriptor (held open
 * by a reference until the answer is built) and hashed again before it is
 * sent, like any served chunk; anything else is NO_SUCH_CHUNK.
 */
#include "daemon/syncint.h"

#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOD "serve"
/* Bytes of answers queued for a peer above which new WANTs get BUSY. */
#define SERVE_QUEUED_MAX (32u << 20)

struct sync_serve_req {
    uint64_t req_id;
    char *folder;
    char *root;
    char *path; /* NUL-terminated copy */
    size_t path_len;
    struct lr_hash blocks_hash, hash;
    uint64_t off;
    uint32_t size;
    struct sync_xfer *staging; /* a transfer of this version holding the chunk, or NULL */
};

/* A WANT parked until the peer's FOLDERS (already decoded once). */
struct sync_early_want {
    uint8_t *p;
    size_t len;
};

struct serve_job {
    struct daemon_job base;
    struct lr_device_id peer;
    uint64_t gen;
    struct sync_serve_req *reqs;
    size_t n;
    struct lr_buf *out; /* one CHUNK payload per request */
    char *rescan;       /* a folder whose index proved stale, or NULL */
    /* A file whose bytes no longer match its record while its stat does (a
     * write through a shared mapping to a page already dirty moves no
     * timestamp): the scan would trust the stat, so the record's ctime is
     * cleared first and the file is read again (stale_work). NULL: none. */
    char *stale_folder;
    char *stale_path;
    size_t stale_len;
    uint64_t stale_inode;
    size_t by_weak; /* of them, accepted by the stored weak check (no SHA-256) */
    size_t from_staging;
};

/* Loop side (the staging reference is dropped here). */
static void req_release(struct sync_serve_req *r)
{
    sync_pull_staging_unref(r->staging);
    r->staging = NULL;
    free(r->folder);
    free(r->root);
    free(r->path);
}

static void answer_now(struct lr_daemon *d, struct sync_peer *p, uint64_t req_id, uint64_t status)
{
    struct lr_buf b;
    lr_buf_init(&b, 64);
    if (lr_proto_chunk_encode(NULL, req_id, status, NULL, 0, false, &b) == 0) {
        size_t len;
        uint8_t *pl = lr_buf_detach(&b, &len);
        sync_send(d, p, LR_STREAM_BULK, LR_MSG_CHUNK, pl, len);
    }
    lr_buf_release(&b);
}

/* The index of chunk (off, size, hash) in a live file record with that
 * blocks hash, or -1. */
static ptrdiff_t record_find(const struct lr_file_rec *r, const struct sync_serve_req *q)
{
    if (r->deleted || r->type != LR_FT_FILE ||
        memcmp(&r->blocks_hash, &q->blocks_hash, sizeof(q->blocks_hash)) != 0)
        return -1;
    size_t lo = 0, hi = r->nchunks;
    while (lo < hi) { /* chunks are in offset order */
        size_t mid = lo + (hi - lo) / 2;
        if (r->chunks[mid].off < q->off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->nchunks && r->chunks[lo].off == q->off && r->chunks[lo].len == q->size &&
        memcmp(&r->chunks[lo].hash, &q->hash, sizeof(q->hash)) == 0)
        return (ptrdiff_t)lo;
    return -1;
}

/* The current record of q's path with its chunks, from the cache when it holds q's version. */
static const struct lr_file_rec *serve_record(struct lr_daemon *d, const struct sync_serve_req *q,
                                              struct lr_err *err)
{
    struct sync_state *s = d->sync;
    struct lr_file_rec *c = &s->serve_rec;
    if (s->serve_folder && strcmp(s->serve_folder, q->folder) == 0 && c->path &&
        c->path_len == q->path_len && memcmp(c->path, q->path, q->path_len) == 0 &&
        memcmp(&c->blocks_hash, &q->blocks_hash, sizeof(q->blocks_hash)) == 0)
        return c;
    lr_file_rec_release(c);
    free(s->serve_folder);
    s->serve_folder = NULL;
    s->serve_plain_left = 0;
    struct lr_index *ix = sync_side_ix(d, err);
    if (!ix)
        return NULL;
    if (lr_index_file_get(ix, q->folder, (const uint8_t *)q->path, q->path_len, LR_IX_CHUNKS, c,
                          err) != 0)
        return NULL;
    s->serve_folder = lr_xstrdup(q->folder);
    return c;
}

/*
 * Whether to try zstd on the next chunk of the cached record. A chunk that
 * did not shrink makes the next SERVE_PLAIN_RUN chunks of the same version
 * go out raw (media and archives would otherwise cost a failed compression
 * per chunk, about 0.3 CPU-seconds per GiB); then one is tried again, since
 * a file can mix compressible and incompressible parts.
 */
#define SERVE_PLAIN_RUN 15

static bool serve_try_compress(struct sync_state *s)
{
    if (s->serve_plain_left == 0)
        return true;
    s->serve_plain_left--;
    return false;
}

/* A chunk of a version being downloaded, from its staging file: 0 if it
 * read whole and hashes right. The descriptor is the transfer's (kept open
 * by q->staging's reference). */
static int staging_read(const struct sync_serve_req *q, uint8_t *buf)
{
    int fd = sync_pull_staging_fd(q->staging);
    size_t got = 0;
    while (got < q->size) {
        ssize_t n = pread(fd, buf + got, q->size - got, (off_t)(q->off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return LR_EVERIFY;
        got += (size_t)n;
    }
    struct lr_hash h;
    lr_sha256(buf, q->size, &h);
    return memcmp(&h, &q->hash, sizeof(h)) == 0 ? 0 : LR_EVERIFY;
}

static void serve_fd_close(int *fd, const char **path)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    *path = NULL;
}

/* lr_store_read_chunk with the descriptor kept for the next request of the
 * same path; closed on any failure, so a replaced or changed file is opened
 * afresh next time (every chunk is verified against its hash either way). */
static int serve_read(struct lr_store *st, const struct sync_serve_req *q, uint64_t weak,
                      bool *by_weak, int *fd, const char **path, uint8_t *dst, struct lr_err *err)
{
    int rc;
    if (*fd < 0 || strcmp(*path, q->path) != 0) {
        serve_fd_close(fd, path);
        if ((rc = lr_store_open_read(st, q->path, fd, NULL, err)) != 0)
            return rc;
        *path = q->path;
    }
    rc =
        lr_store_read_chunk_named(*fd, q->path, q->off, q->size, &q->hash, weak, by_weak, dst, err);
    if (rc != 0)
        serve_fd_close(fd, path);
    return rc;
}

static void serve_work(struct daemon_job *base)
{
    struct serve_job *j = (struct serve_job *)base;
    struct lr_daemon *d = base->d;
    uint8_t *buf = lr_xmalloc(LR_PROTO_CHUNK_DATA_MAX);
    struct lr_store *st = NULL;
    const char *st_root = NULL;
    /* The file of the previous request stays open: a large file's chunks
     * come in runs (14 000 opens of the same file per GiB otherwise). */
    int rfd = -1;
    const char *rpath = NULL;
    j->out = lr_xcalloc(j->n ? j->n : 1, sizeof(*j->out));
    for (size_t i = 0; i < j->n; i++) {
        const struct sync_serve_req *q = &j->reqs[i];
        uint64_t status = LR_PROTO_CHUNK_NO_SUCH;
        struct lr_err err = {0};
        lr_buf_init(&j->out[i], LR_PROTO_CHUNK_MAX);
        bool compress = false;
        bool direct = false; /* read straight into the frame (raw) */
        const struct lr_file_rec *r = NULL;
        /* Our own download of that version first: no index lookup then. */
        if (q->staging && staging_read(q, buf) == 0) {
            status = LR_PROTO_CHUNK_OK;
            compress = serve_try_compress(d->sync);
            j->from_staging++;
        } else {
            r = serve_record(d, q, &err);
        }
        ptrdiff_t k = r ? record_find(r, q) : -1;
        if (r) {
            if (k >= 0) {
                if (!st_root || strcmp(st_root, q->root) != 0) {
                    serve_fd_close(&rfd, &rpath);
                    lr_store_close(st);
                    st = NULL;
                    st_root = NULL;
                    if (lr_store_open(q->root, &st, &err) == 0)
                        st_root = q->root;
                }
                /* Decided before the read: a chunk sent raw is read into
                 * its frame, not copied there (a memcpy of every byte served). */
                compress = serve_try_compress(d->sync);
                uint8_t *dst = buf;
                direct = !compress &&
                         lr_proto_chunk_encode_raw(q->req_id, q->size, &j->out[i], &dst) == 0;
                if (!direct) {
                    lr_buf_reset(&j->out[i]); /* no partial header left behind */
                    dst = buf;
                }
                bool by_weak = false;
                int rc =
                    st ? serve_read(st, q, r->chunks[k].weak, &by_weak, &rfd, &rpath, dst, &err)
                       : LR_ENOMARKER;
                j->by_weak += rc == 0 && by_weak;
                if (rc == 0) {
                    status = LR_PROTO_CHUNK_OK;
                } else {
                    if (direct)
                        lr_buf_reset(&j->out[i]);
                    direct = false;
                    char *e = lr_escs(q->path);
                    lr_info(MOD, "folder=%s path=%s chunk off=%llu not served: %s", q->folder, e,
                            (unsigned long long)q->off, lr_err_msg(&err, rc));
                    free(e);
                    if (rc == LR_EVERIFY || rc == LR_ECHANGED || rc == -ENOENT) {
                        free(j->rescan);
                        j->rescan = lr_xstrdup(q->folder);
                    }
                    if (rc == LR_EVERIFY && !j->stale_path) {
                        j->stale_folder = lr_xstrdup(q->folder);
                        j->stale_path = lr_xstrdup(q->path);
                        j->stale_len = q->path_len;
                        j->stale_inode = r->inode;
                    }
                    if (rc != LR_EVERIFY && rc != LR_ECHANGED && rc != -ENOENT && rc != -ELOOP)
                        status = LR_PROTO_CHUNK_ERROR;
                }
            }
        }
        if (direct)
            continue;
        if (!d->sync->serve_zc)
            d->sync->serve_zc = lr_proto_zc_new();
        if (lr_proto_chunk_encode(
                d->sync->serve_zc, q->req_id, status, status == LR_PROTO_CHUNK_OK ? buf : NULL,
                status == LR_PROTO_CHUNK_OK ? q->size : 0, compress, &j->out[i]) < 0) {
            lr_buf_reset(&j->out[i]);
            lr_proto_chunk_encode(NULL, q->req_id, LR_PROTO_CHUNK_ERROR, NULL, 0, false,
                                  &j->out[i]);
        } else if (compress && j->out[i].len >= q->size) {
            d->sync->serve_plain_left = SERVE_PLAIN_RUN;
        }
    }
    serve_fd_close(&rfd, &rpath);
    lr_store_close(st);
    free(buf);
}

static void queue_serve(struct lr_daemon *d, struct sync_peer *p);

/* A file that failed its check with its stat unchanged: its record's ctime
 * cleared (serial queue), so the rescan queued when this ends reads it. */
struct stale_job {
    struct daemon_job base;
    char *folder;
    char *path;
    size_t path_len;
    uint64_t inode;
};

static void stale_work(struct daemon_job *base)
{
    struct stale_job *j = (struct stale_job *)base;
    struct lr_file_rec r;
    struct lr_err err = {0};
    /* Only if the record still says what the serve side read: a scan since
     * then has recorded the file afresh. */
    if (lr_index_file_get(base->d->ix, j->folder, (const uint8_t *)j->path, j->path_len, 0, &r,
                          &err) != 0)
        return;
    bool same = !r.deleted && r.type == LR_FT_FILE && r.inode == j->inode && r.ctime_ns != 0;
    lr_file_rec_release(&r);
    if (same && lr_index_file_set_stat(base->d->ix, j->folder, (const uint8_t *)j->path,
                                       j->path_len, j->inode, 0, &err) == 0) {
        char *e = lr_escs(j->path);
        lr_info(MOD, "folder=%s path=%s changed with its size and times kept: read again",
                j->folder, e);
        free(e);
    }
}

static void stale_done(struct daemon_job *base, int status)
{
    struct stale_job *j = (struct stale_job *)base;
    if (status == 0 && !base->d->stopping)
        scanjobs_queue(base->d, (const char *const *)&j->folder, 1, NULL, NULL);
    free(j->folder);
    free(j->path);
    free(j);
}

static void serve_done(struct daemon_job *base, int status)
{
    struct serve_job *j = (struct serve_job *)base;
    struct lr_daemon *d = base->d;
    if (!d->stopping) {
        struct sync_peer *p = sync_peer_get(d, &j->peer);
        if (p->gen == j->gen) {
            p->serve_busy = false;
            for (size_t i = 0; status == 0 && i < j->n; i++) {
                size_t len;
                uint8_t *pl = lr_buf_detach(&j->out[i], &len);
                sync_send(d, p, LR_STREAM_BULK, LR_MSG_CHUNK, pl, len);
            }
            if (p->nserve)
                queue_serve(d, p);
        }
        /* The stale job's own scan is the one that reads the file: a scan
         * queued now as well could start first, trust the stat, and leave
         * the stale job's scan as a second full pass. */
        bool stale_scans =
            status == 0 && j->stale_path && j->rescan && strcmp(j->rescan, j->stale_folder) == 0;
        if (status == 0 && j->stale_path) {
            struct stale_job *s = lr_xcalloc(1, sizeof(*s));
            s->base.kind = DAEMON_JOB_SYNC;
            s->base.work = stale_work;
            s->base.done = stale_done;
            s->folder = j->stale_folder;
            s->path = j->stale_path;
            s->path_len = j->stale_len;
            s->inode = j->stale_inode;
            j->stale_folder = j->stale_path = NULL;
            daemon_job_queue(d, &s->base);
        }
        if (status == 0 && j->rescan && !stale_scans)
            scanjobs_queue(d, (const char *const *)&j->rescan, 1, NULL, NULL);
        if (j->by_weak) {
            char id[LR_DEVICE_ID_SHORTLEN + 1];
            lr_device_id_short(&j->peer, id);
            lr_debug(MOD, "peer=%s served %zu chunks checked by their stored XXH3 (no SHA-256)", id,
                     j->by_weak);
        }
        if (j->from_staging) {
            char id[LR_DEVICE_ID_SHORTLEN + 1];
            lr_device_id_short(&j->peer, id);
            lr_debug(MOD, "peer=%s served %zu chunks from staging (versions still downloading)", id,
                     j->from_staging);
        }
    }
    for (size_t i = 0; i < j->n; i++) {
        req_release(&j->reqs[i]);
        if (j->out)
            lr_buf_release(&j->out[i]);
    }
    free(j->reqs);
    free(j->out);
    free(j->rescan);
    free(j->stale_folder);
    free(j->stale_path);
    free(j);
}

static void serve_start(struct daemon_job *base)
{
    struct serve_job *j = (struct serve_job *)base;
    struct sync_peer *p = sync_peer_get(base->d, &j->peer);
    if (p->gen != j->gen)
        return; /* the connection changed: its requests were dropped */
    j->reqs = p->serve;
    j->n = p->nserve;
    p->serve = NULL;
    p->nserve = 0;
}

static void queue_serve(struct lr_daemon *d, struct sync_peer *p)
{
    if (p->serve_busy || d->stopping)
        return;
    struct serve_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.start = serve_start;
    j->base.work = serve_work;
    j->base.done = serve_done;
    j->peer = p->id;
    j->gen = p->gen;
    p->serve_busy = true;
    daemon_side_queue(d, DAEMON_SIDE_SERVE, &j->base);
}

void sync_serve_on_want(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                        size_t len)
{
    struct lr_proto_want w;
    struct lr_err err = {0};
    int rc = lr_proto_want_decode(payload, len, &w, &err);
    if (rc < 0) {
        sync_peer_fatal(d, p, "invalid WANT", rc, &err);
        return;
    }
    struct sync_link *l = sync_link_find(d, &p->id, w.folder_id);
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, w.folder_id);
    if (!p->have_folders && fc && lr_folder_shared_with(fc, &p->id)) {
        /* Its FOLDERS went first but on another stream: whether the folder
         * is shared on this connection is not known yet (not a refusal,
         * which would make the puller give up on us for that file). */
        if (p->nearly >= SYNC_SERVE_QUEUE_MAX) {
            answer_now(d, p, w.req_id, LR_PROTO_CHUNK_BUSY);
            return;
        }
        p->early = lr_xreallocarray(p->early, p->nearly + 1, sizeof(*p->early));
        struct sync_early_want *e = &p->early[p->nearly++];
        e->p = lr_xmalloc(len ? len : 1);
        memcpy(e->p, payload, len);
        e->len = len;
        return;
    }
    if (!l || !l->listed || !fc || !lr_folder_shared_with(fc, &p->id)) {
        answer_now(d, p, w.req_id, LR_PROTO_CHUNK_NOT_SHARED);
        return;
    }
    if (p->nserve >= SYNC_SERVE_QUEUE_MAX || p->q_bytes > SERVE_QUEUED_MAX) {
        answer_now(d, p, w.req_id, LR_PROTO_CHUNK_BUSY);
        return;
    }
    p->serve = lr_xreallocarray(p->serve, p->nserve + 1, sizeof(*p->serve));
    struct sync_serve_req *q = &p->serve[p->nserve++];
    memset(q, 0, sizeof(*q));
    q->req_id = w.req_id;
    q->folder = lr_xstrdup(w.folder_id);
    q->root = lr_xstrdup(fc->path);
    q->path = lr_xmalloc(w.path_len + 1);
    memcpy(q->path, w.path, w.path_len);
    q->path[w.path_len] = '\0';
    q->path_len = w.path_len;
    q->blocks_hash = w.blocks_hash;
    q->hash = w.hash;
    q->off = w.offset;
    q->size = w.size;
    q->staging = sync_pull_staging_ref(d, q->folder, w.path, w.path_len, &w.blocks_hash, w.offset,
                                       w.size, &w.hash);
    queue_serve(d, p);
}

static void early_clear(struct sync_peer *p)
{
    for (size_t i = 0; i < p->nearly; i++)
        free(p->early[i].p);
    free(p->early);
    p->early = NULL;
    p->nearly = 0;
}

void sync_serve_replay(struct lr_daemon *d, struct sync_peer *p)
{
    struct sync_early_want *v = p->early;
    size_t n = p->nearly;
    uint64_t gen = p->gen;
    p->early = NULL;
    p->nearly = 0;
    for (size_t i = 0; i < n; i++) {
        /* A fatal answer (bad WANT) ends the connection: the rest is moot. */
        if (p->gen == gen && !d->stopping)
            sync_serve_on_want(d, p, v[i].p, v[i].len);
        free(v[i].p);
    }
    free(v);
}

void sync_serve_peer_down(struct lr_daemon *d, struct sync_peer *p)
{
    (void)d;
    early_clear(p);
    for (size_t i = 0; i < p->nserve; i++)
        req_release(&p->serve[i]);
    free(p->serve);
    p->serve = NULL;
    p->nserve = 0;
    p->serve_busy = false;
}
