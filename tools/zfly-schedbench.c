/*  zfly-schedbench — load generator for the scheduler alone.

    Simulates fetchers over the bus: HOSTS hosts announce themselves, then PEERS peers over
    TASKS tasks register in storms (all peers of STORM tasks at the same moment), sources and
    peers with parents report pieces in batches every REPORT_MS, a share of reports is a
    parent failure instead, waiting peers register again after the scheduler's retry, peers
    told to reschedule do, and finished peers say so. Reports decisions per second, decision
    latency percentiles (round trip: a register, parent.failed or peer.reschedule to its
    peer.schedule), and memory: the process RSS before the first register and at the end (the
    scheduler's process with --pid, else this one in --inproc mode), and the scheduler's own
    count of its model bytes.

    Usage: zfly-schedbench [--inproc | --connect ENDPOINT [--pid PID]] [--peers N] [--tasks N]
                           [--hosts N] [--storm N] [--storm-every MS] [--pieces N]
                           [--batch N] [--report-ms MS] [--fail-percent N] [--window N]
                           [--set scheduler.KEY=VALUE ...] */
#include "scheduler/zf_scheduler.h"
#include "zf_bus.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include <getopt.h>

enum { IDLE, WANT_REGISTER, WAITING, DOWNLOADING, RESCHEDULE, COMPLETE, DONE };
enum { KIND_ANNOUNCE, KIND_DECISION, KIND_REPORT, KIND_FINISHED };

typedef struct {
    uint32_t task, host;
    uint8_t state;
    bool pending, source;
    uint32_t parent; //  a parent's host index + 1, 0: none
    bool decided;    //  got its first schedule
    uint32_t next_piece;
    int64_t next_ms;
    int64_t sent_us;
} sim_peer_t;

typedef struct {
    const char *connect;
    int pid;
    bool inproc;
    uint32_t peers, tasks, hosts, storm, pieces, batch, fail_percent, window;
    int64_t storm_every_ms, report_ms;
    const char *overrides[32];
    size_t override_count;
} options_t;

typedef struct {
    options_t *options;
    zf_bus_t *bus;
    zloop_t *loop;
    sim_peer_t *peers;
    uint32_t tasks_started, announced, done;
    int64_t next_storm_ms, started_ms, retry_ms;
    uint32_t *latencies; //  decision round trips, microseconds
    size_t latency_count, latency_cap;
    uint64_t decisions[3], reports, failures_sent, errors, reschedules;
    uint32_t first_decisions; //  peers that got their first schedule
    int64_t all_decided_us;
    int phase; //  0 announce, 1 run, 2 state asked, 3 done
    uint32_t announces_sent;
    uint32_t heartbeats_due; //  hosts still to re-announce in this heartbeat round
    int64_t next_heartbeat_ms;
    long rss_before_kib, rss_after_kib;
    int64_t run_started_us, run_ended_us;
    zf_msg_scheduler_dump_t state;
} bench_t;

//  A request in flight: freed by its reply, or by the bus when the bench stops with it
//  unanswered (zf_bus_call_t.drop).
typedef struct {
    bench_t *bench;
    sim_peer_t *peer;
    int kind;
} call_t;

static int64_t s_ms (void)
{
    return zclock_mono ();
}

static long s_rss_kib (int pid)
{
    char path[64];
    snprintf (path, sizeof path, pid ? "/proc/%d/status" : "/proc/self/status", pid);
    FILE *file = fopen (path, "r");
    char line[256];
    long kib = -1;
    while (file && fgets (line, sizeof line, file))
        if (strncmp (line, "VmRSS:", 6) == 0)
            kib = strtol (line + 6, NULL, 10);
    if (file)
        fclose (file);
    return kib;
}

static void s_task_id (uint32_t task, char *out, size_t size)
{
    snprintf (out, size, "%056x%08" PRIx32, 0xbe7c4u, task);
}

static void s_host_id (uint32_t host, char *out, size_t size)
{
    snprintf (out, size, "h%05" PRIu32, host);
}

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);

static void s_call (bench_t *bench, sim_peer_t *peer, int kind, const zf_msg_desc_t *desc,
                    const void *body)
{
    call_t *call = zf_malloc (sizeof (call_t));
    *call = (call_t){bench, peer, kind};
    zf_error_t err;
    zf_bus_call_t timing = {.timeout_ms = 60000, .retries = 0, .drop = zf_bus_drop_free};
    if (peer) {
        peer->pending = true;
        peer->sent_us = zclock_usecs ();
    }
    if (zf_bus_request (bench->bus, "scheduler", desc, body, NULL, timing, s_on_reply, call, &err)
        != ZF_OK) {
        fprintf (stderr, "zfly-schedbench: request failed: %s\n", err.message);
        bench->errors++;
        if (peer)
            peer->pending = false;
        zf_free (call);
    }
}

