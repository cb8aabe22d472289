/* summary.c - SUMMARY / SUMMARY_WANT: builder, codecs, diff (summary.h). */
#include "sync/summary.h"

#include "hash/hash.h"
#include "util/rd.h"
#include "util/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define ZLEVEL 3
/* Smallest encoded dictionary vector: k (1 byte) + one pair. */
#define VV_MIN (1 + LR_VV_PAIR_LEN)
/* Largest: k (2 bytes for <= 1024) + LR_VV_MAX pairs. */
#define VV_WIRE_MAX (2 + (uint64_t)LR_VV_MAX * LR_VV_PAIR_LEN)
/* Largest varint of a count or ref (values < 2^30). */
#define SMALL_VARINT_MAX 4

static bool nb_ok(uint64_t nb)
{
    return nb >= 1 && nb <= LR_SUMMARY_BUCKETS_MAX && (nb & (nb - 1)) == 0;
}

/* ---- digests ----------------------------------------------------------------- */

static uint8_t *put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    return p + n;
}

void lr_summary_entry_digest(const struct lr_file_rec *rec, struct lr_summary_digest *out)
{
    uint8_t stack[1024], *buf = stack, *p;
    size_t extra = rec->type == LR_FT_SYMLINK && !rec->deleted ? rec->target_len : 0;
    /* version, path length, path, deleted, type, the largest per-type part. */
    size_t need = 1 + 8 + rec->path_len + 1 + 1 + (8 + LR_HASH_LEN + 4 + 8) + 8 + extra;
    if (need > sizeof(stack))
        buf = lr_xmalloc(need);
    p = buf;
    *p++ = 1;
    p = put_be(p, rec->path_len, 8);
    if (rec->path_len) {
        memcpy(p, rec->path, rec->path_len);
        p += rec->path_len;
    }
    if (rec->deleted) {
        *p++ = 1;
    } else {
        *p++ = 0;
        *p++ = (uint8_t)rec->type;
        switch (rec->type) {
        case LR_FT_FILE:
            p = put_be(p, rec->size, 8);
            memcpy(p, rec->blocks_hash.b, LR_HASH_LEN);
            p += LR_HASH_LEN;
            p = put_be(p, rec->mode, 4);
            p = put_be(p, (uint64_t)rec->mtime_ns, 8);
            break;
        case LR_FT_DIR:
            p = put_be(p, rec->mode, 4);
            break;
        case LR_FT_SYMLINK:
            p = put_be(p, rec->target_len, 8);
            if (rec->target_len) {
                memcpy(p, rec->target, rec->target_len);
                p += rec->target_len;
            }
            p = put_be(p, (uint64_t)rec->mtime_ns, 8);
            break;
        default:
            break; /* unknown type: its fields are not ours to judge */
        }
    }
    struct lr_hash h;
    lr_sha256(buf, (size_t)(p - buf), &h);
    memcpy(out->b, h.b, LR_SUMMARY_DIGEST_LEN);
    if (buf != stack)
        free(buf);
}

uint32_t lr_summary_bucket(const uint8_t *path, size_t len, uint32_t nb)
{
    assert(nb_ok(nb));
    struct lr_hash h;
    lr_sha256(path, len, &h);
    uint32_t v = (uint32_t)h.b[0] << 24 | (uint32_t)h.b[1] << 16 | (uint32_t)h.b[2] << 8 | h.b[3];
    return v & (nb - 1);
}

uint32_t lr_summary_nbuckets(uint64_t n)
{
    uint64_t want = n / 32 + (n % 32 != 0);
    uint32_t nb = 1;
    while (nb < want && nb < LR_SUMMARY_BUCKETS_MAX)
        nb <<= 1;
    return nb;
}

/* acc += d, both 128-bit big-endian. */
static void digest_add(struct lr_summary_digest *acc, const struct lr_summary_digest *d)
{
    unsigned carry = 0;
    for (int i = LR_SUMMARY_DIGEST_LEN - 1; i >= 0; i--) {
        unsigned s = (unsigned)acc->b[i] + d->b[i] + carry;
        acc->b[i] = (uint8_t)s;
        carry = s >> 8;
    }
}

static bool digest_zero(const struct lr_summary_digest *d)
{
    for (size_t i = 0; i < LR_SUMMARY_DIGEST_LEN; i++)
        if (d->b[i])
            return false;
    return true;
}

