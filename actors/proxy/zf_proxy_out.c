/*  zf_proxy_out.c — a connection's output queue: bytes, frames and file ranges (see .h). */
#include "zf_proxy_out.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define BYTES_SLACK 16384  //  room added when a bytes segment grows
#define BYTES_KEEP  262144 //  a drained bytes buffer up to this size is kept for the next response

typedef enum { SEG_BYTES, SEG_FRAME, SEG_FILE } segment_kind_t;

typedef struct segment_s segment_t;
struct segment_s {
    segment_t *next;
    segment_kind_t kind;
    char *bytes; //  SEG_BYTES: owned buffer of capacity bytes
    size_t capacity;
    zframe_t *frame;       //  SEG_FRAME
    zf_proxy_file_t *file; //  SEG_FILE
    uint64_t position;     //  next byte to send: index into bytes/frame, or file offset
    uint64_t end;          //  exclusive
};

struct zf_proxy_out_s {
    segment_t *head, *tail;
    segment_t *spare; //  a drained bytes segment kept so small responses do not reallocate
    uint64_t pending;
    uint64_t memory;
    zf_counter_t *sent_copied, *sent_sendfile;
    bool corked; //  TCP_CORK is set on the socket
};

zf_proxy_out_t *zf_proxy_out_new (zf_counter_t *sent_copied, zf_counter_t *sent_sendfile)
{
    zf_proxy_out_t *self = zf_calloc (1, sizeof *self);
    self->sent_copied = sent_copied;
    self->sent_sendfile = sent_sendfile;
    return self;
}

static void s_segment_free (segment_t *segment)
{
    zf_free (segment->bytes);
    zframe_destroy (&segment->frame);
    zf_proxy_file_release (&segment->file);
    zf_free (segment);
}

void zf_proxy_out_destroy (zf_proxy_out_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_proxy_out_t *self = *self_p;
    if (!self)
        return;
    while (self->head) {
        segment_t *next = self->head->next;
        s_segment_free (self->head);
        self->head = next;
    }
    if (self->spare)
        s_segment_free (self->spare);
    zf_free (self);
    *self_p = NULL;
}

static segment_t *s_link (zf_proxy_out_t *self, segment_t *segment)
{
    if (self->tail)
        self->tail->next = segment;
    else
        self->head = segment;
    self->tail = segment;
    return segment;
}

static segment_t *s_push (zf_proxy_out_t *self, segment_kind_t kind)
{
    segment_t *segment = zf_calloc (1, sizeof *segment);
    segment->kind = kind;
    return s_link (self, segment);
}

//  The tail bytes segment with room for size more bytes, made or grown as needed.
static segment_t *s_bytes_tail (zf_proxy_out_t *self, size_t size)
{
    segment_t *segment = self->tail;
    if (!segment || segment->kind != SEG_BYTES) {
        if (self->spare) {
            segment = s_link (self, self->spare);
            self->spare = NULL;
        } else
            segment = s_push (self, SEG_BYTES);
    }
    if (segment->end + size > segment->capacity && segment->position > 0) {
        memmove (segment->bytes, segment->bytes + segment->position,
                 segment->end - segment->position);
        segment->end -= segment->position;
        segment->position = 0;
    }
    if (segment->end + size > segment->capacity) {
        segment->capacity = segment->end + size + BYTES_SLACK;
        segment->bytes = zf_realloc (segment->bytes, segment->capacity);
    }
    return segment;
}

void zf_proxy_out_append (zf_proxy_out_t *self, const void *data, size_t size)
{
    if (size == 0)
        return;
    segment_t *segment = s_bytes_tail (self, size);
    memcpy (segment->bytes + segment->end, data, size);
    segment->end += size;
    self->pending += size;
    self->memory += size;
}

void zf_proxy_out_printf (zf_proxy_out_t *self, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *text = NULL;
    int size = vasprintf (&text, fmt, args);
    va_end (args);
    ZF_ASSERT (size >= 0);
    zf_proxy_out_append (self, text, (size_t) size);
    free (text);
}

