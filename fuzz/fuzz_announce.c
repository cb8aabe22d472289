/*
 * fuzz_announce.c - discovery announcement decoder.
 *
 * Whatever parses must satisfy the field rules and re-encode to exactly the
 * signed bytes of the input; whatever fails must fail with a known code and
 * a message, leaving the output zeroed. The replay guard and freshness check
 * run on what parses (a replay of the same input must be refused).
 */
#include "discovery/announce.h"
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

static int known(int rc)
{
    return rc == LR_ETRUNC || rc == LR_ETOOBIG || rc == LR_EPROTO || rc == LR_EBADVAL ||
           rc == LR_EVERIFY;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_err err;
    lr_err_clear(&err);
    struct lr_announce a;
    int rc = lr_announce_parse(data, size, &a, &err);
    if (rc < 0) {
        if (!known(rc) || err.code != rc || err.msg[0] == '\0')
            abort();
        for (size_t i = 0; i < sizeof(a); i++)
            if (((const uint8_t *)&a)[i])
                abort();
        return 0;
    }
    size_t nl = strlen(a.name);
    if (nl == 0 || nl > LR_ANNOUNCE_NAME_MAX || !lr_proto_text_ok(a.name, nl) ||
        a.nports > LR_ANNOUNCE_MAX_PORTS || a.naddrs > LR_ANNOUNCE_MAX_ADDRS ||
        size > LR_ANNOUNCE_MAX || size < LR_ANNOUNCE_SIG_LEN)
        abort();
    for (size_t i = 0; i < a.nports; i++)
        if (a.ports[i] == 0)
            abort();
    if (a.has_nameplate ? a.nameplate > LR_ANNOUNCE_NAMEPLATE_MAX : a.nameplate != 0)
        abort();
    struct lr_buf b;
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    if (lr_announce_encode_body(&a, &b, NULL) != 0 || b.len != size - LR_ANNOUNCE_SIG_LEN ||
        memcmp(b.data, data, b.len) != 0)
        abort();
    lr_buf_release(&b);

    if (lr_announce_check_fresh(&a, a.ts_ms, NULL) != 0)
        abort();
    struct lr_announce_replay *r = lr_announce_replay_new(2);
    if (lr_announce_replay_check(r, &a, a.ts_ms, NULL) != 0 ||
        lr_announce_replay_check(r, &a, a.ts_ms, NULL) != LR_EVERIFY)
        abort();
    lr_announce_replay_free(r);
    return 0;
}
