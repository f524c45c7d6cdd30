/*  zf_fetch_origin.h — a task's origin: HTTP byte ranges and streams, delivered to a sink.

    The origin knows bytes, not pieces: a probe (`Range: bytes=0-0`, Dragonfly's lesson: the
    length and whether Range is honoured in one round trip; or a first range whose answer
    tells the length and then goes on as the first range transfer), range transfers of
    [first, last] that must come back 206 with exactly that Content-Range, and one stream for
    origins that ignore Range (200, read in order). Bytes go to the sink as they arrive, with
    their offset in the content; whatever they belong to is the sink's business (the task cuts
    them into pieces). Every transfer has a connect timeout and stall detection, follows
    redirects (curl drops a custom Authorization on a cross-host hop) and is checked before a
    byte of its answer is passed on. Retrying is the sink's decision: a failure says whether
    trying again may help. */
#ifndef ZF_FETCH_ORIGIN_H_INCLUDED
#define ZF_FETCH_ORIGIN_H_INCLUDED

#include "zf_curl_loop.h"
#include "zf_fetcher.h"
#include "zf_msgs.h"

typedef struct zf_fetch_origin_s zf_fetch_origin_t;

typedef enum {
    ZF_ORIGIN_PROBE,
    ZF_ORIGIN_RANGE,
    ZF_ORIGIN_STREAM,
} zf_origin_kind_t;

//  How a transfer ended, for the sink.
typedef struct {
    zf_origin_kind_t kind;
    uint64_t first, last; //  the range asked (probe: 0, 0; stream: the content)
    uint64_t received;    //  bytes of the body passed on
    bool ok;
    bool ignores_range; //  the origin answered a range with 200: read it as one stream
    bool retryable;     //  a failure trying again may cure (5xx, resets, stalls, 408, 429)
    long status;        //  HTTP status of the last answer, 0 when none
    const char *reason; //  why it failed, in words
} zf_origin_end_t;

typedef struct {
    //  The probe's answer: the content length, and whether ranges are honoured (for a first
    //  range, from inside its transfer: the sink may cancel, not release it there).
    void (*on_length) (void *arg, uint64_t content_length, bool ranges);
    //  Body bytes at `offset` of the content, in order within a transfer (the probe's one byte
    //  too: it counts as received). Stream only: return false to pause it (memory bound);
    //  zf_fetch_origin_resume lets it go on with the same bytes.
    bool (*on_bytes) (void *arg, zf_origin_kind_t kind, uint64_t offset, const uint8_t *data,
                      size_t size);
    //  A transfer ended (the probe, a range, the stream); not called for cancelled ones.
    void (*on_end) (void *arg, const zf_origin_end_t *end);
} zf_fetch_origin_sink_t;

//  A client's request headers as origins see them (for zf_fetch_origin_new and the access
//  question), every one but Range: ranges are the fetcher's business, a client's Range would
//  cut every piece wrong. NULL when none is left; the caller frees it (curl_slist_free_all).
struct curl_slist *zf_fetch_origin_headers (const zf_rec_http_header_t *headers, size_t count);

//  An origin for url with the client's headers (borrowed; the caller keeps them alive);
//  actor names the fetcher in metrics.
zf_fetch_origin_t *zf_fetch_origin_new (const char *actor, const zf_fetcher_config_t *config,
                                        zf_curl_loop_t *curl, const char *url,
                                        struct curl_slist *headers,
                                        const zf_fetch_origin_sink_t *sink, void *arg);
//  Removes every transfer without reporting it. Never call it from a sink callback.
void zf_fetch_origin_destroy (zf_fetch_origin_t **self_p);

//  Asks bytes [0, bytes - 1]: with 1, the probe of old (its one byte passed on, the length
//  told when it is done). With more, a first range: on_length comes with the answer's first
//  body byte (206 and "Content-Range: bytes 0-LAST/TOTAL"), and the body waits, paused, until
//  zf_fetch_origin_probe_release says whether the sink takes it as a range. Either way a 200
//  (the origin ignores Range) or a 416 of an empty content tells the length when it is done,
//  and a failure (a 401 among them) ends as a probe.
void zf_fetch_origin_probe (zf_fetch_origin_t *self, uint64_t bytes);
//  A first range held since its length was told: true, with the last byte it brings.
bool zf_fetch_origin_probe_held (const zf_fetch_origin_t *self, uint64_t *last);
//  The held first range goes on as a range transfer of [0, last] (keep; its bytes reach
//  on_bytes as ZF_ORIGIN_RANGE, perhaps at once), or is stopped unreported (!keep). Never call
//  it from a sink callback.
void zf_fetch_origin_probe_release (zf_fetch_origin_t *self, bool keep);
//  Bytes [first, last] of a content of content_length bytes.
void zf_fetch_origin_range (zf_fetch_origin_t *self, uint64_t first, uint64_t last,
                            uint64_t content_length);
void zf_fetch_origin_stream (zf_fetch_origin_t *self, uint64_t content_length);
//  Lets a stream paused by its sink go on.
void zf_fetch_origin_resume (zf_fetch_origin_t *self);
//  Stops every transfer without reporting it (safe inside a sink callback: a transfer that
//  is delivering bytes ends when the callback returns).
void zf_fetch_origin_cancel_all (zf_fetch_origin_t *self);

size_t zf_fetch_origin_ranges (const zf_fetch_origin_t *self); //  range transfers running
bool zf_fetch_origin_busy (const zf_fetch_origin_t *self);     //  any transfer running
bool zf_fetch_origin_streaming (const zf_fetch_origin_t *self);

//  The curl loop's done callback for every origin of the actor (easy_private: the transfer).
void zf_fetch_origin_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg);

#endif
