/*
 * staging_reuse.h - reuse the staging file of an older version of a path.
 *
 * A staging file is named after its version (sha256(blocks hash || path)),
 * so when the sender changes a file while we are fetching it, the new
 * version gets a new staging file and the old one's verified chunks would
 * be fetched again. To avoid that, every path being fetched has a sidecar
 * in ROOT/.landropic/tmp named "<64 hex of sha256(tag || path)>" (like a
 * staging file: only its content tells them apart, and a scan of the
 * directory takes for a sidecar only a file that parses, has a commit
 * record, and whose name is that of the record's path), naming
 * the staging key of the version being fetched, its chunk list, and the
 * staging keys of older versions it superseded (at most
 * LR_STORE_SIDECAR_OLD_MAX). When a newer version starts, chunks of its
 * list whose hash appears in the old list are read from the old staging
 * file, verified against their hash and copied; only the rest is fetched.
 * Once a version of the path is committed, lr_store_sidecar_forget()
 * removes the superseded staging files and the sidecar.
 *
 * The sidecar also carries the record the version will be committed with
 * (the remote record with the decided vector, the staging file's inode,
 * and the local record decided against). A SIGKILL after a commit batch
 * renamed its files into place and before the index recorded them leaves
 * new files the index does not know, which the next scan would take for
 * local edits (then conflicts with the sender's next version).
 * lr_store_sidecar_recover() finds those files at start (the staging file
 * is gone, the file at the path is that very inode with the version's size
 * and mtime) and hands their records to the caller to roll the index
 * forward before the first scan.
 *
 * The sidecar is an optimisation: a missing, torn or hostile one (it is
 * disk input) means no reuse and no roll-forward, never a wrong byte,
 * because every copied chunk is verified against the new version's hash
 * and a record is rolled forward only onto the staging file's own inode.
 * It is written through a rename but not fsynced.
 *
 * Format (big endian, util/buf.h): "LRSIDEC2" | u32 nold | u32 nchunks |
 * key[32] | old keys[nold][32] | nchunks x (u64 off | u32 len | hash[32]) |
 * u8 has_record, and with a record: u32 path_len | path | u64 size |
 * u64 mtime_ns | u32 mode | blocks_hash[32] | u32 vv_len | vv (index.h
 * encoding) | u64 staging inode | u8 had_local | u64 local_seq.
 *
 * Errors: 0 or negative codes (LR_ENOTFOUND: no sidecar; LR_EPROTO: a
 * malformed one; -errno). Thread-safety: none of its own; callers keep one
 * writer per folder (the daemon's serial queue does).
 */
#ifndef LR_STORE_STAGING_REUSE_H
#define LR_STORE_STAGING_REUSE_H

#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Superseded staging keys a sidecar remembers (older ones are orphaned and
 * left to lr_store_staging_gc). */
#define LR_STORE_SIDECAR_OLD_MAX 8
/* Largest chunk list a sidecar may hold (a 1 TiB file at 64 KiB chunks;
 * a longer one gets no sidecar). */
#define LR_STORE_SIDECAR_CHUNKS_MAX (1u << 24)
/* Longest path a commit record may name. */
#define LR_STORE_SIDECAR_PATH_MAX 65536u

/* What the version will be committed with (borrowed when writing). */
struct lr_store_sidecar_commit {
    /* A regular file's record: path, size, mtime_ns, mode, blocks_hash, vv
     * (chunks, inode, ctime, seq are not stored). */
    struct lr_file_rec rec;
    uint64_t staging_ino; /* the staging file's inode (kept by the rename) */
    bool had_local;       /* the index had a record of the path... */
    uint64_t local_seq;   /* ...with this seq, when the pull decided */
};

struct lr_store_sidecar {
    struct lr_hash key; /* staging key of the version it describes */
    struct lr_chunk *chunks;
    size_t nchunks;
    struct lr_hash old[LR_STORE_SIDECAR_OLD_MAX];
    size_t nold;
    bool has_commit;
    struct lr_store_sidecar_commit commit; /* owned (path, vv) when read */
};

/*
 * Read the sidecar of path (path_len bytes, already checked by the caller)
 * into *out (zeroed on entry; on success release with
 * lr_store_sidecar_release). LR_ENOTFOUND if there is none, LR_EPROTO if it
 * is malformed (then it is removed), -errno.
 */
int lr_store_sidecar_load(struct lr_store *st, const uint8_t *path, size_t path_len,
                          struct lr_store_sidecar *out, struct lr_err *err);
void lr_store_sidecar_release(struct lr_store_sidecar *sc);
/* The name of path's sidecar in tmp/ as a hash (its hex is the file name):
 * what lr_store_staging_sweep keeps for a transfer still running. */
void lr_store_sidecar_key(const uint8_t *path, size_t path_len, struct lr_hash *out);

