/*
 * fuzz_proto_sync.c - the FOLDERS, WANT, CHUNK, PULLED, SEQ_ASK and SEQS
 * decoders.
 *
 * The first input byte picks the decoder ('P' PULLED, 'A' SEQ_ASK, 'S'
 * SEQS, else modulo 3: 0 FOLDERS, 1 WANT, 2 CHUNK; no older seed starts
 * with one of those letters, so each keeps its decoder); the
 * rest is the payload. Whatever fails must fail with a "drop the peer" code
 * and a message; whatever decodes must satisfy the field rules, re-encode,
 * and decode again to the same thing. CHUNK data is also extracted into a
 * buffer of exactly the size byte 1 of the payload suggests, so ASan sees
 * any write past what was asked for.
 */
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

static void check_fail(int rc, const struct lr_err *err)
{
    if (rc > LR_E__FATAL_PEER || rc != err->code || err->msg[0] == '\0')
        abort();
}

static void do_folders(const uint8_t *p, size_t n)
{
    struct lr_err err;
    struct lr_proto_folders f, f2;
    lr_err_clear(&err);
    int rc = lr_proto_folders_decode(p, n, &f, &err);
    if (rc < 0) {
        check_fail(rc, &err);
        return;
    }
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    if (lr_proto_folders_encode(f.v, f.n, &b) != 0)
        abort();
    if (lr_proto_folders_decode(b.data, b.len, &f2, NULL) != 0 || f2.n != f.n ||
        (f.n && memcmp(f.v, f2.v, f.n * sizeof(f.v[0]))))
        abort();
    lr_proto_folders_release(&f);
    lr_proto_folders_release(&f2);
    lr_buf_release(&b);
}

static void do_want(const uint8_t *p, size_t n)
{
    struct lr_err err;
    struct lr_proto_want w, w2;
    lr_err_clear(&err);
    int rc = lr_proto_want_decode(p, n, &w, &err);
    if (rc < 0) {
        check_fail(rc, &err);
        return;
    }
    if (w.size == 0 || w.size > LR_PROTO_CHUNK_DATA_MAX || w.path < p || w.path >= p + n ||
        lr_index_path_check(w.path, w.path_len, NULL) < 0)
        abort();
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_WANT_MAX);
    if (lr_proto_want_encode(&w, &b) != 0 || b.len > n)
        abort();
    if (lr_proto_want_decode(b.data, b.len, &w2, NULL) != 0 || w2.path_len != w.path_len ||
        memcmp(w2.path, w.path, w.path_len))
        abort();
    w2.path = w.path;
    if (memcmp(&w, &w2, sizeof(w)))
        abort();
    lr_buf_release(&b);
}

static void do_pulled(const uint8_t *p, size_t n)
{
    struct lr_err err;
    struct lr_proto_pulled m, m2;
    lr_err_clear(&err);
    int rc = lr_proto_pulled_decode(p, n, &m, &err);
    if (rc < 0) {
        check_fail(rc, &err);
        return;
    }
    if (m.peer_index_id == 0)
        abort();
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_PULLED_MAX);
    if (lr_proto_pulled_encode(&m, &b) != 0 || b.len > n ||
        lr_proto_pulled_decode(b.data, b.len, &m2, NULL) != 0 || memcmp(&m, &m2, sizeof(m)))
        abort();
    lr_buf_release(&b);
}

static void do_seq_ask(const uint8_t *p, size_t n)
{
    struct lr_err err;
    uint64_t req, req2;
    lr_err_clear(&err);
    int rc = lr_proto_seq_ask_decode(p, n, &req, &err);
    if (rc < 0) {
        check_fail(rc, &err);
        return;
    }
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_SEQ_ASK_MAX);
    if (lr_proto_seq_ask_encode(req, &b) != 0 || b.len > n ||
        lr_proto_seq_ask_decode(b.data, b.len, &req2, NULL) != 0 || req2 != req)
        abort();
    lr_buf_release(&b);
}

