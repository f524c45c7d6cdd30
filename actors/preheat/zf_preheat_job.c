/*  zf_preheat_job.c — one preheat job: resolution, the (blob, host) tasks, retries, the end. */
#include "zf_preheat_job.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_resolver.h"
#include "zf_secret.h"
#include <xxhash.h>

#define S_RETRY_DELAY_MAX  60000
#define S_FETCH_TIMEOUT_MS 10000
#define S_DESCRIPTION_MAX  1024
#define S_ERROR_MAX        2048
#define S_TASKS_MAX        100000 //  blobs x hosts of one job
//  A running task is asked again after this, then after twice as long each time up to the poll
//  setting: a small blob is done within a tick or two (and its job's worker free for the
//  next), where asking only every poll (500 ms) held each small job for that long.
#define S_POLL_FIRST_MS 100

typedef enum { S_PENDING, S_RUNNING, S_SUCCESS, S_FAILURE } s_state_t;

static const char *const s_state_words[] = {"pending", "running", "success", "failure"};

typedef struct {
    char *url;
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    char *authorization; //  for the fetchers; secret
    size_t first_task, task_count;
    bool started; //  its tasks run (counts against the concurrency)
    bool ended;
} s_blob_t;

typedef struct {
    zf_preheat_job_t *job;
    size_t blob;
    const zf_rec_job_target_t *target;
    char route[160]; //  "fetcher@HOST"
    s_state_t state;
    char description[S_DESCRIPTION_MAX];
    uint64_t content_length, bytes_done;
    uint64_t attempts;
    bool fetched;                      //  task.fetch was taken: follow with task.query
    char task_id[ZF_TASK_ID_SIZE + 1]; //  as the fetcher computed it
    bool in_flight;                    //  a request is out
    int64_t next_at;
    int64_t poll_ms; //  the wait before the next task.query (0: none yet)
    uint64_t version, reported;
} s_task_t;

typedef struct {
    zf_resolver_t *resolver;
    int64_t attempts;
    int64_t retry_at; //  0: running or done
    bool done;
} s_resolution_t;

struct zf_preheat_job_s {
    zf_preheat_env_t *env;
    int64_t id, attempt;
    bool image;
    char **urls;
    size_t url_count;
    char *platform, *scope;
    int64_t concurrency, retries;
    int64_t deadline;
    zf_rec_http_header_t *headers; //  copies; secret values
    size_t header_count;
    char *username, *password;
    zf_rec_job_target_t *targets; //  copies
    size_t target_count;
    s_resolution_t *resolutions;
    size_t resolved;
    char **images;
    size_t image_count;
    s_blob_t *blobs;
    size_t blob_count;
    s_task_t *tasks;
    size_t task_count;
    bool running; //  resolved: tasks go
    bool ended;
    char end_state[16];
    char error[S_ERROR_MAX];
};

//  ---------------------------------------------------------------------------------------------
//  The end

static void s_end (zf_preheat_job_t *self, bool success, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static void s_end (zf_preheat_job_t *self, bool success, const char *fmt, ...)
{
    if (self->ended)
        return;
    self->ended = true;
    zf_strlcpy (self->end_state, success ? "success" : "failure", sizeof self->end_state);
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->error, sizeof self->error, fmt, args);
    va_end (args);
    for (size_t index = 0; index < self->task_count; index++)
        zf_bus_forget (self->env->bus, &self->tasks[index]);
    zf_info (self->env->name, "job %" PRId64 " ended %s%s%s", self->id, self->end_state,
             *self->error ? ": " : "", self->error);
    if (self->env->ended)
        self->env->ended (self->env->ended_arg);
}

static void s_task_touch (s_task_t *task)
{
    task->version++;
}

