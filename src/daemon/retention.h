/*
 * retention.h - pruning a folder's versions archive (ROOT/.landropic/versions,
 * store.h) by the retention the user set for it (config.h versions_keep and
 * versions_days; docs/conflicts.md, "Archive retention"). Nothing is pruned
 * unless one of them is set: by default every version stays.
 *
 * The rule, per file: its archived versions ordered by stamp (then the
 * stamp's -N), the newest `keep` stay (keep 0: all of them), and one whose
 * stamp is more than `days` days before `now` goes (days 0: none for age).
 * A version stamped within RETENTION_FRESH_S of `now` is left to a later
 * prune (a name freed in the second it was stamped in would be reused).
 *
 * The walk: the versions of one file sit side by side in its directory's
 * mirror (versions/<dir>/<leaf>~YYYYMMDD-HHMMSS[-N]), so it handles one
 * directory at a time and its memory is bounded by the largest directory,
 * not the archive. Names that are not the archive's are never touched;
 * symlinks are never followed (an entry named like a version is removed as
 * an entry, never through); another file system mounted inside is not
 * entered; depth is bounded by DAEMON_VERSIONS_DEPTH. A mirror directory
 * left empty is removed (versions/ itself stays).
 *
 * In the daemon (retention_init): a job on the serial queue, so it never
 * runs beside a pull, commit or restore that archives into the same folder,
 * queued for a folder with retention set when its settings change (and at
 * start), after its pulls or commits wrote into it (a replaced file goes
 * to the archive) but not sooner than RETENTION_AFTER_MS, nor than
 * RETENTION_SHARE times the last walk's duration, after the last prune
 * ended (a bounded share of the queue), and every
 * RETENTION_SWEEP_MS for the age rule. A prune that removed anything logs
 * one line ("versions: folder=ID pruned N archived versions (B bytes): keep
 * K per file, D days"), every prune a debug line ("prune done: ...").
 *
 * Ownership: arguments are borrowed. The daemon side runs on the loop
 * thread; daemon_versions_prune does file I/O (a job, never the loop).
 */
#ifndef LR_DAEMON_RETENTION_H
#define LR_DAEMON_RETENTION_H

#include "util/err.h"

#include <stdatomic.h>
#include <stdint.h>

struct lr_daemon;

#define RETENTION_TICK_MS 2000
#define RETENTION_AFTER_MS 10000
#define RETENTION_SHARE 50
/* Versions stamped less than this many seconds before `now` stay for now. */
#define RETENTION_FRESH_S 2
#define RETENTION_SWEEP_MS (3600 * 1000)

struct daemon_prune_result {
    uint64_t removed;      /* archived versions deleted */
    uint64_t bytes;        /* their sizes */
    uint64_t dirs_removed; /* mirror directories left empty and removed */
    uint64_t failed;       /* entries or directories that could not be handled */
};

/*
 * Prune the archive of the folder rooted at `root`. `now` is Unix time. An
 * absent archive is nothing to do. `cancel` (may be NULL): once another
 * thread sets it, the walk stops at its next entry and LR_ECANCELED is
 * returned (what it removed stays removed). Returns 0, or LR_ENOMARKER (no
 * marker), or -errno for the archive itself; a failure below it (a directory that
 * cannot be read, an entry that cannot be removed) is counted in
 * out->failed, the walk goes on, and the first one's code is returned with
 * err naming it. *out is filled either way.
 */
int daemon_versions_prune(const char *root, uint32_t keep, uint32_t days, int64_t now,
                          const atomic_bool *cancel, struct daemon_prune_result *out,
                          struct lr_err *err);

/* The daemon's pruning: started with the loop, stopped with it (its timer
 * closes itself once d->stopping is set), freed after the loop ended. */
void retention_init(struct lr_daemon *d);
void retention_free(struct lr_daemon *d);

#endif
