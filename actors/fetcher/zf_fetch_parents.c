/*  zf_fetch_parents.c — a task's parents (see zf_fetch_parents.h).

    Parent records live until the set is destroyed, whatever happens to them (a parent
    dropped or removed is GONE, and starts afresh when given again), and every request in
    flight is forgotten at the bus when its parent goes: no callback ever finds freed state,
    whatever a callback changes. */
#include "zf_fetch_parents.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include "zf_task_id.h"
#include <openssl/evp.h>

#define PARENTS_MAX         64 //  given and added together, gone ones included
#define TICK_MS             100
#define DIGEST_SIZE         32
#define BUSY_BACKOFF_MS     50 //  first wait after "busy", doubled per busy answer in a row
#define BUSY_BACKOFF_CAP_MS 2000
#define STAT_WAIT_MS        2000 //  how long a parent holds a storage.stat without news
//  A parent the scheduler gave before it opened the task (a seed triggered a moment ago)
//  answers "not_found": asked again this often, for this long.
#define NOT_FOUND_RETRY_MS 100
#define NOT_FOUND_GRACE_MS 10000
//  No connection to a parent for this long: it is gone (its requests fail, it is dropped).
//  A killed process is seen at once (the connection resets); a silent host after the bus's
//  heartbeat timeout.
#define PARENT_GONE_MS 2000
//  A request is late once it took LATE_FACTOR times what this parent's pieces usually take
//  (and at least LATE_MIN_MS): it is asked of another parent too. Usually: an average over
//  the last pieces, weighted LATENCY_WEIGHT for the newest.
#define LATE_FACTOR    3
#define LATE_MIN_MS    500
#define LATENCY_WEIGHT 0.25
//  A parent that answered "elsewhere" for a piece (it brought the piece into the swarm and
//  sent it to another node a moment ago: schemas/core.schema) is not asked for it again for
//  this long; the piece comes from a peer meanwhile.
#define ELSEWHERE_MS 2000
//  Pieces come in frames of at most this size (piece.read frame_max): libzmq's CURVE encrypts
//  and decrypts a frame whole, with three more buffers of its size on each side, so a 16 MiB
//  piece in one frame held 48 MiB more in each daemon; in 256 KiB frames the buffers stay in
//  the CPU's caches and the CPU cost per byte is the same (zfly-piecebench, docs/benchmarks.md
//  "Datacenter speed"). The frames are joined here, as the SHA-256 check goes through them.
#define PIECE_FRAME_MAX (256 * 1024)

typedef enum { PARENT_STATING, PARENT_ACTIVE, PARENT_GONE } parent_state_t;

typedef struct {
    zf_fetch_parents_t *set;
    uint32_t id; //  never reused within a task: pieces remember where they came from by it
    char name[ZF_NAME_MAX + 1];
    parent_state_t state;
    uint8_t *bitmap; //  pieces it holds, once the layout is known
    uint64_t have_count;
    bool counted; //  its bitmap is in the table's availability
    bool complete;
    bool stat_pending;
    bool stat_waits;    //  the pending storage.stat is a long poll
    int64_t stat_at_ms; //  next refresh
    int64_t stat_sent_ms;
    uint64_t stat_finished; //  finished_count of its last storage.task: what a long poll knows
    int64_t added_ms;
    int64_t grew_ms;      //  when it last reported more pieces (or became active)
    int64_t delivered_ms; //  its last piece (or when requests to it began)
    zlistx_t *requests;   //  request_t *, in flight
    uint32_t busy_streak;
    int64_t busy_until_ms;
    uint8_t *elsewhere; //  pieces it said went elsewhere, since elsewhere_since_ms
    int64_t elsewhere_since_ms;
    double latency_ms; //  what its pieces usually take, request to answer; 0: none yet
    uint64_t pieces_from, bytes_from;
} parent_t;

typedef struct {
    parent_t *parent;
    uint64_t piece;
    int64_t sent_ms;
    bool duplicated; //  asked of another parent too, being late
    void *handle;    //  in parent->requests
} request_t;

struct zf_fetch_parents_s {
    zf_fetch_env_t *env;
    char task_id[ZF_TASK_ID_SIZE + 1];
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    bool scheduled;
    zf_fetch_parents_sink_t sink;
    void *arg;
    parent_t *items[PARENTS_MAX];
    size_t count;
    uint32_t next_id;
    size_t cursor; //  round robin over parents
    //  The layout, from the first parent to answer or from the task.
    bool layout_known;
    uint64_t content_length, piece_length, piece_count;
    uint8_t *digests;        //  piece_count * 32; zeros: unknown
    zf_piece_table_t *table; //  the task's, once attached
    uint64_t random;         //  splitmix64 state: a scheduled task's draws among the rarest
    int timer_id;
};

