/*  zf_storage_test.c — the storage actor's selftest: one actor over inproc:// and ipc://, with
    a client bus on the same loop. */
#include "zf_bus.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include "zf_storage.h"
#include "storage/zf_meta_slot.h"
#include "storage/zf_store.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

//  What the last request got back.
typedef struct {
    bool done;
    zf_status_t status;
    zf_code_t code; //  of an error reply
    char state[17];
    uint64_t finished_count;
    zmsg_t *raw;
    char path[4097]; //  piece.located
    uint64_t offset, size;
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    size_t digest_size;
} test_result_t;

typedef struct {
    zf_node_t *node;
    zf_bus_t *bus;
    zloop_t *loop;
    zactor_t *storage;
    zf_actor_args_t args;
    zf_storage_config_t config;
    test_result_t result;
    const char *node_name;
    size_t connects;
    const char *endpoint; //  storage's ipc:// bind for a client on this host, NULL: inproc
} test_client_t;

static void s_test_keep_digest (test_result_t *result, const zf_bytes_t *digest)
{
    result->digest_size = digest->size;
    if (digest->size > 0) //  an empty bin may come with no data at all
        memcpy (result->digest, digest->data,
                digest->size < sizeof result->digest ? digest->size : sizeof result->digest);
}

static void s_test_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) err;
    test_result_t *result = arg;
    result->done = true;
    result->status = status;
    result->code = zf_bus_error_code (status, reply);
    result->state[0] = '\0';
    zmsg_destroy (&result->raw);
    if (!reply)
        return;
    result->raw = zmsg_dup (reply->raw);
    if (streq (reply->env.type, ZF_MSG_STORAGE_TASK)) {
        const zf_msg_storage_task_t *task = reply->env.body;
        zf_strlcpy (result->state, task->state, sizeof result->state);
        result->finished_count = task->finished_count;
    } else if (streq (reply->env.type, ZF_MSG_PIECE_WRITTEN))
        result->finished_count = ((zf_msg_piece_written_t *) reply->env.body)->finished_count;
    else if (streq (reply->env.type, ZF_MSG_PIECE_DATA)) {
        const zf_msg_piece_data_t *data = reply->env.body;
        s_test_keep_digest (result, &data->digest);
    } else if (streq (reply->env.type, ZF_MSG_PIECE_LOCATED)) {
        const zf_msg_piece_located_t *located = reply->env.body;
        zf_strlcpy (result->path, located->path, sizeof result->path);
        result->offset = located->offset;
        result->size = located->size;
        s_test_keep_digest (result, &located->digest);
    }
}

static int s_test_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    return ((test_result_t *) arg)->done ? -1 : 0;
}

//  Sends one request and runs the loop until its answer is in client->result.
static void s_test_call (test_client_t *client, const zf_msg_desc_t *desc, const void *body,
                         zmsg_t *raw)
{
    client->result.done = false;
    zf_error_t err;
    zf_status_t status = zf_bus_request (client->bus, "storage", desc, body, raw ? &raw : NULL,
                                         (zf_bus_call_t){.timeout_ms = 5000, .retries = 0},
                                         s_test_on_reply, &client->result, &err);
    ZF_ASSERT (status == ZF_OK);
    zloop_start (client->loop);
    ZF_ASSERT (client->result.done);
}

static void s_test_start_storage (test_client_t *client)
{
    client->args =
        (zf_actor_args_t){.node = client->node, .name = "storage", .config = &client->config};
    client->storage = zactor_new (zf_storage_actor, &client->args);
    char *answer = NULL, *why = NULL;
    zstr_recvx (client->storage, &answer, &why, NULL);
    if (!answer || !streq (answer, "READY"))
        fprintf (stderr, "storage did not start: %s\n", why ? why : "no reason");
    ZF_ASSERT (answer && streq (answer, "READY"));
    zstr_free (&answer);
    zstr_free (&why);
}

static void s_test_pipe (test_client_t *client, const char *command, const char *value)
{
    zstr_sendx (client->storage, command, value, NULL);
    char *answer = zstr_recv (client->storage);
    ZF_ASSERT (answer && streq (answer, "OK"));
    zstr_free (&answer);
}

