/* indexmsg.c - INDEX batches: entry codec, batch builder, streaming decoder. */
#include "proto/proto_int.h"

#include "chunker/chunker.h"
#include "sync/delta.h"
#include "util/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LR_FT_UNKNOWN
/* index/ stores entries of unknown type under the same value. */
_Static_assert(LR_FT_UNKNOWN == LR_PROTO_FT_UNKNOWN, "one value for unknown entry types");
#endif

/* Smallest possible encoded entry: length prefix 1, path 2, type 1, flags 1,
 * seq 1, size 1, mtime 8, mode 1, vv 1 + 16, target 1, blocks 4 = 38. Used
 * to reject a count that cannot fit in the declared body before decoding. */
#define ENTRY_MIN 38
/* Upper bound of an INDEX header (folder ID 2 + 255, index ID 8, five
 * varints of at most 8 bytes): reserved before writing a batch out. */
#define INDEX_HDR_MAX 512
/* Bytes the four block-field varints and the entry length may grow by when
 * the block count goes from 0 to k (each varint up to 8 bytes). */
#define ENTRY_SLACK 40

static bool is_live_file(const struct lr_file_rec *r)
{
    return r->type == LR_FT_FILE && !r->deleted;
}

/* ---- records -> entries ---------------------------------------------------- */

/* The same rules the decoder enforces, so we never send what a peer refuses. */
static int rec_check(const struct lr_file_rec *r)
{
    if (!r->path || lr_index_path_check(r->path, r->path_len, NULL) < 0)
        return LR_EBADVAL;
    if (r->type != LR_FT_FILE && r->type != LR_FT_DIR && r->type != LR_FT_SYMLINK)
        return LR_EBADVAL;
    if (r->seq == 0 || r->seq > LR_VARINT_MAX || (r->mode & ~07777u))
        return LR_EBADVAL;
    if (r->vv.n == 0 || r->vv.n > LR_VV_MAX)
        return LR_EBADVAL;
    for (size_t i = 0; i < r->vv.n; i++) {
        if (r->vv.e[i].counter == 0 || (i > 0 && r->vv.e[i].id <= r->vv.e[i - 1].id))
            return LR_EBADVAL;
    }
    bool live = is_live_file(r), link = r->type == LR_FT_SYMLINK && !r->deleted;
    if (link ? (!r->target || r->target_len == 0 || r->target_len > LR_INDEX_TARGET_MAX ||
                memchr(r->target, 0, r->target_len))
             : r->target_len != 0)
        return LR_EBADVAL;
    if (!live)
        return r->size == 0 && r->nchunks == 0 ? 0 : LR_EBADVAL;
    if (r->size > LR_VARINT_MAX || r->nchunks > LR_INDEX_CHUNKS_MAX ||
        (r->size == 0) != (r->nchunks == 0) || (r->nchunks && !r->chunks))
        return LR_EBADVAL;
    uint64_t off = 0;
    for (size_t i = 0; i < r->nchunks; i++) {
        if (r->chunks[i].off != off || r->chunks[i].len == 0 || r->chunks[i].len > LR_CHUNK_MAX)
            return LR_EBADVAL;
        off += r->chunks[i].len;
    }
    return off == r->size ? 0 : LR_EBADVAL;
}

/* Entry fields up to and including the symlink target. */
static int put_entry_head(struct lr_buf *b, const struct lr_file_rec *r, uint64_t flags)
{
    int rc = lr_buf_put_lbytes(b, r->path, r->path_len);
    if (rc == 0)
        rc = lr_buf_put_varint(b, (uint64_t)r->type);
    if (rc == 0)
        rc = lr_buf_put_varint(b, flags | (r->deleted ? LR_PROTO_ENTRY_DELETED : 0));
    if (rc == 0)
        rc = lr_buf_put_varint(b, r->seq);
    if (rc == 0)
        rc = lr_buf_put_varint(b, r->size);
    if (rc == 0)
        rc = lr_buf_put_u64(b, (uint64_t)r->mtime_ns);
    if (rc == 0)
        rc = lr_buf_put_varint(b, r->mode);
    if (rc == 0)
        rc = lr_buf_put_varint(b, r->vv.n);
    if (rc == 0)
        rc = lr_vv_encode(&r->vv, b);
    if (rc == 0)
        rc = lr_buf_put_lbytes(b, r->target, r->target_len);
    return rc;
}

/* The optional last field: the version's author, when it is known (an id
 * of the vector, index.h). */
