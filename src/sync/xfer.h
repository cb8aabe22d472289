/*
 * xfer.h - the chunk transfer scheduler: which chunk of which file to ask
 * which peer for, and what to do with the answer. Sans-I/O, like decide.h
 * and plan.h: it sends, reads and writes nothing; the daemon feeds it events
 * (a transfer started, a peer came or went, an answer arrived, a chunk was
 * verified and written or not) and carries out what it returns (send a
 * WANT, commit a complete file, drop a transfer). So the ordering problems
 * of pulling (a peer leaving mid-file, a refusal, a failed verification,
 * windows full) are unit-tested without sockets or disks
 * (tests/unit/test_xfer.c).
 *
 * Model. A transfer is one version of one file with n chunks, each TODO,
 * WANTED (a WANT is out, identified by a request ID), RECV (data arrived,
 * being verified and written) or DONE (in the staging file), and the set of
 * peers holding that version ("holders"). Transfers with TODO chunks wait in
 * a ready queue; lr_xs_pump() walks it round-robin, giving each transfer a
 * turn of about 256 KiB of requests while others wait (so one large file
 * does not hold back the small ones queued behind it), and gives each TODO
 * chunk to the connected holder with the fewest bytes outstanding among
 * those below the per-peer limits, so a file is pulled from every peer that
 * has it at once (swarming) and a peer that leaves only returns its
 * outstanding chunks to TODO. A holder that refuses a chunk (NO_SUCH,
 * NOT_SHARED, ERROR) or whose data fails verification is not asked again
 * for that transfer; BUSY is not held against it. More than `failures_max` failed chunks (refusals
 * and failed verifications) drop the transfer; so does having no connected usable holder with
 * nothing in flight, unless a full holder that left may be back (lr_xs_peer_gone). Answers to
 * requests of a transfer that was removed meanwhile are still matched (and reported as stale) so
 * they are not mistaken for protocol violations.
 *
 * Partial holders (HAVE, docs/protocol.md §6.10). A peer still downloading
 * the same version may announce the chunks it holds (lr_xs_have): it becomes
 * a holder of those chunks only, asked for them alongside the full holders
 * (the fewest-bytes rule picks among every connected holder of the chunk).
 * When no full holder is connected, chunks no connected holder has are
 * skipped rather than stopping the walk, so a partial holder is asked for
 * what it has; once nothing is in flight and a chunk is still unservable the
 * transfer is dropped as before. What a peer announced is forgotten when it
 * disconnects (lr_xs_peer_down) and with its transfer (lr_xs_remove); a peer
 * whose index turns out to hold the version (lr_xs_add_holders) becomes a
 * full holder. Refusals and failed data count against a partial holder as
 * against any other.
 *
 * Keys. A transfer may carry a 32-byte key chosen by the caller (its
 * folder, path and version, hashed): lr_xs_find() finds it, so an incoming
 * HAVE or a WANT for a version being downloaded is matched in O(1).
 *
 * Ownership: the scheduler owns its transfers (lr_xs_add .. lr_xs_remove)
 * and copies what it is given; `user` pointers are the caller's and are
 * handed back untouched. Peers are named by device ID (copied).
 * Allocation failure aborts (util/xalloc.h). Not thread-safe: one thread
 * (the daemon's loop).
 */
#ifndef LR_SYNC_XFER_H
#define LR_SYNC_XFER_H

#include "hash/hash.h"
#include "identity/identity.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lr_xs;
struct lr_xs_xfer;

