/*  task_reader_check.c — the selftest of bus/zf_task_reader.c, against the real actors.

    Usage: task_reader_check [-v]          (ctest unit.task_reader)

    The reader lives in bus/ (the proxy and zfly-get share it), but what it reads only exists
    with a fetcher and a storage, which live in actors/: so its selftest is this program, one
    process over inproc://, rather than a function beside the class (bus/ must not depend on
    actors/). It starts two storage actors ("storage", the local cache, and "parent", another
    node's cache holding a blob) and a fetcher that takes pieces from the parent, and checks:
      1. a running task read as it arrives, pieces located (path and offset), DONE once the
         fetcher says complete, every byte right;
      2. the same task, complete now, a range of it read over the bus (frames);
      3. a piece damaged in the local cache: storage answers "corrupt", the reader asks the
         fetcher again, which fetches the piece anew from the parent, and reading goes on to
         the right bytes;
      4. a task that fails at the origin: FAILED with failure TASK and code "source";
      5. a reader let go while replies are due, and one let go from its own callback: no
         leak, no use after free (the suite runs this under ASan too);
      6. a reader paused in its first PIECE event takes no more pieces until resumed. */
#include "fetcher/zf_fetcher.h"
#include "storage/zf_storage.h"
#include "zf_bus.h"
#include "zf_config.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_task_id.h"
#include "zf_task_reader.h"
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#define PIECE         65536
#define PIECES        5
#define CONTENT_SIZE  (PIECES * PIECE - 1000) //  the last piece is short
#define DEADLINE_MS   20000
#define DAMAGED_PIECE 1

typedef struct {
    zf_node_t *node;
    zf_config_t *config;
    zactor_t *storage, *parent, *fetcher;
    zf_actor_args_t storage_args, parent_args, fetcher_args;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_task_readers_t *readers;
    char dir[64];
    uint8_t content[CONTENT_SIZE];
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    char task_id[ZF_TASK_ID_SIZE + 1];
    char url[128];
    bool verbose;
} fixture_t;

//  What one reader saw.
typedef struct {
    fixture_t *fixture;
    zf_task_reader_t *reader;
    uint64_t first, count; //  the range to read, count UINT64_MAX: all
    uint8_t received[CONTENT_SIZE];
    uint64_t pieces, located, framed;
    uint64_t next_piece;
    bool layout, done, failed;
    zf_task_reader_failure_t failure;
    char code[33];
    char state[17];
    char path[4097];
    bool let_go_in_callback; //  destroy the reader from its first STATUS event
    bool pause_first;        //  pause in the first PIECE, resume from a timer
    bool paused;
    uint64_t pieces_while_paused;
} outcome_t;

static int s_stop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

static int s_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    outcome_t *outcome = arg;
    return outcome->done || outcome->failed ? -1 : 0;
}

static int s_resume (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    outcome_t *outcome = arg;
    outcome->paused = false;
    zf_task_reader_pause (outcome->reader, false);
    return 0;
}

