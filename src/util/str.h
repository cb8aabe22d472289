/*
 * str.h - string helpers for untrusted names: UTF-8 validation, escaping
 * for terminals and logs, base64, hex.
 *
 * All returned strings are heap-allocated and owned by the caller (free()).
 */
#ifndef LR_UTIL_STR_H
#define LR_UTIL_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if p[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool lr_utf8_valid(const void *p, size_t n);

/*
 * Copy of p[0..n) with each invalid UTF-8 sequence replaced by U+FFFD.
 * Valid input is returned unchanged (NUL bytes become U+FFFD too, so the
 * result is a proper C string).
 */
char *lr_utf8_lossy(const void *p, size_t n);

/*
 * Escape for human output (terminal or log line): control characters
 * (C0, DEL, C1), backslash, and Unicode bidi/format controls become \xNN or
 * \u{NNNN}; invalid UTF-8 bytes become \xNN. Printable UTF-8 passes through.
 */
char *lr_esc(const void *p, size_t n);
/* lr_esc of a NUL-terminated string. */
char *lr_escs(const char *s);
/* lr_escs cut to at most LR_ESC_SHORT_MAX bytes ("..." at the end when
 * cut): for quoting a user's value in a one-line error, whose buffer is
 * LR_ERR_MSG_MAX bytes, so that the reason after it survives. */
#define LR_ESC_SHORT_MAX 80
char *lr_escs_short(const char *s);
/* Cuts the escaped string e in place to at most max (>= 4) bytes, ending
 * in "..." when cut, never inside a UTF-8 sequence. Returns e. */
char *lr_esc_cut(char *e, size_t max);
/*
 * For a message that names its values escaped already (lr_escs) but may
 * also quote raw text (an OS error naming a path): as lr_escs, except that
 * backslashes pass through, so the names are not escaped twice.
 */
char *lr_esc_msg(const char *s);

/* Standard base64 with padding. */
char *lr_base64(const void *p, size_t n);
/* Decode what lr_base64 makes (padding required, nothing else accepted): a
 * NUL-terminated copy of the bytes (the caller frees it) with their count in
 * *n, or NULL if s is not such base64. */
uint8_t *lr_unbase64(const char *s, size_t *n);

/* Lower-case hex of n bytes into out (2n+1 bytes incl. NUL). */
void lr_hex(const void *p, size_t n, char *out);
/* Parse exactly 2n hex digits into out; 0 or LR_EBADVAL. */
int lr_unhex(const char *s, void *out, size_t n);

#endif
