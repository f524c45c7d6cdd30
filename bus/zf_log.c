/*  zf_log.c — leveled, line-oriented logging shared by every thread.

    Each line is formatted into a local buffer and written with one fwrite on an unbuffered
    stream, so lines from different actors never interleave mid-line. */
#include "zf_log.h"
#include "zf_clock.h"
#include <sys/time.h>
#include <time.h>

static atomic_int s_level = ZF_LOG_NOTICE;
static FILE *_Atomic s_stream = NULL;

static const char *s_level_names[] = {"error", "warning", "notice", "info", "debug"};

void zf_log_set_level (zf_log_level_t level)
{
    atomic_store (&s_level, (int) level);
}

zf_log_level_t zf_log_get_level (void)
{
    return (zf_log_level_t) atomic_load (&s_level);
}

int zf_log_level_parse (const char *name)
{
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_level_names); index++)
        if (strcmp (name, s_level_names[index]) == 0)
            return (int) index;
    return -1;
}

const char *zf_log_level_name (zf_log_level_t level)
{
    return level <= ZF_LOG_DEBUG ? s_level_names[level] : "?";
}

void zf_log_set_stream (FILE *stream)
{
    atomic_store (&s_stream, stream);
}

__attribute__ ((format (printf, 3, 0))) static void
s_vlog (zf_log_level_t level, const char *subsystem, const char *fmt, va_list args)
{
    char line[2048];
    struct timeval now;
    gettimeofday (&now, NULL);
    struct tm utc;
    gmtime_r (&now.tv_sec, &utc);
    size_t used = strftime (line, sizeof line, "%Y-%m-%dT%H:%M:%S", &utc);
    int rc =
        snprintf (line + used, sizeof line - used, ".%03dZ %-7s %s: ", (int) (now.tv_usec / 1000),
                  zf_log_level_name (level), subsystem);
    if (rc > 0)
        used += (size_t) rc;
    if (used < sizeof line) {
        rc = vsnprintf (line + used, sizeof line - used, fmt, args);
        if (rc > 0)
            used += (size_t) rc;
    }
    if (used >= sizeof line - 1)
        used = sizeof line - 2; //  truncated: still one line
    line[used++] = '\n';
    FILE *stream = atomic_load (&s_stream);
    if (!stream)
        stream = stderr;
    fwrite (line, 1, used, stream);
    fflush (stream);
}

void zf_log (zf_log_level_t level, const char *subsystem, const char *fmt, ...)
{
    if ((int) level > atomic_load (&s_level))
        return;
    va_list args;
    va_start (args, fmt);
    s_vlog (level, subsystem, fmt, args);
    va_end (args);
}

void zf_warning_limited (zf_ratelimit_t *limit, const char *subsystem, const char *fmt, ...)
{
    if (ZF_LOG_WARNING > atomic_load (&s_level))
        return;
    uint64_t now = (uint64_t) zf_clock_mono_ms ();
    uint64_t start = atomic_load (&limit->window_start_ms);
    if (now - start >= limit->interval_ms
        && atomic_compare_exchange_strong (&limit->window_start_ms, &start, now)) {
        unsigned suppressed = atomic_exchange (&limit->suppressed, 0);
        atomic_store (&limit->count, 0);
        if (suppressed)
            zf_log (ZF_LOG_WARNING, subsystem, "%u similar warnings suppressed", suppressed);
    }
    if (atomic_fetch_add (&limit->count, 1) >= limit->burst) {
        atomic_fetch_add (&limit->suppressed, 1);
        return;
    }
    va_list args;
    va_start (args, fmt);
    s_vlog (ZF_LOG_WARNING, subsystem, fmt, args);
    va_end (args);
}

//  --------------------------------------------------------------------------------------------
//  Selftest

void zf_log_test (bool verbose)
{
    (void) verbose;
    char *text = NULL;
    size_t size = 0;
    FILE *capture = open_memstream (&text, &size);
    ZF_ASSERT (capture);
    zf_log_set_stream (capture);
    zf_log_set_level (ZF_LOG_INFO);
    zf_info ("selftest", "hello key=%d", 42);
    zf_debug ("selftest", "not shown");
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (2, 60000);
    for (int index = 0; index < 5; index++)
        zf_warning_limited (&limit, "selftest", "flood %d", index);
    zf_log_set_stream (NULL);
    fclose (capture);
    ZF_ASSERT (strstr (text, " info    selftest: hello key=42\n"));
    ZF_ASSERT (!strstr (text, "not shown"));
    ZF_ASSERT (strstr (text, "flood 1"));
    ZF_ASSERT (!strstr (text, "flood 2")); //  over the burst of 2
    ZF_ASSERT (zf_log_level_parse ("debug") == ZF_LOG_DEBUG);
    ZF_ASSERT (zf_log_level_parse ("loud") == -1);
    free (text);
    zf_log_set_level (ZF_LOG_NOTICE);
}
