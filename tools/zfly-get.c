/*  zfly-get — download a URL through the local zfly daemon into a file (like dfget).

    zfly-get URL -O PATH [--digest sha256:HEX] [--header 'Name: value']… [-c FILE]

    zfly-get finds the daemon's fetcher and storage through its INI file ([fetcher] bind and
    [storage] bind; [fetcher] events_bind for task.ended) and reads the task with the task
    reader the proxy uses too (bus/zf_task_reader.h): the fetcher brings the task into the
    cache, and each piece is written to PATH.part as storage finishes it, in order. This file
    is the command line and the run; zf_get.h lists the other parts (where the daemon is, the
    download, the output, the hard link, the progress display).

    Output. With storage on this host (ipc://) the reader locates each piece (its cache file
    and offset) and zfly-get copies it itself, cheapest first: a reflink (FICLONERANGE, where
    the filesystem shares blocks), else the piece's mapped pages written with O_DIRECT, else
    copy_file_range, else pread/pwrite; a cache file it cannot use sends the reader over the
    bus for the rest. From storage elsewhere (tcp://) the reader brings the bytes, checked
    against each piece's SHA-256. --digest hashes the bytes written, in order. Where the cache
    file is on PATH's filesystem and ours, nothing is copied: PATH becomes a hard link of it
    once the task is complete (zf_get_link.c; --copy: never).

    PATH.part is renamed to PATH only once the fetcher reports the task complete (it checked
    the content digest, when there is one), every byte is written and synced, and the --digest
    check passed: nothing half-written ever carries the final name. A layout that changes
    while the task runs (the origin's content changed under a stale copy) starts PATH.part
    over.

    Requests to the daemon are patient: a daemon that is connected but slow (starved of CPU)
    is waited for; --timeout bounds only how long it may be unreachable.

    zfly-get is a client of the node it reads the file of: its bus address is get-PID@NODE, so
    storage serves it as a local reader, never limited by the upload rate meant for other
    nodes.

    Exit status: 0 done, 1 other error, 2 usage or configuration, 3 daemon unreachable,
    4 source error (origin status or network, or the origin refused these credentials),
    5 digest mismatch. */
#include "zf_bus.h"
#include "zf_get.h"
#include "zf_log.h"
#include "zf_sections.h"
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CONFIG     "/etc/zfly/zfly.ini"
#define DEFAULT_TIMEOUT_MS 3000

static void s_usage (FILE *out)
{
    fprintf (
        out,
        "usage: zfly-get URL -O PATH [--digest sha256:HEX] [--header 'Name: value']...\n"
        "                [-c FILE] [--parent NAME]... [--timeout DURATION] [--copy] [--quiet]\n"
        "\n"
        "Downloads URL through the local zfly daemon (peer to peer, or from the origin) into\n"
        "its cache and writes it to PATH. The bytes go to PATH.part first, which is renamed to\n"
        "PATH only when complete (and verified, with --digest); PATH never holds a partial file.\n"
        "Where the daemon's cache file is on PATH's filesystem and is yours (the daemon runs as\n"
        "you do), PATH is a hard link of it, so no byte is written twice; changing PATH later\n"
        "makes the daemon drop its copy, never the other way round.\n"
        "\n"
        "  -O, --output PATH        where to write the file (required)\n"
        "  -d, --digest sha256:HEX  expected SHA-256 of the content: the daemon verifies it and\n"
        "                           zfly-get checks the written file again\n"
        "  -H, --header 'K: V'      HTTP header for the origin (repeatable, at most %d), such as\n"
        "                           'Authorization: Bearer TOKEN'\n"
        "  -c, --config FILE        the daemon's INI file (default: $ZFLY_CONFIG, else %s);\n"
        "                           zfly-get talks to its [fetcher] bind and [storage] bind\n"
        "  -p, --parent NAME        take pieces from this storage actor (storage@NODE, named in\n"
        "                           the daemon's [endpoints]) instead of the origin; repeatable,\n"
        "                           at most %d; for testing and manual use\n"
        "  -t, --timeout DURATION   how long to wait for the daemon's first answer (default 3s);\n"
        "                           later requests wait at least 10s\n"
        "      --idle-timeout DURATION  give up when the download makes no progress this long\n"
        "                           (default: never; the daemon has its own origin timeouts)\n"
        "      --progress MODE      bar (one line redrawn), lines (a line every 5s), none, or\n"
        "                           auto (default: bar on a terminal, else lines)\n"
        "      --copy               make PATH a copy of its own, never a hard link of the\n"
        "                           daemon's cache file\n"
        "  -q, --quiet              same as --progress none; errors are still printed\n"
        "  -v, --verbose            log bus activity to stderr\n"
        "  -h, --help               this text\n"
        "\n"
        "Exit status:\n"
        "  0  the file is at PATH\n"
        "  1  another error (PATH cannot be written, the daemon refused the request, ...)\n"
        "  2  usage or configuration error\n"
        "  3  no zfly daemon answered (not running, or not at the configured endpoints)\n"
        "  4  source error: the origin answered with an error status, or the network failed\n"
        "  5  digest mismatch: the content is not what --digest says\n",
        ZF_GET_HEADERS_MAX, DEFAULT_CONFIG, ZF_GET_PARENTS_ARG_MAX);
}

