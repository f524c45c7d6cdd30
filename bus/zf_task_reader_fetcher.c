/*  zf_task_reader_fetcher.c — the task reader's side of the fetcher: task.fetch, task.query and
    the task.ended event bring the task's status and layout; piece.peek brings the origin's
    bytes of the piece to deliver next while storage does not hold it yet.

    Separate from zf_task_reader.c (the reader's life and pump) and from storage's side: each
    file takes what one actor says, by the rules in zf_task_reader.h. */
#include "zf_task_reader_internal.h"
#include "zf_log.h"

//  ---------------------------------------------------------------------------------------------
//  The fetcher's word

static void s_on_query (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);

bool zf_task_reader_send_fetch (zf_task_reader_t *self)
{
    return zf_task_reader_request (self, self->set->fetcher, &zf_msg_task_fetch, &self->fetch,
                                   zf_task_reader_call (self), zf_task_reader_on_fetch, self,
                                   &self->fetch_pending);
}

void zf_task_reader_send_query (zf_task_reader_t *self)
{
    if (self->query_pending || self->fetch_pending || !self->task_id[0]
        || self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return;
    zf_msg_task_query_t query = {.task_id = self->task_id};
    zf_task_reader_request (self, self->set->fetcher, &zf_msg_task_query, &query,
                            zf_task_reader_call (self), s_on_query, self, &self->query_pending);
}

//  A task id is 64 lowercase hex characters (zf_task_id.h).
static bool s_task_id_valid (const char *task_id)
{
    if (!task_id || strlen (task_id) != ZF_TASK_ID_SIZE)
        return false;
    return strspn (task_id, "0123456789abcdef") == ZF_TASK_ID_SIZE;
}

static void s_register (zf_task_reader_t *self, const char *task_id)
{
    if (self->registered || !s_task_id_valid (task_id))
        return;
    zf_strlcpy (self->task_id, task_id, sizeof self->task_id);
    zlistx_t *readers = zhashx_lookup (self->set->by_task, task_id);
    if (!readers) {
        readers = zlistx_new ();
        zhashx_insert (self->set->by_task, task_id, readers);
    }
    zlistx_add_end (readers, self);
    self->registered = true;
}

//  Takes the layout the status states, once it states one: while the task runs when the
//  origin told the length; always once complete. False when the reader stopped.
bool zf_task_reader_take_layout (zf_task_reader_t *self)
{
    const zf_msg_task_status_t *status = &self->status;
    bool complete = streq (status->state, "complete");
    if (!complete && (status->piece_length == 0 || status->content_length == 0))
        return true;
    uint64_t count = 0;
    if (status->content_length > 0) {
        if (status->piece_length == 0
            || status->piece_count
                   != (status->content_length + status->piece_length - 1) / status->piece_length) {
            zf_task_reader_fail (self, ZF_TASK_READER_PROTOCOL, "invalid",
                                 "the fetcher reported an inconsistent task: %" PRIu64
                                 " bytes in %" PRIu64 " pieces of %" PRIu64,
                                 status->content_length, status->piece_count, status->piece_length);
            return false;
        }
        count = status->piece_count;
    }
    if (self->layout_known) {
        if (self->content_length != status->content_length
            || (count > 0 && self->piece_length != status->piece_length))
            self->restart_wanted = true; //  s_settle starts over once the reads end
        return true;
    }
    self->layout_known = true;
    self->content_length = status->content_length;
    self->piece_length = status->piece_length;
    self->piece_count = count;
    zf_task_reader_set_window (self);
    zf_task_reader_event_t event = {.type = ZF_TASK_READER_LAYOUT,
                                    .content_length = self->content_length,
                                    .piece_length = self->piece_length,
                                    .piece_count = self->piece_count,
                                    .restart = self->layouts_given > 0};
    self->layouts_given++;
    return zf_task_reader_emit (self, &event, NULL);
}

//  A task.status (reply or task.ended event); false when the reader stopped.
static bool s_take_status (zf_task_reader_t *self, const zf_msg_task_status_t *status)
{
    if (self->phase == ZF_TASK_READER_PHASE_OVER)
        return false;
    s_register (self, status->task_id);
    self->status = *status;
    self->status.task_id = self->task_id;
    zf_strlcpy (self->state, status->state ? status->state : "", sizeof self->state);
    zf_strlcpy (self->error_code, status->error_code ? status->error_code : "",
                sizeof self->error_code);
    zf_strlcpy (self->error_message, status->error_message ? status->error_message : "",
                sizeof self->error_message);
    self->status.state = self->state;
    self->status.error_code = self->error_code;
    self->status.error_message = self->error_message;
    self->has_status = true;
    zf_task_reader_event_t event = {.type = ZF_TASK_READER_STATUS, .status = &self->status};
    if (!zf_task_reader_emit (self, &event, NULL))
        return false;
    if (streq (self->state, "failed")) {
        zf_task_reader_fail (self, ZF_TASK_READER_TASK,
                             *self->error_code ? self->error_code : "failed", "%s",
                             *self->error_message ? self->error_message : "no details");
        return false;
    }
    bool complete = streq (self->state, "complete");
    if (self->recheck) {
        self->recheck = false;
        if (complete) //  complete, but storage lost a piece: have the fetcher complete it again
            return zf_task_reader_send_fetch (self);
    }
    self->fetcher_complete = complete;
    if (complete)
        self->storage_complete = true; //  every piece can be read
    return zf_task_reader_take_layout (self);
}

void zf_task_reader_on_fetch (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_t *self = zf_task_reader_reply (arg);
    if (!self)
        return;
    self->fetch_pending = false;
    if (status == ZF_E_REMOTE) {
        self->answered = true;
        const zf_msg_error_t *error = reply->env.body;
        zf_task_reader_fail (self, ZF_TASK_READER_REFUSED, error->code, "%s", err->message);
        return;
    }
    if (status != ZF_OK) {
        zf_task_reader_fail_bus (self, status, err, "task.fetch", self->set->fetcher);
        return;
    }
    self->answered = true;
    if (self->phase == ZF_TASK_READER_PHASE_FETCH)
        self->phase = ZF_TASK_READER_PHASE_FOLLOW;
    if (s_take_status (self, reply->env.body))
        zf_task_reader_pump (self);
}

static void s_on_query (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_t *self = zf_task_reader_reply (arg);
    if (!self)
        return;
    self->query_pending = false;
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return;
    if (status == ZF_E_REMOTE) {
        const zf_msg_error_t *error = reply->env.body;
        if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND) { //  the fetcher forgot it
            if (!self->fetch_pending)
                zf_task_reader_send_fetch (self);
            return;
        }
        zf_task_reader_fail (self, ZF_TASK_READER_REFUSED, error->code, "%s", err->message);
        return;
    }
    if (status != ZF_OK) {
        zf_task_reader_fail_bus (self, status, err, "task.query", self->set->fetcher);
        return;
    }
    if (!s_take_status (self, reply->env.body))
        return;
    //  storage completed the task a moment before the fetcher heard of it: ask again soon
    if (self->storage_complete && self->wait_complete && !self->fetcher_complete)
        zf_task_reader_wake_after (self, self->set->options.poll_ms);
    zf_task_reader_pump (self);
}

