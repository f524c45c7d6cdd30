/*  zf_manager.h — the manager actor: clusters, the nodes that join them, the REST API.

    Nodes join over the bus (schemas/manager.schema): the manager checks the join token on a
    key's first join, records the CURVE key that authenticated the connection, picks the
    cluster by scopes and answers with the cluster's schedulers, seed peers, member keys and
    client config; later joins of the key are its refresh and, for schedulers and seed peers,
    their keep-alive. Changes (a node joined, a host revoked, a scheduler gone quiet) are
    published as manager.changed on events_bind, so nodes follow within moments.

    The database is zf_db (SQLite by default, MariaDB in production) behind the store in
    zf_manager_store.h. The REST API (zf_manager_api*.c) serves /api/v1/… on [manager] api with
    bearer personal access tokens; the first admin token comes from `zfly manager init`.

    Off unless the INI file has a [manager] section. */
#ifndef ZF_MANAGER_H_INCLUDED
#define ZF_MANAGER_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *bind;        //  bus endpoint for joins (tcp:// open to any CURVE key)
    char *events_bind; //  PUB endpoint for manager.changed and manager.versions
    char *api;         //  HOST:PORT of the REST API, "" for none
    char *database;    //  sqlite:PATH or mariadb://USER@HOST[:PORT]/DB
    char *database_password_file;
    int64_t refresh_ms;           //  how often ordinary nodes refresh their view
    int64_t keepalive_ms;         //  how often schedulers and seed peers refresh (keep-alive)
    int64_t keepalive_timeout_ms; //  silence after which they are marked inactive
    int64_t announce_ms;          //  how often every cluster's members_version is published
    char *queue;                  //  preheat jobs: "" the manager's own queue, or redis://…
    int64_t job_lease_ms;         //  a preheat worker silent this long loses its job
} zf_manager_config_t;

extern const zf_config_section_t zf_manager_section;

void zf_manager_actor (zsock_t *pipe, void *args);

//  `zfly manager init -c FILE`: opens the database the file names, applies the migrations,
//  makes the default cluster and user "admin", and prints a new admin token. Returns the exit
//  status (0, or 1 with the reason on stderr).
int zf_manager_init_command (const zf_manager_config_t *config, FILE *out);

//  A refused join answers with a code declared in schemas/core.schema (enum code):
//  ZF_CODE_TOKEN_REFUSED, ZF_CODE_REVOKED, ZF_CODE_NAME_TAKEN, ZF_CODE_NO_KEY,
//  ZF_CODE_UNAVAILABLE (schemas/manager.schema says when).

#endif
