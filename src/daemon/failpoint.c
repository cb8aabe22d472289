/*
 * failpoint.c - see failpoint.h. A small fixed table: points are few and
 * hits are on paths where a string compare per armed point costs nothing
 * next to the I/O around them.
 */
#include "daemon/failpoint.h"

#ifdef LR_FAILPOINTS

#include "util/log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MOD "failpoint"

struct fp {
    char name[LR_FAILPOINT_NAME_MAX + 1];
    uint64_t at; /* abort at this hit (>= 1) */
    atomic_uint_fast64_t hits;
};

static struct fp fps[LR_FAILPOINT_MAX];
static size_t nfps;

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* One "name:N" of length len at s into *out. */
static int parse_one(const char *s, size_t len, struct fp *out, struct lr_err *err)
{
    const char *colon = memchr(s, ':', len);
    size_t nlen = colon ? (size_t)(colon - s) : 0;
    if (!colon || nlen == 0 || nlen > LR_FAILPOINT_NAME_MAX)
        return lr_err_set(err, LR_EUSAGE, "LR_FAILPOINT: '%.*s' is not NAME:N", (int)len, s);
    for (size_t i = 0; i < nlen; i++)
        if (!name_char(s[i]))
            return lr_err_set(err, LR_EUSAGE, "LR_FAILPOINT: bad point name '%.*s'", (int)nlen, s);
    uint64_t n = 0;
    size_t digits = len - nlen - 1;
    if (digits == 0 || digits > 12)
        return lr_err_set(err, LR_EUSAGE, "LR_FAILPOINT: '%.*s' needs a hit count 1..10^12",
                          (int)len, s);
    for (size_t i = nlen + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return lr_err_set(err, LR_EUSAGE, "LR_FAILPOINT: bad hit count in '%.*s'", (int)len, s);
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    if (n == 0)
        return lr_err_set(err, LR_EUSAGE, "LR_FAILPOINT: hit count in '%.*s' must be >= 1",
                          (int)len, s);
    memset(out->name, 0, sizeof(out->name));
    memcpy(out->name, s, nlen);
    out->at = n;
    atomic_store(&out->hits, 0);
    return 0;
}

int lr_failpoint_init(const char *spec, struct lr_err *err)
{
    struct fp tmp[LR_FAILPOINT_MAX];
    size_t n = 0;
    nfps = 0;
    if (!spec)
        return 0;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == LR_FAILPOINT_MAX)
            return lr_err_set(err, LR_EUSAGE, "LR_FAILPOINT: more than %d points",
                              LR_FAILPOINT_MAX);
        int rc = parse_one(p, len, &tmp[n], err);
        if (rc < 0)
            return rc;
        n++;
        p += len;
        if (*p == ',' && !*++p)
            return lr_err_set(err, LR_EUSAGE, "LR_FAILPOINT: '%s' ends with a comma", spec);
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(fps[i].name, tmp[i].name, sizeof(fps[i].name));
        fps[i].at = tmp[i].at;
        atomic_store(&fps[i].hits, 0);
    }
    nfps = n;
    for (size_t i = 0; i < nfps; i++)
        lr_info(MOD, "armed %s at hit %llu", fps[i].name, (unsigned long long)fps[i].at);
    return 0;
}

int lr_failpoint_init_env(struct lr_err *err)
{
    return lr_failpoint_init(getenv("LR_FAILPOINT"), err);
}

void lr_failpoint_hit(const char *name)
{
    for (size_t i = 0; i < nfps; i++) {
        if (strcmp(fps[i].name, name) != 0)
            continue;
        uint64_t hit = atomic_fetch_add(&fps[i].hits, 1) + 1;
        if (hit != fps[i].at)
            continue;
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        lr_error(MOD, "failpoint %s reached (hit %llu), aborting", name, (unsigned long long)hit);
        abort();
    }
}

#endif
