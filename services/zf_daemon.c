/*  zf_daemon.c — starts actors, watches their pipes and the signals, stops them in order.

    No business logic lives here: the daemon turns configuration into a zf_node_t, starts the
    process-wide helpers (CURVE authenticator, tap, HTTP endpoint), then one zactor per actor
    section, and waits. Any actor that dies takes the process down with a log line that says
    which and why; a supervisor cannot fix a dead actor's state, systemd's restart can. */
#include "zf_daemon.h"
#include "zf_bus.h"
#include "zf_http.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_notify.h"
#include "zf_sections.h"
#include "zf_tap.h"
#include <openssl/crypto.h>
#include <pthread.h>
#include <sched.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define IO_THREADS_AUTO_MAX 4    //  [bus] io_threads = 0 picks at most this many
#define TRIM_INTERVAL_MS    5000 //  how often the supervisor looks whether to trim the heap
//  Share of a core below which the daemon counts as idle: an idle daemon's timers (heartbeats,
//  announces) take well under 1% of a core, and a transfer 30% or more.
#define TRIM_IDLE_CPU 0.05

#define STOP_DEADLINE_S 5 //  SIGTERM to exit, whatever an actor does

typedef struct {
    const zf_actor_kind_t *kind;
    zf_actor_args_t args;
    zactor_t *handle;
    struct daemon_s *daemon;
} running_actor_t;

typedef struct daemon_s {
    zf_config_t *config;
    zf_node_t *node;
    zactor_t *tap;
    zf_http_t *http;
    running_actor_t actors[16];
    size_t actor_count;
    int exit_code;       //  what the process exits with once the watch loop ends
    int64_t trim_cpu_us; //  the process's CPU time at the last trim check
    bool trim_due;       //  it worked since the last trim
} daemon_t;

static zf_node_t *s_node_new (zf_config_t *config, zf_error_t *err)
{
    const zf_node_config_t *node_config = zf_config_section (config, "node");
    const zf_bus_config_t *bus_config = zf_config_section_or_defaults (config, "bus");
    zf_node_options_t options = {
        .name = zf_node_config_name (node_config),
        .cert_path = *bus_config->cert ? bus_config->cert : NULL,
        .allow_dir = *bus_config->allow ? bus_config->allow : NULL,
        .insecure = bus_config->insecure,
        .hwm = (int) bus_config->hwm,
        .tap = node_config->tap,
        .tap_hwm = (int) bus_config->tap_hwm,
        .tap_secrets = node_config->tap_secrets,
        .request_timeout_ms = bus_config->request_timeout_ms,
        .request_retries = (int) bus_config->request_retries,
        .congestion = bus_config->congestion,
    };
    zf_node_t *node = zf_node_new (&options, err);
    if (!node)
        return NULL;
    size_t count;
    const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &count);
    for (size_t index = 0; index < count; index++)
        if (zf_node_add_route (node, entries[index].key, entries[index].value, entries[index].where,
                               err)
            != ZF_OK) {
            zf_node_destroy (&node);
            return NULL;
        }
    for (size_t index = 0; index < zf_actor_kind_count; index++)
        if (zf_config_has_section (config, zf_actor_kinds[index].name))
            zf_node_add_local (node, zf_actor_kinds[index].name);
    return node;
}

//  Reads the first answer of a fallible start ("OK"/"READY" or "ERROR"/"FATAL" why).
static bool s_await_start (zactor_t *actor, const char *what, zf_error_t *err)
{
    zmsg_t *answer = zmsg_recv (actor);
    char *word = answer ? zmsg_popstr (answer) : NULL;
    bool ok = word && (streq (word, "OK") || streq (word, "READY"));
    if (!ok) {
        char *why = answer ? zmsg_popstr (answer) : NULL;
        zf_error_set (err, ZF_E_INTERNAL, what, "%s could not start: %s", what,
                      why ? why : (word ? word : "no answer"));
        zstr_free (&why);
    }
    zstr_free (&word);
    zmsg_destroy (&answer);
    return ok;
}

//  Every actor thread runs its actor, then frees what OpenSSL (digests, TLS, libcurl) keeps
//  per thread: its thread-exit hook may otherwise run after the process's own cleanup, and
//  LeakSanitizer reports the leftovers. czmq signals the pipe only after this returns.
static void s_actor_thread (zsock_t *pipe, void *arg)
{
    running_actor_t *running = arg;
    running->kind->run (pipe, &running->args);
    OPENSSL_thread_stop ();
}

