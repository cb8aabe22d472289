/*
 * live.h - the daemon's live watching of its folders (daemon side of
 * src/watch/): one watcher per folder whose changes queue a scan, and a
 * periodic full rescan per folder.
 *
 * Lifecycle: live_config_changed() creates the state of every configured
 * folder (arming its periodic rescan, LIVE_RESCAN_MS, and starting its
 * watcher if the folder's marker is there) and drops that of removed
 * folders; call it before the first scans are queued. live_folder_scanned()
 * (after each successful scan) starts a watcher that could not start
 * before, or replaces one whose root went away, and then queues a catch-up
 * scan. live_stop() ends everything at shutdown. Memory is freed from libuv
 * close callbacks, so the loop must run after live_stop() (the daemon's
 * final uv_run does).
 *
 * A change notification queues a full scan of the folder unless one is
 * already waiting in the job queue (the scanner has no subpath mode; an
 * unchanged 20 000-file folder rescans in about 0.06 s). Change scans are
 * paced: the next starts no sooner than the last one's duration after it
 * ended, so a huge folder under a long incoming sync is not rescanned
 * back to back.
 *
 * Threads: loop thread only. One daemon per process (the state is kept in
 * this file, keyed by daemon).
 */
#ifndef LR_DAEMON_LIVE_H
#define LR_DAEMON_LIVE_H

/* Full rescan of every folder this often, whatever the watcher saw (no config key yet). */
#define LIVE_RESCAN_MS (3600u * 1000u)

#include <stdbool.h>

struct lr_daemon;

void live_config_changed(struct lr_daemon *d);
void live_folder_scanned(struct lr_daemon *d, const char *folder_id);
/* The folder went to error (its scan failed: root or marker missing, an
 * unreadable root; or a pull found the marker gone): it is scanned again
 * after LIVE_RETRY_MIN_MS, then twice as long each time up to
 * LIVE_RETRY_MAX_MS, until a scan succeeds (live_folder_scanned), so a disk
 * mounted again is picked up without a `sync`. */
#define LIVE_RETRY_MIN_MS 5000u
#define LIVE_RETRY_MAX_MS (300u * 1000u)
void live_folder_failed(struct lr_daemon *d, const char *folder_id);
void live_stop(struct lr_daemon *d);
/* A scan of the folder starts walking (loop side): the changes seen so far,
 * and a change scan held back, are covered by it (an own commit's renames,
 * reported after the watcher's debounce, used to cost one more scan after
 * every sync). */
void live_scan_starting(struct lr_daemon *d, const char *folder_id);
/* Changes were seen in the folder that no scan has looked at yet (the
 * watcher's window is open, or their scan is held back): sync --wait waits.
 * Events the kernel queued and the loop has not read yet are read first. */
bool live_scan_pending(struct lr_daemon *d, const char *folder_id);

#endif
