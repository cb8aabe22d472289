/*
 * api.h - the local control API: a Unix stream socket HOME/control.sock
 * carrying newline-delimited JSON (docs/api.md is the normative text; it is
 * written so that a client can be implemented from it alone).
 *
 * Three halves, one contract:
 *  - server (server.c): runs on the daemon's libuv loop thread and never
 *    blocks. The daemon supplies one handler that receives every well-formed
 *    request and answers it, synchronously or later, with exactly one of
 *    lr_api_reply() / lr_api_reply_error() / lr_api_reply_rc(), or turns it
 *    into an event stream with lr_api_req_stream().
 *  - client (client.c): plain blocking code for the CLI (no libuv). One call
 *    at a time per client.
 *  - codec (codec.c): pure line <-> message functions, fuzzed.
 *
 * Wire format, in short: one JSON object per line, UTF-8.
 *   request  {"id": <int>, "method": "<name>", "params": {...}}
 *   reply    {"id": <int>, "result": {...}}
 *          | {"id": <int|null>, "error": {"code": "<str>", "message": "<str>", "exit": <int>}}
 *   stream   {"id": <int>, "result": {"stream": true}} once, then
 *            {"id": <int>, "event": {...}} lines until the client disconnects;
 *            {"type": "dropped", "count": K} events stand for K events lost
 *            because the client read too slowly.
 *
 * Limits (all memory per connection is bounded):
 *   LR_API_LINE_MAX        request line (longer: error "too_large", then close)
 *   LR_API_BAD_LINES_MAX   consecutive bad lines before the server closes
 *   LR_API_INFLIGHT_MAX    requests awaiting a reply; the server stops reading
 *                          the connection (backpressure) until one is answered
 *   LR_API_REPLY_QUEUE_MAX reply bytes queued for a client that does not read;
 *                          above it the connection is closed
 *   LR_API_EVENT_QUEUE_MAX / LR_API_EVENT_BYTES_MAX  queued events per
 *                          connection; beyond either, the oldest are dropped
 *   LR_API_STREAMS_MAX     streams per connection
 *   LR_API_CLIENTS_MAX     connections per server (more are closed at accept)
 *
 * Security: the socket is created mode 0600 inside the home (which the daemon
 * keeps 0700), and every accepted connection's SO_PEERCRED uid must be the
 * daemon's euid or root.
 *
 * Socket paths of any length work: when HOME/control.sock does not fit in
 * sun_path (108 bytes), both halves go through /proc/self/fd/<dirfd of HOME>.
 *
 * Threads: the server functions must be called on its loop's thread only.
 * A client object must not be used by two threads at once. The codec is
 * reentrant.
 */
#ifndef LR_API_API_H
#define LR_API_API_H

#include "util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define LR_API_SOCK_NAME "control.sock"
#define LR_API_LINE_MAX ((size_t)1 << 20)
#define LR_API_BAD_LINES_MAX 16
#define LR_API_INFLIGHT_MAX 64
#define LR_API_REPLY_QUEUE_MAX ((size_t)1 << 20)
#define LR_API_EVENT_QUEUE_MAX 1000
#define LR_API_EVENT_BYTES_MAX ((size_t)1 << 20)
#define LR_API_STREAMS_MAX 16
#define LR_API_CLIENTS_MAX 128
#define LR_API_METHOD_MAX 64
/* Largest reply line the client accepts (replies can be big listings). */
#define LR_API_CLIENT_LINE_MAX ((size_t)64 << 20)

/* Error codes (the "code" member of an error reply). */
#define LR_API_E_PARSE "parse_error"       /* the line is not valid JSON */
#define LR_API_E_BAD_REQUEST "bad_request" /* JSON, but not a valid request */
#define LR_API_E_TOO_LARGE "too_large"     /* line over LR_API_LINE_MAX */
#define LR_API_E_UNKNOWN_METHOD "unknown_method"
#define LR_API_E_INTERNAL "internal"

/* ==== Server ==== */

struct lr_api_server;
struct lr_api_req;

/*
 * Called on the loop thread for every well-formed request. `method` and
 * `params` (always an object) are borrowed for the duration of the call:
 * json_incref(params) to keep it. `req` is owned by the handler until it is
 * answered (lr_api_reply*, which free it) or turned into a stream. Every req
 * must be answered exactly once, even after its client went away or the
 * server was closed: such replies are discarded safely.
 */
typedef void (*lr_api_handler)(void *ud, struct lr_api_req *req, const char *method,
                               json_t *params);

