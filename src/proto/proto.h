/*
 * proto.h - landropic wire protocol: frames and message codecs (pure, no I/O).
 *
 * Every QUIC stream carries a sequence of frames:
 *     varint type | varint length | payload[length]
 * (varints as in RFC 9000 §16, see util/buf.h). Each known type has a
 * maximum payload size, checked as soon as the header is read and before
 * anything is allocated; an unknown type (from a newer peer) is skipped
 * if its length is within LR_PROTO_UNKNOWN_MAX, else the connection closes.
 * Decoders validate every field and return LR_ETRUNC / LR_EPROTO /
 * LR_ETOOBIG / LR_EBADVAL (all <= LR_E__FATAL_PEER: drop the peer) with a
 * message naming the field.
 *
 * The first frame on the control stream (client-initiated bidi stream 0)
 * in each direction is HELLO. docs/protocol.md is the normative text.
 *
 * This file is the contract shared by transport/ (framing + Hello) and
 * sync/ (all other messages); message types are added here as the
 * protocol grows: one row in the type table in proto.c (type, name, max
 * payload) plus the codec.
 *
 * Everything here is pure (no I/O, no globals written) and thread-safe;
 * a frame reader, an INDEX reader or batch builder and a struct
 * lr_proto_zc belong to one thread at a time.
 * Encoders append to a caller-owned lr_buf and, on failure, leave it
 * poisoned (lr_buf_ok() false) so a half-encoded message is never sent
 * (encoders that validate their input return LR_EBADVAL with `out`
 * untouched). Decoders borrow their input. HELLO, CLOSE, WANT and CHUNK
 * decode into structs that own nothing (WANT's path and CHUNK's data point
 * into the payload: valid while it is); FOLDERS and INDEX results own heap
 * memory, released with their *_release().
 *
 * zstd (libzstd) compresses INDEX bodies and CHUNK data. Declared sizes
 * are checked against fixed caps and against the zstd frame header before
 * any buffer is allocated; output never exceeds the declared size.
 */
#ifndef LR_PROTO_PROTO_H
#define LR_PROTO_PROTO_H

#include "hash/hash.h"
#include "index/index.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/rd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_PROTO_VERSION 1
#define LR_PROTO_ALPN "landropic/1"

/* Largest payload of a type we do not know, which we skip. */
#define LR_PROTO_UNKNOWN_MAX (1u << 20)
/* Largest payload of any known type (ChunkData: 256 KiB chunk + header). */
#define LR_PROTO_FRAME_MAX ((size_t)(1u << 20) + 4096)

enum lr_msg_type {
    LR_MSG_HELLO = 0x01,
    LR_MSG_PING = 0x02,
    LR_MSG_CLOSE = 0x03,
    /* 0x04..0x0f: reserved for connection messages. */
    LR_MSG_FOLDERS = 0x10,      /* control stream: the folders shared with the receiver */
    LR_MSG_INDEX = 0x11,        /* control stream: one bounded batch of one folder's index */
    LR_MSG_WANT = 0x12,         /* bulk stream: request one chunk */
    LR_MSG_CHUNK = 0x13,        /* bulk stream: the answer to one WANT */
    LR_MSG_HAVE = 0x14,         /* bulk/control: chunks a downloader holds (LR_FEAT_HAVE) */
    LR_MSG_INDEX_DELTA = 0x15,  /* reserved, unused: deltas are an INDEX entry flag */
    LR_MSG_SUMMARY = 0x16,      /* control stream: an index's bucket summary (LR_FEAT_RECON) */
    LR_MSG_SUMMARY_WANT = 0x17, /* control stream: the buckets of a SUMMARY that differ */
    LR_MSG_PULLED = 0x18,       /* control stream: what the sender still needs of a folder */
    LR_MSG_SEQ_ASK = 0x19,      /* control stream: "how far has your index got?" (LR_FEAT_SEQS) */
    LR_MSG_SEQS = 0x1a,         /* control stream: the answer, per folder synced with the asker */
    /* 0x1b..0x7d: further sync messages, each with a row in proto.c's type
     * table and a section in docs/protocol.md. */
    LR_MSG_DEBUG_DATA = 0x7e, /* test-only opaque payload; receivers may skip it */
};

/* HELLO feature bits (the AND of both sides' bits is in force). A message
 * tied to a feature is sent only when the bit is in force, and a receiver
 * treats it as a protocol error otherwise. */
#define LR_FEAT_HAVE (UINT64_C(1) << 0) /* HAVE (0x14), docs/protocol.md §6.10 */
/* INDEX entries may carry their chunk list as a delta (LR_PROTO_ENTRY_DELTA,
 * docs/protocol.md §6.6); the message type 0x15 stays unused. */
#define LR_FEAT_INDEX_DELTA (UINT64_C(1) << 1)
/* A full index may be replaced by reconciliation without history: SUMMARY,
 * SUMMARY_WANT, then only the differing buckets' entries (§6.11). */
#define LR_FEAT_RECON (UINT64_C(1) << 2)
/* FOLDERS may list a folder the sender has but does not sync with the
 * receiver: option 6 ("stopped": shared, but in error there) and option 7
 * ("unshared": the receiver offers it, the sender has not shared it back),
 * so the receiver knows it is not in sync with that peer instead of taking
 * the folder for one the peer does not have. */
