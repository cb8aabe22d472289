/*
 * watch.c - recursive inotify watcher on a uv_poll_t (contract in watch.h,
 * design in docs/internals/watch.md).
 */
#include "watch/watch.h"

#include "ignore/ignore.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD "watch"
#define MARKER ".landropic"
#define MARKER_LEN (sizeof(MARKER) - 1)

#define MASK_BASE                                                                                  \
    (IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |            \
     IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
/* Reads per poll wake-up, so a flood of events cannot starve the loop. */
#define READS_PER_WAKE 64
#define READ_BUF 65536
/* Unwatchable directories remembered for a retry (struct lr_watch, blind). */
#define BLIND_MAX 256

/* One watched directory. */
struct wnode {
    struct wnode *next; /* hash chain */
    int wd;
    unsigned gen; /* walk generation that last saw it */
    size_t len;
    char path[]; /* relative to the root, "" for the root */
};

/* One pending changed path. */
struct pnode {
    struct pnode *next;
    uint64_t first_ms;  /* first event since it was last reported */
    uint64_t modify_ms; /* last IN_MODIFY */
    uint32_t hash;
    bool writing; /* IN_MODIFY seen without a later IN_CLOSE_WRITE */
    size_t len;
    char path[];
};

struct lr_watch {
    uv_loop_t *loop;
    uv_poll_t poll;
    uv_timer_t timer;
    int ifd;
    dev_t dev; /* the root's, kept to notice a root replaced under the same name */
    ino_t ino;
    int root_wd;
    bool use_proc; /* watches placed through /proc/self/fd/N */
    char *root;
    char *name; /* escaped, for log lines */
    struct lr_watch_opts o;
    lr_watch_cb cb;
    void *user;
    struct lr_ignore *ig;

    struct wnode **wtab;
    size_t wcap, nwatch;
    unsigned gen;
    /* Directories the walks could not open or watch (no read permission,
     * ...), at most BLIND_MAX: a change of their attributes (chmod) tries
     * again. Else a directory unreadable when it appeared was not watched
     * until the next full rescan, however its mode changed. */
    char *blind[BLIND_MAX];
    size_t nblind;

    struct pnode **ptab;
    size_t pcap, npend, pbytes;

    bool rescan;      /* a full rescan is pending */
    bool win_open;    /* a debounce window is open */
    uint64_t win_ms;  /* when it opened */
    uint64_t last_ms; /* last event other than IN_MODIFY */
    bool need_rewalk; /* set while parsing a batch, done after it */
    bool limit_noted, overflow_noted;
    bool started; /* the timer exists (events during the first walk only mark the window) */
    bool root_gone;
    bool stopped;
    int closing;
    struct lr_watch_stats st;

    char path[LR_WATCH_PATH_MAX + 1]; /* scratch for event paths */
    /* The kernel pads every event to this alignment, so events can be read in place. */
    uint8_t buf[READ_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));
};

/* ---- watch table (wd -> relative path) ---- */

static size_t wslot(const struct lr_watch *w, int wd)
{
    return ((uint32_t)wd * 2654435761u) & (w->wcap - 1);
}

static struct wnode *wfind(const struct lr_watch *w, int wd)
{
    for (struct wnode *n = w->wtab[wslot(w, wd)]; n; n = n->next)
        if (n->wd == wd)
            return n;
    return NULL;
}

static void wgrow(struct lr_watch *w)
{
    size_t ocap = w->wcap;
    struct wnode **old = w->wtab;
    w->wcap = ocap * 2;
    w->wtab = lr_xcalloc(w->wcap, sizeof(*w->wtab));
    for (size_t i = 0; i < ocap; i++) {
        for (struct wnode *n = old[i], *next; n; n = next) {
            next = n->next;
            size_t s = wslot(w, n->wd);
            n->next = w->wtab[s];
            w->wtab[s] = n;
        }
    }
    free(old);
}

