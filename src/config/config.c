#include "config/config.h"

#include "util/fsutil.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (16u << 20)
#define CONFIG_VERSION 1

int lr_config_home(const char *opt, char **out, struct lr_err *err)
{
    *out = NULL;
    const char *h = opt;
    if (!h || !*h)
        h = getenv("LANDROPIC_HOME");
    if (h && *h) {
        if (h[0] == '/') {
            *out = lr_xstrdup(h);
        } else {
            char cwd[4096];
            if (!getcwd(cwd, sizeof(cwd)))
                return lr_err_set(err, -errno, "cannot resolve home %s: %s", h, strerror(errno));
            *out = lr_xasprintf("%s/%s", cwd, h);
        }
        return 0;
    }
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg && xdg[0] == '/') {
        *out = lr_xasprintf("%s/landropic", xdg);
        return 0;
    }
    const char *home = getenv("HOME");
    if (!home || home[0] != '/')
        return lr_err_set(err, LR_EUSAGE, "no home directory: set --home or LANDROPIC_HOME");
    *out = lr_xasprintf("%s/.local/state/landropic", home);
    return 0;
}

struct lr_config *lr_config_new(const char *home, const char *name)
{
    struct lr_config *c = lr_xcalloc(1, sizeof(*c));
    c->home = lr_xstrdup(home);
    c->name = lr_xstrdup(name ? name : "");
    c->discovery = true;
    return c;
}

static void peer_release(struct lr_peer_cfg *p)
{
    free(p->name);
    for (size_t i = 0; i < p->naddrs; i++)
        free(p->addrs[i]);
    free(p->addrs);
}

static void folder_release(struct lr_folder_cfg *f)
{
    free(f->id);
    free(f->path);
    free(f->conflict);
    free(f->shared);
}

void lr_config_free(struct lr_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->npeers; i++)
        peer_release(&cfg->peers[i]);
    for (size_t i = 0; i < cfg->nfolders; i++)
        folder_release(&cfg->folders[i]);
    free(cfg->peers);
    free(cfg->folders);
    free(cfg->home);
    free(cfg->name);
    free(cfg);
}

/* ---- validation ---- */

static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

int lr_config_check_name(const char *name, struct lr_err *err)
{
    size_t n = strlen(name);
    if (n > LR_CONFIG_NAME_MAX || !lr_utf8_valid(name, n) || has_control(name)) {
        char *e = lr_escs_short(name);
        int rc = lr_err_set(err, LR_EUSAGE,
                            "invalid name '%s': at most %d bytes of UTF-8 without control "
                            "characters",
                            e, LR_CONFIG_NAME_MAX);
        free(e);
        return rc;
    }
    return 0;
}

int lr_config_check_folder_id(const char *id, struct lr_err *err)
{
    size_t n = strlen(id);
    const char *why = NULL;
    if (n == 0)
        why = "it is empty";
    else if (n > LR_FOLDER_ID_MAX)
        why = "it is longer than 255 bytes";
    else if (!lr_utf8_valid(id, n))
        why = "it is not valid UTF-8";
    else if (has_control(id))
        why = "it contains control characters";
    else if (strchr(id, '/'))
        why = "it contains '/'";
    else if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        why = "it is '.' or '..'";
    if (!why)
        return 0;
    char *e = lr_escs_short(id);
    int rc = lr_err_set(err, LR_EUSAGE, "invalid folder ID '%s': %s", e, why);
    free(e);
    return rc;
}

int lr_config_check_strategy(const char *s, struct lr_err *err)
{
    static const char *const names[] = {"keep-both", "newest", "largest", "prefer-local",
                                        "prefer-remote"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0)
            return 0;
    if (strncmp(s, "prefer:", 7) == 0) {
        struct lr_device_id id;
        struct lr_err sub = {0};
        if (lr_device_id_parse(s + 7, &id, &sub) == 0)
            return 0;
        return lr_err_set(err, LR_EUSAGE, "invalid conflict strategy '%s': %s", s, sub.msg);
    }
    char *e = lr_escs_short(s);
    int rc = lr_err_set(err, LR_EUSAGE,
                        "invalid conflict strategy '%s' (expected keep-both, newest, largest, "
                        "prefer-local, prefer-remote or prefer:DEVICE_ID)",
                        e);
    free(e);
    return rc;
}