static void s_register (bench_t *bench, sim_peer_t *peer)
{
    char task_id[80], host_id[16];
    s_task_id (peer->task, task_id, sizeof task_id);
    s_host_id (peer->host, host_id, sizeof host_id);
    uint64_t piece_length = 4 << 20;
    zf_msg_peer_register_t body = {.task_id = task_id,
                                   .host_id = host_id,
                                   .url = "http://origin.bench/blob",
                                   .content_length = bench->options->pieces * piece_length,
                                   .piece_length = piece_length,
                                   .piece_count = bench->options->pieces};
    s_call (bench, peer, KIND_DECISION, &zf_msg_peer_register, &body);
}

static void s_report (bench_t *bench, sim_peer_t *peer)
{
    char task_id[80], host_id[16], from[16];
    s_task_id (peer->task, task_id, sizeof task_id);
    s_host_id (peer->host, host_id, sizeof host_id);
    if (peer->source)
        zf_strlcpy (from, "source", sizeof from);
    else
        s_host_id (peer->parent ? peer->parent - 1 : 0, from, sizeof from);
    bool fail = !peer->source && peer->parent
                && (uint32_t) (zclock_usecs () % 100) < bench->options->fail_percent;
    if (fail) {
        zf_msg_parent_failed_t body = {
            .task_id = task_id, .host_id = host_id, .parent = from, .reason = "slow"};
        bench->failures_sent++;
        s_call (bench, peer, KIND_DECISION, &zf_msg_parent_failed, &body);
        return;
    }
    uint64_t pieces[256];
    size_t count = 0;
    while (count < bench->options->batch && peer->next_piece < bench->options->pieces)
        pieces[count++] = peer->next_piece++;
    zf_msg_piece_report_t body = {.task_id = task_id,
                                  .host_id = host_id,
                                  .pieces = {.items = pieces, .count = count},
                                  .from = from};
    bench->reports++;
    s_call (bench, peer, KIND_REPORT, &zf_msg_piece_report, &body);
}

static void s_simple (bench_t *bench, sim_peer_t *peer, int kind)
{
    char task_id[80], host_id[16];
    s_task_id (peer->task, task_id, sizeof task_id);
    s_host_id (peer->host, host_id, sizeof host_id);
    if (kind == KIND_FINISHED) {
        zf_msg_peer_finished_t body = {.task_id = task_id, .host_id = host_id};
        s_call (bench, peer, KIND_FINISHED, &zf_msg_peer_finished, &body);
    } else {
        zf_msg_peer_reschedule_t body = {.task_id = task_id, .host_id = host_id};
        bench->reschedules++;
        s_call (bench, peer, KIND_DECISION, &zf_msg_peer_reschedule, &body);
    }
}

static void s_on_schedule (bench_t *bench, sim_peer_t *peer, const zf_msg_peer_schedule_t *body)
{
    int64_t now = s_ms ();
    if (streq (body->decision, "source")) {
        bench->decisions[1]++;
        peer->source = true;
        peer->state = DOWNLOADING;
        peer->next_ms = now; //  the origin's first piece lands soon
    } else if (streq (body->decision, "parents") && body->parents.count > 0) {
        bench->decisions[0]++;
        const zf_rec_sched_parent_t *parents = body->parents.items;
        peer->parent = (uint32_t) strtoul (parents[0].host_id + 1, NULL, 10) + 1;
        if (peer->state != DOWNLOADING)
            peer->next_ms = now + bench->options->report_ms;
        peer->state = DOWNLOADING;
    } else {
        bench->decisions[2]++;
        peer->parent = 0;
        peer->state = WAITING;
        peer->next_ms = now + (int64_t) (body->retry_ms ? body->retry_ms : 500);
    }
}

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    call_t *call = arg;
    bench_t *bench = call->bench;
    sim_peer_t *peer = call->peer;
    if (peer)
        peer->pending = false;
    if (status != ZF_OK) {
        if (bench->errors++ < 5)
            fprintf (stderr, "zfly-schedbench: %s\n", err ? err->message : "error");
    } else if (call->kind == KIND_ANNOUNCE)
        bench->announced++;
    else if (call->kind == KIND_DECISION) {
        uint32_t took = (uint32_t) (zclock_usecs () - peer->sent_us);
        if (bench->latency_count == bench->latency_cap) {
            bench->latency_cap = bench->latency_cap ? bench->latency_cap * 2 : 65536;
            bench->latencies = zf_realloc (bench->latencies, bench->latency_cap * 4);
        }
        bench->latencies[bench->latency_count++] = took;
        if (!peer->decided) {
            peer->decided = true;
            if (++bench->first_decisions == bench->options->peers)
                bench->all_decided_us = zclock_usecs ();
        }
        s_on_schedule (bench, peer, reply->env.body);
    } else if (call->kind == KIND_REPORT) {
        const zf_msg_peer_ack_t *ack = reply->env.body;
        peer->next_ms = s_ms () + bench->options->report_ms;
        if (peer->next_piece >= bench->options->pieces)
            peer->state = COMPLETE;
        else if (ack->reschedule)
            peer->state = RESCHEDULE;
    } else if (call->kind == KIND_FINISHED) {
        peer->state = DONE;
        bench->done++;
    }
    zf_free (call);
}

