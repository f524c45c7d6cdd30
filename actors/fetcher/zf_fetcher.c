/*  zf_fetcher.c — the actor: the checks of its configuration (zf_fetcher_config.c has the
    keys), the task table, task.fetch and task.query. */
#include "zf_fetcher.h"
#include "zf_fetch_access.h"
#include "zf_fetch_origin.h"
#include "zf_fetch_sched.h"
#include "zf_fetch_task.h"
#include "zf_log.h"
#include <sys/prctl.h>

#define FINISHED_TASKS_KEPT 1024 //  complete/failed tasks remembered for task.query
#define LEAVE_WAIT_MAX_MS   2000 //  a backstop: each host.leave times out sooner (zf_fetch_sched.c)

static bool s_power_of_two (uint64_t value)
{
    return value && (value & (value - 1)) == 0;
}

static bool s_header_is_safe (const zf_rec_http_header_t *header)
{
    //  A CR or LF would let a client smuggle its own request lines to the origin.
    return *header->name && !strpbrk (header->name, "\r\n:") && !strpbrk (header->value, "\r\n");
}

static void s_reply_status (zf_fetch_env_t *env, const zf_bus_return_t *ret, zf_fetch_task_t *task)
{
    zf_msg_task_status_t status;
    zf_fetch_task_status (task, &status);
    zf_bus_reply (env->bus, ret, &zf_msg_task_status, &status, NULL);
}

//  Finished tasks stay for task.query; past a bound the table drops them (running ones stay).
static void s_forget_finished (zf_fetch_env_t *env)
{
    if (zhashx_size (env->tasks) < FINISHED_TASKS_KEPT)
        return;
    zlist_t *finished = zlist_new ();
    for (zf_fetch_task_t *task = zhashx_first (env->tasks); task; task = zhashx_next (env->tasks))
        if (!zf_fetch_task_running (task))
            zlist_append (finished, (void *) zhashx_cursor (env->tasks));
    for (const char *key = zlist_first (finished); key; key = zlist_next (finished))
        zhashx_delete (env->tasks, key);
    zlist_destroy (&finished);
}

//  The actor: the env every task shares, and what only task.fetch needs.
typedef struct {
    zf_fetch_env_t env; //  first: handlers of the task files get &env
    zf_fetch_access_t *access;
    zhashx_t *proofs; //  task generation -> pending_t: tasks whose requester awaits its proof
} fetcher_t;

//  Checks a request's headers and computes its task id (and digest); false having answered
//  an error.
static bool s_request_valid (zf_fetch_env_t *env, const zf_bus_return_t *ret,
                             const zf_msg_task_fetch_t *body, const char *expected_id,
                             char task_id[ZF_TASK_ID_SIZE + 1],
                             char digest[ZF_DIGEST_TEXT_SIZE + 1])
{
    zf_bus_t *bus = env->bus;
    const zf_rec_http_header_t *headers = body->headers.items;
    for (size_t index = 0; index < body->headers.count; index++)
        if (!s_header_is_safe (&headers[index])) {
            zf_bus_reply_error (bus, ret, ZF_E_INVALID, "headers",
                                "header %zu has an empty name, a colon in it or a line break",
                                index);
            return false;
        }
    zf_error_t err;
    if (zf_task_id_compute (body->url, body->digest, body->tag, body->application,
                            env->config->volatile_params, task_id, digest, &err)
        != ZF_OK) {
        zf_bus_reply_error (bus, ret, err.code, err.where, "%s", err.message);
        return false;
    }
    if (expected_id && !streq (expected_id, task_id)) {
        zf_bus_reply_error (bus, ret, ZF_E_INVALID, "body.task_id",
                            "task id %.64s does not match the URL and digest (%.64s)", expected_id,
                            task_id);
        return false;
    }
    return true;
}

