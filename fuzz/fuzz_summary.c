/*
 * fuzz_summary.c - the SUMMARY and SUMMARY_WANT decoders (sync/summary.h).
 *
 * Every input goes to both decoders. A failure must carry a "drop the peer"
 * code and a message, and leave the output zeroed. A decoded SUMMARY must
 * satisfy the documented invariants (counts sum to n, `first` is their
 * prefix sum, empty buckets have a zero digest, every vector valid and
 * non-empty, every entry_vv < nvv, every vector used); a decoded
 * SUMMARY_WANT must have no bit set at or above nb, re-encode to a payload
 * that decodes to the same fields.
 *
 * The same bytes also drive the encoder: read as 8-byte records (path, type,
 * flags, vector), they are summarised, encoded, decoded and compared with
 * the builder (counts, digests, each entry's vector in canonical order), and
 * the diff against itself must be empty.
 */
#include "sync/summary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_fail(int rc, const struct lr_err *err)
{
    if (rc > LR_E__FATAL_PEER || rc != err->code || err->msg[0] == '\0')
        abort();
}

static void check_summary(const struct lr_summary_msg *m)
{
    if (m->index_id == 0 || m->nb == 0 || m->nb > LR_SUMMARY_BUCKETS_MAX || (m->nb & (m->nb - 1)) ||
        m->n > LR_SUMMARY_ENTRIES_MAX || m->nvv > m->n || (m->n > 0 && m->nvv == 0) ||
        !lr_proto_folder_id_ok(m->folder, strlen(m->folder)))
        abort();
    uint64_t sum = 0;
    for (uint32_t b = 0; b < m->nb; b++) {
        if (m->first[b] != sum)
            abort();
        sum += m->count[b];
        if (m->count[b] == 0)
            for (size_t i = 0; i < LR_SUMMARY_DIGEST_LEN; i++)
                if (m->digest[b].b[i])
                    abort();
    }
    if (sum != m->n)
        abort();
    for (size_t k = 0; k < m->nvv; k++) {
        const struct lr_vv *vv = &m->vvs[k];
        if (vv->n == 0 || vv->n > LR_VV_MAX)
            abort();
        for (size_t i = 0; i < vv->n; i++)
            if (vv->e[i].counter == 0 || (i > 0 && vv->e[i].id <= vv->e[i - 1].id))
                abort();
    }
    uint8_t *used = m->nvv ? calloc(m->nvv, 1) : NULL;
    size_t nused = 0;
    for (uint64_t i = 0; i < m->n; i++) {
        if (m->entry_vv[i] >= m->nvv)
            abort();
        if (!used[m->entry_vv[i]]) {
            used[m->entry_vv[i]] = 1;
            nused++;
        }
    }
    if (nused != m->nvv)
        abort();
    free(used);
}

static void check_want(const struct lr_summary_want *w)
{
    if (w->index_id == 0 || w->nb == 0 || w->nb > LR_SUMMARY_BUCKETS_MAX || (w->nb & (w->nb - 1)))
        abort();
    size_t bl = ((size_t)w->nb + 7) / 8;
    for (uint32_t i = w->nb; i < bl * 8; i++)
        if (lr_summary_bit(w->bits, i))
            abort();
    struct lr_buf out;
    struct lr_summary_want back;
    lr_buf_init(&out, LR_PROTO_SUMMARY_WANT_MAX);
    if (lr_summary_want_encode(w, &out, NULL) != 0 ||
        lr_summary_want_decode(out.data, out.len, &back, NULL) != 0)
        abort();
    if (strcmp(back.folder, w->folder) || back.index_id != w->index_id || back.seq != w->seq ||
        back.nb != w->nb || memcmp(back.bits, w->bits, bl))
        abort();
    lr_summary_want_release(&back);
    lr_buf_release(&out);
}

/* Record i from 8 input bytes: a path among 4096, any type and flags, a
 * one- or two-entry vector. */
