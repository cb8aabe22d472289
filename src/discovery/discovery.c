/*
 * discovery.c - multicast announcement sockets, timers and receive limits.
 *
 * Sockets are made with plain socket()/setsockopt() (libuv has no per-send
 * interface choice) and handed to uv_udp_t for reading; sends are
 * synchronous sendto() calls, one per interface: a dropped announcement
 * (EAGAIN) is repeated by the next period anyway, so nothing is queued.
 */
#include "discovery/discovery.h"

#include "util/log.h"
#include "util/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#define MOD "discovery"

#define RXBUF 2048

#define IFACE_ADDRS 4

struct iface {
    unsigned index;
    bool v4, v6; /* has an IPv4 address / an IPv6 link-local address */
    /* Its IPv4 and non-link-local IPv6 addresses, announced as hints when the
     * daemon listens on the wildcard: a receiver that hears the IPv6 copy
     * first (whose link-local source it cannot dial) still learns them. */
    struct lr_announce_addr addrs[IFACE_ADDRS];
    size_t naddrs;
};

struct bucket {
    double tokens;
    uint64_t last_ms;
};

struct src_slot {
    struct sockaddr_storage addr; /* port zeroed */
    struct bucket b;
    bool used;
};

struct dsock {
    uv_udp_t h;
    struct lr_discovery *d;
    int family;
    bool open;
};

struct lr_discovery {
    uv_loop_t *loop;
    lr_discovery_cb cb;
    void *ud;
    struct lr_announce_signer *signer;
    struct lr_announce tmpl; /* name, ports, addresses */
    uint16_t port;
    uint64_t interval_ms;
    bool restrict_ifaces;

    struct dsock s4, s6;
    uv_timer_t tick;
    int closes;
    void (*done)(void *ud);
    void *done_ud;

    struct iface ifs[LR_DISCOVERY_MAX_IFACES];
    size_t nifs;
    uint64_t next_announce; /* uv_now */
    uint64_t last_sent;     /* uv_now of the last send, 0 = never */
    uint64_t next_ifcheck;
    bool pending; /* an on-demand send waits for the gap to end */

    struct src_slot src[LR_DISCOVERY_SRC_SLOTS];
    struct bucket global;
    struct lr_announce_replay *replay;
    uint8_t rx[RXBUF];
    struct lr_discovery_stats st;
};

static struct in_addr group4;
static struct in6_addr group6;

/* ---- interfaces ---- */

static struct iface *iface_get(struct iface *ifs, size_t *n, unsigned index)
{
    for (size_t i = 0; i < *n; i++)
        if (ifs[i].index == index)
            return &ifs[i];
    if (*n == LR_DISCOVERY_MAX_IFACES)
        return NULL;
    struct iface *f = &ifs[(*n)++];
    memset(f, 0, sizeof(*f));
    f->index = index;
    return f;
}

static bool holds_hint(const struct lr_discovery *d, const struct sockaddr *sa)
{
    for (size_t i = 0; i < d->tmpl.naddrs; i++) {
        const struct lr_announce_addr *h = &d->tmpl.addrs[i];
        if (h->family == 4 && sa->sa_family == AF_INET &&
            memcmp(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, h->a, 4) == 0)
            return true;
        if (h->family == 6 && sa->sa_family == AF_INET6 &&
            memcmp(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, h->a, 16) == 0)
            return true;
    }
    return false;
}