//  --- the set -----------------------------------------------------------------------------------

static void s_count (zf_fetch_parents_t *self, const char *result)
{
    zf_counter_add (zf_metrics_counter ("zfly_fetcher_parent_requests_total",
                                        "piece.read requests to parents, by result", "actor",
                                        self->env->name, "result", result, NULL),
                    1);
}

static parent_t *s_find_id (zf_fetch_parents_t *self, uint32_t id)
{
    for (size_t index = 0; index < self->count; index++)
        if (self->items[index]->id == id)
            return self->items[index];
    return NULL;
}

static parent_t *s_find_name (zf_fetch_parents_t *self, const char *name)
{
    for (size_t index = 0; index < self->count; index++)
        if (streq (self->items[index]->name, name))
            return self->items[index];
    return NULL;
}

static int s_on_tick (zloop_t *loop, int timer_id, void *arg);

zf_fetch_parents_t *zf_fetch_parents_new (zf_fetch_env_t *env, const char *task_id,
                                          const char *digest, bool scheduled,
                                          const zf_fetch_parents_sink_t *sink, void *arg)
{
    zf_fetch_parents_t *self = zf_calloc (1, sizeof *self);
    self->env = env;
    zf_strlcpy (self->task_id, task_id, sizeof self->task_id);
    zf_strlcpy (self->digest, digest, sizeof self->digest);
    self->scheduled = scheduled;
    self->sink = *sink;
    self->arg = arg;
    self->timer_id = zf_timers_start (env->timers, TICK_MS, 0, s_on_tick, self);
    return self;
}

//  Forgets a parent's requests at the bus (their callbacks never run) and in the table.
static void s_forget_requests (zf_fetch_parents_t *self, parent_t *parent, bool attempt)
{
    request_t *request;
    while ((request = zlistx_detach (parent->requests, NULL))) {
        zf_bus_forget (self->env->bus, request);
        if (self->table)
            zf_piece_table_request_ended (self->table, request->piece, attempt);
        zf_free (request);
    }
    if (parent->stat_pending) {
        zf_bus_forget (self->env->bus, parent);
        parent->stat_pending = false;
    }
}

void zf_fetch_parents_destroy (zf_fetch_parents_t **self_p)
{
    zf_fetch_parents_t *self = *self_p;
    if (!self)
        return;
    zf_timers_end (self->env->timers, self->timer_id);
    self->table = NULL; //  the task's, and the task is going
    for (size_t index = 0; index < self->count; index++) {
        parent_t *parent = self->items[index];
        s_forget_requests (self, parent, false);
        zlistx_destroy (&parent->requests);
        zf_free (parent->bitmap);
        zf_free (parent->elsewhere);
        zf_free (parent);
    }
    zf_free (self->digests);
    zf_free (self);
    *self_p = NULL;
}

bool zf_fetch_parents_layout (zf_fetch_parents_t *self, uint64_t *content_length,
                              uint64_t *piece_length)
{
    *content_length = self->content_length;
    *piece_length = self->piece_length;
    return self->layout_known;
}

const uint8_t *zf_fetch_parents_digest (zf_fetch_parents_t *self, uint64_t piece)
{
    if (!self->digests || piece >= self->piece_count)
        return NULL;
    static const uint8_t zeros[DIGEST_SIZE] = {0};
    const uint8_t *digest = self->digests + piece * DIGEST_SIZE;
    return memcmp (digest, zeros, DIGEST_SIZE) == 0 ? NULL : digest;
}

const char *zf_fetch_parents_name (zf_fetch_parents_t *self, uint32_t id)
{
    parent_t *parent = id ? s_find_id (self, id) : NULL;
    return parent ? parent->name : NULL;
}

size_t zf_fetch_parents_count (zf_fetch_parents_t *self)
{
    size_t count = 0;
    for (size_t index = 0; index < self->count; index++)
        count += self->items[index]->state != PARENT_GONE;
    return count;
}

bool zf_fetch_parents_exhausted (zf_fetch_parents_t *self)
{
    return zf_fetch_parents_count (self) == 0;
}

bool zf_fetch_parents_may_grow (zf_fetch_parents_t *self, int64_t now)
{
    for (size_t index = 0; index < self->count; index++) {
        parent_t *parent = self->items[index];
        if (parent->state == PARENT_STATING)
            return true;
        if (parent->state == PARENT_ACTIVE && !parent->complete
            && now - parent->grew_ms < self->env->config->parent_timeout_ms)
            return true;
    }
    return false;
}

