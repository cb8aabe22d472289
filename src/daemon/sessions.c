/*
 * sessions.c - transfer sessions (see sessions.h).
 *
 * Handles: a checkpoint timer and a check handle, both unreferenced (they
 * never keep the loop alive); the check handle closes both in the first
 * loop iteration after d->stopping is set, as syncitems.c does, so they are
 * closed before the loop ends. The final checkpoint is written by
 * sync_sessions_free(), after the loop, when no job runs any more.
 */
#include "daemon/sessions.h"

#include "daemon/syncint.h"
#include "store/staging_reuse.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "sessions"
/* A checkpoint job writes the changed sessions once this many changes
 * (chunks, starts, ends) accumulated or this long after the last one,
 * whichever comes first (sync/session.h), checked every CHECK_MS. */
#define CHECKPOINT_EVENTS 4096
#define CHECKPOINT_MS 500
#define CHECK_MS 100
/* Finished sessions kept in memory as history (the newest). */
#define HISTORY_MAX 256
/* Complete and failed sessions older than this are pruned from the index at start. */
#define HISTORY_KEEP_MS (7LL * 24 * 3600 * 1000)
/* An active session whose connected peers have all been silent this long
 * says so in its error, and each silent one is probed: a PING that goes
 * unanswered for SILENT_PROBE_MS closes its connection (a peer killed or
 * frozen mid-file is otherwise only found out at the 60 s idle timeout). */
#define SILENT_MS 5000u
#define SILENT_PROBE_MS 10000u
#define SILENT_SWEEP_MS 1000u
/* Sessions loaded at start. */
#define LOAD_MAX 1000

struct sync_session {
    struct sync_session *next;
    struct sync_session *hnext; /* same bucket of the lookup table */
    char *folder;
    uint8_t *path; /* NUL-terminated */
    size_t path_len;
    struct lr_hash blocks;
    struct lr_session core; /* state, counters, dirty, in use; wall-clock ms */
    char **peers;           /* device IDs, text */
    size_t npeers;
    char *error;
    /* Why it fails when its transfer ends: another version of the path
     * was applied while it ran (SUPERSEDED or GONE), or NULL. */
    const char *superseded;
    char *doomed; /* no device holds its version any more: why (it ran then) */
};

struct sync_sessions {
    struct sync_session *head; /* newest first */
    size_t n;
    /* Every session of the list again, by version (a transfer's start looks
     * its session up: a list walk cost 14 % of the loop thread with the
     * thousands in flight of a 20 000 file pull). Power-of-two size. */
    struct sync_session **tab;
    size_t tabsz;
    struct lr_session_ckpt ck;
    uv_timer_t timer;
    uv_check_t check;
    bool closed;
    bool job_busy;
    int64_t swept_ms; /* probe_silent's last sweep */
    /* Some session may wait to resume (interrupted or pending): a start
     * looks for other versions of its path among them (supersede). */
    bool maybe_waiting;
    /* A walk of the list is ending sessions: a checkpoint (whose trim frees
     * finished sessions, maybe the walk's next one) waits for its end. */
    bool walking;
    /* Finished sessions written since the index's table was last trimmed. */
    size_t finished_written;
};

/* Whether s is the session of that version of that path. The version's
 * hash goes first: it tells almost every pair apart at its first byte (this
 * runs per transfer, over up to every session kept). */
static bool same_version(const struct sync_session *s, const char *folder, const uint8_t *path,
                         size_t path_len, const struct lr_hash *blocks)
{
    return memcmp(&s->blocks, blocks, sizeof(*blocks)) == 0 && s->path_len == path_len &&
           memcmp(s->path, path, path_len) == 0 && strcmp(s->folder, folder) == 0;
}

static size_t bucket(const struct sync_sessions *r, const struct lr_hash *blocks)
{
    uint64_t h;
    memcpy(&h, blocks->b, sizeof(h)); /* a SHA-256: already uniform */
    return (size_t)(h & (r->tabsz - 1));
}

static void tab_insert(struct sync_sessions *r, struct sync_session *s)
{
    if (r->n + 1 > r->tabsz * 2) {
        size_t nsz = r->tabsz ? r->tabsz * 2 : 256;
        struct sync_session **nt = lr_xcalloc(nsz, sizeof(*nt));
        struct sync_session **old = r->tab;
        size_t osz = r->tabsz;
        r->tab = nt;
        r->tabsz = nsz;
        for (size_t i = 0; i < osz; i++) {
            for (struct sync_session *c = old[i], *nx; c; c = nx) {
                nx = c->hnext;
                size_t b = bucket(r, &c->blocks);
                c->hnext = nt[b];
                nt[b] = c;
            }
        }
        free(old);
    }
    size_t b = bucket(r, &s->blocks);
    s->hnext = r->tab[b];
    r->tab[b] = s;
}

