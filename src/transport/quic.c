/*
 * quic.c - connections, peers and the connection-ID map of a transport.
 *
 * Re-entrancy model: ngtcp2 calls our callbacks from inside read/write/
 * expiry processing, and those call the application's callbacks, which may
 * call back into this API. So: t->depth counts frames of ngtcp2 or
 * application callbacks on the stack, and c->busy marks a connection whose
 * ngtcp2_conn is inside a call. While depth > 0 nothing is written (sends
 * only queue and mark the connection dirty) and a busy connection is never
 * freed (closing it only records the request). process_dirty(), run when
 * every entry point unwinds to depth 0, carries out what was deferred.
 */
#include "transport/qmem.h"
#include "transport/transport_int.h"

#include "util/fsutil.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <inttypes.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOD "transport"

#define MS ((uint64_t)1000000)
#define STREAM_WINDOW (1u << 20)
#define CONN_WINDOW (4u << 20)
#define MAX_STREAM_WINDOW (16u << 20)
#define MAX_CONN_WINDOW (32u << 20)
#define HANDSHAKE_TIMEOUT_MS 10000
/* RTT assumed until the first sample (ngtcp2's default is 333 ms). It sets
 * when a lost first Initial is sent again: a dial to a peer that was not
 * listening yet (both daemons starting) waited about a second for its
 * retransmission, now about 30 ms, doubling; a LAN's RTT is far below it
 * and a slower path only sees an early Initial retransmission or two. */
#define INITIAL_RTT_MS 10
/* Packets read between two write passes at most (ACK while the sender is still busy). */
#define RX_ACK_EVERY 64
/* Most bytes written in one pass (one pacing burst). */
#define BURST_MAX (8u << 20)
/* Bulk bytes accepted before the peer's HELLO: the initial stream window, plus slack. */
#define PRE_HELLO_MAX (STREAM_WINDOW + 4096)

struct chunk {
    struct chunk *next;
    uint8_t *data;
    size_t len;
    void (*free_fn)(void *data); /* NULL: data is ours (free) */
};

static void chunk_free(struct chunk *ch)
{
    if (ch->free_fn)
        ch->free_fn(ch->data);
    else
        free(ch->data);
    free(ch);
}

/*
 * One stream we send on. Chunks from head (oldest, not fully acknowledged)
 * to tail. Invariants: head_off <= acked-by-peer <= sent <= end; `cur` is
 * the chunk holding stream offset `sent` (NULL iff sent == end), starting
 * at cur_off.
 */
struct sstream {
    int64_t id; /* -1 until opened */
    struct chunk *head, *tail, *cur;
    uint64_t head_off, cur_off, sent, end;
};

/* One stream we receive on. */
struct rstream {
    bool used;
    int64_t id;
    struct lr_frame_reader rd;
    struct lr_buf pre; /* bulk bytes that arrived before the peer's HELLO */
};

enum conn_state {
    CS_HANDSHAKE, /* QUIC/TLS handshake running */
    CS_HELLO,     /* handshake confirmed, waiting for the peer's HELLO */
    CS_UP,        /* reported through on_connected */
    CS_PAIR,      /* pairing connection, reported through pair_cbs.on_up */
    CS_DEAD,      /* freed, waiting for its timer handle to close */
};

struct lr_conn {
    struct lr_transport *t;
    struct lr_conn *next, *prev;
    /* The frame on_message is being called with (lr_conn_take_payload). */
    struct rstream *dlv_rs;
    const uint8_t *dlv_p;
    struct lr__sock *sock;
    ngtcp2_conn *qc;
    struct lr_qmem qmem; /* every block qc allocates (freed after it) */
    gnutls_session_t tls;
    ngtcp2_crypto_conn_ref ref;
    uv_timer_t timer;
    enum conn_state state;
    bool is_client;
    bool id_known;   /* peer certificate accepted: `peer` is authenticated */
    bool refused;    /* peer certificate presented and refused */
    int alert;       /* the TLS alert the peer ended our handshake with, -1: none */
    bool counted_hs; /* counted in t->nhandshaking */
    bool got_hello;
    bool pair;       /* a pairing connection (dialled as one, or pairing ALPN accepted) */
    bool pair_known; /* the owner knows it: on_closed is due */
    bool reset_recv;
    bool dirty;
    bool want_writable, writable_due;
    bool close_req, kill_req, close_silent;
    uint64_t path_down_since; /* ns of the first send failing for want of a route (0: none) */
    char path_close[96];      /* path_gone's verdict, acted on from the timer (not inside a send) */
    int path_err;             /* the last batch's path error (lr__path_error), 0: none */
    int busy;
    ngtcp2_connection_close_error ccerr;
    char reason[160];
    struct lr_device_id peer; /* expected (client) or presented (server) */
    uint64_t start_ns, up_ns, hs_ns, hello_deadline;
    char addr[64];
    struct sstream ss[LR__NSLOTS];
    struct rstream rs[LR__NSLOTS];
    unsigned rr;
    unsigned rx_since_write;
    size_t queued;
    uint64_t acked;                       /* stream bytes the peer acknowledged, ever */
    uint64_t probe_deadline, probe_acked; /* lr_conn_probe (0: none running) */
    uint64_t payload_sent, payload_recv, stream_recv;
    uint64_t last_rx_ns; /* the last packet ngtcp2 accepted */
    /* When our stream data last made progress: some of it was acknowledged,
     * or it went in flight with none outstanding (send_stalled). */
    uint64_t progress_ns;
    /* GSO batch being built or waiting for the socket (tx_pending). */
    uint8_t *tx; /* LR__GSO_MAX_BYTES + pkt_max */
    size_t tx_len, tx_off, tx_seg;
    size_t pkt_max; /* LR__PKT_MAX, or LR__PKT_MAX_HOST to a peer on this host */
    bool tx_pending;
    ngtcp2_path_storage tx_ps;
};

struct lr__peer {
    struct lr__peer *next;
    struct lr_transport *t;
    struct lr_device_id id;
    struct lr__addr addrs[LR_TRANSPORT_MAX_ADDRS];
    size_t naddrs, next_addr;
    struct lr_backoff bo;
    uv_timer_t *timer; /* heap: outlives the peer until its close callback */
    /* Our dial was refused by a TLS alert and the log said so: said once
     * until a connection is up again (dials repeat with backoff). */
    bool told_refused;
};

struct cident {
    ngtcp2_cid cid;
    struct lr_conn *c;
};

struct refusal {
    bool used;
    struct lr_device_id id;
    uint64_t ts;
};

struct lr_transport {
    uv_loop_t *loop;
    struct lr_transport_cbs cbs;
    struct lr_transport_pair_cbs pair_cbs;
    bool pair_listen;
    uint64_t pair_timeout_ns;
    struct lr_proto_hello hello;
    uint64_t idle_ns, keepalive_ns, hello_timeout_ms;
    uint64_t stall_ns; /* send_stalled */
    uint32_t dial_defer_ms;
    size_t budget;
    bool no_host_jumbo;
#ifdef LR_FAILPOINTS
    bool fp_mute_hello;
#endif
    uint32_t bo_min, bo_max;
    uint64_t (*rng)(void *ud);
    void *rng_ud;
    struct lr__tls tls;
    uint8_t secret[32];
    struct lr__sock socks[LR_TRANSPORT_MAX_LISTEN];
    size_t nsocks;
    uv_timer_t *path_timer; /* PATH_CHECK_MS: connections whose source address left us */
    struct lr_conn *conns;
    size_t nconns, nhandshaking;
    struct cident *cids;
    size_t ncids, capcids;
    struct lr__peer *peers;
    struct refusal refused[LR__REFUSE_SLOTS];
    uint64_t reset_window, resets_sent, eagain, conns_made;
    unsigned reset_count;
    int depth;
    bool in_dirty;
    bool closing;
    unsigned handles;
    void (*done)(void *ud);
    void *done_ud;
};

static void conn_write(struct lr_conn *c);
static void conn_read(struct lr_conn *c, const ngtcp2_path *path, const uint8_t *pkt, size_t len);
static void timer_cb(uv_timer_t *h);
static void poll_cb(uv_poll_t *h, int status, int events);
static void handle_dec(struct lr_transport *t);
static void conn_free(struct lr_conn *c, const char *reason);
static void process_dirty(struct lr_transport *t);
static void peer_schedule(struct lr__peer *p);

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void id_short(const struct lr_device_id *id, char *out)
{
    lr_device_id_short(id, out);
}

/* ---- connection-ID map (few entries per peer, so a flat array) ---- */

static void cid_add(struct lr_transport *t, const ngtcp2_cid *cid, struct lr_conn *c)
{
    if (t->ncids == t->capcids) {
        t->capcids = t->capcids ? t->capcids * 2 : 16;
        t->cids = lr_xreallocarray(t->cids, t->capcids, sizeof(*t->cids));
    }
    t->cids[t->ncids].cid = *cid;
    t->cids[t->ncids].c = c;
    t->ncids++;
}

static struct lr_conn *cid_find(struct lr_transport *t, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < t->ncids; i++)
        if (t->cids[i].cid.datalen == n && memcmp(t->cids[i].cid.data, p, n) == 0)
            return t->cids[i].c;
    return NULL;
}

static void cid_remove(struct lr_transport *t, const ngtcp2_cid *cid)
{
    for (size_t i = 0; i < t->ncids; i++)
        if (ngtcp2_cid_eq(&t->cids[i].cid, cid)) {
            t->cids[i] = t->cids[--t->ncids];
            return;
        }
}

static void cid_remove_conn(struct lr_transport *t, const struct lr_conn *c)
{
    for (size_t i = 0; i < t->ncids;)
        if (t->cids[i].c == c)
            t->cids[i] = t->cids[--t->ncids];
        else
            i++;
}

/* ---- helpers ---- */

static struct lr__peer *peer_find(struct lr_transport *t, const struct lr_device_id *id)
{
    for (struct lr__peer *p = t->peers; p; p = p->next)
        if (lr_device_id_eq(&p->id, id))
            return p;
    return NULL;
}

static bool conn_live(const struct lr_conn *c)
{
    return c->state != CS_DEAD && !c->close_req && !c->kill_req;
}

/* A live connection that is, or is becoming, a connection with `id` (excluding `except`). */
static bool peer_has_conn(struct lr_transport *t, const struct lr_device_id *id,
                          const struct lr_conn *except)
{
    for (struct lr_conn *c = t->conns; c; c = c->next)
        if (c != except && conn_live(c) && !c->pair && (c->id_known || c->is_client) &&
            lr_device_id_eq(&c->peer, id))
            return true;
    return false;
}

static void hs_done(struct lr_conn *c)
{
    if (c->counted_hs) {
        c->counted_hs = false;
        c->t->nhandshaking--;
    }
}

