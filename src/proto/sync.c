/* sync.c - codecs of FOLDERS, WANT, PULLED, SEQ_ASK, SEQS and CHUNK, and the zstd helpers. */
#include "proto/proto_int.h"

#include "chunker/chunker.h"
#include "util/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(LR_PROTO_CHUNK_DATA_MAX == LR_CHUNK_MAX, "CHUNK data max is the chunker's max");

/* ---- shared helpers ------------------------------------------------------ */

bool lr_proto_folder_id_ok(const void *vs, size_t n)
{
    const char *s = vs;
    if (n == 0 || n > LR_PROTO_FOLDER_ID_MAX || !lr_proto_text_ok(s, n) || memchr(s, '/', n))
        return false;
    return !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

int lr_proto_get_folder_id(struct lr_rd *rd, const char *what, char out[LR_PROTO_FOLDER_ID_MAX + 1],
                           struct lr_err *err)
{
    uint64_t len;
    const uint8_t *p;
    if (lr_rd_get_varint(rd, &len) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: length truncated", what);
    if (len > LR_PROTO_FOLDER_ID_MAX)
        return lr_err_set(err, LR_ETOOBIG, "%s: length %" PRIu64 " over %d", what, len,
                          LR_PROTO_FOLDER_ID_MAX);
    if (lr_rd_get_view(rd, &p, (size_t)len) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: %" PRIu64 " bytes declared, %zu left", what, len,
                          lr_rd_left(rd));
    if (!lr_proto_folder_id_ok(p, (size_t)len))
        return lr_err_set(err, LR_EBADVAL,
                          "%s: not a folder ID (empty, invalid UTF-8, control, '/', '.' or '..')",
                          what);
    memcpy(out, p, (size_t)len);
    out[len] = '\0';
    return 0;
}

int lr__proto_get_uint(struct lr_rd *rd, const char *what, uint64_t max, uint64_t *v,
                       struct lr_err *err)
{
    if (lr_rd_get_varint(rd, v) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: truncated", what);
    if (*v > max)
        return lr_err_set(err, LR_EBADVAL, "%s: %" PRIu64 " over %" PRIu64, what, *v, max);
    return 0;
}

struct lr_proto_zc *lr_proto_zc_new(void)
{
    return lr_xcalloc(1, sizeof(struct lr_proto_zc));
}

void lr_proto_zc_free(struct lr_proto_zc *zc)
{
    if (!zc)
        return;
    ZSTD_freeCCtx(zc->c);
    ZSTD_freeDCtx(zc->d);
    free(zc->buf);
    free(zc);
}

int lr__proto_zstd_check(const uint8_t *src, size_t n, size_t expect, const char *what,
                         struct lr_err *err)
{
    unsigned long long fcs = ZSTD_getFrameContentSize(src, n);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return lr_err_set(err, LR_EBADVAL, "%s: not a zstd frame", what);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return lr_err_set(err, LR_EBADVAL, "%s: zstd frame without a content size", what);
    if (fcs != expect)
        return lr_err_set(err, LR_EBADVAL, "%s: zstd frame declares %llu bytes, expected %zu", what,
                          fcs, expect);
    size_t fl = ZSTD_findFrameCompressedSize(src, n);
    if (ZSTD_isError(fl) || fl != n)
        return lr_err_set(err, LR_EBADVAL, "%s: not exactly one zstd frame", what);
    return 0;
}

int lr__proto_unzstd(struct lr_proto_zc *zc, const uint8_t *src, size_t n, uint8_t *dst,
                     size_t expect, const char *what, struct lr_err *err)
{
    /* Everything is judged from the frame header before any output is
     * produced: exactly one frame, spanning the input, declaring `expect`. */
    int rc = lr__proto_zstd_check(src, n, expect, what, err);
    if (rc < 0)
        return rc;
    struct lr_proto_zc tmp = {0};
    struct lr_proto_zc *z = zc ? zc : &tmp;
    if (!z->d && !(z->d = ZSTD_createDCtx()))
        abort(); /* OOM, as lr_xmalloc */
    size_t r = ZSTD_decompressDCtx(z->d, dst, expect, src, n);
    if (!zc)
        ZSTD_freeDCtx(tmp.d);
    if (ZSTD_isError(r))
        return lr_err_set(err, LR_EBADVAL, "%s: zstd: %s", what, ZSTD_getErrorName(r));
    if (r != expect)
        return lr_err_set(err, LR_EBADVAL, "%s: zstd produced %zu bytes, expected %zu", what, r,
                          expect);
    return 0;
}

size_t lr__proto_zstd(struct lr_proto_zc *zc, int level, const void *src, size_t n, uint8_t *dst,
                      size_t cap)
{
    struct lr_proto_zc tmp = {0};
    struct lr_proto_zc *z = zc ? zc : &tmp;
    if (!z->c && !(z->c = ZSTD_createCCtx()))
        abort();
    /* ZSTD_compressCCtx writes the content size into the frame header,
     * which receivers require. */
    size_t r = ZSTD_compressCCtx(z->c, dst, cap, src, n, level);
    if (!zc)
        ZSTD_freeCCtx(tmp.c);
    return ZSTD_isError(r) || r >= n ? 0 : r;
}

/* ---- FOLDERS ----------------------------------------------------------------- */

/* Smallest encoded entry: id length (1) + index_id (8) + max_seq (1) + peer index
 * (8) + peer seq (1) + option count (1). */
#define FOLDER_ENTRY_MIN 20

void lr_proto_folders_release(struct lr_proto_folders *f)
{
    if (!f)
        return;
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

static int folder_cmp(const void *a, const void *b)
{
    return strcmp(((const struct lr_proto_folder *)a)->id, ((const struct lr_proto_folder *)b)->id);
}

void lr_proto_folders_sort(struct lr_proto_folder *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(v[0]), folder_cmp);
}

static bool folder_ok(const struct lr_proto_folder *f)
{
    size_t il = strnlen(f->id, sizeof(f->id));
    size_t cl = strnlen(f->conflict, sizeof(f->conflict));
    return il < sizeof(f->id) && lr_proto_folder_id_ok(f->id, il) && f->index_id != 0 &&
           f->max_seq <= LR_VARINT_MAX && f->peer_seq <= LR_VARINT_MAX &&
           (f->peer_index_id != 0 || f->peer_seq == 0) && f->mode <= LR_PROTO_MODE_RECEIVE_ONLY &&
           cl < sizeof(f->conflict) && lr_proto_text_ok(f->conflict, cl) &&
           (!f->has_resolve || (f->resolve <= LR_PROTO_RESOLVE_PREFER_DEVICE &&
                                f->resolve_window <= LR_PROTO_RESOLVE_WINDOW_MAX)) &&
           f->list_upto <= LR_VARINT_MAX &&
           (f->peer_check_seq == 0 ||
            (f->peer_index_id != 0 && f->peer_check_seq <= f->peer_seq &&
             f->peer_check_path_len <= LR_INDEX_CHECK_PATH_MAX &&
             (f->peer_check_path_len == 0 ||
              lr_index_path_check(f->peer_check_path, f->peer_check_path_len, NULL) == 0))) &&
           (f->peer_check_seq != 0 || f->peer_check_path_len == 0);
}

int lr_proto_folders_encode(const struct lr_proto_folder *v, size_t n, struct lr_buf *out)
{
    if (n > LR_PROTO_FOLDERS_ENTRIES_MAX)
        return LR_EBADVAL;
    for (size_t i = 0; i < n; i++) {
        if (!folder_ok(&v[i]) || (i > 0 && strcmp(v[i - 1].id, v[i].id) >= 0))
            return LR_EBADVAL;
    }
    size_t start = out->len;
    int rc = lr_buf_put_varint(out, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct lr_proto_folder *f = &v[i];
        uint8_t mv = (uint8_t)f->mode; /* < 64: a one-byte varint */
        size_t cl = strlen(f->conflict);
        rc = lr_buf_put_lbytes(out, f->id, strlen(f->id));
        if (rc == 0)
            rc = lr_buf_put_u64(out, f->index_id);
        if (rc == 0)
            rc = lr_buf_put_varint(out, f->max_seq);
        if (rc == 0)
            rc = lr_buf_put_u64(out, f->peer_index_id);
        if (rc == 0)
            rc = lr_buf_put_varint(out, f->peer_seq);
        if (rc == 0)
            rc = lr_buf_put_varint(out, 1u + (cl != 0) + f->has_resolve + (f->list_upto != 0) +
                                            f->scanning + f->stopped + f->unshared +
                                            (f->peer_check_seq != 0) + f->removed);
        if (rc == 0)
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_MODE);
        if (rc == 0)
            rc = lr_buf_put_lbytes(out, &mv, 1);
        if (rc == 0 && cl) {
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_CONFLICT);
            if (rc == 0)
                rc = lr_buf_put_lbytes(out, f->conflict, cl);
        }
        if (rc == 0 && f->has_resolve) {
            /* kind (1 byte) + window (<= 4 bytes) + device: < 64, a one-byte length */
            bool dev = f->resolve == LR_PROTO_RESOLVE_PREFER_DEVICE;
            size_t wl = lr_varint_len(f->resolve_window);
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_RESOLVE);
            if (rc == 0)
                rc = lr_buf_put_varint(out, 1 + wl + (dev ? sizeof(f->resolve_device) : 0));
            if (rc == 0)
                rc = lr_buf_put_varint(out, f->resolve);
            if (rc == 0)
                rc = lr_buf_put_varint(out, f->resolve_window);
            if (rc == 0 && dev)
                rc = lr_buf_put(out, f->resolve_device, sizeof(f->resolve_device));
        }
        if (rc == 0 && f->list_upto) {
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_LIST_UPTO);
            if (rc == 0)
                rc = lr_buf_put_varint(out, lr_varint_len(f->list_upto));
            if (rc == 0)
                rc = lr_buf_put_varint(out, f->list_upto);
        }
        if (rc == 0 && f->scanning) {
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_SCANNING);
            if (rc == 0)
                rc = lr_buf_put_varint(out, 0);
        }
        if (rc == 0 && f->stopped) {
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_STOPPED);
            if (rc == 0)
                rc = lr_buf_put_varint(out, 0);
        }
        if (rc == 0 && f->unshared) {
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_UNSHARED);
            if (rc == 0)
                rc = lr_buf_put_varint(out, 0);
        }
        if (rc == 0 && f->peer_check_seq) {
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_PEER_CHECK);
            if (rc == 0)
                rc = lr_buf_put_varint(out, lr_varint_len(f->peer_check_seq) + LR_PROTO_CHECK_LEN +
                                                f->peer_check_path_len);
            if (rc == 0)
                rc = lr_buf_put_varint(out, f->peer_check_seq);
            if (rc == 0)
                rc = lr_buf_put(out, f->peer_check, LR_PROTO_CHECK_LEN);
            if (rc == 0 && f->peer_check_path_len)
                rc = lr_buf_put(out, f->peer_check_path, f->peer_check_path_len);
        }
        if (rc == 0 && f->removed) {
            rc = lr_buf_put_varint(out, LR_PROTO_FOPT_REMOVED);
            if (rc == 0)
                rc = lr_buf_put_varint(out, 0);
        }
    }
    if (rc == 0 && out->len - start > LR_PROTO_FOLDERS_MAX) {
        out->len = start;
        out->failed = true;
        rc = LR_ETOOBIG;
    }
    return rc;
}

