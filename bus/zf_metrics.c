/*  zf_metrics.c — the process-wide Prometheus registry.

    Lookup and creation take one mutex; actors do that once per series and keep the pointer.
    Updates never lock: counters are atomic integers, gauges and histogram sums are doubles
    kept as their bit pattern in an atomic uint64 and updated with compare-and-swap. Series are
    never freed before zf_metrics_shutdown, which is what makes the returned pointers safe to
    keep in other threads. */
#include "zf_metrics.h"
#include <inttypes.h>
#include <math.h>
#include <pthread.h>

typedef enum {
    S_COUNTER,
    S_GAUGE,
    S_HISTOGRAM,
} s_kind_t;

static const char *s_kind_names[] = {"counter", "gauge", "histogram"};

struct zf_counter_s {
    _Atomic uint64_t value;
};

struct zf_gauge_s {
    _Atomic uint64_t bits; //  a double's bit pattern: C11 has no portable atomic double
};

struct zf_histogram_s {
    const double *bounds; //  the family's, which outlives the series
    size_t bound_count;
    _Atomic uint64_t *bucket_counts; //  bound_count + 1, not cumulative; the last is +Inf
    _Atomic uint64_t sum_bits;
};

typedef struct s_series_s {
    struct s_series_s *next; //  creation order, for deterministic rendering
    char *labels;            //  rendered and escaped: actor="echo",type="x"; also the key
    union {
        zf_counter_t counter;
        zf_gauge_t gauge;
        zf_histogram_t histogram;
    } metric;
} s_series_t;

typedef struct s_family_s {
    struct s_family_s *next;
    char *name;
    char *help;
    s_kind_t kind;
    char *label_names; //  "actor,type", fixed by the first series
    double *bounds;    //  histograms only
    size_t bound_count;
    zhashx_t *series_by_labels;
    s_series_t *first;
    s_series_t *last;
} s_family_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static zhashx_t *s_families_by_name; //  NULL until first use and after shutdown
static s_family_t *s_families;
static size_t s_family_count;

//  --------------------------------------------------------------------------------------------
//  A growable text buffer; the registry's own data bounds its size.

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} s_buf_t;

static void s_buf_reserve (s_buf_t *buf, size_t extra)
{
    if (buf->len + extra + 1 <= buf->cap)
        return;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < buf->len + extra + 1)
        cap *= 2;
    buf->data = zf_realloc (buf->data, cap);
    buf->cap = cap;
}

