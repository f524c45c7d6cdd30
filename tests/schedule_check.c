/*  schedule_check.c — a schedule that drops parents while piece requests to them are in flight.

    Regression for the double free seen on mixed links (issue 9): a new schedule dropped a
    parent the task had failed and taken back, and the parent's bitmap was freed twice. Here,
    in one process over inproc://, a real fetcher and two real storage actors (the child's and
    a parent's holding the task) meet a scripted scheduler and a "silent" parent:

      1. the first schedule gives both parents; silent fails its first piece.read (an error),
         the task drops it and reports parent.failed;
      2. the answer gives silent back, which now holds every request it gets;
      3. once it holds some, the next schedule drops it (requests in flight);
      4. the next gives it back again, and once it holds requests again, the last drops it.

    The real parent holds the first half of the task until the script ends (so the task is
    still running while silent is given and dropped: only silent claims the second half),
    then gets the rest. The task must complete with every byte from the real parent (its URL
    points nowhere, so the origin cannot help), and nothing may touch freed memory: the suite
    runs this under ASan too. Usage: schedule_check (exit 0 when it passed). */
#include "fetcher/zf_fetcher.h"
#include "storage/zf_storage.h"
#include "zf_bus.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include "zf_task_id.h"
#include <openssl/evp.h>

#define PIECE_LENGTH  (64 * 1024)
#define PIECE_COUNT   48
#define CONTENT_BYTES (PIECE_LENGTH * PIECE_COUNT - 1000)
#define URL           "http://127.0.0.1:9/nowhere/blob" //  the discard port: nobody answers
#define DEADLINE_MS   60000

typedef struct {
    zf_bus_t *bus;
    zloop_t *loop;
    char task_id[ZF_TASK_ID_SIZE + 1];
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    uint8_t *content;
    uint8_t digests[PIECE_COUNT][32];
    int step;             //  of the script above
    int silent_reads;     //  piece.read requests silent received
    int held_at_drop[2];  //  requests silent held when each drop was sent
    bool failed_reported; //  the scheduler heard parent.failed for silent
    bool done;
    char state[16]; //  of the task when it ended
    uint64_t from_parents, from_source;
    char error[512];
} check_t;

#define CHECK(condition)                                                                           \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf (stderr, "schedule_check: %s:%d: %s\n", __FILE__, __LINE__, #condition);       \
            exit (1);                                                                              \
        }                                                                                          \
    } while (0)

//  --- the scripted scheduler ---------------------------------------------------------------------

static void s_schedule (check_t *self, zf_bus_t *bus, const zf_bus_return_t *ret, bool with_silent)
{
    zf_rec_sched_parent_t parents[2] = {{.host_id = "p", .storage = "pstore@n", .seed = true},
                                        {.host_id = "s", .storage = "silent@n"}};
    zf_msg_peer_schedule_t schedule = {.task_id = self->task_id,
                                       .host_id = "n",
                                       .decision = "parents",
                                       .parents = {.items = parents, .count = with_silent ? 2 : 1}};
    zf_bus_reply (bus, ret, &zf_msg_peer_schedule, &schedule, NULL);
}

static void s_on_announce (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) arg;
    const zf_msg_host_announce_t *body = request->env.body;
    zf_msg_host_announced_t announced = {
        .host_id = body->host_id, .interval_ms = 5000, .timeout_ms = 15000};
    zf_bus_reply (bus, &request->return_to, &zf_msg_host_announced, &announced, NULL);
}

static void s_on_register (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    check_t *self = arg;
    s_schedule (self, bus, &request->return_to, true); //  step 1: both
}

//  Answers parent.failed and peer.reschedule by the script.
static void s_on_reschedule (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    check_t *self = arg;
    if (streq (request->env.type, ZF_MSG_PARENT_FAILED)) {
        const zf_msg_parent_failed_t *failed = request->env.body;
        if (streq (failed->parent, "s"))
            self->failed_reported = true;
    }
    bool with_silent = true;
    if (self->step == 0 && self->failed_reported)
        self->step = 1; //  2: silent given back after it failed
    else if ((self->step == 1 || self->step == 3) && self->silent_reads > 0) {
        self->held_at_drop[self->step / 2] = self->silent_reads; //  3, 5: dropped holding them
        self->silent_reads = 0;
        self->step++;
        with_silent = false;
    } else if (self->step == 2)
        self->step = 3; //  4: given back again
    else if (self->step >= 4)
        with_silent = false;
    s_schedule (self, bus, &request->return_to, with_silent);
}