static int folder_opts(struct lr_rd *rd, size_t i, struct lr_proto_folder *f, struct lr_err *err)
{
    uint64_t nopt, prev = 0;
    if (lr_rd_get_varint(rd, &nopt) < 0)
        return lr_err_set(err, LR_ETRUNC, "folders[%zu].options: count truncated", i);
    if (nopt > LR_PROTO_FOLDER_OPTS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "folders[%zu].options: %" PRIu64 " over %d", i, nopt,
                          LR_PROTO_FOLDER_OPTS_MAX);
    for (uint64_t k = 0; k < nopt; k++) {
        uint64_t key;
        const uint8_t *val;
        size_t vl;
        if (lr_rd_get_varint(rd, &key) < 0)
            return lr_err_set(err, LR_ETRUNC, "folders[%zu].options[%" PRIu64 "]: key truncated", i,
                              k);
        if (key <= prev)
            return lr_err_set(err, LR_EBADVAL,
                              "folders[%zu].options: key %" PRIu64 " after %" PRIu64
                              " (0 reserved, keys strictly increasing)",
                              i, key, prev);
        prev = key;
        int rc = lr_rd_get_lview(rd, &val, &vl, LR_PROTO_FOLDER_OPT_VAL_MAX);
        if (rc == LR_ETOOBIG)
            return lr_err_set(err, rc, "folders[%zu].options[%" PRIu64 "]: value over %d bytes", i,
                              key, LR_PROTO_FOLDER_OPT_VAL_MAX);
        if (rc < 0)
            return lr_err_set(err, LR_ETRUNC, "folders[%zu].options[%" PRIu64 "]: truncated", i,
                              key);
        if (key == LR_PROTO_FOPT_MODE) {
            struct lr_rd vr;
            uint64_t m;
            lr_rd_init(&vr, val, vl);
            if (lr_rd_get_varint(&vr, &m) < 0 || lr_rd_left(&vr) != 0 ||
                m > LR_PROTO_MODE_RECEIVE_ONLY)
                return lr_err_set(err, LR_EBADVAL, "folders[%zu].mode: not a known mode", i);
            f->mode = (uint32_t)m;
        } else if (key == LR_PROTO_FOPT_CONFLICT) {
            if (vl == 0 || vl > LR_PROTO_STRATEGY_MAX || !lr_proto_text_ok(val, vl))
                return lr_err_set(err, LR_EBADVAL, "folders[%zu].conflict: not text of 1..%d bytes",
                                  i, LR_PROTO_STRATEGY_MAX);
            memcpy(f->conflict, val, vl);
            f->conflict[vl] = '\0';
        } else if (key == LR_PROTO_FOPT_RESOLVE) {
            struct lr_rd vr;
            uint64_t kind, win;
            const uint8_t *dev = NULL;
            lr_rd_init(&vr, val, vl);
            if (lr_rd_get_varint(&vr, &kind) < 0 || lr_rd_get_varint(&vr, &win) < 0)
                return lr_err_set(err, LR_ETRUNC, "folders[%zu].resolve: truncated", i);
            if (kind > LR_PROTO_RESOLVE_PREFER_DEVICE)
                return lr_err_set(err, LR_EBADVAL,
                                  "folders[%zu].resolve: strategy %" PRIu64 " not known", i, kind);
            if (win > LR_PROTO_RESOLVE_WINDOW_MAX)
                return lr_err_set(err, LR_EBADVAL,
                                  "folders[%zu].resolve: window %" PRIu64 " over %u seconds", i,
                                  win, LR_PROTO_RESOLVE_WINDOW_MAX);
            if (kind == LR_PROTO_RESOLVE_PREFER_DEVICE &&
                lr_rd_get_view(&vr, &dev, sizeof(f->resolve_device)) < 0)
                return lr_err_set(err, LR_ETRUNC, "folders[%zu].resolve: device ID truncated", i);
            if (lr_rd_left(&vr) != 0)
                return lr_err_set(err, LR_EBADVAL, "folders[%zu].resolve: %zu trailing bytes", i,
                                  lr_rd_left(&vr));
            f->has_resolve = true;
            f->resolve = (uint32_t)kind;
            f->resolve_window = (uint32_t)win;
            if (dev)
                memcpy(f->resolve_device, dev, sizeof(f->resolve_device));
        } else if (key == LR_PROTO_FOPT_LIST_UPTO) {
            struct lr_rd vr;
            uint64_t seq;
            lr_rd_init(&vr, val, vl);
            if (lr_rd_get_varint(&vr, &seq) < 0 || lr_rd_left(&vr) != 0 || seq == 0)
                return lr_err_set(err, LR_EBADVAL,
                                  "folders[%zu].list_upto: not one varint sequence >= 1", i);
            f->list_upto = seq;
        } else if (key >= LR_PROTO_FOPT_SCANNING && key <= LR_PROTO_FOPT_UNSHARED) {
            /* Flags: present or not, the value empty (a value is refused
             * rather than taken for a newer form). */
            static const char *const names[] = {"scanning", "stopped", "unshared"};
            if (vl != 0)
                return lr_err_set(err, LR_EBADVAL, "folders[%zu].%s: %zu bytes, not empty", i,
                                  names[key - LR_PROTO_FOPT_SCANNING], vl);
            bool *flag = key == LR_PROTO_FOPT_SCANNING  ? &f->scanning
                         : key == LR_PROTO_FOPT_STOPPED ? &f->stopped
                                                        : &f->unshared;
            *flag = true;
        } else if (key == LR_PROTO_FOPT_PEER_CHECK) {
            struct lr_rd vr;
            uint64_t seq;
            const uint8_t *d;
            lr_rd_init(&vr, val, vl);
            if (lr_rd_get_varint(&vr, &seq) < 0 || lr_rd_get_view(&vr, &d, LR_PROTO_CHECK_LEN) < 0)
                return lr_err_set(err, LR_EBADVAL,
                                  "folders[%zu].peer_check: not a varint sequence and %d bytes", i,
                                  LR_PROTO_CHECK_LEN);
            size_t pl = lr_rd_left(&vr);
            const uint8_t *path = NULL;
            if (pl > LR_INDEX_CHECK_PATH_MAX || (pl && (lr_rd_get_view(&vr, &path, pl) < 0 ||
                                                        lr_index_path_check(path, pl, NULL) < 0)))
                return lr_err_set(err, LR_EBADVAL,
                                  "folders[%zu].peer_check: the path is not a valid path of at "
                                  "most %d bytes",
                                  i, LR_INDEX_CHECK_PATH_MAX);
            if (seq == 0 || seq > f->peer_seq || f->peer_index_id == 0)
                return lr_err_set(err, LR_EBADVAL,
                                  "folders[%zu].peer_check: sequence %" PRIu64
                                  " not within the held 1..%" PRIu64,
                                  i, seq, f->peer_seq);
            f->peer_check_seq = seq;
            memcpy(f->peer_check, d, LR_PROTO_CHECK_LEN);
            if (pl)
                memcpy(f->peer_check_path, path, pl);
            f->peer_check_path[pl] = '\0';
            f->peer_check_path_len = pl;
        } else if (key == LR_PROTO_FOPT_REMOVED) {
            if (vl != 0)
                return lr_err_set(err, LR_EBADVAL, "folders[%zu].removed: %zu bytes, not empty", i,
                                  vl);
            f->removed = true;
        }
        /* Other keys: options of a newer version, skipped. */
    }
    /* A folder removed there is neither in error nor kept from us there. */
    if (f->removed && (f->stopped || f->unshared))
        return lr_err_set(err, LR_EBADVAL, "folders[%zu]: removed and %s at once", i,
                          f->stopped ? "stopped" : "unshared");
    return 0;
}

