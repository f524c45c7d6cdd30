/*  zfly-joinbench — a join storm against the manager, and the API's host list under load.

    Simulates NODES nodes joining at once (or at --rate per second): each with its own CURVE
    keypair and its own connection, as real nodes (the manager sees NODES handshakes and NODES
    keys), each sending one manager.join with the token. Reports joins per second (first send
    to last answer), join latency percentiles (send to answer, connection set-up included),
    refusals by code, and the manager's RSS before and after (--pid). With --api, then times
    LIST requests of GET /api/v1/hosts (random pages of --per-page) one after another.

    Usage: zfly-joinbench --connect tcp://HOST:PORT --server-key Z85 --token-file FILE
                          [--nodes N] [--rate PER_S] [--prefix NAME] [--pid PID]
                          [--timeout S] [--api URL --api-token-file FILE [--list N]
                          [--per-page N]] */
#include "zf_clock.h"
#include "zf_envelope.h"
#include "zf_msgs.h"
#include <curl/curl.h>
#include <getopt.h>
#include <sys/resource.h>

typedef struct {
    zsock_t *sock;
    int64_t sent_us;
    uint32_t latency_us;
    int state; //  0 not sent, 1 sent, 2 joined, 3 refused
} node_t;

typedef struct {
    const char *connect, *server_key, *prefix, *api;
    char *token, *api_token;
    uint32_t nodes, rate, list, per_page;
    int pid, timeout_s;
} options_t;

static int s_compare (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

static uint32_t s_percentile (uint32_t *sorted, size_t count, double share)
{
    if (!count)
        return 0;
    size_t index = (size_t) (share * (double) (count - 1) + 0.5);
    return sorted[index < count ? index : count - 1];
}

static long s_rss_kib (int pid)
{
    if (pid <= 0)
        return -1;
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    char line[256];
    long rss = -1;
    while (fgets (line, sizeof line, file))
        if (strncmp (line, "VmRSS:", 6) == 0)
            rss = strtol (line + 6, NULL, 10);
    fclose (file);
    return rss;
}

static char *s_read_line (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        fprintf (stderr, "zfly-joinbench: cannot read %s: %s\n", path, strerror (errno));
        exit (2);
    }
    char line[256] = "";
    if (!fgets (line, sizeof line, file))
        line[0] = '\0';
    fclose (file);
    line[strcspn (line, "\r\n")] = '\0';
    return zf_strdup (line);
}

static void s_send_join (const options_t *options, node_t *node, uint32_t index)
{
    char name[128];
    snprintf (name, sizeof name, "%s-%05u", options->prefix, index);
    zf_msg_manager_join_t body = {.name = name, .token = options->token};
    zf_error_t err;
    zframe_t *frame = zf_envelope_encode (&zf_msg_manager_join, index + 1, 0, "joinbench@bench",
                                          "manager", &body, &err);
    ZF_ASSERT (frame);
    node->sent_us = zf_clock_mono_us ();
    node->state = 1;
    zframe_send (&frame, node->sock, ZFRAME_DONTWAIT);
}

//  Reads one answer; returns true when the node is done (joined or refused).
static bool s_receive (node_t *node, uint64_t *refusals, char *last_refusal, size_t size)
{
    zmsg_t *msg = zmsg_recv (node->sock);
    if (!msg)
        return false;
    zframe_t *frame = zmsg_first (msg);
    zf_envelope_t env;
    zf_error_t err;
    bool done = false;
    if (frame
        && zf_envelope_decode (zframe_data (frame), zframe_size (frame), &env, &err) == ZF_OK) {
        node->latency_us = (uint32_t) (zf_clock_mono_us () - node->sent_us);
        if (streq (env.type, "manager.joined"))
            node->state = 2;
        else {
            node->state = 3;
            (*refusals)++;
            const zf_msg_error_t *body = env.body;
            snprintf (last_refusal, size, "%s: %s", body->code, body->message);
        }
        done = true;
    }
    zf_envelope_clear (&env);
    zmsg_destroy (&msg);
    return done;
}