struct lr_xs_limits {
    uint32_t wants_max;    /* requests outstanding per peer */
    uint64_t bytes_max;    /* bytes requested and not yet answered, per peer */
    uint32_t failures_max; /* failed chunks before a transfer is dropped */
    uint32_t blocked_max;  /* full-window transfers the pump skips before it stops */
    /*
     * Adaptive byte window (both non-zero; else the window is bytes_max).
     * A peer's window starts at twice bytes_min and then follows its
     * delivery rate (bytes answered per second while requests are
     * outstanding, sampled over 250 ms or more; lr_xs_clock gives the
     * time): rate x latency_ms, within [bytes_min, bytes_max]. So what is
     * asked of a slow or lossy link is about latency_ms worth of its rate,
     * and a request made later (a small file found while a large one is
     * received) waits behind that, not behind bytes_max: 32 MiB at 1 MB/s
     * is half a minute.
     */
    uint64_t bytes_min;
    uint32_t latency_ms;
};

enum lr_xs_chunk_state { LR_XS_TODO = 0, LR_XS_WANTED, LR_XS_RECV, LR_XS_DONE };

/* How a peer answered a WANT. */
enum lr_xs_answer {
    LR_XS_ANS_OK,      /* data came: verify and write it, then lr_xs_written() */
    LR_XS_ANS_REFUSED, /* not from this peer (stale index, not shared, I/O error there) */
    LR_XS_ANS_BUSY,    /* the peer is overloaded: ask again, maybe elsewhere */
};

/* The `why` of a drop because no usable holder is connected (after the
 * grace for one that left): the transfer may resume from staging later. */
#define LR_XS_NO_PEER "no peer can serve it"

enum lr_xs_act_kind {
    LR_XS_WANT,     /* send a WANT for chunk `chunk` of `x` to `peer` with `req_id` */
    LR_XS_COMPLETE, /* every chunk of `x` is written: commit it, then lr_xs_remove() */
    LR_XS_DROP,     /* give `x` up (`why`); lr_xs_remove() it */
};

struct lr_xs_act {
    enum lr_xs_act_kind kind;
    struct lr_xs_xfer *x;
    size_t chunk;                    /* WANT */
    const struct lr_device_id *peer; /* WANT: valid until the next scheduler call */
    uint64_t req_id;                 /* WANT */
    const char *why;                 /* DROP: static text */
};

struct lr_xs *lr_xs_new(const struct lr_xs_limits *lim);
/* Frees every transfer still registered (NULL is a no-op). */
void lr_xs_free(struct lr_xs *xs);

/* The caller's clock, in milliseconds (monotonic), for the adaptive window:
 * set it before lr_xs_pump and lr_xs_answer. */
void lr_xs_clock(struct lr_xs *xs, uint64_t now_ms);
/* A peer's current byte window (bytes_max when not adaptive). */
uint64_t lr_xs_peer_window(const struct lr_xs *xs, const struct lr_device_id *peer);

/*
 * Register a transfer: chunk lengths (copied), chunks already in staging
 * (`done[i]` true; NULL: none), holders (copied). A transfer with every
 * chunk done is reported COMPLETE by the next lr_xs_pump().
 */
struct lr_xs_xfer *lr_xs_add(struct lr_xs *xs, void *user, const uint32_t *chunk_len,
                             size_t nchunks, const bool *done, const struct lr_device_id *holders,
                             size_t nholders);
/* More peers turned out to hold the transfer's version (their index arrived
 * after it started): they are asked too. Known ones are skipped (copied). */
void lr_xs_add_holders(struct lr_xs *xs, struct lr_xs_xfer *x, const struct lr_device_id *holders,
                       size_t nholders);
/* Forget a transfer (committed or dropped). Its outstanding requests stay
 * matched until answered (lr_xs_answer then returns it as NULL). */
void lr_xs_remove(struct lr_xs *xs, struct lr_xs_xfer *x);

/*
 * `peer` announced (HAVE) that it holds the chunks set in bits[0 ..
 * ceil(nchunks/8)) (chunk k: bit k & 7 of byte k >> 3; bits at nchunks and
 * above ignored; bits borrowed): merged into what it announced before. A
 * peer whose index holds the version is not changed. Returns the chunks
 * newly learned.
 */