//  The client's node, bus and loop. After a restart of the actor they are all new, under
//  a new node name: an inproc endpoint is released asynchronously after its socket closes,
//  so the restarted actor could not bind the old name yet.
static void s_test_client_connect (test_client_t *client)
{
    zf_bus_destroy (&client->bus);
    zloop_destroy (&client->loop);
    zf_node_destroy (&client->node);
    char *name = zf_asprintf ("%s-%zu", client->node_name, client->connects++);
    zf_node_options_t options = {.name = name,
                                 .hwm = 1000,
                                 .tap_hwm = 1000,
                                 .request_timeout_ms = 5000,
                                 .request_retries = 0};
    zf_error_t err;
    client->node = zf_node_new (&options, &err);
    zf_free (name);
    ZF_ASSERT (client->node);
    if (client->endpoint)
        ZF_ASSERT (zf_node_add_route (client->node, "storage", client->endpoint, "selftest", &err)
                   == ZF_OK);
    else
        zf_node_add_local (client->node, "storage");
    zf_node_add_local (client->node, "client");
    client->bus = zf_bus_new (client->node, "client", NULL, NULL, &err);
    ZF_ASSERT (client->bus);
    client->loop = zloop_new ();
    zloop_set_nonstop (client->loop, true);
    zf_bus_attach (client->bus, client->loop);
    zloop_timer (client->loop, 1, 0, s_test_tick, &client->result);
}

static void s_test_restart (test_client_t *client)
{
    zactor_destroy (&client->storage);
    s_test_client_connect (client);
    s_test_start_storage (client);
}

static void s_test_client_new (test_client_t *client, const char *node_name, const char *dir)
{
    memset (client, 0, sizeof *client);
    client->node_name = node_name;
    s_test_client_connect (client);
    client->config = (zf_storage_config_t){.dir = (char *) dir,
                                           .bind = "",
                                           .upload_rate = 0,
                                           .upload_concurrency = 4,
                                           .high_watermark = 80,
                                           .low_watermark = 60,
                                           .quota = 0,
                                           .task_ttl_ms = 30LL * 86400 * 1000,
                                           .gc_interval_ms = 60000,
                                           .busy_grace_ms = 3600 * 1000,
                                           .commit_interval_ms = 2};
}

static void s_test_client_destroy (test_client_t *client)
{
    zactor_destroy (&client->storage);
    zf_bus_destroy (&client->bus);
    zloop_destroy (&client->loop);
    zf_node_destroy (&client->node);
    zmsg_destroy (&client->result.raw);
}

static void s_test_id (char *id, char fill)
{
    memset (id, fill, ZF_STORE_ID_LEN);
    id[ZF_STORE_ID_LEN] = '\0';
}

static void s_test_content (uint8_t *data, size_t size, unsigned seed)
{
    for (size_t index = 0; index < size; index++)
        data[index] = (uint8_t) ((index * 31 + seed * 7 + index / 251) & 0xff);
}

static void s_test_open (test_client_t *client, const char *id, uint64_t length,
                         uint64_t piece_length, const char *digest)
{
    zf_msg_storage_open_t open_body = {.task_id = (char *) id,
                                       .url = "http://origin/blob",
                                       .digest = (char *) (digest ? digest : ""),
                                       .tag = "",
                                       .application = "",
                                       .content_length = length,
                                       .piece_length = piece_length,
                                       .create = true};
    s_test_call (client, &zf_msg_storage_open, &open_body, NULL);
}

typedef enum { DIGEST_GOOD, DIGEST_WRONG, DIGEST_NONE } test_digest_t;

static void s_test_write (test_client_t *client, const char *id, uint64_t piece,
                          const uint8_t *data, size_t size, test_digest_t kind)
{
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (data, size, digest);
    if (kind == DIGEST_WRONG)
        digest[0] ^= 1;
    zf_msg_piece_write_t body = {.task_id = (char *) id,
                                 .piece = piece,
                                 .digest = {digest, kind == DIGEST_NONE ? 0 : sizeof digest}};
    zmsg_t *raw = zmsg_new ();
    zmsg_addmem (raw, data, size);
    s_test_call (client, &zf_msg_piece_write, &body, raw);
}