static bool s_on_event (zf_task_reader_t *reader, const zf_task_reader_event_t *event, void *arg)
{
    outcome_t *outcome = arg;
    fixture_t *fixture = outcome->fixture;
    switch (event->type) {
    case ZF_TASK_READER_STATUS:
        zf_strlcpy (outcome->state, event->status->state, sizeof outcome->state);
        if (outcome->let_go_in_callback) {
            zf_task_reader_destroy (&outcome->reader);
            outcome->done = true;
        }
        return true;
    case ZF_TASK_READER_LAYOUT: {
        ZF_ASSERT (event->content_length == CONTENT_SIZE && event->piece_length == PIECE);
        ZF_ASSERT (event->piece_count == PIECES && !event->restart);
        outcome->layout = true;
        uint64_t count = outcome->count == UINT64_MAX ? event->piece_count : outcome->count;
        outcome->next_piece = outcome->first;
        zf_task_reader_read (reader, outcome->first, count);
        return true;
    }
    case ZF_TASK_READER_PIECE: {
        ZF_ASSERT (event->piece == outcome->next_piece);
        ZF_ASSERT (!outcome->paused);
        outcome->next_piece++;
        ZF_ASSERT (event->offset == event->piece * PIECE);
        ZF_ASSERT (event->offset + event->size <= CONTENT_SIZE);
        if (event->path) {
            int fd = open (event->path, O_RDONLY);
            ZF_ASSERT (fd >= 0);
            ZF_ASSERT (pread (fd, outcome->received + event->offset, event->size,
                              (off_t) event->file_offset)
                       == (ssize_t) event->size);
            close (fd);
            zf_strlcpy (outcome->path, event->path, sizeof outcome->path);
            outcome->located++;
        } else {
            ZF_ASSERT (event->frame && *event->frame);
            ZF_ASSERT (zframe_size (*event->frame) == event->size);
            memcpy (outcome->received + event->offset, zframe_data (*event->frame), event->size);
            zframe_destroy (event->frame); //  taken
            outcome->framed++;
        }
        outcome->pieces++;
        if (outcome->pause_first && outcome->pieces == 1) {
            outcome->paused = true;
            zf_task_reader_pause (reader, true);
            zloop_timer (fixture->loop, 50, 1, s_resume, outcome);
        }
        return true;
    }
    case ZF_TASK_READER_DONE:
        if (event->status)
            zf_strlcpy (outcome->state, event->status->state, sizeof outcome->state);
        outcome->done = true;
        return true;
    case ZF_TASK_READER_FAILED:
        if (fixture->verbose)
            printf ("   failed: %s: %s\n", event->code, event->message);
        outcome->failed = true;
        outcome->failure = event->failure;
        zf_strlcpy (outcome->code, event->code, sizeof outcome->code);
        return true;
    }
    return true;
}

//  Runs one reader until DONE or FAILED (or the deadline, which fails the test).
static void s_run (fixture_t *fixture, outcome_t *outcome, bool locate, bool wait_complete,
                   const char *url, const char *digest, bool with_parent)
{
    outcome->fixture = fixture;
    outcome->reader =
        zf_task_reader_new (fixture->readers, locate, wait_complete, s_on_event, outcome);
    char *parents[] = {"parent"};
    zf_msg_task_fetch_t fetch = {.url = (char *) url,
                                 .digest = (char *) digest,
                                 .parents = {.items = parents, .count = with_parent ? 1 : 0}};
    zf_error_t err;
    ZF_ASSERT (zf_task_reader_start (outcome->reader, &fetch, &err));
    int tick = zloop_timer (fixture->loop, 5, 0, s_tick, outcome);
    int deadline = zloop_timer (fixture->loop, DEADLINE_MS, 1, s_stop, NULL);
    zloop_start (fixture->loop);
    zloop_timer_end (fixture->loop, tick);
    zloop_timer_end (fixture->loop, deadline);
    ZF_ASSERT (outcome->done || outcome->failed);
    zf_task_reader_destroy (&outcome->reader);
}

static zactor_t *s_start (zactor_fn *run, zf_actor_args_t *args)
{
    zactor_t *actor = zactor_new (run, args);
    char *answer = NULL, *why = NULL;
    zstr_recvx (actor, &answer, &why, NULL);
    if (!answer || !streq (answer, "READY"))
        fprintf (stderr, "%s did not start: %s\n", args->name, why ? why : "no reason");
    ZF_ASSERT (answer && streq (answer, "READY"));
    zstr_free (&answer);
    zstr_free (&why);
    return actor;
}

//  --- the parent's copy, written over the bus like any writer on this node ------------------

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    if (status != ZF_OK)
        fprintf (stderr, "parent: %s\n", err->message);
    ZF_ASSERT (status == ZF_OK);
    *(bool *) arg = true;
}

static int s_until (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    return *(bool *) arg ? -1 : 0;
}

