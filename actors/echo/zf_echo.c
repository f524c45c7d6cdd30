/*  zf_echo.c — answers every echo.request and publishes what it served. */
#include "zf_echo.h"
#include "zf_bus.h"
#include "zf_log.h"
#include "zf_msgs.h"

typedef struct {
    const char *name;
    zf_bus_t *bus;
    uint64_t served;
} self_t;

static void s_handle_request (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    const zf_msg_echo_request_t *body = request->env.body;
    zf_msg_echo_seen_t seen = {.seq = body->seq, .ok = !body->fail};
    if (body->fail)
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "fail",
                            "failure requested by seq %" PRIu64, body->seq);
    else {
        zf_msg_echo_reply_t reply = {
            .seq = body->seq, .text = body->text, .served_by = (char *) zf_bus_address (bus)};
        zf_bus_reply (bus, &request->return_to, &zf_msg_echo_reply, &reply, &request->raw);
    }
    zf_bus_publish (bus, &zf_msg_echo_seen, &seen);
    self->served++;
    zf_debug (self->name, "served seq=%" PRIu64 " from=%s", body->seq, request->env.from);
}

void zf_echo_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    const zf_echo_config_t *config = actor->config;
    self_t self = {.name = actor->name};
    zf_error_t err;
    self.bus = zf_bus_new (actor->node, actor->name, config->bind, config->events_bind, &err);
    zsock_signal (pipe, 0);
    if (!self.bus) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        return;
    }
    zf_bus_handle (self.bus, ZF_MSG_ECHO_REQUEST, s_handle_request, &self);
    zloop_t *loop = zloop_new ();
    zloop_set_nonstop (loop, true); //  the daemon handles signals and sends $TERM
    zloop_reader (loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (self.bus, loop);
    zf_notice (self.name, "started bind=%s events_bind=%s", *config->bind ? config->bind : "-",
               *config->events_bind ? config->events_bind : "-");
    zstr_send (pipe, "READY");
    zloop_start (loop);
    zf_info (self.name, "stopped served=%" PRIu64, self.served);
    zf_bus_destroy (&self.bus); //  before its loop: it unregisters its sockets
    zloop_destroy (&loop);
}