/* Read the current interface list; true if it differs from the last one. */
static bool ifaces_refresh(struct lr_discovery *d)
{
    struct iface ifs[LR_DISCOVERY_MAX_IFACES];
    size_t n = 0;
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) < 0) {
        lr_warn(MOD, "getifaddrs: %s", strerror(errno));
        return false;
    }
    /* With restrict_ifaces, only interfaces holding one of the announced addresses. */
    unsigned allowed[LR_DISCOVERY_MAX_IFACES];
    size_t nallowed = 0;
    for (struct ifaddrs *a = all; d->restrict_ifaces && a; a = a->ifa_next)
        if (a->ifa_addr && holds_hint(d, a->ifa_addr) && nallowed < LR_DISCOVERY_MAX_IFACES)
            allowed[nallowed++] = if_nametoindex(a->ifa_name);
    for (struct ifaddrs *a = all; a; a = a->ifa_next) {
        if (!a->ifa_addr || !(a->ifa_flags & IFF_UP) || !(a->ifa_flags & IFF_MULTICAST) ||
            (a->ifa_flags & IFF_LOOPBACK))
            continue;
        int fam = a->ifa_addr->sa_family;
        if (fam != AF_INET && fam != AF_INET6)
            continue;
        if (d->restrict_ifaces) {
            unsigned ix = if_nametoindex(a->ifa_name);
            bool ok = false;
            for (size_t i = 0; i < nallowed && !ok; i++)
                ok = allowed[i] == ix;
            if (!ok)
                continue;
        }
        unsigned idx = if_nametoindex(a->ifa_name);
        if (idx == 0)
            continue;
        struct iface *f = iface_get(ifs, &n, idx);
        if (!f)
            continue;
        struct lr_announce_addr h = {0};
        if (fam == AF_INET) {
            f->v4 = true;
            h.family = 4;
            memcpy(h.a, &((struct sockaddr_in *)(void *)a->ifa_addr)->sin_addr, 4);
        } else {
            const struct in6_addr *a6 = &((struct sockaddr_in6 *)(void *)a->ifa_addr)->sin6_addr;
            if (IN6_IS_ADDR_LINKLOCAL(a6)) {
                f->v6 = true;
            } else {
                h.family = 6;
                memcpy(h.a, a6, 16);
            }
        }
        if (h.family && f->naddrs < IFACE_ADDRS)
            f->addrs[f->naddrs++] = h;
    }
    freeifaddrs(all);
    bool changed = n != d->nifs || memcmp(ifs, d->ifs, n * sizeof(ifs[0])) != 0;
    memcpy(d->ifs, ifs, n * sizeof(ifs[0]));
    d->nifs = n;
    return changed;
}

/* Join the groups on every interface; "already joined" is fine. */
static void ifaces_join(struct lr_discovery *d)
{
    for (size_t i = 0; i < d->nifs; i++) {
        const struct iface *f = &d->ifs[i];
        if (f->v4 && d->s4.open) {
            struct ip_mreqn m = {.imr_multiaddr = group4, .imr_ifindex = (int)f->index};
            int fd = -1;
            uv_fileno((uv_handle_t *)&d->s4.h, &fd);
            if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m)) < 0 &&
                errno != EADDRINUSE)
                lr_debug(MOD, "join %s on if=%u: %s", LR_DISCOVERY_GROUP4, f->index,
                         strerror(errno));
        }
        if (f->v6 && d->s6.open) {
            struct ipv6_mreq m = {.ipv6mr_multiaddr = group6, .ipv6mr_interface = f->index};
            int fd = -1;
            uv_fileno((uv_handle_t *)&d->s6.h, &fd);
            if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof(m)) < 0 &&
                errno != EADDRINUSE)
                lr_debug(MOD, "join %s on if=%u: %s", LR_DISCOVERY_GROUP6, f->index,
                         strerror(errno));
        }
    }
}

/* ---- sending ---- */

/* One signed datagram per interface: its hints are that interface's addresses. */
static bool sign_for(struct lr_discovery *d, const struct iface *f, struct lr_buf *b)
{
    struct lr_announce a = d->tmpl;
    for (size_t i = 0; !d->restrict_ifaces && i < f->naddrs; i++) {
        const struct lr_announce_addr *h = &f->addrs[i];
        if ((h->family == 4 && !d->s4.open) || (h->family == 6 && !d->s6.open) ||
            a.naddrs == LR_ANNOUNCE_MAX_ADDRS)
            continue;
        a.addrs[a.naddrs++] = *h;
    }
    lr_buf_reset(b);
    struct lr_err err = {0};
    if (lr_announce_sign(d->signer, &a, lr_announce_now_ms(), b, &err) < 0) {
        lr_warn(MOD, "cannot build announcement: %s", err.msg);
        return false;
    }
    return true;
}

static void send_now(struct lr_discovery *d)
{
    struct lr_buf b;
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    d->last_sent = uv_now(d->loop);
    d->pending = false;
    d->st.rounds++;
    unsigned sent = 0;
    for (size_t i = 0; i < d->nifs; i++) {
        const struct iface *f = &d->ifs[i];
        if (!sign_for(d, f, &b))
            continue;
        int fd = -1;
        if (f->v4 && d->s4.open && uv_fileno((uv_handle_t *)&d->s4.h, &fd) == 0) {
            struct ip_mreqn m = {.imr_ifindex = (int)f->index};
            struct sockaddr_in to = {
                .sin_family = AF_INET, .sin_port = htons(d->port), .sin_addr = group4};
            if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof(m)) < 0 ||
                sendto(fd, b.data, b.len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
                d->st.send_errors++;
                lr_debug(MOD, "send on if=%u (IPv4): %s", f->index, strerror(errno));
            } else {
                d->st.sent++;
                sent++;
            }
        }
        if (f->v6 && d->s6.open && uv_fileno((uv_handle_t *)&d->s6.h, &fd) == 0) {
            unsigned idx = f->index;
            struct sockaddr_in6 to = {.sin6_family = AF_INET6,
                                      .sin6_port = htons(d->port),
                                      .sin6_addr = group6,
                                      .sin6_scope_id = idx};
            if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx, sizeof(idx)) < 0 ||
                sendto(fd, b.data, b.len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
                d->st.send_errors++;
                lr_debug(MOD, "send on if=%u (IPv6): %s", f->index, strerror(errno));
            } else {
                d->st.sent++;
                sent++;
            }
        }
    }
    lr_debug(MOD, "announced on %u interface/family pairs", sent);
    lr_buf_release(&b);
}

