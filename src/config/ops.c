#include "config/ops.h"

#include "util/jsonx.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MARKER_DIR ".landropic"

static int param_str(json_t *params, const char *key, bool required, const char **out,
                     struct lr_err *err)
{
    json_t *v = json_object_get(params, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return lr_err_set(err, LR_EUSAGE, "missing parameter '%s'", key);
        return 0;
    }
    if (!json_is_string(v))
        return lr_err_set(err, LR_EUSAGE, "parameter '%s' must be a string", key);
    *out = json_string_value(v);
    return 0;
}

static int parse_id(const char *s, struct lr_device_id *id, struct lr_err *err)
{
    struct lr_err sub = {0};
    if (lr_device_id_parse(s, id, &sub) == 0)
        return 0;
    char *e = lr_escs_short(s);
    int rc = lr_err_set(err, LR_EUSAGE, "invalid device ID '%s': %s", e, sub.msg);
    free(e);
    return rc;
}

/* This device's own ID (a pasted `id` line) as a peer: it would be dialled
 * and refused forever, and folders "shared" with it never sync. */
static int not_own_id(struct lr_config *cfg, const struct lr_device_id *id, const char *text,
                      struct lr_err *err)
{
    struct lr_identity *self = NULL;
    if (lr_identity_load(cfg->home, &self, NULL) < 0)
        return 0;
    bool own = lr_device_id_eq(lr_identity_device_id(self), id);
    lr_identity_free(self);
    return own ? lr_err_set(err, LR_EUSAGE, "%s is this device's own ID", text) : 0;
}

static int op_peer_add(struct lr_config *cfg, json_t *params, json_t **result, struct lr_err *err)
{
    const char *ids, *name;
    struct lr_device_id id;
    int rc;
    if ((rc = param_str(params, "id", true, &ids, err)) < 0 ||
        (rc = param_str(params, "name", false, &name, err)) < 0 ||
        (rc = parse_id(ids, &id, err)) < 0)
        return rc;
    json_t *ja = json_object_get(params, "addresses");
    size_t na = json_is_array(ja) ? json_array_size(ja) : 0, n = 0;
    char *addrs[LR_ADDR_MAX];
    for (size_t i = 0; i < na; i++) {
        const char *a = json_string_value(json_array_get(ja, i));
        if (!a)
            return lr_err_set(err, LR_EUSAGE, "addresses must be strings");
        /* An address given twice is kept once, and counts once. */
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(addrs[k], a) == 0;
        if (dup)
            continue;
        if (n == LR_ADDR_MAX)
            return lr_err_set(err, LR_EUSAGE, "too many addresses (at most %d)", LR_ADDR_MAX);
        addrs[n++] = (char *)(uintptr_t)a; /* copied by lr_config_add_peer */
    }
    if ((rc = not_own_id(cfg, &id, ids, err)) < 0)
        return rc;
    bool existed = lr_config_find_peer(cfg, &id) != NULL;
    if ((rc = lr_config_add_peer(cfg, &id, name, addrs, n, err)) < 0)
        return rc;
    char s[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&id, s);
    *result = json_pack("{s:s, s:b}", "id", s, "updated", existed);
    return 0;
}

static int op_peer_remove(struct lr_config *cfg, json_t *params, json_t **result,
                          struct lr_err *err)
{
    const char *ids;
    struct lr_device_id id;
    int rc;
    if ((rc = param_str(params, "id", true, &ids, err)) < 0 || (rc = parse_id(ids, &id, err)) < 0)
        return rc;
    if ((rc = lr_config_remove_peer(cfg, &id, err)) < 0)
        return rc;
    char s[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&id, s);
    *result = json_pack("{s:s}", "id", s);
    return 0;
}

/* The folder settings that are numbers: key, 0..max, the usage message. */
struct num_param {
    const char *key;
    uint32_t max;
    const char *what; /* "invalid WHAT: expected 0 to MAX UNIT" */
    const char *unit;
};
static const struct num_param P_WINDOW = {"conflict_window", LR_CONFLICT_WINDOW_MAX,
                                          "conflict window", "seconds"};
static const struct num_param P_KEEP = {"versions_keep", LR_VERSIONS_KEEP_MAX, "versions keep",
                                        "versions per file"};
static const struct num_param P_DAYS = {"versions_days", LR_VERSIONS_DAYS_MAX, "versions days",
                                        "days"};

/* Absent leaves *out alone (*given false), else 0..p->max. */
static int param_num(json_t *params, const struct num_param *p, uint32_t *out, bool *given,
                     struct lr_err *err)
{
    json_t *jw = json_object_get(params, p->key);
    if (given)
        *given = false;
    if (!jw || json_is_null(jw))
        return 0;
    json_int_t w = json_integer_value(jw);
    if (!json_is_integer(jw) || w < 0 || w > p->max)
        return lr_err_set(err, LR_EUSAGE, "invalid %s: expected 0 to %u %s", p->what, p->max,
                          p->unit);
    *out = (uint32_t)w;
    if (given)
        *given = true;
    return 0;
}