static void s_test_read (test_client_t *client, const char *id, uint64_t piece)
{
    zf_msg_piece_read_t body = {.task_id = (char *) id, .piece = piece};
    s_test_call (client, &zf_msg_piece_read, &body, NULL);
}

static void s_test_locate (test_client_t *client, const char *id, uint64_t piece)
{
    zf_msg_piece_locate_t body = {.task_id = (char *) id, .piece = piece};
    s_test_call (client, &zf_msg_piece_locate, &body, NULL);
}

//  A located piece is where the answer says, with the bytes and digest that were written.
static void s_test_check_located (test_client_t *client, const uint8_t *data, size_t size)
{
    ZF_ASSERT (client->result.status == ZF_OK);
    ZF_ASSERT (client->result.path[0] == '/' && client->result.size == size);
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (data, size, digest);
    ZF_ASSERT (client->result.digest_size == ZF_STORE_DIGEST_LEN
               && memcmp (client->result.digest, digest, sizeof digest) == 0);
    uint8_t *copy = zf_malloc (size);
    int fd = open (client->result.path, O_RDONLY | O_CLOEXEC);
    ZF_ASSERT (fd >= 0);
    ZF_ASSERT (pread (fd, copy, size, (off_t) client->result.offset) == (ssize_t) size);
    close (fd);
    ZF_ASSERT (memcmp (copy, data, size) == 0);
    zf_free (copy);
}

static void s_test_stat (test_client_t *client, const char *id)
{
    zf_msg_storage_stat_t body = {.task_id = (char *) id};
    s_test_call (client, &zf_msg_storage_stat, &body, NULL);
}

static void s_test_complete (test_client_t *client, const char *id)
{
    zf_msg_storage_complete_t body = {.task_id = (char *) id};
    s_test_call (client, &zf_msg_storage_complete, &body, NULL);
}

static void s_test_remove (test_client_t *client, const char *id)
{
    zf_msg_storage_remove_t body = {.task_id = (char *) id};
    s_test_call (client, &zf_msg_storage_remove, &body, NULL);
}

static bool s_test_error (test_client_t *client, zf_code_t code)
{
    return client->result.status == ZF_E_REMOTE && client->result.code == code;
}

//  Writes every piece of a task of `length` bytes filled from seed; returns the content.
static uint8_t *s_test_fill (test_client_t *client, const char *id, size_t length,
                             size_t piece_length, unsigned seed)
{
    uint8_t *content = zf_malloc (length);
    s_test_content (content, length, seed);
    s_test_open (client, id, length, piece_length, NULL);
    ZF_ASSERT (client->result.status == ZF_OK);
    for (size_t offset = 0; offset < length; offset += piece_length) {
        size_t size = length - offset < piece_length ? length - offset : piece_length;
        s_test_write (client, id, offset / piece_length, content + offset, size, DIGEST_GOOD);
        ZF_ASSERT (client->result.status == ZF_OK);
    }
    return content;
}

