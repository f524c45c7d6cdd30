/*  zfly-admin — the operator's command line for the manager's REST API.

    zfly-admin [--server URL] [--token-file FILE] [--json] RESOURCE VERB [ARGS] [OPTIONS]

    Prints tables (or the API's JSON with --json) and exits with a status a script can test:
        0 ok, 1 other error, 2 usage, 3 the manager cannot be reached, 4 not authorised (401,
        403), 5 no such resource (404), 6 refused as invalid or conflicting (400, 409).
    The server is --server, else $ZFLY_MANAGER, else http://127.0.0.1:8888. The token is read
    from --token-file, else $ZFLY_TOKEN_FILE, else ~/.config/zfly/token (what `zfly manager
    init` printed); it is never taken on the command line, where other users could read it. */
#include "zf_api_client.h"
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>

enum {
    EXIT_NOT_FOUND = ZF_API_EXIT_OWN, //  5
    EXIT_REFUSED,                     //  6
};

typedef struct {
    zf_api_client_t client; //  the manager and the token
    bool json;
    bool all;
    long page, per_page;
    //  options of create / update / list
    const char *name, *cluster, *expires, *max_uses, *idc, *location, *config, *role, *user, *state,
        *description;
    const char *cidrs[64];
    size_t cidr_count;
    const char *hostnames[64];
    size_t hostname_count;
    bool is_default, write;
} s_options_t;

static void s_usage (FILE *out)
{
    fprintf (
        out,
        "usage: zfly-admin [--server URL] [--token-file FILE] [--json] RESOURCE VERB ...\n"
        "\n"
        "Resources and verbs:\n"
        "  token create [--name N] [--cluster ID] [--expires 24h] [--max-uses N]\n"
        "  token list | token revoke ID                  join tokens for new nodes\n"
        "  host list [--cluster ID] [--state active|revoked] | host get ID\n"
        "  host revoke ID                                its key is refused everywhere\n"
        "  cluster list | cluster get ID | cluster delete ID\n"
        "  cluster create NAME [--description T] [--default] [--idc A|B] [--location L]\n"
        "                 [--cidr CIDR]... [--hostname REGEX]... [--config JSON]\n"
        "  cluster update ID [the same options, --name NAME]\n"
        "  scheduler list [--cluster ID] | seed list [--cluster ID]\n"
        "  user list | user get ID | user create NAME --role admin|read-only\n"
        "  user delete ID\n"
        "  pat list [--user ID] | pat create [--user ID] [--name N] [--write]\n"
        "           [--expires 90d] | pat revoke ID  personal access tokens\n"
        "\n"
        "Options:\n"
        "  --server URL        the manager's API (default $ZFLY_MANAGER or\n"
        "                      http://127.0.0.1:8888)\n"
        "  --token-file FILE   bearer token (default $ZFLY_TOKEN_FILE or\n"
        "                      ~/.config/zfly/token)\n"
        "  --json              print the API's JSON instead of a table\n"
        "  --page N --per-page N | --all   which page of a list (default 1, 50)\n"
        "  -h, --help          this text\n"
        "\n"
        "Exit status: 0 ok, 1 other error, 2 usage, 3 manager unreachable,\n"
        "4 not authorised (401/403), 5 not found (404), 6 invalid or conflicting (400/409).\n");
}

//  ---------------------------------------------------------------------------------------------
//  HTTP

//  Sends one request; *answer gets the parsed JSON body (NULL for none). Returns an exit code;
//  zf_api_call printed what went wrong.
static int s_call (const s_options_t *options, const char *method, const char *path, json_t *body,
                   json_t **answer)
{
    long status = zf_api_call (&options->client, method, path, body, answer);
    return status == 404                    ? EXIT_NOT_FOUND
           : status == 400 || status == 409 ? EXIT_REFUSED
                                            : zf_api_exit_status (status);
}

//  ---------------------------------------------------------------------------------------------
//  Tables