static uint64_t jittered(uint64_t ms)
{
    /* +-20 %, so devices started together drift apart instead of bursting in step. */
    uint64_t span = ms / 5;
    if (span == 0)
        return ms;
    uint32_t r =
        randombytes_uniform((uint32_t)(span * 2 + 1 > UINT32_MAX ? UINT32_MAX : span * 2 + 1));
    return ms - span + r;
}

static void on_tick(uv_timer_t *t);

/* Sleep until the next thing to do (no fixed tick: idle laptops stay idle). */
static void rearm(struct lr_discovery *d)
{
    uint64_t now = uv_now(d->loop);
    uint64_t at = d->next_announce < d->next_ifcheck ? d->next_announce : d->next_ifcheck;
    if (d->pending && d->last_sent + LR_DISCOVERY_MIN_GAP_MS < at)
        at = d->last_sent + LR_DISCOVERY_MIN_GAP_MS;
    uv_timer_start(&d->tick, on_tick, at > now ? at - now : 0, 0);
}

void lr_discovery_announce(struct lr_discovery *d)
{
    uint64_t now = uv_now(d->loop);
    if (d->last_sent && now - d->last_sent < LR_DISCOVERY_MIN_GAP_MS) {
        d->pending = true; /* sent when the gap ends */
        rearm(d);
        return;
    }
    send_now(d);
    d->next_announce = now + jittered(d->interval_ms);
    rearm(d);
}

int lr_discovery_set_nameplate(struct lr_discovery *d, int nameplate)
{
    if (nameplate < -1 || nameplate > LR_ANNOUNCE_NAMEPLATE_MAX)
        return LR_EBADVAL;
    bool has = nameplate >= 0;
    uint16_t v = has ? (uint16_t)nameplate : 0;
    if (has == d->tmpl.has_nameplate && v == d->tmpl.nameplate)
        return 0;
    d->tmpl.has_nameplate = has;
    d->tmpl.nameplate = v;
    lr_discovery_announce(d);
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    struct lr_discovery *d = t->data;
    uint64_t now = uv_now(d->loop);
    if (now >= d->next_ifcheck) {
        d->next_ifcheck = now + LR_DISCOVERY_IFCHECK_MS;
        if (ifaces_refresh(d)) {
            lr_info(MOD, "interfaces changed (%zu usable): joining and announcing", d->nifs);
            ifaces_join(d);
            d->pending = true;
        }
    }
    if (now >= d->next_announce || (d->pending && now - d->last_sent >= LR_DISCOVERY_MIN_GAP_MS)) {
        send_now(d);
        d->next_announce = now + jittered(d->interval_ms);
    }
    rearm(d);
}

/* ---- receiving ---- */

static bool bucket_take(struct bucket *b, uint64_t now, double rate, double burst)
{
    if (b->last_ms == 0) {
        b->tokens = burst;
    } else if (now > b->last_ms) {
        b->tokens += (double)(now - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    b->last_ms = now ? now : 1;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (b->sa_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)(const void *)b)->sin_addr.s_addr;
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)(const void *)a;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)(const void *)b;
    return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id;
}