static void s_test_core (const char *dir, bool verbose)
{
    test_client_t client;
    s_test_client_new (&client, "selftest", dir);
    char *bind = zf_asprintf ("ipc://%s/storage.sock", dir);
    client.config.bind = bind;
    s_test_start_storage (&client);
    enum { LENGTH = 20000, PIECE = 8192 };
    uint8_t content[LENGTH];
    s_test_content (content, LENGTH, 1);
    uint8_t whole[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (content, LENGTH, whole);
    char digest_text[8 + 2 * ZF_STORE_DIGEST_LEN + 1] = "sha256:";
    for (size_t index = 0; index < ZF_STORE_DIGEST_LEN; index++)
        snprintf (digest_text + 7 + 2 * index, 3, "%02x", whole[index]);
    char id_a[65], id_b[65], id_bad[65];
    s_test_id (id_a, 'a');
    s_test_id (id_b, 'b');

    //  Bad ids never become paths.
    s_test_id (id_bad, 'A');
    s_test_open (&client, id_bad, LENGTH, PIECE, NULL);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_open (&client, "../../../../etc/passwd", LENGTH, PIECE, NULL);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_open (&client, id_a, LENGTH, 0, NULL);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_stat (&client, id_a);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));

    s_test_open (&client, id_a, LENGTH, PIECE, digest_text);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "running"));
    ZF_ASSERT (client.result.finished_count == 0);
    s_test_open (&client, id_a, LENGTH + 1, PIECE, NULL); //  lengths must match
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));

    //  Wrong digest from this host (ipc://, as zfly-get or a tool would write): refused.
    //  Writes from this process (the fetcher) are trusted to carry the digest of their bytes.
    test_client_t local;
    s_test_client_new (&local, "selftest-ipc", dir);
    local.endpoint = client.config.bind;
    s_test_client_connect (&local);
    s_test_write (&local, id_a, 0, content, PIECE, DIGEST_WRONG);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_INVALID));
    //  Wrong size, out of range: refused, nothing written.
    s_test_write (&client, id_a, 0, content, PIECE - 1, DIGEST_GOOD);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_write (&client, id_a, 3, content, PIECE, DIGEST_GOOD);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_read (&client, id_a, 0);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FINISHED));
    s_test_locate (&local, id_a, 0);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_NOT_FINISHED));
    s_test_locate (&local, id_b, 0);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_NOT_FOUND));

    for (uint64_t piece = 0; piece < 3; piece++) {
        size_t size = piece < 2 ? PIECE : LENGTH - 2 * PIECE;
        s_test_write (&client, id_a, piece, content + piece * PIECE, size, DIGEST_GOOD);
        ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == piece + 1);
        //  A writer in this process gets its buffer back for the next piece.
        ZF_ASSERT (zmsg_size (client.result.raw) == 1
                   && zframe_size (zmsg_first (client.result.raw)) == size);
    }
    s_test_read (&client, id_a, 1);
    ZF_ASSERT (client.result.status == ZF_OK);
    zframe_t *bytes = zmsg_first (client.result.raw);
    ZF_ASSERT (bytes && zframe_size (bytes) == PIECE);
    ZF_ASSERT (memcmp (zframe_data (bytes), content + PIECE, PIECE) == 0);
    s_test_read (&client, id_a, 3);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_read (&client, id_b, 0);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    //  Located, from this process and from this host: the bytes are at the path and offset
    //  given (the short last piece too).
    s_test_locate (&client, id_a, 1);
    s_test_check_located (&client, content + PIECE, PIECE);
    ZF_ASSERT (client.result.offset == PIECE);
    s_test_locate (&local, id_a, 2);
    s_test_check_located (&local, content + 2 * PIECE, LENGTH - 2 * PIECE);
    s_test_locate (&local, id_a, 3);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_INVALID));

    //  One byte damaged on disk: detected before serving, marked missing, fetched again.
    char *data_path = zf_asprintf ("%s/tasks/aa/%s/data", dir, id_a);
    FILE *file = fopen (data_path, "r+b");
    ZF_ASSERT (file && fseek (file, PIECE + 10, SEEK_SET) == 0);
    ZF_ASSERT (fputc (content[PIECE + 10] ^ 0x40, file) != EOF && fclose (file) == 0);
    zf_counter_t *corrupt = zf_metrics_counter (
        "zfly_storage_corrupt_pieces_total",
        "Pieces found damaged on disk when read; marked missing to be fetched again", NULL);
    uint64_t corrupt_before = zf_counter_value (corrupt);
    s_test_read (&client, id_a, 1);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_CORRUPT));
    ZF_ASSERT (zf_counter_value (corrupt) == corrupt_before + 1);
    s_test_stat (&client, id_a);
    ZF_ASSERT (client.result.finished_count == 2);
    ZF_ASSERT ((zframe_data (zmsg_first (client.result.raw))[0] & 0x07) == 0x05);
    s_test_read (&client, id_a, 1);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FINISHED));
    s_test_write (&client, id_a, 1, content + PIECE, PIECE, DIGEST_GOOD);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 3);
    //  piece.locate checks the bytes on disk as piece.read does.
    file = fopen (data_path, "r+b");
    ZF_ASSERT (file && fseek (file, 2 * PIECE + 5, SEEK_SET) == 0);
    ZF_ASSERT (fputc (content[2 * PIECE + 5] ^ 0x01, file) != EOF && fclose (file) == 0);
    s_test_locate (&local, id_a, 2);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_CORRUPT));
    ZF_ASSERT (zf_counter_value (corrupt) == corrupt_before + 2);
    s_test_locate (&local, id_a, 2);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_NOT_FINISHED));
    s_test_write (&local, id_a, 2, content + 2 * PIECE, LENGTH - 2 * PIECE, DIGEST_GOOD);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.finished_count == 3);
    ZF_ASSERT (zmsg_size (local.result.raw) == 0); //  bytes never go back over ipc://
    //  A piece written without a digest (its fetcher had none to compare with): the first
    //  read computes it from the checked bytes; until then piece.located carries none.
    char id_c[65];
    s_test_id (id_c, 'c');
    s_test_open (&client, id_c, LENGTH, PIECE, NULL);
    s_test_write (&local, id_c, 0, content, PIECE, DIGEST_NONE);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.finished_count == 1);
    s_test_locate (&local, id_c, 0);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.digest_size == 0);
    s_test_read (&local, id_c, 0);
    uint8_t computed[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (content, PIECE, computed);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.digest_size == sizeof computed
               && memcmp (local.result.digest, computed, sizeof computed) == 0);
    s_test_locate (&local, id_c, 0);
    s_test_check_located (&local, content, PIECE);
    s_test_remove (&client, id_c);
    ZF_ASSERT (client.result.status == ZF_OK);
    s_test_client_destroy (&local);
    s_test_complete (&client, id_a);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "complete"));

    //  B stays half done: one piece.
    s_test_open (&client, id_b, LENGTH, PIECE, NULL);
    s_test_write (&client, id_b, 1, content + PIECE, PIECE, DIGEST_GOOD);
    ZF_ASSERT (client.result.status == ZF_OK);

    //  Metadata nobody can trust is quarantined at start, the rest loads.
    char id_d[65];
    s_test_id (id_d, 'd');
    char *bad_dir = zf_asprintf ("%s/tasks/dd/%s", dir, id_d);
    char *bucket = zf_asprintf ("%s/tasks/dd", dir);
    char *bad_meta = zf_asprintf ("%s/meta", bad_dir);
    ZF_ASSERT (mkdir (bucket, 0750) == 0 && mkdir (bad_dir, 0750) == 0);
    file = fopen (bad_meta, "wb");
    ZF_ASSERT (file && fwrite ("\x85\xa3junk", 1, 6, file) == 6 && fclose (file) == 0);

    //  Restart on the same directory: finished work is still there.
    s_test_restart (&client);
    s_test_stat (&client, id_a);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "complete"));
    ZF_ASSERT (client.result.finished_count == 3);
    s_test_read (&client, id_a, 2);
    ZF_ASSERT (client.result.status == ZF_OK);
    ZF_ASSERT (memcmp (zframe_data (zmsg_first (client.result.raw)), content + 2 * PIECE,
                       LENGTH - 2 * PIECE)
               == 0);
    s_test_stat (&client, id_b);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 1);
    ZF_ASSERT (streq (client.result.state, "running"));
    s_test_stat (&client, id_d);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    struct stat info;
    ZF_ASSERT (stat (bad_dir, &info) != 0);

    s_test_remove (&client, id_a);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "removed"));
    s_test_stat (&client, id_a);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    ZF_ASSERT (stat (data_path, &info) != 0);
    s_test_remove (&client, id_a); //  a resent remove succeeds
    ZF_ASSERT (client.result.status == ZF_OK);
    if (verbose)
        printf ("storage core: ok\n");
    zf_free (data_path);
    zf_free (bad_dir);
    zf_free (bucket);
    zf_free (bad_meta);
    s_test_client_destroy (&client);
    zf_free (bind);
}

