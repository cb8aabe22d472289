/*
 * fuzz_pairmsg.c - everything pairing reads from a peer or a user.
 *
 * Invariants:
 *  - lr_pair_msg_decode never crashes. A decoded frame is canonical: its
 *    fields are in range and re-encoding it gives exactly the bytes it was
 *    read from. "Need more" (0) is only returned while no whole frame is
 *    there. A failure is a "drop the peer" code with a message.
 *  - The first 32 bytes as a peer's CPace share: accepted exactly when they
 *    are a canonical, non-identity ristretto255 encoding; then both tags are
 *    produced and a wrong tag is refused.
 *  - The bytes as a typed pairing code: parse never crashes; a parsed code
 *    formats to a string that parses to the same code.
 *  - The frames in the bytes, fed in order to a holder's session: it never
 *    pairs (that would need the secret's confirmation tag), never answers
 *    with a malformed frame, and once it has claimed the code the code is
 *    dead after the session ends, whatever the messages were.
 */
#include "pair/code.h"
#include "pair/cpace.h"
#include "pair/msg.h"
#include "pair/session.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static void check_msg(const uint8_t *data, size_t size)
{
    struct lr_pair_msg m, m2;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_pair_msg_decode(data, size, &m, &err);
    if (rc < 0) {
        if (rc > LR_E__FATAL_PEER || err.code != rc || err.msg[0] == '\0')
            abort();
        return;
    }
    if (rc == 0) {
        /* no whole frame: decoding again with the same bytes cannot differ */
        if (size >= LR_PAIR_FRAME_MAX + 16)
            abort(); /* a frame over the bound is refused, never awaited */
        return;
    }
    if ((size_t)rc > size || (size_t)rc > LR_PAIR_FRAME_MAX)
        abort();
    struct lr_buf b;
    lr_buf_init(&b, LR_PAIR_FRAME_MAX);
    if (lr_pair_msg_encode(&m, &b) != 0 || b.len != (size_t)rc || memcmp(b.data, data, b.len))
        abort();
    if (lr_pair_msg_decode(b.data, b.len, &m2, NULL) != rc || memcmp(&m, &m2, sizeof(m)))
        abort();
    /* every strict prefix of a whole frame means "need more" */
    if (lr_pair_msg_decode(b.data, b.len - 1, &m2, NULL) != 0)
        abort();
    lr_buf_release(&b);
}

static void check_point(const uint8_t *data, size_t size)
{
    static const uint8_t scalar[32] = {7, 1, 2, 3};
    uint8_t y[32], tag[32];
    struct lr_cpace c;
    if (size < 32)
        return;
    if (sodium_init() < 0)
        abort();
    if (lr__cpace_start_with_scalar(&c, LR_CPACE_RESPONDER, "123456", 6, "ci", 2, "sid", 3, NULL, 0,
                                    scalar, y, NULL) != 0)
        abort();
    bool valid = (data[31] & 0x80) == 0 && crypto_core_ristretto255_is_valid_point(data);
    int rc = lr_cpace_receive(&c, data, NULL, 0, tag, NULL);
    if (rc == 0) {
        if (!valid || c.state != LR_CPACE_KEYED)
            abort();
        tag[0] ^= 1; /* our own tag, altered: never the peer's */
        if (lr_cpace_confirm(&c, tag, NULL) != LR_EVERIFY || c.state != LR_CPACE_FAILED)
            abort();
    } else if (rc != LR_EPROTO || c.state != LR_CPACE_FAILED) {
        abort();
    } else if (valid) {
        /* a valid point is only refused if y * point is the identity, which for
         * a prime-order group and a nonzero scalar means the point was it */
        static const uint8_t id[32];
        if (memcmp(data, id, 32) != 0)
            abort();
    }
    lr_cpace_clear(&c);
}

static void check_code(const uint8_t *data, size_t size)
{
    char s[LR_PAIR_CODE_INPUT_MAX + 8];
    struct lr_pair_code c, c2;
    char out[LR_PAIR_CODE_STRLEN + 1];
    if (size >= sizeof(s))
        size = sizeof(s) - 1;
    memcpy(s, data, size);
    s[size] = '\0';
    if (lr_pair_code_parse(s, &c, NULL) != 0)
        return;
    if (c.nameplate > LR_PAIR_NAMEPLATE_MAX || c.secret > LR_PAIR_SECRET_MAX)
        abort();
    lr_pair_code_format(&c, out);
    if (lr_pair_code_parse(out, &c2, NULL) != 0 || c2.nameplate != c.nameplate ||
        c2.secret != c.secret)
        abort();
}

static void check_out(const struct lr_buf *out)
{
    size_t off = 0;
    while (off < out->len) {
        struct lr_pair_msg m;
        int n = lr_pair_msg_decode(out->data + off, out->len - off, &m, NULL);
        if (n <= 0)
            abort();
        off += (size_t)n;
    }
}

static void check_session(const uint8_t *data, size_t size)
{
    struct lr_pair_code code = {.nameplate = 417, .secret = 305911, .created_ms = 0};
    struct lr_pair_session_cfg cfg;
    struct lr_pair_session s;
    struct lr_buf out;
    memset(&cfg, 0, sizeof(cfg));
    cfg.role = LR_PAIR_HOLDER;
    memset(cfg.self_id.b, 0x22, LR_DEVICE_ID_LEN);
    memset(cfg.peer_cert_id.b, 0xa0, LR_DEVICE_ID_LEN);
    cfg.self_name = "holder";
    cfg.holder_code = &code;
    lr_buf_init(&out, 64 * LR_PAIR_FRAME_MAX);
    if (lr_pair_session_start(&s, &cfg, 1, &out, NULL) != 0 || out.len != 0)
        abort();
    size_t off = 0;
    bool claimed = false;
    while (off < size) {
        struct lr_pair_msg m;
        int n = lr_pair_msg_decode(data + off, size - off, &m, NULL);
        if (n <= 0)
            break;
        off += (size_t)n;
        int rc = lr_pair_session_on_msg(&s, &m, 2, &out, NULL);
        claimed = claimed || code.claimed;
        if (rc > 0 || code.used)
            abort();
        if (rc < 0)
            break;
    }
    check_out(&out);
    lr_pair_session_clear(&s);
    if (claimed && lr_pair_code_check(&code, 2, NULL) != LR_EVERIFY)
        abort();
    lr_buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_msg(data, size);
    check_point(data, size);
    check_code(data, size);
    check_session(data, size);
    return 0;
}
