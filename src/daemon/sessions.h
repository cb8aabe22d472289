/*
 * sessions.h - transfer sessions: what the daemon knows about each file it
 * pulls (docs/cli.md `sessions`): state, the peers serving it, chunks and
 * bytes total / done / failed, the last error, when it was last updated.
 *
 * The state machine, counters, checkpoint batching and history pruning are
 * the sans-I/O sync/session.h; this file keeps the sessions in memory on the
 * loop thread and checkpoints them to the index (schema v5,
 * lr_index_session_*) in batches: the sessions changed since the last
 * checkpoint are written in one serial-queue job once CHECKPOINT_EVENTS
 * changes accumulated or CHECKPOINT_MS passed, not one write per chunk. What resumes an interrupted
 * transfer is the staging file, re-verified chunk by chunk (syncpull.c); the checkpoint is what
 * `sessions` shows after a restart (an active session of a previous run is
 * listed as interrupted until its transfer starts again).
 *
 * Ownership: the daemon owns every session; struct sync_session pointers
 * handed out stay valid until the daemon stops (finished sessions are kept
 * as history, at most HISTORY_MAX of them, pruned oldest first, and never
 * while a transfer refers to them). All functions: loop thread only.
 */
#ifndef LR_DAEMON_SESSIONS_H
#define LR_DAEMON_SESSIONS_H

#include "hash/hash.h"
#include "identity/identity.h"
#include "sync/session.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lr_daemon;
struct sync_session;

/* The states and their transitions are sync/session.h's. */
enum sync_session_state {
    SYNC_SESSION_PENDING = LR_SESSION_PENDING,
    SYNC_SESSION_ACTIVE = LR_SESSION_ACTIVE,
    SYNC_SESSION_INTERRUPTED = LR_SESSION_INTERRUPTED,
    SYNC_SESSION_FAILED = LR_SESSION_FAILED,
    SYNC_SESSION_COMPLETE = LR_SESSION_COMPLETE,
};

/* Load the last checkpoint and start the timer. The same serial-queue job
 * first rolls forward files a commit renamed into place just before the
 * previous run died (store/staging_reuse.h), before the first scan. */
void sync_sessions_init(struct lr_daemon *d);
/* After the loop ended: active sessions become interrupted; last checkpoint
 * written synchronously; everything freed. */
void sync_sessions_free(struct lr_daemon *d);

/* A transfer of (folder, path, version) starts or resumes: chunks/bytes
 * already in staging count as done. Returns the session (never NULL). */
struct sync_session *sync_session_start(struct lr_daemon *d, const char *folder,
                                        const uint8_t *path, size_t path_len,
                                        const struct lr_hash *blocks, uint64_t chunks_total,
                                        uint64_t bytes_total, uint64_t chunks_done,
                                        uint64_t bytes_done, const struct lr_device_id *peers,
                                        size_t npeers);
/* `peer` answered a chunk of it: listed among its peers from now on (a
 * device that began downloading the file after the session started serves
 * what it has, HAVE). */
void sync_session_served(struct sync_session *s, const struct lr_device_id *peer);
/* A chunk was verified and written (ok) or failed verification. */
void sync_session_chunk(struct lr_daemon *d, struct sync_session *s, bool ok, uint32_t len);
/* The session ends: complete, failed (error given) or interrupted (to be
 * resumed: the peer left, the daemon stops). A transition session.h refuses
 * is logged and ignored. */
void sync_session_end(struct lr_daemon *d, struct sync_session *s, enum sync_session_state state,
                      const char *error);

/* A file was completed without a transfer (its staging file already held
 * every chunk): a known session of that version ends complete. */
void sync_session_completed(struct lr_daemon *d, const char *folder, const char *path,
                            const struct lr_hash *blocks);

/* A pull applied a version of `path` without a transfer (a delete, a
 * directory, a symlink, or a file made from local data): a waiting
 * session of that version ends complete, one of another version failed
 * ("superseded by a newer version", or with blocks NULL "superseded:
 * deleted, or replaced by a directory or link"): no transfer would ever end
 * it (a file renamed or emptied mid-transfer); one still running fails so
 * when its transfer ends interrupted. blocks NULL: not a regular file. */
void sync_session_settled(struct lr_daemon *d, const char *folder, const char *path,
                          const struct lr_hash *blocks);

/* A version some session of a folder transfers or waits to resume. */
struct sync_session_key {
    uint8_t *path; /* owned, NUL-terminated */
    size_t path_len;
    struct lr_hash blocks;
};
/* The versions of `folder`'s sessions that are not finished (pending,
 * active or interrupted), copied into *out (free with
 * sync_session_keys_free); returns how many. */
size_t sync_sessions_unfinished(struct lr_daemon *d, const char *folder,
                                struct sync_session_key **out);
void sync_session_keys_free(struct sync_session_key *v, size_t n);
/* No device the daemon knows of holds that version any more (their index
 * of the folder was forgotten: the folder removed there, or no longer
 * shared with them): its session fails with `why`, at once when waiting,
 * when its transfer ends otherwise. It stayed "interrupted: no peer can
 * serve it" for good. */
void sync_session_orphaned(struct lr_daemon *d, const char *folder,
                           const struct sync_session_key *k, const char *why);

/* Whether a configured device could still serve the folder: it is
 * configured and shared with at least one configured peer. An interrupted
 * session resumes only then. */
bool sync_sessions_may_resume(struct lr_daemon *d, const char *folder);
/* The error of a session failed for that reason. */
#define SYNC_SESSION_UNSHARED "the folder is no longer shared with any device"
/* The configuration changed (or the sessions of a previous run were
 * loaded): a session waiting to resume whose folder no configured device
 * could serve any more fails ("folder removed", "no longer shared with any
 * device"); it stayed "interrupted" for good after `peer remove`. Sharing
 * the folder again starts it anew. */
void sync_sessions_config_changed(struct lr_daemon *d);

/* The `sessions` document: {"sessions": [...]} (new reference). */
json_t *sync_sessions_json(struct lr_daemon *d);

#endif