static void set_reason(struct lr_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_reason(struct lr_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
}

/* Record a protocol violation; the connection closes once processing unwinds. */
static int proto_fail(struct lr_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int proto_fail(struct lr_conn *c, const char *fmt, ...)
{
    va_list ap;
    if (!c->close_req) {
        va_start(ap, fmt);
        vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
        va_end(ap);
        ngtcp2_connection_close_error_set_application_error(&c->ccerr, LR_TRANSPORT_APP_PROTO, NULL,
                                                            0);
        c->close_req = true;
        c->dirty = true;
    }
    return NGTCP2_ERR_CALLBACK_FAILURE;
}

/* Ask for `c` to be closed with an application error; immediate unless c is busy. */
static void conn_close_app(struct lr_conn *c, uint64_t app, const char *reason, bool silent);

static void sock_update_events(struct lr__sock *s)
{
    int want = UV_READABLE;
    for (struct lr_conn *c = s->t->conns; c; c = c->next)
        if (c->sock == s && c->tx_pending)
            want |= UV_WRITABLE;
    if (want != s->events && !s->t->closing) {
        s->events = want;
        uv_poll_start(&s->poll, want, poll_cb);
    }
}

/* ---- sending ---- */

static int send_batch(struct lr_conn *c, size_t len, size_t seg)
{
    size_t done = 0;
    int rc = lr__sock_send(c->sock, &c->tx_ps.path, c->tx, len, seg, &done);
    if (rc == -EMSGSIZE) {
        /* Over the path's MTU (a tunnel, a 1280 link): ngtcp2 0.12 builds
         * 1452-byte packets from the start and never learns otherwise (a
         * lost probe only stops the probing), so the data, resent at that
         * size, never got through while both sides showed the peer
         * connected. From now on the connection sends 1200-byte packets,
         * which every QUIC path carries (RFC 9000 §14). */
        if (c->pkt_max > NGTCP2_MAX_UDP_PAYLOAD_SIZE) {
            lr_info(MOD, "connection to %s: %zu-byte packets are over the path MTU, using %d",
                    c->addr, seg, NGTCP2_MAX_UDP_PAYLOAD_SIZE);
            c->pkt_max = NGTCP2_MAX_UDP_PAYLOAD_SIZE;
        }
        rc = 0;
    }
    c->path_err = rc < 0 && rc != -EAGAIN ? rc : 0;
    if (rc == -EAGAIN) {
        c->t->eagain++;
        c->tx_pending = true;
        c->tx_len = len;
        c->tx_off = done;
        c->tx_seg = seg;
        sock_update_events(c->sock);
    }
    return rc;
}

static int flush_pending(struct lr_conn *c)
{
    size_t done = 0;
    int rc = lr__sock_send(c->sock, &c->tx_ps.path, c->tx + c->tx_off, c->tx_len - c->tx_off,
                           c->tx_seg, &done);
    c->tx_off += done;
    if (rc == -EAGAIN)
        return rc;
    c->tx_pending = false;
    return 0;
}

static void sstream_free(struct sstream *ss)
{
    struct chunk *ch = ss->head;
    while (ch) {
        struct chunk *n = ch->next;
        chunk_free(ch);
        ch = n;
    }
    ss->head = ss->tail = ss->cur = NULL;
}

static size_t build_vec(const struct sstream *ss, ngtcp2_vec *vec, size_t max)
{
    size_t n = 0, off = (size_t)(ss->sent - ss->cur_off);
    for (const struct chunk *ch = ss->cur; ch && n < max; ch = ch->next) {
        vec[n].base = ch->data + off;
        vec[n].len = ch->len - off;
        off = 0;
        n++;
    }
    return n;
}

static void advance(struct sstream *ss, size_t k)
{
    ss->sent += k;
    assert(ss->sent <= ss->end);
    while (ss->cur && ss->sent >= ss->cur_off + ss->cur->len) {
        ss->cur_off += ss->cur->len;
        ss->cur = ss->cur->next;
    }
}

static int pick_slot(struct lr_conn *c, unsigned blocked)
{
    for (unsigned i = 0; i < LR__NSLOTS; i++) {
        unsigned s = (c->rr + i) % LR__NSLOTS;
        const struct sstream *ss = &c->ss[s];
        if (ss->id >= 0 && ss->sent < ss->end && !(blocked & (1u << s)))
            return (int)s;
    }
    return -1;
}

static void arm_timer(struct lr_conn *c)
{
    if (c->state == CS_DEAD)
        return;
    if (c->path_close[0]) { /* to be closed (path_gone): from the timer, now */
        uv_timer_start(&c->timer, timer_cb, 0, 0);
        return;
    }
    uint64_t exp = ngtcp2_conn_get_expiry(c->qc);
    if (c->state == CS_HELLO && c->hello_deadline < exp)
        exp = c->hello_deadline;
    if (c->pair && c->start_ns + c->t->pair_timeout_ns < exp)
        exp = c->start_ns + c->t->pair_timeout_ns;
    if (exp == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t ts = now_ns();
    uint64_t ms = exp <= ts ? 0 : (exp - ts + MS - 1) / MS;
    /* uv timers count from the cached loop time; refresh it so the deadline is not early. */
    uv_update_time(c->t->loop);
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

static void conn_close_err(struct lr_conn *c, int liberr)
{
    ngtcp2_connection_close_error_set_transport_error_liberr(&c->ccerr, liberr, NULL, 0);
    set_reason(c, "QUIC error: %s", ngtcp2_strerror(liberr));
    c->close_req = true;
    c->dirty = true;
}

/* How long sends may fail for want of a route before the connection is
 * given up (a moment without a network is survived). */
#define PATH_DOWN_GRACE_NS (5000 * MS)

/*
 * Whether the last writes showed the path unusable, and the connection was
 * closed for it: our source address is gone (the device moved to another
 * address), or there has been no route for PATH_DOWN_GRACE_NS. Without this
 * the connection kept "sending" into the void until the idle timeout while
 * both sides reported it connected; closed, it is dialled again at once.
 */
static bool path_gone(struct lr_conn *c, ngtcp2_tstamp now)
{
    int kind = lr__path_error(c->path_err);
    if (kind == LR__PATH_OK) {
        c->path_down_since = 0;
        return false;
    }
    /* No route from an address we no longer have: it will not come back. */
    if (kind == LR__PATH_DOWN && lr__addr_gone((const struct sockaddr *)c->tx_ps.path.local.addr))
        kind = LR__PATH_GONE;
    if (kind == LR__PATH_DOWN) {
        if (!c->path_down_since)
            c->path_down_since = now;
        if (now - c->path_down_since < PATH_DOWN_GRACE_NS)
            return false;
    }
    /* Closed from the connection's timer: this runs inside sends the
     * application makes, and reporting the connection down from there would
     * pull its send queue from under it. */
    snprintf(c->path_close, sizeof(c->path_close), "path unusable: sendmsg: %s",
             strerror(-c->path_err));
    lr_info(MOD, "connection to %s: %s", c->addr, c->path_close);
    uv_timer_start(&c->timer, timer_cb, 0, 0);
    return true;
}

/* Whether some stream data we sent awaits its acknowledgement. */
static bool in_flight(const struct lr_conn *c)
{
    for (unsigned i = 0; i < LR__NSLOTS; i++)
        if (c->ss[i].id >= 0 && c->ss[i].sent > c->ss[i].head_off)
            return true;
    return false;
}

/*
 * Write everything ngtcp2 has to send now, in GSO batches of full-size
 * packets (a shorter packet ends a batch), stopping at the send quantum so
 * pacing can work, then re-arm the timer.
 */
static void conn_write(struct lr_conn *c)
{
    struct lr_transport *t = c->t;
    if (c->state == CS_DEAD || c->close_req || c->kill_req)
        return;
    if (c->tx_pending && flush_pending(c) == -EAGAIN)
        return;

    c->rx_since_write = 0;
    ngtcp2_tstamp ts = now_ns();
    size_t pktmax = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
    if (pktmax > c->pkt_max)
        pktmax = c->pkt_max;
    size_t maxsegs = c->sock->gso ? LR__GSO_MAX_BYTES / pktmax : 1;
    if (maxsegs > LR__GSO_MAX_SEGS)
        maxsegs = LR__GSO_MAX_SEGS;
    size_t quantum = ngtcp2_conn_get_send_quantum(c->qc);
    if (quantum < pktmax)
        quantum = pktmax;
    /*
     * uv timers tick in milliseconds, so pacing at ngtcp2's 64 KiB quantum
     * would sleep a whole millisecond per quantum (about 60 MB/s). Burst
     * instead about 1 ms worth of the congestion window's rate; on a LAN
     * (RTT under 1 ms) that is the window itself.
     */
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c->qc, &cs);
    if (cs.smoothed_rtt > 0) {
        double b = (double)cs.cwnd * (double)MS / (double)cs.smoothed_rtt;
        if (b > (double)BURST_MAX)
            b = (double)BURST_MAX;
        if (b > (double)quantum)
            quantum = (size_t)b;
    }
    size_t written = 0, blen = 0, nseg = 0;
    unsigned blocked = 0;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_ssize rv = 0;
    bool stalled = false;
    bool was_in_flight = in_flight(c);

    c->busy++;
    t->depth++;
    for (;;) {
        int slot = pick_slot(c, blocked);
        ngtcp2_vec vec[16];
        size_t nvec = 0;
        int64_t sid = -1;
        if (slot >= 0) {
            sid = c->ss[slot].id;
            nvec = build_vec(&c->ss[slot], vec, 16);
        }
        ngtcp2_ssize ndatalen = -1;
        ngtcp2_pkt_info pi;
        ngtcp2_ssize n = ngtcp2_conn_writev_stream(
            c->qc, &ps.path, &pi, c->tx + blen, nseg ? pktmax : c->pkt_max, &ndatalen,
            NGTCP2_WRITE_STREAM_FLAG_MORE, sid, vec, nvec, ts);
        if (n < 0) {
            if (n == NGTCP2_ERR_WRITE_MORE) {
                advance(&c->ss[slot], (size_t)ndatalen);
                c->rr = (unsigned)slot + 1;
                continue;
            }
            if ((n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
                 n == NGTCP2_ERR_STREAM_NOT_FOUND) &&
                slot >= 0) {
                blocked |= 1u << slot;
                continue;
            }
            rv = n;
            break;
        }
        if (slot >= 0 && ndatalen > 0) {
            advance(&c->ss[slot], (size_t)ndatalen);
            c->rr = (unsigned)slot + 1;
        }
        if (n == 0)
            break;
        if (nseg == 0)
            ngtcp2_path_copy(&c->tx_ps.path, &ps.path);
        /*
         * The first packet of a batch may be a PMTUD probe, larger than the
         * path's current maximum (so it gets the room for one): it goes alone.
         * Later packets are capped at the batch's segment size.
         */
        bool probe = (size_t)n > pktmax;
        blen += (size_t)n;
        nseg++;
        written += (size_t)n;
        if (probe || (size_t)n < pktmax || nseg >= maxsegs || blen + pktmax > LR__GSO_MAX_BYTES) {
            int r = send_batch(c, blen, probe ? (size_t)n : pktmax);
            blen = nseg = 0;
            if (r == -EAGAIN) {
                stalled = true;
                break;
            }
        }
        if (written >= quantum)
            break;
    }
    c->busy--;
    t->depth--;
    if (!was_in_flight && in_flight(c))
        c->progress_ns = ts;
    if (blen > 0)
        stalled = send_batch(c, blen, pktmax) == -EAGAIN;
    (void)stalled;
    if (rv < 0) {
        conn_close_err(c, (int)rv);
        return;
    }
    if (written > 0 && !c->path_close[0] && path_gone(c, ts))
        return;
    /* Pacing before the handshake completes would delay the client's Finished (pitfall 10). */
    if (ngtcp2_conn_get_handshake_completed(c->qc))
        ngtcp2_conn_update_pkt_tx_time(c->qc, ts);
    arm_timer(c);
}

/* Queue `data` (taken over: freed with free_fn, or free() if NULL) on send slot `slot`. */
static void append_chunk(struct lr_conn *c, unsigned slot, uint8_t *data, size_t len,
                         void (*free_fn)(void *))
{
    struct sstream *ss = &c->ss[slot];
    struct chunk *ch = lr_xcalloc(1, sizeof(*ch));
    ch->data = data;
    ch->len = len;
    ch->free_fn = free_fn;
    if (ss->tail)
        ss->tail->next = ch;
    else
        ss->head = ch;
    ss->tail = ch;
    if (!ss->cur) {
        ss->cur = ch;
        ss->cur_off = ss->end;
    }
    ss->end += len;
    c->queued += len;
    c->dirty = true;
}

/* Append one frame (copied) to send slot `slot`. */
static int queue_frame(struct lr_conn *c, unsigned slot, uint64_t type, const void *payload,
                       size_t len)
{
    struct lr_buf b;
    size_t n;
    lr_buf_init(&b, len + 16);
    (void)lr_buf_reserve(&b, len + 16); /* one allocation, one copy */
    int rc = lr_proto_frame_put(&b, type, payload, len);
    if (rc < 0) {
        lr_buf_release(&b);
        return rc;
    }
    uint8_t *data = lr_buf_detach(&b, &n);
    append_chunk(c, slot, data, n, NULL);
    c->payload_sent += len;
    return 0;
}

static int send_hello(struct lr_conn *c)
{
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HELLO_MAX);
    int rc = lr_proto_hello_encode(&c->t->hello, &b);
    if (rc == 0)
        rc = queue_frame(c, 0, LR_MSG_HELLO, b.data, b.len);
    lr_buf_release(&b);
    return rc;
}

/* ---- closing ---- */

static void conn_timer_closed(uv_handle_t *h)
{
    struct lr_conn *c = h->data;
    struct lr_transport *t = c->t;
    free(c);
    handle_dec(t);
}

/* Send CONNECTION_CLOSE (c->ccerr) unless silent or pointless, then free. */
static void conn_close_now(struct lr_conn *c)
{
    if (!c->close_silent && c->qc && !ngtcp2_conn_is_in_closing_period(c->qc) &&
        !ngtcp2_conn_is_in_draining_period(c->qc)) {
        uint8_t buf[LR__PKT_MAX];
        ngtcp2_path_storage ps;
        ngtcp2_pkt_info pi;
        size_t done;
        ngtcp2_path_storage_zero(&ps);
        c->busy++;
        c->t->depth++;
        ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->qc, &ps.path, &pi, buf, sizeof(buf),
                                                            &c->ccerr, now_ns());
        c->busy--;
        c->t->depth--;
        if (n > 0)
            (void)lr__sock_send(c->sock, &ps.path, buf, (size_t)n, 0, &done);
    }
    c->close_req = false;
    conn_free(c, c->reason[0] ? c->reason : "closed");
}

static void conn_close_app(struct lr_conn *c, uint64_t app, const char *reason, bool silent)
{
    if (c->state == CS_DEAD || c->close_req || c->kill_req)
        return;
    ngtcp2_connection_close_error_set_application_error(&c->ccerr, app, NULL, 0);
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    c->close_silent = silent;
    c->close_req = true;
    c->dirty = true;
    if (!c->busy)
        conn_close_now(c);
}

/*
 * Forget `c`: report it down if it was up, unhook it everywhere, schedule
 * a redial if its peer is one we keep, release ngtcp2 and GnuTLS state;
 * the struct itself goes when its timer handle has closed.
 */
static void conn_free(struct lr_conn *c, const char *reason)
{
    struct lr_transport *t = c->t;
    if (c->state == CS_DEAD)
        return;
    if (c->busy) {
        if (!c->kill_req)
            snprintf(c->reason, sizeof(c->reason), "%s", reason);
        c->kill_req = true;
        c->dirty = true;
        return;
    }
    bool was_up = c->state == CS_UP;
    char ids[LR_DEVICE_ID_SHORTLEN + 1];
    id_short(&c->peer, ids);
    c->state = CS_DEAD;
    hs_done(c);
    if (was_up) {
        lr_info(MOD, "disconnected peer=%s addr=%s reason=\"%s\"", ids, c->addr, reason);
        if (t->cbs.on_disconnected) {
            t->depth++;
            t->cbs.on_disconnected(t->cbs.ud, c, &c->peer, reason);
            t->depth--;
        }
    } else if (c->pair) {
        lr_debug(MOD, "pairing connection with %s (%s) ended: %s", c->addr, c->id_known ? ids : "?",
                 reason);
    } else {
        struct lr__peer *p = c->is_client && c->alert >= 0 ? peer_find(t, &c->peer) : NULL;
        if (p && !p->told_refused) {
            /* The refused side heard nothing otherwise: a device that no
             * longer trusts us looked just like one that is off. */
            p->told_refused = true;
            lr_info(MOD,
                    "peer=%s addr=%s refused our handshake (TLS alert %d): it may not have "
                    "added this device, or removed it",
                    ids, c->addr, c->alert);
        } else {
            lr_debug(MOD, "connection to %s (%s) ended before it was up: %s", c->addr,
                     c->id_known || c->is_client ? ids : "?", reason);
        }
    }
    if (c->pair_known) {
        c->pair_known = false;
        if (t->pair_cbs.on_closed) {
            t->depth++;
            t->pair_cbs.on_closed(t->pair_cbs.ud, c, reason);
            t->depth--;
        }
    }
    cid_remove_conn(t, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    t->nconns--;
    if ((c->id_known || c->is_client) && !c->pair && !c->refused && !t->closing) {
        struct lr__peer *p = peer_find(t, &c->peer);
        if (p && !peer_has_conn(t, &p->id, NULL))
            peer_schedule(p);
    }
    if (c->qc)
        ngtcp2_conn_del(c->qc);
    size_t left_bytes;
    size_t left = lr_qmem_sweep(&c->qmem, &left_bytes);
    if (left)
        lr_debug(MOD, "ngtcp2 left %zu blocks (%zu bytes) behind at close; freed", left,
                 left_bytes);
    if (c->tls)
        gnutls_deinit(c->tls);
    c->qc = NULL;
    c->tls = NULL;
    for (unsigned i = 0; i < LR__NSLOTS; i++) {
        sstream_free(&c->ss[i]);
        lr_frame_reader_release(&c->rs[i].rd);
        lr_buf_release(&c->rs[i].pre);
    }
    free(c->tx);
    c->tx = NULL;
    bool pending = c->tx_pending;
    c->tx_pending = false;
    if (pending)
        sock_update_events(c->sock);
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

/* ---- peers and refusals ---- */

static void report_refusal(struct lr_transport *t, const struct lr_device_id *id, const char *addr)
{
    uint64_t ts = now_ns();
    struct refusal *slot = NULL;
    for (size_t i = 0; i < LR__REFUSE_SLOTS; i++) {
        struct refusal *r = &t->refused[i];
        if (r->used && lr_device_id_eq(&r->id, id)) {
            if (ts - r->ts < (uint64_t)LR_TRANSPORT_REFUSE_REPORT_MS * MS)
                return;
            slot = r;
            break;
        }
        if (!slot || !r->used || (slot->used && r->ts < slot->ts))
            slot = r;
    }
    slot->used = true;
    slot->id = *id;
    slot->ts = ts;
    char ids[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(id, ids);
    /* The owner's on_refused logs it with advice; without one, say it here. */
    if (!t->cbs.on_refused)
        lr_info(MOD, "refused untrusted device=%s addr=%s", ids, addr);
    if (t->cbs.on_refused) {
        t->depth++;
        t->cbs.on_refused(t->cbs.ud, id, addr);
        t->depth--;
    }
}

bool lr__conn_peer_cert(struct lr_conn *c, const struct lr_device_id *id, int alpn)
{
    struct lr_transport *t = c->t;
    /*
     * Any certificate is accepted only when both ends agreed on the pairing
     * ALPN and this end wants pairing: a sync handshake never gets here.
     */
    if (c->pair != (alpn == 2) && c->is_client) {
        set_reason(c, "unexpected ALPN");
        return false;
    }
    if (alpn == 2) {
        if (!c->is_client && !t->pair_listen) {
            c->refused = true;
            set_reason(c, "pairing is not open");
            return false;
        }
        c->pair = true;
        c->peer = *id;
        c->id_known = true;
        return true;
    }
    if (alpn != 1) {
        set_reason(c, "no ALPN");
        return false;
    }
    if (c->is_client) {
        if (!lr_device_id_eq(id, &c->peer)) {
            char want[LR_DEVICE_ID_SHORTLEN + 1], got[LR_DEVICE_ID_SHORTLEN + 1];
            id_short(&c->peer, want);
            id_short(id, got);
            lr_warn(MOD, "dial %s: peer presented device %s, expected %s", c->addr, got, want);
            set_reason(c, "wrong peer certificate");
            return false;
        }
        c->id_known = true;
        return true;
    }
    c->peer = *id;
    bool ok = false;
    if (t->cbs.is_trusted) {
        t->depth++;
        ok = t->cbs.is_trusted(t->cbs.ud, id);
        t->depth--;
    }
    if (!ok) {
        c->refused = true;
        set_reason(c, "untrusted device");
        report_refusal(t, id, c->addr);
        return false;
    }
    c->id_known = true;
    return true;
}

static uint64_t default_rng(void *ud)
{
    (void)ud;
    uint64_t v = 0;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, &v, sizeof(v));
    return v;
}

/* ---- ngtcp2 callbacks ---- */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((struct lr_conn *)ref->user_data)->qc;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, dest, len);
}

static int cb_new_cid(ngtcp2_conn *qc, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
    (void)qc;
    struct lr_conn *c = ud;
    if (gnutls_rnd(GNUTLS_RND_NONCE, cid->data, cidlen) < 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    cid->datalen = cidlen;
    if (ngtcp2_crypto_generate_stateless_reset_token(token, c->t->secret, sizeof(c->t->secret),
                                                     cid) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    cid_add(c->t, cid, c);
    return 0;
}

static int cb_remove_cid(ngtcp2_conn *qc, const ngtcp2_cid *cid, void *ud)
{
    (void)qc;
    struct lr_conn *c = ud;
    cid_remove(c->t, cid);
    return 0;
}

/* A pairing connection's handshake is done: open stream 0 (client) and report it. */
static int pair_ready(struct lr_conn *c)
{
    struct lr_transport *t = c->t;
    c->state = CS_PAIR;
    if (c->is_client) {
        int64_t sid;
        int rv = ngtcp2_conn_open_bidi_stream(c->qc, &sid, NULL);
        if (rv != 0 || sid != 0) {
            set_reason(c, "cannot open the pairing stream");
            return NGTCP2_ERR_CALLBACK_FAILURE;
        }
    }
    /* The server answers on the stream the client opens (blocked until it does). */
    c->ss[0].id = 0;
    char ids[LR_DEVICE_ID_SHORTLEN + 1];
    id_short(&c->peer, ids);
    lr_info(MOD, "pairing connection peer=%s addr=%s dir=%s", ids, c->addr,
            c->is_client ? "out" : "in");
    c->pair_known = true;
    if (t->pair_cbs.on_up) {
        t->depth++;
        t->pair_cbs.on_up(t->pair_cbs.ud, c, &c->peer, c->is_client);
        t->depth--;
    }
    return 0;
}

/* Handshake done and the peer has judged us: wait for (client: send) HELLO. */
static int hs_ready(struct lr_conn *c)
{
    uint64_t ts = now_ns();
    if (c->state != CS_HANDSHAKE)
        return 0;
    c->hs_ns = ts - c->start_ns;
    hs_done(c);
    if (c->pair)
        return pair_ready(c);
    c->state = CS_HELLO;
    c->hello_deadline = ts + c->t->hello_timeout_ms * MS;
    if (c->is_client) {
        int64_t sid;
        int rv = ngtcp2_conn_open_bidi_stream(c->qc, &sid, NULL);
        if (rv != 0 || sid != 0) {
            set_reason(c, "cannot open the control stream");
            return NGTCP2_ERR_CALLBACK_FAILURE;
        }
        c->ss[0].id = 0;
#ifdef LR_FAILPOINTS
        if (c->t->fp_mute_hello)
            return 0;
#endif
        if (send_hello(c) < 0) {
            set_reason(c, "cannot encode our HELLO");
            return NGTCP2_ERR_CALLBACK_FAILURE;
        }
    }
    return 0;
}

static int cb_handshake_completed(ngtcp2_conn *qc, void *ud)
{
    (void)qc;
    struct lr_conn *c = ud;
    /* The verify function must have run and accepted: never trust a handshake without it. */
    if (!c->id_known) {
        set_reason(c, "handshake without an accepted certificate");
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    if (lr__tls_alpn(c->tls) != (c->pair ? 2 : 1)) {
        set_reason(c, "ALPN %s not negotiated", c->pair ? LR_TRANSPORT_PAIR_ALPN : LR_PROTO_ALPN);
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    /* The server has verified the client certificate by now. */
    return c->is_client ? 0 : hs_ready(c);
}

/*
 * Client: HANDSHAKE_DONE, i.e. the server accepted our certificate. Its
 * "completed" fires before that (pitfall 5), so nothing is sent until here.
 */
static int cb_handshake_confirmed(ngtcp2_conn *qc, void *ud)
{
    (void)qc;
    struct lr_conn *c = ud;
    return c->is_client ? hs_ready(c) : 0;
}

static int cb_reset(ngtcp2_conn *qc, const ngtcp2_pkt_stateless_reset *sr, void *ud)
{
    (void)qc;
    (void)sr;
    ((struct lr_conn *)ud)->reset_recv = true;
    return 0;
}

static int cb_stream_reset(ngtcp2_conn *qc, int64_t sid, uint64_t final_size, uint64_t app,
                           void *ud, void *sud)
{
    (void)qc;
    (void)final_size;
    (void)sud;
    return proto_fail(ud, "peer reset stream %" PRId64 " (error %" PRIu64 ")", sid, app);
}

static int cb_acked(ngtcp2_conn *qc, int64_t sid, uint64_t offset, uint64_t datalen, void *ud,
                    void *sud)
{
    (void)qc;
    (void)sud;
    struct lr_conn *c = ud;
    struct sstream *ss = NULL;
    for (unsigned i = 0; i < LR__NSLOTS; i++)
        if (c->ss[i].id == sid)
            ss = &c->ss[i];
    if (!ss)
        return 0;
    uint64_t upto = offset + datalen;
    while (ss->head && ss->head_off + ss->head->len <= upto) {
        struct chunk *ch = ss->head;
        ss->head = ch->next;
        if (!ss->head)
            ss->tail = NULL;
        ss->head_off += ch->len;
        c->queued -= ch->len;
        c->acked += ch->len;
        c->progress_ns = now_ns();
        chunk_free(ch);
    }
    if (c->want_writable && c->queued <= c->t->budget / 2) {
        c->want_writable = false;
        c->writable_due = true;
        c->dirty = true;
    }
    return 0;
}

static bool conn_up(struct lr_conn *c, const struct lr_proto_hello *h);
static int feed(struct lr_conn *c, struct rstream *r, const uint8_t *p, size_t n);

static int drain_pre(struct lr_conn *c)
{
    for (unsigned i = 1; i < LR__NSLOTS; i++) {
        struct rstream *r = &c->rs[i];
        if (!r->used || r->pre.len == 0)
            continue;
        int rv = feed(c, r, r->pre.data, r->pre.len);
        if (rv != 0)
            return rv;
        ngtcp2_conn_extend_max_stream_offset(c->qc, r->id, r->pre.len);
        ngtcp2_conn_extend_max_offset(c->qc, r->pre.len);
        lr_buf_release(&r->pre);
        lr_buf_init(&r->pre, PRE_HELLO_MAX);
    }
    return 0;
}

static int on_hello(struct lr_conn *c, const uint8_t *p, size_t n)
{
    struct lr_proto_hello h;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_proto_hello_decode(p, n, &h, &err);
    if (rc < 0)
        return proto_fail(c, "bad HELLO: %s", lr_err_msg(&err, rc));
    c->got_hello = true;
    c->payload_recv += n;
    if (!conn_up(c, &h))
        return 0;
    return drain_pre(c);
}

/* One whole frame from the peer. */
static int deliver(struct lr_conn *c, struct rstream *r, uint64_t type, const uint8_t *p, size_t n)
{
    struct lr_transport *t = c->t;
    if (!c->id_known || c->state == CS_HANDSHAKE)
        return proto_fail(c, "stream data before the handshake completed");
    if (r == &c->rs[0] && !c->got_hello) {
        if (type != LR_MSG_HELLO)
            return proto_fail(c, "first frame is %s (0x%" PRIx64 "), not HELLO",
                              lr_proto_type_name(type), type);
        if (!c->is_client)
            c->ss[0].id = 0; /* the server answers on the stream the client opened */
        return on_hello(c, p, n);
    }
    if (type == LR_MSG_HELLO)
        return proto_fail(c, "second HELLO");
    if (c->state != CS_UP || c->close_req || c->kill_req)
        return 0;
    c->payload_recv += n;
    if (t->cbs.on_message) {
        t->depth++;
        c->dlv_rs = r;
        c->dlv_p = p;
        t->cbs.on_message(t->cbs.ud, c, type, p, n);
        c->dlv_rs = NULL;
        c->dlv_p = NULL;
        t->depth--;
    }
    return 0;
}

uint8_t *lr_conn_take_payload(struct lr_conn *c, const uint8_t *payload)
{
    if (!c || !c->dlv_rs || payload != c->dlv_p || !payload)
        return NULL;
    uint8_t *p = lr_frame_reader_steal(&c->dlv_rs->rd);
    if (p)
        c->dlv_p = NULL; /* once */
    return p;
}

static int feed(struct lr_conn *c, struct rstream *r, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t used = 0;
        struct lr_err err;
        lr_err_clear(&err);
        int rc = lr_frame_reader_feed(&r->rd, p, n, &used, &err);
        if (rc < 0)
            return proto_fail(c, "stream %" PRId64 ": %s", r->id, lr_err_msg(&err, rc));
        p += used;
        n -= used;
        if (rc == 1) {
            uint64_t type;
            const uint8_t *payload;
            size_t len;
            if (lr_frame_reader_take(&r->rd, &type, &payload, &len) == 0) {
                int rv = deliver(c, r, type, payload, len);
                if (rv != 0)
                    return rv;
            }
        }
        if (c->close_req || c->kill_req || c->state == CS_DEAD)
            return 0;
    }
    return 0;
}

/* The receive slot for stream `sid`, or NULL if the peer may not send on it. */
static struct rstream *rslot(struct lr_conn *c, int64_t sid)
{
    if (sid == 0)
        return &c->rs[0];
    bool uni = (sid & 2) != 0;
    bool by_client = (sid & 1) == 0;
    if (!uni || by_client == c->is_client)
        return NULL;
    uint64_t idx = (uint64_t)sid >> 2;
    if (idx >= LR_TRANSPORT_BULK_STREAMS)
        return NULL;
    struct rstream *r = &c->rs[1 + idx];
    if (!r->used) {
        r->used = true;
        r->id = sid;
    }
    return r;
}

/* Stream bytes on a pairing connection: only stream 0, only once it is up. */
static int pair_recv(struct lr_conn *c, int64_t sid, const uint8_t *data, size_t len)
{
    struct lr_transport *t = c->t;
    if (sid != 0)
        return proto_fail(c, "pairing: peer used stream %" PRId64, sid);
    if (c->state != CS_PAIR)
        return proto_fail(c, "pairing: stream data before the handshake completed");
    c->payload_recv += len;
    if (t->pair_cbs.on_data && len > 0) {
        t->depth++;
        t->pair_cbs.on_data(t->pair_cbs.ud, c, data, len);
        t->depth--;
    }
    if (c->state == CS_PAIR && !c->close_req && !c->kill_req) {
        ngtcp2_conn_extend_max_stream_offset(c->qc, sid, len);
        ngtcp2_conn_extend_max_offset(c->qc, len);
    }
    return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *qc, uint32_t flags, int64_t sid, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud, void *sud)
{
    (void)flags;
    (void)offset;
    (void)sud;
    struct lr_conn *c = ud;
    c->stream_recv += len;
    if (c->close_req || c->kill_req)
        return 0;
    if (c->pair)
        return pair_recv(c, sid, data, len);
    struct rstream *r = rslot(c, sid);
    if (!r)
        return proto_fail(c, "peer used stream %" PRId64, sid);
    if (r != &c->rs[0] && c->state != CS_UP) {
        if (c->got_hello)
            return 0; /* lost a crossing-dial tie-break: closing, drop */
        if (lr_buf_put(&r->pre, data, len) < 0)
            return proto_fail(c, "too much bulk data before HELLO");
        return 0;
    }
    int rv = feed(c, r, data, len);
    if (rv != 0)
        return rv;
    ngtcp2_conn_extend_max_stream_offset(qc, sid, len);
    ngtcp2_conn_extend_max_offset(qc, len);
    return 0;
}

/* ---- connection set-up ---- */

static const ngtcp2_callbacks CLIENT_CBS = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = cb_handshake_completed,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = cb_recv_stream_data,
    .acked_stream_data_offset = cb_acked,
    .recv_stateless_reset = cb_reset,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .rand = cb_rand,
    .get_new_connection_id = cb_new_cid,
    .remove_connection_id = cb_remove_cid,
    .update_key = ngtcp2_crypto_update_key_cb,
    .stream_reset = cb_stream_reset,
    .handshake_confirmed = cb_handshake_confirmed,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

static const ngtcp2_callbacks SERVER_CBS = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = cb_handshake_completed,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = cb_recv_stream_data,
    .acked_stream_data_offset = cb_acked,
    .recv_stateless_reset = cb_reset,
    .rand = cb_rand,
    .get_new_connection_id = cb_new_cid,
    .remove_connection_id = cb_remove_cid,
    .update_key = ngtcp2_crypto_update_key_cb,
    .stream_reset = cb_stream_reset,
    .handshake_confirmed = cb_handshake_confirmed,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* Settings for `c` on `path`; also sizes c's packets and transmit buffer. */
static void settings_init(struct lr_conn *c, const ngtcp2_path *path, ngtcp2_settings *s)
{
    const struct lr_transport *t = c->t;
    ngtcp2_settings_default(s);
    s->initial_ts = c->start_ns;
    c->pkt_max = LR__PKT_MAX;
    if (!t->no_host_jumbo && lr__path_on_host((const struct sockaddr *)path->local.addr,
                                              (const struct sockaddr *)path->remote.addr)) {
        /* No probing: ngtcp2 0.12 never probes above 1452 and the loopback MTU is known. */
        c->pkt_max = LR__PKT_MAX_HOST;
        s->max_tx_udp_payload_size = LR__PKT_MAX_HOST;
        s->no_tx_udp_payload_size_shaping = 1;
        s->no_pmtud = 1;
    }
    c->tx = lr_xmalloc(LR__GSO_MAX_BYTES + c->pkt_max);
    s->cc_algo = NGTCP2_CC_ALGO_CUBIC;
    s->initial_rtt = (uint64_t)INITIAL_RTT_MS * MS;
    s->max_window = MAX_CONN_WINDOW;
    s->max_stream_window = MAX_STREAM_WINDOW;
    s->handshake_timeout = (uint64_t)HANDSHAKE_TIMEOUT_MS * MS;
    if (s->handshake_timeout > t->idle_ns)
        s->handshake_timeout = t->idle_ns;
}

static void params_init(const struct lr_transport *t, ngtcp2_transport_params *p, bool server)
{
    ngtcp2_transport_params_default(p);
    p->initial_max_data = CONN_WINDOW;
    p->initial_max_stream_data_bidi_local = STREAM_WINDOW;
    p->initial_max_stream_data_bidi_remote = STREAM_WINDOW;
    p->initial_max_stream_data_uni = STREAM_WINDOW;
    /* Only the client opens a bidirectional stream (the control stream). */
    p->initial_max_streams_bidi = server ? 1 : 0;
    p->initial_max_streams_uni = LR_TRANSPORT_BULK_STREAMS;
    p->max_idle_timeout = t->idle_ns;
    p->disable_active_migration = 1;
}

static struct lr_conn *conn_alloc(struct lr_transport *t, struct lr__sock *s, bool client,
                                  const ngtcp2_addr *remote)
{
    struct lr_conn *c = lr_xcalloc(1, sizeof(*c));
    lr_qmem_init(&c->qmem);
    c->t = t;
    c->sock = s;
    c->is_client = client;
    c->alert = -1;
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;
    c->start_ns = now_ns();
    ngtcp2_path_storage_zero(&c->tx_ps);
    for (unsigned i = 0; i < LR__NSLOTS; i++) {
        c->ss[i].id = -1;
        lr_frame_reader_init(&c->rs[i].rd);
        lr_buf_init(&c->rs[i].pre, PRE_HELLO_MAX);
    }
    c->rs[0].used = true;
    c->rs[0].id = 0;
    lr__addr_fmt((const struct sockaddr *)remote->addr, c->addr, sizeof(c->addr));
    uv_timer_init(t->loop, &c->timer);
    c->timer.data = c;
    t->handles++;
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    t->nconns++;
    t->conns_made++;
    t->nhandshaking++;
    c->counted_hs = true;
    return c;
}

static int conn_finish_setup(struct lr_conn *c)
{
    bool pair = c->is_client ? c->pair : c->t->pair_listen;
    int rc = lr__tls_session_new(&c->t->tls, !c->is_client, pair, &c->ref, &c->tls);
    if (rc < 0)
        return rc;
    ngtcp2_conn_set_tls_native_handle(c->qc, c->tls);
    ngtcp2_conn_set_keep_alive_timeout(c->qc, c->t->keepalive_ns);
    return 0;
}

static void random_cid(ngtcp2_cid *cid, size_t len)
{
    uint8_t b[NGTCP2_MAX_CIDLEN];
    (void)gnutls_rnd(GNUTLS_RND_NONCE, b, len);
    ngtcp2_cid_init(cid, b, len);
}

/* Dial `to`: a sync connection pinned to `peer`, or a pairing one if peer is NULL. */
static int conn_new_client(struct lr_transport *t, const struct lr_device_id *peer,
                           const struct lr__addr *to, struct lr_conn **out)
{
    struct lr__sock *s = NULL;
    /* Same family first, a wildcard socket before one bound to an address
     * (which may have left the device: its dials could never get out); a
     * dual-stack socket can reach IPv4 as v4-mapped. */
    for (int pass = 0; pass < 2 && !s; pass++)
        for (size_t i = 0; i < t->nsocks && !s; i++)
            if (t->socks[i].family == to->ss.ss_family && (pass == 1 || t->socks[i].wildcard))
                s = &t->socks[i];
    for (size_t i = 0; i < t->nsocks && !s; i++)
        if (t->socks[i].family == AF_INET6 && t->socks[i].wildcard && to->ss.ss_family == AF_INET)
            s = &t->socks[i];
    if (!s)
        return LR_EUSAGE;
    struct lr__addr local, remote;
    int rc = lr__sock_local_for(s, to, &local, &remote);
    if (rc < 0)
        return rc;
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&local.ss, .addrlen = local.len},
        .remote = {.addr = (ngtcp2_sockaddr *)&remote.ss, .addrlen = remote.len},
    };
    struct lr_conn *c = conn_alloc(t, s, true, &path.remote);
    if (peer)
        c->peer = *peer;
    else
        c->pair = true;
    ngtcp2_cid dcid, scid;
    random_cid(&dcid, LR__CIDLEN);
    random_cid(&scid, LR__CIDLEN);
    ngtcp2_settings settings;
    ngtcp2_transport_params params;
    settings_init(c, &path, &settings);
    params_init(t, &params, false);
    rc = ngtcp2_conn_client_new(&c->qc, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &CLIENT_CBS,
                                &settings, &params, lr_qmem_ngtcp2(&c->qmem), c);
    if (rc != 0) {
        conn_free(c, "ngtcp2_conn_client_new failed");
        return LR_EINTERNAL;
    }
    cid_add(t, &scid, c);
    if (conn_finish_setup(c) < 0) {
        conn_free(c, "TLS session set-up failed");
        return LR_ETLS;
    }
    if (peer) {
        char ids[LR_DEVICE_ID_SHORTLEN + 1];
        id_short(peer, ids);
        lr_debug(MOD, "dialling peer=%s addr=%s", ids, c->addr);
    } else {
        lr_debug(MOD, "dialling for pairing addr=%s", c->addr);
    }
    if (out)
        *out = c;
    c->dirty = true;
    process_dirty(t);
    return 0;
}

static void accept_new(struct lr__sock *s, const ngtcp2_path *path, const uint8_t *pkt, size_t len)
{
    struct lr_transport *t = s->t;
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt, len) != 0)
        return;
    if (t->nhandshaking >= LR__MAX_HANDSHAKING) {
        lr_debug(MOD, "too many handshakes in progress, dropping an Initial");
        return;
    }
    struct lr_conn *c = conn_alloc(t, s, false, &path->remote);
    ngtcp2_cid scid;
    random_cid(&scid, LR__CIDLEN);
    ngtcp2_settings settings;
    ngtcp2_transport_params params;
    settings_init(c, path, &settings);
    params_init(t, &params, true);
    params.original_dcid = hd.dcid;
    params.stateless_reset_token_present = 1;
    if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token, t->secret,
                                                     sizeof(t->secret), &scid) != 0 ||
        ngtcp2_conn_server_new(&c->qc, &hd.scid, &scid, path, hd.version, &SERVER_CBS, &settings,
                               &params, lr_qmem_ngtcp2(&c->qmem), c) != 0) {
        conn_free(c, "ngtcp2_conn_server_new failed");
        return;
    }
    cid_add(t, &scid, c);
    /* The client keeps addressing the original DCID until it hears from us. */
    cid_add(t, &hd.dcid, c);
    if (conn_finish_setup(c) < 0) {
        conn_free(c, "TLS session set-up failed");
        return;
    }
    conn_read(c, path, pkt, len);
}