/* ---- builder ------------------------------------------------------------------- */

struct entry {
    struct lr_summary_digest d;
    uint64_t tag;
    uint32_t bucket;
    uint32_t vv; /* index into the builder's dictionary */
};

struct lr_summary {
    uint32_t nb;
    bool finished;
    struct entry *e;
    size_t n, cap;
    /* Distinct vectors, interned through an open-addressing table of
     * indexes + 1 (0 = empty slot), sized a power of two >= 2 * nvv. */
    struct lr_vv *vvs;
    size_t nvv, vcap;
    uint32_t *slots;
    size_t nslots;
    /* After finish: per bucket start in e[] (nb + 1), digest, and tags in
     * canonical order. */
    uint64_t *start;
    struct lr_summary_digest *bdig;
    uint64_t *tags;
};

int lr_summary_new(uint32_t nb, struct lr_summary **out, struct lr_err *err)
{
    *out = NULL;
    if (!nb_ok(nb))
        return lr_err_set(err, LR_EBADVAL,
                          "summary: %" PRIu32 " buckets (not a power of two <= %u)", nb,
                          LR_SUMMARY_BUCKETS_MAX);
    struct lr_summary *s = lr_xcalloc(1, sizeof(*s));
    s->nb = nb;
    s->nslots = 16;
    s->slots = lr_xcalloc(s->nslots, sizeof(s->slots[0]));
    *out = s;
    return 0;
}

void lr_summary_free(struct lr_summary *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nvv; i++)
        lr_vv_release(&s->vvs[i]);
    free(s->vvs);
    free(s->slots);
    free(s->e);
    free(s->start);
    free(s->bdig);
    free(s->tags);
    free(s);
}

static uint64_t vv_hash(const struct lr_vv *vv)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ vv->n;
    for (size_t i = 0; i < vv->n; i++) {
        h = (h ^ vv->e[i].id) * 0xff51afd7ed558ccdu;
        h = (h ^ vv->e[i].counter) * 0xc4ceb9fe1a85ec53u;
        h ^= h >> 29;
    }
    return h ^ (h >> 32);
}

/* The slot holding vv, or the empty slot where it would go. */
static size_t vv_slot(const struct lr_summary *s, const struct lr_vv *vv)
{
    size_t mask = s->nslots - 1, i = (size_t)vv_hash(vv) & mask;
    while (s->slots[i] && !lr_vv_equal(&s->vvs[s->slots[i] - 1], vv))
        i = (i + 1) & mask;
    return i;
}

static uint32_t vv_intern(struct lr_summary *s, const struct lr_vv *vv)
{
    size_t i = vv_slot(s, vv);
    if (s->slots[i])
        return s->slots[i] - 1;
    if (s->nvv == s->vcap) {
        s->vcap = s->vcap ? 2 * s->vcap : 8;
        s->vvs = lr_xreallocarray(s->vvs, s->vcap, sizeof(s->vvs[0]));
    }
    memset(&s->vvs[s->nvv], 0, sizeof(s->vvs[0]));
    lr_vv_copy(&s->vvs[s->nvv], vv);
    s->slots[i] = (uint32_t)++s->nvv;
    if (2 * s->nvv > s->nslots) {
        free(s->slots);
        s->nslots *= 2;
        s->slots = lr_xcalloc(s->nslots, sizeof(s->slots[0]));
        for (size_t k = 0; k < s->nvv; k++)
            s->slots[vv_slot(s, &s->vvs[k])] = (uint32_t)(k + 1);
    }
    return (uint32_t)(s->nvv - 1);
}

static bool vv_valid(const struct lr_vv *vv)
{
    if (vv->n == 0 || vv->n > LR_VV_MAX || !vv->e)
        return false;
    for (size_t i = 0; i < vv->n; i++)
        if (vv->e[i].counter == 0 || (i > 0 && vv->e[i].id <= vv->e[i - 1].id))
            return false;
    return true;
}

