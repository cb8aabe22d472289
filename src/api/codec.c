/*
 * codec.c - control API lines <-> messages (pure), plus the socket address
 * helper shared by server.c and client.c.
 */
#include "api/api_int.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- socket address ---- */

int lr__api_addr_init(struct lr__api_addr *a, const char *home, struct lr_err *err)
{
    memset(a, 0, sizeof(*a));
    a->dirfd = -1;
    a->sa.sun_family = AF_UNIX;
    int fd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lr_err_set(err, -e, "cannot open home %s: %s", home, strerror(e));
    }
    a->dirfd = fd;
    int n = snprintf(a->sa.sun_path, sizeof(a->sa.sun_path), "%s/%s", home, LR_API_SOCK_NAME);
    if (n < 0 || (size_t)n >= sizeof(a->sa.sun_path)) {
        /* Too long for sun_path: let the kernel walk through our descriptor. */
        n = snprintf(a->sa.sun_path, sizeof(a->sa.sun_path), "/proc/self/fd/%d/%s", fd,
                     LR_API_SOCK_NAME);
        a->via_proc = true;
    }
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
    return 0;
}

void lr__api_addr_release(struct lr__api_addr *a)
{
    if (a->dirfd >= 0)
        close(a->dirfd);
    a->dirfd = -1;
}

/* ---- helpers ---- */

char *lr__api_one_line(const char *msg)
{
    char *s = lr_utf8_lossy(msg, strlen(msg));
    for (char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == 0x7f)
            *p = ' ';
    }
    return s;
}

/* Serialise `o` compactly with a trailing newline; NULL if jansson refuses. */
static char *dump_line(json_t *o, size_t *len)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *line = lr_xrealloc(s, n + 2);
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

static json_t *id_value(bool has_id, long long id)
{
    return has_id ? json_integer((json_int_t)id) : json_null();
}

char *lr__api_encode_request(long long id, const char *method, json_t *params, size_t *len)
{
    *len = 0;
    if (!method || !json_is_object(params))
        return NULL;
    json_t *m = json_string(method);
    if (!m)
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)id));
    json_object_set_new(o, "method", m);
    json_object_set(o, "params", params);
    char *line = dump_line(o, len);
    json_decref(o);
    return line;
}

char *lr__api_encode_result(bool has_id, long long id, json_t *result, size_t *len)
{
    *len = 0;
    if (!json_is_object(result))
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "id", id_value(has_id, id));
    json_object_set(o, "result", result);
    char *line = dump_line(o, len);
    json_decref(o);
    return line;
}

char *lr__api_encode_error(bool has_id, long long id, const char *code, int exit_code,
                           const char *message, size_t *len)
{
    *len = 0;
    char *msg = lr__api_one_line(message);
    char *cd = lr__api_one_line(code);
    json_t *e = json_object();
    json_object_set_new(e, "code", json_string(cd));
    json_object_set_new(e, "message", json_string(msg));
    json_object_set_new(e, "exit", json_integer(exit_code));
    free(msg);
    free(cd);
    json_t *o = json_object();
    json_object_set_new(o, "id", id_value(has_id, id));
    json_object_set_new(o, "error", e);
    char *line = dump_line(o, len);
    json_decref(o);
    return line;
}

char *lr__api_encode_event(long long id, const char *ev_json, size_t ev_len, size_t *len)
{
    char pre[64];
    int n = snprintf(pre, sizeof(pre), "{\"id\":%lld,\"event\":", id);
    size_t pl = (size_t)n;
    size_t total = pl + ev_len + 2; /* "}\n" */
    char *line = lr_xmalloc(total + 1);
    memcpy(line, pre, pl);
    memcpy(line + pl, ev_json, ev_len);
    memcpy(line + pl + ev_len, "}\n", 3);
    *len = total;
    return line;
}

/* ---- decoding ---- */