/* ---- up: HELLO received ---- */

/*
 * Decide between `c` and any other connection with the same peer; see the
 * "One connection per peer" paragraph of transport.h. Returns false if `c`
 * lost (it is then closing).
 */
static bool conn_up(struct lr_conn *c, const struct lr_proto_hello *h)
{
    struct lr_transport *t = c->t;
    uint64_t ts = now_ns();
    /* Our own dial to that peer still waiting for its handshake (say its
     * first packet went out before the peer listened, and waits for a
     * retransmission) is superseded: it has not sent its Finished, so the
     * peer cannot have it up, and letting it finish would only replace this
     * connection (and whatever runs on it) a moment later. */
    for (struct lr_conn *o = t->conns, *next; o; o = next) {
        next = o->next;
        if (o != c && o->is_client && !o->pair && conn_live(o) && o->state == CS_HANDSHAKE &&
            o->qc && !ngtcp2_conn_get_handshake_completed(o->qc) &&
            lr_device_id_eq(&o->peer, &c->peer))
            conn_free(o, "superseded by the connection the peer dialled");
    }
    for (struct lr_conn *o = t->conns; o; o = o->next) {
        if (o == c || !conn_live(o) || o->pair || !o->id_known ||
            !lr_device_id_eq(&o->peer, &c->peer))
            continue;
        bool crossing = o->is_client != c->is_client &&
                        (o->state != CS_UP || ts - o->up_ns < (uint64_t)LR_TRANSPORT_CROSS_MS * MS);
        bool keep_new = true;
        if (crossing) {
            const struct lr_device_id *dc = c->is_client ? &t->tls.id : &c->peer;
            const struct lr_device_id *dold = o->is_client ? &t->tls.id : &o->peer;
            keep_new = memcmp(dc->b, dold->b, LR_DEVICE_ID_LEN) < 0;
        }
        if (!keep_new) {
            conn_close_app(c, LR_TRANSPORT_APP_DUPLICATE,
                           "crossing dial: keeping the one dialled by the lower device ID", false);
            return false;
        }
        conn_close_app(o, LR_TRANSPORT_APP_DUPLICATE,
                       crossing ? "crossing dial: keeping the one dialled by the lower device ID"
                                : "replaced by a newer connection",
                       false);
    }
    if (!c->is_client && send_hello(c) < 0) {
        proto_fail(c, "cannot encode our HELLO");
        return false;
    }
    c->state = CS_UP;
    c->up_ns = ts;
    struct lr__peer *p = peer_find(t, &c->peer);
    if (p) {
        p->told_refused = false;
        lr_backoff_reset(&p->bo);
        uv_timer_stop(p->timer);
    }
    char ids[LR_DEVICE_ID_SHORTLEN + 1];
    id_short(&c->peer, ids);
    char *name = lr_escs(h->name);
    lr_info(MOD, "connected peer=%s name=\"%s\" addr=%s dir=%s handshake_us=%" PRIu64, ids, name,
            c->addr, c->is_client ? "out" : "in", c->hs_ns / 1000);
    free(name);
    if (t->cbs.on_connected) {
        t->depth++;
        t->cbs.on_connected(t->cbs.ud, c, &c->peer, h);
        t->depth--;
    }
    return true;
}

