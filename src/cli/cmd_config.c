/*
 * cmd_config.c - peer add/remove, peers, folder add/share/remove, folders.
 *
 * Listings come from the daemon when it runs (it knows connection state and
 * counters), else straight from the configuration file.
 */
#include "cli.h"

#include "config/link.h"
#include "config/config.h"
#include "config/ops.h"
#include "identity/identity.h"
#include "util/jsonx.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char peer_usage[] =
    "usage: landropic peer add DEVICE_ID [--name NAME] [--addr HOST:PORT]...\n"
    "       landropic peer remove DEVICE_ID\n"
    "Trust a device (and where to reach it), or stop trusting it. A device that is not\n"
    "added is refused at the TLS handshake and never given data. DEVICE_ID may also be\n"
    "the landropic:// link `pair --qr` shows (its addresses are added too).\n";

static const char peer_add_usage[] =
    "usage: landropic peer add DEVICE_ID [--name NAME] [--addr HOST:PORT]...\n"
    "Trust a device, and say where to reach it (--addr, repeatable; otherwise LAN\n"
    "discovery finds it, unless the daemon runs with --no-discovery). A device that is\n"
    "not added is refused at the TLS handshake and never given data. DEVICE_ID may also\n"
    "be the landropic:// link `pair --qr` shows (its addresses are added too). Adding it\n"
    "again sets its name if --name is given, and replaces its addresses if some are\n"
    "given.\n";

static const char peer_remove_usage[] =
    "usage: landropic peer remove DEVICE_ID\n"
    "Stop trusting a device: it is disconnected, refused from now on, and no folder is\n"
    "shared with it any more. Files are never deleted.\n";

/* Bad IDs are usage errors (exit 2), checked before anything else is touched. */
static int check_id_arg(const char *cmd, const char *s)
{
    struct lr_device_id id;
    struct lr_err err = {0};
    if (lr_device_id_parse(s, &id, &err) == 0)
        return 0;
    char *e = lr_escs(s);
    int rc = cli_usage_error(cmd, "invalid device ID '%s': %s", e, err.msg);
    free(e);
    return rc;
}

static int peer_add(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"name", true, false}, {"addr", true, true}};
    struct opts o;
    int rc = opts_parse(&o, spec, 2, argc, argv, "peer add", peer_add_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos != 1)
        return cli_usage_error("peer add", o.npos ? "too many arguments" : "missing DEVICE_ID");
    struct lr_err err = {0};
    /* A landropic:// link (what `pair --qr` shows) carries the ID and addresses. */
    struct lr_peer_link link = {0};
    char link_id[LR_DEVICE_ID_STRLEN + 1];
    const char *id_arg = o.pos[0];
    if (lr_peer_link_is(id_arg)) {
        if (lr_peer_link_parse(id_arg, &link, &err) < 0)
            return cli_usage_error("peer add", "%s", err.msg);
        lr_device_id_format(&link.id, link_id);
        id_arg = link_id;
    } else if ((rc = check_id_arg("peer add", id_arg))) {
        return rc;
    }
    const char *name = opt_get(&o, "name");
    if (name && lr_config_check_name(name, &err) < 0) {
        lr_peer_link_release(&link);
        return cli_usage_error("peer add", "%s", err.msg);
    }
    const struct opt_val *addrs = opt_all(&o, "addr");
    json_t *ja = json_array();
    for (size_t i = 0; i < link.naddrs; i++)
        json_array_append_new(ja, json_string(link.addrs[i]));
    lr_peer_link_release(&link);
    for (int i = 0; i < addrs->count; i++) {
        if (lr_config_check_addr(addrs->values[i], &err) < 0) {
            json_decref(ja);
            return cli_usage_error("peer add", "%s", err.msg);
        }
        json_array_append_new(ja, json_string(addrs->values[i]));
    }
    json_t *params = json_pack("{s:s, s:o}", "id", id_arg, "addresses", ja);
    if (name)
        json_object_set_new(params, "name", json_string(name));
    json_t *res;
    if ((rc = cli_config_op(c, "peer.add", params, &res)))
        return rc;
    json_decref(res);
    return EXIT_OK;
}

