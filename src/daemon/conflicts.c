/*
 * conflicts.c - audit trail recording, `conflicts`, the conflict copy count,
 * `versions` and `restore` (conflicts.h, docs/conflicts.md).
 */
#include "daemon/conflicts.h"

#include "daemon/daemon_int.h"
#include "daemon/sync.h"
#include "hash/hash.h"
#include "store/store.h"
#include "sync/decide.h"
#include "util/timens.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "conflict"
/* Rows one `conflicts` answer lists at most (every folder's bounded trail). */
#define LIST_TOTAL_MAX 50000

/* ---- events queued by jobs for the loop ------------------------------------ */

struct pending_ev {
    struct pending_ev *next;
    struct lr_daemon *d;
    json_t *ev;
};

/* Jobs run on libuv's pool and daemon_event() belongs to the loop, so a job
 * hands its events over here; the daemon has no slot for module state, and
 * the queue is keyed by daemon so several daemons in one process work. */
static pthread_mutex_t pend_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pending_ev *pend_head, *pend_tail;
static size_t pend_n;
static uint64_t pend_dropped;

static void pend_push(struct lr_daemon *d, json_t *ev)
{
    struct pending_ev *p = lr_xcalloc(1, sizeof(*p));
    p->d = d;
    p->ev = ev;
    pthread_mutex_lock(&pend_mu);
    if (pend_n >= DAEMON_CONFLICT_EVENTS_MAX) {
        pend_dropped++;
        pthread_mutex_unlock(&pend_mu);
        json_decref(ev);
        free(p);
        return;
    }
    if (pend_tail)
        pend_tail->next = p;
    else
        pend_head = p;
    pend_tail = p;
    pend_n++;
    pthread_mutex_unlock(&pend_mu);
}

void daemon_conflicts_flush(struct lr_daemon *d)
{
    struct pending_ev *mine = NULL, **tail = &mine;
    uint64_t dropped;
    pthread_mutex_lock(&pend_mu);
    struct pending_ev **pp = &pend_head;
    pend_tail = NULL;
    while (*pp) {
        struct pending_ev *p = *pp;
        if (p->d == d) {
            *pp = p->next;
            p->next = NULL;
            *tail = p;
            tail = &p->next;
            pend_n--;
        } else {
            pend_tail = p;
            pp = &p->next;
        }
    }
    dropped = pend_dropped;
    pend_dropped = 0;
    pthread_mutex_unlock(&pend_mu);
    if (dropped)
        lr_warn(MOD, "%llu conflict events dropped (more than %d queued)",
                (unsigned long long)dropped, DAEMON_CONFLICT_EVENTS_MAX);
    while (mine) {
        struct pending_ev *p = mine;
        mine = p->next;
        daemon_event(d, p->ev);
        free(p);
    }
}

/* ---- JSON ------------------------------------------------------------------- */

static void iso_time(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, n, "%lld", (long long)t);
        return;
    }
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The contract's record: {"folder", "path", "type", "strategy", "resolution",
 * "kept_path", "kept": [{"device", "path"}], "devices", "time"} plus "id",
 * "detail", "winner" and "archive_path". */
static json_t *conflict_json(const struct lr_conflict_rec *c)
{
    char when[40];
    iso_time(c->time_s, when, sizeof(when));
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)c->id));
    json_object_set_new(o, "folder", lr_json_lossy(c->folder, strlen(c->folder)));
    lr_json_set_path(o, "path", c->path, c->path_len);
    json_object_set_new(o, "type", json_string(c->type));
    json_object_set_new(o, "detail", json_string(c->detail));
    json_object_set_new(o, "strategy", json_string(c->strategy));
    json_object_set_new(o, "resolution", json_string(c->resolution));
    json_object_set_new(o, "winner", json_string(c->winner));
    const uint8_t *kp = c->kept_path ? c->kept_path : c->archive_path;
    size_t kl = c->kept_path ? c->kept_path_len : c->archive_path_len;
    json_t *kept = json_array();
    if (kp) {
        lr_json_set_path(o, "kept_path", kp, kl);
        json_t *k = json_object();
        json_object_set_new(k, "device",
                            c->kept_device ? json_string(c->kept_device) : json_null());
        lr_json_set_path(k, "path", kp, kl);
        json_array_append_new(kept, k);
    } else {
        json_object_set_new(o, "kept_path", json_null());
    }
    json_object_set_new(o, "kept", kept);
    if (c->archive_path)
        lr_json_set_path(o, "archive_path", c->archive_path, c->archive_path_len);
    json_t *devs = json_array();
    const char *s = c->devices;
    while (s && *s) {
        const char *e = strchr(s, ' ');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n)
            json_array_append_new(devs, lr_json_lossy(s, n));
        s = e ? e + 1 : s + n;
    }
    json_object_set_new(o, "devices", devs);
    json_object_set_new(o, "time", json_string(when));
    return o;
}

/* ---- recording (job side) ------------------------------------------------------ */

static const char *type_of(enum lr_sync_conflict c)
{
    switch (c) {
    case LR_SYNC_CONFLICT_METADATA:
        return "metadata";
    case LR_SYNC_CONFLICT_CONTENT:
        return "content";
    case LR_SYNC_CONFLICT_TYPE:
    case LR_SYNC_CONFLICT_MODIFY_DELETE:
        return "structural";
    case LR_SYNC_CONFLICT_NONE:
    default:
        return NULL;
    }
}

static const char *resolution_of(const struct lr_sync_decision *dec)
{
    if (dec->conflict == LR_SYNC_CONFLICT_METADATA)
        return "merged";
    if (dec->copy_path)
        return "copy";
    if (dec->conflict == LR_SYNC_CONFLICT_MODIFY_DELETE)
        return (dec->flags & LR_SYNC_F_ARCHIVE_LOSER) ? "archive" : "modify-wins";
    if (dec->flags & LR_SYNC_F_ARCHIVE_LOSER)
        return "archive";
    return "kept"; /* a loser that needs no keeping (e.g. a directory's vector) */
}

/* Device text for a short ID: the full ID if it is a device we know here
 * (this one, a holder of the other version, or any configured peer: a
 * version relayed by a third device is often a peer's that is not among the
 * holders). */
