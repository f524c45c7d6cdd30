/*  zf_proxy_out.h — one client connection's output queue.

    Response bytes leave in the order they were queued, from three kinds of segment:
      - bytes copied in (heads, error bodies, direct transfers, tunnels);
      - a range of a bus frame, taken without copying (a piece read over the bus);
      - a range of an open file, sent with sendfile (a verified piece of a local task).
    zf_proxy_out_send writes to a non-blocking plain socket until the queue is empty or the
    socket is full, and resumes where it stopped on the next call. A segment followed by
    another is sent with MSG_MORE, and the socket is corked (TCP_CORK) while file ranges go
    out, so heads and body bytes fill whole packets even though the proxy sets TCP_NODELAY;
    the queue uncorks when it is empty. TLS connections take memory segments with
    zf_proxy_out_peek and _consume to SSL_write them; file segments are for plain sockets.

    sendfile has no MSG_NOSIGNAL: a thread that sends files must block SIGPIPE
    (zf_proxy_out_block_sigpipe); the send path then consumes the pending signal after EPIPE. */
#ifndef ZF_PROXY_OUT_H_INCLUDED
#define ZF_PROXY_OUT_H_INCLUDED

#include "zf_error.h"
#include "zf_metrics.h"
#include "zf_proxy_files.h"

typedef struct zf_proxy_out_s zf_proxy_out_t;

//  Response bytes held in memory for one client before the source (an upstream transfer,
//  pieces read over the bus) waits for the client to take them.
#define ZF_PROXY_OUT_HIGH 262144

typedef enum {
    ZF_PROXY_OUT_DONE,        //  everything queued was sent
    ZF_PROXY_OUT_AGAIN,       //  the socket is full: call again when it is writable
    ZF_PROXY_OUT_CLIENT_GONE, //  the client side failed (reset, broken pipe); err says how
    ZF_PROXY_OUT_FILE_FAILED, //  a file could not be read (I/O error, shorter than expected)
} zf_proxy_out_status_t;

//  Counters of bytes written by send() and by sendfile(); either may be NULL.
zf_proxy_out_t *zf_proxy_out_new (zf_counter_t *sent_copied, zf_counter_t *sent_sendfile);
void zf_proxy_out_destroy (zf_proxy_out_t **self_p);

void zf_proxy_out_append (zf_proxy_out_t *self, const void *data, size_t size);
void zf_proxy_out_printf (zf_proxy_out_t *self, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
//  Queues bytes [from, from + count) of the frame, which is taken and NULLed.
void zf_proxy_out_frame (zf_proxy_out_t *self, zframe_t **frame_p, size_t from, size_t count);
//  Queues count bytes of file from offset; the queue takes its own reference.
void zf_proxy_out_file (zf_proxy_out_t *self, zf_proxy_file_t *file, uint64_t offset,
                        uint64_t count);

//  Bytes queued and not yet sent: all of them, and those held in memory (bytes and frames),
//  which is what a memory-bound producer should wait on.
uint64_t zf_proxy_out_pending (const zf_proxy_out_t *self);
uint64_t zf_proxy_out_memory (const zf_proxy_out_t *self);

zf_proxy_out_status_t zf_proxy_out_send (zf_proxy_out_t *self, int fd, zf_error_t *err);

//  The next bytes in memory (at most max_size), NULL when the queue is empty; the front must
//  not be a file segment.
const void *zf_proxy_out_peek (zf_proxy_out_t *self, size_t max_size, size_t *size);
void zf_proxy_out_consume (zf_proxy_out_t *self, size_t size);

//  Reason phrases, and an error response made by the proxy itself: JSON errors for registry
//  paths (OCI distribution's format), text otherwise. message must hold no quotes or
//  backslashes.
const char *zf_proxy_reason (int status);
void zf_proxy_out_error (zf_proxy_out_t *self, int status, bool registry, const char *code,
                         const char *message, bool close_after);

//  Blocks SIGPIPE in the calling thread (see above).
void zf_proxy_out_block_sigpipe (void);

void zf_proxy_out_test (bool verbose);

#endif