static int peer_remove(struct cli *c, int argc, char **argv)
{
    struct opts o;
    int rc = opts_parse(&o, NULL, 0, argc, argv, "peer remove", peer_remove_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos != 1)
        return cli_usage_error("peer remove", o.npos ? "too many arguments" : "missing DEVICE_ID");
    if ((rc = check_id_arg("peer remove", o.pos[0])))
        return rc;
    json_t *res;
    if ((rc = cli_config_op(c, "peer.remove", json_pack("{s:s}", "id", o.pos[0]), &res)))
        return rc;
    json_decref(res);
    return EXIT_OK;
}

int cmd_peer(struct cli *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(peer_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "add") == 0)
        return peer_add(c, argc - 1, argv + 1);
    if (strcmp(argv[1], "remove") == 0 || strcmp(argv[1], "rm") == 0)
        return peer_remove(c, argc - 1, argv + 1);
    char *e = lr_escs(argv[1]);
    int rc = cli_usage_error("peer", "unknown subcommand '%s' (expected add or remove)", e);
    free(e);
    return rc;
}

/* The same JSON shape whether it comes from the daemon or the config file. */
static json_t *peers_from_config(const struct lr_config *cfg)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct lr_peer_cfg *p = &cfg->peers[i];
        char id[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&p->id, id);
        json_t *addrs = json_array();
        for (size_t k = 0; k < p->naddrs; k++)
            json_array_append_new(addrs, json_string(p->addrs[k]));
        /* The daemon's shape (methods.c), with every counter at zero. */
        json_t *index = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "bytes_sent", 0,
                                  "bytes_received", 0, "deltas_sent", 0, "deltas_received", 0,
                                  "delta_misses", 0, "summaries_sent", 0, "summaries_received", 0);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:b, s:I, s:I, s:o}", "id", id,
                                             "name", p->name, "addresses", addrs, "connected", 0,
                                             "bytes_sent", (json_int_t)0, "bytes_received",
                                             (json_int_t)0, "index", index));
    }
    /* Devices seen but not added are known to a running daemon only. */
    return json_pack("{s:o, s:[]}", "peers", arr, "pending");
}

/* Load the config for a listing; prints the error and returns its exit code. */
static int load_config(struct cli *c, struct lr_config **cfg)
{
    struct lr_err err = {0};
    int rc = cli_require_init(c);
    if (rc)
        return rc;
    if ((rc = lr_config_load(c->home, cfg, &err)) < 0)
        return cli_fail(rc, &err);
    return 0;
}

static const char peers_usage[] = "usage: landropic peers [--json]\n"
                                  "List the devices this one trusts, with connection state.\n";

int cmd_peers(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "peers", peers_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("peers", "unexpected argument '%s'", o.pos[0]);
    if ((rc = cli_require_init(c)))
        return rc;
    json_t *doc;
    if (cli_daemon_running(c->home)) {
        if ((rc = cli_call(c, "peers", NULL, 10000, &doc)))
            return rc;
    } else {
        struct lr_config *cfg;
        if ((rc = load_config(c, &cfg)))
            return rc;
        doc = peers_from_config(cfg);
        lr_config_free(cfg);
    }
    if (opt_has(&o, "json")) {
        cli_print_json(doc);
        return EXIT_OK;
    }
    json_t *arr = json_object_get(doc, "peers");
    if (json_array_size(arr) == 0)
        puts("No peers. Add one with: landropic peer add DEVICE_ID --addr HOST:PORT");
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "name"));
        const char *said = json_string_value(json_object_get(p, "device_name"));
        printf("%s  ", json_string_value(json_object_get(p, "id")));
        if (name && *name) {
            cli_print_name(stdout, name);
        } else if (said && *said) {
            /* Unnamed here: the name it announces, in parentheses, since the
             * peer chose it (a peer could call itself anything). */
            putchar('(');
            cli_print_name(stdout, said);
            putchar(')');
        } else {
            putchar('-');
        }
        printf("  %s",
               json_is_true(json_object_get(p, "connected")) ? "connected" : "disconnected");
        json_t *a;
        size_t k;
        bool listed = false;
        /* The address a connection came from, when no configured one says
         * it (a peer paired or found by discovery has none). */
        const char *live = json_is_true(json_object_get(p, "connected"))
                               ? json_string_value(json_object_get(p, "address"))
                               : NULL;
        json_array_foreach(json_object_get(p, "addresses"), k, a)
        {
            printf("%s%s", k ? "," : "  ", json_string_value(a));
            listed |= live && json_string_value(a) && strcmp(json_string_value(a), live) == 0;
        }
        if (live && !listed && json_array_size(json_object_get(p, "addresses")))
            printf(" (now %s)", live);
        else if (live && !listed)
            printf("  %s", live);
        json_int_t sent = json_integer_value(json_object_get(p, "bytes_sent"));
        json_int_t recv = json_integer_value(json_object_get(p, "bytes_received"));
        if (sent || recv)
            printf("  sent %lld B, received %lld B", (long long)sent, (long long)recv);
        putchar('\n');
    }
    json_t *pending = json_object_get(doc, "pending");
    if (json_array_size(pending)) {
        puts("\nSeen but not added:");
        json_array_foreach(pending, i, p)
        {
            printf("  %s  ", json_string_value(json_object_get(p, "id")));
            cli_print_name(stdout, json_string_value(json_object_get(p, "name")) ?: "-");
            putchar('\n');
        }
    }
    json_decref(doc);
    return EXIT_OK;
}