typedef struct {
    const char *title;
    const char *key; //  "scopes.idc" reaches into an object
    int width;       //  0: as wide as the title
} s_column_t;

static json_t *s_lookup (json_t *object, const char *key)
{
    const char *dot = strchr (key, '.');
    if (!dot)
        return json_object_get (object, key);
    char *head = zf_strndup (key, (size_t) (dot - key));
    json_t *inner = json_object_get (object, head);
    zf_free (head);
    return inner ? s_lookup (inner, dot + 1) : NULL;
}

static char *s_cell (json_t *value)
{
    if (!value || json_is_null (value))
        return zf_strdup ("-");
    if (json_is_string (value))
        return zf_strdup (*json_string_value (value) ? json_string_value (value) : "-");
    if (json_is_integer (value))
        return zf_asprintf ("%" JSON_INTEGER_FORMAT, json_integer_value (value));
    if (json_is_boolean (value))
        return zf_strdup (json_is_true (value) ? "yes" : "no");
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    char *copy = zf_strdup (text ? text : "?");
    free (text);
    return copy;
}

static void s_print_table (json_t *items, const s_column_t *columns, size_t count)
{
    size_t rows = json_array_size (items);
    size_t *widths = zf_calloc (count, sizeof *widths);
    char **cells = zf_calloc ((rows ? rows : 1) * count, sizeof *cells);
    for (size_t column = 0; column < count; column++)
        widths[column] = strlen (columns[column].title);
    for (size_t row = 0; row < rows; row++)
        for (size_t column = 0; column < count; column++) {
            char *cell = s_cell (s_lookup (json_array_get (items, row), columns[column].key));
            if (strlen (cell) > widths[column])
                widths[column] = strlen (cell);
            cells[row * count + column] = cell;
        }
    //  The last column is not padded: no trailing blanks.
    for (size_t column = 0; column < count; column++)
        printf ("%-*s%s", column + 1 < count ? (int) widths[column] : 0, columns[column].title,
                column + 1 < count ? "  " : "\n");
    for (size_t row = 0; row < rows; row++)
        for (size_t column = 0; column < count; column++) {
            printf ("%-*s%s", column + 1 < count ? (int) widths[column] : 0,
                    cells[row * count + column], column + 1 < count ? "  " : "\n");
            zf_free (cells[row * count + column]);
        }
    zf_free (cells);
    zf_free (widths);
}

static void s_print_object (json_t *object)
{
    const char *key;
    json_t *value;
    json_object_foreach (object, key, value)
    {
        char *cell = s_cell (value);
        printf ("%-16s %s\n", key, cell);
        zf_free (cell);
    }
}

static const s_column_t s_token_columns[] = {
    {"ID", "id", 0},
    {"NAME", "name", 0},
    {"PREFIX", "prefix", 0},
    {"CLUSTER", "cluster_id", 0},
    {"USES", "use_count", 0},
    {"MAX", "max_uses", 0},
    {"EXPIRES", "expires_at", 0},
    {"STATE", "state", 0},
};
static const s_column_t s_host_columns[] = {
    {"ID", "id", 0},        {"NAME", "name", 0},           {"CLUSTER", "cluster_id", 0},
    {"STATE", "state", 0},  {"ADDRESS", "address", 0},     {"SCHEDULER", "is_scheduler", 0},
    {"SEED", "is_seed", 0}, {"LAST SEEN", "last_seen", 0}, {"KEY", "public_key", 0},
};
static const s_column_t s_cluster_columns[] = {
    {"ID", "id", 0},
    {"NAME", "name", 0},
    {"DEFAULT", "is_default", 0},
    {"IDC", "scopes.idc", 0},
    {"LOCATION", "scopes.location", 0},
    {"CIDRS", "scopes.cidrs", 0},
    {"HOSTNAMES", "scopes.hostnames", 0},
    {"VERSION", "members_version", 0},
};
static const s_column_t s_scheduler_columns[] = {
    {"ID", "id", 0},       {"NAME", "name", 0},         {"CLUSTER", "cluster_id", 0},
    {"STATE", "state", 0}, {"ENDPOINT", "endpoint", 0}, {"KEEP-ALIVE", "last_keepalive", 0},
};
static const s_column_t s_seed_columns[] = {
    {"ID", "id", 0},
    {"NAME", "name", 0},
    {"CLUSTER", "cluster_id", 0},
    {"STATE", "state", 0},
    {"STORAGE", "storage_endpoint", 0},
    {"KEEP-ALIVE", "last_keepalive", 0},
};
static const s_column_t s_user_columns[] = {
    {"ID", "id", 0},
    {"NAME", "name", 0},
    {"ROLE", "role", 0},
    {"CREATED", "created_at", 0},
};
static const s_column_t s_pat_columns[] = {
    {"ID", "id", 0},
    {"USER", "user_id", 0},
    {"NAME", "name", 0},
    {"PREFIX", "prefix", 0},
    {"SCOPES", "scopes", 0},
    {"STATE", "state", 0},
    {"EXPIRES", "expires_at", 0},
    {"LAST USED", "last_used_at", 0},
};

