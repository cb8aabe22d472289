#include "util/str.h"

#include "util/buf.h"
#include "util/err.h"
#include "util/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t c = p[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1fu, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0fu, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

bool lr_utf8_valid(const void *vp, size_t n)
{
    const uint8_t *p = vp;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i, &cp);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

char *lr_utf8_lossy(const void *vp, size_t n)
{
    const uint8_t *p = vp;
    struct lr_buf b;
    lr_buf_init(&b, SIZE_MAX);
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i, &cp);
        if (!l || cp == 0) {
            lr_buf_put(&b, "\xef\xbf\xbd", 3);
            i += 1;
        } else {
            lr_buf_put(&b, p + i, l);
            i += l;
        }
    }
    lr_buf_put_u8(&b, 0);
    return (char *)lr_buf_detach(&b, NULL);
}

static bool is_format_control(uint32_t cp)
{
    /* bidi embeddings/overrides/isolates, zero-width and line/para separators */
    return (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff || cp == 0x061c;
}

static char *esc(const void *vp, size_t n, bool backslash);

char *lr_esc(const void *vp, size_t n)
{
    return esc(vp, n, true);
}

char *lr_esc_cut(char *e, size_t max)
{
    assert(max >= 4);
    if (strlen(e) <= max)
        return e;
    size_t cut = max - 3;
    while (cut > 0 && ((uint8_t)e[cut] & 0xc0) == 0x80)
        cut--; /* not inside a UTF-8 sequence */
    memcpy(e + cut, "...", 4);
    return e;
}

char *lr_escs_short(const char *s)
{
    return lr_esc_cut(lr_escs(s), LR_ESC_SHORT_MAX);
}

char *lr_esc_msg(const char *s)
{
    return esc(s, strlen(s), false);
}

static char *esc(const void *vp, size_t n, bool backslash)
{
    const uint8_t *p = vp;
    struct lr_buf b;
    lr_buf_init(&b, SIZE_MAX);
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i, &cp);
        if (!l) {
            lr_buf_printf(&b, "\\x%02x", p[i]);
            i++;
            continue;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
            lr_buf_printf(&b, "\\x%02x", cp);
        } else if (cp == '\\' && backslash) {
            lr_buf_put(&b, "\\\\", 2);
        } else if (is_format_control(cp)) {
            lr_buf_printf(&b, "\\u{%04x}", cp);
        } else {
            lr_buf_put(&b, p + i, l);
        }
        i += l;
    }
    lr_buf_put_u8(&b, 0);
    return (char *)lr_buf_detach(&b, NULL);
}

char *lr_escs(const char *s)
{
    return lr_esc(s, strlen(s));
}

char *lr_base64(const void *vp, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *p = vp;
    char *out = lr_xmalloc((n + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

uint8_t *lr_unbase64(const char *s, size_t *n)
{
    size_t len = strlen(s);
    *n = 0;
    if (len % 4)
        return NULL;
    uint8_t *out = lr_xmalloc(len / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        size_t pad = 0;
        for (size_t k = 0; k < 4; k++) {
            if (s[i + k] == '=' && last && k >= 2 && (k == 3 || s[i + 3] == '=')) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad || (v[k] = b64_val(s[i + k])) < 0) {
                free(out);
                return NULL;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    out[o] = 0;
    *n = o;
    return out;
}

void lr_hex(const void *vp, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = vp;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int lr_unhex(const char *s, void *vout, size_t n)
{
    uint8_t *out = vout;
    if (strlen(s) != 2 * n)
        return LR_EBADVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return LR_EBADVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