static const char folder_usage[] =
    "usage: landropic folder add PATH [--id FOLDER_ID] [--share DEVICE_ID]...\n"
    "                            [--mode send-receive|send-only|receive-only]\n"
    "                            [--conflict STRATEGY] [--conflict-window SECS]\n"
    "                            [--versions-keep N] [--versions-days DAYS]\n"
    "       landropic folder set FOLDER_ID [--conflict STRATEGY] [--conflict-window SECS]\n"
    "                            [--versions-keep N] [--versions-days DAYS]\n"
    "       landropic folder share FOLDER_ID DEVICE_ID\n"
    "       landropic folder remove FOLDER_ID\n"
    "       landropic folder override FOLDER_ID [--json]   (send-only: ours wins again)\n"
    "       landropic folder revert FOLDER_ID [--json]     (receive-only: drop local changes)\n"
    "A folder syncs with a peer when both devices added the same FOLDER_ID and shared it\n"
    "with each other. The default ID is the directory's name. STRATEGY: keep-both\n"
    "(default), newest, largest, prefer-local, prefer-remote, prefer:DEVICE_ID; a strategy\n"
    "decides a conflict only when both devices' strategies pick the same version\n"
    "(docs/conflicts.md). --versions-keep N keeps the newest N archived versions of each\n"
    "file in .landropic/versions/ and --versions-days DAYS none older (0, the default:\n"
    "no limit; nothing is pruned unless one is set). 'folder set' changes them later.\n"
    "'folder remove' stops syncing and never deletes files.\n";

static const char folder_add_usage[] =
    "usage: landropic folder add PATH [--id FOLDER_ID] [--share DEVICE_ID]...\n"
    "                            [--mode send-receive|send-only|receive-only]\n"
    "                            [--conflict STRATEGY] [--conflict-window SECS]\n"
    "                            [--versions-keep N] [--versions-days DAYS]\n"
    "Sync the directory PATH. It syncs with a peer when both devices added the same\n"
    "FOLDER_ID (default: the directory's name) and shared it with each other. STRATEGY:\n"
    "keep-both (default), newest, largest, prefer-local, prefer-remote,\n"
    "prefer:DEVICE_ID; a strategy decides a conflict only when both devices' strategies\n"
    "pick the same version (docs/conflicts.md). --versions-keep N keeps the newest N\n"
    "archived versions of each file in .landropic/versions/ and --versions-days DAYS\n"
    "none older (0, the default: no limit). --mode: docs/modes.md.\n";

static const char folder_set_usage[] =
    "usage: landropic folder set FOLDER_ID [--conflict STRATEGY] [--conflict-window SECS]\n"
    "                            [--versions-keep N] [--versions-days DAYS]\n"
    "Change a folder's conflict strategy or versions retention (see 'landropic folder\n"
    "add --help'); at least one option, and those not given are left as they are.\n";

static const char folder_share_usage[] =
    "usage: landropic folder share FOLDER_ID DEVICE_ID\n"
    "Share a folder with one more device; that device must add the same FOLDER_ID and\n"
    "share it back.\n";