static void s_task_final (s_task_t *task, s_state_t state)
{
    zf_preheat_job_t *self = task->job;
    task->state = state;
    task->in_flight = false;
    if (state == S_SUCCESS) {
        task->bytes_done = task->content_length;
        task->description[0] = '\0';
        zf_counter_add (self->env->tasks_succeeded, 1);
        zf_counter_add (self->env->bytes, task->content_length);
    } else
        zf_counter_add (self->env->tasks_failed, 1);
    s_task_touch (task);
    zf_debug (self->env->name, "job %" PRId64 " task %s on %s: %s%s%s", self->id,
              self->blobs[task->blob].digest[0] ? self->blobs[task->blob].digest
                                                : self->blobs[task->blob].url,
              task->target->host, s_state_words[state], *task->description ? ": " : "",
              task->description);
}

//  Every task ended: success when each one succeeded.
static void s_check_end (zf_preheat_job_t *self)
{
    if (!self->running || self->ended)
        return;
    size_t failed = 0;
    const s_task_t *first_failure = NULL;
    for (size_t index = 0; index < self->task_count; index++) {
        const s_task_t *task = &self->tasks[index];
        if (task->state == S_PENDING || task->state == S_RUNNING)
            return;
        if (task->state == S_FAILURE && !failed++)
            first_failure = task;
    }
    if (!failed) {
        s_end (self, true, "%s", "");
        return;
    }
    const s_blob_t *blob = &self->blobs[first_failure->blob];
    s_end (self, false, "%zu of %zu tasks failed; %s on %s: %s", failed, self->task_count,
           *blob->digest ? blob->digest : blob->url, first_failure->target->host,
           first_failure->description);
}

//  ---------------------------------------------------------------------------------------------
//  Tasks: task.fetch, then task.query until the fetcher says complete or failed

static int64_t s_backoff (zf_preheat_job_t *self, uint64_t attempts)
{
    int64_t delay = self->env->settings->retry_delay_ms;
    for (uint64_t step = 1; step < attempts && delay < S_RETRY_DELAY_MAX; step++)
        delay *= 2;
    return delay < S_RETRY_DELAY_MAX ? delay : S_RETRY_DELAY_MAX;
}

//  A failed attempt: again after a delay, or the task failed for good.
static void s_task_attempt_failed (s_task_t *task, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
static void s_task_attempt_failed (s_task_t *task, const char *fmt, ...)
{
    zf_preheat_job_t *self = task->job;
    va_list args;
    va_start (args, fmt);
    vsnprintf (task->description, sizeof task->description, fmt, args);
    va_end (args);
    task->in_flight = false;
    task->fetched = false;
    task->poll_ms = 0;
    if ((int64_t) task->attempts > self->retries) {
        s_task_final (task, S_FAILURE);
        return;
    }
    zf_counter_add (self->env->task_retries, 1);
    task->next_at = zf_clock_mono_ms () + s_backoff (self, task->attempts);
    s_task_touch (task);
}

//  What the fetcher says of the task.
static void s_task_status (s_task_t *task, const zf_msg_task_status_t *status)
{
    zf_preheat_job_t *self = task->job;
    task->in_flight = false;
    task->fetched = true;
    zf_strlcpy (task->task_id, status->task_id, sizeof task->task_id);
    if (status->content_length)
        task->content_length = status->content_length;
    uint64_t done = status->finished_count * status->piece_length;
    if (done > task->content_length)
        done = task->content_length;
    if (done != task->bytes_done) {
        task->bytes_done = done;
        s_task_touch (task);
    }
    if (streq (status->state, "complete")) {
        s_task_final (task, S_SUCCESS);
        s_check_end (self);
    } else if (streq (status->state, "failed")) {
        s_task_attempt_failed (task, "%s: %s", *status->error_code ? status->error_code : "failed",
                               *status->error_message ? status->error_message
                                                      : "the fetcher gave no reason");
        s_check_end (self);
    } else {
        int64_t most = self->env->settings->poll_ms;
        task->poll_ms = task->poll_ms ? task->poll_ms * 2 : S_POLL_FIRST_MS;
        if (task->poll_ms > most)
            task->poll_ms = most;
        task->next_at = zf_clock_mono_ms () + task->poll_ms;
    }
}

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    s_task_t *task = arg;
    zf_preheat_job_t *self = task->job;
    if (status == ZF_OK && streq (reply->env.type, ZF_MSG_TASK_STATUS)) {
        s_task_status (task, reply->env.body);
        return;
    }
    //  The fetcher forgot the task (it restarted, or dropped finished tasks): fetch it again;
    //  its storage knows whether the blob is there.
    if (task->fetched && zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND) {
        task->in_flight = false;
        task->fetched = false;
        task->next_at = zf_clock_mono_ms ();
        return;
    }
    if (zf_bus_error_code (status, reply) == ZF_CODE_INVALID) {
        //  The fetcher refuses the request itself: asking again changes nothing.
        snprintf (task->description, sizeof task->description, "the fetcher refused: %s",
                  err ? err->message : "invalid");
        s_task_final (task, S_FAILURE);
        s_check_end (self);
        return;
    }
    s_task_attempt_failed (task, "cannot reach the fetcher of %s: %s", task->target->host,
                           err ? err->message : "no answer");
    s_check_end (self);
}

