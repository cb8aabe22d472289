/* msg.c - pairing wire messages: framing and the four codecs. */
#include "pair/msg.h"

#include "proto/proto.h"
#include "util/rd.h"

#include <inttypes.h>
#include <string.h>

/* Exact payload sizes / bounds per type. */
#define HELLO_MAX (8 + 8 + LR_DEVICE_ID_LEN + 8 + LR_PAIR_NAME_MAX)
#define RESULT_MAX (8 + 8 + LR_PAIR_REASON_MAX)

_Static_assert(HELLO_MAX <= LR_PAIR_PAYLOAD_MAX, "hello bound");
_Static_assert(RESULT_MAX <= LR_PAIR_PAYLOAD_MAX, "result bound");

static size_t max_payload(uint64_t type)
{
    switch (type) {
    case LR_PAIR_MSG_HELLO:
        return HELLO_MAX;
    case LR_PAIR_MSG_CPACE:
        return LR_CPACE_POINT_LEN;
    case LR_PAIR_MSG_CONFIRM:
        return LR_CPACE_TAG_LEN;
    case LR_PAIR_MSG_RESULT:
        return RESULT_MAX;
    default:
        return 0;
    }
}

const char *lr_pair_msg_type_name(uint64_t type)
{
    switch (type) {
    case LR_PAIR_MSG_HELLO:
        return "PAIR_HELLO";
    case LR_PAIR_MSG_CPACE:
        return "PAIR_CPACE";
    case LR_PAIR_MSG_CONFIRM:
        return "PAIR_CONFIRM";
    case LR_PAIR_MSG_RESULT:
        return "PAIR_RESULT";
    default:
        return "unknown";
    }
}

const char *lr_pair_status_str(uint64_t status)
{
    switch (status) {
    case LR_PAIR_OK:
        return "paired";
    case LR_PAIR_WRONG_CODE:
        return "wrong code";
    case LR_PAIR_EXPIRED:
        return "code expired";
    case LR_PAIR_NO_CODE:
        return "no such code";
    case LR_PAIR_USED:
        return "code already used";
    case LR_PAIR_ERROR:
        return "pairing failed";
    default:
        return "unknown status";
    }
}

static bool text_ok(const char *s, size_t max, bool allow_empty)
{
    const char *z = memchr(s, '\0', max + 1);
    if (!z)
        return false;
    size_t n = (size_t)(z - s);
    return (n > 0 || allow_empty) && lr_proto_text_ok(s, n);
}

static int encode_payload(const struct lr_pair_msg *m, struct lr_buf *b)
{
    int rc;
    switch (m->type) {
    case LR_PAIR_MSG_HELLO:
        rc = lr_buf_put_varint(b, m->u.hello.version);
        if (rc == 0)
            rc = lr_buf_put_varint(b, m->u.hello.nameplate);
        if (rc == 0)
            rc = lr_buf_put(b, m->u.hello.id.b, LR_DEVICE_ID_LEN);
        if (rc == 0)
            rc = lr_buf_put_lbytes(b, m->u.hello.name, strlen(m->u.hello.name));
        return rc;
    case LR_PAIR_MSG_CPACE:
        return lr_buf_put(b, m->u.y, LR_CPACE_POINT_LEN);
    case LR_PAIR_MSG_CONFIRM:
        return lr_buf_put(b, m->u.tag, LR_CPACE_TAG_LEN);
    case LR_PAIR_MSG_RESULT:
        rc = lr_buf_put_varint(b, (uint64_t)m->u.result.status);
        if (rc == 0)
            rc = lr_buf_put_lbytes(b, m->u.result.reason, strlen(m->u.result.reason));
        return rc;
    }
    return LR_EBADVAL;
}

