/*  zf_api_client.c — one REST request to the manager, from a command-line tool. */
#include "zf_api_client.h"
#include "zf_secret.h"
#include <curl/curl.h>

#define S_RESPONSE_MAX (64 * 1024 * 1024)

//  The token file's first line; NULL when it cannot be read.
static char *s_read_token (const char *path)
{
    char *token = zf_secret_read_line (path, "\r\n \t");
    if (token && !*token) {
        zf_secret_free (token);
        token = NULL;
    }
    return token;
}

void zf_api_client_init (zf_api_client_t *client, const char *program, const char *server_flag,
                         const char *token_file_flag)
{
    memset (client, 0, sizeof *client);
    client->program = program;
    client->server = server_flag;
    if (!client->server)
        client->server = getenv ("ZFLY_MANAGER");
    if (!client->server || !*client->server)
        client->server = "http://127.0.0.1:8888";
    const char *token_file = token_file_flag ? token_file_flag : getenv ("ZFLY_TOKEN_FILE");
    char *default_file = NULL;
    if (!token_file && getenv ("HOME"))
        token_file = default_file = zf_asprintf ("%s/.config/zfly/token", getenv ("HOME"));
    client->token = token_file ? s_read_token (token_file) : NULL;
    if (!client->token)
        fprintf (stderr, "%s: no token read from %s (the manager will answer 401)\n", program,
                 token_file ? token_file : "--token-file");
    zf_free (default_file);
}

void zf_api_client_clear (zf_api_client_t *client)
{
    zf_secret_free (client->token);
    client->token = NULL;
}

typedef struct {
    char *data;
    size_t size;
} s_buffer_t;

static size_t s_collect (char *data, size_t size, size_t count, void *arg)
{
    s_buffer_t *buffer = arg;
    size_t bytes = size * count;
    if (buffer->size + bytes > S_RESPONSE_MAX)
        return 0; //  a runaway answer: curl fails the transfer
    buffer->data = zf_realloc (buffer->data, buffer->size + bytes + 1);
    memcpy (buffer->data + buffer->size, data, bytes);
    buffer->size += bytes;
    buffer->data[buffer->size] = '\0';
    return bytes;
}

long zf_api_call (const zf_api_client_t *client, const char *method, const char *path, json_t *body,
                  json_t **answer)
{
    *answer = NULL;
    CURL *curl = curl_easy_init ();
    ZF_ASSERT (curl);
    char *url = zf_asprintf ("%s%s", client->server, path);
    char *authorization =
        zf_asprintf ("Authorization: Bearer %s", client->token ? client->token : "");
    struct curl_slist *headers = NULL;
    if (client->token)
        headers = curl_slist_append (headers, authorization);
    headers = curl_slist_append (headers, "Accept: application/json");
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    if (text)
        headers = curl_slist_append (headers, "Content-Type: application/json");
    s_buffer_t response = {0};
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, error);
    if (text)
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, text);
    CURLcode code = curl_easy_perform (curl);
    long status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK) {
        fprintf (stderr, "%s: cannot reach the manager at %s: %s\n", client->program,
                 client->server, *error ? error : curl_easy_strerror (code));
        status = 0;
    } else {
        if (response.size)
            *answer = json_loadb (response.data, response.size, 0, NULL);
        if (status >= 400) {
            json_t *message = *answer ? json_object_get (*answer, "message") : NULL;
            fprintf (stderr, "%s: %s %s: %ld %s\n", client->program, method, path, status,
                     message ? json_string_value (message) : (response.data ? response.data : ""));
            json_decref (*answer);
            *answer = NULL;
        } else if (response.size && !*answer) {
            fprintf (stderr, "%s: %s %s: the answer is not JSON\n", client->program, method, path);
            status = 500;
        }
    }
    if (text) {
        explicit_bzero (text, strlen (text)); //  a job's body may carry credentials
        free (text);
    }
    zf_free (response.data);
    curl_slist_free_all (headers);
    zf_secret_free (authorization);
    zf_free (url);
    curl_easy_cleanup (curl);
    return status;
}

int zf_api_exit_status (long status)
{
    return status == 0                      ? ZF_API_EXIT_UNREACHABLE
           : status == 401 || status == 403 ? ZF_API_EXIT_UNAUTHORISED
           : status >= 400                  ? ZF_API_EXIT_OTHER
                                            : ZF_API_EXIT_OK;
}