char *lr_config_norm_strategy(const char *s)
{
    struct lr_device_id id;
    if (strncmp(s, "prefer:", 7) == 0 && lr_device_id_parse(s + 7, &id, NULL) == 0) {
        char txt[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&id, txt);
        return lr_xasprintf("prefer:%s", txt);
    }
    return lr_xstrdup(s);
}

/* Why `host` (NUL-terminated, brackets removed) is not a numeric address, or NULL. */
static const char *addr_host_problem(const char *host, bool v6)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, buf) == 1)
        return NULL;
    return v6 ? "the host between [ ] is not a numeric IPv6 address"
              : "the host must be a numeric IPv4 address, or IPv6 as [ADDR] (names are not "
                "looked up)";
}

/* 1..65535 in plain decimal digits. */
static bool port_ok(const char *port)
{
    size_t plen = strlen(port);
    long pv = plen && plen <= 5 && strspn(port, "0123456789") == plen ? atol(port) : 0;
    return pv >= 1 && pv <= 65535;
}

int lr_config_check_addr(const char *addr, struct lr_err *err)
{
    const char *colon = strrchr(addr, ':');
    const char *why = NULL;
    size_t hostlen = colon ? (size_t)(colon - addr) : 0;
    char host[INET6_ADDRSTRLEN + 1];
    if (has_control(addr) || strchr(addr, ' ')) {
        why = "it contains spaces or control characters";
    } else if (!colon || hostlen == 0) {
        why = "expected HOST:PORT";
    } else if (addr[0] == '[' && (hostlen < 3 || addr[hostlen - 1] != ']')) {
        why = "an IPv6 address must be written [ADDR]:PORT";
    } else if (addr[0] != '[' && memchr(addr, ':', hostlen)) {
        why = "an IPv6 address must be written [ADDR]:PORT";
    } else {
        bool v6 = addr[0] == '[';
        size_t n = v6 ? hostlen - 2 : hostlen;
        if (n >= sizeof(host)) {
            why = v6 ? "the host between [ ] is not a numeric IPv6 address"
                     : addr_host_problem("", false);
        } else {
            memcpy(host, addr + (v6 ? 1 : 0), n);
            host[n] = '\0';
            why = addr_host_problem(host, v6);
        }
        if (!why && !port_ok(colon + 1))
            why = "the port must be a number from 1 to 65535";
    }
    if (!why)
        return 0;
    char *e = lr_escs_short(addr);
    int rc = lr_err_set(err, LR_EUSAGE, "invalid address '%s': %s", e, why);
    free(e);
    return rc;
}

int lr_folder_mode_parse(const char *s, enum lr_folder_mode *out, struct lr_err *err)
{
    if (strcmp(s, "send-receive") == 0)
        *out = LR_MODE_SEND_RECEIVE;
    else if (strcmp(s, "send-only") == 0)
        *out = LR_MODE_SEND_ONLY;
    else if (strcmp(s, "receive-only") == 0)
        *out = LR_MODE_RECEIVE_ONLY;
    else {
        char *e = lr_escs_short(s);
        int rc = lr_err_set(err, LR_EUSAGE,
                            "invalid mode '%s' (expected send-receive, send-only or "
                            "receive-only)",
                            e);
        free(e);
        return rc;
    }
    return 0;
}

const char *lr_folder_mode_name(enum lr_folder_mode m)
{
    switch (m) {
    case LR_MODE_SEND_ONLY:
        return "send-only";
    case LR_MODE_RECEIVE_ONLY:
        return "receive-only";
    case LR_MODE_SEND_RECEIVE:
    default:
        return "send-receive";
    }
}