static void s_on_ack (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) arg;
    const zf_msg_piece_report_t *report = request->env.body; //  same first fields everywhere
    zf_msg_peer_ack_t ack = {.task_id = report->task_id, .host_id = report->host_id};
    zf_bus_reply (bus, &request->return_to, &zf_msg_peer_ack, &ack, NULL);
}

//  --- the silent parent ----------------------------------------------------------------------

static void s_silent_stat (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    check_t *self = arg;
    const zf_msg_storage_stat_t *stat = request->env.body;
    zf_msg_storage_task_t task = {.task_id = self->task_id,
                                  .state = "complete",
                                  .digest = self->digest,
                                  .content_length = CONTENT_BYTES,
                                  .piece_length = PIECE_LENGTH,
                                  .piece_count = PIECE_COUNT,
                                  .finished_count = PIECE_COUNT};
    zmsg_t *raw = zmsg_new ();
    uint8_t bitmap[(PIECE_COUNT + 7) / 8];
    memset (bitmap, 0xff, sizeof bitmap);
    zmsg_addmem (raw, bitmap, sizeof bitmap);
    if (stat->bitmap_only)
        zmsg_addmem (raw, NULL, 0);
    else
        zmsg_addmem (raw, self->digests, sizeof self->digests);
    zf_bus_reply (bus, &request->return_to, &zf_msg_storage_task, &task, &raw);
}

static void s_silent_read (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    check_t *self = arg;
    if (self->step == 0 && !self->failed_reported) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_INTERNAL, "piece", "asked to fail");
        return;
    }
    self->silent_reads++; //  held: never answered
}

//  --- the client ---------------------------------------------------------------------------

static void s_on_status (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                         const zf_error_t *err, void *arg)
{
    (void) bus;
    check_t *self = arg;
    if (status != ZF_OK) {
        snprintf (self->error, sizeof self->error, "task.query: %s", err->message);
        self->done = true;
        return;
    }
    const zf_msg_task_status_t *body = reply->env.body;
    if (!streq (body->state, "running")) {
        self->done = true;
        zf_strlcpy (self->state, body->state, sizeof self->state);
        self->from_parents = body->bytes_from_parents;
        self->from_source = body->bytes_from_source;
        snprintf (self->error, sizeof self->error, "%s %s: %s", body->state, body->error_code,
                  body->error_message);
    }
}

static int s_poll (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    check_t *self = arg;
    if (self->done)
        return -1;
    zf_msg_task_query_t query = {.task_id = self->task_id};
    zf_bus_request (self->bus, "fetcher", &zf_msg_task_query, &query, NULL, ZF_BUS_CALL_DEFAULT,
                    s_on_status, self, NULL);
    return 0;
}

static void s_on_reply_any (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                            const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    bool *answered = arg;
    if (status != ZF_OK)
        fprintf (stderr, "schedule_check: storage: %s\n", err->message);
    CHECK (status == ZF_OK);
    *answered = true;
}

static int s_stop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

static int s_stop_when (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    return *(bool *) arg ? -1 : 0;
}

//  Sends one request to the parent's storage and waits for its answer.
static void s_call (check_t *self, const zf_msg_desc_t *desc, const void *body, zmsg_t *raw)
{
    bool answered = false;
    CHECK (zf_bus_request (self->bus, "pstore@n", desc, body, raw ? &raw : NULL,
                           ZF_BUS_CALL_DEFAULT, s_on_reply_any, &answered, NULL)
           == ZF_OK);
    int timer = zloop_timer (self->loop, 1, 0, s_stop_when, &answered);
    zloop_start (self->loop);
    zloop_timer_end (self->loop, timer);
    CHECK (answered);
}