static void device_text(uint64_t sid, const struct lr_device_id *self,
                        const struct lr_device_id *holders, size_t nholders,
                        const struct lr_device_id *peers, size_t npeers, char *out)
{
    if (lr_device_id_u64(self) == sid) {
        lr_device_id_format(self, out);
        return;
    }
    for (size_t i = 0; i < nholders; i++) {
        if (lr_device_id_u64(&holders[i]) == sid) {
            lr_device_id_format(&holders[i], out);
            return;
        }
    }
    for (size_t i = 0; i < npeers; i++) {
        if (lr_device_id_u64(&peers[i]) == sid) {
            lr_device_id_format(&peers[i], out);
            return;
        }
    }
    struct lr_device_id id = {{0}};
    for (size_t i = 0; i < 8; i++)
        id.b[i] = (uint8_t)(sid >> (56 - 8 * i));
    lr_device_id_short(&id, out);
}

/* A losing version as its conflict copy is named and holds it: content,
 * metadata and author, not the whole vector (the same file re-announced
 * with a vector merged from a third device is the same loss, same copy). */
static void dedup_put_loser(struct lr_buf *b, const struct lr_file_rec *r)
{
    lr_buf_put_u8(b, (uint8_t)r->type);
    lr_buf_put_u8(b, r->deleted);
    lr_buf_put_u32(b, r->mode);
    lr_buf_put_u64(b, (uint64_t)r->mtime_ns);
    lr_buf_put_u64(b, lr_sync_vv_author(&r->vv));
    lr_buf_put(b, r->blocks_hash.b, LR_HASH_LEN);
    lr_buf_put_lbytes(b, r->target ? r->target : (const uint8_t *)"", r->target_len);
}

static void dedup_put_rec(struct lr_buf *b, const struct lr_file_rec *r)
{
    lr_buf_put_u8(b, r ? 1 : 0);
    if (!r)
        return;
    lr_buf_put_u8(b, (uint8_t)r->type);
    lr_buf_put_u8(b, r->deleted);
    lr_buf_put_u32(b, r->mode);
    lr_buf_put_u64(b, (uint64_t)r->mtime_ns);
    lr_buf_put_u64(b, (uint64_t)r->vv.n);
    lr_vv_encode(&r->vv, b);
    lr_buf_put(b, r->blocks_hash.b, LR_HASH_LEN);
    lr_buf_put_lbytes(b, r->target ? r->target : (const uint8_t *)"", r->target_len);
}