//  ---------------------------------------------------------------------------------------------
//  Commands

static int s_list (const s_options_t *options, const char *path, const char *filter_name,
                   const char *filter_value, const char *filter2_name, const char *filter2_value,
                   const s_column_t *columns, size_t count)
{
    json_t *all = json_array ();
    int64_t total = 0;
    long page = options->page;
    int exit_code = ZF_API_EXIT_OK;
    while (true) {
        char *query =
            zf_asprintf ("%s?page=%ld&per_page=%ld%s%s%s%s%s%s", path, page, options->per_page,
                         filter_value ? "&" : "", filter_value ? filter_name : "",
                         filter_value ? "=" : "", filter_value ? filter_value : "",
                         filter2_value ? "&" : "", filter2_value ? filter2_name : "");
        char *full =
            filter2_value ? zf_asprintf ("%s=%s", query, filter2_value) : zf_strdup (query);
        json_t *answer;
        exit_code = s_call (options, "GET", full, NULL, &answer);
        zf_free (query);
        zf_free (full);
        if (exit_code != ZF_API_EXIT_OK)
            break;
        json_t *items = json_object_get (answer, "items");
        total = json_integer_value (json_object_get (answer, "total"));
        json_array_extend (all, items);
        size_t got = json_array_size (items);
        json_decref (answer);
        if (!options->all || got == 0 || (int64_t) json_array_size (all) >= total)
            break;
        page++;
    }
    if (exit_code == ZF_API_EXIT_OK) {
        if (options->json) {
            json_t *out = json_pack ("{s:O, s:I}", "items", all, "total", (json_int_t) total);
            json_dumpf (out, stdout, JSON_INDENT (2));
            printf ("\n");
            json_decref (out);
        } else {
            s_print_table (all, columns, count);
            if ((int64_t) json_array_size (all) < total)
                fprintf (stderr, "(%zu of %" PRId64 " shown: --page N or --all for more)\n",
                         json_array_size (all), total);
        }
    }
    json_decref (all);
    return exit_code;
}

static int s_show (const s_options_t *options, const char *method, const char *path, json_t *body)
{
    json_t *answer;
    int exit_code = s_call (options, method, path, body, &answer);
    json_decref (body);
    if (exit_code == ZF_API_EXIT_OK && answer) {
        if (options->json) {
            json_dumpf (answer, stdout, JSON_INDENT (2));
            printf ("\n");
        } else
            s_print_object (answer);
    } else if (exit_code == ZF_API_EXIT_OK && !options->json)
        printf ("done\n");
    json_decref (answer);
    return exit_code;
}

static bool s_number (const char *text)
{
    return text && *text && strspn (text, "0123456789") == strlen (text) && strlen (text) < 18;
}

