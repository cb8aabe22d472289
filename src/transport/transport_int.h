/*
 * transport_int.h - internals shared by quic.c, udp.c and tls.c only.
 *
 * Layering: quic.c owns connections, peers and the connection-ID map;
 * udp.c owns sockets and batched I/O (GSO/GRO, pktinfo) and knows nothing
 * of QUIC; tls.c owns GnuTLS credentials and sessions and calls back into
 * quic.c (lr__conn_peer_cert) to judge a peer certificate.
 *
 * Test hooks at the end are for tests/unit/test_transport.c only.
 */
#ifndef LR_TRANSPORT_TRANSPORT_INT_H
#define LR_TRANSPORT_TRANSPORT_INT_H

#include "transport/backoff.h"
#include "transport/transport.h"

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Length of every connection ID we issue (fixed: short headers carry no length). */
#define LR__CIDLEN 16
/* recvmmsg batch: datagrams per call, bytes per datagram (a whole GRO super-packet). */
#define LR__RX_BATCH 32
#define LR__RX_BUFSZ 65536
/* A GSO batch is at most 64 KiB and 64 segments. */
#define LR__GSO_MAX_BYTES 65000
#define LR__GSO_MAX_SEGS 64
/* Largest UDP payload we write to a peer elsewhere (ngtcp2 0.12 default and PMTUD ceiling). */
#define LR__PKT_MAX 1452
/*
 * Largest UDP payload we write to a peer on this host: the path is the
 * loopback device (MTU 64 KiB), so no probing is needed, and fewer larger
 * packets cut the per-packet crypto and ngtcp2 work (docs/internals.md,
 * "Transport").
 */
#define LR__PKT_MAX_HOST 16000
/* Requested socket buffers. */
#define LR__SOCKBUF (4 << 20)
/* Connections still in their handshake, across the transport. */
#define LR__MAX_HANDSHAKING 128
/* Stateless resets sent per second at most. */
#define LR__RESET_PER_SEC 32
/* Refusal reports remembered for rate limiting. */
#define LR__REFUSE_SLOTS 64
/* Send slots: control + bulk. Receive slots: control + the peer's bulk streams. */
#define LR__NSLOTS (1 + LR_TRANSPORT_BULK_STREAMS)

struct lr__addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

struct lr__sock {
    struct lr_transport *t;
    int fd;
    int family;
    bool wildcard; /* bound to 0.0.0.0 / :: : needs pktinfo to learn and set the local address */
    bool gso;
    bool gro;
    bool poll_init;
    int events;
    struct lr__addr local;
    uv_poll_t poll;
    /* recvmmsg buffers: LR__RX_BATCH * LR__RX_BUFSZ, allocated on first read. */
    uint8_t *rxbuf;
#ifdef LR_FAILPOINTS
    unsigned fp_eagain_every; /* pretend every Nth send finds the socket full */
    unsigned fp_sends;
    unsigned fp_drop_every; /* lose every Nth datagram on the way out */
    unsigned fp_datagrams;
#endif
};

/* ---- udp.c ---- */

/* Parse numeric "a.b.c.d:port" or "[v6]:port" into *out. LR_EUSAGE if malformed. */
int lr__addr_parse(const char *s, struct lr__addr *out);
/* "a.b.c.d:port" / "[v6]:port" (v4-mapped shown as v4) into out[n]. */
void lr__addr_fmt(const struct sockaddr *sa, char *out, size_t n);
/* Open, configure and bind a socket for `a`; s->t must be set. An IPv6
 * wildcard is dual-stack unless `v6only` (another listen address takes
 * IPv4 on that port). */
int lr__sock_open(struct lr__sock *s, const struct lr__addr *a, bool v6only, bool no_gso,
                  bool no_gro, struct lr_err *err);
/*
 * Send len bytes as one datagram, or as len/segsz segments with GSO when
 * segsz < len. *done gets the bytes handed to the kernel (segment-aligned).
 * Returns 0, or -EAGAIN (the rest, from *done, must be retried when the
 * socket is writable). Other errors drop the packets (QUIC recovers); an
 * error saying the path itself is unusable (lr__path_error) is returned,
 * after the whole length counted done, so the connection can give up; else
 * -EMSGSIZE if a datagram was over the path's MTU, so the connection sends
 * smaller ones from then on.
 */
/* 0: a send error QUIC's loss recovery covers (a full buffer, a filter
 * dropping the packet: EPERM); LR__PATH_GONE: our source address is no
 * longer ours (EINVAL with pktinfo, EADDRNOTAVAIL); LR__PATH_DOWN: no route
 * (ENETUNREACH, EHOSTUNREACH, ENETDOWN), perhaps for a moment. */