static bool s_start_actors (daemon_t *self, zf_error_t *err)
{
    for (size_t index = 0; index < zf_actor_kind_count; index++) {
        const zf_actor_kind_t *kind = &zf_actor_kinds[index];
        if (!zf_config_has_section (self->config, kind->name))
            continue;
        ZF_ASSERT (self->actor_count < ZF_ARRAY_LEN (self->actors));
        running_actor_t *running = &self->actors[self->actor_count++];
        running->kind = kind;
        running->args = (zf_actor_args_t){
            .node = self->node,
            .name = kind->name,
            .config = zf_config_section (self->config, kind->name),
            .upstream = zf_config_section_or_defaults (self->config, "upstream"),
        };
        running->handle = zactor_new (s_actor_thread, running);
        if (!s_await_start (running->handle, kind->name, err))
            return false;
        zf_info ("zfly", "actor %s ready", kind->name);
    }
    return true;
}

//  A watchdog for the stop sequence: an actor stuck in a blocking call must not keep the
//  process alive past the deadline systemd and operators expect.
static void *s_stop_watchdog (void *arg)
{
    (void) arg;
    sleep (STOP_DEADLINE_S);
    zf_error_log ("zfly", "stop took longer than %d s; exiting anyway", STOP_DEADLINE_S);
    _exit (1);
    return NULL;
}

static void s_stop (daemon_t *self)
{
    pthread_t watchdog;
    if (pthread_create (&watchdog, NULL, s_stop_watchdog, NULL) == 0)
        pthread_detach (watchdog);
    zf_notify_stopping ();
    if (self->http)
        zf_http_set_stopping (self->http);
    for (size_t index = self->actor_count; index > 0; index--) {
        running_actor_t *running = &self->actors[index - 1];
        zactor_destroy (&running->handle);
        zf_debug ("zfly", "actor %s stopped", running->kind->name);
    }
    zactor_destroy (&self->tap);
    zf_http_destroy (&self->http);
}

static int s_on_signal (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    daemon_t *self = arg;
    struct signalfd_siginfo info;
    if (read (item->fd, &info, sizeof info) != (ssize_t) sizeof info)
        return 0;
    zf_notice ("zfly", "stopping on %s", strsignal ((int) info.ssi_signo));
    self->exit_code = 0;
    return -1;
}

//  Anything an actor says after it started: FATAL, DONE, or its final signal.
static int s_on_actor (zloop_t *loop, zsock_t *pipe, void *arg)
{
    (void) loop;
    running_actor_t *running = arg;
    daemon_t *self = running->daemon;
    const char *actor = running->kind->name;
    zmsg_t *msg = zmsg_recv (pipe);
    if (!msg)
        return 0;
    bool stop = true;
    if (zmsg_signal (msg) >= 0) {
        zf_error_log ("zfly", "actor %s died without saying why", actor);
        self->exit_code = 1;
    } else {
        char *word = zmsg_popstr (msg);
        char *detail = zmsg_popstr (msg);
        if (word && streq (word, "FATAL")) {
            zf_error_log ("zfly", "actor %s died: %s", actor, detail ? detail : "no reason");
            self->exit_code = 1;
        } else if (word && streq (word, "DONE")) {
            long code = detail ? strtol (detail, NULL, 10) : 1;
            zf_notice ("zfly", "actor %s finished with status %ld; stopping", actor, code);
            self->exit_code = code >= 0 && code < 126 ? (int) code : 1;
        } else {
            zf_warning ("zfly", "actor %s said something unexpected: %s", actor,
                        word ? word : "(empty)");
            stop = false;
        }
        zstr_free (&word);
        zstr_free (&detail);
    }
    zmsg_destroy (&msg);
    return stop ? -1 : 0;
}

//  Free heap pages go back to the system once a burst of work is over: piece buffers come
//  from the heap (zfly_main.c), and a daemon that served a burst should not keep what it no
//  longer uses. Not while it works: trimming then makes every reused buffer fault its pages
//  in again (a 1 GiB download took up to 10 times as long with a trim every 5 s). Idle: the
//  process used less than TRIM_IDLE_CPU of a core since the last look.
static int s_trim (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    daemon_t *self = arg;
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    int64_t cpu_us = (int64_t) usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec
                     + (int64_t) usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec;
    bool idle = cpu_us - self->trim_cpu_us < (int64_t) (TRIM_IDLE_CPU * TRIM_INTERVAL_MS * 1000);
    if (!idle)
        self->trim_due = true; //  a burst: trim once it is over
    else if (self->trim_due) {
        malloc_trim (0);
        self->trim_due = false;
    }
    self->trim_cpu_us = cpu_us;
    return 0;
}

static int s_watch (daemon_t *self, int signal_fd)
{
    zloop_t *loop = zloop_new ();
    zloop_timer (loop, TRIM_INTERVAL_MS, 0, s_trim, self);
    zloop_set_nonstop (loop, true); //  signals come through signal_fd, not czmq's handler
    zmq_pollitem_t signals = {.socket = NULL, .fd = signal_fd, .events = ZMQ_POLLIN};
    zloop_poller (loop, &signals, s_on_signal, self);
    for (size_t index = 0; index < self->actor_count; index++)
        zloop_reader (loop, zactor_sock (self->actors[index].handle), s_on_actor,
                      &self->actors[index]);
    zloop_start (loop);
    zloop_destroy (&loop);
    return self->exit_code;
}