static int put_author(struct lr_buf *b, const struct lr_file_rec *r)
{
    if (!r->vv.author || !lr_vv_get(&r->vv, r->vv.author))
        return 0;
    return lr_buf_put_u64(b, r->vv.author);
}

/* Entry body with blocks [from, from + k) of r. */
static int put_entry_body(struct lr_buf *b, const struct lr_file_rec *r, size_t from, size_t k)
{
    int rc = put_entry_head(b, r, 0);
    if (rc == 0)
        rc = lr_buf_put_varint(b, r->nchunks);
    if (rc == 0)
        rc = lr_buf_put_varint(b, from);
    if (rc == 0)
        rc = lr_buf_put_varint(b, from < r->nchunks ? r->chunks[from].off : 0);
    if (rc == 0)
        rc = lr_buf_put_varint(b, k);
    for (size_t i = from; i < from + k && rc == 0; i++) {
        rc = lr_buf_put_u32(b, r->chunks[i].len);
        if (rc == 0)
            rc = lr_buf_put(b, r->chunks[i].hash.b, LR_HASH_LEN);
    }
    return rc == 0 ? put_author(b, r) : rc;
}

int lr_proto_index_batch_init(struct lr_proto_index_batch *b, const char *folder_id,
                              uint64_t index_id, size_t raw_max, size_t max_entries)
{
    memset(b, 0, sizeof(*b));
    size_t fl = strnlen(folder_id, LR_PROTO_FOLDER_ID_MAX + 1);
    if (raw_max == 0)
        raw_max = LR_PROTO_INDEX_BATCH_RAW;
    if (max_entries == 0)
        max_entries = LR_PROTO_INDEX_ENTRIES_MAX;
    /* 64 KiB holds the largest entry header (path, vv, target) plus a block. */
    if (!lr_proto_folder_id_ok(folder_id, fl) || index_id == 0 || raw_max < (64u << 10) ||
        raw_max > LR_PROTO_INDEX_BATCH_RAW || max_entries > LR_PROTO_INDEX_ENTRIES_MAX)
        return LR_EBADVAL;
    memcpy(b->folder_id, folder_id, fl);
    b->index_id = index_id;
    b->raw_max = raw_max;
    b->max_entries = max_entries;
    lr_buf_init(&b->raw, raw_max);
    lr_buf_init(&b->scratch, raw_max);
    b->zc = lr_proto_zc_new();
    return 0;
}

void lr_proto_index_batch_release(struct lr_proto_index_batch *b)
{
    if (!b)
        return;
    lr_buf_release(&b->raw);
    lr_buf_release(&b->scratch);
    lr_proto_zc_free(b->zc);
    memset(b, 0, sizeof(*b));
}

/* Append the entry in scratch to raw. */
static int append_entry(struct lr_proto_index_batch *b, const struct lr_file_rec *rec)
{
    if (lr_buf_put_varint(&b->raw, b->scratch.len) < 0 ||
        lr_buf_put(&b->raw, b->scratch.data, b->scratch.len) < 0)
        return LR_EINTERNAL; /* sizes were checked against raw_max before */
    b->count++;
    b->last_seq = rec->seq;
    return 0;
}

int lr_proto_index_batch_add(struct lr_proto_index_batch *b, const struct lr_file_rec *rec,
                             size_t *next_block)
{
    size_t from = *next_block;
    if (from == 0) {
        if (rec_check(rec) < 0 || (b->count > 0 && rec->seq <= b->last_seq))
            return LR_EBADVAL;
    } else if (from >= rec->nchunks || b->count > 0) {
        /* A continuation starts a batch: the decoder allows it only first. */
        return LR_EBADVAL;
    }
    if (b->count >= b->max_entries)
        return LR_PROTO_BATCH_FULL;
    size_t rem = rec->nchunks - from;
    size_t avail = b->raw_max - b->raw.len;

    lr_buf_reset(&b->scratch);
    if (put_entry_body(&b->scratch, rec, from, 0) < 0)
        return LR_EINTERNAL; /* the header alone is < 64 KiB <= raw_max */
    size_t hdr = b->scratch.len + ENTRY_SLACK;
    /* rem <= 2^26, so this cannot overflow. */
    size_t need = hdr + rem * LR_PROTO_BLOCK_LEN;
    size_t k;
    if (need <= avail) {
        k = rem;
    } else if (b->count > 0 && need <= b->raw_max) {
        return LR_PROTO_BATCH_FULL; /* fits in the next batch whole */
    } else {
        /* Too big for any batch: fill this one with a segment. */
        if (avail < hdr + LR_PROTO_BLOCK_LEN)
            return LR_PROTO_BATCH_FULL;
        k = (avail - hdr) / LR_PROTO_BLOCK_LEN;
    }
    lr_buf_reset(&b->scratch);
    if (put_entry_body(&b->scratch, rec, from, k) < 0)
        return LR_EINTERNAL;
    int rc = append_entry(b, rec);
    if (rc < 0)
        return rc;
    *next_block = from + k;
    return k == rem ? 0 : LR_PROTO_BATCH_FULL;
}