/* Insert or update wd's path; marks it seen by the current walk. */
static void wput(struct lr_watch *w, int wd, const char *path, size_t len)
{
    size_t s = wslot(w, wd);
    for (struct wnode **pp = &w->wtab[s]; *pp; pp = &(*pp)->next) {
        struct wnode *n = *pp;
        if (n->wd != wd)
            continue;
        n->gen = w->gen;
        if (n->len == len && memcmp(n->path, path, len) == 0)
            return;
        /* Same directory reached under a new name (a move we did not see). */
        struct wnode *m = lr_xmalloc(sizeof(*m) + len + 1);
        *m = *n;
        m->len = len;
        memcpy(m->path, path, len);
        m->path[len] = '\0';
        *pp = m;
        free(n);
        return;
    }
    if (w->nwatch >= w->wcap) {
        wgrow(w);
        s = wslot(w, wd);
    }
    struct wnode *n = lr_xmalloc(sizeof(*n) + len + 1);
    n->wd = wd;
    n->gen = w->gen;
    n->len = len;
    memcpy(n->path, path, len);
    n->path[len] = '\0';
    n->next = w->wtab[s];
    w->wtab[s] = n;
    w->nwatch++;
}

static void wdel(struct lr_watch *w, int wd)
{
    for (struct wnode **pp = &w->wtab[wslot(w, wd)]; *pp; pp = &(*pp)->next) {
        if ((*pp)->wd == wd) {
            struct wnode *n = *pp;
            *pp = n->next;
            free(n);
            w->nwatch--;
            return;
        }
    }
}

static bool is_under(const char *p, size_t plen, const char *q, size_t qlen)
{
    /* q equals p or lies beneath it ("" is everything's parent). */
    if (plen == 0)
        return true;
    return qlen >= plen && memcmp(p, q, plen) == 0 && (qlen == plen || q[plen] == '/');
}

/*
 * Drop watches that match: a subtree (prefix != NULL) or, after a walk,
 * everything the walk did not see. The kernel is told too; the IN_IGNORED
 * that follows finds no entry and is skipped.
 */
static void wprune(struct lr_watch *w, const char *prefix, size_t plen)
{
    for (size_t i = 0; i < w->wcap; i++) {
        for (struct wnode **pp = &w->wtab[i]; *pp;) {
            struct wnode *n = *pp;
            bool drop = prefix ? is_under(prefix, plen, n->path, n->len) : n->gen != w->gen;
            if (!drop || n->wd == w->root_wd) {
                pp = &n->next;
                continue;
            }
            inotify_rm_watch(w->ifd, n->wd);
            *pp = n->next;
            free(n);
            w->nwatch--;
        }
    }
}

/* ---- pending set ---- */

