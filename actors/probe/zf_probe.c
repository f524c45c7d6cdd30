/*  zf_probe.c — request/reply/event round trips against a target actor. */
#include "zf_probe.h"
#include "zf_bus.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include <jansson.h>

#define HELLO_INTERVAL_MS 100

typedef enum { PHASE_HELLO, PHASE_RUN, PHASE_DONE } phase_t;

typedef struct {
    const char *name;
    const zf_probe_config_t *config;
    zsock_t *pipe;
    zf_bus_t *bus;
    zloop_t *loop;
    phase_t phase;
    int64_t started_ms;
    bool hello_replied, hello_seen;
    uint64_t next_seq; //  next request to send, 1..count
    uint64_t answered; //  replies and errors received for seq >= 1
    uint64_t replies, errors, events, mismatches, local_failures;
    bool unhandled_checked; //  the error for a type the target does not handle arrived
    json_t *error_log;      //  [{seq, code, message}] of remote errors, in seq order of arrival
    char *text;             //  the text every request carries (pattern, text_size bytes)
} self_t;

static void s_send_next (self_t *self);

static bool s_expect_failure (const self_t *self, uint64_t seq)
{
    return self->config->fail_every > 0 && seq % (uint64_t) self->config->fail_every == 0;
}

static void s_finish (self_t *self)
{
    if (self->phase == PHASE_DONE)
        return;
    self->phase = PHASE_DONE;
    uint64_t expected_errors = self->config->fail_every > 0
                                   ? (uint64_t) (self->config->count / self->config->fail_every)
                                   : 0;
    bool ok = self->answered == (uint64_t) self->config->count && self->mismatches == 0
              && self->local_failures == 0 && self->errors == expected_errors
              && self->events >= (uint64_t) self->config->count && self->unhandled_checked;
    json_t *report = json_pack (
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:O, s:b, s:I}", "target", self->config->target,
        "sent", (json_int_t) self->config->count, "replies", (json_int_t) self->replies, "errors",
        (json_int_t) self->errors, "events", (json_int_t) self->events, "mismatches",
        (json_int_t) self->mismatches, "local_failures", (json_int_t) self->local_failures,
        "unhandled_type_refused", self->unhandled_checked, "error_log", self->error_log, "ok", ok,
        "elapsed_ms", (json_int_t) (zf_clock_mono_ms () - self->started_ms));
    zf_notice (self->name,
               "done target=%s sent=%" PRId64 " replies=%" PRIu64 " errors=%" PRIu64
               " events=%" PRIu64 " mismatches=%" PRIu64 " local_failures=%" PRIu64 " ok=%s",
               self->config->target, self->config->count, self->replies, self->errors, self->events,
               self->mismatches, self->local_failures, ok ? "true" : "false");
    if (*self->config->report
        && json_dump_file (report, self->config->report, JSON_INDENT (2) | JSON_SORT_KEYS) != 0)
        zf_error_log (self->name, "cannot write report %s", self->config->report);
    json_decref (report);
    if (self->config->exit)
        zstr_sendx (self->pipe, "DONE", ok ? "0" : "1", NULL);
}

static void s_check_done (self_t *self)
{
    if (self->phase == PHASE_RUN && self->answered == (uint64_t) self->config->count
        && self->events >= (uint64_t) self->config->count && self->unhandled_checked)
        s_finish (self);
}

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);

static void s_on_unhandled (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                            const zf_error_t *err, void *arg)
{
    (void) bus;
    self_t *self = arg;
    const zf_msg_error_t *body = reply && status == ZF_E_REMOTE ? reply->env.body : NULL;
    if (zf_bus_error_code (status, reply) == ZF_CODE_UNKNOWN_TYPE)
        self->unhandled_checked = true;
    else {
        self->mismatches++;
        zf_warning (self->name, "expected unknown_type for an unhandled type, got %s: %s",
                    zf_status_name (status), err ? err->message : "a reply");
    }
    json_array_append_new (self->error_log,
                           json_pack ("{s:s, s:s, s:s}", "seq", "unhandled", "code",
                                      body ? body->code : zf_status_name (status), "message",
                                      err ? err->message : ""));
    s_check_done (self);
}

static void s_send (self_t *self, uint64_t seq)
{
    zf_msg_echo_request_t request = {
        .seq = seq, .text = self->text, .fail = seq > 0 && s_expect_failure (self, seq)};
    zf_bus_call_t call = {.timeout_ms = self->config->timeout_ms, .retries = 0};
    zf_error_t err;
    if (zf_bus_request (self->bus, self->config->target, &zf_msg_echo_request, &request, NULL, call,
                        s_on_reply, self, &err)
        != ZF_OK) {
        zf_warning (self->name, "request seq=%" PRIu64 " not sent: %s", seq, err.message);
        if (seq > 0) {
            self->local_failures++;
            self->answered++;
        }
    }
}