/* ---- reading ---- */

static void conn_handle_error(struct lr_conn *c, int rv)
{
    switch (rv) {
    case NGTCP2_ERR_DRAINING: {
        if (c->reset_recv) {
            conn_free(c, LR_CONN_LOST_RESET);
            break;
        }
        ngtcp2_connection_close_error ce;
        ngtcp2_conn_get_connection_close_error(c->qc, &ce);
        char r[128];
        char *esc = lr_esc(ce.reason, ce.reasonlen);
        if (ce.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION)
            snprintf(r, sizeof(r), "closed by peer (application error %" PRIu64 "%s%s)",
                     ce.error_code, ce.reasonlen ? ": " : "", esc);
        else
            snprintf(r, sizeof(r), "closed by peer (transport error 0x%" PRIx64 ")", ce.error_code);
        free(esc);
        /* CRYPTO_ERROR (RFC 9000 §20.1): 0x100 + a TLS alert. */
        if (ce.type != NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION &&
            ce.error_code >= 0x100 && ce.error_code <= 0x1ff)
            c->alert = (int)(ce.error_code - 0x100);
        conn_free(c, r);
        break;
    }
    case NGTCP2_ERR_DROP_CONN:
        conn_free(c, "dropped");
        break;
    case NGTCP2_ERR_CRYPTO:
        ngtcp2_connection_close_error_set_transport_error_tls_alert(
            &c->ccerr, ngtcp2_conn_get_tls_alert(c->qc), NULL, 0);
        if (!c->reason[0])
            set_reason(c, "TLS handshake failed");
        c->close_req = true;
        conn_close_now(c);
        break;
    case NGTCP2_ERR_CALLBACK_FAILURE:
        if (!c->close_req) {
            ngtcp2_connection_close_error_set_transport_error_liberr(&c->ccerr, rv, NULL, 0);
            if (!c->reason[0])
                set_reason(c, "callback failure");
            c->close_req = true;
        }
        conn_close_now(c);
        break;
    default:
        conn_close_err(c, rv);
        conn_close_now(c);
        break;
    }
}

