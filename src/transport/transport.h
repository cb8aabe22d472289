/*
 * transport.h - QUIC connections between devices, with pinned mutual TLS.
 *
 * A transport owns one non-blocking UDP socket per listen address, watched
 * with a uv_poll_t on the caller's libuv loop, and every QUIC connection
 * (ngtcp2 0.12 + GnuTLS 3.7) made or accepted on those sockets. It is both
 * server (accepts any device the owner trusts) and client (dials the peers
 * the owner added, redialling with backoff after a loss).
 *
 * Trust. TLS 1.3 with the device certificates on both sides and no CA: a
 * device is its certificate's SPKI SHA-256 (its device ID, identity.h).
 *  - Server side: a client certificate is required; the server asks
 *    cbs.is_trusted(id) while verifying it, inside the handshake. An
 *    untrusted device is refused there (TLS alert, nothing it sends is
 *    processed) and reported through cbs.on_refused, at most once per
 *    device per LR_TRANSPORT_REFUSE_REPORT_MS.
 *  - Client side: the server's ID must equal the ID given to
 *    lr_transport_dial() (the pin); a mismatch aborts the handshake.
 *  - ALPN "landropic/1" is mandatory on both sides.
 *
 * Connection life. After the QUIC handshake is *confirmed* (pitfall 5: the
 * client's "completed" fires before the server has judged the client's
 * certificate), the client opens the control stream (bidi stream 0) and
 * sends HELLO as its first frame; the server answers with its own HELLO on
 * that stream once it has the client's. A connection is reported up
 * (on_connected) only after a valid HELLO from the peer, and it is reported
 * down (on_disconnected) exactly once after that. A connection that never
 * came up is never reported.
 *
 * One connection per peer. A newly authenticated connection with a peer
 * replaces an older one (the older one may predate a restart of the peer),
 * except when the two are "crossing dials": made in opposite directions,
 * the other one not yet up or up for less than LR_TRANSPORT_CROSS_MS.
 * Then both ends keep the connection dialled by the lower device ID
 * (memcmp order of the 32 ID bytes) and close the other one with
 * LR_TRANSPORT_APP_DUPLICATE, so the two ends agree without talking. To make
 * that rare, the device with the higher ID dials LR_TRANSPORT_DIAL_DEFER_MS
 * later than it otherwise would (first dial and every redial). And when a
 * connection with a peer comes up, our own dial to it that has not finished
 * its TLS handshake (its first packet lost, say, because the peer was not
 * listening yet) is dropped without a word: it has not sent its Finished,
 * so the peer cannot have it up, and completing it would only replace the
 * connection in use a moment later.
 *
 * Frames. Every stream carries proto.h frames (varint type | varint length |
 * payload). The sender picks a class per frame: LR_STREAM_CONTROL (stream 0,
 * frames delivered in send order) or LR_STREAM_BULK (one of
 * LR_TRANSPORT_BULK_STREAMS unidirectional streams per direction, frames
 * ordered only within a stream, so two bulk frames may arrive in either
 * order), or LR_STREAM_LIGHT (below). Incoming frames are delivered to cbs.on_message; unknown
 * types are skipped; a malformed frame, a frame over its type's limit, a second HELLO or a stream
 * the peer must not use closes the connection with a logged reason (application error
 * LR_TRANSPORT_APP_PROTO).
 *
 * Backpressure. lr_conn_send() copies the frame (lr_conn_send_owned() takes
 * the payload buffer over instead) into a per-connection queue whose bytes
 * stay allocated until the peer has acknowledged them (ngtcp2 does not copy
 * stream data). When a frame would take a non-empty queue over the
 * configured budget, the send is refused with LR_EBUSY; cbs.on_writable is
 * then called once the queue has drained to half the budget.
 *
 * Stateless reset. Every connection ID this transport issues (server and
 * client side; QUIC has no token for a client's first one) carries a
 * stateless reset token derived from a 32-byte secret kept in
 * HOME/reset.key (created once, mode 0600). Short-header packets for
 * unknown connection IDs are answered with a stateless reset (rate-limited),
 * so after a restart the peers' stale connections die at their next packet
 * instead of at the idle timeout. (When the dialling side restarts, its new
 * connection replaces the stale one, see above.)
 *
 * Pairing connections (docs/pairing.md). A second kind of connection, for
 * short-code pairing only, with its own ALPN LR_TRANSPORT_PAIR_ALPN
 * ("landropic-pair/1"):
 *  - Trust: on this ALPN only, either side accepts any certificate; the
 *    peer's device ID (its certificate's, as above) is merely reported, and
 *    the caller's PAKE decides. A pairing connection is never a sync
 *    connection: it sends no HELLO, is never reported through
 *    on_connected/on_message/on_disconnected, never replaces or counts as a
 *    connection with its peer, and lr_transport_conn() never returns it. A
 *    sync connection (ALPN "landropic/1") still needs is_trusted / the pin.
 *  - Server side: the pairing ALPN is offered only while
 *    lr_transport_pair_listen(t, true) is in force (e.g. a live code);
 *    otherwise a pairing client is refused in the ClientHello (no common
 *    ALPN), and a handshake that got the ALPN before listening stopped is
 *    refused when the client certificate is judged.
 *  - Client side: lr_transport_pair_dial() offers only the pairing ALPN,
 *    once (no redial).
 *  - Once the handshake is done (client: confirmed), pair_cbs.on_up reports
 *    the connection with the peer's certificate ID; lr_conn_export() gives
 *    the TLS exporter (RFC 5705/8446) to bind the PAKE to this session. The
 *    client opens stream 0 (bidirectional); its bytes are the only data:
 *    lr_conn_pair_send() appends raw bytes (the caller frames them), and
 *    pair_cbs.on_data delivers what arrives, in order, as it arrives. Any
 *    other stream closes the connection. The client speaks first: the
 *    server's bytes leave once the client's first bytes opened the stream.
 *  - A pairing connection lives at most pair_timeout_ms (default
 *    LR_TRANSPORT_PAIR_TIMEOUT_MS) from its creation, handshake included.
 *  - pair_cbs.on_closed is called exactly once for every pairing connection
 *    the owner knows of: reported by on_up, or returned by
 *    lr_transport_pair_dial() (even if it never came up).
 *
 * Threading: everything here runs on the loop thread that owns `loop`; no
 * function may be called from another thread. Callbacks run on that thread
 * too, possibly from inside packet processing: a callback may call any
 * function here except lr_transport_close (sends are queued and written
 * when processing returns, closes are deferred), but must not run the loop.
 *
 * Errors: functions return 0 or a negative code (util/err.h, or -errno);
 * they fill `err` (may be NULL) naming the culprit.
 */
