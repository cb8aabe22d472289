/*
 * code.h - the one-time pairing code shown by `pair --code` and typed into
 * `pair --join CODE`.
 *
 * Text form: ten decimal digits shown as "NNN-SSS-SSSC":
 *  - NNN    the nameplate (000..999). Public: the code holder announces it
 *           on the LAN so the joiner can find the right device. Not secret.
 *  - SSSSSS the secret (000000..999999, log2(10^6) = 19.9 bits): the CPace
 *           password (see cpace.h). One online guess succeeds with
 *           probability 1e-6 (below the 1/65536 the design asks for).
 *  - C      a Luhn check digit over the nine digits before it, so a typo
 *           (any single wrong digit, most swaps of neighbours) is caught
 *           locally instead of burning the code on a wrong guess. It is
 *           never sent on the wire.
 * Parsing ignores spaces, '-', '.', '_' and ',' anywhere, maps the
 * look-alikes O/o to 0 and I/i/l/L to 1, and then wants exactly ten digits
 * with a correct check digit; anything else is LR_EUSAGE with a message
 * saying what is wrong (the string comes from the user's keyboard).
 *
 * State rules (the code holder's side): a code is usable for 5 minutes
 * after it was made and for one attempt only. lr_pair_code_claim() takes
 * the code for one pairing session as soon as the session is about to
 * answer a CPace message, so a second session can never get a second
 * guess; lr_pair_code_finish() then marks it used (success) or failed.
 * A claimed code that is never finished (peer vanished) stays unusable.
 * Times are caller-supplied milliseconds of a monotonic clock
 * (uv_now() or CLOCK_MONOTONIC), so the rules are testable.
 *
 * struct lr_pair_code owns no memory; lr_pair_code_wipe() zeroes it (the
 * secret) when it is no longer needed. Functions are pure apart from the
 * randomness of lr_pair_code_new() (libsodium randombytes, thread-safe);
 * a struct belongs to one thread at a time.
 */
#ifndef LR_PAIR_CODE_H
#define LR_PAIR_CODE_H

#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_PAIR_NAMEPLATE_MAX 999u
#define LR_PAIR_SECRET_MAX 999999u
#define LR_PAIR_NAMEPLATE_DIGITS 3
#define LR_PAIR_SECRET_DIGITS 6
/* "NNN-SSS-SSSC" */
#define LR_PAIR_CODE_STRLEN 12
/* longest input lr_pair_code_parse looks at (separators included) */
#define LR_PAIR_CODE_INPUT_MAX 64
/* lifetime of a code */
#define LR_PAIR_CODE_TTL_MS (5u * 60u * 1000u)

struct lr_pair_code {
    uint16_t nameplate;  /* 0..999, public */
    uint32_t secret;     /* 0..999999, the password */
    uint64_t created_ms; /* monotonic ms when made (0 for a parsed code) */
    bool claimed;        /* a session is using (or used) the one attempt */
    bool failed;         /* the attempt failed: wrong secret or aborted */
    bool used;           /* the attempt succeeded: a code pairs once */
};

/*
 * Make a fresh code with uniformly random nameplate and secret, created at
 * now_ms. Returns 0, or LR_EINTERNAL if libsodium cannot initialise.
 */
int lr_pair_code_new(struct lr_pair_code *c, uint64_t now_ms, struct lr_err *err);

/* Text form "NNN-SSS-SSSC" into out[LR_PAIR_CODE_STRLEN + 1]. */
void lr_pair_code_format(const struct lr_pair_code *c, char *out);

/*
 * Parse what the user typed (NUL-terminated, borrowed). On success *c holds
 * nameplate and secret with created_ms 0 and no flags (the joiner's side
 * does not track expiry: the holder enforces it). *c is zeroed first.
 * LR_EUSAGE for: empty input, input over LR_PAIR_CODE_INPUT_MAX bytes, a
 * character that is neither a digit, a look-alike nor a separator (named
 * with its position), a digit count other than ten, a wrong check digit.
 */
int lr_pair_code_parse(const char *s, struct lr_pair_code *c, struct lr_err *err);

/*
 * May the holder still accept an attempt with this code at now_ms?
 * 0 if yes; LR_ETIMEOUT if 5 minutes have passed (or the clock went
 * backwards: fail closed); LR_EVERIFY if it failed once, was used, or is
 * claimed by another session. err says which in words.
 */
int lr_pair_code_check(const struct lr_pair_code *c, uint64_t now_ms, struct lr_err *err);

/* lr_pair_code_check(), and on success take the one attempt (claimed). */
int lr_pair_code_claim(struct lr_pair_code *c, uint64_t now_ms, struct lr_err *err);

/* End the claimed attempt: used if ok, else failed. The code is dead either way. */
void lr_pair_code_finish(struct lr_pair_code *c, bool ok);

/* The password for CPace: the six secret digits as ASCII into out[6]. */
void lr_pair_code_secret_str(const struct lr_pair_code *c, char out[LR_PAIR_SECRET_DIGITS]);

/* The nameplate as three ASCII digits into out[4] (with NUL). */
void lr_pair_nameplate_format(uint16_t nameplate, char out[LR_PAIR_NAMEPLATE_DIGITS + 1]);

/* Zero the struct (the secret) in a way the compiler keeps. */
void lr_pair_code_wipe(struct lr_pair_code *c);

/* Luhn check digit (0..9) of n ASCII digits; exposed for tests. */
int lr__pair_luhn_digit(const char *digits, size_t n);

#endif