static void mk_rec(const uint8_t *q, struct lr_file_rec *r, char *path, size_t cap)
{
    memset(r, 0, sizeof(*r));
    int n = snprintf(path, cap, "d%u/f%u", q[0] % 16u, q[1]);
    r->path = (uint8_t *)path;
    r->path_len = (size_t)n;
    r->type = (enum lr_ftype)(q[2] % 4 == 3 ? 255 : q[2] % 4);
    r->deleted = q[3] & 1;
    r->size = q[3] >> 1;
    r->mode = q[4];
    r->mtime_ns = (int64_t)q[5] << 40;
    r->target = (uint8_t *)path;
    r->target_len = q[6] % 4;
    r->blocks_hash.b[0] = q[6];
    if (lr_vv_set(&r->vv, q[7] % 8, 1u + (q[7] >> 3)) != 0 ||
        (q[7] & 0x80 && lr_vv_set(&r->vv, 100, q[0] + 1u) != 0))
        abort();
}

static void check_encoder(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    uint32_t nb = 1u << (data[0] % 11);
    size_t n = (size - 1) / 8;
    struct lr_summary *s;
    struct lr_err err;
    if (lr_summary_new(nb, &s, &err) != 0)
        abort();
    struct lr_file_rec *recs = n ? calloc(n, sizeof(*recs)) : NULL;
    char(*paths)[32] = n ? calloc(n, sizeof(*paths)) : NULL;
    for (size_t i = 0; i < n; i++) {
        mk_rec(data + 1 + 8 * i, &recs[i], paths[i], sizeof(paths[i]));
        if (lr_summary_add(s, &recs[i], i, &err) != 0)
            abort();
    }
    lr_summary_finish(s);
    struct lr_buf out;
    struct lr_summary_msg m;
    lr_buf_init(&out, LR_PROTO_SUMMARY_MAX);
    if (lr_summary_encode(s, "f", 9, n, &out, &err) != 0 ||
        lr_summary_decode(out.data, out.len, &m, &err) != 0)
        abort();
    check_summary(&m);
    if (m.nb != nb || m.n != n || lr_summary_count(s) != n)
        abort();
    for (uint32_t b = 0; b < nb; b++) {
        uint32_t c;
        struct lr_summary_digest d;
        const uint64_t *tags;
        size_t tn;
        lr_summary_bucket_info(s, b, &c, &d);
        lr_summary_bucket_tags(s, b, &tags, &tn);
        if (c != m.count[b] || tn != c || memcmp(d.b, m.digest[b].b, sizeof(d.b)))
            abort();
        for (size_t j = 0; j < tn; j++)
            if (!lr_vv_equal(&m.vvs[m.entry_vv[m.first[b] + j]], &recs[tags[j]].vv))
                abort();
    }
    uint8_t *bits;
    uint32_t nd;
    if (lr_summary_diff(s, &m, &bits, &nd, &err) != 0 || nd != 0)
        abort();
    free(bits);
    for (size_t i = 0; i < n; i++)
        lr_vv_release(&recs[i].vv);
    free(recs);
    free(paths);
    lr_summary_msg_release(&m);
    lr_buf_release(&out);
    lr_summary_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_encoder(data, size);

    struct lr_err err;
    struct lr_summary_msg m;
    lr_err_clear(&err);
    int rc = lr_summary_decode(data, size, &m, &err);
    if (rc == 0) {
        check_summary(&m);
        lr_summary_msg_release(&m);
    } else {
        check_fail(rc, &err);
        if (m.count || m.digest || m.first || m.vvs || m.entry_vv || m.n || m.nb)
            abort();
    }

    struct lr_summary_want w;
    lr_err_clear(&err);
    rc = lr_summary_want_decode(data, size, &w, &err);
    if (rc == 0) {
        check_want(&w);
        lr_summary_want_release(&w);
    } else {
        check_fail(rc, &err);
        if (w.bits || w.nb)
            abort();
    }
    return 0;
}
