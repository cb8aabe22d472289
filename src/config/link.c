/*
 * link.c - landropic:// peer links (see link.h).
 */
#include "config/link.h"

#include "config/config.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool lr_peer_link_is(const char *s)
{
    return s && strncasecmp(s, LR_PEER_LINK_PREFIX, strlen(LR_PEER_LINK_PREFIX)) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode %XX escapes of [p, p+n) into a new string; NULL on a bad escape or a NUL. */
static char *unescape(const char *p, size_t n)
{
    char *out = lr_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(p[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        out[k++] = c;
    }
    out[k] = 0;
    return out;
}

void lr_peer_link_release(struct lr_peer_link *l)
{
    for (size_t i = 0; i < l->naddrs; i++)
        free(l->addrs[i]);
    memset(l, 0, sizeof(*l));
}

int lr_peer_link_parse(const char *s, struct lr_peer_link *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!lr_peer_link_is(s))
        return lr_err_set(err, LR_EUSAGE, "not a %s link", LR_PEER_LINK_PREFIX);
    size_t len = strlen(s);
    if (len > LR_PEER_LINK_MAX)
        return lr_err_set(err, LR_EUSAGE, "link of %zu bytes (at most %d)", len, LR_PEER_LINK_MAX);
    const char *p = s + strlen(LR_PEER_LINK_PREFIX);
    const char *q = strchr(p, '?');
    size_t idlen = q ? (size_t)(q - p) : strlen(p);
    while (idlen && p[idlen - 1] == '/')
        idlen--; /* "landropic://ID/" as some readers add */
    char *id = unescape(p, idlen);
    if (!id)
        return lr_err_set(err, LR_EUSAGE, "link: bad %%-escape in the device ID");
    struct lr_err e = {0};
    int rc = lr_device_id_parse(id, &out->id, &e);
    free(id);
    if (rc < 0)
        return lr_err_set(err, LR_EUSAGE, "link: %s", e.msg);
    for (const char *a = q ? q + 1 : NULL; a && *a;) {
        const char *end = strchr(a, '&');
        size_t n = end ? (size_t)(end - a) : strlen(a);
        if (n == 0) {
            a = end ? end + 1 : NULL;
            continue;
        }
        if (n < 5 || strncmp(a, "addr=", 5) != 0) {
            rc = lr_err_set(err, LR_EUSAGE, "link: unknown parameter '%.*s'",
                            (int)(n > 40 ? 40 : n), a);
            goto fail;
        }
        if (out->naddrs == LR_PEER_LINK_ADDRS_MAX) {
            rc = lr_err_set(err, LR_EUSAGE, "link: more than %d addresses", LR_PEER_LINK_ADDRS_MAX);
            goto fail;
        }
        char *addr = unescape(a + 5, n - 5);
        if (!addr) {
            rc = lr_err_set(err, LR_EUSAGE, "link: bad %%-escape in an address");
            goto fail;
        }
        if ((rc = lr_config_check_addr(addr, &e)) < 0) {
            free(addr);
            rc = lr_err_set(err, LR_EUSAGE, "link: %s", e.msg);
            goto fail;
        }
        out->addrs[out->naddrs++] = addr;
        a = end ? end + 1 : NULL;
    }
    return 0;
fail:
    lr_peer_link_release(out);
    return rc;
}
