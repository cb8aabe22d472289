/*
 * syncseqs.c - SEQ_ASK and SEQS (docs/protocol.md §6.13): how far a peer's
 * index has got, for `sync --wait`.
 *
 * What we hold of a peer's index is what it told us, and a connection that
 * stays up while one side is frozen (SIGSTOP, a suspended VM) carries the
 * peer's news only when its retransmissions come through: `sync --wait`
 * right after such a pause answered "in sync" on the stale view, and the
 * peer's new file arrived 10 s later (black-box round 26). So a held
 * request asks every connected peer how far its index of each folder has
 * got, and counts the folder in sync only once that much of it is stored
 * here (syncstate.c, syncitems.c).
 *
 * Answering reads each folder's index ID and highest sequence as committed,
 * in a job on the serve side lane with its read-only index handle (not the
 * serial queue, where a long scan of another folder or a mass-deletion
 * hold would keep the asker waiting); but when our watcher has seen changes
 * in those folders that no scan has looked at yet, they are scanned at once
 * and the answer follows the scan on the serial queue. Everything else
 * runs on the loop thread. Likewise when a scan of those folders is queued
 * or running already: the answer comes right after the last of them.
 */
#include "daemon/live.h"
#include "daemon/syncint.h"
#include "daemon/syncerr.h"

#include "util/log.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define MOD "sync"

struct seqs_job {
    struct daemon_job base;
    struct lr_device_id peer;
    uint64_t gen; /* the connection the question came on */
    uint64_t req;
    char **ids;  /* folders syncing with the peer when asked */
    bool serial; /* behind a scan on the serial queue (d->ix), not on the serve lane */
    size_t n;
    uint8_t *out; /* the encoded SEQS (NULL: none) */
    size_t out_len;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void seqs_work(struct daemon_job *base)
{
    struct seqs_job *j = (struct seqs_job *)base;
    struct lr_err ixerr = {0};
    struct lr_index *ix = j->serial ? base->d->ix : sync_side_ix(base->d, &ixerr);
    struct lr_proto_seq *v = lr_xcalloc(j->n + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++) {
        struct lr_folder_info info;
        struct lr_err err = {0};
        int rc = ix ? lr_index_folder_get(ix, j->ids[i], &info, &err) : LR_EDB;
        if (rc == LR_ENOTFOUND)
            continue; /* no index yet: nothing to wait for */
        if (rc < 0) {
            lr_warn(MOD, "folder=%s not in a SEQS answer: %s", j->ids[i],
                    ix ? lr_err_msg(&err, rc) : lr_err_msg(&ixerr, LR_EDB));
            continue;
        }
        snprintf(v[n].folder_id, sizeof(v[n].folder_id), "%s", j->ids[i]);
        v[n].index_id = info.index_id;
        v[n].max_seq = info.max_seq;
        n++;
    }
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_SEQS_MAX);
    int rc = lr_proto_seqs_encode(j->req, v, n, &b);
    if (rc < 0) {
        /* Thousands of long folder IDs can exceed the frame: an empty
         * answer leaves the asker's wait as it was without SEQ_ASK rather
         * than holding it until its timeout. */
        lr_warn(MOD, "SEQS of %zu folders does not fit one message (%d): answered empty", n, rc);
        lr_buf_release(&b);
        lr_buf_init(&b, LR_PROTO_SEQS_MAX);
        rc = lr_proto_seqs_encode(j->req, NULL, 0, &b);
    }
    if (rc == 0)
        j->out = lr_buf_detach(&b, &j->out_len);
    lr_buf_release(&b);
    free(v);
}

static void seqs_done(struct daemon_job *base, int status)
{
    struct seqs_job *j = (struct seqs_job *)base;
    struct lr_daemon *d = base->d;
    if (!d->stopping) {
        struct sync_peer *p = sync_peer_get(d, &j->peer);
        if (p->conn && p->gen == j->gen) {
            p->seqs_pending--;
            if (status == 0 && j->out) {
                sync_send(d, p, LR_STREAM_CONTROL, LR_MSG_SEQS, j->out, j->out_len);
                j->out = NULL; /* taken over */
            }
        }
    }
    free(j->out);
    for (size_t i = 0; i < j->n; i++)
        free(j->ids[i]);
    free(j->ids);
    free(j);
}

/* Either message without LR_FEAT_SEQS in force is a protocol error. */
static bool negotiated(struct lr_daemon *d, struct sync_peer *p, const char *what)
{
    if (p->features & LR_FEAT_SEQS)
        return true;
    struct lr_err err = {0};
    lr_err_set(&err, LR_EPROTO, "feature not in force");
    sync_peer_fatal(d, p, what, LR_EPROTO, &err);
    return false;
}

