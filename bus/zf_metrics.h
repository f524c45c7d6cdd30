/*  zf_metrics.h — process-wide Prometheus metrics.

    The one piece of state shared between actor threads, on purpose: counters are atomics that
    an actor looks up once (under the registry lock) and then bumps lock-free, and the HTTP
    thread renders them. Families are created on first use; a family's type and help must be
    the same at every use (asserted: a mismatch is a programming error).

    Labels are given as NULL-terminated name, value pairs:
        zf_counter_t *sent = zf_metrics_counter ("zfly_bus_messages_sent_total",
            "Bus messages sent", "actor", "echo", "type", "echo.request", NULL);
        zf_counter_add (sent, 1);
    Rendering follows text format 0.0.4: HELP and TYPE once per family, label values escaped,
    histograms with cumulative le buckets, _sum and _count. Families come out sorted by name and
    series in creation order, so the text is deterministic.

    Programming errors (asserted, so they show up in the first test that touches the metric):
    a name outside [a-zA-Z_:][a-zA-Z0-9_:]*, a label name outside [a-zA-Z_][a-zA-Z0-9_]* or
    starting with "__", empty help, a counter whose name does not end in _total, any other type
    whose name ends in _total, _count, _sum or _bucket (promtool rejects both), a histogram label
    named "le", a family reused with another type, help, bucket list or label names, more than
    ZF_METRICS_LABELS_MAX labels, a NULL label value.

    Label values may come from outside (a message type, a peer name): they are cut to
    ZF_METRICS_LABEL_VALUE_MAX bytes and bytes that are not valid UTF-8 become '?', so a hostile
    value cannot break the scrape. Each distinct value is a new series that lives until
    zf_metrics_shutdown: keep label values to small, bounded sets. */
#ifndef ZF_METRICS_H_INCLUDED
#define ZF_METRICS_H_INCLUDED

#include "zf_prelude.h"

#define ZF_METRICS_LABELS_MAX      8
#define ZF_METRICS_LABEL_VALUE_MAX 128
#define ZF_METRICS_BUCKETS_MAX     64

typedef struct zf_counter_s zf_counter_t;
typedef struct zf_gauge_s zf_gauge_t;
typedef struct zf_histogram_s zf_histogram_t;

zf_counter_t *zf_metrics_counter (const char *family, const char *help, ...)
    __attribute__ ((sentinel));
zf_gauge_t *zf_metrics_gauge (const char *family, const char *help, ...) __attribute__ ((sentinel));
//  The same family and label values return the same pointer, valid until zf_metrics_shutdown;
//  the update functions below are lock-free and safe from any thread.
//  buckets: strictly ascending finite upper bounds (at most ZF_METRICS_BUCKETS_MAX), copied;
//  +Inf is added by the renderer.
zf_histogram_t *zf_metrics_histogram (const char *family, const char *help, const double *buckets,
                                      size_t bucket_count, ...) __attribute__ ((sentinel));

void zf_counter_add (zf_counter_t *counter, uint64_t amount);
uint64_t zf_counter_value (const zf_counter_t *counter);
void zf_gauge_set (zf_gauge_t *gauge, double value);
void zf_gauge_add (zf_gauge_t *gauge, double delta);
double zf_gauge_value (const zf_gauge_t *gauge);
void zf_histogram_observe (zf_histogram_t *histogram, double value);

//  The whole registry in text format; caller frees.
char *zf_metrics_render (void);

//  Frees every family; only at process exit, after all threads stopped using them. The registry
//  is empty afterwards and may be used again (tests).
void zf_metrics_shutdown (void);

void zf_metrics_test (bool verbose);

#endif