/*
 * A list's entry count (`what`: "folders", "seqs"), read and checked before
 * anything is allocated: at most `max`, and no more entries than the bytes
 * left could hold at `min_entry` bytes each.
 */
static int get_count(struct lr_rd *rd, const char *what, uint64_t max, size_t min_entry,
                     uint64_t *cnt, struct lr_err *err)
{
    if (lr_rd_get_varint(rd, cnt) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s.count: truncated", what);
    if (*cnt > max)
        return lr_err_set(err, LR_ETOOBIG, "%s.count: %" PRIu64 " over %" PRIu64, what, *cnt, max);
    if (*cnt > lr_rd_left(rd) / min_entry)
        return lr_err_set(err, LR_ETRUNC, "%s.count: %" PRIu64 " entries cannot fit in %zu bytes",
                          what, *cnt, lr_rd_left(rd));
    return 0;
}

/* The folder ID of a list's i-th entry (named list[i].field in errors),
 * which must come after `prev` (NULL for the first) in byte order. */
static int get_next_folder_id(struct lr_rd *rd, const char *list, size_t i, const char *field,
                              const char *prev, char out[LR_PROTO_FOLDER_ID_MAX + 1],
                              struct lr_err *err)
{
    char w[48];
    snprintf(w, sizeof(w), "%s[%zu].%s", list, i, field);
    int rc = lr_proto_get_folder_id(rd, w, out, err);
    if (rc == 0 && prev && strcmp(prev, out) >= 0)
        rc = lr_err_set(err, LR_EBADVAL,
                        "%s: not after the previous ID (duplicate or out of order)", w);
    return rc;
}

int lr_proto_folders_decode(const uint8_t *p, size_t n, struct lr_proto_folders *out,
                            struct lr_err *err)
{
    struct lr_rd rd;
    uint64_t cnt;
    int rc = 0;
    memset(out, 0, sizeof(*out));
    lr_rd_init(&rd, p, n);
    if ((rc = get_count(&rd, "folders", LR_PROTO_FOLDERS_ENTRIES_MAX, FOLDER_ENTRY_MIN, &cnt,
                        err)) < 0)
        return rc;
    struct lr_proto_folder *v = cnt ? lr_xcalloc((size_t)cnt, sizeof(v[0])) : NULL;
    for (size_t i = 0; i < cnt; i++) {
        struct lr_proto_folder *f = &v[i];
        if ((rc = get_next_folder_id(&rd, "folders", i, "id", i ? v[i - 1].id : NULL, f->id, err)) <
            0)
            goto out;
        if (lr_rd_get_u64(&rd, &f->index_id) < 0 || lr_rd_get_varint(&rd, &f->max_seq) < 0 ||
            lr_rd_get_u64(&rd, &f->peer_index_id) < 0 || lr_rd_get_varint(&rd, &f->peer_seq) < 0) {
            rc = lr_err_set(err, LR_ETRUNC, "folders[%zu]: index fields truncated", i);
            goto out;
        }
        if (f->index_id == 0) {
            rc = lr_err_set(err, LR_EBADVAL, "folders[%zu].index_id: 0", i);
            goto out;
        }
        if (f->peer_index_id == 0 && f->peer_seq != 0) {
            rc = lr_err_set(err, LR_EBADVAL,
                            "folders[%zu].peer_seq: %" PRIu64 " without a peer index ID", i,
                            f->peer_seq);
            goto out;
        }
        if ((rc = folder_opts(&rd, i, f, err)) < 0)
            goto out;
    }
    out->v = v;
    out->n = (size_t)cnt;
    v = NULL;
    rc = 0;
out:
    free(v);
    return rc;
}

/* ---- WANT ------------------------------------------------------------------------ */

int lr__proto_get_hash(struct lr_rd *rd, const char *what, struct lr_hash *h, struct lr_err *err)
{
    uint64_t len;
    if (lr_rd_get_varint(rd, &len) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: length truncated", what);
    if (len != LR_HASH_LEN)
        return lr_err_set(err, LR_EBADVAL, "%s: %" PRIu64 " bytes, must be %d", what, len,
                          LR_HASH_LEN);
    if (lr_rd_get_bytes(rd, h->b, LR_HASH_LEN) < 0)
        return lr_err_set(err, LR_ETRUNC, "%s: truncated", what);
    return 0;
}

int lr_proto_want_encode(const struct lr_proto_want *w, struct lr_buf *out)
{
    size_t fl = strnlen(w->folder_id, sizeof(w->folder_id));
    if (w->req_id > LR_VARINT_MAX || fl == sizeof(w->folder_id) ||
        !lr_proto_folder_id_ok(w->folder_id, fl) || !w->path ||
        lr_index_path_check(w->path, w->path_len, NULL) < 0 || w->size == 0 ||
        w->size > LR_PROTO_CHUNK_DATA_MAX || w->offset > LR_VARINT_MAX - w->size)
        return LR_EBADVAL;
    int rc = lr_buf_put_varint(out, w->req_id);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, w->folder_id, fl);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, w->path, w->path_len);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, w->blocks_hash.b, LR_HASH_LEN);
    if (rc == 0)
        rc = lr_buf_put_varint(out, w->offset);
    if (rc == 0)
        rc = lr_buf_put_varint(out, w->size);
    if (rc == 0)
        rc = lr_buf_put_lbytes(out, w->hash.b, LR_HASH_LEN);
    return rc;
}

