/*
 * pairing.c - short-code pairing in the daemon; pairing.h has the contract.
 *
 * One timer (PAIRING_TICK_MS) runs while anything is pending: it ends an
 * expired code, retries the nameplate search of a joiner, and closes a
 * connection whose last frame has been acknowledged (closing at once would
 * drop a PAIR_RESULT still queued, and the peer must hear why it failed).
 */
#include "daemon/pairing.h"

#include "daemon/daemon_int.h"
#include "daemon/disc.h"

#include "config/ops.h"
#include "pair/code.h"
#include "pair/msg.h"
#include "pair/session.h"
#include "util/log.h"
#include "util/rd.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MOD "pair"
#define PAIRING_TICK_MS 100
/* Pairing-stream bytes buffered per connection at most (a few small frames). */
#define RX_MAX 2048
/* Follow-up frames after PAIR_RESULT(ok) (pairing.h). */
#define MSG_SHARE 0x10
#define MSG_SHARED 0x11
#define SHARED_OK 0
#define SHARED_NONE 1
#define SHARED_NOFOLDER 2
/*
 * A holder without a live code does not offer the pairing ALPN: the dial
 * ends with TLS alert no_application_protocol (120), QUIC error 0x100 + 120.
 */
#define NO_ALPN_ALERT "transport error 0x178"
#define NOT_ACCEPTING                                                                              \
    "the device announcing that code is not accepting pairing (the code expired or was "           \
    "used; run `pair --code` there again)"
/* A code nobody waits for (pair.wait) after this long ends: `pair --code`
 * sends pair.wait with pair.code, so only a client gone before its reply
 * (or one not following docs/api.md) leaves a code unwatched, and nobody
 * would see which device pairs with it. */
#define UNWATCHED_MAX_MS 5000
/* Give up waiting for the peer to acknowledge our last bytes after this long. */
#define FLUSH_MAX_MS 2000

enum pc_phase {
    PC_SESSION, /* running the CPace exchange */
    PC_SHARE,   /* paired: holder waits for PAIR_SHARE, joiner for PAIR_SHARED */
    PC_FLUSH,   /* done: close once our bytes are acknowledged */
};

struct pconn {
    struct pconn *next;
    struct lr_conn *c;
    enum lr_pair_role role;
    enum pc_phase phase;
    bool started, paired;
    struct lr_pair_session s;
    uint8_t rx[RX_MAX];
    size_t rxn;
    uint64_t flush_since;
    struct lr_api_req *req;   /* joiner: pair.join, answered once */
    struct lr_pair_code code; /* joiner: the typed code */
    char folder[LR_FOLDER_ID_MAX + 1];
    char shared_folder[LR_FOLDER_ID_MAX + 1]; /* holder: the folder shared, or "" */
};

/* A pair.join looking for its holder (req != NULL while it looks). */
struct joinreq {
    struct lr_api_req *req;
    struct lr_pair_code code;
    char folder[LR_FOLDER_ID_MAX + 1];
    uint64_t deadline; /* of the search */
    uint64_t give_up;  /* no new dial after this (the CLI waits 60 s) */
    struct disc_match m;
    size_t next_addr;
    bool refused; /* a dial was refused at the handshake (no common ALPN) */
};

struct pairing_state {
    uv_timer_t *timer; /* heap: freed in its close callback */
    bool live;         /* a code is live */
    struct lr_pair_code code;
    uint64_t expires;
    uint64_t made;             /* now_ms() when the live code was made */
    struct lr_api_req *waiter; /* pair.wait */
    json_t *outcome;           /* how the last code ended (for a late pair.wait) */
    int outcome_exit;
    struct joinreq join;
    struct pconn *conns;
    size_t nconns;
};

static void tick(uv_timer_t *h);

/* ---- helpers ---- */

/* Monotonic ms, offset so that "now minus a TTL" never goes below 0. */
static uint64_t now_ms(struct lr_daemon *d)
{
    return uv_now(&d->loop) + LR_PAIR_CODE_TTL_MS;
}

static struct pairing_state *st(struct lr_daemon *d)
{
    if (!d->pairing)
        d->pairing = lr_xcalloc(1, sizeof(*d->pairing));
    return d->pairing;
}