static void s_call (fixture_t *fixture, const zf_msg_desc_t *desc, const void *body, zmsg_t *raw)
{
    bool answered = false;
    zf_error_t err;
    ZF_ASSERT (zf_bus_request (fixture->bus, "parent", desc, body, raw ? &raw : NULL,
                               (zf_bus_call_t){.timeout_ms = 5000, .retries = 0}, s_on_reply,
                               &answered, &err)
               == ZF_OK);
    int tick = zloop_timer (fixture->loop, 1, 0, s_until, &answered);
    zloop_start (fixture->loop);
    zloop_timer_end (fixture->loop, tick);
    ZF_ASSERT (answered);
}

static void s_fill_parent (fixture_t *fixture)
{
    zf_msg_storage_open_t open = {.task_id = fixture->task_id,
                                  .url = fixture->url,
                                  .digest = fixture->digest,
                                  .content_length = CONTENT_SIZE,
                                  .piece_length = PIECE,
                                  .create = true};
    s_call (fixture, &zf_msg_storage_open, &open, NULL);
    for (uint64_t piece = 0; piece < PIECES; piece++) {
        uint64_t size = piece + 1 == PIECES ? CONTENT_SIZE - piece * PIECE : PIECE;
        uint8_t hash[32];
        unsigned int hash_size = 0;
        EVP_Digest (fixture->content + piece * PIECE, size, hash, &hash_size, EVP_sha256 (), NULL);
        zf_msg_piece_write_t write = {.task_id = fixture->task_id,
                                      .piece = piece,
                                      .digest = {.data = hash, .size = sizeof hash}};
        zmsg_t *raw = zmsg_new ();
        zmsg_addmem (raw, fixture->content + piece * PIECE, size);
        s_call (fixture, &zf_msg_piece_write, &write, raw);
    }
    zf_msg_storage_complete_t complete = {.task_id = fixture->task_id};
    s_call (fixture, &zf_msg_storage_complete, &complete, NULL);
}

//  --- setup ---------------------------------------------------------------------------------

