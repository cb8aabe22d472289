/*
 * decide.c - pure sync decisions: version-vector order, merge, conflict
 * winner and conflict copy names (contract in decide.h, rules and reasons in
 * docs/internals/sync.md).
 */
#include "sync/decide.h"

#include "identity/identity.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lr_sync_vv_merge(const struct lr_vv *a, const struct lr_vv *b, struct lr_vv *out)
{
    memset(out, 0, sizeof(*out));
    size_t n = 0, i = 0, j = 0;
    while (i < a->n || j < b->n) {
        if (j == b->n || (i < a->n && a->e[i].id < b->e[j].id)) {
            i++;
        } else if (i == a->n || b->e[j].id < a->e[i].id) {
            j++;
        } else {
            i++;
            j++;
        }
        n++;
    }
    if (n > LR_VV_MAX)
        return LR_ETOOBIG;
    if (n == 0)
        return 0;
    struct lr_vv v = {lr_xmallocarray(n, sizeof(v.e[0])), 0, n, 0};
    i = j = 0;
    while (i < a->n || j < b->n) {
        if (j == b->n || (i < a->n && a->e[i].id < b->e[j].id)) {
            v.e[v.n++] = a->e[i++];
        } else if (i == a->n || b->e[j].id < a->e[i].id) {
            v.e[v.n++] = b->e[j++];
        } else {
            struct lr_vv_entry e = a->e[i];
            if (b->e[j].counter > e.counter)
                e.counter = b->e[j].counter;
            v.e[v.n++] = e;
            i++;
            j++;
        }
    }
    /* The larger of the parts' known authors that still name their version
     * in the result (symmetric; decide.h); none: unknown. */
    uint64_t x = lr_sync_vv_merged_author(&v, a), y = lr_sync_vv_merged_author(&v, b);
    v.author = x > y ? x : y;
    *out = v;
    return 0;
}

uint64_t lr_sync_vv_merged_author(const struct lr_vv *merged, const struct lr_vv *part)
{
    uint64_t c = part->author ? lr_vv_get(part, part->author) : 0;
    return c && lr_vv_get(merged, part->author) == c ? part->author : 0;
}

uint64_t lr_sync_vv_author(const struct lr_vv *vv)
{
    if (vv->author && lr_vv_get(vv, vv->author))
        return vv->author;
    uint64_t id = 0, best = 0;
    for (size_t i = 0; i < vv->n; i++) {
        /* ids ascend, so ">=" leaves the larger id on equal counters */
        if (vv->e[i].counter >= best) {
            best = vv->e[i].counter;
            id = vv->e[i].id;
        }
    }
    return id;
}

int lr_sync_local_change(const struct lr_vv *old, uint64_t self, uint64_t now_s, struct lr_vv *out)
{
    memset(out, 0, sizeof(*out));
    struct lr_vv v = {0};
    if (old)
        lr_vv_copy(&v, old);
    if (lr_vv_bump(&v, self, now_s) == 0) {
        lr_vv_release(&v);
        return LR_ETOOBIG;
    }
    *out = v;
    return 0;
}

void lr_sync_decision_release(struct lr_sync_decision *d)
{
    if (!d)
        return;
    lr_vv_release(&d->vv);
    free(d->copy_path);
    memset(d, 0, sizeof(*d));
}

const char *lr_sync_action_str(enum lr_sync_action a)
{
    static const char *const names[] = {"nothing", "take-remote", "merge-vv", "conflict"};
    return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "unknown";
}

const char *lr_sync_apply_str(enum lr_sync_apply a)
{
    static const char *const names[] = {"none", "record",  "meta",  "file",
                                        "dir",  "symlink", "delete"};
    return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "unknown";
}

const char *lr_sync_conflict_str(enum lr_sync_conflict c)
{
    static const char *const names[] = {"none", "metadata", "content", "type", "modify-delete"};
    return (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "unknown";
}

/* ---- comparing versions ----------------------------------------------------- */

static bool known_type(enum lr_ftype t)
{
    return t == LR_FT_FILE || t == LR_FT_DIR || t == LR_FT_SYMLINK;
}

static int cmp_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t m = an < bn ? an : bn;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

/* Same data at the path: tombstones are all "absent"; directories have none. */
bool lr_sync_same_content(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    if (a->deleted || b->deleted)
        return a->deleted && b->deleted;
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case LR_FT_FILE:
        return a->size == b->size &&
               memcmp(a->blocks_hash.b, b->blocks_hash.b, sizeof(a->blocks_hash.b)) == 0;
    case LR_FT_DIR:
        return true;
    case LR_FT_SYMLINK:
        return cmp_bytes(a->target, a->target_len, b->target, b->target_len) == 0;
    }
    return false;
}

