/*
 * syncrecon.c - reconciliation without history (docs/protocol.md §6.11,
 * docs/decisions/0002-reconciliation-without-history.md).
 *
 * When a peer holds nothing usable of our index of a folder (a reset
 * database, or two devices pre-seeded with copies of one tree), the sender
 * offers a SUMMARY (sync/summary.h) instead of the full index. The receiver
 * compares it with its own index bucket by bucket; for buckets that match,
 * it stores its own records as the peer's (with the peer's vectors, carried
 * by the SUMMARY), and it asks (SUMMARY_WANT) only for the buckets that
 * differ, which the sender then sends as an INDEX burst starting with RECON
 * instead of FIRST (sync.c), followed by everything newer than the summary.
 *
 * Vectors: two devices holding the same content under concurrent vectors
 * would each merge them (decide.h, MERGE_VV) and announce the merged record
 * to the other, re-sending the whole index. Here a receiver that is itself
 * reconciling towards the peer (the peer holds nothing usable of ours either)
 * merges silently (lr_index_file_set_vv: no new sequence): the peer does the
 * same on our SUMMARY, or asks for the bucket and receives the merged
 * record, so both end with the same vector either way. Third devices learn
 * the merged vector with the path's next change; a merged vector only ever
 * dominates what they hold.
 *
 * Threads: sync_recon_build runs on the serve side lane (read-only handle);
 * the SUMMARY's processing on the serial queue (it writes); the rest on the
 * loop.
 */
#include "daemon/syncint.h"
#include "daemon/modes.h"

#include "sync/decide.h"
#include "sync/summary.h"

#include "util/log.h"
#include "util/rd.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define MOD "sync"

/* Records adopted per transaction (a bounded WAL and lock hold). */
#define RECON_TX_RECORDS 4096
/* At most this many buckets: their digests alone (16 bytes each) must leave
 * room in one frame for counts and vector references. Past 1 M entries the
 * buckets grow instead (a differing bucket costs more entries). */
#define RECON_BUCKETS_MAX 32768u

static int list_all(struct lr_index *ix, const char *folder, uint64_t upto, uint64_t skip_author,
                    struct lr_summary *s, struct lr_file_rec **keep, size_t *nkeep,
                    struct lr_err *err)
{
    uint64_t from = 1;
    for (;;) {
        struct lr_file_list list = {0};
        int rc = lr_index_list_by_seq(ix, folder, from, SYNC_SEND_RECORDS, 0, &list, err);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < list.n && rc == 0; i++) {
            struct lr_file_rec *r = &list.v[i];
            from = r->seq + 1;
            if (r->seq > upto)
                continue;
            if (skip_author && daemon_modes_own_version(ix, folder, r, skip_author))
                continue;
            uint64_t tag = keep ? *nkeep : r->seq;
            if ((rc = lr_summary_add(s, r, tag, err)) < 0)
                break;
            if (keep) {
                /* Path and vector only: chunk lists are read back when adopted. */
                *keep = lr_xappendarray(*keep, *nkeep, sizeof(**keep));
                struct lr_file_rec *k = &(*keep)[(*nkeep)++];
                memset(k, 0, sizeof(*k));
                k->path = r->path;
                k->path_len = r->path_len;
                r->path = NULL;
                k->vv = r->vv;
                memset(&r->vv, 0, sizeof(r->vv));
            }
        }
        bool more = list.n == SYNC_SEND_RECORDS;
        lr_file_list_release(&list);
        if (rc < 0)
            return rc;
        if (!more)
            return 0;
    }
}

int sync_recon_build(struct lr_index *ix, const char *folder, const struct lr_folder_info *info,
                     uint64_t skip_author, struct lr_buf *out, uint32_t *nb, struct lr_err *err)
{
    struct lr_folder_stats st;
    int rc = lr_index_folder_stats(ix, folder, &st, err);
    if (rc < 0)
        return rc;
    uint64_t n = st.files + st.dirs + st.symlinks + st.deleted;
    struct lr_summary *s = NULL;
    uint32_t want = lr_summary_nbuckets(n);
    if ((rc = lr_summary_new(want < RECON_BUCKETS_MAX ? want : RECON_BUCKETS_MAX, &s, err)) < 0)
        return rc;
    rc = list_all(ix, folder, info->max_seq, skip_author, s, NULL, NULL, err);
    if (rc == LR_ETOOBIG) {
        lr_summary_free(s);
        return 0; /* too many for one SUMMARY: the full index */
    }
    if (rc == 0) {
        lr_summary_finish(s);
        rc = lr_summary_encode(s, folder, info->index_id, info->max_seq, out, err);
        if (rc == LR_ETOOBIG)
            rc = 0;
        else if (rc == 0)
            rc = 1;
        *nb = lr_summary_nb(s);
    }
    lr_summary_free(s);
    return rc;
}