static uint32_t phash(const char *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static void pclear(struct lr_watch *w)
{
    for (size_t i = 0; i < w->pcap; i++) {
        for (struct pnode *n = w->ptab[i], *next; n; n = next) {
            next = n->next;
            free(n);
        }
        w->ptab[i] = NULL;
    }
    w->npend = 0;
    w->pbytes = 0;
}

static void pgrow(struct lr_watch *w)
{
    size_t ocap = w->pcap;
    struct pnode **old = w->ptab;
    w->pcap = ocap * 2;
    w->ptab = lr_xcalloc(w->pcap, sizeof(*w->ptab));
    for (size_t i = 0; i < ocap; i++) {
        for (struct pnode *n = old[i], *next; n; n = next) {
            next = n->next;
            size_t s = n->hash & (w->pcap - 1);
            n->next = w->ptab[s];
            w->ptab[s] = n;
        }
    }
    free(old);
}

/* ---- window and timer ---- */

static void on_timer(uv_timer_t *t);

static void arm(struct lr_watch *w, uint64_t delay)
{
    uv_timer_start(&w->timer, on_timer, delay ? delay : 1, 0);
}

/* An event arrived: open the window if needed and make sure the timer will look at it. */
static void note_event(struct lr_watch *w, uint64_t now, bool modify)
{
    if (!w->win_open) {
        w->win_open = true;
        w->win_ms = now;
    }
    if (!modify)
        w->last_ms = now;
    if (!w->started)
        return;
    if (!uv_is_active((uv_handle_t *)&w->timer) ||
        (!modify && uv_timer_get_due_in(&w->timer) > w->o.debounce_ms))
        arm(w, w->o.debounce_ms);
}

static uint64_t read_sysctl(const char *name)
{
    char p[128];
    snprintf(p, sizeof(p), "/proc/sys/fs/inotify/%s", name);
    FILE *f = fopen(p, "re");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

/* Events were lost or cannot be tracked: the next window reports full_rescan. */
static void lost(struct lr_watch *w, const char *why)
{
    if (!w->rescan) {
        w->st.overflows++;
        lr_info(MOD, "folder=%s full rescan: %s", w->name, why);
    }
    w->rescan = true;
    pclear(w);
    note_event(w, uv_now(w->loop), false);
}

static void note_limit(struct lr_watch *w)
{
    if (!w->limit_noted) {
        w->limit_noted = true;
        uint64_t cur = read_sysctl("max_user_watches");
        lr_warn(MOD,
                "folder=%s inotify watch limit reached (fs.inotify.max_user_watches=%llu): part "
                "of the folder is not watched live and is covered by full rescans; raise it "
                "with 'sudo sysctl fs.inotify.max_user_watches=%llu' (add the line "
                "fs.inotify.max_user_watches=%llu to /etc/sysctl.d/90-landropic.conf to keep it)",
                w->name, (unsigned long long)cur,
                (unsigned long long)(cur < 262144 ? 524288 : cur * 2),
                (unsigned long long)(cur < 262144 ? 524288 : cur * 2));
    }
    lost(w, "watch limit reached");
}

static void add_pending(struct lr_watch *w, const char *path, size_t len, uint32_t mask,
                        uint64_t now)
{
    bool modify = (mask & (IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                           IN_CREATE | IN_ATTRIB)) == IN_MODIFY;
    if (w->rescan) {
        note_event(w, now, modify);
        return;
    }
    uint32_t h = phash(path, len);
    struct pnode *n = w->ptab[h & (w->pcap - 1)];
    for (; n; n = n->next)
        if (n->hash == h && n->len == len && memcmp(n->path, path, len) == 0)
            break;
    if (!n) {
        if (w->npend >= w->o.max_pending || len > w->o.max_pending_bytes - w->pbytes) {
            lost(w, "too many changed paths");
            return;
        }
        if (w->npend >= w->pcap)
            pgrow(w);
        n = lr_xcalloc(1, sizeof(*n) + len + 1);
        n->hash = h;
        n->len = len;
        memcpy(n->path, path, len);
        n->first_ms = now;
        size_t s = h & (w->pcap - 1);
        n->next = w->ptab[s];
        w->ptab[s] = n;
        w->npend++;
        w->pbytes += len;
    }
    if (mask & IN_MODIFY) {
        n->writing = true;
        n->modify_ms = now;
    }
    if (mask & (IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
        n->writing = false;
    note_event(w, now, modify);
}

/* ---- flush: sort, fold, report ---- */

/* Byte order with '/' below every other byte, so a directory's subtree follows it directly. */
static int pathcmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca == cb) {
            if (!ca)
                return 0;
            continue;
        }
        unsigned ma = ca == 0 ? 0 : ca == '/' ? 1 : ca + 1;
        unsigned mb = cb == 0 ? 0 : cb == '/' ? 1 : cb + 1;
        return ma < mb ? -1 : 1;
    }
}

static int cmp_paths(const void *a, const void *b)
{
    return pathcmp(*(char *const *)a, *(char *const *)b);
}

static size_t parent_len(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? (size_t)(s - p) : 0;
}

static int cmp_parent(const void *a, const void *b)
{
    const char *pa = *(char *const *)a, *pb = *(char *const *)b;
    size_t la = parent_len(pa), lb = parent_len(pb);
    size_t m = la < lb ? la : lb;
    int c = memcmp(pa, pb, m);
    if (c)
        return c;
    return la < lb ? -1 : la > lb;
}

/* Sort and drop every path equal to or beneath an earlier one. Returns the new count. */
static size_t fold_nested(char **v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_paths);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k > 0 && is_under(v[k - 1], strlen(v[k - 1]), v[i], strlen(v[i]))) {
            free(v[i]);
            continue;
        }
        v[k++] = v[i];
    }
    return k;
}

/*
 * Replace `at` or more siblings by their directory (never by the root),
 * repeated up the tree. Returns the new count; v keeps its capacity n.
 */
