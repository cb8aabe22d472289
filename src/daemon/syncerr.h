/*
 * syncerr.h - items that currently fail to sync, per folder, so that a
 * failure is visible (`status` errors, `events`) until it is fixed and is
 * retried with backoff instead of leaving a folder silently stuck.
 *
 * Two layers:
 *
 *  1. struct lr_syncerr (syncerr.c): a pure table, no daemon needed (unit
 *     tested). Per folder ID: the failing paths with their latest message,
 *     the wall-clock time each was first seen failing (kept across repeated
 *     failures of the same path, reset once it succeeds), and an attempt
 *     count. At most `max` paths per folder are listed; the others are only
 *     counted ("and N more"), by a set of 64-bit path hashes, so the count
 *     stays exact when they fail again or are cleared (memory: 16 bytes per
 *     unlisted failing path, never more than the folder's size). Plus a
 *     per-folder retry schedule: a folder with errors is retried after
 *     LR_SYNCERR_BACKOFF_MIN_MS, doubling to LR_SYNCERR_BACKOFF_MAX_MS while
 *     errors remain; it starts over once the folder has none.
 *
 *  2. The daemon glue (syncitems.c): the sync driver reports each item's
 *     outcome with sync_item_*(); the glue keeps the table, emits the
 *     `item_started` / `item_finished` / `item_failed` events, watches
 *     folder states (`folder_state` events), and runs the retries.
 *
 * Ownership: strings passed in are copied; lists filled by the table are
 * owned by the caller (release with lr_syncerr_list_release /
 * lr_syncerr_folders_release).
 *
 * Threads: every lr_syncerr_* function locks the table's own mutex, so the
 * job thread (the puller) and the loop thread (status, retries) may use one
 * table at the same time. sync_item_* may be called from either thread;
 * the other glue functions are for the loop thread unless noted.
 *
 * Errors: nothing here fails except allocation, which aborts (lr_xmalloc).
 */
#ifndef LR_DAEMON_SYNCERR_H
#define LR_DAEMON_SYNCERR_H

#include "identity/identity.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Listed failing paths per folder; more are only counted. */
#define LR_SYNCERR_MAX_DEFAULT 1000
/* Stored message length (longer ones are cut). */
#define LR_SYNCERR_MSG_MAX 512
/* Retry backoff of a folder with errors. */
#define LR_SYNCERR_BACKOFF_MIN_MS 5000u
#define LR_SYNCERR_BACKOFF_MAX_MS 300000u

struct lr_syncerr;

struct lr_syncerr_item {
    uint8_t *path; /* NUL-terminated copy of the path bytes */
    size_t path_len;
    char *msg;
    int64_t since_s;   /* Unix time first seen failing */
    int64_t last_s;    /* Unix time of the latest failure */
    uint64_t attempts; /* failures recorded since first seen */
};

struct lr_syncerr_list {
    struct lr_syncerr_item *v; /* sorted by path bytes */
    size_t n;
    uint64_t more; /* failing paths not listed (over the per-folder maximum) */
};
void lr_syncerr_list_release(struct lr_syncerr_list *l);

/* A table listing at most `max_per_folder` (>= 1) paths per folder. */
struct lr_syncerr *lr_syncerr_new(size_t max_per_folder);
/* NULL is a no-op. */
void lr_syncerr_free(struct lr_syncerr *t);

/*
 * Record that `path` of `folder` failed with `msg` at Unix time now_s.
 * Returns 1 if the path was not failing before (since = now_s), 0 if it
 * was (message, last time and attempts updated; since kept).
 */
int lr_syncerr_set(struct lr_syncerr *t, const char *folder, const uint8_t *path, size_t path_len,
                   const char *msg, int64_t now_s);
/* The path succeeded (or no longer needs syncing): true if it was failing. */
bool lr_syncerr_clear(struct lr_syncerr *t, const char *folder, const uint8_t *path,
                      size_t path_len);
/* lr_syncerr_clear if its message starts with `prefix` (NULL: any; an
 * unlisted path has no message and stays). */