static bool valid(const struct lr_pair_msg *m)
{
    switch (m->type) {
    case LR_PAIR_MSG_HELLO:
        return m->u.hello.version != 0 && m->u.hello.nameplate <= LR_PAIR_NAMEPLATE_MAX &&
               text_ok(m->u.hello.name, LR_PAIR_NAME_MAX, false);
    case LR_PAIR_MSG_CPACE:
    case LR_PAIR_MSG_CONFIRM:
        return true;
    case LR_PAIR_MSG_RESULT:
        return (unsigned)m->u.result.status <= LR_PAIR_STATUS_MAX &&
               text_ok(m->u.result.reason, LR_PAIR_REASON_MAX, true);
    }
    return false;
}

int lr_pair_msg_encode(const struct lr_pair_msg *m, struct lr_buf *out)
{
    uint8_t tmp[LR_PAIR_PAYLOAD_MAX];
    struct lr_buf pl;
    int rc;
    if (!valid(m))
        return LR_EBADVAL;
    /* Encode the payload first to learn its length: a fixed stack buffer, as
     * every payload is bounded. */
    lr_buf_init(&pl, LR_PAIR_PAYLOAD_MAX);
    rc = encode_payload(m, &pl);
    if (rc == 0 && pl.len <= sizeof(tmp))
        memcpy(tmp, pl.data, pl.len);
    size_t len = pl.len;
    lr_buf_release(&pl);
    if (rc < 0 || len > max_payload(m->type))
        return LR_EBADVAL; /* cannot happen for a valid message */
    rc = lr_buf_put_varint(out, (uint64_t)m->type);
    if (rc == 0)
        rc = lr_buf_put_varint(out, len);
    if (rc == 0)
        rc = lr_buf_put(out, tmp, len);
    return rc;
}