/* ---- a peer's SUMMARY ---- */

struct recon_job {
    struct daemon_job base;
    struct lr_device_id peer;
    uint64_t gen, epoch;
    char folder[LR_PROTO_FOLDER_ID_MAX + 1];
    uint64_t their_index_id;                /* from their latest FOLDERS */
    uint64_t their_view_id, their_view_seq; /* what they hold of ours */
    bool feat;                              /* LR_FEAT_RECON in force */
    bool we_summarise; /* our index goes to them as a SUMMARY, not a full INDEX */
    bool modes_adopt;  /* send-only or receive-only: adopts equal versions (modes.h) */
    uint64_t self_if_receive_only;
    uint8_t *payload;
    size_t len;
    /* out */
    bool ignored, fatal, silent;
    struct lr_summary_want want;
    uint64_t adopted, merged, differ;
    uint64_t taken; /* our records that took the peer's vector (modes.h) */
    int rc;
    struct lr_err err;
};

static int adopt_bucket(struct lr_daemon *d, struct recon_job *j, const struct lr_summary_msg *m,
                        const struct lr_summary *mine, const struct lr_file_rec *keep, uint32_t b,
                        size_t *intx)
{
    const uint64_t *tags;
    size_t n;
    lr_summary_bucket_tags(mine, b, &tags, &n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct lr_file_rec *k = &keep[tags[i]];
        const struct lr_vv *theirs = &m->vvs[m->entry_vv[m->first[b] + i]];
        struct lr_remote_rec r;
        memset(&r, 0, sizeof(r));
        if ((rc = lr_index_file_get(d->ix, j->folder, k->path, k->path_len, LR_IX_CHUNKS, &r.rec,
                                    &j->err)) < 0)
            break;
        struct lr_vv merged = {0};
        /* A receive-only folder's own version was left out of our SUMMARY
         * (sync_recon_build): the peer merges nothing for it, so neither do
         * we; it takes the peer's vector below if it is the same file. */
        bool withheld = j->self_if_receive_only &&
                        daemon_modes_own_version(d->ix, j->folder, &r.rec, j->self_if_receive_only);
        if (j->silent && !withheld) {
            if ((rc = lr_sync_vv_merge(&r.rec.vv, theirs, &merged)) < 0) {
                lr_err_set(&j->err, rc, "merged vector of %s over the limit",
                           (const char *)k->path);
            } else if (!lr_vv_equal(&merged, &r.rec.vv)) {
                rc = lr_index_file_set_vv(d->ix, j->folder, k->path, k->path_len, &merged, &j->err);
                j->merged++;
            }
            if (rc == 0)
                lr_vv_copy(&r.rec.vv, &merged);
        } else {
            lr_vv_copy(&r.rec.vv, theirs);
        }
        lr_vv_release(&merged);
        r.rec.seq = m->seq ? m->seq : 1;
        if (rc == 0)
            rc = lr_index_remote_adopt(d->ix, j->folder, &j->peer, m->index_id, &r, &j->err);
        /* As for a record that came in an INDEX (sync.c recv_work): a
         * send-only or receive-only folder takes the peer's vector for what
         * it holds the same, else the peer waits for it for good. */
        if (rc == 0 && j->modes_adopt) {
            bool taken = false;
            lr_vv_copy(&r.rec.vv, theirs);
            rc = daemon_modes_adopt_equal(d->ix, j->folder, &r.rec, j->self_if_receive_only,
                                          withheld, &taken, &j->err);
            j->taken += taken;
        }
        lr_remote_rec_release(&r);
        if (rc == 0) {
            j->adopted++;
            if (++*intx >= RECON_TX_RECORDS) {
                *intx = 0;
                if ((rc = lr_index_commit(d->ix, &j->err)) == 0)
                    rc = lr_index_begin(d->ix, &j->err);
            }
        }
    }
    return rc;
}