static void tab_remove(struct sync_sessions *r, const struct sync_session *s)
{
    for (struct sync_session **pp = &r->tab[bucket(r, &s->blocks)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            return;
        }
    }
}

static struct sync_session *tab_find(const struct sync_sessions *r, const char *folder,
                                     const uint8_t *path, size_t path_len,
                                     const struct lr_hash *blocks)
{
    if (!r || !r->tabsz)
        return NULL;
    for (struct sync_session *c = r->tab[bucket(r, blocks)]; c; c = c->hnext)
        if (same_version(c, folder, path, path_len, blocks))
            return c;
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sess_free(struct sync_session *s)
{
    free(s->folder);
    free(s->path);
    free(s->doomed);
    for (size_t i = 0; i < s->npeers; i++)
        free(s->peers[i]);
    free(s->peers);
    free(s->error);
    free(s);
}

/* The session's document (the `sessions` command's object). */
static json_t *sess_json(const struct sync_session *s)
{
    char id[17];
    lr_hex(s->blocks.b, 8, id); /* short: from the version's blocks hash */
    char when[32];
    time_t t = (time_t)(s->core.updated_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *peers = json_array();
    for (size_t i = 0; i < s->npeers; i++)
        json_array_append_new(peers, json_string(s->peers[i]));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s?, s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:s?, s:s}", "id", id, "folder",
        s->folder, "path", "", "peer", s->npeers ? s->peers[0] : NULL, "peers", peers, "state",
        lr_session_state_name(s->core.state), "chunks_total", (json_int_t)s->core.chunks_total,
        "chunks_done", (json_int_t)s->core.chunks_done, "chunks_failed",
        (json_int_t)s->core.chunks_failed, "bytes_done", (json_int_t)s->core.bytes_done,
        "bytes_total", (json_int_t)s->core.bytes_total, "error", s->error, "updated", when);
    /* Raw bytes: U+FFFD for invalid UTF-8 plus path_b64, as every listing. */
    if (o)
        lr_json_set_path(o, "path", s->path, s->path_len);
    if (o && !s->npeers)
        json_object_set_new(o, "peer", json_null());
    if (o && !s->error)
        json_object_set_new(o, "error", json_null());
    return o;
}

static struct sync_sessions *reg(struct lr_daemon *d)
{
    return d->sync ? d->sync->sessions : NULL;
}

/* Drop the oldest finished sessions beyond the history bound. */
static void trim(struct sync_sessions *r)
{
    if (r->n <= HISTORY_MAX)
        return;
    const struct lr_session **v = lr_xcalloc(r->n, sizeof(*v));
    bool *drop = lr_xcalloc(r->n, sizeof(*drop));
    size_t i = 0;
    for (struct sync_session *s = r->head; s && i < r->n; s = s->next)
        v[i++] = &s->core;
    size_t n = i;
    if (lr_session_prune(v, n, HISTORY_MAX, drop)) {
        i = 0;
        for (struct sync_session **pp = &r->head; *pp && i < n; i++) {
            struct sync_session *s = *pp;
            if (drop[i]) {
                *pp = s->next;
                r->n--;
                tab_remove(r, s);
                sess_free(s);
            } else {
                pp = &s->next;
            }
        }
    }
    free(v);
    free(drop);
}

/* ---- checkpoints ---- */

struct rolled {
    char *folder, *path;
    struct lr_hash blocks;
};

struct ckpt_job {
    struct daemon_job base;
    struct lr_session_row *rows;
    size_t n;
    bool load; /* the start-up read instead */
    bool trim; /* then trim the finished rows to the newest LOAD_MAX */
    struct lr_session_list loaded;
    /* load: the folders (id, root) whose commits are rolled forward, and
     * the files that were (their sessions end complete). */
    char **folders, **roots;
    size_t nfolders;
    struct rolled *rolled;
    size_t nrolled;
};

struct roll_ctx {
    struct lr_daemon *d;
    struct ckpt_job *j;
    const char *folder;
};

/*
 * A commit batch renamed this file into place and the daemon died before
 * the index recorded it (staging_reuse.h): record it now, as the commit
 * would have, unless the local record changed since the pull decided (then
 * the scan takes what is on disk). Job side, before the first scan.
 */