#ifndef LR_TRANSPORT_TRANSPORT_H
#define LR_TRANSPORT_TRANSPORT_H

#include "identity/identity.h"
#include "proto/proto.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Default listen address: one dual-stack socket. */
#define LR_TRANSPORT_DEFAULT_LISTEN "[::]:21037"
/* Instead of the default when the kernel has no IPv6. */
#define LR_TRANSPORT_DEFAULT_LISTEN4 "0.0.0.0:21037"
#define LR_TRANSPORT_DEFAULT_PORT 21037
/* Most listen addresses one transport takes. */
#define LR_TRANSPORT_MAX_LISTEN 8
/* Most addresses remembered per dialled peer. */
#define LR_TRANSPORT_MAX_ADDRS 8
/* Unidirectional bulk streams per direction. */
#define LR_TRANSPORT_BULK_STREAMS 4
/* on_refused is called at most once per device per this many ms. */
#define LR_TRANSPORT_REFUSE_REPORT_MS 60000
/* Window for "crossing dials" (see One connection per peer above). */
#define LR_TRANSPORT_CROSS_MS 2000
/* The device with the higher ID dials this much later (makes crossing dials
 * rare): many handshake round trips on a LAN, and short, because when the
 * lower ID dialled first into a peer not yet listening (its first packet is
 * lost and retried after a second), this is how long the two wait. */
