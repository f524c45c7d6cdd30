/*  zf_spread.c — pieces from the origin go out once before twice (see zf_spread.h). */
#include "zf_spread.h"

typedef struct {
    uint64_t piece_count;
    uint64_t unsent;      //  pieces from the origin that have not gone out yet
    uint8_t *from_origin; //  bitmap
    int64_t *sent_ms;     //  when it last went out, 0: never
    uint32_t *sent_to;    //  to whom (a hash of the requester)
} spread_task_t;

struct zf_spread_s {
    zhashx_t *tasks; //  task id -> spread_task_t
};

static void s_task_destroy (void **item)
{
    spread_task_t *task = *item;
    zf_free (task->from_origin);
    zf_free (task->sent_ms);
    zf_free (task->sent_to);
    zf_free (task);
    *item = NULL;
}

zf_spread_t *zf_spread_new (void)
{
    zf_spread_t *self = zf_calloc (1, sizeof *self);
    self->tasks = zhashx_new ();
    zhashx_set_destructor (self->tasks, s_task_destroy);
    return self;
}

void zf_spread_destroy (zf_spread_t **self_p)
{
    zf_spread_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->tasks);
    zf_free (self);
    *self_p = NULL;
}

static bool s_from_origin (const spread_task_t *task, uint64_t piece)
{
    return piece < task->piece_count && ((task->from_origin[piece / 8] >> (piece % 8)) & 1);
}

//  FNV-1a: requesters only need telling apart.
static uint32_t s_hash (const char *text)
{
    uint32_t hash = 2166136261u;
    for (; *text; text++)
        hash = (hash ^ (uint8_t) *text) * 16777619u;
    return hash ? hash : 1;
}

void zf_spread_from_origin (zf_spread_t *self, const char *task_id, uint64_t piece_count,
                            uint64_t piece)
{
    spread_task_t *task = zhashx_lookup (self->tasks, task_id);
    if (task && task->piece_count != piece_count) { //  the task was made anew
        zhashx_delete (self->tasks, task_id);
        task = NULL;
    }
    if (!task) {
        task = zf_calloc (1, sizeof *task);
        task->piece_count = piece_count;
        task->from_origin = zf_calloc ((size_t) (piece_count + 7) / 8 + 1, 1);
        task->sent_ms = zf_calloc ((size_t) piece_count + 1, sizeof (int64_t));
        task->sent_to = zf_calloc ((size_t) piece_count + 1, sizeof (uint32_t));
        zhashx_insert (self->tasks, task_id, task);
    }
    if (piece < piece_count && !s_from_origin (task, piece)) {
        task->from_origin[piece / 8] |= (uint8_t) (1u << (piece % 8));
        task->unsent++; //  never sent: only pieces from the origin are recorded as sent
    }
}

bool zf_spread_may_send (zf_spread_t *self, const char *task_id, uint64_t piece,
                         const char *requester, int64_t now_ms)
{
    spread_task_t *task = zhashx_lookup (self->tasks, task_id);
    if (!task || !s_from_origin (task, piece))
        return true;
    uint32_t who = s_hash (requester);
    int64_t grace = task->unsent > 0 ? ZF_SPREAD_BACKLOG_GRACE_MS : ZF_SPREAD_GRACE_MS;
    if (task->sent_ms[piece] && task->sent_to[piece] != who
        && now_ms - task->sent_ms[piece] < grace)
        return false;
    if (task->sent_ms[piece] == 0)
        task->unsent--;
    task->sent_ms[piece] = now_ms;
    task->sent_to[piece] = who;
    return true;
}

void zf_spread_forget (zf_spread_t *self, const char *task_id)
{
    zhashx_delete (self->tasks, task_id);
}

void zf_spread_test (bool verbose)
{
    (void) verbose;
    zf_spread_t *spread = zf_spread_new ();
    const char *task = "t1";
    //  Pieces not from the origin go to anyone, any time.
    ZF_ASSERT (zf_spread_may_send (spread, task, 0, "a", 1000));
    ZF_ASSERT (zf_spread_may_send (spread, task, 0, "b", 1000));
    zf_spread_from_origin (spread, task, 10, 3);
    ZF_ASSERT (zf_spread_may_send (spread, task, 4, "b", 1000)); //  piece 4 is not
    //  Piece 3 went to a: not to b within the grace, to a again (its resend), to b after it;
    //  nothing else from the origin waits to go out.
    ZF_ASSERT (zf_spread_may_send (spread, task, 3, "a", 1000));
    ZF_ASSERT (!zf_spread_may_send (spread, task, 3, "b", 1000 + ZF_SPREAD_GRACE_MS - 1));
    ZF_ASSERT (zf_spread_may_send (spread, task, 3, "a", 1500));
    ZF_ASSERT (!zf_spread_may_send (spread, task, 3, "b", 1500 + ZF_SPREAD_GRACE_MS - 1));
    ZF_ASSERT (zf_spread_may_send (spread, task, 3, "b", 1500 + ZF_SPREAD_GRACE_MS));
    //  While piece 6 from the origin has not gone out, a second copy of 3 waits longer; once
    //  6 went out, the short grace again.
    int64_t to_b = 1500 + ZF_SPREAD_GRACE_MS; //  when 3 last went out
    zf_spread_from_origin (spread, task, 10, 6);
    ZF_ASSERT (!zf_spread_may_send (spread, task, 3, "c", to_b + ZF_SPREAD_GRACE_MS));
    int64_t to_c = to_b + ZF_SPREAD_BACKLOG_GRACE_MS;
    ZF_ASSERT (zf_spread_may_send (spread, task, 3, "c", to_c));
    zf_spread_from_origin (spread, task, 10, 6); //  written again: still one to send
    ZF_ASSERT (!zf_spread_may_send (spread, task, 3, "e", to_c + ZF_SPREAD_GRACE_MS));
    ZF_ASSERT (zf_spread_may_send (spread, task, 6, "a", to_c + ZF_SPREAD_GRACE_MS));
    zf_spread_from_origin (spread, task, 10, 6); //  gone out already: nothing waits
    ZF_ASSERT (zf_spread_may_send (spread, task, 3, "e", to_c + ZF_SPREAD_GRACE_MS));
    //  Out of range: served (storage refuses it anyway).
    ZF_ASSERT (zf_spread_may_send (spread, task, 99, "b", 1000));
    //  The task made anew with another layout starts clean.
    zf_spread_from_origin (spread, task, 20, 5);
    ZF_ASSERT (zf_spread_may_send (spread, task, 3, "c", 1600));
    zf_spread_forget (spread, task);
    ZF_ASSERT (zf_spread_may_send (spread, task, 5, "c", 1600));
    zf_spread_destroy (&spread);
    ZF_ASSERT (!spread);
}
