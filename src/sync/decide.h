/*
 * decide.h - the sync engine's pure decision layer: given this device's
 * record of a path and a peer's record of the same path, what must happen.
 *
 * Sans-I/O: nothing here touches a socket, a disk or a clock; every answer
 * is a function of the two records (and, for lr_sync_decide_with, of both
 * devices' conflict strategies, strategy.h) only, so every device that sees
 * the same pair computes the same outcome (docs/internals/sync.md has the rule table
 * with the reasons, and the precise tie-breaks). The daemon performs the
 * actions; plan.h orders them within a pull round.
 *
 * The rules in one paragraph. Version vectors (VV) decide order. Remote
 * newer: take it (content, directory, symlink, delete, or only the vector
 * when the content is already equal). Local newer or equal: nothing.
 * Concurrent with the same content (or two tombstones): merge the vectors
 * element-wise, no transfer; the metadata of the "greater" version wins.
 * Concurrent and different, where one version has seen the other itself
 * (its vector holds the other's author at the other's own counter): the
 * one that saw is newer (taken with the merged vector), not a conflict;
 * the rest of the other's vector is merges (a loser already kept, the same
 * content). Otherwise a conflict. The greater version keeps the name
 * (live beats tombstone, directory beats non-directory, then newer mtime,
 * then the author's larger short device ID, then a fixed order of the
 * content itself); a live, non-directory loser is
 * kept as a conflict copy, made only by a device holding it, which then
 * takes the winner with the merged vector. The device holding the winner
 * changes nothing (a merged vector there would reach the loser's holder as a
 * plain newer version and overwrite the loser before its copy exists); it
 * learns the merged vector when the loser's holder announces it.
 *
 * Author of a version (the conflict copy's DEVICE7, and what prefer:ID
 * names): the vector's `author` (index.h: set by the local change that made
 * the version, kept when it is copied, relayed or stored, and given to the
 * merged vector a conflict's loser takes with the winner; a merge of the
 * same content takes the larger known author that still names its version:
 * lr_sync_vv_merged_author), else, when unknown (a
 * peer that does not send it), the entry with the largest counter, among
 * equal counters the largest short ID (lr_sync_vv_author()).
 *
 * Inputs: records are borrowed for the call and must satisfy index.h's
 * invariants (vectors sorted, unique ids, counters > 0), which
 * lr_vv_decode() enforces on peer input. A remote record of a type this
 * build does not know (LR_FT_UNKNOWN) is never fetched or deleted for.
 *
 * Ownership: struct lr_sync_decision owns its vv and copy_path; release it
 * with lr_sync_decision_release() (safe on a zeroed struct, and twice).
 * Outputs are zeroed on entry and filled only on success.
 *
 * Errors: LR_EUSAGE (no remote record, or local and remote paths differ),
 * LR_ETOOBIG (a merged vector over LR_VV_MAX entries), LR_EBADPATH (empty
 * name given to lr_sync_conflict_name).
 *
 * Threads: no shared state; every function is reentrant.
 */
#ifndef LR_SYNC_DECIDE_H
#define LR_SYNC_DECIDE_H

#include "index/index.h"
#include "sync/strategy.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes the conflict marker ".sync-conflict-YYYYMMDD-HHMMSS-DEVICE7" adds. */
#define LR_SYNC_MARKER_LEN 38
/* Longest file name component the conflict copy name may have (NAME_MAX). */
#define LR_SYNC_NAME_MAX 255

enum lr_sync_action {
    LR_SYNC_NOTHING = 0,     /* local is newer or equal (or remote unusable) */
    LR_SYNC_TAKE_REMOTE = 1, /* remote supersedes local: apply it (see apply) */
    LR_SYNC_MERGE_VV = 2,    /* concurrent, same content: store the merged vector */
    LR_SYNC_CONFLICT = 3,    /* concurrent, different: winner keeps the name */
};