int lr_proto_want_decode(const uint8_t *p, size_t n, struct lr_proto_want *w, struct lr_err *err)
{
    struct lr_proto_want t;
    struct lr_rd rd;
    uint64_t v;
    int rc;
    memset(w, 0, sizeof(*w));
    memset(&t, 0, sizeof(t));
    lr_rd_init(&rd, p, n);
    if (lr_rd_get_varint(&rd, &t.req_id) < 0)
        return lr_err_set(err, LR_ETRUNC, "want.req_id: truncated");
    if ((rc = lr_proto_get_folder_id(&rd, "want.folder", t.folder_id, err)) < 0)
        return rc;
    rc = lr_rd_get_lview(&rd, &t.path, &t.path_len, LR_INDEX_PATH_MAX);
    if (rc == LR_ETOOBIG)
        return lr_err_set(err, rc, "want.path: over %d bytes", LR_INDEX_PATH_MAX);
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "want.path: truncated");
    struct lr_err perr;
    if (lr_index_path_check(t.path, t.path_len, &perr) < 0)
        return lr_err_set(err, LR_EBADVAL, "want.path: %s", perr.msg);
    if ((rc = lr__proto_get_hash(&rd, "want.blocks_hash", &t.blocks_hash, err)) < 0)
        return rc;
    if (lr_rd_get_varint(&rd, &t.offset) < 0)
        return lr_err_set(err, LR_ETRUNC, "want.offset: truncated");
    if (lr_rd_get_varint(&rd, &v) < 0)
        return lr_err_set(err, LR_ETRUNC, "want.size: truncated");
    if (v == 0 || v > LR_PROTO_CHUNK_DATA_MAX)
        return lr_err_set(err, LR_EBADVAL, "want.size: %" PRIu64 " not in 1..%u", v,
                          LR_PROTO_CHUNK_DATA_MAX);
    if (t.offset > LR_VARINT_MAX - v)
        return lr_err_set(err, LR_EBADVAL, "want.offset: %" PRIu64 " + %" PRIu64 " past 2^62",
                          t.offset, v);
    t.size = (uint32_t)v;
    if ((rc = lr__proto_get_hash(&rd, "want.hash", &t.hash, err)) < 0)
        return rc;
    *w = t;
    return 0;
}

