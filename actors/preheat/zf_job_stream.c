/*  zf_job_stream.c — Redis Streams with a consumer group, over hiredis 0.14. */
#include "zf_job_stream.h"
#include "zf_clock.h"
#include <hiredis/hiredis.h>

#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 2000

//  Touches an entry only while this consumer holds it (see zf_job_stream.h).
static const char s_renew_script[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) "
    "if #p == 1 and p[1][2] == ARGV[3] then "
    "redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID') return 1 end "
    "return 0";

struct zf_job_stream_s {
    char host[256];
    int port;
    char *consumer;
    redisContext *redis;
    int64_t retry_at_ms; //  no connection attempt before this (monotonic)
    int64_t backoff_ms;
    char claim_cursor[ZF_JOB_STREAM_REF_MAX]; //  where XAUTOCLAIM goes on scanning
};

//  For the parser below: records the failure, answers false.
static bool s_bad (zf_status_t status)
{
    (void) status;
    return false;
}

static bool s_parse_url (const char *url, char *host, size_t host_size, int *port, zf_error_t *err)
{
    if (!url || strncmp (url, "redis://", 8) != 0)
        return s_bad (zf_error_set (err, ZF_E_CONFIG, "queue",
                                    "'%.100s' is not redis://HOST[:PORT]", url ? url : ""));
    const char *start = url + 8;
    size_t length = strcspn (start, ":/");
    if (length == 0 || length >= host_size)
        return s_bad (zf_error_set (err, ZF_E_CONFIG, "queue", "'%.100s': no host", url));
    memcpy (host, start, length);
    host[length] = '\0';
    const char *rest = start + length;
    *port = 6379;
    if (*rest == ':') {
        char *end = NULL;
        long value = strtol (rest + 1, &end, 10);
        if (end == rest + 1 || value < 1 || value > 65535)
            return s_bad (zf_error_set (err, ZF_E_CONFIG, "queue", "'%.100s': bad port", url));
        *port = (int) value;
        rest = end;
    }
    if (*rest && !streq (rest, "/"))
        return s_bad (
            zf_error_set (err, ZF_E_CONFIG, "queue",
                          "'%.100s': nothing may follow HOST:PORT (no database, no password "
                          "in the URL)",
                          url));
    return true;
}

bool zf_job_stream_url_valid (const char *url, zf_error_t *err)
{
    char host[256];
    int port;
    return s_parse_url (url, host, sizeof host, &port, err);
}

zf_job_stream_t *zf_job_stream_new (const char *url, const char *consumer, zf_error_t *err)
{
    zf_job_stream_t *self = zf_calloc (1, sizeof *self);
    if (!s_parse_url (url, self->host, sizeof self->host, &self->port, err)) {
        zf_free (self);
        return NULL;
    }
    self->consumer = consumer ? zf_strdup (consumer) : NULL;
    self->backoff_ms = S_BACKOFF_MIN_MS;
    zf_strlcpy (self->claim_cursor, "0-0", sizeof self->claim_cursor);
    return self;
}

void zf_job_stream_destroy (zf_job_stream_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_job_stream_t *self = *self_p;
    if (!self)
        return;
    if (self->redis)
        redisFree (self->redis);
    zf_free (self->consumer);
    zf_free (self);
    *self_p = NULL;
}

static zf_status_t s_broken (zf_job_stream_t *self, const char *what, zf_error_t *err)
{
    const char *why = self->redis && self->redis->err ? self->redis->errstr : "no answer";
    zf_status_t status = zf_error_set (err, ZF_E_UNREACHABLE, "queue", "redis %s:%d: %s: %s",
                                       self->host, self->port, what, why);
    if (self->redis) {
        redisFree (self->redis);
        self->redis = NULL;
    }
    self->retry_at_ms = zf_clock_mono_ms () + self->backoff_ms;
    self->backoff_ms =
        self->backoff_ms * 2 < S_BACKOFF_MAX_MS ? self->backoff_ms * 2 : S_BACKOFF_MAX_MS;
    return status;
}

//  A command's reply, or NULL (connection dropped, err filled).
static redisReply *s_command (zf_job_stream_t *self, const char *what, zf_error_t *err,
                              const char *format, ...)
{
    va_list args;
    va_start (args, format);
    redisReply *reply = redisvCommand (self->redis, format, args);
    va_end (args);
    if (!reply)
        s_broken (self, what, err);
    return reply;
}

