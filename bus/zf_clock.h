/*  zf_clock.h — the two clocks zfly uses.

    Monotonic milliseconds for deadlines, timeouts and rates (never jumps with the wall clock);
    wall-clock milliseconds since the epoch for timestamps that leave the process (taps,
    metadata, logs). */
#ifndef ZF_CLOCK_H_INCLUDED
#define ZF_CLOCK_H_INCLUDED

#include <stdint.h>

int64_t zf_clock_mono_ms (void);
int64_t zf_clock_mono_us (void);
int64_t zf_clock_wall_ms (void);

#endif