bool lr_path_within(const char *a, const char *b)
{
    size_t nb = strlen(b);
    if (nb == 1 && b[0] == '/')
        return true;
    return strncmp(a, b, nb) == 0 && (a[nb] == '\0' || a[nb] == '/');
}

/* ---- lookups and edits ---- */

struct lr_peer_cfg *lr_config_find_peer(const struct lr_config *cfg, const struct lr_device_id *id)
{
    for (size_t i = 0; i < cfg->npeers; i++)
        if (lr_device_id_eq(&cfg->peers[i].id, id))
            return &cfg->peers[i];
    return NULL;
}

struct lr_folder_cfg *lr_config_find_folder(const struct lr_config *cfg, const char *folder_id)
{
    for (size_t i = 0; i < cfg->nfolders; i++)
        if (strcmp(cfg->folders[i].id, folder_id) == 0)
            return &cfg->folders[i];
    return NULL;
}

/* Replace p's addresses with `addrs`, in order, each once. */
static void set_addrs(struct lr_peer_cfg *p, char *const *addrs, size_t naddrs)
{
    for (size_t i = 0; i < p->naddrs; i++)
        free(p->addrs[i]);
    free(p->addrs);
    p->addrs = naddrs ? lr_xmallocarray(naddrs, sizeof(char *)) : NULL;
    p->naddrs = 0;
    for (size_t i = 0; i < naddrs; i++) {
        bool dup = false;
        for (size_t k = 0; k < p->naddrs && !dup; k++)
            dup = strcmp(p->addrs[k], addrs[i]) == 0;
        if (!dup)
            p->addrs[p->naddrs++] = lr_xstrdup(addrs[i]);
    }
}

int lr_config_add_peer(struct lr_config *cfg, const struct lr_device_id *id, const char *name,
                       char *const *addrs, size_t naddrs, struct lr_err *err)
{
    int rc;
    if (name && (rc = lr_config_check_name(name, err)) < 0)
        return rc;
    if (naddrs > LR_ADDR_MAX)
        return lr_err_set(err, LR_EUSAGE, "too many addresses (at most %d)", LR_ADDR_MAX);
    for (size_t i = 0; i < naddrs; i++)
        if ((rc = lr_config_check_addr(addrs[i], err)) < 0)
            return rc;
    struct lr_peer_cfg *p = lr_config_find_peer(cfg, id);
    if (!p) {
        cfg->peers = lr_xreallocarray(cfg->peers, cfg->npeers + 1, sizeof(*cfg->peers));
        p = &cfg->peers[cfg->npeers++];
        memset(p, 0, sizeof(*p));
        p->id = *id;
        p->name = lr_xstrdup(name ? name : "");
    } else if (name) {
        free(p->name);
        p->name = lr_xstrdup(name);
    }
    if (naddrs)
        set_addrs(p, addrs, naddrs);
    return 0;
}