static int folder_add(struct lr_config *cfg, const char *path, json_t *params, json_t **result,
                      struct lr_err *err)
{
    const char *id, *mode, *conflict;
    int rc;
    if ((rc = param_str(params, "id", false, &id, err)) < 0 ||
        (rc = param_str(params, "mode", false, &mode, err)) < 0 ||
        (rc = param_str(params, "conflict", false, &conflict, err)) < 0)
        return rc;
    struct lr_folder_cfg f = {0};
    if (path[0] != '/')
        return lr_err_set(err, LR_EUSAGE, "folder path '%s' is not absolute", path);
    struct stat st;
    if (stat(path, &st) < 0)
        return lr_err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return lr_err_set(err, LR_ECONFIG, "%s is not a directory", path);
    char *canon = realpath(path, NULL);
    if (!canon)
        return lr_err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (!id) {
        const char *slash = strrchr(canon, '/');
        id = slash && slash[1] ? slash + 1 : "root";
        struct lr_err sub = {0};
        if (lr_config_check_folder_id(id, &sub) < 0) {
            rc = lr_err_set(err, LR_EUSAGE, "%s; give the folder an ID with --id", sub.msg);
            free(canon);
            return rc;
        }
    }
    f.id = (char *)(uintptr_t)id;
    f.path = canon;
    char *norm = conflict ? lr_config_norm_strategy(conflict) : NULL;
    f.conflict = norm;
    f.mode = LR_MODE_SEND_RECEIVE;
    if ((rc = lr_config_new_token(&f.token, err)) < 0)
        goto out;
    if ((rc = param_num(params, &P_WINDOW, &f.conflict_window, NULL, err)) < 0 ||
        (rc = param_num(params, &P_KEEP, &f.versions_keep, NULL, err)) < 0 ||
        (rc = param_num(params, &P_DAYS, &f.versions_days, NULL, err)) < 0)
        goto out;
    if (mode && (rc = lr_folder_mode_parse(mode, &f.mode, err)) < 0)
        goto out;
    json_t *js = json_object_get(params, "shared");
    size_t n = json_is_array(js) ? json_array_size(js) : 0;
    if (n) {
        f.shared = lr_xcalloc(n, sizeof(*f.shared));
        for (size_t i = 0; i < n; i++) {
            const char *s = json_string_value(json_array_get(js, i));
            if (!s) {
                rc = lr_err_set(err, LR_EUSAGE, "shared devices must be strings");
                goto out;
            }
            if ((rc = parse_id(s, &f.shared[i], err)) < 0 ||
                (rc = not_own_id(cfg, &f.shared[i], s, err)) < 0)
                goto out;
        }
        f.nshared = n;
    }
    /* The same directory under another name (a bind mount): paths differ,
     * yet both folders would share one marker, staging area and archive. */
    for (size_t i = 0; i < cfg->nfolders; i++) {
        const struct lr_folder_cfg *o = &cfg->folders[i];
        struct stat os;
        if (strcmp(o->path, canon) != 0 && stat(o->path, &os) == 0 && os.st_dev == st.st_dev &&
            os.st_ino == st.st_ino) {
            rc = lr_err_set(err, LR_EEXISTS,
                            "%s is the directory of folder '%s' (%s), under another name", canon,
                            o->id, o->path);
            goto out;
        }
    }
    if ((rc = lr_config_add_folder(cfg, &f, err)) < 0)
        goto out;
    /* The marker is what tells an unmounted or emptied folder from one whose files were
     * deleted; create it last so a refused folder leaves nothing behind. */
    char *marker = lr_xasprintf("%s/%s", canon, MARKER_DIR);
    if (mkdir(marker, 0700) < 0 && errno != EEXIST) {
        rc = lr_err_set(err, -errno, "cannot create %s: %s", marker, strerror(errno));
        lr_config_remove_folder(cfg, f.id, NULL);
    } else if (lstat(marker, &st) < 0 || !S_ISDIR(st.st_mode)) {
        rc = lr_err_set(err, LR_ECONFIG, "%s exists and is not a directory", marker);
        lr_config_remove_folder(cfg, f.id, NULL);
    }
    free(marker);
    if (rc == 0) {
        *result = json_pack("{s:s}", "id", f.id);
        lr_json_set_path(*result, "path", canon, strlen(canon));
    }
out:
    free(norm);
    free(f.shared);
    free(canon);
    return rc;
}

static int op_folder_add(struct lr_config *cfg, json_t *params, json_t **result, struct lr_err *err)
{
    /* A path that is not UTF-8 comes as path_b64 (util/jsonx.h). */
    const char *path, *path_b64;
    int rc = param_str(params, "path_b64", false, &path_b64, err);
    if (rc < 0)
        return rc;
    if (!path_b64) {
        if ((rc = param_str(params, "path", true, &path, err)) < 0)
            return rc;
        return folder_add(cfg, path, params, result, err);
    }
    char *raw = lr_config_unbase64_str(path_b64);
    if (!raw)
        return lr_err_set(err, LR_EUSAGE, "parameter 'path_b64' is not base64 of a path");
    rc = folder_add(cfg, raw, params, result, err);
    free(raw);
    return rc;
}

