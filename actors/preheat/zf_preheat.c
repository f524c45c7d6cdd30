/*  zf_preheat.c — the worker: the queue, the manager's verdicts, reports, the leases. */
#include "zf_preheat.h"
#include "zf_clock.h"
#include "zf_job_stream.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_preheat_job.h"
#include "zf_resolver.h"
#include <openssl/rand.h>

#define S_TICK_MS         100
#define S_TAKE_WAIT_MS    5000 //  a job.take the manager may hold
#define S_CALL_TIMEOUT_MS 5000
#define S_REPORT_MS       1000 //  progress is reported at most this often; a job's end at once
#define S_RETRY_MS        1000 //  a manager that did not answer is asked again after this
#define S_BATCH_MAX       64   //  tasks per job.update (schemas/preheat.schema)

typedef struct self_s self_t;

typedef enum {
    S_STARTING,  //  job.start until the manager says run (or not)
    S_RUNNING,   //  the job runs; changes reported
    S_FINISHING, //  the job ended; its last changes and its end reported
} s_phase_t;

//  A job this worker took from the queue.
typedef struct {
    self_t *worker;
    int64_t id;
    char queue_ref[ZF_JOB_STREAM_REF_MAX];
    s_phase_t phase;
    zf_preheat_job_t *job;
    bool in_flight; //  a job.start or job.update is out
    bool final_out; //  the update in flight carries the job's end
    zf_preheat_batch_t batch;
    int64_t next_call;   //  monotonic ms: no call before (a retry's delay)
    int64_t next_report; //  no progress report before (S_REPORT_MS after the last)
    int64_t last_report; //  the last update the manager took
    int64_t next_renew;  //  Redis: touch the entry
    int64_t last_renew;  //  Redis: the last touch Redis confirmed
} s_held_t;

struct self_s {
    const char *name;
    const zf_preheat_config_t *config;
    zf_node_t *node;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_curl_loop_t *curl;
    zf_job_stream_t *stream;
    char worker[200]; //  this worker's name: actor@node#random, unique per process
    zlistx_t *held;   //  s_held_t
    bool take_out;    //  a job.take is out
    int64_t next_take;
    zf_preheat_settings_t settings;
    zf_preheat_env_t env;
    zf_gauge_t *jobs_gauge;
    int soon_timer; //  the pass of the tick s_tick_soon asked for (-1: none)
};

static void s_tick_soon (self_t *self);

//  ---------------------------------------------------------------------------------------------
//  Letting go of a job

//  ack: the manager recorded the job's end (or it had ended): the stream entry goes.
static void s_release (s_held_t *held, bool ack, const char *why)
{
    self_t *self = held->worker;
    if (ack && self->stream) {
        zf_error_t err;
        if (zf_job_stream_ack (self->stream, held->queue_ref, &err) != ZF_OK)
            //  The entry stays pending: it is claimed again after a lease, and the manager
            //  answers that claim "done".
            zf_warning (self->name, "job %" PRId64 ": entry %s not acknowledged: %s", held->id,
                        held->queue_ref, err.message);
    }
    zf_info (self->name, "job %" PRId64 " released: %s", held->id, why);
    zf_bus_forget (self->bus, held);
    if (held->batch.tasks && held->job)
        zf_preheat_job_reported (held->job, &held->batch, false);
    zf_preheat_job_destroy (&held->job);
    for (s_held_t *item = zlistx_first (self->held); item; item = zlistx_next (self->held))
        if (item == held) {
            zlistx_delete (self->held, zlistx_cursor (self->held));
            break;
        }
    zf_gauge_set (self->jobs_gauge, (double) zlistx_size (self->held));
    self->next_take = 0; //  room for another: taken now, not at the next tick
    s_tick_soon (self);
}

//  ---------------------------------------------------------------------------------------------
//  job.start

