/*
 * cmd_versions.c - conflicts, versions and restore: the audit trail and the
 * versions archive of a folder (docs/conflicts.md, docs/cli.md).
 *
 * `versions` and `restore` go through the daemon when it runs (restore then
 * runs in its serial job queue, in line with the puller that may be writing
 * the same path, and the daemon rescans so the file syncs). Without a
 * daemon they work here: `versions` reads the archive (and the audit trail,
 * for "why") itself, `restore` puts the file back and scans the folder
 * in-process, as `scan` does. Both give the same documents either way.
 */
#include "cli.h"

#include "config/config.h"
#include "daemon/conflicts.h"
#include "identity/identity.h"
#include "ignore/ignore.h"
#include "index/index.h"
#include "scanner/scanner.h"
#include "store/store.h"
#include "util/jsonx.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char conflicts_usage[] =
    "usage: landropic conflicts [FOLDER_ID] [--json]\n"
    "The audit trail: every conflict detected, how it was resolved and where each losing\n"
    "version was kept (docs/conflicts.md). Needs the daemon.\n";

static void print_conflicts(json_t *doc)
{
    json_t *arr = json_object_get(doc, "conflicts");
    if (json_array_size(arr) == 0)
        printf("No conflicts.\n");
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c)
    {
        printf("%s ", json_string_value(json_object_get(c, "time")));
        cli_print_name(stdout, json_string_value(json_object_get(c, "folder")));
        printf(": ");
        cli_print_path(stdout, c, "path");
        printf(": %s conflict (%s), %s: %s, %s version kept the name\n",
               json_string_value(json_object_get(c, "type")),
               json_string_value(json_object_get(c, "detail")),
               json_string_value(json_object_get(c, "strategy")),
               json_string_value(json_object_get(c, "resolution")),
               json_string_value(json_object_get(c, "winner")));
        size_t k;
        json_t *kept;
        json_array_foreach(json_object_get(c, "kept"), k, kept)
        {
            printf("  loser kept as ");
            cli_print_path(stdout, kept, "path");
            const char *dev = json_string_value(json_object_get(kept, "device"));
            if (dev)
                printf(" (written by %s)", dev);
            printf("\n");
        }
    }
    if (json_is_true(json_object_get(doc, "truncated")))
        printf("... more conflicts not listed\n");
}

int cmd_conflicts(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "conflicts", conflicts_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos > 1)
        return cli_usage_error("conflicts", "unexpected argument '%s'", o.pos[1]);
    if ((rc = cli_check_folder_args("conflicts", o.pos, o.npos)) || (rc = cli_require_init(c)))
        return rc;
    json_t *params = json_object();
    if (o.npos)
        json_object_set_new(params, "folder", json_string(o.pos[0]));
    json_t *doc;
    if ((rc = cli_call(c, "conflicts", params, 30000, &doc)))
        return rc;
    if (opt_has(&o, "json")) {
        cli_print_json(doc);
        return EXIT_OK;
    }
    print_conflicts(doc);
    json_decref(doc);
    return EXIT_OK;
}

/* A directory named with trailing slashes (as a shell completes it) is the
 * directory: "docs/" was refused as an invalid path. Edits arg in place. */
static char *strip_slashes(char *arg)
{
    size_t n = strlen(arg);
    while (n > 1 && arg[n - 1] == '/')
        arg[--n] = '\0';
    return arg;
}

/* A PATH argument that no folder entry can have ('..', absolute, empty
 * component, inside .landropic/) is the user's typo: a usage error (exit 2),
 * with or without the daemon, as for a malformed device ID. */
static int path_arg_check(const char *cmd, const char *path)
{
    struct lr_err err = {0};
    if (lr_store_path_check(path, &err) == 0)
        return 0;
    char *e = lr_esc_msg(err.msg);
    int rc = cli_usage_error(cmd, "%s", e);
    free(e);
    return rc;
}

static const char versions_usage[] =
    "usage: landropic versions FOLDER_ID [PATH] [--json]\n"
    "List the versions kept in the folder's archive (.landropic/versions/): files replaced\n"
    "or deleted by a peer's change, losers of conflicts, files replaced by a restore.\n"
    "With PATH, only that file's versions (or everything below a directory). Works with or\n"
    "without the daemon.\n";

