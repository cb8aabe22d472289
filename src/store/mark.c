/*
 * mark.c - the folder's index mark, .landropic/index-mark (store.h).
 *
 * It is one line of text so that a user looking into the marker can read
 * it: "landropic-index-mark 1 <index ID, 16 hex digits> <max_seq> <clock>\n".
 */
#include "store/store_int.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARK_NAME "index-mark"
#define MARK_TMP "index-mark.new"
#define MARK_HEAD "landropic-index-mark 1 "

/* Digits only (no sign, no space, no leading "0x"), at most max_digits. */
static bool parse_num(const char **p, const char *end, int base, size_t max_digits, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; *p < end && n < max_digits; (*p)++, n++) {
        char c = **p;
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            break;
        if (v > (UINT64_MAX - d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + d;
    }
    *out = v;
    return n > 0;
}

/* A sequence or counter: below 2^62 (index.h), so 19 digits hold it; no
 * leading zero, so a mark has one spelling. */
static bool parse_dec(const char **p, const char *end, uint64_t *out)
{
    const char *start = *p;
    return parse_num(p, end, 10, 19, out) && !(*start == '0' && *p - start > 1) &&
           *out < (1ull << 62);
}

bool lr_store_mark_parse(const void *data, size_t len, struct lr_store_mark *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = data, *end = p + len;
    size_t hl = sizeof(MARK_HEAD) - 1;
    struct lr_store_mark m;
    if (len < hl || memcmp(p, MARK_HEAD, hl) != 0)
        return false;
    p += hl;
    const char *id_start = p;
    if (!parse_num(&p, end, 16, 16, &m.index_id) || p - id_start != 16 || p == end || *p++ != ' ')
        return false;
    if (!parse_dec(&p, end, &m.max_seq) || p == end || *p++ != ' ' ||
        !parse_dec(&p, end, &m.clock) || p == end || *p++ != '\n' || p != end || m.index_id == 0)
        return false;
    *out = m;
    return true;
}

int lr_store_mark_format(const struct lr_store_mark *m, char *buf, size_t size)
{
    int n = snprintf(buf, size, MARK_HEAD "%016" PRIx64 " %" PRIu64 " %" PRIu64 "\n", m->index_id,
                     m->max_seq, m->clock);
    return n < 0 || (size_t)n >= size ? LR_ETOOBIG : n;
}

static int open_marker(struct lr_store *st, int *mfd, struct lr_err *err)
{
    int rc = lr__store_open_one_dir(st, st->rootfd, LR_STORE_MARKER, mfd);
    return rc < 0 ? lr__store_fail(err, rc, LR_STORE_MARKER " in", st->root) : 0;
}

int lr_store_mark_read(struct lr_store *st, struct lr_store_mark *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int mfd, rc = open_marker(st, &mfd, err);
    if (rc < 0)
        return rc;
    int fd = openat(mfd, MARK_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int e = errno;
    close(mfd);
    if (fd < 0 && e == ENOENT)
        return 0;
    /* A symlink, directory or FIFO there is no mark either: the folder
     * syncs on (the next write replaces it if it can). */
    struct stat sb;
    if (fd < 0 ? e == ELOOP : fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        lr_warn("store", "folder %s: " LR_STORE_MARKER "/" MARK_NAME " is not a file; ignored",
                st->root);
        return 0;
    }
    if (fd < 0)
        return lr__store_fail(err, -e, LR_STORE_MARKER "/" MARK_NAME " in", st->root);
    /* Anything longer than the longest mark is not one. */
    char buf[96];
    ssize_t n;
    do
        n = read(fd, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    e = errno;
    close(fd);
    if (n < 0)
        return lr__store_fail(err, -e, LR_STORE_MARKER "/" MARK_NAME " in", st->root);
    if (!lr_store_mark_parse(buf, (size_t)n, out)) {
        /* Hand-edited, or cut short by a crash (it is not fsynced): no
         * mark. It is written again with the next announcement. */
        lr_warn("store", "folder %s: " LR_STORE_MARKER "/" MARK_NAME " is not a mark; ignored",
                st->root);
        return 0;
    }
    return 1;
}

int lr_store_mark_write(struct lr_store *st, const struct lr_store_mark *m, struct lr_err *err)
{
    char buf[96];
    int len = lr_store_mark_format(m, buf, sizeof(buf));
    if (len < 0 || m->index_id == 0)
        return lr_err_set(err, LR_EUSAGE, "index mark: bad values");
    int mfd, rc = open_marker(st, &mfd, err);
    if (rc < 0)
        return rc;
    unlinkat(mfd, MARK_TMP, 0); /* a leftover, maybe planted: never written through */
    /* A directory made there is in the rename's way: removed if empty;
     * else the write fails, and sending goes on without a mark. */
    unlinkat(mfd, MARK_NAME, AT_REMOVEDIR);
    int fd = openat(mfd, MARK_TMP, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
    } else {
        ssize_t w;
        do
            w = write(fd, buf, (size_t)len);
        while (w < 0 && errno == EINTR);
        rc = w == len ? 0 : w < 0 ? -errno : -EIO;
        /* No fsync: the mark is written after the index commit that it
         * follows, so a crash leaves it at or below the index, never above
         * (that is the only direction that matters). */
        if (close(fd) < 0 && rc == 0)
            rc = -errno;
        if (rc == 0 && renameat(mfd, MARK_TMP, mfd, MARK_NAME) < 0)
            rc = -errno;
        if (rc < 0)
            unlinkat(mfd, MARK_TMP, 0);
    }
    close(mfd);
    return rc < 0 ? lr__store_fail(err, rc, LR_STORE_MARKER "/" MARK_NAME " in", st->root) : 0;
}

int lr_store_mark_check(const char *root, struct lr_index *ix, const char *folder_id, bool *rekeyed,
                        struct lr_err *err)
{
    *rekeyed = false;
    struct lr_store *st;
    struct lr_err e = {0};
    /* No root or marker (yet): the folder cannot sync either, and the
     * sender checks again before its first announcement (sync.c). */
    if (lr_store_open(root, &st, &e) < 0)
        return 0;
    struct lr_store_mark m;
    int rc = lr_store_mark_read(st, &m, err);
    lr_store_close(st);
    if (rc <= 0)
        return rc;
    return lr_index_folder_check_mark(ix, folder_id, m.index_id, m.max_seq, m.clock, rekeyed, err);
}