#define LR_TRANSPORT_DIAL_DEFER_MS 150
/* A connection whose HELLO has not arrived this long after the handshake is closed. */
#define LR_TRANSPORT_HELLO_TIMEOUT_MS 10000

/* ALPN of pairing connections (= LR_PAIR_ALPN, pair/msg.h). */
#define LR_TRANSPORT_PAIR_ALPN "landropic-pair/1"
/* Whole life of a pairing connection, handshake included. */
#define LR_TRANSPORT_PAIR_TIMEOUT_MS 30000

/* QUIC application error codes in our CONNECTION_CLOSE frames. */
enum lr_transport_app_error {
    LR_TRANSPORT_APP_NO_ERROR = 0,  /* orderly close (lr_transport_close, forget) */
    LR_TRANSPORT_APP_PROTO = 1,     /* malformed or illegal frame */
    LR_TRANSPORT_APP_DUPLICATE = 2, /* replaced by another connection with the peer */
    LR_TRANSPORT_APP_INTERNAL = 3,  /* local failure (reserved) */
};

enum lr_stream_class {
    LR_STREAM_CONTROL = 0, /* stream 0: ordered with every other control frame */
    LR_STREAM_BULK = 1,    /* a bulk stream: large transfers, no cross-frame order */
    /* A small frame that must not wait behind bulk data (a request: the
     * peer's answer is what moves next). The least loaded bulk stream, or
     * the control stream when every bulk stream has a backlog (so no order
     * either), and accepted past the send budget by up to an eighth of it:
     * a device sending a large file over a slow link otherwise held its own
     * requests for seconds behind the budget's worth of that file. */
    LR_STREAM_LIGHT = 2,
};

struct lr_transport;
/* One QUIC connection with an authenticated peer. */
struct lr_conn;

/*
 * Callbacks, all optional except is_trusted (which, if NULL, trusts nobody).
 * `ud` is passed back unchanged. Pointer arguments are borrowed: valid only
 * during the call; copy what you keep.
 */
struct lr_transport_cbs {
    void *ud;
    /* Is this device allowed in? Asked during every incoming handshake. */
    bool (*is_trusted)(void *ud, const struct lr_device_id *peer);
    /* An untrusted device tried to connect from `addr` ("1.2.3.4:5" or "[::1]:5"). */
    void (*on_refused)(void *ud, const struct lr_device_id *peer, const char *addr);
    /*
     * The connection is up: the peer is authenticated and sent `hello`.
     * `c` stays valid until on_disconnected(c) returns.
     */
    void (*on_connected)(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                         const struct lr_proto_hello *hello);
    /* `c` is gone (reason is a short human phrase); do not use `c` after returning. */
    void (*on_disconnected)(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                            const char *reason);
    /* One whole frame (never HELLO) from an up connection; payload is
     * borrowed for the call (lr_conn_take_payload keeps it). */
    void (*on_message)(void *ud, struct lr_conn *c, uint64_t type, const uint8_t *payload,
                       size_t len);
    /* A send that returned LR_EBUSY may now be retried. */
    void (*on_writable)(void *ud, struct lr_conn *c);
};

/*
 * Callbacks for pairing connections (see "Pairing connections"), all
 * optional; `ud` is passed back unchanged; pointer arguments are borrowed.
 */
struct lr_transport_pair_cbs {
    void *ud;
    /* Handshake done: `peer` is the ID of the certificate the peer presented
     * (any). `c` stays valid until on_closed(c) returns. */
    void (*on_up)(void *ud, struct lr_conn *c, const struct lr_device_id *peer, bool outgoing);
    /* Bytes from the peer's stream 0, in order (no framing by the transport). */
    void (*on_data)(void *ud, struct lr_conn *c, const uint8_t *p, size_t n);
    /* `c` is gone (reason: a short phrase); do not use `c` after returning. */
    void (*on_closed)(void *ud, struct lr_conn *c, const char *reason);
};