static void recon_work(struct daemon_job *base)
{
    struct recon_job *j = (struct recon_job *)base;
    struct lr_daemon *d = base->d;
    struct lr_summary_msg m;
    struct lr_summary *mine = NULL;
    struct lr_file_rec *keep = NULL;
    size_t nkeep = 0;
    bool tx = false;
    int rc = lr_summary_decode(j->payload, j->len, &m, &j->err);
    if (rc < 0) {
        j->rc = rc;
        j->fatal = true;
        return;
    }
    if (!j->feat) {
        j->rc = lr_err_set(&j->err, LR_EPROTO, "SUMMARY without the RECON feature in force");
        j->fatal = true;
        goto out;
    }
    snprintf(j->folder, sizeof(j->folder), "%s", m.folder);
    if (!j->their_index_id) {
        j->ignored = true; /* not syncing (yet, or any more): §6.4 */
        goto out;
    }
    if (m.index_id != j->their_index_id) {
        j->rc = lr_err_set(&j->err, LR_EPROTO,
                           "SUMMARY of %s: index ID %016llx, FOLDERS said %016llx", j->folder,
                           (unsigned long long)m.index_id, (unsigned long long)j->their_index_id);
        j->fatal = true;
        goto out;
    }
    struct lr_folder_info info;
    if ((rc = lr_index_folder_get(d->ix, j->folder, &info, &j->err)) < 0)
        goto fail;
    /* Silent merges only while the peer reconciles towards us too (file
     * comment): it holds nothing of ours and gets our index as a SUMMARY.
     * Had it been sent our full index (its FOLDERS said it held nothing at
     * all, so no SUMMARY was offered), it took the unmerged vectors and
     * merges them itself, announcing the result: a silent merge here would
     * leave its copy of our records at the old vectors for good, and it
     * would wait forever for us to take its versions. */
    j->silent = j->we_summarise && lr_proto_index_full_needed(info.index_id, info.max_seq,
                                                              j->their_view_id, j->their_view_seq);
    if ((rc = lr_summary_new(m.nb, &mine, &j->err)) < 0)
        goto fail;
    if ((rc = list_all(d->ix, j->folder, UINT64_MAX, 0, mine, &keep, &nkeep, &j->err)) < 0)
        goto fail;
    lr_summary_finish(mine);
    uint32_t ndiff = 0;
    if ((rc = lr_summary_diff(mine, &m, &j->want.bits, &ndiff, &j->err)) < 0)
        goto fail;
    j->differ = ndiff;
    if ((rc = lr_index_begin(d->ix, &j->err)) < 0)
        goto fail;
    tx = true;
    if ((rc = lr_index_remote_full_begin(d->ix, j->folder, &j->peer, m.index_id, &j->err)) < 0)
        goto fail;
    struct sync_tracker *t = sync_tracker_get(d->sync, &j->peer, j->folder);
    t->recon_index = m.index_id;
    t->recon_seq = m.seq;
    t->recon_epoch = j->epoch;
    size_t intx = 0;
    for (uint32_t b = 0; b < m.nb && rc == 0; b++)
        if (m.count[b] > 0 && !lr_summary_bit(j->want.bits, b))
            rc = adopt_bucket(d, j, &m, mine, keep, b, &intx);
    if (rc < 0)
        goto fail;
    tx = false;
    if ((rc = lr_index_commit(d->ix, &j->err)) < 0)
        goto fail;
    snprintf(j->want.folder, sizeof(j->want.folder), "%s", j->folder);
    j->want.index_id = m.index_id;
    j->want.seq = m.seq;
    j->want.nb = m.nb;
    goto out;
fail:
    if (tx)
        lr_index_rollback(d->ix);
    j->rc = rc;
    j->fatal = true;
out:
    for (size_t i = 0; i < nkeep; i++)
        lr_file_rec_release(&keep[i]);
    free(keep);
    lr_summary_free(mine);
    lr_summary_msg_release(&m);
}