#define LR_FEAT_FOLDER_STOPPED (UINT64_C(1) << 3)
/* SEQ_ASK and SEQS (docs/protocol.md §6.13): `sync --wait` asks each
 * connected peer how far its index of each folder has got, and waits until
 * it has stored that much of it. */
#define LR_FEAT_SEQS (UINT64_C(1) << 4)
/* FOLDERS may carry option 9 ("removed"): the sender removed a folder that
 * the receiver offers and that the sender once had, so the receiver drops
 * what it holds of the sender's index of it instead of waiting for files
 * only the sender had (docs/protocol.md §6.5). */
#define LR_FEAT_FOLDER_REMOVED (UINT64_C(1) << 5)

/* Per-type payload limits (see the type table in proto.c). */
#define LR_PROTO_HELLO_MAX 4096 /* known fields need < 160; the rest is room to grow */
#define LR_PROTO_PING_MAX 256
#define LR_PROTO_CLOSE_MAX 1024
#define LR_PROTO_FOLDERS_MAX (1u << 20)
#define LR_PROTO_INDEX_MAX LR_PROTO_FRAME_MAX
#define LR_PROTO_WANT_MAX (LR_INDEX_PATH_MAX + 1024) /* path + < 400 bytes of fields */
#define LR_PROTO_CHUNK_DATA_MAX (256u * 1024)        /* == LR_CHUNK_MAX (chunker.h) */
#define LR_PROTO_CHUNK_MAX (LR_PROTO_CHUNK_DATA_MAX + 1024)
#define LR_PROTO_DEBUG_MAX (1u << 20)
#define LR_PROTO_HAVE_MAX (1u << 16)
#define LR_PROTO_SUMMARY_MAX LR_PROTO_FRAME_MAX
#define LR_PROTO_SUMMARY_WANT_MAX (16u * 1024)
#define LR_PROTO_PULLED_MAX 1024 /* folder ID + 3 fields: < 300 bytes */
#define LR_PROTO_SEQ_ASK_MAX 64
/* SEQS entries take at most 274 bytes: 4096 of the longest folder IDs would
 * not fit (the encoder says LR_ETOOBIG), as for FOLDERS. */
#define LR_PROTO_SEQS_MAX (1u << 20)
#define LR_PROTO_SEQS_ENTRIES_MAX 4096

/* Maximum payload for `type`, or 0 if the type is unknown (to be skipped). */
size_t lr_proto_max_payload(uint64_t type);
/* Static name of a known type ("HELLO"), or "unknown"; never NULL. */
const char *lr_proto_type_name(uint64_t type);

/* ---- Hello ---- */
#define LR_PROTO_NAME_MAX 64
#define LR_PROTO_SOFTWARE_MAX 64

struct lr_proto_hello {
    uint32_t version;                         /* LR_PROTO_VERSION */
    char name[LR_PROTO_NAME_MAX + 1];         /* device name, UTF-8, no control chars */
    char software[LR_PROTO_SOFTWARE_MAX + 1]; /* e.g. "landropic 0.1.0" */
    uint64_t features;                        /* LR_FEAT_* bits */
};

/*
 * Append the Hello payload (not the frame header: wrap it with
 * lr_proto_frame_put(LR_MSG_HELLO)). Returns 0; LR_EBADVAL if a field is
 * invalid (version 0, name empty or > 64 bytes or not valid UTF-8 or with a
 * control character, software likewise but may be empty, features >= 2^62;
 * `out` unchanged); LR_ETOOBIG if `out` is full (poisoned).
 */
int lr_proto_hello_encode(const struct lr_proto_hello *h, struct lr_buf *out);
/*
 * Decode a Hello payload p[0..n) (borrowed) into *h, which is zeroed first
 * and filled only on success. Bytes after the known fields are ignored
 * (fields added by newer versions). The version is not judged here: any
 * 1..2^32-1 decodes, the caller decides what it supports.
 * Errors (err names the field): LR_ETRUNC, LR_ETOOBIG (name/software over
 * 64 bytes), LR_EBADVAL (version 0 or >= 2^32, empty name, invalid UTF-8,
 * control character).
 */
int lr_proto_hello_decode(const uint8_t *p, size_t n, struct lr_proto_hello *h, struct lr_err *err);

/*
 * True if s[0..n) is acceptable as a peer-visible name (Hello name and
 * software, Close reason): valid UTF-8 without C0, DEL or C1 controls.
 */
bool lr_proto_text_ok(const void *s, size_t n);

/* ---- Close ---- */
/* Optionally sent on the control stream just before a deliberate
 * CONNECTION_CLOSE, to tell the peer why in more words than QUIC carries. */
#define LR_PROTO_REASON_MAX 256

/* One registry with the QUIC application error codes of transport.h
 * (enum lr_transport_app_error): the same number means the same thing. */
