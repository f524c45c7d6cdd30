/*  zf_log.h — one line per event, with levels.

    Format: "2026-11-27T03:21:05.123Z notice  echo: started bind=tcp://0.0.0.0:7001"
    The subsystem (an actor name, "bus", "zfly") comes first, then the event and key=value
    details. Warnings can be rate-limited per call site so a flood of bad input cannot flood
    the log. Never log secrets (tokens, keys, Authorization headers) at any level. */
#ifndef ZF_LOG_H_INCLUDED
#define ZF_LOG_H_INCLUDED

#include "zf_prelude.h"

typedef enum {
    ZF_LOG_ERROR = 0,
    ZF_LOG_WARNING,
    ZF_LOG_NOTICE,
    ZF_LOG_INFO,
    ZF_LOG_DEBUG,
} zf_log_level_t;

void zf_log_set_level (zf_log_level_t level);
zf_log_level_t zf_log_get_level (void);

//  Parses "error|warning|notice|info|debug"; returns -1 for anything else.
int zf_log_level_parse (const char *name);
const char *zf_log_level_name (zf_log_level_t level);

//  Sends log lines to this stream instead of stderr (tests); NULL restores stderr.
void zf_log_set_stream (FILE *stream);

void zf_log (zf_log_level_t level, const char *subsystem, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define zf_error_log(sub, ...) zf_log (ZF_LOG_ERROR, sub, __VA_ARGS__)
#define zf_warning(sub, ...)   zf_log (ZF_LOG_WARNING, sub, __VA_ARGS__)
#define zf_notice(sub, ...)    zf_log (ZF_LOG_NOTICE, sub, __VA_ARGS__)
#define zf_info(sub, ...)      zf_log (ZF_LOG_INFO, sub, __VA_ARGS__)
#define zf_debug(sub, ...)     zf_log (ZF_LOG_DEBUG, sub, __VA_ARGS__)

//  A per-call-site limiter: at most `burst` lines per `interval_ms`; the first line after a
//  quiet period says how many were suppressed. Usage:
//      static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 1000);
//      zf_warning_limited (&limit, "bus", "refused message from=%s", from);
typedef struct {
    atomic_uint_fast64_t window_start_ms;
    atomic_uint count;
    atomic_uint suppressed;
    unsigned burst;
    unsigned interval_ms;
} zf_ratelimit_t;

#define ZF_RATELIMIT_INIT(burst_, interval_ms_)                                                    \
    {                                                                                              \
        .burst = (burst_), .interval_ms = (interval_ms_)                                           \
    }

void zf_warning_limited (zf_ratelimit_t *limit, const char *subsystem, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

void zf_log_test (bool verbose);

#endif
