/*
 * summary.h - reconciliation without history: a bucketed summary of one
 * folder's index (SUMMARY, 0x16) and the answer naming the buckets that
 * differ (SUMMARY_WANT, 0x17), docs/protocol.md §6.11. Pure: no I/O, no
 * clock, no globals; thread-safe except that one builder or message is used
 * by one thread at a time.
 *
 * Idea. Two devices without history (pre-seeded identical trees, a reset
 * database) would each send a full index. Instead the sender partitions its
 * entries into nb buckets by a hash of the path and sends, per bucket, the
 * entry count and an order-independent digest of the entries' content
 * identity (never their version vectors or sequences). The receiver builds
 * the same over its own index and asks only for the buckets that differ. For
 * the buckets that match it still needs the sender's version vectors, so the
 * SUMMARY carries them compactly: a dictionary of distinct vectors and one
 * dictionary reference per entry in the canonical order both sides compute
 * (bucket ascending, then entry digest ascending; the entry digest covers the
 * path, so it is unique per path).
 *
 * Entry digest: SHA-256 truncated to 16 bytes over this encoding (all
 * integers big-endian, fixed width):
 *     u8 1 (version) | u64 path_len | path
 *     deleted:  u8 1                                       (nothing else)
 *     live:     u8 0 | u8 type | per type:
 *         file:    u64 size | blocks_hash[32] | u32 mode | u64 mtime_ns
 *         dir:     u32 mode
 *         symlink: u64 target_len | target | u64 mtime_ns
 *         other (unknown type): nothing
 * exactly the fields src/sync/decide.c compares (lr_sync_same_content, lr_sync_meta_differs).
 * Bucket of a path: the first 4 bytes of SHA-256(path) as a big-endian
 * integer, masked to nb - 1. Bucket digest: the sum modulo 2^128 of its
 * entry digests read as 128-bit big-endian integers (all zero when empty).
 *
 * SUMMARY payload (varints are QUIC-style, u64 big-endian):
 *     varint folder_len | folder_id     folder ID rules (lr_proto_folder_id_ok)
 *     u64    index_id                   != 0
 *     varint seq                        the sender's max sequence covered
 *     varint nb                         power of two, 1..65536
 *     varint n                          entries, <= LR_SUMMARY_ENTRIES_MAX
 *     varint nvv                        distinct vectors: n > 0 ? 1..min(n, VVS_MAX) : 0
 *     varint raw_len                    body size uncompressed, <= LR_SUMMARY_RAW_MAX
 *                                       and in nb*17 + nvv*17 + n ..
 *                                       nb*20 + nvv*(2 + 16*LR_VV_MAX) + n*4
 *                                       (checked before decompressing)
 *     varint compression                0 none, 1 zstd (one frame declaring raw_len,
 *                                       shorter than raw_len)
 *     varint body_len | body            nothing may follow
 * body (uncompressed):
 *     nb  x varint count                per bucket; each <= n, sum == n
 *     nb  x digest[16]                  per bucket; zero if its count is 0
 *     nvv x (varint k | k x (u64 id, u64 counter))   the dictionary: each vector
 *                                       non-empty, k <= LR_VV_MAX, valid per
 *                                       lr_vv_decode (ids increasing, counters > 0)
 *     n   x varint ref                  per entry in canonical order (bucket by
 *                                       bucket): with `next` = the number of
 *                                       dictionary vectors referenced so far,
 *                                       ref 0 is vector `next` (a first use), ref r
 *                                       in 1..next is vector next - r
 *     nothing may follow; every dictionary vector is used (next == nvv at the end)
 * So the dictionary is in order of first use, an entry whose vector is new
 * costs one byte, and a reference to one of the 63 vectors introduced last
 * costs one byte too; zstd (level 3) then squeezes the rest. The bounds on
 * raw_len assume minimal varints (as lr_buf writes them): counts and refs
 * take at most 4 bytes. A dictionary may repeat a vector (harmless; our
 * encoder never does).
 *
 * Sizes (test_summary, 100 000 files, 4096 buckets): full INDEX 5.48 MB;
 * SUMMARY with 5 vectors in runs (a first scan) 113 kB (2.1 %); every vector
 * distinct {self: T+i} 367 kB (6.7 %); every vector distinct with two random
 * counters 801 kB (14.6 %). The bucket digests cost 16 bytes per 32 entries,
 * so with lr_summary_nbuckets(n) a SUMMARY with few vectors fits
 * LR_PROTO_SUMMARY_MAX up to 2^20 entries (942 kB); above that nb becomes
 * 65536 and the digests alone take 1 MiB, so the encoder says LR_ETOOBIG
 * unless the sender picks fewer buckets (the receiver follows the message's
 * nb).
 *
 * Use. Sender: lr_summary_new(lr_summary_nbuckets(n)), lr_summary_add every
 * record (tombstones included), lr_summary_finish, lr_summary_encode (on
 * LR_ETOOBIG send the full index). Receiver: decode, build its own summary
 * with the message's nb, lr_summary_diff; for a bucket that matches (same
 * count and digest, hence the same multiset of entry digests), local entry
 * tags[j] from lr_summary_bucket_tags is the sender's entry j of that bucket,
 * whose vector is m.vvs[m.entry_vv[m.first[bucket] + j]]. Then it answers
 * with SUMMARY_WANT carrying the diff bitmap.
 *
 * SUMMARY_WANT payload:
 *     varint folder_len | folder_id
 *     u64    index_id                   the SUMMARY's, != 0
 *     varint seq                        the SUMMARY's, echoed
 *     varint nb                         power of two, 1..65536
 *     varint compression                0 none, 1 zstd (a frame declaring (nb+7)/8)
 *     varint body_len | body            the bitmap: (nb + 7) / 8 bytes, bit i in
 *                                       byte i / 8 under mask 1 << (i % 8); bits
 *                                       at and above nb zero; nothing may follow
 *
 * Ownership: a builder owns copies of everything added (records are
 * borrowed for the call); a decoded message owns its arrays (release with
 * lr_summary_msg_release / lr_summary_want_release, safe on a zeroed struct
 * and twice). Out-params are zeroed on entry and filled only on success.
 * Input buffers of decoders are borrowed for the call.
 *
 * Errors: LR_EBADVAL (invalid argument or field), LR_ETRUNC (a field cut
 * short), LR_ETOOBIG (over a limit; from the encoder: the caller falls back
 * to a full index). Decoder errors are all "drop the peer" codes, with err
 * naming the field ("summary.nb: ...").
 */