static void s_task_send (s_task_t *task)
{
    zf_preheat_job_t *self = task->job;
    const s_blob_t *blob = &self->blobs[task->blob];
    zf_error_t err;
    zf_status_t status;
    zf_bus_call_t call = {.timeout_ms = S_FETCH_TIMEOUT_MS, .retries = 1};
    if (task->fetched) {
        zf_msg_task_query_t query = {.task_id = task->task_id};
        status = zf_bus_request (self->env->bus, task->route, &zf_msg_task_query, &query, NULL,
                                 call, s_on_reply, task, &err);
    } else {
        zf_rec_http_header_t headers[66];
        size_t count = 0;
        if (blob->authorization)
            headers[count++] =
                (zf_rec_http_header_t){.name = "Authorization", .value = blob->authorization};
        for (size_t index = 0; index < self->header_count && count < ZF_ARRAY_LEN (headers);
             index++)
            if (!self->image || strcasecmp (self->headers[index].name, "Authorization") != 0)
                headers[count++] = self->headers[index];
        zf_msg_task_fetch_t fetch = {.url = blob->url,
                                     .digest = (char *) blob->digest,
                                     .tag = "",
                                     .application = "",
                                     .headers = {.items = headers, .count = count}};
        task->attempts++;
        status = zf_bus_request (self->env->bus, task->route, &zf_msg_task_fetch, &fetch, NULL,
                                 call, s_on_reply, task, &err);
        if (task->state == S_PENDING) {
            task->state = S_RUNNING;
            s_task_touch (task);
        }
    }
    if (status != ZF_OK) {
        s_task_attempt_failed (task, "cannot send to the fetcher of %s: %s", task->target->host,
                               err.message);
        return;
    }
    task->in_flight = true;
    task->next_at = 0;
}

//  Starts blobs up to the concurrency and sends what is due.
static void s_run_tasks (zf_preheat_job_t *self, int64_t now)
{
    size_t active = 0;
    for (size_t index = 0; index < self->blob_count; index++) {
        s_blob_t *blob = &self->blobs[index];
        if (blob->started && !blob->ended) {
            bool ended = true;
            for (size_t position = 0; position < blob->task_count; position++) {
                s_state_t state = self->tasks[blob->first_task + position].state;
                ended = ended && (state == S_SUCCESS || state == S_FAILURE);
            }
            blob->ended = ended;
        }
        if (!blob->started && active < (size_t) self->concurrency)
            blob->started = true;
        if (blob->started && !blob->ended)
            active++;
    }
    for (size_t index = 0; index < self->task_count && !self->ended; index++) {
        s_task_t *task = &self->tasks[index];
        if (!self->blobs[task->blob].started || task->in_flight || task->state == S_SUCCESS
            || task->state == S_FAILURE || task->next_at > now)
            continue;
        s_task_send (task);
    }
    s_check_end (self);
}

//  ---------------------------------------------------------------------------------------------
//  From resolved blobs to tasks

//  single_seed_peer: the cluster's seed that scores highest for this blob.
static uint64_t s_score (const char *blob, const char *host)
{
    XXH64_state_t *state = XXH64_createState ();
    XXH64_reset (state, 0);
    XXH64_update (state, blob, strlen (blob) + 1);
    XXH64_update (state, host, strlen (host));
    uint64_t score = XXH64_digest (state);
    XXH64_freeState (state);
    return score;
}