static zf_status_t s_connect (zf_job_stream_t *self, zf_error_t *err)
{
    if (self->redis)
        return ZF_OK;
    if (zf_clock_mono_ms () < self->retry_at_ms)
        return zf_error_set (err, ZF_E_UNREACHABLE, "queue",
                             "redis %s:%d: not reachable a moment ago; trying again shortly",
                             self->host, self->port);
    struct timeval timeout = {.tv_sec = ZF_JOB_STREAM_TIMEOUT_MS / 1000,
                              .tv_usec = (ZF_JOB_STREAM_TIMEOUT_MS % 1000) * 1000};
    self->redis = redisConnectWithTimeout (self->host, self->port, timeout);
    if (!self->redis || self->redis->err)
        return s_broken (self, "connect", err);
    redisSetTimeout (self->redis, timeout);
    //  The group from the stream's first entry on: entries added before any worker ran count.
    redisReply *reply = s_command (self, "XGROUP CREATE", err, "XGROUP CREATE %s %s 0 MKSTREAM",
                                   ZF_JOB_STREAM_KEY, ZF_JOB_STREAM_GROUP);
    if (!reply)
        return ZF_E_UNREACHABLE;
    bool ok = reply->type != REDIS_REPLY_ERROR || strstr (reply->str, "BUSYGROUP");
    zf_status_t status = ok ? ZF_OK
                            : zf_error_set (err, ZF_E_REMOTE, "queue", "redis %s:%d: XGROUP: %s",
                                            self->host, self->port, reply->str);
    freeReplyObject (reply);
    if (ok)
        self->backoff_ms = S_BACKOFF_MIN_MS;
    return status;
}

//  An error reply as a failure (the connection stays).
static zf_status_t s_reply_error (zf_job_stream_t *self, redisReply *reply, const char *what,
                                  zf_error_t *err)
{
    zf_status_t status = zf_error_set (err, ZF_E_REMOTE, "queue", "redis %s:%d: %s: %s", self->host,
                                       self->port, what, reply->str);
    freeReplyObject (reply);
    return status;
}

zf_status_t zf_job_stream_add (zf_job_stream_t *self, int64_t job_id, char *ref, zf_error_t *err)
{
    zf_status_t status = s_connect (self, err);
    if (status != ZF_OK)
        return status;
    redisReply *reply =
        s_command (self, "XADD", err, "XADD %s * job %lld", ZF_JOB_STREAM_KEY, (long long) job_id);
    if (!reply)
        return ZF_E_UNREACHABLE;
    if (reply->type != REDIS_REPLY_STRING)
        return s_reply_error (self, reply, "XADD", err);
    zf_strlcpy (ref, reply->str, ZF_JOB_STREAM_REF_MAX);
    freeReplyObject (reply);
    return ZF_OK;
}

zf_status_t zf_job_stream_exists (zf_job_stream_t *self, const char *ref, bool *exists,
                                  zf_error_t *err)
{
    zf_status_t status = s_connect (self, err);
    if (status != ZF_OK)
        return status;
    redisReply *reply =
        s_command (self, "XRANGE", err, "XRANGE %s %s %s", ZF_JOB_STREAM_KEY, ref, ref);
    if (!reply)
        return ZF_E_UNREACHABLE;
    if (reply->type != REDIS_REPLY_ARRAY)
        return s_reply_error (self, reply, "XRANGE", err);
    *exists = reply->elements > 0;
    freeReplyObject (reply);
    return ZF_OK;
}

//  [id, [field, value, …]] -> the id and the job field.
static bool s_entry (const redisReply *entry, int64_t *job_id, char *ref)
{
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
        || entry->element[0]->type != REDIS_REPLY_STRING
        || entry->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    zf_strlcpy (ref, entry->element[0]->str, ZF_JOB_STREAM_REF_MAX);
    const redisReply *fields = entry->element[1];
    for (size_t index = 0; index + 1 < fields->elements; index += 2)
        if (fields->element[index]->type == REDIS_REPLY_STRING
            && streq (fields->element[index]->str, "job")
            && fields->element[index + 1]->type == REDIS_REPLY_STRING) {
            char *end = NULL;
            long long value = strtoll (fields->element[index + 1]->str, &end, 10);
            *job_id = end && !*end && value > 0 ? value : 0;
            return true;
        }
    *job_id = 0; //  not ours: acknowledged by the caller as a job that does not exist
    return true;
}

