/*
 * disc.c - LAN discovery in the daemon: start/stop, dial hints for added
 * peers without addresses, answers to newly heard devices, and the bounded
 * list of devices seen but not added (disc.h).
 */
#include "daemon/disc.h"

#include "daemon/daemon_int.h"
#include "discovery/discovery.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "discovery"

#define ADDR_STRLEN DISC_ADDR_STRLEN

struct heard {
    bool used;
    struct lr_device_id id;
    char name[LR_ANNOUNCE_NAME_MAX + 1];
    char addrs[LR_TRANSPORT_MAX_ADDRS][ADDR_STRLEN];
    size_t naddrs;
    char via[16];           /* how it was last seen: "discovery" or "connect" */
    uint64_t last_mono;     /* uv_now when last seen, either way */
    uint64_t disc_mono;     /* uv_now of its last announcement, 0 = none */
    uint64_t last_wall_ms;  /* wall clock when last heard */
    uint64_t answered_mono; /* uv_now of our last answer to it, 0 = never */
    uint64_t probed_mono;   /* uv_now of our last PING on its connection, 0 = never */
    bool has_nameplate;
    uint16_t nameplate;
};

struct disc_state {
    struct lr_discovery *disc;
    struct heard h[DISC_PENDING_MAX];
};

static struct heard *heard_find(struct disc_state *s, const struct lr_device_id *id)
{
    for (size_t i = 0; i < DISC_PENDING_MAX; i++)
        if (s->h[i].used && lr_device_id_eq(&s->h[i].id, id))
            return &s->h[i];
    return NULL;
}

/* The entry for `id`, reusing a free or the least recently heard slot. */
static struct heard *heard_get(struct disc_state *s, const struct lr_device_id *id, bool *fresh)
{
    struct heard *e = heard_find(s, id);
    *fresh = e == NULL;
    if (e)
        return e;
    for (size_t i = 0; i < DISC_PENDING_MAX; i++)
        if (!e || !s->h[i].used || (e->used && s->h[i].last_mono < e->last_mono))
            e = &s->h[i];
    memset(e, 0, sizeof(*e));
    e->used = true;
    e->id = *id;
    return e;
}

static struct disc_state *state(struct lr_daemon *d)
{
    if (!d->disc)
        d->disc = lr_xcalloc(1, sizeof(*d->disc));
    return d->disc;
}

/* ---- addresses ---- */

static bool v6_linklocal(const char *ip)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, ip, &a) == 1 && IN6_IS_ADDR_LINKLOCAL(&a);
}

static void fmt_addr(char *out, size_t n, const char *ip, uint16_t port)
{
    if (strchr(ip, ':'))
        snprintf(out, n, "[%s]:%u", ip, port);
    else
        snprintf(out, n, "%s:%u", ip, port);
}

static void add_unique(char (*list)[ADDR_STRLEN], size_t *n, const char *a)
{
    if (*n >= LR_TRANSPORT_MAX_ADDRS)
        return;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], a) == 0)
            return;
    snprintf(list[(*n)++], ADDR_STRLEN, "%s", a);
}

/* Whether an announced address could reach the sender from the LAN: not
 * unspecified, loopback (this machine), multicast or broadcast, nor IPv6
 * link-local (no scope in a hint) or IPv4 in IPv6 (our daemons announce
 * neither). A
 * forged announcement listed 127.0.0.1 and 224.0.0.1 in `pending`, to be
 * dialled once the device was added. */
static bool hint_usable(const struct lr_announce_addr *h)
{
    if (h->family == 4) {
        uint32_t v =
            (uint32_t)h->a[0] << 24 | (uint32_t)h->a[1] << 16 | (uint32_t)h->a[2] << 8 | h->a[3];
        return h->a[0] != 0 && h->a[0] != 127 && (h->a[0] & 0xf0) != 0xe0 && v != 0xffffffffu;
    }
    struct in6_addr a;
    memcpy(&a, h->a, sizeof(a));
    return !IN6_IS_ADDR_UNSPECIFIED(&a) && !IN6_IS_ADDR_LOOPBACK(&a) &&
           !IN6_IS_ADDR_MULTICAST(&a) && !IN6_IS_ADDR_LINKLOCAL(&a) && !IN6_IS_ADDR_V4MAPPED(&a) &&
           !IN6_IS_ADDR_V4COMPAT(&a);
}