void zf_proxy_out_frame (zf_proxy_out_t *self, zframe_t **frame_p, size_t from, size_t count)
{
    ZF_ASSERT (frame_p && *frame_p);
    ZF_ASSERT (from + count <= zframe_size (*frame_p));
    if (count == 0) {
        zframe_destroy (frame_p);
        return;
    }
    segment_t *segment = s_push (self, SEG_FRAME);
    segment->frame = *frame_p;
    *frame_p = NULL;
    segment->position = from;
    segment->end = from + count;
    self->pending += count;
    self->memory += count;
}

void zf_proxy_out_file (zf_proxy_out_t *self, zf_proxy_file_t *file, uint64_t offset,
                        uint64_t count)
{
    ZF_ASSERT (file);
    if (count == 0)
        return;
    segment_t *segment = s_push (self, SEG_FILE);
    segment->file = zf_proxy_file_ref (file);
    segment->position = offset;
    segment->end = offset + count;
    self->pending += count;
}

uint64_t zf_proxy_out_pending (const zf_proxy_out_t *self)
{
    return self->pending;
}

uint64_t zf_proxy_out_memory (const zf_proxy_out_t *self)
{
    return self->memory;
}

//  Removes the drained front segment; keeps one modest bytes buffer for reuse.
static void s_pop (zf_proxy_out_t *self)
{
    segment_t *segment = self->head;
    ZF_ASSERT (segment && segment->position == segment->end);
    self->head = segment->next;
    if (!self->head)
        self->tail = NULL;
    if (segment->kind == SEG_BYTES && !self->spare && segment->capacity <= BYTES_KEEP) {
        segment->next = NULL;
        segment->position = segment->end = 0;
        self->spare = segment;
    } else
        s_segment_free (segment);
}

//  Marks size bytes of the front segment sent.
static void s_advance (zf_proxy_out_t *self, size_t size)
{
    segment_t *segment = self->head;
    ZF_ASSERT (segment && segment->position + size <= segment->end);
    segment->position += size;
    self->pending -= size;
    if (segment->kind != SEG_FILE)
        self->memory -= size;
    if (segment->position == segment->end)
        s_pop (self);
}

static const char *s_memory_of (const segment_t *segment)
{
    if (segment->kind == SEG_BYTES)
        return segment->bytes;
    return (const char *) zframe_data (segment->frame);
}

//  A SIGPIPE raised by sendfile in this thread, where it is blocked, is left pending: take it
//  so it is never delivered later to a thread that does not block it.
static void s_sigpipe_consume (void)
{
    sigset_t pending;
    if (sigpending (&pending) != 0 || !sigismember (&pending, SIGPIPE))
        return;
    sigset_t only;
    sigemptyset (&only);
    sigaddset (&only, SIGPIPE);
    struct timespec now = {0, 0};
    while (sigtimedwait (&only, NULL, &now) < 0 && errno == EINTR) {
    }
}

void zf_proxy_out_block_sigpipe (void)
{
    sigset_t only;
    sigemptyset (&only);
    sigaddset (&only, SIGPIPE);
    ZF_ASSERT (pthread_sigmask (SIG_BLOCK, &only, NULL) == 0);
}

