/*
 * methods.c - the daemon's control API methods (docs/api.md lists them).
 *
 * Each method validates its params, answers with the contract's JSON shape
 * (shared/cli-contract.md) or an error naming the culprit, and never blocks
 * the loop: scans are queued to a worker and answered when done.
 */
#include "daemon/daemon_int.h"
#include "daemon/sessions.h"
#include "daemon/disc.h"
#include "daemon/pairing.h"
#include "daemon/modes.h"

#include "config/ops.h"
#include "daemon/conflicts.h"
#include "daemon/syncerr.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "api"
#define MAX_FOLDER_ARGS 256

/* Collect params.folders (array of strings) or params.folder (string). */
static int folder_args(struct lr_api_req *req, json_t *params, const char **ids, size_t *n)
{
    *n = 0;
    json_t *one = json_object_get(params, "folder");
    json_t *many = json_object_get(params, "folders");
    if (one && json_is_string(one)) {
        ids[(*n)++] = json_string_value(one);
        return 0;
    }
    /* Another type was taken for "no folder named": every folder answered. */
    if (one && !json_is_null(one)) {
        lr_api_reply_error(req, "bad_request", 2, "'folder' must be a folder ID (a string)");
        return -1;
    }
    if (many && !json_is_array(many)) {
        lr_api_reply_error(req, "bad_request", 2, "'folders' must be an array of folder IDs");
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(many, i, v)
    {
        if (!json_is_string(v) || *n >= MAX_FOLDER_ARGS) {
            lr_api_reply_error(req, "bad_request", 2, "'folders' must hold at most %d strings",
                               MAX_FOLDER_ARGS);
            return -1;
        }
        ids[(*n)++] = json_string_value(v);
    }
    return 0;
}

/* Every named folder must exist; answers the request and returns -1 if not. */
static int check_folders(struct lr_daemon *d, struct lr_api_req *req, const char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!lr_config_find_folder(d->cfg, ids[i])) {
            char *e = lr_escs(ids[i]);
            lr_api_reply_error(req, "notfound", 1, "no folder with ID '%s'", e);
            free(e);
            return -1;
        }
    }
    return 0;
}

static void m_peers(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    (void)params;
    json_t *arr = json_array();
    for (size_t i = 0; i < d->cfg->npeers; i++) {
        const struct lr_peer_cfg *pc = &d->cfg->peers[i];
        struct peer_rt *p = daemon_peer(d, &pc->id);
        uint64_t sent, recv;
        daemon_peer_bytes(p, &sent, &recv);
        bool up = p && p->conn;
        char id[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&pc->id, id);
        json_t *addrs = json_array();
        for (size_t k = 0; k < pc->naddrs; k++)
            json_array_append_new(addrs, json_string(pc->addrs[k]));
        json_t *o = json_pack("{s:s, s:s, s:o, s:b, s:I, s:I}", "id", id, "name", pc->name,
                              "addresses", addrs, "connected", up, "bytes_sent", (json_int_t)sent,
                              "bytes_received", (json_int_t)recv);
        struct sync_peer_index_stats is;
        sync_peer_index_stats(d, &pc->id, &is);
        json_object_set_new(
            o, "index",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "bytes_sent",
                      (json_int_t)is.bytes_sent, "bytes_received", (json_int_t)is.bytes_received,
                      "deltas_sent", (json_int_t)is.deltas_sent, "deltas_received",
                      (json_int_t)is.deltas_received, "delta_misses", (json_int_t)is.delta_misses,
                      "summaries_sent", (json_int_t)is.summaries_sent, "summaries_received",
                      (json_int_t)is.summaries_received));
        if (up) {
            json_object_set_new(o, "address", json_string(lr_conn_addr(p->conn)));
            json_object_set_new(o, "device_name", lr_json_lossy(p->name, strlen(p->name)));
        }
        json_array_append_new(arr, o);
    }
    lr_api_reply(req, json_pack("{s:o, s:o}", "peers", arr, "pending", disc_pending_json(d)));
}