int lr_config_remove_peer(struct lr_config *cfg, const struct lr_device_id *id, struct lr_err *err)
{
    struct lr_peer_cfg *p = lr_config_find_peer(cfg, id);
    if (!p) {
        char s[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(id, s);
        return lr_err_set(err, LR_ENOTFOUND, "peer %s is not added", s);
    }
    size_t i = (size_t)(p - cfg->peers);
    peer_release(p);
    memmove(&cfg->peers[i], &cfg->peers[i + 1], (cfg->npeers - i - 1) * sizeof(*p));
    cfg->npeers--;
    /* A removed peer is no longer shared with: folders must not keep a dangling grant. */
    for (size_t f = 0; f < cfg->nfolders; f++) {
        struct lr_folder_cfg *fc = &cfg->folders[f];
        for (size_t k = 0; k < fc->nshared;) {
            if (lr_device_id_eq(&fc->shared[k], id)) {
                memmove(&fc->shared[k], &fc->shared[k + 1],
                        (fc->nshared - k - 1) * sizeof(fc->shared[0]));
                fc->nshared--;
            } else {
                k++;
            }
        }
    }
    return 0;
}

int lr_config_new_token(uint64_t *out, struct lr_err *err)
{
    *out = 0;
    while (*out == 0) {
        if (getrandom(out, sizeof(*out), 0) != (ssize_t)sizeof(*out))
            return lr_err_set(err, -errno, "getrandom for a folder token");
    }
    return 0;
}

int lr_config_assign_tokens(struct lr_config *cfg, bool *changed, struct lr_err *err)
{
    *changed = false;
    for (size_t i = 0; i < cfg->nfolders; i++) {
        if (cfg->folders[i].token)
            continue;
        int rc = lr_config_new_token(&cfg->folders[i].token, err);
        if (rc < 0)
            return rc;
        *changed = true;
    }
    return 0;
}

int lr_config_add_folder(struct lr_config *cfg, const struct lr_folder_cfg *f, struct lr_err *err)
{
    int rc;
    if ((rc = lr_config_check_folder_id(f->id, err)) < 0)
        return rc;
    if (f->conflict && (rc = lr_config_check_strategy(f->conflict, err)) < 0)
        return rc;
    if (lr_config_find_folder(cfg, f->id))
        return lr_err_set(err, LR_EEXISTS, "folder ID '%s' is already used", f->id);
    /* Folder paths are canonical; the home may be named through a symlink. */
    char *real_home = realpath(cfg->home, NULL);
    const char *homes[2] = {cfg->home, real_home};
    for (size_t i = 0; i < 2; i++) {
        if (homes[i] && (lr_path_within(f->path, homes[i]) || lr_path_within(homes[i], f->path))) {
            rc =
                lr_err_set(err, LR_ECONFIG, "%s overlaps the landropic home %s", f->path, homes[i]);
            free(real_home);
            return rc;
        }
    }
    free(real_home);
    for (size_t i = 0; i < cfg->nfolders; i++) {
        const struct lr_folder_cfg *o = &cfg->folders[i];
        if (strcmp(o->path, f->path) == 0)
            return lr_err_set(err, LR_EEXISTS, "%s is already shared as folder '%s'", f->path,
                              o->id);
        if (lr_path_within(f->path, o->path))
            return lr_err_set(err, LR_ECONFIG, "%s is inside folder '%s' (%s)", f->path, o->id,
                              o->path);
        if (lr_path_within(o->path, f->path))
            return lr_err_set(err, LR_ECONFIG, "%s contains folder '%s' (%s)", f->path, o->id,
                              o->path);
    }
    cfg->folders = lr_xreallocarray(cfg->folders, cfg->nfolders + 1, sizeof(*cfg->folders));
    struct lr_folder_cfg *n = &cfg->folders[cfg->nfolders++];
    n->id = lr_xstrdup(f->id);
    n->path = lr_xstrdup(f->path);
    n->mode = f->mode;
    n->conflict = lr_xstrdup(f->conflict ? f->conflict : "keep-both");
    n->conflict_window = f->conflict_window;
    n->versions_keep = f->versions_keep;
    n->versions_days = f->versions_days;
    n->token = f->token;
    n->nshared = 0;
    n->shared = NULL;
    for (size_t i = 0; i < f->nshared; i++)
        lr_config_share_folder(cfg, n->id, &f->shared[i], NULL);
    return 0;
}

int lr_config_remove_folder(struct lr_config *cfg, const char *folder_id, struct lr_err *err)
{
    struct lr_folder_cfg *f = lr_config_find_folder(cfg, folder_id);
    if (!f) {
        char *e = lr_escs_short(folder_id);
        int rc = lr_err_set(err, LR_ENOTFOUND, "no folder with ID '%s'", e);
        free(e);
        return rc;
    }
    size_t i = (size_t)(f - cfg->folders);
    folder_release(f);
    memmove(&cfg->folders[i], &cfg->folders[i + 1], (cfg->nfolders - i - 1) * sizeof(*f));
    cfg->nfolders--;
    return 0;
}

bool lr_folder_shared_with(const struct lr_folder_cfg *f, const struct lr_device_id *dev)
{
    for (size_t i = 0; i < f->nshared; i++)
        if (lr_device_id_eq(&f->shared[i], dev))
            return true;
    return false;
}

int lr_config_share_folder(struct lr_config *cfg, const char *folder_id,
                           const struct lr_device_id *dev, struct lr_err *err)
{
    struct lr_folder_cfg *f = lr_config_find_folder(cfg, folder_id);
    if (!f) {
        char *e = lr_escs_short(folder_id);
        int rc = lr_err_set(err, LR_ENOTFOUND, "no folder with ID '%s'", e);
        free(e);
        return rc;
    }
    if (lr_folder_shared_with(f, dev))
        return 0;
    f->shared = lr_xreallocarray(f->shared, f->nshared + 1, sizeof(*f->shared));
    f->shared[f->nshared++] = *dev;
    return 1;
}

/* ---- JSON ---- */

static json_t *peer_to_json(const struct lr_peer_cfg *p)
{
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(&p->id, id);
    json_t *addrs = json_array();
    for (size_t i = 0; i < p->naddrs; i++)
        json_array_append_new(addrs, json_string(p->addrs[i]));
    return json_pack("{s:s, s:s, s:o}", "id", id, "name", p->name, "addresses", addrs);
}

static json_t *folder_to_json(const struct lr_folder_cfg *f)
{
    json_t *shared = json_array();
    for (size_t i = 0; i < f->nshared; i++) {
        char id[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&f->shared[i], id);
        json_array_append_new(shared, json_string(id));
    }
    /* Paths are stored as given by realpath(); non-UTF-8 ones keep their bytes in base64. */
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:o}", "id", f->id, "mode",
                          lr_folder_mode_name(f->mode), "conflict", f->conflict, "conflict_window",
                          (json_int_t)f->conflict_window, "shared", shared);
    /* Only when set: a configuration without retention reads as before. */
    if (f->versions_keep)
        json_object_set_new(o, "versions_keep", json_integer(f->versions_keep));
    if (f->versions_days)
        json_object_set_new(o, "versions_days", json_integer(f->versions_days));
    if (f->token) {
        char tok[17];
        snprintf(tok, sizeof(tok), "%016" PRIx64, f->token);
        json_object_set_new(o, "token", json_string(tok));
    }
    size_t plen = strlen(f->path);
    if (lr_utf8_valid(f->path, plen)) {
        json_object_set_new(o, "path", json_string(f->path));
    } else {
        char *lossy = lr_utf8_lossy(f->path, plen);
        char *b64 = lr_base64(f->path, plen);
        json_object_set_new(o, "path", json_string(lossy));
        json_object_set_new(o, "path_b64", json_string(b64));
        free(lossy);
        free(b64);
    }
    return o;
}