//  Answers to requests sent without waiting (s_test_send).
typedef struct {
    size_t sent, answered, written, not_found;
} test_tally_t;

static void s_test_on_tally (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) err;
    test_tally_t *tally = arg;
    tally->answered++;
    if (status == ZF_OK && streq (reply->env.type, ZF_MSG_PIECE_WRITTEN))
        tally->written++;
    else if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND)
        tally->not_found++;
}

static int s_test_tally_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    test_tally_t *tally = arg;
    return tally->answered == tally->sent ? -1 : 0;
}

//  Writes queued for the writer thread while their task is removed and created again under
//  the same id, with other pieces: each is answered (written, or not_found when it was still
//  queued), none is claimed by the new task, whose own pieces read back exactly.
static void s_test_recreate (const char *dir, bool verbose)
{
    test_client_t client;
    s_test_client_new (&client, "selftest-recreate", dir);
    s_test_start_storage (&client);
    enum { PIECE = 1 << 20, PIECES = 16, LENGTH = PIECE * PIECES };
    char id[65];
    s_test_id (id, 'e');
    uint8_t *old_content = zf_malloc (LENGTH), *new_content = zf_malloc (LENGTH);
    s_test_content (old_content, LENGTH, 5);
    s_test_content (new_content, LENGTH, 6);
    s_test_open (&client, id, LENGTH, PIECE, NULL);
    ZF_ASSERT (client.result.status == ZF_OK);
    test_tally_t tally = {0};
    for (size_t piece = 0; piece < PIECES; piece++) {
        uint8_t digest[ZF_STORE_DIGEST_LEN];
        zf_store_sha256 (old_content + piece * PIECE, PIECE, digest);
        zf_msg_piece_write_t body = {.task_id = id, .piece = piece, .digest = {digest, 32}};
        zmsg_t *raw = zmsg_new ();
        zmsg_addmem (raw, old_content + piece * PIECE, PIECE);
        zf_error_t err;
        ZF_ASSERT (zf_bus_request (client.bus, "storage", &zf_msg_piece_write, &body, &raw,
                                   (zf_bus_call_t){.timeout_ms = 30000, .retries = 0},
                                   s_test_on_tally, &tally, &err)
                   == ZF_OK);
        tally.sent++;
    }
    //  Sent behind the writes, handled by the actor while the writer thread still works.
    s_test_remove (&client, id);
    ZF_ASSERT (client.result.status == ZF_OK);
    s_test_open (&client, id, LENGTH, 2 * PIECE, NULL);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 0);
    int timer = zloop_timer (client.loop, 1, 0, s_test_tally_tick, &tally);
    client.result.done = false; //  else the client's own tick ends the loop at once
    zloop_start (client.loop);
    zloop_timer_end (client.loop, timer);
    ZF_ASSERT (tally.answered == PIECES && tally.written + tally.not_found == PIECES);
    s_test_stat (&client, id);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 0);
    for (uint64_t piece = 0; piece < PIECES / 2; piece++) {
        s_test_write (&client, id, piece, new_content + piece * 2 * PIECE, 2 * PIECE, DIGEST_GOOD);
        ZF_ASSERT (client.result.status == ZF_OK);
        s_test_read (&client, id, piece);
        ZF_ASSERT (client.result.status == ZF_OK);
        ZF_ASSERT (memcmp (zframe_data (zmsg_first (client.result.raw)),
                           new_content + piece * 2 * PIECE, 2 * PIECE)
                   == 0);
    }
    if (verbose)
        printf ("storage recreate: %zu written, %zu dropped: ok\n", tally.written, tally.not_found);
    zf_free (old_content);
    zf_free (new_content);
    s_test_client_destroy (&client);
}