static void s_setup (fixture_t *fixture)
{
    zf_strlcpy (fixture->dir, "/tmp/zf-task-reader-XXXXXX", sizeof fixture->dir);
    ZF_ASSERT (mkdtemp (fixture->dir));
    char *ini = zf_asprintf ("[storage]\ndir = %s/cache\ncommit_interval = 1ms\n"
                             "[fetcher]\npiece_length_min = 64K\npiece_length_max = 64K\n"
                             "retries = 0\n[upstream]\nconnect_timeout = 2s\npublic = 127.0.0.1\n",
                             fixture->dir);
    const zf_config_section_t *sections[] = {&zf_storage_section, &zf_fetcher_section,
                                             &zf_upstream_section};
    FILE *file = fmemopen (ini, strlen (ini), "r");
    zf_error_t err;
    fixture->config = zf_config_load_stream (sections, ZF_ARRAY_LEN (sections), file,
                                             "task_reader_check.ini", NULL, 0, &err);
    fclose (file);
    zf_free (ini);
    if (!fixture->config)
        fprintf (stderr, "%s\n", err.message);
    ZF_ASSERT (fixture->config);
    zf_node_options_t options = {.name = "t",
                                 .hwm = 1000,
                                 .tap_hwm = 1000,
                                 .request_timeout_ms = 5000,
                                 .request_retries = 0};
    fixture->node = zf_node_new (&options, &err);
    ZF_ASSERT (fixture->node);
    zf_node_add_local (fixture->node, "storage");
    zf_node_add_local (fixture->node, "parent");
    zf_node_add_local (fixture->node, "fetcher");
    zf_node_add_local (fixture->node, "reader");

    const zf_storage_config_t *storage = zf_config_section_or_defaults (fixture->config, "storage");
    static zf_storage_config_t parent_config;
    parent_config = *storage;
    static char parent_dir[96];
    snprintf (parent_dir, sizeof parent_dir, "%s/parent", fixture->dir);
    parent_config.dir = parent_dir;
    fixture->storage_args =
        (zf_actor_args_t){.node = fixture->node, .name = "storage", .config = storage};
    fixture->parent_args =
        (zf_actor_args_t){.node = fixture->node, .name = "parent", .config = &parent_config};
    fixture->fetcher_args =
        (zf_actor_args_t){.node = fixture->node,
                          .name = "fetcher",
                          .config = zf_config_section_or_defaults (fixture->config, "fetcher"),
                          .upstream = zf_config_section_or_defaults (fixture->config, "upstream")};
    fixture->storage = s_start (zf_storage_actor, &fixture->storage_args);
    fixture->parent = s_start (zf_storage_actor, &fixture->parent_args);
    fixture->fetcher = s_start (zf_fetcher_actor, &fixture->fetcher_args);

    fixture->bus = zf_bus_new (fixture->node, "reader", NULL, NULL, &err);
    ZF_ASSERT (fixture->bus);
    fixture->loop = zloop_new ();
    zloop_set_nonstop (fixture->loop, true);
    zf_bus_attach (fixture->bus, fixture->loop);
    zf_task_readers_options_t reader_options = {.fetcher = "fetcher",
                                                .storage = "storage",
                                                .timeout_ms = 5000,
                                                .read_timeout_ms = 5000,
                                                .poll_ms = 50,
                                                .stat_wait_ms = 1000,
                                                .read_window_bytes = 2 * PIECE,
                                                .read_window_min = 1,
                                                .locate_window = 3};
    fixture->readers = zf_task_readers_new (fixture->bus, fixture->loop, "reader", &reader_options);

    for (size_t index = 0; index < CONTENT_SIZE; index++)
        fixture->content[index] = (uint8_t) (index * 7 + index / 251);
    uint8_t hash[32];
    unsigned int hash_size = 0;
    EVP_Digest (fixture->content, CONTENT_SIZE, hash, &hash_size, EVP_sha256 (), NULL);
    size_t used = zf_strlcpy (fixture->digest, "sha256:", sizeof fixture->digest);
    for (size_t index = 0; index < sizeof hash; index++)
        used += (size_t) snprintf (fixture->digest + used, 3, "%02x", hash[index]);
    //  nothing listens on port 9 of loopback: the origin is never needed, and refuses
    snprintf (fixture->url, sizeof fixture->url, "http://127.0.0.1:9/blob");
    char digest_out[ZF_DIGEST_TEXT_SIZE + 1];
    ZF_ASSERT (zf_task_id_compute (fixture->url, fixture->digest, NULL, NULL, "", fixture->task_id,
                                   digest_out, &err)
               == ZF_OK);
}

static void s_teardown (fixture_t *fixture)
{
    zactor_destroy (&fixture->fetcher);
    zactor_destroy (&fixture->parent);
    zactor_destroy (&fixture->storage);
    zf_bus_destroy (&fixture->bus);
    zf_task_readers_destroy (&fixture->readers); //  after the bus, before the loop
    zloop_destroy (&fixture->loop);
    zf_node_destroy (&fixture->node);
    zf_config_destroy (&fixture->config);
    char *command = zf_asprintf ("rm -rf '%s'", fixture->dir);
    ZF_ASSERT (system (command) == 0);
    zf_free (command);
}

static outcome_t *s_outcome (uint64_t first, uint64_t count)
{
    outcome_t *outcome = zf_calloc (1, sizeof *outcome);
    outcome->first = first;
    outcome->count = count;
    return outcome;
}

static void s_check_bytes (fixture_t *fixture, const outcome_t *outcome, uint64_t first,
                           uint64_t last_piece)
{
    uint64_t from = first * PIECE;
    uint64_t to = (last_piece + 1) * PIECE < CONTENT_SIZE ? (last_piece + 1) * PIECE : CONTENT_SIZE;
    ZF_ASSERT (memcmp (outcome->received + from, fixture->content + from, to - from) == 0);
}

