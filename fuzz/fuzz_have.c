/*
 * fuzz_have.c - the HAVE decoder (proto/have.h) against a naive oracle.
 *
 * Whatever the decoder accepts must walk, through the iterator, as sorted,
 * disjoint, non-adjacent ranges inside nchunks adding up to nheld; a
 * rejection must carry a "drop the peer" code and a message. An accepted
 * HAVE is re-encoded from the chunks it announced and must decode to the
 * same chunks (the encoder may pick the other form, never other chunks).
 */
#include "proto/have.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_proto_have h;
    struct lr_err err = {0};
    int rc = lr_proto_have_decode(data, size, &h, &err);
    if (rc < 0) {
        if (rc > LR_E__FATAL_PEER || err.code != rc || err.msg[0] == '\0')
            abort();
        return 0;
    }
    /* Chunks are bounded by the count; a bitmap of up to 8 MiB is only
     * built for counts the message limit allows on the wire. */
    if (h.nchunks > (uint64_t)LR_PROTO_HAVE_MAX * 8)
        return 0;
    size_t nb = (size_t)((h.nchunks + 7) / 8);
    uint8_t *bits = calloc(nb ? nb : 1, 1);
    if (!bits)
        abort();
    struct lr_proto_have_it it;
    uint64_t first, count, end = 0, total = 0;
    bool any = false;
    lr_proto_have_iter(&h, &it);
    while (lr_proto_have_next(&h, &it, &first, &count)) {
        if (count == 0 || first + count > h.nchunks || (any && first <= end))
            abort();
        for (uint64_t k = first; k < first + count; k++)
            bits[k >> 3] = (uint8_t)(bits[k >> 3] | (1u << (k & 7)));
        end = first + count;
        total += count;
        any = true;
    }
    if (total != h.nheld)
        abort();
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FRAME_MAX);
    uint64_t sent;
    if (lr_proto_have_encode(&h, bits, &b, &sent) != 0 || sent != total)
        abort();
    struct lr_proto_have d;
    if (lr_proto_have_decode(b.data, b.len, &d, NULL) != 0 || d.nchunks != h.nchunks ||
        d.nheld != h.nheld || d.path_len != h.path_len || memcmp(d.path, h.path, h.path_len) != 0 ||
        strcmp(d.folder_id, h.folder_id) != 0 ||
        memcmp(&d.blocks_hash, &h.blocks_hash, LR_HASH_LEN) != 0)
        abort();
    struct lr_proto_have_it a, c;
    uint64_t f1, c1, f2, c2;
    lr_proto_have_iter(&h, &a);
    lr_proto_have_iter(&d, &c);
    for (;;) {
        bool m1 = lr_proto_have_next(&h, &a, &f1, &c1), m2 = lr_proto_have_next(&d, &c, &f2, &c2);
        if (m1 != m2 || (m1 && (f1 != f2 || c1 != c2)))
            abort();
        if (!m1)
            break;
    }
    lr_buf_release(&b);
    free(bits);
    return 0;
}