/* What the local disk undergoes at the path (besides an optional conflict copy). */
enum lr_sync_apply {
    LR_SYNC_APPLY_NONE = 0,    /* nothing to do, nothing to store (NOTHING) */
    LR_SYNC_APPLY_RECORD = 1,  /* disk unchanged; store the resulting record */
    LR_SYNC_APPLY_META = 2,    /* content equal: set mode/mtime, store */
    LR_SYNC_APPLY_FILE = 3,    /* fetch the remote file's content (plan.h), write, store */
    LR_SYNC_APPLY_DIR = 4,     /* create the directory (or fix its mode), store */
    LR_SYNC_APPLY_SYMLINK = 5, /* create or replace the symlink, store */
    LR_SYNC_APPLY_DELETE = 6,  /* remove the local entry at the end of the round, store */
};

/* How the resolution is recorded in the audit trail. */
enum lr_sync_conflict {
    LR_SYNC_CONFLICT_NONE = 0,
    LR_SYNC_CONFLICT_METADATA = 1,      /* MERGE_VV: same content, mode/mtime differed */
    LR_SYNC_CONFLICT_CONTENT = 2,       /* both changed the data */
    LR_SYNC_CONFLICT_TYPE = 3,          /* file vs directory vs symlink */
    LR_SYNC_CONFLICT_MODIFY_DELETE = 4, /* a tombstone vs a live edit: the edit wins */
};

/* Flags of a decision. */
/* Before changing the disk, check the entry at the path is still what the
 * local record says (absent if none or a tombstone). If it is not, the file
 * changed after the scan: do not touch it, rescan, decide again. */
#define LR_SYNC_F_CHECK_DISK 0x01u
/* The local live entry has another type: it goes first (a directory only
 * if empty; plan.h orders that after the round's deletes). */
#define LR_SYNC_F_REPLACE_TYPE 0x02u
/* The entry removed is a directory: remove it only if empty at the end of the
 * round. Anything left inside (ignored, unknown, or a live file that won)
 * keeps it, is reported and is never deleted; the tombstone is then not
 * stored, so the decision is retried. */
#define LR_SYNC_F_IF_EMPTY 0x04u
/* Equal vectors but different content or metadata: some device broke the
 * rules (or an index was restored from a backup). Nothing is done; report. */
#define LR_SYNC_F_INCONSISTENT 0x08u
/* The remote record has a type this build does not know: kept, ignored. */
#define LR_SYNC_F_UNKNOWN_TYPE 0x10u
/* CONFLICT whose loser goes to the versions archive instead of a conflict
 * copy: its copy name cannot fit (path at the length limit), or the
 * strategies picked the winner (by_strategy). */
#define LR_SYNC_F_ARCHIVE_LOSER 0x20u
/* NOTHING for now: concurrent versions the strategies may decide, but the
 * peer's strategy is unknown (sides->remote_unknown) and ours is not
 * keep-both. Guessing could make the two devices pick opposite winners;
 * decide again once the peer has announced its strategy. */
#define LR_SYNC_F_DEFERRED 0x40u
/* CONFLICT or TAKE_REMOTE of a concurrent pair that the remote version won
 * because the local one yields (sides->local_yields: an own version of a
 * receive-only folder, which its peers never see, so no rule of theirs can
 * let it win there). The result is stored with the remote's vector, not
 * the merged one: a merged vector would still be our own version, never
 * announced, and the peers would wait for this device forever. A live
 * local loser is kept as a conflict copy, or by the versions archive when
 * the remote deleted the path. */
#define LR_SYNC_F_YIELDED 0x80u
/* NOTHING because our version has seen the remote one (its known author at
 * its counter) and not the reverse: ours is newer, though the vectors are
 * concurrent (the remote holds merges ours lacks). */
#define LR_SYNC_F_SUPERSEDES 0x200u
/* Set by the daemon, not by lr_sync_decide: a CONFLICT this device's version
 * won against a version held only by send-only peers, which never resolve
 * it; this device stores its version with the merged vector (apply RECORD)
 * and the loser stays the send-only devices' live file. */
#define LR_SYNC_F_KEPT_BY_SENDER 0x100u

