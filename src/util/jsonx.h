/*
 * jsonx.h - JSON helpers shared by the CLI and the daemon.
 *
 * The CLI contract says: paths are UTF-8 strings; a name that is not valid
 * UTF-8 is given with U+FFFD in place of the bad bytes in `path`, plus
 * `path_b64` holding the raw bytes in base64. lr_json_set_path() does that
 * (jansson's json_string() would return NULL for such a name and the entry
 * would silently vanish).
 */
#ifndef LR_UTIL_JSONX_H
#define LR_UTIL_JSONX_H

#include <jansson.h>
#include <stddef.h>

/* Set obj[key] (and obj[key "_b64"] if needed) from raw bytes p[0..n). */
void lr_json_set_path(json_t *obj, const char *key, const void *p, size_t n);
/* A JSON string for arbitrary bytes: lossy UTF-8 (never NULL). */
json_t *lr_json_lossy(const void *p, size_t n);

#endif
