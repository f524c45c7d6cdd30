/*  zf_bus_test.c — the bus's selftest. */
#include "zf_bus_internal.h"
#include "zf_clock.h"
#include "zf_msgs.h"
#include <unistd.h>

//  ---------------------------------------------------------------------------------------------
//  Selftest: two actors' buses on one loop, over inproc. Shows requests, replies, error
//  replies, events, unknown types, timeouts with retries, late replies, high-water drops and
//  what becomes of a request's arg when the bus goes first.

typedef struct {
    int replies, remote_errors, timeouts, events, overloads;
    char last_error[512];
    zf_code_t last_code; //  zf_bus_error_code of the last answer
    bool hold_replies;   //  the server keeps requests unanswered (for timeouts / late replies)
    zf_bus_return_t held;
    bool has_held;
    int drops;         //  drop functions run (s_test_drop)
    uintptr_t dropped; //  the arg the last one got
} s_test_state_t;

static void s_test_serve (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    s_test_state_t *state = arg;
    const zf_msg_echo_request_t *body = request->env.body;
    if (state->hold_replies) {
        state->held = request->return_to;
        state->has_held = true;
        return;
    }
    if (body->fail && streq (body->text, "busy"))
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_BUSY, NULL, "asked to be busy");
    else if (body->fail && streq (body->text, "not_found"))
        zf_bus_reply_error_code (bus, &request->return_to, "not_found", "text", "the old form");
    else if (body->fail)
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "fail", "asked to fail");
    else {
        zf_msg_echo_reply_t reply = {.seq = body->seq, .text = body->text, .served_by = "server"};
        zf_bus_reply (bus, &request->return_to, &zf_msg_echo_reply, &reply, &request->raw);
        zf_msg_echo_seen_t seen = {.seq = body->seq, .ok = true};
        zf_bus_publish (bus, &zf_msg_echo_seen, &seen);
    }
}

static void s_test_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    s_test_state_t *state = arg;
    state->last_code = zf_bus_error_code (status, reply);
    if (status == ZF_OK) {
        state->replies++;
        ZF_ASSERT (zmsg_size (reply->raw) == 1); //  the raw frame came back with the reply
    } else if (status == ZF_E_REMOTE) {
        state->remote_errors++;
        zf_strlcpy (state->last_error, err->message, sizeof state->last_error);
    } else if (status == ZF_E_TIMEOUT || status == ZF_E_UNREACHABLE) {
        state->timeouts++;
        zf_strlcpy (state->last_error, err->message, sizeof state->last_error);
    }
}

static void s_test_on_event (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    (void) event;
    ((s_test_state_t *) arg)->events++;
}

//  Runs the loop until the condition holds (checked every 5 ms) or 5 s pass (a failure).
typedef bool (s_test_condition_fn) (s_test_state_t *state);
typedef struct {
    s_test_condition_fn *condition;
    s_test_state_t *state;
    int64_t deadline;
} s_test_wait_t;

static int s_test_check (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_test_wait_t *wait = arg;
    ZF_ASSERT (zf_clock_mono_ms () < wait->deadline);
    return wait->condition (wait->state) ? -1 : 0;
}

static void s_test_run_until (zloop_t *loop, s_test_state_t *state, s_test_condition_fn *condition)
{
    s_test_wait_t wait = {condition, state, zf_clock_mono_ms () + 5000};
    int timer = zloop_timer (loop, 5, 0, s_test_check, &wait);
    zloop_start (loop);
    zloop_timer_end (loop, timer);
}

static bool s_test_four_answers (s_test_state_t *state)
{
    return state->replies + state->remote_errors == 4 && state->events >= 3;
}

static bool s_test_one_timeout (s_test_state_t *state)
{
    return state->timeouts == 1;
}

static bool s_test_one_reply (s_test_state_t *state)
{
    return state->replies == 1;
}

static bool s_test_one_error (s_test_state_t *state)
{
    return state->remote_errors == 1;
}