static void s_peer_step (bench_t *bench, sim_peer_t *peer, int64_t now)
{
    switch (peer->state) {
    case WANT_REGISTER: s_register (bench, peer); break;
    case WAITING:
        if (now >= peer->next_ms)
            s_register (bench, peer);
        break;
    case DOWNLOADING:
        if (now >= peer->next_ms)
            s_report (bench, peer);
        break;
    case RESCHEDULE: s_simple (bench, peer, KIND_DECISION); break;
    case COMPLETE: s_simple (bench, peer, KIND_FINISHED); break;
    default: break;
    }
}

static void s_announce_some (bench_t *bench);
static void s_announce (bench_t *bench, uint32_t host);

//  Hosts announce again every 5 s like real fetchers, so the scheduler's host_timeout (15 s by
//  default) does not expire hosts whose peers finished and went quiet.
static void s_heartbeat (bench_t *bench, int64_t now)
{
    if (now >= bench->next_heartbeat_ms) {
        bench->heartbeats_due = bench->options->hosts;
        bench->next_heartbeat_ms = now + 5000;
    }
    while (bench->heartbeats_due > 0 && zf_bus_pending (bench->bus) < bench->options->window)
        s_announce (bench, --bench->heartbeats_due);
}
static void s_ask_state (bench_t *bench);

static int s_pump (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    bench_t *bench = arg;
    options_t *options = bench->options;
    int64_t now = s_ms ();
    if (bench->phase == 0) {
        s_announce_some (bench);
        return 0;
    }
    if (bench->phase >= 2)
        return bench->phase == 3 || bench->errors > 100 ? -1 : 0;
    if (bench->tasks_started < options->tasks && now >= bench->next_storm_ms) {
        uint32_t last = bench->tasks_started + options->storm;
        for (uint32_t index = 0; index < options->peers; index++) {
            sim_peer_t *peer = &bench->peers[index];
            if (peer->task >= bench->tasks_started && peer->task < last)
                peer->state = WANT_REGISTER;
        }
        bench->tasks_started = last < options->tasks ? last : options->tasks;
        bench->next_storm_ms = now + options->storm_every_ms;
    }
    for (uint32_t index = 0; index < options->peers; index++) {
        if (zf_bus_pending (bench->bus) >= options->window)
            break;
        sim_peer_t *peer = &bench->peers[index];
        if (!peer->pending)
            s_peer_step (bench, peer, now);
    }
    s_heartbeat (bench, now);
    if (bench->done == options->peers) {
        bench->run_ended_us = zclock_usecs ();
        s_ask_state (bench);
    }
    return bench->errors > 100 ? -1 : 0;
}

static int s_compare_u32 (const void *a, const void *b)
{
    uint32_t left = *(const uint32_t *) a, right = *(const uint32_t *) b;
    return left < right ? -1 : left > right;
}

static uint32_t s_percentile (bench_t *bench, double share)
{
    if (bench->latency_count == 0)
        return 0;
    size_t at = (size_t) (share * (double) (bench->latency_count - 1));
    return bench->latencies[at];
}

//  --- setup -----------------------------------------------------------------------------------

static void s_usage (FILE *out)
{
    fprintf (out, "usage: zfly-schedbench [--inproc | --connect ENDPOINT [--pid PID]] [--peers N]\n"
                  "         [--tasks N] [--hosts N] [--storm N] [--storm-every MS] [--pieces N]\n"
                  "         [--batch N] [--report-ms MS] [--fail-percent N] [--window N]\n"
                  "         [--set scheduler.KEY=VALUE ...]\n");
}