size_t lr_xs_have(struct lr_xs *xs, struct lr_xs_xfer *x, const struct lr_device_id *peer,
                  const uint8_t *bits);

enum lr_xs_holder { LR_XS_HOLDER_NONE, LR_XS_HOLDER_PARTIAL, LR_XS_HOLDER_FULL };
/* What the scheduler knows `peer` holds of x's version. */
enum lr_xs_holder lr_xs_holder_of(const struct lr_xs *xs, const struct lr_xs_xfer *x,
                                  const struct lr_device_id *peer);
/* The DONE chunks as a bitmap into bits[0 .. ceil(nchunks/8)) (caller's). */
void lr_xs_done_bits(const struct lr_xs_xfer *x, uint8_t *bits);
/* Chunks written whose data came from a partial holder. */
size_t lr_xs_nfrom_partial(const struct lr_xs_xfer *x);

/* Give x a key (copied; replaces an earlier one). Keys are the caller's to
 * keep unique; lr_xs_find returns one of the transfers with the key. */
void lr_xs_set_key(struct lr_xs *xs, struct lr_xs_xfer *x, const struct lr_hash *key);
/* The registered transfer with `key`, or NULL. */
struct lr_xs_xfer *lr_xs_find(const struct lr_xs *xs, const struct lr_hash *key);

void *lr_xs_user(const struct lr_xs_xfer *x);
size_t lr_xs_nchunks(const struct lr_xs_xfer *x);
size_t lr_xs_ndone(const struct lr_xs_xfer *x);
enum lr_xs_chunk_state lr_xs_state(const struct lr_xs_xfer *x, size_t chunk);
/* Transfers registered. */
size_t lr_xs_count(const struct lr_xs *xs);

/* A peer's connection came up or went down (its outstanding chunks go back
 * to TODO, to be asked of other holders). A peer that went down may come
 * back soon (a reconnect; a crossing dial replacing the connection), so a
 * transfer that only it can serve waits for it rather than being dropped,
 * until the caller decides it is gone (lr_xs_peer_gone, e.g. after a grace
 * period) or it comes back. */
void lr_xs_peer_up(struct lr_xs *xs, const struct lr_device_id *peer);
void lr_xs_peer_down(struct lr_xs *xs, const struct lr_device_id *peer);
/* Stop waiting for a down peer: transfers only it could serve are dropped by
 * the next lr_xs_pump. No-op for a peer that is up or already gone. */
void lr_xs_peer_gone(struct lr_xs *xs, const struct lr_device_id *peer);
/* Requests and bytes outstanding at a peer (0 if unknown). */
uint32_t lr_xs_peer_wants(const struct lr_xs *xs, const struct lr_device_id *peer);
uint64_t lr_xs_peer_bytes(const struct lr_xs *xs, const struct lr_device_id *peer);

/*
 * Up to `max` actions: WANTs the windows allow, COMPLETE for transfers all
 * of whose chunks are written, DROP for transfers nobody can serve. Call it
 * after any event, until it returns 0 or the caller cannot send more.
 */
size_t lr_xs_pump(struct lr_xs *xs, struct lr_xs_act *out, size_t max);

/*
 * An answer from `peer` to request `req_id`. 0 with *x and *chunk set (*x
 * NULL if its transfer was removed: ignore the data), or LR_ENOTFOUND if no
 * such request is outstanding at that peer (a protocol violation). For
 * LR_XS_ANS_OK the chunk is RECV until lr_xs_written().
 */
int lr_xs_answer(struct lr_xs *xs, const struct lr_device_id *peer, uint64_t req_id,
                 enum lr_xs_answer ans, struct lr_xs_xfer **x, size_t *chunk);
/* The chunk's data was verified and written (ok) or not (it goes back to
 * TODO and counts as a failure). */
void lr_xs_written(struct lr_xs *xs, struct lr_xs_xfer *x, size_t chunk, bool ok);

#endif
