/*  zf_prelude.h — included first by every zfly source file.

    System and dependency headers, the always-on assertion, and the banned-function list.
    Assertions guard programming errors only (impossible states, API misuse); they stay on in
    release builds, as in redis, because a wrong cache is worse than a crash. */
#ifndef ZF_PRELUDE_H_INCLUDED
#define ZF_PRELUDE_H_INCLUDED

#define _GNU_SOURCE 1
#include <czmq.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void zf_assert_fail (const char *expr, const char *file, int line, const char *func)
    __attribute__ ((noreturn));

#define ZF_ASSERT(expr) ((expr) ? (void) 0 : zf_assert_fail (#expr, __FILE__, __LINE__, __func__))

#define ZF_ARRAY_LEN(a) (sizeof (a) / sizeof ((a)[0]))

//  Out of memory aborts: every allocation in zfly goes through these.
void *zf_malloc (size_t size);
void *zf_calloc (size_t count, size_t size);
void *zf_realloc (void *ptr, size_t size);
char *zf_strdup (const char *s);
char *zf_strndup (const char *s, size_t n);
char *zf_asprintf (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
#define zf_free(p) (free (p))

//  Copies at most dst_size-1 bytes and always terminates; returns strlen (src) like strlcpy,
//  so truncation is detectable as a return value >= dst_size.
size_t zf_strlcpy (char *dst, const char *src, size_t dst_size);

//  curl's banned list: unbounded or locale-fragile calls that have caused real bugs.
#ifndef ZF_ALLOW_BANNED
#pragma GCC poison sprintf vsprintf strcpy strcat strtok atoi atol gets
#endif

#endif