//  The cluster body from options (create: name from the argument).
static json_t *s_cluster_body (const s_options_t *options, const char *name, int *exit_code)
{
    json_t *body = json_object ();
    if (name)
        json_object_set_new (body, "name", json_string (name));
    if (options->description)
        json_object_set_new (body, "description", json_string (options->description));
    if (options->is_default)
        json_object_set_new (body, "is_default", json_true ());
    json_t *scopes = json_object ();
    if (options->idc)
        json_object_set_new (scopes, "idc", json_string (options->idc));
    if (options->location)
        json_object_set_new (scopes, "location", json_string (options->location));
    if (options->cidr_count) {
        json_t *list = json_array ();
        for (size_t index = 0; index < options->cidr_count; index++)
            json_array_append_new (list, json_string (options->cidrs[index]));
        json_object_set_new (scopes, "cidrs", list);
    }
    if (options->hostname_count) {
        json_t *list = json_array ();
        for (size_t index = 0; index < options->hostname_count; index++)
            json_array_append_new (list, json_string (options->hostnames[index]));
        json_object_set_new (scopes, "hostnames", list);
    }
    if (json_object_size (scopes))
        json_object_set (body, "scopes", scopes);
    json_decref (scopes);
    if (options->config) {
        json_error_t error;
        json_t *config = json_loads (options->config, 0, &error);
        if (!json_is_object (config)) {
            fprintf (stderr, "zfly-admin: --config must be a JSON object: %s\n",
                     config ? "not an object" : error.text);
            json_decref (config);
            json_decref (body);
            *exit_code = ZF_API_EXIT_USAGE;
            return NULL;
        }
        json_object_set_new (body, "client_config", config);
    }
    return body;
}