/* Concrete addresses for a listen address: a wildcard expands to the interfaces' ones. */
static void add_listen_addrs(json_t *out, const char *listen, int port)
{
    bool any6 = strncmp(listen, "[::]:", 5) == 0, any4 = strncmp(listen, "0.0.0.0:", 8) == 0;
    if (!any6 && !any4) {
        const char *colon = strrchr(listen, ':');
        size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);
        char *a = lr_xasprintf("%.*s:%d", (int)hl, listen, port);
        json_array_append_new(out, json_string(a));
        free(a);
        return;
    }
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) < 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || !(i->ifa_flags & IFF_UP))
            continue;
        char host[INET6_ADDRSTRLEN];
        char *a = NULL;
        if (i->ifa_addr->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, host,
                      sizeof(host));
            a = lr_xasprintf("%s:%d", host, port);
        } else if (i->ifa_addr->sa_family == AF_INET6 && any6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(void *)i->ifa_addr;
            if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr))
                continue; /* needs a zone to be usable; not worth offering */
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
            a = lr_xasprintf("[%s]:%d", host, port);
        }
        if (a) {
            json_array_append_new(out, json_string(a));
            free(a);
        }
    }
    freeifaddrs(ifs);
}

static bool is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]:", 6) == 0;
}

/* What `pair` shows is for another device to dial: loopback addresses only
 * reach this one (a device told to add 127.0.0.1 dialled itself), so they
 * are left out unless there is nothing else (a loopback-only listen, two
 * devices on one machine). */
static void drop_loopback(json_t *addrs)
{
    size_t i;
    json_t *a;
    bool other = false;
    json_array_foreach(addrs, i, a)
    {
        other |= !is_loopback(json_string_value(a));
    }
    for (i = json_array_size(addrs); other && i-- > 0;)
        if (is_loopback(json_string_value(json_array_get(addrs, i))))
            json_array_remove(addrs, i);
}

static void m_pair(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    (void)params;
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(lr_identity_device_id(d->ident), id);
    json_t *addrs = json_array();
    size_t n = d->opts->nlisten ? d->opts->nlisten : 1;
    for (size_t i = 0; i < n && d->tr; i++) {
        const char *l = d->opts->nlisten ? d->opts->listen[i] : LR_TRANSPORT_DEFAULT_LISTEN;
        add_listen_addrs(addrs, l, lr_transport_local_port(d->tr, i));
    }
    drop_loopback(addrs);
    /* landropic://ID?addr=A&addr=B: what `pair --qr` encodes. */
    struct lr_buf link;
    lr_buf_init(&link, 64 * 1024);
    lr_buf_printf(&link, "landropic://%s", id);
    size_t i;
    json_t *a;
    json_array_foreach(addrs, i, a)
    {
        lr_buf_printf(&link, "%saddr=%s", i ? "&" : "?", json_string_value(a));
    }
    lr_buf_put_u8(&link, 0);
    json_t *res = json_pack("{s:s, s:s, s:o, s:s}", "id", id, "name", d->cfg->name, "addresses",
                            addrs, "link", lr_buf_ok(&link) ? (char *)link.data : "");
    lr_buf_release(&link);
    lr_api_reply(req, res);
}

