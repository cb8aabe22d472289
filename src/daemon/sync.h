/*
 * sync.h - the daemon's sync driver (daemon-internal): keeps shared folders
 * identical with connected peers by running docs/protocol.md §6 over the
 * transport, with the pure rules of sync/decide.h and sync/plan.h.
 *
 * Threads. Everything here is called on the loop thread. Work that touches
 * SQLite (d->ix) or file data runs as a struct daemon_job on libuv's pool,
 * one job at a time in FIFO order (scans are jobs too), so the index and the
 * folders' stores are used by one thread at a time without locks. A job's
 * work() may read only what the job owns (copied in at queue time or in
 * start(), which runs on the loop just before work()) plus the job-side
 * state named "job-owned" in syncint.h; its done() runs on the loop.
 *
 * Pieces (docs/internals/sync.md, "Driver"):
 *  - sync.c: per peer and folder state, FOLDERS, the index sender and
 *    receiver, status;
 *  - syncpull.c: the puller (need list -> decide -> apply), transfers,
 *    WANT scheduling, CHUNK intake, commits;
 *  - syncserve.c: answering WANTs;
 *  - syncseqs.c: SEQ_ASK / SEQS, how far a peer's index has got (for
 *    sync.state, syncstate.c);
 *  - syncjobs.c: the job queue.
 *
 * Errors: a peer that sends something invalid is disconnected (the
 * transport closes with PROTOCOL); local failures are logged per path and
 * retried on the next trigger, never turned into deletions.
 */
#ifndef LR_DAEMON_SYNC_H
#define LR_DAEMON_SYNC_H

#include "identity/identity.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct lr_daemon;
struct lr_conn;
struct lr_device_id;

enum daemon_job_kind { DAEMON_JOB_SCAN = 1, DAEMON_JOB_SYNC = 2 };

/*
 * Side lanes: work that never touches d->ix runs beside the serial queue so
 * the daemon's CPU-heavy steps (verifying and writing received chunks,
 * reading and hashing served ones) overlap with scans, index batches and
 * commits. Each lane has its own bound on jobs running at once; what a
 * lane's jobs share is documented in syncint.h ("lane-owned").
 */
enum daemon_side_lane {
    DAEMON_SIDE_SERVE = 0, /* one at a time: owns the serving index handle */
    DAEMON_SIDE_RX,        /* received chunks: up to DAEMON_SIDE_RX_MAX at once */
    DAEMON_SIDE_BARRIER,   /* one at a time: a commit batch's data made durable */
    DAEMON_SIDE_COUNT
};
#define DAEMON_SIDE_RX_MAX 2
/* libuv pool threads: the serial queue, one per side-lane slot, one spare. */
#define DAEMON_POOL_THREADS "6"

/*
 * One unit of serial work. The queue owns a job from daemon_job_queue()
 * until done() is called; done() frees it. status < 0 (UV_ECANCELED) means
 * work() never ran (shutdown) and done() only releases.
 */
struct daemon_job {
    struct daemon_job *next;
    struct lr_daemon *d;
    enum daemon_job_kind kind;
    void (*start)(struct daemon_job *j); /* loop thread, just before work; may be NULL */
    void (*work)(struct daemon_job *j);  /* pool thread; owns d->ix */
    void (*done)(struct daemon_job *j, int status);
    enum daemon_side_lane lane; /* side lanes only: set by daemon_side_queue */
    uv_work_t req;              /* side lanes only */
};

/* ---- syncjobs.c ---- */
void daemon_job_queue(struct lr_daemon *d, struct daemon_job *j);
/* The same, but placed right after `after` (a waiting job, or the running
 * one: then first in line) instead of at the end: a job that only needs
 * `after` done first does not wait for everything queued since. */
void daemon_job_queue_after(struct lr_daemon *d, struct daemon_job *j, struct daemon_job *after);
/* Drop every waiting job (done with UV_ECANCELED); a running one finishes. */
void daemon_jobs_cancel(struct lr_daemon *d);
/* Queue a job on a side lane: start() and work() must not touch d->ix. */
void daemon_side_queue(struct lr_daemon *d, enum daemon_side_lane lane, struct daemon_job *j);

