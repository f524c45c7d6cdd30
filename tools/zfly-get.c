/*  zfly-get — download a URL through the local zfly daemon into a file (like dfget).

    zfly-get URL -O PATH [--digest sha256:HEX] [--header 'Name: value']… [-c FILE]

    zfly-get finds the daemon's fetcher and storage through its INI file ([fetcher] bind and
    [storage] bind; [fetcher] events_bind for task.ended) and reads the task with the task
    reader the proxy uses too (bus/zf_task_reader.h): the fetcher brings the task into the
    cache, and each piece is written to PATH.part as storage finishes it, in order. This file
    is the command line, the progress display and the output.

    Output. With storage on this host (ipc://) the reader locates each piece (its cache file
    and offset) and zfly-get copies it itself, cheapest first: a reflink (FICLONERANGE, where
    the filesystem shares blocks), else the piece's mapped pages written with O_DIRECT, else
    copy_file_range, else pread/pwrite; a cache file it cannot use sends the reader over the
    bus for the rest. From storage elsewhere (tcp://) the reader brings the bytes, checked
    against each piece's SHA-256. --digest hashes the bytes written, in order. Where the cache
    file is on PATH's filesystem and ours, nothing is copied: PATH becomes a hard link of it
    once the task is complete (s_link_*; --copy: never).

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
#include "zf_clock.h"
#include "zf_config.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include "zf_sections.h"
#include "zf_task_reader.h"
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK          0
#define EXIT_OTHER       1
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3
#define EXIT_SOURCE      4
#define EXIT_DIGEST      5

#define DEFAULT_CONFIG       "/etc/zfly/zfly.ini"
#define DEFAULT_TIMEOUT_MS   3000
#define LATER_TIMEOUT_MIN_MS 10000 //  once the daemon answered, it may be busy for a while
#define READ_TIMEOUT_MS      30000 //  one piece.read: up to a piece of 64 MiB over the bus
#define TICK_MS              200   //  progress redraws, the idle timeout
#define POLL_MS              50    //  storage.stat interval for a daemon that does not hold it
#define STAT_WAIT_MS         1000  //  how long storage may hold a storage.stat without news
#define READ_SLOTS           ZF_TASK_READER_WINDOW_MAX //  pieces located ahead at most
#define READ_BYTES_IN_FLIGHT (16u << 20) //  bytes of pieces read over the bus held at most
#define HEADERS_MAX          64
#define PARENTS_MAX          16
#define LINE_INTERVAL_MS     5000 //  plain progress lines when stderr is not a terminal
#define RATE_WINDOW          16   //  progress samples the rate is averaged over (~3 s)
#define SHA256_SIZE          32
#define COPY_BUFFER          (4u << 20) //  copies of located pieces through our buffer, per call
#define DIRECT_ALIGN         4096       //  O_DIRECT offsets, lengths and buffers: 512 or 4096

typedef enum { PROGRESS_AUTO, PROGRESS_BAR, PROGRESS_LINES, PROGRESS_NONE } progress_mode_t;

typedef struct {
    const char *url;
    const char *output;
    char digest[80]; //  "sha256:" + 64 lowercase hex, or ""
    zf_rec_http_header_t headers[HEADERS_MAX];
    size_t header_count;
    char *parents[PARENTS_MAX];
    size_t parent_count;
    const char *config_path;
    int64_t timeout_ms;
    int64_t idle_timeout_ms; //  0: none
    progress_mode_t progress;
    bool verbose;
    bool copy; //  never a hard link of the cache file
} options_t;

typedef struct {
    const options_t *options;
    const char *config_path;
    char *fetcher_endpoint;
    char *storage_endpoint;
    bool clone_ok;        //  FICLONERANGE has not failed yet (it needs a reflink filesystem)
    bool copy_range_ok;   //  copy_file_range has not failed yet
    uint8_t *copy_buffer; //  COPY_BUFFER bytes, DIRECT_ALIGN-aligned, once a copy needs it
    int direct_fd;        //  PATH.part opened O_DIRECT, -1 when the filesystem cannot
    bool locate;          //  storage is on this host: pieces are copied from its files
    int link_fd;          //  the cache file PATH is to be a hard link of, or -1 (s_link_*)
    bool link_decided;    //  the first located piece decided whether to link
    char *link_path;      //  …the cache file's path, and its identity
    dev_t link_dev;
    ino_t link_ino;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_task_readers_t *readers;
    zf_task_reader_t *reader;
    bool done;
    int exit_code;

    //  the task, as the fetcher reports it
    char task_id[72];
    uint64_t content_length, piece_count, finished_count;
    uint64_t bytes_from_source, bytes_from_parents;

    //  progress
    progress_mode_t progress;
    int64_t started_ms, last_line_ms, last_change_ms;
    int64_t sample_ms[RATE_WINDOW];
    uint64_t sample_bytes[RATE_WINDOW];
    size_t sample_count;
    bool bar_drawn;
    bool announced;

    //  the output
    char *part_path;
    int fd;
    EVP_MD_CTX *sha;
    uint64_t written;
} self_t;

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
        HEADERS_MAX, DEFAULT_CONFIG, PARENTS_MAX);
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

static void s_options_clear (options_t *options)
{
    for (size_t index = 0; index < options->header_count; index++) {
        zf_free (options->headers[index].name);
        zf_free (options->headers[index].value);
    }
    for (size_t index = 0; index < options->parent_count; index++)
        zf_free (options->parents[index]);
}

//  Returns -1 to go on, else the exit status.
static int s_parse_args (int argc, char *argv[], options_t *options)
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
                return EXIT_USAGE;
            }
            break;
        case 'H':
            if (options->header_count == HEADERS_MAX) {
                fprintf (stderr, "zfly-get: more than %d --header options\n", HEADERS_MAX);
                return EXIT_USAGE;
            }
            if (!s_parse_header (optarg, &options->headers[options->header_count], why,
                                 sizeof why)) {
                fprintf (stderr, "zfly-get: --header '%s': %s\n", optarg, why);
                return EXIT_USAGE;
            }
            options->header_count++;
            break;
        case 'c': options->config_path = optarg; break;
        case 'p':
            if (options->parent_count == PARENTS_MAX || strlen (optarg) == 0
                || strlen (optarg) > 128) {
                fprintf (stderr, "zfly-get: --parent '%s': at most %d parents of 1..128 bytes\n",
                         optarg, PARENTS_MAX);
                return EXIT_USAGE;
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
                return EXIT_USAGE;
            }
            if (option == 't')
                options->timeout_ms = ms;
            else
                options->idle_timeout_ms = ms;
            break;
        }
        case 'P':
            if (streq (optarg, "auto"))
                options->progress = PROGRESS_AUTO;
            else if (streq (optarg, "bar"))
                options->progress = PROGRESS_BAR;
            else if (streq (optarg, "lines"))
                options->progress = PROGRESS_LINES;
            else if (streq (optarg, "none"))
                options->progress = PROGRESS_NONE;
            else {
                fprintf (stderr, "zfly-get: --progress '%s': expected auto, bar, lines or none\n",
                         optarg);
                return EXIT_USAGE;
            }
            break;
        case 'C': options->copy = true; break;
        case 'q': options->progress = PROGRESS_NONE; break;
        case 'v': options->verbose = true; break;
        case 'h': s_usage (stdout); return EXIT_OK;
        default: fprintf (stderr, "zfly-get: try zfly-get --help\n"); return EXIT_USAGE;
        }
    }
    if (optind == argc) {
        fprintf (stderr, "zfly-get: no URL given (try zfly-get --help)\n");
        return EXIT_USAGE;
    }
    if (optind + 1 != argc) {
        fprintf (stderr, "zfly-get: unexpected argument '%s' (one URL at a time)\n",
                 argv[optind + 1]);
        return EXIT_USAGE;
    }
    options->url = argv[optind];
    if (strlen (options->url) > 8192 || !strstr (options->url, "://")) {
        fprintf (stderr, "zfly-get: '%s' is not a URL (expected http:// or https://)\n",
                 options->url);
        return EXIT_USAGE;
    }
    if (!options->output || !*options->output) {
        fprintf (stderr, "zfly-get: no output file: use -O PATH\n");
        return EXIT_USAGE;
    }
    if (!options->config_path) {
        const char *from_env = getenv ("ZFLY_CONFIG");
        options->config_path = from_env && *from_env ? from_env : DEFAULT_CONFIG;
    }
    return -1;
}

// --- where the daemon listens ---------------------------------------------------------------

//  The string value of SECTION.KEY from the loaded file, found through the section's key
//  table, so zfly-get needs no actor's private config struct. NULL when the section is absent.
static const char *s_config_string (zf_config_t *config, const char *section_name,
                                    const char *key_name)
{
    size_t count;
    const zf_config_section_t *const *sections = zf_all_sections (&count);
    for (size_t index = 0; index < count; index++) {
        const zf_config_section_t *section = sections[index];
        if (!streq (section->name, section_name) || section->free_form)
            continue;
        const void *values = zf_config_section (config, section_name);
        if (!values)
            return NULL;
        for (size_t key = 0; key < section->key_count; key++)
            if (streq (section->keys[key].key, key_name)
                && section->keys[key].kind == ZF_CONFIG_STR)
                return *(char *const *) ((const char *) values + section->keys[key].offset);
        return NULL;
    }
    return NULL;
}

static bool s_is_known_section (const char *name)
{
    size_t count;
    const zf_config_section_t *const *sections = zf_all_sections (&count);
    for (size_t index = 0; index < count; index++)
        if (streq (sections[index]->name, name))
            return true;
    return false;
}

//  A bind address turned into one we can connect to: wildcard hosts become loopback.
static char *s_connectable (const char *bind)
{
    if (strncmp (bind, "tcp://", 6) == 0) {
        const char *host = bind + 6;
        const char *port = strrchr (host, ':');
        if (port) {
            size_t host_len = (size_t) (port - host);
            if ((host_len == 1 && host[0] == '*')
                || (host_len == 7 && !strncmp (host, "0.0.0.0", 7)))
                return zf_asprintf ("tcp://127.0.0.1%s", port);
            if (host_len == 4 && !strncmp (host, "[::]", 4))
                return zf_asprintf ("tcp://[::1]%s", port);
        }
    }
    return zf_strdup (bind);
}

//  The endpoint of a bind list ("ipc://… tcp://…") a client on this host should use: the
//  first ipc:// one (no CURVE, file permissions), else the first tcp:// one; NULL if neither.
static char *s_client_endpoint (const char *bind)
{
    char *list = zf_strdup (bind ? bind : "");
    char *saveptr = NULL, *chosen = NULL;
    for (char *word = strtok_r (list, " \t", &saveptr); word;
         word = strtok_r (NULL, " \t", &saveptr)) {
        if (strncmp (word, "ipc://", 6) == 0) {
            zf_free (chosen);
            chosen = zf_strdup (word);
            break;
        }
        if (!chosen && strncmp (word, "tcp://", 6) == 0)
            chosen = zf_strdup (word);
    }
    zf_free (list);
    return chosen;
}

//  Finds where ACTOR (fetcher, storage) of the daemon listens and adds a route to it.
//  Returns -1 on success, else the exit status, having said why.
static int s_route (zf_config_t *config, zf_node_t *node, const char *actor, bool insecure,
                    char **endpoint_p)
{
    const char *path = zf_config_path (config);
    const char *bind = s_is_known_section (actor) ? s_config_string (config, actor, "bind") : NULL;
    bool has_section = s_is_known_section (actor) && zf_config_has_section (config, actor);
    zf_error_t err;
    if (!has_section) {
        //  The actor may run in another process that this file names in [endpoints].
        size_t count;
        const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &count);
        for (size_t index = 0; index < count; index++)
            if (streq (entries[index].key, actor)) {
                if (zf_node_add_route (node, actor, entries[index].value, entries[index].where,
                                       &err)
                    != ZF_OK) {
                    fprintf (stderr, "zfly-get: %s\n", err.message);
                    return EXIT_USAGE;
                }
                zf_route_t route;
                zf_node_resolve (node, actor, &route, &err);
                *endpoint_p = zf_strdup (route.endpoint);
                return -1;
            }
        fprintf (stderr,
                 "zfly-get: %s has no [%s] section: this node runs no %s, so zfly-get cannot "
                 "use it (use the INI file of a node that runs fetcher and storage, with -c)\n",
                 path, actor, actor);
        return EXIT_USAGE;
    }
    if (!bind || !*bind) {
        fprintf (stderr,
                 "zfly-get: %s: [%s] bind is not set, so only actors inside the daemon can "
                 "reach its %s; set for example  bind = ipc:///run/zfly/%s.sock  in [%s]\n",
                 path, actor, actor, actor, actor);
        return EXIT_USAGE;
    }
    char *chosen = s_client_endpoint (bind);
    if (!chosen) {
        fprintf (stderr,
                 "zfly-get: %s: [%s] bind = %s: zfly-get needs an ipc:// or tcp:// "
                 "endpoint\n",
                 path, actor, bind);
        return EXIT_USAGE;
    }
    char *endpoint = s_connectable (chosen);
    zf_free (chosen);
    //  where the actor publishes events (the fetcher's task.ended), when it does for us
    const char *events_bind = s_config_string (config, actor, "events_bind");
    char *events_chosen = s_client_endpoint (events_bind);
    char *events = events_chosen ? s_connectable (events_chosen) : NULL;
    zf_free (events_chosen);
    char *spec = NULL;
    if (strncmp (endpoint, "tcp://", 6) == 0 && !insecure) {
        //  The daemon's CURVE server accepts its own key: we use the node's certificate.
        const char *key = zf_node_public_key (node);
        if (!key) {
            fprintf (stderr,
                     "zfly-get: %s: [%s] bind is tcp:// but [bus] cert is not set; zfly-get "
                     "connects with the node's certificate\n",
                     path, actor);
            zf_free (endpoint);
            zf_free (events);
            return EXIT_USAGE;
        }
        spec = zf_asprintf ("%s%s%s key=%s", endpoint, events ? " events=" : "",
                            events ? events : "", key);
    } else
        spec = zf_asprintf ("%s%s%s", endpoint, events ? " events=" : "", events ? events : "");
    zf_free (events);
    char *where = zf_asprintf ("%s: [%s] bind", path, actor);
    zf_status_t status = zf_node_add_route (node, actor, spec, where, &err);
    zf_free (where);
    zf_free (spec);
    if (status != ZF_OK) {
        fprintf (stderr, "zfly-get: %s\n", err.message);
        zf_free (endpoint);
        return EXIT_USAGE;
    }
    *endpoint_p = endpoint;
    return -1;
}

static void s_no_daemon (self_t *self, const char *endpoint, const char *detail)
{
    fprintf (stderr,
             "zfly-get: no zfly daemon answered at %s (%s); start one with `zfly -c %s` (e.g. "
             "tools/setup.sh && tools/build.sh && build/zfly -c deploy/allinone.ini)\n",
             endpoint, detail, self->config_path);
}

//  An ipc:// endpoint whose socket file does not exist has no daemon behind it.
static bool s_ipc_missing (const char *endpoint)
{
    if (strncmp (endpoint, "ipc://", 6) != 0 || endpoint[6] == '@')
        return false;
    struct stat info;
    return stat (endpoint + 6, &info) != 0;
}

// --- progress -------------------------------------------------------------------------------

static void s_human_bytes (uint64_t bytes, char *text, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = (double) bytes;
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < ZF_ARRAY_LEN (units)) {
        value /= 1024;
        unit++;
    }
    if (unit == 0)
        snprintf (text, size, "%" PRIu64 " B", bytes);
    else
        snprintf (text, size, "%.1f %s", value, units[unit]);
}

static void s_human_duration (double seconds, char *text, size_t size)
{
    if (seconds < 0 || seconds > 99 * 3600)
        snprintf (text, size, "--");
    else if (seconds < 60)
        snprintf (text, size, "%ds", (int) (seconds + 0.5));
    else if (seconds < 3600)
        snprintf (text, size, "%dm%02ds", (int) seconds / 60, (int) seconds % 60);
    else
        snprintf (text, size, "%dh%02dm", (int) seconds / 3600, ((int) seconds % 3600) / 60);
}

//  What the progress display counts: the bytes already in PATH.part.
static uint64_t s_bytes_done (const self_t *self)
{
    return self->written > self->content_length ? self->content_length : self->written;
}

static double s_rate (self_t *self, int64_t now, uint64_t done)
{
    if (self->sample_count == RATE_WINDOW) {
        memmove (self->sample_ms, self->sample_ms + 1, (RATE_WINDOW - 1) * sizeof (int64_t));
        memmove (self->sample_bytes, self->sample_bytes + 1, (RATE_WINDOW - 1) * sizeof (uint64_t));
        self->sample_count--;
    }
    self->sample_ms[self->sample_count] = now;
    self->sample_bytes[self->sample_count] = done;
    self->sample_count++;
    int64_t span = now - self->sample_ms[0];
    if (span <= 0)
        return 0;
    return (double) (done - self->sample_bytes[0]) * 1000.0 / (double) span;
}

static void s_progress (self_t *self, bool final)
{
    //  Nothing to show before the fetcher knows the length (the origin's first answer).
    if (self->progress == PROGRESS_NONE || !self->task_id[0] || (!self->announced && !final))
        return;
    int64_t now = zf_clock_mono_ms ();
    uint64_t done = s_bytes_done (self);
    double rate = s_rate (self, now, done);
    if (final && now > self->started_ms) //  the whole run's average, not the last seconds'
        rate = (double) self->content_length * 1000.0 / (double) (now - self->started_ms);
    if (self->progress == PROGRESS_LINES && !final && now - self->last_line_ms < LINE_INTERVAL_MS)
        return;
    self->last_line_ms = now;
    char done_text[32], total_text[32], rate_text[32], eta_text[32];
    s_human_bytes (done, done_text, sizeof done_text);
    s_human_bytes (self->content_length, total_text, sizeof total_text);
    s_human_bytes ((uint64_t) rate, rate_text, sizeof rate_text);
    double eta = rate > 0 ? (double) (self->content_length - done) / rate : -1;
    s_human_duration (done == self->content_length ? 0 : eta, eta_text, sizeof eta_text);
    int percent = self->content_length ? (int) (done * 100 / self->content_length) : 100;
    if (self->progress == PROGRESS_LINES) {
        fprintf (stderr, "zfly-get: %3d%% %s of %s, %s/s, ETA %s\n", percent, done_text, total_text,
                 rate_text, eta_text);
        return;
    }
    struct winsize size;
    int columns = ioctl (STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col ? size.ws_col : 80;
    int bar_width = columns - 60;
    if (bar_width > 50)
        bar_width = 50;
    char bar[64] = "";
    if (bar_width >= 10) {
        int filled = (int) ((int64_t) bar_width * percent / 100);
        bar[0] = '[';
        for (int index = 0; index < bar_width; index++)
            bar[1 + index] = index < filled ? '=' : (index == filled ? '>' : ' ');
        bar[1 + bar_width] = ']';
        bar[2 + bar_width] = '\0';
    }
    fprintf (stderr, "\r%3d%% %s %s / %s  %s/s  ETA %s\033[K", percent, bar, done_text, total_text,
             rate_text, eta_text);
    self->bar_drawn = true;
    if (final) {
        fputc ('\n', stderr);
        self->bar_drawn = false;
    }
}

//  Ends a redrawn bar line before any other message goes to stderr.
static void s_progress_break (self_t *self)
{
    if (self->bar_drawn) {
        fputc ('\n', stderr);
        self->bar_drawn = false;
    }
}

// --- the end --------------------------------------------------------------------------------

//  A one-shot timer that ends the loop: the reader calls our callback from its own handlers,
//  which cannot return -1 on our behalf.
static int s_stop_loop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

static void s_finish (self_t *self, int exit_code)
{
    if (self->done)
        return;
    self->done = true;
    self->exit_code = exit_code;
    zloop_timer (self->loop, 1, 1, s_stop_loop, NULL);
}

static void s_fail (self_t *self, int exit_code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void s_fail (self_t *self, int exit_code, const char *fmt, ...)
{
    s_progress_break (self);
    va_list args;
    va_start (args, fmt);
    fputs ("zfly-get: ", stderr);
    vfprintf (stderr, fmt, args);
    fputc ('\n', stderr);
    va_end (args);
    s_finish (self, exit_code);
}

//  Exit status for how a task failed, and for the fetcher's refusals.
static int s_exit_for_task (zf_task_error_t error)
{
    return error == ZF_TASK_ERROR_SOURCE   ? EXIT_SOURCE
           : error == ZF_TASK_ERROR_DIGEST ? EXIT_DIGEST
                                           : EXIT_OTHER;
}

static int s_exit_for_refusal (zf_code_t code)
{
    //  the origin refused these credentials, or could not be asked: the origin's business
    return code == ZF_CODE_DENIED || code == ZF_CODE_UNVERIFIED ? EXIT_SOURCE : EXIT_OTHER;
}

//  What the reader's FAILED event means for the user: a message and an exit status.
static void s_on_failed (self_t *self, const zf_task_reader_event_t *event)
{
    const char *url = self->options->url;
    switch (event->failure) {
    case ZF_TASK_READER_TASK: {
        int exit_code = s_exit_for_task (event->task_error);
        const char *kind = exit_code == EXIT_SOURCE   ? "source error"
                           : exit_code == EXIT_DIGEST ? "digest mismatch"
                                                      : "failed";
        s_fail (self, exit_code, "%s: %s: %s (%s)", url, kind, event->message, event->code);
        return;
    }
    case ZF_TASK_READER_REFUSED:
        s_fail (self, s_exit_for_refusal (event->reply_code), "%s: the fetcher refused: %s", url,
                event->message);
        return;
    case ZF_TASK_READER_UNREACHABLE: {
        const char *endpoint = event->actor && streq (event->actor, "storage")
                                   ? self->storage_endpoint
                                   : self->fetcher_endpoint;
        bool gone = event->bus_status == ZF_E_TIMEOUT || event->bus_status == ZF_E_UNREACHABLE;
        if (!gone) {
            s_fail (self, EXIT_OTHER, "%s failed: %s", event->request, event->message);
            return;
        }
        s_progress_break (self);
        if (!event->answered)
            s_no_daemon (self, endpoint, "no answer in time");
        else
            fprintf (stderr,
                     "zfly-get: the zfly daemon stopped answering at %s (%s timed out); the "
                     "download goes on in the daemon: run zfly-get again to resume it\n",
                     endpoint, event->request);
        s_finish (self, EXIT_UNREACHABLE);
        return;
    }
    case ZF_TASK_READER_STORAGE:
    case ZF_TASK_READER_PROTOCOL: s_fail (self, EXIT_OTHER, "%s: %s", url, event->message); return;
    }
}

// --- reading pieces into the file -----------------------------------------------------------

//  Writes at `offset` of PATH.part. Every write names its offset (the bus path, copies from
//  the cache and reflinks alike), so a piece written again lands where it belongs. data may
//  be the cache file's pages mapped (s_copy_mapped): if that file was cut short under us the
//  kernel answers EFAULT, and with source_gone given we set it and return false, not failing.
static bool s_write_all (self_t *self, const uint8_t *data, size_t size, uint64_t offset,
                         bool *source_gone)
{
    while (size > 0) {
        ssize_t written = pwrite (self->fd, data, size, (off_t) offset);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0 && errno == EFAULT && source_gone) {
            *source_gone = true;
            return false;
        }
        if (written <= 0) {
            s_fail (self, EXIT_OTHER, "cannot write %s: %s", self->part_path, strerror (errno));
            return false;
        }
        data += written;
        offset += (uint64_t) written;
        size -= (size_t) written;
    }
    return true;
}

static bool s_link_output (self_t *self);
static void s_link_abandon (self_t *self, const char *why);

static void s_complete (self_t *self)
{
    if (self->link_fd >= 0 && !s_link_output (self))
        return; //  copying it all from the start, or failed
    //  A copy is synced before it takes PATH's name; a link is the cache's file, as durable
    //  as the cache makes it (s_link_*).
    if (self->link_fd < 0 && fdatasync (self->fd) != 0 && errno != EINVAL) {
        s_fail (self, EXIT_OTHER, "cannot write %s: %s", self->part_path, strerror (errno));
        return;
    }
    if (*self->options->digest) {
        uint8_t hash[SHA256_SIZE];
        unsigned int hash_size = 0;
        EVP_DigestFinal_ex (self->sha, hash, &hash_size);
        char hex[2 * SHA256_SIZE + 1];
        for (size_t index = 0; index < SHA256_SIZE; index++)
            snprintf (hex + 2 * index, 3, "%02x", hash[index]);
        if (!streq (hex, self->options->digest + 7)) {
            s_fail (self, EXIT_DIGEST,
                    "%s: digest mismatch: the content read from the cache has sha256:%s, "
                    "expected %s; %s not written",
                    self->options->url, hex, self->options->digest, self->options->output);
            return;
        }
    }
    int rc = close (self->fd);
    self->fd = -1;
    if (rc != 0 || rename (self->part_path, self->options->output) != 0) {
        s_fail (self, EXIT_OTHER, "cannot write %s: %s", self->options->output, strerror (errno));
        return;
    }
    //  A rename onto another name of the same file (PATH linked by an earlier run) does
    //  nothing and leaves PATH.part: PATH is already what it should be.
    if (self->link_fd >= 0)
        (void) unlink (self->part_path);
    s_progress (self, true);
    if (self->progress != PROGRESS_NONE) {
        double seconds = (double) (zf_clock_mono_ms () - self->started_ms) / 1000.0;
        char size_text[32], rate_text[32], source_text[32], parents_text[32];
        s_human_bytes (self->content_length, size_text, sizeof size_text);
        s_human_bytes (seconds > 0 ? (uint64_t) ((double) self->content_length / seconds)
                                   : self->content_length,
                       rate_text, sizeof rate_text);
        s_human_bytes (self->bytes_from_source, source_text, sizeof source_text);
        s_human_bytes (self->bytes_from_parents, parents_text, sizeof parents_text);
        fprintf (stderr,
                 "zfly-get: saved %s (%s in %.1fs, %s/s; task from source %s, from parents "
                 "%s)\n",
                 self->options->output, size_text, seconds, rate_text, source_text, parents_text);
    }
    s_finish (self, EXIT_OK);
}

//  Errors that say "this copy method does not apply here" (another filesystem, no support,
//  a file the method refuses): the next method is tried, and this one not again.
static bool s_copy_unsupported (int error)
{
    return error == EXDEV || error == ENOSYS || error == EINVAL || error == EOPNOTSUPP
           || error == ENOTTY || error == EPERM || error == ETXTBSY || error == EBADF;
}

//  Shares the cache file's blocks with PATH.part (btrfs, XFS with reflink): no bytes are
//  copied at all. Returns false when the filesystem cannot, silently: ext4 cannot.
static bool s_clone (self_t *self, int source, uint64_t offset, uint64_t size)
{
    struct file_clone_range range = {
        .src_fd = source, .src_offset = offset, .src_length = size, .dest_offset = offset};
    if (!self->clone_ok || ioctl (self->fd, FICLONERANGE, &range) == 0)
        return self->clone_ok;
    self->clone_ok = false;
    if (self->options->verbose)
        fprintf (stderr, "zfly-get: no reflink copies (%s); copying\n", strerror (errno));
    return false;
}

//  copy_file_range of [offset, offset + size) to the same offset of PATH.part: the kernel
//  copies page cache to page cache. Returns the bytes copied, which are fewer than size when
//  the method does not apply (the caller copies the rest), or -1 after s_fail.
static int64_t s_copy_range (self_t *self, int source, uint64_t offset, uint64_t size)
{
    uint64_t done = 0;
    while (self->copy_range_ok && done < size) {
        loff_t in = (loff_t) (offset + done), out = in;
        ssize_t copied = copy_file_range (source, &in, self->fd, &out, size - done, 0);
        if (copied > 0)
            done += (uint64_t) copied;
        else if (copied < 0 && errno == EINTR)
            continue;
        else if (copied == 0) //  the cache file ends early: the buffered copy finds out
            break;
        else if (s_copy_unsupported (errno)) {
            self->copy_range_ok = false;
            break;
        } else {
            s_fail (self, EXIT_OTHER, "cannot write %s: %s", self->part_path, strerror (errno));
            return -1;
        }
    }
    return (int64_t) done;
}

//  Writes [offset, offset + size) of PATH.part from aligned memory (our buffer, or mapped
//  pages of the cache file: source_gone as for s_write_all): the aligned part straight to
//  disk (O_DIRECT) when the filesystem allows, the rest through the page cache.
static bool s_write_out (self_t *self, const uint8_t *data, size_t size, uint64_t offset,
                         bool *source_gone)
{
    size_t direct = offset % DIRECT_ALIGN == 0 ? size - size % DIRECT_ALIGN : 0;
    while (self->direct_fd >= 0 && direct > 0) {
        ssize_t written = pwrite (self->direct_fd, data, direct, (off_t) offset);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0 && errno == EFAULT && source_gone) {
            *source_gone = true;
            return false;
        }
        if (written <= 0 || written % DIRECT_ALIGN != 0) {
            if (written < 0 && errno != EINVAL) {
                s_fail (self, EXIT_OTHER, "cannot write %s: %s", self->part_path, strerror (errno));
                return false;
            }
            close (self->direct_fd); //  EINVAL: the device wants another alignment
            self->direct_fd = -1;
            if (written > 0) {
                data += written;
                offset += (uint64_t) written;
                size -= (size_t) written;
            }
            break;
        }
        data += written;
        offset += (uint64_t) written;
        size -= (size_t) written;
        direct -= (size_t) written;
    }
    return s_write_all (self, data, size, offset, source_gone);
}

//  The rest through a buffer, hashed on the way for --digest. Returns false when the cache
//  file could not be read (the caller reads the piece over the bus instead), or after s_fail.
static bool s_copy_buffered (self_t *self, int source, uint64_t offset, uint64_t size, bool *retry)
{
    if (!self->copy_buffer
        && posix_memalign ((void **) &self->copy_buffer, DIRECT_ALIGN, COPY_BUFFER) != 0)
        ZF_ASSERT (!"out of memory");
    while (size > 0) {
        size_t chunk = size < COPY_BUFFER ? (size_t) size : COPY_BUFFER;
        ssize_t got = pread (source, self->copy_buffer, chunk, (off_t) offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            *retry = true;
            return false;
        }
        if (*self->options->digest)
            EVP_DigestUpdate (self->sha, self->copy_buffer, (size_t) got);
        if (!s_write_out (self, self->copy_buffer, (size_t) got, offset, NULL))
            return false;
        offset += (uint64_t) got;
        size -= (uint64_t) got;
    }
    return true;
}

//  The piece's pages of the cache file mapped and written from there with O_DIRECT: the disk
//  takes them straight from the cache's page cache, with no copy through our buffer (1 GiB:
//  0.58 s and 0.06 s of CPU instead of 0.8 s and 0.29 s here). Only the kernel reads the
//  mapping, so a cache file cut short under us is an EFAULT (*retry), never a SIGBUS. Where
//  the piece cannot be mapped, through the buffer.
static bool s_copy_mapped (self_t *self, int source, uint64_t offset, uint64_t size, bool *retry)
{
    long page = sysconf (_SC_PAGESIZE);
    void *map = size > 0 && page > 0 && offset % (uint64_t) page == 0
                    ? mmap (NULL, (size_t) size, PROT_READ, MAP_SHARED, source, (off_t) offset)
                    : MAP_FAILED;
    if (map == MAP_FAILED)
        return s_copy_buffered (self, source, offset, size, retry);
    bool done = s_write_out (self, map, (size_t) size, offset, retry);
    munmap (map, (size_t) size);
    return done;
}

//  Copies a located piece from the cache file into PATH.part at its offset, cheapest first:
//  a reflink (no bytes copied); else its mapped pages written with O_DIRECT; else
//  copy_file_range; else read and write through the page cache. Writing PATH.part around
//  the page cache is cheaper than copy_file_range: filling fresh page-cache pages is the
//  dearest part of a write (several times the disk's time on a VM whose memory is faulted in
//  on first use), and PATH.part is fdatasync'ed before the rename anyway, so the disk writes
//  the same bytes either way. With --digest the bytes must be hashed, so they always go
//  through the buffer. Returns false when not done: *retry says the cache file let us down
//  (gone, unreadable, cut short) and the piece should come over the bus; else s_fail ran.
static bool s_copy_located (self_t *self, const char *path, uint64_t offset, uint64_t size,
                            bool *retry)
{
    *retry = false;
    int source = open (path, O_RDONLY | O_CLOEXEC);
    if (source < 0) {
        if (self->options->verbose)
            fprintf (stderr, "zfly-get: cannot open the cache file %s (%s); reading over the bus\n",
                     path, strerror (errno));
        *retry = true;
        return false;
    }
    bool done = false;
    if (*self->options->digest) {
        //  A piece cut short after part of it was hashed comes again over the bus: the hash
        //  goes back to where this piece started.
        EVP_MD_CTX *before = EVP_MD_CTX_new ();
        ZF_ASSERT (before && EVP_MD_CTX_copy_ex (before, self->sha) == 1);
        done = s_copy_buffered (self, source, offset, size, retry);
        if (!done && *retry)
            ZF_ASSERT (EVP_MD_CTX_copy_ex (self->sha, before) == 1);
        EVP_MD_CTX_free (before);
    } else if (s_clone (self, source, offset, size))
        done = true;
    else if (self->direct_fd >= 0)
        done = s_copy_mapped (self, source, offset, size, retry);
    else {
        int64_t copied = s_copy_range (self, source, offset, size);
        done = copied >= 0
               && s_copy_buffered (self, source, offset + (uint64_t) copied,
                                   size - (uint64_t) copied, retry);
    }
    close (source);
    return done;
}

// --- the reader's events --------------------------------------------------------------------

//  Empties PATH.part: a new layout (the content changed under a stale copy).
static bool s_start_over (self_t *self)
{
    if (ftruncate (self->fd, 0) != 0) {
        s_fail (self, EXIT_OTHER, "cannot write %s: %s", self->part_path, strerror (errno));
        return false;
    }
    EVP_DigestInit_ex (self->sha, EVP_sha256 (), NULL);
    self->written = 0;
    self->sample_count = 0;
    return true;
}

// --- PATH as a second name of the cache file (a hard link) -----------------------------------

//  A copy writes every byte a second time, after storage wrote it into the cache, and on a
//  machine where filling page-cache pages costs more than the disk's bandwidth (docs/
//  benchmarks.md "Data plane"), the second write is what zfly-get's time is made of. So where
//  it can, zfly-get makes PATH a hard link of the cache file, as dfget does: where the cache
//  file is on PATH's filesystem and is ours (the daemon runs as we do, e.g. both as root),
//  so that PATH is owned as a copy would be. The link is made when the task is complete,
//  never before, so PATH.part is never the cache file while storage writes pieces into it;
//  until then each located piece is only taken as it is (storage checked it, answering
//  piece.locate) and hashed for --digest. PATH is given the mode a copy would have. It is
//  not synced: it is the cache's file, as durable as the cache makes it (with [storage]
//  fsync = true, synced before the task completes; by default, as curl -o leaves its file).
//  Syncing it would mean waiting for the whole file to reach the disk, where a download
//  into the page cache waits only for what the kernel's dirty limits hold back
//  (docs/benchmarks.md "Large files").
//  What a later write to PATH does to the cache: the next read of a changed piece fails its
//  checksum, and storage, seeing the file has another name, drops the task instead of
//  writing into it (zf_store.h): PATH keeps its bytes, the next download makes a new cache
//  file. Whenever linking goes wrong (the task's file replaced under us, no link possible
//  after all), PATH.part is started over as a copy, with a new reader.

static bool s_begin (self_t *self, zf_error_t *err);

//  At the first located piece: link, or copy?
static void s_link_decide (self_t *self, const char *cache_path)
{
    self->link_decided = true;
    if (self->options->copy)
        return;
    int fd = open (cache_path, O_RDONLY | O_CLOEXEC);
    struct stat cache, part;
    if (fd >= 0 && fstat (fd, &cache) == 0 && fstat (self->fd, &part) == 0
        && cache.st_dev == part.st_dev && cache.st_uid == geteuid () && S_ISREG (cache.st_mode)) {
        self->link_fd = fd;
        self->link_path = zf_strdup (cache_path);
        self->link_dev = cache.st_dev;
        self->link_ino = cache.st_ino;
        if (self->options->verbose)
            fprintf (stderr, "zfly-get: %s will be a hard link of the cache file %s\n",
                     self->options->output, cache_path);
    } else if (fd >= 0)
        close (fd);
}

//  Gives up linking: PATH.part is emptied and read again from the first piece, as a copy,
//  by a new reader (the old one may be the caller: a reader may be destroyed from inside its
//  own callback).
static void s_link_abandon (self_t *self, const char *why)
{
    if (self->options->verbose)
        fprintf (stderr, "zfly-get: no hard link of the cache file (%s); copying from the start\n",
                 why);
    close (self->link_fd);
    self->link_fd = -1;
    zf_free (self->link_path);
    self->link_path = NULL;
    zf_task_reader_destroy (&self->reader);
    if (!s_start_over (self))
        return;
    if (self->locate && self->direct_fd < 0)
        self->direct_fd = open (self->part_path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    zf_error_t err;
    if (!s_begin (self, &err)) {
        s_progress_break (self);
        s_no_daemon (self, self->fetcher_endpoint, err.message);
        s_finish (self, EXIT_UNREACHABLE);
    }
}

//  A located piece while linking: hashed for --digest. False when linking was abandoned (a
//  new reader starts over), or after s_fail.
static bool s_link_piece (self_t *self, const char *path, uint64_t offset, uint64_t size)
{
    struct stat now;
    if (!streq (path, self->link_path) || stat (path, &now) != 0 || now.st_dev != self->link_dev
        || now.st_ino != self->link_ino) {
        s_link_abandon (self, "the cache file changed");
        return false;
    }
    if (!*self->options->digest)
        return true;
    if (!self->copy_buffer
        && posix_memalign ((void **) &self->copy_buffer, DIRECT_ALIGN, COPY_BUFFER) != 0)
        ZF_ASSERT (!"out of memory");
    for (uint64_t done = 0; done < size;) {
        size_t chunk = size - done < COPY_BUFFER ? (size_t) (size - done) : COPY_BUFFER;
        ssize_t got = pread (self->link_fd, self->copy_buffer, chunk, (off_t) (offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            s_link_abandon (self, "the cache file was cut short");
            return false;
        }
        EVP_DigestUpdate (self->sha, self->copy_buffer, (size_t) got);
        done += (uint64_t) got;
    }
    return true;
}

//  PATH.part becomes a name of the very file the pieces were located in (not of whatever its
//  path names now: through /proc/self/fd, else by path and then compared), with a copy's
//  mode. False when it cannot (linking is abandoned: a new reader copies it all), or after
//  s_fail.
static bool s_link_output (self_t *self)
{
    close (self->fd);
    self->fd = -1;
    if (self->direct_fd >= 0)
        close (self->direct_fd);
    self->direct_fd = -1;
    unlink (self->part_path);
    char proc[48];
    snprintf (proc, sizeof proc, "/proc/self/fd/%d", self->link_fd);
    bool linked = linkat (AT_FDCWD, proc, AT_FDCWD, self->part_path, AT_SYMLINK_FOLLOW) == 0;
    struct stat made;
    if (!linked && link (self->link_path, self->part_path) == 0) {
        linked = stat (self->part_path, &made) == 0 && made.st_dev == self->link_dev
                 && made.st_ino == self->link_ino;
        if (!linked)
            unlink (self->part_path);
    }
    int error = errno;
    self->fd =
        open (self->part_path,
              linked ? O_RDONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (self->fd < 0) {
        s_fail (self, EXIT_OTHER, "cannot create %s: %s", self->part_path, strerror (errno));
        return false;
    }
    if (!linked) {
        s_link_abandon (self, strerror (error));
        return false;
    }
    mode_t mask = umask (0);
    umask (mask);
    (void) fchmod (self->fd, 0666 & ~mask);
    return true;
}

static void s_on_layout (self_t *self, zf_task_reader_t *reader,
                         const zf_task_reader_event_t *event)
{
    if (event->restart) {
        if (self->options->verbose)
            fprintf (stderr,
                     "zfly-get: the task is now %" PRIu64 " bytes in pieces of %" PRIu64
                     "; starting %s over\n",
                     event->content_length, event->piece_length, self->part_path);
        if (!s_start_over (self))
            return;
    }
    self->content_length = event->content_length;
    self->piece_count = event->piece_count;
    if (!self->announced && self->progress != PROGRESS_NONE) {
        char total[32];
        s_human_bytes (self->content_length, total, sizeof total);
        s_progress_break (self);
        fprintf (stderr, "zfly-get: task %s: %s in %" PRIu64 " pieces\n",
                 zf_task_reader_task_id (reader), total, self->piece_count);
        self->announced = true;
    }
    zf_task_reader_read (reader, 0, event->piece_count);
}

//  Writes a piece at its offset of PATH.part: from its frame (hashed for --digest), or copied
//  from the cache file it was located in. False when the cache file let us down (the reader
//  brings the piece over the bus), or after s_fail.
static bool s_on_piece (self_t *self, const zf_task_reader_event_t *event)
{
    if (event->path && !self->link_decided)
        s_link_decide (self, event->path);
    if (event->path && self->link_fd >= 0) {
        if (!s_link_piece (self, event->path, event->file_offset, event->size))
            return true; //  a new reader starts over (or s_fail ran): nothing more from this one
        self->written += event->size;
        self->last_change_ms = zf_clock_mono_ms ();
        return true;
    }
    if (event->path) {
        bool retry = false;
        if (!s_copy_located (self, event->path, event->file_offset, event->size, &retry)) {
            if (retry && self->options->verbose)
                fprintf (stderr, "zfly-get: reading piece %" PRIu64 " and the rest over the bus\n",
                         event->piece);
            return !retry;
        }
    } else {
        const uint8_t *data = zframe_data (*event->frame);
        if (*self->options->digest)
            EVP_DigestUpdate (self->sha, data, event->size);
        if (!s_write_all (self, data, event->size, event->offset, NULL))
            return true;
    }
    //  Start writing these pages to disk now, so that the fdatasync before the rename finds
    //  little left to do (it would otherwise write the whole file at the end). Advisory: a
    //  file system that cannot do it is synced in full at the end.
    (void) sync_file_range (self->fd, (off64_t) event->offset, (off64_t) event->size,
                            SYNC_FILE_RANGE_WRITE);
    self->written += event->size;
    self->last_change_ms = zf_clock_mono_ms ();
    return true;
}

static void s_on_status (self_t *self, const zf_msg_task_status_t *status)
{
    zf_strlcpy (self->task_id, status->task_id, sizeof self->task_id);
    self->bytes_from_source = status->bytes_from_source;
    self->bytes_from_parents = status->bytes_from_parents;
    if (status->finished_count != self->finished_count) {
        self->finished_count = status->finished_count;
        self->last_change_ms = zf_clock_mono_ms ();
    }
}

static bool s_on_event (zf_task_reader_t *reader, const zf_task_reader_event_t *event, void *arg)
{
    self_t *self = arg;
    if (self->done)
        return true;
    switch (event->type) {
    case ZF_TASK_READER_STATUS: s_on_status (self, event->status); return true;
    case ZF_TASK_READER_LAYOUT: s_on_layout (self, reader, event); return true;
    case ZF_TASK_READER_PIECE: return s_on_piece (self, event);
    case ZF_TASK_READER_DONE:
        if (event->status)
            s_on_status (self, event->status);
        s_complete (self);
        return true;
    case ZF_TASK_READER_FAILED: s_on_failed (self, event); return true;
    }
    return true;
}

//  Progress, and the idle timeout: no new bytes for that long ends the wait.
static int s_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    if (self->done)
        return 0;
    int64_t now = zf_clock_mono_ms ();
    if (self->options->idle_timeout_ms > 0
        && now - self->last_change_ms > self->options->idle_timeout_ms) {
        char idle[32];
        s_human_duration ((double) self->options->idle_timeout_ms / 1000, idle, sizeof idle);
        s_fail (self, EXIT_OTHER,
                "%s: no progress for %s (%" PRIu64 " of %" PRIu64 " pieces); giving up, the "
                "daemon keeps the pieces it has",
                self->options->url, idle, self->finished_count, self->piece_count);
        return 0;
    }
    s_progress (self, false);
    return 0;
}

// --- main -----------------------------------------------------------------------------------

//  A reader for the whole task, started: task.fetch sent. False when it could not be sent.
static bool s_begin (self_t *self, zf_error_t *err)
{
    const options_t *options = self->options;
    self->reader = zf_task_reader_new (self->readers, self->locate, true, s_on_event, self);
    zf_msg_task_fetch_t fetch = {
        .url = (char *) options->url,
        .digest = (char *) options->digest,
        .headers = {.items = (void *) options->headers, .count = options->header_count},
        .parents = {.items = (void *) options->parents, .count = options->parent_count},
    };
    return zf_task_reader_start (self->reader, &fetch, err);
}

//  Reads the task into PATH.part (open) with the task reader; returns the exit status.
static int s_download (self_t *self, zf_node_t *node, const char *actor_name)
{
    const options_t *options = self->options;
    //  Storage on this host (ipc://) names cache files we can copy from ourselves.
    bool locate = self->locate = strncmp (self->storage_endpoint, "ipc://", 6) == 0;
    self->clone_ok = self->copy_range_ok = locate;
    //  A second descriptor that writes around the page cache (see s_copy_located); not every
    //  filesystem allows it (tmpfs does not), and then we do without.
    if (locate)
        self->direct_fd = open (self->part_path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    zf_node_add_local (node, actor_name);
    zf_error_t err;
    self->bus = zf_bus_new (node, actor_name, NULL, NULL, &err);
    ZF_ASSERT (self->bus); //  an inproc bind of a fresh name cannot fail
    self->sha = EVP_MD_CTX_new ();
    ZF_ASSERT (self->sha);
    EVP_DigestInit_ex (self->sha, EVP_sha256 (), NULL);
    self->loop = zloop_new ();
    zf_bus_attach (self->bus, self->loop);
    zf_task_readers_options_t reader_options = {
        .fetcher = "fetcher",
        .storage = "storage",
        .timeout_ms = options->timeout_ms,
        .later_timeout_ms = LATER_TIMEOUT_MIN_MS,
        .read_timeout_ms =
            READ_TIMEOUT_MS > options->timeout_ms ? READ_TIMEOUT_MS : options->timeout_ms,
        .poll_ms = POLL_MS,
        .stat_wait_ms = STAT_WAIT_MS,
        .read_window_bytes = READ_BYTES_IN_FLIGHT,
        .read_window_min = 2,
        .locate_window = READ_SLOTS};
    self->readers = zf_task_readers_new (self->bus, self->loop, "zfly-get", &reader_options);
    self->started_ms = self->last_change_ms = zf_clock_mono_ms ();
    zloop_timer (self->loop, TICK_MS, 0, s_tick, self);
    if (!s_begin (self, &err)) {
        s_progress_break (self);
        s_no_daemon (self, self->fetcher_endpoint, err.message);
        s_finish (self, EXIT_UNREACHABLE);
    } else
        zloop_start (self->loop); //  until s_finish stops it, or an interrupt
    if (!self->done) {
        s_progress_break (self);
        fprintf (stderr, "zfly-get: interrupted; the daemon keeps the pieces it has\n");
        self->exit_code = 130;
    }
    zf_task_reader_destroy (&self->reader);
    free (self->copy_buffer); //  from posix_memalign
    zf_bus_destroy (&self->bus);
    zf_task_readers_destroy (&self->readers); //  after the bus, before the loop
    zloop_destroy (&self->loop);
    EVP_MD_CTX_free (self->sha);
    return self->exit_code;
}

static int s_run (const options_t *options, zf_config_t *config)
{
    const zf_node_config_t *node_config = zf_config_section (config, "node");
    const zf_bus_config_t *bus_config = zf_config_section_or_defaults (config, "bus");
    char *fetcher_endpoint = s_client_endpoint (
        s_is_known_section ("fetcher") ? s_config_string (config, "fetcher", "bind") : NULL);
    char *storage_endpoint = s_client_endpoint (
        s_is_known_section ("storage") ? s_config_string (config, "storage", "bind") : NULL);
    //  The certificate is needed only to reach a tcp:// bind (it must be readable by us).
    bool needs_cert = (fetcher_endpoint && strncmp (fetcher_endpoint, "tcp://", 6) == 0)
                      || (storage_endpoint && strncmp (storage_endpoint, "tcp://", 6) == 0);
    zf_free (fetcher_endpoint);
    zf_free (storage_endpoint);
    size_t entry_count;
    const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &entry_count);
    for (size_t index = 0; index < entry_count; index++)
        if ((streq (entries[index].key, "fetcher") || streq (entries[index].key, "storage"))
            && strstr (entries[index].value, "tcp://"))
            needs_cert = true;
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
        return EXIT_USAGE;
    }
    self_t self = {.options = options,
                   .config_path = zf_config_path (config),
                   .fd = -1,
                   .direct_fd = -1,
                   .link_fd = -1,
                   .progress = options->progress};
    if (self.progress == PROGRESS_AUTO)
        self.progress = isatty (STDERR_FILENO) ? PROGRESS_BAR : PROGRESS_LINES;
    int exit_code = s_route (config, node, "fetcher", bus_config->insecure, &self.fetcher_endpoint);
    if (exit_code < 0)
        exit_code = s_route (config, node, "storage", bus_config->insecure, &self.storage_endpoint);
    if (exit_code < 0) {
        const char *missing = s_ipc_missing (self.fetcher_endpoint)   ? self.fetcher_endpoint
                              : s_ipc_missing (self.storage_endpoint) ? self.storage_endpoint
                                                                      : NULL;
        if (missing) {
            s_no_daemon (&self, missing, "its socket file does not exist");
            exit_code = EXIT_UNREACHABLE;
        }
    }
    if (exit_code < 0) {
        self.part_path = zf_asprintf ("%s.part", options->output);
        self.fd = open (self.part_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (self.fd < 0) {
            fprintf (stderr, "zfly-get: cannot create %s: %s\n", self.part_path, strerror (errno));
            exit_code = EXIT_OTHER;
        }
    }
    if (exit_code < 0)
        exit_code = s_download (&self, node, actor_name);
    if (self.fd >= 0)
        close (self.fd);
    if (self.direct_fd >= 0)
        close (self.direct_fd);
    if (self.link_fd >= 0)
        close (self.link_fd);
    zf_free (self.link_path);
    if (exit_code != EXIT_OK && self.part_path)
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
    options_t options = {0};
    int exit_code = s_parse_args (argc, argv, &options);
    if (exit_code >= 0) {
        s_options_clear (&options);
        return exit_code;
    }
    zf_log_set_level (options.verbose ? ZF_LOG_DEBUG : ZF_LOG_ERROR);
    zsys_set_linger (0);
    struct stat info;
    if (stat (options.config_path, &info) != 0) {
        fprintf (stderr,
                 "zfly-get: cannot read the zfly configuration %s: %s; point -c (or "
                 "$ZFLY_CONFIG) at the INI file of the local zfly daemon, or start one with "
                 "`zfly -c FILE` (e.g. tools/setup.sh && tools/build.sh && build/zfly -c "
                 "deploy/allinone.ini)\n",
                 options.config_path, strerror (errno));
        s_options_clear (&options);
        return EXIT_UNREACHABLE;
    }
    size_t section_count;
    const zf_config_section_t *const *sections = zf_all_sections (&section_count);
    zf_error_t err;
    zf_config_t *config =
        zf_config_load (sections, section_count, options.config_path, NULL, 0, &err);
    if (!config) {
        fprintf (stderr, "zfly-get: %s\n", err.message);
        s_options_clear (&options);
        return EXIT_USAGE;
    }
    exit_code = s_run (&options, config);
    zf_config_destroy (&config);
    s_options_clear (&options);
    return exit_code;
}