//  Starts the task a request names, or joins it when it runs; answers task.status to ret
//  (NULL: nobody; the caller answers).
static void s_ensure_task (zf_fetch_env_t *env, const zf_bus_return_t *ret, const char *from,
                           const zf_msg_task_fetch_t *body, const char *task_id, const char *digest,
                           int64_t length_hint)
{
    zf_fetch_task_t *task = zhashx_lookup (env->tasks, task_id);
    if (task && zf_fetch_task_running (task)) { //  one download per task: join it
        zf_debug (env->name, "task joined task=%.16s from=%s", task_id, from);
        for (size_t index = 0; index < body->parents.count; index++)
            zf_fetch_task_add_parent (task, ((char **) body->parents.items)[index]);
        if (ret)
            s_reply_status (env, ret, task);
        return;
    }
    s_forget_finished (env);
    //  A finished task is fetched anew: storage.stat decides whether it is still complete.
    task = zf_fetch_task_new (env, task_id, digest, body);
    if (length_hint > 0)
        zf_fetch_task_hint_length (task, (uint64_t) length_hint);
    zhashx_update (env->tasks, task_id, task);
    zf_fetch_task_start (task, ret);
}

//  A task.fetch waiting for the origin's word on the caller's access: a question's answer, or
//  the proof its own task brings (then generation names the task, and ask_timer may run).
typedef struct {
    fetcher_t *fetcher;
    zf_bus_return_t ret;
    zf_msg_task_fetch_t body; //  a copy
    char task_id[ZF_TASK_ID_SIZE + 1];
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    int64_t asked_ms;
    uint64_t generation;
    int ask_timer; //  -1: none
} pending_t;

static pending_t *s_pending_new (fetcher_t *fetcher, const zf_bus_return_t *ret,
                                 const zf_msg_task_fetch_t *body, const char *task_id,
                                 const char *digest)
{
    pending_t *pending = zf_calloc (1, sizeof *pending);
    pending->fetcher = fetcher;
    pending->ret = *ret;
    pending->asked_ms = zclock_mono ();
    pending->ask_timer = -1;
    zf_strlcpy (pending->task_id, task_id, sizeof pending->task_id);
    zf_strlcpy (pending->digest, digest, sizeof pending->digest);
    zf_error_t err;
    ZF_ASSERT (zf_schema_copy (zf_msg_task_fetch.body, body, &pending->body, &err) == ZF_OK);
    return pending;
}

static void s_pending_free (void *arg)
{
    pending_t *pending = arg;
    if (pending->ask_timer >= 0)
        zf_timers_end (pending->fetcher->env.timers, pending->ask_timer);
    zf_schema_clear (zf_msg_task_fetch.body, &pending->body);
    zf_free (pending);
}

static void s_proof_free (void **item)
{
    if (*item)
        s_pending_free (*item);
    *item = NULL;
}

//  The origin refused the caller ("denied": the caller asks the origin itself and gets the
//  origin's own answer), or could not be asked ("unverified").
static void s_reply_not_allowed (zf_fetch_env_t *env, const zf_bus_return_t *ret,
                                 zf_fetch_access_verdict_t verdict, const char *why)
{
    zf_bus_reply_code (env->bus, ret,
                       verdict == ZF_FETCH_ACCESS_REFUSED ? ZF_CODE_DENIED : ZF_CODE_UNVERIFIED,
                       "headers", "%s", why);
}

static void s_on_access (zf_fetch_access_verdict_t verdict, const char *why, int64_t content_length,
                         void *arg)
{
    pending_t *pending = arg;
    zf_fetch_env_t *env = &pending->fetcher->env;
    zf_debug (env->name, "access answered task=%.16s ms=%" PRId64 " length=%" PRId64,
              pending->task_id, zclock_mono () - pending->asked_ms, content_length);
    if (verdict == ZF_FETCH_ACCESS_ALLOWED)
        s_ensure_task (env, &pending->ret, pending->ret.from, &pending->body, pending->task_id,
                       pending->digest, content_length);
    else
        s_reply_not_allowed (env, &pending->ret, verdict, why);
    s_pending_free (pending);
}

//  --- a task that proves its requester's access itself -----------------------------------------
//  A cold task goes to the origin with its requester's headers: the origin's answer to its
//  first range is the access proof, and no question is asked (one registry round trip less
//  before the first byte). The requester's task.status waits for it: until then nobody is
//  told the task exists on its behalf, so no byte reaches it. A task that does not take its
//  first bytes from the origin (complete in storage, parents) asks the question instead.