/* ISO 8601 UTC, as events' "time" (seconds precision). */
static void iso_time(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The folder's failing items (contract: {"path", "error", "since"}), plus
 * "attempts" and "last"; *more gets the failing items not listed. */
static json_t *folder_errors(struct lr_daemon *d, const char *folder, struct folder_rt *f,
                             uint64_t *more)
{
    json_t *errors = json_array();
    *more = 0;
    if (f && f->error) {
        char since[32], last[32];
        iso_time(f->error_since, since, sizeof(since));
        iso_time(f->error_last, last, sizeof(last));
        /* Lossy: the message may quote a root that is not UTF-8 (json_pack
         * refused it, and the folder was in error with no reason listed). */
        json_array_append_new(errors,
                              json_pack("{s:s, s:o, s:s, s:s, s:I}", "path", "", "error",
                                        lr_json_lossy(f->error, strlen(f->error)), "since", since,
                                        "last", last, "attempts", (json_int_t)f->error_attempts));
    }
    struct lr_syncerr_list l;
    sync_items_list(d, folder, &l);
    for (size_t i = 0; i < l.n; i++) {
        char since[32], last[32];
        iso_time(l.v[i].since_s, since, sizeof(since));
        iso_time(l.v[i].last_s, last, sizeof(last));
        json_t *e = json_object();
        lr_json_set_path(e, "path", l.v[i].path, l.v[i].path_len);
        json_object_set_new(e, "error", lr_json_lossy(l.v[i].msg, strlen(l.v[i].msg)));
        json_object_set_new(e, "since", json_string(since));
        json_object_set_new(e, "last", json_string(last));
        json_object_set_new(e, "attempts", json_integer((json_int_t)l.v[i].attempts));
        json_array_append_new(errors, e);
    }
    *more = l.more;
    lr_syncerr_list_release(&l);
    return errors;
}

/* Why a folder is not in sync, into why (NULL: it is). The first reason
 * only: what a user would fix or wait for first. */
static const char *not_in_sync_why(enum folder_state st, const struct folder_rt *f,
                                   const struct sync_folder_status *ss, uint64_t nerrors, char *why,
                                   size_t n)
{
    if (st == FOLDER_ERROR)
        snprintf(why, n, "the folder is in error");
    else if (st == FOLDER_SCANNING)
        snprintf(why, n, "a scan is running");
    else if (!f || !f->scanned)
        snprintf(why, n, "not scanned yet since the daemon started");
    else if ((st != FOLDER_IDLE || !ss->settled) && !(nerrors && ss->fetching_none))
        /* Failing items before "a pull round is queued" or "1 item still
         * to apply": a transfer dropped while its only holder is away
         * retries in rounds that fetch nothing ("pulling (0 transfers in
         * flight)" before; black-box round 35a). */
        snprintf(why, n, "%s", ss->why[0] ? ss->why : "syncing");
    else if (nerrors)
        snprintf(why, n, "%llu failing item%s", (unsigned long long)nerrors,
                 nerrors == 1 ? "" : "s");
    else if (ss->need_items)
        snprintf(why, n, "%llu item%s needed but not applicable now",
                 (unsigned long long)ss->need_items, ss->need_items == 1 ? "" : "s");
    else
        return NULL;
    return why;
}

static json_t *folder_status(struct lr_daemon *d, const struct lr_folder_cfg *fc)
{
    struct folder_rt *f = daemon_folder(d, fc->id);
    enum folder_state st = (enum folder_state)sync_items_folder_state(d, fc->id);
    struct sync_folder_status ss;
    sync_folder_status(d, fc->id, &ss);
    uint64_t more;
    json_t *errors = folder_errors(d, fc->id, f, &more);
    json_t *o = json_pack("{s:s}", "id", fc->id);
    lr_json_set_path(o, "path", fc->path, strlen(fc->path));
    json_object_set_new(o, "state", json_string(daemon_folder_state_name(st)));
    char why[200];
    bool in_sync =
        not_in_sync_why(st, f, &ss, json_array_size(errors) + more, why, sizeof(why)) == NULL;
    json_object_set_new(o, "in_sync", json_boolean(in_sync));
    if (!in_sync)
        json_object_set_new(o, "why_not_in_sync", lr_json_lossy(why, strlen(why)));
    json_object_set_new(o, "need_files", json_integer((json_int_t)ss.need_files));
    json_object_set_new(o, "need_bytes", json_integer((json_int_t)ss.need_bytes));
    json_object_set_new(o, "conflicts",
                        json_integer((json_int_t)daemon_conflict_copies(d, fc->id)));
    json_object_set_new(o, "errors", errors);
    if (more)
        json_object_set_new(o, "errors_more", json_integer((json_int_t)more));
    json_object_set_new(o, "mode", json_string(lr_folder_mode_name(fc->mode)));
    daemon_modes_status(d, fc, ss.need_items, o); /* docs/modes.md */
    if (f && f->scanned) {
        json_object_set_new(o, "files", json_integer((json_int_t)f->last.files));
        json_object_set_new(o, "bytes", json_integer((json_int_t)f->last.bytes));
    }
    return o;
}

static void m_status(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    const char *ids[MAX_FOLDER_ARGS];
    size_t n;
    if (folder_args(req, params, ids, &n) < 0 || check_folders(d, req, ids, n) < 0)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const struct lr_folder_cfg *fc = &d->cfg->folders[i];
        bool want = n == 0;
        for (size_t k = 0; k < n; k++)
            want |= strcmp(ids[k], fc->id) == 0;
        if (want)
            json_array_append_new(arr, folder_status(d, fc));
    }
    lr_api_reply(req, json_pack("{s:o}", "folders", arr));
}

static void m_scan(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    const char *ids[MAX_FOLDER_ARGS];
    size_t n;
    struct lr_err err = {0};
    if (folder_args(req, params, ids, &n) < 0)
        return;
    int rc = scanjobs_queue(d, ids, n, req, &err);
    if (rc < 0)
        lr_api_reply_rc(req, rc, &err);
}

static void m_sync(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    const char *ids[MAX_FOLDER_ARGS];
    size_t n;
    struct lr_err err = {0};
    if (folder_args(req, params, ids, &n) < 0)
        return;
    int rc = scanjobs_queue(d, ids, n, NULL, &err);
    if (rc < 0) {
        lr_api_reply_rc(req, rc, &err);
        return;
    }
    sync_redial_for_wait(d, ids, n);
    lr_api_reply(req, json_object());
}

