/*  zf_sched_ring.h — which scheduler owns a task: consistent hashing with virtual nodes.

    Every node hashes the task id onto a ring on which each configured scheduler has `vnodes`
    points; the owner is the first scheduler clockwise that is not marked dead. All peers of a
    task therefore meet at the same scheduler, removing (or marking dead) a scheduler moves only
    the tasks it owned, each to the next scheduler on the ring, and adding one takes about 1/n
    of the tasks. Hashes are FNV-1a with a 64-bit finalizer: the same on every node and run.

    The fetcher keeps one ring built from its configured scheduler list and marks a scheduler
    dead when requests to it time out (alive again after a successful call). */
#ifndef ZF_SCHED_RING_H_INCLUDED
#define ZF_SCHED_RING_H_INCLUDED

#include "zf_prelude.h"

typedef struct zf_sched_ring_s zf_sched_ring_t;

#define ZF_SCHED_RING_VNODES 160 //  points per member: about ±10% load spread for 3..20 members

zf_sched_ring_t *zf_sched_ring_new (uint32_t vnodes);
void zf_sched_ring_destroy (zf_sched_ring_t **self_p);

//  Members are names ("scheduler@sched-1"); adding one twice is a no-op.
void zf_sched_ring_add (zf_sched_ring_t *self, const char *member);
void zf_sched_ring_remove (zf_sched_ring_t *self, const char *member);
//  A dead member keeps its points but is skipped by lookups.
void zf_sched_ring_set_alive (zf_sched_ring_t *self, const char *member, bool alive);
size_t zf_sched_ring_size (zf_sched_ring_t *self);

//  The owner of key: the first live member clockwise, or NULL when none is alive. The string
//  belongs to the ring.
const char *zf_sched_ring_lookup (zf_sched_ring_t *self, const char *key);

uint64_t zf_sched_ring_hash (const char *text);

void zf_sched_ring_test (bool verbose);

#endif
