/*  zf_curl_loop.c — libcurl's multi_socket API on a czmq zloop. */
#include "zf_curl_loop.h"

struct zf_curl_loop_s {
    zloop_t *loop;
    CURLM *multi;
    int timer_id; //  -1: none
    zf_curl_done_fn *done;
    void *done_arg;
    bool reporting; //  inside s_report_done: no nested report loop
};

static void s_report_done (zf_curl_loop_t *self)
{
    if (self->reporting)
        return;
    self->reporting = true;
    CURLMsg *message;
    int queued;
    while ((message = curl_multi_info_read (self->multi, &queued))) {
        if (message->msg != CURLMSG_DONE)
            continue;
        CURL *easy = message->easy_handle;
        CURLcode result = message->data.result; //  message is invalid after the remove
        void *easy_private = NULL;
        curl_easy_getinfo (easy, CURLINFO_PRIVATE, &easy_private);
        curl_multi_remove_handle (self->multi, easy);
        self->done (easy, result, easy_private, self->done_arg);
    }
    self->reporting = false;
}

static void s_socket_action (zf_curl_loop_t *self, curl_socket_t fd, int flags)
{
    int still_running = 0;
    curl_multi_socket_action (self->multi, fd, flags, &still_running);
    s_report_done (self);
}

static int s_on_fd (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    int flags = 0;
    if (item->revents & ZMQ_POLLIN)
        flags |= CURL_CSELECT_IN;
    if (item->revents & ZMQ_POLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (item->revents & ZMQ_POLLERR)
        flags |= CURL_CSELECT_ERR;
    s_socket_action (arg, item->fd, flags);
    return 0;
}

static int s_on_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    zf_curl_loop_t *self = arg;
    if (timer_id == self->timer_id)
        self->timer_id = -1; //  one-shot: zloop already dropped it
    s_socket_action (self, CURL_SOCKET_TIMEOUT, 0);
    return 0;
}

//  CURLMOPT_SOCKETFUNCTION: (re)register the fd with the events curl wants. zloop changes a
//  poller's events only by ending it and adding it again.
static int s_curl_socket (CURL *easy, curl_socket_t fd, int what, void *arg, void *socket_arg)
{
    (void) easy;
    (void) socket_arg;
    zf_curl_loop_t *self = arg;
    zmq_pollitem_t item = {.socket = NULL, .fd = fd, .events = 0};
    zloop_poller_end (self->loop, &item);
    if (what == CURL_POLL_REMOVE)
        return 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        item.events |= ZMQ_POLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        item.events |= ZMQ_POLLOUT;
    if (zloop_poller (self->loop, &item, s_on_fd, self) != 0)
        return -1;
    //  A socket error is curl's to handle, not a reason for zloop to drop the poller.
    zloop_poller_set_tolerant (self->loop, &item);
    return 0;
}

//  CURLMOPT_TIMERFUNCTION: one pending timer at most; -1 cancels it.
static int s_curl_timer (CURLM *multi, long timeout_ms, void *arg)
{
    (void) multi;
    zf_curl_loop_t *self = arg;
    if (self->timer_id >= 0) {
        zloop_timer_end (self->loop, self->timer_id);
        self->timer_id = -1;
    }
    if (timeout_ms >= 0)
        self->timer_id =
            zloop_timer (self->loop, timeout_ms > 0 ? (size_t) timeout_ms : 1, 1, s_on_timer, self);
    return 0;
}

zf_curl_loop_t *zf_curl_loop_new (zloop_t *loop, zf_curl_done_fn *done, void *arg)
{
    zf_curl_loop_t *self = zf_calloc (1, sizeof *self);
    self->loop = loop;
    self->done = done;
    self->done_arg = arg;
    self->timer_id = -1;
    self->multi = curl_multi_init ();
    ZF_ASSERT (self->multi);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETFUNCTION, s_curl_socket);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERFUNCTION, s_curl_timer);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERDATA, self);
    return self;
}

void zf_curl_loop_destroy (zf_curl_loop_t **self_p)
{
    zf_curl_loop_t *self = *self_p;
    if (!self)
        return;
    if (self->timer_id >= 0)
        zloop_timer_end (self->loop, self->timer_id);
    curl_multi_cleanup (self->multi);
    zf_free (self);
    *self_p = NULL;
}

void zf_curl_loop_add (zf_curl_loop_t *self, CURL *easy)
{
    ZF_ASSERT (curl_multi_add_handle (self->multi, easy) == CURLM_OK);
}

void zf_curl_loop_remove (zf_curl_loop_t *self, CURL *easy)
{
    curl_multi_remove_handle (self->multi, easy);
}

void zf_curl_loop_unpause (zf_curl_loop_t *self, CURL *easy)
{
    curl_easy_pause (easy, CURLPAUSE_CONT);
    //  Unpausing may have finished the transfer (data buffered before the pause).
    s_report_done (self);
}
