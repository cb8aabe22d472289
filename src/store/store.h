/*
 * store.h - the file system side of a synced folder: safe resolution of
 * peer paths, staging files for incoming data, atomic apply (commit,
 * symlink, mkdir, delete, metadata), the versions archive, chunk reads for
 * serving peers, and batched durability.
 *
 * Layout inside a folder ROOT:
 *   ROOT/.landropic/            marker (must exist and be a real directory)
 *   ROOT/.landropic/tmp/        staging files: <64 hex of the key>, and
 *                               short-lived "t-<pid>-<n>" names (symlinks
 *                               being created, entries being taken away)
 *   ROOT/.landropic/index-mark  this device's index of the folder as last
 *                               announced (lr_store_mark_write)
 *   ROOT/.landropic/versions/   replaced and deleted files, mirrored by
 *                               directory: versions/<dir>/<leaf>~YYYYMMDD-HHMMSS
 *                               (UTC), "-N" appended on collision; a leaf too
 *                               long for that is cut and tagged with 8 hex of
 *                               its SHA-256 (docs/internals/store.md).
 *
 * Safety rules (hostile-cases.md 1-4, 12-14, 16, 17, 26, 27):
 *  - Every relpath is re-checked here (lr_store_path_check: the index's
 *    lr_index_path_check plus "first component is not .landropic", compared
 *    ASCII-case-insensitively for case-folding file systems).
 *  - Every path is resolved from the root descriptor with openat2()
 *    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV |
 *    RESOLVE_NO_MAGICLINKS (EAGAIN retried; ENOSYS falls back to a
 *    per-component O_NOFOLLOW walk that checks st_dev). Paths longer than
 *    PATH_MAX are resolved in segments. A symlink anywhere on the way is
 *    -ELOOP, a non-directory parent -ENOTDIR, a mount point -EXDEV: nothing
 *    is ever written through a link or outside the root, also when a parent
 *    is swapped for a symlink mid-operation (all changes are *at() calls on
 *    a parent descriptor that was opened safely).
 *  - Changes compare the target with what the caller expects (struct
 *    lr_store_expect, from the last scan) first; a mismatch is LR_ECHANGED
 *    and nothing is touched. Replacement is an atomic RENAME_EXCHANGE that
 *    is checked again afterwards and undone if the old entry is not the one
 *    expected, so an edit racing with the apply is never lost.
 *  - A replaced or deleted regular file is linked or moved (never copied)
 *    into versions/, so no data is destroyed silently, even by a crash at
 *    any point (see docs/internals/store.md). Symlinks are not archived.
 *  - Reads for peers open only regular files (O_NONBLOCK, so a FIFO never
 *    blocks) and return data only if its SHA-256 matches.
 *  - Folding directories (ext4 casefold, vfat, exFAT, a FUSE mirror...):
 *    a lookup of "foo" there finds "Foo". A change never adopts, replaces
 *    or removes another spelling of its name: where a create finds an
 *    entry (file or symlink expected absent, mkdir of an existing
 *    directory, a parent made or, on a folding root, any parent on the
 *    way) the directory is read and the name compared byte for byte; no
 *    exact entry is LR_ECLASH, naming both spellings, and nothing is
 *    changed. A delete of "foo" that finds "Foo" is LR_ECHANGED (a
 *    replace or metadata change of the very inode expected goes to it
 *    under its current spelling, the old data archived). A root folds if
 *    a lookup of ".LANDROPIC" finds the marker (checked at open); then the
 *    parents of every change are compared too (one directory read per
 *    component, cached while the directory's ctime is unchanged),
 *    otherwise only the rare paths above are (docs/internals/store.md,
 *    "Names that fold").
 *
 * Durability (docs/decisions/0001-durability-batching.md). Commits take an
 * optional batch. With a batch, the engine's order is:
 *   1. write every staging file, lr_store_batch_stage() each fd;
 *   2. lr_store_batch_barrier()       - staged data durable (one syncfs)
 *   3. lr_store_commit_file() etc.    - renames; parents recorded in batch
 *   4. lr_store_batch_sync_dirs()     - renames durable (one syncfs, or one
 *                                       fsync per touched directory)
 *   5. commit the index transaction.
 * With b == NULL every call is durable on return (fsync of the file and of
 * each directory it changed): simple and slow (about 0.5 ms a file here).
 *
 * Ownership: `root` and every relpath/target/key/expect argument are
 * borrowed for the call. A struct lr_store is freed by lr_store_close(), a
 * batch by lr_store_batch_free() (NULL is a no-op for both); a batch must
 * not outlive its store. Staging descriptors returned by
 * lr_store_staging_open() and lr_store_open_read() belong to the caller
 * (close()). Out-params are zeroed on entry and set only on success.
 *
 * Errors: LR_EBADPATH (path rejected), LR_ENOMARKER (marker missing or
 * root replaced), LR_ECHANGED (target differs from expect; nothing
 * changed), LR_ECLASH (the name or a parent exists only under another
 * spelling in a folding directory; nothing changed), LR_EVERIFY (data does not match its hash),
 * LR_ETOOBIG (impossible size), LR_EUSAGE (bad argument), LR_EBADVAL (bad symlink target), -ELOOP /
 * -ENOTDIR / -EXDEV (unsafe parent, see above), -ENOTEMPTY (directory delete; the message names an
 * entry that keeps it), other -errno from the file system (-ENOSPC, -EACCES, -EIO...). `err` names
 * the path (escaped with lr_esc).
 *
 * Threads: a struct lr_store is immutable after open, so any number of
 * threads may call any function on it at once for DIFFERENT paths. Calls on
 * the same path (or on a directory and a path below it) must be serialised
 * by the caller; if they are not, a call may fail with LR_ECHANGED, but no
 * entry is lost or written outside the root. A batch has its own mutex and
 * may be shared by worker threads.
 */