// --- command line ---------------------------------------------------------------------------

static bool s_is_token_char (int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c != '\0' && strchr ("!#$%&'*+-.^_`|~", c));
}

//  "Name: value" -> a header; false with why in `why` when the text is not one.
static bool s_parse_header (const char *text, zf_rec_http_header_t *header, char *why,
                            size_t why_size)
{
    const char *colon = strchr (text, ':');
    if (!colon) {
        snprintf (why, why_size, "expected 'Name: value'");
        return false;
    }
    if (colon == text) {
        snprintf (why, why_size, "the header name is empty");
        return false;
    }
    for (const char *cursor = text; cursor < colon; cursor++)
        if (!s_is_token_char ((unsigned char) *cursor)) {
            snprintf (why, why_size, "'%.*s' is not a valid header name", (int) (colon - text),
                      text);
            return false;
        }
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t value_len = strlen (value);
    while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
        value_len--;
    for (size_t index = 0; index < value_len; index++)
        if (value[index] == '\r' || value[index] == '\n' || value[index] == '\0') {
            snprintf (why, why_size, "the value contains a line break");
            return false;
        }
    if (colon - text > 256 || value_len > 8192) {
        snprintf (why, why_size, "too long (name at most 256 bytes, value at most 8192)");
        return false;
    }
    header->name = zf_strndup (text, (size_t) (colon - text));
    header->value = zf_strndup (value, value_len);
    return true;
}

static bool s_parse_digest (const char *text, char *digest, size_t digest_size)
{
    if (strncasecmp (text, "sha256:", 7) != 0 || strlen (text + 7) != 64)
        return false;
    size_t used = zf_strlcpy (digest, "sha256:", digest_size);
    for (const char *cursor = text + 7; *cursor; cursor++) {
        if (!isxdigit ((unsigned char) *cursor))
            return false;
        digest[used++] = (char) tolower ((unsigned char) *cursor);
    }
    digest[used] = '\0';
    return true;
}

static void s_options_clear (zf_get_options_t *options)
{
    for (size_t index = 0; index < options->header_count; index++) {
        zf_free (options->headers[index].name);
        zf_free (options->headers[index].value);
    }
    for (size_t index = 0; index < options->parent_count; index++)
        zf_free (options->parents[index]);
}