static void s_on_started (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    s_held_t *held = arg;
    self_t *self = held->worker;
    held->in_flight = false;
    if (status != ZF_OK || !streq (reply->env.type, ZF_MSG_JOB_STARTED)) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
        zf_warning_limited (&limit, self->name, "job %" PRId64 ": the manager did not start it: %s",
                            held->id, err ? err->message : reply->env.type);
        held->next_call = zf_clock_mono_ms () + S_RETRY_MS;
        return;
    }
    const zf_msg_job_started_t *started = reply->env.body;
    if (streq (started->verdict, "run")) {
        held->phase = S_RUNNING;
        held->last_report = zf_clock_mono_ms ();
        held->next_report = held->last_report + S_REPORT_MS;
        held->job = zf_preheat_job_new (&self->env, started);
        s_tick_soon (self); //  its tasks go out now
        return;
    }
    bool ack = streq (started->verdict, "done") || streq (started->verdict, "cancelled")
               || streq (started->verdict, "stale");
    char why[1100];
    snprintf (why, sizeof why, "the manager says %s%s%s", started->verdict,
              *started->message ? ": " : "", started->message);
    s_release (held, ack, why);
}

static void s_send_start (s_held_t *held)
{
    self_t *self = held->worker;
    zf_msg_job_start_t start = {
        .job_id = (uint64_t) held->id, .worker = self->worker, .queue_ref = held->queue_ref};
    zf_bus_call_t call = {.timeout_ms = S_CALL_TIMEOUT_MS, .retries = 1};
    zf_error_t err;
    if (zf_bus_request (self->bus, self->config->manager, &zf_msg_job_start, &start, NULL, call,
                        s_on_started, held, &err)
        != ZF_OK) {
        held->next_call = zf_clock_mono_ms () + S_RETRY_MS;
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
        zf_warning_limited (&limit, self->name, "job %" PRId64 ": %s", held->id, err.message);
        return;
    }
    held->in_flight = true;
}

//  ---------------------------------------------------------------------------------------------
//  job.update

static void s_on_updated (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    s_held_t *held = arg;
    self_t *self = held->worker;
    held->in_flight = false;
    int64_t now = zf_clock_mono_ms ();
    bool final = held->final_out;
    held->final_out = false;
    if (status != ZF_OK || !streq (reply->env.type, ZF_MSG_JOB_UPDATED)) {
        zf_preheat_job_reported (held->job, &held->batch, false);
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
        zf_warning_limited (&limit, self->name, "job %" PRId64 ": report not taken: %s", held->id,
                            err ? err->message : reply->env.type);
        held->next_call = now + S_RETRY_MS;
        return;
    }
    const zf_msg_job_updated_t *updated = reply->env.body;
    if (streq (updated->verdict, "ok")) {
        zf_preheat_job_reported (held->job, &held->batch, true);
        held->last_report = now;
        if (final) {
            s_release (held, true, "its end is recorded");
            return;
        }
        held->next_report = now + S_REPORT_MS;
        return;
    }
    zf_preheat_job_reported (held->job, &held->batch, false);
    if (streq (updated->verdict, "cancelled"))
        s_release (held, true, "cancelled");
    else if (streq (updated->verdict, "done"))
        s_release (held, true, "it ended elsewhere");
    else //  lost: another worker may hold it now; its entry is not ours to acknowledge
        s_release (held, false, "lost: the manager gave it to another worker");
}

static void s_send_update (s_held_t *held)
{
    self_t *self = held->worker;
    const char *state = "running", *error = "";
    bool ended = zf_preheat_job_ended (held->job, &state, &error);
    zf_preheat_job_changes (held->job, S_BATCH_MAX, &held->batch);
    //  The end goes with the last of the changes, never ahead of them.
    bool final = ended && !held->batch.more;
    zf_msg_job_update_t update = {
        .job_id = (uint64_t) held->id,
        .worker = self->worker,
        .attempt = (uint64_t) zf_preheat_job_attempt (held->job),
        .state = (char *) (final ? state : "running"),
        .error = (char *) (final ? error : ""),
        .images = {.items = held->batch.images, .count = held->batch.image_count},
        .tasks_total = held->batch.tasks_total,
        .tasks = {.items = held->batch.tasks, .count = held->batch.count},
    };
    zf_bus_call_t call = {.timeout_ms = S_CALL_TIMEOUT_MS, .retries = 1};
    zf_error_t err;
    if (zf_bus_request (self->bus, self->config->manager, &zf_msg_job_update, &update, NULL, call,
                        s_on_updated, held, &err)
        != ZF_OK) {
        zf_preheat_job_reported (held->job, &held->batch, false);
        held->next_call = zf_clock_mono_ms () + S_RETRY_MS;
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
        zf_warning_limited (&limit, self->name, "job %" PRId64 ": %s", held->id, err.message);
        return;
    }
    held->in_flight = true;
    held->final_out = final;
}

