#include "util/fsutil.h"

#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int lr_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int lr_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         struct lr_err *err)
{
    char *tmp = lr_xasprintf("%s.tmp.%ld", path, (long)getpid());
    char *dir = lr_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else {
        free(dir);
        dir = lr_xstrdup(".");
    }
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        rc = lr_err_set(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = lr_err_set(err, -errno, "cannot write %s: %s", tmp, strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (rc == 0 && fchmod(fd, mode) < 0)
        rc = lr_err_set(err, -errno, "cannot chmod %s: %s", tmp, strerror(errno));
    if (rc == 0 && fsync(fd) < 0)
        rc = lr_err_set(err, -errno, "cannot fsync %s: %s", tmp, strerror(errno));
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = lr_err_set(err, -errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc < 0)
        unlink(tmp);
    else
        lr_fsync_dir(dir);
out:
    free(tmp);
    free(dir);
    return rc;
}

int lr_read_file(const char *path, size_t max, char **out, size_t *len, struct lr_err *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return lr_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lr_err_set(err, LR_EBADVAL, "%s is not a regular file", path);
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return lr_err_set(err, LR_ETOOBIG, "%s is larger than %zu bytes", path, max);
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = lr_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max) {
                free(buf);
                close(fd);
                return lr_err_set(err, LR_ETOOBIG, "%s is larger than %zu bytes", path, max);
            }
            cap *= 2;
            buf = lr_xrealloc(buf, cap);
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return lr_err_set(err, -e, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int lr_mkdirs(const char *path, mode_t mode, struct lr_err *err)
{
    char *p = lr_xstrdup(path);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                rc = lr_err_set(err, -errno, "cannot create directory %s: %s", p, strerror(errno));
                break;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    return rc;
}

int lr_realpath(const char *path, char **out, struct lr_err *err)
{
    *out = realpath(path, NULL);
    if (!*out)
        return lr_err_set(err, -errno, "%s: %s", path, strerror(errno));
    return 0;
}

/* The walk of kernels without openat2: each component opened O_PATH and
 * checked not to be a link (O_NOFOLLOW alone opens a link itself). */
static int open_dir_walk(const char *path)
{
    if (path[0] != '/')
        return -EINVAL;
    int dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    char *copy = lr_xstrdup(path), *save = NULL;
    int rc = 0;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        struct stat st;
        if (fstatat(dfd, c, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = -errno;
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            rc = -ELOOP;
            break;
        }
        int nfd = openat(dfd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            rc = -errno;
            break;
        }
        close(dfd);
        dfd = nfd;
    }
    free(copy);
    if (rc == 0) {
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = fd < 0 ? -errno : fd;
    }
    close(dfd);
    return rc;
}

int lr_open_dir_nofollow(const char *path)
{
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    for (int tries = 0; tries < 64; tries++) {
        long fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno == EAGAIN)
            continue;                          /* a rename raced the lookup */
        if (errno == ENOSYS || errno == EPERM) /* no openat2, or a seccomp filter */
            break;
        return -errno;
    }
    return open_dir_walk(path);
}