static bool method_name_ok(const char *m, size_t n)
{
    if (n == 0 || n > LR_API_METHOD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = m[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
                  ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

static json_t *load_line(const char *line, size_t len, struct lr_err *err, int *rc)
{
    json_error_t je;
    /* Top level must be an object or array (no JSON_DECODE_ANY); trailing
     * garbage is rejected; duplicate keys are ambiguous, so refused. */
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        *rc = lr_err_set(err, LR_EPROTO, "invalid JSON at byte %d: %s", je.position, je.text);
    return root;
}

int lr_api_request_decode(const char *line, size_t len, struct lr_api_request *out,
                          const char **code, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    *code = LR_API_E_BAD_REQUEST;
    if (len > LR_API_LINE_MAX) {
        *code = LR_API_E_TOO_LARGE;
        return lr_err_set(err, LR_ETOOBIG, "request line of %zu bytes is over the limit of %zu",
                          len, LR_API_LINE_MAX);
    }
    int rc = LR_EPROTO;
    json_t *root = load_line(line, len, err, &rc);
    if (!root) {
        *code = LR_API_E_PARSE;
        return rc;
    }
    if (!json_is_object(root)) {
        rc = lr_err_set(err, LR_EPROTO, "request is not a JSON object");
        goto out;
    }
    json_t *id = json_object_get(root, "id");
    if (!json_is_integer(id)) {
        rc = lr_err_set(err, LR_EPROTO, "request \"id\" is %s, not an integer",
                        id ? "of the wrong type" : "missing");
        goto out;
    }
    out->has_id = true;
    out->id = (long long)json_integer_value(id);

    json_t *m = json_object_get(root, "method");
    if (!json_is_string(m)) {
        rc = lr_err_set(err, LR_EPROTO, "request \"method\" is %s, not a string",
                        m ? "of the wrong type" : "missing");
        goto out;
    }
    const char *ms = json_string_value(m);
    size_t ml = json_string_length(m);
    if (!method_name_ok(ms, ml)) {
        rc = lr_err_set(err, LR_EPROTO,
                        "request \"method\" must be 1-%d characters of [a-z0-9_.-] (got %zu bytes)",
                        LR_API_METHOD_MAX, ml);
        goto out;
    }

    json_t *p = json_object_get(root, "params");
    if (!p || json_is_null(p)) {
        p = json_object();
        json_object_set_new(root, "params", p);
    } else if (!json_is_object(p)) {
        rc = lr_err_set(err, LR_EPROTO, "request \"params\" of method %s is not an object", ms);
        goto out;
    }
    out->method = ms;
    out->params = p;
    out->root = root;
    *code = NULL;
    return 0;
out:
    json_decref(root);
    return rc;
}

void lr_api_request_release(struct lr_api_request *r)
{
    if (r->root)
        json_decref(r->root);
    memset(r, 0, sizeof(*r));
}

int lr_api_reply_decode(const char *line, size_t len, struct lr_api_reply *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (len > LR_API_CLIENT_LINE_MAX)
        return lr_err_set(err, LR_ETOOBIG, "reply line of %zu bytes is over the limit of %zu", len,
                          LR_API_CLIENT_LINE_MAX);
    int rc = LR_EPROTO;
    json_t *root = load_line(line, len, err, &rc);
    if (!root)
        return rc;
    if (!json_is_object(root)) {
        rc = lr_err_set(err, LR_EPROTO, "reply is not a JSON object");
        goto out;
    }
    json_t *id = json_object_get(root, "id");
    if (json_is_integer(id)) {
        out->has_id = true;
        out->id = (long long)json_integer_value(id);
    } else if (!json_is_null(id)) {
        rc = lr_err_set(err, LR_EPROTO, "reply \"id\" is %s", id ? "not an integer" : "missing");
        goto out;
    }
    json_t *res = json_object_get(root, "result");
    json_t *ev = json_object_get(root, "event");
    json_t *er = json_object_get(root, "error");
    if ((res != NULL) + (ev != NULL) + (er != NULL) != 1) {
        rc = lr_err_set(err, LR_EPROTO,
                        "reply must have exactly one of \"result\", \"event\", \"error\"");
        goto out;
    }
    if (res || ev) {
        json_t *body = res ? res : ev;
        if (!json_is_object(body)) {
            rc = lr_err_set(err, LR_EPROTO, "reply \"%s\" is not an object",
                            res ? "result" : "event");
            goto out;
        }
        if (!out->has_id) {
            rc = lr_err_set(err, LR_EPROTO, "reply \"%s\" has a null id", res ? "result" : "event");
            goto out;
        }
        out->kind = res ? LR_API_RESULT : LR_API_EVENT;
        out->body = body;
    } else {
        if (!json_is_object(er)) {
            rc = lr_err_set(err, LR_EPROTO, "reply \"error\" is not an object");
            goto out;
        }
        json_t *c = json_object_get(er, "code");
        json_t *m = json_object_get(er, "message");
        json_t *x = json_object_get(er, "exit");
        if (!json_is_string(c) || !json_is_string(m) || (x && !json_is_integer(x))) {
            rc = lr_err_set(
                err, LR_EPROTO,
                "reply \"error\" needs string \"code\" and \"message\", integer \"exit\"");
            goto out;
        }
        out->kind = LR_API_ERROR;
        out->body = er;
        out->code = json_string_value(c);
        out->message = json_string_value(m);
        json_int_t xv = x ? json_integer_value(x) : 1;
        /* A shell exit status is 0..255; 0 would claim success for an error. */
        out->exit_code = (xv >= 1 && xv <= 255) ? (int)xv : 1;
    }
    out->root = root;
    return 0;
out:
    json_decref(root);
    out->has_id = false;
    out->id = 0;
    return rc;
}

void lr_api_reply_release(struct lr_api_reply *r)
{
    if (r->root)
        json_decref(r->root);
    memset(r, 0, sizeof(*r));
}