#ifndef LR_SYNC_SUMMARY_H
#define LR_SYNC_SUMMARY_H

#include "index/index.h"
#include "proto/proto.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_SUMMARY_DIGEST_LEN 16
#define LR_SUMMARY_BUCKETS_MAX 65536u
#define LR_SUMMARY_ENTRIES_MAX (4u << 20) /* per message; more: the sender sends a full index */
/* Most distinct vectors in one message (each costs >= 17 raw bytes). */
#define LR_SUMMARY_VVS_MAX (1u << 20)
/* Largest uncompressed body accepted: 4 Mi one-byte to four-byte refs, the
 * bucket table, and room for the dictionary. Checked before allocating. */
#define LR_SUMMARY_RAW_MAX (32u << 20)

struct lr_summary_digest {
    uint8_t b[LR_SUMMARY_DIGEST_LEN];
};

/* Content identity of one record (encoding above). rec is borrowed. */
void lr_summary_entry_digest(const struct lr_file_rec *rec, struct lr_summary_digest *out);
/* Bucket of a path among nb buckets (nb a power of two <= LR_SUMMARY_BUCKETS_MAX). */
uint32_t lr_summary_bucket(const uint8_t *path, size_t len, uint32_t nb);
/* Bucket count for n entries: the smallest power of two >= n / 32 (real
 * division: 33 entries give 2), at least 1, at most LR_SUMMARY_BUCKETS_MAX. */
uint32_t lr_summary_nbuckets(uint64_t n);

/* ---- builder (one side's index) ------------------------------------------ */

/*
 * Entries are added in any order, each with a caller tag (e.g. its position
 * in the caller's array); each path at most once (the index has one row per
 * path). The builder copies what it needs (digest, bucket, vector interned
 * in a dictionary of distinct vectors).
 */
struct lr_summary;
/* LR_EBADVAL: nb not a power of two in 1..LR_SUMMARY_BUCKETS_MAX. */
int lr_summary_new(uint32_t nb, struct lr_summary **out, struct lr_err *err);
/*
 * LR_ETOOBIG over LR_SUMMARY_ENTRIES_MAX entries; LR_EBADVAL for an invalid
 * path (lr_index_path_check), an empty or invalid vector, or a call after
 * lr_summary_finish. The builder is unchanged on failure.
 */