struct lr_transport_config {
    /*
     * Listen addresses, numeric "host:port" ("[::]:21037", "127.0.0.1:0");
     * port 0 picks a free port (see lr_transport_local_port). NULL/0 means
     * LR_TRANSPORT_DEFAULT_LISTEN. "[::]" is dual-stack. Copied.
     */
    const char *const *listen;
    size_t nlisten;
    /* PEM files of this device (identity.h); read during lr_transport_new. */
    const char *cert_path;
    const char *key_path;
    /* Directory holding reset.key (created if absent). */
    const char *home;
    /* Our HELLO, sent on every connection. Copied. */
    struct lr_proto_hello hello;
    /* 0 = defaults: idle 60000 ms, keep-alive 15000 ms (never above a third
     * of the idle timeout), budget 8 MiB. */
    uint64_t idle_timeout_ms;
    uint64_t keepalive_ms;
    /* A connection whose stream data nobody acknowledged for this long,
     * while the peer was heard, is closed (to be dialled afresh); 0 = 15000 ms. */
    uint64_t send_stall_ms;
    size_t send_budget;
    /* Redial backoff bounds; 0 = 1000 ms and 60000 ms. */
    uint32_t backoff_min_ms;
    uint32_t backoff_max_ms;
    /* Randomness for backoff jitter; NULL = gnutls_rnd. */
    uint64_t (*rng)(void *rng_ud);
    void *rng_ud;
    /* Disable UDP_SEGMENT / UDP_GRO + recvmmsg batching (for measurements). */
    bool no_gso;
    bool no_gro;
    /* Keep 1452-byte packets to peers on this host too (for measurements). */
    bool no_host_jumbo;
    /* Callbacks for pairing connections (copied); ud may differ from cbs.ud. */
    struct lr_transport_pair_cbs pair_cbs;
    /* Life of a pairing connection; 0 = LR_TRANSPORT_PAIR_TIMEOUT_MS. */
    uint64_t pair_timeout_ms;
};

/* Counters of one connection. */
struct lr_conn_stats {
    uint64_t payload_sent; /* frame payload bytes queued by lr_conn_send* (HELLO included) */
    uint64_t payload_recv; /* frame payload bytes delivered (HELLO included, skipped excluded) */
    uint64_t stream_recv;  /* stream bytes received: headers and skipped frames included */
    uint64_t handshake_ns; /* start (dial or first Initial) -> handshake confirmed */
    uint64_t smoothed_rtt_ns;
    size_t queued;      /* bytes queued, not yet acknowledged */
    uint64_t silent_ns; /* since the last packet received (a dead peer is only
                           declared so at the idle timeout) */
    bool outgoing;      /* we dialled it */
};

/* ---- Lifecycle ---- */

/*
 * Create a transport on `loop` (borrowed: must outlive the transport):
 * load the certificate and key, load or create HOME/reset.key, bind every
 * listen address and start reading. `cfg` and `cbs` are copied.
 * Returns 0 and *out, or LR_EUSAGE (bad or too many addresses, no home,
 * invalid HELLO), LR_ETLS (certificate or key), LR_ECONFIG (reset.key is
 * not 32 bytes), -errno (socket, bind, reset.key I/O).
 */
int lr_transport_new(uv_loop_t *loop, const struct lr_transport_config *cfg,
                     const struct lr_transport_cbs *cbs, struct lr_transport **out,
                     struct lr_err *err);

#define LR_TRANSPORT_CLOSE_SILENT 1u /* drop connections without CONNECTION_CLOSE (tests) */

/*
 * Close every connection (CONNECTION_CLOSE to each peer unless
 * LR_TRANSPORT_CLOSE_SILENT; on_disconnected for each up connection), stop
 * dialling, close every uv handle, free the transport, then call done(ud)
 * (may be NULL) from the loop. `t` is invalid as soon as this returns; keep
 * running the loop until done is called. Must not be called twice, nor from
 * inside one of the transport's own callbacks (defer it, e.g. uv_idle).
 */