static void s_storm (const options_t *options)
{
    zsys_set_max_sockets ((size_t) options->nodes + 64);
    node_t *nodes = zf_calloc (options->nodes, sizeof *nodes);
    for (uint32_t index = 0; index < options->nodes; index++) {
        char public_key[41], secret_key[41];
        ZF_ASSERT (zmq_curve_keypair (public_key, secret_key) == 0);
        nodes[index].sock = zsock_new (ZMQ_DEALER);
        ZF_ASSERT (nodes[index].sock);
        zsock_set_linger (nodes[index].sock, 0);
        zsock_set_curve_publickey (nodes[index].sock, public_key);
        zsock_set_curve_secretkey (nodes[index].sock, secret_key);
        zsock_set_curve_serverkey (nodes[index].sock, options->server_key);
    }
    long rss_before = s_rss_kib (options->pid);
    //  Connections start now, with the joins: a node's first message waits for its handshake.
    for (uint32_t index = 0; index < options->nodes; index++)
        ZF_ASSERT (zsock_connect (nodes[index].sock, "%s", options->connect) == 0);
    zmq_pollitem_t *items = zf_calloc (options->nodes, sizeof *items);
    for (uint32_t index = 0; index < options->nodes; index++)
        items[index] =
            (zmq_pollitem_t){.socket = zsock_resolve (nodes[index].sock), .events = ZMQ_POLLIN};
    int64_t start_us = zf_clock_mono_us (), last_us = start_us;
    int64_t deadline_us = start_us + (int64_t) options->timeout_s * 1000000;
    uint32_t sent = 0, done = 0;
    uint64_t refusals = 0;
    char last_refusal[512] = "";
    while (done < options->nodes && zf_clock_mono_us () < deadline_us) {
        //  Send what the rate allows by now (all at once without --rate).
        uint32_t due =
            options->rate
                ? (uint32_t) ((zf_clock_mono_us () - start_us) * options->rate / 1000000) + 1
                : options->nodes;
        while (sent < due && sent < options->nodes) {
            s_send_join (options, &nodes[sent], sent);
            sent++;
        }
        if (zmq_poll (items, (int) options->nodes, 5) <= 0)
            continue;
        for (uint32_t index = 0; index < options->nodes; index++)
            if ((items[index].revents & ZMQ_POLLIN)
                && s_receive (&nodes[index], &refusals, last_refusal, sizeof last_refusal)) {
                done++;
                last_us = zf_clock_mono_us ();
            }
    }
    long rss_after = s_rss_kib (options->pid);
    uint32_t *latencies = zf_calloc (options->nodes, sizeof *latencies);
    size_t joined = 0;
    for (uint32_t index = 0; index < options->nodes; index++)
        if (nodes[index].state == 2)
            latencies[joined++] = nodes[index].latency_us;
    qsort (latencies, joined, sizeof *latencies, s_compare);
    double seconds = (double) (last_us - start_us) / 1e6;
    printf ("join storm: nodes=%u joined=%zu refused=%" PRIu64 " unanswered=%u seconds=%.2f "
            "joins_per_s=%.0f\n",
            options->nodes, joined, refusals, options->nodes - done, seconds,
            seconds > 0 ? (double) joined / seconds : 0);
    printf (
        "join latency ms: p50=%.1f p90=%.1f p99=%.1f max=%.1f\n",
        s_percentile (latencies, joined, 0.50) / 1e3, s_percentile (latencies, joined, 0.90) / 1e3,
        s_percentile (latencies, joined, 0.99) / 1e3, joined ? latencies[joined - 1] / 1e3 : 0.0);
    if (options->pid > 0)
        printf ("manager rss: before=%ld KiB after=%ld KiB\n", rss_before, rss_after);
    if (*last_refusal)
        printf ("last refusal: %s\n", last_refusal);
    for (uint32_t index = 0; index < options->nodes; index++)
        zsock_destroy (&nodes[index].sock);
    zf_free (latencies);
    zf_free (items);
    zf_free (nodes);
}

static size_t s_discard (char *data, size_t size, size_t count, void *arg)
{
    (void) data;
    *(size_t *) arg += size * count;
    return size * count;
}