static void s_proof_key (uint64_t generation, char key[24])
{
    snprintf (key, 24, "%" PRIu64, generation);
}

//  A question asked for a task's requester: its own arg, since the pending may be answered
//  (by the task's own first range) and gone before the answer comes.
typedef struct {
    fetcher_t *fetcher;
    uint64_t generation; //  the task's
} asked_t;

static void s_on_asked (zf_fetch_access_verdict_t verdict, const char *why, int64_t content_length,
                        void *arg)
{
    (void) content_length;
    asked_t *asked = arg;
    fetcher_t *fetcher = asked->fetcher;
    zf_fetch_env_t *env = &fetcher->env;
    uint64_t generation = asked->generation;
    zf_free (asked);
    char key[24];
    s_proof_key (generation, key);
    pending_t *pending = zhashx_lookup (fetcher->proofs, key);
    if (!pending)
        return; //  the task's own answer came first, or it failed
    zf_fetch_task_t *task = zhashx_lookup (env->tasks, pending->task_id);
    bool same_run = task && zf_fetch_task_generation (task) == generation;
    if (verdict == ZF_FETCH_ACCESS_ALLOWED && same_run)
        zf_fetch_task_grant (task);                 //  it may take pieces now
    if (verdict == ZF_FETCH_ACCESS_ALLOWED && task) //  another run of the task is the same content
        s_reply_status (env, &pending->ret, task);
    else if (verdict == ZF_FETCH_ACCESS_ALLOWED)
        zf_bus_reply_code (env->bus, &pending->ret, ZF_CODE_UNVERIFIED, "task_id",
                           "task %.64s ended while the origin was asked", pending->task_id);
    else
        s_reply_not_allowed (env, &pending->ret, verdict, why);
    zhashx_delete (fetcher->proofs, key);
    //  The task was made for this caller alone: refused, it stops (taking nothing more from
    //  parents on behalf of a caller the origin did not accept).
    if (verdict != ZF_FETCH_ACCESS_ALLOWED && same_run && zf_fetch_task_running (task))
        zf_fetch_task_abandon (task, why);
}

static void s_asked_free (void *arg)
{
    zf_free (arg);
}

static int s_on_ask_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    pending_t *pending = arg;
    fetcher_t *fetcher = pending->fetcher;
    pending->ask_timer = -1;
    asked_t *asked = zf_calloc (1, sizeof *asked);
    *asked = (asked_t){.fetcher = fetcher, .generation = pending->generation};
    zf_fetch_access_check (fetcher->access, pending->body.url, pending->body.headers.items,
                           pending->body.headers.count, s_on_asked, s_asked_free, asked);
    return 0;
}

static void s_on_proof (zf_fetch_task_t *task, zf_fetch_proof_t proof, long status,
                        uint64_t content_length, const char *why, void *arg)
{
    (void) why; //  a refusal's words are the access record's, as a question's would be
    fetcher_t *fetcher = arg;
    zf_fetch_env_t *env = &fetcher->env;
    char key[24];
    s_proof_key (zf_fetch_task_generation (task), key);
    pending_t *pending = zhashx_lookup (fetcher->proofs, key);
    if (!pending)
        return;
    const zf_rec_http_header_t *headers = pending->body.headers.items;
    size_t header_count = pending->body.headers.count;
    char words[512];
    switch (proof) {
    case ZF_FETCH_PROOF_ASK: //  on the loop's next turn: never back into the task from here
        if (pending->ask_timer < 0)
            pending->ask_timer = zf_timers_start (env->timers, 0, 1, s_on_ask_timer, pending);
        return;
    case ZF_FETCH_PROOF_ALLOWED:
        zf_fetch_access_record (fetcher->access, pending->body.url, headers, header_count, true,
                                status, (int64_t) content_length, words, sizeof words);
        s_reply_status (env, &pending->ret, task);
        break;
    case ZF_FETCH_PROOF_REFUSED:
        zf_fetch_access_record (fetcher->access, pending->body.url, headers, header_count, false,
                                status, -1, words, sizeof words);
        s_reply_not_allowed (env, &pending->ret, ZF_FETCH_ACCESS_REFUSED, words);
        break;
    case ZF_FETCH_PROOF_ENDED: //  failed before (why): the requester learns it, as others do
        s_reply_status (env, &pending->ret, task);
        break;
    }
    zhashx_delete (fetcher->proofs, key);
}