/* Addresses to reach the sender: its source address, then its usable
 * hints, at each port. */
static void seen_addrs(const struct lr_discovery_seen *s, char (*out)[ADDR_STRLEN], size_t *n)
{
    *n = 0;
    char a[ADDR_STRLEN];
    for (size_t p = 0; p < s->ann->nports; p++) {
        fmt_addr(a, sizeof(a), s->from_ip, s->ann->ports[p]);
        add_unique(out, n, a);
    }
    for (size_t i = 0; i < s->ann->naddrs; i++) {
        const struct lr_announce_addr *h = &s->ann->addrs[i];
        char ip[INET6_ADDRSTRLEN];
        if (!hint_usable(h) ||
            !inet_ntop(h->family == 4 ? AF_INET : AF_INET6, h->a, ip, sizeof(ip)))
            continue;
        for (size_t p = 0; p < s->ann->nports; p++) {
            fmt_addr(a, sizeof(a), ip, s->ann->ports[p]);
            add_unique(out, n, a);
        }
    }
}

/* The transport's address syntax has no IPv6 scope: link-local ones cannot be dialled. */
static bool dialable(const char *addr)
{
    char ip[ADDR_STRLEN];
    snprintf(ip, sizeof(ip), "%s", addr[0] == '[' ? addr + 1 : addr);
    char *end = strchr(ip, ']');
    if (end)
        *end = '\0';
    return !strchr(ip, '%') && !v6_linklocal(ip);
}

/* Whether `addr` (as lr_conn_addr gives it) is one of those it announced. */
static bool heard_has(const struct heard *e, const char *addr)
{
    for (size_t i = 0; i < e->naddrs; i++)
        if (strcmp(e->addrs[i], addr) == 0)
            return true;
    return false;
}

/* Dial an added peer at the addresses it announced (dialable ones only);
 * while a connection with it is up this only replaces the addresses that
 * the transport redials after a loss (what == NULL: nothing logged). */
static void dial_heard(struct lr_daemon *d, const struct heard *e, const char *what)
{
    const char *dial[LR_TRANSPORT_MAX_ADDRS];
    size_t n = 0;
    for (size_t i = 0; i < e->naddrs; i++)
        if (dialable(e->addrs[i]))
            dial[n++] = e->addrs[i];
    if (n == 0)
        return;
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&e->id, id);
    struct lr_err err = {0};
    if (lr_transport_dial(d->tr, &e->id, dial, n, &err) < 0)
        lr_warn(MOD, "cannot dial %s peer id=%s: %s", what ? what : "announced", id, err.msg);
    else if (what)
        lr_info(MOD, "dialling %s peer id=%s at %s%s", what, id, dial[0],
                n > 1 ? " (and more)" : "");
}

/* ---- receiving ---- */