static int s_test_stop_after (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

static void s_test_run_for (zloop_t *loop, size_t ms)
{
    zloop_timer (loop, ms, 1, s_test_stop_after, NULL);
    zloop_start (loop);
}

//  Two requests that expire in the same timer round, each callback forgetting the other: the
//  timer must not look the forgotten one up again (it crashed on a NULL pending).
typedef struct {
    zf_bus_t *bus;
    void *other;
    int *timeouts;
} s_test_forget_t;

static void s_test_on_forget (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err, void *arg)
{
    (void) reply;
    (void) err;
    s_test_forget_t *self = arg;
    ZF_ASSERT (status == ZF_E_TIMEOUT);
    (*self->timeouts)++;
    zf_bus_forget (bus, self->other);
}

//  Patient requests over ipc:// to a server that holds them: no deadline while connected, sent
//  again after the server came back on the same endpoint, "no connection" when nobody listens.
static void s_test_patient (zf_node_t *node, zloop_t *loop, zf_bus_t *client,
                            const char *ipc_endpoint, s_test_state_t *state)
{
    zf_error_t err;
    //  Actor names of their own: an inproc:// name is free again only once libzmq's reaper has
    //  closed the old socket, which happens a moment after zf_bus_destroy.
    zf_bus_t *server = zf_bus_new (node, "server2", ipc_endpoint, NULL, &err);
    ZF_ASSERT (server);
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_serve, state);
    zf_bus_attach (server, loop);
    state->hold_replies = true;
    state->has_held = false;
    state->replies = state->timeouts = 0;
    //  Long enough for the reconnection to the new server (libzmq retries every 100 ms).
    zf_bus_call_t patient = {.timeout_ms = 500, .patient = true};
    zf_msg_echo_request_t request = {.seq = 20, .text = "patient"};
    zmsg_t *raw = zmsg_new (); //  kept, and sent again with the request
    zmsg_addstr (raw, "bulk bytes");
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &request, &raw, patient,
                               s_test_on_reply, state, &err)
               == ZF_OK);
    s_test_run_for (loop, 1200); //  more than twice its timeout, connected all along
    ZF_ASSERT (state->timeouts == 0 && state->has_held);
    //  The server restarts: what it held is lost, the request reaches the new one.
    zf_bus_destroy (&server);
    state->has_held = false;
    server = zf_bus_new (node, "server3", ipc_endpoint, NULL, &err);
    ZF_ASSERT (server);
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_serve, state);
    zf_bus_attach (server, loop);
    state->hold_replies = false;
    s_test_run_until (loop, state, s_test_one_reply);
    ZF_ASSERT (state->timeouts == 0 && zf_bus_pending (client) == 0);
    //  Nobody listens: "no connection" after the timeout.
    zf_bus_destroy (&server);
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &request, NULL, patient,
                               s_test_on_reply, state, &err)
               == ZF_OK);
    s_test_run_until (loop, state, s_test_one_timeout);
    ZF_ASSERT (strstr (state->last_error, "no connection to 'far-server' for echo.request"));
}

//  A request's own heap state, as callers that allocate one per request pass it: the callback
//  frees it when it runs, the drop function when the bus is destroyed first.
typedef struct {
    s_test_state_t *state;
} s_test_owned_t;

static s_test_owned_t *s_test_owned_new (s_test_state_t *state)
{
    s_test_owned_t *owned = zf_calloc (1, sizeof *owned);
    owned->state = state;
    return owned;
}

static void s_test_owned_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                                const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    (void) err;
    s_test_owned_t *owned = arg;
    ZF_ASSERT (status == ZF_OK);
    owned->state->replies++;
    zf_free (owned);
}

static void s_test_owned_drop (void *arg)
{
    s_test_owned_t *owned = arg;
    owned->state->drops++;
    owned->state->dropped = (uintptr_t) arg;
    zf_free (owned);
}