/*
 * Metadata that matters on disk, for two live records of the same content:
 * a file's mode and mtime; a directory's mode (its mtime moves with every
 * child, and the scanner does not track it); a symlink's mtime (its mode is
 * fixed on Linux).
 */
bool lr_sync_meta_differs(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    if (a->deleted || b->deleted)
        return false;
    switch (a->type) {
    case LR_FT_FILE:
        return a->mode != b->mode || a->mtime_ns != b->mtime_ns;
    case LR_FT_DIR:
        return a->mode != b->mode;
    case LR_FT_SYMLINK:
        return a->mtime_ns != b->mtime_ns;
    }
    return false;
}

/*
 * Total order on versions, deciding who keeps the name (and whose metadata
 * a merge keeps): > 0 if a wins. An mtime tie goes to the known author
 * with the larger short device ID. The author is a property of the
 * version: a local change sets it, copies and relays keep it, the merged
 * vector a conflict's loser stores is given the winner's, and a merge of
 * the same content keeps one that still names its version, so every order
 * of resolution ends on the same winner (docs/internals/sync.md, "The
 * winner key").
 */
static int version_cmp(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    int al = !a->deleted, bl = !b->deleted;
    if (al != bl)
        return al - bl; /* modify beats delete */
    if (al) {
        int ad = a->type == LR_FT_DIR, bd = b->type == LR_FT_DIR;
        if (ad != bd)
            return ad - bd; /* a directory cannot become a copy: its children stay */
    }
    if (a->mtime_ns != b->mtime_ns)
        return a->mtime_ns > b->mtime_ns ? 1 : -1;
    /* Known authors only: one derived from the largest counter changes
     * with merges, and devices would rank the same version differently. */
    uint64_t aa = lr_vv_get(&a->vv, a->vv.author) ? a->vv.author : 0;
    uint64_t ba = lr_vv_get(&b->vv, b->vv.author) ? b->vv.author : 0;
    if (aa && ba && aa != ba)
        return aa > ba ? 1 : -1;
    if (a->type != b->type)
        return a->type > b->type ? 1 : -1;
    if (al) {
        int c = 0;
        if (a->type == LR_FT_FILE) {
            if (a->size != b->size)
                return a->size > b->size ? 1 : -1;
            c = memcmp(a->blocks_hash.b, b->blocks_hash.b, sizeof(a->blocks_hash.b));
        } else if (a->type == LR_FT_SYMLINK) {
            c = cmp_bytes(a->target, a->target_len, b->target, b->target_len);
        }
        if (c)
            return c > 0 ? 1 : -1;
    }
    if (a->mode != b->mode)
        return a->mode > b->mode ? 1 : -1;
    return 0;
}

/* What the disk undergoes when `win` replaces `local` (NULL: none). */
static void set_apply(const struct lr_file_rec *local, const struct lr_file_rec *win,
                      struct lr_sync_decision *d)
{
    bool live = local && !local->deleted;
    if (win->deleted) {
        if (live) {
            d->apply = LR_SYNC_APPLY_DELETE;
            d->flags |= LR_SYNC_F_CHECK_DISK;
            if (local->type == LR_FT_DIR)
                d->flags |= LR_SYNC_F_IF_EMPTY;
        } else {
            d->apply = LR_SYNC_APPLY_RECORD;
        }
        return;
    }
    if (live && lr_sync_same_content(local, win)) {
        if (lr_sync_meta_differs(local, win)) {
            d->apply = LR_SYNC_APPLY_META;
            d->flags |= LR_SYNC_F_CHECK_DISK;
        } else {
            d->apply = LR_SYNC_APPLY_RECORD;
        }
        return;
    }
    switch (win->type) {
    case LR_FT_DIR:
        d->apply = LR_SYNC_APPLY_DIR;
        break;
    case LR_FT_SYMLINK:
        d->apply = LR_SYNC_APPLY_SYMLINK;
        break;
    default:
        d->apply = LR_SYNC_APPLY_FILE;
        break;
    }
    d->flags |= LR_SYNC_F_CHECK_DISK;
    if (live && local->type != win->type) {
        d->flags |= LR_SYNC_F_REPLACE_TYPE;
        if (local->type == LR_FT_DIR)
            d->flags |= LR_SYNC_F_IF_EMPTY;
    }
}