//  ---------------------------------------------------------------------------------------------
//  The lease

//  False when the job is not this worker's any more (it was released).
static bool s_keep_lease (s_held_t *held, int64_t now)
{
    self_t *self = held->worker;
    if (!self->stream) {
        //  The manager's queue: silent toward it for a lease, the job went to another worker.
        if (held->phase != S_STARTING && now - held->last_report > self->config->lease_ms) {
            s_release (held, false, "no report reached the manager for a lease");
            return false;
        }
        return true;
    }
    if (now < held->next_renew)
        return true;
    held->next_renew = now + self->config->lease_ms / 3;
    bool own = false;
    zf_error_t err;
    if (zf_job_stream_renew (self->stream, held->queue_ref, &own, &err) == ZF_OK) {
        if (!own) {
            s_release (held, false, "its queue entry belongs to another worker now");
            return false;
        }
        held->last_renew = now;
        return true;
    }
    if (now - held->last_renew > self->config->lease_ms / 2) {
        //  Another worker may claim it once Redis is back; stop before that can happen.
        s_release (held, false, "Redis out of reach for half a lease");
        return false;
    }
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
    zf_warning_limited (&limit, self->name, "job %" PRId64 ": %s", held->id, err.message);
    return true;
}

//  ---------------------------------------------------------------------------------------------
//  Taking jobs

static s_held_t *s_hold (self_t *self, int64_t id, const char *queue_ref)
{
    for (s_held_t *item = zlistx_first (self->held); item; item = zlistx_next (self->held))
        if (item->id == id)
            return NULL; //  already ours (a duplicate entry): the manager sorts it out later
    s_held_t *held = zf_calloc (1, sizeof *held);
    held->worker = self;
    held->id = id;
    zf_strlcpy (held->queue_ref, queue_ref, sizeof held->queue_ref);
    held->phase = S_STARTING;
    held->last_renew = zf_clock_mono_ms ();
    held->next_renew = held->last_renew + self->config->lease_ms / 3;
    zlistx_add_end (self->held, held);
    zf_gauge_set (self->jobs_gauge, (double) zlistx_size (self->held));
    zf_info (self->name, "job %" PRId64 " taken%s%s", id, *queue_ref ? " entry=" : "", queue_ref);
    s_send_start (held);
    return held;
}

static void s_on_offer (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    self_t *self = arg;
    self->take_out = false;
    int64_t now = zf_clock_mono_ms ();
    if (status != ZF_OK || !streq (reply->env.type, ZF_MSG_JOB_OFFER)) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (3, 60000);
        zf_warning_limited (&limit, self->name, "no job from %s: %s", self->config->manager,
                            err ? err->message : reply->env.type);
        self->next_take = now + S_RETRY_MS;
        return;
    }
    const zf_msg_job_offer_t *offer = reply->env.body;
    if (offer->job_id)
        s_hold (self, (int64_t) offer->job_id, "");
    self->next_take = 0;
}