static void s_add_task (zf_preheat_job_t *self, size_t blob, const zf_rec_job_target_t *target)
{
    ZF_ASSERT (self->task_count < S_TASKS_MAX);
    self->tasks = zf_realloc (self->tasks, (self->task_count + 1) * sizeof *self->tasks);
    s_task_t *task = &self->tasks[self->task_count++];
    memset (task, 0, sizeof *task);
    task->job = self;
    task->blob = blob;
    task->target = target;
    snprintf (task->route, sizeof task->route, "fetcher@%s", target->host);
    task->version = 1;
}

static void s_add_blob (zf_preheat_job_t *self, const char *url, const char *digest, uint64_t size,
                        const char *authorization)
{
    for (size_t index = 0; index < self->blob_count; index++)
        if (*digest ? streq (self->blobs[index].digest, digest)
                    : streq (self->blobs[index].url, url))
            return; //  two images share a layer: once
    self->blobs = zf_realloc (self->blobs, (self->blob_count + 1) * sizeof *self->blobs);
    s_blob_t *blob = &self->blobs[self->blob_count++];
    memset (blob, 0, sizeof *blob);
    blob->url = zf_strdup (url);
    zf_strlcpy (blob->digest, digest, sizeof blob->digest);
    blob->authorization = authorization ? zf_strdup (authorization) : NULL;
    (void) size;
}

//  Tasks of every blob, by scope. Pointers into self->tasks are taken only after this.
static bool s_plan (zf_preheat_job_t *self)
{
    if (self->target_count == 0) {
        s_end (self, false,
               streq (self->scope, "all_peers")
                   ? "no host with a fetcher endpoint in the job's clusters (all_peers needs "
                     "nodes whose [fetcher] binds tcp://)"
                   : "no active seed peer in the job's clusters (scope %s)",
               self->scope);
        return false;
    }
    bool single = streq (self->scope, "single_seed_peer");
    if (self->blob_count * self->target_count > S_TASKS_MAX) {
        s_end (self, false, "%zu blobs on %zu hosts: more than %d tasks", self->blob_count,
               self->target_count, S_TASKS_MAX);
        return false;
    }
    for (size_t blob = 0; blob < self->blob_count; blob++) {
        self->blobs[blob].first_task = self->task_count;
        const char *key =
            *self->blobs[blob].digest ? self->blobs[blob].digest : self->blobs[blob].url;
        for (size_t index = 0; index < self->target_count; index++) {
            const zf_rec_job_target_t *target = &self->targets[index];
            if (!single) {
                s_add_task (self, blob, target);
                continue;
            }
            //  the best seed of this target's cluster: add it when this is the one
            bool best = true;
            uint64_t score = s_score (key, target->host);
            for (size_t other = 0; other < self->target_count && best; other++)
                if (other != index && self->targets[other].cluster_id == target->cluster_id) {
                    uint64_t rival = s_score (key, self->targets[other].host);
                    best = score > rival || (score == rival && index < other);
                }
            if (best)
                s_add_task (self, blob, target);
        }
        self->blobs[blob].task_count = self->task_count - self->blobs[blob].first_task;
    }
    //  Learn every fetcher's route (endpoint and key from the manager).
    for (size_t index = 0; index < self->target_count; index++) {
        const zf_rec_job_target_t *target = &self->targets[index];
        char route[160];
        snprintf (route, sizeof route, "fetcher@%s", target->host);
        zf_error_t err;
        if (zf_node_learn_route (self->env->node, route, target->fetcher, NULL, target->key, &err)
                != ZF_OK
            && err.code != ZF_E_INVALID) //  a route the INI file or the process fixes stays
            zf_warning (self->env->name, "job %" PRId64 ": route %s: %s", self->id, route,
                        err.message);
    }
    self->running = true;
    zf_info (self->env->name, "job %" PRId64 " runs blobs=%zu hosts=%zu tasks=%zu scope=%s",
             self->id, self->blob_count, self->target_count, self->task_count, self->scope);
    return true;
}

