/*
 * cmd_identity.c - init, id, pair.
 */
#include "cli.h"

#include "api/api.h"
#include "config/config.h"
#include "identity/identity.h"
#include "index/index.h"
#include "pair/code.h"
#include "util/fsutil.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <qrencode.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char init_usage[] =
    "usage: landropic init [--name NAME]\n"
    "Create this device's identity (key and certificate) and configuration in the home,\n"
    "and print its device ID. Fails if the home is already initialised.\n";

int cmd_init(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"name", true, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "init", init_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("init", "unexpected argument '%s'", o.pos[0]);
    struct lr_err err = {0};
    char host[256] = "";
    const char *name = opt_get(&o, "name");
    if (!name) {
        gethostname(host, sizeof(host) - 1);
        host[LR_CONFIG_NAME_MAX] = '\0';
        /* An empty host name too: a device's name is never empty (HELLO). */
        name = host[0] && lr_config_check_name(host, NULL) == 0 ? host : "landropic";
    } else if (!*name) {
        return cli_usage_error("init", "invalid name '': it is empty (leave --name out for the "
                                       "host name)");
    } else if (lr_config_check_name(name, &err) < 0) {
        return cli_usage_error("init", "%s", err.msg);
    }
    /* Refused now rather than by every later command: the database lives in it. */
    if (strlen(c->home) + strlen("/index.db") > LR_INDEX_DB_PATH_MAX)
        return cli_usage_error("init",
                               "the home is %zu bytes long: at most %zu (its database path "
                               "must fit in %d bytes)",
                               strlen(c->home), (size_t)LR_INDEX_DB_PATH_MAX - strlen("/index.db"),
                               LR_INDEX_DB_PATH_MAX);
    if ((rc = lr_mkdirs(c->home, 0700, &err)) < 0)
        return cli_fail(rc, &err);
    struct stat st;
    if (stat(c->home, &st) < 0 || !S_ISDIR(st.st_mode)) {
        return cli_errorf(EXIT_RUNTIME, "home %s is not a directory", c->home);
    }
    char *cfgpath = lr_xasprintf("%s/%s", c->home, LR_CONFIG_FILE);
    bool exists = access(cfgpath, F_OK) == 0;
    free(cfgpath);
    if (exists) {
        struct lr_identity *ident = NULL;
        if (lr_identity_load(c->home, &ident, NULL) < 0) {
            return cli_errorf(EXIT_RUNTIME,
                              "%s is partly initialised: config.json is there but not a usable "
                              "key.pem and cert.pem (move the home aside and run 'landropic "
                              "init' again)",
                              c->home);
        }
        lr_identity_free(ident);
        return cli_errorf(EXIT_RUNTIME, "%s is already initialised (see 'landropic id')", c->home);
    }
    if (access(c->home, W_OK) < 0) {
        return cli_errorf(EXIT_RUNTIME, "home %s is not writable: %s", c->home, strerror(errno));
    }
    struct lr_device_id id;
    rc = lr_identity_create(c->home, &id, &err);
    if (rc == LR_EEXISTS) {
        /* An init interrupted after the key, before the configuration: finish it. */
        struct lr_identity *ident = NULL;
        if (lr_identity_load(c->home, &ident, NULL) < 0) {
            return cli_errorf(EXIT_RUNTIME, "%s already holds a device key; refusing to replace it",
                              c->home);
        }
        id = *lr_identity_device_id(ident);
        lr_identity_free(ident);
        rc = 0;
    }
    if (rc < 0)
        return cli_fail(rc, &err);
    struct lr_config *cfg = lr_config_new(c->home, name);
    rc = lr_config_save(cfg, &err);
    lr_config_free(cfg);
    if (rc < 0)
        return cli_fail(rc, &err);
    char s[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&id, s);
    puts(s);
    return EXIT_OK;
}

static const char id_usage[] = "usage: landropic id\n"
                               "Print this device's ID, one line, nothing else.\n";

