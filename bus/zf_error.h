/*  zf_error.h — the one error type of the zfly libraries.

    A failed call returns a negative zf_status_t and, where the caller passed one, fills a
    zf_error_t that says what failed and where: the field path for a decoder, file and line for
    the configuration reader, the peer for the bus. The text is for people; the code is for
    programs and for counters. */
#ifndef ZF_ERROR_H_INCLUDED
#define ZF_ERROR_H_INCLUDED

#include "zf_prelude.h"

typedef enum {
    ZF_OK = 0,
    ZF_E_TRUNCATED = -1,    //  input ends inside a value
    ZF_E_TRAILING = -2,     //  bytes left over after the value
    ZF_E_TYPE = -3,         //  a value of the wrong msgpack type
    ZF_E_MISSING = -4,      //  a required field is absent
    ZF_E_TOO_LARGE = -5,    //  a string, list, number or frame over its bound
    ZF_E_UNKNOWN_TYPE = -6, //  a message type no schema defines
    ZF_E_VERSION = -7,      //  a schema version this build does not speak
    ZF_E_INVALID = -8,      //  a value that is well-typed but not acceptable
    ZF_E_CONFIG = -9,       //  the configuration is wrong
    ZF_E_IO = -10,          //  a file or socket operation failed
    ZF_E_TIMEOUT = -11,     //  a deadline passed
    ZF_E_UNREACHABLE = -12, //  no endpoint, or the peer cannot be reached
    ZF_E_REMOTE = -13,      //  the peer answered with an error reply
    ZF_E_REFUSED = -14,     //  authentication or policy refused the request
    ZF_E_OVERLOAD = -15,    //  a high-water mark was reached and the message dropped
    ZF_E_INTERNAL = -16,    //  a bug: logged loudly
} zf_status_t;

typedef struct {
    zf_status_t code;
    char where[160];   //  field path ("body.parents[2].host"), "file:line", or peer name
    char message[320]; //  what went wrong, in words
} zf_error_t;

//  Fills err (when not NULL) and returns code, so a failure site is one line:
//      return zf_error_set (err, ZF_E_TYPE, path, "expected a string, got %s", kind);
zf_status_t zf_error_set (zf_error_t *err, zf_status_t code, const char *where, const char *fmt,
                          ...) __attribute__ ((format (printf, 4, 5)));

void zf_error_clear (zf_error_t *err);

//  Puts context in front of err's message, keeping code and where, so a caller that knows
//  more than the failing call (the INI key a value came from) can say it:
//      zf_error_prefix (err, "[%s] bind", actor);   //  "[storage] bind: cannot bind …"
//  A message that no longer fits is cut at the end. err may be NULL.
void zf_error_prefix (zf_error_t *err, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Stable short name of a code ("truncated", "too_large", …): used in error replies and as
//  a metrics label. The names are the first members of enum code in schemas/core.schema.
const char *zf_status_name (zf_status_t code);

void zf_error_test (bool verbose);

#endif