//  Takes a parent's pieces out of the table's availability, and its requests out of flight.
static void s_retire (zf_fetch_parents_t *self, parent_t *parent, bool attempt)
{
    s_forget_requests (self, parent, attempt);
    if (parent->counted && self->table)
        zf_piece_table_holder_remove (self->table, parent->bitmap);
    parent->counted = false;
    parent->state = PARENT_GONE;
}

static void s_drop (zf_fetch_parents_t *self, parent_t *parent, bool failed, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

//  The task stops using a parent, for a reason the scheduler hears about.
static void s_drop (zf_fetch_parents_t *self, parent_t *parent, bool failed, const char *fmt, ...)
{
    if (parent->state == PARENT_GONE)
        return;
    char reason[512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (reason, sizeof reason, fmt, args);
    va_end (args);
    s_retire (self, parent, failed);
    zf_warning (self->env->name, "parent %s task=%.16s parent=%s: %s",
                failed ? "failed" : "dropped as slow", self->task_id, parent->name, reason);
    self->sink.on_dropped (self->arg, parent->name, failed, reason);
    self->sink.wake (self->arg);
}

//  --- stat: layout, digests, bitmaps ------------------------------------------------------------

static void s_stat (zf_fetch_parents_t *self, parent_t *parent);

static void s_fix_layout (zf_fetch_parents_t *self, uint64_t content_length, uint64_t piece_length)
{
    self->layout_known = true;
    self->content_length = content_length;
    self->piece_length = piece_length;
    self->piece_count = piece_length ? (content_length + piece_length - 1) / piece_length : 0;
    self->digests = zf_calloc (self->piece_count ? self->piece_count : 1, DIGEST_SIZE);
}

//  Checks a parent's storage.task against the layout and digests known, merging digests nobody
//  knew (digests NULL: the answer carried none, a long poll). NULL when it agrees.
static const char *s_agree (zf_fetch_parents_t *self, const zf_msg_storage_task_t *body,
                            const uint8_t *digests)
{
    if (body->content_length != self->content_length || body->piece_length != self->piece_length)
        return "other content or piece length";
    if (*self->digest && body->digest && *body->digest && !streq (self->digest, body->digest))
        return "other content digest";
    static const uint8_t zeros[DIGEST_SIZE] = {0};
    for (uint64_t index = 0; digests && index < self->piece_count; index++) {
        const uint8_t *theirs = digests + index * DIGEST_SIZE;
        uint8_t *ours = self->digests + index * DIGEST_SIZE;
        if (memcmp (theirs, zeros, DIGEST_SIZE) == 0)
            continue;
        if (memcmp (ours, zeros, DIGEST_SIZE) == 0)
            memcpy (ours, theirs, DIGEST_SIZE);
        else if (memcmp (ours, theirs, DIGEST_SIZE) != 0)
            return "other piece digests";
    }
    return NULL;
}

//  Counts a parent's pieces in the table, once both exist.
static void s_count_holder (zf_fetch_parents_t *self, parent_t *parent)
{
    if (parent->state != PARENT_ACTIVE || parent->counted || !self->table)
        return;
    zf_piece_table_holder_add (self->table, parent->bitmap);
    parent->counted = true;
}

//  Takes a parent's bitmap as the truth about it, keeping the table's availability in step.
static void s_set_bitmap (zf_fetch_parents_t *self, parent_t *parent, const uint8_t *bits,
                          int64_t now)
{
    size_t bytes = (size_t) (self->piece_count + 7) / 8;
    if (!parent->bitmap)
        parent->bitmap = zf_calloc (bytes ? bytes : 1, 1);
    uint64_t had = parent->have_count;
    parent->have_count = 0;
    for (uint64_t index = 0; index < self->piece_count; index++) {
        bool has = zf_bit (bits, index);
        parent->have_count += has;
        if (has == zf_bit (parent->bitmap, index))
            continue;
        zf_bit_set (parent->bitmap, index, has);
        if (parent->counted && has)
            zf_piece_table_holder_gained (self->table, index);
        else if (parent->counted)
            zf_piece_table_holder_lost (self->table, index);
    }
    if (parent->have_count > had)
        parent->grew_ms = now;
}

static void s_activate (zf_fetch_parents_t *self, parent_t *parent, int64_t now)
{
    parent->state = PARENT_ACTIVE;
    parent->grew_ms = parent->delivered_ms = now;
    s_count_holder (self, parent);
    zf_info (self->env->name,
             "parent active task=%.16s parent=%s pieces=%" PRIu64 " of %" PRIu64 "%s",
             self->task_id, parent->name, parent->have_count, self->piece_count,
             parent->complete ? " (complete)" : "");
}

//  A storage.task that adds up: as many pieces as the lengths say, a bitmap and (unless a
//  long poll asked for the bitmap only) a digest per piece.
static bool s_stat_well_formed (const zf_msg_storage_task_t *body, zframe_t *bitmap,
                                zframe_t *digests, bool bitmap_only)
{
    uint64_t count = body->piece_length
                         ? (body->content_length + body->piece_length - 1) / body->piece_length
                         : 0;
    return body->piece_count == count && (!body->content_length || body->piece_length) && bitmap
           && digests && zframe_size (bitmap) >= (size_t) (count + 7) / 8
           && (bitmap_only || zframe_size (digests) == (size_t) count * DIGEST_SIZE);
}

static void s_on_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    parent_t *parent = arg;
    zf_fetch_parents_t *self = parent->set;
    parent->stat_pending = false;
    int64_t now = zf_clock_mono_ms ();
    if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND && self->scheduled
        && now - parent->added_ms < NOT_FOUND_GRACE_MS) {
        parent->stat_at_ms = now + NOT_FOUND_RETRY_MS; //  not opened yet: again soon
        return;
    }
    if (status != ZF_OK) {
        //  Never connected (ZF_E_UNREACHABLE): ours to deal with, not the parent's fault.
        s_drop (self, parent, status != ZF_E_UNREACHABLE, "storage.stat: %s",
                err && *err->message ? err->message : zf_status_name (status));
        return;
    }
    const zf_msg_storage_task_t *body = reply->env.body;
    zframe_t *bitmap = zmsg_first (reply->raw);
    zframe_t *digests = zmsg_next (reply->raw);
    //  A long poll asked for the bitmap only; an older storage may still send the digests.
    bool bitmap_only =
        parent->state == PARENT_ACTIVE && parent->stat_waits && digests && !zframe_size (digests);
    if (!s_stat_well_formed (body, bitmap, digests, bitmap_only)) {
        s_drop (self, parent, true, "storage.task malformed: %" PRIu64 " pieces, frames %zu/%zu",
                body->piece_count, bitmap ? zframe_size (bitmap) : 0,
                digests ? zframe_size (digests) : 0);
        return;
    }
    bool first = !self->layout_known;
    if (first) //  the first parent to answer fixes the layout
        s_fix_layout (self, body->content_length, body->piece_length);
    const char *disagree = s_agree (self, body, bitmap_only ? NULL : zframe_data (digests));
    if (disagree) {
        s_drop (self, parent, true, "%s than the task (%" PRIu64 "/%" PRIu64 ")", disagree,
                body->content_length, body->piece_length);
        return;
    }
    //  A long poll answered early without news: that storage does not hold questions. The
    //  first answer of a parent is news (it has the task), and the long poll for its pieces
    //  starts at once: waiting a refresh first left children a second behind a fresh seed.
    bool complete = streq (body->state, "complete");
    bool held = parent->state == PARENT_STATING
                || (parent->stat_waits
                    && (body->finished_count > parent->stat_finished || complete
                        || now - parent->stat_sent_ms >= STAT_WAIT_MS / 2));
    parent->complete = complete;
    parent->stat_finished = body->finished_count;
    s_set_bitmap (self, parent, zframe_data (bitmap), now);
    if (parent->state == PARENT_STATING)
        s_activate (self, parent, now);
    parent->stat_at_ms = held ? now : now + self->env->config->parent_refresh_ms;
    if (held && !parent->complete)
        s_stat (self, parent);
    if (first)
        self->sink.on_layout (self->arg, body->content_length, body->piece_length);
    self->sink.wake (self->arg);
}