static int roll_forward(void *u, const struct lr_store_sidecar *sc,
                        const struct lr_store_info *on_disk)
{
    struct roll_ctx *c = u;
    const struct lr_store_sidecar_commit *cm = &sc->commit;
    struct lr_file_rec cur;
    struct lr_err err = {0};
    int rc = lr_index_file_get(c->d->ix, c->folder, cm->rec.path, cm->rec.path_len, 0, &cur, &err);
    if (rc < 0 && rc != LR_ENOTFOUND)
        return rc;
    bool same = cm->had_local ? (rc == 0 && cur.seq == cm->local_seq) : rc == LR_ENOTFOUND;
    if (rc == 0)
        lr_file_rec_release(&cur);
    if (!same)
        return LR_ECHANGED;
    struct lr_file_rec r = cm->rec;
    r.inode = on_disk->ino;
    r.ctime_ns = on_disk->ctime_ns;
    r.chunks = sc->chunks;
    r.nchunks = sc->nchunks;
    if ((rc = lr_index_file_put(c->d->ix, c->folder, &r, NULL, &err)) < 0) {
        lr_warn(MOD, "folder=%s roll-forward: %s", c->folder, err.msg);
        return rc;
    }
    char *e = lr_esc(r.path, r.path_len);
    lr_info(MOD, "folder=%s path=%s committed before the last stop, now recorded", c->folder, e);
    free(e);
    struct ckpt_job *j = c->j;
    j->rolled = lr_xappendarray(j->rolled, j->nrolled, sizeof(*j->rolled));
    struct rolled *ro = &j->rolled[j->nrolled++];
    ro->folder = lr_xstrdup(c->folder);
    ro->path = lr_xstrdup((const char *)r.path);
    ro->blocks = r.blocks_hash;
    return 0;
}

static void roll_forward_all(struct lr_daemon *d, struct ckpt_job *j)
{
    for (size_t i = 0; i < j->nfolders; i++) {
        struct lr_store *st;
        struct lr_err err = {0};
        if (lr_store_open(j->roots[i], &st, &err) < 0)
            continue; /* the scan reports the folder */
        struct roll_ctx c = {.d = d, .j = j, .folder = j->folders[i]};
        if (lr_store_sidecar_recover(st, roll_forward, &c, NULL, &err) < 0)
            lr_warn(MOD, "folder=%s roll-forward: %s", j->folders[i], err.msg);
        lr_store_close(st);
    }
}

/*
 * Sessions of the last run not finished in its checkpoint whose version the
 * index holds as the local file: the file was committed, and the daemon
 * died before the checkpoint saying so (up to CHECKPOINT_MS later). No
 * transfer will ever end them, and they stayed "interrupted" for good
 * beside a file in sync (black-box run). They end complete, as the rolled
 * forward ones do. Job side.
 */
static void already_held(struct lr_daemon *d, struct ckpt_job *j)
{
    for (size_t i = 0; i < j->loaded.n; i++) {
        const struct lr_session_row *row = &j->loaded.v[i];
        if (row->state != SYNC_SESSION_ACTIVE && row->state != SYNC_SESSION_PENDING &&
            row->state != SYNC_SESSION_INTERRUPTED)
            continue;
        struct lr_file_rec cur;
        if (lr_index_file_get(d->ix, row->folder, row->path, row->path_len, 0, &cur, NULL) < 0)
            continue;
        bool held = !cur.deleted && cur.type == LR_FT_FILE &&
                    memcmp(&cur.blocks_hash, &row->blocks, sizeof(row->blocks)) == 0;
        lr_file_rec_release(&cur);
        if (!held)
            continue;
        j->rolled = lr_xappendarray(j->rolled, j->nrolled, sizeof(*j->rolled));
        struct rolled *ro = &j->rolled[j->nrolled++];
        ro->folder = lr_xstrdup(row->folder);
        ro->path = lr_xstrdup((const char *)row->path);
        ro->blocks = row->blocks;
    }
}

static void rows_free(struct lr_session_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lr_session_row_release(&rows[i]);
    free(rows);
}

/* Only the newest LOAD_MAX rows are ever read back (a restart's history):
 * a row per file pulled grew the table without bound (20 000 files: 6 MB;
 * a million: about 350 MB) until rows aged out after HISTORY_KEEP_MS. */
static int trim_finished(struct lr_index *ix, struct lr_err *err)
{
    return lr_index_session_trim(ix, SYNC_SESSION_FAILED, SYNC_SESSION_COMPLETE, LOAD_MAX, NULL,
                                 err);
}

/*
 * The periodic checkpoints are lazy batches (index.h): a session row is a
 * report that nothing durable depends on (a resume re-verifies the staging
 * file), and waiting for the WAL's fsync on the serial queue held up the
 * pull rounds and commits behind it (about 1.1 s of a 20 000-file pull,
 * docs/benchmarks.md, session 27). A crash of the daemon loses none of
 * them; a power cut may lose those since the last durable commit. The
 * checkpoint at stop, when some session changed since the last one, is
 * durable; the lazy ones before it reach the disk with it or with SQLite's
 * checkpoint when the index is closed.
 */
static void ckpt_write(struct lr_index *ix, const struct lr_session_row *rows, size_t n, bool lazy,
                       bool trim)
{
    struct lr_err err = {0};
    bool tx = (lazy ? lr_index_begin_lazy(ix, NULL) : lr_index_begin(ix, NULL)) == 0;
    for (size_t i = 0; i < n; i++)
        if (lr_index_session_put(ix, &rows[i], &err) < 0)
            lr_warn(MOD, "checkpoint: %s", err.msg);
    if (trim && trim_finished(ix, &err) < 0)
        lr_warn(MOD, "checkpoint: %s", err.msg);
    if (tx && lr_index_commit(ix, &err) < 0)
        lr_warn(MOD, "checkpoint: %s", err.msg);
}

