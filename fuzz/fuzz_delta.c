/*
 * fuzz_delta.c - the chunk-list delta decoder (sync/delta.h) against a
 * naive oracle.
 *
 * Input: byte 0 is the base's block count (0..255; the base is generated
 * from it), the rest is a delta. The scan must agree with the oracle on
 * validity, count and base blocks needed; apply must refuse a wrong size or
 * blocks hash with a "drop the peer" code and a message, and with the
 * oracle's size and hash must return exactly the oracle's list. Whatever
 * decodes is re-encoded against the base and must come back the same.
 */
#include "sync/delta.h"
#include "chunker/chunker.h"
#include "util/rd.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static struct lr_chunk base_block(size_t i)
{
    struct lr_chunk c;
    memset(&c, 0, sizeof(c));
    c.len = (uint32_t)(1 + (i * 7919) % LR_CHUNK_MAX);
    c.hash.b[0] = (uint8_t)i;
    c.hash.b[1] = (uint8_t)(i % 5); /* a few repeated lengths, distinct hashes */
    return c;
}

static void check_fail(int rc, const struct lr_err *err)
{
    if (rc > LR_E__FATAL_PEER || rc != err->code || err->msg[0] == '\0')
        abort();
}

/* Naive decoder: grows the list one block at a time. False if invalid. */
static bool oracle(const uint8_t *p, size_t n, const struct lr_chunk *base, size_t nbase,
                   struct lr_chunk **v, size_t *nv, uint64_t *need)
{
    struct lr_rd rd;
    lr_rd_init(&rd, p, n);
    *v = NULL;
    *nv = 0;
    *need = 0;
    bool outside = false; /* a copy left the base: the list is never built */
    while (lr_rd_left(&rd) > 0) {
        uint64_t head, x;
        if (lr_rd_get_varint(&rd, &head) < 0 || head >> 1 == 0)
            return false;
        uint64_t cnt = head >> 1;
        if (cnt > LR_INDEX_CHUNKS_MAX || *nv + cnt > LR_INDEX_CHUNKS_MAX)
            return false;
        if ((head & 1) == 0) {
            if (lr_rd_get_varint(&rd, &x) < 0)
                return false;
            if (x + cnt > *need)
                *need = x + cnt;
            if (x + cnt > nbase)
                outside = true; /* from here on blocks are counted, not materialised */
            if (outside) {
                *nv += (size_t)cnt;
                continue;
            }
            for (uint64_t i = 0; i < cnt; i++) {
                *v = realloc(*v, (*nv + 1) * sizeof(**v));
                if (!*v)
                    abort();
                (*v)[(*nv)++] = base[x + i];
            }
        } else {
            for (uint64_t i = 0; i < cnt; i++) {
                const uint8_t *h;
                if (lr_rd_get_varint(&rd, &x) < 0 || lr_rd_get_view(&rd, &h, LR_HASH_LEN) < 0 ||
                    x == 0 || x > LR_CHUNK_MAX)
                    return false;
                if (outside) {
                    (*nv)++;
                    continue;
                }
                *v = realloc(*v, (*nv + 1) * sizeof(**v));
                if (!*v)
                    abort();
                struct lr_chunk *c = &(*v)[(*nv)++];
                memset(c, 0, sizeof(*c));
                c->len = (uint32_t)x;
                memcpy(c->hash.b, h, LR_HASH_LEN);
            }
        }
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nbase = data[0];
    struct lr_chunk base[256];
    uint64_t off = 0;
    for (size_t i = 0; i < nbase; i++) {
        base[i] = base_block(i);
        base[i].off = off;
        off += base[i].len;
    }
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    struct lr_err err;
    uint64_t count, need;
    lr_err_clear(&err);
    int rc = lr_sync_delta_scan(p, n, &count, &need, &err);
    struct lr_chunk *ov = NULL;
    size_t on = 0;
    uint64_t oneed = 0;
    bool ok = oracle(p, n, base, nbase, &ov, &on, &oneed);
    if (rc < 0)
        check_fail(rc, &err);
    if ((rc == 0) != ok)
        abort();
    if (rc == 0 && (count != on || need != oneed))
        abort();

    struct lr_hash h;
    struct lr_chunk *out = NULL;
    size_t nout = 0;
    bool materialised = ok && need <= nbase;
    uint64_t osize = 0;
    for (size_t i = 0; materialised && i < on; i++) {
        ov[i].off = osize;
        osize += ov[i].len;
    }
    lr_index_blocks_hash(materialised ? ov : NULL, materialised ? on : 0, &h);
    /* Right size and hash: exactly the oracle's list, else refused. */
    lr_err_clear(&err);
    rc = lr_sync_delta_apply(base, nbase, p, n, osize, &h, &out, &nout, &err);
    if (materialised) {
        if (rc != 0 || nout != on)
            abort();
        for (size_t i = 0; i < on; i++)
            if (out[i].off != ov[i].off || out[i].len != ov[i].len ||
                memcmp(out[i].hash.b, ov[i].hash.b, LR_HASH_LEN))
                abort();
        /* Re-encoded against the base, it decodes to the same list. */
        struct lr_buf b;
        lr_buf_init(&b, 1u << 24);
        if (lr_sync_delta_encode(base, nbase, out, nout, &b) != 0)
            abort();
        struct lr_chunk *back;
        size_t nback;
        if (lr_sync_delta_apply(base, nbase, b.data, b.len, osize, &h, &back, &nback, NULL) != 0 ||
            nback != nout)
            abort();
        for (size_t i = 0; i < nout; i++)
            if (back[i].off != out[i].off || back[i].len != out[i].len ||
                memcmp(back[i].hash.b, out[i].hash.b, LR_HASH_LEN))
                abort();
        free(back);
        lr_buf_release(&b);
        free(out);
        out = NULL;
        /* A wrong hash or size is refused. */
        struct lr_hash bad = h;
        bad.b[0] ^= 1;
        lr_err_clear(&err);
        rc = lr_sync_delta_apply(base, nbase, p, n, osize, &bad, &out, &nout, &err);
        if (rc == 0)
            abort();
        check_fail(rc, &err);
        lr_err_clear(&err);
        rc = lr_sync_delta_apply(base, nbase, p, n, osize + 1, &h, &out, &nout, &err);
        if (rc == 0)
            abort();
        check_fail(rc, &err);
    } else {
        if (rc == 0 || out || nout)
            abort();
        check_fail(rc, &err);
    }
    free(ov);
    return 0;
}
