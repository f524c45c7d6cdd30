/*  zf_curl_loop.h — a libcurl multi handle driven by an actor's zloop.

    curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: a zloop poller on the fd)
    and when to call it back (CURLMOPT_TIMERFUNCTION: a one-shot zloop timer); we hand the
    events to curl_multi_socket_action and collect finished transfers with
    curl_multi_info_read. One thread, no blocking call: the actor keeps serving the bus while
    any number of transfers run.

    Finished transfers are reported through the done callback given at creation, with the
    easy handle's CURLOPT_PRIVATE pointer. The callback may add and remove transfers. */
#ifndef ZF_CURL_LOOP_H_INCLUDED
#define ZF_CURL_LOOP_H_INCLUDED

#include "zf_prelude.h"
#include <curl/curl.h>

typedef struct zf_curl_loop_s zf_curl_loop_t;

typedef void (zf_curl_done_fn) (CURL *easy, CURLcode result, void *easy_private, void *arg);

zf_curl_loop_t *zf_curl_loop_new (zloop_t *loop, zf_curl_done_fn *done, void *arg);
//  Removes (without reporting) and leaves to their owners any transfers still running.
void zf_curl_loop_destroy (zf_curl_loop_t **self_p);

//  Starts a configured easy handle; the caller keeps owning it.
void zf_curl_loop_add (zf_curl_loop_t *self, CURL *easy);
//  Stops a transfer without reporting it; the caller may then free the handle.
void zf_curl_loop_remove (zf_curl_loop_t *self, CURL *easy);
//  Lets curl deliver data again to a transfer its write callback paused.
void zf_curl_loop_unpause (zf_curl_loop_t *self, CURL *easy);

//  A fast origin must not hold the actor's thread: libcurl reads a readable socket again and
//  again within one call (up to 100 buffers), so an origin on a fast link kept the fetcher
//  from its bus for a whole 8 MiB range (58 ms), and every reply it owed (storage's writes,
//  readers' peeks) waited. A write callback calls this with the size of the chunk it was
//  given: true when this turn of the loop has had its share (ZF_CURL_LOOP_TURN_BYTES); the
//  callback then returns CURL_WRITEFUNC_PAUSE without taking the chunk, and the loop lets the
//  transfer go on at its next turn, after the actor's other sockets had theirs.
#define ZF_CURL_LOOP_TURN_BYTES (512 * 1024)
bool zf_curl_loop_yield (zf_curl_loop_t *self, CURL *easy, size_t size);

void zf_curl_loop_test (bool verbose);

#endif
