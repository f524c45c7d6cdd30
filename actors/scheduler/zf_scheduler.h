/*  zf_scheduler.h — the scheduler actor: the swarm of the tasks it owns.

    Serves hosts and peers over the bus (schemas/scheduler.schema): host.announce (also the
    heartbeat), host.leave, peer.register, piece.report, parent.failed, peer.reschedule,
    peer.finished, peer.failed, scheduler.state; sends seed.trigger to seed hosts' fetchers;
    publishes scheduler.event. The model, selection, health and decision logic live in the
    zf_sched_* files beside it; this file is the bus side: decoding, long-polled "wait"
    answers, timers (heartbeat expiry, poll deadlines), metrics and events.

    Off unless the INI file has a [scheduler] section. Nodes reach it through [endpoints]
    (tcp:// with CURVE across hosts) and pick it per task with zf_sched_ring. */
#ifndef ZF_SCHEDULER_H_INCLUDED
#define ZF_SCHEDULER_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *bind;
    char *events_bind;
    int64_t parents;
    int64_t candidates;
    int64_t upload_slots;
    int64_t seed_upload_slots;
    double weight_finished, weight_free_upload, weight_host_type, weight_idc, weight_location;
    int64_t bad_host_failures;
    int64_t bad_host_window_ms;
    int64_t bad_host_cooldown_ms;
    int64_t heartbeat_ms;
    int64_t host_timeout_ms;
    char *seeds;
    int64_t seed_timeout_ms;
    int64_t wait_max_ms;
    int64_t retry_ms;
    bool acyclic;
} zf_scheduler_config_t;

extern const zf_config_section_t zf_scheduler_section;

void zf_scheduler_actor (zsock_t *pipe, void *args);

void zf_scheduler_test (bool verbose);

#endif