static void ckpt_work(struct daemon_job *base)
{
    struct ckpt_job *j = (struct ckpt_job *)base;
    struct lr_daemon *d = base->d;
    struct lr_err err = {0};
    if (j->load) {
        roll_forward_all(d, j);
        uint64_t removed = 0;
        int64_t before = now_ms() - HISTORY_KEEP_MS;
        /* A failed trim costs space, not the history: warned, and on. */
        if (trim_finished(d->ix, &err) < 0)
            lr_warn(MOD, "cannot trim sessions: %s", err.msg);
        if (lr_index_session_prune(d->ix, SYNC_SESSION_COMPLETE, before, &removed, &err) < 0 ||
            lr_index_session_prune(d->ix, SYNC_SESSION_FAILED, before, &removed, &err) < 0 ||
            lr_index_session_list(d->ix, LOAD_MAX, &j->loaded, &err) < 0)
            lr_warn(MOD, "cannot load sessions: %s", err.msg);
        else
            already_held(d, j);
        return;
    }
    ckpt_write(d->ix, j->rows, j->n, true, j->trim);
}

/* A snapshot of the changed sessions as rows (clears their dirty flags). */
static struct lr_session_row *snapshot(struct sync_sessions *r, size_t *n)
{
    size_t k = 0;
    for (struct sync_session *s = r->head; s; s = s->next)
        k += s->core.dirty;
    *n = k;
    if (!k)
        return NULL;
    struct lr_session_row *rows = lr_xcalloc(k, sizeof(*rows));
    size_t i = 0;
    for (struct sync_session *s = r->head; s && i < k; s = s->next) {
        if (!lr_session_take_dirty(&s->core))
            continue;
        json_t *o = sess_json(s);
        char *doc = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        struct lr_session_row *row = &rows[i++];
        row->folder = lr_xstrdup(s->folder);
        row->path = lr_xmalloc(s->path_len + 1);
        memcpy(row->path, s->path, s->path_len + 1);
        row->path_len = s->path_len;
        row->blocks = s->blocks;
        row->state = (int)s->core.state;
        row->updated_ms = s->core.updated_ms;
        row->doc = doc ? doc : lr_xstrdup("{}");
    }
    *n = i;
    return rows;
}