void daemon_conflict_note(struct lr_daemon *d, const char *folder, const struct lr_file_rec *local,
                          const struct lr_file_rec *remote, const struct lr_device_id *holders,
                          size_t nholders, const struct lr_device_id *peers, size_t npeers,
                          const struct lr_sync_decision *dec)
{
    const char *type = type_of(dec->conflict);
    if (!type || !remote)
        return;
    bool local_wins = !dec->from_remote;
    const struct lr_file_rec *loser = local_wins ? remote : local;
    const struct lr_file_rec *winner = local_wins ? local : remote;
    /* One losing version is one conflict, however often it is decided
     * again (each round until the vectors merge) and whatever the winner
     * became meanwhile: the key is the loser (dedup_put_loser), the
     * winner's kind only. Keyed on both versions whole, a winner or loser
     * whose vector merged another device's (three devices) was recorded a
     * second time, with the same copy. */
    struct lr_buf b;
    lr_buf_init(&b, SIZE_MAX);
    lr_buf_put_str(&b, "landropic conflict v2");
    lr_buf_put_lbytes(&b, remote->path, remote->path_len);
    lr_buf_put_u8(&b, (uint8_t)dec->conflict);
    if (loser) {
        dedup_put_loser(&b, loser);
        lr_buf_put_u8(&b, winner ? (uint8_t)winner->type : 0xff);
        lr_buf_put_u8(&b, winner ? winner->deleted : 0xff);
    } else {
        dedup_put_rec(&b, local);
        dedup_put_rec(&b, remote);
    }
    struct lr_hash key;
    lr_sha256(b.data, b.len, &key);
    lr_buf_release(&b);

    const struct lr_device_id *self = lr_identity_device_id(d->ident);
    char selfs[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(self, selfs);
    struct lr_buf devs;
    lr_buf_init(&devs, LR_CONFLICT_TEXT_MAX);
    lr_buf_put(&devs, selfs, strlen(selfs));
    for (size_t i = 0; i < nholders; i++) {
        if (lr_device_id_eq(&holders[i], self))
            continue;
        char h[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&holders[i], h);
        lr_buf_printf(&devs, " %s", h);
    }
    lr_buf_put_u8(&devs, 0);

    struct lr_conflict_rec c = {0};
    c.time_s = (int64_t)time(NULL);
    c.folder = (char *)folder;
    c.path = remote->path;
    c.path_len = remote->path_len;
    c.type = (char *)type;
    c.detail = (char *)lr_sync_conflict_str(dec->conflict);
    /* This device's strategy; resolution "archive" with another than
     * keep-both means it decided (no copy), "copy" that it fell back. */
    c.strategy = (char *)(dec->strategy[0] ? dec->strategy : "keep-both");
    c.resolution = (char *)resolution_of(dec);
    c.winner = (char *)(local_wins ? "local" : "remote");
    c.devices = lr_buf_ok(&devs) ? (char *)devs.data : selfs;
    char kd[LR_DEVICE_ID_STRLEN + 1];
    uint8_t *arch = NULL;
    /* A modify-delete loses data only where a receive-only device's own
     * edit yields to a peer's delete (LR_SYNC_F_YIELDED). */
    bool loses_data = dec->conflict == LR_SYNC_CONFLICT_CONTENT ||
                      dec->conflict == LR_SYNC_CONFLICT_TYPE ||
                      (dec->conflict == LR_SYNC_CONFLICT_MODIFY_DELETE && !local_wins);
    if (loses_data && loser && !loser->deleted) {
        device_text(lr_sync_vv_author(&loser->vv), self, holders, nholders, peers, npeers, kd);
        c.kept_device = kd;
        c.kept_path = dec->copy_path;
        c.kept_path_len = dec->copy_path_len;
        if (dec->flags & LR_SYNC_F_KEPT_BY_SENDER) { /* its live file there */
            c.kept_path = remote->path;
            c.kept_path_len = remote->path_len;
        }
        /* The local loser of a regular file is also archived when the winner
         * replaces it (store.h); the store picks the stamp at that moment.
         * A strategy's loser is kept only there: on the winner's device the
         * entry names the archive of the loser's holder. */
        if ((!local_wins || dec->by_strategy) && loser->type == LR_FT_FILE) {
            arch = (uint8_t *)lr_xasprintf("%s/%s~", LR_STORE_VERSIONS, (const char *)loser->path);
            c.archive_path = arch;
            c.archive_path_len = strlen((const char *)arch);
        }
    }
    struct lr_err err = {0};
    int64_t added = 0;
    int rc = lr_index_conflict_put(d->ix, &c, &key, &added, &err);
    if (rc < 0) {
        char *e = lr_esc(remote->path, remote->path_len);
        lr_warn(MOD, "folder=%s path=%s conflict not recorded: %s", folder, e,
                lr_err_msg(&err, rc));
        free(e);
    } else if (added) {
        c.id = added; /* the event carries the record as `conflicts` lists it */
        char *e = lr_esc(remote->path, remote->path_len);
        char *k = c.kept_path ? lr_esc(c.kept_path, c.kept_path_len) : NULL;
        lr_info(MOD,
                "folder=%s path=%s conflict type=%s detail=%s strategy=%s resolution=%s "
                "winner=%s kept=%s",
                folder, e, c.type, c.detail, c.strategy, c.resolution, c.winner, k ? k : "-");
        free(e);
        free(k);
        json_t *rec = conflict_json(&c);
        json_t *ev = json_pack("{s:s, s:o}", "type", "conflict", "conflict", rec);
        json_object_set_new(ev, "folder", lr_json_lossy(folder, strlen(folder)));
        pend_push(d, ev);
    }
    free(arch);
    lr_buf_release(&devs);
}

void daemon_conflict_clash(struct lr_daemon *d, const char *folder, const uint8_t *path,
                           size_t path_len, size_t prefix_len, const char *existing)
{
    if (prefix_len == 0 || prefix_len > path_len || !existing || !*existing)
        return;
    size_t elen = strlen(existing);
    /* One entry per pair of spellings, whatever is retried below them. */
    struct lr_buf b;
    lr_buf_init(&b, SIZE_MAX);
    lr_buf_put_str(&b, "landropic case clash v1");
    lr_buf_put_lbytes(&b, path, prefix_len);
    lr_buf_put_lbytes(&b, existing, elen);
    struct lr_hash key;
    lr_sha256(b.data, b.len, &key);
    lr_buf_release(&b);

    const struct lr_device_id *self = lr_identity_device_id(d->ident);
    char selfs[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(self, selfs);
    struct lr_buf devs;
    lr_buf_init(&devs, LR_CONFLICT_TEXT_MAX);
    lr_buf_put(&devs, selfs, strlen(selfs));
    struct lr_device_list peers = {0};
    if (lr_index_remote_peers(d->ix, folder, &peers, NULL) == 0) {
        for (size_t i = 0; i < peers.n; i++) {
            struct lr_remote_rec r;
            if (lr_device_id_eq(&peers.v[i], self) ||
                lr_index_remote_get(d->ix, folder, &peers.v[i], path, path_len, 0, &r, NULL) < 0)
                continue;
            bool holds = !r.rec.deleted;
            lr_remote_rec_release(&r);
            if (holds) {
                char h[LR_DEVICE_ID_STRLEN + 1];
                lr_device_id_format(&peers.v[i], h);
                lr_buf_printf(&devs, " %s", h);
            }
        }
    }
    lr_device_list_release(&peers);
    lr_buf_put_u8(&devs, 0);

    struct lr_conflict_rec c = {0};
    c.time_s = (int64_t)time(NULL);
    c.folder = (char *)folder;
    c.path = lr_xmalloc(prefix_len + 1);
    memcpy(c.path, path, prefix_len);
    c.path[prefix_len] = 0;
    c.path_len = prefix_len;
    c.type = (char *)"structural";
    c.detail = (char *)"case-clash";
    c.strategy = (char *)"none"; /* no strategy applies: nothing is replaced */
    c.resolution = (char *)"not-applied";
    c.winner = (char *)"local";
    c.devices = lr_buf_ok(&devs) ? (char *)devs.data : selfs;
    c.kept_path = (uint8_t *)(uintptr_t)existing;
    c.kept_path_len = elen;
    struct lr_err err = {0};
    int64_t added = 0;
    int rc = lr_index_conflict_put(d->ix, &c, &key, &added, &err);
    char *e = lr_esc(c.path, c.path_len);
    if (rc < 0) {
        lr_warn(MOD, "folder=%s path=%s case clash not recorded: %s", folder, e,
                lr_err_msg(&err, rc));
    } else if (added) {
        c.id = added; /* the event carries the record as `conflicts` lists it */
        char *k = lr_esc(existing, elen);
        lr_warn(MOD,
                "folder=%s path=%s conflict type=structural detail=case-clash existing=%s: "
                "not applied (the folder ignores case or Unicode normalisation)",
                folder, e, k);
        free(k);
        json_t *rec = conflict_json(&c);
        json_t *ev = json_pack("{s:s, s:o}", "type", "conflict", "conflict", rec);
        json_object_set_new(ev, "folder", lr_json_lossy(folder, strlen(folder)));
        pend_push(d, ev);
    }
    free(e);
    free(c.path);
    lr_buf_release(&devs);
}

/* ---- loop side: a read connection of our own ---------------------------------- */

static int ro_open(struct lr_daemon *d, struct lr_index **ix, struct lr_err *err)
{
    char *db = lr_xasprintf("%s/index.db", d->opts->home);
    int rc = lr_index_open(db, ix, err);
    free(db);
    return rc;
}

uint64_t daemon_conflict_copies(struct lr_daemon *d, const char *folder)
{
    struct lr_index *ix = NULL;
    struct lr_err err = {0};
    uint64_t n = 0;
    int rc = ro_open(d, &ix, &err);
    if (rc == 0)
        rc = lr_index_conflict_copies(ix, folder, lr_sync_is_conflict_copy, &n, &err);
    if (rc < 0 && rc != LR_ENOTFOUND)
        lr_warn(MOD, "folder=%s conflict copies not counted: %s", folder, lr_err_msg(&err, rc));
    lr_index_close(ix);
    return rc < 0 ? 0 : n;
}

void daemon_m_conflicts(struct lr_daemon *d, struct lr_api_req *req, const char *folder)
{
    struct lr_index *ix = NULL;
    struct lr_err err = {0};
    int rc = ro_open(d, &ix, &err);
    if (rc < 0) {
        lr_api_reply_rc(req, rc, &err);
        return;
    }
    json_t *arr = json_array();
    int64_t after = 0;
    bool truncated = false;
    for (;;) {
        struct lr_conflict_list l;
        rc = lr_index_conflict_list(ix, folder, NULL, 0, after, LR_CONFLICT_LIST_MAX, &l, &err);
        if (rc < 0)
            break;
        for (size_t i = 0; i < l.n; i++)
            json_array_append_new(arr, conflict_json(&l.v[i]));
        size_t n = l.n;
        if (n)
            after = l.v[n - 1].id;
        lr_conflict_list_release(&l);
        if (n < LR_CONFLICT_LIST_MAX)
            break;
        if (json_array_size(arr) >= LIST_TOTAL_MAX) {
            truncated = true;
            break;
        }
    }
    lr_index_close(ix);
    if (rc == 0 && folder && json_array_size(arr) == 0 && !lr_config_find_folder(d->cfg, folder)) {
        char *e = lr_escs(folder);
        lr_api_reply_error(req, "notfound", 1, "no folder with ID '%s'", e);
        free(e);
        json_decref(arr);
        return;
    }
    if (rc < 0) {
        json_decref(arr);
        lr_api_reply_rc(req, rc, &err);
        return;
    }
    json_t *res = json_pack("{s:o}", "conflicts", arr);
    if (truncated)
        json_object_set_new(res, "truncated", json_true());
    lr_api_reply(req, res);
}

/* ---- the versions archive ---------------------------------------------------- */

void daemon_version_list_release(struct daemon_version_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].id);
        free(l->v[i].path);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

static unsigned num(const char *s, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    return v;
}

bool daemon_version_name_parse(const char *name, size_t *leaf_len, int64_t *when, unsigned *seq,
                               bool *cut)
{
    const char *t = strrchr(name, '~');
    if (!t || t == name)
        return false;
    const char *s = t + 1;
    size_t n = strlen(s);
    if (n < 15 || !all_digits(s, 8) || s[8] != '-' || !all_digits(s + 9, 6))
        return false;
    *seq = 0;
    if (n > 15) {
        /* The archive numbers from 1 ("-0", "-01": a user's name). */
        if (s[15] != '-' || n > 25 || s[16] == '0' || !all_digits(s + 16, n - 16))
            return false;
        *seq = num(s + 16, n - 16);
    }
    struct tm tm = {0};
    tm.tm_year = (int)num(s, 4) - 1900;
    tm.tm_mon = (int)num(s + 4, 2) - 1;
    tm.tm_mday = (int)num(s + 6, 2);
    tm.tm_hour = (int)num(s + 9, 2);
    tm.tm_min = (int)num(s + 11, 2);
    tm.tm_sec = (int)num(s + 13, 2);
    /* A date the archive could have written: timegm normalises what is
     * out of range (month 00, day 32), so the fields must come back as
     * given ("00000000-000000" listed as archived in year -1). */
    struct tm given = tm, back;
    time_t tt = timegm(&tm);
    if (tt < 0 || !gmtime_r(&tt, &back) || back.tm_year != given.tm_year ||
        back.tm_mon != given.tm_mon || back.tm_mday != given.tm_mday ||
        back.tm_hour != given.tm_hour || back.tm_min != given.tm_min || back.tm_sec != given.tm_sec)
        return false;
    *when = (int64_t)tt;
    *leaf_len = (size_t)(t - name);
    /* "<cut leaf>~<8 hex>~stamp": the archive's form for an over-long leaf,
     * which fills NAME_MAX but for a split UTF-8 character (at most 3 bytes
     * short); a shorter "name~deadbeef" is a user's own name. */
    *cut = false;
    if (*leaf_len > 9 && name[*leaf_len - 9] == '~' && strlen(name) + 3 >= NAME_MAX) {
        *cut = true;
        for (size_t i = *leaf_len - 8; i < *leaf_len; i++)
            if (!strchr("0123456789abcdef", name[i]) || !name[i])
                *cut = false;
    }
    return true;
}

/*
 * Whether an archived name whose leaf part is name[0, leaf_len) holds
 * versions of `want`: the same leaf, or (cut) the archive's form of an
 * over-long leaf, "<want cut at a UTF-8 boundary>~<its SHA-256's first 8
 * hex digits>" (store.c archive_name), so a long name is found by itself.
 */
static bool leaf_matches(const char *want, const char *name, size_t leaf_len, bool cut)
{
    size_t wl = strlen(want);
    if (wl == leaf_len && memcmp(want, name, leaf_len) == 0)
        return true;
    size_t keep = cut ? leaf_len - 9 : 0;
    if (!cut || wl <= keep || memcmp(want, name, keep) != 0)
        return false;
    struct lr_hash h;
    char hx[LR_HASH_HEX_LEN + 1];
    lr_sha256(want, wl, &h);
    lr_hash_hex(&h, hx);
    return memcmp(hx, name + keep + 1, 8) == 0;
}

struct walk {
    struct daemon_version_list *out;
    size_t cap;
    const char *only_leaf; /* this leaf only (non-recursive walk of its directory) */
    size_t dirs;           /* directories opened: bounded too (empty mirrors cost a walk) */
};

static int walk_dir(struct walk *w, int dfd, const char *rel, int depth, bool recurse,
                    struct lr_err *err)
{
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        int e = errno;
        close(dfd);
        return lr_err_set(err, -e, "versions archive %s: %s", rel, strerror(e));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(dir))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile */
        char *sub = lr_xasprintf("%s%s%s", rel, *rel ? "/" : "", name);
        if (S_ISDIR(st.st_mode) && recurse && depth < DAEMON_VERSIONS_DEPTH) {
            if (++w->dirs > DAEMON_VERSIONS_MAX) {
                w->out->truncated = true;
                free(sub);
                break;
            }
            int fd = openat(dirfd(dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0)
                rc = walk_dir(w, fd, sub, depth + 1, true, err);
        } else if (S_ISREG(st.st_mode)) {
            size_t leaf_len;
            int64_t when;
            unsigned seq;
            bool cut;
            if (daemon_version_name_parse(name, &leaf_len, &when, &seq, &cut) &&
                (!w->only_leaf || leaf_matches(w->only_leaf, name, leaf_len, cut))) {
                if (w->out->n >= DAEMON_VERSIONS_MAX) {
                    w->out->truncated = true;
                    free(sub);
                    break;
                }
                if (w->out->n == w->cap) {
                    w->cap = w->cap ? w->cap * 2 : 64;
                    w->out->v = lr_xreallocarray(w->out->v, w->cap, sizeof(*w->out->v));
                }
                struct daemon_version *v = &w->out->v[w->out->n++];
                memset(v, 0, sizeof(*v));
                v->id = sub;
                sub = NULL;
                /* Listed under the leaf asked for: a cut name's full one. */
                size_t dlen = strlen(v->id) - strlen(name);
                const char *leaf = w->only_leaf ? w->only_leaf : name;
                size_t llen = w->only_leaf ? strlen(w->only_leaf) : leaf_len;
                v->path_len = dlen + llen;
                v->path = lr_xmalloc(v->path_len + 1);
                memcpy(v->path, v->id, dlen);
                memcpy(v->path + dlen, leaf, llen);
                v->path[v->path_len] = 0;
                v->cut = cut;
                v->size = (uint64_t)st.st_size;
                v->mtime_s = (int64_t)st.st_mtim.tv_sec;
                v->archived_s = when;
                v->seq = seq;
            }
        }
        free(sub);
    }
    closedir(dir);
    return rc;
}