int cmd_id(struct cli *c, int argc, char **argv)
{
    struct opts o;
    int rc = opts_parse(&o, NULL, 0, argc, argv, "id", id_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("id", "unexpected argument '%s'", o.pos[0]);
    if ((rc = cli_require_init(c)))
        return rc;
    struct lr_err err = {0};
    struct lr_identity *ident;
    if ((rc = lr_identity_load(c->home, &ident, &err)) < 0)
        return cli_fail(rc, &err);
    char s[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(lr_identity_device_id(ident), s);
    lr_identity_free(ident);
    puts(s);
    return EXIT_OK;
}

/* Two QR modules per character cell row (upper/lower half blocks), with a quiet zone. */
static void print_qr(const char *text)
{
    QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (!q) {
        fprintf(stderr, "landropic: cannot encode QR code\n");
        return;
    }
    int w = q->width, quiet = 2;
    for (int y = -quiet; y < w + quiet; y += 2) {
        for (int x = -quiet; x < w + quiet; x++) {
            bool top = y >= 0 && y < w && x >= 0 && x < w && (q->data[y * w + x] & 1);
            bool bot = y + 1 >= 0 && y + 1 < w && x >= 0 && x < w && (q->data[(y + 1) * w + x] & 1);
            /* Dark modules are drawn as spaces on a light background for scanners. */
            fputs(top ? (bot ? " " : "\xe2\x96\x84") : (bot ? "\xe2\x96\x80" : "\xe2\x96\x88"),
                  stdout);
        }
        fputc('\n', stdout);
    }
    QRcode_free(q);
}

static const char pair_usage[] =
    "usage: landropic pair [--qr] [--json]\n"
    "       landropic pair --code [--json]\n"
    "       landropic pair --join CODE [--folder ID] [--json]\n"
    "Show this device's ID and the addresses its daemon listens on, for adding it as a\n"
    "peer on another device. --qr also draws a QR code of a landropic:// link.\n"
    "--code shows a one-time code (5 minutes, one attempt) and waits until another\n"
    "device on this network pairs with it; --join CODE pairs with the device showing\n"
    "CODE (both add each other as peers) and, with --folder, shares folder ID both ways.\n";

/*
 * pair --code: show the code, then wait for the attempt's outcome. pair.wait
 * goes out with pair.code, on the same connection, before the code is shown:
 * the daemon then has a waiter for the code from its first moment, and ends
 * the code as soon as this command is interrupted. Sent after the code was
 * shown, a Ctrl-C in between left a code usable with nobody watching.
 */
/* A pairing attempt that did not pair: the line on stderr and the exit
 * code as without --json, and with it the outcome document a script waits
 * for ("expired" only for a holder's code). Closes cl. */
static int pair_failed(struct lr_api_client *cl, int rc, const struct lr_err *err, bool json,
                       bool holder)
{
    int exit_code = cli_api_fail(cl, rc, err);
    lr_api_client_close(cl);
    if (json)
        cli_print_json_line(json_pack("{s:s, s:s}", "status",
                                      holder && exit_code == EXIT_TIMEOUT ? "expired" : "failed",
                                      "error", lr_err_msg(err, rc)));
    return exit_code;
}

static int pair_code(struct cli *c, bool json)
{
    struct lr_api_client *cl = NULL;
    struct lr_err err = {0};
    int rc = cli_connect(c, &cl);
    if (rc)
        return rc;
    long long code_id = 0, wait_id = 0;
    json_t *res = NULL;
    rc = lr_api_send(cl, "pair.code", NULL, &code_id, &err);
    if (rc == 0)
        rc = lr_api_send(cl, "pair.wait", NULL, &wait_id, &err);
    if (rc == 0)
        rc = lr_api_await(cl, code_id, 10000, &res, &err);
    if (rc < 0)
        goto fail;
    const char *code = json_string_value(json_object_get(res, "code"));
    json_int_t ttl = json_integer_value(json_object_get(res, "expires_in_ms"));
    /* Two documents, each on one line (as events --json): the code at once,
     * the outcome when the attempt ends. */
    if (json) {
        cli_print_json_line(res); /* frees it */
    } else {
        printf("Pairing code: %s   (valid %lld minutes, one attempt)\n", code ? code : "?",
               (long long)((ttl + 59999) / 60000));
        printf("On the other device run:  landropic pair --join %s\n", code ? code : "?");
        json_decref(res);
    }
    fflush(stdout);
    rc = lr_api_await(cl, wait_id, (int)ttl + 60000, &res, &err);
    if (rc < 0)
        return pair_failed(cl, rc, &err, json, true);
    lr_api_client_close(cl);
    if (json) {
        cli_print_json_line(res);
        return EXIT_OK;
    }
    const char *name = json_string_value(json_object_get(res, "name"));
    const char *peer = json_string_value(json_object_get(res, "peer"));
    const char *folder = json_string_value(json_object_get(res, "folder"));
    printf("Paired with \"");
    cli_print_name(stdout, name ? name : "");
    printf("\" (%s).", peer ? peer : "?");
    if (folder)
        printf(" Sharing folder \"%s\".", folder);
    printf("\n");
    json_decref(res);
    return EXIT_OK;
fail:
    rc = cli_api_fail(cl, rc, &err);
    lr_api_client_close(cl);
    return rc;
}

/* pair --join CODE [--folder ID] */
static int pair_join(struct cli *c, const char *code, const char *folder, bool json)
{
    struct lr_api_client *cl = NULL;
    int rc = cli_connect(c, &cl);
    if (rc)
        return rc;
    json_t *params = json_pack("{s:s}", "code", code);
    if (folder)
        json_object_set_new(params, "folder", json_string(folder));
    json_t *res = NULL;
    struct lr_err err = {0};
    /* Search (10 s), handshake and exchange (30 s at most), with slack. */
    rc = lr_api_call(cl, "pair.join", params, 60000, &res, &err);
    if (rc < 0)
        return pair_failed(cl, rc, &err, json, false);
    lr_api_client_close(cl);
    if (json) {
        cli_print_json(res);
        return EXIT_OK;
    } else {
        const char *name = json_string_value(json_object_get(res, "name"));
        const char *peer = json_string_value(json_object_get(res, "peer"));
        printf("Paired with \"");
        cli_print_name(stdout, name ? name : "");
        printf("\" (%s).", peer ? peer : "?");
        if (folder) {
            if (json_is_true(json_object_get(res, "folder_shared_by_peer")))
                printf(" Sharing folder \"%s\".", folder);
            else
                printf(" Folder \"%s\" is shared from here; the other device has no folder "
                       "with that ID.",
                       folder);
        }
        printf("\n");
    }
    json_decref(res);
    return EXIT_OK;
}

int cmd_pair(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"qr", false, false},
                                           {"json", false, false},
                                           {"code", false, false},
                                           {"join", true, false},
                                           {"folder", true, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 5, argc, argv, "pair", pair_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("pair", "unexpected argument '%s'", o.pos[0]);
    bool code = opt_has(&o, "code"), join = opt_has(&o, "join");
    if (code + join + opt_has(&o, "qr") > 1)
        return cli_usage_error("pair", "--code, --join and --qr exclude each other");
    if (opt_has(&o, "folder") && !join)
        return cli_usage_error("pair", "--folder goes with --join");
    /* The document's "link" is what the code would draw; a code in JSON
     * would be silently dropped. */
    if (opt_has(&o, "qr") && opt_has(&o, "json"))
        return cli_usage_error("pair", "--qr draws for a terminal: not with --json (its \"link\" "
                                       "is the code's text)");
    const char *folder = opt_get(&o, "folder");
    if ((folder && (rc = cli_check_folder_args("pair", &folder, 1))) || (rc = cli_require_init(c)))
        return rc;
    if (join) {
        /* A code that does not parse is a usage error (exit 2) with or
         * without a daemon; it was "daemon not running" (exit 4) without. */
        struct lr_pair_code pc;
        struct lr_err err = {0};
        if (lr_pair_code_parse(opt_get(&o, "join"), &pc, &err) < 0)
            return cli_usage_error("pair", "%s", err.msg);
        lr_pair_code_wipe(&pc);
    }
    if (code)
        return pair_code(c, opt_has(&o, "json"));
    if (join)
        return pair_join(c, opt_get(&o, "join"), folder, opt_has(&o, "json"));
    json_t *res;
    if ((rc = cli_call(c, "pair", NULL, 10000, &res)))
        return rc;
    if (opt_has(&o, "json")) {
        cli_print_json(res);
        return EXIT_OK;
    }
    const char *id = json_string_value(json_object_get(res, "id"));
    json_t *addrs = json_object_get(res, "addresses");
    printf("Device ID: %s\n", id ? id : "?");
    printf("Addresses:\n");
    size_t i;
    json_t *a;
    json_array_foreach(addrs, i, a)
    {
        printf("  %s\n", json_string_value(a));
    }
    printf("On the other device: landropic peer add %s", id ? id : "?");
    json_array_foreach(addrs, i, a)
    {
        printf(" --addr %s", json_string_value(a));
    }
    printf("\n");
    if (opt_has(&o, "qr")) {
        const char *link = json_string_value(json_object_get(res, "link"));
        if (link)
            print_qr(link);
    }
    json_decref(res);
    return EXIT_OK;
}