/* A non-negative integer member of a checkpoint document (0 otherwise). */
static uint64_t json_u64(const json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

static void load_done(struct lr_daemon *d, struct ckpt_job *j)
{
    struct sync_sessions *r = reg(d);
    /* Oldest first, so the list ends up newest first. */
    if (r && j->loaded.n)
        r->maybe_waiting = true;
    for (size_t i = j->loaded.n; r && i-- > 0;) {
        struct lr_session_row *row = &j->loaded.v[i];
        if (tab_find(r, row->folder, row->path, row->path_len, &row->blocks))
            continue; /* a transfer started again before the load finished */
        json_t *o = json_loads(row->doc, 0, NULL);
        struct sync_session *s = lr_xcalloc(1, sizeof(*s));
        s->folder = lr_xstrdup(row->folder);
        s->path = lr_xmalloc(row->path_len + 1);
        memcpy(s->path, row->path, row->path_len + 1);
        s->path_len = row->path_len;
        s->blocks = row->blocks;
        struct lr_session_progress p = {0};
        uint64_t failed = 0;
        if (o) {
            p.chunks_total = json_u64(o, "chunks_total");
            p.chunks_done = json_u64(o, "chunks_done");
            p.bytes_done = json_u64(o, "bytes_done");
            p.bytes_total = json_u64(o, "bytes_total");
            failed = json_u64(o, "chunks_failed");
            const char *e = json_string_value(json_object_get(o, "error"));
            if (e)
                s->error = lr_xstrdup(e);
            json_t *peers = json_object_get(o, "peers");
            size_t np = json_array_size(peers);
            s->peers = lr_xcalloc(np ? np : 1, sizeof(*s->peers));
            for (size_t k = 0; k < np; k++) {
                const char *pe = json_string_value(json_array_get(peers, k));
                if (pe)
                    s->peers[s->npeers++] = lr_xstrdup(pe);
            }
            json_decref(o);
        }
        /* An active or pending one: the previous run ended mid-transfer. */
        lr_session_restore(&s->core, row->state, &p, failed, row->updated_ms);
        if (s->core.dirty)
            lr_session_ckpt_note(&r->ck, 1);
        tab_insert(r, s);
        s->next = r->head;
        r->head = s;
        r->n++;
    }
    if (r) {
        trim(r);
        sync_sessions_config_changed(d); /* folders removed while we were down */
    }
}

static void ckpt_done(struct daemon_job *base, int status)
{
    struct ckpt_job *j = (struct ckpt_job *)base;
    struct lr_daemon *d = base->d;
    struct sync_sessions *r = reg(d);
    if (j->load && status == 0 && !d->stopping) {
        load_done(d, j);
        for (size_t i = 0; i < j->nrolled; i++)
            sync_session_completed(d, j->rolled[i].folder, j->rolled[i].path, &j->rolled[i].blocks);
    }
    for (size_t i = 0; i < j->nrolled; i++) {
        free(j->rolled[i].folder);
        free(j->rolled[i].path);
    }
    free(j->rolled);
    for (size_t i = 0; i < j->nfolders; i++) {
        free(j->folders[i]);
        free(j->roots[i]);
    }
    free(j->folders);
    free(j->roots);
    if (r && !j->load)
        r->job_busy = false;
    lr_session_list_release(&j->loaded);
    rows_free(j->rows, j->n);
    free(j);
}

/* Counts the finished rows about to be written: whether the write trims. */
static bool trim_due(struct sync_sessions *r, const struct lr_session_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        r->finished_written +=
            rows[i].state == SYNC_SESSION_COMPLETE || rows[i].state == SYNC_SESSION_FAILED;
    if (r->finished_written < LOAD_MAX)
        return false;
    r->finished_written = 0;
    return true;
}

static void checkpoint(struct lr_daemon *d)
{
    struct sync_sessions *r = reg(d);
    if (!r || r->job_busy || d->stopping)
        return;
    /* History first: what it drops and no row holds yet is not written. */
    trim(r);
    size_t n;
    struct lr_session_row *rows = snapshot(r, &n);
    if (!n) {
        lr_session_ckpt_taken(&r->ck, now_ms()); /* nothing left to write */
        return;
    }
    struct ckpt_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = ckpt_work;
    j->base.done = ckpt_done;
    j->rows = rows;
    j->n = n;
    j->trim = trim_due(r, rows, n);
    r->job_busy = true;
    lr_session_ckpt_taken(&r->ck, now_ms());
    daemon_job_queue(d, &j->base);
}

/* n changes happened: checkpoint now if that makes a batch. */
static void note(struct lr_daemon *d, uint64_t n)
{
    struct sync_sessions *r = reg(d);
    if (!r)
        return;
    lr_session_ckpt_note(&r->ck, n);
    if (!r->walking && lr_session_ckpt_due(&r->ck, now_ms()))
        checkpoint(d);
}

/* The connection of the session's i-th serving device, if it is up, and
 * how long (ms) it has sent us nothing. */
static struct lr_conn *serving_conn(struct lr_daemon *d, const struct sync_session *s, size_t i,
                                    uint64_t *silent_ms)
{
    struct lr_device_id id;
    struct lr_conn *c;
    if (lr_device_id_parse(s->peers[i], &id, NULL) < 0 || !(c = sync_peer_conn(d, &id)))
        return NULL;
    struct lr_conn_stats st;
    lr_conn_get_stats(c, &st);
    *silent_ms = st.silent_ns / 1000000u;
    return c;
}

/* Probe every connected peer serving an active session that has sent us
 * nothing for SILENT_MS. A live peer acknowledges the PING at once; the
 * silence of one with nothing to send never lasts (we have WANTs out). */
static void probe_silent(struct lr_daemon *d, struct sync_sessions *r)
{
    for (struct sync_session *s = r->head; s; s = s->next) {
        if (s->core.state != LR_SESSION_ACTIVE)
            continue;
        for (size_t i = 0; i < s->npeers; i++) {
            uint64_t silent;
            struct lr_conn *c = serving_conn(d, s, i, &silent);
            if (!c || silent < SILENT_MS || !lr_conn_probe(c, SILENT_PROBE_MS))
                continue;
            char *ep = lr_esc(s->path, s->path_len);
            lr_info(MOD, "peer=%.7s sent nothing for %llu ms while serving path=%s: probing it",
                    s->peers[i], (unsigned long long)silent, ep);
            free(ep);
            (void)lr_conn_send(c, LR_STREAM_CONTROL, LR_MSG_PING, NULL, 0);
        }
    }
}

static void on_timer(uv_timer_t *h)
{
    struct lr_daemon *d = h->data;
    struct sync_sessions *r = reg(d);
    if (!r)
        return;
    int64_t now = now_ms();
    if (lr_session_ckpt_due(&r->ck, now))
        checkpoint(d);
    if (now - r->swept_ms >= SILENT_SWEEP_MS && !d->stopping) {
        r->swept_ms = now;
        probe_silent(d, r);
    }
}

static void on_check(uv_check_t *h)
{
    struct lr_daemon *d = h->data;
    struct sync_sessions *r = reg(d);
    if (!r || r->closed || !d->stopping)
        return;
    r->closed = true;
    uv_close((uv_handle_t *)&r->timer, NULL);
    uv_close((uv_handle_t *)&r->check, NULL);
}

void sync_sessions_init(struct lr_daemon *d)
{
    struct sync_sessions *r = lr_xcalloc(1, sizeof(*r));
    d->sync->sessions = r;
    uv_timer_init(&d->loop, &r->timer);
    uv_check_init(&d->loop, &r->check);
    r->timer.data = d;
    r->check.data = d;
    uv_unref((uv_handle_t *)&r->timer);
    uv_unref((uv_handle_t *)&r->check);
    lr_session_ckpt_init(&r->ck, CHECKPOINT_EVENTS, CHECKPOINT_MS, now_ms());
    uv_timer_start(&r->timer, on_timer, CHECK_MS, CHECK_MS);
    uv_check_start(&r->check, on_check);
    struct ckpt_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = ckpt_work;
    j->base.done = ckpt_done;
    j->load = true;
    /* Runs before the first scan (the serial queue is FIFO and the scans
     * are queued later in start-up). */
    size_t nf = d->cfg ? d->cfg->nfolders : 0;
    j->folders = lr_xcalloc(nf ? nf : 1, sizeof(*j->folders));
    j->roots = lr_xcalloc(nf ? nf : 1, sizeof(*j->roots));
    for (size_t i = 0; i < nf; i++) {
        j->folders[i] = lr_xstrdup(d->cfg->folders[i].id);
        j->roots[i] = lr_xstrdup(d->cfg->folders[i].path);
    }
    j->nfolders = nf;
    daemon_job_queue(d, &j->base);
}

void sync_sessions_free(struct lr_daemon *d)
{
    struct sync_sessions *r = reg(d);
    if (!r)
        return;
    for (struct sync_session *s = r->head; s; s = s->next)
        if (!lr_session_finished(&s->core))
            lr_session_end(&s->core, LR_SESSION_INTERRUPTED, now_ms());
    trim(r);
    size_t n;
    struct lr_session_row *rows = snapshot(r, &n);
    if (n && d->ix) {
        /* The loop has ended: no job holds the index. */
        ckpt_write(d->ix, rows, n, false, trim_due(r, rows, n));
    }
    rows_free(rows, n);
    while (r->head) {
        struct sync_session *s = r->head;
        r->head = s->next;
        sess_free(s);
    }
    free(r->tab);
    free(r);
    d->sync->sessions = NULL;
}

/* ---- transitions ---- */

/*
 * A version of a path starts: a session of another version of it that waits
 * to resume never will (the peer changed the file meanwhile, so that version
 * is gone everywhere); it stayed "interrupted: no peer can serve it" for good
 * beside the newer one's "complete" (black-box run). It fails, superseded.
 * The walk runs only while some session may be waiting.
 */
/* Why a session of a version no device will finish fails: a newer file
 * took its path, or the path became something that is no file (the peer
 * deleted it, or put a directory or link there). */
static const char SUPERSEDED[] = "superseded by a newer version";
static const char GONE[] = "superseded: deleted, or replaced by a directory or link";

static void supersede(struct lr_daemon *d, struct sync_sessions *r, const struct sync_session *s)
{
    if (!r->maybe_waiting)
        return;
    bool waiting = false;
    r->walking = true;
    for (struct sync_session *o = r->head; o; o = o->next) {
        if (o == s || o->core.in_use ||
            (o->core.state != LR_SESSION_INTERRUPTED && o->core.state != LR_SESSION_PENDING))
            continue;
        if (o->path_len == s->path_len && memcmp(o->path, s->path, s->path_len) == 0 &&
            strcmp(o->folder, s->folder) == 0 && memcmp(&o->blocks, &s->blocks, sizeof(s->blocks)))
            sync_session_end(d, o, SYNC_SESSION_FAILED, SUPERSEDED);
        else
            waiting = true;
    }
    r->walking = false;
    r->maybe_waiting = waiting;
    note(d, 0);
}

struct sync_session *sync_session_start(struct lr_daemon *d, const char *folder,
                                        const uint8_t *path, size_t path_len,
                                        const struct lr_hash *blocks, uint64_t chunks_total,
                                        uint64_t bytes_total, uint64_t chunks_done,
                                        uint64_t bytes_done, const struct lr_device_id *peers,
                                        size_t npeers)
{
    struct sync_sessions *r = reg(d);
    struct sync_session *s = tab_find(r, folder, path, path_len, blocks);
    bool known = s != NULL;
    if (known) {
        /* Moved to the front below (the list is newest first). */
        for (struct sync_session **pp = &r->head; *pp; pp = &(*pp)->next) {
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        }
        r->n--;
    } else {
        s = lr_xcalloc(1, sizeof(*s));
        lr_session_init(&s->core, now_ms());
        s->folder = lr_xstrdup(folder);
        s->path = lr_xmalloc(path_len + 1);
        memcpy(s->path, path, path_len);
        s->path[path_len] = 0;
        s->path_len = path_len;
        s->blocks = *blocks;
    }
    for (size_t i = 0; i < s->npeers; i++)
        free(s->peers[i]);
    free(s->peers);
    s->peers = lr_xcalloc(npeers ? npeers : 1, sizeof(*s->peers));
    s->npeers = 0;
    for (size_t i = 0; i < npeers; i++) {
        char id[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&peers[i], id);
        s->peers[s->npeers++] = lr_xstrdup(id);
    }
    free(s->error);
    s->error = NULL;
    s->superseded = NULL;
    free(s->doomed);
    s->doomed = NULL;
    struct lr_session_progress p = {.chunks_total = chunks_total,
                                    .bytes_total = bytes_total,
                                    .chunks_done = chunks_done,
                                    .bytes_done = bytes_done};
    int64_t now = now_ms();
    /* Pulling a completed version again is a new session of the same id;
     * one still active (its transfer vanished unended) is interrupted first. */
    if (s->core.state == LR_SESSION_COMPLETE) {
        bool stored = s->core.stored; /* its row is still there */
        lr_session_init(&s->core, now);
        s->core.stored = stored;
    } else if (s->core.state == LR_SESSION_ACTIVE)
        lr_session_end(&s->core, LR_SESSION_INTERRUPTED, now);
    int rc = lr_session_start(&s->core, &p, now);
    assert(rc == 0); /* every other state may start */
    (void)rc;
    if (!known)
        tab_insert(r, s);
    s->next = r->head;
    r->head = s;
    r->n++;
    supersede(d, r, s);
    /* Once listed: a checkpoint due now that did not see it wrote nothing,
     * and the next came only CHECKPOINT_MS later (a 200 MiB transfer that
     * ended within that was never recorded as active). */
    note(d, 1);
    return s;
}

void sync_session_served(struct sync_session *s, const struct lr_device_id *peer)
{
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(peer, id);
    for (size_t i = 0; i < s->npeers; i++)
        if (strcmp(s->peers[i], id) == 0)
            return;
    s->peers = lr_xreallocarray(s->peers, s->npeers + 1, sizeof(*s->peers));
    s->peers[s->npeers++] = lr_xstrdup(id);
}

void sync_session_chunk(struct lr_daemon *d, struct sync_session *s, bool ok, uint32_t len)
{
    if (lr_session_chunk(&s->core, ok, len, now_ms()) < 0) {
        lr_warn(MOD, "a chunk for a %s session ignored", lr_session_state_name(s->core.state));
        return;
    }
    note(d, 1);
}

void sync_session_end(struct lr_daemon *d, struct sync_session *s, enum sync_session_state state,
                      const char *error)
{
    enum lr_session_state from = s->core.state;
    if (state == SYNC_SESSION_INTERRUPTED && s->superseded) {
        /* Its path holds a newer version already: it would never resume. */
        state = SYNC_SESSION_FAILED;
        error = s->superseded;
    } else if (state == SYNC_SESSION_INTERRUPTED && s->doomed) {
        state = SYNC_SESSION_FAILED; /* no device left that could resume it */
        error = s->doomed;
    }
    if (lr_session_end(&s->core, (enum lr_session_state)state, now_ms()) < 0) {
        lr_warn(MOD, "session %s -> %s refused", lr_session_state_name(from),
                lr_session_state_name((enum lr_session_state)state));
        return;
    }
    char *e = error ? lr_xstrdup(error) : NULL; /* error may be s->doomed */
    free(s->error);
    s->error = e;
    if (state == SYNC_SESSION_INTERRUPTED)
        reg(d)->maybe_waiting = true;
    note(d, 1);
}

void sync_session_completed(struct lr_daemon *d, const char *folder, const char *path,
                            const struct lr_hash *blocks)
{
    struct sync_sessions *r = reg(d);
    struct sync_session *s = tab_find(r, folder, (const uint8_t *)path, strlen(path), blocks);
    if (s && !s->core.in_use && lr_session_can(s->core.state, LR_SESSION_COMPLETE))
        sync_session_end(d, s, SYNC_SESSION_COMPLETE, NULL);
}

void sync_session_settled(struct lr_daemon *d, const char *folder, const char *path,
                          const struct lr_hash *blocks)
{
    struct sync_sessions *r = reg(d);
    if (!r)
        return;
    size_t len = strlen(path);
    r->walking = true;
    for (struct sync_session *o = r->head; o; o = o->next) {
        if (lr_session_finished(&o->core) && o->core.state != LR_SESSION_INTERRUPTED)
            continue;
        if (o->path_len != len || memcmp(o->path, path, len) != 0 || strcmp(o->folder, folder))
            continue;
        bool same = blocks && memcmp(&o->blocks, blocks, sizeof(*blocks)) == 0;
        const char *why = blocks ? SUPERSEDED : GONE;
        if (o->core.in_use)
            o->superseded = same ? NULL : why; /* its transfer ends it: see sync_session_end */
        else if (same)
            sync_session_end(d, o, SYNC_SESSION_COMPLETE, NULL);
        else
            sync_session_end(d, o, SYNC_SESSION_FAILED, why);
    }
    r->walking = false;
    note(d, 0);
}

size_t sync_sessions_unfinished(struct lr_daemon *d, const char *folder,
                                struct sync_session_key **out)
{
    struct sync_sessions *r = reg(d);
    size_t n = 0;
    *out = NULL;
    for (struct sync_session *s = r ? r->head : NULL; s; s = s->next) {
        if ((lr_session_finished(&s->core) && s->core.state != LR_SESSION_INTERRUPTED) ||
            strcmp(s->folder, folder) != 0)
            continue;
        *out = lr_xreallocarray(*out, n + 1, sizeof(**out));
        struct sync_session_key *k = &(*out)[n++];
        k->path = lr_xmalloc(s->path_len + 1);
        memcpy(k->path, s->path, s->path_len + 1);
        k->path_len = s->path_len;
        k->blocks = s->blocks;
    }
    return n;
}

void sync_session_keys_free(struct sync_session_key *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].path);
    free(v);
}