static void s_test_gc (const char *dir, bool verbose)
{
    test_client_t client;
    s_test_client_new (&client, "selftest-gc", dir);
    client.config.quota = 100000; //  high 80000, low 50000
    client.config.high_watermark = 80;
    client.config.low_watermark = 50;
    s_test_start_storage (&client);
    zf_counter_t *watermark = zf_metrics_counter (
        "zfly_storage_evictions_total", "Tasks evicted by GC", "reason", "watermark", NULL);
    zf_counter_t *ttl = zf_metrics_counter ("zfly_storage_evictions_total", "Tasks evicted by GC",
                                            "reason", "ttl", NULL);
    uint64_t watermark_before = zf_counter_value (watermark), ttl_before = zf_counter_value (ttl);
    char ids[4][65];
    uint8_t *contents[4];
    for (int index = 0; index < 3; index++) {
        s_test_id (ids[index], (char) ('1' + index));
        contents[index] = s_test_fill (&client, ids[index], 24000, 8000, (unsigned) index);
    }
    //  Everything idles past busy_grace, then task 1 is read: the others are least recent.
    s_test_pipe (&client, "ADVANCE", "7200000");
    s_test_read (&client, ids[0], 0);
    ZF_ASSERT (client.result.status == ZF_OK);
    s_test_id (ids[3], '4');
    contents[3] = s_test_fill (&client, ids[3], 24000, 8000, 3); //  96000 > 80000: GC
    //  The eviction follows the end of the commit batch that holds the last write
    //  (zf_storage_on_committed), which may come after that write's piece.written: wait for it.
    int64_t deadline = zclock_mono () + 10000;
    while (zf_counter_value (watermark) < watermark_before + 2 && zclock_mono () < deadline)
        zclock_sleep (5);
    ZF_ASSERT (zf_counter_value (watermark) == watermark_before + 2);
    bool expect_present[4] = {true, false, false, true};
    for (int index = 0; index < 4; index++) {
        s_test_stat (&client, ids[index]);
        ZF_ASSERT ((client.result.status == ZF_OK) == expect_present[index]);
    }
    //  Past the TTL, idle tasks expire.
    s_test_pipe (&client, "ADVANCE", "2678400000");
    s_test_pipe (&client, "GC", NULL);
    ZF_ASSERT (zf_counter_value (ttl) == ttl_before + 2);
    s_test_stat (&client, ids[0]);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    for (int index = 0; index < 4; index++)
        zf_free (contents[index]);
    if (verbose)
        printf ("storage gc: ok\n");
    s_test_client_destroy (&client);
}

