#include "proto/proto.h"

#include "util/str.h"

#include <string.h>

/*
 * The type registry. Adding a message = one row here (and its codec). The
 * limit is checked by the frame reader as soon as a header is read, before
 * anything is buffered, so it must cover the largest valid encoding plus
 * room for fields a newer peer may append.
 */
struct type_info {
    uint64_t type;
    const char *name;
    size_t max;
};

static const struct type_info types[] = {
    {LR_MSG_HELLO, "HELLO", LR_PROTO_HELLO_MAX},
    {LR_MSG_PING, "PING", LR_PROTO_PING_MAX},
    {LR_MSG_CLOSE, "CLOSE", LR_PROTO_CLOSE_MAX},
    {LR_MSG_FOLDERS, "FOLDERS", LR_PROTO_FOLDERS_MAX},
    {LR_MSG_INDEX, "INDEX", LR_PROTO_INDEX_MAX},
    {LR_MSG_WANT, "WANT", LR_PROTO_WANT_MAX},
    {LR_MSG_CHUNK, "CHUNK", LR_PROTO_CHUNK_MAX},
    {LR_MSG_HAVE, "HAVE", LR_PROTO_HAVE_MAX},
    /* INDEX_DELTA (0x15) is reserved, not registered: an old peer skips it
     * like any unknown type. */
    {LR_MSG_SUMMARY, "SUMMARY", LR_PROTO_SUMMARY_MAX},
    {LR_MSG_SUMMARY_WANT, "SUMMARY_WANT", LR_PROTO_SUMMARY_WANT_MAX},
    {LR_MSG_PULLED, "PULLED", LR_PROTO_PULLED_MAX},
    {LR_MSG_SEQ_ASK, "SEQ_ASK", LR_PROTO_SEQ_ASK_MAX},
    {LR_MSG_SEQS, "SEQS", LR_PROTO_SEQS_MAX},
    {LR_MSG_DEBUG_DATA, "DEBUG_DATA", LR_PROTO_DEBUG_MAX},
};

static const struct type_info *find_type(uint64_t type)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (types[i].type == type)
            return &types[i];
    }
    return NULL;
}

size_t lr_proto_max_payload(uint64_t type)
{
    const struct type_info *t = find_type(type);
    return t ? t->max : 0;
}

const char *lr_proto_type_name(uint64_t type)
{
    const struct type_info *t = find_type(type);
    return t ? t->name : "unknown";
}

int lr_proto_frame_put(struct lr_buf *out, uint64_t type, const void *payload, size_t len)
{
    if (type == 0 || type > LR_VARINT_MAX)
        return LR_EBADVAL;
    size_t max = lr_proto_max_payload(type);
    if (max == 0)
        max = LR_PROTO_UNKNOWN_MAX;
    if (len > max)
        return LR_ETOOBIG;
    size_t total = lr_varint_len(type) + lr_varint_len(len) + len;
    /* Reserve the whole frame first so a full buffer fails before any byte
     * of the frame is appended. */
    if (!lr_buf_reserve(out, total))
        return LR_ETOOBIG;
    int rc = lr_buf_put_varint(out, type);
    if (rc == 0)
        rc = lr_buf_put_varint(out, len);
    if (rc == 0)
        rc = lr_buf_put(out, payload, len);
    return rc;
}

bool lr_proto_text_ok(const void *vs, size_t n)
{
    const uint8_t *s = vs;
    if (!lr_utf8_valid(s, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return false;
        /* In valid UTF-8, U+0080..U+009F (C1) is exactly C2 80..C2 9F. */
        if (s[i] == 0xc2 && i + 1 < n && s[i + 1] < 0xa0)
            return false;
    }
    return true;
}
