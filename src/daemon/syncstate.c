/*
 * syncstate.c - the `sync.state` API method behind `sync --wait`: whether
 * the named folders are in sync (docs/cli.md, "sync --wait"), answered at
 * once or, with "wait_ms", held until they are or the wait ends.
 *
 * A held request is checked again whenever the daemon emits an event or a
 * serial job (pull round, index batch, commit, scan) ends, and at least
 * every SYNCSTATE_POLL_MS in case neither happens, but never more often
 * than every SYNCSTATE_GAP_MS: a transfer emits thousands of events a
 * second, and the last step of a check is a job on the serial queue.
 * "Done" must hold for SYNCSTATE_SETTLE_MS before a held request is
 * answered: right after the last file, index announcements still cross
 * (ours of what we applied, the peer's of its merged vectors) and make a
 * folder briefly busy again, and the live watcher reports our own renames
 * only after its debounce (a folder whose changes are not scanned yet is
 * not done, live.h); answering at the first done moment let a `status`
 * run right after `sync --wait` see a folder syncing or scanning. The
 * 100 ms count from the last change of the engine's progress
 * (sync_fingerprint), which may predate the request: asked once the last
 * exchange is over, the benchmark's second `sync --wait` answered after
 * its settle, 40-100 ms late, although nothing had happened since. The
 * mixed benchmark's tail, from the receiver's last file written to its
 * `sync --wait` returning, went from 0.3-0.6 s (polling every 200 ms) to
 * about 0.28 s.
 *
 * Everything here runs on the loop thread. Requests are owned by this
 * module from syncstate_request() until answered; syncstate_stop() answers
 * every held one ("stopping"), those whose check job is still queued are
 * answered by the job's cancellation.
 */
#include "daemon/daemon_int.h"
#include "daemon/live.h"
#include "daemon/syncerr.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNCSTATE_POLL_MS 250u
#define SYNCSTATE_GAP_MS 10u
#define SYNCSTATE_SETTLE_MS 100u
#define SYNCSTATE_WAIT_MAX_MS 60000u

/*
 * SEQ_ASK (syncseqs.c): per connected peer, the question in flight and the
 * latest answer, how far its index of each folder synced with us had got.
 * A held request asks anew and uses only an answer to a question sent
 * after it came; one answered at once (wait_ms 0: the CLI's last call
 * before its --timeout) may use an answer to a question sent up to
 * SEQS_REUSE_MS before it, and otherwise is not done (and asks, for the
 * next call).
 */
#define SEQS_REUSE_MS 1500u
/* Questions in flight per peer: an answer slower than the CLI's 1 s calls
 * still counts for the question it answers. */
#define SEQS_INFLIGHT 8

struct seqpeer {
    struct sync_seq_peer to; /* another gen: a new connection, all forgotten */
    struct {
        uint64_t req, asked_ms; /* uv_now when it was sent */
    } q[SEQS_INFLIGHT];         /* in flight, oldest first */
    size_t nq;
    bool answered;
    uint64_t answer_asked_ms;  /* when the question the answer is to was sent */
    struct sync_seq_target *t; /* the answer, owned, with their folders */
    size_t nt;
};

struct sstate {
    struct lr_daemon *d;
    struct lr_api_req *req;
    char **ids; /* named folders (copies); none: all */
    size_t n;
    uint64_t deadline;   /* uv_now ms; the first check answers once it is reached */
    uint64_t last_check; /* uv_now ms when the last check started */
    uint64_t next_at;    /* uv_now ms of the next check (held, not checking) */
    uint64_t started;    /* uv_now ms when the request came */
    uint64_t done_since; /* uv_now ms of the first of the checks in a row found done; 0: none */
    bool checking;       /* a peer-need job of ours is queued or running */
    bool stale;          /* an event came after the last check started */
    /* Its check job just ended: the poke that follows every serial job
     * (syncjobs.c) is that end, not news (else a request that is not done
     * checked again every SYNCSTATE_GAP_MS, a job each time). */
    bool own_poke;
    struct sstate *next; /* held list */
    /* Peers whose answer it needs, to a question sent at need_ms or later. */
    struct sync_seq_peer *deps;
    size_t ndeps;
    uint64_t need_ms;
    /* results of the check in progress */
    uint64_t need_files, need_bytes, errors;
    uint64_t got_bytes;  /* of need_bytes, already received */
    json_t *first_error; /* {"folder", "path", "error"} or NULL */
    char waiting[256];   /* the first unmet condition, "" if none found */
    /* "folder F" (": PATH" if a transfer of it is in flight) of the first
     * folder with files needed here, "" if none. */
    char need_first[512];
};

