/*  zf_api_client.h — the manager's REST API from a command-line tool (zfly-admin,
    zfly-preheat): where the manager is, the bearer token, one request and its JSON answer.

    The server is the --server/--manager flag, else $ZFLY_MANAGER, else http://127.0.0.1:8888.
    The token is the first line of the --token-file flag's file, else $ZFLY_TOKEN_FILE's, else
    ~/.config/zfly/token (what `zfly manager init` printed); never a command-line argument,
    where other users could read it. */
#ifndef ZF_API_CLIENT_H_INCLUDED
#define ZF_API_CLIENT_H_INCLUDED

#include "zf_prelude.h"
#include <jansson.h>

typedef struct {
    const char *program; //  "zfly-admin": the prefix of messages
    const char *server;
    char *token; //  NULL when none could be read
} zf_api_client_t;

//  Exit status of the API clients: a number means the same in each (their --help says what);
//  a client numbers its own from ZF_API_EXIT_OWN on.
enum {
    ZF_API_EXIT_OK = 0,
    ZF_API_EXIT_OTHER = 1,
    ZF_API_EXIT_USAGE = 2,
    ZF_API_EXIT_UNREACHABLE = 3,
    ZF_API_EXIT_UNAUTHORISED = 4,
    ZF_API_EXIT_OWN = 5,
};

//  The exit status for zf_api_call's result: 0 (unreachable), 401 and 403 (not authorised),
//  any other error status (other), else ok. A client maps the statuses it treats apart first.
int zf_api_exit_status (long status);

//  Fills client from the flags (NULL when not given) and the environment; says on stderr when
//  no token could be read (the manager will then answer 401).
void zf_api_client_init (zf_api_client_t *client, const char *program, const char *server_flag,
                         const char *token_file_flag);
void zf_api_client_clear (zf_api_client_t *client);

//  One request; body may be NULL. Returns the HTTP status, or 0 when the manager could not be
//  reached. *answer gets the parsed JSON body (NULL for none or on an error status). On a
//  failure (0, 4xx, 5xx, an answer that is not JSON) the reason is printed on stderr as
//  "PROGRAM: METHOD PATH: STATUS MESSAGE".
long zf_api_call (const zf_api_client_t *client, const char *method, const char *path, json_t *body,
                  json_t **answer);

#endif
