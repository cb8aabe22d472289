/*
 * fuzz_proto_hello.c - Hello and Close decoders.
 *
 * Whatever decodes must satisfy the field rules, re-encode, and decode again
 * to the same struct; whatever fails must fail with a "drop the peer" code.
 * The same bytes are also tried as a Close payload.
 */
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

static void check_fail(int rc, const struct lr_err *err)
{
    if (rc > LR_E__FATAL_PEER || rc != err->code || err->msg[0] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_err err;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HELLO_MAX);

    struct lr_proto_hello h, h2;
    lr_err_clear(&err);
    int rc = lr_proto_hello_decode(data, size, &h, &err);
    if (rc < 0) {
        check_fail(rc, &err);
    } else {
        size_t nl = strlen(h.name), sl = strlen(h.software);
        if (h.version == 0 || nl == 0 || nl > LR_PROTO_NAME_MAX || sl > LR_PROTO_SOFTWARE_MAX ||
            !lr_proto_text_ok(h.name, nl) || !lr_proto_text_ok(h.software, sl))
            abort();
        if (lr_proto_hello_encode(&h, &b) != 0 || b.len > size)
            abort();
        if (lr_proto_hello_decode(b.data, b.len, &h2, NULL) != 0 || memcmp(&h, &h2, sizeof(h)))
            abort();
    }

    struct lr_proto_close c, c2;
    lr_err_clear(&err);
    lr_buf_reset(&b);
    rc = lr_proto_close_decode(data, size, &c, &err);
    if (rc < 0) {
        check_fail(rc, &err);
    } else {
        size_t rl = strlen(c.reason);
        if (rl > LR_PROTO_REASON_MAX || !lr_proto_text_ok(c.reason, rl))
            abort();
        if (lr_proto_close_encode(&c, &b) != 0 || b.len > size)
            abort();
        if (lr_proto_close_decode(b.data, b.len, &c2, NULL) != 0 || memcmp(&c, &c2, sizeof(c)))
            abort();
    }
    lr_buf_release(&b);
    return 0;
}
