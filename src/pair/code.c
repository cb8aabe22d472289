/* code.c - the one-time pairing code: make, format, parse, state rules. */
#include "pair/code.h"

#include <assert.h>
#include <sodium.h>
#include <string.h>

#define CODE_DIGITS (LR_PAIR_NAMEPLATE_DIGITS + LR_PAIR_SECRET_DIGITS + 1)

int lr__pair_luhn_digit(const char *digits, size_t n)
{
    unsigned sum = 0;
    /* The check digit will sit right of digits[n-1], so the rightmost payload
     * digit is the first to be doubled. */
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(digits[n - 1 - i] - '0');
        if (i % 2 == 0) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return (int)((10 - sum % 10) % 10);
}

int lr_pair_code_new(struct lr_pair_code *c, uint64_t now_ms, struct lr_err *err)
{
    memset(c, 0, sizeof(*c));
    if (sodium_init() < 0)
        return lr_err_set(err, LR_EINTERNAL, "pairing code: libsodium failed to initialise");
    /* randombytes_uniform is unbiased (rejection sampling). */
    c->nameplate = (uint16_t)randombytes_uniform(LR_PAIR_NAMEPLATE_MAX + 1);
    c->secret = randombytes_uniform(LR_PAIR_SECRET_MAX + 1);
    c->created_ms = now_ms;
    return 0;
}

/* The nine payload digits (nameplate then secret) into out[9]. */
static void payload_digits(const struct lr_pair_code *c, char *out)
{
    uint32_t np = c->nameplate, s = c->secret;
    assert(np <= LR_PAIR_NAMEPLATE_MAX && s <= LR_PAIR_SECRET_MAX);
    for (int i = LR_PAIR_NAMEPLATE_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + np % 10);
        np /= 10;
    }
    for (int i = LR_PAIR_SECRET_DIGITS - 1; i >= 0; i--) {
        out[LR_PAIR_NAMEPLATE_DIGITS + i] = (char)('0' + s % 10);
        s /= 10;
    }
}

void lr_pair_code_format(const struct lr_pair_code *c, char *out)
{
    char d[CODE_DIGITS];
    payload_digits(c, d);
    d[CODE_DIGITS - 1] = (char)('0' + lr__pair_luhn_digit(d, CODE_DIGITS - 1));
    /* NNN-SSS-SSSC */
    memcpy(out, d, 3);
    out[3] = '-';
    memcpy(out + 4, d + 3, 3);
    out[7] = '-';
    memcpy(out + 8, d + 6, 4);
    out[LR_PAIR_CODE_STRLEN] = '\0';
    sodium_memzero(d, sizeof(d));
}

static bool is_separator(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '-' || ch == '.' || ch == '_' || ch == ',';
}

/* Digit value of a digit or look-alike letter, else -1. */
static int digit_of(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch == 'O' || ch == 'o')
        return 0;
    if (ch == 'I' || ch == 'i' || ch == 'l' || ch == 'L')
        return 1;
    return -1;
}