static int s_parse (int argc, char *argv[], options_t *options)
{
    static const struct option long_options[] = {{"inproc", no_argument, 0, 'i'},
                                                 {"connect", required_argument, 0, 'c'},
                                                 {"pid", required_argument, 0, 'p'},
                                                 {"peers", required_argument, 0, 'n'},
                                                 {"tasks", required_argument, 0, 't'},
                                                 {"hosts", required_argument, 0, 'H'},
                                                 {"storm", required_argument, 0, 's'},
                                                 {"storm-every", required_argument, 0, 'e'},
                                                 {"pieces", required_argument, 0, 'P'},
                                                 {"batch", required_argument, 0, 'b'},
                                                 {"report-ms", required_argument, 0, 'r'},
                                                 {"fail-percent", required_argument, 0, 'f'},
                                                 {"window", required_argument, 0, 'w'},
                                                 {"set", required_argument, 0, 'S'},
                                                 {"help", no_argument, 0, 'h'},
                                                 {0, 0, 0, 0}};
    int option;
    while ((option = getopt_long (argc, argv, "", long_options, NULL)) != -1) {
        long value = optarg ? strtol (optarg, NULL, 10) : 0;
        switch (option) {
        case 'i': options->inproc = true; break;
        case 'c': options->connect = optarg; break;
        case 'p': options->pid = (int) value; break;
        case 'n': options->peers = (uint32_t) value; break;
        case 't': options->tasks = (uint32_t) value; break;
        case 'H': options->hosts = (uint32_t) value; break;
        case 's': options->storm = (uint32_t) value; break;
        case 'e': options->storm_every_ms = value; break;
        case 'P': options->pieces = (uint32_t) value; break;
        case 'b': options->batch = (uint32_t) value; break;
        case 'r': options->report_ms = value; break;
        case 'f': options->fail_percent = (uint32_t) value; break;
        case 'w': options->window = (uint32_t) value; break;
        case 'S':
            if (options->override_count < ZF_ARRAY_LEN (options->overrides))
                options->overrides[options->override_count++] = optarg;
            break;
        case 'h': s_usage (stdout); exit (0);
        default: s_usage (stderr); return 2;
        }
    }
    uint32_t per_task = options->tasks ? options->peers / options->tasks : 0;
    if (options->peers == 0 || options->tasks == 0 || per_task == 0 || options->storm == 0
        || options->hosts < per_task || options->batch == 0 || options->batch > 256
        || options->pieces == 0 || options->window == 0
        || (!options->inproc && !options->connect)) {
        s_usage (stderr);
        return 2;
    }
    return 0;
}

//  Peer p is the (p / tasks)-th peer of task p % tasks; peers of one task sit on distinct
//  hosts, each host carries peers of several tasks.
static void s_layout (bench_t *bench)
{
    options_t *options = bench->options;
    uint32_t per_task = options->peers / options->tasks;
    uint32_t stride = options->hosts / per_task;
    bench->peers = zf_calloc (options->peers, sizeof (sim_peer_t));
    for (uint32_t index = 0; index < options->peers; index++) {
        sim_peer_t *peer = &bench->peers[index];
        peer->task = index % options->tasks;
        uint32_t rank = (index / options->tasks) % per_task;
        peer->host = rank * stride + peer->task % stride;
    }
}

static void s_announce (bench_t *bench, uint32_t host)
{
    char host_id[16], storage[32], idc[16], location[32];
    s_host_id (host, host_id, sizeof host_id);
    snprintf (storage, sizeof storage, "storage@%s", host_id);
    snprintf (idc, sizeof idc, "idc-%" PRIu32, host % 4);
    snprintf (location, sizeof location, "eu|de|r%" PRIu32, host % 16);
    zf_msg_host_announce_t body = {.host_id = host_id,
                                   .node = host_id,
                                   .storage = storage,
                                   .fetcher = "",
                                   .type = "normal",
                                   .idc = idc,
                                   .location = location};
    s_call (bench, NULL, KIND_ANNOUNCE, &zf_msg_host_announce, &body);
}