int daemon_versions_open(const char *root, int *out, struct lr_err *err)
{
    *out = -1;
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0 && errno == ENOENT) /* not "no archive": a disk not mounted */
        return lr_err_set(err, LR_ENOMARKER, "folder root %s is missing (%s)", root,
                          strerror(errno));
    if (rfd < 0)
        return lr_err_set(err, -errno, "folder root %s: %s", root, strerror(errno));
    int mfd = openat(rfd, LR_STORE_MARKER, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(rfd);
    if (mfd < 0)
        return lr_err_set(err, LR_ENOMARKER, "folder %s has no %s marker (%s)", root,
                          LR_STORE_MARKER, strerror(e));
    int vfd = openat(mfd, "versions", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    e = errno;
    close(mfd);
    if (vfd < 0)
        return e == ENOENT ? -ENOENT
                           : lr_err_set(err, -e, "versions archive of %s: %s", root, strerror(e));
    *out = vfd;
    return 0;
}

/* Open directory `rel` (may be "") beneath dfd one component at a time, never
 * through a symlink. Consumes nothing; the result is a new descriptor. */
static int open_beneath(int dfd, const char *rel, int *out)
{
    *out = -1;
    int cur = dup(dfd);
    if (cur < 0)
        return -errno;
    char *copy = lr_xstrdup(rel);
    char *p = copy;
    while (*p) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = 0;
        int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(cur);
        if (next < 0) {
            free(copy);
            return -e;
        }
        cur = next;
        if (!slash)
            break;
        p = slash + 1;
    }
    free(copy);
    *out = cur;
    return 0;
}

