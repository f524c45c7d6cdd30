/*  zf_get_download.c — a download: the task reader's events (status, layout, pieces, the
    end), the loop with its tick (progress, the idle timeout), and how a run ends (the exit
    status and the message for each way a task can fail).

    The pieces themselves go to zf_get_output.c (a copy) or zf_get_link.c (a hard link). */
#include "zf_get.h"
#include "zf_clock.h"
#include "zf_human.h"
#include <fcntl.h>
#include <unistd.h>

#define LATER_TIMEOUT_MIN_MS 10000 //  once the daemon answered, it may be busy for a while
#define READ_TIMEOUT_MS      30000 //  one piece.read: up to a piece of 64 MiB over the bus
#define TICK_MS              200   //  progress redraws, the idle timeout
#define POLL_MS              50    //  storage.stat interval for a daemon that does not hold it
#define STAT_WAIT_MS         1000  //  how long storage may hold a storage.stat without news
#define READ_SLOTS           ZF_TASK_READER_WINDOW_MAX //  pieces located ahead at most
#define READ_BYTES_IN_FLIGHT (16u << 20) //  bytes of pieces read over the bus held at most

// --- progress -------------------------------------------------------------------------------

//  What the progress display counts: the bytes already in PATH.part.
static uint64_t s_bytes_done (const zf_get_t *self)
{
    return self->written > self->content_length ? self->content_length : self->written;
}

void zf_get_show_progress (zf_get_t *self, bool final)
{
    //  Nothing to show before the fetcher knows the length (the origin's first answer).
    if (self->progress.mode == ZF_GET_PROGRESS_NONE || !self->task_id[0]
        || (!self->announced && !final))
        return;
    zf_get_progress_draw (&self->progress, s_bytes_done (self), self->content_length, final);
}

// --- the end --------------------------------------------------------------------------------

//  A one-shot timer that ends the loop: the reader calls our callback from its own handlers,
//  which cannot return -1 on our behalf.
static int s_stop_loop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

void zf_get_finish (zf_get_t *self, int exit_code)
{
    if (self->done)
        return;
    self->done = true;
    self->exit_code = exit_code;
    zloop_timer (self->loop, 1, 1, s_stop_loop, NULL);
}

void zf_get_fail (zf_get_t *self, int exit_code, const char *fmt, ...)
{
    zf_get_progress_break (&self->progress);
    va_list args;
    va_start (args, fmt);
    fputs ("zfly-get: ", stderr);
    vfprintf (stderr, fmt, args);
    fputc ('\n', stderr);
    va_end (args);
    zf_get_finish (self, exit_code);
}

//  Exit status for how a task failed, and for the fetcher's refusals.
static int s_exit_for_task (zf_task_error_t error)
{
    return error == ZF_TASK_ERROR_SOURCE   ? ZF_GET_EXIT_SOURCE
           : error == ZF_TASK_ERROR_DIGEST ? ZF_GET_EXIT_DIGEST
                                           : ZF_GET_EXIT_OTHER;
}

static int s_exit_for_refusal (zf_code_t code)
{
    //  the origin refused these credentials, or could not be asked: the origin's business
    return code == ZF_CODE_DENIED || code == ZF_CODE_UNVERIFIED ? ZF_GET_EXIT_SOURCE
                                                                : ZF_GET_EXIT_OTHER;
}

//  What the reader's FAILED event means for the user: a message and an exit status.
static void s_on_failed (zf_get_t *self, const zf_task_reader_event_t *event)
{
    const char *url = self->options->url;
    switch (event->failure) {
    case ZF_TASK_READER_TASK: {
        int exit_code = s_exit_for_task (event->task_error);
        const char *kind = exit_code == ZF_GET_EXIT_SOURCE   ? "source error"
                           : exit_code == ZF_GET_EXIT_DIGEST ? "digest mismatch"
                                                             : "failed";
        zf_get_fail (self, exit_code, "%s: %s: %s (%s)", url, kind, event->message, event->code);
        return;
    }
    case ZF_TASK_READER_REFUSED:
        zf_get_fail (self, s_exit_for_refusal (event->reply_code), "%s: the fetcher refused: %s",
                     url, event->message);
        return;
    case ZF_TASK_READER_UNREACHABLE: {
        const char *endpoint = event->actor && streq (event->actor, "storage")
                                   ? self->storage_endpoint
                                   : self->fetcher_endpoint;
        bool gone = event->bus_status == ZF_E_TIMEOUT || event->bus_status == ZF_E_UNREACHABLE;
        if (!gone) {
            zf_get_fail (self, ZF_GET_EXIT_OTHER, "%s failed: %s", event->request, event->message);
            return;
        }
        zf_get_progress_break (&self->progress);
        if (!event->answered)
            zf_get_no_daemon (self, endpoint, "no answer in time");
        else
            fprintf (stderr,
                     "zfly-get: the zfly daemon stopped answering at %s (%s timed out); the "
                     "download goes on in the daemon: run zfly-get again to resume it\n",
                     endpoint, event->request);
        zf_get_finish (self, ZF_GET_EXIT_UNREACHABLE);
        return;
    }
    case ZF_TASK_READER_STORAGE:
    case ZF_TASK_READER_PROTOCOL:
        zf_get_fail (self, ZF_GET_EXIT_OTHER, "%s: %s", url, event->message);
        return;
    }
}