//  Drop functions: called once, with its arg, for the request the bus drops unanswered when it
//  is destroyed; never for a request answered, forgotten or refused. Under ASan nothing leaks.
static void s_test_drop (zf_node_t *node, zloop_t *loop)
{
    zf_error_t err;
    s_test_state_t serving = {0}, state = {0};
    zf_bus_t *server = zf_bus_new (node, "server4", NULL, NULL, &err);
    zf_bus_t *mute = zf_bus_new (node, "mute", NULL, NULL, &err); //  never attached: never answers
    zf_bus_t *client = zf_bus_new (node, "client2", NULL, NULL, &err);
    ZF_ASSERT (server && mute && client);
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_serve, &serving);
    zf_bus_attach (server, loop);
    zf_bus_attach (client, loop);
    zf_bus_call_t call = ZF_BUS_CALL_DEFAULT; //  to actors of this process: no deadline
    call.drop = s_test_owned_drop;
    zf_msg_echo_request_t request = {.seq = 30, .text = "drop"};

    //  Answered: the callback frees arg, the drop function never runs.
    ZF_ASSERT (zf_bus_request (client, "server4", &zf_msg_echo_request, &request, NULL, call,
                               s_test_owned_reply, s_test_owned_new (&state), &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_reply);

    //  Refused (no route): the caller keeps arg.
    s_test_owned_t *refused = s_test_owned_new (&state);
    ZF_ASSERT (zf_bus_request (client, "nobody", &zf_msg_echo_request, &request, NULL, call,
                               s_test_owned_reply, refused, &err)
               == ZF_E_UNREACHABLE);
    zf_free (refused);

    //  Forgotten: the caller that forgot it keeps arg.
    s_test_owned_t *forgotten = s_test_owned_new (&state);
    ZF_ASSERT (zf_bus_request (client, "mute", &zf_msg_echo_request, &request, NULL, call,
                               s_test_owned_reply, forgotten, &err)
               == ZF_OK);
    ZF_ASSERT (zf_bus_forget (client, forgotten) == 1);
    zf_free (forgotten);
    ZF_ASSERT (state.drops == 0);

    //  Still pending when the bus goes: dropped, once, with its arg.
    s_test_owned_t *pending = s_test_owned_new (&state);
    uintptr_t pending_address = (uintptr_t) pending;
    ZF_ASSERT (zf_bus_request (client, "mute", &zf_msg_echo_request, &request, NULL, call,
                               s_test_owned_reply, pending, &err)
               == ZF_OK);
    ZF_ASSERT (zf_bus_pending (client) == 1);
    zf_bus_destroy (&client);
    ZF_ASSERT (state.drops == 1 && state.dropped == pending_address && state.replies == 1);
    zf_bus_destroy (&mute);
    zf_bus_destroy (&server);
}

//  A burst of requests, more than one ready callback takes (READY_BATCH), queued before the
//  loop runs: the server's inbox and the client's link take them in batches, and every one is
//  handled once, in the order sent, its reply too.
typedef struct {
    zf_bus_t *bus;
    uint64_t served[100], answered[100];
    size_t served_count, answered_count;
    int64_t deadline;
} s_test_burst_t;

static void s_test_burst_serve (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    s_test_burst_t *burst = arg;
    const zf_msg_echo_request_t *body = request->env.body;
    ZF_ASSERT (burst->served_count < ZF_ARRAY_LEN (burst->served));
    burst->served[burst->served_count++] = body->seq;
    zf_msg_echo_reply_t reply = {.seq = body->seq, .text = body->text, .served_by = "server"};
    zf_bus_reply (bus, &request->return_to, &zf_msg_echo_reply, &reply, NULL);
}

static void s_test_burst_answer (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                                 const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) err;
    s_test_burst_t *burst = arg;
    ZF_ASSERT (status == ZF_OK && burst->answered_count < ZF_ARRAY_LEN (burst->answered));
    const zf_msg_echo_reply_t *body = reply->env.body;
    burst->answered[burst->answered_count++] = body->seq;
}