void lr_transport_close(struct lr_transport *t, unsigned flags, void (*done)(void *ud), void *ud);

/* This device's ID (borrowed, valid while t lives). */
const struct lr_device_id *lr_transport_device_id(const struct lr_transport *t);

/* Bound UDP port of listen address `i` (useful with port 0), or a negative code. */
int lr_transport_local_port(const struct lr_transport *t, size_t i);

/* ---- Peers ---- */

/*
 * Keep a connection with `peer` at one of `addrs` (numeric "host:port",
 * copied; at most LR_TRANSPORT_MAX_ADDRS used). Dials now unless a
 * connection with it exists or is being made; after every loss redials,
 * cycling through the addresses, with exponential backoff and jitter
 * (backoff_min_ms doubling to backoff_max_ms, reset once a connection is
 * up). Calling it again replaces the addresses. LR_EUSAGE if an address
 * does not parse or `peer` is this device; LR_ECANCELED while closing. (An
 * address no socket can reach, e.g. IPv6 with only an IPv4 listener, fails
 * each attempt and is retried with backoff like any failed dial.)
 */
int lr_transport_dial(struct lr_transport *t, const struct lr_device_id *peer,
                      const char *const *addrs, size_t naddrs, struct lr_err *err);

/*
 * Stop dialling `peer` and close any connection with it (on_disconnected is
 * called for an up one). Returns LR_ENOTFOUND if there was nothing to stop.
 */
int lr_transport_forget_peer(struct lr_transport *t, const struct lr_device_id *peer);

/* Whether a connection with `peer` is being made: one handshaking or
 * waiting for its HELLO (either direction), or our dial to it due within
 * LR_TRANSPORT_DIAL_DEFER_MS. */
bool lr_transport_connecting(struct lr_transport *t, const struct lr_device_id *peer);

/* The up connection with `peer`, or NULL. */
struct lr_conn *lr_transport_conn(struct lr_transport *t, const struct lr_device_id *peer);

/* Stats of the up connection with `peer`: 0, or LR_ENOTFOUND. */
int lr_transport_peer_stats(struct lr_transport *t, const struct lr_device_id *peer,
                            struct lr_conn_stats *out);

/* ---- Connections ---- */

/*
 * Queue one frame (type, payload[0..len)) on `c`; the payload is copied.
 * Returns 0; LR_EBUSY if the queue is over budget (nothing queued:
 * retry after on_writable); LR_ETOOBIG if len is over the type's limit
 * (lr_proto_max_payload, or LR_PROTO_UNKNOWN_MAX for a type it does not
 * know); LR_EUSAGE for type HELLO; LR_EBADVAL for type 0 or >= 2^62;
 * LR_ECANCELED if `c` is not up (closing, or gone).
 */
int lr_conn_send(struct lr_conn *c, enum lr_stream_class cls, uint64_t type, const void *payload,
                 size_t len);

/*
 * Like lr_conn_send, but the payload is taken over instead of copied (for
 * large frames: chunk data). On 0 the transport keeps `payload` until the
 * peer has acknowledged it, or the connection is gone, then calls
 * free_fn(payload) exactly once (free_fn NULL means free()); the caller must
 * not modify it meanwhile. On any error nothing is taken: the caller still
 * owns `payload`. free_fn runs on the loop thread, possibly from inside
 * another transport call, and must not call into the transport.
 */
int lr_conn_send_owned(struct lr_conn *c, enum lr_stream_class cls, uint64_t type, void *payload,
                       size_t len, void (*free_fn)(void *payload));

/*
 * Inside on_message(c, ..., payload, ...), with that payload: the buffer
 * holding it, now the caller's to free() (a consumer that keeps a large
 * payload, chunk data, takes it instead of copying it). NULL outside that
 * call, for another pointer, for an empty payload or the second time.
 */