struct syncstate {
    struct sstate *held;
    uv_timer_t timer;
    uint64_t timer_due; /* UINT64_MAX: not armed */
    bool closed;
    /* The engine's state as sync_fingerprint() last saw it, since when (the
     * first moment it was seen so, never earlier than the change) and when
     * it was last looked at (uv_now ms). */
    uint64_t fp, fp_since, fp_at;
    bool fp_valid;
    uint64_t poked_at; /* the last poke not looked at (0: none since fp_at) */
    uint64_t next_req; /* SEQ_ASK numbers */
    struct seqpeer *sp;
    size_t nsp;
};

static struct syncstate *ss_get(struct lr_daemon *d)
{
    if (!d->syncstate) {
        d->syncstate = lr_xcalloc(1, sizeof(*d->syncstate));
        uv_timer_init(&d->loop, &d->syncstate->timer);
        d->syncstate->timer.data = d;
        d->syncstate->timer_due = UINT64_MAX;
    }
    return d->syncstate;
}

/* Look at the engine's state now: a change dates fp_since to now. */
static void fp_update(struct lr_daemon *d, struct syncstate *w)
{
    uint64_t now = uv_now(&d->loop);
    uint64_t fp = sync_fingerprint(d);
    w->fp_at = now;
    if (!w->fp_valid || fp != w->fp) {
        /* Changes come before the poke that reports them: a change since
         * a poke that was not looked at is dated to that poke. */
        w->fp = fp;
        w->fp_since = w->poked_at ? w->poked_at : now;
        w->fp_valid = true;
    }
    w->poked_at = 0;
}

static void sstate_free(struct sstate *s)
{
    free(s->deps);
    for (size_t i = 0; i < s->n; i++)
        free(s->ids[i]);
    free(s->ids);
    json_decref(s->first_error);
    free(s);
}

static void unhold(struct lr_daemon *d, struct sstate *s)
{
    struct syncstate *w = d->syncstate;
    for (struct sstate **pp = w ? &w->held : NULL; pp && *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            s->next = NULL;
            return;
        }
    }
}

static void on_timer(uv_timer_t *h);

/* Make sure the timer fires by `due` (absolute uv_now ms). */
static void arm_by(struct lr_daemon *d, uint64_t due)
{
    struct syncstate *w = ss_get(d);
    if (w->closed || (uv_is_active((uv_handle_t *)&w->timer) && w->timer_due <= due))
        return;
    uint64_t now = uv_now(&d->loop);
    w->timer_due = due;
    uv_timer_start(&w->timer, on_timer, due > now ? due - now : 0, 0);
}

static void answer(struct sstate *s, bool done, const struct sync_peer_need *pn)
{
    /* Bytes exchanged with every peer so far: the CLI's rate, which a
     * large file's need_bytes (it drops when the file is committed) cannot
     * give while it arrives. */
    uint64_t moved = 0;
    for (size_t i = 0; i < s->d->npeers; i++) {
        uint64_t sent, recv;
        daemon_peer_bytes(&s->d->peers[i], &sent, &recv);
        moved += sent + recv;
    }
    json_t *r = json_pack("{s:b, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I}", "done", done,
                          "need_files", (json_int_t)s->need_files, "need_bytes",
                          (json_int_t)s->need_bytes, "received_bytes", (json_int_t)s->got_bytes,
                          "rate", 0.0, "peer_need_files", (json_int_t)(pn ? pn->files : 0),
                          "peer_need_bytes", (json_int_t)(pn ? pn->bytes : 0), "peer_need_items",
                          (json_int_t)(pn ? pn->items : 0), "errors", (json_int_t)s->errors,
                          "bytes_moved", (json_int_t)moved);
    if (r && s->first_error) {
        json_object_set_new(r, "first_error", s->first_error);
        s->first_error = NULL;
    }
    if (r && !done && pn && pn->items && pn->first[0])
        json_object_set_new(r, "peer_need_first", lr_json_lossy(pn->first, strlen(pn->first)));
    if (r && !done && s->need_files && s->need_first[0])
        json_object_set_new(r, "need_first", lr_json_lossy(s->need_first, strlen(s->need_first)));
    if (r && !done) {
        if (!s->waiting[0] && pn && !pn->fresh)
            snprintf(s->waiting, sizeof(s->waiting), "comparing peers' indexes with ours");
        /* Deletions and directories are items, not files. */
        if (!s->waiting[0] && pn && pn->items > pn->files)
            snprintf(s->waiting, sizeof(s->waiting),
                     "peers still need %llu item%s from us (deletions, directories or symlinks)",
                     (unsigned long long)(pn->items - pn->files),
                     pn->items - pn->files == 1 ? "" : "s");
        if (s->waiting[0])
            json_object_set_new(r, "waiting", json_string(s->waiting));
    }
    lr_api_reply(s->req, r);
    sstate_free(s);
}

