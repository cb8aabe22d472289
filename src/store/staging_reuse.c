/*
 * staging_reuse.c - sidecars naming a path's staging versions (see
 * staging_reuse.h).
 */
#include "store/staging_reuse.h"

#include "store/store_int.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/rd.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "LRSIDEC2"
#define JOURNAL_MAGIC "LRJOURN1"
#define JOURNAL_PREFIX "journal-"
#define MAGIC_LEN 8
#define HEAD_LEN (MAGIC_LEN + 4 + 4 + LR_HASH_LEN)
#define ENTRY_LEN (8 + 4 + LR_HASH_LEN)
/* Name tags: a sidecar's name is the hash of one of them and the path, so
 * it never equals a staging key (the hash of a blocks hash and the path). */
static const char TAG[] = "landropic staging sidecar";
static const char TAG_NEW[] = "landropic staging sidecar, being written";
static const char TAG_SPARE[] = "landropic spare sidecar inode";
/* Longest vector encoding a record may carry (lr_vv: 16 bytes an entry). */
#define VV_MAX (1u << 20)
/* The record section's largest size (see the format in the header). */
#define RECORD_MAX                                                                                 \
    (1 + 4 + LR_STORE_SIDECAR_PATH_MAX + 8 + 8 + 4 + LR_HASH_LEN + 4 + VV_MAX + 8 + 1 + 8)

struct name {
    char s[LR_HASH_HEX_LEN + 1];
};

/* 64 hex digits like a staging file's (tmp holds nothing else), so only
 * the content tells a sidecar from a staging file: see probe(). */
static void sidecar_hash(const uint8_t *path, size_t path_len, bool tmp, struct lr_hash *out)
{
    const char *tag = tmp ? TAG_NEW : TAG;
    size_t tlen = tmp ? sizeof(TAG_NEW) : sizeof(TAG);
    uint8_t *in = lr_xmalloc(tlen + path_len);
    memcpy(in, tag, tlen); /* with its NUL: the tag ends unambiguously */
    memcpy(in + tlen, path, path_len);
    lr_sha256(in, tlen + path_len, out);
    free(in);
}

static void sidecar_name(const uint8_t *path, size_t path_len, bool tmp, struct name *out)
{
    struct lr_hash h;
    sidecar_hash(path, path_len, tmp, &h);
    lr_hash_hex(&h, out->s);
}

void lr_store_sidecar_key(const uint8_t *path, size_t path_len, struct lr_hash *out)
{
    sidecar_hash(path, path_len, false, out);
}

void lr_store_sidecar_release(struct lr_store_sidecar *sc)
{
    if (!sc)
        return;
    free(sc->chunks);
    free(sc->commit.rec.path);
    lr_vv_release(&sc->commit.rec.vv);
    memset(sc, 0, sizeof(*sc));
}

/*
 * Spare sidecar inodes. A forgotten sidecar is not unlinked but emptied and
 * renamed to a spare name, and the next sidecar written in that directory
 * takes it over: a pull of many small files then frees no inode per file.
 * That matters on ext4 without a journal (this machine's root): every
 * inode allocation there skips, one inode-table lookup each, the inodes of
 * its group freed in the last ~30 s (recently_deleted()), so freeing one
 * sidecar per file made each later create in tmp/ slower, quadratically
 * (40 % of the receiver's CPU on 20 000 files). Spares are 8-byte regular
 * files holding SPARE_MAGIC under 64-hex names (tmp/ holds nothing else)
 * that no scan takes for a sidecar (no sidecar header) and nothing takes
 * for a staging file (no key hashes to them); the pool (store.h, owned by
 * the caller of lr_store_open_with) only remembers names. It is drained by
 * lr_store_close() once tmp/ holds nothing but spares (a pull's end), and
 * spares a dead process left are removed by lr_store_sidecar_gc.
 */
#define SPARE_MAX 4096
#define SPARE_MAGIC "LRSPARE1"

struct spare {
    dev_t dev;
    ino_t dir; /* tmp/'s inode */
    uint64_t pid, id;
};

/* The pool (store.h): names only, every access under mu. */
struct lr_store_spares {
    pthread_mutex_t mu;
    struct spare *v; /* [SPARE_MAX] */
    size_t n;
    uint64_t next;
};

struct lr_store_spares *lr_store_spares_new(void)
{
    struct lr_store_spares *sp = lr_xcalloc(1, sizeof(*sp));
    pthread_mutex_init(&sp->mu, NULL);
    sp->v = lr_xcalloc(SPARE_MAX, sizeof(*sp->v));
    return sp;
}

void lr_store_spares_free(struct lr_store_spares *sp)
{
    if (!sp)
        return;
    pthread_mutex_destroy(&sp->mu);
    free(sp->v);
    free(sp);
}