int lr_summary_add(struct lr_summary *s, const struct lr_file_rec *rec, uint64_t tag,
                   struct lr_err *err)
{
    struct lr_err perr;
    assert(!s->finished);
    if (s->finished)
        return lr_err_set(err, LR_EBADVAL, "summary: add after finish");
    if (s->n >= LR_SUMMARY_ENTRIES_MAX)
        return lr_err_set(err, LR_ETOOBIG, "summary: over %u entries", LR_SUMMARY_ENTRIES_MAX);
    if (!rec->path || lr_index_path_check(rec->path, rec->path_len, &perr) < 0)
        return lr_err_set(err, LR_EBADVAL, "summary: entry %" PRIu64 ": %s", tag,
                          rec->path ? perr.msg : "no path");
    if (!vv_valid(&rec->vv))
        return lr_err_set(err, LR_EBADVAL, "summary: entry %" PRIu64 ": empty or invalid vector",
                          tag);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->e = lr_xreallocarray(s->e, s->cap, sizeof(s->e[0]));
    }
    struct entry *e = &s->e[s->n];
    lr_summary_entry_digest(rec, &e->d);
    e->tag = tag;
    e->bucket = lr_summary_bucket(rec->path, rec->path_len, s->nb);
    e->vv = vv_intern(s, &rec->vv);
    s->n++;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    int c = memcmp(x->d.b, y->d.b, LR_SUMMARY_DIGEST_LEN);
    if (c)
        return c;
    /* Only for a path added twice with identical content (a caller bug):
     * keeps the order deterministic. */
    return (x->tag > y->tag) - (x->tag < y->tag);
}

void lr_summary_finish(struct lr_summary *s)
{
    assert(!s->finished);
    if (s->finished)
        return;
    if (s->n > 1)
        qsort(s->e, s->n, sizeof(s->e[0]), entry_cmp);
    s->start = lr_xcalloc((size_t)s->nb + 1, sizeof(s->start[0]));
    s->bdig = lr_xcalloc(s->nb, sizeof(s->bdig[0]));
    s->tags = s->n ? lr_xmallocarray(s->n, sizeof(s->tags[0])) : NULL;
    size_t i = 0;
    for (uint32_t b = 0; b < s->nb; b++) {
        s->start[b] = i;
        for (; i < s->n && s->e[i].bucket == b; i++) {
            digest_add(&s->bdig[b], &s->e[i].d);
            s->tags[i] = s->e[i].tag;
        }
    }
    s->start[s->nb] = i;
    assert(i == s->n);
    s->finished = true;
}

uint32_t lr_summary_nb(const struct lr_summary *s)
{
    return s->nb;
}

uint64_t lr_summary_count(const struct lr_summary *s)
{
    return s->n;
}

void lr_summary_bucket_info(const struct lr_summary *s, uint32_t bucket, uint32_t *count,
                            struct lr_summary_digest *digest)
{
    assert(s->finished && bucket < s->nb);
    *count = (uint32_t)(s->start[bucket + 1] - s->start[bucket]);
    *digest = s->bdig[bucket];
}

void lr_summary_bucket_tags(const struct lr_summary *s, uint32_t bucket, const uint64_t **tags,
                            size_t *n)
{
    assert(s->finished && bucket < s->nb);
    *n = (size_t)(s->start[bucket + 1] - s->start[bucket]);
    *tags = *n ? s->tags + s->start[bucket] : NULL;
}

/* ---- shared codec helpers -------------------------------------------------------- */