//  task.ended from the fetcher: every reader of the task takes it like a task.query answer.
void zf_task_reader_on_ended (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    zf_task_readers_t *set = arg;
    const zf_msg_task_ended_t *ended = event->env.body;
    zlistx_t *readers = zhashx_lookup (set->by_task, ended->task_id);
    if (!readers)
        return;
    //  A callback may let readers go, even others of this task: each is held as if a reply
    //  were due until its turn.
    size_t count = zlistx_size (readers);
    zf_task_reader_t **snapshot = zf_calloc (count, sizeof *snapshot);
    size_t index = 0;
    for (zf_task_reader_t *reader = zlistx_first (readers); reader && index < count;
         reader = zlistx_next (readers)) {
        reader->pending++;
        snapshot[index++] = reader;
    }
    zf_msg_task_status_t status = {.task_id = ended->task_id,
                                   .state = ended->state,
                                   .content_length = ended->content_length,
                                   .piece_length = ended->piece_length,
                                   .piece_count = ended->piece_count,
                                   .finished_count = ended->finished_count,
                                   .bytes_from_source = ended->bytes_from_source,
                                   .bytes_from_parents = ended->bytes_from_parents,
                                   .error_code = ended->error_code,
                                   .error_message = ended->error_message};
    for (size_t position = 0; position < index; position++) {
        zf_task_reader_t *self = zf_task_reader_reply (snapshot[position]);
        if (self && self->phase == ZF_TASK_READER_PHASE_FOLLOW && s_take_status (self, &status))
            zf_task_reader_pump (self);
    }
    zf_free (snapshot);
}

//  ---------------------------------------------------------------------------------------------
//  The bytes of a piece storage does not hold yet (piece.peek to the fetcher)

static void s_on_partial (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg);

