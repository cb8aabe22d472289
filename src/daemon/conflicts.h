/*
 * conflicts.h - the daemon's visible and reversible side of conflicts
 * (docs/conflicts.md): the audit trail (recorded from the puller's
 * decisions, listed by `conflicts`), the conflict copy count of `status`,
 * the versions archive listing (`versions`) and `restore`.
 *
 * Threads. daemon_conflict_note() runs in a pull job's work() (it owns
 * d->ix there) and only queues the matching event; daemon_conflicts_flush()
 * emits queued events on the loop thread (pull_done). Everything else is
 * called on the loop: it reads the database through a read-only connection
 * of its own, opened per call (WAL readers never wait for the job that
 * writes), and restore does its file work as a serial daemon job, so it
 * never races the puller on a path (without a daemon the CLI calls
 * daemon_restore_file() itself, then scans in-process).
 *
 * The versions archive (store.h): ROOT/.landropic/versions/<dir>/<leaf>~
 * YYYYMMDD-HHMMSS[-N]. A version's ID is that path relative to versions/
 * ("a/b.txt~20261125-161500"); `restore --version` also takes the stamp
 * alone ("20261125-161500", "20261125-161500-1").
 *
 * Ownership: lists own their strings; release them with
 * daemon_version_list_release() (safe on a zeroed list, and twice).
 * Borrowed arguments are not retained.
 */
#ifndef LR_DAEMON_CONFLICTS_H
#define LR_DAEMON_CONFLICTS_H

#include "util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lr_daemon;
struct lr_api_req;
struct lr_file_rec;
struct lr_device_id;
struct lr_sync_decision;
struct lr_index;

/* Most archived versions one listing returns, and most directories it
 * walks (the rest: `truncated`). */
#define DAEMON_VERSIONS_MAX 10000
/* Directory depth the archive walk descends. */
#define DAEMON_VERSIONS_DEPTH 256
/* Conflict events held for the loop before the oldest are dropped. */
#define DAEMON_CONFLICT_EVENTS_MAX 1024

/* ---- job side ---------------------------------------------------------- */

/*
 * A pull job decided `dec` for a path (local: this device's record or NULL;
 * remote: the candidate record, held by holders[0..nholders); peers: every
 * configured peer, to name an author by full ID). If the
 * decision names a conflict it is recorded in the audit trail once (the
 * same pair of versions decided again in a later round is not a new
 * conflict), logged, and its event queued. Never fails the caller: a
 * database failure is logged.
 */
void daemon_conflict_note(struct lr_daemon *d, const char *folder, const struct lr_file_rec *local,
                          const struct lr_file_rec *remote, const struct lr_device_id *holders,
                          size_t nholders, const struct lr_device_id *peers, size_t npeers,
                          const struct lr_sync_decision *dec);

/*
 * A peer's name could not be applied because the folder's directory folds
 * names and holds another spelling of it (store.h, LR_ECLASH): `path`
 * (path_len bytes) is the peer's path, its first prefix_len bytes the
 * clashing name, `existing` (NUL-terminated) that prefix as spelled on
 * disk. Recorded in the audit trail as type "structural", detail
 * "case-clash", resolution "not-applied", winner "local" (the entry on
 * disk keeps its name), kept_path = `existing`, devices = this one and the
 * peers holding `path`; once per pair of names (later retries and other
 * files below the same clashing directory are not new entries). Logged
 * and its event queued when added. Job side (owns d->ix); never fails the
 * caller.
 */
void daemon_conflict_clash(struct lr_daemon *d, const char *folder, const uint8_t *path,
                           size_t path_len, size_t prefix_len, const char *existing);

/* ---- loop side ----------------------------------------------------------- */

/* Emit the queued conflict events of d (type "conflict"). */
void daemon_conflicts_flush(struct lr_daemon *d);
/* Conflict copies present in the folder (live records named like one); 0 if unknown. */
uint64_t daemon_conflict_copies(struct lr_daemon *d, const char *folder);

/* API methods: "conflicts" {folder?}, "versions" {folder, path?}, "restore"
 * {folder, path, version?}. `folder` is checked to exist by the caller for
 * "conflicts"; the others check it themselves. */
void daemon_m_conflicts(struct lr_daemon *d, struct lr_api_req *req, const char *folder);
void daemon_m_versions(struct lr_daemon *d, struct lr_api_req *req, json_t *params);
void daemon_m_restore(struct lr_daemon *d, struct lr_api_req *req, json_t *params);

/* ---- the archive, also read by the CLI without a daemon -------------------- */

struct daemon_version {
    char *id;      /* path below .landropic/versions/ */
    uint8_t *path; /* the folder path it was archived from (NUL-terminated) */
    size_t path_len;
    bool cut; /* the archive cut an over-long leaf: path is the cut form */
    uint64_t size;
    int64_t mtime_s;    /* the archived file's modification time */
    int64_t archived_s; /* from the stamp (UTC) */
    unsigned seq;       /* the stamp's "-N" (0 without) */
};

struct daemon_version_list {
    struct daemon_version *v;
    size_t n;
    bool truncated; /* more than DAEMON_VERSIONS_MAX */
};
void daemon_version_list_release(struct daemon_version_list *l);

/*
 * An archived file's name, "leaf~YYYYMMDD-HHMMSS[-N]": *leaf_len gets the
 * leaf's length (a cut one's "~hash" included), *when the stamp's time
 * (UTC), *seq N (0 without), *cut whether the leaf is the archive's cut form
 * of an over-long name. False for any other name (not the archive's: left
 * alone by every reader).
 */
bool daemon_version_name_parse(const char *name, size_t *leaf_len, int64_t *when, unsigned *seq,
                               bool *cut);
/* Open ROOT/.landropic/versions as a directory (never through a symlink)
 * into *out: -ENOENT (err untouched) if there is none, LR_ENOMARKER without
 * the marker or the root itself, -errno otherwise (err names the path). */
int daemon_versions_open(const char *root, int *out, struct lr_err *err);

/*
 * Archived versions of the folder rooted at `root`, sorted by path then
 * archiving time; only those of `path` (a file, or everything below a
 * directory) if path is not NULL. Symlinks in the archive are never
 * followed. An absent archive is an empty list. LR_ENOMARKER if the folder
 * has no .landropic marker, -errno for other failures (err names the path).
 */
int daemon_versions_list(const char *root, const char *path, struct daemon_version_list *out,
                         struct lr_err *err);
/*
 * The JSON document of `versions` ({"folder", "versions": [...],
 * "truncated"}); `ix` (may be NULL) supplies "why" from the audit trail.
 */
json_t *daemon_versions_json(const char *folder, const struct daemon_version_list *l,
                             struct lr_index *ix);

/*
 * Put the newest archived version of `path` (or the one `version` names: an
 * ID or its stamp) back in place in the folder rooted at `root`: copied from
 * the archive through the store's staging and committed with the current
 * file as `expect`, so that file is archived in turn (and a concurrent edit
 * makes this fail with LR_ECHANGED, replacing nothing). The caller must
 * then scan the folder so the file gets a new version. *id (free()) gets
 * the version restored, *replaced whether a file was replaced. Errors:
 * LR_EBADPATH, LR_ENOTFOUND (no such version; err names path and version),
 * LR_EEXISTS (a directory or non-file at path), LR_ENOMARKER, LR_ECHANGED,
 * -errno. Runs file I/O: not on the daemon's loop.
 */
int daemon_restore_file(const char *root, const char *path, const char *version, char **id,
                        bool *replaced, struct lr_err *err);

#endif