static const char folder_remove_usage[] =
    "usage: landropic folder remove FOLDER_ID\n"
    "Stop syncing a folder. Its files stay on disk, and so do the .landropic/ marker\n"
    "and its archived versions.\n";

/* The folder options that take a number: 0..max of `what`. */
struct num_opt {
    const char *name; /* the option, also the ops.h parameter with '_' for '-' */
    const char *param;
    long long max;
    const char *what;
};
static const struct num_opt NUM_OPTS[] = {
    {"conflict-window", "conflict_window", LR_CONFLICT_WINDOW_MAX, "seconds"},
    {"versions-keep", "versions_keep", LR_VERSIONS_KEEP_MAX, "a number of versions"},
    {"versions-days", "versions_days", LR_VERSIONS_DAYS_MAX, "days"},
};
#define NUM_OPTS_N (sizeof(NUM_OPTS) / sizeof(NUM_OPTS[0]))

/* Each numeric option given goes into params; a bad value is the usage
 * exit code naming it. *given: how many were. */
static int num_opts(const char *cmd, const struct opts *o, json_t *params, int *given)
{
    *given = 0;
    for (size_t i = 0; i < NUM_OPTS_N; i++) {
        const char *s = opt_get(o, NUM_OPTS[i].name);
        if (!s)
            continue;
        long long w;
        if (!cli_parse_count(s, 0, NUM_OPTS[i].max, &w)) {
            char *e = lr_escs(s);
            int rc = cli_usage_error(cmd, "invalid --%s '%s': expected %s from 0 to %lld",
                                     NUM_OPTS[i].name, e, NUM_OPTS[i].what, NUM_OPTS[i].max);
            free(e);
            return rc;
        }
        json_object_set_new(params, NUM_OPTS[i].param, json_integer(w));
        (*given)++;
    }
    return 0;
}

static int folder_add(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"id", true, false},
                                           {"share", true, true},
                                           {"mode", true, false},
                                           {"conflict", true, false},
                                           {"conflict-window", true, false},
                                           {"versions-keep", true, false},
                                           {"versions-days", true, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 7, argc, argv, "folder add", folder_add_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos != 1)
        return cli_usage_error("folder add", o.npos ? "too many arguments" : "missing PATH");
    struct lr_err err = {0};
    const char *id = opt_get(&o, "id"), *mode = opt_get(&o, "mode");
    const char *conflict = opt_get(&o, "conflict");
    enum lr_folder_mode m;
    if (id && lr_config_check_folder_id(id, &err) < 0)
        return cli_usage_error("folder add", "%s", err.msg);
    if (mode && lr_folder_mode_parse(mode, &m, &err) < 0)
        return cli_usage_error("folder add", "%s", err.msg);
    if (conflict && lr_config_check_strategy(conflict, &err) < 0)
        return cli_usage_error("folder add", "%s", err.msg);
    json_t *nums = json_object();
    int nnums;
    if ((rc = num_opts("folder add", &o, nums, &nnums))) {
        json_decref(nums);
        return rc;
    }
    const struct opt_val *share = opt_all(&o, "share");
    json_t *js = json_array();
    for (int i = 0; i < share->count; i++) {
        if ((rc = check_id_arg("folder add", share->values[i]))) {
            json_decref(js);
            json_decref(nums);
            return rc;
        }
        json_array_append_new(js, json_string(share->values[i]));
    }
    if ((rc = cli_require_init(c))) {
        json_decref(js);
        json_decref(nums);
        return rc;
    }
    /* Resolve here: a relative path means relative to the user's directory, not the daemon's. */
    const char *path = o.pos[0];
    struct stat st;
    const char *why = NULL;
    if (stat(path, &st) < 0)
        why = strerror(errno);
    else if (!S_ISDIR(st.st_mode))
        why = "not a directory";
    if (why) {
        json_decref(js);
        json_decref(nums);
        char *e = lr_escs(path);
        fprintf(stderr, "landropic: %s: %s\n", e, why);
        free(e);
        return EXIT_RUNTIME;
    }
    char *canon = realpath(path, NULL);
    if (!canon) {
        json_decref(js);
        json_decref(nums);
        return cli_errorf(EXIT_RUNTIME, "%s: %s", path, strerror(errno));
    }
    json_t *params = json_pack("{s:o}", "shared", js);
    lr_json_set_path(params, "path", canon, strlen(canon)); /* path_b64 if not UTF-8 */
    free(canon);
    if (id)
        json_object_set_new(params, "id", json_string(id));
    if (mode)
        json_object_set_new(params, "mode", json_string(mode));
    if (conflict)
        json_object_set_new(params, "conflict", json_string(conflict));
    json_object_update(params, nums);
    json_decref(nums);
    json_t *res;
    if ((rc = cli_config_op(c, "folder.add", params, &res)))
        return rc;
    const char *fid = json_string_value(json_object_get(res, "id"));
    fputs("Added folder '", stderr);
    cli_print_name(stderr, fid ? fid : "?");
    fputs("'\n", stderr);
    json_decref(res);
    return EXIT_OK;
}