static int get_varint(struct lr_rd *rd, const char *what, uint64_t *v, struct lr_err *err)
{
    if (lr_rd_get_varint(rd, v) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: truncated", what);
    return 0;
}

/*
 * The body field: raw (exactly `raw_len` bytes) or one zstd frame declaring
 * raw_len and shorter than it; the frame header is judged before the output
 * (whose size the caller bounded) is allocated. *owned is set when *body was
 * allocated here.
 */
static int get_body(struct lr_rd *rd, const char *what, uint64_t comp, size_t raw_len, size_t max,
                    const uint8_t **body, uint8_t **owned, struct lr_err *err)
{
    const uint8_t *b;
    size_t bl;
    *body = NULL;
    *owned = NULL;
    int rc = lr_rd_get_lview(rd, &b, &bl, max);
    if (rc == LR_ETOOBIG)
        return lr_err_set(err, rc, "%s: over %zu bytes", what, max);
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: truncated", what);
    if (lr_rd_left(rd) != 0)
        return lr_err_set(err, LR_EBADVAL, "%s: %zu bytes after it", what, lr_rd_left(rd));
    if (comp == LR_PROTO_COMP_NONE) {
        if (bl != raw_len)
            return lr_err_set(err, LR_EBADVAL, "%s: %zu bytes, raw length %zu", what, bl, raw_len);
        *body = b;
        return 0;
    }
    if (bl >= raw_len)
        return lr_err_set(err, LR_EBADVAL, "%s: compressed %zu bytes not smaller than %zu", what,
                          bl, raw_len);
    unsigned long long fcs = ZSTD_getFrameContentSize(b, bl);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return lr_err_set(err, LR_EBADVAL, "%s: not a zstd frame", what);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return lr_err_set(err, LR_EBADVAL, "%s: zstd frame without a content size", what);
    if (fcs != raw_len)
        return lr_err_set(err, LR_EBADVAL, "%s: zstd frame declares %llu bytes, expected %zu", what,
                          fcs, raw_len);
    size_t fl = ZSTD_findFrameCompressedSize(b, bl);
    if (ZSTD_isError(fl) || fl != bl)
        return lr_err_set(err, LR_EBADVAL, "%s: not exactly one zstd frame", what);
    uint8_t *raw = lr_xmalloc(raw_len);
    size_t r = ZSTD_decompress(raw, raw_len, b, bl);
    if (ZSTD_isError(r) || r != raw_len) {
        free(raw);
        return lr_err_set(err, LR_EBADVAL, "%s: zstd: %s", what,
                          ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output");
    }
    *body = raw;
    *owned = raw;
    return 0;
}

/*
 * Write the header fields before the body, then the body compressed if
 * that is smaller. `hdr` already holds the header up to the raw length; the
 * whole payload must fit `max` (else LR_ETOOBIG, out unchanged).
 */
static int put_payload(const struct lr_buf *hdr, const uint8_t *raw, size_t raw_len, size_t max,
                       bool with_raw_len, struct lr_buf *out, const char *what, struct lr_err *err)
{
    uint8_t *z = NULL;
    size_t zl = 0;
    if (raw_len > 0) {
        size_t cap = ZSTD_compressBound(raw_len);
        z = lr_xmalloc(cap);
        zl = ZSTD_compress(z, cap, raw, raw_len, ZLEVEL);
        if (ZSTD_isError(zl) || zl >= raw_len)
            zl = 0;
    }
    const uint8_t *body = zl ? z : raw;
    size_t bl = zl ? zl : raw_len;
    size_t total =
        hdr->len + (with_raw_len ? lr_varint_len(raw_len) : 0) + 1 + lr_varint_len(bl) + bl;
    int rc = 0;
    if (total > max) {
        rc = lr_err_set(err, LR_ETOOBIG, "%s: %zu bytes over %zu", what, total, max);
        goto out;
    }
    if (!lr_buf_reserve(out, total))
        rc = LR_ETOOBIG;
    if (rc == 0)
        rc = lr_buf_put(out, hdr->data, hdr->len);
    if (rc == 0 && with_raw_len)
        rc = lr_buf_put_varint(out, raw_len);
    if (rc == 0)
        rc = lr_buf_put_varint(out, zl ? LR_PROTO_COMP_ZSTD : LR_PROTO_COMP_NONE);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, body, bl);
    if (rc < 0)
        rc = lr_err_set(err, rc, "%s: output buffer full", what);
out:
    free(z);
    return rc;
}

/* ---- SUMMARY ------------------------------------------------------------------------ */

int lr_summary_encode(const struct lr_summary *s, const char *folder_id, uint64_t index_id,
                      uint64_t seq, struct lr_buf *out, struct lr_err *err)
{
    assert(s->finished);
    size_t fl = strnlen(folder_id, LR_PROTO_FOLDER_ID_MAX + 1);
    if (!s->finished)
        return lr_err_set(err, LR_EBADVAL, "summary: builder not finished");
    if (!lr_proto_folder_id_ok(folder_id, fl))
        return lr_err_set(err, LR_EBADVAL, "summary.folder: not a folder ID");
    if (index_id == 0)
        return lr_err_set(err, LR_EBADVAL, "summary.index_id: 0");
    if (seq > LR_VARINT_MAX)
        return lr_err_set(err, LR_EBADVAL, "summary.seq: %" PRIu64 " not a varint", seq);
    if (s->nvv > LR_SUMMARY_VVS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "summary: %zu distinct vectors over %u", s->nvv,
                          LR_SUMMARY_VVS_MAX);

    /* Dictionary in order of first use in canonical order; wire[] maps a
     * builder vector to its dictionary position (UINT32_MAX: not yet). */
    uint32_t *wire = lr_xmallocarray(s->nvv ? s->nvv : 1, sizeof(*wire));
    uint32_t *order = lr_xmallocarray(s->nvv ? s->nvv : 1, sizeof(*order));
    memset(wire, 0xff, (s->nvv ? s->nvv : 1) * sizeof(*wire));
    struct lr_buf raw, hdr;
    lr_buf_init(&raw, LR_SUMMARY_RAW_MAX);
    lr_buf_init(&hdr, 1024);
    int rc = 0;
    for (uint32_t b = 0; b < s->nb && rc == 0; b++)
        rc = lr_buf_put_varint(&raw, s->start[b + 1] - s->start[b]);
    for (uint32_t b = 0; b < s->nb && rc == 0; b++)
        rc = lr_buf_put(&raw, s->bdig[b].b, LR_SUMMARY_DIGEST_LEN);
    uint32_t next = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t v = s->e[i].vv;
        if (wire[v] == UINT32_MAX) {
            wire[v] = next;
            order[next++] = v;
        }
    }
    assert(next == s->nvv);
    for (uint32_t k = 0; k < next && rc == 0; k++) {
        const struct lr_vv *vv = &s->vvs[order[k]];
        rc = lr_buf_put_varint(&raw, vv->n);
        if (rc == 0)
            rc = lr_vv_encode(vv, &raw);
    }
    /* Refs: 0 for a vector's first use, else next - position. */
    next = 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        uint32_t w = wire[s->e[i].vv];
        if (w == next) {
            rc = lr_buf_put_varint(&raw, 0);
            next++;
        } else {
            rc = lr_buf_put_varint(&raw, next - w);
        }
    }
    if (rc < 0) {
        rc = lr_err_set(err, LR_ETOOBIG, "summary: body over %u bytes", LR_SUMMARY_RAW_MAX);
        goto out;
    }
    rc = lr_buf_put_lbytes(&hdr, folder_id, fl);
    if (rc == 0)
        rc = lr_buf_put_u64(&hdr, index_id);
    if (rc == 0)
        rc = lr_buf_put_varint(&hdr, seq);
    if (rc == 0)
        rc = lr_buf_put_varint(&hdr, s->nb);
    if (rc == 0)
        rc = lr_buf_put_varint(&hdr, s->n);
    if (rc == 0)
        rc = lr_buf_put_varint(&hdr, s->nvv);
    if (rc < 0) {
        rc = lr_err_set(err, LR_EINTERNAL, "summary: header over 1 KiB");
        goto out;
    }
    rc = put_payload(&hdr, raw.data, raw.len, LR_PROTO_SUMMARY_MAX, true, out, "summary", err);