enum lr_close_code {
    LR_CLOSE_NORMAL = 0,    /* shutting down, or done */
    LR_CLOSE_PROTOCOL = 1,  /* the peer sent something invalid */
    LR_CLOSE_DUPLICATE = 2, /* replaced by another connection with the peer */
    LR_CLOSE_INTERNAL = 3,  /* local failure */
    LR_CLOSE_VERSION = 4,   /* no common protocol version */
    /* Unknown codes are treated like LR_CLOSE_INTERNAL. */
};

struct lr_proto_close {
    uint64_t code;                        /* enum lr_close_code */
    char reason[LR_PROTO_REASON_MAX + 1]; /* for logs; UTF-8, no control chars, may be empty */
};

/* Same conventions as the Hello codec (trailing bytes ignored on decode). */
int lr_proto_close_encode(const struct lr_proto_close *c, struct lr_buf *out);
int lr_proto_close_decode(const uint8_t *p, size_t n, struct lr_proto_close *c, struct lr_err *err);

/*
 * Append one whole frame (header + payload; payload borrowed, may be NULL
 * if len == 0) to out, or nothing. LR_EBADVAL: type 0 or >= 2^62.
 * LR_ETOOBIG: len over lr_proto_max_payload(type) (LR_PROTO_UNKNOWN_MAX
 * for types not in the table, so extensions can be sent), or out full
 * (poisoned).
 */
int lr_proto_frame_put(struct lr_buf *out, uint64_t type, const void *payload, size_t len);

/*
 * Incremental frame reader for one stream. Bytes are fed as they arrive;
 * frames come out whole. Memory held is bounded by the largest allowed
 * frame. Unknown types are skipped without buffering their payload.
 */
struct lr_frame_reader {
    struct lr_buf acc; /* header bytes and the current payload */
    uint64_t type;     /* of the frame being read */
    uint64_t need;     /* payload bytes still expected (or to skip) */
    bool have_header;
    bool skipping;
    bool ready; /* a whole frame is in acc, not yet taken */
    bool taken; /* a frame with a payload was taken and acc still holds it */
    int error;  /* sticky: once a feed failed, every later feed fails */
};

void lr_frame_reader_init(struct lr_frame_reader *r);
void lr_frame_reader_release(struct lr_frame_reader *r);
/*
 * Consume up to n bytes of p (borrowed; copied as needed); stops early when
 * a whole frame is ready (then *consumed < n may hold: feed the rest after
 * taking the frame). Returns 1 if a frame is ready, 0 if more bytes are
 * needed (all n consumed), or a fatal negative code, after which the stream
 * must be closed (every later feed returns it again):
 *   LR_ETOOBIG  length over the type's limit (or LR_PROTO_UNKNOWN_MAX for an
 *               unknown type); err names the type and the length;
 *   LR_EPROTO   frame type 0 (reserved, never valid).
 * While a frame is ready and not taken, feed returns 1 and consumes nothing.
 * Frames of unknown types are consumed and dropped without being buffered.
 */
int lr_frame_reader_feed(struct lr_frame_reader *r, const uint8_t *p, size_t n, size_t *consumed,
                         struct lr_err *err);
/*
 * Take the ready frame: *payload is valid until the next feed/release.
 * Returns 0, or LR_ENOTFOUND if no frame is ready.
 */
int lr_frame_reader_take(struct lr_frame_reader *r, uint64_t *type, const uint8_t **payload,
                         size_t *len);
/*
 * Right after a take of a frame with a payload, before the next feed: the
 * buffer that payload lives in (it starts at the returned pointer), now the
 * caller's to free(); the reader allocates another for the next frame. A
 * consumer that keeps the payload takes it instead of copying it. NULL if
 * the taken frame was empty, if nothing was taken since the last feed, or
 * if it was stolen already.
 */
uint8_t *lr_frame_reader_steal(struct lr_frame_reader *r);

/* ======================================================================
 * Sync messages (docs/protocol.md §6.4-6.10). Shared conventions:
 *  - decoders validate the whole message before filling their output and
 *    return LR_ETRUNC / LR_ETOOBIG / LR_EBADVAL (fatal for the peer) with
 *    err naming the field; bytes after the known fields are ignored;
 *  - every count and length is checked against its limit (and against the
 *    bytes actually left) before anything is allocated;
 *  - encoders validate their input (LR_EBADVAL, `out` unchanged) so an
 *    invalid message is never sent, and poison `out` when it is full.
 * ====================================================================== */

/* Folder IDs: 1..255 bytes of text (lr_proto_text_ok), no '/', not "." or
 * "..": the rule of config's lr_config_check_folder_id. */
#define LR_PROTO_FOLDER_ID_MAX 255
bool lr_proto_folder_id_ok(const void *s, size_t n);
/* Read a folder-id field (§6.4: varint length, then the ID) into out, for
 * every decoder of a message that names a folder (sync/summary.c too).
 * LR_ETRUNC, LR_ETOOBIG or LR_EBADVAL with err naming `what`. */
int lr_proto_get_folder_id(struct lr_rd *rd, const char *what, char out[LR_PROTO_FOLDER_ID_MAX + 1],
                           struct lr_err *err);

/*
 * zstd contexts and scratch, reusable across messages to avoid a context
 * allocation per chunk. One thread at a time. Every function taking a
 * `struct lr_proto_zc *` accepts NULL (then it makes a temporary one).
 * lr_proto_zc_new aborts on OOM; lr_proto_zc_free(NULL) is a no-op.
 */