static void do_seqs(const uint8_t *p, size_t n)
{
    struct lr_err err;
    struct lr_proto_seqs s, s2;
    lr_err_clear(&err);
    int rc = lr_proto_seqs_decode(p, n, &s, &err);
    if (rc < 0) {
        check_fail(rc, &err);
        if (s.v || s.n || s.req)
            abort();
        return;
    }
    if (s.n > LR_PROTO_SEQS_ENTRIES_MAX || (s.n != 0) != (s.v != NULL))
        abort();
    for (size_t i = 0; i < s.n; i++) {
        if (s.v[i].index_id == 0 || (i > 0 && strcmp(s.v[i - 1].folder_id, s.v[i].folder_id) >= 0))
            abort();
    }
    /* What decoded re-encodes (never longer: varints come back minimal,
     * trailing bytes go) and decodes to the same entries. */
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_SEQS_MAX);
    if (lr_proto_seqs_encode(s.req, s.v, s.n, &b) != 0 || b.len > n ||
        lr_proto_seqs_decode(b.data, b.len, &s2, NULL) != 0 || s2.req != s.req || s2.n != s.n ||
        (s.n && memcmp(s.v, s2.v, s.n * sizeof(s.v[0]))))
        abort();
    lr_proto_seqs_release(&s);
    lr_proto_seqs_release(&s2);
    lr_buf_release(&b);
}

static void do_chunk(const uint8_t *p, size_t n, struct lr_proto_zc *zc)
{
    struct lr_err err;
    struct lr_proto_chunk c;
    lr_err_clear(&err);
    int rc = lr_proto_chunk_decode(p, n, &c, &err);
    if (rc < 0) {
        check_fail(rc, &err);
        return;
    }
    if (c.status != LR_PROTO_CHUNK_OK) {
        if (c.data_len || c.comp)
            abort();
        return;
    }
    /* Expected size: the raw length, or for zstd a size derived from the
     * input, sometimes right (the frame's), often wrong. */
    size_t expect = c.data_len;
    if (c.comp == LR_PROTO_COMP_ZSTD)
        expect = n > 1 ? ((size_t)p[n - 1] << 10 | p[n - 2]) % LR_PROTO_CHUNK_DATA_MAX + 1 : 1;
    uint8_t *out = malloc(expect);
    if (!out)
        abort();
    lr_err_clear(&err);
    const uint8_t *view = NULL;
    int vrc = lr_proto_chunk_bytes(zc, &c, out, expect, &view, NULL);
    /* The copying form agrees with the borrowing one. */
    if ((vrc == 0) != (view != NULL) || (view && view != out && view != c.data))
        abort();
    rc = lr_proto_chunk_data(zc, &c, out, expect, &err);
    if ((rc == 0) != (vrc == 0))
        abort();
    if (rc < 0) {
        check_fail(rc, &err);
    } else {
        /* Re-encode the data: it must come back identical. */
        struct lr_buf b;
        struct lr_proto_chunk c2;
        lr_buf_init(&b, LR_PROTO_CHUNK_MAX);
        if (lr_proto_chunk_encode(zc, c.req_id, c.status, out, expect, true, &b) != 0 ||
            lr_proto_chunk_decode(b.data, b.len, &c2, NULL) != 0)
            abort();
        uint8_t *back = malloc(expect);
        if (!back || lr_proto_chunk_data(zc, &c2, back, expect, NULL) != 0 ||
            memcmp(back, out, expect) || c2.req_id != c.req_id)
            abort();
        free(back);
        lr_buf_release(&b);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (data[0] == 'P') {
        do_pulled(p, n);
        return 0;
    }
    if (data[0] == 'A') {
        do_seq_ask(p, n);
        return 0;
    }
    if (data[0] == 'S') {
        do_seqs(p, n);
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        do_folders(p, n);
        break;
    case 1:
        do_want(p, n);
        break;
    default: {
        struct lr_proto_zc *zc = lr_proto_zc_new();
        do_chunk(p, n, zc);
        lr_proto_zc_free(zc);
        break;
    }
    }
    return 0;
}
