/* session.c - the pairing exchange, sans I/O (flow in docs/pairing.md). */
#include "pair/session.h"

#include "proto/proto.h"
#include "util/str.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static int put_hello(struct lr_pair_session *s, struct lr_buf *out)
{
    struct lr_pair_msg m;
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_HELLO;
    m.u.hello.version = LR_PAIR_VERSION;
    m.u.hello.nameplate = s->code.nameplate;
    m.u.hello.id = s->self_id;
    memcpy(m.u.hello.name, s->self_name, sizeof(m.u.hello.name));
    return lr_pair_msg_encode(&m, out);
}

static int put_bytes_msg(enum lr_pair_msg_type type, const uint8_t *b, struct lr_buf *out)
{
    struct lr_pair_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    if (type == LR_PAIR_MSG_CPACE)
        memcpy(m.u.y, b, LR_CPACE_POINT_LEN);
    else
        memcpy(m.u.tag, b, LR_CPACE_TAG_LEN);
    return lr_pair_msg_encode(&m, out);
}

static void put_result(struct lr_buf *out, enum lr_pair_status st, const char *reason)
{
    struct lr_pair_msg m;
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_RESULT;
    m.u.result.status = st;
    size_t n = strlen(reason);
    if (n > LR_PAIR_REASON_MAX)
        n = LR_PAIR_REASON_MAX;
    memcpy(m.u.result.reason, reason, n);
    /* Best effort: a full buffer just means the peer learns less. */
    (void)lr_pair_msg_encode(&m, out);
}

/* End the attempt: wipe keys, burn a claimed code unless ok. */
static void finish(struct lr_pair_session *s, bool ok, enum lr_pair_status st)
{
    if (s->role == LR_PAIR_HOLDER && s->claimed && s->holder_code)
        lr_pair_code_finish(s->holder_code, ok);
    s->claimed = false;
    lr_cpace_clear(&s->cpace);
    sodium_memzero(s->own_tag, sizeof(s->own_tag));
    lr_pair_code_wipe(&s->code);
    s->status = st;
    s->state = ok ? LR_PAIR_S_DONE : LR_PAIR_S_FAILED;
}

/* Fail with code rc, telling the peer `st` (unless tell is false). */
static int fail(struct lr_pair_session *s, struct lr_buf *out, bool tell, enum lr_pair_status st,
                int rc)
{
    if (tell)
        put_result(out, st, lr_pair_status_str(st));
    finish(s, false, st);
    return rc;
}

static int protocol_error(struct lr_pair_session *s, struct lr_buf *out,
                          const struct lr_pair_msg *m, struct lr_err *err)
{
    fail(s, out, true, LR_PAIR_ERROR, LR_EPROTO);
    return lr_err_set(err, LR_EPROTO, "pairing: unexpected %s from the peer",
                      lr_pair_msg_type_name((uint64_t)m->type));
}

int lr_pair_session_start(struct lr_pair_session *s, const struct lr_pair_session_cfg *cfg,
                          uint64_t now_ms, struct lr_buf *out, struct lr_err *err)
{
    int rc;
    (void)now_ms;
    sodium_memzero(s, sizeof(*s));
    s->state = LR_PAIR_S_FAILED;
    s->status = LR_PAIR_ERROR;
    size_t nl = cfg->self_name ? strnlen(cfg->self_name, LR_PAIR_NAME_MAX + 1) : 0;
    if (nl == 0 || nl > LR_PAIR_NAME_MAX || !lr_proto_text_ok(cfg->self_name, nl))
        return lr_err_set(err, LR_EINTERNAL,
                          "pairing: our device name is empty, too long or "
                          "has control characters");
    if (cfg->role != LR_PAIR_JOINER && cfg->role != LR_PAIR_HOLDER)
        return lr_err_set(err, LR_EINTERNAL, "pairing: bad role %d", (int)cfg->role);
    if (cfg->role == LR_PAIR_HOLDER && !cfg->holder_code)
        return lr_err_set(err, LR_EINTERNAL, "pairing: holder without a code");
    s->role = cfg->role;
    s->self_id = cfg->self_id;
    s->peer_id = cfg->peer_cert_id;
    memcpy(s->self_name, cfg->self_name, nl);
    memcpy(s->exporter, cfg->exporter, sizeof(s->exporter));
    s->state = LR_PAIR_S_WAIT_HELLO;
    s->status = LR_PAIR_ERROR;
    if (s->role == LR_PAIR_HOLDER) {
        s->holder_code = cfg->holder_code;
        s->code.nameplate = cfg->holder_code->nameplate;
        return 0;
    }
    s->code = cfg->joiner_code;
    uint8_t ya[LR_CPACE_POINT_LEN];
    rc = lr_pair_cpace_start(&s->cpace, LR_CPACE_INITIATOR, &s->code, &s->self_id, &s->peer_id,
                             s->exporter, ya, err);
    if (rc == 0)
        rc = put_hello(s, out);
    if (rc == 0)
        rc = put_bytes_msg(LR_PAIR_MSG_CPACE, ya, out);
    if (rc < 0) {
        finish(s, false, LR_PAIR_ERROR);
        return err && err->code == rc ? rc : lr_err_set(err, rc, "pairing: cannot start");
    }
    return 0;
}