struct lr_proto_zc;
struct lr_proto_zc *lr_proto_zc_new(void);
void lr_proto_zc_free(struct lr_proto_zc *zc);

/* ---- FOLDERS (0x10) ---- */
#define LR_PROTO_FOLDERS_ENTRIES_MAX 4096
#define LR_PROTO_FOLDER_OPTS_MAX 32     /* options per folder entry */
#define LR_PROTO_FOLDER_OPT_VAL_MAX 255 /* bytes of one option value */
#define LR_PROTO_STRATEGY_MAX 64

enum lr_proto_folder_mode {
    LR_PROTO_MODE_SEND_RECEIVE = 0,
    LR_PROTO_MODE_SEND_ONLY = 1,
    LR_PROTO_MODE_RECEIVE_ONLY = 2,
};
/* Option keys (unknown keys are skipped by receivers). */
enum lr_proto_folder_opt {
    LR_PROTO_FOPT_MODE = 1,     /* value: one varint, enum lr_proto_folder_mode */
    LR_PROTO_FOPT_CONFLICT = 2, /* value: text(64), the sender's conflict strategy */
    LR_PROTO_FOPT_RESOLVE = 3,  /* value: the strategy in machine form (below) */
    /* value: one varint seq >= 1: the receiver of this FOLDERS must send
     * chunk lists, not deltas, for its entries with seq <= it (a delta the
     * sender of FOLDERS could not decode: no base, §6.6). */
    LR_PROTO_FOPT_LIST_UPTO = 4,
    /* value: empty. The sender's index of the folder is not yet what a full
     * scan made of it (its first scan since start is running, or what it
     * found is still being sent): the receiver's sync --wait waits. */
    LR_PROTO_FOPT_SCANNING = 5,
    /* value: empty. The sender has added and shared the folder with the
     * receiver but cannot sync it now (the folder is in error there): the
     * folder is not syncing between the two, and the receiver does not
     * count it as in sync with the sender. Only with LR_FEAT_FOLDER_STOPPED. */
    LR_PROTO_FOPT_STOPPED = 6,
    /* value: empty. The sender has added the folder, which the receiver's
     * FOLDERS offers, but has not shared it with the receiver: the folder
     * is not syncing, and the receiver does not count it as in sync with
     * the sender. Only with LR_FEAT_FOLDER_STOPPED. */
    LR_PROTO_FOPT_UNSHARED = 7,
    /* value: varint seq (1 <= seq <= peer_seq) | 16 bytes | path (the rest:
     * empty, or a valid path of at most LR_INDEX_CHECK_PATH_MAX bytes): the
     * sender of FOLDERS holds the receiver's entry with sequence `seq` (its
     * latest stored), of that path, whose §6.11 entry digest (content, not
     * vector) is the 16 bytes. The receiver finds its index went back in
     * time if its own entry of that path is missing or has a lower
     * sequence, or (path or not) its entry with sequence `seq` has another
     * digest; it must then choose a new index ID (§6.4). Only with
     * peer_index_id. */
    LR_PROTO_FOPT_PEER_CHECK = 8,
    /* value: empty. The sender had the folder (its index of it still
     * exists: index_id, max_seq and the peer fields are that index's) and
     * removed it from its configuration; the receiver's FOLDERS offers it.
     * The folder is not syncing, and the receiver forgets what it holds of
     * the sender's index of it. Never with option 6 or 7. Only with
     * LR_FEAT_FOLDER_REMOVED. */
    LR_PROTO_FOPT_REMOVED = 9,
};
#define LR_PROTO_CHECK_LEN 16
/* Option 3: varint kind | varint window (seconds) | 32-byte device ID (only
 * for PREFER_DEVICE). The conflict rule evaluates both devices' strategies
 * (docs/conflicts.md), so this is what a receiver acts on; option 2 stays
 * informational. Absent: keep-both. */
enum lr_proto_resolve {
    LR_PROTO_RESOLVE_KEEP_BOTH = 0,
    LR_PROTO_RESOLVE_NEWEST = 1,
    LR_PROTO_RESOLVE_LARGEST = 2,
    LR_PROTO_RESOLVE_PREFER_LOCAL = 3,  /* the sender's own version wins */
    LR_PROTO_RESOLVE_PREFER_REMOTE = 4, /* the other device's version wins */
    LR_PROTO_RESOLVE_PREFER_DEVICE = 5, /* resolve_device's version wins */
};
#define LR_PROTO_RESOLVE_WINDOW_MAX (365u * 86400u)

