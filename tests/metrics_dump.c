/*  metrics_dump.c — prints a representative registry in text format, for `promtool check
    metrics` (the unit.promtool test). Covers what the linter has opinions on: counters with
    labels that need escaping, a label value that is not UTF-8, gauges with special values, a
    histogram with and without labels, help text with a backslash and a newline. */
#include "zf_metrics.h"
#include <math.h>

static void s_counters (void)
{
    zf_counter_add (zf_metrics_counter ("zfly_bus_messages_sent_total", "Bus messages sent",
                                        "actor", "echo", "type", "echo.request", NULL),
                    42);
    zf_counter_add (zf_metrics_counter ("zfly_bus_messages_sent_total", "Bus messages sent",
                                        "actor", "quote\"back\\slash", "type", "new\nline", NULL),
                    1);
    zf_counter_add (zf_metrics_counter ("zfly_bus_messages_sent_total", "Bus messages sent",
                                        "actor", "bad\xff\xfeutf8", "type", "", NULL),
                    2);
    zf_counter_add (zf_metrics_counter ("zfly_dump_escaped_help_total",
                                        "Help with a \\ backslash\nand a newline", NULL),
                    0);
    zf_metrics_counter ("zfly_http_requests_total", "HTTP requests answered by the status endpoint",
                        "path", "/metrics", "code", "200", NULL);
}

static void s_gauges (void)
{
    zf_gauge_set (zf_metrics_gauge ("zfly_peers", "Peers known to this node", NULL), 12);
    zf_gauge_set (zf_metrics_gauge ("zfly_dump_ratio", "A fractional gauge", "kind", "tenth", NULL),
                  0.1);
    zf_gauge_set (zf_metrics_gauge ("zfly_dump_ratio", "A fractional gauge", "kind", "nan", NULL),
                  NAN);
    zf_gauge_set (zf_metrics_gauge ("zfly_dump_ratio", "A fractional gauge", "kind", "inf", NULL),
                  INFINITY);
    zf_gauge_set (zf_metrics_gauge ("zfly_dump_ratio", "A fractional gauge", "kind", "ninf", NULL),
                  -INFINITY);
    zf_gauge_set (zf_metrics_gauge ("zfly_dump_ratio", "A fractional gauge", "kind", "tiny", NULL),
                  -1e-300);
}

static void s_histograms (void)
{
    const double seconds[] = {0.005, 0.01, 0.1, 1, 10};
    zf_histogram_t *latency =
        zf_metrics_histogram ("zfly_piece_fetch_duration_seconds", "Time to fetch one piece",
                              seconds, ZF_ARRAY_LEN (seconds), "source", "peer", NULL);
    zf_histogram_observe (latency, 0.003);
    zf_histogram_observe (latency, 0.2);
    zf_histogram_observe (latency, 42);
    const double sizes[] = {1024, 1048576, 4194304};
    zf_histogram_observe (zf_metrics_histogram ("zfly_piece_size_bytes", "Piece sizes", sizes,
                                                ZF_ARRAY_LEN (sizes), NULL),
                          4194304);
}

int main (void)
{
    s_counters ();
    s_gauges ();
    s_histograms ();
    char *text = zf_metrics_render ();
    fputs (text, stdout);
    zf_free (text);
    zf_metrics_shutdown ();
    return ferror (stdout) ? 1 : 0;
}