//  ---------------------------------------------------------------------------------------------
//  Resolution

static bool s_transient (zf_status_t code)
{
    return code == ZF_E_UNREACHABLE || code == ZF_E_TIMEOUT || code == ZF_E_REMOTE;
}

static void s_resolved (zf_resolver_t *resolver, void *arg);

static bool s_plain_http (zf_preheat_job_t *self, const char *url)
{
    //  a reference's host, up to the first '/'
    const char *list = self->env->settings->plain_http;
    if (!list || !*list || strstr (url, "://"))
        return false;
    size_t host_length = strcspn (url, "/");
    const char *cursor = list;
    while (*cursor) {
        cursor += strspn (cursor, " \t");
        size_t length = strcspn (cursor, " \t");
        if (length && length == host_length && strncmp (cursor, url, length) == 0)
            return true;
        cursor += length;
    }
    return false;
}

static void s_resolve (zf_preheat_job_t *self, size_t index)
{
    s_resolution_t *resolution = &self->resolutions[index];
    const char *lines[64];
    char *owned[64];
    size_t count = 0;
    for (size_t position = 0; position < self->header_count && count < 64; position++) {
        owned[count] =
            zf_asprintf ("%s: %s", self->headers[position].name, self->headers[position].value);
        lines[count] = owned[count];
        count++;
    }
    zf_resolve_request_t request = {
        .url = self->urls[index],
        .platform = self->platform,
        .scheme = s_plain_http (self, self->urls[index]) ? "http" : "https",
        .headers = lines,
        .header_count = count,
        .username = self->username,
        .password = self->password,
        .connect_to = self->env->settings->connect_to,
        .ca_file = self->env->settings->upstream_ca,
        .timeout_ms = self->env->settings->request_timeout_ms,
    };
    zf_error_t err;
    resolution->attempts++;
    resolution->retry_at = 0;
    resolution->resolver = zf_resolver_new (self->env->curl, &request, s_resolved, self, &err);
    for (size_t position = 0; position < count; position++)
        zf_secret_free (owned[position]);
    if (!resolution->resolver)
        s_end (self, false, "%s", err.message);
}

static void s_resolved (zf_resolver_t *resolver, void *arg)
{
    zf_preheat_job_t *self = arg;
    size_t index = 0;
    while (index < self->url_count && self->resolutions[index].resolver != resolver)
        index++;
    ZF_ASSERT (index < self->url_count);
    s_resolution_t *resolution = &self->resolutions[index];
    zf_error_t err;
    zf_status_t status = zf_resolver_result (resolver, &err);
    if (status != ZF_OK) {
        zf_resolver_destroy (&resolution->resolver);
        if (s_transient (status) && resolution->attempts <= self->retries) {
            resolution->retry_at =
                zf_clock_mono_ms () + s_backoff (self, (uint64_t) resolution->attempts);
            zf_info (self->env->name, "job %" PRId64 " resolve again in %" PRId64 " ms: %s",
                     self->id, resolution->retry_at - zf_clock_mono_ms (), err.message);
            return;
        }
        s_end (self, false, "%s", err.message);
        return;
    }
    size_t count = zf_resolver_blob_count (resolver);
    for (size_t position = 0; position < count; position++) {
        const zf_resolved_blob_t *blob = zf_resolver_blob (resolver, position);
        s_add_blob (self, blob->url, blob->digest, blob->size,
                    zf_resolver_authorization (resolver));
    }
    self->images = zf_realloc (self->images, (self->image_count + 1) * sizeof (char *));
    self->images[self->image_count++] = zf_asprintf (
        "%s@%s (%zu blobs%s%s)", zf_resolver_image (resolver), zf_resolver_digest (resolver), count,
        streq (self->platform, "all") ? "" : ", ",
        streq (self->platform, "all") ? "" : self->platform);
    zf_info (self->env->name, "job %" PRId64 " resolved %s", self->id,
             self->images[self->image_count - 1]);
    zf_resolver_destroy (&resolution->resolver);
    resolution->done = true;
    if (++self->resolved == self->url_count && s_plan (self))
        s_run_tasks (self, zf_clock_mono_ms ());
}