//  The newest record's sequence in a task's slot files: how many records were written.
static uint64_t s_test_newest_record (const char *dir, const char *id)
{
    uint64_t newest = 0;
    for (int slot = 0; slot < 2; slot++) {
        char *path = zf_asprintf ("%s/tasks/%.2s/%s/meta.%d", dir, id, id, slot);
        zchunk_t *bytes = zchunk_slurp (path, 0);
        uint64_t sequence = 0;
        const uint8_t *payload;
        size_t payload_size;
        zf_error_t err;
        if (bytes
            && zf_meta_slot_parse (zchunk_data (bytes), zchunk_size (bytes), &sequence, &payload,
                                   &payload_size, &err)
                   == ZF_OK
            && sequence > newest)
            newest = sequence;
        zchunk_destroy (&bytes);
        zf_free (path);
    }
    return newest;
}

//  Without fsync nobody waits for a claim, so records are written at most every
//  COMMIT_INTERVAL_MS (zf_store_io.c), not after every write: back-to-back writes of 256
//  pieces make a handful of records, not one per batch of one or two pieces.
static void s_test_commit_pace (const char *dir, bool verbose)
{
    test_client_t client;
    s_test_client_new (&client, "selftest-pace", dir);
    s_test_start_storage (&client);
    char id[65];
    s_test_id (id, 'e');
    int64_t start = zclock_mono ();
    uint8_t *content = s_test_fill (&client, id, 256 * 4096, 4096, 5);
    int64_t elapsed = zclock_mono () - start;
    s_test_client_destroy (&client); //  its stop commits what is left
    //  The record made with the task, one batch at the first write and one per interval after
    //  it, and at stop the batch under way and the one after it.
    uint64_t most = 4 + (uint64_t) elapsed / 100;
    uint64_t records = s_test_newest_record (dir, id);
    if (verbose)
        printf ("storage commit pace: %" PRIu64 " records in %" PRId64 " ms\n", records, elapsed);
    ZF_ASSERT (records >= 2 && records <= most);
    zf_free (content);
}

void zf_storage_test (bool verbose)
{
    printf (" * zf_storage: ");
    char template_core[] = "/tmp/zf-storage-test-XXXXXX";
    char template_gc[] = "/tmp/zf-storage-gc-XXXXXX";
    ZF_ASSERT (mkdtemp (template_core) && mkdtemp (template_gc));
    s_test_core (template_core, verbose);
    s_test_recreate (template_core, verbose);
    s_test_gc (template_gc, verbose);
    s_test_commit_pace (template_gc, verbose);
    char *command = zf_asprintf ("rm -rf '%s' '%s'", template_core, template_gc);
    ZF_ASSERT (system (command) == 0);
    zf_free (command);
    zf_metrics_shutdown ();
    printf ("OK\n");
}