/* ---- PULLED ------------------------------------------------------------------------- */

int lr_proto_pulled_encode(const struct lr_proto_pulled *m, struct lr_buf *out)
{
    size_t fl = strnlen(m->folder_id, sizeof(m->folder_id));
    if (fl == sizeof(m->folder_id) || !lr_proto_folder_id_ok(m->folder_id, fl) ||
        m->peer_index_id == 0 || m->peer_seq > LR_VARINT_MAX || m->need > LR_VARINT_MAX)
        return LR_EBADVAL;
    int rc = lr_buf_put_lbytes(out, m->folder_id, fl);
    if (rc == 0)
        rc = lr_buf_put_u64(out, m->peer_index_id);
    if (rc == 0)
        rc = lr_buf_put_varint(out, m->peer_seq);
    if (rc == 0)
        rc = lr_buf_put_varint(out, m->need);
    return rc;
}

int lr_proto_pulled_decode(const uint8_t *p, size_t n, struct lr_proto_pulled *m,
                           struct lr_err *err)
{
    struct lr_proto_pulled t;
    struct lr_rd rd;
    int rc;
    memset(m, 0, sizeof(*m));
    memset(&t, 0, sizeof(t));
    lr_rd_init(&rd, p, n);
    if ((rc = lr_proto_get_folder_id(&rd, "pulled.folder", t.folder_id, err)) < 0)
        return rc;
    if (lr_rd_get_u64(&rd, &t.peer_index_id) < 0)
        return lr_err_set(err, LR_ETRUNC, "pulled.peer_index_id: truncated");
    if (t.peer_index_id == 0)
        return lr_err_set(err, LR_EBADVAL, "pulled.peer_index_id: 0");
    if (lr_rd_get_varint(&rd, &t.peer_seq) < 0)
        return lr_err_set(err, LR_ETRUNC, "pulled.peer_seq: truncated");
    if (lr_rd_get_varint(&rd, &t.need) < 0)
        return lr_err_set(err, LR_ETRUNC, "pulled.need: truncated");
    *m = t; /* trailing bytes: a newer version's fields (§5) */
    return 0;
}