static int folder_set(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"conflict", true, false},
                                           {"conflict-window", true, false},
                                           {"versions-keep", true, false},
                                           {"versions-days", true, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 4, argc, argv, "folder set", folder_set_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos != 1)
        return cli_usage_error("folder set", o.npos ? "too many arguments" : "missing FOLDER_ID");
    if ((rc = cli_check_folder_args("folder set", o.pos, 1)))
        return rc;
    const char *conflict = opt_get(&o, "conflict");
    if (!conflict && !opt_has(&o, "conflict-window") && !opt_has(&o, "versions-keep") &&
        !opt_has(&o, "versions-days"))
        return cli_usage_error("folder set", "nothing to set (--conflict, --conflict-window, "
                                             "--versions-keep or --versions-days)");
    struct lr_err err = {0};
    if (conflict && lr_config_check_strategy(conflict, &err) < 0)
        return cli_usage_error("folder set", "%s", err.msg);
    json_t *params = json_pack("{s:s}", "id", o.pos[0]);
    int nnums;
    if ((rc = num_opts("folder set", &o, params, &nnums))) {
        json_decref(params);
        return rc;
    }
    if (conflict)
        json_object_set_new(params, "conflict", json_string(conflict));
    json_t *res;
    if ((rc = cli_config_op(c, "folder.set", params, &res)))
        return rc;
    const char *unchanged = json_is_true(json_object_get(res, "changed")) ? "" : " (unchanged)";
    if (conflict || opt_has(&o, "conflict-window")) {
        fputs("Folder '", stderr);
        cli_print_name(stderr, o.pos[0]);
        fprintf(stderr, "': conflict %s, window %lld s%s\n",
                json_string_value(json_object_get(res, "conflict")) ?: "?",
                (long long)json_integer_value(json_object_get(res, "conflict_window")), unchanged);
    }
    if (opt_has(&o, "versions-keep") || opt_has(&o, "versions-days")) {
        long long keep = json_integer_value(json_object_get(res, "versions_keep"));
        long long days = json_integer_value(json_object_get(res, "versions_days"));
        fputs("Folder '", stderr);
        cli_print_name(stderr, o.pos[0]);
        fputs("': archived versions kept: ", stderr);
        if (keep)
            fprintf(stderr, "the newest %lld of each file", keep);
        else
            fputs("all", stderr);
        if (days)
            fprintf(stderr, ", none older than %lld days", days);
        fprintf(stderr, "%s\n", unchanged);
    }
    json_decref(res);
    return EXIT_OK;
}

static int folder_share(struct cli *c, int argc, char **argv)
{
    struct opts o;
    int rc = opts_parse(&o, NULL, 0, argc, argv, "folder share", folder_share_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos != 2)
        return cli_usage_error("folder share", "expected FOLDER_ID DEVICE_ID");
    if ((rc = cli_check_folder_args("folder share", o.pos, 1)) ||
        (rc = check_id_arg("folder share", o.pos[1])))
        return rc;
    json_t *res;
    rc = cli_config_op(c, "folder.share",
                       json_pack("{s:s, s:s}", "id", o.pos[0], "device", o.pos[1]), &res);
    json_decref(res);
    return rc;
}

