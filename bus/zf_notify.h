/*  zf_notify.h — tells systemd how the daemon is doing (Type=notify units).

    Each call sends one datagram to $NOTIFY_SOCKET through libsystemd's sd_notify and does
    nothing when the variable is unset (started by hand, in tests, under another supervisor).
    Send READY=1 once the daemon serves (bus bound, HTTP endpoint up), STOPPING=1 when it
    begins to shut down. A failed send is logged once and otherwise ignored: readiness
    reporting must never take the daemon down. */
#ifndef ZF_NOTIFY_H_INCLUDED
#define ZF_NOTIFY_H_INCLUDED

#include "zf_prelude.h"

void zf_notify_ready (void);
void zf_notify_stopping (void);

//  A free-form status line, shown by `systemctl status` ("serving peers=12").
void zf_notify_status (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

void zf_notify_test (bool verbose);

#endif
