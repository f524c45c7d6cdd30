/*  zfly-preheat — submit a preheat job to the manager and follow it to its end.

    zfly-preheat IMAGE|URL... [--platform P] [--scope S] [--cluster ID]... [--header 'K: V']...
                 [--username U --password-stdin] [--manager URL] [--token-file F] [--wait]
                 [--json]
    zfly-preheat --follow ID [--json]

    Arguments are image references ("registry.example/team/app:v1"), manifest URLs
    ("https://registry.example/v2/team/app/manifests/v1") or, for a file job, file URLs
    (http(s) URLs that are not manifest URLs); one job takes them all. The password is read
    from standard input (--password-stdin), never from the command line; the manager keeps it
    sealed while the job runs and drops it when the job ends.

    With --wait (or --follow) the job is followed to its end: on a terminal one status line is
    redrawn (blobs done/total, bytes, rate, hosts with failures); on a pipe a line is printed
    every 5 s and at each change of state. The job's end goes to stdout (--json: the job as the
    API shows it, with every blob on every host).

    Exit status: 0 the job was submitted (and, waited for, succeeded); 1 another error; 2 bad
    usage, or a job the manager refused as invalid (400); 3 the manager cannot be reached; 4
    not authorised (401, 403); 5 the job failed or was cancelled (the reason is printed). */
#include "zf_api_client.h"
#include "zf_clock.h"
#include "zf_human.h"
#include "zf_secret.h"
#include <curl/curl.h>
#include <getopt.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum {
    EXIT_JOB_FAILED = ZF_API_EXIT_OWN, //  5
};

#define S_POLL_MS          500
#define S_LINE_INTERVAL_MS 5000
#define S_HEADERS_MAX      64
#define S_CLUSTERS_MAX     256
#define S_URLS_MAX         32

typedef struct {
    const char *platform, *scope, *username, *type, *timeout;
    const char *headers[S_HEADERS_MAX];
    size_t header_count;
    long clusters[S_CLUSTERS_MAX];
    size_t cluster_count;
    long concurrency;
    bool password_stdin, wait, json;
    long follow;
} s_options_t;

static void s_usage (FILE *out)
{
    fprintf (out,
             "usage: zfly-preheat IMAGE|URL... [options]\n"
             "       zfly-preheat --follow ID [--json]\n"
             "\n"
             "Has the cluster's seed peers (or every peer) fetch an image's blobs, or files,\n"
             "before anyone pulls them. IMAGE is a reference (registry.example/team/app:v1) or\n"
             "a manifest URL (https://HOST/v2/REPO/manifests/TAG); other http(s) URLs are files.\n"
             "\n"
             "Options:\n"
             "  --platform P        os/arch[/variant] of a multi-arch image, or all\n"
             "                      (default linux/amd64)\n"
             "  --scope S           single_seed_peer (default), all_seed_peers or all_peers\n"
             "  --cluster ID        a scheduler cluster (repeatable; default: every cluster)\n"
             "  --header 'K: V'     a header for the registry or file server (repeatable)\n"
             "  --username U        registry user; the password comes from --password-stdin\n"
             "  --password-stdin    read the registry password from standard input\n"
             "  --type image|file   what the arguments are (default: guessed from them)\n"
             "  --concurrency N     blobs fetched at once (default: the worker's)\n"
             "  --timeout D         the job's deadline, e.g. 30m (default: the worker's)\n"
             "  --wait              follow the job to its end, with progress\n"
             "  --follow ID         follow an existing job\n"
             "  --json              print the job as JSON\n"
             "  --manager URL       the manager's API (default $ZFLY_MANAGER or\n"
             "                      http://127.0.0.1:8888)\n"
             "  --token-file FILE   bearer token (default $ZFLY_TOKEN_FILE or\n"
             "                      ~/.config/zfly/token)\n"
             "  -h, --help          this text\n"
             "\n"
             "Exit status: 0 ok, 1 other error, 2 usage or a job the manager refused as\n"
             "invalid, 3 manager unreachable, 4 not authorised, 5 the job failed.\n");
}

static int s_exit_for (long status)
{
    return status == 400 ? ZF_API_EXIT_USAGE : zf_api_exit_status (status);
}

//  "30m", "90s", "2h" -> nanoseconds (the API's timeout is Go's time.Duration); -1 if bad.
static int64_t s_duration_ns (const char *text)
{
    char *end = NULL;
    long long value = strtoll (text, &end, 10);
    if (end == text || value < 0)
        return -1;
    int64_t unit = streq (end, "s") || !*end ? 1
                   : streq (end, "m")        ? 60
                   : streq (end, "h")        ? 3600
                                             : 0;
    if (!unit || value > 7 * 24 * 3600 / unit)
        return -1;
    return (int64_t) value * unit * INT64_C (1000000000);
}

