/*  zf_clock.c — monotonic and wall clocks in milliseconds. */
#include "zf_clock.h"
#include <time.h>

static int64_t s_read (clockid_t clock, int64_t divisor)
{
    struct timespec now;
    clock_gettime (clock, &now);
    return (int64_t) now.tv_sec * (1000000000 / divisor) + now.tv_nsec / divisor;
}

int64_t zf_clock_mono_ms (void)
{
    return s_read (CLOCK_MONOTONIC, 1000000);
}

int64_t zf_clock_mono_us (void)
{
    return s_read (CLOCK_MONOTONIC, 1000);
}

int64_t zf_clock_wall_ms (void)
{
    return s_read (CLOCK_REALTIME, 1000000);
}
