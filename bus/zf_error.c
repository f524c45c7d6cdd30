/*  zf_error.c — filling and naming errors. */
#include "zf_error.h"
#include "zf_msgs.h"

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

void zf_error_prefix (zf_error_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[sizeof err->message];
    va_list args;
    va_start (args, fmt);
    vsnprintf (prefix, sizeof prefix, fmt, args);
    va_end (args);
    char message[2 * sizeof err->message + 2];
    snprintf (message, sizeof message, "%s: %s", prefix, err->message);
    zf_strlcpy (err->message, message, sizeof err->message);
}

//  The wire word of each status is declared once, in schemas/core.schema (enum code); this
//  maps the local status onto it.
static zf_code_t s_code_of_status (zf_status_t code)
{
    switch (code) {
    case ZF_OK: return ZF_CODE_NONE;
    case ZF_E_TRUNCATED: return ZF_CODE_TRUNCATED;
    case ZF_E_TRAILING: return ZF_CODE_TRAILING;
    case ZF_E_TYPE: return ZF_CODE_WRONG_TYPE;
    case ZF_E_MISSING: return ZF_CODE_MISSING;
    case ZF_E_TOO_LARGE: return ZF_CODE_TOO_LARGE;
    case ZF_E_UNKNOWN_TYPE: return ZF_CODE_UNKNOWN_TYPE;
    case ZF_E_VERSION: return ZF_CODE_VERSION;
    case ZF_E_INVALID: return ZF_CODE_INVALID;
    case ZF_E_CONFIG: return ZF_CODE_CONFIG;
    case ZF_E_IO: return ZF_CODE_IO;
    case ZF_E_TIMEOUT: return ZF_CODE_TIMEOUT;
    case ZF_E_UNREACHABLE: return ZF_CODE_UNREACHABLE;
    case ZF_E_REMOTE: return ZF_CODE_REMOTE;
    case ZF_E_REFUSED: return ZF_CODE_REFUSED;
    case ZF_E_OVERLOAD: return ZF_CODE_OVERLOAD;
    case ZF_E_INTERNAL: return ZF_CODE_INTERNAL;
    }
    return ZF_CODE_UNKNOWN;
}

const char *zf_status_name (zf_status_t code)
{
    return code == ZF_OK ? "ok" : zf_code_name (s_code_of_status (code));
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
    ZF_ASSERT (streq (zf_status_name (ZF_OK), "ok"));
    ZF_ASSERT (streq (zf_status_name ((zf_status_t) 5), "unknown"));
    //  Every status has its own declared code, and it names the status.
    for (int status = ZF_E_TRUNCATED; status >= ZF_E_INTERNAL; status--) {
        zf_code_t code = s_code_of_status ((zf_status_t) status);
        ZF_ASSERT (code != ZF_CODE_NONE && code != ZF_CODE_UNKNOWN);
        ZF_ASSERT (zf_code_of (zf_status_name ((zf_status_t) status)) == code);
        for (int other = status - 1; other >= ZF_E_INTERNAL; other--)
            ZF_ASSERT (s_code_of_status ((zf_status_t) other) != code);
    }
    ZF_ASSERT (zf_error_set (NULL, ZF_E_IO, NULL, "ignored") == ZF_E_IO);
    zf_error_set (&err, ZF_E_IO, "tcp://*:1", "cannot bind tcp://*:1: Address already in use");
    zf_error_prefix (&err, "[%s] bind", "storage");
    ZF_ASSERT (
        streq (err.message, "[storage] bind: cannot bind tcp://*:1: Address already in use"));
    ZF_ASSERT (err.code == ZF_E_IO && streq (err.where, "tcp://*:1"));
    zf_error_prefix (NULL, "nothing");
}
