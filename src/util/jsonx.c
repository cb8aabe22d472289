#include "util/jsonx.h"

#include "util/str.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

json_t *lr_json_lossy(const void *p, size_t n)
{
    if (lr_utf8_valid(p, n) && !memchr(p, 0, n))
        return json_stringn(p, n);
    char *s = lr_utf8_lossy(p, n);
    json_t *j = json_string(s);
    free(s);
    return j;
}

void lr_json_set_path(json_t *obj, const char *key, const void *p, size_t n)
{
    json_object_set_new(obj, key, lr_json_lossy(p, n));
    if (!lr_utf8_valid(p, n) || memchr(p, 0, n)) {
        char *b64 = lr_base64(p, n);
        char *k = lr_xasprintf("%s_b64", key);
        json_object_set_new(obj, k, json_string(b64));
        free(k);
        free(b64);
    }
}
