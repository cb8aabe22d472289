/* have.c - the HAVE codec (see have.h). */
#include "proto/have.h"
#include "proto/proto_int.h"

#include <inttypes.h>
#include <string.h>

static bool bit(const uint8_t *bits, uint64_t k)
{
    return (bits[k >> 3] >> (k & 7)) & 1;
}

/* The next run of set bits at or after *pos below n: [*first, *first + *count). */
static bool next_run(const uint8_t *bits, uint64_t n, uint64_t *pos, uint64_t *first,
                     uint64_t *count)
{
    uint64_t k = *pos;
    while (k < n) {
        if ((k & 7) == 0 && bits[k >> 3] == 0) {
            k += 8; /* whole empty bytes at once: a sparse map is mostly zeros */
            continue;
        }
        if (bit(bits, k))
            break;
        k++;
    }
    if (k >= n) {
        *pos = n;
        return false;
    }
    uint64_t e = k;
    while (e < n) {
        if ((e & 7) == 0 && e + 8 <= n && bits[e >> 3] == 0xff) {
            e += 8;
            continue;
        }
        if (!bit(bits, e))
            break;
        e++;
    }
    *first = k;
    *count = e - k;
    *pos = e;
    return true;
}

static size_t range_len(uint64_t prev_end, uint64_t first, uint64_t count)
{
    return lr_varint_len(first - prev_end) + lr_varint_len(count);
}

int lr_proto_have_encode(const struct lr_proto_have *h, const uint8_t *bits, struct lr_buf *out,
                         uint64_t *nsent)
{
    if (nsent)
        *nsent = 0;
    size_t fl = strnlen(h->folder_id, sizeof(h->folder_id));
    if (fl == sizeof(h->folder_id) || !lr_proto_folder_id_ok(h->folder_id, fl) || !h->path ||
        lr_index_path_check(h->path, h->path_len, NULL) < 0 || h->nchunks == 0 ||
        h->nchunks > LR_INDEX_CHUNKS_MAX || !bits)
        return LR_EBADVAL;
    uint64_t n = h->nchunks;
    size_t map_bytes = (size_t)((n + 7) / 8);
    /* Sizes of both bodies, from one pass over the runs. */
    uint64_t pos = 0, first, count, prev_end = 0, nranges = 0, held = 0;
    size_t ranges_bytes = 0;
    while (next_run(bits, n, &pos, &first, &count)) {
        ranges_bytes += range_len(prev_end, first, count);
        prev_end = first + count;
        nranges++;
        held += count;
    }
    size_t map_total = lr_varint_len(map_bytes) + map_bytes;
    size_t ranges_total = lr_varint_len(nranges) + ranges_bytes;
    int rc = lr_buf_put_lbytes(out, h->folder_id, fl);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, h->path, h->path_len);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, h->blocks_hash.b, LR_HASH_LEN);
    if (rc == 0)
        rc = lr_buf_put_varint(out, n);
    if (rc < 0)
        return rc;
    size_t room = out->max - out->len; /* form byte included below */
    if (map_total <= ranges_total && 1 + map_total <= room) {
        rc = lr_buf_put_varint(out, LR_PROTO_HAVE_BITMAP);
        uint8_t *dst = NULL;
        if (rc == 0)
            rc = lr_buf_put_varint(out, map_bytes);
        if (rc == 0 && !(dst = lr_buf_reserve(out, map_bytes)))
            rc = LR_ETOOBIG;
        if (rc < 0)
            return rc;
        memcpy(dst, bits, map_bytes);
        if (n & 7)
            dst[map_bytes - 1] &= (uint8_t)((1u << (n & 7)) - 1); /* no bits past the end */
        out->len += map_bytes;
        if (nsent)
            *nsent = held;
        return 0;
    }
    if (1 + ranges_total > room) {
        /* Announce the longest prefix that fits: k ranges cost their bytes
         * plus the count's varint. */
        uint64_t k = 0;
        size_t acc = 0;
        pos = 0;
        prev_end = 0;
        held = 0;
        while (next_run(bits, n, &pos, &first, &count)) {
            size_t c = range_len(prev_end, first, count);
            if (1 + lr_varint_len(k + 1) + acc + c > room)
                break;
            acc += c;
            prev_end = first + count;
            held += count;
            k++;
        }
        nranges = k;
    }
    rc = lr_buf_put_varint(out, LR_PROTO_HAVE_RANGES);
    if (rc == 0)
        rc = lr_buf_put_varint(out, nranges);
    pos = 0;
    prev_end = 0;
    for (uint64_t i = 0; rc == 0 && i < nranges && next_run(bits, n, &pos, &first, &count); i++) {
        rc = lr_buf_put_varint(out, first - prev_end);
        if (rc == 0)
            rc = lr_buf_put_varint(out, count);
        prev_end = first + count;
    }
    if (rc == 0 && nsent)
        *nsent = held;
    return rc;
}

static uint64_t popcount8(uint8_t v)
{
    return (uint64_t)__builtin_popcount(v);
}