static void conn_read(struct lr_conn *c, const ngtcp2_path *path, const uint8_t *pkt, size_t len)
{
    struct lr_transport *t = c->t;
    ngtcp2_pkt_info pi = {0};
    if (c->state == CS_DEAD || c->kill_req)
        return;
    c->busy++;
    t->depth++;
    uint64_t now = now_ns();
    int rv = ngtcp2_conn_read_pkt(c->qc, path, &pi, pkt, len, now);
    c->busy--;
    t->depth--;
    if (rv != 0) {
        if (c->kill_req) {
            c->dirty = true;
            return;
        }
        conn_handle_error(c, rv);
        return;
    }
    c->last_rx_ns = now;
    c->dirty = true;
}

static void send_reset(struct lr__sock *s, const ngtcp2_path *path, const uint8_t *dcid,
                       size_t dcidlen, size_t pktlen)
{
    struct lr_transport *t = s->t;
    /* Smaller than what triggered it, so two endpoints cannot loop forever. */
    size_t min = 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN;
    if (dcidlen != LR__CIDLEN || pktlen <= min + 1)
        return;
    uint64_t ts = now_ns();
    if (ts - t->reset_window >= 1000 * MS) {
        t->reset_window = ts;
        t->reset_count = 0;
    }
    if (t->reset_count >= LR__RESET_PER_SEC)
        return;
    t->reset_count++;
    size_t total = pktlen - 1 < 64 ? pktlen - 1 : 64;
    size_t randlen = total - 1 - NGTCP2_STATELESS_RESET_TOKENLEN;
    ngtcp2_cid cid;
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], rnd[64], buf[80];
    ngtcp2_cid_init(&cid, dcid, dcidlen);
    if (ngtcp2_crypto_generate_stateless_reset_token(token, t->secret, sizeof(t->secret), &cid) !=
        0)
        return;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen);
    ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token, rnd, randlen);
    if (n > 0) {
        size_t done;
        (void)lr__sock_send(s, path, buf, (size_t)n, 0, &done);
        t->resets_sent++;
    }
}