static zf_bus_call_t s_patient (void)
{
    return (zf_bus_call_t){.timeout_ms = PARENT_GONE_MS, .retries = 0, .patient = true};
}

static void s_stat (zf_fetch_parents_t *self, parent_t *parent)
{
    zf_msg_storage_stat_t stat = {.task_id = self->task_id};
    //  Once it is known to be downloading, ask it to answer with its next piece; a parent the
    //  scheduler gave may not have opened the task yet: ask it to answer once it has.
    bool active = parent->state == PARENT_ACTIVE;
    parent->stat_waits = active ? !parent->complete : self->scheduled;
    if (parent->stat_waits) {
        stat.wait_ms = STAT_WAIT_MS;
        stat.known_finished = active ? parent->stat_finished : 0;
        stat.bitmap_only = active; //  digests come with each piece (piece.data)
    }
    parent->stat_sent_ms = zf_clock_mono_ms ();
    zf_error_t err;
    if (zf_bus_request (self->env->bus, parent->name, &zf_msg_storage_stat, &stat, NULL,
                        s_patient (), s_on_stat, parent, &err)
        != ZF_OK) {
        //  No route to it is this node's problem (what it was told, what it resolves), not a
        //  fault of the parent: dropped without blame.
        s_drop (self, parent, err.code != ZF_E_UNREACHABLE, "storage.stat not sent: %s",
                err.message);
        return;
    }
    parent->stat_pending = true;
}