static size_t fold_siblings(char **v, size_t n, size_t at)
{
    for (;;) {
        n = fold_nested(v, n);
        if (at < 2 || n < at)
            return n;
        qsort(v, n, sizeof(*v), cmp_parent);
        size_t k = 0;
        bool changed = false;
        for (size_t i = 0; i < n;) {
            size_t pl = parent_len(v[i]), j = i + 1;
            while (j < n && parent_len(v[j]) == pl && memcmp(v[j], v[i], pl) == 0)
                j++;
            if (pl > 0 && j - i >= at) {
                char *dir = lr_xstrndup(v[i], pl);
                for (size_t x = i; x < j; x++)
                    free(v[x]);
                v[k++] = dir;
                changed = true;
            } else {
                for (size_t x = i; x < j; x++)
                    v[k++] = v[x];
            }
            i = j;
        }
        n = k;
        if (!changed)
            return fold_nested(v, n);
    }
}

static bool ready(const struct lr_watch *w, const struct pnode *p, uint64_t now)
{
    return !p->writing || now >= p->modify_ms + w->o.debounce_ms ||
           now >= p->first_ms + w->o.max_delay_ms;
}

static void flush(struct lr_watch *w, uint64_t now)
{
    if (w->rescan) {
        w->rescan = false;
        w->win_open = false;
        pclear(w);
        uv_timer_stop(&w->timer);
        w->st.calls++;
        w->cb(w->user, NULL, 0, true);
        return;
    }
    char **v = lr_xcalloc(w->npend ? w->npend : 1, sizeof(*v));
    size_t nv = 0;
    uint64_t next = UINT64_MAX, oldest = UINT64_MAX;
    for (size_t i = 0; i < w->pcap; i++) {
        for (struct pnode **pp = &w->ptab[i]; *pp;) {
            struct pnode *p = *pp;
            if (!ready(w, p, now)) {
                uint64_t due = p->modify_ms + w->o.debounce_ms;
                uint64_t cap = p->first_ms + w->o.max_delay_ms;
                due = due < cap ? due : cap;
                next = due < next ? due : next;
                oldest = p->first_ms < oldest ? p->first_ms : oldest;
                pp = &p->next;
                continue;
            }
            *pp = p->next;
            v[nv++] = lr_xstrndup(p->path, p->len);
            w->npend--;
            w->pbytes -= p->len;
            free(p);
        }
    }
    if (w->npend) {
        /* Only held-back files remain: their own deadlines drive the timer. */
        w->win_ms = oldest;
        arm(w, next - now);
    } else {
        w->win_open = false;
        uv_timer_stop(&w->timer);
    }
    if (nv) {
        nv = fold_siblings(v, nv, w->o.collapse_at);
        w->st.calls++;
        w->cb(w->user, (const char *const *)v, nv, false);
    }
    for (size_t i = 0; i < nv; i++)
        free(v[i]);
    free(v);
}

static void on_timer(uv_timer_t *t)
{
    struct lr_watch *w = t->data;
    if (w->stopped || !w->win_open)
        return;
    uint64_t now = uv_now(w->loop);
    uint64_t quiet = w->last_ms + w->o.debounce_ms;
    uint64_t cap = w->win_ms + w->o.max_delay_ms;
    if (now < quiet && now < cap) {
        arm(w, (quiet < cap ? quiet : cap) - now);
        return;
    }
    flush(w, now);
}

/* ---- walking and watching ---- */

/* Watch the open directory `fd` known as path[0..len). 0, or -errno (ENOSPC = limit). */
static int add_watch(struct lr_watch *w, int fd, const char *path, size_t len, int *wd_out)
{
    int wd;
    if (w->use_proc) {
        /* The descriptor's own directory: no path is resolved again, so no symlink race. */
        char p[64];
        snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        wd = inotify_add_watch(w->ifd, p, MASK_BASE);
    } else {
        char *p = len ? lr_xasprintf("%s/%.*s", w->root, (int)len, path) : lr_xstrdup(w->root);
        wd = inotify_add_watch(w->ifd, p, MASK_BASE | (len ? IN_DONT_FOLLOW : 0));
        free(p);
    }
    if (wd < 0)
        return -errno;
    if (w->o.max_watches && w->nwatch >= w->o.max_watches && !wfind(w, wd)) {
        inotify_rm_watch(w->ifd, wd);
        return -ENOSPC;
    }
    wput(w, wd, path, len);
    if (wd_out)
        *wd_out = wd;
    return 0;
}

