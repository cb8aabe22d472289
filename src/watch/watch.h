/*
 * watch.h - live change notification for one folder tree: recursive inotify
 * on a libuv loop, debounced and coalesced into "these paths changed" calls.
 *
 * What it does: every directory under `root` gets an inotify watch (walked
 * with openat(O_NOFOLLOW), so symlinks are never followed and a watch is
 * always placed on the directory that was opened, not on whatever a path
 * resolves to later). Not watched: ROOT/.landropic (the folder marker and
 * staging area), directories ROOT/.landropicignore excludes (reloaded when
 * that file changes), other file systems mounted inside the tree. New
 * directories (created or moved in) are watched as they appear and reported
 * as changed (their whole subtree); watches of removed or moved-away
 * directories are dropped. The inotify descriptor is read through a
 * uv_poll_t, not uv_fs_event_t, because the latter drops IN_Q_OVERFLOW.
 *
 * What it reports: `cb(user, paths, n, full_rescan)`. Each path is relative
 * to the root ('/' separators, no leading '/', never empty) and means "this
 * entry, and if it is a directory everything under it, may have changed"
 * (created, written, deleted, renamed from or to, attributes). Paths are
 * deduplicated, a path under another reported path is left out, and when
 * LR_WATCH_COLLAPSE (opts->collapse_at) or more entries of one directory
 * changed they are replaced by the directory. full_rescan = true (then
 * n = 0, paths = NULL) means events were lost or too many paths changed: the
 * whole folder must be rescanned. Causes: the kernel queue overflowed
 * (IN_Q_OVERFLOW), the watch limit was reached (ENOSPC from
 * inotify_add_watch, or opts->max_watches), more than opts->max_pending
 * paths or opts->max_pending_bytes bytes were pending, the root itself was
 * moved or deleted. The first overflow or watch-limit hit of a watcher logs
 * a warning naming the sysctl (fs.inotify.max_user_watches /
 * max_queued_events) and a command to raise it.
 *
 * When it reports (debounce): a window opens with the first event and
 * closes once no event (other than IN_MODIFY) came for opts->debounce_ms,
 * or opts->max_delay_ms after it opened, whichever is first; then one call
 * carries everything pending. A file that got IN_MODIFY without a later
 * IN_CLOSE_WRITE (still being written) is held back until it has been quiet
 * for debounce_ms, but no longer than max_delay_ms after its first event, so
 * a constantly written file is still reported about once per max_delay_ms.
 * An editor's save (write a temp file, rename it over) is one call.
 *
 * Memory: bounded by the watch table (one entry per watched directory, at
 * most the kernel's per-user watch limit or opts->max_watches), the pending
 * set (opts->max_pending paths / max_pending_bytes; beyond it everything
 * collapses to full_rescan), and a fixed 64 KiB read buffer. Paths longer
 * than LR_WATCH_PATH_MAX are reported as their deepest parent that fits.
 *
 * Cost: the initial walk, and a re-walk after an overflow or an ignore-file
 * change, run synchronously on the loop thread (one openat + readdir +
 * inotify_add_watch per directory). Directory moves scan the watch table
 * (O(watched directories)).
 *
 * Ownership: `loop` is borrowed and must outlive the watcher; `root` and
 * `opts` are copied; `user` is retained and passed back to `cb`. The
 * `paths` array and its strings are borrowed for the duration of the call.
 * *out is owned by the caller and released with lr_watch_stop().
 *
 * Errors from lr_watch_start: -errno for inotify_init1 (EMFILE: the
 * fs.inotify.max_user_instances limit) or for opening the root, LR_EUSAGE
 * for bad options. A failure to watch part of the tree is not an error: it
 * is logged and reported as full_rescan. On failure *out is NULL.
 *
 * Threads: everything runs on the loop's thread, including lr_watch_stop()
 * and the callback. The callback may call lr_watch_stop() on its own
 * watcher; it is then not called again.
 */
#ifndef LR_WATCH_WATCH_H
#define LR_WATCH_WATCH_H

#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LR_WATCH_DEBOUNCE_MS 150
#define LR_WATCH_MAX_DELAY_MS 1000
#define LR_WATCH_MAX_PENDING 4096
#define LR_WATCH_MAX_PENDING_BYTES (1024 * 1024)
#define LR_WATCH_COLLAPSE 64
#define LR_WATCH_PATH_MAX 4096

struct lr_watch;

/* Every field may be 0 for its default. */
struct lr_watch_opts {
    unsigned debounce_ms;     /* quiet time that closes a window (LR_WATCH_DEBOUNCE_MS) */
    unsigned max_delay_ms;    /* longest a change waits (LR_WATCH_MAX_DELAY_MS); >= debounce */
    size_t max_pending;       /* pending paths before full_rescan (LR_WATCH_MAX_PENDING) */
    size_t max_pending_bytes; /* their total length (LR_WATCH_MAX_PENDING_BYTES) */
    size_t collapse_at;       /* changed entries of one directory reported as it (64) */
    size_t max_watches;       /* own cap on watched directories; 0 = the kernel's limit only */
    const char *name;         /* for log lines (folder ID); copied; NULL = the root path */
};

/*
 * Called on the loop thread once per closed window; see the top comment.
 * paths[0..n) sorted with '/' below every other byte.
 */
typedef void (*lr_watch_cb)(void *user, const char *const *paths, size_t n, bool full_rescan);

/*
 * Start watching the directory tree at `root` (an existing directory; the
 * root itself is opened following symlinks, like the scanner). opts may be
 * NULL. Returns 0 and *out, or a negative code (see above) with err naming
 * the culprit.
 */
int lr_watch_start(uv_loop_t *loop, const char *root, const struct lr_watch_opts *opts,
                   lr_watch_cb cb, void *user, struct lr_watch **out, struct lr_err *err);

/*
 * Stop: no further callbacks; pending changes are dropped. The handles are
 * closed and the memory freed from their close callbacks, so the loop must
 * run once more (as uv_close requires). NULL is a no-op.
 */
void lr_watch_stop(struct lr_watch *w);

/*
 * A full scan of the tree starts now: it will see every change made before
 * this call, so drop what is pending (paths, a full rescan) and close the
 * window. Events read after the call open a new one, including those of
 * earlier changes that the loop had not read from the kernel yet (at worst
 * one more report). NULL is a no-op.
 */
void lr_watch_forget_pending(struct lr_watch *w);

/*
 * Read what the kernel has queued for the watcher now, as the loop would at
 * its next turn (events are only read when the loop polls): a caller about
 * to ask whether changes are pending (lr_watch_get_stats) sees one made
 * just before, even if the loop has not come round to it yet. No-op when
 * nothing is queued, after a stop, or for NULL. Loop thread.
 */
void lr_watch_read_now(struct lr_watch *w);

struct lr_watch_stats {
    size_t watches;     /* directories watched now */
    size_t pending;     /* paths waiting for the window to close */
    bool window_open;   /* changes seen and not reported yet (paths or a full rescan) */
    uint64_t events;    /* inotify events read */
    uint64_t overflows; /* full rescans caused by lost events or limits */
    uint64_t calls;     /* callbacks made */
    bool root_gone;     /* the root was moved, deleted or unmounted: start a new watcher */
};

void lr_watch_get_stats(const struct lr_watch *w, struct lr_watch_stats *st);

#endif