/* ---- sync.c: hooks called by daemon.c, scanjobs.c, methods.c ---- */
void sync_init(struct lr_daemon *d);
void sync_free(struct lr_daemon *d); /* after the loop ended */
/* HELLO feature bits we offer (proto.h); the AND with the peer's is in force. */
#define SYNC_FEATURES                                                                              \
    (LR_FEAT_HAVE | LR_FEAT_INDEX_DELTA | LR_FEAT_RECON | LR_FEAT_FOLDER_STOPPED | LR_FEAT_SEQS |  \
     LR_FEAT_FOLDER_REMOVED)
/* features: the peer's HELLO feature bits. */
void sync_peer_up(struct lr_daemon *d, struct lr_conn *c, const struct lr_device_id *peer,
                  uint64_t features);
/* lost: the path failed (idle timeout, no answer to a probe, our data
 * unacknowledged), not a close either side asked for: `sync --wait` then
 * gives the peer the connect grace to come back before counting it as
 * settled. */
void sync_peer_down(struct lr_daemon *d, struct lr_conn *c, const struct lr_device_id *peer,
                    bool lost);
void sync_on_message(struct lr_daemon *d, struct lr_conn *c, uint64_t type, const uint8_t *payload,
                     size_t len);
void sync_on_writable(struct lr_daemon *d, struct lr_conn *c);
/* Folders or shares changed: resend FOLDERS to every connected peer. */
void sync_config_changed(struct lr_daemon *d);
/* `sync` was asked for these folders (all if n is 0): every peer they are
 * shared with that is not connected is dialled now, and a `sync --wait`
 * counts it as settled only once that dial is over (connected, failed, or
 * SYNC_REDIAL_GRACE_MS), not at once because an earlier dial had failed
 * (a peer just restarted was "settled" before it could reconnect). */
void sync_redial_for_wait(struct lr_daemon *d, const char *const *folders, size_t n);

/* ---- syncseqs.c: SEQ_ASK / SEQS (docs/protocol.md §6.13), for sync.state ---- */
/* A peer on one of its connections (gen). */
struct sync_seq_peer {
    struct lr_device_id peer;
    uint64_t gen;
};
/* The connected peers that speak LR_FEAT_SEQS and sync any of the named
 * folders (all if n is 0): how many, listed in *out (the caller frees it;
 * NULL when none). */
size_t sync_seqs_peers(struct lr_daemon *d, const char *const *ids, size_t n,
                       struct sync_seq_peer **out);
/* Send SEQ_ASK `req` to the peer if that connection is still up; the
 * answer comes to syncstate_on_seqs. */
bool sync_seqs_send(struct lr_daemon *d, const struct sync_seq_peer *to, uint64_t req);
struct sync_seq_target;
/* Whether an answer's folder still syncs with that peer under the index it
 * named (its latest FOLDERS): an answer about an index since replaced, or
 * a folder since unshared, is not waited for (the new exchange is, by the
 * settled rule). */
bool sync_seqs_target_ok(struct lr_daemon *d, const struct sync_seq_target *t);
/* Whether the peer's connection `gen` is still the one up. */
bool sync_peer_gen_up(struct lr_daemon *d, const struct lr_device_id *peer, uint64_t gen);
/* A scan of the folder finished (ok: without error). */
void sync_folder_scanned(struct lr_daemon *d, const char *folder_id, bool ok);
/* A running scan committed a batch of the folder: announce it to peers now. */
void sync_folder_progress(struct lr_daemon *d, const char *folder_id);