/* A varint that must use its shortest form. */
static int get_varint(struct lr_rd *r, uint64_t *v, const char *what, struct lr_err *err)
{
    size_t before = lr_rd_left(r);
    if (lr_rd_get_varint(r, v) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: truncated", what);
    if (before - lr_rd_left(r) != lr_varint_len(*v))
        return lr_err_set(err, LR_EPROTO, "%s: varint not minimally encoded", what);
    return 0;
}

static int get_text(struct lr_rd *r, const char *what, size_t max, bool allow_empty, char *out,
                    struct lr_err *err)
{
    uint64_t len;
    const uint8_t *p;
    int rc = get_varint(r, &len, what, err);
    if (rc < 0)
        return rc;
    if (len > max)
        return lr_err_set(err, LR_ETOOBIG, "%s: length %" PRIu64 " over %zu", what, len, max);
    if (lr_rd_get_view(r, &p, (size_t)len) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: %" PRIu64 " bytes declared, %zu left", what, len,
                          lr_rd_left(r));
    if (len == 0 && !allow_empty)
        return lr_err_set(err, LR_EBADVAL, "%s: empty", what);
    if (!lr_proto_text_ok(p, (size_t)len))
        return lr_err_set(err, LR_EBADVAL, "%s: invalid UTF-8 or control character", what);
    memcpy(out, p, (size_t)len);
    out[len] = '\0';
    return 0;
}

static int decode_payload(uint64_t type, struct lr_rd *r, struct lr_pair_msg *m, struct lr_err *err)
{
    uint64_t v;
    int rc;
    switch (type) {
    case LR_PAIR_MSG_HELLO:
        m->type = LR_PAIR_MSG_HELLO;
        if ((rc = get_varint(r, &v, "pair_hello.version", err)) < 0)
            return rc;
        if (v == 0 || v > UINT32_MAX)
            return lr_err_set(err, LR_EBADVAL, "pair_hello.version: %" PRIu64 " out of range", v);
        m->u.hello.version = (uint32_t)v;
        if ((rc = get_varint(r, &v, "pair_hello.nameplate", err)) < 0)
            return rc;
        if (v > LR_PAIR_NAMEPLATE_MAX)
            return lr_err_set(err, LR_EBADVAL, "pair_hello.nameplate: %" PRIu64 " over %u", v,
                              LR_PAIR_NAMEPLATE_MAX);
        m->u.hello.nameplate = (uint16_t)v;
        if (lr_rd_get_bytes(r, m->u.hello.id.b, LR_DEVICE_ID_LEN) < 0)
            return lr_err_set(err, LR_ETRUNC, "pair_hello.id: truncated");
        return get_text(r, "pair_hello.name", LR_PAIR_NAME_MAX, false, m->u.hello.name, err);
    case LR_PAIR_MSG_CPACE:
        m->type = LR_PAIR_MSG_CPACE;
        if (lr_rd_get_bytes(r, m->u.y, LR_CPACE_POINT_LEN) < 0)
            return lr_err_set(err, LR_ETRUNC, "pair_cpace.y: %zu bytes, want %d", lr_rd_left(r),
                              LR_CPACE_POINT_LEN);
        return 0;
    case LR_PAIR_MSG_CONFIRM:
        m->type = LR_PAIR_MSG_CONFIRM;
        if (lr_rd_get_bytes(r, m->u.tag, LR_CPACE_TAG_LEN) < 0)
            return lr_err_set(err, LR_ETRUNC, "pair_confirm.tag: %zu bytes, want %d", lr_rd_left(r),
                              LR_CPACE_TAG_LEN);
        return 0;
    case LR_PAIR_MSG_RESULT:
        m->type = LR_PAIR_MSG_RESULT;
        if ((rc = get_varint(r, &v, "pair_result.status", err)) < 0)
            return rc;
        if (v > LR_PAIR_STATUS_MAX)
            return lr_err_set(err, LR_EBADVAL, "pair_result.status: unknown %" PRIu64, v);
        m->u.result.status = (enum lr_pair_status)v;
        return get_text(r, "pair_result.reason", LR_PAIR_REASON_MAX, true, m->u.result.reason, err);
    }
    return lr_err_set(err, LR_EPROTO, "pairing frame: unknown type %" PRIu64, type);
}

int lr_pair_msg_decode(const uint8_t *p, size_t n, struct lr_pair_msg *m, struct lr_err *err)
{
    struct lr_pair_msg tmp;
    struct lr_rd rd, body;
    uint64_t type, len;
    const uint8_t *pl;
    int rc;
    memset(m, 0, sizeof(*m));
    memset(&tmp, 0, sizeof(tmp));
    lr_rd_init(&rd, p, n);

    /* Header: an incomplete varint just means "more bytes to come". */
    if (lr_rd_get_varint(&rd, &type) < 0)
        return 0;
    if (n - lr_rd_left(&rd) != lr_varint_len(type))
        return lr_err_set(err, LR_EPROTO, "pairing frame: type varint not minimally encoded");
    size_t max = max_payload(type);
    if (max == 0)
        return lr_err_set(err, LR_EPROTO, "pairing frame: unknown type %" PRIu64, type);
    size_t at = n - lr_rd_left(&rd);
    if (lr_rd_get_varint(&rd, &len) < 0)
        return 0;
    if (n - lr_rd_left(&rd) - at != lr_varint_len(len))
        return lr_err_set(err, LR_EPROTO, "%s: length varint not minimally encoded",
                          lr_pair_msg_type_name(type));
    if (len > max)
        return lr_err_set(err, LR_ETOOBIG, "%s: length %" PRIu64 " over %zu",
                          lr_pair_msg_type_name(type), len, max);
    if (lr_rd_get_view(&rd, &pl, (size_t)len) < 0)
        return 0;
    lr_rd_init(&body, pl, (size_t)len);
    rc = decode_payload(type, &body, &tmp, err);
    if (rc < 0)
        return rc;
    if (lr_rd_left(&body) != 0)
        return lr_err_set(err, LR_EPROTO, "%s: %zu bytes after the last field",
                          lr_pair_msg_type_name(type), lr_rd_left(&body));
    *m = tmp;
    return (int)(n - lr_rd_left(&rd));
}