// --- the reader's events --------------------------------------------------------------------

static void s_on_layout (zf_get_t *self, zf_task_reader_t *reader,
                         const zf_task_reader_event_t *event)
{
    if (event->restart) {
        if (self->options->verbose)
            fprintf (stderr,
                     "zfly-get: the task is now %" PRIu64 " bytes in pieces of %" PRIu64
                     "; starting %s over\n",
                     event->content_length, event->piece_length, self->part_path);
        if (!zf_get_start_over (self))
            return;
    }
    self->content_length = event->content_length;
    self->piece_count = event->piece_count;
    if (!self->announced && self->progress.mode != ZF_GET_PROGRESS_NONE) {
        char total[32];
        zf_human_bytes (self->content_length, total, sizeof total);
        zf_get_progress_break (&self->progress);
        fprintf (stderr, "zfly-get: task %s: %s in %" PRIu64 " pieces\n",
                 zf_task_reader_task_id (reader), total, self->piece_count);
        self->announced = true;
    }
    zf_task_reader_read (reader, 0, event->piece_count);
}

//  Writes a piece at its offset of PATH.part: from its frame (hashed for --digest), or copied
//  from the cache file it was located in. False when the cache file let us down (the reader
//  brings the piece over the bus), or after zf_get_fail.
static bool s_on_piece (zf_get_t *self, const zf_task_reader_event_t *event)
{
    if (event->path && !self->link_decided)
        zf_get_link_decide (self, event->path);
    if (event->path && self->link_fd >= 0) {
        if (!zf_get_link_piece (self, event->path, event->file_offset, event->size))
            return true; //  a new reader starts over (or zf_get_fail ran): nothing more from this
                         //  one
        self->written += event->size;
        self->last_change_ms = zf_clock_mono_ms ();
        return true;
    }
    if (event->path) {
        bool retry = false;
        if (!zf_get_copy_located (self, event->path, event->file_offset, event->size, &retry)) {
            if (retry && self->options->verbose)
                fprintf (stderr, "zfly-get: reading piece %" PRIu64 " and the rest over the bus\n",
                         event->piece);
            return !retry;
        }
    } else {
        const uint8_t *data = zframe_data (*event->frame);
        if (*self->options->digest)
            EVP_DigestUpdate (self->sha, data, event->size);
        if (!zf_get_write_all (self, data, event->size, event->offset, NULL))
            return true;
    }
    //  Start writing these pages to disk now, so that the fdatasync before the rename finds
    //  little left to do (it would otherwise write the whole file at the end). Advisory: a
    //  file system that cannot do it is synced in full at the end.
    (void) sync_file_range (self->fd, (off64_t) event->offset, (off64_t) event->size,
                            SYNC_FILE_RANGE_WRITE);
    self->written += event->size;
    self->last_change_ms = zf_clock_mono_ms ();
    return true;
}

static void s_on_status (zf_get_t *self, const zf_msg_task_status_t *status)
{
    zf_strlcpy (self->task_id, status->task_id, sizeof self->task_id);
    self->bytes_from_source = status->bytes_from_source;
    self->bytes_from_parents = status->bytes_from_parents;
    if (status->finished_count != self->finished_count) {
        self->finished_count = status->finished_count;
        self->last_change_ms = zf_clock_mono_ms ();
    }
}

static bool s_on_event (zf_task_reader_t *reader, const zf_task_reader_event_t *event, void *arg)
{
    zf_get_t *self = arg;
    if (self->done)
        return true;
    switch (event->type) {
    case ZF_TASK_READER_STATUS: s_on_status (self, event->status); return true;
    case ZF_TASK_READER_LAYOUT: s_on_layout (self, reader, event); return true;
    case ZF_TASK_READER_PIECE: return s_on_piece (self, event);
    case ZF_TASK_READER_DONE:
        if (event->status)
            s_on_status (self, event->status);
        zf_get_complete (self);
        return true;
    case ZF_TASK_READER_FAILED: s_on_failed (self, event); return true;
    }
    return true;
}