struct lr_proto_folder {
    char id[LR_PROTO_FOLDER_ID_MAX + 1]; /* NUL-terminated */
    uint64_t index_id;                   /* sender's index of the folder; != 0 */
    uint64_t max_seq;                    /* highest sequence in that index */
    uint64_t peer_index_id; /* the receiver's index ID the sender holds data of; 0: none */
    uint64_t peer_seq;      /* highest receiver sequence the sender holds (0 if no index) */
    uint32_t mode;          /* enum lr_proto_folder_mode (absent on the wire: SEND_RECEIVE) */
    char conflict[LR_PROTO_STRATEGY_MAX + 1]; /* "" = not sent */
    bool has_resolve;                         /* option 3 present */
    uint32_t resolve;                         /* enum lr_proto_resolve */
    uint32_t resolve_window;                  /* seconds, <= LR_PROTO_RESOLVE_WINDOW_MAX */
    uint8_t resolve_device[32];               /* PREFER_DEVICE only, else zero */
    uint64_t list_upto;                       /* option 4; 0: absent */
    bool scanning;                            /* option 5 present */
    bool stopped;                             /* option 6 present */
    bool unshared;                            /* option 7 present */
    bool removed;                             /* option 9 present */
    uint64_t peer_check_seq;                  /* option 8; 0: absent */
    uint8_t peer_check[LR_PROTO_CHECK_LEN];   /* option 8's digest */
    uint8_t peer_check_path[LR_INDEX_CHECK_PATH_MAX + 1]; /* NUL-terminated; "" if not sent */
    size_t peer_check_path_len;
};

/* Owned array; release with lr_proto_folders_release (zeroed struct: ok). */
struct lr_proto_folders {
    struct lr_proto_folder *v;
    size_t n;
};
void lr_proto_folders_release(struct lr_proto_folders *f);
/* Sort v[0..n) by folder ID bytes, the order the encoder requires. */
void lr_proto_folders_sort(struct lr_proto_folder *v, size_t n);

/*
 * Append a FOLDERS payload for v[0..n) (borrowed, n <= 4096, IDs strictly
 * increasing by byte order). LR_EBADVAL for an invalid entry (bad ID, order,
 * index_id 0, seq >= 2^62, peer_seq without peer_index_id, mode > 2, bad
 * strategy text, resolve kind > 5 or window over the maximum), LR_ETOOBIG if the payload would
 * exceed LR_PROTO_FOLDERS_MAX or `out` is full (poisoned).
 */
int lr_proto_folders_encode(const struct lr_proto_folder *v, size_t n, struct lr_buf *out);
/*
 * Decode p[0..n) (borrowed) into *out (zeroed first, filled only on
 * success; the caller releases it). Unknown option keys are skipped.
 */
int lr_proto_folders_decode(const uint8_t *p, size_t n, struct lr_proto_folders *out,
                            struct lr_err *err);

/* ---- INDEX (0x11) ---- */
#define LR_PROTO_INDEX_RAW_MAX (8u << 20)   /* decompressed body, decoder's cap */
#define LR_PROTO_INDEX_BATCH_RAW (1u << 20) /* what our batch builder fills at most */
#define LR_PROTO_INDEX_ENTRIES_MAX 10000    /* entries per batch */
#define LR_PROTO_INDEX_FIRST 0x1u           /* first batch of a full index */
#define LR_PROTO_INDEX_LAST 0x2u            /* last batch of the current burst */
/* First batch of a reconciled full index (§6.11, LR_FEAT_RECON): the
 * replacement a SUMMARY began continues; never with FIRST. */
#define LR_PROTO_INDEX_RECON 0x4u
#define LR_PROTO_ENTRY_DELETED 0x1u          /* entry flag: tombstone */
#define LR_PROTO_ENTRY_DELTA 0x2u            /* entry flag: chunk list as a delta (§6.6) */
#define LR_PROTO_BLOCK_LEN (4 + LR_HASH_LEN) /* one (u32 len, sha256) block */
/* rec.type of an entry whose wire type this version does not know. */
#define LR_PROTO_FT_UNKNOWN ((enum lr_ftype)255)

enum lr_proto_comp { LR_PROTO_COMP_NONE = 0, LR_PROTO_COMP_ZSTD = 1 };

struct lr_proto_index_hdr {
    char folder_id[LR_PROTO_FOLDER_ID_MAX + 1];
    uint64_t index_id; /* the sender's index of the folder; != 0 */
    uint64_t flags;    /* LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_LAST */
    uint64_t count;    /* entries in the batch */
    uint64_t raw_len;  /* decompressed body bytes */
    uint64_t comp;     /* enum lr_proto_comp */
};

/*
 * One decoded entry. rec owns its members (lr_proto_entry_release). A live
 * regular file's chunk list may be split over consecutive entries
 * ("segments", only at batch boundaries): rec.chunks holds blocks
 * [blk_first, blk_first + rec.nchunks) of blk_total, with absolute offsets.
 * rec.blocks_hash is set only when `whole` (for a segmented list the
 * receiver hashes the concatenated block hashes itself). `whole` is also
 * true for entries without blocks. rec.inode/ctime_ns are 0.
 * unknown_type: the wire type is not one this version knows; rec.type is
 * LR_PROTO_FT_UNKNOWN and only path, deleted, seq, mtime_ns, mode and vv
 * are meaningful (the receiver must never delete or fetch because of it).
 * delta: a live file whose chunk list came as a delta (LR_PROTO_ENTRY_DELTA,
 * only ever whole): rec.chunks is NULL, rec.nchunks and blk_total are 0,
 * rec.blocks_hash is the declared hash of the result, delta_bytes[0..delta_len)
 * (owned) has passed lr_sync_delta_scan and yields delta_count blocks;
 * the receiver applies it to its own list whose blocks hash is delta_base
 * (lr_sync_delta_apply checks the size and blocks hash) before storing.
 */