int lr_proto_index_batch_add_delta(struct lr_proto_index_batch *b, const struct lr_file_rec *rec,
                                   const struct lr_hash *base, const uint8_t *delta,
                                   size_t delta_len)
{
    uint64_t count;
    struct lr_file_rec meta = *rec;
    meta.chunks = NULL;
    meta.nchunks = 0;
    meta.size = 0;
    if (!is_live_file(rec) || rec_check(&meta) < 0 || rec->size > LR_VARINT_MAX ||
        (b->count > 0 && rec->seq <= b->last_seq) ||
        lr_sync_delta_scan(delta, delta_len, &count, NULL, NULL) < 0 || count == 0 ||
        (rec->nchunks && count != rec->nchunks) || count > rec->size ||
        rec->size > count * LR_CHUNK_MAX)
        return LR_EBADVAL;
    if (count > LR_PROTO_DELTA_BLOCKS_MAX)
        return LR_ETOOBIG;
    if (b->count >= b->max_entries)
        return LR_PROTO_BATCH_FULL;
    lr_buf_reset(&b->scratch);
    int rc = put_entry_head(&b->scratch, rec, LR_PROTO_ENTRY_DELTA);
    if (rc == 0)
        rc = lr_buf_put_varint(&b->scratch, count);
    if (rc == 0)
        rc = lr_buf_put(&b->scratch, base->b, LR_HASH_LEN);
    if (rc == 0)
        rc = lr_buf_put(&b->scratch, rec->blocks_hash.b, LR_HASH_LEN);
    if (rc == 0)
        rc = lr_buf_put_lbytes(&b->scratch, delta, delta_len);
    if (rc == 0)
        rc = put_author(&b->scratch, rec);
    /* The entry and its length prefix (at most 8 bytes). */
    if (rc < 0 || b->scratch.len + 8 > b->raw_max) {
        lr_buf_reset(&b->scratch);
        return LR_ETOOBIG;
    }
    if (b->scratch.len + 8 > b->raw_max - b->raw.len)
        return LR_PROTO_BATCH_FULL;
    return append_entry(b, rec);
}

int lr_proto_index_batch_finish(struct lr_proto_index_batch *b, uint64_t flags, struct lr_buf *out)
{
    if ((flags & ~(uint64_t)(LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_LAST | LR_PROTO_INDEX_RECON)) ||
        ((flags & LR_PROTO_INDEX_FIRST) && (flags & LR_PROTO_INDEX_RECON)))
        return LR_EBADVAL;
    size_t rl = b->raw.len, zl = 0;
    uint8_t *z = NULL;
    if (rl > 0) {
        size_t cap = ZSTD_compressBound(rl);
        z = lr_xmalloc(cap);
        zl = lr__proto_zstd(b->zc, 3, b->raw.data, rl, z, cap);
    }
    int rc = 0;
    if (!lr_buf_reserve(out, INDEX_HDR_MAX + (zl ? zl : rl)))
        rc = LR_ETOOBIG;
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, b->folder_id, strlen(b->folder_id));
    if (rc == 0)
        rc = lr_buf_put_u64(out, b->index_id);
    if (rc == 0)
        rc = lr_buf_put_varint(out, flags);
    if (rc == 0)
        rc = lr_buf_put_varint(out, b->count);
    if (rc == 0)
        rc = lr_buf_put_varint(out, rl);
    if (rc == 0)
        rc = lr_buf_put_varint(out, zl ? LR_PROTO_COMP_ZSTD : LR_PROTO_COMP_NONE);
    if (rc == 0)
        rc = zl ? lr_buf_put_lbytes(out, z, zl) : lr_buf_put_lbytes(out, b->raw.data, rl);
    free(z);
    if (rc == 0) {
        lr_buf_reset(&b->raw);
        b->count = 0;
        b->last_seq = 0;
    }
    return rc;
}