#ifndef LR_STORE_STORE_H
#define LR_STORE_STORE_H

#include "hash/hash.h"
#include "index/index.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_STORE_MARKER ".landropic"
#define LR_STORE_TMP ".landropic/tmp"
#define LR_STORE_VERSIONS ".landropic/versions"
/* Largest chunk lr_store_read_chunk / verify_chunk accept (chunker max is 256 KiB). */
#define LR_STORE_CHUNK_MAX (16u * 1024 * 1024)
/* Directory descriptors a batch holds before it fsyncs them early. */
#define LR_STORE_BATCH_DIRS 128

struct lr_store;
struct lr_store_batch;

/* What a path is on disk, as returned by lr_store_stat and after changes. */
struct lr_store_info {
    enum lr_ftype type;
    bool special;            /* FIFO, socket or device: `type` is meaningless */
    uint64_t dev, ino, size; /* size: regular files only (0 otherwise) */
    int64_t mtime_ns, ctime_ns;
    uint32_t mode; /* permission bits (07777) */
};

/*
 * What the caller believes is at a path now (from its last scan).
 * exists == false: nothing may be there. Otherwise `type` must match; for
 * LR_FT_FILE size and mtime_ns must match too; ino and ctime_ns are compared
 * when non-zero (for any type). A replaced entry is compared again after the
 * atomic exchange, so the check has no window for rename-based edits.
 */
struct lr_store_expect {
    bool exists;
    enum lr_ftype type;
    uint64_t ino, size;
    int64_t mtime_ns, ctime_ns;
};

/* Flags for changes. */
#define LR_STORE_MKPARENTS 0x1u /* create missing parent directories (mode 0755) */

/* ---- lifecycle ----------------------------------------------------------- */

/*
 * Open the folder rooted at `root` (copied). ROOT/.landropic must exist
 * and be a directory on the same file system (LR_ENOMARKER otherwise);
 * tmp/ and versions/ are created under it if needed. Close with
 * lr_store_close().
 */
int lr_store_open(const char *root, struct lr_store **out, struct lr_err *err);
void lr_store_close(struct lr_store *st);

/*
 * Spare sidecar inodes (docs/decisions/0003-spare-sidecar-inodes.md): a
 * pool, owned by whoever opens stores for a long run of pulls (the daemon),
 * that lets a forgotten staging sidecar be kept as an empty inode for the
 * next sidecar instead of being unlinked. A store opened with
 * lr_store_open_with() borrows the pool (it must outlive the handle); one
 * opened with lr_store_open() (pool NULL) unlinks forgotten sidecars.
 * Thread-safe (a mutex). Freeing the pool leaves the spare files on disk,
 * for lr_store_close (at idle) or lr_store_sidecar_gc to remove.
 */