zf_status_t zf_job_stream_take (zf_job_stream_t *self, int64_t lease_ms, int64_t *job_id, char *ref,
                                bool *reclaimed, zf_error_t *err)
{
    ZF_ASSERT (self->consumer);
    *job_id = 0;
    *reclaimed = false;
    ref[0] = '\0';
    zf_status_t status = s_connect (self, err);
    if (status != ZF_OK)
        return status;
    //  Entries a dead worker held, first: they waited longest.
    redisReply *reply = s_command (self, "XAUTOCLAIM", err, "XAUTOCLAIM %s %s %s %lld %s COUNT 1",
                                   ZF_JOB_STREAM_KEY, ZF_JOB_STREAM_GROUP, self->consumer,
                                   (long long) lease_ms, self->claim_cursor);
    if (!reply)
        return ZF_E_UNREACHABLE;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_STRING)
        return s_reply_error (self, reply, "XAUTOCLAIM", err);
    zf_strlcpy (self->claim_cursor, reply->element[0]->str, sizeof self->claim_cursor);
    const redisReply *claimed = reply->element[1];
    bool found = claimed->type == REDIS_REPLY_ARRAY && claimed->elements > 0
                 && s_entry (claimed->element[0], job_id, ref);
    freeReplyObject (reply);
    if (found) {
        *reclaimed = true;
        return ZF_OK;
    }
    reply = s_command (self, "XREADGROUP", err, "XREADGROUP GROUP %s %s COUNT 1 STREAMS %s >",
                       ZF_JOB_STREAM_GROUP, self->consumer, ZF_JOB_STREAM_KEY);
    if (!reply)
        return ZF_E_UNREACHABLE;
    if (reply->type == REDIS_REPLY_NIL) {
        freeReplyObject (reply);
        return ZF_OK;
    }
    if (reply->type != REDIS_REPLY_ARRAY)
        return s_reply_error (self, reply, "XREADGROUP", err);
    //  [[stream, [entry]]]
    const redisReply *stream = reply->elements ? reply->element[0] : NULL;
    const redisReply *entries = stream && stream->type == REDIS_REPLY_ARRAY && stream->elements == 2
                                    ? stream->element[1]
                                    : NULL;
    if (entries && entries->type == REDIS_REPLY_ARRAY && entries->elements > 0)
        s_entry (entries->element[0], job_id, ref);
    freeReplyObject (reply);
    return ZF_OK;
}

zf_status_t zf_job_stream_renew (zf_job_stream_t *self, const char *ref, bool *held,
                                 zf_error_t *err)
{
    ZF_ASSERT (self->consumer);
    *held = false;
    zf_status_t status = s_connect (self, err);
    if (status != ZF_OK)
        return status;
    redisReply *reply = s_command (self, "EVAL", err, "EVAL %s 1 %s %s %s %s", s_renew_script,
                                   ZF_JOB_STREAM_KEY, ZF_JOB_STREAM_GROUP, ref, self->consumer);
    if (!reply)
        return ZF_E_UNREACHABLE;
    if (reply->type != REDIS_REPLY_INTEGER)
        return s_reply_error (self, reply, "EVAL renew", err);
    *held = reply->integer == 1;
    freeReplyObject (reply);
    return ZF_OK;
}

zf_status_t zf_job_stream_ack (zf_job_stream_t *self, const char *ref, zf_error_t *err)
{
    zf_status_t status = s_connect (self, err);
    if (status != ZF_OK)
        return status;
    redisReply *reply =
        s_command (self, "XACK", err, "XACK %s %s %s", ZF_JOB_STREAM_KEY, ZF_JOB_STREAM_GROUP, ref);
    if (!reply)
        return ZF_E_UNREACHABLE;
    if (reply->type == REDIS_REPLY_ERROR)
        return s_reply_error (self, reply, "XACK", err);
    freeReplyObject (reply);
    reply = s_command (self, "XDEL", err, "XDEL %s %s", ZF_JOB_STREAM_KEY, ref);
    if (!reply)
        return ZF_E_UNREACHABLE;
    if (reply->type == REDIS_REPLY_ERROR)
        return s_reply_error (self, reply, "XDEL", err);
    freeReplyObject (reply);
    return ZF_OK;
}

void zf_job_stream_test (bool verbose)
{
    if (verbose)
        printf (" * zf_job_stream: ");
    zf_error_t err;
    ZF_ASSERT (zf_job_stream_url_valid ("redis://127.0.0.1:6379", &err));
    ZF_ASSERT (zf_job_stream_url_valid ("redis://redis.example", &err));
    ZF_ASSERT (zf_job_stream_url_valid ("redis://10.0.0.1:7000/", &err));
    const char *bad[] = {"",
                         "http://x",
                         "redis://",
                         "redis://x:0",
                         "redis://x:70000",
                         "redis://x:1/0",
                         "redis://user:pw@x"};
    for (size_t index = 0; index < ZF_ARRAY_LEN (bad); index++) {
        ZF_ASSERT (!zf_job_stream_url_valid (bad[index], &err));
        ZF_ASSERT (err.code == ZF_E_CONFIG && *err.message);
    }
    //  Nothing listens on port 1: a call fails at once with the address, and the next one
    //  within the backoff fails without trying.
    zf_job_stream_t *stream = zf_job_stream_new ("redis://127.0.0.1:1", "test", &err);
    ZF_ASSERT (stream);
    char ref[ZF_JOB_STREAM_REF_MAX];
    ZF_ASSERT (zf_job_stream_add (stream, 1, ref, &err) == ZF_E_UNREACHABLE);
    ZF_ASSERT (strstr (err.message, "127.0.0.1:1"));
    ZF_ASSERT (zf_job_stream_add (stream, 1, ref, &err) == ZF_E_UNREACHABLE);
    ZF_ASSERT (strstr (err.message, "a moment ago"));
    zf_job_stream_destroy (&stream);
    ZF_ASSERT (!stream);
    if (verbose)
        printf ("OK\n");
}