/* The connection whose peer's stateless reset token ends `pkt`, if any. */
static struct lr_conn *reset_target(struct lr__sock *s, const uint8_t *pkt, size_t len)
{
    if (len < 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN)
        return NULL;
    const uint8_t *tail = pkt + len - NGTCP2_STATELESS_RESET_TOKENLEN;
    for (struct lr_conn *c = s->t->conns; c; c = c->next) {
        if (c->sock != s || c->state == CS_DEAD || !c->qc)
            continue;
        ngtcp2_cid_token toks[8];
        /* get_active_dcid writes them all: never call it with more than fit. */
        size_t n = ngtcp2_conn_get_num_active_dcid(c->qc);
        if (n == 0 || n > 8)
            continue;
        n = ngtcp2_conn_get_active_dcid(c->qc, toks);
        for (size_t i = 0; i < n; i++)
            if (toks[i].token_present &&
                gnutls_memcmp(toks[i].token, tail, NGTCP2_STATELESS_RESET_TOKENLEN) == 0)
                return c;
    }
    return NULL;
}

static void on_packet(struct lr__sock *s, const ngtcp2_path *path, const uint8_t *pkt, size_t len)
{
    struct lr_transport *t = s->t;
    ngtcp2_version_cid vc;
    if (t->closing || ngtcp2_pkt_decode_version_cid(&vc, pkt, len, LR__CIDLEN) != 0)
        return;
    struct lr_conn *c = cid_find(t, vc.dcid, vc.dcidlen);
    if (c) {
        if (c->sock != s)
            return;
        conn_read(c, path, pkt, len);
        /*
         * Write (ACK) every few packets instead of after the whole batch:
         * the sender can then encrypt its next burst while we decrypt the
         * rest, instead of the two sides taking turns.
         */
        if (++c->rx_since_write >= RX_ACK_EVERY)
            process_dirty(t);
        return;
    }
    if (pkt[0] & 0x80) {
        accept_new(s, path, pkt, len);
        return;
    }
    /* A stateless reset is addressed to no CID of ours: recognise it by its token. */
    c = reset_target(s, pkt, len);
    if (c)
        conn_read(c, path, pkt, len);
    else
        send_reset(s, path, vc.dcid, vc.dcidlen, len);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct lr__sock *s = h->data;
    struct lr_transport *t = s->t;
    if (status < 0) {
        lr_debug(MOD, "poll: %s", uv_strerror(status));
        return;
    }
    if (events & UV_READABLE)
        lr__sock_read(s, on_packet, 16);
    if (events & UV_WRITABLE) {
        for (struct lr_conn *c = t->conns; c; c = c->next) {
            if (c->sock != s || !c->tx_pending)
                continue;
            if (flush_pending(c) == -EAGAIN)
                break;
            c->dirty = true;
        }
        sock_update_events(s);
    }
    process_dirty(t);
}

static void timer_cb(uv_timer_t *h)
{
    struct lr_conn *c = h->data;
    struct lr_transport *t = c->t;
    if (c->state == CS_DEAD)
        return;
    if (c->path_close[0]) {
        conn_close_app(c, 0, c->path_close, true);
        process_dirty(t);
        return;
    }
    uint64_t ts = now_ns();
    if (c->pair && ts >= c->start_ns + t->pair_timeout_ns) {
        conn_close_app(c, LR_TRANSPORT_APP_PROTO, "pairing timed out", false);
        process_dirty(t);
        return;
    }
    if (c->state == CS_HELLO && ts >= c->hello_deadline) {
        conn_close_app(c, LR_TRANSPORT_APP_PROTO, "no HELLO in time", false);
        process_dirty(t);
        return;
    }
    c->busy++;
    t->depth++;
    int rv = ngtcp2_conn_handle_expiry(c->qc, ts);
    c->busy--;
    t->depth--;
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        conn_free(c, rv == NGTCP2_ERR_IDLE_CLOSE ? LR_CONN_LOST_IDLE : "handshake timeout");
    } else if (rv != 0) {
        conn_close_err(c, rv);
    } else {
        c->dirty = true;
    }
    process_dirty(t);
}

static void process_dirty(struct lr_transport *t)
{
    if (t->depth > 0 || t->in_dirty)
        return;
    t->in_dirty = true;
again:
    for (struct lr_conn *c = t->conns; c; c = c->next) {
        if (!c->dirty || c->state == CS_DEAD)
            continue;
        c->dirty = false;
        if (c->kill_req) {
            conn_free(c, c->reason);
            goto again;
        }
        if (c->close_req) {
            conn_close_now(c);
            goto again;
        }
        conn_write(c);
        if (c->close_req) {
            conn_close_now(c);
            goto again;
        }
        if (c->writable_due) {
            c->writable_due = false;
            if (c->state == CS_UP && t->cbs.on_writable) {
                t->depth++;
                t->cbs.on_writable(t->cbs.ud, c);
                t->depth--;
            }
            goto again;
        }
        if (c->dirty)
            goto again;
    }
    t->in_dirty = false;
}

/* ---- peers ---- */

static void peer_timer_cb(uv_timer_t *h)
{
    struct lr__peer *p = h->data;
    struct lr_transport *t = p->t;
    if (t->closing || peer_has_conn(t, &p->id, NULL) || p->naddrs == 0)
        return;
    const struct lr__addr *a = &p->addrs[p->next_addr++ % p->naddrs];
    int rc = conn_new_client(t, &p->id, a, NULL);
    if (rc < 0) {
        char as[64];
        lr__addr_fmt((const struct sockaddr *)&a->ss, as, sizeof(as));
        lr_debug(MOD, "dial %s: %s", as, lr_strerror(rc));
        /* A connection that failed after creation has already scheduled the retry. */
        if (!uv_is_active((uv_handle_t *)p->timer))
            peer_schedule(p);
    }
    process_dirty(t);
}

/*
 * The device with the higher ID dials a little later, so when both ends
 * dial at once (both started, or both lost the link), the lower one's
 * connection is usually up before the higher one dials, and no crossing
 * dial has to be settled (which would report one connection up and then
 * replace it).
 */
static uint32_t dial_defer(const struct lr__peer *p)
{
    return memcmp(p->t->tls.id.b, p->id.b, LR_DEVICE_ID_LEN) > 0 ? p->t->dial_defer_ms : 0;
}

static void peer_schedule(struct lr__peer *p)
{
    if (p->t->closing || !p->timer)
        return;
    uint32_t d = lr_backoff_next(&p->bo) + dial_defer(p);
    char ids[LR_DEVICE_ID_SHORTLEN + 1];
    id_short(&p->id, ids);
    lr_debug(MOD, "redial peer=%s in %u ms", ids, d);
    uv_timer_start(p->timer, peer_timer_cb, d, 0);
}

static void peer_timer_closed(uv_handle_t *h)
{
    struct lr_transport *t = h->data;
    free(h);
    handle_dec(t);
}

static void peer_remove(struct lr_transport *t, struct lr__peer *p)
{
    struct lr__peer **pp = &t->peers;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    uv_timer_stop(p->timer);
    p->timer->data = t;
    uv_close((uv_handle_t *)p->timer, peer_timer_closed);
    p->timer = NULL;
    free(p);
}