static void spare_name(const struct spare *sp, struct name *out)
{
    uint8_t in[sizeof(TAG_SPARE) + 16];
    memcpy(in, TAG_SPARE, sizeof(TAG_SPARE));
    for (int i = 0; i < 8; i++) {
        in[sizeof(TAG_SPARE) + (size_t)i] = (uint8_t)(sp->pid >> (8 * i));
        in[sizeof(TAG_SPARE) + 8 + (size_t)i] = (uint8_t)(sp->id >> (8 * i));
    }
    struct lr_hash h;
    lr_sha256(in, sizeof(in), &h);
    lr_hash_hex(&h, out->s);
}

/* A spare of st's tmp/ to take over (false if none). */
static bool spare_pop(struct lr_store *st, struct spare *out)
{
    struct lr_store_spares *p = st->spares;
    bool found = false;
    if (!p)
        return false;
    pthread_mutex_lock(&p->mu);
    for (size_t i = p->n; i-- > 0;) {
        if (p->v[i].dev == st->dev && p->v[i].dir == st->tmp_ino) {
            *out = p->v[i];
            p->v[i] = p->v[--p->n];
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

/*
 * Keep the sidecar `name` (fd open on it, read-write) as a spare instead of
 * unlinking it: emptied, then renamed to a fresh spare name. False if it
 * could not be kept (pool full, not a plain singly linked file, an error):
 * the caller unlinks it.
 */
static bool spare_keep(struct lr_store *st, int fd, const char *name)
{
    struct lr_store_spares *p = st->spares;
    struct stat sb;
    if (!p || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1)
        return false;
    struct spare sp = {.dev = st->dev, .dir = st->tmp_ino, .pid = (uint64_t)getpid()};
    pthread_mutex_lock(&p->mu);
    bool room = p->n < SPARE_MAX;
    sp.id = p->next++;
    pthread_mutex_unlock(&p->mu);
    /* Marked, not emptied: freeing its block would cost a synchronous
     * discard on a file system mounted with `discard` (as here). */
    if (!room || pwrite(fd, SPARE_MAGIC, MAGIC_LEN, 0) != MAGIC_LEN || ftruncate(fd, MAGIC_LEN) < 0)
        return false;
    struct name nm;
    spare_name(&sp, &nm);
    if (renameat(st->tmpfd, name, st->tmpfd, nm.s) < 0)
        return false;
    pthread_mutex_lock(&p->mu);
    room = p->n < SPARE_MAX;
    if (room)
        p->v[p->n++] = sp;
    pthread_mutex_unlock(&p->mu);
    if (!room)
        unlinkat(st->tmpfd, nm.s, 0);
    return true;
}

/*
 * Open a spare as tmp/`name` for writing: renamed over whatever is there
 * (a leftover is replaced, never written through), then checked to be the
 * empty, singly linked regular file a spare is. -1 if there is none.
 */
static int spare_take(struct lr_store *st, const char *name)
{
    struct spare sp;
    while (spare_pop(st, &sp)) {
        struct name nm;
        spare_name(&sp, &nm);
        if (renameat(st->tmpfd, nm.s, st->tmpfd, name) < 0)
            continue; /* gone (a gc, another process): try the next one */
        int fd = openat(st->tmpfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat sb;
        if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1 &&
            sb.st_size == MAGIC_LEN)
            return fd;
        if (fd >= 0)
            close(fd);
        return -1; /* not what we left there: the caller replaces it */
    }
    return -1;
}

void lr__store_spares_drain(struct lr_store *st)
{
    struct lr_store_spares *p = st->spares;
    /* Any handle with the pool, not only one that kept a spare: a commit
     * batch whose files were journaled forgets no sidecar, yet its renames
     * may be what leaves tmp/ idle. */
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    size_t mine = 0;
    for (size_t i = 0; i < p->n; i++)
        mine += p->v[i].dev == st->dev && p->v[i].dir == st->tmp_ino;
    pthread_mutex_unlock(&p->mu);
    if (!mine)
        return;
    /* Idle: tmp/ holds no more entries than our spares (no staging file,
     * no sidecar), so no create will follow soon to take them. */
    int dfd = openat(st->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    size_t n = 0;
    struct dirent *de;
    while (n <= mine && (de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    if (n > mine)
        return;
    struct spare *out = lr_xmalloc(mine * sizeof(*out));
    size_t k = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n;) {
        if (p->v[i].dev == st->dev && p->v[i].dir == st->tmp_ino && k < mine) {
            out[k++] = p->v[i];
            p->v[i] = p->v[--p->n];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < k; i++) {
        struct name nm;
        spare_name(&out[i], &nm);
        unlinkat(st->tmpfd, nm.s, 0);
    }
    free(out);
    lr_debug("store", "tmp of %s idle: %zu spare sidecar inodes removed", st->root, k);
}

static size_t max_size(void)
{
    return HEAD_LEN + LR_STORE_SIDECAR_OLD_MAX * LR_HASH_LEN +
           (size_t)LR_STORE_SIDECAR_CHUNKS_MAX * ENTRY_LEN + RECORD_MAX;
}

/* Whole regular file `name` of dirfd, at most max bytes. With keep (may be
 * NULL), the descriptor is left open read-write in *keep on success (-1 if
 * the file could only be opened read-only). */
static int read_small_fd(int dirfd, const char *name, size_t max, uint8_t **data, size_t *len,
                         int *keep)
{
    *data = NULL;
    *len = 0;
    int fd = -1;
    if (keep) {
        *keep = -1;
        fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 && errno != EACCES && errno != EROFS)
            return errno == ENOENT ? LR_ENOTFOUND : -errno;
    }
    bool rw = fd >= 0;
    if (fd < 0)
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? LR_ENOTFOUND : -errno;
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size < 0 || (uint64_t)sb.st_size > max) {
        rc = LR_EPROTO;
        goto out;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *p = lr_xmalloc(n ? n : 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : LR_EPROTO; /* shrank under us */
            free(p);
            goto out;
        }
        got += (size_t)r;
    }
    *data = p;
    *len = n;
    if (keep && rw) {
        *keep = fd;
        return 0;
    }
out:
    close(fd);
    return rc;
}

static int read_small(int dirfd, const char *name, size_t max, uint8_t **data, size_t *len)
{
    return read_small_fd(dirfd, name, max, data, len, NULL);
}

/* A record section after its has_record byte (see the format in the header). */
static int parse_record(struct lr_rd *r, struct lr_store_sidecar *out)
{
    struct lr_store_sidecar_commit *c = &out->commit;
    uint8_t had_local;
    uint32_t plen, vlen;
    const uint8_t *p, *vv;
    uint64_t mtime;
    if (lr_rd_get_u32(r, &plen) < 0 || plen == 0 || plen > LR_STORE_SIDECAR_PATH_MAX ||
        lr_rd_get_view(r, &p, plen) < 0 || memchr(p, 0, plen) ||
        lr_rd_get_u64(r, &c->rec.size) < 0 || lr_rd_get_u64(r, &mtime) < 0 ||
        lr_rd_get_u32(r, &c->rec.mode) < 0 ||
        lr_rd_get_bytes(r, c->rec.blocks_hash.b, LR_HASH_LEN) < 0 || lr_rd_get_u32(r, &vlen) < 0 ||
        lr_rd_get_view(r, &vv, vlen) < 0 || lr_rd_get_u64(r, &c->staging_ino) < 0 ||
        lr_rd_get_u8(r, &had_local) < 0 || had_local > 1 || lr_rd_get_u64(r, &c->local_seq) < 0)
        return LR_EPROTO;
    if (lr_vv_decode(vv, vlen, &c->rec.vv) < 0)
        return LR_EPROTO;
    c->rec.path = lr_xmalloc((size_t)plen + 1);
    memcpy(c->rec.path, p, plen);
    c->rec.path[plen] = 0;
    c->rec.path_len = plen;
    c->rec.type = LR_FT_FILE;
    c->rec.mtime_ns = (int64_t)mtime;
    c->had_local = had_local;
    out->has_commit = true;
    return 0;
}

/* The trailing commit record (see the format in the header); then the end. */
static int parse_commit(struct lr_rd *r, struct lr_store_sidecar *out)
{
    uint8_t has;
    if (lr_rd_get_u8(r, &has) < 0 || has > 1)
        return LR_EPROTO;
    if (has && parse_record(r, out) < 0)
        return LR_EPROTO;
    return lr_rd_left(r) == 0 ? 0 : LR_EPROTO;
}

static int parse(const uint8_t *data, size_t len, struct lr_store_sidecar *out)
{
    struct lr_rd r;
    lr_rd_init(&r, data, len);
    const uint8_t *magic;
    uint32_t nold, nchunks;
    if (lr_rd_get_view(&r, &magic, MAGIC_LEN) < 0 || memcmp(magic, MAGIC, MAGIC_LEN) != 0 ||
        lr_rd_get_u32(&r, &nold) < 0 || lr_rd_get_u32(&r, &nchunks) < 0 ||
        lr_rd_get_bytes(&r, out->key.b, LR_HASH_LEN) < 0)
        return LR_EPROTO;
    if (nold > LR_STORE_SIDECAR_OLD_MAX || nchunks > LR_STORE_SIDECAR_CHUNKS_MAX)
        return LR_EPROTO;
    /* The announced entries are there, checked before allocating for them. */
    if (lr_rd_left(&r) < (size_t)nold * LR_HASH_LEN + (size_t)nchunks * ENTRY_LEN)
        return LR_EPROTO;
    for (uint32_t i = 0; i < nold; i++)
        if (lr_rd_get_bytes(&r, out->old[i].b, LR_HASH_LEN) < 0)
            return LR_EPROTO;
    out->nold = nold;
    out->chunks = lr_xcalloc(nchunks ? nchunks : 1, sizeof(*out->chunks));
    for (uint32_t i = 0; i < nchunks; i++) {
        struct lr_chunk *c = &out->chunks[i];
        if (lr_rd_get_u64(&r, &c->off) < 0 || lr_rd_get_u32(&r, &c->len) < 0 ||
            lr_rd_get_bytes(&r, c->hash.b, LR_HASH_LEN) < 0)
            return LR_EPROTO;
        if (c->len == 0 || c->len > LR_STORE_CHUNK_MAX || c->off > (uint64_t)INT64_MAX - c->len)
            return LR_EPROTO;
    }
    out->nchunks = nchunks;
    return parse_commit(&r, out);
}

int lr_store_sidecar_load(struct lr_store *st, const uint8_t *path, size_t path_len,
                          struct lr_store_sidecar *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    struct name nm;
    sidecar_name(path, path_len, false, &nm);
    uint8_t *data;
    size_t len;
    int rc = read_small(st->tmpfd, nm.s, max_size(), &data, &len);
    if (rc == LR_ENOTFOUND)
        return rc;
    if (rc == 0) {
        rc = parse(data, len, out);
        free(data);
    }
    if (rc == LR_EPROTO)
        unlinkat(st->tmpfd, nm.s, 0); /* worthless: the next version writes a good one */
    if (rc < 0) {
        lr_store_sidecar_release(out);
        return lr_err_set(err, rc, "staging sidecar %.16s: %s", nm.s,
                          rc == LR_EPROTO ? "malformed" : lr_strerror(rc));
    }
    return 0;
}

/* Write all of b to fd, then close fd: 0 or -errno. */
static int write_close(int fd, const struct lr_buf *b)
{
    int rc = 0;
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = write(fd, b->data + off, b->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? -errno : -EIO;
            break;
        }
        off += (size_t)w;
    }
    close(fd);
    return rc;
}

/* The record section after its has_record byte (format in the header); vv
 * is the record's vector already encoded. */
static void put_record(struct lr_buf *b, const struct lr_store_sidecar_commit *commit,
                       const struct lr_buf *vv)
{
    const struct lr_file_rec *r = &commit->rec;
    lr_buf_put_u32(b, (uint32_t)r->path_len);
    lr_buf_put(b, r->path, r->path_len);
    lr_buf_put_u64(b, r->size);
    lr_buf_put_u64(b, (uint64_t)r->mtime_ns);
    lr_buf_put_u32(b, r->mode);
    lr_buf_put(b, r->blocks_hash.b, LR_HASH_LEN);
    lr_buf_put_u32(b, (uint32_t)vv->len);
    lr_buf_put(b, vv->data, vv->len);
    lr_buf_put_u64(b, commit->staging_ino);
    lr_buf_put_u8(b, commit->had_local);
    lr_buf_put_u64(b, commit->local_seq);
}

int lr_store_sidecar_write(struct lr_store *st, const uint8_t *path, size_t path_len,
                           const struct lr_hash *key, const struct lr_chunk *chunks, size_t nchunks,
                           const struct lr_store_sidecar *prev,
                           const struct lr_store_sidecar_commit *commit, struct lr_err *err)
{
    if (nchunks > LR_STORE_SIDECAR_CHUNKS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "staging sidecar: %zu chunks", nchunks);
    struct lr_hash old[LR_STORE_SIDECAR_OLD_MAX];
    size_t nold = 0;
    if (prev && lr_hash_cmp(&prev->key, key) != 0)
        old[nold++] = prev->key;
    for (size_t i = 0; prev && i < prev->nold && nold < LR_STORE_SIDECAR_OLD_MAX; i++)
        if (lr_hash_cmp(&prev->old[i], key) != 0)
            old[nold++] = prev->old[i];
    struct lr_buf vv;
    lr_buf_init(&vv, VV_MAX);
    if (commit && (commit->rec.path_len == 0 || commit->rec.path_len > LR_STORE_SIDECAR_PATH_MAX ||
                   lr_vv_encode_stored(&commit->rec.vv, &vv) < 0))
        commit = NULL; /* no roll-forward for it; reuse still works */
    struct lr_buf b;
    size_t total =
        HEAD_LEN + nold * LR_HASH_LEN + nchunks * ENTRY_LEN + 1 +
        (commit ? 4 + commit->rec.path_len + 8 + 8 + 4 + LR_HASH_LEN + 4 + vv.len + 8 + 1 + 8 : 0);
    lr_buf_init(&b, total);
    lr_buf_put(&b, MAGIC, MAGIC_LEN);
    lr_buf_put_u32(&b, (uint32_t)nold);
    lr_buf_put_u32(&b, (uint32_t)nchunks);
    lr_buf_put(&b, key->b, LR_HASH_LEN);
    for (size_t i = 0; i < nold; i++)
        lr_buf_put(&b, old[i].b, LR_HASH_LEN);
    for (size_t i = 0; i < nchunks; i++) {
        lr_buf_put_u64(&b, chunks[i].off);
        lr_buf_put_u32(&b, chunks[i].len);
        lr_buf_put(&b, chunks[i].hash.b, LR_HASH_LEN);
    }
    lr_buf_put_u8(&b, commit != NULL);
    if (commit)
        put_record(&b, commit, &vv);
    lr_buf_release(&vv);
    if (!lr_buf_ok(&b)) {
        lr_buf_release(&b);
        return lr_err_set(err, LR_EINTERNAL, "staging sidecar: encoding");
    }
    struct name tmp, nm;
    sidecar_name(path, path_len, true, &tmp);
    sidecar_name(path, path_len, false, &nm);
    int rc = 0;
    int fd = spare_take(st, tmp.s);
    if (fd < 0) {
        unlinkat(st->tmpfd, tmp.s, 0); /* a leftover, maybe planted: never written through */
        fd = openat(st->tmpfd, tmp.s, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        rc = lr_err_set(err, -errno, "staging sidecar %.16s: %s", tmp.s, strerror(errno));
        goto out;
    }
    rc = write_close(fd, &b);
    if (rc == 0 && renameat(st->tmpfd, tmp.s, st->tmpfd, nm.s) < 0)
        rc = -errno;
    if (rc < 0) {
        unlinkat(st->tmpfd, tmp.s, 0);
        lr_err_set(err, rc, "staging sidecar %.16s: %s", nm.s, lr_strerror(rc));
    }
out:
    lr_buf_release(&b);
    return rc;
}

static int cmp_chunk_hash(const void *a, const void *b)
{
    const struct lr_chunk *x = a, *y = b;
    return lr_hash_cmp(&x->hash, &y->hash);
}

int lr_store_sidecar_reuse(struct lr_store *st, const struct lr_store_sidecar *prev,
                           const struct lr_hash *key, int fd, const struct lr_chunk *chunks,
                           size_t nchunks, bool *done, uint8_t *buf, size_t bufsize, size_t *copied,
                           struct lr_err *err)
{
    *copied = 0;
    if (!prev->nchunks || lr_hash_cmp(&prev->key, key) == 0)
        return 0;
    char name[LR_HASH_HEX_LEN + 1];
    lr__store_staging_name(&prev->key, name);
    int ofd = openat(st->tmpfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (ofd < 0)
        return 0; /* gone (committed, collected): nothing to reuse */
    struct stat sb;
    if (fstat(ofd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(ofd);
        return 0;
    }
    struct lr_chunk *idx = lr_xmalloc(prev->nchunks * sizeof(*idx));
    memcpy(idx, prev->chunks, prev->nchunks * sizeof(*idx));
    qsort(idx, prev->nchunks, sizeof(*idx), cmp_chunk_hash);
    int rc = 0;
    for (size_t i = 0; i < nchunks && rc == 0; i++) {
        const struct lr_chunk *c = &chunks[i];
        if (done[i] || c->len > bufsize)
            continue;
        struct lr_chunk probe = {.hash = c->hash};
        const struct lr_chunk *hit =
            bsearch(&probe, idx, prev->nchunks, sizeof(*idx), cmp_chunk_hash);
        if (!hit || hit->len != c->len || hit->off + hit->len > (uint64_t)sb.st_size)
            continue;
        if (lr_store_read_chunk_fd(ofd, hit->off, hit->len, &c->hash, buf, NULL) < 0)
            continue; /* not (or no longer) there: fetched instead */
        rc = lr_store_staging_write(fd, c->off, buf, c->len, err);
        if (rc == 0) {
            done[i] = true;
            (*copied)++;
        }
    }
    free(idx);
    close(ofd);
    return rc;
}

int lr_store_sidecar_forget(struct lr_store *st, const uint8_t *path, size_t path_len,
                            const struct lr_hash *committed_key, struct lr_err *err)
{
    struct name nm;
    sidecar_name(path, path_len, false, &nm);
    struct lr_store_sidecar sc;
    memset(&sc, 0, sizeof(sc));
    uint8_t *data;
    size_t len;
    int fd;
    int rc = read_small_fd(st->tmpfd, nm.s, max_size(), &data, &len, &fd);
    if (rc == LR_ENOTFOUND)
        return 0;
    if (rc == 0) {
        rc = parse(data, len, &sc);
        free(data);
    }
    if (rc == 0) {
        if (lr_hash_cmp(&sc.key, committed_key) != 0)
            lr_store_staging_discard(st, &sc.key, NULL);
        for (size_t i = 0; i < sc.nold; i++)
            if (lr_hash_cmp(&sc.old[i], committed_key) != 0)
                lr_store_staging_discard(st, &sc.old[i], NULL);
    }
    lr_store_sidecar_release(&sc);
    if (rc < 0 && rc != LR_EPROTO) {
        if (fd >= 0)
            close(fd);
        return lr_err_set(err, rc, "staging sidecar %.16s: %s", nm.s, lr_strerror(rc));
    }
    /* Done with (or malformed, hence worthless): kept as a spare inode, or removed. */
    bool kept = fd >= 0 && spare_keep(st, fd, nm.s);
    if (fd >= 0)
        close(fd);
    if (!kept && unlinkat(st->tmpfd, nm.s, 0) < 0 && errno != ENOENT)
        return lr_err_set(err, -errno, "staging sidecar %.16s: %s", nm.s, strerror(errno));
    return 0;
}

static bool staging_exists(struct lr_store *st, const struct lr_hash *key)
{
    char name[LR_HASH_HEX_LEN + 1];
    lr__store_staging_name(key, name);
    struct stat sb;
    return fstatat(st->tmpfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

/*
 * Whether tmp's entry `name` is a sidecar, read into *sc if so: a regular
 * file starting with the magic whose header's counts fit its size (checked
 * before reading it whole), that parses, has a commit record, and whose
 * name is the sidecar name of that record's path. Anything else (a staging
 * file, whatever its content) is not touched.
 */
static bool probe(struct lr_store *st, const char *name, struct lr_store_sidecar *sc)
{
    memset(sc, 0, sizeof(*sc));
    int fd = openat(st->tmpfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    uint8_t head[HEAD_LEN];
    struct stat sb;
    bool ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= (off_t)HEAD_LEN &&
              pread(fd, head, HEAD_LEN, 0) == (ssize_t)HEAD_LEN &&
              memcmp(head, MAGIC, MAGIC_LEN) == 0;
    close(fd);
    if (!ok)
        return false;
    struct lr_rd r;
    lr_rd_init(&r, head + MAGIC_LEN, 8);
    uint32_t nold = 0, nchunks = 0;
    lr_rd_get_u32(&r, &nold);
    lr_rd_get_u32(&r, &nchunks);
    if (nold > LR_STORE_SIDECAR_OLD_MAX || nchunks > LR_STORE_SIDECAR_CHUNKS_MAX)
        return false;
    uint64_t min = HEAD_LEN + (uint64_t)nold * LR_HASH_LEN + (uint64_t)nchunks * ENTRY_LEN;
    if ((uint64_t)sb.st_size < min || (uint64_t)sb.st_size > min + RECORD_MAX)
        return false;
    uint8_t *data;
    size_t len;
    if (read_small(st->tmpfd, name, max_size(), &data, &len) < 0)
        return false;
    int rc = parse(data, len, sc);
    free(data);
    struct name nm;
    if (rc == 0 && sc->has_commit) {
        sidecar_name(sc->commit.rec.path, sc->commit.rec.path_len, false, &nm);
        if (strcmp(nm.s, name) == 0)
            return true;
    }
    lr_store_sidecar_release(sc);
    return false;
}

static bool hex_name(const char *n)
{
    if (strlen(n) != LR_HASH_HEX_LEN)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* The sidecar `name` (a directory entry of tmp) names no staging file. */
static bool orphaned(struct lr_store *st, const char *name)
{
    struct lr_store_sidecar sc;
    if (!probe(st, name, &sc))
        return false;
    bool any = staging_exists(st, &sc.key);
    for (size_t i = 0; i < sc.nold && !any; i++)
        any = staging_exists(st, &sc.old[i]);
    lr_store_sidecar_release(&sc);
    return !any;
}

/*
 * A spare sidecar inode a previous process left (8 bytes, SPARE_MAGIC), or
 * an empty file (a staging file of an empty version a crash left: nothing
 * to resume), is removed unless the pool knows it. True if it was removed.
 * A user's 8-byte file holding exactly SPARE_MAGIC, staged at that moment,
 * would be fetched again: never a wrong byte.
 */
static bool stray_spare(struct lr_store *st, const char *name)
{
    struct stat sb;
    if (fstatat(st->tmpfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode) ||
        (sb.st_size != 0 && sb.st_size != MAGIC_LEN))
        return false;
    if (sb.st_size == MAGIC_LEN) {
        char head[MAGIC_LEN];
        int fd = openat(st->tmpfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        bool spare = fd >= 0 && pread(fd, head, MAGIC_LEN, 0) == MAGIC_LEN &&
                     memcmp(head, SPARE_MAGIC, MAGIC_LEN) == 0;
        if (fd >= 0)
            close(fd);
        if (!spare)
            return false;
    }
    bool ours = false;
    struct lr_store_spares *p = st->spares;
    if (p) {
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < p->n && !ours; i++) {
            if (p->v[i].dev != st->dev || p->v[i].dir != st->tmp_ino)
                continue;
            struct name nm;
            spare_name(&p->v[i], &nm);
            ours = strcmp(nm.s, name) == 0;
        }
        pthread_mutex_unlock(&p->mu);
    }
    return !ours && unlinkat(st->tmpfd, name, 0) == 0;
}

int lr_store_sidecar_gc(struct lr_store *st, uint64_t *removed, struct lr_err *err)
{
    if (removed)
        *removed = 0;
    int dfd = openat(st->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return lr_err_set(err, -errno, "sidecar gc: open tmp: %s", strerror(errno));
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = -errno;
        close(dfd);
        return lr_err_set(err, e, "sidecar gc: %s", lr_strerror(e));
    }
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!hex_name(de->d_name))
            continue;
        if (stray_spare(st, de->d_name))
            continue;
        if (orphaned(st, de->d_name) && unlinkat(st->tmpfd, de->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (removed)
        *removed = n;
    return 0;
}

/* sc's version was renamed into place and the index may not know: its
 * staging file is gone and the path holds that very inode (regular, the
 * record's size and mtime), described in *info. */
static bool committed(struct lr_store *st, const struct lr_store_sidecar *sc,
                      struct lr_store_info *info)
{
    const struct lr_file_rec *r = &sc->commit.rec;
    if (staging_exists(st, &sc->key))
        return false; /* not committed yet */
    if (lr_store_path_check((const char *)r->path, NULL) < 0)
        return false;
    return lr_store_stat(st, (const char *)r->path, info, NULL) == 0 && !info->special &&
           info->type == LR_FT_FILE && info->ino == sc->commit.staging_ino &&
           info->size == r->size && info->mtime_ns == r->mtime_ns;
}

/* The sidecar `name` of tmp: its commit, rolled forward when it applies. */
static bool recover_one(struct lr_store *st, const char *name,
                        int (*apply)(void *u, const struct lr_store_sidecar *sc,
                                     const struct lr_store_info *on_disk),
                        void *u)
{
    struct lr_store_sidecar sc;
    if (!probe(st, name, &sc))
        return false;
    bool done = false;
    struct lr_store_info info;
    const struct lr_file_rec *r = &sc.commit.rec;
    if (committed(st, &sc, &info) && apply(u, &sc, &info) == 0) {
        lr_store_sidecar_forget(st, r->path, r->path_len, &sc.key, NULL);
        done = true;
    }
    lr_store_sidecar_release(&sc);
    return done;
}

static uint64_t recover_journal(struct lr_store *st, const char *name,
                                int (*apply)(void *u, const struct lr_store_sidecar *sc,
                                             const struct lr_store_info *on_disk),
                                void *u);

int lr_store_sidecar_recover(struct lr_store *st,
                             int (*apply)(void *u, const struct lr_store_sidecar *sc,
                                          const struct lr_store_info *on_disk),
                             void *u, uint64_t *applied, struct lr_err *err)
{
    if (applied)
        *applied = 0;
    int dfd = openat(st->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return lr_err_set(err, -errno, "sidecar recovery: open tmp: %s", strerror(errno));
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = -errno;
        close(dfd);
        return lr_err_set(err, e, "sidecar recovery: %s", lr_strerror(e));
    }
    /* Names first: forgetting a sidecar changes the directory being read. */
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!hex_name(de->d_name) &&
            strncmp(de->d_name, JOURNAL_PREFIX, sizeof(JOURNAL_PREFIX) - 1) != 0)
            continue;
        names = lr_xreallocarray(names, n + 1, sizeof(*names));
        names[n++] = lr_xstrdup(de->d_name);
    }
    closedir(d);
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (hex_name(names[i]))
            k += recover_one(st, names[i], apply, u);
        else
            k += recover_journal(st, names[i], apply, u);
        free(names[i]);
    }
    free(names);
    if (applied)
        *applied = k;
    return 0;
}

/* ---- commit journals (see the header) ---- */

static void journal_name(uint64_t id, char out[64])
{
    snprintf(out, 64, JOURNAL_PREFIX "%ld-%016" PRIx64, (long)getpid(), id);
}

int lr_store_journal_write(struct lr_store *st, uint64_t id, const struct lr_store_sidecar *recs,
                           size_t n, struct lr_err *err)
{
    if (n > LR_STORE_JOURNAL_MAX)
        return lr_err_set(err, LR_ETOOBIG, "commit journal: %zu records", n);
    struct lr_buf b;
    lr_buf_init(&b, LR_STORE_JOURNAL_BYTES_MAX);
    lr_buf_put(&b, JOURNAL_MAGIC, MAGIC_LEN);
    lr_buf_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const struct lr_store_sidecar *sc = &recs[i];
        const struct lr_store_sidecar_commit *c = &sc->commit;
        struct lr_buf vv;
        lr_buf_init(&vv, VV_MAX);
        if (!sc->has_commit || sc->nchunks > LR_STORE_JOURNAL_CHUNKS_MAX || c->rec.path_len == 0 ||
            c->rec.path_len > LR_STORE_SIDECAR_PATH_MAX ||
            lr_vv_encode_stored(&c->rec.vv, &vv) < 0) {
            lr_buf_release(&vv);
            lr_buf_release(&b);
            return lr_err_set(err, LR_EBADVAL, "commit journal: record %zu cannot be stored", i);
        }
        lr_buf_put(&b, sc->key.b, LR_HASH_LEN);
        lr_buf_put_u32(&b, (uint32_t)sc->nchunks);
        for (size_t k = 0; k < sc->nchunks; k++) {
            lr_buf_put_u64(&b, sc->chunks[k].off);
            lr_buf_put_u32(&b, sc->chunks[k].len);
            lr_buf_put(&b, sc->chunks[k].hash.b, LR_HASH_LEN);
        }
        put_record(&b, c, &vv);
        lr_buf_release(&vv);
    }
    if (!lr_buf_ok(&b)) {
        lr_buf_release(&b);
        return lr_err_set(err, LR_ETOOBIG, "commit journal: over %u bytes",
                          (unsigned)LR_STORE_JOURNAL_BYTES_MAX);
    }
    char name[64];
    journal_name(id, name);
    unlinkat(st->tmpfd, name, 0); /* a leftover, maybe planted: never written through */
    int rc = 0;
    int fd = openat(st->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = lr_err_set(err, -errno, "commit journal %s: %s", name, strerror(errno));
        goto out;
    }
    rc = write_close(fd, &b);
    if (rc < 0) {
        unlinkat(st->tmpfd, name, 0);
        lr_err_set(err, rc, "commit journal %s: %s", name, lr_strerror(rc));
    }
out:
    lr_buf_release(&b);
    return rc;
}

void lr_store_journal_remove(struct lr_store *st, uint64_t id)
{
    char name[64];
    journal_name(id, name);
    unlinkat(st->tmpfd, name, 0);
}

void lr_store_journal_release(struct lr_store_sidecar *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        lr_store_sidecar_release(&v[i]);
    free(v);
}

int lr_store_journal_parse(const uint8_t *data, size_t len, struct lr_store_sidecar **out,
                           size_t *n)
{
    *out = NULL;
    *n = 0;
    struct lr_rd r;
    lr_rd_init(&r, data, len);
    const uint8_t *magic;
    uint32_t count;
    if (lr_rd_get_view(&r, &magic, MAGIC_LEN) < 0 || memcmp(magic, JOURNAL_MAGIC, MAGIC_LEN) != 0 ||
        lr_rd_get_u32(&r, &count) < 0 || count > LR_STORE_JOURNAL_MAX)
        return LR_EPROTO;
    /* Each record takes more than a key and a chunk count: checked before allocating. */
    if (lr_rd_left(&r) / (LR_HASH_LEN + 4) < count)
        return LR_EPROTO;
    struct lr_store_sidecar *v = lr_xcalloc(count ? count : 1, sizeof(*v));
    size_t got = 0;
    int rc = 0;
    for (; got < count; got++) {
        struct lr_store_sidecar *sc = &v[got];
        uint32_t nch;
        if (lr_rd_get_bytes(&r, sc->key.b, LR_HASH_LEN) < 0 || lr_rd_get_u32(&r, &nch) < 0 ||
            nch > LR_STORE_JOURNAL_CHUNKS_MAX) {
            rc = LR_EPROTO;
            break;
        }
        sc->chunks = lr_xcalloc(nch ? nch : 1, sizeof(*sc->chunks));
        sc->nchunks = nch;
        for (uint32_t k = 0; k < nch && rc == 0; k++) {
            struct lr_chunk *c = &sc->chunks[k];
            if (lr_rd_get_u64(&r, &c->off) < 0 || lr_rd_get_u32(&r, &c->len) < 0 ||
                lr_rd_get_bytes(&r, c->hash.b, LR_HASH_LEN) < 0 || c->len == 0 ||
                c->len > LR_STORE_CHUNK_MAX || c->off > (uint64_t)INT64_MAX - c->len)
                rc = LR_EPROTO;
        }
        if (rc == 0 && parse_record(&r, sc) < 0)
            rc = LR_EPROTO;
        if (rc < 0) {
            got++; /* release what this one holds too */
            break;
        }
    }
    if (rc == 0 && lr_rd_left(&r) != 0)
        rc = LR_EPROTO;
    if (rc < 0) {
        lr_store_journal_release(v, got);
        return rc;
    }
    *out = v;
    *n = count;
    return 0;
}

/* Roll forward what the journal `name` of tmp records, then remove it
 * (records that do not apply were never committed, or are not ours). */
static uint64_t recover_journal(struct lr_store *st, const char *name,
                                int (*apply)(void *u, const struct lr_store_sidecar *sc,
                                             const struct lr_store_info *on_disk),
                                void *u)
{
    uint8_t *data;
    size_t len;
    uint64_t k = 0;
    struct lr_store_sidecar *v;
    size_t n;
    if (read_small(st->tmpfd, name, LR_STORE_JOURNAL_BYTES_MAX, &data, &len) < 0)
        return 0; /* not a regular file, or too big: left to lr_store_staging_gc */
    int rc = lr_store_journal_parse(data, len, &v, &n);
    free(data);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            struct lr_store_info info;
            if (committed(st, &v[i], &info) && apply(u, &v[i], &info) == 0)
                k++;
        }
        lr_store_journal_release(v, n);
    } else {
        lr_warn("store", "commit journal %s in %s is malformed: ignored", name, st->root);
    }
    unlinkat(st->tmpfd, name, 0);
    return k;
}
