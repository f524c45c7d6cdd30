/*  zf_bus_request.c — a bus's requests and what becomes of them (see zf_bus_internal.h): sent
    and kept in the pending table until their reply, their deadline, a caller that forgets
    them, or the bus's end (which hands each arg to its drop function); resent after a
    per-attempt timeout, or, when patient, after a reconnection. */
#include "zf_bus_internal.h"
#include "zf_clock.h"
#include "zf_log.h"

typedef struct {
    uint64_t id;
    zf_bus_link_t *link;
    zframe_t *envelope; //  kept to resend with the same id
    zmsg_t *raw;        //  kept to resend; NULL when there is none
    const zf_msg_desc_t *desc;
    int64_t attempt_deadline;
    int64_t final_deadline;
    int64_t attempt_ms;
    int64_t timeout_ms; //  patient: how long the peer may stay unreachable
    int64_t sent_ms;
    int attempts;
    int retries_left;
    bool patient;     //  waits while the link is up (zf_bus_call_t)
    bool no_deadline; //  to an actor of this process, with no explicit timeout
    zf_bus_reply_fn *callback;
    zf_bus_drop_fn *drop; //  called with arg if the bus ends before the callback ran
    void *arg;
} pending_t;

static void s_pending_destroy (pending_t **pending_p)
{
    pending_t *pending = *pending_p;
    if (!pending)
        return;
    zframe_destroy (&pending->envelope);
    zmsg_destroy (&pending->raw);
    zf_free (pending);
    *pending_p = NULL;
}

static void s_arm (zf_bus_t *self, const pending_t *pending, int64_t now);

zf_status_t zf_bus_request (zf_bus_t *self, const char *to, const zf_msg_desc_t *desc,
                            const void *body, zmsg_t **raw, zf_bus_call_t call,
                            zf_bus_reply_fn *callback, void *arg, zf_error_t *err)
{
    ZF_ASSERT (callback);
    zmsg_t *raw_msg = raw ? *raw : NULL;
    if (raw)
        *raw = NULL;
    zf_status_t status = ZF_OK;
    zf_bus_link_t *link = zf_bus_link_get (self, to, false, err);
    uint64_t id = zf_bus_take_id (self);
    zframe_t *envelope =
        link ? zf_envelope_encode (desc, id, 0, self->address, to, body, err) : NULL;
    const zf_node_options_t *options = zf_node_options (self->node);
    int retries = call.retries >= 0 ? call.retries : options->request_retries;
    //  inproc:// loses nothing (a full queue fails the send at once), so resending to an actor
    //  of this process would only make it do the work twice.
    if (link && link->local)
        retries = 0;
    if (!link)
        status = ZF_E_UNREACHABLE;
    else if (!envelope)
        status = err ? err->code : ZF_E_INVALID;
    else {
        bool keep_raw = retries > 0 || (call.patient && !link->local);
        status = zf_bus_send_envelope (self, link->sock, link->label, NULL, desc->type, envelope,
                                       raw_msg, !keep_raw);
        if (status != ZF_OK)
            zf_error_set (err, status, to,
                          status == ZF_E_OVERLOAD ? "queue to '%s' is full (high-water mark)"
                                                  : "cannot send to '%s'",
                          to);
    }
    if (status != ZF_OK) {
        zframe_destroy (&envelope);
        zmsg_destroy (&raw_msg);
        return status;
    }
    int64_t timeout = call.timeout_ms > 0 ? call.timeout_ms : options->request_timeout_ms;
    bool patient = call.patient && !link->local;
    if (patient)
        retries = 0; //  resent on reconnection instead
    pending_t *pending = zf_calloc (1, sizeof *pending);
    pending->id = id;
    pending->link = link;
    pending->envelope = envelope;
    //  A patient request keeps its frames to send them again after a reconnection.
    pending->raw = retries > 0 || patient ? raw_msg : NULL;
    if (!pending->raw)
        zmsg_destroy (&raw_msg);
    pending->desc = desc;
    pending->attempt_ms = timeout / (retries + 1);
    if (pending->attempt_ms < 1)
        pending->attempt_ms = 1;
    int64_t now = zf_clock_mono_ms ();
    pending->sent_ms = now;
    pending->timeout_ms = timeout;
    pending->patient = patient;
    pending->no_deadline = link->local && (call.timeout_ms <= 0 || call.patient);
    pending->attempt_deadline = now + pending->attempt_ms;
    pending->final_deadline = now + timeout;
    pending->attempts = 1;
    pending->retries_left = retries;
    pending->callback = callback;
    pending->drop = call.drop;
    pending->arg = arg;
    char key[17];
    snprintf (key, sizeof key, "%016" PRIx64, id);
    zhashx_insert (self->pending, key, pending);
    s_arm (self, pending, now);
    return ZF_OK;
}

