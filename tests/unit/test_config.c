/* test_config.c - config model, validation, persistence and the shared operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"
#include "config/ops.h"
#include "identity/identity.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *mkhome(void)
{
    char tmpl[] = "/tmp/lr-config-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return lr_xstrdup(d);
}

static struct lr_device_id some_id(uint8_t seed)
{
    struct lr_device_id id;
    for (int i = 0; i < LR_DEVICE_ID_LEN; i++)
        id.b[i] = (uint8_t)(seed * 31 + i);
    return id;
}

/* Config structs hold mutable strings; tests build them from literals. */
#define S(lit) ((char *)(uintptr_t)(lit))

static struct lr_folder_cfg fc(const char *id, const char *path)
{
    struct lr_folder_cfg f = {0};
    f.id = S(id);
    f.path = S(path);
    return f;
}

static void id_text(const struct lr_device_id *id, char *out)
{
    lr_device_id_format(id, out);
}

static void test_validators(void **state)
{
    (void)state;
    struct lr_err err = {0};
    assert_int_equal(lr_config_check_folder_id("docs", &err), 0);
    assert_int_equal(lr_config_check_folder_id("Fotos 2026 é", &err), 0);
    assert_int_equal(lr_config_check_folder_id("", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_folder_id("a/b", &err), LR_EUSAGE);
    assert_non_null(strstr(err.msg, "a/b"));
    assert_int_equal(lr_config_check_folder_id("..", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_folder_id("tab\there", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_folder_id("\xff\xfe", &err), LR_EUSAGE);
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(lr_config_check_folder_id(big, &err), LR_EUSAGE);

    const char *good[] = {"keep-both", "newest", "largest", "prefer-local", "prefer-remote"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(lr_config_check_strategy(good[i], &err), 0);
    struct lr_device_id id = some_id(3);
    char s[LR_DEVICE_ID_STRLEN + 8] = "prefer:";
    id_text(&id, s + 7);
    assert_int_equal(lr_config_check_strategy(s, &err), 0);
    assert_int_equal(lr_config_check_strategy("prefer:NOPE", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_strategy("loudest", &err), LR_EUSAGE);

    assert_int_equal(lr_config_check_addr("127.0.0.1:21037", &err), 0);
    assert_int_equal(lr_config_check_addr("[::1]:5", &err), 0);
    assert_int_equal(lr_config_check_addr("10.1.2.3:65535", &err), 0);
    /* Names are never looked up (the daemon dials numeric addresses only). */
    assert_int_equal(lr_config_check_addr("host.lan:65535", &err), LR_EUSAGE);
    assert_non_null(strstr(err.msg, "host.lan"));
    assert_int_equal(lr_config_check_addr("300.1.1.1:1", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("[zz]:1", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("[1.2.3.4]:1", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("1.2.3.4:+80", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("1.2.3.4:000080", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("1.2.3.4:", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("::1:5", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("host", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr(":80", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("h:0", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("h:65536", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("h:12x", &err), LR_EUSAGE);
    assert_int_equal(lr_config_check_addr("[::1:5", &err), LR_EUSAGE);

    enum lr_folder_mode m;
    assert_int_equal(lr_folder_mode_parse("send-only", &m, &err), 0);
    assert_int_equal(m, LR_MODE_SEND_ONLY);
    assert_string_equal(lr_folder_mode_name(m), "send-only");
    assert_int_equal(lr_folder_mode_parse("both", &m, &err), LR_EUSAGE);

    assert_true(lr_path_within("/a/b", "/a"));
    assert_true(lr_path_within("/a", "/a"));
    assert_false(lr_path_within("/ab", "/a"));
    assert_true(lr_path_within("/x", "/"));
}

static void test_round_trip(void **state)
{
    (void)state;
    char *home = mkhome();
    struct lr_err err = {0};
    struct lr_config *c = lr_config_new(home, "laptop");
    struct lr_device_id a = some_id(1), b = some_id(2);
    char *addrs[] = {S("127.0.0.1:1"), S("[::1]:2")};
    assert_int_equal(lr_config_add_peer(c, &a, "alpha", addrs, 2, &err), 0);
    assert_int_equal(lr_config_add_peer(c, &b, NULL, NULL, 0, &err), 0);
    /* Folder paths with non-UTF-8 bytes survive the JSON round trip. */
    struct lr_folder_cfg f = fc("docs", "/srv/d\xff");
    f.mode = LR_MODE_RECEIVE_ONLY;
    f.conflict = S("newest");
    f.conflict_window = 7;
    f.versions_keep = 12;
    f.versions_days = 34;
    f.token = 0x00c0ffee12345678u;
    assert_int_equal(lr_config_add_folder(c, &f, &err), 0);
    assert_int_equal(lr_config_share_folder(c, "docs", &a, &err), 1);
    assert_int_equal(lr_config_share_folder(c, "docs", &a, &err), 0);
    assert_int_equal(lr_config_save(c, &err), 0);
    lr_config_free(c);

    struct lr_config *r = NULL;
    assert_int_equal(lr_config_load(home, &r, &err), 0);
    assert_string_equal(r->name, "laptop");
    assert_int_equal(r->npeers, 2);
    struct lr_peer_cfg *p = lr_config_find_peer(r, &a);
    assert_non_null(p);
    assert_string_equal(p->name, "alpha");
    assert_int_equal(p->naddrs, 2);
    assert_string_equal(p->addrs[1], "[::1]:2");
    struct lr_folder_cfg *rf = lr_config_find_folder(r, "docs");
    assert_non_null(rf);
    assert_string_equal(rf->path, "/srv/d\xff");
    assert_int_equal(rf->mode, LR_MODE_RECEIVE_ONLY);
    assert_string_equal(rf->conflict, "newest");
    assert_int_equal(rf->conflict_window, 7);
    assert_int_equal(rf->versions_keep, 12);
    assert_int_equal(rf->versions_days, 34);
    assert_true(rf->token == 0x00c0ffee12345678u);
    /* Only folders without a token get one. */
    bool changed = true;
    assert_int_equal(lr_config_assign_tokens(r, &changed, &err), 0);
    assert_false(changed);
    assert_true(rf->token == 0x00c0ffee12345678u);
    rf->token = 0;
    assert_int_equal(lr_config_assign_tokens(r, &changed, &err), 0);
    assert_true(changed && rf->token != 0);
    assert_true(lr_folder_shared_with(rf, &a));
    assert_false(lr_folder_shared_with(rf, &b));

    /* Removing a peer also withdraws its shares. */
    assert_int_equal(lr_config_remove_peer(r, &a, &err), 0);
    assert_false(lr_folder_shared_with(lr_config_find_folder(r, "docs"), &a));
    assert_int_equal(lr_config_remove_peer(r, &a, &err), LR_ENOTFOUND);
    assert_int_equal(lr_config_remove_folder(r, "docs", &err), 0);
    assert_int_equal(lr_config_remove_folder(r, "docs", &err), LR_ENOTFOUND);
    lr_config_free(r);
    char *path = lr_xasprintf("%s/config.json", home);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unlink(path);
    free(path);
    rmdir(home);
    free(home);
}

static void test_overlaps(void **state)
{
    (void)state;
    struct lr_err err = {0};
    struct lr_config *c = lr_config_new("/home/u/.local/state/landropic", "x");
    struct lr_folder_cfg f = fc("a", "/data/a");
    assert_int_equal(lr_config_add_folder(c, &f, &err), 0);
    struct lr_folder_cfg dup = fc("a", "/data/z");
    assert_int_equal(lr_config_add_folder(c, &dup, &err), LR_EEXISTS);
    struct lr_folder_cfg same = fc("b", "/data/a");
    assert_int_equal(lr_config_add_folder(c, &same, &err), LR_EEXISTS);
    struct lr_folder_cfg inside = fc("c", "/data/a/sub");
    assert_int_equal(lr_config_add_folder(c, &inside, &err), LR_ECONFIG);
    assert_non_null(strstr(err.msg, "inside"));
    struct lr_folder_cfg outer = fc("d", "/data");
    assert_int_equal(lr_config_add_folder(c, &outer, &err), LR_ECONFIG);
    assert_non_null(strstr(err.msg, "contains"));
    struct lr_folder_cfg sibling = fc("e", "/data/ab");
    assert_int_equal(lr_config_add_folder(c, &sibling, &err), 0);
    struct lr_folder_cfg home = fc("h", "/home/u");
    assert_int_equal(lr_config_add_folder(c, &home, &err), LR_ECONFIG);
    lr_config_free(c);
}

static void write_text(const char *home, const char *text)
{
    char *path = lr_xasprintf("%s/config.json", home);
    assert_int_equal(lr_write_file_atomic(path, text, strlen(text), 0600, NULL), 0);
    free(path);
}

static void test_load_errors(void **state)
{
    (void)state;
    char *home = mkhome();
    struct lr_err err = {0};
    struct lr_config *c = NULL;
    assert_int_equal(lr_config_load(home, &c, &err), LR_ENOTINIT);
    assert_non_null(strstr(err.msg, home));
    const char *bad[] = {
        "{",
        "[]",
        "{\"version\": 2}",
        "{\"version\": 1, \"peers\": [{\"name\": \"x\"}]}",
        "{\"version\": 1, \"peers\": [{\"id\": \"BOGUS\"}]}",
        "{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"rel\"}]}",
        "{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", \"mode\": \"up\"}]}",
        "{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", \"path_b64\": \"!!\"}]}",
        "{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", \"token\": \"12\"}]}",
        "{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", \"token\": "
        "\"000000000000000g\"}]}",
        "{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", \"token\": "
        "\"0000000000000000\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_text(home, bad[i]);
        lr_err_clear(&err);
        assert_int_equal(lr_config_load(home, &c, &err), LR_ECONFIG);
        assert_null(c);
        assert_non_null(strstr(err.msg, "config.json"));
    }
    /* A field of the wrong type or range is named (it was "lacks its id or
     * path"; a negative window was read as 0). */
    static const struct {
        const char *text, *says;
    } named[] = {
        {"{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", "
         "\"conflict_window\": 2.5}]}",
         "folder 'a': conflict_window must be an integer"},
        {"{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", "
         "\"conflict_window\": -5}]}",
         "conflict_window -5 is not 0 to 31536000 seconds"},
        {"{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", "
         "\"versions_keep\": 1000001}]}",
         "versions_keep 1000001 is not 0 to 1000000 versions"},
        {"{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", "
         "\"versions_days\": \"9\"}]}",
         "folder 'a': versions_days must be an integer"},
        {"{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", \"token\": 7}]}",
         "folder 'a': token must be a string"},
        {"{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": 3}]}",
         "folder 'a': path must be a string"},
        {"{\"version\": 1, \"folders\": [{\"id\": \"a\", \"path\": \"/x\", \"shared\": {}}]}",
         "folder 'a': shared must be an array"},
        /* The top level too: an object here dropped every folder or peer. */
        {"{\"version\": 1, \"folders\": {}}", "\"folders\" must be an array"},
        {"{\"version\": 1, \"peers\": {}}", "\"peers\" must be an array"},
        {"{\"version\": 1, \"device\": {\"name\": 5}}", "\"device\".\"name\" must be a string"},
        {"{\"version\": 1, \"device\": []}", "\"device\" must be an object"},
        {"[1]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        write_text(home, named[i].text);
        lr_err_clear(&err);
        assert_int_equal(lr_config_load(home, &c, &err), LR_ECONFIG);
        assert_null(c);
        if (!strstr(err.msg, named[i].says))
            fail_msg("%s: got '%s'", named[i].says, err.msg);
    }
    /* A peer listed twice is refused (the second entry silently won). */
    struct lr_device_id twice = some_id(9);
    char tid[LR_DEVICE_ID_STRLEN + 1], twice_text[300];
    id_text(&twice, tid);
    snprintf(twice_text, sizeof(twice_text),
             "{\"version\": 1, \"peers\": [{\"id\": \"%s\"}, {\"id\": \"%s\", \"name\": \"b\"}]}",
             tid, tid);
    write_text(home, twice_text);
    lr_err_clear(&err);
    assert_int_equal(lr_config_load(home, &c, &err), LR_ECONFIG);
    assert_non_null(strstr(err.msg, "is listed twice"));
    /* Addresses older versions accepted (any HOST:PORT) but never dialled
     * are dropped on load; duplicates are kept once. */
    struct lr_device_id a = some_id(1);
    char ida[LR_DEVICE_ID_STRLEN + 1];
    id_text(&a, ida);
    char *text = lr_xasprintf("{\"version\": 1, \"peers\": [{\"id\": \"%s\", \"addresses\": "
                              "[\"nas.lan:21037\", \"10.0.0.5:21037\", \"[fe80::1%%eth0]:5\", "
                              "\"300.1.1.1:5\", \"my_nas:7\", \"10.0.0.5:21037\"]}]}",
                              ida);
    write_text(home, text);
    free(text);
    assert_int_equal(lr_config_load(home, &c, &err), 0);
    struct lr_peer_cfg *p = lr_config_find_peer(c, &a);
    assert_non_null(p);
    assert_int_equal(p->naddrs, 1);
    assert_string_equal(p->addrs[0], "10.0.0.5:21037");
    lr_config_free(c);
    /* Any other invalid address is an error naming it and its peer (they
     * were dropped silently, and gone for good at the next write). */
    static const struct {
        const char *addrs, *want;
    } bad_addrs[] = {
        {"[\"127.0.0.1:99999\"]", "invalid address '127.0.0.1:99999': the port"},
        {"[\"127.0.0.1:0\"]", "invalid address '127.0.0.1:0'"},
        {"[\"[::1]:x\"]", "invalid address '[::1]:x'"},
        {"[\"nas.lan:21037\", \"10.0.0.1:\"]", "invalid address '10.0.0.1:'"},
        {"[\"10.0.0.1 :5\"]", "invalid address '10.0.0.1 :5'"},
        {"\"127.0.0.1:1\"", "addresses must be a list of strings"},
    };
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        text = lr_xasprintf("{\"version\": 1, \"peers\": [{\"id\": \"%s\", \"addresses\": %s}]}",
                            ida, bad_addrs[i].addrs);
        write_text(home, text);
        free(text);
        lr_err_clear(&err);
        assert_int_equal(lr_config_load(home, &c, &err), LR_ECONFIG);
        assert_non_null(strstr(err.msg, bad_addrs[i].want));
        assert_non_null(strstr(err.msg, ida));
        assert_non_null(strstr(err.msg, "config.json"));
    }
    /* null is no addresses, as a missing key. */
    text =
        lr_xasprintf("{\"version\": 1, \"peers\": [{\"id\": \"%s\", \"addresses\": null}]}", ida);
    write_text(home, text);
    free(text);
    assert_int_equal(lr_config_load(home, &c, &err), 0);
    assert_int_equal(lr_config_find_peer(c, &a)->naddrs, 0);
    lr_config_free(c);
    char *path = lr_xasprintf("%s/config.json", home);
    unlink(path);
    free(path);
    rmdir(home);
    free(home);
}

static void test_ops(void **state)
{
    (void)state;
    char *home = mkhome();
    char *dir = lr_xasprintf("%s-folder", home);
    assert_int_equal(mkdir(dir, 0755), 0);
    struct lr_err err = {0};
    struct lr_config *c = lr_config_new(home, "n");
    struct lr_device_id a = some_id(9);
    char ida[LR_DEVICE_ID_STRLEN + 1];
    id_text(&a, ida);
    json_t *res = NULL;

    json_t *p =
        json_pack("{s:s, s:s, s:[s]}", "id", ida, "name", "bee", "addresses", "198.18.0.9:5");
    assert_int_equal(lr_config_apply(c, "peer.add", p, &res, &err), 0);
    json_decref(p);
    assert_false(json_is_true(json_object_get(res, "updated")));
    json_decref(res);

    p = json_pack("{s:s, s:[s]}", "id", ida, "addresses", "bad address");
    assert_int_equal(lr_config_apply(c, "peer.add", p, &res, &err), LR_EUSAGE);
    json_decref(p);
    assert_string_equal(lr_config_find_peer(c, &a)->addrs[0], "198.18.0.9:5");

    p = json_pack("{s:s}", "id", "NOT-AN-ID");
    assert_int_equal(lr_config_apply(c, "peer.remove", p, &res, &err), LR_EUSAGE);
    json_decref(p);

    p = json_pack("{s:s, s:[s], s:s, s:i}", "path", dir, "shared", ida, "mode", "send-only",
                  "conflict_window", 3);
    assert_int_equal(lr_config_apply(c, "folder.add", p, &res, &err), 0);
    json_decref(p);
    const char *slash = strrchr(dir, '/');
    assert_string_equal(json_string_value(json_object_get(res, "id")), slash + 1);
    json_decref(res);
    char *marker = lr_xasprintf("%s/.landropic", dir);
    struct stat st;
    assert_int_equal(stat(marker, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    struct lr_folder_cfg *f = lr_config_find_folder(c, slash + 1);
    assert_int_equal(f->mode, LR_MODE_SEND_ONLY);
    assert_true(lr_folder_shared_with(f, &a));
    assert_true(f->token != 0); /* every add makes a new one (index.h, folder bind) */

    p = json_pack("{s:s}", "path", "relative/path");
    assert_int_equal(lr_config_apply(c, "folder.add", p, &res, &err), LR_EUSAGE);
    json_decref(p);
    p = json_pack("{s:s, s:i}", "path", dir, "conflict_window", -1);
    assert_int_equal(lr_config_apply(c, "folder.add", p, &res, &err), LR_EUSAGE);
    json_decref(p);
    assert_int_equal(lr_config_apply(c, "folder.frob", NULL, &res, &err), LR_EUSAGE);
    assert_false(lr_config_is_op("folder.frob"));
    assert_true(lr_config_is_op("folder.share"));

    p = json_pack("{s:s}", "id", slash + 1);
    assert_int_equal(lr_config_apply(c, "folder.remove", p, &res, &err), 0);
    json_decref(p);
    json_decref(res);
    assert_int_equal(stat(dir, &st), 0); /* never deletes user files */

    lr_config_free(c);
    rmdir(marker);
    rmdir(dir);
    rmdir(home);
    free(marker);
    free(dir);
    free(home);
}

/* folder.set: the strategy and window change, are validated first, persist. */
static void test_folder_set(void **state)
{
    (void)state;
    char *home = mkhome();
    char *dir = lr_xasprintf("%s-folder", home);
    assert_int_equal(mkdir(dir, 0755), 0);
    struct lr_err err = {0};
    struct lr_config *c = lr_config_new(home, "n");
    json_t *res = NULL;
    json_t *p = json_pack("{s:s, s:s}", "path", dir, "id", "docs");
    assert_int_equal(lr_config_apply(c, "folder.add", p, &res, &err), 0);
    json_decref(p);
    json_decref(res);
    struct lr_folder_cfg *f = lr_config_find_folder(c, "docs");
    assert_string_equal(f->conflict, "keep-both");
    assert_true(lr_config_is_op("folder.set"));

    p = json_pack("{s:s, s:s, s:i}", "id", "docs", "conflict", "newest", "conflict_window", 30);
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), 0);
    json_decref(p);
    assert_true(json_is_true(json_object_get(res, "changed")));
    json_decref(res);
    assert_string_equal(f->conflict, "newest");
    assert_int_equal(f->conflict_window, 30);

    /* retention alone; out of range is refused naming it */
    p = json_pack("{s:s, s:i, s:i}", "id", "docs", "versions_keep", 3, "versions_days", 9);
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), 0);
    json_decref(p);
    assert_true(json_is_true(json_object_get(res, "changed")));
    assert_int_equal(json_integer_value(json_object_get(res, "versions_keep")), 3);
    json_decref(res);
    assert_int_equal(f->versions_keep, 3);
    assert_int_equal(f->versions_days, 9);
    assert_string_equal(f->conflict, "newest");
    p = json_pack("{s:s, s:i}", "id", "docs", "versions_days", 36501);
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), LR_EUSAGE);
    assert_non_null(strstr(err.msg, "versions days"));
    json_decref(p);
    assert_int_equal(f->versions_days, 9);

    /* the window alone; the same values again change nothing */
    p = json_pack("{s:s, s:i}", "id", "docs", "conflict_window", 0);
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), 0);
    json_decref(p);
    json_decref(res);
    assert_string_equal(f->conflict, "newest");
    assert_int_equal(f->conflict_window, 0);
    p = json_pack("{s:s, s:s}", "id", "docs", "conflict", "newest");
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), 0);
    json_decref(p);
    assert_false(json_is_true(json_object_get(res, "changed")));
    json_decref(res);

    /* refused: nothing changes, the message names the value */
    const char *bad[] = {"{s:s, s:s}", "{s:s, s:i}", "{s:s}"};
    p = json_pack(bad[0], "id", "docs", "conflict", "oldest");
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), LR_EUSAGE);
    assert_non_null(strstr(err.msg, "'oldest'"));
    json_decref(p);
    p = json_pack(bad[1], "id", "docs", "conflict_window", 365 * 86400 + 1);
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), LR_EUSAGE);
    json_decref(p);
    p = json_pack(bad[2], "id", "docs");
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), LR_EUSAGE);
    json_decref(p);
    p = json_pack("{s:s, s:s}", "id", "nope", "conflict", "largest");
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), LR_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope"));
    json_decref(p);
    assert_string_equal(f->conflict, "newest");
    assert_int_equal(f->conflict_window, 0);

    /* a prefer:ID survives a save and a load */
    struct lr_device_id a = some_id(4);
    char ida[LR_DEVICE_ID_STRLEN + 1], pref[LR_DEVICE_ID_STRLEN + 8];
    id_text(&a, ida);
    snprintf(pref, sizeof(pref), "prefer:%s", ida);
    p = json_pack("{s:s, s:s, s:i}", "id", "docs", "conflict", pref, "conflict_window", 7);
    assert_int_equal(lr_config_apply(c, "folder.set", p, &res, &err), 0);
    json_decref(p);
    json_decref(res);
    assert_int_equal(lr_config_save(c, &err), 0);
    struct lr_config *c2 = NULL;
    assert_int_equal(lr_config_load(home, &c2, &err), 0);
    struct lr_folder_cfg *f2 = lr_config_find_folder(c2, "docs");
    assert_string_equal(f2->conflict, pref);
    assert_int_equal(f2->conflict_window, 7);
    lr_config_free(c2);

    lr_config_free(c);
    char *marker = lr_xasprintf("%s/.landropic", dir);
    char *cfgf = lr_xasprintf("%s/%s", home, LR_CONFIG_FILE);
    rmdir(marker);
    rmdir(dir);
    unlink(cfgf);
    rmdir(home);
    free(cfgf);
    free(marker);
    free(dir);
    free(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validators), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_overlaps),   cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_ops),        cmocka_unit_test(test_folder_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
