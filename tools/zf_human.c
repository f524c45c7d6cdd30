/*  zf_human.c — bytes and durations for people. */
#include "zf_human.h"

void zf_human_bytes (uint64_t bytes, char *text, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = (double) bytes;
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < ZF_ARRAY_LEN (units)) {
        value /= 1024;
        unit++;
    }
    if (unit == 0)
        snprintf (text, size, "%" PRIu64 " B", bytes);
    else
        snprintf (text, size, "%.1f %s", value, units[unit]);
}

void zf_human_duration (double seconds, char *text, size_t size)
{
    if (seconds < 0 || seconds > 99 * 3600)
        snprintf (text, size, "--");
    else if (seconds < 60)
        snprintf (text, size, "%ds", (int) (seconds + 0.5));
    else if (seconds < 3600)
        snprintf (text, size, "%dm%02ds", (int) seconds / 60, (int) seconds % 60);
    else
        snprintf (text, size, "%dh%02dm", (int) seconds / 3600, ((int) seconds % 3600) / 60);
}