static int versions_local(struct cli *c, const char *folder, const char *path, json_t **doc)
{
    struct lr_err err = {0};
    struct lr_config *cfg = NULL;
    int rc = lr_config_load(c->home, &cfg, &err);
    if (rc < 0)
        return cli_fail(rc, &err);
    const struct lr_folder_cfg *fc = lr_config_find_folder(cfg, folder);
    if (!fc) {
        char *e = lr_escs(folder);
        fprintf(stderr, "landropic: no folder with ID '%s'\n", e);
        free(e);
        lr_config_free(cfg);
        return EXIT_RUNTIME;
    }
    if (path && (rc = lr_store_path_check(path, &err)) < 0) {
        lr_config_free(cfg);
        return cli_fail(rc, &err);
    }
    struct daemon_version_list l;
    rc = daemon_versions_list(fc->path, path, &l, &err);
    if (rc < 0) {
        lr_config_free(cfg);
        return cli_fail(rc, &err);
    }
    /* The audit trail only if there is a database: never create one here. */
    struct lr_index *ix = NULL;
    char *db = lr_xasprintf("%s/index.db", c->home);
    if (access(db, F_OK) == 0 && lr_index_open(db, &ix, NULL) < 0)
        ix = NULL;
    free(db);
    *doc = daemon_versions_json(fc->id, &l, ix);
    lr_index_close(ix);
    daemon_version_list_release(&l);
    lr_config_free(cfg);
    return EXIT_OK;
}

/* json_equal, with both absent as equal. */
static bool same_field(json_t *a, json_t *b, const char *key)
{
    json_t *x = json_object_get(a, key), *y = json_object_get(b, key);
    return (!x && !y) || json_equal(x, y);
}

static void print_versions(json_t *doc)
{
    json_t *arr = json_object_get(doc, "versions");
    if (json_array_size(arr) == 0)
        printf("No archived versions.\n");
    size_t i;
    json_t *v, *prev = NULL;
    json_array_foreach(arr, i, v)
    {
        /* One header per file: the list is sorted by path. */
        if (!prev || !same_field(prev, v, "path") || !same_field(prev, v, "path_b64")) {
            cli_print_path(stdout, v, "path");
            printf("\n");
        }
        prev = v;
        printf("  version=");
        cli_print_path(stdout, v, "id");
        printf(" size=%lld archived=%s mtime=%s\n  why: ",
               (long long)json_integer_value(json_object_get(v, "size")),
               json_string_value(json_object_get(v, "archived")),
               json_string_value(json_object_get(v, "mtime")));
        cli_print_path(stdout, v, "why");
        printf("\n");
    }
    if (json_is_true(json_object_get(doc, "truncated")))
        printf("... more versions not listed (at most %d)\n", DAEMON_VERSIONS_MAX);
}

int cmd_versions(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "versions", versions_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos < 1)
        return cli_usage_error("versions", "missing FOLDER_ID");
    if (o.npos > 2)
        return cli_usage_error("versions", "unexpected argument '%s'", o.pos[2]);
    if ((rc = cli_check_folder_args("versions", o.pos, 1)))
        return rc;
    char *path = o.npos > 1 ? strip_slashes(lr_xstrdup(o.pos[1])) : NULL;
    if (path && (rc = path_arg_check("versions", path))) {
        free(path);
        return rc;
    }
    if ((rc = cli_require_init(c))) {
        free(path);
        return rc;
    }
    json_t *doc = NULL;
    if (cli_daemon_running(c->home)) {
        json_t *params = json_pack("{s:s}", "folder", o.pos[0]);
        if (!params) /* jansson refuses strings that are not UTF-8; folder IDs are ASCII */
            rc = cli_usage_error("versions", "FOLDER_ID must be valid UTF-8");
        else if (path) /* path_b64 too for a name that is not UTF-8 */
            lr_json_set_path(params, "path", path, strlen(path));
        if (params)
            rc = cli_call(c, "versions", params, 30000, &doc);
    } else {
        rc = versions_local(c, o.pos[0], path, &doc);
    }
    free(path);
    if (rc)
        return rc;
    if (opt_has(&o, "json")) {
        cli_print_json(doc);
        return EXIT_OK;
    }
    print_versions(doc);
    json_decref(doc);
    return EXIT_OK;
}

static const char restore_usage[] =
    "usage: landropic restore FOLDER_ID PATH [--version ID] [--json]\n"
    "Put an archived version of PATH back in place as a new local change, which then syncs\n"
    "to the peers. Default: the newest archived version; ID is a version's id from\n"
    "'landropic versions' or just its stamp (YYYYMMDD-HHMMSS[-N]). The file it replaces is\n"
    "archived in turn. Works with or without the daemon (without it, the folder is scanned\n"
    "here and the change syncs when the daemon runs).\n";

/*
 * Without a daemon: restore here, then scan the folder in-process (as `scan`
 * does) so the file has its new version before any daemon starts.
 */