static void s_send_next (self_t *self)
{
    while (self->phase == PHASE_RUN && self->next_seq <= (uint64_t) self->config->count
           && zf_bus_pending (self->bus) < (size_t) self->config->inflight)
        s_send (self, self->next_seq++);
    s_check_done (self);
}

static void s_start_run (self_t *self)
{
    self->phase = PHASE_RUN;
    zf_info (self->name, "round trip to %s works; sending %" PRId64 " requests",
             self->config->target, self->config->count);
    zf_msg_echo_seen_t unhandled = {.seq = 0, .ok = true};
    zf_error_t err;
    if (zf_bus_request (self->bus, self->config->target, &zf_msg_echo_seen, &unhandled, NULL,
                        (zf_bus_call_t){.timeout_ms = self->config->timeout_ms, .retries = 0},
                        s_on_unhandled, self, &err)
        != ZF_OK)
        self->local_failures++;
    s_send_next (self);
}

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    self_t *self = arg;
    if (self->phase == PHASE_HELLO) {
        if (status == ZF_OK)
            self->hello_replied = true;
        if (self->hello_replied && self->hello_seen)
            s_start_run (self);
        return;
    }
    if (self->phase != PHASE_RUN)
        return;
    if (status == ZF_OK) {
        const zf_msg_echo_reply_t *body = reply->env.body;
        if (body->seq == 0)
            return; //  a late hello
        self->replies++;
        self->answered++;
        if (s_expect_failure (self, body->seq) || !streq (body->text, self->text))
            self->mismatches++;
    } else if (status == ZF_E_REMOTE) {
        const zf_msg_error_t *body = reply->env.body;
        self->errors++;
        self->answered++;
        json_array_append_new (self->error_log,
                               json_pack ("{s:s, s:s, s:s}", "seq", "request", "code", body->code,
                                          "message", err->message));
    } else {
        self->local_failures++;
        self->answered++;
        zf_warning (self->name, "request failed: %s", err->message);
    }
    s_send_next (self);
}

static void s_on_event (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    self_t *self = arg;
    const zf_msg_echo_seen_t *body = event->env.body;
    if (self->phase == PHASE_HELLO && body->seq == 0) {
        self->hello_seen = true;
        if (self->hello_replied)
            s_start_run (self);
    } else if (self->phase == PHASE_RUN && body->seq > 0) {
        self->events++;
        s_check_done (self);
    }
}

//  Until one hello and its event made the round trip, say hello again every interval: the
//  subscription travels separately from the requests and may not be in place yet.
static int s_hello_timer (zloop_t *loop, int timer_id, void *arg)
{
    self_t *self = arg;
    if (self->phase != PHASE_HELLO) {
        zloop_timer_end (loop, timer_id);
        return 0;
    }
    if (zf_clock_mono_ms () - self->started_ms > self->config->connect_ms) {
        zf_error_log (self->name,
                      "no round trip to '%s' within %" PRId64 " ms (reply %s, event %s)",
                      self->config->target, self->config->connect_ms,
                      self->hello_replied ? "received" : "missing",
                      self->hello_seen ? "received" : "missing");
        zloop_timer_end (loop, timer_id);
        s_finish (self);
        return 0;
    }
    if (zf_bus_pending (self->bus) < 4)
        s_send (self, 0);
    return 0;
}

void zf_probe_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    self_t self = {.name = actor->name, .config = actor->config, .pipe = pipe};
    zf_error_t err;
    self.bus = zf_bus_new (actor->node, actor->name, NULL, NULL, &err);
    zf_status_t status = self.bus ? zf_bus_subscribe (self.bus, self.config->target, "echo.seen",
                                                      s_on_event, &self, &err)
                                  : err.code;
    zsock_signal (pipe, 0);
    if (status != ZF_OK) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        zf_bus_destroy (&self.bus);
        return;
    }
    self.text = zf_malloc ((size_t) self.config->text_size + 1);
    for (int64_t index = 0; index < self.config->text_size; index++)
        self.text[index] = (char) ('a' + index % 26);
    self.text[self.config->text_size] = '\0';
    self.error_log = json_array ();
    self.next_seq = 1;
    self.started_ms = zf_clock_mono_ms ();

    self.loop = zloop_new ();
    zloop_set_nonstop (self.loop, true);
    zloop_reader (self.loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (self.bus, self.loop);
    zloop_timer (self.loop, HELLO_INTERVAL_MS, 0, s_hello_timer, &self);
    zstr_send (pipe, "READY");
    s_send (&self, 0);
    zloop_start (self.loop);

    zf_bus_destroy (&self.bus); //  before its loop: it unregisters its sockets
    zloop_destroy (&self.loop);
    json_decref (self.error_log);
    zf_free (self.text);
}