static void s_announce_some (bench_t *bench)
{
    options_t *options = bench->options;
    while (bench->announces_sent < options->hosts && zf_bus_pending (bench->bus) < options->window)
        s_announce (bench, bench->announces_sent++);
    if (bench->announced == options->hosts) {
        bench->rss_before_kib = s_rss_kib (options->pid);
        bench->phase = 1;
        bench->run_started_us = zclock_usecs ();
        bench->next_storm_ms = s_ms ();
        bench->next_heartbeat_ms = s_ms () + 5000;
    }
}

static void s_on_state (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    bench_t *bench = arg;
    if (status == ZF_OK) {
        const zf_msg_scheduler_dump_t *dump = reply->env.body;
        bench->state.peer_total = dump->peer_total;
        bench->state.model_bytes = dump->model_bytes;
        bench->state.hosts = dump->hosts;
        bench->state.tasks = dump->tasks;
    } else
        fprintf (stderr, "zfly-schedbench: scheduler.state: %s\n", err ? err->message : "?");
    bench->rss_after_kib = s_rss_kib (bench->options->pid);
    bench->phase = 3;
}

static void s_ask_state (bench_t *bench)
{
    zf_msg_scheduler_state_t body = {.task_id = ""};
    zf_error_t err;
    bench->phase = 2;
    if (zf_bus_request (bench->bus, "scheduler", &zf_msg_scheduler_state, &body, NULL,
                        (zf_bus_call_t){.timeout_ms = 10000, .retries = 0}, s_on_state, bench, &err)
        != ZF_OK)
        bench->phase = 3;
}

//  In-process: the scheduler's own decision-time histogram (request in to schedule out, no
//  queueing in the bench), read from the metrics registry; percentiles are bucket upper bounds.
static void s_print_server_latency (void)
{
    char *text = zf_metrics_render ();
    const char *prefix = "zfly_scheduler_decision_seconds_bucket{actor=\"scheduler\",le=\"";
    double bounds[64], counts[64];
    size_t used = 0;
    for (char *line = strstr (text, prefix); line && used < 64; line = strstr (line + 1, prefix)) {
        char *le = line + strlen (prefix);
        bounds[used] = streq (le, "+Inf") || *le == '+' ? 1e9 : strtod (le, NULL);
        char *value = strchr (le, ' ');
        counts[used++] = value ? strtod (value + 1, NULL) : 0;
    }
    if (used > 0 && counts[used - 1] > 0) {
        double total = counts[used - 1], shares[] = {0.5, 0.99};
        printf ("decision time inside the scheduler (histogram bucket bounds):");
        for (size_t share = 0; share < 2; share++)
            for (size_t index = 0; index < used; index++)
                if (counts[index] >= shares[share] * total) {
                    printf (" p%.0f <= %.0f us", shares[share] * 100, bounds[index] * 1e6);
                    break;
                }
        printf (" over %.0f schedules\n", total);
    }
    zf_free (text);
}

static void s_print (bench_t *bench, int argc, char *argv[])
{
    options_t *options = bench->options;
    double seconds = (double) (bench->run_ended_us - bench->run_started_us) / 1e6;
    uint64_t decisions = bench->decisions[0] + bench->decisions[1] + bench->decisions[2];
    qsort (bench->latencies, bench->latency_count, sizeof (uint32_t), s_compare_u32);
    printf ("command:");
    for (int index = 0; index < argc; index++)
        printf (" %s", argv[index]);
    printf ("\npeers %" PRIu32 " tasks %" PRIu32 " hosts %" PRIu32 " storm %" PRIu32
            " tasks every %" PRId64 "ms, %" PRIu32 " pieces, reports of %" PRIu32
            " pieces every %" PRId64 "ms, %" PRIu32 "%% of reports a parent failure\n",
            options->peers, options->tasks, options->hosts, options->storm, options->storm_every_ms,
            options->pieces, options->batch, options->report_ms, options->fail_percent);
    printf ("run: %.2f s, %" PRIu64 " decisions (parents %" PRIu64 ", source %" PRIu64
            ", wait %" PRIu64 "), %" PRIu64 " piece reports, %" PRIu64 " parent failures, %" PRIu64
            " reschedules, %" PRIu64 " errors\n",
            seconds, decisions, bench->decisions[0], bench->decisions[1], bench->decisions[2],
            bench->reports, bench->failures_sent, bench->reschedules, bench->errors);
    printf ("decisions/s (mixed load, over the run): %.0f; messages/s: %.0f\n",
            (double) decisions / seconds,
            (double) (decisions + bench->reports + options->peers) / seconds);
    printf ("first schedule for all %" PRIu32 " peers after %.3f s: %.0f registers/s\n",
            options->peers, (double) (bench->all_decided_us - bench->run_started_us) / 1e6,
            options->peers * 1e6 / (double) (bench->all_decided_us - bench->run_started_us));
    printf ("decision latency (round trip): p50 %" PRIu32 " us, p99 %" PRIu32 " us, max %" PRIu32
            " us\n",
            s_percentile (bench, 0.5), s_percentile (bench, 0.99), s_percentile (bench, 1.0));
    printf ("rss: before %ld KiB, after %ld KiB (%s): %.0f bytes per peer\n", bench->rss_before_kib,
            bench->rss_after_kib,
            options->inproc ? "this process, scheduler in-process" : "scheduler process",
            (double) (bench->rss_after_kib - bench->rss_before_kib) * 1024 / options->peers);
    printf (
        "scheduler model: %" PRIu64 " hosts, %" PRIu64 " tasks, %" PRIu64 " peers, %" PRIu64
        " bytes: %.0f bytes per peer (hosts included)\n",
        bench->state.hosts, bench->state.tasks, bench->state.peer_total, bench->state.model_bytes,
        bench->state.peer_total ? (double) bench->state.model_bytes / bench->state.peer_total : 0);
}