static zf_proxy_out_status_t s_send_file (zf_proxy_out_t *self, int fd, zf_error_t *err)
{
    segment_t *segment = self->head;
    off_t offset = (off_t) segment->position;
    size_t wanted = (size_t) (segment->end - segment->position);
    ssize_t sent = sendfile (fd, zf_proxy_file_fd (segment->file), &offset, wanted);
    if (sent > 0) {
        if (self->sent_sendfile)
            zf_counter_add (self->sent_sendfile, (uint64_t) sent);
        s_advance (self, (size_t) sent);
        //  a short write means a full socket: asking again would only return EAGAIN
        return (size_t) sent < wanted ? ZF_PROXY_OUT_AGAIN : ZF_PROXY_OUT_DONE;
    }
    if (sent == 0) {
        zf_error_set (err, ZF_E_IO, zf_proxy_file_path (segment->file),
                      "%s ends before offset %" PRIu64, zf_proxy_file_path (segment->file),
                      segment->position);
        return ZF_PROXY_OUT_FILE_FAILED;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return ZF_PROXY_OUT_AGAIN;
    int error = errno;
    if (error == EPIPE || error == ECONNRESET || error == ENOTCONN) {
        s_sigpipe_consume ();
        zf_error_set (err, ZF_E_IO, "client", "%s", strerror (error));
        return ZF_PROXY_OUT_CLIENT_GONE;
    }
    zf_error_set (err, ZF_E_IO, zf_proxy_file_path (segment->file), "sendfile from %s: %s",
                  zf_proxy_file_path (segment->file), strerror (error));
    return ZF_PROXY_OUT_FILE_FAILED;
}

static zf_proxy_out_status_t s_send_memory (zf_proxy_out_t *self, int fd, zf_error_t *err)
{
    segment_t *segment = self->head;
    //  more to come: let the kernel fill packets instead of pushing this segment alone
    int flags = MSG_NOSIGNAL | (segment->next ? MSG_MORE : 0);
    size_t wanted = (size_t) (segment->end - segment->position);
    ssize_t sent = send (fd, s_memory_of (segment) + segment->position, wanted, flags);
    if (sent >= 0) {
        if (self->sent_copied)
            zf_counter_add (self->sent_copied, (uint64_t) sent);
        s_advance (self, (size_t) sent);
        return (size_t) sent < wanted ? ZF_PROXY_OUT_AGAIN : ZF_PROXY_OUT_DONE;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return ZF_PROXY_OUT_AGAIN;
    zf_error_set (err, ZF_E_IO, "client", "%s", strerror (errno));
    return ZF_PROXY_OUT_CLIENT_GONE;
}

//  While file ranges go out the socket is corked, as nginx's tcp_nopush does: each sendfile
//  call would otherwise push its last partial packet, and the head its own small one. The
//  kernel still sends full packets, and pushes when a call fills the socket; uncorking once
//  the queue is empty sends the tail. Measured: about 10 % more single-stream throughput
//  than TCP_NODELAY alone (docs/benchmarks.md, "Proxy").
static void s_cork (zf_proxy_out_t *self, int fd, bool on)
{
    if (self->corked == on)
        return;
    int value = on;
    setsockopt (fd, IPPROTO_TCP, TCP_CORK, &value, sizeof value);
    self->corked = on;
}

zf_proxy_out_status_t zf_proxy_out_send (zf_proxy_out_t *self, int fd, zf_error_t *err)
{
    while (self->head) {
        bool file = self->head->kind == SEG_FILE;
        if (file)
            s_cork (self, fd, true);
        zf_proxy_out_status_t status =
            file ? s_send_file (self, fd, err) : s_send_memory (self, fd, err);
        if (status != ZF_PROXY_OUT_DONE)
            return status;
    }
    s_cork (self, fd, false);
    return ZF_PROXY_OUT_DONE;
}

const void *zf_proxy_out_peek (zf_proxy_out_t *self, size_t max_size, size_t *size)
{
    segment_t *segment = self->head;
    if (!segment) {
        *size = 0;
        return NULL;
    }
    ZF_ASSERT (segment->kind != SEG_FILE);
    uint64_t left = segment->end - segment->position;
    *size = left < max_size ? (size_t) left : max_size;
    return s_memory_of (segment) + segment->position;
}

void zf_proxy_out_consume (zf_proxy_out_t *self, size_t size)
{
    if (size > 0)
        s_advance (self, size);
}

//  ---------------------------------------------------------------------------------------------
//  Responses made by the proxy itself

const char *zf_proxy_reason (int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

void zf_proxy_out_error (zf_proxy_out_t *self, int status, bool registry, const char *code,
                         const char *message, bool close_after)
{
    char body[1024];
    int size;
    if (registry)
        size = snprintf (body, sizeof body,
                         "{\"errors\":[{\"code\":\"%s\",\"message\":\"zfly proxy: %s\","
                         "\"detail\":null}]}\n",
                         code, message);
    else
        size = snprintf (body, sizeof body, "zfly proxy: %s\n", message);
    if (size < 0 || (size_t) size >= sizeof body)
        size = (int) strlen (body);
    zf_proxy_out_printf (self,
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         "Connection: %s\r\n\r\n",
                         status, zf_proxy_reason (status),
                         registry ? "application/json" : "text/plain", size,
                         close_after ? "close" : "keep-alive");
    zf_proxy_out_append (self, body, (size_t) size);
}

//  ---------------------------------------------------------------------------------------------

//  A connected loopback TCP pair, non-blocking, the sender with a small buffer so sends are
//  partial.
static void s_test_pair (int *sender, int *receiver)
{
    int listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (0x7f000001)};
    socklen_t size = sizeof address;
    ZF_ASSERT (bind (listener, (struct sockaddr *) &address, size) == 0);
    ZF_ASSERT (listen (listener, 1) == 0);
    ZF_ASSERT (getsockname (listener, (struct sockaddr *) &address, &size) == 0);
    *sender = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int small = 4096, one = 1;
    setsockopt (*sender, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt (*sender, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ZF_ASSERT (connect (*sender, (struct sockaddr *) &address, size) == 0 || errno == EINPROGRESS);
    *receiver = accept (listener, NULL, NULL);
    ZF_ASSERT (*receiver >= 0);
    close (listener);
}

//  Sends everything queued while reading the other end; returns the bytes received (max).
static size_t s_test_drain (zf_proxy_out_t *out, int sender, int receiver, char *got, size_t max)
{
    size_t received = 0;
    zf_error_t err;
    zf_proxy_out_status_t status = ZF_PROXY_OUT_AGAIN;
    while (status != ZF_PROXY_OUT_DONE || received < max) {
        if (status != ZF_PROXY_OUT_DONE) {
            status = zf_proxy_out_send (out, sender, &err);
            ZF_ASSERT (status == ZF_PROXY_OUT_DONE || status == ZF_PROXY_OUT_AGAIN);
        }
        //  the sender's buffer frees as the receiver's acknowledgements arrive: wait for either
        zmq_pollitem_t items[] = {{.fd = receiver, .events = ZMQ_POLLIN},
                                  {.fd = sender, .events = ZMQ_POLLOUT}};
        ZF_ASSERT (zmq_poll (items, status == ZF_PROXY_OUT_DONE ? 1 : 2, 10000) > 0);
        ssize_t read_now = recv (receiver, got + received, max - received, MSG_DONTWAIT);
        if (read_now > 0)
            received += (size_t) read_now;
    }
    return received;
}

void zf_proxy_out_test (bool verbose)
{
    if (verbose)
        printf (" * zf_proxy_out: ");
    zf_proxy_out_block_sigpipe ();
    char dir[] = "/tmp/zf_proxy_out_XXXXXX";
    ZF_ASSERT (mkdtemp (dir));
    char *path = zf_asprintf ("%s/data", dir);
    size_t file_size = 1 << 20;
    char *content = zf_malloc (file_size);
    for (size_t index = 0; index < file_size; index++)
        content[index] = (char) (index * 7 + index / 251);
    FILE *handle = fopen (path, "w");
    ZF_ASSERT (handle && fwrite (content, 1, file_size, handle) == file_size);
    ZF_ASSERT (fclose (handle) == 0);
    zf_error_t err;
    zf_proxy_files_t *files = zf_proxy_files_new ();
    zf_proxy_file_t *file = zf_proxy_files_open (files, path, 0, &err);
    ZF_ASSERT (file);
    int sender, receiver;
    s_test_pair (&sender, &receiver);

    //  head, file range, frame range, trailer: in order, through partial sends
    zf_proxy_out_t *out = zf_proxy_out_new (NULL, NULL);
    zf_proxy_out_printf (out, "HEAD %d\r\n", 1);
    zf_proxy_out_file (out, file, 1000, 600000);
    zframe_t *frame = zframe_new (content, 300000);
    zf_proxy_out_frame (out, &frame, 5, 200000);
    ZF_ASSERT (frame == NULL);
    zf_proxy_out_append (out, "end", 3);
    size_t expected_size = 8 + 600000 + 200000 + 3;
    ZF_ASSERT (zf_proxy_out_pending (out) == expected_size);
    ZF_ASSERT (zf_proxy_out_memory (out) == 8 + 200000 + 3);
    char *expected = zf_malloc (expected_size);
    memcpy (expected, "HEAD 1\r\n", 8);
    memcpy (expected + 8, content + 1000, 600000);
    memcpy (expected + 8 + 600000, content + 5, 200000);
    memcpy (expected + 8 + 800000, "end", 3);
    char *got = zf_malloc (expected_size);
    ZF_ASSERT (s_test_drain (out, sender, receiver, got, expected_size) == expected_size);
    ZF_ASSERT (memcmp (got, expected, expected_size) == 0);
    ZF_ASSERT (zf_proxy_out_pending (out) == 0 && zf_proxy_out_memory (out) == 0);

    //  peek and consume (the TLS path) see the memory segments in order
    zf_proxy_out_append (out, "abc", 3);
    frame = zframe_new ("0123456789", 10);
    zf_proxy_out_frame (out, &frame, 2, 5);
    size_t size;
    const char *data = zf_proxy_out_peek (out, 2, &size);
    ZF_ASSERT (size == 2 && memcmp (data, "ab", 2) == 0);
    zf_proxy_out_consume (out, 2);
    data = zf_proxy_out_peek (out, 100, &size);
    ZF_ASSERT (size == 1 && *data == 'c');
    zf_proxy_out_consume (out, 1);
    data = zf_proxy_out_peek (out, 100, &size);
    ZF_ASSERT (size == 5 && memcmp (data, "23456", 5) == 0);
    zf_proxy_out_consume (out, 5);
    ZF_ASSERT (zf_proxy_out_peek (out, 100, &size) == NULL && size == 0);

    //  a file shorter than its range is a file failure, not a hang
    zf_proxy_out_file (out, file, file_size - 10, 20);
    ZF_ASSERT (zf_proxy_out_send (out, sender, &err) == ZF_PROXY_OUT_AGAIN); //  10 bytes went
    ZF_ASSERT (zf_proxy_out_pending (out) == 10);
    ZF_ASSERT (zf_proxy_out_send (out, sender, &err) == ZF_PROXY_OUT_FILE_FAILED);
    ZF_ASSERT (strstr (err.message, path));
    zf_proxy_out_destroy (&out);

    //  a client that left: reported, and no SIGPIPE left behind
    out = zf_proxy_out_new (NULL, NULL);
    close (receiver);
    zf_proxy_out_file (out, file, 0, file_size);
    zf_proxy_out_status_t status;
    while ((status = zf_proxy_out_send (out, sender, &err)) == ZF_PROXY_OUT_AGAIN) {
        zmq_pollitem_t item = {.fd = sender, .events = ZMQ_POLLOUT};
        zmq_poll (&item, 1, 1000);
    }
    ZF_ASSERT (status == ZF_PROXY_OUT_CLIENT_GONE);
    sigset_t pending;
    ZF_ASSERT (sigpending (&pending) == 0 && !sigismember (&pending, SIGPIPE));
    zf_proxy_out_destroy (&out);
    ZF_ASSERT (out == NULL);
    close (sender);

    zf_proxy_file_release (&file);
    zf_proxy_files_destroy (&files);
    ZF_ASSERT (unlink (path) == 0 && rmdir (dir) == 0);
    zf_free (path);
    zf_free (content);
    zf_free (expected);
    zf_free (got);
    if (verbose)
        printf ("OK\n");
}