bool lr_syncerr_clear_if(struct lr_syncerr *t, const char *folder, const uint8_t *path,
                         size_t path_len, const char *prefix);
/* Forget the folder entirely (folder removed). */
void lr_syncerr_clear_folder(struct lr_syncerr *t, const char *folder);
/*
 * Make dst's entries of `folder` those of src (another table with the same
 * maximum), keeping since and adding up attempts for paths failing in both:
 * a complete pass (a scan) replaces what the previous pass found.
 */
void lr_syncerr_replace(struct lr_syncerr *dst, const char *folder, struct lr_syncerr *src);
/* Failing paths of the folder, listed or not. */
uint64_t lr_syncerr_count(struct lr_syncerr *t, const char *folder);
/* Paths of the folder failing in both tables (compared by 64-bit path
 * hash, as unlisted paths are): so a path is counted once across two. */
uint64_t lr_syncerr_count_common(struct lr_syncerr *a, struct lr_syncerr *b, const char *folder);
/* Copy the folder's listed paths (sorted) and the unlisted count into *out (zeroed first). */
void lr_syncerr_list(struct lr_syncerr *t, const char *folder, struct lr_syncerr_list *out);

/* IDs of the folders that currently have failing paths. */
struct lr_syncerr_folders {
    char **v;
    size_t n;
};
void lr_syncerr_folders(struct lr_syncerr *t, struct lr_syncerr_folders *out);
void lr_syncerr_folders_release(struct lr_syncerr_folders *f);

/*
 * Retry schedule, on a monotonic clock in ms. lr_syncerr_schedule() arms a
 * retry at now_ms + backoff for every folder that has errors and none
 * armed, disarms folders without errors (their backoff starts over), and
 * returns the earliest armed time (UINT64_MAX: none). lr_syncerr_take_due()
 * hands out (copies into *out) the folders whose retry time has come,
 * disarms them and doubles their backoff (up to the maximum): the next
 * schedule call re-arms them if their errors remain.
 */
uint64_t lr_syncerr_schedule(struct lr_syncerr *t, uint64_t now_ms);
void lr_syncerr_take_due(struct lr_syncerr *t, uint64_t now_ms, struct lr_syncerr_folders *out);
/* The folder's current backoff in ms (LR_SYNCERR_BACKOFF_MIN_MS if unknown). */
uint64_t lr_syncerr_backoff(struct lr_syncerr *t, const char *folder);

/* ---- daemon glue (syncitems.c) ---- */

struct lr_daemon;

/* Loop thread: from sync_init / sync_free (the latter after the loop ended). */
void sync_items_init(struct lr_daemon *d);
void sync_items_free(struct lr_daemon *d);

/* Any thread. `apply` is the decision's enum lr_sync_apply (the item's kind of change). */
void sync_item_started(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                       int apply);
/* len 0 is the folder-level entry (the pull itself failed): cleared, with an
 * item_finished event only if it was failing. */
void sync_item_ok(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len);
/* The folder-level entry holds one cause at a time ("cannot pull: ...", or
 * "cannot store the index of peer X: ..."): clear it only if it is `what`'s. */
void sync_item_folder_ok(struct lr_daemon *d, const char *folder, const char *what);
/* `what` names the step ("not applied", "cannot stage", ...); rc/err as logged.
 * rc == LR_ECLASH (a folding directory holds another spelling of the name)
 * is also queued for the audit trail: the folder's next pull job records it
 * (sync_items_prune; daemon_conflict_clash in conflicts.h). */
void sync_item_failed(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                      const char *what, int rc, const struct lr_err *err);
/* The start of the message of a file refused for want of free space
 * ("cannot stage: " before it): cleared once its transfer starts. */
#define SYNC_ERR_NO_ROOM "not enough free space:"

/* Pull job: a needed path was not decided into an action (flags: LR_SYNC_F_*);
 * an inconsistent pair of records is an error to report (pass 0 only). */