struct namelist {
    char **v;
    size_t n, cap;
};

static void blind_add(struct lr_watch *w, const char *path, size_t len)
{
    for (size_t i = 0; i < w->nblind; i++)
        if (strlen(w->blind[i]) == len && memcmp(w->blind[i], path, len) == 0)
            return;
    if (w->nblind < BLIND_MAX)
        w->blind[w->nblind++] = lr_xstrndup(path, len);
}

/* Whether path[0..len) was one; it no longer is. */
static bool blind_take(struct lr_watch *w, const char *path, size_t len)
{
    for (size_t i = 0; i < w->nblind; i++) {
        if (strlen(w->blind[i]) == len && memcmp(w->blind[i], path, len) == 0) {
            free(w->blind[i]);
            w->blind[i] = w->blind[--w->nblind];
            return true;
        }
    }
    return false;
}

static void blind_clear(struct lr_watch *w)
{
    for (size_t i = 0; i < w->nblind; i++)
        free(w->blind[i]);
    w->nblind = 0;
}

/*
 * Watch the directory open as `fd` (taken over: closed here) at
 * path[0..len) and every directory below it. Returns -ENOSPC if the watch
 * limit stopped the walk, else 0 (other failures skip the directory).
 */
static int walk(struct lr_watch *w, int fd, char *path, size_t len)
{
    int rc = add_watch(w, fd, path, len, NULL);
    if (rc == -ENOSPC) {
        close(fd);
        return rc;
    }
    if (rc < 0) {
        char *e = lr_escs(path);
        lr_debug(MOD, "folder=%s cannot watch '%s': %s", w->name, e, strerror(-rc));
        free(e);
        blind_add(w, path, len);
        close(fd);
        return 0;
    }
    int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        close(fd);
        return 0;
    }
    /* A dup shares the offset: the root's descriptor was read to its end by the last walk. */
    rewinddir(d);
    struct namelist subs = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
            continue;
        bool dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            dir = fstatat(fd, nm, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        if (!dir)
            continue;
        if (len == 0 && strcmp(nm, MARKER) == 0)
            continue;
        if (subs.n == subs.cap) {
            subs.cap = subs.cap ? subs.cap * 2 : 16;
            subs.v = lr_xreallocarray(subs.v, subs.cap, sizeof(*subs.v));
        }
        subs.v[subs.n++] = lr_xstrdup(nm);
    }
    closedir(d);
    rc = 0;
    for (size_t i = 0; i < subs.n; i++) {
        const char *nm = subs.v[i];
        size_t nl = strlen(nm), cl = len ? len + 1 + nl : nl;
        if (rc < 0 || cl > LR_WATCH_PATH_MAX)
            continue;
        if (len)
            path[len] = '/';
        memcpy(path + (len ? len + 1 : 0), nm, nl);
        path[cl] = '\0';
        if (!lr_ignore_match_entry(w->ig, path, cl, true)) {
            int cfd = openat(fd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            struct stat st;
            if (cfd >= 0 && fstat(cfd, &st) == 0 && st.st_dev == w->dev)
                rc = walk(w, cfd, path, cl);
            else if (cfd >= 0)
                close(cfd); /* another file system: not ours to watch, like the scanner */
            else if (errno == EACCES || errno == EPERM)
                blind_add(w, path, cl);
        }
        path[len] = '\0';
    }
    for (size_t i = 0; i < subs.n; i++)
        free(subs.v[i]);
    free(subs.v);
    close(fd);
    return rc;
}

static void root_lost(struct lr_watch *w, const char *what);

/*
 * Open the root again. No descriptor on it is kept between calls: an open
 * directory is not deleted (no IN_DELETE_SELF) until its last descriptor
 * closes, so holding one would hide the root's removal.
 */
static int open_root(struct lr_watch *w)
{
    int fd = lr_open_dir_nofollow(w->root);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_dev != w->dev || st.st_ino != w->ino) {
        close(fd);
        root_lost(w, "replaced");
        return -ESTALE;
    }
    return fd;
}