/* A check ended: answer, or keep holding and decide when to look again. */
static void finish(struct sstate *s, bool done, const struct sync_peer_need *pn)
{
    struct lr_daemon *d = s->d;
    s->checking = false;
    uint64_t now = uv_now(&d->loop);
    struct syncstate *w = d->syncstate;
    bool final = now >= s->deadline || d->stopping || !w || w->closed;
    if (done && !final) {
        /* Done has held since the engine's state last changed (nothing since
         * could have made it not done, short of a scan, which check() sees),
         * even from before this request: a `sync --wait` on a folder that
         * has been in sync for a while answers at once instead of settling
         * another 100 ms. */
        fp_update(d, w);
        if (s->done_since == 0 || w->fp_since > s->done_since)
            s->done_since = w->fp_since;
    }
    if (final || (done && now - s->done_since >= SYNCSTATE_SETTLE_MS)) {
        unhold(d, s);
        answer(s, done, pn);
        return;
    }
    lr_debug("api", "sync.state held %llu ms: %s", (unsigned long long)(now - s->started),
             done            ? "done, settling"
             : s->waiting[0] ? s->waiting
                             : "peers still need items");
    uint64_t due;
    if (done) {
        /* Settling: look again when it has held long enough, or soon after an event. */
        due = s->done_since + SYNCSTATE_SETTLE_MS;
        if (s->stale && s->last_check + SYNCSTATE_GAP_MS < due)
            due = s->last_check + SYNCSTATE_GAP_MS;
    } else {
        s->done_since = 0;
        /* Not fresh: the peer-need comparison was put off (syncerr.h), ask again soon. */
        due =
            s->last_check + (s->stale || (pn && !pn->fresh) ? SYNCSTATE_GAP_MS : SYNCSTATE_POLL_MS);
    }
    s->next_at = due < s->deadline ? due : s->deadline;
    arm_by(d, s->next_at);
}

static void on_peer_need(struct lr_daemon *d, void *ud, const struct sync_peer_need *res,
                         int status)
{
    struct sstate *s = ud;
    if (status < 0) {
        unhold(d, s);
        lr_api_reply_error(s->req, "stopping", 1, "the daemon is stopping");
        sstate_free(s);
        return;
    }
    s->own_poke = true;
    if (res->behind && !s->waiting[0])
        snprintf(s->waiting, sizeof(s->waiting), "%s", res->behind_why);
    finish(s, res->fresh && res->items == 0 && res->behind == 0, res);
}

static bool wanted(const struct sstate *s, const char *folder)
{
    bool want = s->n == 0;
    for (size_t k = 0; k < s->n && !want; k++)
        want = strcmp(s->ids[k], folder) == 0;
    return want;
}

static void seqpeer_forget(struct seqpeer *p)
{
    for (size_t k = 0; k < p->nt; k++)
        free(p->t[k].folder);
    free(p->t);
    p->t = NULL;
    p->nt = 0;
    p->answered = false;
}

/* The peer's entry, reset for a new connection (created when missing). */
static struct seqpeer *seqpeer_get(struct syncstate *w, const struct sync_seq_peer *to)
{
    struct seqpeer *p = NULL;
    for (size_t i = 0; i < w->nsp && !p; i++)
        if (lr_device_id_eq(&w->sp[i].to.peer, &to->peer))
            p = &w->sp[i];
    if (!p) {
        w->sp = lr_xreallocarray(w->sp, w->nsp + 1, sizeof(*w->sp));
        p = &w->sp[w->nsp++];
        memset(p, 0, sizeof(*p));
        p->to = *to;
    }
    if (p->to.gen != to->gen) {
        seqpeer_forget(p);
        p->to = *to;
        p->nq = 0;
    }
    return p;
}