//  GET /api/v1/hosts pages one after another on one connection (keep-alive).
static void s_list (const options_t *options)
{
    CURL *curl = curl_easy_init ();
    char authorization[128];
    snprintf (authorization, sizeof authorization, "Authorization: Bearer %s", options->api_token);
    struct curl_slist *headers = curl_slist_append (NULL, authorization);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 30L);
    size_t bytes = 0;
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_discard);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &bytes);
    uint32_t *latencies = zf_calloc (options->list, sizeof *latencies);
    size_t ok = 0;
    uint32_t pages = options->nodes / options->per_page;
    for (uint32_t index = 0; index < options->list; index++) {
        char url[512];
        snprintf (url, sizeof url, "%s/api/v1/hosts?page=%u&per_page=%u", options->api,
                  1 + (uint32_t) randof (pages ? pages : 1), options->per_page);
        curl_easy_setopt (curl, CURLOPT_URL, url);
        int64_t started = zf_clock_mono_us ();
        long status = 0;
        if (curl_easy_perform (curl) == CURLE_OK
            && curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK
            && status == 200)
            latencies[ok++] = (uint32_t) (zf_clock_mono_us () - started);
    }
    qsort (latencies, ok, sizeof *latencies, s_compare);
    printf ("host list: requests=%u ok=%zu per_page=%u bytes=%zu p50=%.2f ms p99=%.2f ms "
            "max=%.2f ms\n",
            options->list, ok, options->per_page, bytes, s_percentile (latencies, ok, 0.5) / 1e3,
            s_percentile (latencies, ok, 0.99) / 1e3, ok ? latencies[ok - 1] / 1e3 : 0.0);
    zf_free (latencies);
    curl_slist_free_all (headers);
    curl_easy_cleanup (curl);
}

int main (int argc, char *argv[])
{
    options_t options = {.nodes = 2000, .prefix = "bench", .timeout_s = 60, .per_page = 50};
    const char *token_file = NULL, *api_token_file = NULL, *server_cert = NULL;
    static const struct option long_options[] = {
        {"connect", required_argument, NULL, 'c'},
        {"server-key", required_argument, NULL, 'k'},
        {"server-cert", required_argument, NULL, 'K'},
        {"token-file", required_argument, NULL, 't'},
        {"nodes", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"prefix", required_argument, NULL, 'p'},
        {"pid", required_argument, NULL, 'P'},
        {"timeout", required_argument, NULL, 'T'},
        {"api", required_argument, NULL, 'a'},
        {"api-token-file", required_argument, NULL, 'A'},
        {"list", required_argument, NULL, 'l'},
        {"per-page", required_argument, NULL, 'g'},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long (argc, argv, "", long_options, NULL)) != -1) {
        switch (option) {
        case 'c': options.connect = optarg; break;
        case 'k': options.server_key = optarg; break;
        case 'K': server_cert = optarg; break;
        case 't': token_file = optarg; break;
        case 'n': options.nodes = (uint32_t) strtoul (optarg, NULL, 10); break;
        case 'r': options.rate = (uint32_t) strtoul (optarg, NULL, 10); break;
        case 'p': options.prefix = optarg; break;
        case 'P': options.pid = (int) strtol (optarg, NULL, 10); break;
        case 'T': options.timeout_s = (int) strtol (optarg, NULL, 10); break;
        case 'a': options.api = optarg; break;
        case 'A': api_token_file = optarg; break;
        case 'l': options.list = (uint32_t) strtoul (optarg, NULL, 10); break;
        case 'g': options.per_page = (uint32_t) strtoul (optarg, NULL, 10); break;
        default:
            fprintf (stderr, "usage: see the comment at the top of tools/zfly-joinbench.c\n");
            return 2;
        }
    }
    zcert_t *cert = server_cert ? zcert_load (server_cert) : NULL;
    if (cert)
        options.server_key = zcert_public_txt (cert);
    if (!options.connect || !options.server_key || !token_file || options.nodes == 0
        || options.per_page == 0) {
        fprintf (stderr, "zfly-joinbench: --connect, --server-key (or --server-cert) and "
                         "--token-file are required\n");
        return 2;
    }
    //  One socket (descriptor) per simulated node.
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < options.nodes + 256) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    zsys_handler_set (NULL);
    options.token = s_read_line (token_file);
    s_storm (&options);
    if (options.api && api_token_file && options.list) {
        options.api_token = s_read_line (api_token_file);
        curl_global_init (CURL_GLOBAL_DEFAULT);
        s_list (&options);
        curl_global_cleanup ();
        zf_free (options.api_token);
    }
    zf_free (options.token);
    zcert_destroy (&cert);
    return 0;
}