void sync_on_seq_ask(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len)
{
    struct lr_err err = {0};
    uint64_t req;
    if (!negotiated(d, p, "unexpected SEQ_ASK"))
        return;
    int rc = lr_proto_seq_ask_decode(payload, len, &req, &err);
    if (rc < 0) {
        sync_peer_fatal(d, p, "invalid SEQ_ASK", rc, &err);
        return;
    }
    /* Each question costs a job and an answer: a peer asking faster than
     * we answer is misbehaving (ours has at most 8 in flight). */
    if (p->seqs_pending >= SYNC_SEQS_PENDING_MAX) {
        lr_err_set(&err, LR_EPROTO, "%u questions unanswered", p->seqs_pending);
        sync_peer_fatal(d, p, "too many SEQ_ASK", LR_EPROTO, &err);
        return;
    }
    struct seqs_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = seqs_work;
    j->base.done = seqs_done;
    j->peer = p->id;
    j->gen = p->gen;
    j->req = req;
    /* Only what the asker could reach: folders in error send nothing, and
     * a receive-only folder never sends our own versions (sync.c), so its
     * highest sequence may be one the asker never gets. (Listed links are
     * bounded by the peer's FOLDERS, LR_PROTO_FOLDERS_ENTRIES_MAX, the
     * same bound as a SEQS.) */
    for (struct sync_link *l = d->sync->links; l && j->n < LR_PROTO_SEQS_ENTRIES_MAX; l = l->next) {
        const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, l->folder);
        if (!l->listed || !lr_device_id_eq(&l->peer, &p->id) || !fc ||
            fc->mode == LR_MODE_RECEIVE_ONLY || !sync_folder_usable(d, l->folder))
            continue;
        j->ids = lr_xreallocarray(j->ids, j->n + 1, sizeof(*j->ids));
        j->ids[j->n++] = lr_xstrdup(l->folder);
    }
    if (j->n)
        qsort(j->ids, j->n, sizeof(*j->ids), cmp_str);
    p->seqs_pending++;
    /* Changes our watcher saw and has not scanned yet (its debounce) were
     * made before the question: scanned now, and answered after that scan
     * (a file made 20 ms before the asker's `sync --wait` was missed,
     * black-box round 27). Not while a pull round or commit of ours is
     * running in the folder: what the watcher saw is then mostly our own
     * writes, whose scan it holds back, and a full rescan for every
     * question (one a second from a peer's `sync --wait`) would compete
     * with the pull. A round with nothing to do does not count: the
     * asker's own `sync` rescans and sends an empty burst, whose round
     * here ran as the question came, and the user's file made just before
     * was not scanned (1 run in 4 of test_27's on a loaded machine).
     * (Counting a round that ended up to 1 s before, as the watcher does,
     * skipped the scan of a user's file made right after an empty round:
     * ASan CI run.) */
    const char **pend = lr_xcalloc(j->n + 1, sizeof(*pend));
    size_t npend = 0;
    for (size_t i = 0; i < j->n; i++)
        if (live_scan_pending(d, j->ids[i]) && !sync_folder_writing(d, j->ids[i]))
            pend[npend++] = j->ids[i];
    j->serial = npend && scanjobs_queue(d, pend, npend, NULL, NULL) == 0;
    free(pend);
    if (j->serial) {
        daemon_job_queue(d, &j->base);
        return;
    }
    /* A scan queued or running may hold changes made before the question
     * (a large file the watcher's scan was still hashing: the asker's
     * `sync --wait` returned without it, black-box round 32): the answer
     * follows the last such scan of these folders, not what is queued
     * after it (scans of other folders, pull rounds). */
    struct daemon_job *scan = j->n ? scanjobs_last(d, (const char *const *)j->ids, j->n) : NULL;
    if (scan) {
        j->serial = true;
        daemon_job_queue_after(d, &j->base, scan);
        return;
    }
    /* On the serve lane with the read-only handle: the answer is what is
     * committed now, not held behind a long scan or a pull on the serial
     * queue. */
    daemon_side_queue(d, DAEMON_SIDE_SERVE, &j->base);
}

void sync_on_seqs(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len)
{
    struct lr_err err = {0};
    struct lr_proto_seqs m;
    if (!negotiated(d, p, "unexpected SEQS"))
        return;
    int rc = lr_proto_seqs_decode(payload, len, &m, &err);
    if (rc < 0) {
        sync_peer_fatal(d, p, "invalid SEQS", rc, &err);
        return;
    }
    syncstate_on_seqs(d, &p->id, p->gen, &m);
    lr_proto_seqs_release(&m);
}

size_t sync_seqs_peers(struct lr_daemon *d, const char *const *ids, size_t n,
                       struct sync_seq_peer **out)
{
    *out = NULL;
    size_t k = 0;
    for (struct sync_peer *p = d->sync->peers; p; p = p->next) {
        if (!p->conn || !p->have_folders || !(p->features & LR_FEAT_SEQS))
            continue;
        bool named = false;
        for (struct sync_link *l = d->sync->links; l && !named; l = l->next) {
            if (!l->listed || !lr_device_id_eq(&l->peer, &p->id))
                continue;
            named = n == 0;
            for (size_t i = 0; i < n && !named; i++)
                named = strcmp(ids[i], l->folder) == 0;
        }
        if (!named)
            continue;
        *out = lr_xreallocarray(*out, k + 1, sizeof(**out));
        (*out)[k].peer = p->id;
        (*out)[k].gen = p->gen;
        k++;
    }
    return k;
}

bool sync_seqs_send(struct lr_daemon *d, const struct sync_seq_peer *to, uint64_t req)
{
    struct sync_peer *p = sync_peer_get(d, &to->peer);
    if (!p->conn || p->gen != to->gen)
        return false;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_SEQ_ASK_MAX);
    size_t len = 0;
    uint8_t *pl = NULL;
    if (lr_proto_seq_ask_encode(req, &b) == 0)
        pl = lr_buf_detach(&b, &len);
    lr_buf_release(&b);
    if (!pl)
        return false;
    sync_send(d, p, LR_STREAM_CONTROL, LR_MSG_SEQ_ASK, pl, len);
    return true;
}

bool sync_peer_gen_up(struct lr_daemon *d, const struct lr_device_id *peer, uint64_t gen)
{
    for (struct sync_peer *p = d->sync->peers; p; p = p->next)
        if (lr_device_id_eq(&p->id, peer))
            return p->conn && p->gen == gen;
    return false;
}

bool sync_seqs_target_ok(struct lr_daemon *d, const struct sync_seq_target *t)
{
    struct sync_link *l = sync_link_find(d, &t->peer, t->folder);
    return l && l->listed && l->their_index_id == t->index_id;
}