struct lr_store_spares;
struct lr_store_spares *lr_store_spares_new(void);
void lr_store_spares_free(struct lr_store_spares *sp); /* NULL ok */
int lr_store_open_with(const char *root, struct lr_store_spares *spares, struct lr_store **out,
                       struct lr_err *err);

/*
 * Re-verify, before a destructive batch, that the root path still names the
 * directory opened and that its marker is the same directory as at open.
 * 0 or LR_ENOMARKER.
 */
int lr_store_check_marker(struct lr_store *st, struct lr_err *err);

/* Whether the root's directory folds names (see "Folding directories" above). */
bool lr_store_folds(const struct lr_store *st);

/*
 * Which spelling on disk relpath clashes with, for reports: the first
 * component of relpath (from the root down) that is not in its directory
 * under exactly that name while a lookup of it finds an entry. 0 with
 * *prefix_len = the length of relpath up to the end of that component and
 * *existing (free()) = that prefix as spelled on disk; LR_ENOTFOUND if
 * every component is spelled exactly or one is absent (no clash now).
 * Reads each directory on the way: not for hot paths.
 */
int lr_store_find_clash(struct lr_store *st, const char *relpath, size_t *prefix_len,
                        char **existing, struct lr_err *err);
/*
 * Whether relpath, meant to be created, would clash with another spelling
 * on disk (lr_store_find_clash): LR_ECLASH with the same message a create
 * gives, 0 if not, another negative code if it cannot tell. Lets a caller
 * refuse before fetching what the commit would refuse. Not for hot paths.
 */
int lr_store_check_clash(struct lr_store *st, const char *relpath, struct lr_err *err);

/* lr_index_path_check() plus the reserved .landropic prefix. 0 or LR_EBADPATH. */
int lr_store_path_check(const char *relpath, struct lr_err *err);

/*
 * Safely open the parent directory of relpath (O_RDONLY|O_DIRECTORY, close
 * it with close()) and point *leaf into relpath at its last component.
 * flags: LR_STORE_MKPARENTS. For a one-component path the parent is the
 * root. Parents are checked for spelling as for a create (LR_ECLASH).
 */
int lr_store_open_parent(struct lr_store *st, const char *relpath, unsigned flags, int *dirfd,
                         const char **leaf, struct lr_err *err);

/* lstat() of relpath through a safe parent. -ENOENT if absent. */
int lr_store_stat(struct lr_store *st, const char *relpath, struct lr_store_info *out,
                  struct lr_err *err);

/* ---- staging ------------------------------------------------------------- */

/*
 * Create or reopen the staging file for `key` (its name is the key's hex,
 * so a resumed transfer finds it and any leaf name fits), sized to `size`
 * with ftruncate (sparse; data already written below `size` is kept).
 * *resumed tells whether it existed (may be NULL). A stray non-regular or
 * multiply-linked entry under that name is removed first (after a crash it
 * may be an old version, also kept in versions/). Sizes above INT64_MAX are
 * LR_ETOOBIG and sizes above the capacity of the file system -ENOSPC, both
 * before anything is created (free space is not checked: sparse files). *fd is O_RDWR, owned by
 * the caller.
 */
int lr_store_staging_open(struct lr_store *st, const struct lr_hash *key, uint64_t size, int *fd,
                          bool *resumed, struct lr_err *err);
/* pwrite all of data at off (EINTR and short writes handled). A run of
 * zeros of at least 4 KiB is punched as a hole instead (fallocate
 * PUNCH_HOLE; written where the file system cannot), so sparse files stay
 * sparse on the receiver. */
int lr_store_staging_write(int fd, uint64_t off, const void *data, size_t len, struct lr_err *err);
/*
 * The first `size` bytes of `in` (read with pread from offset 0) into
 * `out`, sized to `size` first; runs of zeros stay holes
 * (lr_store_staging_write), so a sparse file costs no more than it does.
 * 0, -errno, or LR_ECHANGED if `in` ends early (changed while copied).
 * Both descriptors are the caller's.
 */