static void on_seen(void *ud, const struct lr_discovery_seen *s)
{
    struct lr_daemon *d = ud;
    if (d->stopping)
        return;
    struct disc_state *st = state(d);
    const struct lr_announce *a = s->ann;
    uint64_t now = uv_now(&d->loop);
    bool fresh;
    struct heard *e = heard_get(st, &a->id, &fresh);
    /* (An entry known only from a refused connection has disc_mono 0: first heard now.) */
    bool long_silent =
        !fresh && (e->disc_mono == 0 || now - e->disc_mono > 2 * LR_DISCOVERY_INTERVAL_MS);
    snprintf(e->name, sizeof(e->name), "%s", a->name);
    snprintf(e->via, sizeof(e->via), "discovery");
    seen_addrs(s, e->addrs, &e->naddrs);
    e->has_nameplate = a->has_nameplate;
    e->nameplate = a->nameplate;
    e->last_mono = now;
    e->disc_mono = now;
    e->last_wall_ms = s->recv_ms;

    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&a->id, id);
    const struct lr_peer_cfg *pc = lr_config_find_peer(d->cfg, &a->id);
    struct peer_rt *p = pc ? daemon_peer(d, &a->id) : NULL;
    bool connected = p && p->conn;
    if (fresh || long_silent) {
        char *name = lr_escs(a->name);
        lr_info(MOD, "heard id=%s name=%s from=%s ports=%zu%s", id, name, s->from_ip, a->nports,
                pc ? "" : " (not added)");
        free(name);
        daemon_event(d,
                     json_pack("{s:s, s:s, s:o, s:o, s:b}", "type", "device_discovered", "device",
                               id, "name", lr_json_lossy(a->name, strlen(a->name)), "address",
                               lr_json_lossy(s->from_ip, strlen(s->from_ip)), "added", pc != NULL));
    }
    if ((fresh || long_silent || (pc && !connected)) &&
        (e->answered_mono == 0 || now - e->answered_mono >= DISC_ANSWER_GAP_MS)) {
        e->answered_mono = now;
        lr_discovery_announce(st->disc);
    }
    bool moved = connected && !heard_has(e, lr_conn_addr(p->conn));
    if (connected && (moved || e->probed_mono == 0 || now - e->probed_mono >= DISC_ANSWER_GAP_MS)) {
        /*
         * It announces while we hold a connection to it: it may have just
         * restarted (SIGKILL, a reboot) or moved to another address, and
         * that connection be dead, which the idle timeout would find out
         * only many seconds later. A PING makes a restarted process answer
         * with a stateless reset at once: the connection closes and is
         * dialled again. At an address it left, the PING goes unanswered,
         * and the probe closes the connection after DISC_PROBE_MS; the
         * redial goes to the addresses just announced. On a live
         * connection the PING is acknowledged and otherwise ignored (§6.2).
         */
        e->probed_mono = now;
        (void)lr_conn_probe(p->conn, DISC_PROBE_MS);
        int prc = lr_conn_send(p->conn, LR_STREAM_CONTROL, LR_MSG_PING, NULL, 0);
        lr_debug(MOD, "peer id=%s announced while connected%s: PING sent (%d)", id,
                 moved ? " from another address" : "", prc);
    }
    if (!pc || pc->naddrs > 0 || !d->tr)
        return; /* not ours to dial, or fixed addresses */
    dial_heard(d, e, connected ? NULL : "discovered");
}

/* ---- lifecycle ---- */

/* Parse the host of a listen address; false if it is not numeric. */
static bool listen_host(const char *listen, struct lr_announce_addr *out, bool *wildcard,
                        bool *loopback)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *h = listen, *e;
    if (*h == '[') {
        h++;
        e = strchr(h, ']');
    } else {
        e = strrchr(h, ':');
    }
    if (!e || (size_t)(e - h) >= sizeof(host))
        return false;
    memcpy(host, h, (size_t)(e - h));
    host[e - h] = '\0';
    memset(out, 0, sizeof(*out));
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        out->family = 4;
        memcpy(out->a, &a4, 4);
        *wildcard = a4.s_addr == htonl(INADDR_ANY);
        *loopback = (ntohl(a4.s_addr) >> 24) == 127;
        return true;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        out->family = 6;
        memcpy(out->a, &a6, 16);
        *wildcard = IN6_IS_ADDR_UNSPECIFIED(&a6);
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6);
        return true;
    }
    return false;
}