static int cmp_version(const void *a, const void *b)
{
    const struct daemon_version *x = a, *y = b;
    int c = lr_index_path_cmp(x->path, x->path_len, y->path, y->path_len);
    if (c)
        return c;
    if (x->archived_s != y->archived_s)
        return x->archived_s < y->archived_s ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return strcmp(x->id, y->id);
}

int daemon_versions_list(const char *root, const char *path, struct daemon_version_list *out,
                         struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int vfd;
    int rc = daemon_versions_open(root, &vfd, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    struct walk w = {.out = out};
    if (!path) {
        rc = walk_dir(&w, vfd, "", 0, true, err);
        vfd = -1;
    } else {
        /* The path's own versions sit in its directory's mirror... */
        const char *slash = strrchr(path, '/');
        char *dir = slash ? lr_xstrndup(path, (size_t)(slash - path)) : lr_xstrdup("");
        int dfd;
        if (open_beneath(vfd, dir, &dfd) == 0) {
            w.only_leaf = slash ? slash + 1 : path;
            rc = walk_dir(&w, dfd, dir, 0, false, err);
            w.only_leaf = NULL;
        }
        free(dir);
        /* ...and a directory's are everything below its mirror. */
        if (rc == 0 && open_beneath(vfd, path, &dfd) == 0)
            rc = walk_dir(&w, dfd, path, 0, true, err);
    }
    if (vfd >= 0)
        close(vfd);
    if (rc < 0) {
        daemon_version_list_release(out);
        return rc;
    }
    if (out->n)
        qsort(out->v, out->n, sizeof(*out->v), cmp_version);
    return 0;
}

/* Whether a conflict copy at kept_path (if it is one) holds a version with
 * the archived version's mtime: its marker's YYYYMMDD-HHMMSS is the loser's
 * mtime (decide.h), so a version archived beside the conflict (the plain
 * update before it, the other side of a same-second pair) is not taken for
 * its loser. A kept_path without a marker (an archive prefix) says nothing. */
static bool copy_matches(const struct lr_conflict_rec *c, int64_t mtime_s)
{
    static const char tag[] = ".sync-conflict-";
    const uint8_t *kp = c->kept_path;
    size_t n = c->kept_path_len, at = SIZE_MAX;
    for (size_t i = 0; kp && i + sizeof(tag) - 1 <= n; i++)
        if (memcmp(kp + i, tag, sizeof(tag) - 1) == 0)
            at = i + sizeof(tag) - 1;
    if (at == SIZE_MAX || at + 15 > n)
        return true;
    time_t t = (time_t)mtime_s;
    struct tm tm;
    char stamp[32];
    if (!gmtime_r(&t, &tm) || strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm) != 15)
        return true;
    return memcmp(kp + at, stamp, 15) == 0;
}