//  SIGTERM and SIGINT are blocked in every thread (actors inherit the mask) and read from a
//  signalfd by the supervisor's loop, so no actor is ever interrupted mid-call.
static int s_signal_fd (void)
{
    sigset_t mask;
    sigemptyset (&mask);
    sigaddset (&mask, SIGTERM);
    sigaddset (&mask, SIGINT);
    int rc = pthread_sigmask (SIG_BLOCK, &mask, NULL);
    ZF_ASSERT (rc == 0);
    int fd = signalfd (-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    ZF_ASSERT (fd >= 0);
    return fd;
}

static bool s_start (daemon_t *self, zf_error_t *err)
{
    const zf_node_config_t *node_config = zf_config_section (self->config, "node");
    const zf_bus_config_t *bus_config = zf_config_section_or_defaults (self->config, "bus");
    if (bus_config->insecure)
        zf_warning ("zfly", "[bus] insecure = true: tcp:// bus traffic is neither encrypted nor "
                            "authenticated; anyone who can reach the ports can talk to this node");
    self->node = s_node_new (self->config, err);
    if (!self->node || zf_node_start_auth (self->node, err) != ZF_OK)
        return false;
    if (*node_config->tap && node_config->tap_secrets)
        zf_warning ("zfly",
                    "[node] tap_secrets = true: credentials crossing the bus (tokens, "
                    "passwords, Authorization headers) are shown in clear to anyone "
                    "who reads the tap %s",
                    node_config->tap);
    if (*node_config->tap) {
        self->tap = zactor_new (zf_tap_actor, self->node);
        if (!s_await_start (self->tap, "tap", err))
            return false;
    }
    if (*node_config->http) {
        self->http = zf_http_new (node_config->http, err);
        if (!self->http) {
            zf_error_prefix (err, "[node] http");
            return false;
        }
    }
    return s_start_actors (self, err);
}

//  libzmq moves every connection's bytes (TCP and CURVE's encryption) on its I/O threads, one
//  unless told otherwise: a parent serving many children over CURVE would be held to one core's
//  crypto however many cores the host has. libzmq gives each new connection to its least loaded
//  I/O thread, so several threads carry several connections at once. Auto: one per two CPUs this
//  process may run on (the other half is for the actors' hashing and storage), 1 to 4.
static int s_io_threads (const zf_bus_config_t *bus_config)
{
    if (bus_config->io_threads > 0)
        return (int) bus_config->io_threads;
    cpu_set_t cpus;
    int count = sched_getaffinity (0, sizeof cpus, &cpus) == 0 ? CPU_COUNT (&cpus) : 1;
    int threads = count / 2;
    return threads < 1 ? 1 : threads > IO_THREADS_AUTO_MAX ? IO_THREADS_AUTO_MAX : threads;
}

int zf_daemon_run (zf_config_t *config)
{
    const zf_node_config_t *node_config = zf_config_section (config, "node");
    zf_log_set_level ((zf_log_level_t) node_config->log_level);
    int signal_fd = s_signal_fd ();
    zsys_handler_set (NULL); //  czmq must not install its own SIGINT/SIGTERM handler
    zf_bus_process_init ();
    //  Before the first socket: libzmq starts its I/O threads with it.
    zsys_set_io_threads ((size_t) s_io_threads (zf_config_section_or_defaults (config, "bus")));

    daemon_t self = {.config = config};
    for (size_t index = 0; index < ZF_ARRAY_LEN (self.actors); index++)
        self.actors[index].daemon = &self;
    zf_error_t err;
    int exit_code;
    if (!s_start (&self, &err)) {
        //  The file too: with several nodes on one host, which one failed matters.
        const char *path = zf_config_path (config);
        zf_error_log ("zfly", "%s%s%s", *path ? path : "", *path ? ": " : "", err.message);
        exit_code = 1;
    } else {
        //  Ready first, then say so: whoever waits for the line may probe /healthz at once.
        if (self.http)
            zf_http_set_ready (self.http, true);
        zf_notify_ready ();
        zf_notice ("zfly", "ready node=%s actors=%zu config=%s http_port=%d",
                   zf_node_name (self.node), self.actor_count, zf_config_path (config),
                   self.http ? zf_http_port (self.http) : 0);
        exit_code = s_watch (&self, signal_fd);
    }
    s_stop (&self);
    zf_node_destroy (&self.node);
    close (signal_fd);
    zf_notice ("zfly", "stopped exit=%d", exit_code);
    return exit_code;
}