static bool src_allowed(struct lr_discovery *d, const struct sockaddr *from, uint64_t now)
{
    struct src_slot *slot = NULL, *lru = NULL;
    for (size_t i = 0; i < LR_DISCOVERY_SRC_SLOTS; i++) {
        struct src_slot *s = &d->src[i];
        if (s->used && same_ip(&s->addr, from)) {
            slot = s;
            break;
        }
        if (!lru || !s->used || (lru->used && s->b.last_ms < lru->b.last_ms))
            lru = s;
    }
    if (!slot) {
        slot = lru;
        memset(slot, 0, sizeof(*slot));
        slot->used = true;
        memcpy(&slot->addr, from,
               from->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6));
    }
    return bucket_take(&slot->b, now, LR_DISCOVERY_SRC_RATE, 3.0 * LR_DISCOVERY_SRC_RATE);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct dsock *s = h->data;
    buf->base = (char *)s->d->rx;
    buf->len = sizeof(s->d->rx);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags)
{
    struct dsock *s = h->data;
    struct lr_discovery *d = s->d;
    if (nread < 0) {
        lr_debug(MOD, "recv: %s", uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || !from)
        return;
    d->st.received++;
    uint64_t now = uv_now(d->loop);
    if (!src_allowed(d, from, now) ||
        !bucket_take(&d->global, now, LR_DISCOVERY_GLOBAL_RATE, LR_DISCOVERY_GLOBAL_RATE)) {
        d->st.rate_limited++;
        return;
    }
    struct lr_discovery_seen seen;
    memset(&seen, 0, sizeof(seen));
    memcpy(&seen.from, from,
           from->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    if (from->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)from)->sin_addr,
                  seen.from_ip, sizeof(seen.from_ip));
    } else {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)(const void *)from;
        inet_ntop(AF_INET6, &a6->sin6_addr, seen.from_ip, sizeof(seen.from_ip));
        seen.ifindex = a6->sin6_scope_id;
        char ifn[IF_NAMESIZE];
        if (a6->sin6_scope_id && if_indextoname(a6->sin6_scope_id, ifn)) {
            size_t l = strlen(seen.from_ip);
            snprintf(seen.from_ip + l, sizeof(seen.from_ip) - l, "%%%s", ifn);
        }
    }
    struct lr_announce a;
    struct lr_err err = {0};
    seen.recv_ms = lr_announce_now_ms();
    bool truncated = (flags & UV_UDP_PARTIAL) != 0;
    if (truncated ||
        lr_announce_decode((const uint8_t *)buf->base, (size_t)nread, seen.recv_ms, &a, &err) < 0) {
        d->st.invalid++;
        lr_debug(MOD, "ignored datagram from %s (%zd bytes): %s", seen.from_ip, nread,
                 truncated ? "truncated" : err.msg);
        return;
    }
    if (lr_device_id_eq(&a.id, lr_announce_signer_id(d->signer))) {
        d->st.own++;
        return;
    }
    if (lr_announce_replay_check(d->replay, &a, seen.recv_ms, &err) < 0) {
        d->st.replayed++;
        lr_debug(MOD, "ignored announcement from %s: %s", seen.from_ip, err.msg);
        return;
    }
    d->st.accepted++;
    seen.ann = &a;
    d->cb(d->ud, &seen);
}

/* ---- lifecycle ---- */

static int open_sock(struct lr_discovery *d, struct dsock *s, int family, struct lr_err *err)
{
    const char *what = family == AF_INET ? "IPv4" : "IPv6";
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return lr_err_set(err, -errno, "discovery %s socket: %s", what, strerror(errno));
    int one = 1, ttl = 1;
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    if (family == AF_INET) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(d->port)};
        if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl)) < 0 ||
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            goto fail;
    } else {
        struct sockaddr_in6 a = {
            .sin6_family = AF_INET6, .sin6_port = htons(d->port), .sin6_addr = in6addr_any};
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0 ||
            setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof(ttl)) < 0 ||
            setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            goto fail;
    }
    uv_udp_init(d->loop, &s->h);
    s->h.data = s;
    s->d = d; /* the handle exists from here: close_all closes it */
    s->family = family;
    if ((rc = uv_udp_open(&s->h, fd)) < 0) {
        close(fd); /* not taken over by the handle */
        return lr_err_set(err, rc, "discovery %s socket: %s", what, uv_strerror(rc));
    }
    if ((rc = uv_udp_recv_start(&s->h, on_alloc, on_recv)) < 0)
        return lr_err_set(err, rc, "discovery %s receive: %s", what, uv_strerror(rc));
    s->open = true;
    return 0;
fail:
    rc = -errno;
    close(fd);
    return lr_err_set(err, rc, "discovery %s socket on port %u: %s", what, d->port, strerror(-rc));
}

static void on_closed(uv_handle_t *h)
{
    struct lr_discovery *d = h->data;
    if (h->type == UV_UDP)
        d = ((struct dsock *)h->data)->d;
    if (--d->closes > 0)
        return;
    void (*done)(void *) = d->done;
    void *ud = d->done_ud;
    lr_announce_signer_free(d->signer);
    lr_announce_replay_free(d->replay);
    free(d);
    if (done)
        done(ud);
}