int lr_pair_code_parse(const char *s, struct lr_pair_code *c, struct lr_err *err)
{
    char d[CODE_DIGITS];
    size_t nd = 0, len;
    int rc = LR_EUSAGE;
    memset(c, 0, sizeof(*c));

    len = strnlen(s, LR_PAIR_CODE_INPUT_MAX + 1);
    if (len > LR_PAIR_CODE_INPUT_MAX)
        return lr_err_set(err, LR_EUSAGE, "pairing code: too long (a code is %d digits)",
                          CODE_DIGITS);
    for (size_t i = 0; i < len; i++) {
        if (is_separator(s[i]))
            continue;
        int v = digit_of(s[i]);
        if (v < 0) {
            unsigned char ch = (unsigned char)s[i];
            if (ch >= 0x21 && ch < 0x7f)
                rc = lr_err_set(err, LR_EUSAGE,
                                "pairing code: unexpected character '%c' at position %zu "
                                "(a code is digits like 123-456-7890)",
                                (char)ch, i + 1);
            else
                rc = lr_err_set(err, LR_EUSAGE,
                                "pairing code: unexpected byte 0x%02x at position %zu "
                                "(a code is digits like 123-456-7890)",
                                ch, i + 1);
            goto out;
        }
        if (nd == CODE_DIGITS) {
            nd++; /* too many: counted below, no need to keep them */
            break;
        }
        d[nd++] = (char)('0' + v);
    }
    if (nd == 0) {
        rc = lr_err_set(err, LR_EUSAGE, "pairing code: empty");
        goto out;
    }
    if (nd != CODE_DIGITS) {
        rc = lr_err_set(err, LR_EUSAGE, "pairing code: %s digits, expected %d",
                        nd > CODE_DIGITS ? "too many" : "too few", CODE_DIGITS);
        goto out;
    }
    if (lr__pair_luhn_digit(d, CODE_DIGITS - 1) != d[CODE_DIGITS - 1] - '0') {
        rc = lr_err_set(err, LR_EUSAGE,
                        "pairing code: check digit does not match (a digit is mistyped)");
        goto out;
    }
    uint32_t np = 0, sec = 0;
    for (int i = 0; i < LR_PAIR_NAMEPLATE_DIGITS; i++)
        np = np * 10 + (uint32_t)(d[i] - '0');
    for (int i = 0; i < LR_PAIR_SECRET_DIGITS; i++)
        sec = sec * 10 + (uint32_t)(d[LR_PAIR_NAMEPLATE_DIGITS + i] - '0');
    c->nameplate = (uint16_t)np;
    c->secret = sec;
    rc = 0;
out:
    sodium_memzero(d, sizeof(d));
    return rc;
}

int lr_pair_code_check(const struct lr_pair_code *c, uint64_t now_ms, struct lr_err *err)
{
    if (c->used)
        return lr_err_set(err, LR_EVERIFY, "pairing code %03u was already used",
                          (unsigned)c->nameplate);
    if (c->failed)
        return lr_err_set(err, LR_EVERIFY,
                          "pairing code %03u is void after a failed attempt; make a new one",
                          (unsigned)c->nameplate);
    if (c->claimed)
        return lr_err_set(err, LR_EVERIFY, "pairing code %03u is in use by another attempt",
                          (unsigned)c->nameplate);
    if (now_ms < c->created_ms || now_ms - c->created_ms >= LR_PAIR_CODE_TTL_MS)
        return lr_err_set(err, LR_ETIMEOUT,
                          "pairing code %03u expired (codes last %u minutes); make a new one",
                          (unsigned)c->nameplate, LR_PAIR_CODE_TTL_MS / 60000u);
    return 0;
}

int lr_pair_code_claim(struct lr_pair_code *c, uint64_t now_ms, struct lr_err *err)
{
    int rc = lr_pair_code_check(c, now_ms, err);
    if (rc == 0)
        c->claimed = true;
    return rc;
}

void lr_pair_code_finish(struct lr_pair_code *c, bool ok)
{
    c->claimed = true;
    if (ok)
        c->used = true;
    else
        c->failed = true;
}

void lr_pair_code_secret_str(const struct lr_pair_code *c, char out[LR_PAIR_SECRET_DIGITS])
{
    uint32_t s = c->secret;
    for (int i = LR_PAIR_SECRET_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + s % 10);
        s /= 10;
    }
}

void lr_pair_nameplate_format(uint16_t nameplate, char out[LR_PAIR_NAMEPLATE_DIGITS + 1])
{
    unsigned np = nameplate % (LR_PAIR_NAMEPLATE_MAX + 1);
    for (int i = LR_PAIR_NAMEPLATE_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + np % 10);
        np /= 10;
    }
    out[LR_PAIR_NAMEPLATE_DIGITS] = '\0';
}

void lr_pair_code_wipe(struct lr_pair_code *c)
{
    sodium_memzero(c, sizeof(*c));
}
