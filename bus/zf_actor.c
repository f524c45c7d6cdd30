/*  zf_actor.c — the actor side of the daemon's start/stop conversation. */
#include "zf_actor.h"
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
