/*
 * modes.h - the one-way folder modes' visible and reversible side
 * (docs/modes.md): `folder override` of a send-only folder (our version of
 * every path the peers changed wins again), `folder revert` of a
 * receive-only folder (local changes are discarded: the peers' version comes
 * back, the local one goes to the versions archive), and the status fields
 * that show what either would do.
 *
 * An own version is a local record whose vector's largest counter is ours
 * (ties included: a local change bumps our counter to at least the current
 * Unix time, so with sane clocks it is the largest; two devices changing a
 * path in the same second tie) and that no peer holds with exactly that
 * vector (what we took from a peer is held by it, whatever the tie says).
 * The index sender never announces own versions of a receive-only folder
 * (sync.c). A local change (status, revert) is an own version, except a
 * tombstone of a path no peer has a record of (deleting a file only we ever
 * had is no change to anyone).
 *
 * Threads. The API methods run on the loop and queue their work as one
 * serial daemon job (it writes the index and the folder), answered in the
 * job's done(). daemon_modes_local_changes() runs on the loop through a
 * connection of its own, opened per call (WAL readers never wait for the
 * serial job); it walks the folder's records, so it is O(records).
 *
 * daemon_modes_own_version() only reads `ix` and may run in any job that
 * owns that connection (the sender uses the serve lane's).
 *
 * Ownership: json objects and records passed in are borrowed; nothing is
 * retained.
 */
#ifndef LR_DAEMON_MODES_H
#define LR_DAEMON_MODES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct lr_daemon;
struct lr_api_req;
struct lr_folder_cfg;
struct lr_index;
struct lr_file_rec;
struct lr_err;

/* Is `r` (borrowed) an own version of this device (`self`: its short ID)?
 * A database error answers true: a receive-only device then withholds a
 * record rather than risk sending a local change. */
bool daemon_modes_own_version(struct lr_index *ix, const char *folder, const struct lr_file_rec *r,
                              uint64_t self);
/* The same for our record of `path` (false when we have none). */
bool daemon_modes_own_version_at(struct lr_index *ix, const char *folder, const uint8_t *path,
                                 size_t path_len, uint64_t self);

/*
 * Send-only: take the vector of a peer's record `remote` (borrowed) for
 * its path when taking it changes nothing on our disk (lr_sync_decide
 * answers APPLY_RECORD: same type, content and metadata as our record, the
 * vector newer or concurrent). Without it, identical files that both
 * devices had from the start (concurrent versions the peer merges) would
 * count as peer changes pending an override for good. In a receive-only
 * folder (self_if_receive_only: our short ID, else 0) also an own version
 * (never announced) equal to the peer's in all but the vector, even a newer
 * or concurrent one, takes the peer's vector unmerged (merged, it would
 * still be ours, withheld): files scanned afresh after the folder was added
 * again. With vectors equal, only if `was_own` (our record was an own version
 * before the peer's record was stored, daemon_modes_own_version_at): else
 * the peer has it from us already, and storing it again under a new sequence
 * would only re-announce it. Runs inside the
 * caller's transaction on `ix`; *adopted is set when our record changed
 * (it then has a new sequence to announce). 0 or a negative error.
 */
int daemon_modes_adopt_equal(struct lr_index *ix, const char *folder,
                             const struct lr_file_rec *remote, uint64_t self_if_receive_only,
                             bool was_own, bool *adopted, struct lr_err *err);

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