static void close_all(struct lr_discovery *d)
{
    d->closes = 1;
    uv_close((uv_handle_t *)&d->tick, on_closed);
    if (d->s4.d) {
        d->closes++;
        uv_close((uv_handle_t *)&d->s4.h, on_closed);
    }
    if (d->s6.d) {
        d->closes++;
        uv_close((uv_handle_t *)&d->s6.h, on_closed);
    }
}

int lr_discovery_start(uv_loop_t *loop, const struct lr_discovery_config *cfg, lr_discovery_cb cb,
                       void *ud, struct lr_discovery **out, struct lr_err *err)
{
    *out = NULL;
    if (!cfg->key_path || !cfg->name || !cb || cfg->nports > LR_ANNOUNCE_MAX_PORTS ||
        cfg->naddrs > LR_ANNOUNCE_MAX_ADDRS || (cfg->no_ipv4 && cfg->no_ipv6))
        return lr_err_set(err, LR_EUSAGE, "invalid discovery configuration");
    inet_pton(AF_INET, LR_DISCOVERY_GROUP4, &group4);
    inet_pton(AF_INET6, LR_DISCOVERY_GROUP6, &group6);
    struct lr_discovery *d = lr_xcalloc(1, sizeof(*d));
    d->loop = loop;
    d->cb = cb;
    d->ud = ud;
    d->port = cfg->port ? cfg->port : LR_DISCOVERY_PORT;
    d->interval_ms = cfg->interval_ms ? cfg->interval_ms : LR_DISCOVERY_INTERVAL_MS;
    d->restrict_ifaces = cfg->restrict_ifaces && cfg->naddrs > 0;
    snprintf(d->tmpl.name, sizeof(d->tmpl.name), "%s", cfg->name);
    for (size_t i = 0; i < cfg->nports; i++)
        if (cfg->ports[i])
            d->tmpl.ports[d->tmpl.nports++] = cfg->ports[i];
    for (size_t i = 0; i < cfg->naddrs; i++)
        d->tmpl.addrs[d->tmpl.naddrs++] = cfg->addrs[i];
    /* Check the template once, so a bad name fails here and not every period. */
    struct lr_buf probe;
    lr_buf_init(&probe, LR_ANNOUNCE_MAX);
    int rc = lr_announce_encode_body(&d->tmpl, &probe, err);
    lr_buf_release(&probe);
    if (rc < 0 || (rc = lr_announce_signer_load(cfg->key_path, &d->signer, err)) < 0) {
        free(d);
        return rc;
    }
    d->replay = lr_announce_replay_new(LR_DISCOVERY_REPLAY_SLOTS);

    struct lr_err e4 = {0}, e6 = {0};
    int rc4 = cfg->no_ipv4 ? LR_EUSAGE : open_sock(d, &d->s4, AF_INET, &e4);
    int rc6 = cfg->no_ipv6 ? LR_EUSAGE : open_sock(d, &d->s6, AF_INET6, &e6);
    uv_timer_init(loop, &d->tick);
    d->tick.data = d;
    if (rc4 < 0 && rc6 < 0) {
        rc = cfg->no_ipv4 ? lr_err_set(err, rc6, "%s", e6.msg) : lr_err_set(err, rc4, "%s", e4.msg);
        close_all(d);
        return rc;
    }
    if (rc4 < 0 && !cfg->no_ipv4)
        lr_warn(MOD, "%s (IPv4 discovery off)", e4.msg);
    if (rc6 < 0 && !cfg->no_ipv6)
        lr_warn(MOD, "%s (IPv6 discovery off)", e6.msg);
    ifaces_refresh(d);
    ifaces_join(d);
    uv_update_time(loop); /* the loop's clock may be stale if it has not run yet */
    uint64_t now = uv_now(loop);
    d->next_ifcheck = now + LR_DISCOVERY_IFCHECK_MS;
    send_now(d);
    d->next_announce = now + jittered(d->interval_ms);
    rearm(d);
    lr_info(MOD, "started port=%u interfaces=%zu ipv4=%s ipv6=%s", d->port, d->nifs,
            d->s4.open ? "yes" : "no", d->s6.open ? "yes" : "no");
    *out = d;
    return 0;
}

void lr_discovery_get_stats(const struct lr_discovery *d, struct lr_discovery_stats *out)
{
    *out = d->st;
}

uint16_t lr_discovery_port(const struct lr_discovery *d)
{
    return d->port;
}

void lr_discovery_close(struct lr_discovery *d, void (*done)(void *ud), void *ud)
{
    if (!d)
        return;
    d->done = done;
    d->done_ud = ud;
    uv_timer_stop(&d->tick);
    close_all(d);
}