/* Why a version was archived, from the audit trail (`l`: the path's conflicts). */
/* o.why, and o.why_b64 when the copy's name is not UTF-8 (util/jsonx.h:
 * human output shows its bytes escaped, not U+FFFD). */
static void set_why(json_t *o, const struct daemon_version *v, const struct lr_conflict_list *l)
{
    const struct lr_conflict_rec *best = NULL;
    int64_t best_gap = INT64_MAX;
    for (size_t i = 0; i < l->n; i++) {
        const struct lr_conflict_rec *c = &l->v[i];
        /* A conflict's loser is archived when the winner lands: shortly after
         * the conflict was recorded (the winner may still have to download).
         * Of several, the one nearest in time whose copy holds this mtime. */
        int64_t gap = v->archived_s - c->time_s;
        if (!c->archive_path || gap < -2 || gap > 3600 || !copy_matches(c, v->mtime_s))
            continue;
        if (gap < 0)
            gap = -gap;
        if (gap <= best_gap) {
            best = c;
            best_gap = gap;
        }
    }
    if (!best) {
        json_object_set_new(o, "why",
                            json_string("replaced or deleted by a change from a peer, or by a "
                                        "restore"));
        return;
    }
    char *s = lr_xasprintf("lost a %s conflict (%s)%s", best->type, best->detail,
                           best->kept_path ? "; also kept as " : "");
    size_t n = strlen(s);
    if (best->kept_path) {
        s = lr_xrealloc(s, n + best->kept_path_len + 1);
        memcpy(s + n, best->kept_path, best->kept_path_len);
        n += best->kept_path_len;
        s[n] = 0;
    }
    lr_json_set_path(o, "why", s, n);
    free(s);
}

/*
 * The audit trail's rows whose leaf the archive would cut (longer than
 * NAME_MAX with the shortest stamp): few, read once per listing that needs
 * them. A whole-archive listing names a cut entry by its cut path, which no
 * row names, so its `why` comes from these (as a listing by the full path
 * finds it), not the generic text (black-box round 21).
 */
static void long_leaf_conflicts(struct lr_index *ix, const char *folder,
                                struct lr_conflict_list *out)
{
    /* The longest stamp (store.c archive_name: "-N" for a second version
     * archived in the same second); leaf_matches does the exact check. */
    static const size_t max_suffix = sizeof("~YYYYMMDD-HHMMSS-99999") - 1;
    int64_t after = 0;
    for (;;) {
        struct lr_conflict_list page = {0};
        if (lr_index_conflict_list(ix, folder, NULL, 0, after, LR_CONFLICT_LIST_MAX, &page, NULL) <
            0)
            return;
        /* Before rows are moved out (zeroed): the next page starts after it. */
        bool more = page.n == LR_CONFLICT_LIST_MAX;
        if (page.n)
            after = page.v[page.n - 1].id;
        for (size_t i = 0; i < page.n; i++) {
            struct lr_conflict_rec *c = &page.v[i];
            const uint8_t *slash = memrchr(c->path, '/', c->path_len);
            size_t leaf = slash ? c->path_len - (size_t)(slash + 1 - c->path) : c->path_len;
            if (leaf + max_suffix <= NAME_MAX)
                continue;
            out->v = lr_xappendarray(out->v, out->n, sizeof(*out->v));
            out->v[out->n++] = *c;
            memset(c, 0, sizeof(*c)); /* moved */
        }
        lr_conflict_list_release(&page);
        if (!more)
            return;
    }
}

/* Of `longs`, the rows of the full path a cut entry (v->id) was archived
 * from, borrowed into *view (free view->v only). */
static void cut_entry_conflicts(const struct lr_conflict_list *longs,
                                const struct daemon_version *v, struct lr_conflict_list *view)
{
    memset(view, 0, sizeof(*view));
    const char *name = strrchr(v->id, '/');
    name = name ? name + 1 : v->id;
    size_t dlen = (size_t)(name - v->id), leaf_len;
    int64_t when;
    unsigned seq;
    bool cut;
    if (!daemon_version_name_parse(name, &leaf_len, &when, &seq, &cut) || !cut)
        return;
    for (size_t i = 0; i < longs->n; i++) {
        const struct lr_conflict_rec *c = &longs->v[i];
        size_t ll = c->path_len - dlen;
        char want[NAME_MAX + 1];
        if (c->path_len <= dlen || memcmp(c->path, v->id, dlen) != 0 || ll > NAME_MAX ||
            memchr(c->path + dlen, '/', ll))
            continue;
        memcpy(want, c->path + dlen, ll);
        want[ll] = 0;
        if (strlen(want) != ll || !leaf_matches(want, name, leaf_len, true))
            continue;
        view->v = lr_xappendarray(view->v, view->n, sizeof(*view->v));
        view->v[view->n++] = *c;
    }
}

json_t *daemon_versions_json(const char *folder, const struct daemon_version_list *l,
                             struct lr_index *ix)
{
    struct lr_conflict_list longs = {0};
    bool longs_read = false;
    json_t *arr = json_array();
    struct lr_conflict_list cl = {0};
    const struct daemon_version *prev = NULL;
    for (size_t i = 0; i < l->n; i++) {
        const struct daemon_version *v = &l->v[i];
        if (ix && (!prev || prev->path_len != v->path_len ||
                   memcmp(prev->path, v->path, v->path_len) != 0)) {
            lr_conflict_list_release(&cl);
            if (lr_index_conflict_list(ix, folder, v->path, v->path_len, 0, LR_CONFLICT_LIST_MAX,
                                       &cl, NULL) < 0)
                memset(&cl, 0, sizeof(cl));
        }
        prev = v;
        char mt[40], at[40];
        iso_time(v->mtime_s, mt, sizeof(mt));
        iso_time(v->archived_s, at, sizeof(at));
        json_t *o = json_object();
        lr_json_set_path(o, "id", v->id, strlen(v->id));
        lr_json_set_path(o, "path", v->path, v->path_len);
        if (v->cut)
            json_object_set_new(o, "cut", json_true());
        json_object_set_new(o, "size", json_integer((json_int_t)v->size));
        json_object_set_new(o, "mtime", json_string(mt));
        json_object_set_new(o, "archived", json_string(at));
        if (ix && v->cut && cl.n == 0) {
            if (!longs_read)
                long_leaf_conflicts(ix, folder, &longs);
            longs_read = true;
            struct lr_conflict_list view;
            cut_entry_conflicts(&longs, v, &view);
            set_why(o, v, &view);
            free(view.v);
        } else {
            set_why(o, v, &cl);
        }
        json_array_append_new(arr, o);
    }
    lr_conflict_list_release(&cl);
    lr_conflict_list_release(&longs);
    json_t *res = json_pack("{s:s, s:o}", "folder", folder, "versions", arr);
    if (l->truncated)
        json_object_set_new(res, "truncated", json_true());
    return res;
}

