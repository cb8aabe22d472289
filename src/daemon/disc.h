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

#include "identity/identity.h"

#include <jansson.h>
#include <stddef.h>

struct lr_daemon;

#define DISC_PENDING_MAX 64
#define DISC_PENDING_TTL_MS (5 * 60 * 1000)
#define DISC_ANSWER_GAP_MS 10000

/* Start discovery after the transport is up (reads d->opts, d->cfg, d->tr). */
void disc_start(struct lr_daemon *d);
/*
 * Begin closing; returns the number of times done(ud) will be called later
 * (0 or 1), for the daemon's count of pending closes.
 */
int disc_stop(struct lr_daemon *d, void (*done)(void *ud), void *ud);
void disc_free(struct lr_daemon *d);

/* Remember a device seen but not added (copied; `via`: "discovery" or "connect"). */
void disc_pending_note(struct lr_daemon *d, const struct lr_device_id *id, const char *name,
                       const char *const *addrs, size_t naddrs, const char *via);
/* The `peers` document's "pending" array (new reference): devices not added. */
json_t *disc_pending_json(struct lr_daemon *d);

#endif