/* ---- SEQ_ASK and SEQS ---------------------------------------------------------------- */

/* Smallest encoded SEQS entry: id length (1) + id (1) + index_id (8) + max_seq (1). */
#define SEQ_ENTRY_MIN 11

int lr_proto_seq_ask_encode(uint64_t req, struct lr_buf *out)
{
    if (req > LR_VARINT_MAX)
        return LR_EBADVAL;
    return lr_buf_put_varint(out, req);
}

int lr_proto_seq_ask_decode(const uint8_t *p, size_t n, uint64_t *req, struct lr_err *err)
{
    struct lr_rd rd;
    uint64_t t;
    *req = 0;
    lr_rd_init(&rd, p, n);
    if (lr_rd_get_varint(&rd, &t) < 0)
        return lr_err_set(err, LR_ETRUNC, "seq_ask.req: truncated");
    *req = t; /* trailing bytes: a newer version's fields (§5) */
    return 0;
}

void lr_proto_seqs_release(struct lr_proto_seqs *s)
{
    if (!s)
        return;
    free(s->v);
    memset(s, 0, sizeof(*s));
}

int lr_proto_seqs_encode(uint64_t req, const struct lr_proto_seq *v, size_t n, struct lr_buf *out)
{
    if (req > LR_VARINT_MAX || n > LR_PROTO_SEQS_ENTRIES_MAX)
        return LR_EBADVAL;
    /* strcmp is byte order (unsigned), and IDs hold no NUL: the order
     * FOLDERS uses, so one sorted folder list serves both. */
    for (size_t i = 0; i < n; i++) {
        size_t fl = strnlen(v[i].folder_id, sizeof(v[i].folder_id));
        if (fl == sizeof(v[i].folder_id) || !lr_proto_folder_id_ok(v[i].folder_id, fl) ||
            v[i].index_id == 0 || v[i].max_seq > LR_VARINT_MAX ||
            (i > 0 && strcmp(v[i - 1].folder_id, v[i].folder_id) >= 0))
            return LR_EBADVAL;
    }
    size_t start = out->len;
    int rc = lr_buf_put_varint(out, req);
    if (rc == 0)
        rc = lr_buf_put_varint(out, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = lr_buf_put_lbytes(out, v[i].folder_id, strlen(v[i].folder_id));
        if (rc == 0)
            rc = lr_buf_put_u64(out, v[i].index_id);
        if (rc == 0)
            rc = lr_buf_put_varint(out, v[i].max_seq);
    }
    /* 4096 entries of the longest IDs come to ~1.1 MB, over the frame
     * limit: refuse here rather than send a frame the peer must reject. */
    if (rc == 0 && out->len - start > LR_PROTO_SEQS_MAX) {
        out->len = start;
        out->failed = true;
        rc = LR_ETOOBIG;
    }
    return rc;
}