static void arm(struct lr_daemon *d)
{
    struct pairing_state *p = st(d);
    if (d->stopping)
        return;
    if (!p->timer) {
        p->timer = lr_xcalloc(1, sizeof(*p->timer));
        uv_timer_init(&d->loop, p->timer);
        p->timer->data = d;
    }
    if (!uv_is_active((uv_handle_t *)p->timer))
        uv_timer_start(p->timer, tick, PAIRING_TICK_MS, PAIRING_TICK_MS);
}

/* Apply one config op as the control API would (m_config): copy, apply, save, swap. */
static int config_op(struct lr_daemon *d, const char *method, json_t *params, struct lr_err *err)
{
    struct lr_config *next = NULL;
    json_t *result = NULL;
    int rc = lr_config_load(d->opts->home, &next, err);
    if (rc == 0)
        rc = lr_config_apply(next, method, params, &result, err);
    if (rc == 0)
        rc = lr_config_save(next, err);
    if (rc < 0) {
        lr_config_free(next);
        json_decref(result);
        return rc;
    }
    lr_config_free(d->cfg);
    d->cfg = next;
    lr_info(MOD, "configuration changed: %s", method);
    daemon_event(d, json_pack("{s:s, s:s, s:o}", "type", "config_changed", "change", method,
                              "details", result ? result : json_object()));
    daemon_config_changed(d);
    return 0;
}