void sync_session_orphaned(struct lr_daemon *d, const char *folder,
                           const struct sync_session_key *k, const char *why)
{
    struct sync_sessions *r = reg(d);
    struct sync_session *s = r ? tab_find(r, folder, k->path, k->path_len, &k->blocks) : NULL;
    if (!s || (lr_session_finished(&s->core) && s->core.state != LR_SESSION_INTERRUPTED))
        return;
    if (s->core.in_use) {
        free(s->doomed); /* its transfer ends it: see sync_session_end */
        s->doomed = lr_xstrdup(why);
        return;
    }
    sync_session_end(d, s, SYNC_SESSION_FAILED, why);
}

bool sync_sessions_may_resume(struct lr_daemon *d, const char *folder)
{
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder);
    for (size_t k = 0; fc && k < fc->nshared; k++)
        if (lr_config_find_peer(d->cfg, &fc->shared[k]))
            return true;
    return false;
}

void sync_sessions_config_changed(struct lr_daemon *d)
{
    struct sync_sessions *r = reg(d);
    if (!r)
        return;
    r->walking = true;
    for (struct sync_session *s = r->head; s; s = s->next) {
        if (s->core.in_use ||
            (s->core.state != LR_SESSION_INTERRUPTED && s->core.state != LR_SESSION_PENDING) ||
            sync_sessions_may_resume(d, s->folder))
            continue;
        sync_session_end(d, s, SYNC_SESSION_FAILED,
                         lr_config_find_folder(d->cfg, s->folder) ? SYNC_SESSION_UNSHARED
                                                                  : "folder removed");
    }
    r->walking = false;
    note(d, 0);
}