/* Open ROOT/path as a directory, one component at a time, never following a symlink. */
static int open_rel(struct lr_watch *w, const char *path)
{
    int fd = open_root(w);
    if (fd < 0)
        return fd;
    const char *p = path;
    while (*p) {
        const char *s = strchr(p, '/');
        size_t cl = s ? (size_t)(s - p) : strlen(p);
        char comp[256];
        if (cl == 0 || cl >= sizeof(comp)) {
            close(fd);
            return -ENAMETOOLONG;
        }
        memcpy(comp, p, cl);
        comp[cl] = '\0';
        int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(fd);
        if (nfd < 0)
            return -e;
        fd = nfd;
        p += cl + (s ? 1 : 0);
    }
    return fd;
}

/* Watch a directory that appeared at path[0..len) (created or moved in) and its subtree. */
static void watch_new_dir(struct lr_watch *w, char *path, size_t len)
{
    int fd = open_rel(w, path);
    if (fd == -EACCES || fd == -EPERM)
        blind_add(w, path, len);
    if (fd < 0)
        return; /* gone again, or swapped for a symlink: the reported path covers it */
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_dev != w->dev) {
        close(fd);
        return;
    }
    if (walk(w, fd, path, len) == -ENOSPC)
        note_limit(w);
}

/* Load the rules again from the root open as `rootfd` (borrowed). */
static void reload_ignore(struct lr_watch *w, int rootfd)
{
    struct lr_ignore *ig = NULL;
    struct lr_err err = {0};
    if (lr_ignore_load_at(rootfd, &ig, &err) < 0) {
        /* Watching too much only costs events; the scanner reports the broken file. */
        char *e = lr_escs(err.msg);
        lr_warn(MOD, "folder=%s ignore rules not applied to watching: %s", w->name, e);
        free(e);
        ig = NULL;
    }
    lr_ignore_free(w->ig);
    w->ig = ig;
}

/* Walk the whole tree again: watch what is new, drop watches of what is gone. */
static int rewalk(struct lr_watch *w)
{
    w->gen++;
    blind_clear(w); /* the walk finds them again */
    int fd = open_root(w);
    if (fd < 0)
        return fd;
    char *path = lr_xmalloc(LR_WATCH_PATH_MAX + 1);
    path[0] = '\0';
    int rc = walk(w, fd, path, 0);
    free(path);
    if (rc == -ENOSPC) {
        /* Keep what we have rather than pruning watches the walk never reached. */
        note_limit(w);
        return rc;
    }
    wprune(w, NULL, 0);
    return rc;
}

/* ---- events ---- */

static void root_lost(struct lr_watch *w, const char *what)
{
    if (!w->root_gone)
        lr_warn(MOD, "folder=%s root was %s; changes are no longer watched", w->name, what);
    w->root_gone = true;
    lost(w, what);
}