/* ---- decoding ------------------------------------------------------------------ */

void lr_proto_entry_release(struct lr_proto_entry *e)
{
    if (!e)
        return;
    lr_file_rec_release(&e->rec);
    free(e->delta_bytes);
    memset(e, 0, sizeof(*e));
}

bool lr_proto_entry_continues(const struct lr_proto_entry *prev, const struct lr_proto_entry *next)
{
    const struct lr_file_rec *a = &prev->rec, *b = &next->rec;
    if (prev->unknown_type || next->unknown_type || !is_live_file(a) || !is_live_file(b) ||
        a->nchunks == 0 || b->nchunks == 0)
        return false;
    const struct lr_chunk *last = &a->chunks[a->nchunks - 1];
    return a->path_len == b->path_len && memcmp(a->path, b->path, a->path_len) == 0 &&
           a->seq == b->seq && a->size == b->size && a->mtime_ns == b->mtime_ns &&
           a->mode == b->mode && lr_vv_equal(&a->vv, &b->vv) &&
           prev->blk_total == next->blk_total && next->blk_first == prev->blk_first + a->nchunks &&
           b->chunks[0].off == last->off + last->len;
}

int lr_proto_index_open(struct lr_proto_index_rd *r, const uint8_t *p, size_t n,
                        struct lr_proto_zc *zc, struct lr_err *err)
{
    struct lr_proto_index_hdr h;
    struct lr_rd rd;
    const uint8_t *body;
    size_t body_len;
    memset(r, 0, sizeof(*r));
    memset(&h, 0, sizeof(h));
    lr_rd_init(&rd, p, n);
    int rc = lr_proto_get_folder_id(&rd, "index.folder", h.folder_id, err);
    if (rc < 0)
        return rc;
    if (lr_rd_get_u64(&rd, &h.index_id) < 0)
        return lr_err_set(err, LR_ETRUNC, "index.index_id: truncated");
    if (h.index_id == 0)
        return lr_err_set(err, LR_EBADVAL, "index.index_id: 0");
    /* Flag values <= 7 are exactly the subsets of FIRST|LAST|RECON. */
    if ((rc = lr__proto_get_uint(&rd, "index.flags",
                                 LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_LAST | LR_PROTO_INDEX_RECON,
                                 &h.flags, err)) < 0)
        return rc;
    if ((h.flags & LR_PROTO_INDEX_FIRST) && (h.flags & LR_PROTO_INDEX_RECON))
        return lr_err_set(err, LR_EBADVAL, "index.flags: FIRST with RECON");
    if (lr_rd_get_varint(&rd, &h.count) < 0)
        return lr_err_set(err, LR_ETRUNC, "index.count: truncated");
    if (h.count > LR_PROTO_INDEX_ENTRIES_MAX)
        return lr_err_set(err, LR_ETOOBIG, "index.count: %" PRIu64 " over %d", h.count,
                          LR_PROTO_INDEX_ENTRIES_MAX);
    if (lr_rd_get_varint(&rd, &h.raw_len) < 0)
        return lr_err_set(err, LR_ETRUNC, "index.raw_len: truncated");
    if (h.raw_len > LR_PROTO_INDEX_RAW_MAX)
        return lr_err_set(err, LR_ETOOBIG, "index.raw_len: %" PRIu64 " over %u", h.raw_len,
                          LR_PROTO_INDEX_RAW_MAX);
    if (h.count * ENTRY_MIN > h.raw_len)
        return lr_err_set(err, LR_EBADVAL,
                          "index.count: %" PRIu64 " entries cannot fit in %" PRIu64 " bytes",
                          h.count, h.raw_len);
    if ((rc = lr__proto_get_uint(&rd, "index.compression", LR_PROTO_COMP_ZSTD, &h.comp, err)) < 0)
        return rc;
    rc = lr_rd_get_lview(&rd, &body, &body_len, LR_PROTO_INDEX_MAX);
    if (rc == LR_ETOOBIG)
        return lr_err_set(err, rc, "index.body: over %zu bytes", (size_t)LR_PROTO_INDEX_MAX);
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "index.body: truncated");
    if (h.comp == LR_PROTO_COMP_NONE) {
        if (body_len != h.raw_len)
            return lr_err_set(err, LR_EBADVAL, "index.body: %zu bytes, raw_len %" PRIu64, body_len,
                              h.raw_len);
        lr_rd_init(&r->rd, body, body_len);
    } else {
        if (body_len >= h.raw_len)
            return lr_err_set(err, LR_EBADVAL,
                              "index.body: compressed %zu bytes not smaller than %" PRIu64,
                              body_len, h.raw_len);
        /* raw_len <= 8 MiB was checked above, and the frame header must
         * agree with it before anything is allocated. */
        if ((rc = lr__proto_zstd_check(body, body_len, (size_t)h.raw_len, "index.body", err)) < 0)
            return rc;
        uint8_t *raw = lr_xmalloc((size_t)h.raw_len);
        rc = lr__proto_unzstd(zc, body, body_len, raw, (size_t)h.raw_len, "index.body", err);
        if (rc < 0) {
            free(raw);
            return rc;
        }
        r->owned = raw;
        lr_rd_init(&r->rd, raw, (size_t)h.raw_len);
    }
    r->hdr = h;
    return 0;
}

