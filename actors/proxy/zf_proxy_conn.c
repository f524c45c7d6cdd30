/*  zf_proxy_conn.c — one client connection's bytes (see zf_proxy_conn.h). */
#include "zf_proxy_conn.h"
#include "zf_log.h"
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#define WIRE_HIGH      65536 //  TLS records queued for a client
#define TLS_RBIO_HIGH  65536 //  received TLS bytes not yet decrypted
#define TLS_WRITE_SIZE 16384 //  one TLS record's worth of plaintext per SSL_write

struct zf_proxy_conn_s {
    int fd;
    uint64_t id;
    char peer[64];
    bool client_eof;
    int64_t last_activity_ms;
    //  TLS interception (memory BIOs: the socket always carries raw bytes)
    SSL *ssl;
    BIO *rbio, *wbio;
    bool handshake_done;
    char *wire; //  TLS records waiting for the socket
    size_t wire_len, wire_pos;
    char *authority;
    //  read ahead of the parser
    char in[ZF_PROXY_CONN_IN_MAX];
    size_t in_len;
    zf_proxy_out_t *out;
    zf_counter_t *sent_copied;
};

zf_proxy_conn_t *zf_proxy_conn_new (int fd, uint64_t id, const char *peer,
                                    zf_counter_t *sent_copied, zf_counter_t *sent_sendfile)
{
    zf_proxy_conn_t *self = zf_calloc (1, sizeof *self);
    self->fd = fd;
    self->id = id;
    zf_strlcpy (self->peer, peer, sizeof self->peer);
    self->out = zf_proxy_out_new (sent_copied, sent_sendfile);
    self->sent_copied = sent_copied;
    self->last_activity_ms = zclock_mono ();
    return self;
}

void zf_proxy_conn_close (zf_proxy_conn_t *self)
{
    if (self->fd >= 0)
        close (self->fd);
    self->fd = -1;
}

void zf_proxy_conn_destroy (zf_proxy_conn_t **self_p)
{
    zf_proxy_conn_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0)
        close (self->fd);
    if (self->ssl)
        SSL_free (self->ssl); //  frees its BIOs
    zf_free (self->wire);
    zf_proxy_out_destroy (&self->out);
    zf_free (self->authority);
    zf_free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------------------------------
//  Reading

//  Moves decrypted bytes into the input buffer (no socket I/O): the handshake first.
static zf_proxy_conn_status_t s_tls_read (zf_proxy_conn_t *self, const char **why);

static void s_wire_drain_bio (zf_proxy_conn_t *self)
{
    int pending;
    while ((pending = BIO_pending (self->wbio)) > 0) {
        if (self->wire_pos == self->wire_len)
            self->wire_pos = self->wire_len = 0;
        self->wire = zf_realloc (self->wire, self->wire_len + (size_t) pending);
        int got = BIO_read (self->wbio, self->wire + self->wire_len, pending);
        if (got <= 0)
            break;
        self->wire_len += (size_t) got;
    }
}

static zf_proxy_conn_status_t s_tls_handshake (zf_proxy_conn_t *self, const char **why)
{
    int rc = SSL_do_handshake (self->ssl);
    s_wire_drain_bio (self);
    if (rc == 1) {
        self->handshake_done = true;
        zf_info ("proxy", "tls: intercepting conn=%" PRIu64 " host=%s version=%s", self->id,
                 self->authority, SSL_get_version (self->ssl));
        return ZF_PROXY_CONN_OK;
    }
    int code = SSL_get_error (self->ssl, rc);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE)
        return ZF_PROXY_CONN_OK;
    char reason[256];
    ERR_error_string_n (ERR_peek_last_error (), reason, sizeof reason);
    ERR_clear_error ();
    zf_notice ("proxy",
               "tls: handshake failed conn=%" PRIu64 " host=%s peer=%s error=%s (does the "
               "client trust the proxy's ca_cert? see deploy/ for how)",
               self->id, self->authority, self->peer, reason);
    *why = "tls handshake failed";
    return ZF_PROXY_CONN_DEAD;
}