int main (int argc, char *argv[])
{
    fixture_t *fixture = zf_calloc (1, sizeof *fixture);
    fixture->verbose = argc > 1 && streq (argv[1], "-v");
    zf_log_set_level (fixture->verbose ? ZF_LOG_DEBUG : ZF_LOG_WARNING);
    zsys_set_linger (0);
    printf (" * zf_task_reader: ");
    s_setup (fixture);
    s_fill_parent (fixture);

    //  1. a running task, read as it arrives from the parent, pieces located
    outcome_t *outcome = s_outcome (0, UINT64_MAX);
    s_run (fixture, outcome, true, true, fixture->url, fixture->digest, true);
    ZF_ASSERT (outcome->done && outcome->layout && streq (outcome->state, "complete"));
    ZF_ASSERT (outcome->pieces == PIECES && outcome->located == PIECES);
    s_check_bytes (fixture, outcome, 0, PIECES - 1);
    char data_path[4097];
    zf_strlcpy (data_path, outcome->path, sizeof data_path);
    zf_free (outcome);

    //  2. complete now: pieces 2 and 3 over the bus
    outcome = s_outcome (2, 2);
    s_run (fixture, outcome, false, false, fixture->url, fixture->digest, true);
    ZF_ASSERT (outcome->done && outcome->pieces == 2 && outcome->framed == 2);
    s_check_bytes (fixture, outcome, 2, 3);
    zf_free (outcome);

    //  3. a damaged piece: corrupt, the fetcher is asked again, the parent gives it anew
    int fd = open (data_path, O_WRONLY);
    ZF_ASSERT (fd >= 0);
    ZF_ASSERT (pwrite (fd, "\xff\xff\xff\xff", 4, DAMAGED_PIECE * PIECE + 100) == 4);
    close (fd);
    outcome = s_outcome (0, UINT64_MAX);
    s_run (fixture, outcome, true, true, fixture->url, fixture->digest, true);
    ZF_ASSERT (outcome->done && outcome->pieces == PIECES && streq (outcome->state, "complete"));
    s_check_bytes (fixture, outcome, 0, PIECES - 1);
    zf_free (outcome);

    //  4. nobody has it and the origin refuses: FAILED, TASK, "source"
    outcome = s_outcome (0, UINT64_MAX);
    s_run (fixture, outcome, true, true, "http://127.0.0.1:9/missing", NULL, false);
    ZF_ASSERT (outcome->failed && outcome->failure == ZF_TASK_READER_TASK);
    ZF_ASSERT (streq (outcome->code, "source"));
    zf_free (outcome);

    //  5. let go at once (a task.fetch reply due), and from inside the first event; then a
    //     reader that runs to the end, so every reply came back before the teardown
    zf_task_reader_t *early = zf_task_reader_new (fixture->readers, true, true, s_on_event, NULL);
    zf_msg_task_fetch_t fetch = {.url = fixture->url, .digest = fixture->digest};
    zf_error_t err;
    ZF_ASSERT (zf_task_reader_start (early, &fetch, &err));
    zf_task_reader_destroy (&early);
    ZF_ASSERT (early == NULL);
    outcome = s_outcome (0, UINT64_MAX);
    outcome->let_go_in_callback = true;
    s_run (fixture, outcome, true, true, fixture->url, fixture->digest, false);
    ZF_ASSERT (outcome->done && outcome->pieces == 0);
    zf_free (outcome);

    //  6. paused in the first piece: nothing more until the timer resumes it
    outcome = s_outcome (0, UINT64_MAX);
    outcome->pause_first = true;
    s_run (fixture, outcome, false, true, fixture->url, fixture->digest, false);
    ZF_ASSERT (outcome->done && outcome->pieces == PIECES && outcome->framed == PIECES);
    s_check_bytes (fixture, outcome, 0, PIECES - 1);
    zf_free (outcome);

    s_teardown (fixture);
    zf_free (fixture);
    zf_metrics_shutdown ();
    printf ("OK\n");
    return 0;
}