//  A cold task for this request, its requester's access to be proven by the task itself.
static void s_start_proving (fetcher_t *fetcher, const zf_bus_return_t *ret,
                             const zf_msg_task_fetch_t *body, const char *task_id,
                             const char *digest)
{
    zf_fetch_env_t *env = &fetcher->env;
    s_forget_finished (env);
    zf_fetch_task_t *task = zf_fetch_task_new (env, task_id, digest, body);
    zf_fetch_task_await_proof (task, s_on_proof, fetcher);
    pending_t *pending = s_pending_new (fetcher, ret, body, task_id, digest);
    pending->generation = zf_fetch_task_generation (task);
    char key[24];
    s_proof_key (pending->generation, key);
    zhashx_insert (fetcher->proofs, key, pending);
    zhashx_update (env->tasks, task_id, task);
    zf_fetch_task_start (task, NULL);
}

//  --- task.fetch -------------------------------------------------------------------------------

//  A task's bytes go to a caller only once the origin accepted the caller's own request for
//  the URL (zf_fetch_access.h): the task id is the content's digest, shared by every client,
//  and a private registry decides per client.
static void s_handle_fetch (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    fetcher_t *fetcher = arg;
    zf_fetch_env_t *env = &fetcher->env;
    const zf_msg_task_fetch_t *body = request->env.body;
    char task_id[ZF_TASK_ID_SIZE + 1], digest[ZF_DIGEST_TEXT_SIZE + 1];
    if (!s_request_valid (env, &request->return_to, body, NULL, task_id, digest))
        return;
    if (!fetcher->access) {
        s_ensure_task (env, &request->return_to, request->env.from, body, task_id, digest, -1);
        return;
    }
    //  Nobody runs the task, or it failed: this caller's task proves its access itself.
    zf_fetch_task_t *task = zhashx_lookup (env->tasks, task_id);
    if (*body->url && (!task || zf_fetch_task_failed (task))
        && zf_fetch_access_would_ask (fetcher->access, body->url, body->headers.items,
                                      body->headers.count)) {
        s_start_proving (fetcher, &request->return_to, body, task_id, digest);
        return;
    }
    pending_t *pending = s_pending_new (fetcher, &request->return_to, body, task_id, digest);
    //  Others join a running task, or read a complete one, only once the origin said yes to
    //  their own headers (a kept answer, or a question now): a task that ran for one client
    //  proves nothing about another.
    zf_fetch_access_check (fetcher->access, body->url, body->headers.items, body->headers.count,
                           s_on_access, s_pending_free, pending);
}

//  The scheduler made this seed a task's origin fetcher: start it like task.fetch. The task
//  then registers and is told "source". No client reads it here: no access question.
static void s_handle_trigger (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_fetch_env_t *env = arg;
    const zf_msg_seed_trigger_t *body = request->env.body;
    if (!env->config->seed || !env->scheduled) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_REFUSED, "type",
                           "this node is not a seed peer with a scheduler");
        return;
    }
    zf_msg_task_fetch_t fetch = {.url = body->url,
                                 .digest = body->digest,
                                 .tag = body->tag,
                                 .application = body->application};
    zf_notice (env->name, "seed triggered task=%.16s from=%s", body->task_id, request->env.from);
    char task_id[ZF_TASK_ID_SIZE + 1], digest[ZF_DIGEST_TEXT_SIZE + 1];
    if (!s_request_valid (env, &request->return_to, &fetch, body->task_id, task_id, digest))
        return;
    s_ensure_task (env, NULL, request->env.from, &fetch, task_id, digest, -1);
    zf_msg_seed_accepted_t accepted = {.task_id = body->task_id};
    zf_bus_reply (bus, &request->return_to, &zf_msg_seed_accepted, &accepted, NULL);
}