/*
 * The answers the request needs, as targets for the peer-need job; false
 * while one is missing from a peer still connected on the asked connection
 * (a peer reconnected since is judged by its new exchange, which `settled`
 * waits for).
 */
static bool seq_targets(struct sstate *s, struct sync_seq_target **out, size_t *nout)
{
    struct syncstate *w = ss_get(s->d);
    *out = NULL;
    *nout = 0;
    for (size_t i = 0; i < s->ndeps; i++) {
        if (!sync_peer_gen_up(s->d, &s->deps[i].peer, s->deps[i].gen))
            continue;
        struct seqpeer *p = seqpeer_get(w, &s->deps[i]);
        if (!p->answered || p->answer_asked_ms < s->need_ms) {
            char id[LR_DEVICE_ID_SHORTLEN + 1];
            lr_device_id_short(&p->to.peer, id);
            snprintf(s->waiting, sizeof(s->waiting), "asking peer %s how far its index has got",
                     id);
            free(*out);
            *out = NULL;
            *nout = 0;
            return false;
        }
        *out = lr_xreallocarray(*out, *nout + p->nt + 1, sizeof(**out));
        for (size_t k = 0; k < p->nt; k++) {
            const struct lr_folder_cfg *fc = lr_config_find_folder(s->d->cfg, p->t[k].folder);
            /* A send-only folder never takes their changes. */
            if (fc && fc->mode != LR_MODE_SEND_ONLY && wanted(s, fc->id) &&
                sync_seqs_target_ok(s->d, &p->t[k]))
                (*out)[(*nout)++] = p->t[k];
        }
    }
    return true;
}

/* Ask the peers the request depends on, unless a question or an answer
 * recent enough for it is there already. */
static void seqs_ask(struct lr_daemon *d, struct sstate *s)
{
    struct syncstate *w = ss_get(d);
    uint64_t now = uv_now(&d->loop);
    for (size_t i = 0; i < s->ndeps; i++) {
        struct seqpeer *p = seqpeer_get(w, &s->deps[i]);
        if ((p->nq && p->q[p->nq - 1].asked_ms >= s->need_ms) ||
            (p->answered && p->answer_asked_ms >= s->need_ms))
            continue;
        /* Full: it has not answered 8 questions; asking more would only
         * pile them up there (it bounds them, SYNC_SEQS_PENDING_MAX). */
        if (p->nq == SEQS_INFLIGHT)
            continue;
        uint64_t req = ++w->next_req;
        if (!sync_seqs_send(d, &p->to, req))
            continue;
        p->q[p->nq].req = req;
        p->q[p->nq].asked_ms = now;
        p->nq++;
    }
}

/*
 * Done (docs/cli.md, "sync --wait"): no scan queued or running; every named
 * folder usable (not in error), settled (sync.h: nothing in flight, every
 * shared peer connected with indexes exchanged both ways, or given up on
 * after the connect grace), needing nothing (unless send-only: it never
 * takes remote changes), with no failing item; and then every connected
 * peer sharing it announcing every version we have (a job compares its
 * index with ours, see syncerr.h).
 */
