/*
 * cmd_scan.c - scan: rescan folders now and report what changed.
 *
 * Through the daemon when it runs (it is then the only writer of the index),
 * in-process otherwise.
 */
#include "cli.h"

#include "config/config.h"
#include "daemon/daemon.h"
#include "identity/identity.h"
#include "index/index.h"
#include "scanner/scanner.h"
#include "store/store.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

static const char scan_usage[] =
    "usage: landropic scan [FOLDER_ID]... [--json]\n"
    "Rescan the folders now (default: all) and report what changed since the last scan.\n";

/* One line naming the folder: an error from inside it (say, its
 * .landropicignore) does not say which one it is. */
static void folder_error(const char *id, const char *msg)
{
    fputs("landropic: folder '", stderr);
    cli_print_name(stderr, id);
    fputs("': ", stderr);
    cli_print_msg(stderr, msg);
    fputc('\n', stderr);
}

/* In-process scan of the named folders (all if none). Prints per-folder errors. */
static int scan_local(struct cli *c, const struct opts *o, json_t **doc)
{
    struct lr_err err = {0};
    struct lr_config *cfg = NULL;
    struct lr_index *ix = NULL;
    int rc = lr_config_load(c->home, &cfg, &err);
    if (rc < 0)
        return cli_fail(rc, &err);
    for (int i = 0; i < o->npos; i++) {
        if (!lr_config_find_folder(cfg, o->pos[i])) {
            char *e = lr_escs(o->pos[i]);
            fprintf(stderr, "landropic: no folder with ID '%s'\n", e);
            free(e);
            lr_config_free(cfg);
            return EXIT_RUNTIME;
        }
    }
    struct lr_identity *ident;
    if ((rc = lr_identity_load(c->home, &ident, &err)) < 0) {
        lr_config_free(cfg);
        return cli_fail(rc, &err);
    }
    struct lr_scan_opts sopts = {0};
    sopts.short_id = lr_device_id_u64(lr_identity_device_id(ident));
    lr_identity_free(ident);
    char *dbpath = lr_xasprintf("%s/index.db", c->home);
    rc = lr_index_open(dbpath, &ix, &err);
    free(dbpath);
    if (rc < 0) {
        lr_config_free(cfg);
        return cli_fail(rc, &err);
    }
    int exit_code = EXIT_OK;
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->nfolders; i++) {
        const struct lr_folder_cfg *f = &cfg->folders[i];
        bool wanted = o->npos == 0;
        for (int k = 0; k < o->npos; k++)
            wanted |= strcmp(o->pos[k], f->id) == 0;
        if (!wanted)
            continue;
        struct lr_scan_result r;
        lr_err_clear(&err);
        bool reset; /* as the daemon does before a folder's first scan (index.h) */
        rc = lr_index_folder_bind(ix, f->id, sopts.short_id, f->token, &reset, &err);
        bool rekeyed; /* before this scan's changes raise max_seq past the mark */
        if (rc == 0)
            rc = lr_store_mark_check(f->path, ix, f->id, &rekeyed, &err);
        if (rc == 0)
            rc = lr_scan_folder(ix, f->id, f->path, &sopts, &r, &err);
        if (rc < 0) {
            folder_error(f->id, lr_err_msg(&err, rc));
            exit_code = cli_exit_code(rc);
            json_t *e = json_pack("{s:s}", "id", f->id);
            json_object_set_new(e, "error", json_string(lr_err_msg(&err, rc)));
            json_array_append_new(arr, e);
            continue;
        }
        json_array_append_new(arr, lr_scan_result_json(f->id, &r));
    }
    lr_index_close(ix);
    lr_config_free(cfg);
    *doc = json_pack("{s:o}", "folders", arr);
    return exit_code;
}

int cmd_scan(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "scan", scan_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if ((rc = cli_check_folder_args("scan", o.pos, o.npos)) || (rc = cli_require_init(c)))
        return rc;
    json_t *doc = NULL;
    if (cli_daemon_running(c->home)) {
        json_t *ids = json_array();
        for (int i = 0; i < o.npos; i++) {
            bool dup = false; /* each folder once, as the in-process scan lists them */
            for (int k = 0; k < i && !dup; k++)
                dup = strcmp(o.pos[k], o.pos[i]) == 0;
            if (!dup)
                json_array_append_new(ids, json_string(o.pos[i]));
        }
        rc = cli_call(c, "scan", json_pack("{s:o}", "folders", ids), 0, &doc);
        if (rc)
            return rc;
        /* A folder the daemon could not scan is in the reply as {"id", "error"}. */
        size_t k;
        json_t *f;
        json_array_foreach(json_object_get(doc, "folders"), k, f)
        {
            const char *e = json_string_value(json_object_get(f, "error"));
            if (e) {
                folder_error(json_string_value(json_object_get(f, "id")), e);
                rc = EXIT_RUNTIME;
            }
        }
    } else {
        rc = scan_local(c, &o, &doc);
        if (!doc)
            return rc;
    }
    if (opt_has(&o, "json")) {
        cli_print_json(doc);
        return rc;
    }
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(doc, "folders"), i, f)
    {
        if (json_object_get(f, "error"))
            continue; /* already reported on stderr */
        cli_print_name(stdout, json_string_value(json_object_get(f, "id")));
        printf(": %lld files, %lld bytes; %lld added, %lld changed, %lld deleted; "
               "%lld bytes hashed in %.2f s\n",
               (long long)json_integer_value(json_object_get(f, "files")),
               (long long)json_integer_value(json_object_get(f, "bytes")),
               (long long)json_integer_value(json_object_get(f, "added")),
               (long long)json_integer_value(json_object_get(f, "changed")),
               (long long)json_integer_value(json_object_get(f, "deleted")),
               (long long)json_integer_value(json_object_get(f, "bytes_hashed")),
               json_number_value(json_object_get(f, "seconds")));
    }
    json_decref(doc);
    return rc;
}