/*
 * Write the sidecar of path for the version staged under key with chunks
 * (borrowed). prev (may be NULL) is the sidecar found before: its key, if
 * it differs from key, and its old keys are remembered as superseded.
 * commit (may be NULL; borrowed; its rec.path must be path) is stored for
 * lr_store_sidecar_recover().
 */
int lr_store_sidecar_write(struct lr_store *st, const uint8_t *path, size_t path_len,
                           const struct lr_hash *key, const struct lr_chunk *chunks, size_t nchunks,
                           const struct lr_store_sidecar *prev,
                           const struct lr_store_sidecar_commit *commit, struct lr_err *err);

/*
 * Copy into fd (the new version's staging file) every chunk i of chunks
 * with !done[i] whose hash is in prev's list, reading it from prev's
 * staging file and verifying it (a chunk that fails verification is
 * skipped). done[i] is set for each chunk copied; *copied counts them.
 * buf (bufsize bytes) is scratch; chunks longer than it are skipped.
 * Nothing is done if prev->key equals key. Returns 0 (also when prev's
 * staging file is gone) or a write error.
 */
int lr_store_sidecar_reuse(struct lr_store *st, const struct lr_store_sidecar *prev,
                           const struct lr_hash *key, int fd, const struct lr_chunk *chunks,
                           size_t nchunks, bool *done, uint8_t *buf, size_t bufsize, size_t *copied,
                           struct lr_err *err);

/*
 * The version staged under committed_key was committed (or is abandoned):
 * remove every other staging file the sidecar of path names, then the
 * sidecar. No sidecar is fine (0).
 */
int lr_store_sidecar_forget(struct lr_store *st, const uint8_t *path, size_t path_len,
                            const struct lr_hash *committed_key, struct lr_err *err);

/*
 * Roll-forward after a crash: for every sidecar with a commit record (and
 * every record of every commit journal, see below) whose
 * staging file is gone while the path holds that very file (same inode,
 * regular, the record's size and mtime), call apply(u, sc, on_disk); when
 * it returns 0 the sidecar is forgotten (lr_store_sidecar_forget). Other
 * sidecars are left alone. *applied (may be NULL) counts the 0 returns.
 * 0 or -errno (the directory); apply's errors are not returned.
 */
int lr_store_sidecar_recover(struct lr_store *st,
                             int (*apply)(void *u, const struct lr_store_sidecar *sc,
                                          const struct lr_store_info *on_disk),
                             void *u, uint64_t *applied, struct lr_err *err);

/*
 * Commit journals. A version fetched whole from peers in one chunk has
 * nothing a later version could reuse, so the puller writes it no sidecar;
 * its roll-forward record goes instead into its commit batch's journal,
 * tmp/"journal-<pid>-<16 hex id>": "LRJOURN1" | u32 n | n x (key[32] |
 * u32 nchunks | nchunks x (u64 off | u32 len | hash[32]) | the record
 * section of the sidecar format above, after its has_record byte). The
 * batch writes it before its durability barrier, which makes it durable
 * with the staged data and so before any rename, and removes it once its
 * index transaction committed: one file per batch instead of one sidecar
 * written and forgotten per file. lr_store_sidecar_recover() also rolls
 * forward every journal's records (the same rule as a sidecar's), then
 * removes the journal; a malformed one is logged and removed (it can only
 * be torn if its barrier never returned, so nothing of it was renamed).
 */
#define LR_STORE_JOURNAL_MAX 4096
#define LR_STORE_JOURNAL_CHUNKS_MAX 16
#define LR_STORE_JOURNAL_BYTES_MAX (64u << 20)

/*
 * Write journal `id` (unique per process) for recs[0..n) (each with
 * has_commit, at most LR_STORE_JOURNAL_CHUNKS_MAX chunks; borrowed).
 * LR_ETOOBIG beyond LR_STORE_JOURNAL_MAX records or _BYTES_MAX bytes,
 * LR_EBADVAL for a record that cannot be stored, -errno; nothing is left
 * behind on error. Not fsynced: the batch's barrier does it.
 */
int lr_store_journal_write(struct lr_store *st, uint64_t id, const struct lr_store_sidecar *recs,
                           size_t n, struct lr_err *err);
/* Remove journal `id` (absent is fine). */
void lr_store_journal_remove(struct lr_store *st, uint64_t id);
/*
 * Decode a journal's bytes (disk input, fuzzed): *out (n records, each
 * with has_commit) to free with lr_store_journal_release. 0 or LR_EPROTO
 * (nothing allocated).
 */
int lr_store_journal_parse(const uint8_t *data, size_t len, struct lr_store_sidecar **out,
                           size_t *n);
void lr_store_journal_release(struct lr_store_sidecar *v, size_t n);

/*
 * Remove every sidecar (with a commit record) none of whose staging files
 * exists any more (the version was committed, then the daemon died before
 * forgetting it); other sidecars are left to lr_store_staging_gc.
 * *removed (may be NULL) counts them. 0 or -errno (the directory).
 */
int lr_store_sidecar_gc(struct lr_store *st, uint64_t *removed, struct lr_err *err);

#endif