static zactor_t *s_start_inproc (zf_node_t *node, zf_config_t **config, options_t *options)
{
    const zf_config_section_t *sections[] = {&zf_scheduler_section};
    zf_error_t err;
    *config = zf_config_load (sections, 1, NULL, options->overrides, options->override_count, &err);
    if (!*config) {
        fprintf (stderr, "zfly-schedbench: %s\n", err.message);
        return NULL;
    }
    zf_node_add_local (node, "scheduler");
    static zf_actor_args_t args;
    args = (zf_actor_args_t){.node = node,
                             .name = "scheduler",
                             .config = zf_config_section_or_defaults (*config, "scheduler")};
    zactor_t *actor = zactor_new (zf_scheduler_actor, &args);
    char *answer = zstr_recv (actor);
    bool ready = answer && streq (answer, "READY");
    zstr_free (&answer);
    if (!ready)
        zactor_destroy (&actor);
    return actor;
}

int main (int argc, char *argv[])
{
    options_t options = {.peers = 10000,
                         .tasks = 1000,
                         .hosts = 2000,
                         .storm = 100,
                         .storm_every_ms = 250,
                         .pieces = 64,
                         .batch = 8,
                         .report_ms = 1000,
                         .fail_percent = 1,
                         .window = 512};
    int rc = s_parse (argc, argv, &options);
    if (rc)
        return rc;
    zsys_init ();
    zsys_handler_set (NULL);
    zf_log_set_level (ZF_LOG_WARNING);
    zf_node_options_t node_options = {.name = "schedbench",
                                      .insecure = true,
                                      .hwm = 100000,
                                      .tap_hwm = 1,
                                      .request_timeout_ms = 60000,
                                      .request_retries = 0};
    zf_error_t err;
    zf_node_t *node = zf_node_new (&node_options, &err);
    ZF_ASSERT (node);
    zf_node_add_local (node, "bench");
    zf_config_t *config = NULL;
    zactor_t *scheduler = NULL;
    if (options.inproc) {
        scheduler = s_start_inproc (node, &config, &options);
        if (!scheduler)
            return 1;
    } else if (zf_node_add_route (node, "scheduler", options.connect, "--connect", &err) != ZF_OK) {
        fprintf (stderr, "zfly-schedbench: %s\n", err.message);
        return 2;
    }
    bench_t bench = {.options = &options};
    s_layout (&bench);
    bench.bus = zf_bus_new (node, "bench", "", "", &err);
    ZF_ASSERT (bench.bus);
    bench.loop = zloop_new ();
    zf_bus_attach (bench.bus, bench.loop);
    zloop_timer (bench.loop, 2, 0, s_pump, &bench);
    zloop_start (bench.loop);
    if (bench.phase == 3) {
        s_print (&bench, argc, argv);
        if (options.inproc)
            s_print_server_latency ();
    } else
        fprintf (stderr, "zfly-schedbench: stopped early after %" PRIu64 " errors\n", bench.errors);
    zf_bus_destroy (&bench.bus);
    zloop_destroy (&bench.loop);
    zactor_destroy (&scheduler);
    zf_config_destroy (&config);
    zf_node_destroy (&node);
    zf_free (bench.peers);
    zf_free (bench.latencies);
    return bench.phase == 3 && bench.errors == 0 ? 0 : 1;
}