int lr_proto_seqs_decode(const uint8_t *p, size_t n, struct lr_proto_seqs *out, struct lr_err *err)
{
    struct lr_rd rd;
    uint64_t req, cnt;
    int rc = 0;
    memset(out, 0, sizeof(*out));
    lr_rd_init(&rd, p, n);
    if (lr_rd_get_varint(&rd, &req) < 0)
        return lr_err_set(err, LR_ETRUNC, "seqs.req: truncated");
    if ((rc = get_count(&rd, "seqs", LR_PROTO_SEQS_ENTRIES_MAX, SEQ_ENTRY_MIN, &cnt, err)) < 0)
        return rc;
    struct lr_proto_seq *v = cnt ? lr_xcalloc((size_t)cnt, sizeof(v[0])) : NULL;
    for (size_t i = 0; i < cnt; i++) {
        struct lr_proto_seq *e = &v[i];
        if ((rc = get_next_folder_id(&rd, "seqs", i, "folder", i ? v[i - 1].folder_id : NULL,
                                     e->folder_id, err)) < 0)
            goto out;
        if (lr_rd_get_u64(&rd, &e->index_id) < 0) {
            rc = lr_err_set(err, LR_ETRUNC, "seqs[%zu].index_id: truncated", i);
            goto out;
        }
        if (e->index_id == 0) {
            rc = lr_err_set(err, LR_EBADVAL, "seqs[%zu].index_id: 0", i);
            goto out;
        }
        if (lr_rd_get_varint(&rd, &e->max_seq) < 0) {
            rc = lr_err_set(err, LR_ETRUNC, "seqs[%zu].max_seq: truncated", i);
            goto out;
        }
    }
    /* Trailing bytes: a newer version's fields (§5). */
    out->req = req;
    out->v = v;
    out->n = (size_t)cnt;
    v = NULL;
    rc = 0;
out:
    free(v);
    return rc;
}

/* ---- CHUNK -------------------------------------------------------------------------- */

int lr_proto_chunk_encode(struct lr_proto_zc *zc, uint64_t req_id, uint64_t status,
                          const void *data, size_t len, bool compress, struct lr_buf *out)
{
    if (req_id > LR_VARINT_MAX || status > LR_VARINT_MAX)
        return LR_EBADVAL;
    if (status == LR_PROTO_CHUNK_OK ? (len == 0 || len > LR_PROTO_CHUNK_DATA_MAX || !data)
                                    : len != 0)
        return LR_EBADVAL;
    uint8_t *z = NULL, *owned = NULL;
    size_t zl = 0;
    if (compress && len > 0) {
        /* Reuse the context's scratch: one allocation per context, not per
         * chunk (len <= 256 KiB, so the bound is small). */
        size_t cap = ZSTD_compressBound(len);
        if (zc) {
            if (zc->cap < cap) {
                free(zc->buf);
                zc->buf = lr_xmalloc(cap);
                zc->cap = cap;
            }
            z = zc->buf;
        } else {
            z = owned = lr_xmalloc(cap);
        }
        zl = lr__proto_zstd(zc, 1, data, len, z, cap);
    }
    int rc = lr_buf_put_varint(out, req_id);
    if (rc == 0)
        rc = lr_buf_put_varint(out, status);
    if (rc == 0)
        rc = lr_buf_put_varint(out, zl ? LR_PROTO_COMP_ZSTD : LR_PROTO_COMP_NONE);
    if (rc == 0)
        rc = zl ? lr_buf_put_lbytes(out, z, zl) : lr_buf_put_lbytes(out, data, len);
    free(owned);
    return rc;
}