out:
    lr_buf_release(&raw);
    lr_buf_release(&hdr);
    free(wire);
    free(order);
    return rc;
}

void lr_summary_msg_release(struct lr_summary_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->vvs && i < m->nvv; i++)
        lr_vv_release(&m->vvs[i]);
    free(m->vvs);
    free(m->count);
    free(m->digest);
    free(m->first);
    free(m->entry_vv);
    memset(m, 0, sizeof(*m));
}

/* The body of a SUMMARY, whose header fields are already in m. */
static int parse_summary_body(struct lr_rd *rd, struct lr_summary_msg *m, struct lr_err *err)
{
    char w[48];
    uint64_t v, sum = 0;
    m->count = lr_xcalloc(m->nb, sizeof(m->count[0]));
    m->digest = lr_xcalloc(m->nb, sizeof(m->digest[0]));
    m->first = lr_xcalloc(m->nb, sizeof(m->first[0]));
    for (uint32_t b = 0; b < m->nb; b++) {
        if (lr_rd_get_varint(rd, &v) < 0)
            return lr_err_set(err, LR_ETRUNC, "summary.count[%" PRIu32 "]: truncated", b);
        if (v > m->n - sum)
            return lr_err_set(err, LR_EBADVAL,
                              "summary.count[%" PRIu32 "]: %" PRIu64 " entries, only %" PRIu64
                              " left",
                              b, v, m->n - sum);
        m->count[b] = (uint32_t)v;
        m->first[b] = sum;
        sum += v;
    }
    if (sum != m->n)
        return lr_err_set(err, LR_EBADVAL, "summary.count: sum %" PRIu64 ", n %" PRIu64, sum, m->n);
    for (uint32_t b = 0; b < m->nb; b++) {
        if (lr_rd_get_bytes(rd, m->digest[b].b, LR_SUMMARY_DIGEST_LEN) < 0)
            return lr_err_set(err, LR_ETRUNC, "summary.digest[%" PRIu32 "]: truncated", b);
        if (m->count[b] == 0 && !digest_zero(&m->digest[b]))
            return lr_err_set(err, LR_EBADVAL,
                              "summary.digest[%" PRIu32 "]: not zero for an empty bucket", b);
    }
    /* nvv * VV_MIN <= raw_len was checked, so this allocation is bounded by the body. */
    m->vvs = m->nvv ? lr_xcalloc(m->nvv, sizeof(m->vvs[0])) : NULL;
    for (size_t k = 0; k < m->nvv; k++) {
        const uint8_t *p;
        if (lr_rd_get_varint(rd, &v) < 0)
            return lr_err_set(err, LR_ETRUNC, "summary.vv[%zu]: count truncated", k);
        if (v == 0 || v > LR_VV_MAX || lr_rd_left(rd) < (size_t)v * LR_VV_PAIR_LEN)
            snprintf(w, sizeof(w), "summary.vv[%zu]", k); /* only to name a failure */
        if (v == 0)
            return lr_err_set(err, LR_EBADVAL, "%s: empty version vector", w);
        if (v > LR_VV_MAX)
            return lr_err_set(err, LR_ETOOBIG, "%s: %" PRIu64 " entries over %d", w, v, LR_VV_MAX);
        if (lr_rd_get_view(rd, &p, (size_t)v * LR_VV_PAIR_LEN) < 0)
            return lr_err_set(err, LR_ETRUNC, "%s: truncated", w);
        if (lr_vv_decode(p, (size_t)v * LR_VV_PAIR_LEN, &m->vvs[k]) < 0)
            return lr_err_set(err, LR_EBADVAL,
                              "summary.vv[%zu]: ids not strictly increasing or a zero counter", k);
    }
    m->entry_vv = m->n ? lr_xmallocarray((size_t)m->n, sizeof(m->entry_vv[0])) : NULL;
    uint64_t next = 0;
    for (uint64_t i = 0; i < m->n; i++) {
        if (lr_rd_get_varint(rd, &v) < 0)
            return lr_err_set(err, LR_ETRUNC, "summary.ref[%" PRIu64 "]: truncated", i);
        if (v == 0) {
            if (next >= m->nvv)
                return lr_err_set(err, LR_EBADVAL,
                                  "summary.ref[%" PRIu64 "]: new vector past the %zu declared", i,
                                  m->nvv);
            m->entry_vv[i] = (uint32_t)next++;
        } else {
            if (v > next)
                return lr_err_set(err, LR_EBADVAL,
                                  "summary.ref[%" PRIu64 "]: %" PRIu64 " back, %" PRIu64
                                  " vectors used",
                                  i, v, next);
            m->entry_vv[i] = (uint32_t)(next - v);
        }
    }
    if (next != m->nvv)
        return lr_err_set(err, LR_EBADVAL, "summary.vv: %" PRIu64 " of %zu vectors used", next,
                          m->nvv);
    if (lr_rd_left(rd) != 0)
        return lr_err_set(err, LR_EBADVAL, "summary.body: %zu bytes after the last ref",
                          lr_rd_left(rd));
    return 0;
}

