/*  zf_jobs_input.h — preheat job requests, parsed and checked (pure: no database; fuzzed by
    tests/fuzz/fuzz_job_json.c).

    Three doors take a job, and all come here:
      - POST /api/v1/jobs and Harbor's POST /oapi/v1/jobs: Dragonfly's job body,
            {"type": "preheat", "args": {"type": "image", "url": "…", "tag": "",
             "filtered_query_params": "", "headers": {"Authorization": "Bearer …"},
             "scope": "single_seed_peer", "concurrent_count": 0, "timeout": 0},
             "scheduler_cluster_ids": [1] | null}
        with zfly's additions in args: "urls" (several images or files in one job), "platform"
        ("os/arch[/variant]" or "all"), "username" and "password" (registry credentials).
        timeout is in nanoseconds (Go's time.Duration, as Harbor sends it); 0 means the default.
        Harbor 2.12's scopes "single_peer" and "all_peers" are read as single_seed_peer and
        all_peers. Unknown fields are ignored, as Harbor's Go peers do, so a newer Harbor's
        additions do not break jobs.
      - Harbor up to 2.11, POST /preheats: {"type": "image", "url": "…", "headers": {…},
        "image": "project/repo", "tag": "v1", "digest": "sha256:…"}.
    Headers, username and password are secrets: zf_job_input_args leaves them out (the header
    names stay, so people see that a job has an Authorization), zf_job_input_secrets gives
    them as JSON text to seal. */
#ifndef ZF_JOBS_INPUT_H_INCLUDED
#define ZF_JOBS_INPUT_H_INCLUDED

#include "zf_error.h"
#include <jansson.h>

#define ZF_JOB_URLS_MAX        32
#define ZF_JOB_URL_MAX         8192
#define ZF_JOB_CLUSTERS_MAX    256
#define ZF_JOB_HEADERS_MAX     64
#define ZF_JOB_CONCURRENCY_MAX 1000

typedef struct {
    char *type; //  "image" or "file"
    char *urls[ZF_JOB_URLS_MAX];
    size_t url_count;
    char *platform; //  image: "linux/amd64" unless given
    char *scope;    //  "single_seed_peer" unless given
    char *tag;      //  file: the task id's tag (Dragonfly's args.tag)
    int64_t cluster_ids[ZF_JOB_CLUSTERS_MAX];
    size_t cluster_count; //  0: every cluster
    int64_t concurrency;  //  blobs in flight; 0: the worker's default
    int64_t timeout_ms;   //  0: the worker's default
    json_t *headers;      //  {name: value}; secret
    char *username;       //  secret
    char *password;       //  secret
} zf_job_input_t;

zf_status_t zf_job_input_parse (json_t *body, zf_job_input_t *input, zf_error_t *err);
zf_status_t zf_job_input_parse_legacy (json_t *body, zf_job_input_t *input, zf_error_t *err);
void zf_job_input_clear (zf_job_input_t *input);

//  {"type", "urls", "platform", "scope", "tag", "concurrent_count", "timeout" (ns),
//   "header_names", "username" (present or not, never its value: true/false)}
json_t *zf_job_input_args (const zf_job_input_t *input);
//  {"headers": {…}, "username": …, "password": …} as text, or NULL when the job has none.
char *zf_job_input_secrets (const zf_job_input_t *input);
//  "[1,2]" or "[]".
char *zf_job_input_cluster_ids (const zf_job_input_t *input);

#endif