static void s_take (self_t *self, int64_t now)
{
    while ((int64_t) zlistx_size (self->held) < self->config->jobs && !self->take_out
           && now >= self->next_take) {
        if (!self->stream) {
            zf_msg_job_take_t take = {.worker = self->worker, .wait_ms = S_TAKE_WAIT_MS};
            zf_bus_call_t call = {.timeout_ms = S_TAKE_WAIT_MS + S_CALL_TIMEOUT_MS, .retries = 0};
            zf_error_t err;
            if (zf_bus_request (self->bus, self->config->manager, &zf_msg_job_take, &take, NULL,
                                call, s_on_offer, self, &err)
                != ZF_OK) {
                self->next_take = now + S_RETRY_MS;
                return;
            }
            self->take_out = true;
            return;
        }
        int64_t id = 0;
        bool reclaimed = false;
        char ref[ZF_JOB_STREAM_REF_MAX];
        zf_error_t err;
        if (zf_job_stream_take (self->stream, self->config->lease_ms, &id, ref, &reclaimed, &err)
            != ZF_OK) {
            static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (3, 60000);
            zf_warning_limited (&limit, self->name, "no job from the queue: %s", err.message);
            self->next_take = now + S_RETRY_MS;
            return;
        }
        if (!*ref) {
            self->next_take = now + S_TICK_MS; //  nothing waits: look again next tick
            return;
        }
        if (reclaimed)
            zf_notice (self->name, "job %" PRId64 " reclaimed from a silent worker entry=%s", id,
                       ref);
        if (id == 0) { //  not a job entry
            zf_job_stream_ack (self->stream, ref, &err);
            continue;
        }
        s_hold (self, id, ref);
    }
}

//  ---------------------------------------------------------------------------------------------
//  The loop

static int s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    int64_t now = zf_clock_mono_ms ();
    //  A job released on the way leaves the list: walk a copy of it.
    size_t count = zlistx_size (self->held);
    s_held_t **list = zf_calloc (count + 1, sizeof *list);
    size_t used = 0;
    for (s_held_t *item = zlistx_first (self->held); item; item = zlistx_next (self->held))
        list[used++] = item;
    for (size_t index = 0; index < used; index++) {
        s_held_t *held = list[index];
        if (!s_keep_lease (held, now))
            continue;
        if (held->phase == S_RUNNING && held->job)
            zf_preheat_job_tick (held->job, now);
        if (held->in_flight || now < held->next_call)
            continue;
        if (held->phase == S_STARTING) {
            s_send_start (held);
            continue;
        }
        const char *state, *error;
        if (held->phase == S_RUNNING && zf_preheat_job_ended (held->job, &state, &error))
            held->phase = S_FINISHING;
        //  The end goes at once (it frees the worker for the next job: small jobs waited up to
        //  a report interval for it); progress no more often than S_REPORT_MS.
        if (held->phase == S_FINISHING
            || (now >= held->next_report
                && (zf_preheat_job_dirty (held->job)
                    || now - held->last_report >= self->config->lease_ms / 3)))
            s_send_update (held);
    }
    zf_free (list);
    s_take (self, now);
    return 0;
}

//  The tick's work at the next turn of the loop, for what should not wait up to a tick (each
//  wait held a small job up to 100 ms, and the queue bench's jobs are a few ticks long): a job
//  the manager just handed over (its tasks go out), a job that ended (its end is reported),
//  room for another job (it is taken). A timer, not a call, so that nothing runs inside the
//  callback that asked for it.
static int s_on_soon (zloop_t *loop, int timer_id, void *arg)
{
    self_t *self = arg;
    self->soon_timer = -1;
    return s_on_tick (loop, timer_id, arg);
}

static void s_tick_soon (self_t *self)
{
    if (self->soon_timer < 0)
        self->soon_timer = zloop_timer (self->loop, 1, 1, s_on_soon, self);
}

static void s_job_ended (void *arg)
{
    s_tick_soon (arg);
}

static void s_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg)
{
    (void) arg;
    zf_resolver_curl_done (easy, result, easy_private);
}

static void s_held_destroy (void **item)
{
    s_held_t *held = *item;
    if (held) {
        if (held->batch.tasks && held->job)
            zf_preheat_job_reported (held->job, &held->batch, false);
        zf_preheat_job_destroy (&held->job);
        zf_free (held);
    }
    *item = NULL;
}

