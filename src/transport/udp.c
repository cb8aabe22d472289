/*
 * udp.c - the transport's UDP sockets: binding, batched sends (UDP_SEGMENT)
 * and receives (recvmmsg + UDP_GRO), local addresses via pktinfo.
 */
#include "transport/transport_int.h"

#include "util/log.h"
#include "util/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOD "transport"

int lr__addr_parse(const char *s, struct lr__addr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    size_t hl;
    bool v6 = false;

    memset(out, 0, sizeof(*out));
    if (!s)
        return LR_EUSAGE;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':')
            return LR_EUSAGE;
        hl = (size_t)(e - s - 1);
        if (hl == 0 || hl >= sizeof(host))
            return LR_EUSAGE;
        memcpy(host, s + 1, hl);
        port = e + 2;
        v6 = true;
    } else {
        const char *e = strrchr(s, ':');
        if (!e)
            return LR_EUSAGE;
        hl = (size_t)(e - s);
        if (hl == 0 || hl >= sizeof(host))
            return LR_EUSAGE;
        memcpy(host, s, hl);
        port = e + 1;
    }
    host[hl] = '\0';
    if (*port < '0' || *port > '9')
        return LR_EUSAGE;
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (errno || *end || p > 65535)
        return LR_EUSAGE;

    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return LR_EUSAGE;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)p);
        out->len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&out->ss;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return LR_EUSAGE;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p);
        out->len = sizeof(*a);
    }
    return 0;
}

void lr__addr_fmt(const struct sockaddr *sa, char *out, size_t n)
{
    char h[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, h, sizeof(h));
        snprintf(out, n, "%s:%u", h, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], h, sizeof(h));
            snprintf(out, n, "%s:%u", h, ntohs(a->sin6_port));
        } else {
            inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof(h));
            snprintf(out, n, "[%s]:%u", h, ntohs(a->sin6_port));
        }
    } else {
        snprintf(out, n, "?");
    }
}