bool zf_fetch_parents_add (zf_fetch_parents_t *self, const char *name)
{
    if (!*name)
        return false;
    parent_t *parent = s_find_name (self, name);
    if (parent && parent->state != PARENT_GONE)
        return false;
    if (!parent) {
        if (self->count == PARENTS_MAX)
            return false;
        parent = zf_calloc (1, sizeof *parent);
        parent->set = self;
        parent->id = ++self->next_id;
        zf_strlcpy (parent->name, name, sizeof parent->name);
        parent->requests = zlistx_new ();
        self->items[self->count++] = parent;
    }
    //  Given anew (maybe after it was dropped): what it had is forgotten.
    zf_free (parent->bitmap);
    parent->bitmap = NULL;
    zf_free (parent->elsewhere);
    parent->elsewhere = NULL;
    parent->state = PARENT_STATING;
    parent->have_count = parent->stat_finished = 0;
    parent->complete = false;
    parent->busy_streak = 0;
    parent->busy_until_ms = 0;
    parent->latency_ms = 0;
    parent->added_ms = zf_clock_mono_ms ();
    zf_info (self->env->name, "parent added task=%.16s parent=%s", self->task_id, name);
    s_stat (self, parent);
    return true;
}

bool zf_fetch_parents_remove (zf_fetch_parents_t *self, const char *name)
{
    parent_t *parent = s_find_name (self, name);
    if (!parent || parent->state == PARENT_GONE)
        return false;
    s_retire (self, parent, false);
    zf_info (self->env->name, "parent removed task=%.16s parent=%s", self->task_id, name);
    self->sink.wake (self->arg);
    return true;
}

void zf_fetch_parents_remove_all (zf_fetch_parents_t *self)
{
    for (size_t index = 0; index < self->count; index++)
        if (self->items[index]->state != PARENT_GONE)
            s_retire (self, self->items[index], false);
}

void zf_fetch_parents_attach (zf_fetch_parents_t *self, zf_piece_table_t *table,
                              uint64_t content_length, uint64_t piece_length)
{
    if (!self->layout_known)
        s_fix_layout (self, content_length, piece_length);
    ZF_ASSERT (self->content_length == content_length && self->piece_length == piece_length);
    ZF_ASSERT (zf_piece_table_count (table) == self->piece_count);
    self->table = table;
    for (size_t index = 0; index < self->count; index++)
        s_count_holder (self, self->items[index]);
}

void zf_fetch_parents_detach (zf_fetch_parents_t *self)
{
    for (size_t index = 0; index < self->count; index++) {
        parent_t *parent = self->items[index];
        s_forget_requests (self, parent, false);
        if (parent->counted && self->table)
            zf_piece_table_holder_remove (self->table, parent->bitmap);
        parent->counted = false;
        if (parent->state != PARENT_GONE && !parent->stat_pending)
            s_stat (self, parent);
    }
    self->table = NULL;
}

//  --- pieces ------------------------------------------------------------------------------------

static void s_forget_duplicates (zf_fetch_parents_t *self, uint64_t piece, request_t *except);

