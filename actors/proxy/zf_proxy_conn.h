/*  zf_proxy_conn.h — one client connection's bytes: the socket, TLS interception, the bytes
    read ahead of the request parser and the output queue.

    The socket always carries raw bytes. After zf_proxy_conn_start_tls the connection runs a TLS
    server over memory BIOs: reads decrypt into the input buffer, flushes encrypt the output
    queue into TLS records first. Who reads what, and when, is the proxy's business (zf_proxy.c
    polls the socket); this class only moves bytes and says when the connection died. */
#ifndef ZF_PROXY_CONN_H_INCLUDED
#define ZF_PROXY_CONN_H_INCLUDED

#include "zf_proxy_out.h"
#include <openssl/ssl.h>

#define ZF_PROXY_CONN_IN_MAX 65536 //  client bytes read ahead of the parser (and tunnels)

typedef struct zf_proxy_conn_s zf_proxy_conn_t;

typedef enum {
    ZF_PROXY_CONN_OK,   //  moved what could be moved
    ZF_PROXY_CONN_DEAD, //  the socket or the TLS session failed: why says how
} zf_proxy_conn_status_t;

//  Takes the connected, non-blocking socket fd (closed by destroy). peer: the client's
//  address, for logs. Counters of bytes sent (send and sendfile) may be NULL.
zf_proxy_conn_t *zf_proxy_conn_new (int fd, uint64_t id, const char *peer,
                                    zf_counter_t *sent_copied, zf_counter_t *sent_sendfile);
void zf_proxy_conn_destroy (zf_proxy_conn_t **self_p);
//  Closes the socket now (the client sees the end at once); the object may go later.
void zf_proxy_conn_close (zf_proxy_conn_t *self);

//  Reads what the socket has (decrypting under TLS) into the input buffer, while it has room.
zf_proxy_conn_status_t zf_proxy_conn_read (zf_proxy_conn_t *self, const char **why);
//  Reads what the socket has into the input buffer without TLS, for tunnels.
zf_proxy_conn_status_t zf_proxy_conn_read_raw (zf_proxy_conn_t *self, const char **why);
//  Decrypts bytes already received (TLS only; the handshake first): after the parser made
//  room, or when interception starts.
zf_proxy_conn_status_t zf_proxy_conn_decrypt (zf_proxy_conn_t *self, const char **why);

//  Sends what can be sent now from the output queue (encrypted under TLS). A file that could
//  not be read is DEAD too, with file_failed set (the caller says so in its log).
zf_proxy_conn_status_t zf_proxy_conn_flush (zf_proxy_conn_t *self, bool *file_failed, char *why,
                                            size_t why_size);
//  Everything queued has left (TLS records included).
bool zf_proxy_conn_all_sent (zf_proxy_conn_t *self);

//  The bytes read ahead: [data, data + *length); consume drops the first count.
char *zf_proxy_conn_input (zf_proxy_conn_t *self, size_t *length);
void zf_proxy_conn_consume (zf_proxy_conn_t *self, size_t count);
bool zf_proxy_conn_input_full (zf_proxy_conn_t *self);
void zf_proxy_conn_input_clear (zf_proxy_conn_t *self);

zf_proxy_out_t *zf_proxy_conn_out (zf_proxy_conn_t *self);

//  Starts TLS interception: ssl (a server from zf_proxy_tls) is taken; bytes read after the
//  CONNECT head are the start of the session. authority is "host[:port]" of the CONNECT.
void zf_proxy_conn_start_tls (zf_proxy_conn_t *self, SSL *ssl, const char *authority);
bool zf_proxy_conn_is_tls (zf_proxy_conn_t *self);
//  Still in the TLS handshake: the proxy reads whatever comes.
bool zf_proxy_conn_handshaking (zf_proxy_conn_t *self);
//  "host[:port]" of an intercepted CONNECT, NULL otherwise.
const char *zf_proxy_conn_authority (zf_proxy_conn_t *self);

int zf_proxy_conn_fd (zf_proxy_conn_t *self);
uint64_t zf_proxy_conn_id (zf_proxy_conn_t *self);
const char *zf_proxy_conn_peer (zf_proxy_conn_t *self);
//  The client closed its side (EOF, or a TLS close_notify).
bool zf_proxy_conn_client_eof (zf_proxy_conn_t *self);
void zf_proxy_conn_set_client_eof (zf_proxy_conn_t *self);
//  Monotonic ms of the last byte moved either way.
int64_t zf_proxy_conn_last_activity (zf_proxy_conn_t *self);
void zf_proxy_conn_touch (zf_proxy_conn_t *self);

//  Sets what zloop watches on fd (ZMQ_POLLIN | ZMQ_POLLOUT, 0 for nothing, -1 to forget the
//  fd); *current holds what is set now (-1: none). A no-op when it does not change.
void zf_proxy_poll (zloop_t *loop, int fd, int *current, int wanted, zloop_fn *handler, void *arg);

#endif
