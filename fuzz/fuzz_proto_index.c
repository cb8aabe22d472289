/*
 * fuzz_proto_index.c - the INDEX decoder, decompression included.
 *
 * The first input byte picks how the rest is used, so the fuzzer reaches
 * the entry parser without having to forge a header and a zstd frame:
 *   0: the rest is an INDEX payload;
 *   1: byte 1 is the entry count, the rest a raw (uncompressed) body;
 *   2: the same, with the body zstd-compressed when that shrinks it.
 * Whatever fails must fail with a "drop the peer" code and a message; the
 * streaming reader must agree with the whole decoder; whatever decodes must
 * satisfy the entry rules and, re-encoded by the batch builder, decode to
 * the same records.
 */
#include "proto/proto.h"
#include "sync/delta.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static void check_fail(int rc, const struct lr_err *err)
{
    if (rc > LR_E__FATAL_PEER || rc != err->code || err->msg[0] == '\0')
        abort();
}

static void check_entry(const struct lr_proto_entry *e)
{
    const struct lr_file_rec *r = &e->rec;
    if (lr_index_path_check(r->path, r->path_len, NULL) < 0 || r->path[r->path_len] != 0)
        abort();
    if (r->seq == 0 || r->vv.n == 0 || r->vv.n > LR_VV_MAX || r->mode > 07777)
        abort();
    if (e->unknown_type) {
        if (r->type != LR_PROTO_FT_UNKNOWN || r->size || r->nchunks || r->target)
            abort();
        return;
    }
    bool live = r->type == LR_FT_FILE && !r->deleted;
    if (!live && (r->size || r->nchunks))
        abort();
    if ((r->type == LR_FT_SYMLINK && !r->deleted) != (r->target_len > 0))
        abort();
    if (e->delta) {
        /* A delta entry: no list yet, a delta that scans to its count. */
        uint64_t n;
        if (!live || !e->whole || r->chunks || r->nchunks || e->blk_total || !e->delta_count ||
            lr_sync_delta_scan(e->delta_bytes, e->delta_len, &n, NULL, NULL) != 0 ||
            n != e->delta_count || e->delta_count > r->size)
            abort();
        return;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < r->nchunks; i++) {
        if (r->chunks[i].len == 0 || r->chunks[i].len > LR_PROTO_CHUNK_DATA_MAX)
            abort();
        if (i > 0 && r->chunks[i].off != r->chunks[i - 1].off + r->chunks[i - 1].len)
            abort();
        sum += r->chunks[i].len;
    }
    if (e->whole && live && sum != r->size)
        abort();
}

static bool delta_equal(const struct lr_proto_entry *a, const struct lr_proto_entry *b)
{
    return a->delta == b->delta &&
           (!a->delta || (a->delta_len == b->delta_len && a->delta_count == b->delta_count &&
                          memcmp(a->delta_bytes, b->delta_bytes, a->delta_len) == 0 &&
                          memcmp(a->delta_base.b, b->delta_base.b, LR_HASH_LEN) == 0));
}

static bool rec_equal(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    if (a->path_len != b->path_len || memcmp(a->path, b->path, a->path_len) || a->type != b->type ||
        a->deleted != b->deleted || a->size != b->size || a->mtime_ns != b->mtime_ns ||
        a->mode != b->mode || a->seq != b->seq || !lr_vv_equal(&a->vv, &b->vv) ||
        a->target_len != b->target_len ||
        (a->target_len && memcmp(a->target, b->target, a->target_len)) ||
        a->nchunks != b->nchunks || memcmp(a->blocks_hash.b, b->blocks_hash.b, LR_HASH_LEN))
        return false;
    for (size_t i = 0; i < a->nchunks; i++) {
        if (a->chunks[i].off != b->chunks[i].off || a->chunks[i].len != b->chunks[i].len ||
            memcmp(a->chunks[i].hash.b, b->chunks[i].hash.b, LR_HASH_LEN))
            return false;
    }
    return true;
}

/* Re-encode whole, known entries and decode them again. */
static void roundtrip(const struct lr_proto_index *ix)
{
    for (size_t i = 0; i < ix->n; i++) {
        if (ix->v[i].unknown_type || !ix->v[i].whole)
            return;
    }
    struct lr_proto_index_batch b;
    if (lr_proto_index_batch_init(&b, ix->hdr.folder_id, ix->hdr.index_id, 0, 0) < 0)
        abort();
    struct lr_buf out;
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    size_t i;
    for (i = 0; i < ix->n; i++) {
        size_t nb = 0;
        const struct lr_proto_entry *e = &ix->v[i];
        int rc = e->delta ? lr_proto_index_batch_add_delta(&b, &e->rec, &e->delta_base,
                                                           e->delta_bytes, e->delta_len)
                          : lr_proto_index_batch_add(&b, &e->rec, &nb);
        if (e->delta && rc == LR_ETOOBIG)
            break; /* a delta entry bigger than our batches */
        if (rc == LR_PROTO_BATCH_FULL)
            break; /* bigger than our own batches: fine, stop here */
        if (rc != 0)
            abort(); /* the decoder accepted what the encoder refuses */
    }
    size_t added = lr_proto_index_batch_count(&b);
    if (lr_proto_index_batch_finish(&b, ix->hdr.flags, &out) != 0)
        abort();
    struct lr_proto_index ix2;
    if (lr_proto_index_decode(out.data, out.len, NULL, &ix2, NULL) != 0 || ix2.n != added)
        abort();
    for (size_t k = 0; k < ix2.n && i == ix->n; k++) {
        if (!rec_equal(&ix->v[k].rec, &ix2.v[k].rec) || !delta_equal(&ix->v[k], &ix2.v[k]))
            abort();
    }
    lr_proto_index_release(&ix2);
    lr_proto_index_batch_release(&b);
    lr_buf_release(&out);
}