static int add_peer(struct lr_daemon *d, const struct lr_device_id *id, const char *name,
                    struct lr_err *err)
{
    char ids[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(id, ids);
    /* A name the user gave a known peer stays: pairing again only fills an empty one. */
    const struct lr_peer_cfg *known = lr_config_find_peer(d->cfg, id);
    json_t *params = known && known->name[0] ? json_pack("{s:s}", "id", ids)
                                             : json_pack("{s:s, s:s}", "id", ids, "name", name);
    int rc = config_op(d, "peer.add", params, err);
    json_decref(params);
    return rc;
}

static int share_folder(struct lr_daemon *d, const char *folder, const struct lr_device_id *id,
                        struct lr_err *err)
{
    char ids[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(id, ids);
    struct lr_folder_cfg *f = lr_config_find_folder(d->cfg, folder);
    if (f && lr_folder_shared_with(f, id))
        return 0;
    json_t *params = json_pack("{s:s, s:s}", "id", folder, "device", ids);
    int rc = config_op(d, "folder.share", params, err);
    json_decref(params);
    return rc;
}

static struct pconn *pc_find(struct pairing_state *p, const struct lr_conn *c)
{
    for (struct pconn *pc = p->conns; pc; pc = pc->next)
        if (pc->c == c)
            return pc;
    return NULL;
}

static void pc_flush_close(struct lr_daemon *d, struct pconn *pc)
{
    pc->phase = PC_FLUSH;
    pc->flush_since = now_ms(d);
    arm(d);
}

static void send_buf(struct pconn *pc, struct lr_buf *b)
{
    if (b->len > 0 && lr_buf_ok(b))
        (void)lr_conn_pair_send(pc->c, b->data, b->len);
    lr_buf_reset(b);
}

/* ---- the holder's code ---- */

/* The live code ended: withdraw it and tell pair.wait (outcome stolen). */
static void code_end(struct lr_daemon *d, json_t *outcome, int exit_code)
{
    struct pairing_state *p = st(d);
    if (!p->live) {
        json_decref(outcome);
        return;
    }
    p->live = false;
    /*
     * Sessions still running borrow p->code: end them now (burning this
     * code), so none can later mark a newer code in the same place.
     */
    for (struct pconn *pc = p->conns; pc; pc = pc->next) {
        if (pc->role != LR_PAIR_HOLDER || pc->phase != PC_SESSION || !pc->started ||
            pc->s.state == LR_PAIR_S_DONE || pc->s.state == LR_PAIR_S_FAILED)
            continue;
        lr_pair_session_abort(&pc->s);
        pc_flush_close(d, pc);
    }
    lr_pair_code_wipe(&p->code);
    if (d->tr)
        lr_transport_pair_listen(d->tr, false);
    (void)disc_set_nameplate(d, -1);
    json_decref(p->outcome);
    p->outcome = outcome;
    p->outcome_exit = exit_code;
    if (p->waiter) {
        struct lr_api_req *w = p->waiter;
        p->waiter = NULL;
        json_t *o = p->outcome;
        if (exit_code == 0)
            lr_api_reply(w, json_incref(o));
        else
            lr_api_reply_error(w, "pair_failed", exit_code, "%s",
                               json_string_value(json_object_get(o, "error")));
    }
}

static void code_fail(struct lr_daemon *d, const char *msg)
{
    lr_warn(MOD, "pairing code ended: %s", msg);
    code_end(d, json_pack("{s:s, s:s}", "status", "failed", "error", msg), 1);
}

/* The live code's one attempt is taken (claimed, used or failed). */
static bool code_spent(struct lr_daemon *d)
{
    struct pairing_state *p = st(d);
    return p->live && (p->code.claimed || p->code.used || p->code.failed);
}

/* ---- a session's messages ---- */

static void joiner_reply_ok(struct lr_daemon *d, struct pconn *pc, int shared)
{
    (void)d;
    if (!pc->req)
        return;
    char ids[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&pc->s.peer_id, ids);
    json_t *res =
        json_pack("{s:s, s:s, s:s}", "status", "paired", "peer", ids, "name", pc->s.peer_name);
    if (pc->folder[0]) {
        json_object_set_new(res, "folder", json_string(pc->folder));
        json_object_set_new(res, "folder_shared_by_peer", json_boolean(shared == SHARED_OK));
    }
    lr_api_reply(pc->req, res);
    pc->req = NULL;
}

static void joiner_reply_err(struct pconn *pc, const char *prefix, const char *msg)
{
    if (!pc->req)
        return;
    /* The pair module's messages name their origin; the prefix says it
     * already ("pairing failed: pairing: wrong code" read twice). */
    if (strncmp(msg, "pairing: ", 9) == 0)
        msg += 9;
    lr_api_reply_error(pc->req, "pair_failed", 1, "%s%s", prefix, msg);
    pc->req = NULL;
}

/* The session returned 1 (paired) or < 0 (failed). */
static void session_end(struct lr_daemon *d, struct pconn *pc, int rc, const struct lr_err *err)
{
    char ids[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(&pc->s.peer_id, ids);
    if (rc < 0) {
        const char *why = lr_err_msg(err, rc);
        lr_warn(MOD, "pairing with %s failed: %s", ids, why);
        if (pc->role == LR_PAIR_HOLDER) {
            /* Only the attempt that claimed the code ends it. An unknown
             * nameplate or version leaves it unclaimed and usable; a second
             * joiner refused because the code is taken or used must not
             * end the attempt in progress, nor replace a success already
             * reached ("already used" was what the holder printed). */
            if (pc->s.was_claimer && code_spent(d))
                code_fail(d, why);
        } else {
            joiner_reply_err(pc, "pairing failed: ", why);
        }
        pc_flush_close(d, pc);
        return;
    }
    pc->paired = true;
    struct lr_err e = {0};
    int arc = add_peer(d, &pc->s.peer_id, pc->s.peer_name, &e);
    if (arc < 0) {
        lr_warn(MOD, "paired with %s but cannot add it: %s", ids, lr_err_msg(&e, arc));
        if (pc->role == LR_PAIR_HOLDER)
            code_fail(d, "paired, but adding the peer failed");
        else
            joiner_reply_err(pc, "paired, but adding the peer failed: ", lr_err_msg(&e, arc));
        pc_flush_close(d, pc);
        return;
    }
    lr_info(MOD, "paired with peer=%s name=\"%s\"", ids, pc->s.peer_name);
    pc->phase = PC_SHARE;
    if (pc->role == LR_PAIR_JOINER) {
        if (pc->folder[0]) {
            int src = share_folder(d, pc->folder, &pc->s.peer_id, &e);
            if (src < 0)
                lr_warn(MOD, "cannot share folder %s: %s", pc->folder, lr_err_msg(&e, src));
        }
        struct lr_buf b;
        lr_buf_init(&b, 16 + LR_FOLDER_ID_MAX);
        lr_buf_put_varint(&b, MSG_SHARE);
        lr_buf_put_varint(&b, strlen(pc->folder));
        lr_buf_put(&b, pc->folder, strlen(pc->folder));
        send_buf(pc, &b);
        lr_buf_release(&b);
    }
}

/* Holder: PAIR_SHARE arrived (payload = folder ID or empty). */
static void on_share(struct lr_daemon *d, struct pconn *pc, const uint8_t *v, size_t n)
{
    int status = SHARED_NONE;
    if (n > 0) {
        char folder[LR_FOLDER_ID_MAX + 1];
        memcpy(folder, v, n);
        folder[n] = 0;
        status = SHARED_NOFOLDER;
        if (memchr(v, 0, n) == NULL && lr_config_find_folder(d->cfg, folder)) {
            struct lr_err e = {0};
            int rc = share_folder(d, folder, &pc->s.peer_id, &e);
            if (rc == 0) {
                status = SHARED_OK;
                snprintf(pc->shared_folder, sizeof(pc->shared_folder), "%s", folder);
            } else {
                lr_warn(MOD, "cannot share folder: %s", lr_err_msg(&e, rc));
            }
        } else {
            char *esc = lr_esc((const char *)v, n);
            lr_warn(MOD, "the joiner asked for folder \"%s\", which is not here", esc);
            free(esc);
        }
    }
    struct lr_buf b;
    lr_buf_init(&b, 16);
    lr_buf_put_varint(&b, MSG_SHARED);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_varint(&b, (uint64_t)status);
    send_buf(pc, &b);
    lr_buf_release(&b);
}

static void holder_paired_outcome(struct lr_daemon *d, struct pconn *pc)
{
    char ids[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&pc->s.peer_id, ids);
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "status", "paired", "peer", ids, "name", pc->s.peer_name);
    if (pc->shared_folder[0])
        json_object_set_new(o, "folder", json_string(pc->shared_folder));
    code_end(d, o, 0);
}

/*
 * One follow-up frame (PC_SHARE). Returns the bytes used, 0 if more are
 * needed, < 0 if malformed.
 */
static int followup(struct lr_daemon *d, struct pconn *pc)
{
    struct lr_rd r;
    uint64_t type, len;
    lr_rd_init(&r, pc->rx, pc->rxn);
    if (lr_rd_get_varint(&r, &type) < 0 || lr_rd_get_varint(&r, &len) < 0)
        return pc->rxn > 16 ? LR_EPROTO : 0;
    if (len > LR_FOLDER_ID_MAX)
        return LR_ETOOBIG;
    if (lr_rd_left(&r) < len)
        return 0;
    const uint8_t *v = pc->rx + (pc->rxn - lr_rd_left(&r));
    size_t used = (pc->rxn - lr_rd_left(&r)) + (size_t)len;
    if (pc->role == LR_PAIR_HOLDER && type == MSG_SHARE) {
        on_share(d, pc, v, (size_t)len);
        holder_paired_outcome(d, pc);
        pc_flush_close(d, pc);
        return (int)used;
    }
    if (pc->role == LR_PAIR_JOINER && type == MSG_SHARED) {
        struct lr_rd sr;
        uint64_t status = 0;
        lr_rd_init(&sr, v, (size_t)len);
        if (lr_rd_get_varint(&sr, &status) < 0)
            return LR_EPROTO;
        if (pc->folder[0] && status != SHARED_OK)
            lr_warn(MOD, "the other device has no folder \"%s\" to share", pc->folder);
        joiner_reply_ok(d, pc, (int)status);
        pc_flush_close(d, pc);
        return (int)used;
    }
    return LR_EPROTO;
}

static void pc_process(struct lr_daemon *d, struct pconn *pc)
{
    while (pc->rxn > 0 && pc->phase != PC_FLUSH) {
        int used;
        if (pc->phase == PC_SHARE) {
            used = followup(d, pc);
            if (used < 0) {
                lr_conn_close_app(pc->c, LR_TRANSPORT_APP_PROTO, "bad pairing follow-up");
                return;
            }
        } else {
            struct lr_pair_msg m;
            struct lr_err err = {0};
            used = lr_pair_msg_decode(pc->rx, pc->rxn, &m, &err);
            if (used < 0) {
                /* Treat as a protocol error inside the session: burns a claimed code. */
                lr_pair_session_abort(&pc->s);
                session_end(d, pc, used, &err);
                return;
            }
            if (used > 0) {
                struct lr_buf out;
                lr_buf_init(&out, 4 * LR_PAIR_FRAME_MAX);
                int rc = lr_pair_session_on_msg(&pc->s, &m, now_ms(d), &out, &err);
                send_buf(pc, &out);
                lr_buf_release(&out);
                if (rc != 0)
                    session_end(d, pc, rc, &err);
            }
        }
        if (used == 0)
            return;
        memmove(pc->rx, pc->rx + used, pc->rxn - (size_t)used);
        pc->rxn -= (size_t)used;
    }
}

/* ---- transport callbacks ---- */

static void cb_up(void *ud, struct lr_conn *c, const struct lr_device_id *peer, bool outgoing)
{
    struct lr_daemon *d = ud;
    struct pairing_state *p = st(d);
    struct pconn *pc = pc_find(p, c);
    if (!outgoing) {
        if (!p->live || p->nconns >= PAIRING_MAX_CONNS) {
            lr_conn_close(c, p->live ? "too many pairing connections" : "no pairing code");
            return;
        }
        pc = lr_xcalloc(1, sizeof(*pc));
        pc->c = c;
        pc->role = LR_PAIR_HOLDER;
        pc->next = p->conns;
        p->conns = pc;
        p->nconns++;
    }
    if (!pc)
        return;
    struct lr_pair_session_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.role = pc->role;
    cfg.self_id = *lr_identity_device_id(d->ident);
    cfg.self_name = d->cfg->name[0] ? d->cfg->name : "landropic";
    cfg.peer_cert_id = *peer;
    struct lr_err err = {0};
    int rc = lr_conn_export(c, LR_PAIR_EXPORTER_LABEL, cfg.exporter, LR_PAIR_EXPORTER_LEN);
    if (rc < 0) {
        lr_err_set(&err, rc, "no TLS exporter");
    } else {
        if (pc->role == LR_PAIR_JOINER)
            cfg.joiner_code = pc->code;
        else
            cfg.holder_code = &p->code;
        struct lr_buf out;
        lr_buf_init(&out, 4 * LR_PAIR_FRAME_MAX);
        rc = lr_pair_session_start(&pc->s, &cfg, now_ms(d), &out, &err);
        pc->started = rc == 0;
        send_buf(pc, &out);
        lr_buf_release(&out);
    }
    sodium_memzero(cfg.exporter, sizeof(cfg.exporter));
    sodium_memzero(&cfg.joiner_code, sizeof(cfg.joiner_code));
    if (rc < 0) {
        if (pc->role == LR_PAIR_JOINER)
            joiner_reply_err(pc, "pairing failed: ", lr_err_msg(&err, rc));
        lr_conn_close(c, "pairing set-up failed");
    }
}

static void cb_data(void *ud, struct lr_conn *c, const uint8_t *data, size_t n)
{
    struct lr_daemon *d = ud;
    struct pconn *pc = pc_find(st(d), c);
    if (!pc || !pc->started || pc->phase == PC_FLUSH)
        return;
    if (n > sizeof(pc->rx) - pc->rxn) {
        lr_pair_session_abort(&pc->s);
        struct lr_err err = {0};
        lr_err_set(&err, LR_ETOOBIG, "the peer sent too much");
        if (pc->phase == PC_SESSION)
            session_end(d, pc, LR_ETOOBIG, &err);
        lr_conn_close_app(c, LR_TRANSPORT_APP_PROTO, "too much pairing data");
        return;
    }
    memcpy(pc->rx + pc->rxn, data, n);
    pc->rxn += n;
    pc_process(d, pc);
}

static void join_try_next(struct lr_daemon *d);

static void cb_closed(void *ud, struct lr_conn *c, const char *reason)
{
    struct lr_daemon *d = ud;
    struct pairing_state *p = st(d);
    struct pconn **pp = &p->conns;
    while (*pp && (*pp)->c != c)
        pp = &(*pp)->next;
    struct pconn *pc = *pp;
    if (!pc)
        return;
    *pp = pc->next;
    p->nconns--;
    if (pc->phase == PC_SESSION) {
        if (pc->started)
            lr_pair_session_abort(&pc->s);
        if (pc->role == LR_PAIR_HOLDER) {
            if (pc->started && pc->s.was_claimer && code_spent(d)) {
                char msg[200];
                snprintf(msg, sizeof(msg), "the other device went away during pairing (%s)",
                         reason);
                code_fail(d, msg);
            }
        } else if (!pc->started && pc->req && !p->join.req) {
            /* Never came up: try the next announced address, else report. */
            p->join.req = pc->req;
            p->join.code = pc->code;
            pc->req = NULL;
            lr_info(MOD, "pairing dial failed: %s", reason);
            p->join.refused |= strstr(reason, NO_ALPN_ALERT) != NULL;
            join_try_next(d);
        } else {
            const char *why = strstr(reason, NO_ALPN_ALERT) ? NOT_ACCEPTING : reason;
            joiner_reply_err(pc, "pairing failed: ", why);
        }
    } else if (pc->phase == PC_SHARE) {
        /* Paired; the follow-up did not finish. The peers are added all the same. */
        if (pc->role == LR_PAIR_HOLDER)
            holder_paired_outcome(d, pc);
        else
            joiner_reply_ok(d, pc, SHARED_NONE);
    }
    if (pc->req)
        joiner_reply_err(pc, "pairing failed: ", reason);
    lr_pair_session_clear(&pc->s);
    lr_pair_code_wipe(&pc->code);
    free(pc);
}

struct lr_transport_pair_cbs pairing_transport_cbs(struct lr_daemon *d)
{
    /* Two names for one ALPN (transport must not depend on pair/). */
    assert(strcmp(LR_TRANSPORT_PAIR_ALPN, LR_PAIR_ALPN) == 0);
    struct lr_transport_pair_cbs cbs = {
        .ud = d,
        .on_up = cb_up,
        .on_data = cb_data,
        .on_closed = cb_closed,
    };
    return cbs;
}

/* ---- joiner: find and dial ---- */

static void join_fail(struct lr_daemon *d, const char *msg)
{
    struct pairing_state *p = st(d);
    if (p->join.req)
        lr_api_reply_error(p->join.req, "pair_failed", 1, "%s", msg);
    p->join.req = NULL;
    lr_pair_code_wipe(&p->join.code);
}

/* Dial the next address of the found device; the pconn takes the request over. */
static void join_try_next(struct lr_daemon *d)
{
    struct pairing_state *p = st(d);
    while (p->join.next_addr < p->join.m.naddrs && now_ms(d) < p->join.give_up) {
        const char *a = p->join.m.addrs[p->join.next_addr++];
        struct lr_conn *c = NULL;
        struct lr_err err = {0};
        int rc = lr_transport_pair_dial(d->tr, a, &c, &err);
        if (rc < 0) {
            lr_info(MOD, "pairing dial %s: %s", a, lr_err_msg(&err, rc));
            continue;
        }
        struct pconn *pc = lr_xcalloc(1, sizeof(*pc));
        pc->c = c;
        pc->role = LR_PAIR_JOINER;
        pc->req = p->join.req;
        pc->code = p->join.code;
        snprintf(pc->folder, sizeof(pc->folder), "%s", p->join.folder);
        p->join.req = NULL;
        lr_pair_code_wipe(&p->join.code);
        pc->next = p->conns;
        p->conns = pc;
        p->nconns++;
        return;
    }
    join_fail(d, p->join.refused ? "pairing failed: " NOT_ACCEPTING
                                 : "pairing failed: cannot reach the device announcing that code");
}

/* Look for the nameplate; true once the search is over (dialled or failed). */
static bool join_search(struct lr_daemon *d)
{
    struct pairing_state *p = st(d);
    struct disc_match m[2];
    size_t n = disc_find_nameplate(d, p->join.code.nameplate, m, 2);
    if (n == 0) {
        if (now_ms(d) < p->join.deadline)
            return false;
        /* A code that expired or was used is no longer announced: from
         * here that looks the same as a code never made. */
        join_fail(d, "no device on this network announces that code (it expired or was used, "
                     "or `pair --code` is not running there on the same network)");
        return true;
    }
    if (n > 1)
        lr_warn(MOD, "%zu devices announce nameplate %03u; trying the most recent", n,
                (unsigned)p->join.code.nameplate);
    p->join.m = m[0];
    p->join.next_addr = 0;
    p->join.refused = false;
    join_try_next(d);
    return true;
}

/* ---- timer ---- */

static void tick(uv_timer_t *h)
{
    struct lr_daemon *d = h->data;
    struct pairing_state *p = st(d);
    uint64_t now = now_ms(d);
    if (p->live) {
        struct lr_err err = {0};
        int rc = lr_pair_code_check(&p->code, now, &err);
        if (rc == LR_ETIMEOUT && !p->code.claimed) {
            lr_info(MOD, "pairing code expired");
            code_end(d,
                     json_pack("{s:s, s:s}", "status", "expired", "error",
                               "the pairing code expired; run `pair --code` again"),
                     3);
        } else if (!p->waiter && !p->code.claimed && now - p->made >= UNWATCHED_MAX_MS) {
            code_fail(d, "nobody waited for the pairing code (pair.wait)");
        }
    }
    if (p->join.req)
        (void)join_search(d);
    for (struct pconn *pc = p->conns; pc; pc = pc->next) {
        if (pc->phase != PC_FLUSH)
            continue;
        struct lr_conn_stats cs;
        lr_conn_get_stats(pc->c, &cs);
        if (cs.queued == 0 || now - pc->flush_since >= FLUSH_MAX_MS) {
            lr_conn_close(pc->c, "pairing done");
            break; /* the list may have changed */
        }
    }
    if (!p->live && !p->join.req && !p->conns)
        uv_timer_stop(h);
}

/* ---- API methods ---- */

void pairing_m_code(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    (void)params;
    struct pairing_state *p = st(d);
    struct lr_err err = {0};
    if (!d->tr) {
        lr_api_reply_error(req, "unavailable", 1, "the transport is not running");
        return;
    }
    if (p->live)
        code_fail(d, "replaced by a new code");
    struct lr_pair_code code;
    uint64_t now = now_ms(d);
    int rc = lr_pair_code_new(&code, now, &err);
    if (rc < 0) {
        lr_api_reply_rc(req, rc, &err);
        return;
    }
    uint64_t ttl = LR_PAIR_CODE_TTL_MS;
    const char *test_ttl = getenv("LANDROPIC_TEST_PAIR_TTL_MS");
    if (test_ttl && *test_ttl) {
        char *end = NULL;
        unsigned long long v = strtoull(test_ttl, &end, 10);
        if (end && *end == 0 && v > 0 && v < LR_PAIR_CODE_TTL_MS) {
            ttl = v;
            code.created_ms = now - (LR_PAIR_CODE_TTL_MS - ttl);
        }
    }
    rc = disc_set_nameplate(d, code.nameplate);
    if (rc < 0) {
        lr_pair_code_wipe(&code);
        if (rc == LR_EUNSUPPORTED)
            lr_api_reply_error(req, "unsupported", 1,
                               "pairing by code needs LAN discovery, which is off here");
        else
            lr_api_reply_rc(req, rc, NULL);
        return;
    }
    p->code = code;
    lr_pair_code_wipe(&code);
    p->live = true;
    p->made = now;
    json_decref(p->outcome);
    p->outcome = NULL;
    lr_transport_pair_listen(d->tr, true);
    arm(d);
    char text[LR_PAIR_CODE_STRLEN + 1];
    lr_pair_code_format(&p->code, text);
    lr_info(MOD, "pairing code made, nameplate %03u, valid %llu ms", (unsigned)p->code.nameplate,
            (unsigned long long)ttl);
    lr_api_reply(req, json_pack("{s:s, s:i, s:I}", "code", text, "nameplate",
                                (int)p->code.nameplate, "expires_in_ms", (json_int_t)ttl));
    sodium_memzero(text, sizeof(text));
}

/* The `pair --code` waiting for the live code went away (Ctrl-C, killed):
 * nobody would see who pairs, so the code ends unused. It stayed usable for
 * its 5 minutes and a device could pair unseen (black-box run). */
static void waiter_gone(struct lr_api_req *req, void *ud)
{
    struct lr_daemon *d = ud;
    if (d->stopping)
        return; /* every client is closed at stop; the code goes with the daemon */
    struct pairing_state *p = st(d);
    if (p->waiter != req)
        return;
    code_fail(d, "pair --code was interrupted before a device paired");
}

void pairing_m_wait(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    (void)params;
    struct pairing_state *p = st(d);
    if (p->live) {
        if (p->waiter)
            lr_api_reply_error(p->waiter, "canceled", 1, "another pair.wait took over");
        p->waiter = req;
        lr_api_req_on_gone(req, waiter_gone, d);
        return;
    }
    if (p->outcome) {
        if (p->outcome_exit == 0)
            lr_api_reply(req, json_incref(p->outcome));
        else
            lr_api_reply_error(req, "pair_failed", p->outcome_exit, "%s",
                               json_string_value(json_object_get(p->outcome, "error")));
        return;
    }
    lr_api_reply_error(req, "notfound", 1, "no pairing code is active (run `pair --code`)");
}

void pairing_m_join(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    struct pairing_state *p = st(d);
    const char *text = json_string_value(json_object_get(params, "code"));
    const char *folder = json_string_value(json_object_get(params, "folder"));
    struct lr_err err = {0};
    if (!text) {
        lr_api_reply_error(req, "bad_request", 2, "pair.join needs 'code'");
        return;
    }
    if (!d->tr) {
        lr_api_reply_error(req, "unavailable", 1, "the transport is not running");
        return;
    }
    bool joining = p->join.req != NULL;
    for (struct pconn *pc = p->conns; pc; pc = pc->next)
        joining |= pc->role == LR_PAIR_JOINER && pc->phase != PC_FLUSH;
    if (joining) {
        lr_api_reply_error(req, "busy", 1, "another pair --join is running");
        return;
    }
    struct lr_pair_code code;
    int rc = lr_pair_code_parse(text, &code, &err);
    if (rc < 0) {
        lr_api_reply_rc(req, rc, &err);
        return;
    }
    if (!disc_running(d)) {
        /* The holder is found by its announcement: say so now, not after
         * the 10 s search ("no device on this network announces that code"). */
        lr_pair_code_wipe(&code);
        lr_api_reply_error(req, "unsupported", 1,
                           "pairing by code needs LAN discovery, which is off here");
        return;
    }
    if (p->live && code.nameplate == p->code.nameplate && code.secret == p->code.secret) {
        /* Our own announcement is not heard here: the search would end
         * after 10 s with "no device on this network announces that code". */
        lr_pair_code_wipe(&code);
        lr_api_reply_error(req, "bad_request", 2,
                           "that code was made by this device (pair --code is running here); "
                           "run pair --join on the other device");
        return;
    }
    if (folder && !lr_config_find_folder(d->cfg, folder)) {
        char *e = lr_escs(folder);
        lr_api_reply_error(req, "notfound", 1, "no folder with ID '%s' here", e);
        free(e);
        lr_pair_code_wipe(&code);
        return;
    }
    p->join.code = code;
    lr_pair_code_wipe(&code);
    snprintf(p->join.folder, sizeof(p->join.folder), "%s", folder ? folder : "");
    p->join.req = req;
    p->join.deadline = now_ms(d) + PAIRING_FIND_MS;
    p->join.give_up = now_ms(d) + PAIRING_JOIN_MS;
    /* Holders answer a newly heard device with their own announcement. */
    disc_announce_now(d);
    arm(d);
}

/* ---- shutdown ---- */

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

void pairing_stop(struct lr_daemon *d)
{
    struct pairing_state *p = d->pairing;
    if (!p)
        return;
    if (p->live)
        code_fail(d, "the daemon is stopping");
    if (p->waiter) {
        lr_api_reply_error(p->waiter, "canceled", 1, "the daemon is stopping");
        p->waiter = NULL;
    }
    join_fail(d, "the daemon is stopping");
    if (p->timer) {
        uv_timer_stop(p->timer);
        uv_close((uv_handle_t *)p->timer, timer_closed);
        p->timer = NULL;
    }
}

void pairing_free(struct lr_daemon *d)
{
    struct pairing_state *p = d->pairing;
    if (!p)
        return;
    while (p->conns) {
        struct pconn *pc = p->conns;
        p->conns = pc->next;
        if (pc->req)
            lr_api_reply_error(pc->req, "canceled", 1, "the daemon is stopping");
        lr_pair_session_clear(&pc->s);
        free(pc);
    }
    json_decref(p->outcome);
    lr_pair_code_wipe(&p->code);
    free(p);
    d->pairing = NULL;
}