struct lr_sync_decision {
    enum lr_sync_action action;
    enum lr_sync_apply apply;
    enum lr_sync_conflict conflict;
    unsigned flags; /* LR_SYNC_F_* */
    /* The record to store after applying (apply != NONE): all fields from the
     * remote record if from_remote, else from the local one, except the
     * vector, which is `vv` (remote's for TAKE_REMOTE of a newer vector, the
     * element-wise maximum for MERGE_VV, CONFLICT and a TAKE_REMOTE of a
     * version that saw ours). Empty when apply is NONE (NOTHING,
     * and a CONFLICT the local version wins: nothing changes here). */
    bool from_remote;
    struct lr_vv vv;
    /* The entry at the path before and after (for ordering, plan.h). */
    bool old_live; /* a live local record exists */
    enum lr_ftype old_type;
    bool new_live; /* the stored result is live */
    enum lr_ftype new_type;
    /* CONFLICT with a live non-directory loser: the copy's path (owned,
     * NUL-terminated), same directory as the path. copy_here: the loser is
     * the local record, so this device makes the copy: first move (rename)
     * or copy the loser to copy_path, recorded as a local change
     * (lr_sync_local_change on whatever copy_path had), then apply. If
     * copy_path already holds the same content, nothing more is needed (a
     * device that resolved the same conflict made it). */
    bool copy_here;
    uint8_t *copy_path;
    size_t copy_path_len;
    /* CONFLICT or MERGE_VV whose winner both devices' strategies named
     * (lr_sync_decide_with): no conflict copy is made. */
    bool by_strategy;
    /* This device's strategy (sides->local), text form, for the audit
     * trail: "keep-both" from lr_sync_decide, "receive-only" when the
     * local version yielded (LR_SYNC_F_YIELDED). */
    char strategy[LR_SYNC_STRATEGY_STRLEN + 1];
};

void lr_sync_decision_release(struct lr_sync_decision *d);

/* Same data at the path: tombstones are all "absent" (equal to each other), directories hold
 * none, files compare size and block list hash, symlinks their target. */
bool lr_sync_same_content(const struct lr_file_rec *a, const struct lr_file_rec *b);
/* For two live records of the same content: whether metadata that matters on disk differs
 * (a file's mode and mtime, a directory's mode, a symlink's mtime); false for a tombstone. */
bool lr_sync_meta_differs(const struct lr_file_rec *a, const struct lr_file_rec *b);

/* Stable lower-case names for logs, the audit trail and JSON ("take-remote",
 * "modify-delete", ...); "unknown" for a value out of range. Static strings. */
const char *lr_sync_action_str(enum lr_sync_action a);
const char *lr_sync_apply_str(enum lr_sync_apply a);
const char *lr_sync_conflict_str(enum lr_sync_conflict c);

/*
 * Decide what to do about `remote` (a peer's record; required) given
 * `local` (this device's record of the same path, or NULL if it has none).
 * Returns the action (>= 0, also in out->action) or a negative error.
 * Symmetric: swapping local and remote yields the same winner, merged
 * vector and copy path (tested).
 */
int lr_sync_decide(const struct lr_file_rec *local, const struct lr_file_rec *remote,
                   struct lr_sync_decision *out, struct lr_err *err);

/*
 * lr_sync_decide with both devices' conflict strategies (`sides`, borrowed;
 * NULL: keep-both on both, exactly lr_sync_decide). They matter only for
 * concurrent versions that are both live regular files (content or
 * metadata conflicts); type and modify/delete conflicts keep their fixed
 * rules. Each device's strategy names the local version, the remote one or
 * neither (keep-both; a `newest` whose mtimes are closer than its window; a
 * `largest` of equal sizes; a prefer:ID naming neither device). When both
 * name the same version it wins: no conflict copy (by_strategy, and for a
 * CONFLICT LR_SYNC_F_ARCHIVE_LOSER: the loser's holder archives it when the
 * winner replaces it). Otherwise keep-both decides as lr_sync_decide.
 * With our strategy other than keep-both and the peer's unknown, such a
 * pair is deferred (NOTHING, LR_SYNC_F_DEFERRED); with ours keep-both the
 * peer's cannot matter (a winner needs both). With sides->local_yields every
 * concurrent pair goes to the remote version (LR_SYNC_F_YIELDED), whatever
 * the strategies: the peer never sees the local version, so there is no
 * symmetry to keep.
 * Symmetric: the peer, deciding with local and remote (and the sides)
 * swapped, reaches the same winner, vector and copy (tested).
 */