/* Decode base64 (with padding) to a NUL-terminated string; NULL if malformed or has NUL. */
char *lr_config_unbase64_str(const char *s)
{
    size_t n;
    uint8_t *out = lr_unbase64(s, &n);
    if (out && strlen((const char *)out) != n) {
        free(out);
        return NULL;
    }
    return (char *)out;
}

int lr_config_save(const struct lr_config *cfg, struct lr_err *err)
{
    json_t *peers = json_array(), *folders = json_array();
    for (size_t i = 0; i < cfg->npeers; i++)
        json_array_append_new(peers, peer_to_json(&cfg->peers[i]));
    for (size_t i = 0; i < cfg->nfolders; i++)
        json_array_append_new(folders, folder_to_json(&cfg->folders[i]));
    json_t *root =
        json_pack("{s:i, s:{s:s, s:b}, s:o, s:o}", "version", CONFIG_VERSION, "device", "name",
                  cfg->name, "discovery", cfg->discovery, "peers", peers, "folders", folders);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text)
        return lr_err_set(err, LR_EINTERNAL, "cannot encode configuration");
    char *path = lr_xasprintf("%s/%s", cfg->home, LR_CONFIG_FILE);
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps leaves no newline; overwrite the NUL, length + 1 */
    int rc = lr_write_file_atomic(path, text, len + 1, 0600, err);
    free(text);
    free(path);
    return rc;
}

