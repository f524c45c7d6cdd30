/*  zf_actor.h — how the daemon starts, watches and stops an actor.

    Every actor is `void zf_NAME_actor (zsock_t *pipe, void *args)` with args a zf_actor_args_t,
    borrowed until the actor signals its pipe (czmq convention). Because zactor_new cannot
    report failure, a fallible start is a conversation on the pipe (zyre style):
        actor -> daemon   signal 0                 (args no longer used)
        actor -> daemon   "READY" | "FATAL" why    (started, or could not start)
    and afterwards, at any time:
        actor -> daemon   "FATAL" why              (dying: the daemon exits non-zero)
        actor -> daemon   "DONE" exit-code         (finished a one-shot job; daemon may exit)
        daemon -> actor   "$TERM"                  (stop now)
    An actor that returns without saying why is reported as having died silently. */
#ifndef ZF_ACTOR_H_INCLUDED
#define ZF_ACTOR_H_INCLUDED

#include "zf_config.h"
#include "zf_node.h"
#include "zf_upstream.h"

typedef struct {
    zf_node_t *node;
    const char *name;                     //  the actor's name on the bus
    const void *config;                   //  its section struct (zf_config_section_or_defaults)
    const zf_upstream_config_t *upstream; //  [upstream], shared by actors that reach origins
} zf_actor_args_t;

//  The daemon's table of actors: one entry per kind, declared in each actor's header.
typedef struct {
    const char *name;
    const char *summary; //  its section in the INI has its name (zf_sections.c)
    zactor_fn *run;
} zf_actor_kind_t;

//  Reports a failed start or a death on the pipe and logs it.
void zf_actor_fatal (zsock_t *pipe, const char *actor, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Standard pipe handler for a zloop: "$TERM" ends the loop (returns -1).
int zf_actor_pipe_term (zloop_t *loop, zsock_t *pipe, void *arg);

//  For an actor that stops and awaits a few answers first (a leave its peers must hear): runs
//  loop again, after zloop_start returned, until done (arg) says true (checked every 5 ms)
//  or max_ms passed, so the bus's callbacks run meanwhile. Not from the loop's handlers.
void zf_actor_run_until (zloop_t *loop, bool (*done) (void *arg), void *arg, int64_t max_ms);

#endif
