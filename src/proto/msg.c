/* msg.c - codecs of the connection-level messages: Hello and Close. */
#include "proto/proto.h"

#include "util/str.h"

#include <inttypes.h>
#include <string.h>

/* Length of a NUL-terminated field of a fixed array, or max + 1 if it is not
 * terminated within max bytes. */
static size_t field_len(const char *s, size_t max)
{
    const char *z = memchr(s, '\0', max + 1);
    return z ? (size_t)(z - s) : max + 1;
}

static bool text_field_ok(const char *s, size_t max, bool allow_empty)
{
    size_t n = field_len(s, max);
    if (n > max || (n == 0 && !allow_empty))
        return false;
    return lr_proto_text_ok(s, n);
}

/*
 * Read a varint-length-prefixed text field into out[max + 1], NUL-terminated.
 * `what` names the field in errors ("hello.name").
 */
static int get_text(struct lr_rd *rd, const char *what, size_t max, bool allow_empty, char *out,
                    struct lr_err *err)
{
    uint64_t len;
    if (lr_rd_get_varint(rd, &len) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: length truncated", what);
    if (len > max)
        return lr_err_set(err, LR_ETOOBIG, "%s: length %" PRIu64 " over %zu", what, len, max);
    const uint8_t *p;
    if (lr_rd_get_view(rd, &p, (size_t)len) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: %" PRIu64 " bytes declared, %zu left", what, len,
                          lr_rd_left(rd));
    if (len == 0 && !allow_empty)
        return lr_err_set(err, LR_EBADVAL, "%s: empty", what);
    if (!lr_utf8_valid(p, (size_t)len))
        return lr_err_set(err, LR_EBADVAL, "%s: invalid UTF-8", what);
    if (!lr_proto_text_ok(p, (size_t)len))
        return lr_err_set(err, LR_EBADVAL, "%s: control character", what);
    memcpy(out, p, (size_t)len);
    out[len] = '\0';
    return 0;
}

int lr_proto_hello_encode(const struct lr_proto_hello *h, struct lr_buf *out)
{
    if (h->version == 0 || h->features > LR_VARINT_MAX ||
        !text_field_ok(h->name, LR_PROTO_NAME_MAX, false) ||
        !text_field_ok(h->software, LR_PROTO_SOFTWARE_MAX, true))
        return LR_EBADVAL;
    int rc = lr_buf_put_varint(out, h->version);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, h->name, strlen(h->name));
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, h->software, strlen(h->software));
    if (rc == 0)
        rc = lr_buf_put_varint(out, h->features);
    return rc;
}

int lr_proto_hello_decode(const uint8_t *p, size_t n, struct lr_proto_hello *h, struct lr_err *err)
{
    struct lr_proto_hello tmp;
    struct lr_rd rd;
    uint64_t v;
    int rc;
    memset(h, 0, sizeof(*h));
    memset(&tmp, 0, sizeof(tmp));
    lr_rd_init(&rd, p, n);

    if (lr_rd_get_varint(&rd, &v) < 0)
        return lr_err_set(err, LR_ETRUNC, "hello.version: truncated");
    if (v == 0 || v > UINT32_MAX)
        return lr_err_set(err, LR_EBADVAL, "hello.version: %" PRIu64 " out of range", v);
    tmp.version = (uint32_t)v;
    rc = get_text(&rd, "hello.name", LR_PROTO_NAME_MAX, false, tmp.name, err);
    if (rc < 0)
        return rc;
    rc = get_text(&rd, "hello.software", LR_PROTO_SOFTWARE_MAX, true, tmp.software, err);
    if (rc < 0)
        return rc;
    if (lr_rd_get_varint(&rd, &tmp.features) < 0)
        return lr_err_set(err, LR_ETRUNC, "hello.features: truncated");
    /* Anything left was appended by a newer version: ignored by design. */
    *h = tmp;
    return 0;
}

int lr_proto_close_encode(const struct lr_proto_close *c, struct lr_buf *out)
{
    if (c->code > LR_VARINT_MAX || !text_field_ok(c->reason, LR_PROTO_REASON_MAX, true))
        return LR_EBADVAL;
    int rc = lr_buf_put_varint(out, c->code);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, c->reason, strlen(c->reason));
    return rc;
}

int lr_proto_close_decode(const uint8_t *p, size_t n, struct lr_proto_close *c, struct lr_err *err)
{
    struct lr_proto_close tmp;
    struct lr_rd rd;
    memset(c, 0, sizeof(*c));
    memset(&tmp, 0, sizeof(tmp));
    lr_rd_init(&rd, p, n);
    if (lr_rd_get_varint(&rd, &tmp.code) < 0)
        return lr_err_set(err, LR_ETRUNC, "close.code: truncated");
    int rc = get_text(&rd, "close.reason", LR_PROTO_REASON_MAX, true, tmp.reason, err);
    if (rc < 0)
        return rc;
    *c = tmp;
    return 0;
}