static uint16_t addr_port(const struct lr__addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* ---- source addresses that left the device ---- */

/* How often established connections' source addresses (and probes and
 * stalled sends) are checked. */
#define PATH_CHECK_MS 2000

/*
 * Whether our stream data has gone unacknowledged for stall_ns although the
 * peer was heard since it last made progress. QUIC backs its retransmission
 * timer off exponentially while its probes go unanswered, and nothing resets
 * it until one of them is acknowledged: on a path that lost every probe for a
 * while (a lossy link with blackouts), the next one was 10 to 20 s away and
 * the transfer stood still for minutes while the peer's packets, and our
 * acknowledgements of them, kept crossing (docs/internals/transport.md). A
 * new connection starts with a fresh timer. A peer not heard at all is left
 * to the idle timeout: that path may simply be down for a while. Heard
 * lately, too: after our own loop was held up, the acknowledgements may be
 * waiting in the socket, read after the timers.
 */
static bool send_stalled(const struct lr_conn *c, uint64_t ts)
{
    /* Lately: half the bound, but never less than two checks apart (with a
     * short bound, a peer heard every 2 s could always fall between them). */
    uint64_t lately = c->t->stall_ns / 2;
    if (lately < 2 * PATH_CHECK_MS * MS)
        lately = 2 * PATH_CHECK_MS * MS;
    return ts - c->progress_ns >= c->t->stall_ns && c->last_rx_ns > c->progress_ns &&
           ts - c->last_rx_ns < lately && in_flight(c);
}

/*
 * A connection whose source address is no longer ours (the device moved to
 * another address) is closed, so it is dialled again from the new one at
 * once. Its sends fail only when it has something to send, and a quiet one
 * waits for its keep-alive; an incoming one is not redialled by us, but the
 * peer's redial from its side, or ours to its known addresses, follows.
 */
static void path_check(uv_timer_t *h)
{
    struct lr_transport *t = h->data;
    if (t->closing || t->depth > 0)
        return;
    uint64_t ts = now_ns();
    for (struct lr_conn *c = t->conns; c; c = c->next) {
        if (c->state != CS_UP || c->close_req || c->kill_req)
            continue;
        if (c->probe_deadline && c->acked != c->probe_acked) {
            c->probe_deadline = 0;
        } else if (c->probe_deadline && ts >= c->probe_deadline) {
            lr_info(MOD, "connection to %s acknowledged nothing since a probe: closing it",
                    c->addr);
            conn_close_app(c, 0, LR_CONN_LOST_PROBE, false);
            break;
        }
        if (send_stalled(c, ts)) {
            lr_info(MOD,
                    "connection to %s: none of our data acknowledged for %llu s while the peer "
                    "is heard: closing it to start afresh",
                    c->addr, (unsigned long long)((ts - c->progress_ns) / (1000 * MS)));
            conn_close_app(c, 0, LR_CONN_LOST_STALL, false);
            break;
        }
        if (!c->tx_ps.path.local.addrlen)
            continue;
        if (lr__addr_gone((const struct sockaddr *)c->tx_ps.path.local.addr)) {
            lr_info(MOD, "local address of the connection to %s is gone: closing it", c->addr);
            conn_close_app(c, 0, "local address gone", true);
            break; /* the list may have changed under the callbacks: the rest next time */
        }
    }
    process_dirty(t);
}

static void path_timer_closed(uv_handle_t *h)
{
    struct lr_transport *t = h->data;
    free(h);
    handle_dec(t);
}

/* ---- public API ---- */

/* One uv handle fewer; the last one to close after lr_transport_close frees t. */
static void handle_dec(struct lr_transport *t)
{
    t->handles--;
    if (t->closing && t->handles == 0) {
        void (*done)(void *) = t->done;
        void *ud = t->done_ud;
        lr__tls_release(&t->tls);
        free(t->cids);
        gnutls_memset(t->secret, 0, sizeof(t->secret));
        free(t);
        if (done)
            done(ud);
    }
}

static int load_secret(struct lr_transport *t, const char *home, struct lr_err *err)
{
    char *path = lr_xasprintf("%s/reset.key", home);
    char *data = NULL;
    size_t len = 0;
    int rc = lr_read_file(path, 64, &data, &len, err);
    if (rc == 0) {
        if (len != sizeof(t->secret))
            rc = lr_err_set(err, LR_ECONFIG,
                            "%s: expected %zu bytes, found %zu (a random secret: delete the "
                            "file and a new one is made)",
                            path, sizeof(t->secret), len);
        else
            memcpy(t->secret, data, len);
        gnutls_memset(data, 0, len);
        free(data);
    } else if (rc == -ENOENT) {
        lr_err_clear(err);
        if (gnutls_rnd(GNUTLS_RND_KEY, t->secret, sizeof(t->secret)) < 0)
            rc = lr_err_set(err, LR_ETLS, "no randomness for %s", path);
        else
            rc = lr_write_file_atomic(path, t->secret, sizeof(t->secret), 0600, err);
    }
    free(path);
    return rc;
}

static void sock_poll_closed(uv_handle_t *h)
{
    struct lr__sock *s = h->data;
    struct lr_transport *t = s->t;
    close(s->fd);
    s->fd = -1;
    lr__sock_release(s);
    handle_dec(t);
}

int lr_transport_new(uv_loop_t *loop, const struct lr_transport_config *cfg,
                     const struct lr_transport_cbs *cbs, struct lr_transport **out,
                     struct lr_err *err)
{
    static const char *const def_listen[] = {LR_TRANSPORT_DEFAULT_LISTEN};
    const char *const *listen = cfg->listen ? cfg->listen : def_listen;
    size_t nlisten = cfg->listen ? cfg->nlisten : 1;
    struct lr__addr addrs[LR_TRANSPORT_MAX_LISTEN];
    int rc;

    *out = NULL;
    if (nlisten == 0 || nlisten > LR_TRANSPORT_MAX_LISTEN)
        return lr_err_set(err, LR_EUSAGE, "transport: %zu listen addresses (1..%d)", nlisten,
                          LR_TRANSPORT_MAX_LISTEN);
    for (size_t i = 0; i < nlisten; i++)
        if (lr__addr_parse(listen[i], &addrs[i]) < 0)
            return lr_err_set(err, LR_EUSAGE, "listen address '%s' is not numeric host:port",
                              listen[i] ? listen[i] : "(null)");
    if (!cfg->home)
        return lr_err_set(err, LR_EUSAGE, "transport: home directory required");
    {
        struct lr_buf b;
        lr_buf_init(&b, LR_PROTO_HELLO_MAX);
        rc = lr_proto_hello_encode(&cfg->hello, &b);
        lr_buf_release(&b);
        if (rc < 0)
            return lr_err_set(err, LR_EUSAGE, "transport: our HELLO is invalid (%s)",
                              lr_strerror(rc));
    }

    struct lr_transport *t = lr_xcalloc(1, sizeof(*t));
    t->loop = loop;
    if (cbs)
        t->cbs = *cbs;
    t->hello = cfg->hello;
    t->idle_ns = (cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 60000) * MS;
    t->no_host_jumbo = cfg->no_host_jumbo;
    t->keepalive_ns = (cfg->keepalive_ms ? cfg->keepalive_ms : 15000) * MS;
    /* A keep-alive as long as the idle timeout lets a healthy, quiet
     * connection time out (an idle timeout of 10 s dropped every one each
     * 10 s): at most a third of it, so two probes may be lost. */
    if (t->keepalive_ns > t->idle_ns / 3)
        t->keepalive_ns = t->idle_ns / 3;
    t->stall_ns = (cfg->send_stall_ms ? cfg->send_stall_ms : 15000) * MS;
    t->hello_timeout_ms = LR_TRANSPORT_HELLO_TIMEOUT_MS;
    t->dial_defer_ms = LR_TRANSPORT_DIAL_DEFER_MS;
    t->budget = cfg->send_budget ? cfg->send_budget : (size_t)8 << 20;
    t->bo_min = cfg->backoff_min_ms ? cfg->backoff_min_ms : 1000;
    t->bo_max = cfg->backoff_max_ms ? cfg->backoff_max_ms : 60000;
    t->rng = cfg->rng ? cfg->rng : default_rng;
    t->rng_ud = cfg->rng_ud;
    t->pair_cbs = cfg->pair_cbs;
    t->pair_timeout_ns =
        (cfg->pair_timeout_ms ? cfg->pair_timeout_ms : LR_TRANSPORT_PAIR_TIMEOUT_MS) * MS;

    rc = lr__tls_init(&t->tls, cfg->cert_path, cfg->key_path, err);
    if (rc < 0)
        goto fail;
    rc = load_secret(t, cfg->home, err);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < nlisten; i++) {
        struct lr__sock *s = &t->socks[i];
        s->t = t;
        /* [::]:P beside an IPv4 address on port P: IPv6 only, or the two collide. */
        bool v6only = false;
        for (size_t k = 0; k < nlisten; k++)
            v6only |=
                addrs[k].ss.ss_family == AF_INET && addr_port(&addrs[k]) == addr_port(&addrs[i]);
        rc = lr__sock_open(s, &addrs[i], v6only, cfg->no_gso, cfg->no_gro, err);
        if (rc == -EAFNOSUPPORT && !cfg->listen) {
            /* The default [::] on a kernel without IPv6 (ipv6.disable=1):
             * all IPv4 addresses then. */
            lr__addr_parse(LR_TRANSPORT_DEFAULT_LISTEN4, &addrs[i]);
            rc = lr__sock_open(s, &addrs[i], false, cfg->no_gso, cfg->no_gro, err);
        }
        if (rc < 0)
            goto fail;
        t->nsocks++;
    }
    for (size_t i = 0; i < t->nsocks; i++) {
        struct lr__sock *s = &t->socks[i];
        uv_poll_init(loop, &s->poll, s->fd);
        s->poll.data = s;
        s->poll_init = true;
        t->handles++;
        s->events = UV_READABLE;
        uv_poll_start(&s->poll, UV_READABLE, poll_cb);
        char as[64];
        lr__addr_fmt((const struct sockaddr *)&s->local.ss, as, sizeof(as));
        lr_info(MOD, "listening on %s gso=%d gro=%d", as, s->gso, s->gro);
    }
    t->path_timer = lr_xcalloc(1, sizeof(*t->path_timer));
    uv_timer_init(loop, t->path_timer);
    t->path_timer->data = t;
    t->handles++;
    uv_timer_start(t->path_timer, path_check, PATH_CHECK_MS, PATH_CHECK_MS);
    *out = t;
    return 0;
fail:
    for (size_t i = 0; i < t->nsocks; i++)
        close(t->socks[i].fd);
    lr__tls_release(&t->tls);
    gnutls_memset(t->secret, 0, sizeof(t->secret));
    free(t);
    return rc;
}

void lr_transport_close(struct lr_transport *t, unsigned flags, void (*done)(void *ud), void *ud)
{
    assert(t->depth == 0 && !t->closing);
    t->done = done;
    t->done_ud = ud;
    t->closing = true;
    while (t->peers)
        peer_remove(t, t->peers);
    if (t->path_timer) {
        uv_timer_stop(t->path_timer);
        uv_close((uv_handle_t *)t->path_timer, path_timer_closed);
        t->path_timer = NULL;
    }
    while (t->conns) {
        struct lr_conn *c = t->conns;
        ngtcp2_connection_close_error_set_application_error(&c->ccerr, LR_TRANSPORT_APP_NO_ERROR,
                                                            NULL, 0);
        snprintf(c->reason, sizeof(c->reason), "transport closing");
        c->close_silent = (flags & LR_TRANSPORT_CLOSE_SILENT) != 0;
        c->close_req = true;
        conn_close_now(c);
    }
    for (size_t i = 0; i < t->nsocks; i++) {
        uv_poll_stop(&t->socks[i].poll);
        uv_close((uv_handle_t *)&t->socks[i].poll, sock_poll_closed);
    }
}

const struct lr_device_id *lr_transport_device_id(const struct lr_transport *t)
{
    return &t->tls.id;
}