//  A manifest URL or a reference is an image; any other http(s) URL is a file.
static bool s_is_file (const char *argument)
{
    bool url = strncmp (argument, "http://", 7) == 0 || strncmp (argument, "https://", 8) == 0;
    return url && !(strstr (argument, "/v2/") && strstr (argument, "/manifests/"));
}

static char *s_read_password (void)
{
    char line[1100] = "";
    if (!fgets (line, sizeof line, stdin))
        return NULL;
    line[strcspn (line, "\r\n")] = '\0';
    char *password = zf_strdup (line);
    explicit_bzero (line, sizeof line);
    return password;
}

//  ---------------------------------------------------------------------------------------------
//  Following a job

//  A string value, or fallback when it is absent or not a string.
static const char *s_text (json_t *value, const char *fallback)
{
    const char *text = json_string_value (value);
    return text ? text : fallback;
}

typedef struct {
    bool bar; //  a terminal: one line redrawn
    bool bar_drawn;
    int64_t last_line_ms;
    char last_state[16];
    int64_t sample_ms;
    int64_t sample_bytes;
    double rate;
} s_follow_t;

//  Calls each (blob, host) of the job's tasks that failed (a host of a blob in "failure").
typedef void (s_failure_fn) (json_t *blob, json_t *host, void *arg);

static void s_each_failure (json_t *job, s_failure_fn *each, void *arg)
{
    size_t index, position;
    json_t *blob, *host;
    json_array_foreach (json_object_get (job, "blobs"), index, blob)
        json_array_foreach (json_object_get (blob, "hosts"), position, host)
    {
        if (streq (s_text (json_object_get (host, "state"), ""), "failure"))
            each (blob, host, arg);
    }
}

static void s_count_failure (json_t *blob, json_t *host, void *arg)
{
    (void) blob;
    json_t *counts = arg;
    const char *name = json_string_value (json_object_get (host, "host"));
    json_int_t count = json_integer_value (json_object_get (counts, name ? name : "?"));
    json_object_set_new (counts, name ? name : "?", json_integer (count + 1));
}

//  "seed-2 (2), edge-1 (1)": hosts with failed tasks and how many.
static void s_failed_hosts (json_t *job, char *text, size_t size)
{
    json_t *counts = json_object ();
    s_each_failure (job, s_count_failure, counts);
    text[0] = '\0';
    size_t used = 0;
    const char *name;
    json_t *count;
    json_object_foreach (counts, name, count)
    {
        int written = snprintf (text + used, size - used, "%s%s (%" JSON_INTEGER_FORMAT ")",
                                used ? ", " : "", name, json_integer_value (count));
        if (written < 0 || (size_t) written >= size - used)
            break;
        used += (size_t) written;
    }
    json_decref (counts);
}