struct lr_proto_entry {
    struct lr_file_rec rec;
    uint64_t wire_type;
    bool unknown_type;
    bool whole;
    uint64_t blk_total;
    uint64_t blk_first;
    bool delta;
    struct lr_hash delta_base;
    uint8_t *delta_bytes;
    size_t delta_len;
    uint64_t delta_count;
};
void lr_proto_entry_release(struct lr_proto_entry *e);
/*
 * True if `next` is the segment that follows `prev` (same path, seq, vv,
 * metadata and blk_total; blocks and offsets contiguous). The receiver
 * checks this for a segment with blk_first > 0 and drops the peer if false.
 */
bool lr_proto_entry_continues(const struct lr_proto_entry *prev, const struct lr_proto_entry *next);

/*
 * Streaming decoder over one INDEX payload: open parses and checks the
 * header and decompresses the body (at most LR_PROTO_INDEX_RAW_MAX bytes,
 * allocated only after the declared size and the zstd frame header agree),
 * next yields one validated entry at a time. With comp NONE the body is
 * borrowed from p, which must then outlive the reader.
 * The message is valid only if every next succeeds up to the final 0:
 * apply nothing before that (or use lr_proto_index_decode).
 */
struct lr_proto_index_rd {
    struct lr_proto_index_hdr hdr;
    uint8_t *owned; /* decompressed body, or NULL */
    struct lr_rd rd;
    uint64_t idx;      /* entries yielded */
    uint64_t last_seq; /* of the previous entry */
};
/* 0, or a fatal decode error (the reader then needs no close). */
int lr_proto_index_open(struct lr_proto_index_rd *r, const uint8_t *p, size_t n,
                        struct lr_proto_zc *zc, struct lr_err *err);
/* 1 and *e filled (caller releases), 0 at the end (count reached, body
 * consumed), or a fatal decode error (*e zeroed). */
int lr_proto_index_next(struct lr_proto_index_rd *r, struct lr_proto_entry *e, struct lr_err *err);
void lr_proto_index_close(struct lr_proto_index_rd *r);

/* A whole batch, decoded and validated (also: no path twice in a batch). */
struct lr_proto_index {
    struct lr_proto_index_hdr hdr;
    struct lr_proto_entry *v;
    size_t n;
};
int lr_proto_index_decode(const uint8_t *p, size_t n, struct lr_proto_zc *zc,
                          struct lr_proto_index *out, struct lr_err *err);
void lr_proto_index_release(struct lr_proto_index *ix);

/*
 * Batch builder: add records in sequence order until it says FULL, then
 * finish (appends one INDEX payload to out) and go on adding. Memory is
 * bounded by raw_max (plus the compressor's scratch), whatever the input.
 */
#define LR_PROTO_BATCH_FULL 1
struct lr_proto_index_batch {
    char folder_id[LR_PROTO_FOLDER_ID_MAX + 1];
    uint64_t index_id;
    size_t raw_max, max_entries;
    struct lr_buf raw;     /* encoded entries so far */
    struct lr_buf scratch; /* one entry being encoded */
    size_t count;
    uint64_t last_seq;
    struct lr_proto_zc *zc; /* owned */
};
/*
 * raw_max: body bytes per batch (0: LR_PROTO_INDEX_BATCH_RAW; at most that,
 * at least 64 KiB); max_entries (0: LR_PROTO_INDEX_ENTRIES_MAX). LR_EBADVAL
 * for a bad folder ID, index_id 0 or out-of-range limits.
 */
int lr_proto_index_batch_init(struct lr_proto_index_batch *b, const char *folder_id,
                              uint64_t index_id, size_t raw_max, size_t max_entries);
void lr_proto_index_batch_release(struct lr_proto_index_batch *b);
/*
 * Add rec (borrowed; a validated record with seq >= 1, chunk offsets
 * contiguous from 0, blocks only on live files) from chunk *next_block on
 * (start at 0). Returns 0 when the rest of the record is in the batch
 * (*next_block = rec->nchunks); LR_PROTO_BATCH_FULL when it is not (a
 * record too big for any batch may have been partly added: *next_block
 * says how far; finish the batch and call again with the same record);
 * LR_EBADVAL for an invalid record or a seq not above the previous one.
 */
int lr_proto_index_batch_add(struct lr_proto_index_batch *b, const struct lr_file_rec *rec,
                             size_t *next_block);
/*
 * Add rec (borrowed, validated as above; a live file whose rec->chunks are
 * loaded and whose rec->blocks_hash is right) with its chunk list as the
 * delta delta[0..delta_len) (borrowed, from lr_sync_delta_make) against the
 * list whose blocks hash is *base. Always whole. Returns 0, LR_PROTO_BATCH_FULL
 * (finish the batch and call again), LR_ETOOBIG if it cannot fit even an
 * empty batch or yields over LR_PROTO_DELTA_BLOCKS_MAX blocks (send the list
 * instead), LR_EBADVAL for an invalid record, a
 * delta that does not yield rec->nchunks blocks, or a seq not above the
 * previous one.
 */
