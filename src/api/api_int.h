/*
 * api_int.h - shared internals of src/api/ (server.c, client.c, codec.c).
 * Not for use outside the module.
 */
#ifndef LR_API_API_INT_H
#define LR_API_API_INT_H

#include "api/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/*
 * The socket address of HOME/control.sock. `dirfd` is an O_PATH directory
 * descriptor of the home (owned; close it with lr__api_addr_release()).
 * `sa` holds the direct path when it fits in sun_path, else
 * /proc/self/fd/<dirfd>/control.sock, which the kernel resolves through the
 * descriptor, so homes of any length work.
 */
struct lr__api_addr {
    int dirfd;
    struct sockaddr_un sa;
    socklen_t len;
    bool via_proc;
};

/* Errors: -errno from opening the home (err names it). */
int lr__api_addr_init(struct lr__api_addr *a, const char *home, struct lr_err *err);
void lr__api_addr_release(struct lr__api_addr *a);

/*
 * Encoders: each returns a heap line ending in '\n' (caller frees) and its
 * length in *len, or NULL if the value cannot be serialised (a json_t that
 * is not an object). Borrowed arguments only.
 */
char *lr__api_encode_request(long long id, const char *method, json_t *params, size_t *len);
char *lr__api_encode_result(bool has_id, long long id, json_t *result, size_t *len);
char *lr__api_encode_error(bool has_id, long long id, const char *code, int exit_code,
                           const char *message, size_t *len);
/* `ev_json` is an already serialised object (compact, no newline). */
char *lr__api_encode_event(long long id, const char *ev_json, size_t ev_len, size_t *len);

/* Copy of a message for the wire: valid UTF-8, one line (CR/LF/TAB -> space). */
char *lr__api_one_line(const char *msg);

#endif