//  Bytes of the next piece the caller already has from peeks (0 when none).
static uint64_t s_part_from (const zf_task_reader_t *self)
{
    return self->part_piece == self->next_deliver ? self->part_from : 0;
}

//  Keeps a peek's bytes of piece (from `from` on; *data taken, an empty frame dropped) for the
//  caller. complete with bytes missing: the piece was filled, but not with the origin's bytes,
//  so storage has the rest.
static void s_keep_partial (zf_task_reader_t *self, zframe_t **data, uint64_t piece, uint64_t from,
                            bool complete)
{
    uint64_t size = *data ? zframe_size (*data) : 0;
    if (size > 0) {
        self->part_frame = *data;
        *data = NULL;
        self->part_frame_from = from;
    } else
        zframe_destroy (data);
    if (complete && from + size < zf_task_reader_piece_size (self, piece)) {
        self->no_peek = true;
        self->no_peek_piece = piece;
    }
}

//  Asks the fetcher for the bytes of the piece to deliver next (the origin's as they come, a
//  parent's once checked), when storage does not hold it and nothing else is asked for it. The
//  held peek also tells the fetcher which piece to ask its parents for first.
void zf_task_reader_peek (zf_task_reader_t *self)
{
    uint64_t piece = self->next_deliver;
    if (!self->peek || self->peek_pending || self->paused || self->part_frame
        || self->phase != ZF_TASK_READER_PHASE_FOLLOW || !self->reading || piece >= self->read_end
        || self->next_request != piece || zf_task_reader_stored (self, piece)
        || (self->no_peek && self->no_peek_piece == piece) || self->refetch_wanted
        || self->restart_wanted)
        return;
    const zf_task_readers_options_t *options = &self->set->options;
    zf_msg_piece_peek_t peek = {.task_id = self->task_id,
                                .piece = piece,
                                .from = s_part_from (self),
                                .wait_ms = (uint64_t) options->stat_wait_ms};
    zf_bus_call_t call = zf_task_reader_call (self);
    int64_t base = call.timeout_ms > 0 ? call.timeout_ms : 5000;
    zf_task_reader_request (
        self, self->set->fetcher, &zf_msg_piece_peek, &peek,
        (zf_bus_call_t){.timeout_ms = options->stat_wait_ms + base, .retries = 0, .patient = true},
        s_on_partial, self, &self->peek_pending);
}

static void s_on_partial (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_t *self = zf_task_reader_reply (arg);
    if (!self)
        return;
    self->peek_pending = false;
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return;
    if (status != ZF_OK) {
        //  not_found: the fetcher does not run the task (it ended, or another process fetches
        //  it): storage gives the piece. Anything else: no more peeks at all.
        if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND) {
            self->no_peek = true;
            self->no_peek_piece = self->next_deliver;
        } else {
            zf_info (self->set->name, "task reader: piece.peek of task=%.16s: %s; reading storage",
                     self->task_id, err && *err->message ? err->message : zf_status_name (status));
            self->peek = false;
        }
        zf_task_reader_pump (self);
        return;
    }
    const zf_msg_piece_partial_t *partial = reply->env.body;
    zframe_t *data = zmsg_pop (reply->raw);
    uint64_t size = data ? zframe_size (data) : 0;
    bool current = !self->refetch_wanted && !self->restart_wanted && self->reading
                   && partial->piece == self->next_deliver && self->next_request == partial->piece
                   && partial->from == s_part_from (self) && self->piece_count > partial->piece;
    if (!current) { //  storage took over meanwhile, or the reader starts over
        zframe_destroy (&data);
        zf_task_reader_pump (self);
        return;
    }
    if (!streq (partial->task_id, self->task_id) || size != partial->size
        || partial->from + size > zf_task_reader_piece_size (self, partial->piece)) {
        zframe_destroy (&data);
        zf_task_reader_fail (self, ZF_TASK_READER_PROTOCOL, "invalid",
                             "the fetcher answered a peek of piece %" PRIu64 " from %" PRIu64
                             " with piece %" PRIu64 " from %" PRIu64 " size %" PRIu64 " (%" PRIu64
                             " bytes attached)",
                             self->next_deliver, s_part_from (self), partial->piece, partial->from,
                             partial->size, size);
        return;
    }
    s_keep_partial (self, &data, partial->piece, partial->from, partial->complete);
    zf_task_reader_pump (self);
}

