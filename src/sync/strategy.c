/*
 * strategy.c - conflict strategies: text and wire forms (contract in
 * strategy.h; how decide.c evaluates them in docs/conflicts.md).
 */
#include "sync/strategy.h"

#include "proto/proto.h"
#include "util/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"keep-both",    "newest",        "largest",
                                         "prefer-local", "prefer-remote", "prefer:"};

int lr_sync_strategy_parse(const char *text, uint32_t window_s, struct lr_sync_strategy *out,
                           struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    struct lr_sync_strategy s = {0};
    if (window_s > LR_SYNC_WINDOW_MAX)
        return lr_err_set(err, LR_EUSAGE, "invalid conflict window %u: over %u seconds", window_s,
                          LR_SYNC_WINDOW_MAX);
    s.window_s = window_s;
    if (!text)
        text = "keep-both";
    bool found = false;
    for (size_t i = 0; i < LR_STRAT_PREFER_DEVICE; i++) {
        if (strcmp(text, kind_names[i]) == 0) {
            s.kind = (enum lr_sync_strat)i;
            found = true;
        }
    }
    if (!found && strncmp(text, "prefer:", 7) == 0) {
        struct lr_err sub = {0};
        if (lr_device_id_parse(text + 7, &s.prefer, &sub) == 0) {
            s.kind = LR_STRAT_PREFER_DEVICE;
            found = true;
        } else {
            char *e = lr_escs(text);
            int rc = lr_err_set(err, LR_EUSAGE, "invalid conflict strategy '%s': %s", e, sub.msg);
            free(e);
            return rc;
        }
    }
    if (!found) {
        char *e = lr_escs(text);
        int rc = lr_err_set(err, LR_EUSAGE,
                            "invalid conflict strategy '%s' (expected keep-both, newest, largest, "
                            "prefer-local, prefer-remote or prefer:DEVICE_ID)",
                            e);
        free(e);
        return rc;
    }
    *out = s;
    return 0;
}

char *lr_sync_strategy_format(const struct lr_sync_strategy *s,
                              char out[LR_SYNC_STRATEGY_STRLEN + 1])
{
    if (s->kind == LR_STRAT_PREFER_DEVICE) {
        char id[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&s->prefer, id);
        snprintf(out, LR_SYNC_STRATEGY_STRLEN + 1, "prefer:%s", id);
    } else if ((unsigned)s->kind < LR_STRAT_PREFER_DEVICE) {
        snprintf(out, LR_SYNC_STRATEGY_STRLEN + 1, "%s", kind_names[s->kind]);
    } else {
        snprintf(out, LR_SYNC_STRATEGY_STRLEN + 1, "unknown");
    }
    return out;
}

/* The two enums share their numbering; the switches keep that checked by name. */
static uint32_t to_wire(enum lr_sync_strat k)
{
    switch (k) {
    case LR_STRAT_NEWEST:
        return LR_PROTO_RESOLVE_NEWEST;
    case LR_STRAT_LARGEST:
        return LR_PROTO_RESOLVE_LARGEST;
    case LR_STRAT_PREFER_LOCAL:
        return LR_PROTO_RESOLVE_PREFER_LOCAL;
    case LR_STRAT_PREFER_REMOTE:
        return LR_PROTO_RESOLVE_PREFER_REMOTE;
    case LR_STRAT_PREFER_DEVICE:
        return LR_PROTO_RESOLVE_PREFER_DEVICE;
    case LR_STRAT_KEEP_BOTH:
    default:
        return LR_PROTO_RESOLVE_KEEP_BOTH;
    }
}

void lr_sync_strategy_to_proto(const struct lr_sync_strategy *s, struct lr_proto_folder *f)
{
    f->has_resolve = true;
    f->resolve = to_wire(s->kind);
    f->resolve_window = s->window_s > LR_SYNC_WINDOW_MAX ? LR_SYNC_WINDOW_MAX : s->window_s;
    memset(f->resolve_device, 0, sizeof(f->resolve_device));
    if (s->kind == LR_STRAT_PREFER_DEVICE)
        memcpy(f->resolve_device, s->prefer.b, sizeof(f->resolve_device));
    /* Option 2 as well, for humans reading a peer's announcement; it does
     * not fit a prefer:ID (64 bytes at most), so that one goes without. */
    char t[LR_SYNC_STRATEGY_STRLEN + 1];
    lr_sync_strategy_format(s, t);
    size_t tl = strlen(t);
    if (tl >= sizeof(f->conflict))
        tl = 0;
    memcpy(f->conflict, t, tl);
    f->conflict[tl] = '\0';
}

int lr_sync_strategy_from_proto(const struct lr_proto_folder *f, struct lr_sync_strategy *out)
{
    memset(out, 0, sizeof(*out));
    if (!f->has_resolve)
        return 0;
    if (f->resolve_window > LR_SYNC_WINDOW_MAX)
        return LR_EBADVAL;
    struct lr_sync_strategy s = {0};
    s.window_s = f->resolve_window;
    switch (f->resolve) {
    case LR_PROTO_RESOLVE_KEEP_BOTH:
        s.kind = LR_STRAT_KEEP_BOTH;
        break;
    case LR_PROTO_RESOLVE_NEWEST:
        s.kind = LR_STRAT_NEWEST;
        break;
    case LR_PROTO_RESOLVE_LARGEST:
        s.kind = LR_STRAT_LARGEST;
        break;
    case LR_PROTO_RESOLVE_PREFER_LOCAL:
        s.kind = LR_STRAT_PREFER_LOCAL;
        break;
    case LR_PROTO_RESOLVE_PREFER_REMOTE:
        s.kind = LR_STRAT_PREFER_REMOTE;
        break;
    case LR_PROTO_RESOLVE_PREFER_DEVICE:
        s.kind = LR_STRAT_PREFER_DEVICE;
        memcpy(s.prefer.b, f->resolve_device, sizeof(s.prefer.b));
        break;
    default:
        return LR_EBADVAL;
    }
    *out = s;
    return 0;
}