uint8_t *lr_conn_take_payload(struct lr_conn *c, const uint8_t *payload);

/* Close `c` with CONNECTION_CLOSE; on_disconnected follows (maybe after returning). */
void lr_conn_close(struct lr_conn *c, const char *reason);
/* Same, with application error `app` (LR_TRANSPORT_APP_*), e.g. PROTO for a
 * peer that broke the protocol above the transport. */
void lr_conn_close_app(struct lr_conn *c, uint64_t app, const char *reason);

/* The authenticated peer of `c` (borrowed, valid while c lives). */
const struct lr_device_id *lr_conn_peer(const struct lr_conn *c);

/* Remote address as text, e.g. "127.0.0.1:21037" (borrowed, valid while c lives). */
const char *lr_conn_addr(const struct lr_conn *c);

void lr_conn_get_stats(const struct lr_conn *c, struct lr_conn_stats *out);

/*
 * Expect `c` to be answered: unless the peer acknowledges some stream data
 * within timeout_ms (checked every 2 s, so up to 2 s later), the connection
 * is taken for dead and closed ("no answer to a probe"), as after a loss:
 * on_closed, then redialled if the peer has addresses. The caller sends
 * something to acknowledge right after (a PING: an idle connection has
 * nothing in flight). A probe already running is kept. For a peer that
 * announced itself on the LAN while we hold a connection to it: after a
 * change of address, packets to the old one go nowhere and, unlike a
 * restart, draw no stateless reset, so only the idle timeout would end it.
 * True if this call started a probe (the caller sends its PING then).
 */
bool lr_conn_probe(struct lr_conn *c, uint64_t timeout_ms);

/* Disconnect reasons (on_disconnected) that say the path failed rather
 * than either side closing on purpose. A stateless reset counts: the peer
 * no longer knows the connection, because it restarted or because its own
 * probe or idle timeout ended it while the path was down, and it is alive
 * (it answered). */
#define LR_CONN_LOST_IDLE "idle timeout"
#define LR_CONN_LOST_PROBE "no answer to a probe"
#define LR_CONN_LOST_STALL "our data unacknowledged"
#define LR_CONN_LOST_RESET "stateless reset by peer"
/* Whether a disconnect reason is one of those. */
bool lr_conn_lost_reason(const char *reason);

/* ---- Pairing connections ---- */

/*
 * Accept pairing connections (offer LR_TRANSPORT_PAIR_ALPN to new
 * handshakes) from now on, or stop. Stopping does not close pairing
 * connections already accepted (their owner does that).
 */
void lr_transport_pair_listen(struct lr_transport *t, bool on);

/*
 * Dial `addr` (numeric "host:port", copied) once for pairing, accepting
 * whatever certificate answers. *out is the connection (borrowed; valid
 * until pair_cbs.on_closed(c) returns, which always follows). LR_EUSAGE if
 * the address does not parse or no socket can reach it; LR_ECANCELED while
 * closing; LR_EINTERNAL / LR_ETLS if set-up fails (then nothing follows).
 */
int lr_transport_pair_dial(struct lr_transport *t, const char *addr, struct lr_conn **out,
                           struct lr_err *err);

/*
 * Queue raw bytes (copied) on the pairing stream of up pairing connection
 * `c`. LR_ECANCELED if `c` is not an up pairing connection (or closing);
 * LR_EBUSY over the send budget.
 */
int lr_conn_pair_send(struct lr_conn *c, const void *p, size_t len);

/*
 * TLS exporter of `c`'s session (gnutls_prf_rfc5705, `label`, empty
 * context) into out[len] (len <= 255). 0, or LR_ECANCELED before the
 * handshake is complete, LR_ETLS on failure. Both ends of one session get
 * the same bytes; any other session different ones.
 */
int lr_conn_export(const struct lr_conn *c, const char *label, uint8_t *out, size_t len);

#endif