/* Fill err naming the path, escaped (peer names may hold terminal controls). */
static int fail_path(struct lr_err *err, int rc, const char *what, const struct lr_file_rec *r)
{
    char *e = lr_esc(r->path, r->path_len);
    lr_err_set(err, rc, "sync decide: %s: %s", what, e);
    free(e);
    return rc;
}

/* mtimes closer than the window (or equal) are a tie: 0; else who is newer. */
static int pick_newest(const struct lr_file_rec *l, const struct lr_file_rec *r, uint32_t window_s)
{
    if (l->mtime_ns == r->mtime_ns)
        return 0;
    int sign = l->mtime_ns > r->mtime_ns ? 1 : -1;
    /* unsigned difference of two int64s cannot overflow */
    uint64_t diff = sign > 0 ? (uint64_t)l->mtime_ns - (uint64_t)r->mtime_ns
                             : (uint64_t)r->mtime_ns - (uint64_t)l->mtime_ns;
    return diff < (uint64_t)window_s * 1000000000u ? 0 : sign;
}

/*
 * The version one device's strategy names: +1 local, -1 remote, 0 neither.
 * `own_local`: the strategy belongs to the device holding `l`. Swapping
 * l and r, own_local and the sides' devices negates the answer, which is
 * what makes the rule symmetric.
 */
static int pick(const struct lr_sync_strategy *s, bool own_local, const struct lr_file_rec *l,
                const struct lr_file_rec *r)
{
    switch (s->kind) {
    case LR_STRAT_NEWEST:
        return pick_newest(l, r, s->window_s);
    case LR_STRAT_LARGEST:
        return l->size == r->size ? 0 : l->size > r->size ? 1 : -1;
    case LR_STRAT_PREFER_LOCAL:
        return own_local ? 1 : -1;
    case LR_STRAT_PREFER_REMOTE:
        return own_local ? -1 : 1;
    case LR_STRAT_PREFER_DEVICE: {
        /* The version that device made (its author), not the one it sent: with
         * three or more devices a version often arrives through another. */
        uint64_t want = lr_device_id_u64(&s->prefer);
        bool is_l = lr_sync_vv_author(&l->vv) == want;
        bool is_r = lr_sync_vv_author(&r->vv) == want;
        return is_l == is_r ? 0 : is_l ? 1 : -1;
    }
    case LR_STRAT_KEEP_BOTH:
    default:
        return 0;
    }
}

/* Strategies decide only between two live regular files. */
static bool strategy_applies(const struct lr_file_rec *l, const struct lr_file_rec *r)
{
    return !l->deleted && !r->deleted && l->type == LR_FT_FILE && r->type == LR_FT_FILE;
}

/* +1/-1 when both devices' strategies name the same version, else 0. */
static int strategy_winner(const struct lr_sync_sides *sd, const struct lr_file_rec *l,
                           const struct lr_file_rec *r)
{
    if (!sd || !strategy_applies(l, r))
        return 0;
    int a = pick(&sd->local, true, l, r);
    int b = pick(&sd->remote, false, l, r);
    return a == b ? a : 0;
}

/* Which kind of conflict two concurrent versions of different content are. */
static enum lr_sync_conflict conflict_kind(const struct lr_file_rec *local,
                                           const struct lr_file_rec *remote)
{
    if (local->deleted || remote->deleted)
        return LR_SYNC_CONFLICT_MODIFY_DELETE;
    if (local->type != remote->type)
        return LR_SYNC_CONFLICT_TYPE;
    return LR_SYNC_CONFLICT_CONTENT;
}

/* Name the conflict copy of the live loser `lose` in d; a name too long for
 * the copy sends the loser to the versions archive instead. On error d is
 * released. */
static int name_copy(const struct lr_file_rec *lose, struct lr_sync_decision *d, struct lr_err *err)
{
    int rc =
        lr_sync_conflict_name(lose->path, lose->path_len, lose->mtime_ns,
                              lr_sync_vv_author(&lose->vv), &d->copy_path, &d->copy_path_len, NULL);
    if (rc == LR_ETOOBIG) {
        d->flags |= LR_SYNC_F_ARCHIVE_LOSER;
        return 0;
    }
    if (rc < 0) {
        lr_sync_decision_release(d);
        return fail_path(err, rc, "no conflict copy name", lose);
    }
    return 0;
}