/*
 * Create HOME/control.sock (mode 0600) and start accepting on `loop`.
 * `home_dir` is copied; `ud` is retained and passed to `h`. A stale socket
 * file (nobody listening) is replaced; the caller must hold the daemon lock
 * so that no other daemon of this home can be starting at the same time.
 * Errors: LR_EBUSY (something answers on the socket), LR_EEXISTS (a
 * non-socket file is in the way), -errno (opening the home, socket, bind,
 * listen), each with `err` naming the path. On failure nothing is left
 * behind and *out is NULL.
 */
int lr_api_server_start(uv_loop_t *loop, const char *home_dir, lr_api_handler h, void *ud,
                        struct lr_api_server **out, struct lr_err *err);

/*
 * Answer `req` with {"result": result}; `result` (an object) is stolen, and
 * NULL (a failed json_pack upstream) becomes an "internal" error reply. May
 * be called at any later time on the loop thread. Frees `req`.
 */
void lr_api_reply(struct lr_api_req *req, json_t *result);

/*
 * Answer `req` with an error. `code` is a short snake_case string (see
 * LR_API_E_*; the daemon may add its own), `exit_code` the CLI exit status
 * the client should use, and the formatted message one line naming the
 * culprit (newlines become spaces, invalid UTF-8 becomes U+FFFD). Frees `req`.
 */