//  The piece's bytes in reply->raw as one frame (joined when they came in several, each part
//  hashed just after it was copied, while it is in the cache); their SHA-256 into digest.
//  NULL when they do not add up to size.
static zframe_t *s_join_piece (zf_fetch_parents_t *self, zmsg_t *raw, uint64_t size,
                               uint8_t *digest)
{
    uint64_t total = 0;
    for (zframe_t *part = zmsg_first (raw); part; part = zmsg_next (raw))
        total += zframe_size (part);
    if (total != size || zmsg_size (raw) == 0)
        return NULL;
    EVP_MD_CTX *hash = EVP_MD_CTX_new ();
    ZF_ASSERT (hash && EVP_DigestInit_ex (hash, EVP_sha256 (), NULL) == 1);
    zframe_t *bytes;
    if (zmsg_size (raw) == 1) {
        bytes = zmsg_pop (raw);
        ZF_ASSERT (EVP_DigestUpdate (hash, zframe_data (bytes), zframe_size (bytes)) == 1);
    } else {
        bytes = self->sink.buffer (self->arg, (size_t) size);
        ZF_ASSERT (zframe_size (bytes) == size);
        size_t offset = 0;
        zframe_t *part;
        while ((part = zmsg_pop (raw))) {
            memcpy (zframe_data (bytes) + offset, zframe_data (part), zframe_size (part));
            ZF_ASSERT (EVP_DigestUpdate (hash, zframe_data (bytes) + offset, zframe_size (part))
                       == 1);
            offset += zframe_size (part);
            zframe_destroy (&part);
        }
    }
    unsigned int digest_size = 0;
    ZF_ASSERT (EVP_DigestFinal_ex (hash, digest, &digest_size) == 1);
    EVP_MD_CTX_free (hash);
    return bytes;
}

//  Checks what a parent answered for a piece: its bytes, joined into one frame, go to
//  *bytes_p and their SHA-256 to digest. NULL when it is good.
static const char *s_check_piece (zf_fetch_parents_t *self, uint64_t piece, zf_bus_msg_t *reply,
                                  zframe_t **bytes_p, uint8_t *digest)
{
    const zf_msg_piece_data_t *data = reply->env.body;
    uint64_t start = piece * self->piece_length;
    uint64_t size = start + self->piece_length > self->content_length ? self->content_length - start
                                                                      : self->piece_length;
    if (data->piece != piece || !(*bytes_p = s_join_piece (self, reply->raw, size, digest)))
        return "wrong piece or size";
    const uint8_t *expected = zf_fetch_parents_digest (self, piece);
    if (!expected && data->digest.size == DIGEST_SIZE)
        expected = data->digest.data; //  nobody knew it at stat time: the parent's word
    if (!expected || memcmp (expected, digest, DIGEST_SIZE) != 0)
        return "digest mismatch";
    return NULL;
}

static void s_clear_bit (zf_fetch_parents_t *self, parent_t *parent, uint64_t piece)
{
    if (!zf_bit (parent->bitmap, piece))
        return;
    zf_bit_set (parent->bitmap, piece, false);
    parent->have_count--; //  complete stays: it will not download the piece again itself
    if (parent->counted)
        zf_piece_table_holder_lost (self->table, piece);
}

static void s_delivered (zf_fetch_parents_t *self, parent_t *parent, request_t *request,
                         zframe_t **bytes_p, const uint8_t *digest, int64_t now)
{
    zframe_t *bytes = *bytes_p;
    *bytes_p = NULL;
    size_t size = zframe_size (bytes);
    double took = (double) (now - request->sent_ms);
    parent->latency_ms = parent->latency_ms > 0
                             ? (1 - LATENCY_WEIGHT) * parent->latency_ms + LATENCY_WEIGHT * took
                             : took;
    parent->busy_streak = 0;
    parent->delivered_ms = now;
    parent->pieces_from++;
    parent->bytes_from += size;
    zf_counter_add (self->env->parent_bytes, size);
    s_forget_duplicates (self, request->piece, request);
    zf_debug (self->env->name, "piece from parent task=%.16s parent=%s piece=%" PRIu64 " ms=%.0f",
              self->task_id, parent->name, request->piece, took);
    self->sink.on_piece (self->arg, request->piece, &bytes, digest, parent->id);
    zframe_destroy (&bytes);
}