/* params.folder (required, configured) and params.path (optional, checked). */
/*
 * A text parameter that may name raw bytes: `key_b64` (base64, for a name
 * that is not UTF-8, util/jsonx.h) wins over `key`. 0 with *out (free(),
 * NULL if neither is given), or -1 after replying bad_request.
 */
static int bytes_param(struct lr_api_req *req, json_t *params, const char *key, char **out)
{
    char k64[32];
    snprintf(k64, sizeof(k64), "%s_b64", key);
    json_t *p = json_object_get(params, key), *p64 = json_object_get(params, k64);
    *out = NULL;
    if ((p && !json_is_string(p)) || (p64 && !json_is_string(p64))) {
        lr_api_reply_error(req, "bad_request", 2, "'%s' must be a string", p64 ? k64 : key);
        return -1;
    }
    if (p64) {
        *out = lr_config_unbase64_str(json_string_value(p64));
        if (!*out) {
            lr_api_reply_error(req, "bad_request", 2, "'%s' is not base64 of a name", k64);
            return -1;
        }
    } else if (p) {
        *out = lr_xstrdup(json_string_value(p));
    }
    return 0;
}

/* The folder and optional path (*path: free()) of a versions/restore request. */
static const struct lr_folder_cfg *folder_param(struct lr_daemon *d, struct lr_api_req *req,
                                                json_t *params, bool need_path, char **path)
{
    const char *folder = json_string_value(json_object_get(params, "folder"));
    *path = NULL;
    if (!folder) {
        lr_api_reply_error(req, "bad_request", 2, "'folder' (a folder ID) is required");
        return NULL;
    }
    if (bytes_param(req, params, "path", path) < 0)
        return NULL;
    if (need_path && !*path) {
        lr_api_reply_error(req, "bad_request", 2, "'path' is required");
        return NULL;
    }
    const struct lr_folder_cfg *fc = lr_config_find_folder(d->cfg, folder);
    if (!fc) {
        char *e = lr_escs(folder);
        lr_api_reply_error(req, "notfound", 1, "no folder with ID '%s'", e);
        free(e);
    } else if (*path) {
        struct lr_err err = {0};
        if (lr_store_path_check(*path, &err) == 0)
            return fc;
        lr_api_reply_error(req, "badpath", 1, "%s", err.msg);
    } else {
        return fc;
    }
    free(*path);
    *path = NULL;
    return NULL;
}

void daemon_m_versions(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    char *path;
    const struct lr_folder_cfg *fc = folder_param(d, req, params, false, &path);
    if (!fc)
        return;
    struct daemon_version_list l;
    struct lr_err err = {0};
    int rc = daemon_versions_list(fc->path, path, &l, &err);
    free(path);
    if (rc < 0) {
        lr_api_reply_rc(req, rc, &err);
        return;
    }
    struct lr_index *ix = NULL;
    if (ro_open(d, &ix, NULL) < 0)
        ix = NULL;
    json_t *res = daemon_versions_json(fc->id, &l, ix);
    lr_index_close(ix);
    daemon_version_list_release(&l);
    lr_api_reply(req, res);
}

/* ---- restore ------------------------------------------------------------------- */

struct restore_job {
    struct daemon_job base;
    struct lr_api_req *req;
    char *folder, *root, *path, *version;
    /* out */
    int rc;
    struct lr_err err;
    char *id;
    bool replaced;
};

static bool version_matches(const struct daemon_version *v, const char *want)
{
    if (strcmp(v->id, want) == 0)
        return true;
    const char *t = strrchr(v->id, '~');
    return t && strcmp(t + 1, want) == 0;
}

