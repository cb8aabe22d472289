/*
 * ops.h - configuration changes as named operations with JSON parameters.
 *
 * The same operation runs in two places: in the CLI when no daemon runs
 * (load, apply, save), and in the daemon when the CLI sends it over the
 * control API (the daemon applies, saves, then acts on it: dial a new peer,
 * drop a removed one, scan a new folder). Keeping one implementation means
 * both paths validate alike and give the same messages.
 *
 * Methods and params (all strings unless noted):
 *   peer.add      {id, name?, addresses?: [HOST:PORT...]}
 *   peer.remove   {id}
 *   folder.add    {path (absolute), id?, shared?: [ID...], mode?, conflict?, conflict_window?: int,
 *                 versions_keep?: int, versions_days?: int}
 *   folder.set    {id, conflict?, conflict_window?: int, versions_keep?: int,
 *                 versions_days?: int}  (at least one; result {id, conflict,
 *                 conflict_window, versions_keep, versions_days, changed: bool})
 *   folder.share  {id, device}
 *   folder.remove {id}
 * Result: an object describing the change ({"id": ...} plus details).
 *
 * lr_config_apply() validates everything before changing `cfg`; on error
 * `cfg` is unchanged except where noted, and `err` names the bad value
 * (LR_EUSAGE: malformed input -> exit 2; other codes -> exit 1).
 * `params` is borrowed; *result is new (caller decrefs). folder.add creates
 * the folder's PATH/.landropic marker directory.
 */
#ifndef LR_CONFIG_OPS_H
#define LR_CONFIG_OPS_H

#include "config/config.h"

#include <jansson.h>

bool lr_config_is_op(const char *method);
int lr_config_apply(struct lr_config *cfg, const char *method, json_t *params, json_t **result,
                    struct lr_err *err);

#endif