static void s_buf_add (s_buf_t *buf, const char *text, size_t len)
{
    s_buf_reserve (buf, len);
    memcpy (buf->data + buf->len, text, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

static void s_buf_puts (s_buf_t *buf, const char *text)
{
    s_buf_add (buf, text, strlen (text));
}

static void s_buf_printf (s_buf_t *buf, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void s_buf_printf (s_buf_t *buf, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int needed = vsnprintf (NULL, 0, fmt, args);
    va_end (args);
    ZF_ASSERT (needed >= 0);
    s_buf_reserve (buf, (size_t) needed);
    va_start (args, fmt);
    vsnprintf (buf->data + buf->len, (size_t) needed + 1, fmt, args);
    va_end (args);
    buf->len += (size_t) needed;
}

//  Text format 0.0.4 escapes backslash and newline in help, and the double quote as well in
//  label values.
static void s_buf_add_escaped (s_buf_t *buf, const char *text, bool escape_quote)
{
    for (const char *cursor = text; *cursor; cursor++) {
        if (*cursor == '\\')
            s_buf_puts (buf, "\\\\");
        else if (*cursor == '\n')
            s_buf_puts (buf, "\\n");
        else if (*cursor == '"' && escape_quote)
            s_buf_puts (buf, "\\\"");
        else
            s_buf_add (buf, cursor, 1);
    }
}

static char *s_buf_take (s_buf_t *buf)
{
    s_buf_reserve (buf, 0); //  an empty buffer still yields ""
    buf->data[buf->len] = '\0';
    char *data = buf->data;
    *buf = (s_buf_t){0};
    return data;
}

//  --------------------------------------------------------------------------------------------
//  Values

static uint64_t s_double_to_bits (double value)
{
    uint64_t bits;
    memcpy (&bits, &value, sizeof bits);
    return bits;
}

static double s_bits_to_double (uint64_t bits)
{
    double value;
    memcpy (&value, &bits, sizeof value);
    return value;
}

static void s_atomic_add_double (_Atomic uint64_t *bits, double delta)
{
    uint64_t old_bits = atomic_load_explicit (bits, memory_order_relaxed);
    uint64_t new_bits;
    do
        new_bits = s_double_to_bits (s_bits_to_double (old_bits) + delta);
    while (!atomic_compare_exchange_weak_explicit (bits, &old_bits, new_bits, memory_order_relaxed,
                                                   memory_order_relaxed));
}

//  Like Go's strconv.FormatFloat (value, 'g', -1, 64), which the Prometheus client libraries
//  use: the fewest digits that read back as the same double, in exponent form only below 1e-4
//  or from 1e+06 up. Bucket bounds then print as le="0.1" and le="10", the strings dashboards
//  and recording rules written against other exporters match on.
static void s_format_double (char *text, size_t size, double value)
{
    if (isnan (value)) {
        zf_strlcpy (text, "NaN", size);
        return;
    }
    if (isinf (value)) {
        zf_strlcpy (text, value > 0 ? "+Inf" : "-Inf", size);
        return;
    }
    int digits = 1;
    for (; digits < 17; digits++) { //  17 significant digits always round-trip
        snprintf (text, size, "%.*e", digits - 1, value);
        if (strtod (text, NULL) == value)
            break;
    }
    snprintf (text, size, "%.*e", digits - 1, value);
    const char *exponent_text = strchr (text, 'e');
    ZF_ASSERT (exponent_text);
    long exponent = strtol (exponent_text + 1, NULL, 10);
    if (exponent < -4 || exponent >= 6)
        return;
    long decimals = digits - 1 - exponent;
    snprintf (text, size, "%.*f", decimals > 0 ? (int) decimals : 0, value);
}

//  --------------------------------------------------------------------------------------------
//  Names and labels

//  ASCII by hand: <ctype.h> follows the locale, the exposition format does not.
static bool s_name_char_valid (char c, bool first, bool colon_allowed)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
           || (colon_allowed && c == ':') || (!first && c >= '0' && c <= '9');
}

static bool s_name_valid (const char *name, bool colon_allowed)
{
    if (!*name)
        return false;
    for (const char *cursor = name; *cursor; cursor++)
        if (!s_name_char_valid (*cursor, cursor == name, colon_allowed))
            return false;
    return true;
}

static bool s_ends_with (const char *text, const char *suffix)
{
    size_t text_len = strlen (text);
    size_t suffix_len = strlen (suffix);
    return text_len >= suffix_len && streq (text + text_len - suffix_len, suffix);
}

//  The suffixes promtool reserves: _total for counters, the rest for histograms and summaries.
static bool s_suffix_fits_kind (const char *name, s_kind_t kind)
{
    if (kind == S_COUNTER)
        return s_ends_with (name, "_total");
    return !s_ends_with (name, "_total") && !s_ends_with (name, "_count")
           && !s_ends_with (name, "_sum") && !s_ends_with (name, "_bucket");
}

//  Length of the valid UTF-8 sequence at text, 0 if the bytes there are not one (overlong
//  forms and surrogates included). The terminating NUL is never a continuation byte, so this
//  never reads past the string.
static size_t s_utf8_sequence_len (const unsigned char *text)
{
    if (text[0] < 0x80)
        return 1;
    size_t len = 4;
    uint32_t min_code = 0x10000;
    uint32_t code = text[0] & 0x07u;
    if ((text[0] & 0xE0) == 0xC0) {
        len = 2;
        min_code = 0x80;
        code = text[0] & 0x1Fu;
    } else if ((text[0] & 0xF0) == 0xE0) {
        len = 3;
        min_code = 0x800;
        code = text[0] & 0x0Fu;
    } else if ((text[0] & 0xF8) != 0xF0)
        return 0;
    for (size_t index = 1; index < len; index++) {
        if ((text[index] & 0xC0) != 0x80)
            return 0;
        code = (code << 6) | (text[index] & 0x3Fu);
    }
    if (code < min_code || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
        return 0;
    return len;
}

//  Prometheus refuses a scrape with invalid UTF-8 in a label value, and one bad value from the
//  network must not hide every other metric.
static void s_add_label_value (s_buf_t *buf, const char *value)
{
    s_buf_t clean = {0};
    const unsigned char *cursor = (const unsigned char *) value;
    while (*cursor) {
        size_t len = s_utf8_sequence_len (cursor);
        if (clean.len + (len ? len : 1) > ZF_METRICS_LABEL_VALUE_MAX)
            break;
        if (len)
            s_buf_add (&clean, (const char *) cursor, len);
        else
            s_buf_puts (&clean, "?");
        cursor += len ? len : 1;
    }
    char *text = s_buf_take (&clean);
    s_buf_add_escaped (buf, text, true);
    zf_free (text);
}

typedef struct {
    s_buf_t names;    //  actor,type
    s_buf_t rendered; //  actor="echo",type="echo.request"
} s_label_set_t;

static void s_label_set_collect (s_label_set_t *set, s_kind_t kind, va_list args)
{
    const char *seen[ZF_METRICS_LABELS_MAX];
    size_t count = 0;
    const char *name;
    while ((name = va_arg (args, const char *))) {
        const char *value = va_arg (args, const char *);
        ZF_ASSERT (value);
        ZF_ASSERT (count < ZF_METRICS_LABELS_MAX);
        ZF_ASSERT (s_name_valid (name, false) && strncmp (name, "__", 2) != 0);
        ZF_ASSERT (!(kind == S_HISTOGRAM && streq (name, "le")));
        for (size_t index = 0; index < count; index++)
            ZF_ASSERT (!streq (seen[index], name));
        seen[count] = name;
        if (count++) {
            s_buf_puts (&set->names, ",");
            s_buf_puts (&set->rendered, ",");
        }
        s_buf_puts (&set->names, name);
        s_buf_printf (&set->rendered, "%s=\"", name);
        s_add_label_value (&set->rendered, value);
        s_buf_puts (&set->rendered, "\"");
    }
}

//  --------------------------------------------------------------------------------------------
//  Registry (callers hold s_lock)

static void s_family_check_bounds (const double *bounds, size_t bound_count)
{
    ZF_ASSERT (bound_count >= 1 && bound_count <= ZF_METRICS_BUCKETS_MAX);
    for (size_t index = 0; index < bound_count; index++) {
        ZF_ASSERT (isfinite (bounds[index]));
        ZF_ASSERT (index == 0 || bounds[index - 1] < bounds[index]);
    }
}

static s_family_t *s_family_new (const char *name, const char *help, s_kind_t kind,
                                 const double *bounds, size_t bound_count)
{
    s_family_t *family = zf_calloc (1, sizeof *family);
    family->name = zf_strdup (name);
    family->help = zf_strdup (help);
    family->kind = kind;
    if (kind == S_HISTOGRAM) {
        family->bounds = zf_malloc (bound_count * sizeof *bounds);
        memcpy (family->bounds, bounds, bound_count * sizeof *bounds);
        family->bound_count = bound_count;
    }
    family->series_by_labels = zhashx_new ();
    return family;
}

static s_family_t *s_family_get (const char *name, const char *help, s_kind_t kind,
                                 const double *bounds, size_t bound_count)
{
    if (!s_families_by_name)
        s_families_by_name = zhashx_new ();
    s_family_t *family = zhashx_lookup (s_families_by_name, name);
    if (!family) {
        family = s_family_new (name, help, kind, bounds, bound_count);
        zhashx_insert (s_families_by_name, name, family);
        family->next = s_families;
        s_families = family;
        s_family_count++;
    }
    ZF_ASSERT (family->kind == kind);
    ZF_ASSERT (streq (family->help, help));
    ZF_ASSERT (family->bound_count == bound_count);
    for (size_t index = 0; index < bound_count; index++)
        ZF_ASSERT (family->bounds[index] == bounds[index]);
    return family;
}

static void s_series_init_metric (s_series_t *series, const s_family_t *family)
{
    switch (family->kind) {
    case S_COUNTER: atomic_init (&series->metric.counter.value, 0); break;
    case S_GAUGE: atomic_init (&series->metric.gauge.bits, s_double_to_bits (0.0)); break;
    case S_HISTOGRAM: {
        zf_histogram_t *histogram = &series->metric.histogram;
        histogram->bounds = family->bounds;
        histogram->bound_count = family->bound_count;
        histogram->bucket_counts =
            zf_malloc ((family->bound_count + 1) * sizeof *histogram->bucket_counts);
        for (size_t index = 0; index <= family->bound_count; index++)
            atomic_init (&histogram->bucket_counts[index], 0);
        atomic_init (&histogram->sum_bits, s_double_to_bits (0.0));
        break;
    }
    }
}

static s_series_t *s_series_get (s_family_t *family, const s_label_set_t *labels)
{
    const char *label_names = labels->names.data ? labels->names.data : "";
    const char *rendered = labels->rendered.data ? labels->rendered.data : "";
    if (!family->label_names)
        family->label_names = zf_strdup (label_names);
    ZF_ASSERT (streq (family->label_names, label_names));

    s_series_t *series = zhashx_lookup (family->series_by_labels, rendered);
    if (series)
        return series;
    series = zf_calloc (1, sizeof *series);
    series->labels = zf_strdup (rendered);
    s_series_init_metric (series, family);
    zhashx_insert (family->series_by_labels, rendered, series);
    if (family->last)
        family->last->next = series;
    else
        family->first = series;
    family->last = series;
    return series;
}

static s_series_t *s_lookup (const char *name, const char *help, s_kind_t kind,
                             const double *bounds, size_t bound_count, va_list args)
{
    ZF_ASSERT (name && s_name_valid (name, true));
    ZF_ASSERT (help && *help);
    ZF_ASSERT (s_suffix_fits_kind (name, kind));
    if (kind == S_HISTOGRAM)
        s_family_check_bounds (bounds, bound_count);

    s_label_set_t labels = {0};
    s_label_set_collect (&labels, kind, args);
    pthread_mutex_lock (&s_lock);
    s_family_t *family = s_family_get (name, help, kind, bounds, bound_count);
    s_series_t *series = s_series_get (family, &labels);
    pthread_mutex_unlock (&s_lock);
    zf_free (labels.names.data);
    zf_free (labels.rendered.data);
    return series;
}

zf_counter_t *zf_metrics_counter (const char *family, const char *help, ...)
{
    va_list args;
    va_start (args, help);
    s_series_t *series = s_lookup (family, help, S_COUNTER, NULL, 0, args);
    va_end (args);
    return &series->metric.counter;
}

zf_gauge_t *zf_metrics_gauge (const char *family, const char *help, ...)
{
    va_list args;
    va_start (args, help);
    s_series_t *series = s_lookup (family, help, S_GAUGE, NULL, 0, args);
    va_end (args);
    return &series->metric.gauge;
}

zf_histogram_t *zf_metrics_histogram (const char *family, const char *help, const double *buckets,
                                      size_t bucket_count, ...)
{
    va_list args;
    va_start (args, bucket_count);
    s_series_t *series = s_lookup (family, help, S_HISTOGRAM, buckets, bucket_count, args);
    va_end (args);
    return &series->metric.histogram;
}

//  --------------------------------------------------------------------------------------------
//  Updates: lock-free; relaxed ordering because a scrape needs no ordering between series

void zf_counter_add (zf_counter_t *counter, uint64_t amount)
{
    atomic_fetch_add_explicit (&counter->value, amount, memory_order_relaxed);
}

uint64_t zf_counter_value (const zf_counter_t *counter)
{
    return atomic_load_explicit (&counter->value, memory_order_relaxed);
}

void zf_gauge_set (zf_gauge_t *gauge, double value)
{
    atomic_store_explicit (&gauge->bits, s_double_to_bits (value), memory_order_relaxed);
}

void zf_gauge_add (zf_gauge_t *gauge, double delta)
{
    s_atomic_add_double (&gauge->bits, delta);
}

double zf_gauge_value (const zf_gauge_t *gauge)
{
    return s_bits_to_double (atomic_load_explicit (&gauge->bits, memory_order_relaxed));
}

//  The first bucket whose upper bound holds value; NaN compares false everywhere and so lands
//  in +Inf, as in the Go client.
static size_t s_bucket_index (const zf_histogram_t *histogram, double value)
{
    size_t low = 0;
    size_t high = histogram->bound_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (value <= histogram->bounds[middle])
            high = middle;
        else
            low = middle + 1;
    }
    return low;
}

void zf_histogram_observe (zf_histogram_t *histogram, double value)
{
    size_t index = s_bucket_index (histogram, value);
    atomic_fetch_add_explicit (&histogram->bucket_counts[index], 1, memory_order_relaxed);
    s_atomic_add_double (&histogram->sum_bits, value);
}

//  --------------------------------------------------------------------------------------------
//  Rendering

//  name_suffix{labels,le="bound"} value
static void s_render_sample (s_buf_t *out, const char *name, const char *suffix, const char *labels,
                             const char *le, const char *value)
{
    s_buf_puts (out, name);
    s_buf_puts (out, suffix);
    if (*labels || le) {
        s_buf_puts (out, "{");
        s_buf_puts (out, labels);
        if (le)
            s_buf_printf (out, "%sle=\"%s\"", *labels ? "," : "", le);
        s_buf_puts (out, "}");
    }
    s_buf_printf (out, " %s\n", value);
}

//  _count is the cumulative +Inf bucket rather than a separate atomic: observations race with
//  the scrape, and this way le="+Inf" and _count always agree, as Prometheus expects.
static void s_render_histogram (s_buf_t *out, const s_family_t *family, const s_series_t *series)
{
    const zf_histogram_t *histogram = &series->metric.histogram;
    char value[64];
    char bound[64];
    uint64_t cumulative = 0;
    for (size_t index = 0; index <= histogram->bound_count; index++) {
        cumulative += atomic_load_explicit (&histogram->bucket_counts[index], memory_order_relaxed);
        if (index < histogram->bound_count)
            s_format_double (bound, sizeof bound, histogram->bounds[index]);
        else
            zf_strlcpy (bound, "+Inf", sizeof bound);
        snprintf (value, sizeof value, "%" PRIu64, cumulative);
        s_render_sample (out, family->name, "_bucket", series->labels, bound, value);
    }
    s_format_double (
        value, sizeof value,
        s_bits_to_double (atomic_load_explicit (&histogram->sum_bits, memory_order_relaxed)));
    s_render_sample (out, family->name, "_sum", series->labels, NULL, value);
    snprintf (value, sizeof value, "%" PRIu64, cumulative);
    s_render_sample (out, family->name, "_count", series->labels, NULL, value);
}

static void s_render_series (s_buf_t *out, const s_family_t *family, const s_series_t *series)
{
    char value[64];
    switch (family->kind) {
    case S_COUNTER:
        snprintf (value, sizeof value, "%" PRIu64, zf_counter_value (&series->metric.counter));
        s_render_sample (out, family->name, "", series->labels, NULL, value);
        break;
    case S_GAUGE:
        s_format_double (value, sizeof value, zf_gauge_value (&series->metric.gauge));
        s_render_sample (out, family->name, "", series->labels, NULL, value);
        break;
    case S_HISTOGRAM: s_render_histogram (out, family, series); break;
    }
}

static void s_render_family (s_buf_t *out, const s_family_t *family)
{
    s_buf_printf (out, "# HELP %s ", family->name);
    s_buf_add_escaped (out, family->help, false);
    s_buf_printf (out, "\n# TYPE %s %s\n", family->name, s_kind_names[family->kind]);
    for (const s_series_t *series = family->first; series; series = series->next)
        s_render_series (out, family, series);
}

static int s_family_compare (const void *left, const void *right)
{
    const s_family_t *const *left_family = left;
    const s_family_t *const *right_family = right;
    return strcmp ((*left_family)->name, (*right_family)->name);
}

char *zf_metrics_render (void)
{
    s_buf_t out = {0};
    pthread_mutex_lock (&s_lock);
    s_family_t **sorted = zf_calloc (s_family_count, sizeof (s_family_t *));
    size_t count = 0;
    for (s_family_t *family = s_families; family; family = family->next)
        sorted[count++] = family;
    qsort (sorted, count, sizeof (s_family_t *), s_family_compare);
    for (size_t index = 0; index < count; index++)
        s_render_family (&out, sorted[index]);
    pthread_mutex_unlock (&s_lock);
    zf_free (sorted);
    return s_buf_take (&out);
}

//  --------------------------------------------------------------------------------------------
//  Shutdown

static void s_family_destroy (s_family_t *family)
{
    s_series_t *series = family->first;
    while (series) {
        s_series_t *next = series->next;
        if (family->kind == S_HISTOGRAM)
            zf_free ((void *) series->metric.histogram.bucket_counts);
        zf_free (series->labels);
        zf_free (series);
        series = next;
    }
    zhashx_destroy (&family->series_by_labels);
    zf_free (family->name);
    zf_free (family->help);
    zf_free (family->label_names);
    zf_free (family->bounds);
    zf_free (family);
}

void zf_metrics_shutdown (void)
{
    pthread_mutex_lock (&s_lock);
    s_family_t *family = s_families;
    while (family) {
        s_family_t *next = family->next;
        s_family_destroy (family);
        family = next;
    }
    s_families = NULL;
    s_family_count = 0;
    zhashx_destroy (&s_families_by_name);
    pthread_mutex_unlock (&s_lock);
}

//  --------------------------------------------------------------------------------------------
//  Selftest

#define S_THREADS    4
#define S_INCREMENTS 100000

static void *s_test_incrementer (void *args)
{
    //  Half the threads look the series up themselves: same labels, same pointer.
    zf_counter_t *counter = args ? args
                                 : zf_metrics_counter ("zfly_test_increments_total",
                                                       "Increments from test threads", NULL);
    zf_gauge_t *gauge = zf_metrics_gauge ("zfly_test_level", "A test gauge", NULL);
    for (int index = 0; index < S_INCREMENTS; index++) {
        zf_counter_add (counter, 1);
        zf_gauge_add (gauge, 1.0);
    }
    return NULL;
}

static void s_test_threads (void)
{
    zf_counter_t *counter =
        zf_metrics_counter ("zfly_test_increments_total", "Increments from test threads", NULL);
    pthread_t threads[S_THREADS];
    for (int index = 0; index < S_THREADS; index++)
        ZF_ASSERT (
            pthread_create (&threads[index], NULL, s_test_incrementer, index % 2 ? counter : NULL)
            == 0);
    for (int index = 0; index < S_THREADS; index++)
        pthread_join (threads[index], NULL);
    ZF_ASSERT (zf_counter_value (counter) == (uint64_t) S_THREADS * S_INCREMENTS);
    zf_gauge_t *gauge = zf_metrics_gauge ("zfly_test_level", "A test gauge", NULL);
    ZF_ASSERT (zf_gauge_value (gauge) == (double) S_THREADS * S_INCREMENTS);
}

static void s_test_expect (const char *expected, bool verbose)
{
    char *text = zf_metrics_render ();
    if (verbose || !streq (text, expected))
        printf ("--- rendered ---\n%s--- expected ---\n%s", text, expected);
    ZF_ASSERT (streq (text, expected));
    zf_free (text);
}

static void s_test_counters_and_escaping (bool verbose)
{
    zf_counter_t *sent = zf_metrics_counter ("zfly_test_sent_total", "Sent \\ with\nnewline",
                                             "actor", "echo", "type", "a\"b\\c\nd", NULL);
    zf_counter_t *again = zf_metrics_counter ("zfly_test_sent_total", "Sent \\ with\nnewline",
                                              "actor", "echo", "type", "a\"b\\c\nd", NULL);
    ZF_ASSERT (sent == again);
    zf_counter_t *other = zf_metrics_counter ("zfly_test_sent_total", "Sent \\ with\nnewline",
                                              "actor", "echo", "type", "\xff\xc0\xafok", NULL);
    ZF_ASSERT (other != sent);
    zf_counter_add (sent, 3);
    zf_counter_add (other, 1);
    zf_gauge_t *gauge = zf_metrics_gauge ("zfly_test_temperature", "A gauge", NULL);
    zf_gauge_set (gauge, 0.25);
    zf_gauge_add (gauge, -1.5);
    zf_gauge_t *special =
        zf_metrics_gauge ("zfly_test_special", "Special values", "kind", "nan", NULL);
    zf_gauge_set (special, NAN);
    zf_gauge_set (zf_metrics_gauge ("zfly_test_special", "Special values", "kind", "inf", NULL),
                  INFINITY);
    zf_gauge_set (zf_metrics_gauge ("zfly_test_special", "Special values", "kind", "-inf", NULL),
                  -INFINITY);
    //  Sorted by family name, series in creation order.
    s_test_expect ("# HELP zfly_test_sent_total Sent \\\\ with\\nnewline\n"
                   "# TYPE zfly_test_sent_total counter\n"
                   "zfly_test_sent_total{actor=\"echo\",type=\"a\\\"b\\\\c\\nd\"} 3\n"
                   "zfly_test_sent_total{actor=\"echo\",type=\"???ok\"} 1\n"
                   "# HELP zfly_test_special Special values\n"
                   "# TYPE zfly_test_special gauge\n"
                   "zfly_test_special{kind=\"nan\"} NaN\n"
                   "zfly_test_special{kind=\"inf\"} +Inf\n"
                   "zfly_test_special{kind=\"-inf\"} -Inf\n"
                   "# HELP zfly_test_temperature A gauge\n"
                   "# TYPE zfly_test_temperature gauge\n"
                   "zfly_test_temperature -1.25\n",
                   verbose);
}

static void s_test_histogram (bool verbose)
{
    const double buckets[] = {0.1, 0.5, 2.5};
    zf_histogram_t *histogram = zf_metrics_histogram (
        "zfly_test_duration_seconds", "Test durations", buckets, 3, "op", "get", NULL);
    zf_histogram_observe (histogram, 0.0625);
    zf_histogram_observe (histogram, 0.5); //  bounds are inclusive
    zf_histogram_observe (histogram, 0.25);
    zf_histogram_observe (histogram, 100);
    zf_histogram_t *bare =
        zf_metrics_histogram ("zfly_test_size_bytes", "Test sizes", buckets, 3, NULL);
    zf_histogram_observe (bare, 1);
    s_test_expect ("# HELP zfly_test_duration_seconds Test durations\n"
                   "# TYPE zfly_test_duration_seconds histogram\n"
                   "zfly_test_duration_seconds_bucket{op=\"get\",le=\"0.1\"} 1\n"
                   "zfly_test_duration_seconds_bucket{op=\"get\",le=\"0.5\"} 3\n"
                   "zfly_test_duration_seconds_bucket{op=\"get\",le=\"2.5\"} 3\n"
                   "zfly_test_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
                   "zfly_test_duration_seconds_sum{op=\"get\"} 100.8125\n"
                   "zfly_test_duration_seconds_count{op=\"get\"} 4\n"
                   "# HELP zfly_test_size_bytes Test sizes\n"
                   "# TYPE zfly_test_size_bytes histogram\n"
                   "zfly_test_size_bytes_bucket{le=\"0.1\"} 0\n"
                   "zfly_test_size_bytes_bucket{le=\"0.5\"} 0\n"
                   "zfly_test_size_bytes_bucket{le=\"2.5\"} 1\n"
                   "zfly_test_size_bytes_bucket{le=\"+Inf\"} 1\n"
                   "zfly_test_size_bytes_sum 1\n"
                   "zfly_test_size_bytes_count 1\n",
                   verbose);
}

static void s_test_label_value_cap (void)
{
    char long_value[ZF_METRICS_LABEL_VALUE_MAX + 10];
    memset (long_value, 'x', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    //  A multi-byte character straddling the cap is dropped whole, not cut in half.
    memcpy (long_value + ZF_METRICS_LABEL_VALUE_MAX - 1, "\xc3\xa9", 2);
    zf_metrics_counter ("zfly_test_long_total", "Long labels", "value", long_value, NULL);
    char *text = zf_metrics_render ();
    char expected[ZF_METRICS_LABEL_VALUE_MAX + 64];
    snprintf (expected, sizeof expected, "{value=\"%.*s\"} 0\n", ZF_METRICS_LABEL_VALUE_MAX - 1,
              long_value);
    ZF_ASSERT (strstr (text, expected));
    zf_free (text);
}

//  The strings Go's strconv.FormatFloat (v, 'g', -1, 64) gives for the same values.
static void s_test_format (void)
{
    const struct {
        double value;
        const char *text;
    } cases[] = {
        {0, "0"},
        {0.1, "0.1"},
        {0.005, "0.005"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {10, "10"},
        {-1.25, "-1.25"},
        {123456, "123456"},
        {1e6, "1e+06"},
        {1048576, "1.048576e+06"},
        {1.0 / 3, "0.3333333333333333"},
        {123456789012.0, "1.23456789012e+11"},
        {1e-300, "1e-300"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {5e-324, "5e-324"},
    };
    for (size_t index = 0; index < ZF_ARRAY_LEN (cases); index++) {
        char text[64];
        s_format_double (text, sizeof text, cases[index].value);
        if (!streq (text, cases[index].text))
            printf ("format %.17g: got %s, expected %s\n", cases[index].value, text,
                    cases[index].text);
        ZF_ASSERT (streq (text, cases[index].text));
    }
}

void zf_metrics_test (bool verbose)
{
    char *empty = zf_metrics_render ();
    ZF_ASSERT (streq (empty, ""));
    zf_free (empty);

    s_test_counters_and_escaping (verbose);
    zf_metrics_shutdown ();
    s_test_histogram (verbose);
    zf_metrics_shutdown ();
    s_test_threads ();
    s_test_label_value_cap ();

    s_test_format ();
    zf_metrics_shutdown ();
}
