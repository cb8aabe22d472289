/*
 * debug.c - test-only control API methods (compiled with LR_FAILPOINTS, the
 * test build): push a stream of pseudo-random bytes to a peer over the real
 * transport and report what each side sent and received, with SHA-256 of
 * each, so integration tests can prove integrity over lossy links before the
 * sync engine moves files.
 *
 *   debug.send  {"peer": ID, "bytes": N, "seed": S}  start sending (replies at once)
 *   debug.state {"peer": ID}  -> {"sent", "sent_sha256", "send_done",
 *                                 "received", "received_sha256"}
 */
#include "daemon/daemon_int.h"

#ifdef LR_FAILPOINTS

#include "hash/hash.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define DEBUG_FRAME 65528 /* + 8-byte offset = 64 KiB */

struct debug_peer {
    struct lr_device_id id;
    uint64_t to_send, sent, rng;
    struct lr_hash send_digest, recv_digest; /* XOR of per-frame hashes */
    uint64_t received;
    bool sending;
    bool send_done;
    bool send_failed;     /* the connection went away mid-stream: frames were lost */
    struct lr_conn *conn; /* the connection the stream runs on */
    struct debug_peer *next;
};

static struct debug_peer *find(struct lr_daemon *d, const struct lr_device_id *id, bool create)
{
    for (struct debug_peer *p = d->debug; p; p = p->next)
        if (lr_device_id_eq(&p->id, id))
            return p;
    if (!create)
        return NULL;
    struct debug_peer *p = lr_xcalloc(1, sizeof(*p));
    p->id = *id;
    p->next = d->debug;
    d->debug = p;
    return p;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static void frame_digest(struct lr_hash *acc, const uint8_t *frame, size_t len)
{
    struct lr_hash h;
    lr_sha256(frame, len, &h);
    for (size_t i = 0; i < LR_HASH_LEN; i++)
        acc->b[i] ^= h.b[i];
}

/* Send as much as the connection's budget allows; resumes from on_writable. */
static void pump(struct lr_daemon *d, struct debug_peer *p)
{
    struct peer_rt *rt = daemon_peer(d, &p->id);
    if (!p->sending)
        return;
    if (!rt || rt->conn != p->conn) {
        /* Frames queued on a closed connection are gone; this test stream cannot resume. */
        p->sending = false;
        p->send_failed = true;
        return;
    }
    uint8_t buf[8 + DEBUG_FRAME];
    while (p->sent < p->to_send) {
        uint64_t left = p->to_send - p->sent;
        size_t n = left < DEBUG_FRAME ? (size_t)left : DEBUG_FRAME;
        uint64_t save = p->rng;
        for (int i = 0; i < 8; i++)
            buf[i] = (uint8_t)(p->sent >> (56 - 8 * i));
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = xorshift(&p->rng);
            memcpy(buf + 8 + i, &v, n - i < 8 ? n - i : 8);
        }
        int rc = lr_conn_send(rt->conn, LR_STREAM_BULK, LR_MSG_DEBUG_DATA, buf, 8 + n);
        if (rc == LR_EBUSY) {
            p->rng = save;
            return;
        }
        if (rc < 0) {
            p->rng = save;
            p->sending = false;
            return;
        }
        frame_digest(&p->send_digest, buf, 8 + n);
        p->sent += n;
    }
    p->sending = false;
    p->send_done = true;
}

void debug_on_writable(struct lr_daemon *d, struct lr_conn *c)
{
    struct debug_peer *p = find(d, lr_conn_peer(c), false);
    if (p)
        pump(d, p);
}

void debug_on_message(struct lr_daemon *d, struct lr_conn *c, const uint8_t *payload, size_t len)
{
    struct debug_peer *p = find(d, lr_conn_peer(c), true);
    if (len < 8)
        return;
    frame_digest(&p->recv_digest, payload, len);
    p->received += len - 8;
}

static int peer_param(struct lr_api_req *req, json_t *params, struct lr_device_id *id)
{
    const char *s = json_string_value(json_object_get(params, "peer"));
    struct lr_err err = {0};
    if (!s || lr_device_id_parse(s, id, &err) < 0) {
        lr_api_reply_error(req, "bad_request", 2, "debug: 'peer' must be a device ID");
        return -1;
    }
    return 0;
}

void debug_send(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    struct lr_device_id id;
    if (peer_param(req, params, &id) < 0)
        return;
    json_int_t bytes = json_integer_value(json_object_get(params, "bytes"));
    json_int_t seed = json_integer_value(json_object_get(params, "seed"));
    struct peer_rt *rt = daemon_peer(d, &id);
    if (!rt || !rt->conn) {
        lr_api_reply_error(req, "notconnected", 1, "debug: peer is not connected");
        return;
    }
    struct debug_peer *p = find(d, &id, true);
    if (p->sending || bytes <= 0) {
        lr_api_reply_error(req, "busy", 1, "debug: a send is running or bytes <= 0");
        return;
    }
    memset(&p->send_digest, 0, sizeof(p->send_digest));
    p->to_send = (uint64_t)bytes;
    p->sent = 0;
    p->rng = (uint64_t)seed | 1;
    p->sending = true;
    p->send_done = false;
    p->send_failed = false;
    p->conn = rt->conn;
    lr_api_reply(req, json_object());
    pump(d, p);
}

void debug_state(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    struct lr_device_id id;
    if (peer_param(req, params, &id) < 0)
        return;
    struct debug_peer *p = find(d, &id, true);
    char sent[LR_HASH_HEX_LEN + 1] = "", recv[LR_HASH_HEX_LEN + 1];
    if (p->send_done)
        lr_hash_hex(&p->send_digest, sent);
    lr_hash_hex(&p->recv_digest, recv);
    struct peer_rt *rt = daemon_peer(d, &id);
    if (p->sending && (!rt || rt->conn != p->conn)) {
        p->sending = false;
        p->send_failed = true;
    }
    lr_api_reply(req, json_pack("{s:I, s:s, s:b, s:b, s:I, s:s}", "sent", (json_int_t)p->sent,
                                "sent_sha256", sent, "send_done", p->send_done, "send_failed",
                                p->send_failed, "received", (json_int_t)p->received,
                                "received_sha256", recv));
}

void debug_free(struct lr_daemon *d)
{
    struct debug_peer *p = d->debug;
    while (p) {
        struct debug_peer *next = p->next;
        free(p);
        p = next;
    }
    d->debug = NULL;
}

#endif
