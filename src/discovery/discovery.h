/*
 * discovery.h - LAN discovery: send this device's signed announcement
 * (announce.h) to a multicast group on every interface, hear others'.
 *
 * Groups (docs/discovery.md): IPv4 239.255.21.37 (organisation-local scope,
 * TTL 1) and IPv6 ff12::2137 (link-local scope, transient, hop limit 1), both
 * on UDP port LR_DISCOVERY_PORT (21038: the transport holds 21037). One
 * socket per family, bound to the wildcard address with SO_REUSEADDR (several
 * daemons on one host all receive), joined to the group on every up,
 * multicast-capable, non-loopback interface that has an address of that
 * family (IPv6: a link-local one); each send picks its interface with
 * IP_MULTICAST_IF / IPV6_MULTICAST_IF, so no default route is needed. A
 * family whose socket cannot be opened is skipped (logged); start fails only
 * if neither works.
 *
 * Sending: at start, every interval (default 30 s, +-20 % jitter), when the
 * interface/address set changes (checked every LR_DISCOVERY_IFCHECK_MS), and
 * on demand (lr_discovery_announce), never more often than once per
 * LR_DISCOVERY_MIN_GAP_MS (a request inside that gap is sent at its end).
 *
 * Receiving: a datagram passes a per-source-address token bucket (bounded
 * table, least recently used entry reused), then a global one, then
 * lr_announce_decode (signature, ID, freshness against the wall clock), then
 * the replay guard; this device's own announcements are dropped. What is
 * left goes to the callback. Memory is bounded by the table sizes below.
 *
 * Ownership: the config is copied at start; `loop` must outlive the
 * component. The callback's argument is borrowed for the call.
 * Threading: loop thread only. Errors: 0 or negative codes (util/err.h).
 */
#ifndef LR_DISCOVERY_DISCOVERY_H
#define LR_DISCOVERY_DISCOVERY_H

#include "discovery/announce.h"
#include "util/err.h"

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define LR_DISCOVERY_PORT 21038
#define LR_DISCOVERY_GROUP4 "239.255.21.37"
#define LR_DISCOVERY_GROUP6 "ff12::2137"
#define LR_DISCOVERY_INTERVAL_MS 30000
#define LR_DISCOVERY_MIN_GAP_MS 1000
#define LR_DISCOVERY_IFCHECK_MS 5000
/* Most interfaces announced on / joined. */
#define LR_DISCOVERY_MAX_IFACES 32
/* Receive limits: per source address, and for everything together. */
#define LR_DISCOVERY_SRC_SLOTS 64
#define LR_DISCOVERY_SRC_RATE 2 /* datagrams per second, burst 3x */
#define LR_DISCOVERY_GLOBAL_RATE 50
/* Devices remembered by the replay guard. */
#define LR_DISCOVERY_REPLAY_SLOTS 256

struct lr_discovery;

struct lr_discovery_config {
    const char *key_path;  /* device key (identity.h key.pem); read at start */
    const char *name;      /* device name announced (1..64 bytes of text) */
    const uint16_t *ports; /* listen ports announced (<= LR_ANNOUNCE_MAX_PORTS) */
    size_t nports;
    const struct lr_announce_addr *addrs; /* extra address hints (<= LR_ANNOUNCE_MAX_ADDRS) */
    size_t naddrs;
    uint16_t port;        /* 0 = LR_DISCOVERY_PORT */
    uint64_t interval_ms; /* 0 = LR_DISCOVERY_INTERVAL_MS */
    bool no_ipv4, no_ipv6;
    /* Use only interfaces holding one of `addrs` (a daemon listening on
     * specific addresses announces only where it can be reached). */
    bool restrict_ifaces;
};

/* One verified, fresh, non-replayed announcement from another device. */
struct lr_discovery_seen {
    const struct lr_announce *ann;
    struct sockaddr_storage from;                     /* source address and port of the datagram */
    char from_ip[INET6_ADDRSTRLEN + IF_NAMESIZE + 2]; /* numeric; "fe80::1%eth0" if scoped */
    unsigned ifindex;                                 /* IPv6 scope, else 0 */
    uint64_t recv_ms;                                 /* wall clock, ms since the epoch */
};

typedef void (*lr_discovery_cb)(void *ud, const struct lr_discovery_seen *seen);

struct lr_discovery_stats {
    uint64_t rounds; /* announcement rounds (each: every interface and family) */
    uint64_t sent;   /* datagrams sent (one per interface and family) */
    uint64_t send_errors;
    uint64_t received;     /* datagrams read */
    uint64_t rate_limited; /* dropped by a token bucket */
    uint64_t invalid;      /* failed decoding or verification */
    uint64_t replayed;     /* refused by the replay guard */
    uint64_t own;          /* our own, looped back */
    uint64_t accepted;     /* given to the callback */
};

/*
 * Open the sockets, join the groups, send the first announcement and start
 * the timers. Returns 0 and *out, or LR_EUSAGE (bad config), LR_ETLS / -errno
 * (key), or the socket error when no family could be opened.
 */
int lr_discovery_start(uv_loop_t *loop, const struct lr_discovery_config *cfg, lr_discovery_cb cb,
                       void *ud, struct lr_discovery **out, struct lr_err *err);

/* Announce now (or at the end of the minimum gap). */
void lr_discovery_announce(struct lr_discovery *d);

/*
 * Put a pairing nameplate (0..LR_ANNOUNCE_NAMEPLATE_MAX) in every
 * announcement from now on, or none with -1; announces at once when it
 * changes. LR_EBADVAL if out of range (nothing changed).
 */
int lr_discovery_set_nameplate(struct lr_discovery *d, int nameplate);

void lr_discovery_get_stats(const struct lr_discovery *d, struct lr_discovery_stats *out);

/* The port actually bound (useful to tests). */
uint16_t lr_discovery_port(const struct lr_discovery *d);

/*
 * Stop: close every handle, free everything, then call done(ud) (may be
 * NULL) from the loop. `d` is invalid once this returns; NULL is a no-op
 * (done is not called then).
 */
void lr_discovery_close(struct lr_discovery *d, void (*done)(void *ud), void *ud);

#endif