//  ---------------------------------------------------------------------------------------------
//  The job

void zf_preheat_job_tick (zf_preheat_job_t *self, int64_t now)
{
    if (self->ended)
        return;
    if (now >= self->deadline) {
        for (size_t index = 0; index < self->task_count; index++) {
            s_task_t *task = &self->tasks[index];
            if (task->state == S_PENDING || task->state == S_RUNNING) {
                snprintf (task->description, sizeof task->description, "the job's deadline passed");
                s_task_final (task, S_FAILURE);
            }
        }
        s_end (self, false, "the job did not finish within its timeout");
        return;
    }
    for (size_t index = 0; index < self->url_count && !self->ended; index++)
        if (self->resolutions[index].retry_at && now >= self->resolutions[index].retry_at)
            s_resolve (self, index);
    if (self->running)
        s_run_tasks (self, now);
}

zf_preheat_job_t *zf_preheat_job_new (zf_preheat_env_t *env, const zf_msg_job_started_t *started)
{
    const zf_preheat_settings_t *settings = env->settings;
    zf_preheat_job_t *self = zf_calloc (1, sizeof *self);
    self->env = env;
    self->id = (int64_t) started->job_id;
    self->attempt = (int64_t) started->attempt;
    self->image = !streq (started->type, "file");
    self->url_count = started->urls.count;
    self->urls = zf_calloc (self->url_count + 1, sizeof (char *));
    for (size_t index = 0; index < self->url_count; index++)
        self->urls[index] = zf_strdup (((char **) started->urls.items)[index]);
    self->platform = zf_strdup (*started->platform ? started->platform : "linux/amd64");
    self->scope = zf_strdup (*started->scope ? started->scope : "single_seed_peer");
    self->concurrency =
        started->concurrency ? (int64_t) started->concurrency : settings->concurrency;
    self->retries = settings->retries;
    int64_t timeout = started->timeout_ms ? (int64_t) started->timeout_ms : settings->timeout_ms;
    self->deadline = zf_clock_mono_ms () + timeout;
    self->header_count = started->headers.count;
    self->headers = zf_calloc (self->header_count + 1, sizeof *self->headers);
    const zf_rec_http_header_t *headers = started->headers.items;
    for (size_t index = 0; index < self->header_count; index++) {
        self->headers[index].name = zf_strdup (headers[index].name);
        self->headers[index].value = zf_strdup (headers[index].value);
    }
    self->username = *started->username ? zf_strdup (started->username) : NULL;
    self->password = *started->username ? zf_strdup (started->password) : NULL;
    self->target_count = started->targets.count;
    self->targets = zf_calloc (self->target_count + 1, sizeof *self->targets);
    const zf_rec_job_target_t *targets = started->targets.items;
    for (size_t index = 0; index < self->target_count; index++) {
        self->targets[index] = targets[index];
        self->targets[index].host = zf_strdup (targets[index].host);
        self->targets[index].address = zf_strdup (targets[index].address);
        self->targets[index].fetcher = zf_strdup (targets[index].fetcher);
        self->targets[index].key = zf_strdup (targets[index].key);
    }
    self->resolutions = zf_calloc (self->url_count + 1, sizeof *self->resolutions);
    zf_info (env->name,
             "job %" PRId64 " attempt=%" PRId64 " type=%s urls=%zu platform=%s scope=%s "
             "targets=%zu",
             self->id, self->attempt, self->image ? "image" : "file", self->url_count,
             self->image ? self->platform : "-", self->scope, self->target_count);
    if (self->url_count == 0) {
        s_end (self, false, "the job has no URL");
        return self;
    }
    if (self->image) {
        for (size_t index = 0; index < self->url_count && !self->ended; index++)
            s_resolve (self, index);
        return self;
    }
    //  Files: each URL is a task of its own, keyed by its URL, with the job's headers.
    for (size_t index = 0; index < self->url_count; index++)
        s_add_blob (self, self->urls[index], "", 0, NULL);
    self->resolved = self->url_count;
    if (s_plan (self))
        s_run_tasks (self, zf_clock_mono_ms ());
    return self;
}