int disc_start(struct lr_daemon *d, struct lr_err *err)
{
    if (d->opts->no_discovery) {
        lr_info(MOD, "off (--no-discovery)");
        return 0;
    }
    if (!d->cfg->discovery) {
        lr_info(MOD, "off (\"discovery\": false in config.json)");
        return 0;
    }
    if (!d->tr)
        return 0;
    size_t nl = d->opts->nlisten ? d->opts->nlisten : 1;
    uint16_t ports[LR_ANNOUNCE_MAX_PORTS];
    struct lr_announce_addr addrs[LR_ANNOUNCE_MAX_ADDRS];
    size_t np = 0, na = 0;
    bool any_wild = false, any_v4 = false, any_v6 = false, reachable = false;
    for (size_t i = 0; i < nl; i++) {
        const char *l = d->opts->nlisten ? d->opts->listen[i] : LR_TRANSPORT_DEFAULT_LISTEN;
        struct lr_announce_addr a;
        bool wild = false, loop = false;
        int port = lr_transport_local_port(d->tr, i);
        if (!listen_host(l, &a, &wild, &loop) || loop || port <= 0)
            continue;
        reachable = true;
        any_wild |= wild;
        /* "[::]" is dual-stack; "0.0.0.0" is IPv4 only. */
        any_v4 |= a.family == 4 || wild;
        any_v6 |= a.family == 6;
        bool dup = false;
        for (size_t k = 0; k < np; k++)
            dup |= ports[k] == (uint16_t)port;
        if (!dup && np < LR_ANNOUNCE_MAX_PORTS)
            ports[np++] = (uint16_t)port;
        if (!wild && na < LR_ANNOUNCE_MAX_ADDRS)
            addrs[na++] = a;
    }
    if (!reachable) {
        lr_info(MOD, "off: every listen address is a loopback one");
        return 0;
    }
    struct disc_state *st = state(d);
    struct lr_discovery_config cfg = {
        .key_path = lr_identity_key_path(d->ident),
        .name = d->cfg->name[0] ? d->cfg->name : "landropic",
        .ports = ports,
        .nports = np,
        .addrs = addrs,
        .naddrs = na,
        .port = (uint16_t)d->opts->discovery_port,
        .no_ipv4 = !any_v4,
        .no_ipv6 = !any_v6,
        .restrict_ifaces = !any_wild,
    };
    struct lr_err e = {0};
    int rc = lr_discovery_start(&d->loop, &cfg, on_seen, d, &st->disc, &e);
    if (rc < 0 && d->opts->discovery_port)
        return lr_err_set(err, rc, "discovery port %u: %s", d->opts->discovery_port, e.msg);
    if (rc < 0)
        lr_warn(MOD, "not started, peers without an address will not be found: %s", e.msg);
    return 0;
}

int disc_stop(struct lr_daemon *d, void (*done)(void *ud), void *ud)
{
    if (!d->disc || !d->disc->disc)
        return 0;
    lr_discovery_close(d->disc->disc, done, ud);
    d->disc->disc = NULL;
    return 1;
}

void disc_free(struct lr_daemon *d)
{
    free(d->disc);
    d->disc = NULL;
}

void disc_pending_note(struct lr_daemon *d, const struct lr_device_id *id, const char *name,
                       const char *const *addrs, size_t naddrs, const char *via)
{
    struct disc_state *st = state(d);
    bool fresh;
    struct heard *e = heard_get(st, id, &fresh);
    if (name)
        snprintf(e->name, sizeof(e->name), "%s", name);
    /* Where it connected from goes first; what it announced (signed) is kept. */
    char(*old)[ADDR_STRLEN] = lr_xmemdup(e->addrs, sizeof(e->addrs));
    size_t nold = e->naddrs;
    e->naddrs = 0;
    for (size_t i = 0; i < naddrs; i++)
        add_unique(e->addrs, &e->naddrs, addrs[i]);
    for (size_t i = 0; i < nold; i++)
        add_unique(e->addrs, &e->naddrs, old[i]);
    free(old);
    snprintf(e->via, sizeof(e->via), "%s", via);
    e->last_mono = uv_now(&d->loop);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    e->last_wall_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)(ts.tv_nsec / 1000000);
}