static void run(const uint8_t *p, size_t n, struct lr_proto_zc *zc)
{
    struct lr_err err;
    struct lr_proto_index ix;
    lr_err_clear(&err);
    int rc = lr_proto_index_decode(p, n, zc, &ix, &err);
    if (rc < 0) {
        check_fail(rc, &err);
    } else {
        const uint64_t known = LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_LAST | LR_PROTO_INDEX_RECON;
        if (ix.n != ix.hdr.count || (ix.hdr.flags & ~known) || ix.hdr.index_id == 0 ||
            ((ix.hdr.flags & LR_PROTO_INDEX_FIRST) && (ix.hdr.flags & LR_PROTO_INDEX_RECON)))
            abort();
        for (size_t i = 0; i < ix.n; i++)
            check_entry(&ix.v[i]);
        roundtrip(&ix);
        /* The cross-batch tracker: the batch after itself is never a valid
         * continuation of a burst unless it holds no entries, a FIRST or
         * only a continuation-free prefix; just exercise it for memory and
         * error-path sanity, and check a fresh tracker's verdict on a batch
         * that starts mid-file. */
        struct lr_proto_burst bt;
        struct lr_err berr;
        lr_proto_burst_init(&bt);
        lr_err_clear(&berr);
        int b1 = lr_proto_burst_check(&bt, ix.hdr.index_id, &ix, &berr);
        if (b1 < 0 && (b1 != LR_EPROTO || berr.msg[0] == '\0'))
            abort();
        if (ix.n > 0 && ix.v[0].blk_first > 0 && b1 == 0)
            abort();
        if (b1 == 0 && ix.n > 0 && lr_proto_burst_check(&bt, ix.hdr.index_id, &ix, NULL) == 0 &&
            !(ix.hdr.flags & (LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_RECON)) && !bt.seg_open)
            abort(); /* same sequences twice without FIRST or RECON must be refused */
        lr_proto_burst_release(&bt);
    }
    /* The streaming reader sees the same message the same way (except the
     * duplicate-path check, which only the whole decoder makes). */
    struct lr_proto_index_rd rd;
    struct lr_proto_entry e;
    size_t k = 0;
    int src = lr_proto_index_open(&rd, p, n, zc, NULL);
    if (src == 0) {
        while ((src = lr_proto_index_next(&rd, &e, NULL)) == 1) {
            if (rc == 0 && (!rec_equal(&e.rec, &ix.v[k].rec) || !delta_equal(&e, &ix.v[k])))
                abort();
            k++;
            lr_proto_entry_release(&e);
        }
        lr_proto_index_close(&rd);
    }
    if (rc == 0 && src != 0)
        abort();
    if (src == 0 && rc != 0 && rc != LR_EBADVAL)
        abort();
    if (rc == 0)
        lr_proto_index_release(&ix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 3;
    if (mode == 0) {
        run(data + 1, size - 1, NULL);
        return 0;
    }
    if (size < 2)
        return 0;
    const uint8_t *body = data + 2;
    size_t blen = size - 2;
    uint8_t *z = NULL;
    size_t zl = 0;
    if (mode == 2 && blen > 0) {
        size_t cap = ZSTD_compressBound(blen);
        z = malloc(cap);
        if (!z)
            abort();
        zl = ZSTD_compress(z, cap, body, blen, 1);
        if (ZSTD_isError(zl) || zl >= blen)
            zl = 0;
    }
    struct lr_buf m;
    lr_buf_init(&m, LR_PROTO_INDEX_MAX + 64);
    lr_buf_put_lbytes(&m, "fz", 2);
    lr_buf_put_u64(&m, 1);
    lr_buf_put_varint(&m, LR_PROTO_INDEX_LAST);
    lr_buf_put_varint(&m, data[1]);
    lr_buf_put_varint(&m, blen);
    lr_buf_put_varint(&m, zl ? LR_PROTO_COMP_ZSTD : LR_PROTO_COMP_NONE);
    lr_buf_put_lbytes(&m, zl ? z : body, zl ? zl : blen);
    if (lr_buf_ok(&m)) {
        struct lr_proto_zc *zc = lr_proto_zc_new();
        run(m.data, m.len, zc);
        lr_proto_zc_free(zc);
    }
    lr_buf_release(&m);
    free(z);
    return 0;
}
