/*
 * pairing.h - short-code pairing in the daemon (docs/pairing.md): the API
 * methods pair.code, pair.wait and pair.join, driving pair/session.h over
 * the transport's pairing connections (transport.h, "Pairing connections").
 *
 * Holder (`pair --code`): pair.code makes a one-time code (replacing and
 * burning any live one), announces its nameplate (disc_set_nameplate) and
 * opens the transport to pairing connections; the code ends when it is
 * used, its one attempt fails, or it expires (then the nameplate and the
 * pairing ALPN are withdrawn). pair.wait answers when the live code ends,
 * with the outcome.
 * Joiner (`pair --join CODE [--folder ID]`): pair.join parses the code,
 * finds the device announcing its nameplate (disc_find_nameplate, retried
 * for up to PAIRING_FIND_MS), dials it for pairing and runs the session.
 * On success both add each other as peers (config op peer.add, as the CLI
 * would). Folder: after PAIR_RESULT(ok) the joiner sends one follow-up frame
 * on the pairing stream, PAIR_SHARE (type 0x10, payload: the folder ID, or
 * empty), and the holder, if it has a folder with that ID, shares it with
 * the joiner (folder.share) and answers PAIR_SHARED (type 0x11, payload:
 * varint 0 shared / 1 nothing asked / 2 no such folder here). The joiner
 * shares its own folder of that ID with the holder (it must exist before
 * pairing starts).
 *
 * Test-only: the environment variable LANDROPIC_TEST_PAIR_TTL_MS, read when
 * a code is made, shortens the code's 5-minute life (tests of expiry).
 *
 * Loop thread only. State hangs off d->pairing; pairing_stop() answers
 * pending requests and closes the timer at shutdown, pairing_free() frees.
 */
#ifndef LR_DAEMON_PAIRING_H
#define LR_DAEMON_PAIRING_H

#include "api/api.h"
#include "transport/transport.h"

#include <jansson.h>

struct lr_daemon;

/* How long pair.join looks for a device announcing the nameplate. */
#define PAIRING_FIND_MS 10000
/* pair.join dials no new address after this long (the CLI waits 60 s). */
#define PAIRING_JOIN_MS 40000
/* Most pairing connections handled at once (others are closed at once). */
#define PAIRING_MAX_CONNS 4

/* Callbacks for lr_transport_config.pair_cbs (ud = d). */
struct lr_transport_pair_cbs pairing_transport_cbs(struct lr_daemon *d);

void pairing_m_code(struct lr_daemon *d, struct lr_api_req *req, json_t *params);
void pairing_m_wait(struct lr_daemon *d, struct lr_api_req *req, json_t *params);
void pairing_m_join(struct lr_daemon *d, struct lr_api_req *req, json_t *params);

/* Shutdown: answer waiting requests, end the code, close the timer. */
void pairing_stop(struct lr_daemon *d);
void pairing_free(struct lr_daemon *d);

#endif
