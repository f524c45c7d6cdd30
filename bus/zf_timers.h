/*  zf_timers.h — a loop's timers that never run once they were ended.

    czmq's zloop_timer_end only marks a timer: the loop removes it after the whole pass over
    expired timers and ready sockets. So when one timer's handler destroys an object, that
    object's own timer, expired and later in the same pass, still runs with the freed object
    as its arg. This was a heap-use-after-free under ASan: the curl loop's timer finished an
    access check, the fetcher replaced a finished task, and the task's parents tick then ran
    on the freed task.

    zf_timers keeps each timer's handler and arg in a table keyed by zloop's timer id, and
    zloop calls one trampoline that looks the id up: an ended timer is no longer there, so
    nothing runs. Objects whose life can end inside another handler take their timers from
    here. One table per loop, destroyed after the loop stopped (or before it started). */
#ifndef ZF_TIMERS_H_INCLUDED
#define ZF_TIMERS_H_INCLUDED

#include "zf_prelude.h"

typedef struct zf_timers_s zf_timers_t;

zf_timers_t *zf_timers_new (zloop_t *loop);
//  Ends the timers still running. Not from one of the loop's handlers.
void zf_timers_destroy (zf_timers_t **self_p);

//  As zloop_timer: after delay_ms, times times (0: until ended), handler (loop, id, arg).
//  Returns the timer's id (> 0), or -1.
int zf_timers_start (zf_timers_t *self, size_t delay_ms, size_t times, zloop_timer_fn handler,
                     void *arg);
//  From here on the handler is not called again, even in the pass that is running now. An id
//  of 0 or -1, or of a timer that ran out or was ended already, is ignored.
void zf_timers_end (zf_timers_t *self, int timer_id);

size_t zf_timers_size (zf_timers_t *self);

void zf_timers_test (bool verbose);

#endif