/* Milliseconds since the liveliest connected device serving the session
 * last sent us a packet; UINT64_MAX when none is connected. */
static uint64_t served_silent_ms(struct lr_daemon *d, const struct sync_session *s)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < s->npeers; i++) {
        uint64_t ms;
        if (serving_conn(d, s, i, &ms))
            best = ms < best ? ms : best;
    }
    return best;
}

json_t *sync_sessions_json(struct lr_daemon *d)
{
    json_t *arr = json_array();
    struct sync_sessions *r = reg(d);
    /* The history bound holds between checkpoints too: trim frees what it
     * may, but keeps a finished session whose last change no checkpoint has
     * written yet, so the listing stops at the newest HISTORY_MAX itself. */
    if (r)
        trim(r);
    size_t finished = 0;
    for (struct sync_session *s = r ? r->head : NULL; s; s = s->next) {
        if (lr_session_finished(&s->core) && ++finished > HISTORY_MAX)
            continue;
        json_t *o = sess_json(s);
        /* Its transfer waits a grace for the peers that left to come back
         * (syncpull.c, PEER_GRACE_MS) and goes on where it was if they do:
         * meanwhile it is interrupted, as docs/cli.md says, not active. */
        uint64_t silent = o && s->core.state == LR_SESSION_ACTIVE ? served_silent_ms(d, s) : 0;
        if (silent == UINT64_MAX) {
            json_object_set_new(o, "state",
                                json_string(lr_session_state_name(LR_SESSION_INTERRUPTED)));
            if (!s->error)
                json_object_set_new(o, "error", json_string("no peer that holds it is connected"));
        } else if (silent >= SILENT_MS && !s->error) {
            /* Say so while the probe (probe_silent) decides whether the
             * peer is gone: a PING answered ends the silence. */
            char *e = lr_xasprintf("nothing received from its peers for %llu s",
                                   (unsigned long long)(silent / 1000));
            json_object_set_new(o, "error", json_string(e));
            free(e);
        }
        if (o)
            json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "sessions", arr);
}