static bool addr_is_wildcard(const struct lr__addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static void set_bufsize(int fd, int opt, const char *name)
{
    int v = LR__SOCKBUF;
    socklen_t l = sizeof(v);
    (void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
    if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0 && v < LR__SOCKBUF)
        lr_debug(MOD, "socket %s capped at %d bytes (see net.core.%cmem_max)", name, v,
                 opt == SO_RCVBUF ? 'r' : 'w');
}

int lr__sock_open(struct lr__sock *s, const struct lr__addr *a, bool v6only, bool no_gso,
                  bool no_gro, struct lr_err *err)
{
    int one = 1, zero = 0, rc;
    char as[64];
    lr__addr_fmt((const struct sockaddr *)&a->ss, as, sizeof(as));

    s->family = a->ss.ss_family;
    s->wildcard = addr_is_wildcard(a);
    s->fd = socket(s->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return lr_err_set(err, -errno, "socket for %s: %s", as, strerror(errno));
    if (s->family == AF_INET6 && s->wildcard &&
        setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof(zero)) < 0) {
        rc = lr_err_set(err, -errno, "dual-stack %s: %s", as, strerror(errno));
        goto fail;
    }
    if (bind(s->fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        rc = lr_err_set(err, -errno, "bind %s: %s", as, strerror(errno));
        goto fail;
    }
    s->local.len = sizeof(s->local.ss);
    if (getsockname(s->fd, (struct sockaddr *)&s->local.ss, &s->local.len) < 0) {
        rc = lr_err_set(err, -errno, "getsockname %s: %s", as, strerror(errno));
        goto fail;
    }
    set_bufsize(s->fd, SO_RCVBUF, "receive buffer");
    set_bufsize(s->fd, SO_SNDBUF, "send buffer");
    if (s->wildcard) {
        if (s->family == AF_INET)
            rc = setsockopt(s->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
        else
            rc = setsockopt(s->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
        if (rc < 0) {
            rc = lr_err_set(err, -errno, "pktinfo on %s: %s", as, strerror(errno));
            goto fail;
        }
    }
    s->gro = !no_gro && setsockopt(s->fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    s->gso = !no_gso;
    return 0;
fail:
    close(s->fd);
    s->fd = -1;
    return rc;
}

void lr__sock_release(struct lr__sock *s)
{
    free(s->rxbuf);
    s->rxbuf = NULL;
}

/* Control message for the source address of a wildcard socket. */
static size_t put_pktinfo(const struct lr__sock *s, const ngtcp2_addr *local, struct msghdr *m,
                          size_t off)
{
    struct cmsghdr *cm = (struct cmsghdr *)((uint8_t *)m->msg_control + off);
    if (s->family == AF_INET && local->addr->sa_family == AF_INET) {
        struct in_pktinfo pi;
        memset(&pi, 0, sizeof(pi));
        pi.ipi_spec_dst = ((const struct sockaddr_in *)local->addr)->sin_addr;
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    if (s->family == AF_INET6 && local->addr->sa_family == AF_INET6) {
        struct in6_pktinfo pi;
        memset(&pi, 0, sizeof(pi));
        pi.ipi6_addr = ((const struct sockaddr_in6 *)local->addr)->sin6_addr;
        cm->cmsg_level = IPPROTO_IPV6;
        cm->cmsg_type = IPV6_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    return 0;
}

static ssize_t send_one(struct lr__sock *s, const ngtcp2_path *path, const uint8_t *data,
                        size_t len, size_t segsz)
{
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } ctrl;
    struct iovec iov = {.iov_base = (void *)(uintptr_t)data, .iov_len = len};
    struct msghdr m;
    size_t cl = 0;
    memset(&m, 0, sizeof(m));
    memset(&ctrl, 0, sizeof(ctrl));
    m.msg_name = path->remote.addr;
    m.msg_namelen = path->remote.addrlen;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctrl.buf;
    if (segsz < len) {
        struct cmsghdr *cm = (struct cmsghdr *)ctrl.buf;
        uint16_t seg = (uint16_t)segsz;
        cm->cmsg_level = IPPROTO_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(seg));
        memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
        cl += CMSG_SPACE(sizeof(seg));
    }
    if (s->wildcard)
        cl += put_pktinfo(s, &path->local, &m, cl);
    m.msg_controllen = cl;
    if (cl == 0)
        m.msg_control = NULL;
    ssize_t n;
    do {
        n = sendmsg(s->fd, &m, 0);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int lr__path_error(int neg_errno)
{
    switch (-neg_errno) {
    case EINVAL:
    case EADDRNOTAVAIL:
        return LR__PATH_GONE;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
        return LR__PATH_DOWN;
    default:
        return LR__PATH_OK;
    }
}

int lr__sock_send(struct lr__sock *s, const ngtcp2_path *path, const uint8_t *data, size_t len,
                  size_t segsz, size_t *done)
{
    *done = 0;
    int path_rc = 0;
    bool too_big = false;
    if (segsz == 0 || segsz > len)
        segsz = len;
    while (*done < len) {
        size_t left = len - *done;
        bool batch = s->gso && segsz < left;
        size_t n = batch ? left : (segsz < left ? segsz : left);
#ifdef LR_FAILPOINTS
        if (s->fp_eagain_every && ++s->fp_sends % s->fp_eagain_every == 0) {
            /* Partial progress first when there is more than one segment. */
            if (left > segsz && send_one(s, path, data + *done, segsz, segsz) >= 0)
                *done += segsz;
            return -EAGAIN;
        }
        if (s->fp_drop_every) {
            /* One datagram at a time, so that exactly every Nth is lost. */
            batch = false;
            n = segsz < left ? segsz : left;
            if (++s->fp_datagrams % s->fp_drop_every == 0) {
                *done += n;
                continue;
            }
        }
#endif
        ssize_t rc = send_one(s, path, data + *done, n, batch ? segsz : n);
        if (rc == -EAGAIN || rc == -EWOULDBLOCK)
            return -EAGAIN;
        if (rc == -EIO && batch) {
            /* EIO from a GSO send: the device cannot segment; send one by one from now on. */
            lr_info(MOD, "UDP_SEGMENT unsupported on this path, sending unbatched");
            s->gso = false;
            continue;
        }
        if (rc < 0) {
            lr_debug(MOD, "sendmsg: %s (packets dropped)", strerror((int)-rc));
            if (!path_rc && lr__path_error((int)rc))
                path_rc = (int)rc;
            too_big |= rc == -EMSGSIZE;
        }
        *done += n;
    }
    return path_rc ? path_rc : too_big ? -EMSGSIZE : 0;
}

void lr__sock_read(struct lr__sock *s, lr__rx_cb cb, int max_rounds)
{
    size_t batch = s->gro ? LR__RX_BATCH : 1;
    struct mmsghdr msgs[LR__RX_BATCH];
    struct iovec iov[LR__RX_BATCH];
    struct sockaddr_storage from[LR__RX_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } ctrl[LR__RX_BATCH];
    size_t bufsz = LR__RX_BUFSZ; /* a whole GRO super-packet, or one packet from this host */

    if (!s->rxbuf)
        s->rxbuf = lr_xmallocarray(LR__RX_BATCH, LR__RX_BUFSZ);

    for (int round = 0; round < max_rounds; round++) {
        memset(msgs, 0, sizeof(msgs[0]) * batch);
        for (size_t i = 0; i < batch; i++) {
            iov[i].iov_base = s->rxbuf + i * LR__RX_BUFSZ;
            iov[i].iov_len = bufsz;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = ctrl[i].buf;
            msgs[i].msg_hdr.msg_controllen = sizeof(ctrl[i].buf);
        }
        int n = recvmmsg(s->fd, msgs, (unsigned)batch, 0, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                lr_debug(MOD, "recvmmsg: %s", strerror(errno));
            return;
        }
        for (int i = 0; i < n; i++) {
            struct msghdr *m = &msgs[i].msg_hdr;
            size_t len = msgs[i].msg_len, seg = len;
            struct lr__addr local = s->local;
            for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
                if (cm->cmsg_level == IPPROTO_UDP && cm->cmsg_type == UDP_GRO) {
                    int g;
                    memcpy(&g, CMSG_DATA(cm), sizeof(g));
                    if (g > 0)
                        seg = (size_t)g;
                } else if (s->wildcard && cm->cmsg_level == IPPROTO_IP &&
                           cm->cmsg_type == IP_PKTINFO && s->family == AF_INET) {
                    struct in_pktinfo pi;
                    memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
                    ((struct sockaddr_in *)&local.ss)->sin_addr = pi.ipi_addr;
                } else if (s->wildcard && cm->cmsg_level == IPPROTO_IPV6 &&
                           cm->cmsg_type == IPV6_PKTINFO && s->family == AF_INET6) {
                    struct in6_pktinfo pi;
                    memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
                    ((struct sockaddr_in6 *)&local.ss)->sin6_addr = pi.ipi6_addr;
                }
            }
            ngtcp2_path path = {
                .local = {.addr = (ngtcp2_sockaddr *)&local.ss, .addrlen = local.len},
                .remote = {.addr = (ngtcp2_sockaddr *)&from[i], .addrlen = m->msg_namelen},
            };
            const uint8_t *p = iov[i].iov_base;
            for (size_t off = 0; off < len; off += seg)
                cb(s, &path, p + off, len - off < seg ? len - off : seg);
        }
        if ((size_t)n < batch)
            return;
    }
}

int lr__sock_local_for(const struct lr__sock *s, const struct lr__addr *remote,
                       struct lr__addr *local_out, struct lr__addr *remote_out)
{
    *remote_out = *remote;
    if (s->family == AF_INET6 && remote->ss.ss_family == AF_INET) {
        /* A dual-stack socket sees IPv4 peers as v4-mapped addresses. */
        const struct sockaddr_in *r4 = (const struct sockaddr_in *)&remote->ss;
        struct sockaddr_in6 *r6 = (struct sockaddr_in6 *)&remote_out->ss;
        memset(remote_out, 0, sizeof(*remote_out));
        r6->sin6_family = AF_INET6;
        r6->sin6_port = r4->sin_port;
        r6->sin6_addr.s6_addr[10] = 0xff;
        r6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&r6->sin6_addr.s6_addr[12], &r4->sin_addr, 4);
        remote_out->len = sizeof(*r6);
    } else if (s->family != remote->ss.ss_family) {
        return LR_EUSAGE;
    }
    *local_out = s->local;
    if (!s->wildcard)
        return 0;
    /* ngtcp2 drops packets whose path differs from the connection's: learn the
     * concrete source address the kernel would pick, as the receive path reports it. */
    int fd = socket(s->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct lr__addr l = {.len = sizeof(l.ss)};
    int rc = 0;
    if (connect(fd, (const struct sockaddr *)&remote_out->ss, remote_out->len) < 0 ||
        getsockname(fd, (struct sockaddr *)&l.ss, &l.len) < 0)
        rc = -errno;
    close(fd);
    if (rc < 0)
        return rc;
    if (l.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&l.ss)->sin_port =
            ((const struct sockaddr_in *)&s->local.ss)->sin_port;
    else
        ((struct sockaddr_in6 *)&l.ss)->sin6_port =
            ((const struct sockaddr_in6 *)&s->local.ss)->sin6_port;
    *local_out = l;
    return 0;
}

/* The IPv4 address of a v4 or v4-mapped v6 address into *v4; false for other v6 addresses. */
static bool addr_v4(const struct sockaddr *sa, struct in_addr *v4)
{
    if (sa->sa_family == AF_INET) {
        *v4 = ((const struct sockaddr_in *)sa)->sin_addr;
        return true;
    }
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (sa->sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(a6))
        return false;
    memcpy(v4, &a6->s6_addr[12], 4);
    return true;
}

bool lr__addr_gone(const struct sockaddr *sa)
{
    struct in_addr a4;
    bool v4 = addr_v4(sa, &a4);
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!v4 && (sa->sa_family != AF_INET6 || IN6_IS_ADDR_UNSPECIFIED(a6)))
        return false;
    if (v4 && a4.s_addr == htonl(INADDR_ANY))
        return false;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return false; /* cannot tell: not gone */
    bool found = false;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
        const struct sockaddr *ia = i->ifa_addr;
        if (!ia)
            continue;
        if (v4 && ia->sa_family == AF_INET)
            found = ((const struct sockaddr_in *)ia)->sin_addr.s_addr == a4.s_addr;
        else if (!v4 && ia->sa_family == AF_INET6)
            found = memcmp(&((const struct sockaddr_in6 *)ia)->sin6_addr, a6, sizeof(*a6)) == 0;
    }
    freeifaddrs(ifs);
    return !found;
}

bool lr__path_on_host(const struct sockaddr *local, const struct sockaddr *remote)
{
    struct in_addr l4 = {0}, r4 = {0}; /* read only where addr_v4 set them; gcc -O3 cannot see it */
    bool lv4 = addr_v4(local, &l4), rv4 = addr_v4(remote, &r4);
    if (rv4 && (ntohl(r4.s_addr) >> 24) == 127)
        return true;
    if (rv4 || lv4)
        return rv4 && lv4 && l4.s_addr == r4.s_addr;
    if (local->sa_family != AF_INET6 || remote->sa_family != AF_INET6)
        return false;
    const struct in6_addr *l6 = &((const struct sockaddr_in6 *)local)->sin6_addr;
    const struct in6_addr *r6 = &((const struct sockaddr_in6 *)remote)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(r6))
        return true;
    /* A link-local address names an interface too: equal scopes only. */
    return memcmp(l6, r6, sizeof(*l6)) == 0 &&
           ((const struct sockaddr_in6 *)local)->sin6_scope_id ==
               ((const struct sockaddr_in6 *)remote)->sin6_scope_id;
}