/* Change a folder's conflict strategy, window and/or archive retention;
 * validates everything first. */
static int op_folder_set(struct lr_config *cfg, json_t *params, json_t **result, struct lr_err *err)
{
    const char *id, *conflict;
    int rc;
    if ((rc = param_str(params, "id", true, &id, err)) < 0 ||
        (rc = param_str(params, "conflict", false, &conflict, err)) < 0)
        return rc;
    uint32_t window = 0, keep = 0, days = 0;
    bool has_window, has_keep, has_days;
    if ((rc = param_num(params, &P_WINDOW, &window, &has_window, err)) < 0 ||
        (rc = param_num(params, &P_KEEP, &keep, &has_keep, err)) < 0 ||
        (rc = param_num(params, &P_DAYS, &days, &has_days, err)) < 0)
        return rc;
    if (!conflict && !has_window && !has_keep && !has_days)
        return lr_err_set(err, LR_EUSAGE,
                          "nothing to set (give conflict, conflict_window, versions_keep or "
                          "versions_days)");
    if (conflict && (rc = lr_config_check_strategy(conflict, err)) < 0)
        return rc;
    struct lr_folder_cfg *f = lr_config_find_folder(cfg, id);
    if (!f) {
        char *e = lr_escs_short(id);
        rc = lr_err_set(err, LR_ENOTFOUND, "no folder with ID '%s'", e);
        free(e);
        return rc;
    }
    bool changed = false;
    char *norm = conflict ? lr_config_norm_strategy(conflict) : NULL;
    if (norm && (!f->conflict || strcmp(f->conflict, norm) != 0)) {
        free(f->conflict);
        f->conflict = norm;
        norm = NULL;
        changed = true;
    }
    free(norm);
    if (has_window && f->conflict_window != window) {
        f->conflict_window = window;
        changed = true;
    }
    if (has_keep && f->versions_keep != keep) {
        f->versions_keep = keep;
        changed = true;
    }
    if (has_days && f->versions_days != days) {
        f->versions_days = days;
        changed = true;
    }
    *result =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:b}", "id", f->id, "conflict",
                  f->conflict ? f->conflict : "keep-both", "conflict_window",
                  (json_int_t)f->conflict_window, "versions_keep", (json_int_t)f->versions_keep,
                  "versions_days", (json_int_t)f->versions_days, "changed", changed);
    return 0;
}

static int op_folder_share(struct lr_config *cfg, json_t *params, json_t **result,
                           struct lr_err *err)
{
    const char *id, *dev;
    struct lr_device_id d;
    int rc;
    if ((rc = param_str(params, "id", true, &id, err)) < 0 ||
        (rc = param_str(params, "device", true, &dev, err)) < 0 ||
        (rc = parse_id(dev, &d, err)) < 0 || (rc = not_own_id(cfg, &d, dev, err)) < 0)
        return rc;
    if ((rc = lr_config_share_folder(cfg, id, &d, err)) < 0)
        return rc;
    *result = json_pack("{s:s, s:s, s:b}", "id", id, "device", dev, "added", rc == 1);
    return 0;
}

static int op_folder_remove(struct lr_config *cfg, json_t *params, json_t **result,
                            struct lr_err *err)
{
    const char *id;
    int rc;
    if ((rc = param_str(params, "id", true, &id, err)) < 0)
        return rc;
    struct lr_folder_cfg *f = lr_config_find_folder(cfg, id);
    char *path = f ? lr_xstrdup(f->path) : NULL;
    if ((rc = lr_config_remove_folder(cfg, id, err)) == 0) {
        *result = json_pack("{s:s}", "id", id);
        if (path) /* path_b64 too when it is not UTF-8 (json_pack refused it: no result) */
            lr_json_set_path(*result, "path", path, strlen(path));
    }
    free(path);
    return rc;
}

static const struct {
    const char *name;
    int (*fn)(struct lr_config *, json_t *, json_t **, struct lr_err *);
} ops[] = {
    {"peer.add", op_peer_add},         {"peer.remove", op_peer_remove},
    {"folder.add", op_folder_add},     {"folder.set", op_folder_set},
    {"folder.share", op_folder_share}, {"folder.remove", op_folder_remove},
};

bool lr_config_is_op(const char *method)
{
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(ops[i].name, method) == 0)
            return true;
    return false;
}

int lr_config_apply(struct lr_config *cfg, const char *method, json_t *params, json_t **result,
                    struct lr_err *err)
{
    *result = NULL;
    if (params && !json_is_object(params))
        return lr_err_set(err, LR_EUSAGE, "parameters must be an object");
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(ops[i].name, method) == 0)
            return ops[i].fn(cfg, params, result, err);
    return lr_err_set(err, LR_EUSAGE, "unknown configuration operation '%s'", method);
}