void sync_item_skipped(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                       unsigned flags, int pass);
/* Loop: a transfer was dropped (`why` NULL: not a failure). */
void sync_item_dropped(struct lr_daemon *d, const char *folder, const uint8_t *path, size_t len,
                       const char *why);
/* Loop: a transfer of the path started with a device that holds it
 * connected: an earlier drop for want of a peer (LR_XS_NO_PEER) no longer
 * holds and is cleared. */
void sync_item_xfer_started(struct lr_daemon *d, const char *folder, const uint8_t *path,
                            size_t len);
/* Loop: a peer's index burst of the folder was stored to its end (sent
 * false), or ours was handed to the connection to its end (sent true). */
struct lr_device_id;
void sync_item_index(struct lr_daemon *d, const struct lr_device_id *peer, const char *folder,
                     bool sent);
/* Job thread (owns d->ix): forget errors of paths the folder no longer needs. */
void sync_items_prune(struct lr_daemon *d, const char *folder);

/*
 * Scan side: entries a scan of the folder could not read (the scanner's
 * skipped_error entries: unreadable file or directory, failed stat, ...).
 * Call begin on the scan job before the walk, failed for each such entry
 * (any thread; `rc`/`what` as logged), and end after it: a complete walk
 * replaces the folder's scan errors (an entry no longer failing is fixed),
 * an incomplete one only adds. Scan errors are listed with the others and
 * retried by rescanning the folder with the same backoff.
 */
void sync_items_scan_begin(struct lr_daemon *d, const char *folder);
void sync_items_scan_failed(struct lr_daemon *d, const char *folder, const uint8_t *path,
                            size_t len, int rc, const char *what);
void sync_items_scan_end(struct lr_daemon *d, const char *folder, bool complete);

/* Loop: every failing item of the folder, pull and scan side (sorted by
 * path; *out zeroed first; release with lr_syncerr_list_release), and their
 * count. A path failing on both sides is one item: its messages joined by
 * "; " (the pull's first), the earlier `since`, the later `last`, the
 * attempts added up. */
void sync_items_list(struct lr_daemon *d, const char *folder, struct lr_syncerr_list *out);
uint64_t sync_items_count(struct lr_daemon *d, const char *folder);
/* Loop: the folder's state as users see it (enum folder_state: a scan's
 * state, or syncing while transfers or index exchanges are under way). */
int sync_items_folder_state(struct lr_daemon *d, const char *folder);

/*
 * Loop: find out what the connected peers sharing the named folders (all if
 * n == 0) still need from us, in a job: for each such peer (not one whose
 * folder is send-only, and not for a folder of ours that is receive-only),
 * every record of ours that its announced index does not have in the same
 * or a newer version (a tombstone counts only if it still has the file).
 * `cb(d, ud, res, status)` runs on the loop (status < 0: never computed,
 * shutdown). res->fresh is false when a result could not be brought up to
 * date (a computation is rate-limited to one per PEER_NEED_MIN_MS or 10x
 * its last duration per folder and peer): then res is a lower bound.
 */
struct sync_peer_need {
    uint64_t items, files, bytes;
    bool fresh;
    /* Targets (below) whose index is not stored that far yet, and the
     * first of them in words. */
    uint64_t behind;
    char behind_why[160];
    /* The first record owed (folder, peer and path in words; "" if none):
     * what a `sync --wait` that times out names. */
    char first[512];
};
/* A peer's answer to SEQ_ASK (syncseqs.c) for one folder: the job also
 * checks that we hold its index `index_id` up to `max_seq`. */
struct sync_seq_target {
    char *folder;
    struct lr_device_id peer;
    uint64_t index_id, max_seq;
};
typedef void (*sync_peer_need_cb)(struct lr_daemon *d, void *ud, const struct sync_peer_need *res,
                                  int status);
/* t[0..nt): borrowed for the call. */
void sync_items_peer_need(struct lr_daemon *d, const char *const *folders, size_t n,
                          const struct sync_seq_target *t, size_t nt, sync_peer_need_cb cb,
                          void *ud);

#endif
