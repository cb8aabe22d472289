/* burst.c - checks on INDEX that span batches: resume decision and the
 * receiver's burst tracker (docs/protocol.md §6.4, §6.6 "Segments"). */
#include "proto/proto_int.h"

#include "util/xalloc.h"

#include <inttypes.h>
#include <string.h>

bool lr_proto_index_full_needed(uint64_t own_index_id, uint64_t own_max_seq, uint64_t peer_index_id,
                                uint64_t peer_seq)
{
    /* A peer_seq above anything we issued means our sequences were reused
     * under the same index ID (should never happen: a rollback makes a new
     * ID); a full resend is the only safe answer. */
    return peer_index_id == 0 || peer_index_id != own_index_id || peer_seq > own_max_seq;
}

void lr_proto_burst_init(struct lr_proto_burst *b)
{
    memset(b, 0, sizeof(*b));
}

void lr_proto_burst_reset(struct lr_proto_burst *b)
{
    lr_proto_entry_release(&b->seg);
    lr_proto_burst_init(b);
}

void lr_proto_burst_release(struct lr_proto_burst *b)
{
    if (b)
        lr_proto_burst_reset(b);
}

/* Remember e (an unfinished live file) without its chunks. */
static void open_segment(struct lr_proto_burst *b, const struct lr_proto_entry *e)
{
    const struct lr_file_rec *r = &e->rec;
    const struct lr_chunk *last = &r->chunks[r->nchunks - 1];
    lr_proto_entry_release(&b->seg);
    b->seg = *e;
    b->seg.rec.path = lr_xmemdup(r->path, r->path_len + 1);
    b->seg.rec.target = NULL;
    b->seg.rec.chunks = NULL;
    b->seg.rec.nchunks = 0;
    memset(&b->seg.rec.vv, 0, sizeof(b->seg.rec.vv));
    lr_vv_copy(&b->seg.rec.vv, &r->vv);
    b->seg_next_first = e->blk_first + r->nchunks;
    b->seg_next_off = last->off + last->len;
    b->seg_open = true;
}

static bool continues(const struct lr_proto_burst *b, const struct lr_proto_entry *e)
{
    const struct lr_file_rec *a = &b->seg.rec, *r = &e->rec;
    return !e->unknown_type && r->type == LR_FT_FILE && !r->deleted && r->nchunks > 0 &&
           a->path_len == r->path_len && memcmp(a->path, r->path, r->path_len) == 0 &&
           a->seq == r->seq && a->size == r->size && a->mtime_ns == r->mtime_ns &&
           a->mode == r->mode && lr_vv_equal(&a->vv, &r->vv) && b->seg.blk_total == e->blk_total &&
           e->blk_first == b->seg_next_first && r->chunks[0].off == b->seg_next_off;
}

int lr_proto_burst_check(struct lr_proto_burst *b, uint64_t folders_index_id,
                         const struct lr_proto_index *batch, struct lr_err *err)
{
    const struct lr_proto_index_hdr *h = &batch->hdr;
    if (h->index_id != folders_index_id)
        return lr_err_set(err, LR_EPROTO,
                          "index %s: index ID %016" PRIx64 ", FOLDERS said %016" PRIx64,
                          h->folder_id, h->index_id, folders_index_id);
    if (h->flags & (LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_RECON)) {
        if (b->seg_open)
            return lr_err_set(err, LR_EPROTO, "index %s: %s while a chunk list is unfinished",
                              h->folder_id, (h->flags & LR_PROTO_INDEX_FIRST) ? "FIRST" : "RECON");
        b->last_seq = 0;
    }
    size_t i = 0;
    if (b->seg_open) {
        if (batch->n == 0 || !continues(b, &batch->v[0]))
            return lr_err_set(err, LR_EPROTO,
                              "index %s: unfinished chunk list of seq %" PRIu64 " not continued",
                              h->folder_id, b->seg.rec.seq);
        b->seg_open = false;
        i = 1; /* same seq as the piece before: already accounted for */
    } else if (batch->n > 0 && batch->v[0].blk_first > 0) {
        return lr_err_set(err, LR_EPROTO, "index %s: continuation of nothing (seq %" PRIu64 ")",
                          h->folder_id, batch->v[0].rec.seq);
    }
    if (i < batch->n && batch->v[i].rec.seq <= b->last_seq)
        return lr_err_set(err, LR_EPROTO,
                          "index %s: seq %" PRIu64 " after %" PRIu64 " in the same burst",
                          h->folder_id, batch->v[i].rec.seq, b->last_seq);
    if (batch->n > 0) {
        const struct lr_proto_entry *last = &batch->v[batch->n - 1];
        b->last_seq = last->rec.seq;
        /* The decoder allows an unfinished list only as the last entry. */
        if (!last->unknown_type && last->rec.type == LR_FT_FILE && !last->rec.deleted &&
            last->blk_first + last->rec.nchunks < last->blk_total)
            open_segment(b, last);
    }
    if ((h->flags & LR_PROTO_INDEX_LAST) && b->seg_open)
        return lr_err_set(err, LR_EPROTO, "index %s: LAST with a chunk list unfinished",
                          h->folder_id);
    return 0;
}
