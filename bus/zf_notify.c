/*  zf_notify.c — sd_notify wrappers. */
#include "zf_notify.h"
#include "zf_log.h"
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define S_STATUS_MAX 256

static void s_notify (const char *state)
{
    //  0 when NOTIFY_SOCKET is unset: nothing to do, nothing to log.
    int rc = sd_notify (0, state);
    if (rc < 0) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (1, 60000);
        char text[128];
        zf_warning_limited (&limit, "notify", "sd_notify failed error=\"%s\"",
                            strerror_r (-rc, text, sizeof text));
    }
}

void zf_notify_ready (void)
{
    s_notify ("READY=1");
}

void zf_notify_stopping (void)
{
    s_notify ("STOPPING=1");
}

void zf_notify_status (const char *fmt, ...)
{
    char state[sizeof "STATUS=" + S_STATUS_MAX];
    int prefix_len = snprintf (state, sizeof state, "STATUS=");
    va_list args;
    va_start (args, fmt);
    vsnprintf (state + prefix_len, sizeof state - (size_t) prefix_len, fmt, args);
    va_end (args);
    //  The protocol is one assignment per line: a newline in a status that quotes outside
    //  input could otherwise forge READY=1 or worse.
    for (char *cursor = state; *cursor; cursor++)
        if (*cursor == '\n')
            *cursor = ' ';
    s_notify (state);
}

//  --------------------------------------------------------------------------------------------
//  Selftest: play systemd's side with our own datagram socket

static int s_test_listener (char *path, size_t path_size)
{
    snprintf (path, path_size, "/tmp/zf-notify-test-%d.sock", (int) getpid ());
    unlink (path);
    int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ZF_ASSERT (fd >= 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    ZF_ASSERT (zf_strlcpy (address.sun_path, path, sizeof address.sun_path)
               < sizeof address.sun_path);
    ZF_ASSERT (bind (fd, (struct sockaddr *) &address, sizeof address) == 0);
    struct timeval deadline = {.tv_sec = 10}; //  a missing datagram fails the test, never hangs
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
    return fd;
}

static void s_test_receive (int fd, const char *expected, bool verbose)
{
    char datagram[512];
    ssize_t got = recv (fd, datagram, sizeof datagram - 1, 0);
    ZF_ASSERT (got >= 0);
    datagram[got] = '\0';
    if (verbose)
        printf ("zf_notify_test: received \"%s\"\n", datagram);
    ZF_ASSERT (streq (datagram, expected));
}

void zf_notify_test (bool verbose)
{
    const char *inherited = getenv ("NOTIFY_SOCKET");
    char *saved = inherited ? zf_strdup (inherited) : NULL;
    char path[108];
    int fd = s_test_listener (path, sizeof path);
    ZF_ASSERT (setenv ("NOTIFY_SOCKET", path, 1) == 0);

    zf_notify_ready ();
    s_test_receive (fd, "READY=1", verbose);
    zf_notify_status ("serving peers=%d", 12);
    s_test_receive (fd, "STATUS=serving peers=12", verbose);
    zf_notify_status ("%s", "evil\nREADY=1");
    s_test_receive (fd, "STATUS=evil READY=1", verbose);
    zf_notify_stopping ();
    s_test_receive (fd, "STOPPING=1", verbose);

    //  Unset: a no-op, and nothing arrives.
    ZF_ASSERT (unsetenv ("NOTIFY_SOCKET") == 0);
    zf_notify_ready ();
    char datagram[64];
    ZF_ASSERT (recv (fd, datagram, sizeof datagram, MSG_DONTWAIT) == -1);
    ZF_ASSERT (errno == EAGAIN || errno == EWOULDBLOCK);

    close (fd);
    unlink (path);
    if (saved)
        setenv ("NOTIFY_SOCKET", saved, 1);
    zf_free (saved);
}