void lr_proto_index_close(struct lr_proto_index_rd *r)
{
    if (!r)
        return;
    free(r->owned);
    memset(r, 0, sizeof(*r));
}

/* Block fields of a live file, validated; fills rec->chunks. */
static int parse_blocks(struct lr_rd *er, const char *w, bool first_in_batch, bool last_in_batch,
                        struct lr_proto_entry *e, uint64_t boff, uint64_t nblk, struct lr_err *err)
{
    struct lr_file_rec *rec = &e->rec;
    uint64_t total = e->blk_total, first = e->blk_first, size = rec->size;
    if (total > LR_INDEX_CHUNKS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "%s.blocks: %" PRIu64 " over %" PRIu64, w, total,
                          LR_INDEX_CHUNKS_MAX);
    /* Every block is 1..LR_CHUNK_MAX bytes (total <= 2^26: no overflow). */
    if (total > size || size > total * LR_CHUNK_MAX)
        return lr_err_set(err, LR_EBADVAL,
                          "%s.blocks: %" PRIu64 " blocks cannot hold %" PRIu64 " bytes", w, total,
                          size);
    if (first > total || nblk > total - first)
        return lr_err_set(err, LR_EBADVAL,
                          "%s.blocks: segment %" PRIu64 "+%" PRIu64 " past %" PRIu64, w, first,
                          nblk, total);
    if (total > 0 && nblk == 0)
        return lr_err_set(err, LR_EBADVAL, "%s.blocks: empty segment", w);
    if (first == 0 && boff != 0)
        return lr_err_set(err, LR_EBADVAL, "%s.blocks: offset %" PRIu64 " for block 0", w, boff);
    if (first > 0) {
        if (!first_in_batch)
            return lr_err_set(err, LR_EBADVAL, "%s.blocks: continuation not first in batch", w);
        if (boff < first || boff > first * LR_CHUNK_MAX || boff >= size)
            return lr_err_set(err, LR_EBADVAL,
                              "%s.blocks: offset %" PRIu64 " impossible for block %" PRIu64, w,
                              boff, first);
    }
    bool complete = first + nblk == total;
    if (!complete && !last_in_batch)
        return lr_err_set(err, LR_EBADVAL, "%s.blocks: unfinished segment not last in batch", w);
    const uint8_t *bp;
    if (lr_rd_get_view(er, &bp, (size_t)nblk * LR_PROTO_BLOCK_LEN) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.blocks: truncated", w);
    /* Validate before allocating anything. */
    uint64_t off = boff;
    for (uint64_t i = 0; i < nblk; i++) {
        const uint8_t *q = bp + i * LR_PROTO_BLOCK_LEN;
        uint32_t len = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
        if (len == 0 || len > LR_CHUNK_MAX)
            return lr_err_set(err, LR_EBADVAL,
                              "%s.blocks[%" PRIu64 "]: length %" PRIu32 " not in 1..%u", w,
                              first + i, len, LR_CHUNK_MAX);
        off += len;
        if (off > size)
            return lr_err_set(err, LR_EBADVAL,
                              "%s.blocks[%" PRIu64 "]: ends at %" PRIu64 " past size %" PRIu64, w,
                              first + i, off, size);
    }
    if (complete && off != size)
        return lr_err_set(err, LR_EBADVAL, "%s.blocks: sum to %" PRIu64 " bytes, size is %" PRIu64,
                          w, off, size);
    if (nblk > 0) {
        rec->chunks = lr_xmallocarray((size_t)nblk, sizeof(rec->chunks[0]));
        rec->nchunks = (size_t)nblk;
    }
    off = boff;
    for (size_t i = 0; i < rec->nchunks; i++) {
        const uint8_t *q = bp + i * LR_PROTO_BLOCK_LEN;
        struct lr_chunk *c = &rec->chunks[i];
        c->off = off;
        c->len = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
        memcpy(c->hash.b, q + 4, LR_HASH_LEN);
        c->weak = 0;
        off += c->len;
    }
    e->whole = first == 0 && complete;
    if (e->whole)
        lr_index_blocks_hash(rec->chunks, rec->nchunks, &rec->blocks_hash);
    return 0;
}

/* The fields of a delta entry after the target (§6.6): count, base hash,
 * result hash, delta; the delta is checked without its base. */
static int parse_delta(struct lr_rd *er, const char *w, struct lr_proto_entry *e,
                       struct lr_err *err)
{
    struct lr_file_rec *rec = &e->rec;
    uint64_t count, scanned;
    const uint8_t *d;
    size_t dlen;
    struct lr_err derr;
    if (lr_rd_get_varint(er, &count) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.delta: count truncated", w);
    if (count > LR_PROTO_DELTA_BLOCKS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "%s.delta: %" PRIu64 " blocks over %u", w, count,
                          LR_PROTO_DELTA_BLOCKS_MAX);
    if (count == 0 || count > rec->size || rec->size > count * LR_CHUNK_MAX)
        return lr_err_set(err, LR_EBADVAL,
                          "%s.delta: %" PRIu64 " blocks cannot hold %" PRIu64 " bytes", w, count,
                          rec->size);
    if (lr_rd_get_bytes(er, e->delta_base.b, LR_HASH_LEN) < 0 ||
        lr_rd_get_bytes(er, rec->blocks_hash.b, LR_HASH_LEN) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.delta: hashes truncated", w);
    int rc = lr_rd_get_lview(er, &d, &dlen, lr_rd_left(er));
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.delta: truncated", w);
    if ((rc = lr_sync_delta_scan(d, dlen, &scanned, NULL, &derr)) < 0)
        return lr_err_set(err, rc, "%s.%s", w, derr.msg);
    if (scanned != count)
        return lr_err_set(err, LR_EBADVAL, "%s.delta: yields %" PRIu64 " blocks, count %" PRIu64, w,
                          scanned, count);
    e->delta_count = count;
    e->delta_len = dlen;
    e->delta = true;
    e->whole = true;
    e->blk_total = e->blk_first = 0;
    e->delta_bytes = lr_xmemdup(d, dlen);
    return 0;
}

static int parse_entry(struct lr_proto_index_rd *r, struct lr_rd *er, const char *w,
                       struct lr_proto_entry *e, struct lr_err *err)
{
    struct lr_file_rec *rec = &e->rec;
    const uint8_t *path, *target, *vvp;
    size_t path_len, target_len;
    uint64_t flags, mtime, mode, nvv, boff, nblk;
    struct lr_err perr;

    int rc = lr_rd_get_lview(er, &path, &path_len, LR_INDEX_PATH_MAX);
    if (rc == LR_ETOOBIG)
        return lr_err_set(err, rc, "%s.path: over %d bytes", w, LR_INDEX_PATH_MAX);
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.path: truncated", w);
    if (lr_index_path_check(path, path_len, &perr) < 0)
        return lr_err_set(err, LR_EBADVAL, "%s.path: %s", w, perr.msg);
    if (lr_rd_get_varint(er, &e->wire_type) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.type: truncated", w);
    if ((rc = lr__proto_get_uint(er, "index.entry.flags",
                                 LR_PROTO_ENTRY_DELETED | LR_PROTO_ENTRY_DELTA, &flags, err)) < 0)
        return rc;
    e->delta = (flags & LR_PROTO_ENTRY_DELTA) != 0;
    if (lr_rd_get_varint(er, &rec->seq) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.seq: truncated", w);
    if (rec->seq == 0 || (r->idx > 0 && rec->seq <= r->last_seq))
        return lr_err_set(err, LR_EBADVAL, "%s.seq: %" PRIu64 " not above %" PRIu64, w, rec->seq,
                          r->last_seq);
    if (lr_rd_get_varint(er, &rec->size) < 0 || lr_rd_get_u64(er, &mtime) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.size/mtime: truncated", w);
    if ((rc = lr__proto_get_uint(er, "index.entry.mode", 07777, &mode, err)) < 0)
        return rc;
    if (lr_rd_get_varint(er, &nvv) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.vv: count truncated", w);
    if (nvv == 0)
        return lr_err_set(err, LR_EBADVAL, "%s.vv: empty version vector", w);
    if (nvv > LR_VV_MAX)
        return lr_err_set(err, LR_ETOOBIG, "%s.vv: %" PRIu64 " entries over %d", w, nvv, LR_VV_MAX);
    if (lr_rd_get_view(er, &vvp, (size_t)nvv * LR_VV_PAIR_LEN) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.vv: truncated", w);
    if (lr_vv_decode(vvp, (size_t)nvv * LR_VV_PAIR_LEN, &rec->vv) < 0)
        return lr_err_set(err, LR_EBADVAL, "%s.vv: ids not strictly increasing or a zero counter",
                          w);
    rc = lr_rd_get_lview(er, &target, &target_len, LR_INDEX_TARGET_MAX);
    if (rc == LR_ETOOBIG)
        return lr_err_set(err, rc, "%s.target: over %d bytes", w, LR_INDEX_TARGET_MAX);
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.target: truncated", w);
    if (e->delta) {
        rec->deleted = flags & LR_PROTO_ENTRY_DELETED;
        if (e->wire_type != LR_FT_FILE || rec->deleted)
            return lr_err_set(err, LR_EBADVAL, "%s.flags: delta on a %s", w,
                              rec->deleted ? "deleted entry" : "non-file");
        if (target_len)
            return lr_err_set(err, LR_EBADVAL, "%s.target: on a non-symlink", w);
        rec->type = LR_FT_FILE;
        rec->mtime_ns = (int64_t)mtime;
        rec->mode = (uint32_t)mode;
        if ((rc = parse_delta(er, w, e, err)) < 0)
            return rc;
        goto path;
    }
    if (lr_rd_get_varint(er, &e->blk_total) < 0 || lr_rd_get_varint(er, &e->blk_first) < 0 ||
        lr_rd_get_varint(er, &boff) < 0 || lr_rd_get_varint(er, &nblk) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.blocks: header truncated", w);
    if (nblk > lr_rd_left(er) / LR_PROTO_BLOCK_LEN)
        return lr_err_set(err, LR_ETRUNC, "%s.blocks: %" PRIu64 " blocks, %zu bytes left", w, nblk,
                          lr_rd_left(er));
    rec->deleted = flags & LR_PROTO_ENTRY_DELETED;
    rec->mtime_ns = (int64_t)mtime;
    rec->mode = (uint32_t)mode;

    if (e->wire_type > LR_FT_SYMLINK) {
        /* A type from a newer version: kept (path, vv, seq), never acted on.
         * Its other fields have meanings we do not know, so they are only
         * bounded (above), not judged, and not passed on. */
        e->unknown_type = true;
        rec->type = LR_PROTO_FT_UNKNOWN;
        rec->size = 0;
        e->blk_total = e->blk_first = 0;
    } else {
        rec->type = (enum lr_ftype)e->wire_type;
        bool live = is_live_file(rec), link = rec->type == LR_FT_SYMLINK && !rec->deleted;
        const char *what = rec->deleted             ? "deleted entry"
                           : rec->type == LR_FT_DIR ? "directory"
                                                    : "symlink";
        if (!live && rec->size != 0)
            return lr_err_set(err, LR_EBADVAL, "%s.size: %" PRIu64 " on a %s", w, rec->size, what);
        if (!live && (e->blk_total || e->blk_first || boff || nblk))
            return lr_err_set(err, LR_EBADVAL, "%s.blocks: present on a %s", w, what);
        if (link && (target_len == 0 || memchr(target, 0, target_len)))
            return lr_err_set(err, LR_EBADVAL, "%s.target: empty or with a NUL byte", w);
        if (!link && target_len)
            return lr_err_set(err, LR_EBADVAL, "%s.target: on a %s", w,
                              rec->deleted ? "deleted entry" : "non-symlink");
        if (live && (rc = parse_blocks(er, w, r->idx == 0, r->idx + 1 == r->hdr.count, e, boff,
                                       nblk, err)) < 0)
            return rc;
        if (link) {
            rec->target = lr_xmalloc(target_len + 1);
            memcpy(rec->target, target, target_len);
            rec->target[target_len] = '\0';
            rec->target_len = target_len;
        }
        if (!live)
            e->whole = true;
    }
path:
    /* The author (§6.6): kept only if it names an entry of the vector; a
     * peer that does not send it leaves it unknown. Not read after an
     * unknown type's fields, whose extent is not known. */
    if (!e->unknown_type && lr_rd_left(er) >= 8) {
        uint64_t author = 0;
        if (lr_rd_get_u64(er, &author) == 0 && lr_vv_get(&rec->vv, author))
            rec->vv.author = author;
    }
    /* Bytes after the known fields: added by a newer version, ignored. */
    rec->path = lr_xmalloc(path_len + 1);
    memcpy(rec->path, path, path_len);
    rec->path[path_len] = '\0';
    rec->path_len = path_len;
    return 0;
}

int lr_proto_index_next(struct lr_proto_index_rd *r, struct lr_proto_entry *e, struct lr_err *err)
{
    memset(e, 0, sizeof(*e));
    if (r->idx == r->hdr.count) {
        if (lr_rd_left(&r->rd) != 0)
            return lr_err_set(err, LR_EBADVAL, "index: %zu bytes after entry %" PRIu64,
                              lr_rd_left(&r->rd), r->hdr.count);
        return 0;
    }
    char w[40];
    snprintf(w, sizeof(w), "index.entry[%" PRIu64 "]", r->idx);
    struct lr_rd er;
    const uint8_t *ep;
    uint64_t elen;
    if (lr_rd_get_varint(&r->rd, &elen) < 0 || elen > lr_rd_left(&r->rd) ||
        lr_rd_get_view(&r->rd, &ep, (size_t)elen) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: truncated", w);
    lr_rd_init(&er, ep, (size_t)elen);
    int rc;
    rc = parse_entry(r, &er, w, e, err);
    if (rc < 0) {
        lr_proto_entry_release(e);
        return rc;
    }
    r->idx++;
    r->last_seq = e->rec.seq;
    return 1;
}

static int entry_path_cmp(const void *a, const void *b)
{
    const struct lr_file_rec *x = &(*(const struct lr_proto_entry *const *)a)->rec;
    const struct lr_file_rec *y = &(*(const struct lr_proto_entry *const *)b)->rec;
    size_t n = x->path_len < y->path_len ? x->path_len : y->path_len;
    int c = memcmp(x->path, y->path, n);
    return c ? c : (x->path_len > y->path_len) - (x->path_len < y->path_len);
}

void lr_proto_index_release(struct lr_proto_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++)
        lr_proto_entry_release(&ix->v[i]);
    free(ix->v);
    memset(ix, 0, sizeof(*ix));
}

int lr_proto_index_decode(const uint8_t *p, size_t n, struct lr_proto_zc *zc,
                          struct lr_proto_index *out, struct lr_err *err)
{
    struct lr_proto_index_rd r;
    struct lr_proto_index ix;
    memset(out, 0, sizeof(*out));
    int rc = lr_proto_index_open(&r, p, n, zc, err);
    if (rc < 0)
        return rc;
    memset(&ix, 0, sizeof(ix));
    ix.hdr = r.hdr;
    /* count <= 10 000 (checked by open). */
    ix.v = r.hdr.count ? lr_xcalloc((size_t)r.hdr.count, sizeof(ix.v[0])) : NULL;
    for (;;) {
        /* The call that reports the end writes to a spare, not past v[]. */
        struct lr_proto_entry spare, *e = ix.n < r.hdr.count ? &ix.v[ix.n] : &spare;
        if ((rc = lr_proto_index_next(&r, e, err)) != 1)
            break;
        ix.n++;
    }
    lr_proto_index_close(&r);
    if (rc == 0 && ix.n > 1) {
        /* One path twice in a batch (with one type or two) is a lie about
         * the index: the batch comes from one sequence-ordered snapshot. */
        const struct lr_proto_entry **s = lr_xmallocarray(ix.n, sizeof(*s));
        for (size_t i = 0; i < ix.n; i++)
            s[i] = &ix.v[i];
        qsort(s, ix.n, sizeof(*s), entry_path_cmp);
        for (size_t i = 1; i < ix.n && rc == 0; i++) {
            if (entry_path_cmp(&s[i - 1], &s[i]) == 0)
                rc = lr_err_set(err, LR_EBADVAL, "index: path of entry %zu appears twice",
                                (size_t)(s[i] - ix.v));
        }
        free(s);
    }
    if (rc < 0) {
        lr_proto_index_release(&ix);
        return rc;
    }
    *out = ix;
    return 0;
}