static int s_test_burst_check (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_test_burst_t *burst = arg;
    ZF_ASSERT (zf_clock_mono_ms () < burst->deadline);
    return burst->answered_count == ZF_ARRAY_LEN (burst->answered) ? -1 : 0;
}

static void s_test_burst (void)
{
    zf_node_options_t options = {.name = "burst", .hwm = 1000, .request_timeout_ms = 5000};
    zf_node_t *node = zf_node_new (&options, NULL);
    zf_node_add_local (node, "server");
    zf_node_add_local (node, "client");
    zf_error_t err;
    zf_bus_t *server = zf_bus_new (node, "server", NULL, NULL, &err);
    zf_bus_t *client = zf_bus_new (node, "client", NULL, NULL, &err);
    ZF_ASSERT (server && client);
    s_test_burst_t burst = {0};
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_burst_serve, &burst);
    zloop_t *loop = zloop_new ();
    zf_bus_attach (server, loop);
    zf_bus_attach (client, loop);
    for (uint64_t seq = 1; seq <= ZF_ARRAY_LEN (burst.served); seq++) {
        zf_msg_echo_request_t request = {.seq = seq, .text = "burst"};
        ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &request, NULL,
                                   ZF_BUS_CALL_DEFAULT, s_test_burst_answer, &burst, &err)
                   == ZF_OK);
    }
    burst.deadline = zf_clock_mono_ms () + 5000;
    zloop_timer (loop, 1, 0, s_test_burst_check, &burst);
    zloop_start (loop);
    ZF_ASSERT (burst.served_count == ZF_ARRAY_LEN (burst.served));
    for (size_t index = 0; index < ZF_ARRAY_LEN (burst.served); index++)
        ZF_ASSERT (burst.served[index] == index + 1 && burst.answered[index] == index + 1);
    zf_bus_destroy (&client);
    zf_bus_destroy (&server);
    zloop_destroy (&loop);
    zf_node_destroy (&node);
}

