#include "util/log.h"

#include "util/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* Process-wide by nature: there is one log per process, configured once at start. */
static FILE *g_sink;
static enum lr_log_level g_level = LR_LOG_INFO;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

void lr_log_set_sink(FILE *f)
{
    pthread_mutex_lock(&g_mu);
    g_sink = f;
    pthread_mutex_unlock(&g_mu);
}

void lr_log_set_level(enum lr_log_level lvl)
{
    g_level = lvl;
}

enum lr_log_level lr_log_get_level(void)
{
    return g_level;
}

int lr_log_parse_level(const char *s, enum lr_log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum lr_log_level)i;
            return 0;
        }
    }
    return LR_EUSAGE;
}

void lr_log_write(enum lr_log_level lvl, const char *module, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    pthread_mutex_lock(&g_mu);
    FILE *f = g_sink ? g_sink : stderr;
    fprintf(f, "%s.%03ldZ %-5s %s: %s\n", when, ts.tv_nsec / 1000000L,
            level_names[lvl <= LR_LOG_TRACE ? lvl : LR_LOG_TRACE], module, msg);
    fflush(f);
    pthread_mutex_unlock(&g_mu);
}