static int check_hello(struct lr_pair_session *s, const struct lr_pair_hello *h, struct lr_buf *out,
                       struct lr_err *err)
{
    if (h->version != LR_PAIR_VERSION) {
        fail(s, out, true, LR_PAIR_ERROR, LR_EUNSUPPORTED);
        return lr_err_set(err, LR_EUNSUPPORTED, "pairing: peer speaks version %u, we speak %d",
                          (unsigned)h->version, LR_PAIR_VERSION);
    }
    if (!lr_device_id_eq(&h->id, &s->peer_id)) {
        fail(s, out, true, LR_PAIR_ERROR, LR_EPROTO);
        return lr_err_set(err, LR_EPROTO,
                          "pairing: the device ID in the peer's hello is not its certificate's");
    }
    memcpy(s->peer_name, h->name, sizeof(s->peer_name));
    return 0;
}

static int holder_on_msg(struct lr_pair_session *s, const struct lr_pair_msg *m, uint64_t now_ms,
                         struct lr_buf *out, struct lr_err *err)
{
    int rc;
    uint8_t buf[LR_CPACE_POINT_LEN];
    switch (s->state) {
    case LR_PAIR_S_WAIT_HELLO:
        if (m->type != LR_PAIR_MSG_HELLO)
            return protocol_error(s, out, m, err);
        if ((rc = check_hello(s, &m->u.hello, out, err)) < 0)
            return rc;
        if (m->u.hello.nameplate != s->holder_code->nameplate) {
            fail(s, out, true, LR_PAIR_NO_CODE, LR_ENOTFOUND);
            return lr_err_set(err, LR_ENOTFOUND, "pairing: no code with nameplate %03u here",
                              (unsigned)m->u.hello.nameplate);
        }
        /* The one attempt starts now, before any CPace message is answered. */
        rc = lr_pair_code_claim(s->holder_code, now_ms, err);
        if (rc < 0)
            return fail(s, out, true, rc == LR_ETIMEOUT ? LR_PAIR_EXPIRED : LR_PAIR_USED, rc);
        s->claimed = s->was_claimer = true;
        rc = lr_pair_cpace_start(&s->cpace, LR_CPACE_RESPONDER, s->holder_code, &s->peer_id,
                                 &s->self_id, s->exporter, buf, err);
        if (rc == 0)
            rc = put_hello(s, out);
        if (rc == 0)
            rc = put_bytes_msg(LR_PAIR_MSG_CPACE, buf, out);
        if (rc < 0) {
            fail(s, out, true, LR_PAIR_ERROR, rc);
            return err && err->code == rc ? rc : lr_err_set(err, rc, "pairing: cannot answer");
        }
        s->state = LR_PAIR_S_WAIT_CPACE;
        return 0;
    case LR_PAIR_S_WAIT_CPACE:
        if (m->type != LR_PAIR_MSG_CPACE)
            return protocol_error(s, out, m, err);
        rc = lr_cpace_receive(&s->cpace, m->u.y, NULL, 0, s->own_tag, err);
        if (rc < 0)
            return fail(s, out, true, LR_PAIR_ERROR, rc);
        if ((rc = put_bytes_msg(LR_PAIR_MSG_CONFIRM, s->own_tag, out)) < 0) {
            fail(s, out, false, LR_PAIR_ERROR, rc);
            return lr_err_set(err, rc, "pairing: output buffer full");
        }
        s->state = LR_PAIR_S_WAIT_CONFIRM;
        return 0;
    case LR_PAIR_S_WAIT_CONFIRM:
        if (m->type != LR_PAIR_MSG_CONFIRM)
            return protocol_error(s, out, m, err);
        rc = lr_cpace_confirm(&s->cpace, m->u.tag, err);
        if (rc < 0)
            return fail(s, out, true, LR_PAIR_WRONG_CODE, rc);
        put_result(out, LR_PAIR_OK, "");
        finish(s, true, LR_PAIR_OK);
        return 1;
    default:
        return lr_err_set(err, LR_EINTERNAL, "pairing: message in state %d", (int)s->state);
    }
}

static int joiner_on_result(struct lr_pair_session *s, const struct lr_pair_result *r,
                            struct lr_err *err)
{
    char *why = lr_escs(r->reason);
    int rc;
    if (r->status == LR_PAIR_OK && s->state == LR_PAIR_S_WAIT_RESULT) {
        free(why);
        finish(s, true, LR_PAIR_OK);
        return 1;
    }
    switch (r->status) {
    case LR_PAIR_WRONG_CODE:
    case LR_PAIR_USED:
        rc = LR_EVERIFY;
        break;
    case LR_PAIR_EXPIRED:
        rc = LR_ETIMEOUT;
        break;
    case LR_PAIR_NO_CODE:
        rc = LR_ENOTFOUND;
        break;
    default:
        rc = LR_EPROTO; /* an early "ok", or an error */
        break;
    }
    finish(s, false, r->status == LR_PAIR_OK ? LR_PAIR_ERROR : r->status);
    const char *status = lr_pair_status_str(r->status == LR_PAIR_OK ? LR_PAIR_ERROR : r->status);
    /* The peer's reason often repeats the status ("code already used: code
     * already used"): once is enough. */
    bool extra = why[0] && strcmp(why, status) != 0;
    lr_err_set(err, rc, "pairing refused by the other device: %s%s%s", status, extra ? ": " : "",
               extra ? why : "");
    free(why);
    return rc;
}

