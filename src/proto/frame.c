/* frame.c - the incremental frame reader (one per stream). */
#include "proto/proto.h"

#include <assert.h>
#include <inttypes.h>
#include <string.h>

/* Longest header: two 8-byte varints. */
#define HEADER_MAX 16

/*
 * States: reading a header (!have_header && !skipping; acc holds 0..15
 * header bytes), collecting a payload (have_header; acc holds the payload so
 * far), skipping an unknown payload (skipping; acc empty), ready (a whole
 * payload in acc), failed (error != 0).
 */
static void assert_reader_state(const struct lr_frame_reader *r)
{
    assert(!(r->have_header && r->skipping));
    assert(!r->ready || r->have_header);
    assert(!r->skipping || r->acc.len == 0);
    assert(r->have_header || r->skipping || r->acc.len < HEADER_MAX);
    (void)r;
}

void lr_frame_reader_init(struct lr_frame_reader *r)
{
    memset(r, 0, sizeof(*r));
    lr_buf_init(&r->acc, LR_PROTO_FRAME_MAX);
}

void lr_frame_reader_release(struct lr_frame_reader *r)
{
    lr_buf_release(&r->acc);
    lr_frame_reader_init(r);
}

static int fail(struct lr_frame_reader *r, int rc)
{
    r->error = rc;
    lr_buf_release(&r->acc);
    r->have_header = r->skipping = r->ready = false;
    return rc;
}

/* Header bytes needed so far, given the bytes in acc: 1 until the type's
 * first byte is known, then type length + 1, then the full header. */
static size_t header_len(const struct lr_buf *acc)
{
    if (acc->len == 0)
        return 1;
    size_t tl = (size_t)1 << (acc->data[0] >> 6);
    if (acc->len <= tl)
        return tl + 1;
    return tl + ((size_t)1 << (acc->data[tl] >> 6));
}

/* A whole header is in acc: check it and move to the payload state. */
static int start_frame(struct lr_frame_reader *r, struct lr_err *err)
{
    struct lr_rd rd;
    uint64_t type, len;
    lr_rd_init(&rd, r->acc.data, r->acc.len);
    if (lr_rd_get_varint(&rd, &type) < 0 || lr_rd_get_varint(&rd, &len) < 0)
        return fail(r, lr_err_set(err, LR_EINTERNAL, "frame: header parse"));
    lr_buf_reset(&r->acc);
    if (type == 0)
        return fail(
            r, lr_err_set(err, LR_EPROTO, "frame: type 0 is reserved (length %" PRIu64 ")", len));
    size_t max = lr_proto_max_payload(type);
    if (max == 0) {
        if (len > LR_PROTO_UNKNOWN_MAX)
            return fail(r,
                        lr_err_set(err, LR_ETOOBIG,
                                   "frame: unknown type 0x%" PRIx64 " length %" PRIu64 " over %u",
                                   type, len, LR_PROTO_UNKNOWN_MAX));
        r->type = type;
        r->need = len;
        r->skipping = len > 0;
        return 0;
    }
    if (len > max)
        return fail(r, lr_err_set(err, LR_ETOOBIG,
                                  "frame: type %s (0x%" PRIx64 ") length %" PRIu64 " over %zu",
                                  lr_proto_type_name(type), type, len, max));
    r->type = type;
    r->need = len;
    r->have_header = true;
    /* len is within the limit, so allocating it whole is bounded. */
    if (len > 0 && !lr_buf_reserve(&r->acc, (size_t)len))
        return fail(r, lr_err_set(err, LR_EINTERNAL, "frame: reserve %" PRIu64, len));
    r->ready = len == 0;
    return 0;
}

int lr_frame_reader_feed(struct lr_frame_reader *r, const uint8_t *p, size_t n, size_t *consumed,
                         struct lr_err *err)
{
    size_t i = 0;
    int rc;
    *consumed = 0;
    r->taken = false; /* the taken payload may be overwritten from here on */
    if (r->error)
        return lr_err_set(err, r->error, "frame: stream already failed (%s)", lr_errname(r->error));
    if (r->ready)
        return 1;
    assert_reader_state(r);

    while (i < n) {
        if (r->skipping) {
            size_t k = n - i < r->need ? n - i : (size_t)r->need;
            i += k;
            r->need -= k;
            if (r->need == 0)
                r->skipping = false;
        } else if (!r->have_header) {
            /* Headers are at most 16 bytes: copying them bytewise is cheap
             * and handles varints split across any number of feeds. */
            if (lr_buf_put_u8(&r->acc, p[i++]) < 0)
                return fail(r, lr_err_set(err, LR_EINTERNAL, "frame: header buffer"));
            if (r->acc.len == header_len(&r->acc)) {
                rc = start_frame(r, err);
                if (rc < 0)
                    return rc;
                if (r->ready)
                    break;
            }
        } else {
            size_t k = n - i < r->need ? n - i : (size_t)r->need;
            if (lr_buf_put(&r->acc, p + i, k) < 0)
                return fail(r, lr_err_set(err, LR_EINTERNAL, "frame: payload buffer"));
            i += k;
            r->need -= k;
            if (r->need == 0) {
                r->ready = true;
                break;
            }
        }
    }
    *consumed = i;
    assert_reader_state(r);
    return r->ready ? 1 : 0;
}

uint8_t *lr_frame_reader_steal(struct lr_frame_reader *r)
{
    if (!r->taken)
        return NULL;
    r->taken = false;
    return lr_buf_detach(&r->acc, NULL); /* acc starts empty, same limit */
}

int lr_frame_reader_take(struct lr_frame_reader *r, uint64_t *type, const uint8_t **payload,
                         size_t *len)
{
    static const uint8_t empty[1];
    *type = 0;
    *payload = NULL;
    *len = 0;
    if (!r->ready)
        return LR_ENOTFOUND;
    *type = r->type;
    *payload = r->acc.len ? r->acc.data : empty;
    *len = r->acc.len;
    r->taken = r->acc.len > 0;
    /* Reset only the length: the bytes stay where they are until the next
     * feed writes over them, which is the lifetime the contract promises. */
    lr_buf_reset(&r->acc);
    r->ready = false;
    r->have_header = false;
    return 0;
}