/* A concurrent pair whose local version yields (LR_SYNC_F_YIELDED): the
 * remote one wins, stored with its own vector. `d` is the decision so far. */
static int yield(const struct lr_file_rec *local, const struct lr_file_rec *remote,
                 struct lr_sync_decision *d, struct lr_sync_decision *out, struct lr_err *err)
{
    d->flags |= LR_SYNC_F_YIELDED;
    snprintf(d->strategy, sizeof(d->strategy), "receive-only"); /* what decided, for the trail */
    lr_vv_copy(&d->vv, &remote->vv);
    if (lr_sync_same_content(local, remote)) {
        d->action = LR_SYNC_TAKE_REMOTE;
        if (lr_sync_meta_differs(local, remote))
            d->conflict = LR_SYNC_CONFLICT_METADATA;
    } else {
        d->action = LR_SYNC_CONFLICT;
        d->conflict = conflict_kind(local, remote);
        /* Deleting archives a regular file anyway (a symlink is not
         * archived: it becomes the copy); a directory's children are
         * entries of their own and stay (set_apply: only if empty). */
        if (!local->deleted && local->type != LR_FT_DIR) {
            if (remote->deleted && local->type == LR_FT_FILE) {
                d->flags |= LR_SYNC_F_ARCHIVE_LOSER;
            } else {
                int rc = name_copy(local, d, err);
                if (rc < 0)
                    return rc;
                d->copy_here = d->copy_path != NULL;
            }
        }
    }
    set_apply(local, remote, d);
    d->from_remote = true;
    d->new_live = !remote->deleted;
    d->new_type = remote->type;
    *out = *d;
    return (int)d->action;
}

/*
 * Whether version `a` has seen version `b` itself: a's vector holds b's
 * author at b's own counter or later. A version is named by its author and
 * the counter that author gave it, so a's lineage holds b's content, or
 * held it as a conflict's loser and kept it as a copy or archive. Two
 * concurrent vectors where only one side saw the other's version are not a
 * conflict: the entries the other holds beyond it came from merges (a
 * conflict's loser, kept already; the same content), and the version that
 * saw is simply newer. The case this is for: a conflict's loser stores the
 * winner with the merged vector, and the winner's device, editing again
 * before it hears of that, makes a version concurrent with the merge.
 * Taken for a conflict, the loser's device made a copy of the winner's
 * earlier content for every such edit (black-box: saves every 10 ms after
 * one conflict made 9-22 copies).
 */
static bool seen_version(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    /* Only a known author names a version: one derived from the largest
     * counter may be a conflict's loser, merged in (review: a real
     * concurrent edit was then taken as newer, the loser only archived). */
    uint64_t author = b->vv.author;
    uint64_t c = author ? lr_vv_get(&b->vv, author) : 0;
    return c && lr_vv_get(&a->vv, author) >= c;
}

/* The remote version saw ours (seen_version) and ours did not see it:
 * take it as a newer one, with the merged vector (what ours held beyond it
 * must stay dominated: a stale copy of a conflict's loser elsewhere), its
 * author the remote's. */
static int superseded(const struct lr_file_rec *local, const struct lr_file_rec *remote,
                      struct lr_sync_decision *d, struct lr_sync_decision *out, struct lr_err *err)
{
    int rc = lr_sync_vv_merge(&local->vv, &remote->vv, &d->vv);
    if (rc < 0)
        return fail_path(err, rc, "merged version vector over the entry limit", remote);
    d->vv.author = lr_sync_vv_merged_author(&d->vv, &remote->vv);
    d->action = LR_SYNC_TAKE_REMOTE;
    set_apply(local, remote, d);
    d->from_remote = true;
    d->new_live = !remote->deleted;
    d->new_type = remote->type;
    *out = *d;
    return LR_SYNC_TAKE_REMOTE;
}

int lr_sync_decide(const struct lr_file_rec *local, const struct lr_file_rec *remote,
                   struct lr_sync_decision *out, struct lr_err *err)
{
    return lr_sync_decide_with(local, remote, NULL, out, err);
}