int lr_config_lock(const char *home, struct lr_err *err)
{
    char *path = lr_xasprintf("%s/config.lock", home);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int rc = fd;
    if (fd < 0) {
        rc = lr_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    } else {
        while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
            ;
        if (rc < 0) {
            rc = lr_err_set(err, -errno, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
        } else {
            rc = fd;
        }
    }
    free(path);
    return rc;
}

void lr_config_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* drops the flock */
}

static int bad(struct lr_err *err, const char *path, const char *what)
{
    return lr_err_set(err, LR_ECONFIG, "%s: %s", path, what);
}

/*
 * An address older versions accepted and may have written: any HOST:PORT
 * without spaces or control characters and with a port of 1..65535 (host
 * names, a link-local address with its zone, ...). Such a one is dropped
 * when read, since it was never dialled; anything else in the file was
 * never written by us and is an error naming it.
 */
static bool old_accepted(const char *a)
{
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a || has_control(a) || strchr(a, ' '))
        return false;
    return port_ok(colon + 1);
}

static int load_peer(json_t *jp, struct lr_config *cfg, const char *path, struct lr_err *err)
{
    const char *id = NULL, *name = "";
    json_t *addrs = NULL;
    if (json_unpack(jp, "{s:s, s?s, s?o}", "id", &id, "name", &name, "addresses", &addrs) < 0)
        return bad(err, path, "a peer entry lacks its id");
    struct lr_device_id dev;
    struct lr_err sub = {0};
    if (lr_device_id_parse(id, &dev, &sub) < 0)
        return lr_err_set(err, LR_ECONFIG, "%s: peer %s: %s", path, id, sub.msg);
    /* Two entries would merge, the second's name and addresses winning. */
    if (lr_config_find_peer(cfg, &dev))
        return lr_err_set(err, LR_ECONFIG, "%s: peer %s is listed twice", path, id);
    if (addrs && !json_is_array(addrs) && !json_is_null(addrs))
        return lr_err_set(err, LR_ECONFIG, "%s: peer %s: addresses must be a list of strings", path,
                          id);
    size_t n = json_is_array(addrs) ? json_array_size(addrs) : 0;
    if (n > LR_ADDR_MAX)
        return bad(err, path, "a peer has too many addresses");
    char *list[LR_ADDR_MAX];
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const char *a = json_string_value(json_array_get(addrs, i));
        if (!a)
            return bad(err, path, "a peer address is not a string");
        if (lr_config_check_addr(a, &sub) == 0)
            list[kept++] = (char *)(uintptr_t)a; /* borrowed for the call, copied inside */
        else if (!old_accepted(a))
            return lr_err_set(err, LR_ECONFIG, "%s: peer %s: %s", path, id, sub.msg);
    }
    int rc = lr_config_add_peer(cfg, &dev, name, list, kept, &sub);
    if (rc < 0)
        return lr_err_set(err, LR_ECONFIG, "%s: %s", path, sub.msg);
    return 0;
}

/* 16 lower-case hex digits, not all zero. */
static int parse_token(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        int c = (unsigned char)s[n], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    if (n != 16 || v == 0)
        return -1;
    *out = v;
    return 0;
}

/* A folder entry's fields and their JSON types: a wrong one is named (the
 * unpack below only says that something is wrong). */
