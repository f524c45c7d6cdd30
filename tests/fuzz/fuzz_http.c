/*  fuzz_http.c — the proxy's request parser wrapper (actors/proxy/zf_http_request.c) on
    arbitrary client bytes. The first input byte chooses how the rest is cut into feeds, as a
    network would; each complete request is read out through every accessor and the parser
    moves on to the next (pipelining), as the proxy does. Crashes, sanitizer reports, leaks and
    a consumed count beyond the input all fail. */
#include "../../actors/proxy/zf_http_request.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t) data[0] % 64 + 1;
    data++;
    size--;
    zf_http_limits_t limits = {.header_max = 2048, .headers_max = 32, .body_max = 4096};
    zf_http_request_t *request = zf_http_request_new (&limits);
    char buffer[8192];
    size_t buffered = 0, offset = 0;
    while (offset < size || buffered > 0) {
        size_t take = size - offset < step ? size - offset : step;
        if (take > sizeof buffer - buffered)
            take = sizeof buffer - buffered;
        memcpy (buffer + buffered, data + offset, take);
        buffered += take;
        offset += take;
        size_t used = 0;
        zf_http_feed_t fed = zf_http_request_feed (request, buffer, buffered, &used);
        ZF_ASSERT (used <= buffered);
        memmove (buffer, buffer + used, buffered - used);
        buffered -= used;
        if (fed == ZF_HTTP_ERROR) {
            ZF_ASSERT (zf_http_request_error_status (request) >= 400);
            ZF_ASSERT (zf_http_request_error_reason (request));
            break;
        }
        if (fed == ZF_HTTP_DONE) {
            size_t body_size;
            (void) zf_http_request_method (request);
            ZF_ASSERT (strlen (zf_http_request_url (request)) <= limits.header_max);
            for (size_t index = 0; index < zf_http_request_header_count (request); index++) {
                const zf_http_header_t *header = zf_http_request_header_at (request, index);
                ZF_ASSERT (header->name && header->value);
            }
            (void) zf_http_request_header (request, "host");
            ZF_ASSERT (zf_http_request_body (request, &body_size) && body_size <= limits.body_max);
            bool tunnel = zf_http_request_is_connect (request)
                          || zf_http_request_is_upgrade (request)
                          || !zf_http_request_keep_alive (request);
            zf_http_request_next (request);
            if (tunnel)
                break;
            continue;
        }
        if (take == 0 && used == 0)
            break; //  nothing new to give and nothing taken
    }
    zf_http_request_destroy (&request);
    return 0;
}