int lr_summary_decode(const uint8_t *p, size_t len, struct lr_summary_msg *out, struct lr_err *err)
{
    struct lr_summary_msg m;
    struct lr_rd rd, body;
    uint64_t nb, n, nvv, raw_len, comp;
    const uint8_t *bp;
    uint8_t *owned = NULL;
    memset(out, 0, sizeof(*out));
    memset(&m, 0, sizeof(m));
    lr_rd_init(&rd, p, len);
    int rc = lr_proto_get_folder_id(&rd, "summary.folder", m.folder, err);
    if (rc < 0)
        return rc;
    if (lr_rd_get_u64(&rd, &m.index_id) < 0)
        return lr_err_set(err, LR_ETRUNC, "summary.index_id: truncated");
    if (m.index_id == 0)
        return lr_err_set(err, LR_EBADVAL, "summary.index_id: 0");
    if ((rc = get_varint(&rd, "summary.seq", &m.seq, err)) < 0 ||
        (rc = get_varint(&rd, "summary.nb", &nb, err)) < 0)
        return rc;
    if (!nb_ok(nb))
        return lr_err_set(err, LR_EBADVAL, "summary.nb: %" PRIu64 " not a power of two in 1..%u",
                          nb, LR_SUMMARY_BUCKETS_MAX);
    if ((rc = get_varint(&rd, "summary.n", &n, err)) < 0)
        return rc;
    if (n > LR_SUMMARY_ENTRIES_MAX)
        return lr_err_set(err, LR_ETOOBIG, "summary.n: %" PRIu64 " over %u", n,
                          LR_SUMMARY_ENTRIES_MAX);
    if ((rc = get_varint(&rd, "summary.nvv", &nvv, err)) < 0)
        return rc;
    if (nvv > n || (n > 0 && nvv == 0))
        return lr_err_set(err, LR_EBADVAL,
                          "summary.nvv: %" PRIu64 " vectors for %" PRIu64 " entries", nvv, n);
    if (nvv > LR_SUMMARY_VVS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "summary.nvv: %" PRIu64 " over %u", nvv,
                          LR_SUMMARY_VVS_MAX);
    if ((rc = get_varint(&rd, "summary.raw_len", &raw_len, err)) < 0)
        return rc;
    if (raw_len > LR_SUMMARY_RAW_MAX)
        return lr_err_set(err, LR_ETOOBIG, "summary.raw_len: %" PRIu64 " over %u", raw_len,
                          LR_SUMMARY_RAW_MAX);
    /* Every field is bounded (nb <= 2^16, n <= 2^22, nvv <= 2^20): no overflow. */
    uint64_t lo = nb * (1 + LR_SUMMARY_DIGEST_LEN) + nvv * VV_MIN + n;
    uint64_t hi =
        nb * (SMALL_VARINT_MAX + LR_SUMMARY_DIGEST_LEN) + nvv * VV_WIRE_MAX + n * SMALL_VARINT_MAX;
    if (raw_len < lo || raw_len > hi)
        return lr_err_set(err, LR_EBADVAL,
                          "summary.raw_len: %" PRIu64 " outside %" PRIu64 "..%" PRIu64
                          " implied by nb, n and nvv",
                          raw_len, lo, hi);
    if ((rc = get_varint(&rd, "summary.compression", &comp, err)) < 0)
        return rc;
    if (comp > LR_PROTO_COMP_ZSTD)
        return lr_err_set(err, LR_EBADVAL, "summary.compression: %" PRIu64 " unknown", comp);
    rc = get_body(&rd, "summary.body", comp, (size_t)raw_len, LR_PROTO_SUMMARY_MAX, &bp, &owned,
                  err);
    if (rc < 0)
        return rc;
    m.nb = (uint32_t)nb;
    m.n = n;
    m.nvv = (size_t)nvv;
    lr_rd_init(&body, bp, (size_t)raw_len);
    rc = parse_summary_body(&body, &m, err);
    free(owned);
    if (rc < 0) {
        lr_summary_msg_release(&m);
        return rc;
    }
    *out = m;
    return 0;
}