static const struct {
    const char *key;
    json_type type;
    const char *what;
} folder_fields[] = {
    {"id", JSON_STRING, "a string"},
    {"path", JSON_STRING, "a string"},
    {"path_b64", JSON_STRING, "a string"},
    {"mode", JSON_STRING, "a string"},
    {"conflict", JSON_STRING, "a string"},
    {"conflict_window", JSON_INTEGER, "an integer"},
    {"shared", JSON_ARRAY, "an array"},
    {"token", JSON_STRING, "a string"},
    {"versions_keep", JSON_INTEGER, "an integer"},
    {"versions_days", JSON_INTEGER, "an integer"},
};

/* An optional integer field of a folder entry within 0..max. */
static int check_range(json_t *jf, const char *key, json_int_t max, const char *unit,
                       const char *path, const char *eid, struct lr_err *err)
{
    json_int_t v = json_integer_value(json_object_get(jf, key));
    if (v < 0 || v > max)
        return lr_err_set(err, LR_ECONFIG,
                          "%s: folder '%s': %s %" JSON_INTEGER_FORMAT
                          " is not 0 to %" JSON_INTEGER_FORMAT " %s",
                          path, eid, key, v, max, unit);
    return 0;
}

static int check_folder_fields(json_t *jf, const char *path, struct lr_err *err)
{
    if (!json_is_object(jf))
        return bad(err, path, "a folder entry is not an object");
    const char *id = json_string_value(json_object_get(jf, "id"));
    char *eid = lr_escs(id ? id : "?");
    int rc = 0;
    for (size_t i = 0; i < sizeof(folder_fields) / sizeof(folder_fields[0]) && rc == 0; i++) {
        json_t *v = json_object_get(jf, folder_fields[i].key);
        if (v && json_typeof(v) != folder_fields[i].type)
            rc = lr_err_set(err, LR_ECONFIG, "%s: folder '%s': %s must be %s", path, eid,
                            folder_fields[i].key, folder_fields[i].what);
    }
    if (rc == 0)
        rc = check_range(jf, "conflict_window", LR_CONFLICT_WINDOW_MAX, "seconds", path, eid, err);
    if (rc == 0)
        rc = check_range(jf, "versions_keep", LR_VERSIONS_KEEP_MAX, "versions", path, eid, err);
    if (rc == 0)
        rc = check_range(jf, "versions_days", LR_VERSIONS_DAYS_MAX, "days", path, eid, err);
    free(eid);
    return rc;
}

static int load_folder(json_t *jf, struct lr_config *cfg, const char *path, struct lr_err *err)
{
    const char *id = NULL, *fpath = NULL, *fpath_b64 = NULL, *mode = "send-receive",
               *conflict = "keep-both", *token = NULL;
    json_int_t window = 0, keep = 0, days = 0;
    json_t *shared = NULL;
    int rc = check_folder_fields(jf, path, err);
    if (rc < 0)
        return rc;
    if (json_unpack(jf, "{s:s, s:s, s?s, s?s, s?s, s?I, s?o, s?s, s?I, s?I}", "id", &id, "path",
                    &fpath, "path_b64", &fpath_b64, "mode", &mode, "conflict", &conflict,
                    "conflict_window", &window, "shared", &shared, "token", &token, "versions_keep",
                    &keep, "versions_days", &days) < 0)
        return bad(err, path, "a folder entry lacks its id or path");
    struct lr_err sub = {0};
    struct lr_folder_cfg f = {0};
    char *decoded = NULL;
    if (fpath_b64) {
        decoded = lr_config_unbase64_str(fpath_b64);
        if (!decoded)
            return bad(err, path, "a folder's path_b64 is malformed");
        fpath = decoded;
    }
    f.id = (char *)(uintptr_t)id;
    f.path = (char *)(uintptr_t)fpath;
    f.conflict = (char *)(uintptr_t)conflict;
    f.conflict_window = (uint32_t)window; /* checked: 0..LR_CONFLICT_WINDOW_MAX */
    f.versions_keep = (uint32_t)keep;     /* checked too */
    f.versions_days = (uint32_t)days;
    rc = lr_folder_mode_parse(mode, &f.mode, &sub);
    if (rc == 0 && token && parse_token(token, &f.token) < 0)
        rc = lr_err_set(&sub, LR_ECONFIG, "folder '%s' has a malformed token", id);
    if (rc == 0 && fpath[0] != '/')
        rc = lr_err_set(&sub, LR_ECONFIG, "folder '%s' has a relative path", id);
    if (rc == 0)
        rc = lr_config_add_folder(cfg, &f, &sub);
    free(decoded);
    if (rc < 0)
        return lr_err_set(err, LR_ECONFIG, "%s: %s", path, sub.msg);
    size_t n = json_is_array(shared) ? json_array_size(shared) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(shared, i));
        struct lr_device_id dev;
        if (!s || lr_device_id_parse(s, &dev, &sub) < 0)
            return lr_err_set(err, LR_ECONFIG, "%s: folder '%s' is shared with a bad ID", path, id);
        lr_config_share_folder(cfg, id, &dev, NULL);
    }
    return 0;
}