void zf_preheat_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    self_t self = {
        .name = actor->name, .config = actor->config, .node = actor->node, .soon_timer = -1};
    zf_error_t err;
    bool valid = !*self.config->queue || zf_job_stream_url_valid (self.config->queue, &err);
    if (!valid)
        zf_error_prefix (&err, "[preheat] queue");
    self.bus = valid ? zf_bus_new (actor->node, actor->name, NULL, NULL, &err) : NULL;
    zsock_signal (pipe, 0);
    if (!self.bus) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        return;
    }
    uint16_t tag = 0;
    ZF_ASSERT (RAND_bytes ((unsigned char *) &tag, sizeof tag) == 1);
    snprintf (self.worker, sizeof self.worker, "%s@%s#%04x", self.name, zf_node_name (actor->node),
              (unsigned) tag);
    if (*self.config->queue)
        self.stream = zf_job_stream_new (self.config->queue, self.worker, &err);
    curl_global_init (CURL_GLOBAL_DEFAULT);
    self.loop = zloop_new ();
    zloop_set_nonstop (self.loop, true);
    zloop_reader (self.loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (self.bus, self.loop);
    self.curl = zf_curl_loop_new (self.loop, s_curl_done, &self);
    const zf_upstream_config_t *upstream =
        actor->upstream ? actor->upstream : zf_upstream_defaults ();
    self.settings = (zf_preheat_settings_t){
        .concurrency = self.config->concurrency,
        .timeout_ms = self.config->timeout_ms,
        .retries = self.config->retries,
        .retry_delay_ms = self.config->retry_delay_ms,
        .poll_ms = self.config->poll_ms,
        .request_timeout_ms = self.config->request_timeout_ms,
        .plain_http = self.config->plain_http,
        //  [upstream]: how this node reaches registries (split DNS, a private CA), as the
        //  fetcher and the proxy do
        .upstream_ca = *upstream->ca ? upstream->ca : NULL,
        .connect_to = zf_upstream_connect_to (upstream),
    };
    self.env = (zf_preheat_env_t){
        .name = self.name,
        .node = actor->node,
        .bus = self.bus,
        .loop = self.loop,
        .curl = self.curl,
        .settings = &self.settings,
        .tasks_succeeded = zf_metrics_counter ("zfly_preheat_tasks_total",
                                               "Preheat tasks (a blob on a host) that ended, by "
                                               "result",
                                               "result", "success", NULL),
        .tasks_failed = zf_metrics_counter ("zfly_preheat_tasks_total",
                                            "Preheat tasks (a blob on a host) that ended, by "
                                            "result",
                                            "result", "failure", NULL),
        .task_retries = zf_metrics_counter ("zfly_preheat_task_retries_total",
                                            "Preheat tasks tried again after a failure", NULL),
        .bytes = zf_metrics_counter ("zfly_preheat_bytes_total",
                                     "Bytes of the blobs preheat tasks put on hosts", NULL),
        .ended = s_job_ended,
        .ended_arg = &self,
    };
    self.jobs_gauge =
        zf_metrics_gauge ("zfly_preheat_worker_jobs", "Preheat jobs this worker holds", NULL);
    self.held = zlistx_new ();
    zlistx_set_destructor (self.held, s_held_destroy);
    int timer = zloop_timer (self.loop, S_TICK_MS, 0, s_on_tick, &self);
    zf_notice (self.name, "started worker=%s queue=%s manager=%s jobs=%" PRId64, self.worker,
               *self.config->queue ? self.config->queue : "the manager's", self.config->manager,
               self.config->jobs);
    zstr_send (pipe, "READY");
    zloop_start (self.loop);

    zloop_timer_end (self.loop, timer);
    zf_info (self.name, "stopped jobs=%zu", zlistx_size (self.held));
    zlistx_destroy (&self.held); //  jobs forget their requests and transfers first
    zf_curl_loop_destroy (&self.curl);
    zf_bus_destroy (&self.bus);
    zloop_destroy (&self.loop);
    curl_slist_free_all (self.settings.connect_to);
    zf_job_stream_destroy (&self.stream);
    curl_global_cleanup ();
}