static void handle(struct lr_watch *w, const struct inotify_event *ev, const char *name,
                   uint64_t now)
{
    w->st.events++;
    if (ev->mask & IN_Q_OVERFLOW) {
        if (!w->overflow_noted) {
            w->overflow_noted = true;
            uint64_t cur = read_sysctl("max_queued_events");
            lr_warn(MOD,
                    "folder=%s inotify queue overflowed (fs.inotify.max_queued_events=%llu); "
                    "the folder is rescanned. If this repeats, raise it with 'sudo sysctl "
                    "fs.inotify.max_queued_events=%llu'",
                    w->name, (unsigned long long)cur, (unsigned long long)(cur * 4));
        }
        lost(w, "inotify queue overflow");
        w->need_rewalk = true;
        return;
    }
    struct wnode *n = wfind(w, ev->wd);
    if (!n)
        return; /* a watch we already dropped */
    bool is_root = ev->wd == w->root_wd;
    if (ev->mask & IN_IGNORED) {
        wdel(w, ev->wd);
        if (is_root) {
            w->root_wd = -1;
            root_lost(w, "removed or unmounted");
        }
        return;
    }
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
        if (is_root)
            root_lost(w, ev->mask & IN_MOVE_SELF ? "moved" : "deleted");
        /* Others: the parent's IN_DELETE / IN_MOVED_FROM reports and drops them. */
        return;
    }
    if (!name || !name[0])
        return; /* an event on the directory itself, reported through its parent */
    size_t nl = strnlen(name, ev->len), len;
    char *p = w->path;
    if (n->len + 1 + nl > LR_WATCH_PATH_MAX) {
        /* Too deep to name: report the deepest directory that fits. */
        memcpy(p, n->path, n->len + 1);
        len = n->len;
    } else {
        size_t o = 0;
        if (n->len) {
            memcpy(p, n->path, n->len);
            p[n->len] = '/';
            o = n->len + 1;
        }
        memcpy(p + o, name, nl);
        len = o + nl;
        p[len] = '\0';
    }
    if (len == 0)
        return;
    /* Our own marker and staging area; but the marker itself going away (or
     * coming back) is news: the folder's state depends on it. */
    if (is_under(MARKER, MARKER_LEN, p, len) &&
        !(len == MARKER_LEN && (ev->mask & (IN_DELETE | IN_MOVED_FROM | IN_CREATE | IN_MOVED_TO))))
        return;
    bool is_dir = ev->mask & IN_ISDIR;
    if (n->len == 0 && strcmp(p, LR_IGNORE_FILE) == 0) {
        int fd = open_root(w);
        if (fd >= 0) {
            reload_ignore(w, fd);
            close(fd);
        }
        w->need_rewalk = true;
    } else if (lr_ignore_match(w->ig, p, len, is_dir)) {
        return;
    }
    if (is_dir && ((ev->mask & (IN_CREATE | IN_MOVED_TO)) ||
                   ((ev->mask & IN_ATTRIB) && w->nblind && blind_take(w, p, len))))
        watch_new_dir(w, p, len);
    else if (is_dir && (ev->mask & IN_MOVED_FROM))
        wprune(w, p, len);
    if (!w->stopped)
        add_pending(w, p, len, ev->mask, now);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct lr_watch *w = h->data;
    if (w->stopped)
        return;
    if (status < 0) {
        lr_warn(MOD, "folder=%s poll error: %s", w->name, uv_strerror(status));
        lost(w, "poll error");
        return;
    }
    uint64_t now = uv_now(w->loop);
    for (int round = 0; round < READS_PER_WAKE; round++) {
        ssize_t r = read(w->ifd, w->buf, sizeof(w->buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r <= 0) {
            lr_warn(MOD, "folder=%s inotify read failed: %s", w->name,
                    r < 0 ? strerror(errno) : "end of file");
            lost(w, "inotify read error");
            break;
        }
        size_t off = 0, end = (size_t)r;
        while (off + sizeof(struct inotify_event) <= end) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)(w->buf + off);
            size_t sz = sizeof(*ev) + ev->len;
            if (sz > end - off)
                break; /* the kernel never splits an event; be safe anyway */
            handle(w, ev, ev->len ? ev->name : NULL, now);
            off += sz;
        }
    }
    if (w->need_rewalk) {
        w->need_rewalk = false;
        rewalk(w);
    }
}

void lr_watch_read_now(struct lr_watch *w)
{
    if (w && !w->stopped)
        on_poll(&w->poll, 0, UV_READABLE);
}

/* ---- lifecycle ---- */

static void release(struct lr_watch *w)
{
    if (w->ifd >= 0)
        close(w->ifd);
    if (w->wtab) {
        for (size_t i = 0; i < w->wcap; i++)
            for (struct wnode *n = w->wtab[i], *next; n; n = next) {
                next = n->next;
                free(n);
            }
    }
    free(w->wtab);
    blind_clear(w);
    if (w->ptab)
        pclear(w);
    free(w->ptab);
    lr_ignore_free(w->ig);
    free(w->root);
    free(w->name);
    free(w);
}

static void on_close(uv_handle_t *h)
{
    struct lr_watch *w = h->data;
    if (--w->closing == 0)
        release(w);
}

