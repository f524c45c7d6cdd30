/*  zf_error.c — filling and naming errors. */
#include "zf_error.h"

zf_status_t zf_error_set (zf_error_t *err, zf_status_t code, const char *where, const char *fmt,
                          ...)
{
    if (err) {
        err->code = code;
        zf_strlcpy (err->where, where ? where : "", sizeof err->where);
        va_list args;
        va_start (args, fmt);
        vsnprintf (err->message, sizeof err->message, fmt, args);
        va_end (args);
    }
    return code;
}

void zf_error_clear (zf_error_t *err)
{
    if (err) {
        err->code = ZF_OK;
        err->where[0] = '\0';
        err->message[0] = '\0';
    }
}

const char *zf_status_name (zf_status_t code)
{
    switch (code) {
    case ZF_OK: return "ok";
    case ZF_E_TRUNCATED: return "truncated";
    case ZF_E_TRAILING: return "trailing";
    case ZF_E_TYPE: return "wrong_type";
    case ZF_E_MISSING: return "missing";
    case ZF_E_TOO_LARGE: return "too_large";
    case ZF_E_UNKNOWN_TYPE: return "unknown_type";
    case ZF_E_VERSION: return "version";
    case ZF_E_INVALID: return "invalid";
    case ZF_E_CONFIG: return "config";
    case ZF_E_IO: return "io";
    case ZF_E_TIMEOUT: return "timeout";
    case ZF_E_UNREACHABLE: return "unreachable";
    case ZF_E_REMOTE: return "remote";
    case ZF_E_REFUSED: return "refused";
    case ZF_E_OVERLOAD: return "overload";
    case ZF_E_INTERNAL: return "internal";
    }
    return "unknown";
}

//  --------------------------------------------------------------------------------------------
//  Selftest

void zf_error_test (bool verbose)
{
    (void) verbose;
    zf_error_t err;
    zf_error_clear (&err);
    ZF_ASSERT (zf_error_set (&err, ZF_E_TYPE, "body.seq", "expected %s", "uint") == ZF_E_TYPE);
    ZF_ASSERT (streq (err.where, "body.seq"));
    ZF_ASSERT (streq (err.message, "expected uint"));
    ZF_ASSERT (streq (zf_status_name (ZF_E_TOO_LARGE), "too_large"));
    ZF_ASSERT (zf_error_set (NULL, ZF_E_IO, NULL, "ignored") == ZF_E_IO);
}
