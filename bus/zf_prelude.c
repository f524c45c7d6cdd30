/*  zf_prelude.c — allocation wrappers and the assertion handler. */
#include "zf_prelude.h"

void zf_assert_fail (const char *expr, const char *file, int line, const char *func)
{
    fprintf (stderr, "zfly: assertion failed: %s (%s:%d in %s)\n", expr, file, line, func);
    fflush (stderr);
    abort ();
}

static void s_out_of_memory (size_t size)
{
    fprintf (stderr, "zfly: out of memory allocating %zu bytes\n", size);
    abort ();
}

void *zf_malloc (size_t size)
{
    void *ptr = malloc (size ? size : 1);
    if (!ptr)
        s_out_of_memory (size);
    return ptr;
}

void *zf_calloc (size_t count, size_t size)
{
    void *ptr = calloc (count ? count : 1, size ? size : 1);
    if (!ptr)
        s_out_of_memory (count * size);
    return ptr;
}

void *zf_realloc (void *ptr, size_t size)
{
    void *grown = realloc (ptr, size ? size : 1);
    if (!grown)
        s_out_of_memory (size);
    return grown;
}

char *zf_strdup (const char *s)
{
    return zf_strndup (s, strlen (s));
}

char *zf_strndup (const char *s, size_t n)
{
    size_t len = strnlen (s, n);
    char *copy = zf_malloc (len + 1);
    memcpy (copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *zf_asprintf (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *result = NULL;
    int rc = vasprintf (&result, fmt, args);
    va_end (args);
    if (rc < 0)
        s_out_of_memory (0);
    return result;
}

size_t zf_strlcpy (char *dst, const char *src, size_t dst_size)
{
    size_t len = strlen (src);
    if (dst_size > 0) {
        size_t copy = len < dst_size - 1 ? len : dst_size - 1;
        memcpy (dst, src, copy);
        dst[copy] = '\0';
    }
    return len;
}
