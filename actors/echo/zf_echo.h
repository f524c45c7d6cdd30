/*  zf_echo.h — the echo actor: answers echo.request, publishes echo.seen.

    With the probe actor it proves that two nodes can talk over the bus (the operator's "can
    edge-7 reach the scheduler host?") and lets tests show that the bus behaves the same
    colocated and across processes. Off unless the INI file has an [echo] section. */
#ifndef ZF_ECHO_H_INCLUDED
#define ZF_ECHO_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *bind;        //  external request endpoint, "" for inproc only
    char *events_bind; //  external events endpoint, "" for inproc only
} zf_echo_config_t;

extern const zf_config_section_t zf_echo_section;

void zf_echo_actor (zsock_t *pipe, void *args);

#endif
