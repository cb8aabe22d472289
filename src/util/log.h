/*
 * log.h - one-line, levelled log records.
 *
 * Records go to one sink (a FILE*, stderr by default), each line:
 *   2026-11-25T13:37:11.123Z INFO  module: message key=value ...
 * The sink is process-wide state set once by the daemon's wiring (or the
 * CLI) before threads start; writes are serialised with a mutex so worker
 * threads may log. Never log keys or file contents. Names that come from a
 * peer or the disk must be passed through lr_esc() (util/str.h) first.
 */
#ifndef LR_UTIL_LOG_H
#define LR_UTIL_LOG_H

#include <stdio.h>

enum lr_log_level { LR_LOG_ERROR, LR_LOG_WARN, LR_LOG_INFO, LR_LOG_DEBUG, LR_LOG_TRACE };

/* Borrowed: `f` must stay open until lr_log_set_sink(NULL) or exit. NULL = stderr. */
void lr_log_set_sink(FILE *f);
void lr_log_set_level(enum lr_log_level lvl);
enum lr_log_level lr_log_get_level(void);
/* Parse "error|warn|info|debug|trace"; returns 0 or LR_EUSAGE. */
int lr_log_parse_level(const char *s, enum lr_log_level *out);

void lr_log_write(enum lr_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define lr_log_enabled(lvl) ((lvl) <= lr_log_get_level())
#define LR_LOG(lvl, mod, ...)                                                                      \
    do {                                                                                           \
        if (lr_log_enabled(lvl))                                                                   \
            lr_log_write(lvl, mod, __VA_ARGS__);                                                   \
    } while (0)
#define lr_error(mod, ...) LR_LOG(LR_LOG_ERROR, mod, __VA_ARGS__)
#define lr_warn(mod, ...) LR_LOG(LR_LOG_WARN, mod, __VA_ARGS__)
#define lr_info(mod, ...) LR_LOG(LR_LOG_INFO, mod, __VA_ARGS__)
#define lr_debug(mod, ...) LR_LOG(LR_LOG_DEBUG, mod, __VA_ARGS__)
#define lr_trace(mod, ...) LR_LOG(LR_LOG_TRACE, mod, __VA_ARGS__)

#endif
