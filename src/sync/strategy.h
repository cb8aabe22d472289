/*
 * strategy.h - per-folder conflict resolution strategies, in the form the
 * pure decision layer (decide.h) evaluates, plus their text form (config,
 * CLI, audit trail) and wire form (FOLDERS option 3, proto.h).
 *
 * A strategy belongs to one device. A conflict between the version this
 * device holds and the version a peer holds is resolved by evaluating both
 * devices' strategies (struct lr_sync_sides): each names the local version,
 * the remote one, or neither; a version wins outright only when both name
 * it. Anything else falls back to keep-both. Every device of the pair sees
 * the same two strategies and the same two versions with the roles swapped,
 * so both reach the same result in either message order (docs/conflicts.md).
 *
 * Text forms: "keep-both", "newest", "largest", "prefer-local",
 * "prefer-remote", "prefer:DEVICE_ID" (the ID as lr_device_id_format
 * prints it). The window only matters for "newest".
 *
 * Ownership: plain values, nothing to release. Errors: LR_EUSAGE naming the
 * bad text (lr_sync_strategy_parse), LR_EBADVAL (from_proto).
 * Threads: pure, reentrant.
 */
#ifndef LR_SYNC_STRATEGY_H
#define LR_SYNC_STRATEGY_H

#include "identity/identity.h"
#include "util/err.h"

#include <stdbool.h>
#include <stdint.h>

struct lr_proto_folder;

/* Largest --conflict-window, seconds (one year; config's limit too). */
#define LR_SYNC_WINDOW_MAX (365u * 86400u)
/* Longest text form: "prefer:" + a formatted device ID. */
#define LR_SYNC_STRATEGY_STRLEN (7 + LR_DEVICE_ID_STRLEN)

enum lr_sync_strat {
    LR_STRAT_KEEP_BOTH = 0,
    LR_STRAT_NEWEST = 1,
    LR_STRAT_LARGEST = 2,
    LR_STRAT_PREFER_LOCAL = 3,  /* the owning device's version wins */
    LR_STRAT_PREFER_REMOTE = 4, /* the other device's version wins */
    LR_STRAT_PREFER_DEVICE = 5, /* `prefer`'s version wins (neither: no opinion) */
};

struct lr_sync_strategy {
    enum lr_sync_strat kind;
    uint32_t window_s;          /* NEWEST: mtimes closer than this are a tie */
    struct lr_device_id prefer; /* PREFER_DEVICE only */
};

/*
 * Both sides of a pairwise decision: the device holding `local` (this one)
 * and the device holding `remote` (the peer the record came from), each
 * with its strategy for the folder. A zeroed struct means keep-both on both.
 */
struct lr_sync_sides {
    struct lr_device_id local_dev, remote_dev;
    struct lr_sync_strategy local, remote;
    /* The remote device's strategy is not known (it has not announced the
     * folder on a live connection): `remote` is a guess. */
    bool remote_unknown;
    /* The local record is an own version of a receive-only folder (never
     * announced, docs/modes.md): any concurrent remote version wins
     * (lr_sync_decide_with, LR_SYNC_F_YIELDED). */
    bool local_yields;
};

/* Parse the text form and window (0..LR_SYNC_WINDOW_MAX) into *out (zeroed
 * first). NULL text means keep-both. 0 or LR_EUSAGE naming the text. */
int lr_sync_strategy_parse(const char *text, uint32_t window_s, struct lr_sync_strategy *out,
                           struct lr_err *err);
/* Text form into out[LR_SYNC_STRATEGY_STRLEN + 1]; returns out. */
char *lr_sync_strategy_format(const struct lr_sync_strategy *s,
                              char out[LR_SYNC_STRATEGY_STRLEN + 1]);

/* Fill f's option 3 (has_resolve and its fields) from s. */
void lr_sync_strategy_to_proto(const struct lr_sync_strategy *s, struct lr_proto_folder *f);
/* The strategy a decoded FOLDERS entry announces (keep-both if it states
 * none). 0, or LR_EBADVAL for values the decoder would have refused. */
int lr_sync_strategy_from_proto(const struct lr_proto_folder *f, struct lr_sync_strategy *out);

#endif