static void s_handle_query (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_fetch_env_t *env = arg;
    const zf_msg_task_query_t *body = request->env.body;
    zf_fetch_task_t *task = zhashx_lookup (env->tasks, body->task_id);
    if (!task)
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "not_found",
                            "no task %.64s on this fetcher", body->task_id);
    else
        s_reply_status (env, &request->return_to, task);
}

//  piece.peek: bytes of a piece the origin is filling, for a reader on this host that streams
//  the task to its client (zf_fetch_peeks.h). Not for other nodes: they take whole, checked
//  pieces from storage.
static void s_handle_peek (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_fetch_env_t *env = arg;
    const zf_msg_piece_peek_t *body = request->env.body;
    if (request->origin == ZF_BUS_FROM_NETWORK) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_FORBIDDEN, "type",
                           "piece.peek is for readers on this host");
        return;
    }
    zf_fetch_task_t *task = zhashx_lookup (env->tasks, body->task_id);
    if (!task) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_NOT_FOUND, "task_id",
                           "no task %.64s on this fetcher", body->task_id);
        return;
    }
    zf_fetch_task_peek (task, &request->return_to, body->piece, body->from, body->wait_ms);
}

//  Readers of a task (bus/zf_task_reader.h) wait for this instead of asking task.query.
static void s_publish_ended (zf_fetch_task_t *task, void *arg)
{
    zf_fetch_env_t *env = arg;
    zf_msg_task_status_t status;
    zf_fetch_task_status (task, &status);
    zf_msg_task_ended_t ended = {.task_id = status.task_id,
                                 .state = status.state,
                                 .content_length = status.content_length,
                                 .piece_length = status.piece_length,
                                 .piece_count = status.piece_count,
                                 .finished_count = status.finished_count,
                                 .bytes_from_source = status.bytes_from_source,
                                 .bytes_from_parents = status.bytes_from_parents,
                                 .error_code = status.error_code,
                                 .error_message = status.error_message};
    zf_bus_publish (env->bus, &zf_msg_task_ended, &ended);
}

static void s_destroy_task (void **item)
{
    zf_fetch_task_destroy ((zf_fetch_task_t **) item);
}

//  --- stopping ---------------------------------------------------------------------------------

static bool s_left (void *sched)
{
    return zf_fetch_sched_leaving (sched) == 0;
}

//  Schedulers of other processes hear that this host leaves (zf_fetch_sched_leave), and the
//  loop runs on until they answered, which takes a round trip: the bus drops what it still
//  holds once destroyed.
static void s_leave (zf_fetch_env_t *env, zf_fetch_sched_t *sched)
{
    if (sched && zf_fetch_sched_leave (sched) > 0)
        zf_actor_run_until (env->loop, s_left, sched, LEAVE_WAIT_MAX_MS);
}

static const char *s_check_config (const zf_fetcher_config_t *config)
{
    if (!s_power_of_two (config->piece_length_min) || !s_power_of_two (config->piece_length_max))
        return "[fetcher] piece_length_min and piece_length_max must be powers of two";
    if (config->piece_length_min > config->piece_length_max)
        return "[fetcher] piece_length_min is larger than piece_length_max";
    return NULL;
}

static void s_metrics_init (zf_fetch_env_t *env)
{
    env->source_bytes =
        zf_metrics_counter ("zfly_fetcher_source_bytes_total",
                            "Content bytes received from origins", "actor", env->name, NULL);
    env->parent_bytes =
        zf_metrics_counter ("zfly_fetcher_parent_bytes_total",
                            "Content bytes received from parents", "actor", env->name, NULL);
    env->piece_retries = zf_metrics_counter ("zfly_fetcher_piece_retries_total",
                                             "Origin requests tried again after a failure", "actor",
                                             env->name, NULL);
    env->tasks_complete =
        zf_metrics_counter ("zfly_fetcher_tasks_total", "Tasks finished, by result", "actor",
                            env->name, "result", "complete", NULL);
    env->tasks_failed = zf_metrics_counter ("zfly_fetcher_tasks_total", "Tasks finished, by result",
                                            "actor", env->name, "result", "failed", NULL);
}