//  The parent's storage gets pieces [first, end) of the task, as a node downloading it would
//  have them; the task is complete in it after the last.
static void s_fill_parent (check_t *self, uint64_t first, uint64_t end)
{
    zf_msg_storage_open_t open = {.task_id = self->task_id,
                                  .url = URL,
                                  .digest = self->digest,
                                  .content_length = CONTENT_BYTES,
                                  .piece_length = PIECE_LENGTH,
                                  .create = true};
    if (first == 0)
        s_call (self, &zf_msg_storage_open, &open, NULL);
    for (uint64_t piece = first; piece < end; piece++) {
        size_t size = piece + 1 < PIECE_COUNT ? PIECE_LENGTH
                                              : CONTENT_BYTES - (PIECE_COUNT - 1) * PIECE_LENGTH;
        zmsg_t *raw = zmsg_new ();
        zmsg_addmem (raw, self->content + piece * PIECE_LENGTH, size);
        zf_msg_piece_write_t write = {.task_id = self->task_id,
                                      .piece = piece,
                                      .digest = {.data = self->digests[piece], .size = 32}};
        s_call (self, &zf_msg_piece_write, &write, raw);
    }
    if (end < PIECE_COUNT)
        return;
    zf_msg_storage_complete_t complete = {.task_id = self->task_id};
    s_call (self, &zf_msg_storage_complete, &complete, NULL);
}

static zactor_t *s_start (zactor_fn *run, zf_actor_args_t *args)
{
    zactor_t *actor = zactor_new (run, args);
    char *answer = NULL, *why = NULL;
    zstr_recvx (actor, &answer, &why, NULL);
    if (!answer || !streq (answer, "READY"))
        fprintf (stderr, "schedule_check: %s did not start: %s\n", args->name, why ? why : "-");
    CHECK (answer && streq (answer, "READY"));
    zstr_free (&answer);
    zstr_free (&why);
    return actor;
}

static zf_config_t *s_config (const char *text)
{
    const zf_config_section_t *sections[] = {&zf_storage_section, &zf_fetcher_section};
    FILE *file = fmemopen ((void *) text, strlen (text), "r");
    zf_error_t err;
    zf_config_t *config =
        zf_config_load_stream (sections, 2, file, "schedule_check", NULL, 0, &err);
    fclose (file);
    if (!config)
        fprintf (stderr, "schedule_check: config: %s\n", err.message);
    CHECK (config);
    return config;
}

