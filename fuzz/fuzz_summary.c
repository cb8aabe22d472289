/*
 * fuzz_summary.c - the SUMMARY and SUMMARY_WANT decoders (sync/summary.h).
 *
 * Every input goes to both decoders. A failure must carry a "drop the peer"
 * code and a message, and leave the output zeroed. A decoded SUMMARY must
 * satisfy the documented invariants (counts sum to n, `first` is their
 * prefix sum, empty buckets have a zero digest, every vector valid and
 * non-empty, every entry_vv < nvv, every vector used); a decoded
 * SUMMARY_WANT must have no bit set at or above nb, re-encode to a payload
 * that decodes to the same fields, and diff-style bit counting must agree.
 */
#include "sync/summary.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