int lr_proto_have_decode(const uint8_t *p, size_t n, struct lr_proto_have *h, struct lr_err *err)
{
    struct lr_proto_have t;
    struct lr_rd rd;
    uint64_t v;
    int rc;
    memset(h, 0, sizeof(*h));
    memset(&t, 0, sizeof(t));
    lr_rd_init(&rd, p, n);
    if ((rc = lr_proto_get_folder_id(&rd, "have.folder", t.folder_id, err)) < 0)
        return rc;
    rc = lr_rd_get_lview(&rd, &t.path, &t.path_len, LR_INDEX_PATH_MAX);
    if (rc == LR_ETOOBIG)
        return lr_err_set(err, rc, "have.path: over %d bytes", LR_INDEX_PATH_MAX);
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "have.path: truncated");
    struct lr_err perr;
    if (lr_index_path_check(t.path, t.path_len, &perr) < 0)
        return lr_err_set(err, LR_EBADVAL, "have.path: %s", perr.msg);
    if ((rc = lr__proto_get_hash(&rd, "have.blocks_hash", &t.blocks_hash, err)) < 0)
        return rc;
    if (lr_rd_get_varint(&rd, &t.nchunks) < 0)
        return lr_err_set(err, LR_ETRUNC, "have.nchunks: truncated");
    if (t.nchunks == 0 || t.nchunks > LR_INDEX_CHUNKS_MAX)
        return lr_err_set(err, LR_EBADVAL, "have.nchunks: %" PRIu64 " not in 1..%" PRIu64,
                          t.nchunks, (uint64_t)LR_INDEX_CHUNKS_MAX);
    if (lr_rd_get_varint(&rd, &v) < 0)
        return lr_err_set(err, LR_ETRUNC, "have.form: truncated");
    if (v == LR_PROTO_HAVE_BITMAP) {
        size_t want = (size_t)((t.nchunks + 7) / 8);
        uint64_t len;
        if (lr_rd_get_varint(&rd, &len) < 0)
            return lr_err_set(err, LR_ETRUNC, "have.bitmap: length truncated");
        if (len != want)
            return lr_err_set(err, LR_EBADVAL,
                              "have.bitmap: %" PRIu64 " bytes, %zu for %" PRIu64 " chunks", len,
                              want, t.nchunks);
        if (lr_rd_get_view(&rd, &t.body, want) < 0)
            return lr_err_set(err, LR_ETRUNC, "have.bitmap: %zu bytes declared, %zu left", want,
                              lr_rd_left(&rd));
        if ((t.nchunks & 7) && (t.body[want - 1] >> (t.nchunks & 7)) != 0)
            return lr_err_set(err, LR_EBADVAL, "have.bitmap: a chunk at or past %" PRIu64,
                              t.nchunks);
        for (size_t i = 0; i < want; i++)
            t.nheld += popcount8(t.body[i]);
        t.body_len = want;
        t.form = LR_PROTO_HAVE_BITMAP;
    } else if (v == LR_PROTO_HAVE_RANGES) {
        if (lr_rd_get_varint(&rd, &t.nranges) < 0)
            return lr_err_set(err, LR_ETRUNC, "have.nranges: truncated");
        /* Each range takes at least two bytes: a bound before the walk. */
        if (t.nranges > lr_rd_left(&rd) / 2)
            return lr_err_set(err, LR_ETRUNC, "have.nranges: %" PRIu64 " ranges in %zu bytes",
                              t.nranges, lr_rd_left(&rd));
        t.body = rd.pos;
        uint64_t end = 0;
        for (uint64_t i = 0; i < t.nranges; i++) {
            uint64_t skip, len;
            if (lr_rd_get_varint(&rd, &skip) < 0 || lr_rd_get_varint(&rd, &len) < 0)
                return lr_err_set(err, LR_ETRUNC, "have.range %" PRIu64 ": truncated", i);
            if (i > 0 && skip == 0)
                return lr_err_set(err, LR_EBADVAL,
                                  "have.range %" PRIu64 ": adjacent to the previous one", i);
            if (len == 0)
                return lr_err_set(err, LR_EBADVAL, "have.range %" PRIu64 ": empty", i);
            if (skip > t.nchunks - end || len > t.nchunks - end - skip)
                return lr_err_set(err, LR_EBADVAL,
                                  "have.range %" PRIu64 ": chunks past %" PRIu64 " (of %" PRIu64
                                  ")",
                                  i, t.nchunks, t.nchunks);
            end += skip + len;
            t.nheld += len;
        }
        t.body_len = (size_t)(rd.pos - t.body);
        t.form = LR_PROTO_HAVE_RANGES;
    } else {
        return lr_err_set(err, LR_EBADVAL, "have.form: unknown form %" PRIu64, v);
    }
    *h = t;
    return 0;
}

void lr_proto_have_iter(const struct lr_proto_have *h, struct lr_proto_have_it *it)
{
    memset(it, 0, sizeof(*it));
    lr_rd_init(&it->rd, h->body, h->body_len);
    it->left = h->form == LR_PROTO_HAVE_RANGES ? h->nranges : 0;
}

bool lr_proto_have_next(const struct lr_proto_have *h, struct lr_proto_have_it *it, uint64_t *first,
                        uint64_t *count)
{
    *first = 0;
    *count = 0;
    if (h->form == LR_PROTO_HAVE_BITMAP) {
        if (!h->body)
            return false;
        return next_run(h->body, h->nchunks, &it->pos, first, count);
    }
    uint64_t skip, len;
    /* Validated by the decoder: these reads cannot fail on a decoded HAVE. */
    if (it->left == 0 || lr_rd_get_varint(&it->rd, &skip) < 0 ||
        lr_rd_get_varint(&it->rd, &len) < 0)
        return false;
    it->left--;
    *first = it->pos + skip;
    *count = len;
    it->pos = *first + len;
    return true;
}
