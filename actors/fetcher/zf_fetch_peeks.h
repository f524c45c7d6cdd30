/*  zf_fetch_peeks.h — piece.peek: readers on this host that stream a task to their clients
    take the bytes of a piece before storage has it (schemas/dataplane.schema).

    A task keeps one of these for the peeks it holds. A peek asks for the bytes of one piece
    past `from`; it is answered (piece.partial, the bytes copied into its frame) as soon as the
    piece's buffer holds more than `from` bytes, when the piece is filled (complete set, the
    rest of its bytes with it), or after its wait with size 0. The task tells it what the
    origin delivered and what a parent delivered whole, checked (zf_fetch_peeks_fill), or
    that the task stopped (zf_fetch_peeks_drop: "not_found"). A piece the origin
    fills again after a failed transfer simply grows again from zero: a peek waits until it
    is past its `from` once more. */
#ifndef ZF_FETCH_PEEKS_H_INCLUDED
#define ZF_FETCH_PEEKS_H_INCLUDED

#include "zf_bus.h"
#include "zf_timers.h"

typedef struct zf_fetch_peeks_s zf_fetch_peeks_t;

zf_fetch_peeks_t *zf_fetch_peeks_new (zf_bus_t *bus, zf_timers_t *timers, const char *task_id);
//  Held peeks are answered "not_found".
void zf_fetch_peeks_destroy (zf_fetch_peeks_t **self_p);

//  Holds a peek for piece until it can be answered (at most wait_ms; 0: answered at the next
//  fill or drop only if one comes at once, else with size 0 right away).
void zf_fetch_peeks_hold (zf_fetch_peeks_t *self, const zf_bus_return_t *ret, uint64_t piece,
                          uint64_t from, uint64_t wait_ms);
//  Whether any peek waits for this piece (the task copies bytes only then).
bool zf_fetch_peeks_waiting (zf_fetch_peeks_t *self, uint64_t piece);
//  The lowest piece a held peek waits for, or -1: what a reader streaming the task needs next.
int64_t zf_fetch_peeks_first_awaited (zf_fetch_peeks_t *self);
//  The origin filled bytes [0, filled) of the piece at data; complete: that is all of it.
void zf_fetch_peeks_fill (zf_fetch_peeks_t *self, uint64_t piece, const uint8_t *data,
                          uint64_t filled, bool complete);
//  Every held peek is answered "not_found" (the task failed, completed, or went away).
void zf_fetch_peeks_drop (zf_fetch_peeks_t *self, const char *why);

//  Answers a peek at once: bytes [from, filled) of data, or size 0.
void zf_fetch_peeks_answer (zf_bus_t *bus, const zf_bus_return_t *ret, const char *task_id,
                            uint64_t piece, uint64_t from, const uint8_t *data, uint64_t filled,
                            bool complete);

#endif