int lr_transport_local_port(const struct lr_transport *t, size_t i)
{
    if (i >= t->nsocks)
        return LR_ENOTFOUND;
    const struct sockaddr_storage *ss = &t->socks[i].local.ss;
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

int lr_transport_dial(struct lr_transport *t, const struct lr_device_id *peer,
                      const char *const *addrs, size_t naddrs, struct lr_err *err)
{
    struct lr__addr parsed[LR_TRANSPORT_MAX_ADDRS];
    if (naddrs > LR_TRANSPORT_MAX_ADDRS)
        naddrs = LR_TRANSPORT_MAX_ADDRS;
    if (t->closing)
        return lr_err_set(err, LR_ECANCELED, "dial: transport closing");
    if (lr_device_id_eq(peer, &t->tls.id))
        return lr_err_set(err, LR_EUSAGE, "dial: that is this device's own ID");
    /* An unusable address is skipped, not fatal: the others may work. */
    size_t nparsed = 0;
    const char *bad = NULL;
    for (size_t i = 0; i < naddrs; i++) {
        if (lr__addr_parse(addrs[i], &parsed[nparsed]) == 0)
            nparsed++;
        else if (!bad)
            bad = addrs[i] ? addrs[i] : "(null)";
    }
    if (bad && nparsed == 0)
        return lr_err_set(err, LR_EUSAGE, "dial: address '%s' is not numeric host:port", bad);
    if (bad)
        lr_warn(MOD, "dial: address '%s' is not numeric host:port, skipped", bad);
    naddrs = nparsed;
    struct lr__peer *p = peer_find(t, peer);
    if (!p) {
        p = lr_xcalloc(1, sizeof(*p));
        p->t = t;
        p->id = *peer;
        lr_backoff_init(&p->bo, t->bo_min, t->bo_max, t->rng, t->rng_ud);
        p->timer = lr_xcalloc(1, sizeof(*p->timer));
        uv_timer_init(t->loop, p->timer);
        p->timer->data = p;
        t->handles++;
        p->next = t->peers;
        t->peers = p;
    }
    memcpy(p->addrs, parsed, naddrs * sizeof(parsed[0]));
    p->naddrs = naddrs;
    p->next_addr = 0;
    if (!peer_has_conn(t, peer, NULL) && naddrs > 0) {
        uv_timer_stop(p->timer);
        /* Through the timer (at 0 ms unless deferred) so a dial from a callback is safe too. */
        uv_timer_start(p->timer, peer_timer_cb, dial_defer(p), 0);
    }
    return 0;
}

int lr_transport_forget_peer(struct lr_transport *t, const struct lr_device_id *peer)
{
    bool found = false;
    struct lr__peer *p = peer_find(t, peer);
    if (p) {
        peer_remove(t, p);
        found = true;
    }
    bool again = true;
    while (again) {
        again = false;
        for (struct lr_conn *c = t->conns; c; c = c->next) {
            if (conn_live(c) && !c->pair && (c->id_known || c->is_client) &&
                lr_device_id_eq(&c->peer, peer)) {
                found = true;
                conn_close_app(c, LR_TRANSPORT_APP_NO_ERROR, "peer removed", false);
                again = true; /* the list may have changed under us */
                break;
            }
        }
    }
    process_dirty(t);
    return found ? 0 : LR_ENOTFOUND;
}

bool lr_transport_connecting(struct lr_transport *t, const struct lr_device_id *peer)
{
    for (struct lr_conn *c = t->conns; c; c = c->next)
        if (conn_live(c) && !c->pair && (c->state == CS_HANDSHAKE || c->state == CS_HELLO) &&
            (c->id_known || c->is_client) && lr_device_id_eq(&c->peer, peer))
            return true;
    struct lr__peer *p = peer_find(t, peer);
    return p && uv_is_active((uv_handle_t *)p->timer) &&
           uv_timer_get_due_in(p->timer) <= LR_TRANSPORT_DIAL_DEFER_MS;
}

struct lr_conn *lr_transport_conn(struct lr_transport *t, const struct lr_device_id *peer)
{
    for (struct lr_conn *c = t->conns; c; c = c->next)
        if (c->state == CS_UP && conn_live(c) && lr_device_id_eq(&c->peer, peer))
            return c;
    return NULL;
}

int lr_transport_peer_stats(struct lr_transport *t, const struct lr_device_id *peer,
                            struct lr_conn_stats *out)
{
    struct lr_conn *c = lr_transport_conn(t, peer);
    memset(out, 0, sizeof(*out));
    if (!c)
        return LR_ENOTFOUND;
    lr_conn_get_stats(c, out);
    return 0;
}

static int open_bulk(struct lr_conn *c, unsigned slot)
{
    int64_t sid;
    if (c->ss[slot].id >= 0)
        return 0;
    int rv = ngtcp2_conn_open_uni_stream(c->qc, &sid, NULL);
    if (rv != 0)
        return -1;
    c->ss[slot].id = sid;
    return 0;
}

enum send_mode {
    SEND_COPY,  /* a frame, payload copied */
    SEND_OWNED, /* a frame, payload taken over */
    SEND_RAW,   /* raw stream bytes (tests) */
};

/* A bulk stream with more than this queued is backed up for a light frame. */
#define LIGHT_BACKLOG (64u * 1024)

static int send_common(struct lr_conn *c, enum lr_stream_class cls, uint64_t type,
                       const void *payload, size_t len, enum send_mode mode,
                       void (*free_fn)(void *))
{
    struct lr_transport *t = c->t;
    if (c->state != CS_UP || !conn_live(c))
        return LR_ECANCELED;
    size_t budget = t->budget + (cls == LR_STREAM_LIGHT ? t->budget / 8 : 0);
    if (c->queued > 0 && c->queued + len > budget) {
        c->want_writable = true;
        return LR_EBUSY;
    }
    unsigned slot = 0;
    if (cls != LR_STREAM_CONTROL) {
        /* The least loaded bulk stream that can be opened; control if none
         * can, or for a light frame if every bulk stream has a backlog and
         * control less (a stream of its own keeps a loss from holding back
         * the frames on the others, so requests stay spread when they can). */
        uint64_t best = UINT64_MAX;
        for (unsigned i = 1; i < LR__NSLOTS; i++) {
            if (open_bulk(c, i) < 0)
                continue;
            uint64_t load = c->ss[i].end - c->ss[i].head_off;
            if (load < best) {
                best = load;
                slot = i;
            }
        }
        if (cls == LR_STREAM_LIGHT && best > LIGHT_BACKLOG &&
            c->ss[0].end - c->ss[0].head_off < best)
            slot = 0;
    }
    int rc = 0;
    if (mode == SEND_RAW) {
        append_chunk(c, slot, lr_xmemdup(payload, len), len, NULL);
    } else if (mode == SEND_OWNED) {
        /* Header and payload as two chunks: the payload is never copied. */
        struct lr_buf h;
        size_t hn;
        lr_buf_init(&h, 16);
        if (lr_buf_put_varint(&h, type) < 0 || lr_buf_put_varint(&h, len) < 0) {
            lr_buf_release(&h);
            return LR_EBADVAL;
        }
        uint8_t *hdr = lr_buf_detach(&h, &hn); /* sets hn: not inside the call below */
        append_chunk(c, slot, hdr, hn, NULL);
        append_chunk(c, slot, (uint8_t *)(uintptr_t)payload, len, free_fn);
        c->payload_sent += len;
    } else {
        rc = queue_frame(c, slot, type, payload, len);
    }
    if (rc == 0)
        process_dirty(t);
    return rc;
}

static int check_frame(uint64_t type, size_t len)
{
    if (type == LR_MSG_HELLO)
        return LR_EUSAGE;
    if (type == 0 || type > LR_VARINT_MAX)
        return LR_EBADVAL;
    size_t max = lr_proto_max_payload(type);
    if (max == 0)
        max = LR_PROTO_UNKNOWN_MAX;
    return len > max ? LR_ETOOBIG : 0;
}

int lr_conn_send(struct lr_conn *c, enum lr_stream_class cls, uint64_t type, const void *payload,
                 size_t len)
{
    int rc = check_frame(type, len);
    return rc < 0 ? rc : send_common(c, cls, type, payload, len, SEND_COPY, NULL);
}

int lr_conn_send_owned(struct lr_conn *c, enum lr_stream_class cls, uint64_t type, void *payload,
                       size_t len, void (*free_fn)(void *payload))
{
    int rc = check_frame(type, len);
    return rc < 0 ? rc : send_common(c, cls, type, payload, len, SEND_OWNED, free_fn);
}

int lr__conn_send_raw(struct lr_conn *c, enum lr_stream_class cls, const void *p, size_t len)
{
    return send_common(c, cls, 0, p, len, SEND_RAW, NULL);
}

void lr_conn_close(struct lr_conn *c, const char *reason)
{
    lr_conn_close_app(c, LR_TRANSPORT_APP_NO_ERROR, reason);
}

void lr_conn_close_app(struct lr_conn *c, uint64_t app, const char *reason)
{
    struct lr_transport *t = c->t;
    conn_close_app(c, app, reason ? reason : "closed", false);
    process_dirty(t);
}

const struct lr_device_id *lr_conn_peer(const struct lr_conn *c)
{
    return &c->peer;
}

const char *lr_conn_addr(const struct lr_conn *c)
{
    return c->addr;
}

bool lr_conn_lost_reason(const char *reason)
{
    return reason &&
           (strcmp(reason, LR_CONN_LOST_IDLE) == 0 || strcmp(reason, LR_CONN_LOST_PROBE) == 0 ||
            strcmp(reason, LR_CONN_LOST_STALL) == 0 || strcmp(reason, LR_CONN_LOST_RESET) == 0);
}

bool lr_conn_probe(struct lr_conn *c, uint64_t timeout_ms)
{
    if (c->state != CS_UP || c->probe_deadline)
        return false;
    c->probe_acked = c->acked;
    c->probe_deadline = now_ns() + timeout_ms * MS;
    return true;
}

void lr_conn_get_stats(const struct lr_conn *c, struct lr_conn_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->payload_sent = c->payload_sent;
    out->payload_recv = c->payload_recv;
    out->stream_recv = c->stream_recv;
    out->handshake_ns = c->hs_ns;
    out->queued = c->queued;
    out->outgoing = c->is_client;
    uint64_t since = c->last_rx_ns ? c->last_rx_ns : c->start_ns, now = now_ns();
    out->silent_ns = now > since ? now - since : 0;
    if (c->qc) {
        ngtcp2_conn_stat cs;
        ngtcp2_conn_get_conn_stat(c->qc, &cs);
        out->smoothed_rtt_ns = cs.smoothed_rtt;
    }
}

size_t lr__transport_nconns(const struct lr_transport *t)
{
    return t->nconns;
}

uint64_t lr__transport_resets_sent(const struct lr_transport *t)
{
    return t->resets_sent;
}

#ifdef LR_FAILPOINTS
void lr__transport_mute_hello(struct lr_transport *t, uint64_t peer_hello_timeout_ms)
{
    t->fp_mute_hello = true;
    t->hello_timeout_ms = peer_hello_timeout_ms;
}

void lr__transport_fail_eagain(struct lr_transport *t, unsigned every)
{
    for (size_t i = 0; i < t->nsocks; i++)
        t->socks[i].fp_eagain_every = every;
}

void lr__transport_fail_drop(struct lr_transport *t, unsigned every)
{
    for (size_t i = 0; i < t->nsocks; i++)
        t->socks[i].fp_drop_every = every;
}
#endif

size_t lr__conn_pkt_size(struct lr_conn *c)
{
    size_t n = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
    return n < c->pkt_max ? n : c->pkt_max;
}

uint64_t lr__transport_conns_made(const struct lr_transport *t)
{
    return t->conns_made;
}

void lr__transport_set_dial_defer(struct lr_transport *t, uint32_t ms)
{
    t->dial_defer_ms = ms;
}

uint64_t lr__transport_eagain(const struct lr_transport *t)
{
    return t->eagain;
}

/* ---- pairing connections ---- */

void lr_transport_pair_listen(struct lr_transport *t, bool on)
{
    if (t->pair_listen != on)
        lr_debug(MOD, "pairing connections %s", on ? "accepted" : "refused");
    t->pair_listen = on;
}

int lr_transport_pair_dial(struct lr_transport *t, const char *addr, struct lr_conn **out,
                           struct lr_err *err)
{
    struct lr__addr a;
    struct lr_conn *c = NULL;
    *out = NULL;
    if (t->closing)
        return lr_err_set(err, LR_ECANCELED, "pair dial: transport closing");
    if (!addr || lr__addr_parse(addr, &a) < 0)
        return lr_err_set(err, LR_EUSAGE, "pair dial: address '%s' is not numeric host:port",
                          addr ? addr : "(null)");
    /* No write from in here: a failure must not report on_closed before *out is set. */
    t->depth++;
    int rc = conn_new_client(t, NULL, &a, &c);
    t->depth--;
    if (rc < 0)
        return lr_err_set(err, rc, "pair dial %s: %s", addr, lr_strerror(rc));
    c->pair_known = true;
    uv_timer_start(&c->timer, timer_cb, 0, 0); /* first flight from the loop */
    *out = c;
    return 0;
}

int lr_conn_pair_send(struct lr_conn *c, const void *p, size_t len)
{
    struct lr_transport *t = c->t;
    if (!c->pair || c->state != CS_PAIR || !conn_live(c))
        return LR_ECANCELED;
    if (c->queued > 0 && c->queued + len > t->budget)
        return LR_EBUSY;
    if (len == 0)
        return 0;
    append_chunk(c, 0, lr_xmemdup(p, len), len, NULL);
    c->payload_sent += len;
    process_dirty(t);
    return 0;
}

int lr_conn_export(const struct lr_conn *c, const char *label, uint8_t *out, size_t len)
{
    if (!c->tls || !c->qc || !ngtcp2_conn_get_handshake_completed(c->qc) || len > 255)
        return LR_ECANCELED;
    if (gnutls_prf_rfc5705(c->tls, strlen(label), label, 0, NULL, len, (char *)out) < 0)
        return LR_ETLS;
    return 0;
}