void zf_bus_deliver_reply (zf_bus_t *self, zf_bus_msg_t *msg)
{
    char key[17];
    snprintf (key, sizeof key, "%016" PRIx64, msg->env.re);
    pending_t *pending = zhashx_lookup (self->pending, key);
    if (!pending) {
        zf_counter_add (self->late_replies, 1);
        zf_debug ("bus", "%s: late or unknown reply %s re=%" PRIu64 " from %s", self->actor,
                  msg->env.type, msg->env.re, msg->env.from);
        return;
    }
    //  Unlink first: the callback may send new requests, or destroy state it owns.
    zhashx_delete (self->pending, key);
    if (streq (msg->env.type, "error")) {
        const zf_msg_error_t *body = msg->env.body;
        zf_error_t err;
        zf_error_set (&err, ZF_E_REMOTE, *body->field ? body->field : msg->env.from, "%s: %s (%s)",
                      msg->env.from, body->message, body->code);
        pending->callback (self, ZF_E_REMOTE, msg, &err, pending->arg);
    } else
        pending->callback (self, ZF_OK, msg, NULL, pending->arg);
    s_pending_destroy (&pending);
}

//  ---------------------------------------------------------------------------------------------
//  Deadlines and retries

//  A patient request expires after its peer was unreachable for its timeout. When the link has
//  never been up, this node could not reach the peer at all (ZF_E_UNREACHABLE), which callers
//  treat as their own problem (a parent one child cannot reach is not a bad parent for
//  everyone); a peer that was connected and went away timed out like any other (ZF_E_TIMEOUT).
static void s_expire (zf_bus_t *self, pending_t *pending)
{
    zf_error_t err;
    zf_status_t status =
        pending->patient && !pending->link->was_up ? ZF_E_UNREACHABLE : ZF_E_TIMEOUT;
    if (pending->patient)
        zf_error_set (&err, status, pending->link->actor,
                      "no connection to '%s' for %s within %" PRId64 " ms", pending->link->actor,
                      pending->desc->type, pending->timeout_ms);
    else
        zf_error_set (&err, ZF_E_TIMEOUT, pending->link->actor,
                      "no reply from '%s' to %s within %" PRId64 " ms (%d attempt%s)",
                      pending->link->actor, pending->desc->type,
                      pending->attempt_ms * pending->attempts, pending->attempts,
                      pending->attempts == 1 ? "" : "s");
    zf_counter_add (self->timeouts, 1);
    pending->callback (self, status, NULL, &err, pending->arg);
}

//  A patient request gives up only when its peer has been unreachable for its timeout: not
//  connected since it was sent, or since the connection dropped.
static bool s_patient_expired (pending_t *pending, int64_t now)
{
    zf_bus_link_t *link = pending->link;
    if (link->up)
        return false;
    int64_t since = link->up_changed_ms > pending->sent_ms ? link->up_changed_ms : pending->sent_ms;
    return now - since >= pending->timeout_ms;
}

static void s_resend (zf_bus_t *self, pending_t *pending)
{
    zf_bus_send_envelope (self, pending->link->sock, pending->link->label, NULL,
                          pending->desc->type, pending->envelope, pending->raw, false);
}

//  When the request next needs a look: its resend or its deadline; a patient one, when its
//  peer may have been unreachable for its timeout (not before now + timeout while the link
//  is up, since the link would have to go down first); never, for one without a deadline.
static int64_t s_next_check (const pending_t *pending, int64_t now)
{
    if (pending->no_deadline)
        return INT64_MAX;
    if (pending->patient) {
        zf_bus_link_t *link = pending->link;
        if (link->up)
            return now + pending->timeout_ms;
        int64_t since =
            link->up_changed_ms > pending->sent_ms ? link->up_changed_ms : pending->sent_ms;
        return since + pending->timeout_ms;
    }
    return pending->attempt_deadline < pending->final_deadline ? pending->attempt_deadline
                                                               : pending->final_deadline;
}

static int s_on_deadline (zloop_t *loop, int timer_id, void *arg);