int lr_proto_chunk_encode_raw(uint64_t req_id, size_t len, struct lr_buf *out, uint8_t **data)
{
    *data = NULL;
    if (req_id > LR_VARINT_MAX || len == 0 || len > LR_PROTO_CHUNK_DATA_MAX)
        return LR_EBADVAL;
    int rc = lr_buf_put_varint(out, req_id);
    if (rc == 0)
        rc = lr_buf_put_varint(out, LR_PROTO_CHUNK_OK);
    if (rc == 0)
        rc = lr_buf_put_varint(out, LR_PROTO_COMP_NONE);
    if (rc == 0)
        rc = lr_buf_put_varint(out, len);
    if (rc < 0)
        return rc;
    uint8_t *p = lr_buf_reserve(out, len);
    if (!p)
        return LR_ETOOBIG;
    out->len += len;
    *data = p;
    return 0;
}

int lr_proto_chunk_decode(const uint8_t *p, size_t n, struct lr_proto_chunk *c, struct lr_err *err)
{
    struct lr_proto_chunk t;
    struct lr_rd rd;
    memset(c, 0, sizeof(*c));
    memset(&t, 0, sizeof(t));
    lr_rd_init(&rd, p, n);
    if (lr_rd_get_varint(&rd, &t.req_id) < 0)
        return lr_err_set(err, LR_ETRUNC, "chunk.req_id: truncated");
    if (lr_rd_get_varint(&rd, &t.status) < 0)
        return lr_err_set(err, LR_ETRUNC, "chunk.status: truncated");
    int rc = lr__proto_get_uint(&rd, "chunk.compression", LR_PROTO_COMP_ZSTD, &t.comp, err);
    if (rc < 0)
        return rc;
    rc = lr_rd_get_lview(&rd, &t.data, &t.data_len, LR_PROTO_CHUNK_DATA_MAX);
    if (rc == LR_ETOOBIG)
        return lr_err_set(err, rc, "chunk.data: over %u bytes", LR_PROTO_CHUNK_DATA_MAX);
    if (rc < 0)
        return lr_err_set(err, LR_ETRUNC, "chunk.data: truncated");
    if (t.status == LR_PROTO_CHUNK_OK && t.data_len == 0)
        return lr_err_set(err, LR_EBADVAL, "chunk.data: empty with status OK");
    if (t.status != LR_PROTO_CHUNK_OK && (t.data_len != 0 || t.comp != LR_PROTO_COMP_NONE))
        return lr_err_set(err, LR_EBADVAL, "chunk.data: %zu bytes with status %" PRIu64, t.data_len,
                          t.status);
    *c = t;
    return 0;
}

int lr_proto_chunk_bytes(struct lr_proto_zc *zc, const struct lr_proto_chunk *c, uint8_t *scratch,
                         size_t expect, const uint8_t **data, struct lr_err *err)
{
    *data = NULL;
    if (c->status != LR_PROTO_CHUNK_OK)
        return lr_err_set(err, LR_EBADVAL, "chunk: status %" PRIu64 " carries no data", c->status);
    if (expect == 0 || expect > LR_PROTO_CHUNK_DATA_MAX)
        return lr_err_set(err, LR_EBADVAL, "chunk: expected size %zu not in 1..%u", expect,
                          LR_PROTO_CHUNK_DATA_MAX);
    if (c->comp == LR_PROTO_COMP_NONE) {
        if (c->data_len != expect)
            return lr_err_set(err, LR_EBADVAL, "chunk: %zu bytes, %zu requested", c->data_len,
                              expect);
        *data = c->data;
        return 0;
    }
    if (c->comp != LR_PROTO_COMP_ZSTD)
        return lr_err_set(err, LR_EBADVAL, "chunk: compression %" PRIu64, c->comp);
    if (c->data_len >= expect)
        return lr_err_set(err, LR_EBADVAL,
                          "chunk: compressed form of %zu bytes not smaller than %zu requested",
                          c->data_len, expect);
    int rc = lr__proto_unzstd(zc, c->data, c->data_len, scratch, expect, "chunk.data", err);
    if (rc == 0)
        *data = scratch;
    return rc;
}

int lr_proto_chunk_data(struct lr_proto_zc *zc, const struct lr_proto_chunk *c, uint8_t *out,
                        size_t expect, struct lr_err *err)
{
    const uint8_t *d;
    int rc = lr_proto_chunk_bytes(zc, c, out, expect, &d, err);
    if (rc == 0 && d != out)
        memcpy(out, d, expect);
    return rc;
}