static void s_on_piece (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    request_t *request = arg;
    parent_t *parent = request->parent;
    zf_fetch_parents_t *self = parent->set;
    zlistx_delete (parent->requests, request->handle);
    uint64_t piece = request->piece;
    int64_t now = zf_clock_mono_ms ();
    zf_piece_table_t *table = self->table; //  requests are forgotten when it goes
    ZF_ASSERT (table);
    bool live = zf_piece_table_requests (table, piece) > 0;
    zf_code_t code = zf_bus_error_code (status, reply);
    const char *reason = err && *err->message ? err->message : zf_status_name (status);

    if (status == ZF_OK) {
        uint8_t digest[DIGEST_SIZE];
        zframe_t *bytes = NULL;
        const char *bad = s_check_piece (self, piece, reply, &bytes, digest);
        if (bad) {
            s_count (self, "digest");
            zf_piece_table_request_ended (table, piece, true);
            s_clear_bit (self, parent, piece);
            s_drop (self, parent, true, "piece %" PRIu64 ": %s", piece, bad);
        } else if (!live) {
            s_count (self, "duplicate"); //  another request of the piece won
            parent->delivered_ms = now;
        } else {
            s_count (self, "ok");
            s_delivered (self, parent, request, &bytes, digest, now);
        }
        zframe_destroy (&bytes);
    } else if (code == ZF_CODE_BUSY) {
        s_count (self, "busy");
        zf_piece_table_request_ended (table, piece, false);
        int64_t backoff = BUSY_BACKOFF_MS;
        for (uint32_t step = 0; step < parent->busy_streak && backoff < BUSY_BACKOFF_CAP_MS; step++)
            backoff *= 2;
        parent->busy_streak++;
        parent->busy_until_ms =
            now + (backoff < BUSY_BACKOFF_CAP_MS ? backoff : BUSY_BACKOFF_CAP_MS);
    } else if (code == ZF_CODE_ELSEWHERE) {
        s_count (self, "elsewhere");
        zf_debug (self->env->name,
                  "piece went elsewhere task=%.16s parent=%s piece=%" PRIu64 " ms=%" PRId64,
                  self->task_id, parent->name, piece, now - request->sent_ms);
        zf_piece_table_request_ended (table, piece, false);
        if (!parent->elsewhere || now - parent->elsewhere_since_ms >= ELSEWHERE_MS) {
            if (!parent->elsewhere)
                parent->elsewhere = zf_calloc ((size_t) (self->piece_count + 7) / 8 + 1, 1);
            memset (parent->elsewhere, 0, (size_t) (self->piece_count + 7) / 8);
            parent->elsewhere_since_ms = now;
        }
        zf_bit_set (parent->elsewhere, piece, true);
    } else if (code == ZF_CODE_CORRUPT || code == ZF_CODE_NOT_FINISHED) {
        //  It no longer has this piece (storage dropped a damaged one): not its fault as a
        //  parent, but not asked for the piece again unless a refresh says it has it.
        s_count (self, zf_code_name (code));
        zf_piece_table_request_ended (table, piece, true);
        zf_info (self->env->name, "parent lost a piece task=%.16s parent=%s piece=%" PRIu64,
                 self->task_id, parent->name, piece);
        s_clear_bit (self, parent, piece);
    } else {
        s_count (self,
                 status == ZF_E_TIMEOUT || status == ZF_E_UNREACHABLE ? "unreachable" : "error");
        zf_piece_table_request_ended (table, piece, true);
        s_drop (self, parent, status != ZF_E_UNREACHABLE, "piece.read of piece %" PRIu64 ": %s",
                piece, reason);
    }
    zf_free (request);
    self->sink.wake (self->arg);
}

//  Asks a parent for a piece; false when it could not be sent (the parent is then dropped).
static bool s_request (zf_fetch_parents_t *self, parent_t *parent, uint64_t piece, int64_t now)
{
    if (!zf_piece_table_request (self->table, piece, now))
        return false;
    request_t *request = zf_calloc (1, sizeof *request);
    request->parent = parent;
    request->piece = piece;
    request->sent_ms = now;
    zf_msg_piece_read_t read = {
        .task_id = self->task_id, .piece = piece, .frame_max = PIECE_FRAME_MAX};
    zf_error_t err;
    if (zf_bus_request (self->env->bus, parent->name, &zf_msg_piece_read, &read, NULL, s_patient (),
                        s_on_piece, request, &err)
        != ZF_OK) {
        zf_free (request);
        zf_piece_table_request_ended (self->table, piece, false);
        s_count (self, "error");
        s_drop (self, parent, err.code != ZF_E_UNREACHABLE, "piece.read not sent: %s", err.message);
        return false;
    }
    if (zlistx_size (parent->requests) == 0)
        parent->delivered_ms = now; //  its clock starts with the first request
    request->handle = zlistx_add_end (parent->requests, request);
    return true;
}

//  Another request of the same piece won: the others are forgotten, so their parents' room
//  goes to other pieces (their bytes, when they come, are dropped by the bus as late).
static void s_forget_duplicates (zf_fetch_parents_t *self, uint64_t piece, request_t *except)
{
    for (size_t index = 0; index < self->count; index++) {
        parent_t *parent = self->items[index];
        request_t *request = zlistx_first (parent->requests);
        while (request) {
            request_t *next = zlistx_next (parent->requests);
            if (request != except && request->piece == piece) {
                zf_bus_forget (self->env->bus, request);
                zlistx_delete (parent->requests, request->handle);
                zf_piece_table_request_ended (self->table, piece, false);
                zf_free (request);
                s_count (self, "duplicate");
            }
            request = next;
        }
    }
}