int lr_summary_diff(const struct lr_summary *s, const struct lr_summary_msg *m, uint8_t **bits,
                    uint32_t *ndiff, struct lr_err *err)
{
    *bits = NULL;
    *ndiff = 0;
    assert(s->finished);
    if (!s->finished)
        return lr_err_set(err, LR_EBADVAL, "summary: builder not finished");
    if (s->nb != m->nb)
        return lr_err_set(err, LR_EBADVAL,
                          "summary: %" PRIu32 " local buckets, %" PRIu32 " in the message", s->nb,
                          m->nb);
    uint8_t *b = lr_xcalloc(((size_t)s->nb + 7) / 8, 1);
    uint32_t nd = 0;
    for (uint32_t i = 0; i < s->nb; i++) {
        uint64_t c = s->start[i + 1] - s->start[i];
        if (c != m->count[i] || memcmp(s->bdig[i].b, m->digest[i].b, LR_SUMMARY_DIGEST_LEN) != 0) {
            b[i / 8] |= (uint8_t)(1u << (i % 8));
            nd++;
        }
    }
    *bits = b;
    *ndiff = nd;
    return 0;
}

/* ---- SUMMARY_WANT --------------------------------------------------------------------- */

/* Bits at and above nb in the last byte are zero. */
static bool tail_zero(const uint8_t *bits, uint32_t nb)
{
    return nb % 8 == 0 || (bits[nb / 8] >> (nb % 8)) == 0;
}