//  The first peek's answer: piece 0's first bytes are kept for the layout; anything else
//  (nothing yet, "not_found": the fetcher does not run the task, it is complete or its
//  task.fetch is still at the origin) is let go, and the peeks after the layout go on as usual.
static void s_on_first (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) err;
    zf_task_reader_t *self = zf_task_reader_reply (arg);
    if (!self)
        return;
    self->peek_pending = false;
    if (self->phase == ZF_TASK_READER_PHASE_OVER)
        return;
    if (status == ZF_OK) {
        const zf_msg_piece_partial_t *partial = reply->env.body;
        zframe_t *data = zmsg_pop (reply->raw);
        if (data && partial->task_id && streq (partial->task_id, self->first_task_id)
            && partial->piece == 0 && partial->from == 0 && partial->size > 0
            && zframe_size (data) == partial->size) {
            self->first_frame = data;
            self->first_complete = partial->complete;
        } else
            zframe_destroy (&data);
    }
    if (self->phase == ZF_TASK_READER_PHASE_FOLLOW)
        zf_task_reader_pump (self);
}

//  A streaming reader asks for piece 0's first bytes right behind its task.fetch, before the
//  origin has told the length: the fetcher holds the peek and answers it with the origin's
//  first bytes as they arrive, while it is busy taking in the rest of the first range. A peek
//  sent after the layout reached the fetcher 1.5 ms later than those bytes on loopback
//  (queued behind them; docs/architecture.md, "Where the first byte of a cold blob waits").
//  Only for a task named by its digest: its id depends on nothing the fetcher's configuration
//  could change. The bytes reach the caller only with the layout, that is once the fetcher
//  answered task.fetch (after the origin accepted this caller's credentials).
void zf_task_reader_peek_first (zf_task_reader_t *self)
{
    const zf_msg_task_fetch_t *fetch = &self->fetch;
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    zf_error_t err;
    if (!self->peek || self->peek_pending
        || zf_task_id_compute (fetch->url, fetch->digest, fetch->tag, fetch->application, NULL,
                               self->first_task_id, digest, &err)
               != ZF_OK
        || !*digest)
        return;
    const zf_task_readers_options_t *options = &self->set->options;
    zf_msg_piece_peek_t peek = {.task_id = self->first_task_id,
                                .piece = 0,
                                .from = 0,
                                .wait_ms = (uint64_t) options->stat_wait_ms};
    zf_bus_call_t call = zf_task_reader_call (self);
    int64_t base = call.timeout_ms > 0 ? call.timeout_ms : 5000;
    //  Not zf_task_reader_request: a peek that cannot be sent fails nothing
    if (zf_bus_request (self->set->bus, self->set->fetcher, &zf_msg_piece_peek, &peek, NULL,
                        (zf_bus_call_t){.timeout_ms = options->stat_wait_ms + base,
                                        .retries = 0,
                                        .patient = true},
                        s_on_first, self, &err)
        != ZF_OK)
        return;
    self->pending++;
    self->peek_pending = true;
}

//  The first peek's bytes become the partial piece 0 when the caller reads from there and
//  nothing else brought piece 0 meanwhile; else they are dropped.
static void s_take_first (zf_task_reader_t *self)
{
    if (!self->first_frame || !self->layout_known || !self->reading)
        return;
    uint64_t size = zframe_size (self->first_frame);
    if (!streq (self->task_id, self->first_task_id) || self->next_deliver != 0
        || self->next_request != 0 || self->part_frame || s_part_from (self) != 0
        || zf_task_reader_stored (self, 0) || self->piece_count == 0
        || size > zf_task_reader_piece_size (self, 0)) {
        zframe_destroy (&self->first_frame);
        return;
    }
    s_keep_partial (self, &self->first_frame, 0, 0, self->first_complete);
}

//  Hands the caller the bytes a peek brought; the piece is done once all of it went so.
bool zf_task_reader_deliver_partial (zf_task_reader_t *self)
{
    s_take_first (self);
    if (!self->part_frame || self->paused)
        return true;
    uint64_t piece = self->next_deliver;
    uint64_t size = zframe_size (self->part_frame);
    zf_task_reader_event_t event = {.type = ZF_TASK_READER_PIECE,
                                    .piece = piece,
                                    .offset = piece * self->piece_length + self->part_frame_from,
                                    .size = size,
                                    .partial = true,
                                    .frame = &self->part_frame};
    self->part_piece = piece;
    self->part_from = self->part_frame_from + size;
    if (!zf_task_reader_emit (self, &event, NULL))
        return false;
    zframe_destroy (&self->part_frame);
    if (self->part_from == zf_task_reader_piece_size (self, piece)) {
        self->next_deliver++;
        if (self->next_request < self->next_deliver)
            self->next_request = self->next_deliver;
    }
    return true;
}