static void check(struct sstate *s)
{
    struct lr_daemon *d = s->d;
    s->last_check = uv_now(&d->loop);
    s->stale = false;
    if (!d->stopping)
        fp_update(d, ss_get(d));
    s->need_files = s->need_bytes = s->errors = s->got_bytes = 0;
    json_decref(s->first_error);
    s->first_error = NULL;
    s->waiting[0] = '\0';
    s->need_first[0] = '\0';
    for (size_t k = 0; k < s->n; k++) {
        if (!lr_config_find_folder(d->cfg, s->ids[k])) {
            /* Removed while we waited: as if it had been named unknown at first. */
            char *e = lr_escs(s->ids[k]);
            unhold(d, s);
            lr_api_reply_error(s->req, "notfound", 1, "no folder with ID '%s'", e);
            free(e);
            sstate_free(s);
            return;
        }
    }
    bool done = true;
    for (size_t i = 0; i < d->cfg->nfolders && done; i++) {
        const char *id = d->cfg->folders[i].id;
        if (wanted(s, id) && scanjobs_last(d, &id, 1)) {
            done = false;
            snprintf(s->waiting, sizeof(s->waiting), "folder %s: a scan is queued or running", id);
        }
    }
    for (size_t i = 0; i < d->cfg->nfolders && done; i++) {
        const char *id = d->cfg->folders[i].id;
        if (wanted(s, id) && live_scan_pending(d, id)) {
            done = false;
            snprintf(s->waiting, sizeof(s->waiting), "folder %s: changes seen, not scanned yet",
                     id);
        }
    }
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const struct lr_folder_cfg *fc = &d->cfg->folders[i];
        if (!wanted(s, fc->id))
            continue;
        struct folder_rt *f = daemon_folder(d, fc->id);
        struct sync_folder_status ss;
        sync_folder_status(d, fc->id, &ss);
        uint64_t nerr = sync_items_count(d, fc->id);
        bool in_error = !f || f->state == FOLDER_ERROR;
        bool needs = ss.need_items > 0 && fc->mode != LR_MODE_SEND_ONLY;
        done = done && !in_error && ss.settled && !ss.active && nerr == 0 && !needs;
        if (!s->waiting[0] && ss.why[0])
            snprintf(s->waiting, sizeof(s->waiting), "folder %s: %s", fc->id, ss.why);
        /* Settled with needs left: the last pull round could act on none of them. */
        if (!s->waiting[0] && needs && ss.settled && !ss.active && nerr == 0)
            snprintf(s->waiting, sizeof(s->waiting),
                     "folder %s: %llu items needed that no pull round can apply now", fc->id,
                     (unsigned long long)ss.need_items);
        /* A send-only folder's needs are not pulled and do not count: the
         * timeout line gave them as the cause while another folder held
         * the wait (black-box round 28). */
        if (fc->mode != LR_MODE_SEND_ONLY) {
            if (ss.need_files && !s->need_first[0]) {
                char path[400];
                if (sync_folder_first_transfer(d, fc->id, path, sizeof(path)))
                    snprintf(s->need_first, sizeof(s->need_first), "folder %s: %s", fc->id, path);
                else
                    snprintf(s->need_first, sizeof(s->need_first), "folder %s", fc->id);
            }
            s->need_files += ss.need_files;
            s->need_bytes += ss.need_bytes;
            s->got_bytes += ss.got_bytes;
        }
        s->errors += nerr + (in_error ? 1 : 0);
        if (!s->first_error && in_error) {
            s->first_error = json_pack("{s:s, s:s, s:s}", "folder", fc->id, "path", "", "error",
                                       f && f->error ? f->error : "folder in error");
        } else if (!s->first_error && nerr) {
            struct lr_syncerr_list l;
            sync_items_list(d, fc->id, &l);
            if (l.n) {
                s->first_error = json_pack("{s:s}", "folder", fc->id);
                lr_json_set_path(s->first_error, "path", l.v[0].path, l.v[0].path_len);
                json_object_set_new(s->first_error, "error",
                                    lr_json_lossy(l.v[0].msg, strlen(l.v[0].msg)));
            }
            lr_syncerr_list_release(&l);
        }
    }
    struct sync_seq_target *t = NULL;
    size_t nt = 0;
    if (done && !seq_targets(s, &t, &nt))
        done = false;
    if (!done) {
        finish(s, false, NULL);
        return;
    }
    s->checking = true;
    sync_items_peer_need(d, (const char *const *)s->ids, s->n, t, nt, on_peer_need, s);
    free(t);
}

static void on_timer(uv_timer_t *h)
{
    struct lr_daemon *d = h->data;
    struct syncstate *w = d->syncstate;
    w->timer_due = UINT64_MAX;
    uint64_t now = uv_now(&d->loop);
    /* check() may answer (and unlink) any of them: collect the due ones first. */
    size_t n = 0;
    for (struct sstate *s = w->held; s; s = s->next)
        n++;
    struct sstate **due = lr_xcalloc(n + 1, sizeof(*due));
    size_t k = 0;
    for (struct sstate *s = w->held; s; s = s->next) {
        if (s->checking)
            continue;
        if (now >= s->next_at)
            due[k++] = s;
        else
            arm_by(d, s->next_at);
    }
    for (size_t i = 0; i < k; i++)
        check(due[i]);
    free(due);
}

