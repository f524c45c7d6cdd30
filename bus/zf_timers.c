/*  zf_timers.c — timers looked up by id at each expiry, so an ended one cannot run. */
#include "zf_timers.h"

typedef struct {
    zloop_timer_fn *handler;
    void *arg;
    size_t times_left; //  0: until ended
} timer_t_;

struct zf_timers_s {
    zloop_t *loop;
    zhashx_t *timers; //  (void *) (intptr_t) id → timer_t_
};

static size_t s_id_hash (const void *key)
{
    return (size_t) (uintptr_t) key;
}

static int s_id_compare (const void *one, const void *two)
{
    uintptr_t left = (uintptr_t) one, right = (uintptr_t) two;
    return left < right ? -1 : left > right;
}

static void s_timer_free (void **item)
{
    zf_free (*item);
    *item = NULL;
}

static void *s_key (int timer_id)
{
    return (void *) (intptr_t) timer_id;
}

zf_timers_t *zf_timers_new (zloop_t *loop)
{
    zf_timers_t *self = zf_calloc (1, sizeof (zf_timers_t));
    self->loop = loop;
    self->timers = zhashx_new ();
    zhashx_set_key_hasher (self->timers, s_id_hash);
    zhashx_set_key_comparator (self->timers, s_id_compare);
    zhashx_set_key_duplicator (self->timers, NULL);
    zhashx_set_key_destructor (self->timers, NULL);
    zhashx_set_destructor (self->timers, s_timer_free);
    return self;
}

void zf_timers_destroy (zf_timers_t **self_p)
{
    zf_timers_t *self = *self_p;
    if (!self)
        return;
    for (void *timer = zhashx_first (self->timers); timer; timer = zhashx_next (self->timers))
        zloop_timer_end (self->loop, (int) (intptr_t) zhashx_cursor (self->timers));
    zhashx_destroy (&self->timers);
    zf_free (self);
    *self_p = NULL;
}

static int s_trampoline (zloop_t *loop, int timer_id, void *arg)
{
    zf_timers_t *self = arg;
    timer_t_ *timer = zhashx_lookup (self->timers, s_key (timer_id));
    if (!timer)
        return 0; //  ended earlier in this pass: zloop removes it after the pass
    zloop_timer_fn *handler = timer->handler;
    void *handler_arg = timer->arg;
    if (timer->times_left && --timer->times_left == 0)
        zhashx_delete (self->timers, s_key (timer_id)); //  zloop frees its own after this call
    return handler (loop, timer_id, handler_arg);
}

int zf_timers_start (zf_timers_t *self, size_t delay_ms, size_t times, zloop_timer_fn handler,
                     void *arg)
{
    int timer_id = zloop_timer (self->loop, delay_ms, times, s_trampoline, self);
    if (timer_id <= 0)
        return -1;
    timer_t_ *timer = zf_calloc (1, sizeof (timer_t_));
    *timer = (timer_t_){.handler = handler, .arg = arg, .times_left = times};
    zhashx_insert (self->timers, s_key (timer_id), timer);
    return timer_id;
}

void zf_timers_end (zf_timers_t *self, int timer_id)
{
    if (timer_id <= 0 || !zhashx_lookup (self->timers, s_key (timer_id)))
        return;
    zhashx_delete (self->timers, s_key (timer_id));
    zloop_timer_end (self->loop, timer_id);
}

size_t zf_timers_size (zf_timers_t *self)
{
    return zhashx_size (self->timers);
}

//  --------------------------------------------------------------------------
//  Selftest: the case zloop alone gets wrong. Two timers are due in one pass; the first one's
//  handler ends the second and marks its arg dead (a real owner would free it). zloop would
//  still run the second in that pass (czmq 4.2); through the table it must not run again.

typedef struct {
    int timer_id;
    int runs;
    bool dead;
} victim_t;

typedef struct {
    zf_timers_t *timers;
    victim_t *victim;
} killer_t;

static int s_victim_runs (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    victim_t *victim = arg;
    ZF_ASSERT (!victim->dead); //  a freed object's handler would run here
    victim->runs++;
    return 0;
}

static int s_killer_runs (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    killer_t *killer = arg;
    //  The victim was started after the killer with the same delay: after this sleep it is due
    //  too, so zloop reaches it later in this same pass.
    zclock_sleep (3);
    zf_timers_end (killer->timers, killer->victim->timer_id);
    killer->victim->dead = true;
    return 0;
}

static int s_count_runs (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    int *runs = arg;
    (*runs)++;
    return 0;
}

static int s_stop_loop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

void zf_timers_test (bool verbose)
{
    printf (" * zf_timers: ");
    (void) verbose;
    zloop_t *loop = zloop_new ();
    zf_timers_t *timers = zf_timers_new (loop);

    victim_t victim = {0};
    killer_t killer = {.timers = timers, .victim = &victim};
    zf_timers_start (timers, 5, 1, s_killer_runs, &killer); //  first in zloop's list
    victim.timer_id = zf_timers_start (timers, 5, 0, s_victim_runs, &victim);
    ZF_ASSERT (victim.timer_id > 0);
    //  A one-shot timer leaves the table when it has run; a repeating one stays until ended.
    int once = 0, repeated = 0;
    zf_timers_start (timers, 1, 1, s_count_runs, &once);
    int repeating = zf_timers_start (timers, 1, 0, s_count_runs, &repeated);
    zloop_timer (loop, 30, 1, s_stop_loop, NULL);
    zloop_start (loop);
    ZF_ASSERT (victim.dead && victim.runs == 0);
    ZF_ASSERT (once == 1);
    ZF_ASSERT (repeated >= 2);
    ZF_ASSERT (zf_timers_size (timers) == 1); //  only the repeating one is left
    zf_timers_end (timers, repeating);
    zf_timers_end (timers, repeating); //  twice, and unknown ids: ignored
    zf_timers_end (timers, 0);
    zf_timers_end (timers, -1);
    ZF_ASSERT (zf_timers_size (timers) == 0);

    //  Destroy ends what still runs (the loop has stopped: zloop removes them at once).
    zf_timers_start (timers, 1000, 0, s_count_runs, &repeated);
    zf_timers_destroy (&timers);
    ZF_ASSERT (timers == NULL);
    zloop_destroy (&loop);
    printf ("OK\n");
}