int lr_proto_index_batch_add_delta(struct lr_proto_index_batch *b, const struct lr_file_rec *rec,
                                   const struct lr_hash *base, const uint8_t *delta,
                                   size_t delta_len);
/* Most blocks in a delta entry's result (and its base): a delta is applied
 * to a list held whole in memory (56 B a block), unlike a segmented list, so
 * larger lists (files over about 16 GiB) always go as lists. */
#define LR_PROTO_DELTA_BLOCKS_MAX (1u << 18)
/* Bytes a delta entry carries beyond the delta itself, over a list entry
 * (two hashes and a block count): the `overhead` for lr_sync_delta_make. */
#define LR_PROTO_DELTA_OVERHEAD (2 * LR_HASH_LEN + 8)
/* Entries in the batch so far. */
static inline size_t lr_proto_index_batch_count(const struct lr_proto_index_batch *b)
{
    return b->count;
}
/*
 * Append the INDEX payload (zstd level 3 if that shrinks the body) with
 * `flags` (FIRST/LAST) to out and empty the batch. out must have room for
 * raw_max + 512 bytes (an lr_buf with max LR_PROTO_INDEX_MAX always does).
 * LR_EBADVAL for unknown flags, LR_ETOOBIG if out lacks that room
 * (poisoned; the batch is kept).
 */
int lr_proto_index_batch_finish(struct lr_proto_index_batch *b, uint64_t flags, struct lr_buf *out);

/*
 * Sender side of docs/protocol.md §6.4 step 3: given our index of a folder
 * (own_index_id != 0, own_max_seq) and what the peer says it holds of it
 * in FOLDERS (peer_index_id, peer_seq), true if a full index must be sent
 * (first batch with FIRST); false means send the entries with seq > peer_seq.
 */
bool lr_proto_index_full_needed(uint64_t own_index_id, uint64_t own_max_seq, uint64_t peer_index_id,
                                uint64_t peer_seq);

/*
 * Receiver side: the checks that span batches (§6.4, §6.6), for one peer
 * and folder. Feed every decoded batch, in arrival order, with the index ID
 * of the sender's latest FOLDERS entry for the folder. Checks: the batch's
 * index ID; sequences increasing across the batches of a burst (FIRST
 * restarts); an unfinished chunk list continued exactly by the first entry
 * of the next batch, and never left open by an empty batch, a FIRST or a
 * LAST. Returns 0 or LR_EPROTO (fatal, err says why); after an error the
 * tracker is unusable (the connection closes). Call lr_proto_burst_reset
 * when the sender's index ID changes (new FOLDERS).
 * The tracker copies what it needs (path, version vector) and owns it.
 */
struct lr_proto_burst {
    uint64_t last_seq;         /* highest sequence accepted since the last FIRST */
    bool seg_open;             /* a live file's chunk list is unfinished */
    struct lr_proto_entry seg; /* its metadata (no chunks), when seg_open */
    uint64_t seg_next_first, seg_next_off;
};
void lr_proto_burst_init(struct lr_proto_burst *b);
void lr_proto_burst_reset(struct lr_proto_burst *b);
void lr_proto_burst_release(struct lr_proto_burst *b);
int lr_proto_burst_check(struct lr_proto_burst *b, uint64_t folders_index_id,
                         const struct lr_proto_index *batch, struct lr_err *err);

/* ---- WANT (0x12) ---- */
struct lr_proto_want {
    uint64_t req_id; /* the requester's, echoed in CHUNK */
    char folder_id[LR_PROTO_FOLDER_ID_MAX + 1];
    const uint8_t *path; /* borrowed: points into the decoded payload */
    size_t path_len;
    struct lr_hash blocks_hash; /* of the version the requester wants */
    uint64_t offset;            /* of the chunk in the file */
    uint32_t size;              /* 1..LR_PROTO_CHUNK_DATA_MAX */
    struct lr_hash hash;        /* the chunk's SHA-256 */
};
/* LR_EBADVAL: invalid folder ID or path, size 0 or over the max, offset +
 * size >= 2^62, req_id >= 2^62. */
int lr_proto_want_encode(const struct lr_proto_want *w, struct lr_buf *out);
/* w->path points into p[0..n) on success. */
int lr_proto_want_decode(const uint8_t *p, size_t n, struct lr_proto_want *w, struct lr_err *err);

/* ---- PULLED (0x18) ---- */
/*
 * The sender's pull state of one folder, for the receiver's `sync --wait`
 * (docs/protocol.md §6.12): it holds the receiver's index `peer_index_id`
 * up to sequence `peer_seq`, and still needs `need` items from any device
 * (0: in sync; paths its own ignore rules match are not counted, which the
 * receiver cannot know). Owns nothing.
 */
struct lr_proto_pulled {
    char folder_id[LR_PROTO_FOLDER_ID_MAX + 1];
    uint64_t peer_index_id; /* never 0 */
    uint64_t peer_seq;
    uint64_t need;
};
/* LR_EBADVAL: invalid folder ID, peer_index_id 0, a count >= 2^62. */
int lr_proto_pulled_encode(const struct lr_proto_pulled *m, struct lr_buf *out);
int lr_proto_pulled_decode(const uint8_t *p, size_t n, struct lr_proto_pulled *m,
                           struct lr_err *err);