static void recon_done(struct daemon_job *base, int status)
{
    struct recon_job *j = (struct recon_job *)base;
    struct lr_daemon *d = base->d;
    if (status == 0 && !d->stopping) {
        struct sync_peer *p = sync_peer_get(d, &j->peer);
        char id[LR_DEVICE_ID_SHORTLEN + 1];
        lr_device_id_short(&p->id, id);
        if (j->fatal) {
            if (p->gen == j->gen)
                sync_peer_fatal(d, p, "SUMMARY not accepted", j->rc, &j->err);
        } else if (!j->ignored && p->gen == j->gen && p->conn) {
            struct lr_buf b;
            lr_buf_init(&b, LR_PROTO_SUMMARY_WANT_MAX);
            struct lr_err e = {0};
            int rc = lr_summary_want_encode(&j->want, &b, &e);
            if (rc < 0) {
                sync_peer_fatal(d, p, "cannot encode SUMMARY_WANT", rc, &e);
            } else {
                lr_info(MOD,
                        "peer=%s folder=%s reconciled without history: %llu records agree "
                        "(%llu vectors merged), %llu of %u buckets differ",
                        id, j->folder, (unsigned long long)j->adopted,
                        (unsigned long long)j->merged, (unsigned long long)j->differ, j->want.nb);
                size_t len;
                uint8_t *pl = lr_buf_detach(&b, &len);
                p->index_sent += len;
                sync_send(d, p, LR_STREAM_CONTROL, LR_MSG_SUMMARY_WANT, pl, len);
            }
            lr_buf_release(&b);
        }
        if (!j->fatal && j->taken)
            sync_local_changed(d, j->folder); /* the adopted vectors */
    }
    lr_summary_want_release(&j->want);
    free(j->payload);
    free(j);
}

void sync_recon_on_summary(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                           size_t len)
{
    p->index_recv += len;
    p->summaries_recv++;
    struct recon_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = recon_work;
    j->base.done = recon_done;
    j->peer = p->id;
    j->gen = p->gen;
    j->feat = (p->features & LR_FEAT_RECON) != 0;
    j->payload = lr_xmalloc(len ? len : 1);
    if (len)
        memcpy(j->payload, payload, len);
    j->len = len;
    /* The link state the job needs is read now, in arrival order with
     * FOLDERS; the payload's first field names the folder (the job decodes
     * and checks the whole message). */
    struct lr_rd rd;
    char folder[LR_PROTO_FOLDER_ID_MAX + 1];
    lr_rd_init(&rd, payload, len);
    if (lr_proto_get_folder_id(&rd, "summary.folder", folder, NULL) == 0) {
        struct sync_link *l = sync_link_find(d, &p->id, folder);
        if (l && l->listed) {
            j->their_index_id = l->their_index_id;
            j->their_view_id = l->their_view_id;
            j->their_view_seq = l->their_view_seq;
            j->epoch = l->recv_epoch;
            /* Sent or waiting for its SUMMARY_WANT, or about to be sent
             * (the sender's own rule, sync.c send_work). */
            j->we_summarise =
                l->recon_wait || l->recon_bits ||
                (!l->send_decided && (p->features & LR_FEAT_RECON) && l->their_max_seq > 0);
            l->recv_mid = true;
            const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder);
            j->modes_adopt =
                fc && (fc->mode == LR_MODE_SEND_ONLY || fc->mode == LR_MODE_RECEIVE_ONLY);
            j->self_if_receive_only = fc && fc->mode == LR_MODE_RECEIVE_ONLY ? d->short_id : 0;
        }
    }
    daemon_job_queue(d, &j->base);
}

/* ---- a peer's SUMMARY_WANT ---- */

void sync_recon_on_want(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                        size_t len)
{
    struct lr_summary_want w;
    struct lr_err err = {0};
    int rc = lr_summary_want_decode(payload, len, &w, &err);
    if (rc < 0) {
        sync_peer_fatal(d, p, "invalid SUMMARY_WANT", rc, &err);
        return;
    }
    p->index_recv += len;
    if (!(p->features & LR_FEAT_RECON)) {
        lr_err_set(&err, LR_EPROTO, "SUMMARY_WANT without the RECON feature in force");
        sync_peer_fatal(d, p, "unexpected SUMMARY_WANT", LR_EPROTO, &err);
        lr_summary_want_release(&w);
        return;
    }
    struct sync_link *l = sync_link_find(d, &p->id, w.folder);
    if (!l || !l->listed || !l->recon_wait || w.index_id != l->recon_index ||
        w.seq != l->recon_seq || w.nb != l->recon_nb) {
        /* An answer to a SUMMARY a newer FOLDERS or reconnect superseded. */
        lr_debug(MOD, "folder=%s stale SUMMARY_WANT ignored", w.folder);
        lr_summary_want_release(&w);
        return;
    }
    l->recon_wait = false;
    free(l->recon_bits);
    l->recon_bits = w.bits;
    w.bits = NULL;
    l->send_decided = true;
    l->send_first = true; /* sent as RECON: sync.c */
    l->send_next = 1;
    lr_summary_want_release(&w);
    sync_queue_sender(d, l);
}