struct sync_folder_status {
    uint64_t need_files, need_bytes, need_items;
    uint64_t got_bytes; /* of need_bytes: already received (transfers in flight) */
    bool active;        /* pulling, transferring, or index exchange in progress */
    /* Files to fetch or apply: transfers in flight, or a pull round with
     * needs. What `status` calls syncing; an index exchange that brings
     * nothing to do is not (it is still `active`: sync --wait waits for it). */
    bool working;
    bool settled; /* nothing needed or in flight; every shared peer exchanged or given up */
    /* Not settled because a connected peer has the folder in error: nothing
     * moves until it is fixed there, so this alone is not syncing. */
    bool peer_stopped;
    /* Not settled only for needed items no transfer is fetching (a pull
     * round queued or running with none in flight, or items waiting for the
     * next round): failing items, if any, say more about why. */
    bool fetching_none;
    char why[160]; /* when not settled: the first reason, for `sync --wait` messages */
};
void sync_folder_status(struct lr_daemon *d, const char *folder_id, struct sync_folder_status *out);

/* The path of the first file of the folder being received (a live
 * transfer), escaped for a message and cut to fit n bytes, into out; false
 * (out "") if none. Loop thread. */
bool sync_folder_first_transfer(struct lr_daemon *d, const char *folder_id, char *out, size_t n);

/*
 * Whether changes seen in the folder now are likely our own: a pull round
 * or a commit batch of it is running, or one ended less than within_ms
 * ago (the watcher's events trail the renames). A large file being
 * received writes only under .landropic until its commit, so a change
 * seen meanwhile is the user's. Loop thread.
 */
bool sync_folder_applying(struct lr_daemon *d, const char *folder_id, uint64_t within_ms);

/* Like sync_folder_applying(d, folder_id, 0), except that a pull round
 * whose need list was empty so far (one a peer's empty index burst started:
 * it writes nothing) does not count. Loop thread. */
bool sync_folder_writing(struct lr_daemon *d, const char *folder_id);

/* When a commit batch or pull round of the folder last ended (uv_now ms;
 * 0: none since start): what it wrote may have archived replaced files. */
uint64_t sync_folder_applied_at(struct lr_daemon *d, const char *folder_id);

/* How long sync_folder_wrote remembers a path written. */
#define SYNC_OWN_KEEP_MS 10000

/*
 * Whether the watcher's change at `path` (relative to the folder's `root`)
 * is one of our own writes: a path a commit batch or pull round of the
 * folder wrote (or a directory above one) in the last SYNC_OWN_KEEP_MS,
 * and for a file written, still that file (same inode and ctime: a user's
 * edit in place since then is not ours). A path not noted is ours while a
 * pull round runs (it notes its paths when it ends; the watcher asks again
 * then). A directory is ours only if everything in it is, looked at all
 * the way down. *budget: paths that may still be looked at (one lstat
 * each), decremented; with none left the rest counts as ours (too many to
 * tell, as when the watcher overflows). Loop thread.
 */
bool sync_folder_wrote(struct lr_daemon *d, const char *folder_id, const char *root,
                       const char *path, size_t *budget);

/* A path of the folder at `root` that we wrote just now, with the file's
 * identity if known (ino 0: looked up), and the directories above it as
 * they are now, for sync_folder_wrote. Loop thread. */
void sync_folder_note_written(struct lr_daemon *d, const char *folder_id, const char *root,
                              const uint8_t *path, size_t len, uint64_t ino, int64_t ctime_ns);

/* A hash of the progress sync_folder_status and sync.state depend on:
 * connections, indexes exchanged (sequences, not bytes), needs, failing
 * items, folders in error. Equal at two moments while done held at both:
 * nothing in between changed what `sync --wait` answers (the busy states
 * are checked as they are at each moment). Loop thread; O(folders + links +
 * peers + failing items). */
uint64_t sync_fingerprint(struct lr_daemon *d);

/* Index exchange with a peer since the daemon started (docs/api.md, peers). */
struct sync_peer_index_stats {
    uint64_t bytes_sent, bytes_received;         /* INDEX payload bytes */
    uint64_t deltas_sent, deltas_received;       /* entries whose chunk list was a delta */
    uint64_t delta_misses;                       /* received deltas whose base we lacked */
    uint64_t summaries_sent, summaries_received; /* SUMMARY messages (§6.11) */
};
void sync_peer_index_stats(struct lr_daemon *d, const struct lr_device_id *peer,
                           struct sync_peer_index_stats *out);

#endif