int lr_store_copy_bytes(int in, int out, uint64_t size);
/*
 * Start writing [off, off+len) of a staging file to disk now, without
 * waiting (sync_file_range SYNC_FILE_RANGE_WRITE). Durability still comes
 * only from the commit barrier; this lets the disk work while the rest of
 * the file arrives, so the barrier has little left to flush. Best effort:
 * a file system that does not support it is simply left to the barrier.
 */
void lr_store_staging_writeback(int fd, uint64_t off, uint64_t len);
/*
 * Read back [off, off+len) and compare its SHA-256 with `hash` (used on
 * resume). 0, LR_EVERIFY (mismatch or short), LR_ETOOBIG (len above
 * LR_STORE_CHUNK_MAX) or -errno.
 */
int lr_store_staging_verify_chunk(int fd, uint64_t off, uint32_t len, const struct lr_hash *hash,
                                  struct lr_err *err);
/* Remove the staging file for key (absent is fine). */
int lr_store_staging_discard(struct lr_store *st, const struct lr_hash *key, struct lr_err *err);
/*
 * Remove every entry of .landropic/tmp/ whose ctime is older than
 * older_than_s seconds (ctime, because commit sets the mtime from the
 * peer). *removed (may be NULL) counts them.
 */
int lr_store_staging_gc(struct lr_store *st, uint64_t older_than_s, uint64_t *removed,
                        struct lr_err *err);
/* Size of a spare sidecar inode (staging_reuse.h): what a sweep leaves. */
#define LR_STORE_SPARE_SIZE 8
/*
 * Make room on a full disk: remove every staging file and sidecar of
 * .landropic/tmp/ (the 64-hex names: never a commit journal) whatever its
 * age, except those named in keep (staging
 * keys and lr_store_sidecar_key names of transfers still running; sorted
 * here) and spares. Resumable data of other transfers is lost: they start
 * over. *removed (may be NULL) counts what went.
 */
int lr_store_staging_sweep(struct lr_store *st, struct lr_hash *keep, size_t nkeep,
                           uint64_t *removed, struct lr_err *err);
/* Bytes available to an unprivileged writer, the size and the block size
 * of the file system holding the folder's staging directory (all 0 on
 * failure). 0 or -errno. */
int lr_store_free_space(struct lr_store *st, uint64_t *avail, uint64_t *total, uint64_t *block,
                        struct lr_err *err);

/* ---- applying changes ---------------------------------------------------- */

/*
 * Put the staging file (key, fd: both from lr_store_staging_open, fd stays
 * the caller's) in place at relpath: fchmod(mode & 0777 | 0400: set-id and
 * sticky bits never come from a peer, the owner keeps read), mtime, then if expect says absent an
 * atomic no-replace rename, else an existing regular file is hard-linked into versions/ and
 * atomically exchanged (a symlink is exchanged, then unlinked; a file with other hard links is
 * copied into versions/, so writes through them leave the copy alone). expect->type LR_FT_DIR is
 * LR_EUSAGE (delete the directory first). A target that differs from expect, before or during the
 * exchange, is LR_ECHANGED and is left in place. *out (may be NULL) receives the new file's
 * identity for the index.
 */
int lr_store_commit_file(struct lr_store *st, struct lr_store_batch *b, const struct lr_hash *key,
                         int fd, const char *relpath, uint32_t mode, int64_t mtime_ns,
                         const struct lr_store_expect *expect, unsigned flags,
                         struct lr_store_info *out, struct lr_err *err);

/*
 * Create a symlink relpath -> target (bytes, 1..LR_INDEX_TARGET_MAX, no NUL;
 * never followed by the store) with the given mtime, replacing what expect
 * describes exactly as lr_store_commit_file does.
 */
int lr_store_symlink(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                     const char *target, int64_t mtime_ns, const struct lr_store_expect *expect,
                     unsigned flags, struct lr_store_info *out, struct lr_err *err);

/*
 * Create directory relpath with permission bits mode & 0777 | 0700 (not
 * masked by umask; the owner keeps rwx to apply into it; parents made by LR_STORE_MKPARENTS get
 * 0755 & ~umask). An existing directory is fine (its mode is set) if it has exactly this name;
 * another spelling's (a folding directory) is LR_ECLASH; an existing non-directory is
 * LR_ECHANGED.
 */
