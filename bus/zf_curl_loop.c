/*  zf_curl_loop.c — libcurl's multi_socket API on a czmq zloop. */
#include "zf_curl_loop.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

struct zf_curl_loop_s {
    zloop_t *loop;
    CURLM *multi;
    int timer_id; //  -1: none
    zf_curl_done_fn *done;
    void *done_arg;
    bool reporting;      //  inside s_report_done: no nested report loop
    size_t turn_bytes;   //  body bytes delivered in this turn (one socket action)
    zlist_t *yielded;    //  easy handles paused by zf_curl_loop_yield, unpaused next turn
    int resume_timer_id; //  -1: none
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
        zlist_remove (self->yielded, easy);
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
    self->turn_bytes = 0;
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

//  libcurl's timeout in zloop's terms. 0 is libcurl's "as soon as possible": a zloop timer of
//  0 ms, run on the loop's next turn (libcurl may not be called from its own callback). It was
//  1 ms, as in libcurl's libuv example: a whole poll of at least a millisecond before every
//  transfer started, and at each other "now" libcurl asked for; a cold blob's first range
//  reached the registry about 1 ms later for it (docs/benchmarks.md "Every holder its share
//  of children", the first byte through A).
static size_t s_timer_delay (long timeout_ms)
{
    return timeout_ms > 0 ? (size_t) timeout_ms : 0;
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
        self->timer_id = zloop_timer (self->loop, s_timer_delay (timeout_ms), 1, s_on_timer, self);
    return 0;
}

//  The next turn: transfers that yielded go on (each may deliver its held chunk at once).
static int s_on_resume (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_curl_loop_t *self = arg;
    self->resume_timer_id = -1;
    //  Those that yield again meanwhile wait for the turn after this one: the count bounds it.
    //  A callback may remove a handle still waiting here (zf_curl_loop_remove takes it out).
    size_t count = zlist_size (self->yielded);
    CURL *easy;
    while (count-- > 0 && (easy = zlist_pop (self->yielded))) {
        self->turn_bytes = 0;
        curl_easy_pause (easy, CURLPAUSE_CONT);
    }
    //  Unpausing may have finished transfers (data buffered before the pause).
    s_report_done (self);
    return 0;
}

bool zf_curl_loop_yield (zf_curl_loop_t *self, CURL *easy, size_t size)
{
    if (self->turn_bytes == 0 || self->turn_bytes + size <= ZF_CURL_LOOP_TURN_BYTES) {
        self->turn_bytes += size;
        return false;
    }
    zlist_append (self->yielded, easy);
    if (self->resume_timer_id < 0)
        self->resume_timer_id = zloop_timer (self->loop, 0, 1, s_on_resume, self);
    return true;
}

zf_curl_loop_t *zf_curl_loop_new (zloop_t *loop, zf_curl_done_fn *done, void *arg)
{
    zf_curl_loop_t *self = zf_calloc (1, sizeof *self);
    self->loop = loop;
    self->done = done;
    self->done_arg = arg;
    self->timer_id = -1;
    self->resume_timer_id = -1;
    self->yielded = zlist_new ();
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
    if (self->resume_timer_id >= 0)
        zloop_timer_end (self->loop, self->resume_timer_id);
    zlist_destroy (&self->yielded);
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
    zlist_remove (self->yielded, easy);
    curl_multi_remove_handle (self->multi, easy);
}

void zf_curl_loop_unpause (zf_curl_loop_t *self, CURL *easy)
{
    curl_easy_pause (easy, CURLPAUSE_CONT);
    //  Unpausing may have finished the transfer (data buffered before the pause).
    s_report_done (self);
}

//  ---------------------------------------------------------------------------------------------
//  Selftest: a transfer that yields at every chunk still delivers every byte once, in order.

#define S_TEST_BODY (4u << 20)

static void *s_test_server (void *arg)
{
    int listener = *(int *) arg;
    int client = accept (listener, NULL, NULL);
    ZF_ASSERT (client >= 0);
    char request[4096];
    size_t have = 0;
    while (have < sizeof request - 1) {
        ssize_t got = recv (client, request + have, sizeof request - 1 - have, 0);
        ZF_ASSERT (got > 0);
        have += (size_t) got;
        request[have] = '\0';
        if (strstr (request, "\r\n\r\n"))
            break;
    }
    char head[128];
    int head_size = snprintf (head, sizeof head,
                              "HTTP/1.1 200 OK\r\nContent-Length: %u\r\nConnection: close\r\n\r\n",
                              S_TEST_BODY);
    ZF_ASSERT (send (client, head, (size_t) head_size, MSG_NOSIGNAL) == head_size);
    uint8_t *body = zf_malloc (S_TEST_BODY);
    for (size_t index = 0; index < S_TEST_BODY; index++)
        body[index] = (uint8_t) (index % 251);
    for (size_t sent = 0; sent < S_TEST_BODY;) {
        ssize_t done = send (client, body + sent, S_TEST_BODY - sent, MSG_NOSIGNAL);
        ZF_ASSERT (done > 0);
        sent += (size_t) done;
    }
    zf_free (body);
    close (client);
    return NULL;
}

typedef struct {
    zf_curl_loop_t *curl;
    CURL *easy;
    size_t received;
    size_t yields;
    bool in_order;
    bool done;
    CURLcode result;
} s_test_t;

static size_t s_test_body (char *data, size_t size, size_t count, void *arg)
{
    s_test_t *test = arg;
    size_t length = size * count;
    if (zf_curl_loop_yield (test->curl, test->easy, length)) {
        test->yields++;
        return CURL_WRITEFUNC_PAUSE;
    }
    for (size_t index = 0; index < length; index++)
        if ((uint8_t) data[index] != (uint8_t) ((test->received + index) % 251))
            test->in_order = false;
    test->received += length;
    return length;
}

static void s_test_done (CURL *easy, CURLcode result, void *easy_private, void *arg)
{
    (void) easy;
    (void) arg;
    s_test_t *test = easy_private;
    test->done = true;
    test->result = result;
}

static int s_test_check_done (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    return ((s_test_t *) arg)->done ? -1 : 0;
}

void zf_curl_loop_test (bool verbose)
{
    //  "As soon as possible" is the loop's next turn, not a millisecond later.
    ZF_ASSERT (s_timer_delay (0) == 0);
    ZF_ASSERT (s_timer_delay (7) == 7);

    int listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t address_size = sizeof address;
    ZF_ASSERT (bind (listener, (struct sockaddr *) &address, sizeof address) == 0);
    ZF_ASSERT (listen (listener, 1) == 0);
    ZF_ASSERT (getsockname (listener, (struct sockaddr *) &address, &address_size) == 0);
    pthread_t server;
    ZF_ASSERT (pthread_create (&server, NULL, s_test_server, &listener) == 0);

    zloop_t *loop = zloop_new ();
    s_test_t test = {.in_order = true};
    test.curl = zf_curl_loop_new (loop, s_test_done, NULL);
    test.easy = curl_easy_init ();
    char url[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%u/", ntohs (address.sin_port));
    curl_easy_setopt (test.easy, CURLOPT_URL, url);
    curl_easy_setopt (test.easy, CURLOPT_PRIVATE, &test);
    curl_easy_setopt (test.easy, CURLOPT_WRITEFUNCTION, s_test_body);
    curl_easy_setopt (test.easy, CURLOPT_WRITEDATA, &test);
    curl_easy_setopt (test.easy, CURLOPT_BUFFERSIZE, 128L * 1024);
    zf_curl_loop_add (test.curl, test.easy);
    zloop_timer (loop, 5, 0, s_test_check_done, &test);
    zloop_start (loop);

    ZF_ASSERT (test.done && test.result == CURLE_OK);
    ZF_ASSERT (test.received == S_TEST_BODY);
    ZF_ASSERT (test.in_order);
    if (verbose)
        printf (" (%zu yields)", test.yields);
    curl_easy_cleanup (test.easy);
    zf_curl_loop_destroy (&test.curl);
    zloop_destroy (&loop);
    pthread_join (server, NULL);
    close (listener);
}