int lr_config_load(const char *home, struct lr_config **out, struct lr_err *err)
{
    *out = NULL;
    char *path = lr_xasprintf("%s/%s", home, LR_CONFIG_FILE);
    char *text = NULL;
    size_t len;
    struct lr_config *cfg = NULL;
    int rc = lr_read_file(path, CONFIG_MAX_BYTES, &text, &len, err);
    if (rc == -ENOENT) {
        rc = lr_err_set(err, LR_ENOTINIT, "%s is not initialised (run 'landropic init')", home);
        goto out;
    }
    if (rc < 0)
        goto out;
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) {
        rc = lr_err_set(err, LR_ECONFIG, "%s:%d: %s", path, je.line, je.text);
        goto out;
    }
    const char *name = "";
    json_t *peers = NULL, *folders = NULL;
    json_int_t version = 0;
    int discovery = 1;
    /* Each shape error names its key: a hand edit that gives "peers" an
     * object would otherwise drop every peer without a word. */
    const char *shape = NULL;
    json_t *dev = json_object_get(root, "device");
    if (!json_is_object(root))
        shape = "not a JSON object";
    else if (json_unpack(root, "{s:I}", "version", &version) < 0 || version != CONFIG_VERSION)
        shape = "not a landropic configuration of version 1 (\"version\": 1)";
    else if (dev && !json_is_object(dev))
        shape = "\"device\" must be an object";
    else if (dev && json_object_get(dev, "name") && !json_is_string(json_object_get(dev, "name")))
        shape = "\"device\".\"name\" must be a string";
    else if (dev && json_object_get(dev, "discovery") &&
             !json_is_boolean(json_object_get(dev, "discovery")))
        shape = "\"device\".\"discovery\" must be true or false";
    else if (json_object_get(root, "peers") && !json_is_array(json_object_get(root, "peers")))
        shape = "\"peers\" must be an array";
    else if (json_object_get(root, "folders") && !json_is_array(json_object_get(root, "folders")))
        shape = "\"folders\" must be an array";
    else if (json_unpack(root, "{s?{s?s, s?b}, s?o, s?o}", "device", "name", &name, "discovery",
                         &discovery, "peers", &peers, "folders", &folders) < 0)
        shape = "not a landropic configuration of version 1";
    if (shape) {
        json_decref(root);
        rc = bad(err, path, shape);
        goto out;
    }
    cfg = lr_config_new(home, name);
    cfg->discovery = discovery != 0;
    size_t i;
    json_t *v;
    json_array_foreach(peers, i, v)
    {
        if ((rc = load_peer(v, cfg, path, err)) < 0)
            break;
    }
    if (rc == 0) {
        json_array_foreach(folders, i, v)
        {
            if ((rc = load_folder(v, cfg, path, err)) < 0)
                break;
        }
    }
    json_decref(root);
    if (rc == 0) {
        *out = cfg;
        cfg = NULL;
    }
out:
    lr_config_free(cfg);
    free(text);
    free(path);
    return rc;
}