void zf_fetcher_actor (zsock_t *pipe, void *args)
{
    prctl (PR_SET_NAME, "zf-fetcher", 0, 0, 0); //  as ps, top and perf show this thread
    const zf_actor_args_t *actor = args;
    //  How origins are reached is [upstream]'s, shared with the proxy; the transfers read it
    //  from the fetcher's own struct.
    const zf_upstream_config_t *upstream =
        actor->upstream ? actor->upstream : zf_upstream_defaults ();
    zf_fetcher_config_t config = *(const zf_fetcher_config_t *) actor->config;
    config.connect_to = zf_upstream_connect_to (upstream); //  built once, for every transfer
    config.upstream_ca = upstream->ca;
    config.connect_timeout_ms = upstream->connect_timeout_ms;
    fetcher_t fetcher = {.env = {.name = actor->name, .config = &config}};
    zf_fetch_env_t *env = &fetcher.env;
    zf_fetch_sched_t *sched = NULL;
    zf_error_t err;
    const char *config_error = s_check_config (env->config);
    env->bus = config_error ? NULL
                            : zf_bus_new (actor->node, actor->name, env->config->bind,
                                          env->config->events_bind, &err);
    zsock_signal (pipe, 0);
    if (!env->bus) {
        zf_actor_fatal (pipe, env->name, "%s", config_error ? config_error : err.message);
        curl_slist_free_all (config.connect_to);
        return;
    }
    if (env->config->seed) //  the join actor tells the manager this node is a seed peer
        zf_node_advertise (actor->node, "seed", "true");
    curl_global_init (CURL_GLOBAL_DEFAULT);
    s_metrics_init (env);
    env->tasks = zhashx_new ();
    zhashx_set_destructor (env->tasks, s_destroy_task);
    env->loop = zloop_new ();
    env->timers = zf_timers_new (env->loop);
    zloop_set_nonstop (env->loop, true); //  the daemon handles signals and sends $TERM
    zloop_reader (env->loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (env->bus, env->loop);
    env->curl = zf_curl_loop_new (env->loop, zf_fetch_origin_curl_done, env);
    sched = zf_fetch_sched_new (env, actor->node);
    env->on_end = s_publish_ended;
    env->on_end_arg = env;
    if (config.access_check) {
        zf_fetch_access_options_t access = {.name = env->name,
                                            .ttl_ms = config.access_ttl_ms,
                                            .timeout_ms = config.access_timeout_ms,
                                            .upstream = upstream};
        fetcher.access = zf_fetch_access_new (env->loop, &access);
        fetcher.proofs = zhashx_new ();
        zhashx_set_destructor (fetcher.proofs, s_proof_free);
    }
    zf_bus_handle (env->bus, ZF_MSG_TASK_FETCH, s_handle_fetch, &fetcher);
    zf_bus_handle (env->bus, ZF_MSG_TASK_QUERY, s_handle_query, env);
    zf_bus_handle (env->bus, ZF_MSG_SEED_TRIGGER, s_handle_trigger, env);
    zf_bus_handle (env->bus, ZF_MSG_PIECE_PEEK, s_handle_peek, env);
    zf_notice (env->name, "started bind=%s storage=%s source_concurrency=%" PRId64,
               *env->config->bind ? env->config->bind : "-", env->config->storage,
               env->config->source_concurrency);
    zstr_send (pipe, "READY");
    zloop_start (env->loop);

    zf_info (env->name, "stopped tasks=%zu", zhashx_size (env->tasks));
    zhashx_purge (env->tasks); //  tasks stop their transfers and forget their requests first
    s_leave (env, sched);
    zhashx_destroy (&env->tasks);
    zf_curl_loop_destroy (&env->curl);
    zf_bus_destroy (&env->bus);       //  before its loop: it unregisters its sockets
    zf_fetch_sched_destroy (&sched);  //  calls in flight were freed by the bus (their drop)
    zhashx_destroy (&fetcher.proofs); //  before the timers: it ends its own
    zf_fetch_access_destroy (&fetcher.access); //  questions unanswered free their callers
    zf_timers_destroy (&env->timers);          //  after every owner of a timer
    zloop_destroy (&env->loop);
    curl_global_cleanup ();
    curl_slist_free_all (config.connect_to);
}