json_t *disc_pending_json(struct lr_daemon *d)
{
    json_t *arr = json_array();
    if (!d->disc)
        return arr;
    uint64_t now = uv_now(&d->loop);
    for (size_t i = 0; i < DISC_PENDING_MAX; i++) {
        const struct heard *e = &d->disc->h[i];
        if (!e->used || now - e->last_mono > DISC_PENDING_TTL_MS ||
            lr_config_find_peer(d->cfg, &e->id))
            continue;
        char id[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&e->id, id);
        json_t *addrs = json_array();
        for (size_t k = 0; k < e->naddrs; k++)
            json_array_append_new(addrs, lr_json_lossy(e->addrs[k], strlen(e->addrs[k])));
        time_t t = (time_t)(e->last_wall_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        char when[32];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_array_append_new(arr, json_pack("{s:s, s:o, s:o, s:s, s:s}", "id", id, "name",
                                             lr_json_lossy(e->name, strlen(e->name)), "addresses",
                                             addrs, "last_seen", when, "via", e->via));
    }
    return arr;
}

void disc_config_changed(struct lr_daemon *d)
{
    if (!d->disc || !d->tr || d->stopping)
        return;
    uint64_t now = uv_now(&d->loop);
    for (size_t i = 0; i < DISC_PENDING_MAX; i++) {
        const struct heard *e = &d->disc->h[i];
        if (!e->used || e->disc_mono == 0 || now - e->disc_mono > DISC_PENDING_TTL_MS)
            continue;
        const struct lr_peer_cfg *pc = lr_config_find_peer(d->cfg, &e->id);
        const struct peer_rt *p = pc ? daemon_peer(d, &e->id) : NULL;
        if (pc && pc->naddrs == 0 && !(p && p->conn) && !lr_transport_conn(d->tr, &e->id))
            dial_heard(d, e, "added");
    }
}

int disc_set_nameplate(struct lr_daemon *d, int nameplate)
{
    if (!d->disc || !d->disc->disc)
        return LR_EUNSUPPORTED;
    return lr_discovery_set_nameplate(d->disc->disc, nameplate);
}

bool disc_running(const struct lr_daemon *d)
{
    return d->disc && d->disc->disc;
}

void disc_announce_now(struct lr_daemon *d)
{
    if (d->disc && d->disc->disc)
        lr_discovery_announce(d->disc->disc);
}

size_t disc_find_nameplate(struct lr_daemon *d, unsigned nameplate, struct disc_match *out,
                           size_t max)
{
    if (!d->disc)
        return 0;
    uint64_t now = uv_now(&d->loop);
    const struct heard *found[DISC_PENDING_MAX];
    size_t n = 0;
    for (size_t i = 0; i < DISC_PENDING_MAX; i++) {
        const struct heard *e = &d->disc->h[i];
        if (e->used && e->has_nameplate && e->nameplate == nameplate && e->disc_mono &&
            now - e->disc_mono <= DISC_NAMEPLATE_TTL_MS)
            found[n++] = e;
    }
    /* Most recently heard first (n is at most DISC_PENDING_MAX: insertion sort). */
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && found[k]->disc_mono > found[k - 1]->disc_mono; k--) {
            const struct heard *t = found[k];
            found[k] = found[k - 1];
            found[k - 1] = t;
        }
    size_t m = 0;
    for (size_t i = 0; i < n && m < max; i++) {
        struct disc_match *o = &out[m++];
        memset(o, 0, sizeof(*o));
        o->id = found[i]->id;
        snprintf(o->name, sizeof(o->name), "%s", found[i]->name);
        for (size_t k = 0; k < found[i]->naddrs; k++)
            if (dialable(found[i]->addrs[k]))
                snprintf(o->addrs[o->naddrs++], sizeof(o->addrs[0]), "%s", found[i]->addrs[k]);
    }
    return m;
}