int lr_summary_add(struct lr_summary *s, const struct lr_file_rec *rec, uint64_t tag,
                   struct lr_err *err);
/* Sorts into canonical order; call once after the last add, before the
 * accessors and lr_summary_encode / lr_summary_diff. */
void lr_summary_finish(struct lr_summary *s);
uint32_t lr_summary_nb(const struct lr_summary *s);
uint64_t lr_summary_count(const struct lr_summary *s);
/* Per bucket (< nb): entry count and digest. */
void lr_summary_bucket_info(const struct lr_summary *s, uint32_t bucket, uint32_t *count,
                            struct lr_summary_digest *digest);
/* The tags of a bucket's entries in canonical order (digest ascending): *n
 * entries at *tags (borrowed, valid until the builder is freed; NULL if 0). */
void lr_summary_bucket_tags(const struct lr_summary *s, uint32_t bucket, const uint64_t **tags,
                            size_t *n);
void lr_summary_free(struct lr_summary *s); /* NULL ok */

/* ---- SUMMARY --------------------------------------------------------------- */

/*
 * Append the SUMMARY payload of finished builder s to out. LR_EBADVAL for an
 * invalid folder ID, index_id 0 or seq >= 2^62 (out unchanged); LR_ETOOBIG
 * if the payload would exceed LR_PROTO_SUMMARY_MAX, the raw body
 * LR_SUMMARY_RAW_MAX or the dictionary LR_SUMMARY_VVS_MAX (out unchanged:
 * the caller falls back to a full index), or if out is full (poisoned).
 */
int lr_summary_encode(const struct lr_summary *s, const char *folder_id, uint64_t index_id,
                      uint64_t seq, struct lr_buf *out, struct lr_err *err);

struct lr_summary_msg {
    char folder[LR_PROTO_FOLDER_ID_MAX + 1];
    uint64_t index_id; /* != 0 */
    uint64_t seq;      /* the sender's max sequence the summary covers */
    uint32_t nb;
    uint64_t n;                       /* entries */
    uint32_t *count;                  /* [nb] */
    struct lr_summary_digest *digest; /* [nb] */
    uint64_t *first;                  /* [nb]: index of the bucket's first entry in entry_vv */
    struct lr_vv *vvs;                /* dictionary of distinct vectors, each valid, non-empty */
    size_t nvv;
    uint32_t *entry_vv; /* [n]: index into vvs, canonical order; every value < nvv */
};
/* Decode (hostile input, rules above) into *out (zeroed first). */
int lr_summary_decode(const uint8_t *p, size_t len, struct lr_summary_msg *out, struct lr_err *err);
void lr_summary_msg_release(struct lr_summary_msg *m);
/*
 * Buckets of m that differ from the finished local builder s (count or
 * digest): a bitmap of nb bits (bit i = byte i/8, mask 1<<(i%8)) malloc'd
 * into *bits (caller frees), *ndiff = number of set bits. LR_EBADVAL if s
 * has another nb.
 */
int lr_summary_diff(const struct lr_summary *s, const struct lr_summary_msg *m, uint8_t **bits,
                    uint32_t *ndiff, struct lr_err *err);

/* ---- SUMMARY_WANT ---------------------------------------------------------- */

struct lr_summary_want {
    char folder[LR_PROTO_FOLDER_ID_MAX + 1];
    uint64_t index_id, seq;
    uint32_t nb;
    uint8_t *bits; /* (nb + 7) / 8 bytes; owned when decoded, borrowed by encode */
};
/* LR_EBADVAL for an invalid field (bits beyond nb set included; out
 * unchanged), LR_ETOOBIG if out is full. */
int lr_summary_want_encode(const struct lr_summary_want *w, struct lr_buf *out, struct lr_err *err);
int lr_summary_want_decode(const uint8_t *p, size_t len, struct lr_summary_want *out,
                           struct lr_err *err);
void lr_summary_want_release(struct lr_summary_want *w);
static inline bool lr_summary_bit(const uint8_t *bits, uint32_t i)
{
    return (bits[i / 8] >> (i % 8)) & 1;
}

#endif
