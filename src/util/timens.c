/* timens.c - see timens.h. */
#include "util/timens.h"

#define NS_PER_S 1000000000

int64_t lr_timespec_ns(const struct timespec *t)
{
    int64_t s = (int64_t)t->tv_sec;
    /* The largest and smallest whole seconds whose ns (plus tv_nsec) still fit. */
    if (s > (INT64_MAX - (NS_PER_S - 1)) / NS_PER_S) {
        if (s > INT64_MAX / NS_PER_S)
            return INT64_MAX;
        int64_t base = s * NS_PER_S;
        return t->tv_nsec > INT64_MAX - base ? INT64_MAX : base + t->tv_nsec;
    }
    if (s < INT64_MIN / NS_PER_S)
        return INT64_MIN;
    return s * NS_PER_S + t->tv_nsec;
}

struct timespec lr_ns_timespec(int64_t ns)
{
    int64_t s = ns / NS_PER_S, n = ns % NS_PER_S;
    if (n < 0) {
        n += NS_PER_S;
        s -= 1;
    }
    struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)n};
    return t;
}
