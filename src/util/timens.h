/*
 * timens.h - file times as signed 64-bit nanoseconds since the epoch.
 *
 * The index, the protocol and conflict names keep times as int64 ns, which
 * spans 1677-09-21 to 2262-04-11. A file system can hold times outside that
 * (ext4 up to 2446, `touch -d 2300-01-01` works), so conversion saturates:
 * such a time becomes the nearest end of the range instead of overflowing
 * (undefined behaviour, and a wrapped value that ext4 then clamped to 1901
 * on the receiving device, whose scan sent it back as a change). A file
 * dated after 2262 keeps its date on disk where it was made; peers get
 * 2262-04-11T23:47:16.854775807Z, which converts back to the same value, so
 * nothing is taken for a change on either side. Pure functions.
 */
#ifndef LR_UTIL_TIMENS_H
#define LR_UTIL_TIMENS_H

#include <stdint.h>
#include <time.h>

/* t as ns, saturated to [INT64_MIN, INT64_MAX]; t->tv_nsec must be in [0, 1e9). */
int64_t lr_timespec_ns(const struct timespec *t);
/* ns as a timespec (floor division: tv_nsec in [0, 1e9) for negative times too). */
struct timespec lr_ns_timespec(int64_t ns);

#endif