static int folder_remove(struct cli *c, int argc, char **argv)
{
    struct opts o;
    int rc = opts_parse(&o, NULL, 0, argc, argv, "folder remove", folder_remove_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos != 1)
        return cli_usage_error("folder remove", "expected FOLDER_ID");
    if ((rc = cli_check_folder_args("folder remove", o.pos, 1)))
        return rc;
    json_t *res;
    rc = cli_config_op(c, "folder.remove", json_pack("{s:s}", "id", o.pos[0]), &res);
    json_decref(res);
    return rc;
}

int cmd_folder(struct cli *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(folder_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "add") == 0)
        return folder_add(c, argc - 1, argv + 1);
    if (strcmp(argv[1], "set") == 0)
        return folder_set(c, argc - 1, argv + 1);
    if (strcmp(argv[1], "share") == 0)
        return folder_share(c, argc - 1, argv + 1);
    if (strcmp(argv[1], "remove") == 0 || strcmp(argv[1], "rm") == 0)
        return folder_remove(c, argc - 1, argv + 1);
    char *e = lr_escs(argv[1]);
    int rc = cli_usage_error(
        "folder", "unknown subcommand '%s' (expected add, set, share, remove, override or revert)",
        e);
    free(e);
    return rc;
}

static json_t *folders_from_config(const struct lr_config *cfg)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->nfolders; i++) {
        const struct lr_folder_cfg *f = &cfg->folders[i];
        json_t *shared = json_array();
        for (size_t k = 0; k < f->nshared; k++) {
            char id[LR_DEVICE_ID_STRLEN + 1];
            lr_device_id_format(&f->shared[k], id);
            json_array_append_new(shared, json_string(id));
        }
        json_t *jf = json_pack("{s:s}", "id", f->id);
        lr_json_set_path(jf, "path", f->path, strlen(f->path));
        json_object_set_new(jf, "mode", json_string(lr_folder_mode_name(f->mode)));
        json_object_set_new(jf, "conflict", json_string(f->conflict));
        json_object_set_new(jf, "conflict_window", json_integer(f->conflict_window));
        json_object_set_new(jf, "versions_keep", json_integer(f->versions_keep));
        json_object_set_new(jf, "versions_days", json_integer(f->versions_days));
        json_object_set_new(jf, "shared", shared);
        json_array_append_new(arr, jf);
    }
    return json_pack("{s:o}", "folders", arr);
}

static const char folders_usage[] =
    "usage: landropic folders [--json]\n"
    "List the folders this device syncs, with their paths, modes and peers.\n";

int cmd_folders(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "folders", folders_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("folders", "unexpected argument '%s'", o.pos[0]);
    struct lr_config *cfg;
    if ((rc = load_config(c, &cfg)))
        return rc;
    json_t *doc = folders_from_config(cfg);
    lr_config_free(cfg);
    if (opt_has(&o, "json")) {
        cli_print_json(doc);
        return EXIT_OK;
    }
    json_t *arr = json_object_get(doc, "folders");
    if (json_array_size(arr) == 0)
        puts("No folders. Add one with: landropic folder add PATH");
    size_t i;
    json_t *f;
    json_array_foreach(arr, i, f)
    {
        cli_print_name(stdout, json_string_value(json_object_get(f, "id")));
        fputs("  ", stdout);
        cli_print_path(stdout, f, "path");
        printf("  %s  %s", json_string_value(json_object_get(f, "mode")),
               json_string_value(json_object_get(f, "conflict")));
        long long keep = json_integer_value(json_object_get(f, "versions_keep"));
        long long days = json_integer_value(json_object_get(f, "versions_days"));
        if (keep)
            printf("  keeps %lld versions", keep);
        if (days)
            printf("%s %lld days", keep ? "," : "  keeps versions", days);
        json_t *s;
        size_t k;
        json_t *shared = json_object_get(f, "shared");
        if (json_array_size(shared) == 0)
            fputs("  (not shared)", stdout);
        json_array_foreach(shared, k, s)
        {
            char shortid[LR_DEVICE_ID_SHORTLEN + 1];
            snprintf(shortid, sizeof(shortid), "%s", json_string_value(s));
            printf("%s%s", k ? "," : "  shared with ", shortid);
        }
        putchar('\n');
    }
    json_decref(doc);
    return EXIT_OK;
}