static zf_proxy_conn_status_t s_tls_read (zf_proxy_conn_t *self, const char **why)
{
    if (!self->handshake_done) {
        if (s_tls_handshake (self, why) != ZF_PROXY_CONN_OK)
            return ZF_PROXY_CONN_DEAD;
        if (!self->handshake_done)
            return ZF_PROXY_CONN_OK;
    }
    while (self->in_len < ZF_PROXY_CONN_IN_MAX) {
        int got = SSL_read (self->ssl, self->in + self->in_len,
                            (int) (ZF_PROXY_CONN_IN_MAX - self->in_len));
        if (got > 0) {
            self->in_len += (size_t) got;
            continue;
        }
        int code = SSL_get_error (self->ssl, got);
        s_wire_drain_bio (self);
        if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE)
            return ZF_PROXY_CONN_OK;
        if (code == SSL_ERROR_ZERO_RETURN) {
            self->client_eof = true;
            return ZF_PROXY_CONN_OK;
        }
        ERR_clear_error ();
        *why = "tls failed";
        return ZF_PROXY_CONN_DEAD;
    }
    return ZF_PROXY_CONN_OK;
}

//  One recv into buffer: the bytes received; 0 when there is nothing more for now (the socket
//  would block, or the client closed its side: client_eof); -1 when the connection failed (why).
static ssize_t s_recv (zf_proxy_conn_t *self, void *buffer, size_t size, const char **why)
{
    ssize_t got = recv (self->fd, buffer, size, 0);
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        *why = strerror (errno);
        return -1;
    }
    if (got == 0)
        self->client_eof = true;
    if (got > 0)
        self->last_activity_ms = zclock_mono ();
    return got < 0 ? 0 : got;
}

zf_proxy_conn_status_t zf_proxy_conn_read_raw (zf_proxy_conn_t *self, const char **why)
{
    while (self->in_len < ZF_PROXY_CONN_IN_MAX) {
        ssize_t got =
            s_recv (self, self->in + self->in_len, ZF_PROXY_CONN_IN_MAX - self->in_len, why);
        if (got < 0)
            return ZF_PROXY_CONN_DEAD;
        if (got == 0)
            break;
        self->in_len += (size_t) got;
    }
    return ZF_PROXY_CONN_OK;
}

zf_proxy_conn_status_t zf_proxy_conn_read (zf_proxy_conn_t *self, const char **why)
{
    if (!self->ssl)
        return zf_proxy_conn_read_raw (self, why);
    char buffer[16384];
    while (BIO_pending (self->rbio) < TLS_RBIO_HIGH) {
        ssize_t got = s_recv (self, buffer, sizeof buffer, why);
        if (got < 0)
            return ZF_PROXY_CONN_DEAD;
        if (got == 0)
            break;
        BIO_write (self->rbio, buffer, (int) got);
    }
    return s_tls_read (self, why);
}

zf_proxy_conn_status_t zf_proxy_conn_decrypt (zf_proxy_conn_t *self, const char **why)
{
    if (!self->ssl || self->in_len >= ZF_PROXY_CONN_IN_MAX)
        return ZF_PROXY_CONN_OK;
    return s_tls_read (self, why); //  the handshake first, while it is not done
}

//  ---------------------------------------------------------------------------------------------
//  Sending

//  Encrypts queued bytes into TLS records and sends them. Intercepted connections never queue
//  file ranges (they read pieces over the bus).
static zf_proxy_conn_status_t s_flush_tls (zf_proxy_conn_t *self, char *why, size_t why_size)
{
    while (true) {
        bool moved = false;
        while (self->handshake_done && zf_proxy_out_pending (self->out) > 0
               && self->wire_len - self->wire_pos < WIRE_HIGH) {
            size_t chunk;
            const void *data = zf_proxy_out_peek (self->out, TLS_WRITE_SIZE, &chunk);
            int wrote = SSL_write (self->ssl, data, (int) chunk);
            if (wrote <= 0)
                break;
            zf_proxy_out_consume (self->out, (size_t) wrote);
            s_wire_drain_bio (self);
            moved = true;
        }
        s_wire_drain_bio (self);
        while (self->wire_pos < self->wire_len) {
            ssize_t sent = send (self->fd, self->wire + self->wire_pos,
                                 self->wire_len - self->wire_pos, MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return ZF_PROXY_CONN_OK;
                snprintf (why, why_size, "%s", strerror (errno));
                return ZF_PROXY_CONN_DEAD;
            }
            zf_counter_add (self->sent_copied, (uint64_t) sent);
            self->wire_pos += (size_t) sent;
            self->last_activity_ms = zclock_mono ();
            moved = true;
        }
        if (!moved)
            return ZF_PROXY_CONN_OK;
    }
}

