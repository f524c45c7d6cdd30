/*  zf_actor.c — the actor side of the daemon's start/stop conversation. */
#include "zf_actor.h"
#include "zf_clock.h"
#include "zf_log.h"

void zf_actor_fatal (zsock_t *pipe, const char *actor, const char *fmt, ...)
{
    char why[512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (why, sizeof why, fmt, args);
    va_end (args);
    zf_error_log (actor, "fatal: %s", why);
    zstr_sendx (pipe, "FATAL", why, NULL);
}

int zf_actor_pipe_term (zloop_t *loop, zsock_t *pipe, void *arg)
{
    (void) loop;
    (void) arg;
    char *command = zstr_recv (pipe);
    bool stop = !command || streq (command, "$TERM");
    zstr_free (&command);
    return stop ? -1 : 0;
}

typedef struct {
    bool (*done) (void *arg);
    void *arg;
    int64_t deadline_ms;
} run_until_t;

static int s_run_until_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    run_until_t *run = arg;
    return run->done (run->arg) || zf_clock_mono_ms () >= run->deadline_ms ? -1 : 0;
}

void zf_actor_run_until (zloop_t *loop, bool (*done) (void *arg), void *arg, int64_t max_ms)
{
    if (done (arg))
        return;
    run_until_t run = {.done = done, .arg = arg, .deadline_ms = zf_clock_mono_ms () + max_ms};
    int timer_id = zloop_timer (loop, 5, 0, s_run_until_tick, &run);
    zloop_start (loop);
    zloop_timer_end (loop, timer_id);
}