int main (void)
{
    zsys_init ();
    zsys_set_linger (0);
    if (getenv ("ZF_TEST_VERBOSE"))
        zf_log_set_level (ZF_LOG_DEBUG);
    check_t self = {0};
    self.content = zf_malloc (CONTENT_BYTES);
    for (size_t index = 0; index < CONTENT_BYTES; index++)
        self.content[index] = (uint8_t) (index * 7 + index / 251);
    uint8_t whole[32];
    unsigned int size = 0;
    CHECK (EVP_Digest (self.content, CONTENT_BYTES, whole, &size, EVP_sha256 (), NULL) == 1);
    char *digest = zf_calloc (1, 72);
    zf_strlcpy (digest, "sha256:", 72);
    for (int index = 0; index < 32; index++)
        snprintf (digest + 7 + 2 * index, 3, "%02x", whole[index]);
    for (uint64_t piece = 0; piece < PIECE_COUNT; piece++) {
        size_t length = piece + 1 < PIECE_COUNT ? PIECE_LENGTH
                                                : CONTENT_BYTES - (PIECE_COUNT - 1) * PIECE_LENGTH;
        CHECK (EVP_Digest (self.content + piece * PIECE_LENGTH, length, self.digests[piece], &size,
                           EVP_sha256 (), NULL)
               == 1);
    }
    zf_error_t err;
    CHECK (zf_task_id_compute (URL, digest, "", "", "", self.task_id, self.digest, &err) == ZF_OK);

    char *dir = zf_strdup ("/tmp/zf-schedule-check-XXXXXX");
    CHECK (mkdtemp (dir));
    //  nobody answers at the origin, so no access question is asked either (zf_fetch_access.h)
    char *child_ini = zf_asprintf ("[storage]\ndir = %s/child\n[fetcher]\nschedulers = scheduler\n"
                                   "piece_length_min = 64K\npiece_length_max = 64K\n"
                                   "access_check = false\n",
                                   dir);
    char *parent_ini = zf_asprintf ("[storage]\ndir = %s/parent\n", dir);
    zf_config_t *child_config = s_config (child_ini);
    zf_config_t *parent_config = s_config (parent_ini);

    zf_node_options_t options = {
        .name = "n", .hwm = 1000, .tap_hwm = 1000, .request_timeout_ms = 5000};
    zf_node_t *node = zf_node_new (&options, &err);
    CHECK (node);
    const char *locals[] = {"storage", "pstore@n", "fetcher", "scheduler", "silent@n", "client"};
    for (size_t index = 0; index < ZF_ARRAY_LEN (locals); index++)
        zf_node_add_local (node, locals[index]);

    zf_actor_args_t storage_args = {node, "storage",
                                    zf_config_section_or_defaults (child_config, "storage"), NULL};
    zf_actor_args_t parent_args = {node, "pstore@n",
                                   zf_config_section_or_defaults (parent_config, "storage"), NULL};
    zactor_t *storage = s_start (zf_storage_actor, &storage_args);
    zactor_t *parent = s_start (zf_storage_actor, &parent_args);

    self.loop = zloop_new ();
    zloop_set_nonstop (self.loop, true);
    self.bus = zf_bus_new (node, "client", NULL, NULL, &err);
    zf_bus_t *scheduler = zf_bus_new (node, "scheduler", NULL, NULL, &err);
    zf_bus_t *silent = zf_bus_new (node, "silent@n", NULL, NULL, &err);
    CHECK (self.bus && scheduler && silent);
    zf_bus_attach (self.bus, self.loop);
    zf_bus_attach (scheduler, self.loop);
    zf_bus_attach (silent, self.loop);
    zf_bus_handle (scheduler, ZF_MSG_HOST_ANNOUNCE, s_on_announce, &self);
    zf_bus_handle (scheduler, ZF_MSG_PEER_REGISTER, s_on_register, &self);
    zf_bus_handle (scheduler, ZF_MSG_PEER_RESCHEDULE, s_on_reschedule, &self);
    zf_bus_handle (scheduler, ZF_MSG_PARENT_FAILED, s_on_reschedule, &self);
    zf_bus_handle (scheduler, ZF_MSG_PIECE_REPORT, s_on_ack, &self);
    zf_bus_handle (scheduler, ZF_MSG_PEER_FINISHED, s_on_ack, &self);
    zf_bus_handle (scheduler, ZF_MSG_PEER_FAILED, s_on_ack, &self);
    zf_bus_handle (silent, ZF_MSG_STORAGE_STAT, s_silent_stat, &self);
    zf_bus_handle (silent, ZF_MSG_PIECE_READ, s_silent_read, &self);
    s_fill_parent (&self, 0, PIECE_COUNT / 2);

    zf_actor_args_t fetcher_args = {node, "fetcher",
                                    zf_config_section_or_defaults (child_config, "fetcher"), NULL};
    zactor_t *fetcher = s_start (zf_fetcher_actor, &fetcher_args);
    zf_msg_task_fetch_t fetch = {.url = URL, .digest = self.digest};
    CHECK (zf_bus_request (self.bus, "fetcher", &zf_msg_task_fetch, &fetch, NULL,
                           ZF_BUS_CALL_DEFAULT, s_on_reply_any, &(bool){false}, NULL)
           == ZF_OK);
    zloop_timer (self.loop, 100, 0, s_poll, &self);
    int64_t deadline = zf_clock_mono_ms () + DEADLINE_MS;
    bool filled = false;
    while (!self.done && zf_clock_mono_ms () < deadline) {
        zloop_timer (self.loop, 100, 1, s_stop, NULL); //  a turn of 100 ms at most
        zloop_start (self.loop);
        if (self.step >= 4 && !filled) { //  the script is done: the rest of the task
            s_fill_parent (&self, PIECE_COUNT / 2, PIECE_COUNT);
            filled = true;
        }
    }
    fprintf (stderr, "schedule_check: step %d, silent held %d then %d requests when dropped: %s\n",
             self.step, self.held_at_drop[0], self.held_at_drop[1],
             *self.error ? self.error : "no answer");
    CHECK (self.done);
    CHECK (streq (self.state, "complete"));
    CHECK (self.from_parents == CONTENT_BYTES);
    CHECK (self.from_source == 0);
    CHECK (self.failed_reported);
    CHECK (self.held_at_drop[0] > 0 && self.held_at_drop[1] > 0);

    zactor_destroy (&fetcher);
    zf_bus_destroy (&silent);
    zf_bus_destroy (&scheduler);
    zf_bus_destroy (&self.bus);
    zloop_destroy (&self.loop);
    zactor_destroy (&parent);
    zactor_destroy (&storage);
    zf_node_destroy (&node);
    zf_config_destroy (&child_config);
    zf_config_destroy (&parent_config);
    char *remove = zf_asprintf ("rm -rf %s", dir);
    CHECK (system (remove) == 0);
    zf_free (remove);
    zf_free (dir);
    zf_free (child_ini);
    zf_free (parent_ini);
    zf_free (digest);
    zf_free (self.content);
    return 0;
}