static int s_run (const s_options_t *options, const char *resource, const char *verb,
                  const char *argument)
{
    char path[256];
    bool id_ok = s_number (argument);
    if (streq (resource, "token")) {
        if (streq (verb, "list"))
            return s_list (options, "/api/v1/join-tokens", NULL, NULL, NULL, NULL, s_token_columns,
                           ZF_ARRAY_LEN (s_token_columns));
        if (streq (verb, "create")) {
            json_t *body = json_object ();
            if (options->name)
                json_object_set_new (body, "name", json_string (options->name));
            if (options->cluster)
                json_object_set_new (body, "cluster_id",
                                     json_integer (strtoll (options->cluster, NULL, 10)));
            if (options->expires)
                json_object_set_new (body, "expires_in", json_string (options->expires));
            if (options->max_uses)
                json_object_set_new (body, "max_uses",
                                     json_integer (strtoll (options->max_uses, NULL, 10)));
            if (!options->json) {
                json_t *answer;
                int exit_code = s_call (options, "POST", "/api/v1/join-tokens", body, &answer);
                json_decref (body);
                if (exit_code == ZF_API_EXIT_OK) //  the token alone on stdout: `> token-file` works
                    printf ("%s\n", json_string_value (json_object_get (answer, "token")));
                json_decref (answer);
                return exit_code;
            }
            return s_show (options, "POST", "/api/v1/join-tokens", body);
        }
        if (streq (verb, "revoke") && id_ok) {
            snprintf (path, sizeof path, "/api/v1/join-tokens/%s", argument);
            return s_show (options, "DELETE", path, NULL);
        }
    } else if (streq (resource, "host")) {
        if (streq (verb, "list"))
            return s_list (options, "/api/v1/hosts", "cluster_id", options->cluster, "state",
                           options->state, s_host_columns, ZF_ARRAY_LEN (s_host_columns));
        if ((streq (verb, "get") || streq (verb, "revoke")) && id_ok) {
            snprintf (path, sizeof path, "/api/v1/hosts/%s", argument);
            return s_show (options, streq (verb, "get") ? "GET" : "DELETE", path, NULL);
        }
    } else if (streq (resource, "cluster")) {
        if (streq (verb, "list"))
            return s_list (options, "/api/v1/clusters", NULL, NULL, NULL, NULL, s_cluster_columns,
                           ZF_ARRAY_LEN (s_cluster_columns));
        if ((streq (verb, "get") || streq (verb, "delete")) && id_ok) {
            snprintf (path, sizeof path, "/api/v1/clusters/%s", argument);
            return s_show (options, streq (verb, "get") ? "GET" : "DELETE", path, NULL);
        }
        if (streq (verb, "create") && argument) {
            int exit_code = ZF_API_EXIT_OK;
            json_t *body = s_cluster_body (options, argument, &exit_code);
            return body ? s_show (options, "POST", "/api/v1/clusters", body) : exit_code;
        }
        if (streq (verb, "update") && id_ok) {
            int exit_code = ZF_API_EXIT_OK;
            json_t *body = s_cluster_body (options, options->name, &exit_code);
            snprintf (path, sizeof path, "/api/v1/clusters/%s", argument);
            return body ? s_show (options, "PATCH", path, body) : exit_code;
        }
    } else if (streq (resource, "scheduler") && streq (verb, "list"))
        return s_list (options, "/api/v1/schedulers", "cluster_id", options->cluster, NULL, NULL,
                       s_scheduler_columns, ZF_ARRAY_LEN (s_scheduler_columns));
    else if (streq (resource, "seed") && streq (verb, "list"))
        return s_list (options, "/api/v1/seed-peers", "cluster_id", options->cluster, NULL, NULL,
                       s_seed_columns, ZF_ARRAY_LEN (s_seed_columns));
    else if (streq (resource, "user")) {
        if (streq (verb, "list"))
            return s_list (options, "/api/v1/users", NULL, NULL, NULL, NULL, s_user_columns,
                           ZF_ARRAY_LEN (s_user_columns));
        if ((streq (verb, "get") || streq (verb, "delete")) && id_ok) {
            snprintf (path, sizeof path, "/api/v1/users/%s", argument);
            return s_show (options, streq (verb, "get") ? "GET" : "DELETE", path, NULL);
        }
        if (streq (verb, "create") && argument && options->role)
            return s_show (options, "POST", "/api/v1/users",
                           json_pack ("{s:s, s:s}", "name", argument, "role", options->role));
    } else if (streq (resource, "pat")) {
        if (streq (verb, "list"))
            return s_list (options, "/api/v1/personal-access-tokens", "user_id", options->user,
                           NULL, NULL, s_pat_columns, ZF_ARRAY_LEN (s_pat_columns));
        if (streq (verb, "create")) {
            json_t *body = json_pack ("{s:b}", "write", options->write);
            if (options->name)
                json_object_set_new (body, "name", json_string (options->name));
            if (options->user)
                json_object_set_new (body, "user_id",
                                     json_integer (strtoll (options->user, NULL, 10)));
            if (options->expires)
                json_object_set_new (body, "expires_in", json_string (options->expires));
            return s_show (options, "POST", "/api/v1/personal-access-tokens", body);
        }
        if (streq (verb, "revoke") && id_ok) {
            snprintf (path, sizeof path, "/api/v1/personal-access-tokens/%s", argument);
            return s_show (options, "DELETE", path, NULL);
        }
    }
    fprintf (stderr, "zfly-admin: unknown command '%s %s%s%s' (try zfly-admin --help)\n", resource,
             verb, argument ? " " : "", argument ? argument : "");
    return ZF_API_EXIT_USAGE;
}

