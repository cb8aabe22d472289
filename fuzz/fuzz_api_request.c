/*
 * fuzz_api_request.c - control API line decoding on arbitrary bytes.
 *
 * The input is one line as the server would cut it. Invariants:
 *  - lr_api_request_decode never crashes; on success the method is a valid
 *    name, params an object, and re-encoding then decoding gives the same
 *    id, method and params; on failure it names an error code and a message,
 *    and the error reply built from them (what the server sends back) is a
 *    single valid line that decodes to the same code and id.
 *  - lr_api_reply_decode (the client's side) never crashes, and what it
 *    accepts is self-consistent.
 */
#include "api/api.h"
#include "api/api_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_request(const char *line, size_t n)
{
    struct lr_api_request r;
    const char *code = NULL;
    struct lr_err err = {0};
    int rc = lr_api_request_decode(line, n, &r, &code, &err);
    if (rc == 0) {
        if (code || !r.root || !r.has_id || !json_is_object(r.params))
            abort();
        size_t ml = strlen(r.method);
        if (ml == 0 || ml > LR_API_METHOD_MAX ||
            strspn(r.method, "abcdefghijklmnopqrstuvwxyz"
                             "0123456789_.-") != ml)
            abort();
        size_t len;
        char *again = lr__api_encode_request(r.id, r.method, r.params, &len);
        if (!again || again[len - 1] != '\n' || memchr(again, '\n', len - 1))
            abort();
        struct lr_api_request r2;
        if (lr_api_request_decode(again, len - 1, &r2, &code, NULL) != 0)
            abort();
        if (r2.id != r.id || strcmp(r2.method, r.method) != 0 || !json_equal(r2.params, r.params))
            abort();
        lr_api_request_release(&r2);
        free(again);
        lr_api_request_release(&r);
        return;
    }
    if (rc != LR_EPROTO && rc != LR_ETOOBIG)
        abort();
    if (!code || r.root || err.msg[0] == '\0')
        abort();
    size_t len;
    char *line2 = lr__api_encode_error(r.has_id, r.id, code, 1, err.msg, &len);
    if (!line2 || line2[len - 1] != '\n' || memchr(line2, '\n', len - 1))
        abort();
    struct lr_api_reply rep;
    if (lr_api_reply_decode(line2, len - 1, &rep, NULL) != 0)
        abort();
    if (rep.kind != LR_API_ERROR || strcmp(rep.code, code) != 0 || rep.has_id != r.has_id ||
        (r.has_id && rep.id != r.id) || rep.exit_code != 1)
        abort();
    lr_api_reply_release(&rep);
    free(line2);
}

static void check_reply(const char *line, size_t n)
{
    struct lr_api_reply rep;
    if (lr_api_reply_decode(line, n, &rep, NULL) != 0) {
        if (rep.root)
            abort();
        return;
    }
    if (!rep.root || !json_is_object(rep.body))
        abort();
    if (rep.kind == LR_API_ERROR) {
        if (!rep.code || !rep.message || rep.exit_code < 1 || rep.exit_code > 255)
            abort();
    } else if (!rep.has_id) {
        abort();
    }
    lr_api_reply_release(&rep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > LR_API_LINE_MAX + 16)
        return 0;
    check_request((const char *)data, size);
    check_reply((const char *)data, size);
    return 0;
}
