/*
 * modes.h - the one-way folder modes' visible and reversible side
 * (docs/modes.md): `folder override` of a send-only folder (our version of
 * every path the peers changed wins again), `folder revert` of a
 * receive-only folder (local changes are discarded: the peers' version comes
 * back, the local one goes to the versions archive), and the status fields
 * that show what either would do.
 *
 * A local change (receive-only) is a local record whose version vector was
 * bumped last by this device (lr_sync_vv_author() is our short ID) and that
 * no peer holds with that exact vector; a tombstone counts only if some peer
 * holds a record of the path (deleting a file only we ever had is no change
 * to anyone). The index sender never announces such records from a
 * receive-only folder (sync.c).
 *
 * Threads. The API methods run on the loop and queue their work as one
 * serial daemon job (it writes the index and the folder), answered in the
 * job's done(). daemon_modes_local_changes() runs on the loop through a
 * connection of its own, opened per call (WAL readers never wait for the
 * serial job); it walks the folder's records, so it is O(records).
 *
 * Ownership: json objects passed in are borrowed; nothing is retained.
 */
#ifndef LR_DAEMON_MODES_H
#define LR_DAEMON_MODES_H

#include <jansson.h>
#include <stdint.h>

struct lr_daemon;
struct lr_api_req;
struct lr_folder_cfg;

/* API "folder.override" {folder}: send-only only. Answers {"folder", "overridden"}. */
void daemon_m_folder_override(struct lr_daemon *d, struct lr_api_req *req, json_t *params);
/* API "folder.revert" {folder}: receive-only only. Answers {"folder", "reverted",
 * "archived", "kept"}. */
void daemon_m_folder_revert(struct lr_daemon *d, struct lr_api_req *req, json_t *params);

/* Local changes of a receive-only folder (0 if unknown or none). */
uint64_t daemon_modes_local_changes(struct lr_daemon *d, const char *folder);

/* Add the mode's status fields to a folder's status object `o` (borrowed):
 * send-only "override_pending" (paths the peers changed that we do not
 * apply), receive-only "local_changes". Nothing for send-receive. */
void daemon_modes_status(struct lr_daemon *d, const struct lr_folder_cfg *fc, uint64_t need_items,
                         json_t *o);

#endif