enum { LR__PATH_OK = 0, LR__PATH_GONE = 1, LR__PATH_DOWN = 2 };
int lr__path_error(int neg_errno);
int lr__sock_send(struct lr__sock *s, const ngtcp2_path *path, const uint8_t *data, size_t len,
                  size_t segsz, size_t *done);
/* One received UDP payload; path->local is the receiving address. */
typedef void (*lr__rx_cb)(struct lr__sock *s, const ngtcp2_path *path, const uint8_t *pkt,
                          size_t len);
/* Read until EAGAIN or `max_rounds` batches; calls cb per packet (GRO split). */
void lr__sock_read(struct lr__sock *s, lr__rx_cb cb, int max_rounds);
/*
 * The local address a packet to `remote` leaves from, in the form the
 * receive path reports (v4-mapped on a dual-stack socket), with s's port.
 * *remote_out is `remote` in the socket's family.
 */
int lr__sock_local_for(const struct lr__sock *s, const struct lr__addr *remote,
                       struct lr__addr *local_out, struct lr__addr *remote_out);
void lr__sock_release(struct lr__sock *s);
/*
 * True if packets between `local` and `remote` (as a connection's path has
 * them) stay on this host: `remote` is a loopback address, or the same
 * address as `local` (a peer reached at one of our own addresses; the
 * kernel then sends from that address, through the loopback device).
 */
bool lr__path_on_host(const struct sockaddr *local, const struct sockaddr *remote);
/* True if `sa` (v4, v6 or v4-mapped; not a wildcard) is no longer an
 * address of this host (getifaddrs; false when that fails). */
bool lr__addr_gone(const struct sockaddr *sa);

/* ---- tls.c ---- */

struct lr__tls {
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
    struct lr_device_id id;
};

int lr__tls_init(struct lr__tls *tls, const char *cert_path, const char *key_path,
                 struct lr_err *err);
void lr__tls_release(struct lr__tls *tls);
/*
 * New session for a connection; `ref` (retained, must outlive the session)
 * reaches the conn. ALPN offered: client: LR_PROTO_ALPN, or only
 * LR_TRANSPORT_PAIR_ALPN if `pair`; server: LR_PROTO_ALPN, plus
 * LR_TRANSPORT_PAIR_ALPN if `pair` (pairing is open).
 */
int lr__tls_session_new(struct lr__tls *tls, bool server, bool pair, ngtcp2_crypto_conn_ref *ref,
                        gnutls_session_t *out);
/* The negotiated ALPN: 0 none/other, 1 LR_PROTO_ALPN, 2 LR_TRANSPORT_PAIR_ALPN. */
int lr__tls_alpn(gnutls_session_t s);

/* ---- quic.c, called from tls.c ---- */

/*
 * The peer presented a certificate with this ID: accept it? (records the ID)
 * `alpn` is lr__tls_alpn() of the session at that point (already chosen).
 */
bool lr__conn_peer_cert(struct lr_conn *c, const struct lr_device_id *id, int alpn);

/* ---- test hooks ---- */

/* Queue raw stream bytes on `c` (to forge malformed frames). */
int lr__conn_send_raw(struct lr_conn *c, enum lr_stream_class cls, const void *p, size_t len);
/* Segment size c's sends use now: its packet cap, within what ngtcp2 allows on its path. */
size_t lr__conn_pkt_size(struct lr_conn *c);
/* Number of live connections (any state). */
size_t lr__transport_nconns(const struct lr_transport *t);
#ifdef LR_FAILPOINTS
/*
 * Make every Nth send on t's sockets stop after its first segment with
 * EAGAIN (0: off), as a full socket buffer would; loopback never fills one.
 */
void lr__transport_fail_eagain(struct lr_transport *t, unsigned every);
/* Lose every Nth datagram t sends (0: off), as a lossy link would; loopback loses none. */
void lr__transport_fail_drop(struct lr_transport *t, unsigned every);
/* t's client connections never send HELLO; t waits for HELLOs only this long. */
void lr__transport_mute_hello(struct lr_transport *t, uint64_t peer_hello_timeout_ms);
#endif
/* Connections created so far (dialled or accepted). */
uint64_t lr__transport_conns_made(const struct lr_transport *t);
/* Override LR_TRANSPORT_DIAL_DEFER_MS (0: the higher ID dials at once too). */
void lr__transport_set_dial_defer(struct lr_transport *t, uint32_t ms);
/* Sends that hit EAGAIN so far. */
uint64_t lr__transport_eagain(const struct lr_transport *t);
/* Stateless resets sent so far. */
uint64_t lr__transport_resets_sent(const struct lr_transport *t);

#endif
