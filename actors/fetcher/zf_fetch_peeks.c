/*  zf_fetch_peeks.c — piece.peek held by a task (see zf_fetch_peeks.h). */
#include "zf_fetch_peeks.h"
#include "zf_log.h"
#include "zf_task_id.h"

typedef struct {
    zf_fetch_peeks_t *owner;
    zf_bus_return_t ret;
    uint64_t piece, from;
    int timer_id;
} peek_t;

struct zf_fetch_peeks_s {
    zf_bus_t *bus;
    zf_timers_t *timers;
    char task_id[ZF_TASK_ID_SIZE + 1];
    zlistx_t *held; //  peek_t, owned
};

void zf_fetch_peeks_answer (zf_bus_t *bus, const zf_bus_return_t *ret, const char *task_id,
                            uint64_t piece, uint64_t from, const uint8_t *data, uint64_t filled,
                            bool complete)
{
    uint64_t size = data && filled > from ? filled - from : 0;
    zmsg_t *raw = zmsg_new ();
    //  A copy: the buffer goes on filling (and then moves to storage) under the reader.
    zmsg_addmem (raw, size ? data + from : NULL, (size_t) size);
    zf_msg_piece_partial_t partial = {.task_id = (char *) task_id,
                                      .piece = piece,
                                      .from = from,
                                      .size = size,
                                      .complete = complete};
    zf_bus_reply (bus, ret, &zf_msg_piece_partial, &partial, &raw);
}

static void s_peek_free (void **item)
{
    peek_t *peek = *item;
    if (peek && peek->timer_id >= 0)
        zf_timers_end (peek->owner->timers, peek->timer_id);
    zf_free (peek);
    *item = NULL;
}

zf_fetch_peeks_t *zf_fetch_peeks_new (zf_bus_t *bus, zf_timers_t *timers, const char *task_id)
{
    zf_fetch_peeks_t *self = zf_calloc (1, sizeof *self);
    self->bus = bus;
    self->timers = timers;
    zf_strlcpy (self->task_id, task_id, sizeof self->task_id);
    self->held = zlistx_new ();
    zlistx_set_destructor (self->held, s_peek_free);
    return self;
}

void zf_fetch_peeks_destroy (zf_fetch_peeks_t **self_p)
{
    zf_fetch_peeks_t *self = *self_p;
    if (!self)
        return;
    zf_fetch_peeks_drop (self, "the task went away");
    zlistx_destroy (&self->held);
    zf_free (self);
    *self_p = NULL;
}

//  A peek whose wait ended: nothing new, size 0 (the reader asks again, or reads storage).
static int s_on_timeout (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    peek_t *peek = arg;
    zf_fetch_peeks_t *self = peek->owner;
    peek->timer_id = -1;
    zf_fetch_peeks_answer (self->bus, &peek->ret, self->task_id, peek->piece, peek->from, NULL, 0,
                           false);
    void *handle = zlistx_find (self->held, peek);
    ZF_ASSERT (handle);
    zlistx_delete (self->held, handle);
    return 0;
}

void zf_fetch_peeks_hold (zf_fetch_peeks_t *self, const zf_bus_return_t *ret, uint64_t piece,
                          uint64_t from, uint64_t wait_ms)
{
    peek_t *peek = zf_calloc (1, sizeof *peek);
    peek->owner = self;
    peek->ret = *ret;
    peek->piece = piece;
    peek->from = from;
    peek->timer_id =
        zf_timers_start (self->timers, (size_t) (wait_ms > 0 ? wait_ms : 1), 1, s_on_timeout, peek);
    zlistx_add_end (self->held, peek);
}

bool zf_fetch_peeks_waiting (zf_fetch_peeks_t *self, uint64_t piece)
{
    if (!self)
        return false;
    for (peek_t *peek = zlistx_first (self->held); peek; peek = zlistx_next (self->held))
        if (peek->piece == piece)
            return true;
    return false;
}

int64_t zf_fetch_peeks_first_awaited (zf_fetch_peeks_t *self)
{
    int64_t first = -1;
    if (!self)
        return first;
    for (peek_t *peek = zlistx_first (self->held); peek; peek = zlistx_next (self->held))
        if (first < 0 || peek->piece < (uint64_t) first)
            first = (int64_t) peek->piece;
    return first;
}

//  Answers (and lets go) the held peeks of piece that `filled` bytes satisfy.
static void s_answer_piece (zf_fetch_peeks_t *self, uint64_t piece, const uint8_t *data,
                            uint64_t filled, bool complete)
{
    //  Held peeks are few (a reader has one out at a time): a fresh scan after each answer
    //  keeps the list's cursor out of the way of deletions.
    bool answered = true;
    while (answered) {
        answered = false;
        for (peek_t *peek = zlistx_first (self->held); peek; peek = zlistx_next (self->held))
            if (peek->piece == piece && (complete || filled > peek->from)) {
                zf_fetch_peeks_answer (self->bus, &peek->ret, self->task_id, piece, peek->from,
                                       data, filled, complete);
                zlistx_delete (self->held, zlistx_cursor (self->held));
                answered = true;
                break;
            }
    }
}

void zf_fetch_peeks_fill (zf_fetch_peeks_t *self, uint64_t piece, const uint8_t *data,
                          uint64_t filled, bool complete)
{
    if (self)
        s_answer_piece (self, piece, data, filled, complete);
}

void zf_fetch_peeks_drop (zf_fetch_peeks_t *self, const char *why)
{
    if (!self)
        return;
    peek_t *peek;
    while ((peek = zlistx_first (self->held))) {
        zf_bus_reply_code (self->bus, &peek->ret, ZF_CODE_NOT_FOUND, "task_id",
                           "no piece %" PRIu64 " of task %.64s filling here: %s", peek->piece,
                           self->task_id, why);
        zlistx_delete (self->held, zlistx_cursor (self->held));
    }
}