//  Progress, and the idle timeout: no new bytes for that long ends the wait.
static int s_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_get_t *self = arg;
    if (self->done)
        return 0;
    int64_t now = zf_clock_mono_ms ();
    if (self->options->idle_timeout_ms > 0
        && now - self->last_change_ms > self->options->idle_timeout_ms) {
        char idle[32];
        zf_human_duration ((double) self->options->idle_timeout_ms / 1000, idle, sizeof idle);
        zf_get_fail (self, ZF_GET_EXIT_OTHER,
                     "%s: no progress for %s (%" PRIu64 " of %" PRIu64 " pieces); giving up, the "
                     "daemon keeps the pieces it has",
                     self->options->url, idle, self->finished_count, self->piece_count);
        return 0;
    }
    zf_get_show_progress (self, false);
    return 0;
}

// --- a run ----------------------------------------------------------------------------------

//  A reader for the whole task, started: task.fetch sent. False when it could not be sent.
bool zf_get_begin (zf_get_t *self, zf_error_t *err)
{
    const zf_get_options_t *options = self->options;
    self->reader = zf_task_reader_new (self->readers, self->locate, true, s_on_event, self);
    zf_msg_task_fetch_t fetch = {
        .url = (char *) options->url,
        .digest = (char *) options->digest,
        .headers = {.items = (void *) options->headers, .count = options->header_count},
        .parents = {.items = (void *) options->parents, .count = options->parent_count},
    };
    return zf_task_reader_start (self->reader, &fetch, err);
}

//  Reads the task into PATH.part (open) with the task reader; returns the exit status.
int zf_get_download (zf_get_t *self, zf_node_t *node, const char *actor_name)
{
    const zf_get_options_t *options = self->options;
    //  Storage on this host (ipc://) names cache files we can copy from ourselves.
    bool locate = self->locate = strncmp (self->storage_endpoint, "ipc://", 6) == 0;
    self->clone_ok = self->copy_range_ok = locate;
    //  A second descriptor that writes around the page cache (see zf_get_copy_located); not every
    //  filesystem allows it (tmpfs does not), and then we do without.
    if (locate)
        self->direct_fd = open (self->part_path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    zf_node_add_local (node, actor_name);
    zf_error_t err;
    self->bus = zf_bus_new (node, actor_name, NULL, NULL, &err);
    ZF_ASSERT (self->bus); //  an inproc bind of a fresh name cannot fail
    self->sha = EVP_MD_CTX_new ();
    ZF_ASSERT (self->sha);
    EVP_DigestInit_ex (self->sha, EVP_sha256 (), NULL);
    self->loop = zloop_new ();
    zf_bus_attach (self->bus, self->loop);
    zf_task_readers_options_t reader_options = {
        .fetcher = "fetcher",
        .storage = "storage",
        .timeout_ms = options->timeout_ms,
        .later_timeout_ms = LATER_TIMEOUT_MIN_MS,
        .read_timeout_ms =
            READ_TIMEOUT_MS > options->timeout_ms ? READ_TIMEOUT_MS : options->timeout_ms,
        .poll_ms = POLL_MS,
        .stat_wait_ms = STAT_WAIT_MS,
        .read_window_bytes = READ_BYTES_IN_FLIGHT,
        .read_window_min = 2,
        .locate_window = READ_SLOTS};
    self->readers = zf_task_readers_new (self->bus, self->loop, "zfly-get", &reader_options);
    self->progress.started_ms = self->last_change_ms = zf_clock_mono_ms ();
    zloop_timer (self->loop, TICK_MS, 0, s_tick, self);
    if (!zf_get_begin (self, &err)) {
        zf_get_progress_break (&self->progress);
        zf_get_no_daemon (self, self->fetcher_endpoint, err.message);
        zf_get_finish (self, ZF_GET_EXIT_UNREACHABLE);
    } else
        zloop_start (self->loop); //  until zf_get_finish stops it, or an interrupt
    if (!self->done) {
        zf_get_progress_break (&self->progress);
        fprintf (stderr, "zfly-get: interrupted; the daemon keeps the pieces it has\n");
        self->exit_code = 130;
    }
    zf_task_reader_destroy (&self->reader);
    free (self->copy_buffer); //  from posix_memalign
    zf_bus_destroy (&self->bus);
    zf_task_readers_destroy (&self->readers); //  after the bus, before the loop
    zloop_destroy (&self->loop);
    EVP_MD_CTX_free (self->sha);
    return self->exit_code;
}
