/*
 * staging_reuse.h - reuse the staging file of an older version of a path.
 *
 * A staging file is named after its version (sha256(blocks hash || path)),
 * so when the sender changes a file while we are fetching it, the new
 * version gets a new staging file and the old one's verified chunks would
 * be fetched again. To avoid that, every path being fetched has a sidecar
 * in ROOT/.landropic/tmp: "<64 hex of sha256(tag || path)>.chunks", naming
 * the staging key of the version being fetched, its chunk list, and the
 * staging keys of older versions it superseded (at most
 * LR_STORE_SIDECAR_OLD_MAX). When a newer version starts, chunks of its
 * list whose hash appears in the old list are read from the old staging
 * file, verified against their hash and copied; only the rest is fetched.
 * Once a version of the path is committed, lr_store_sidecar_forget()
 * removes the superseded staging files and the sidecar.
 *
 * The sidecar is an optimisation: a missing, torn or hostile one (it is
 * disk input) means no reuse, never a wrong byte, because every copied
 * chunk is verified against the new version's hash. It is written through
 * a rename but not fsynced.
 *
 * Format (big endian, util/buf.h): "LRSIDEC1" | u32 nold | u32 nchunks | key[32] |
 * old keys[nold][32] | nchunks x (u64 off | u32 len | hash[32]).
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
/* Largest chunk list a sidecar may hold (a 1 TiB file at 2 KiB chunks). */
#define LR_STORE_SIDECAR_CHUNKS_MAX (1u << 29)

struct lr_store_sidecar {
    struct lr_hash key; /* staging key of the version it describes */
    struct lr_chunk *chunks;
    size_t nchunks;
    struct lr_hash old[LR_STORE_SIDECAR_OLD_MAX];
    size_t nold;
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

/*
 * Write the sidecar of path for the version staged under key with chunks
 * (borrowed). prev (may be NULL) is the sidecar found before: its key, if
 * it differs from key, and its old keys are remembered as superseded.
 */
int lr_store_sidecar_write(struct lr_store *st, const uint8_t *path, size_t path_len,
                           const struct lr_hash *key, const struct lr_chunk *chunks, size_t nchunks,
                           const struct lr_store_sidecar *prev, struct lr_err *err);

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
 * Remove every sidecar none of whose staging files exists any more (the
 * version was committed, then the daemon died before forgetting it).
 * *removed (may be NULL) counts them. 0 or -errno (the directory).
 */
int lr_store_sidecar_gc(struct lr_store *st, uint64_t *removed, struct lr_err *err);

#endif