static int joiner_on_msg(struct lr_pair_session *s, const struct lr_pair_msg *m, struct lr_buf *out,
                         struct lr_err *err)
{
    int rc;
    uint8_t tag[LR_CPACE_TAG_LEN];
    if (m->type == LR_PAIR_MSG_RESULT)
        return joiner_on_result(s, &m->u.result, err);
    switch (s->state) {
    case LR_PAIR_S_WAIT_HELLO:
        if (m->type != LR_PAIR_MSG_HELLO)
            return protocol_error(s, out, m, err);
        if ((rc = check_hello(s, &m->u.hello, out, err)) < 0)
            return rc;
        if (m->u.hello.nameplate != s->code.nameplate) {
            fail(s, out, true, LR_PAIR_ERROR, LR_EPROTO);
            return lr_err_set(err, LR_EPROTO,
                              "pairing: the other device answered for "
                              "nameplate %03u, not %03u",
                              (unsigned)m->u.hello.nameplate, (unsigned)s->code.nameplate);
        }
        s->state = LR_PAIR_S_WAIT_CPACE;
        return 0;
    case LR_PAIR_S_WAIT_CPACE:
        if (m->type != LR_PAIR_MSG_CPACE)
            return protocol_error(s, out, m, err);
        rc = lr_cpace_receive(&s->cpace, m->u.y, NULL, 0, s->own_tag, err);
        if (rc < 0)
            return fail(s, out, true, LR_PAIR_ERROR, rc);
        s->state = LR_PAIR_S_WAIT_CONFIRM;
        return 0;
    case LR_PAIR_S_WAIT_CONFIRM:
        if (m->type != LR_PAIR_MSG_CONFIRM)
            return protocol_error(s, out, m, err);
        rc = lr_cpace_confirm(&s->cpace, m->u.tag, err);
        if (rc < 0) {
            fail(s, out, true, LR_PAIR_WRONG_CODE, rc);
            return lr_err_set(err, LR_EVERIFY,
                              "pairing: wrong code (or a device in between); nothing was added");
        }
        memcpy(tag, s->own_tag, sizeof(tag));
        rc = put_bytes_msg(LR_PAIR_MSG_CONFIRM, tag, out);
        sodium_memzero(tag, sizeof(tag));
        if (rc < 0) {
            fail(s, out, false, LR_PAIR_ERROR, rc);
            return lr_err_set(err, rc, "pairing: output buffer full");
        }
        s->state = LR_PAIR_S_WAIT_RESULT;
        return 0;
    case LR_PAIR_S_WAIT_RESULT:
        return protocol_error(s, out, m, err);
    default:
        return lr_err_set(err, LR_EINTERNAL, "pairing: message in state %d", (int)s->state);
    }
}

int lr_pair_session_on_msg(struct lr_pair_session *s, const struct lr_pair_msg *m, uint64_t now_ms,
                           struct lr_buf *out, struct lr_err *err)
{
    if (s->state == LR_PAIR_S_NONE || s->state == LR_PAIR_S_DONE || s->state == LR_PAIR_S_FAILED)
        return lr_err_set(err, LR_EINTERNAL, "pairing: session already finished");
    if (s->role == LR_PAIR_HOLDER) {
        if (m->type == LR_PAIR_MSG_RESULT) {
            /* The joiner gave up (e.g. our tag did not verify): the attempt failed. */
            enum lr_pair_status st =
                m->u.result.status == LR_PAIR_OK ? LR_PAIR_ERROR : m->u.result.status;
            int rc = st == LR_PAIR_WRONG_CODE ? LR_EVERIFY : LR_EPROTO;
            finish(s, false, st);
            return lr_err_set(err, rc, "pairing: the joining device reports: %s",
                              lr_pair_status_str(st));
        }
        return holder_on_msg(s, m, now_ms, out, err);
    }
    return joiner_on_msg(s, m, out, err);
}

void lr_pair_session_abort(struct lr_pair_session *s)
{
    if (s->state != LR_PAIR_S_DONE && s->state != LR_PAIR_S_FAILED && s->state != LR_PAIR_S_NONE)
        finish(s, false, LR_PAIR_ERROR);
}

void lr_pair_session_clear(struct lr_pair_session *s)
{
    if (!s)
        return;
    lr_pair_session_abort(s);
    sodium_memzero(s, sizeof(*s));
}