//  Returns -1 to go on, else the exit status.
static int s_parse_args (int argc, char *argv[], zf_get_options_t *options)
{
    static const struct option long_options[] = {
        {"output", required_argument, NULL, 'O'},
        {"digest", required_argument, NULL, 'd'},
        {"header", required_argument, NULL, 'H'},
        {"config", required_argument, NULL, 'c'},
        {"parent", required_argument, NULL, 'p'},
        {"timeout", required_argument, NULL, 't'},
        {"idle-timeout", required_argument, NULL, 'I'},
        {"progress", required_argument, NULL, 'P'},
        {"copy", no_argument, NULL, 'C'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    options->timeout_ms = DEFAULT_TIMEOUT_MS;
    int option;
    zf_error_t err;
    char why[160];
    while ((option = getopt_long (argc, argv, "O:d:H:c:p:t:qvh", long_options, NULL)) != -1) {
        switch (option) {
        case 'O': options->output = optarg; break;
        case 'd':
            if (!s_parse_digest (optarg, options->digest, sizeof options->digest)) {
                fprintf (stderr,
                         "zfly-get: --digest '%s': expected sha256: followed by 64 hex digits\n",
                         optarg);
                return ZF_GET_EXIT_USAGE;
            }
            break;
        case 'H':
            if (options->header_count == ZF_GET_HEADERS_MAX) {
                fprintf (stderr, "zfly-get: more than %d --header options\n", ZF_GET_HEADERS_MAX);
                return ZF_GET_EXIT_USAGE;
            }
            if (!s_parse_header (optarg, &options->headers[options->header_count], why,
                                 sizeof why)) {
                fprintf (stderr, "zfly-get: --header '%s': %s\n", optarg, why);
                return ZF_GET_EXIT_USAGE;
            }
            options->header_count++;
            break;
        case 'c': options->config_path = optarg; break;
        case 'p':
            if (options->parent_count == ZF_GET_PARENTS_ARG_MAX || strlen (optarg) == 0
                || strlen (optarg) > 128) {
                fprintf (stderr, "zfly-get: --parent '%s': at most %d parents of 1..128 bytes\n",
                         optarg, ZF_GET_PARENTS_ARG_MAX);
                return ZF_GET_EXIT_USAGE;
            }
            options->parents[options->parent_count++] = zf_strdup (optarg);
            break;
        case 't':
        case 'I': {
            int64_t ms;
            if (zf_config_parse_duration (optarg, &ms, &err) != ZF_OK || (option == 't' && ms <= 0)
                || ms < 0) {
                fprintf (stderr, "zfly-get: --%s '%s': expected a duration such as 3s or 500ms\n",
                         option == 't' ? "timeout" : "idle-timeout", optarg);
                return ZF_GET_EXIT_USAGE;
            }
            if (option == 't')
                options->timeout_ms = ms;
            else
                options->idle_timeout_ms = ms;
            break;
        }
        case 'P':
            if (streq (optarg, "auto"))
                options->progress = ZF_GET_PROGRESS_AUTO;
            else if (streq (optarg, "bar"))
                options->progress = ZF_GET_PROGRESS_BAR;
            else if (streq (optarg, "lines"))
                options->progress = ZF_GET_PROGRESS_LINES;
            else if (streq (optarg, "none"))
                options->progress = ZF_GET_PROGRESS_NONE;
            else {
                fprintf (stderr, "zfly-get: --progress '%s': expected auto, bar, lines or none\n",
                         optarg);
                return ZF_GET_EXIT_USAGE;
            }
            break;
        case 'C': options->copy = true; break;
        case 'q': options->progress = ZF_GET_PROGRESS_NONE; break;
        case 'v': options->verbose = true; break;
        case 'h': s_usage (stdout); return ZF_GET_EXIT_OK;
        default: fprintf (stderr, "zfly-get: try zfly-get --help\n"); return ZF_GET_EXIT_USAGE;
        }
    }
    if (optind == argc) {
        fprintf (stderr, "zfly-get: no URL given (try zfly-get --help)\n");
        return ZF_GET_EXIT_USAGE;
    }
    if (optind + 1 != argc) {
        fprintf (stderr, "zfly-get: unexpected argument '%s' (one URL at a time)\n",
                 argv[optind + 1]);
        return ZF_GET_EXIT_USAGE;
    }
    options->url = argv[optind];
    if (strlen (options->url) > 8192 || !strstr (options->url, "://")) {
        fprintf (stderr, "zfly-get: '%s' is not a URL (expected http:// or https://)\n",
                 options->url);
        return ZF_GET_EXIT_USAGE;
    }
    if (!options->output || !*options->output) {
        fprintf (stderr, "zfly-get: no output file: use -O PATH\n");
        return ZF_GET_EXIT_USAGE;
    }
    if (!options->config_path) {
        const char *from_env = getenv ("ZFLY_CONFIG");
        options->config_path = from_env && *from_env ? from_env : DEFAULT_CONFIG;
    }
    return -1;
}

// --- main -----------------------------------------------------------------------------------

static int s_run (const zf_get_options_t *options, zf_config_t *config)
{
    const zf_node_config_t *node_config = zf_config_section (config, "node");
    const zf_bus_config_t *bus_config = zf_config_section_or_defaults (config, "bus");
    //  The certificate is needed only to reach a tcp:// bind (it must be readable by us).
    bool needs_cert = zf_get_needs_cert (config);
    //  We are a client of this node: our node name is the daemon's, so storage serves us as a
    //  local reader (never limited by upload_rate), and our actor name is unique per process.
    char *actor_name = zf_asprintf ("get-%d", (int) getpid ());
    zf_node_options_t node_options = {
        .name = zf_node_config_name (node_config),
        .cert_path = needs_cert && *bus_config->cert ? bus_config->cert : NULL,
        .insecure = bus_config->insecure,
        .hwm = (int) bus_config->hwm,
        .request_timeout_ms = options->timeout_ms,
        .request_retries = 2,
    };
    zf_error_t err;
    zf_node_t *node = zf_node_new (&node_options, &err);
    if (!node) {
        fprintf (stderr, "zfly-get: %s\n", err.message);
        zf_free (actor_name);
        return ZF_GET_EXIT_USAGE;
    }
    zf_get_t self = {.options = options,
                     .config_path = zf_config_path (config),
                     .fd = -1,
                     .direct_fd = -1,
                     .link_fd = -1,
                     .progress = {.mode = options->progress}};
    if (self.progress.mode == ZF_GET_PROGRESS_AUTO)
        self.progress.mode = isatty (STDERR_FILENO) ? ZF_GET_PROGRESS_BAR : ZF_GET_PROGRESS_LINES;
    int exit_code =
        zf_get_route (config, node, "fetcher", bus_config->insecure, &self.fetcher_endpoint);
    if (exit_code < 0)
        exit_code =
            zf_get_route (config, node, "storage", bus_config->insecure, &self.storage_endpoint);
    if (exit_code < 0) {
        const char *missing = zf_get_ipc_missing (self.fetcher_endpoint)   ? self.fetcher_endpoint
                              : zf_get_ipc_missing (self.storage_endpoint) ? self.storage_endpoint
                                                                           : NULL;
        if (missing) {
            zf_get_no_daemon (&self, missing, "its socket file does not exist");
            exit_code = ZF_GET_EXIT_UNREACHABLE;
        }
    }
    if (exit_code < 0) {
        self.part_path = zf_asprintf ("%s.part", options->output);
        self.fd = open (self.part_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (self.fd < 0) {
            fprintf (stderr, "zfly-get: cannot create %s: %s\n", self.part_path, strerror (errno));
            exit_code = ZF_GET_EXIT_OTHER;
        }
    }
    if (exit_code < 0)
        exit_code = zf_get_download (&self, node, actor_name);
    if (self.fd >= 0)
        close (self.fd);
    if (self.direct_fd >= 0)
        close (self.direct_fd);
    if (self.link_fd >= 0)
        close (self.link_fd);
    zf_free (self.link_path);
    if (exit_code != ZF_GET_EXIT_OK && self.part_path)
        unlink (self.part_path);
    zf_free (self.part_path);
    zf_free (self.fetcher_endpoint);
    zf_free (self.storage_endpoint);
    zf_node_destroy (&node);
    zf_free (actor_name);
    return exit_code;
}

int main (int argc, char *argv[])
{
    zf_get_options_t options = {0};
    int exit_code = s_parse_args (argc, argv, &options);
    if (exit_code >= 0) {
        s_options_clear (&options);
        return exit_code;
    }
    zf_log_set_level (options.verbose ? ZF_LOG_DEBUG : ZF_LOG_ERROR);
    zf_bus_process_init ();
    struct stat info;
    if (stat (options.config_path, &info) != 0) {
        fprintf (stderr,
                 "zfly-get: cannot read the zfly configuration %s: %s; point -c (or "
                 "$ZFLY_CONFIG) at the INI file of the local zfly daemon, or start one with "
                 "`zfly -c FILE` (e.g. tools/setup.sh && tools/build.sh && build/zfly -c "
                 "deploy/allinone.ini)\n",
                 options.config_path, strerror (errno));
        s_options_clear (&options);
        return ZF_GET_EXIT_UNREACHABLE;
    }
    size_t section_count;
    const zf_config_section_t *const *sections = zf_all_sections (&section_count);
    zf_error_t err;
    zf_config_t *config =
        zf_config_load (sections, section_count, options.config_path, NULL, 0, &err);
    if (!config) {
        fprintf (stderr, "zfly-get: %s\n", err.message);
        s_options_clear (&options);
        return ZF_GET_EXIT_USAGE;
    }
    exit_code = s_run (&options, config);
    zf_config_destroy (&config);
    s_options_clear (&options);
    return exit_code;
}
