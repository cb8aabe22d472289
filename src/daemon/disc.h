/*
 * disc.h - the daemon's use of LAN discovery (discovery/discovery.h).
 *
 * - disc_start() runs the discovery component unless disabled
 *   (`daemon --no-discovery`), or pointless: when every listen address is a
 *   loopback one, nobody on the LAN could dial us, so nothing is announced.
 *   A daemon listening on specific addresses announces only on the
 *   interfaces holding them. Failure to start is logged, never fatal.
 * - An announcement from an added peer that has no fixed address (`peer add`
 *   without --addr) is a dial hint: if the peer is not connected it is
 *   dialled at once at the announced ports of the datagram's source address
 *   (and any addresses it lists). The TLS pin still decides who answers.
 * - A device heard for the first time in a while, or an added one we are not
 *   connected to, is answered with our own announcement (at most once per
 *   device per DISC_ANSWER_GAP_MS), so two devices find each other within
 *   seconds of the later one starting.
 * - Devices heard but not added are kept (bounded, oldest dropped, expired
 *   after DISC_PENDING_TTL_MS) for `peers` ("pending", via "discovery");
 *   other parts of the daemon may note devices seen another way with
 *   disc_pending_note() (e.g. via "connect").
 * Loop thread only; state hangs off d->disc and is freed by disc_free().
 */
#ifndef LR_DAEMON_DISC_H
#define LR_DAEMON_DISC_H

#include "discovery/announce.h"
#include "identity/identity.h"
#include "transport/transport.h"

#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

struct lr_daemon;

#define DISC_PENDING_MAX 64
#define DISC_PENDING_TTL_MS (5 * 60 * 1000)
#define DISC_ANSWER_GAP_MS 10000
/* A connection to a device that announces itself must acknowledge a PING
 * within this long, or it is closed and redialled (lr_conn_probe). Not
 * shorter: a live peer's loop can be busy for seconds (a big rewalk). */
#define DISC_PROBE_MS 5000
/* "[ipv6%ifname]:65535" */
#define DISC_ADDR_STRLEN (INET6_ADDRSTRLEN + IF_NAMESIZE + 10)
/* A nameplate counts only if announced this recently. */
#define DISC_NAMEPLATE_TTL_MS 60000

/* A device currently announcing a pairing nameplate. */
struct disc_match {
    struct lr_device_id id;
    char name[LR_ANNOUNCE_NAME_MAX + 1];
    char addrs[LR_TRANSPORT_MAX_ADDRS][DISC_ADDR_STRLEN]; /* dialable "HOST:PORT" */
    size_t naddrs;
};

/* Start discovery after the transport is up (reads d->opts, d->cfg, d->tr).
 * Discovery that cannot start is off, with a warning, unless its port was
 * asked for (--discovery-port): then the error (the daemon does not start). */
int disc_start(struct lr_daemon *d, struct lr_err *err);
/*
 * Begin closing; returns the number of times done(ud) will be called later
 * (0 or 1), for the daemon's count of pending closes.
 */
int disc_stop(struct lr_daemon *d, void (*done)(void *ud), void *ud);
void disc_free(struct lr_daemon *d);

/*
 * After a config change: an added peer with no fixed address that was heard
 * recently (e.g. just accepted from `pending`) is dialled at once at its
 * announced addresses, instead of at its next announcement.
 */
void disc_config_changed(struct lr_daemon *d);

/* Remember a device seen but not added (copied; `via`: "discovery" or "connect"). */
void disc_pending_note(struct lr_daemon *d, const struct lr_device_id *id, const char *name,
                       const char *const *addrs, size_t naddrs, const char *via);
/* The `peers` document's "pending" array (new reference): devices not added. */
json_t *disc_pending_json(struct lr_daemon *d);

/* ---- pairing (docs/pairing.md) ---- */
/*
 * Announce `nameplate` (0..999) from now on, or stop with -1; announces at
 * once. LR_EBADVAL if out of range, LR_EUNSUPPORTED if discovery is off.
 */
int disc_set_nameplate(struct lr_daemon *d, int nameplate);
/* Whether LAN discovery runs (off: --no-discovery, loopback-only listens,
 * or its port could not be bound). */
bool disc_running(const struct lr_daemon *d);
/*
 * Devices that announced `nameplate` within DISC_NAMEPLATE_TTL_MS, most
 * recently heard first, at most `max` into out[]; returns how many (more than
 * one means somebody else claims it too: the caller decides).
 */
size_t disc_find_nameplate(struct lr_daemon *d, unsigned nameplate, struct disc_match *out,
                           size_t max);
/* Announce now (a joiner makes holders notice it; rate-limited). */
void disc_announce_now(struct lr_daemon *d);

#endif