int lr_sync_decide_with(const struct lr_file_rec *local, const struct lr_file_rec *remote,
                        const struct lr_sync_sides *sides, struct lr_sync_decision *out,
                        struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!remote)
        return lr_err_set(err, LR_EUSAGE, "sync decide: no remote record");
    if (local && cmp_bytes(local->path, local->path_len, remote->path, remote->path_len) != 0)
        return lr_err_set(err, LR_EUSAGE, "sync decide: local and remote records name two paths");

    struct lr_sync_decision d = {0};
    if (sides)
        lr_sync_strategy_format(&sides->local, d.strategy);
    else
        snprintf(d.strategy, sizeof(d.strategy), "keep-both");
    d.old_live = local && !local->deleted;
    d.old_type = local ? local->type : LR_FT_FILE;
    d.new_live = d.old_live;
    d.new_type = d.old_type;

    if (!known_type(remote->type)) {
        d.flags = LR_SYNC_F_UNKNOWN_TYPE;
        *out = d;
        return LR_SYNC_NOTHING;
    }

    /* No local record is older than any remote one, even one with an empty vector. */
    enum lr_vv_order ord = local ? lr_vv_compare(&local->vv, &remote->vv) : LR_VV_LESS;
    const struct lr_file_rec *win = NULL;
    int rc;

    switch (ord) {
    case LR_VV_EQUAL:
        if (!lr_sync_same_content(local, remote) || lr_sync_meta_differs(local, remote) ||
            local->type != remote->type)
            d.flags |= LR_SYNC_F_INCONSISTENT;
        d.action = LR_SYNC_NOTHING;
        *out = d;
        return LR_SYNC_NOTHING;
    case LR_VV_GREATER:
        d.action = LR_SYNC_NOTHING;
        *out = d;
        return LR_SYNC_NOTHING;
    case LR_VV_LESS:
        d.action = LR_SYNC_TAKE_REMOTE;
        lr_vv_copy(&d.vv, &remote->vv);
        win = remote;
        set_apply(local, remote, &d);
        break;
    case LR_VV_CONCURRENT: {
        if (sides && sides->local_yields)
            return yield(local, remote, &d, out, err);
        if (!lr_sync_same_content(local, remote)) {
            bool remote_saw = seen_version(remote, local), local_saw = seen_version(local, remote);
            if (local_saw && !remote_saw) {
                d.action = LR_SYNC_NOTHING; /* ours supersedes theirs: they take it */
                d.flags |= LR_SYNC_F_SUPERSEDES;
                *out = d;
                return LR_SYNC_NOTHING;
            }
            if (remote_saw && !local_saw)
                return superseded(local, remote, &d, out, err);
        }
        if (sides && sides->remote_unknown && sides->local.kind != LR_STRAT_KEEP_BOTH &&
            strategy_applies(local, remote) &&
            (!lr_sync_same_content(local, remote) || lr_sync_meta_differs(local, remote))) {
            d.flags |= LR_SYNC_F_DEFERRED;
            *out = d;
            return LR_SYNC_NOTHING;
        }
        rc = lr_sync_vv_merge(&local->vv, &remote->vv, &d.vv);
        if (rc < 0)
            return fail_path(err, rc, "merged version vector over the entry limit", remote);
        int sw = strategy_winner(sides, local, remote);
        int c = sw ? sw : version_cmp(local, remote);
        /* c == 0 only for identical versions (no winner to pick); keep local */
        win = c >= 0 ? local : remote;
        d.by_strategy = sw != 0;
        const struct lr_file_rec *lose = win == local ? remote : local;
        if (lr_sync_same_content(local, remote)) {
            d.action = LR_SYNC_MERGE_VV;
            if (lr_sync_meta_differs(local, remote))
                d.conflict = LR_SYNC_CONFLICT_METADATA;
        } else {
            d.action = LR_SYNC_CONFLICT;
            d.conflict = conflict_kind(local, remote);
            /* a tombstone needs no copy; a directory never loses to a non-directory;
             * a strategy's loser is kept by the versions archive alone */
            if (d.by_strategy) {
                d.flags |= LR_SYNC_F_ARCHIVE_LOSER;
            } else if (!lose->deleted && lose->type != LR_FT_DIR) {
                if ((rc = name_copy(lose, &d, err)) < 0)
                    return rc;
                d.copy_here = d.copy_path && lose == local;
            }
        }
        if (win == remote) {
            /* The merged vector is the winner's version: its author, not
             * the larger of the two (lr_sync_vv_merge), names it; unknown
             * if the winner's is (a derived one, stored, would pass for
             * known: seen_version). */
            if (d.action == LR_SYNC_CONFLICT)
                d.vv.author = lr_sync_vv_merged_author(&d.vv, &remote->vv);
            set_apply(local, remote, &d);
        } else if (d.action == LR_SYNC_MERGE_VV) {
            d.apply = LR_SYNC_APPLY_RECORD; /* local stays; store it with the merged vector */
        } else {
            /*
             * The winner's holder changes nothing, not even its vector: a
             * merged vector here would reach the loser's holder as a plain
             * newer version and overwrite the loser before anyone had made
             * its copy. The loser's holder merges when it resolves.
             */
            d.apply = LR_SYNC_APPLY_NONE;
            lr_vv_release(&d.vv);
            *out = d;
            return LR_SYNC_CONFLICT;
        }
        break;
    }
    }
    d.from_remote = win == remote;
    d.new_live = !win->deleted;
    d.new_type = win->type;
    *out = d;
    return (int)d.action;
}