/* ---- SEQ_ASK (0x19) and SEQS (0x1a) ---- */
/*
 * SEQ_ASK: the asker wants to know how far the receiver's index of each
 * folder synced with it has got (docs/protocol.md §6.13); `req` is the
 * asker's, echoed in the SEQS that answers it. SEQS: per folder synced
 * with the asker (at most LR_PROTO_SEQS_ENTRIES_MAX, folder IDs strictly
 * increasing by byte order, as in FOLDERS), the sender's index ID of it
 * and the highest sequence it has handed out.
 */
struct lr_proto_seq {
    char folder_id[LR_PROTO_FOLDER_ID_MAX + 1]; /* NUL-terminated */
    uint64_t index_id;                          /* never 0 */
    uint64_t max_seq;                           /* < 2^62 */
};
struct lr_proto_seqs {
    uint64_t req;
    struct lr_proto_seq *v; /* owned (lr_proto_seqs_release) */
    size_t n;
};
/* LR_EBADVAL: req >= 2^62. */
int lr_proto_seq_ask_encode(uint64_t req, struct lr_buf *out);
int lr_proto_seq_ask_decode(const uint8_t *p, size_t n, uint64_t *req, struct lr_err *err);
/* LR_EBADVAL: req >= 2^62, n over the maximum, an invalid folder ID, IDs
 * not strictly increasing, index_id 0, max_seq >= 2^62; LR_ETOOBIG: out
 * is full. */
int lr_proto_seqs_encode(uint64_t req, const struct lr_proto_seq *v, size_t n, struct lr_buf *out);
/* *out zeroed first, filled only on success (release it). */
int lr_proto_seqs_decode(const uint8_t *p, size_t n, struct lr_proto_seqs *out, struct lr_err *err);
void lr_proto_seqs_release(struct lr_proto_seqs *s);

/* ---- CHUNK (0x13) ---- */
enum lr_proto_chunk_status {
    LR_PROTO_CHUNK_OK = 0,
    LR_PROTO_CHUNK_NO_SUCH = 1,    /* no data that still hashes right */
    LR_PROTO_CHUNK_NOT_SHARED = 2, /* folder not shared with the requester */
    LR_PROTO_CHUNK_ERROR = 3,      /* local failure (I/O) */
    LR_PROTO_CHUNK_BUSY = 4,       /* overloaded: retry later or elsewhere */
    /* Receivers treat unknown statuses like ERROR. */
};

struct lr_proto_chunk {
    uint64_t req_id;
    uint64_t status;     /* enum lr_proto_chunk_status */
    uint64_t comp;       /* enum lr_proto_comp */
    const uint8_t *data; /* borrowed from the payload; wire form (maybe compressed) */
    size_t data_len;
};
/*
 * Append a CHUNK payload. status OK: data[0..len) with 1 <= len <=
 * LR_PROTO_CHUNK_DATA_MAX, sent zstd-compressed (level 1) only if
 * `compress` and that is smaller. Other statuses: len must be 0.
 */
int lr_proto_chunk_encode(struct lr_proto_zc *zc, uint64_t req_id, uint64_t status,
                          const void *data, size_t len, bool compress, struct lr_buf *out);
/*
 * Append the header of a raw OK CHUNK payload of exactly len bytes (1 <=
 * len <= LR_PROTO_CHUNK_DATA_MAX) and reserve them: *data points at them,
 * for the caller to fill before the payload is sent (they already count in
 * out->len). What lr_proto_chunk_encode would produce with compress false,
 * without the copy: a sender reads the chunk straight into its frame.
 */
int lr_proto_chunk_encode_raw(uint64_t req_id, size_t len, struct lr_buf *out, uint8_t **data);
/* Parse (no decompression). c->data points into p. */
int lr_proto_chunk_decode(const uint8_t *p, size_t n, struct lr_proto_chunk *c, struct lr_err *err);
/*
 * The chunk's bytes into out[0..expect) (caller-owned, expect = the size
 * requested, 1..LR_PROTO_CHUNK_DATA_MAX). Nothing is allocated from the
 * peer's numbers: raw data must be exactly expect bytes; compressed data
 * must be shorter than expect, one zstd frame declaring exactly expect
 * bytes and producing exactly that. LR_EBADVAL otherwise (or if status is
 * not OK). The hash is the caller's to verify.
 */
int lr_proto_chunk_data(struct lr_proto_zc *zc, const struct lr_proto_chunk *c, uint8_t *out,
                        size_t expect, struct lr_err *err);
/*
 * The same checks without copying raw data: *data = c->data (borrowed from
 * the payload) when the chunk came raw, else `scratch` (caller-owned,
 * expect bytes) holding the decompressed bytes. What a receiver hashes and
 * writes at once needs no copy of its own (1 GiB of raw chunks: one memcpy
 * of 1 GiB less on the rx lane).
 */
int lr_proto_chunk_bytes(struct lr_proto_zc *zc, const struct lr_proto_chunk *c, uint8_t *scratch,
                         size_t expect, const uint8_t **data, struct lr_err *err);

#endif