int lr_watch_start(uv_loop_t *loop, const char *root, const struct lr_watch_opts *opts,
                   lr_watch_cb cb, void *user, struct lr_watch **out, struct lr_err *err)
{
    *out = NULL;
    struct lr_watch_opts o = {0};
    if (opts)
        o = *opts;
    if (!o.debounce_ms)
        o.debounce_ms = LR_WATCH_DEBOUNCE_MS;
    if (!o.max_delay_ms)
        o.max_delay_ms = LR_WATCH_MAX_DELAY_MS;
    if (!o.max_pending)
        o.max_pending = LR_WATCH_MAX_PENDING;
    if (!o.max_pending_bytes)
        o.max_pending_bytes = LR_WATCH_MAX_PENDING_BYTES;
    if (!o.collapse_at)
        o.collapse_at = LR_WATCH_COLLAPSE;
    if (!cb || o.max_delay_ms < o.debounce_ms)
        return lr_err_set(err, LR_EUSAGE, "watch of %s: max_delay_ms %u below debounce_ms %u%s",
                          root, o.max_delay_ms, o.debounce_ms, cb ? "" : " (or no callback)");

    struct lr_watch *w = lr_xcalloc(1, sizeof(*w));
    w->loop = loop;
    w->ifd = -1;
    w->root_wd = -1;
    w->o = o;
    w->o.name = NULL;
    w->cb = cb;
    w->user = user;
    w->root = lr_xstrdup(root);
    w->name = lr_escs(opts && opts->name ? opts->name : root);
    w->wcap = 64;
    w->wtab = lr_xcalloc(w->wcap, sizeof(*w->wtab));
    w->pcap = 64;
    w->ptab = lr_xcalloc(w->pcap, sizeof(*w->ptab));
    int rc;
    char *path = NULL;

    int fd = lr_open_dir_nofollow(root);
    if (fd < 0) {
        rc = lr_err_set(err, fd, "cannot open folder root %s: %s", root, strerror(-fd));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = lr_err_set(err, -errno, "cannot stat folder root %s: %s", root, strerror(errno));
        goto fail;
    }
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ifd < 0) {
        rc = -errno;
        lr_err_set(err, rc, "cannot create an inotify instance for %s: %s%s", root, strerror(errno),
                   errno == EMFILE ? " (limit fs.inotify.max_user_instances; raise it with "
                                     "'sudo sysctl fs.inotify.max_user_instances=1024')"
                                   : "");
        goto fail;
    }
    reload_ignore(w, fd);

    /* Place the root watch; it tells whether /proc/self/fd paths work here. */
    w->use_proc = true;
    rc = add_watch(w, fd, "", 0, &w->root_wd);
    if (rc == -ENOENT) {
        w->use_proc = false;
        rc = add_watch(w, fd, "", 0, &w->root_wd);
    }
    if (rc < 0) {
        if (rc == -ENOSPC)
            note_limit(w);
        rc = lr_err_set(err, rc, "cannot watch folder root %s: %s", root, strerror(-rc));
        goto fail;
    }
    path = lr_xmalloc(LR_WATCH_PATH_MAX + 1);
    path[0] = '\0';
    rc = walk(w, fd, path, 0); /* closes fd */
    fd = -1;
    if (rc == -ENOSPC)
        note_limit(w);
    free(path);

    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->started = true;
    if (w->win_open)
        arm(w, w->o.debounce_ms);
    rc = uv_poll_init(loop, &w->poll, w->ifd);
    if (rc < 0) {
        /* The timer was initialised: it must be closed before the memory goes. */
        lr_err_set(err, rc, "cannot poll the inotify descriptor for %s: %s", root, uv_strerror(rc));
        w->stopped = true;
        w->closing = 1;
        uv_close((uv_handle_t *)&w->timer, on_close);
        return rc;
    }
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_poll);
    lr_debug(MOD, "folder=%s watching %zu directories", w->name, w->nwatch);
    *out = w;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    release(w);
    return rc;
}

void lr_watch_stop(struct lr_watch *w)
{
    if (!w || w->stopped)
        return;
    w->stopped = true;
    uv_poll_stop(&w->poll);
    uv_timer_stop(&w->timer);
    w->closing = 2;
    uv_close((uv_handle_t *)&w->poll, on_close);
    uv_close((uv_handle_t *)&w->timer, on_close);
}

void lr_watch_forget_pending(struct lr_watch *w)
{
    if (!w || w->stopped)
        return;
    w->rescan = false;
    pclear(w);
    w->win_open = false;
    if (w->started)
        uv_timer_stop(&w->timer);
}

void lr_watch_get_stats(const struct lr_watch *w, struct lr_watch_stats *st)
{
    *st = w->st;
    st->watches = w->nwatch;
    st->pending = w->npend;
    st->window_open = w->win_open;
    st->root_gone = w->root_gone;
}