void lr_api_reply_error(struct lr_api_req *req, const char *code, int exit_code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/*
 * Answer `req` with an error derived from a negative landropic code: the
 * code string is lr_errname(rc) in lower case, without "LR_E" for project
 * codes (LR_ENOTFOUND -> "notfound", -ENOENT -> "enoent"), the exit status is
 * lr_api_exit_for_rc(rc), the message lr_err_msg(err, rc). Frees `req`.
 */
void lr_api_reply_rc(struct lr_api_req *req, int rc, const struct lr_err *err);

/* CLI exit status for a code: 2 usage-type, 3 timeout, 4 no daemon, else 1 (0 for rc >= 0). */
int lr_api_exit_for_rc(int rc);

/*
 * Turn `req` into an event stream: the client gets {"result":{"stream":true}}
 * now and, from then on, every lr_api_server_broadcast() event. On success
 * (0) the req belongs to the server (do not answer it; it is freed when the
 * client disconnects or the server closes). Errors, after which the caller
 * still owns req and must answer it: LR_ECANCELED (the client is gone),
 * LR_EBUSY (LR_API_STREAMS_MAX streams already open on the connection).
 */
int lr_api_req_stream(struct lr_api_req *req);

/*
 * Call cb(req, ud) on the loop thread if the client disconnects while req is
 * still unanswered (a request that waits for something the client cares
 * about: a pairing code whose `pair --code` was interrupted must not stay
 * usable). req is still the handler's: cb may answer it (the answer is
 * dropped) or keep it to answer later. One callback per request.
 */
void lr_api_req_on_gone(struct lr_api_req *req, void (*cb)(struct lr_api_req *req, void *ud),
                        void *ud);

/* The request's id as sent by the client (for logging). */
long long lr_api_req_id(const struct lr_api_req *req);

/*
 * Queue `event` (an object, borrowed, serialised now) to every stream.
 * Never blocks; a stream that falls behind loses its oldest queued events,
 * replaced by one {"type":"dropped","count":K} marker.
 */
void lr_api_server_broadcast(struct lr_api_server *s, json_t *event);

struct lr_api_server_stats {
    size_t clients;  /* open connections */
    size_t streams;  /* open streams */
    size_t inflight; /* requests not yet answered, over all connections */
    unsigned long long accepted;
    unsigned long long events_dropped; /* total, over all streams */
    unsigned long long clients_kicked; /* closed for a limit (too_large, reply queue, bad lines) */
    size_t in_buf_peak;                /* largest input buffer any connection held */
    size_t event_queue_peak;           /* most events queued on one connection */
    size_t event_bytes_peak;           /* most event bytes queued on one connection */
    size_t reply_bytes_peak;           /* most reply bytes queued on one connection */
};
void lr_api_server_stats(const struct lr_api_server *s, struct lr_api_server_stats *st);

/*
 * Stop: remove the socket file, stop accepting, try once more to flush
 * pending output (without blocking), close every connection (outstanding
 * reqs are detached: their later replies are discarded), then call
 * done(ud) (may be NULL) from a close callback once all handles are closed
 * and the server is freed. `s` must not be used after this call.
 */
void lr_api_server_close(struct lr_api_server *s, void (*done)(void *), void *ud);

/* ==== Client ==== */

struct lr_api_client;

/*
 * Connect to the daemon of `home_dir` (copied). Errors: LR_ENODAEMON (no
 * socket file, nothing listening, or no such home), -errno otherwise.
 */
int lr_api_client_connect(const char *home_dir, struct lr_api_client **out, struct lr_err *err);

/*
 * Send one request and wait for its reply. `params` (an object or NULL) is
 * stolen. timeout_ms <= 0 waits forever. On success *result (caller
 * json_decref()s it) holds the reply's result object. Errors: LR_EAPI (the
 * daemon answered with an error: `err` holds its message;
 * lr_api_client_error_code()/_exit() its code and exit status), LR_ETIMEOUT
 * (a late reply is skipped by the next call), LR_ETOOBIG (request over
 * LR_API_LINE_MAX), LR_EPROTO (malformed reply), -ECONNRESET (the daemon
 * closed the connection), -errno.
 */
int lr_api_call(struct lr_api_client *c, const char *method, json_t *params, int timeout_ms,
                json_t **result, struct lr_err *err);

/*
 * lr_api_call() in two halves, for pipelining: lr_api_send() writes the
 * request (params stolen) and gives its id; lr_api_await() reads until that
 * id's reply, with lr_api_call()'s results. Replies to other ids read on the
 * way are dropped, so await ids in the order they were sent: the daemon
 * dispatches a connection's lines in order, and a request it answers at once
 * is answered before the next line is read.
 */
int lr_api_send(struct lr_api_client *c, const char *method, json_t *params, long long *id,
                struct lr_err *err);
int lr_api_await(struct lr_api_client *c, long long id, int timeout_ms, json_t **result,
                 struct lr_err *err);

/*
 * Start a stream with `method` (params stolen, may be NULL) and call
 * on_event(ud, ev) for each event (`ev` borrowed, valid during the call),
 * including "dropped" markers. Returns 0 when on_event returned > 0, the
 * value itself when on_event returned < 0, -ECONNRESET when the daemon
 * closed the stream, or an lr_api_call() error if the stream did not start.
 */
int lr_api_stream(struct lr_api_client *c, const char *method, json_t *params,
                  int (*on_event)(void *ud, json_t *ev), void *ud, struct lr_err *err);

/* After LR_EAPI: the reply's error code ("" if none) and exit status (1 if absent). */
const char *lr_api_client_error_code(const struct lr_api_client *c);
int lr_api_client_error_exit(const struct lr_api_client *c);

/* Close the connection and free `c`. NULL is a no-op. */
void lr_api_client_close(struct lr_api_client *c);

/* ==== Codec (pure; used by both halves, the fuzzer and tests) ==== */

/* A decoded request. `root` owns the rest; release with lr_api_request_release(). */
struct lr_api_request {
    bool has_id; /* also set on failure when the line carried a valid id */
    long long id;
    const char *method; /* points into root */
    json_t *params;     /* borrowed from root; always an object */
    json_t *root;
};

/*
 * Decode one request line (without its '\n'). On success returns 0 and fills
 * *out. On failure returns LR_EPROTO or LR_ETOOBIG, sets *code to the error
 * code string for the reply (LR_API_E_*; static storage), fills `err` with a
 * one-line message, and leaves out->root NULL (out->has_id/id are set if the
 * line had a usable id, so the error reply can echo it).
 */
int lr_api_request_decode(const char *line, size_t len, struct lr_api_request *out,
                          const char **code, struct lr_err *err);
void lr_api_request_release(struct lr_api_request *r);

enum lr_api_reply_kind { LR_API_RESULT, LR_API_ERROR, LR_API_EVENT };

/* A decoded server line. `root` owns the rest; release with lr_api_reply_release(). */
struct lr_api_reply {
    bool has_id; /* false: "id": null (a reply to an undecodable request) */
    long long id;
    enum lr_api_reply_kind kind;
    json_t *body;        /* result / event object, or the error object; borrowed */
    const char *code;    /* LR_API_ERROR only: never NULL */
    const char *message; /* LR_API_ERROR only: never NULL */
    int exit_code;       /* LR_API_ERROR only: 1 if absent */
    json_t *root;
};

/* Decode one server line. 0, or LR_EPROTO/LR_ETOOBIG with `err` set. */
int lr_api_reply_decode(const char *line, size_t len, struct lr_api_reply *out, struct lr_err *err);
void lr_api_reply_release(struct lr_api_reply *r);

#endif