void zf_preheat_job_destroy (zf_preheat_job_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_preheat_job_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->task_count; index++)
        zf_bus_forget (self->env->bus, &self->tasks[index]);
    for (size_t index = 0; index < self->url_count; index++) {
        zf_resolver_destroy (&self->resolutions[index].resolver);
        zf_free (self->urls[index]);
    }
    zf_free (self->resolutions);
    zf_free (self->urls);
    for (size_t index = 0; index < self->header_count; index++) {
        zf_free (self->headers[index].name);
        zf_secret_free (self->headers[index].value);
    }
    zf_free (self->headers);
    zf_free (self->username);
    zf_secret_free (self->password);
    for (size_t index = 0; index < self->target_count; index++) {
        zf_free (self->targets[index].host);
        zf_free (self->targets[index].address);
        zf_free (self->targets[index].fetcher);
        zf_free (self->targets[index].key);
    }
    zf_free (self->targets);
    for (size_t index = 0; index < self->blob_count; index++) {
        zf_free (self->blobs[index].url);
        zf_secret_free (self->blobs[index].authorization);
    }
    zf_free (self->blobs);
    zf_free (self->tasks);
    for (size_t index = 0; index < self->image_count; index++)
        zf_free (self->images[index]);
    zf_free (self->images);
    zf_free (self->platform);
    zf_free (self->scope);
    zf_free (self);
    *self_p = NULL;
}

int64_t zf_preheat_job_id (zf_preheat_job_t *self)
{
    return self->id;
}

int64_t zf_preheat_job_attempt (zf_preheat_job_t *self)
{
    return self->attempt;
}

bool zf_preheat_job_ended (zf_preheat_job_t *self, const char **state, const char **error)
{
    if (self->ended) {
        *state = self->end_state;
        *error = self->error;
    }
    return self->ended;
}

bool zf_preheat_job_dirty (zf_preheat_job_t *self)
{
    for (size_t index = 0; index < self->task_count; index++)
        if (self->tasks[index].version > self->tasks[index].reported)
            return true;
    return false;
}

void zf_preheat_job_changes (zf_preheat_job_t *self, size_t max, zf_preheat_batch_t *batch)
{
    memset (batch, 0, sizeof *batch);
    batch->tasks = zf_calloc (max + 1, sizeof *batch->tasks);
    batch->indexes = zf_calloc (max + 1, sizeof *batch->indexes);
    batch->versions = zf_calloc (max + 1, sizeof *batch->versions);
    batch->images = self->images;
    batch->image_count = self->image_count;
    batch->tasks_total = self->task_count;
    for (size_t index = 0; index < self->task_count; index++) {
        s_task_t *task = &self->tasks[index];
        if (task->version <= task->reported)
            continue;
        if (batch->count == max) {
            batch->more = true;
            break;
        }
        const s_blob_t *blob = &self->blobs[task->blob];
        batch->tasks[batch->count] = (zf_rec_job_task_t){
            .url = blob->url,
            .digest = (char *) blob->digest,
            .cluster_id = task->target->cluster_id,
            .host = task->target->host,
            .address = task->target->address,
            .state = (char *) s_state_words[task->state],
            .description = task->description,
            .content_length = task->content_length,
            .bytes_done = task->bytes_done,
            .attempts = task->attempts,
        };
        batch->indexes[batch->count] = index;
        batch->versions[batch->count] = task->version;
        batch->count++;
    }
}

void zf_preheat_job_reported (zf_preheat_job_t *self, zf_preheat_batch_t *batch, bool taken)
{
    for (size_t index = 0; taken && index < batch->count; index++) {
        s_task_t *task = &self->tasks[batch->indexes[index]];
        if (batch->versions[index] > task->reported)
            task->reported = batch->versions[index];
    }
    zf_free (batch->tasks);
    zf_free (batch->indexes);
    zf_free (batch->versions);
    memset (batch, 0, sizeof *batch);
}