//  One timer at the earliest moment a pending request needs a look, moved only when a request
//  needs one sooner: an actor with nothing pending never wakes for its requests (a timer every
//  10 ms woke each actor of an idle daemon 100 times a second).
static void s_arm_at (zf_bus_t *self, int64_t at_ms, int64_t now)
{
    if (!self->loop || at_ms == INT64_MAX)
        return;
    if (self->timer_armed) {
        if (self->timer_at_ms <= at_ms)
            return;
        zloop_timer_end (self->loop, self->timer_id);
    }
    int64_t delay = at_ms > now ? at_ms - now : 0;
    self->timer_id = zloop_timer (self->loop, (size_t) delay, 1, s_on_deadline, self);
    self->timer_armed = self->timer_id != -1;
    self->timer_at_ms = at_ms;
}

static void s_arm (zf_bus_t *self, const pending_t *pending, int64_t now)
{
    s_arm_at (self, s_next_check (pending, now), now);
}

void zf_bus_arm_deadlines (zf_bus_t *self)
{
    int64_t now = zf_clock_mono_ms ();
    int64_t earliest = INT64_MAX;
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending)) {
        int64_t at = s_next_check (pending, now);
        if (at < earliest)
            earliest = at;
    }
    s_arm_at (self, earliest, now);
}

static int s_on_deadline (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    zf_bus_t *self = arg;
    //  zloop_timer_end only marks a timer: one moved sooner in this pass of the loop may still
    //  run here once (zf_timers.h). The armed one does the work.
    if (!self->timer_armed || timer_id != self->timer_id)
        return 0;
    self->timer_armed = false; //  a timer of one shot: zloop drops it after this call
    int64_t now = zf_clock_mono_ms ();
    //  Collect first: callbacks may add, complete or forget requests while we walk.
    zlistx_t *expired = zlistx_new ();
    zlistx_set_destructor (expired, (zlistx_destructor_fn *) zstr_free);
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending)) {
        if (pending->no_deadline)
            continue;
        if (pending->patient) {
            if (s_patient_expired (pending, now))
                zlistx_add_end (expired, zf_strdup (zhashx_cursor (self->pending)));
        } else if (now >= pending->final_deadline
                   || (now >= pending->attempt_deadline && pending->retries_left == 0))
            zlistx_add_end (expired, zf_strdup (zhashx_cursor (self->pending)));
        else if (now >= pending->attempt_deadline) {
            pending->retries_left--;
            pending->attempts++;
            pending->attempt_deadline = now + pending->attempt_ms;
            s_resend (self, pending);
        }
    }
    for (const char *key = zlistx_first (expired); key; key = zlistx_next (expired)) {
        //  An earlier callback of this round may have completed or forgotten this one.
        pending_t *pending = zhashx_lookup (self->pending, key);
        if (!pending)
            continue;
        zhashx_delete (self->pending, key);
        s_expire (self, pending);
        s_pending_destroy (&pending);
    }
    zlistx_destroy (&expired);
    zf_bus_arm_deadlines (self);
    return 0;
}

void zf_bus_drop_free (void *arg)
{
    zf_free (arg);
}

//  Drop functions do not run here: arg is the caller's, who just named it (zf_bus.h).
size_t zf_bus_forget (zf_bus_t *self, const void *arg)
{
    zlistx_t *keys = zlistx_new ();
    zlistx_set_destructor (keys, (zlistx_destructor_fn *) zstr_free);
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending))
        if (pending->arg == arg)
            zlistx_add_end (keys, zf_strdup (zhashx_cursor (self->pending)));
    size_t count = zlistx_size (keys);
    for (const char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        pending_t *pending = zhashx_lookup (self->pending, key);
        zhashx_delete (self->pending, key);
        s_pending_destroy (&pending);
    }
    zlistx_destroy (&keys);
    return count;
}

void zf_bus_resend_patient (zf_bus_t *self, zf_bus_link_t *link)
{
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending))
        if (pending->link == link && pending->patient)
            s_resend (self, pending);
}

//  The callbacks will never run: each arg goes to its drop function, so callers that allocate
//  one per request need no list of their own to free them after the bus.
void zf_bus_requests_destroy (zf_bus_t *self)
{
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending)) {
        if (pending->drop)
            pending->drop (pending->arg);
        s_pending_destroy (&pending);
    }
    zhashx_destroy (&self->pending);
}
