/*  zf_probe.h — the probe actor: exercises another actor over the bus and reports.

    It subscribes to the target's events, waits until one request and its event have made the
    round trip (so the event path is known to be live, not assumed), then sends `count`
    echo.request messages, every `fail_every`-th asking for an error, plus one message type
    the target does not handle. It checks each reply against what it sent, counts the events,
    and reports: a log line, and a JSON file when `report` is set. With exit = true the daemon
    exits when the probe is done, with status 0 only if every check passed. */
#ifndef ZF_PROBE_H_INCLUDED
#define ZF_PROBE_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *target;       //  actor to probe
    int64_t count;      //  requests to send
    int64_t inflight;   //  requests outstanding at once
    int64_t text_size;  //  bytes of text per request
    int64_t fail_every; //  every Nth request asks for an error; 0: never
    int64_t timeout_ms; //  deadline of each request
    int64_t connect_ms; //  how long to wait for the first round trip
    char *report;       //  JSON report path, "" for none
    bool exit;          //  stop the daemon when done
} zf_probe_config_t;

extern const zf_config_section_t zf_probe_section;

void zf_probe_actor (zsock_t *pipe, void *args);

#endif