zf_proxy_conn_status_t zf_proxy_conn_flush (zf_proxy_conn_t *self, bool *file_failed, char *why,
                                            size_t why_size)
{
    *file_failed = false;
    if (self->ssl)
        return s_flush_tls (self, why, why_size);
    uint64_t before = zf_proxy_out_pending (self->out);
    zf_error_t err;
    zf_proxy_out_status_t status = zf_proxy_out_send (self->out, self->fd, &err);
    if (zf_proxy_out_pending (self->out) != before)
        self->last_activity_ms = zclock_mono ();
    if (status == ZF_PROXY_OUT_DONE || status == ZF_PROXY_OUT_AGAIN)
        return ZF_PROXY_CONN_OK;
    *file_failed = status == ZF_PROXY_OUT_FILE_FAILED;
    snprintf (why, why_size, "%s", err.message);
    return ZF_PROXY_CONN_DEAD;
}

bool zf_proxy_conn_all_sent (zf_proxy_conn_t *self)
{
    return zf_proxy_out_pending (self->out) == 0
           && (!self->ssl || self->wire_pos == self->wire_len);
}

//  ---------------------------------------------------------------------------------------------
//  Input buffer, TLS, accessors

char *zf_proxy_conn_input (zf_proxy_conn_t *self, size_t *length)
{
    *length = self->in_len;
    return self->in;
}

void zf_proxy_conn_consume (zf_proxy_conn_t *self, size_t count)
{
    ZF_ASSERT (count <= self->in_len);
    memmove (self->in, self->in + count, self->in_len - count);
    self->in_len -= count;
}

bool zf_proxy_conn_input_full (zf_proxy_conn_t *self)
{
    return self->in_len >= ZF_PROXY_CONN_IN_MAX;
}

void zf_proxy_conn_input_clear (zf_proxy_conn_t *self)
{
    self->in_len = 0;
}

zf_proxy_out_t *zf_proxy_conn_out (zf_proxy_conn_t *self)
{
    return self->out;
}

void zf_proxy_conn_start_tls (zf_proxy_conn_t *self, SSL *ssl, const char *authority)
{
    ZF_ASSERT (!self->ssl && ssl);
    self->ssl = ssl;
    self->rbio = BIO_new (BIO_s_mem ());
    self->wbio = BIO_new (BIO_s_mem ());
    SSL_set_bio (ssl, self->rbio, self->wbio);
    self->authority = zf_strdup (authority);
    if (self->in_len > 0) {
        BIO_write (self->rbio, self->in, (int) self->in_len);
        self->in_len = 0;
    }
}

bool zf_proxy_conn_is_tls (zf_proxy_conn_t *self)
{
    return self->ssl != NULL;
}

bool zf_proxy_conn_handshaking (zf_proxy_conn_t *self)
{
    return self->ssl && !self->handshake_done;
}

const char *zf_proxy_conn_authority (zf_proxy_conn_t *self)
{
    return self->authority;
}

int zf_proxy_conn_fd (zf_proxy_conn_t *self)
{
    return self->fd;
}

uint64_t zf_proxy_conn_id (zf_proxy_conn_t *self)
{
    return self->id;
}

const char *zf_proxy_conn_peer (zf_proxy_conn_t *self)
{
    return self->peer;
}

bool zf_proxy_conn_client_eof (zf_proxy_conn_t *self)
{
    return self->client_eof;
}

void zf_proxy_conn_set_client_eof (zf_proxy_conn_t *self)
{
    self->client_eof = true;
}

int64_t zf_proxy_conn_last_activity (zf_proxy_conn_t *self)
{
    return self->last_activity_ms;
}

void zf_proxy_conn_touch (zf_proxy_conn_t *self)
{
    self->last_activity_ms = zclock_mono ();
}

void zf_proxy_poll (zloop_t *loop, int fd, int *current, int wanted, zloop_fn *handler, void *arg)
{
    if (*current == wanted)
        return;
    zmq_pollitem_t item = {.socket = NULL, .fd = fd, .events = (short) wanted};
    if (*current != -1)
        zloop_poller_end (loop, &item);
    *current = -1;
    if (wanted == -1)
        return;
    ZF_ASSERT (zloop_poller (loop, &item, handler, arg) == 0);
    zloop_poller_set_tolerant (loop, &item);
    *current = wanted;
}