int lr_store_mkdir(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                   uint32_t mode, unsigned flags, struct lr_store_info *out, struct lr_err *err);

/*
 * Delete what expect describes (expect->exists must be true). A regular
 * file is moved to versions/ (copied there if it has other hard links, then
 * unlinked), a symlink unlinked, a directory removed only
 * if empty (-ENOTEMPTY naming an entry otherwise). The entry is first moved
 * out of the way and compared again, so a racing edit is put back
 * (LR_ECHANGED). Absent already: -ENOENT.
 */
int lr_store_delete(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                    const struct lr_store_expect *expect, struct lr_err *err);
/*
 * lr_store_delete with flags. LR_STORE_DEL_UNARCHIVED: a regular file is
 * unlinked (after the same move-aside check) instead of archived; only for
 * a file whose content the caller knows to be kept elsewhere in the
 * folder (a peer's rename: lr_index_file_twin).
 */
#define LR_STORE_DEL_UNARCHIVED 0x1u
int lr_store_delete_ex(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                       const struct lr_store_expect *expect, unsigned flags, struct lr_err *err);

/*
 * Take the regular file relpath (as expect describes it, with one link) as
 * the staging file of `key`, by a rename: a peer's rename applied as a
 * move, so the data is neither copied nor held twice. Checked like a
 * delete (LR_ECHANGED, nothing moved, if it differs or is swapped
 * meanwhile); -EEXIST if a staging file of that key exists. The caller
 * verifies the staging file's chunks as for any resumed one, and puts it
 * back with lr_store_unadopt if its commit fails.
 */
int lr_store_adopt(struct lr_store *st, const char *relpath, const struct lr_store_expect *expect,
                   const struct lr_hash *key, struct lr_err *err);
/* Move the staging file of `key` back to relpath, or into the versions
 * archive as relpath if that name is taken again. */
int lr_store_unadopt(struct lr_store *st, const struct lr_hash *key, const char *relpath,
                     struct lr_err *err);

/*
 * Metadata-only change of a regular file or directory: mode (masked as by
 * commit_file / mkdir) and
 * mtime (symlinks: mtime only, mode ignored). LR_ECHANGED on mismatch.
 */
int lr_store_set_meta(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                      uint32_t mode, int64_t mtime_ns, const struct lr_store_expect *expect,
                      struct lr_store_info *out, struct lr_err *err);

/* ---- reading for peers --------------------------------------------------- */

/*
 * Open relpath for reading, only if it is a regular file (a FIFO, device,
 * socket or symlink is refused: -ELOOP for a symlink, LR_ECHANGED for other
 * types, without blocking). *fd belongs to the caller. *info (may be NULL)
 * is its fstat.
 */
int lr_store_open_read(struct lr_store *st, const char *relpath, int *fd,
                       struct lr_store_info *info, struct lr_err *err);
/*
 * pread exactly len bytes at off into buf and check SHA-256 == expect.
 * LR_EVERIFY on mismatch or a short file (the caller rescans the file and
 * answers "no such chunk"); buf contents are then unspecified.
 */
int lr_store_read_chunk_fd(int fd, uint64_t off, uint32_t len, const struct lr_hash *expect,
                           void *buf, struct lr_err *err);
/*
 * lr_store_read_chunk_fd on a descriptor of relpath, whose name a
 * verification failure's message then carries. A non-zero `weak` (the
 * chunk's lr_weak64 from when this device read it itself) that matches
 * accepts the bytes without a SHA-256: only for re-reading our own data,
 * whose reader verifies the SHA-256 anyway (the serve side). A mismatch
 * falls back to the SHA-256, so a stale `weak` never refuses good data.
 * *by_weak (may be NULL) says whether the weak check accepted them.
 */
int lr_store_read_chunk_named(int fd, const char *relpath, uint64_t off, uint32_t len,
                              const struct lr_hash *expect, uint64_t weak, bool *by_weak, void *buf,
                              struct lr_err *err);
/* lr_store_open_read + lr_store_read_chunk_named + close. */
int lr_store_read_chunk(struct lr_store *st, const char *relpath, uint64_t off, uint32_t len,
                        const struct lr_hash *expect, void *buf, struct lr_err *err);