static int restore_local(struct cli *c, const char *folder, const char *path, const char *ver,
                         json_t **doc)
{
    struct lr_err err = {0};
    struct lr_config *cfg = NULL;
    int rc = lr_config_load(c->home, &cfg, &err);
    if (rc < 0)
        return cli_fail(rc, &err);
    const struct lr_folder_cfg *fc = lr_config_find_folder(cfg, folder);
    if (!fc) {
        char *e = lr_escs(folder);
        fprintf(stderr, "landropic: no folder with ID '%s'\n", e);
        free(e);
        lr_config_free(cfg);
        return EXIT_RUNTIME;
    }
    char *id = NULL;
    bool replaced = false;
    rc = daemon_restore_file(fc->path, path, ver, &id, &replaced, &err);
    if (rc < 0) {
        lr_config_free(cfg);
        return cli_fail(rc, &err);
    }
    *doc = json_pack("{s:s, s:b}", "folder", fc->id, "replaced", replaced);
    lr_json_set_path(*doc, "path", path, strlen(path));
    lr_json_set_path(*doc, "version", id, strlen(id));
    free(id);
    /* The scan gives it a version; a failure here only delays that to the
     * daemon's first scan, so it is reported but the restore stands. */
    struct lr_identity *ident = NULL;
    struct lr_index *ix = NULL;
    char *db = lr_xasprintf("%s/index.db", c->home);
    rc = lr_identity_load(c->home, &ident, &err);
    if (rc == 0) {
        struct lr_scan_opts sopts = {0};
        sopts.short_id = lr_device_id_u64(lr_identity_device_id(ident));
        struct lr_scan_result r;
        if ((rc = lr_index_open(db, &ix, &err)) == 0)
            rc = lr_scan_folder(ix, fc->id, fc->path, &sopts, &r, &err);
    }
    if (rc < 0)
        fprintf(stderr, "landropic: restored, but the folder was not scanned: %s\n",
                lr_err_msg(&err, rc));
    lr_index_close(ix);
    lr_identity_free(ident);
    free(db);
    lr_config_free(cfg);
    return EXIT_OK;
}

/* Why a version restored at path will not reach the peers (into buf), or
 * NULL: `restore --help` promises a change that syncs, which an ignored
 * path or a receive-only folder never sends. */
static const char *restore_stays_local(struct cli *c, const char *folder, const char *path,
                                       char *buf, size_t n)
{
    struct lr_config *cfg = NULL;
    if (lr_config_load(c->home, &cfg, NULL) < 0)
        return NULL;
    const struct lr_folder_cfg *fc = lr_config_find_folder(cfg, folder);
    const char *why = NULL;
    struct lr_ignore *ig = NULL;
    unsigned line = 0;
    if (fc && fc->mode == LR_MODE_RECEIVE_ONLY) {
        snprintf(buf, n,
                 "the folder is receive-only here: the restored version is a local "
                 "change that is not sent ('folder revert' would undo it)");
        why = buf;
    } else if (fc && lr_ignore_load(fc->path, &ig, NULL) == 0 &&
               lr_ignore_explain(ig, path, strlen(path), false, &line)) {
        if (line)
            snprintf(buf, n,
                     "the path is ignored (.landropicignore line %u): the restored "
                     "version stays on this device",
                     line);
        else /* the built-in rule: each device keeps its own rules */
            snprintf(buf, n,
                     "each device keeps its own .landropicignore: the restored "
                     "version stays on this device");
        why = buf;
    }
    lr_ignore_free(ig);
    lr_config_free(cfg);
    return why;
}

int cmd_restore(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"version", true, false}, {"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 2, argc, argv, "restore", restore_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos < 2)
        return cli_usage_error("restore", "missing %s", o.npos ? "PATH" : "FOLDER_ID and PATH");
    if (o.npos > 2)
        return cli_usage_error("restore", "unexpected argument '%s'", o.pos[2]);
    if ((rc = cli_check_folder_args("restore", o.pos, 1)))
        return rc;
    if ((rc = path_arg_check("restore", o.pos[1])))
        return rc;
    if ((rc = cli_require_init(c)))
        return rc;
    json_t *params = json_pack("{s:s}", "folder", o.pos[0]);
    if (!params) /* jansson refuses strings that are not UTF-8; folder IDs are ASCII */
        return cli_usage_error("restore", "FOLDER_ID must be valid UTF-8");
    /* A name that is not UTF-8 goes as path_b64 (and version_b64: a version's
     * ID holds its path), as `versions` lists it. */
    lr_json_set_path(params, "path", o.pos[1], strlen(o.pos[1]));
    const char *ver = opt_get(&o, "version");
    if (ver)
        lr_json_set_path(params, "version", ver, strlen(ver));
    json_t *res;
    if (cli_daemon_running(c->home)) {
        if ((rc = cli_call(c, "restore", params, 300000, &res)))
            return rc;
    } else {
        json_decref(params);
        if ((rc = restore_local(c, o.pos[0], o.pos[1], ver, &res)))
            return rc;
    }
    char buf[200];
    const char *local = restore_stays_local(c, o.pos[0], o.pos[1], buf, sizeof(buf));
    if (local)
        json_object_set_new(res, "stays_local", json_string(local));
    if (opt_has(&o, "json")) {
        cli_print_json(res);
        return EXIT_OK;
    }
    if (local)
        fprintf(stderr, "landropic: note: %s\n", local);
    printf("Restored ");
    cli_print_path(stdout, res, "path");
    printf(" from version ");
    cli_print_path(stdout, res, "version");
    printf("%s.\n", json_is_true(json_object_get(res, "replaced"))
                        ? " (the file it replaced is archived)"
                        : "");
    json_decref(res);
    return EXIT_OK;
}