int main (int argc, char *argv[])
{
    s_options_t options = {.page = 1, .per_page = 50};
    const char *token_file = NULL, *server = NULL;
    enum {
        O_SERVER = 256,
        O_TOKEN_FILE,
        O_JSON,
        O_ALL,
        O_PAGE,
        O_PER_PAGE,
        O_NAME,
        O_CLUSTER,
        O_EXPIRES,
        O_MAX_USES,
        O_IDC,
        O_LOCATION,
        O_CIDR,
        O_HOSTNAME,
        O_DEFAULT,
        O_CONFIG,
        O_ROLE,
        O_USER,
        O_WRITE,
        O_STATE,
        O_DESCRIPTION,
    };
    static const struct option long_options[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"json", no_argument, NULL, O_JSON},
        {"all", no_argument, NULL, O_ALL},
        {"page", required_argument, NULL, O_PAGE},
        {"per-page", required_argument, NULL, O_PER_PAGE},
        {"name", required_argument, NULL, O_NAME},
        {"cluster", required_argument, NULL, O_CLUSTER},
        {"expires", required_argument, NULL, O_EXPIRES},
        {"max-uses", required_argument, NULL, O_MAX_USES},
        {"idc", required_argument, NULL, O_IDC},
        {"location", required_argument, NULL, O_LOCATION},
        {"cidr", required_argument, NULL, O_CIDR},
        {"hostname", required_argument, NULL, O_HOSTNAME},
        {"default", no_argument, NULL, O_DEFAULT},
        {"config", required_argument, NULL, O_CONFIG},
        {"role", required_argument, NULL, O_ROLE},
        {"user", required_argument, NULL, O_USER},
        {"write", no_argument, NULL, O_WRITE},
        {"state", required_argument, NULL, O_STATE},
        {"description", required_argument, NULL, O_DESCRIPTION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
        switch (option) {
        case O_SERVER: server = optarg; break;
        case O_TOKEN_FILE: token_file = optarg; break;
        case O_JSON: options.json = true; break;
        case O_ALL: options.all = true; break;
        case O_PAGE:
        case O_PER_PAGE:
            if (!s_number (optarg) || strtol (optarg, NULL, 10) < 1) {
                fprintf (stderr, "zfly-admin: --page and --per-page take a number from 1\n");
                return ZF_API_EXIT_USAGE;
            }
            *(option == O_PAGE ? &options.page : &options.per_page) = strtol (optarg, NULL, 10);
            break;
        case O_NAME: options.name = optarg; break;
        case O_CLUSTER:
        case O_MAX_USES:
        case O_USER:
            if (!s_number (optarg)) {
                fprintf (stderr, "zfly-admin: '%s' is not a number\n", optarg);
                return ZF_API_EXIT_USAGE;
            }
            *(option == O_CLUSTER ? &options.cluster
              : option == O_USER  ? &options.user
                                  : &options.max_uses) = optarg;
            break;
        case O_EXPIRES: options.expires = optarg; break;
        case O_IDC: options.idc = optarg; break;
        case O_LOCATION: options.location = optarg; break;
        case O_CIDR:
        case O_HOSTNAME: {
            bool cidr = option == O_CIDR;
            size_t *count = cidr ? &options.cidr_count : &options.hostname_count;
            if (*count == ZF_ARRAY_LEN (options.cidrs)) {
                fprintf (stderr, "zfly-admin: at most %zu --cidr / --hostname\n",
                         ZF_ARRAY_LEN (options.cidrs));
                return ZF_API_EXIT_USAGE;
            }
            (cidr ? options.cidrs : options.hostnames)[(*count)++] = optarg;
            break;
        }
        case O_DEFAULT: options.is_default = true; break;
        case O_CONFIG: options.config = optarg; break;
        case O_ROLE: options.role = optarg; break;
        case O_WRITE: options.write = true; break;
        case O_STATE: options.state = optarg; break;
        case O_DESCRIPTION: options.description = optarg; break;
        case 'h': s_usage (stdout); return ZF_API_EXIT_OK;
        default: s_usage (stderr); return ZF_API_EXIT_USAGE;
        }
    }
    if (argc - optind < 2 || argc - optind > 3) {
        s_usage (stderr);
        return ZF_API_EXIT_USAGE;
    }
    zf_api_client_init (&options.client, "zfly-admin", server, token_file);
    curl_global_init (CURL_GLOBAL_DEFAULT);
    int exit_code = s_run (&options, argv[optind], argv[optind + 1],
                           argc - optind == 3 ? argv[optind + 2] : NULL);
    curl_global_cleanup ();
    zf_api_client_clear (&options.client);
    return exit_code;
}