int lr_sync_decide_with(const struct lr_file_rec *local, const struct lr_file_rec *remote,
                        const struct lr_sync_sides *sides, struct lr_sync_decision *out,
                        struct lr_err *err);

/* ---- version vectors ----------------------------------------------------- */

/*
 * Element-wise maximum of a and b into *out (zeroed first; may not alias
 * a or b), its author the larger of lr_sync_vv_merged_author(out, a) and
 * (out, b), 0 if neither. 0, or LR_ETOOBIG if the union has more than
 * LR_VV_MAX ids.
 */
int lr_sync_vv_merge(const struct lr_vv *a, const struct lr_vv *b, struct lr_vv *out);

/* part's known author (part->author, an id of part) if the merged vector
 * still holds it at part's counter, i.e. it still names part's version; else
 * 0. A derived author is never given: stored, it would pass for known. */
uint64_t lr_sync_vv_merged_author(const struct lr_vv *merged, const struct lr_vv *part);

/* Author of a version: vv->author when it is an id of the vector, else the id
 * of the largest counter, ties to the larger id; 0 if empty. */
uint64_t lr_sync_vv_author(const struct lr_vv *vv);

/*
 * The vector for a local change of a path whose current record has vector
 * `old` (NULL or empty if none): a copy of old with `self`'s counter bumped
 * to max(counter + 1, now_s) (lr_vv_bump). 0 or LR_ETOOBIG (vector full or
 * counter at its maximum); *out zeroed first.
 */
int lr_sync_local_change(const struct lr_vv *old, uint64_t self, uint64_t now_s, struct lr_vv *out);

/* ---- conflict copy names -------------------------------------------------- */

/*
 * Conflict copy path for `path` (a valid index path): in the same directory,
 * NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE7.EXT with the losing version's
 * mtime (UTC) and the first 7 characters of the formatted device ID whose
 * short ID is `author` (the formatted ID's first 7 characters depend only on
 * its first 35 bits, which the short ID holds).
 *
 * EXT is the last extension only ("a.tar.gz" -> "a.tar" + marker + ".gz");
 * a name whose only dot leads it (".bashrc", "..x") or ends it ("a.") has
 * none. A name that is already a conflict copy has its marker replaced, never
 * a second one added. If the name would exceed LR_SYNC_NAME_MAX bytes (or
 * the path LR_INDEX_PATH_MAX), NAME is truncated, never the marker or EXT
 * (EXT is dropped into NAME only if it leaves no byte of NAME); a NAME that
 * is valid UTF-8 is cut on a character boundary.
 *
 * *out (NUL-terminated, free()) and *out_len set on success. LR_EBADPATH for
 * an empty path or one ending in '/', LR_ETOOBIG if no name fits.
 */
int lr_sync_conflict_name(const uint8_t *path, size_t path_len, int64_t mtime_ns, uint64_t author,
                          uint8_t **out, size_t *out_len, struct lr_err *err);

/*
 * When the conflict copy name is already held by a different version (the
 * same author lost twice within one second of mtime), the copy is named
 * NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE7.HHHHHH.EXT instead: the last
 * marker of `copy_path` (a name from lr_sync_conflict_name) followed by '.'
 * and the first 6 hex digits of `content` (the losing version's blocks hash,
 * or a hash of its link target), so every device that sees the same clash
 * picks the same name. *out (free()) and *out_len on success; LR_EBADPATH if
 * copy_path has no marker, LR_ETOOBIG if the name would exceed
 * LR_SYNC_NAME_MAX.
 */
int lr_sync_conflict_name_alt(const uint8_t *copy_path, size_t copy_path_len,
                              const struct lr_hash *content, uint8_t **out, size_t *out_len,
                              struct lr_err *err);

/* True if the last component of path carries a conflict marker. */
bool lr_sync_is_conflict_copy(const uint8_t *path, size_t path_len);

#endif