int lr_summary_want_encode(const struct lr_summary_want *w, struct lr_buf *out, struct lr_err *err)
{
    size_t fl = strnlen(w->folder, LR_PROTO_FOLDER_ID_MAX + 1);
    if (!lr_proto_folder_id_ok(w->folder, fl))
        return lr_err_set(err, LR_EBADVAL, "summary_want.folder: not a folder ID");
    if (w->index_id == 0)
        return lr_err_set(err, LR_EBADVAL, "summary_want.index_id: 0");
    if (w->seq > LR_VARINT_MAX)
        return lr_err_set(err, LR_EBADVAL, "summary_want.seq: %" PRIu64 " not a varint", w->seq);
    if (!nb_ok(w->nb))
        return lr_err_set(err, LR_EBADVAL, "summary_want.nb: %" PRIu32 " not a power of two",
                          w->nb);
    if (!w->bits || !tail_zero(w->bits, w->nb))
        return lr_err_set(err, LR_EBADVAL, "summary_want.bits: %s",
                          w->bits ? "bits set beyond nb" : "missing");
    struct lr_buf hdr;
    lr_buf_init(&hdr, 1024);
    int rc = lr_buf_put_lbytes(&hdr, w->folder, fl);
    if (rc == 0)
        rc = lr_buf_put_u64(&hdr, w->index_id);
    if (rc == 0)
        rc = lr_buf_put_varint(&hdr, w->seq);
    if (rc == 0)
        rc = lr_buf_put_varint(&hdr, w->nb);
    if (rc == 0)
        rc = put_payload(&hdr, w->bits, ((size_t)w->nb + 7) / 8, LR_PROTO_SUMMARY_WANT_MAX, false,
                         out, "summary_want", err);
    else
        rc = lr_err_set(err, LR_EINTERNAL, "summary_want: header over 1 KiB");
    lr_buf_release(&hdr);
    return rc;
}

int lr_summary_want_decode(const uint8_t *p, size_t len, struct lr_summary_want *out,
                           struct lr_err *err)
{
    struct lr_summary_want w;
    struct lr_rd rd;
    uint64_t nb, comp;
    const uint8_t *bp;
    uint8_t *owned = NULL;
    memset(out, 0, sizeof(*out));
    memset(&w, 0, sizeof(w));
    lr_rd_init(&rd, p, len);
    int rc = lr_proto_get_folder_id(&rd, "summary_want.folder", w.folder, err);
    if (rc < 0)
        return rc;
    if (lr_rd_get_u64(&rd, &w.index_id) < 0)
        return lr_err_set(err, LR_ETRUNC, "summary_want.index_id: truncated");
    if (w.index_id == 0)
        return lr_err_set(err, LR_EBADVAL, "summary_want.index_id: 0");
    if ((rc = get_varint(&rd, "summary_want.seq", &w.seq, err)) < 0 ||
        (rc = get_varint(&rd, "summary_want.nb", &nb, err)) < 0)
        return rc;
    if (!nb_ok(nb))
        return lr_err_set(err, LR_EBADVAL,
                          "summary_want.nb: %" PRIu64 " not a power of two in 1..%u", nb,
                          LR_SUMMARY_BUCKETS_MAX);
    if ((rc = get_varint(&rd, "summary_want.compression", &comp, err)) < 0)
        return rc;
    if (comp > LR_PROTO_COMP_ZSTD)
        return lr_err_set(err, LR_EBADVAL, "summary_want.compression: %" PRIu64 " unknown", comp);
    size_t bl = ((size_t)nb + 7) / 8;
    rc = get_body(&rd, "summary_want.bits", comp, bl, LR_PROTO_SUMMARY_WANT_MAX, &bp, &owned, err);
    if (rc < 0)
        return rc;
    if (!tail_zero(bp, (uint32_t)nb)) {
        free(owned);
        return lr_err_set(err, LR_EBADVAL, "summary_want.bits: bits set at or above nb %" PRIu64,
                          nb);
    }
    w.nb = (uint32_t)nb;
    if (owned) {
        w.bits = owned;
    } else {
        w.bits = lr_xmalloc(bl);
        memcpy(w.bits, bp, bl);
    }
    *out = w;
    return 0;
}

void lr_summary_want_release(struct lr_summary_want *w)
{
    if (!w)
        return;
    free(w->bits);
    memset(w, 0, sizeof(*w));
}
