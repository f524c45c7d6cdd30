/*  zf_get_progress.c — zfly-get's progress display: a bar redrawn on one line (a terminal) or
    a plain line every few seconds, with the rate averaged over the last seconds and the time
    left at that rate.

    A class of its own: it knows bytes done, bytes in all and the clock, nothing of tasks,
    files or the daemon, so the download tells it what to show (zf_get_show_progress). */
#include "zf_get.h"
#include "zf_clock.h"
#include "zf_human.h"
#include <sys/ioctl.h>
#include <unistd.h>

#define LINE_INTERVAL_MS 5000 //  plain progress lines when stderr is not a terminal

static double s_rate (zf_get_progress_t *self, int64_t now, uint64_t done)
{
    if (self->sample_count == ZF_GET_RATE_WINDOW) {
        memmove (self->sample_ms, self->sample_ms + 1, (ZF_GET_RATE_WINDOW - 1) * sizeof (int64_t));
        memmove (self->sample_bytes, self->sample_bytes + 1,
                 (ZF_GET_RATE_WINDOW - 1) * sizeof (uint64_t));
        self->sample_count--;
    }
    self->sample_ms[self->sample_count] = now;
    self->sample_bytes[self->sample_count] = done;
    self->sample_count++;
    int64_t span = now - self->sample_ms[0];
    if (span <= 0)
        return 0;
    return (double) (done - self->sample_bytes[0]) * 1000.0 / (double) span;
}

void zf_get_progress_draw (zf_get_progress_t *self, uint64_t done, uint64_t total, bool final)
{
    if (self->mode == ZF_GET_PROGRESS_NONE)
        return;
    int64_t now = zf_clock_mono_ms ();
    double rate = s_rate (self, now, done);
    if (final && now > self->started_ms) //  the whole run's average, not the last seconds'
        rate = (double) total * 1000.0 / (double) (now - self->started_ms);
    if (self->mode == ZF_GET_PROGRESS_LINES && !final
        && now - self->last_line_ms < LINE_INTERVAL_MS)
        return;
    self->last_line_ms = now;
    char done_text[32], total_text[32], rate_text[32], eta_text[32];
    zf_human_bytes (done, done_text, sizeof done_text);
    zf_human_bytes (total, total_text, sizeof total_text);
    zf_human_bytes ((uint64_t) rate, rate_text, sizeof rate_text);
    double eta = rate > 0 ? (double) (total - done) / rate : -1;
    zf_human_duration (done == total ? 0 : eta, eta_text, sizeof eta_text);
    int percent = total ? (int) (done * 100 / total) : 100;
    if (self->mode == ZF_GET_PROGRESS_LINES) {
        fprintf (stderr, "zfly-get: %3d%% %s of %s, %s/s, ETA %s\n", percent, done_text, total_text,
                 rate_text, eta_text);
        return;
    }
    struct winsize size;
    int columns = ioctl (STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col ? size.ws_col : 80;
    int bar_width = columns - 60;
    if (bar_width > 50)
        bar_width = 50;
    char bar[64] = "";
    if (bar_width >= 10) {
        int filled = (int) ((int64_t) bar_width * percent / 100);
        bar[0] = '[';
        for (int index = 0; index < bar_width; index++)
            bar[1 + index] = index < filled ? '=' : (index == filled ? '>' : ' ');
        bar[1 + bar_width] = ']';
        bar[2 + bar_width] = '\0';
    }
    fprintf (stderr, "\r%3d%% %s %s / %s  %s/s  ETA %s\033[K", percent, bar, done_text, total_text,
             rate_text, eta_text);
    self->bar_drawn = true;
    if (final) {
        fputc ('\n', stderr);
        self->bar_drawn = false;
    }
}

void zf_get_progress_break (zf_get_progress_t *self)
{
    if (self->bar_drawn) {
        fputc ('\n', stderr);
        self->bar_drawn = false;
    }
}

void zf_get_progress_restart (zf_get_progress_t *self)
{
    self->sample_count = 0;
}