/* sync.state (syncstate.c); "wait_ms": hold the answer until done, up to that long. */
static void m_sync_state(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    const char *ids[MAX_FOLDER_ARGS];
    size_t n;
    if (folder_args(req, params, ids, &n) < 0 || check_folders(d, req, ids, n) < 0)
        return;
    json_t *w = json_object_get(params, "wait_ms");
    if (w && (!json_is_integer(w) || json_integer_value(w) < 0)) {
        lr_api_reply_error(req, "bad_request", 2, "'wait_ms' must be a non-negative integer");
        return;
    }
    syncstate_request(d, req, ids, n, w ? (uint64_t)json_integer_value(w) : 0);
}

static void m_conflicts(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    const char *ids[MAX_FOLDER_ARGS];
    size_t n;
    if (folder_args(req, params, ids, &n) < 0)
        return;
    /* A usage error before a lookup: two IDs are wrong whether or not they exist. */
    if (n > 1) {
        lr_api_reply_error(req, "bad_request", 2, "'conflicts' takes at most one folder");
        return;
    }
    /* No folder check here: the trail outlives a removed folder, and is
     * listed by its ID (daemon_m_conflicts refuses an ID it has no row of). */
    daemon_m_conflicts(d, req, n ? ids[0] : NULL);
}

static void m_sessions(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    (void)params;
    lr_api_reply(req, sync_sessions_json(d));
}

static void m_events(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    (void)d;
    (void)params;
    int rc = lr_api_req_stream(req);
    if (rc < 0)
        lr_api_reply_rc(req, rc, NULL);
}

static void m_stop(struct lr_daemon *d, struct lr_api_req *req, json_t *params)
{
    (void)params;
    lr_api_reply(req, json_object());
    daemon_stop(d, "stop requested");
}

static void m_config(struct lr_daemon *d, struct lr_api_req *req, const char *method,
                     json_t *params)
{
    struct lr_err err = {0};
    json_t *result = NULL;
    /* Apply to a copy first so a failed save leaves the running config as it was. */
    struct lr_config *next = NULL;
    int rc = lr_config_load(d->opts->home, &next, &err);
    if (rc == 0)
        rc = lr_config_apply(next, method, params, &result, &err);
    if (rc == 0)
        rc = lr_config_save(next, &err);
    if (rc < 0) {
        lr_config_free(next);
        json_decref(result);
        lr_api_reply_rc(req, rc, &err);
        return;
    }
    lr_config_free(d->cfg);
    d->cfg = next;
    lr_info(MOD, "configuration changed: %s", method);
    json_t *ev =
        json_pack("{s:s, s:s, s:O}", "type", "config_changed", "change", method, "details", result);
    daemon_event(d, ev);
    daemon_config_changed(d);
    lr_api_reply(req, result);
}

static const struct {
    const char *name;
    void (*fn)(struct lr_daemon *, struct lr_api_req *, json_t *);
} methods[] = {
    {"peers", m_peers},
    {"pair", m_pair},
    {"pair.code", pairing_m_code},
    {"pair.wait", pairing_m_wait},
    {"pair.join", pairing_m_join},
    {"status", m_status},
    {"scan", m_scan},
    {"sync", m_sync},
    {"sync.state", m_sync_state},
    {"conflicts", m_conflicts},
    {"sessions", m_sessions},
    {"events", m_events},
    {"stop", m_stop},
    {"versions", daemon_m_versions},
    {"restore", daemon_m_restore},
    {"folder.override", daemon_m_folder_override},
    {"folder.revert", daemon_m_folder_revert},
#ifdef LR_FAILPOINTS
    {"debug.send", debug_send},
    {"debug.state", debug_state},
#endif
};

void daemon_api_handler(void *ud, struct lr_api_req *req, const char *method, json_t *params)
{
    struct lr_daemon *d = ud;
    if (d->stopping) {
        lr_api_reply_error(req, "stopping", 1, "the daemon is stopping");
        return;
    }
    lr_debug(MOD, "request method=%s id=%lld", method, lr_api_req_id(req));
    if (lr_config_is_op(method)) {
        m_config(d, req, method, params);
        return;
    }
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(methods[i].name, method) == 0) {
            methods[i].fn(d, req, params);
            return;
        }
    }
    char *e = lr_escs(method);
    lr_api_reply_error(req, LR_API_E_UNKNOWN_METHOD, 2, "unknown method '%s'", e);
    free(e);
}