static bool s_usable (zf_fetch_parents_t *self, parent_t *parent, int64_t now)
{
    return parent->state == PARENT_ACTIVE && parent->counted && parent->busy_until_ms <= now
           && (int64_t) zlistx_size (parent->requests) < self->env->config->parent_concurrency;
}

static uint64_t s_random (zf_fetch_parents_t *self)
{
    if (self->random == 0) //  differs between nodes: their own clock and process
        self->random = (uint64_t) zf_clock_mono_us () ^ ((uint64_t) getpid () << 32) ^ 1;
    uint64_t z = (self->random += 0x9e3779b97f4a7c15ull); //  splitmix64
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

//  `awaited`, the piece a reader here waits for (-1: none), if this parent can give it; else
//  the rarest wanted piece it holds. With a scheduler, one of the rarest at random, so children
//  fed by one seed take different pieces and have something to give each other; without one,
//  the lowest index, which keeps streaming readers in order.
static int64_t s_pick (zf_fetch_parents_t *self, parent_t *parent, uint64_t from, int64_t awaited,
                       int64_t now)
{
    bool fresh = parent->elsewhere && now - parent->elsewhere_since_ms < ELSEWHERE_MS;
    uint64_t random = self->scheduled ? s_random (self) | 1 : 0;
    return zf_piece_table_pick (self->table, parent->bitmap, from, random,
                                fresh ? parent->elsewhere : NULL, awaited, now);
}

void zf_fetch_parents_pump (zf_fetch_parents_t *self, uint64_t from)
{
    if (!self->table || self->count == 0)
        return;
    int64_t now = zf_clock_mono_ms ();
    //  Asked once: requests sent below answer no peek before the pump returns.
    int64_t awaited = self->sink.awaited ? self->sink.awaited (self->arg) : -1;
    bool progress = true;
    while (progress) {
        progress = false;
        for (size_t step = 0; step < self->count; step++) {
            parent_t *parent = self->items[(self->cursor + step) % self->count];
            if (!s_usable (self, parent, now))
                continue;
            int64_t piece = s_pick (self, parent, from, awaited, now);
            if (piece >= 0 && s_request (self, parent, (uint64_t) piece, now))
                progress = true;
        }
        self->cursor++; //  the next round starts at the next parent: pieces spread over all
    }
}

//  --- the clock -----------------------------------------------------------------------------

//  How long this parent's pieces usually take to come, times LATE_FACTOR.
static int64_t s_late_after (parent_t *parent)
{
    int64_t late = (int64_t) (LATE_FACTOR * parent->latency_ms);
    return late > LATE_MIN_MS ? late : LATE_MIN_MS;
}

//  A late request is asked of another parent that holds the piece and has room.
static void s_duplicate_late (zf_fetch_parents_t *self, parent_t *slow, int64_t now)
{
    for (request_t *request = zlistx_first (slow->requests); request;
         request = zlistx_next (slow->requests)) {
        if (request->duplicated || now - request->sent_ms < s_late_after (slow))
            continue;
        for (size_t step = 0; step < self->count; step++) {
            parent_t *other = self->items[(self->cursor + step) % self->count];
            if (other == slow || !s_usable (self, other, now)
                || !zf_bit (other->bitmap, request->piece))
                continue;
            if (s_request (self, other, request->piece, now)) {
                request->duplicated = true;
                s_count (self, "late");
            }
            break;
        }
    }
}

static int s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_fetch_parents_t *self = arg;
    int64_t now = zf_clock_mono_ms ();
    int64_t useless_after = self->env->config->parent_timeout_ms;
    for (size_t index = 0; index < self->count; index++) {
        parent_t *parent = self->items[index];
        if (parent->state == PARENT_GONE)
            continue;
        if (!parent->stat_pending && parent->stat_at_ms <= now
            && (parent->state == PARENT_STATING || !parent->complete))
            s_stat (self, parent);
        if (!self->table || zlistx_size (parent->requests) == 0)
            continue;
        if (now - parent->delivered_ms >= useless_after)
            s_drop (self, parent, false, "no piece within %" PRId64 " ms while asked for %zu",
                    useless_after, zlistx_size (parent->requests));
        else
            s_duplicate_late (self, parent, now);
    }
    self->sink.wake (self->arg);
    return 0;
}