/* ---- conflict copy names ---------------------------------------------------- */

static const char marker_tag[] = ".sync-conflict-";
#define TAG_LEN (sizeof(marker_tag) - 1)

static bool is_b32(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* A marker starts at s[i] and is followed by the end or an extension's dot. */
static bool marker_at(const uint8_t *s, size_t n, size_t i)
{
    if (n - i < LR_SYNC_MARKER_LEN || memcmp(s + i, marker_tag, TAG_LEN) != 0)
        return false;
    const uint8_t *p = s + i + TAG_LEN;
    for (size_t k = 0; k < 8 + 1 + 6 + 1 + 7; k++) {
        bool ok;
        if (k == 8 || k == 15)
            ok = p[k] == '-';
        else if (k < 15)
            ok = is_digit(p[k]);
        else
            ok = is_b32(p[k]);
        if (!ok)
            return false;
    }
    return n - i == LR_SYNC_MARKER_LEN || s[i + LR_SYNC_MARKER_LEN] == '.';
}

/* Start of the last marker in name[0..n), or SIZE_MAX. */
static size_t find_marker(const uint8_t *name, size_t n)
{
    if (n < LR_SYNC_MARKER_LEN)
        return SIZE_MAX;
    for (size_t i = n - LR_SYNC_MARKER_LEN + 1; i-- > 0;)
        if (name[i] == '.' && marker_at(name, n, i))
            return i;
    return SIZE_MAX;
}

static size_t base_start(const uint8_t *path, size_t n)
{
    size_t i = n;
    while (i > 0 && path[i - 1] != '/')
        i--;
    return i;
}

int lr_sync_conflict_name_alt(const uint8_t *copy_path, size_t copy_path_len,
                              const struct lr_hash *content, uint8_t **out, size_t *out_len,
                              struct lr_err *err)
{
    *out = NULL;
    *out_len = 0;
    size_t b = base_start(copy_path, copy_path_len);
    size_t mk = find_marker(copy_path + b, copy_path_len - b);
    if (mk == SIZE_MAX)
        return lr_err_set(err, LR_EBADPATH, "conflict name: no marker");
    if (copy_path_len - b + 7 > LR_SYNC_NAME_MAX || copy_path_len + 7 > LR_INDEX_PATH_MAX)
        return lr_err_set(err, LR_ETOOBIG, "conflict name: no room for a second copy's tag");
    size_t at = b + mk + LR_SYNC_MARKER_LEN;
    char hex[2 * LR_HASH_LEN + 1];
    lr_hex(content->b, 3, hex);
    uint8_t *p = lr_xmalloc(copy_path_len + 7 + 1);
    memcpy(p, copy_path, at);
    p[at] = '.';
    memcpy(p + at + 1, hex, 6);
    memcpy(p + at + 7, copy_path + at, copy_path_len - at);
    p[copy_path_len + 7] = '\0';
    *out = p;
    *out_len = copy_path_len + 7;
    return 0;
}

bool lr_sync_is_conflict_copy(const uint8_t *path, size_t path_len)
{
    size_t b = base_start(path, path_len);
    return find_marker(path + b, path_len - b) != SIZE_MAX;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* The 38-byte marker (+NUL) for a version's mtime and author. */
static void make_marker(int64_t mtime_ns, uint64_t author, char out[LR_SYNC_MARKER_LEN + 1])
{
    int64_t s = mtime_ns / 1000000000;
    if (mtime_ns % 1000000000 < 0)
        s--;
    int64_t days = s / 86400, sod = s % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    unsigned mo, dd;
    civil_from_days(days, &y, &mo, &dd);

    struct lr_device_id id = {{0}};
    for (size_t i = 0; i < 8; i++)
        id.b[i] = (uint8_t)(author >> (56 - 8 * i));
    char dev[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(&id, dev);

    /* int64 nanoseconds span the years 1677..2262: always four digits */
    snprintf(out, LR_SYNC_MARKER_LEN + 1, "%s%04d%02u%02u-%02d%02d%02d-%s", marker_tag, (int)y, mo,
             dd, (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60), dev);
}

int lr_sync_conflict_name(const uint8_t *path, size_t path_len, int64_t mtime_ns, uint64_t author,
                          uint8_t **out, size_t *out_len, struct lr_err *err)
{
    *out = NULL;
    *out_len = 0;
    size_t dir_len = base_start(path, path_len);
    if (path_len == 0 || dir_len == path_len)
        return lr_err_set(err, LR_EBADPATH, "conflict name: empty file name");
    const uint8_t *base = path + dir_len;
    size_t base_len = path_len - dir_len;

    /* stem = the name before the marker, ext = ".EXT" or "" (both point into base) */
    const uint8_t *stem = base, *ext;
    size_t stem_len, ext_len;
    size_t mk = find_marker(base, base_len);
    if (mk != SIZE_MAX) {
        stem_len = mk;
        ext = base + mk + LR_SYNC_MARKER_LEN;
        ext_len = base_len - mk - LR_SYNC_MARKER_LEN;
    } else {
        size_t dot = base_len;
        while (dot > 0 && base[dot - 1] != '.')
            dot--;
        size_t lead = 0; /* leading dots: ".bashrc" is a name, not an extension */
        while (lead < base_len && base[lead] == '.')
            lead++;
        if (dot > 0 && dot - 1 >= lead && dot < base_len) {
            stem_len = dot - 1;
            ext = base + dot - 1;
            ext_len = base_len - stem_len;
        } else {
            stem_len = base_len;
            ext = base + base_len;
            ext_len = 0;
        }
    }

    if (dir_len >= LR_INDEX_PATH_MAX)
        return lr_err_set(err, LR_ETOOBIG, "conflict name: directory part too long");
    size_t budget = LR_INDEX_PATH_MAX - dir_len;
    if (budget > LR_SYNC_NAME_MAX)
        budget = LR_SYNC_NAME_MAX;

    /* When the extension must fold into the stem, stem and ext may not be
     * adjacent in base (a marker sat between them): join them here. */
    uint8_t *joined = NULL;
    if (stem_len + LR_SYNC_MARKER_LEN + ext_len > budget &&
        budget < LR_SYNC_MARKER_LEN + ext_len + 1 && ext_len > 0) {
        joined = lr_xmalloc(stem_len + ext_len + 1);
        memcpy(joined, stem, stem_len);
        memcpy(joined + stem_len, ext, ext_len);
        stem = joined;
        stem_len += ext_len;
        ext_len = 0;
    }
    if (stem_len + LR_SYNC_MARKER_LEN + ext_len > budget) {
        if (budget < LR_SYNC_MARKER_LEN + ext_len + 1) {
            free(joined);
            return lr_err_set(err, LR_ETOOBIG, "conflict name: no room for a name");
        }
        size_t keep = budget - LR_SYNC_MARKER_LEN - ext_len;
        if (lr_utf8_valid(stem, stem_len))
            while (keep > 0 && (stem[keep] & 0xC0) == 0x80)
                keep--;
        if (keep == 0) {
            free(joined);
            return lr_err_set(err, LR_ETOOBIG, "conflict name: no room for a name");
        }
        stem_len = keep;
    }

    char marker[LR_SYNC_MARKER_LEN + 1];
    make_marker(mtime_ns, author, marker);
    size_t n = dir_len + stem_len + LR_SYNC_MARKER_LEN + ext_len;
    uint8_t *p = lr_xmalloc(n + 1);
    memcpy(p, path, dir_len);
    memcpy(p + dir_len, stem, stem_len);
    memcpy(p + dir_len + stem_len, marker, LR_SYNC_MARKER_LEN);
    memcpy(p + dir_len + stem_len + LR_SYNC_MARKER_LEN, ext, ext_len);
    p[n] = '\0';
    free(joined);
    *out = p;
    *out_len = n;
    return 0;
}