void syncstate_request(struct lr_daemon *d, struct lr_api_req *req, const char *const *ids,
                       size_t n, uint64_t wait_ms)
{
    struct sstate *s = lr_xcalloc(1, sizeof(*s));
    s->d = d;
    s->req = req;
    s->ids = lr_xcalloc(n + 1, sizeof(*s->ids));
    for (size_t i = 0; i < n; i++)
        s->ids[i] = lr_xstrdup(ids[i]);
    s->n = n;
    if (wait_ms > SYNCSTATE_WAIT_MAX_MS)
        wait_ms = SYNCSTATE_WAIT_MAX_MS;
    s->started = uv_now(&d->loop);
    s->deadline = s->started + wait_ms;
    if (wait_ms > 0 && !d->stopping) {
        struct syncstate *w = ss_get(d);
        s->next = w->held;
        w->held = s;
    }
    if (!d->stopping) {
        /* What we hold of a connected peer's index may be stale (its news
         * still on the way, syncseqs.c): ask how far it has got. */
        s->ndeps = sync_seqs_peers(d, ids, n, &s->deps);
        uint64_t reuse = wait_ms > 0 ? 0 : SEQS_REUSE_MS;
        s->need_ms = s->started > reuse ? s->started - reuse : 0;
        seqs_ask(d, s);
    }
    check(s);
}

void syncstate_on_seqs(struct lr_daemon *d, const struct lr_device_id *peer, uint64_t gen,
                       const struct lr_proto_seqs *m)
{
    struct syncstate *w = d->syncstate;
    if (!w || w->closed)
        return;
    struct seqpeer *p = NULL;
    for (size_t i = 0; i < w->nsp && !p; i++)
        if (lr_device_id_eq(&w->sp[i].to.peer, peer) && w->sp[i].to.gen == gen)
            p = &w->sp[i];
    size_t k = 0;
    while (p && k < p->nq && p->q[k].req != m->req)
        k++;
    if (!p || k == p->nq)
        return; /* not a question of ours in flight */
    uint64_t asked = p->q[k].asked_ms;
    /* Answers come in the order asked (one control stream, one job queue):
     * the older questions get none now. */
    memmove(&p->q[0], &p->q[k + 1], (p->nq - k - 1) * sizeof(p->q[0]));
    p->nq -= k + 1;
    seqpeer_forget(p);
    p->answered = true;
    p->answer_asked_ms = asked;
    p->t = lr_xcalloc(m->n + 1, sizeof(*p->t));
    for (size_t i = 0; i < m->n; i++) {
        struct sync_seq_target *t = &p->t[p->nt++];
        t->folder = lr_xstrdup(m->v[i].folder_id);
        t->peer = *peer;
        t->index_id = m->v[i].index_id;
        t->max_seq = m->v[i].max_seq;
    }
    syncstate_poke(d);
}

void syncstate_poke(struct lr_daemon *d)
{
    struct syncstate *w = d->syncstate;
    if (!w && !d->stopping)
        w = ss_get(d);
    if (!w || w->closed)
        return;
    /* Dating changes between requests is what lets a later request answer
     * at once; a transfer pokes thousands of times a second, so look at most
     * every SYNCSTATE_GAP_MS (a change seen later is dated later: the safe
     * side). */
    if (!w->fp_valid || uv_now(&d->loop) - w->fp_at >= SYNCSTATE_GAP_MS)
        fp_update(d, w);
    else
        w->poked_at = uv_now(&d->loop);
    if (!w->held)
        return;
    for (struct sstate *s = w->held; s; s = s->next) {
        if (s->own_poke) {
            s->own_poke = false;
            continue;
        }
        s->stale = true;
        if (s->checking)
            continue; /* finish() sees stale */
        uint64_t at = s->last_check + SYNCSTATE_GAP_MS;
        if (at < s->next_at) {
            s->next_at = at;
            arm_by(d, at);
        }
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct lr_daemon *d = h->data;
    for (size_t i = 0; i < d->syncstate->nsp; i++)
        seqpeer_forget(&d->syncstate->sp[i]);
    free(d->syncstate->sp);
    free(d->syncstate);
    d->syncstate = NULL;
}

void syncstate_stop(struct lr_daemon *d)
{
    struct syncstate *w = d->syncstate;
    if (!w || w->closed)
        return;
    w->closed = true;
    uv_timer_stop(&w->timer);
    /* Those with a check job queued are answered when the job is cancelled. */
    for (struct sstate **pp = &w->held; *pp;) {
        struct sstate *s = *pp;
        if (s->checking) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        lr_api_reply_error(s->req, "stopping", 1, "the daemon is stopping");
        sstate_free(s);
    }
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}
