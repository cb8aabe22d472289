/*
 * fuzz_proto_frame.c - the incremental frame reader against a whole-buffer
 * reference parser.
 *
 * Input: 2 bytes of seed for the piece sizes, then the stream. The stream is
 * fed to lr_frame_reader_feed in pieces of pseudo-random sizes (1 byte up to
 * a few KiB, derived from the seed); every frame that comes out must match
 * what the reference parse of the whole stream says, and an error must come
 * exactly where the reference finds the first bad header. Payloads of known
 * types also go through their decoders.
 */
#include "proto/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ref_frame {
    uint64_t type;
    const uint8_t *p;
    size_t len;
};

/* Reference: parse the whole stream at once with lr_rd. Returns the number
 * of deliverable frames; *err_code is the fatal error (0 if none) and the
 * stream may end with a partial frame. */
static size_t ref_parse(const uint8_t *p, size_t n, struct ref_frame *out, size_t cap,
                        int *err_code)
{
    struct lr_rd rd;
    size_t k = 0;
    *err_code = 0;
    lr_rd_init(&rd, p, n);
    while (lr_rd_left(&rd) > 0) {
        uint64_t type, len;
        if (lr_rd_get_varint(&rd, &type) < 0 || lr_rd_get_varint(&rd, &len) < 0)
            break;
        if (type == 0) {
            *err_code = LR_EPROTO;
            break;
        }
        size_t max = lr_proto_max_payload(type);
        size_t lim = max ? max : LR_PROTO_UNKNOWN_MAX;
        if (len > lim) {
            *err_code = LR_ETOOBIG;
            break;
        }
        const uint8_t *pay;
        if (lr_rd_get_view(&rd, &pay, (size_t)len) < 0)
            break;
        if (max && k < cap)
            out[k++] = (struct ref_frame){type, pay, (size_t)len};
    }
    return k;
}

static void decode_known(uint64_t type, const uint8_t *p, size_t len)
{
    struct lr_err err;
    if (type == LR_MSG_HELLO) {
        struct lr_proto_hello h;
        int rc = lr_proto_hello_decode(p, len, &h, &err);
        if (rc < 0 && rc > LR_E__FATAL_PEER)
            abort();
    } else if (type == LR_MSG_CLOSE) {
        struct lr_proto_close c;
        int rc = lr_proto_close_decode(p, len, &c, &err);
        if (rc < 0 && rc > LR_E__FATAL_PEER)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t seed = (uint32_t)data[0] << 8 | data[1];
    const uint8_t *s = data + 2;
    size_t n = size - 2;

    /* Every frame takes at least 2 bytes. */
    size_t cap = n / 2 + 1;
    struct ref_frame *ref = calloc(cap, sizeof(*ref));
    if (!ref)
        abort();
    int ref_err;
    size_t nref = ref_parse(s, n, ref, cap, &ref_err);

    struct lr_frame_reader r;
    lr_frame_reader_init(&r);
    struct lr_err err;
    size_t off = 0, got = 0;
    int rc = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (off < n) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        size_t piece = (x & 3) == 0 ? 1 + (x >> 8) % 4096 : 1 + (x >> 8) % 7;
        if (piece > n - off)
            piece = n - off;
        size_t used = 0;
        while (used < piece) {
            size_t c;
            rc = lr_frame_reader_feed(&r, s + off + used, piece - used, &c, &err);
            if (c > piece - used)
                abort();
            used += c;
            if (rc < 0)
                goto done;
            if (rc == 0) {
                if (used != piece)
                    abort();
                break;
            }
            uint64_t type;
            const uint8_t *p;
            size_t len;
            if (lr_frame_reader_take(&r, &type, &p, &len) != 0)
                abort();
            if (got >= nref || type != ref[got].type || len != ref[got].len ||
                (len && memcmp(p, ref[got].p, len) != 0))
                abort();
            if (len > lr_proto_max_payload(type) || r.acc.cap > LR_PROTO_FRAME_MAX)
                abort();
            decode_known(type, p, len);
            /* Every other frame's payload is kept, as a receiver keeps chunk
             * data: the buffer is the payload, later frames use another. */
            if (got % 2) {
                uint8_t *own = lr_frame_reader_steal(&r);
                if ((own != NULL) != (len > 0) || (own && own != p) || lr_frame_reader_steal(&r))
                    abort();
                free(own);
            }
            got++;
        }
        off += piece;
    }
done:
    if (rc < 0) {
        if (rc != ref_err || rc != err.code || !strstr(err.msg, "frame:"))
            abort();
        size_t c;
        if (lr_frame_reader_feed(&r, s, n, &c, NULL) != rc || c != 0)
            abort();
    } else if (ref_err != 0) {
        abort();
    }
    if (got != nref)
        abort();
    lr_frame_reader_release(&r);
    free(ref);
    return 0;
}