void zf_bus_test (bool verbose)
{
    (void) verbose;
    zsys_set_linger (0);
    zf_node_options_t options = {.name = "selftest", .hwm = 4, .request_timeout_ms = 2000};
    zf_node_t *node = zf_node_new (&options, NULL);
    ZF_ASSERT (node);
    zf_node_add_local (node, "server");
    zf_node_add_local (node, "client");
    zf_node_add_local (node, "silent"); //  declared, but nobody ever reads its inbox
    zf_node_add_local (node, "server2");
    zf_node_add_local (node, "server3");
    zf_node_add_local (node, "server4");
    zf_node_add_local (node, "client2");
    zf_node_add_local (node, "mute");
    zf_error_t err;
    //  The server also listens on ipc://, reached by the name "far-server" as if it lived in
    //  another process: requests over it are resent, requests over inproc:// are not.
    char ipc_endpoint[64];
    snprintf (ipc_endpoint, sizeof ipc_endpoint, "ipc:///tmp/zf-bus-test-%d", (int) getpid ());
    ZF_ASSERT (zf_node_add_route (node, "far-server", ipc_endpoint, "selftest", &err) == ZF_OK);
    zf_bus_t *server = zf_bus_new (node, "server", ipc_endpoint, NULL, &err);
    zf_bus_t *client = zf_bus_new (node, "client", NULL, NULL, &err);
    zf_bus_t *silent = zf_bus_new (node, "silent", NULL, NULL, &err);
    ZF_ASSERT (server && client && silent);
    ZF_ASSERT (streq (zf_bus_address (client), "client@selftest"));
    s_test_state_t state = {0};
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_serve, &state);
    zloop_t *loop = zloop_new ();
    zloop_set_nonstop (loop, true);
    zf_bus_attach (server, loop);
    zf_bus_attach (client, loop);
    ZF_ASSERT (zf_bus_subscribe (client, "server", "echo.", s_test_on_event, &state, &err)
               == ZF_OK);
    //  Subscriptions travel separately: let the SUB connect before the events matter.
    zloop_timer (loop, 50, 1, s_test_stop_after, NULL);
    zloop_start (loop);

    //  Replies (with a raw frame riding along), an error reply, an unknown type.
    for (uint64_t seq = 1; seq <= 3; seq++) {
        zf_msg_echo_request_t request = {.seq = seq, .text = "hello"};
        zmsg_t *raw = zmsg_new ();
        zmsg_addstr (raw, "bulk bytes");
        ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &request, &raw,
                                   ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
                   == ZF_OK);
        ZF_ASSERT (raw == NULL);
    }
    zf_msg_echo_request_t failing = {.seq = 4, .text = "", .fail = true};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &failing, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_four_answers);
    ZF_ASSERT (state.replies == 3 && state.remote_errors == 1);
    //  Requests to an actor of this process have no deadline: the bus armed no timer for them.
    ZF_ASSERT (!client->timer_armed);
    ZF_ASSERT (strstr (state.last_error, "server@selftest: asked to fail (invalid)"));
    ZF_ASSERT (state.last_code == ZF_CODE_INVALID);

    //  Declared codes: the caller compares constants, whichever form the server used.
    const char *coded[] = {"busy", "not_found"};
    const zf_code_t expected[] = {ZF_CODE_BUSY, ZF_CODE_NOT_FOUND};
    for (size_t index = 0; index < ZF_ARRAY_LEN (coded); index++) {
        zf_msg_echo_request_t request = {.seq = 5, .text = (char *) coded[index], .fail = true};
        state.remote_errors = 0;
        ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &request, NULL,
                                   ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
                   == ZF_OK);
        s_test_run_until (loop, &state, s_test_one_error);
        ZF_ASSERT (state.last_code == expected[index]);
        ZF_ASSERT (strstr (state.last_error, coded[index]));
    }

    zf_msg_echo_seen_t unhandled = {.seq = 1};
    state.remote_errors = 0;
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_seen, &unhandled, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_error);
    ZF_ASSERT (strstr (state.last_error, "does not handle 'echo.seen'"));
    ZF_ASSERT (state.last_code == ZF_CODE_UNKNOWN_TYPE);

    //  No route: refused at once, the callback never runs.
    ZF_ASSERT (zf_bus_request (client, "nobody", &zf_msg_echo_request, &failing, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_E_UNREACHABLE);
    ZF_ASSERT (strstr (err.message, "no endpoint for actor 'nobody'"));

    //  Invalid body: refused before sending, naming the field.
    char *oversize = zf_calloc (1, 70000);
    memset (oversize, 'x', 69999);
    zf_msg_echo_request_t too_long = {.seq = 9, .text = oversize};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &too_long, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_E_TOO_LARGE);
    ZF_ASSERT (strstr (err.where, "text"));
    zf_free (oversize);

    //  A server that holds the request: two resends, then one timeout; the late reply that
    //  follows is counted and dropped.
    state.hold_replies = true;
    zf_bus_call_t quick = {.timeout_ms = 150, .retries = 2};
    zf_msg_echo_request_t held = {.seq = 10, .text = "late"};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &held, NULL, quick,
                               s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_timeout);
    ZF_ASSERT (strstr (state.last_error, "no reply from 'server' to echo.request"));
    ZF_ASSERT (strstr (state.last_error, "(1 attempt)")); //  inproc: never resent
    state.timeouts = 0;
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &held, NULL, quick,
                               s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_timeout);
    ZF_ASSERT (strstr (state.last_error, "no reply from 'far-server' to echo.request"));
    ZF_ASSERT (strstr (state.last_error, "(3 attempts)"));
    ZF_ASSERT (state.has_held);
    uint64_t late_before = zf_counter_value (client->late_replies);
    zf_msg_echo_reply_t late = {.seq = 10, .text = "late", .served_by = "server"};
    zf_bus_reply (server, &state.held, &zf_msg_echo_reply, &late, NULL);
    zloop_timer (loop, 50, 1, s_test_stop_after, NULL);
    zloop_start (loop);
    ZF_ASSERT (zf_counter_value (client->late_replies) == late_before + 1);
    ZF_ASSERT (zf_bus_pending (client) == 0);

    //  To an actor of this process with no explicit timeout: no deadline at all (the node's
    //  default, 2 s here, passes), the reply comes when the busy actor gets to it.
    state.replies = state.timeouts = 0;
    state.has_held = false;
    zf_msg_echo_request_t busy = {.seq = 11, .text = "busy"};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &busy, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_for (loop, (size_t) options.request_timeout_ms + 200);
    ZF_ASSERT (state.timeouts == 0 && state.has_held);
    zf_msg_echo_reply_t answer = {.seq = 11, .text = "busy", .served_by = "server"};
    zmsg_t *frame = zmsg_new ();
    zmsg_addstr (frame, "bulk bytes");
    zf_bus_reply (server, &state.held, &zf_msg_echo_reply, &answer, &frame);
    s_test_run_until (loop, &state, s_test_one_reply);

    //  Two requests expiring in one round, each callback forgetting the other: one callback.
    int forget_timeouts = 0;
    s_test_forget_t first = {client, NULL, &forget_timeouts},
                    second = {client, &first, &forget_timeouts};
    first.other = &second;
    zf_msg_echo_request_t forgotten = {.seq = 12, .text = "forget"};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &forgotten, NULL,
                               (zf_bus_call_t){.timeout_ms = 101, .retries = 0}, s_test_on_forget,
                               &first, &err)
               == ZF_OK);
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &forgotten, NULL,
                               (zf_bus_call_t){.timeout_ms = 100, .retries = 0}, s_test_on_forget,
                               &second, &err)
               == ZF_OK);
    s_test_run_for (loop, 300);
    ZF_ASSERT (forget_timeouts == 1 && zf_bus_pending (client) == 0);

    //  One timer waits for the earliest deadline: a request due sooner than the one it waits
    //  for moves it (a minute, then 100 ms: the short one times out within the 5 s of
    //  s_test_run_until, the long one still waits).
    state.timeouts = 0;
    zf_msg_echo_request_t patient_long = {.seq = 13, .text = "long"};
    zf_msg_echo_request_t short_one = {.seq = 14, .text = "short"};
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &patient_long, NULL,
                               (zf_bus_call_t){.timeout_ms = 60000, .retries = 0}, s_test_on_reply,
                               &state, &err)
               == ZF_OK);
    ZF_ASSERT (client->timer_armed);
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &short_one, NULL,
                               (zf_bus_call_t){.timeout_ms = 100, .retries = 0}, s_test_on_reply,
                               &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_timeout);
    ZF_ASSERT (zf_bus_pending (client) == 1 && client->timer_armed);
    ZF_ASSERT (zf_bus_forget (client, &state) == 1);
    state.hold_replies = false;

    zf_bus_destroy (&server);
    s_test_patient (node, loop, client, ipc_endpoint, &state);
    s_test_drop (node, loop);

    //  High-water mark: nobody reads "silent", so after hwm messages (send and receive
    //  queues of the inproc pipe) sends are dropped, counted and reported, never blocking.
    int dropped = 0;
    for (uint64_t seq = 0; seq < 64; seq++) {
        zf_msg_echo_request_t request = {.seq = seq, .text = "x"};
        if (zf_bus_request (client, "silent", &zf_msg_echo_request, &request, NULL,
                            (zf_bus_call_t){.timeout_ms = 60000, .retries = 0}, s_test_on_reply,
                            &state, &err)
            == ZF_E_OVERLOAD)
            dropped++;
    }
    ZF_ASSERT (dropped > 0 && dropped < 64);
    ZF_ASSERT (strstr (err.message, "queue to 'silent' is full"));
    ZF_ASSERT (zf_counter_value (zf_bus_counters (client, "echo.request")->dropped)
               == (uint64_t) dropped);

    zf_bus_destroy (&silent);
    zf_bus_destroy (&client);
    zloop_destroy (&loop);
    zf_node_destroy (&node);
    s_test_burst ();
}