static void s_progress (s_follow_t *follow, json_t *job, bool final)
{
    const char *state = s_text (json_object_get (job, "state"), "?");
    json_t *progress = json_object_get (job, "progress");
    json_int_t blobs_done = json_integer_value (json_object_get (progress, "blobs_done"));
    json_int_t blobs_total = json_integer_value (json_object_get (progress, "blobs_total"));
    json_int_t bytes_done = json_integer_value (json_object_get (progress, "bytes_done"));
    json_int_t bytes_total = json_integer_value (json_object_get (progress, "bytes_total"));
    int64_t now = zf_clock_mono_ms ();
    if (follow->sample_ms && now > follow->sample_ms) {
        double rate = (double) (bytes_done - follow->sample_bytes) * 1000.0
                      / (double) (now - follow->sample_ms);
        follow->rate = follow->rate > 0 ? 0.7 * follow->rate + 0.3 * rate : rate;
    }
    follow->sample_ms = now;
    follow->sample_bytes = bytes_done;
    bool changed = !streq (state, follow->last_state);
    zf_strlcpy (follow->last_state, state, sizeof follow->last_state);
    if (!follow->bar && !final && !changed && now - follow->last_line_ms < S_LINE_INTERVAL_MS)
        return;
    follow->last_line_ms = now;
    char done_text[32], total_text[32], rate_text[32], failures[256];
    zf_human_bytes ((uint64_t) bytes_done, done_text, sizeof done_text);
    zf_human_bytes ((uint64_t) bytes_total, total_text, sizeof total_text);
    zf_human_bytes ((uint64_t) (follow->rate > 0 ? follow->rate : 0), rate_text, sizeof rate_text);
    s_failed_hosts (job, failures, sizeof failures);
    json_int_t id = json_integer_value (json_object_get (job, "id"));
    if (!follow->bar) {
        fprintf (stderr,
                 "zfly-preheat: job %" JSON_INTEGER_FORMAT " %s blobs=%" JSON_INTEGER_FORMAT
                 "/%" JSON_INTEGER_FORMAT " bytes=%s/%s rate=%s/s%s%s\n",
                 id, state, blobs_done, blobs_total, done_text, total_text, rate_text,
                 *failures ? " failed=" : "", failures);
        return;
    }
    struct winsize size;
    int columns = ioctl (STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col ? size.ws_col : 80;
    int bar_width = columns - 70;
    bar_width = bar_width > 30 ? 30 : bar_width;
    char bar[40] = "";
    if (bar_width >= 10) {
        int filled = blobs_total ? (int) (bar_width * blobs_done / blobs_total) : 0;
        bar[0] = '[';
        for (int index = 0; index < bar_width; index++)
            bar[1 + index] = index < filled ? '=' : (index == filled ? '>' : ' ');
        bar[1 + bar_width] = ']';
    }
    fprintf (stderr,
             "\rjob %" JSON_INTEGER_FORMAT " %-9s %s %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
             " blobs  %s / %s  %s/s%s%s\033[K",
             id, state, bar, blobs_done, blobs_total, done_text, total_text, rate_text,
             *failures ? "  failed: " : "", failures);
    follow->bar_drawn = true;
    if (final) {
        fputc ('\n', stderr);
        follow->bar_drawn = false;
    }
}

//  "  HOST DIGEST: WHY" (the URL for a blob without a digest).
static void s_print_failure (json_t *blob, json_t *host, void *arg)
{
    (void) arg;
    const char *digest = json_string_value (json_object_get (blob, "digest"));
    printf ("  %s %s: %s\n", s_text (json_object_get (host, "host"), "?"),
            digest && *digest ? digest : s_text (json_object_get (blob, "url"), ""),
            s_text (json_object_get (host, "description"), ""));
}

//  The job's end, for people: why it failed and which hosts failed which blobs.
static void s_print_end (json_t *job)
{
    json_int_t id = json_integer_value (json_object_get (job, "id"));
    const char *state = s_text (json_object_get (job, "state"), "?");
    json_t *progress = json_object_get (job, "progress");
    char total[32];
    zf_human_bytes ((uint64_t) json_integer_value (json_object_get (progress, "bytes_total")),
                    total, sizeof total);
    if (streq (state, "success")) {
        printf ("job %" JSON_INTEGER_FORMAT " success: %" JSON_INTEGER_FORMAT
                " blobs, %" JSON_INTEGER_FORMAT " tasks, %s\n",
                id, json_integer_value (json_object_get (progress, "blobs_total")),
                json_integer_value (json_object_get (progress, "tasks_total")), total);
        return;
    }
    printf ("job %" JSON_INTEGER_FORMAT " %s: %s\n", id, state,
            s_text (json_object_get (job, "error"), ""));
    s_each_failure (job, s_print_failure, NULL);
}

static int s_follow (const zf_api_client_t *client, long id, bool json)
{
    s_follow_t follow = {.bar = isatty (STDERR_FILENO) && !json};
    char path[64];
    snprintf (path, sizeof path, "/api/v1/jobs/%ld", id);
    int unreachable = 0;
    while (true) {
        json_t *job = NULL;
        long status = zf_api_call (client, "GET", path, NULL, &job);
        if (status == 0 && ++unreachable < 10) { //  a manager restarting: ask again
            zclock_sleep (1000);
            continue;
        }
        if (status != 200) {
            if (follow.bar_drawn)
                fputc ('\n', stderr);
            return s_exit_for (status);
        }
        unreachable = 0;
        const char *state = s_text (json_object_get (job, "state"), "");
        bool final =
            streq (state, "success") || streq (state, "failure") || streq (state, "cancelled");
        if (!json)
            s_progress (&follow, job, final);
        if (final) {
            if (json) {
                char *text = json_dumps (job, JSON_INDENT (2) | JSON_SORT_KEYS);
                printf ("%s\n", text);
                free (text);
            } else
                s_print_end (job);
            int code = streq (state, "success") ? ZF_API_EXIT_OK : EXIT_JOB_FAILED;
            json_decref (job); //  state points into job
            return code;
        }
        json_decref (job);
        zclock_sleep (S_POLL_MS);
    }
}

//  ---------------------------------------------------------------------------------------------
//  Submitting

static json_t *s_job_body (const s_options_t *options, char **urls, size_t url_count,
                           const char *password, int *exit_code)
{
    *exit_code = ZF_API_EXIT_OK;
    bool file = s_is_file (urls[0]);
    for (size_t index = 1; index < url_count; index++)
        if (s_is_file (urls[index]) != file && !options->type) {
            fprintf (stderr, "zfly-preheat: give images or files, not both (or --type)\n");
            *exit_code = ZF_API_EXIT_USAGE;
            return NULL;
        }
    const char *type = options->type ? options->type : file ? "file" : "image";
    json_t *args = json_pack ("{s:s, s:[]}", "type", type, "urls");
    for (size_t index = 0; index < url_count; index++)
        json_array_append_new (json_object_get (args, "urls"), json_string (urls[index]));
    if (options->platform)
        json_object_set_new (args, "platform", json_string (options->platform));
    json_object_set_new (args, "scope", json_string (options->scope ? options->scope : ""));
    json_object_set_new (args, "concurrent_count", json_integer (options->concurrency));
    if (options->timeout)
        json_object_set_new (args, "timeout", json_integer (s_duration_ns (options->timeout)));
    if (options->header_count) {
        json_t *headers = json_object ();
        for (size_t index = 0; index < options->header_count; index++) {
            const char *line = options->headers[index];
            const char *colon = strchr (line, ':');
            char *name = zf_strndup (line, (size_t) (colon - line));
            const char *value = colon + 1;
            while (*value == ' ')
                value++;
            json_object_set_new (headers, name, json_string (value));
            zf_free (name);
        }
        json_object_set_new (args, "headers", headers);
    }
    if (options->username) {
        json_object_set_new (args, "username", json_string (options->username));
        json_object_set_new (args, "password", json_string (password ? password : ""));
    }
    json_t *clusters = json_null ();
    if (options->cluster_count) {
        clusters = json_array ();
        for (size_t index = 0; index < options->cluster_count; index++)
            json_array_append_new (clusters, json_integer (options->clusters[index]));
    }
    return json_pack ("{s:s, s:o, s:o}", "type", "preheat", "args", args, "scheduler_cluster_ids",
                      clusters);
}

static bool s_positive (const char *text, long *value)
{
    char *end = NULL;
    *value = strtol (text, &end, 10);
    return end != text && !*end && *value > 0;
}

int main (int argc, char *argv[])
{
    s_options_t options = {0};
    const char *server = NULL, *token_file = NULL;
    enum {
        O_PLATFORM = 256,
        O_SCOPE,
        O_CLUSTER,
        O_HEADER,
        O_USERNAME,
        O_PASSWORD_STDIN,
        O_TYPE,
        O_CONCURRENCY,
        O_TIMEOUT,
        O_WAIT,
        O_FOLLOW,
        O_JSON,
        O_MANAGER,
        O_TOKEN_FILE,
    };
    static const struct option long_options[] = {
        {"platform", required_argument, NULL, O_PLATFORM},
        {"scope", required_argument, NULL, O_SCOPE},
        {"cluster", required_argument, NULL, O_CLUSTER},
        {"header", required_argument, NULL, O_HEADER},
        {"username", required_argument, NULL, O_USERNAME},
        {"password-stdin", no_argument, NULL, O_PASSWORD_STDIN},
        {"type", required_argument, NULL, O_TYPE},
        {"concurrency", required_argument, NULL, O_CONCURRENCY},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"wait", no_argument, NULL, O_WAIT},
        {"follow", required_argument, NULL, O_FOLLOW},
        {"json", no_argument, NULL, O_JSON},
        {"manager", required_argument, NULL, O_MANAGER},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
        long number;
        switch (option) {
        case O_PLATFORM: options.platform = optarg; break;
        case O_SCOPE:
            if (!streq (optarg, "single_seed_peer") && !streq (optarg, "all_seed_peers")
                && !streq (optarg, "all_peers")) {
                fprintf (stderr, "zfly-preheat: --scope: single_seed_peer, all_seed_peers or "
                                 "all_peers\n");
                return ZF_API_EXIT_USAGE;
            }
            options.scope = optarg;
            break;
        case O_CLUSTER:
            if (!s_positive (optarg, &number) || options.cluster_count == S_CLUSTERS_MAX) {
                fprintf (stderr, "zfly-preheat: --cluster: a cluster id (a positive number)\n");
                return ZF_API_EXIT_USAGE;
            }
            options.clusters[options.cluster_count++] = number;
            break;
        case O_HEADER:
            if (!strchr (optarg, ':') || *optarg == ':' || options.header_count == S_HEADERS_MAX) {
                fprintf (stderr, "zfly-preheat: --header: 'Name: value'\n");
                return ZF_API_EXIT_USAGE;
            }
            options.headers[options.header_count++] = optarg;
            break;
        case O_USERNAME: options.username = optarg; break;
        case O_PASSWORD_STDIN: options.password_stdin = true; break;
        case O_TYPE:
            if (!streq (optarg, "image") && !streq (optarg, "file")) {
                fprintf (stderr, "zfly-preheat: --type: image or file\n");
                return ZF_API_EXIT_USAGE;
            }
            options.type = optarg;
            break;
        case O_CONCURRENCY:
            if (!s_positive (optarg, &options.concurrency) || options.concurrency > 1000) {
                fprintf (stderr, "zfly-preheat: --concurrency: 1..1000\n");
                return ZF_API_EXIT_USAGE;
            }
            break;
        case O_TIMEOUT:
            if (s_duration_ns (optarg) <= 0) {
                fprintf (stderr, "zfly-preheat: --timeout: a duration such as 90s, 30m, 2h\n");
                return ZF_API_EXIT_USAGE;
            }
            options.timeout = optarg;
            break;
        case O_WAIT: options.wait = true; break;
        case O_FOLLOW:
            if (!s_positive (optarg, &options.follow)) {
                fprintf (stderr, "zfly-preheat: --follow: a job id\n");
                return ZF_API_EXIT_USAGE;
            }
            break;
        case O_JSON: options.json = true; break;
        case O_MANAGER: server = optarg; break;
        case O_TOKEN_FILE: token_file = optarg; break;
        case 'h': s_usage (stdout); return ZF_API_EXIT_OK;
        default: s_usage (stderr); return ZF_API_EXIT_USAGE;
        }
    }
    size_t url_count = (size_t) (argc - optind);
    if ((options.follow && url_count) || (!options.follow && url_count == 0)) {
        s_usage (stderr);
        return ZF_API_EXIT_USAGE;
    }
    if (url_count > S_URLS_MAX) {
        fprintf (stderr, "zfly-preheat: at most %d images or files in one job\n", S_URLS_MAX);
        return ZF_API_EXIT_USAGE;
    }
    if (options.password_stdin != (options.username != NULL)) {
        fprintf (stderr, "zfly-preheat: --username and --password-stdin go together\n");
        return ZF_API_EXIT_USAGE;
    }
    char *password = NULL;
    if (options.password_stdin && !(password = s_read_password ())) {
        fprintf (stderr, "zfly-preheat: --password-stdin: nothing on standard input\n");
        return ZF_API_EXIT_USAGE;
    }
    zf_api_client_t client;
    zf_api_client_init (&client, "zfly-preheat", server, token_file);
    curl_global_init (CURL_GLOBAL_DEFAULT);
    int exit_code = ZF_API_EXIT_OK;
    long id = options.follow;
    if (!id) {
        json_t *body = s_job_body (&options, argv + optind, url_count, password, &exit_code);
        json_t *job = NULL;
        long status = body ? zf_api_call (&client, "POST", "/api/v1/jobs", body, &job) : 201;
        json_decref (body);
        if (exit_code == ZF_API_EXIT_OK && status != 201)
            exit_code = s_exit_for (status) ? s_exit_for (status) : ZF_API_EXIT_OTHER;
        if (exit_code == ZF_API_EXIT_OK) {
            id = (long) json_integer_value (json_object_get (job, "id"));
            if (!options.wait && options.json) {
                char *text = json_dumps (job, JSON_INDENT (2) | JSON_SORT_KEYS);
                printf ("%s\n", text);
                free (text);
            } else if (!options.wait)
                printf ("%ld\n", id); //  the id alone: `id=$(zfly-preheat …)` works
            else if (!options.json)
                fprintf (stderr, "zfly-preheat: job %ld submitted\n", id);
        }
        json_decref (job);
    }
    zf_secret_free (password);
    if (exit_code == ZF_API_EXIT_OK && (options.wait || options.follow))
        exit_code = s_follow (&client, id, options.json);
    curl_global_cleanup ();
    zf_api_client_clear (&client);
    return exit_code;
}
