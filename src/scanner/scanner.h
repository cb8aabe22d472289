/*
 * scanner.h - walk a folder, find what changed since the index last saw it,
 * chunk and hash the changed files, and record new versions in the index.
 *
 * Walk: from a descriptor on the root, with openat/fstatat/fdopendir and
 * O_NOFOLLOW, each directory's entries sorted by name bytes, depth-first, so
 * the walk meets paths in the index's path order and is merged against one
 * ordered, batched query of the index (no per-file lookups). Symlinks are
 * recorded with their target, never followed. Not descended into: another
 * file system mounted inside the folder (st_dev differs; logged, counted in
 * other_fs), ROOT/.landropic (the folder marker), whatever
 * ROOT/.landropicignore excludes, and by default that file itself (the
 * built-in rule of ignore.h; a `!.landropicignore` line opts it in). FIFOs,
 * sockets and devices are never opened: logged and counted in
 * skipped_special.
 *
 * Change detection: a regular file whose size, mtime_ns, inode and ctime_ns
 * match its record is not read. Others are read in bounded buffers, cut by
 * lr_chunker_cut() and hashed (lr_sha256 and lr_weak64 per chunk, no
 * whole-file hash) by a pool of max(2, nproc) worker threads, so one big
 * file uses every core. A file whose fstat differs after reading from before
 * (size, mtime, ctime, inode) is not recorded; it is retried
 * LR_SCAN_RETRIES times, then counted in skipped_changing. Re-read files
 * whose content, size, mode and mtime turn out equal only refresh inode and
 * ctime (no new version). Directories are versioned on mode changes only.
 *
 * Deletions: a path in the index but no longer on disk gets a tombstone
 * (deleted flag, version vector bumped, new sequence). Paths the scan did
 * not look at (ignored, unreadable, errors, under a mount point) and
 * directories the daemon removed to put a peer's file in their place
 * (inode LR_IX_INODE_REPLACED, index.h) keep their records untouched, except that a record of the
 * ignore file itself while it is ignored (left by a version that indexed it) is forgotten
 * (lr_index_file_forget: no tombstone, no sequence, peers are told
 * nothing). If ROOT/.landropic is not a directory at the start of
 * the scan or before any batch holding tombstones is committed, the scan
 * fails with LR_ENOMARKER naming the path and that batch is rolled back: a
 * folder on an unmounted disk or an emptied root never records deletions.
 *
 * Version vectors: every new version (add, change, tombstone) bumps this
 * device's counter (the folder's short ID) with lr_vv_bump() at the current
 * Unix time.
 *
 * Transactions: index writes are batched (LR_SCAN_BATCH records or a quarter
 * of a second per commit); no read transaction stays open between batches.
 *
 * Memory: bounded by the hashing buffers (LR_SCAN_BUFS x LR_SCAN_BUF_SIZE),
 * the per-directory listings on the current path, and a chunk list of 48
 * bytes per 64 KiB of the files being hashed; independent of folder size.
 *
 * Ownership: `ix` is borrowed and must not be used by another thread during
 * the call; `folder_id`, `root`, `opts` are borrowed. `res` is zeroed on
 * entry and filled (also on failure, with the counts so far).
 *
 * Errors: LR_ENOMARKER (marker missing; no deletions recorded), LR_ENOTFOUND
 * (folder has no index and opts->short_id is 0), LR_EDB, LR_EPATTERN (bad
 * .landropicignore), -errno for the root itself (open, stat). Per-entry
 * failures (EACCES, vanished files) are logged and counted in skipped_error,
 * not returned.
 *
 * Threads: the call blocks; it starts and joins its own worker threads.
 */
#ifndef LR_SCANNER_SCANNER_H
#define LR_SCANNER_SCANNER_H

#include "index/index.h"
#include "util/err.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define LR_SCAN_MARKER ".landropic"
#define LR_SCAN_IGNORE_FILE ".landropicignore"
#define LR_SCAN_RETRIES 3
#define LR_SCAN_BATCH 2000
#define LR_SCAN_BUF_SIZE (4u * 1024 * 1024)
#define LR_SCAN_BUFS 6

struct lr_scan_opts {
    /*
     * This device's short ID for version vectors. 0: use the one stored with
     * the folder (the folder must then exist, lr_index_folder_ensure()).
     * Non-zero: the folder is created if needed and its short ID updated.
     */
    uint64_t short_id;
    /* Worker threads; 0 = max(2, number of online CPUs). */
    unsigned threads;
    /*
     * Called on the scanning thread for each entry counted in skipped_error
     * (path relative to the root, not NUL-terminated; the failure and what
     * was being done), so the daemon can list it as failing. May be NULL.
     */
    void (*on_skip)(void *arg, const uint8_t *path, size_t len, int rc, const char *what);
    void *skip_arg;
    /*
     * Called on the scanning thread after each batch of records was
     * committed before the scan ends (every LR_SCAN_BATCH entries or a quarter
     * of a second), so a caller can announce a long first scan's results while it
     * runs. May be NULL.
     */
    void (*on_commit)(void *arg);
    void *commit_arg;
    /* Special files (FIFO, socket, device) skipped are logged at debug
     * level, not info: a daemon's rescans repeated the same lines at every
     * change (a third of a log). */
    bool quiet_specials;
    /*
     * May be NULL. Once another thread sets it, the scan stops at the next
     * entry or read of at most a buffer and fails with LR_ECANCELED: the
     * batches it committed stay (whole files, and deletions only once more
     * than TOMBS_MAX were held), entries it did not reach keep their
     * records; the next scan carries on from what the index then holds.
     */
    const atomic_bool *cancel;
#ifdef LR_FAILPOINTS
    /*
     * Test hook, called on the scanning thread after a regular file's data
     * was read and before the second fstat (so it may modify the file).
     * `relpath` is NUL-terminated; `attempt` counts from 0.
     */
    void (*fp_after_read)(void *arg, const char *relpath, int attempt);
    void *fp_arg;
#endif
};

struct lr_scan_result {
    /* Folder totals after the scan (live records). */
    uint64_t files, dirs, symlinks, bytes;
    /* Entries this scan recorded a new version for. */
    uint64_t added, changed, deleted;
    /* Bytes read and hashed (retries included). */
    uint64_t bytes_hashed;
    /* Entries not looked at or not recorded: the sum of the four below. */
    uint64_t skipped;
    uint64_t skipped_special;  /* FIFO, socket, device */
    uint64_t skipped_changing; /* kept changing while being hashed */
    uint64_t skipped_error;    /* unreadable, vanished mid-scan, ... */
    uint64_t other_fs;         /* mount points inside the folder, not descended */
    uint64_t ignored;          /* excluded by .landropicignore (not in `skipped`) */
    double seconds;
};

/*
 * Scan the folder `folder_id` rooted at `root` (an existing directory) and
 * bring its index up to date. opts may be NULL (all defaults). Returns 0 or
 * a negative code (see above); res is filled either way.
 */
int lr_scan_folder(struct lr_index *ix, const char *folder_id, const char *root,
                   const struct lr_scan_opts *opts, struct lr_scan_result *res, struct lr_err *err);

#endif