/* Copy the archived file `id` into a staging file of st; *fd and key out. */
static int stage_archived(struct lr_store *st, const char *root, const char *id,
                          const struct lr_hash *key, int *fd, struct stat *sb, struct lr_err *err)
{
    *fd = -1;
    int vfd;
    int rc = daemon_versions_open(root, &vfd, err);
    if (rc < 0)
        return rc == -ENOENT ? lr_err_set(err, LR_ENOTFOUND, "no versions archive in %s", root)
                             : rc;
    const char *slash = strrchr(id, '/');
    char *dir = slash ? lr_xstrndup(id, (size_t)(slash - id)) : lr_xstrdup("");
    int dfd;
    rc = open_beneath(vfd, dir, &dfd);
    free(dir);
    close(vfd);
    if (rc < 0)
        return lr_err_set(err, rc, "archived version %s: %s", id, strerror(-rc));
    int src = openat(dfd, slash ? slash + 1 : id, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int e = errno;
    close(dfd);
    if (src < 0)
        return lr_err_set(err, -e, "archived version %s: %s", id, strerror(e));
    if (fstat(src, sb) < 0 || !S_ISREG(sb->st_mode)) {
        close(src);
        return lr_err_set(err, LR_EBADVAL, "archived version %s is not a regular file", id);
    }
    rc = lr_store_staging_open(st, key, (uint64_t)sb->st_size, fd, NULL, err);
    if (rc == 0) {
        rc = lr_store_copy_bytes(src, *fd, (uint64_t)sb->st_size);
        struct stat now;
        if (rc == 0 && (fstat(src, &now) < 0 || now.st_size != sb->st_size))
            rc = LR_ECHANGED;
        if (rc == LR_ECHANGED)
            lr_err_set(err, rc, "archived version %s changed while being read", id);
        else if (rc < 0)
            lr_err_set(err, rc, "archived version %s: %s", id, lr_strerror(rc));
    } else if (err && strncmp(err->msg, "archived version ", 17) != 0) {
        /* The staging file's error ("... No space left on device"): named
         * for the version being restored. */
        char m[LR_ERR_MSG_MAX];
        snprintf(m, sizeof(m), "%s", lr_err_msg(err, rc));
        lr_err_set(err, rc, "archived version %s: %s", id, m);
    }
    close(src);
    if (rc < 0 && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

int daemon_restore_file(const char *root, const char *path, const char *version, char **id,
                        bool *replaced, struct lr_err *err)
{
    *id = NULL;
    *replaced = false;
    int rc = lr_store_path_check(path, err);
    if (rc < 0)
        return rc;
    struct daemon_version_list l;
    if ((rc = daemon_versions_list(root, path, &l, err)) < 0)
        return rc;
    const struct daemon_version *pick = NULL;
    size_t plen = strlen(path);
    for (size_t i = 0; i < l.n; i++) {
        const struct daemon_version *v = &l.v[i];
        if (v->path_len != plen || memcmp(v->path, path, plen) != 0)
            continue; /* below a directory of that name */
        if (version ? version_matches(v, version) : true)
            pick = v; /* sorted oldest first: the last match is the newest */
    }
    if (!pick) {
        char *ep = lr_escs(path);
        if (version) {
            char *ev = lr_escs(version);
            rc = lr_err_set(err, LR_ENOTFOUND, "no archived version '%s' of %s", ev, ep);
            free(ev);
        } else {
            rc = lr_err_set(err, LR_ENOTFOUND, "no archived version of %s", ep);
        }
        free(ep);
        daemon_version_list_release(&l);
        return rc;
    }
    char *vid = lr_xstrdup(pick->id);
    daemon_version_list_release(&l);

    struct lr_store *st = NULL;
    if ((rc = lr_store_open(root, &st, err)) < 0) {
        free(vid);
        return rc;
    }
    struct lr_buf kb;
    lr_buf_init(&kb, SIZE_MAX);
    lr_buf_put_str(&kb, "landropic restore v1");
    lr_buf_put_str(&kb, vid);
    struct lr_hash key;
    lr_sha256(kb.data, kb.len, &key);
    lr_buf_release(&kb);
    int fd = -1;
    struct stat sb = {0};
    bool repl = false;
    rc = stage_archived(st, root, vid, &key, &fd, &sb, err);
    struct lr_store_info cur;
    struct lr_store_expect e = {0};
    if (rc == 0) {
        int src = lr_store_stat(st, path, &cur, err);
        if (src == 0 && (cur.special || cur.type != LR_FT_FILE)) {
            char *p = lr_escs(path);
            rc = lr_err_set(err, LR_EEXISTS, "%s is a %s, not a file: not replaced", p,
                            cur.type == LR_FT_DIR ? "directory" : "special entry or symlink");
            free(p);
        } else if (src == 0) {
            e.exists = true;
            e.type = LR_FT_FILE;
            e.ino = cur.ino;
            e.size = cur.size;
            e.mtime_ns = cur.mtime_ns;
            e.ctime_ns = cur.ctime_ns;
            repl = true;
        } else if (src != -ENOENT) {
            rc = src;
        }
    }
    if (rc == 0) {
        /* The archived file's own mode and mtime: the restore is a new
         * version by its vector (the scan bumps it), not by its clock. */
        int64_t mtime_ns = lr_timespec_ns(&sb.st_mtim);
        rc = lr_store_commit_file(st, NULL, &key, fd, path, (uint32_t)sb.st_mode & 07777, mtime_ns,
                                  &e, LR_STORE_MKPARENTS, NULL, err);
    }
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        lr_store_staging_discard(st, &key, NULL);
    lr_store_close(st);
    if (rc < 0) {
        free(vid);
        return rc;
    }
    *id = vid;
    *replaced = repl;
    return 0;
}

static void restore_work(struct daemon_job *base)
{
    struct restore_job *j = (struct restore_job *)base;
    j->rc = daemon_restore_file(j->root, j->path, j->version, &j->id, &j->replaced, &j->err);
}

static void restore_done(struct daemon_job *base, int status)
{
    struct restore_job *j = (struct restore_job *)base;
    struct lr_daemon *d = base->d;
    if (status < 0) {
        lr_api_reply_error(j->req, "canceled", 1, "restore of %s canceled: the daemon is stopping",
                           j->path);
    } else if (j->rc < 0) {
        lr_api_reply_rc(j->req, j->rc, &j->err);
    } else {
        char *e = lr_escs(j->path), *v = lr_escs(j->id);
        lr_info(MOD, "folder=%s path=%s restored version=%s replaced=%d", j->folder, e, v,
                j->replaced);
        free(e);
        free(v);
        json_t *res = json_pack("{s:s, s:b}", "folder", j->folder, "replaced", j->replaced);
        lr_json_set_path(res, "path", j->path, strlen(j->path));
        lr_json_set_path(res, "version", j->id, strlen(j->id));
        json_t *ev = json_pack("{s:s, s:s}", "type", "restored", "folder", j->folder);
        lr_json_set_path(ev, "path", j->path, strlen(j->path));
        lr_json_set_path(ev, "version", j->id, strlen(j->id));
        daemon_event(d, ev);
        lr_api_reply(j->req, res);
        /* A new local change: the scan gives it a version, and peers get it. */
        const char *ids[1] = {j->folder};
        if (!d->stopping)
            scanjobs_queue(d, ids, 1, NULL, NULL);
    }
    free(j->folder);
    free(j->root);
    free(j->path);
    free(j->version);
    free(j->id);
    free(j);
}

void daemon_m_restore(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    char *path, *version;
    const struct lr_folder_cfg *fc = folder_param(d, req, params, true, &path);
    if (!fc)
        return;
    if (bytes_param(req, params, "version", &version) < 0) {
        free(path);
        return;
    }
    struct restore_job *j = lr_xcalloc(1, sizeof(*j));
    j->base.kind = DAEMON_JOB_SYNC;
    j->base.work = restore_work;
    j->base.done = restore_done;
    j->req = req;
    j->folder = lr_xstrdup(fc->id);
    j->root = lr_xstrdup(fc->path);
    j->path = path;
    j->version = version;
    daemon_job_queue(d, &j->base);
}