/* ---- batched durability -------------------------------------------------- */

enum lr_store_barrier {
    LR_STORE_BARRIER_SYNCFS = 0, /* one syncfs() of the root's file system (default) */
    LR_STORE_BARRIER_FSYNC = 1,  /* fsync() of each staged descriptor, in order */
};

/* A new, empty batch for st (aborts on OOM). */
struct lr_store_batch *lr_store_batch_new(struct lr_store *st, enum lr_store_barrier how);
/* Closes held descriptors without syncing them. */
void lr_store_batch_free(struct lr_store_batch *b);
/*
 * A staging file's data is complete: SYNCFS notes that a barrier is owed;
 * FSYNC fsyncs fd now on the calling (worker) thread. fd stays the
 * caller's and is not retained. Returns the fsync error in FSYNC mode.
 */
int lr_store_batch_stage(struct lr_store_batch *b, int fd, struct lr_err *err);
/*
 * Every staged file's data is durable on return (one syncfs; in FSYNC mode
 * only reports a stage() failure not yet reported). Call before the commits.
 */
int lr_store_batch_barrier(struct lr_store_batch *b, struct lr_err *err);
/* fsync each directory changed since the last call, once; forgets them. */
int lr_store_batch_sync_dirs(struct lr_store_batch *b, struct lr_err *err);

/*
 * The index mark (docs/internals/store.md, "The index mark"): the ID and
 * highest sequence of this device's index of the folder that may have
 * reached a peer, kept with the folder rather than in the home so that an
 * older index.db (put back from a backup, a home restored alone) is
 * recognised by lr_index_folder_check_mark. One line of text:
 * "landropic-index-mark 1 <16 lowercase hex> <decimal max_seq> <decimal
 * clock>\n".
 */
struct lr_store_mark {
    uint64_t index_id; /* != 0 in a valid mark */
    uint64_t max_seq;  /* < 2^62 */
    uint64_t clock;    /* the index's clock (lr_folder_info) then; < 2^62 */
};
/* Strict parse of a mark file's bytes: true and *out set, or false and *out zeroed. */
bool lr_store_mark_parse(const void *data, size_t len, struct lr_store_mark *out);
/* The file's text into buf (NUL-terminated); its length, or LR_ETOOBIG. */
int lr_store_mark_format(const struct lr_store_mark *m, char *buf, size_t size);
/*
 * 1 and *out set if the folder has a valid mark; 0 and *out zeroed if it
 * has none (or an unreadable one: logged, treated as none); < 0 if the
 * marker cannot be opened or the file read.
 */
int lr_store_mark_read(struct lr_store *st, struct lr_store_mark *out, struct lr_err *err);
/*
 * Replace the mark (a new file renamed over the old, not fsynced: call it
 * only after the index commit it reflects, so a crash leaves it at or
 * below the index). LR_EUSAGE for index_id 0.
 */
int lr_store_mark_write(struct lr_store *st, const struct lr_store_mark *m, struct lr_err *err);
/*
 * Open root's store, read its mark and run lr_index_folder_check_mark on
 * ix (*rekeyed as there). A root or marker that cannot be opened is no
 * check (0): such a folder does not sync until it can be.
 */
int lr_store_mark_check(const char *root, struct lr_index *ix, const char *folder_id, bool *rekeyed,
                        struct lr_err *err);

#ifdef LR_FAILPOINTS
/* Test hook: force the per-component fallback walk instead of openat2. */
void lr_store_test_force_walk(bool on);
/*
 * Test hook, called (when set) at named points of commit, symlink and
 * delete, so a test can play a racing local edit or kill the process
 * there. Process-global; not for concurrent use.
 */
enum lr_store_fp {
    LR_STORE_FP_CHECKED = 0,   /* expectation checked, nothing changed yet */
    LR_STORE_FP_LINKED = 1,    /* old file hard-linked into versions/ */
    LR_STORE_FP_EXCHANGED = 2, /* new entry in place, old one at its tmp/ name */
};
void lr_store_test_set_race_hook(void (*fn)(void *arg, const char *relpath, int point), void *arg);
/* Test counter: directory fsyncs performed so far. */
uint64_t lr_store_test_dir_fsyncs(void);
#endif

#endif
