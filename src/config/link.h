/*
 * link.h - the landropic:// peer link that `pair --qr` encodes:
 *
 *     landropic://DEVICE_ID[?addr=HOST:PORT[&addr=HOST:PORT]...]
 *
 * so `peer add` accepts what a phone camera or a copy-paste gives it. The
 * device ID is checked by identity's parser (check characters included),
 * every address by lr_config_check_addr; %XX escapes are decoded (QR
 * readers may escape '[', ']' and ':'); unknown parameters are refused, so
 * a typo is not silently dropped. Pure; no allocation but *out.
 */
#ifndef LR_CONFIG_LINK_H
#define LR_CONFIG_LINK_H

#include "identity/identity.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>

#define LR_PEER_LINK_PREFIX "landropic://"
/* Most addresses one link may carry, and the longest link accepted. */
#define LR_PEER_LINK_ADDRS_MAX 16
#define LR_PEER_LINK_MAX 4096

struct lr_peer_link {
    struct lr_device_id id;
    char *addrs[LR_PEER_LINK_ADDRS_MAX]; /* owned, NUL-terminated */
    size_t naddrs;
};

/* Whether s looks like a link (starts with the prefix, any case). */
bool lr_peer_link_is(const char *s);
/* Parse s into *out (release with lr_peer_link_release, also after an
 * error). LR_EUSAGE with a message naming the culprit. */
int lr_peer_link_parse(const char *s, struct lr_peer_link *out, struct lr_err *err);
void lr_peer_link_release(struct lr_peer_link *l);

#endif
